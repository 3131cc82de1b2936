"""`kiosk queue list|show|retry|resend`: a technician's view into the outbox, also while the daemon writes."""

import json
import threading
import uuid

import pytest
from support.config import write_config
from support.kiosk import run_kiosk

from device.card import Card
from device.outbox import Outbox

CARDS = [Card("v1", f"00{n:08d}", 1) for n in (11111111, 22222222, 33333333)]


@pytest.fixture
def queue(tmp_path):
    """An outbox with one identification in each state, and a config pointing at it."""
    path = tmp_path / "outbox.db"
    box = Outbox(path, kiosk_id="kiosk-q", site="Riga")
    pending, delivered, dead = (box.commit(c, symbology="Code128", decoder="zxing-cpp") for c in CARDS)
    box.mark_delivered([delivered.id])
    box.mark_dead(dead.id, "contract-refused: closed contract")
    box.close()
    cfg = write_config(tmp_path / "kiosk.toml", kiosk={"id": "kiosk-q"}, outbox={"path": str(path)})
    return {"cfg": str(cfg), "path": path, "pending": pending, "delivered": delivered, "dead": dead}


def lines_of(run):
    assert run.returncode == 0, run.stderr
    return [json.loads(line) for line in run.stdout.splitlines()]


def test_list_shows_every_record_in_order_with_contracts_masked(queue):
    records = lines_of(run_kiosk("queue", "list", "--json", "--config", queue["cfg"]))
    assert [r["seq"] for r in records] == [1, 2, 3]
    assert [r["state"] for r in records] == ["pending", "delivered", "dead"]
    assert all({"id", "seq", "state", "attempts", "contract"} <= set(r) for r in records)
    assert [r["contract"] for r in records] == ["******1111", "******2222", "******3333"]
    assert records[2]["dead_reason"] == "contract-refused: closed contract"


def test_list_by_state_and_unmasked(queue):
    records = lines_of(run_kiosk("queue", "list", "--state", "dead", "--unmask", "--json", "--config", queue["cfg"]))
    assert [(r["id"], r["contract"]) for r in records] == [(queue["dead"].id, "0033333333")]


def test_human_list_masks_and_counts(queue):
    run = run_kiosk("queue", "list", "--config", queue["cfg"])
    assert run.returncode == 0
    assert "******1111" in run.stdout and "0011111111" not in run.stdout
    assert "3 identification(s)" in run.stderr


def test_show_one_and_a_missing_one(queue):
    shown = lines_of(run_kiosk("queue", "show", queue["pending"].id, "--json", "--config", queue["cfg"]))
    assert shown[0]["id"] == queue["pending"].id and shown[0]["contract"] == "******1111"
    missing = run_kiosk("queue", "show", "no-such-id", "--config", queue["cfg"])
    assert missing.returncode == 1 and "no identification" in missing.stderr


def test_retry_a_dead_record_and_all_dead(queue):
    run = run_kiosk("queue", "retry", queue["dead"].id, "--config", queue["cfg"])
    assert run.returncode == 0
    box = Outbox(queue["path"], kiosk_id="kiosk-q")
    assert box.get(queue["dead"].id).state == "pending"
    box.mark_dead(queue["dead"].id, "again")
    box.close()
    run = run_kiosk("queue", "retry", "--dead", "--config", queue["cfg"])
    assert run.returncode == 0 and "1 dead identification(s) set to pending" in run.stdout
    assert run_kiosk("queue", "retry", queue["delivered"].id, "--config", queue["cfg"]).returncode == 1
    assert run_kiosk("queue", "retry", "--config", queue["cfg"]).returncode == 2


def test_list_works_while_the_daemon_commits(queue):
    """WAL: a reader never blocks the writer and never sees half a transaction."""
    writer = Outbox(queue["path"], kiosk_id="kiosk-q")
    stop = threading.Event()
    committed = []

    def commit_continuously():
        while not stop.is_set():
            committed.append(writer.commit(CARDS[0], symbology="Code128", decoder="zxing-cpp"))

    thread = threading.Thread(target=commit_continuously)
    thread.start()
    try:
        for _ in range(3):
            records = lines_of(run_kiosk("queue", "list", "--json", "--config", queue["cfg"]))
            seqs = [r["seq"] for r in records]
            assert seqs == list(range(1, len(seqs) + 1))  # a consistent snapshot: no gaps
    finally:
        stop.set()
        thread.join()
        writer.close()
    assert len(committed) > 0


def test_no_outbox_yet_says_so(tmp_path):
    cfg = write_config(tmp_path / "kiosk.toml", outbox={"path": str(tmp_path / "none.db")})
    run = run_kiosk("queue", "list", "--config", str(cfg))
    assert run.returncode != 0 and "no outbox" in run.stderr


# --- REF: a seq, a whole id or a unique id prefix --------------------------------------------


def no_traceback(run):
    assert "Traceback" not in run.stderr, run.stderr
    return run


