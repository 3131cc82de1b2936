"""The reference target: a small printed code fixed in the view, read and measured in its place.

A kiosk whose camera slowly goes out of focus, whose window gathers dust or whose light fails
reads fewer cards, and nobody knows why until the clients complain. A target that never moves
(docs/INSTALL.md: printed, fixed inside the housing at the edge of the view, seen through the
same window as the cards) shows the same figures every time while the camera is well; the camera
check (:mod:`device.daemon.camera_check`) compares them with the ones it first had::

    reader = TargetReader("KT-1", (0.8, 0.02, 0.18, 0.1))
    figures = reader.measure(frame.image)
    figures.read, figures.module_px, figures.edge_px, figures.levels.contrast

Only the target's place is cropped and decoded (a few ms, every few minutes, in the check's own
thread), with the scanner's own readers, so it reads what the scan loop would read there.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from device.camera_spec import region_pixels
from device.vision.decoders import as_grey, check_image
from device.vision.figures import Levels, levels, thumbnail, view_edge_px
from device.vision.scanner import Scanner


@dataclass(frozen=True)
class TargetFigures:
    """What one look at the target's place showed.

    ``read``: its code read with the configured text. ``levels``: the grey levels of its place
    (bars and paper). ``edge_px``: the edge width of the sharpest edges there (None when the place
    is flat). ``module_px``: the located code's pixels per module (None unless read).
    ``layout``: the place's :func:`~device.vision.figures.thumbnail`, to tell whether the target is
    still where it was.
    """

    read: bool
    levels: Levels
    edge_px: float | None
    module_px: float | None
    layout: np.ndarray = field(compare=False, repr=False)


class TargetReader:
    """Reads the reference target ``text`` at ``region`` ((x, y, w, h) fractions of the frame).

    >>> reader = TargetReader("KT-1", (0.8, 0.0, 0.2, 0.2))
    >>> figures = reader.measure(np.full((480, 640), 200, np.uint8))   # no target there
    >>> figures.read, figures.edge_px, figures.module_px
    (False, None, None)
    """

    def __init__(self, text: str, region: tuple[float, float, float, float]):
        self.text = text
        self.region = region
        # Only Code 128, no card formats: the target is no card, and the general Code 128 fit
        # reads it as far down as the scan loop would read a card.
        self.scanner = Scanner(symbologies=("Code128",), card_formats=())

    def crop(self, image: np.ndarray) -> np.ndarray:
        """The target's place in ``image``, grey."""
        check_image(image)
        h, w = image.shape[:2]
        x0, y0, x1, y1 = region_pixels(self.region, w, h)
        return as_grey(image[y0:y1, x0:x1])

    def measure(self, image: np.ndarray) -> TargetFigures:
        """Read and measure the target in a frame's ``image`` (ValueError for an odd image)."""
        grey = np.ascontiguousarray(self.crop(image))
        found = [symbol for symbol in self.scanner.decode(grey) if symbol.text == self.text]
        module_px = next((symbol.figures.module_px for symbol in found if symbol.figures is not None), None)
        return TargetFigures(bool(found), levels(grey), view_edge_px(grey), module_px, thumbnail(grey))
