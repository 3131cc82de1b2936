"""USB (UVC) webcams through OpenCV's V4L2 backend.

Asks for MJPG at the configured size and rate: many UVC webcams offer 1280x720 at 30 fps only in
MJPG and fall back to about 10 fps in raw YUYV. A grab thread keeps only the newest frame (see
:mod:`device.camera.grabber`), and a camera that is unplugged or stops sending is reopened with
backoff, so a replugged camera comes back by itself::

    source = V4L2Source("/dev/video0", fps=30, width=1280, height=720)
    frame = source.read(timeout=1.0)     # CameraError naming the device while it is down
    print(source.describe())             # v4l2:/dev/video0 1280x720 MJPG 30fps, up
    source.close()

Prefer a stable name such as ``/dev/v4l/by-id/usb-...-video-index0``: after a replug the kernel
may give the camera another ``/dev/videoN``, and on a Pi with a CSI camera module fitted
``/dev/video0`` is the CSI receiver (unicam on a Pi 4, rp1-cfe on a Pi 5), not the webcam. A
``v4l2:`` source whose node belongs to such a receiver is refused with the by-id path to use
instead (:func:`device.sysfs.refuse_non_camera`): when the source opens, and by ``kiosk run``
and ``kiosk config check`` as a config error on ``camera.source``. The device's driver is read
from sysfs, under a prefix that tests swap for a fake tree (:mod:`device.sysfs`).

A USB bus that is busy delivers a corrupt MJPG frame now and then: a few failed reads in a row
(``bad_reads``) are tolerated before the camera is closed and reopened. Focus goes through
OpenCV's ``CAP_PROP_AUTOFOCUS`` / ``CAP_PROP_FOCUS`` (V4L2 ``focus_automatic_continuous`` /
``focus_absolute``) where the device has them: OpenCV's ``set`` returns False for a control the
driver does not offer, and ``get`` returns -1.

Exposure (:mod:`device.camera.exposure`) goes through OpenCV's properties too, which its V4L2
backend (``cap_v4l.cpp``) maps one to one, raw values, no scaling: ``CAP_PROP_AUTO_EXPOSURE`` to
``auto_exposure`` (1 manual, 3 aperture priority, the UVC auto mode), ``CAP_PROP_EXPOSURE`` to
``exposure_time_absolute`` (in 100 us units) and ``CAP_PROP_GAIN`` to ``gain`` (device units).
``power_line_frequency`` has no OpenCV property: it is set with the ``VIDIOC_S_CTRL`` ioctl on the
device node (:func:`set_v4l2_control`). A UVC camera keeps its controls across opens (until it
loses power), so ``camera.exposure = "auto"`` puts auto-exposure back on where the camera has it:
a camera left in manual exposure by an earlier configuration would stay there. What the camera
applied is read back from the same controls (some webcams do not update
``exposure_time_absolute`` while their own auto-exposure runs: then it shows the last manual value).
"""

from __future__ import annotations

import fcntl
import logging
import math
import os
import struct
import time
from collections.abc import Callable
from typing import Any

import cv2
import numpy as np

from device.camera import CameraError, CorruptFrame, Frame
from device.camera.exposure import DEFAULT_EXPOSURE, ExposureSettings, ExposureState
from device.camera.focus import DEFAULT_FOCUS, FocusSettings, FocusState
from device.camera.grabber import BACKOFF_INITIAL_S, BACKOFF_MAX_S, STALL_TIMEOUT_S, LiveSource
from device.camera_spec import device_path

# Which driver a node belongs to is read from sysfs below the camera (no OpenCV), where the
# config's check of camera.source reads it too; DEV_PREFIX_ENV and v4l2_driver stay importable
# from here for the diagnostics bundle.
from device.sysfs import DEV_PREFIX_ENV, refuse_non_camera, v4l2_driver

__all__ = ["BAD_READS", "DEV_PREFIX_ENV", "V4L2Source", "device_path", "open_v4l2_capture", "refuse_non_camera", "v4l2_driver"]

log = logging.getLogger(__name__)

#: OpenCV's V4L2 backend waits this long (whole seconds) in select() for a frame before a read
#: fails; its default is 10 s. Read once per process, at the first V4L2 read.
_SELECT_TIMEOUT_ENV = "OPENCV_VIDEOIO_V4L_SELECT_TIMEOUT"

#: Failed reads in a row tolerated before a reopen (``camera.bad_reads``).
BAD_READS = 5

