"""The delivery fault: delivery failing for ``api.delivery_alert_s`` is a FAULT with its cause, and dead
identifications make `kiosk status` exit 1.

Real `kiosk run` processes with a file camera; the central is a free port nobody listens on (then
the reference central started on it), a stub answering 503, or the reference central refusing a
contract. Each cause is one line, the same in `kiosk status`, `kiosk diag api` (with the next step)
and the log.
"""

from __future__ import annotations

import signal

import pytest
from support.cards import contracts
from support.central import CENTRAL_TOKEN, FakeCentral, answer, hang, html_error, unavailable, well_behaved
from support.config import kiosk_config
from support.daemon import Daemon, wait_for_status, with_empty_tail
from support.kiosk import run_kiosk
from support.ports import reserved_port

from central.process import start_subprocess
from device.central_client import CentralClient
from device.config import ApiSection, Config
from device.diag import check_central

#: Delivery retried within a second, and failing for a second is a fault: the tests wait on status, not on the clock.
QUICK = {"delivery_alert_s": 1, "backoff_base_s": 0.2, "backoff_cap_s": 1, "retry_after_cap_s": 1}


@pytest.mark.parametrize(
    "behaviour, cause, next_step",
    [
        (html_error(502), "the central answered HTTP 502 (no JSON error message)", "the central has a problem: tell operations"),
        (
            answer(500, {"error": "database down"}),
            "the central answered HTTP 500: database down",
            "the central has a problem: tell operations",
        ),
        (
            hang(),
            "cannot reach the central: no answer within 0.5 s (read timeout)",
            "check the network path; the central may be overloaded",
        ),
        (
            unavailable(),
            "the central is busy: it answered HTTP 503: overloaded",
            "the central is overloaded or down for maintenance: tell operations if it lasts",
        ),
        (answer(404, ""), "the central answered HTTP 404 for", "check api.url (the central's base URL)"),
    ],
    ids=["502-html", "500", "timeout", "503", "404"],
)
def test_diag_api_gives_the_next_step_for_each_cause(behaviour, cause, next_step):
    with FakeCentral() as stub:
        stub.then(behaviour)
        client = CentralClient.from_config(Config(api=ApiSection(url=stub.url, token="test-token", read_timeout_s=0.5)))
        check = check_central(client, "riga-5-1", "Riga 5")
    assert not check.ok and check.detail.startswith(cause) and check.next_step == next_step


def faults_of(report: dict) -> dict:
    return (report["daemon"] or {}).get("faults") or {}


def scanning_daemon(tmp_path, card_folder, url, shown):
    """The daemon with the cards ``shown``, then two minutes of empty counter (it keeps running)."""
    folder = with_empty_tail(card_folder(shown), seconds=120)
    cfg = kiosk_config(tmp_path, central=url, source=f"file:{folder}", pace="realtime", api=QUICK)
    return cfg, Daemon(tmp_path, cfg)


def stop(daemon: Daemon) -> str:
    daemon.proc.send_signal(signal.SIGTERM)
    assert daemon.exit_code() == 0, daemon.log
    return daemon.log


def test_a_central_that_refuses_connections_is_a_delivery_fault_until_it_is_up(tmp_path, card_folder):
    with reserved_port() as port:  # nobody listens there until the central starts on it
        shown = contracts(1)
        cfg, daemon = scanning_daemon(tmp_path, card_folder, f"http://127.0.0.1:{port}", shown)
        cause = f"cannot reach the central: connection refused by 127.0.0.1:{port}"
        next_step = "is the central up? check api.url and the firewall"
        with daemon:
            report = wait_for_status(cfg, lambda r: "delivery" in faults_of(r))
            fault = faults_of(report)["delivery"]
            assert fault.startswith(f"{cause} (failing since ") and fault.endswith(f"): {next_step}"), fault
            assert "backlog" not in faults_of(report)  # the backlog alert keeps its own hour
            status = run_kiosk("status", "--config", str(cfg))
            assert status.returncode == 1
            assert f"FAULT       delivery: {cause} (failing since " in status.stdout, status.stdout
            diag = run_kiosk("diag", "api", "--config", str(cfg))
            assert diag.returncode == 1
            said = [f"daemon: FAULT delivery: {fault}", f"PROBLEM: {cause}", f"next step: {next_step}"]
            assert diag.stdout.splitlines() == said, diag.stdout

            (tmp_path / "central").mkdir()
            with start_subprocess(tmp_path / "central", CENTRAL_TOKEN, port=port) as reference:  # the central is back
                report = wait_for_status(cfg, lambda r: r["queue"]["delivered"] == 1 and "delivery" not in faults_of(r))
                assert faults_of(report) == {} and report["queue"]["pending"] == 0
                assert run_kiosk("status", "--config", str(cfg)).returncode == 0
                assert [i["contract"] for i in reference.identifications()] == shown
                log = stop(daemon)
        assert log.count(f"fault delivery: {cause}") == 1, log
        assert "delivery fault cleared after" in log and "Traceback" not in log


