"""The daemon under attack, measured: what the hostile-request and slow-preview benchmarks share.

A real ``kiosk run`` process (a file camera playing a rendered video of an empty counter in real
time, a reference central in its own process, the live view on, 1024 descriptors as the unit
allows) with systemd's side of its notify socket here: every ``WATCHDOG=1`` is noted, so a run
says whether the watchdog was fed throughout (the longest gap between pings against
``WATCHDOG_USEC``). Its frame rate, faults and descriptors are read while it runs::

    with AttackedDaemon(folder, seconds=70) as daemon:
        quiet = daemon.phase(20)                 # Phase: frames/s, longest watchdog gap, most descriptors
        ...                                      # the attack
        attacked = daemon.phase(20)
"""

from __future__ import annotations

import json
import os
import resource
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

#: The daemon's watchdog interval here: it pings every half of it (systemd's WatchdogSec=30s
#: pings every 15 s; shorter here, so a stalled turn shows within a phase).
WATCHDOG_S = 4.0
#: Descriptors the daemon may have, as the unit's default LimitNOFILE.
NOFILE = 1024
TOKEN = "bench-attack"


@dataclass(frozen=True)
class Phase:
    """What one phase of a run measured."""

    seconds: float
    frames_per_s: float
    watchdog_pings: int
    longest_watchdog_gap_s: float
    most_descriptors: int
    faults: dict[str, str]

    def line(self, name: str) -> str:
        faults = ", ".join(sorted(self.faults)) or "none"
        return (
            f"{name:<10} {self.frames_per_s:6.1f} frames/s  watchdog: {self.watchdog_pings} pings, longest gap "
            f"{self.longest_watchdog_gap_s:.1f} s (limit {WATCHDOG_S:g} s)  descriptors at most {self.most_descriptors}  faults: {faults}"
        )


def render_counter_video(path: Path, seconds: float, fps: float = 15.0, size: tuple[int, int] = (640, 480)) -> Path:
    """An empty counter with sensor noise, MJPEG, ``seconds`` long: a camera that never sees a card."""
    import cv2
    import numpy as np

    rng = np.random.default_rng(1)
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, size)
    base = np.full((size[1], size[0], 3), (110, 118, 120), np.int16)
    noise = [np.clip(base + rng.integers(-6, 7, base.shape), 0, 255).astype(np.uint8) for _ in range(8)]
    for i in range(int(seconds * fps)):
        out.write(noise[i % len(noise)])
    out.release()
    return path


class AttackedDaemon:
    """``kiosk run`` in ``folder`` for about ``seconds`` (the video's length), watched from here."""

    def __init__(self, folder: Path, *, seconds: float, preview: bool = True):
        self.folder = folder
        self.runtime = folder / "run"
        self.runtime.mkdir(parents=True, exist_ok=True)
        self.video = render_counter_video(folder / "counter.avi", seconds)
        self.preview = preview
        self.pings: list[float] = []
        self._stop = threading.Event()

    def __enter__(self) -> AttackedDaemon:
        from central.process import start_subprocess

        self.central = start_subprocess(self.folder / "central.db", TOKEN)
        config = self.folder / "kiosk.toml"
        config.write_text(
            f'[kiosk]\nid = "kiosk-bench-attack"\nruntime_dir = "{self.runtime}"\n'
            f'[camera]\nsource = "file:{self.video}"\npace = "realtime"\n'
            f'[outbox]\npath = "{self.folder / "outbox.db"}"\n'
            f'[api]\nurl = "{self.central.url}"\ntoken = "{TOKEN}"\n'
            f"[preview]\nenabled = {'true' if self.preview else 'false'}\n"
            '[feedback]\npin_factory = "mock"\n'
        )
        self.config = config
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.notify.bind(str(self.folder / "notify.sock"))
        self.notify.settimeout(0.2)
        threading.Thread(target=self._listen, daemon=True).start()
        env = dict(os.environ, NOTIFY_SOCKET=str(self.folder / "notify.sock"), WATCHDOG_USEC=str(int(WATCHDOG_S * 1e6)))
        self.log_path = self.folder / "kiosk.log"
        with open(self.log_path, "w") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "device", "run", "--config", str(config)],
                stdout=subprocess.DEVNULL,
                stderr=log,
                env=env,
                preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (NOFILE, NOFILE)),
            )
        deadline = time.monotonic() + 120
        while not self.status().get("scan", {}).get("frames"):
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError(f"the daemon did not start:\n{self.log_path.read_text()[-3000:]}")
            time.sleep(0.2)
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.notify.close()
        self.central.stop()

    def _listen(self) -> None:
        while not self._stop.is_set():
            try:
                if b"WATCHDOG=1" in self.notify.recv(4096):
                    self.pings.append(time.monotonic())
            except TimeoutError:
                continue
            except OSError:
                return

    def status(self) -> dict:
        """The daemon's status file (empty while there is none)."""
        try:
            return json.loads((self.runtime / "status.json").read_text())
        except (OSError, ValueError):
            return {}

    def descriptors(self) -> int:
        try:
            return len(os.listdir(f"/proc/{self.proc.pid}/fd"))
        except OSError:
            return 0

    def phase(self, seconds: float) -> Phase:
        """Measure for ``seconds``: frames read (the status file's count), watchdog pings, descriptors."""
        started = time.monotonic()
        first = self.status()["scan"]["frames"]
        first_at = self.status()["written_monotonic"]
        most = self.descriptors()
        while time.monotonic() - started < seconds:
            most = max(most, self.descriptors())
            time.sleep(0.25)
        ended = time.monotonic()
        last = self.status()
        pings = [started, *[t for t in self.pings if started <= t <= ended], ended]
        gaps = [b - a for a, b in zip(pings, pings[1:], strict=False)]
        rate = (last["scan"]["frames"] - first) / max(last["written_monotonic"] - first_at, 1e-6)
        return Phase(ended - started, rate, len(pings) - 2, max(gaps), most, last.get("faults", {}))
