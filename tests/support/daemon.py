"""The daemon in the tests: ``kiosk run`` as a real process the test stops, signals and reads the
log of while it runs; its status as a fleet tool reads it; a kiosk built by hand around a fake
camera, run in the test's own threads; and a stand-in for its snapshot side.

    with Daemon(tmp_path, kiosk_config(tmp_path, central=central, source=f"file:{folder}")) as daemon:
        daemon.wait_for_log("identified contract")
        daemon.proc.send_signal(signal.SIGTERM)
        assert daemon.exit_code() == 0
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
from pathlib import Path

import pytest

from device import status
from device.assembly import make_forwarder, open_outbox
from device.camera import FrameSource
from device.config import Config
from device.daemon import Kiosk
from device.daemon.snapshot import SnapshotService
from device.pipeline import Pipeline
from device.status.report import CameraStatus
from support.cards import empty_counter
from support.kiosk import REPO, kiosk_cmd, run_kiosk
from support.status import daemon_status
from support.waiting import wait_until

#: How long a test waits for the daemon to do something: generous, and below a request's deadline (35 s by default).
GENEROUS_S = 20


class Daemon:
    """A ``kiosk run`` process whose log goes to a file the test can read while it runs; killed on exit."""

    def __init__(self, tmp_path, cfg, *args):
        self.log_path = tmp_path / "kiosk.log"
        with open(self.log_path, "w") as log:
            env = dict(os.environ, PYTHONUNBUFFERED="1")
            command = kiosk_cmd("run", "--config", str(cfg), *args)
            self.proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=log)

    @property
    def log(self) -> str:
        return self.log_path.read_text()

    def wait_for_log(self, text: str) -> None:
        """Until ``text`` is in the log; fails (with the log) if the daemon ends first or never writes it."""
        ended = self.proc.poll
        wait_until(lambda: text in self.log or ended() is not None, what=f"{text!r} in the log", timeout_s=GENEROUS_S, every_s=0.05)
        if text not in self.log:
            pytest.fail(f"no {text!r} in the log:\n{self.log}")

    def exit_code(self) -> int:
        """The exit code, waiting generously; a daemon still running then fails the test.

        Not scaled by KIOSK_TEST_TIME_SCALE: a daemon stuck in a request would end at the request's
        deadline anyway, so a wait past it could no longer tell a prompt stop from a stuck one.
        """
        try:
            return self.proc.wait(timeout=GENEROUS_S)
        except subprocess.TimeoutExpired:
            pytest.fail(f"kiosk run still runs {GENEROUS_S} s later:\n{self.log}")

    def __enter__(self) -> Daemon:
        return self

    def __exit__(self, *exc) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def with_empty_tail(folder, seconds):
    """Empty frames after the cards, ``seconds`` long at the folder's 5 fps (links to one image: cheap)."""
    import cv2

    blank = folder.parent / "blank.png"
    cv2.imwrite(str(blank), empty_counter())
    for i in range(int(seconds * 5)):
        (folder / f"9{i:05d}.png").symlink_to(blank)
    return folder


def status_report(cfg) -> dict:
    """``kiosk status --json`` as a technician's fleet tool reads it."""
    return json.loads(run_kiosk("status", "--json", "--config", str(cfg)).stdout)


def wait_for_status(cfg, condition, timeout_s=GENEROUS_S) -> dict:
    """The first `kiosk status --json` report from the running daemon for which ``condition`` holds."""
    last = {}

    def reached():
        last["report"] = report = status_report(cfg)
        return report["running"] and condition(report) and report

    return wait_until(reached, what="the status", timeout_s=timeout_s, every_s=0.2, detail=lambda: f"the last report: {last['report']}")


class AnsweringDaemon:
    """The daemon's side of a snapshot, in a thread: its status file (the daemon runs) and its
    :class:`SnapshotService` answering each housekeeping turn with the last decoded frame."""

    def __init__(self, runtime: Path, latest, *, unmask: bool = False):
        self.runtime, self.latest = runtime, latest
        self.stop = threading.Event()
        self.service = SnapshotService(runtime, unmask=unmask)
        status.write_status(runtime, daemon_status(camera=CameraStatus("v4l2:/dev/video0 (fake daemon)")))
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self.stop.wait(0.05):
            self.service.answer(self.latest)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(timeout=10)


def hand_built_kiosk(cfg: Config, source: FrameSource, **options) -> Kiosk:
    """A kiosk of ``cfg`` around ``source`` (a fake camera at the hardware edge): the configured
    pipeline, outbox and forwarder; ``options`` are :class:`~device.daemon.Kiosk`'s (outputs,
    notifier, runtime_dir, ...). The caller closes ``kiosk.outbox`` unless the kiosk ran."""
    outbox = open_outbox(cfg)
    return Kiosk(source, Pipeline.from_config(cfg), outbox, make_forwarder(cfg, outbox), **options)
