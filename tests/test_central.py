"""The reference central, through real HTTP on 127.0.0.1 against the real server process.

What a kiosk (or an integrator) relies on: an identification is stored once under its id however
often it arrives, bad records are rejected one by one, bad requests get a JSON error (never a
stack trace), and every fault the kiosk's tests need can be switched on.
"""

from __future__ import annotations

import itertools
import json
import socket
import sqlite3
import subprocess
import sys
import uuid

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.central import CENTRAL_TOKEN
from support.postgres import new_database
from support.waiting import wait_until

from central.contract import MAX_BATCH, record_problem
from central.server import start_subprocess

KIOSK = {"id": "kiosk-7", "site": "Riga, Brivibas 5"}
TIMEOUT = (5, 30)


#: Seqs of test records: a kiosk numbers its identifications without repeats, and the central
#: refuses a (kiosk, seq) held under another id as a conflict.
_SEQS = itertools.count(1)


def identification(**overrides) -> dict:
    record = {
        "id": str(uuid.uuid4()),
        "seq": next(_SEQS),
        "contract": "0012345678",
        "card_issue": 1,
        "scanned_at": "2024-05-02T09:15:00.123456+00:00",
        "clock_synced": True,
        "symbology": "Code128",
    }
    record.update(overrides)
    return record


def post(server, records, token=CENTRAL_TOKEN, kiosk=KIOSK, session=requests, **kwargs) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    return session.post(
        server.url + "/v1/identifications",
        json={"kiosk": kiosk, "identifications": records},
        headers=headers,
        timeout=kwargs.pop("timeout", TIMEOUT),
        **kwargs,
    )


def statuses(response) -> list[str]:
    assert response.status_code == 200, response.text
    return [r["status"] for r in response.json()["results"]]


def held(server) -> dict[str, dict]:
    return {r["id"]: r for r in server.identifications()}


def assert_json_error(response, code: int) -> None:
    assert response.status_code == code
    assert response.headers["Content-Type"] == "application/json"
    body = response.json()
    assert isinstance(body["error"], str) and isinstance(body["message"], str)
    assert "Traceback" not in response.text and 'File "' not in response.text


#: Every test of the API here runs on both stores: the reference server over SQLite and over PostgreSQL.
STORES = ["sqlite", "postgresql"]


@pytest.fixture(params=STORES)
def central(request, central_factory):
    """A fresh reference server on each store (PostgreSQL: a new database in the session's cluster)."""
    return central_factory(db=request.getfixturevalue("pg_url") if request.param == "postgresql" else None)


@pytest.fixture
def sqlite_central(central_factory):
    """For the tests about the SQLite file itself (its mode, its migrations)."""
    return central_factory()


@pytest.fixture(scope="module", params=STORES)
def shared_central(request, tmp_path_factory):
    """One server per store for the tests that only add records under fresh ids (saves a start per case)."""
    folder = tmp_path_factory.mktemp("central")
    if request.param == "postgresql":
        db = new_database(request.getfixturevalue("pg_cluster"))
        with start_subprocess(db, CENTRAL_TOKEN, files=folder) as server:
            yield server
    else:
        with start_subprocess(folder, CENTRAL_TOKEN) as server:
            yield server


# --- health and auth ------------------------------------------------------------------------------


def test_health_needs_no_token(central):
    response = requests.get(central.url + "/v1/health", timeout=TIMEOUT)
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@pytest.mark.parametrize("header", [None, "Bearer wrong", "Basic dGVzdC10b2tlbg==", "Bearer", "test-token"])
def test_a_missing_or_wrong_token_is_401_and_stores_nothing(shared_central, header):
    headers = {"Authorization": header} if header else {}
    record = identification()
    response = requests.post(
        shared_central.url + "/v1/identifications", json={"kiosk": KIOSK, "identifications": [record]}, headers=headers, timeout=TIMEOUT
    )
    assert_json_error(response, 401)
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert_json_error(requests.get(shared_central.url + "/v1/identifications", headers=headers, timeout=TIMEOUT), 401)
    assert record["id"] not in held(shared_central)


