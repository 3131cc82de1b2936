"""The central API's semantics, once, for every transport: routing, who may call what, checks, answers.

Both servers hand each request to an :class:`Api` in two steps, so that a request refused by its
path, method or token is answered before its body is read:

1. :meth:`Api.route` with the request's head (method, path, query, headers): a :class:`Response`
   to send at once (404, 405, 401, 403), or a :class:`Route` to go on with;
2. the transport reads the body (its own limits: at most ``contract.MAX_BODY_BYTES``), then
   :meth:`Api.handle` with the route and the body gives the :class:`Response`.

Both steps may call the store, which blocks: an asynchronous transport runs them in a thread pool.
The reference server (``central.server``) and the production ASGI app (``central.asgi``) are the
two transports; the reference server's socket faults (reset, drop after commit, malformed answers)
stay there. Example, without any transport::

    api = Api(store, shared_tokens=["secret"])
    head = RequestHead("GET", "/v1/health", "", {})
    api.handle(api.route(head), b"").status          # 200

Who may call what (:class:`Caller`): a shared token (``--token``: the demo and the tests; may post
in any kiosk's name), a kiosk's own token (issued per kiosk, stored hashed: only in its own name),
an admin token (``--admin-token-file``: the listings of every client's contracts, the fleet, the
conflicts, re-issues). A missing or unknown token is 401 (RFC 9110 15.5.2: no valid credentials);
a known token without the right is 403 (15.5.4: the credentials are insufficient).
"""

from __future__ import annotations

import hmac
import json
import logging
import math
import random
import re
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, unquote

from central import contract
from central.connections import DEFAULT_BODY_TIMEOUT_S, BurstLog
from central.contract import REJECTED, BadRequest, Item, TooLarge
from central.credentials import token_hash
from central.rate import KioskRate
from central.storage import Outcome, Store, StoreBusy

log = logging.getLogger("central")

#: Reason given for identifications refused through ``--reject-contract``.
REFUSED_REASON = "contract-refused: the central does not accept identifications for this contract"
#: The start of a store's reason for a record that contradicts one held (same id or same kiosk and seq).
CONFLICT_PREFIX = "conflict:"
#: At most this many conflicts are listed by ``GET /v1/conflicts``.
MAX_CONFLICTS_LISTED = 1000
#: What the kiosk sends as its User-Agent: ``counter-kiosk/<version>``.
_KIOSK_AGENT = re.compile(r"counter-kiosk/([0-9A-Za-z.+_-]{1,64})(?:\s|$)")

# Every endpoint, by path template and method: (name, who may call it).
PUBLIC, KIOSK, ADMIN = "public", "kiosk", "admin"
#: A kiosk's accounting: the kiosk itself (its own only), a shared token, or operations (admin).
KIOSK_OR_ADMIN = "kiosk-or-admin"
CONFLICTS_PATH = contract.API_PREFIX + "/conflicts"
FLEET_PATH = contract.API_PREFIX + "/kiosks"
_ROUTES: dict[tuple[str, str], tuple[str, str]] = {
    (contract.HEALTH_PATH, "GET"): ("health", PUBLIC),
    (contract.IDENTIFICATIONS_PATH, "POST"): ("post_batch", KIOSK),
    (contract.IDENTIFICATIONS_PATH, "GET"): ("list_identifications", ADMIN),
    (contract.REFUSALS_PATH, "GET"): ("list_refusals", ADMIN),
    (CONFLICTS_PATH, "GET"): ("list_conflicts", ADMIN),
    (FLEET_PATH, "GET"): ("fleet", ADMIN),
    (contract.KIOSK_SEQS_PATH, "GET"): ("seqs", KIOSK_OR_ADMIN),
    (contract.REPLACED_CARDS_PATH, "GET"): ("replaced", KIOSK),
    (contract.CARD_PATH, "PUT"): ("reissue", ADMIN),
}


@dataclass(frozen=True)
class RequestHead:
    """What arrived before the body: ``path`` still percent-encoded, header names lower case."""

    method: str
    path: str
    query: str
    headers: Mapping[str, str]


@dataclass
class Response:
    """An answer to send: status, body, content type and extra headers.

    ``close``: hang up after it (the body may be unread). ``results``: a batch's per-record
    results as sent (the reference server's after-commit faults need them)."""

    status: int
    body: bytes
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    close: bool = False
    results: list[dict] | None = None


