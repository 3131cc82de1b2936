"""The central's stores, SQLite and PostgreSQL, held to the same tests (``store_url`` runs each on both).

Every record once under its id and once under (kiosk, seq); an exact repeat a duplicate; anything
else a conflict kept for an operator, the rest of the batch stored; the accounting per kiosk; the
tokens; two writers at once; the schema's migrations (an old SQLite file with a reused seq).
"""

from __future__ import annotations

import dataclasses
import sqlite3
import subprocess
import threading
import uuid

import pytest
from support.kiosk import REPO

from central.contract import REFUSAL, Identification
from central.credentials import new_token, token_hash
from central.storage import Outcome, StoreBusy, StoreError, open_store
from central.storage.migrations import LATEST


def ident(seq: int, **fields) -> Identification:
    base = Identification(str(uuid.uuid4()), seq, "0012345678", 1, "2024-05-02T09:15:00Z", True, "Code128")
    return dataclasses.replace(base, **fields)


@pytest.fixture
def store(store_url):
    s = open_store(store_url)
    yield s
    s.close()


def statuses(outcomes: list[Outcome]) -> list[str]:
    return [o.status for o in outcomes]


def test_a_new_record_is_accepted_and_an_exact_repeat_is_a_duplicate_counted_as_a_receipt(store):
    a, b = ident(1), ident(2)
    assert statuses(store.record("k-1", "Riga 5", [a, b, a])) == ["accepted", "accepted", "duplicate"]
    assert statuses(store.record("k-1", "Riga 5", [b])) == ["duplicate"]
    held = store.identifications()
    assert [(r["id"], r["seq"], r["receipts"], r["kiosk"], r["site"]) for r in held] == [
        (a.id, 1, 2, "k-1", "Riga 5"),
        (b.id, 2, 2, "k-1", "Riga 5"),
    ]
    assert held[0]["clock_synced"] is True and held[0]["contract"] == "0012345678"
    assert store.seqs_held("k-1", 10)["repeats"] == 2
    assert store.conflicts(10) == []


def test_the_site_is_not_part_of_the_record_a_kiosk_moved_still_repeats_it(store):
    a = ident(1)
    store.record("k-1", "Riga 5", [a])
    assert statuses(store.record("k-1", "Jelgava 2", [a])) == ["duplicate"]
    assert store.fleet()[0]["site"] == "Jelgava 2"


def test_the_same_id_with_another_payload_is_a_conflict_naming_the_fields_not_their_values(store):
    a = ident(1)
    store.record("k-1", "Riga 5", [a])
    changed = dataclasses.replace(a, contract="0099999999", scanned_at="2024-05-02T09:16:00Z")
    after = ident(2)
    outcomes = store.record("k-1", "Riga 5", [changed, after])
    assert outcomes[0] == Outcome("rejected", "conflict: this id is held with another contract, scanned_at")
    assert "0099999999" not in outcomes[0].reason
    assert outcomes[1] == Outcome("accepted")  # the rest of the batch is stored
    assert [r["id"] for r in store.identifications()] == [a.id, after.id]
    assert store.identifications()[0]["contract"] == "0012345678"  # the first stays as received
    (conflict,) = store.conflicts(10)
    assert {k: conflict[k] for k in ("kiosk", "seq", "id", "first_id")} == {"kiosk": "k-1", "seq": 1, "id": a.id, "first_id": a.id}
    assert conflict["reason"] == outcomes[0].reason and conflict["received_at"]
    accounting = store.seqs_held("k-1", 10)
    assert accounting["conflicts"] == 1 and accounting["reused"] == [] and accounting["held"] == 2


def test_another_kiosk_sending_a_held_id_is_a_conflict_by_kiosk(store):
    a = ident(1)
    store.record("k-1", "Riga 5", [a])
    assert store.record("k-2", "Riga 5", [a]) == [Outcome("rejected", "conflict: this id is held with another kiosk")]
    assert store.seqs_held("k-2", 10)["held"] == 0 and store.seqs_held("k-2", 10)["conflicts"] == 1


def test_a_seq_the_kiosk_numbered_twice_is_a_conflict_and_listed_as_reused(store):
    a = ident(7)
    store.record("k-1", "Riga 5", [a])
    twin = ident(7, contract="0011111111")
    outcomes = store.record("k-1", "Riga 5", [twin, ident(8)])
    assert outcomes == [Outcome("rejected", "conflict: this kiosk's seq is held under another id (other contract)"), Outcome("accepted")]
    (conflict,) = store.conflicts(10)
    assert (conflict["id"], conflict["first_id"], conflict["seq"]) == (twin.id, a.id, 7)
    accounting = store.seqs_held("k-1", 10)
    assert accounting["reused"] == [7] and accounting["conflicts"] == 1 and accounting["held"] == 2
    # The same seq under another kiosk is no conflict: seqs are each kiosk's own.
    assert statuses(store.record("k-2", "Riga 5", [ident(7)])) == ["accepted"]


