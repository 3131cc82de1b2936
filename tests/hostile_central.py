"""A hostile central on 127.0.0.1: a raw-socket HTTP server that misbehaves byte by byte.

:class:`http_fixtures.StubCentral` answers through ``http.server``, which writes whole answers at
once. The attacks here need every byte and every pause under control: an answer trickled one byte
a second, a stall after the headers or before them, a connection accepted and never read. Each
connection is served by a behaviour, a function ``(Connection) -> None``; every request read is
kept (method, path, headers, body) so a test can see exactly what the kiosk sent::

    with HostileCentral(trickle_body(length=100_000, every_s=1.0)) as server:
        client = CentralClient(server.url, token="T", connect_timeout_s=1, read_timeout_s=2)
        ...                                   # the POST ends at its deadline
        assert server.requests[0].headers["authorization"] == "Bearer T"

It runs in a thread of the test process, so it also serves a ``kiosk run`` subprocess. Closing it
releases every behaviour still waiting and closes every connection. ``https=True`` serves TLS
with a fresh self-signed certificate for 127.0.0.1 (:attr:`HostileCentral.ca_file`).
"""

from __future__ import annotations

import json
import shutil
import socket
import ssl
import tempfile
import threading
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from http_fixtures import make_self_signed

#: Longest wait of any behaviour: far beyond every deadline a test sets.
FOREVER_S = 600.0


@dataclass(frozen=True)
class Request:
    """One request as the hostile central read it (header names in lower case)."""

    method: str
    path: str
    headers: dict
    body: bytes


class Connection:
    """One accepted connection, handed to a behaviour: read the request, send bytes, wait."""

    def __init__(self, sock: socket.socket, server: HostileCentral):
        self.sock = sock
        self.server = server
        self._buffer = b""

    def read_request(self) -> Request | None:
        """The next request on this connection (kept in :attr:`HostileCentral.requests`), or None at EOF."""
        while b"\r\n\r\n" not in self._buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                return None
            self._buffer += chunk
        head, self._buffer = self._buffer.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        method, path, _version = lines[0].split(" ", 2)
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length") or 0)
        while len(self._buffer) < length:
            chunk = self.sock.recv(65536)
            if not chunk:
                return None
            self._buffer += chunk
        body, self._buffer = self._buffer[:length], self._buffer[length:]
        request = Request(method, path, headers, body)
        with self.server.lock:
            self.server.requests.append(request)
        self.server.request_arrived.set()
        return request

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def wait(self, seconds: float) -> bool:
        """Pause; False once the server is closing (the behaviour should return)."""
        return not self.server.closed.wait(seconds)


Behaviour = Callable[[Connection], None]


def head(status: int = 200, length: int | None = None, extra: str = "") -> bytes:
    """A status line and headers, ending with the blank line; ``length`` is the Content-Length claimed."""
    lines = [f"HTTP/1.1 {status} Whatever", "Content-Type: application/json"]
    if length is not None:
        lines.append(f"Content-Length: {length}")
    return ("\r\n".join(lines) + "\r\n" + extra + "\r\n").encode()


def answer_json(data=None, status: int = 200) -> Behaviour:
    """A well-formed answer to every request on the connection (default: no results)."""
    body = json.dumps({"results": []} if data is None else data).encode()

    def behave(conn: Connection) -> None:
        while conn.read_request() is not None:
            conn.send(head(status, len(body)) + body)

    return behave


def accept_each() -> Behaviour:
    """Answer like a central that accepts every identification sent (a POST of the contract's shape)."""

    def behave(conn: Connection) -> None:
        while (request := conn.read_request()) is not None:
            sent = json.loads(request.body or b"{}").get("identifications", [])
            body = json.dumps({"results": [{"id": r["id"], "status": "accepted", "reason": None} for r in sent]}).encode()
            conn.send(head(200, len(body)) + body)

    return behave


def trickle_body(length: int = 100_000, every_s: float = 1.0, status: int = 200) -> Behaviour:
    """Headers at once claiming ``length`` bytes, then one byte every ``every_s`` seconds."""

    def behave(conn: Connection) -> None:
        if conn.read_request() is None:
            return
        conn.send(head(status, length))
        for _ in range(length):
            if not conn.wait(every_s):
                return
            conn.send(b" ")

    return behave


