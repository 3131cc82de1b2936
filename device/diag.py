"""Technician diagnostics: a check of the central (reachable? token accepted? everything arrived?),
and why a daemon that is not running stopped (:func:`why_stopped`, for ``kiosk status``).

``kiosk diag api`` uses :func:`check_central` and :func:`check_seqs`; ``kiosk diag camera``
draws with :func:`device.outputs.annotate.annotate`.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from device.central_client import CentralClient


@dataclass(frozen=True)
class CentralCheck:
    """What ``kiosk diag api`` found; ``ok`` only when the central answered and took the token.

    ``next_step``: what a technician does about the problem (the client's, for its cause), "" when ok.
    """

    reachable: bool
    token_accepted: bool | None
    detail: str
    next_step: str = ""

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
        return CentralCheck(False, None, str(e), e.next_step)
    try:
        client.post_json(IDENTIFICATIONS_PATH, {"kiosk": {"id": kiosk_id, "site": site}, "identifications": []})
    except CentralRefusedToken as e:
        if e.status is None:
            return CentralCheck(True, False, f"central reachable, but no token: {e}", e.next_step)
        return CentralCheck(True, False, f"central reachable, token REFUSED: {e}", e.next_step)
    except CentralProblem as e:
        return CentralCheck(True, None, f"health ok, but an empty batch failed: {e}", e.next_step)
    return CentralCheck(True, True, f"central reachable at {client.base_url}, token accepted")


@dataclass(frozen=True)
class SeqCheck:
    """What the central holds of this kiosk's seqs against what the outbox marked delivered.

    ``ok`` is None when the central does not say (an older or production central without the
    accounting endpoint: it answers 404), False when a seq the outbox marked delivered is not held
    there, the central holds a seq under two ids, or the check could not be made (no token, an
    error): `kiosk diag api` then exits 1 saying why, never a note. ``answered``: the central said
    which seqs it holds (False: no endpoint, an error, an answer of another shape), so ``missing``
    is known (``kiosk queue resend --missing`` acts only on an answer).
    """

    ok: bool | None
    detail: str
    missing: tuple[int, ...] = ()
    answered: bool = True


def check_seqs(client: CentralClient, kiosk_id: str, delivered: Iterable[int]) -> SeqCheck:
    """Ask the central which of this kiosk's seqs it holds and look for the ``delivered`` ones.

    ``delivered``: the seqs the outbox marks delivered (what retention has not purged yet).
    """
    from urllib.parse import quote

    from device.central_client import KIOSK_SEQS_PATH, CentralProblem

    try:
        held = client.get_json(KIOSK_SEQS_PATH.format(kiosk=quote(kiosk_id, safe=""))).data
        highest, through = int(held["highest"]), int(held["contiguous_through"])
        gaps = [(int(g["first"]), int(g["last"])) for g in held["gaps"]]
        reused = [int(s) for s in held["reused"]]
    except CentralProblem as e:
        if getattr(e, "status", None) == 404:
            return SeqCheck(None, f"the central does not say which seqs it holds ({e})", answered=False)
        return SeqCheck(False, f"cannot check which seqs the central holds: {e}", answered=False)
    except (KeyError, TypeError, ValueError):
        return SeqCheck(None, "the central's seq accounting is not of the documented shape", answered=False)
    # Only seqs in a listed gap or above the highest are known to be missing there.
    missing = tuple(s for s in sorted(delivered) if s > through and (s > highest or any(a <= s <= b for a, b in gaps)))
    if missing:
        return SeqCheck(
            False, f"the central lacks {len(missing)} identification(s) the outbox marks delivered: seq {seq_ranges(missing)}", missing
        )
    if reused:
        return SeqCheck(False, f"the central refused seq {seq_ranges(reused)} of this kiosk as a conflict: it holds another id there")
    tail = f", then {held.get('missing', '?')} missing up to {highest} (still queued here?)" if highest > through else ""
    return SeqCheck(True, f"the central holds seq 1-{through} of {kiosk_id} without gaps{tail}")


def seq_ranges(seqs: Iterable[int]) -> str:
    """Seqs written as ranges.

    >>> seq_ranges([10, 1, 2, 3, 7, 9])
    '1-3, 7, 9-10'
    """
    out = []
    # In a run of consecutive seqs, seq minus its position is the same.
    for _, run in itertools.groupby(enumerate(sorted(set(seqs))), lambda pair: pair[1] - pair[0]):
        values = [s for _, s in run]
        out.append(f"{values[0]}-{values[-1]}" if len(values) > 1 else str(values[0]))
    return ", ".join(out)


#: The systemd unit install.sh installs, and the user it runs as when systemd does not say.
UNIT = "kiosk"
DAEMON_USER = "kiosk"


@dataclass(frozen=True)
class ServiceState:
    """The kiosk unit as systemd has it (``systemctl show``), for a daemon that is not running."""

    active: str
    sub: str
    result: str
    exit_status: str
    user: str
    since: str

    def line(self) -> str:
        """One line for ``kiosk status``, e.g. ``kiosk.service failed/failed (exit-code, status 1) since ...``."""
        why = f" ({self.result}, status {self.exit_status})" if self.result not in ("", "success") else ""
        since = f" since {self.since}" if self.since else ""
        return f"{UNIT}.service {self.active}/{self.sub}{why}{since}: journalctl -u {UNIT} -n 20 says why"


def service_state(timeout: float = 5.0) -> ServiceState | None:
    """The unit's state from ``systemctl show``, or None where there is no systemd or no such unit."""
    import shutil
    import subprocess

    if shutil.which("systemctl") is None:
        return None
    props = "LoadState,ActiveState,SubState,Result,ExecMainStatus,User,StateChangeTimestamp"
    try:
        out = subprocess.run(["systemctl", "show", "-p", props, f"{UNIT}.service"], capture_output=True, text=True, timeout=timeout).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    found = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    if found.get("LoadState") != "loaded":
        return None
    return ServiceState(
        active=found.get("ActiveState", ""), sub=found.get("SubState", ""), result=found.get("Result", ""),
        exit_status=found.get("ExecMainStatus", ""), user=found.get("User") or DAEMON_USER, since=found.get("StateChangeTimestamp", ""),
    )  # fmt: skip


def why_stopped(outbox_path: str) -> list[str]:
    """What a technician's account can tell of why the daemon is not running: systemd's view of
    the unit, and whether the daemon's user may write its outbox (the most common cause)."""
    from pathlib import Path

    from device.outbox.access import cannot_write

    state = service_state()
    lines = [state.line()] if state else []
    blocked = cannot_write(Path(outbox_path), state.user if state else DAEMON_USER)
    if blocked:
        lines.append(blocked)
    return lines
