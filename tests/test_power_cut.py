"""Power loss, not only SIGKILL: the outbox on a filesystem that forgets what was not synced.

tests/lazyfs.py keeps written data in memory until it is fsynced, and directory entries until the
directory is fsynced; a cut drops the rest. First the filesystem itself is tested (each rule of its
model can be seen to fail), then the real daemon is cut at random moments.
"""

from __future__ import annotations

import contextlib
import ctypes.util
import os
import sqlite3
import subprocess
import sys

import pytest
from lazyfs import PowerCutFS


@pytest.fixture
def power_cut_fs(tmp_path):
    """A mounted :class:`PowerCutFS` (backing in tmp_path/backing, mount at tmp_path/mnt)."""
    if os.geteuid() != 0 or not os.path.exists("/dev/fuse"):
        pytest.skip("mounting the power-cut filesystem needs root and /dev/fuse (CI runs as root)")
    if not (ctypes.util.find_library("fuse3") or ctypes.util.find_library("fuse")):
        pytest.skip("libfuse is not installed: apt-get install libfuse3-3 (.ci/run does)")
    fs = PowerCutFS(tmp_path / "backing", tmp_path / "mnt").start()
    try:
        yield fs
    finally:
        fs.stop()


def write_file(path, data: bytes, *, sync: bool) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        if sync:
            os.fsync(f.fileno())


def sync_dir(path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        with contextlib.suppress(OSError):  # close flushes, which fails too
            os.close(fd)


def reboot(fs: PowerCutFS) -> None:
    fs.cut()
    fs.restart()


def test_data_written_but_not_fsynced_is_gone_after_a_cut(power_cut_fs):
    f = power_cut_fs.mount / "f"
    write_file(f, b"synced", sync=True)
    sync_dir(power_cut_fs.mount)
    write_file(f, b"lost, never fsynced", sync=False)
    assert f.read_bytes() == b"lost, never fsynced"  # seen before the cut
    reboot(power_cut_fs)
    assert f.read_bytes() == b"synced"


def test_data_fsynced_in_a_synced_directory_survives_a_cut(power_cut_fs):
    f = power_cut_fs.mount / "f"
    write_file(f, b"x" * 10000, sync=True)
    sync_dir(power_cut_fs.mount)
    with open(f, "r+b") as h:  # a change in the middle, then a shorter file: only synced pages are written back
        h.seek(5000)
        h.write(b"changed")
        h.truncate(9000)
        os.fdatasync(h.fileno())
    reboot(power_cut_fs)
    assert f.read_bytes() == b"x" * 5000 + b"changed" + b"x" * 3993


def test_a_created_file_whose_directory_was_not_synced_vanishes_at_a_cut(power_cut_fs):
    write_file(power_cut_fs.mount / "new", b"data fsynced, directory not", sync=True)
    reboot(power_cut_fs)
    assert not (power_cut_fs.mount / "new").exists()


def test_rename_and_unlink_are_undone_unless_the_directory_is_synced(power_cut_fs):
    mnt = power_cut_fs.mount
    (mnt / "sub").mkdir()
    for name in ("a", "b", "c"):
        write_file(mnt / "sub" / name, name.encode(), sync=True)
    sync_dir(mnt / "sub")
    sync_dir(mnt)
    (mnt / "sub" / "a").rename(mnt / "sub" / "a2")
    (mnt / "sub" / "b").unlink()
    (mnt / "sub" / "c").rename(mnt / "sub" / "c2")
    sync_dir(mnt)  # the parent only: the renames happened in sub
    reboot(power_cut_fs)
    assert sorted(p.name for p in (mnt / "sub").iterdir()) == ["a", "b", "c"]
    (mnt / "sub" / "c").rename(mnt / "sub" / "c2")
    sync_dir(mnt / "sub")
    reboot(power_cut_fs)
    assert sorted(p.name for p in (mnt / "sub").iterdir()) == ["a", "b", "c2"]
    assert (mnt / "sub" / "c2").read_bytes() == b"c"


def test_after_a_cut_nothing_more_reaches_the_disk(power_cut_fs):
    f = power_cut_fs.mount / "f"
    write_file(f, b"before", sync=True)
    sync_dir(power_cut_fs.mount)
    fd = os.open(f, os.O_WRONLY)
    try:
        power_cut_fs.cut()
        with pytest.raises(OSError):
            os.write(fd, b"after")
        with pytest.raises(OSError):
            os.fsync(fd)
    finally:
        with contextlib.suppress(OSError):  # close flushes, which fails too
            os.close(fd)
    power_cut_fs.restart()
    assert f.read_bytes() == b"before"


SQLITE_WRITER = """
import sqlite3, sys
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("PRAGMA synchronous = " + sys.argv[3])
db.execute("PRAGMA journal_mode = WAL")
db.execute("CREATE TABLE IF NOT EXISTS t (n INTEGER PRIMARY KEY)")
n = int(sys.argv[2])
for i in range(n):
    db.execute("INSERT INTO t VALUES (?)", [i])
print("committed", flush=True)
db.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
sys.stdin.readline()   # holds the write lock (and its WAL) open until told
"""


def run_sqlite_writer_until_cut(fs: PowerCutFS, db_path, synchronous: str) -> None:
    """300 commits in WAL mode, then the power is cut while the writer holds the database open."""
    writer = subprocess.Popen([sys.executable, "-c", SQLITE_WRITER, str(db_path), "300", synchronous], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout.readline() == "committed\n" and writer.stdout.readline() == "locked\n"
        reader = sqlite3.connect(db_path, timeout=0.1, isolation_level=None)
        # Another process sees every commit (the -shm index, mmapped by both, is shared) ...
        assert reader.execute("SELECT count(*) FROM t").fetchone()[0] == 300
        # ... and the writer's fcntl lock holds it off.
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            reader.execute("BEGIN IMMEDIATE")
        reader.close()
        fs.cut()  # while the writer holds the WAL open, never checkpointed
    finally:
        writer.kill()
        writer.wait()
    fs.restart()


def test_sqlite_in_wal_mode_keeps_its_commits_locks_and_shared_memory_across_processes(power_cut_fs):
    db_path = power_cut_fs.mount / "t.db"
    run_sqlite_writer_until_cut(power_cut_fs, db_path, "FULL")
    db = sqlite3.connect(db_path)
    try:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert db.execute("SELECT count(*) FROM t").fetchone()[0] == 300
    finally:
        db.close()


def test_sqlite_without_fsync_loses_its_commits_at_a_cut(power_cut_fs):
    """The counter-test: the same writer with synchronous=OFF never syncs, and the cut shows it."""
    db_path = power_cut_fs.mount / "t.db"
    run_sqlite_writer_until_cut(power_cut_fs, db_path, "OFF")
    assert not db_path.exists()  # created, but its directory was never synced
