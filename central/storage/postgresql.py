"""The fleet's store: PostgreSQL through psycopg 3 and a pool of connections per worker process.

A batch is one transaction: the kiosk's row in ``kiosks`` is locked first (so one kiosk's batches
are serialised and its accounting advances in order, while different kiosks write side by side),
then one ``INSERT ... SELECT FROM unnest(...) ON CONFLICT DO NOTHING RETURNING id`` for the batch,
and the records not inserted are judged (:mod:`central.storage.batch`). Committed before the
answer; PostgreSQL's ``fsync`` and ``synchronous_commit`` make an ``accepted`` durable.

The pool is set in the URL's query (taken out before connecting), e.g.
``postgresql://central@db/central?pool_max_size=8&pool_timeout_s=5``; see :data:`POOL_DEFAULTS`.
A request that finds no connection in time, a full queue, or a connection lost mid-request gets
:class:`~central.storage.StoreBusy` (503 with Retry-After): nothing of it was committed.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout, TooManyRequests

from central.contract import IDENTIFICATION, Identification
from central.storage import Outcome, StoreBusy, StoreError
from central.storage.accounting import FLEET_COLUMNS, GAPS, REUSED, SEQS_ABOVE, UPDATE_KIOSK, accounting, advance_contiguous, fleet_row
from central.storage.batch import LISTED_COLUMNS, SEQ_KEY, Payload, judge
from central.storage.card_issues import UPSERT_CARD_ISSUE, reissue_version
from central.storage.migrations import migrate_postgresql

#: The pool's knobs in the URL's query, and their defaults:
#: - ``pool_min_size`` 1: one connection ready at start, the others opened as load comes;
#: - ``pool_max_size`` 8: connections per worker process. A batch holds one for a single short
#:   transaction; more connections than the machine's cores mostly add contention, and 4 workers
#:   x 8 stay well under PostgreSQL's default max_connections (100);
#: - ``pool_max_waiting`` 256: requests queued for a connection (one more is refused at once, 503):
#:   as many as a production worker runs store calls at once (``central.asgi.STORE_THREADS``), so that
#:   it is time, not a count, that turns a request away. A count of 64 answered 16,616 needless 503s
#:   in a storm the pool drained within a second of queueing, and tripled its time (BENCHMARKS.md);
#: - ``pool_timeout_s`` 5: the longest a request waits for a connection before its 503 + Retry-After:
#:   the database is saturated when it cannot start a batch within 5 s (a kiosk waits 15 s for an answer).
POOL_DEFAULTS = {"pool_min_size": 1, "pool_max_size": 8, "pool_max_waiting": 256, "pool_timeout_s": 5.0}

_INSERT = (
    "INSERT INTO identifications (id, seq, format, contract, card_issue, kiosk, site, scanned_at, clock_synced, symbology, "
    "received_at, kind, current_issue) "
    "SELECT u.id, u.seq, u.format, u.contract, u.card_issue, %s, %s, u.scanned_at, u.clock_synced, u.symbology, %s, u.kind, "
    "u.current_issue FROM unnest(%s::text[], %s::bigint[], %s::text[], %s::text[], %s::int[], %s::text[], %s::bool[], %s::text[], "
    "%s::text[], %s::int[]) WITH ORDINALITY "
    "AS u(id, seq, format, contract, card_issue, scanned_at, clock_synced, symbology, kind, current_issue, n) "
    "ORDER BY u.n ON CONFLICT DO NOTHING RETURNING id"
)
#: A token still valid at the time given.
_VALID = "(valid_until IS NULL OR valid_until > %s)"
_PAYLOAD_COLUMNS = "kiosk, seq, format, contract, card_issue, scanned_at, clock_synced, symbology, kind, current_issue"


#: psycopg's own default: a query run more than 5 times on a connection is prepared on the server.
#: ``?prepare_threshold=none`` turns that off, for PgBouncer in transaction mode (docs/CENTRAL.md).
DEFAULT_PREPARE_THRESHOLD = 5


@dataclass(frozen=True)
class PoolSettings:
    min_size: int
    max_size: int
    max_waiting: int
    timeout_s: float
    prepare_threshold: int | None = DEFAULT_PREPARE_THRESHOLD


def split_url(url: str) -> tuple[str, PoolSettings, str]:
    """(the URL to connect to, the pool's settings, the URL to name in messages: no password).

    >>> conninfo, pool, shown = split_url("postgresql://c:secret@db/central?pool_max_size=4&sslmode=require")
    >>> conninfo, pool.max_size, pool.timeout_s, shown
    ('postgresql://c:secret@db/central?sslmode=require', 4, 5.0, 'postgresql://c@db/central')
    >>> split_url("postgresql://c@db/central?prepare_threshold=none")[1].prepare_threshold is None
    True
    """
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    values: dict[str, float] = dict(POOL_DEFAULTS)
    prepare_threshold: int | None = DEFAULT_PREPARE_THRESHOLD
    for name, text in query:
        if name == "prepare_threshold":
            if text.lower() == "none":
                prepare_threshold = None
            elif text.isascii() and text.isdigit():
                prepare_threshold = int(text)
            else:
                raise StoreError(f"--db: prepare_threshold must be a whole number or none, got {text!r}")
        if name in POOL_DEFAULTS:
            try:
                values[name] = type(POOL_DEFAULTS[name])(text)
            except ValueError:
                raise StoreError(f"--db: {name} must be a number, got {text!r}") from None
            if values[name] < (1 if name == "pool_max_size" else 0):
                raise StoreError(f"--db: {name} is too small: {text}")
    rest = [(n, v) for n, v in query if n not in POOL_DEFAULTS and n != "prepare_threshold"]
    netloc = parts.netloc.rpartition("@")
    shown_netloc = (netloc[0].partition(":")[0] + "@" + netloc[2]) if netloc[1] else parts.netloc
    pool = PoolSettings(
        int(values["pool_min_size"]), int(values["pool_max_size"]), int(values["pool_max_waiting"]), values["pool_timeout_s"],
        prepare_threshold,
    )  # fmt: skip
    if pool.min_size > pool.max_size:
        raise StoreError(f"--db: pool_min_size ({pool.min_size}) is above pool_max_size ({pool.max_size})")
    return urlunsplit(parts._replace(query=urlencode(rest))), pool, urlunsplit((parts.scheme, shown_netloc, parts.path, "", ""))


def _text(moment: datetime) -> str:
    """As the SQLite store writes a timestamp: UTC, milliseconds."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")


