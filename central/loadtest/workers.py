"""Find a central's worker processes and SIGKILL one mid-run, as a crash would.

A multi-process server (uvicorn ``--workers N``) runs its workers as children of the process that
was started; that process replaces a worker that dies. Children are read from
``/proc/<pid>/task/<tid>/children`` (Linux 3.5+, no psutil needed); helpers the interpreter starts
itself (multiprocessing's resource tracker) are not workers and are left alone::

    kill = worker_killer(central.process.pid)     # a callable for drain(..., kill=kill)
    kill()                                        # 'SIGKILL to worker 4242 of 4200'

>>> children_of(os.getpid()) == children_of(os.getpid())
True
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from pathlib import Path

#: Words of a child's command line that mark it as the interpreter's helper, not a worker.
NOT_WORKERS = ("resource_tracker", "semaphore_tracker", "forkserver")


def children_of(pid: int, proc: Path = Path("/proc")) -> list[int]:
    """The direct children of ``pid`` (every thread's), in pid order; [] if it is gone."""
    found: set[int] = set()
    for children in (proc / str(pid) / "task").glob("*/children"):
        try:
            found.update(int(word) for word in children.read_text().split())
        except (OSError, ValueError):
            continue  # the thread ended while we read
    return sorted(found)


def command_line(pid: int, proc: Path = Path("/proc")) -> str:
    """``pid``'s command line, words joined by spaces ("" if it is gone)."""
    try:
        return (proc / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def worker_pids(server_pid: int, proc: Path = Path("/proc")) -> list[int]:
    """The server's worker processes: its children that are not the interpreter's helpers."""
    return [pid for pid in children_of(server_pid, proc) if not any(word in command_line(pid, proc) for word in NOT_WORKERS)]


def worker_killer(server_pid: int) -> Callable[[], str]:
    """A callable that SIGKILLs one worker of ``server_pid`` and says which; RuntimeError if it has none."""

    def kill() -> str:
        workers = worker_pids(server_pid)
        if not workers:
            raise RuntimeError(f"process {server_pid} has no worker processes to kill (is it a multi-worker server?)")
        os.kill(workers[0], signal.SIGKILL)
        return f"SIGKILL to worker {workers[0]} of {server_pid} ({len(workers)} workers)"

    return kill
