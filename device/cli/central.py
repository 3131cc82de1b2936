"""`kiosk central`: the reference central API server (tests, demo, integrators)."""

from __future__ import annotations

HELP = {"central": "run the reference central API server (tests, demo, integrators)"}


def register(sub) -> None:
    from central import server

    p = sub.add_parser(
        "central",
        help=HELP["central"],
        description="Run the reference implementation of the central API (docs/CENTRAL_API.md): stores "
        "identifications in SQLite, counts each id once, and can inject faults for tests.",
    )
    server.add_arguments(p)
    p.set_defaults(func=server.main)
