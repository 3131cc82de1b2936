"""The centrals a load test runs against, behind one shape: a URL, an admin token, kiosk tokens, a crash.

A :data:`CentralFactory` takes a folder for its files and gives a :class:`CentralUnderTest` for the
length of a ``with`` block. Two are known:

- :func:`reference_central`: ``kiosk central`` on SQLite (one process, the shared ``--token``); its
  "worker killed" is the whole process SIGKILLed and started again on the same port and database.
- :func:`postgresql_central`: the production central on PostgreSQL with several workers, per-kiosk
  tokens (:func:`issue_tokens`) and :func:`central.loadtest.workers.worker_killer`, on a throwaway
  PostgreSQL cluster; :func:`production_central` also runs it on SQLite::

    with reference_central(tmp_path) as central:
        fleet = build_fleet(central.credentials(kiosk_ids("storm", 200)), per_kiosk=5)
        drain(central.url, fleet, kill=central.kill_worker)
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from central.loadtest.kiosks import Credential, shared_credentials

#: The reference central's shared token in a load test (it has no per-kiosk tokens).
SHARED_TOKEN = "load-test-token"


@dataclass(frozen=True)
class CentralUnderTest:
    """A running central: its ``url``, the ``admin_token`` that may list everything, ``credentials``
    (kiosk ids -> a token each), and ``kill_worker`` (crash one worker; says what it did) if it can."""

    name: str
    url: str
    admin_token: str
    credentials: Callable[[Sequence[str]], list[Credential]]
    kill_worker: Callable[[], str] | None


CentralFactory = Callable[[Path], AbstractContextManager[CentralUnderTest]]


@contextmanager
def reference_central(folder: Path, **faults: Any) -> Iterator[CentralUnderTest]:
    """``kiosk central --db FOLDER/reference.db`` with the shared token (``faults``: as ``start_subprocess``)."""
    from central.process import start_subprocess

    Path(folder).mkdir(parents=True, exist_ok=True)
    with start_subprocess(Path(folder) / "reference.db", SHARED_TOKEN, **faults) as central:

        def crash_and_restart() -> str:
            pid = central.process.pid if central.process else None
            central.kill()
            central.restart()
            return f"SIGKILL to the reference central (pid {pid}; one process, no workers), started again on port {central.port}"

        yield CentralUnderTest(
            "sqlite (reference)", central.url, central.admin_token, lambda ids: shared_credentials(ids, SHARED_TOKEN), crash_and_restart
        )


def issue_tokens(db_url: str, kiosk_ids: Sequence[str]) -> list[Credential]:
    """A new token bound to each kiosk, written through the store (``Store.set_token``, hashed) as
    ``kiosk central token issue KIOSK --db URL`` does, without starting 10,000 processes."""
    from central.credentials import new_token, token_hash
    from central.storage import open_store

    store = open_store(db_url)
    try:
        credentials = []
        for kiosk_id in kiosk_ids:
            token = new_token()
            store.set_token(kiosk_id, token_hash(token), old_valid_s=0)
            credentials.append(Credential(kiosk_id, token))
    finally:
        store.close()
    return credentials


@contextmanager
def production_central(
    folder: Path, store: str = "postgresql", workers: int = 2, pool: str = "", **options: Any
) -> Iterator[CentralUnderTest]:
    """The production central: ``kiosk central --db URL --workers N`` with an admin token and no
    shared token, per-kiosk tokens from :func:`issue_tokens`, and
    :func:`~central.loadtest.workers.worker_killer` of the server's pid.

    ``store``: ``postgresql`` (a throwaway cluster of its own, :class:`central.pgcluster.TemporaryCluster`,
    fsync on, in the system's temporary folder, which its server user can reach) or ``sqlite`` (a file in ``folder``).
    ``pool``: the PostgreSQL pool's knobs as a URL query (``pool_max_size=1&pool_max_waiting=1``: a
    central saturated at once, answering 503 with Retry-After). ``options``: the server's, as
    :func:`central.process.start_subprocess` takes them (``retry_after_spread=2``).
    """
    from central.loadtest.workers import worker_killer
    from central.process import start_subprocess

    Path(folder).mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        if store == "postgresql":
            from central.pgcluster import TemporaryCluster

            cluster = stack.enter_context(TemporaryCluster())
            db_url = cluster.create_database("central") + (f"?{pool}" if pool else "")
        else:
            db_url = str(Path(folder) / "production.db")
        central = stack.enter_context(start_subprocess(db_url, (), files=folder, workers=workers, **options))
        assert central.process is not None
        yield CentralUnderTest(
            f"{store} (--workers {workers})",
            central.url,
            central.admin_token,
            lambda ids: issue_tokens(db_url, ids),
            worker_killer(central.process.pid),
        )


def postgresql_central(folder: Path) -> AbstractContextManager[CentralUnderTest]:
    """The production central on PostgreSQL, 2 workers (:func:`production_central`)."""
    return production_central(folder, "postgresql", 2)


def sqlite_workers_central(folder: Path) -> AbstractContextManager[CentralUnderTest]:
    """The production server on SQLite, 2 workers: what the workers add without PostgreSQL."""
    return production_central(folder, "sqlite", 2)


#: The centrals ``kiosk bench central --central NAME`` knows, by name.
CENTRALS: dict[str, CentralFactory] = {
    "sqlite": reference_central,
    "sqlite-workers": sqlite_workers_central,
    "postgresql": postgresql_central,
}
