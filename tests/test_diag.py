"""`kiosk diag api`: reachable, token accepted, and did everything the outbox delivered arrive?

Against the real reference central: a kiosk run delivers, then the central's own accounting of
the kiosk's seqs is compared with what the outbox marks delivered.
"""

from __future__ import annotations

import json
import shutil

import cv2
from support.cards import contracts, empty_counter
from support.central import CENTRAL_TOKEN, FakeCentral, answer, well_behaved
from support.config import kiosk_config
from support.kiosk import run_kiosk

from device.central_client import CentralAnswer
from device.diag import check_seqs

#: The kiosk whose seqs the central is asked about.
KIOSK = {"id": "kiosk-diag-1", "site": "Riga 5"}


def diag_api(cfg):
    run = run_kiosk("diag", "api", "--config", str(cfg), "--json")
    return run.returncode, json.loads(run.stdout)


def test_diag_api_finds_every_delivered_seq_at_the_central_and_names_what_it_lost(tmp_path, card_folder, central_factory):
    central = central_factory()
    first, later = contracts(3)[:1], contracts(3)[1:]
    cfg = kiosk_config(tmp_path, central=central, source=f"file:{card_folder(first, name='first')}", kiosk=KIOSK)
    assert run_kiosk("run", "--config", str(cfg)).returncode == 0
    # A backup of the central after seq 1 (stopped: the file and its WAL are one consistent copy).
    central.stop()
    backup = tmp_path / "central-backup.db"
    shutil.copyfile(central.db, backup)
    central.restart()
    cfg = kiosk_config(tmp_path, central=central, source=f"file:{card_folder(later, name='later')}", kiosk=KIOSK)
    assert run_kiosk("run", "--config", str(cfg)).returncode == 0
    code, report = diag_api(cfg)
    assert code == 0 and report["ok"]
    assert report["seqs"] == {"ok": True, "detail": "the central holds seq 1-3 of kiosk-diag-1 without gaps", "missing": []}

    # The central is restored from that backup: seqs 2 and 3 are gone; the kiosk's records say delivered.
    central.stop()
    shutil.copyfile(backup, central.db)
    central.restart()
    code, report = diag_api(cfg)
    assert code == 1 and not report["ok"]
    assert report["seqs"]["missing"] == [2, 3]
    assert "lacks 2 identification(s) the outbox marks delivered: seq 2-3" in report["seqs"]["detail"]
    text = run_kiosk("diag", "api", "--config", str(cfg)).stdout
    assert "PROBLEM: the central lacks 2" in text


def test_after_a_restore_queue_resend_missing_sends_what_the_central_lost_and_each_seq_is_held_once(tmp_path, card_folder, central_factory):
    central = central_factory()
    cfg = kiosk_config(tmp_path, central=central, source=f"file:{card_folder(contracts(1), name='first')}", kiosk=KIOSK)
    assert run_kiosk("run", "--config", str(cfg)).returncode == 0
    central.stop()
    backup = tmp_path / "central-backup.db"
    shutil.copyfile(central.db, backup)
    central.restart()
    cfg = kiosk_config(tmp_path, central=central, source=f"file:{card_folder(contracts(3)[1:], name='later')}", kiosk=KIOSK)
    assert run_kiosk("run", "--config", str(cfg)).returncode == 0
    central.stop()
    shutil.copyfile(backup, central.db)
    central.restart()
    assert diag_api(cfg)[1]["seqs"]["missing"] == [2, 3]

    resend = run_kiosk("queue", "resend", "--missing", "--config", str(cfg))
    assert resend.returncode == 0, resend.stderr
    assert "2 delivered identification(s) set to pending: seq 2-3" in resend.stdout
    assert [r.state for r in queue_list(cfg)] == ["delivered", "pending", "pending"]
    # The daemon sends them (no new cards: a frame of the empty counter), with their ids and seqs.
    empty = tmp_path / "empty"
    empty.mkdir()
    cv2.imwrite(str(empty / "00000.png"), empty_counter())
    cfg = kiosk_config(tmp_path, central=central, source=f"file:{empty}", kiosk=KIOSK)
    assert run_kiosk("run", "--config", str(cfg)).returncode == 0
    code, report = diag_api(cfg)
    assert code == 0 and report["seqs"]["missing"] == [], report
    held = central.identifications()
    assert sorted(r["seq"] for r in held) == [1, 2, 3] and {r["id"] for r in held} == {r.id for r in queue_list(cfg)}
    assert central.seqs_held(KIOSK["id"])["repeats"] == 0  # the lost ones were accepted, not duplicates
    nothing = run_kiosk("queue", "resend", "--missing", "--config", str(cfg))
    assert nothing.returncode == 0 and "nothing to resend" in nothing.stdout

    # Records the central still holds, resent by hand: answered duplicate, each still held once.
    again = run_kiosk("queue", "resend", "1-2", "3", "--config", str(cfg))
    assert again.returncode == 0 and "3 delivered identification(s) set to pending: seq 1-3" in again.stdout
    assert run_kiosk("run", "--config", str(cfg)).returncode == 0
    assert [r.state for r in queue_list(cfg)] == ["delivered"] * 3
    accounting = central.seqs_held(KIOSK["id"])
    assert (accounting["held"], accounting["repeats"], accounting["missing"]) == (3, 3, 0)
    assert sorted(r["seq"] for r in central.identifications()) == [1, 2, 3]
    assert "0 accepted, 3 duplicate" in central.log_text()


