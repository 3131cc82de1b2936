"""Outbox test fixtures, and real damage to real outbox files for the integrity tests: a crash
that leaves commits only in the WAL, a truncated WAL, garbage over pages, a digit changed inside
a record.

Its fixtures ``clock`` (a fake clock) and ``path`` (an outbox file in the test's folder) are
everyone's (``pytest_plugins`` in tests/conftest.py); a test's own fixture of that name wins.
"""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from device.clock import FakeClock
from support.cards import contracts
from support.kiosk import REPO

PAGE = 4096


@pytest.fixture
def clock():
    return FakeClock("2024-05-02T09:15:00Z", synced=True)


@pytest.fixture
def path(tmp_path):
    """Where the test's outbox goes."""
    return tmp_path / "outbox.db"


_COMMIT_THEN_CRASH = """
import os, sys
from device.card import Card
from device.outbox import Outbox

path, kiosk_id, site, checkpoint_at = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
box = Outbox(path, kiosk_id, site)
for i, contract in enumerate(sys.argv[5:]):
    box.commit(Card("v1", contract, 1), symbology="Code128", decoder="zxing-cpp")
    if i + 1 == checkpoint_at:
        box.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # these are in the database file proper
os._exit(0)  # a crash: no close, no checkpoint; the commits after checkpoint_at live only in the WAL
"""


def commit_then_crash(path: Path, n: int, *, checkpoint_at: int, kiosk_id: str = "riga-5-1", site: str = "Riga 5") -> list[str]:
    """Commit ``n`` identifications in a process that then dies; returns their contracts in seq order."""
    shown = contracts(n)
    subprocess.run(
        [sys.executable, "-c", _COMMIT_THEN_CRASH, str(path), kiosk_id, site, str(checkpoint_at), *shown],
        cwd=REPO, check=True, timeout=120,
    )  # fmt: skip
    return shown


_COMMIT_UNTIL_KILLED = """
import sys
from device.card import Card
from device.outbox import Outbox

box = Outbox(sys.argv[1], sys.argv[2], sys.argv[3])
while True:
    ident = box.commit(Card("v1", "0012345678", 1), symbology="Code128", decoder="zxing-cpp")
    print(ident.seq, flush=True)  # the "OK": commit() has returned
"""


def commit_until_killed(path: Path, oks: int, *, kiosk_id: str = "riga-5-1", site: str = "Riga 5") -> int:
    """Commit in a process that is SIGKILLed after ``oks`` commits returned (give or take the one in
    flight); returns the last seq whose commit had returned."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _COMMIT_UNTIL_KILLED, str(path), kiosk_id, site], cwd=REPO, stdout=subprocess.PIPE, text=True
    )
    try:
        last = 0
        for _ in range(oks):
            line = proc.stdout.readline()
            if not line:
                raise AssertionError(f"the committing process ended early (exit {proc.wait()})")
            last = int(line)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
    return last


def truncate_wal(path: Path) -> int:
    """Cut the WAL to nothing, as a file system may after a crash; returns the bytes it had."""
    wal = Path(f"{path}-wal")
    size = wal.stat().st_size
    with open(wal, "r+b") as f:
        f.truncate(0)
    return size


def checkpointed(path: Path) -> None:
    """Everything in the database file itself (no WAL), as after a clean stop."""
    db = sqlite3.connect(path)
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()


def page_of(path: Path, needle: str) -> int:
    """The number (from 0) of the page of the database file holding ``needle``."""
    return path.read_bytes().index(needle.encode()) // PAGE


def overwrite_page(path: Path, page: int) -> None:
    """Garbage over one whole page of the file."""
    with open(path, "r+b") as f:
        f.seek(page * PAGE)
        f.write(b"\xa5\x5a" * (PAGE // 2))


def change_last_digit(path: Path, contract: str) -> str:
    """Change the last digit of ``contract`` where it is stored in the file (bit rot inside a
    record: the page still parses, ``integrity_check`` still says ok). Returns the new contract."""
    changed = contract[:-1] + str((int(contract[-1]) + 1) % 10)
    data = path.read_bytes()
    offset = data.index(contract.encode())
    assert data.count(contract.encode()) == 1, "the contract must be stored once"
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(changed.encode())
    return changed


def integrity(path: Path) -> str:
    """``PRAGMA integrity_check``'s first line ("ok"), or the error a damaged file raises."""
    db = sqlite3.connect(path)
    try:
        return db.execute("PRAGMA integrity_check").fetchone()[0]
    except sqlite3.DatabaseError as e:
        return str(e)
    finally:
        db.close()
