"""Power loss, not only SIGKILL: the outbox on a filesystem that forgets what was not synced.

tests/lazyfs.py keeps written data in memory until it is fsynced, and directory entries until the
directory is fsynced; a cut drops the rest. First the filesystem itself is tested (each rule of its
model can be seen to fail), then the real daemon is cut at random moments.
"""

from __future__ import annotations

import ctypes.util
import os
import random
import re
import sqlite3
import subprocess
import sys

import pytest
from lazyfs import PowerCutFS
from support.cards import contracts
from support.central import CENTRAL_TOKEN
from support.config import write_config
from support.kiosk import REPO, kiosk_cmd, run_kiosk

from device.card import Card
from device.outbox.store import DELIVERED, Outbox


@pytest.fixture
def power_cut_fs(tmp_path):
    """A mounted :class:`PowerCutFS` (backing in tmp_path/backing, mount at tmp_path/mnt)."""
    if os.geteuid() != 0 or not os.path.exists("/dev/fuse"):
        pytest.skip("mounting the power-cut filesystem needs root and /dev/fuse (CI runs as root)")
    if not (ctypes.util.find_library("fuse3") or ctypes.util.find_library("fuse")):
        pytest.skip("libfuse is not installed: apt-get install libfuse3-3 (./install.sh --dev does)")
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
    writer = subprocess.Popen(
        [sys.executable, "-c", SQLITE_WRITER, str(db_path), "300", synchronous], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
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


def test_a_commit_in_an_outbox_whose_folders_it_made_survives_a_cut(power_cut_fs):
    """The outbox makes missing folders; each new folder's entry must be synced in its parent,
    or the cut takes the folder, and the committed identification in it, away."""
    path = power_cut_fs.mount / "var" / "kiosk" / "outbox.db"
    with Outbox(path, KIOSK_ID) as outbox:
        ident = outbox.commit(Card("v1", "0012345678", 1), symbology="Code128", decoder="zxing-cpp")
        power_cut_fs.cut()  # with the database open, as when the power goes under the daemon
    power_cut_fs.restart()
    assert list(outbox_records(path)) == [ident.id]


# --- the daemon -----------------------------------------------------------------------------------

#: The log output's line for an identification, written only after the outbox commit returned:
#: what the outside world was told ("OK"), as seen from outside the process.
OK_LINE = re.compile(r"identified contract \S+ issue \d+ \(seq (\d+), id ([0-9a-f-]{36})\)")
KIOSK_ID = "kiosk-power-1"
CUTS = 20


def oks_in(log: str) -> dict[str, int]:
    """id -> seq of every identification the daemon said OK for in this log text.

    A line may be written after the cut (outputs run in their own thread), but only for a commit
    that returned before it: after the cut no fsync succeeds, so no commit does."""
    return {m[2]: int(m[1]) for m in OK_LINE.finditer(log)}


def outbox_records(path) -> dict:
    """id -> record of what the outbox at ``path`` holds (none if the file is gone), checking its integrity."""
    if not path.exists():
        return {}
    outbox = Outbox(path, KIOSK_ID, on_corrupt="raise", create=False)
    try:
        assert outbox.db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert outbox.corrupt_files() == [], "a cut left a damaged outbox that was moved aside"
        return {r.id: r for r in outbox.list()}
    finally:
        outbox.close()


@pytest.fixture
def presentation_video(tmp_path):
    """A counter video with 16 card presentations (about 3 s for `kiosk run` at fast pace)."""
    from device.tools.synth.video import Presentation, write_presentation_video

    video = tmp_path / "counter.avi"
    write_presentation_video(video, [Presentation.card(c, 1, hold_s=0.8) for c in contracts(16)], fps=10, size=(640, 360), seed=11)
    return video


def test_power_cuts_at_random_moments_lose_no_ok_and_deliver_nothing_twice(tmp_path, power_cut_fs, central_factory, presentation_video):
    """At least 20 power cuts while `kiosk run` scans and delivers, the central failing meanwhile.

    Each cut: the filesystem's power first (nothing later reaches its disk), then SIGKILL, then the
    filesystem mounted again on what was left, and the daemon started on it. The outbox lives in a
    folder the daemon creates, so that folder's entry in its parent must be synced too.
    """
    central = central_factory(fail_rate=0.2, drop_after_commit_rate=0.2, reset_rate=0.1, latency_ms=20, seed=11)
    outbox_path = power_cut_fs.mount / "state" / "outbox.db"
    cfg = write_config(
        tmp_path / "kiosk.toml",
        kiosk={"id": KIOSK_ID, "site": "Riga Centre 3", "runtime_dir": str(tmp_path / "run")},
        camera={"source": f"file:{presentation_video}", "pace": "fast"},
        scan={"symbologies": ["Code128", "EAN13"]},
        outbox={"path": str(outbox_path)},
        api={"url": central.url, "token": CENTRAL_TOKEN, "backoff_base_s": 0.05, "backoff_cap_s": 0.5, "batch_size": 3},
    )
    rng = random.Random(20261202)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    promised: dict[str, int] = {}  # id -> seq of every OK given before a cut
    cuts = runs = 0
    while cuts < CUTS:
        runs += 1
        assert runs < 3 * CUTS, "the daemon keeps ending before the cut: make the video longer"
        log_path = tmp_path / f"run-{runs}.log"
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(kiosk_cmd("run", "--config", str(cfg)), cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=log)
        try:
            try:
                proc.wait(timeout=rng.uniform(0.3, 4.0))  # from startup (schema, integrity check) to delivery
            except subprocess.TimeoutExpired:
                cuts += 1
            power_cut_fs.cut()  # the power first: nothing the daemon does after this reaches the disk
        finally:
            proc.kill()
            proc.wait()
        assert proc.returncode in (0, -9), log_path.read_text()[-3000:]
        promised.update(oks_in(log_path.read_text(errors="replace")))
        power_cut_fs.restart()

    final = run_kiosk("run", "--config", str(cfg), "--drain-timeout", "60")
    assert final.returncode == 0, final.stderr[-3000:]
    promised.update(oks_in(final.stderr))
    power_cut_fs.cut()  # even after a clean end: what it reported done must be on the disk
    power_cut_fs.restart()

    assert len(promised) >= CUTS, f"only {len(promised)} identifications in {runs} runs: the cuts came too early"
    rows = outbox_records(outbox_path)
    lost = {i: seq for i, seq in promised.items() if i not in rows}
    assert not lost, f"{len(lost)} of {len(promised)} identifications given OK are gone (seqs {sorted(lost.values())[:20]} ...)"
    assert all(rows[i].seq == seq for i, seq in promised.items()), "an OK'd identification changed its seq"
    assert sorted(r.seq for r in rows.values()) == list(range(1, len(rows) + 1)), "the sequence has gaps"
    assert {r.state for r in rows.values()} == {DELIVERED}

    at_central = {i["id"]: i["seq"] for i in central.identifications() if i["kiosk"] == KIOSK_ID}
    assert at_central == {i: r.seq for i, r in rows.items()}, "central and outbox disagree"
    # The central's own accounting says the same: every seq once (none numbered twice after a
    # cut), none missing; retries after a lost "delivered" mark are repeats, counted once.
    accounting = central.seqs_held(KIOSK_ID)
    assert (accounting["held"], accounting["contiguous_through"], accounting["missing"], accounting["reused"]) == (
        len(rows),
        len(rows),
        0,
        [],
    )
