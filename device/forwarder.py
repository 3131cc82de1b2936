"""The forwarder: delivers the outbox's pending identifications to the central API, in order.

Delivery is at least once: a record leaves ``pending`` only when the central's answer names it
(``accepted`` or ``duplicate`` -> delivered, ``rejected`` -> dead with the reason). Anything else
keeps it pending and retries later: timeouts, connection errors (also an answer lost after the
central committed: the retry is answered ``duplicate``), 408, 429 and 5xx, and malformed answers
(not JSON, wrong shape, an HTML error page, a 200 without a result for some record). The central
counts each id once, so at least once here is "counted once" there.

- Retries back off exponentially with full jitter, capped, and honour ``Retry-After``. Attempts
  and the next attempt time are stored in the outbox, so a restart does not reset them.
- 401/403 pause delivery and raise an alert (:attr:`Forwarder.paused_by_auth`); records stay
  pending and are tried again every ``auth_retry_s``, or at once when the token file changes.
- A 400/422 for a batch is split in halves until the bad record is alone; a single record
  answered 400/422 is dead with the central's message. (413 also splits; a single record
  answered 413 stays pending.)
- Plain ``http://`` is refused except to loopback, unless ``allow_insecure_http``.

In the daemon it runs in its own thread; tests and ``kiosk run``'s drain call
:meth:`Forwarder.deliver_once` / :meth:`Forwarder.drain`::

    forwarder = Forwarder(outbox, "https://central.example.net", token_file="/etc/kiosk/token")
    stop = threading.Event()
    threading.Thread(target=forwarder.run, args=(stop,), name="forwarder").start()
    ...
    outbox.commit(card, symbology="Code128", decoder="zxing-cpp"); forwarder.wake()
"""

from __future__ import annotations

import ipaddress
import json
import logging
import random
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from email.utils import parsedate_to_datetime
from pathlib import Path
from urllib.parse import urlsplit

import requests

from device import __version__
from device.clock import Clock, SystemClock, utc_iso
from device.outbox import Identification, Outbox, OutboxError
from device.redact import describe_text, escape

log = logging.getLogger(__name__)

IDENTIFICATIONS_PATH = "/v1/identifications"

# Outcome kinds of one delivery step.
IDLE = "idle"  # nothing due
OK = "ok"  # a batch went through (some records may be dead); call again at once
FAILED = "failed"  # a retryable error: records stay pending until their next attempt
AUTH = "auth"  # the central refused the token (or there is none): delivery paused

#: Answers retried with backoff (besides every 5xx).
RETRY_STATUSES = frozenset({408, 429})
#: Answers that condemn a single-record batch (and split larger ones).
BAD_REQUEST_STATUSES = frozenset({400, 422})
TOO_LARGE = 413
AUTH_STATUSES = frozenset({401, 403})


class ForwarderConfigError(ValueError):
    """The forwarder cannot be set up as configured; ``str()`` names the option to fix."""


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


class _Retry(Exception):
    """A retryable failure of one request; ``retry_after_s`` from the answer, if any."""

    def __init__(self, message: str, retry_after_s: float | None = None):
        super().__init__(message)
        self.retry_after_s = retry_after_s


class _AuthRefused(Exception):
    pass


@dataclass(frozen=True)
class _Answer:
    status: int
    headers: requests.structures.CaseInsensitiveDict
    body: bytes


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1)."""
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_url(url: str, allow_insecure_http: bool = False) -> str:
    """The base URL without a trailing slash, or :class:`ForwarderConfigError` naming the option."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ForwarderConfigError(f'api.url: expected an https:// URL of the central, got "{escape(url)}"')
    if parts.scheme == "http" and not is_loopback(parts.hostname) and not allow_insecure_http:
        raise ForwarderConfigError(
            f"api.url: plain http:// to {parts.hostname} would send identifications and the token unencrypted; "
            "use https://, or set api.allow_insecure_http = true (never in production)"
        )
    return url.rstrip("/")


def wire_record(record: Identification) -> dict:
    """One identification as the central API receives it, with its card format (docs/openapi.yaml)."""
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


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta seconds or an HTTP date), or None."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - now).total_seconds())


