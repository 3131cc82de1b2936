"""Pytest fixtures that run the reference central as a real process on 127.0.0.1.

Use them from a test module with ``from central_fixtures import central, central_factory  # noqa: F401``
(or list ``"central_fixtures"`` in ``pytest_plugins`` of tests/conftest.py).

- ``central``: a fresh server without faults, token :data:`CENTRAL_TOKEN`, database in tmp_path.
- ``central_factory``: ``central_factory(**faults)`` starts one more server (each with its own
  database) with faults as in :func:`central.server.start_subprocess`; all are stopped at teardown.
"""

from __future__ import annotations

import itertools

import pytest

from central.server import CentralProcess, start_subprocess

#: The bearer token the fixtures' servers accept.
CENTRAL_TOKEN = "test-token"


@pytest.fixture
def central_factory(tmp_path):
    started: list[CentralProcess] = []
    numbers = itertools.count(1)

    def start(*, token=CENTRAL_TOKEN, **faults) -> CentralProcess:
        folder = tmp_path / f"central-{next(numbers)}"
        folder.mkdir()
        server = start_subprocess(folder, token, **faults)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def central(central_factory) -> CentralProcess:
    return central_factory()
