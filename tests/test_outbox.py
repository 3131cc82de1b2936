"""The outbox: durable, gap-free, private, recoverable from a full disk and a damaged file."""

import os
import sqlite3
import stat
import threading
import uuid
from datetime import timedelta
from pathlib import Path

import pytest

from device.card import Card
from device.clock import utc_iso
from device.outbox import (
    DEAD,
    DELIVERED,
    PENDING,
    SCHEMA_VERSION,
    Outbox,
    OutboxCorrupt,
    OutboxError,
    OutboxFull,
)
from device.path_kinds import SQLITE_HEADER

CARD = Card("v1", "0012345678", 1)
OTHER = Card("v1", "0099999999", 2)


@pytest.fixture
def outbox(path, clock):
    box = Outbox(path, kiosk_id="riga-5-1", site="Riga 5", clock=clock)
    yield box
    box.close()


def commit(box, card=CARD):
    return box.commit(card, symbology="Code128", decoder="zxing-cpp")


def integrity(path):
    with sqlite3.connect(path) as conn:
        return conn.execute("PRAGMA integrity_check").fetchone()[0]


# --- committing -----------------------------------------------------------------------------


def test_commit_records_everything_the_central_needs(outbox, clock):
    clock.set_synced(False)
    ident = commit(outbox, OTHER)
    assert uuid.UUID(ident.id).version == 4
    assert (ident.seq, ident.kiosk_id, ident.site) == (1, "riga-5-1", "Riga 5")
    assert (ident.contract, ident.card_issue, ident.format) == ("0099999999", 2, "v1")
    assert (ident.symbology, ident.decoder) == ("Code128", "zxing-cpp")
    assert ident.scanned_at == "2024-05-02T09:15:00.000Z" and ident.clock_synced is False
    assert (ident.state, ident.attempts, ident.next_attempt_at) == (PENDING, 0, None)
    assert outbox.get(ident.id) == ident


def test_a_committed_identification_is_there_after_reopening(path, clock):
    box = Outbox(path, "k", clock=clock)
    ident = commit(box)
    # No close(): as after a crash, the record lives in the WAL, which the next open reads.
    again = Outbox(path, "k", clock=clock)
    assert again.get(ident.id) == ident
    again.close()
    box.close()


def test_sequence_numbers_are_gap_free_and_never_reused_after_purge(outbox, clock):
    first = [commit(outbox).seq for _ in range(3)]
    outbox.mark_delivered([r.id for r in outbox.list()])
    outbox.retention_days = 0
    assert outbox.purge_delivered() == 3 and outbox.list() == []
    assert first + [commit(outbox).seq] == [1, 2, 3, 4]


def test_each_kiosk_id_has_its_own_sequence(path, clock):
    a = Outbox(path, "kiosk-a", clock=clock)
    b = Outbox(path, "kiosk-b", clock=clock)
    assert [commit(a).seq, commit(b).seq, commit(a).seq] == [1, 1, 2]
    a.close(), b.close()


def test_every_connection_is_wal_with_synchronous_full(path, clock):
    boxes = [Outbox(path, "k", clock=clock) for _ in range(2)]
    for box in boxes:
        assert box.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert box.db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
        box.close()


def test_files_are_the_owners_and_its_group_may_only_read(path, clock):
    path.touch(mode=0o644)
    os.chmod(path, 0o646)  # an existing file with a too-open mode is fixed
    box = Outbox(path, "k", clock=clock)
    commit(box)
    for name in (path, f"{path}-wal", f"{path}-shm"):
        assert stat.S_IMODE(os.stat(name).st_mode) == 0o640, name
    box.close()


# --- schema -----------------------------------------------------------------------------------


def test_schema_version_is_recorded(outbox):
    assert outbox.db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_an_empty_database_file_is_migrated(path, clock):
    sqlite3.connect(path).close()
    box = Outbox(path, "k", clock=clock)
    assert commit(box).seq == 1
    box.close()


def test_a_newer_schema_is_refused_and_left_alone(path, clock):
    Outbox(path, "k", clock=clock).close()
    with sqlite3.connect(path) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(OutboxError, match="newer than this software"):
        Outbox(path, "k", clock=clock)
    assert path.exists() and not list(path.parent.glob("*.corrupt-*"))


# --- full disk ----------------------------------------------------------------------------------


