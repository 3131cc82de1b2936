"""Frame sources: where camera frames come from.

One small interface, :class:`FrameSource`, with one module per backend:

* ``v4l2:/dev/v4l/by-id/usb-...-video-index0`` (or ``v4l2:/dev/video0``) -- USB (UVC) webcams
  through OpenCV's V4L2 backend (:mod:`device.camera.v4l2`)
* ``picamera2:0``     -- CSI camera modules through picamera2 (:mod:`device.camera.picamera2`)
* ``file:PATH``       -- a video file, an image file or a folder of images (:mod:`device.camera.file`)

The daemon never knows which one it has::

    source = open_source("file:tests/media/counter.mp4", pace="fast")
    while (frame := source.read(timeout=1.0)) is not None:
        handle(frame)          # frame.image decodes in full; frame.thumbnail_source(80) does not
    source.close()

The daemon and ``kiosk diag camera`` open the source as configured with :func:`open_camera`.
"""

from __future__ import annotations

import abc
from typing import TYPE_CHECKING

# The frame type lives beside, and imports cv2 and numpy only when a frame is decoded: importing
# this package (for its names and errors) stays light.
from device.camera.frame import CorruptFrame, Frame

# The backends' names live below this package and the config (which checks camera.source
# against them without importing the camera).
from device.camera_spec import BACKENDS

if TYPE_CHECKING:
    # The camera reads the configuration (one way: the configuration imports nothing of the camera).
    from device.camera.exposure import ExposureSettings
    from device.camera.focus import FocusSettings
    from device.config import CameraSection

__all__ = ["BACKENDS", "CameraError", "CorruptFrame", "Frame", "FrameSource", "open_camera", "open_source"]


class CameraError(Exception):
    """The source cannot give frames now (device missing, stalled, file unreadable).

    The message is meant for a technician: it names the device or file and says what to check.
    A live source keeps trying to reopen in the background; calling :meth:`FrameSource.read`
    again is the way to find out whether it is back.
    """


class FrameSource(abc.ABC):
    """A camera, or something that plays one.

    ``read`` returns the newest frame not returned before, waiting at most ``timeout`` seconds
    (None: wait as long as needed). It returns ``None`` when a finite source (a file) is used up,
    and raises :class:`CameraError` when no frame can be had within the timeout because the
    device is missing or stalled. It never returns the same frame twice.
    """

    #: True for files: the stream ends, and ``read`` returning None means "done".
    finite: bool = False

    @abc.abstractmethod
    def read(self, timeout: float | None = None) -> Frame | None: ...

    @abc.abstractmethod
    def close(self) -> None: ...

    @abc.abstractmethod
    def describe(self) -> str:
        """One line for status and logs: backend, device, resolution, state."""

    def threads(self) -> list:
        """The :class:`~device.threads.SupervisedThread` objects the source runs (a live camera's
        grab thread), for the daemon's supervisor to watch; none by default."""
        return []

    def __enter__(self) -> FrameSource:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_source(
    spec: str,
    *,
    pace: str = "realtime",
    fps: float = 30.0,
    width: int = 1280,
    height: int = 720,
    stall_timeout_s: float = 5.0,
    focus: FocusSettings | None = None,
    bad_reads: int = 5,
    exposure: ExposureSettings | None = None,
) -> FrameSource:
    """Open the source named by ``spec`` (the ``camera.source`` config value).

    Raises ``ValueError`` for a spec with no known backend, :class:`CameraError` when the backend
    cannot start at all (picamera2 not installed, file missing, a ``v4l2:`` node that is a CSI
    receiver). A live camera that is merely unplugged opens fine and reports through ``read``.
    ``focus`` (live cameras) defaults to continuous autofocus where the camera has it, ``exposure``
    to the camera's own auto-exposure; ``bad_reads`` (USB cameras) is how many failed reads in a row
    are tolerated before a reopen.
    """
    from device.camera.exposure import DEFAULT_EXPOSURE
    from device.camera.focus import DEFAULT_FOCUS

    focus = focus if focus is not None else DEFAULT_FOCUS
    exposure = exposure if exposure is not None else DEFAULT_EXPOSURE
    backend, sep, target = spec.partition(":")
    if not sep or not target:
        raise ValueError(f"camera source {spec!r}: expected BACKEND:TARGET, e.g. v4l2:/dev/video0, picamera2:0, file:PATH")
    if backend == "file":
        from device.camera.file import FileSource

        return FileSource(target, pace=pace)
    if backend == "v4l2":
        from device.camera.v4l2 import V4L2Source

        return V4L2Source(
            target,
            fps=fps,
            width=width,
            height=height,
            stall_timeout_s=stall_timeout_s,
            focus=focus,
            exposure=exposure,
            bad_reads=bad_reads,
        )
    if backend == "picamera2":
        from device.camera.picamera2 import Picamera2Source

        return Picamera2Source(target, fps=fps, width=width, height=height, stall_timeout_s=stall_timeout_s, focus=focus, exposure=exposure)
    raise ValueError(f"camera source {spec!r}: unknown backend {backend!r} (known: v4l2, picamera2, file)")


def open_camera(camera: CameraSection, *, pace: str | None = None) -> FrameSource:
    """The source as the ``[camera]`` section configures it (``pace`` overrides ``camera.pace``)::

    source = open_camera(cfg.camera)
    """
    from device.camera.exposure import ExposureSettings
    from device.camera.focus import FocusSettings

    return open_source(
        camera.source,
        pace=pace or camera.pace,
        fps=camera.fps,
        width=camera.width,
        height=camera.height,
        stall_timeout_s=camera.stall_timeout_s,
        focus=FocusSettings(camera.focus, camera.focus_dioptres, camera.v4l2_focus),
        bad_reads=camera.bad_reads,
        exposure=ExposureSettings(camera.exposure, camera.max_exposure_us, camera.max_gain, camera.v4l2_gain, camera.flicker_hz),
    )
