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
may give the camera another ``/dev/videoN``.
"""

from __future__ import annotations

import logging
import math
import os
from typing import Any, Callable

import cv2
import numpy as np

from device.camera import CameraError
from device.camera.grabber import BACKOFF_INITIAL_S, BACKOFF_MAX_S, STALL_TIMEOUT_S, LiveSource

log = logging.getLogger(__name__)

#: OpenCV's V4L2 backend waits this long (whole seconds) in select() for a frame before a read
#: fails; its default is 10 s. Read once per process, at the first V4L2 read.
_SELECT_TIMEOUT_ENV = "OPENCV_VIDEOIO_V4L_SELECT_TIMEOUT"


def device_path(device: str) -> str:
    """``"0"`` -> ``"/dev/video0"``; a path stays as it is.

    >>> device_path("0"), device_path("/dev/v4l/by-id/usb-cam-video-index0")
    ('/dev/video0', '/dev/v4l/by-id/usb-cam-video-index0')
    """
    device = device.strip()
    if device.isdigit():
        return f"/dev/video{int(device)}"
    if not device.startswith("/"):
        raise ValueError(f"v4l2 device {device!r}: expected a number (0) or a device path (/dev/video0)")
    return device


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
    """An opened cv2.VideoCapture as a :class:`~device.camera.grabber.LiveDevice`."""

    def __init__(self, capture: Any, path: str) -> None:
        self._capture = capture
        self._path = path

    def read(self) -> np.ndarray:
        ok, image = self._capture.read()
        if not ok or image is None:
            raise CameraError(f"no frame from {self._path} (unplugged, or no frame within the V4L2 timeout)")
        return image

    def close(self) -> None:
        self._capture.release()


class V4L2Source(LiveSource):
    """A USB webcam; see the module docstring.

    ``device`` is ``"/dev/video0"``, ``"0"`` or a ``/dev/v4l/by-id/...`` path. ``capture_factory``
    (tests) replaces ``cv2.VideoCapture``: called with the device path on every (re)open, it
    returns an object with ``isOpened``, ``set``, ``get``, ``read`` and ``release``.
    The source opens in the background: a missing camera is reported by :meth:`read`.
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
        capture_factory: Callable[[str], Any] | None = None,
    ) -> None:
        self.path = device_path(str(device))
        self.name = f"v4l2:{self.path}"
        self.requested = (int(width), int(height), float(fps), fourcc)
        # What the driver actually agreed to, known after the first open.
        self._negotiated: tuple[int, int, float, str] | None = None
        self._capture_factory = capture_factory or open_v4l2_capture
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
                self.name, width, height, fourcc, fps, *negotiated[:2], negotiated[3], negotiated[2],
            )
        self._negotiated = negotiated
        return _OpenCVDevice(capture, self.path)

    def describe(self) -> str:
        if self._negotiated is None:
            width, height, fps, fourcc = self.requested
            settings = f"{width}x{height} {fourcc} {fps:g}fps (requested)"
        else:
            width, height, fps, fourcc = self._negotiated
            settings = f"{width}x{height} {fourcc} {fps:g}fps"
        return f"{self.name} {settings}, {self._grabber.state_text()}"
