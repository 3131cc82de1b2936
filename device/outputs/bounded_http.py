"""The small HTTP server an output serves from (the POS long poll, the metrics): a thread per
connection, but at most a bounded number at once, so a flood of connections costs no threads.

A connection beyond the bound is closed at once, not queued; the handler's ``timeout`` lets go of
a client that says nothing or stops reading. IPv6 addresses (``::1``) get an IPv6 socket::

    server = BoundedHTTPServer(("127.0.0.1", 0), Handler, max_connections=4, name="metrics")
    thread = serve_in_thread(server, "metrics-http")
    print(url_of(server, "/metrics"))      # http://127.0.0.1:41234/metrics
    server.shutdown(); server.server_close()

>>> url_of_address(("::1", 9102), "/metrics")
'http://[::1]:9102/metrics'
"""

from __future__ import annotations

import http.server
import logging
import socket
import threading

log = logging.getLogger(__name__)


class BoundedHTTPServer(http.server.ThreadingHTTPServer):
    """A :class:`~http.server.ThreadingHTTPServer` serving at most ``max_connections`` at once;
    ``name`` says whose it is in the log line of a connection refused."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], handler: type[http.server.BaseHTTPRequestHandler], *, max_connections: int, name: str):
        self.max_connections = max_connections
        self.name = name
        self.slots = threading.BoundedSemaphore(max_connections)
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, handler)

    def process_request(self, request, client_address) -> None:
        if not self.slots.acquire(blocking=False):  # bounded: this client is closed, not queued
            log.warning("%s: %d connections open already; %s refused", self.name, self.max_connections, client_address[0])
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)  # its thread releases the slot when done
        except BaseException:
            self.slots.release()
            raise

    def process_request_thread(self, request, client_address) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.slots.release()


def serve_in_thread(server: http.server.HTTPServer, name: str) -> threading.Thread:
    """``server.serve_forever`` in a daemon thread called ``name``, started (stopped by ``server.shutdown()``)."""
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.25}, name=name, daemon=True)
    thread.start()
    return thread


def bound_address(server: http.server.HTTPServer) -> tuple[str, int]:
    """The (host, port) the server's socket is bound to (the port the system picked for port 0)."""
    host, port = server.server_address[:2]
    return str(host), int(port)


def url_of_address(address: tuple[str, int], path: str) -> str:
    host, port = address
    return f"http://{f'[{host}]' if ':' in host else host}:{port}{path}"


def url_of(server: http.server.HTTPServer, path: str) -> str:
    """``http://host:port`` + ``path`` of the server (an IPv6 host in brackets)."""
    return url_of_address(bound_address(server), path)
