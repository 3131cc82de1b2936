"""The status report: what the daemon publishes (:class:`DaemonStatus`, its status file) and what
``kiosk status`` shows (:class:`StatusReport`, also ``--json`` and the diag bundle's status.json).

Every part is a dataclass read by attribute; the JSON is theirs (``to_json``) and is read back by
``from_json``, which fails with :class:`StatusFormatError` naming the missing key (never a silent
0), and says plainly when the file is of another :data:`STATUS_VERSION`::

    daemon = DaemonStatus.from_json(json.loads(Path("/run/kiosk/status.json").read_text()))
    print(daemon.scan.frames, daemon.delivery.state, daemon.queue.pending)

    >>> DaemonStatus.from_json({"status_version": STATUS_VERSION, "pid": 7})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    device.status.report.MissingKey: the status has no 'version': a key renamed or removed (...)
    >>> DaemonStatus.from_json({"status_version": STATUS_VERSION + 1})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    device.status.report.StatusFormatError: the status is version 2, this command reads version 1: the daemon is newer ...

(The first one misses ``version``, the daemon's software version, not the status's.)

The stages' own health types are in :mod:`device.health` (the forwarder's, the outbox's, an
output's); the camera's counters are carried as the camera reports them (:class:`CameraStatus`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from device.health.delivery import DeliveryHealth
from device.health.outbox import OutboxHealth
from device.health.outputs import OutputHealth

#: The version of the status's JSON: raised when a key is renamed or removed, or changes meaning
#: (adding a key does not need it). Written as :data:`VERSION_KEY` in the status file and the report.
STATUS_VERSION = 1
VERSION_KEY = "status_version"
#: What to do about a status of another version: the daemon and the command are of different installs.
RESTART_ADVICE = "is the kiosk half upgraded? sudo systemctl restart kiosk"


class StatusFormatError(ValueError):
    """A status (file or report) that this command cannot read: a key missing, or another version."""


class MissingKey(StatusFormatError):
    """A key the status must have is not there (renamed or removed): ``key`` is its path, ``delivery.state``."""

    def __init__(self, key: str):
        super().__init__(key)
        self.key = key

    def __str__(self) -> str:
        return f"the status has no {self.key!r}: a key renamed or removed ({RESTART_ADVICE})"


@dataclass(frozen=True)
class Unreadable:
    """A part that could not be read (the outbox, the replaced-card list), and why: ``{"error": ...}`` in JSON."""

    error: str

    def to_json(self) -> dict:
        return {"error": self.error}


@dataclass(frozen=True)
class CameraStatus:
    """The camera as the scan loop's source describes it, with a live source's counters.

    ``state`` and ``last_error`` are None for a source without them (a file); ``counters`` holds the
    live source's other numbers (:class:`device.camera.grabber.CaptureStats`) as it reports them.
    """

    source: str
    state: str | None = None
    last_error: str | None = None
    counters: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict:
        live = {"state": self.state, "last_error": self.last_error} if self.state is not None else {}
        return {"source": self.source, **live, **self.counters}

    @classmethod
    def from_json(cls, data: dict) -> CameraStatus:
        rest = {k: v for k, v in data.items() if k not in ("source", "state", "last_error")}
        if "state" not in data:  # a source without a device (a file): nothing live to report
            return cls(_need(data, "source"), counters=rest)
        return cls(_need(data, "source"), data["state"], _need(data, "last_error"), rest)


@dataclass(frozen=True)
class LastIdentification:
    """The daemon's last identification, its contract masked (unless ``log.unmask``)."""

    contract: str
    issue: int | None
    seq: int
    scanned_at: str


@dataclass(frozen=True)
class LastRefusal:
    """The daemon's last refusal of a replaced card, its contract masked (unless ``log.unmask``)."""

    contract: str
    issue: int | None
    current_issue: int
    seq: int
    scanned_at: str


@dataclass(frozen=True)
class RequestsStatus:
    """What the daemon made of its request folder since it started (:mod:`device.daemon.requests`)."""

    ignored: int = 0  #: entries named like a request that are none (a FIFO, a directory, a symlink, a huge file): each logged once
    answered: int = 0  #: snapshot requests answered
    expired: int = 0  #: requests removed unanswered, older than two minutes
    waiting: int = 0  #: requests in the folder at the last turn


