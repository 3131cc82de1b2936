"""Supervised threads: every thread the daemon runs, restarted when its work dies, judged by a heartbeat.

One unit for the forwarder, the housekeeping turn, each output and the camera's grab thread::

    forwarder = SupervisedThread("forwarder", forwarder.run, stall_after_s=200)
    forwarder.start()          # forwarder.run(stop) in a thread of its own
    forwarder.health()         # ThreadHealth: failing, why, gave up, stalled
    forwarder.stop(); forwarder.join(10)

What the unit does when the work raises (any exception, not only ``Exception``: a library's
``sys.exit()`` in a thread would otherwise end it without a word):

* logs it once with its traceback (the same cause again in the same episode: one line, no traceback);
* opens a **failure episode**: :meth:`SupervisedThread.health` says ``failing`` with a one-line
  cause, which the supervisor turns into the fault ``thread <name>`` (status, amber LED);
* calls the work again after a wait from :class:`~device.backoff.Backoff` (the one backoff);
* ends the episode (the fault clears, the backoff starts again from its shortest wait) once the
  restarted work has run ``healthy_after_s`` without failing, and the episode was reported at
  least once (so even the shortest is a fault in status);
* gives up after ``max_restarts`` restarts in one episode: the thread ends, ``gave_up`` is set
  and ``on_give_up`` (if any) is called. The supervisor then has the process restarted (exit 75),
  because what a restart in place cannot fix a fresh process might.

Failures the work catches itself and carries on from (an output whose event raised, a delivery
step that raised) are told with :func:`survived`: the same logging and episode, without a restart.

**Heartbeat.** The work is given a :class:`StopFlag`: looking at it (``is_set()``, or ``wait()``,
which beats while it waits) is the thread's heartbeat, so a loop that checks its stop flag between
steps proves it is not stuck without doing anything else. With ``stall_after_s`` set, a thread that
has not beaten for that long is ``stalled`` (a call that never returns); the supervisor's watchdog
turn then stops feeding systemd's watchdog and has the process restarted.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from device.backoff import Backoff
from device.redact import escape

log = logging.getLogger(__name__)

#: The longest a :class:`StopFlag` waits between two beats.
HEARTBEAT_S = 1.0
#: How much of an exception's message a fault shows.
CAUSE_CHARS = 160


@dataclass(frozen=True)
class RestartPolicy:
    """When a supervised thread's work is called again, when it counts as well, when to give up."""

    backoff_base_s: float = 0.5  #: the wait before the first restart, doubling after each
    backoff_cap_s: float = 8.0  #: the longest wait: 5 restarts take 15.5 s, well within WatchdogSec
    max_restarts: int = 5  #: restarts in one episode; the next failure gives up
    healthy_after_s: float = 60.0  #: running this long without a failure ends the episode


#: The policy of every supervised thread (tests of the daemon swap it for shorter waits).
DEFAULT_POLICY = RestartPolicy()


_local = threading.local()  # .supervised: the SupervisedThread running in this thread


def survived(exc: BaseException, doing: str) -> None:
    """Tell the supervision of the calling thread that ``exc`` happened while ``doing`` something
    and the work carries on (see :meth:`SupervisedThread.survived`). Outside a supervised thread
    (a drain in the main thread, a test) it is logged with its traceback."""
    thread = getattr(_local, "supervised", None)
    if thread is None:
        log.error("%s failed", doing, exc_info=exc)
    else:
        thread.survived(exc, doing)


def cause(exc: BaseException) -> str:
    """One line naming an exception: ``OverflowError: date value out of range`` (escaped, cut short)."""
    text = str(exc).strip().splitlines()
    name = type(exc).__name__
    return escape(f"{name}: {text[0]}" if text else name, CAUSE_CHARS)


@dataclass(frozen=True)
class ThreadHealth:
    """What the supervisor needs to know about one supervised thread, at one moment."""

    name: str
    failing: bool  #: a failure episode is open (or the thread is stalled): its fault is on
    problem: str  #: the fault's message while failing, else ""
    gave_up: bool = False  #: it failed more than ``max_restarts`` times in one episode and ended
    stalled_for_s: float | None = None  #: seconds without a heartbeat, once past ``stall_after_s``

    @property
    def restart_reason(self) -> str | None:
        """Why the process must be restarted because of this thread, or None."""
        if self.gave_up:
            return f"thread {self.name} keeps failing: {self.problem}"
        if self.stalled_for_s is not None:
            return f"thread {self.name} made no progress for {self.stalled_for_s:.0f} s"
        return None


