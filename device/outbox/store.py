"""The outbox: the kiosk's durable local queue of identifications (SQLite).

An identification is committed here *before* the kiosk signals "OK": :meth:`Outbox.commit` returns
only once the record is on disk (WAL with ``synchronous=FULL``, so the commit is fsync'ed; in WAL
mode ``NORMAL`` may lose the last commits on a power cut). The forwarder then delivers it to the
central and marks it ``delivered``; a record the central rejects becomes ``dead`` with the reason,
visible and retryable, never deleted. Delivered records are kept ``retention_days``, then purged.

Each identification gets, in the same transaction, a UUID (its permanent id at the central, made
once, here) and a per-kiosk sequence number with no gaps. Wall time is recorded (``scanned_at``,
UTC) with whether the clock was synchronised, but never used to order records.

Several processes may open the same file (the daemon writes while ``kiosk queue`` reads): WAL
readers never block the writer, and writers wait up to ``busy_timeout_s`` for each other::

    outbox = Outbox("/var/lib/kiosk/outbox.db", kiosk_id="riga-5-1", site="Riga 5")
    ident = outbox.commit(card, symbology="Code128", decoder="zxing-cpp")   # durable now: beep OK
    batch = outbox.due(100)                  # pending records whose next attempt is due, by seq
    outbox.mark_delivered([r.id for r in batch])

Beyond SQLite's own checks (``integrity_check`` sees a broken b-tree, not a changed value or a
lost commit), three guards, each reported in :meth:`Outbox.stats` (``integrity``: a fault in
``kiosk status`` until ``kiosk queue ack``):

- each record carries a checksum over every field sent (:mod:`device.outbox.checksum`), verified
  when it is read for delivery; a record that fails is ``quarantined`` with the reason, never sent;
- the high-water mark (:mod:`device.outbox.highwater`), the last committed seq kept outside the
  database file: a start that finds fewer records than were committed says how many are missing
  and from which seq ("outbox lost 75 committed identifications, seq 76-150"), and new records
  continue after the mark, so a seq never goes backwards or repeats;
- a file that fails ``PRAGMA integrity_check`` (or is not a database) is moved aside as
  ``outbox.db.corrupt-<UTC time>`` (with its -wal), kept for the technician and listed in
  :meth:`Outbox.stats`; a new outbox is started in its place and what still reads from the old
  one is copied into it with its ids, seqs and states (:mod:`device.outbox.salvage`).

Durability of names: every file the outbox creates or renames (the database and its WAL, the
moved-aside file, the mark) has its directory fsynced (:mod:`device.outbox.fsync`), or a power
cut may undo the name however well the contents were synced.
"""

from __future__ import annotations

import builtins
import logging
import os
import re
import sqlite3
import stat
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypedDict, Unpack

from device.card import Card
from device.clock import Clock, SystemClock, parse_utc, utc_iso
from device.config import Config, OutboxSection
from device.health.outbox import IntegrityProblem, OutboxHealth, RecordState
from device.outbox.access import cannot_write
from device.outbox.checksum import FIELDS, REFUSAL_FIELDS, checksum_problem, record_checksum
from device.outbox.fsync import fsync_dir
from device.outbox.highwater import HighWaterMark, MarkUnreadable
from device.outbox.salvage import salvage_into
from device.outbox.schema import COLUMNS, MIGRATIONS, SCHEMA_VERSION
from device.path_kinds import database_problem, mark_path
from device.pos_template import PosOutcome
from device.redact import escape
from device.sqlite_readers import read_only_uri

log = logging.getLogger(__name__)

#: The record states by their short names (a :class:`RecordState` is its text in SQLite and JSON).
PENDING, DELIVERED, DEAD, QUARANTINED = RecordState.PENDING, RecordState.DELIVERED, RecordState.DEAD, RecordState.QUARANTINED
STATES = tuple(RecordState)

#: File mode of the outbox and its -wal/-shm: contract numbers are personal data, so never others';
#: the group is the daemon's main group, the technicians' (``kiosk-tech``) under the unit, who
#: read the queue without root (:class:`Outbox` with ``read_only=True``).
FILE_MODE = 0o640
#: Longest error text or reason stored with a record.
MAX_REASON = 500
#: How long a writer waits for another process's write transaction before giving up.
DEFAULT_BUSY_TIMEOUT_S = 10.0
#: A stored next attempt further ahead than this is treated as due: the wall clock must have
#: jumped back (NTP correcting a wrong clock), and waiting days for it would stall delivery.
DEFAULT_MAX_WAIT_S = 3600.0
#: Fewest hex characters of an id :meth:`Outbox.find` takes as a prefix (fewer match too much).
MIN_ID_PREFIX = 4
#: Matches of an ambiguous id prefix listed in the error (the count says how many more).
MAX_MATCHES_LISTED = 10
#: Largest integer SQLite stores; a longer run of digits is no seq.
_MAX_SEQ = 2**63 - 1
#: The daemon's outbox that cannot be opened at start (a full disk, a folder it may not write) is
#: opened again at most this often while the daemon runs degraded (``retry_open_s``).
DEFAULT_RETRY_OPEN_S = 5.0
#: Less free space than this where the outbox is makes SQLite's "disk I/O error" (it could not grow
#: its -shm or -wal) a full disk: two -shm segments of 32 KiB.
FULL_BELOW_BYTES = 64 * 1024


class OutboxError(Exception):
    """The outbox cannot do what was asked (I/O error, locked too long, unusable file).

    ``str()`` says what happened and what to check. Nothing was half-written: the transaction was
    rolled back.
    """


class OutboxFull(OutboxError):
    """The disk (or the database's page limit) is full: the identification was NOT recorded."""


class OutboxCorrupt(OutboxError):
    """The file fails its integrity check and was not moved aside (``on_corrupt="raise"``)."""


class ReadOnly(OutboxError):
    """A write to an outbox opened with ``read_only=True``."""


class NotFound(OutboxError, LookupError):
    """No single identification answers a reference (:meth:`Outbox.find`).

    ``count`` is 0 for no match, or how many an ambiguous id prefix matches; ``matches`` holds the
    first :data:`MAX_MATCHES_LISTED` of them (by seq), for the caller to show, masked.
    """

    def __init__(self, message: str, matches: tuple[Identification, ...] = (), count: int = 0):
        super().__init__(message)
        self.matches, self.count = matches, count


