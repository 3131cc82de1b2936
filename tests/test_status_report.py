"""The status report (issue 21): typed, versioned, read back strictly.

A key renamed in the status file must make ``kiosk status`` say which one, never print 0 for it;
``kiosk status --json`` is the JSON it always was, plus its version.
"""

from __future__ import annotations

import json

import pytest
from support.config import write_config
from support.kiosk import run_kiosk
from support.status import daemon_status, delivery_health, outbox_health

from device.health.delivery import DeliveryState
from device.health.outbox import IntegrityProblem
from device.health.outputs import OutputHealth
from device.runtime_dir import STATUS_FILE
from device.status import write_status
from device.status.report import (
    STATUS_VERSION,
    VERSION_KEY,
    CameraStatus,
    DaemonStatus,
    LastIdentification,
    MissingKey,
    ReplacedListStatus,
    ScanStatus,
    StatusFormatError,
    StatusReport,
    Unreadable,
)

#: The keys ``kiosk status --json`` had before the report was typed; it keeps every one.
REPORT_KEYS = {"running", "why", "kiosk_id", "daemon", "queue", "disk_free_bytes", "clock_synced", "cpu_temperature_c",
               "warnings", "stopped_because", "revocations"}  # fmt: skip
DAEMON_KEYS = {"pid", "version", "kiosk_id", "uptime_s", "camera", "scan", "queue", "delivery", "faults", "outputs",
               "disk_free_bytes", "clock_synced", "cpu_temperature_c", "boot_id", "written_monotonic", "written_at"}  # fmt: skip


LOST = "outbox lost 2 committed identifications, seq 3-4"


def busy_daemon() -> DaemonStatus:
    """A daemon with something in every part: a live camera, a last card, a queue with a problem, a retrying delivery."""
    return daemon_status(
        camera=CameraStatus("v4l2:/dev/video0", "down", "unplugged", {"frames_captured": 40, "reopen_attempts": 2}),
        scan=ScanStatus(frames=40, decoded_frames=3, identifications=2,
                        last_identification=LastIdentification("******5678", 1, 7, "2026-12-02T08:15:00Z"), last_identification_age_s=12.5),
        queue=outbox_health(pending=3, dead=1, oldest_pending_age_s=90.0,
                            integrity=[IntegrityProblem("2026-12-02T08:00:00Z", "lost", LOST)], integrity_unacknowledged=1,
                            integrity_fault=LOST),
        delivery=delivery_health(state=DeliveryState.RETRYING, consecutive_failures=2, last_error="cannot reach the central"),
        faults={"camera": "unplugged"},
        outputs={"Pos": OutputHealth(queued=1, dropped={"identified": 2}, failures=0)},
        revocations=ReplacedListStatus(3, 10, "2026-12-01T00:00:00Z", "k1", "2026-12-02T08:00:00Z", None, None, "/var/lib/kiosk/rev.db",
                                       8192, 900.0, max_age_s=259200.0, interval_s=3600.0, fault=None),
    )  # fmt: skip


def test_the_daemon_status_reads_back_as_it_was_written():
    daemon = busy_daemon()
    again = DaemonStatus.from_json(json.loads(json.dumps(daemon.to_json())))
    assert again == daemon
    assert again.delivery.state is DeliveryState.RETRYING and isinstance(again.queue.integrity[0], IntegrityProblem)


def test_an_unreadable_part_stays_unreadable_with_its_reason():
    daemon = daemon_status(queue=Unreadable("database is locked"), revocations=Unreadable("no such table: meta"))
    data = json.loads(json.dumps(daemon.to_json()))
    assert data["queue"] == {"error": "database is locked"} and data["revocations"] == {"error": "no such table: meta"}
    assert DaemonStatus.from_json(data) == daemon


@pytest.mark.parametrize("path", ["scan.frames", "delivery.state", "queue.pending", "camera.source", "outputs.Pos.failures", "faults"])
def test_a_missing_key_is_named_not_read_as_zero(path):
    data = json.loads(json.dumps(busy_daemon().to_json()))
    *parents, last = path.split(".")
    part = data
    for key in parents:
        part = part[key]
    del part[last]
    with pytest.raises(MissingKey) as raised:
        DaemonStatus.from_json(data)
    assert raised.value.key == path and repr(path) in str(raised.value)


