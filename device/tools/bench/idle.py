"""The idle kiosk: camera on, nobody at the counter. CPU share at real time, and memory over a long run.

Runs the real daemon (:class:`device.daemon.Kiosk`: pipeline, presentations, outbox, forwarder
to a reference central, status snapshots) on a file source that replays a rendered MJPEG video
of an empty counter (sensor noise on every frame) in a loop, three ways side by side: **before**,
every frame decoded in full as it is read (what the kiosk did until it gated on thumbnails);
**every frame looked at**, the camera's JPEG buffers kept and the gate looking at the 1/8-scale
decode of each (``scan.quiet_look_every = 1``); and **after**, the same with the configured
``scan.quiet_look_every`` (default 2: a quiet view looked at every second frame):

1. **real time** for ``--seconds`` at the video's frame rate: the process's CPU share;
2. **fast** for ``--frames`` frames (default 50,000): resident memory sampled along the way, to
   show that it stays flat;
3. **presentation videos** (``--videos``, rendered at 1280x720, 15 fps): frames from a card
   entering the view to its first read, before and after: the thumbnail gate must not delay it.

    kiosk bench idle --seconds 60 --frames 50000 --videos 2
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
from device.config import DEFAULTS


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seconds", type=float, default=60.0, help="real-time phase length (default 60)")
    p.add_argument("--frames", type=int, default=50_000, help="frames in the fast phase (default 50,000)")
    p.add_argument("--fps", type=float, default=30.0, help="the empty-counter video's frame rate (default 30)")
    p.add_argument("--size", default="1280x720", help="frame size (default 1280x720)")
    p.add_argument("--videos", type=int, default=1, help="presentation videos for the time to a read (default 1; 0: none)")


class LoopingSource(FrameSource):
    """A file source that starts again at the end: a camera that never stops, for soak runs.

    Indices and timestamps keep counting across loops, so the gate sees one continuous stream.
    ``limit`` ends it after that many frames.
    """

    finite = True

    def __init__(self, path: Path, pace: str, limit: int | None = None, raw: bool = True):
        self.path, self.pace, self.limit, self.raw = path, pace, limit, raw
        self._source = FileSource(path, pace=pace, raw=raw)
        self._count = 0
        self._offset = 0  # frames of the loops already played
        self._t0: float | None = None
        self._previous: Frame | None = None
        #: Frames that had their full image (decoded by the source, or by the pipeline past the gate).
        self.full_images = 0

    def read(self, timeout: float | None = None) -> Frame | None:
        if self.limit is not None and self._count >= self.limit:
            return None
        frame = self._source.read(timeout)
        if frame is None:  # the end of the video: play it again
            self._offset = self._count
            self._source = FileSource(self.path, pace=self.pace, raw=self.raw)
            frame = self._source.read(timeout)
            if frame is None:
                return None
        if self._t0 is None:
            self._t0 = frame.monotonic
        self._count += 1
        index = self._offset + frame.index
        # Real time: the moment of capture, continuous anyway; fast: the stream's own timeline.
        if self.pace != "realtime":
            frame.monotonic = self._t0 + index / self._source.fps
        frame.index = index
        self._count_full_image()
        self._previous = frame
        return frame

    def _count_full_image(self) -> None:
        # Whether a frame was decoded in full is known once the loop is done with it: at the next read.
        if self._previous is not None:
            self.full_images += self._previous.decoded
            self._previous = None

    def close(self) -> None:
        self._count_full_image()
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


def _kiosk(tmp: Path, source: FrameSource, central_url: str, token: str, look_every: int | None):
    from device.assembly import make_forwarder, open_outbox
    from device.config import load
    from device.daemon import Kiosk
    from device.pipeline import Pipeline

    (tmp / "kiosk.toml").write_text(
        f'[kiosk]\nid = "bench-idle"\nruntime_dir = "{tmp / "run"}"\n[outbox]\npath = "{tmp / "outbox.db"}"\n'
        f'[api]\nurl = "{central_url}"\ntoken = "{token}"\n' + (f"[scan]\nquiet_look_every = {look_every}\n" if look_every else "")
    )
    (tmp / "kiosk.toml").chmod(0o600)  # it holds api.token: refused in a config file others may read
    cfg = load(tmp / "kiosk.toml", environ={})
    outbox = open_outbox(cfg)
    return Kiosk(source, Pipeline.from_config(cfg), outbox, make_forwarder(cfg, outbox), runtime_dir=tmp / "run")


#: The ways a frame is handled, side by side: (label, FileSource raw mode, scan.quiet_look_every;
#: None: the configuration's default).
PATHS = (("before", False, 1), ("every", True, 1), ("after", True, None))
LABELS = {
    "before": "before (every frame decoded in full)",
    "every": "gate on every frame's 1/8-scale JPEG decode",
    "after": f"after (a quiet view: 1 frame in {DEFAULTS.scan.quiet_look_every} looked at)",
}


def _real_time(tmp: Path, video: Path, raw: bool, look_every: int | None, seconds: float, central, token: str) -> dict:
    """The daemon on the looping video at its frame rate for ``seconds``: CPU share of the process."""
    tmp.mkdir()
    source = LoopingSource(video, "realtime", raw=raw)
    kiosk = _kiosk(tmp, source, central.url, token, look_every)
    stop = threading.Event()
    timer = threading.Timer(seconds, stop.set)
    wall0, cpu0 = time.monotonic(), time.process_time()
    timer.start()
    kiosk.run(stop)
    wall, cpu = time.monotonic() - wall0, time.process_time() - cpu0
    return {
        "wall": wall,
        "cpu": cpu,
        "frames": kiosk.counters.frames,
        "decoded": kiosk.counters.decoded_frames,
        "full": source.full_images,
        "looked": kiosk.loop.pipeline.scanner.gate.looked,
    }


def _fast(
    tmp: Path, video: Path, raw: bool, look_every: int | None, frames: int, central, token: str
) -> tuple[list[tuple[int, float]], float]:
    """The daemon on ``frames`` frames as fast as they come: resident memory sampled along the way."""
    from device.outputs import Output

    tmp.mkdir()
    samples: list[tuple[int, float]] = []
    kiosk = _kiosk(tmp, LoopingSource(video, "fast", limit=frames, raw=raw), central.url, token, look_every)
    step = max(frames // 10, 1)

    class Sampler(Output):
        next_at = 1

        def on_frame(self, event):
            # Runs off the scan thread, so the count may have moved on (and frame events
            # may be dropped): sample at the first event at or past each step.
            n = kiosk.counters.frames
            if n >= self.next_at:
                samples.append((n, rss_mib()))
                self.next_at = (n // step + 1) * step

    kiosk.add_output(Sampler())
    t0 = time.monotonic()
    kiosk.run(threading.Event())
    return samples, time.monotonic() - t0


def frames_to_read(path: Path, truths, raw: bool, look_every: int | None = None) -> tuple[list, float, int]:
    """The pipeline (gate included, as in the daemon) on every frame of a presentation video:
    the presentations' scores, CPU seconds per frame, and the frames decoded in full."""
    import dataclasses

    from device.config import Config
    from device.pipeline import Pipeline
    from device.tools.bench.scenes import score_presentations

    cfg = Config()
    if look_every:
        cfg = dataclasses.replace(cfg, scan=dataclasses.replace(cfg.scan, quiet_look_every=look_every))
    pipeline = Pipeline.from_config(cfg)
    reads, frames, full = [], 0, 0
    cpu0 = time.process_time()
    with FileSource(path, pace="fast", raw=raw) as source:
        while (frame := source.read()) is not None:
            result = pipeline.frame(frame, frame.monotonic)
            reads += [(frame.index, r.symbol.symbology, r.symbol.text) for r in result.readings]
            frames += 1
            full += frame.decoded
    cpu = time.process_time() - cpu0
    return score_presentations(truths, reads), cpu / max(frames, 1), full


