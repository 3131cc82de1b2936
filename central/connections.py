"""Slow and surplus connections, on both servers: one log line per burst, and a deadline for the
request line and headers of the thread-per-connection reference server.

A client holding many connections open, each sending a byte now and then, must not take the
central down. Two bounds do it: a cap on the connections served at once (beyond it, a new one is
closed at once) and a deadline from accept (or from the end of the previous answer, on a kept-alive
connection) to the end of the request's headers. A socket timeout per ``recv`` is no deadline: a
byte every few seconds would renew it forever.

>>> import logging
>>> burst = BurstLog(logging.getLogger("doctest"), "connections refused", window_s=10, clock=iter([0, 1, 2, 11]).__next__)
>>> [burst.note() for _ in range(3)], burst.flush()   # the first logs at once, the next two wait
([1, 0, 0], 2)
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable

#: Default cap on the connections one server process serves at once.
DEFAULT_MAX_CONNECTIONS = 1000
#: Default seconds from accept to the end of the request headers.
DEFAULT_HEADER_TIMEOUT_S = 10.0
#: Default seconds a request body may take to arrive in full on the production server (a full
#: batch of 1000 is about 250 KB: seconds even on a poor mobile link); then 408, connection closed.
DEFAULT_BODY_TIMEOUT_S = 60.0


class BurstLog:
    """Counts events and logs them at most once per ``window_s``: one line per burst, not per event."""

    def __init__(self, logger: logging.Logger, what: str, *, window_s: float = 10.0, clock: Callable[[], float] = time.monotonic):
        self.logger, self.what, self.window_s, self._clock = logger, what, window_s, clock
        self._lock = threading.Lock()
        self._pending = 0
        self._last: float | None = None
        self._timer: threading.Timer | None = None
        self.total = 0

    def note(self, count: int = 1) -> int:
        """Count ``count`` events; log them now if no line went out within the window (the count logged)."""
        with self._lock:
            self._pending += count
            self.total += count
            now = self._clock()
            if self._last is not None and now - self._last < self.window_s:
                return 0
            return self._emit(now)

    def note_flushed_later(self, count: int = 1) -> int:
        """As :meth:`note`, and a count held back is logged when the window ends even if no event
        follows (a timer thread): the end of a burst is never silent. For callers with no event loop."""
        logged = self.note(count)
        if logged == 0:
            with self._lock:
                if self._timer is None:
                    self._timer = threading.Timer(self.window_s + 0.1, self._flush_from_timer)
                    self._timer.daemon = True
                    self._timer.start()
        return logged

    def _flush_from_timer(self) -> None:
        with self._lock:
            self._timer = None
        self.flush()

    def flush(self) -> int:
        """Log what is pending if the window has passed (call it now and then); the count logged."""
        with self._lock:
            now = self._clock()
            if not self._pending or (self._last is not None and now - self._last < self.window_s):
                return 0
            return self._emit(now)

    def _emit(self, now: float) -> int:
        count, self._pending = self._pending, 0
        since = f"in the last {now - self._last:.0f} s" if self._last is not None else "just now"
        self._last = now
        self.logger.warning("%s: %d %s (%d since start)", self.what, count, since, self.total)
        return count


class ReadDeadlines:
    """The deadline of each connection still reading one thing, its request's headers or its body
    (threaded servers): a deadline for the whole read, which no byte now and then renews.

    A handler calls :meth:`waiting` when it starts the read and :meth:`done` once it is complete; a
    watchdog thread shuts down every socket past its deadline (``how``: both ways for the headers,
    where nothing will be answered; only reading for a body, so a 408 can still go out), so the
    handler's blocked read returns and its thread goes on. ``what`` names the cut in the log.
    """

    def __init__(self, timeout_s: float, logger: logging.Logger, what: str, *, how: int = socket.SHUT_RDWR, tick_s: float = 0.25):
        self.timeout_s = timeout_s
        self.closed = BurstLog(logger, what)
        self._how = how
        self._tick_s = tick_s
        self._lock = threading.Lock()
        self._deadlines: dict[socket.socket, float] = {}
        self._expired: set[socket.socket] = set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        #: Called each tick (e.g. other BurstLogs' flush).
        self.on_tick: list[Callable[[], object]] = [self.closed.flush]

    def waiting(self, conn: socket.socket) -> None:
        """``conn`` starts reading a request: its deadline runs from now."""
        with self._lock:
            self._deadlines[conn] = time.monotonic() + self.timeout_s
            self._expired.discard(conn)

    def done(self, conn: socket.socket) -> bool:
        """``conn``'s headers are in (or it ends): True if its deadline had passed (it is shut down)."""
        with self._lock:
            self._deadlines.pop(conn, None)
            expired = conn in self._expired
            self._expired.discard(conn)
        return expired

    def passed(self, conn: socket.socket) -> bool:
        """Whether ``conn`` was shut down by its deadline (then nothing more is sent on it)."""
        with self._lock:
            return conn in self._expired

    def start(self) -> None:
        self._thread = threading.Thread(target=self._watch, name="central-header-deadlines", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _watch(self) -> None:
        while not self._stop.wait(self._tick_s):
            now = time.monotonic()
            with self._lock:
                late = [conn for conn, deadline in self._deadlines.items() if deadline <= now]
                for conn in late:
                    del self._deadlines[conn]
                    self._expired.add(conn)
            for conn in late:
                try:
                    conn.shutdown(self._how)  # wakes the handler's read; its thread answers or closes
                except OSError:
                    pass  # closed meanwhile
            if late:
                self.closed.note(len(late))
            for tick in self.on_tick:
                tick()
