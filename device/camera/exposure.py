"""Exposure as configuration: what to ask of the camera, what it applied, and how far a moving card smears.

Clients slide a card in and take it away; they do not hold it still. In one frame a moving card
smears by speed x exposure time: at 20 cm/s, the 15-30 ms that a camera's own auto-exposure picks
indoors smear a card's Code 128 by 7 to 14 modules (unreadable), 1 ms by half a module. So the
kiosk says what it wants (``camera.exposure``):

* ``auto``  the camera's own auto-exposure (the default, until measured on a Pi);
* ``short`` the exposure held at ``camera.max_exposure_us`` and the gain at ``camera.max_gain``
  (CSI) or ``camera.v4l2_gain`` (USB): at a millisecond indoors an automatic gain would climb to
  its ceiling anyway, so the ceiling is what is set, and the picture's brightness comes from the
  kiosk's own light (docs/INSTALL.md, "Lighting").

``camera.flicker_hz`` (50 or 60) keeps the auto-exposure to whole periods of the lamps' flicker
(libcamera ``AeFlickerMode``/``AeFlickerPeriod``, V4L2 ``power_line_frequency``).

As with focus, a control is set only where the camera advertises it, and :class:`ExposureState`
records what was set, what could not be ("not supported by this camera"), and what the camera
reports it applied, frame by frame (libcamera's request metadata; V4L2's controls read back), for
``describe()``, ``kiosk status``, ``kiosk diag camera`` and the live view::

    >>> state = ExposureState(ExposureSettings(mode="short", max_exposure_us=1000, flicker_hz=50))
    >>> state.text()
    'exposure short 1000 us, gain 8'
    >>> state.setup("short 1000 us, gain 8", unsupported=["power_line_frequency"])
    >>> state.measured(exposure_us=998, gain=8.0); state.text()
    'exposure short 1000 us, gain 8, applied 998 us (0.48 modules at 20 cm/s), gain 8; not supported by this camera: power_line_frequency'
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from device.camera_spec import EXPOSURE_MODES, FLICKER_HZ
from device.card import CARD_MODULE_MM

#: The card speed the live view and the status count smear at: a card slid in briskly, 20 cm/s.
CARD_SPEED_MM_S = 200.0


def smear_modules(exposure_us: float, speed_mm_s: float = CARD_SPEED_MM_S, module_mm: float = CARD_MODULE_MM) -> float:
    """How many modules a card moving at ``speed_mm_s`` smears in one exposure of ``exposure_us``.

    Speed x exposure is the distance moved while the shutter is open; divided by the card's module
    (:data:`device.card.CARD_MODULE_MM`, 0.42 mm) it is the smear the decoder sees. The pipeline
    reads cards up to about 2 modules of smear (issue 24's measurement), commercial imagers keep it
    under one::

        >>> round(smear_modules(1000), 2)       # 1 ms at 20 cm/s: 0.2 mm
        0.48
        >>> round(smear_modules(20000), 1)      # 20 ms, what auto-exposure picks indoors
        9.5
        >>> round(smear_modules(1000, speed_mm_s=500), 1)  # 1 ms, a card waved at 50 cm/s
        1.2
    """
    return speed_mm_s * exposure_us / 1_000_000 / module_mm


@dataclass(frozen=True)
class ExposureSettings:
    """What the configuration asks for (``camera.exposure``, ``camera.max_exposure_us``,
    ``camera.max_gain``, ``camera.v4l2_gain``, ``camera.flicker_hz``)."""

    mode: str = "auto"
    max_exposure_us: int = 1000
    max_gain: float = 8.0
    v4l2_gain: int = -1
    flicker_hz: int = 0

    def __post_init__(self) -> None:
        if self.mode not in EXPOSURE_MODES:
            raise ValueError(f"exposure mode {self.mode!r}: expected one of {', '.join(EXPOSURE_MODES)}")
        if self.flicker_hz not in FLICKER_HZ:
            raise ValueError(f"flicker_hz {self.flicker_hz!r}: expected one of {', '.join(map(str, FLICKER_HZ))}")
        if self.max_exposure_us <= 0 or self.max_gain < 1:
            raise ValueError("max_exposure_us must be > 0 and max_gain >= 1")

    def requested_text(self) -> str:
        """``short 1000 us, gain 8``: what is asked, before the camera said anything."""
        if self.mode == "short":
            return f"short {self.max_exposure_us} us, gain {self.max_gain:g}"
        return "auto"


#: What a camera source does with the exposure when nobody says: the camera's own auto-exposure.
DEFAULT_EXPOSURE = ExposureSettings()


@dataclass(frozen=True)
class Applied:
    """What the camera reported for its latest frame; None where it reports nothing."""

    exposure_us: float | None = None
    gain: float | None = None
    frame_duration_us: float | None = None
    #: True once auto-exposure and autofocus say they have settled, False while they search,
    #: None when the camera does not say (then a few frames are the best guess).
    settled: bool | None = None


class ExposureState:
    """What a camera's exposure is doing: what was set up at the last open, what the camera could
    not take, and what it reports it applied (latest frame). ``gain_unit`` follows the gain in
    text: "" for a CSI sensor's analogue gain (a multiplier), " (V4L2 units)" for a webcam's.

    Written by the grab thread, read by status and diagnostics: guarded by a lock.
    """

    def __init__(self, settings: ExposureSettings, gain_unit: str = "") -> None:
        self.settings = settings
        self.gain_unit = gain_unit
        self._lock = threading.Lock()
        self._setup: str | None = None  # None until the camera was opened
        self._unsupported: tuple[str, ...] = ()
        self._applied = Applied()

    def setup(self, text: str, unsupported: list[str] | tuple[str, ...] = ()) -> None:
        """The camera was (re)opened: its exposure set up as ``text`` says, ``unsupported`` the
        controls the configuration needed that this camera does not have."""
        with self._lock:
            self._setup = text
            self._unsupported = tuple(unsupported)
            self._applied = Applied()

    def measured(self, exposure_us: float | None = None, gain: float | None = None, frame_duration_us: float | None = None) -> None:
        """The camera reported what it applied (None: it does not say)."""
        with self._lock:
            self._applied = Applied(
                None if exposure_us is None else float(exposure_us),
                None if gain is None else float(gain),
                None if frame_duration_us is None else float(frame_duration_us),
                self._applied.settled,
            )

    def settle(self, settled: bool | None) -> None:
        """Whether auto-exposure and autofocus have settled, as the camera's latest frame says."""
        with self._lock:
            self._applied = Applied(self._applied.exposure_us, self._applied.gain, self._applied.frame_duration_us, settled)

    @property
    def applied(self) -> Applied:
        with self._lock:
            return self._applied

    @property
    def unsupported(self) -> tuple[str, ...]:
        with self._lock:
            return self._unsupported

    def text(self) -> str:
        """``exposure auto, applied 16667 us (7.9 modules at 20 cm/s), gain 2.5``, ..."""
        with self._lock:
            setup, unsupported, applied = self._setup, self._unsupported, self._applied
        parts = [f"exposure {setup if setup is not None else self.settings.requested_text()}"]
        if applied.exposure_us is not None:
            smear = smear_modules(applied.exposure_us)
            parts.append(f"applied {applied.exposure_us:.0f} us ({smear:.2g} modules at {CARD_SPEED_MM_S / 10:g} cm/s)")
        if applied.gain is not None:
            parts.append(f"gain {applied.gain:.3g}{self.gain_unit}")
        text = ", ".join(parts)
        if unsupported:
            text += f"; not supported by this camera: {', '.join(unsupported)}"
        return text