def test_every_configured_token_is_accepted(central_factory):
    server = central_factory(token=["old-token", "new-token"])
    assert statuses(post(server, [identification()], token="old-token")) == ["accepted"]
    assert statuses(post(server, [identification()], token="new-token")) == ["accepted"]
    assert_json_error(post(server, [identification()], token="test-token"), 401)


def test_tokens_reach_the_server_in_a_file_never_on_its_command_line(central_factory):
    # A token may start with "-" (a random URL-safe token does, 1 time in 64): it must not be
    # taken for an option, and no token may show in `ps`.
    server = central_factory(token="-dash-first-token")
    assert statuses(post(server, [identification()], token="-dash-first-token")) == ["accepted"]
    with open(f"/proc/{server.process.pid}/cmdline", "rb") as f:
        assert b"dash-first" not in f.read()
    assert oct(server.token_file.stat().st_mode & 0o777) == "0o600"


# --- accepted, duplicate, rejected ----------------------------------------------------------------


def test_accepted_identifications_are_listed_with_kiosk_and_site(central):
    first, second = identification(seq=1), identification(seq=2, contract="0098765432", card_issue=12, clock_synced=False)
    assert statuses(post(central, [first, second])) == ["accepted", "accepted"]
    listed = central.identifications()
    assert [r["id"] for r in listed] == [first["id"], second["id"]]
    assert {k: listed[1][k] for k in ("seq", "contract", "card_issue", "kiosk", "site", "scanned_at", "receipts")} == {
        "seq": 2,
        "contract": "0098765432",
        "card_issue": 12,
        "kiosk": "kiosk-7",
        "site": "Riga, Brivibas 5",
        "scanned_at": "2024-05-02T09:15:00.123456+00:00",
        "receipts": 1,
    }
    assert listed[1]["clock_synced"] is False


def test_a_repeated_id_is_a_duplicate_stored_once_with_its_receipts_counted(central):
    record = identification()
    assert statuses(post(central, [record])) == ["accepted"]
    results = post(central, [dict(record, id=record["id"].upper())]).json()["results"]  # a retry: the same record
    assert results == [{"id": record["id"].upper(), "status": "duplicate", "reason": None}]
    stored = held(central)
    assert list(stored) == [record["id"]] and stored[record["id"]]["receipts"] == 2


def test_a_repeated_id_with_another_payload_is_a_conflict_rejected_alone_and_listed(central):
    record = identification()
    assert statuses(post(central, [record])) == ["accepted"]
    # Same id, another contract: a kiosk bug or a forged copy, never a silent duplicate.
    forged, fresh = dict(record, contract="0098765432", seq=next(_SEQS)), identification()
    results = post(central, [forged, fresh]).json()["results"]
    assert [r["status"] for r in results] == ["rejected", "accepted"]
    assert results[0]["reason"].startswith("conflict: ") and "contract" in results[0]["reason"]
    assert "0098765432" not in results[0]["reason"]  # the reason names fields, never values
    stored = held(central)
    assert stored[record["id"]]["contract"] == "0012345678" and stored[record["id"]]["receipts"] == 1 and fresh["id"] in stored
    assert [(c["id"], c["kiosk"]) for c in central.conflicts()] == [(record["id"], KIOSK["id"])]
    assert "CONFLICT" in central.log_text() and "0098765432" not in central.log_text()


# --- per-kiosk accounting -------------------------------------------------------------------------


