"""CPU time of a technician's command, e.g. ``kiosk status``, for one or more installs side by side.

A technician types ``kiosk status`` all day, on a Pi several times slower than this machine, so
what it loads matters. Each install's ``kiosk`` runs the command in turn, alternating (these
machines are shared and noisy), and the child's user + system CPU time is measured. With
``--baseline``, a bare ``python -c CODE`` is timed in the same rounds, and each median is also
given as a multiple of its (the goal "at most 5x a bare interpreter" is read off that column).
Words after ``--`` are the command's own::

    kiosk bench command --kiosk /opt/old/venv/bin/kiosk --kiosk .venv/bin/kiosk --runs 20 status
    kiosk bench command --baseline "import json, sqlite3" --kiosk .venv/bin/kiosk -- status --config kiosk.toml
"""

from __future__ import annotations

import argparse
import resource
import shutil
import statistics
import subprocess
import sys
from dataclasses import dataclass, field
from typing import TextIO


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--kiosk",
        action="append",
        default=[],
        metavar="PATH",
        help="a kiosk executable to measure (repeatable; default: the kiosk on PATH)",
    )
    p.add_argument("--runs", type=int, default=20, help="runs per executable (default 20)")
    p.add_argument(
        "--baseline",
        metavar="CODE",
        help='also time a bare `python -c CODE` in the same rounds (e.g. "import json, sqlite3") and compare each median to its',
    )
    p.add_argument("--python", default=sys.executable, metavar="PATH", help="the interpreter --baseline runs (default: this one)")
    p.add_argument("words", nargs="+", metavar="WORD", help="the command and its arguments, e.g. status (after -- when they have options)")


@dataclass
class Timed:
    """One command line measured: its row's label, what runs, and the CPU seconds of each run."""

    label: str
    argv: list[str]
    seconds: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)


def cpu_seconds(argv: list[str]) -> float:
    """User + system CPU time of one run of ``argv`` (its output discarded)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def measure(rows: list[Timed], runs: int) -> None:
    """``runs`` rounds, each running every row once in turn: a noisy minute weighs on all alike."""
    for _ in range(runs):
        for row in rows:
            row.seconds.append(cpu_seconds(row.argv))


def table(rows: list[Timed], baseline: Timed | None) -> str:
    """The Markdown table: median, min and max per row, and with a baseline each median as a multiple of its.

    >>> print(table([Timed("a", [], [0.2, 0.4, 0.3]), Timed("python", [], [0.1, 0.1, 0.1])], Timed("python", [], [0.1, 0.1, 0.1])))
    | command | median s | min s | max s | x baseline |
    |---|---:|---:|---:|---:|
    | a | 0.300 | 0.200 | 0.400 | 3.0 |
    | python | 0.100 | 0.100 | 0.100 | 1.0 |
    """
    head = "| command | median s | min s | max s |" + (" x baseline |" if baseline else "")
    out = [head, "|---|---:|---:|---:|" + ("---:|" if baseline else "")]
    for row in rows:
        ratio = f" {row.median / baseline.median:.1f} |" if baseline else ""
        out.append(f"| {row.label} | {row.median:.3f} | {min(row.seconds):.3f} | {max(row.seconds):.3f} |{ratio}")
    return "\n".join(out)


def main(args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    kiosks = args.kiosk or [shutil.which("kiosk") or sys.argv[0]]
    rows = [Timed(kiosk, [kiosk, *args.words]) for kiosk in kiosks]
    baseline = None
    if args.baseline:
        baseline = Timed(f'{args.python} -c "{args.baseline}"', [args.python, "-c", args.baseline])
        rows.append(baseline)
    measure(rows, args.runs)
    out.write(f"`kiosk {' '.join(args.words)}`, CPU time (user + system) over {args.runs} runs each, alternating\n")
    out.write(table(rows, baseline) + "\n")
    return 0
