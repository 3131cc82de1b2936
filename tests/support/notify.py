"""systemd's side of sd_notify: a NOTIFY_SOCKET the test reads, as the service manager would."""

from __future__ import annotations

import socket
import time

import pytest

from support.waiting import DEFAULT_TIMEOUT_S, scaled


def listen(tmp_path):
    """``(socket, path)``: a datagram socket at ``path`` for the kiosk's NOTIFY_SOCKET."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = str(tmp_path / "notify.sock")
    sock.bind(path)
    sock.settimeout(0.2)
    return sock, path


def messages(sock, until, timeout_s=DEFAULT_TIMEOUT_S):
    """The notify datagrams received until ``until(list)`` is true; fails after ``timeout_s`` (scaled)."""
    got = []
    ceiling_s = scaled(timeout_s)
    deadline = time.monotonic() + ceiling_s
    while not until(got):
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {ceiling_s:g} s; got {got}")
        try:
            got.append(sock.recv(4096).decode())
        except TimeoutError:
            pass
    return got
