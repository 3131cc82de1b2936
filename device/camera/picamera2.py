"""CSI camera modules through picamera2 (libcamera).

On Raspberry Pi OS Bookworm, CSI cameras do not work through ``cv2.VideoCapture``; picamera2 comes
from apt (``python3-picamera2``), so the venv needs ``--system-site-packages``. Frames come from the
"main" stream of a video configuration in ``RGB888``, which picamera2 (following libcamera's
naming) lays out as B, G, R per pixel: OpenCV's order, no conversion needed. The frame rate is
fixed through the ``FrameDurationLimits`` control. The same grab thread and reopen-with-backoff
as the USB cameras (:mod:`device.camera.grabber`)::

    source = Picamera2Source("0", fps=30, width=1280, height=720)
    frame = source.read(timeout=1.0)
    source.close()
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from device.camera import CameraError
from device.camera.grabber import BACKOFF_INITIAL_S, BACKOFF_MAX_S, STALL_TIMEOUT_S, LiveSource

log = logging.getLogger(__name__)

MISSING_MESSAGE = (
    "picamera2 is not installed: on Raspberry Pi OS run `sudo apt install python3-picamera2` "
    "and create the venv with --system-site-packages"
)

#: "RGB888" is B, G, R in memory (libcamera/DRM naming): what OpenCV calls BGR.
PIXEL_FORMAT = "RGB888"


def _import_picamera2_class() -> Any:
    try:
        from picamera2 import Picamera2  # only on a Pi, from apt
    except ImportError as exc:
        raise CameraError(MISSING_MESSAGE) from exc
    return Picamera2


def camera_index(target: str) -> int:
    """``"0"`` -> 0; anything else is a ValueError naming the spec."""
    text = str(target).strip()
    if not text.isdigit():
        raise ValueError(f"picamera2 camera {target!r}: expected a camera number, e.g. picamera2:0")
    return int(text)


class _PicameraDevice:
    """A started Picamera2 as a :class:`~device.camera.grabber.LiveDevice`."""

    def __init__(self, camera: Any, timeout_s: float, name: str) -> None:
        self._camera = camera
        self._timeout_s = timeout_s
        self._name = name

    def read(self) -> np.ndarray:
        # Asynchronous capture + bounded wait: a plain capture_array() would block forever on a
        # camera that stopped delivering, and the grab thread could never reopen it.
        job = self._camera.capture_array("main", wait=False)
        try:
            return self._camera.wait(job, timeout=self._timeout_s)
        except TimeoutError as exc:
            raise CameraError(f"no frame within {self._timeout_s:g} s") from exc

    def close(self) -> None:
        try:
            self._camera.stop()
        finally:
            self._camera.close()


class Picamera2Source(LiveSource):
    """A CSI camera module; see the module docstring.

    ``index`` is the camera number (``"0"``; the order of ``rpicam-hello --list-cameras``).
    Raises :class:`CameraError` at once when picamera2 is not installed. ``camera_class`` (tests)
    replaces ``picamera2.Picamera2``.
    """

    def __init__(
        self,
        index: str | int,
        fps: float = 30.0,
        width: int = 1280,
        height: int = 720,
        *,
        stall_timeout_s: float = STALL_TIMEOUT_S,
        backoff_initial_s: float = BACKOFF_INITIAL_S,
        backoff_max_s: float = BACKOFF_MAX_S,
        camera_class: Any = None,
    ) -> None:
        self.index = camera_index(str(index))
        self.name = f"picamera2:{self.index}"
        self.requested = (int(width), int(height), float(fps))
        self._camera_class = camera_class if camera_class is not None else _import_picamera2_class()
        self._stall_timeout_s = stall_timeout_s
        self._model: str | None = None
        self._start_grabber(self.name, stall_timeout_s, backoff_initial_s, backoff_max_s)

    def _open(self) -> _PicameraDevice:
        cameras = self._camera_class.global_camera_info()
        if self.index >= len(cameras):
            raise CameraError(
                f"no CSI camera {self.index}: libcamera sees {len(cameras)} camera(s) "
                "(check the ribbon cable and `rpicam-hello --list-cameras`)"
            )
        self._model = str(cameras[self.index].get("Model", "")) or None
        width, height, fps = self.requested
        frame_us = int(round(1_000_000 / fps))
        camera = self._camera_class(self.index)
        try:
            config = camera.create_video_configuration(
                main={"size": (width, height), "format": PIXEL_FORMAT},
                controls={"FrameDurationLimits": (frame_us, frame_us)},
            )
            camera.configure(config)
            camera.start()
        except Exception:
            camera.close()  # libcamera allows one owner per camera: free it for the next attempt
            raise
        return _PicameraDevice(camera, self._stall_timeout_s, self.name)

    def describe(self) -> str:
        width, height, fps = self.requested
        model = f" {self._model}" if self._model else ""
        return f"{self.name}{model} {width}x{height} {PIXEL_FORMAT} {fps:g}fps, {self._grabber.state_text()}"