def _presentations(tmp: Path, videos: int, out: TextIO) -> None:
    import statistics

    from device.tools.synth.video import default_presentations, write_presentation_video

    fps = 15.0
    rows = {label: ([], 0.0, 0) for label, _, _ in PATHS}
    for v in range(videos):
        path = tmp / f"presentations-{v}.avi"
        truths = write_presentation_video(path, default_presentations(), fps=fps, seed=1000 + v)
        for label, raw, look_every in PATHS:
            scores, cpu_per_frame, full = frames_to_read(path, truths, raw, look_every)
            before = rows[label]
            rows[label] = (before[0] + scores, before[1] + cpu_per_frame / videos, before[2] + full)
    out.write(f"\npresentation videos: {videos}, 1280x720 at {fps:g} fps; frames from a card entering the view to its first read:\n")
    for label, _, _ in PATHS:
        scores, cpu_per_frame, full = rows[label]
        cards = [s for s in scores if s.is_card]
        delays = [s.frames_to_read for s in cards if s.identified]
        median = statistics.median(delays) if delays else float("nan")
        out.write(
            f"  {LABELS[label]:<46} identified {len(delays)}/{len(cards)}, median {median:g} frames "
            f"({1000 * median / fps:.0f} ms), all {sorted(delays)}, by presentation {[s.frames_to_read for s in cards]}; "
            f"wrong cards {sum(s.false_card for s in scores)}; "
            f"{1000 * cpu_per_frame:.2f} ms CPU a frame, {full} frames decoded in full\n"
        )


