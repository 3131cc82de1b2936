"""Handing a line to POS software that asks for it: a long poll, as UnifiedPOS and Target's POSSUM do.

The POS software on the counter PC claims the kiosk with ``GET /v1/scan?timeout_s=N`` and waits:
the next identification answers it, ``200 {"line": "..."}`` (``line`` is ``pos.template`` filled in,
as the keyboard would type it). It then asks again. One poll waits at a time (the POS that claims
the kiosk): a second one is answered ``409`` at once. ``DELETE /v1/scan`` cancels the waiting poll,
which answers ``204``, as does a poll whose ``timeout_s`` (default 30, at most
:data:`MAX_POLL_S`) runs out. Every request carries ``Authorization: Bearer <token>``, the token
in ``pos.http_token_file`` (re-read at each request, so a new token needs no restart); without it
or with another: ``401``. The API: docs/pos-openapi.yaml::

    link = HttpPollLink(("127.0.0.1", 8089), token_file="/etc/kiosk/pos-token")
    link.hand_over("0012345678\\n")   # the waiting poll answers 200 {"line": "0012345678\\n"}
    link.close()

:meth:`HttpPollLink.hand_over` waits at most ``wait_s`` (:data:`HAND_OVER_WAIT_S`) for a poll:
long enough for POS software that polls again right after an answer, short enough that the POS
output's next identification is not kept waiting (an identification left over for a later poll
would be a stale one: ``pos.max_age_s`` is the POS output's rule, not this link's). No poll within
``wait_s`` is :class:`~device.outputs.pos.link.PosOffline`, "POS offline" in the outbox; nothing is
queued. "Handed over" means the answer was written whole to the poll's connection; a poll whose
client hung up while waiting is dropped (its socket is watched), so the line goes to the next one.

The server: its own threads (one per connection, at most :data:`MAX_CONNECTIONS`, the rest closed
at once), one request per connection, and :data:`HEADER_DEADLINE_S` for the request line and
headers together (a client that trickles bytes is cut off). Plain HTTP: loopback by default; another
address only with ``pos.http_allow_insecure`` (the config checks it). TLS is not built yet.
"""

from __future__ import annotations

import hmac
import http.server
import json
import logging
import select
import socket
import threading
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from device.outputs.bounded_http import BoundedHTTPServer, bound_address, serve_in_thread, url_of
from device.outputs.pos.link import PosOffline

log = logging.getLogger(__name__)

#: The path of the long poll.
SCAN_PATH = "/v1/scan"
#: A poll's wait when it names none, and the longest it may ask for (seconds).
DEFAULT_POLL_S = 30.0
MAX_POLL_S = 120.0
#: How long :meth:`HttpPollLink.hand_over` waits for a poll to answer (seconds).
HAND_OVER_WAIT_S = 1.0
#: How long writing an answer may take before the poll counts as gone (seconds).
WRITE_TIMEOUT_S = 5.0
#: Connections served at a time; more are closed at once (one POS polls; a few spare for its cancel and a technician's curl).
MAX_CONNECTIONS = 8
#: The request line and headers must have arrived within this many seconds of the connection.
HEADER_DEADLINE_S = 5.0
#: How often a waiting poll looks whether its client hung up (seconds).
GONE_CHECK_S = 0.25


class _Poll:
    """One waiting ``GET /v1/scan``: the line given to it, or why it ended without one."""

    def __init__(self) -> None:
        self.line: str | None = None
        self.ended = False  # cancelled, timed out, client gone or the link closing: no line for it
        self.written = threading.Event()
        self.write_ok = False


