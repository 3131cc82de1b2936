"""The camera checks itself (issue 24, item 4): the camera-degraded fault and its cause.

Mocked at the hardware edge only: a camera that delivers generated frames (an empty counter with
a reference target rendered in its top right corner, blurred, darkened, veiled or taken away as a
test says). The kiosk, its scan loop, the check's own thread, the fault registry and the
baseline file are the real code. What a technician would notice: the fault names what is wrong,
and clears once the camera sees well again; the target never reads as "not a card"; without a
target, the cards' figures raise it on a drift of their median, never on one odd read.
"""

from __future__ import annotations

import json
import threading
import time

import cv2
import numpy as np
import pytest
from support.cards import card_photo, contracts, empty_counter
from support.config import kiosk_config
from support.daemon import hand_built_kiosk
from support.kiosk import run_kiosk
from support.waiting import wait_until

from device.assembly import camera_check_output
from device.camera import Frame, FrameSource
from device.config import EXIT_CONFIG, load
from device.daemon.camera_check import BASELINE_FILE, CameraCheck, Cause
from device.daemon.faults import FaultRegistry
from device.events import FaultCleared, FaultRaised, FrameScanned, NotACard
from device.fault_names import CAMERA_DEGRADED
from device.outputs import Output
from device.pipeline import FrameResult, Pipeline
from device.tools.synth.card import render_barcode

NO_CENTRAL = "http://127.0.0.1:9"
TARGET_TEXT = "KT-1"
SIZE = (960, 540)
#: The target at 3 px per module, 12 px from the top right corner; its region has a margin round it.
TARGET = np.asarray(render_barcode(TARGET_TEXT, module_px=3, bar_height_px=36).convert("L"))
TARGET_AT = (SIZE[0] - 12 - TARGET.shape[1], 12)
REGION = (TARGET_AT[0] - 24, 0, TARGET.shape[1] + 36, TARGET.shape[0] + 36)  # x, y, w, h in pixels
REGION_TEXT = ",".join(f"{v / SIZE[i % 2]:.4f}" for i, v in enumerate(REGION))
#: What a quick check needs: a look every 0.1 s, two failed looks in a row for the fault.
QUICK_CHECK = {"target_region": REGION_TEXT, "target_text": TARGET_TEXT, "target_interval_s": 0.1, "target_confirm": 2}


def scene(kind: str = "good", *, seed: int = 0) -> np.ndarray:
    """The counter as the camera sees it, BGR, with the target as ``kind`` says: good, blurred
    (focus lost), dark (light failing), dirty (a veil over the window), removed."""
    grey = cv2.cvtColor(empty_counter(SIZE), cv2.COLOR_BGR2GRAY).astype(np.float32)
    if kind != "removed":
        x, y = TARGET_AT
        grey[y : y + TARGET.shape[0], x : x + TARGET.shape[1]] = TARGET
    if kind == "blurred":
        grey = cv2.GaussianBlur(grey, (0, 0), 2.5)
    elif kind == "dark":
        grey *= 0.35
    elif kind == "dirty":
        grey = 0.45 * grey + 0.55 * 150.0  # scattered light: every grey pulled towards the veil's
    grey += np.random.default_rng(seed).normal(0.0, 2.0, grey.shape)
    return cv2.cvtColor(np.clip(grey, 0, 255).astype(np.uint8), cv2.COLOR_GRAY2BGR)


class SceneCamera(FrameSource):
    """A live camera at about 30 fps showing whatever scene the test puts in front of it."""

    def __init__(self, image: np.ndarray) -> None:
        self.image = image
        self.index = 0
        self.closed = threading.Event()

    def show(self, image: np.ndarray) -> None:
        self.image = image

    def read(self, timeout=None):
        if self.closed.wait(0.03):
            return None
        self.index += 1
        return Frame(self.image, self.index, time.monotonic())

    def close(self) -> None:
        self.closed.set()

    def describe(self) -> str:
        return "scene camera (test)"


class Recorder(Output):
    """The events an output is told: faults and barcodes that are not cards."""

    def __init__(self) -> None:
        self.events: list = []

    def on_fault_raised(self, event: FaultRaised) -> None:
        self.events.append(event)

    def on_fault_cleared(self, event: FaultCleared) -> None:
        self.events.append(event)

    def on_not_a_card(self, event: NotACard) -> None:
        self.events.append(event)


