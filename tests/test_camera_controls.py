"""Exposure, flicker and the camera edge faults (issue 24, items 1 and 5), at the hardware edge only.

The cameras are fakes of picamera2 and of OpenCV's V4L2 capture that record every control set
(tests/support/camera.py); the sources, the supervisor, the status and the snapshot are the real
code. What a technician would notice: the controls the configuration asks for reach the camera
(and only those it has), what the camera applied shows in status and diag, an unplugged webcam
does not make systemd restart the daemon for ever, "down for" survives a restart, a cold snapshot
is taken once the picture settled, and a camera that fails to open leaks nothing.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time

import cv2
import pytest
from support.camera import Counter, FakeCapture, FakeVideoCapture, serial_of
from support.config import kiosk_config
from support.daemon import hand_built_kiosk
from support.kiosk import run_kiosk
from support.notify import listen, messages
from support.waiting import wait_until

from device import status
from device.camera.exposure import ExposureSettings
from device.camera.focus import FocusSettings
from device.camera.picamera2 import Picamera2Source
from device.camera.v4l2 import V4L2_CID_POWER_LINE_FREQUENCY, V4L2Source
from device.config import load
from device.daemon.notify import Notifier
from device.daemon.snapshot import SETTLE_FRAMES, take_settled_frame
from device.fault_names import CAMERA
from device.runtime_dir import CAMERA_DOWN_FILE

QUICK = dict(stall_timeout_s=0.5, backoff_initial_s=0.01, backoff_max_s=0.05)
#: A central nobody answers at: these kiosks have nothing to deliver.
NO_CENTRAL = "http://127.0.0.1:9"


def picamera2_source(picamera2_class, **kwargs) -> Picamera2Source:
    return Picamera2Source("0", camera_class=picamera2_class, **{**QUICK, **kwargs})


def first_frame(world, source):
    world.emit()
    return source.read(timeout=5)


# -- item 1: exposure as configuration, picamera2 -----------------------------------------------------


def test_picamera2_short_exposure_and_flicker_go_to_libcamera_and_what_it_applied_shows(world, picamera2_class):
    settings = ExposureSettings("short", max_exposure_us=1000, max_gain=8.0, flicker_hz=50)
    source = picamera2_source(picamera2_class, exposure=settings)
    try:
        frame = first_frame(world, source)
        applied = dict(picamera2_class.instances[0].applied_controls)
        assert applied.pop("FrameDurationLimits") == (33333, 33333)
        assert applied == {
            "AfMode": 2,
            "ExposureTime": 1000,
            "AnalogueGain": 8.0,
            "AeEnable": False,  # libcamera before 0.5: the AE off, else it would move them again
            "AeFlickerMode": 1,  # FlickerManual
            "AeFlickerPeriod": 10000,  # 50 Hz mains: lamps flicker every 10 ms
        }
        assert frame.exposure_us == 1000
        described = source.describe()
        assert "exposure short 1000 us, gain 8, flicker 50 Hz, applied 1000 us (0.48 modules at 20 cm/s), gain 8" in described
        stats = source.stats()
        assert (stats.exposure_us, stats.gain, stats.not_supported) == (1000.0, 8.0, ())
    finally:
        source.close()


def test_picamera2_sets_only_what_the_camera_advertises_and_says_what_it_could_not(world, picamera2_class):
    # A camera whose libcamera has no flicker control and no analogue gain control.
    picamera2_class.controls = {k: v for k, v in picamera2_class.controls.items() if not k.startswith(("AeFlicker", "AnalogueGain"))}
    source = picamera2_source(picamera2_class, exposure=ExposureSettings("short", max_exposure_us=500000 // 1000, flicker_hz=60))
    try:
        first_frame(world, source)
        applied = picamera2_class.instances[0].applied_controls
        assert applied["ExposureTime"] == 500 and not {"AnalogueGain", "AeFlickerMode", "AeFlickerPeriod"} & applied.keys()
        assert "not supported by this camera: AnalogueGain, AeFlickerMode" in source.describe()
        assert source.stats().not_supported == ("AnalogueGain", "AeFlickerMode")
    finally:
        source.close()


def test_picamera2_exposure_beyond_the_sensor_modes_range_is_clamped_to_it(world, picamera2_class):
    source = picamera2_source(picamera2_class, exposure=ExposureSettings("short", max_exposure_us=100_000, max_gain=40.0))
    try:
        first_frame(world, source)
        applied = picamera2_class.instances[0].applied_controls
        assert (applied["ExposureTime"], applied["AnalogueGain"]) == (66666, 16.0)  # the advertised maxima after configure
    finally:
        source.close()


def test_picamera2_auto_exposure_sets_nothing_and_reports_what_the_ae_chose(world, picamera2_class):
    source = picamera2_source(picamera2_class)
    try:
        first_frame(world, source)
        assert not {"ExposureTime", "AnalogueGain", "AeEnable", "AeFlickerMode"} & picamera2_class.instances[0].applied_controls.keys()
        assert "exposure auto, applied 16667 us (7.9 modules at 20 cm/s), gain 2.5" in source.describe()
    finally:
        source.close()


def test_picamera2_describe_tells_the_size_libcamera_set_up_and_the_frame_rate_it_runs_at(world, picamera2_class):
    picamera2_class.min_side = 64  # a Pi 4's ISP: at least 64 pixels a side
    source = picamera2_source(picamera2_class, width=48, height=32, fps=25)
    try:
        first_frame(world, source)
        assert source.describe().startswith("picamera2:0 imx708 64x64 RGB888 25fps, ")
    finally:
        source.close()


def test_picamera2_lens_range_is_read_after_configure(world, picamera2_class):
    # 20 dioptres is inside libcamera's generic 0-32 before configure, beyond a Camera Module 3's 0-15 after.
    source = picamera2_source(picamera2_class, focus=FocusSettings("manual", dioptres=20.0))
    try:
        first_frame(world, source)
        assert picamera2_class.instances[0].applied_controls["LensPosition"] == 15.0
        assert "focus manual 15 dioptres (7 cm)" in source.describe()
    finally:
        source.close()


# -- item 1: exposure as configuration, V4L2 ----------------------------------------------------------

#: The V4L2 controls of a webcam with manual exposure (OpenCV property -> value as the driver starts).
WEBCAM_CONTROLS = {cv2.CAP_PROP_AUTO_EXPOSURE: 3, cv2.CAP_PROP_EXPOSURE: 156, cv2.CAP_PROP_GAIN: 0}


def v4l2_with(world, controls, exposure, set_control=None):
    capture = FakeVideoCapture(world, controls=controls)
    recorded: list[tuple[str, int, int]] = []

    def control(path, cid, value):
        recorded.append((path, cid, value))
        return set_control(path, cid, value) if set_control else True

    source = V4L2Source("/dev/video7", capture_factory=lambda path: capture, exposure=exposure, set_control=control, **QUICK)
    return source, capture, recorded


def test_v4l2_short_exposure_sets_manual_exposure_in_100us_units_the_gain_and_the_mains_frequency(world):
    settings = ExposureSettings("short", max_exposure_us=800, v4l2_gain=64, flicker_hz=50)
    source, capture, recorded = v4l2_with(world, WEBCAM_CONTROLS, settings)
    with source:
        frame = first_frame(world, source)
        controls = [(prop, value) for prop, value, _ in capture.set_calls if prop in WEBCAM_CONTROLS]
        assert controls == [(cv2.CAP_PROP_AUTO_EXPOSURE, 1), (cv2.CAP_PROP_EXPOSURE, 8), (cv2.CAP_PROP_GAIN, 64)]
        assert recorded == [("/dev/video7", V4L2_CID_POWER_LINE_FREQUENCY, 1)]  # 1: 50 Hz
        # Read back from the driver: what it applied, not what was asked.
        assert "exposure short 800 us, gain 64, flicker 50 Hz, applied 800 us (0.38 modules at 20 cm/s), gain 64 (V4L2 units)" in (
            source.describe()
        )
        assert frame.exposure_us == 800


def test_v4l2_auto_exposure_is_put_back_on_a_camera_an_earlier_setting_left_in_manual(world):
    left_manual = {**WEBCAM_CONTROLS, cv2.CAP_PROP_AUTO_EXPOSURE: 1}
    source, capture, recorded = v4l2_with(world, left_manual, ExposureSettings("auto", flicker_hz=60))
    with source:
        first_frame(world, source)
        assert capture.controls[cv2.CAP_PROP_AUTO_EXPOSURE] == 3  # aperture priority: the UVC auto mode
        assert (cv2.CAP_PROP_EXPOSURE, 8, True) not in capture.set_calls
        assert recorded == [("/dev/video7", V4L2_CID_POWER_LINE_FREQUENCY, 2)]  # 2: 60 Hz


def test_v4l2_camera_without_the_controls_says_what_is_not_supported(world):
    source, capture, _ = v4l2_with(world, {}, ExposureSettings("short", v4l2_gain=10, flicker_hz=50), set_control=lambda *a: False)
    with source:
        first_frame(world, source)
        assert (cv2.CAP_PROP_AUTO_EXPOSURE, 1, False) in capture.set_calls  # asked, refused
        assert "not supported by this camera: auto_exposure, gain, power_line_frequency" in source.describe()
        assert source.stats().not_supported == ("auto_exposure", "gain", "power_line_frequency")


def test_the_ioctl_path_refuses_a_node_that_is_no_v4l2_device():
    from device.camera.v4l2 import set_v4l2_control

    assert set_v4l2_control("/dev/null", V4L2_CID_POWER_LINE_FREQUENCY, 1) is False
    assert set_v4l2_control("/nonexistent/video0", V4L2_CID_POWER_LINE_FREQUENCY, 1) is False


# -- item 1: status shows what the camera applied ------------------------------------------------------


def test_kiosk_status_shows_the_exposure_gain_and_lens_the_camera_applied(tmp_path, world, picamera2_class):
    cfg = load(kiosk_config(tmp_path, central=NO_CENTRAL, source="picamera2:0"), environ={})
    source = picamera2_source(picamera2_class, exposure=ExposureSettings("short", max_exposure_us=1000, max_gain=6.0))
    kiosk = hand_built_kiosk(cfg, source, runtime_dir=tmp_path / "run")
    try:
        first_frame(world, source)
        daemon = kiosk.supervisor.status()
        assert daemon.camera.counters["exposure_us"] == 1000 and daemon.camera.counters["gain"] == 6.0
        assert daemon.camera.counters["lens_position"] == 4.8
        status.write_status(tmp_path / "run", daemon)  # this test process plays the daemon
        shown = run_kiosk("status", "--config", str(kiosk_config(tmp_path, central=NO_CENTRAL, source="picamera2:0")))
    finally:
        source.close()
        kiosk.outbox.close()
    line = next(line for line in shown.stdout.splitlines() if line.startswith("camera"))
    assert "1280x720 RGB888 30fps" in line and "lens 4.8 dioptres" in line
    assert "exposure short 1000 us, gain 6, applied 1000 us (0.48 modules at 20 cm/s), gain 6" in line


# -- item 5: the watchdog, an absent USB camera, a stalled CSI camera ----------------------------------


def watchdog_turn(kiosk, sock) -> bool:
    """One housekeeping turn while the scan loop turns: whether it fed systemd's watchdog."""
    kiosk.loop.heartbeat = time.monotonic()
    kiosk.supervisor.turn(1.0)
    return any("WATCHDOG=1" in m for m in messages(sock, lambda m: any("STATUS=" in x for x in m)))


