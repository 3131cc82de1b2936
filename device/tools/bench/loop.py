"""Scan-loop cost on a video: frames per second, CPU per frame, share of frames the gate skipped.

Side by side in one run: the kiosk pipeline as configured (gate, locate, decode, card check) and,
as the baseline, zxing-cpp on every whole frame of the same video, restricted to the same
symbologies. Frames are decoded from the file before timing, so the numbers are the scan loop's
own cost, not video decoding.

Then the whole daemon (:func:`device.assembly.build_kiosk`, a reference central in its own
process) on the same video with ``metrics.textfile`` off and on, alternating (``--metrics-rounds``
of each), the file rewritten at every status turn (``metrics.interval_s`` 1): the scan loop's own
time per frame, from a frame handed to it to its asking for the next (pipeline, commit, events;
not the wait for the camera), which the metrics must not raise::

    kiosk bench loop --video counter.avi
    kiosk bench loop --video counter.avi --metrics-rounds 0     # the pipeline rows only
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import cv2


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--video", required=True, help="a video file (e.g. made by `kiosk demo` or a camera recording)")
    p.add_argument("--max-frames", type=int, default=2000, help="frames to measure at most (default 2000)")
    p.add_argument("--fps", type=float, default=0.0, help="timeline for the gate (default: the video's own fps)")
    p.add_argument("--config", metavar="PATH", help="kiosk config whose [scan] settings to use (default: built-in defaults)")
    p.add_argument(
        "--metrics-rounds",
        type=int,
        default=2,
        help="daemon runs with metrics.textfile off, then on, this many times each (default 2; 0: none)",
    )
    p.add_argument(
        "--pace",
        choices=("realtime", "fast"),
        default="realtime",
        help="how the daemon runs play the video: at its frame rate, as a camera (default), or as fast as scanned",
    )


def _load_frames(path: str, limit: int) -> tuple[list, float]:
    cap = cv2.VideoCapture(path)
    if not cap.isOpened():
        raise SystemExit(f"kiosk bench loop: cannot open video {path!r}")
    fps = cap.get(cv2.CAP_PROP_FPS) or 15.0
    frames = []
    while len(frames) < limit:
        ok, image = cap.read()
        if not ok:
            break
        frames.append(image)
    cap.release()
    if not frames:
        raise SystemExit(f"kiosk bench loop: no frames in {path!r}")
    return frames, fps


def measure_pipeline(frames: list, fps: float, cfg) -> dict:
    """Run the pipeline as the daemon does (grey conversion included) and time every frame."""
    from device.pipeline import Pipeline

    pipeline = Pipeline.from_config(cfg)
    skipped, reads, cpu_ms = 0, 0, []
    wall0 = time.perf_counter()
    for i, image in enumerate(frames):
        c0 = time.process_time()
        result = pipeline.frame(image, i / fps)
        cpu_ms.append((time.process_time() - c0) * 1000)
        skipped += not result.decoded
        reads += len(result.readings)
    wall = time.perf_counter() - wall0
    return _summary("pipeline", len(frames), wall, cpu_ms, skipped, reads)


def measure_raw_zxing(frames: list, symbologies) -> dict:
    """The baseline: zxing-cpp on every whole frame, as a naive loop would."""
    from device.vision.decoders import make_decoder

    decoder = make_decoder("zxing-cpp", symbologies)
    reads, cpu_ms = 0, []
    wall0 = time.perf_counter()
    for image in frames:
        c0 = time.process_time()
        grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        reads += len(decoder.decode(grey))
        cpu_ms.append((time.process_time() - c0) * 1000)
    wall = time.perf_counter() - wall0
    return _summary("raw zxing-cpp, every frame", len(frames), wall, cpu_ms, 0, reads)


def _summary(name: str, n: int, wall: float, cpu_ms: list, skipped: int, reads: int) -> dict:
    return {
        "name": name,
        "frames": n,
        "fps": n / wall if wall > 0 else float("inf"),
        "cpu_ms_per_frame": sum(cpu_ms) / n,
        "cpu_ms_median": statistics.median(cpu_ms),
        "skipped_share": skipped / n,
        "symbols": reads,
    }


def report(rows: list[dict], out: TextIO) -> None:
    out.write(f"{'loop':<28} {'frames':>7} {'fps':>8} {'CPU ms/frame':>13} {'median':>7} {'gate skipped':>13} {'symbols':>8}\n")
    for r in rows:
        out.write(
            f"{r['name']:<28} {r['frames']:>7} {r['fps']:>8.1f} {r['cpu_ms_per_frame']:>13.2f} {r['cpu_ms_median']:>7.2f}"
            f" {r['skipped_share']:>12.0%} {r['symbols']:>8}\n"
        )
    if len(rows) == 2 and rows[1]["cpu_ms_per_frame"] > 0:
        out.write(f"pipeline CPU / raw zxing-cpp CPU: {rows[0]['cpu_ms_per_frame'] / rows[1]['cpu_ms_per_frame']:.2f}x\n")


#: The metrics' two settings side by side.
METRICS_MODES = ("off", "on")
TOKEN = "bench-loop"


@dataclass
class DaemonRun:
    """One daemon run's scan-loop times per frame and what its metrics output wrote."""

    metrics: str
    busy_ms: list[float] = field(default_factory=list)
    frames: int = 0
    identifications: int = 0
    files_written: int = 0
    problems: list[str] = field(default_factory=list)


