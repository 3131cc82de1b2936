"""`kiosk central`: the reference central API server (tests, demo, integrators), and `kiosk central keygen`."""

from __future__ import annotations

import os
from pathlib import Path

from device.cli import add_command, described_parser

HELP = {"central": "run the reference central API server (tests, demo, integrators)"}


def register(sub) -> None:
    from central import server

    p = described_parser(
        sub,
        "central",
        HELP["central"],
        "Run the reference implementation of the central API (docs/CENTRAL_API.md): stores\n"
        "identifications in SQLite, counts each id once, serves the signed replaced-card list,\n"
        "and can inject faults for tests. `kiosk central keygen` writes the list's signing key pair.",
        "kiosk central --db /tmp/central.db --token-file /tmp/tokens --port 0",
    )
    server.add_arguments(p, db_required=False)
    p.set_defaults(func=server.main)
    commands = p.add_subparsers(dest="central_command", metavar="COMMAND")
    k = add_command(commands, "keygen", keygen, config=False)
    k.add_argument(
        "--private-key", metavar="PATH", required=True, help="where the private key goes (PEM, mode 0600; for the central's --signing-key)"
    )
    k.add_argument(
        "--public-key", metavar="PATH", required=True, help="where the public key goes (PEM; for each kiosk's revocations.public_key_file)"
    )


def keygen(args) -> int:
    """Write a new Ed25519 key pair for signing the replaced-card list.

    The private key (mode 0600) is the central's --signing-key; the public key goes to every
    kiosk as revocations.public_key_file. Existing files are never overwritten. Prints the key id
    that kiosks see in the list's Signature-Key-Id header.

    Example: kiosk central keygen --private-key /etc/central/list.key --public-key /tmp/list.pub
    """
    from device.revocations.document import generate_key_pair, key_id, load_public_key

    private, public = generate_key_pair()
    written = []
    try:
        for path, data, mode in ((args.private_key, private, 0o600), (args.public_key, public, 0o644)):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            written.append(path)
    except FileExistsError as e:
        for path in written:
            os.unlink(path)
        print(f"kiosk: {e.filename} exists already: not overwritten (move it away first)")
        return 1
    except OSError as e:
        for path in written:
            os.unlink(path)
        print(f"kiosk: cannot write {e.filename}: {e.strerror or e}")
        return 1
    print(f"key id {key_id(load_public_key(Path(args.public_key)))}: private key {args.private_key} (0600), public key {args.public_key}")
    return 0
