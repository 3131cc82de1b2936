"""Technician diagnostics: a check of the central (reachable? token accepted?).

``kiosk diag api`` uses :func:`check_central`; ``kiosk diag camera`` draws with
:func:`device.daemon.snapshot.annotate`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from device.central_client import CentralClient


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
