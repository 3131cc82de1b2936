"""`kiosk central`: the reference central API server (tests, demo, integrators), and `kiosk central keygen`."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from device.cli import add_command, add_group, described_parser
from device.wire import is_name

#: A rotated token's old one stays valid this long: the kiosk keeps delivering with it until the
#: Ansible run that installs the new one has reached it (a kiosk offline for a day included).
ROTATION_GRACE_HOURS = 24.0

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
    tokens = add_group(
        commands,
        "token",
        "per-kiosk tokens: issue, rotate, revoke",
        "Each kiosk's own token, bound to its kiosk id and stored only as a hash in the central's\n"
        "database (--db: the URL the central runs with). A token is printed once, on stdout alone.",
        example="kiosk central token issue k-riga-07 --db sqlite:/var/lib/central/central.db",
        dest="token_command",
    )
    for name, func in (("issue", token_issue), ("rotate", token_rotate), ("revoke", token_revoke)):
        t = add_command(tokens, name, func, config=False)
        t.add_argument("kiosk", metavar="KIOSK", help="the kiosk id (as in its kiosk.toml)")
        t.add_argument("--db", metavar="URL", required=True, help="the central's database: sqlite:PATH or postgresql://...")
        if name == "rotate":
            t.add_argument(
                "--grace-hours",
                metavar="H",
                type=float,
                default=ROTATION_GRACE_HOURS,
                help=f"how long the old token stays valid (default {ROTATION_GRACE_HOURS:g}: until Ansible has installed the new one)",
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


def token_issue(args) -> int:
    """Issue a kiosk's first token and print it (once: only its hash is stored).

    Refused if the kiosk already has a valid token: use `kiosk central token rotate`.
    Exit 1 when the database cannot be opened, 2 for a kiosk id that is not one.

    Example: kiosk central token issue k-riga-07 --db sqlite:/var/lib/central/central.db
    """
    return _with_store(args, _issue)


def token_rotate(args) -> int:
    """Give a kiosk a new token (printed once); its old one stays valid --grace-hours more.

    The grace (24 h by default) lets the kiosk deliver with the old token until Ansible has
    installed the new one; --grace-hours 0 ends the old one now.

    Example: kiosk central token rotate k-riga-07 --db postgresql://central@db/central --grace-hours 48
    """
    if not 0 <= args.grace_hours <= 24 * 365:
        print("kiosk: --grace-hours must be from 0 to 8760", file=sys.stderr)
        return 2
    return _with_store(args, _rotate)


def token_revoke(args) -> int:
    """Revoke every token of a kiosk now (a stolen kiosk, a kiosk taken out of service).

    Example: kiosk central token revoke k-riga-07 --db sqlite:/var/lib/central/central.db
    """
    return _with_store(args, _revoke)


def _issue(store, args) -> int:
    if store.valid_tokens(args.kiosk):
        print(f"kiosk: {args.kiosk} has a valid token already: not issued (use kiosk central token rotate)", file=sys.stderr)
        return 1
    return _print_new_token(store, args.kiosk, 0, "issued")


def _rotate(store, args) -> int:
    return _print_new_token(store, args.kiosk, args.grace_hours * 3600, f"rotated (old tokens valid {args.grace_hours:g} h more)")


def _revoke(store, args) -> int:
    revoked = store.revoke_tokens(args.kiosk)
    print(f"{args.kiosk}: {revoked} token{'s' if revoked != 1 else ''} revoked")
    return 0


def _print_new_token(store, kiosk_id: str, old_valid_s: float, what: str) -> int:
    from central.credentials import new_token, token_hash

    token = new_token()
    earlier = store.set_token(kiosk_id, token_hash(token), old_valid_s=old_valid_s)
    print(token)  # alone on stdout: for a pipe into the vault Ansible reads
    print(f"kiosk: {kiosk_id}: token {what}; {earlier} earlier valid; shown once, only its hash is stored", file=sys.stderr)
    return 0


def _with_store(args, action) -> int:
    """Open --db, run ``action(store, args)``, close; exit 1 naming --db when it cannot be opened."""
    from central.storage import StoreBusy, StoreError, open_store

    if not is_name(args.kiosk) or not args.kiosk:
        print("kiosk: KIOSK must be a kiosk id: a non-empty name without control characters", file=sys.stderr)
        return 2
    try:
        store = open_store(args.db)
    except StoreError as e:
        print(f"kiosk: --db {_shown(args.db)}: cannot open the database: {e}", file=sys.stderr)
        return 1
    try:
        return action(store, args)
    except (StoreBusy, StoreError) as e:
        print(f"kiosk: --db {_shown(args.db)}: {e}", file=sys.stderr)
        return 1
    finally:
        store.close()


def _shown(url: str) -> str:
    """The URL without a password."""
    scheme, sep, rest = url.partition("://")
    if sep and "@" in rest.split("/", 1)[0]:
        userinfo, _, host = rest.partition("@")
        return f"{scheme}://{userinfo.partition(':')[0]}@{host}"
    return url
