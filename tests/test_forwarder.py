"""The forwarder against real HTTP servers on 127.0.0.1: every fault keeps records, nothing counts twice.

Time is a FakeClock moved by the tests (backoff waits are stored in the outbox as wall time), so
no test sleeps; the only real waits are the short read timeout of the hang test and the thread
tests, which wait on a condition with a deadline.
"""

import threading
from datetime import timedelta
from email.utils import format_datetime

import pytest
from support.central import (
    FakeCentral,
    accept_each,
    answer,
    commit_then_drop,
    hang,
    html_error,
    reset,
    trickle_body,
    unavailable,
    unprocessable_if_contract,
    with_unknown_id,
    without_result_for_last,
)
from support.outputs import Published, record_ids
from support.ports import reserved_port
from support.waiting import wait_until

from device.card import Card
from device.clock import FakeClock, SystemClock, parse_utc
from device.config import ApiSection, Config
from device.events import Dead, Delivered, DeliveryFailed
from device.forwarder import AUTH, FAILED, IDLE, OK, Forwarder
from device.health.delivery import DeliveryFailure, DeliveryState
from device.outbox import DEAD, DELIVERED, PENDING, Outbox

TOKEN = "test-token"
CARD = Card("v1", "0012345678", 1)
CLOSED = Card("v1", "0099999999", 1)


class Highest:
    """Full jitter that always draws the top of its range: waits become exact."""

    def uniform(self, low, high):
        return high


HIGHEST = Highest()  # stateless, so every forwarder can share it


@pytest.fixture
def clock():
    return FakeClock("2024-05-02T09:15:00Z")


@pytest.fixture
def outbox(tmp_path, clock):
    box = Outbox(tmp_path / "outbox.db", kiosk_id="riga-5-1", site="Riga 5", clock=clock)
    yield box
    box.close()


@pytest.fixture
def stub():
    with FakeCentral(token=TOKEN) as server:
        yield server


def forwarder_for(outbox, url, rng=HIGHEST, **api):
    """A forwarder built the way the daemon builds it, from an [api] section (schema defaults, then ``api``)."""
    options = dict(url=url, token=TOKEN, backoff_base_s=1.0, backoff_cap_s=8.0, read_timeout_s=5.0)
    options.update(api)
    return Forwarder.from_config(Config(api=ApiSection(**options)), outbox, rng=rng)


def commit(outbox, card=CARD, n=1):
    return [outbox.commit(card, symbology="Code128", decoder="zxing-cpp") for _ in range(n)]


def states(outbox):
    return [r.state for r in outbox.list()]


def wait_s(outbox, record):
    return (parse_utc(outbox.get(record.id).next_attempt_at) - outbox.clock.now()).total_seconds()


# --- delivery --------------------------------------------------------------------------------


def test_delivers_in_batches_in_order_with_the_contract_body(outbox, stub):
    records = commit(outbox, n=5)
    fwd = forwarder_for(outbox, stub.url, batch_size=2)
    outcomes = [fwd.deliver_once() for _ in range(4)]
    assert [o.kind for o in outcomes] == [OK, OK, OK, IDLE]
    assert [p.ids for p in stub.posts] == [[r.id for r in records[0:2]], [r.id for r in records[2:4]], [records[4].id]]
    post = stub.posts[0]
    assert post.path == "/v1/identifications" and post.headers["authorization"] == f"Bearer {TOKEN}"
    assert post.json["kiosk"] == {"id": "riga-5-1", "site": "Riga 5"}
    assert post.json["identifications"][0] == {
        "id": records[0].id, "seq": 1, "format": "v1", "contract": "0012345678", "card_issue": 1,
        "scanned_at": "2024-05-02T09:15:00.000Z", "clock_synced": True, "symbology": "Code128",
    }  # fmt: skip
    assert states(outbox) == [DELIVERED] * 5 and stub.receipts == {r.id: 1 for r in records}
    assert fwd.status().state is DeliveryState.OK and fwd.status().last_success_at is not None