@dataclass(frozen=True)
class Identification:
    """One identification as the outbox holds it.

    ``scanned_at``, ``next_attempt_at``, ``delivered_at`` and ``updated_at`` are UTC ISO 8601
    strings (``2024-05-02T09:15:00.000Z``); ``next_attempt_at`` is None when due at once.
    ``checksum`` covers the fields sent (:mod:`device.outbox.checksum`); ``quarantine_reason``
    says why a ``quarantined`` record is never sent.
    """

    id: str
    seq: int
    kiosk_id: str
    site: str
    format: str
    contract: str
    card_issue: int | None
    scanned_at: str
    clock_synced: bool
    symbology: str
    decoder: str
    state: RecordState
    attempts: int
    next_attempt_at: str | None
    last_error: str | None
    dead_reason: str | None
    delivered_at: str | None
    updated_at: str
    checksum: str = ""
    quarantine_reason: str | None = None
    #: ``identification``, or ``refusal``: a replaced card was shown (``current_issue`` is its
    #: contract's current card issue, higher than ``card_issue``).
    kind: str = "identification"
    current_issue: int | None = None
    #: What became of its hand-off to the counter's POS (:class:`device.pos_template.PosOutcome`'s
    #: values); None when none was recorded. Neither sent nor covered by the checksum.
    pos_outcome: str | None = None

    def as_dict(self) -> dict[str, object]:
        """All fields, for JSON output (the caller masks ``contract`` for display)."""
        return asdict(self)


_SELECT = "SELECT " + ", ".join(COLUMNS) + " FROM identifications"
# SQLite allows 999 "?" per statement on old builds; id lists are chunked below that.
_CHUNK = 500
#: Integrity problems listed in stats (the newest; the count says how many more).
MAX_INTEGRITY_LISTED = 10

#: A row as sqlite3 returns it: its values' types are whatever the database holds.
_Row = tuple[Any, ...]


class OpenOptions(TypedDict, total=False):
    """The keyword-only parameters of :class:`Outbox` that are not configuration (see :meth:`Outbox.from_config`)."""

    busy_timeout_s: float
    max_wait_s: float
    on_corrupt: str
    check_integrity: bool
    create: bool
    read_only: bool
    max_page_count: int | None
    retry_open_s: float


def _row(values: _Row) -> Identification:
    fields = dict(zip(COLUMNS, values, strict=True))
    fields["clock_synced"] = bool(fields["clock_synced"])
    fields["state"] = RecordState(fields["state"])
    return Identification(**fields)


def _clip(text: str) -> str:
    return text if len(text) <= MAX_REASON else text[: MAX_REASON - 3] + "..."


