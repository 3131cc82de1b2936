"""`kiosk queue list|show|retry|resend|ack`: the technician's view into the outbox, also while the daemon writes."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from device.cli import add_command, add_group, load_config

HELP = {"queue": "list, show, retry and resend queued identifications; acknowledge outbox integrity problems"}


@contextmanager
def _queue(args, *, write: str | None = None, cfg=None) -> Iterator:
    """The daemon's outbox for one command, closed after it (``cfg``: the configuration, when the command loaded it)."""
    from device.outbox.reader import open_outbox_reader  # here: `kiosk --help` imports this module, not SQLite

    cfg = cfg or load_config(args, check_files=False)
    if not Path(cfg.outbox.path).exists():
        raise SystemExit(f"kiosk queue: no outbox at {cfg.outbox.path} (outbox.path); has the kiosk run yet?")
    outbox = open_outbox_reader(cfg, write=write)
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


def _refused(record) -> str:
    """`` REFUSED (replaced: current issue 02)`` for a refusal, else nothing."""
    return f"  REFUSED (replaced: current issue {_issue(record.current_issue)})" if record.kind == "refusal" else ""


def _record_line(record, unmask: bool, kiosk_id: str | None = None) -> str:
    """One record on one line; one made under another kiosk id than ``kiosk_id`` says which
    (its seq is that kiosk id's, so `queue show SEQ` does not reach it)."""
    from device.redact import mask_contract

    extra = record.quarantine_reason or record.dead_reason or record.last_error or ""
    other = f"  (kiosk id {record.kiosk_id})" if kiosk_id is not None and record.kiosk_id != kiosk_id else ""
    return (
        f"{record.seq:>7}  {record.id}  {record.state:<9} {mask_contract(record.contract, unmask)} /{_issue(record.card_issue)}"
        f"{_refused(record)}  {record.scanned_at}  attempts {record.attempts}{other}" + (f"  {extra}" if extra else "")
    )


def cmd_queue_list(args) -> int:
    """List identifications in the outbox.

    List identifications (and refusals of replaced cards) in the outbox, oldest first: seq, id,
    state, contract (masked unless --unmask), card issue (a refusal: REFUSED and the contract's
    current issue), scan time, attempts, and the last error or why it is dead.

    Example: kiosk queue list --state dead
    """
    with _queue(args) as outbox:
        records = outbox.list(args.state)
        kiosk_id = outbox.kiosk_id
    for record in records:
        print(json.dumps(_record_json(record, args.unmask)) if args.json else _record_line(record, args.unmask, kiosk_id))
    if not args.json:
        refusals = sum(r.kind == "refusal" for r in records)
        counted = f"{len(records) - refusals} identification(s)" + (f" and {refusals} refusal(s)" if refusals else "")
        print(counted + (f" {args.state}" if args.state else ""), file=sys.stderr)
    return 0


#: What REF may be, for the help of the commands that take one.
REF_HELP = (
    "a seq number as `kiosk queue list` shows it (digits only; numbered per kiosk.id, so records made "
    "under an earlier kiosk id are reached by their id), the whole id, or a unique start of the id "
    "(at least 4 hex characters, any case)"
)


def _find(outbox, ref: str, command: str):
    """The identification ``ref`` names, or None after saying on stderr why not (an ambiguous
    prefix lists what it matches, masked)."""
    from device.outbox.store import NotFound

    try:
        return outbox.find(ref)
    except NotFound as e:
        print(f"kiosk queue {command}: {e}", file=sys.stderr)
        for record in e.matches:
            print("  " + _record_line(record, unmask=False), file=sys.stderr)
        if e.count > len(e.matches):
            print(f"  ... and {e.count - len(e.matches)} more", file=sys.stderr)
        return None


