"""``GET /metrics`` on a loopback address (``metrics.listen``): small, and no risk to the daemon.

:func:`prometheus_client.start_http_server` would do, but its server starts a thread per
connection with no bound and no timeout, so clients that connect and say nothing pile up threads
in the daemon. This one is the same exposition (:func:`prometheus_client.generate_latest` of the
kiosk's own registry) with at most :data:`MAX_CLIENTS` connections served at once (more are closed
at once), and :data:`CLIENT_TIMEOUT_S` for a client to send its request and read the answer::

    server = MetricsServer("127.0.0.1", 9102, metrics.registry)   # OSError: the port is taken
    print(server.url)                                            # http://127.0.0.1:9102/metrics
    server.close()
"""

from __future__ import annotations

import http.server
import logging

from prometheus_client import CollectorRegistry, generate_latest

from device.outputs.bounded_http import BoundedHTTPServer, bound_address, serve_in_thread, url_of

log = logging.getLogger(__name__)

#: Connections served at once; Prometheus and a technician's curl need one each.
MAX_CLIENTS = 4
#: A client that sends no request, or stops reading the answer, is let go after this long.
CLIENT_TIMEOUT_S = 5.0
PATH = "/metrics"
#: The classic text format generate_latest writes (every kiosk name is a legacy one): what every
#: Prometheus parses (prometheus_client's own CONTENT_TYPE_LATEST says version=1.0.0 in 0.26).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class MetricsServer:
    """Serves ``registry`` at ``http://host:port/metrics`` from a thread of its own until :meth:`close`.

    Port 0 lets the system pick one (tests): :attr:`address` says which. ``client_timeout_s``: how
    long a client may take to send its request or read the answer.
    """

    def __init__(
        self,
        host: str,
        port: int,
        registry: CollectorRegistry,
        *,
        max_clients: int = MAX_CLIENTS,
        client_timeout_s: float = CLIENT_TIMEOUT_S,
    ):
        handler = type("Handler", (_Handler,), {"timeout": client_timeout_s})
        self._server = _Server((host, port), handler, max_connections=max_clients, name="metrics")
        self._server.registry = registry
        self._thread = serve_in_thread(self._server, "metrics-http")
        log.info("metrics: served at %s", self.url)

    @property
    def address(self) -> tuple[str, int]:
        return bound_address(self._server)

    @property
    def url(self) -> str:
        return url_of(self._server, PATH)

    def close(self) -> None:
        """Stop serving and release the port."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


class _Server(BoundedHTTPServer):
    registry: CollectorRegistry


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Server
    server_version = "kiosk-metrics"
    sys_version = ""
    timeout = CLIENT_TIMEOUT_S

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        path = self.path.partition("?")[0]
        if path == PATH:
            try:
                body = generate_latest(self.server.registry)
            except Exception:
                log.exception("metrics: the exposition failed")
                self._send(500, "text/plain; charset=utf-8", b"the metrics could not be gathered: see the kiosk's log\n")
                return
            self._send(200, CONTENT_TYPE, body)
        elif path == "/":
            self._send(200, "text/plain; charset=utf-8", f"the kiosk's metrics are at {PATH}\n".encode())
        else:
            self._send(404, "text/plain; charset=utf-8", f"not here: {PATH}\n".encode())

    def _send(self, code: int, content_type: str, body: bytes) -> None:
        try:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)
        except OSError:  # the client went away or stopped reading (the timeout): nothing to do
            pass

    def log_message(self, format: str, *args) -> None:  # noqa: A002 (http.server's name)
        log.debug("metrics: %s %s", self.address_string(), format % args)
