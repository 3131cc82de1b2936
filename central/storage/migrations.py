"""The central's schema, versioned: numbered migrations, each applied once, in order, at open.

Each store keeps ``schema_migrations (version, name, applied_at)``; a migration runs in its own
transaction together with its row there, so a process killed mid-way leaves the database at the
last whole version. On PostgreSQL each runs under ``pg_advisory_xact_lock``: several worker
processes opening the database at once apply each migration once, the others wait and skip it.
A database newer than this code is refused (:class:`~central.storage.StoreError` naming both
versions): an older central must not write around tables it does not know.

SQLite files made before these migrations (the store of ``PRAGMA user_version`` 1 to 3) are
brought to version 1 first; their ``user_version`` is then set to ``100 + version``, so that the
old store, which refuses a ``user_version`` above 3, refuses the migrated file too.

>>> [(m.version, m.name) for m in MIGRATIONS][:2]
[(1, 'identifications, refusals and the replaced-card list'), (2, 'one record per kiosk seq: conflicts set apart')]
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from central.storage import StoreError

#: Added to the schema version in a SQLite file's user_version (see the module's docstring).
SQLITE_USER_VERSION_BASE = 100
#: pg_advisory_xact_lock's key for schema changes (the bytes of "kiosk").
PG_LOCK_KEY = int.from_bytes(b"kiosk", "big")


@dataclass(frozen=True)
class Migration:
    """One schema step: how SQLite takes it (a function, for the old files' rebuilds) and PostgreSQL
    (its statements)."""

    version: int
    name: str
    sqlite: Callable[[sqlite3.Connection], None]
    postgresql: tuple[str, ...]


# --- version 1: the schema of the store before migrations (SQLite's user_version 3) ----------------

_SQLITE_IDENTIFICATIONS = """
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
_OLD_COLUMNS = "id, seq, format, contract, card_issue, kiosk, site, scanned_at, clock_synced, symbology, received_at, receipts"
# The replaced-card list: each contract's current card issue, and the list version that set it
# (versions only grow, one per re-issue), so a delta since any version is one indexed query.
_SQLITE_CARDS = (
    "CREATE TABLE IF NOT EXISTS card_issues "
    "(contract TEXT PRIMARY KEY, current_issue INTEGER NOT NULL, version INTEGER NOT NULL) WITHOUT ROWID",
    "CREATE INDEX IF NOT EXISTS card_issues_version ON card_issues (version)",
)


def _add_kinds(db: sqlite3.Connection) -> None:
    """user_version 2 held identifications only: every record stored is one."""
    db.execute("ALTER TABLE identifications ADD COLUMN kind TEXT NOT NULL DEFAULT 'identification'")
    db.execute("ALTER TABLE identifications ADD COLUMN current_issue INTEGER")


def _sqlite_1(db: sqlite3.Connection) -> None:
    legacy = db.execute("PRAGMA user_version").fetchone()[0]
    if legacy > 3:
        raise StoreError(f"PRAGMA user_version is {legacy} but the file has no schema_migrations: not a central's database")
    if legacy == 1:
        # No format (every record was v1) and a NOT NULL card_issue: rebuild the table, rowids kept
        # (they are the order of first arrival the listing keeps).
        db.execute("ALTER TABLE identifications RENAME TO identifications_v1")
        db.execute(_SQLITE_IDENTIFICATIONS)
        values = _OLD_COLUMNS.replace("format", "'v1'")
        db.execute(f"INSERT INTO identifications (rowid, {_OLD_COLUMNS}) SELECT rowid, {values} FROM identifications_v1")
        db.execute("DROP TABLE identifications_v1")
    if legacy == 0:
        db.execute(_SQLITE_IDENTIFICATIONS)
    if legacy in (0, 1, 2):
        _add_kinds(db)
    for statement in _SQLITE_CARDS:
        db.execute(statement)


_PG_1 = (
    """CREATE TABLE identifications (
        arrival      bigint GENERATED ALWAYS AS IDENTITY,  -- the order of first arrival (listings)
        id           text PRIMARY KEY,
        seq          bigint NOT NULL,
        format       text NOT NULL,
        contract     text NOT NULL,
        card_issue   integer,
        kiosk        text NOT NULL,
        site         text NOT NULL,
        scanned_at   text NOT NULL,          -- as the kiosk sent it: compared byte for byte on a repeat
        clock_synced boolean NOT NULL,
        symbology    text NOT NULL,
        received_at  timestamptz NOT NULL,
        receipts     integer NOT NULL DEFAULT 1,
        kind         text NOT NULL DEFAULT 'identification',
        current_issue integer
    )""",
    "CREATE INDEX identifications_arrival ON identifications (kind, arrival)",
    "CREATE TABLE card_issues (contract text PRIMARY KEY, current_issue integer NOT NULL, version bigint NOT NULL)",
    "CREATE INDEX card_issues_version ON card_issues (version)",
)

# --- version 2: unique (kiosk, seq); what broke it is set apart as conflicts ------------------------

_SQLITE_CONFLICTS = """
CREATE TABLE conflicts (
    kiosk       TEXT NOT NULL,     -- the kiosk that sent the refused record
    seq         INTEGER NOT NULL,
    id          TEXT NOT NULL,
    key         TEXT NOT NULL,     -- 'id' or 'seq': which of its keys another record holds
    reason      TEXT NOT NULL,     -- names the fields that differ, never their values
    received_at TEXT NOT NULL,
    first_id    TEXT NOT NULL      -- the record held under that key
)"""
_MOVED = "conflict: this kiosk's seq is held under another id (set apart when the store was migrated)"


def _sqlite_2(db: sqlite3.Connection) -> None:
    db.execute(_SQLITE_CONFLICTS)
    db.execute("CREATE INDEX conflicts_kiosk_seq ON conflicts (kiosk, key, seq)")
    # A seq the old store held under two ids: the first arrival stays, the later ones are set apart
    # (kept whole in conflicts_migrated: nothing is deleted silently), so the unique index can be built.
    later = "SELECT i.rowid FROM identifications i JOIN identifications f ON f.kiosk = i.kiosk AND f.seq = i.seq AND f.rowid < i.rowid"
    if db.execute(f"SELECT COUNT(*) FROM ({later})").fetchone()[0]:
        db.execute(f"CREATE TABLE conflicts_migrated AS SELECT rowid AS arrival, * FROM identifications WHERE rowid IN ({later})")
        db.execute(
            "INSERT INTO conflicts (kiosk, seq, id, key, reason, received_at, first_id) "
            "SELECT m.kiosk, m.seq, m.id, 'seq', ?, m.received_at, "
            "(SELECT f.id FROM identifications f WHERE f.kiosk = m.kiosk AND f.seq = m.seq ORDER BY f.rowid LIMIT 1) "
            "FROM conflicts_migrated m ORDER BY m.arrival",
            (_MOVED,),
        )
        db.execute(f"DELETE FROM identifications WHERE rowid IN ({later})")
    db.execute("DROP INDEX IF EXISTS identifications_kiosk_seq")
    db.execute("CREATE UNIQUE INDEX identifications_kiosk_seq ON identifications (kiosk, seq)")


_PG_2 = (
    """CREATE TABLE conflicts (
        arrival     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        kiosk       text NOT NULL,
        seq         bigint NOT NULL,
        id          text NOT NULL,
        key         text NOT NULL,
        reason      text NOT NULL,
        received_at timestamptz NOT NULL,
        first_id    text NOT NULL
    )""",
    "CREATE INDEX conflicts_kiosk_seq ON conflicts (kiosk, key, seq)",
    "CREATE UNIQUE INDEX identifications_kiosk_seq ON identifications (kiosk, seq)",
)

# --- version 3: one row of accounting per kiosk, kept with each batch -------------------------------

# contiguous_through: the seq before the first gap (a LAG over the kiosk's seqs), else the highest.
_CONTIGUOUS = (
    "COALESCE((SELECT g.prev FROM (SELECT seq, LAG(seq, 1, 0) OVER (ORDER BY seq) AS prev FROM identifications j "
    "WHERE j.kiosk = i.kiosk) g WHERE g.seq > g.prev + 1 ORDER BY g.seq LIMIT 1), MAX(i.seq))"
)
_FILL_KIOSKS = (
    "INSERT INTO kiosks (kiosk, site, first_contact, last_contact, highest_seq, held, contiguous_through, repeats, conflicts) "
    "SELECT i.kiosk, (SELECT s.site FROM identifications s WHERE s.kiosk = i.kiosk ORDER BY s.{order} DESC LIMIT 1), "
    f"MIN(i.received_at), MAX(i.received_at), MAX(i.seq), COUNT(*), {_CONTIGUOUS}, SUM(i.receipts - 1), "
    "(SELECT COUNT(*) FROM conflicts c WHERE c.kiosk = i.kiosk) FROM identifications i GROUP BY i.kiosk"
)


def _sqlite_3(db: sqlite3.Connection) -> None:
    db.execute(
        """CREATE TABLE kiosks (
            kiosk              TEXT PRIMARY KEY,
            site               TEXT NOT NULL,      -- as the kiosk last reported it
            first_contact      TEXT NOT NULL,
            last_contact       TEXT NOT NULL,
            version            TEXT,               -- the version the kiosk last reported (User-Agent)
            highest_seq        INTEGER NOT NULL DEFAULT 0,
            held               INTEGER NOT NULL DEFAULT 0,
            contiguous_through INTEGER NOT NULL DEFAULT 0,
            repeats            INTEGER NOT NULL DEFAULT 0,
            conflicts          INTEGER NOT NULL DEFAULT 0
        ) WITHOUT ROWID"""
    )
    db.execute(_FILL_KIOSKS.format(order="rowid"))


_PG_3 = (
    """CREATE TABLE kiosks (
        kiosk              text PRIMARY KEY,
        site               text NOT NULL,
        first_contact      timestamptz NOT NULL,
        last_contact       timestamptz NOT NULL,
        version            text,
        highest_seq        bigint NOT NULL DEFAULT 0,
        held               bigint NOT NULL DEFAULT 0,
        contiguous_through bigint NOT NULL DEFAULT 0,
        repeats            bigint NOT NULL DEFAULT 0,
        conflicts          bigint NOT NULL DEFAULT 0
    )""",
    _FILL_KIOSKS.format(order="arrival").replace("LAG(seq, 1, 0)", "LAG(seq, 1, 0::bigint)"),
)

# --- version 4: per-kiosk tokens, by hash ---------------------------------------------------------


def _sqlite_4(db: sqlite3.Connection) -> None:
    db.execute(
        "CREATE TABLE tokens (token_hash TEXT PRIMARY KEY, kiosk TEXT NOT NULL, created_at TEXT NOT NULL, "
        "valid_until TEXT)  -- NULL: until rotated or revoked"
    )
    db.execute("CREATE INDEX tokens_kiosk ON tokens (kiosk)")


_PG_4 = (
    "CREATE TABLE tokens (token_hash text PRIMARY KEY, kiosk text NOT NULL, created_at timestamptz NOT NULL, valid_until timestamptz)",
    "CREATE INDEX tokens_kiosk ON tokens (kiosk)",
)

MIGRATIONS = (
    Migration(1, "identifications, refusals and the replaced-card list", _sqlite_1, _PG_1),
    Migration(2, "one record per kiosk seq: conflicts set apart", _sqlite_2, _PG_2),
    Migration(3, "accounting per kiosk", _sqlite_3, _PG_3),
    Migration(4, "per-kiosk tokens", _sqlite_4, _PG_4),
)
LATEST = MIGRATIONS[-1].version


def _too_new(where: str, version: int) -> StoreError:
    return StoreError(f"{where}: the database's schema is version {version}, newer than this central's ({LATEST}): upgrade the central")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def migrate_sqlite(db: sqlite3.Connection, where: str) -> None:
    """Bring a SQLite file (``db`` in autocommit mode, ``isolation_level=None``) to :data:`LATEST`."""
    for migration in MIGRATIONS:
        db.execute("BEGIN IMMEDIATE")  # the write lock first: another process may be migrating too
        try:
            db.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"
            )
            newest = db.execute("SELECT COALESCE(MAX(version), 0) FROM schema_migrations").fetchone()[0]
            if newest > LATEST:
                raise _too_new(where, newest)
            if newest < migration.version:
                migration.sqlite(db)
                db.execute("INSERT INTO schema_migrations VALUES (?, ?, ?)", (migration.version, migration.name, _now()))
                db.execute(f"PRAGMA user_version = {SQLITE_USER_VERSION_BASE + migration.version}")
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise


def migrate_postgresql(conn: Any, where: str) -> None:
    """Bring a PostgreSQL database (``conn``: a psycopg connection in autocommit mode) to :data:`LATEST`."""
    for migration in MIGRATIONS:
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (PG_LOCK_KEY,))
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations "
                "(version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            newest = conn.execute("SELECT COALESCE(MAX(version), 0) FROM schema_migrations").fetchone()[0]
            if newest > LATEST:
                raise _too_new(where, newest)
            if newest < migration.version:
                for statement in migration.postgresql:
                    conn.execute(statement)
                conn.execute("INSERT INTO schema_migrations (version, name) VALUES (%s, %s)", (migration.version, migration.name))