def test_records_of_an_earlier_kiosk_id_go_in_their_own_request(outbox, stub, tmp_path, clock):
    old = Outbox(outbox.path, kiosk_id="old-name", site="Riga 5", clock=clock)
    commit(old)
    old.close()
    commit(outbox)
    fwd = forwarder_for(outbox, stub.url)
    assert fwd.deliver_once().delivered == 1 and fwd.deliver_once().delivered == 1
    assert [p.json["kiosk"]["id"] for p in stub.posts] == ["old-name", "riga-5-1"]


# --- retryable faults ----------------------------------------------------------------------------


def test_outage_then_recovery(outbox, clock):
    with reserved_port() as port:  # the central's address, down until it starts there
        records = commit(outbox, n=3)
        fwd = forwarder_for(outbox, f"http://127.0.0.1:{port}")
        outcome = fwd.deliver_once()
        assert outcome.kind == FAILED and "cannot reach the central" in outcome.error
        assert states(outbox) == [PENDING] * 3 and outbox.get(records[0].id).attempts == 1
        assert fwd.deliver_once().kind == IDLE  # waiting for the backoff: no new attempt
        with FakeCentral(token=TOKEN, port=port) as back:
            clock.advance(wait_s(outbox, records[0]))
            assert fwd.deliver_once().kind == OK
            assert states(outbox) == [DELIVERED] * 3 and back.receipts == {r.id: 1 for r in records}
    assert fwd.status().consecutive_failures == 0


def test_backoff_doubles_up_to_the_cap_and_survives_a_restart(outbox, stub, clock):
    (record,) = commit(outbox)
    fwd = forwarder_for(outbox, stub.url)  # base 1 s, cap 8 s, jitter drawing its maximum
    waits = []
    for _ in range(4):
        stub.then(unavailable(retry_after=None))
        assert fwd.deliver_once().kind == FAILED
        waits.append(wait_s(outbox, record))
        clock.advance(waits[-1])
    assert waits == [1, 2, 4, 8]
    # A restart (new forwarder, reopened outbox) goes on from the stored attempts.
    again = Outbox(outbox.path, kiosk_id="riga-5-1", site="Riga 5", clock=clock)
    stub.then(unavailable(retry_after=None))
    assert forwarder_for(again, stub.url).deliver_once().kind == FAILED
    assert wait_s(again, record) == 8 and again.get(record.id).attempts == 5
    again.close()


def test_full_jitter_draws_below_the_ceiling(outbox, stub):
    (record,) = commit(outbox)
    stub.then(unavailable(retry_after=None))
    fwd = forwarder_for(outbox, stub.url, rng=None, backoff_base_s=100, backoff_cap_s=100)
    fwd.deliver_once()
    assert 0 <= wait_s(outbox, record) <= 100


@pytest.mark.parametrize("header", ["seconds", "http-date"])
def test_503_with_retry_after_is_honoured(outbox, stub, clock, header):
    (record,) = commit(outbox)
    value = "30" if header == "seconds" else format_datetime(clock.now() + timedelta(seconds=30), usegmt=True)
    stub.then(unavailable(retry_after=value))
    fwd = forwarder_for(outbox, stub.url)
    outcome = fwd.deliver_once()
    assert outcome.kind == FAILED and "503" in outcome.error
    assert wait_s(outbox, record) == pytest.approx(30, abs=1)
    clock.advance(28)
    assert fwd.deliver_once().kind == IDLE and len(stub.posts) == 1
    clock.advance(3)
    assert fwd.deliver_once().kind == OK and states(outbox) == [DELIVERED]


@pytest.mark.parametrize("status", [408, 429, 500, 502, 504])
def test_other_retryable_statuses_keep_records_pending(outbox, stub, clock, status):
    records = commit(outbox, n=2)
    stub.then(answer(status, {"error": "try later"}))
    fwd = forwarder_for(outbox, stub.url)
    outcome = fwd.deliver_once()
    assert outcome.kind == FAILED and f"HTTP {status}" in outcome.error and outcome.kept == 2
    clock.advance(wait_s(outbox, records[0]))
    assert fwd.deliver_once().kind == OK and states(outbox) == [DELIVERED] * 2


