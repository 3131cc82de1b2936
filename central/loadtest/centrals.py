"""The centrals a load test runs against, behind one shape: a URL, an admin token, kiosk tokens, a crash.

A :data:`CentralFactory` takes a folder for its files and gives a :class:`CentralUnderTest` for the
length of a ``with`` block. Two are known:

- :func:`reference_central`: ``kiosk central`` on SQLite (one process, the shared ``--token``); its
  "worker killed" is the whole process SIGKILLed and started again on the same port and database.
- :func:`postgresql_central`: the production central on PostgreSQL with several workers, per-kiosk
  tokens (:func:`issue_tokens`) and :func:`central.loadtest.workers.worker_killer`. It needs the
  throwaway cluster and the multi-worker server of issue 25; until they are here it raises
  :class:`CentralNotWired`, and ``kiosk bench central`` says so and measures the rest::

    with reference_central(tmp_path) as central:
        fleet = build_fleet(central.credentials(kiosk_ids("storm", 200)), per_kiosk=5)
        drain(central.url, fleet, kill=central.kill_worker)
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
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


class CentralNotWired(RuntimeError):
    """This central cannot be started from here yet (the message says what is missing)."""


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
def postgresql_central(folder: Path, workers: int = 2) -> Iterator[CentralUnderTest]:
    """The production central: a throwaway PostgreSQL cluster in ``folder``, ``kiosk central --db URL
    --workers N`` with an admin token, per-kiosk tokens from :func:`issue_tokens`, and
    :func:`~central.loadtest.workers.worker_killer` of the server's pid.

    To wire (issue 25, at merge): start the cluster (central.pgcluster), start the server on its URL
    with ``--workers`` and ``--admin-token-file`` and read its URL as ``central.process`` does, then
    ``yield CentralUnderTest("postgresql", url, admin, lambda ids: issue_tokens(db_url, ids),
    worker_killer(server_pid))``.
    """
    raise CentralNotWired(
        "the PostgreSQL central is not wired into the load test yet: it needs central.pgcluster and "
        "`kiosk central --workers` (central/loadtest/centrals.py: postgresql_central)"
    )
    yield  # unreachable: makes this a generator for @contextmanager


#: The centrals ``kiosk bench central --central NAME`` knows, by name.
CENTRALS: dict[str, CentralFactory] = {"sqlite": reference_central, "postgresql": postgresql_central}
