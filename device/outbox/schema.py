"""The outbox's schema and its migrations (``PRAGMA user_version``).

A migration is a function that moves the schema up by one version; the store runs each in its
own write transaction together with the version bump. Add new ones at the end only.

The store talks to SQLite through a raw sqlite3 connection: its transactions are explicit
(BEGIN IMMEDIATE ... COMMIT, see ``Outbox._write``) and must not run under a wrapper that may
commit behind them; and ``kiosk queue`` must not pay for sqlite-utils' numpy import. sqlite-utils
serves where a schema is looked at, not written: tests inspect the migrated tables with it.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable

from device.outbox.checksum import FIELDS, record_checksum

#: The identification columns of schemas v1 and v2 (the migrations below copy exactly these).
V1_COLUMNS = [
    "id", "seq", "kiosk_id", "site", "format", "contract", "card_issue", "scanned_at", "clock_synced",
    "symbology", "decoder", "state", "attempts", "next_attempt_at", "last_error", "dead_reason",
    "delivered_at", "updated_at",
]  # fmt: skip
#: The identification columns now, in :class:`~device.outbox.Identification` field order.
COLUMNS = [*V1_COLUMNS, "checksum", "quarantine_reason", "kind", "current_issue", "pos_outcome"]


def _v1_create(db: sqlite3.Connection) -> None:
    db.execute(
        """
        CREATE TABLE identifications (
            id              TEXT PRIMARY KEY,          -- UUID, made once at commit: the key at the central
            seq             INTEGER NOT NULL,          -- per kiosk, gap-free, from the sequences table
            kiosk_id        TEXT NOT NULL,
            site            TEXT NOT NULL,
            format          TEXT NOT NULL,             -- card payload format (spec v1 is "v1")
            contract        TEXT NOT NULL,
            card_issue      INTEGER NOT NULL,
            scanned_at      TEXT NOT NULL,             -- UTC wall time; trusted only if clock_synced
            clock_synced    INTEGER NOT NULL,
            symbology       TEXT NOT NULL,
            decoder         TEXT NOT NULL,
            state           TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'delivered', 'dead')),
            attempts        INTEGER NOT NULL DEFAULT 0,
            next_attempt_at TEXT,                      -- UTC wall time; NULL: due now
            last_error      TEXT,
            dead_reason     TEXT,
            delivered_at    TEXT,
            updated_at      TEXT NOT NULL,
            UNIQUE (kiosk_id, seq)
        )
        """
    )
    db.execute("CREATE INDEX identifications_state_seq ON identifications (state, seq)")
    # The last sequence number per kiosk: purging delivered records must never let a number come back.
    db.execute("CREATE TABLE sequences (kiosk_id TEXT PRIMARY KEY, last_seq INTEGER NOT NULL)")


def _rebuild(db: sqlite3.Connection, create: str, columns: list[str], values: list[str] | None = None) -> None:
    """Replace the identifications table by the one ``create`` makes, every row, id and seq kept.

    SQLite cannot change a column's constraints in place: the table is rebuilt (the documented
    12-step way, https://sqlite.org/lang_altertable.html#otheralter) inside the migration's
    transaction. ``columns`` are copied from the old table (``values``: the expressions filling
    them, default the same names). Nothing references the table, so foreign keys need no care.
    Done in SQL rather than with sqlite-utils' ``Table.transform``, which would be the only reason
    to load sqlite-utils (and numpy) into the daemon.
    """
    # After a rebuild's RENAME, SQLite stores the statement as CREATE TABLE "identifications".
    new, renamed = re.subn(r'^CREATE TABLE\s+("?)identifications\1\s*\(', "CREATE TABLE identifications_new (", create.strip(), count=1)
    if not renamed:
        raise sqlite3.DatabaseError("identifications table definition not recognised: cannot migrate")
    db.execute(new)
    db.execute(f"INSERT INTO identifications_new ({', '.join(columns)}) SELECT {', '.join(values or columns)} FROM identifications")
    db.execute("DROP TABLE identifications")
    db.execute("ALTER TABLE identifications_new RENAME TO identifications")
    db.execute("CREATE INDEX identifications_state_seq ON identifications (state, seq)")


def _v2_card_issue_nullable(db: sqlite3.Connection) -> None:
    """card_issue may be NULL: a card format may have no issue number."""
    (create,) = db.execute("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'identifications'").fetchone()
    new = create.replace(
        "card_issue      INTEGER NOT NULL,", "card_issue      INTEGER,                   -- NULL: the format has no issue number"
    )
    if new == create:
        raise sqlite3.DatabaseError("identifications table not as schema v1 wrote it: cannot migrate card_issue")
    _rebuild(db, new, V1_COLUMNS)


def _v3_checksums_and_quarantine(db: sqlite3.Connection) -> None:
    """Each record gets the checksum of what is sent (:mod:`device.outbox.checksum`), computed here
    for the records already stored; the state ``quarantined`` (with its reason) holds records
    whose checksum fails; ``integrity_log`` keeps what the outbox found wrong with itself, and
    ``salvaged_files`` the damaged files already copied from (:mod:`device.outbox.salvage`)."""
    (create,) = db.execute("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'identifications'").fetchone()
    state = "CHECK (state IN ('pending', 'delivered', 'dead'))"
    tail = "updated_at      TEXT NOT NULL,"
    if state not in create or tail not in create:
        raise sqlite3.DatabaseError("identifications table not as schema v2 wrote it: cannot add checksums")
    new = create.replace(state, "CHECK (state IN ('pending', 'delivered', 'dead', 'quarantined'))").replace(
        tail,
        f"{tail}\n            checksum        TEXT NOT NULL,             -- device.outbox.checksum over every field sent"
        "\n            quarantine_reason TEXT,                    -- why a quarantined record is never sent",
    )
    db.create_function(
        "record_checksum", len(FIELDS), lambda *values: record_checksum(dict(zip(FIELDS, values, strict=True))), deterministic=True
    )
    _rebuild(db, new, [*V1_COLUMNS, "checksum"], [*V1_COLUMNS, f"record_checksum({', '.join(FIELDS)})"])
    db.execute(
        """
        CREATE TABLE integrity_log (
            id              INTEGER PRIMARY KEY,
            found_at        TEXT NOT NULL,             -- UTC wall time
            kind            TEXT NOT NULL,             -- lost, salvaged, quarantined, mark-unreadable
            message         TEXT NOT NULL,             -- for status and the fault, e.g. "outbox lost 75 ..."
            acknowledged_at TEXT                       -- kiosk queue ack; NULL: still a fault
        )
        """
    )
    # Damaged files moved aside whose records were copied in: each is salvaged once, and one left
    # unsalvaged (a crash during the salvage, a file moved aside before v3) is salvaged at the next start.
    db.execute("CREATE TABLE salvaged_files (name TEXT PRIMARY KEY, salvaged_at TEXT NOT NULL)")


def _v4_refusals(db: sqlite3.Connection) -> None:
    """A record is an identification or a refusal (a replaced card shown: device.revocations), the
    latter with the contract's current issue. Added columns, no rebuild: every stored record is an
    identification, and its checksum stays as it was (device.outbox.checksum)."""
    db.execute(
        "ALTER TABLE identifications ADD COLUMN kind TEXT NOT NULL DEFAULT 'identification' CHECK (kind IN ('identification', 'refusal'))"
    )
    db.execute("ALTER TABLE identifications ADD COLUMN current_issue INTEGER")


def _v5_pos_outcome(db: sqlite3.Connection) -> None:
    """What became of the identification's hand-off to the counter's POS (device.outputs.pos):
    ``handed over``, ``POS offline`` or ``too old``; NULL when none was tried (``pos.output = "none"``,
    a refusal, a record older than this column, or a hand-off still waiting its turn). Not sent to
    the central and not covered by the checksum: the POS's answer is the kiosk's own record."""
    db.execute("ALTER TABLE identifications ADD COLUMN pos_outcome TEXT")


MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [
    _v1_create, _v2_card_issue_nullable, _v3_checksums_and_quarantine, _v4_refusals, _v5_pos_outcome,
]  # fmt: skip
#: The schema version this code writes (PRAGMA user_version).
SCHEMA_VERSION = len(MIGRATIONS)