def test_within_one_batch_the_same_rules_hold_in_batch_order(store):
    a = ident(1)
    a_changed = dataclasses.replace(a, card_issue=2)
    b = ident(2)
    b_twin = ident(2)
    c = ident(3)
    outcomes = store.record("k-1", "Riga 5", [a, a, a_changed, b, b_twin, c])
    assert outcomes == [
        Outcome("accepted"),
        Outcome("duplicate"),
        Outcome("rejected", "conflict: this id is held with another card_issue"),
        Outcome("accepted"),
        Outcome("rejected", "conflict: this kiosk's seq is held under another id"),
        Outcome("accepted"),
    ]
    assert [r["id"] for r in store.identifications()] == [a.id, b.id, c.id]
    assert [(c["id"], c["first_id"]) for c in store.conflicts(10)] == [(b_twin.id, b.id), (a.id, a.id)]  # newest first
    assert store.conflicts(1) == store.conflicts(10)[:1]


def test_a_record_refused_in_a_batch_leaves_its_other_key_free_for_a_later_record(store):
    held = ident(5)
    store.record("k-1", "Riga 5", [held])
    refused = ident(5)  # seq 5 is held under another id: refused, so its id is not held
    later = dataclasses.replace(refused, seq=6)  # the same id at a free seq: judged as if sent after it
    outcomes = store.record("k-1", "Riga 5", [refused, later, later])
    assert statuses(outcomes) == ["rejected", "accepted", "duplicate"]
    assert [r["seq"] for r in store.identifications()] == [5, 6]


def test_refusals_are_held_and_listed_apart_from_identifications(store):
    refusal = ident(2, kind=REFUSAL, card_issue=1, current_issue=2)
    store.record("k-1", "Riga 5", [ident(1), refusal])
    assert [r["seq"] for r in store.identifications()] == [1]
    (listed,) = store.identifications(REFUSAL)
    assert (listed["id"], listed["current_issue"], listed["card_issue"]) == (refusal.id, 2, 1)
    assert store.seqs_held("k-1", 10)["contiguous_through"] == 2  # refusals count in the seq accounting
    assert store.record("k-1", "Riga 5", [dataclasses.replace(refusal, current_issue=3)])[0].reason == (
        "conflict: this id is held with another current_issue"
    )


def test_the_replaced_card_list_grows_by_version_and_answers_deltas(store):
    assert store.replaced_since(0) == (0, True, [])
    assert store.reissue("0012345678", 2) == (1, True)
    assert store.reissue("0012345678", 2) == (1, False)
    assert store.reissue("0087654321", 3) == (2, True)
    with pytest.raises(ValueError, match="only grows"):
        store.reissue("0012345678", 1)
    assert store.replaced_since(1) == (2, False, [("0087654321", 3)])
    assert store.replaced_since(0) == (2, True, [("0012345678", 2), ("0087654321", 3)])
    assert store.replaced_since(9) == (2, True, [("0012345678", 2), ("0087654321", 3)])


def test_accounting_after_out_of_order_arrival(store):
    store.record("k-1", "Riga 5", [ident(5), ident(6)], version="0.9.0")
    first = store.seqs_held("k-1", 10)
    assert first == {
        "kiosk": "k-1",
        "held": 2,
        "highest": 6,
        "contiguous_through": 0,
        "missing": 4,
        "gaps": [{"first": 1, "last": 4}],
        "gaps_truncated": False,
        "reused": [],
        "repeats": 0,
        "conflicts": 0,
    }
    store.record("k-1", "Riga 5", [ident(2), ident(1)])
    store.record("k-1", "Riga 5", [ident(9)])
    middle = store.seqs_held("k-1", 1)
    assert (middle["contiguous_through"], middle["missing"], middle["gaps"], middle["gaps_truncated"]) == (
        2,
        4,
        [{"first": 3, "last": 4}],
        True,
    )
    assert store.seqs_held("k-1", 10)["gaps"] == [{"first": 3, "last": 4}, {"first": 7, "last": 8}]
    store.record("k-1", "Riga 5", [ident(4), ident(3)], version="1.0.0")
    last = store.seqs_held("k-1", 10)
    assert (last["contiguous_through"], last["missing"], last["gaps"], last["highest"], last["held"]) == (
        6,
        2,
        [{"first": 7, "last": 8}],
        9,
        7,
    )
    assert store.seqs_held("k-unknown", 10)["held"] == 0