def test_a_hang_longer_than_the_read_timeout(outbox, stub, clock):
    (record,) = commit(outbox)
    stub.then(hang())
    fwd = forwarder_for(outbox, stub.url, read_timeout_s=0.3)
    outcome = fwd.deliver_once()
    assert outcome.kind == FAILED and "read timeout" in outcome.error
    assert states(outbox) == [PENDING]
    clock.advance(wait_s(outbox, record))
    assert fwd.deliver_once().kind == OK and stub.receipts == {record.id: 1}


def test_connection_reset(outbox, stub, clock):
    (record,) = commit(outbox)
    stub.then(reset())
    fwd = forwarder_for(outbox, stub.url)
    outcome = fwd.deliver_once()
    assert outcome.kind == FAILED and states(outbox) == [PENDING]
    clock.advance(wait_s(outbox, record))
    assert fwd.deliver_once().kind == OK and stub.receipts == {record.id: 1}


def test_commit_then_drop_is_retried_and_answered_duplicate(outbox, stub, clock):
    records = commit(outbox, n=2)
    stub.then(commit_then_drop())
    fwd = forwarder_for(outbox, stub.url)
    assert fwd.deliver_once().kind == FAILED and states(outbox) == [PENDING] * 2
    clock.advance(wait_s(outbox, records[0]))
    assert fwd.deliver_once().kind == OK and states(outbox) == [DELIVERED] * 2
    # Each arrived twice; the central's second answer was "duplicate" and it counted each once.
    assert stub.receipts == {r.id: 2 for r in records}


# --- malformed answers ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "behaviour, expected",
    [
        (html_error(502), "HTTP 502"),
        (html_error(200), "HTML page"),
        (answer(200, "OK"), "not JSON"),
        (answer(200, {"result": []}), "'results'"),
        (answer(200, {"results": "accepted"}), "'results'"),
        (answer(200, b"\xff\xfe garbage"), "not JSON"),
        (with_unknown_id(), "not sent"),
    ],
    ids=["html-502", "html-200", "text-200", "wrong-key", "wrong-type", "binary", "unknown-id"],
)
def test_a_malformed_answer_keeps_every_record_pending(outbox, stub, behaviour, expected):
    commit(outbox, n=3)
    stub.then(behaviour)
    outcome = forwarder_for(outbox, stub.url).deliver_once()
    assert outcome.kind == FAILED and expected in outcome.error
    assert states(outbox) == [PENDING] * 3 and outcome.delivered == 0


def test_a_200_missing_one_result_delivers_only_the_others(outbox, stub, clock):
    records = commit(outbox, n=3)
    stub.then(without_result_for_last())
    fwd = forwarder_for(outbox, stub.url)
    outcome = fwd.deliver_once()
    assert outcome.kind == FAILED and outcome.delivered == 2 and "no result for 1 of 3" in outcome.error
    assert states(outbox) == [DELIVERED, DELIVERED, PENDING]
    clock.advance(wait_s(outbox, records[2]))
    assert fwd.deliver_once().kind == OK and states(outbox) == [DELIVERED] * 3


def test_an_unknown_status_keeps_that_record_pending(outbox, stub):
    (record,) = commit(outbox)
    stub.then(lambda ex: ex.send(200, {"results": [{"id": record.id, "status": "maybe"}]}))
    outcome = forwarder_for(outbox, stub.url).deliver_once()
    assert outcome.kind == FAILED and states(outbox) == [PENDING]


# --- rejections ------------------------------------------------------------------------------------