def endless(first: bytes, then: bytes, every_s: float) -> Behaviour:
    """Read the request, send ``first``, then ``then`` every ``every_s`` seconds, never finishing."""

    def behave(conn: Connection) -> None:
        if conn.read_request() is None:
            return
        conn.send(first)
        while conn.wait(every_s):
            conn.send(then)

    return behave


def trickle_headers(every_s: float = 1.0) -> Behaviour:
    """A status line, then one byte of an endless header every ``every_s`` seconds."""
    return endless(b"HTTP/1.1 200 OK\r\nX-Slow: ", b"a", every_s)


def endless_continue(every_s: float = 0.05) -> Behaviour:
    """``100 Continue`` after ``100 Continue``: interim answers, which HTTP clients skip, and never the answer."""
    return endless(b"", b"HTTP/1.1 100 Continue\r\n\r\n", every_s)


def stall_after_headers(length: int = 100_000) -> Behaviour:
    """Headers claiming ``length`` bytes, then nothing."""

    def behave(conn: Connection) -> None:
        if conn.read_request() is not None:
            conn.send(head(200, length))
            conn.wait(FOREVER_S)

    return behave


def stall_before_headers() -> Behaviour:
    """Read the request, then say nothing."""

    def behave(conn: Connection) -> None:
        if conn.read_request() is not None:
            conn.wait(FOREVER_S)

    return behave


def never_read() -> Behaviour:
    """Accept the connection and never read from it: a big request blocks in the sender's send()."""
    return lambda conn: conn.wait(FOREVER_S)


class HostileCentral:
    """The server; see the module docstring. ``default`` serves every connection not scripted with :meth:`then`."""

    def __init__(self, default: Behaviour, https: bool = False):
        self.default = default
        self.script: deque[Behaviour] = deque()
        self.lock = threading.Lock()
        self.requests: list[Request] = []
        self.connections = 0
        self.request_arrived = threading.Event()
        self.closed = threading.Event()
        self._socks: list[socket.socket] = []
        self._tls: ssl.SSLContext | None = None
        self._tmp: str | None = None
        self.ca_file: Path | None = None
        if https:
            self._tmp = tempfile.mkdtemp(prefix="hostile-central-")
            self.ca_file, key = make_self_signed(Path(self._tmp))
            self._tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self._tls.load_cert_chain(self.ca_file, key)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.url = f"{'https' if https else 'http'}://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._accept, name="hostile-central", daemon=True)
        self._thread.start()

    def then(self, *behaviours: Behaviour) -> HostileCentral:
        """Serve the next connections with these, in order; then :attr:`default` again."""
        with self.lock:
            self.script.extend(behaviours)
        return self

    def _accept(self) -> None:
        self._listener.settimeout(0.1)  # to see `closed`: closing a socket does not wake its accept()
        while not self.closed.is_set():
            try:
                sock, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            sock.settimeout(None)
            with self.lock:
                self._socks.append(sock)
                self.connections += 1
                behaviour = self.script.popleft() if self.script else self.default
            threading.Thread(target=self._serve, args=(sock, behaviour), name="hostile-connection", daemon=True).start()

    def _serve(self, sock: socket.socket, behaviour: Behaviour) -> None:
        try:
            if self._tls is not None:
                sock = self._tls.wrap_socket(sock, server_side=True)
            behaviour(Connection(sock, self))
        except OSError:
            pass  # the kiosk gave up and closed: that is what most tests want to see
        finally:
            sock.close()

    def close(self) -> None:
        self.closed.set()
        self._thread.join(5)
        self._listener.close()
        with self.lock:
            socks, self._socks = self._socks, []
        for sock in socks:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self._tmp:
            shutil.rmtree(self._tmp, ignore_errors=True)

    def __enter__(self) -> HostileCentral:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class FullBacklog:
    """A port on 127.0.0.1 where a TCP connect never completes: a listener that never accepts,
    its backlog filled by one connection (Linux then drops further SYNs; a connect waits out its timeout)."""

    def __init__(self):
        self._listener = socket.create_server(("127.0.0.1", 0), backlog=0)
        self.port = self._listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._filler = socket.create_connection(("127.0.0.1", self.port), timeout=5)

    def close(self) -> None:
        self._filler.close()
        self._listener.close()

    def __enter__(self) -> FullBacklog:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
