"""`kiosk run` as a real process for the tests that stop it, signal it and read its log while it runs.

    with Daemon(tmp_path, daemon_config(tmp_path, folder, central.url), "--drain-timeout", "5") as daemon:
        daemon.wait_for_log("identified contract")
        daemon.proc.send_signal(signal.SIGTERM)
        assert daemon.exit_code() == 0
"""

from __future__ import annotations

import json
import os
import subprocess
import time

import pytest
from conftest import REPO, empty_counter, kiosk_cmd, run_kiosk, write_config

#: How long a test waits for the daemon to do something: generous, and below a request's deadline (35 s by default).
GENEROUS_S = 20


class Daemon:
    """A ``kiosk run`` process whose log goes to a file the test can read while it runs; killed on exit."""

    def __init__(self, tmp_path, cfg, *args):
        self.log_path = tmp_path / "kiosk.log"
        with open(self.log_path, "w") as log:
            env = dict(os.environ, PYTHONUNBUFFERED="1")
            self.proc = subprocess.Popen(kiosk_cmd("run", "--config", str(cfg), *args), cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=log)

    @property
    def log(self) -> str:
        return self.log_path.read_text()

    def wait_for_log(self, text: str) -> None:
        deadline = time.monotonic() + GENEROUS_S
        while text not in self.log:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"no {text!r} in the log:\n{self.log}")
            time.sleep(0.05)

    def exit_code(self) -> int:
        """The exit code, waiting generously; a daemon still running then fails the test."""
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


def daemon_config(tmp_path, folder, url, *, pace="fast", **api):
    """A kiosk.toml for a file camera on ``folder`` and the central at ``url`` (token "test-token" unless ``api`` says)."""
    return write_config(
        tmp_path / "kiosk.toml",
        kiosk={"id": "kiosk-stop-1", "runtime_dir": str(tmp_path / "run")},
        camera={"source": f"file:{folder}", "pace": pace},
        scan={"symbologies": ["Code128", "EAN13"]},
        outbox={"path": str(tmp_path / "outbox.db")},
        api={"url": url, "token": "test-token", **api},
    )


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


def wait_for(cfg, condition, timeout=GENEROUS_S) -> dict:
    """The first `kiosk status --json` report from the running daemon for which ``condition`` holds."""
    deadline = time.monotonic() + timeout
    while True:
        report = status_report(cfg)
        if report["running"] and condition(report):
            return report
        if time.monotonic() > deadline:
            pytest.fail(f"status never got there: {report}")
        time.sleep(0.2)