def test_a_per_record_reject_goes_to_dead_with_its_reason_and_can_be_retried(outbox, stub):
    good, closed, good2 = commit(outbox)[0], commit(outbox, CLOSED)[0], commit(outbox)[0]
    stub.reject_contracts = {CLOSED.contract}
    fwd = forwarder_for(outbox, stub.url)
    outcome = fwd.deliver_once()
    assert (outcome.kind, outcome.delivered, outcome.dead) == (OK, 2, 1)
    assert outbox.get(closed.id).state == DEAD and "contract-closed" in outbox.get(closed.id).dead_reason
    assert {good.id, good2.id} == {r.id for r in outbox.list(DELIVERED)}
    stub.reject_contracts = set()
    assert outbox.retry(closed.id)
    assert fwd.deliver_once().delivered == 1 and outbox.get(closed.id).state == DELIVERED


def test_a_422_batch_is_split_until_the_bad_record_is_alone(outbox, stub):
    records = commit(outbox, n=3) + commit(outbox, CLOSED) + commit(outbox, n=4)
    stub.default = unprocessable_if_contract(CLOSED.contract)
    outcome = forwarder_for(outbox, stub.url).deliver_once()
    assert (outcome.kind, outcome.delivered, outcome.dead) == (OK, 7, 1)
    dead = outbox.list(DEAD)
    assert [r.id for r in dead] == [records[3].id] and dead[0].dead_reason.startswith("HTTP 422: invalid-contract")
    assert len(stub.posts) <= 2 * 3 + 1  # a bisection, not one request per record
    assert sorted(stub.receipts) == sorted(r.id for r in records if r.contract != CLOSED.contract)


def test_a_split_batch_publishes_dead_for_the_bad_record_and_delivered_for_the_rest_after_each_commit(outbox, stub, tmp_path):
    records = commit(outbox, n=3) + commit(outbox, CLOSED) + commit(outbox, n=4)
    stub.default = unprocessable_if_contract(CLOSED.contract)
    fwd = forwarder_for(outbox, stub.url)
    fwd.publish = published = Published(tmp_path / "outbox.db")
    assert fwd.deliver_once().kind == OK
    dead = [(e, states) for e, states in published.events if isinstance(e, Dead)]
    assert [(e.record.id, states) for e, states in dead] == [(records[3].id, [DEAD])]
    assert dead[0][0].reason.startswith("HTTP 422: invalid-contract")
    delivered = [(e, states) for e, states in published.events if isinstance(e, Delivered)]
    assert [r.id for e, _ in delivered for r in e.records] == [r.id for r in records if r.contract != CLOSED.contract]
    assert all(states == [DELIVERED] * len(e.records) for e, states in delivered)


@pytest.mark.parametrize("behaviour", [with_unknown_id, without_result_for_last, unavailable], ids=lambda b: b.__name__)
def test_nothing_is_published_for_records_that_stay_pending(outbox, stub, tmp_path, behaviour):
    records = commit(outbox, n=3)
    stub.then(behaviour())
    fwd = forwarder_for(outbox, stub.url)
    fwd.publish = published = Published(tmp_path / "outbox.db")
    fwd.deliver_once()
    pending = {r.id for r in outbox.list(PENDING)}
    assert pending  # the answer left something pending: the test can tell
    told = {i for e, _ in published.events for i in record_ids(e)}
    assert told == {r.id for r in records} - pending


FAILED_ATTEMPTS = [
    (unavailable, DeliveryFailure.BUSY),
    (lambda: html_error(502), DeliveryFailure.HTTP_ERROR),
    (with_unknown_id, DeliveryFailure.MALFORMED),
    (without_result_for_last, DeliveryFailure.MALFORMED),
    (reset, DeliveryFailure.UNREACHABLE),
    (lambda: answer(401, {"error": "unknown token"}), DeliveryFailure.TOKEN_REFUSED),
]


