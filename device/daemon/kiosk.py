"""The kiosk daemon: camera -> pipeline -> presentations -> outbox, with the forwarder beside it.

Threads: the camera backend's own grab thread (live cameras), the scan loop (the caller's
thread) and the forwarder. Whatever happens to the camera or the disk, the loop goes on and the
forwarder keeps delivering; faults are reported to the listeners (logs, LEDs, status) once when
they start and once when they clear.

    kiosk = Kiosk.from_config(cfg)
    exit_code = kiosk.run(stop_event)

A listener is any object with some of these methods (all optional):
``identified(identification)``, ``not_a_card(reading)``, ``fault(name, message)``,
``fault_cleared(name)``, ``frame(result)``.

A housekeeping thread publishes the status snapshot (``kiosk status``), tells systemd
(``STATUS=``, and ``WATCHDOG=1`` only while the scan loop makes progress), raises the
delivery faults (token refused, backlog too old) and answers ``kiosk diag camera``.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2

from device import __version__, status
from device.camera import CameraError, FrameSource, open_camera
from device.config import Config, ConfigError
from device.daemon.devclass import EXIT_RESTART, DeviceClassWatch
from device.forwarder import Forwarder, ForwarderConfigError
from device.daemon.notify import Notifier
from device.outbox import Outbox, OutboxError
from device.pipeline import Pipeline, Reading
from device.presentation import Presentations
from device.redact import describe_text, mask_contract

log = logging.getLogger(__name__)

#: Fault names, shared with feedback and status.
CAMERA = "camera"  # no frames: unplugged, stalled
OUTBOX = "outbox"  # identifications cannot be stored: disk full, file unusable
DELIVERY_AUTH = "delivery-auth"  # the central refuses the token: delivery paused
BACKLOG = "backlog"  # the oldest undelivered identification is older than feedback.backlog_alert_s


@dataclass
class ScanCounters:
    """What the scan loop has done since start, for status and the demo."""

    frames: int = 0
    decoded_frames: int = 0
    identifications: int = 0
    not_a_card: int = 0
    odd_frames: int = 0
    last_identification_at: float | None = None  # monotonic
    last_identification: dict | None = None  # masked, for status
    faults: dict = field(default_factory=dict)  # name -> message, while active


def check_delivery_config(cfg: Config) -> None:
    """A kiosk that runs must know its central: a missing api.url or token is a config error (exit 78)."""
    if not cfg.api.url:
        raise ConfigError("api.url", "required to run the kiosk: the central's base URL, e.g. https://central.example.net", cfg.source)
    if not cfg.api.token and not cfg.api.token_file:
        raise ConfigError("api.token_file", "required to run the kiosk: a file holding the central's token (or set api.token)", cfg.source)


def make_forwarder(cfg: Config, outbox: Outbox) -> Forwarder:
    """The forwarder as configured; problems are config errors naming the key (exit 78)."""
    check_delivery_config(cfg)
    try:
        return Forwarder(
            outbox,
            cfg.api.url,
            cfg.api.token,
            token_file=cfg.api.token_file,
            batch_size=cfg.api.batch_size,
            connect_timeout_s=cfg.api.connect_timeout_s,
            read_timeout_s=cfg.api.read_timeout_s,
            ca_bundle=cfg.api.ca_bundle,
            allow_insecure_http=cfg.api.allow_insecure_http,
            backoff_base_s=cfg.api.backoff_base_s,
            backoff_cap_s=cfg.api.backoff_cap_s,
            retry_after_cap_s=cfg.api.retry_after_cap_s,
            auth_retry_s=cfg.api.auth_retry_s,
        )
    except ForwarderConfigError as e:
        key, _, problem = str(e).partition(": ")
        raise ConfigError(key, problem, cfg.source) from None


def open_outbox(cfg: Config) -> Outbox:
    return Outbox.from_config(cfg)


class Kiosk:
    """One kiosk: its frame source, pipeline, presentations, outbox and forwarder."""

    def __init__(
        self,
        source: FrameSource,
        pipeline: Pipeline,
        outbox: Outbox,
        forwarder: Forwarder,
        *,
        repeat_window_s: float = 10.0,
        unmask: bool = False,
        listeners: list | None = None,
        kiosk_id: str = "",
        runtime_dir: Path | None = None,
        backlog_alert_s: float = 3600.0,
        notifier: Notifier | None = None,
        camera_restart_after_s: float = 0.0,
        device_watch: DeviceClassWatch | None = None,
    ):
        self.source = source
        self.pipeline = pipeline
        self.outbox = outbox
        self.forwarder = forwarder
        self.cards = Presentations(repeat_window_s)
        self.foreign = Presentations(repeat_window_s)
        self.unmask = unmask
        self.listeners = list(listeners or [])
        self.counters = ScanCounters()
        self.kiosk_id = kiosk_id
        self.runtime_dir = runtime_dir
        self.backlog_alert_s = backlog_alert_s
        self.notifier = notifier or Notifier()
        self._faults_lock = threading.Lock()
        self._heartbeat = time.monotonic()  # the scan loop's last turn, for the watchdog
        self._draining = False  # a finite source ended: the loop is done, drain() bounds the rest
        self._started = time.monotonic()
        self._latest = None  # (image, readings) of the last decoded frame, for diag snapshots
        # camera.restart_after_s and the device classes: see _camera_delivers, _check_device_classes.
        self.camera_restart_after_s = camera_restart_after_s
        self.device_watch = device_watch
        self.restart_reason: str | None = None
        self._run_stop: threading.Event | None = None
        self._camera_starved = False

    @classmethod
    def from_config(cls, cfg: Config, *, listeners: list | None = None) -> "Kiosk":
        """Everything as configured. A camera that cannot be used at all (picamera2 not
        installed, a file that is not there) is a config error on ``camera.source``; a live
        camera that is merely unplugged is not: it is retried while the kiosk runs."""
        check_delivery_config(cfg)  # before any file is created
        device_watch = DeviceClassWatch()  # before the camera opens: what the unit was allowed at start
        try:
            source = open_camera(cfg.camera)
        except CameraError as e:
            raise ConfigError("camera.source", str(e), cfg.source) from None
        try:
            outbox = open_outbox(cfg)
        except BaseException:
            source.close()
            raise
        try:
            forwarder = make_forwarder(cfg, outbox)
        except BaseException:
            outbox.close()
            source.close()
            raise
        return cls(
            source,
            Pipeline.from_config(cfg),
            outbox,
            forwarder,
            repeat_window_s=cfg.scan.repeat_window_s,
            unmask=cfg.log.unmask,
            listeners=listeners,
            kiosk_id=cfg.kiosk.id,
            runtime_dir=Path(cfg.kiosk.runtime_dir),
            backlog_alert_s=cfg.feedback.backlog_alert_s,
            camera_restart_after_s=cfg.camera.restart_after_s,
            device_watch=device_watch,
        )

    # --- events ---------------------------------------------------------------------------

    def _tell(self, event: str, *args) -> None:
        for listener in self.listeners:
            method = getattr(listener, event, None)
            if method is not None:
                try:
                    method(*args)
                except Exception:  # feedback hardware failing must not stop identifications
                    log.exception("listener %s failed on %s", type(listener).__name__, event)

    def _fault(self, name: str, message: str) -> None:
        with self._faults_lock:
            first = name not in self.counters.faults
            self.counters.faults[name] = message
        if first:
            log.warning("fault %s: %s", name, message)
            self._tell("fault", name, message)

    def _clear(self, name: str, how: str) -> None:
        with self._faults_lock:
            was = self.counters.faults.pop(name, None)
        if was is not None:
            log.info("%s fault cleared: %s", name, how)
            self._tell("fault_cleared", name)

    def new_presentation(self) -> None:
        """The operator's button: every open presentation ends, so any card in view (or shown
        next) is identified again, even one identified a moment ago.

        Called from gpiozero's callback thread; :class:`Presentations` locks against the scan loop.
        """
        self.cards.reset()
        self.foreign.reset()
        log.info("new presentation started by the button")

    # --- the scan loop --------------------------------------------------------------------

    def scan_forever(self, stop: threading.Event) -> bool:
        """Scan frames until ``stop`` is set (False) or a finite source ends (True)."""
        while not stop.is_set():
            self._heartbeat = time.monotonic()
            try:
                frame = self.source.read(timeout=0.5)
            except CameraError as e:
                self._fault(CAMERA, str(e))
                continue
            if frame is None:
                return True
            self._clear(CAMERA, "frames arriving")
            self.counters.frames += 1
            try:
                result = self.pipeline.frame(frame.image, frame.monotonic)
            except ValueError as e:  # an odd frame (zero-size, wrong type): skip it, keep going
                self.counters.odd_frames += 1
                log.warning("frame %d skipped: %s", frame.index, e)
                continue
            self.counters.decoded_frames += result.decoded
            for reading in result.readings:
                self._handle(reading, frame.monotonic)
            if result.decoded:  # at least once per full-look interval, so at most ~1 s old
                self._latest = (frame.image, result.readings)
            self._tell("frame", result)
        return False

    def _handle(self, reading: Reading, now: float) -> None:
        if reading.card is None:
            key = (reading.symbol.symbology, reading.symbol.text)
            if self.foreign.is_new(key, now):
                self.foreign.identified(key, now)
                self.counters.not_a_card += 1
                log.info("not a card (%s): %s %s", reading.rejection.reason, reading.symbol.symbology, describe_text(reading.symbol.text, self.unmask))
                self._tell("not_a_card", reading)
            return
        card = reading.card
        if not self.cards.is_new(card, now):
            return
        try:
            identification = self.outbox.commit(card, symbology=reading.symbol.symbology, decoder=reading.symbol.decoder)
        except OutboxError as e:
            # No "OK" to the client: nothing is durable. No presentation is opened either, so
            # the next frame of the same card tries again (and succeeds once space returns).
            self._fault(OUTBOX, f"cannot store identifications: {e}")
            return
        self._clear(OUTBOX, "identifications are stored again")
        self.cards.identified(card, now)
        self.counters.identifications += 1
        self.counters.last_identification_at = now
        self.counters.last_identification = {
            "contract": mask_contract(card.contract, self.unmask),
            "issue": card.issue,
            "seq": identification.seq,
            "scanned_at": identification.scanned_at,
        }
        log.info(
            "identified contract %s issue %d (seq %d, id %s)",
            mask_contract(card.contract, self.unmask),
            card.issue,
            identification.seq,
            identification.id,
        )
        self._tell("identified", identification)
        self.forwarder.wake()

    # --- the whole daemon -----------------------------------------------------------------

    def run(self, stop: threading.Event, drain_timeout_s: float = 60.0) -> int:
        """Run until ``stop`` (exit 0) or, for a finite source, until it ends and the outbox is drained.

        Returns 0, or 1 when a finite run could not drain within ``drain_timeout_s``, or
        :data:`~device.daemon.devclass.EXIT_RESTART` when a device class appeared that the service
        was not allowed at start (see :mod:`device.daemon.devclass`).
        """
        self._run_stop = stop
        forwarder_stop = threading.Event()
        forwarder = threading.Thread(target=self.forwarder.run, args=(forwarder_stop,), name="forwarder", daemon=True)
        forwarder.start()
        housekeeping_stop = threading.Event()
        housekeeping = threading.Thread(target=self.housekeeping, args=(housekeeping_stop,), name="housekeeping", daemon=True)
        housekeeping.start()
        self._housekeeping_once()
        self.notifier.ready(self.summary())

        def stop_forwarder_thread() -> None:
            forwarder_stop.set()
            self.forwarder.wake()
            forwarder.join(timeout=self.forwarder.timeout[0] + self.forwarder.timeout[1] + 5)

        code = 0
        try:
            ended = self.scan_forever(stop)
            self.notifier.stopping()
            self.source.close()
            if ended:
                # Deliver what is left in this thread; housekeeping goes on meanwhile, so faults
                # (a refused token, say) still reach the LEDs and status while draining.
                stop_forwarder_thread()
                self._draining = True
                log.info("source ended after %d frames; draining the outbox (up to %g s)", self.counters.frames, drain_timeout_s)
                if not self.forwarder.drain(drain_timeout_s, stop):
                    stats = self.outbox.stats()
                    log.error(
                        "outbox not drained after %g s: %d pending; last error: %s",
                        drain_timeout_s,
                        stats.get("pending", 0),
                        self.forwarder.status().get("last_error"),
                    )
                    code = 1
        finally:
            stop_forwarder_thread()
            housekeeping_stop.set()
            housekeeping.join(timeout=5)
            self._housekeeping_once()
            self.source.close()
            if self.runtime_dir is not None:
                status.remove_status(self.runtime_dir)
        self.outbox.close()
        return EXIT_RESTART if self.restart_reason else code


    # --- housekeeping: status, systemd, delivery faults, snapshots ---------------------------

    def housekeeping(self, stop: threading.Event) -> None:
        """Every couple of seconds (or half the watchdog interval): look after everything but frames."""
        period = status.WRITE_INTERVAL_S
        if self.notifier.watchdog_interval_s:
            period = min(period, self.notifier.watchdog_interval_s / 2)
        while not stop.wait(period):
            try:
                self._housekeeping_turn(period)
            except Exception:  # status must never take the kiosk down
                log.exception("housekeeping failed")

    def _housekeeping_turn(self, period: float, feed_watchdog: bool = True) -> None:
        # The watchdog is fed only while the scan loop turns (it turns at least every 0.5 s even
        # with the camera gone): a hung loop starves it and systemd restarts the daemon.
        loop_alive = self._draining or time.monotonic() - self._heartbeat < max(2 * period, 2.0)
        if feed_watchdog and self.notifier.watchdog_interval_s and loop_alive and self._camera_delivers():
            self.notifier.watchdog()
        self._check_device_classes()
        forwarder = self.forwarder.status()
        if forwarder["paused_by_auth"]:
            self._fault(DELIVERY_AUTH, f"the central refuses the token: {forwarder['last_error']}")
        else:
            self._clear(DELIVERY_AUTH, "the central accepts the token")
        try:
            queue = self.outbox.stats()
        except OutboxError as e:
            queue = {"error": str(e)}
        age = queue.get("oldest_pending_age_s")
        if age is not None and age > self.backlog_alert_s:
            self._fault(BACKLOG, f"the oldest undelivered identification is {age / 60:.0f} min old")
        else:
            self._clear(BACKLOG, "the backlog is delivered")
        if self.runtime_dir is not None:
            self._answer_snapshot_request()
            status.write_status(self.runtime_dir, self.status(queue, forwarder))
        self.notifier.status(self.summary())

    def _camera_delivers(self) -> bool:
        """False once a live camera has given no frame for ``camera_restart_after_s`` (0: never).

        The watchdog then starves and systemd restarts the daemon: a fresh process is what a
        stalled CSI camera needs (libcamera hands the camera to a new owner only once the old one
        is gone, and a close stuck in the driver never lets go). If the camera is still missing
        after that, the camera fault's text says whether a reboot is the cure.
        """
        no_frame_for_s = getattr(self.source, "no_frame_for_s", None)
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

    def _check_device_classes(self) -> None:
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

    def _housekeeping_once(self) -> None:
        """A housekeeping turn outside the thread: before READY=1 (so `kiosk status` works as soon as
        systemd says the unit is active) and at the end (faults that cleared while draining say so).
        Neither feeds the watchdog: that is the scan loop's to earn."""
        try:
            self._housekeeping_turn(status.WRITE_INTERVAL_S, feed_watchdog=False)
        except Exception:
            log.exception("housekeeping failed")

    def summary(self) -> str:
        """One line for systemd's STATUS=."""
        c = self.counters
        faults = ", ".join(sorted(c.faults)) or "none"
        return f"{c.frames} frames, {c.identifications} identified, {c.not_a_card} not a card; faults: {faults}"

    def status(self, queue: dict | None = None, forwarder: dict | None = None) -> dict:
        """The snapshot ``kiosk status`` shows (contracts masked)."""
        from device.clock import ntp_synchronized

        c = self.counters
        camera = {"source": self.source.describe()}
        stats = getattr(self.source, "stats", None)
        if callable(stats):
            camera.update({k: v for k, v in asdict(stats()).items()})
        with self._faults_lock:
            faults = dict(c.faults)
        outbox_path = self.outbox.path
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
            "faults": faults,
            "disk_free_bytes": status.disk_free_bytes(outbox_path),
            "clock_synced": ntp_synchronized(),
            "cpu_temperature_c": status.cpu_temperature_c(),
        }

    def _answer_snapshot_request(self) -> None:
        """``kiosk diag camera`` while the daemon owns the camera: write the latest frame, annotated."""
        request = self.runtime_dir / status.SNAPSHOT_REQUEST
        if not request.exists() or self._latest is None:
            return
        from device.diag import annotate

        image, readings = self._latest
        tmp = self.runtime_dir / f".{status.SNAPSHOT_FILE}"
        ok, data = cv2.imencode(".jpg", annotate(image, readings, self.unmask))
        if ok:
            tmp.write_bytes(data.tobytes())
            tmp.replace(self.runtime_dir / status.SNAPSHOT_FILE)
        request.unlink(missing_ok=True)


def run_until_signalled(kiosk: Kiosk, drain_timeout_s: float) -> int:
    """Run ``kiosk`` in this thread; SIGTERM and SIGINT finish the frame in hand and stop it."""
    import signal

    stop = threading.Event()

    def on_signal(signum, _frame):
        log.info("signal %s: stopping", signal.Signals(signum).name)
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        started = time.monotonic()
        code = kiosk.run(stop, drain_timeout_s)
        log.info("stopped after %.1f s", time.monotonic() - started)
        return code
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