def cmd_queue_show(args) -> int:
    """Show one identification.

    Show every field of one identification, by seq or id (REF below), and whether its checksum
    still matches. A refusal (a replaced card shown) says so first, with the issue shown and the
    contract's current issue. pos_outcome says what became of its hand-off to the counter's POS
    (handed over, POS offline, too old; None when none was tried: pos.output = "none", a refusal).

    Example: kiosk queue show 42
    """
    with _queue(args) as outbox:
        record = _find(outbox, args.ref, "show")
        problem = outbox.checksum_problem(record) if record is not None else None
    if record is None:
        return 1
    data = {**_record_json(record, args.unmask), "checksum_ok": problem is None, "checksum_problem": problem}
    if args.json:
        print(json.dumps(data))
    else:
        if record.kind == "refusal":
            print(
                f"REFUSAL: a replaced card: issue {_issue(record.card_issue)} shown, "
                f"the contract's current issue is {_issue(record.current_issue)}"
            )
        for key, value in data.items():
            print(f"{key:>16}: {value}")
    return 0


def cmd_queue_retry(args) -> int:
    """Send a dead identification again.

    Set a dead (or waiting) identification back to pending, to be sent at once; --dead for all dead
    ones. REF: a seq or an id, as below.

    Example: kiosk queue retry 42
    """
    with _queue(args, write="kiosk queue retry") as outbox:
        if args.dead:
            n = outbox.retry_dead()
            print(f"{n} dead identification(s) set to pending")
            return 0
        if not args.ref:
            print("kiosk queue retry: give a REF (seq or id) or --dead", file=sys.stderr)
            return 2
        record = _find(outbox, args.ref, "retry")
        if record is None:
            return 1
        if not outbox.retry(record.id):
            print(
                f"kiosk queue retry: seq {record.seq} ({record.id}) is {record.state}: only dead or pending identifications are retried",
                file=sys.stderr,
            )
            return 1
        print(f"seq {record.seq} ({record.id}): pending, will be sent at the next attempt")
        return 0


def cmd_queue_resend(args) -> int:
    """Send delivered identifications again (the central lost them).

    Set delivered identifications back to pending, to be sent at the daemon's next attempt with
    their id and seq: the central answers accepted where it lost one (restored from a backup),
    duplicate where it still holds it, never counting one twice. REF...: seqs, seq ranges
    (812-830) or ids, as below; each must be delivered (a dead one: kiosk queue retry). --missing:
    ask the central which of this kiosk's seqs it holds and resend exactly the delivered ones it
    lacks (what `kiosk diag api` names); exit 1 if it cannot be asked.

    Example: kiosk queue resend --missing
    """
    if bool(args.refs) == bool(args.missing):
        print("kiosk queue resend: give REF... (seqs, ranges like 812-830, ids) or --missing, not both", file=sys.stderr)
        return 2
    cfg = load_config(args, check_files=False)
    with _queue(args, write="kiosk queue resend", cfg=cfg) as outbox:
        records = _missing_at_central(cfg, outbox) if args.missing else _delivered_refs(outbox, args.refs)
        if records is None:
            return 1
        if not records:
            print("nothing to resend: the central holds every identification the outbox marks delivered")
            return 0
        n = outbox.resend_delivered([r.id for r in records])
    from device.diag import seq_ranges

    print(f"{n} delivered identification(s) set to pending: seq {seq_ranges(r.seq for r in records)}")
    if n < len(records):  # the daemon changed some between the look and the change (purged, or sent meanwhile)
        print(f"  {len(records) - n} changed state meanwhile and were left as they are", file=sys.stderr)
    print("the daemon sends them at its next attempt; the central answers accepted (it lost one) or duplicate (it holds it)")
    return 0


def _missing_at_central(cfg, outbox) -> list | None:
    """This kiosk id's delivered records the central lacks, as `kiosk diag api` finds them; None
    after saying on stderr why the central could not be asked."""
    from device.central_client import CentralClient
    from device.diag import check_seqs

    delivered = {r.seq: r for r in outbox.list("delivered") if r.kiosk_id == outbox.kiosk_id}
    check = check_seqs(CentralClient.from_config(cfg), outbox.kiosk_id, delivered)
    if not check.answered:
        print(f"kiosk queue resend: cannot ask the central: {check.detail}; kiosk diag api says more", file=sys.stderr)
        return None
    if not check.missing and check.ok is False:  # answered, lacks nothing, but a conflict to say
        print(f"note: {check.detail}", file=sys.stderr)
    return [delivered[seq] for seq in check.missing]


#: A seq range as typed: 812-830.
_SEQ_RANGE = r"([0-9]+)-([0-9]+)"
#: Longest seq range taken (each seq is looked up); more than retention keeps on a busy kiosk.
MAX_RANGE = 100_000


