"""A total deadline for one HTTP request made with ``requests``, and a way to abandon it at once.

``requests``' timeouts bound each wait for bytes (the connect, then every ``recv``), never the
whole exchange: a server that answers ``200``, ``Content-Length: 100000`` and then one byte a
second holds a request for a day, and so does one that trickles its headers or never reads a big
request. Nor can another thread stop a request in flight, so a kiosk asked to stop would wait.

Here every request runs inside an :class:`InFlight`. A watcher thread looks at it a few times a
second; at the deadline, or once ``cancel`` is set, it shuts the request's socket down
(``shutdown(SHUT_RDWR)``, which wakes a blocked ``recv`` or ``send`` in any thread; the owner
still closes it). Whatever the library then raises, :attr:`InFlight.cut` says why it happened.
The socket is found through the connection pool: the session's adapters come from
:func:`deadline_adapter`, whose pools hand each connection they give out to the ``InFlight`` of
the calling thread::

    session.mount("http://", deadline_adapter()); session.mount("https://", deadline_adapter())
    with InFlight(35.0, cancel=stop_event) as flight:
        try:
            body = session.post(url, data=b"{}", timeout=(5, 15)).content
        except requests.RequestException:
            if flight.cut == DEADLINE: ...     # too slow, however it failed

What it cannot cut: a DNS lookup, and a TCP connect before it succeeds (both happen before the
socket is handed to the connection); the connect timeout bounds the latter.
"""

from __future__ import annotations

import functools
import logging
import socket
import threading
import time
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from requests.adapters import HTTPAdapter

log = logging.getLogger(__name__)

#: Why a request was cut (:attr:`InFlight.cut`).
DEADLINE = "deadline"
CANCELLED = "cancelled"

#: How often the watcher looks at the clock and at ``cancel``: how late a cut may come.
WATCH_INTERVAL_S = 0.1

_current = threading.local()


class Cancel(Protocol):
    """What may abandon a request: a :class:`threading.Event`, or anything with ``is_set()``."""

    def is_set(self) -> bool: ...


class InFlight:
    """One request (or a few, one after the other) in this thread, with a deadline ``deadline_s`` from now.

    A context manager; the watcher thread lives while it is entered. ``cut`` is None, or
    :data:`DEADLINE` / :data:`CANCELLED` once the socket was shut down for that reason.
    """

    def __init__(self, deadline_s: float, cancel: Cancel | None = None):
        self.deadline_s = deadline_s
        self.cancel = cancel
        self.started = time.monotonic()
        self.cut: str | None = None
        self._lock = threading.Lock()
        self._connections: list = []
        self._done = threading.Event()

    @property
    def elapsed_s(self) -> float:
        return time.monotonic() - self.started

    def attach(self, connection) -> None:
        """A connection this request uses (called by the pools of :func:`deadline_adapter`)."""
        with self._lock:
            self._connections.append(connection)
        if self.cut is not None:
            self._shut_down()  # cut before the pool handed it over: at once, not at the next look

    def __enter__(self) -> InFlight:
        if getattr(_current, "flight", None) is not None:
            raise RuntimeError("one InFlight per thread at a time")
        _current.flight = self
        threading.Thread(target=self._watch, name="request-deadline", daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        _current.flight = None
        self._done.set()

    def _watch(self) -> None:
        deadline = self.started + self.deadline_s
        while not self._done.wait(WATCH_INTERVAL_S):
            if self.cut is None:
                if self.cancel is not None and self.cancel.is_set():
                    self.cut = CANCELLED
                elif time.monotonic() >= deadline:
                    self.cut = DEADLINE
            if self.cut is not None:
                # Again at every look: a connect that was under way has a socket only once it succeeds.
                self._shut_down()

    def _shut_down(self) -> None:
        with self._lock:
            socks = [getattr(c, "sock", None) for c in self._connections]
        for sock in socks:
            if sock is None:
                continue
            try:
                # The plain socket's shutdown, also for TLS: no close_notify to a server that
                # may not read, and no change to the SSL object another thread is reading with.
                socket.socket.shutdown(sock, socket.SHUT_RDWR)
            except OSError:
                pass  # already closed or never connected


def _attach_to_current(connection) -> None:
    flight = getattr(_current, "flight", None)
    if flight is not None:
        flight.attach(connection)


@functools.cache
def _pool_classes() -> dict:
    """urllib3's HTTP and HTTPS pools, handing each connection they give out to this thread's InFlight."""
    from urllib3 import HTTPConnectionPool, HTTPSConnectionPool

    class _Tracked:
        def _get_conn(self, timeout=None):
            connection = super()._get_conn(timeout)
            _attach_to_current(connection)
            return connection

    if not hasattr(HTTPConnectionPool, "_get_conn"):
        log.error("this urllib3 has no HTTPConnectionPool._get_conn: requests to the central have no total deadline")
    http = type("DeadlineHTTPConnectionPool", (_Tracked, HTTPConnectionPool), {})
    https = type("DeadlineHTTPSConnectionPool", (_Tracked, HTTPSConnectionPool), {})
    return {"http": http, "https": https}


def deadline_adapter() -> HTTPAdapter:
    """A ``requests`` transport adapter whose connections an :class:`InFlight` can cut."""
    return _adapter_class()()


@functools.cache
def _adapter_class() -> type[HTTPAdapter]:
    from requests.adapters import HTTPAdapter

    class DeadlineAdapter(HTTPAdapter):
        def init_poolmanager(self, *args, **kwargs):
            super().init_poolmanager(*args, **kwargs)
            self.poolmanager.pool_classes_by_scheme = _pool_classes()

    return DeadlineAdapter
