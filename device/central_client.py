"""The one HTTP client for the central API: session, TLS, token, answer limits, typed errors.

Every call the kiosk makes to the central goes through :class:`CentralClient`: the forwarder's
batches, ``kiosk diag api``, and the calls still to come (the replaced-card list, metrics). It
owns what they all share:

- one ``requests`` session (connections reused; proxies, CA bundles and ``.netrc`` from the
  environment ignored: what the kiosk talks to is in its configuration only);
- TLS verified against ``api.ca_bundle`` (or the system's CAs); plain ``http://`` refused except to
  loopback unless ``api.allow_insecure_http`` (the schema's rule, checked again here);
- the bearer token, ``api.token`` or re-read from ``api.token_file`` at every call (a technician
  who fixes the file needs no restart), and no other credential: a URL with a user name or
  password is refused (:func:`device.urls.url_credentials_problem`), and ``requests`` is never
  left to turn one into ``Authorization: Basic``;
- timeouts, and a total deadline for each request: ``connect + 2 * read`` timeout seconds for the
  connect, the request and the whole answer, however slowly the server trickles bytes
  (:mod:`device.request_deadline`); a caller's ``cancel`` event abandons a request in flight at
  once (a kiosk that stops);
- a limit on the answer: at most :data:`MAX_ANSWER_BYTES`;
- every failure mapped to one of a few typed errors whose ``str()`` is one line a technician can
  act on ("cannot reach the central: connection refused by central.example.net:443 ...").

Example::

    client = CentralClient.from_config(cfg)
    try:
        answer = client.post_json(IDENTIFICATIONS_PATH, {"kiosk": {...}, "identifications": [...]})
    except CentralBusy as e:  # 408/429/503: try again, not before e.retry_after_s
        ...
    except CentralProblem as e:  # anything else, each kind its own class
        print(f"PROBLEM: {e}")

``requests`` is imported when the first client is made: the technician's everyday commands
(``status``, ``queue``, ``config``) load this module's neighbours but must not pay for it.
"""

from __future__ import annotations

import errno
import json
import socket
import ssl
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from device import __version__
from device.clock import Clock, SystemClock
from device.config import Config, ConfigError, insecure_url_problem, url_problem
from device.redact import escape
from device.request_deadline import CANCELLED, DEADLINE, Cancel, InFlight, deadline_adapter

if TYPE_CHECKING:
    from collections.abc import Mapping

    import requests

    #: An answer's headers: requests' case-insensitive dict.
    Headers = Mapping[str, str]

#: The central API's paths (see central/contract.py for the reference implementation).
HEALTH_PATH = "/v1/health"
IDENTIFICATIONS_PATH = "/v1/identifications"
#: The replaced-card list, complete or a delta since a version (``?since=N``), signed.
REPLACED_CARDS_PATH = "/v1/cards/replaced"
#: One kiosk's seqs as the central holds them (``{kiosk}`` percent-encoded).
KIOSK_SEQS_PATH = "/v1/kiosks/{kiosk}/seqs"

#: The largest answer read from the central; a bigger one is a proxy's page or a broken server.
MAX_ANSWER_BYTES = 1_000_000

#: Answers that mean "not now": try again later, honouring Retry-After.
BUSY_STATUSES = frozenset({408, 429, 503})
AUTH_STATUSES = frozenset({401, 403})


# --- errors -------------------------------------------------------------------------------------

#: The next steps shared by several causes.
SLOW_NEXT_STEP = "check the network path; the central may be overloaded"
CENTRAL_FAULT_NEXT_STEP = "the central has a problem: tell operations"
API_URL_NEXT_STEP = "check api.url (the central's base URL)"


