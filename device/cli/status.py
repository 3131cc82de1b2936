"""`kiosk status`: is the kiosk working? Read from the daemon's status file, cheap to run all day."""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from device.cli import add_command, load_config

if TYPE_CHECKING:
    from device.status.report import StatusReport

HELP = {"status": "is the kiosk working? daemon, camera, last card, queue, delivery, disk, clock"}


def cmd_status(args) -> int:
    """Show what the kiosk is doing: whether the daemon runs, the camera and frames, the last
    identification (contract masked), the queue, delivery to the central, disk, clock and CPU
    temperature. Exit 0 when the daemon runs without faults and no identification is dead, else 1.
    ``--unmask`` shows the last identification's whole contract number (read from the outbox; the
    status file holds it masked).

    Example: kiosk status --unmask
    """
    from device.status.build import build_report
    from device.status.render import render

    cfg = load_config(args, check_files=False)
    report = build_report(cfg)
    if args.unmask:
        report = _unmask_last_identification(cfg, report)
    if args.json:
        print(json.dumps(report.to_json(), default=str))
    else:
        sys.stdout.write(f"kiosk {cfg.kiosk.id}{' at ' + cfg.kiosk.site if cfg.kiosk.site else ''}\n")
        sys.stdout.write(render(report))
    return 0 if report.healthy else 1


def _unmask_last_identification(cfg, report: StatusReport) -> StatusReport:
    """The report with the daemon's last identification's whole contract, looked up by its seq in the outbox."""
    from device.outbox import OutboxError
    from device.outbox.reader import open_outbox_reader

    daemon = report.daemon
    last = daemon.scan.last_identification if daemon else None
    if not last or not Path(cfg.outbox.path).exists():
        return report
    try:
        outbox = open_outbox_reader(cfg)
        try:
            contract = outbox.find(str(last.seq)).contract
        finally:
            outbox.close()
    except OutboxError as e:
        contract = f"{last.contract} (whole number not readable: {e})"
    scan = replace(daemon.scan, last_identification=replace(last, contract=contract))
    return replace(report, daemon=replace(daemon, scan=scan))


def register(sub) -> None:
    p = add_command(sub, "status", cmd_status, HELP["status"])
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--unmask", action="store_true", help="the last identification's whole contract number (default: masked)")
