"""Salvage: copy what still reads from a damaged outbox, moved aside, into the new one.

When the outbox fails its integrity check at start it is moved aside (``outbox.db.corrupt-<time>``,
with its WAL) and a new one started; the records in it must not be lost with it. The moved-aside
file is opened read-only (it stays as it was, for the technician) and read record by record: a
scan in rowid order, and where a damaged page stops it, the rows an intact index lists are looked
up one by one (see :func:`_readable_rows`). Every record that reads and whose checksum (:mod:`device.outbox.checksum`) matches is
copied with its id, seq, state and checksum, so pending ones are delivered under the ids and seqs
the central may already know; the others are counted as not recovered (a record copied already,
or whose seq the new outbox has given to another, is not copied again)::

    report = salvage_into(new_db, Path("/var/lib/kiosk/outbox.db.corrupt-20240502T091500Z"), expected_rows=150)
    report.message()   # "outbox salvaged 148 of 150 records from outbox.db.corrupt-...; 2 could not be read ..."

Records from a file older than schema v3 have no checksum to verify: they get one computed here
(as the v3 migration does) and count as recovered if they satisfy the schema's constraints.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from device.outbox.checksum import FIELDS, checksum_problem, record_checksum
from device.outbox.schema import COLUMNS

log = logging.getLogger(__name__)

#: Records not recovered that are named in the log one by one; the report counts them all.
MAX_LOGGED = 5
#: Rowids tried one by one when every index is damaged too (the newest first): bounds the time a
#: start spends on a ruined file (systemd gives the daemon a minute to start).
MAX_PROBES = 200_000


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
            record = None if values is None else dict(zip(copied, values, strict=True))
            problem = "its page cannot be read" if record is None else _copy(db, record)
            if record is None or problem is not None:
                report.not_recovered += 1
                if report.not_recovered <= MAX_LOGGED:
                    seq = record.get("seq") if record else None
                    log.warning(
                        "salvage of %s: a record%s not recovered: %s", source.name, f" (seq {seq!r})" if seq is not None else "", problem
                    )
                continue
            report.recovered += 1
            report.last_seqs[record["kiosk_id"]] = max(report.last_seqs.get(record["kiosk_id"], 0), record["seq"])
        _copy_integrity_log(old, db)
    finally:
        old.close()
    return report


def _copy(db: sqlite3.Connection, record: dict[str, Any]) -> str | None:
    """Insert one salvaged record if its checksum (or, from before v3, the schema) vouches for it;
    otherwise say why not."""
    if "checksum" in record:
        problem = checksum_problem(record, record["checksum"])
        if problem is not None:
            return problem
    else:
        try:
            record["checksum"] = record_checksum(record)
        except (KeyError, TypeError, ValueError) as e:
            return f"a field cannot be encoded ({e})"
    if not isinstance(record.get("seq"), int) or any(record.get(name) is None for name in FIELDS if name != "card_issue"):
        return "a field is missing or of the wrong type"
    names = list(record)
    try:
        db.execute(f"INSERT INTO identifications ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})", [record[n] for n in names])
    except sqlite3.IntegrityError as e:  # a state no schema allows, a repeated id or seq: garbage
        return str(e)
    return None


def _readable_rows(old: sqlite3.Connection, columns: list[str], bound: int) -> Iterator[tuple[Any, ...] | None]:
    """Every row's values, and None for each row that exists but cannot be read.

    First a scan of the table in rowid order; it usually reads everything (an integrity check
    also fails on a damaged index). Where a damaged page stops it, which rows exist is read from
    one of the table's indexes (each its own b-tree, usually intact when a table page is not), and
    each row not yet read is looked up by its rowid: a fresh descent from the root, which reaches
    every page the damage does not cover. With every index damaged too, rowids are tried from
    ``bound`` down, newest first (pending records are the newest), at most :data:`MAX_PROBES`;
    then each rowid that fails counts as a record not recovered (it may have been purged).
    """
    names = ", ".join(columns)
    read: set[int] = set()
    try:
        for rowid, *values in old.execute(f"SELECT rowid, {names} FROM identifications ORDER BY rowid"):
            read.add(rowid)
            yield tuple(values)
        return
    except sqlite3.DatabaseError:
        pass
    existing = _rowids_from_an_index(old)
    if existing is not None:
        candidates: Iterable[int] = sorted(existing - read)
    else:
        candidates = (r for r in range(bound, max(0, bound - MAX_PROBES), -1) if r not in read)
    for rowid in candidates:
        try:
            row = old.execute(f"SELECT {names} FROM identifications WHERE rowid = ?", [rowid]).fetchone()
        except sqlite3.DatabaseError:
            yield None
            continue
        if row is not None:
            yield row
        elif existing is not None:
            yield None  # the index lists it; the table's damaged b-tree no longer leads to it


def _rowids_from_an_index(old: sqlite3.Connection) -> set[int] | None:
    """The rowids listed by the first of the table's indexes that reads to its end, or None."""
    try:
        indexes = [row[0] for row in old.execute("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'identifications'")]
    except sqlite3.DatabaseError:
        return None
    for index in indexes:
        quoted = '"' + index.replace('"', '""') + '"'
        try:
            # Only the rowid is asked for: the index covers it, the table's pages are not read.
            return {row[0] for row in old.execute(f"SELECT rowid FROM identifications INDEXED BY {quoted}")}
        except sqlite3.DatabaseError:
            continue
    return None


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
