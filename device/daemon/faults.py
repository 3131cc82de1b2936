"""The fault registry: what is wrong right now, each fault raised once and cleared once.

Anything may raise or clear a fault, from any thread, as often as it likes (the scan loop clears
``camera`` on every frame, and raises ``outbox`` on every commit a full disk refuses); the
registry publishes an event (:class:`~device.events.FaultRaised`, :class:`~device.events.FaultCleared`)
only on a change, so the amber LED sees one start and one end per fault. The log stays as quiet: one
line when a fault starts, at most one reminder a minute while it keeps being raised (with how often),
one line when it clears::

    faults = FaultRegistry(outputs.publish)
    faults.raise_(OUTBOX, "disk full")   # WARNING fault outbox: disk full; FaultRaised published
    faults.raise_(OUTBOX, "disk full")   # counted, nothing logged, nobody told again
    ...                                  # a minute later, at the next raise:
    # WARNING still: fault outbox: disk full (on for 60 s; 75 times in the last 60 s)
    faults.clear(OUTBOX, "stored again") # INFO outbox fault cleared after 75 s (93 times): stored again
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from device.events import Event, FaultCleared, FaultRaised

log = logging.getLogger("device.daemon")

#: A fault still being raised is logged again at most this often.
REMIND_EVERY_S = 60.0


@dataclass
class _Fault:
    message: str
    started: float  # clock time it was raised first
    logged: float  # clock time of its last log line
    times: int = 1  # raises since it started
    since_logged: int = 0  # raises since its last log line


class FaultRegistry:
    """Active faults by name, with their latest message; changes are published.

    :param publish: where :class:`~device.events.FaultRaised` and :class:`~device.events.FaultCleared`
        go (the kiosk's :meth:`OutputRunner.publish <device.outputs.OutputRunner.publish>`).
    :param clock: monotonic seconds (injectable for tests of the reminders).
    """

    def __init__(self, publish: Callable[[Event], object], *, clock: Callable[[], float] = time.monotonic):
        self.publish = publish
        self.clock = clock
        self._lock = threading.Lock()
        self._active: dict[str, _Fault] = {}

    def raise_(self, name: str, message: str, *, counted: bool = True) -> None:
        """Fault ``name`` is on (again). The first call until it clears is logged and told; later
        calls update the message, and log a reminder when the last line is a minute old.

        ``counted=False`` for a state checked periodically (:meth:`set`): its checks are not
        occurrences, so the reminder does not count them.
        """
        now = self.clock()
        remind = False
        with self._lock:
            fault = self._active.get(name)
            if fault is None:
                self._active[name] = _Fault(message, started=now, logged=now)
            else:
                fault.message = message
                fault.times += counted
                fault.since_logged += counted
                remind = now - fault.logged >= REMIND_EVERY_S
                if remind:
                    on_for, count, window = now - fault.started, fault.since_logged, now - fault.logged
                    fault.logged, fault.since_logged = now, 0
        if fault is None:
            log.warning("fault %s: %s", name, message)
            self.publish(FaultRaised(name, message))
        elif remind:
            times = f"; {count} times in the last {window:.0f} s" if count else ""
            log.warning("still: fault %s: %s (on for %.0f s%s)", name, message, on_for, times)

    def clear(self, name: str, how: str) -> None:
        """Fault ``name`` is over (``how`` says why, for the log); a no-op when it was not on."""
        now = self.clock()
        with self._lock:
            was = self._active.pop(name, None)
        if was is not None:
            times = f", {was.times} times" if was.times > 1 else ""
            log.info("%s fault cleared after %.0f s%s: %s", name, now - was.started, times, how)
            self.publish(FaultCleared(name, how))

    def set(self, name: str, on: bool, message: str, how: str) -> None:
        """Raise or clear ``name`` as ``on`` says: for checks that run every turn."""
        if on:
            self.raise_(name, message, counted=False)
        else:
            self.clear(name, how)

    def active(self) -> dict[str, str]:
        """A copy: name -> message, for every fault on now."""
        with self._lock:
            return {name: fault.message for name, fault in self._active.items()}

    def times(self, name: str) -> int:
        """How often ``name`` was raised since it started (0 when it is not on)."""
        with self._lock:
            fault = self._active.get(name)
            return fault.times if fault else 0
