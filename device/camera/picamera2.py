"""CSI camera modules through picamera2 (libcamera).

On Raspberry Pi OS Bookworm, CSI cameras do not work through ``cv2.VideoCapture``; picamera2 comes
from apt (``python3-picamera2``), so the venv needs ``--system-site-packages``. Frames come from the
"main" stream of a video configuration in ``RGB888``, which picamera2 (following libcamera's
naming) lays out as B, G, R per pixel: OpenCV's order, no conversion needed. Beside it, the
ISP scales the same picture down to a small "lores" stream (YUV420, about 1/8 of the size; see
:func:`lores_size`): its grey (Y) plane is what the gate looks at, so the idle kiosk never
thumbnails the full frame on the CPU. The frame rate is
fixed through the ``FrameDurationLimits`` control, the lens through ``AfMode`` / ``LensPosition``
(:mod:`device.camera.focus`). The same grab thread and reopen-with-backoff as the USB cameras
(:mod:`device.camera.grabber`)::

    source = Picamera2Source("0", fps=30, width=1280, height=720, focus=FocusSettings("auto"))
    frame = source.read(timeout=1.0)
    print(source.describe())   # picamera2:0 imx708 1280x720 RGB888 30fps, focus auto, lens 4.8 dioptres (21 cm), up
    source.close()

How picamera2 (0.3.x) behaves, and what that means here:

* A capture is a *job* in picamera2's job list, completed by its event loop when a frame
  arrives. ``wait(job, timeout)`` raises ``TimeoutError`` but leaves the job at the head of the
  list. ``stop()`` then queues behind it and waits with no timeout: on a stalled camera (a
  dislodged ribbon cable) it never returns. So a device is closed with ``cancel_all_and_flush()``
  (which picamera2 has for exactly that case) and then ``close()``, which stops the event loop
  first and the camera directly, never ``stop()``.
* A control libcamera does not advertise raises in ``configure``/``set_controls``, so focus
  controls are set only when ``camera_controls`` lists them (a Camera Module 2 has no lens
  control; a Camera Module 3 has ``AfMode`` and ``LensPosition``).
* CSI cameras are found only when the system boots: a reseated ribbon cable needs a reboot, so
  the "unplug and plug back" that cures a USB camera cannot work here, and the messages say so.
"""

from __future__ import annotations

import logging
from typing import Any

from device.camera import CameraError, Frame
from device.camera.focus import DEFAULT_FOCUS, FocusSettings, FocusState, manual_text
from device.camera.grabber import BACKOFF_INITIAL_S, BACKOFF_MAX_S, STALL_TIMEOUT_S, LiveSource

log = logging.getLogger(__name__)

MISSING_MESSAGE = (
    "picamera2 is not installed: on Raspberry Pi OS run `sudo apt install python3-picamera2` "
    "and create the venv with --system-site-packages"
)

#: "RGB888" is B, G, R in memory (libcamera/DRM naming): what OpenCV calls BGR.
PIXEL_FORMAT = "RGB888"

#: The lores stream's format: YUV420 is the one a Pi 4's ISP gives for it (a Pi 5 has more).
LORES_FORMAT = "YUV420"


