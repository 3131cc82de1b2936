"""The load itself: simulated kiosks posting to a central over HTTP, with the kiosk's retry rules.

Every kiosk runs as one asyncio task in this process, with one request in flight at a time (as the
forwarder), batches of up to ``api.batch_size`` (100), and the forwarder's rules on failure (:class:`ForwarderRules`, the
kiosk's ``api.*`` defaults): attempt ``n`` waits a full-jitter draw below ``backoff_base_s * 2**(n-1)``
capped at ``backoff_cap_s`` (:class:`device.backoff.Backoff`), at least ``Retry-After`` (up to
``retry_after_cap_s``) on 408/429/5xx; refused or reset connections and timeouts are retried the
same way. Faults are injected on the client side (:class:`ClientFaults`): an answer "lost" (the
kiosk resends the same batch, the central must answer ``duplicate``) and records resent later.

Sockets: the client opens at most ``connections`` at once (a connector limit and a semaphore of the
same size); a kiosk that has a batch to send and no free socket waits for one, and that wait is
measured apart from the request's latency. So 10,000 kiosks in one process look to the central like
10,000 kiosks whose requests arrive over ``connections`` sockets: the same requests, the same
retry pacing, without 10,000 descriptors here (a real fleet's extra sockets are the server's
connection cap's business, measured elsewhere).

    result = drain("http://127.0.0.1:8080", build_fleet(creds, per_kiosk=10), faults=ClientFaults(0.01, 0.01))
    result.per_second, result.requests_by_status
"""

from __future__ import annotations

import asyncio
import json
import random
import statistics
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import aiohttp

from central.contract import ACCEPTED, DUPLICATE, IDENTIFICATIONS_PATH, REJECTED
from central.loadtest.kiosks import Batch, SimulatedKiosk
from device import __version__
from device.backoff import Backoff
from device.central_client import BUSY_STATUSES, parse_retry_after
from device.config import DEFAULTS

#: Sockets the client opens at most (see the module docstring); below the central's connection cap.
DEFAULT_CONNECTIONS = 200
#: Problems kept word for word in a result (they are counted in full).
MAX_PROBLEMS_KEPT = 20


@dataclass(frozen=True)
class ForwarderRules:
    """The forwarder's batch size, waits and timeouts; :meth:`kiosk_defaults` reads them from the kiosk's schema.

    >>> ForwarderRules.kiosk_defaults().batch_size, ForwarderRules.kiosk_defaults().backoff_cap_s
    (100, 300.0)
    """

    batch_size: int
    backoff_base_s: float
    backoff_cap_s: float
    retry_after_cap_s: float
    connect_timeout_s: float
    read_timeout_s: float

    @classmethod
    def kiosk_defaults(cls) -> ForwarderRules:
        api = DEFAULTS.api
        return cls(api.batch_size, api.backoff_base_s, api.backoff_cap_s, api.retry_after_cap_s, api.connect_timeout_s, api.read_timeout_s)

    def wait_s(self, backoff: Backoff, attempt: int, retry_after_s: float | None) -> float:
        """The forwarder's wait after failed attempt ``attempt``: the backoff draw, at least Retry-After (capped)."""
        wait = backoff.delay(attempt)
        if retry_after_s is not None:
            wait = max(wait, min(retry_after_s, self.retry_after_cap_s))
        return wait


@dataclass(frozen=True)
class ClientFaults:
    """Faults made by the client: ``lost_answer_rate`` of the answered batches are dropped unread
    (the same batch is sent again), ``resend_rate`` of the records acknowledged are sent once more
    in a later batch. Both must come back ``duplicate``."""

    lost_answer_rate: float = 0.0
    resend_rate: float = 0.0


@dataclass(frozen=True)
class Spread:
    """Count, median, 99th percentile and largest of some measured values (seconds).

    >>> Spread.of([0.1, 0.2, 0.3]).p50_s
    0.2
    """

    count: int
    p50_s: float
    p99_s: float
    max_s: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Spread:
        if not values:
            return cls(0, 0.0, 0.0, 0.0)
        ordered = sorted(values)
        return cls(len(ordered), statistics.median(ordered), ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))], ordered[-1])


