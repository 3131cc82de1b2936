"""A large verified list is parsed and applied in a child process (the daemon's interpreter stays
free for the scan loop); a delta stays in the daemon. A child that dies, dies mid-transaction or
hangs is a failed sync with a sentence, the last good copy in force, and no process left behind."""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import pytest
from support.central import CENTRAL_TOKEN, FakeCentral
from support.revocations import ADMIN_TOKEN, LOST, OTHER, assert_kept, make_sync, serve_list

from device.card import Card
from device.central_client import CentralClient
from device.revocations import apply, document
from device.revocations.apply import APPLIED, FAILED, REFUSED


def children() -> set[int]:
    """This process's living child processes (every thread's; the reference central is one)."""
    found = set()
    for task in Path("/proc/self/task").iterdir():
        found |= {int(pid) for pid in (task / "children").read_text().split()}
    return found


@pytest.fixture
def in_child(tmp_path, signing_central, list_keys, monkeypatch):
    """A kiosk copy at version 1 (LOST re-issued as 2) whose every answer goes to a child; the
    daemon's own reading of a list fails, so only a child can have applied it."""
    signing_central.reissue(LOST, 2, ADMIN_TOKEN)
    sync = make_sync(tmp_path, signing_central.url, list_keys[1])
    sync.in_process_max_bytes = 0

    def not_here(body):
        raise AssertionError("a list larger than in_process_max_bytes was parsed in the daemon")

    monkeypatch.setattr(apply.document, "parse", not_here)
    result = sync.sync_once()
    assert result.kind == APPLIED and result.complete and result.changed == 1, result
    assert_kept(sync)
    return sync


def test_a_large_list_is_applied_by_a_child_that_then_exits_and_leaves_no_file(in_child, signing_central):
    signing_central.reissue(OTHER, 3, ADMIN_TOKEN)
    stale = in_child.copy.path.with_name(f".{in_child.copy.path.name}.incoming-killed")  # a daemon killed meanwhile
    stale.write_bytes(b"x" * 1000)
    before = children()
    result = in_child.sync_once()
    assert result.kind == APPLIED and result.version == 2, result
    assert not stale.exists()
    assert in_child.copy.replaced_by(Card("v1", OTHER, 2)) == 3
    assert children() == before
    assert sorted(p.name for p in in_child.copy.path.parent.iterdir() if ".incoming-" in p.name) == []


def test_the_child_refuses_what_the_daemon_would(in_child, list_keys):
    key = document.load_private_key(list_keys[0])
    malformed = b'{"version":9,"complete":true,"since":null,"issued_at":"2026-01-01T00:00:00Z","cards":[["00123456AB",2]]}'
    older = document.encode(0, True, None, "2026-01-01T00:00:00Z", [(OTHER, 2)])
    for body, why in (
        (malformed, "entry 1 of the list is not a [contract, current issue] pair"),
        (older, "version 0 is older than the copy's 1"),
    ):
        with FakeCentral(hostile=serve_list(body, *document.sign(key, body))) as hostile:
            in_child.client = CentralClient(hostile.url, token=CENTRAL_TOKEN, connect_timeout_s=2, read_timeout_s=5)
            result = in_child.sync_once()
        assert result.kind == REFUSED and why in result.error, result
        assert why in in_child.fault()
        assert_kept(in_child)


def _child(script: str) -> list[str]:
    return [sys.executable, "-c", script]


def test_a_child_that_dies_is_a_fault_and_the_copy_stays(in_child, signing_central):
    signing_central.reissue(OTHER, 3, ADMIN_TOKEN)
    in_child.child_command = _child("import os, signal; os.kill(os.getpid(), signal.SIGKILL)")
    result = in_child.sync_once()
    assert result.kind == FAILED and "was killed by signal 9" in result.error, result
    assert "killed by signal 9" in in_child.fault() and "version 1 stays in force" in in_child.fault()
    assert_kept(in_child)
    assert in_child.copy.replaced_by(Card("v1", OTHER, 2)) is None


def test_a_child_that_dies_mid_transaction_leaves_the_last_good_copy(in_child, signing_central):
    # The real child's first steps (its transaction open, every row deleted), then killed.
    in_child.child_command = _child(
        "import os, signal, sqlite3, sys\n"
        "db = sqlite3.connect(sys.argv[sys.argv.index('--copy') + 1], isolation_level=None)\n"
        "db.execute('BEGIN IMMEDIATE'); db.execute('DELETE FROM cards')\n"
        "db.execute(\"INSERT OR REPLACE INTO meta VALUES ('version', 99)\")\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    result = in_child.sync_once()
    assert result.kind == FAILED and "nothing of it applied" in result.error, result
    assert_kept(in_child)


def test_a_child_that_hangs_is_stopped_at_its_deadline(in_child):
    in_child.child_command = _child("import time; time.sleep(600)")
    in_child.child_deadline_s = 1.0
    before = children()
    result = in_child.sync_once()
    assert result.kind == FAILED and "did not finish within 1 s" in result.error, result
    assert "did not finish" in in_child.fault()
    assert children() == before
    assert_kept(in_child)


def test_a_daemon_stopping_stops_its_child(in_child):
    in_child.child_command = _child("import time; time.sleep(600)")
    stop, before = threading.Event(), children()
    threading.Timer(0.5, stop.set).start()
    assert in_child.sync_once(cancel=stop).kind == "aborted"
    assert children() == before
    assert_kept(in_child)


def test_a_delta_stays_in_the_daemon(in_child, signing_central, monkeypatch):
    monkeypatch.undo()  # the daemon may read lists again
    parse, read = document.parse, []
    monkeypatch.setattr(apply.document, "parse", lambda body: read.append(len(body)) or parse(body))
    in_child.in_process_max_bytes = apply.IN_PROCESS_MAX_BYTES
    signing_central.reissue(OTHER, 3, ADMIN_TOKEN)
    assert in_child.sync_once().kind == APPLIED
    assert len(read) == 1 and read[0] < apply.IN_PROCESS_MAX_BYTES
    assert in_child.copy.replaced_by(Card("v1", OTHER, 2)) == 3
