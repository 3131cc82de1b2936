"""The HTTP long poll for POS software (``pos.output = "http"``), driven by a real HTTP client.

The POS software is ``requests`` (or a raw socket) in a thread of the test, polling an
:class:`HttpPollLink` served on 127.0.0.1 at a port the OS picks; the kiosk's side is the link's
``hand_over``, alone or behind the POS output with a real outbox.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path

import pytest
import requests
from support.cards import contracts
from support.config import QUICK_RETRY, kiosk_config, write_config
from support.kiosk import run_kiosk
from support.ports import occupied_port, reserved_port
from support.waiting import wait_until

from device.card import Card
from device.cli import main
from device.clock import SystemClock
from device.config import EXIT_CONFIG, ConfigError, load
from device.daemon.faults import FaultRegistry
from device.events import Identified
from device.outbox import Outbox
from device.outputs.pos import http_poll
from device.outputs.pos.http_poll import DEFAULT_POLL_S, HEADER_DEADLINE_S, MAX_CONNECTIONS, MAX_POLL_S, SCAN_PATH, HttpPollLink
from device.outputs.pos.link import PosOffline
from device.outputs.pos.output import PosOutput
from device.pos_template import MAX_LINE_LENGTH, PosOutcome

TOKEN = "pos-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
#: The client's own ceiling on one request: far above any wait here, only there so a broken link fails the test instead of hanging it.
CLIENT_TIMEOUT = (5, 60)


@pytest.fixture
def token_file(tmp_path):
    path = tmp_path / "pos-token"
    path.write_text(TOKEN + "\n")
    return path


@pytest.fixture
def link(token_file):
    served = HttpPollLink(("127.0.0.1", 0), token_file=str(token_file), wait_s=0.2)
    yield served
    served.close()


class Poll(threading.Thread):
    """A POS's ``GET /v1/scan`` in a thread; :attr:`response` once answered."""

    def __init__(self, link: HttpPollLink, *, timeout_s: float = 60, headers=AUTH):
        super().__init__(daemon=True)
        self.url, self.params, self.headers = link.url, {"timeout_s": timeout_s}, headers
        self.response: requests.Response | None = None
        self.start()

    def run(self) -> None:
        self.response = requests.get(self.url, params=self.params, headers=self.headers, timeout=CLIENT_TIMEOUT)

    def answer(self) -> requests.Response:
        self.join(CLIENT_TIMEOUT[1])
        assert self.response is not None, "the poll was never answered"
        return self.response


def test_a_waiting_poll_receives_the_line_and_hand_over_returns_once_it_is_written(link):
    poll = Poll(link)
    wait_until(lambda: link.polling, what="the POS's poll to wait")
    link.hand_over("0012345678\n")
    answer = poll.answer()
    assert (answer.status_code, answer.json()) == (200, {"line": "0012345678\n"})
    assert answer.headers["Content-Type"] == "application/json"
    assert not link.polling, "one line per poll: the POS asks again for the next"


def test_a_second_poll_while_one_waits_is_busy_409_and_delete_cancels_the_waiting_one_204(link):
    first = Poll(link)
    wait_until(lambda: link.polling, what="the first poll to wait")
    second = requests.get(link.url, params={"timeout_s": 60}, headers=AUTH, timeout=CLIENT_TIMEOUT)
    assert second.status_code == 409 and "one poll at a time" in second.json()["error"]
    cancel = requests.delete(link.url, headers=AUTH, timeout=CLIENT_TIMEOUT)
    assert cancel.status_code == 204
    assert first.answer().status_code == 204 and first.answer().content == b""
    assert not link.polling
    with pytest.raises(PosOffline):
        link.hand_over("0012345678\n")  # the cancelled poll takes nothing
    again = Poll(link)  # the kiosk is free to be claimed again
    wait_until(lambda: link.polling, what="a new poll to wait")
    link.hand_over("0087654321\n")
    assert again.answer().json() == {"line": "0087654321\n"}


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer not-the-token"}, {"Authorization": f"Basic {TOKEN}"}])
def test_a_request_without_the_token_is_refused_401_and_claims_nothing(link, headers):
    for method in (requests.get, requests.delete):
        answer = method(link.url, params={"timeout_s": 60}, headers=headers, timeout=CLIENT_TIMEOUT)
        assert answer.status_code == 401 and answer.headers["WWW-Authenticate"].startswith("Bearer")
    assert not link.polling


def test_a_token_file_that_is_gone_refuses_every_request(link, token_file):
    token_file.unlink()
    assert requests.get(link.url, params={"timeout_s": 0}, headers=AUTH, timeout=CLIENT_TIMEOUT).status_code == 401