def test_a_full_disk_refuses_the_commit_cleanly_and_recovers(outbox, path):
    kept = commit(outbox)
    outbox.set_max_page_count(outbox.db.execute("PRAGMA page_count").fetchone()[0])
    with pytest.raises(OutboxFull, match="full"):
        for _ in range(10_000):  # fill the free space left in the existing pages
            commit(outbox)
    before = outbox.stats()
    with pytest.raises(OutboxFull):
        commit(outbox)
    after = outbox.stats()
    assert after.pending == before.pending and after.last_seq == before.last_seq  # nothing half-written
    assert "full" in after.last_commit_error  # status can show the fault

    outbox.set_max_page_count(None)  # space returns
    again = commit(outbox)
    assert again.seq == before.last_seq + 1  # no gap from the failed attempts
    assert outbox.stats().last_commit_error is None
    seqs = [r.seq for r in outbox.list()]
    assert seqs == list(range(1, len(seqs) + 1)) and outbox.get(kept.id) is not None
    assert integrity(path) == "ok"


# --- damaged files -----------------------------------------------------------------------------


def test_a_file_that_is_not_the_kiosks_is_never_moved_aside_or_chmodded(path, clock):
    """Issue 20, finding 3: a file without SQLite's header and without the kiosk's mark beside it
    (a typo naming the config) was moved aside as .corrupt-<time> and a database made in its
    place; a folder or /dev/null was chmodded 0640. Now each is refused, left as it was."""
    path.write_bytes(b"[kiosk]\nid = 'not an outbox'\n")
    path.chmod(0o644)
    with pytest.raises(OutboxError, match="not an SQLite database"):
        Outbox(path, "k", clock=clock)
    assert path.read_bytes() == b"[kiosk]\nid = 'not an outbox'\n" and path.stat().st_mode & 0o777 == 0o644
    assert sorted(p.name for p in path.parent.iterdir()) == ["outbox.db"]
    folder = path.parent / "a-folder"
    folder.mkdir(mode=0o755)
    with pytest.raises(OutboxError, match="is a folder"):
        Outbox(folder, "k", clock=clock)
    assert folder.stat().st_mode & 0o777 == 0o755 and not list(folder.iterdir())
    fifo = path.parent / "a-fifo"
    os.mkfifo(fifo)
    fifo.chmod(0o666)
    with pytest.raises(OutboxError, match="is a FIFO"):
        Outbox(fifo, "k", clock=clock)
    assert fifo.stat().st_mode & 0o777 == 0o666


def test_a_damaged_outbox_that_is_no_database_any_more_is_moved_aside_and_a_new_one_started(path, clock):
    """The same garbage where the kiosk's outbox was (its high-water mark beside it): the daemon's
    own damaged file, moved aside, kept as it was, and a new outbox started."""
    with Outbox(path, "k", clock=clock) as box:
        commit(box)
    for side in (Path(f"{path}-wal"), Path(f"{path}-shm")):
        side.unlink(missing_ok=True)
    path.write_bytes(b"this is not SQLite " * 500)
    box = Outbox(path, "k", clock=clock)
    assert box.moved_aside is not None and box.moved_aside.name.startswith("outbox.db.corrupt-")
    assert box.moved_aside.read_bytes() == b"this is not SQLite " * 500  # kept as it was
    assert commit(box).seq == 2  # after the mark's seq 1
    assert box.stats().corrupt_files == [str(box.moved_aside)]
    box.close()
    # Still reported after the next start, for the technician.
    again = Outbox(path, "k", clock=clock)
    assert again.moved_aside is None and len(again.stats().corrupt_files) == 1
    again.close()


def test_a_database_failing_its_integrity_check_is_moved_aside(path, clock):
    box = Outbox(path, "k", clock=clock)
    for _ in range(120):
        commit(box)
    box.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    box.close()
    page = 4096
    with open(path, "r+b") as f:  # overwrite pages in the middle of the table's b-tree
        f.seek(3 * page)
        f.write(b"\xff" * page * 3)
    moved = Outbox(path, "k", clock=clock)
    assert moved.moved_aside is not None and moved.moved_aside.exists()
    assert integrity(path) == "ok"
    # What still reads is salvaged into the new file (tests/test_outbox_integrity.py has the details).
    stats = moved.stats()
    assert 0 < stats.pending <= 120 and stats.integrity[-1].kind == "salvaged"
    moved.close()


def test_a_reader_does_not_create_a_missing_outbox(path, clock):
    with pytest.raises(OutboxError, match="no outbox"):
        Outbox(path, "k", clock=clock, create=False)
    assert not path.exists()


def test_a_reader_does_not_move_a_damaged_file(path, clock):
    damaged = SQLITE_HEADER + b"garbage" * 1000
    path.write_bytes(damaged)
    with pytest.raises(OutboxCorrupt, match="damaged"):
        Outbox(path, "k", clock=clock, on_corrupt="raise")
    assert path.read_bytes() == damaged and not list(path.parent.glob("*.corrupt-*"))


# --- states ------------------------------------------------------------------------------------


