"""systemd's side of sd_notify: a NOTIFY_SOCKET the test reads, as the service manager would."""

from __future__ import annotations

import socket

from support.waiting import DEFAULT_TIMEOUT_S, wait_until


def listen(tmp_path):
    """``(socket, path)``: a datagram socket at ``path`` for the kiosk's NOTIFY_SOCKET."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = str(tmp_path / "notify.sock")
    sock.bind(path)
    sock.settimeout(0.2)
    return sock, path


def messages(sock, until, timeout_s=DEFAULT_TIMEOUT_S) -> list[str]:
    """The notify datagrams received until ``until(list)`` is true; fails after ``timeout_s`` (scaled)."""
    got: list[str] = []

    def enough() -> bool:
        if until(got):
            return True
        try:
            got.append(sock.recv(4096).decode())  # waits up to the socket's timeout
        except TimeoutError:
            pass
        return until(got)

    wait_until(enough, what="the notify messages", timeout_s=timeout_s, every_s=0, detail=lambda: f"got {got}")
    return got
