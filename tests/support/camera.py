"""Cameras at the hardware edge: a fake /dev and /sys of video devices, a fake USB camera the test
unplugs, a driver that hangs, a camera world the test drives frame by frame with an OpenCV
capture (:class:`FakeVideoCapture`) or a picamera2 (:class:`FakePicamera2`) in front of it.
Everything behind them (sources, the scan loop) is the real code.

    >>> import tempfile
    >>> from pathlib import Path
    >>> env = fake_video4linux(Path(tempfile.mkdtemp()), {"video0": ("uvcvideo", "HD Pro Webcam C920")}, {UVC_BY_ID: "video0"})
    >>> sorted(env)
    ['KIOSK_DEV_PREFIX', 'KIOSK_SYSFS_PREFIX']
"""

from __future__ import annotations

import collections
import concurrent.futures
import os
import threading
import time

import cv2
import numpy as np

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


# -- a camera world the test drives, seen through OpenCV or picamera2 --------------------------------


def serial_of(frame) -> int:
    return int.from_bytes(frame.image[0, :4].tobytes(), "little")


class CameraWorld:
    """A camera the test drives: it emits frames on demand, can be unplugged and plugged back.

    A device read blocks until a frame is emitted, or fails after ``read_timeout`` (a stall, as
    OpenCV's V4L2 select timeout does) or at once when unplugged. Handles opened before an unplug
    stay dead, like a file descriptor of a vanished USB device.
    """

    def __init__(self, read_timeout: float = 0.2) -> None:
        self.read_timeout = read_timeout
        self.cond = threading.Condition()
        self.plugged = True
        self.generation = 0
        self.queue: collections.deque[int] = collections.deque()
        self.serial = 0
        self.opened = 0
        self.closed = 0

    def emit(self, count: int = 1) -> None:
        with self.cond:
            for _ in range(count):
                self.serial += 1
                self.queue.append(self.serial)
            self.cond.notify_all()

    def unplug(self) -> None:
        with self.cond:
            self.plugged = False
            self.generation += 1
            self.queue.clear()
            self.cond.notify_all()

    def plug(self) -> None:
        with self.cond:
            self.plugged = True
            self.cond.notify_all()

    def next_image(self, generation: int) -> np.ndarray | None:
        with self.cond:

            def alive() -> bool:
                return self.plugged and generation == self.generation

            self.cond.wait_for(lambda: self.queue or not alive(), timeout=self.read_timeout)
            if not alive() or not self.queue:
                return None
            image = np.zeros((6, 8), np.uint8)
            image[0, :4] = np.frombuffer(self.queue.popleft().to_bytes(4, "little"), np.uint8)
            return image


#: The format properties OpenCV's V4L2 backend always answers; every other property is a V4L2
#: control, which a device may lack: then OpenCV's set() returns False and get() returns -1.
FORMAT_PROPS = {cv2.CAP_PROP_FOURCC, cv2.CAP_PROP_FRAME_WIDTH, cv2.CAP_PROP_FRAME_HEIGHT, cv2.CAP_PROP_FPS}


class FakeVideoCapture:
    """Enough of cv2.VideoCapture for V4L2Source; ``gives`` overrides what the driver agrees to.

    ``controls`` are the V4L2 controls the device has (OpenCV property -> value), e.g. a webcam
    with autofocus has CAP_PROP_AUTOFOCUS and CAP_PROP_FOCUS; the default has none (fixed focus).
    ``bad_every``: every n-th read fails as a corrupt MJPG frame does (OpenCV: False, None).
    Every ``set`` is recorded in :attr:`set_calls`, the refused ones too.
    """

    def __init__(self, world: CameraWorld, gives: dict | None = None, controls: dict | None = None, bad_every: int = 0) -> None:
        self.world = world
        self.props: dict[int, float] = {}
        self.gives = gives or {}
        self.controls = dict(controls or {})
        self.bad_every = bad_every
        self.reads = 0
        #: Every set() asked, in order, taken or not: (property, value, taken).
        self.set_calls: list[tuple[int, float, bool]] = []
        with world.cond:
            self.ok = world.plugged
            self.generation = world.generation
            world.opened += 1

    def isOpened(self) -> bool:
        return self.ok

    def set(self, prop: int, value: float) -> bool:
        taken = prop in FORMAT_PROPS or prop in self.controls
        self.set_calls.append((prop, value, taken))
        if prop in FORMAT_PROPS:
            self.props[prop] = value
        elif taken:
            self.controls[prop] = value
        return taken

    def get(self, prop: int) -> float:
        if prop in FORMAT_PROPS:
            return self.gives.get(prop, self.props.get(prop, 0.0))
        return self.controls.get(prop, -1.0)

    def read(self):
        self.reads += 1
        if self.bad_every and self.reads % self.bad_every == 0:
            return False, None  # a corrupt MJPG frame: the device is fine, this frame is not
        image = self.world.next_image(self.generation) if self.ok else None
        return (image is not None), image

    def release(self) -> None:
        with self.world.cond:
            self.world.closed += 1


