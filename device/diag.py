"""Technician diagnostics: a camera frame with the located barcodes drawn on it, and a check of
the central (reachable? token accepted?).

``kiosk diag camera`` uses :func:`annotate` on a frame from the camera (or from the running
daemon, which owns the camera); ``kiosk diag api`` uses :func:`check_central`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import cv2
import numpy as np

from device.pipeline import Reading
from device.redact import describe_text, mask_contract
from device.vision.decoders import as_grey
from device.vision.locate import Locator

if TYPE_CHECKING:
    from device.central_client import CentralClient

REGION_BGR = (0, 200, 255)  # amber: "a barcode-like region was found here"
CARD_BGR = (0, 200, 0)  # green: a client card was read
OTHER_BGR = (0, 0, 255)  # red: read, but not a card


def annotate(image: np.ndarray, readings: list[Reading], unmask: bool = False) -> np.ndarray:
    """A copy of ``image`` (BGR) with located regions and decoded symbols drawn, to aim and focus by."""
    out = image.copy() if image.ndim == 3 else cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    for region in Locator().find(as_grey(image)):
        pts = np.asarray(region.corners, np.int32).reshape(-1, 1, 2)
        cv2.polylines(out, [pts], True, REGION_BGR, 2)
    for reading in readings:
        colour = CARD_BGR if reading.card else OTHER_BGR
        label = (
            f"card {mask_contract(reading.card.contract, unmask)}/{reading.card.issue:02d}"
            if reading.card
            else f"{reading.symbol.format} {describe_text(reading.symbol.text, unmask)}: {reading.rejection.reason}"
        )
        if reading.symbol.quad:
            pts = np.asarray(reading.symbol.quad, np.int32).reshape(-1, 1, 2)
            cv2.polylines(out, [pts], True, colour, 3)
            x, y = pts[:, 0, 0].min(), pts[:, 0, 1].min()
        else:
            x, y = 10, 30
        cv2.putText(out, label, (int(x), max(int(y) - 8, 20)), cv2.FONT_HERSHEY_SIMPLEX, 0.8, colour, 2, cv2.LINE_AA)
    return out


@dataclass(frozen=True)
class CentralCheck:
    """What ``kiosk diag api`` found; ``ok`` only when the central answered and took the token."""

    reachable: bool
    token_accepted: bool | None
    detail: str

    @property
    def ok(self) -> bool:
        return self.reachable and bool(self.token_accepted)


def check_central(client: CentralClient, kiosk_id: str, site: str) -> CentralCheck:
    """Ask the central's health endpoint, then post an empty batch to see whether the token is accepted.

    ``client`` is the one the forwarder delivers with (same TLS, token, timeouts), so what this
    finds is what delivery meets. An empty batch stores nothing; the central answers it like any
    batch, so a 200 proves the token and the path, a 401/403 proves the token is refused::

        print(check_central(CentralClient.from_config(cfg), cfg.kiosk.id, cfg.kiosk.site).detail)
    """
    from device.central_client import HEALTH_PATH, IDENTIFICATIONS_PATH, CentralProblem, CentralRefusedToken

    try:
        client.get_json(HEALTH_PATH, auth=False)
    except CentralProblem as e:
        return CentralCheck(False, None, str(e))
    try:
        client.post_json(IDENTIFICATIONS_PATH, {"kiosk": {"id": kiosk_id, "site": site}, "identifications": []})
    except CentralRefusedToken as e:
        if e.status is None:
            return CentralCheck(True, False, f"central reachable, but no token: {e}")
        return CentralCheck(True, False, f"central reachable, token REFUSED: {e}")
    except CentralProblem as e:
        return CentralCheck(True, None, f"health ok, but an empty batch failed: {e}")
    return CentralCheck(True, True, f"central reachable at {client.base_url}, token accepted")
