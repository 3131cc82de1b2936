"""The one client for the central, against real HTTP(S) servers on 127.0.0.1: each failure its type and cause."""

import re
import threading

import pytest
from support.central import (
    FakeCentral,
    answer,
    answer_json,
    endless_continue,
    hang,
    html_error,
    never_read,
    reset,
    stall_after_headers,
    trickle_body,
    trickle_headers,
    unavailable,
    well_behaved,
)
from support.ports import reserved_port

from device.central_client import (
    HEALTH_PATH,
    IDENTIFICATIONS_PATH,
    MAX_ANSWER_BYTES,
    CentralAborted,
    CentralBusy,
    CentralClient,
    CentralError,
    CentralMalformed,
    CentralRefusedToken,
    CentralTooSlow,
    CentralUnreachable,
    parse_retry_after,
)
from device.clock import FakeClock, parse_utc
from device.config import ApiSection, Config, ConfigError, load
from device.diag import check_central

TOKEN = "test-token"
EMPTY_BATCH = {"kiosk": {"id": "riga-5-1", "site": "Riga 5"}, "identifications": []}


def client_for(url, **api):
    options = dict(url=url, token=TOKEN, connect_timeout_s=2.0, read_timeout_s=5.0)
    options.update(api)
    return CentralClient.from_config(Config(api=ApiSection(**options)))


def with_health(ex):
    """The stub as a central with a health endpoint (open, no token needed)."""
    if ex.request.path == HEALTH_PATH:
        ex.send(200, {"status": "ok"})
    else:
        well_behaved(ex)


@pytest.fixture
def stub():
    with FakeCentral(token=TOKEN) as server:
        server.default = with_health
        yield server


# --- answers ------------------------------------------------------------------------------------


def test_post_json_sends_the_token_and_returns_the_parsed_answer(stub):
    answer_ = client_for(stub.url).post_json(IDENTIFICATIONS_PATH, EMPTY_BATCH)
    assert answer_.status == 200 and answer_.data == {"results": []}
    (post,) = stub.posts
    assert post.headers["authorization"] == f"Bearer {TOKEN}" and post.headers["user-agent"].startswith("counter-kiosk/")
    assert post.json == EMPTY_BATCH


