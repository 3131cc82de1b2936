"""PostgreSQL for the store tests: one throwaway cluster per test session, a fresh database per test.

``store_url`` runs a test once on each store: ``sqlite:`` a file in tmp_path, and ``postgresql://``
a new database in the session's cluster (started only when a test asks for it; see
:mod:`central.pgcluster`: Debian's postgresql package, fsync on, removed at the end).
"""

from __future__ import annotations

import itertools

import pytest

from central.pgcluster import TemporaryCluster

_databases = itertools.count(1)


@pytest.fixture(scope="session")
def pg_cluster():
    """The session's PostgreSQL cluster (a :class:`central.pgcluster.TemporaryCluster`)."""
    with TemporaryCluster() as cluster:
        yield cluster


@pytest.fixture
def pg_url(pg_cluster):
    """The URL of a new, empty database in the session's cluster."""
    return new_database(pg_cluster)


def new_database(cluster: TemporaryCluster) -> str:
    """A new, empty database in ``cluster`` (for fixtures of any scope); its URL."""
    return cluster.create_database(f"test_{next(_databases)}")


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path):
    """A ``--db`` URL of an empty store: each test using it runs on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:{tmp_path / 'central.db'}"
    return request.getfixturevalue("pg_url")