class CentralProblem(Exception):
    """A call to the central gave no usable answer; ``str()`` says why in one line.

    ``status`` is the HTTP status when the central answered (None when it did not), ``detail``
    the central's own error message (``": ..."``, or ``" (no JSON error message)"``), and
    ``retry_after_s`` the wait its ``Retry-After`` asked for, if any. ``next_step`` is what a
    technician does about it ("is the central up? check api.url and the firewall"); each kind has
    a default, the mapping that knows more gives its own. ``kiosk diag api`` and the delivery fault
    show it after the cause.
    """

    #: What a technician does about this kind of problem, unless the mapping knows better.
    NEXT_STEP = "check api.url and the network path to the central"

    def __init__(self, cause: str, *, status: int | None = None, detail: str = "", retry_after_s: float | None = None, next_step: str = ""):
        super().__init__(cause)
        self.cause = cause
        self.status = status
        self.detail = detail
        self.retry_after_s = retry_after_s
        self.next_step = next_step or self.NEXT_STEP


class CentralUnreachable(CentralProblem):
    """No answer at all: connection refused, DNS name not found, TLS not trusted, timeout, connection cut."""


class CentralTooSlow(CentralUnreachable):
    """The request's total deadline passed: the central trickled its answer, or never finished it."""

    NEXT_STEP = SLOW_NEXT_STEP


class CentralAborted(CentralProblem):
    """The caller abandoned the request (``cancel`` was set: the kiosk is stopping); nothing to retry now."""


class CentralRefusedToken(CentralProblem):
    """The central refused the token (401/403), or there is no usable token to send (``status`` None)."""

    NEXT_STEP = "check api.token / api.token_file (the token operations issued for this kiosk)"


class CentralNoDescriptors(CentralProblem):
    """The kiosk itself has no file descriptor free (EMFILE/ENFILE) to read the token or open a
    connection: a local fault (the ``open-files`` one names it), never "token unreadable"."""

    NEXT_STEP = "kiosk status names the open-files fault; sudo systemctl restart kiosk frees them"


class CentralBusy(CentralProblem):
    """The central said "not now" (408, 429, 503); ``retry_after_s`` from its Retry-After, if given."""

    NEXT_STEP = "the central is overloaded or down for maintenance: tell operations if it lasts"


class CentralError(CentralProblem):
    """Any other HTTP status that is not 2xx (a 400 for a bad request, 404 for a wrong api.url, 5xx)."""

    NEXT_STEP = CENTRAL_FAULT_NEXT_STEP


class CentralMalformed(CentralProblem):
    """The central answered, but the answer is unusable: not JSON, or too big."""

    NEXT_STEP = "check that api.url is the central's API (not a proxy's or a portal's page); else tell operations"


@dataclass(frozen=True)
class CentralAnswer:
    """A 2xx answer, read in full and parsed."""

    status: int
    headers: Headers
    data: Any  # the parsed JSON


@dataclass(frozen=True)
class RawAnswer:
    """A 2xx answer, read in full and kept as bytes (:meth:`CentralClient.get_signed`)."""

    status: int
    headers: Headers
    body: bytes


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta seconds or an HTTP date), or None."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


# --- the client -----------------------------------------------------------------------------------


