"""Both central servers, as real processes over real HTTP: the reference server (one process, faults)
and the production one (``--workers 2``: uvicorn). The same API, the same answers; kiosks' own
tokens; slow and surplus connections; a saturated database; a worker killed.
"""

from __future__ import annotations

import os
import re
import selectors
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import uuid

import pytest
import requests
from support.central import CENTRAL_TOKEN
from support.waiting import wait_until

from central.credentials import new_token, token_hash
from central.storage import open_store

TIMEOUT = (5, 30)
SERVERS = {"reference": {}, "workers": {"workers": 2}}


def identification(seq: int = 1, **overrides) -> dict:
    record = {
        "id": str(uuid.uuid4()),
        "seq": seq,
        "contract": "0012345678",
        "card_issue": 1,
        "scanned_at": "2024-05-02T09:15:00Z",
        "clock_synced": True,
        "symbology": "Code128",
    }
    record.update(overrides)
    return record


def post(server, records, token=CENTRAL_TOKEN, kiosk="kiosk-7", **headers) -> requests.Response:
    return requests.post(
        server.url + "/v1/identifications",
        json={"kiosk": {"id": kiosk, "site": "Riga 5"}, "identifications": records},
        headers={"Authorization": f"Bearer {token}", **headers},
        timeout=TIMEOUT,
    )


def get(server, path, token=None) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return requests.get(server.url + path, headers=headers, timeout=TIMEOUT)


def issue_token(server, kiosk_id: str) -> str:
    """A kiosk's own token, bound in the server's database (as ``kiosk central token issue`` does)."""
    token = new_token()
    store = open_store(str(server.db))
    try:
        store.set_token(kiosk_id, token_hash(token), old_valid_s=0)
    finally:
        store.close()
    return token


def revoke(server, kiosk_id: str) -> None:
    store = open_store(str(server.db))
    try:
        store.revoke_tokens(kiosk_id)
    finally:
        store.close()


@pytest.fixture(params=sorted(SERVERS))
def start(request, central_factory):
    """Start a central of the parametrized kind with extra options."""

    def started(**options):
        return central_factory(**SERVERS[request.param], **options)

    started.kind = request.param
    return started


#: The API's semantics on every server and store: the two servers on SQLite, and the production
#: server on PostgreSQL (a new database in the session's cluster).
ON_EVERY_STORE = {**SERVERS, "workers-postgresql": {"workers": 2}}


@pytest.fixture(params=sorted(ON_EVERY_STORE))
def start_on_any_store(request, central_factory):
    """As ``start``, over every server and store of :data:`ON_EVERY_STORE`."""
    db = request.getfixturevalue("pg_url") if request.param.endswith("postgresql") else None

    def started(**options):
        return central_factory(db=db, **ON_EVERY_STORE[request.param], **options)

    started.kind = request.param
    return started


# --- the same API on both -------------------------------------------------------------------------


def test_both_servers_answer_the_api_alike(start_on_any_store):
    server = start_on_any_store()
    assert get(server, "/v1/health").json() == {"status": "ok"}
    record = identification()
    response = post(server, [record, identification(seq=2, contract="12")])
    assert [r["status"] for r in response.json()["results"]] == ["accepted", "rejected"]
    assert [r["status"] for r in post(server, [record]).json()["results"]] == ["duplicate"]
    assert get(server, "/v1/kiosks/kiosk-7/seqs", CENTRAL_TOKEN).json()["held"] == 1
    # Errors are the same JSON on both.
    for path, code in (("/v2/x", 404), ("/v1/identifications", 401)):
        answer = get(server, path)
        assert answer.status_code == code and set(answer.json()) == {"error", "message"}
    bad = requests.post(
        server.url + "/v1/identifications", data=b"nope", headers={"Authorization": f"Bearer {CENTRAL_TOKEN}"}, timeout=TIMEOUT
    )
    assert bad.status_code == 400 and bad.json()["error"] == "bad-request"
    assert requests.delete(server.url + "/v1/identifications", timeout=TIMEOUT).headers["Allow"] == "GET, POST"
    assert [r["id"] for r in server.identifications()] == [record["id"]]


