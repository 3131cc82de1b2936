"""The kiosk's metrics: every family, in a registry of its own, and what updates each.

Two kinds of source, both typed (no dicts between stages):

* the events (:mod:`device.events`), counted as they come: identifications, refusals, barcodes
  that are not cards, records delivered and rejected, failed delivery attempts by cause, faults on
  and off, and the histograms of each decoded frame's decode time and each read's module size;
* the daemon's status (:class:`~device.status.report.DaemonStatus`, every couple of seconds),
  for what no single event carries: frames read and decoded, the outbox's records by state and
  the age of the oldest pending one, POS hand-offs by outcome, the replaced-card list's version
  and age; and, read at each collection, the Pi's throttling flags (:mod:`.throttle`).

Names follow Prometheus' conventions: a ``kiosk_`` prefix, base units (``_seconds``), ``_total``
for counters. Counters count since the daemon started and start again from 0 when it restarts, as
Prometheus expects of a process's counters (``rate()`` and ``increase()`` see the reset)::

    >>> from prometheus_client import generate_latest
    >>> metrics = KioskMetrics(version="1.0", kiosk_id="k1", site="riga", started_at=1700000000.0)
    >>> metrics.count(events.FaultRaised("camera", "no frames"))
    >>> text = generate_latest(metrics.registry).decode()
    >>> 'kiosk_fault_active{fault="camera"} 1.0' in text, 'kiosk_fault_active{fault="outbox"} 0.0' in text
    (True, True)
    >>> 'kiosk_build_info{kiosk="k1",site="riga",version="1.0"} 1.0' in text
    True

The registry is not prometheus_client's global one (which would add the Python process's own
metrics), and the ``_created`` series that prometheus_client adds beside each counter and
histogram are turned off (process-wide: the daemon has no other registry): they would double the
series per kiosk for a value Prometheus does not use.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from device import events
from device.fault_names import KNOWN
from device.health.delivery import DeliveryFailure
from device.health.outbox import OutboxHealth, RecordState
from device.outputs.metrics.throttle import CONDITIONS, ThrottleReader
from device.pos_template import PosOutcome
from device.status.report import DaemonStatus, ReplacedListStatus

#: Decode time of one frame (locate, decode, card check), seconds: a Pi 4 takes a few ms to tens of ms.
DECODE_BUCKETS_S = (0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)
#: Width of one bar module in the frame, pixels: cards read down to about 1.1 px; below 1 the bars alias.
MODULE_BUCKETS_PX = (0.75, 1.0, 1.25, 1.5, 2.0, 2.5, 3.0, 4.0, 6.0)
#: The kinds of record the outbox delivers (``Identification.kind``).
RECORD_KINDS = ("identification", "refusal")


def outcome_label(outcome: PosOutcome) -> str:
    """A POS hand-off's outcome as a label value.

    >>> [outcome_label(o) for o in PosOutcome]
    ['handed_over', 'offline', 'too_old']
    """
    return outcome.name.lower()


class KioskMetrics:
    """The kiosk's metric families (:attr:`registry`), updated by :meth:`count` (an event) and
    :meth:`update` (a status).

    :param version: the software's version, in ``kiosk_build_info``.
    :param kiosk_id: ``kiosk.id``, in ``kiosk_build_info`` (to join a kiosk's series by its name).
    :param site: ``kiosk.site``, likewise.
    :param started_at: when the daemon started, Unix time (``kiosk_start_time_seconds``).
    :param throttle: reads the Pi's throttling flags; None: none exported.
    """

    def __init__(self, *, version: str, kiosk_id: str, site: str, started_at: float, throttle: ThrottleReader | None = None):
        disable_created_metrics()
        self.registry = CollectorRegistry()
        r = self.registry
        info = Gauge("kiosk_build_info", "The kiosk software's version (always 1), with kiosk.id and kiosk.site.",
                     ["version", "kiosk", "site"], registry=r)  # fmt: skip
        info.labels(version, kiosk_id, site).set(1)
        Gauge("kiosk_start_time_seconds", "When the daemon started, Unix time.", registry=r).set(started_at)
        self.running = Gauge("kiosk_daemon_running", "1 while the daemon runs; 0 in the file it writes as it stops.", registry=r)
        self.running.set(1)
        self.identifications = Counter("kiosk_identifications", "Clients identified: identifications committed to the outbox.", registry=r)
        self.refusals = Counter("kiosk_refusals", "Replaced cards shown and refused (their refusals committed).", registry=r)
        self.not_a_card = Counter("kiosk_not_a_card", "Barcodes shown that are not a client card, once per presentation.", registry=r)
        self.delivered = Counter("kiosk_delivered_records", "Records the central holds (accepted, or a duplicate), by kind.",
                                 ["kind"], registry=r)  # fmt: skip
        self.rejected = Counter("kiosk_rejected_records", "Records the central refused for good (now dead in the outbox).", registry=r)
        self.failures = Counter("kiosk_delivery_failures", "Delivery attempts that failed (their records stay pending), by cause.",
                                ["cause"], registry=r)  # fmt: skip
        self.decode = Histogram("kiosk_decode_seconds", "Time to locate, decode and check the barcodes of one decoded frame.",
                                buckets=DECODE_BUCKETS_S, registry=r)  # fmt: skip
        self.module = Histogram("kiosk_read_module_pixels", "Width of one bar module in the frame for each card or barcode acted "
                                "on, in pixels (the locator's estimate; blur makes it err high).", buckets=MODULE_BUCKETS_PX,
                                registry=r)  # fmt: skip
        self.faults = Gauge("kiosk_fault_active", "1 while the fault is on (see kiosk status), else 0.", ["fault"], registry=r)
        for kind in RECORD_KINDS:
            self.delivered.labels(kind)
        for cause in DeliveryFailure:
            self.failures.labels(cause.value)
        self._fault_names = set(KNOWN)
        for name in KNOWN:
            self.faults.labels(name).set(0)
        self.status = StatusCollector(throttle)
        r.register(self.status)

    def count(self, event: events.Event) -> None:
        """Count one event (each kind its own families)."""
        if isinstance(event, events.FrameScanned):
            if event.result.decoded:
                self.decode.observe(event.result.decode_s)
        elif isinstance(event, events.Identified):
            self.identifications.inc()
            self._module(event.module_px)
        elif isinstance(event, events.Refused):
            self.refusals.inc()
            self._module(event.module_px)
        elif isinstance(event, events.NotACard):
            self.not_a_card.inc()
            self._module(event.reading.symbol.module_px)
        elif isinstance(event, events.Delivered):
            for record in event.records:
                self.delivered.labels(record.kind).inc()
        elif isinstance(event, events.Dead):
            self.rejected.inc()
        elif isinstance(event, events.DeliveryFailed):
            self.failures.labels(event.cause.value).inc()
        elif isinstance(event, events.FaultRaised):
            self._fault(event.name, True)
        elif isinstance(event, events.FaultCleared):
            self._fault(event.name, False)

    def update(self, status: DaemonStatus) -> None:
        """Take the daemon's status: its counts for the next collection, and every fault as it says
        (the events said so already; the status also holds those raised before this output was told)."""
        self.status.latest = status
        for name in self._fault_names | set(status.faults):
            self._fault(name, name in status.faults)

    def stopped(self) -> None:
        """The daemon stops: ``kiosk_daemon_running`` is 0 in what is written last."""
        self.running.set(0)

    def _module(self, module_px: float | None) -> None:
        if module_px is not None:
            self.module.observe(module_px)

    def _fault(self, name: str, on: bool) -> None:
        self._fault_names.add(name)  # a thread's fault, once seen, stays a series (0 once it clears)
        self.faults.labels(name).set(1 if on else 0)


class StatusCollector(Collector):
    """The families taken from the daemon's latest status (none before the first), and the Pi's
    throttling flags read at each collection (none where the firmware does not tell them)."""

    def __init__(self, throttle: ThrottleReader | None = None):
        self.latest: DaemonStatus | None = None  # replaced whole by the output's thread: a reader sees one status
        self.throttle = throttle

    def collect(self) -> Iterator[Metric]:
        status = self.latest
        if status is not None:
            yield from _scan(status)
            if isinstance(status.queue, OutboxHealth):  # unreadable: the outbox's fault says why
                yield from _outbox(status.queue)
            if isinstance(status.revocations, ReplacedListStatus):
                yield from _replaced_list(status.revocations)
        yield from _throttle(self.throttle)


def _scan(status: DaemonStatus) -> Iterable[Metric]:
    yield CounterMetricFamily("kiosk_frames", "Frames read from the camera.", value=status.scan.frames)
    yield CounterMetricFamily("kiosk_frames_decoded", "Frames the gate let through to be decoded.", value=status.scan.decoded_frames)


def _outbox(queue: OutboxHealth) -> Iterable[Metric]:
    records = GaugeMetricFamily("kiosk_outbox_records", "Records in the outbox by state (delivered ones are kept "
                                "outbox.retention_days).", labels=["state"])  # fmt: skip
    for state, count in ((RecordState.PENDING, queue.pending), (RecordState.DELIVERED, queue.delivered),
                         (RecordState.DEAD, queue.dead), (RecordState.QUARANTINED, queue.quarantined)):  # fmt: skip
        records.add_metric([state.value], count)
    yield records
    yield GaugeMetricFamily("kiosk_outbox_oldest_pending_age_seconds", "Age of the oldest record not yet delivered (0: none pending).",
                            value=queue.oldest_pending_age_s or 0.0)  # fmt: skip
    handoffs = GaugeMetricFamily("kiosk_pos_handoff_records", "Identifications in the outbox by the outcome of their hand-off to "
                                 "the POS (pos.output; none recorded while it is none).", labels=["outcome"])  # fmt: skip
    for outcome in PosOutcome:
        handoffs.add_metric([outcome_label(outcome)], queue.pos_outcomes.get(outcome.value, 0))
    yield handoffs


def _replaced_list(copy: ReplacedListStatus) -> Iterable[Metric]:
    if copy.version is not None:
        yield GaugeMetricFamily("kiosk_replaced_list_version", "Version of the replaced-card list in force.", value=copy.version)
    if copy.age_s is not None:
        yield GaugeMetricFamily("kiosk_replaced_list_age_seconds", "Time since the central last confirmed the replaced-card list.",
                                value=copy.age_s)  # fmt: skip


def _throttle(reader: ThrottleReader | None) -> Iterable[Metric]:
    flags = reader.read() if reader is not None else None
    if flags is None:  # not a Pi, or its firmware unreadable: no series, never a made-up 0
        return
    family = GaugeMetricFamily("kiosk_pi_throttle_flag", "The Pi firmware's flags (vcgencmd get_throttled): 1 when the condition "
                               "holds now, or has held since boot.", labels=["condition", "period"])  # fmt: skip
    for condition in CONDITIONS:
        family.add_metric([condition, "now"], int(flags.now(condition)))
        family.add_metric([condition, "since_boot"], int(flags.since_boot(condition)))
    yield family
