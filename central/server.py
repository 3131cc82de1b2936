"""The reference central server: the central API of docs/openapi.yaml over HTTP, with SQLite.

For tests, the demo and integrators. It stores identifications under their permanent id (a repeat
is a ``duplicate`` and only counts a receipt), checks bearer tokens and payloads, lists what it
holds, and can inject the faults a kiosk must survive. Run it as ``kiosk central`` or::

    python -m central.server --db /tmp/central.db --token secret --port 0
    central listening on http://127.0.0.1:40123

The one line on stdout (flushed) gives the address, which matters with ``--port 0`` (a free
port). Logs go to stderr. SIGTERM or SIGINT stops it (exit 0). From Python, for tests::

    with start_subprocess(tmp_path, "secret", fail_rate=0.5) as central:
        requests.get(central.url + "/v1/health")
"""

from __future__ import annotations

import argparse
import hmac
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
from urllib.parse import parse_qs, unquote, urlsplit

from central import contract
from central.contract import REJECTED, BadRequest, Item, TooLarge
from central.faults import MALFORMED_KINDS, Faults
from central.process import LISTENING_PREFIX, CentralProcess, start_subprocess
from central.store import Store

__all__ = ["LISTENING_PREFIX", "Central", "CentralProcess", "add_arguments", "main", "serve", "start_subprocess"]

log = logging.getLogger("central")

#: Reason given for identifications refused through ``--reject-contract``.
REFUSED_REASON = "contract-refused: the central does not accept identifications for this contract"


