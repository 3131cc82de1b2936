"""Centrals for the tests: the reference central as a real process, and one scripted fake.

The reference central (``central/``) is the real thing, with random faults: the fixtures
``central`` (a fresh server, token :data:`CENTRAL_TOKEN`, database in tmp_path) and
``central_factory(**faults)`` (one more server each call, faults as in
:func:`central.server.start_subprocess`; all stopped at teardown).

:class:`FakeCentral` is a raw-socket HTTP server on 127.0.0.1 in a thread of the test process (so
it serves a ``kiosk run`` subprocess too) for exact misbehaviour at an exact moment. It has two
modes, one server:

- By default it answers requests like a central (token check, ``accepted``/``duplicate``/
  ``rejected`` per record, each id counted in :attr:`FakeCentral.receipts`) unless the next
  scripted *answer* says otherwise; an answer is a function ``(Exchange) -> None``::

      with FakeCentral(token="T") as stub:
          stub.then(unavailable(retry_after="30"), hang())   # the next two requests misbehave
          ...                                                 # then it answers normally again
          assert stub.receipts == {ident.id: 1}

- ``FakeCentral(hostile=behaviour)`` hands every *connection* to a behaviour
  ``(Connection) -> None`` that controls each byte and each pause (an answer trickled one byte a
  second, a stall after the headers, a connection never read); :meth:`FakeCentral.then` scripts the
  next connections::

      with FakeCentral(hostile=trickle_body(length=100_000, every_s=1.0)) as server:
          ...                                   # the POST ends at its deadline
          assert server.requests[0].headers["authorization"] == "Bearer T"

Every request read is kept in :attr:`FakeCentral.requests`. ``https=True`` serves TLS with a fresh
self-signed certificate for 127.0.0.1 (:attr:`FakeCentral.ca_file`); ``port`` takes over a port of
:func:`support.ports.reserved_port` (a central back at the address of an outage). Closing it
releases every behaviour still waiting and closes every connection.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import shutil
import socket
import ssl
import struct
import subprocess
import tempfile
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path

import pytest

from central.server import CentralProcess, start_subprocess

#: The bearer token the centrals of the tests accept.
CENTRAL_TOKEN = "test-token"

#: Longest wait of any behaviour: far beyond every deadline a test sets.
FOREVER_S = 600.0


# --- the reference central, as a real process ---------------------------------------------------


@pytest.fixture
def central_factory(tmp_path):
    started: list[CentralProcess] = []
    numbers = itertools.count(1)

    def start(*, token=CENTRAL_TOKEN, db: str | None = None, **faults) -> CentralProcess:
        # db: a postgresql:// URL (the central's files then go in the folder); default SQLite there.
        folder = tmp_path / f"central-{next(numbers)}"
        folder.mkdir()
        server = start_subprocess(db or folder, token, files=folder if db else None, **faults)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def central(central_factory) -> CentralProcess:
    return central_factory()


# --- the fake: what it reads ---------------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    """One request as the fake central read it (header names in lower case)."""

    method: str
    path: str
    headers: dict
    body: bytes

    @property
    def json(self):
        try:
            return json.loads(self.body)
        except ValueError:
            return None

    @property
    def ids(self) -> list[str]:
        data = self.json
        try:
            return [r["id"] for r in data["identifications"]]
        except (TypeError, KeyError):
            return []


class Connection:
    """One accepted connection: read a request, send bytes, wait (a hostile behaviour's tools)."""

    def __init__(self, sock: socket.socket, server: FakeCentral):
        self.sock = sock
        self.server = server
        self._buffer = b""

    def read_request(self) -> Request | None:
        """The next request on this connection (kept in :attr:`FakeCentral.requests`), or None at EOF."""
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


@dataclass
class Exchange:
    """A request being answered: the fake central, the request, and the ways to answer it."""

    stub: FakeCentral
    request: Request
    connection: Connection
    answered: bool = field(default=False)

    def send(self, status: int, body: bytes | str | dict = b"", headers: dict | None = None) -> None:
        if isinstance(body, dict):
            body = json.dumps(body)
        if isinstance(body, str):
            body = body.encode()
        headers = dict(headers or {})
        if not any(k.lower() == "content-type" for k in headers):
            headers["Content-Type"] = "application/json"
        headers["Content-Length"] = str(len(body))
        try:
            reason = HTTPStatus(status).phrase
        except ValueError:  # a status no standard names, which a hostile central may well send
            reason = "Whatever"
        lines = [f"HTTP/1.1 {status} {reason}", *(f"{k}: {v}" for k, v in headers.items())]
        self.connection.send(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
        self.answered = True

    def cut(self, reset: bool = False) -> None:
        """Close the connection without an answer (``reset``: with a TCP RST instead of a FIN)."""
        sock = self.connection.sock
        if reset:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        else:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        sock.close()
        self.answered = False  # nothing more on this connection


Answer = Callable[[Exchange], None]
Behaviour = Callable[[Connection], None]


# --- answers: one request each, in the default mode ------------------------------------------------


def results_for(ex: Exchange, *, commit: bool = True) -> list[dict]:
    """What a correct central answers for this request's records (and stores them if ``commit``)."""
    stub, data = ex.stub, ex.request.json
    results = []
    for record in data["identifications"]:
        rid = record["id"]
        if record.get("contract") in stub.reject_contracts:
            results.append({"id": rid, "status": "rejected", "reason": "contract-closed: the contract is closed"})
            continue
        with stub.lock:
            seen = rid in stub.receipts
            if commit:
                stub.receipts[rid] = stub.receipts.get(rid, 0) + 1
        results.append({"id": rid, "status": "duplicate" if seen else "accepted", "reason": None})
    return results


def well_behaved(ex: Exchange) -> None:
    """A well-behaved central: checks the token, stores, answers one result per record."""
    if ex.request.headers.get("authorization") != f"Bearer {ex.stub.token}":
        ex.send(401, {"error": "unknown or missing bearer token"})
        return
    data = ex.request.json
    if not isinstance(data, dict) or not isinstance(data.get("identifications"), list):
        ex.send(400, {"error": "the body must be a JSON object with 'kiosk' and 'identifications'"})
        return
    ex.send(200, {"results": results_for(ex)})


def answer(status: int, body: bytes | str | dict = b"", headers: dict | None = None) -> Answer:
    """Answer with exactly this; store nothing."""
    return lambda ex: ex.send(status, body, headers)


def unavailable(retry_after: str | None = "1") -> Answer:
    """503 with ``Retry-After`` (seconds or an HTTP date), storing nothing."""
    return answer(503, {"error": "overloaded"}, {"Retry-After": retry_after} if retry_after is not None else None)


def html_error(status: int = 502) -> Answer:
    """An HTML error page, as a reverse proxy sends when the backend is down."""
    page = "<html><head><title>502 Bad Gateway</title></head><body><h1>Bad Gateway</h1></body></html>"
    return answer(status, page, {"Content-Type": "text/html"})


def hang() -> Answer:
    """Never answer (until the fake closes): longer than any read timeout."""
    return lambda ex: ex.stub.closed.wait(60)


def reset() -> Answer:
    """Cut the connection with a TCP reset before answering; store nothing."""
    return lambda ex: ex.cut(reset=True)


def commit_then_drop() -> Answer:
    """Store the records, then close the connection without answering (the answer is lost)."""

    def behave(ex: Exchange) -> None:
        results_for(ex)
        ex.cut()

    return behave


def without_result_for_last() -> Answer:
    """A 200 whose results leave out the last record (the others are stored and answered)."""

    def behave(ex: Exchange) -> None:
        results = results_for(ex)
        dropped = results.pop()
        with ex.stub.lock:  # the dropped one was not stored either
            ex.stub.receipts[dropped["id"]] -= 1
            if not ex.stub.receipts[dropped["id"]]:
                del ex.stub.receipts[dropped["id"]]
        ex.send(200, {"results": results})

    return behave


def with_unknown_id() -> Answer:
    """A 200 with every result plus one for an id the kiosk never sent; stores nothing."""

    def behave(ex: Exchange) -> None:
        results = results_for(ex, commit=False)
        results.append({"id": "00000000-0000-4000-8000-000000000000", "status": "accepted", "reason": None})
        ex.send(200, {"results": results})

    return behave


def unprocessable_if_contract(contract: str) -> Answer:
    """422 for the whole batch when any record has ``contract`` (else behave as a central)."""

    def behave(ex: Exchange) -> None:
        if any(r.get("contract") == contract for r in ex.request.json["identifications"]):
            ex.send(422, {"error": "invalid-contract: the contract is not in the register"})
        else:
            well_behaved(ex)

    return behave


# --- hostile behaviours: one connection each, byte by byte ------------------------------------------


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


# --- the fake central -------------------------------------------------------------------------------


def make_self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate and key for 127.0.0.1 (``openssl`` command), valid for a day."""
    cert, key = folder / "central-cert.pem", folder / "central-key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
         "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


class FakeCentral:
    """The fake central; see the module docstring. A context manager.

    ``hostile``: the behaviour of every connection not scripted with :meth:`then` (hostile mode);
    without it, requests get the scripted answers, then :attr:`default` (:func:`well_behaved`).
    """

    def __init__(self, token: str = CENTRAL_TOKEN, *, https: bool = False, port: int = 0, hostile: Behaviour | None = None):
        self.token = token
        self.hostile = hostile
        self.default: Answer = well_behaved
        self.script: deque = deque()
        self.lock = threading.Lock()
        self.requests: list[Request] = []
        self.receipts: dict[str, int] = {}
        self.reject_contracts: set[str] = set()
        self.connections = 0
        self.request_arrived = threading.Event()
        self.closed = threading.Event()
        self.ca_file: Path | None = None
        self._socks: list[socket.socket] = []
        self._tls: ssl.SSLContext | None = None
        self._tmp: str | None = None
        if https:
            self._tmp = tempfile.mkdtemp(prefix="fake-central-")
            self.ca_file, key = make_self_signed(Path(self._tmp))
            self._tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self._tls.load_cert_chain(self.ca_file, key)
        self._listener = socket.create_server(("127.0.0.1", port))  # SO_REUSEADDR: a reserved port is ours to take
        self.port = self._listener.getsockname()[1]
        self.url = f"{'https' if https else 'http'}://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._accept, name="fake-central", daemon=True)
        self._thread.start()

    def then(self, *scripted) -> FakeCentral:
        """Serve the next requests (hostile mode: connections) with these, in order; then the default again."""
        with self.lock:
            self.script.extend(scripted)
        return self

    @property
    def posts(self) -> list[Request]:
        with self.lock:
            return [r for r in self.requests if r.method == "POST"]

    def _next(self, default):
        with self.lock:
            return self.script.popleft() if self.script else default

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
            behaviour = self._next(self.hostile) if self.hostile is not None else self._answer_each
            threading.Thread(target=self._serve, args=(sock, behaviour), name="fake-central-connection", daemon=True).start()

    def _answer_each(self, conn: Connection) -> None:
        """HTTP/1.1 with keep-alive, as a real central (a Session reuses connections): one answer per request."""
        while (request := conn.read_request()) is not None:
            exchange = Exchange(self, request, conn)
            self._next(self.default)(exchange)
            if not exchange.answered or request.headers.get("connection", "").lower() == "close":
                return

    def _serve(self, sock: socket.socket, behaviour: Behaviour) -> None:
        try:
            if self._tls is not None:
                sock = self._tls.wrap_socket(sock, server_side=True)
            behaviour(Connection(sock, self))
        except (OSError, ValueError):
            pass  # the kiosk gave up and closed, or a cut closed the socket: what most tests want to see
        finally:
            sock.close()

    def close(self) -> None:
        self.closed.set()
        self._thread.join(5)
        self._listener.close()
        with self.lock:
            socks, self._socks = self._socks, []
        for sock in socks:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        if self._tmp:
            shutil.rmtree(self._tmp, ignore_errors=True)

    def __enter__(self) -> FakeCentral:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class FullBacklog(contextlib.AbstractContextManager):
    """A port on 127.0.0.1 where a TCP connect never completes: a listener that never accepts,
    its backlog filled by one connection (Linux then drops further SYNs; a connect waits out its timeout)."""

    def __init__(self):
        self._listener = socket.create_server(("127.0.0.1", 0), backlog=0)
        self.port = self._listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._filler = socket.create_connection(("127.0.0.1", self.port), timeout=5)

    def connecting(self) -> int:
        """How many TCP connects to this port wait unanswered now (sockets in SYN_SENT, /proc/net/tcp)."""
        port = f"{self.port:04X}"
        with open("/proc/net/tcp") as table:
            rows = [line.split() for line in table.readlines()[1:]]
        return sum(1 for row in rows if row[2].endswith(f":{port}") and row[3] == "02")  # 02: SYN_SENT

    def close(self) -> None:
        self._filler.close()
        self._listener.close()

    def __exit__(self, *exc) -> None:
        self.close()
