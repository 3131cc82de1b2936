"""The central at fleet scale: ingest rate, p99 at a target rate, and a reconnect storm, per central.

For each central side by side in one run (the SQLite reference and the PostgreSQL production
central, :data:`central.loadtest.centrals.CENTRALS`), three phases through the HTTP API, each with
its own kiosk ids, then one check that every identification is held exactly once with no gap:

1. ingest: a few kiosks with long backlogs drain as fast as the central takes them, in batches of 100;
2. steady: a batch of 100 arrives every 100/rate seconds (open loop) for some seconds: the rate
   achieved and the request latency p50/p99 (the must-reach: 5,000/s with p99 < 250 ms);
3. storm: every kiosk starts at once with a backlog (default 10,000 x 10), lost answers and resends
   injected, one worker SIGKILLed part-way: time to drain, requests by status, retries, Retry-After.

::

    kiosk bench central --kiosks 1000 --per-kiosk 10
    kiosk bench central --central sqlite --central postgresql --rate 5000 --seconds 20 --json
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import TextIO


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--central",
        action="append",
        choices=("sqlite", "sqlite-workers", "postgresql"),
        help="a central to measure (repeatable; default all three, side by side: the SQLite reference, the production "
        "server on SQLite and on PostgreSQL, 2 workers each; PostgreSQL not installed is reported and left out)",
    )
    p.add_argument("--ingest", type=int, default=20_000, help="identifications drained as fast as possible (default 20000; 0 skips)")
    p.add_argument("--ingest-kiosks", type=int, default=20, help="kiosks sharing the ingest backlog (default 20)")
    p.add_argument("--rate", type=float, default=5000, help="steady load, identifications per second (default 5000)")
    p.add_argument("--seconds", type=float, default=20, help="length of the steady load (default 20; 0 skips it)")
    p.add_argument("--steady-kiosks", type=int, default=200, help="kiosks the steady load arrives at in turn (default 200)")
    p.add_argument("--kiosks", type=int, default=10_000, help="kiosks in the storm (default 10000; 0 skips it)")
    p.add_argument("--per-kiosk", type=int, default=10, help="identifications each storm kiosk holds (default 10)")
    p.add_argument("--lost", type=float, default=0.01, help="share of answered batches whose answer is dropped and resent (default 0.01)")
    p.add_argument("--resend", type=float, default=0.01, help="share of acknowledged records sent again later (default 0.01)")
    p.add_argument(
        "--kill-at", type=float, default=0.3, help="SIGKILL a worker when this share of the storm is held (default 0.3; 0: none)"
    )
    p.add_argument("--connections", type=int, default=200, help="sockets the simulated fleet opens at most (default 200)")
    p.add_argument("--seed", type=int, default=0, help="seed of the jitter and the injected faults (default 0)")
    p.add_argument("--dir", help="where the centrals' files go (default: a new folder in the current directory, this disk)")
    p.add_argument("--json", action="store_true", help="print the results as one JSON object")


def _row(central: str, phase: str, result) -> str:
    statuses = " ".join(f"{k}:{v}" for k, v in result.requests_by_status.items())
    return (
        f"{central:<20} {phase:<7} {result.kiosks:>6} {result.identifications:>7} {result.seconds:>8.2f} {result.per_second:>8.0f} "
        f"{1000 * result.latency.p50_s:>7.1f} {1000 * result.latency.p99_s:>7.1f} {result.retries:>7}  {statuses}"
    )


#: The table's head, aligned with :func:`_row`.
HEADER = " ".join(
    (f"{'central':<20}", f"{'phase':<7}", f"{'kiosks':>6}", f"{'idents':>7}", f"{'seconds':>8}", f"{'ident/s':>8}")
    + (f"{'p50 ms':>7}", f"{'p99 ms':>7}", f"{'retries':>7}", " requests")
)


def measure(factory, folder: Path, args: argparse.Namespace, out: TextIO) -> dict:
    """Every phase against one central; a dict of the results (RunResult and Verdict as dicts)."""
    from central.loadtest.driver import ClientFaults, drain, steady
    from central.loadtest.kiosks import build_fleet, kiosk_ids
    from central.loadtest.verify import NotExactlyOnce, verify

    report: dict = {}
    fleets = []
    with factory(folder) as central:
        report["central"] = central.name
        if args.ingest:
            per = max(1, args.ingest // args.ingest_kiosks)
            fleet = build_fleet(central.credentials(kiosk_ids("ingest", args.ingest_kiosks)), per, seed=args.seed)
            fleets += fleet
            r = drain(central.url, fleet, connections=args.connections, seed=args.seed)
            report["ingest"] = asdict(r) | {"per_second": r.per_second, "ok": r.ok}
            out.write(_row(central.name, "ingest", r) + "\n")
        if args.seconds:
            fleet = build_fleet(central.credentials(kiosk_ids("steady", args.steady_kiosks)), 0, seed=args.seed + 1)
            fleets += fleet
            r = steady(central.url, fleet, rate_per_s=args.rate, seconds=args.seconds, connections=args.connections, seed=args.seed)
            report["steady"] = asdict(r) | {"per_second": r.per_second, "target_per_second": args.rate, "ok": r.ok}
            out.write(_row(central.name, "steady", r) + f"  (target {args.rate:.0f}/s)\n")
        if args.kiosks:
            fleet = build_fleet(central.credentials(kiosk_ids("storm", args.kiosks)), args.per_kiosk, seed=args.seed + 2)
            fleets += fleet
            r = drain(
                central.url,
                fleet,
                faults=ClientFaults(args.lost, args.resend),
                connections=args.connections,
                kill=central.kill_worker if args.kill_at else None,
                kill_after_share=args.kill_at,
                seed=args.seed,
            )
            report["storm"] = asdict(r) | {"per_second": r.per_second, "ok": r.ok}
            out.write(_row(central.name, "storm", r) + "\n")
            out.write(
                f"{'':<20} storm: {r.lost_answers} answers lost and resent, {r.resent_records} records resent, "
                f"{r.accepted} accepted, {r.duplicate} duplicate, {r.rejected} rejected, {r.doubly_accepted} accepted twice\n"
                f"{'':<20} Retry-After seen {r.retry_after.count}x (median {r.retry_after.p50_s:g} s, max {r.retry_after.max_s:g} s); "
                f"waits median {r.waits.p50_s:.2f} s, max {r.waits.max_s:.2f} s; socket wait p99 {r.socket_wait.p99_s:.2f} s\n"
            )
            if r.killed:
                out.write(f"{'':<20} at {r.killed_at_s:.2f} s: {r.killed}\n")
        for name in ("ingest", "steady", "storm"):
            if report.get(name, {}).get("problems"):
                out.write(f"{'':<20} {name} problems: {report[name]['problems']}\n")
        began = time.perf_counter()
        try:
            verdict = verify(central.url, central.admin_token, fleets)
        except NotExactlyOnce as e:
            verdict = e.verdict
        report["verdict"] = asdict(verdict) | {"ok": verdict.ok, "seconds": time.perf_counter() - began}
        out.write(f"{'':<20} verified in {time.perf_counter() - began:.1f} s: {verdict.summary()}\n")
    out.flush()
    return report


def main(args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    try:
        from central.loadtest.centrals import CENTRALS
        from central.pgcluster import PostgresMissing
    except ImportError as e:  # aiohttp: the central's requirements, not the kiosk's
        out.write(f"kiosk: the load test needs the central's packages (pip install -r requirements-central.txt): {e}\n")
        return 2
    # SIGTERM (a CI job cancelled, `kill`) unwinds like Ctrl-C: the centrals and the PostgreSQL
    # cluster it started are stopped and their folders removed, not left running.
    signal.signal(signal.SIGTERM, _stop)
    try:
        return _measure_all(args, out, CENTRALS, PostgresMissing)
    except _Stopped:
        out.write("kiosk bench central: stopped (SIGTERM); every central it started is stopped\n")
        return 128 + signal.SIGTERM


class _Stopped(BaseException):
    """SIGTERM arrived: unwind every ``with`` (BaseException, so no ``except Exception`` keeps it)."""


def _stop(signum: int, frame: object) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # once: the unwinding itself must not be cut short
    raise _Stopped


def _measure_all(args: argparse.Namespace, out: TextIO, CENTRALS: dict, PostgresMissing: type[Exception]) -> int:
    names = args.central or list(CENTRALS)
    reports = []
    ok = True
    if not args.json:
        out.write(HEADER + "\n")
    with tempfile.TemporaryDirectory(prefix="bench-central-", dir=args.dir or ".") as folder:
        for name in names:
            try:
                report = measure(CENTRALS[name], Path(folder) / name, args, sys.stderr if args.json else out)
            except PostgresMissing as e:
                (sys.stderr if args.json else out).write(f"{name:<20} left out: {e}\n")
                reports.append({"central": name, "left_out": str(e)})
                continue
            reports.append(report)
            ok = ok and report["verdict"]["ok"] and all(report.get(p, {}).get("ok", True) for p in ("ingest", "steady", "storm"))
    if args.json:
        out.write(json.dumps({"centrals": reports}, indent=2) + "\n")
    return 0 if ok else 1
