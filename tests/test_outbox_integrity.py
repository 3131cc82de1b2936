"""Outbox damage SQLite does not see: a changed value, lost commits, a file moved aside.

Real files, really damaged: a process that dies after committing, its WAL truncated; garbage
over pages of the database file; a digit changed inside a stored record. Delivery goes to the
reference central over real HTTP.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import sqlite3
import subprocess
import uuid

import pytest
from support.cards import contracts
from support.central import CENTRAL_TOKEN
from support.config import QUICK_RETRY, kiosk_config
from support.kiosk import REPO, kiosk_cmd, run_kiosk
from support.outbox import (
    change_last_digit,
    checkpointed,
    commit_then_crash,
    commit_until_killed,
    integrity,
    overwrite_page,
    page_of,
    truncate_wal,
)
from support.waiting import wait_until

from device.card import Card
from device.config import ApiSection, Config
from device.forwarder import Forwarder, wire_record
from device.outbox import DEAD, DELIVERED, PENDING, QUARANTINED, SCHEMA_VERSION, Outbox
from device.outbox.checksum import FIELDS, record_checksum
from device.outbox.highwater import SLOT_SIZE, HighWaterMark
from device.outbox.schema import MIGRATIONS

KIOSK, SITE = "riga-5-1", "Riga 5"


def open_box(path, clock, **options):
    return Outbox(path, kiosk_id=KIOSK, site=SITE, clock=clock, **options)


def commit_all(box, shown):
    return [box.commit(Card("v1", c, 1), symbology="Code128", decoder="zxing-cpp") for c in shown]


def deliver_all(box, central):
    forwarder = Forwarder.from_config(
        Config(api=ApiSection(url=central.url, token=CENTRAL_TOKEN, backoff_base_s=0.05, backoff_cap_s=0.5)), box
    )
    assert forwarder.drain(30), forwarder.status()
    return {i["id"]: i for i in central.identifications()}


def problems(box, kind=None):
    return [p.message for p in box.stats().integrity if kind is None or p.kind == kind]


# --- the checksum ------------------------------------------------------------------------------


def test_the_checksum_covers_every_field_the_central_receives(path, clock):
    with open_box(path, clock) as box:
        (ident,) = commit_all(box, contracts(1))
    sent = set(wire_record(ident)) | {"kiosk_id", "site"}  # the request's kiosk object carries these two
    assert sent == set(FIELDS)
    fields = {name: getattr(ident, name) for name in FIELDS}
    assert record_checksum(fields) == ident.checksum
    changed = {"id": str(uuid.uuid4()), "seq": 2, "kiosk_id": "x", "site": "y", "format": "xu", "contract": "0000000001",
               "card_issue": None, "scanned_at": "2024-05-02T09:15:01.000Z", "clock_synced": False, "symbology": "EAN13"}  # fmt: skip
    for name, value in changed.items():
        assert record_checksum({**fields, name: value}) != ident.checksum, name
    assert record_checksum({**fields, "seq": str(ident.seq)}) != ident.checksum  # a seq stored as text is not the seq sent


def test_v3_migration_gives_every_existing_record_its_checksum(path, clock):
    conn = sqlite3.connect(path, isolation_level=None)
    for migrate in MIGRATIONS[:2]:
        migrate(conn)
    ids = [str(uuid.uuid4()) for _ in range(3)]
    for seq, (id, state) in enumerate(zip(ids, (DELIVERED, PENDING, DEAD), strict=True), 1):
        conn.execute(
            "INSERT INTO identifications (id, seq, kiosk_id, site, format, contract, card_issue, scanned_at, clock_synced,"
            " symbology, decoder, state, updated_at) VALUES (?, ?, ?, ?, 'v1', ?, NULL, '2024-05-01T08:00:00.000Z', 1,"
            " 'Code128', 'zxing-cpp', ?, '2024-05-01T08:00:00.000Z')",
            [id, seq, KIOSK, SITE, f"00{seq:08d}", state],
        )
    conn.execute(f"INSERT INTO sequences VALUES ('{KIOSK}', 3)")
    conn.execute("PRAGMA user_version = 2")
    conn.close()
    with open_box(path, clock) as box:
        assert box.db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        records = box.list()
        assert [(r.id, r.seq, r.state) for r in records] == list(zip(ids, (1, 2, 3), (DELIVERED, PENDING, DEAD), strict=True))
        assert all(len(r.checksum) == 32 and box.checksum_problem(r) is None for r in records)
        assert [r.id for r in box.due(10)] == [ids[1]]  # verified, not quarantined
        assert commit_all(box, contracts(1))[0].seq == 4
        assert problems(box) == []
    assert integrity(path) == "ok"


def test_a_digit_changed_inside_a_record_passes_integrity_check_but_is_quarantined_never_sent(path, clock, central, tmp_path):
    shown = contracts(3)
    with open_box(path, clock) as box:
        committed = commit_all(box, shown)
    checkpointed(path)
    changed = change_last_digit(path, shown[1])  # bit rot in the page: SQLite sees nothing wrong
    assert integrity(path) == "ok"

    with open_box(path, clock) as box:
        assert box.moved_aside is None
        at_central = deliver_all(box, central)
        assert set(at_central) == {committed[0].id, committed[2].id}  # never sent
        assert not {changed, shown[1]} & {i["contract"] for i in at_central.values()}
        record = box.get(committed[1].id)
        assert record.state == QUARANTINED and "checksum mismatch" in record.quarantine_reason
        assert box.checksum_problem(record) is not None
        assert problems(box, QUARANTINED) == [f"1 identification quarantined, never sent (seq 2): {record.quarantine_reason}"]
        assert box.stats().quarantined == 1 and box.stats().integrity_fault == problems(box)[0]
        assert not box.retry(record.id)  # retry does not revive it: its fields cannot be trusted

    # The technician sees it in kiosk queue list/show and acknowledges it.
    cfg = str(kiosk_config(tmp_path, kiosk={"id": KIOSK}, outbox={"path": str(path)}))
    listed = run_kiosk("queue", "list", "--state", "quarantined", "--config", cfg)
    assert (
        listed.returncode == 0
        and committed[1].id in listed.stdout
        and "quarantined" in listed.stdout
        and "checksum mismatch" in listed.stdout
    )
    shown_json = json.loads(run_kiosk("queue", "show", committed[1].id, "--json", "--config", cfg).stdout)
    assert shown_json["state"] == "quarantined" and shown_json["checksum_ok"] is False
    assert "checksum" not in shown_json  # it would let the masked contract be found by trying them all
    status = run_kiosk("status", "--config", cfg).stdout
    assert "1 QUARANTINED (never sent)" in status and "INTEGRITY: 1 identification quarantined" in status
    ack = run_kiosk("queue", "ack", "--config", cfg)
    assert ack.returncode == 0 and "1 integrity problem(s) acknowledged" in ack.stdout
    with open_box(path, clock) as box:
        assert box.stats().integrity_fault is None and box.stats().quarantined == 1  # the record stays, never sent


# --- the high-water mark -----------------------------------------------------------------------


def test_a_wal_truncated_after_a_crash_is_reported_as_lost_identifications_and_seq_continues(path, clock):
    """The issue's case: 150 committed ("OK" given), WAL truncated after the crash, 75 left."""
    commit_then_crash(path, 150, checkpoint_at=75)
    assert truncate_wal(path) > 0
    assert integrity(path) == "ok"  # SQLite sees nothing wrong

    with open_box(path, clock) as box:
        assert [r.seq for r in box.list()] == list(range(1, 76))
        assert problems(box, "lost") == ["outbox lost 75 committed identifications, seq 76-150"]
        assert box.stats().integrity_fault == "outbox lost 75 committed identifications, seq 76-150"
        assert commit_all(box, contracts(1, start=5))[0].seq == 151  # never 76 again
    with open_box(path, clock) as box:  # the next start finds nothing new to report
        assert problems(box) == ["outbox lost 75 committed identifications, seq 76-150"]
        assert commit_all(box, contracts(1, start=6))[0].seq == 152
        assert box.acknowledge_integrity() == 1 and box.stats().integrity_fault is None