#: V4L2's ``auto_exposure`` menu (V4L2_EXPOSURE_MANUAL, V4L2_EXPOSURE_APERTURE_PRIORITY: the UVC auto mode).
AUTO_EXPOSURE_MANUAL = 1
AUTO_EXPOSURE_APERTURE_PRIORITY = 3
#: ``exposure_time_absolute`` counts in 100 us.
EXPOSURE_UNIT_US = 100
#: V4L2_CID_POWER_LINE_FREQUENCY (V4L2_CID_BASE + 24) and its menu: 1 = 50 Hz, 2 = 60 Hz.
V4L2_CID_POWER_LINE_FREQUENCY = 0x00980900 + 24
POWER_LINE_FREQUENCY = {50: 1, 60: 2}
#: VIDIOC_S_CTRL = _IOWR('V', 28, struct v4l2_control { __u32 id; __s32 value; }).
VIDIOC_S_CTRL = (3 << 30) | (8 << 16) | (ord("V") << 8) | 28


def set_v4l2_control(path: str, control_id: int, value: int) -> bool:
    """Set a V4L2 control on the device node ``path`` (the ``VIDIOC_S_CTRL`` ioctl); False when the
    device does not have it, refuses the value, or is not a V4L2 device at all.

    For the controls OpenCV has no property for (``power_line_frequency``). A second open of a
    capture device for its controls is what ``v4l2-ctl`` does while another program streams::

        >>> set_v4l2_control("/dev/null", V4L2_CID_POWER_LINE_FREQUENCY, 1)   # not a camera: ENOTTY
        False
    """
    try:
        fd = os.open(path, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as e:
        log.debug("cannot open %s to set control 0x%x: %s", path, control_id, e)
        return False
    try:
        fcntl.ioctl(fd, VIDIOC_S_CTRL, struct.pack("Ii", control_id, value))
        return True
    except OSError as e:  # EINVAL: no such control or value; ENOTTY: not a V4L2 device
        log.debug("%s: control 0x%x = %d refused: %s", path, control_id, value, e)
        return False
    finally:
        os.close(fd)


def open_v4l2_capture(path: str) -> Any:
    """The default capture factory: ``cv2.VideoCapture(path, cv2.CAP_V4L2)``.

    Checks that the device node exists first: OpenCV would only print a warning to stderr.
    """
    if not os.path.exists(path):
        raise CameraError(f"{path} does not exist: is the camera plugged in? (`v4l2-ctl --list-devices` lists cameras)")
    return cv2.VideoCapture(path, cv2.CAP_V4L2)


def _fourcc_text(value: float) -> str:
    code = int(value)
    text = "".join(chr((code >> (8 * i)) & 0xFF) for i in range(4))
    return text if text.isprintable() and text.strip() else "?"


class _OpenCVDevice:
    """An opened cv2.VideoCapture as a :class:`~device.camera.grabber.LiveDevice`.

    A failed read is tolerated ``bad_reads - 1`` times in a row, as long as the last good frame is
    less than ``stall_timeout_s`` old: a corrupt MJPG frame costs one frame, not a reopen. An
    unplugged camera still fails within milliseconds: reads of a vanished device fail at once.

    ``raw``: OpenCV hands over the camera's MJPEG buffer undecoded (``CAP_PROP_CONVERT_RGB`` off);
    each read is then an encoded :class:`~device.camera.Frame`, checked by its framing (JPEG start
    and end markers, :meth:`~device.camera.Frame.check_framing`), and a buffer cut short is a
    failed read like any other; one broken in the middle is an odd frame when the gate looks at it.
    """

    def __init__(
        self, capture: Any, path: str, bad_reads: int, stall_timeout_s: float, focus: FocusState, exposure: ExposureState, raw: bool = False
    ) -> None:
        self._capture = capture
        self._raw = raw
        self._path = path
        self._bad_reads = bad_reads
        self._stall_timeout_s = stall_timeout_s
        self._focus = focus
        self._exposure = exposure
        self._last_good = time.monotonic()
        self._reads = 0

    def read(self) -> Frame:
        failures = 0
        while True:
            ok, image = self._capture.read()
            if ok and image is not None and self._raw:
                image = _checked_jpeg(image)  # None when the buffer is cut short
                ok = image is not None
            if ok and image is not None:
                self._reads += 1
                if self._reads % 30 == 1:  # autofocus moves the lens; a V4L2 control read is an ioctl
                    self._focus.lens(_control(self._capture, cv2.CAP_PROP_FOCUS), "V4L2 units")
                    read_back_exposure(self._capture, self._exposure)
                self._last_good = time.monotonic()
                frame = image if isinstance(image, Frame) else Frame(image)
                frame.exposure_us = self._exposure.applied.exposure_us
                return frame
            failures += 1
            if failures >= self._bad_reads or time.monotonic() - self._last_good > self._stall_timeout_s:
                raise CameraError(
                    f"no frame from {self._path} ({failures} failed read(s) in a row: unplugged, or no frame within the V4L2 timeout)"
                )
            log.debug("v4l2:%s: bad frame (%d in a row), reading on", self._path, failures)

    def close(self) -> None:
        self._capture.release()


def _checked_jpeg(buffer: np.ndarray) -> Frame | None:
    """The camera's MJPEG buffer as an encoded Frame, or None when it is cut short (or, when its
    ends do not say, does not decode): see :meth:`Frame.check_framing`. Not decoded here, on every
    frame the camera sends: the gate of a quiet view skips most frames without decoding them."""
    frame = Frame(encoded=buffer.copy())  # a copy: OpenCV's V4L2 backend reuses one buffer
    try:
        frame.check_framing()
    except CorruptFrame:
        return None
    return frame


def _control(capture: Any, prop: int) -> float | None:
    """A V4L2 control's value through OpenCV, None when the device does not have it (get gives -1)."""
    value = float(capture.get(prop))
    return None if value == -1 else value


def read_back_exposure(capture: Any, exposure: ExposureState) -> None:
    """What the camera says it applies: ``exposure_time_absolute`` (in us) and ``gain``."""
    units = _control(capture, cv2.CAP_PROP_EXPOSURE)
    exposure.measured(None if units is None else units * EXPOSURE_UNIT_US, _control(capture, cv2.CAP_PROP_GAIN))


class V4L2Source(LiveSource):
    """A USB webcam; see the module docstring.

    ``device`` is ``"/dev/video0"``, ``"0"`` or a ``/dev/v4l/by-id/...`` path. ``capture_factory``
    (tests) replaces ``cv2.VideoCapture``: called with the device path on every (re)open, it
    returns an object with ``isOpened``, ``set``, ``get``, ``read`` and ``release``.
    ``bad_reads`` failed reads in a row are tolerated before a reopen; ``focus`` says what to do
    with the lens, ``exposure`` with the exposure; ``set_control`` (tests) replaces
    :func:`set_v4l2_control`, for the controls OpenCV has no property for.
    The source opens in the background: a missing camera is reported by
    :meth:`read`. A node that belongs to a CSI receiver (see the module docstring) raises
    :class:`CameraError` at once.
    """

    def __init__(
        self,
        device: str,
        fps: float = 30.0,
        width: int = 1280,
        height: int = 720,
        *,
        fourcc: str = "MJPG",
        stall_timeout_s: float = STALL_TIMEOUT_S,
        backoff_initial_s: float = BACKOFF_INITIAL_S,
        backoff_max_s: float = BACKOFF_MAX_S,
        bad_reads: int = BAD_READS,
        focus: FocusSettings = DEFAULT_FOCUS,
        exposure: ExposureSettings = DEFAULT_EXPOSURE,
        capture_factory: Callable[[str], Any] | None = None,
        set_control: Callable[[str, int, int], bool] = set_v4l2_control,
    ) -> None:
        if bad_reads < 1:
            raise ValueError("bad_reads must be >= 1")
        self.path = device_path(str(device))
        if problem := refuse_non_camera(self.path):
            raise CameraError(problem)
        self.name = f"v4l2:{self.path}"
        self.requested = (int(width), int(height), float(fps), fourcc)
        # What the driver actually agreed to, known after the first open.
        self._negotiated: tuple[int, int, float, str] | None = None
        self._capture_factory = capture_factory or open_v4l2_capture
        self._bad_reads = bad_reads
        self._stall_timeout_s = stall_timeout_s
        self.focus = FocusState(focus)
        self.exposure = ExposureState(exposure, gain_unit=" (V4L2 units)")
        self._set_control = set_control
        # Make a stalled camera's read fail after about the stall timeout instead of 10 s, so the
        # grab thread reopens it promptly. Only effective before the process's first V4L2 read.
        os.environ.setdefault(_SELECT_TIMEOUT_ENV, str(max(1, math.ceil(stall_timeout_s))))
        self._start_grabber(self.name, stall_timeout_s, backoff_initial_s, backoff_max_s)

    def _open(self) -> _OpenCVDevice:
        capture = self._capture_factory(self.path)
        if not capture.isOpened():
            capture.release()
            raise CameraError(
                f"cannot open {self.path}: not a capture device, busy (another program uses it?) "
                "or no permission (is the user in group 'video'?)"
            )
        width, height, fps, fourcc = self.requested
        # FOURCC first: the sizes a camera offers depend on the pixel format.
        capture.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter_fourcc(*fourcc))
        capture.set(cv2.CAP_PROP_FRAME_WIDTH, width)
        capture.set(cv2.CAP_PROP_FRAME_HEIGHT, height)
        capture.set(cv2.CAP_PROP_FPS, fps)
        # The driver's buffer count stays at OpenCV's default: the grab thread drains the queue
        # continuously (so frames are fresh), and with a single buffer the camera would drop
        # frames while one is being decoded.
        negotiated = (
            int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)),
            int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)),
            float(capture.get(cv2.CAP_PROP_FPS)),
            _fourcc_text(capture.get(cv2.CAP_PROP_FOURCC)),
        )
        if negotiated != self._negotiated and negotiated != self.requested:
            log.warning(
                "%s: asked for %dx%d %s %gfps, the camera gives %dx%d %s %gfps",
                self.name,
                width,
                height,
                fourcc,
                fps,
                *negotiated[:2],
                negotiated[3],
                negotiated[2],
            )
        self._negotiated = negotiated
        self._set_focus(capture)
        self._set_exposure(capture)
        # MJPG: let OpenCV hand over each frame's JPEG buffer as it came (a 1 x N uint8 array,
        # cap_v4l.cpp with convert_rgb off), so frames the gate skips are never decoded in full.
        # Any other pixel format would come as raw YUYV: leave the conversion on.
        raw = negotiated[3] in ("MJPG", "JPEG") and bool(capture.set(cv2.CAP_PROP_CONVERT_RGB, 0))
        return _OpenCVDevice(capture, self.path, self._bad_reads, self._stall_timeout_s, self.focus, self.exposure, raw=raw)

    def _set_exposure(self, capture: Any) -> None:
        """Auto-exposure on, or a short exposure and gain, and the mains frequency, where the
        device has those controls; what it lacks is recorded (and said once per open)."""
        settings = self.exposure.settings
        unsupported: list[str] = []
        if settings.mode == "short":
            units = max(1, round(settings.max_exposure_us / EXPOSURE_UNIT_US))
            text = f"short {units * EXPOSURE_UNIT_US} us"
            if not capture.set(cv2.CAP_PROP_AUTO_EXPOSURE, AUTO_EXPOSURE_MANUAL):
                unsupported.append("auto_exposure")
                text = "auto (the camera has no manual exposure)"
            elif not capture.set(cv2.CAP_PROP_EXPOSURE, units):
                unsupported.append("exposure_time_absolute")
            if settings.v4l2_gain >= 0:
                if capture.set(cv2.CAP_PROP_GAIN, settings.v4l2_gain):
                    text += f", gain {settings.v4l2_gain}"
                else:
                    unsupported.append("gain")
        else:
            text = "auto"
            capture.set(cv2.CAP_PROP_AUTO_EXPOSURE, AUTO_EXPOSURE_APERTURE_PRIORITY)  # a camera without it is auto anyway
        if settings.flicker_hz:
            if self._set_control(self.path, V4L2_CID_POWER_LINE_FREQUENCY, POWER_LINE_FREQUENCY[settings.flicker_hz]):
                text += f", flicker {settings.flicker_hz} Hz"
            else:
                unsupported.append("power_line_frequency")
        if unsupported:
            log.warning(
                "%s: not supported by this camera: %s (camera.exposure / camera.flicker_hz; `v4l2-ctl -d %s --list-ctrls`)",
                self.name,
                ", ".join(unsupported),
                self.path,
            )
        self.exposure.setup(text, unsupported)
        read_back_exposure(capture, self.exposure)

    def _set_focus(self, capture: Any) -> None:
        """Autofocus on or off, and the lens position, where the device has those controls."""
        settings = self.focus.settings
        if settings.mode == "fixed":
            self.focus.applied("fixed (lens not driven)")
            return
        has_autofocus = capture.set(cv2.CAP_PROP_AUTOFOCUS, 1 if settings.mode == "auto" else 0)
        if not has_autofocus:
            # Most cheap webcams are fixed focus: no focus controls at all.
            if settings.mode == "manual":
                log.warning('%s: camera.focus = "manual", but this camera has no focus control; ignored', self.name)
            self.focus.applied("fixed (camera has no focus control)")
            return
        if settings.mode == "auto":
            self.focus.applied("auto")
            return
        if settings.v4l2_position >= 0 and not capture.set(cv2.CAP_PROP_FOCUS, settings.v4l2_position):
            log.warning(
                "%s: the camera refused focus_absolute = %d (`v4l2-ctl -d %s --list-ctrls` shows the range)",
                self.name,
                settings.v4l2_position,
                self.path,
            )
        self.focus.applied("manual" if settings.v4l2_position < 0 else f"manual at {settings.v4l2_position}")
        self.focus.lens(_control(capture, cv2.CAP_PROP_FOCUS), "V4L2 units")

    def describe(self) -> str:
        if self._negotiated is None:
            width, height, fps, fourcc = self.requested
            settings = f"{width}x{height} {fourcc} {fps:g}fps (requested)"
        else:
            width, height, fps, fourcc = self._negotiated
            settings = f"{width}x{height} {fourcc} {fps:g}fps"
        return f"{self.name} {settings}, {self.focus.text()}, {self.exposure.text()}, {self._grabber.state_text()}"
