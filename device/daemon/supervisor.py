"""The supervisor: the threads beside the scan loop, the watchdog, status and systemd.

Every thread of the daemon is a :class:`~device.threads.SupervisedThread` (the forwarder and
housekeeping threads here, each output's, a live camera's grab thread): its work is restarted
with backoff when it raises. Every couple of seconds (or half the watchdog interval) the
housekeeping turn

* raises the fault ``thread <name>`` for each thread whose work failed lately, with the cause,
  and clears it once the thread has run well for a while;
* feeds systemd's watchdog, but only while the scan loop turns, the camera delivered frames
  recently (``camera.restart_after_s``) or a restart would not bring them back, and no thread
  gave up or hangs: a hung loop, a stalled CSI camera or a thread that cannot be restarted starves
  it (and the daemon also exits with 75), and systemd restarts the daemon; an absent USB camera
  does not (the ``camera`` fault stays, the grab thread keeps reopening it);
* keeps since when the camera is down in the runtime directory, so "down for" counts across
  restarts (:mod:`device.daemon.camera_outage`);
* stops the daemon for a restart when a device class appeared that it was not allowed at start;
* raises and clears the delivery faults (token refused, backlog too old) and the outbox's
  integrity fault (identifications lost, salvaged or quarantined, until acknowledged);
* answers ``kiosk diag camera`` and ``kiosk revocations sync`` from the request folder, screened
  so that nothing a technician leaves there blocks or floods it (:mod:`device.daemon.requests`),
  writes the status file (``kiosk status``), hands the same status to the outputs that want it
  (:class:`~device.events.StatusPublished`: the metrics) and tells systemd ``STATUS=``.

::

    settings = SupervisorSettings(backlog_alert_s=600, runtime_dir=Path("/run/kiosk"))
    supervisor = Supervisor(loop, forwarder, outbox, faults, outputs, settings)
    supervisor.start(stop)      # status written, then READY=1; forwarder and housekeeping threads
    ...                         # the scan loop runs in the caller's thread
    supervisor.stop()
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from device import __version__, status
from device.daemon.camera_outage import CameraOutage
from device.daemon.devclass import DeviceClassWatch
from device.daemon.faults import FaultRegistry
from device.daemon.notify import Notifier
from device.daemon.requests import RequestFolder, SyncRequests
from device.daemon.scan_loop import ScanLoop
from device.daemon.snapshot import SnapshotService
from device.events import StatusPublished
from device.fault_names import BACKLOG, DELIVERY, DELIVERY_AUTH, OPEN_FILES, OUTBOX_INTEGRITY, REVOCATIONS
from device.forwarder import Forwarder
from device.health.delivery import DeliveryHealth
from device.outbox import Outbox, OutboxError, OutboxHealth
from device.status.report import (
    CameraStatus,
    DaemonStatus,
    LastIdentification,
    LastRefusal,
    QueueStatus,
    ReplacedListState,
    ReplacedListStatus,
    RequestsStatus,
    ScanStatus,
    Unreadable,
)
from device.threads import StopFlag, SupervisedThread, ThreadHealth, cause

log = logging.getLogger("device.daemon")

#: The forwarder is stuck when one delivery step (a batch, split when the central refuses a
#: record) takes longer than this many requests at their time limits, and never less than a minute.
FORWARDER_STALL_REQUESTS = 10
FORWARDER_STALL_MIN_S = 60.0
#: The ``open-files`` fault is raised with this share of the descriptor limit (RLIMIT_NOFILE) in use.
OPEN_FILES_ALERT = 0.9
#: The name of the caller's thread in faults: it runs the scan loop.
SCAN_LOOP = "scan loop"


def thread_fault(thread_name: str) -> str:
    """The fault a failing thread raises: ``thread forwarder``, ``thread output Feedback``."""
    return f"thread {thread_name}"


@dataclass(frozen=True)
class SupervisorSettings:
    """What the supervisor is configured with (the stages it watches are its other arguments).

    :param backlog_alert_s: ``feedback.backlog_alert_s``.
    :param kiosk_id: ``kiosk.id``, for status.
    :param runtime_dir: ``kiosk.runtime_dir``; None: no status file, no snapshots (tests, benchmarks).
    :param camera_restart_after_s: ``camera.restart_after_s`` (0: the camera never starves the watchdog).
    :param unmask: ``log.unmask``, for snapshot labels.
    """

    backlog_alert_s: float
    kiosk_id: str = ""
    runtime_dir: Path | None = None
    camera_restart_after_s: float = 0.0
    unmask: bool = False


class Supervisor:
    """Runs the forwarder and housekeeping threads and publishes what the kiosk is doing.

    :param loop: the scan loop it watches (heartbeat, counters, source, latest frame).
    :param forwarder: delivers in its own thread; its status feeds the delivery and delivery-auth faults.
    :param outbox: its stats feed the backlog fault and the status.
    :param faults: the registry the delivery and thread faults go to.
    :param outputs: the OutputRunner, for its queue counts in status and its threads.
    :param settings: what the configuration says (status, backlog, camera, snapshots).
    :param notifier: systemd's notify socket (a no-op outside systemd).
    :param device_watch: device classes that appear after start; None: not watched.
    :param revocations: syncs the replaced-card list in its own thread; its state is the ``revocations`` fault.
    """

    def __init__(
        self,
        loop: ScanLoop,
        forwarder: Forwarder,
        outbox: Outbox,
        faults: FaultRegistry,
        outputs,
        settings: SupervisorSettings,
        *,
        notifier: Notifier | None = None,
        device_watch: DeviceClassWatch | None = None,
        revocations=None,
    ):
        self.settings = settings
        #: The replaced-card list's sync (a :class:`~device.revocations.sync.RevocationSync`), None when off.
        self.revocations = revocations
        self._revocations_thread: SupervisedThread | None = None
        self.device_watch = device_watch
        self.notifier = notifier or Notifier()
        # The stages it watches.
        self.loop = loop
        self.forwarder = forwarder
        self.outbox = outbox
        self.faults = faults
        self.outputs = outputs
        # What technicians leave in the request folder, screened once a turn (snapshots, syncs).
        self.requests: RequestFolder | None = None
        self.snapshots: SnapshotService | None = None
        if settings.runtime_dir is not None:
            self.requests = RequestFolder(settings.runtime_dir / status.REQUESTS_DIR)
            self.snapshots = SnapshotService(settings.runtime_dir, unmask=settings.unmask, requests=self.requests)
        self.sync_requests = SyncRequests()
        source_name = getattr(loop.source, "name", None)
        live = settings.runtime_dir is not None and isinstance(source_name, str) and callable(getattr(loop.source, "carry_outage", None))
        self.camera_outage = CameraOutage(settings.runtime_dir, source_name) if live else None
        self.draining = False  # a finite source ended: the loop is done, the drain bounds the rest
        self.restart_reason: str | None = None
        self._run_stop: threading.Event | None = None
        self._camera_starved = False
        self._camera_silence_said = False
        self._status_write_error: str | None = None
        self._started = time.monotonic()
        self._forwarder: SupervisedThread | None = None
        self._housekeeping: SupervisedThread | None = None

    # --- threads --------------------------------------------------------------------------

    def start(self, run_stop: threading.Event) -> None:
        """Start the forwarder and housekeeping threads, publish the status, then say READY=1.

        ``run_stop`` is set when the daemon must stop for a restart (see :meth:`request_restart`)."""
        self._run_stop = run_stop
        if self.camera_outage is not None and (since := self.camera_outage.load()) is not None:
            self.loop.source.carry_outage(since)
        self.start_forwarder()
        if self.revocations is not None:
            # A sync's request ends at revocations.deadline_s; applying a big list takes seconds more.
            self._revocations_thread = SupervisedThread(
                "revocations", self.revocations.run, stall_after_s=self.revocations.deadline_s + 120
            )
            self._revocations_thread.start()
            from device.revocations.sync import START_WAIT_S

            if not self.revocations.first_attempt.wait(min(START_WAIT_S, self.revocations.deadline_s)):
                log.warning("the first sync of the replaced-card list is still under way: scanning against the copy on disk meanwhile")
        # Nobody watches the watcher: when housekeeping gives up it asks for the restart itself,
        # and while it is dead or hung no turn feeds systemd's watchdog, which is right: a daemon
        # whose faults, status and watchdog nobody looks after is restarted by systemd.
        self._housekeeping = SupervisedThread("housekeeping", self.housekeeping, on_give_up=self.request_restart)
        self._housekeeping.start()
        self.turn_once()  # so `kiosk status` works as soon as systemd says the unit is active
        self.notifier.ready(self.summary())

    def start_forwarder(self) -> None:
        # Each request ends at the client's total deadline, so a step of several requests (a
        # batch bisected) is bounded too.
        stall_after_s = max(FORWARDER_STALL_MIN_S, FORWARDER_STALL_REQUESTS * self.forwarder.client.deadline_s)
        self._forwarder = SupervisedThread("forwarder", self.forwarder.run, stall_after_s=stall_after_s)
        self._forwarder.start()

    def stop_forwarder(self) -> None:
        """Stop the forwarder thread (a finite run then drains in the caller's thread)."""
        self._forwarder.stop()
        self.forwarder.wake()
        self._forwarder.join(timeout=self.forwarder.client.deadline_s + 5)

    def stop(self) -> None:
        """Stop every thread, publish a last status (faults that cleared while draining say so), remove the file."""
        self.stop_forwarder()
        if self._revocations_thread is not None:
            self._revocations_thread.stop()
            self.revocations.request()
            self._revocations_thread.join(timeout=5)
        if self._housekeeping is not None:
            self._housekeeping.stop()
            self._housekeeping.join(timeout=5)
        self.turn_once()
        if self.settings.runtime_dir is not None:
            status.remove_status(self.settings.runtime_dir)

    def supervised_threads(self) -> list[SupervisedThread]:
        """Every thread of the daemon but the caller's: forwarder, housekeeping, outputs, camera."""
        threads = [self._forwarder, self._revocations_thread, self._housekeeping, *self.outputs.threads(), *self.loop.source.threads()]
        return [t for t in threads if t is not None and t.started]

    def check_threads(self) -> bool:
        """Each thread's fault on or off as its health says; False (and a restart) when one gave up or hangs."""
        healthy = True
        for health in [t.health() for t in self.supervised_threads()]:
            self._thread_fault(health)
            reason = health.restart_reason
            if reason is not None:
                healthy = False
                self.request_restart(reason)
        return healthy

    def _thread_fault(self, health: ThreadHealth) -> None:
        self.faults.set(thread_fault(health.name), health.failing, health.problem, "it runs well again")

    def scan_loop_failed(self, exc: Exception) -> None:
        """The scan loop raised (a bug): a fault, then the daemon stops to be restarted (exit 75).

        The loop runs in the caller's thread and owns the camera and the presentations: a fresh
        process is the clean restart, and systemd makes it within seconds."""
        log.error("the scan loop failed", exc_info=exc)
        self.faults.raise_(thread_fault(SCAN_LOOP), f"{cause(exc)} (the daemon restarts)")
        self.request_restart(f"the scan loop failed: {cause(exc)}")

    def unsupervised_thread_died(self, args: threading.ExceptHookArgs) -> None:
        """``threading.excepthook`` while the daemon runs: a thread the daemon did not start (a
        library's) died. It cannot be restarted from here, so the daemon is (exit 75)."""
        name = args.thread.name if args.thread is not None else "unknown"
        error = args.exc_value if args.exc_value is not None else args.exc_type()
        log.error("thread %s died", name, exc_info=(args.exc_type, error, args.exc_traceback))
        self.faults.raise_(thread_fault(name), f"{cause(error)} (not restartable: the daemon restarts)")
        self.request_restart(f"thread {name} died: {cause(error)}")

    def request_restart(self, reason: str) -> None:
        """Stop the daemon to be restarted: :meth:`Kiosk.run` returns 75 and systemd starts it again.

        The first reason is kept; from then on no turn feeds the watchdog, so a stop that hangs is
        ended by systemd too."""
        if self.restart_reason is not None:
            return
        self.restart_reason = reason
        log.error("%s: exiting to be restarted", reason)
        if self._run_stop is not None:
            self._run_stop.set()

    # --- housekeeping ---------------------------------------------------------------------

    def housekeeping(self, stop: StopFlag | threading.Event) -> None:
        """Every couple of seconds (or half the watchdog interval): look after everything but frames.

        A turn that raises ends the thread's work; its supervision logs it, raises its fault (at
        the next turn) and restarts it."""
        period = status.WRITE_INTERVAL_S
        if self.notifier.watchdog_interval_s:
            period = min(period, self.notifier.watchdog_interval_s / 2)
        while not stop.wait(period):
            self.turn(period)

    def turn_once(self) -> None:
        """A turn outside the thread (before READY=1, at the end). It never feeds the watchdog:
        that is the scan loop's to earn."""
        try:
            self.turn(status.WRITE_INTERVAL_S, feed_watchdog=False)
        except Exception:
            log.exception("housekeeping failed")

    def turn(self, period: float, feed_watchdog: bool = True) -> None:
        """One housekeeping turn; ``period`` is how often turns come (the heartbeat must be younger)."""
        threads_ok = self.check_threads()
        if feed_watchdog and self.notifier.watchdog_interval_s and self.may_feed_watchdog(period, threads_ok):
            self.notifier.watchdog()
        self.check_device_classes()
        delivery = self.forwarder.status()
        self.faults.set(DELIVERY_AUTH, delivery.paused_by_auth, delivery.auth_fault or "", "the central accepts the token")
        queue = self.outbox_health()
        pending = queue.pending if isinstance(queue, OutboxHealth) else 0
        failing = self.forwarder.delivery_fault(pending)
        self.faults.set(DELIVERY, failing is not None, failing or "", "delivery works again")
        age = queue.oldest_pending_age_s if isinstance(queue, OutboxHealth) else None
        old = age is not None and age > self.settings.backlog_alert_s
        self.faults.set(BACKLOG, old, f"the oldest undelivered identification is {(age or 0) / 60:.0f} min old", "the backlog is delivered")
        integrity = queue.integrity_fault if isinstance(queue, OutboxHealth) else None
        self.faults.set(OUTBOX_INTEGRITY, bool(integrity), integrity or "", "acknowledged by a technician (kiosk queue ack)")
        revocations = self.check_revocations()
        self.check_descriptors()
        if self.settings.runtime_dir is not None:
            self.take_requests()  # first, so that this turn's status counts them
        published = self.outputs.wants(StatusPublished)  # the metrics
        if self.settings.runtime_dir is not None or published:
            daemon = self.status(queue, delivery, revocations)
            if self.settings.runtime_dir is not None:
                if self.camera_outage is not None:
                    self.camera_outage.update(daemon.camera.state, daemon.camera.counters.get("down_for_s"))
                self.write_status(daemon)
            if published:
                self.outputs.publish(StatusPublished(daemon))
        self.notifier.status(self.summary())

    def check_descriptors(self) -> None:
        """The ``open-files`` fault while the daemon's descriptors are nearly all used: whatever
        then fails to open (the token, a connection, the outbox) says EMFILE, and this names why."""
        import resource

        limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        try:
            used = len(os.listdir("/proc/self/fd"))
            text = f"{used} of {limit} file descriptors open (LimitNOFILE): opening a file or a connection fails soon"
        except OSError as e:  # EMFILE: not even this one
            used, text = limit, f"no file descriptor free ({e.strerror}): opening a file or a connection fails"
        high = limit != resource.RLIM_INFINITY and used >= OPEN_FILES_ALERT * limit
        self.faults.set(OPEN_FILES, high, f"{text}; sudo systemctl restart kiosk frees them", "descriptors free again")

    def take_requests(self) -> None:
        """Answer what technicians asked in the request folder: snapshots, and a sync of the
        replaced-card list (at most once a minute). Nothing in it can block this turn."""
        waiting = self.requests.scan()
        self.snapshots.answer(self.loop.latest, waiting.snapshots)
        self.sync_requests.take(self.requests, waiting.syncs, self.revocations.request if self.revocations is not None else None)

    def check_revocations(self) -> ReplacedListState | None:
        """The replaced-card list's state for status, its fault raised or cleared; None when off.

        This is the ``revocations`` fault's only owner: the copy's state (refused, too old, none
        yet, unreadable). A lookup the scan loop cannot make is the scan loop's own fault
        (``revocations-lookup``), so neither clears what the other raised."""
        if self.revocations is None:
            return None
        from device.revocations.store import RevocationsError

        try:
            info = self.revocations.copy.info()
        except RevocationsError as e:
            self.faults.raise_(REVOCATIONS, str(e), counted=False)
            return Unreadable(str(e))
        fault = self.revocations.fault(info)
        self.faults.set(REVOCATIONS, fault is not None, fault or "", "the replaced-card list is current again")
        return ReplacedListStatus(**info, max_age_s=self.revocations.max_age_s, interval_s=self.revocations.interval_s, fault=fault)

    def may_feed_watchdog(self, period: float, threads_ok: bool) -> bool:
        """Whether this turn may tell systemd all is well: the loop turns, the camera delivers,
        every thread lives and makes progress, and no restart is under way."""
        return threads_ok and self.restart_reason is None and self.loop_alive(period) and self.camera_delivers()

    def write_status(self, daemon: DaemonStatus) -> None:
        """Replace the status file. A runtime directory that cannot be written (full, gone) costs
        only ``kiosk status``, never scanning: said once when it starts and once when it ends."""
        try:
            status.write_status(self.settings.runtime_dir, daemon)
        except OSError as e:
            if self._status_write_error is None:
                log.error(
                    "cannot write the status file in %s (kiosk status will say the daemon is not running): %s", self.settings.runtime_dir, e
                )
            self._status_write_error = str(e)
            return
        if self._status_write_error is not None:
            log.info("the status file is written again")
            self._status_write_error = None

    def loop_alive(self, period: float) -> bool:
        """The scan loop turned lately (it turns at least every 0.5 s even with the camera gone)."""
        return self.draining or time.monotonic() - self.loop.heartbeat < max(2 * period, 2.0)

    def camera_delivers(self) -> bool:
        """False once a live camera has given no frame for ``camera.restart_after_s`` (0: never)
        and a restart may bring frames back.

        The watchdog then starves and systemd restarts the daemon: a fresh process is what a
        stalled CSI camera needs (libcamera hands the camera to a new owner only once the old one
        is gone, and a close stuck in the driver never lets go). A USB camera that is unplugged or
        gone, or a CSI camera that never delivered in this process, is not helped by a restart:
        systemd would restart the daemon every couple of minutes for ever, and each start would
        hide the outage. Then the watchdog is fed, the ``camera`` fault stays, and the grab thread
        keeps reopening the camera (see :meth:`~device.camera.grabber.LiveSource.restart_cures_silence`).
        """
        no_frame_for_s = getattr(self.loop.source, "no_frame_for_s", None)
        restart_after_s = self.settings.camera_restart_after_s
        if not restart_after_s or no_frame_for_s is None:
            return True
        silent = no_frame_for_s()
        if silent <= restart_after_s:
            self._camera_starved = self._camera_silence_said = False
            return True
        restart_cures = getattr(self.loop.source, "restart_cures_silence", None)
        if callable(restart_cures) and not restart_cures():
            if not self._camera_silence_said:
                self._camera_silence_said = True
                log.warning(
                    "no camera frame for %.0f s (camera.restart_after_s = %g), but a restart would not bring this camera back: "
                    "the camera fault stays and the camera is reopened until it is back",
                    silent,
                    restart_after_s,
                )
            return True
        if not self._camera_starved:
            self._camera_starved = True
            log.error(
                "no camera frame for %.0f s (camera.restart_after_s = %g): no more watchdog pings, systemd restarts the daemon",
                silent,
                restart_after_s,
            )
        return False

    def check_device_classes(self) -> None:
        """Stop the daemon (exit 75, systemd restarts it) when a device class it was not allowed at start appears."""
        if self.device_watch is None or self.restart_reason is not None:
            return
        appeared = self.device_watch.appeared()
        if appeared:
            self.request_restart(
                f"device class(es) {', '.join(appeared)} registered after the daemon started "
                "(systemd allowed them only at start: DeviceAllow=)"
            )

    # --- what is published ----------------------------------------------------------------

    def summary(self) -> str:
        """One line for systemd's STATUS=."""
        c = self.loop.counters
        faults = ", ".join(sorted(self.faults.active())) or "none"
        return f"{c.frames} frames, {c.identifications} identified, {c.not_a_card} not a card; faults: {faults}"

    def outbox_health(self) -> QueueStatus:
        """The outbox's health, or why it cannot be read (the status says so; the turn goes on)."""
        try:
            return self.outbox.stats()
        except OutboxError as e:
            return Unreadable(str(e))

    def status(
        self, queue: QueueStatus | None = None, delivery: DeliveryHealth | None = None, revocations: ReplacedListState | None = None
    ) -> DaemonStatus:
        """The status ``kiosk status`` shows (contracts masked); the parts a turn has read already are passed in."""
        from device.clock import ntp_synchronized

        c = self.loop.counters
        source = self.loop.source
        stats = getattr(source, "stats", None)
        camera = CameraStatus(source.describe())
        if callable(stats):
            counters = asdict(stats())
            camera = CameraStatus(camera.source, counters.pop("state"), counters.pop("last_error"), counters)
        return DaemonStatus(
            pid=os.getpid(),
            version=__version__,
            kiosk_id=self.settings.kiosk_id,
            uptime_s=time.monotonic() - self._started,
            camera=camera,
            scan=ScanStatus(
                frames=c.frames,
                decoded_frames=c.decoded_frames,
                odd_frames=c.odd_frames,
                identifications=c.identifications,
                refusals=c.refusals,
                last_refusal=LastRefusal(**c.last_refusal) if c.last_refusal else None,
                not_a_card=c.not_a_card,
                last_identification=LastIdentification(**c.last_identification) if c.last_identification else None,
                last_identification_age_s=time.monotonic() - c.last_identification_at if c.last_identification_at else None,
            ),
            queue=queue if queue is not None else self.outbox_health(),
            delivery=delivery if delivery is not None else self.forwarder.status(),
            faults=self.faults.active(),
            outputs=self.outputs.status(),
            disk_free_bytes=status.disk_free_bytes(self.outbox.path),
            clock_synced=ntp_synchronized(),
            cpu_temperature_c=status.cpu_temperature_c(),
            revocations=revocations,
            requests=RequestsStatus(**asdict(self.requests.counts)) if self.requests is not None else None,
        )