class Forwarder:
    """Delivers pending identifications from ``outbox`` to the central at ``url``.

    The token is ``token``, or read from ``token_file`` at every attempt (a technician who fixes
    the file needs no restart). Waits: ``backoff_base_s * 2**(n-1)`` capped at ``backoff_cap_s``,
    full jitter, ``n`` the attempt number; at least ``Retry-After`` (itself capped at
    ``retry_after_cap_s``); ``auth_retry_s`` while the token is refused.
    """

    def __init__(
        self,
        outbox: Outbox,
        url: str,
        token: str = "",
        *,
        token_file: str = "",
        batch_size: int = 100,
        connect_timeout_s: float = 5.0,
        read_timeout_s: float = 15.0,
        ca_bundle: str = "",
        allow_insecure_http: bool = False,
        backoff_base_s: float = 1.0,
        backoff_cap_s: float = 300.0,
        retry_after_cap_s: float = 3600.0,
        auth_retry_s: float = 60.0,
        idle_poll_s: float = 2.0,
        purge_interval_s: float = 3600.0,
        max_response_bytes: int = 1_000_000,
        clock: Clock | None = None,
        rng: random.Random | None = None,
        session: requests.Session | None = None,
    ):
        if token and token_file:
            raise ForwarderConfigError("api.token_file: set either api.token or api.token_file, not both")
        if ca_bundle and not Path(ca_bundle).is_file():
            raise ForwarderConfigError(f'api.ca_bundle: no such file "{escape(ca_bundle)}"')
        if batch_size < 1:
            raise ForwarderConfigError(f"api.batch_size: expected at least 1, got {batch_size}")
        self.outbox = outbox
        self.base_url = check_url(url, allow_insecure_http)
        self.endpoint = self.base_url + IDENTIFICATIONS_PATH
        self._token = token.strip()
        self._token_file = token_file
        self.batch_size = batch_size
        self.timeout = (connect_timeout_s, read_timeout_s)
        # The read timeout bounds each wait for bytes; this bounds a server that trickles them.
        self._answer_budget_s = connect_timeout_s + 2 * read_timeout_s
        self.backoff_base_s = backoff_base_s
        self.backoff_cap_s = backoff_cap_s
        self.retry_after_cap_s = retry_after_cap_s
        self.auth_retry_s = auth_retry_s
        self.idle_poll_s = idle_poll_s
        self.purge_interval_s = purge_interval_s
        self.max_response_bytes = max_response_bytes
        self.clock = clock or SystemClock()
        self._rng = rng or random.Random()
        # The longest wait we ever store: a stored next attempt further ahead means the wall clock jumped back.
        self._max_wait_s = max(backoff_cap_s, retry_after_cap_s, auth_retry_s)
        self.session = session or requests.Session()
        self.session.verify = ca_bundle or True
        # Proxies, CA bundles and .netrc from the environment stay out: what the kiosk talks to
        # is in its configuration only.
        self.session.trust_env = False
        self.session.headers.update({"User-Agent": f"counter-kiosk/{__version__}", "Accept": "application/json"})

        self._lock = threading.Lock()
        self._wake = threading.Event()
        self.paused_by_auth = False
        self.last_error: str | None = None
        self.last_error_at: str | None = None
        self.last_success_at: str | None = None
        self.consecutive_failures = 0
        self.delivered_total = 0
        self._refused_token: str | None = None
        self._auth_retry_at = 0.0  # monotonic

    # --- status -----------------------------------------------------------------------------

    def status(self) -> dict:
        """The forwarder's state for ``kiosk status`` and alerts (JSON-ready)."""
        with self._lock:
            if self.paused_by_auth:
                state = "paused-auth"
            elif self.consecutive_failures:
                state = "retrying"
            else:
                state = "ok"
            return {
                "state": state,
                "url": self.base_url,
                "paused_by_auth": self.paused_by_auth,
                "consecutive_failures": self.consecutive_failures,
                "last_error": self.last_error,
                "last_error_at": self.last_error_at,
                "last_success_at": self.last_success_at,
                "delivered_total": self.delivered_total,
            }

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
                outcome = self.deliver_once()
            except Exception as e:  # a bug must not end delivery for good: note it, back off, go on
                log.exception("delivery step failed unexpectedly")
                outcome = Outcome(FAILED, error=f"internal error: {e}", wait_s=self._backoff(self.consecutive_failures + 1))
                self._note_failure(outcome.error)
            self._pause(stop, outcome.wait_s)

    def _pause(self, stop: threading.Event, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not stop.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self._wake.wait(min(remaining, 0.5)):
                return

    def drain(self, timeout_s: float, stop: threading.Event | None = None) -> bool:
        """Deliver until nothing is pending (True) or ``timeout_s`` passes / ``stop`` is set (False).

        Dead records do not count as pending: they need a technician, not a wait.
        """
        stop = stop or threading.Event()
        deadline = time.monotonic() + timeout_s
        while not stop.is_set():
            if self.outbox.seconds_until_due(max_wait_s=self._max_wait_s) is None:
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            outcome = self.deliver_once()
            if outcome.kind != OK:
                self._pause(stop, min(max(outcome.wait_s, 0.01), remaining))
        return False

    # --- one step ---------------------------------------------------------------------------

    def deliver_once(self) -> Outcome:
        """Send one batch of due records (split if the central finds a bad one); update the outbox."""
        self._wake.clear()
        token, token_problem = self.read_token()
        force = False
        if self.paused_by_auth:
            if token_problem is None and token != self._refused_token:
                force = True  # the token changed: try it now
            elif self.clock.monotonic() < self._auth_retry_at:
                return Outcome(AUTH, error=self.last_error, wait_s=min(5.0, self._auth_retry_at - self.clock.monotonic()))
        try:
            batch = self.outbox.due(self.batch_size, max_wait_s=self._max_wait_s, force=force)
        except OutboxError as e:
            self._note_failure(str(e))
            return Outcome(FAILED, error=str(e), wait_s=self._backoff(self.consecutive_failures))
        if not batch:
            try:
                until = self.outbox.seconds_until_due(max_wait_s=self._max_wait_s)
            except OutboxError:
                until = None
            return Outcome(IDLE, wait_s=self.idle_poll_s if until is None else min(max(until, 0.05), self.idle_poll_s))
        if token_problem is not None:
            self._pause_for_auth(token_problem, None)
            self._note_failure(token_problem)
            return Outcome(AUTH, error=token_problem, wait_s=min(5.0, self.auth_retry_s))
        # One request carries one kiosk: records committed under an earlier kiosk id or site go alone.
        head = (batch[0].kiosk_id, batch[0].site)
        batch = [r for r in _prefix(batch, lambda r: (r.kiosk_id, r.site) == head)]
        return self._deliver(batch, token)

    def _deliver(self, batch: list[Identification], token: str) -> Outcome:
        work = [batch]  # chunks still to send, in order
        sent = delivered = dead = kept = 0
        problems: list[tuple[str, float]] = []
        pending_error: tuple[list[Identification], str, float | None] | None = None
        while work:
            chunk = work.pop(0)
            sent += len(chunk)
            try:
                answer = self._post(chunk, token)
                if answer.status in AUTH_STATUSES:
                    raise _AuthRefused(
                        f"the central refused the token (HTTP {answer.status}): check api.token / api.token_file; "
                        "delivery is paused, identifications stay queued"
                    )
                if answer.status in BAD_REQUEST_STATUSES or answer.status == TOO_LARGE:
                    if len(chunk) > 1:
                        half = len(chunk) // 2
                        work[:0] = [chunk[:half], chunk[half:]]
                        continue
                    if answer.status == TOO_LARGE:
                        raise _Retry(f"the central answered HTTP 413 (too large) for a single identification{_error_text(answer)}")
                    reason = f"HTTP {answer.status}{_error_text(answer)}"
                    self.outbox.mark_dead(chunk[0].id, reason)
                    log.warning("central refused identification seq %d (%s): moved to dead", chunk[0].seq, describe_text(reason))
                    dead += 1
                    continue
                if not 200 <= answer.status < 300:
                    retry_after = parse_retry_after(answer.headers.get("Retry-After"), self.clock.now())
                    raise _Retry(_status_error(answer), retry_after)
                ok_ids, rejected, missing, problem = _read_results(answer.body, chunk)
            except _AuthRefused as e:
                self._pause_for_auth(str(e), token)
                self._store_failure(chunk + [r for c in work for r in c], str(e), self.auth_retry_s)
                return Outcome(AUTH, sent=sent, delivered=delivered, dead=dead, kept=kept + len(chunk) + sum(map(len, work)),
                               error=str(e), wait_s=min(5.0, self.auth_retry_s))  # fmt: skip
            except _Retry as e:
                pending_error = ([*chunk, *(r for c in work for r in c)], str(e), e.retry_after_s)
                break
            except OutboxError as e:
                pending_error = ([*chunk, *(r for c in work for r in c)], str(e), None)
                break
            try:
                if ok_ids:
                    delivered += self.outbox.mark_delivered(ok_ids)
                for record_id, reason in rejected:
                    if self.outbox.mark_dead(record_id, reason):
                        dead += 1
                        log.warning("central rejected identification %s (%s): moved to dead", record_id, describe_text(reason))
            except OutboxError as e:
                # Not marked: they stay pending and the retry is answered "duplicate".
                pending_error = ([*chunk, *(r for c in work for r in c)], str(e), None)
                break
            self._note_success(len(ok_ids))
            if missing:
                kept += len(missing)
                problems.append((problem, self._store_failure(missing, problem, None)))
        if pending_error is not None:
            records, error, retry_after = pending_error
            kept += len(records)
            wait = self._store_failure(records, error, retry_after)
            return Outcome(FAILED, sent=sent, delivered=delivered, dead=dead, kept=kept, error=error, wait_s=wait)
        if problems:
            error, wait = problems[-1]
            return Outcome(FAILED, sent=sent, delivered=delivered, dead=dead, kept=kept, error=error, wait_s=wait)
        return Outcome(OK, sent=sent, delivered=delivered, dead=dead)

    # --- HTTP -------------------------------------------------------------------------------

    def _post(self, chunk: list[Identification], token: str) -> _Answer:
        body = {"kiosk": {"id": chunk[0].kiosk_id, "site": chunk[0].site}, "identifications": [wire_record(r) for r in chunk]}
        data = json.dumps(body, separators=(",", ":")).encode("utf-8")
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        try:
            response = self.session.post(self.endpoint, data=data, headers=headers, timeout=self.timeout, allow_redirects=False, stream=True)
        except requests.exceptions.SSLError as e:
            raise _Retry(f"TLS to the central failed (certificate not trusted? check api.ca_bundle): {_short(e)}") from e
        except requests.exceptions.ConnectTimeout as e:
            raise _Retry(f"no connection to the central within {self.timeout[0]:g} s (connect timeout)") from e
        except requests.exceptions.ReadTimeout as e:
            raise _Retry(f"no answer from the central within {self.timeout[1]:g} s (read timeout)") from e
        except requests.exceptions.ConnectionError as e:
            raise _Retry(f"cannot reach the central, or it closed the connection without an answer: {_short(e)}") from e
        except requests.exceptions.RequestException as e:
            raise _Retry(f"request to the central failed: {_short(e)}") from e
        try:
            return _Answer(response.status_code, response.headers, self._read_body(response))
        finally:
            response.close()

    def _read_body(self, response: requests.Response) -> bytes:
        deadline = time.monotonic() + self._answer_budget_s
        parts, size = [], 0
        try:
            for part in response.iter_content(8192):
                parts.append(part)
                size += len(part)
                if size > self.max_response_bytes:
                    raise _Retry(f"the central's answer is larger than {self.max_response_bytes} bytes")
                if time.monotonic() > deadline:
                    raise _Retry(f"the central's answer took longer than {self._answer_budget_s:g} s to arrive")
        except requests.exceptions.Timeout as e:
            raise _Retry(f"the central's answer stopped arriving (read timeout {self.timeout[1]:g} s)") from e
        except requests.exceptions.RequestException as e:
            raise _Retry(f"the central's answer was cut off: {_short(e)}") from e
        return b"".join(parts)

    def read_token(self) -> tuple[str, str | None]:
        """The token to send, or a problem to report (no token, unreadable file)."""
        if self._token_file:
            try:
                token = Path(self._token_file).read_text(encoding="utf-8").strip()
            except (OSError, UnicodeDecodeError) as e:
                return "", f"cannot read api.token_file {self._token_file}: {getattr(e, 'strerror', None) or e}; delivery is paused"
            if not token:
                return "", f"api.token_file {self._token_file} is empty; delivery is paused"
        else:
            token = self._token
            if not token:
                return "", "no token for the central (set api.token_file or api.token); delivery is paused"
        if not token.isprintable() or any(c.isspace() for c in token):
            return "", "the token for the central contains spaces or control characters; delivery is paused"
        return token, None

    # --- bookkeeping ------------------------------------------------------------------------

    def _backoff(self, attempt: int) -> float:
        """Full jitter: uniform in [0, min(cap, base * 2**(attempt-1))]."""
        ceiling = min(self.backoff_cap_s, self.backoff_base_s * 2 ** max(0, min(attempt, 64) - 1))
        return self._rng.uniform(0, ceiling)

    def _store_failure(self, records: list[Identification], error: str, retry_after_s: float | None) -> float:
        """Count a failed attempt for ``records`` and store when to try them again. Returns the wait."""
        self._note_failure(error)
        attempt = max(self.consecutive_failures, max((r.attempts for r in records), default=0) + 1)
        wait = self._backoff(attempt)
        if retry_after_s is not None:
            wait = max(wait, min(retry_after_s, self.retry_after_cap_s))
        if self.paused_by_auth:
            wait = self.auth_retry_s
        try:
            self.outbox.mark_failed([r.id for r in records], error, self.clock.now() + timedelta(seconds=wait))
        except OutboxError as e:
            log.warning("could not record the failed attempt in the outbox: %s", e)
        return wait

    def _note_failure(self, error: str) -> None:
        with self._lock:
            first = self.consecutive_failures == 0 or error != self.last_error
            self.consecutive_failures += 1
            self.last_error = error
            self.last_error_at = utc_iso(self.clock.now())
        if first:
            log.warning("delivery to the central failed (identifications stay queued): %s", error)

    def _note_success(self, delivered: int) -> None:
        with self._lock:
            if self.consecutive_failures or self.paused_by_auth:
                log.info("delivery to the central works again after %d failed attempts", self.consecutive_failures)
            self.consecutive_failures = 0
            self.paused_by_auth = False
            self._refused_token = None
            self.last_success_at = utc_iso(self.clock.now())
            self.delivered_total += delivered

    def _pause_for_auth(self, error: str, refused_token: str | None) -> None:
        with self._lock:
            if not self.paused_by_auth:
                log.error("ALERT: %s", error)
            self.paused_by_auth = True
            self._refused_token = refused_token
            self._auth_retry_at = self.clock.monotonic() + self.auth_retry_s


def _prefix(records: list[Identification], keep) -> list[Identification]:
    out = []
    for r in records:
        if not keep(r):
            break
        out.append(r)
    return out


def _short(e: Exception, limit: int = 200) -> str:
    return escape(str(e), limit)


def _json(body: bytes):
    try:
        return json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None


def _error_text(answer: _Answer) -> str:
    """The central's error message from a JSON body (``error``/``detail``/``message``), for reasons and logs."""
    data = _json(answer.body)
    if isinstance(data, dict):
        for key in ("error", "detail", "message", "reason"):
            if isinstance(data.get(key), str):
                return ": " + escape(data[key], 200)
    return " (no JSON error message)" if answer.body else ""


def _status_error(answer: _Answer) -> str:
    if 300 <= answer.status < 400:
        return f"the central answered HTTP {answer.status} (a redirect, to {escape(answer.headers.get('Location', '?'), 100)}): check api.url"
    if answer.status == 404:
        return "the central answered HTTP 404: check api.url (the kiosk posts to <api.url>/v1/identifications)"
    return f"the central answered HTTP {answer.status}{_error_text(answer)}"


def _read_results(body: bytes, chunk: list[Identification]):
    """Sort the central's 2xx answer: (delivered ids, [(rejected id, reason)], missing records, problem).

    Raises :class:`_Retry` when the answer as a whole cannot be trusted; a record without a
    clear result of its own stays pending (``missing``, with ``problem`` saying so).
    """
    sent = {r.id.lower(): r for r in chunk}
    data = _json(body)
    if data is None:
        kind = "an HTML page" if body.lstrip()[:1] == b"<" else "not JSON"
        raise _Retry(f"the central answered 2xx but its answer is {kind}; identifications stay queued")
    results = data.get("results") if isinstance(data, dict) else None
    if not isinstance(results, list):
        raise _Retry("the central answered 2xx without a 'results' list; identifications stay queued")
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
        raise _Retry(f"the central's answer is inconsistent ({'; '.join(sorted(set(oddities)))}); identifications stay queued")
    missing = [r for r in chunk if r.id.lower() not in verdicts]
    problem = None
    if missing:
        problem = f"the central's answer has no result for {len(missing)} of {len(chunk)} identifications; they stay queued"
    return ok_ids, rejected, missing, problem
