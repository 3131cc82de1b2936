"""The POS hand-off (issue 22): what typing each identification costs the scan loop, and how soon the POS has it.

Side by side in one run, the real daemon (:func:`device.assembly.build_kiosk`, a reference central
in its own process) on the same presentation video twice: ``pos.output = "none"`` and
``"keyboard"``, the keyboard typing into a FIFO where ``/dev/hidg0`` would be, read by a thread as
the counter PC reads the gadget (:class:`device.tools.fifo_pos.FifoPos`). For both, the scan
loop's own time per frame (from a frame handed to it to its asking for the next: pipeline, commit,
events; not the wait for the camera) and its frame rate; for the keyboard, the latency from each
identification's commit (:attr:`~device.events.Identified.committed_monotonic`) to the last report
of its line read at the FIFO, and the same minus the configured key delays (one ``key_delay_ms``
between each two of a line's reports)::

    kiosk bench pos                         # 8 cards, 1280x720 at 15 fps, played in real time
    kiosk bench pos --cards 3 --size 640x360 --pace fast
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from device.events import Identified
from device.outputs import Output

#: The two ways side by side.
MODES = ("none", "keyboard")
#: The layout typed in (the digits and Enter are the same keys in every layout but fr).
LAYOUT = "us"
TOKEN = "bench-pos"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--cards", type=int, default=8, help="client cards presented one after another in the rendered video (default 8)")
    p.add_argument("--size", default="1280x720", help="rendered video size (default 1280x720)")
    p.add_argument("--fps", type=float, default=15.0, help="rendered video frame rate (default 15)")
    p.add_argument("--video", metavar="PATH", help="play this presentation video instead of rendering one")
    p.add_argument(
        "--pace",
        choices=("realtime", "fast"),
        default="realtime",
        help="play at the video's frame rate (default, as a camera) or as fast as scanned",
    )
    p.add_argument("--key-delay-ms", type=float, default=20.0, help="pos.key_delay_ms of the keyboard run (default 20, the default)")


class TimedSource:
    """A frame source that notes the scan loop's time per frame: from a frame returned to the next read asked for."""

    def __init__(self, source):
        self._source = source
        #: Per frame handled: the scan loop's seconds on it (the last one's ends when it asks for one more).
        self.busy_s: list[float] = []
        self.frames = 0
        self.first_at: float | None = None
        self.last_at: float | None = None
        self._returned: float | None = None

    def read(self, timeout: float | None = None):
        asked = time.monotonic()
        if self._returned is not None:
            self.busy_s.append(asked - self._returned)
        frame = self._source.read(timeout)
        self._returned = time.monotonic() if frame is not None else None
        if frame is not None:
            self.frames += 1
            self.first_at = self.first_at or self._returned
            self.last_at = self._returned
        return frame

    def __getattr__(self, name: str):  # close, describe, ...: the camera's own
        return getattr(self._source, name)


def run_timed(kiosk) -> tuple[int, TimedSource]:
    """Run ``kiosk`` (built with a finite ``file:`` camera) to its end, its scan loop timed per frame;
    its exit code and the :class:`TimedSource` with the times. The kiosk is closed afterwards."""
    timed = TimedSource(kiosk.loop.source)
    kiosk.loop.source = timed
    try:
        code = kiosk.run(threading.Event(), drain_timeout_s=60)
    finally:
        kiosk.close()
    return code, timed


class Commits(Output):
    """Each identification's line as the POS should receive it, and the monotonic time right after its commit."""

    def __init__(self):
        self.committed: list[tuple[str, float]] = []

    def on_identified(self, event: Identified) -> None:
        self.committed.append((f"{event.record.contract}\n", event.committed_monotonic))


@dataclass
class Run:
    """One mode's numbers."""

    mode: str
    frames: int = 0
    busy_ms: list[float] = field(default_factory=list)
    fps: float = 0.0
    identifications: int = 0
    latency_ms: list[float] = field(default_factory=list)
    pauses_ms: float = 0.0  # the key delays of one line
    problems: list[str] = field(default_factory=list)


def _write_config(folder: Path, video: Path, pace: str, central_url: str, pos: dict) -> Path:
    import tomli_w

    sections = {
        "kiosk": {"id": "bench-pos", "runtime_dir": str(folder / "run")},
        "camera": {"source": f"file:{video}", "pace": pace},
        "outbox": {"path": str(folder / "outbox.db")},
        "api": {"url": central_url, "token": TOKEN},
        "pos": pos,
    }
    path = folder / "kiosk.toml"
    path.write_text(tomli_w.dumps(sections), encoding="utf-8")
    return path


