"""The replaced-card list through real servers: the reference central signs it, the kiosk's sync
verifies and applies it; every bad answer (tampered, truncated, replayed, foreign key, 100 MB,
trickled, malformed contracts) is refused with a clear fault and the previous copy kept."""

from __future__ import annotations

import json
import urllib.error

import pytest
import requests
from support.central import CENTRAL_TOKEN, FakeCentral, head, trickle_body
from support.revocations import ADMIN_TOKEN, LOST, OTHER, assert_kept, make_sync, serve_list

from device.card import Card
from device.central_client import CentralClient
from device.revocations import document
from device.revocations.apply import APPLIED, FAILED, REFUSED, UNCHANGED
from device.revocations.store import ReplacedCards
from device.revocations.sync import RevocationSync


def fetch(central, since=0) -> tuple[bytes, str, str]:
    """The central's answer as sent: (body, key id, signature)."""
    answer = requests.get(
        f"{central.url}/v1/cards/replaced?since={since}", headers={"Authorization": f"Bearer {CENTRAL_TOKEN}"}, timeout=10
    )
    answer.raise_for_status()
    return answer.content, answer.headers[document.KEY_ID_HEADER], answer.headers[document.SIGNATURE_HEADER]


@pytest.fixture
def synced(tmp_path, signing_central, list_keys):
    """A kiosk copy at version 1 (LOST re-issued as 2), synced from the real central."""
    signing_central.reissue(LOST, 2, ADMIN_TOKEN)
    sync = make_sync(tmp_path, signing_central.url, list_keys[1])
    assert sync.sync_once().kind == APPLIED
    return sync


def test_a_reissue_reaches_the_kiosk_as_a_delta_and_versions_only_grow(tmp_path, synced, signing_central):
    assert synced.copy.replaced_by(Card("v1", OTHER, 1)) is None
    signing_central.reissue(OTHER, 3, ADMIN_TOKEN)
    result = synced.sync_once()
    assert (result.kind, result.version, result.complete, result.changed) == (APPLIED, 2, False, 1)
    assert synced.copy.replaced_by(Card("v1", OTHER, 2)) == 3
    assert synced.sync_once().kind == UNCHANGED
    assert synced.fault() is None
    # A re-issue only goes up; the same one again changes nothing.
    assert signing_central.reissue(OTHER, 3, ADMIN_TOKEN)["changed"] is False
    with pytest.raises(urllib.error.HTTPError) as lower:
        signing_central.reissue(OTHER, 2, ADMIN_TOKEN)
    assert lower.value.code == 409
    # A kiosk's token may not record re-issues: a known token without the right (RFC 9110: 403).
    with pytest.raises(urllib.error.HTTPError) as kiosk:
        signing_central.reissue(OTHER, 4, CENTRAL_TOKEN)
    assert kiosk.value.code == 403


def refused(sync: RevocationSync, behaviour, expected: str, kind: str = REFUSED) -> str:
    """Sync against a hostile central serving ``behaviour``: refused, the fault names ``expected``."""
    with FakeCentral(hostile=behaviour) as hostile:
        sync.client = CentralClient(hostile.url, token=CENTRAL_TOKEN, connect_timeout_s=2, read_timeout_s=2)
        result = sync.sync_once()
    assert result.kind == kind, result
    assert expected in result.error
    fault = sync.fault()
    assert fault is not None and expected in fault and "version 1 stays in force" in fault
    assert "\n" not in fault
    assert_kept(sync)
    return fault


def test_a_tampered_list_is_refused(synced, signing_central):
    body, key_id, signature = fetch(signing_central)
    refused(synced, serve_list(body.replace(b'",2]', b'",1]'), key_id, signature), "the signature does not match")


def test_a_truncated_list_is_refused(synced, signing_central):
    signing_central.reissue(OTHER, 2, ADMIN_TOKEN)
    body, key_id, signature = fetch(signing_central)
    # Cut short and said to be complete (a Content-Length of what came): the signature fails.
    refused(synced, serve_list(body[:-20], key_id, signature), "the signature does not match")
    # Cut short by a connection that breaks: the client says so.
    refused(synced, serve_list(body[:-20], key_id, signature, length=len(body)), "cut off", kind=FAILED)


