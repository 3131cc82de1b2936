"""`kiosk revocations status|sync|check`: the kiosk's copy of the replaced-card list."""

from __future__ import annotations

import json
import time
from pathlib import Path

from device.cli import add_command, add_group, load_config
from device.revocations.store import open_copy_reader, summary

HELP = {"revocations": "the replaced-card list: its version and age, sync it now, check a card against it"}


def register(sub) -> None:
    commands = add_group(
        sub,
        "revocations",
        HELP["revocations"],
        "The kiosk refuses a card whose issue is lower than its contract's current issue (a lost\n"
        "card, replaced), against a signed copy of the central's list kept beside the outbox.",
        example="kiosk revocations status",
        dest="revocations_command",
    )
    p = add_command(commands, "status", cmd_status)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p = add_command(commands, "sync", cmd_sync)
    p.add_argument(
        "--timeout",
        type=float,
        default=None,
        metavar="S",
        help="how long to wait for the daemon's sync (default: revocations.deadline_s + 10)",
    )
    p = add_command(commands, "check", cmd_check)
    p.add_argument("contract", metavar="CONTRACT", help="the contract number (digits, as printed on the card)")
    p.add_argument("issue", metavar="ISSUE", type=int, help="the card's issue number (1 for the first card)")
    p.add_argument("--unmask", action="store_true", help="show the whole contract number")


def cmd_status(args) -> int:
    """Show the replaced-card list: version, age, size, last sync.

    Shows its version, when the central last confirmed it, how many contracts and bytes, the last
    attempt and the fault, if any. Exit 0 when the copy is current
    and the last sync worked, else 1. Reads the copy's file; the daemon need not run.

    Example: kiosk revocations status --json
    """
    from device.revocations.store import RevocationsError
    from device.revocations.sync import fault_of

    cfg = load_config(args, check_files=False)
    try:
        copy = open_copy_reader(cfg)
        info = copy.info()
        copy.close()
    except RevocationsError as e:
        print(f"kiosk: {e}")
        return 1
    fault = fault_of(info, cfg.revocations.max_age_s)
    info.update(enabled=cfg.revocations.enabled, max_age_s=cfg.revocations.max_age_s, fault=fault)
    if args.json:
        print(json.dumps(info))
    else:
        print(render(info))
    return 0 if fault is None else 1


def render(info: dict) -> str:
    """The copy's state in a few lines (shared with ``kiosk status``'s one line)."""
    lines = [f"list        {summary(info)}", f"file        {info.get('path')}"]
    if info.get("attempt_at"):
        lines.append(f"last try    {info['attempt_at']}: {info.get('attempt_error') or 'ok'}")
    if info.get("enabled") is False:
        lines.append("NOTE        revocations.enabled is false: the daemon does not refuse replaced cards")
    if info.get("fault"):
        lines.append(f"FAULT       revocations: {info['fault']}")
    return "\n".join(lines)


def cmd_sync(args) -> int:
    """Sync the replaced-card list now.

    Says what came of it. While the daemon runs, it is asked
    to sync (a request in kiosk.runtime_dir's request folder, which the technicians' group may
    write: no sudo needed; taken within a few seconds, at most one sync a minute on request) and
    the command waits for its result; without the daemon, the command syncs the copy itself (as
    the copy's owner).
    Exit 0 when the list was applied or is current, 1 when it was refused or not reachable (the
    copy in force stays as it was).

    Example: kiosk revocations sync
    """
    from device import status
    from device.revocations.sync import RevocationSync

    cfg = load_config(args)
    runtime_dir = Path(cfg.kiosk.runtime_dir)
    if status.read_status(runtime_dir).running and cfg.revocations.enabled:
        return _ask_daemon(cfg, runtime_dir / status.REQUESTS_DIR, args.timeout or cfg.revocations.deadline_s + 10)
    from device.revocations.store import RevocationsError

    try:
        copy = _copy_for_writing(cfg)
    except RevocationsError as e:
        print(f"kiosk: {e}")
        return 1
    sync = RevocationSync.from_config(cfg, copy)
    result = sync.sync_once()
    if result.error:
        print(f"PROBLEM: {result.error} (version {result.version if result.version is not None else 'none'} stays in force)")
        return 1
    print(f"{result.kind}: {summary(copy.info())}")
    return 0


def _copy_for_writing(cfg):
    from device.outbox.reader import become_owner
    from device.revocations.store import ReplacedCards, list_path

    path = list_path(cfg)
    # A new copy belongs to whoever owns the outbox's folder (the daemon's user), not to root.
    owner = path if path.exists() else path.parent if path.parent.exists() else None
    if owner is not None:
        become_owner(owner)
    return ReplacedCards(path)


def _ask_daemon(cfg, folder: Path, timeout_s: float) -> int:
    import os
    import uuid

    from device import status
    from device.revocations.store import RevocationsError
    from device.revocations.sync import REQUEST_PREFIX

    try:
        copy = open_copy_reader(cfg)
        before = copy.info().get("attempt_at")
    except RevocationsError:
        copy, before = None, None
    request = folder / f"{REQUEST_PREFIX}{uuid.uuid4().hex}.request"
    try:
        os.close(os.open(request, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
    except FileNotFoundError:
        print(f"kiosk: {status.no_request_folder(folder)}")
        return 1
    except PermissionError as e:
        print(f"kiosk: {status.permission_advice(PermissionError(e.errno, e.strerror, str(folder)), 'kiosk revocations sync')}")
        return 1
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        time.sleep(0.2)  # polling a file another process writes: no event to wait on
        try:
            copy = copy or open_copy_reader(cfg)
            info = copy.info()
        except RevocationsError:
            continue
        if info.get("attempt_at") and info["attempt_at"] != before:
            if info.get("attempt_error"):
                print(f"PROBLEM: {info['attempt_error']}")
                return 1
            print(f"synced by the daemon: {summary(info)}")
            return 0
    request.unlink(missing_ok=True)  # not taken in time: the daemon need not sync for it later
    print(f"kiosk: the daemon did not sync within {timeout_s:g} s (journalctl -u kiosk says why)")
    return 1


def cmd_check(args) -> int:
    """Check one card against the list: would the kiosk refuse it as replaced?

    Prints the contract's current issue if its card was re-issued. Exit 0 when the card would be identified,
    1 when it would be refused (or the copy cannot be read).

    Example: kiosk revocations check 0012345678 1
    """
    from device.card import Card
    from device.redact import mask_contract
    from device.revocations.store import RevocationsError

    cfg = load_config(args, check_files=False)
    if not args.contract.isascii() or not args.contract.isdigit() or args.issue < 1:
        print("kiosk: CONTRACT must be digits and ISSUE 1 or more")
        return 2
    shown = mask_contract(args.contract, args.unmask)
    try:
        copy = open_copy_reader(cfg)
        current = copy.current_issue(args.contract)
        replaced = copy.replaced_by(Card("v1", args.contract, args.issue))
        version = copy.version
    except RevocationsError as e:
        print(f"kiosk: {e}")
        return 1
    if replaced is not None:
        print(
            f"REFUSED: contract {shown} issue {args.issue:02d} was replaced; its current issue is {replaced:02d} (list version {version})"
        )
        return 1
    known = f"its current issue is {current:02d}" if current is not None else "never re-issued"
    print(f"identified: contract {shown} issue {args.issue:02d}: {known} (list version {version})")
    return 0