def test_the_seqs_held_per_kiosk_show_the_contiguous_run_gaps_reuse_and_repeats(central):
    records = [identification(seq=s) for s in (1, 2, 3, 5, 8, 9)]
    reused = identification(seq=9)  # another id under a seq already held: the kiosk numbered two alike
    assert statuses(post(central, [*records, reused])) == ["accepted"] * 6 + ["rejected"]
    assert statuses(post(central, records[:2])) == ["duplicate"] * 2  # retries: harmless
    assert statuses(post(central, [identification(seq=4)], kiosk={"id": "other", "site": ""})) == ["accepted"]
    assert central.seqs_held("kiosk-7") == {
        "kiosk": "kiosk-7",
        "held": 6,
        "highest": 9,
        "contiguous_through": 3,
        "missing": 3,
        "gaps": [{"first": 4, "last": 4}, {"first": 6, "last": 7}],
        "gaps_truncated": False,
        "reused": [9],
        "repeats": 2,
        "conflicts": 1,
    }
    other = central.seqs_held("other")
    assert (other["held"], other["contiguous_through"], other["gaps"]) == (1, 0, [{"first": 1, "last": 3}])


def test_a_kiosk_id_is_percent_encoded_in_the_seqs_path_and_the_token_is_needed(central):
    kiosk = {"id": "Riga/5 kiosk?", "site": ""}
    assert statuses(post(central, [identification(seq=1)], kiosk=kiosk)) == ["accepted"]
    assert central.seqs_held("Riga/5 kiosk?")["contiguous_through"] == 1
    assert central.seqs_held("never-seen")["held"] == 0
    url = central.url + "/v1/kiosks/Riga%2F5%20kiosk%3F/seqs"
    assert_json_error(requests.get(url, timeout=TIMEOUT), 401)
    assert requests.get(url, headers={"Authorization": f"Bearer {CENTRAL_TOKEN}"}, timeout=TIMEOUT).json()["held"] == 1
    assert_json_error(requests.post(url, headers={"Authorization": f"Bearer {CENTRAL_TOKEN}"}, timeout=TIMEOUT), 405)
    assert_json_error(requests.get(central.url + "/v1/kiosks//seqs", timeout=TIMEOUT), 404)


def test_an_id_twice_in_one_batch_is_accepted_then_duplicate(central):
    record = identification()
    upper = dict(record, id=record["id"].upper())  # the same UUID spelled in capitals
    assert statuses(post(central, [record, upper, record])) == ["accepted", "duplicate", "duplicate"]
    assert held(central)[record["id"]]["receipts"] == 3


@pytest.mark.parametrize(
    "field, value, reason_start",
    [
        ("id", "not-a-uuid", "invalid-id"),
        ("id", "{3f1c0a52-6a3e-4c1e-9a57-0d3a1f2b9c10}", "invalid-id"),
        ("id", 17, "invalid-id"),
        ("seq", 0, "invalid-seq"),
        ("seq", -3, "invalid-seq"),
        ("seq", "1", "invalid-seq"),
        ("seq", True, "invalid-seq"),
        ("seq", 1.5, "invalid-seq"),
        ("seq", 2**63, "invalid-seq"),
        ("contract", "123456789", "invalid-contract"),
        ("contract", "00123456789", "invalid-contract"),
        ("contract", 12345678, "invalid-contract"),
        ("contract", "001234567\u0669", "invalid-contract"),  # an Arabic-Indic digit
        ("contract", "0000000000", "invalid-contract"),
        ("card_issue", 0, "invalid-card_issue"),
        ("card_issue", 100, "invalid-card_issue"),
        ("card_issue", "01", "invalid-card_issue"),
        ("scanned_at", "2024-05-02 09:15", "invalid-scanned_at"),
        ("scanned_at", "2024-05-02T09:15:00", "invalid-scanned_at"),  # no UTC offset
        ("scanned_at", "2024-13-02T09:15:00Z", "invalid-scanned_at"),
        ("scanned_at", 1714641300, "invalid-scanned_at"),
        ("clock_synced", "yes", "invalid-clock_synced"),
        ("clock_synced", None, "invalid-clock_synced"),
        ("symbology", "", "invalid-symbology"),
        ("symbology", "Code\n128", "invalid-symbology"),
        ("symbology", None, "invalid-symbology"),
        ("symbology", "Code\ud800", "invalid-symbology"),  # a lone surrogate: not storable text
    ],
)
def test_an_invalid_record_is_rejected_alone_with_a_reason(shared_central, field, value, reason_start):
    good_before, bad, good_after = identification(), identification(**{field: value}), identification()
    before = len(shared_central.identifications())
    results = post(shared_central, [good_before, bad, good_after]).json()["results"]
    assert [r["status"] for r in results] == ["accepted", "rejected", "accepted"]
    assert results[1]["reason"].startswith(reason_start + ":")
    assert results[1]["id"] == (value if field == "id" and isinstance(value, str) else bad["id"] if field != "id" else None)
    stored = held(shared_central)
    assert len(stored) == before + 2 and good_before["id"] in stored and good_after["id"] in stored


