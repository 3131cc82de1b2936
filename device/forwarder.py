"""The forwarder: delivers the outbox's pending identifications to the central API, in order.

This is delivery policy only; talking to the central (session, TLS, token, answer limits, what
a failure means) is :class:`device.central_client.CentralClient`'s.

Delivery is at least once: a record leaves ``pending`` only when the central's answer names it
(``accepted`` or ``duplicate`` -> delivered, ``rejected`` -> dead with the reason). Anything else
keeps it pending and retries later: timeouts, connection errors (also an answer lost after the
central committed: the retry is answered ``duplicate``), 408, 429 and 5xx, and malformed answers
(not JSON, wrong shape, an HTML error page, a 200 without a result for some record). The central
counts each id once, so at least once here is "counted once" there.

- Retries back off exponentially with full jitter, capped (:class:`device.backoff.Backoff`), and
  honour ``Retry-After`` up to ``api.retry_after_cap_s``. Attempts and the next attempt time are
  stored in the outbox, so a restart does not reset them.
- 401/403 pause delivery and raise an alert (:attr:`Forwarder.paused_by_auth`); records stay
  pending and are tried again every ``auth_retry_s``, or at once when the token file changes.
  No usable token (the token file missing, empty, unreadable) pauses it too, with its own text
  (:attr:`Forwarder.auth_fault`): nothing was sent, so the central refused nothing.
- Stopping is prompt: the request in flight is abandoned as soon as ``stop`` is set (and a
  drain's at its timeout); its records stay pending with no failed attempt counted.
- A 400/422 for a batch is split in halves until the bad record is alone; a single record
  answered 400/422 is dead with the central's message. (413 also splits; a single record
  answered 413 stays pending.)
- What reached the central is published, after the outbox has recorded it: a
  :class:`~device.events.Delivered` per batch the central holds, a :class:`~device.events.Dead`
  per record it refused for good (``publish``; the kiosk connects it to its outputs), so an
  output learns of deliveries without reading the outbox; and a
  :class:`~device.events.DeliveryFailed` per failed attempt, with its cause (:func:`failure_cause`).

In the daemon it runs in its own thread; tests and ``kiosk run``'s drain call
:meth:`Forwarder.deliver_once` / :meth:`Forwarder.drain`::

    forwarder = Forwarder.from_config(cfg, outbox)
    stop = threading.Event()
    threading.Thread(target=forwarder.run, args=(stop,), name="forwarder").start()
    ...
    outbox.commit(card, symbology="Code128", decoder="zxing-cpp"); forwarder.wake()
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from device.backoff import Backoff
from device.central_client import (
    CENTRAL_FAULT_NEXT_STEP,
    IDENTIFICATIONS_PATH,
    CentralAborted,
    CentralBusy,
    CentralClient,
    CentralError,
    CentralMalformed,
    CentralNoDescriptors,
    CentralProblem,
    CentralRefusedToken,
    CentralTooSlow,
    CentralUnreachable,
)
from device.clock import Clock, utc_iso
from device.config import DEFAULTS, Config
from device.events import Dead, Delivered, DeliveryFailed, Event
from device.health.delivery import DeliveryFailure, DeliveryHealth, DeliveryState
from device.outbox import Identification, Outbox, OutboxError
from device.redact import describe_text, escape
from device.request_deadline import Cancel
from device.threads import survived

log = logging.getLogger(__name__)

# Outcome kinds of one delivery step.
IDLE = "idle"  # nothing due
OK = "ok"  # a batch went through (some records may be dead); call again at once
FAILED = "failed"  # a retryable error: records stay pending until their next attempt
AUTH = "auth"  # the central refused the token (or there is none): delivery paused
STOPPED = "stopped"  # stop was set (or a drain timed out) during a request: abandoned, nothing counted

#: Answers that condemn a single-record batch (and split larger ones).
BAD_REQUEST_STATUSES = frozenset({400, 422})
TOO_LARGE = 413

#: How often an idle forwarder looks at the outbox without a :meth:`Forwarder.wake`.
IDLE_POLL_S = 2.0
#: How often delivered identifications past their retention are deleted.
PURGE_INTERVAL_S = 3600.0

PAUSED = "delivery is paused, identifications stay queued"


@dataclass(frozen=True)
class Outcome:
    """What one :meth:`Forwarder.deliver_once` did, and how long to wait before the next."""

    kind: str
    sent: int = 0  # records in the requests made
    delivered: int = 0
    dead: int = 0
    kept: int = 0  # records left pending by an error
    wait_s: float = 0.0
    error: str | None = None


class _Untrusted(Exception):
    """A 2xx answer whose results cannot be trusted as a whole: every record stays pending."""


def failure_cause(problem: CentralProblem) -> DeliveryFailure:
    """The cause of a failed call to the central, as the metrics group it.

    >>> failure_cause(CentralTooSlow("no answer within 15 s")), failure_cause(CentralBusy("HTTP 503", status=503))
    (<DeliveryFailure.TIMEOUT: 'timeout'>, <DeliveryFailure.BUSY: 'busy'>)
    """
    if isinstance(problem, CentralTooSlow):  # before its base class, CentralUnreachable
        return DeliveryFailure.TIMEOUT
    if isinstance(problem, CentralUnreachable):
        return DeliveryFailure.UNREACHABLE
    if isinstance(problem, CentralRefusedToken):
        return DeliveryFailure.TOKEN_REFUSED if problem.status is not None else DeliveryFailure.NO_TOKEN
    if isinstance(problem, CentralBusy):
        return DeliveryFailure.BUSY
    if isinstance(problem, CentralMalformed):
        return DeliveryFailure.MALFORMED
    return DeliveryFailure.HTTP_ERROR


def wire_record(record: Identification) -> dict[str, object]:
    """One identification as the central API receives it, with its card format (docs/openapi.yaml).

    A refusal (a replaced card) is the same record with ``kind`` and the contract's ``current_issue``.
    """
    if record.kind != "identification":
        return {**_identification_fields(record), "kind": record.kind, "current_issue": record.current_issue}
    return _identification_fields(record)


def _identification_fields(record: Identification) -> dict[str, object]:
    return {
        "id": record.id,
        "seq": record.seq,
        "format": record.format,
        "contract": record.contract,
        "card_issue": record.card_issue,
        "scanned_at": record.scanned_at,
        "clock_synced": record.clock_synced,
        "symbology": record.symbology,
    }


class Forwarder:
    """Delivers pending identifications from ``outbox`` to the central through ``client``.

    Waits: ``backoff`` for attempt ``n`` (full jitter below ``base * 2**(n-1)``, capped); at
    least ``Retry-After`` (itself capped at ``retry_after_cap_s``); ``auth_retry_s`` while the
    token is refused. ``clock`` (default: the outbox's) dates the next attempts stored in the
    outbox. ``delivery_alert_s``: how long delivery may fail before :meth:`delivery_fault` says so.
    ``publish`` receives :class:`~device.events.Delivered` and :class:`~device.events.Dead` once
    the outbox has recorded them (from the forwarder's thread; a :class:`~device.daemon.Kiosk`
    connects it to its outputs). Build it with :meth:`from_config`; the constructor is for tests and tools.
    """

    def __init__(
        self,
        outbox: Outbox,
        client: CentralClient,
        *,
        batch_size: int,
        backoff: Backoff,
        retry_after_cap_s: float,
        auth_retry_s: float,
        delivery_alert_s: float = DEFAULTS.api.delivery_alert_s,
        idle_poll_s: float = IDLE_POLL_S,
        purge_interval_s: float = PURGE_INTERVAL_S,
        clock: Clock | None = None,
        publish: Callable[[Event], object] = lambda event: None,
    ):
        self.outbox = outbox
        #: Where Delivered and Dead go, after the commit.
        self.publish = publish
        self.client = client
        self.batch_size = batch_size
        self.backoff = backoff
        self.retry_after_cap_s = retry_after_cap_s
        self.auth_retry_s = auth_retry_s
        self.delivery_alert_s = delivery_alert_s
        self.idle_poll_s = idle_poll_s
        self.purge_interval_s = purge_interval_s
        self.clock = clock or outbox.clock
        # The longest wait we ever store: a stored next attempt further ahead means the wall clock jumped back.
        self._max_wait_s = max(backoff.cap_s, retry_after_cap_s, auth_retry_s)

        self._lock = threading.Lock()
        self._wake = threading.Event()
        self.paused_by_auth = False
        #: Why delivery is paused, for the fault: the central refuses the token, or there is no usable token.
        self.auth_fault: str | None = None
        self.last_error: str | None = None
        #: What a technician does about :attr:`last_error` (the client's next step for its cause; "" when it has none).
        self.last_next_step = ""
        self.last_error_at: str | None = None
        # The first failure since the last success (monotonic, and the wall clock for people): the delivery fault's age.
        self._failing_since: float | None = None
        self.failing_since_at: str | None = None
        self.last_success_at: str | None = None
        self.consecutive_failures = 0
        self.delivered_total = 0
        self._refused_token: str | None = None
        self._auth_retry_at = 0.0  # monotonic

    @classmethod
    def from_config(cls, cfg: Config, outbox: Outbox, *, clock: Clock | None = None, rng: random.Random | None = None) -> Forwarder:
        """The forwarder as the ``[api]`` section configures it; problems are config errors naming the key.

        ``rng`` draws the backoff's jitter (tests pass one that draws exact waits).
        """
        clock = clock or outbox.clock
        api = cfg.api
        return cls(
            outbox,
            CentralClient.from_config(cfg, clock=clock),
            batch_size=api.batch_size,
            backoff=Backoff(api.backoff_base_s, api.backoff_cap_s, rng=rng),
            retry_after_cap_s=api.retry_after_cap_s,
            auth_retry_s=api.auth_retry_s,
            delivery_alert_s=api.delivery_alert_s,
            clock=clock,
        )

    # --- status -----------------------------------------------------------------------------

    def status(self) -> DeliveryHealth:
        """The forwarder's health for ``kiosk status`` and the delivery faults."""
        with self._lock:
            if self.paused_by_auth:
                state = DeliveryState.PAUSED_AUTH if self._refused_token is not None else DeliveryState.PAUSED_NO_TOKEN
            elif self.consecutive_failures:
                state = DeliveryState.RETRYING
            else:
                state = DeliveryState.OK
            failing_for_s = None if self._failing_since is None else self.clock.monotonic() - self._failing_since
            return DeliveryHealth(
                state=state, url=self.client.base_url, paused_by_auth=self.paused_by_auth, auth_fault=self.auth_fault,
                consecutive_failures=self.consecutive_failures, last_error=self.last_error, next_step=self.last_next_step,
                last_error_at=self.last_error_at, failing_since=self.failing_since_at, failing_for_s=failing_for_s,
                last_success_at=self.last_success_at, delivered_total=self.delivered_total,
            )  # fmt: skip

    def delivery_fault(self, pending: int) -> str | None:
        """The delivery fault's text while delivery has failed for ``delivery_alert_s`` with
        ``pending`` identifications waiting, else None: the cause in one line, since when, and the
        next step. The token's trouble is the delivery-auth fault's, not this one's::

            cannot reach the central: connection refused by central.example.net:443 (failing since
            2024-05-02T09:15:00Z): is the central up? check api.url and the firewall
        """
        now = self.status()
        if now.paused_by_auth or not pending or now.failing_for_s is None or now.failing_for_s < self.delivery_alert_s:
            return None
        step = f": {now.next_step}" if now.next_step else ""
        return f"{now.last_error} (failing since {now.failing_since}){step}"

    def wake(self) -> None:
        """Something was committed (or stop was set): look at the outbox now, not at the next poll."""
        self._wake.set()

    # --- the loop ---------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Deliver until ``stop`` is set (the thread's target). Never raises; errors go to status.

        Set ``stop`` then call :meth:`wake` for a prompt exit (otherwise within half a second,
        or after the request in flight, which the timeouts bound).
        """
        next_purge = 0.0
        while not stop.is_set():
            if time.monotonic() >= next_purge:
                next_purge = time.monotonic() + self.purge_interval_s
                try:
                    purged = self.outbox.purge_delivered()
                    if purged:
                        log.info("purged %d delivered identifications older than %g days", purged, self.outbox.retention_days)
                except OutboxError as e:
                    log.warning("could not purge delivered identifications: %s", e)
            try:
                outcome = self.deliver_once(cancel=stop)
            except Exception as e:  # a bug must not end delivery for good: a fault (traceback once), back off, go on
                survived(e, "a delivery step")
                error = f"internal error: {e}"
                outcome = Outcome(FAILED, error=error, wait_s=self.backoff.delay(self.consecutive_failures + 1))
                self._note_failure(error, DeliveryFailure.INTERNAL)
            self._pause(stop, outcome.wait_s)

    def _pause(self, stop: threading.Event, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not stop.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self._wake.wait(min(remaining, 0.5)):
                return

    def drain(self, timeout_s: float, stop: threading.Event | None = None) -> bool:
        """Deliver until nothing is pending (True) or ``timeout_s`` passes / ``stop`` is set (False).

        Dead records do not count as pending: they need a technician, not a wait. A request in
        flight when ``timeout_s`` passes or ``stop`` is set is abandoned.
        """
        stop = stop or threading.Event()
        deadline = time.monotonic() + timeout_s
        cancel = _StopOrDeadline(stop, deadline)
        while not stop.is_set():
            if self.outbox.seconds_until_due(max_wait_s=self._max_wait_s) is None:
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            outcome = self.deliver_once(cancel=cancel)
            if outcome.kind != OK:
                self._pause(stop, min(max(outcome.wait_s, 0.01), remaining))
        return False

    # --- one step ---------------------------------------------------------------------------

    def deliver_once(self, cancel: Cancel | None = None) -> Outcome:
        """Send one batch of due records (split if the central finds a bad one); update the outbox.

        ``cancel`` (e.g. the thread's stop event): once set, the request in flight is abandoned
        (:data:`STOPPED`).
        """
        self._wake.clear()
        try:
            token, token_problem = self.client.read_token()
        except CentralNoDescriptors as e:  # the kiosk's own descriptors ran out: not the token's fault, no auth pause
            self._note_failure(e.cause, DeliveryFailure.NO_DESCRIPTORS, e.next_step)
            return Outcome(FAILED, error=e.cause, wait_s=self.backoff.delay(self.consecutive_failures))
        if token_problem is not None:
            token_problem = f"{token_problem}; {PAUSED}"
        force = False
        if self.paused_by_auth:
            if token_problem is None and token != self._refused_token:
                force = True  # the token changed: try it now
            elif self.clock.monotonic() < self._auth_retry_at:
                return Outcome(AUTH, error=self.last_error, wait_s=min(5.0, self._auth_retry_at - self.clock.monotonic()))
        try:
            batch = self.outbox.due(self.batch_size, max_wait_s=self._max_wait_s, force=force)
        except OutboxError as e:
            self._note_failure(str(e), DeliveryFailure.OUTBOX)
            return Outcome(FAILED, error=str(e), wait_s=self.backoff.delay(self.consecutive_failures))
        if not batch:
            try:
                until = self.outbox.seconds_until_due(max_wait_s=self._max_wait_s)
            except OutboxError:
                until = None
            return Outcome(IDLE, wait_s=self.idle_poll_s if until is None else min(max(until, 0.05), self.idle_poll_s))
        if token_problem is not None:
            self._pause_for_auth(token_problem, None)
            self._note_failure(token_problem, DeliveryFailure.NO_TOKEN)
            return Outcome(AUTH, error=token_problem, wait_s=min(5.0, self.auth_retry_s))
        # One request carries one kiosk: records committed under an earlier kiosk id or site go alone.
        head = (batch[0].kiosk_id, batch[0].site)
        batch = [r for r in _prefix(batch, lambda r: (r.kiosk_id, r.site) == head)]
        return self._deliver(batch, token, cancel)

    def _deliver(self, batch: list[Identification], token: str, cancel: Cancel | None) -> Outcome:
        work = [batch]  # chunks still to send, in order
        sent = delivered = dead = kept = 0
        problems: list[tuple[str, float]] = []
        # (records left, error, Retry-After, next step, cause) of the failure that ends this step
        pending_error: tuple[list[Identification], str, float | None, str, DeliveryFailure] | None = None
        while work:
            chunk = work.pop(0)
            sent += len(chunk)
            try:
                answer = self.client.post_json(IDENTIFICATIONS_PATH, self._body(chunk), token=token, cancel=cancel)
                ok_ids, rejected, missing = _read_results(answer.data, chunk)
            except CentralAborted:
                # Not the central's failure: no attempt counted, no wait stored; the records stay pending.
                left = len(_left(chunk, work))
                return Outcome(STOPPED, sent=sent, delivered=delivered, dead=dead, kept=kept + left)
            except CentralRefusedToken as e:
                error = f"{e}; {PAUSED}"
                self._pause_for_auth(error, token)
                self._store_failure(_left(chunk, work), error, self.auth_retry_s, cause=failure_cause(e))
                return Outcome(AUTH, sent=sent, delivered=delivered, dead=dead, kept=kept + len(chunk) + sum(map(len, work)),
                               error=error, wait_s=min(5.0, self.auth_retry_s))  # fmt: skip
            except CentralError as e:
                if e.status in BAD_REQUEST_STATUSES or e.status == TOO_LARGE:
                    if len(chunk) > 1:
                        half = len(chunk) // 2
                        work[:0] = [chunk[:half], chunk[half:]]
                        continue
                    if e.status in BAD_REQUEST_STATUSES:
                        reason = f"HTTP {e.status}{e.detail}"
                        try:
                            marked = self.outbox.mark_dead(chunk[0].id, reason)
                        except OutboxError as oe:
                            pending_error = (_left(chunk, work), str(oe), None, "", DeliveryFailure.OUTBOX)
                            break
                        log.warning("central refused identification seq %d (%s): moved to dead", chunk[0].seq, describe_text(reason))
                        dead += 1
                        if marked:
                            self.publish(Dead(chunk[0], reason))
                        continue
                    error = f"the central answered HTTP 413 (too large) for a single identification{e.detail}"
                    pending_error = (_left(chunk, work), error, e.retry_after_s, CENTRAL_FAULT_NEXT_STEP, DeliveryFailure.HTTP_ERROR)
                    break
                pending_error = (_left(chunk, work), str(e), e.retry_after_s, e.next_step, failure_cause(e))
                break
            except CentralProblem as e:  # unreachable, busy, malformed: all worth another try
                pending_error = (_left(chunk, work), str(e), e.retry_after_s, e.next_step, failure_cause(e))
                break
            except _Untrusted as e:
                pending_error = (_left(chunk, work), str(e), None, CentralMalformed.NEXT_STEP, DeliveryFailure.MALFORMED)
                break
            try:
                if ok_ids:
                    delivered += self.outbox.mark_delivered(ok_ids)
                    # Committed: now every output may say so (in the order sent).
                    held = set(ok_ids)
                    self.publish(Delivered(tuple(r for r in chunk if r.id in held)))
                for record_id, reason in rejected:
                    if self.outbox.mark_dead(record_id, reason):
                        dead += 1
                        log.warning("central rejected identification %s (%s): moved to dead", record_id, describe_text(reason))
                        self.publish(Dead(next(r for r in chunk if r.id == record_id), reason))
            except OutboxError as e:
                # Not marked: they stay pending and the retry is answered "duplicate".
                pending_error = (_left(chunk, work), str(e), None, "", DeliveryFailure.OUTBOX)
                break
            self._note_success(len(ok_ids))
            if missing:
                problem = f"the central's answer has no result for {len(missing)} of {len(chunk)} identifications; they stay queued"
                kept += len(missing)
                wait = self._store_failure(missing, problem, None, CentralMalformed.NEXT_STEP, cause=DeliveryFailure.MALFORMED)
                problems.append((problem, wait))
        if pending_error is not None:
            records, error, retry_after, next_step, cause = pending_error
            kept += len(records)
            wait = self._store_failure(records, error, retry_after, next_step, cause=cause)
            return Outcome(FAILED, sent=sent, delivered=delivered, dead=dead, kept=kept, error=error, wait_s=wait)
        if problems:
            error, wait = problems[-1]
            return Outcome(FAILED, sent=sent, delivered=delivered, dead=dead, kept=kept, error=error, wait_s=wait)
        return Outcome(OK, sent=sent, delivered=delivered, dead=dead)

    # --- HTTP -------------------------------------------------------------------------------

    def _body(self, chunk: list[Identification]) -> dict[str, object]:
        """One request: the records of one kiosk id and site (see :meth:`deliver_once`)."""
        return {"kiosk": {"id": chunk[0].kiosk_id, "site": chunk[0].site}, "identifications": [wire_record(r) for r in chunk]}

    # --- bookkeeping ------------------------------------------------------------------------

    def _store_failure(
        self, records: list[Identification], error: str, retry_after_s: float | None, next_step: str = "", *, cause: DeliveryFailure
    ) -> float:
        """Count a failed attempt for ``records`` and store when to try them again. Returns the wait."""
        self._note_failure(error, cause, next_step)
        attempt = max(self.consecutive_failures, max((r.attempts for r in records), default=0) + 1)
        wait = self.backoff.delay(attempt)
        if retry_after_s is not None:
            wait = max(wait, min(retry_after_s, self.retry_after_cap_s))
        if self.paused_by_auth:
            wait = self.auth_retry_s
        try:
            self.outbox.mark_failed([r.id for r in records], error, self.clock.now() + timedelta(seconds=wait))
        except OutboxError as e:
            log.warning("could not record the failed attempt in the outbox: %s", e)
        return wait

    def _note_failure(self, error: str, cause: DeliveryFailure, next_step: str = "") -> None:
        with self._lock:
            first = self.consecutive_failures == 0 or error != self.last_error
            if self._failing_since is None:
                self._failing_since = self.clock.monotonic()
                self.failing_since_at = utc_iso(self.clock.now())
            self.consecutive_failures += 1
            self.last_error = error
            self.last_next_step = next_step
            self.last_error_at = utc_iso(self.clock.now())
        if first:
            log.warning("delivery to the central failed (identifications stay queued): %s", error)
        self.publish(DeliveryFailed(cause, error))

    def _note_success(self, delivered: int) -> None:
        with self._lock:
            if self.consecutive_failures or self.paused_by_auth:
                log.info("delivery to the central works again after %d failed attempts", self.consecutive_failures)
            self.consecutive_failures = 0
            self._failing_since = self.failing_since_at = None
            self.paused_by_auth = False
            self.auth_fault = None
            self._refused_token = None
            self.last_success_at = utc_iso(self.clock.now())
            self.delivered_total += delivered

    def _pause_for_auth(self, error: str, refused_token: str | None) -> None:
        """Pause delivery: ``refused_token`` is the token the central refused, None when there is no usable one."""
        with self._lock:
            if not self.paused_by_auth:
                log.error("ALERT: %s", error)
            self.paused_by_auth = True
            self.auth_fault = error
            self._refused_token = refused_token
            self._auth_retry_at = self.clock.monotonic() + self.auth_retry_s


class _StopOrDeadline:
    """A request's ``cancel`` for a drain: set once ``stop`` is, or once the drain's deadline (monotonic) passes."""

    def __init__(self, stop: threading.Event, deadline: float):
        self.stop = stop
        self.deadline = deadline

    def is_set(self) -> bool:
        return self.stop.is_set() or time.monotonic() >= self.deadline


def _left(chunk: list[Identification], work: list[list[Identification]]) -> list[Identification]:
    """The records not yet answered: the chunk in hand and the chunks still to send."""
    return [*chunk, *(r for c in work for r in c)]


def _prefix(records: list[Identification], keep: Callable[[Identification], bool]) -> list[Identification]:
    out = []
    for r in records:
        if not keep(r):
            break
        out.append(r)
    return out


def _read_results(data: object, chunk: list[Identification]) -> tuple[list[str], list[tuple[str, str]], list[Identification]]:
    """Sort the central's 2xx answer (parsed JSON): (delivered ids, [(rejected id, reason)], missing records).

    Raises :class:`_Untrusted` when the answer as a whole cannot be trusted; a record without a
    clear result of its own stays pending (``missing``).
    """
    sent = {r.id.lower(): r for r in chunk}
    results = data.get("results") if isinstance(data, dict) else None
    if not isinstance(results, list):
        raise _Untrusted("the central answered 2xx without a 'results' list; identifications stay queued")
    verdicts: dict[str, tuple[str, str]] = {}
    conflicting: set[str] = set()
    oddities: list[str] = []
    for item in results:
        rid = item.get("id") if isinstance(item, dict) else None
        status = item.get("status") if isinstance(item, dict) else None
        if not isinstance(rid, str) or rid.lower() not in sent:
            oddities.append("a result for an identification not sent")
            continue
        if status not in ("accepted", "duplicate", "rejected"):
            oddities.append("a result with an unknown status")
            continue
        reason = item.get("reason")
        reason = escape(reason, 300) if isinstance(reason, str) and reason else "rejected by the central (no reason given)"
        key = rid.lower()
        if key in verdicts and verdicts[key][0] != status:
            conflicting.add(key)
        verdicts[key] = (status, reason)
    for key in conflicting:
        del verdicts[key]
        oddities.append("contradicting results for one identification")
    ok_ids = [sent[k].id for k, (s, _) in verdicts.items() if s in ("accepted", "duplicate")]
    rejected = [(sent[k].id, reason) for k, (s, reason) in verdicts.items() if s == "rejected"]
    if oddities:
        # Results for ids we did not send (a proxy's cached answer? another request's?) make
        # the whole answer untrustworthy: keep every record; the retry costs only a duplicate.
        raise _Untrusted(f"the central's answer is inconsistent ({'; '.join(sorted(set(oddities)))}); identifications stay queued")
    missing = [r for r in chunk if r.id.lower() not in verdicts]
    return ok_ids, rejected, missing