def _delivered_refs(outbox, refs: list[str]) -> list | None:
    """The delivered identifications ``refs`` name (seqs, ranges, ids), or None after saying on
    stderr each one that is unknown or not delivered: then nothing is changed."""
    import re

    from device.diag import seq_ranges
    from device.outbox.store import NotFound

    records: dict[str, object] = {}
    unknown: list[int] = []
    ok = True
    for ref in refs:
        span = re.fullmatch(_SEQ_RANGE, ref.strip())
        if span is None:
            record = _find(outbox, ref, "resend")
            ok = ok and record is not None
            if record is not None:
                records.setdefault(record.id, record)
            continue
        first, last = int(span[1]), int(span[2])
        if not 0 <= last - first < MAX_RANGE:
            print(f"kiosk queue resend: {ref}: a range is FIRST-LAST, first not after last, at most {MAX_RANGE} seqs", file=sys.stderr)
            ok = False
            continue
        for seq in range(first, last + 1):
            try:
                record = outbox.find(str(seq))
            except NotFound:
                unknown.append(seq)
            else:
                records.setdefault(record.id, record)
    if unknown:
        print(f"kiosk queue resend: no identification with seq {seq_ranges(unknown)} for kiosk id {outbox.kiosk_id!r}", file=sys.stderr)
    by_state: dict[str, list[int]] = {}
    for record in records.values():
        if record.state != "delivered":
            by_state.setdefault(record.state, []).append(record.seq)
    why = {"pending": "is sent anyway", "dead": "is sent again by kiosk queue retry", "quarantined": "is never sent"}
    for state, seqs in by_state.items():
        print(
            f"kiosk queue resend: seq {seq_ranges(seqs)} {state}: only delivered identifications are resent (a {state} one {why[state]})",
            file=sys.stderr,
        )
    if unknown or by_state or not ok:
        print("kiosk queue resend: nothing changed", file=sys.stderr)
        return None
    return sorted(records.values(), key=lambda r: r.seq)


def cmd_queue_ack(args) -> int:
    """Acknowledge the outbox's integrity problems (the fault clears).

    Acknowledge what the outbox found wrong with itself (identifications lost, a damaged file
    salvaged, records quarantined): they leave `kiosk status` and the outbox-integrity fault
    clears. Records are not changed: a quarantined one is still never sent.

    Example: kiosk queue ack
    """
    with _queue(args, write="kiosk queue ack") as outbox:
        problems = outbox.stats().integrity
        n = outbox.acknowledge_integrity()
    for problem in problems:
        print(f"acknowledged: {problem.message} (found {problem.found_at})")
    print(f"{n} integrity problem(s) acknowledged" + ("; quarantined identifications stay quarantined, never sent" if n else ""))
    return 0


def register(sub) -> None:
    from device.outbox import STATES  # built only for a queue command, which opens the store anyway

    qsub = add_group(
        sub,
        "queue",
        HELP["queue"],
        "Look into the outbox (works while the daemon runs).",
        example="kiosk queue list --state dead",
        dest="queue_command",
    )
    lst = add_command(qsub, "list", cmd_queue_list)
    lst.add_argument("--state", choices=STATES, help="only this state")
    show = add_command(qsub, "show", cmd_queue_show)
    show.add_argument("ref", metavar="REF", help=REF_HELP)
    retry = add_command(qsub, "retry", cmd_queue_retry)
    retry.add_argument("ref", nargs="?", metavar="REF", help=REF_HELP)
    retry.add_argument("--dead", action="store_true", help="retry every dead identification")
    resend = add_command(qsub, "resend", cmd_queue_resend)
    resend.add_argument("refs", nargs="*", metavar="REF", help=f"{REF_HELP}; or a seq range FIRST-LAST (812-830)")
    resend.add_argument("--missing", action="store_true", help="resend the delivered identifications the central lacks (it is asked)")
    add_command(qsub, "ack", cmd_queue_ack)
    for q in (lst, show):
        q.add_argument("--json", action="store_true", help="JSON output (one object per record)")
        q.add_argument("--unmask", action="store_true", help="show whole contract numbers")