def test_a_record_missing_a_field_is_rejected(shared_central):
    record = identification()
    del record["clock_synced"]
    results = post(shared_central, [record]).json()["results"]
    assert results[0]["status"] == "rejected" and results[0]["reason"].startswith("invalid-clock_synced:")


def test_the_reason_never_quotes_the_value(shared_central):
    results = post(shared_central, [identification(contract="12345<script>")]).json()["results"]
    assert "12345" not in results[0]["reason"] and "<script>" not in results[0]["reason"]


def test_reject_contract_refuses_those_identifications_every_time(central_factory):
    server = central_factory(reject_contracts=["0098765432"])
    refused, fine = identification(contract="0098765432"), identification()
    for _ in range(2):  # a retry is refused again: it is not a transient fault
        results = post(server, [refused, fine]).json()["results"]
        assert [r["status"] for r in results] == ["rejected", "accepted" if _ == 0 else "duplicate"]
        assert results[0]["reason"].startswith("contract-refused:")
    assert list(held(server)) == [fine["id"]]


def test_an_empty_batch_is_answered_with_no_results(shared_central):
    assert post(shared_central, []).json() == {"results": []}


def test_whole_numbers_written_as_floats_are_integers_as_in_json_schema(shared_central):
    record = identification(seq=float(next(_SEQS)), card_issue=2.0)
    assert statuses(post(shared_central, [record])) == ["accepted"]
    stored = held(shared_central)[record["id"]]
    assert (stored["seq"], stored["card_issue"]) == (int(record["seq"]), 2)
    assert isinstance(stored["seq"], int)


def test_extra_fields_are_ignored(shared_central):
    record = identification(decoder="zxing-cpp")
    assert statuses(post(shared_central, [record], kiosk=dict(KIOSK, firmware="1.2"))) == ["accepted"]


# --- bad requests ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not json",
        b"<html><body>hello</body></html>",
        b'{"kiosk": {"id": "k", "site": ""}, "identifications": [',
        b"\xff\xfe\x00",
        b"[" * 100_000,  # nesting deeper than the JSON parser's recursion limit
        json.dumps([]).encode(),
        json.dumps({"identifications": []}).encode(),
        json.dumps({"kiosk": "k", "identifications": []}).encode(),
        json.dumps({"kiosk": {"id": "", "site": ""}, "identifications": []}).encode(),
        json.dumps({"kiosk": {"id": "k"}, "identifications": []}).encode(),
        json.dumps({"kiosk": {"id": "k", "site": None}, "identifications": []}).encode(),
        json.dumps({"kiosk": {"id": "k\x1b[2J", "site": ""}, "identifications": []}).encode(),
        json.dumps({"kiosk": {"id": "k", "site": "\udc00"}, "identifications": []}).encode(),
        json.dumps({"kiosk": KIOSK}).encode(),
        json.dumps({"kiosk": KIOSK, "identifications": {"id": "x"}}).encode(),
        json.dumps({"kiosk": KIOSK, "identifications": ["x"]}).encode(),
        json.dumps({"kiosk": KIOSK, "identifications": [identification(), 7]}).encode(),
    ],
)
def test_a_body_that_is_not_json_or_not_the_right_shape_is_400_json(shared_central, body):
    before = len(shared_central.identifications())
    response = requests.post(
        shared_central.url + "/v1/identifications",
        data=body,
        headers={"Authorization": f"Bearer {CENTRAL_TOKEN}", "Content-Type": "application/json"},
        timeout=TIMEOUT,
    )
    assert_json_error(response, 400)
    assert len(shared_central.identifications()) == before


