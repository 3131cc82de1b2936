"""A scripted fake central on 127.0.0.1 for forwarder tests: real HTTP over real sockets.

The reference central (``central/``) behaves well, with random faults; these tests need exact
misbehaviour at an exact moment. :class:`StubCentral` answers like a central (token check,
``accepted``/``duplicate``/``rejected`` per record, each id counted in :attr:`StubCentral.receipts`)
unless the next scripted behaviour says otherwise::

    with StubCentral(token="T") as stub:
        stub.then(unavailable(retry_after="30"), hang())   # the next two requests misbehave
        ...                                                 # then it answers normally again
        assert stub.receipts == {ident.id: 1}

A behaviour is a function ``(exchange) -> None`` that answers (or does not) the request held in
the :class:`Exchange`. ``https=True`` serves TLS with a fresh self-signed certificate for
127.0.0.1 (made with the ``openssl`` command; :attr:`StubCentral.ca_file` is the CA bundle).
``port`` reuses a port (an outage, then the central back at the same address).
"""

from __future__ import annotations

import json
import shutil
import socket
import ssl
import struct
import subprocess
import tempfile
import threading
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable


@dataclass
class Request:
    """One request as the stub received it."""

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


@dataclass
class Exchange:
    """A request being answered: the stub, the request, and the ways to answer it."""

    stub: "StubCentral"
    request: Request
    handler: BaseHTTPRequestHandler
    answered: bool = field(default=False)

    def send(self, status: int, body: bytes | str | dict = b"", headers: dict | None = None) -> None:
        if isinstance(body, dict):
            body = json.dumps(body)
        if isinstance(body, str):
            body = body.encode()
        h = self.handler
        h.send_response(status)
        has_type = any(k.lower() == "content-type" for k in (headers or {}))
        if not has_type:
            h.send_header("Content-Type", "application/json")
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)
        h.wfile.flush()
        self.answered = True

    def cut(self, reset: bool = False) -> None:
        """Close the connection without an answer (``reset``: with a TCP RST instead of a FIN)."""
        conn = self.handler.connection
        if reset:
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.handler.close_connection = True
        if not reset:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        conn.close()
        self.answered = True


Behaviour = Callable[[Exchange], None]


# --- behaviours -------------------------------------------------------------------------------


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


def central(ex: Exchange) -> None:
    """A well-behaved central: checks the token, stores, answers one result per record."""
    if ex.request.headers.get("authorization") != f"Bearer {ex.stub.token}":
        ex.send(401, {"error": "unknown or missing bearer token"})
        return
    data = ex.request.json
    if not isinstance(data, dict) or not isinstance(data.get("identifications"), list):
        ex.send(400, {"error": "the body must be a JSON object with 'kiosk' and 'identifications'"})
        return
    ex.send(200, {"results": results_for(ex)})


def answer(status: int, body: bytes | str | dict = b"", headers: dict | None = None) -> Behaviour:
    """Answer with exactly this; store nothing."""
    return lambda ex: ex.send(status, body, headers)


def unavailable(retry_after: str | None = "1") -> Behaviour:
    """503 with ``Retry-After`` (seconds or an HTTP date), storing nothing."""
    return answer(503, {"error": "overloaded"}, {"Retry-After": retry_after} if retry_after is not None else None)


def html_error(status: int = 502) -> Behaviour:
    """An HTML error page, as a reverse proxy sends when the backend is down."""
    page = "<html><head><title>502 Bad Gateway</title></head><body><h1>Bad Gateway</h1></body></html>"
    return answer(status, page, {"Content-Type": "text/html"})


def hang() -> Behaviour:
    """Never answer (until the stub closes): longer than any read timeout."""
    return lambda ex: ex.stub.closed.wait(60)


def reset() -> Behaviour:
    """Cut the connection with a TCP reset before answering; store nothing."""
    return lambda ex: ex.cut(reset=True)


def commit_then_drop() -> Behaviour:
    """Store the records, then close the connection without answering (the answer is lost)."""

    def behave(ex: Exchange) -> None:
        results_for(ex)
        ex.cut()

    return behave


def without_result_for_last() -> Behaviour:
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


def with_unknown_id() -> Behaviour:
    """A 200 with every result plus one for an id the kiosk never sent; stores nothing."""

    def behave(ex: Exchange) -> None:
        results = results_for(ex, commit=False)
        results.append({"id": "00000000-0000-4000-8000-000000000000", "status": "accepted", "reason": None})
        ex.send(200, {"results": results})

    return behave


def unprocessable_if_contract(contract: str) -> Behaviour:
    """422 for the whole batch when any record has ``contract`` (else behave as a central)."""

    def behave(ex: Exchange) -> None:
        if any(r.get("contract") == contract for r in ex.request.json["identifications"]):
            ex.send(422, {"error": "invalid-contract: the contract is not in the register"})
        else:
            central(ex)

    return behave


# --- the server -------------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as a real central: the Session reuses connections
    server: "_Server"

    def log_message(self, format, *args) -> None:  # quiet: pytest shows failures, not traffic
        pass

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        request = Request(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body)
        stub = self.server.stub
        with stub.lock:
            stub.requests.append(request)
            behaviour = stub.script.popleft() if stub.script else stub.default
        ex = Exchange(stub, request, self)
        try:
            behaviour(ex)
        except (ConnectionError, OSError):
            self.close_connection = True
            return
        if not ex.answered:
            self.close_connection = True

    do_POST = do_GET = _serve

    def finish(self) -> None:
        try:
            super().finish()
        except OSError:
            pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    stub: "StubCentral"

    def handle_error(self, request, client_address) -> None:  # a cut connection is the point, not an error
        pass


def free_port() -> int:
    """A port nobody listens on (bound, then released): a central that is down, until one starts there."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate and key for 127.0.0.1 (``openssl`` command), valid for a day."""
    cert, key = folder / "central-cert.pem", folder / "central-key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
         "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


class StubCentral:
    """A fake central on 127.0.0.1; see the module docstring. A context manager."""

    def __init__(self, token: str = "test-token", https: bool = False, port: int = 0):
        self.token = token
        self.lock = threading.Lock()
        self.requests: list[Request] = []
        self.receipts: dict[str, int] = {}
        self.reject_contracts: set[str] = set()
        self.script: deque[Behaviour] = deque()
        self.default: Behaviour = central
        self.closed = threading.Event()
        self.ca_file: Path | None = None
        self._tmp: str | None = None
        self._server = _Server(("127.0.0.1", port), _Handler)
        self._server.stub = self
        scheme = "http"
        if https:
            self._tmp = tempfile.mkdtemp(prefix="stub-central-")
            cert, key = make_self_signed(Path(self._tmp))
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(cert, key)
            self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
            self.ca_file = cert
            scheme = "https"
        self.url = f"{scheme}://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    def then(self, *behaviours: Behaviour) -> "StubCentral":
        """Use these behaviours for the next requests, in order; then :attr:`default` again."""
        with self.lock:
            self.script.extend(behaviours)
        return self

    @property
    def posts(self) -> list[Request]:
        with self.lock:
            return [r for r in self.requests if r.method == "POST"]

    def close(self) -> None:
        self.closed.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)
        if self._tmp:
            shutil.rmtree(self._tmp, ignore_errors=True)

    def __enter__(self) -> "StubCentral":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
