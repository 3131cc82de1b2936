"""The gate: decode a frame only when the view changed, or when a periodic full look is due.

Most of a kiosk's day the counter is empty and the view does not change; decoding every frame
would keep a Raspberry Pi's CPU busy for nothing. The gate compares a tiny grey thumbnail of each
frame (80 pixels wide; ~0.1 ms for 1280x720) with the thumbnail of the last frame it let through, and says
"decode" when:

* ``change``: enough of the view differs (a card entering or moving),
* ``settle``: a change happened within the last ``settle_s`` seconds (a card that just stopped
  moving is at its sharpest: the frames right after motion are the best ones to read),
* ``full-look``: ``full_look_interval_s`` has passed since the last decode (a card held
  perfectly still, or slid in more slowly than the change threshold notices, is still read),
* ``first``: the first frame, a new frame size, or a clock that went backwards.

In a **quiet** view (no change for longer than ``settle_s``) the gate looks at only one frame in
``quiet_look_every`` (the daemon's default: every second frame) and skips the others without
looking (reason ``quiet``): no thumbnail, no decode of any kind, since for a camera's JPEG buffer
even the 1/8-scale decode is most of an idle kiosk's CPU. So a card entering a quiet view is
noticed at most ``quiet_look_every - 1`` frames later; from the first change on, every frame is
looked at again until the view has been still for ``settle_s``. A full look that is due is never
skipped, so a card held perfectly still is still read within ``full_look_interval_s``.

Time is the frame's own ``monotonic`` timestamp, never the wall clock (which jumps at NTP sync)::

    gate = Gate(full_look_interval_s=1.0)
    decision = gate.check(frame, frame.monotonic)
    if decision.decode:
        symbols = scanner.decode(frame.image)

Given a :class:`~device.camera.Frame` rather than an image, the gate looks only at
``frame.thumbnail_source``: for a camera's MJPEG buffer a 1/8-scale grey decode, so a frame the
gate skips is never decoded in full (the idle kiosk's largest cost otherwise).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from device.camera import Frame
from device.config import DEFAULTS

#: The 3-tap Gaussian (sigma about 0.85) that takes sensor noise out of the thumbnail.
_SMOOTH = np.array([0.25, 0.5, 0.25], np.float32)

#: Reasons a frame is let through, or why not.
#: ``skip``: looked at, nothing changed; ``quiet``: not looked at (a quiet view, see above).
REASONS = ("first", "change", "settle", "full-look", "skip", "quiet")


@dataclass(frozen=True)
class GateDecision:
    """Whether to decode this frame, why, and how much of the view changed (0..1; 0 for a frame
    skipped without looking, reason ``quiet``)."""

    decode: bool
    reason: str
    changed: float


class Gate:
    """Change detector on a small thumbnail; see the module docstring.

    ``pixel_threshold``: grey levels a thumbnail pixel must change by to count as changed
    (thumbnail pixels average many camera pixels, so sensor noise stays well below this).
    ``changed_fraction``: share of thumbnail pixels that must change for a ``change``
    (0.005 = 0.5 %: a card a tenth of the view wide, entering, is far above it).
    ``quiet_look_every``: in a quiet view, look at one frame in this many (1: every frame).

    >>> gate = Gate(full_look_interval_s=1.0, quiet_look_every=2)
    >>> still = np.full((480, 640), 128, np.uint8)
    >>> [gate.check(still, t).reason for t in (0.0, 0.1, 0.2, 0.3, 1.1)]
    ['first', 'quiet', 'skip', 'quiet', 'full-look']
    """

    def __init__(
        self,
        *,
        full_look_interval_s: float = DEFAULTS.scan.full_look_interval_s,
        settle_s: float = DEFAULTS.scan.settle_s,
        pixel_threshold: float = 10.0,
        changed_fraction: float = DEFAULTS.scan.change_threshold,
        thumb_width: int = 80,
        quiet_look_every: int = DEFAULTS.scan.quiet_look_every,
    ) -> None:
        if not full_look_interval_s > 0:
            raise ValueError(f"full_look_interval_s must be > 0 seconds, got {full_look_interval_s}")
        if settle_s < 0:
            raise ValueError(f"settle_s must be >= 0 seconds, got {settle_s}")
        if not 0 < changed_fraction <= 1:
            raise ValueError(f"changed_fraction must be in (0, 1], got {changed_fraction}")
        if thumb_width < 8:
            raise ValueError(f"thumb_width must be at least 8 pixels, got {thumb_width}")
        if quiet_look_every < 1:
            raise ValueError(f"quiet_look_every must be at least 1 (every frame), got {quiet_look_every}")
        self.full_look_interval_s = float(full_look_interval_s)
        self.settle_s = float(settle_s)
        self.pixel_threshold = float(pixel_threshold)
        self.changed_fraction = float(changed_fraction)
        self.thumb_width = int(thumb_width)
        self.quiet_look_every = int(quiet_look_every)
        #: Frames looked at (their thumbnail made) since the gate was made, for benchmarks.
        self.looked = 0
        self.reset()

    def reset(self) -> None:
        """Forget the reference view: the next frame is let through as ``first``."""
        self._reference: np.ndarray | None = None
        self._shape: tuple[int, ...] | None = None
        self._last_look = 0.0
        self._last_change = float("-inf")
        self._last_seen = float("-inf")
        self._unlooked = 0  # frames skipped without looking since the last one looked at

    def check(self, image: np.ndarray | Frame, monotonic: float) -> GateDecision:
        """Decide for one frame (grey or BGR uint8, or a :class:`~device.camera.Frame`) taken at
        ``monotonic`` seconds. A Frame that does not decode raises its ``CorruptFrame`` (when
        looked at: a frame skipped as ``quiet`` is not decoded at all)."""
        if self._quiet(monotonic):
            self._unlooked += 1
            return GateDecision(False, "quiet", 0.0)
        self._unlooked = 0
        self.looked += 1
        if isinstance(image, Frame):
            # Its cheapest picture at least the thumbnail's width: the size key is that
            # picture's, so a new camera size (or a switch to decoded frames) counts as "first".
            image = image.thumbnail_source(self.thumb_width)
        thumb = self._thumbnail(image)
        if self._reference is None or image.shape != self._shape or monotonic < self._last_seen:
            self._shape = image.shape
            return self._let_through(thumb, monotonic, "first", 1.0)
        self._last_seen = monotonic
        diff = cv2.absdiff(thumb, self._reference)
        changed = float(np.count_nonzero(diff > self.pixel_threshold)) / diff.size
        if changed >= self.changed_fraction:
            self._last_change = monotonic
            return self._let_through(thumb, monotonic, "change", changed)
        if monotonic - self._last_change <= self.settle_s:
            return self._let_through(thumb, monotonic, "settle", changed)
        if monotonic - self._last_look >= self.full_look_interval_s:
            return self._let_through(thumb, monotonic, "full-look", changed)
        return GateDecision(False, "skip", changed)

    def _quiet(self, monotonic: float) -> bool:
        """True to skip this frame without looking: a quiet view, this frame not one of the
        one-in-``quiet_look_every`` looked at, and no full look due. A clock that went
        backwards is looked at (it restarts the gate); a new frame size is noticed at the next look."""
        return (
            self._unlooked < self.quiet_look_every - 1
            and self._reference is not None
            and monotonic >= self._last_seen
            and monotonic - self._last_change > self.settle_s
            and monotonic - self._last_look < self.full_look_interval_s
        )

    def _let_through(self, thumb: np.ndarray, monotonic: float, reason: str, changed: float) -> GateDecision:
        # The reference is the last frame decoded: slow drifts add up until they count.
        self._reference = thumb
        self._last_look = monotonic
        self._last_seen = monotonic
        return GateDecision(True, reason, changed)

    def _thumbnail(self, image: np.ndarray) -> np.ndarray:
        h, w = image.shape[:2]
        tw = min(self.thumb_width, w)
        th = max(1, round(h * tw / w))
        # Sample 4x4 points per thumbnail pixel, then average them: far cheaper than
        # area-resizing the full frame, and the averaging still keeps sensor noise out.
        coarse = cv2.resize(image, (min(w, tw * 4), min(h, th * 4)), interpolation=cv2.INTER_NEAREST)
        thumb = cv2.resize(coarse, (tw, th), interpolation=cv2.INTER_AREA)
        if thumb.ndim == 3:
            thumb = cv2.cvtColor(thumb, cv2.COLOR_BGR2GRAY if thumb.shape[2] == 3 else cv2.COLOR_BGRA2GRAY)
        # The 3x3 Gaussian as two [1/4, 1/2, 1/4] passes: cv2.GaussianBlur, even on 80x45 pixels,
        # wakes OpenCV's thread pool, whose workers then spin: about 0.5 ms of CPU per frame, a
        # sixth of the idle kiosk's cost (measured, docs/BENCHMARKS.md). Same result to one level.
        return cv2.sepFilter2D(thumb, -1, _SMOOTH, _SMOOTH)