class CentralClient:
    """Talks to the central at ``url`` (its base URL); see the module docstring.

    The token is ``token``, or read from ``token_file`` at every call. ``clock`` dates
    ``Retry-After`` HTTP dates. Raises :class:`~device.config.ConfigError` naming the key for a
    URL it must not use (never showing a password in it) or a CA bundle that is not there.
    """

    def __init__(
        self,
        url: str,
        *,
        token: str = "",
        token_file: str = "",
        ca_bundle: str = "",
        allow_insecure_http: bool = False,
        connect_timeout_s: float,
        read_timeout_s: float,
        clock: Clock | None = None,
        session: requests.Session | None = None,
    ):
        import requests

        # The schema's own checks (also for a client built without loading a config).
        problem = url_problem(url) if url else "no URL of the central (api.url), e.g. https://central.example.net"
        if problem:
            raise ConfigError("api.url", problem)
        parts = urlsplit(url)
        insecure = insecure_url_problem(url, allow_insecure_http)
        if insecure:
            raise ConfigError("api.url", insecure)
        if ca_bundle and not Path(ca_bundle).is_file():
            raise ConfigError("api.ca_bundle", f'no such file "{escape(ca_bundle, 300)}"')
        self.base_url = url.rstrip("/")
        self.host = f"{parts.hostname}:{parts.port or (443 if parts.scheme == 'https' else 80)}"
        self._token = token.strip()
        self._token_file = token_file
        self.timeout = (connect_timeout_s, read_timeout_s)
        # The read timeout bounds each wait for bytes; the deadline bounds the whole request,
        # also against a server that trickles them.
        self.deadline_s = connect_timeout_s + 2 * read_timeout_s
        self.clock = clock or SystemClock()
        self.session = session or requests.Session()
        self.session.verify = ca_bundle or True
        for scheme in ("http://", "https://"):
            self.session.mount(scheme, deadline_adapter())
        # Proxies, CA bundles and .netrc from the environment stay out: what the kiosk talks to
        # is in its configuration only.
        self.session.trust_env = False
        # An explicit auth on the session and on every call: requests then never takes one from a URL.
        self.session.auth = _BearerAuth(None)
        self.session.headers.update({"User-Agent": f"counter-kiosk/{__version__}", "Accept": "application/json"})

    @classmethod
    def from_config(cls, cfg: Config, *, clock: Clock | None = None) -> CentralClient:
        """The client as the ``[api]`` section configures it; problems are config errors naming the key."""
        api = cfg.api
        try:
            return cls(
                api.url,
                token=api.token,
                token_file=api.token_file,
                ca_bundle=api.ca_bundle,
                allow_insecure_http=api.allow_insecure_http,
                connect_timeout_s=api.connect_timeout_s,
                read_timeout_s=api.read_timeout_s,
                clock=clock,
            )
        except ConfigError as e:
            raise ConfigError(e.key, e.problem, cfg.source) from None

    # --- the token -----------------------------------------------------------------------------

    def read_token(self) -> tuple[str, str | None]:
        """The token to send, or a problem to report: "token file missing: PATH", "... empty: PATH", ...

        :class:`CentralNoDescriptors` when the process has no descriptor free to open the file:
        that is the kiosk's own trouble, not the token's."""
        if self._token_file:
            shown = escape(self._token_file, 300)
            try:
                token = Path(self._token_file).read_text(encoding="utf-8").strip()
            except FileNotFoundError:
                return "", f"token file missing: {shown} (api.token_file)"
            except OSError as e:
                if e.errno in (errno.EMFILE, errno.ENFILE):
                    raise CentralNoDescriptors(
                        f"no file descriptor free to read the token file {shown} ({e.strerror}): the kiosk has too many files open"
                    ) from None
                return "", f"token file unreadable: {shown} ({e.strerror or e})"
            except UnicodeDecodeError as e:
                return "", f"token file unreadable: {shown} ({e})"
            if not token:
                return "", f"token file empty: {shown} (api.token_file)"
        else:
            token = self._token
            if not token:
                return "", "no token for the central (set api.token_file or api.token)"
        if not token.isprintable() or any(c.isspace() for c in token):
            return "", "the token for the central contains spaces or control characters"
        return token, None

    # --- calls -----------------------------------------------------------------------------------

    def get_json(self, path: str, *, auth: bool = True, cancel: Cancel | None = None) -> CentralAnswer:
        """GET ``path`` (e.g. :data:`HEALTH_PATH`); a 2xx JSON answer, or a :class:`CentralProblem`.

        ``cancel`` (a :class:`threading.Event`): once set, the request is abandoned with
        :class:`CentralAborted`, within a fraction of a second.
        """
        return self._parsed(*self._call("GET", path, None, self._usable_token(None) if auth else None, {}, cancel))

    def post_json(self, path: str, body: Any, *, token: str | None = None, cancel: Cancel | None = None) -> CentralAnswer:
        """POST ``body`` as JSON to ``path``; a 2xx JSON answer, or a :class:`CentralProblem`.

        ``token`` is the one to send (the caller read it with :meth:`read_token` to know which
        one it tried); by default it is read now. ``cancel`` as for :meth:`get_json`.
        """
        data = json.dumps(body, separators=(",", ":")).encode("utf-8")
        return self._parsed(*self._call("POST", path, data, self._usable_token(token), {"Content-Type": "application/json"}, cancel))

    def get_signed(self, path: str, *, max_bytes: int, deadline_s: float | None = None, cancel: Cancel | None = None) -> RawAnswer:
        """GET ``path`` and keep the answer's exact bytes (a signed document: the replaced-card list).

        ``max_bytes`` caps the answer (a larger one is :class:`CentralMalformed`); ``deadline_s``
        replaces the request's total deadline (a big list over a slow line needs longer than a
        batch). Errors as for :meth:`get_json`.
        """
        return RawAnswer(*self._call("GET", path, None, self._usable_token(None), {}, cancel, max_bytes=max_bytes, deadline_s=deadline_s))

    def _usable_token(self, token: str | None) -> str:
        if token is None:
            token, problem = self.read_token()
            if problem:
                raise CentralRefusedToken(problem)
        return token

    def _call(
        self, method: str, path: str, data: bytes | None, token: str | None, headers: dict[str, str], cancel: Cancel | None,
        *, max_bytes: int = 0, deadline_s: float | None = None,
    ) -> tuple[int, Headers, bytes]:  # fmt: skip
        """One request and its whole 2xx answer: (status, headers, body), or a :class:`CentralProblem`."""
        if cancel is not None and cancel.is_set():
            raise CentralAborted(ABORTED)
        progress = _Progress(max_bytes or MAX_ANSWER_BYTES)
        deadline_s = deadline_s or self.deadline_s
        with InFlight(deadline_s, cancel) as flight:
            try:
                status, answer_headers, body = self._exchange(method, path, data, token, headers, flight, progress)
            except Exception as e:  # whatever the library made of a socket shut under it
                cut = self._cut_problem(flight, progress, deadline_s)
                if cut is None:
                    raise
                raise cut from e
            # An answer that "ended" because its socket was shut (headers cut short read as
            # complete) is no answer; one that came just in time costs only a duplicate.
            cut = self._cut_problem(flight, progress, deadline_s)
            if cut is not None:
                raise cut
        if not 200 <= status < 300:
            raise self._status_problem(status, answer_headers, body, path)
        return status, answer_headers, body

    @staticmethod
    def _parsed(status: int, answer_headers: Headers, body: bytes) -> CentralAnswer:
        """A 2xx answer's JSON; a body that is not JSON is :class:`CentralMalformed`."""
        parsed = _json(body)
        if parsed is _NOT_JSON:
            kind = "an HTML page" if body.lstrip()[:1] == b"<" else "not JSON"
            raise CentralMalformed(f"the central answered HTTP {status} but its answer is {kind}", status=status)
        return CentralAnswer(status, answer_headers, parsed)

    def _exchange(
        self, method: str, path: str, data: bytes | None, token: str | None, headers: dict[str, str], flight: InFlight, progress: _Progress
    ) -> tuple[int, Headers, bytes]:
        """The request and its whole answer: (status, headers, body), or a :class:`CentralProblem`."""
        import requests

        try:
            response = self.session.request(
                method, self.base_url + path, data=data, headers=headers, auth=_BearerAuth(token),
                timeout=self.timeout, allow_redirects=False, stream=True,
            )  # fmt: skip
        except requests.exceptions.RequestException as e:
            cause, next_step = self._transport_cause(e)
            raise CentralUnreachable(f"cannot reach the central: {cause}", next_step=next_step) from e
        try:
            if flight.cut is None:  # else the headers "ended" only because the socket was shut
                progress.answered(response.headers.get("Content-Length"))
            return response.status_code, response.headers, self._read_body(response, progress)
        finally:
            response.close()

    def _read_body(self, response: requests.Response, progress: _Progress) -> bytes:
        import requests
        from urllib3.exceptions import ReadTimeoutError

        parts = []
        try:
            for part in response.iter_content(8192):
                parts.append(part)
                progress.received += len(part)
                if progress.received > progress.limit:
                    raise CentralMalformed(f"the central's answer is larger than {progress.limit} bytes", status=response.status_code)
        except requests.exceptions.RequestException as e:
            # requests wraps a read timeout in the body as a ConnectionError
            if isinstance(e, requests.exceptions.Timeout) or any(isinstance(x, ReadTimeoutError) for x in _exception_chain(e)):
                raise CentralUnreachable(
                    f"the central's answer stopped arriving (read timeout {self.timeout[1]:g} s)", next_step=SLOW_NEXT_STEP
                ) from e
            progress.note_partial(e)
            # urllib3's text ("('Connection broken: IncompleteRead(...)', ...)") says less than the counts.
            of = f" of {progress.length}" if progress.length is not None else ""
            raise CentralUnreachable(
                f"the central's answer was cut off after {progress.received}{of} bytes",
                next_step="the central or something on the way dropped the connection: check the network path; tell operations if it lasts",
            ) from e
        return b"".join(parts)

    def _cut_problem(self, flight: InFlight, progress: _Progress, deadline_s: float) -> CentralProblem | None:
        """What a failure means when the request was cut: its deadline passed, or the caller cancelled it."""
        if flight.cut == CANCELLED:
            return CentralAborted(ABORTED)
        if flight.cut != DEADLINE:
            return None
        if not progress.headers:
            return CentralTooSlow(
                f"the central did not answer within {deadline_s:g} s (a request's deadline: api.connect_timeout_s + 2 x api.read_timeout_s)"
            )
        of = f" of {progress.length}" if progress.length is not None else ""
        return CentralTooSlow(f"the central sent its answer too slowly: {progress.received}{of} bytes in {flight.elapsed_s:.1f} s")

    # --- error mapping -----------------------------------------------------------------------------

    def _transport_cause(self, e: Exception) -> tuple[str, str]:
        """Why no answer came, in one line, and the next step: from the exception chain requests and urllib3 build."""
        import requests

        chain = _exception_chain(e)
        host = self.host.rsplit(":", 1)[0]
        untrusted = next((x for x in chain if isinstance(x, ssl.SSLCertVerificationError)), None)
        if untrusted is not None:
            why = escape(untrusted.verify_message or "", 100)
            return (
                f"TLS certificate of {self.host} not trusted ({why})",
                "set api.ca_bundle to the CA that signed the central's certificate",
            )
        if isinstance(e, requests.exceptions.SSLError):
            ssl_error = next((x for x in chain if isinstance(x, ssl.SSLError)), chain[-1])
            why = getattr(ssl_error, "reason", None) or _short(ssl_error)
            return f"TLS with {self.host} failed ({why})", "check that api.url names the central's https port, and the kiosk's clock"
        if isinstance(e, requests.exceptions.ConnectTimeout):
            return f"no connection to {self.host} within {self.timeout[0]:g} s (connect timeout)", "check the network path and the firewall"
        if isinstance(e, requests.exceptions.ReadTimeout):
            return f"no answer within {self.timeout[1]:g} s (read timeout)", SLOW_NEXT_STEP
        if any(isinstance(x, TimeoutError) for x in chain):  # a send that made no progress
            return f"{self.host} stopped taking the request (sending timed out after {self.timeout[0]:g} s)", SLOW_NEXT_STEP
        if any(isinstance(x, socket.gaierror) for x in chain):
            return f"DNS name not found: {host}", "check the name in api.url and /etc/resolv.conf"
        if any(isinstance(x, ConnectionRefusedError) for x in chain):
            return f"connection refused by {self.host}", "is the central up? check api.url and the firewall"
        if any(isinstance(x, (ConnectionResetError, ConnectionAbortedError, BrokenPipeError)) for x in chain) or any(
            type(x).__name__ == "RemoteDisconnected" for x in chain
        ):
            return (
                f"{self.host} closed the connection without an answer",
                "check api.url (https or http?) and any proxy on the way; tell operations if it lasts",
            )
        os_error = next((x for x in reversed(chain) if isinstance(x, OSError) and x.strerror), None)
        if os_error is not None:
            # "no route to host", "network is unreachable"
            return f"{str(os_error.strerror).lower()} ({self.host})", "check the kiosk's network (cable, address, route) and the firewall"
        return _short(e), CentralProblem.NEXT_STEP

    def _status_problem(self, status: int, headers: Headers, body: bytes, path: str) -> CentralProblem:
        detail = _error_text(body)
        retry_after = parse_retry_after(headers.get("Retry-After"), self.clock.now())
        if status in AUTH_STATUSES:
            cause = f"the central refused the token (HTTP {status}{detail}): check api.token / api.token_file"
            return CentralRefusedToken(cause, status=status, detail=detail, retry_after_s=retry_after)
        if status in BUSY_STATUSES:
            return CentralBusy(
                f"the central is busy: it answered HTTP {status}{detail}", status=status, detail=detail, retry_after_s=retry_after
            )
        next_step = ""
        if 300 <= status < 400:
            where = escape(headers.get("Location", "?"), 100)
            cause, next_step = f"the central answered HTTP {status} (a redirect, to {where}): check api.url", API_URL_NEXT_STEP
        elif status == 404:
            cause, next_step = f"the central answered HTTP 404 for {self.base_url}{path}: check api.url", API_URL_NEXT_STEP
        else:
            cause = f"the central answered HTTP {status}{detail}"
        return CentralError(cause, status=status, detail=detail, retry_after_s=retry_after, next_step=next_step)