def test_a_body_over_the_limit_is_413_on_both(start_on_any_store):
    server = start_on_any_store()
    big = b"x" * (4 * 1024 * 1024 + 1)
    response = requests.post(
        server.url + "/v1/identifications", data=big, headers={"Authorization": f"Bearer {CENTRAL_TOKEN}"}, timeout=TIMEOUT
    )
    assert response.status_code == 413 and response.json()["error"] == "too-large"
    assert get(server, "/v1/health").status_code == 200


def test_a_body_that_trickles_in_is_cut_off_by_its_deadline_on_both(start):
    server = start(body_timeout_s=1)
    head = (
        f"POST /v1/identifications HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {CENTRAL_TOKEN}\r\n"
        "Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
    )
    with socket.create_connection((server.host, server.port), timeout=10) as conn:
        conn.sendall(head.encode() + b'{"kiosk": ')
        answer = b""
        # A byte every 0.3 s: each read would be in time; the whole body is not.
        conn.settimeout(0.3)
        for _ in range(100):  # 30 s at most: far past the deadline, far short of the whole body
            if b"\r\n\r\n" in answer:
                break
            try:
                conn.sendall(b" ")
                answer += conn.recv(4096)
            except TimeoutError:
                continue
            except (BrokenPipeError, ConnectionResetError):
                break
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert get(server, "/v1/health").json() == {"status": "ok"}  # the worker serves on
    assert "request bodies cut: not complete within 1 s" in server.log_text()


def test_the_listings_need_the_admin_token(start_on_any_store):
    server = start_on_any_store()
    post(server, [identification()])
    for path in ("/v1/identifications", "/v1/refusals", "/v1/conflicts", "/v1/kiosks"):
        assert get(server, path).status_code == 401, path  # no credentials
        answer = get(server, path, CENTRAL_TOKEN)
        assert answer.status_code == 403 and answer.json()["error"] == "forbidden", path  # known, not allowed
        assert get(server, path, server.admin_token).status_code == 200, path
    assert server.conflicts() == []
    # An admin token is not a kiosk's.
    assert post(server, [identification()], token=server.admin_token).status_code == 403


def test_the_fleet_shows_the_version_each_kiosk_reports(start_on_any_store):
    server = start_on_any_store()
    post(server, [identification()], **{"User-Agent": "counter-kiosk/1.2.3"})
    post(server, [identification()], kiosk="kiosk-8", **{"User-Agent": "curl/8"})
    fleet = {k["kiosk"]: k for k in server.fleet()}
    assert fleet["kiosk-7"]["version"] == "1.2.3" and fleet["kiosk-7"]["highest"] == 1
    assert fleet["kiosk-8"]["version"] is None


# --- kiosks' own tokens ---------------------------------------------------------------------------


def test_a_kiosk_token_posts_only_in_its_own_name(start_on_any_store):
    server = start_on_any_store()
    token = issue_token(server, "kiosk-7")
    mine = identification()
    assert post(server, [mine], token=token).json()["results"][0]["status"] == "accepted"
    forged = identification(seq=999999)
    refused = post(server, [forged], token=token, kiosk="kiosk-8")
    assert refused.status_code == 403 and refused.json()["error"] == "forbidden"
    assert {r["id"] for r in server.identifications()} == {mine["id"]}
    assert server.seqs_held("kiosk-8")["held"] == 0
    assert get(server, "/v1/kiosks/kiosk-7/seqs", token).json()["held"] == 1
    assert get(server, "/v1/kiosks/kiosk-8/seqs", token).status_code == 403
    assert get(server, "/v1/identifications", token).status_code == 403
    assert "kiosk kiosk-7 posted a batch in the name of kiosk kiosk-8" in server.log_text()
    revoke(server, "kiosk-7")
    answer = post(server, [identification(seq=2)], token=token)
    assert answer.status_code == 401 and answer.headers["WWW-Authenticate"].startswith("Bearer")


def test_a_kiosk_over_its_rate_is_told_when_to_come_back(start_on_any_store):
    server = start_on_any_store(kiosk_rate=0.2, kiosk_burst=2)
    token = issue_token(server, "kiosk-7")
    codes = [get(server, "/v1/kiosks/kiosk-7/seqs", token) for _ in range(6)]  # with 2 workers: up to 2 x 2 at once
    limited = [r for r in codes if r.status_code == 429]
    assert limited and limited[0].json()["error"] == "too-many-requests"
    assert int(limited[0].headers["Retry-After"]) >= 1
    # Another kiosk, and the shared token (demo, tests), are not held back by it.
    assert get(server, "/v1/kiosks/kiosk-7/seqs", CENTRAL_TOKEN).status_code == 200


