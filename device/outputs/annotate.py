"""The readings of a frame drawn on it: located regions, decoded symbols, what each one is.

Shared by the live view (:mod:`device.outputs.preview`) and the technician's snapshots
(:mod:`device.daemon.snapshot`), so both draw the same picture::

    cv2.imwrite("aim.jpg", annotate(frame.image, result.readings))
"""

from __future__ import annotations

import cv2
import numpy as np

from device.pipeline import Reading
from device.redact import describe_text, mask_contract
from device.vision.decoders import as_grey
from device.vision.locate import Locator, Region

REGION_BGR = (0, 200, 255)  # amber: "a barcode-like region was found here"
CARD_BGR = (0, 200, 0)  # green: a client card was read
OTHER_BGR = (0, 0, 255)  # red: read, but not a card


def annotate(image: np.ndarray, readings: list[Reading], unmask: bool = False, regions: list[Region] | None = None) -> np.ndarray:
    """A copy of ``image`` (BGR) with located regions and decoded symbols drawn, to aim and focus by.

    ``regions``: the located regions when the caller has found them already (else found here).

        cv2.imwrite("aim.jpg", annotate(frame.image, result.readings))
    """
    out = image.copy() if image.ndim == 3 else cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    for region in Locator().find(as_grey(image)) if regions is None else regions:
        pts = np.asarray(region.corners, np.int32).reshape(-1, 1, 2)
        cv2.polylines(out, [pts], True, REGION_BGR, 2)
    for reading in readings:
        colour = CARD_BGR if reading.card else OTHER_BGR
        label = (
            f"card {mask_contract(reading.card.contract, unmask)}" + ("" if reading.card.issue is None else f"/{reading.card.issue:02d}")
            if reading.card
            else f"{reading.symbol.symbology} {describe_text(reading.symbol.text, unmask)}: {reading.rejection.reason}"
        )
        if reading.symbol.quad:
            pts = np.asarray(reading.symbol.quad, np.int32).reshape(-1, 1, 2)
            cv2.polylines(out, [pts], True, colour, 3)
            x, y = pts[:, 0, 0].min(), pts[:, 0, 1].min()
        else:
            x, y = 10, 30
        cv2.putText(out, label, (int(x), max(int(y) - 8, 20)), cv2.FONT_HERSHEY_SIMPLEX, 0.8, colour, 2, cv2.LINE_AA)
    return out
