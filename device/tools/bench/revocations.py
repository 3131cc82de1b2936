"""The replaced-card list at scale: a complete list synced and applied, a delta, the check per card,
and the scan loop's frame times while a sync runs, side by side in one run.

The reference central is started here (its database filled with ``--contracts`` re-issued
contracts in one transaction before it starts), then the kiosk's own sync
(:class:`~device.revocations.sync.RevocationSync`: fetch through the central client, verify,
parse, apply in one transaction) runs against it, exactly as in the daemon::

    kiosk bench revocations                           # 1,000,000 contracts, a delta of 1,000
    kiosk bench revocations --contracts 100000 --json

Steps, each timed: the complete list (answer bytes, copy size on disk); the same bytes again,
split into fetch, verify, parse and apply; a delta of ``--delta`` re-issues (recorded with PUTs);
``--checks`` look-ups against the copy (half of them replaced contracts); and the pipeline's time
per frame on a rendered counter video, alone, then while a complete list (the answer fetched
once) is verified, parsed and applied over and over in another thread: parsed and applied in
the daemon's own interpreter (sharing the GIL with the scan loop, as before), then in a child
process (as the daemon does now). The temporary files go in ``--dir`` (default: a new folder in the
current directory, so the disk is this machine's).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import TextIO

BENCH_TOKEN = "bench-token"
ADMIN_TOKEN = "bench-admin"


#: The sizes a run takes: option, default, what it counts.
SIZES = (
    ("--contracts", 1_000_000, "contracts in the complete list"),
    ("--delta", 1000, "re-issues in the delta"),
    ("--checks", 100_000, "look-ups timed"),
    ("--frames", 150, "video frames timed per side of the frame-time comparison, at most (0 skips it)"),
    ("--rounds", 3, "rounds of the frame-time comparison (alone, sync in the daemon, sync in a child)"),
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dir", help="where the temporary files go (default: a new folder in the current directory)")
    for flag, default, what in SIZES:
        p.add_argument(flag, type=int, default=default, help=f"{what} (default {default})")
    p.add_argument("--json", action="store_true", help="print the results as one JSON object")


def _contract(i: int) -> str:
    return f"{i * 7 + 1:010d}"


def _percentiles(values: list[float]) -> dict:
    ordered = sorted(values)
    return {
        "p50_ms": 1000 * statistics.median(ordered),
        "p95_ms": 1000 * ordered[int(0.95 * (len(ordered) - 1))],
        "max_ms": 1000 * ordered[-1],
    }


def main(args, out: TextIO = sys.stdout) -> int:
    """Run the benchmark; 0, or 1 when a step failed (said on stderr)."""
    folder = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="bench-revocations-", dir="."))
    folder.mkdir(parents=True, exist_ok=True)
    try:
        results = _run(args, folder, out)
    finally:
        if not args.dir:
            shutil.rmtree(folder, ignore_errors=True)
    if results is None:
        return 1
    if args.json:
        print(json.dumps(results), file=out)
    return 0


def _say(args, out: TextIO, text: str) -> None:
    if not args.json:
        print(text, file=out, flush=True)


def _run(args, folder: Path, out: TextIO) -> dict | None:
    import requests

    from central.process import start_subprocess
    from central.storage.sqlite import SqliteStore as Store
    from device.card import Card
    from device.central_client import REPLACED_CARDS_PATH, CentralClient
    from device.revocations import document
    from device.revocations.apply import APPLIED
    from device.revocations.store import ReplacedCards
    from device.revocations.sync import RevocationSync

    results: dict = {"contracts": args.contracts, "delta": args.delta, "machine": _machine()}
    _say(args, out, f"machine: {results['machine']}")
    private, public = document.generate_key_pair()
    (folder / "list.key").write_bytes(private)
    (folder / "list.pub").write_bytes(public)
    (folder / "admin").write_text(ADMIN_TOKEN + "\n")
    started = time.perf_counter()
    store = Store(folder / "central.db")
    store.reissue_many([(_contract(i), 2) for i in range(args.contracts)])
    store.close()
    _say(args, out, f"central database filled with {args.contracts:,} re-issued contracts in {time.perf_counter() - started:.1f} s")

    with start_subprocess(
        folder / "central.db", BENCH_TOKEN, signing_key=str(folder / "list.key"), admin_token_file=str(folder / "admin")
    ) as central:
        client = CentralClient(central.url, token=BENCH_TOKEN, connect_timeout_s=5, read_timeout_s=60)
        key = document.load_public_key(folder / "list.pub")

        def new_sync(path: Path) -> RevocationSync:
            return RevocationSync(
                ReplacedCards(path), client, key, interval_s=900, max_age_s=86400, max_bytes=256 * 1024 * 1024, deadline_s=300
            )

        # 1. The complete list, as the daemon's first sync gets it.
        sync = new_sync(folder / "copy.db")
        t0 = time.perf_counter()
        result = sync.sync_once()
        complete_s = time.perf_counter() - t0
        if result.kind != APPLIED:
            print(f"kiosk bench revocations: the complete sync failed: {result.error}", file=sys.stderr)
            return None
        info = sync.copy.info()
        results["complete"] = {"seconds": complete_s, "contracts": result.changed, "copy_bytes": info["file_bytes"]}
        _say(
            args,
            out,
            f"complete list: {result.changed:,} contracts synced and applied in {complete_s:.2f} s; "
            f"copy {info['file_bytes'] / 2**20:.1f} MiB on disk",
        )

        # 2. The same, step by step (fetch, verify, parse, apply into a fresh copy).
        t = time.perf_counter()
        answer = client.get_signed(f"{REPLACED_CARDS_PATH}?since=0", max_bytes=256 * 1024 * 1024, deadline_s=300)
        fetch_s = time.perf_counter() - t
        t = time.perf_counter()
        problem = document.verify(
            key, answer.body, answer.headers.get(document.KEY_ID_HEADER), answer.headers.get(document.SIGNATURE_HEADER)
        )
        verify_s = time.perf_counter() - t
        t = time.perf_counter()
        listed = document.parse(answer.body)
        parse_s = time.perf_counter() - t
        fresh = ReplacedCards(folder / "fresh.db")
        t = time.perf_counter()
        fresh.apply(listed, key_id=sync.key_id)
        apply_s = time.perf_counter() - t
        fresh.close()
        results["steps"] = {
            "answer_bytes": len(answer.body),
            "fetch_s": fetch_s,
            "verify_s": verify_s,
            "parse_s": parse_s,
            "apply_s": apply_s,
            "verified": problem is None,
        }
        _say(
            args,
            out,
            f"  steps: answer {len(answer.body) / 1e6:.1f} MB; "
            f"fetch {fetch_s:.2f} s, verify {verify_s:.3f} s, parse {parse_s:.2f} s, apply {apply_s:.2f} s",
        )

        # 3. A delta of --delta re-issues.
        session = requests.Session()
        t = time.perf_counter()
        for i in range(args.delta):
            session.put(
                f"{central.url}/v1/cards/{_contract(args.contracts + i)}",
                json={"current_issue": 3},
                headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
                timeout=30,
            ).raise_for_status()
        record_s = time.perf_counter() - t
        t0 = time.perf_counter()
        result = sync.sync_once()
        delta_s = time.perf_counter() - t0
        results["delta_sync"] = {"seconds": delta_s, "contracts": result.changed, "kind": result.kind, "recorded_s": record_s}
        _say(
            args,
            out,
            f"delta: {result.changed:,} re-issues ({result.kind}) synced and applied in {delta_s:.3f} s "
            f"(recording them at the central took {record_s:.1f} s)",
        )

        # 4. The check per card, as the scan loop makes it.
        cards = [Card("v1", _contract(i * 2 if i % 2 else args.contracts * 3 + i), 1) for i in range(args.checks)]
        copy = sync.copy
        t = time.perf_counter()
        refused = sum(copy.replaced_by(card) is not None for card in cards)
        check_us = 1e6 * (time.perf_counter() - t) / len(cards)
        results["check"] = {"us_per_card": check_us, "checks": len(cards), "refused": refused}
        _say(args, out, f"check: {check_us:.1f} us per card over {len(cards):,} look-ups ({refused:,} replaced)")

        # 5. The pipeline's frame times, alone and while complete syncs run.
        if args.frames:
            # The answer fetched once: the central runs on this machine only here (a kiosk's is
            # elsewhere), and building a million-row answer per sync would take the scan loop's CPU.
            results["frames"] = _frame_times(args, folder, out, lambda: new_sync(folder / "busy.db"), answer)
    return results


def _frame_times(args, folder: Path, out: TextIO, make_sync, answer) -> dict:
    from device.camera.file import iter_frames
    from device.config import Config
    from device.pipeline import Pipeline
    from device.tools.synth.video import Presentation, write_presentation_video

    video = folder / "counter.avi"
    write_presentation_video(video, [Presentation.card("0012345678", 1), Presentation.card("4000000017", 2)], seed=1)
    # At most --frames frames: whichever of the two runs out first ends the pairing.
    frames = [f for _, f in zip(range(args.frames), iter_frames(str(video)), strict=False)]

    def timed() -> list[float]:
        pipeline = Pipeline.from_config(Config())
        times = []
        for frame in frames:
            t = time.perf_counter()
            pipeline.frame(frame.image, frame.monotonic)
            times.append(time.perf_counter() - t)
        return times

    def during(in_process_max_bytes: int | None) -> tuple[list[float], list[float]]:
        stop = threading.Event()
        syncs: list[float] = []

        def keep_syncing():
            from device.revocations.apply import lower_priority

            lower_priority()  # as the daemon's sync thread does
            while not stop.is_set():
                sync = make_sync()
                sync.in_process_max_bytes = in_process_max_bytes
                t = time.perf_counter()
                sync.accept(answer, None, 0)  # verify, parse, apply: all of a complete sync but the fetch
                syncs.append(time.perf_counter() - t)
                sync.copy.close()
                os.unlink(sync.copy.path)
                for suffix in ("-wal", "-shm"):
                    Path(f"{sync.copy.path}{suffix}").unlink(missing_ok=True)

        worker = threading.Thread(target=keep_syncing, daemon=True)
        worker.start()
        time.sleep(0.5)  # a benchmark, not a test: let the first sync get under way
        busy = timed()
        stop.set()
        worker.join()
        return busy, syncs

    from device.revocations.apply import IN_PROCESS_MAX_BYTES

    # Side by side, interleaved (the machine is shared: its load drifts): alone, the whole sync in
    # the daemon's interpreter (as before), then parse and apply in a child (as now), --rounds times.
    alone, in_daemon, in_child, daemon_syncs, child_syncs = [], [], [], [], []
    for _ in range(args.rounds):
        alone += timed()
        busy, syncs = during(None)
        in_daemon += busy
        daemon_syncs += syncs
        busy, syncs = during(IN_PROCESS_MAX_BYTES)
        in_child += busy
        child_syncs += syncs
    result = {
        "frames": len(alone),
        "alone": _percentiles(alone),
        "during_sync_in_daemon": _percentiles(in_daemon),
        "during_sync": _percentiles(in_child),
        "syncs_meanwhile": len(child_syncs),
        "sync_s_in_daemon": statistics.median(daemon_syncs),
        "sync_s_in_child": statistics.median(child_syncs),
    }
    a, d, c = result["alone"], result["during_sync_in_daemon"], result["during_sync"]
    _say(
        args,
        out,
        f"frame times ({len(frames)} frames x {args.rounds} rounds), p50 / p95 / max ms: "
        f"alone {a['p50_ms']:.1f} / {a['p95_ms']:.1f} / {a['max_ms']:.1f}; "
        f"during complete syncs parsed and applied in the daemon {d['p50_ms']:.1f} / {d['p95_ms']:.1f} / {d['max_ms']:.1f}, "
        f"in a child {c['p50_ms']:.1f} / {c['p95_ms']:.1f} / {c['max_ms']:.1f} "
        f"(verify, parse and apply of the complete list took {result['sync_s_in_daemon']:.1f} s / {result['sync_s_in_child']:.1f} s)",
    )
    return result


def _machine() -> str:
    import platform

    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{platform.machine()}, {os.cpu_count()} cores, {model or 'unknown CPU'}"