class PostgresStore:
    """Identifications held in a PostgreSQL database. Safe to share between threads (the pool's)."""

    def __init__(self, url: str):
        conninfo, self.pool_settings, self.where = split_url(url)
        try:
            with psycopg.connect(conninfo, autocommit=True, connect_timeout=10) as conn:
                migrate_postgresql(conn, self.where)
        except psycopg.Error as e:
            raise StoreError(f"{self.where}: cannot open the PostgreSQL database: {str(e).strip()}") from e
        s = self.pool_settings
        self._pool = ConnectionPool(
            conninfo,
            min_size=s.min_size,
            max_size=s.max_size,
            max_waiting=s.max_waiting,
            timeout=s.timeout_s,
            # Transactions are explicit (conn.transaction()); prepare_threshold: see DEFAULT_PREPARE_THRESHOLD.
            kwargs={"autocommit": True, "prepare_threshold": s.prepare_threshold},
            name="central",
            open=True,
        )

    @contextmanager
    def _connection(self) -> Iterator[psycopg.Connection]:
        """A pooled connection; no connection in time, a full queue or a lost connection: StoreBusy."""
        try:
            with self._pool.connection() as conn:
                yield conn
        except (PoolTimeout, TooManyRequests) as e:
            raise StoreBusy(f"{self.where}: no database connection free ({type(e).__name__}): {e}") from e
        except psycopg.OperationalError as e:
            raise StoreBusy(f"{self.where}: the database did not answer: {str(e).strip()}") from e

    # --- batches -------------------------------------------------------------------------------------

    def record(self, kiosk_id: str, site: str, records: Sequence[Identification], *, version: str | None = None) -> list[Outcome]:
        """Store a batch in one transaction; one outcome per record (see :mod:`central.storage.batch`)."""
        now = datetime.now(UTC)
        with self._connection() as conn, conn.transaction():
            # The kiosk's row, locked until commit: this kiosk's batches go one after the other.
            (contiguous,) = conn.execute(
                "INSERT INTO kiosks (kiosk, site, first_contact, last_contact) VALUES (%s, %s, %s, %s) "
                "ON CONFLICT (kiosk) DO UPDATE SET last_contact = excluded.last_contact RETURNING contiguous_through",
                (kiosk_id, site, now, now),
            ).fetchone()

            def insert(rows: list[Identification]) -> set[str]:
                columns = (
                    [r.id for r in rows], [r.seq for r in rows], [r.format for r in rows], [r.contract for r in rows],
                    [r.card_issue for r in rows], [r.scanned_at for r in rows], [bool(r.clock_synced) for r in rows],
                    [r.symbology for r in rows], [r.kind for r in rows], [r.current_issue for r in rows],
                )  # fmt: skip
                return {i for (i,) in conn.execute(_INSERT, (kiosk_id, site, now, *columns)).fetchall()}

            def look_up(ids: set[str], seqs: set[int]) -> tuple[dict[str, Payload], dict[int, tuple[str, Payload]]]:
                by_id = {
                    row[0]: tuple(row[1:])
                    for row in conn.execute(f"SELECT id, {_PAYLOAD_COLUMNS} FROM identifications WHERE id = ANY(%s::text[])", (list(ids),))
                }
                by_seq = {
                    row[2]: (row[0], tuple(row[1:]))
                    for row in conn.execute(
                        f"SELECT id, {_PAYLOAD_COLUMNS} FROM identifications WHERE kiosk = %s AND seq = ANY(%s::bigint[])",
                        (kiosk_id, list(seqs)),
                    )
                }
                return by_id, by_seq

            judged = judge(kiosk_id, records, insert, look_up)
            if judged.receipts:
                conn.execute(
                    "UPDATE identifications SET receipts = receipts + u.n FROM unnest(%s::text[], %s::int[]) AS u(id, n) "
                    "WHERE identifications.id = u.id",
                    (list(judged.receipts), list(judged.receipts.values())),
                )
            if judged.conflicts:
                with conn.cursor() as cursor:
                    cursor.executemany(
                        "INSERT INTO conflicts (kiosk, seq, id, key, reason, received_at, first_id) VALUES (%s, %s, %s, %s, %s, %s, %s)",
                        [(c.kiosk, c.seq, c.id, c.key, c.reason, now, c.first_id) for c in judged.conflicts],
                    )
            if contiguous + 1 in judged.accepted_seqs:
                contiguous = advance_contiguous(
                    contiguous, lambda after, limit: [s for (s,) in conn.execute(SEQS_ABOVE, (kiosk_id, after, limit))]
                )
            conn.execute(
                UPDATE_KIOSK,
                (site, now, version, max(judged.accepted_seqs, default=0), len(judged.accepted_seqs), contiguous,
                 sum(judged.receipts.values()), len(judged.conflicts), kiosk_id),
            )  # fmt: skip
        return judged.outcomes

    def identifications(self, kind: str = IDENTIFICATION) -> list[dict]:
        """Every record of ``kind`` held, in order of first arrival (a refusal also shows ``current_issue``)."""
        columns = LISTED_COLUMNS if kind == IDENTIFICATION else (*LISTED_COLUMNS, "current_issue")
        with self._connection() as conn:
            rows = conn.execute(f"SELECT {', '.join(columns)} FROM identifications WHERE kind = %s ORDER BY arrival", (kind,)).fetchall()
        out = [dict(zip(columns, row, strict=True)) for row in rows]
        for d in out:
            d["received_at"] = _text(d["received_at"])
        return out

    def conflicts(self, limit: int) -> list[dict]:
        """The latest records refused as conflicts, newest first."""
        columns = ("kiosk", "seq", "id", "reason", "received_at", "first_id")
        with self._connection() as conn:
            rows = conn.execute(f"SELECT {', '.join(columns)} FROM conflicts ORDER BY arrival DESC LIMIT %s", (limit,)).fetchall()
        out = [dict(zip(columns, row, strict=True)) for row in rows]
        for d in out:
            d["received_at"] = _text(d["received_at"])
        return out

    # --- the replaced-card list ---------------------------------------------------------------------

    def reissue(self, contract: str, current_issue: int) -> tuple[int, bool]:
        """Record that ``contract``'s card is now at ``current_issue``: (the list version, whether it changed).

        The same issue again changes nothing; a lower one raises ValueError (issues only grow)."""
        with self._connection() as conn, conn.transaction():
            # Re-issues one at a time (each takes the next version); readers of the list are not held up.
            conn.execute("LOCK TABLE card_issues IN SHARE ROW EXCLUSIVE MODE")
            row = conn.execute("SELECT current_issue FROM card_issues WHERE contract = %s", (contract,)).fetchone()
            (version,) = conn.execute("SELECT COALESCE(MAX(version), 0) FROM card_issues").fetchone()
            new_version = reissue_version(row[0] if row else None, current_issue, version)
            if new_version is None:
                return version, False
            conn.execute(UPSERT_CARD_ISSUE.replace("?", "%s"), (contract, current_issue, new_version))
        return new_version, True

    def reissue_many(self, rows: list[tuple[str, int]]) -> int:
        """Record many re-issues in one transaction, all under one new version (benchmarks, bulk loads); the version."""
        with self._connection() as conn, conn.transaction():
            conn.execute("LOCK TABLE card_issues IN SHARE ROW EXCLUSIVE MODE")
            (version,) = conn.execute("SELECT COALESCE(MAX(version), 0) + 1 FROM card_issues").fetchone()
            conn.execute(
                "INSERT INTO card_issues (contract, current_issue, version) SELECT c, i, %s FROM unnest(%s::text[], %s::int[]) AS u(c, i) "
                "ON CONFLICT (contract) DO UPDATE SET current_issue = GREATEST(card_issues.current_issue, excluded.current_issue), "
                "version = excluded.version",
                (version, [c for c, _ in rows], [i for _, i in rows]),
            )
        return version

    def replaced_since(self, since: int) -> tuple[int, bool, list[tuple[str, int]]]:
        """(version, complete, [(contract, current issue)]) since list version ``since`` (all when 0 or unknown)."""
        with self._connection() as conn, conn.transaction():  # one snapshot for the version and the rows
            (version,) = conn.execute("SELECT COALESCE(MAX(version), 0) FROM card_issues").fetchone()
            complete = since <= 0 or since > version
            where, params = ("", ()) if complete else (" WHERE version > %s", (since,))
            rows = conn.execute(f"SELECT contract, current_issue FROM card_issues{where} ORDER BY contract", params).fetchall()
        return version, complete, [(c, i) for c, i in rows]

    # --- accounting ----------------------------------------------------------------------------------

    def seqs_held(self, kiosk_id: str, max_gaps: int) -> dict:
        """One kiosk's accounting: its row in ``kiosks`` and an index range scan above its contiguous seq."""
        with self._connection() as conn, conn.transaction():
            row = conn.execute(
                "SELECT held, highest_seq, contiguous_through, repeats, conflicts FROM kiosks WHERE kiosk = %s", (kiosk_id,)
            ).fetchone()
            held, highest, contiguous, repeats, conflicts = row or (0, 0, 0, 0, 0)
            gaps = conn.execute(GAPS, (contiguous, kiosk_id, contiguous, max_gaps + 1)).fetchall()
            reused = conn.execute(REUSED, (kiosk_id, SEQ_KEY, max_gaps + 1)).fetchall()
        return accounting(kiosk_id, held, highest, contiguous, repeats, conflicts, gaps, [s for (s,) in reused], max_gaps)

    def fleet(self) -> list[dict]:
        """Every kiosk's row of accounting, by kiosk id."""
        with self._connection() as conn:
            rows = conn.execute(f"SELECT {FLEET_COLUMNS} FROM kiosks ORDER BY kiosk").fetchall()
        return [fleet_row(row, _text) for row in rows]

    # --- tokens -------------------------------------------------------------------------------------

    def kiosk_of_token(self, token_hash: str) -> str | None:
        with self._connection() as conn:
            row = conn.execute(f"SELECT kiosk FROM tokens WHERE token_hash = %s AND {_VALID}", (token_hash, datetime.now(UTC))).fetchone()
        return row[0] if row else None

    def set_token(self, kiosk_id: str, token_hash: str, *, old_valid_s: float) -> int:
        now = datetime.now(UTC)
        with self._connection() as conn, conn.transaction():
            # A grace never lengthens a token's life: one already running out keeps its end.
            earlier = conn.execute(
                f"UPDATE tokens SET valid_until = LEAST(COALESCE(valid_until, %s), %s) WHERE kiosk = %s AND {_VALID}",
                (now + timedelta(seconds=old_valid_s), now + timedelta(seconds=old_valid_s), kiosk_id, now),
            ).rowcount
            conn.execute("INSERT INTO tokens (token_hash, kiosk, created_at) VALUES (%s, %s, %s)", (token_hash, kiosk_id, now))
        return earlier

    def valid_tokens(self, kiosk_id: str) -> int:
        with self._connection() as conn:
            return conn.execute(f"SELECT COUNT(*) FROM tokens WHERE kiosk = %s AND {_VALID}", (kiosk_id, datetime.now(UTC))).fetchone()[0]

    def revoke_tokens(self, kiosk_id: str) -> int:
        now = datetime.now(UTC)
        with self._connection() as conn, conn.transaction():
            return conn.execute(
                "UPDATE tokens SET valid_until = %s WHERE kiosk = %s AND (valid_until IS NULL OR valid_until > %s)", (now, kiosk_id, now)
            ).rowcount

    def ping(self) -> None:
        with self._connection() as conn:
            conn.execute("SELECT 1").fetchone()

    def close(self) -> None:
        self._pool.close()
