"""Outputs: one interface, each in its own thread behind a bounded queue.

What a user would notice: a stuck or broken output (an LED driver hanging in the kernel, a POS
link down) never stops frames, identifications or the watchdog, and the other outputs still
get every event; a finite run shows every event before it exits.
"""

from __future__ import annotations

import logging
import threading

import pytest
from support.camera import HangingSource
from support.cards import contracts
from support.config import QUICK_RETRY, kiosk_config
from support.notify import listen, messages
from support.outputs import Recorder, Stuck
from support.waiting import wait_until

from device.assembly import make_forwarder, open_outbox
from device.camera.file import FileSource
from device.config import load
from device.daemon import Kiosk
from device.daemon.notify import Notifier
from device.events import EVENT_TYPES, FaultCleared, FaultRaised, FrameScanned, Identified
from device.outputs import Output, OutputHealth, OutputRunner, handler_name
from device.outputs.log import LogOutput
from device.pipeline import Pipeline


class Broken(Output):
    """An output that raises on every event."""

    def _raise(self, *args):
        raise RuntimeError("LED driver gone")

    on_identified = on_not_a_card = on_fault_raised = on_fault_cleared = on_frame = _raise


def test_a_stuck_output_neither_slows_the_scan_loop_nor_starves_the_watchdog(tmp_path, central):
    cfg = load(kiosk_config(tmp_path, central=central, source="v4l2:/dev/video9", api=QUICK_RETRY), environ={})
    sock, path = listen(tmp_path)
    source = HangingSource()  # an empty counter at 50 frames a second, never hangs here
    outbox = open_outbox(cfg)
    notifier = Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "1000000"})
    stuck, recorder = Stuck(), Recorder(frames=True)
    kiosk = Kiosk(source, Pipeline.from_config(cfg), outbox, make_forwarder(cfg, outbox), notifier=notifier, outputs=[stuck, recorder])
    stop = threading.Event()
    runner = threading.Thread(target=kiosk.run, args=(stop,))
    runner.start()
    try:
        wait_until(stuck.entered.is_set, what="the stuck output to get its first event")
        frames_then = kiosk.counters.frames
        got = messages(sock, lambda m: sum("WATCHDOG=1" in x for x in m) >= 3)  # pings go on...
        wait_until(lambda: kiosk.counters.frames >= frames_then + 100, what="frames scanned while the output is stuck")
        assert not stuck.release.is_set() and stuck.handled == 0  # ...while the output is still stuck
        assert any("WATCHDOG=1" in m for m in got)
        # The other output is not held up either, and the stuck one's queue stays bounded.
        wait_until(lambda: sum(e[0] == "frame" for e in recorder.log) >= 100, what="the other output's frames")
        stats = kiosk.outputs.status()["Stuck"]
        assert stats.queued <= kiosk.outputs.queue_size and stats.dropped["frame"] > 0
    finally:
        stop.set()
        stuck.release.set()
        runner.join(timeout=30)
        sock.close()
    assert not runner.is_alive()


def test_a_raising_output_is_logged_once_and_the_others_get_every_event(tmp_path, card_folder, central, caplog):
    shown = contracts(2)
    cfg = load(kiosk_config(tmp_path, central=central, source=f"file:{card_folder(shown)}", api=QUICK_RETRY), environ={})
    outbox = open_outbox(cfg)
    recorder = Recorder(frames=True)
    kiosk = Kiosk(
        FileSource(card_folder(shown, name="again"), pace="fast"),
        Pipeline.from_config(cfg),
        outbox,
        make_forwarder(cfg, outbox),
        outputs=[Broken(), recorder],
    )
    with caplog.at_level(logging.ERROR, logger="device.threads"):
        assert kiosk.run(threading.Event(), drain_timeout_s=30) == 0
    # The run returned: every event has been shown (a finite run drains its outputs).
    fault = "thread output Broken"
    assert [e for e in recorder.log if e[0] != "frame" and e[1] != fault] == [("identified", c) for c in shown]
    assert sum(e[0] == "frame" for e in recorder.log) == kiosk.counters.frames
    assert ("fault", fault) in recorder.log  # a broken output is a fault (amber LED, status)...
    failures = [r for r in caplog.records if "output Broken failed" in r.getMessage()]
    assert len(failures) == 1 and failures[0].exc_info is not None  # ...logged once, not per event
    told_fault = sum(e == ("fault", fault) for e in recorder.log)  # Broken fails on that event too
    assert kiosk.outputs.status()["Broken"].failures == kiosk.counters.frames + len(shown) + told_fault


