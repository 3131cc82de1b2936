"""The embedded store: one SQLite file (the demo, the tests, one machine).

A batch is one transaction committed before the HTTP answer goes out: an ``accepted`` the kiosk
reads is on disk (WAL, ``synchronous=FULL``). One connection behind a lock: SQLite serialises
writers anyway, and a second process on the same file waits up to 5 s for the write lock, then
gets :class:`~central.storage.StoreBusy` (503, the kiosk retries).

>>> from central.contract import Identification
>>> store = SqliteStore(":memory:")
>>> rec = Identification("3f1c0a52-6a3e-4c1e-9a57-0d3a1f2b9c10", 1, "0012345678", 1,
...                      "2024-05-02T09:15:00Z", True, "Code128")
>>> [o.status for o in store.record("k-1", "Riga 5", [rec, rec])]
['accepted', 'duplicate']
>>> store.identifications()[0]["receipts"], store.seqs_held("k-1", 10)["contiguous_through"]
(2, 1)
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

from central.contract import IDENTIFICATION, Identification
from central.storage import Outcome, StoreBusy, StoreError
from central.storage.accounting import FLEET_COLUMNS, GAPS, REUSED, SEQS_ABOVE, UPDATE_KIOSK, accounting, advance_contiguous, fleet_row
from central.storage.batch import LISTED_COLUMNS, SEQ_KEY, Payload, judge
from central.storage.card_issues import UPSERT_CARD_ISSUE, reissue_version
from central.storage.migrations import migrate_sqlite

#: The columns a new record is inserted with: the listed ones but its receipts (1), and its kind.
_INSERTED = (*(c for c in LISTED_COLUMNS if c != "receipts"), "kind", "current_issue")
_INSERT = f"INSERT INTO identifications ({', '.join(_INSERTED)}) VALUES ({', '.join('?' * len(_INSERTED))}) ON CONFLICT DO NOTHING"
_PAYLOAD_COLUMNS = "kiosk, seq, format, contract, card_issue, scanned_at, clock_synced, symbology, kind, current_issue"
# Ids are looked up in chunks: SQLite limits the number of "?" in one statement.
_LOOKUP_CHUNK = 500
_T = TypeVar("_T")


def _now() -> datetime:
    return datetime.now(UTC)


def _text(moment: datetime) -> str:
    """Timestamps are ISO text of one width (UTC, milliseconds), so they also compare as text."""
    return moment.isoformat(timespec="milliseconds")


def _row_payload(row: tuple) -> Payload:
    return (*row[:6], bool(row[6]), *row[7:])


class SqliteStore:
    """Identifications held by the central, in one SQLite file. Safe to share between threads.

    ``path`` may be ``":memory:"`` for doctests.
    """

    def __init__(self, path: str | Path):
        self.path = str(path)
        try:
            if self.path != ":memory:" and not Path(self.path).exists():
                # Contract numbers are personal data: the file is the owner's only (SQLite gives the
                # -wal and -shm files the same mode).
                os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600))
            self._lock = threading.Lock()
            # isolation_level=None: we issue BEGIN/COMMIT ourselves, so a batch is exactly one transaction.
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            # In WAL mode NORMAL may lose the last commits on power loss; an "accepted" must not be lost.
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA busy_timeout=5000")
            migrate_sqlite(self._db, self.path)
        except (sqlite3.Error, OSError) as e:
            raise StoreError(f"{self.path}: cannot open the SQLite database: {e}") from e

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """The connection inside ``BEGIN IMMEDIATE`` .. ``COMMIT`` (rolled back on any error)."""
        with self._lock, _busy_as_store_busy(self.path):
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
                self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise

    def _read(self, query: Callable[[sqlite3.Connection], _T]) -> _T:
        with self._lock, _busy_as_store_busy(self.path):
            return query(self._db)

    # --- batches -------------------------------------------------------------------------------------

    def record(self, kiosk_id: str, site: str, records: Sequence[Identification], *, version: str | None = None) -> list[Outcome]:
        """Store a batch in one transaction; one outcome per record (see :mod:`central.storage.batch`)."""
        now = _text(_now())
        with self._transaction() as db:
            row = db.execute("SELECT contiguous_through FROM kiosks WHERE kiosk = ?", (kiosk_id,)).fetchone()
            if row is None:
                db.execute("INSERT INTO kiosks (kiosk, site, first_contact, last_contact) VALUES (?, ?, ?, ?)", (kiosk_id, site, now, now))
            contiguous = row[0] if row else 0

            def insert(rows: list[Identification]) -> set[str]:
                inserted = set()
                for r in rows:
                    values = (r.id, r.seq, r.format, r.contract, r.card_issue, kiosk_id, site, r.scanned_at, int(r.clock_synced),
                              r.symbology, now, r.kind, r.current_issue)  # fmt: skip
                    if db.execute(_INSERT, values).rowcount == 1:
                        inserted.add(r.id)
                return inserted

            def look_up(ids: set[str], seqs: set[int]) -> tuple[dict[str, Payload], dict[int, tuple[str, Payload]]]:
                by_id: dict[str, Payload] = {}
                by_seq: dict[int, tuple[str, Payload]] = {}
                for chunk in _chunks(sorted(ids)):
                    marks = ",".join("?" * len(chunk))
                    for row in db.execute(f"SELECT id, {_PAYLOAD_COLUMNS} FROM identifications WHERE id IN ({marks})", chunk):
                        by_id[row[0]] = _row_payload(row[1:])
                for chunk in _chunks(sorted(seqs)):
                    marks = ",".join("?" * len(chunk))
                    query = f"SELECT id, {_PAYLOAD_COLUMNS} FROM identifications WHERE kiosk = ? AND seq IN ({marks})"
                    for row in db.execute(query, (kiosk_id, *chunk)):
                        by_seq[row[2]] = (row[0], _row_payload(row[1:]))
                return by_id, by_seq

            judged = judge(kiosk_id, records, insert, look_up)
            db.executemany("UPDATE identifications SET receipts = receipts + ? WHERE id = ?", [(n, i) for i, n in judged.receipts.items()])
            db.executemany(
                "INSERT INTO conflicts (kiosk, seq, id, key, reason, received_at, first_id) VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(c.kiosk, c.seq, c.id, c.key, c.reason, now, c.first_id) for c in judged.conflicts],
            )
            if contiguous + 1 in judged.accepted_seqs:
                seqs_above = _sql(SEQS_ABOVE)
                contiguous = advance_contiguous(
                    contiguous, lambda after, limit: [s for (s,) in db.execute(seqs_above, (kiosk_id, after, limit))]
                )
            db.execute(
                _sql(UPDATE_KIOSK).replace("GREATEST(", "MAX("),
                (site, now, version, max(judged.accepted_seqs, default=0), len(judged.accepted_seqs), contiguous,
                 sum(judged.receipts.values()), len(judged.conflicts), kiosk_id),
            )  # fmt: skip
        return judged.outcomes

    def identifications(self, kind: str = IDENTIFICATION) -> list[dict]:
        """Every record of ``kind`` held, in order of first arrival (a refusal also shows ``current_issue``)."""
        columns = LISTED_COLUMNS if kind == IDENTIFICATION else (*LISTED_COLUMNS, "current_issue")
        sql = f"SELECT {', '.join(columns)} FROM identifications WHERE kind = ? ORDER BY rowid"
        rows = self._read(lambda db: db.execute(sql, (kind,)).fetchall())
        out = [dict(zip(columns, row, strict=True)) for row in rows]
        for d in out:
            d["clock_synced"] = bool(d["clock_synced"])
        return out

    def conflicts(self, limit: int) -> list[dict]:
        """The latest records refused as conflicts, newest first."""
        columns = ("kiosk", "seq", "id", "reason", "received_at", "first_id")
        sql = f"SELECT {', '.join(columns)} FROM conflicts ORDER BY rowid DESC LIMIT ?"
        return [dict(zip(columns, row, strict=True)) for row in self._read(lambda db: db.execute(sql, (limit,)).fetchall())]

    # --- the replaced-card list ---------------------------------------------------------------------

    def reissue(self, contract: str, current_issue: int) -> tuple[int, bool]:
        """Record that ``contract``'s card is now at ``current_issue``: (the list version, whether it changed).

        The same issue again changes nothing (a PUT repeated); a lower one raises ValueError
        (issues only grow: a kiosk holding the higher one would never take it back)."""
        with self._transaction() as db:
            row = db.execute("SELECT current_issue FROM card_issues WHERE contract = ?", (contract,)).fetchone()
            version = self._list_version(db)
            new_version = reissue_version(row[0] if row else None, current_issue, version)
            if new_version is None:
                return version, False
            db.execute(UPSERT_CARD_ISSUE, (contract, current_issue, new_version))
        return new_version, True

    def reissue_many(self, rows: list[tuple[str, int]]) -> int:
        """Record many re-issues in one transaction, all under one new version (benchmarks, bulk loads); the version."""
        with self._transaction() as db:
            version = self._list_version(db) + 1
            db.executemany(
                "INSERT INTO card_issues (contract, current_issue, version) VALUES (?, ?, ?) "
                "ON CONFLICT (contract) DO UPDATE SET current_issue = max(current_issue, excluded.current_issue), "
                "version = excluded.version",
                [(c, i, version) for c, i in rows],
            )
        return version

    @staticmethod
    def _list_version(db: sqlite3.Connection) -> int:
        return db.execute("SELECT COALESCE(MAX(version), 0) FROM card_issues").fetchone()[0]

    def replaced_since(self, since: int) -> tuple[int, bool, list[tuple[str, int]]]:
        """(version, complete, [(contract, current issue)]): a delta of what changed after ``since``,
        or the complete list when ``since`` is 0 or newer than any version here."""

        def query(db: sqlite3.Connection) -> tuple[int, bool, list[tuple[str, int]]]:
            version = self._list_version(db)
            complete = since <= 0 or since > version
            where, params = ("", ()) if complete else (" WHERE version > ?", (since,))
            rows = db.execute(f"SELECT contract, current_issue FROM card_issues{where} ORDER BY contract", params).fetchall()
            return version, complete, rows

        return self._read(query)

    # --- accounting ----------------------------------------------------------------------------------

    def seqs_held(self, kiosk_id: str, max_gaps: int) -> dict:
        """One kiosk's accounting: its row in ``kiosks`` and an index range scan above its contiguous seq.

        ``gaps``: the missing ranges (the first ``max_gaps``); ``reused``: the seqs refused because
        the kiosk numbered another identification alike (the first ``max_gaps``); ``repeats``:
        deliveries beyond the first (retries answered ``duplicate``: harmless, counted once).
        """

        def query(db: sqlite3.Connection) -> dict:
            row = db.execute("SELECT held, highest_seq, contiguous_through, repeats, conflicts FROM kiosks WHERE kiosk = ?", (kiosk_id,))
            held, highest, contiguous, repeats, conflicts = row.fetchone() or (0, 0, 0, 0, 0)
            gaps = db.execute(_sql(GAPS), (contiguous, kiosk_id, contiguous, max_gaps + 1)).fetchall()
            reused = db.execute(_sql(REUSED), (kiosk_id, SEQ_KEY, max_gaps + 1)).fetchall()
            return accounting(kiosk_id, held, highest, contiguous, repeats, conflicts, gaps, [s for (s,) in reused], max_gaps)

        return self._read(query)

    def fleet(self) -> list[dict]:
        """Every kiosk's row of accounting, by kiosk id."""
        rows = self._read(lambda db: db.execute(f"SELECT {FLEET_COLUMNS} FROM kiosks ORDER BY kiosk").fetchall())
        return [fleet_row(row, _text) for row in rows]

    # --- tokens -------------------------------------------------------------------------------------

    def kiosk_of_token(self, token_hash: str) -> str | None:
        sql = "SELECT kiosk FROM tokens WHERE token_hash = ? AND (valid_until IS NULL OR valid_until > ?)"
        row = self._read(lambda db: db.execute(sql, (token_hash, _text(_now()))).fetchone())
        return row[0] if row else None

    def set_token(self, kiosk_id: str, token_hash: str, *, old_valid_s: float) -> int:
        now = _now()
        with self._transaction() as db:
            until = _text(now + timedelta(seconds=old_valid_s))
            valid = "kiosk = ? AND (valid_until IS NULL OR valid_until > ?)"
            earlier = db.execute(f"SELECT COUNT(*) FROM tokens WHERE {valid}", (kiosk_id, _text(now))).fetchone()[0]
            # A grace never lengthens a token's life: one already running out keeps its end.
            db.execute(
                f"UPDATE tokens SET valid_until = MIN(COALESCE(valid_until, ?), ?) WHERE {valid}", (until, until, kiosk_id, _text(now))
            )
            db.execute("INSERT INTO tokens (token_hash, kiosk, created_at) VALUES (?, ?, ?)", (token_hash, kiosk_id, _text(now)))
        return earlier

    def valid_tokens(self, kiosk_id: str) -> int:
        sql = "SELECT COUNT(*) FROM tokens WHERE kiosk = ? AND (valid_until IS NULL OR valid_until > ?)"
        return self._read(lambda db: db.execute(sql, (kiosk_id, _text(_now()))).fetchone()[0])

    def revoke_tokens(self, kiosk_id: str) -> int:
        now = _text(_now())
        with self._transaction() as db:
            return db.execute(
                "UPDATE tokens SET valid_until = ? WHERE kiosk = ? AND (valid_until IS NULL OR valid_until > ?)", (now, kiosk_id, now)
            ).rowcount

    def ping(self) -> None:
        self._read(lambda db: db.execute("SELECT 1").fetchone())

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _sql(statement: str) -> str:
    """A statement shared with PostgreSQL (``%s`` parameters) in SQLite's ``?`` style."""
    return statement.replace("%s", "?")


def _chunks(values: list[_T]) -> Iterator[list[_T]]:
    for start in range(0, len(values), _LOOKUP_CHUNK):
        yield values[start : start + _LOOKUP_CHUNK]


@contextmanager
def _busy_as_store_busy(path: str) -> Iterator[None]:
    """ "database is locked" (another process holds the write lock past busy_timeout): 503, retry later."""
    try:
        yield
    except sqlite3.OperationalError as e:
        if "locked" in str(e) or "busy" in str(e):
            raise StoreBusy(f"{path}: {e}") from e
        raise
