"""Slow connections to the live view (issue 20): descriptors, frame rate and faults of the daemon meanwhile.

The real daemon (:mod:`device.tools.bench.attack`: ``kiosk run`` with the live view on, 1024
descriptors as the unit allows, a watchdog of 4 s), side by side in one run: a quiet phase, then a
phase while ``--connections`` connections to its socket each send one byte of a request line and
then nothing (opened again as the daemon lets them go, so that many stay pending throughout).
For both: the scan loop's frame rate, watchdog pings, the most descriptors the daemon held, and
its faults; and how many connections were answered 503 at once or let go at the header deadline::

    kiosk bench preview                       # 1,000 slow connections, 20 s phases
    kiosk bench preview --connections 200 --seconds 10
"""

from __future__ import annotations

import argparse
import resource
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import TextIO

from device.runtime_dir import PREVIEW_SOCKET
from device.tools.bench.attack import AttackedDaemon


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--connections", type=int, default=1000, help="slow connections kept open (default 1000)")
    p.add_argument("--seconds", type=float, default=20.0, help="length of each phase, quiet and attacked (default 20)")


class SlowClients:
    """``count`` connections to ``path`` that send one byte and then nothing, opened again when closed."""

    def __init__(self, path: Path, count: int):
        self.path, self.count = path, count
        self.opened = 0
        self.refused = 0  # refused by the listening socket's full backlog, or answered 503 at once
        self.let_go = 0  # closed by the daemon at the header deadline
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> SlowClients:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _open(self) -> socket.socket | None:
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        conn.setblocking(False)
        try:
            conn.connect(str(self.path))
            conn.send(b"G")
        except OSError:
            conn.close()
            self.refused += 1
            return None
        self.opened += 1
        return conn

    def _run(self) -> None:
        import selectors

        selector = selectors.DefaultSelector()
        live = 0
        while not self._stop.is_set():
            while live < self.count and not self._stop.is_set():
                conn = self._open()
                if conn is not None:
                    selector.register(conn, selectors.EVENT_READ)
                    live += 1
                elif self.opened >= self.count:
                    break  # refused: try again after the next select, not in a spin
            for key, _ in selector.select(timeout=0.2):
                conn = key.fileobj
                try:
                    answer = conn.recv(64)
                except OSError:
                    answer = b""
                if answer.startswith(b"HTTP/1.0 503"):
                    self.refused += 1
                else:
                    self.let_go += 1
                selector.unregister(conn)
                conn.close()
                live -= 1
        for key in list(selector.get_map().values()):
            key.fileobj.close()


def main(args, out: TextIO = sys.stdout) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, args.connections + 256)), hard))
    with tempfile.TemporaryDirectory(prefix="kiosk-bench-preview-") as tmp:
        with AttackedDaemon(Path(tmp), seconds=2 * args.seconds + 60) as daemon:
            quiet = daemon.phase(args.seconds)
            with SlowClients(daemon.runtime / PREVIEW_SOCKET, args.connections) as clients:
                attacked = daemon.phase(args.seconds)
            time.sleep(1)
    print(f"slow connections to the live view: {args.connections} kept pending (one byte of a request line each)", file=out)
    print(quiet.line("quiet"), file=out)
    print(attacked.line("attacked"), file=out)
    ratio = attacked.frames_per_s / quiet.frames_per_s if quiet.frames_per_s else 0.0
    print(
        f"frame rate attacked/quiet: {ratio:.3f}; connections opened {clients.opened}, answered 503 or refused at once "
        f"{clients.refused}, let go at the header deadline {clients.let_go}",
        file=out,
    )
    return 0