def test_a_full_queue_drops_the_oldest_frames_first_never_an_identification():
    (stuck,) = outputs = [Stuck()]
    runner = OutputRunner(outputs, queue_size=3)
    try:
        runner.publish(FrameScanned(None, 0))
        wait_until(stuck.entered.is_set, what="the first event to be taken")
        for i in range(1, 4):
            runner.publish(FrameScanned(None, i))  # the queue is full now
        runner.publish(Identified(None, 4, 0.0))  # the oldest frame makes room...
        runner.publish(FaultRaised("camera", "gone"))  # ...and the next oldest
        assert runner.status()["Stuck"] == OutputHealth(queued=3, dropped={"frame": 2}, failures=0)
        assert list(runner._workers[0].queue) == [FrameScanned(None, 3), Identified(None, 4, 0.0), FaultRaised("camera", "gone")]
    finally:
        stuck.release.set()
        assert runner.close(timeout_s=30)
    assert stuck.handled == 4


def test_events_that_cannot_be_queued_are_counted_and_logged_once(caplog):
    stuck = Stuck()
    runner = OutputRunner([stuck], queue_size=2)
    try:
        runner.publish(FaultRaised("camera", "gone"))
        wait_until(stuck.entered.is_set, what="the first event to be taken")
        for _ in range(2):
            runner.publish(FaultCleared("camera", "frames arriving"))
        with caplog.at_level(logging.ERROR, logger="device.outputs"):
            runner.publish(Identified(None, 1, 0.0))
            runner.publish(Identified(None, 2, 0.0))
        assert runner.status()["Stuck"].dropped == {"identified": 2}
        assert sum("identified events dropped" in r.getMessage() for r in caplog.records) == 1
    finally:
        stuck.release.set()
        runner.close(timeout_s=30)


def test_close_delivers_every_queued_event_then_closes_each_output():
    class Closing(Recorder):
        closed_after = None

        def close(self):
            self.closed_after = list(self.log)

    slow, fast = Stuck(), Closing()
    runner = OutputRunner([slow, fast])
    runner.publish(FaultRaised("camera", "gone"))
    wait_until(slow.entered.is_set, what="the slow output to take its event")
    runner.publish(FaultCleared("camera", "frames arriving"))
    slow.release.set()
    assert runner.close(timeout_s=30)
    assert slow.handled == 2
    assert fast.closed_after == [("fault", "camera"), ("cleared", "camera")]
    runner.publish(FaultRaised("outbox", "after close"))  # ignored, no error
    assert fast.log == fast.closed_after


def test_only_outputs_can_be_added():
    class Listener:  # a duck-typed listener
        def on_identified(self, event):
            pass

    with pytest.raises(TypeError, match="not a device.outputs.Output"):
        OutputRunner([Listener()])


def test_log_output_masks_contracts_and_names_the_identification(caplog):
    from types import SimpleNamespace

    identification = SimpleNamespace(contract="0012345678", card_issue=1, seq=7, id="01HXYZ")
    with caplog.at_level(logging.INFO, logger="device.daemon"):
        LogOutput(unmask=False).on_identified(Identified(identification, 3, 0.0))
        LogOutput(unmask=True).on_identified(Identified(identification, 3, 0.0))
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0] == "identified contract ******5678 issue 1 (seq 7, id 01HXYZ)"
    assert lines[1] == "identified contract 0012345678 issue 1 (seq 7, id 01HXYZ)"


def test_kiosk_status_names_an_output_that_lost_events_or_failed():
    from support.status import daemon_status

    from device.health.outputs import OutputHealth
    from device.status.render import render
    from device.status.report import StatusReport

    outputs = {
        "Feedback": OutputHealth(queued=0, dropped={"frame": 12}, failures=0),  # skipped frames: normal
        "Pos": OutputHealth(queued=64, dropped={"identified": 2}, failures=3),
    }
    daemon = daemon_status(outputs=outputs)
    report = StatusReport(True, "running", "kiosk-test", daemon, daemon.queue, None, True, None, [], None, None)
    text = render(report)
    assert "output      Pos: 2 identified events dropped, 3 failed calls (see the log)" in text
    assert "Feedback" not in text


def test_an_output_is_queued_only_the_events_it_handles():
    class Lights(Output):
        def __init__(self):
            self.seen = []

        def on_identified(self, event):
            self.seen.append(event)

    lights = Lights()
    runner = OutputRunner([lights], queue_size=2)
    try:
        for i in range(5):  # more frames than the queue holds: none is queued, so none is dropped
            runner.publish(FrameScanned(None, i))
        runner.publish(Identified(None, 5, 0.0))
    finally:
        assert runner.close(timeout_s=30)
    assert lights.seen == [Identified(None, 5, 0.0)]
    assert runner.status()["Lights"] == OutputHealth(queued=0, dropped={}, failures=0)


def test_every_event_type_has_its_method_on_output():
    for kind in EVENT_TYPES:
        assert callable(getattr(Output, handler_name(kind))), kind
    assert [kind.kind for kind in EVENT_TYPES if kind.droppable] == ["frame", "status"]  # the next one says the same
