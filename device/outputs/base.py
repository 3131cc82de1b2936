"""The one interface every output implements, and the runner that keeps outputs off the scan thread.

An output is told what the kiosk did, as typed events (:mod:`device.events`); it never decides
anything. Subclass :class:`Output` and override only the ``on_<kind>`` methods of the events you
need (the rest are no-ops, and the runner does not even queue those events for you)::

    class Counter(Output):
        def __init__(self):
            self.delivered = 0

        def on_delivered(self, event: Delivered) -> None:
            self.delivered += len(event.records)

    runner = OutputRunner([Counter(), Feedback.from_config(cfg)])
    runner.publish(Identified(record, frame.index, time.monotonic()))   # queued: returns at once
    runner.close(timeout_s=5)           # every queued event delivered, then each output closed

Each output has its own thread and bounded queue (:class:`OutputRunner`), so a slow output (a
buzzer driver stuck in the kernel, a POS link timing out) or a failing one never delays a frame
or the watchdog, and never delays the other outputs. The threads are supervised
(:class:`~device.threads.SupervisedThread`): an event that raises is a fault (``thread output
<Name>``, logged once with its traceback) and the output goes on with the next event; an output
stuck in one event for :data:`OUTPUT_STALL_S` is a hang, for which the daemon is restarted.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Protocol

from device.events import (
    EVENT_TYPES,
    Dead,
    Delivered,
    DeliveryFailed,
    Event,
    FaultCleared,
    FaultRaised,
    FrameScanned,
    Identified,
    NotACard,
    Refused,
    StatusPublished,
)
from device.health.outputs import OutputHealth
from device.threads import HEARTBEAT_S, StopFlag, SupervisedThread

log = logging.getLogger(__name__)

#: An output busy with one event for this long is stuck (a driver hung in the kernel): a shorter
#: block costs only that output its frames, this one has the daemon restarted.
OUTPUT_STALL_S = 60.0


class FaultSwitch(Protocol):
    """The kiosk's faults (:class:`device.daemon.faults.FaultRegistry`): on with a cause, off with why.

    An output that can fail on its own (the POS link, the metrics file) is given them, since outputs
    do not import the daemon."""

    def raise_(self, name: str, message: str) -> None: ...

    def clear(self, name: str, how: str) -> None: ...


def handler_name(kind: type[Event]) -> str:
    """The :class:`Output` method that receives events of type ``kind``.

    >>> handler_name(Identified), handler_name(FrameScanned)
    ('on_identified', 'on_frame')
    """
    return f"on_{kind.kind}"


class Output:
    """What happens after the kiosk did something: lights, logs, a POS message, a preview.

    Every ``on_<kind>`` method is a no-op here; an output overrides the ones it cares about.
    They run in the output's own thread (see :class:`OutputRunner`), one event at a time, in
    order, some time after the fact: so the scan events say which frame (``frame_index``, the
    camera's :attr:`~device.camera.Frame.index`) they came from.
    """

    def on_identified(self, event: Identified) -> None:
        """A client was identified and the identification is durable in the outbox (the "OK")."""

    def on_refused(self, event: Refused) -> None:
        """A replaced card (lost, re-issued) was shown: not identified; its refusal is durable."""

    def on_not_a_card(self, event: NotACard) -> None:
        """A barcode that is not a client card was shown (once per presentation)."""

    def on_delivered(self, event: Delivered) -> None:
        """The central holds these records and the outbox says so (after the commit)."""

    def on_delivery_failed(self, event: DeliveryFailed) -> None:
        """A delivery attempt failed (its cause); its records stay pending and are tried again."""

    def on_dead(self, event: Dead) -> None:
        """The central refused a record for good and the outbox says so (after the commit)."""

    def on_fault_raised(self, event: FaultRaised) -> None:
        """A fault started (once, until it clears)."""

    def on_fault_cleared(self, event: FaultCleared) -> None:
        """A fault is over."""

    def on_frame(self, event: FrameScanned) -> None:
        """A frame went through the pipeline. Dropped, oldest first, when the output falls behind."""

    def on_status(self, event: StatusPublished) -> None:
        """The daemon's status, every couple of seconds. Dropped, oldest first, when the output falls behind."""

    def close(self) -> None:
        """The kiosk stops: release hardware. Called once, after the last event."""

    @classmethod
    def handles(cls, kind: type[Event]) -> bool:
        """True when this output overrides the method for events of type ``kind``.

        >>> class Lights(Output):
        ...     def on_identified(self, event): ...
        >>> Lights.handles(Identified), Lights.handles(FrameScanned)
        (True, False)
        """
        name = handler_name(kind)
        return getattr(cls, name) is not getattr(Output, name)


class _Worker:
    """One output's queue and thread.

    The thread's stop flag means "closing": deliver what is queued, then close the output. The
    thread looks at it whenever it waits for an event (at least every second): its heartbeat.
    """

    def __init__(self, output: Output, queue_size: int):
        self.output = output
        self.name = type(output).__name__
        self.queue: deque[Event] = deque()
        self.queue_size = queue_size
        self.ready = threading.Condition()
        self.dropped: dict[str, int] = {}
        self.failures = 0
        self.busy = False
        # Events the output does not override are not queued: no wake-up per frame for nothing.
        self.wants = {kind for kind in EVENT_TYPES if type(output).handles(kind)}
        self.thread = SupervisedThread(f"output {self.name}", self._run, stall_after_s=OUTPUT_STALL_S)
        self.closing = self.thread.stop_flag
        self.thread.start()

    def put(self, event: Event) -> None:
        if type(event) not in self.wants:
            return
        with self.ready:
            if self.closing.is_set():
                return
            if len(self.queue) >= self.queue_size and not self._make_room():
                self._drop(event)
                return
            self.queue.append(event)
            self.ready.notify()

    def _make_room(self) -> bool:
        """Drop the oldest droppable event to make room; False when the newcomer must go instead."""
        for i, queued in enumerate(self.queue):
            if queued.droppable:
                del self.queue[i]
                self._drop(queued)
                return True
        return False

    def _drop(self, event: Event) -> None:
        kind = event.kind
        self.dropped[kind] = self.dropped.get(kind, 0) + 1
        if not event.droppable and self.dropped[kind] == 1:
            # Not silent: an identification the LEDs never showed is worth a technician's look.
            log.error("output %s is %d events behind: %s events dropped (counted in status)", self.name, self.queue_size, kind)

    def _run(self, closing: StopFlag) -> None:
        while True:
            with self.ready:
                while not self.queue and not closing.is_set():
                    self.ready.wait(timeout=HEARTBEAT_S)
                if not self.queue:  # closing, and everything delivered
                    break
                event = self.queue.popleft()
                self.busy = True
            try:
                self._call(event.kind, getattr(self.output, handler_name(type(event))), event)
            finally:  # also when the thread dies here: it is restarted, and not busy meanwhile
                with self.ready:
                    self.busy = False
                    self.ready.notify_all()
        self._call("close", self.output.close)

    def _call(self, what: str, method: Callable[..., object], *args: Event) -> None:
        try:
            method(*args)
        except Exception as exc:
            # Counted in status; the thread logs the traceback once per cause, not 30 times a second.
            self.failures += 1
            self.thread.survived(exc, what)

    def idle(self) -> bool:
        with self.ready:
            return not self.queue and not self.busy

    def close(self) -> None:
        with self.ready:
            self.closing.set()
            self.ready.notify_all()


class OutputRunner:
    """The kiosk's outputs, each behind its own thread and a queue of ``queue_size`` events.

    :meth:`publish` queues an event for each output that handles it and returns at once; any
    thread may call it (the scan loop, the forwarder, the fault registry). When an output falls
    ``queue_size`` events behind, its oldest droppable events (:class:`~device.events.FrameScanned`
    and :class:`~device.events.StatusPublished`) are dropped; other events are dropped only when
    the queue holds nothing else, counted in :meth:`status` and logged once.

        outputs = OutputRunner([LogOutput(unmask=False)])
        outputs.publish(FaultRaised("camera", "no frames"))
        outputs.close(timeout_s=5)
    """

    def __init__(self, outputs: Iterable[Output] = (), *, queue_size: int = 64):
        self.queue_size = queue_size
        self._workers: list[_Worker] = []
        for output in outputs:
            self.add(output)

    def add(self, output: Output) -> None:
        """Start telling ``output`` (from now on)."""
        if not isinstance(output, Output):
            raise TypeError(f"{type(output).__name__} is not a device.outputs.Output")
        self._workers.append(_Worker(output, self.queue_size))

    @property
    def outputs(self) -> list[Output]:
        return [w.output for w in self._workers]

    def threads(self) -> list[SupervisedThread]:
        """Each output's thread, for the daemon's supervisor."""
        return [w.thread for w in self._workers]

    def wants(self, kind: type[Event]) -> bool:
        """True when some output handles events of type ``kind`` (so making one is worth it)."""
        return any(kind in w.wants for w in self._workers)

    def publish(self, event: Event) -> None:
        """Queue ``event`` for every output that handles it; returns at once."""
        for worker in self._workers:
            worker.put(event)

    def idle(self) -> bool:
        """True when every output has handled every event queued so far."""
        return all(w.idle() for w in self._workers)

    def status(self) -> dict[str, OutputHealth]:
        """Per output (by class name): events waiting, events dropped and calls that raised, for ``kiosk status``."""
        return {w.name: OutputHealth(queued=len(w.queue), dropped=dict(w.dropped), failures=w.failures) for w in self._workers}

    def close(self, timeout_s: float = 10.0) -> bool:
        """Deliver what is queued, close every output; False when one did not finish in ``timeout_s``."""
        for worker in self._workers:
            worker.close()
        done = True
        deadline = time.monotonic() + timeout_s  # one budget for all: shutdown must stay bounded
        for worker in self._workers:
            if not worker.thread.join(timeout=max(0.0, deadline - time.monotonic())):
                log.error(
                    "output %s did not finish within %g s at shutdown: %d events not delivered", worker.name, timeout_s, len(worker.queue)
                )
                done = False
        return done