def test_a_replayed_older_list_is_refused(tmp_path, synced, signing_central):
    old = fetch(signing_central)  # version 1
    signing_central.reissue(OTHER, 2, ADMIN_TOKEN)
    assert synced.sync_once().version == 2
    with FakeCentral(hostile=serve_list(*old)) as hostile:
        synced.client = CentralClient(hostile.url, token=CENTRAL_TOKEN, connect_timeout_s=2, read_timeout_s=2)
        result = synced.sync_once()
    assert result.kind == REFUSED and "version 1 is older than the copy's 2" in result.error
    assert synced.copy.version == 2 and synced.copy.replaced_by(Card("v1", OTHER, 1)) == 2


def test_a_list_signed_by_another_key_is_refused(synced):
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    body = document.encode(5, True, None, "2026-01-01T00:00:00Z", [(LOST, 2)])  # a later version, looks fine
    key_id, signature = document.sign(Ed25519PrivateKey.generate(), body)
    refused(synced, serve_list(body, key_id, signature), "signed with an unknown key")
    # The right key id with another key's signature is no better.
    refused(synced, serve_list(body, synced.key_id, signature), "the signature does not match")


def test_a_list_with_malformed_contracts_is_refused_even_when_signed(synced, list_keys):
    key = document.load_private_key(list_keys[0])
    for cards in (
        '[["00123456AB",2]]',
        '[["0000000000",2]]',
        '[["0012345678",0]]',
        '[["0012345678","2"]]',
        '[{"contract":"0012345678","current_issue":2}]',
        '[["00\u0661\u0662345678",2]]',
    ):
        body = ('{"version":9,"complete":true,"since":null,"issued_at":"2026-01-01T00:00:00Z","cards":' + cards + "}").encode()
        refused(synced, serve_list(body, *document.sign(key, body)), "entry 1 of the list is not a [contract, current issue] pair")


