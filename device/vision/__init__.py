"""From a frame to decoded barcode symbols.

* :mod:`device.vision.gate`     -- skips frames in which nothing has changed
* :mod:`device.vision.locate`   -- finds barcode regions and turns them upright
* :mod:`device.vision.decoders` -- zxing-cpp and pyzbar behind one interface
* :mod:`device.vision.scanner`  -- the above, in the order the daemon runs them

Nothing here knows what a client card is: that is :mod:`device.card`.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Symbol:
    """One decoded barcode.

    ``symbology`` is the barcode type, in zxing-cpp's names whatever the decoder ("Code128", "EAN13", "ITF", ...).
    ``text`` is the decoded text as the decoder gave it (may hold any character: escape before
    logging). ``decoder`` is "zxing-cpp" or "pyzbar". ``quad`` is the symbol's corners in the
    frame's pixel coordinates, when known (for drawing in ``kiosk diag camera``). ``module_px`` is
    the width of its narrowest bar in the frame, in pixels, as the locator estimated it for the
    region it was read in (None for a read of the whole frame); blur makes the estimate err high.
    """

    symbology: str
    text: str
    decoder: str
    quad: tuple[tuple[float, float], ...] | None = None
    module_px: float | None = None
