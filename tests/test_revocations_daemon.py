"""Replaced cards at the counter, end to end: a re-issue recorded at the reference central, the
kiosk syncs, a video shows the old card, the new card and another client's card; the central then
holds the two identifications and one refusal, nothing else."""

from __future__ import annotations

import sqlite3

from support.central import CENTRAL_TOKEN
from support.config import QUICK_RETRY, kiosk_config
from support.kiosk import run_kiosk
from support.revocations import ADMIN_TOKEN, LOST, OTHER

from device.tools.synth.video import Presentation, write_presentation_video


def revocations_config(tmp_path, central, public_key, source, **revocations):
    return kiosk_config(
        tmp_path,
        central=central,
        source=source,
        kiosk={"id": "kiosk-rev-1", "site": "Riga Centre 3"},
        api=QUICK_RETRY,
        revocations={"enabled": True, "public_key_file": str(public_key), **revocations},
    )


def test_a_replaced_card_is_refused_once_and_its_replacement_and_another_card_are_identified(tmp_path, signing_central, list_keys):
    central = signing_central
    assert central.reissue(LOST, 2, ADMIN_TOKEN)["version"] == 1
    video = tmp_path / "counter.avi"
    truths = write_presentation_video(video, [Presentation.card(LOST, 1), Presentation.card(LOST, 2), Presentation.card(OTHER, 1)], seed=5)
    assert all(t.is_card for t in truths)
    cfg = revocations_config(tmp_path, central, list_keys[1], f"file:{video}")

    run = run_kiosk("run", "--config", str(cfg))
    assert run.returncode == 0, run.stderr[-3000:]

    held = sorted((i["contract"], i["card_issue"]) for i in central.identifications())
    assert held == [(LOST, 2), (OTHER, 1)]
    refusals = central.refusals()
    assert [(r["contract"], r["card_issue"], r["current_issue"], r["kiosk"], r["site"]) for r in refusals] == [
        (LOST, 1, 2, "kiosk-rev-1", "Riga Centre 3")
    ]
    # One seq series for both kinds, none missing at the central.
    accounting = central.seqs_held("kiosk-rev-1")
    assert (accounting["held"], accounting["missing"]) == (3, 0)
    db = sqlite3.connect(tmp_path / "outbox.db")
    kinds = db.execute("SELECT kind, contract, card_issue, current_issue, state FROM identifications ORDER BY seq").fetchall()
    db.close()
    assert sorted(kinds) == sorted(
        [
            ("identification", LOST, 2, None, "delivered"),
            ("identification", OTHER, 1, None, "delivered"),
            ("refusal", LOST, 1, 2, "delivered"),
        ]
    )
    # The log says so, masked.
    assert "card replaced: contract ******5678 issue 1 refused, its current issue is 2" in run.stderr
    assert LOST not in run.stderr
    # The copy stays beside the outbox for the next start (offline).
    assert (tmp_path / "revocations.db").exists()


def test_a_card_reissued_after_the_last_sync_is_identified(tmp_path, signing_central, list_keys):
    """The list knows issue 2; the client already holds issue 3 (re-issued since): identified, never refused."""
    central = signing_central
    central.reissue(LOST, 2, ADMIN_TOKEN)
    video = tmp_path / "counter.avi"
    write_presentation_video(video, [Presentation.card(LOST, 3)], seed=6)
    run = run_kiosk("run", "--config", str(revocations_config(tmp_path, central, list_keys[1], f"file:{video}")))
    assert run.returncode == 0, run.stderr[-3000:]
    assert [(i["contract"], i["card_issue"]) for i in central.identifications()] == [(LOST, 3)]
    assert central.refusals() == []


def test_a_tampered_list_at_start_keeps_the_last_copy_and_scanning_and_delivery_go_on(tmp_path, signing_central, list_keys):
    """The copy synced yesterday stays in force when today's list is refused: the old card is still
    refused, the other identified, both delivered, and the fault says why."""
    import json

    import requests
    from support.central import FakeCentral, head

    from device.revocations import document

    central = signing_central
    central.reissue(LOST, 2, ADMIN_TOKEN)
    good = run_kiosk("revocations", "sync", "--config", str(revocations_config(tmp_path, central, list_keys[1], "file:/dev/null")))
    assert good.returncode == 0, good.stderr
    answer = requests.get(f"{central.url}/v1/cards/replaced?since=0", headers={"Authorization": f"Bearer {CENTRAL_TOKEN}"}, timeout=10)
    tampered = answer.content.replace(b'",2]', b'",1]')
    signature = (
        f"{document.KEY_ID_HEADER}: {answer.headers[document.KEY_ID_HEADER]}\r\n"
        f"{document.SIGNATURE_HEADER}: {answer.headers[document.SIGNATURE_HEADER]}\r\n"
    )
    delivered = []

    def behave(conn):
        while (request := conn.read_request()) is not None:
            if request.method == "GET":
                conn.send(head(200, len(tampered), signature) + tampered)
                continue
            sent = json.loads(request.body)["identifications"]
            delivered.extend(sent)
            body = json.dumps({"results": [{"id": r["id"], "status": "accepted", "reason": None} for r in sent]}).encode()
            conn.send(head(200, len(body)) + body)

    video = tmp_path / "counter.avi"
    write_presentation_video(video, [Presentation.card(LOST, 1), Presentation.card(OTHER, 1)], seed=7)
    with FakeCentral(hostile=behave) as hostile:
        run = run_kiosk("run", "--config", str(revocations_config(tmp_path, hostile, list_keys[1], f"file:{video}")))
    assert run.returncode == 0, run.stderr[-3000:]
    assert "fault revocations: replaced-card list refused: the signature does not match" in run.stderr
    assert sorted((r["contract"], r["card_issue"], r.get("kind", "identification")) for r in delivered) == [
        (LOST, 1, "refusal"),
        (OTHER, 1, "identification"),
    ]


