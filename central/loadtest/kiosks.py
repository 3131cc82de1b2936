"""Simulated kiosks: each its own id, site, token and outbox backlog of valid v1 identifications.

A :class:`SimulatedKiosk` holds what a real kiosk's outbox would: identifications numbered 1, 2, 3,
... without gaps (seq), each with a permanent UUID id, pending until an answer from the central
names them. Batches are taken from the head, at most the kiosk's ``api.batch_size`` (100) and never
more than the central takes (:data:`device.wire.MAX_BATCH`), as the forwarder takes them; records
picked for a resend (the client-side fault "a record is sent again in a later batch") go in the
next batch beside fresh ones::

    >>> fleet = build_fleet(shared_credentials(kiosk_ids("k", 2), "secret"), per_kiosk=3, seed=1)
    >>> [k.kiosk_id for k in fleet], [r["seq"] for r in fleet[0].next_batch(100).records]
    (['k-00000', 'k-00001'], [1, 2, 3])
    >>> fleet[0].acknowledged(fleet[0].next_batch(100), resend_rate=0.0, rng=random.Random(0)); fleet[0].has_work()
    False
"""

from __future__ import annotations

import random
import uuid
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import islice

from device.wire import MAX_BATCH


@dataclass(frozen=True)
class Credential:
    """A kiosk id and the bearer token it posts with (its own, or the fleet's shared one)."""

    kiosk_id: str
    token: str


@dataclass(frozen=True)
class Batch:
    """One request's records: ``fresh`` from the head of the backlog, then resends of acknowledged ones."""

    records: list[dict]
    fresh: int


def kiosk_ids(prefix: str, count: int) -> list[str]:
    """``count`` kiosk ids ``PREFIX-00000``..., unique per run when the prefix is (the runs can share a central)."""
    return [f"{prefix}-{i:05d}" for i in range(count)]


def shared_credentials(ids: Sequence[str], token: str) -> list[Credential]:
    """Every kiosk with the same token: the embedded default's ``--token`` (and the reference central's)."""
    return [Credential(kiosk_id, token) for kiosk_id in ids]


def new_record(seq: int, rng: random.Random) -> dict:
    """One valid v1 identification as a kiosk sends it (docs/openapi.yaml), with a fresh UUID id."""
    return {
        "id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        "seq": seq,
        "format": "v1",
        "contract": f"{rng.randrange(1, 10**10):010d}",
        "card_issue": 1,
        "scanned_at": datetime.now(UTC).isoformat(timespec="microseconds"),
        "clock_synced": True,
        "symbology": "Code128",
    }


class SimulatedKiosk:
    """One kiosk's outbox as the load test drives it: what it created, what is still pending.

    ``created`` is every identification this kiosk made (the verifier's list of what must be held);
    ``pending`` those no answer has named yet, oldest first; ``resends`` acknowledged ones picked to
    be sent once more. ``wake`` tells its delivery task that new identifications arrived (steady load).
    """

    def __init__(self, credential: Credential, site: str, rng: random.Random):
        self.kiosk_id = credential.kiosk_id
        self.token = credential.token
        self.site = site
        self.created: list[dict] = []
        self.pending: deque[dict] = deque()
        self.resends: list[dict] = []
        self._rng = rng
        self._next_seq = 1

    def commit(self, count: int) -> None:
        """``count`` new identifications, seqs following the last one, pending."""
        for _ in range(count):
            record = new_record(self._next_seq, self._rng)
            self._next_seq += 1
            self.created.append(record)
            self.pending.append(record)

    def has_work(self) -> bool:
        return bool(self.pending or self.resends)

    def next_batch(self, size: int) -> Batch:
        """The next request's records: pending ones in seq order first, resends after them."""
        fresh = list(islice(self.pending, min(size, MAX_BATCH)))
        resends = self.resends[: max(0, min(size, MAX_BATCH) - len(fresh))]
        return Batch(fresh + resends, len(fresh))

    def acknowledged(self, batch: Batch, *, resend_rate: float, rng: random.Random) -> None:
        """The central named every record of ``batch``: they leave the backlog; each fresh one is
        picked with probability ``resend_rate`` to be sent once more in a later batch."""
        for _ in range(batch.fresh):
            record = self.pending.popleft()
            if resend_rate and rng.random() < resend_rate:
                self.resends.append(record)
        sent_again = {r["id"] for r in batch.records[batch.fresh :]}
        self.resends = [r for r in self.resends if r["id"] not in sent_again]


def build_fleet(credentials: Sequence[Credential], per_kiosk: int, *, site: str = "load test", seed: int = 0) -> list[SimulatedKiosk]:
    """One :class:`SimulatedKiosk` per credential, each with a backlog of ``per_kiosk`` identifications."""
    rng = random.Random(seed)
    fleet = [SimulatedKiosk(c, site, random.Random(rng.getrandbits(64))) for c in credentials]
    for kiosk in fleet:
        kiosk.commit(per_kiosk)
    return fleet
