"""Hide what a card shows in clear (the client's name, contract number, address) in a snapshot,
keeping the decoded barcodes sharp so the snapshot still reads and still shows the focus there.

A technician's snapshot leaves the kiosk (copied to a laptop, attached to a ticket): by default
everything but the barcodes that were read is blurred beyond reading::

    hidden = blur_outside(frame, barcode_areas(readings))
    cv2.imwrite("s.png", hidden)        # `kiosk scan s.png` still reads the card

Only the decoded symbols' positions stay sharp, not every located region: the locator takes a
line of printed text for a barcode-like region at times (on the synthetic card it finds the
utility's name line), and a name line must not stay readable because of that.
"""

from __future__ import annotations

import cv2
import numpy as np

from device.pipeline import Reading

#: The kept area reaches this share of a barcode's length beyond its ends, across the bars: the
#: quiet zone a decoder needs (10 modules of a ~200-module card code is 5 %), with room to spare.
QUIET_ZONE_SHARE = 0.12
#: ...and this share of the bar height beyond the bars' ends, along them (not more: the card
#: prints the payload, a contract number, just below its bars).
BAR_END_SHARE = 0.04
#: The blur works on the frame shrunk so that its long side is this many pixels, then blurred
#: with a Gaussian of BLUR_SIGMA there, and scaled back: a few pixels of a 1280-pixel frame are
#: then spread over ~40, several times a printed letter's height on a card 20 cm away, and the
#: cost stays small on a Pi. Shrinking first also leaves nothing a deblurring filter could undo.
BLUR_WORK_SIZE = 96
BLUR_SIGMA = 1.5

Quad = tuple[tuple[float, float], ...]


def barcode_areas(readings: list[Reading]) -> list[np.ndarray]:
    """The areas to keep sharp: each decoded symbol's position, widened by its quiet zones.

    A reading without a position (a decoder that gives none) keeps nothing sharp: its text is
    reported anyway, and the picture errs on the side of hiding.
    """
    return [_widen(r.symbol.quad) for r in readings if r.symbol.quad and len(r.symbol.quad) >= 2]


def blur_outside(image: np.ndarray, keep: list[np.ndarray]) -> np.ndarray:
    """A copy of ``image`` blurred beyond reading except inside the polygons ``keep`` (frame pixels)."""
    h, w = image.shape[:2]
    scale = BLUR_WORK_SIZE / max(h, w)
    small = cv2.resize(image, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    small = cv2.GaussianBlur(small, (0, 0), BLUR_SIGMA)
    out = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    if keep:
        mask = np.zeros((h, w), np.uint8)
        cv2.fillPoly(mask, [np.round(p).astype(np.int32).reshape(-1, 1, 2) for p in keep], 255)
        out[mask > 0] = image[mask > 0]
    return out


def _widen(quad: Quad) -> np.ndarray:
    """The smallest rectangle around ``quad``, grown by the quiet zones along its long side
    (across the bars: a 1D code is longer than its bars are high) and a little along the bars."""
    (cx, cy), (w, h), angle = cv2.minAreaRect(np.asarray(quad, np.float32).reshape(-1, 1, 2))
    if w < h:
        w, h, angle = h, w, angle + 90
    # A decoder may report its scan line only (a quad of no height): keep a band as high as a
    # card code's bars (about a quarter of its length) then.
    if h < 0.1 * w:
        h = 0.25 * w
    size = (w * (1 + 2 * QUIET_ZONE_SHARE), h * (1 + 2 * BAR_END_SHARE))
    return cv2.boxPoints(((cx, cy), size, angle))
