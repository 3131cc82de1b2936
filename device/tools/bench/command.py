"""CPU time of a technician's command, e.g. ``kiosk status``, for one or more installs side by side.

A technician types ``kiosk status`` all day, on a Pi several times slower than this machine, so
what it loads matters. Each install's ``kiosk`` runs the command in turn, alternating (these
machines are shared and noisy), and the child's user + system CPU time is measured::

    kiosk bench command --kiosk /opt/old/venv/bin/kiosk --kiosk .venv/bin/kiosk --runs 20 status
"""

from __future__ import annotations

import argparse
import resource
import shutil
import statistics
import subprocess
import sys
from typing import TextIO


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--kiosk", action="append", default=[], metavar="PATH",
                   help="a kiosk executable to measure (repeatable; default: the kiosk on PATH)")
    p.add_argument("--runs", type=int, default=20, help="runs per executable (default 20)")
    p.add_argument("words", nargs="+", metavar="WORD", help="the command and its arguments, e.g. status")


def cpu_seconds(argv: list[str]) -> float:
    """User + system CPU time of one run of ``argv`` (its output discarded)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main(args, out: TextIO = sys.stdout) -> int:
    kiosks = args.kiosk or [shutil.which("kiosk") or sys.argv[0]]
    times: dict[str, list[float]] = {k: [] for k in kiosks}
    for _ in range(args.runs):
        for kiosk in kiosks:
            times[kiosk].append(cpu_seconds([kiosk, *args.words]))
    out.write(f"`kiosk {' '.join(args.words)}`, CPU time (user + system) over {args.runs} runs each, alternating\n")
    out.write("| kiosk | median s | min s | max s |\n|---|---:|---:|---:|\n")
    for kiosk, t in times.items():
        out.write(f"| {kiosk} | {statistics.median(t):.3f} | {min(t):.3f} | {max(t):.3f} |\n")
    return 0