def test_another_version_is_said_plainly():
    data = busy_daemon().to_json()
    newer = f"version {STATUS_VERSION + 1}, this command reads version {STATUS_VERSION}: the daemon is newer"
    with pytest.raises(StatusFormatError, match=newer):
        DaemonStatus.from_json({**data, VERSION_KEY: STATUS_VERSION + 1})
    del data[VERSION_KEY]
    with pytest.raises(StatusFormatError, match="has no status_version: the daemon is older than this command"):
        DaemonStatus.from_json(data)


def test_a_state_the_command_does_not_know_is_an_error_not_a_guess():
    data = busy_daemon().to_json()
    data["delivery"]["state"] = "paused-forever"
    with pytest.raises(StatusFormatError, match="delivery cannot be read: 'paused-forever' is not a valid DeliveryState"):
        DaemonStatus.from_json(data)


# --- as a technician sees it ------------------------------------------------------------------------


def _kiosk(tmp_path):
    return write_config(tmp_path / "kiosk.toml", kiosk={"id": "kiosk-status-1", "runtime_dir": str(tmp_path / "run")},
                        outbox={"path": str(tmp_path / "outbox.db")})  # fmt: skip


def test_kiosk_status_with_a_renamed_key_names_it_and_exits_1(tmp_path):
    cfg = _kiosk(tmp_path)
    write_status(tmp_path / "run", busy_daemon())
    path = tmp_path / "run" / STATUS_FILE
    data = json.loads(path.read_text())
    data["scan"]["frames_read"] = data["scan"].pop("frames")  # a daemon that renamed a key
    path.write_text(json.dumps(data))
    shown = run_kiosk("status", "--config", str(cfg))
    assert shown.returncode == 1 and "Traceback" not in shown.stderr, shown.stderr
    assert f"daemon      running, but its status cannot be read: {path}: the status has no 'scan.frames'" in shown.stdout, shown.stdout
    assert "frames      0 read" not in shown.stdout and "faults      none" not in shown.stdout


def test_kiosk_status_reads_a_running_daemon_by_attribute(tmp_path):
    cfg = _kiosk(tmp_path)
    write_status(tmp_path / "run", busy_daemon())
    shown = run_kiosk("status", "--config", str(cfg))
    assert shown.returncode == 1, shown.stderr  # a fault and a dead identification
    for line in (
        "camera      v4l2:/dev/video0; last error: unplugged",
        "frames      40 read, 3 decoded, 0 unusable",
        "last card   contract ******5678 issue 1, 12 s ago (seq 7)",
        "queue       3 pending (oldest 1.5 min), 1 dead <- kiosk queue list --state dead, 0 delivered",
        "outbox      INTEGRITY: outbox lost 2 committed identifications, seq 3-4 (found 2026-12-02T08:00:00Z)",
        "delivery    RETRYING to https://central.example.net; last success never; last error: cannot reach the central",
        "replaced    version 3, 10 contracts, 0.0 MB, confirmed by the central 15 min ago",
        "output      Pos: 2 identified events dropped",
        "FAULT       camera: unplugged",
    ):
        assert line in shown.stdout, shown.stdout


def test_kiosk_status_json_is_the_same_json_with_its_version(tmp_path):
    cfg = _kiosk(tmp_path)
    write_status(tmp_path / "run", busy_daemon())
    shown = run_kiosk("status", "--json", "--config", str(cfg))
    report = json.loads(shown.stdout)
    assert report[VERSION_KEY] == STATUS_VERSION and set(report) == REPORT_KEYS | {VERSION_KEY}
    daemon = report["daemon"]
    assert daemon[VERSION_KEY] == STATUS_VERSION and set(daemon) == DAEMON_KEYS | {VERSION_KEY, "revocations"}
    assert daemon["delivery"]["state"] == "retrying" and daemon["queue"]["pending"] == 3 and daemon["scan"]["frames"] == 40
    assert StatusReport.from_json(report).daemon == DaemonStatus.from_json(daemon)


def test_kiosk_status_json_without_a_daemon_reads_the_outbox_itself(tmp_path):
    from device.card import Card
    from device.outbox import Outbox

    with Outbox(tmp_path / "outbox.db", kiosk_id="kiosk-status-1", site="Riga") as box:
        box.commit(Card("v1", "0012345678", 1), symbology="Code128", decoder="zxing-cpp")
    shown = run_kiosk("status", "--json", "--config", str(_kiosk(tmp_path)))
    report = json.loads(shown.stdout)
    assert shown.returncode == 1 and report["running"] is False and report["daemon"] is None
    assert report[VERSION_KEY] == STATUS_VERSION and set(report) == REPORT_KEYS | {VERSION_KEY}
    assert report["queue"]["pending"] == 1 and report["queue"]["last_seq"] == 1