def test_sigkill_between_commit_and_mark_never_reports_a_false_loss(path, clock):
    """The mark is raised only after the database commit, so a kill anywhere leaves it behind the
    database, never ahead: no start reports a loss, and every seq that was "OK" is there."""
    rng = random.Random(11)
    for _ in range(12):
        last_ok = commit_until_killed(path, rng.randint(1, 40))
        with open_box(path, clock) as box:
            seqs = [r.seq for r in box.list()]
            assert problems(box) == [], problems(box)
            assert seqs == list(range(1, len(seqs) + 1)) and seqs[-1] >= last_ok
            assert HighWaterMark(box.mark.path).read()[KIOSK] == seqs[-1]  # raised to the database at open


def test_the_mark_is_on_disk_when_commit_returns_and_never_ahead_of_the_database(path, clock):
    box = open_box(path, clock)
    commit_all(box, contracts(3))
    assert HighWaterMark(box.mark.path).read() == {KIOSK: 3}  # read by another reader, from the file
    box.set_max_page_count(box.db.execute("PRAGMA page_count").fetchone()[0])
    with pytest.raises(Exception, match="full"):
        commit_all(box, contracts(10_000))
    last = box.stats().last_seq
    assert HighWaterMark(box.mark.path).read() == {KIOSK: last}  # failed commits never raised it
    box.close()
    with open_box(path, clock) as again:
        assert problems(again) == []


