"""``kiosk status`` for a person: one line per subject, problems first-class.

::

    report = build_report(cfg)
    sys.stdout.write(render(report))
"""

from __future__ import annotations

from dataclasses import asdict

from device.health.outbox import OutboxHealth
from device.redact import escape
from device.status.report import DaemonStatus, QueueStatus, ReplacedListState, StatusReport, Unreadable


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "never"
    seconds = max(0.0, float(seconds))
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.0f} s"


def _bytes(n: int | None) -> str:
    if n is None:
        return "unknown"
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} B"


def dead_problem(queue: QueueStatus | None) -> str | None:
    """The line on dead identifications (the central refused them: never delivered), or None.

    They need a technician, so ``kiosk status`` exits 1 while there are any::

        >>> from device.health.outbox import OutboxHealth
        >>> queue = OutboxHealth(
        ...     path="outbox.db", pending=0, delivered=5, dead=2, quarantined=0, refusals=0, pos_outcomes={},
        ...     oldest_pending_scanned_at=None, oldest_pending_age_s=None, last_error=None, last_error_at=None, last_seq=7,
        ...     last_commit_error=None, moved_aside=None, corrupt_files=[], integrity=[], integrity_unacknowledged=0,
        ...     mark_error=None, integrity_fault=None,
        ... )
        >>> dead_problem(queue)
        '2 identification(s) refused by the central, never delivered: kiosk queue list --state dead'
    """
    if not isinstance(queue, OutboxHealth) or not queue.dead:
        return None
    return f"{queue.dead} identification(s) refused by the central, never delivered: kiosk queue list --state dead"


def _daemon_lines(daemon: DaemonStatus) -> list[str]:
    cam = daemon.camera
    problem = f"; last error: {cam.last_error}" if cam.last_error and cam.state != "up" else ""
    lines = [f"camera      {cam.source}{problem}"]
    scan = daemon.scan
    lines.append(f"frames      {scan.frames} read, {scan.decoded_frames} decoded, {scan.odd_frames} unusable")
    last = scan.last_identification
    if last:
        ago = _age(scan.last_identification_age_s)
        lines.append(f"last card   contract {last.contract} issue {last.issue}, {ago} ago (seq {last.seq})")
    else:
        lines.append("last card   none since start")
    refused = f", {scan.refusals} replaced cards refused" if scan.refusals else ""
    lines.append(f"today       {scan.identifications} identified{refused}, {scan.not_a_card} not a card (since start)")
    asked = daemon.requests
    if asked is not None and (asked.ignored or asked.expired):
        lines.append(
            f"requests    {asked.ignored} ignored (not a request: journalctl -u kiosk | grep 'request folder'), "
            f"{asked.expired} expired, {asked.answered} answered"
        )
    return lines


def _queue_lines(queue: QueueStatus) -> list[str]:
    if isinstance(queue, Unreadable):
        return [f"queue       cannot read: {queue.error}"]
    oldest = f" (oldest {_age(queue.oldest_pending_age_s)})" if queue.pending else ""
    dead, quarantined = queue.dead, queue.quarantined
    lines = [
        f"queue       {queue.pending} pending{oldest}, {dead} dead{' <- kiosk queue list --state dead' if dead else ''}, "
        f"{queue.delivered} delivered"
        + (f", {quarantined} QUARANTINED (never sent) <- kiosk queue list --state quarantined" if quarantined else "")
        + (f"; {queue.refusals} of these are refusals of replaced cards" if queue.refusals else "")
    ]
    if queue.pos_outcomes:
        counts = ", ".join(f"{n} {outcome}" for outcome, n in queue.pos_outcomes.items())
        lines.append(f"pos         {counts} (of the identifications kept) <- kiosk queue show SEQ")
    if queue.corrupt_files:
        lines.append(f"outbox      damaged file(s) moved aside, kept for inspection: {', '.join(queue.corrupt_files)}")
    if queue.last_commit_error:
        lines.append(f"outbox      CANNOT STORE: {queue.last_commit_error}")
    return lines + _integrity_lines(queue)


def _integrity_lines(queue: OutboxHealth) -> list[str]:
    """What the outbox found wrong with itself (lost, salvaged, quarantined), until acknowledged."""
    lines = [f"outbox      INTEGRITY: {p.message} (found {p.found_at})" for p in queue.integrity]
    more = queue.integrity_unacknowledged - len(queue.integrity)
    if more > 0:
        lines.insert(0, f"outbox      INTEGRITY: {more} older problem(s) not listed")
    if queue.mark_error:
        lines.append(f"outbox      INTEGRITY: {queue.mark_error}")
    if queue.integrity:
        lines.append("outbox      once handled: kiosk queue ack (the fault clears; the records stay as they are)")
    return lines


def _replaced_line(revocations: ReplacedListState) -> str:
    from device.revocations.store import summary

    return f"replaced    {revocations.error if isinstance(revocations, Unreadable) else summary(asdict(revocations))}"


def render(report: StatusReport) -> str:
    """``kiosk status`` for a person: one line per subject, problems first-class."""
    lines = []
    daemon = report.daemon
    if daemon is not None:
        lines.append(f"daemon      running (pid {daemon.pid}, up {_age(daemon.uptime_s)}), version {daemon.version}")
        lines += _daemon_lines(daemon)
    elif report.running:  # it runs, but its status file is not one this command reads
        lines.append(f"daemon      running, but its status cannot be read: {report.why}")
    else:
        lines.append(f"daemon      NOT RUNNING: {report.why}")
        lines += [f"            {escape(line, 400)}" for line in report.stopped_because or ()]
    if report.queue is not None:
        lines += _queue_lines(report.queue)
    delivery = daemon.delivery if daemon else None
    if delivery:
        last_ok = delivery.last_success_at or "never"
        err = f"; last error: {delivery.last_error}" if delivery.last_error and delivery.state != "ok" else ""
        lines.append(f"delivery    {delivery.state.label} to {delivery.url}; last success {last_ok}{err}")
    # The daemon's view while it runs; else the copy on disk, read by the command.
    revocations = (daemon.revocations if daemon else None) or report.revocations
    if revocations:
        lines.append(_replaced_line(revocations))
    for name, out in sorted((daemon.outputs if daemon else {}).items()):
        # Frames an output skips while behind are normal; lost events and errors are not.
        lost = {event: n for event, n in out.dropped.items() if event != "frame"}
        if lost or out.failures:
            what = [f"{n} {event} events dropped" for event, n in sorted(lost.items())]
            what += [f"{out.failures} failed calls (see the log)"] if out.failures else []
            lines.append(f"output      {name}: {', '.join(what)}")
    lines.append(f"disk        {_bytes(report.disk_free_bytes)} free where the outbox is")
    lines.append(f"clock       {'synchronised' if report.clock_synced else 'NOT synchronised (identifications are marked so)'}")
    temp = report.cpu_temperature_c
    lines.append(f"cpu temp    {temp:.1f} C" if temp is not None else "cpu temp    no sensor")
    for warning in report.warnings:
        lines.append(f"WARNING     {warning}")
    dead = dead_problem(report.queue)
    if dead:
        lines.append(f"DEAD        {dead}")
    faults = daemon.faults if daemon else {}
    if faults:
        for name, message in sorted(faults.items()):
            lines.append(f"FAULT       {name}: {message}")
    elif report.running and daemon is not None:
        lines.append("faults      none")
    return "\n".join(lines) + "\n"
