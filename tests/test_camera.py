"""Frame sources: files (videos, images, folders) and the live cameras' grab/reopen logic.

No hardware: videos and images are written into tmp_path; the live backends get a fake capture
device (a "camera world" the test controls: frames, unplugging, stalls) through their factory.
"""

from __future__ import annotations

import concurrent.futures
import logging
import os
import sys
import threading

import cv2
import numpy as np
import pytest
from support.camera import UVC_BY_ID, CameraWorld, FakeVideoCapture, fake_video4linux, serial_of
from support.waiting import wait_until

from device.camera import CameraError, open_source
from device.camera.file import FileSource, iter_frames, media_kind
from device.camera.focus import FocusSettings
from device.camera.grabber import FrameGrabber
from device.camera.picamera2 import MISSING_MESSAGE, Picamera2Source
from device.camera.v4l2 import V4L2Source, device_path

# -- media written by the tests ------------------------------------------------------------------


def shade(i: int) -> int:
    """The grey level of frame ``i`` in the generated media: far apart, survives JPEG."""
    return 20 + (20 * i) % 220


def write_video(path, frames: int, fps: float = 10.0, size=(64, 48)):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, size)
    assert writer.isOpened(), "opencv cannot write MJPG .avi here"
    for i in range(frames):
        writer.write(np.full((size[1], size[0], 3), shade(i), np.uint8))
    writer.release()
    return path


def write_image(path, level: int, grey: bool = False):
    image = np.full((30, 40) if grey else (30, 40, 3), level, np.uint8)
    assert cv2.imwrite(str(path), image)
    return path


def level_of(frame) -> int:
    return int(round(float(frame.image.mean())))


@pytest.fixture
def video(tmp_path):
    return write_video(tmp_path / "clip.avi", frames=8, fps=10.0)


# -- files: iter_frames ---------------------------------------------------------------------------


def test_video_frames_come_in_order_with_their_numbers(video):
    frames = list(iter_frames(video))
    assert [f.index for f in frames] == list(range(8))
    assert all(abs(level_of(f) - shade(f.index)) <= 3 for f in frames)
    assert {f.origin for f in frames} == {str(video)}
    assert not any(f.still for f in frames)
    assert frames[0].image.shape == (48, 64, 3) and frames[0].image.dtype == np.uint8
    # Unpaced frames carry media time: the video's own timeline, 1/fps apart.
    assert frames[5].monotonic - frames[0].monotonic == pytest.approx(0.5)


def test_folder_plays_images_sorted_by_name_and_skips_other_files(tmp_path):
    for name, level in [("10.png", 100), ("2.png", 50), ("1.jpg", 30)]:
        write_image(tmp_path / name, level)
    (tmp_path / "1.txt").write_text("LE00123456780168")
    write_image(tmp_path / ".hidden.png", 200)
    (tmp_path / "sub").mkdir()
    write_image(tmp_path / "sub" / "0.png", 250)

    frames = list(iter_frames(tmp_path))

    assert [f.origin for f in frames] == [str(tmp_path / n) for n in ("1.jpg", "2.png", "10.png")]
    assert [f.index for f in frames] == [0, 1, 2]
    assert [level_of(f) for f in frames] == [30, 50, 100]
    assert all(f.still for f in frames)
    assert media_kind(tmp_path) == "folder"


def test_grey_images_stay_grey(tmp_path):
    (frame,) = iter_frames(write_image(tmp_path / "g.png", 77, grey=True))
    assert frame.image.shape == (30, 40) and frame.index == 0 and frame.still
    assert media_kind(tmp_path / "g.png") == "image"


def test_corrupt_and_empty_images_in_a_folder_are_skipped_with_a_warning(tmp_path, caplog):
    write_image(tmp_path / "1.png", 40)
    (tmp_path / "2.jpg").write_bytes(b"\xff\xd8 this is not really a jpeg" * 5)
    (tmp_path / "3.png").write_bytes(b"")
    write_image(tmp_path / "4.png", 90)

    with caplog.at_level(logging.WARNING, logger="device.camera"):
        frames = list(iter_frames(tmp_path))

    assert [(f.index, level_of(f)) for f in frames] == [(0, 40), (3, 90)]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("2.jpg" in w and "not a readable image" in w for w in warnings)
    assert any("3.png" in w and "empty" in w for w in warnings)