def test_hand_over_with_nobody_polling_is_pos_offline_naming_the_url(link):
    with pytest.raises(PosOffline, match=f"no POS software is polling http://127.0.0.1:{link.address[1]}{SCAN_PATH}"):
        link.hand_over("0012345678\n")


def test_a_poll_whose_own_timeout_runs_out_is_answered_204_and_then_nobody_polls(link):
    answer = requests.get(link.url, params={"timeout_s": 0.05}, headers=AUTH, timeout=CLIENT_TIMEOUT)
    assert (answer.status_code, answer.content) == (204, b"")
    assert not link.polling
    with pytest.raises(PosOffline):
        link.hand_over("0012345678\n")


def test_a_poll_whose_client_hung_up_is_dropped_and_gets_no_line(link):
    host, port = link.address
    with socket.create_connection((host, port), timeout=5) as client:
        client.sendall(f"GET {SCAN_PATH}?timeout_s=60 HTTP/1.0\r\nAuthorization: Bearer {TOKEN}\r\n\r\n".encode())
        wait_until(lambda: link.polling, what="the raw poll to wait")
    wait_until(lambda: not link.polling, what="the hung-up poll to be dropped")
    with pytest.raises(PosOffline):
        link.hand_over("0012345678\n")


def closed_by_server(client: socket.socket) -> bool:
    """Whether the server closed ``client``'s connection without an answer (it reads end-of-file or a reset)."""
    client.settimeout(CLIENT_TIMEOUT[1])
    try:
        return client.recv(1) == b""
    except ConnectionResetError:
        return True


def test_a_client_that_does_not_finish_its_headers_in_time_is_cut_off(token_file, monkeypatch):
    monkeypatch.setattr(http_poll, "HEADER_DEADLINE_S", 0.2)
    # Each read's own timeout beyond the client's wait: only the headers' deadline can end this connection in time.
    monkeypatch.setattr(http_poll._Handler, "timeout", 10 * CLIENT_TIMEOUT[1])
    link = HttpPollLink(("127.0.0.1", 0), token_file=str(token_file))
    try:
        with socket.create_connection(link.address, timeout=5) as slow:
            slow.sendall(f"GET {SCAN_PATH} HTTP/1.0\r\nAuthorization: Bea".encode())  # and then nothing more
            assert closed_by_server(slow)
        assert not link.polling
    finally:
        link.close()


def test_connections_beyond_the_bound_are_closed_at_once_and_served_again_once_one_ends(token_file, monkeypatch):
    monkeypatch.setattr(http_poll, "MAX_CONNECTIONS", 2)
    monkeypatch.setattr(http_poll, "HEADER_DEADLINE_S", 10 * CLIENT_TIMEOUT[1])  # the held connections stay held
    link = HttpPollLink(("127.0.0.1", 0), token_file=str(token_file))
    try:
        held = [socket.create_connection(link.address, timeout=5) for _ in range(2)]  # each sends nothing yet
        for client in held:  # each has its thread once a request on it is answered
            client.sendall(f"DELETE {SCAN_PATH} HTTP/1.0\r\nAuthorization: Bearer {TOKEN}\r\n".encode())
        with socket.create_connection(link.address, timeout=5) as extra:  # a whole request: served, it would be answered
            try:
                extra.sendall(f"DELETE {SCAN_PATH} HTTP/1.0\r\nAuthorization: Bearer {TOKEN}\r\n\r\n".encode())
            except (BrokenPipeError, ConnectionResetError):
                pass  # closed already
            assert closed_by_server(extra)
        held[0].sendall(b"\r\n")
        assert held[0].recv(64).startswith(b"HTTP/1.0 204")
        held[0].close()

        def answered() -> requests.Response | None:
            try:
                return requests.delete(link.url, headers=AUTH, timeout=CLIENT_TIMEOUT)
            except requests.ConnectionError:  # closed as one too many while the ended one's slot is not yet free
                return None

        assert wait_until(answered, what="a connection served once one ended").status_code == 204
        held[1].close()
    finally:
        link.close()


def test_bad_requests_are_answered_and_claim_nothing(link):
    bad_timeout = requests.get(link.url, params={"timeout_s": "soon"}, headers=AUTH, timeout=CLIENT_TIMEOUT)
    assert bad_timeout.status_code == 400 and "timeout_s" in bad_timeout.json()["error"]
    elsewhere = requests.get(link.url.replace(SCAN_PATH, "/v1/other"), headers=AUTH, timeout=CLIENT_TIMEOUT)
    assert elsewhere.status_code == 404
    post = requests.post(link.url, headers=AUTH, timeout=CLIENT_TIMEOUT)
    assert post.status_code == 405 and post.headers["Allow"] == "GET, DELETE"
    assert not link.polling


