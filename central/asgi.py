"""The production transport: the central API (:class:`central.api.Api`) as a Starlette ASGI app, and the
uvicorn HTTP protocol that bounds slow and surplus connections.

Starlette because it is small, well kept and the base of FastAPI: it gives the lifespan (each
worker process opens its own store at start and closes it at the end), the request body as a
stream (read chunk by chunk and cut at ``contract.MAX_BODY_BYTES``) and a thread pool for the
store's blocking calls; the routing stays the Api's, one place for both servers.

uvicorn alone does not bound slow clients: its keep-alive timer starts only after a first answer,
and ``limit_concurrency`` answers 503 only to a request whose headers arrived. :class:`GuardedH11Protocol`
adds a deadline from accept (and from each answer) to the end of the next request's headers, and a
cap on the connections a worker holds, each logged once per burst (:class:`central.connections.BurstLog`).

    app = create_app(ApiSettings(db="sqlite:/tmp/central.db", shared_tokens=("secret",)))
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio.to_thread
import h11
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response as StarletteResponse
from starlette.routing import Mount
from uvicorn.protocols.http.h11_impl import H11Protocol

from central import contract
from central.api import Api, ApiSettings, RequestHead, Response, error
from central.connections import DEFAULT_HEADER_TIMEOUT_S, DEFAULT_MAX_CONNECTIONS, BurstLog

log = logging.getLogger("central")

#: The log line each worker writes once it serves (tests find the workers' pids by it).
WORKER_SERVING = "central worker %d serving"
#: Threads a worker may run store calls in at once (anyio's default is 40). A request waiting for one
#: of anyio's threads has no deadline; one waiting in the PostgreSQL pool's queue (as long as these
#: threads, ``pool_max_waiting`` 256) has ``pool_timeout_s``, then 503 + Retry-After. So with more
#: threads, a storm queues where its wait is bounded, not in front of it until the kiosks time out.
STORE_THREADS = 256


def create_app(settings: ApiSettings) -> Starlette:
    """The ASGI app of one worker process; its store is opened at startup, closed at shutdown."""
    holder: dict[str, Api] = {}

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        from central.server import open_database

        anyio.to_thread.current_default_thread_limiter().total_tokens = STORE_THREADS
        store = await run_in_threadpool(open_database, settings.db)
        try:
            holder["api"] = settings.build(store)
            log.info(WORKER_SERVING, os.getpid())
            yield
        finally:
            await run_in_threadpool(store.close)

    async def endpoint(scope: Any, receive: Any, send: Any) -> None:
        answer = await _answer(holder["api"], Request(scope, receive))
        headers = {"Cache-Control": "no-store", **answer.headers}
        if answer.close:
            headers["Connection"] = "close"
        await StarletteResponse(answer.body, answer.status, headers, answer.content_type)(scope, receive, send)

    # Mount, not Route: every method and path reaches the Api, which answers 404 and 405 itself.
    return Starlette(routes=[Mount("/", app=endpoint)], lifespan=lifespan)


async def _answer(api: Api, request: Request) -> Response:
    raw_path = request.scope.get("raw_path") or request.url.path.encode()
    head = RequestHead(
        request.method,
        raw_path.decode("latin-1").partition("?")[0],
        request.scope.get("query_string", b"").decode("latin-1"),
        {k.lower(): v for k, v in request.headers.items()},
    )
    try:
        route = await run_in_threadpool(api.route, head)
        if isinstance(route, Response):
            return route
        body = b""
        if route.reads_body:
            read = await _read_body(request, head, api.body_timeout_s)
            if isinstance(read, Response):
                return read
            body = read
        return await run_in_threadpool(api.handle, route, body)
    except Exception:
        log.exception("internal error on %s %s", head.method, head.path[:200])
        return api.internal_error()


async def _read_body(request: Request, head: RequestHead, timeout_s: float) -> bytes | Response:
    """The body, read chunk by chunk and cut at MAX_BODY_BYTES (413) or ``timeout_s`` (408; both close the connection)."""
    too_large = error(413, "too-large", f"the body is over {contract.MAX_BODY_BYTES} bytes; split the batch", close=True)
    declared = head.headers.get("content-length")
    if declared is None and "chunked" not in head.headers.get("transfer-encoding", "").lower():
        return error(411, "length-required", "a Content-Length header is required")
    if declared is not None and declared.strip().isdigit() and int(declared) > contract.MAX_BODY_BYTES:
        return too_large  # not worth reading
    chunks, total = [], 0
    try:
        # A deadline for the whole body, not per chunk: a byte now and then must not hold the connection.
        async with asyncio.timeout(timeout_s):
            async for chunk in request.stream():
                total += len(chunk)
                if total > contract.MAX_BODY_BYTES:
                    return too_large
                chunks.append(chunk)
    except TimeoutError:
        _burst(f"request bodies cut: not complete within {timeout_s:g} s (worker {os.getpid()})").note()
        return error(408, "request-timeout", f"the body did not arrive within {timeout_s:g} s", close=True)
    return b"".join(chunks)


# --- the connection guard ------------------------------------------------------------------------

# One per worker process (each counts its own connections): made at the first connection.
_burst_logs: dict[str, BurstLog] = {}


def _burst(what: str) -> BurstLog:
    if what not in _burst_logs:
        _burst_logs[what] = BurstLog(log, what)
    return _burst_logs[what]


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a header deadline and a connection cap per worker.

    The limits come from the uvicorn Config (``central_max_connections``, ``central_header_timeout_s``,
    set by :mod:`central.workers`), so that they travel with it to every worker process.
    """

    _deadline: asyncio.TimerHandle | None = None
    _cycle_at_arm: object = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        cap = getattr(self.config, "central_max_connections", DEFAULT_MAX_CONNECTIONS)
        over = len(self.server_state.connections) >= cap
        super().connection_made(transport)
        if over:
            self._note(f"connections refused: {cap} open already in worker {os.getpid()} (--max-connections)")
            transport.abort()
            return
        self._arm()

    def _arm(self) -> None:
        """The next request's headers must be in within the header timeout, from now."""
        self._disarm()
        timeout_s = getattr(self.config, "central_header_timeout_s", DEFAULT_HEADER_TIMEOUT_S)
        self._cycle_at_arm = self.cycle
        self._deadline = self.loop.call_later(timeout_s, self._too_slow, timeout_s)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _too_slow(self, timeout_s: float) -> None:
        self._deadline = None
        if self.cycle is not self._cycle_at_arm or self.transport.is_closing():
            return
        self._note(f"connections closed: request line and headers not complete within {timeout_s:g} s (worker {os.getpid()})")
        self.transport.abort()

    def _note(self, what: str) -> None:
        burst = _burst(what)
        if burst.note() == 0:
            # Held back by the window: make sure the count goes out when it ends, even if all is quiet.
            self.loop.call_later(burst.window_s + 0.1, burst.flush)

    def handle_events(self) -> None:
        super().handle_events()
        if self._deadline is not None and self.cycle is not self._cycle_at_arm:
            self._disarm()  # a new request's headers are in: the deadline is met

    def on_response_complete(self) -> None:
        if not self.transport.is_closing() and self.conn.their_state is not h11.MUST_CLOSE:
            self._arm()  # the next request on this kept-alive connection has the same deadline
        super().on_response_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)