def test_a_deleted_outbox_is_reported_by_the_mark_beside_it(path, clock):
    with open_box(path, clock) as box:
        commit_all(box, contracts(5))
    for name in (path, f"{path}-wal", f"{path}-shm"):
        if os.path.exists(name):
            os.remove(name)
    with open_box(path, clock) as box:
        assert problems(box) == ["outbox lost 5 committed identifications, seq 1-5"]
        assert commit_all(box, contracts(1))[0].seq == 6


def test_a_torn_write_of_the_mark_falls_back_to_the_previous_slot(path, clock):
    with open_box(path, clock) as box:
        commit_all(box, contracts(4))
    mark = box.mark.path
    data = bytearray(mark.read_bytes())
    generations = [int(re.search(rb'"generation":(\d+)', data[i * SLOT_SIZE : (i + 1) * SLOT_SIZE]).group(1)) for i in range(2)]
    newest = generations.index(max(generations))
    data[newest * SLOT_SIZE + 40 : newest * SLOT_SIZE + 60] = b"\0" * 20
    mark.write_bytes(bytes(data))
    assert HighWaterMark(mark).read() == {KIOSK: 3}  # one commit older: behind, never ahead
    with open_box(path, clock) as box:
        assert problems(box) == []
        assert commit_all(box, contracts(1))[0].seq == 5
    assert HighWaterMark(mark).read() == {KIOSK: 5}


def test_an_unreadable_mark_is_reported_and_written_again(path, clock):
    with open_box(path, clock) as box:
        commit_all(box, contracts(2))
    box.mark.path.write_bytes(b"not a mark" * 100)
    with open_box(path, clock) as box:
        (problem,) = problems(box, "mark-unreadable")
        assert "could not be read" in problem and "cannot be ruled out" in problem
        assert commit_all(box, contracts(1))[0].seq == 3
    assert HighWaterMark(box.mark.path).read() == {KIOSK: 3}


