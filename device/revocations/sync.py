"""Keeping the copy current: fetch the central's list, verify it, apply it, say what went wrong.

One sync (:meth:`RevocationSync.sync_once`) asks ``GET /v1/cards/replaced?since=<our version>``
through the central client (its TLS, token, deadline; the answer capped at
``revocations.max_bytes``), then refuses, keeping the last good copy in force:

- an answer without a valid signature of the key in ``revocations.public_key_file`` (tampered,
  cut short, signed by another key);
- a version lower than the copy's (a replayed older list), or a delta that does not start at or
  before the copy's version (it would leave a gap);
- a document that is not exactly the format (:func:`device.revocations.document.parse`:
  malformed contracts, missing fields);
- anything the client refuses: a too large answer, one trickled past its deadline.

Each outcome is noted in the copy's file (:meth:`~device.revocations.store.ReplacedCards.note_failure`),
so the daemon and ``kiosk revocations status`` see the same. The fault ``revocations``
(:meth:`RevocationSync.fault`) is on while the last attempt failed, or the copy is older than
``revocations.max_age_s`` (the kiosk goes on checking against it), or there is no copy yet.

In the daemon :meth:`RevocationSync.run` is a supervised thread: a sync at start (the daemon
scans once it is done, or after :data:`START_WAIT_S`, so a card replaced before the kiosk started
is refused from the first frame), then every
``revocations.interval_s`` with jitter (a fleet restarted together does not sync in step), and at
once when ``kiosk revocations sync`` leaves a request in the runtime directory's request folder
(:data:`device.runtime_dir.REQUESTS_DIR`, which the technicians' group may write): the
supervisor's housekeeping screens that folder (:mod:`device.daemon.requests`) and calls
:meth:`RevocationSync.request`, at most once a minute; this thread never looks at it. The scan
loop never waits for it: it reads the copy on its own connection. A verified answer larger than
a delta is parsed and applied in a child process (:mod:`device.revocations.apply`), so the scan
loop keeps the interpreter while a complete list of a million contracts is written.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from dataclasses import dataclass

from device.central_client import REPLACED_CARDS_PATH, CentralAborted, CentralClient, CentralProblem
from device.revocations import document
from device.revocations.apply import (
    ABORTED,
    APPLIED,
    CHILD_DEADLINE_S,
    FAILED,
    IN_PROCESS_MAX_BYTES,
    REFUSED,
    apply_in_child,
    apply_verified,
    lower_priority,
)  # fmt: skip
from device.revocations.document import KEY_ID_HEADER, SIGNATURE_HEADER
from device.revocations.store import ReplacedCards, RevocationsError
from device.runtime_dir import SYNC_PREFIX

log = logging.getLogger(__name__)

#: Share of ``interval_s`` a wait may be shorter or longer, at random.
JITTER = 0.2
#: ``kiosk revocations sync`` asks the daemon with a file named so in the runtime directory's
#: request folder (:data:`device.runtime_dir.REQUESTS_DIR`): ``revocations-<32 hex>.request``.
REQUEST_PREFIX = SYNC_PREFIX
#: How long the daemon waits at start for the first sync before it scans (against the copy on
#: disk, or none): a kiosk whose central is down starts scanning after this at the latest.
START_WAIT_S = 15.0
#: After a failed sync, the next try comes after this (or the interval, if shorter).
RETRY_S = 60.0


@dataclass(frozen=True)
class SyncResult:
    """What one sync did: ``kind`` (applied, unchanged, refused, failed, aborted), the version in
    force after it, how many contracts the list named, and why it failed."""

    kind: str
    version: int | None
    changed: int = 0
    error: str | None = None
    complete: bool = False


class RevocationSync:
    """Syncs ``copy`` from the central through ``client``, trusting ``public_key`` only."""

    def __init__(
        self,
        copy: ReplacedCards,
        client: CentralClient,
        public_key,
        *,
        interval_s: float,
        max_age_s: float,
        max_bytes: int,
        deadline_s: float,
        rng: random.Random | None = None,
    ):
        self.copy = copy
        self.client = client
        self.public_key = public_key
        self.key_id = document.key_id(public_key)
        self.interval_s = interval_s
        self.max_age_s = max_age_s
        self.max_bytes = max_bytes
        self.deadline_s = deadline_s
        self.rng = rng or random.Random()
        self._wake = threading.Event()
        #: Set once the thread's first sync is done, whatever its outcome (the daemon waits for it at start).
        self.first_attempt = threading.Event()
        self.syncs = 0
        #: A verified answer larger than this is parsed and applied in a child process (None: never).
        self.in_process_max_bytes: int | None = IN_PROCESS_MAX_BYTES
        self.child_deadline_s = CHILD_DEADLINE_S
        #: The child's command line before its arguments (None: ``python -m device.revocations.apply``).
        self.child_command: list[str] | None = None

    @classmethod
    def from_config(cls, cfg, copy: ReplacedCards | None = None, *, client: CentralClient | None = None) -> RevocationSync:
        """As ``[revocations]`` configures it; a key file that is not an Ed25519 key is a config error."""
        from device.config import ConfigError

        r = cfg.revocations
        try:
            key = document.load_public_key(r.public_key_file)
        except OSError as e:
            raise ConfigError("revocations.public_key_file", f"cannot read {r.public_key_file}: {e.strerror or e}", cfg.source) from None
        except ValueError as e:
            raise ConfigError("revocations.public_key_file", str(e), cfg.source) from None
        return cls(
            copy or ReplacedCards.from_config(cfg),
            client or CentralClient.from_config(cfg),
            key,
            interval_s=r.interval_s,
            max_age_s=r.max_age_s,
            max_bytes=r.max_bytes,
            deadline_s=r.deadline_s,
        )

    # --- one sync -------------------------------------------------------------------------------

    def sync_once(self, cancel=None) -> SyncResult:
        """Fetch, verify and apply the list once; never raises for the central's or the list's faults."""
        try:
            version = self.copy.version
        except RevocationsError as e:
            return self._failed(FAILED, None, str(e))
        since = version if version is not None else 0
        try:
            answer = self.client.get_signed(
                f"{REPLACED_CARDS_PATH}?since={since}", max_bytes=self.max_bytes, deadline_s=self.deadline_s, cancel=cancel
            )
        except CentralAborted:
            return SyncResult(ABORTED, version)
        except CentralProblem as e:
            return self._failed(FAILED, version, f"cannot fetch the replaced-card list: {e}")
        return self.accept(answer, version, since, cancel)

    def accept(self, answer, version: int | None, since: int, cancel=None) -> SyncResult:
        """Verify the central's ``answer`` and apply it over the copy at ``version`` (asked ``since``)."""
        problem = document.verify(self.public_key, answer.body, answer.headers.get(KEY_ID_HEADER), answer.headers.get(SIGNATURE_HEADER))
        if problem is not None:
            return self._failed(REFUSED, version, f"replaced-card list refused: {problem}")
        if self.in_process_max_bytes is not None and len(answer.body) > self.in_process_max_bytes:
            done = apply_in_child(
                self.copy.path,
                answer.body,
                key_id=self.key_id,
                version=version,
                since=since,
                deadline_s=self.child_deadline_s,
                cancel=cancel,
                command=self.child_command,
            )
        else:
            done = apply_verified(self.copy, answer.body, key_id=self.key_id, version=version, since=since)
        result = SyncResult(**done)
        if result.kind == ABORTED:
            return result
        if result.error:
            return self._failed(result.kind, version, result.error)
        if result.kind == APPLIED:
            self.syncs += 1
            kind = "complete list" if result.complete else "delta"
            log.info("replaced-card list now at version %d (%s, %d contracts)", result.version, kind, result.changed)
        return result

    def _failed(self, kind: str, version: int | None, error: str) -> SyncResult:
        log.warning("%s (version %s stays in force)", error, version if version is not None else "none")
        try:
            self.copy.note_failure(error)
        except RevocationsError as e:
            log.warning("%s", e)
        return SyncResult(kind, version, error=error)

    # --- the fault ------------------------------------------------------------------------------

    def fault(self, info: dict | None = None) -> str | None:
        """The ``revocations`` fault's one line, or None when the copy is good and current."""
        return fault_of(info if info is not None else self.copy.info(), self.max_age_s)

    # --- the thread -----------------------------------------------------------------------------

    def request(self) -> None:
        """Sync now (the thread wakes at once)."""
        self._wake.set()

    def run(self, stop) -> None:
        """Sync at start, then every ``interval_s`` (+-20 % jitter), sooner after a failure and at once on request."""
        lower_priority()
        while not stop.is_set():
            self._wake.clear()
            try:
                result = self.sync_once(cancel=stop)
            finally:
                self.first_attempt.set()
            deadline = time.monotonic() + self.next_wait_s(result.kind)
            while not stop.is_set() and time.monotonic() < deadline:
                if self._wake.wait(max(deadline - time.monotonic(), 0.0)):
                    break

    def next_wait_s(self, kind: str) -> float:
        """Seconds until the next sync after one that ended in ``kind``: ``interval_s`` +-20 % at
        random (kiosks restarted together drift apart), at most about :data:`RETRY_S` after a failure."""
        wait = self.interval_s * self.rng.uniform(1 - JITTER, 1 + JITTER)
        if kind in (FAILED, REFUSED):
            wait = min(wait, RETRY_S * self.rng.uniform(1 - JITTER, 1 + JITTER))
        return wait


def fault_of(info: dict, max_age_s: float) -> str | None:
    """The fault for a copy's :meth:`~device.revocations.store.ReplacedCards.info`, or None.

    >>> fault_of({"version": None, "attempt_error": None, "age_s": None}, 60)
    'no replaced-card list yet: replaced cards are not refused until the first sync (check api.url and the network)'
    """
    error = info.get("attempt_error")
    if error:
        held = f"version {info['version']} stays in force" if info.get("version") is not None else "no list in force"
        return f"{error} ({held})"
    if info.get("version") is None:
        return "no replaced-card list yet: replaced cards are not refused until the first sync (check api.url and the network)"
    age = info.get("age_s")
    if age is not None and age > max_age_s:
        return (
            f"the replaced-card list (version {info['version']}) is {age / 3600:.1f} h old, "
            "older than revocations.max_age_s: check the central and the network"
        )
    return None