def test_the_fleet_lists_every_kiosk_with_its_accounting_and_version(store):
    store.record("k-2", "Jelgava 2", [ident(1), ident(3)], version="1.0.0")
    store.record("k-1", "Riga 5", [ident(1)])
    store.record("k-1", "Riga 5", [], version="1.1.0")  # a contact without records counts as a contact
    fleet = store.fleet()
    assert [(k["kiosk"], k["site"], k["version"], k["highest"], k["contiguous_through"], k["missing"], k["held"]) for k in fleet] == [
        ("k-1", "Riga 5", "1.1.0", 1, 1, 0, 1),
        ("k-2", "Jelgava 2", "1.0.0", 3, 1, 1, 2),
    ]
    assert fleet[0]["first_contact"] <= fleet[0]["last_contact"]
    assert {"repeats", "conflicts"} <= fleet[0].keys()


def test_tokens_issue_rotate_and_revoke(store):
    first, second, third = new_token(), new_token(), new_token()
    assert store.kiosk_of_token(token_hash(first)) is None
    assert store.set_token("k-1", token_hash(first), old_valid_s=0) == 0
    assert store.kiosk_of_token(token_hash(first)) == "k-1"
    # Rotated with a grace: both work until the grace ends.
    assert store.set_token("k-1", token_hash(second), old_valid_s=3600) == 1
    assert store.valid_tokens("k-1") == 2 and store.valid_tokens("k-2") == 0
    assert store.kiosk_of_token(token_hash(first)) == "k-1" and store.kiosk_of_token(token_hash(second)) == "k-1"
    # Rotated without one: only the newest works.
    assert store.set_token("k-1", token_hash(third), old_valid_s=0) == 2
    assert [store.kiosk_of_token(token_hash(t)) for t in (first, second, third)] == [None, None, "k-1"]
    assert store.revoke_tokens("k-1") == 1
    assert store.kiosk_of_token(token_hash(third)) is None
    assert store.revoke_tokens("k-1") == 0 and store.valid_tokens("k-1") == 0
    assert store.kiosk_of_token(token_hash(new_token())) is None


def test_a_grace_never_lengthens_a_token_already_running_out(store):
    old, newer, newest = new_token(), new_token(), new_token()
    store.set_token("k-1", token_hash(old), old_valid_s=0)
    store.set_token("k-1", token_hash(newer), old_valid_s=0)  # old: revoked now
    assert store.set_token("k-1", token_hash(newest), old_valid_s=3600) == 1
    assert store.kiosk_of_token(token_hash(old)) is None


def test_two_writers_recording_the_same_batch_at_once_hold_each_record_once(store_url):
    """Two stores (two connections, or two pools) on one database, one thread each, a barrier apart."""
    batch = [ident(seq) for seq in range(1, 201)]
    stores = [open_store(store_url), open_store(store_url)]
    start = threading.Barrier(2)
    results: list[list[Outcome]] = [[], []]

    def write(i: int) -> None:
        start.wait()
        results[i] = stores[i].record("k-1", "Riga 5", batch)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    try:
        for per_record in zip(*results, strict=True):
            assert sorted(o.status for o in per_record) == ["accepted", "duplicate"]
        held = stores[0].identifications()
        assert sorted(r["id"] for r in held) == sorted(r.id for r in batch)
        assert all(r["receipts"] == 2 for r in held)
        accounting = stores[1].seqs_held("k-1", 10)
        assert (accounting["held"], accounting["contiguous_through"], accounting["repeats"], accounting["conflicts"]) == (200, 200, 200, 0)
    finally:
        for s in stores:
            s.close()


def test_reopening_applies_no_migration_twice(store_url):
    open_store(store_url).close()
    store = open_store(store_url)
    store.record("k-1", "Riga 5", [ident(1)])
    store.close()
    assert _migrations(store_url) == list(range(1, LATEST + 1))


def test_a_database_newer_than_the_code_is_refused_naming_both_versions(store_url):
    open_store(store_url).close()
    _execute(store_url, "INSERT INTO schema_migrations (version, name, applied_at) VALUES (99, 'from the future', '2030-01-01T00:00:00Z')")
    with pytest.raises(StoreError, match=rf"version 99, newer than this central's \({LATEST}\)"):
        open_store(store_url)


