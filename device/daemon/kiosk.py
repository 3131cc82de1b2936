"""The kiosk: its stages wired together, and the daemon's one entry point.

    kiosk = build_kiosk(cfg)           # device.assembly: everything as configured
    exit_code = kiosk.run(stop_event, drain_timeout_s=60)

The stages, each its own unit:

* :class:`~device.daemon.scan_loop.ScanLoop` (the caller's thread): frames -> pipeline ->
  presentations -> outbox commit -> events;
* :class:`~device.outputs.OutputRunner`: every output (log lines, LEDs, the live view, the demo)
  in its own thread behind a bounded queue, so none can delay a frame or the watchdog; it
  receives every typed event (:mod:`device.events`): the scan loop's, the fault registry's and
  the forwarder's (:class:`~device.events.Delivered`, :class:`~device.events.Dead`);
* :class:`~device.daemon.faults.FaultRegistry`: each fault published once when it starts, once when it clears;
* :class:`~device.daemon.supervisor.Supervisor`: the forwarder and housekeeping threads, the
  watchdog, the status file, systemd, device classes and camera snapshots; it watches every
  thread (:mod:`device.threads`), and a scan loop that raises ends the run with exit 75.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterable
from pathlib import Path

from device.camera import FrameSource
from device.config import Config
from device.daemon.devclass import EXIT_RESTART, DeviceClassWatch
from device.daemon.faults import FaultRegistry
from device.daemon.notify import Notifier
from device.daemon.scan_loop import ScanCounters, ScanLoop
from device.daemon.supervisor import Supervisor, SupervisorSettings
from device.forwarder import Forwarder
from device.outbox import Outbox, OutboxError
from device.outputs import Output, OutputRunner
from device.outputs.log import LogOutput
from device.pipeline import Pipeline
from device.status.report import DaemonStatus

log = logging.getLogger(__name__)

#: The schema's defaults, for kiosks built by hand (tests, benchmarks): one place per value.
DEFAULTS = Config()

#: How long a finished run waits for the outputs to show their last events.
OUTPUT_CLOSE_TIMEOUT_S = 10.0
#: After SIGTERM, how long the daemon may take to stop before it exits anyway (below the unit's
#: TimeoutStopSec, so systemd never has to kill it). Every commit is already on disk by then.
STOP_GRACE_S = 10.0
#: The exit code when the stop took longer than STOP_GRACE_S.
EXIT_STOP_TOO_SLOW = 1


class Kiosk:
    """One kiosk: its frame source, pipeline, outbox, forwarder and outputs, in stages.

    Build it from a config with :func:`device.assembly.build_kiosk`; the keyword arguments
    (defaults: the schema's) are for kiosks assembled by hand. A
    :class:`~device.outputs.log.LogOutput` is always the first output, and the forwarder
    publishes to the outputs too (its ``publish`` is connected here).
    """

    def __init__(
        self,
        source: FrameSource,
        pipeline: Pipeline,
        outbox: Outbox,
        forwarder: Forwarder,
        *,
        outputs: Iterable[Output] = (),
        repeat_window_s: float = DEFAULTS.scan.repeat_window_s,
        unmask: bool = DEFAULTS.log.unmask,
        kiosk_id: str = "",
        runtime_dir: Path | None = None,
        backlog_alert_s: float = DEFAULTS.feedback.backlog_alert_s,
        notifier: Notifier | None = None,
        camera_restart_after_s: float = 0.0,
        device_watch: DeviceClassWatch | None = None,
        revocations=None,
    ):
        self.outbox = outbox
        #: The replaced-card list's sync (:class:`~device.revocations.sync.RevocationSync`), None when off.
        self.revocations = revocations
        self.forwarder = forwarder
        self.runtime_dir = runtime_dir
        self.outputs = OutputRunner([LogOutput(unmask=unmask), *outputs])
        forwarder.publish = self.outputs.publish  # Delivered and Dead, after its commits
        self.faults = FaultRegistry(self.outputs.publish)
        self.loop = ScanLoop(
            source,
            pipeline,
            outbox,
            self.faults,
            self.outputs.publish,
            repeat_window_s=repeat_window_s,
            unmask=unmask,
            on_commit=forwarder.wake,
        )
        if revocations is not None:
            self.loop.replaced_by = revocations.copy.replaced_by
        settings = SupervisorSettings(
            backlog_alert_s, kiosk_id=kiosk_id, runtime_dir=runtime_dir, camera_restart_after_s=camera_restart_after_s, unmask=unmask
        )
        self._closed = False
        self.supervisor = Supervisor(
            self.loop,
            forwarder,
            outbox,
            self.faults,
            self.outputs,
            settings,
            notifier=notifier,
            device_watch=device_watch,
            revocations=revocations,
        )

    # --- what callers look at -------------------------------------------------------------

    @property
    def source(self) -> FrameSource:
        return self.loop.source

    @property
    def counters(self) -> ScanCounters:
        return self.loop.counters

    @property
    def restart_reason(self) -> str | None:
        """Why the daemon stopped to be restarted (a new device class), else None."""
        return self.supervisor.restart_reason

    def add_output(self, output: Output) -> None:
        """Tell ``output`` too, from now on (an output that needs the kiosk, e.g. the button's)."""
        self.outputs.add(output)

    def new_presentation(self) -> None:
        """The operator's button: see :meth:`ScanLoop.new_presentation`."""
        self.loop.new_presentation()

    def status(self) -> DaemonStatus:
        """The status ``kiosk status`` shows (contracts masked)."""
        return self.supervisor.status()

    def close(self) -> None:
        """Release what a kiosk that did not run holds (outputs, camera, outbox); :meth:`run`
        releases them itself, after which this does nothing."""
        if self._closed:
            return
        self._closed = True
        self.outputs.close(OUTPUT_CLOSE_TIMEOUT_S)
        self.source.close()
        self.outbox.close()

    # --- the whole daemon -----------------------------------------------------------------

    def run(self, stop: threading.Event, drain_timeout_s: float = 60.0) -> int:
        """Run until ``stop`` (exit 0) or, for a finite source, until it ends and the outbox is drained.

        Returns 0 (also when ``stop`` ends a drain early: what is pending stays queued), or 1
        when a finite run could not drain within ``drain_timeout_s``, or
        :data:`~device.daemon.devclass.EXIT_RESTART` when the daemon needs a fresh process: a
        device class appeared that the service was not allowed at start (see
        :mod:`device.daemon.devclass`), the scan loop raised, or a thread could not be restarted
        or hangs (see :mod:`device.threads`). Every event reaches the outputs before it returns
        (within :data:`OUTPUT_CLOSE_TIMEOUT_S`).
        """
        supervisor = self.supervisor
        supervisor.start(stop)
        code = 0
        try:
            try:
                ended = self.loop.run(stop)
            except Exception as exc:  # a bug: never a silent death, always a fault and a restart
                supervisor.scan_loop_failed(exc)
                ended = False
            supervisor.notifier.stopping()
            self.source.close()
            if ended:
                # Deliver what is left in this thread; housekeeping goes on meanwhile, so faults
                # (a refused token, say) still reach the LEDs and status while draining.
                supervisor.stop_forwarder()
                supervisor.draining = True
                log.info("source ended after %d frames; draining the outbox (up to %g s)", self.counters.frames, drain_timeout_s)
                drained = self.forwarder.drain(drain_timeout_s, stop)
                if not drained and stop.is_set():
                    log.warning("stopped while draining: %s identifications stay queued", self._pending())
                elif not drained:
                    log.error(
                        "outbox not drained after %g s: %s pending; last error: %s",
                        drain_timeout_s,
                        self._pending(),
                        self.forwarder.status().last_error or self.outbox.open_error,
                    )
                    code = 1
        finally:
            supervisor.stop()
            self.source.close()
            self.outputs.close(OUTPUT_CLOSE_TIMEOUT_S)
        self.outbox.close()
        self._closed = True
        return EXIT_RESTART if supervisor.restart_reason else code

    def _pending(self) -> str:
        """How many identifications are pending (``"3"``), or why the outbox cannot say."""
        try:
            return str(self.outbox.stats().pending)
        except OutboxError as e:
            return f"? (the outbox cannot be read: {e})"


def run_until_signalled(kiosk: Kiosk, drain_timeout_s: float) -> int:
    """Run ``kiosk`` in this thread; SIGTERM and SIGINT finish the frame in hand and stop it.

    The first signal is logged and starts the stop (a request to the central in flight is
    abandoned); more signals change nothing. If the stop is not done within
    :data:`STOP_GRACE_S` (a DNS lookup or TCP connect that hangs), the process exits anyway with
    :data:`EXIT_STOP_TOO_SLOW`.
    """
    import signal

    stop = threading.Event()
    guards: list[threading.Timer] = []  # one, once signalled

    def on_signal(signum, _frame):
        if guards:
            return
        name = signal.Signals(signum).name
        guards.append(threading.Timer(STOP_GRACE_S, _exit_now, args=(name,)))
        log.info("signal %s: stopping", name)
        stop.set()
        guards[0].daemon = True
        guards[0].start()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    # The daemon's own threads are supervised; one a library started that dies is a fault and a restart.
    previous_hook = threading.excepthook
    threading.excepthook = kiosk.supervisor.unsupervised_thread_died
    try:
        started = time.monotonic()
        code = kiosk.run(stop, drain_timeout_s)
        log.info("stopped after %.1f s", time.monotonic() - started)
        return code
    finally:
        threading.excepthook = previous_hook
        for guard in guards:
            guard.cancel()
        for s, handler in previous.items():
            signal.signal(s, handler)


def _exit_now(signal_name: str) -> None:
    log.error("still not stopped %g s after %s: exiting now (every identification committed is on disk)", STOP_GRACE_S, signal_name)
    for handler in logging.getLogger().handlers:
        handler.flush()
    os._exit(EXIT_STOP_TOO_SLOW)