def test_a_batch_over_the_limit_is_413_and_stores_nothing(shared_central):
    before = len(shared_central.identifications())
    response = post(shared_central, [identification() for _ in range(MAX_BATCH + 1)])
    assert_json_error(response, 413)
    assert len(shared_central.identifications()) == before
    assert statuses(post(shared_central, [identification() for _ in range(MAX_BATCH)])) == ["accepted"] * MAX_BATCH


def test_unknown_paths_and_methods_are_json_errors(shared_central):
    assert_json_error(requests.get(shared_central.url + "/v2/identifications", timeout=TIMEOUT), 404)
    response = requests.delete(shared_central.url + "/v1/identifications", timeout=TIMEOUT)
    assert_json_error(response, 405)
    assert response.headers["Allow"] == "GET, POST"


def test_a_garbage_request_line_gets_a_json_error(shared_central):
    with socket.create_connection(("127.0.0.1", shared_central.port), timeout=10) as conn:
        conn.sendall(b"\x16\x03\x01 garbage\r\n\r\n")
        answer = b""
        while chunk := conn.recv(4096):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.") and b" 400 " in head.split(b"\r\n")[0]
    assert "error" in json.loads(body)


def test_a_keep_alive_connection_survives_a_401_and_a_400(shared_central):
    with requests.Session() as session:
        assert_json_error(post(shared_central, [identification()], token="wrong", session=session), 401)
        bad = session.post(
            shared_central.url + "/v1/identifications", data=b"nope", headers={"Authorization": f"Bearer {CENTRAL_TOKEN}"}, timeout=TIMEOUT
        )
        assert_json_error(bad, 400)
        assert statuses(post(shared_central, [identification()], session=session)) == ["accepted"]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=20,
)
record_like = st.fixed_dictionaries(
    {}, optional={k: json_values for k in ("id", "seq", "contract", "card_issue", "scanned_at", "clock_synced", "symbology")}
)
bodies = json_values | st.fixed_dictionaries(
    {"kiosk": json_values | st.just(KIOSK), "identifications": st.lists(record_like | json_values, max_size=5)}
)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=bodies)
def test_any_json_body_gets_a_contract_answer_never_a_crash(shared_central, body):
    response = requests.post(
        shared_central.url + "/v1/identifications", json=body, headers={"Authorization": f"Bearer {CENTRAL_TOKEN}"}, timeout=TIMEOUT
    )
    assert response.status_code in (200, 400), response.text
    answer = response.json()
    if response.status_code == 200:
        assert len(answer["results"]) == len(body["identifications"])
        for result in answer["results"]:
            assert result["status"] in ("accepted", "duplicate", "rejected")
            assert (result["reason"] is None) == (result["status"] != "rejected")
    else:
        assert set(answer) == {"error", "message"}


@given(st.dictionaries(st.sampled_from(["id", "seq", "contract", "card_issue", "scanned_at", "clock_synced", "symbology"]), json_values))
def test_record_problem_never_raises(raw):
    assert record_problem(raw) is None or isinstance(record_problem(raw), str)


# --- faults ---------------------------------------------------------------------------------------


def test_fail_rate_one_answers_503_with_retry_after_and_stores_nothing(central_factory):
    server = central_factory(fail_rate=1.0, retry_after=7)
    response = post(server, [identification()])
    assert_json_error(response, 503)
    assert response.headers["Retry-After"] == "7"
    assert server.identifications() == []
    assert requests.get(server.url + "/v1/health", timeout=TIMEOUT).status_code == 200