# --- helpers ------------------------------------------------------------------------------------

_NOT_JSON = object()

ABORTED = "the request to the central was abandoned: the kiosk is stopping"


class _BearerAuth:
    """``requests``' ``auth=``: the bearer token, or no credential at all (``None``).

    Given on the session and on every call, so requests never falls back to credentials of its
    own (a user name and password in the URL become ``Authorization: Basic``).
    """

    def __init__(self, token: str | None):
        self.token = token

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        if self.token:
            request.headers["Authorization"] = f"Bearer {self.token}"
        return request


class _Progress:
    """How much of the answer arrived: the headers (with the Content-Length they claim) and the bytes read."""

    def __init__(self, limit: int = MAX_ANSWER_BYTES):
        self.limit = limit  # the most bytes read
        self.headers = False
        self.length: int | None = None
        self.received = 0

    def answered(self, content_length: str | None) -> None:
        self.headers = True
        if content_length is not None and content_length.strip().isdigit():
            self.length = int(content_length)

    def note_partial(self, e: BaseException) -> None:
        """urllib3 says how many bytes it read when the answer broke off (IncompleteRead's ``partial``)."""
        partial = next((p for x in _exception_chain(e) if isinstance(p := getattr(x, "partial", None), int)), None)
        if partial is not None:
            self.received = max(self.received, partial)


def _json(body: bytes) -> Any:
    try:
        return json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return _NOT_JSON


def _error_text(body: bytes) -> str:
    """The central's error message from a JSON body (``error``/``detail``/``message``/``reason``)."""
    data = _json(body)
    if isinstance(data, dict):
        for key in ("error", "detail", "message", "reason"):
            if isinstance(data.get(key), str):
                return ": " + escape(data[key], 200)
    return " (no JSON error message)" if body else ""


def _exception_chain(e: BaseException) -> list[BaseException]:
    """``e`` and what it wraps: causes, contexts, urllib3's ``reason`` and exceptions in ``args``."""
    seen: list[BaseException] = []
    todo: list[object] = [e]
    while todo:
        x = todo.pop(0)
        if not isinstance(x, BaseException) or any(x is s for s in seen):
            continue
        seen.append(x)
        todo.extend([x.__cause__, x.__context__, getattr(x, "reason", None)])
        todo.extend(a for a in x.args if isinstance(a, BaseException))
    return seen


def _short(e: BaseException, limit: int = 200) -> str:
    return escape(str(e), limit)
