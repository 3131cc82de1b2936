"""`kiosk status`: is the kiosk working? Read from the daemon's status file, cheap to run all day."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from device.cli import add_command, load_config

if TYPE_CHECKING:
    from device.status import Snapshot

HELP = {"status": "is the kiosk working? daemon, camera, last card, queue, delivery, disk, clock"}


def cmd_status(args) -> int:
    """Show what the kiosk is doing: whether the daemon runs, the camera and frames, the last
    identification (contract masked), the queue, delivery to the central, disk, clock and CPU
    temperature. Exit 0 when the daemon runs without faults and no identification is dead, else 1.
    ``--unmask`` shows the last identification's whole contract number (read from the outbox; the
    status file holds it masked).

    Example: kiosk status --unmask
    """
    from device import status

    cfg = load_config(args, check_files=False)
    report, snapshot = build_report(cfg)
    if args.unmask:
        _unmask_last_identification(cfg, report)
    if args.json:
        print(json.dumps(report, default=str))
    else:
        sys.stdout.write(f"kiosk {cfg.kiosk.id}{' at ' + cfg.kiosk.site if cfg.kiosk.site else ''}\n")
        sys.stdout.write(status.render(report))
    healthy = snapshot.running and not (snapshot.data or {}).get("faults") and status.dead_problem(report["queue"]) is None
    return 0 if healthy else 1


def _unmask_last_identification(cfg, report: dict) -> None:
    """The whole contract of the daemon's last identification, looked up by its seq in the outbox."""
    from device.outbox import OutboxError
    from device.outbox.reader import open_outbox_reader

    last = ((report.get("daemon") or {}).get("scan") or {}).get("last_identification")
    if not last or not Path(cfg.outbox.path).exists():
        return
    try:
        outbox = open_outbox_reader(cfg)
        try:
            last["contract"] = outbox.find(str(last["seq"])).contract
        finally:
            outbox.close()
    except OutboxError as e:
        last["contract"] += f" (whole number not readable: {e})"


def build_report(cfg) -> tuple[dict, Snapshot]:
    """What ``kiosk status --json`` prints (also in ``kiosk diag bundle``), and the daemon's snapshot."""
    from device import status
    from device.clock import ntp_synchronized
    from device.diag import why_stopped

    snapshot = status.read_status(Path(cfg.kiosk.runtime_dir))
    queue = None
    if snapshot.running:
        queue = snapshot.data.get("queue")
    elif Path(cfg.outbox.path).exists():
        # Only with the daemon stopped: a running daemon's status file already holds the
        # counts, so the outbox is opened only when there is none.
        from device.outbox import OutboxError
        from device.outbox.reader import open_outbox_reader

        try:
            outbox = open_outbox_reader(cfg)
            try:
                queue = outbox.stats()
            finally:
                outbox.close()
        except OutboxError as e:
            queue = {"error": str(e)}
    report = {
        "running": snapshot.running,
        "why": snapshot.why,
        "kiosk_id": cfg.kiosk.id,
        "daemon": snapshot.data if snapshot.running else None,
        "queue": queue,
        "disk_free_bytes": status.disk_free_bytes(cfg.outbox.path),
        "clock_synced": ntp_synchronized(),
        "cpu_temperature_c": status.cpu_temperature_c(),
        "warnings": [w for w in (status.token_file_warning(cfg.api.token_file),) if w],
        "stopped_because": None if snapshot.running else why_stopped(cfg.outbox.path),
        # With the daemon stopped its status says nothing of the list: read the copy (read-only).
        "revocations": None if snapshot.running or not cfg.revocations.enabled else _list_on_disk(cfg),
    }
    return report, snapshot


def _list_on_disk(cfg) -> dict:
    """The replaced-card copy's version, age and size, or ``error``: why it cannot be read."""
    from device.cli.revocations import _copy
    from device.revocations.store import RevocationsError

    try:
        copy = _copy(cfg)
        try:
            return copy.info()
        finally:
            copy.close()
    except RevocationsError as e:
        return {"error": str(e)}


def register(sub) -> None:
    p = add_command(sub, "status", cmd_status, HELP["status"])
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--unmask", action="store_true", help="the last identification's whole contract number (default: masked)")
