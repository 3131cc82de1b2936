"""Where the central keeps what kiosks send: one interface, two databases.

- :mod:`central.storage.sqlite`      one SQLite file: the embedded default (demo, tests, one machine)
- :mod:`central.storage.postgresql`  PostgreSQL through psycopg 3 and a connection pool (a fleet)
- :mod:`central.storage.migrations`  the versioned schema of each, applied in order at open

Chosen by URL (``kiosk central --db``): ``sqlite:PATH`` (a bare PATH is SQLite too) or
``postgresql://user@host/dbname``::

    store = open_store("sqlite:/var/lib/central/central.db")
    outcomes = store.record(batch.kiosk_id, batch.site, records, version="0.1.0")

Both keep each identification once under its id and once under (kiosk, seq). A record sent again
exactly as stored is a ``duplicate`` (its receipt counted); the same id, or the same (kiosk, seq),
with anything else different is ``rejected`` with a ``conflict: ...`` reason, kept in the conflicts
an operator can list: a bug or a forgery, never silently dropped.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from central.contract import IDENTIFICATION, Identification


class StoreBusy(Exception):
    """The database cannot take this request now (pool exhausted, locked): HTTP 503 with Retry-After.

    Nothing of the request was stored; the kiosk retries later and loses nothing."""


class StoreError(Exception):
    """The database cannot be opened or migrated (the message says which and why)."""


@dataclass(frozen=True)
class Outcome:
    """What became of one valid record of a batch: ``accepted``, ``duplicate``, or ``rejected``
    with a ``conflict: ...`` reason."""

    status: str
    reason: str | None = None


class Store(Protocol):
    """What the HTTP side needs of a database. Every method is safe to call from many threads."""

    def record(self, kiosk_id: str, site: str, records: Sequence[Identification], *, version: str | None = None) -> list[Outcome]:
        """Store a batch in one transaction; one :class:`Outcome` per record, in order.

        ``version``: what the kiosk reports running (its User-Agent), kept as its last contact."""
        ...

    def identifications(self, kind: str = IDENTIFICATION) -> list[dict]:
        """Every record of ``kind`` held, in order of first arrival (``GET /v1/identifications``)."""
        ...

    def conflicts(self, limit: int) -> list[dict]:
        """The latest conflicting records refused (newest first, at most ``limit``)."""
        ...

    def reissue(self, contract: str, current_issue: int) -> tuple[int, bool]:
        """Record a card's re-issue: (the list version, whether it changed); ValueError if lower."""
        ...

    def replaced_since(self, since: int) -> tuple[int, bool, list[tuple[str, int]]]:
        """(version, complete, [(contract, current issue)]) since list version ``since``."""
        ...

    def seqs_held(self, kiosk_id: str, max_gaps: int) -> dict:
        """One kiosk's accounting (``GET /v1/kiosks/{kiosk}/seqs``), from indexes, not scans."""
        ...

    def fleet(self) -> list[dict]:
        """Every kiosk's last contact, site, version, highest and contiguous seq, missing, repeats
        and conflicts (``GET /v1/kiosks``)."""
        ...

    def kiosk_of_token(self, token_hash: str) -> str | None:
        """The kiosk a token (by its hash, :func:`central.credentials.token_hash`) is bound to,
        if it is issued and neither revoked nor past its rotation grace."""
        ...

    def set_token(self, kiosk_id: str, token_hash: str, *, old_valid_s: float) -> int:
        """Bind a new token to ``kiosk_id``; the kiosk's earlier tokens stay valid ``old_valid_s``
        seconds more (0: revoked now). The number of earlier tokens that were still valid."""
        ...

    def valid_tokens(self, kiosk_id: str) -> int:
        """How many tokens of ``kiosk_id`` are valid now (``token issue`` refuses a kiosk that has one)."""
        ...

    def revoke_tokens(self, kiosk_id: str) -> int:
        """Revoke every token of ``kiosk_id`` now; how many were valid."""
        ...

    def ping(self) -> None:
        """Raise :class:`StoreBusy` or :class:`StoreError` if the database cannot answer now."""
        ...

    def close(self) -> None: ...


def open_store(url: str) -> Store:
    """The store a ``--db`` value names; :class:`StoreError` for a URL of no known kind.

    >>> open_store("mysql://x")
    Traceback (most recent call last):
    ...
    central.storage.StoreError: --db must be sqlite:PATH, a file path, or postgresql://...; got a mysql: URL
    """
    if url.startswith(("postgresql://", "postgres://")):
        from central.storage.postgresql import PostgresStore

        return PostgresStore(url)
    scheme, sep, rest = url.partition(":")
    if sep and scheme == "sqlite":
        path = rest
    elif sep and "/" not in scheme and len(scheme) > 1 and rest.startswith("//"):
        raise StoreError(f"--db must be sqlite:PATH, a file path, or postgresql://...; got a {scheme}: URL")
    else:
        path = url
    from central.storage.sqlite import SqliteStore

    return SqliteStore(path)