def run_daemon(video: str, folder: Path, metrics: str, cfg, pace: str, central_url: str) -> DaemonRun:
    """The daemon on ``video`` with ``metrics.textfile`` off or on (rewritten every status turn)."""
    import dataclasses

    import tomli_w

    from device.assembly import build_kiosk, metrics_output
    from device.config import load
    from device.outputs.metrics.output import MetricsOutput
    from device.tools.bench.pos import run_timed

    folder.mkdir()
    sections: dict[str, dict] = {
        "kiosk": {"id": "bench-loop", "runtime_dir": str(folder / "run")},
        "camera": {"source": f"file:{video}", "pace": pace},
        "scan": dataclasses.asdict(cfg.scan),
        "outbox": {"path": str(folder / "outbox.db")},
        "api": {"url": central_url, "token": TOKEN},
    }
    if metrics == "on":
        (folder / "node-exporter").mkdir()
        sections["metrics"] = {"textfile": str(folder / "node-exporter" / "kiosk.prom"), "interval_s": 1}
    path = folder / "kiosk.toml"
    path.write_text(tomli_w.dumps(sections), encoding="utf-8")
    # The metrics output alone (none when off): no GPIO feedback, no live view, in both runs.
    kiosk = build_kiosk(load(path, environ={}), output_factories=[metrics_output])
    code, timed = run_timed(kiosk)
    run = DaemonRun(metrics, busy_ms=[1000 * s for s in timed.busy_s], frames=timed.frames, identifications=kiosk.counters.identifications)
    run.files_written = sum(o.writes for o in kiosk.outputs.outputs if isinstance(o, MetricsOutput))
    if code != 0:
        run.problems.append(f"the daemon exited with {code}")
    if metrics == "on" and not run.files_written:
        run.problems.append("no metrics file was written")
    return run


def measure_metrics(video: str, cfg, rounds: int, pace: str) -> list[DaemonRun]:
    """``rounds`` daemon runs with the metrics off and on each, alternating (off, on, off, on, ...)."""
    from central.process import start_subprocess

    runs: list[DaemonRun] = []
    with tempfile.TemporaryDirectory(prefix="kiosk-bench-loop-") as tmp_name:
        tmp = Path(tmp_name)
        with start_subprocess(tmp / "central", TOKEN) as central:
            for i in range(rounds):
                for mode in METRICS_MODES:
                    runs.append(run_daemon(video, tmp / f"{mode}-{i}", mode, cfg, pace, central.url))
    return runs


def report_metrics(runs: list[DaemonRun], pace: str, out: TextIO) -> None:
    out.write(f"daemon scan loop per frame, metrics.textfile off and on alternating ({pace} pace, metrics.interval_s 1):\n")
    merged: dict[str, list[float]] = {mode: [] for mode in METRICS_MODES}
    for mode in METRICS_MODES:
        mine = [r for r in runs if r.metrics == mode]
        merged[mode] = [ms for r in mine for ms in r.busy_ms]
        busy = merged[mode] or [float("nan")]
        p95 = statistics.quantiles(busy, n=20)[-1] if len(busy) >= 2 else busy[0]
        out.write(
            f"  metrics {mode:<4} {len(mine)} runs, {sum(r.frames for r in mine)} frames: mean {statistics.fmean(busy):.2f} ms, "
            f"median {statistics.median(busy):.2f} ms, p95 {p95:.2f} ms; {sum(r.identifications for r in mine)} identifications, "
            f"{sum(r.files_written for r in mine)} files written\n"
        )
    if merged["off"] and merged["on"]:
        ratio = statistics.fmean(merged["on"]) / statistics.fmean(merged["off"])
        out.write(f"  metrics on / off, mean scan-loop time per frame: {ratio:.2f}x\n")
    for run in runs:
        for problem in run.problems:
            out.write(f"  PROBLEM (metrics {run.metrics}): {problem}\n")


def main(args, out: TextIO = sys.stdout) -> int:
    from device.config import load

    cfg = load(args.config)
    frames, video_fps = _load_frames(args.video, args.max_frames)
    fps = args.fps or video_fps
    h, w = frames[0].shape[:2]
    out.write(
        f"video {args.video}: {len(frames)} frames {w}x{h}, gate timeline {fps:g} fps; "
        f"decoder {cfg.scan.decoder}, symbologies {', '.join(cfg.scan.symbologies)}\n"
    )
    rows = [measure_pipeline(frames, fps, cfg), measure_raw_zxing(frames, cfg.scan.symbologies)]
    report(rows, out)
    if args.metrics_rounds <= 0:
        return 0
    from device.tools.bench.decode import machine

    runs = measure_metrics(args.video, cfg, args.metrics_rounds, args.pace)
    out.write(f"{machine()}\n")
    report_metrics(runs, args.pace, out)
    return 1 if any(run.problems for run in runs) else 0