@dataclass(frozen=True)
class Caller:
    """Who a bearer token says is calling: ``shared``, ``admin``, or ``kiosk`` with its id."""

    role: str
    kiosk_id: str | None = None


@dataclass(frozen=True)
class Route:
    """A request that passed routing and auth: the endpoint, its path value, the caller."""

    head: RequestHead
    endpoint: str
    caller: Caller | None
    #: The kiosk id of ``/v1/kiosks/{kiosk}/seqs`` or the contract of ``/v1/cards/{contract}``.
    path_value: str | None = None
    #: Whether the endpoint reads a body (the others' bodies are discarded unread).
    reads_body: bool = False


def error(status: int, code: str, message: str, headers: Mapping[str, str] | None = None, *, close: bool = False) -> Response:
    """The body every non-200 answer has: ``{"error": code, "message": text}`` (never the client's data)."""
    return Response(status, json.dumps({"error": code, "message": message}).encode(), headers=dict(headers or {}), close=close)


def ok(payload: dict) -> Response:
    return Response(200, json.dumps(payload).encode())


def kiosk_version(user_agent: str | None) -> str | None:
    """The version a kiosk reports in its User-Agent, else None.

    >>> kiosk_version("counter-kiosk/0.1.0"), kiosk_version("curl/8.0"), kiosk_version(None)
    ('0.1.0', None, None)
    """
    match = _KIOSK_AGENT.match(user_agent or "")
    return match.group(1) if match else None