def test_closing_the_link_ends_the_waiting_poll_204_and_releases_the_port(token_file):
    link = HttpPollLink(("127.0.0.1", 0), token_file=str(token_file))
    poll = Poll(link)
    wait_until(lambda: link.polling, what="the poll to wait")
    link.close()
    assert poll.answer().status_code == 204
    with pytest.raises(requests.ConnectionError):
        requests.get(link.url, headers=AUTH, timeout=CLIENT_TIMEOUT)


def http_config(tmp_path, token_file, listen: str, **pos):
    """A kiosk.toml handing over with ``pos.output = "http"`` on ``listen``, the test's token, and ``pos`` on top."""
    return write_config(tmp_path / "kiosk.toml", pos={"output": "http", "http_listen": listen, "http_token_file": str(token_file), **pos})


class Kiosk:
    """What the POS output is given of the kiosk: its outbox and a real fault registry, whose events are kept."""

    def __init__(self, outbox: Outbox):
        self.outbox = outbox
        self.events: list[object] = []
        self.faults = FaultRegistry(self.events.append)


def test_an_identification_reaches_the_polling_pos_through_the_pos_output_and_is_recorded_handed_over(tmp_path, token_file):
    outbox = Outbox(tmp_path / "outbox.db", kiosk_id="kiosk-pos", site="Riga 5", clock=SystemClock())
    kiosk = Kiosk(outbox)
    with reserved_port() as port:  # the link binds it with SO_REUSEADDR while the test holds it
        cfg = http_config(tmp_path, token_file, f"127.0.0.1:{port}", template="{contract}\t{issue}\n")
        output = PosOutput.from_config(load(cfg, environ={}).pos, outcomes=outbox, faults=kiosk.faults)
    link = output.link
    try:
        assert isinstance(link, HttpPollLink) and link.url == f"http://127.0.0.1:{port}{SCAN_PATH}"
        poll = Poll(link)
        wait_until(lambda: link.polling, what="the POS's poll to wait")
        record = outbox.commit(Card("v1", "0012345678", 2), symbology="Code128", decoder="zxing-cpp")
        output.on_identified(Identified(record, 0, time.monotonic()))
        assert poll.answer().json() == {"line": "0012345678\t2\n"}
        assert outbox.get(record.id).pos_outcome == "handed over"
        assert kiosk.events == [], "no fault"
        missed = outbox.commit(Card("v1", "0087654321", 1), symbology="Code128", decoder="zxing-cpp")
        output.on_identified(Identified(missed, 0, time.monotonic()))  # nobody polls now
        assert outbox.get(missed.id).pos_outcome == "POS offline"
        assert "no POS software is polling" in kiosk.events[-1].message
    finally:
        output.close()
        outbox.close()


def test_kiosk_config_check_refuses_a_non_loopback_listen_without_the_insecure_flag_naming_pos_http_listen(tmp_path, token_file):
    cfg = http_config(tmp_path, token_file, "0.0.0.0:8089")
    run = run_kiosk("config", "check", "--config", str(cfg))
    assert run.returncode == EXIT_CONFIG, run.stderr
    assert "pos.http_listen: plain HTTP on 0.0.0.0" in run.stderr and "pos.http_allow_insecure = true" in run.stderr
    http_config(tmp_path, token_file, "0.0.0.0:8089", http_allow_insecure=True)
    assert load(cfg, environ={}).pos.http_listen == "0.0.0.0:8089"


@pytest.mark.parametrize(
    ("pos", "key", "problem"),
    [
        ({"output": "http"}, "pos.http_token_file", 'required when pos.output = "http"'),
        ({"output": "http", "http_token_file": "/nonexistent/pos-token"}, "pos.http_token_file", "no such file"),
        ({"http_listen": "127.0.0.1"}, "pos.http_listen", "expected HOST:PORT"),
        ({"http_listen": "::1:8089"}, "pos.http_listen", "IPv6 in brackets"),
        ({"http_listen": "127.0.0.1:0"}, "pos.http_listen", "a port in 1 .. 65535"),
    ],
)
def test_the_http_settings_are_checked_by_the_config(tmp_path, pos, key, problem):
    cfg = write_config(tmp_path / "kiosk.toml", pos=pos)
    with pytest.raises(ConfigError, match=f"{key}: .*{problem}"):
        load(cfg, environ={})


def test_the_openapi_file_and_pos_md_state_the_link_s_own_numbers():
    docs = Path(__file__).resolve().parent.parent / "docs"
    api, guide = (docs / "pos-openapi.yaml").read_text(), (docs / "POS.md").read_text()
    assert f"default: {DEFAULT_POLL_S:g}\n" in api and f"longer values are cut to {MAX_POLL_S:g}" in api
    assert f"within {HEADER_DEADLINE_S:g} seconds of connecting" in api and f"maxLength: {MAX_LINE_LENGTH}\n" in api
    assert f"  {SCAN_PATH}:\n" in api and "[pos-openapi.yaml](pos-openapi.yaml)" in guide
    assert f"(default {DEFAULT_POLL_S:g}, at most {MAX_POLL_S:g})" in guide
    assert f"{MAX_CONNECTIONS} connections at a time, {HEADER_DEADLINE_S:g} seconds for a request's" in guide