def lores_size(width: int, height: int) -> tuple[int, int]:
    """The lores stream's size for a main stream of ``width`` x ``height``: 1/8, even numbers.

    >>> lores_size(1280, 720), lores_size(640, 480)
    ((160, 90), (80, 60))
    """
    return max(2, width // 8 // 2 * 2), max(2, height // 8 // 2 * 2)


#: libcamera's AfModeEnum values (control_ids_core.yaml): Manual 0, Auto 1, Continuous 2.
AF_MODE_MANUAL = 0
AF_MODE_CONTINUOUS = 2

#: Part of every "camera gone" message: what a technician can and cannot do about a CSI camera.
REBOOT_HINT = (
    "CSI cameras are found only at boot: after reseating the ribbon cable, reboot the Pi "
    "(unplugging and plugging back does nothing until then)"
)


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

    def __init__(self, camera: Any, timeout_s: float, name: str, focus: FocusState, lores: tuple[int, int]) -> None:
        self._camera = camera
        self._lores = lores
        self._timeout_s = timeout_s
        self._name = name
        self._focus = focus

    def read(self) -> Frame:
        # Asynchronous capture + bounded wait: a plain capture_array() would block forever on a
        # camera that stopped delivering, and the grab thread could never reopen it. The
        # metadata comes along for the lens position.
        job = self._camera.capture_arrays(["main", "lores"], wait=False)
        try:
            (image, lores), metadata = self._camera.wait(job, timeout=self._timeout_s)
        except TimeoutError as exc:
            raise CameraError(
                f"no frame within {self._timeout_s:g} s: the camera stalled (cable loose?); reopening it. "
                f"If it stays down, the daemon restarts by itself; if that does not help either: {REBOOT_HINT}"
            ) from exc
        self._focus.lens(metadata.get("LensPosition"), "dioptres")
        # picamera2 gives a YUV420 stream as (height * 3/2) rows of ``stride`` bytes: the first
        # ``height`` rows, cut to the width, are the Y plane.
        width, height = self._lores
        return Frame(image, lores=lores[:height, :width])

    def close(self) -> None:
        # Never stop(): after a timeout the unfinished capture job is still first in picamera2's
        # job list, and stop() would queue behind it and wait with no timeout. Drop the jobs, then
        # close(), which stops the event loop and then the camera directly.
        try:
            self._camera.cancel_all_and_flush()
        finally:
            self._camera.close()


class Picamera2Source(LiveSource):
    """A CSI camera module; see the module docstring.

    ``index`` is the camera number (``"0"``; the order of ``rpicam-hello --list-cameras``).
    ``focus`` says what to do with the lens (:class:`~device.camera.focus.FocusSettings`; the
    default is continuous autofocus where the module has it). Raises :class:`CameraError` at once
    when picamera2 is not installed. ``camera_class`` (tests) replaces ``picamera2.Picamera2``.
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
        focus: FocusSettings = DEFAULT_FOCUS,
        camera_class: Any = None,
    ) -> None:
        self.index = camera_index(str(index))
        self.name = f"picamera2:{self.index}"
        self.requested = (int(width), int(height), float(fps))
        self._camera_class = camera_class if camera_class is not None else _import_picamera2_class()
        self._stall_timeout_s = stall_timeout_s
        self._model: str | None = None
        self.focus = FocusState(focus)
        self._start_grabber(self.name, stall_timeout_s, backoff_initial_s, backoff_max_s)

    def _open(self) -> _PicameraDevice:
        cameras = self._camera_class.global_camera_info()
        if self.index >= len(cameras):
            raise CameraError(
                f"no CSI camera {self.index}: libcamera sees {len(cameras)} camera(s) (`rpicam-hello --list-cameras`). {REBOOT_HINT}"
            )
        self._model = str(cameras[self.index].get("Model", "")) or None
        width, height, fps = self.requested
        frame_us = int(round(1_000_000 / fps))
        camera = self._camera_class(self.index)
        try:
            controls = {"FrameDurationLimits": (frame_us, frame_us)}
            controls.update(self._focus_controls(camera.camera_controls))
            config = camera.create_video_configuration(
                main={"size": (width, height), "format": PIXEL_FORMAT},
                lores={"size": lores_size(width, height), "format": LORES_FORMAT},
                controls=controls,
            )
            camera.configure(config)
            camera.start()
        except Exception:
            camera.close()  # libcamera allows one owner per camera: free it for the next attempt
            raise
        return _PicameraDevice(camera, self._stall_timeout_s, self.name, self.focus, lores_size(width, height))

    def _focus_controls(self, advertised: dict[str, tuple[Any, Any, Any]]) -> dict[str, Any]:
        """The focus controls for ``camera.focus``, limited to what the camera advertises.

        ``advertised`` is picamera2's ``camera_controls``: name -> (min, max, default).
        Records the mode applied in :attr:`focus`.
        """
        settings = self.focus.settings
        has_lens = "AfMode" in advertised and "LensPosition" in advertised
        if settings.mode == "fixed":
            self.focus.applied("fixed (lens not driven)" if has_lens else "fixed (no lens control)")
            return {}
        if not has_lens:
            # A fixed-focus module (Camera Module 2, HQ camera with a manual lens): nothing to set.
            if settings.mode == "manual":
                log.warning('%s: camera.focus = "manual", but this camera has no lens control; ignored', self.name)
            self.focus.applied("fixed (camera has no lens control)")
            return {}
        if settings.mode == "auto":
            self.focus.applied("auto")
            return {"AfMode": AF_MODE_CONTINUOUS}
        low, high, _default = advertised["LensPosition"]
        dioptres = settings.dioptres
        if low is not None and high is not None and not low <= dioptres <= high:
            clamped = min(max(dioptres, float(low)), float(high))
            log.warning(
                "%s: camera.focus_dioptres = %g is outside this lens's range %g..%g; using %g",
                self.name,
                dioptres,
                low,
                high,
                clamped,
            )
            dioptres = clamped
        self.focus.applied(manual_text(dioptres))
        return {"AfMode": AF_MODE_MANUAL, "LensPosition": float(dioptres)}

    def describe(self) -> str:
        width, height, fps = self.requested
        model = f" {self._model}" if self._model else ""
        return f"{self.name}{model} {width}x{height} {PIXEL_FORMAT} {fps:g}fps, {self.focus.text()}, {self._grabber.state_text()}"
