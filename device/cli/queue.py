"""`kiosk queue list|show|retry|ack`: the technician's view into the outbox, also while the daemon writes."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from device.cli import add_command, load_config

HELP = {"queue": "list, show and retry queued identifications; acknowledge outbox integrity problems"}


def _become_outbox_owner(path: Path) -> None:
    """Run as the outbox's owner when started as root (``sudo kiosk queue ...``).

    SQLite creates the -wal and -shm files as whoever opens the database first; root-owned ones
    would lock the daemon (user kiosk) out of its own outbox.
    """
    owner = path.stat()
    if os.geteuid() == 0 and owner.st_uid != 0:
        os.setegid(owner.st_gid)
        os.seteuid(owner.st_uid)


def open_outbox_reader(cfg):
    """The daemon's outbox opened beside it, as its owner; never created, never moved aside."""
    from device.outbox import Outbox

    _become_outbox_owner(Path(cfg.outbox.path))
    return Outbox.from_config(cfg, on_corrupt="raise", check_integrity=False, create=False)


@contextmanager
def _queue(args) -> Iterator:
    """The daemon's outbox for one command, closed after it."""
    cfg = load_config(args, check_files=False)
    if not Path(cfg.outbox.path).exists():
        raise SystemExit(f"kiosk queue: no outbox at {cfg.outbox.path} (outbox.path); has the kiosk run yet?")
    outbox = open_outbox_reader(cfg)
    try:
        yield outbox
    finally:
        outbox.close()


def _record_json(record, unmask: bool) -> dict:
    from device.redact import mask_contract

    data = record.as_dict()
    data["contract"] = mask_contract(record.contract, unmask)
    if not unmask:
        # The checksum covers the contract: with the other fields shown, trying every contract
        # number against it would unmask the contract.
        del data["checksum"]
    return data


def _issue(card_issue: int | None) -> str:
    # "--": a card format without an issue number.
    return "--" if card_issue is None else f"{card_issue:02d}"


def _record_line(record, unmask: bool) -> str:
    from device.redact import mask_contract

    extra = record.quarantine_reason or record.dead_reason or record.last_error or ""
    return (
        f"{record.seq:>7}  {record.id}  {record.state:<9} {mask_contract(record.contract, unmask)} /{_issue(record.card_issue)}"
        f"  {record.scanned_at}  attempts {record.attempts}" + (f"  {extra}" if extra else "")
    )


def cmd_queue_list(args) -> int:
    """List identifications in the outbox.

    List identifications in the outbox, oldest first; contracts masked unless --unmask.
    """
    with _queue(args) as outbox:
        records = outbox.list(args.state)
    for record in records:
        print(json.dumps(_record_json(record, args.unmask)) if args.json else _record_line(record, args.unmask))
    if not args.json:
        print(f"{len(records)} identification(s)" + (f" {args.state}" if args.state else ""), file=sys.stderr)
    return 0


def cmd_queue_show(args) -> int:
    """Show one identification.

    Show every field of one identification, by its id, and whether its checksum still matches.
    """
    with _queue(args) as outbox:
        record = outbox.get(args.id)
        problem = outbox.checksum_problem(record) if record is not None else None
    if record is None:
        print(f"kiosk queue show: no identification {args.id!r}", file=sys.stderr)
        return 1
    data = {**_record_json(record, args.unmask), "checksum_ok": problem is None, "checksum_problem": problem}
    if args.json:
        print(json.dumps(data))
    else:
        for key, value in data.items():
            print(f"{key:>16}: {value}")
    return 0


def cmd_queue_retry(args) -> int:
    """Send a dead identification again.

    Set a dead (or waiting) identification back to pending, to be sent at once; --dead for all dead
    ones.
    """
    with _queue(args) as outbox:
        if args.dead:
            n = outbox.retry_dead()
            print(f"{n} dead identification(s) set to pending")
            return 0
        if not args.id:
            print("kiosk queue retry: give an ID or --dead", file=sys.stderr)
            return 2
        if not outbox.retry(args.id):
            print(f"kiosk queue retry: no dead or pending identification {args.id!r}", file=sys.stderr)
            return 1
        print(f"{args.id}: pending, will be sent at the next attempt")
        return 0


def cmd_queue_ack(args) -> int:
    """Acknowledge the outbox's integrity problems (the fault clears).

    Acknowledge what the outbox found wrong with itself (identifications lost, a damaged file
    salvaged, records quarantined): they leave `kiosk status` and the outbox-integrity fault
    clears. Records are not changed: a quarantined one is still never sent.
    """
    with _queue(args) as outbox:
        problems = outbox.stats()["integrity"]
        n = outbox.acknowledge_integrity()
    for problem in problems:
        print(f"acknowledged: {problem['message']} (found {problem['found_at']})")
    print(f"{n} integrity problem(s) acknowledged" + ("; quarantined identifications stay quarantined, never sent" if n else ""))
    return 0


def register(sub) -> None:
    from device.outbox import STATES  # built only for a queue command, which opens the store anyway

    p = sub.add_parser("queue", help=HELP["queue"], description="Look into the outbox (works while the daemon runs).")
    qsub = p.add_subparsers(dest="queue_command", required=True, metavar="COMMAND")
    lst = add_command(qsub, "list", cmd_queue_list)
    lst.add_argument("--state", choices=STATES, help="only this state")
    show = add_command(qsub, "show", cmd_queue_show)
    show.add_argument("id", metavar="ID")
    retry = add_command(qsub, "retry", cmd_queue_retry)
    retry.add_argument("id", nargs="?", metavar="ID")
    retry.add_argument("--dead", action="store_true", help="retry every dead identification")
    add_command(qsub, "ack", cmd_queue_ack)
    for q in (lst, show):
        q.add_argument("--json", action="store_true", help="JSON output (one object per record)")
        q.add_argument("--unmask", action="store_true", help="show whole contract numbers")