# --- a saturated database -------------------------------------------------------------------------


def test_a_locked_database_is_503_with_retry_after_and_nothing_is_lost(start):
    server = start(retry_after=3, retry_after_spread=4)
    record = identification()
    lock = sqlite3.connect(server.db, isolation_level=None)
    try:
        lock.execute("BEGIN EXCLUSIVE")  # another writer holds the file past the store's busy timeout
        busy = post(server, [record])
        assert busy.status_code == 503 and 3 <= int(busy.headers["Retry-After"]) <= 7 and busy.json()["error"] == "busy"
    finally:
        lock.execute("ROLLBACK")
        lock.close()
    assert post(server, [record]).json()["results"][0]["status"] == "accepted"
    assert "answered 503 busy: the database is saturated" in server.log_text()


def test_busy_answers_spread_their_retry_after_so_a_storm_does_not_come_back_at_once(tmp_path):
    from central.api import Api
    from central.storage import StoreBusy

    store = open_store(str(tmp_path / "central.db"))
    try:
        api = Api(store, shared_tokens=["t"], retry_after_s=2, retry_after_spread_s=5)
        waits = [int(api._busy(StoreBusy("pool exhausted"), "post_batch").headers["Retry-After"]) for _ in range(300)]
        assert min(waits) >= 2 and max(waits) <= 7 and len(set(waits)) == 6  # every second of the spread is used
        still = Api(store, shared_tokens=["t"], retry_after_s=2, retry_after_spread_s=0)
        assert {still._busy(StoreBusy("x"), "post_batch").headers["Retry-After"] for _ in range(20)} == {"2"}
    finally:
        store.close()


# --- slow and surplus clients ---------------------------------------------------------------------


class SlowClients:
    """``count`` connections, each a partial request line, then one byte every ``every_s``."""

    def __init__(self, url: str, count: int, every_s: float = 2.0):
        host, port = url.removeprefix("http://").rsplit(":", 1)
        self.socks: list[socket.socket] = []
        for _ in range(count):
            s = socket.create_connection((host, int(port)), timeout=10)
            s.setblocking(False)
            try:
                s.send(b"GET /v1/hea")
            except OSError:
                pass
            self.socks.append(s)
        self.closed: set[socket.socket] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._trickle, args=(every_s,), daemon=True)
        self._thread.start()

    def _trickle(self, every_s: float) -> None:
        selector = selectors.DefaultSelector()
        for s in self.socks:
            selector.register(s, selectors.EVENT_READ)
        next_byte = time.monotonic() + every_s
        while not self._stop.is_set():
            for key, _ in selector.select(timeout=0.2):
                try:
                    data = key.fileobj.recv(4096)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                if not data:  # EOF or reset: the server closed it
                    self.closed.add(key.fileobj)
                    selector.unregister(key.fileobj)
            if time.monotonic() >= next_byte:
                next_byte += every_s
                for s in self.socks:
                    if s not in self.closed:
                        try:
                            s.send(b"l")
                        except OSError:
                            pass
        selector.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        for s in self.socks:
            s.close()


def test_a_thousand_slow_connections_neither_block_others_nor_stay(start):
    server = start(header_timeout_s=8, max_connections=1500)
    slow = SlowClients(server.url, 1000)
    try:
        # While they trickle, a normal client is answered.
        assert len(slow.closed) < 1000
        assert get(server, "/v1/health").json() == {"status": "ok"}
        assert post(server, [identification()]).json()["results"][0]["status"] == "accepted"
        wait_until(lambda: len(slow.closed) == 1000, timeout_s=120, what="every slow connection closed by the header deadline")
    finally:
        slow.close()

    def logged_closed() -> int:
        lines = [line for line in server.log_text().splitlines() if "headers not complete within 8 s" in line]
        return sum(int(re.search(r": (\d+) ", line).group(1)) for line in lines)

    # The count of each burst goes out when its window ends (one line per 10 s at most).
    wait_until(lambda: logged_closed() >= 1000, timeout_s=60, what="the deadline's closings logged")
    lines = [line for line in server.log_text().splitlines() if "headers not complete" in line]
    assert len(lines) < 50  # one line per burst, not one per connection
    assert get(server, "/v1/health").status_code == 200


