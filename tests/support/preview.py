"""The live view's Unix socket from the tests: HTTP over it, and what ``ssh -L PORT:SOCKET`` does.

A browser speaks TCP only; on a technician's laptop OpenSSH's local forwarding carries a port's
connections to the kiosk's socket. :func:`ssh_forward` does the same on this machine, so that a
real browser test goes through the same socket a technician reaches::

    with ssh_forward(Path("/run/kiosk/preview.sock")) as port:
        page.goto(f"http://localhost:{port}/")
    answer = get(Path("/run/kiosk/preview.sock"), "/figures.json")
"""

from __future__ import annotations

import http.client
import json
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class UnixHTTPConnection(http.client.HTTPConnection):
    """``http.client`` over a Unix socket."""

    def __init__(self, path: Path, timeout: float = 30):
        super().__init__("localhost", timeout=timeout)
        self.socket_path = str(path)

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.socket_path)


def get(
    path: Path, url: str, host: str | None = "localhost:8088", method: str = "GET", headers: dict | None = None
) -> http.client.HTTPResponse:
    """``method url`` on the live view at ``path``, with the ``Host`` a browser behind ``ssh -L 8088:...`` sends."""
    conn = UnixHTTPConnection(path)
    conn.request(method, url, headers={"Host": host, **(headers or {})} if host else dict(headers or {}))
    return conn.getresponse()


def figures(path: Path) -> dict | None:
    """``/figures.json``, or None while nothing answers it (not listening, or busy: 503)."""
    try:
        answer = get(path, "/figures.json")
        return json.loads(answer.read()) if answer.status == 200 else None
    except OSError:
        return None


def _pump(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass
    finally:
        for sock in (source, sink):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


@contextmanager
def ssh_forward(path: Path) -> Iterator[int]:
    """A port on 127.0.0.1 whose connections are carried to the socket ``path``, as ``ssh -L`` does."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    stop = threading.Event()
    open_sockets: list[socket.socket] = []

    def serve() -> None:
        while not stop.is_set():
            try:
                client, _ = listener.accept()
            except OSError:
                return
            upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                upstream.connect(str(path))
            except OSError:
                client.close()
                upstream.close()
                continue
            open_sockets.extend((client, upstream))
            threading.Thread(target=_pump, args=(client, upstream), daemon=True).start()
            threading.Thread(target=_pump, args=(upstream, client), daemon=True).start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        try:
            listener.shutdown(socket.SHUT_RDWR)  # wakes the accept
        except OSError:
            pass
        listener.close()
        for sock in open_sockets:
            sock.close()