def test_a_100_mb_answer_is_refused_at_the_cap(synced):
    chunk = b" " * 65536

    def huge(conn):
        if conn.read_request() is not None:
            conn.send(head(200, 100_000_000, f"{document.KEY_ID_HEADER}: {synced.key_id}\r\n{document.SIGNATURE_HEADER}: AAAA\r\n"))
            for _ in range(100_000_000 // len(chunk)):
                conn.send(chunk)

    refused(synced, huge, f"larger than {64 * 1024 * 1024} bytes", kind=FAILED)


def test_a_central_that_trickles_the_list_is_cut_at_the_deadline(synced):
    synced.deadline_s = 2.0
    refused(synced, trickle_body(length=100_000, every_s=0.2), "too slowly", kind=FAILED)


def test_an_answer_without_a_signature_is_refused(synced, signing_central):
    body, _, _ = fetch(signing_central)

    def unsigned(conn):
        while conn.read_request() is not None:
            conn.send(head(200, len(body)) + body)

    refused(synced, unsigned, "the answer has no signature")


def test_a_copy_older_than_max_age_is_a_fault_and_still_refuses(tmp_path, synced):
    from datetime import timedelta

    from device.clock import FakeClock

    later = FakeClock(synced.copy.clock.now() + timedelta(hours=2))
    aged = ReplacedCards(tmp_path / "revocations.db", clock=later)
    fault = RevocationSync(aged, synced.client, synced.public_key, interval_s=900, max_age_s=3600, max_bytes=1024, deadline_s=5).fault()
    assert fault is not None and "2.0 h old, older than revocations.max_age_s" in fault
    assert aged.replaced_by(Card("v1", LOST, 1)) == 2


def test_the_central_serves_complete_when_since_is_unknown_and_refuses_a_bad_since(signing_central):
    signing_central.reissue(LOST, 2, ADMIN_TOKEN)
    body, _, _ = fetch(signing_central, since=99)
    data = json.loads(body)
    assert (data["version"], data["complete"], data["cards"]) == (1, True, [[LOST, 2]])
    bad = requests.get(
        f"{signing_central.url}/v1/cards/replaced?since=-1", headers={"Authorization": f"Bearer {CENTRAL_TOKEN}"}, timeout=10
    )
    assert bad.status_code == 400
    anonymous = requests.get(f"{signing_central.url}/v1/cards/replaced", timeout=10)
    assert anonymous.status_code == 401


@pytest.mark.parametrize(
    "body",
    [
        document.encode(3, False, 1, "2026-01-01T00:00:00Z", [("0012345678", 2), ("0000000001", 3)]),
        b'{"version": 3, "complete": true, "since": null, "issued_at": "x", "cards": [ ["0012345678", 2] , ["1",9999] ] }',
        b'{"cards":[],"version":1,"complete":true,"issued_at":"x"}',
        b'{"version":1,"complete":true,"issued_at":"x","cards":[["12",2],["12",5],["12",3]]}',
        b'{"version":1,"complete":true,"issued_at":"x","cards":[["12",2]],"cards":[]}',  # the last "cards" wins, as in JSON
        b'{"version":1,"complete":true,"issued_at":"x","cards":[["\\u0031",2]]}',  # an escape: the slow path reads it
    ],
)
def test_the_fast_reading_of_a_list_gives_what_json_gives(body):
    assert document.parse(body) == document._parse_json(body)


@pytest.mark.parametrize(
    "body",
    [
        b'{"version":1,"complete":true,"issued_at":"x","cards":[["12",2],]}',
        b'{"version":1,"complete":true,"issued_at":"x","cards":[["12",2]]',
        b'{"version":1,"complete":true,"issued_at":"x","cards":[["0000",2]]}',
        b'{"version":1,"complete":true,"issued_at":"x","cards":[["12",10000]]}',
        b'{"version":1,"complete":false,"issued_at":"x","cards":[]}',
        b'{"version":-1,"complete":true,"issued_at":"x","cards":[]}',
    ],
)
def test_a_malformed_list_is_refused_by_either_reading(body):
    with pytest.raises(document.ListRefused):
        document.parse(body)


def test_a_central_without_a_signing_key_serves_no_list_and_the_kiosk_says_so(tmp_path, central, list_keys):
    sync = make_sync(tmp_path, central.url, list_keys[1])
    result = sync.sync_once()
    assert result.kind == FAILED and "HTTP 501: not-configured" in result.error
    assert sync.fault().endswith("(no list in force)")


def test_kiosks_sync_every_interval_with_jitter_and_sooner_after_a_failure(tmp_path, list_keys):
    import random

    fleet = [
        RevocationSync(ReplacedCards(tmp_path / f"k{n}.db"), None, document.load_public_key(list_keys[1]),
                       interval_s=900, max_age_s=3600, max_bytes=1024, deadline_s=5, rng=random.Random(n))
        for n in range(20)
    ]  # fmt: skip
    waits = [kiosk.next_wait_s(APPLIED) for kiosk in fleet]
    assert all(720 <= w <= 1080 for w in waits)
    assert max(waits) - min(waits) > 60  # not in step
    assert all(48 <= kiosk.next_wait_s(REFUSED) <= 72 for kiosk in fleet)


def test_a_copy_that_cannot_be_made_on_a_full_disk_is_retried_until_it_can(small_disk):
    """Issue 20, finding 2: on a full disk at start the copy could not be made, which stopped the
    daemon with exit 78 (a config error: no restart, down for good). The daemon's copy now says why
    at each use (the revocations fault; cards are still identified) and is made once there is space."""
    from support.disk import fill
    from support.waiting import wait_until

    from device.revocations.store import RevocationsError

    filler = fill(small_disk)
    copy = ReplacedCards(small_disk / "revocations.db", retry_s=0.05)
    assert copy.unmade is not None and "full" in copy.unmade
    with pytest.raises(RevocationsError, match="full"):
        copy.info()
    filler.unlink()

    def made():
        try:
            return copy.info()
        except RevocationsError:
            return None

    info = wait_until(made, what="the copy to be made once there is space", timeout_s=10)
    assert info["version"] is None and copy.unmade is None and copy.current_issue(LOST) is None
    copy.close()