class StopFlag(threading.Event):
    """Set to stop a supervised thread; the thread looking at it is its heartbeat.

    ``is_set()`` and ``wait()`` beat only when the supervised thread itself calls them (another
    thread asking whether it was told to stop proves nothing about it). ``wait`` beats at least
    every :data:`HEARTBEAT_S` while it waits, so a backoff of minutes is not a stall.
    """

    def __init__(self, beat: Callable[[], None]):
        super().__init__()
        self._beat = beat

    def is_set(self) -> bool:
        self._beat()
        return super().is_set()

    def wait(self, timeout: float | None = None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            self._beat()
            left = HEARTBEAT_S if deadline is None else min(HEARTBEAT_S, deadline - time.monotonic())
            if left <= 0:
                return super().is_set()
            if super().wait(left):
                return True


# A supervised thread's states.
NEW, RUNNING, RESTARTING, GAVE_UP, ENDED = "new", "running", "restarting", "gave up", "ended"


class SupervisedThread:
    """A daemon thread running ``work(stop_flag)``, restarted with backoff when it raises.

    :param name: the thread's name, in logs and in the fault ``thread <name>``.
    :param work: the thread's job; it returns when its stop flag is set (or its owner closes
        it). Returning ends the thread; raising restarts ``work`` after a backoff.
    :param stall_after_s: without a heartbeat for this long the thread counts as stalled;
        None: never (its progress is judged otherwise, or not at all).
    :param on_give_up: called with the reason, in the thread, when it gives up (for a thread
        nobody else watches: the housekeeping turn that watches the others).
    :param policy: restart waits and limits; None: :data:`DEFAULT_POLICY` as it is at construction.
    """

    def __init__(
        self,
        name: str,
        work: Callable[[StopFlag], object],
        *,
        stall_after_s: float | None = None,
        on_give_up: Callable[[str], object] | None = None,
        policy: RestartPolicy | None = None,
    ) -> None:
        self.name = name
        self.work = work
        self.stall_after_s = stall_after_s
        self.on_give_up = on_give_up
        self.policy = policy or DEFAULT_POLICY
        self.stop_flag = StopFlag(self._beat)
        self._backoff = Backoff(self.policy.backoff_base_s, self.policy.backoff_cap_s, jitter=False)
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        self._lock = threading.Lock()
        # Guarded by _lock (but _last_beat: one float written by the thread, read by anyone).
        self._state = NEW
        self._last_beat = time.monotonic()
        self._running_since = 0.0
        self._failures = 0  # in the open episode; 0: no episode
        self._restarts = 0  # in the open episode
        self._last_failure_at = 0.0
        self._cause = ""
        self._logged: set[str] = set()  # causes whose traceback this episode has logged
        self._seen = False  # health() has reported the latest failure: the episode may end now
        self._carried_on = False  # the last failure was survived, not a restart

    # --- the owner's side ---------------------------------------------------------------------

    def start(self) -> None:
        self._last_beat = time.monotonic()
        self._thread.start()

    def stop(self) -> None:
        """Tell the work to stop (it ends at its next look at the flag)."""
        self.stop_flag.set()

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the thread to end; True when it has (or never started). From the thread itself: False."""
        if not self.started:
            return True
        if self.is_current():
            return False
        self._thread.join(timeout)
        return not self._thread.is_alive()

    @property
    def started(self) -> bool:
        return self._thread.ident is not None

    def is_alive(self) -> bool:
        return self._thread.is_alive()

    def is_current(self) -> bool:
        """True when called from this thread."""
        return threading.current_thread() is self._thread

    def health(self) -> ThreadHealth:
        """Failing (and why), gave up, stalled: read by the supervisor's housekeeping turn."""
        now = time.monotonic()
        with self._lock:
            self._end_episode_if_well(now)
            stalled_for = None
            silent = now - self._last_beat
            watching = self._state in (RUNNING, RESTARTING) and not threading.Event.is_set(self.stop_flag)
            if self.stall_after_s is not None and watching and silent > self.stall_after_s:
                stalled_for = silent
            if self._failures:
                self._seen = True
                return ThreadHealth(self.name, True, self._problem_locked(), self._state == GAVE_UP, stalled_for)
        if stalled_for is not None:
            return ThreadHealth(self.name, True, f"no progress for {stalled_for:.0f} s (stuck in a call?)", False, stalled_for)
        return ThreadHealth(self.name, False, "")

    # --- the thread's side --------------------------------------------------------------------

    def survived(self, exc: BaseException, doing: str) -> None:
        """The work caught ``exc`` while ``doing`` something and carries on: log it (once) and fail the episode."""
        with self._lock:
            new = self._fail_locked(f"{doing}: {cause(exc)}", cause(exc), carried_on=True)
        if new:
            log.error("thread %s failed on %s (traceback logged once; it carries on)", self.name, doing, exc_info=exc)

    def _beat(self) -> None:
        if threading.current_thread() is self._thread:
            self._last_beat = time.monotonic()

    def _main(self) -> None:
        _local.supervised = self
        while True:
            with self._lock:
                self._state = RUNNING
                self._running_since = time.monotonic()
            try:
                self.work(self.stop_flag)
            except BaseException as exc:  # noqa: BLE001 (the point: nothing may end the thread unseen)
                if threading.Event.is_set(self.stop_flag):
                    log.warning("thread %s failed while stopping", self.name, exc_info=exc)
                    break
                delay = self._died(exc)
                if delay is None:  # given up
                    return
                if self.stop_flag.wait(delay):
                    break
                continue
            break
        with self._lock:
            self._state = ENDED

    def _died(self, exc: BaseException) -> float | None:
        """Count a failure of the work and say so; the wait before restarting it, or None: given up."""
        limit = self.policy.max_restarts
        with self._lock:
            new = self._fail_locked(cause(exc), cause(exc), carried_on=False)
            give_up = self._restarts >= limit
            if give_up:
                self._state = GAVE_UP
                reason = f"thread {self.name} keeps failing: {self._problem_locked()}"
            else:
                self._restarts += 1
                self._state = RESTARTING
                delay, restarts = self._backoff.next(), self._restarts
        trace = exc if new else None  # the traceback once per cause and episode
        if give_up:
            log.error("thread %s failed again (%s) after %d restarts: giving up on it", self.name, cause(exc), limit, exc_info=trace)
            if self.on_give_up is not None:
                self.on_give_up(reason)
            return None
        if new:
            log.error("thread %s failed; restarting it in %g s (restart %d of %d)", self.name, delay, restarts, limit, exc_info=trace)
        else:
            log.warning(
                "thread %s failed again (%s); restarting it in %g s (restart %d of %d)", self.name, cause(exc), delay, restarts, limit
            )
        return delay

    # --- the episode (all under _lock) -------------------------------------------------------

    def _fail_locked(self, why: str, key: str, *, carried_on: bool) -> bool:
        """Count one failure (``why`` for the fault); True when its cause ``key`` is new in the
        episode (its traceback is to be logged)."""
        now = time.monotonic()
        self._end_episode_if_well(now)
        self._failures += 1
        self._seen = False  # this failure too is reported before the episode may end
        self._last_failure_at = now
        self._cause = why
        self._carried_on = carried_on
        new = key not in self._logged
        self._logged.add(key)
        return new

    def _end_episode_if_well(self, now: float) -> None:
        # Only once health() has reported it: a failure is a fault at least once, however short.
        if not self._failures or not self._seen or self._state not in (RUNNING, ENDED):
            return
        well_since = max(self._running_since, self._last_failure_at)
        if now - well_since >= self.policy.healthy_after_s:
            self._failures = self._restarts = 0
            self._logged.clear()
            self._seen = False
            self._backoff.reset()

    def _problem_locked(self) -> str:
        times = "once" if self._failures == 1 else f"{self._failures} times"
        if self._state == GAVE_UP:
            after = "gave up: the daemon restarts"
        elif self._carried_on:
            after = "it carries on"
        else:
            after = f"restarted {self._restarts} time{'s' if self._restarts != 1 else ''}"
        return f"{self._cause} (failed {times}; {after})"