def test_a_central_answering_503_for_long_is_a_delivery_fault_with_its_status(tmp_path, card_folder):
    shown = contracts(2)
    with FakeCentral() as stub:
        stub.default = unavailable(retry_after="1")  # busy for as long as the test says
        cfg, daemon = scanning_daemon(tmp_path, card_folder, stub.url, shown)
        with daemon:
            report = wait_for_status(cfg, lambda r: "delivery" in faults_of(r))
            fault = faults_of(report)["delivery"]
            assert fault.startswith("the central is busy: it answered HTTP 503: overloaded (failing since "), fault
            assert report["daemon"]["delivery"]["state"] == "retrying" and report["queue"]["pending"] >= 1
            diag = run_kiosk("diag", "api", "--config", str(cfg))
            assert diag.returncode == 1
            assert diag.stdout.splitlines()[1:] == [
                "PROBLEM: the central is busy: it answered HTTP 503: overloaded",
                "next step: the central is overloaded or down for maintenance: tell operations if it lasts",
            ], diag.stdout
            assert diag.stdout.startswith("daemon: FAULT delivery: the central is busy: it answered HTTP 503: overloaded (failing since ")
            stub.default = well_behaved  # the central recovers
            wait_for_status(cfg, lambda r: r["queue"]["delivered"] == 2 and not faults_of(r))
            log = stop(daemon)
        assert sorted(stub.receipts.values()) == [1, 1]
    assert "fault delivery: the central is busy: it answered HTTP 503" in log and "delivery fault cleared after" in log


def test_a_short_outage_is_no_delivery_fault(tmp_path, card_folder):
    """Below api.delivery_alert_s the retries are quiet: the central is back before the alert."""
    with FakeCentral() as stub:
        stub.then(unavailable(retry_after="1"))  # one 503, then it answers
        folder = with_empty_tail(card_folder(contracts(1)), seconds=120)
        cfg = kiosk_config(tmp_path, central=stub, source=f"file:{folder}", pace="realtime", api={**QUICK, "delivery_alert_s": 600})
        with Daemon(tmp_path, cfg) as daemon:
            wait_for_status(cfg, lambda r: r["queue"]["delivered"] == 1)
            log = stop(daemon)
        assert len(stub.posts) >= 2  # it did fail once
    assert "fault delivery" not in log and "delivery to the central failed" in log


def test_dead_identifications_make_status_exit_1_and_say_how_to_see_them(tmp_path, card_folder, central_factory):
    refused, fine = contracts(2)
    reference = central_factory(reject_contracts=[refused])
    cfg, daemon = scanning_daemon(tmp_path, card_folder, reference.url, [refused, fine])
    with daemon:
        report = wait_for_status(cfg, lambda r: r["queue"]["dead"] == 1 and r["queue"]["delivered"] == 1)
        assert faults_of(report) == {}  # nothing is wrong with the kiosk: the exit code is the dead one's
        status = run_kiosk("status", "--config", str(cfg))
        assert status.returncode == 1
        line = "DEAD        1 identification(s) refused by the central, never delivered: kiosk queue list --state dead"
        assert line in status.stdout.splitlines(), status.stdout
        dead = run_kiosk("queue", "list", "--state", "dead", "--config", str(cfg))
        assert dead.returncode == 0 and "contract-refused" in dead.stdout, dead.stdout
        stop(daemon)