def test_the_token_file_is_read_at_every_call(stub, tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text("wrong\n")
    client = client_for(stub.url, token="", token_file=str(token_file))
    with pytest.raises(CentralRefusedToken) as refused:
        client.post_json(IDENTIFICATIONS_PATH, EMPTY_BATCH)
    assert refused.value.status == 401 and "check api.token" in str(refused.value)
    token_file.write_text(TOKEN + "\n")  # fixed by the technician: no restart
    assert client.post_json(IDENTIFICATIONS_PATH, EMPTY_BATCH).status == 200


@pytest.mark.parametrize("token_file", ["missing", "empty"])
def test_no_usable_token_is_refused_before_sending(stub, tmp_path, token_file):
    (tmp_path / "empty").write_text("\n")
    path = tmp_path / token_file
    client = client_for(stub.url, token="", token_file=str(path))
    with pytest.raises(CentralRefusedToken) as refused:
        client.post_json(IDENTIFICATIONS_PATH, EMPTY_BATCH)
    assert str(refused.value) == f"token file {token_file}: {path} (api.token_file)"
    assert refused.value.status is None and stub.requests == []


@pytest.mark.parametrize(
    "behaviour, error, status, cause",
    [
        (answer(403, {"error": "kiosk not enrolled"}), CentralRefusedToken, 403, "HTTP 403: kiosk not enrolled"),
        (unavailable(retry_after="30"), CentralBusy, 503, "HTTP 503: overloaded"),
        (answer(429, {"error": "slow down"}), CentralBusy, 429, "HTTP 429"),
        (html_error(502), CentralError, 502, "HTTP 502 (no JSON error message)"),
        (answer(404, ""), CentralError, 404, "check api.url"),
        (answer(302, "", {"Location": "https://elsewhere.example/"}), CentralError, 302, "redirect, to https://elsewhere.example/"),
        (answer(422, {"error": "invalid-contract"}), CentralError, 422, "HTTP 422: invalid-contract"),
        (html_error(200), CentralMalformed, 200, "an HTML page"),
        (answer(200, b"\xff\xfe garbage"), CentralMalformed, 200, "not JSON"),
        (answer(200, b" " * (MAX_ANSWER_BYTES + 1)), CentralMalformed, 200, f"larger than {MAX_ANSWER_BYTES} bytes"),
    ],
    ids=["403", "503", "429", "502-html", "404", "redirect", "422", "200-html", "200-binary", "too-big"],
)
def test_each_answer_that_is_not_usable_has_its_type_and_cause(stub, behaviour, error, status, cause):
    stub.then(behaviour)
    with pytest.raises(error) as raised:
        client_for(stub.url).post_json(IDENTIFICATIONS_PATH, EMPTY_BATCH)
    assert type(raised.value) is error and raised.value.status == status
    assert cause in str(raised.value) and "\n" not in str(raised.value)


@pytest.mark.parametrize("header", ["seconds", "http-date"])
def test_busy_carries_the_retry_after(stub, header):
    clock = FakeClock("2024-05-02T09:15:00Z")
    value = "30" if header == "seconds" else "Thu, 02 May 2024 09:15:30 GMT"
    stub.then(unavailable(retry_after=value))
    client = CentralClient.from_config(Config(api=ApiSection(url=stub.url, token=TOKEN)), clock=clock)
    with pytest.raises(CentralBusy) as busy:
        client.post_json(IDENTIFICATIONS_PATH, EMPTY_BATCH)
    assert busy.value.retry_after_s == 30


def test_retry_after_parsing():
    now = parse_utc("2024-05-02T09:15:00Z")
    assert parse_retry_after("120", now) == 120
    assert parse_retry_after("Thu, 02 May 2024 09:16:00 GMT", now) == 60
    assert parse_retry_after("Thu, 02 May 2024 09:00:00 GMT", now) == 0
    assert parse_retry_after("soon", now) is None and parse_retry_after(None, now) is None


# --- no answer -------------------------------------------------------------------------------------


def test_connection_refused_names_the_host_and_port():
    with reserved_port() as port, pytest.raises(CentralUnreachable) as down:
        client_for(f"http://127.0.0.1:{port}").get_json(HEALTH_PATH)
    assert str(down.value) == f"cannot reach the central: connection refused by 127.0.0.1:{port}" and down.value.status is None
    assert down.value.next_step == "is the central up? check api.url and the firewall"


def test_a_dns_name_that_does_not_exist():
    # .invalid never resolves (RFC 6761); without any DNS the resolver fails the same way.
    with pytest.raises(CentralUnreachable, match="DNS name not found: central.kiosk-test.invalid$") as missing:
        client_for("https://central.kiosk-test.invalid").get_json(HEALTH_PATH)
    assert missing.value.next_step == "check the name in api.url and /etc/resolv.conf"


def test_no_answer_within_the_read_timeout(stub):
    stub.then(hang())
    with pytest.raises(CentralUnreachable, match=r"no answer within 0.3 s \(read timeout\)"):
        client_for(stub.url, read_timeout_s=0.3).post_json(IDENTIFICATIONS_PATH, EMPTY_BATCH)


def test_a_connection_cut_before_the_answer(stub):
    stub.then(reset())
    with pytest.raises(CentralUnreachable, match="closed the connection without an answer"):
        client_for(stub.url).post_json(IDENTIFICATIONS_PATH, EMPTY_BATCH)


def test_tls_is_verified_against_the_configured_ca_bundle():
    try:
        server = FakeCentral(token=TOKEN, https=True)
    except FileNotFoundError:
        pytest.skip("the openssl command is needed to make a test certificate")
    with server:
        with pytest.raises(CentralUnreachable, match=r"TLS certificate of 127.0.0.1:\d+ not trusted \(") as untrusted:
            client_for(server.url).post_json(IDENTIFICATIONS_PATH, EMPTY_BATCH)
        assert untrusted.value.next_step == "set api.ca_bundle to the CA that signed the central's certificate"
        assert server.requests == []
        trusted = client_for(server.url, ca_bundle=str(server.ca_file))
        assert trusted.post_json(IDENTIFICATIONS_PATH, EMPTY_BATCH).status == 200


def test_proxies_from_the_environment_are_ignored(stub, monkeypatch):
    with reserved_port() as port:
        dead_proxy = f"http://127.0.0.1:{port}"
        for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
            monkeypatch.setenv(name, dead_proxy)
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        assert client_for(stub.url).get_json(HEALTH_PATH).data == {"status": "ok"}


# --- the total deadline: a hostile central cannot hold a request ------------------------------------

#: Longer than any deadline these tests set, far shorter than what the hostile central would hold a request.
GENEROUS_S = 30


def outcome_within(seconds, call):
    """Run ``call`` in a thread; its exception (or None), failing the test if it is still running after ``seconds``."""
    result = {}

    def run():
        try:
            call()
        except Exception as e:
            result["error"] = e

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"the request still runs after {seconds} s"
    return result.get("error")


@pytest.mark.parametrize(
    "behaviour, error, cause",
    [
        (
            trickle_body(length=100_000, every_s=0.2),
            CentralTooSlow,
            r"the central sent its answer too slowly: \d+ of 100000 bytes in [\d.]+ s",
        ),
        (
            trickle_headers(every_s=0.2),
            CentralTooSlow,
            r"the central did not answer within 2.4 s \(a request's deadline: api.connect_timeout_s \+ 2 x api.read_timeout_s\)",
        ),
        (endless_continue(), CentralTooSlow, r"the central did not answer within 2.4 s \(.*\)"),
        (stall_after_headers(), CentralUnreachable, r"the central's answer stopped arriving \(read timeout 1 s\)"),
        (
            never_read(),
            CentralUnreachable,
            r"cannot reach the central: 127.0.0.1:\d+ stopped taking the request \(sending timed out after 0.4 s\)",
        ),
    ],
    ids=["trickled-body", "trickled-headers", "endless-100-continue", "stall-after-headers", "never-reads"],
)
def test_a_hostile_central_cannot_hold_a_request_past_its_deadline(behaviour, error, cause):
    # A 100 MB body: more than the socket buffers hold, so a server that never reads blocks the send.
    batch = {**EMPTY_BATCH, "padding": "x" * 100_000_000} if behaviour.__qualname__.startswith("never_read") else EMPTY_BATCH
    with FakeCentral(hostile=behaviour) as server:
        client = client_for(server.url, connect_timeout_s=0.4, read_timeout_s=1.0)  # deadline 2.4 s
        raised = outcome_within(GENEROUS_S, lambda: client.post_json(IDENTIFICATIONS_PATH, batch))
    assert type(raised) is error and re.fullmatch(cause, str(raised)), raised
    assert raised.status is None


def test_the_deadline_holds_over_tls_too():
    try:
        server = FakeCentral(hostile=trickle_body(every_s=0.2), https=True)
    except FileNotFoundError:
        pytest.skip("the openssl command is needed to make a test certificate")
    with server:
        client = client_for(server.url, ca_bundle=str(server.ca_file), connect_timeout_s=0.4, read_timeout_s=1.0)
        raised = outcome_within(GENEROUS_S, lambda: client.post_json(IDENTIFICATIONS_PATH, EMPTY_BATCH))
        assert isinstance(raised, CentralTooSlow) and "too slowly" in str(raised)
        assert server.requests[0].headers["authorization"] == f"Bearer {TOKEN}"  # it was TLS that was cut, not the handshake


def test_a_connection_that_answered_in_time_is_reused_after_a_cut_one():
    with FakeCentral(hostile=answer_json()) as server:
        server.then(trickle_body(every_s=0.2))
        client = client_for(server.url, connect_timeout_s=0.4, read_timeout_s=1.0)
        assert isinstance(outcome_within(GENEROUS_S, lambda: client.post_json(IDENTIFICATIONS_PATH, EMPTY_BATCH)), CentralTooSlow)
        assert client.post_json(IDENTIFICATIONS_PATH, EMPTY_BATCH).data == {"results": []}
        assert client.post_json(IDENTIFICATIONS_PATH, EMPTY_BATCH).data == {"results": []}
        assert server.connections == 2  # the cut one, then one kept alive for both good requests


def test_cancel_abandons_a_request_in_flight_long_before_its_deadline():
    cancel = threading.Event()
    with FakeCentral(hostile=trickle_body(every_s=0.5)) as server:
        client = client_for(server.url, connect_timeout_s=5, read_timeout_s=60)  # deadline 125 s
        threading.Thread(target=lambda: server.request_arrived.wait(GENEROUS_S) and cancel.set(), daemon=True).start()
        raised = outcome_within(GENEROUS_S, lambda: client.post_json(IDENTIFICATIONS_PATH, EMPTY_BATCH, cancel=cancel))
        assert type(raised) is CentralAborted and "abandoned" in str(raised)
        # Once set, nothing more is sent.
        with pytest.raises(CentralAborted):
            client.get_json(HEALTH_PATH, cancel=cancel)
        assert server.connections == 1


# --- credentials: the bearer token and nothing else ---------------------------------------------------


@pytest.mark.parametrize("userinfo", ["kiosk:s3cret", "kiosk", ":s3cret", ""])
def test_a_url_with_credentials_is_refused_without_showing_them(userinfo):
    with FakeCentral(hostile=answer_json()) as server:
        url = server.url.replace("://", f"://{userinfo}@")
        with pytest.raises(ConfigError) as refused:
            client_for(url)
        assert refused.value.key == "api.url" and "user name or password" in str(refused.value)
        assert "s3cret" not in str(refused.value) and "kiosk:" not in str(refused.value)
        assert f"http://***@127.0.0.1:{server.port}" in str(refused.value)
        assert server.connections == 0


def test_only_the_bearer_token_is_ever_sent(tmp_path, monkeypatch):
    """Not .netrc (the environment is ignored), not a user name and password that reach the session in a URL."""
    with FakeCentral(hostile=answer_json({"status": "ok"})) as server:
        netrc = tmp_path / ".netrc"
        netrc.write_text("machine 127.0.0.1 login kiosk password s3cret\n")
        netrc.chmod(0o600)
        monkeypatch.setenv("HOME", str(tmp_path))
        monkeypatch.setenv("NETRC", str(netrc))
        client = client_for(server.url)
        client.post_json(IDENTIFICATIONS_PATH, EMPTY_BATCH)
        client.get_json(HEALTH_PATH, auth=False)
        client.session.get(server.url.replace("://", "://kiosk:s3cret@") + HEALTH_PATH, timeout=5)
        sent = [r.headers.get("authorization") for r in server.requests]
    assert sent == [f"Bearer {TOKEN}", None, None]


# --- configuration: the schema and the client agree ------------------------------------------------


def test_plain_http_is_refused_except_to_loopback(tmp_path):
    config = tmp_path / "kiosk.toml"
    config.write_text('[api]\nurl = "http://central.example.net"\n')
    with pytest.raises(ConfigError, match="api.url: plain http:// to central.example.net") as checked:
        load(config, environ={})  # what `kiosk config check` does
    assert str(config) in str(checked.value)
    with pytest.raises(ConfigError, match="allow_insecure_http"):
        client_for("http://central.example.net")  # and the client, built without the schema's check
    config.write_text('[api]\nurl = "http://central.example.net"\nallow_insecure_http = true\n')
    assert load(config, environ={}).api.allow_insecure_http
    client_for("http://central.example.net", allow_insecure_http=True)
    for url in ("http://127.0.0.1:8080", "http://localhost:8080/", "http://[::1]:8080"):
        assert client_for(url).base_url == url.rstrip("/")


@pytest.mark.parametrize("url", ["ftp://central.example.net", "https://", "central.example.net"])
def test_a_url_that_is_no_central_is_refused(tmp_path, url):
    config = tmp_path / "kiosk.toml"
    config.write_text(f'[api]\nurl = "{url}"\n')
    with pytest.raises(ConfigError, match="api.url"):
        load(config, environ={})
    with pytest.raises(ConfigError, match="api.url"):
        client_for(url)


def test_a_missing_ca_bundle_is_a_config_error_naming_the_key(tmp_path):
    with pytest.raises(ConfigError, match='api.ca_bundle: no such file ".*missing.pem"'):
        client_for("https://central.example.net", ca_bundle=str(tmp_path / "missing.pem"))


def test_a_backoff_cap_below_its_base_is_a_config_error(tmp_path):
    config = tmp_path / "kiosk.toml"
    config.write_text("[api]\nbackoff_base_s = 10\nbackoff_cap_s = 5\n")
    with pytest.raises(ConfigError, match="api.backoff_cap_s"):
        load(config, environ={})


# --- what `kiosk diag api` reports, through the same client -------------------------------------------


def test_diag_central_ok_refused_no_token_and_down(stub, tmp_path):
    ok = check_central(client_for(stub.url), "riga-5-1", "Riga 5")
    assert ok.ok and ok.detail == f"central reachable at {stub.url}, token accepted"
    assert stub.posts[-1].json == EMPTY_BATCH  # an empty batch: nothing stored
    refused = check_central(client_for(stub.url, token="wrong"), "riga-5-1", "Riga 5")
    assert (refused.reachable, refused.token_accepted) == (True, False) and "token REFUSED" in refused.detail
    no_token = check_central(client_for(stub.url, token="", token_file=str(tmp_path / "none")), "k", "")
    assert (no_token.reachable, no_token.token_accepted) == (True, False) and "no token" in no_token.detail
    with reserved_port() as port:
        down = check_central(client_for(f"http://127.0.0.1:{port}"), "k", "")
    assert not down.reachable and down.detail.startswith("cannot reach the central: connection refused by 127.0.0.1:")
    stub.then(answer(500, {"error": "database locked"}))
    sick = check_central(client_for(stub.url), "k", "")
    assert not sick.reachable and "HTTP 500: database locked" in sick.detail
