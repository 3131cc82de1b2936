"""The report ``kiosk status`` shows (also ``--json`` and the diag bundle), built from the daemon's
status file while it runs, else from what the command reads itself (the outbox, the replaced-card
copy, why the daemon stopped)::

    report = build_report(cfg)
    print(report.running, report.queue)
"""

from __future__ import annotations

from pathlib import Path

from device.runtime_dir import STATUS_FILE
from device.status.access import token_file_warning
from device.status.file import read_status
from device.status.host import cpu_temperature_c, disk_free_bytes
from device.status.report import DaemonStatus, QueueStatus, ReplacedListState, StatusFormatError, StatusReport, Unreadable


def build_report(cfg) -> StatusReport:
    """What ``kiosk status`` shows, for the kiosk ``cfg`` configures."""
    from device.clock import ntp_synchronized
    from device.diag import why_stopped

    snapshot = read_status(Path(cfg.kiosk.runtime_dir))
    daemon, why = None, snapshot.why
    if snapshot.running:
        try:
            daemon = DaemonStatus.from_json(snapshot.data)
        except StatusFormatError as e:
            why = f"{Path(cfg.kiosk.runtime_dir) / STATUS_FILE}: {e}"
    # A running daemon's status already holds the counts: the outbox is opened only without one.
    queue = daemon.queue if daemon is not None else _outbox_on_disk(cfg)
    return StatusReport(
        running=snapshot.running,
        why=why,
        kiosk_id=cfg.kiosk.id,
        daemon=daemon,
        queue=queue,
        disk_free_bytes=disk_free_bytes(cfg.outbox.path),
        clock_synced=ntp_synchronized(),
        cpu_temperature_c=cpu_temperature_c(),
        warnings=[w for w in (token_file_warning(cfg.api.token_file),) if w],
        stopped_because=None if snapshot.running else why_stopped(cfg.outbox.path),
        # With the daemon stopped its status says nothing of the list: read the copy (read-only).
        revocations=None if daemon is not None or not cfg.revocations.enabled else _list_on_disk(cfg),
    )


def _outbox_on_disk(cfg) -> QueueStatus | None:
    """The outbox's health read by the command (None: there is no outbox yet)."""
    if not Path(cfg.outbox.path).exists():
        return None
    from device.outbox import OutboxError
    from device.outbox.reader import open_outbox_reader

    try:
        outbox = open_outbox_reader(cfg)
        try:
            return outbox.stats()
        finally:
            outbox.close()
    except OutboxError as e:
        return Unreadable(str(e))


def _list_on_disk(cfg) -> ReplacedListState:
    """The replaced-card copy's version, age and size, or why it cannot be read."""
    from device.revocations.store import RevocationsError, open_copy_reader
    from device.status.report import ReplacedListStatus

    try:
        copy = open_copy_reader(cfg)
        try:
            return ReplacedListStatus(**copy.info())
        finally:
            copy.close()
    except RevocationsError as e:
        return Unreadable(str(e))