@dataclass(frozen=True)
class ScanStatus:
    """What the scan loop has done since the daemon started."""

    frames: int = 0  #: read from the camera
    decoded_frames: int = 0  #: with at least one barcode read
    odd_frames: int = 0  #: unusable (wrong size, empty): the camera's trouble
    identifications: int = 0  #: committed to the outbox
    refusals: int = 0  #: replaced cards shown, their refusals committed
    not_a_card: int = 0  #: presentations of a barcode that is no card
    last_identification: LastIdentification | None = None
    last_identification_age_s: float | None = None  #: None before the first
    last_refusal: LastRefusal | None = None

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> ScanStatus:
        values = _all(cls, data)
        values["last_identification"] = _optional(LastIdentification, values["last_identification"], "last_identification")
        values["last_refusal"] = _optional(LastRefusal, values["last_refusal"], "last_refusal")
        return cls(**values)


@dataclass(frozen=True)
class ReplacedListStatus:
    """The replaced-card copy (:meth:`device.revocations.store.ReplacedCards.info`), and in the
    daemon's status its sync's settings and fault (None in the copy a command reads itself)."""

    version: int | None
    count: int | None
    issued_at: str | None
    key_id: str | None
    synced_at: str | None
    attempt_at: str | None
    attempt_error: str | None
    path: str
    file_bytes: int
    age_s: float | None
    max_age_s: float | None = None
    interval_s: float | None = None
    fault: str | None = None

    def to_json(self) -> dict:
        data = asdict(self)
        if self.max_age_s is None:  # a command's read of the copy: no sync, no fault of its own
            for key in ("max_age_s", "interval_s", "fault"):
                del data[key]
        return data

    @classmethod
    def from_json(cls, data: dict) -> ReplacedListStatus | Unreadable:
        if "error" in data:
            return Unreadable(data["error"])
        daemons = ("max_age_s", "interval_s", "fault")
        values = _all(cls, data, optional=daemons if "max_age_s" not in data else ())
        return cls(**values)


#: The outbox's health, or why it could not be read.
QueueStatus = OutboxHealth | Unreadable
#: The replaced-card copy's state, or why it could not be read.
ReplacedListState = ReplacedListStatus | Unreadable


@dataclass(frozen=True)
class DaemonStatus:
    """What the running daemon publishes every couple of seconds (:class:`device.daemon.supervisor.Supervisor`).

    ``boot_id``, ``written_monotonic`` and ``written_at`` are stamped by
    :func:`device.status.file.write_status`; ``revocations`` is None when the list is off.
    """

    pid: int
    version: str
    kiosk_id: str
    uptime_s: float
    camera: CameraStatus
    scan: ScanStatus
    queue: QueueStatus
    delivery: DeliveryHealth
    faults: dict[str, str]
    outputs: dict[str, OutputHealth]
    disk_free_bytes: int | None
    clock_synced: bool
    cpu_temperature_c: float | None
    revocations: ReplacedListState | None = None
    requests: RequestsStatus | None = None
    boot_id: str = ""
    written_monotonic: float | None = None
    written_at: float | None = None

    def to_json(self) -> dict:
        data = {
            VERSION_KEY: STATUS_VERSION,
            "pid": self.pid,
            "version": self.version,
            "kiosk_id": self.kiosk_id,
            "uptime_s": self.uptime_s,
            "camera": self.camera.to_json(),
            "scan": self.scan.to_json(),
            "queue": self.queue.to_json(),
            "delivery": self.delivery.to_json(),
            "faults": dict(self.faults),
            "outputs": {name: asdict(health) for name, health in self.outputs.items()},
            "disk_free_bytes": self.disk_free_bytes,
            "clock_synced": self.clock_synced,
            "cpu_temperature_c": self.cpu_temperature_c,
        }
        if self.revocations is not None:  # no key with the list off, as before
            data["revocations"] = self.revocations.to_json()
        if self.requests is not None:
            data["requests"] = asdict(self.requests)
        return {**data, "boot_id": self.boot_id, "written_monotonic": self.written_monotonic, "written_at": self.written_at}

    @classmethod
    def from_json(cls, data: dict) -> DaemonStatus:
        """The daemon's status from its file's JSON; :class:`StatusFormatError` names what is missing."""
        check_version(data, "the daemon")
        values = _all(cls, data, optional=("revocations", "requests"))
        return cls(
            **{
                **values,
                "camera": _part(CameraStatus.from_json, values["camera"], "camera"),
                "scan": _part(ScanStatus.from_json, values["scan"], "scan"),
                "queue": _queue(values["queue"], "queue"),
                "delivery": _part(DeliveryHealth.from_json, values["delivery"], "delivery"),
                "outputs": {name: _part(OutputHealth.from_json, health, f"outputs.{name}") for name, health in values["outputs"].items()},
                "revocations": _revocations(values["revocations"]),
                "requests": _optional(RequestsStatus, values["requests"], "requests"),
            }
        )


