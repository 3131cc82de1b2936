"""The production server: uvicorn's supervisor with N worker processes sharing one listening socket.

``kiosk central --db URL --workers N``. The parent binds the socket (so ``--port 0`` works and the
port is known), starts N workers (spawned; each gets the settings pickled over a pipe, never on a
command line, and opens its own store), waits until every one serves, then prints the line
``central listening on URL``. uvicorn's supervisor pings each worker every half second and starts
a new one in place of a worker that died (SIGKILL included: ``Multiprocess.keep_subprocess_alive``
replaces any worker that is not alive, unless it failed at its own startup). A worker dies with
the parent (``PR_SET_PDEATHSIG``), so a killed parent leaves no worker holding the port.

    run(ApiSettings(db="sqlite:/tmp/c.db", shared_tokens=("t",)), "127.0.0.1", 0, processes=2,
        max_connections=1000, header_timeout_s=10.0)
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import socket
import sys
from typing import Any

import uvicorn
from uvicorn.supervisors.multiprocess import Multiprocess

from central.api import ApiSettings
from central.asgi import GuardedH11Protocol, create_app
from central.process import LISTENING_PREFIX

log = logging.getLogger("central")

#: Seconds a worker may take to start serving (import, open the store) before the start is given up.
WORKER_START_TIMEOUT_S = 60.0
#: Idle seconds before a kept-alive connection is closed (uvicorn's default).
KEEP_ALIVE_S = 5
#: Listen backlog: a reconnect storm's connections wait here rather than being refused.
BACKLOG = 2048


class AppFactory:
    """Picklable: builds the app in each worker process (uvicorn's ``factory=True``)."""

    def __init__(self, settings: ApiSettings):
        self.settings = settings

    def __call__(self) -> Any:
        _die_with_parent()
        if not logging.getLogger().handlers:
            logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
        return create_app(self.settings)


def _die_with_parent() -> None:
    """Linux: SIGKILL this worker when the supervisor dies (else it would keep serving the port)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() == 1:  # the parent died before the line above: nothing will signal us
        os._exit(1)


class _Supervisor(Multiprocess):
    """uvicorn's Multiprocess that prints the listening line once every worker serves."""

    def __init__(self, config: uvicorn.Config, sockets: list[socket.socket], url: str):
        super().__init__(config, sockets)
        self.url = url
        self.failed = False

    def init_processes(self) -> None:
        super().init_processes()
        for process in self.processes:
            if not process.wait_until_ready(WORKER_START_TIMEOUT_S, self.should_exit):
                if not self.should_exit.is_set():
                    log.error("worker %s did not start serving (see above); stopping", process.pid)
                    self.failed = True
                self.should_exit.set()
                return
        log.info("production server: %d workers, pids %s", len(self.processes), ", ".join(str(p.pid) for p in self.processes))
        print(LISTENING_PREFIX + self.url, flush=True)


def run(settings: ApiSettings, host: str, port: int, *, processes: int, max_connections: int, header_timeout_s: float) -> int:
    """Serve until SIGTERM or SIGINT: 0 on a clean stop, 1 if it cannot listen or a worker cannot start."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets whose proto says TCP, and the
    # accepted ones inherit it. Without it, headers and body go out in two writes and the second
    # waits for the client's delayed ACK: 40 ms on every answer.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(BACKLOG)
    except OSError as e:
        sock.close()
        print(f"central: cannot listen on {host}:{port}: {e.strerror or e}", file=sys.stderr)
        return 1
    sock.set_inheritable(True)
    bound_host, bound_port = sock.getsockname()[:2]
    url = f"http://[{bound_host}]:{bound_port}" if family == socket.AF_INET6 else f"http://{bound_host}:{bound_port}"
    config = uvicorn.Config(
        AppFactory(settings),
        factory=True,
        http=GuardedH11Protocol,
        workers=processes,
        lifespan="on",
        log_config=None,
        access_log=False,
        timeout_keep_alive=KEEP_ALIVE_S,
        backlog=BACKLOG,
        server_header=False,
    )
    # Read by GuardedH11Protocol in each worker (the Config is pickled to them with these).
    config.central_max_connections = max_connections  # type: ignore[attr-defined]
    config.central_header_timeout_s = header_timeout_s  # type: ignore[attr-defined]
    log.info(
        "production server: database %s, %d workers, %d shared token(s), %d admin token(s), at most %d connections per worker, "
        "headers within %g s, kiosk rate %s",
        settings.db,
        processes,
        len(settings.shared_tokens),
        len(settings.admin_tokens),
        max_connections,
        header_timeout_s,
        f"{settings.kiosk_rate_per_s:g}/s burst {settings.kiosk_burst}" if settings.kiosk_rate_per_s > 0 else "unlimited",
    )
    supervisor = _Supervisor(config, [sock], url)
    try:
        supervisor.run()
    finally:
        sock.close()
    log.info("stopped")
    return 1 if supervisor.failed else 0
