"""The metrics output: the kiosk's events and status as Prometheus metrics, in a file and on request.

:class:`MetricsOutput` is an output like the LEDs (its own thread and queue, so nothing it does
can slow a frame): it counts the events (:class:`~device.outputs.metrics.families.KioskMetrics`)
and takes the daemon's status, which the supervisor hands it every couple of seconds
(:class:`~device.events.StatusPublished`). Then

* ``metrics.textfile``: at the first status after ``metrics.interval_s``, and once more as the
  daemon stops (``kiosk_daemon_running`` 0), the file is replaced atomically for node_exporter's
  textfile collector (:mod:`.textfile`). A file that cannot be written (its folder missing or not
  the kiosk's to write, the disk full) is the ``metrics`` fault with the cause, tried again at the
  next interval and cleared by the first write that works: scanning never depends on it;
* ``metrics.listen``: ``GET /metrics`` on a loopback address (:mod:`.server`).

::

    output = MetricsOutput.from_config(cfg, faults=kiosk.faults)    # None when both are off
    kiosk.add_output(output)
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

from device import __version__
from device.config import Config, ConfigError, listen_address
from device.events import Event, StatusPublished
from device.fault_names import METRICS
from device.outputs.base import FaultSwitch, Output
from device.outputs.metrics.families import KioskMetrics
from device.outputs.metrics.server import MetricsServer
from device.outputs.metrics.textfile import write_textfile
from device.outputs.metrics.throttle import ThrottleReader

log = logging.getLogger(__name__)

#: What a technician does when the file cannot be written.
TEXTFILE_NEXT_STEP = "the folder must exist and the kiosk user must be able to write it (docs/METRICS.md)"


class MetricsOutput(Output):
    """Counts every event, keeps the latest status, writes ``textfile`` every ``interval_s``.

    :param metrics: the families and their registry.
    :param textfile: ``metrics.textfile``; None: no file.
    :param interval_s: ``metrics.interval_s``.
    :param faults: the kiosk's faults: the ``metrics`` fault is raised and cleared here.
    :param server: the ``/metrics`` server (``metrics.listen``), closed with the output; None: none.
    :param clock: monotonic seconds (tests).
    """

    def __init__(
        self,
        metrics: KioskMetrics,
        *,
        textfile: Path | None,
        interval_s: float,
        faults: FaultSwitch,
        server: MetricsServer | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.metrics = metrics
        self.textfile = textfile
        self.interval_s = interval_s
        self.faults = faults
        self.server = server
        self.clock = clock
        self.writes = 0  # files written, for tests and the benchmark
        self._written_at: float | None = None  # the last attempt, monotonic
        self._failing = False

    @classmethod
    def from_config(cls, cfg: Config, *, faults: FaultSwitch) -> MetricsOutput | None:
        """The output of the ``[metrics]`` section, None when neither a file nor a port is asked for.

        A ``metrics.listen`` address that cannot be bound (in use) is a config error naming it (exit 78).
        """
        section = cfg.metrics
        if not section.textfile and not section.listen:
            return None
        metrics = KioskMetrics(
            version=__version__, kiosk_id=cfg.kiosk.id, site=cfg.kiosk.site, started_at=time.time(), throttle=ThrottleReader()
        )
        server = None
        if section.listen:
            host, port = listen_address(section.listen)
            try:
                server = MetricsServer(host, port, metrics.registry)
            except OSError as e:
                raise ConfigError("metrics.listen", f"cannot listen on {section.listen}: {e.strerror or e}", cfg.source) from None
        textfile = Path(section.textfile) if section.textfile else None
        return cls(metrics, textfile=textfile, interval_s=section.interval_s, faults=faults, server=server)

    # --- events (the output's thread) ---------------------------------------------------------

    def _count(self, event: Event) -> None:
        self.metrics.count(event)

    # Every event but the status is counted as it comes (KioskMetrics.count knows each kind).
    on_identified = on_refused = on_not_a_card = on_delivered = on_delivery_failed = on_dead = _count
    on_fault_raised = on_fault_cleared = on_frame = _count

    def on_status(self, event: StatusPublished) -> None:
        self.metrics.update(event.status)
        if self.textfile is not None and (self._written_at is None or self.clock() - self._written_at >= self.interval_s):
            self.write()

    def close(self) -> None:
        """The daemon stops: the file written once more, saying so; the server closed."""
        self.metrics.stopped()
        if self.textfile is not None:
            self.write()
        if self.server is not None:
            self.server.close()

    # --- the file -----------------------------------------------------------------------------

    def write(self) -> bool:
        """Replace the file now; False when it could not be (the ``metrics`` fault then says why)."""
        assert self.textfile is not None
        self._written_at = self.clock()
        try:
            write_textfile(self.textfile, self.metrics.registry)
        except OSError as e:
            self._failing = True
            self.faults.raise_(METRICS, f"cannot write metrics.textfile {self.textfile}: {e.strerror or e}: {TEXTFILE_NEXT_STEP}")
            return False
        self.writes += 1
        if self._failing:
            self._failing = False
            self.faults.clear(METRICS, "the metrics file is written again")
        return True