def run_mode(mode: str, folder: Path, video: Path, args, central_url: str) -> Run:
    """The daemon on ``video`` with ``pos.output = mode``; its numbers."""
    from device.assembly import build_kiosk, pos_output
    from device.config import load
    from device.keyboard_layouts import layout
    from device.tools.fifo_pos import FifoPos

    folder.mkdir()
    pos_host = None
    pos: dict[str, object] = {"output": mode}
    if mode == "keyboard":
        pos_host = FifoPos(folder / "hidg0", layout(LAYOUT))
        pos |= {"hid_device": str(pos_host.path), "keyboard_layout": LAYOUT, "key_delay_ms": args.key_delay_ms}
    commits = Commits()
    cfg = load(_write_config(folder, video, args.pace, central_url, pos), environ={})
    # The configured POS output alone (none with "none"): no GPIO feedback, no live view, in both runs.
    kiosk = build_kiosk(cfg, outputs=[commits], output_factories=[pos_output])
    try:
        code, timed = run_timed(kiosk)
    finally:
        if pos_host is not None:
            pos_host.close()  # the outputs are closed: every line typed is read
    run = Run(mode, frames=timed.frames, busy_ms=[1000 * s for s in timed.busy_s], identifications=len(commits.committed))
    if timed.first_at is not None and timed.last_at is not None and timed.last_at > timed.first_at:
        run.fps = (timed.frames - 1) / (timed.last_at - timed.first_at)
    if code != 0:
        run.problems.append(f"the daemon exited with {code}")
    if pos_host is not None:
        typed = [line.text for line in pos_host.lines]
        expected = [line for line, _ in commits.committed]
        if typed != expected or pos_host.error:
            run.problems.append(
                f"the POS received {len(typed)} lines for {len(expected)} identifications{': ' + pos_host.error if pos_host.error else ''}"
            )
        run.latency_ms = [
            1000 * (line.read_monotonic - committed) for line, (_, committed) in zip(pos_host.lines, commits.committed, strict=False)
        ]
        if expected:
            run.pauses_ms = (2 * len(expected[0]) - 1) * args.key_delay_ms
    return run


def _render(path: Path, args) -> None:
    from device.tools.synth.video import Presentation, write_presentation_video

    width, height = (int(v) for v in args.size.split("x"))
    shown = [Presentation.card(f"{1000 + 7919 * i:010d}", 1) for i in range(args.cards)]  # distinct valid contracts
    write_presentation_video(path, shown, fps=args.fps, size=(width, height), seed=22)


def _mean(values: list[float]) -> float:
    return statistics.fmean(values) if values else float("nan")


def _ms(values: list[float]) -> str:
    if not values:
        return "n/a"
    return f"median {statistics.median(values):.1f} ms, max {max(values):.1f} ms"


def main(args, out: TextIO = sys.stdout) -> int:
    from central.process import start_subprocess
    from device.tools.bench.decode import machine

    with tempfile.TemporaryDirectory(prefix="kiosk-bench-pos-") as tmp_name:
        tmp = Path(tmp_name)
        video = Path(args.video) if args.video else tmp / "counter.avi"
        if not args.video:
            _render(video, args)
        with start_subprocess(tmp / "central", TOKEN) as central:
            runs = [run_mode(mode, tmp / mode, video, args, central.url) for mode in MODES]
    out.write(f"POS hand-off, {video.name} played {args.pace}; {machine()}\n")
    for run in runs:
        out.write(
            f"  pos.output = {run.mode!r:<11} {run.frames} frames, {run.fps:.1f} fps; scan loop per frame "
            f"mean {_mean(run.busy_ms):.1f} ms, {_ms(run.busy_ms)}; {run.identifications} identifications\n"
        )
        if run.mode == "keyboard":
            out.write(
                f"    commit -> last report of its line read at the FIFO ({len(run.latency_ms)} lines, key_delay_ms {args.key_delay_ms:g}):"
                f" "
                f"{_ms(run.latency_ms)}; minus the key delays ({run.pauses_ms:.0f} ms a line): "
                f"{_ms([v - run.pauses_ms for v in run.latency_ms])}\n"
            )
        for problem in run.problems:
            out.write(f"    PROBLEM: {problem}\n")
    return 1 if any(run.problems for run in runs) else 0
