"""The central server: the central API of docs/openapi.yaml over HTTP, two ways.

Without ``--workers``: the reference server (a thread per connection, at most ``--max-connections``,
one process), for tests, the demo and integrators; it can inject the faults a kiosk must survive.
With ``--workers N``: the production server (:mod:`central.workers`: uvicorn with N processes
sharing the socket, the same :class:`central.api.Api`); fault options are refused there. Run it as
``kiosk central`` or::

    python -m central.server --db /tmp/central.db --token secret --port 0
    central listening on http://127.0.0.1:40123

The one line on stdout (flushed) gives the address, which matters with ``--port 0`` (a free
port). Logs go to stderr. SIGTERM or SIGINT stops it (exit 0). From Python, for tests::

    with start_subprocess(tmp_path, "secret", fail_rate=0.5) as central:
        requests.get(central.url + "/v1/health")
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import socket
import sqlite3
import struct
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

from central import contract
from central.api import REFUSED_REASON, Api, ApiSettings, RequestHead, Response, error
from central.connections import DEFAULT_BODY_TIMEOUT_S, DEFAULT_HEADER_TIMEOUT_S, DEFAULT_MAX_CONNECTIONS, BurstLog, ReadDeadlines
from central.faults import MALFORMED_KINDS, Faults
from central.process import LISTENING_PREFIX, CentralProcess, start_subprocess
from central.storage import Store, StoreError, open_store
from device.outputs.bounded_http import BoundedHTTPServer

__all__ = ["LISTENING_PREFIX", "REFUSED_REASON", "CentralProcess", "add_arguments", "main", "open_database", "serve", "start_subprocess"]

log = logging.getLogger("central")

#: The fault options (destinations) that need the reference server, with their "off" values.
FAULT_DEFAULTS = {
    "fail_rate": 0.0,
    "reset_rate": 0.0,
    "latency_ms": 0,
    "drop_after_commit_rate": 0.0,
    "malformed_rate": 0.0,
    "malformed_kind": "any",
    "reject_contracts": [],
    "seed": None,
}


def open_database(url: str) -> Store:
    """The store a ``--db`` value names (every server process opens its own)."""
    return open_store(url)


class _Handler(BaseHTTPRequestHandler):
    """HTTP/1.1 with keep-alive: every answer has a Content-Length, every request body is consumed.

    The API's semantics are :class:`central.api.Api`'s; this class is the transport: the body's
    length rules, the header deadline, and the faults that need the socket."""

    protocol_version = "HTTP/1.1"
    server_version = "kiosk-central/1"
    # Headers and body go out in two writes; with Nagle on, the second waits for a delayed ACK (40 ms).
    disable_nagle_algorithm = True
    # A body that stops arriving for this many seconds ends the connection (the headers have their deadline).
    timeout = 60
    server: _Server

    def version_string(self) -> str:
        return self.server_version  # not the Python version: nobody outside needs it

    # --- the header deadline -----------------------------------------------------------------------

    def handle_one_request(self) -> None:
        self.server.deadlines.waiting(self.connection)
        try:
            super().handle_one_request()
        except OSError:  # the deadline shut the socket, or the client went away mid-request
            self.close_connection = True
        finally:
            self.server.deadlines.done(self.connection)

    def parse_request(self) -> bool:
        parsed = super().parse_request()
        if self.server.deadlines.done(self.connection):
            self.close_connection = True  # too slow: whatever arrived is not a whole request
            return False
        return parsed

    # --- routing ---------------------------------------------------------------------------------

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def __getattr__(self, name: str):
        # Every other method (HEAD, PUT, TRACE, QUERY, ...) is routed too: a JSON 405 or 404, where
        # the base class would answer 501.
        if name.startswith("do_"):
            return self._dispatch
        raise AttributeError(name)

    def _dispatch(self) -> None:
        self._body_read = False
        self._answered = False
        api = self.server.api
        try:
            target = urlsplit(self.path)
            head = RequestHead(self.command, target.path, target.query, {k.lower(): v for k, v in self.headers.items()})
            route = api.route(head)
            if isinstance(route, Response):
                self._send(route)
                return
            body = b""
            if route.reads_body:
                raw = self._read_body()
                if raw is None:
                    return
                body = raw
            if route.endpoint == "post_batch" and self._fault_before_storing():
                return
            response = api.handle(route, body)
            if response.results is not None and self._fault_after_commit(response.results):
                return
            self._send(response)
        except (TimeoutError, BrokenPipeError, ConnectionResetError, ConnectionAbortedError):
            # The client went away (often on purpose: it timed out). Nothing to answer.
            log.debug("client %s went away", self.client_address[0])
            self.close_connection = True
        except Exception:
            log.exception("internal error on %s %s", self.command, urlsplit(self.path).path)
            self.close_connection = True
            if not self._answered:
                try:
                    self._send(api.internal_error())
                except OSError:
                    pass

    # --- faults (the reference server only: they need the socket) --------------------------------

    def _fault_before_storing(self) -> bool:
        """fail-rate, reset-rate and latency, in that order; True if the request ends here."""
        faults = self.server.faults
        if faults.roll(faults.fail_rate):
            log.info("fault: 503 (fail-rate)")
            self._send(error(503, "unavailable", "the central is unavailable; retry later", {"Retry-After": str(faults.retry_after_s)}))
            return True
        if faults.roll(faults.reset_rate):
            log.info("fault: connection reset before storing (reset-rate)")
            self._reset_connection()
            return True
        if faults.latency_ms:
            time.sleep(faults.latency_ms / 1000)
        return False

    def _fault_after_commit(self, results: list[dict]) -> bool:
        """The batch is stored: drop the answer, or send a malformed one. True if the request ends here."""
        faults = self.server.faults
        if faults.roll(faults.drop_after_commit_rate):
            log.info("fault: connection dropped after commit (drop-after-commit-rate)")
            self.close_connection = True
            self._answered = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return True
        if faults.roll(faults.malformed_rate):
            self._malformed(faults.pick_malformed(), results)
            return True
        return False

    def _reset_connection(self) -> None:
        """Abort with a TCP RST: SO_LINGER 0, then close every reference to the socket."""
        self._answered = True
        self.close_connection = True
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        # The file objects hold references; the descriptor (and so the RST) goes only with the last.
        self.rfile.close()
        self.wfile.close()
        self.connection.close()

    def _malformed(self, kind: str, results: list[dict]) -> None:
        log.info("fault: malformed answer %s after commit (malformed-rate)", kind)
        content_type, body = MALFORMED_KINDS[kind]
        if kind == "missing-result":
            body = json.dumps({"results": results[:-1]}).encode()
        elif kind == "unknown-status":
            body = json.dumps({"results": [dict(r, status="maybe") for r in results]}).encode()
        self._send(Response(200, body, content_type))

    # --- the body --------------------------------------------------------------------------------

    def _content_length(self) -> int | None:
        """The declared body length; None (and an answer sent) when it is missing or unusable."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            self.close_connection = True  # the chunked body stays unread
            self._send(error(411, "length-required", "send the body with a Content-Length, not chunked"))
            return None
        text = self.headers.get("Content-Length")
        if text is None:
            self._body_read = True  # no header, no body (RFC 9112 6.3)
            self._send(error(411, "length-required", "a Content-Length header is required"))
            return None
        if not text.strip().isdigit():
            self.close_connection = True
            self._send(error(400, "bad-request", "Content-Length must be a non-negative integer"))
            return None
        length = int(text)
        if length > contract.MAX_BODY_BYTES:
            self.close_connection = True  # not worth reading: answer and hang up
            self._send(error(413, "too-large", f"the body is over {contract.MAX_BODY_BYTES} bytes; split the batch"))
            return None
        return length

    def _read_body(self) -> bytes | None:
        length = self._content_length()
        if length is None:
            return None
        self.server.body_deadlines.waiting(self.connection)
        try:
            raw = self.rfile.read(length)
        finally:
            cut = self.server.body_deadlines.done(self.connection)
        self._body_read = True
        if cut:  # the whole body was not in by the deadline: its reading side is shut, answer and hang up
            self.close_connection = True
            body_timeout_s = self.server.body_deadlines.timeout_s
            self._send(error(408, "request-timeout", f"the body did not arrive within {body_timeout_s:g} s", close=True))
            return None
        if len(raw) < length:
            self.close_connection = True  # the client hung up mid-body
            return None
        return raw

    def _discard_body(self) -> None:
        """Consume an unread request body so the next request on the connection starts clean."""
        if self._body_read:
            return
        self._body_read = True
        text = self.headers.get("Content-Length", "0") if self.headers else "0"
        if "chunked" in (self.headers.get("Transfer-Encoding", "") if self.headers else "").lower():
            self.close_connection = True
            return
        if not text.strip().isdigit() or int(text) > contract.MAX_BODY_BYTES:
            self.close_connection = True
            return
        if int(text):
            self.rfile.read(int(text))

    def _send(self, response: Response) -> None:
        if response.close:
            self.close_connection = True
        self._discard_body()
        self._answered = True
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.body)))
        self.send_header("Cache-Control", "no-store")
        for name, value in response.headers.items():
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(response.body)

    # --- the base class's own answers and logs, made JSON and routed to logging --------------------

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Errors the base class detects itself (bad request line, headers too long, ...), as JSON.

        The base class's ``message`` can quote the request line: only the generic text goes out.
        """
        self.close_connection = True
        self._body_read = True  # the request was not understood: do not try to read a body
        self._answered = True
        if self.server.deadlines.passed(self.connection):
            return  # shut by the header deadline: counted there, nothing to send
        log.info("%s: %d %s", self.client_address[0], code, ascii(message or "")[1:-1][:120])
        if getattr(self, "request_version", "HTTP/0.9") == "HTTP/0.9":
            self.request_version = "HTTP/1.0"  # HTTP/0.9 answers have no status line or headers
        short, long = self.responses.get(code, ("Error", "The request was not understood"))
        body = json.dumps({"error": "bad-request" if code < 500 else "internal-error", "message": f"{short}: {long}"}).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def log_message(self, format: str, *args) -> None:
        log.debug("%s %s", self.client_address[0], format % args)

    def log_error(self, format: str, *args) -> None:
        log.info("%s %s", self.client_address[0], format % args)


class _Server(BoundedHTTPServer):
    """A thread per connection, at most ``max_connections`` at once, each with a header deadline."""

    request_queue_size = 1024  # a reconnect storm's SYNs wait in the backlog rather than being dropped
    api: Api
    faults: Faults
    deadlines: ReadDeadlines
    body_deadlines: ReadDeadlines
    refused: BurstLog

    def process_request(self, request, client_address) -> None:
        # BoundedHTTPServer's slots, with one log line per burst of refusals (not one per connection).
        if not self.slots.acquire(blocking=False):
            self.refused.note()
            self.shutdown_request(request)
            return
        try:
            ThreadingHTTPServer.process_request(self, request, client_address)  # its thread releases the slot
        except BaseException:
            self.slots.release()
            raise


def serve(
    host: str, port: int, api: Api, faults: Faults, *, max_connections: int, header_timeout_s: float,
    body_timeout_s: float = DEFAULT_BODY_TIMEOUT_S,
) -> _Server:  # fmt: skip
    """A bound, not yet serving, HTTP server for ``api`` (``port`` 0: a free port)."""
    server = _Server((host, port), _Handler, max_connections=max_connections, name="central")
    server.api = api
    server.faults = faults
    server.refused = BurstLog(log, f"connections refused: {max_connections} open already (--max-connections)")
    server.deadlines = ReadDeadlines(
        header_timeout_s, log, f"connections closed: request line and headers not complete within {header_timeout_s:g} s"
    )
    server.body_deadlines = ReadDeadlines(
        body_timeout_s, log, f"request bodies cut: not complete within {body_timeout_s:g} s", how=socket.SHUT_RD
    )
    server.deadlines.on_tick.append(server.refused.flush)
    return server


def url_of(server: _Server) -> str:
    host, port = server.server_address[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


# --- command line ------------------------------------------------------------------------------


def _rate(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number from 0 to 1, got {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a number from 0 to 1, got {text!r}")
    return value


def _card_format(text: str) -> contract.CardFormat:
    try:
        return contract.CardFormat.parse(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected 0 or more, got {text!r}")
    return value


def _positive_int(text: str) -> int:
    value = _non_negative_int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected 1 or more, got {text!r}")
    return value


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value >= 0.0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number, 0 or more, got {text!r}")
    return value


def _positive_float(text: str) -> float:
    value = _non_negative_float(text)
    if value <= 0.0:
        raise argparse.ArgumentTypeError(f"expected a number above 0, got {text!r}")
    return value


#: A kiosk's forwarder sends a batch, waits for the answer, sends the next: a few requests a second
#: while draining a backlog, a heartbeat and a list sync now and then otherwise.
DEFAULT_KIOSK_RATE = 20.0
DEFAULT_KIOSK_BURST = 40


def add_arguments(parser: argparse.ArgumentParser, *, db_required: bool = True) -> None:
    """The server's options, for ``kiosk central`` and ``python -m central.server`` alike.

    ``db_required=False`` where a subcommand (``kiosk central keygen``) needs no database: then
    :func:`main` asks for it."""
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1; 0.0.0.0 for all)")
    parser.add_argument("--port", type=_non_negative_int, default=8080, help="port (default 8080; 0 picks a free one)")
    parser.add_argument(
        "--db",
        metavar="URL",
        required=db_required,
        help="where identifications are kept: sqlite:PATH or a file path (created if missing), or postgresql://...",
    )
    parser.add_argument(
        "--token",
        action="append",
        default=[],
        metavar="T",
        help="a bearer token kiosks may use (repeatable; for hand use: a command line shows in `ps`)",
    )
    parser.add_argument("--token-file", metavar="PATH", help="file with one bearer token per line (keeps tokens out of `ps`)")
    parser.add_argument(
        "--accept-format",
        action="append",
        default=[],
        type=_card_format,
        metavar="NAME:DIGITS:MAX_ISSUE",
        help="accept identifications of this card format too (repeatable; v1 always): e.g. xu:8:9 "
        "for 8-digit contracts with issues 1-9; MAX_ISSUE 0 for a format without a card issue",
    )
    parser.add_argument(
        "--signing-key",
        metavar="PATH",
        help="Ed25519 private key (PEM) that signs the replaced-card list (kiosk central keygen); without it the list is not served",
    )
    parser.add_argument(
        "--admin-token-file",
        action="append",
        default=[],
        metavar="PATH",
        help="file with one admin token per line (repeatable): may list every client's records, the fleet and the "
        "conflicts, and record re-issues (PUT /v1/cards/{contract})",
    )
    parser.add_argument(
        "--retry-after",
        dest="retry_after_s",
        type=_non_negative_int,
        default=1,
        metavar="S",
        help="seconds sent in Retry-After with 503 (database saturated, or the fail-rate fault) and 500 (default 1)",
    )
    parser.add_argument(
        "--retry-after-spread",
        dest="retry_after_spread_s",
        type=_non_negative_int,
        default=10,
        metavar="S",
        help="a 503 for a saturated database adds a random 0 to S seconds to --retry-after, so the kiosks of a "
        "storm turned away together come back spread out (default 10)",
    )
    limits = parser.add_argument_group("processes and limits")
    limits.add_argument(
        "--workers",
        type=_positive_int,
        default=None,
        metavar="N",
        help="serve with uvicorn in N worker processes sharing the socket (production); without it: the "
        "single-process reference server, which can inject faults",
    )
    limits.add_argument(
        "--max-connections",
        type=_positive_int,
        default=DEFAULT_MAX_CONNECTIONS,
        metavar="N",
        help=f"connections served at once, per process; more are closed at once (default {DEFAULT_MAX_CONNECTIONS})",
    )
    limits.add_argument(
        "--header-timeout-s",
        type=_positive_float,
        default=DEFAULT_HEADER_TIMEOUT_S,
        metavar="S",
        help=f"seconds from accept (or the previous answer) to the end of a request's headers; a slower client "
        f"is cut off (default {DEFAULT_HEADER_TIMEOUT_S:g})",
    )
    limits.add_argument(
        "--body-timeout-s",
        type=_positive_float,
        default=DEFAULT_BODY_TIMEOUT_S,
        metavar="S",
        help=f"seconds a request body may take to arrive in full; a slower one is 408 and the connection closed "
        f"(default {DEFAULT_BODY_TIMEOUT_S:g})",
    )
    limits.add_argument(
        "--kiosk-rate",
        type=_non_negative_float,
        default=DEFAULT_KIOSK_RATE,
        metavar="R",
        help=f"requests per second per kiosk id, per process (0: no limit; default {DEFAULT_KIOSK_RATE:g}), for requests "
        "with a kiosk's own token; more is 429 with Retry-After; with N workers a kiosk may get up to N times R",
    )
    limits.add_argument(
        "--kiosk-burst",
        type=_positive_int,
        default=DEFAULT_KIOSK_BURST,
        metavar="B",
        help=f"requests a kiosk may send at once before --kiosk-rate applies (default {DEFAULT_KIOSK_BURST})",
    )
    faults = parser.add_argument_group("fault injection (reference server only, for tests; all off by default)")
    faults.add_argument(
        "--fail-rate", type=_rate, default=0.0, metavar="F", help="answer this share of batches 503 with Retry-After, storing nothing"
    )
    faults.add_argument(
        "--reset-rate",
        type=_rate,
        default=0.0,
        metavar="F",
        help="reset the connection (TCP RST) on this share of batches, storing nothing",
    )
    faults.add_argument(
        "--latency-ms",
        type=_non_negative_int,
        default=0,
        metavar="N",
        help="wait N ms after reading each batch, before storing and answering",
    )
    faults.add_argument(
        "--drop-after-commit-rate",
        type=_rate,
        default=0.0,
        metavar="F",
        help="store this share of batches, then close the connection without an answer",
    )
    faults.add_argument(
        "--malformed-rate", type=_rate, default=0.0, metavar="F", help="store this share of batches, then answer 200 with a malformed body"
    )
    faults.add_argument(
        "--malformed-kind", choices=["any", *sorted(MALFORMED_KINDS)], default="any", help="which malformed body (default: any, at random)"
    )
    faults.add_argument(
        "--reject-contract",
        dest="reject_contracts",
        action="append",
        default=[],
        metavar="C",
        help="reject identifications with this contract (repeatable)",
    )
    faults.add_argument("--seed", type=int, default=None, help="seed of the fault random generator (repeatable runs)")


def _read_tokens(args: argparse.Namespace) -> list[str]:
    tokens = [t for t in args.token if t]
    if args.token_file:
        tokens += _read_token_file(args.token_file)
    return tokens


def _read_token_file(path: str) -> list[str]:
    """One token per line; blank lines and ``#`` comments skipped."""
    text = Path(path).read_text(encoding="utf-8")
    return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def main(args: argparse.Namespace) -> int:
    """Run the server until SIGTERM or SIGINT; 0 on a clean stop, 1 if it cannot start, 2 usage."""
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    if not args.db:
        print("central: give --db URL (sqlite:PATH, a file path, or postgresql://...)", file=sys.stderr)
        return 2
    faults_given = sorted(name for name, off in FAULT_DEFAULTS.items() if getattr(args, name) != off)
    if args.workers is not None and faults_given:
        names = ", ".join("--reject-contract" if name == "reject_contracts" else "--" + name.replace("_", "-") for name in faults_given)
        print(f"central: fault injection ({names}) needs the reference server: drop --workers, or the fault options", file=sys.stderr)
        return 2
    try:
        tokens = _read_tokens(args)
    except OSError as e:
        print(f"central: cannot read --token-file: {e.strerror or e}", file=sys.stderr)
        return 1
    try:
        admin_tokens = [t for path in args.admin_token_file for t in _read_token_file(path)]
    except OSError as e:
        print(f"central: cannot read --admin-token-file: {e.strerror or e}", file=sys.stderr)
        return 1
    if not tokens and not admin_tokens:
        print("central: give at least one --token or a --token-file (or an --admin-token-file and kiosks' own tokens)", file=sys.stderr)
        return 2
    settings = ApiSettings(
        db=args.db,
        shared_tokens=tuple(tokens),
        admin_tokens=tuple(admin_tokens),
        formats=tuple(args.accept_format),
        signing_key_path=args.signing_key,
        kiosk_rate_per_s=args.kiosk_rate,
        kiosk_burst=args.kiosk_burst,
        retry_after_s=args.retry_after_s,
        retry_after_spread_s=args.retry_after_spread_s,
        body_timeout_s=args.body_timeout_s,
        reject_contracts=frozenset(args.reject_contracts),
    )
    try:
        # Opened here for the reference server, and for the production one too: its schema is
        # migrated once, by this process, before any worker starts.
        store = open_database(args.db)
    except (OSError, sqlite3.Error, RuntimeError, StoreError) as e:
        print(f"central: cannot open the database {args.db}: {e}", file=sys.stderr)
        return 1
    try:
        api = settings.build(store)
    except (OSError, ValueError) as e:
        store.close()
        print(f"central: cannot use --signing-key: {getattr(e, 'strerror', None) or e}", file=sys.stderr)
        return 1
    if args.workers is not None:
        store.close()
        from central import workers

        return workers.run(
            settings,
            args.host,
            args.port,
            processes=args.workers,
            max_connections=args.max_connections,
            header_timeout_s=args.header_timeout_s,
        )
    faults = Faults.from_args(args)
    try:
        server = serve(
            args.host, args.port, api, faults,
            max_connections=args.max_connections, header_timeout_s=args.header_timeout_s, body_timeout_s=args.body_timeout_s,
        )  # fmt: skip
    except OSError as e:
        store.close()
        print(f"central: cannot listen on {args.host}:{args.port}: {e.strerror or e}", file=sys.stderr)
        return 1

    stop = threading.Event()
    previous = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous[sig] = signal.signal(sig, lambda signum, frame: stop.set())
    server.deadlines.start()
    server.body_deadlines.start()
    worker = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="central-http", daemon=True)
    worker.start()
    log.info(
        "reference server: database %s, %d shared token(s), %d admin token(s), at most %d connections, headers within %g s, faults: %s",
        args.db,
        len(tokens),
        len(admin_tokens),
        args.max_connections,
        args.header_timeout_s,
        faults.describe(),
    )
    print(LISTENING_PREFIX + url_of(server), flush=True)
    try:
        stop.wait()
    finally:
        server.shutdown()
        server.server_close()
        server.deadlines.stop()
        server.body_deadlines.stop()
        store.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        log.info("stopped")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m central.server",
        description="Reference central server: receives identifications from kiosks (see docs/CENTRAL_API.md).",
    )
    add_arguments(parser)
    return parser


if __name__ == "__main__":
    sys.exit(main(build_parser().parse_args()))