def test_truncated_video_ends_cleanly_with_a_warning(tmp_path, caplog):
    full = write_video(tmp_path / "full.avi", frames=20)
    data = full.read_bytes()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(data[: len(data) * 2 // 3])

    with caplog.at_level(logging.WARNING, logger="device.camera"):
        frames = list(iter_frames(cut))

    assert 0 < len(frames) < 20
    assert [f.index for f in frames] == list(range(len(frames)))
    assert any("cut.avi" in r.getMessage() and "truncated" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("missing.avi", None, "no such file"),
        ("missing-dir/x.png", None, "no such file"),
        ("empty.avi", b"", "empty file"),
        ("broken.png", b"not a png at all", "not a readable image"),
        ("junk.avi", b"RIFF" + b"\x00" * 400, "cannot open"),
        ("nothing/", None, "no images"),
    ],
    ids=["missing", "missing-folder", "zero-bytes", "corrupt-image", "corrupt-video", "empty-folder"],
)
def test_unplayable_paths_raise_camera_error_naming_the_path(tmp_path, name, content, message):
    path = tmp_path / name
    if name.endswith("/"):
        path.mkdir()
    elif content is not None:
        path.write_bytes(content)
    for open_it in (iter_frames, lambda p: FileSource(p, pace="fast")):
        with pytest.raises(CameraError) as err:
            open_it(path)
        assert str(path) in str(err.value) and message in str(err.value)


# -- files: FileSource pacing -----------------------------------------------------------------


class FakeClock:
    """time.monotonic and time.sleep for a test: sleeping moves the clock, nothing waits."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(round(seconds, 6))
        self.now += seconds


def test_fast_pace_returns_every_frame_without_waiting_then_none(video):
    clock = FakeClock()
    source = FileSource(video, pace="fast", clock=clock, sleep=clock.sleep)
    frames = []
    while (frame := source.read(timeout=0)) is not None:
        frames.append(frame)
    assert [f.index for f in frames] == list(range(8))
    assert clock.sleeps == []
    assert source.read() is None  # stays ended
    assert "ended after 8 frames" in source.describe()


def test_realtime_pace_waits_for_each_frame_and_drops_the_ones_a_slow_reader_missed(video):
    clock = FakeClock()
    source = FileSource(video, pace="realtime", clock=clock, sleep=clock.sleep)

    first = source.read()
    assert first.index == 0 and clock.sleeps == []  # playing starts at the first read

    second = source.read()
    assert second.index == 1 and clock.sleeps == [0.1]  # frame 1 is due 1/fps after the start
    assert second.monotonic == pytest.approx(1000.1)

    clock.now += 0.35  # the reader was busy: frames 2 and 3 were superseded by frame 4
    late = source.read()
    assert late.index == 4 and source.frames_dropped == 2
    assert level_of(late) == pytest.approx(shade(4), abs=3)

    with pytest.raises(CameraError, match="not due"):
        source.read(timeout=0.01)  # frame 5 is due at 0.5 s, 0.05 s away

    assert [source.read().index for _ in range(3)] == [5, 6, 7]
    assert source.read() is None
    assert source.frames_returned == 6


def test_realtime_folder_plays_at_the_folder_rate(tmp_path):
    for i in range(3):
        write_image(tmp_path / f"{i}.png", shade(i))
    clock = FakeClock()
    source = FileSource(tmp_path, pace="realtime", folder_fps=4.0, clock=clock, sleep=clock.sleep)
    assert [source.read().index for _ in range(3)] == [0, 1, 2]
    assert clock.sleeps == [0.25, 0.25]
    assert source.read() is None


# -- open_source dispatch ---------------------------------------------------------------------------


def test_open_source_file_gives_a_file_source_with_the_pace(video):
    source = open_source(f"file:{video}", pace="fast")
    assert isinstance(source, FileSource) and source.finite and source.pace == "fast"
    assert source.read().index == 0
    source.close()
    assert source.read() is None


@pytest.mark.parametrize(
    "spec",
    ["", "nocolon", "file:", "webcam:0", "v4l2:video0", "picamera2:front"],
)
def test_bad_source_specs_raise_value_error(spec):
    with pytest.raises(ValueError):
        open_source(spec)


def test_bad_pace_raises_value_error(video):
    with pytest.raises(ValueError, match="pace"):
        open_source(f"file:{video}", pace="slow-motion")


def test_missing_file_source_raises_camera_error(tmp_path):
    with pytest.raises(CameraError, match="no such file"):
        open_source(f"file:{tmp_path / 'nope.mp4'}")


def test_v4l2_accepts_numbers_and_paths():
    assert device_path("0") == "/dev/video0"
    assert device_path("/dev/v4l/by-id/usb-x-video-index0") == "/dev/v4l/by-id/usb-x-video-index0"


# -- live cameras: a fake device the test controls --------------------------------------------------


def v4l2_source(world, **kwargs) -> V4L2Source:
    options = dict(capture_factory=lambda path: FakeVideoCapture(world), stall_timeout_s=0.5, backoff_initial_s=0.01, backoff_max_s=0.05)
    return V4L2Source("/dev/video7", **{**options, **kwargs})


def test_live_read_gives_each_frame_once(world):
    with v4l2_source(world) as source:
        world.emit()
        first = source.read(timeout=5)
        assert serial_of(first) == 1 and first.index == 0 and first.origin == "v4l2:/dev/video7"
        with pytest.raises(CameraError, match="no frame within"):
            source.read(timeout=0.05)  # nothing new: the same frame is never handed out again
        world.emit()
        assert serial_of(source.read(timeout=5)) == 2
        assert source.describe() == "v4l2:/dev/video7 1280x720 MJPG 30fps, focus fixed (camera has no focus control), exposure auto, up"


def test_live_read_keeps_only_the_newest_frame(world):
    with v4l2_source(world) as source:
        world.emit(3)
        wait_until(lambda: source.stats().frames_captured == 3, what="three frames captured")
        frame = source.read(timeout=5)
        assert serial_of(frame) == 3 and frame.index == 2
        assert source.stats().frames_dropped == 2
        with pytest.raises(CameraError):
            source.read(timeout=0.05)


def test_camera_that_vanishes_is_reported_down_and_recovers_when_it_comes_back(world, caplog):
    with v4l2_source(world) as source:
        world.emit()
        assert serial_of(source.read(timeout=5)) == 1

        with caplog.at_level(logging.WARNING, logger="device.camera"):
            world.unplug()
            wait_until(lambda: source.stats().state == "down", what="the source to notice the unplug")
            with pytest.raises(CameraError) as err:
                source.read(timeout=0.05)
        assert "/dev/video7" in str(err.value) and "down" in str(err.value)
        assert "down for" in source.describe() and "retrying in" in source.describe()
        assert any("camera down" in r.getMessage() for r in caplog.records)

        # It keeps trying, with backoff, while the camera is away.
        wait_until(lambda: source.stats().reopen_attempts >= 3, what="reopen attempts")
        assert source.stats().last_error

        world.plug()
        world.emit()
        back = source.read(timeout=5)
        assert source.stats().state == "up"
        assert serial_of(back) == 2 and back.index == 1  # numbering goes on across reopens
        assert source.describe().endswith(", up")
    assert world.opened == world.closed  # every capture it opened was released


def test_stalled_camera_is_reopened_and_frames_flow_again(world):
    world.read_timeout = 0.02  # the driver gives up quickly on a camera that sends nothing
    with v4l2_source(world) as source:
        wait_until(lambda: source.stats().open_attempts >= 3, what="reopens of the stalled camera")
        assert "no frame" in source.stats().last_error
        with pytest.raises(CameraError, match="/dev/video7"):
            source.read(timeout=0.05)
        world.read_timeout = 0.5
        world.emit()
        assert serial_of(source.read(timeout=5)) == 1


def test_v4l2_asks_for_mjpg_size_and_rate_and_describes_what_it_got(world, caplog):
    captures = []

    def factory(path):
        captures.append(
            FakeVideoCapture(
                world,
                gives={cv2.CAP_PROP_FRAME_WIDTH: 640, cv2.CAP_PROP_FRAME_HEIGHT: 480, cv2.CAP_PROP_FOURCC: cv2.VideoWriter_fourcc(*"YUYV")},
            )
        )
        return captures[-1]

    with caplog.at_level(logging.WARNING, logger="device.camera"):
        with V4L2Source("0", fps=25, width=1280, height=720, capture_factory=factory) as source:
            world.emit()
            source.read(timeout=5)
            assert source.describe().startswith("v4l2:/dev/video0 640x480 YUYV 25fps, ")
    props = captures[0].props
    assert props[cv2.CAP_PROP_FOURCC] == cv2.VideoWriter_fourcc(*"MJPG")
    asked = (props[cv2.CAP_PROP_FRAME_WIDTH], props[cv2.CAP_PROP_FRAME_HEIGHT], props[cv2.CAP_PROP_FPS])
    assert asked == (1280, 720, 25)
    assert any("the camera gives 640x480 YUYV" in r.getMessage() for r in caplog.records)


def test_grabber_survives_a_device_that_raises_or_returns_garbage(world):
    results = iter([RuntimeError("USB reset"), np.zeros((0, 0), np.uint8), "not an image"])

    class Flaky:
        def read(self):
            item = next(results, None)
            if item is None:
                image = world.next_image(world.generation)
                if image is None:
                    raise RuntimeError("stalled")
                return image
            if isinstance(item, Exception):
                raise item
            return item

        def close(self):
            pass

    grabber = FrameGrabber("fake:0", Flaky, stall_timeout_s=0.5, backoff_initial_s=0.01, backoff_max_s=0.02)
    grabber.start()
    try:
        wait_until(lambda: grabber.stats().open_attempts >= 4, what="reopens after bad reads")
        world.emit()
        assert serial_of(grabber.read(timeout=5)) == 1
    finally:
        grabber.close()
    with pytest.raises(CameraError, match="closed"):
        grabber.read(timeout=0)


# -- picamera2 (faked: the library exists only on a Pi) ---------------------------------------------


def picamera2_source(picamera2_class, **kwargs) -> Picamera2Source:
    options = dict(camera_class=picamera2_class, stall_timeout_s=0.5, backoff_initial_s=0.01, backoff_max_s=0.05)
    return Picamera2Source("0", **{**options, **kwargs})


def test_picamera2_missing_library_gives_the_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "picamera2", None)  # import picamera2 -> ImportError
    with pytest.raises(CameraError) as err:
        open_source("picamera2:0")
    assert str(err.value) == MISSING_MESSAGE
    assert "sudo apt install python3-picamera2" in MISSING_MESSAGE and "--system-site-packages" in MISSING_MESSAGE


def test_picamera2_configures_bgr_main_stream_at_the_rate_and_recovers(world, picamera2_class):
    source = Picamera2Source(
        "0", fps=25, width=1280, height=720, camera_class=picamera2_class, stall_timeout_s=0.5, backoff_initial_s=0.01, backoff_max_s=0.05
    )
    try:
        world.emit()
        frame = source.read(timeout=5)
        assert serial_of(frame) == 1
        camera = picamera2_class.instances[0]
        assert camera.config == {
            "main": {"size": (1280, 720), "format": "RGB888"},
            "lores": {"size": (160, 90), "format": "YUV420"},
            "controls": {"FrameDurationLimits": (40000, 40000)},
        }
        # The lens (and exposure) controls come after configure, when their limits are the sensor mode's.
        assert camera.applied_controls == {"FrameDurationLimits": (40000, 40000), "AfMode": 2}
        # The gate's picture is the lores stream's Y plane, without its stride's padding.
        thumb = frame.thumbnail_source(80)
        assert thumb.shape == (90, 160) and (thumb == 1).all()
        assert source.describe() == (
            "picamera2:0 imx708 1280x720 RGB888 25fps, focus auto, lens 4.8 dioptres (21 cm), "
            "exposure auto, applied 16667 us (7.9 modules at 20 cm/s), gain 2.5, up"
        )

        world.unplug()
        wait_until(lambda: source.stats().state == "down", what="the camera to go down")
        assert camera.closed  # released, so libcamera lets the next attempt have it
        with pytest.raises(CameraError, match="picamera2:0"):
            source.read(timeout=0.05)
        wait_until(lambda: "rpicam-hello" in (source.stats().last_error or ""), what="a no-camera reason")

        world.plug()
        world.emit()
        assert serial_of(source.read(timeout=5)) == 2
    finally:
        source.close()
    assert len(picamera2_class.instances) == 2 and all(c.closed for c in picamera2_class.instances)


def test_picamera2_stall_is_recovered_without_stop_and_says_when_a_reboot_is_the_cure(world, picamera2_class):
    """The hang of issue 9: a capture times out; stop() would wait behind it for ever."""
    source = picamera2_source(picamera2_class)
    try:
        world.emit()
        assert serial_of(source.read(timeout=5)) == 1
        stalled = picamera2_class.instances[0]
        # No frame comes (the ribbon cable slipped): the capture job stays pending, times out,
        # and the source must free the camera without stop() for the next open to get it.
        wait_until(lambda: stalled.closed, what="the stalled camera closed")
        assert stalled.calls[-2:] == ["cancel_all_and_flush", "close"] and "stop" not in stalled.calls
        # The grab thread records the error once the close returned: wait for it, do not race it.
        wait_until(lambda: "stalled" in (source.stats().last_error or ""), timeout_s=15, what="the stall reported")
        assert "reboot" in source.stats().last_error
        wait_until(lambda: len(picamera2_class.instances) >= 2, what="the camera reopened")
        world.emit()
        assert serial_of(source.read(timeout=5)) == 2
        assert source.stats().hung_closes == 0
    finally:
        source.close()
    assert not picamera2_class.owners  # every camera released


def test_the_picamera2_double_blocks_in_stop_behind_a_pending_capture_like_picamera2(world, picamera2_class):
    """The double must hang where picamera2 hangs, or the test above proves nothing."""
    camera = picamera2_class(0)
    camera.configure(camera.create_video_configuration(main={"size": (8, 6)}))
    camera.start()
    job = camera.capture_arrays(["main"], wait=False)
    with pytest.raises(TimeoutError):
        camera.wait(job, timeout=0.05)  # no frame: the job stays at the head of the list
    stopper = threading.Thread(target=camera.stop, daemon=True)
    stopper.start()
    stopper.join(timeout=0.3)
    assert stopper.is_alive(), "stop() returned although a capture was pending"
    camera.cancel_all_and_flush()  # stop's own job went too: stop() returns only once the test ends
    camera.close()
    assert camera.closed and not picamera2_class.owners
    with pytest.raises(concurrent.futures.CancelledError):
        job.future.result(timeout=0)


def test_grab_thread_goes_on_when_closing_the_device_hangs(world):
    release = threading.Event()
    opened = []

    class StuckOnClose:
        def __init__(self):
            self.generation = world.generation
            opened.append(self)

        def read(self):
            image = world.next_image(self.generation)
            if image is None:
                raise RuntimeError("stalled")
            return image

        def close(self):
            release.wait(30)  # a driver call that does not come back

    grabber = FrameGrabber("fake:0", StuckOnClose, stall_timeout_s=0.1, backoff_initial_s=0.01, backoff_max_s=0.02)
    grabber.start()
    try:
        world.read_timeout = 0.02
        wait_until(lambda: len(opened) >= 2, what="a reopen although the close hung")
        assert grabber.stats().hung_closes >= 1
        world.read_timeout = 0.5
        world.emit()
        assert serial_of(grabber.read(timeout=5)) == 1
    finally:
        release.set()
        grabber.close()


@pytest.mark.parametrize(
    "focus, expected_controls, expected_text",
    [
        (FocusSettings("auto"), {"AfMode": 2}, "focus auto, lens 4.8 dioptres (21 cm)"),
        (
            FocusSettings("manual", dioptres=5.0),
            {"AfMode": 0, "LensPosition": 5.0},
            "focus manual 5 dioptres (20 cm), lens 5 dioptres (20 cm)",
        ),
        (FocusSettings("manual", dioptres=40.0), {"AfMode": 0, "LensPosition": 15.0}, "focus manual 15 dioptres (7 cm)"),
        # Within libcamera's generic 0-32 before configure, beyond the lens's own 0-15 after it.
        (FocusSettings("manual", dioptres=20.0), {"AfMode": 0, "LensPosition": 15.0}, "focus manual 15 dioptres (7 cm)"),
        (FocusSettings("fixed"), {}, "focus fixed (lens not driven), lens 1 dioptres (1 m)"),
    ],
    ids=["auto", "manual-20cm", "manual-clamped", "manual-range-after-configure", "fixed"],
)
def test_picamera2_focus_controls_on_a_camera_module_3(world, picamera2_class, focus, expected_controls, expected_text):
    source = picamera2_source(picamera2_class, focus=focus)
    try:
        world.emit()
        source.read(timeout=5)
        controls = dict(picamera2_class.instances[0].applied_controls)
        assert controls.pop("FrameDurationLimits")
        assert controls == expected_controls
        assert expected_text in source.describe()
        stats = source.stats()
        assert stats.focus == source.focus.mode and stats.lens_position == pytest.approx(
            picamera2_class.instances[0]._lens()["LensPosition"]
        )
    finally:
        source.close()


@pytest.mark.parametrize("mode", ["auto", "manual"])
def test_picamera2_without_a_lens_gets_no_focus_controls(world, picamera2_class, mode):
    # A Camera Module 2 (imx219) advertises neither AfMode nor LensPosition; picamera2 raises on them.
    picamera2_class.cameras = [{"Model": "imx219"}]
    picamera2_class.controls = {"FrameDurationLimits": (33333, 120000000, None)}
    try:
        source = picamera2_source(picamera2_class, focus=FocusSettings(mode))
        try:
            world.emit()
            source.read(timeout=5)
            assert picamera2_class.instances[0].applied_controls.keys() == {"FrameDurationLimits"}
            assert "focus fixed (camera has no lens control), exposure auto" in source.describe()
            assert source.stats().lens_position is None
        finally:
            source.close()
    finally:
        picamera2_class.cameras = [{"Model": "imx708"}]


def test_picamera2_missing_camera_says_csi_needs_a_reboot(world, picamera2_class):
    world.unplug()
    source = picamera2_source(picamera2_class)
    try:
        wait_until(lambda: "rpicam-hello" in (source.stats().last_error or ""), what="a no-camera reason")
        assert "reboot" in source.stats().last_error and "found only at boot" in source.stats().last_error
    finally:
        source.close()


# -- V4L2: focus, bad frames, the wrong /dev/video0 -------------------------------------------------


def test_v4l2_autofocus_is_switched_on_where_the_webcam_has_it(world):
    capture = FakeVideoCapture(world, controls={cv2.CAP_PROP_AUTOFOCUS: 0, cv2.CAP_PROP_FOCUS: 30})
    with V4L2Source("/dev/video7", capture_factory=lambda path: capture) as source:
        world.emit()
        source.read(timeout=5)
        assert capture.controls[cv2.CAP_PROP_AUTOFOCUS] == 1
        assert capture.controls[cv2.CAP_PROP_FOCUS] == 30  # the camera's own autofocus drives the lens
        assert "focus auto, lens 30 V4L2 units" in source.describe()
        assert source.stats().focus == "auto" and source.stats().lens_position == 30


def test_v4l2_manual_focus_sets_the_lens_position(world):
    capture = FakeVideoCapture(world, controls={cv2.CAP_PROP_AUTOFOCUS: 1, cv2.CAP_PROP_FOCUS: 30})
    with V4L2Source("/dev/video7", capture_factory=lambda path: capture, focus=FocusSettings("manual", v4l2_position=120)) as source:
        world.emit()
        source.read(timeout=5)
        assert capture.controls == {cv2.CAP_PROP_AUTOFOCUS: 0, cv2.CAP_PROP_FOCUS: 120}
        assert "focus manual at 120, lens 120 V4L2 units" in source.describe()


def test_v4l2_fixed_focus_touches_no_control(world):
    capture = FakeVideoCapture(world, controls={cv2.CAP_PROP_AUTOFOCUS: 1, cv2.CAP_PROP_FOCUS: 30})
    with V4L2Source("/dev/video7", capture_factory=lambda path: capture, focus=FocusSettings("fixed")) as source:
        world.emit()
        source.read(timeout=5)
        assert capture.controls == {cv2.CAP_PROP_AUTOFOCUS: 1, cv2.CAP_PROP_FOCUS: 30}
        assert "focus fixed (lens not driven)" in source.describe()


def test_v4l2_a_bad_frame_now_and_then_does_not_reopen_the_camera(world):
    captures = []

    def factory(path):
        captures.append(FakeVideoCapture(world, bad_every=3))
        return captures[-1]

    with v4l2_source(world, capture_factory=factory) as source:
        for serial in range(1, 9):
            world.emit()
            assert serial_of(source.read(timeout=5)) == serial
        assert captures[0].reads >= 10  # the bad frames were read, and skipped
        assert len(captures) == 1 and source.stats().open_attempts == 1


def test_v4l2_bad_reads_in_a_row_reopen_the_camera(world):
    captures = []

    def factory(path):
        captures.append(FakeVideoCapture(world, bad_every=1 if not captures else 0))  # the first handle is broken
        return captures[-1]

    with v4l2_source(world, capture_factory=factory, bad_reads=3) as source:
        wait_until(lambda: len(captures) >= 2, what="a reopen after three bad reads")
        assert captures[0].reads == 3
        assert "3 failed read(s) in a row" in source.stats().last_error
        world.emit()
        assert serial_of(source.read(timeout=5)) == 1


class FakeMjpegCapture(FakeVideoCapture):
    """A webcam in MJPG whose driver hands over the JPEG buffers once CAP_PROP_CONVERT_RGB is off
    (as OpenCV's cap_v4l.cpp does: a 1 x N uint8 array); frame ``n`` is a 64x48 picture of grey
    level 20 * n. ``corrupt``: the serials whose buffer is broken (a truncated USB transfer)."""

    def __init__(self, world: CameraWorld, corrupt: frozenset[int] = frozenset()) -> None:
        super().__init__(world, controls={cv2.CAP_PROP_CONVERT_RGB: 1})
        self.corrupt = corrupt

    def read(self):
        ok, image = super().read()
        if not ok:
            return ok, image
        serial = int.from_bytes(image[0, :4].tobytes(), "little")
        if self.controls[cv2.CAP_PROP_CONVERT_RGB]:
            return True, np.full((48, 64, 3), 20 * serial, np.uint8)
        data = cv2.imencode(".jpg", np.full((48, 64, 3), 20 * serial, np.uint8))[1].reshape(1, -1)
        if serial in self.corrupt:
            data = data[:, :40].copy()  # the headers and nothing of the picture
        return True, data


def shade_of(frame) -> int:
    return int(round(float(frame.image.mean()) / 20))


def test_v4l2_mjpg_frames_come_undecoded_and_corrupt_buffers_are_bad_reads(world):
    captures = []

    def factory(path):
        captures.append(FakeMjpegCapture(world, corrupt=frozenset({2, 5})))
        return captures[-1]

    with v4l2_source(world, capture_factory=factory) as source:
        got = []
        for _ in range(7):
            world.emit()
            if world.serial in (2, 5):
                continue  # a corrupt buffer: skipped, never handed out
            got.append(source.read(timeout=5))
        assert captures[0].controls[cv2.CAP_PROP_CONVERT_RGB] == 0  # asked for the raw buffers
        assert all(not f.decoded and f.encoded is not None for f in got)
        assert [f.index for f in got] == sorted({f.index for f in got})
        assert [shade_of(f) for f in got] == [1, 3, 4, 6, 7]
        assert len(captures) == 1 and source.stats().open_attempts == 1  # bad frames, not a reopen


def test_v4l2_in_yuyv_keeps_opencvs_conversion(world):
    capture = FakeMjpegCapture(world)
    capture.gives = {cv2.CAP_PROP_FOURCC: cv2.VideoWriter_fourcc(*"YUYV")}
    with v4l2_source(world, capture_factory=lambda path: capture) as source:
        world.emit()
        frame = source.read(timeout=5)
        assert frame.decoded and capture.controls[cv2.CAP_PROP_CONVERT_RGB] == 1


@pytest.fixture
def pi4_with_csi_and_webcam(tmp_path, monkeypatch):
    """A Pi 4 with a CSI camera module (unicam is /dev/video0) and a USB webcam (/dev/video2)."""
    env = fake_video4linux(
        tmp_path,
        {"video0": ("unicam", "unicam-image"), "video1": ("unicam", "unicam-embedded"), "video2": ("uvcvideo", "HD Pro Webcam C920")},
        {UVC_BY_ID: "video2", "usb-046d_HD_Pro_Webcam_C920_1234ABCD-video-index1": "video2"},
    )
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


def test_v4l2_refuses_the_csi_receiver_and_names_the_webcams_by_id_path(pi4_with_csi_and_webcam):
    with pytest.raises(CameraError) as err:
        V4L2Source("/dev/video0", capture_factory=lambda path: pytest.fail("must not open the CSI receiver"))
    message = str(err.value)
    assert "/dev/video0 is unicam-image (driver unicam), the CSI camera receiver of a Pi 4" in message
    assert f'"v4l2:/dev/v4l/by-id/{UVC_BY_ID}"' in message and "index1" not in message
    assert '"picamera2:0"' in message


def test_v4l2_accepts_the_webcam_by_its_by_id_path(pi4_with_csi_and_webcam, world):
    with V4L2Source(f"/dev/v4l/by-id/{UVC_BY_ID}", capture_factory=lambda path: FakeVideoCapture(world)) as source:
        world.emit()
        assert serial_of(source.read(timeout=5)) == 1


def test_pi5_csi_receiver_is_refused_too(tmp_path, monkeypatch):
    env = fake_video4linux(tmp_path, {"video0": ("rp1-cfe", "rp1-cfe-csi2_ch0")}, {})
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(CameraError, match=r"Pi 5.*no USB camera is plugged in"):
        V4L2Source("0")


@pytest.fixture
def csi_receiver_config(tmp_path, pi4_with_csi_and_webcam):
    """(kiosk.toml, environment): that Pi 4 configured with camera.source = v4l2:/dev/video0 (the CSI
    receiver, a kiosk whose webcam was plugged in after a camera module), its outbox holding one
    identification."""
    from support.config import write_config

    from device.card import Card
    from device.outbox import Outbox

    with Outbox(tmp_path / "outbox.db", kiosk_id="k-1") as box:
        box.commit(Card("v1", "0012345678", 1), symbology="Code128", decoder="zxing-cpp")
    path = write_config(
        tmp_path / "kiosk.toml", camera={"source": "v4l2:/dev/video0"}, kiosk={"id": "k-1", "runtime_dir": str(tmp_path / "run")},
        outbox={"path": str(tmp_path / "outbox.db")}, api={"url": "http://127.0.0.1:9", "token": "t"},
    )  # fmt: skip
    return path, {**os.environ, **pi4_with_csi_and_webcam}


def test_config_check_and_run_refuse_the_csi_receiver_alike(csi_receiver_config):
    from support.kiosk import run_kiosk

    from device.config import EXIT_CONFIG

    path, env = csi_receiver_config
    check = run_kiosk("config", "check", "--config", str(path), env=env)
    run = run_kiosk("run", "--config", str(path), env=env)
    for result in (check, run):
        assert result.returncode == EXIT_CONFIG, result.stderr
        assert "camera.source: /dev/video0 is unicam-image" in result.stderr
        assert UVC_BY_ID in result.stderr


def test_status_and_queue_still_run_where_the_source_is_the_csi_receiver_and_diag_camera_says_why(csi_receiver_config):
    # The commands that diagnose a kiosk must run on the one whose camera is wrong: the check of
    # the device is the camera's (when it opens) and the config's for `run` and `config check`.
    from support.kiosk import run_kiosk

    path, env = csi_receiver_config
    status = run_kiosk("status", "--config", str(path), env=env)
    assert status.returncode == 1, status.stderr  # not healthy: the daemon is not running; not 78
    assert "kiosk k-1" in status.stdout and "camera.source" not in status.stderr
    queue = run_kiosk("queue", "list", "--config", str(path), env=env)
    assert queue.returncode == 0, queue.stderr
    assert "pending" in queue.stdout and "******5678" in queue.stdout
    diag = run_kiosk("diag", "camera", "--config", str(path), "--timeout", "1", env=env)
    assert diag.returncode == 1
    assert "/dev/video0 is unicam-image (driver unicam), the CSI camera receiver of a Pi 4" in diag.stderr
    assert f'"v4l2:/dev/v4l/by-id/{UVC_BY_ID}"' in diag.stderr
