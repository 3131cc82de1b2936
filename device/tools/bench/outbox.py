"""Outbox and forwarder costs: commit latency with synchronous=FULL, and how fast a backlog drains.

Side by side in one run: commit latency with ``synchronous=FULL`` (what the kiosk uses: an fsync
per identification) and, as the baseline, ``NORMAL`` (no fsync of the database per commit; may
lose the last commits on a power cut). Both include raising the high-water mark beside the
database (one ``fdatasync`` per commit, :mod:`device.outbox.highwater`). Then a backlog of
identifications drains into a central (the reference central started here, or ``--url``/``--token``
of a running one) in batches, with the process's resident memory before, at its highest during, and
after the drain::

    kiosk bench outbox                       # temp dir in the current directory (this disk)
    kiosk bench outbox --backlog 10000 --batch-size 100 --url http://127.0.0.1:8080 --token T

The temporary files go in ``--dir`` (default: a new folder in the current directory, so the
numbers are this disk's, not a RAM-backed /tmp) and are removed afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import TextIO

from device.card import Card
from device.clock import SystemClock
from device.config import ApiSection, Config
from device.forwarder import OK, Forwarder
from device.outbox import Outbox

CARD = Card("v1", "0012345678", 1)
BENCH_TOKEN = "bench-token"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dir", help="where the temporary outbox goes (default: a new folder in the current directory)")
    p.add_argument("--commits", type=int, default=500, help="commits timed per setting (default 500)")
    p.add_argument("--backlog", type=int, default=10_000, help="identifications in the backlog to drain (default 10000; 0 skips the drain)")
    p.add_argument("--batch-size", type=int, default=100, help="identifications per request (default 100, as api.batch_size)")
    p.add_argument("--url", help="a running central to drain into (default: start the reference central here)")
    p.add_argument("--token", default="", help="its bearer token (with --url)")
    p.add_argument("--json", action="store_true", help="print the results as one JSON object")


def rss_kib() -> int | None:
    """This process's resident memory (VmRSS) in KiB, or None where /proc is not there."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def filesystem_of(path: Path) -> str:
    """The file system type holding ``path`` (from /proc/mounts), e.g. ext4 or tmpfs."""
    best, kind = "", "unknown"
    try:
        with open("/proc/mounts") as f:
            for line in f:
                _, mount, fstype, *_ = line.split()
                if str(path.resolve()).startswith(mount.rstrip("/") + "/") or str(path.resolve()) == mount:
                    if len(mount) > len(best):
                        best, kind = mount, fstype
    except OSError:
        pass
    return kind


def _percentile(sorted_values: list[float], q: float) -> float:
    index = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[index]


def measure_commits(folder: Path, n: int, synchronous: str) -> dict:
    """Time ``n`` commits on a fresh outbox with the given ``PRAGMA synchronous``."""
    box = Outbox(folder / f"commit-{synchronous.lower()}.db", kiosk_id="bench", site="bench")
    if synchronous != "FULL":
        box.db.execute(f"PRAGMA synchronous = {synchronous}")  # the baseline only; the kiosk never does this
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        box.commit(CARD, symbology="Code128", decoder="zxing-cpp")
        times.append((time.perf_counter() - t0) * 1000)
    box.close()
    times.sort()
    return {
        "synchronous": synchronous,
        "commits": n,
        "p50_ms": statistics.median(times),
        "p99_ms": _percentile(times, 0.99),
        "max_ms": times[-1],
        "per_second": n / (sum(times) / 1000),
    }


def fill_backlog(path: Path, n: int) -> None:
    """Commit ``n`` identifications quickly (setup, not measured: no fsync per commit)."""
    box = Outbox(path, kiosk_id="bench", site="bench")
    box.db.execute("PRAGMA synchronous = OFF")
    for _ in range(n):
        box.commit(CARD, symbology="Code128", decoder="zxing-cpp")
    box.close()


