"""Scan-loop cost on a video: frames per second, CPU per frame, share of frames the gate skipped.

Side by side in one run: the kiosk pipeline as configured (gate, locate, decode, card check) and,
as the baseline, zxing-cpp on every whole frame of the same video, restricted to the same
symbologies. Frames are decoded from the file before timing, so the numbers are the scan loop's
own cost, not video decoding::

    kiosk bench loop --video counter.avi
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from typing import TextIO

import cv2


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--video", required=True, help="a video file (e.g. made by `kiosk demo` or a camera recording)")
    p.add_argument("--max-frames", type=int, default=2000, help="frames to measure at most (default 2000)")
    p.add_argument("--fps", type=float, default=0.0, help="timeline for the gate (default: the video's own fps)")
    p.add_argument("--config", metavar="PATH", help="kiosk config whose [scan] settings to use (default: built-in defaults)")


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
    return 0