@pytest.mark.parametrize("behaviour, cause", FAILED_ATTEMPTS, ids=[c.value + str(i) for i, (_, c) in enumerate(FAILED_ATTEMPTS)])
def test_each_failed_attempt_is_published_once_with_its_cause(outbox, stub, tmp_path, behaviour, cause):
    """What the metrics count as kiosk_delivery_failures_total{cause}: one event per failed attempt."""
    commit(outbox, n=2)
    stub.then(behaviour())
    fwd = forwarder_for(outbox, stub.url)
    fwd.publish = published = Published(tmp_path / "outbox.db")
    assert fwd.deliver_once().kind in (FAILED, AUTH)
    failed = [e for e, _ in published.events if isinstance(e, DeliveryFailed)]
    assert [e.cause for e in failed] == [cause]
    assert failed[0].error == fwd.status().last_error


def test_no_usable_token_is_a_failure_of_its_own_cause(outbox, stub, tmp_path):
    commit(outbox)
    fwd = forwarder_for(outbox, stub.url, token="", token_file=str(tmp_path / "no-such-token"))
    fwd.publish = published = Published(tmp_path / "outbox.db")
    assert fwd.deliver_once().kind == AUTH
    assert [e.cause for e, _ in published.events] == [DeliveryFailure.NO_TOKEN]
    assert stub.posts == []  # nothing was sent: the central refused nothing


def test_a_400_for_a_single_record_is_dead(outbox, stub):
    commit(outbox)
    stub.then(answer(400, "<html>bad</html>", {"Content-Type": "text/html"}))
    outcome = forwarder_for(outbox, stub.url).deliver_once()
    assert outcome.dead == 1 and outbox.list(DEAD)[0].dead_reason == "HTTP 400 (no JSON error message)"


# --- authentication ---------------------------------------------------------------------------------


def test_401_pauses_delivery_until_the_token_file_is_fixed(outbox, stub, tmp_path):
    records = commit(outbox, n=2)
    token_file = tmp_path / "token"
    token_file.write_text("wrong-token\n")
    fwd = forwarder_for(outbox, stub.url, token="", token_file=str(token_file))
    outcome = fwd.deliver_once()
    assert outcome.kind == AUTH and "401" in outcome.error
    assert fwd.paused_by_auth and fwd.status().state is DeliveryState.PAUSED_AUTH
    assert states(outbox) == [PENDING] * 2
    assert fwd.deliver_once().kind == AUTH and len(stub.posts) == 1  # paused: no hammering
    token_file.write_text(TOKEN + "\n")  # the technician fixes the file: no restart, no wait
    assert fwd.deliver_once().kind == OK
    assert not fwd.paused_by_auth and states(outbox) == [DELIVERED] * 2
    assert stub.receipts == {r.id: 1 for r in records}


def test_403_is_retried_slowly_with_the_same_token(outbox, stub, clock):
    commit(outbox)
    stub.then(answer(403, {"error": "kiosk not enrolled"}))
    fwd = forwarder_for(outbox, stub.url, auth_retry_s=60)
    assert fwd.deliver_once().kind == AUTH
    clock.advance(59)
    assert fwd.deliver_once().kind == AUTH and len(stub.posts) == 1
    clock.advance(2)  # the central enrolled the kiosk meanwhile
    assert fwd.deliver_once().kind == OK and not fwd.paused_by_auth


@pytest.mark.parametrize("problem", ["missing", "empty"])
def test_no_usable_token_pauses_with_its_own_text_not_a_refusal(outbox, stub, tmp_path, problem):
    commit(outbox)
    token_file = tmp_path / "token"
    if problem == "empty":
        token_file.write_text("\n")
    fwd = forwarder_for(outbox, stub.url, token="", token_file=str(token_file))
    outcome = fwd.deliver_once()
    assert outcome.kind == AUTH and stub.posts == [] and states(outbox) == [PENDING]
    status = fwd.status()
    assert fwd.paused_by_auth and status.state is DeliveryState.PAUSED_NO_TOKEN
    assert status.auth_fault.startswith(f"token file {problem}: {token_file} (api.token_file); delivery is paused")
    token_file.write_text("wrong-token\n")  # a token now, but one the central refuses: the other text
    assert fwd.deliver_once().kind == AUTH and len(stub.posts) == 1
    assert fwd.status().state is DeliveryState.PAUSED_AUTH and fwd.status().auth_fault.startswith("the central refused the token (HTTP 401")


