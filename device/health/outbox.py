"""The outbox's health as status, the faults and ``kiosk queue`` read it, and its record states.

::

    health = outbox.stats()
    print(health.pending, health.dead, health.integrity_fault)
    for problem in health.integrity:
        print(problem.found_at, problem.kind, problem.message)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from enum import StrEnum


class RecordState(StrEnum):
    """Where an identification is on its way to the central; the value is what SQLite and JSON hold.

    A :class:`~enum.StrEnum`: it is stored, compared and printed as its text.

    >>> RecordState("dead") is RecordState.DEAD, RecordState.PENDING == "pending", f"{RecordState.QUARANTINED}"
    (True, True, 'quarantined')
    """

    PENDING = "pending"  #: committed, not yet accepted by the central
    DELIVERED = "delivered"  #: the central accepted it (or had it already)
    DEAD = "dead"  #: the central rejected it, with its reason: kept, retryable, never deleted
    QUARANTINED = "quarantined"  #: its checksum failed: never sent


@dataclass(frozen=True)
class IntegrityProblem:
    """One thing the outbox found wrong with itself (a loss, a salvage, a quarantine), until acknowledged."""

    found_at: str  #: UTC ISO
    kind: str  #: "lost", "salvaged", "mark-unreadable", "quarantined"
    message: str


@dataclass(frozen=True)
class OutboxHealth:
    """What :meth:`device.outbox.Outbox.stats` says: the count per state, the backlog's age and the problems.

    ``integrity`` lists the newest unacknowledged problems; ``integrity_unacknowledged`` counts all of
    them; ``integrity_fault`` sums them up in one line (None when there are none).
    """

    path: str
    pending: int
    delivered: int
    dead: int
    quarantined: int
    refusals: int  #: of the records above: replaced cards refused (device.revocations)
    #: of the records above: how many had each outcome of the POS hand-off ("handed over", "POS offline",
    #: "too old"); records with none recorded are not counted
    pos_outcomes: dict[str, int]
    oldest_pending_scanned_at: str | None
    oldest_pending_age_s: float | None
    last_error: str | None
    last_error_at: str | None
    last_seq: int
    last_commit_error: str | None
    moved_aside: str | None
    corrupt_files: list[str]
    integrity: list[IntegrityProblem]
    integrity_unacknowledged: int
    mark_error: str | None
    integrity_fault: str | None

    def to_json(self) -> dict:
        """The ``queue`` object of ``status.json`` and ``kiosk diag bundle``'s queue.json."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> OutboxHealth:
        """Back from JSON; a missing key raises KeyError naming it."""
        fields = {name: data[name] for name in cls.__dataclass_fields__}
        fields["integrity"] = [IntegrityProblem(p["found_at"], p["kind"], p["message"]) for p in data["integrity"]]
        return cls(**fields)