def test_connections_beyond_the_cap_are_refused_and_logged(start):
    server = start(header_timeout_s=3, max_connections=20)
    slow = SlowClients(server.url, 100, every_s=1.0)
    try:
        wait_until(lambda: len(slow.closed) >= 50, timeout_s=60, what="connections beyond the cap closed")
        wait_until(lambda: "connections refused" in server.log_text(), timeout_s=30, what="the refusals logged")

        def answered() -> bool:
            try:
                return get(server, "/v1/health").status_code == 200
            except requests.ConnectionError:
                return False  # refused while the slow ones hold the slots: their deadline frees them

        wait_until(answered, timeout_s=60, what="health answered")
    finally:
        slow.close()
    assert len([line for line in server.log_text().splitlines() if "connections refused" in line]) < 20


# --- the production server's processes ------------------------------------------------------------


def worker_pids(server) -> list[int]:
    return [int(pid) for pid in re.findall(r"central worker (\d+) serving", server.log_text())]


def test_a_killed_worker_is_replaced_and_the_server_keeps_answering(central_factory):
    server = central_factory(workers=2)
    first = worker_pids(server)
    assert len(first) == 2
    os.kill(first[0], signal.SIGKILL)
    for _ in range(20):  # the other worker answers meanwhile
        assert get(server, "/v1/health").status_code == 200
    wait_until(lambda: len(worker_pids(server)) == 3, timeout_s=60, what="a new worker in place of the killed one")
    assert worker_pids(server)[2] not in first
    assert post(server, [identification()]).json()["results"][0]["status"] == "accepted"
    assert server.stop() == 0


def test_fault_options_need_the_reference_server(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "central.server", "--db", str(tmp_path / "c.db"), "--token", "t", "--workers", "2", "--fail-rate", "0.5"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "--fail-rate" in result.stderr and "reference server" in result.stderr and "Traceback" not in result.stderr


# --- a real kiosk and its own token ------------------------------------------------------------------


def test_a_real_kiosk_delivers_with_its_own_token_to_the_production_central_and_not_in_another_name(
    tmp_path, card_folder, central_factory, pg_url
):
    from support.cards import contracts
    from support.config import kiosk_config
    from support.kiosk import run_kiosk

    from device import __version__

    # The production central on PostgreSQL, no shared token: a kiosk needs a token of its own.
    server = central_factory(workers=2, db=pg_url, token=())
    issued = run_kiosk("central", "token", "issue", "kiosk-own-1", "--db", pg_url)
    assert issued.returncode == 0, issued.stderr
    token = issued.stdout.strip()
    cards = card_folder(contracts(3))
    (tmp_path / "own").mkdir()
    (tmp_path / "other").mkdir()

    cfg = kiosk_config(tmp_path / "own", central=server, source=f"file:{cards}", kiosk={"id": "kiosk-own-1"}, api={"token": token})
    assert run_kiosk("run", "--config", str(cfg)).returncode == 0
    diag = run_kiosk("diag", "api", "--config", str(cfg))
    assert diag.returncode == 0 and "holds seq 1-3 of kiosk-own-1 without gaps" in diag.stdout, diag.stdout
    (row,) = [k for k in server.fleet() if k["kiosk"] == "kiosk-own-1"]
    assert (row["held"], row["contiguous_through"], row["missing"], row["version"]) == (3, 3, 0, __version__)

    # The same token in another kiosk's name: 403, nothing stored; the kiosk keeps its records.
    other = kiosk_config(tmp_path / "other", central=server, source=f"file:{cards}", kiosk={"id": "kiosk-own-2"}, api={"token": token})
    run = run_kiosk("run", "--config", str(other), "--drain-timeout", "5")
    assert run.returncode == 1
    assert len(server.identifications()) == 3 and all(k["kiosk"] != "kiosk-own-2" for k in server.fleet())
    pending = run_kiosk("queue", "list", "--state", "pending", "--config", str(other))
    assert pending.stdout.count("pending") >= 3, pending.stdout
    assert "kiosk kiosk-own-1 posted a batch in the name of kiosk kiosk-own-2: 403, nothing stored" in server.log_text()