def test_delivered_dead_and_retry(outbox):
    a, b, c = commit(outbox), commit(outbox), commit(outbox)
    assert outbox.mark_delivered([a.id]) == 1
    assert outbox.mark_dead(b.id, "contract-closed: the contract is closed")
    assert [r.id for r in outbox.list(PENDING)] == [c.id]
    assert outbox.get(a.id).state == DELIVERED and outbox.get(a.id).attempts == 1
    assert outbox.get(b.id).state == DEAD and outbox.get(b.id).dead_reason.startswith("contract-closed")
    assert outbox.mark_delivered([b.id]) == 0  # a dead record is only revived by retry
    stats = outbox.stats()
    assert (stats.pending, stats.delivered, stats.dead) == (1, 1, 1)

    assert outbox.retry(b.id)
    assert outbox.get(b.id).state == PENDING and outbox.get(b.id).dead_reason is None
    assert not outbox.retry(a.id) and not outbox.retry("no-such-id")
    outbox.mark_dead(b.id, "again")
    outbox.mark_dead(c.id, "again")
    assert outbox.retry_dead() == 2 and outbox.stats().dead == 0


def test_resend_sets_only_delivered_records_back_to_pending_with_their_id_and_seq(outbox, path, clock):
    # After the central was restored from a backup: delivered records go again, nothing else changes.
    a, b, c, d, e = (commit(outbox) for _ in range(5))
    outbox.mark_delivered([a.id, b.id])
    outbox.mark_dead(d.id, "contract-closed: the contract is closed")
    with sqlite3.connect(path) as conn:  # a changed contract: e is quarantined when read for delivery
        conn.execute("UPDATE identifications SET contract = '0000000001' WHERE id = ?", [e.id])
    assert [r.id for r in outbox.due(10, force=True)] == [c.id]
    before = {r.id: r for r in outbox.list()}
    clock.advance(60)

    assert outbox.resend_delivered([a.id, b.id, c.id, d.id, e.id, "no-such-id"]) == 2
    after = {r.id: r for r in outbox.list()}
    for record in (a, b):
        again = after[record.id]
        assert (again.state, again.delivered_at, again.next_attempt_at, again.updated_at) == (PENDING, None, None, utc_iso(clock.now()))
        assert (again.id, again.seq, again.checksum, again.attempts) == (record.id, record.seq, record.checksum, 1)
        assert outbox.checksum_problem(again) is None
    assert all(after[r.id] == before[r.id] for r in (c, d, e))  # pending, dead and quarantined: untouched
    # Due now, in seq order, not quarantined: the checksum still covers what is sent.
    assert [r.id for r in outbox.due(10)] == [a.id, b.id, c.id]
    assert outbox.stats().quarantined == 1
    assert outbox.resend_delivered([a.id]) == 0  # pending now: not delivered, nothing changes
    assert outbox.mark_delivered([a.id, b.id]) == 2 and outbox.get(a.id).attempts == 2


def test_stats_report_backlog_age_and_last_error(outbox, clock):
    first = commit(outbox)
    clock.advance(120)
    commit(outbox)
    outbox.mark_failed([first.id], "cannot reach the central", utc_iso(clock.now()))
    stats = outbox.stats()
    assert stats.pending == 2 and stats.oldest_pending_age_s == 120
    assert stats.last_error == "cannot reach the central"


def test_purge_keeps_delivered_records_for_the_retention_period(outbox, clock):
    old, kept_pending, dead = commit(outbox), commit(outbox), commit(outbox)
    outbox.mark_delivered([old.id])
    outbox.mark_dead(dead.id, "rejected")
    clock.advance(29 * 86400)
    assert outbox.purge_delivered() == 0
    recent = commit(outbox)
    outbox.mark_delivered([recent.id])
    clock.advance(2 * 86400)
    assert outbox.purge_delivered() == 1
    assert outbox.get(old.id) is None
    assert {r.id for r in outbox.list()} == {kept_pending.id, dead.id, recent.id}


# --- when records are due ---------------------------------------------------------------------


def test_due_is_in_order_and_waits_for_the_oldest_record(outbox, clock):
    a, _, _ = commit(outbox), commit(outbox), commit(outbox)
    assert [r.seq for r in outbox.due(2)] == [1, 2]
    outbox.mark_failed([a.id], "HTTP 503", clock.now() + timedelta(seconds=60))
    assert outbox.due(10) == []  # newer records do not overtake the one waiting
    assert outbox.seconds_until_due() == pytest.approx(60, abs=1)
    assert [r.seq for r in outbox.due(10, force=True)] == [1, 2, 3]
    clock.advance(61)
    assert [r.seq for r in outbox.due(10)] == [1, 2, 3]


