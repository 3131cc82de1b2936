"""Salvage: copy what still reads from a damaged outbox, moved aside, into the new one.

When the outbox fails its integrity check at start it is moved aside (``outbox.db.corrupt-<time>``,
with its WAL) and a new one started; the records in it must not be lost with it. The moved-aside
file is opened read-only (it stays as it was, for the technician) and read record by record: a
scan in rowid order, and where a damaged page stops the scan, one rowid at a time until the scan
can go on. Every record that reads and whose checksum (:mod:`device.outbox.checksum`) matches is
copied with its id, seq, state and checksum, so pending ones are delivered under the ids and seqs
the central may already know; the others are counted as not recovered::

    report = salvage_into(new_db, Path("/var/lib/kiosk/outbox.db.corrupt-20240502T091500Z"), expected_rows=150)
    report.message()   # "outbox salvaged 148 of 150 records from outbox.db.corrupt-...; 2 could not be read ..."

Records from a file older than schema v3 have no checksum to verify: they get one computed here
(as the v3 migration does) and count as recovered if they satisfy the schema's constraints.
"""

from __future__ import annotations

import logging
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator
from urllib.parse import quote

from device.outbox.checksum import FIELDS, checksum_problem, record_checksum
from device.outbox.schema import COLUMNS

log = logging.getLogger(__name__)


@dataclass
class SalvageReport:
    """What :func:`salvage_into` copied from ``source``."""

    source: Path
    recovered: int = 0
    #: Rows that did not read (a damaged page), failed their checksum or did not fit the schema.
    not_recovered: int = 0
    #: Highest seq per kiosk id the damaged file knew (its sequences table and the rows copied).
    last_seqs: dict[str, int] = field(default_factory=dict)
    #: Why nothing at all could be read, if so.
    unreadable: str | None = None

    def message(self) -> str:
        """The line for status and the fault."""
        total = self.recovered + self.not_recovered
        text = f"outbox salvaged {self.recovered} of {total} records from {self.source.name}"
        if self.not_recovered:
            text += f"; {self.not_recovered} could not be read or failed their checksum (never sent)"
        if self.unreadable:
            text += f"; nothing readable in it: {self.unreadable}"
        return text


def salvage_into(db: sqlite3.Connection, source: Path, *, expected_rows: int = 0) -> SalvageReport:
    """Copy the readable, verified records of the damaged outbox ``source`` into ``db``.

    ``db`` is the new outbox, in a write transaction the caller commits. ``expected_rows``: how
    many rows the file may hold at most (the high-water mark's seqs, summed), so that a damaged
    table whose end cannot be found is still read to its end.
    """
    report = SalvageReport(source)
    try:
        old = sqlite3.connect(f"file:{quote(str(source))}?mode=ro", uri=True)
    except sqlite3.Error as e:
        report.unreadable = str(e)
        return report
    try:
        try:
            columns = [row[1] for row in old.execute("PRAGMA table_info(identifications)")]
            if not columns:
                raise sqlite3.DatabaseError("no identifications table")
        except sqlite3.DatabaseError as e:
            report.unreadable = str(e)
            return report
        report.last_seqs = _old_sequences(old)
        copied = [c for c in COLUMNS if c in columns]
        bound = max(_max_rowid(old), sum(report.last_seqs.values()), expected_rows)
        for values in _readable_rows(old, copied, bound):
            record = None if values is None else dict(zip(copied, values))
            if record is None or not _copy(db, record):
                report.not_recovered += 1
                continue
            report.recovered += 1
            report.last_seqs[record["kiosk_id"]] = max(report.last_seqs.get(record["kiosk_id"], 0), record["seq"])
        _copy_integrity_log(old, db)
    finally:
        old.close()
    return report


def _copy(db: sqlite3.Connection, record: dict) -> bool:
    """Insert one salvaged record if its checksum (or, from before v3, the schema) vouches for it."""
    if "checksum" in record:
        problem = checksum_problem(record, record["checksum"])
        if problem is not None:
            log.warning("salvage: identification seq %r not recovered: %s", record.get("seq"), problem)
            return False
    else:
        try:
            record["checksum"] = record_checksum(record)
        except (KeyError, TypeError, ValueError):
            return False
    if not isinstance(record.get("seq"), int) or any(record.get(name) is None for name in FIELDS if name != "card_issue"):
        return False
    names = list(record)
    try:
        db.execute(f"INSERT INTO identifications ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})", [record[n] for n in names])
    except sqlite3.IntegrityError as e:  # a state no schema allows, a repeated id or seq: garbage
        log.warning("salvage: identification seq %r not recovered: %s", record.get("seq"), e)
        return False
    return True


def _readable_rows(old: sqlite3.Connection, columns: list[str], bound: int) -> Iterator[tuple | None]:
    """Every row's values in rowid order, and None for each rowid that could not be read.

    A scan from the last good rowid goes as far as the b-tree lets it; where a damaged page stops
    it, rowids are tried one at a time (each a fresh descent from the root, which reaches the
    pages the damage does not cover) until a scan can go on, up to ``bound``.
    """
    names = ", ".join(columns)
    after = 0
    while True:
        try:
            for rowid, *values in old.execute(f"SELECT rowid, {names} FROM identifications WHERE rowid > ? ORDER BY rowid", [after]):
                after = rowid
                yield tuple(values)
            return
        except sqlite3.DatabaseError:
            pass
        after += 1
        if after > bound:
            return
        try:
            row = old.execute(f"SELECT {names} FROM identifications WHERE rowid = ?", [after]).fetchone()
        except sqlite3.DatabaseError:
            yield None
            continue
        if row is not None:
            yield row


def _max_rowid(old: sqlite3.Connection) -> int:
    try:
        return old.execute("SELECT max(rowid) FROM identifications").fetchone()[0] or 0
    except sqlite3.DatabaseError:
        return 0


def _old_sequences(old: sqlite3.Connection) -> dict[str, int]:
    try:
        return {str(k): int(v) for k, v in old.execute("SELECT kiosk_id, last_seq FROM sequences")}
    except (sqlite3.DatabaseError, TypeError, ValueError):
        return {}


def _copy_integrity_log(old: sqlite3.Connection, db: sqlite3.Connection) -> None:
    """Problems found earlier and not yet acknowledged stay reported (best effort)."""
    try:
        rows = old.execute("SELECT found_at, kind, message FROM integrity_log WHERE acknowledged_at IS NULL ORDER BY id").fetchall()
    except sqlite3.DatabaseError:
        return
    db.executemany("INSERT INTO integrity_log (found_at, kind, message) VALUES (?, ?, ?)", rows)
