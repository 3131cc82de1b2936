"""The idle kiosk: camera on, nobody at the counter. CPU share at real time, and memory over a long run.

Runs the real daemon (:class:`device.daemon.Kiosk`: pipeline, presentations, outbox, forwarder
to a reference central, status snapshots) on a file source that replays a rendered video of an
empty counter (sensor noise on every frame) in a loop:

1. **real time** for ``--seconds`` at the video's frame rate: the process's CPU share;
2. **fast** for ``--frames`` frames (default 50,000): resident memory sampled along the way, to
   show that it stays flat.

    kiosk bench idle --seconds 60 --frames 50000
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import TextIO

from device.camera import Frame, FrameSource
from device.camera.file import FileSource


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seconds", type=float, default=60.0, help="real-time phase length (default 60)")
    p.add_argument("--frames", type=int, default=50_000, help="frames in the fast phase (default 50,000)")
    p.add_argument("--fps", type=float, default=30.0, help="the empty-counter video's frame rate (default 30)")
    p.add_argument("--size", default="1280x720", help="frame size (default 1280x720)")


class LoopingSource(FrameSource):
    """A file source that starts again at the end: a camera that never stops, for soak runs.

    Indices and timestamps keep counting across loops, so the gate sees one continuous stream.
    ``limit`` ends it after that many frames.
    """

    finite = True

    def __init__(self, path: Path, pace: str, limit: int | None = None):
        self.path, self.pace, self.limit = path, pace, limit
        self._source = FileSource(path, pace=pace)
        self._count = 0
        self._offset = 0  # frames of the loops already played
        self._t0: float | None = None

    def read(self, timeout: float | None = None) -> Frame | None:
        if self.limit is not None and self._count >= self.limit:
            return None
        frame = self._source.read(timeout)
        if frame is None:  # the end of the video: play it again
            self._offset = self._count
            self._source = FileSource(self.path, pace=self.pace)
            frame = self._source.read(timeout)
            if frame is None:
                return None
        if self._t0 is None:
            self._t0 = frame.monotonic
        self._count += 1
        index = self._offset + frame.index
        # Real time: the moment of capture, continuous anyway; fast: the stream's own timeline.
        stamp = frame.monotonic if self.pace == "realtime" else self._t0 + index / self._source.fps
        return Frame(frame.image, index, stamp, frame.origin)

    def close(self) -> None:
        self._source.close()

    def describe(self) -> str:
        return f"{self._source.describe()} (looping, {self._count} frames)"


def render_empty_counter(path: Path, fps: float, size: tuple[int, int], seconds: float = 5.0, seed: int = 3) -> Path:
    """An MJPG video of an empty counter: fixed scene, fresh sensor noise every frame."""
    import cv2
    import numpy as np

    from device.tools.synth.scene import Conditions, expose, make_vignette, render_background

    rng = np.random.default_rng(seed)
    conditions = Conditions.random(rng, 0.3)
    scene = render_background(size, rng, clutter=2)
    # One camera: fixed vignette and white balance; only the sensor noise changes frame to frame.
    vignette = make_vignette(size, rng)
    white_balance = rng.uniform(0.92, 1.08, 3).astype(np.float32)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, size)
    for _ in range(int(seconds * fps)):
        noise = rng.standard_normal((size[1], size[0], 3), dtype=np.float32)
        writer.write(expose(scene, conditions, rng, vignette=vignette, white_balance=white_balance, noise=noise))
    writer.release()
    return path


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _kiosk(tmp: Path, source: FrameSource, central_url: str, token: str):
    from device.config import load
    from device.daemon import Kiosk, make_forwarder, open_outbox
    from device.pipeline import Pipeline

    (tmp / "kiosk.toml").write_text(
        f'[kiosk]\nid = "bench-idle"\nruntime_dir = "{tmp / "run"}"\n[outbox]\npath = "{tmp / "outbox.db"}"\n'
        f'[api]\nurl = "{central_url}"\ntoken = "{token}"\n'
    )
    cfg = load(tmp / "kiosk.toml", environ={})
    outbox = open_outbox(cfg)
    return Kiosk(source, Pipeline.from_config(cfg), outbox, make_forwarder(cfg, outbox), runtime_dir=tmp / "run")


def main(args, out: TextIO = sys.stdout) -> int:
    from central.process import start_subprocess
    from device.outputs import Output

    width, height = (int(v) for v in args.size.split("x"))
    with tempfile.TemporaryDirectory(prefix="kiosk-bench-idle-") as tmp_name:
        tmp = Path(tmp_name)
        video = render_empty_counter(tmp / "empty.avi", args.fps, (width, height))
        with start_subprocess(tmp / "central", "bench") as central:
            # 1. Real time: CPU share of the whole process (all its threads).
            (tmp / "rt").mkdir()
            kiosk = _kiosk(tmp / "rt", LoopingSource(video, "realtime"), central.url, "bench")
            stop = threading.Event()
            timer = threading.Timer(args.seconds, stop.set)
            wall0, cpu0 = time.monotonic(), time.process_time()
            timer.start()
            kiosk.run(stop)
            wall, cpu = time.monotonic() - wall0, time.process_time() - cpu0
            frames_rt = kiosk.counters.frames
            decoded_rt = kiosk.counters.decoded_frames

            # 2. Fast: memory over many frames.
            (tmp / "fast").mkdir()
            samples: list[tuple[int, float]] = []
            kiosk = _kiosk(tmp / "fast", LoopingSource(video, "fast", limit=args.frames), central.url, "bench")
            step = max(args.frames // 10, 1)

            class Sampler(Output):
                next_at = 1

                def frame(self, result, frame_index):
                    # Runs off the scan thread, so the count may have moved on (and frame events
                    # may be dropped): sample at the first event at or past each step.
                    n = kiosk.counters.frames
                    if n >= self.next_at:
                        samples.append((n, rss_mib()))
                        self.next_at = (n // step + 1) * step

            kiosk.add_output(Sampler())
            t0 = time.monotonic()
            kiosk.run(threading.Event())
            fast_wall = time.monotonic() - t0

    out.write(f"idle kiosk, empty counter video {width}x{height} at {args.fps:g} fps, looped\n")
    out.write(
        f"real time: {args.seconds:g} s, {frames_rt} frames ({frames_rt / wall:.1f} fps), {decoded_rt} decoded by the gate's choice; "
        f"CPU {cpu:.2f} s = {100 * cpu / wall:.1f}% of one core\n"
    )
    out.write(f"fast: {args.frames} frames in {fast_wall:.0f} s; resident memory (MiB) by frame:\n")
    for n, rss in samples:
        out.write(f"  {n:>8} {rss:8.1f}\n")
    if len(samples) >= 2:
        first_after_warmup = samples[1][1] if len(samples) > 2 else samples[0][1]
        out.write(f"growth after warm-up: {samples[-1][1] - first_after_warmup:+.1f} MiB\n")
    return 0