def test_a_mark_that_cannot_be_written_keeps_the_commit_and_is_a_fault(path, clock):
    box = open_box(path, clock)
    commit_all(box, contracts(1))
    os.close(box.mark._fd)
    box.mark._fd = os.open(box.mark.path, os.O_RDONLY)  # an I/O error on every write from now on
    ident = commit_all(box, contracts(1, start=2))[0]
    assert box.get(ident.id) is not None  # durable in the database: the "OK" may be given
    assert "cannot be written" in box.stats().mark_error and "cannot be written" in box.stats().integrity_fault
    box.close()
    with open_box(path, clock) as again:  # the next start writes it again; nothing was lost
        assert problems(again) == [] and again.stats().mark_error is None
    assert HighWaterMark(box.mark.path).read() == {KIOSK: 2}


def test_a_kiosk_renamed_many_times_with_long_ids_commits_and_opens_again(path, clock):
    """Issue 20, finding 10: each rename adds a kiosk id to the mark; 128-character ids filled its
    4 KiB slot after about 29 and raised OverflowError after the database commit (no OK, the record
    kept: counted twice), then at every open. Now the mark keeps what fits: this id, then the
    highest seqs; every commit and every open works and the mark stays readable."""
    names = [f"renamed-{i:03d}-" + "k" * 116 for i in range(45)]
    for name in names:
        with Outbox(path, kiosk_id=name, site=SITE, clock=clock) as box:
            ident = box.commit(Card("v1", contracts(1)[0], 1), symbology="Code128", decoder="zxing-cpp")
            assert ident.seq == 1 and box.stats().mark_error is None
    with Outbox(path, kiosk_id=names[-1], site=SITE, clock=clock) as box:
        assert box.stats().mark_error is None and problems(box) == []
    kept = HighWaterMark(box.mark.path).read()
    assert names[-1] in kept and 10 < len(kept) < len(names)


# --- salvage -----------------------------------------------------------------------------------


