"""The one interface every output implements, and the runner that keeps outputs off the scan thread.

An output is told what the kiosk did; it never decides anything. Subclass :class:`Output` and
override only the events you need (the rest are no-ops)::

    class Counter(Output):
        def __init__(self):
            self.identified_count = 0

        def identified(self, identification, frame_index):
            self.identified_count += 1

    runner = OutputRunner([Counter(), Feedback.from_config(cfg)])
    runner.identified(identification, frame.index)   # queued: returns at once
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
from collections.abc import Iterable

from device.threads import HEARTBEAT_S, StopFlag, SupervisedThread

log = logging.getLogger(__name__)

#: Events an output may be told, in the order of a presentation's life.
EVENTS = ("identified", "card_replaced", "not_a_card", "fault", "fault_cleared", "frame")

#: Events that may be dropped when an output falls behind: the next frame says the same.
DROPPABLE = frozenset({"frame"})

#: An output busy with one event for this long is stuck (a driver hung in the kernel): a shorter
#: block costs only that output its frames, this one has the daemon restarted.
OUTPUT_STALL_S = 60.0


class Output:
    """What happens after the kiosk did something: lights, logs, a POS message, a preview.

    Every method is a no-op here; an output overrides the ones it cares about. Methods run in
    the output's own thread (see :class:`OutputRunner`), one event at a time, in order, some
    time after the fact: so the scan events say which frame (``frame_index``, the camera's
    :attr:`~device.camera.Frame.index`) they came from.
    """

    def identified(self, identification, frame_index: int) -> None:
        """A client was identified and the identification is durable in the outbox (the "OK")."""

    def card_replaced(self, refusal, frame_index: int) -> None:
        """A replaced card (lost, re-issued) was shown: not identified; ``refusal`` (an outbox
        record of kind ``refusal``, with the contract's ``current_issue``) is durable in the outbox."""

    def not_a_card(self, reading, frame_index: int) -> None:
        """A barcode that is not a client card was shown (once per presentation)."""

    def fault(self, name: str, message: str) -> None:
        """Fault ``name`` started (once, until it clears); ``message`` says what is wrong."""

    def fault_cleared(self, name: str) -> None:
        """Fault ``name`` is over."""

    def frame(self, result, frame_index: int) -> None:
        """A frame went through the pipeline (``result`` is a :class:`~device.pipeline.FrameResult`).

        Dropped, oldest first, when the output falls behind."""

    def close(self) -> None:
        """The kiosk stops: release hardware. Called once, after the last event."""


class _Worker:
    """One output's queue and thread.

    The thread's stop flag means "closing": deliver what is queued, then close the output. The
    thread looks at it whenever it waits for an event (at least every second): its heartbeat.
    """

    def __init__(self, output: Output, queue_size: int):
        self.output = output
        self.name = type(output).__name__
        self.queue: deque[tuple[str, tuple]] = deque()
        self.queue_size = queue_size
        self.ready = threading.Condition()
        self.dropped: dict[str, int] = {}
        self.failures = 0
        self.busy = False
        # Events the output does not override are not queued: no wake-up per frame for nothing.
        self.wants = {e for e in EVENTS if getattr(type(output), e) is not getattr(Output, e)}
        self.thread = SupervisedThread(f"output {self.name}", self._run, stall_after_s=OUTPUT_STALL_S)
        self.closing = self.thread.stop_flag
        self.thread.start()

    def put(self, event: str, args: tuple) -> None:
        if event not in self.wants:
            return
        with self.ready:
            if self.closing.is_set():
                return
            if len(self.queue) >= self.queue_size and not self._make_room(event):
                self._drop(event)
                return
            self.queue.append((event, args))
            self.ready.notify()

    def _make_room(self, event: str) -> bool:
        """Drop the oldest droppable event to make room; False when the newcomer must go instead."""
        for i, (queued, _) in enumerate(self.queue):
            if queued in DROPPABLE:
                del self.queue[i]
                self._drop(queued)
                return True
        return False

    def _drop(self, event: str) -> None:
        self.dropped[event] = self.dropped.get(event, 0) + 1
        if event not in DROPPABLE and self.dropped[event] == 1:
            # Not silent: an identification the LEDs never showed is worth a technician's look.
            log.error("output %s is %d events behind: %s events dropped (counted in status)", self.name, self.queue_size, event)

    def _run(self, closing: StopFlag) -> None:
        while True:
            with self.ready:
                while not self.queue and not closing.is_set():
                    self.ready.wait(timeout=HEARTBEAT_S)
                if not self.queue:  # closing, and everything delivered
                    break
                event, args = self.queue.popleft()
                self.busy = True
            try:
                self._call(event, getattr(self.output, event), args)
            finally:  # also when the thread dies here: it is restarted, and not busy meanwhile
                with self.ready:
                    self.busy = False
                    self.ready.notify_all()
        self._call("close", self.output.close, ())

    def _call(self, event: str, method, args: tuple) -> None:
        try:
            method(*args)
        except Exception as exc:
            # Counted in status; the thread logs the traceback once per cause, not 30 times a second.
            self.failures += 1
            self.thread.survived(exc, event)

    def idle(self) -> bool:
        with self.ready:
            return not self.queue and not self.busy

    def close(self) -> None:
        with self.ready:
            self.closing.set()
            self.ready.notify_all()


class OutputRunner:
    """The kiosk's outputs, each behind its own thread and a queue of ``queue_size`` events.

    The scan thread calls the same methods as on an :class:`Output`; they queue and return at
    once. When an output falls ``queue_size`` events behind, its oldest ``frame`` events are
    dropped; other events are dropped only when the queue holds nothing else, counted in
    :meth:`status` and logged once.

        outputs = OutputRunner([LogOutput(unmask=False)])
        outputs.fault("camera", "no frames")
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

    def _tell(self, event: str, *args) -> None:
        for worker in self._workers:
            worker.put(event, args)

    def identified(self, identification, frame_index: int) -> None:
        self._tell("identified", identification, frame_index)

    def card_replaced(self, refusal, frame_index: int) -> None:
        self._tell("card_replaced", refusal, frame_index)

    def not_a_card(self, reading, frame_index: int) -> None:
        self._tell("not_a_card", reading, frame_index)

    def fault(self, name: str, message: str) -> None:
        self._tell("fault", name, message)

    def fault_cleared(self, name: str) -> None:
        self._tell("fault_cleared", name)

    def frame(self, result, frame_index: int) -> None:
        self._tell("frame", result, frame_index)

    def idle(self) -> bool:
        """True when every output has handled every event queued so far."""
        return all(w.idle() for w in self._workers)

    def status(self) -> dict:
        """Per output: events waiting, events dropped and calls that raised, for ``kiosk status``."""
        return {w.name: {"queued": len(w.queue), "dropped": dict(w.dropped), "failures": w.failures} for w in self._workers}

    def close(self, timeout_s: float = 10.0) -> bool:
        """Deliver what is queued, close every output; False when one did not finish in ``timeout_s``."""
        for worker in self._workers:
            worker.close()
        done = True
        deadline = time.monotonic() + timeout_s  # one budget for all: shutdown must stay bounded
        for worker in self._workers:
            if not worker.thread.join(timeout=max(0.0, deadline - time.monotonic())):
                log.error("output %s did not finish within %g s at shutdown: %d events not delivered", worker.name, timeout_s, len(worker.queue))
                done = False
        return done
