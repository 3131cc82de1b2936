"""The fault registry: however often a fault is raised or cleared, outputs hear of it once each way
(one :class:`FaultRaised`, one :class:`FaultCleared`)."""

from __future__ import annotations

import logging
import threading

from device.daemon.faults import FaultRegistry
from device.events import FaultCleared, FaultRaised
from device.fault_names import BACKLOG, CAMERA, OUTBOX


class Told:
    """A publish callable that keeps what it was given: ``log``, the events in order."""

    def __init__(self):
        self.log = []

    def __call__(self, event):
        self.log.append(event)


def test_raised_once_cleared_once_with_the_latest_message_kept():
    told = Told()
    faults = FaultRegistry(told)
    faults.clear(CAMERA, "frames arriving")  # not on: nothing to say
    faults.raise_(CAMERA, "no frame for 5 s")
    faults.raise_(CAMERA, "no frame for 6 s")
    faults.set(OUTBOX, True, "disk full", "stored again")
    assert faults.active() == {CAMERA: "no frame for 6 s", OUTBOX: "disk full"}
    faults.clear(CAMERA, "frames arriving")
    faults.clear(CAMERA, "frames arriving")
    faults.set(OUTBOX, False, "disk full", "stored again")
    assert told.log == [
        FaultRaised(CAMERA, "no frame for 5 s"),
        FaultRaised(OUTBOX, "disk full"),
        FaultCleared(CAMERA, "frames arriving"),
        FaultCleared(OUTBOX, "stored again"),
    ]
    assert faults.active() == {}


def test_raised_from_many_threads_at_once_is_told_once():
    told = Told()
    faults = FaultRegistry(told)
    start = threading.Barrier(8)

    def raise_it():
        start.wait()
        faults.raise_(CAMERA, "gone")

    threads = [threading.Thread(target=raise_it) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert told.log == [FaultRaised(CAMERA, "gone")]


# --- a quiet log: once at the start, a reminder a minute with a count, once at the end ---------


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def fault_lines(caplog):
    return [(r.levelname, r.getMessage()) for r in caplog.records if r.name == "device.daemon"]


def test_a_fault_raised_all_the_time_logs_a_reminder_a_minute_with_a_count(caplog):
    caplog.set_level(logging.INFO, logger="device.daemon")
    clock, told = FakeClock(), Told()
    faults = FaultRegistry(told, clock=clock)
    for _ in range(200):  # four raises a second for 50 s: nothing more than the first line
        faults.raise_(OUTBOX, "the outbox is full")
        clock.now += 0.25
    assert fault_lines(caplog) == [("WARNING", "fault outbox: the outbox is full")]
    for _ in range(60):  # ...past the minute: one reminder, counting what the minute held
        faults.raise_(OUTBOX, "the outbox is full")
        clock.now += 0.25
    assert fault_lines(caplog)[1:] == [("WARNING", "still: fault outbox: the outbox is full (on for 60 s; 240 times in the last 60 s)")]
    faults.clear(OUTBOX, "identifications are stored again")
    assert fault_lines(caplog)[2:] == [("INFO", "outbox fault cleared after 65 s, 260 times: identifications are stored again")]
    assert told.log == [
        FaultRaised(OUTBOX, "the outbox is full"),
        FaultCleared(OUTBOX, "identifications are stored again"),
    ]  # once each way


def test_a_state_checked_every_turn_is_reminded_without_a_count(caplog):
    caplog.set_level(logging.INFO, logger="device.daemon")
    clock, told = FakeClock(), Told()
    faults = FaultRegistry(told, clock=clock)
    for _ in range(61):  # housekeeping's check every 2 s for two minutes
        faults.set(BACKLOG, True, "oldest undelivered is 2 h old", "delivered")
        clock.now += 2
    assert [m for _, m in fault_lines(caplog)] == [
        "fault backlog: oldest undelivered is 2 h old",
        "still: fault backlog: oldest undelivered is 2 h old (on for 60 s)",
        "still: fault backlog: oldest undelivered is 2 h old (on for 120 s)",
    ]


def test_a_fault_raised_once_and_left_alone_is_not_reminded(caplog):
    caplog.set_level(logging.INFO, logger="device.daemon")
    clock = FakeClock()
    faults = FaultRegistry(Told(), clock=clock)
    faults.raise_(CAMERA, "no frame for 5 s")
    clock.now += 3600
    faults.clear(CAMERA, "frames arriving")
    assert [m for _, m in fault_lines(caplog)] == ["fault camera: no frame for 5 s", "camera fault cleared after 3600 s: frames arriving"]


# --- the case: a full disk (a real small tmpfs) and a card held in view -------------------


def test_a_full_disk_logs_the_fault_once_not_every_refused_commit(tmp_path, card_folder, central, small_disk, caplog):
    from support.cards import contracts
    from support.config import QUICK_RETRY, kiosk_config
    from support.disk import fill
    from support.outputs import Recorder

    from device.assembly import make_forwarder, open_outbox
    from device.camera.file import FileSource
    from device.config import load
    from device.daemon import Kiosk
    from device.pipeline import Pipeline

    caplog.set_level(logging.DEBUG)
    a, b = contracts(2)
    folder = card_folder([a, b], frames_per_card=60)  # each card held 12 s (5 fps): many refused commits
    cfg = load(
        kiosk_config(tmp_path, central=central, source=f"file:{folder}", api=QUICK_RETRY),
        environ={"KIOSK_OUTBOX_PATH": str(small_disk / "outbox.db")},
    )
    outbox = open_outbox(cfg)
    filler = fill(small_disk)
    refused = []

    class FreeSpaceLater(Recorder):
        """The technician frees space once the kiosk has been refused many times."""

        def on_frame(self, event):
            if filler.exists() and kiosk.faults.times(OUTBOX) >= 10:
                refused.append(kiosk.faults.times(OUTBOX))
                filler.unlink()

    events = FreeSpaceLater()
    kiosk = Kiosk(FileSource(folder, pace="fast"), Pipeline.from_config(cfg), outbox, make_forwarder(cfg, outbox), outputs=[events])
    assert kiosk.run(threading.Event(), drain_timeout_s=30) == 0
    assert refused and refused[0] >= 10  # the test can fail: commits were refused again and again
    assert events.log[:2] == [("fault", OUTBOX), ("cleared", OUTBOX)]
    loud = [(r.name, r.getMessage()) for r in caplog.records if r.levelno >= logging.WARNING]
    outbox_lines = [m for _, m in loud if "outbox" in m or "disk" in m or "full" in m]
    assert len(outbox_lines) == 1 and outbox_lines[0].startswith("fault outbox: "), loud
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], loud
    cleared = [r.getMessage() for r in caplog.records if "fault cleared" in r.getMessage()]
    assert len(cleared) == 1 and cleared[0].startswith("outbox fault cleared after ")