class Outbox:
    """The durable queue of identifications in one SQLite file. Safe to share between threads.

    ``clock`` gives UTC wall time and whether it is synchronised (tests pass a FakeClock).
    ``max_wait_s``: a stored next attempt further ahead than this counts as due (see
    :data:`DEFAULT_MAX_WAIT_S`); the forwarder sets it to its longest wait.
    ``on_corrupt``: ``"move-aside"`` (the daemon) or ``"raise"`` (a reader such as ``kiosk queue``,
    which must not move the daemon's file). ``create=False`` refuses to start a missing outbox
    (a reader with a wrong path). ``read_only=True`` (implies both): open it only to read, as a
    technician who may read the files but not write their folder does (no migration, no chmod;
    any write raises :class:`OutboxError`). ``max_page_count`` limits the file's size in pages,
    for emulating a full disk in tests (also :meth:`set_max_page_count`). ``retry_open_s`` (the
    daemon): an outbox that cannot be opened does not raise; :attr:`open_error` says why, every
    use raises :class:`OutboxError` with it, and the open is tried again at most this often, so a
    start on a full disk runs degraded and recovers by itself once there is space.

    The owner (``on_corrupt="move-aside"``) also salvages a file it moved aside and checks the
    database against its high-water mark at open; a reader does neither, and never writes the mark.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        kiosk_id: str,
        site: str = "",
        retention_days: float = OutboxSection.retention_days,
        clock: Clock | None = None,
        *,
        busy_timeout_s: float = DEFAULT_BUSY_TIMEOUT_S,
        max_wait_s: float = DEFAULT_MAX_WAIT_S,
        on_corrupt: str = "move-aside",
        check_integrity: bool = True,
        create: bool = True,
        read_only: bool = False,
        max_page_count: int | None = None,
        retry_open_s: float = 0.0,
    ):
        if read_only:
            on_corrupt, create = "raise", False
        if on_corrupt not in ("move-aside", "raise"):
            raise ValueError(f"on_corrupt must be 'move-aside' or 'raise', got {on_corrupt!r}")
        self.path = Path(path)
        if not create and not self.path.exists():
            raise OutboxError(f"there is no outbox at {self.path} (check outbox.path; the daemon creates it)")
        self.kiosk_id = kiosk_id
        self.site = site
        self.retention_days = retention_days
        self.clock = clock or SystemClock()
        self.max_wait_s = max_wait_s
        self._busy_timeout_s = busy_timeout_s
        #: Where a corrupt file found at this open was moved to (None if it was fine).
        self.moved_aside: Path | None = None
        #: Why the last commit failed (disk full, ...), until a commit succeeds again: for status.
        self.last_commit_error: str | None = None
        #: The high-water mark beside the database (``<outbox>.hwm``), see :mod:`device.outbox.highwater`.
        self.mark = HighWaterMark(mark_path(self.path))
        #: Why the mark could not be written, until it can again: the loss check is blind meanwhile.
        self.mark_error: str | None = None
        self._lock = threading.RLock()
        self.read_only = read_only
        if problem := database_problem(self.path, mark=self.mark.path):
            # A typo must not make the kiosk chmod, move aside or replace someone else's file (or /dev/null).
            raise OutboxError(f"outbox.path: {problem}")
        #: (wall, monotonic) at the latest wall time seen: the timeline before a step back (:meth:`age_s`).
        self._timeline: tuple[datetime, float] | None = None
        #: Why the outbox is not open (a degraded start, ``retry_open_s``), None once it is.
        self.open_error: str | None = None
        self._reopen = (on_corrupt, check_integrity, retry_open_s)
        self._retry_open_at = 0.0
        self._db: sqlite3.Connection | None = None
        try:
            self._db = self._open_read_only() if read_only else self._open(on_corrupt, check_integrity)
        except OutboxError as e:
            if not retry_open_s or read_only:
                raise
            self._not_open(e)
            log.error("%s; the kiosk runs without storing identifications and tries again every %g s", self.open_error, retry_open_s)
        if max_page_count is not None:
            self.set_max_page_count(max_page_count)

    @property
    def db(self) -> sqlite3.Connection:
        """The connection. While the outbox is not open (:attr:`open_error`), each use tries to
        open it again (at most every ``retry_open_s``) and raises :class:`OutboxError` saying why."""
        db = self._db
        if db is None:
            with self._lock:
                db = self._db or self._open_again()
        return db

    def _open_again(self) -> sqlite3.Connection:
        on_corrupt, check_integrity, retry_open_s = self._reopen
        if time.monotonic() < self._retry_open_at:
            raise OutboxError(self.open_error or f"the outbox {self.path} is closed")
        try:
            self._db = self._open(on_corrupt, check_integrity)
        except OutboxError as e:
            self._not_open(e)
            raise OutboxError(self.open_error) from e
        log.info("outbox %s opened: identifications are stored again (it could not be opened: %s)", self.path, self.open_error)
        self.open_error = None
        return self._db

    def _not_open(self, error: OutboxError) -> None:
        self.open_error = str(error)
        self._retry_open_at = time.monotonic() + self._reopen[2]

    def store_problem(self) -> str | None:
        """Why identifications cannot be stored now (the outbox not open, the last commit refused), or None."""
        return self.open_error or self.last_commit_error

    @classmethod
    def from_config(cls, cfg: Config, **options: Unpack[OpenOptions]) -> Outbox:
        """The outbox as configured (``outbox.*``, ``kiosk.id``, ``kiosk.site``).

        ``options`` are the keyword-only parameters that are not configuration, e.g. a reader's
        ``on_corrupt="raise", create=False``::

            outbox = Outbox.from_config(cfg, on_corrupt="raise", check_integrity=False, create=False)
        """
        return cls(cfg.outbox.path, cfg.kiosk.id, cfg.kiosk.site, cfg.outbox.retention_days, **options)

    # --- opening ----------------------------------------------------------------------------

    def _open(self, on_corrupt: str, check_integrity: bool) -> sqlite3.Connection:
        try:
            self._make_folders(self.path.parent)
            self._ensure_private_files()
        except OSError as e:
            if full := self._full_disk():
                raise OutboxFull(f"{full}: cannot create the outbox {self.path}") from e
            raise OutboxError(
                cannot_write(self.path)
                or f"cannot create the outbox {self.path}: {e.strerror or e}; check the directory and its permissions"
            ) from e
        db = None
        try:
            db = self._connect()
            if check_integrity:
                self._check_integrity(db)
            self._migrate(db)
        except sqlite3.DatabaseError as e:
            if db is not None:
                db.close()
            db = None
            if not _is_corruption(e) and not isinstance(e, _IntegrityFailed):
                error = self._error("open", e)
                why = cannot_write(self.path) if on_corrupt == "move-aside" else None  # the owner (the daemon) opening
                raise (OutboxError(why) if why and not isinstance(error, OutboxFull) else error) from e
            if on_corrupt == "raise":
                raise OutboxCorrupt(f"the outbox {self.path} is damaged ({e}); the kiosk daemon moves it aside at its next start") from e
        except BaseException:
            if db is not None:
                db.close()
            raise
        try:
            if db is None:
                db = self._replace_damaged()
            if on_corrupt == "move-aside":
                self._salvage_moved_aside(db)
                self._check_mark(db)
            # The database file, its -wal and -shm (SQLite makes them when the connection goes to
            # WAL mode, and they stay while it is open) may be new: their names are durable only
            # once the directory is. Cheap, once per open.
            fsync_dir(self.path.parent)
        except BaseException as e:
            if db is not None:
                db.close()
            if isinstance(e, OSError):
                raise OutboxError(f"cannot make the outbox {self.path} durable: {e.strerror or e}") from e
            raise
        return db

    def _open_read_only(self) -> sqlite3.Connection:
        """A connection that only reads, for a user who may read the files but not write their
        folder (:mod:`device.sqlite_readers`)."""
        try:
            conn = sqlite3.connect(
                read_only_uri(self.path), uri=True, timeout=self._busy_timeout_s, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as e:
            raise self._error("open", e) from e
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout_s * 1000)}")
            version = conn.execute("PRAGMA user_version").fetchone()[0]
        except sqlite3.Error as e:
            conn.close()
            if _is_corruption(e):
                raise OutboxCorrupt(f"the outbox {self.path} is damaged ({e}); the kiosk daemon moves it aside at its next start") from e
            raise self._error("open", e) from e
        if version != SCHEMA_VERSION:
            conn.close()
            newer = "newer than this software knows" if version > SCHEMA_VERSION else "older than this software's"
            raise OutboxError(
                f"the outbox {self.path} has schema version {version}, {newer} ({SCHEMA_VERSION}): "
                "it cannot be read without changing it; the daemon upgrades it when it starts (or run this as root)"
            )
        return conn

    def _replace_damaged(self) -> sqlite3.Connection:
        """Move the damaged file aside and start a new outbox (the owner then salvages the old one)."""
        self.moved_aside = self._move_aside()
        log.error("outbox %s failed its integrity check; moved aside to %s and started a new one", self.path, self.moved_aside)
        self._ensure_private_files()
        db = self._connect()
        try:
            # The new file's name must be durable before the salvage commits into it: otherwise a
            # power cut could leave the damaged file moved aside (its rename was synced) and no
            # new outbox holding what was salvaged from it.
            fsync_dir(self.path.parent)
            self._migrate(db)
        except BaseException:
            db.close()
            raise
        return db

    def _salvage_moved_aside(self, db: sqlite3.Connection) -> None:
        """Copy into this outbox what still reads from each damaged file moved aside and not yet
        salvaged: the one just moved, or one whose salvage a crash cut short (each salvage is
        one transaction, with the note that the file is done)."""
        done = {row[0] for row in db.execute("SELECT name FROM salvaged_files")}
        for damaged in self.corrupt_files():
            if damaged.name in done:
                continue
            marks, _ = self._read_mark()
            with self._write(db, f"salvage the damaged outbox {damaged.name}"):
                report = salvage_into(db, damaged, expected_rows=sum((marks or {}).values()))
                for kiosk_id, seq in report.last_seqs.items():
                    self._raise_sequence(db, kiosk_id, seq)
                self._log_integrity(db, "salvaged", report.message())
                db.execute("INSERT INTO salvaged_files (name, salvaged_at) VALUES (?, ?)", [damaged.name, utc_iso(self.clock.now())])
            log.error("%s", report.message())

    def _read_mark(self) -> tuple[dict[str, int] | None, str | None]:
        """The high-water mark (None: no mark file) and, if it could not be read, why."""
        try:
            return self.mark.read(), None
        except (OSError, MarkUnreadable) as e:
            return None, (
                f"the high-water mark {self.mark.path} could not be read ({e}): identifications lost before this "
                "start cannot be ruled out; a new mark was written"
            )

    def _check_mark(self, db: sqlite3.Connection) -> None:
        """Compare the database with the high-water mark; a shortfall is a loss, reported with its seqs.

        Runs under the write lock, so no other process commits meanwhile: each commit raises the
        mark only after its database commit is durable, so the mark never exceeds what a sound
        database holds. New seqs continue after the mark: a seq never goes back or repeats.
        """
        marks, problem = self._read_mark()
        with self._write(db, "check the outbox against its high-water mark"):
            if problem is not None:
                log.error("%s", problem)
                self._log_integrity(db, "mark-unreadable", problem)
            held: dict[str, int] = {}
            for kiosk_id, seq in db.execute(
                "SELECT kiosk_id, max(seq) FROM (SELECT kiosk_id, last_seq AS seq FROM sequences "
                "UNION ALL SELECT kiosk_id, max(seq) FROM identifications WHERE typeof(seq) = 'integer' GROUP BY kiosk_id) "
                "GROUP BY kiosk_id"
            ):
                held[kiosk_id] = seq
            for kiosk_id, mark in sorted((marks or {}).items()):
                have = held.get(kiosk_id, 0)
                if have >= mark:
                    continue
                lost = mark - have
                message = (
                    f"outbox lost {lost} committed identification{'s' if lost > 1 else ''}, seq {have + 1}{f'-{mark}' if lost > 1 else ''}"
                )
                if kiosk_id != self.kiosk_id:
                    message += f" of kiosk id {kiosk_id}"
                log.error("%s (the database holds fewer than its high-water mark %s says were committed)", message, self.mark.path)
                self._log_integrity(db, "lost", message)
                held[kiosk_id] = mark
            for kiosk_id, seq in held.items():
                self._raise_sequence(db, kiosk_id, seq)
        self._store_mark(held)

    def _store_mark(self, seqs: dict[str, int]) -> None:
        """Raise the high-water mark to ``seqs``. A failure is kept in :attr:`mark_error` (status
        and a fault say so): the identification is durable in the database all the same."""
        try:
            self.mark.store(seqs, keep_first=[self.kiosk_id])
        except Exception as e:  # OSError, MarkUnreadable, or a bug: a fault, never an exception after the commit
            if self.mark_error is None:
                unexpected = None if isinstance(e, (OSError, MarkUnreadable)) else e  # a bug: its traceback, once
                log.error(
                    "the high-water mark %s cannot be written (%s): lost identifications would go unnoticed", self.mark.path, e,
                    exc_info=unexpected,
                )  # fmt: skip
            self.mark_error = f"the high-water mark {self.mark.path} cannot be written: {e}"
            return
        self.mark_error = None

    def _log_integrity(self, db: sqlite3.Connection, kind: str, message: str) -> None:
        """Note a problem the outbox found with itself: a fault in status until acknowledged."""
        db.execute("INSERT INTO integrity_log (found_at, kind, message) VALUES (?, ?, ?)", [utc_iso(self.clock.now()), kind, message])

    @staticmethod
    def _raise_sequence(db: sqlite3.Connection, kiosk_id: str, seq: int) -> None:
        """The next seq for ``kiosk_id`` comes after ``seq`` (never lowered)."""
        db.execute(
            "INSERT INTO sequences (kiosk_id, last_seq) VALUES (?, ?) "
            "ON CONFLICT (kiosk_id) DO UPDATE SET last_seq = max(last_seq, excluded.last_seq)",
            [kiosk_id, seq],
        )

    def _connect(self) -> sqlite3.Connection:
        # isolation_level=None: no implicit transactions; every write below runs in an explicit
        # BEGIN IMMEDIATE, so two processes never deadlock upgrading a read lock.
        conn = sqlite3.connect(str(self.path), timeout=self._busy_timeout_s, isolation_level=None, check_same_thread=False)
        conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout_s * 1000)}")
        if conn.execute("PRAGMA journal_mode = WAL").fetchone()[0].lower() != "wal":
            raise OutboxError(f"cannot put the outbox {self.path} in WAL mode (is the file system read-only or a network mount?)")
        # Not persistent: every connection must set it. FULL fsyncs the WAL at each commit.
        conn.execute("PRAGMA synchronous = FULL")
        return conn

    def _make_folders(self, folder: Path) -> None:
        """``mkdir -p`` whose new folders are durable: each one's entry is fsynced in its parent,
        or a power cut could take the folder away, with every identification committed in it."""
        missing = []
        while not folder.exists():
            missing.append(folder)
            folder = folder.parent
        for new in reversed(missing):
            new.mkdir(mode=0o700, exist_ok=True)  # exist_ok: another process may make it meanwhile
            fsync_dir(new.parent)

    def _ensure_private_files(self) -> None:
        if not self.path.exists():
            os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY, FILE_MODE))
        # SQLite gives new -wal/-shm files the database's mode; existing ones are fixed here.
        for p in (self.path, Path(f"{self.path}-wal"), Path(f"{self.path}-shm")):
            try:
                # lstat: a symlink or anything but a regular file is never chmodded (it may be someone else's).
                if p.exists() and stat.S_ISREG(p.lstat().st_mode) and p.stat().st_mode & 0o777 != FILE_MODE:
                    p.chmod(FILE_MODE)
            except PermissionError:
                log.warning("outbox file %s is not mode 0600 and cannot be changed by this user", p)

    def _check_integrity(self, db: sqlite3.Connection) -> None:
        rows = [r[0] for r in db.execute("PRAGMA integrity_check").fetchall()]
        if rows != ["ok"]:
            raise _IntegrityFailed("; ".join(str(r) for r in rows[:3]))

    def _migrate(self, db: sqlite3.Connection) -> None:
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise OutboxError(
                f"the outbox {self.path} has schema version {version}, newer than this software knows ({SCHEMA_VERSION}); "
                "install the newer kiosk software again (do not delete the file: it holds undelivered identifications)"
            )
        while version < SCHEMA_VERSION:
            with self._write(db, "migrate"):
                # Another process may have migrated between our read and our write lock.
                version = db.execute("PRAGMA user_version").fetchone()[0]
                if version < SCHEMA_VERSION:
                    MIGRATIONS[version](db)
                    version += 1
                    db.execute(f"PRAGMA user_version = {version}")
            log.info("outbox %s schema now at version %d", self.path, version)

    def _move_aside(self) -> Path:
        if problem := database_problem(self.path, mark=self.mark.path):
            raise OutboxError(f"the outbox {self.path} cannot be opened and is not moved aside: {problem}")
        stamp = self.clock.now().strftime("%Y%m%dT%H%M%SZ")
        target = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
        n = 1
        while target.exists():
            n += 1
            target = self.path.with_name(f"{self.path.name}.corrupt-{stamp}-{n}")
        try:
            # The WAL may hold the newest records: it moves with the file, under the name SQLite
            # looks for, so the technician can open the copy with its WAL.
            for suffix in ("-wal", "-shm"):
                side = Path(f"{self.path}{suffix}")
                if side.exists():
                    side.rename(f"{target}{suffix}")
            self.path.rename(target)
            fsync_dir(self.path.parent)  # the renames are durable only with the directory
        except OSError as e:
            raise OutboxError(f"the outbox {self.path} is damaged and could not be moved aside: {e}") from e
        return target

    def corrupt_files(self) -> list[Path]:
        """Damaged outboxes moved aside (now or at an earlier start), for the technician."""
        return sorted(p for p in self.path.parent.glob(f"{self.path.name}.corrupt-*") if not p.name.endswith(("-wal", "-shm")))

    def set_max_page_count(self, pages: int | None) -> int:
        """Limit the file to ``pages`` pages (None: SQLite's maximum), to emulate a full disk.

        Returns the limit in effect (SQLite never sets it below the current size).
        """
        with self._lock:
            value = 4294967294 if pages is None else int(pages)
            return int(self.db.execute(f"PRAGMA max_page_count = {value}").fetchone()[0])

    # --- transactions -----------------------------------------------------------------------

    @contextmanager
    def _write(self, db: sqlite3.Connection, what: str) -> Iterator[None]:
        """One write transaction, taken with the write lock up front; rolled back on any error."""
        if self.read_only:
            raise ReadOnly(f"cannot {what}: the outbox {self.path} was opened to read only")
        try:
            db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as e:
            raise self._error(what, e) from e
        try:
            yield
            db.execute("COMMIT")
        except BaseException as e:
            if db.in_transaction:
                try:
                    db.execute("ROLLBACK")
                except sqlite3.Error:
                    pass  # SQLite may have rolled back already (e.g. after SQLITE_FULL)
            if isinstance(e, sqlite3.Error):
                raise self._error(what, e) from e
            raise

    def _full_disk(self) -> str | None:
        """``outbox folder full: 0 bytes free on /var/lib/kiosk`` when the file system of the
        outbox's folder has (almost) no space left for this user, else None."""
        folder = self.path.parent
        while not folder.exists() and folder != folder.parent:
            folder = folder.parent
        try:
            st = os.statvfs(folder)
        except OSError:
            return None
        free = st.f_bavail * st.f_frsize
        return f"outbox folder full: {free} bytes free on {folder}" if free < FULL_BELOW_BYTES else None

    def _error(self, what: str, e: sqlite3.Error) -> OutboxError:
        code = getattr(e, "sqlite_errorcode", None)
        # SQLite says "disk I/O error" when it cannot grow its -shm on a full disk: statvfs tells.
        if (code or 0) & 0xFF in (sqlite3.SQLITE_FULL, sqlite3.SQLITE_IOERR, sqlite3.SQLITE_CANTOPEN) and (full := self._full_disk()):
            return OutboxFull(f"{full}: could not {what}; free disk space (identifications are stored again as soon as there is)")
        if code == sqlite3.SQLITE_FULL:
            return OutboxFull(f"the outbox {self.path} is full (disk or size limit): could not {what}; free disk space: {e}")
        if code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
            return OutboxError(f"the outbox {self.path} stayed locked by another process for {self._busy_timeout_s:g} s: could not {what}")
        if code == sqlite3.SQLITE_READONLY:
            return OutboxError(f"the outbox {self.path} is read-only: could not {what}; check the file's owner and mode")
        return OutboxError(f"the outbox {self.path} failed to {what}: {e}")

    # --- writing ----------------------------------------------------------------------------

    def commit(self, card: Card, *, symbology: str, decoder: str, refused_for_issue: int | None = None) -> Identification:
        """Record one identification durably and return it. Signal "OK" only after this returns.

        It returns once the database commit is fsynced and then the high-water mark raised to its
        seq and fsynced (in that order: the mark never claims a record the database may not
        hold). A mark that cannot be written does not undo the commit: the record is durable and
        the caller may say "OK"; :attr:`mark_error` and a fault say the loss check is blind.

        Raises :class:`OutboxFull` when the disk is full and :class:`OutboxError` on other
        failures; then nothing was recorded and no sequence number was used.

        ``refused_for_issue``: the card is a replaced one, whose contract's current issue is
        this: the record is a **refusal** (same queue, same seqs, delivered the same way).
        """
        now = self.clock.now()
        # seq and checksum are taken in the transaction (_insert); the rest is the record as stored.
        new = Identification(
            id=str(uuid.uuid4()), seq=0, kiosk_id=self.kiosk_id, site=self.site, format=card.format, contract=card.contract,
            card_issue=None if card.issue is None else int(card.issue), scanned_at=utc_iso(now), clock_synced=self.clock.synced(),
            symbology=symbology, decoder=decoder, state=PENDING, attempts=0, next_attempt_at=None, last_error=None,
            dead_reason=None, delivered_at=None, updated_at=utc_iso(now),
        )  # fmt: skip
        if refused_for_issue is not None:
            new = replace(new, kind="refusal", current_issue=int(refused_for_issue))
        with self._lock:
            db = self.db
            try:
                record = self._insert(db, new)
            except OutboxError as e:
                self.last_commit_error = str(e)
                # Not logged here: a card held in view is refused on every frame; the caller
                # raises the outbox fault, which logs once (and a reminder a minute).
                raise
            self.last_commit_error = None
            self._store_mark({self.kiosk_id: record.seq})
        return record

    def _insert(self, db: sqlite3.Connection, new: Identification) -> Identification:
        """Take the next sequence number and insert ``new`` with it and its checksum, in one transaction.

        Returns the record as stored.
        """
        with self._write(db, "record the identification"):
            row = db.execute("SELECT last_seq FROM sequences WHERE kiosk_id = ?", [self.kiosk_id]).fetchone()
            record = replace(new, seq=(row[0] if row else 0) + 1)
            record = replace(record, checksum=record_checksum(asdict(record)))
            self._raise_sequence(db, self.kiosk_id, record.seq)
            fields = asdict(record)
            db.execute(
                f"INSERT INTO identifications ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})",
                [fields[n] for n in COLUMNS],
            )
        return record

    def _update(self, what: str, sql: str, ids: Iterable[str], params: list[object]) -> int:
        """Run ``sql`` (which ends in ``id IN (...)``) for ``ids`` in chunks, in one transaction."""
        ids = builtins.list(ids)
        changed = 0
        with self._lock, self._write(self.db, what):
            for i in range(0, len(ids), _CHUNK):
                chunk = ids[i : i + _CHUNK]
                cur = self.db.execute(f"{sql} ({', '.join('?' * len(chunk))})", params + chunk)
                changed += cur.rowcount
        return changed

    def mark_delivered(self, ids: Iterable[str]) -> int:
        """The central holds these (accepted or duplicate): pending -> delivered. Returns how many changed."""
        now = utc_iso(self.clock.now())
        return self._update(
            "mark identifications delivered",
            "UPDATE identifications SET state = 'delivered', attempts = attempts + 1, delivered_at = ?, "
            "next_attempt_at = NULL, last_error = NULL, updated_at = ? WHERE state = 'pending' AND id IN",
            ids,
            [now, now],
        )

    def mark_failed(self, ids: Iterable[str], error: str, retry_at: datetime | str | None) -> int:
        """A delivery attempt failed: count it, keep the records pending until ``retry_at`` (UTC)."""
        retry = utc_iso(retry_at) if isinstance(retry_at, datetime) else retry_at
        now = utc_iso(self.clock.now())
        return self._update(
            "record a failed delivery",
            "UPDATE identifications SET attempts = attempts + 1, next_attempt_at = ?, last_error = ?, updated_at = ? "
            "WHERE state = 'pending' AND id IN",
            ids,
            [retry, _clip(error), now],
        )

    def mark_dead(self, id: str, reason: str) -> bool:
        """The central rejected this record: pending -> dead, with the reason. Kept, retryable."""
        now = utc_iso(self.clock.now())
        return (
            self._update(
                "mark an identification dead",
                "UPDATE identifications SET state = 'dead', attempts = attempts + 1, dead_reason = ?, "
                "next_attempt_at = NULL, updated_at = ? WHERE state = 'pending' AND id IN",
                [id],
                [_clip(reason), now],
            )
            == 1
        )

    def record_pos_outcome(self, id: str, outcome: PosOutcome) -> bool:
        """Record what became of identification ``id``'s hand-off to the POS; False when there is no
        such record (purged meanwhile). The fields sent and their checksum stay as they are."""
        return (
            self._update(
                "record the POS hand-off's outcome",
                "UPDATE identifications SET pos_outcome = ? WHERE id IN",
                [id],
                [PosOutcome(outcome).value],
            )
            == 1
        )

    def retry(self, id: str) -> bool:
        """Make a dead (or waiting) record pending and due now. False if no such dead/pending record."""
        now = utc_iso(self.clock.now())
        return (
            self._update(
                "retry an identification",
                "UPDATE identifications SET state = 'pending', next_attempt_at = NULL, dead_reason = NULL, updated_at = ? "
                "WHERE state IN ('pending', 'dead') AND id IN",
                [id],
                [now],
            )
            == 1
        )

    def retry_dead(self) -> int:
        """Make every dead record pending and due now. Returns how many."""
        now = utc_iso(self.clock.now())
        with self._lock, self._write(self.db, "retry dead identifications"):
            return self.db.execute(
                "UPDATE identifications SET state = 'pending', next_attempt_at = NULL, dead_reason = NULL, updated_at = ? "
                "WHERE state = 'dead'",
                [now],
            ).rowcount

    def resend_delivered(self, ids: Iterable[str]) -> int:
        """Make delivered records pending and due now, to be sent again. Returns how many changed.

        For a central that lost what it had taken (restored from a backup): each record goes again
        with its id and seq, so the central answers ``accepted`` where it lost it and ``duplicate``
        where it still holds it, never a second identification. Only ``delivered`` records change
        (a pending one is sent anyway, a dead one is :meth:`retry`'s, a quarantined one is never
        sent); ``delivered_at`` is cleared, since the record is not delivered until the central
        answers again. Neither is covered by the checksum, which stays valid::

            outbox.resend_delivered([outbox.find("812").id])   # 1: seq 812 is pending again
        """
        now = utc_iso(self.clock.now())
        return self._update(
            "resend delivered identifications",
            "UPDATE identifications SET state = 'pending', next_attempt_at = NULL, last_error = NULL, delivered_at = NULL, "
            "updated_at = ? WHERE state = 'delivered' AND id IN",
            ids,
            [now],
        )

    def purge_delivered(self) -> int:
        """Delete delivered records older than ``retention_days`` (by delivery time). Returns how many."""
        cutoff = utc_iso(self.clock.now() - timedelta(days=self.retention_days))
        with self._lock, self._write(self.db, "purge delivered identifications"):
            return self.db.execute("DELETE FROM identifications WHERE state = 'delivered' AND delivered_at <= ?", [cutoff]).rowcount

    # --- reading ----------------------------------------------------------------------------

    def _read(self, sql: str, params: builtins.list[object] | None = None) -> builtins.list[_Row]:
        with self._lock:
            try:
                return self.db.execute(sql, params or []).fetchall()
            except sqlite3.Error as e:
                raise self._error("read", e) from e

    def due(
        self, limit: int, *, now: datetime | None = None, max_wait_s: float | None = None, force: bool = False, waiting: bool = False
    ) -> builtins.list[Identification]:
        """Up to ``limit`` pending records to send now, oldest first (by ``seq``).

        In order: while the oldest pending record waits for its next attempt, nothing is due (new
        records do not overtake it, and an outage is not hammered by each new identification).
        A next attempt stored at a wall time later than now (``updated_at``: the clock was stepped
        back since, as NTP does on a Pi without a hardware clock) is due: its wait is unknown, and
        waiting for the old timeline would stall delivery as long as the step. A next attempt more
        than ``max_wait_s`` ahead is due anyway. Waits within a process are the forwarder's, on the
        monotonic clock: ``waiting`` says the caller's own wait for them still runs, so one stored
        before a step back is not due early.
        ``force`` ignores the waits (a technician fixed the token).

        Each record's checksum is verified here, before anything can send it: one that fails is
        quarantined (state ``quarantined``, with the reason, an integrity problem in status) and
        left out, so the batch may be shorter than ``limit``.
        """
        now = now or self.clock.now()
        now_text = utc_iso(now)
        horizon = utc_iso(now + timedelta(seconds=self.max_wait_s if max_wait_s is None else max_wait_s))
        stored_before_now = "TRUE" if waiting else "updated_at <= ?"
        wait = f"(next_attempt_at IS NOT NULL AND next_attempt_at > ? AND next_attempt_at <= ? AND {stored_before_now})"
        marks: builtins.list[object] = [now_text, horizon] if waiting else [now_text, horizon, now_text]
        if not force:
            head = self._read(f"SELECT {wait} FROM identifications WHERE state = 'pending' ORDER BY seq LIMIT 1", marks)
            if not head or head[0][0]:
                return []
            rows = self._read(f"{_SELECT} WHERE state = 'pending' AND NOT {wait} ORDER BY seq LIMIT ?", [*marks, limit])
        else:
            rows = self._read(f"{_SELECT} WHERE state = 'pending' ORDER BY seq LIMIT ?", [limit])
        records = [_row(r) for r in rows]
        damaged = [(r, problem) for r in records if (problem := self.checksum_problem(r)) is not None]
        if damaged:
            self._quarantine(damaged)
            left_out = {r.id for r, _ in damaged}
            records = [r for r in records if r.id not in left_out]
        return records

    def checksum_problem(self, record: Identification) -> str | None:
        """None when ``record``'s fields still match its checksum; otherwise what is wrong."""
        return checksum_problem({name: getattr(record, name) for name in (*FIELDS, *REFUSAL_FIELDS)}, record.checksum)

    def _quarantine(self, damaged: builtins.list[tuple[Identification, str]]) -> None:
        """pending -> quarantined, with the reason: never sent, kept for inspection, reported."""
        now = utc_iso(self.clock.now())
        seqs = ", ".join(str(r.seq) for r, _ in damaged[:20]) + (", ..." if len(damaged) > 20 else "")
        message = f"{len(damaged)} identification{'s' if len(damaged) > 1 else ''} quarantined, never sent (seq {seqs}): {damaged[0][1]}"
        with self._lock, self._write(self.db, "quarantine damaged identifications"):
            for record, problem in damaged:
                self.db.execute(
                    "UPDATE identifications SET state = 'quarantined', quarantine_reason = ?, next_attempt_at = NULL, updated_at = ? "
                    "WHERE id = ? AND state = 'pending'",
                    [_clip(problem), now, record.id],
                )
            self._log_integrity(self.db, QUARANTINED, message)
        log.error("outbox: %s", message)

    def seconds_until_due(self, *, now: datetime | None = None, max_wait_s: float | None = None) -> float | None:
        """How long until :meth:`due` has something: 0 if now, None if nothing is pending."""
        row = self._read("SELECT next_attempt_at, updated_at FROM identifications WHERE state = 'pending' ORDER BY seq LIMIT 1")
        if not row:
            return None
        now = now or self.clock.now()
        if row[0][0] is None or parse_utc(row[0][1]) > now:  # due now, or stored before a step back: due
            return 0.0
        wait = (parse_utc(row[0][0]) - now).total_seconds()
        cap = self.max_wait_s if max_wait_s is None else max_wait_s
        return 0.0 if wait <= 0 or wait > cap else wait

    def get(self, id: str) -> Identification | None:
        """One record by its id (the UUID), or None."""
        rows = self._read(f"{_SELECT} WHERE id = ?", [id])
        return _row(rows[0]) if rows else None

    def find(self, ref: str) -> Identification:
        """One identification by what a technician types: its seq, its id, or a unique id prefix.

        Digits only are a seq as ``kiosk queue list`` shows it, numbered for this outbox's
        ``kiosk_id`` (records made under an earlier kiosk id have their own numbers: give their
        id). Otherwise the whole id, or at least :data:`MIN_ID_PREFIX` hex characters of its
        start, in any case. Raises :class:`NotFound` saying why (no match, or how many)::

            outbox.find("42")          # seq 42 of this kiosk id
            outbox.find("9f1c")        # the one id starting 9f1c
        """
        ref = ref.strip()
        shown = f'"{escape(ref, 40)}"'  # typed by someone: shown harmless and short
        if re.fullmatch(r"[0-9]+", ref):
            return self._find_seq(ref)
        if (record := self.get(ref)) is not None:
            return record
        prefix = ref.lower()
        if not re.fullmatch(r"[0-9a-f-]*", prefix) or len(prefix.replace("-", "")) < MIN_ID_PREFIX:
            raise NotFound(
                f"no identification {shown}: give its seq (digits), its id, or at least {MIN_ID_PREFIX} hex characters of the id"
            )
        count, records = self._starting(prefix)
        if count == 1:
            return records[0]
        if count == 0:
            raise NotFound(f"no identification with an id starting {shown}")
        raise NotFound(f"{count} identifications have an id starting {shown}: give more of the id", records, count)

    def _starting(self, prefix: str) -> tuple[int, tuple[Identification, ...]]:
        """How many ids start with ``prefix`` (lower case), and the first few of them by seq."""
        starts = "WHERE substr(lower(id), 1, ?) = ?"
        (count,) = self._read(f"SELECT count(*) FROM identifications {starts}", [len(prefix), prefix])[0]
        rows = self._read(f"{_SELECT} {starts} ORDER BY seq LIMIT ?", [len(prefix), prefix, MAX_MATCHES_LISTED]) if count else []
        return count, tuple(_row(r) for r in rows)

    def _find_seq(self, digits: str) -> Identification:
        """Seq ``digits`` of this kiosk id; :class:`NotFound` names other kiosk ids' records with
        that seq, and ids that start with those digits (digits alone are always a seq)."""
        # int() of thousands of digits raises; more than 19 is beyond any seq anyway.
        seq = int(digits) if len(digits.lstrip("0")) <= 19 else _MAX_SEQ + 1
        rows = self._read(f"{_SELECT} WHERE seq = ? ORDER BY kiosk_id = ? DESC, kiosk_id", [seq, self.kiosk_id]) if seq <= _MAX_SEQ else []
        records = [_row(r) for r in rows]
        if records and records[0].kiosk_id == self.kiosk_id:
            return records[0]
        shown = escape(digits.lstrip("0") or "0", 40)
        hints = (
            [f"other kiosk ids' seq {shown}: " + ", ".join(f"{r.id} of kiosk id {r.kiosk_id!r}" for r in records) + "; give the id"]
            if records
            else []
        )
        if len(digits) >= MIN_ID_PREFIX and (count := self._starting(digits)[0]):
            hints.append(
                f"{count} id(s) start with {escape(digits, 40)}: digits alone are a seq, give the id up to its first letter or dash"
            )
        raise NotFound(f"no identification with seq {shown} for kiosk id {self.kiosk_id!r}" + (f" ({'; '.join(hints)})" if hints else ""))

    def list(self, state: str | None = None, *, limit: int | None = None) -> builtins.list[Identification]:
        """Records by ``seq``, optionally only one state (pending, delivered, dead, quarantined)."""
        if state is not None and state not in STATES:
            raise ValueError(f"state must be one of {', '.join(STATES)}, got {state!r}")
        where, params = (" WHERE state = ?", [state]) if state else ("", [])
        tail = " LIMIT ?" if limit is not None else ""
        rows = self._read(f"{_SELECT}{where} ORDER BY seq{tail}", params + ([limit] if limit is not None else []))
        return [_row(r) for r in rows]

    def stats(self) -> OutboxHealth:
        """Counts and health for status: the count per state, oldest pending age, last error, corrupt
        files, and ``integrity``: the problems found with the outbox itself not yet acknowledged
        (losses, salvages, quarantines; the newest :data:`MAX_INTEGRITY_LISTED`), summed up in
        ``integrity_fault`` (None when there are none)."""
        counts = dict.fromkeys(STATES, 0)
        refusals = 0
        for state, n, refused in self._read("SELECT state, count(*), sum(kind = 'refusal') FROM identifications GROUP BY state"):
            counts[state] = n
            refusals += refused or 0
        oldest = self._read("SELECT scanned_at FROM identifications WHERE state = 'pending' ORDER BY seq LIMIT 1")
        last = self._read(
            "SELECT last_error, updated_at FROM identifications WHERE state = 'pending' AND last_error IS NOT NULL "
            "ORDER BY updated_at DESC LIMIT 1"
        )
        seq = self._read("SELECT last_seq FROM sequences WHERE kiosk_id = ?", [self.kiosk_id])
        pos_outcomes: dict[str, int] = {
            outcome: n
            for outcome, n in self._read(
                "SELECT pos_outcome, count(*) FROM identifications WHERE pos_outcome IS NOT NULL GROUP BY pos_outcome ORDER BY 1"
            )
        }
        (open_problems,) = self._read("SELECT count(*) FROM integrity_log WHERE acknowledged_at IS NULL")[0]
        problems = [
            IntegrityProblem(found_at, kind, message)
            for found_at, kind, message in reversed(self._read(
                "SELECT found_at, kind, message FROM integrity_log WHERE acknowledged_at IS NULL ORDER BY id DESC LIMIT ?",
                [MAX_INTEGRITY_LISTED],
            ))
        ]  # fmt: skip
        summary = [p.message for p in problems[-3:]] + ([self.mark_error] if self.mark_error else [])
        if open_problems > 3:
            summary.insert(0, f"{open_problems} problems, the newest:")
        age = None
        if oldest:
            age = self.age_s(parse_utc(oldest[0][0]))
        return OutboxHealth(
            path=str(self.path),
            pending=counts[PENDING],
            delivered=counts[DELIVERED],
            dead=counts[DEAD],
            quarantined=counts[QUARANTINED],
            refusals=refusals,
            pos_outcomes=pos_outcomes,
            oldest_pending_scanned_at=oldest[0][0] if oldest else None,
            oldest_pending_age_s=age,
            last_error=last[0][0] if last else None,
            last_error_at=last[0][1] if last else None,
            last_seq=seq[0][0] if seq else 0,
            last_commit_error=self.last_commit_error,
            moved_aside=str(self.moved_aside) if self.moved_aside else None,
            corrupt_files=[str(p) for p in self.corrupt_files()],
            integrity=problems,
            integrity_unacknowledged=open_problems,
            mark_error=self.mark_error,
            integrity_fault="; ".join(summary) or None,
        )

    def age_s(self, moment: datetime) -> float:
        """Seconds since ``moment`` (a stored wall time). One stored before the wall clock was
        stepped back is ahead of now: it is measured on the timeline this process saw before the
        step (the latest wall time seen, plus the monotonic time since), not as 0 s old."""
        now, mono = self.clock.now(), self.clock.monotonic()
        with self._lock:
            seen = self._timeline
            if seen is None or now >= seen[0] + timedelta(seconds=mono - seen[1]):
                self._timeline = seen = (now, mono)
        reference = now if moment <= now else seen[0] + timedelta(seconds=mono - seen[1])
        return max(0.0, (reference - moment).total_seconds())

    def acknowledge_integrity(self) -> int:
        """A technician has seen the integrity problems: they leave status and the fault clears.
        The records stay as they are (a quarantined one is still never sent). Returns how many."""
        now = utc_iso(self.clock.now())
        with self._lock, self._write(self.db, "acknowledge integrity problems"):
            return self.db.execute("UPDATE integrity_log SET acknowledged_at = ? WHERE acknowledged_at IS NULL", [now]).rowcount

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
            self.mark.close()

    def __enter__(self) -> Outbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _IntegrityFailed(sqlite3.DatabaseError):
    """PRAGMA integrity_check did not answer "ok"."""


def _is_corruption(e: sqlite3.Error) -> bool:
    return getattr(e, "sqlite_errorcode", None) in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB)