def test_resend_a_delivered_record_by_seq_range_or_id(queue):
    run = run_kiosk("queue", "resend", "2-2", queue["delivered"].id, "--config", queue["cfg"])
    assert run.returncode == 0, run.stderr
    assert "1 delivered identification(s) set to pending: seq 2" in run.stdout
    with Outbox(queue["path"], kiosk_id="kiosk-q", site="Riga") as box:
        again = box.get(queue["delivered"].id)
    assert (again.state, again.seq, again.delivered_at) == ("pending", 2, None)


@pytest.mark.parametrize(
    ("refs", "said"),
    [
        (["1"], "seq 1 pending: only delivered identifications are resent (a pending one is sent anyway)"),
        (["3"], "seq 3 dead: only delivered identifications are resent (a dead one is sent again by kiosk queue retry)"),
        (["2", "7"], "no identification with seq 7 for kiosk id 'kiosk-q'"),
        (["1-3"], "seq 1 pending"),
        (["2-9"], "no identification with seq 4-9 for kiosk id 'kiosk-q'"),
        (["ffffffff"], 'no identification with an id starting "ffffffff"'),
        (["3-2"], "a range is FIRST-LAST, first not after last"),
    ],
)
def test_resend_of_a_pending_dead_or_unknown_ref_is_refused_and_changes_nothing(queue, refs, said):
    run = no_traceback(run_kiosk("queue", "resend", *refs, "--config", queue["cfg"]))
    assert run.returncode == 1 and said in run.stderr and "kiosk queue resend: nothing changed" in run.stderr
    with Outbox(queue["path"], kiosk_id="kiosk-q", site="Riga") as box:
        assert [r.state for r in box.list()] == ["pending", "delivered", "dead"]


def test_resend_needs_refs_or_missing_not_both(queue):
    assert run_kiosk("queue", "resend", "--config", queue["cfg"]).returncode == 2
    assert run_kiosk("queue", "resend", "2", "--missing", "--config", queue["cfg"]).returncode == 2


def test_show_and_retry_by_seq_as_list_shows_it(queue):
    shown = lines_of(run_kiosk("queue", "show", "3", "--json", "--config", queue["cfg"]))
    assert shown[0]["id"] == queue["dead"].id and shown[0]["state"] == "dead"
    run = run_kiosk("queue", "retry", "3", "--config", queue["cfg"])
    assert run.returncode == 0, run.stderr
    assert f"seq 3 ({queue['dead'].id}): pending" in run.stdout
    with Outbox(queue["path"], kiosk_id="kiosk-q") as box:
        assert box.get(queue["dead"].id).state == "pending"


def test_show_by_an_id_prefix_in_any_case(queue):
    ident = queue["delivered"].id
    # At least 6 characters, and up to its first letter or dash: a prefix of digits alone is a seq
    # (a random id starts with six digits about one time in sixteen).
    length = max(6, next(i for i, c in enumerate(ident) if not c.isdigit()) + 1)
    for ref in (ident[:length].upper(), ident.upper()):
        shown = lines_of(run_kiosk("queue", "show", ref, "--json", "--config", queue["cfg"]))
        assert shown[0]["id"] == queue["delivered"].id


def test_retry_of_a_delivered_one_by_seq_says_its_state(queue):
    run = no_traceback(run_kiosk("queue", "retry", "2", "--config", queue["cfg"]))
    assert run.returncode == 1 and f"seq 2 ({queue['delivered'].id}) is delivered" in run.stderr


@pytest.mark.parametrize(
    "ref, words",
    [
        ("99", "no identification with seq 99 for kiosk id 'kiosk-q'"),
        ("9" * 40, "no identification with seq 9999"),  # more than SQLite's integers hold
        ("7" * 5000, "no identification with seq 7777"),  # more than int() converts
        ("ab", "at least 4 hex characters"),
        ("no-such-id", "no identification"),
        ("\x1b[2Jx", "no identification"),
    ],
)
def test_a_ref_that_matches_nothing_says_so(queue, ref, words):
    for command in ("show", "retry"):
        run = no_traceback(run_kiosk("queue", command, ref, "--config", queue["cfg"]))
        assert run.returncode == 1 and words in run.stderr
        assert "\x1b" not in run.stderr  # what was typed is shown harmless


@pytest.fixture
def twins(tmp_path, monkeypatch):
    """An outbox whose first two ids share their first 5 hex characters and whose third starts
    with digits only (uuid4 made predictable)."""
    made = iter(
        uuid.UUID(u)
        for u in ("abcde111-0000-4000-8000-000000000001", "abcde222-0000-4000-8000-000000000002", "12345678-0000-4000-8000-000000000003")
    )
    monkeypatch.setattr(uuid, "uuid4", lambda: next(made))
    path = tmp_path / "outbox.db"
    with Outbox(path, kiosk_id="kiosk-q") as box:
        records = [box.commit(c, symbology="Code128", decoder="zxing-cpp") for c in CARDS]
    cfg = write_config(tmp_path / "kiosk.toml", kiosk={"id": "kiosk-q"}, outbox={"path": str(path)})
    return str(cfg), records


