"""Technician diagnostics: a check of the central (reachable? token accepted?).

``kiosk diag api`` uses :func:`check_central`; ``kiosk diag camera`` draws with
:func:`device.daemon.snapshot.annotate`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass


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