class Api:
    """The central API over one :class:`~central.storage.Store`; safe to share between threads.

    ``shared_tokens``/``admin_tokens``: the bearer tokens of the command line and files (compared
    in constant time, all of them every time); kiosks' own tokens are looked up by hash in the
    store. ``rate``: the per-kiosk request limit (None: unlimited). ``retry_after_s``: sent with
    500, and with 503 (database saturated) plus a random 0 to ``retry_after_spread_s``.
    ``reject_contracts``: refused by business rule (a test fault).
    """

    def __init__(
        self,
        store: Store,
        *,
        shared_tokens: Sequence[str] = (),
        admin_tokens: Sequence[str] = (),
        formats: Mapping[str, contract.CardFormat] = contract.FORMATS,
        signing_key: Any = None,
        rate: KioskRate | None = None,
        retry_after_s: int = 1,
        retry_after_spread_s: int = 0,
        reject_contracts: frozenset[str] = frozenset(),
        body_timeout_s: float = DEFAULT_BODY_TIMEOUT_S,
    ):
        self.store = store
        self._shared = [t.encode() for t in shared_tokens]
        self._admin = [t.encode() for t in admin_tokens]
        self.formats = dict(formats)
        self.signing_key = signing_key
        self.rate = rate
        self.retry_after_s = retry_after_s
        self.retry_after_spread_s = retry_after_spread_s
        #: How long the production transport waits for a whole request body (the reference server
        #: has its own watchdog, central.connections.ReadDeadlines, with the same option).
        self.body_timeout_s = body_timeout_s
        self._spread = random.Random()
        #: One warning per burst of 503s, with their count, not one line per request of a storm.
        self._busy_log = BurstLog(log, "answered 503 busy: the database is saturated (pool or lock)")
        self.reject_contracts = frozenset(reject_contracts)
        self._conflicts_lock = threading.Lock()
        #: Conflicting records refused by this process since it started (each one is logged too).
        self.conflicts_seen = 0

    # --- step 1: routing and auth ----------------------------------------------------------------

    def route(self, head: RequestHead) -> Route | Response:
        """Route and authenticate a request by its head; a Response when it ends here."""
        path, value = _template_of(head.path)
        allowed = sorted(method for (p, method) in _ROUTES if p == path)
        if not allowed:
            return error(404, "not-found", "no such endpoint; see docs/CENTRAL_API.md")
        if head.method not in allowed:
            return error(405, "method-not-allowed", f"use {' or '.join(allowed)}", {"Allow": ", ".join(allowed)})
        endpoint, needs = _ROUTES[(path, head.method)]
        if needs == PUBLIC:
            return Route(head, endpoint, None, value)
        try:
            caller = self.authenticate(head.headers.get("authorization"))
        except StoreBusy as e:  # a kiosk's token is looked up in the database
            return self._busy(e, endpoint)
        if caller is None:
            realm = "central-admin" if needs == ADMIN else "central"
            return error(401, "unauthorized", "missing or unknown bearer token", {"WWW-Authenticate": f'Bearer realm="{realm}"'})
        if needs == ADMIN and caller.role != "admin":
            return error(403, "forbidden", "this needs an admin token (--admin-token-file); a kiosk's token may not")
        if needs == KIOSK and caller.role == "admin":
            return error(403, "forbidden", "an admin token is not a kiosk's: use the kiosk's own token")
        if endpoint == "seqs" and caller.role == "kiosk" and value != caller.kiosk_id:
            return error(403, "forbidden", "a kiosk's token reads only its own kiosk's seqs")
        return Route(head, endpoint, caller, value, reads_body=endpoint in ("post_batch", "reissue"))

    def authenticate(self, header: str | None) -> Caller | None:
        """The caller a ``Bearer`` header names, or None (missing, malformed, unknown, revoked)."""
        scheme, _, token = (header or "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return None
        given = token.encode("utf-8", "replace")
        # Compare against every token, always: the time taken says nothing about which one is near.
        admin = [hmac.compare_digest(given, t) for t in self._admin]
        shared = [hmac.compare_digest(given, t) for t in self._shared]
        if any(admin):
            return Caller("admin")
        if any(shared):
            return Caller("shared")
        kiosk_id = self.store.kiosk_of_token(token_hash(token))
        return Caller("kiosk", kiosk_id) if kiosk_id is not None else None

    # --- step 2: the endpoint --------------------------------------------------------------------

    def handle(self, route: Route | Response, body: bytes = b"") -> Response:
        """The answer to a routed request with its body; StoreBusy becomes 503 with Retry-After."""
        if isinstance(route, Response):
            return route
        try:
            return getattr(self, "_" + route.endpoint)(route, body)
        except StoreBusy as e:
            return self._busy(e, route.endpoint)

    def _busy(self, e: StoreBusy, endpoint: str) -> Response:
        """503 with a Retry-After drawn from ``retry_after_s`` to ``retry_after_s + retry_after_spread_s``:
        the kiosks turned away in one moment of a storm come back spread out, not together again
        (a kiosk waits at least Retry-After; its own backoff is short after few failures)."""
        wait_s = self.retry_after_s + self._spread.randint(0, self.retry_after_spread_s)
        self._busy_log.note_flushed_later()
        log.debug("database busy (%s): %s answered 503, Retry-After %d s", e, endpoint, wait_s)
        return error(503, "busy", "the central's database is saturated; retry later", {"Retry-After": str(wait_s)})

    def internal_error(self) -> Response:
        return error(500, "internal-error", "the central failed; try again later", {"Retry-After": str(self.retry_after_s)}, close=True)

    def _limited(self, kiosk_id: str) -> Response | None:
        """A 429 if ``kiosk_id`` is over its request rate, else None.

        Applied to requests with a kiosk's own token: a shared token (demo, tests) names any kiosk
        it likes, so a limit per name would bound nothing there."""
        if self.rate is None:
            return None
        wait_s = self.rate.take(kiosk_id)
        if wait_s <= 0:
            return None
        return error(
            429, "too-many-requests", "this kiosk sends too many requests; retry later", {"Retry-After": str(max(1, math.ceil(wait_s)))}
        )

    def _health(self, route: Route, body: bytes) -> Response:
        return ok({"status": "ok"})

    def _list_identifications(self, route: Route, body: bytes) -> Response:
        return ok({"identifications": self.store.identifications()})

    def _list_refusals(self, route: Route, body: bytes) -> Response:
        return ok({"refusals": self.store.identifications(contract.REFUSAL)})

    def _list_conflicts(self, route: Route, body: bytes) -> Response:
        return ok({"conflicts": self.store.conflicts(MAX_CONFLICTS_LISTED)})

    def _fleet(self, route: Route, body: bytes) -> Response:
        return ok({"kiosks": self.store.fleet()})

    def _seqs(self, route: Route, body: bytes) -> Response:
        assert route.path_value is not None
        if route.caller is not None and route.caller.kiosk_id is not None and (limited := self._limited(route.caller.kiosk_id)):
            return limited
        return ok(self.store.seqs_held(route.path_value, contract.MAX_GAPS_LISTED))

    def _replaced(self, route: Route, body: bytes) -> Response:
        """The replaced-card list since ``?since=N`` (complete for 0, absent, or a version newer than ours), signed."""
        if route.caller is not None and route.caller.kiosk_id is not None and (limited := self._limited(route.caller.kiosk_id)):
            return limited
        since_text = parse_qs(route.head.query).get("since", ["0"])[-1]
        if not since_text.isascii() or not since_text.isdigit() or len(since_text) > 18:
            return error(400, "bad-request", "since must be a list version: a whole number, 0 or more")
        if self.signing_key is None:
            return error(501, "not-configured", "this central has no signing key (--signing-key): it serves no replaced-card list")
        from device.revocations import document

        version, complete, rows = self.store.replaced_since(int(since_text))
        issued_at = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        signed = document.encode(version, complete, None if complete else int(since_text), issued_at, rows)
        key_id, signature = document.sign(self.signing_key, signed)
        log.info("replaced-card list version %d (%s, %d contracts)", version, "complete" if complete else f"since {since_text}", len(rows))
        return Response(200, signed, headers={document.KEY_ID_HEADER: key_id, document.SIGNATURE_HEADER: signature})

    def _reissue(self, route: Route, body: bytes) -> Response:
        """``PUT /v1/cards/{contract}`` ``{"current_issue": N}`` with an admin token: the card was re-issued."""
        card = route.path_value
        if not contract.is_card_contract(card):
            return error(400, "bad-request", "the contract must be 1-32 ASCII digits, not all zeros")
        assert card is not None
        try:
            data = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            return error(400, "bad-request", "the body is not JSON (UTF-8)")
        issue = contract._as_int(data.get("current_issue")) if isinstance(data, dict) else None
        if issue is None or not 1 <= issue <= 9999:
            return error(400, "bad-request", 'the body must be {"current_issue": N}, N from 1 to 9999')
        try:
            version, changed = self.store.reissue(card, issue)
        except ValueError as e:
            return error(409, "conflict", str(e))
        log.info("card re-issued: contract ...%s now at issue %d (list version %d)", card[-4:], issue, version)
        return ok({"contract": card, "current_issue": issue, "version": version, "changed": changed})

    def _post_batch(self, route: Route, body: bytes) -> Response:
        caller = route.caller
        assert caller is not None
        if caller.kiosk_id is not None and (limited := self._limited(caller.kiosk_id)):
            return limited  # before parsing: a kiosk over its rate costs no JSON work
        try:
            batch = contract.parse_batch(json.loads(body.decode("utf-8")), self.formats)
        except (UnicodeDecodeError, ValueError, RecursionError):
            return error(400, "bad-request", "the body is not JSON (UTF-8)")
        except BadRequest as e:
            return error(400, "bad-request", str(e))
        except TooLarge as e:
            return error(413, "too-large", str(e))
        if caller.role == "kiosk" and batch.kiosk_id != caller.kiosk_id:
            log.warning(
                "kiosk %s posted a batch in the name of kiosk %s: 403, nothing stored", _shown(caller.kiosk_id), _shown(batch.kiosk_id)
            )
            return error(403, "forbidden", "a kiosk's token posts only in its own kiosk's name (kiosk.id)")
        results = self.receive(batch, kiosk_version(route.head.headers.get("user-agent")))
        return Response(200, json.dumps({"results": results}).encode(), results=results)

    def receive(self, batch: contract.Batch, version: str | None = None) -> list[dict]:
        """Store the valid identifications of a batch (one transaction); the results, in order."""
        items: list[Item] = []
        for item in batch.items:
            if item.record is not None and item.record.contract in self.reject_contracts:
                item = Item(item.sent_id, None, REFUSED_REASON)
            items.append(item)
        valid = [item.record for item in items if item.record is not None]
        outcomes: list[Outcome] = self.store.record(batch.kiosk_id, batch.site, valid, version=version) if valid else []
        if len(outcomes) != len(valid):
            raise RuntimeError(f"the store answered {len(outcomes)} outcomes for {len(valid)} records")
        by_record = iter(outcomes)
        results = []
        for item in items:
            if item.record is None:
                results.append(contract.result(item, REJECTED))
                continue
            outcome = next(by_record)
            if outcome.status == REJECTED and (outcome.reason or "").startswith(CONFLICT_PREFIX):
                self._conflict(batch.kiosk_id, item.record.seq, outcome.reason or "")
            results.append(contract.result(Item(item.sent_id, item.record, outcome.reason), outcome.status))
        counts = {status: sum(r["status"] == status for r in results) for status in contract.STATUSES}
        log.info(
            "kiosk %s: %d accepted, %d duplicate, %d rejected",
            _shown(batch.kiosk_id),
            counts[contract.ACCEPTED],
            counts[contract.DUPLICATE],
            counts[contract.REJECTED],
        )
        return results

    def _conflict(self, kiosk_id: str, seq: int, reason: str) -> None:
        """A record contradicting one held: a bug or a forgery. One line an operator sees; never the contract."""
        with self._conflicts_lock:
            self.conflicts_seen += 1
            seen = self.conflicts_seen
        log.warning("CONFLICT kiosk %s seq %d: %s (%d conflicts since start; GET /v1/conflicts)", _shown(kiosk_id), seq, reason[:200], seen)


def _shown(name: str | None) -> str:
    """A client's name made safe for one log line (no control characters, bounded)."""
    return ascii(name or "")[1:-1][:64]


def _template_of(path: str) -> tuple[str, str | None]:
    """The route template a (percent-encoded) path matches, and its path value.

    >>> _template_of("/v1/kiosks/riga%2F5/seqs"), _template_of("/v1/cards/0012345678")
    (('/v1/kiosks/{kiosk}/seqs', 'riga/5'), ('/v1/cards/{contract}', '0012345678'))
    >>> _template_of("/v1/cards/replaced"), _template_of("/v1/kiosks//seqs")
    (('/v1/cards/replaced', None), ('/v1/kiosks//seqs', None))
    """
    kiosk = _kiosk_in(path)
    if kiosk is not None:
        return contract.KIOSK_SEQS_PATH, kiosk
    card = _card_in(path)
    if card is not None:
        return contract.CARD_PATH, card
    return path, None


def _kiosk_in(path: str) -> str | None:
    head, _, tail = contract.KIOSK_SEQS_PATH.partition("{kiosk}")
    if not (path.startswith(head) and path.endswith(tail)) or len(path) <= len(head) + len(tail):
        return None
    encoded = path[len(head) : len(path) - len(tail)]
    return None if "/" in encoded else unquote(encoded)


def _card_in(path: str) -> str | None:
    head = contract.CARD_PATH.partition("{contract}")[0]
    if not path.startswith(head) or path == contract.REPLACED_CARDS_PATH:
        return None
    rest = unquote(path[len(head) :])
    return rest if rest and "/" not in rest else None


@dataclass(frozen=True)
class ApiSettings:
    """Everything an :class:`Api` is made from, as plain values: a worker process gets a copy (pickled
    over a pipe, never on a command line) and builds its own Api over its own store connection."""

    db: str
    shared_tokens: tuple[str, ...] = ()
    admin_tokens: tuple[str, ...] = ()
    formats: tuple[contract.CardFormat, ...] = ()
    signing_key_path: str | None = None
    kiosk_rate_per_s: float = 0.0
    kiosk_burst: int = 1
    retry_after_s: int = 1
    retry_after_spread_s: int = 0
    reject_contracts: frozenset[str] = frozenset()
    body_timeout_s: float = DEFAULT_BODY_TIMEOUT_S

    def build(self, store: Store) -> Api:
        """The Api over ``store``; OSError or ValueError if the signing key cannot be read."""
        signing_key = None
        if self.signing_key_path:
            from device.revocations.document import load_private_key

            signing_key = load_private_key(self.signing_key_path)
        return Api(
            store,
            shared_tokens=self.shared_tokens,
            admin_tokens=self.admin_tokens,
            formats={**contract.FORMATS, **{f.name: f for f in self.formats}},
            signing_key=signing_key,
            rate=KioskRate(self.kiosk_rate_per_s, self.kiosk_burst) if self.kiosk_rate_per_s > 0 else None,
            retry_after_s=self.retry_after_s,
            retry_after_spread_s=self.retry_after_spread_s,
            reject_contracts=self.reject_contracts,
            body_timeout_s=self.body_timeout_s,
        )
