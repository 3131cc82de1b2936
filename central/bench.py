"""Drain rate of the reference central: identifications per second it stores, by batch size.

Starts the real server (a subprocess, SQLite with ``synchronous=FULL``) and posts a backlog of
fresh identifications from one client, one batch after another as a kiosk's forwarder does, for
several batch sizes side by side in one run. The kiosk's own drain benchmark (outbox + forwarder)
is bounded by this figure.

    python -m central.bench --count 10000 --batch 1 100 250 500
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid

import requests

from central.process import start_subprocess

TOKEN = "bench-token"


def _batch(size: int, first_seq: int) -> list[dict]:
    return [
        {
            "id": str(uuid.uuid4()),
            "seq": first_seq + i,
            "contract": f"{(first_seq + i) % 10**10 or 1:010d}",
            "card_issue": 1,
            "scanned_at": "2024-05-02T09:15:00.000000+00:00",
            "clock_synced": True,
            "symbology": "Code128",
        }
        for i in range(size)
    ]


def drain(url: str, count: int, batch_size: int) -> dict:
    """Post ``count`` new identifications in batches of ``batch_size``; rate and latency per batch."""
    batches = [_batch(min(batch_size, count - start), start + 1) for start in range(0, count, batch_size)]
    latencies = []
    with requests.Session() as session:
        session.headers["Authorization"] = f"Bearer {TOKEN}"
        began = time.perf_counter()
        for records in batches:
            t0 = time.perf_counter()
            response = session.post(
                url + "/v1/identifications", json={"kiosk": {"id": "bench", "site": ""}, "identifications": records}, timeout=(5, 60)
            )
            response.raise_for_status()
            if any(r["status"] != "accepted" for r in response.json()["results"]):
                raise RuntimeError("the central did not accept every identification")
            latencies.append(time.perf_counter() - t0)
        elapsed = time.perf_counter() - began
    latencies.sort()
    return {
        "batch": batch_size,
        "count": count,
        "seconds": elapsed,
        "per_second": count / elapsed,
        "p50_ms": 1000 * statistics.median(latencies),
        "p99_ms": 1000 * latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))],
    }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--count", type=int, default=10_000, help="identifications per batch size (default 10000)")
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 100, 250, 500], help="batch sizes to compare (default 1 100 250 500)")


def main(args: argparse.Namespace) -> int:
    print(f"{'batch':>6} {'count':>7} {'seconds':>8} {'ident/s':>9} {'p50 ms':>8} {'p99 ms':>8}")
    with tempfile.TemporaryDirectory() as folder:
        for size in args.batch:
            # A fresh server and database per size, so that each starts from the same state.
            with start_subprocess(f"{folder}/central-{size}.db", TOKEN) as central:
                # Batches of 1 are slow (one fsync each): fewer of them give the rate as well.
                count = min(args.count, 1000) if size == 1 else args.count
                r = drain(central.url, count, size)
            print(
                f"{r['batch']:>6} {r['count']:>7} {r['seconds']:>8.2f} {r['per_second']:>9.0f} {r['p50_ms']:>8.1f} {r['p99_ms']:>8.1f}",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m central.bench", description=__doc__.strip().splitlines()[0])
    add_arguments(parser)
    sys.exit(main(parser.parse_args()))