class Central:
    """What the server knows: its store, its tokens, its faults. Shared by all handler threads."""

    def __init__(
        self, store: Store, tokens: list[str], faults: Faults, formats: dict[str, contract.CardFormat] = contract.FORMATS,
        *, admin_tokens: list[str] = (), signing_key=None,
    ):  # fmt: skip
        if not tokens:
            raise ValueError("at least one token is needed")
        self.store = store
        self._tokens = [t.encode() for t in tokens]
        #: Tokens that may record re-issues (``PUT /v1/cards/{contract}``); kiosks' tokens may not.
        self._admin_tokens = [t.encode() for t in admin_tokens]
        #: The Ed25519 private key that signs the replaced-card list (None: the list is not served).
        self.signing_key = signing_key
        self.faults = faults
        #: The card formats accepted, by name (v1 and those given with ``--accept-format``).
        self.formats = dict(formats)

    def authorized(self, header: str | None, admin: bool = False) -> bool:
        scheme, _, token = (header or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return False
        given = token.strip().encode("utf-8", "replace")
        # Compare against every token, always: the time taken says nothing about which one is near.
        matches = [hmac.compare_digest(given, t) for t in (self._admin_tokens if admin else self._tokens)]
        return any(matches)

    def receive(self, batch: contract.Batch) -> list[dict]:
        """Store the valid identifications of a batch (one transaction); the results, in order."""
        items: list[Item] = []
        for item in batch.items:
            if item.record is not None and item.record.contract in self.faults.reject_contracts:
                item = Item(item.sent_id, None, REFUSED_REASON)
            items.append(item)
        valid = [item.record for item in items if item.record is not None]
        statuses = iter(self.store.record(batch.kiosk_id, batch.site, valid))
        results = [contract.result(item, next(statuses) if item.record is not None else REJECTED) for item in items]
        counts = {status: sum(r["status"] == status for r in results) for status in contract.STATUSES}
        log.info(
            "kiosk %s: %d accepted, %d duplicate, %d rejected",
            ascii(batch.kiosk_id)[1:-1][:64],
            counts[contract.ACCEPTED],
            counts[contract.DUPLICATE],
            counts[contract.REJECTED],
        )
        return results


class _Handler(BaseHTTPRequestHandler):
    """HTTP/1.1 with keep-alive: every answer has a Content-Length, every request body is consumed."""

    protocol_version = "HTTP/1.1"
    server_version = "kiosk-central/1"
    # Headers and body go out in two writes; with Nagle on, the second waits for a delayed ACK (40 ms).
    disable_nagle_algorithm = True
    # An idle keep-alive connection is closed after this many seconds (frees its thread).
    timeout = 60
    server: _Server

    def version_string(self) -> str:
        return self.server_version  # not the Python version: nobody outside needs it

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
        try:
            path = urlsplit(self.path).path
            kiosk_id = _kiosk_in(path)
            if kiosk_id is not None:
                path = contract.KIOSK_SEQS_PATH
            card = _card_in(path)
            if card is not None:
                path = contract.CARD_PATH
            routes = {
                (contract.HEALTH_PATH, "GET"): self._health,
                (contract.IDENTIFICATIONS_PATH, "GET"): self._list,
                (contract.IDENTIFICATIONS_PATH, "POST"): self._post,
                (contract.KIOSK_SEQS_PATH, "GET"): lambda: self._seqs(kiosk_id),
                (contract.REPLACED_CARDS_PATH, "GET"): self._replaced,
                (contract.CARD_PATH, "PUT"): lambda: self._reissue(card),
                (contract.REFUSALS_PATH, "GET"): self._refusals,
            }
            allowed = sorted(method for (p, method) in routes if p == path)
            if not allowed:
                self._error(404, "not-found", "no such endpoint; see docs/CENTRAL_API.md")
            elif self.command not in allowed:
                self._error(405, "method-not-allowed", f"use {' or '.join(allowed)}", headers={"Allow": ", ".join(allowed)})
            else:
                routes[(path, self.command)]()
        except (TimeoutError, BrokenPipeError, ConnectionResetError, ConnectionAbortedError):
            # The client went away (often on purpose: it timed out). Nothing to answer.
            log.debug("client %s went away", self.client_address[0])
            self.close_connection = True
        except Exception:
            log.exception("internal error on %s %s", self.command, urlsplit(self.path).path)
            self.close_connection = True
            if not self._answered:
                try:
                    self._error(500, "internal-error", "the central failed; try again later", retry_after=True)
                except OSError:
                    pass

    # --- endpoints -------------------------------------------------------------------------------

    def _health(self) -> None:
        self._json(200, {"status": "ok"})

    def _list(self) -> None:
        if not self._authorize():
            return
        self._json(200, {"identifications": self.server.central.store.identifications()})

    def _refusals(self) -> None:
        if not self._authorize():
            return
        self._json(200, {"refusals": self.server.central.store.identifications(contract.REFUSAL)})

    def _replaced(self) -> None:
        """The replaced-card list since ``?since=N`` (complete for 0, absent, or a version newer than ours), signed."""
        central = self.server.central
        if not self._authorize():
            return
        since_text = parse_qs(urlsplit(self.path).query).get("since", ["0"])[-1]
        if not since_text.isascii() or not since_text.isdigit() or len(since_text) > 18:
            self._error(400, "bad-request", "since must be a list version: a whole number, 0 or more")
            return
        if central.signing_key is None:
            self._error(501, "not-configured", "this central has no signing key (--signing-key): it serves no replaced-card list")
            return
        from datetime import UTC, datetime

        from device.revocations import document

        version, complete, rows = central.store.replaced_since(int(since_text))
        issued_at = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        body = document.encode(version, complete, None if complete else int(since_text), issued_at, rows)
        key_id, signature = document.sign(central.signing_key, body)
        log.info("replaced-card list version %d (%s, %d contracts)", version, "complete" if complete else f"since {since_text}", len(rows))
        self._send(200, body, "application/json", {document.KEY_ID_HEADER: key_id, document.SIGNATURE_HEADER: signature})

    def _reissue(self, card: str) -> None:
        """``PUT /v1/cards/{contract}`` ``{"current_issue": N}`` with an admin token: the card was re-issued."""
        central = self.server.central
        if not central.authorized(self.headers.get("Authorization"), admin=True):
            self._error(
                401,
                "unauthorized",
                "recording a re-issue needs an admin token (--admin-token-file)",
                headers={"WWW-Authenticate": 'Bearer realm="central-admin"'},
            )
            return
        raw = self._read_body()
        if raw is None:
            return
        if not contract.is_card_contract(card):
            self._error(400, "bad-request", "the contract must be 1-32 ASCII digits, not all zeros")
            return
        try:
            body = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            self._error(400, "bad-request", "the body is not JSON (UTF-8)")
            return
        issue = contract._as_int(body.get("current_issue")) if isinstance(body, dict) else None
        if issue is None or not 1 <= issue <= 9999:
            self._error(400, "bad-request", 'the body must be {"current_issue": N}, N from 1 to 9999')
            return
        try:
            version, changed = central.store.reissue(card, issue)
        except ValueError as e:
            self._error(409, "conflict", str(e))
            return
        log.info("card re-issued: contract ...%s now at issue %d (list version %d)", card[-4:], issue, version)
        self._json(200, {"contract": card, "current_issue": issue, "version": version, "changed": changed})

    def _seqs(self, kiosk_id: str) -> None:
        if not self._authorize():
            return
        self._json(200, self.server.central.store.seqs_held(kiosk_id, contract.MAX_GAPS_LISTED))

    def _post(self) -> None:
        central = self.server.central
        faults = central.faults
        if not self._authorize():
            return
        raw = self._read_body()
        if raw is None:
            return
        if faults.roll(faults.fail_rate):
            log.info("fault: 503 (fail-rate)")
            self._error(503, "unavailable", "the central is unavailable; retry later", retry_after=True)
            return
        if faults.roll(faults.reset_rate):
            log.info("fault: connection reset before storing (reset-rate)")
            self._reset_connection()
            return
        if faults.latency_ms:
            time.sleep(faults.latency_ms / 1000)
        try:
            body = json.loads(raw.decode("utf-8"))
            batch = contract.parse_batch(body, central.formats)
        except (UnicodeDecodeError, ValueError, RecursionError):
            self._error(400, "bad-request", "the body is not JSON (UTF-8)")
            return
        except BadRequest as e:
            self._error(400, "bad-request", str(e))
            return
        except TooLarge as e:
            self._error(413, "too-large", str(e))
            return
        results = central.receive(batch)
        # Committed. From here on, whatever happens to the answer, the batch is stored.
        if faults.roll(faults.drop_after_commit_rate):
            log.info("fault: connection dropped after commit (drop-after-commit-rate)")
            self.close_connection = True
            self._answered = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        if faults.roll(faults.malformed_rate):
            self._malformed(faults.pick_malformed(), results)
            return
        self._json(200, {"results": results})

    # --- helpers ---------------------------------------------------------------------------------

    def _authorize(self) -> bool:
        if self.server.central.authorized(self.headers.get("Authorization")):
            return True
        self._error(401, "unauthorized", "missing or unknown bearer token", headers={"WWW-Authenticate": 'Bearer realm="central"'})
        return False

    def _content_length(self) -> int | None:
        """The declared body length; None (and an answer sent) when it is missing or unusable."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            self.close_connection = True  # the chunked body stays unread
            self._error(411, "length-required", "send the body with a Content-Length, not chunked")
            return None
        text = self.headers.get("Content-Length")
        if text is None:
            self._body_read = True  # no header, no body (RFC 9112 6.3)
            self._error(411, "length-required", "a Content-Length header is required")
            return None
        if not text.strip().isdigit():
            self.close_connection = True
            self._error(400, "bad-request", "Content-Length must be a non-negative integer")
            return None
        length = int(text)
        if length > contract.MAX_BODY_BYTES:
            self.close_connection = True  # not worth reading: answer and hang up
            self._error(413, "too-large", f"the body is over {contract.MAX_BODY_BYTES} bytes; split the batch")
            return None
        return length

    def _read_body(self) -> bytes | None:
        length = self._content_length()
        if length is None:
            return None
        raw = self.rfile.read(length)
        self._body_read = True
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
        self._send(200, body, content_type)

    def _json(self, code: int, payload: dict, headers: dict[str, str] | None = None) -> None:
        self._send(code, json.dumps(payload).encode(), "application/json", headers)

    def _error(self, code: int, error: str, message: str, headers: dict[str, str] | None = None, retry_after: bool = False) -> None:
        """The error body every non-200 answer has: ``{"error": code, "message": text}``."""
        headers = dict(headers or {})
        if retry_after:
            headers["Retry-After"] = str(self.server.central.faults.retry_after_s)
        self._json(code, {"error": error, "message": message}, headers)

    def _send(self, code: int, body: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
        self._discard_body()
        self._answered = True
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    # --- the base class's own answers and logs, made JSON and routed to logging --------------------

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Errors the base class detects itself (bad request line, headers too long, ...), as JSON.

        The base class's ``message`` can quote the request line: only the generic text goes out.
        """
        log.info("%s: %d %s", self.client_address[0], code, ascii(message or "")[1:-1][:120])
        self.close_connection = True
        self._body_read = True  # the request was not understood: do not try to read a body
        self._answered = True
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


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # an idle keep-alive connection must not hold up the exit
    request_queue_size = 128
    central: Central


def serve(host: str, port: int, central: Central) -> _Server:
    """A bound, not yet serving, HTTP server for ``central`` (``port`` 0: a free port)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    server_class = type("_Server", (_Server,), {"address_family": family})
    server = server_class((host, port), _Handler)
    server.central = central
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


def add_arguments(parser: argparse.ArgumentParser, *, db_required: bool = True) -> None:
    """The server's options, for ``kiosk central`` and ``python -m central.server`` alike.

    ``db_required=False`` where a subcommand (``kiosk central keygen``) needs no database: then
    :func:`main` asks for it."""
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1; 0.0.0.0 for all)")
    parser.add_argument("--port", type=_non_negative_int, default=8080, help="port (default 8080; 0 picks a free one)")
    parser.add_argument("--db", metavar="PATH", required=db_required, help="SQLite file holding the identifications (created if missing)")
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
        "--admin-token-file", metavar="PATH", help="file with one admin token per line: may record re-issues (PUT /v1/cards/{contract})"
    )
    faults = parser.add_argument_group("fault injection (for tests; all off by default)")
    faults.add_argument(
        "--fail-rate", type=_rate, default=0.0, metavar="F", help="answer this share of batches 503 with Retry-After, storing nothing"
    )
    faults.add_argument(
        "--retry-after",
        dest="retry_after_s",
        type=_non_negative_int,
        default=1,
        metavar="S",
        help="seconds sent in Retry-After with 503 and 500 (default 1)",
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


def _kiosk_in(path: str) -> str | None:
    """The kiosk id in a ``/v1/kiosks/{kiosk}/seqs`` path (percent-decoded), else None.

    >>> _kiosk_in("/v1/kiosks/riga%2F5/seqs"), _kiosk_in("/v1/identifications")
    ('riga/5', None)
    """
    head, _, tail = contract.KIOSK_SEQS_PATH.partition("{kiosk}")
    if not (path.startswith(head) and path.endswith(tail)) or len(path) <= len(head) + len(tail):
        return None
    encoded = path[len(head) : len(path) - len(tail)]
    return None if "/" in encoded else unquote(encoded)


def _card_in(path: str) -> str | None:
    """The contract in a ``/v1/cards/{contract}`` path (not ``/v1/cards/replaced``), else None.

    >>> _card_in("/v1/cards/0012345678"), _card_in("/v1/cards/replaced")
    ('0012345678', None)
    """
    head = contract.CARD_PATH.partition("{contract}")[0]
    if not path.startswith(head) or path == contract.REPLACED_CARDS_PATH:
        return None
    rest = unquote(path[len(head) :])
    return rest if rest and "/" not in rest else None


def main(args: argparse.Namespace) -> int:
    """Run the server until SIGTERM or SIGINT; 0 on a clean stop, 1 if it cannot start, 2 usage."""
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    if not args.db:
        print("central: give --db PATH (the SQLite file holding the identifications)", file=sys.stderr)
        return 2
    try:
        tokens = _read_tokens(args)
    except OSError as e:
        print(f"central: cannot read --token-file: {e.strerror or e}", file=sys.stderr)
        return 1
    if not tokens:
        print("central: give at least one --token or a --token-file", file=sys.stderr)
        return 2
    faults = Faults.from_args(args)
    try:
        admin_tokens = _read_token_file(args.admin_token_file) if args.admin_token_file else []
    except OSError as e:
        print(f"central: cannot read --admin-token-file: {e.strerror or e}", file=sys.stderr)
        return 1
    signing_key = None
    if args.signing_key:
        from device.revocations.document import load_private_key

        try:
            signing_key = load_private_key(args.signing_key)
        except (OSError, ValueError) as e:
            print(f"central: cannot use --signing-key: {getattr(e, 'strerror', None) or e}", file=sys.stderr)
            return 1
    try:
        store = Store(args.db)
    except (OSError, sqlite3.Error, RuntimeError) as e:
        print(f"central: cannot open the database {args.db}: {e}", file=sys.stderr)
        return 1
    try:
        formats = {**contract.FORMATS, **{f.name: f for f in args.accept_format}}
        server = serve(args.host, args.port, Central(store, tokens, faults, formats, admin_tokens=admin_tokens, signing_key=signing_key))
    except OSError as e:
        store.close()
        print(f"central: cannot listen on {args.host}:{args.port}: {e.strerror or e}", file=sys.stderr)
        return 1

    stop = threading.Event()
    previous = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous[sig] = signal.signal(sig, lambda signum, frame: stop.set())
    worker = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="central-http", daemon=True)
    worker.start()
    log.info("database %s, %d token(s), faults: %s", args.db, len(tokens), faults.describe())
    print(LISTENING_PREFIX + url_of(server), flush=True)
    try:
        stop.wait()
    finally:
        server.shutdown()
        server.server_close()
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