def measure_drain(path: Path, url: str, token: str, batch_size: int) -> dict:
    """Drain the outbox at ``path`` into ``url`` with the real forwarder (synchronous=FULL)."""
    box = Outbox(path, kiosk_id="bench", site="bench", clock=SystemClock())
    api = ApiSection(url=url, token=token, batch_size=batch_size, backoff_base_s=0.05, backoff_cap_s=2.0)
    forwarder = Forwarder.from_config(Config(api=api), box)
    backlog = box.stats().pending
    rss_before = rss_kib()
    rss_peak = rss_before or 0
    requests_made = failures = 0
    t0 = time.perf_counter()
    deadline = t0 + max(60.0, backlog / 50)  # a stuck central must not hang the benchmark
    while time.perf_counter() < deadline:
        outcome = forwarder.deliver_once()
        if outcome.kind == OK:
            requests_made += 1
        elif outcome.sent:
            failures += 1
        rss_peak = max(rss_peak, rss_kib() or 0)
        if outcome.kind != OK and box.seconds_until_due() is None:
            break
        if outcome.kind != OK:
            time.sleep(min(outcome.wait_s, 0.5))  # a benchmark loop, not a test: waiting is the point
    elapsed = time.perf_counter() - t0
    stats = box.stats()
    box.close()
    return {
        "backlog": backlog,
        "batch_size": batch_size,
        "delivered": stats.delivered,
        "left_pending": stats.pending,
        "dead": stats.dead,
        "seconds": elapsed,
        "per_second": stats.delivered / elapsed if elapsed > 0 else float("inf"),
        "requests": requests_made,
        "failed_requests": failures,
        "rss_kib_before": rss_before,
        "rss_kib_peak": rss_peak,
        "rss_kib_after": rss_kib(),
        "last_error": forwarder.status().last_error,
    }


def main(args, out: TextIO = sys.stdout) -> int:
    folder = Path(args.dir) if args.dir else None
    owned = folder is None
    if folder is None:
        folder = Path(tempfile.mkdtemp(prefix="kiosk-bench-outbox-", dir=os.getcwd()))
    else:
        folder.mkdir(parents=True, exist_ok=True)
    result: dict = {"dir": str(folder), "filesystem": filesystem_of(folder)}
    central = None
    try:
        result["commit"] = [measure_commits(folder, args.commits, s) for s in ("FULL", "NORMAL")]
        if args.backlog > 0:
            url, token = args.url, args.token
            if not url:
                from central.process import start_subprocess

                (folder / "central").mkdir()
                central = start_subprocess(folder / "central", BENCH_TOKEN)
                url, token = central.url, BENCH_TOKEN
            fill_backlog(folder / "drain.db", args.backlog)
            result["drain"] = measure_drain(folder / "drain.db", url, token, args.batch_size)
            result["drain"]["central"] = "reference central (started here)" if central else url
    finally:
        if central is not None:
            central.stop()
        if owned:
            shutil.rmtree(folder, ignore_errors=True)
    if args.json:
        out.write(json.dumps(result, indent=2) + "\n")
    else:
        report(result, out)
    drain = result.get("drain")
    return 0 if drain is None or drain["left_pending"] == 0 else 1


def report(result: dict, out: TextIO) -> None:
    out.write(f"outbox in {result['dir']} ({result['filesystem']})\n")
    out.write(f"{'commit, synchronous=':<22} {'commits':>8} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'per s':>8}\n")
    for r in result["commit"]:
        out.write(
            f"{r['synchronous']:<22} {r['commits']:>8} {r['p50_ms']:>8.2f} {r['p99_ms']:>8.2f} {r['max_ms']:>8.2f} "
            f"{r['per_second']:>8.0f}\n"
        )
    full, normal = result["commit"]
    if normal["p50_ms"] > 0:
        out.write(f"FULL / NORMAL p50: {full['p50_ms'] / normal['p50_ms']:.1f}x (the price of surviving a power cut)\n")
    d = result.get("drain")
    if d:

        def mib(kib: float | None) -> str:
            return f"{kib / 1024:.1f} MiB" if kib else "?"

        out.write(
            f"drain into {d['central']}: {d['delivered']} of {d['backlog']} delivered in {d['seconds']:.2f} s = "
            f"{d['per_second']:.0f}/s ({d['requests']} requests of {d['batch_size']}, {d['failed_requests']} failed)\n"
            f"memory (RSS): before {mib(d['rss_kib_before'])}, peak {mib(d['rss_kib_peak'])}, after {mib(d['rss_kib_after'])}\n"
        )
        if d["left_pending"]:
            out.write(f"NOT DRAINED: {d['left_pending']} still pending; last error: {d['last_error']}\n")