# --- a hostile central: the request's deadline, and stopping mid-request -----------------------------

#: Far longer than any deadline or stop below, far shorter than what the hostile central would hold a request.
GENEROUS_S = 20


def test_a_trickling_answer_costs_one_attempt_at_the_deadline_then_delivery_goes_on(outbox, clock):
    (record,) = commit(outbox)
    # 150 bytes at 0.2 s: 30 s if the deadline did not cut it, and then an answer that is not JSON.
    with FakeCentral(hostile=accept_each()) as server:
        server.then(trickle_body(length=150, every_s=0.2))
        fwd = forwarder_for(outbox, server.url, connect_timeout_s=0.4, read_timeout_s=1.0)  # deadline 2.4 s
        outcome = fwd.deliver_once()
        assert outcome.kind == FAILED and "the central sent its answer too slowly" in outcome.error
        assert fwd.status().state is DeliveryState.RETRYING and "too slowly" in fwd.status().last_error
        assert states(outbox) == [PENDING] and outbox.get(record.id).attempts == 1
        clock.advance(wait_s(outbox, record))
        assert fwd.deliver_once().kind == OK and states(outbox) == [DELIVERED]


def test_stop_abandons_the_request_in_flight_and_counts_no_attempt(tmp_path):
    box = Outbox(tmp_path / "outbox.db", kiosk_id="k", clock=SystemClock())
    (record,) = commit(box)
    with FakeCentral(hostile=trickle_body(length=60, every_s=0.5)) as server:  # 30 s if not abandoned
        fwd = forwarder_for(box, server.url, read_timeout_s=60)  # deadline 125 s
        stop = threading.Event()
        thread = threading.Thread(target=fwd.run, args=(stop,))
        thread.start()
        assert server.request_arrived.wait(GENEROUS_S)
        stop.set()
        fwd.wake()
        thread.join(GENEROUS_S)
        assert not thread.is_alive()
    assert states(box) == [PENDING] and box.get(record.id).attempts == 0
    assert fwd.status().state is DeliveryState.OK and fwd.status().last_error is None  # stopping is no failure
    box.close()


def test_drain_gives_up_at_its_timeout_even_with_a_request_in_flight(tmp_path):
    box = Outbox(tmp_path / "outbox.db", kiosk_id="k", clock=SystemClock())
    (record,) = commit(box)
    with FakeCentral(hostile=trickle_body(length=60, every_s=0.5)) as server:  # 30 s if not abandoned
        fwd = forwarder_for(box, server.url, read_timeout_s=60)
        assert fwd.drain(timeout_s=1.0) is False
        assert len(server.requests) == 1
    assert states(box) == [PENDING] and box.get(record.id).attempts == 0
    box.close()


# --- the thread and the drain ---------------------------------------------------------------------------


def test_run_delivers_what_is_committed_while_it_runs(tmp_path, stub):
    box = Outbox(tmp_path / "outbox.db", kiosk_id="k", clock=SystemClock())
    fwd = forwarder_for(box, stub.url, rng=None, backoff_base_s=0.01, backoff_cap_s=300.0)
    fwd.idle_poll_s = 30
    stop = threading.Event()
    thread = threading.Thread(target=fwd.run, args=(stop,))
    thread.start()
    try:
        stub.then(unavailable(retry_after="0"))
        for _ in range(3):
            commit(box)
            fwd.wake()  # without it the next look would be 30 s away
        wait_until(lambda: box.stats().delivered == 3, what="the three committed while it runs delivered")
    finally:
        stop.set()
        fwd.wake()
        thread.join(10)
    assert not thread.is_alive() and len(stub.receipts) == 3
    box.close()


