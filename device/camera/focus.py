"""Lens focus as configuration: what to ask of the camera, and what it actually does.

A card is held about 20 cm from the camera. A lens that nobody drives stays where the driver parks
it: libcamera starts a Camera Module 3 (imx708) in manual focus at its tuning default of 1.0
dioptre, sharp at 1 m, and the bars of a card at 20 cm blur far beyond one module. So the kiosk
always says what it wants (``camera.focus``):

* ``auto``   continuous autofocus, where the camera has it (the default);
* ``manual`` the lens held at a set position: ``camera.focus_dioptres`` on a CSI module,
  ``camera.v4l2_focus`` (the device's own units) on a USB webcam;
* ``fixed``  no lens control at all (fixed-focus modules, or a lens focused by hand).

A control is set only when the camera advertises it (picamera2 raises on controls libcamera does
not offer), and :class:`FocusState` records what was done, for ``describe()``, ``stats()``,
``kiosk status`` and ``kiosk diag camera``::

    >>> state = FocusState(FocusSettings(mode="manual", dioptres=5.0))
    >>> state.text()
    'focus manual 5 dioptres (20 cm)'
    >>> state.applied("auto"); state.lens(4.8, "dioptres"); state.text()
    'focus auto, lens 4.8 dioptres (21 cm)'
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

# The values of camera.focus, below the config and the camera (the config checks them without
# importing this package).
from device.camera_spec import FOCUS_MODES


def distance_text(dioptres: float) -> str:
    """Where a lens at ``dioptres`` is sharp: 1 / dioptres metres.

    >>> distance_text(5.0), distance_text(1.0), distance_text(0.0)
    ('20 cm', '1 m', 'infinity')
    """
    if dioptres <= 0:
        return "infinity"
    metres = 1.0 / dioptres
    return f"{metres * 100:.0f} cm" if metres < 1 else f"{metres:.3g} m"


def manual_text(dioptres: float) -> str:
    """``manual 5 dioptres (20 cm)``: a manual lens position as shown in status."""
    return f"manual {dioptres:g} dioptres ({distance_text(dioptres)})"


@dataclass(frozen=True)
class FocusSettings:
    """What the configuration asks for (``camera.focus``, ``camera.focus_dioptres``, ``camera.v4l2_focus``).

    ``dioptres`` is the lens position for CSI modules in manual mode (5.0 is sharp at 20 cm);
    ``v4l2_position`` is the V4L2 ``focus_absolute`` value for USB webcams in manual mode, in the
    device's own units (-1: leave the lens where it is).
    """

    mode: str = "auto"
    dioptres: float = 5.0
    v4l2_position: int = -1

    def __post_init__(self) -> None:
        if self.mode not in FOCUS_MODES:
            raise ValueError(f"focus mode {self.mode!r}: expected one of {', '.join(FOCUS_MODES)}")
        if self.dioptres < 0:
            raise ValueError("focus dioptres must be >= 0")


#: What a camera source does with the lens when nobody says: continuous autofocus where the camera has it.
DEFAULT_FOCUS = FocusSettings()


class FocusState:
    """What a camera's lens is doing: the mode applied after the last open, and the latest lens
    position the camera reported (dioptres for CSI modules, device units for USB webcams).

    Written by the grab thread, read by status and diagnostics: guarded by a lock.
    """

    def __init__(self, settings: FocusSettings) -> None:
        self.settings = settings
        self._lock = threading.Lock()
        self._applied: str | None = None  # None until the camera was opened
        self._lens: float | None = None
        self._lens_unit = ""

    def applied(self, mode_text: str) -> None:
        """The camera was (re)opened and its focus set up as ``mode_text`` says."""
        with self._lock:
            self._applied = mode_text

    def lens(self, position: float | None, unit: str) -> None:
        """The camera reported its lens position (None: it reports none)."""
        with self._lock:
            self._lens = None if position is None else float(position)
            self._lens_unit = unit

    @property
    def mode(self) -> str:
        """The mode in effect: the applied one once the camera opened, else the requested one."""
        with self._lock:
            return self._applied or self.settings.mode

    @property
    def lens_position(self) -> float | None:
        with self._lock:
            return self._lens

    def text(self) -> str:
        """``focus auto, lens 4.8 dioptres (21 cm)``, ``focus fixed (no lens control)``, ..."""
        with self._lock:
            applied, lens, unit = self._applied, self._lens, self._lens_unit
        if applied is None:
            s = self.settings
            applied = manual_text(s.dioptres) if s.mode == "manual" else s.mode
        if lens is None:
            return f"focus {applied}"
        where = f" ({distance_text(lens)})" if unit == "dioptres" else ""
        return f"focus {applied}, lens {lens:.3g} {unit}{where}"