def test_an_ambiguous_prefix_lists_the_matches_masked(twins):
    cfg, records = twins
    for command in ("show", "retry"):
        run = no_traceback(run_kiosk("queue", command, "ABCDE", "--config", cfg))
        assert run.returncode == 1
        assert "2 identifications have an id starting" in run.stderr
        assert records[0].id in run.stderr and records[1].id in run.stderr and records[2].id not in run.stderr
        assert "******1111" in run.stderr and "0011111111" not in run.stderr
    assert lines_of(run_kiosk("queue", "show", "abcde2", "--json", "--config", cfg))[0]["id"] == records[1].id
    missing = no_traceback(run_kiosk("queue", "show", "ffff", "--config", cfg))
    assert missing.returncode == 1 and "no identification with an id starting" in missing.stderr


def test_digits_alone_are_a_seq_and_say_which_ids_start_with_them(twins):
    cfg, records = twins
    run = no_traceback(run_kiosk("queue", "show", "1234", "--config", cfg))
    assert run.returncode == 1
    assert "no identification with seq 1234" in run.stderr and "1 id(s) start with 1234" in run.stderr
    assert lines_of(run_kiosk("queue", "show", "12345678-", "--json", "--config", cfg))[0]["id"] == records[2].id


def test_a_seq_means_this_kiosk_ids_record(tmp_path):
    """Seqs are numbered per kiosk id: after kiosk.id changed, seq 1 is the new id's."""
    path = tmp_path / "outbox.db"
    with Outbox(path, kiosk_id="old-k") as box:
        old = [box.commit(c, symbology="Code128", decoder="zxing-cpp") for c in CARDS[:2]]
    with Outbox(path, kiosk_id="new-k") as box:
        new = box.commit(CARDS[2], symbology="Code128", decoder="zxing-cpp")
    cfg = str(write_config(tmp_path / "kiosk.toml", kiosk={"id": "new-k"}, outbox={"path": str(path)}))
    assert (old[0].seq, new.seq) == (1, 1)
    assert lines_of(run_kiosk("queue", "show", "1", "--json", "--config", cfg))[0]["id"] == new.id
    run = no_traceback(run_kiosk("queue", "show", "2", "--config", cfg))
    assert run.returncode == 1
    assert "no identification with seq 2 for kiosk id 'new-k'" in run.stderr and f"{old[1].id} of kiosk id 'old-k'" in run.stderr
    listing = run_kiosk("queue", "list", "--config", cfg).stdout.splitlines()
    marked = {line.split()[1]: "(kiosk id old-k)" in line for line in listing}  # id -> marked
    assert marked == {old[0].id: True, old[1].id: True, new.id: False}


def test_help_says_what_a_ref_is_with_an_example():
    for command in ("show", "retry"):
        run = run_kiosk("queue", command, "--help")
        text = " ".join(run.stdout.split())
        assert f"Example: kiosk queue {command} 42" in text
        assert "at least 4 hex characters" in text and "earlier kiosk id" in text


def test_a_refusal_is_marked_in_list_show_and_counted_by_status_masked(tmp_path):
    path = tmp_path / "outbox.db"
    box = Outbox(path, kiosk_id="kiosk-q", site="Riga")
    box.commit(Card("v1", "0044445555", 2), symbology="Code128", decoder="zxing-cpp")
    refusal = box.commit(Card("v1", "0012345678", 1), symbology="Code128", decoder="zxing-cpp", refused_for_issue=2)
    box.close()
    cfg = str(
        write_config(tmp_path / "kiosk.toml", kiosk={"id": "kiosk-q", "runtime_dir": str(tmp_path / "run")}, outbox={"path": str(path)})
    )
    run = run_kiosk("queue", "list", "--config", cfg)
    assert run.returncode == 0, run.stderr
    first, second = run.stdout.splitlines()
    assert "REFUSED" not in first
    assert "******5678 /01  REFUSED (replaced: current issue 02)" in second and "0012345678" not in run.stdout
    assert "1 identification(s) and 1 refusal(s)" in run.stderr
    shown = run_kiosk("queue", "show", str(refusal.seq), "--config", cfg)
    assert shown.returncode == 0 and "0012345678" not in shown.stdout
    assert shown.stdout.startswith("REFUSAL: a replaced card: issue 01 shown, the contract's current issue is 02")
    as_json = lines_of(run_kiosk("queue", "show", refusal.id, "--json", "--config", cfg))[0]
    assert (as_json["kind"], as_json["card_issue"], as_json["current_issue"], as_json["contract"]) == ("refusal", 1, 2, "******5678")
    status = run_kiosk("status", "--config", cfg)
    assert "2 pending" in status.stdout and "; 1 of these are refusals of replaced cards" in status.stdout, status.stdout
    assert "0012345678" not in status.stdout