@dataclass
class Tally:
    """What happened during a run, counted as it happens (one event loop: no locks)."""

    requests_by_status: Counter[str] = field(default_factory=Counter)
    retries: int = 0
    lost_answers: int = 0
    resent_records: int = 0
    accepted: int = 0
    duplicate: int = 0
    rejected: int = 0
    #: Records answered ``accepted`` a second time: the central stored one identification twice.
    doubly_accepted: int = 0
    problems: Counter[str] = field(default_factory=Counter)
    latencies_s: list[float] = field(default_factory=list)
    socket_waits_s: list[float] = field(default_factory=list)
    retry_after_s: list[float] = field(default_factory=list)
    waits_s: list[float] = field(default_factory=list)
    acknowledged_ids: set[str] = field(default_factory=set)

    def problem(self, text: str) -> None:
        self.problems[text] += 1


@dataclass(frozen=True)
class RunResult:
    """One run's outcome: identifications acknowledged, the time, requests by status, retries, the
    faults injected, latencies and the Retry-After pacing seen, the worker kill if any.

    ``problems`` (first :data:`MAX_PROBLEMS_KEPT` kinds, with counts) are answers no kiosk should get:
    rejections, refused tokens, malformed answers; :attr:`ok` is False if there is any, or a double.
    """

    kiosks: int
    identifications: int
    seconds: float
    requests_by_status: dict[str, int]
    retries: int
    lost_answers: int
    resent_records: int
    accepted: int
    duplicate: int
    rejected: int
    doubly_accepted: int
    problems: dict[str, int]
    latency: Spread
    socket_wait: Spread
    retry_after: Spread
    waits: Spread
    killed: str | None = None
    killed_at_s: float | None = None

    @property
    def per_second(self) -> float:
        return self.identifications / self.seconds if self.seconds else 0.0

    @property
    def ok(self) -> bool:
        return not self.problems and not self.doubly_accepted and not self.rejected


@dataclass(frozen=True)
class _Answer:
    status: int | None  # None: no HTTP answer (the error says why)
    error: str | None = None
    results: list[dict] | None = None
    retry_after_s: float | None = None