def test_drain_ends_when_nothing_is_pending_or_at_its_timeout(tmp_path, stub):
    box = Outbox(tmp_path / "outbox.db", kiosk_id="k", clock=SystemClock())
    commit(box, n=120)
    stub.then(unavailable(retry_after="0"), reset())
    fwd = forwarder_for(box, stub.url, rng=None, backoff_base_s=0.01, backoff_cap_s=300.0)
    assert fwd.drain(timeout_s=30) is True and box.stats().delivered == 120
    commit(box)
    stub.default = unavailable(retry_after="0")
    assert fwd.drain(timeout_s=0.3) is False and box.stats().pending == 1
    box.close()


# --- the reference central, every fault at once ----------------------------------------------------


def test_every_identification_reaches_the_reference_central_exactly_once_through_its_faults(tmp_path):
    from central.process import start_subprocess

    box = Outbox(tmp_path / "outbox.db", kiosk_id="k", site="Riga 5", clock=SystemClock())
    records = commit(box, n=150) + commit(box, CLOSED, n=3)
    faults = dict(fail_rate=0.2, retry_after=0, reset_rate=0.1, drop_after_commit_rate=0.2, malformed_rate=0.2, seed=7)
    with start_subprocess(tmp_path / "central.db", TOKEN, reject_contracts=[CLOSED.contract], **faults) as central:
        fwd = forwarder_for(box, central.url, rng=None, batch_size=20, backoff_base_s=0.01, backoff_cap_s=0.05)
        assert fwd.drain(timeout_s=60) is True
        held = central.identifications()
    assert sorted(r["id"] for r in held) == sorted(r.id for r in records if r.contract != CLOSED.contract)
    assert {r["id"]: r["seq"] for r in held} == {r.id: r.seq for r in records if r.contract != CLOSED.contract}
    assert box.stats().pending == 0 and [r.contract for r in box.list(DEAD)] == [CLOSED.contract] * 3
    assert any(r["receipts"] > 1 for r in held)  # faults did happen: answers were lost, records resent
    box.close()


def _without_free_descriptors(action):
    """``action()`` run while this process has no file descriptor free (a real EMFILE), then undone."""
    import os
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    held = []
    resource.setrlimit(resource.RLIMIT_NOFILE, (len(os.listdir("/proc/self/fd")) + 8, hard))
    try:
        try:
            while True:
                held.append(os.open(os.devnull, os.O_RDONLY))
        except OSError:
            pass
        return action()
    finally:
        for fd in held:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_no_descriptor_free_is_its_own_cause_never_token_unreadable(outbox, stub, tmp_path):
    """Issue 20, finding 5: slow connections used up the daemon's descriptors, and delivery paused
    with a false "token file unreadable" alert (the delivery-auth fault)."""
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    fwd = forwarder_for(outbox, stub.url, token="", token_file=str(token_file))
    commit(outbox)
    outcome = _without_free_descriptors(fwd.deliver_once)
    assert outcome.kind == FAILED
    status = fwd.status()
    assert not status.paused_by_auth and status.auth_fault is None and status.state == DeliveryState.RETRYING
    assert "no file descriptor free to read the token file" in status.last_error and "unreadable" not in status.last_error
    assert "open-files" in status.next_step
    # Descriptors free again: delivered once its backoff allows.
    wait_until(lambda: fwd.deliver_once() and states(outbox) == [DELIVERED], what="the record delivered")


def test_the_open_files_fault_names_the_descriptors_in_use():
    from types import SimpleNamespace

    from device.daemon.faults import FaultRegistry
    from device.daemon.supervisor import Supervisor
    from device.fault_names import OPEN_FILES

    faults = FaultRegistry(lambda event: None)
    kiosk = SimpleNamespace(faults=faults)
    Supervisor.check_descriptors(kiosk)
    assert OPEN_FILES not in faults.active()
    _without_free_descriptors(lambda: Supervisor.check_descriptors(kiosk))
    assert "file descriptor" in faults.active()[OPEN_FILES]
    Supervisor.check_descriptors(kiosk)
    assert OPEN_FILES not in faults.active()