class RunningKiosk:
    """A kiosk of ``camera`` keys around a :class:`SceneCamera`, running in a thread, its camera
    check built as ``kiosk run`` builds it."""

    def __init__(self, tmp_path, camera: dict, image: np.ndarray) -> None:
        self.cfg = load(kiosk_config(tmp_path, central=NO_CENTRAL, camera={"width": SIZE[0], "height": SIZE[1], **camera}), environ={})
        self.camera = SceneCamera(image)
        self.recorder = Recorder()
        self.kiosk = hand_built_kiosk(self.cfg, self.camera, outputs=[self.recorder], runtime_dir=tmp_path / "run")
        self.check = camera_check_output(self.cfg, self.kiosk)
        assert isinstance(self.check, CameraCheck)
        self.kiosk.add_output(self.check)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.kiosk.run, args=(self.stop,), daemon=True)

    def fault(self) -> str | None:
        return self.kiosk.faults.active().get(CAMERA_DEGRADED)

    def looks_after(self, count: int) -> int:
        """Waits until the check has looked at the target ``count`` more times; the looks so far."""
        target = self.check.looks + count
        return wait_until(lambda: self.check.looks >= target and self.check.looks, what=f"{count} more looks at the target")

    def __enter__(self) -> RunningKiosk:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join(timeout=30)
        assert not self.thread.is_alive()


def test_a_target_that_reads_raises_no_fault_and_is_never_a_card(tmp_path):
    with RunningKiosk(tmp_path, QUICK_CHECK, scene()) as running:
        running.looks_after(5)
        assert running.fault() is None
        assert running.check.last is not None and running.check.last[0].read
    baseline = json.loads((tmp_path / BASELINE_FILE).read_text())
    assert baseline["key"]["target_text"] == TARGET_TEXT
    assert 2.5 < baseline["target"]["module_px"] < 4.0  # rendered at 3 px per module
    # The scan loop decoded the view (at least one full look a second) but not the target's place.
    assert running.kiosk.counters.decoded_frames > 0
    assert not [e for e in running.recorder.events if isinstance(e, NotACard)]


def test_without_its_region_the_target_would_read_as_not_a_card():
    """The control of the test above: the target is readable, so ignoring its place is what keeps it quiet."""
    cfg = load(None, environ={})
    readings = Pipeline.from_config(cfg).still(scene())
    assert [(r.symbol.text, r.card) for r in readings] == [(TARGET_TEXT, None)]


@pytest.mark.parametrize(
    ("kind", "cause"),
    [("blurred", Cause.FOCUS_LOST), ("dark", Cause.TOO_DARK), ("dirty", Cause.DIRTY_WINDOW), ("removed", Cause.MOVED)],
)
def test_a_degraded_view_of_the_target_raises_the_fault_naming_the_cause_and_it_clears(tmp_path, kind, cause):
    with RunningKiosk(tmp_path, QUICK_CHECK, scene()) as running:
        wait_until(lambda: running.check.baselines.target, what="the target's baseline")
        running.camera.show(scene(kind, seed=1))
        message = wait_until(running.fault, what=f"the camera-degraded fault ({kind})")
        assert message.startswith(cause.value + ": "), message
        assert running.kiosk.status().faults[CAMERA_DEGRADED] == message  # kiosk status and its JSON show it
        running.camera.show(scene(seed=2))
        wait_until(lambda: running.fault() is None, what="the fault to clear")
    raised = [e for e in running.recorder.events if isinstance(e, FaultRaised) and e.name == CAMERA_DEGRADED]
    cleared = [e for e in running.recorder.events if isinstance(e, FaultCleared) and e.name == CAMERA_DEGRADED]
    assert len(raised) == 1 and len(cleared) == 1  # told once each: the amber LED blinks, then stops


def test_one_failed_look_is_not_a_fault(tmp_path):
    """A hand in front of the target fails one look; the fault needs camera.target_confirm in a row."""
    with RunningKiosk(tmp_path, {**QUICK_CHECK, "target_confirm": 100}, scene()) as running:
        wait_until(lambda: running.check.baselines.target, what="the target's baseline")
        running.camera.show(scene("removed"))
        wait_until(lambda: running.check.last and not running.check.last[1].ok, what="a failed look")
        running.looks_after(3)
        assert running.fault() is None


def test_the_baseline_is_kept_across_restarts_so_a_camera_degraded_before_the_start_is_a_fault(tmp_path):
    with RunningKiosk(tmp_path, QUICK_CHECK, scene()) as running:
        wait_until(lambda: running.check.baselines.target, what="the target's baseline")
    with RunningKiosk(tmp_path, QUICK_CHECK, scene("dirty")) as restarted:
        message = wait_until(restarted.fault, what="the fault at start")
    assert message.startswith(Cause.DIRTY_WINDOW.value)
    # Another camera setup (the lens set otherwise) is another picture: its first good look is its baseline.
    with RunningKiosk(tmp_path, {**QUICK_CHECK, "focus": "fixed"}, scene("dirty")) as other:
        other.looks_after(5)
        assert other.fault() is None


def test_a_target_that_never_read_is_a_fault_that_names_its_region(tmp_path):
    with RunningKiosk(tmp_path, QUICK_CHECK, scene("removed")) as running:
        message = wait_until(running.fault, what="the fault")
    assert message.startswith(Cause.FOCUS_LOST.value) and "camera.target_region" in message


