"""The kiosk's copy of the replaced-card list: its own SQLite file beside the outbox.

One table, ``cards (contract TEXT PRIMARY KEY, current_issue INTEGER) WITHOUT ROWID`` (a million
contracts are ~25 MB, docs/BENCHMARKS.md), and ``meta`` for the version and the last attempts. A
list is applied in one transaction: a complete one replaces every row, a delta raises the rows it
names; a reader (the scan loop) sees the old copy or the new one, never half of one (WAL: readers
never wait for the writer). Each thread has its own read connection::

    copy = ReplacedCards("/var/lib/kiosk/revocations.db")
    copy.current_issue("0012345678")          # 2, or None when the contract was never re-issued
    copy.apply(document, key_id="3f1c...")    # one transaction
    copy.info()                               # version, synced_at, count, size, last attempt

The file holds contract numbers (personal data): mode 0640, like the outbox (the daemon's user
writes it, the technicians' group reads it with ``kiosk revocations status|check``). A lost last commit
(power cut) costs only a sync: ``synchronous=NORMAL``.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from pathlib import Path

from device.clock import Clock, SystemClock, parse_utc, utc_iso
from device.path_kinds import database_problem
from device.revocations.document import ReplacedList
from device.sqlite_readers import read_only_uri

log = logging.getLogger(__name__)

#: The copy's mode: the daemon's user writes it, the technicians' group (the folder's) reads it,
#: as the outbox (contract numbers are personal data: nobody else).
FILE_MODE = 0o640
BUSY_TIMEOUT_S = 10.0
#: The daemon's copy that cannot be made at start (a full disk) is tried again at most this often.
RETRY_OPEN_S = 5.0

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS cards (contract TEXT PRIMARY KEY, current_issue INTEGER NOT NULL) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value) WITHOUT ROWID",
)
#: The meta keys: the copy's version, its size, when and with which key it was last confirmed,
#: and the last attempt (its time and, if it failed, why).
META_KEYS = ("version", "count", "issued_at", "key_id", "synced_at", "attempt_at", "attempt_error")


_INSERT = "INSERT INTO cards (contract, current_issue) VALUES (?, ?)"
_RAISE = (
    "INSERT INTO cards (contract, current_issue) VALUES (?, ?) "
    "ON CONFLICT (contract) DO UPDATE SET current_issue = max(current_issue, excluded.current_issue)"
)
#: Rows written per executemany within the one transaction: between chunks the GIL goes to the scan loop.
APPLY_CHUNK = 500


class RevocationsError(Exception):
    """The copy cannot be read or written; ``str()`` says what and where."""


class ReplacedCards:
    """The copy in ``path``; ``create=False`` for a reader (the CLI): never made, opened read-only.

    ``retry_s`` (the daemon): a copy that cannot be made or opened (a full disk) does not raise
    here; every use raises :class:`RevocationsError` saying why (the ``revocations`` fault, cards
    still identified) and tries again, at most every ``retry_s``, until it works.
    """

    def __init__(self, path: str | os.PathLike, *, clock: Clock | None = None, create: bool = True, retry_s: float = 0.0):
        self.path = Path(path)
        self.clock = clock or SystemClock()
        self._local = threading.local()
        self._write_lock = threading.Lock()
        self.read_only = not create
        if not create and not self.path.exists():
            raise RevocationsError(f"there is no replaced-card list at {self.path} yet (the daemon or `kiosk revocations sync` makes it)")
        #: Where a damaged copy found at this open was moved to (None if it was fine).
        self.moved_aside: Path | None = None
        if problem := database_problem(self.path):
            raise RevocationsError(f"revocations.path: {problem}")
        #: Why the copy could not be made yet (``retry_s``), None once it is.
        self.unmade: str | None = None
        self._retry_s, self._retry_at = retry_s, 0.0
        self._make_lock = threading.Lock()
        if create:
            try:
                self._make()
            except RevocationsError as e:
                if not retry_s:
                    raise
                self.unmade, self._retry_at = str(e), time.monotonic() + retry_s
                log.error("%s; cards are identified without it meanwhile, and it is tried again every %g s", e, retry_s)

    def _make(self) -> None:
        try:
            self._create()
        except sqlite3.DatabaseError as e:
            if getattr(e, "sqlite_errorcode", None) not in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB):
                raise RevocationsError(f"cannot open the replaced-card list {self.path}: {e}") from e
            self._move_aside(e)
        except OSError as e:
            raise RevocationsError(f"cannot open the replaced-card list {self.path}: {e.strerror or e}") from e

    def _make_again(self) -> None:
        """The copy could not be made at start: try again (at most every ``retry_s``), or say why not."""
        with self._make_lock:
            if self.unmade is None:
                return
            if time.monotonic() < self._retry_at:
                raise RevocationsError(self.unmade)
            why, self.unmade = self.unmade, None  # _create's own connection must not come back here
            try:
                self._make()
            except RevocationsError as e:
                self.unmade, self._retry_at = str(e), time.monotonic() + self._retry_s
                raise
            log.info("the replaced-card list %s is opened (it could not be at start: %s)", self.path, why)

    def _create(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not self.path.exists():
            os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY, FILE_MODE))
        db = self._db()
        with db:
            for statement in _SCHEMA:
                db.execute(statement)

    def _move_aside(self, error: sqlite3.Error) -> None:
        """A damaged copy is only a cache of the central's list: kept aside for a look, a new one
        started (the next sync fills it; until then the ``revocations`` fault says there is none)."""
        self.close()
        if problem := database_problem(self.path):  # never someone else's file (a typo in revocations.path)
            raise RevocationsError(f"the replaced-card list {self.path} cannot be opened ({error}) and is not moved aside: {problem}")
        stamp = self.clock.now().strftime("%Y%m%dT%H%M%SZ")
        target = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
        try:
            for suffix in ("-wal", "-shm"):
                Path(f"{self.path}{suffix}").unlink(missing_ok=True)
            self.path.rename(target)
            self._create()
        except (OSError, sqlite3.Error) as e:
            raise RevocationsError(f"the replaced-card list {self.path} is damaged ({error}) and cannot be replaced: {e}") from e
        self.moved_aside = target
        log.error("the replaced-card list %s is damaged (%s): moved aside to %s; the next sync fetches it whole", self.path, error, target)

    @classmethod
    def from_config(cls, cfg, **options) -> ReplacedCards:
        return cls(list_path(cfg), **options)

    def _db(self) -> sqlite3.Connection:
        """This thread's connection (the scan loop reads on its own, the sync thread writes on its own)."""
        if self.unmade is not None:
            self._make_again()
        db = getattr(self._local, "db", None)
        if db is None and self.read_only:
            # As the outbox's readers do (device.sqlite_readers).
            db = sqlite3.connect(read_only_uri(self.path), uri=True, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)
            self._local.db = db
        elif db is None:
            db = sqlite3.connect(str(self.path), timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA journal_mode = WAL")
            db.execute("PRAGMA synchronous = NORMAL")
            self._local.db = db
        return db

    # --- the scan loop's question -----------------------------------------------------------

    def current_issue(self, contract: str) -> int | None:
        """The contract's current card issue if its card was ever re-issued, else None."""
        try:
            row = self._db().execute("SELECT current_issue FROM cards WHERE contract = ?", (contract,)).fetchone()
        except sqlite3.Error as e:
            raise RevocationsError(f"cannot read the replaced-card list {self.path}: {e}") from e
        return row[0] if row else None

    def replaced_by(self, card) -> int | None:
        """The current issue when ``card`` (a :class:`~device.card.Card`) is a replaced one, else None.

        A card whose issue is the current one, or higher (re-issued after the last sync), is not."""
        if card.issue is None:
            return None
        current = self.current_issue(card.contract)
        return current if current is not None and card.issue < current else None

    # --- writing ------------------------------------------------------------------------------

    def apply(self, document: ReplacedList, *, key_id: str) -> int:
        """Apply a verified list in one transaction; the rows it changed. The caller checked its version."""
        now = utc_iso(self.clock.now())
        rows = list(document.cards.items())  # the central sends them in contract order
        with self._write_lock:
            db = self._db()
            try:
                db.execute("BEGIN IMMEDIATE")
                try:
                    if document.complete:
                        db.execute("DELETE FROM cards")
                    for start in range(0, len(rows), APPLY_CHUNK):
                        db.executemany(_INSERT if document.complete else _RAISE, rows[start : start + APPLY_CHUNK])
                        time.sleep(0)  # hand the GIL to the scan loop between chunks (docs/BENCHMARKS.md)
                    (count,) = db.execute("SELECT count(*) FROM cards").fetchone()
                    self._set(db, version=document.version, count=count, issued_at=document.issued_at, key_id=key_id,
                              synced_at=now, attempt_at=now, attempt_error=None)  # fmt: skip
                    db.execute("COMMIT")
                except BaseException:
                    db.execute("ROLLBACK")
                    raise
                if document.complete:
                    # A complete list wrote every page to the WAL (twice: the old rows' removal and
                    # the new rows): copy it back and truncate it, or the pair of files stays double size.
                    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error as e:
                raise RevocationsError(f"cannot write the replaced-card list {self.path}: {e}") from e
        return len(rows)

    def confirm(self) -> None:
        """The central answered with nothing new: the copy is current as of now."""
        now = utc_iso(self.clock.now())
        self._write(synced_at=now, attempt_at=now, attempt_error=None)

    def note_failure(self, error: str) -> None:
        """An attempt failed: the copy stays as it was; status and the fault say why."""
        self._write(attempt_at=utc_iso(self.clock.now()), attempt_error=error)

    def _write(self, **values) -> None:
        with self._write_lock:
            db = self._db()
            try:
                db.execute("BEGIN IMMEDIATE")
                self._set(db, **values)
                db.execute("COMMIT")
            except sqlite3.Error as e:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise RevocationsError(f"cannot write the replaced-card list {self.path}: {e}") from e

    @staticmethod
    def _set(db: sqlite3.Connection, **values) -> None:
        db.executemany("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", list(values.items()))

    # --- what status shows --------------------------------------------------------------------

    def info(self) -> dict:
        """The copy's version, size and age, and the last attempt: for status and the fault."""
        try:
            meta = dict(self._db().execute("SELECT key, value FROM meta").fetchall())
        except sqlite3.Error as e:
            raise RevocationsError(f"cannot read the replaced-card list {self.path}: {e}") from e
        info = {key: meta.get(key) for key in META_KEYS}
        info["path"] = str(self.path)
        info["file_bytes"] = sum(p.stat().st_size for p in (self.path, Path(f"{self.path}-wal")) if p.exists())
        info["age_s"] = None
        if info["synced_at"]:
            info["age_s"] = max(0.0, (self.clock.now() - parse_utc(info["synced_at"])).total_seconds())
        return info

    @property
    def version(self) -> int | None:
        """The copy's version; None before its first sync."""
        try:
            row = self._db().execute("SELECT value FROM meta WHERE key = 'version'").fetchone()
        except sqlite3.Error as e:
            raise RevocationsError(f"cannot read the replaced-card list {self.path}: {e}") from e
        return row[0] if row else None

    def close(self) -> None:
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None


def summary(info: dict) -> str:
    """One line: ``version 7, 1203 contracts, 25.1 MB, confirmed 4 min ago``."""
    if info.get("version") is None:
        return "none yet (never synced)"
    age = info.get("age_s")
    age_text = "never" if age is None else f"{age / 60:.0f} min ago" if age < 7200 else f"{age / 3600:.1f} h ago"
    return (
        f"version {info['version']}, {info.get('count') or 0} contracts, {(info.get('file_bytes') or 0) / 1e6:.1f} MB, "
        f"confirmed by the central {age_text}"
    )


def list_path(cfg) -> Path:
    """``revocations.path``, or ``revocations.db`` beside the outbox when it is empty."""
    return Path(cfg.revocations.path) if cfg.revocations.path else Path(cfg.outbox.path).with_name("revocations.db")


def open_copy_reader(cfg) -> ReplacedCards:
    """The daemon's copy opened by another process (``kiosk revocations``, ``kiosk status``); never created.

    Root opens it as its owner (``sudo``: root must not create the -wal the daemon then cannot open)."""
    from device.outbox.reader import become_owner

    path = list_path(cfg)
    if path.exists():
        become_owner(path)
    return ReplacedCards(path, create=False)
