"""The device classes the unit allows, and the daemon's restart when one registers after start."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from device.daemon.devclass import ALLOWED_CLASSES, EXIT_RESTART, DeviceClassWatch, char_classes

REPO = Path(__file__).resolve().parent.parent

BOOTING = """Character devices:
  1 mem
  4 /dev/vc/0
 10 misc
 89 i2c
Block devices:
  8 sd
179 mmc
"""
LOADED = BOOTING.replace(" 89 i2c\n", " 81 video4linux\n 89 i2c\n226 media\n254 gpiochip\n")


def test_char_classes_reads_only_the_character_devices(tmp_path):
    path = tmp_path / "devices"
    path.write_text(LOADED)
    assert char_classes(path) == {"mem", "/dev/vc/0", "misc", "video4linux", "i2c", "media", "gpiochip"}
    assert char_classes(tmp_path / "missing") is None


def test_watch_reports_classes_that_appear_after_start(tmp_path):
    path = tmp_path / "devices"
    path.write_text(BOOTING)
    watch = DeviceClassWatch(proc_devices=path)
    assert watch.missing_at_start == set(ALLOWED_CLASSES)
    assert watch.appeared() == []
    path.write_text(LOADED)
    assert watch.appeared() == ["gpiochip", "media", "video4linux"]


def test_watch_without_proc_devices_never_asks_for_a_restart(tmp_path):
    watch = DeviceClassWatch(proc_devices=tmp_path / "missing")
    (tmp_path / "missing").write_text(LOADED)
    assert watch.appeared() == []


def test_the_watched_classes_are_the_units_device_allow_classes():
    text = (REPO / "systemd" / "kiosk.service").read_text()
    allowed = [line.split("=", 1)[1].split()[0] for line in text.splitlines() if line.startswith("DeviceAllow=")]
    assert sorted(a.removeprefix("char-") for a in allowed) == sorted(ALLOWED_CLASSES)


def test_daemon_exits_for_a_restart_when_a_device_class_registers(tmp_path, central):
    from support.cards import empty_counter
    from support.central import CENTRAL_TOKEN
    from support.config import write_config

    from device.assembly import make_forwarder, open_outbox
    from device.camera import Frame, FrameSource
    from device.config import load
    from device.daemon import Kiosk
    from device.pipeline import Pipeline

    devices = tmp_path / "devices"
    devices.write_text(BOOTING)
    cfg = load(
        write_config(
            tmp_path / "kiosk.toml",
            kiosk={"id": "k", "runtime_dir": str(tmp_path / "run")},
            outbox={"path": str(tmp_path / "outbox.db")},
            api={"url": central.url, "token": CENTRAL_TOKEN},
        ),
        environ={},
    )

    class Counter(FrameSource):
        """An empty counter, 50 frames a second (the pace is the camera's, not synchronisation)."""

        def __init__(self):
            self.index = 0

        def read(self, timeout=None):
            time.sleep(0.02)
            self.index += 1
            return Frame(empty_counter(), self.index, time.monotonic())

        def close(self):
            pass

        def describe(self):
            return "test counter"

    outbox = open_outbox(cfg)
    kiosk = Kiosk(
        Counter(),
        Pipeline.from_config(cfg),
        outbox,
        make_forwarder(cfg, outbox),
        runtime_dir=tmp_path / "run",
        device_watch=DeviceClassWatch(proc_devices=devices),
    )
    result = {}
    runner = threading.Thread(target=lambda: result.setdefault("code", kiosk.run(threading.Event())))
    runner.start()
    try:
        assert runner.is_alive()
        devices.write_text(LOADED)  # the camera driver has loaded after the daemon started
        runner.join(timeout=30)
        assert not runner.is_alive(), "the daemon did not stop for the restart"
        assert result["code"] == EXIT_RESTART
        assert "video4linux" in kiosk.restart_reason
    finally:
        if runner.is_alive():
            pytest.fail("daemon still running")
