"""`kiosk queue list|show|retry`: a technician's view into the outbox, also while the daemon writes."""

import json
import threading

import pytest
from conftest import run_kiosk, write_config

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
