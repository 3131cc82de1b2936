"""CSI camera modules through picamera2 (libcamera).

On Raspberry Pi OS Bookworm, CSI cameras do not work through ``cv2.VideoCapture``; picamera2 comes
from apt (``python3-picamera2``), so the venv needs ``--system-site-packages``. Frames come from the
"main" stream of a video configuration in ``RGB888``, which picamera2 (following libcamera's
naming) lays out as B, G, R per pixel: OpenCV's order, no conversion needed. Beside it, the
ISP scales the same picture down to a small "lores" stream (YUV420, about 1/8 of the size; see
:func:`lores_size`): its grey (Y) plane is what the gate looks at, so the idle kiosk never
thumbnails the full frame on the CPU. The frame rate is
fixed through the ``FrameDurationLimits`` control, the lens through ``AfMode`` / ``LensPosition``
(:mod:`device.camera.focus`), the exposure through ``ExposureTime`` / ``AnalogueGain`` (and
``AeEnable`` where libcamera still has it) and the flicker through ``AeFlickerMode`` /
``AeFlickerPeriod`` (:mod:`device.camera.exposure`). The same grab thread and reopen-with-backoff
as the USB cameras (:mod:`device.camera.grabber`)::

    source = Picamera2Source("0", fps=30, width=1280, height=720, focus=FocusSettings("auto"))
    frame = source.read(timeout=1.0)
    print(source.describe())   # picamera2:0 imx708 1280x720 RGB888 30fps, focus auto, lens 4.8 dioptres (21 cm),
    source.close()             #   exposure auto, applied 16667 us (7.9 modules at 20 cm/s), gain 2.5, up

How picamera2 (0.3.x) behaves, and what that means here:

* A capture is a *job* in picamera2's job list, completed by its event loop when a frame
  arrives. ``wait(job, timeout)`` raises ``TimeoutError`` but leaves the job at the head of the
  list. ``stop()`` then queues behind it and waits with no timeout: on a stalled camera (a
  dislodged ribbon cable) it never returns. So a device is closed with ``cancel_all_and_flush()``
  (which picamera2 has for exactly that case) and then ``close()``, which stops the event loop
  first and the camera directly, never ``stop()``.
* A control libcamera does not advertise raises in ``configure``/``set_controls``, so focus and
  exposure controls are set only when ``camera_controls`` lists them (a Camera Module 2 has no
  lens control; a Camera Module 3 has ``AfMode`` and ``LensPosition``).
* ``camera_controls`` is read **after** ``configure``: picamera2 reads libcamera's controls again
  then, and their limits belong to the sensor mode chosen. Before it, a Camera Module 3's
  ``LensPosition`` reads a generic 0-32 dioptres; after, its real 0-15 (and ``ExposureTime`` the
  mode's range). So the stream is configured first, then the controls are set with
  ``set_controls``, which picamera2 keeps and hands to libcamera at ``start()``.
* What libcamera made of the request is read back, not assumed: the stream size from
  ``camera_configuration()`` after ``configure`` (a Pi 4's ISP forces at least 64 pixels a side
  on small streams) and the frame rate from each request's ``FrameDuration`` metadata, beside its
  ``ExposureTime``, ``AnalogueGain``, ``LensPosition`` and the AE/AF states that say when the
  picture has settled (``AeLocked``, or ``AeState`` in libcamera 0.5 and later; ``AfState``).
* A ``Picamera2`` whose constructor fails (the camera busy or gone) has made its notification pipe
  already, and its ``close()`` does nothing for a camera that never opened: each failed reopen
  would leak a file descriptor. The object is made in two steps here, so a half-made one is
  closed too (:func:`close_camera`). ``cancel_all_and_flush()`` exists from picamera2 0.3.20 on
  (install.sh upgrades an older ``python3-picamera2``); without it a stalled camera's close may
  hang, which the grab thread outlives and the watchdog's restart cures.
* CSI cameras are found only when the system boots: a reseated ribbon cable needs a reboot, so
  the "unplug and plug back" that cures a USB camera cannot work here, and the messages say so.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

from device.camera import CameraError, Frame
from device.camera.exposure import DEFAULT_EXPOSURE, ExposureSettings, ExposureState
from device.camera.focus import DEFAULT_FOCUS, FocusSettings, FocusState, manual_text
from device.camera.grabber import BACKOFF_INITIAL_S, BACKOFF_MAX_S, STALL_TIMEOUT_S, LiveSource
from device.camera_spec import flicker_period_us

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
#: AfStateEnum: Idle 0, Scanning 1, Focused 2, Failed 3 (only Scanning is "not yet").
AF_STATE_SCANNING = 1
#: AeStateEnum (libcamera 0.5 and later, replacing AeLocked): Idle 0, Searching 1, Converged 2.
AE_STATE_CONVERGED = 2
#: AeFlickerModeEnum: FlickerOff 0, FlickerManual 1 (the period from AeFlickerPeriod), FlickerAuto 2.
AE_FLICKER_MANUAL = 1


def settled_from_metadata(metadata: Mapping[str, Any]) -> bool | None:
    """Whether a frame's metadata says auto-exposure and autofocus have settled; None when it says
    nothing of either (a fixed exposure and no lens: nothing to wait for that the camera reports).

    >>> settled_from_metadata({"AeLocked": False, "AfState": 2}), settled_from_metadata({"AeState": 2, "AfState": 2})
    (False, True)
    >>> settled_from_metadata({"AeLocked": True, "AfState": 1}), settled_from_metadata({"ExposureTime": 1000})
    (False, None)
    """
    states = []
    if "AeLocked" in metadata:
        states.append(bool(metadata["AeLocked"]))
    elif "AeState" in metadata:
        states.append(metadata["AeState"] == AE_STATE_CONVERGED)
    if "AfState" in metadata:
        states.append(metadata["AfState"] != AF_STATE_SCANNING)
    return all(states) if states else None


def close_camera(camera: Any) -> None:
    """Close a ``Picamera2``, also one whose constructor failed half-way.

    picamera2's constructor makes a notification pipe before it acquires the camera, and its
    ``close()`` returns at once for a camera that never opened (``is_open`` False), leaving that
    pipe's write end open for good (picamera2 0.3.x, up to 0.3.36 at least). Closed here, only for
    a camera that never opened: an opened one's ``close()`` closes its pipe itself, and closing a
    descriptor twice could close another thread's file that took its number.
    """
    never_opened = not getattr(camera, "is_open", True)
    try:
        camera.close()
    finally:
        if never_opened:
            reader = getattr(camera, "notifymeread", None)
            if reader is not None and not reader.closed:
                reader.close()
            writer = getattr(camera, "notifyme_w", None)
            if isinstance(writer, int):
                try:
                    os.close(writer)
                except OSError:
                    pass
                camera.notifyme_w = None


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

    def __init__(
        self, camera: Any, timeout_s: float, name: str, focus: FocusState, exposure: ExposureState, lores: tuple[int, int]
    ) -> None:
        self._camera = camera
        self._lores = lores
        self._timeout_s = timeout_s
        self._name = name
        self._focus = focus
        self._exposure = exposure

    def read(self) -> Frame:
        # Asynchronous capture + bounded wait: a plain capture_array() would block forever on a
        # camera that stopped delivering, and the grab thread could never reopen it. The
        # metadata comes along: what the camera applied to this frame.
        job = self._camera.capture_arrays(["main", "lores"], wait=False)
        try:
            (image, lores), metadata = self._camera.wait(job, timeout=self._timeout_s)
        except TimeoutError as exc:
            raise CameraError(
                f"no frame within {self._timeout_s:g} s: the camera stalled (cable loose?); reopening it. "
                f"If it stays down, the daemon restarts by itself; if that does not help either: {REBOOT_HINT}"
            ) from exc
        self._focus.lens(metadata.get("LensPosition"), "dioptres")
        self._exposure.measured(metadata.get("ExposureTime"), metadata.get("AnalogueGain"), metadata.get("FrameDuration"))
        self._exposure.settle(settled_from_metadata(metadata))
        # picamera2 gives a YUV420 stream as (height * 3/2) rows of ``stride`` bytes: the first
        # ``height`` rows, cut to the width, are the Y plane.
        width, height = self._lores
        return Frame(image, lores=lores[:height, :width], exposure_us=metadata.get("ExposureTime"))

    def close(self) -> None:
        # Never stop(): after a timeout the unfinished capture job is still first in picamera2's
        # job list, and stop() would queue behind it and wait with no timeout. Drop the jobs, then
        # close(), which stops the event loop and then the camera directly.
        flush = getattr(self._camera, "cancel_all_and_flush", None)
        try:
            if flush is not None:
                flush()
            else:
                log.warning(
                    "%s: picamera2 is older than 0.3.20 (no cancel_all_and_flush): closing a stalled camera may hang "
                    "(then the daemon restarts); `sudo ./install.sh` upgrades python3-picamera2",
                    self._name,
                )
        finally:
            close_camera(self._camera)


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
        exposure: ExposureSettings = DEFAULT_EXPOSURE,
        camera_class: Any = None,
    ) -> None:
        self.index = camera_index(str(index))
        self.name = f"picamera2:{self.index}"
        self.requested = (int(width), int(height), float(fps))
        self._camera_class = camera_class if camera_class is not None else _import_picamera2_class()
        self._stall_timeout_s = stall_timeout_s
        self._model: str | None = None
        # The main stream's size as libcamera set it up, known after the first configure.
        self._configured_size: tuple[int, int] | None = None
        self.focus = FocusState(focus)
        self.exposure = ExposureState(exposure)
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
        camera = self._new_camera()
        try:
            config = camera.create_video_configuration(
                main={"size": (width, height), "format": PIXEL_FORMAT},
                lores={"size": lores_size(width, height), "format": LORES_FORMAT},
                controls={"FrameDurationLimits": (frame_us, frame_us)},
            )
            camera.configure(config)
            # The limits of the configured sensor mode: only now the lens range is the lens's own.
            advertised = camera.camera_controls
            controls = {**self._focus_controls(advertised), **self._exposure_controls(advertised)}
            if controls:
                camera.set_controls(controls)  # kept by picamera2, handed to libcamera at start()
            self._configured_size = _main_size(camera)
            camera.start()
        except Exception:
            close_camera(camera)  # libcamera allows one owner per camera: free it for the next attempt
            raise
        return _PicameraDevice(camera, self._stall_timeout_s, self.name, self.focus, self.exposure, lores_size(width, height))

    def _new_camera(self) -> Any:
        """A ``Picamera2`` for this camera; a half-made one (its constructor raised) is closed
        before the error goes on (see :func:`close_camera`)."""
        camera = self._camera_class.__new__(self._camera_class)
        try:
            camera.__init__(self.index)
        except Exception:
            close_camera(camera)
            raise
        return camera

    def _exposure_controls(self, advertised: Mapping[str, tuple[Any, Any, Any]]) -> dict[str, Any]:
        """The exposure and flicker controls for ``camera.exposure`` and ``camera.flicker_hz``,
        limited to what the camera advertises (after ``configure``: the sensor mode's limits).

        Records what was set up, and what this camera lacks, in :attr:`exposure`.
        """
        settings = self.exposure.settings
        controls: dict[str, Any] = {}
        unsupported: list[str] = []
        text = "auto"
        if settings.mode == "short":
            if "ExposureTime" in advertised:
                exposure_us = int(_clamped(settings.max_exposure_us, advertised["ExposureTime"], self.name, "camera.max_exposure_us"))
                controls["ExposureTime"] = exposure_us
                text = f"short {exposure_us} us"
                if "AnalogueGain" in advertised:
                    gain = _clamped(settings.max_gain, advertised["AnalogueGain"], self.name, "camera.max_gain")
                    controls["AnalogueGain"] = float(gain)
                    text += f", gain {gain:g}"
                else:
                    unsupported.append("AnalogueGain")
                # libcamera before 0.5 switches the AE off with AeEnable; later ones have
                # ExposureTimeMode/AnalogueGainMode instead, which picamera2 sets from the values.
                if "AeEnable" in advertised:
                    controls["AeEnable"] = False
            else:
                unsupported.append("ExposureTime")
                text = "auto (the camera has no exposure control)"
        if settings.flicker_hz:
            if "AeFlickerMode" in advertised and "AeFlickerPeriod" in advertised:
                controls["AeFlickerMode"] = AE_FLICKER_MANUAL
                controls["AeFlickerPeriod"] = int(round(flicker_period_us(settings.flicker_hz)))
                text += f", flicker {settings.flicker_hz} Hz"
            else:
                unsupported.append("AeFlickerMode")
        if unsupported:
            log.warning("%s: not supported by this camera: %s (camera.exposure / camera.flicker_hz)", self.name, ", ".join(unsupported))
        self.exposure.setup(text, unsupported)
        return controls

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
        """What libcamera set up, not what was asked: the stream's size after ``configure`` and
        the frame rate from the latest frame's ``FrameDuration`` ("(requested)" before either)."""
        width, height, fps = self.requested
        model = f" {self._model}" if self._model else ""
        duration = self.exposure.applied.frame_duration_us
        size = f"{width}x{height}" if self._configured_size is None else "{}x{}".format(*self._configured_size)
        rate = f"{fps:g}fps (requested)" if not duration else f"{1_000_000 / duration:.3g}fps"
        settings = f"{size} {PIXEL_FORMAT} {rate}"
        return f"{self.name}{model} {settings}, {self.focus.text()}, {self.exposure.text()}, {self._grabber.state_text()}"

    def restart_cures_silence(self) -> bool:
        """A CSI camera that had delivered frames and stopped: a stalled libcamera pipeline, which
        a new process cures (libcamera hands the camera to a new owner only once the old one is
        gone). One that never delivered in this process is absent or broken: a restart would not
        help, and restarting for ever would hide it (see :meth:`LiveSource.restart_cures_silence`)."""
        return self._grabber.stats().frames_captured > 0 or super().restart_cures_silence()


def _main_size(camera: Any) -> tuple[int, int] | None:
    """The main stream's size as libcamera configured it (picamera2 writes it back after ``configure``)."""
    try:
        size = camera.camera_configuration()["main"]["size"]
        return int(size[0]), int(size[1])
    except (AttributeError, KeyError, TypeError, IndexError, ValueError):
        return None


def _clamped(value: float, limits: tuple[Any, Any, Any], name: str, key: str) -> float:
    """``value`` within an advertised control's (min, max, default), said in the log when it was not."""
    low, high, _default = limits
    if low is not None and high is not None and high > 0 and not low <= value <= high:
        clamped = min(max(value, float(low)), float(high))
        log.warning("%s: %s = %g is outside this camera's range %g..%g; using %g", name, key, value, low, high, clamped)
        return clamped
    return value
