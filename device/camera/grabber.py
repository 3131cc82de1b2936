"""The live cameras' shared machinery: a grab thread that keeps only the newest frame, and reopens
the device with exponential backoff when it vanishes or stalls.

A camera delivers frames at its own pace whether or not anyone is reading. If the kiosk reads
more slowly than the camera captures, the driver's queue fills and every frame read is already
old (V4L2 keeps several buffers). So one thread reads continuously and keeps just the newest
frame; :meth:`FrameGrabber.read` hands each captured frame out at most once.

Backends plug in an ``open_device`` callable returning a :class:`LiveDevice`::

    grabber = FrameGrabber("v4l2:/dev/video0", open_device=open_my_camera)
    grabber.start()
    frame = grabber.read(timeout=1.0)   # raises CameraError while the camera is down
    grabber.close()
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from device.backoff import Backoff
from device.camera import CameraError, Frame, FrameSource
from device.camera.exposure import ExposureState
from device.camera.focus import FocusState
from device.config import DEFAULTS
from device.threads import StopFlag, SupervisedThread

log = logging.getLogger(__name__)

#: The schema's default (camera.stall_timeout_s): one number, not a second one that drifts. The
#: camera reads the configuration's defaults; the configuration imports nothing of the camera.
STALL_TIMEOUT_S: float = DEFAULTS.camera.stall_timeout_s
#: Reopen waits (no config key: a camera that is back is found within half a minute).
BACKOFF_INITIAL_S = 0.5
BACKOFF_MAX_S = 30.0


class LiveDevice(Protocol):
    """One opened camera, as the grab thread sees it.

    ``read`` blocks until the next frame and returns it (uint8, BGR or grey; or an encoded
    :class:`~device.camera.Frame` it has checked, whose index and time the grabber sets). It raises any
    exception when the device failed or gave no frame within its own timeout. That timeout must
    be bounded (about the stall timeout): a thread blocked in a driver call cannot be interrupted,
    so a read that never returns would leave the camera "stalled" for good. ``close`` should
    return promptly too; the grabber gives it ``stall_timeout_s`` on a helper thread and then
    goes on without it (see :meth:`FrameGrabber._close_device`).
    """

    def read(self) -> np.ndarray | Frame: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class CaptureStats:
    """Counters of a live source, for status pages and ``kiosk status``."""

    state: str  #: "starting", "up", "down" or "closed"
    frames_captured: int  #: frames the device delivered since start
    frames_dropped: int  #: captured frames replaced by a newer one before anyone read them
    open_attempts: int  #: opens tried, the first one included
    reopen_attempts: int  #: opens tried after the first (each one a recovery attempt)
    last_error: str | None  #: why the camera last went down (None if it never did)
    down_for_s: float | None  #: seconds since it went down, None while up
    last_frame_age_s: float | None  #: seconds since the newest frame, None before the first
    no_frame_for_s: float  #: seconds without a frame: since the newest one, or since start before the first
    hung_closes: int = 0  #: closes of the device that never returned (a stuck driver)
    focus: str | None = None  #: the lens focus in effect (see device.camera.focus), None if not known
    lens_position: float | None = None  #: the lens position the camera last reported, None if it reports none
    exposure_us: float | None = None  #: the exposure time the camera last reported applying, None if not known
    gain: float | None = None  #: the gain it last reported (a CSI sensor's analogue gain; a webcam's V4L2 units)
    not_supported: tuple[str, ...] = ()  #: controls the configuration needs that this camera does not have


def _valid_image(image: object) -> bool:
    return (
        isinstance(image, np.ndarray)
        and image.dtype == np.uint8
        and image.size > 0
        and (image.ndim == 2 or (image.ndim == 3 and image.shape[2] in (1, 3)))
    )


class FrameGrabber:
    """Reads a live device on its own thread, keeps the newest frame, reopens after failures.

    ``name`` appears in every message (e.g. "v4l2:/dev/video0"). ``open_device`` is called on the
    grab thread to (re)open the camera; it raises to say the camera is not there (its message is
    shown to the technician). After a failed open or read the grabber waits ``backoff_initial_s``,
    then twice as long after each further failure, at most ``backoff_max_s``; the delay goes back
    to the start once a frame arrives. ``stall_timeout_s`` is how long without a frame counts as
    stalled in messages (the device's own read timeout should match it).

    The grab thread is a :class:`~device.threads.SupervisedThread`: a failure of the device is
    handled here (reopen with backoff), anything else that raises (a bug) restarts the thread
    and is a fault. Its progress is judged by frames (:meth:`no_frame_for_s`, the daemon's
    ``camera.restart_after_s`` rule), not by a heartbeat: a read blocked in the driver and an
    unplugged camera look the same from outside, and that rule already covers both.
    """

    def __init__(
        self,
        name: str,
        open_device: Callable[[], LiveDevice],
        *,
        stall_timeout_s: float = STALL_TIMEOUT_S,
        backoff_initial_s: float = BACKOFF_INITIAL_S,
        backoff_max_s: float = BACKOFF_MAX_S,
    ) -> None:
        if stall_timeout_s <= 0:
            raise ValueError("stall_timeout_s must be > 0")
        self.name = name
        self._open_device = open_device
        self.stall_timeout_s = stall_timeout_s
        # No jitter: one camera has nobody to collide with, and the technician reads exact waits.
        self._backoff = Backoff(backoff_initial_s, backoff_max_s, jitter=False)

        self._cond = threading.Condition()
        self._thread = SupervisedThread(f"grab {name}", self._run)
        self._closing = self._thread.stop_flag  # checked per frame and per reopen wait: the heartbeat
        # All below are guarded by self._cond.
        self._state = "starting"
        self._image: np.ndarray | Frame | None = None
        self._image_at: float | None = None
        self._seq = -1  # index of the newest captured frame
        self._returned_seq = -1  # index of the newest frame handed out
        self._frames_dropped = 0
        self._open_attempts = 0
        self._last_error: str | None = None
        self._down_since: float | None = None
        self._retry_at: float | None = None
        self._device_open = False
        self._started_at = time.monotonic()
        self._hung_closes = 0
        self._carried_down_since: float | None = None

    def start(self) -> None:
        """Start the grab thread (it opens the device). Calling it twice is an error."""
        if self._thread.started:
            raise RuntimeError(f"{self.name}: grabber already started")
        self._thread.start()

    def threads(self) -> list[SupervisedThread]:
        """The grab thread, for the daemon's supervisor."""
        return [self._thread]

    # -- consumer side -------------------------------------------------------------------------

    def read(self, timeout: float | None = None) -> Frame:
        """The newest frame not returned before, waiting at most ``timeout`` seconds for one.

        Raises :class:`CameraError` when none comes in time; its message says whether the
        camera is down (and why, and when the next reopen is), stalled, or merely slower than
        ``timeout``.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self._seq <= self._returned_seq:
                if self._state == "closed":
                    raise CameraError(f"{self.name}: closed")
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise CameraError(f"{self.name}: no frame within {timeout:g} s: {self._state_text_locked()}")
                self._cond.wait(remaining)
            self._frames_dropped += self._seq - self._returned_seq - 1
            self._returned_seq = self._seq
            assert self._image is not None and self._image_at is not None
            if isinstance(self._image, Frame):  # an encoded frame: handed out once, so stamped here
                frame = self._image
                frame.index, frame.monotonic, frame.origin = self._seq, self._image_at, self.name
                return frame
            return Frame(image=self._image, index=self._seq, monotonic=self._image_at, origin=self.name)

    def state_text(self) -> str:
        """ "up", "stalled: no frame for 3.1 s", "down for 12 s, retrying in 8 s: <reason>", ..."""
        with self._cond:
            return self._state_text_locked()

    def stats(self) -> CaptureStats:
        """A snapshot of the counters."""
        now = time.monotonic()
        with self._cond:
            return CaptureStats(
                state=self._state,
                frames_captured=self._seq + 1,
                frames_dropped=self._frames_dropped,
                open_attempts=self._open_attempts,
                reopen_attempts=max(self._open_attempts - 1, 0),
                last_error=self._last_error,
                down_for_s=None if self._down_since is None else now - self._down_since,
                last_frame_age_s=None if self._image_at is None else now - self._image_at,
                no_frame_for_s=now - (self._image_at if self._image_at is not None else self._started_at),
                hung_closes=self._hung_closes,
            )

    def carry_outage(self, down_since: float) -> None:
        """The camera was already down before this grabber existed, since ``down_since``
        (``time.monotonic()``, which counts from boot in every process): an earlier daemon's
        outage goes on. "Down for" then counts from there, until a frame arrives."""
        with self._cond:
            if self._seq >= 0:
                return  # frames came already: that outage is over
            self._carried_down_since = down_since
            if self._state == "down" and self._down_since is not None:
                self._down_since = min(self._down_since, down_since)

    def no_frame_for_s(self) -> float:
        """Seconds since the newest frame (since the grabber was made, before the first one).

        What the daemon's watchdog rule looks at: it grows whatever the reason (unplugged,
        stalled, a driver call that never returned), and only a delivered frame resets it.
        """
        with self._cond:
            since = self._image_at if self._image_at is not None else self._started_at
        return time.monotonic() - since

    def close(self) -> None:
        """Stop the grab thread and close the device. Safe to call more than once."""
        self._closing.set()
        with self._cond:
            self._state = "closed"
            self._cond.notify_all()
        thread = self._thread
        if thread.started and not thread.is_current():
            # A read blocked in the driver returns within the device's own timeout.
            if not thread.join(timeout=self.stall_timeout_s + 5.0):
                log.warning("%s: grab thread still blocked in the driver after close; leaving it", self.name)

    def _state_text_locked(self) -> str:
        now = time.monotonic()
        if self._state == "down":
            since = _seconds(now - (self._down_since or now))
            if self._device_open:
                return f"down for {since}, reopened, waiting for a frame: {self._last_error}"
            retry = _seconds(max((self._retry_at or now) - now, 0.0))
            return f"down for {since}, retrying in {retry}: {self._last_error}"
        if self._state == "up" and self._image_at is not None and now - self._image_at > self.stall_timeout_s:
            return f"stalled: no frame for {_seconds(now - self._image_at)}"
        if self._state == "starting" and self._device_open:
            return "opened, waiting for the first frame"
        return self._state

    # -- grab thread ---------------------------------------------------------------------------

    def _run(self, closing: StopFlag) -> None:
        while not closing.is_set():
            with self._cond:
                self._open_attempts += 1
                attempt = self._open_attempts
            try:
                device = self._open_device()
            except Exception as exc:  # any failure to open means "not there now"; say why
                reason = _reason(exc)
            else:
                self._set_device_open(True)
                reason, got_frame = self._grab_until_failure(device, attempt)
                self._set_device_open(False)
                if got_frame:
                    self._backoff.reset()
            if closing.is_set():
                return
            delay = self._backoff.next()
            self._went_down(reason, delay)
            if closing.wait(delay):
                return

    def _grab_until_failure(self, device: LiveDevice, attempt: int) -> tuple[str, bool]:
        """Read frames until the device fails or the grabber closes; returns (why, any frame)."""
        got_frame = False
        reason = "closed"
        try:
            while not self._closing.is_set():
                try:
                    image = device.read()
                except Exception as exc:
                    reason = f"read failed: {_reason(exc)}"
                    break
                # An encoded frame was checked by the device (its JPEG framing); a decoded one is checked here.
                pixels = image.image if isinstance(image, Frame) and image.decoded else image
                if not isinstance(pixels, Frame) and not _valid_image(pixels):
                    reason = f"read failed: device returned no usable image ({_describe_image(pixels)})"
                    break
                got_frame = True
                self._publish(image, attempt)
        finally:
            self._close_device(device)
        return reason, got_frame

    def _close_device(self, device: LiveDevice) -> None:
        """Close ``device`` without ever hanging the grab thread.

        A stalled driver can block a close for good (picamera2's ``stop()`` waits without a
        timeout behind a capture that never completes). The close runs on a helper thread and
        gets ``stall_timeout_s``; if it is still blocked then, the grab thread leaves it and goes
        on reopening. The next opens usually fail (the old handle still owns the camera), the
        camera stays down, and the daemon's watchdog rule (``camera.restart_after_s``) has systemd
        restart the process, which frees the camera for sure.
        """

        def close() -> None:
            try:
                device.close()
            except Exception as exc:  # a vanished device may fail to close; it is gone anyway
                log.debug("%s: closing the device failed: %s", self.name, _reason(exc))

        closer = threading.Thread(target=close, name=f"close {self.name}", daemon=True)
        closer.start()
        closer.join(self.stall_timeout_s)
        if closer.is_alive():
            with self._cond:
                self._hung_closes += 1
            log.error(
                "%s: closing the camera did not return within %s (driver stuck); reopening without it",
                self.name,
                _seconds(self.stall_timeout_s),
            )

    def _publish(self, image: np.ndarray | Frame, attempt: int) -> None:
        now = time.monotonic()
        with self._cond:
            if self._state == "closed":
                return
            previous, was_down = self._state, self._down_since
            self._image = image
            self._image_at = now
            self._seq += 1
            # "Up" means frames arrive, not merely that the device opened: a camera that opens
            # and then sends nothing stays "down" and is not announced as recovered.
            self._state = "up"
            self._down_since = None
            self._carried_down_since = None
            self._retry_at = None
            self._cond.notify_all()
        if previous == "down" and was_down is not None:
            log.info("%s: camera back after %s (open attempt %d)", self.name, _seconds(now - was_down), attempt)
        elif previous == "starting":
            log.info("%s: camera delivering frames", self.name)

    def _set_device_open(self, is_open: bool) -> None:
        with self._cond:
            self._device_open = is_open

    def _went_down(self, reason: str, delay: float) -> None:
        now = time.monotonic()
        with self._cond:
            if self._state == "closed":
                return
            first = self._state != "down"
            same_reason = reason == self._last_error
            self._state = "down"
            if first:
                carried = self._carried_down_since
                self._down_since = now if carried is None else min(carried, now)
            self._last_error = reason
            self._retry_at = now + delay
            self._cond.notify_all()
        # Say it loudly once; repeated identical failures while retrying only at debug level.
        if first or not same_reason:
            log.warning(
                "%s: camera down: %s (retrying in %s, backing off up to %s)",
                self.name,
                reason,
                _seconds(delay),
                _seconds(self._backoff.cap_s),
            )
        else:
            log.debug("%s: still down: %s (next try in %s)", self.name, reason, _seconds(delay))


class LiveSource(FrameSource):
    """A live camera read through a :class:`FrameGrabber`: what the V4L2 and picamera2 backends share.

    A backend opens its device in ``_open`` (called by the grab thread on every (re)open) and
    says what it is in ``describe``; reading, counters and closing are the grabber's.
    """

    finite = False
    #: What the lens does; backends with focus control set it before starting the grabber.
    focus: FocusState | None = None
    #: What the exposure does; backends with exposure control set it before starting the grabber.
    exposure: ExposureState | None = None

    def _start_grabber(self, name: str, stall_timeout_s: float, backoff_initial_s: float, backoff_max_s: float) -> None:
        self._grabber = FrameGrabber(
            name,
            self._open,
            stall_timeout_s=stall_timeout_s,
            backoff_initial_s=backoff_initial_s,
            backoff_max_s=backoff_max_s,
        )
        self._grabber.start()

    def _open(self) -> LiveDevice:
        raise NotImplementedError

    def read(self, timeout: float | None = None) -> Frame:
        return self._grabber.read(timeout)

    def stats(self) -> CaptureStats:
        """Counters for status: frames captured/dropped, reopen attempts, last error, focus, exposure."""
        stats = self._grabber.stats()
        if self.focus is not None:
            stats = dataclasses.replace(stats, focus=self.focus.mode, lens_position=self.focus.lens_position)
        if self.exposure is not None:
            applied = self.exposure.applied
            unsupported = self.exposure.unsupported
            stats = dataclasses.replace(stats, exposure_us=applied.exposure_us, gain=applied.gain, not_supported=unsupported)
        return stats

    def settled(self) -> bool | None:
        """Whether auto-exposure and autofocus have settled, as the camera's latest frame says;
        None when the camera does not say (see :func:`device.daemon.snapshot.take_settled_frame`)."""
        return None if self.exposure is None else self.exposure.applied.settled

    def carry_outage(self, down_since: float) -> None:
        """An earlier daemon's camera outage goes on (see :meth:`FrameGrabber.carry_outage`)."""
        self._grabber.carry_outage(down_since)

    def restart_cures_silence(self) -> bool:
        """Whether a restart of the daemon may bring frames back when none come.

        A close stuck in the driver holds the device for good: only a new process frees it
        (:meth:`FrameGrabber._close_device`). Otherwise no: a USB camera that is unplugged or
        gone is reopened here all the same, and a restart cannot bring it back. The CSI backend
        says yes also for a camera that had delivered frames (a stalled libcamera pipeline).
        """
        return self._grabber.stats().hung_closes > 0

    def no_frame_for_s(self) -> float:
        """Seconds without a frame (see :meth:`FrameGrabber.no_frame_for_s`)."""
        return self._grabber.no_frame_for_s()

    def threads(self) -> list[SupervisedThread]:
        return self._grabber.threads()

    def close(self) -> None:
        self._grabber.close()


def _seconds(value: float) -> str:
    return f"{value:.2g} s" if value < 10 else f"{value:.0f} s"


def _reason(exc: BaseException) -> str:
    text = str(exc).strip()
    return text if text else type(exc).__name__


def _describe_image(image: object) -> str:
    if isinstance(image, np.ndarray):
        return f"array {image.shape} {image.dtype}"
    return type(image).__name__
