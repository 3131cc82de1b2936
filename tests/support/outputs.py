"""Outputs and publish sinks that record or block, for tests of what the outside world is told, of
an output that never lets the scan loop wait, and of delivery events published after the commit.

    >>> from device.events import FaultCleared
    >>> recorder = Recorder()
    >>> recorder.on_fault_cleared(FaultCleared("camera", "frames arriving"))
    >>> recorder.log
    [('cleared', 'camera')]
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

from device.outputs.base import Output


class Recorder(Output):
    """A daemon output that records what the outside world was told, in order: ``log`` holds
    ("identified", contract), ("not-a-card", reason), ("fault", name), ("cleared", name) and,
    with ``frames``, ("frame", index). ``on_fault(name)`` is called on each fault raised."""

    def __init__(self, on_fault=None, frames=False):
        self.log = []
        self.on_fault = on_fault
        self._frames = frames

    def on_identified(self, event):
        self.log.append(("identified", event.record.contract))

    def on_not_a_card(self, event):
        self.log.append(("not-a-card", event.reading.rejection.reason))

    def on_fault_raised(self, event):
        self.log.append(("fault", event.name))
        if self.on_fault:
            self.on_fault(event.name)

    def on_fault_cleared(self, event):
        self.log.append(("cleared", event.name))

    def on_frame(self, event):
        if self._frames:
            self.log.append(("frame", event.frame_index))


class Stuck(Output):
    """An output whose every event blocks until the test lets go (a driver hung in the kernel)."""

    def __init__(self):
        self.entered = threading.Event()
        self.release = threading.Event()
        self.handled = 0

    def _block(self, *args):
        self.entered.set()
        self.release.wait(timeout=60)
        self.handled += 1

    on_identified = on_not_a_card = on_fault_raised = on_fault_cleared = on_frame = _block


def committed_states(outbox_path: Path, ids) -> list[str]:
    """The states of the outbox records ``ids`` (in that order) as a connection of their own sees
    them: only what the outbox has committed, as another process would read it."""
    ids = list(ids)
    db = sqlite3.connect(f"file:{outbox_path}?mode=ro", uri=True)
    try:
        states = dict(db.execute(f"SELECT id, state FROM identifications WHERE id IN ({','.join('?' * len(ids))})", ids).fetchall())
    finally:
        db.close()
    return [states.get(i, "missing") for i in ids]


def record_ids(event) -> list[str]:
    """The outbox records a delivery event is about, by id: Delivered's and Dead's (a failed
    attempt, DeliveryFailed, names none: its records stay pending)."""
    if hasattr(event, "records"):
        return [r.id for r in event.records]
    return [event.record.id] if hasattr(event, "record") else []


class Published:
    """A publish sink (the forwarder's ``publish``): ``events`` holds each event with the
    committed states of its records at the instant it was published (:func:`committed_states`)."""

    def __init__(self, outbox_path: Path):
        self.outbox_path = outbox_path
        self.events = []

    def __call__(self, event) -> None:
        self.events.append((event, committed_states(self.outbox_path, record_ids(event))))