def test_an_absent_usb_camera_keeps_the_watchdog_fed_and_its_fault_stays(tmp_path, caplog):
    cfg = load(kiosk_config(tmp_path, central=NO_CENTRAL, source="v4l2:/dev/video9"), environ={})
    counter = Counter()
    counter.unplug()  # never there: a webcam left unplugged
    source = V4L2Source("/dev/video9", capture_factory=lambda path: FakeCapture(counter), **QUICK)
    sock, path = listen(tmp_path)
    notifier = Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "30000000"})
    kiosk = hand_built_kiosk(cfg, source, notifier=notifier, camera_restart_after_s=1.0, runtime_dir=tmp_path / "run")
    stop = threading.Event()
    loop = threading.Thread(target=kiosk.loop.run, args=(stop,))
    loop.start()
    try:
        wait_until(lambda: source.no_frame_for_s() > 1.5 and CAMERA in kiosk.faults.active(), what="the camera silent past restart_after_s")
        with caplog.at_level("WARNING", logger="device.daemon"):
            assert watchdog_turn(kiosk, sock) and watchdog_turn(kiosk, sock)
        assert sum("a restart would not bring this camera back" in r.getMessage() for r in caplog.records) == 1
        assert CAMERA in kiosk.status().faults and kiosk.supervisor.restart_reason is None
        wait_until(lambda: source.stats().reopen_attempts >= 3, what="reopen attempts go on")
    finally:
        stop.set()
        loop.join(timeout=10)
        source.close()
        kiosk.outbox.close()
        sock.close()