def test_a_damaged_copy_is_moved_aside_and_fetched_whole_again(tmp_path, signing_central, list_keys):
    central = signing_central
    central.reissue(LOST, 2, ADMIN_TOKEN)
    # Damaged past its header: the kiosk moves aside only what looks like its own (issue 20).
    (tmp_path / "revocations.db").write_bytes(b"SQLite format 3\x00" + b"not a database, the SD card lost it" * 100)
    video = tmp_path / "counter.avi"
    write_presentation_video(video, [Presentation.card(LOST, 1)], seed=8)
    run = run_kiosk("run", "--config", str(revocations_config(tmp_path, central, list_keys[1], f"file:{video}")))
    assert run.returncode == 0, run.stderr[-3000:]
    assert "is damaged" in run.stderr and "moved aside" in run.stderr
    assert list(tmp_path.glob("revocations.db.corrupt-*"))
    assert [(r["contract"], r["card_issue"]) for r in central.refusals()] == [(LOST, 1)]
    assert central.identifications() == []


def test_a_copy_the_scan_loop_cannot_read_is_one_fault_that_stays_until_a_lookup_works(tmp_path):
    """Each fault has one owner (issue 21): a lookup that fails is the scan loop's, the copy's state
    the supervisor's. The copy's cards cannot be read (as a damaged page would do) while its
    version and age still can: the fault stays raised across housekeeping turns, told once, and
    clears once a lookup works again; the copy's own fault is never raised (it is current)."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from device.card import Card
    from device.daemon.faults import FaultRegistry
    from device.daemon.scan_loop import ScanLoop
    from device.daemon.supervisor import Supervisor, SupervisorSettings
    from device.events import FaultCleared, FaultRaised
    from device.fault_names import REVOCATIONS
    from device.revocations.document import ReplacedList
    from device.revocations.store import ReplacedCards
    from device.revocations.sync import RevocationSync

    told = []  # every event the registry published
    faults = FaultRegistry(told.append)
    copy = ReplacedCards(tmp_path / "revocations.db")
    copy.apply(ReplacedList(version=1, complete=True, since=None, issued_at="2026-12-02T08:00:00Z", cards={LOST: 2}), key_id="k1")
    key = Ed25519PrivateKey.generate().public_key()
    sync = RevocationSync(copy, None, key, interval_s=3600, max_age_s=86400, max_bytes=10**6, deadline_s=10)
    # Only the parts these two calls read: the lookup (scan loop) and the copy's state (supervisor).
    loop = ScanLoop(None, None, None, faults, None, repeat_window_s=1.0, unmask=False, replaced_by=copy.replaced_by)
    supervisor = Supervisor(loop, None, None, faults, None, SupervisorSettings(backlog_alert_s=600), revocations=sync)
    assert loop._replaced_by(Card("v1", LOST, 1)) == 2 and supervisor.check_revocations().fault is None

    damage = sqlite3.connect(tmp_path / "revocations.db")
    damage.execute("ALTER TABLE cards RENAME TO cards_unreadable")
    damage.commit()
    for _ in range(3):  # cards shown between housekeeping turns
        assert loop._replaced_by(Card("v1", LOST, 1)) is None  # identified: the list never stops the counter
        supervisor.check_revocations()
        lookup = [message for message in faults.active().values() if "cannot check the replaced-card list" in message]
        assert len(lookup) == 1, faults.active()
    assert REVOCATIONS not in faults.active()
    assert [type(event) for event in told] == [FaultRaised]  # told once, never cleared

    damage.execute("ALTER TABLE cards_unreadable RENAME TO cards")
    damage.commit()
    assert loop._replaced_by(Card("v1", LOST, 1)) == 2
    assert faults.active() == {} and [(type(e), e.name) for e in told] == [(FaultRaised, told[0].name), (FaultCleared, told[0].name)]
    damage.close()
    copy.close()