def main(args, out: TextIO = sys.stdout) -> int:
    from central.process import start_subprocess
    from device.tools.bench.decode import machine

    width, height = (int(v) for v in args.size.split("x"))
    with tempfile.TemporaryDirectory(prefix="kiosk-bench-idle-") as tmp_name:
        tmp = Path(tmp_name)
        video = render_empty_counter(tmp / "empty.avi", args.fps, (width, height))
        with start_subprocess(tmp / "central", "bench") as central:
            # 1. Real time: CPU share of the whole process (all its threads), each path in turn.
            real = {label: _real_time(tmp / f"rt-{label}", video, raw, n, args.seconds, central, "bench") for label, raw, n in PATHS}
            # 2. Fast: memory over many frames.
            fast = {label: _fast(tmp / f"fast-{label}", video, raw, n, args.frames, central, "bench") for label, raw, n in PATHS}

        out.write(f"idle kiosk, empty counter video {width}x{height} at {args.fps:g} fps, looped; {machine()}\n")
        for label, _, _ in PATHS:
            r = real[label]
            out.write(
                f"{LABELS[label]}: real time: {args.seconds:g} s, {r['frames']} frames ({r['frames'] / r['wall']:.1f} fps), "
                f"{r['looked']} looked at by the gate, {r['decoded']} decoded by its choice, {r['full']} decoded in full; "
                f"CPU {r['cpu']:.2f} s = {100 * r['cpu'] / r['wall']:.1f}% of one core\n"
            )
        for label, _, _ in PATHS:
            samples, wall = fast[label]
            out.write(f"{LABELS[label]}: fast: {args.frames} frames in {wall:.0f} s; resident memory (MiB) by frame:\n")
            for n, rss in samples:
                out.write(f"  {n:>8} {rss:8.1f}\n")
            if len(samples) >= 2:
                first_after_warmup = samples[1][1] if len(samples) > 2 else samples[0][1]
                out.write(f"growth after warm-up: {samples[-1][1] - first_after_warmup:+.1f} MiB\n")
        if args.videos > 0:
            _presentations(tmp, args.videos, out)
    return 0
