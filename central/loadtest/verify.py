"""After a run: does the central hold every identification sent exactly once, with no gap?

Read through the API only (so it checks any central): ``GET /v1/identifications`` with the admin
token, and each kiosk's ``GET /v1/kiosks/{kiosk}/seqs``. :func:`check` compares what the kiosks
created with what the central lists (only the rows of those kiosks: runs with other kiosk ids may
share the central) and with each kiosk's accounting; :func:`verify` fetches and checks, and raises
:class:`NotExactlyOnce` with the whole :class:`Verdict` if anything is off::

    verdict = verify(central_url, admin_token, fleet)       # raises NotExactlyOnce if not
    verdict.held == verdict.sent

>>> sent = [SentRecord("a", "k", 1), SentRecord("b", "k", 2)]
>>> check(sent, [{"id": "a", "kiosk": "k", "seq": 1}], {"k": {"highest": 1, "missing": 0, "gaps": [], "reused": []}}).missing
['b']
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from urllib.parse import quote

import aiohttp

from central.contract import IDENTIFICATIONS_PATH, KIOSK_SEQS_PATH
from central.loadtest.kiosks import SimulatedKiosk

#: Ids or kiosks named word for word in a verdict (each list is counted in full).
SHOWN = 20
#: Per-kiosk accounting requests in flight at once.
SEQS_CONCURRENCY = 32


@dataclass(frozen=True)
class SentRecord:
    """What the verifier needs of one identification a simulated kiosk created."""

    id: str
    kiosk_id: str
    seq: int


@dataclass(frozen=True)
class Verdict:
    """The central's holdings against what was sent. Lists show the first :data:`SHOWN`; the counts are whole.

    ``missing``: sent, not held. ``doubled``: ids listed more than once. ``seq_reused``: (kiosk, seq)
    held under more than one id. ``stray``: held for these kiosks, never sent. ``misplaced``: held
    under another kiosk or seq than sent. ``accounting``: kiosks whose ``/seqs`` shows a gap, a
    reused seq, or a highest seq other than the last one sent.
    """

    sent: int
    held: int
    kiosks: int
    missing_count: int = 0
    doubled_count: int = 0
    seq_reused_count: int = 0
    stray_count: int = 0
    misplaced_count: int = 0
    accounting_count: int = 0
    missing: list[str] = field(default_factory=list)
    doubled: list[str] = field(default_factory=list)
    seq_reused: list[str] = field(default_factory=list)
    stray: list[str] = field(default_factory=list)
    misplaced: list[str] = field(default_factory=list)
    accounting: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.sent == self.held and not (
            self.missing_count
            or self.doubled_count
            or self.seq_reused_count
            or self.stray_count
            or self.misplaced_count
            or self.accounting_count
        )

    def summary(self) -> str:
        """One line: held against sent, and each kind of problem with its count."""
        head = f"{self.held} held of {self.sent} sent by {self.kiosks} kiosks"
        kinds = (
            ("missing", self.missing_count, self.missing),
            ("doubled", self.doubled_count, self.doubled),
            ("seq held twice", self.seq_reused_count, self.seq_reused),
            ("never sent", self.stray_count, self.stray),
            ("under another kiosk or seq", self.misplaced_count, self.misplaced),
            ("accounting wrong", self.accounting_count, self.accounting),
        )
        problems = [f"{count} {name} (e.g. {', '.join(shown[:3])})" for name, count, shown in kinds if count]
        return head + (": exactly once, no gaps" if not problems else ": " + "; ".join(problems))


class NotExactlyOnce(AssertionError):
    """The central does not hold every identification sent exactly once; ``verdict`` says what is off."""

    def __init__(self, verdict: Verdict):
        super().__init__(verdict.summary())
        self.verdict = verdict


def sent_records(kiosks: Iterable[SimulatedKiosk]) -> list[SentRecord]:
    """Every identification the simulated kiosks created."""
    return [SentRecord(r["id"], k.kiosk_id, r["seq"]) for k in kiosks for r in k.created]


def check(sent: Sequence[SentRecord], listing: Sequence[Mapping], seqs: Mapping[str, Mapping]) -> Verdict:
    """Compare ``sent`` with the central's ``listing`` (rows of ``GET /v1/identifications``) and each
    kiosk's ``seqs`` (``GET /v1/kiosks/{kiosk}/seqs``, by kiosk id). Rows of other kiosks are ignored."""
    by_id = {s.id: s for s in sent}
    ours = {s.kiosk_id for s in sent}
    rows = [r for r in listing if r.get("kiosk") in ours]
    id_counts = Counter(str(r["id"]).lower() for r in rows)
    slot_counts = Counter((r["kiosk"], r["seq"]) for r in rows)
    missing = [s.id for s in sent if s.id not in id_counts]
    doubled = [i for i, n in id_counts.items() if n > 1]
    seq_reused = [f"{k}#{q}" for (k, q), n in slot_counts.items() if n > 1]
    stray = [i for i in id_counts if i not in by_id]
    misplaced = [i for r in rows if (i := str(r["id"]).lower()) in by_id and (r["kiosk"], r["seq"]) != (by_id[i].kiosk_id, by_id[i].seq)]
    last_seq: dict[str, int] = {}
    for s in sent:
        last_seq[s.kiosk_id] = max(last_seq.get(s.kiosk_id, 0), s.seq)
    accounting = []
    for kiosk_id, highest in sorted(last_seq.items()):
        held = seqs.get(kiosk_id)
        if held is None:
            accounting.append(f"{kiosk_id}: no accounting")
        elif held.get("highest") != highest or held.get("missing") or held.get("gaps") or held.get("reused"):
            accounting.append(
                f"{kiosk_id}: highest {held.get('highest')} (sent {highest}), missing {held.get('missing')}, reused {held.get('reused')}"
            )
    return Verdict(
        sent=len(sent),
        held=len(rows),
        kiosks=len(last_seq),
        missing_count=len(missing),
        doubled_count=len(doubled),
        seq_reused_count=len(seq_reused),
        stray_count=len(stray),
        misplaced_count=len(misplaced),
        accounting_count=len(accounting),
        missing=missing[:SHOWN],
        doubled=doubled[:SHOWN],
        seq_reused=seq_reused[:SHOWN],
        stray=stray[:SHOWN],
        misplaced=misplaced[:SHOWN],
        accounting=accounting[:SHOWN],
    )


