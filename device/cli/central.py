"""`kiosk central`: the reference central API server (tests, demo, integrators)."""

from __future__ import annotations

from device.cli import described_parser

HELP = {"central": "run the reference central API server (tests, demo, integrators)"}


def register(sub) -> None:
    from central import server

    p = described_parser(
        sub,
        "central",
        HELP["central"],
        "Run the reference implementation of the central API (docs/CENTRAL_API.md): stores\n"
        "identifications in SQLite, counts each id once, and can inject faults for tests.",
        "kiosk central --db /tmp/central.db --token-file /tmp/tokens --port 0",
    )
    server.add_arguments(p)
    p.set_defaults(func=server.main)