@dataclass(frozen=True)
class StatusReport:
    """What ``kiosk status`` shows: the daemon's status while it runs, else what the command read itself.

    ``queue`` is the daemon's while it runs, else the outbox read by the command (None: there is
    none yet); ``revocations`` is the copy on disk read by the command (None while the daemon runs:
    its status has the list); ``stopped_because`` says why the daemon stopped (None while it runs).
    ``daemon`` is None while it does not run, or when its status file cannot be read (``why`` says).
    """

    running: bool
    why: str
    kiosk_id: str
    daemon: DaemonStatus | None
    queue: QueueStatus | None
    disk_free_bytes: int | None
    clock_synced: bool
    cpu_temperature_c: float | None
    warnings: list[str]
    stopped_because: list[str] | None
    revocations: ReplacedListState | None

    @property
    def healthy(self) -> bool:
        """The daemon runs without faults and no identification is dead: ``kiosk status`` exits 0."""
        dead = isinstance(self.queue, OutboxHealth) and self.queue.dead > 0
        return self.running and self.daemon is not None and not self.daemon.faults and not dead

    def to_json(self) -> dict:
        """``kiosk status --json``: today's keys and :data:`VERSION_KEY`."""
        return {
            VERSION_KEY: STATUS_VERSION,
            "running": self.running,
            "why": self.why,
            "kiosk_id": self.kiosk_id,
            "daemon": None if self.daemon is None else self.daemon.to_json(),
            "queue": None if self.queue is None else self.queue.to_json(),
            "disk_free_bytes": self.disk_free_bytes,
            "clock_synced": self.clock_synced,
            "cpu_temperature_c": self.cpu_temperature_c,
            "warnings": list(self.warnings),
            "stopped_because": self.stopped_because,
            "revocations": None if self.revocations is None else self.revocations.to_json(),
        }

    @classmethod
    def from_json(cls, data: dict) -> StatusReport:
        """Back from ``kiosk status --json`` (the diag bundle renders its masked copy this way)."""
        check_version(data, "the report")
        values = _all(cls, data)
        return cls(
            **{
                **values,
                "daemon": None if values["daemon"] is None else DaemonStatus.from_json(values["daemon"]),
                "queue": None if values["queue"] is None else _queue(values["queue"], "queue"),
                "revocations": _revocations(values["revocations"]),
            }
        )


def check_version(data: dict, whose: str) -> None:
    """Raise :class:`StatusFormatError` unless ``data`` is of this command's :data:`STATUS_VERSION`, saying which is newer."""
    if not isinstance(data, dict):
        raise StatusFormatError(f"the status of {whose} is not a JSON object")
    version = data.get(VERSION_KEY)
    if version == STATUS_VERSION:
        return
    if version is None:
        raise StatusFormatError(f"the status has no {VERSION_KEY}: {whose} is older than this command ({RESTART_ADVICE})")
    newer = isinstance(version, int) and version > STATUS_VERSION
    raise StatusFormatError(
        f"the status is version {version}, this command reads version {STATUS_VERSION}: "
        f"{whose} is {'newer' if newer else 'older'} than this command ({RESTART_ADVICE})"
    )


# --- reading JSON back: every key present, or the one missing named -----------------------------


def _need(data: dict, key: str):
    try:
        return data[key]
    except KeyError:
        raise MissingKey(key) from None


def _all(cls, data: dict, optional: tuple[str, ...] = ()) -> dict:
    """Every field of dataclass ``cls`` from ``data``; those in ``optional`` may be absent (None)."""
    if not isinstance(data, dict):
        raise StatusFormatError(f"the status has {data!r} where an object ({cls.__name__}) belongs")
    return {f.name: data.get(f.name) if f.name in optional else _need(data, f.name) for f in fields(cls)}


def _part(parse, data, where: str):
    """``parse(data)``, its failure named with the key path (``delivery.last_error``)."""
    try:
        return parse(data)
    except MissingKey as e:
        raise MissingKey(f"{where}.{e.key}") from None
    except KeyError as e:  # the stages' own from_json: a plain KeyError naming the field
        raise MissingKey(f"{where}.{e.args[0]}") from None
    except (TypeError, ValueError, AttributeError) as e:
        raise StatusFormatError(f"the status's {where} cannot be read: {e}") from None


def _optional(cls, data, where: str):
    return None if data is None else _part(lambda d: cls(**_all(cls, d)), data, where)


def _revocations(data) -> ReplacedListState | None:
    return None if data is None else _part(ReplacedListStatus.from_json, data, "revocations")


def _queue(data, where: str) -> QueueStatus:
    if isinstance(data, dict) and "error" in data:
        return Unreadable(data["error"])
    return _part(OutboxHealth.from_json, data, where)
