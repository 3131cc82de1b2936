"""Cameras at the hardware edge: a fake /dev and /sys of video devices, a fake USB camera the test
unplugs, a driver that hangs. Everything behind them (sources, the scan loop) is the real code.

    >>> import tempfile
    >>> from pathlib import Path
    >>> env = fake_video4linux(Path(tempfile.mkdtemp()), {"video0": ("uvcvideo", "HD Pro Webcam C920")}, {UVC_BY_ID: "video0"})
    >>> sorted(env)
    ['KIOSK_DEV_PREFIX', 'KIOSK_SYSFS_PREFIX']
"""

from __future__ import annotations

import threading
import time

from device.camera import Frame, FrameSource
from support.cards import empty_counter

#: The by-id name of a USB webcam (a Logitech C920), as udev makes it.
UVC_BY_ID = "usb-046d_HD_Pro_Webcam_C920_1234ABCD-video-index0"


def fake_video4linux(root, nodes: dict[str, tuple[str, str]], by_id: dict[str, str]):
    """A fake /sys/class/video4linux and /dev (with /dev/v4l/by-id links) under ``root``.

    ``nodes``: video node -> (driver, name), e.g. "video0": ("unicam", "unicam-image").
    ``by_id``: by-id link name -> video node.
    """
    dev, sys_ = root / "dev", root / "sys"
    (dev / "v4l" / "by-id").mkdir(parents=True)
    for node, (driver, name) in nodes.items():
        (dev / node).touch()
        entry = sys_ / "class" / "video4linux" / node
        drivers = sys_ / "bus" / "platform" / "drivers" / driver
        drivers.mkdir(parents=True, exist_ok=True)
        (entry / "device").mkdir(parents=True)
        (entry / "device" / "driver").symlink_to(drivers)
        (entry / "name").write_text(name + "\n")
    for link, node in by_id.items():
        (dev / "v4l" / "by-id" / link).symlink_to(f"../../{node}")
    return {"KIOSK_SYSFS_PREFIX": str(root), "KIOSK_DEV_PREFIX": str(root)}


class Counter:
    """The world in front of a fake USB camera: a card may be shown; the cable may be pulled."""

    def __init__(self):
        self.lock = threading.Lock()
        self.plugged = True
        self.generation = 0
        self.image = empty_counter()

    def show(self, image):
        with self.lock:
            self.image = image

    def unplug(self):
        with self.lock:
            self.plugged = False
            self.generation += 1

    def plug(self):
        with self.lock:
            self.plugged = True


class FakeCapture:
    """cv2.VideoCapture at the hardware edge: a handle opened before an unplug stays dead."""

    def __init__(self, counter: Counter):
        self.counter = counter
        with counter.lock:
            self.ok, self.generation = counter.plugged, counter.generation

    def isOpened(self):
        return self.ok

    def set(self, prop, value):
        return True

    def get(self, prop):
        return 0.0

    def read(self):
        time.sleep(1 / 30)  # the camera's frame interval
        with self.counter.lock:
            if not (self.ok and self.counter.plugged and self.generation == self.counter.generation):
                return False, None
            return True, self.counter.image

    def release(self):
        pass


class HangingSource(FrameSource):
    """A driver that hangs inside read() once ``hang`` is set (the failure the watchdog exists for)."""

    def __init__(self):
        self.hang = threading.Event()
        self.release = threading.Event()
        self.index = 0

    def read(self, timeout=None):
        if self.hang.is_set():
            self.release.wait()
            return None
        time.sleep(0.02)
        self.index += 1
        return Frame(empty_counter(), self.index, time.monotonic())

    def close(self):
        self.release.set()

    def describe(self):
        return "hanging test source"
