"""The reference central's SQLite store: each identification once, under its permanent id.

A batch is written in one transaction (``executemany``), committed before the HTTP answer goes
out: an ``accepted`` the kiosk reads is on disk (WAL, ``synchronous=FULL``). An id seen before is
a ``duplicate``: the stored record stays as first received, only its ``receipts`` count grows.

>>> store = Store(":memory:")
>>> rec = Identification("3f1c0a52-6a3e-4c1e-9a57-0d3a1f2b9c10", 1, "0012345678", 1,
...                      "2024-05-02T09:15:00Z", True, "Code128")
>>> [o.status for o in store.record("k-1", "Riga 5", [rec, rec])]
['accepted', 'duplicate']
>>> store.identifications()[0]["receipts"]
2
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

from central.contract import ACCEPTED, DUPLICATE, Identification
from central.storage import Outcome, StoreBusy

SCHEMA_VERSION = 3

_SCHEMA = """
CREATE TABLE IF NOT EXISTS identifications (
    id           TEXT PRIMARY KEY,      -- the kiosk's UUID, lower case: the permanent unique key
    seq          INTEGER NOT NULL,      -- the kiosk's gap-free sequence number
    format       TEXT NOT NULL,         -- card payload format ("v1", ...)
    contract     TEXT NOT NULL,
    card_issue   INTEGER,               -- NULL: the format has no card issue
    kiosk        TEXT NOT NULL,
    site         TEXT NOT NULL,
    scanned_at   TEXT NOT NULL,         -- as the kiosk sent it (ISO 8601 with offset)
    clock_synced INTEGER NOT NULL,
    symbology    TEXT NOT NULL,
    received_at  TEXT NOT NULL,         -- central's clock, UTC, first arrival
    receipts     INTEGER NOT NULL DEFAULT 1
)
"""
# For the per-kiosk accounting (GET /v1/kiosks/{kiosk}/seqs).
_INDEX = "CREATE INDEX IF NOT EXISTS identifications_kiosk_seq ON identifications (kiosk, seq)"
# The replaced-card list: each contract's current card issue, and the list version that set it
# (versions only grow, one per re-issue), so a delta since any version is one indexed query.
_CARDS = (
    "CREATE TABLE IF NOT EXISTS card_issues "
    "(contract TEXT PRIMARY KEY, current_issue INTEGER NOT NULL, version INTEGER NOT NULL) WITHOUT ROWID",
    "CREATE INDEX IF NOT EXISTS card_issues_version ON card_issues (version)",
)

_COLUMNS = (
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
#: A refusal (a replaced card shown at a kiosk) is stored beside the identifications, in the same
#: seq accounting, with its kind and the contract's current issue.
_REFUSAL_COLUMNS = ("kind", "current_issue")
IDENTIFICATION, REFUSAL = "identification", "refusal"


def _migrate_v2(db: sqlite3.Connection) -> None:
    """Version 2 held identifications only: every record stored is one."""
    db.execute(f"ALTER TABLE identifications ADD COLUMN kind TEXT NOT NULL DEFAULT '{IDENTIFICATION}'")
    db.execute("ALTER TABLE identifications ADD COLUMN current_issue INTEGER")


def _migrate_v1(db: sqlite3.Connection) -> None:
    """Version 1 had no format (every record was v1) and a NOT NULL card_issue: rebuild the table."""
    db.execute("ALTER TABLE identifications RENAME TO identifications_v1")
    db.execute(_SCHEMA)
    # rowid kept: it is the order of first arrival that GET /v1/identifications lists.
    values = ", ".join("'v1'" if c == "format" else c for c in _COLUMNS)
    db.execute(f"INSERT INTO identifications (rowid, {', '.join(_COLUMNS)}) SELECT rowid, {values} FROM identifications_v1")
    db.execute("DROP TABLE identifications_v1")


# Ids are looked up in chunks: SQLite limits the number of "?" in one statement.
_LOOKUP_CHUNK = 500


class Store:
    """Identifications held by the central, in one SQLite file. Safe to share between threads.

    One connection behind a lock: writes are serialised by SQLite anyway, and the reference server
    needs no more. ``path`` may be ``":memory:"`` for doctests.
    """

    def __init__(self, path: str | Path):
        self.path = str(path)
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
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise RuntimeError(f"{self.path}: schema version {version} is newer than this server ({SCHEMA_VERSION})")
        self._db.execute("BEGIN IMMEDIATE")
        try:
            if version == 1:
                _migrate_v1(self._db)
            if version in (1, 2):
                _migrate_v2(self._db)
            if version == 0:
                self._db.execute(_SCHEMA)
                _migrate_v2(self._db)
            self._db.execute(_INDEX)
            for statement in _CARDS:
                self._db.execute(statement)
            # Stand-in for central/storage/sqlite.py's tables until it lands: tokens by hash, last contact.
            self._db.execute("CREATE TABLE IF NOT EXISTS kiosk_tokens (hash TEXT PRIMARY KEY, kiosk TEXT NOT NULL, valid_until REAL)")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS kiosk_contact (kiosk TEXT PRIMARY KEY, site TEXT, version TEXT, last_contact TEXT)"
            )
            self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise

    def record(self, kiosk_id: str, site: str, records: list[Identification], *, version: str | None = None) -> list[Outcome]:
        """Store a batch; an ``accepted`` or ``duplicate`` :class:`Outcome` for each record, in order.

        A repeat of an id (from an earlier batch or earlier in this one) only adds a receipt.
        """
        received_at = datetime.now(UTC).isoformat(timespec="milliseconds")
        with self._lock:
            self._begin()
            try:
                known = self._known_ids([r.id for r in records])
                statuses, new_rows, repeats = [], [], []
                for r in records:
                    if r.id in known:
                        statuses.append(DUPLICATE)
                        repeats.append((r.id,))
                        continue
                    known.add(r.id)
                    statuses.append(ACCEPTED)
                    new_rows.append(
                        (r.id, r.seq, r.format, r.contract, r.card_issue, kiosk_id, site, r.scanned_at, int(r.clock_synced),
                         r.symbology, received_at, r.kind, r.current_issue)
                    )  # fmt: skip
                names = [*_COLUMNS[:-1], *_REFUSAL_COLUMNS]
                self._db.executemany(f"INSERT INTO identifications ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})", new_rows)
                self._db.executemany("UPDATE identifications SET receipts = receipts + 1 WHERE id = ?", repeats)
                self._db.execute(
                    "INSERT INTO kiosk_contact VALUES (?, ?, ?, ?) ON CONFLICT (kiosk) DO UPDATE SET site = excluded.site, "
                    "version = COALESCE(excluded.version, version), last_contact = excluded.last_contact",
                    (kiosk_id, site, version, received_at),
                )
                self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise
        return [Outcome(status) for status in statuses]

    def _begin(self) -> None:
        """BEGIN IMMEDIATE; StoreBusy when another writer holds the file past the busy timeout."""
        try:
            self._db.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as e:
            if "locked" in str(e) or "busy" in str(e):
                raise StoreBusy("the SQLite file is locked by another writer") from e
            raise

    def conflicts(self, limit: int) -> list[dict]:
        return []  # the stand-in keeps the first version of a record and reports no conflicts

    def fleet(self) -> list[dict]:
        """Every kiosk's last contact, site, version, and its accounting (a plain query: the stand-in)."""
        with self._lock:
            rows = self._db.execute("SELECT kiosk, site, version, last_contact FROM kiosk_contact ORDER BY kiosk").fetchall()
        out = []
        for kiosk, site, version, last_contact in rows:
            seqs = self.seqs_held(kiosk, 0)
            out.append({"kiosk": kiosk, "site": site, "version": version, "last_contact": last_contact, "highest": seqs["highest"],
                        "contiguous_through": seqs["contiguous_through"], "missing": seqs["missing"], "repeats": seqs["repeats"],
                        "conflicts": 0})  # fmt: skip
        return out

    def kiosk_of_token(self, token_hash: str) -> str | None:
        with self._lock:
            row = self._db.execute(
                "SELECT kiosk FROM kiosk_tokens WHERE hash = ? AND (valid_until IS NULL OR valid_until > ?)", (token_hash, time.time())
            ).fetchone()
        return row[0] if row else None

    def set_token(self, kiosk_id: str, token_hash: str, *, old_valid_s: float) -> int:
        now = time.time()
        with self._lock:
            self._begin()
            valid = self._db.execute(
                "UPDATE kiosk_tokens SET valid_until = ? WHERE kiosk = ? AND (valid_until IS NULL OR valid_until > ?)",
                (now + old_valid_s, kiosk_id, now),
            ).rowcount
            self._db.execute("INSERT INTO kiosk_tokens VALUES (?, ?, NULL)", (token_hash, kiosk_id))
            self._db.execute("COMMIT")
        return valid

    def revoke_tokens(self, kiosk_id: str) -> int:
        now = time.time()
        with self._lock:
            return self._db.execute(
                "UPDATE kiosk_tokens SET valid_until = ? WHERE kiosk = ? AND (valid_until IS NULL OR valid_until > ?)", (now, kiosk_id, now)
            ).rowcount

    def ping(self) -> None:
        with self._lock:
            self._db.execute("SELECT 1").fetchone()

    def _known_ids(self, ids: list[str]) -> set[str]:
        known: set[str] = set()
        unique = list(dict.fromkeys(ids))
        for start in range(0, len(unique), _LOOKUP_CHUNK):
            chunk = unique[start : start + _LOOKUP_CHUNK]
            marks = ",".join("?" * len(chunk))
            known.update(row[0] for row in self._db.execute(f"SELECT id FROM identifications WHERE id IN ({marks})", chunk))
        return known

    def identifications(self, kind: str = IDENTIFICATION) -> list[dict]:
        """Every identification held (``kind="refusal"``: every refusal), in order of first arrival,
        as ``GET /v1/identifications`` (``GET /v1/refusals``) lists them."""
        columns = _COLUMNS if kind == IDENTIFICATION else (*_COLUMNS, "current_issue")
        with self._lock:
            rows = self._db.execute(f"SELECT {', '.join(columns)} FROM identifications WHERE kind = ? ORDER BY rowid", (kind,)).fetchall()
        out = [dict(zip(columns, row, strict=True)) for row in rows]
        for d in out:
            d["clock_synced"] = bool(d["clock_synced"])
        return out

    # --- the replaced-card list -------------------------------------------------------------------

    def reissue(self, contract: str, current_issue: int) -> tuple[int, bool]:
        """Record that ``contract``'s card is now at ``current_issue``: (the list version, whether it changed).

        The same issue again changes nothing (a PUT repeated); a lower one raises ValueError
        (issues only grow: a kiosk holding the higher one would never take it back)."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                row = self._db.execute("SELECT current_issue FROM card_issues WHERE contract = ?", (contract,)).fetchone()
                version = self._list_version()
                if row is not None and row[0] >= current_issue:
                    self._db.execute("ROLLBACK")
                    if row[0] > current_issue:
                        raise ValueError(f"the contract's current issue is {row[0]}; an issue only grows")
                    return version, False
                version += 1
                self._db.execute(
                    "INSERT INTO card_issues (contract, current_issue, version) VALUES (?, ?, ?) "
                    "ON CONFLICT (contract) DO UPDATE SET current_issue = excluded.current_issue, version = excluded.version",
                    (contract, current_issue, version),
                )
                self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise
        return version, True

    def reissue_many(self, rows: list[tuple[str, int]]) -> int:
        """Record many re-issues in one transaction, all under one new version (benchmarks, bulk loads); the version."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                version = self._list_version() + 1
                self._db.executemany(
                    "INSERT INTO card_issues (contract, current_issue, version) VALUES (?, ?, ?) "
                    "ON CONFLICT (contract) DO UPDATE SET current_issue = max(current_issue, excluded.current_issue), "
                    "version = excluded.version",
                    [(c, i, version) for c, i in rows],
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return version

    def _list_version(self) -> int:
        return self._db.execute("SELECT COALESCE(MAX(version), 0) FROM card_issues").fetchone()[0]

    def replaced_since(self, since: int) -> tuple[int, bool, list[tuple[str, int]]]:
        """(version, complete, [(contract, current issue)]): a delta of what changed after ``since``,
        or the complete list when ``since`` is 0 or newer than any version here."""
        with self._lock:
            version = self._list_version()
            complete = since <= 0 or since > version
            where, params = ("", ()) if complete else (" WHERE version > ?", (since,))
            rows = self._db.execute(f"SELECT contract, current_issue FROM card_issues{where} ORDER BY contract", params).fetchall()
        return version, complete, rows

    def seqs_held(self, kiosk_id: str, max_gaps: int) -> dict:
        """Which of a kiosk's seqs the central holds, for end-to-end accounting.

        A kiosk numbers its identifications 1, 2, 3, ... without gaps, so what the central holds
        below the highest seq should be every seq: ``contiguous_through`` is the highest seq up to
        which all are held, ``gaps`` the missing ranges (the first ``max_gaps``), ``missing`` how
        many seqs are missing in all, ``reused`` the seqs held under more than one id (the kiosk
        numbered two identifications alike), ``repeats`` deliveries beyond the first (retries
        answered ``duplicate``: harmless, counted once).

        >>> store = Store(":memory:")
        >>> store.seqs_held("k-1", 10)["highest"]
        0
        """
        with self._lock:
            held, highest, distinct, repeats = self._db.execute(
                "SELECT COUNT(*), COALESCE(MAX(seq), 0), COUNT(DISTINCT seq), COALESCE(SUM(receipts - 1), 0) "
                "FROM identifications WHERE kiosk = ?",
                (kiosk_id,),
            ).fetchone()
            gaps = self._db.execute(
                "SELECT prev + 1, seq - 1 FROM (SELECT seq, LAG(seq, 1, 0) OVER (ORDER BY seq) AS prev "
                "FROM (SELECT DISTINCT seq FROM identifications WHERE kiosk = ?)) WHERE seq > prev + 1 ORDER BY seq LIMIT ?",
                (kiosk_id, max_gaps + 1),
            ).fetchall()
            reused = self._db.execute(
                "SELECT seq FROM identifications WHERE kiosk = ? GROUP BY seq HAVING COUNT(*) > 1 ORDER BY seq LIMIT ?",
                (kiosk_id, max_gaps + 1),
            ).fetchall()
        return {
            "kiosk": kiosk_id,
            "held": held,
            "highest": highest,
            "contiguous_through": gaps[0][0] - 1 if gaps else highest,
            "missing": highest - distinct,
            "gaps": [{"first": a, "last": b} for a, b in gaps[:max_gaps]],
            "gaps_truncated": len(gaps) > max_gaps,
            "reused": [seq for (seq,) in reused[:max_gaps]],
            "repeats": repeats,
        }

    def close(self) -> None:
        with self._lock:
            self._db.close()