def test_queue_resend_missing_cannot_ask_a_stopped_central_and_changes_nothing(tmp_path, card_folder, central_factory):
    central = central_factory()
    cfg = kiosk_config(tmp_path, central=central, source=f"file:{card_folder(contracts(2))}", kiosk=KIOSK)
    assert run_kiosk("run", "--config", str(cfg)).returncode == 0
    central.stop()
    resend = run_kiosk("queue", "resend", "--missing", "--config", str(cfg))
    assert resend.returncode == 1 and "kiosk queue resend: cannot ask the central: cannot check which seqs" in resend.stderr
    assert "Traceback" not in resend.stderr
    assert [r.state for r in queue_list(cfg)] == ["delivered", "delivered"]


def queue_list(cfg):
    """The outbox's records as ``kiosk queue list`` reads them, by seq."""
    from device.config import load
    from device.outbox import Outbox

    with Outbox(load(str(cfg), check_files=False).outbox.path, kiosk_id=KIOSK["id"], site=KIOSK["site"]) as box:
        return box.list()


def test_a_central_without_accounting_is_a_note_not_a_failure(tmp_path):
    with FakeCentral(token=CENTRAL_TOKEN) as stub:
        stub.then(answer(200, {"status": "ok"}), well_behaved, answer(404, {"error": "not-found"}))
        cfg = kiosk_config(tmp_path, central=stub, source=f"file:{tmp_path}", kiosk=KIOSK)
        code, report = diag_api(cfg)
    assert code == 0 and report["ok"]
    assert report["seqs"]["ok"] is None and "does not say which seqs it holds" in report["seqs"]["detail"]


class Answer:
    """A client whose GET answers what the test says (the accounting's logic without a server)."""

    def __init__(self, held):
        self.held = held

    def get_json(self, path):
        return CentralAnswer(200, {}, self.held)


def test_seqs_in_a_gap_or_above_the_highest_are_missing_and_reuse_is_a_problem():
    held = {"highest": 9, "contiguous_through": 3, "missing": 3, "gaps": [{"first": 4, "last": 4}, {"first": 6, "last": 7}], "reused": []}
    assert check_seqs(Answer(held), "k", [1, 2, 3, 5, 8]).ok  # 4, 6, 7 still queued here: fine
    lost = check_seqs(Answer(held), "k", [1, 4, 6, 7, 10, 11])
    assert (lost.ok, lost.missing) == (False, (4, 6, 7, 10, 11)) and lost.detail.endswith("seq 4, 6-7, 10-11")
    reused = check_seqs(Answer(dict(held, reused=[2])), "k", [1])
    assert reused.ok is False and "seq 2 of this kiosk as a conflict" in reused.detail
    odd = check_seqs(Answer({"highest": "x"}), "k", [1])
    assert odd.ok is None and "not of the documented shape" in odd.detail