class HttpPollLink:
    """A :class:`~device.outputs.pos.link.PosLink` served over HTTP (see the module docstring).

    :param address: (host, port) to listen on; port 0: one the OS picks (:attr:`address` says which).
    :param token_file: file holding the bearer token; missing or empty: every request is refused.
    :param wait_s: how long :meth:`hand_over` waits for a poll.

    Binding the address raises ``OSError`` before anything else starts.
    """

    def __init__(self, address: tuple[str, int], *, token_file: str, wait_s: float = HAND_OVER_WAIT_S):
        self.token_file, self.wait_s = token_file, wait_s
        self._changed = threading.Condition()
        self._waiting: _Poll | None = None
        self._closing = False
        self._server = _Server(address, self)
        self._thread = serve_in_thread(self._server, "pos-http")
        log.info("pos: POS software takes identifications with GET %s", self.url)

    @property
    def address(self) -> tuple[str, int]:
        """The (host, port) the socket is bound to."""
        return bound_address(self._server)

    @property
    def url(self) -> str:
        """The long poll's URL, e.g. ``http://127.0.0.1:8089/v1/scan``."""
        return url_of(self._server, SCAN_PATH)

    # --- the kiosk's side -----------------------------------------------------------------------

    def hand_over(self, line: str) -> None:
        """Answer the waiting poll with ``line``, or raise :class:`PosOffline` when none waits within ``wait_s``."""
        deadline = time.monotonic() + self.wait_s
        with self._changed:
            while self._waiting is None and not self._closing and (left := deadline - time.monotonic()) > 0:
                self._changed.wait(left)
            poll = self._waiting
            if poll is None or self._closing:
                raise PosOffline(f"no POS software is polling {self.url}")
            poll.line, self._waiting = line, None
            self._changed.notify_all()
        # The socket's own write timeout (WRITE_TIMEOUT_S) ends a stuck write first; this wait only bounds it again.
        if not poll.written.wait(2 * WRITE_TIMEOUT_S) or not poll.write_ok:
            raise PosOffline(f"the POS software's poll on {self.url} went away before the line was written")

    def close(self) -> None:
        """Stop serving: waiting polls end (204), the port is released. Idempotent."""
        with self._changed:
            closed_before, self._closing = self._closing, True
            self._changed.notify_all()  # the waiting poll ends (204), a waiting hand_over raises
        if not closed_before:
            self._server.shutdown()
            self._server.server_close()

    # --- the POS software's side (the server's threads) -------------------------------------------

    def token_matches(self, authorization: str | None) -> bool:
        """Whether ``authorization`` is ``Bearer <the token in token_file>`` (compared in constant time)."""
        try:
            token = Path(self.token_file).read_text().strip()
        except OSError as error:
            log.error("pos: cannot read pos.http_token_file %s (%s): every POS request is refused", self.token_file, error)
            return False
        scheme, _, given = (authorization or "").partition(" ")
        return bool(token) and scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())

    def claim(self) -> _Poll | None:
        """A new waiting poll, or None when one waits already (409)."""
        with self._changed:
            if self._waiting is not None or self._closing:
                return None
            self._waiting = _Poll()
            self._changed.notify_all()
            return self._waiting

    def wait_for_line(self, poll: _Poll, timeout_s: float, gone) -> str | None:
        """The line handed to ``poll`` within ``timeout_s``, or None (timed out, cancelled, ``gone()``, closing)."""
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while poll.line is None and not poll.ended and not self._closing and (left := deadline - time.monotonic()) > 0:
                self._changed.wait(min(left, GONE_CHECK_S))
                if poll.line is None and gone():
                    break
            if poll.line is None:
                self._end(poll)
            return poll.line

    def cancel(self) -> None:
        """End the waiting poll, if any (``DELETE /v1/scan``)."""
        with self._changed:
            if self._waiting is not None:
                self._end(self._waiting)

    def _end(self, poll: _Poll) -> None:
        poll.ended = True
        if self._waiting is poll:
            self._waiting = None
        self._changed.notify_all()

    @property
    def polling(self) -> bool:
        """Whether a poll waits now (the POS software has claimed the kiosk)."""
        with self._changed:
            return self._waiting is not None

    @property
    def closing(self) -> bool:
        return self._closing


# --- the HTTP side ----------------------------------------------------------------------------


class _Server(BoundedHTTPServer):
    def __init__(self, address: tuple[str, int], link: HttpPollLink):
        self.link = link
        super().__init__(address, _Handler, max_connections=MAX_CONNECTIONS, name="pos")