def test_drop_after_commit_stores_the_batch_but_the_kiosk_sees_no_answer(central_factory):
    server = central_factory(drop_after_commit_rate=1.0)
    record = identification()
    with pytest.raises(requests.ConnectionError):
        post(server, [record])
    assert held(server)[record["id"]]["receipts"] == 1
    server.restart(drop_after_commit_rate=0.0)
    # The kiosk retries: the central already has it.
    assert statuses(post(server, [record])) == ["duplicate"]
    assert held(server)[record["id"]]["receipts"] == 2


def test_reset_rate_resets_the_connection_and_stores_nothing(central_factory):
    server = central_factory(reset_rate=1.0)
    with pytest.raises(requests.ConnectionError):
        post(server, [identification()])
    assert server.identifications() == []


def test_latency_beyond_the_read_timeout_times_out_then_the_batch_is_stored(central_factory):
    server = central_factory(latency_ms=1000)
    record = identification()
    with pytest.raises(requests.ReadTimeout):
        post(server, [record], timeout=(5, 0.2))
    # Late, but stored (listing is not delayed): the kiosk's retry will be a duplicate.
    wait_until(lambda: record["id"] in held(server), what="the late batch stored")
    assert held(server)[record["id"]]["receipts"] == 1


@pytest.mark.parametrize("kind", ["html", "not-json", "wrong-shape", "missing-result", "unknown-status"])
def test_malformed_answers_come_after_the_commit(central_factory, kind):
    server = central_factory(malformed_rate=1.0, malformed_kind=kind)
    first, second = identification(seq=1), identification(seq=2)
    response = post(server, [first, second])
    assert response.status_code == 200
    try:
        results = response.json()["results"]
        well_formed = len(results) == 2 and all(r["status"] in ("accepted", "duplicate", "rejected") for r in results)
    except (ValueError, KeyError, TypeError):
        well_formed = False
    assert not well_formed
    assert set(held(server)) == {first["id"], second["id"]}


def test_the_seed_makes_fault_decisions_repeatable(central_factory):
    def outcomes(server) -> list[int]:
        return [post(server, [identification()]).status_code for _ in range(12)]

    first = outcomes(central_factory(fail_rate=0.5, seed=42))
    second = outcomes(central_factory(fail_rate=0.5, seed=42))
    assert first == second and {200, 503} == set(first)


# --- the process ----------------------------------------------------------------------------------


def test_sigterm_stops_it_cleanly_and_the_data_outlives_the_process(central):
    record = identification()
    post(central, [record])
    assert central.stop() == 0
    assert "Traceback" not in central.log_text()
    central.restart()
    assert held(central)[record["id"]]["receipts"] == 1


def test_the_database_is_private_and_in_wal_mode(sqlite_central):
    central = sqlite_central
    post(central, [identification()])
    assert central.db.stat().st_mode & 0o077 == 0
    with sqlite3.connect(central.db) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_tokens_can_come_from_a_file(tmp_path):
    token_file = tmp_path / "tokens"
    token_file.write_text("# one per line\nfirst-token\n\nsecond-token\n")
    command = [sys.executable, "-m", "central.server", "--db", str(tmp_path / "c.db"), "--port", "0", "--token-file", str(token_file)]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True) as process:
        try:
            url = process.stdout.readline().strip().removeprefix("central listening on ")
            # A kiosk's endpoint: the listings of every client's records need an admin token.
            for token in ("first-token", "second-token"):
                response = requests.get(url + "/v1/kiosks/k-1/seqs", headers={"Authorization": f"Bearer {token}"}, timeout=TIMEOUT)
                assert response.json()["held"] == 0
            assert (
                requests.get(url + "/v1/kiosks/k-1/seqs", headers={"Authorization": "Bearer # one per line"}, timeout=TIMEOUT).status_code
                == 401
            )
        finally:
            process.terminate()
        assert process.wait(timeout=30) == 0