def test_a_csi_camera_that_stalled_after_frames_still_starves_the_watchdog(tmp_path, world, picamera2_class):
    cfg = load(kiosk_config(tmp_path, central=NO_CENTRAL, source="picamera2:0"), environ={})
    source = picamera2_source(picamera2_class)
    sock, path = listen(tmp_path)
    notifier = Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "30000000"})
    kiosk = hand_built_kiosk(cfg, source, notifier=notifier, camera_restart_after_s=1.0, runtime_dir=tmp_path / "run")
    try:
        first_frame(world, source)
        assert watchdog_turn(kiosk, sock)
        # No frame since (the ribbon cable slipped): libcamera's pipeline is stuck, a restart frees it.
        wait_until(lambda: source.no_frame_for_s() > 1.5, what="the camera silent past restart_after_s")
        assert not watchdog_turn(kiosk, sock)
        world.emit()
        wait_until(lambda: source.no_frame_for_s() < 1.0, what="a frame again")
        assert watchdog_turn(kiosk, sock)
    finally:
        source.close()
        kiosk.outbox.close()
        sock.close()


def test_down_for_counts_across_daemon_restarts_and_ends_when_frames_come(tmp_path):
    cfg = load(kiosk_config(tmp_path, central=NO_CENTRAL, source="v4l2:/dev/video9"), environ={})
    run_dir = tmp_path / "run"
    counter = Counter()
    counter.unplug()

    def daemon():
        source = V4L2Source("/dev/video9", capture_factory=lambda path: FakeCapture(counter), **QUICK)
        return source, hand_built_kiosk(cfg, source, runtime_dir=run_dir)

    source, kiosk = daemon()
    try:
        wait_until(lambda: source.stats().state == "down", what="the camera down")
        kiosk.supervisor.turn(1.0)
        record = json.loads((run_dir / CAMERA_DOWN_FILE).read_text())
        assert record["source"] == "v4l2:/dev/video9" and record["boot_id"] == status.boot_id()
    finally:
        source.close()
        kiosk.outbox.close()
    # As if it went down 10 minutes ago: the next daemon must go on counting from there.
    record["down_since_monotonic"] = time.monotonic() - 600
    (run_dir / CAMERA_DOWN_FILE).write_text(json.dumps(record))

    source, kiosk = daemon()  # the restarted daemon, a new process's camera
    stop = threading.Event()
    try:
        kiosk.supervisor.start(stop)
        wait_until(lambda: source.stats().state == "down", what="the camera down again")
        assert source.stats().down_for_s >= 600
        assert re.search(r"down for 6\d\d s", kiosk.supervisor.status().camera.source)
        counter.plug()
        wait_until(lambda: source.stats().state == "up", what="the camera back")
        kiosk.supervisor.turn(1.0)
        assert not (run_dir / CAMERA_DOWN_FILE).exists()  # the outage is over: the next one starts afresh
    finally:
        kiosk.supervisor.stop()
        source.close()
        kiosk.outbox.close()