def test_restart_keeps_attempts_and_the_next_attempt_time(path, clock):
    box = Outbox(path, "k", clock=clock)
    ident = commit(box)
    retry_at = "2024-05-02T09:20:00.000Z"
    box.mark_failed([ident.id], "HTTP 503", retry_at)
    box.mark_failed([ident.id], "HTTP 503", retry_at)
    box.close()
    again = Outbox(path, "k", clock=clock)
    stored = again.get(ident.id)
    assert (stored.attempts, stored.next_attempt_at, stored.last_error) == (2, retry_at, "HTTP 503")
    assert again.due(10) == []
    clock.advance(5 * 60)
    assert [r.id for r in again.due(10)] == [ident.id]
    again.close()


def test_a_wall_clock_jump_back_does_not_stall_delivery(outbox, clock):
    # The clock was days ahead when the retry was scheduled; NTP then sets it right.
    ident = commit(outbox)
    outbox.mark_failed([ident.id], "HTTP 503", "2024-05-02T09:16:00.000Z")
    assert outbox.due(10) == []
    clock.jump(-10 * 86400)
    assert [r.id for r in outbox.due(10, max_wait_s=300)] == [ident.id]
    assert outbox.seconds_until_due(max_wait_s=300) == 0


# --- several connections -----------------------------------------------------------------------


def test_a_reader_and_two_writers_on_the_same_file(path, clock):
    """The daemon commits while `kiosk queue` reads and retries: no errors, no gaps, no repeats."""
    daemon = Outbox(path, "k", clock=clock)
    cli = Outbox(path, "k", clock=clock)
    errors, seen = [], []
    done = threading.Event()

    def read_while_writing():
        while not done.is_set():
            try:
                seen.append(cli.stats().pending)
                cli.list(PENDING)
            except Exception as e:  # pragma: no cover - the assertion below reports it
                errors.append(e)

    def write(box, n):
        try:
            for _ in range(n):
                commit(box)
        except Exception as e:  # pragma: no cover
            errors.append(e)

    reader = threading.Thread(target=read_while_writing)
    writers = [
        threading.Thread(target=write, args=(daemon, 100)),
        threading.Thread(target=write, args=(Outbox(path, "k", clock=clock), 100)),
    ]
    reader.start()
    for w in writers:
        w.start()
    for w in writers:
        w.join()
    done.set()
    reader.join()
    assert errors == []
    assert [r.seq for r in cli.list()] == list(range(1, 201))
    assert seen == sorted(seen)  # a reader sees the queue grow, never a half-written state
    daemon.close(), cli.close()


# --- schema migrations ----------------------------------------------------------------------


def write_v1_outbox(path, rows):
    """An outbox file as schema v1 left it (card_issue NOT NULL), holding ``rows`` (id, seq, state)."""
    from device.outbox.store import MIGRATIONS

    conn = sqlite3.connect(path, isolation_level=None)
    MIGRATIONS[0](conn)
    for id, seq, state in rows:
        conn.execute(
            "INSERT INTO identifications (id, seq, kiosk_id, site, format, contract, card_issue, scanned_at, clock_synced,"
            " symbology, decoder, state, updated_at) VALUES (?, ?, 'riga-5-1', 'Riga 5', 'v1', '0012345678', 1,"
            " '2024-05-01T08:00:00.000Z', 1, 'Code128', 'zxing-cpp', ?, '2024-05-01T08:00:00.000Z')",
            [id, seq, state],
        )
    conn.execute("INSERT INTO sequences (kiosk_id, last_seq) VALUES ('riga-5-1', ?)", [max(r[1] for r in rows)])
    conn.execute("PRAGMA user_version = 1")
    conn.close()


def test_v2_migration_keeps_a_v1_files_records_and_lets_card_issue_be_null(path, clock):
    import sqlite_utils  # schema introspection, in the test only

    rows = [(str(uuid.uuid4()), 1, DELIVERED), (str(uuid.uuid4()), 2, PENDING), (str(uuid.uuid4()), 3, DEAD)]
    write_v1_outbox(path, rows)
    assert {c.name: c.notnull for c in sqlite_utils.Database(path)["identifications"].columns}["card_issue"]  # v1: NOT NULL
    with Outbox(path, kiosk_id="riga-5-1", site="Riga 5", clock=clock) as box:
        assert box.db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert [(r.id, r.seq, r.state, r.card_issue) for r in box.list()] == [(id, seq, state, 1) for id, seq, state in rows]
        ident = commit(box, Card("xu", "12345678", None))  # a format without an issue number
        assert (ident.seq, box.get(ident.id).card_issue, box.get(ident.id).format) == (4, None, "xu")
        assert [r.id for r in box.due(10)] == [rows[1][0], ident.id]  # the state index still serves
    table = sqlite_utils.Database(path)["identifications"]
    notnull = {c.name: bool(c.notnull) for c in table.columns}
    assert notnull["card_issue"] is False and notnull["contract"] is True
    assert "identifications_state_seq" in [i.name for i in table.indexes]
    assert integrity(path) == "ok"