def damaged_outbox(path, clock, n=150):
    """``n`` committed identifications (a few delivered, one dead), the file then damaged: garbage
    over one page of records, and a digit changed in a record on another page."""
    shown = contracts(n)
    with open_box(path, clock) as box:
        committed = commit_all(box, shown)
        box.mark_delivered([r.id for r in committed[:10]])
        box.mark_dead(committed[10].id, "contract-closed")
    checkpointed(path)
    ruined = page_of(path, shown[n // 2])
    on_ruined_page = {i for i in range(n) if page_of(path, shown[i]) == ruined}
    changed = next(i for i in range(n - 1, 0, -1) if i not in on_ruined_page)
    overwrite_page(path, ruined)
    change_last_digit(path, shown[changed])
    assert integrity(path) != "ok"
    return committed, {committed[i].id for i in on_ruined_page}, committed[changed].id


def test_a_damaged_file_is_salvaged_with_ids_seqs_states_and_delivered(path, clock, central):
    committed, unreadable, changed = damaged_outbox(path, clock)
    with open_box(path, clock) as box:
        assert box.moved_aside is not None and box.moved_aside.name.startswith("outbox.db.corrupt-")
        assert integrity(path) == "ok"
        kept = {r.id: r for r in box.list()}
        originals = {r.id: r for r in committed}
        # Everything but the garbage page's records and the one whose checksum failed.
        assert set(kept) == set(originals) - unreadable - {changed} and len(unreadable) > 5
        for record in kept.values():  # everything as it was: id, seq, fields, checksum, state
            was = originals[record.id]
            assert (record.seq, record.contract, record.checksum) == (was.seq, was.contract, was.checksum)
        for was in committed[:11]:
            if was.id in kept:
                assert kept[was.id].state == (DEAD if was is committed[10] else DELIVERED)
        (message,) = problems(box, "salvaged")
        assert message == (
            f"outbox salvaged {len(kept)} of 150 records from {box.moved_aside.name}; "
            f"{150 - len(kept)} could not be read or failed their checksum (never sent)"
        )
        assert box.stats().integrity_fault == message
        assert commit_all(box, contracts(1, start=9))[0].seq == 151  # after the mark and the salvaged seqs
        at_central = deliver_all(box, central)
    pending = {id for id, r in kept.items() if r.state == PENDING}
    assert pending <= set(at_central) and changed not in at_central
    assert all(at_central[id]["seq"] == originals[id].seq for id in pending)  # the same ids and seqs


def test_with_every_index_damaged_too_the_rows_are_found_by_rowid(path, clock):
    committed, unreadable, changed = damaged_outbox(path, clock)
    db = sqlite3.connect(path)
    roots = [r for (r,) in db.execute("SELECT rootpage FROM sqlite_master WHERE type = 'index'")]
    db.close()
    for root in roots:
        overwrite_page(path, root - 1)  # rootpage counts from 1
    with open_box(path, clock) as box:
        assert {r.id for r in box.list()} == {r.id for r in committed} - unreadable - {changed}
        (message,) = problems(box, "salvaged")
        assert message.startswith(f"outbox salvaged {150 - len(unreadable) - 1} of ")


def test_a_file_moved_aside_but_not_salvaged_is_salvaged_at_the_next_start_once(path, clock):
    """A crash during the salvage, or a file moved aside by an older version: its records still come back."""
    committed, unreadable, changed = damaged_outbox(path, clock, n=60)
    path.rename(path.with_name("outbox.db.corrupt-20240101T000000Z"))  # as the move-aside left it
    for _ in range(2):
        with open_box(path, clock) as box:
            assert box.moved_aside is None  # nothing moved at this start
            assert {r.id for r in box.list()} == {r.id for r in committed} - unreadable - {changed}
            assert len(problems(box, "salvaged")) == 1  # once, not at every start
            assert problems(box, "lost") == []


def test_a_file_that_is_not_a_database_salvages_nothing_and_the_mark_names_the_loss(path, clock):
    with open_box(path, clock) as box:
        commit_all(box, contracts(10))
    os.remove(f"{path}-wal") if os.path.exists(f"{path}-wal") else None
    path.write_bytes(b"garbage " * 4096)
    with open_box(path, clock) as box:
        salvaged, lost = problems(box)
        assert salvaged.startswith(f"outbox salvaged 0 of 0 records from {box.moved_aside.name}; nothing readable in it")
        assert lost == "outbox lost 10 committed identifications, seq 1-10"
        assert commit_all(box, contracts(1))[0].seq == 11


def test_a_moved_aside_file_is_left_as_it_was(path, clock):
    damaged_outbox(path, clock, n=60)
    before = path.read_bytes()
    with open_box(path, clock) as box:
        assert box.moved_aside.read_bytes() == before


def test_delivery_bookkeeping_is_not_covered_by_the_checksum(path, clock):
    # It changes on every attempt: a record retried and then delivered still checks out, and is sent.
    with open_box(path, clock) as box:
        (ident,) = commit_all(box, contracts(1))
        assert box.mark_failed([ident.id], "HTTP 503: overloaded", clock.now()) == 1
        failed = box.get(ident.id)
        assert (failed.attempts, failed.last_error) == (1, "HTTP 503: overloaded") and box.checksum_problem(failed) is None
        assert [r.id for r in box.due(10)] == [ident.id]  # not quarantined
        assert box.mark_delivered([ident.id]) == 1
        delivered = box.get(ident.id)
        assert (delivered.state, delivered.attempts) == (DELIVERED, 2) and box.checksum_problem(delivered) is None
        assert problems(box) == []


# --- through the daemon ------------------------------------------------------------------------


def daemon_config(tmp_path, path, central, folder, pace):
    return str(
        kiosk_config(
            tmp_path,
            central=central,
            source=f"file:{folder}",
            pace=pace,
            kiosk={"id": KIOSK, "site": SITE},
            scan={"symbologies": ["Code128"]},
            outbox={"path": str(path)},
            api=QUICK_RETRY,
        )
    )


def test_kiosk_run_reports_lost_and_quarantined_identifications_in_kiosk_status(tmp_path, path, card_folder, central):
    """A crash, the WAL truncated, a digit changed in a stored record: the daemon says so, sends
    neither the lost seqs again nor the changed record, and goes on after seq 150."""
    import cv2
    from support.cards import empty_counter

    before = commit_then_crash(path, 150, checkpoint_at=75)
    truncate_wal(path)
    change_last_digit(path, before[4])  # seq 5
    new = contracts(1, start=3)[0]
    folder = card_folder([new], frames_per_card=3)
    for i in range(300):  # a minute of empty counter at 5 fps: the daemon runs while we look
        cv2.imwrite(str(folder / f"9{i:05d}.png"), empty_counter())
    cfg = daemon_config(tmp_path, path, central, folder, "realtime")
    proc = subprocess.Popen(kiosk_cmd("run", "--config", cfg), cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: len(central.identifications()) == 75, timeout_s=60, what="74 old identifications and the new one delivered")
        at_central = {i["seq"]: i for i in central.identifications()}
        assert sorted(at_central) == [*range(1, 5), *range(6, 76), 151]  # seq 5 quarantined; 76-150 lost; never reused
        assert at_central[151]["contract"] == new

        def report():
            return json.loads(run_kiosk("status", "--json", "--config", cfg).stdout)

        def faults():
            return (report().get("daemon") or {}).get("faults") or {}

        def told(r):
            # The fault and the queue's counts come from different turns: wait for both.
            fault = ((r.get("daemon") or {}).get("faults") or {}).get("outbox-integrity", "")
            return "quarantined" in fault and (r.get("queue") or {}).get("quarantined") == 1

        wait_until(lambda: told(report()), what="the integrity fault and the quarantined count")
        human = run_kiosk("status", "--config", cfg)
        assert human.returncode == 1  # a fault: not healthy
        assert (
            "FAULT       outbox-integrity: outbox lost 75 committed identifications, seq 76-150; 1 identification quarantined"
            in human.stdout
        )
        assert "INTEGRITY: outbox lost 75 committed identifications, seq 76-150 (found " in human.stdout
        assert "1 QUARANTINED (never sent)" in human.stdout

        assert run_kiosk("queue", "ack", "--config", cfg).returncode == 0
        wait_until(lambda: "outbox-integrity" not in faults(), what="the fault to clear after kiosk queue ack")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        stderr = proc.communicate()[1]
    assert "outbox lost 75 committed identifications, seq 76-150" in stderr


def test_kiosk_run_delivers_what_it_salvaged_from_a_damaged_file(tmp_path, path, clock, card_folder, central):
    committed, unreadable, changed = damaged_outbox(path, clock)
    new = contracts(1, start=3)[0]
    cfg = daemon_config(tmp_path, path, central, card_folder([new]), "fast")
    run = run_kiosk("run", "--config", cfg, "--drain-timeout", "60")
    assert run.returncode == 0, run.stderr[-2000:]
    at_central = {i["id"]: i for i in central.identifications()}
    salvaged_pending = {r.id for r in committed[11:]} - unreadable - {changed}
    assert set(at_central) - salvaged_pending == {next(i["id"] for i in at_central.values() if i["contract"] == new)}
    assert all(at_central[r.id]["seq"] == r.seq for r in committed if r.id in salvaged_pending)  # original ids and seqs
    assert max(i["seq"] for i in at_central.values()) == 151
    recovered = 150 - len(unreadable) - 1
    status = run_kiosk("status", "--config", cfg).stdout  # the daemon has stopped: read from the outbox
    assert f"INTEGRITY: outbox salvaged {recovered} of 150 records from outbox.db.corrupt-" in status
    assert "damaged file(s) moved aside" in status