# -- item 5: a failed reopen leaks no descriptor -------------------------------------------------------


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_the_picamera2_double_leaks_a_descriptor_per_failed_construction_like_picamera2(world, picamera2_class):
    """The double must leak where picamera2 leaks, or the test below proves nothing."""
    picamera2_class.owners.add(0)  # the camera busy: acquire() fails in the constructor
    before = open_fds()
    for _ in range(5):
        with pytest.raises(RuntimeError):
            picamera2_class(0)
    assert open_fds() - before == 5  # the pipes' write ends (the read ends are closed when collected)


def test_repeated_failed_reopens_of_picamera2_leak_no_descriptor(world, picamera2_class):
    picamera2_class.owners.add(0)  # another owner holds the camera: every open fails
    source = picamera2_source(picamera2_class)
    try:
        wait_until(lambda: source.stats().open_attempts >= 3, what="the first failed opens")
        before, attempts = open_fds(), source.stats().open_attempts
        wait_until(lambda: source.stats().open_attempts >= attempts + 20, what="20 more failed opens")
        assert open_fds() <= before
        assert "Camera __init__ sequence did not complete" in source.stats().last_error
    finally:
        source.close()


def test_without_cancel_all_and_flush_the_camera_is_still_closed(world, picamera2_class, monkeypatch, caplog):
    monkeypatch.delattr(picamera2_class, "cancel_all_and_flush")  # picamera2 before 0.3.20
    source = picamera2_source(picamera2_class)
    try:
        first_frame(world, source)
        with caplog.at_level("WARNING", logger="device.camera"):
            world.unplug()
            wait_until(lambda: picamera2_class.instances[0].closed, what="the old camera closed")
        assert any("older than 0.3.20" in r.getMessage() for r in caplog.records)
    finally:
        source.close()


