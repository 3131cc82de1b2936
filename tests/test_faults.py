"""The fault registry: however often a fault is raised or cleared, outputs hear of it once each way."""

from __future__ import annotations

import threading

from device.daemon.faults import CAMERA, OUTBOX, FaultRegistry


class Told:
    def __init__(self):
        self.log = []

    def fault(self, name, message):
        self.log.append(("fault", name, message))

    def fault_cleared(self, name):
        self.log.append(("cleared", name))


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
    assert told.log == [("fault", CAMERA, "no frame for 5 s"), ("fault", OUTBOX, "disk full"), ("cleared", CAMERA), ("cleared", OUTBOX)]
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
    assert told.log == [("fault", CAMERA, "gone")]