class _Run:
    """One run's shared state: the session, the rules, the faults, the tally, the kill hook."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        url: str,
        rules: ForwarderRules,
        faults: ClientFaults,
        connections: int,
        rng: random.Random,
        kill: Callable[[], str] | None,
        kill_after: int,
    ):
        self.session, self.url, self.rules, self.faults, self.rng = session, url.rstrip("/"), rules, faults, rng
        self.sockets = asyncio.Semaphore(connections)
        self.tally = Tally()
        self.began = time.perf_counter()
        self.last_ack = self.began
        self._kill, self._kill_after = kill, kill_after
        self.kill_task: asyncio.Task[str] | None = None
        self.killed_at_s: float | None = None

    async def post(self, kiosk: SimulatedKiosk, batch: Batch) -> _Answer:
        """One request as the kiosk's client makes it; a transport failure is an answer without a status."""
        body = json.dumps({"kiosk": {"id": kiosk.kiosk_id, "site": kiosk.site}, "identifications": batch.records}).encode()
        headers = {
            "Authorization": f"Bearer {kiosk.token}",
            "Content-Type": "application/json",
            "User-Agent": f"counter-kiosk/{__version__} (load test)",
        }
        queued = time.perf_counter()
        async with self.sockets:
            began = time.perf_counter()
            self.tally.socket_waits_s.append(began - queued)
            try:
                async with self.session.post(self.url + IDENTIFICATIONS_PATH, data=body, headers=headers) as response:
                    raw = await response.read()
                    status, retry_after = response.status, response.headers.get("Retry-After")
            except TimeoutError:
                return _Answer(None, "timeout")
            except aiohttp.ClientConnectorError:
                return _Answer(None, "connection refused")
            except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError, aiohttp.ClientPayloadError):
                return _Answer(None, "connection reset")
            except aiohttp.ClientError as e:
                return _Answer(None, type(e).__name__)
            finally:
                self.tally.latencies_s.append(time.perf_counter() - began)
        retry_after_s = parse_retry_after(retry_after, datetime.now(UTC))
        if status != 200:
            return _Answer(status, retry_after_s=retry_after_s)
        try:
            results = json.loads(raw)["results"]
            if [r["id"] for r in results] != [r["id"] for r in batch.records]:
                raise ValueError("results do not name the records sent, in order")
        except (ValueError, KeyError, TypeError):
            return _Answer(200, error="malformed answer")
        return _Answer(200, results=results)

    async def deliver(self, kiosk: SimulatedKiosk) -> None:
        """Send the kiosk's backlog until nothing is pending, with the forwarder's rules on failure."""
        tally = self.tally
        backoff = Backoff(self.rules.backoff_base_s, self.rules.backoff_cap_s, rng=random.Random(self.rng.getrandbits(64)))
        attempt = 0
        while kiosk.has_work():
            batch = kiosk.next_batch(self.rules.batch_size)
            answer = await self.post(kiosk, batch)
            tally.requests_by_status[str(answer.status) if answer.status is not None else answer.error or "error"] += 1
            if answer.results is not None:
                self._count(batch, answer.results)
                if self.faults.lost_answer_rate and self.rng.random() < self.faults.lost_answer_rate:
                    tally.lost_answers += 1  # as if the connection broke after the central committed
                else:
                    attempt = 0
                    tally.resent_records += len(batch.records) - batch.fresh
                    kiosk.acknowledged(batch, resend_rate=self.faults.resend_rate, rng=self.rng)
                    self._acknowledged()
                    continue
            elif answer.status is not None and answer.status not in BUSY_STATUSES and answer.status < 500 and answer.error is None:
                # 400/401/403/413/422: the real kiosk would pause or set records aside; here it is a wrong set-up.
                tally.problem(f"HTTP {answer.status} for kiosk {kiosk.kiosk_id}'s batch: the load test stops that kiosk")
                return
            elif answer.error == "malformed answer":
                tally.problem("a 200 answer that does not name the records sent")
            if answer.retry_after_s is not None:
                tally.retry_after_s.append(answer.retry_after_s)
            attempt += 1
            tally.retries += 1
            wait = self.rules.wait_s(backoff, attempt, answer.retry_after_s)
            tally.waits_s.append(wait)
            await asyncio.sleep(wait)

    def _count(self, batch: Batch, results: list[dict]) -> None:
        tally = self.tally
        for record, result in zip(batch.records, results, strict=True):
            status = result.get("status")
            if status == ACCEPTED:
                tally.accepted += 1
                if record["id"] in tally.acknowledged_ids:
                    tally.doubly_accepted += 1
                tally.acknowledged_ids.add(record["id"])
            elif status == DUPLICATE:
                tally.duplicate += 1
                tally.acknowledged_ids.add(record["id"])
            elif status == REJECTED:
                tally.rejected += 1
                tally.problem(f"rejected: {result.get('reason')}")
            else:
                tally.problem(f"unknown status {status!r}")

    def _acknowledged(self) -> None:
        self.last_ack = time.perf_counter()
        if self._kill is not None and self.kill_task is None and len(self.tally.acknowledged_ids) >= self._kill_after:
            self.killed_at_s = self.last_ack - self.began
            self.kill_task = asyncio.create_task(asyncio.to_thread(self._kill))

    def result(self, kiosks: Sequence[SimulatedKiosk], killed: str | None) -> RunResult:
        t = self.tally
        problems = dict(t.problems.most_common(MAX_PROBLEMS_KEPT))
        return RunResult(
            kiosks=len(kiosks),
            identifications=sum(len(k.created) for k in kiosks),
            seconds=self.last_ack - self.began,
            requests_by_status=dict(sorted(t.requests_by_status.items())),
            retries=t.retries,
            lost_answers=t.lost_answers,
            resent_records=t.resent_records,
            accepted=t.accepted,
            duplicate=t.duplicate,
            rejected=t.rejected,
            doubly_accepted=t.doubly_accepted,
            problems=problems,
            latency=Spread.of(t.latencies_s),
            socket_wait=Spread.of(t.socket_waits_s),
            retry_after=Spread.of(t.retry_after_s),
            waits=Spread.of(t.waits_s),
            killed=killed,
            killed_at_s=self.killed_at_s,
        )


def _session(rules: ForwarderRules, connections: int) -> aiohttp.ClientSession:
    # sock_connect/sock_read, not total: the time a kiosk waits for one of our sockets is not its timeout
    # (a real kiosk has a socket of its own).
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=rules.connect_timeout_s, sock_read=rules.read_timeout_s)
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=connections), timeout=timeout)


