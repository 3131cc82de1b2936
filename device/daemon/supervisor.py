"""The supervisor: the threads beside the scan loop, the watchdog, status and systemd.

Every couple of seconds (or half the watchdog interval) its housekeeping turn

* feeds systemd's watchdog, but only while the scan loop turns and the camera delivered frames
  recently (``camera.restart_after_s``): a hung loop or a stalled camera starves it and systemd
  restarts the daemon;
* stops the daemon for a restart when a device class appeared that it was not allowed at start;
* raises and clears the delivery faults (token refused, backlog too old) and the outbox's
  integrity fault (identifications lost, salvaged or quarantined, until acknowledged);
* answers ``kiosk diag camera``, writes the status file (``kiosk status``) and tells systemd
  ``STATUS=``.

::

    supervisor = Supervisor(loop, forwarder, outbox, faults, outputs, runtime_dir=Path("/run/kiosk"))
    supervisor.start(stop)      # status written, then READY=1; forwarder and housekeeping threads
    ...                         # the scan loop runs in the caller's thread
    supervisor.stop()
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import asdict
from pathlib import Path

from device import __version__, status
from device.daemon.devclass import DeviceClassWatch
from device.daemon.faults import BACKLOG, DELIVERY_AUTH, OUTBOX_INTEGRITY, FaultRegistry
from device.daemon.notify import Notifier
from device.daemon.scan_loop import ScanLoop
from device.daemon.snapshot import SnapshotService
from device.forwarder import Forwarder
from device.outbox import Outbox, OutboxError

log = logging.getLogger("device.daemon")


class Supervisor:
    """Runs the forwarder and housekeeping threads and publishes what the kiosk is doing.

    :param loop: the scan loop it watches (heartbeat, counters, source, latest frame).
    :param forwarder: delivers in its own thread; its status feeds the delivery-auth fault.
    :param outbox: its stats feed the backlog fault and the status.
    :param faults: the registry the delivery faults go to.
    :param outputs: the OutputRunner, for its queue counts in status.
    :param kiosk_id: ``kiosk.id``, for status.
    :param runtime_dir: ``kiosk.runtime_dir``; None: no status file, no snapshots (tests, benchmarks).
    :param backlog_alert_s: ``feedback.backlog_alert_s``.
    :param notifier: systemd's notify socket (a no-op outside systemd).
    :param camera_restart_after_s: ``camera.restart_after_s`` (0: the camera never starves the watchdog).
    :param device_watch: device classes that appear after start; None: not watched.
    :param unmask: ``log.unmask``, for snapshot labels.
    """

    def __init__(
        self,
        loop: ScanLoop,
        forwarder: Forwarder,
        outbox: Outbox,
        faults: FaultRegistry,
        outputs,
        *,
        kiosk_id: str = "",
        runtime_dir: Path | None = None,
        backlog_alert_s: float,
        notifier: Notifier | None = None,
        camera_restart_after_s: float = 0.0,
        device_watch: DeviceClassWatch | None = None,
        unmask: bool = False,
    ):
        self.loop = loop
        self.forwarder = forwarder
        self.outbox = outbox
        self.faults = faults
        self.outputs = outputs
        self.kiosk_id = kiosk_id
        self.runtime_dir = runtime_dir
        self.backlog_alert_s = backlog_alert_s
        self.notifier = notifier or Notifier()
        self.camera_restart_after_s = camera_restart_after_s
        self.device_watch = device_watch
        self.snapshots = SnapshotService(runtime_dir, unmask=unmask) if runtime_dir is not None else None
        self.draining = False  # a finite source ended: the loop is done, the drain bounds the rest
        self.restart_reason: str | None = None
        self._run_stop: threading.Event | None = None
        self._camera_starved = False
        self._started = time.monotonic()
        self._threads: list[tuple[threading.Thread, threading.Event]] = []

    # --- threads --------------------------------------------------------------------------

    def start(self, run_stop: threading.Event) -> None:
        """Start the forwarder and housekeeping threads, publish the status, then say READY=1.

        ``run_stop`` is set when the daemon must stop for a restart (a new device class)."""
        self._run_stop = run_stop
        self.start_forwarder()
        housekeeping_stop = threading.Event()
        housekeeping = threading.Thread(target=self.housekeeping, args=(housekeeping_stop,), name="housekeeping", daemon=True)
        housekeeping.start()
        self._threads.append((housekeeping, housekeeping_stop))
        self.turn_once()  # so `kiosk status` works as soon as systemd says the unit is active
        self.notifier.ready(self.summary())

    def start_forwarder(self) -> None:
        self._forwarder_stop = threading.Event()
        self._forwarder = threading.Thread(target=self.forwarder.run, args=(self._forwarder_stop,), name="forwarder", daemon=True)
        self._forwarder.start()

    def stop_forwarder(self) -> None:
        """Stop the forwarder thread (a finite run then drains in the caller's thread)."""
        self._forwarder_stop.set()
        self.forwarder.wake()
        self._forwarder.join(timeout=self.forwarder.timeout[0] + self.forwarder.timeout[1] + 5)

    def stop(self) -> None:
        """Stop every thread, publish a last status (faults that cleared while draining say so), remove the file."""
        self.stop_forwarder()
        for thread, stop in self._threads:
            stop.set()
            thread.join(timeout=5)
        self._threads = []
        self.turn_once()
        if self.runtime_dir is not None:
            status.remove_status(self.runtime_dir)

    # --- housekeeping ---------------------------------------------------------------------

    def housekeeping(self, stop: threading.Event) -> None:
        """Every couple of seconds (or half the watchdog interval): look after everything but frames."""
        period = status.WRITE_INTERVAL_S
        if self.notifier.watchdog_interval_s:
            period = min(period, self.notifier.watchdog_interval_s / 2)
        while not stop.wait(period):
            try:
                self.turn(period)
            except Exception:  # status must never take the kiosk down
                log.exception("housekeeping failed")

    def turn_once(self) -> None:
        """A turn outside the thread (before READY=1, at the end). It never feeds the watchdog:
        that is the scan loop's to earn."""
        try:
            self.turn(status.WRITE_INTERVAL_S, feed_watchdog=False)
        except Exception:
            log.exception("housekeeping failed")

    def turn(self, period: float, feed_watchdog: bool = True) -> None:
        """One housekeeping turn; ``period`` is how often turns come (the heartbeat must be younger)."""
        if feed_watchdog and self.notifier.watchdog_interval_s and self.loop_alive(period) and self.camera_delivers():
            self.notifier.watchdog()
        self.check_device_classes()
        forwarder = self.forwarder.status()
        self.faults.set(DELIVERY_AUTH, forwarder["paused_by_auth"], f"the central refuses the token: {forwarder['last_error']}", "the central accepts the token")
        try:
            queue = self.outbox.stats()
        except OutboxError as e:
            queue = {"error": str(e)}
        age = queue.get("oldest_pending_age_s")
        old = age is not None and age > self.backlog_alert_s
        self.faults.set(BACKLOG, old, f"the oldest undelivered identification is {(age or 0) / 60:.0f} min old", "the backlog is delivered")
        integrity = queue.get("integrity_fault")
        self.faults.set(OUTBOX_INTEGRITY, bool(integrity), integrity or "", "acknowledged by a technician (kiosk queue ack)")
        if self.runtime_dir is not None:
            self.snapshots.answer(self.loop.latest)
            status.write_status(self.runtime_dir, self.status(queue, forwarder))
        self.notifier.status(self.summary())

    def loop_alive(self, period: float) -> bool:
        """The scan loop turned lately (it turns at least every 0.5 s even with the camera gone)."""
        return self.draining or time.monotonic() - self.loop.heartbeat < max(2 * period, 2.0)

    def camera_delivers(self) -> bool:
        """False once a live camera has given no frame for ``camera_restart_after_s`` (0: never).

        The watchdog then starves and systemd restarts the daemon: a fresh process is what a
        stalled CSI camera needs (libcamera hands the camera to a new owner only once the old one
        is gone, and a close stuck in the driver never lets go). If the camera is still missing
        after that, the camera fault's text says whether a reboot is the cure.
        """
        no_frame_for_s = getattr(self.loop.source, "no_frame_for_s", None)
        if not self.camera_restart_after_s or no_frame_for_s is None:
            return True
        silent = no_frame_for_s()
        if silent <= self.camera_restart_after_s:
            self._camera_starved = False
            return True
        if not self._camera_starved:
            self._camera_starved = True
            log.error(
                "no camera frame for %.0f s (camera.restart_after_s = %g): no more watchdog pings, "
                "systemd restarts the daemon", silent, self.camera_restart_after_s,
            )
        return False

    def check_device_classes(self) -> None:
        """Stop the daemon (exit 75, systemd restarts it) when a device class it was not allowed at start appears."""
        if self.device_watch is None or self.restart_reason is not None:
            return
        appeared = self.device_watch.appeared()
        if not appeared:
            return
        self.restart_reason = f"device class(es) {', '.join(appeared)} registered after the daemon started"
        log.error("%s: systemd allowed them only at start (DeviceAllow=); exiting to be restarted", self.restart_reason)
        if self._run_stop is not None:
            self._run_stop.set()

    # --- what is published ----------------------------------------------------------------

    def summary(self) -> str:
        """One line for systemd's STATUS=."""
        c = self.loop.counters
        faults = ", ".join(sorted(self.faults.active())) or "none"
        return f"{c.frames} frames, {c.identifications} identified, {c.not_a_card} not a card; faults: {faults}"

    def status(self, queue: dict | None = None, forwarder: dict | None = None) -> dict:
        """The snapshot ``kiosk status`` shows (contracts masked)."""
        from device.clock import ntp_synchronized

        c = self.loop.counters
        source = self.loop.source
        camera = {"source": source.describe()}
        stats = getattr(source, "stats", None)
        if callable(stats):
            camera.update(asdict(stats()))
        return {
            "pid": os.getpid(),
            "version": __version__,
            "kiosk_id": self.kiosk_id,
            "uptime_s": time.monotonic() - self._started,
            "camera": camera,
            "scan": {
                "frames": c.frames,
                "decoded_frames": c.decoded_frames,
                "odd_frames": c.odd_frames,
                "identifications": c.identifications,
                "not_a_card": c.not_a_card,
                "last_identification": c.last_identification,
                "last_identification_age_s": time.monotonic() - c.last_identification_at if c.last_identification_at else None,
            },
            "queue": queue if queue is not None else self.outbox.stats(),
            "delivery": forwarder if forwarder is not None else self.forwarder.status(),
            "faults": self.faults.active(),
            "outputs": self.outputs.status(),
            "disk_free_bytes": status.disk_free_bytes(self.outbox.path),
            "clock_synced": ntp_synchronized(),
            "cpu_temperature_c": status.cpu_temperature_c(),
        }
