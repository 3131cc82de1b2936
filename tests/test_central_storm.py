"""A small reconnect storm against a real central process: every identification held exactly once.

200 kiosks with 5 identifications each start at once against ``kiosk central`` (a subprocess), with
answers lost and records resent by the client, 503s with Retry-After from the central, and the
central SIGKILLed part-way (started again on the same port; on PostgreSQL one worker killed). Afterwards the central's listing and
each kiosk's accounting, read through the API, must show every identification once and no gap.

The central comes from a factory (:data:`CENTRALS`), so the same storm runs against the production
central on PostgreSQL when that is added here. The verifier is shown to catch a missing, a doubled
and a misplaced record on a tampered listing, so the storm test can fail.
"""

from __future__ import annotations

import pytest

from central.loadtest.centrals import CentralFactory, production_central, reference_central
from central.loadtest.driver import ClientFaults, ForwarderRules, drain
from central.loadtest.kiosks import build_fleet, kiosk_ids
from central.loadtest.verify import NotExactlyOnce, check, fetch_async, sent_records, verify


def _reference_with_503s(folder):
    # One batch in ten answered 503 with Retry-After: 1, nothing stored: the kiosks must pace themselves.
    return reference_central(folder, fail_rate=0.1, retry_after=1, seed=3)


def _saturated_postgresql(folder):
    # The production server, 2 workers, each with one database connection and one request waiting
    # for it: the rest are the real "database saturated" answer, 503 with Retry-After.
    # Retry-After 1 to 3 s (not the default spread of 10): the storm drains in seconds, the pacing still shows.
    pool = "pool_max_size=1&pool_max_waiting=1&pool_timeout_s=0.2"
    return production_central(folder, "postgresql", 2, pool=pool, retry_after=1, retry_after_spread=2)


#: The centrals the storm runs against, by name: the reference server (503s injected, the process
#: killed and restarted) and the production server on PostgreSQL (503s from a saturated pool, a
#: worker killed and replaced by uvicorn's supervisor).
CENTRALS: dict[str, CentralFactory] = {"sqlite": _reference_with_503s, "postgresql": _saturated_postgresql}


@pytest.mark.parametrize("factory", CENTRALS.values(), ids=CENTRALS.keys())
def test_a_storm_with_lost_answers_resends_and_a_crash_leaves_every_identification_held_once(factory, tmp_path):
    with factory(tmp_path) as central:
        fleet = build_fleet(central.credentials(kiosk_ids("storm", 200)), per_kiosk=5, seed=25)
        result = drain(
            central.url,
            fleet,
            faults=ClientFaults(lost_answer_rate=0.2, resend_rate=0.2),
            connections=50,
            kill=central.kill_worker,
            kill_after_share=0.5,
            seed=25,
        )
        verdict = verify(central.url, central.admin_token, fleet)

    assert verdict.ok and verdict.held == verdict.sent == 1000 and verdict.kiosks == 200, verdict.summary()
    assert result.ok, (result.problems, result.doubly_accepted, result.rejected)
    # The faults happened, and each came back as the kiosk expects: a repeat is a duplicate, never a second accept.
    assert result.lost_answers > 0 and result.resent_records > 0 and result.killed
    assert result.requests_by_status.get("503", 0) > 0 and result.retry_after.count > 0
    assert result.accepted <= 1000 and result.accepted + result.duplicate >= 1000 + result.resent_records
    assert result.doubly_accepted == 0


def test_the_verifier_catches_a_missing_a_doubled_and_a_misplaced_record(tmp_path):
    with reference_central(tmp_path) as central:
        fleet = build_fleet(central.credentials(kiosk_ids("tamper", 3)), per_kiosk=4, seed=7)
        assert drain(central.url, fleet).ok
        import asyncio

        listing, seqs = asyncio.run(fetch_async(central.url, central.admin_token, [k.kiosk_id for k in fleet]))
    sent = sent_records(fleet)
    assert check(sent, listing, seqs).ok

    gone, twice, moved = listing[0], listing[1], listing[2]
    tampered = [row for row in listing if row is not gone] + [dict(twice), {**moved, "seq": 99}]
    tampered.remove(moved)
    seqs_with_gap = {**seqs, gone["kiosk"]: {**seqs[gone["kiosk"]], "missing": 1, "gaps": [{"first": gone["seq"], "last": gone["seq"]}]}}
    verdict = check(sent, tampered, seqs_with_gap)

    assert not verdict.ok
    assert verdict.missing == [gone["id"]] and verdict.doubled == [twice["id"]] and verdict.misplaced == [moved["id"]]
    assert verdict.accounting_count == 1 and gone["kiosk"] in verdict.accounting[0]
    with pytest.raises(NotExactlyOnce, match="1 missing"):
        raise NotExactlyOnce(verdict)


def test_the_forwarder_rules_are_the_kiosks_defaults():
    rules = ForwarderRules.kiosk_defaults()
    assert (rules.batch_size, rules.backoff_base_s, rules.backoff_cap_s, rules.retry_after_cap_s) == (100, 1.0, 300.0, 3600.0)
    assert (rules.connect_timeout_s, rules.read_timeout_s) == (5.0, 15.0)
