"""Technician diagnostics: a camera frame with the located barcodes drawn on it, and a check of
the central (reachable? token accepted?).

``kiosk diag camera`` uses :func:`annotate` on a frame from the camera (or from the running
daemon, which owns the camera); ``kiosk diag api`` uses :func:`check_central`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import cv2
import numpy as np

from device.pipeline import Reading
from device.redact import describe_text, mask_contract
from device.vision.decoders import as_grey
from device.vision.locate import Locator

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


@dataclass(frozen=True)
class CentralCheck:
    """What ``kiosk diag api`` found; ``ok`` only when the central answered and took the token."""

    reachable: bool
    token_accepted: bool | None
    detail: str

    @property
    def ok(self) -> bool:
        return self.reachable and bool(self.token_accepted)


def check_central(forwarder, kiosk_id: str, site: str) -> CentralCheck:
    """Ask the central's health endpoint, then post an empty batch to see whether the token is accepted.

    An empty batch stores nothing; the central answers it like any batch, so a 200 proves the
    token and the path, a 401/403 proves the token is refused.
    """
    import requests

    session, timeout = forwarder.session, forwarder.timeout
    try:
        health = session.get(forwarder.base_url + "/v1/health", timeout=timeout, allow_redirects=False)
    except requests.RequestException as e:
        return CentralCheck(False, None, f"cannot reach {forwarder.base_url}: {type(e).__name__}: {e}")
    if health.status_code != 200:
        return CentralCheck(False, None, f"{forwarder.base_url}/v1/health answered HTTP {health.status_code}")
    token, problem = forwarder.read_token()
    if problem:
        return CentralCheck(True, False, f"central reachable, but no token: {problem}")
    body = {"kiosk": {"id": kiosk_id, "site": site}, "identifications": []}
    try:
        answer = session.post(
            forwarder.endpoint, data=json.dumps(body), timeout=timeout, allow_redirects=False,
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )  # fmt: skip
    except requests.RequestException as e:
        return CentralCheck(True, None, f"health ok, but posting failed: {type(e).__name__}: {e}")
    if answer.status_code in (401, 403):
        return CentralCheck(True, False, f"central reachable, token REFUSED (HTTP {answer.status_code}): fix api.token_file")
    if answer.status_code != 200:
        return CentralCheck(True, None, f"central reachable, but an empty batch got HTTP {answer.status_code}")
    return CentralCheck(True, True, f"central reachable at {forwarder.base_url}, token accepted")
