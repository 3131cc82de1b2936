"""Hostile requests (issue 20): what a technician's flood of the request folder costs the running daemon.

The real daemon (:mod:`device.tools.bench.attack`: ``kiosk run``, a camera playing an empty
counter in real time, 1024 descriptors, a watchdog of 4 s), side by side in one run: a quiet
phase, then a phase right after a technician left ``--hostile`` entries named like requests
(FIFOs, symlinks to them, directories, 50 MB sparse files, in turn) and ``--valid`` well-formed
snapshot requests in ``/run/kiosk/requests``, and a real ``kiosk diag camera`` (as this user)
asked after them. For both: the scan loop's frame rate, watchdog pings and the longest gap
between them, the faults; and how long the ``diag camera`` took to be answered, and what the
daemon counted. As root the entries are the user nobody's (a technician, rate-limited);
otherwise they are this user's::

    kiosk bench requests                      # 500 hostile, 2,000 valid, 20 s phases
    kiosk bench requests --hostile 100 --valid 500 --seconds 10
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import TextIO

from device.runtime_dir import REQUEST_SUFFIX, REQUESTS_DIR, SNAPSHOT_PREFIX, SYNC_PREFIX
from device.tools.bench.attack import AttackedDaemon


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--hostile", type=int, default=500, help="FIFOs, symlinks, directories and huge files named like requests (default 500)")
    p.add_argument("--valid", type=int, default=2000, help="well-formed snapshot requests left at once (default 2000)")
    p.add_argument("--seconds", type=float, default=20.0, help="length of each phase, quiet and attacked (default 20)")


def technician() -> int | None:
    """The uid the entries are left as: nobody's when root (a technician), else None (this user)."""
    if os.geteuid() != 0:
        return None
    import pwd

    try:
        return pwd.getpwnam("nobody").pw_uid
    except KeyError:
        return None


def plant(folder: Path, hostile: int, valid: int, owner: int | None) -> None:
    """``hostile`` entries that are no request, one kind after another, and ``valid`` requests."""

    def name(prefix: str = SNAPSHOT_PREFIX) -> Path:
        return folder / f"{prefix}{uuid.uuid4().hex}{REQUEST_SUFFIX}"

    fifo = None
    for i in range(hostile):
        path = name(SYNC_PREFIX if i % 8 == 7 else SNAPSHOT_PREFIX)
        kind = i % 4
        if kind == 0:
            os.mkfifo(path)
            fifo = path
        elif kind == 1 and fifo is not None:
            path.symlink_to(fifo)
        elif kind == 2:
            path.mkdir()
            (path / "keep").write_text("x")
        else:
            with open(path, "wb") as f:
                f.truncate(50 * 1024 * 1024)
        if owner is not None:
            os.lchown(path, owner, -1)
    for _ in range(valid):
        path = name()
        path.write_text("{}")
        if owner is not None:
            os.lchown(path, owner, -1)


def diag_camera(config: Path) -> tuple[float, bool]:
    """A real ``kiosk diag camera``: seconds to its answer (the whole command), whether it got one."""
    started = time.monotonic()
    run = subprocess.run(
        [sys.executable, "-m", "device", "diag", "camera", "--timeout", "60", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    return time.monotonic() - started, run.returncode == 0 and "from the running daemon" in run.stdout


def main(args, out: TextIO = sys.stdout) -> int:
    owner = technician()
    with tempfile.TemporaryDirectory(prefix="kiosk-bench-requests-") as tmp:
        with AttackedDaemon(Path(tmp), seconds=3 * args.seconds + 60, preview=False) as daemon:
            while not (daemon.runtime / REQUESTS_DIR).is_dir():
                time.sleep(0.1)
            quiet_answer_s, _ = diag_camera(daemon.config)
            quiet = daemon.phase(args.seconds)
            started = time.monotonic()
            plant(daemon.runtime / REQUESTS_DIR, args.hostile, args.valid, owner)
            planted_s = time.monotonic() - started
            answer_s, answered = diag_camera(daemon.config)
            attacked = daemon.phase(args.seconds)
            counts = daemon.status().get("requests", {})
        who = "the user nobody (a technician: rate-limited)" if owner is not None else "this user (the daemon's own: not rate-limited)"
        print(f"request folder flood: {args.hostile} hostile entries and {args.valid} valid requests, left by {who}", file=out)
        print(quiet.line("quiet"), file=out)
        print(attacked.line("attacked"), file=out)
        ratio = attacked.frames_per_s / quiet.frames_per_s if quiet.frames_per_s else 0.0
        print(f"frame rate attacked/quiet: {ratio:.3f}; entries left in {planted_s:.1f} s", file=out)
        print(
            f"kiosk diag camera (the whole command): quiet {quiet_answer_s:.2f} s; right after the flood {answer_s:.2f} s "
            f"({'answered' if answered else 'NOT answered'})",
            file=out,
        )
        print(f"the daemon counted: {counts}", file=out)
    return 0 if answered else 1