async def _finish(run: _Run) -> str | None:
    return await run.kill_task if run.kill_task is not None else None


async def drain_async(
    url: str,
    kiosks: Sequence[SimulatedKiosk],
    *,
    rules: ForwarderRules | None = None,
    faults: ClientFaults = ClientFaults(),
    connections: int = DEFAULT_CONNECTIONS,
    kill: Callable[[], str] | None = None,
    kill_after_share: float = 0.5,
    seed: int = 0,
) -> RunResult:
    """Every kiosk starts at once and sends its backlog until the central holds all of it (see :func:`drain`)."""
    rules = rules or ForwarderRules.kiosk_defaults()
    total = sum(len(k.pending) for k in kiosks)
    async with _session(rules, connections) as session:
        run = _Run(session, url, rules, faults, connections, random.Random(seed), kill, max(1, int(kill_after_share * total)))
        await asyncio.gather(*(run.deliver(k) for k in kiosks))
        killed = await _finish(run)
    return run.result(kiosks, killed)


def drain(url: str, kiosks: Sequence[SimulatedKiosk], **options) -> RunResult:
    """The reconnect storm (and the ingest rate, with a few kiosks and long backlogs): all ``kiosks``
    start at once and deliver their backlogs; returns when every identification was acknowledged.

    ``kill``: called once (in a thread) when ``kill_after_share`` of the identifications are
    acknowledged, e.g. :func:`central.loadtest.workers.worker_killer`; what it returns (a description)
    is in the result. Options as :func:`drain_async`.
    """
    return asyncio.run(drain_async(url, kiosks, **options))


async def steady_async(
    url: str,
    kiosks: Sequence[SimulatedKiosk],
    *,
    rate_per_s: float,
    seconds: float,
    batch_size: int | None = None,
    rules: ForwarderRules | None = None,
    faults: ClientFaults = ClientFaults(),
    connections: int = DEFAULT_CONNECTIONS,
    seed: int = 0,
) -> RunResult:
    """Open-loop load (see :func:`steady`)."""
    rules = rules or ForwarderRules.kiosk_defaults()
    batch_size = batch_size or rules.batch_size
    interval_s = batch_size / rate_per_s
    arrivals = max(1, round(rate_per_s * seconds / batch_size))
    async with _session(rules, connections) as session:
        run = _Run(session, url, rules, faults, connections, random.Random(seed), None, 0)
        wake = {k.kiosk_id: asyncio.Event() for k in kiosks}
        done = False

        async def kiosk_loop(kiosk: SimulatedKiosk) -> None:
            while True:
                await wake[kiosk.kiosk_id].wait()
                wake[kiosk.kiosk_id].clear()
                await run.deliver(kiosk)
                if done:  # every arrival is in; deliver() returns with work left only after a problem
                    return

        tasks = [asyncio.create_task(kiosk_loop(k)) for k in kiosks]
        start = time.perf_counter()
        run.began = start
        for i in range(arrivals):
            # Open loop: the next batch arrives on schedule whether or not the central kept up.
            delay = start + i * interval_s - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            kiosk = kiosks[i % len(kiosks)]
            kiosk.commit(batch_size)
            wake[kiosk.kiosk_id].set()
        done = True
        for event in wake.values():
            event.set()
        await asyncio.gather(*tasks)
    return run.result(kiosks, None)


def steady(url: str, kiosks: Sequence[SimulatedKiosk], **options) -> RunResult:
    """Steady peak load: a batch of ``batch_size`` (default: the kiosk's ``api.batch_size``, 100) new identifications arrives every
    ``batch_size / rate_per_s`` seconds at the next kiosk in turn for ``seconds`` (open loop: arrivals
    do not wait for answers; a kiosk still has one request in flight at a time), each delivered with
    the kiosk's rules. ``kiosks`` start with empty backlogs (``per_kiosk=0``). The result's
    ``per_second`` is the rate achieved (acknowledged / time to the last answer), its ``latency`` the
    request latency. Options as :func:`steady_async`.
    """
    return asyncio.run(steady_async(url, kiosks, **options))
