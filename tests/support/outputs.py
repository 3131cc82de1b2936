"""Outputs that record or block, for tests of what the outside world is told and of an output
that never lets the scan loop wait.

    >>> recorder = Recorder()
    >>> recorder.fault_cleared("camera")
    >>> recorder.log
    [('cleared', 'camera')]
"""

from __future__ import annotations

import threading

from device.outputs.base import Output


class Recorder(Output):
    """A daemon output that records what the outside world was told, in order: ``log`` holds
    ("identified", contract), ("not-a-card", reason), ("fault", name), ("cleared", name) and,
    with ``frames``, ("frame", index). ``on_fault(name)`` is called on each fault raised."""

    def __init__(self, on_fault=None, frames=False):
        self.log = []
        self.on_fault = on_fault
        self._frames = frames

    def identified(self, identification, frame_index):
        self.log.append(("identified", identification.contract))

    def not_a_card(self, reading, frame_index):
        self.log.append(("not-a-card", reading.rejection.reason))

    def fault(self, name, message):
        self.log.append(("fault", name))
        if self.on_fault:
            self.on_fault(name)

    def fault_cleared(self, name):
        self.log.append(("cleared", name))

    def frame(self, result, frame_index):
        if self._frames:
            self.log.append(("frame", frame_index))


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

    identified = not_a_card = fault = fault_cleared = frame = _block