def test_it_refuses_to_start_without_a_token(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "central.server", "--db", str(tmp_path / "c.db"), "--port", "0"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert "--token" in result.stderr and "Traceback" not in result.stderr


def test_a_taken_port_is_reported_not_a_traceback(central, tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "central.server", "--db", str(tmp_path / "c.db"), "--port", str(central.port), "--token", "t"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{central.port}" in result.stderr and "Traceback" not in result.stderr


def test_start_subprocess_reports_a_server_that_cannot_start(tmp_path):
    not_a_database = tmp_path / "c.db"
    not_a_database.write_bytes(b"this is not SQLite" * 100)
    with pytest.raises(RuntimeError, match="cannot open the database"):
        start_subprocess(not_a_database, "t")


# --- card formats ---------------------------------------------------------------------------


def test_a_record_without_format_is_v1_as_old_kiosks_send_it(shared_central):
    old, new = identification(), identification(format="v1")
    assert statuses(post(shared_central, [old, new])) == ["accepted", "accepted"]
    assert [held(shared_central)[r["id"]]["format"] for r in (old, new)] == ["v1", "v1"]


def test_a_format_the_central_does_not_accept_is_rejected_by_name(shared_central):
    response = post(shared_central, [identification(format="xu", contract="12345678", card_issue=3)])
    assert response.json()["results"][0]["reason"].startswith("invalid-format: ")


def test_accept_format_checks_the_contract_by_its_format(central_factory):
    server = central_factory(accept_formats=["xu:8:9", "plain:6:0"])
    records = [
        identification(format="xu", contract="12345678", card_issue=3),
        identification(format="plain", contract="123456", card_issue=None),
        identification(format="xu", contract="0012345678", card_issue=1),  # a v1 contract is not xu's
        identification(format="xu", contract="12345678", card_issue=10),
        identification(format="plain", contract="123456", card_issue=1),  # plain has no issue
        identification(),  # v1 stays accepted
    ]
    results = post(server, records).json()["results"]
    assert [r["status"] for r in results] == ["accepted", "accepted", "rejected", "rejected", "rejected", "accepted"]
    assert [r["reason"].split(":")[0] for r in results[2:5]] == ["invalid-contract", "invalid-card_issue", "invalid-card_issue"]
    stored = held(server)
    assert [(stored[r["id"]]["format"], stored[r["id"]]["card_issue"]) for r in records[:2]] == [("xu", 3), ("plain", None)]


def test_a_version_1_database_is_upgraded_keeping_its_records_in_order(tmp_path):
    from central.storage.sqlite import SqliteStore as Store

    path = tmp_path / "central.db"
    conn = sqlite3.connect(path)
    conn.execute(
        "CREATE TABLE identifications (id TEXT PRIMARY KEY, seq INTEGER NOT NULL, contract TEXT NOT NULL,"
        " card_issue INTEGER NOT NULL, kiosk TEXT NOT NULL, site TEXT NOT NULL, scanned_at TEXT NOT NULL,"
        " clock_synced INTEGER NOT NULL, symbology TEXT NOT NULL, received_at TEXT NOT NULL, receipts INTEGER NOT NULL DEFAULT 1)"
    )
    ids = ["b" * 8 + "-0000-4000-8000-" + "0" * 12, "a" * 8 + "-0000-4000-8000-" + "0" * 12]
    for seq, id in enumerate(ids, 1):
        conn.execute(
            "INSERT INTO identifications VALUES (?, ?, '0012345678', 1, 'k-1', '', '2024-05-02T09:15:00Z', 1, 'Code128', 'x', 2)", [id, seq]
        )
    conn.execute("PRAGMA user_version = 1")
    conn.commit()
    conn.close()
    store = Store(path)
    try:
        assert [(r["id"], r["seq"], r["format"], r["receipts"]) for r in store.identifications()] == [
            (ids[0], 1, "v1", 2),
            (ids[1], 2, "v1", 2),
        ]
    finally:
        store.close()