def test_several_processes_opening_a_new_postgresql_database_at_once_migrate_it_once(pg_url):
    stores: list = []
    start = threading.Barrier(4)

    def open_one() -> None:
        start.wait()
        stores.append(open_store(pg_url))

    threads = [threading.Thread(target=open_one) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    for s in stores:
        s.close()
    assert len(stores) == 4
    assert _migrations(pg_url) == list(range(1, LATEST + 1))


def test_an_exhausted_postgresql_pool_is_store_busy(pg_url):
    store = open_store(pg_url + "?pool_min_size=1&pool_max_size=1&pool_timeout_s=0.2")
    try:
        with store._pool.connection():  # the only connection, held
            with pytest.raises(StoreBusy, match="no database connection free"):
                store.record("k-1", "Riga 5", [ident(1)])
        assert statuses(store.record("k-1", "Riga 5", [ident(1)])) == ["accepted"]  # free again: served
    finally:
        store.close()


def test_prepare_threshold_none_in_the_url_reaches_psycopg_not_libpq(pg_url):
    # For PgBouncer in transaction mode (docs/CENTRAL.md): libpq refuses an unknown URL parameter,
    # so the store must take it out and set it on every pooled connection itself.
    store = open_store(pg_url + "?prepare_threshold=none&pool_max_size=1")
    try:
        for seq in range(1, 9):  # more than psycopg's default threshold (5) of the same statement
            assert statuses(store.record("k-1", "Riga 5", [ident(seq)])) == ["accepted"]
        with store._pool.connection() as conn:
            assert conn.prepare_threshold is None
    finally:
        store.close()


def test_a_database_that_cannot_be_reached_cannot_be_opened(pg_cluster):
    with pytest.raises(StoreError, match=r"postgresql://postgres@127.0.0.1:\d+/no_such_db: cannot open"):
        open_store(pg_cluster.url("no_such_db"))


def test_an_old_sqlite_file_with_a_reused_seq_is_migrated_keeping_everything(tmp_path):
    """A file of the store before migrations (user_version 3), where a kiosk numbered two
    identifications alike: the later one is set apart as a conflict, not deleted."""
    path = tmp_path / "central.db"
    db = sqlite3.connect(path)
    db.executescript(
        """
        CREATE TABLE identifications (id TEXT PRIMARY KEY, seq INTEGER NOT NULL, format TEXT NOT NULL, contract TEXT NOT NULL,
            card_issue INTEGER, kiosk TEXT NOT NULL, site TEXT NOT NULL, scanned_at TEXT NOT NULL, clock_synced INTEGER NOT NULL,
            symbology TEXT NOT NULL, received_at TEXT NOT NULL, receipts INTEGER NOT NULL DEFAULT 1,
            kind TEXT NOT NULL DEFAULT 'identification', current_issue INTEGER);
        CREATE INDEX identifications_kiosk_seq ON identifications (kiosk, seq);
        CREATE TABLE card_issues (contract TEXT PRIMARY KEY, current_issue INTEGER NOT NULL, version INTEGER NOT NULL) WITHOUT ROWID;
        INSERT INTO card_issues VALUES ('0012345678', 2, 1);
        PRAGMA user_version = 3;
        """
    )
    rows = [("a", 1, "k-1", 1), ("b", 2, "k-1", 3), ("c", 2, "k-1", 1), ("d", 4, "k-1", 1), ("e", 1, "k-2", 1)]
    for id_, seq, kiosk, receipts in rows:
        db.execute(
            "INSERT INTO identifications (id, seq, format, contract, card_issue, kiosk, site, scanned_at, clock_synced, symbology, "
            "received_at, receipts) VALUES (?, ?, 'v1', '0012345678', 1, ?, 'Riga 5', '2024-05-02T09:15:00Z', 1, 'Code128', "
            "'2024-05-02T09:15:01.000+00:00', ?)",
            (id_, seq, kiosk, receipts),
        )
    db.commit()
    db.close()

    store = open_store(str(path))
    try:
        assert [r["id"] for r in store.identifications()] == ["a", "b", "d", "e"]
        (conflict,) = store.conflicts(10)
        assert (conflict["id"], conflict["seq"], conflict["first_id"]) == ("c", 2, "b")
        assert "set apart when the store was migrated" in conflict["reason"]
        accounting = store.seqs_held("k-1", 10)
        assert (accounting["held"], accounting["contiguous_through"], accounting["repeats"], accounting["reused"]) == (3, 2, 2, [2])
        assert accounting["gaps"] == [{"first": 3, "last": 3}] and accounting["conflicts"] == 1
        assert store.replaced_since(0) == (1, True, [("0012345678", 2)])
        # The unique index now holds: the kiosk's seq 2 again under a new id is refused.
        assert statuses(store.record("k-1", "Riga 5", [ident(2), ident(3)])) == ["rejected", "accepted"]
        assert store.seqs_held("k-1", 10)["contiguous_through"] == 4
    finally:
        store.close()
    with sqlite3.connect(path) as db:
        # The record set apart is kept whole, and the old store (user_version > 3: refused) cannot write around it.
        assert db.execute("SELECT id, contract, receipts FROM conflicts_migrated").fetchall() == [("c", "0012345678", 1)]
        assert db.execute("PRAGMA user_version").fetchone()[0] == 100 + LATEST


def test_a_new_sqlite_file_is_its_owners_only(tmp_path):
    open_store(str(tmp_path / "central.db")).close()
    assert (tmp_path / "central.db").stat().st_mode & 0o777 == 0o600


def test_a_locked_sqlite_file_is_store_busy(tmp_path):
    path = tmp_path / "central.db"
    store = open_store(str(path))
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("PRAGMA busy_timeout=0")
    holder.execute("BEGIN IMMEDIATE")  # another process holding the write lock
    try:
        store._db.execute("PRAGMA busy_timeout=100")
        with pytest.raises(StoreBusy, match="locked"):
            store.record("k-1", "Riga 5", [ident(1)])
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert statuses(store.record("k-1", "Riga 5", [ident(1)])) == ["accepted"]
    store.close()


def _execute(url: str, statement: str) -> None:
    if url.startswith("sqlite:"):
        with sqlite3.connect(url.removeprefix("sqlite:")) as db:
            db.execute(statement)
        return
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(statement)


def _migrations(url: str) -> list[int]:
    if url.startswith("sqlite:"):
        with sqlite3.connect(url.removeprefix("sqlite:")) as db:
            return [v for (v,) in db.execute("SELECT version FROM schema_migrations ORDER BY version")]
    import psycopg

    with psycopg.connect(url) as conn:
        return [v for (v,) in conn.execute("SELECT version FROM schema_migrations ORDER BY version")]


# --- kiosk central token issue | rotate | revoke, as an operator runs them -------------------------


def token_command(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(REPO / ".venv" / "bin" / "kiosk"), "central", "token", *args], capture_output=True, text=True, timeout=120)


