"""Complete status values for tests that stand in for a running daemon (its status file) or render a report.

Every field is given, as the daemon gives them (the status is read back strictly: a missing key is
an error, not a 0); a test changes only what it is about::

    write_status(runtime, daemon_status(camera=CameraStatus("v4l2:/dev/video0")))
"""

from __future__ import annotations

import dataclasses
import os

from device.health.delivery import DeliveryHealth, DeliveryState
from device.health.outbox import OutboxHealth
from device.status.report import CameraStatus, DaemonStatus, ScanStatus


def outbox_health(**changes) -> OutboxHealth:
    """An outbox with nothing in it and nothing wrong, but for ``changes``."""
    empty = OutboxHealth(
        path="/var/lib/kiosk/outbox.db", pending=0, delivered=0, dead=0, quarantined=0, refusals=0, pos_outcomes={},
        oldest_pending_scanned_at=None, oldest_pending_age_s=None, last_error=None, last_error_at=None, last_seq=0,
        last_commit_error=None, moved_aside=None, corrupt_files=[], integrity=[], integrity_unacknowledged=0,
        mark_error=None, integrity_fault=None,
    )  # fmt: skip
    return dataclasses.replace(empty, **changes)


def delivery_health(**changes) -> DeliveryHealth:
    """A forwarder that has delivered nothing yet and failed at nothing, but for ``changes``."""
    idle = DeliveryHealth(
        state=DeliveryState.OK, url="https://central.example.net", paused_by_auth=False, auth_fault=None,
        consecutive_failures=0, last_error=None, next_step="", last_error_at=None, failing_since=None,
        failing_for_s=None, last_success_at=None, delivered_total=0,
    )  # fmt: skip
    return dataclasses.replace(idle, **changes)


def daemon_status(**changes) -> DaemonStatus:
    """A daemon (this test process) just started: nothing scanned, nothing queued, no fault; but for ``changes``."""
    started = DaemonStatus(
        pid=os.getpid(), version="test", kiosk_id="kiosk-test", uptime_s=1.0, camera=CameraStatus("v4l2:/dev/video0"),
        scan=ScanStatus(), queue=outbox_health(), delivery=delivery_health(), faults={}, outputs={},
        disk_free_bytes=10**9, clock_synced=True, cpu_temperature_c=None,
    )  # fmt: skip
    return dataclasses.replace(started, **changes)
