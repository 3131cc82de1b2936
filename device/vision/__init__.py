"""From a frame to decoded barcode symbols.

* :mod:`device.vision.gate`     -- skips frames in which nothing has changed
* :mod:`device.vision.locate`   -- finds barcode regions and turns them upright
* :mod:`device.vision.decoders` -- zxing-cpp and pyzbar behind one interface
* :mod:`device.vision.scanner`  -- the above, in the order the daemon runs them
* :mod:`device.vision.figures`  -- how well the camera sees a code: pixels per module, edge width, levels
* :mod:`device.vision.target`   -- the reference target: read and measured in its place in the view

Nothing here knows what a client card is: that is :mod:`device.card`.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Symbol:
    """One decoded barcode.

    ``symbology`` is the barcode type, in zxing-cpp's names whatever the decoder ("Code128", "EAN13", "ITF", ...).
    ``text`` is the decoded text as the decoder gave it (may hold any character: escape before
    logging). ``decoder`` is "zxing-cpp" or "pyzbar". ``quad`` is the symbol's corners in the
    frame's pixel coordinates, when known (for drawing in ``kiosk diag camera``). ``figures``:
    how well the camera saw it (:class:`CodeFigures`: the width of its narrowest bar and of its
    edges in the frame), for a symbol read from a located region (None for a read of the whole
    frame); not part of its identity.
    """

    symbology: str
    text: str
    decoder: str
    quad: tuple[tuple[float, float], ...] | None = None
    figures: CodeFigures | None = field(default=None, compare=False, repr=False)

    @property
    def module_px(self) -> float | None:
        """The width of its narrowest bar in the frame, pixels (the locator's estimate, which blur
        makes err high); None without :attr:`figures`."""
        return None if self.figures is None else self.figures.module_px


@dataclass(frozen=True)
class CodeFigures:
    """How sharp and how large a code looked, in frame pixels (:func:`device.vision.figures.code_figures`).

    ``module_px``: the width of a narrow bar (the locator's estimate; it errs a little high);
    ``edge_px``: how wide a bar's edge is, dark to light (the contrast over the steepest slope):
    about 1-2 for a sharp code, more as focus, motion or a dirty window blur it. The camera check
    (:mod:`device.daemon.camera_check`) follows both::

        >>> round(CodeFigures(module_px=2.8, edge_px=1.6).edge_modules, 2)
        0.57
    """

    module_px: float
    edge_px: float

    @property
    def edge_modules(self) -> float:
        """The edge width in modules: over about 1, narrow bars and spaces run into each other."""
        return self.edge_px / self.module_px