#: How often one read is tried when the central answers 429 or 503.
BUSY_TRIES = 30


async def fetch_async(url: str, admin_token: str, kiosk_ids: Sequence[str]) -> tuple[list[dict], dict[str, dict]]:
    """The central's listing and each kiosk's accounting, through the API with ``admin_token``.

    A central that says "not now" (429, 503) is asked again after its ``Retry-After`` (at most
    :data:`BUSY_TRIES` times), as an operator's tool would: a saturated central is not a wrong one."""
    url = url.rstrip("/")
    headers = {"Authorization": f"Bearer {admin_token}", "Accept": "application/json"}
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=300)
    async with aiohttp.ClientSession(headers=headers, timeout=timeout, connector=aiohttp.TCPConnector(limit=SEQS_CONCURRENCY)) as session:

        async def get_json(path: str) -> dict:
            for _ in range(BUSY_TRIES - 1):
                async with session.get(url + path) as response:
                    if response.status not in (429, 503):
                        response.raise_for_status()
                        return await response.json()
                    wait = float(response.headers.get("Retry-After", "1") or 1)
                await asyncio.sleep(min(max(wait, 0.1), 10.0))
            async with session.get(url + path) as response:
                response.raise_for_status()
                return await response.json()

        listing = (await get_json(IDENTIFICATIONS_PATH))["identifications"]
        gate = asyncio.Semaphore(SEQS_CONCURRENCY)

        async def seqs_of(kiosk_id: str) -> tuple[str, dict]:
            async with gate:
                return kiosk_id, await get_json(KIOSK_SEQS_PATH.format(kiosk=quote(kiosk_id, safe="")))

        seqs = dict(await asyncio.gather(*(seqs_of(k) for k in kiosk_ids)))
    return listing, seqs


def verify(url: str, admin_token: str, kiosks: Sequence[SimulatedKiosk]) -> Verdict:
    """Fetch and :func:`check`; raise :class:`NotExactlyOnce` unless every identification is held exactly once, no gap."""
    listing, seqs = asyncio.run(fetch_async(url, admin_token, [k.kiosk_id for k in kiosks]))
    verdict = check(sent_records(kiosks), listing, seqs)
    if not verdict.ok:
        raise NotExactlyOnce(verdict)
    return verdict