# -- without a target: the cards' own figures ------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_cards_figures_raise_the_fault_on_a_drift_of_their_median_not_on_one_odd_read(tmp_path):
    cfg = load(kiosk_config(tmp_path, central=NO_CENTRAL, camera={"card_check_reads": 5}, scan={"repeat_window_s": 2.0}), environ={})
    events: list = []
    faults = FaultRegistry(events.append)
    check = CameraCheck.from_config(cfg, faults)
    assert check is not None
    check.clock = clock = Clock()
    pipeline = Pipeline.from_config(cfg)
    cards = iter(contracts(40))

    def present(blur: float) -> None:
        """A client shows a card for a few frames, then takes it away (the presentation ends)."""
        image = card_photo(next(cards))
        if blur:
            image = cv2.GaussianBlur(image, (0, 0), blur)
        readings = pipeline.still(image)
        assert readings and readings[0].card is not None and readings[0].symbol.figures is not None
        for _ in range(3):
            check.on_frame(FrameScanned(FrameResult(True, readings), 0))
            clock.now += 0.1
        clock.now += 5.0
        check.on_frame(FrameScanned(FrameResult(True, []), 0))

    def fault() -> str | None:
        return faults.active().get(CAMERA_DEGRADED)

    for _ in range(4):
        present(blur=0)  # too few to judge: no baseline yet, no verdict
    assert check.cards is not None and check.cards.baseline is None
    present(blur=0)  # the fifth: the baseline is the median of these five
    baseline = check.cards.baseline
    assert baseline is not None
    present(blur=1.2)  # one odd read: the median holds
    assert fault() is None

    # A restart: the baseline is the one kept; the first soft presentations are too few to judge.
    check = CameraCheck.from_config(cfg, faults)
    assert check is not None and check.cards is not None and check.cards.baseline == baseline
    check.clock = clock
    for _ in range(4):
        present(blur=1.2)
    assert fault() is None
    present(blur=1.2)  # five soft ones: the median drifted
    assert fault() is not None and fault().startswith(Cause.FOCUS_LOST.value), fault()
    for _ in range(3):
        present(blur=0)  # most of the last five are sharp again
    assert fault() is None
    assert json.loads((tmp_path / BASELINE_FILE).read_text())["cards"]["edge_px"] == baseline.edge_px


def test_readings_carry_the_cards_pixels_per_module_and_edge_width():
    pipeline = Pipeline.from_config(load(None, environ={}))
    sharp, soft = (
        pipeline.still(cv2.GaussianBlur(card_photo("0012345678"), (0, 0), blur) if blur else card_photo("0012345678")) for blur in (0, 1.2)
    )
    assert sharp[0].symbol.figures is not None and soft[0].symbol.figures is not None
    assert 1.8 < sharp[0].symbol.figures.module_px < 2.4  # drawn at 2 px per module
    assert soft[0].symbol.figures.edge_px > 2 * sharp[0].symbol.figures.edge_px


# -- configuration: both commands refuse alike -------------------------------------------------------


@pytest.mark.parametrize(
    ("camera", "key", "words"),
    [
        ({"target_region": "0.9,0,0.2,0.1", "target_text": "KT-1"}, "camera.target_region", "x + w must be at most 1"),
        ({"target_region": "0.8,0.0,0.2"}, "camera.target_region", "expected x,y,w,h"),
        ({"target_region": "0.8,0.0,0.2,0.1"}, "camera.target_text", "required with camera.target_region"),
        ({"target_text": "KT-1"}, "camera.target_region", "required with camera.target_text"),
        ({"target_region": "0.8,0.0,0.2,0.1", "target_text": "LE00123456780168"}, "camera.target_text", "client card's payload"),
        ({"target_region": "0.99,0.0,0.01,0.01", "target_text": "KT-1"}, "camera.target_region", "at least 32 x 16"),
        ({"card_check_reads": 3}, "camera.card_check_reads", "at least 5"),
    ],
)
def test_config_errors_exit_78_naming_the_key_from_config_check_and_run_alike(tmp_path, camera, key, words):
    image = tmp_path / "counter.png"
    cv2.imwrite(str(image), empty_counter())
    path = kiosk_config(tmp_path, central=NO_CENTRAL, source=f"file:{image}", camera=camera, feedback={"pin_factory": "mock"})
    check = run_kiosk("config", "check", "--config", str(path), timeout=60)
    run = run_kiosk("run", "--config", str(path), "--drain-timeout", "5", timeout=60)
    for result in (check, run):
        assert result.returncode == EXIT_CONFIG, result.stderr
        assert f"{key}: " in result.stderr and words in result.stderr, result.stderr