def test_token_commands_issue_rotate_and_revoke(store_url):
    issued = token_command("issue", "k-riga-07", "--db", store_url)
    assert issued.returncode == 0, issued.stderr
    (first,) = issued.stdout.split()  # the token alone on stdout
    assert "shown once" in issued.stderr
    again = token_command("issue", "k-riga-07", "--db", store_url)
    assert again.returncode == 1 and "use kiosk central token rotate" in again.stderr and again.stdout == ""

    rotated = token_command("rotate", "k-riga-07", "--db", store_url)  # the default grace: 24 h
    assert rotated.returncode == 0, rotated.stderr
    (second,) = rotated.stdout.split()
    store = open_store(store_url)
    try:
        assert [store.kiosk_of_token(token_hash(t)) for t in (first, second)] == ["k-riga-07", "k-riga-07"]
    finally:
        store.close()

    now = token_command("rotate", "k-riga-07", "--db", store_url, "--grace-hours", "0")
    assert now.returncode == 0, now.stderr
    (third,) = now.stdout.split()
    store = open_store(store_url)
    try:
        assert [store.kiosk_of_token(token_hash(t)) for t in (first, second, third)] == [None, None, "k-riga-07"]
    finally:
        store.close()

    revoked = token_command("revoke", "k-riga-07", "--db", store_url)
    assert (revoked.returncode, revoked.stdout) == (0, "k-riga-07: 1 token revoked\n")
    store = open_store(store_url)
    try:
        assert store.kiosk_of_token(token_hash(third)) is None
    finally:
        store.close()


def test_token_commands_name_db_when_it_cannot_be_opened_and_refuse_bad_usage(tmp_path, pg_cluster):
    for url in (f"sqlite:{tmp_path / 'no-such-folder' / 'central.db'}", pg_cluster.url("no_such_db")):
        run = token_command("issue", "k-1", "--db", url)
        assert run.returncode == 1 and run.stderr.startswith("kiosk: --db ") and "cannot open" in run.stderr, run.stderr
    assert token_command("issue", "k-1").returncode == 2  # no --db
    assert token_command("rotate", "k-1", "--db", f"sqlite:{tmp_path / 'c.db'}", "--grace-hours", "-1").returncode == 2
