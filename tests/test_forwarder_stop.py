"""Stopping `kiosk run` whatever the central does: real processes, real signals, a hostile central on 127.0.0.1.

A central that trickles its answer one byte a second holds a request far longer than any wait
here (its deadline is 35 s with the default timeouts, the answer 100000 s): a daemon that stops
within the generous waits of :class:`support.daemon.Daemon` abandoned the request in flight, it
did not wait it out.
"""

from __future__ import annotations

import re
import signal
import sqlite3

import pytest
from support.cards import contracts
from support.central import FakeCentral, FullBacklog, trickle_body
from support.config import kiosk_config
from support.daemon import GENEROUS_S, Daemon, with_empty_tail
from support.kiosk import REPO
from support.waiting import wait_until

from device.daemon.kiosk import STOP_GRACE_S


def pending(tmp_path) -> list[tuple[int, int]]:
    """(seq, attempts) of every pending identification."""
    db = sqlite3.connect(tmp_path / "outbox.db")
    try:
        return db.execute("SELECT seq, attempts FROM identifications WHERE state = 'pending' ORDER BY seq").fetchall()
    finally:
        db.close()


@pytest.mark.parametrize("where", ["forwarder-thread", "drain"])
def test_sigterm_stops_the_daemon_within_seconds_while_a_post_trickles(tmp_path, card_folder, where):
    # The forwarder thread sends the card at once, while the scan loop runs: for two minutes, or for
    # three seconds before the source ends and the drain takes over (and sends the card itself).
    folder = with_empty_tail(card_folder(contracts(1)), seconds=120 if where == "forwarder-thread" else 3)
    pace = "realtime"
    with FakeCentral(hostile=trickle_body(length=100_000, every_s=1.0)) as server:
        cfg = kiosk_config(tmp_path, central=server, source=f"file:{folder}", pace=pace)
        with Daemon(tmp_path, cfg, "--drain-timeout", "600") as daemon:
            assert server.request_arrived.wait(GENEROUS_S), daemon.log
            assert "draining the outbox" not in daemon.log  # the first request is the forwarder thread's
            if where == "drain":
                daemon.wait_for_log("draining the outbox")
                # The thread's request was abandoned when the drain began; the drain sends the card again.
                (drains,) = wait_until(lambda: server.requests[1:], what="the drain's own request", timeout_s=GENEROUS_S)
                assert drains.ids == server.requests[0].ids and len(drains.ids) == 1
            daemon.proc.send_signal(signal.SIGTERM)
            daemon.proc.send_signal(signal.SIGTERM)  # an impatient second one changes nothing
            assert daemon.exit_code() == 0, daemon.log
    log = daemon.log
    assert log.count("signal SIGTERM: stopping") == 1, log
    assert "stopped after" in log and "Traceback" not in log
    if where == "drain":
        assert "stopped while draining: 1 identifications stay queued" in log, log
    assert pending(tmp_path) == [(1, 0)]  # still queued; an abandoned request is no failed attempt


def test_a_finite_run_gives_up_at_its_drain_timeout_while_the_central_trickles(tmp_path, card_folder):
    folder = card_folder(contracts(1))
    with FakeCentral(hostile=trickle_body(length=100_000, every_s=1.0)) as server:
        with Daemon(tmp_path, kiosk_config(tmp_path, central=server, source=f"file:{folder}"), "--drain-timeout", "2") as daemon:
            assert daemon.exit_code() == 1
        assert server.requests, "the kiosk never tried the central"
    assert "outbox not drained after 2 s: 1 pending" in daemon.log
    assert [seq for seq, _ in pending(tmp_path)] == [1]


def test_a_stop_that_cannot_finish_exits_by_itself_before_systemd_would_kill_it(tmp_path, card_folder):
    """A TCP connect nobody answers (no socket to shut yet): the stop's grace period ends the process."""
    folder = card_folder(contracts(1))
    with FullBacklog() as black_hole:
        cfg = kiosk_config(tmp_path, central=black_hole, source=f"file:{folder}", api={"connect_timeout_s": 300})
        with Daemon(tmp_path, cfg, "--drain-timeout", "600") as daemon:
            daemon.wait_for_log("identified contract")
            wait_until(black_hole.connecting, what="the forwarder, woken by the commit, in its connect")
            daemon.proc.send_signal(signal.SIGTERM)
            assert daemon.exit_code() == 1
    log = daemon.log
    assert log.count("signal SIGTERM: stopping") == 1
    assert f"still not stopped {STOP_GRACE_S:g} s after SIGTERM: exiting now (every identification committed is on disk)" in log
    assert [seq for seq, _ in pending(tmp_path)] == [1]


def test_the_stop_grace_period_ends_before_systemd_would_kill_the_daemon():
    unit = (REPO / "systemd" / "kiosk.service").read_text()
    timeout_stop_s = int(re.search(r"^TimeoutStopSec=(\d+)s?$", unit, re.MULTILINE).group(1))
    assert STOP_GRACE_S + 2 <= timeout_stop_s  # the exit itself, and a margin for a busy Pi