def poll_when_listening(url: str, answers: list[requests.Response]) -> None:
    """The POS software started before the kiosk's server: it tries until a poll is answered."""

    def answered() -> requests.Response | None:
        try:
            return requests.get(url, params={"timeout_s": 60}, headers=AUTH, timeout=CLIENT_TIMEOUT)
        except requests.ConnectionError:  # nobody listens yet
            return None

    answers.append(wait_until(answered, what=f"a server answering at {url}"))


def test_kiosk_pos_test_answers_the_pos_software_s_poll_or_cannot_listen_exit_78(tmp_path, token_file):
    with reserved_port() as port:  # http.server binds it with SO_REUSEADDR while the test holds it
        cfg = http_config(tmp_path, token_file, f"127.0.0.1:{port}")
        answers: list[requests.Response] = []
        pos = threading.Thread(target=poll_when_listening, args=(f"http://127.0.0.1:{port}{SCAN_PATH}", answers), daemon=True)
        pos.start()
        run = run_kiosk("pos", "test", "--config", str(cfg))
        pos.join(CLIENT_TIMEOUT[1])
        assert run.returncode == 0, run.stderr
        assert "answered to the POS software's GET /v1/scan" in run.stdout and "handed over" in run.stdout
        assert answers and answers[0].json() == {"line": "0012345678\n"}
    with occupied_port() as port:
        http_config(tmp_path, token_file, f"127.0.0.1:{port}")
        run = run_kiosk("pos", "test", "--config", str(cfg))
        assert run.returncode == EXIT_CONFIG and f"pos.http_listen: cannot listen on 127.0.0.1:{port}" in run.stderr, run.stderr


class PosSoftware(threading.Thread):
    """POS software at the counter: polls ``url`` again right after each answer and keeps the lines, until :meth:`stop`."""

    def __init__(self, url: str):
        super().__init__(daemon=True)
        self.url, self.lines, self._stopping = url, [], threading.Event()
        self.start()

    def run(self) -> None:
        while not self._stopping.is_set():
            try:
                answer = requests.get(self.url, params={"timeout_s": 60}, headers=AUTH, timeout=CLIENT_TIMEOUT)
            except requests.ConnectionError:  # the kiosk stopped
                return
            if answer.status_code == 200:
                self.lines.append(answer.json()["line"])

    def claimed(self) -> bool:
        """Whether this POS's poll waits (another poll is told 409)."""
        return requests.get(self.url, params={"timeout_s": 0}, headers=AUTH, timeout=CLIENT_TIMEOUT).status_code == 409

    def stop(self) -> None:
        self._stopping.set()
        self.join(CLIENT_TIMEOUT[1])


def test_the_daemon_answers_each_identified_contract_once_to_the_polling_pos_and_queue_show_says_handed_over(
    tmp_path, token_file, central_factory, capsys
):
    from device.assembly import build_kiosk
    from device.tools.synth.video import Presentation, write_presentation_video

    shown = contracts(3)
    video = tmp_path / "counter.avi"
    truths = write_presentation_video(video, [Presentation.card(c, 1, hold_s=0.8) for c in shown], fps=10, size=(640, 360), seed=5)
    assert all(t.is_card for t in truths)
    with reserved_port() as port:
        pos_section = {"output": "http", "http_listen": f"127.0.0.1:{port}", "http_token_file": str(token_file)}
        cfg_path = kiosk_config(
            tmp_path, central=central_factory(), source=f"file:{video}", kiosk={"id": "kiosk-pos"}, api=QUICK_RETRY,
            feedback={"pin_factory": "mock"}, pos=pos_section,
        )  # fmt: skip
        kiosk = build_kiosk(load(cfg_path, environ={}))  # every configured output, the POS's among them
    pos = PosSoftware(f"http://127.0.0.1:{port}{SCAN_PATH}")
    try:
        wait_until(pos.claimed, what="the POS software's poll to wait")
        assert kiosk.run(threading.Event(), drain_timeout_s=60) == 0  # a finite run: every event handled before it returns
    finally:
        pos.stop()  # the kiosk closed its link: the waiting poll ended, the next is refused
    assert pos.lines == [f"{c}\n" for c in shown]
    for seq in range(1, len(shown) + 1):
        assert main(["queue", "show", str(seq), "--json", "--config", str(cfg_path)]) == 0
        assert json.loads(capsys.readouterr().out)["pos_outcome"] == PosOutcome.HANDED_OVER