class FakeJob:
    """A picamera2 job: a Future the event loop completes (picamera2.job.Job wraps one too)."""

    def __init__(self, kind: str, names: tuple[str, ...] = ()) -> None:
        self.kind = kind
        self.names = names
        self.future: concurrent.futures.Future = concurrent.futures.Future()


class FakePicamera2:
    """picamera2.Picamera2 as it behaves (0.3.x), down to what makes a stalled camera hang.

    * One owner per camera: opening a camera that an unclosed instance holds raises, as
      libcamera's acquire() does.
    * ``start()`` starts an event loop thread; captures are jobs in a list, completed in order
      by the loop when a frame arrives. ``wait(job, timeout)`` raises TimeoutError and leaves an
      unfinished job at the head of the list.
    * ``stop()`` with the event loop running queues a stop job behind the others and waits for
      it **without a timeout**: behind a capture that never completes, it never returns.
    * ``cancel_all_and_flush()`` cancels and drops every job; ``close()`` stops the event loop
      first, then the camera directly, then releases it.
    * ``configure`` / ``set_controls`` raise on a control that ``camera_controls`` does not list;
      ``camera_controls`` gives libcamera's generic limits before ``configure`` (a lens range of
      0-32 dioptres) and the sensor mode's after (0-15 for a Camera Module 3).
    * Controls set before ``start()`` are what the camera applies (``applied_controls``);
      ``camera_configuration()`` gives the stream sizes libcamera made of the request (``min_side``:
      a Pi 4's ISP makes small streams at least 64 pixels a side).
    * The constructor makes its notification pipe before it acquires the camera, and ``close()``
      returns at once for a camera that never opened: a failed construction leaks the pipe's write
      end unless someone closes it (picamera2 0.3.x does exactly this).
    * Frame metadata carries what the camera applied: ``ExposureTime``, ``AnalogueGain``,
      ``FrameDuration``, ``LensPosition`` (cameras with a lens), ``AeLocked`` (False for the first
      ``settle_frames`` frames after start while the AE runs) and ``AfState`` (Scanning for as
      many in continuous autofocus, then Focused).
    """

    world: CameraWorld
    cameras = [{"Model": "imx708"}]
    #: camera_controls after configure, as libcamera advertises them for a Camera Module 3 (imx708,
    #: libcamera 0.3 on Bookworm): name -> (min, max, default)
    controls = {
        "FrameDurationLimits": (33333, 120000000, None),
        "AfMode": (0, 2, 0),
        "LensPosition": (0.0, 15.0, 1.0),
        "ExposureTime": (26, 66666, 20000),
        "AnalogueGain": (1.12, 16.0, 1.0),
        "AeEnable": (False, True, None),
        "AeFlickerMode": (0, 1, 0),
        "AeFlickerPeriod": (100, 1000000, None),
    }
    #: ...and before configure, where they differ: libcamera's generic lens range.
    unconfigured = {"LensPosition": (0.0, 32.0, 1.0)}
    #: The auto-exposure's pick indoors, and its gain.
    auto_exposure_us = 16667
    auto_gain = 2.5
    settle_frames = 0
    min_side = 0
    instances: list[FakePicamera2] = []
    owners: set[int] = set()
    #: Set when the test ends: lets a stop() blocked forever return, so no thread outlives the test.
    test_over = threading.Event()

    def __init__(self, index: int) -> None:
        self.notifyme_r, self.notifyme_w = os.pipe2(os.O_NONBLOCK)
        self.notifymeread = os.fdopen(self.notifyme_r, "rb")
        self.is_open = False
        if not self.world.plugged:
            raise RuntimeError("Camera __init__ sequence did not complete.")
        if index in self.owners:
            raise RuntimeError("Camera __init__ sequence did not complete.")  # acquire(): Device or resource busy
        self.owners.add(index)
        self.is_open = True
        self.index = index
        self.config = None
        self.applied_controls: dict = {}
        self.frames_out = 0
        self.started = self.closed = False
        self.generation = self.world.generation
        self.calls: list[str] = []
        self._lock = threading.Lock()
        self._jobs: list[FakeJob] = []
        self._loop: threading.Thread | None = None
        self._loop_stop = threading.Event()
        self.instances.append(self)

    @classmethod
    def global_camera_info(cls):
        return cls.cameras if cls.world.plugged else []

    @property
    def camera_controls(self):
        if self.config is None:
            return {**self.controls, **{k: v for k, v in self.unconfigured.items() if k in self.controls}}
        return dict(self.controls)

    def camera_configuration(self):
        def made(stream):
            size = tuple(max(side, self.min_side) for side in stream["size"])
            return {**stream, "size": size}

        return {**self.config, "main": made(self.config["main"]), "lores": made(self.config["lores"])}

    def _check_controls(self, controls) -> None:
        for name in controls:
            if name not in self.camera_controls:
                raise RuntimeError(f"Control {name} is not advertised by libcamera")

    def create_video_configuration(self, main=None, lores=None, controls=None):
        return {"main": main, "lores": lores, "controls": controls}

    def _lores_array(self, image):
        """The lores stream of ``image`` as picamera2 gives a YUV420 one: (h * 3/2) rows of a
        stride wider than the picture, the Y plane first (here the picture's first grey level)."""
        width, height = self.config["lores"]["size"]
        array = np.full((height * 3 // 2, width + 32), 128, np.uint8)
        array[:height, :width] = image.flat[0]
        array[:height, width:] = 0  # the padding, which must not be part of the plane
        return array

    def configure(self, config):
        self._check_controls(config.get("controls") or {})
        self.config = config
        self.applied_controls = dict(config.get("controls") or {})

    def set_controls(self, controls):
        self._check_controls(controls)
        self.applied_controls.update(controls)

    def start(self):
        self.calls.append("start")
        self.started = True
        self._loop = threading.Thread(target=self._event_loop, daemon=True)
        self._loop.start()

    def _lens(self):
        if "LensPosition" not in self.controls:
            return {}
        if self.applied_controls.get("AfMode") == 2:
            return {"LensPosition": 4.8}  # continuous autofocus found the card at about 20 cm
        return {"LensPosition": self.applied_controls.get("LensPosition", 1.0)}

    def _metadata(self):
        """What the camera reports with a frame: what it applied, and whether AE and AF settled."""
        self.frames_out += 1
        searching = self.frames_out <= self.settle_frames
        applied = self.applied_controls
        metadata = {
            "ExposureTime": applied.get("ExposureTime", self.auto_exposure_us),
            "AnalogueGain": applied.get("AnalogueGain", self.auto_gain),
            "FrameDuration": applied["FrameDurationLimits"][0],
            **self._lens(),
        }
        if applied.get("AeEnable", True) and "ExposureTime" not in applied:
            metadata["AeLocked"] = not searching
        if "AfMode" in self.controls:
            metadata["AfState"] = 1 if searching and applied.get("AfMode") == 2 else (2 if applied.get("AfMode") == 2 else 0)
        return metadata

    def _event_loop(self):
        completed: collections.deque = collections.deque(maxlen=4)  # libcamera's few buffers
        while not self._loop_stop.is_set():
            image = self.world.next_image(self.generation)
            with self._lock:
                if image is not None:
                    completed.append(image)
                if completed and self._jobs and self._jobs[0].kind == "capture":
                    job, image = self._jobs.pop(0), completed.popleft()
                    arrays = [image if name == "main" else self._lores_array(image) for name in job.names]
                    job.future.set_result((arrays, self._metadata()))
                while self._jobs and self._jobs[0].kind == "stop":
                    self.started = False
                    self._jobs.pop(0).future.set_result(None)

    def capture_arrays(self, names=("main",), wait=None):
        assert set(names) <= {"main", "lores"} and wait is False
        job = FakeJob("capture", tuple(names))
        with self._lock:
            self._jobs.append(job)
        return job

    def wait(self, job, timeout=None):
        return job.future.result(timeout=timeout)  # concurrent.futures.TimeoutError is TimeoutError

    def stop(self):
        self.calls.append("stop")
        if not self.started:
            return
        job = FakeJob("stop")
        with self._lock:
            self._jobs.append(job)
        # picamera2 waits for the stop job with no timeout; here until the test ends at the latest.
        while not job.future.done() and not self.test_over.wait(0.01):
            pass

    def cancel_all_and_flush(self):
        self.calls.append("cancel_all_and_flush")
        with self._lock:
            for job in self._jobs:
                job.future.set_exception(concurrent.futures.CancelledError())
            self._jobs = []

    def close(self):
        if not self.is_open:
            return  # picamera2: nothing to close for a camera that never opened (its pipe stays open)
        self.calls.append("close")
        self.is_open = False
        self.notifymeread.close()
        os.close(self.notifyme_w)
        self._loop_stop.set()
        if self._loop is not None:
            self._loop.join()
        self.started = False
        self.closed = True
        self.owners.discard(self.index)