# -- item 5: the cold snapshot waits until the picture settled -----------------------------------------


def settled_shot(world, source, timeout: float):
    """:func:`take_settled_frame` of ``source`` while ``world`` sends a frame every 10 ms; the source closed after."""
    stop = threading.Event()

    def emit():
        while not stop.wait(0.01):
            world.emit()

    threading.Thread(target=emit, daemon=True).start()
    try:
        return take_settled_frame(source, timeout=timeout)
    finally:
        stop.set()
        source.close()


def test_cold_snapshot_waits_until_the_camera_says_exposure_and_focus_settled(world, picamera2_class):
    picamera2_class.settle_frames = 8  # AeLocked false and AfState scanning for 8 frames
    frame, settling, _ = settled_shot(world, picamera2_source(picamera2_class), timeout=30)
    assert serial_of(frame) > 8  # captured after the camera said it settled, not the first frame
    assert settling.startswith("exposure and focus settled after ")


def test_cold_snapshot_of_a_camera_that_does_not_say_waits_some_frames(world):
    frame, settling, _ = settled_shot(world, V4L2Source("/dev/video7", capture_factory=lambda path: FakeVideoCapture(world), **QUICK), 30)
    assert serial_of(frame) >= SETTLE_FRAMES
    assert "the camera does not say when its exposure settled" in settling


def test_cold_snapshot_that_does_not_settle_in_time_says_so(world, picamera2_class):
    picamera2_class.settle_frames = 10**9
    frame, settling, _ = settled_shot(world, picamera2_source(picamera2_class), timeout=0.5)
    assert frame is not None and settling.startswith("NOT settled within 0.5 s")
