"""What becomes of each record of a batch: one rule for every store, so SQLite and PostgreSQL agree.

A record is held once under its id and once under (kiosk, seq). The records that take no key held
before are inserted (``INSERT ... ON CONFLICT DO NOTHING``: the database's unique indexes decide,
also against a concurrent writer); each record not inserted is then compared with what holds its
keys: the same payload under its id is a ``duplicate``; anything else is a conflict, whose reason
names the key and the fields that differ, never their values (contracts are personal data).

Records are judged in batch order, as if sent one at a time: a record whose key an earlier record
of the batch took, and whose fate is still open, waits for the next round.

>>> from central.contract import Identification
>>> a = Identification("3f1c0a52-6a3e-4c1e-9a57-0d3a1f2b9c10", 1, "0012345678", 1, "2024-05-02T09:15:00Z", True, "Code128")
>>> b = Identification(a.id, 1, "0012345679", 1, a.scanned_at, True, "Code128")
>>> held = {}
>>> def insert(rows):
...     new = {r.id for r in rows if r.id not in held and all(h.seq != r.seq for h in held.values())}
...     held.update({r.id: r for r in rows if r.id in new})
...     return new
>>> def look_up(ids, seqs):
...     return ({i: payload("k-1", held[i]) for i in ids if i in held},
...             {r.seq: (r.id, payload("k-1", r)) for r in held.values() if r.seq in seqs})
>>> [(o.status, o.reason) for o in judge("k-1", [a, a, b], insert, look_up).outcomes]
[('accepted', None), ('duplicate', None), ('rejected', 'conflict: this id is held with another contract')]
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from central.contract import ACCEPTED, DUPLICATE, REJECTED, Identification
from central.storage import Outcome

#: What must match for a record sent again to be the same record (the site is not part of it:
#: a kiosk moved to another site still sends its backlog under the seqs it numbered).
PAYLOAD_FIELDS = ("kiosk", "seq", "format", "contract", "card_issue", "scanned_at", "clock_synced", "symbology", "kind", "current_issue")
#: The columns of an identification as the listings show them (``GET /v1/identifications``).
LISTED_COLUMNS = (
    "id",
    "seq",
    "format",
    "contract",
    "card_issue",
    "kiosk",
    "site",
    "scanned_at",
    "clock_synced",
    "symbology",
    "received_at",
    "receipts",
)
#: Which key of a record another record holds: its id, or its kiosk's seq.
ID_KEY, SEQ_KEY = "id", "seq"

Payload = tuple
#: Inserts the records that take no key held yet; the ids it inserted.
Insert = Callable[[list[Identification]], set[str]]
#: (payload by id for ``ids`` held, (id, payload) by seq for this kiosk's ``seqs`` held).
LookUp = Callable[[set[str], set[int]], tuple[dict[str, Payload], dict[int, tuple[str, Payload]]]]


def payload(kiosk_id: str, record: Identification) -> Payload:
    """The fields :data:`PAYLOAD_FIELDS` of a record, as comparable values."""
    return (
        kiosk_id,
        record.seq,
        record.format,
        record.contract,
        record.card_issue,
        record.scanned_at,
        bool(record.clock_synced),
        record.symbology,
        record.kind,
        record.current_issue,
    )


@dataclass(frozen=True)
class Conflict:
    """One record refused because another holds its key: for the conflicts table and the accounting."""

    kiosk: str
    seq: int
    id: str
    key: str  # ID_KEY or SEQ_KEY
    reason: str
    first_id: str  # the id of the record held under that key


@dataclass
class Judged:
    """A batch judged: one outcome per record in order, what was inserted, repeats by id, conflicts."""

    outcomes: list[Outcome]
    accepted_seqs: list[int] = field(default_factory=list)
    receipts: Counter[str] = field(default_factory=Counter)
    conflicts: list[Conflict] = field(default_factory=list)


def differing(a: Payload, b: Payload) -> list[str]:
    """The names of the payload fields in which ``a`` and ``b`` differ."""
    return [name for name, x, y in zip(PAYLOAD_FIELDS, a, b, strict=True) if x != y]


def id_conflict(fields: Iterable[str]) -> str:
    return f"conflict: this id is held with another {', '.join(fields)}"


def seq_conflict(fields: Iterable[str]) -> str:
    other = [f for f in fields if f != "seq"]
    return "conflict: this kiosk's seq is held under another id" + (f" (other {', '.join(other)})" if other else "")


def judge(kiosk_id: str, records: Sequence[Identification], insert: Insert, look_up: LookUp) -> Judged:
    """Insert what is new, and judge every record of ``records`` (all of ``kiosk_id``)."""
    outcomes: list[Outcome | None] = [None] * len(records)
    judged = Judged([])
    pending = list(range(len(records)))
    while pending:
        seen_ids: set[str] = set()
        seen_seqs: set[int] = set()
        candidates = []
        for i in pending:
            r = records[i]
            if r.id not in seen_ids and r.seq not in seen_seqs:
                candidates.append(i)
            seen_ids.add(r.id)
            seen_seqs.add(r.seq)
        inserted = insert([records[i] for i in candidates]) if candidates else set()
        for i in candidates:
            if records[i].id in inserted:
                outcomes[i] = Outcome(ACCEPTED)
                judged.accepted_seqs.append(records[i].seq)
        rest = [i for i in pending if outcomes[i] is None]
        if not rest:
            break
        by_id, by_seq = look_up({records[i].id for i in rest}, {records[i].seq for i in rest})
        deferred: list[int] = []
        deferred_ids: set[str] = set()
        deferred_seqs: set[int] = set()
        for i in rest:
            r = records[i]
            mine = payload(kiosk_id, r)
            if r.id in deferred_ids or r.seq in deferred_seqs:
                pass  # an earlier record with this key is still open: judge after it
            elif (held := by_id.get(r.id)) is not None:
                fields = differing(held, mine)
                if not fields:
                    outcomes[i] = Outcome(DUPLICATE)
                    judged.receipts[r.id] += 1
                    continue
                outcomes[i] = _refuse(judged, kiosk_id, r, ID_KEY, id_conflict(fields), r.id)
                continue
            elif r.seq in by_seq:
                first_id, held = by_seq[r.seq]
                outcomes[i] = _refuse(judged, kiosk_id, r, SEQ_KEY, seq_conflict(differing(held, mine)), first_id)
                continue
            # Nothing holds its keys, yet it was not inserted: an earlier record of the batch took
            # one and was refused itself. It is new: the next round inserts it.
            deferred.append(i)
            deferred_ids.add(r.id)
            deferred_seqs.add(r.seq)
        if len(deferred) == len(pending):
            raise RuntimeError("a batch made no progress: the store's insert and look-up disagree")
        pending = deferred
    judged.outcomes = [o for o in outcomes if o is not None]
    assert len(judged.outcomes) == len(records)
    return judged


def _refuse(judged: Judged, kiosk_id: str, r: Identification, key: str, reason: str, first_id: str) -> Outcome:
    judged.conflicts.append(Conflict(kiosk_id, r.seq, r.id, key, reason, first_id))
    return Outcome(REJECTED, reason)