class _Handler(http.server.BaseHTTPRequestHandler):
    """``GET`` and ``DELETE`` of :data:`SCAN_PATH`; one request per connection (HTTP/1.0)."""

    server: _Server
    server_version = "kiosk-pos"
    sys_version = ""
    timeout = WRITE_TIMEOUT_S  # each read or write of the socket; the headers' whole deadline is HEADER_DEADLINE_S

    def setup(self) -> None:
        super().setup()
        # The request line and headers together within HEADER_DEADLINE_S: a client trickling a
        # byte at a time would pass every per-read timeout; this cuts its connection.
        self._headers_read = threading.Event()
        self._cutoff = threading.Timer(HEADER_DEADLINE_S, self._cut_off)
        self._cutoff.daemon = True
        self._cutoff.start()

    def _cut_off(self) -> None:
        if not self._headers_read.is_set():
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def parse_request(self) -> bool:
        parsed = super().parse_request()  # reads the headers after the request line
        self._headers_read.set()
        self._cutoff.cancel()
        return parsed

    def finish(self) -> None:
        self._cutoff.cancel()
        super().finish()

    def _scan_request(self) -> bool:
        """True when the request is for :data:`SCAN_PATH` with the token; else the refusal is answered."""
        if urlsplit(self.path).path != SCAN_PATH:
            self._send(404, {"error": f"not here: {SCAN_PATH} is the POS's long poll"})
            return False
        if not self.server.link.token_matches(self.headers.get("Authorization")):
            self._send(401, {"error": "a bearer token is required: the one in the kiosk's pos.http_token_file"})
            return False
        return True

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        if not self._scan_request():
            return
        try:
            timeout_s = poll_timeout(parse_qs(urlsplit(self.path).query).get("timeout_s", []))
        except ValueError as error:
            self._send(400, {"error": str(error)})
            return
        link = self.server.link
        poll = link.claim()
        if poll is None:
            self._send(409, {"error": "another POS is polling this kiosk already (one poll at a time)"})
            return
        line = link.wait_for_line(poll, timeout_s, self._client_gone)
        if line is None:
            self._send(204, None)
            return
        try:
            if self._client_gone():  # hung up just now: a write would still "succeed" into the dead socket's buffer
                raise ConnectionAbortedError("the client closed its connection")
            self._send(200, {"line": line})
            self.wfile.flush()
            poll.write_ok = True
        except OSError as error:
            log.warning("pos: the line could not be written to %s: %s", self.client_address[0], error)
        finally:
            poll.written.set()

    def do_DELETE(self) -> None:  # noqa: N802 (http.server's name)
        if self._scan_request():
            self.server.link.cancel()
            self._send(204, None)

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        if self._scan_request():
            self._send(405, {"error": f"{SCAN_PATH} takes GET (wait for a line) and DELETE (cancel the wait)"}, allow="GET, DELETE")

    do_PUT = do_PATCH = do_POST  # noqa: N815 (http.server's names)

    def _client_gone(self) -> bool:
        """Whether the client closed its end (readable with nothing to read); it sends nothing more after its request."""
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            return bool(readable) and self.connection.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            return True

    def _send(self, code: int, body: dict | None, *, allow: str = "") -> None:
        data = b"" if body is None else json.dumps(body).encode() + b"\n"
        self.send_response(code)
        if body is not None:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        if code == 401:
            self.send_header("WWW-Authenticate", 'Bearer realm="kiosk-pos"')
        if allow:
            self.send_header("Allow", allow)
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args) -> None:  # noqa: A002 (http.server's name)
        log.debug("pos: %s %s", self.address_string(), format % args)


def poll_timeout(given: list[str]) -> float:
    """A poll's ``timeout_s`` query values as seconds: the default when absent, at most :data:`MAX_POLL_S`.

    >>> poll_timeout([]), poll_timeout(["2.5"]), poll_timeout(["3600"])
    (30.0, 2.5, 120.0)
    >>> poll_timeout(["soon"])
    Traceback (most recent call last):
    ...
    ValueError: timeout_s must be a number of seconds, 0 .. 120, got 'soon'
    """
    if not given:
        return DEFAULT_POLL_S
    try:
        seconds = float(given[-1])
    except ValueError:
        seconds = float("nan")
    if not 0 <= seconds < float("inf"):
        raise ValueError(f"timeout_s must be a number of seconds, 0 .. {MAX_POLL_S:g}, got {given[-1][:40]!r}")
    return min(seconds, MAX_POLL_S)
