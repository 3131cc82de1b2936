"""Supervised threads (issue 11): no thread of the daemon dies, or hangs, without anyone noticing.

What a technician would see: the traceback once in the journal; `kiosk status` naming the thread
and the cause (and exiting 1); the amber LED; the thread restarted and doing its job again; the
fault gone once it has run well for a while. A thread that keeps dying or hangs gets the daemon
restarted (exit 75; no more watchdog pings), and so does a scan loop that raises.

The daemon-level tests run the real `kiosk run` through a launcher that makes one real method
raise a real exception on chosen calls, and shortens the restart waits (the policy's numbers,
not its logic).
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest
from support.camera import Counter, FakeCapture, HangingSource
from support.cards import card_photo, contracts
from support.config import QUICK_RETRY, kiosk_config
from support.daemon import hand_built_kiosk, with_empty_tail
from support.kiosk import REPO, run_kiosk
from support.notify import listen, messages
from support.outputs import Recorder, Stuck
from support.waiting import wait_until

from device import threads
from device.camera.grabber import FrameGrabber
from device.camera.v4l2 import V4L2Source
from device.config import load
from device.daemon.devclass import EXIT_RESTART
from device.daemon.notify import Notifier
from device.daemon.supervisor import Supervisor
from device.outputs import Output, base
from device.pipeline import Pipeline
from device.threads import RestartPolicy, SupervisedThread

#: Restart waits short enough for a test; the fault clears after 1 s of running well.
QUICK = RestartPolicy(backoff_base_s=0.05, backoff_cap_s=0.2, max_restarts=3, healthy_after_s=1.0)


def failing_on(calls, error, original):
    """``original`` that raises ``error()`` on the calls numbered in ``calls`` (None: every call)."""
    counter = itertools.count(1)

    def wrapper(*args, **kwargs):
        if calls is None or next(counter) in calls:
            raise error()
        return original(*args, **kwargs)

    return wrapper


def tracebacks(records, logger="device.threads"):
    return [r for r in records if r.name == logger and r.exc_info]


# --- the unit: device.threads.SupervisedThread --------------------------------------------------


class Work:
    """A thread's job that raises on the calls numbered in ``fail_on`` and otherwise runs until stopped."""

    def __init__(self, fail_on=(), error=lambda: OverflowError("date value out of range")):
        self.calls = 0
        self.fail_on = fail_on
        self.error = error
        self.running = threading.Event()

    def __call__(self, stop):
        self.calls += 1
        if self.fail_on is None or self.calls in self.fail_on:
            raise self.error()
        self.running.set()
        stop.wait()


def test_a_failing_thread_is_logged_once_restarted_and_well_again_after_a_while(caplog):
    work = Work(fail_on={1, 2, 3})
    thread = SupervisedThread("worker", work, policy=QUICK)
    with caplog.at_level(logging.INFO, logger="device.threads"):
        thread.start()
        work.running.wait(10)
        health = thread.health()
        assert work.calls == 4 and thread.is_alive()
        assert health.failing and health.problem == "OverflowError: date value out of range (failed 3 times; restarted 3 times)"
        assert health.restart_reason is None  # restarted in place: no reason to restart the process
        wait_until(lambda: not thread.health().failing, what="the episode to end after running well")
        thread.stop()
        assert thread.join(5)
    assert len(tracebacks(caplog.records)) == 1  # the traceback once; the repeats in one line each
    assert sum("failed again" in r.getMessage() for r in caplog.records) == 2


def test_a_thread_that_keeps_failing_gives_up_and_says_why(caplog):
    reasons = []
    work = Work(fail_on=None, error=lambda: SystemExit(3))  # a library's sys.exit() would end a thread unseen
    thread = SupervisedThread("worker", work, policy=QUICK, on_give_up=reasons.append)
    with caplog.at_level(logging.INFO, logger="device.threads"):
        thread.start()
        assert thread.join(10)
    health = thread.health()
    assert work.calls == QUICK.max_restarts + 1
    assert health.gave_up and health.failing
    assert reasons == [health.restart_reason] and "thread worker keeps failing: SystemExit: 3" in reasons[0]
    assert len(tracebacks(caplog.records)) == 1


def test_a_short_failure_is_reported_once_before_it_clears():
    work = Work(fail_on={1})
    thread = SupervisedThread("worker", work, policy=RestartPolicy(0.01, 0.01, healthy_after_s=0.05))
    thread.start()
    work.running.wait(10)
    time.sleep(0.2)  # well past healthy_after_s before anyone looked
    assert thread.health().failing  # the first look still sees it...
    wait_until(lambda: not thread.health().failing, what="the episode to end")  # ...then it ends
    thread.stop()
    thread.join(5)


def test_a_thread_that_stops_looking_at_its_stop_flag_is_stalled(monkeypatch):
    monkeypatch.setattr(threads, "HEARTBEAT_S", 0.05)
    release = threading.Event()
    waiting = threading.Event()
    looked = threading.Event()

    def stuck(stop):
        waiting.set()
        stop.wait(2.0)  # waiting on the flag beats, however long the wait
        looked.set()
        release.wait()  # a call that never returns: no beat

    thread = SupervisedThread("stuck", stuck, stall_after_s=1.0, policy=QUICK)
    thread.start()
    waiting.wait(10)
    while not looked.is_set():
        assert thread.health().stalled_for_s is None
        time.sleep(0.02)
    spinning = threading.Event()

    def someone_else_looks():  # another thread looking at the flag proves nothing about this one
        while not spinning.is_set():
            thread.stop_flag.is_set()
            time.sleep(0.01)

    other = threading.Thread(target=someone_else_looks)
    other.start()
    try:
        wait_until(lambda: thread.health().stalled_for_s is not None, what="the thread to count as stalled")
    finally:
        spinning.set()
        other.join()
    health = thread.health()
    assert health.failing and health.problem.startswith("no progress for")
    assert "thread stuck made no progress" in health.restart_reason
    release.set()
    thread.stop()
    assert thread.join(5)


def test_a_failure_the_thread_survives_is_a_fault_logged_once(caplog):
    thread = SupervisedThread("output Lamp", lambda stop: stop.wait(), policy=QUICK)
    with caplog.at_level(logging.INFO, logger="device.threads"):
        for _ in range(5):
            thread.survived(RuntimeError("lamp gone"), "identified")
    health = thread.health()
    assert health.failing and health.problem == "identified: RuntimeError: lamp gone (failed 5 times; it carries on)"
    assert not health.gave_up  # carrying on never gives up
    assert len(tracebacks(caplog.records)) == 1


# --- the daemon, in this process -----------------------------------------------------------------


@pytest.fixture
def quick_restarts(monkeypatch):
    monkeypatch.setattr(threads, "DEFAULT_POLICY", QUICK)


def live_kiosk(tmp_path, central, outputs=(), notifier=None):
    """A kiosk on a fake USB camera (the hardware edge) in front of a counter the test controls."""
    cfg = load(kiosk_config(tmp_path, central=central, source="v4l2:/dev/video9", kiosk={"id": "kiosk-svc"}, api=QUICK_RETRY), environ={})
    counter = Counter()
    source = V4L2Source(
        "/dev/video9", capture_factory=lambda path: FakeCapture(counter), stall_timeout_s=0.5, backoff_initial_s=0.05, backoff_max_s=0.2
    )
    return hand_built_kiosk(cfg, source, outputs=outputs, runtime_dir=tmp_path / "run", notifier=notifier), counter


@contextlib.contextmanager
def running(kiosk):
    """``kiosk.run`` in a thread; yields a dict that gets its exit ``code``; stopped at the end."""
    stop = threading.Event()
    result = {}
    runner = threading.Thread(target=lambda: result.update(code=kiosk.run(stop)))
    runner.start()
    try:
        yield result
    finally:
        stop.set()
        runner.join(timeout=30)
    assert not runner.is_alive()


def card_through_a_thread_fault(tmp_path, central, caplog, fault, message) -> None:
    """A live kiosk whose thread has just failed: ``fault`` is in status with ``message``; a card
    shown then is identified and delivered; the fault clears (amber on, then off); one traceback."""
    (a,) = contracts(1)
    events = Recorder()
    kiosk, counter = live_kiosk(tmp_path, central, [events])
    with caplog.at_level(logging.INFO, logger="device.threads"), running(kiosk) as result:
        wait_until(lambda: kiosk.status().faults.get(fault) == message, what=f"{fault} in status")
        counter.show(card_photo(a))
        wait_until(lambda: ("identified", a) in events.log, what="the card identified")
        wait_until(lambda: len(central.identifications()) == 1, what="the card delivered")
        wait_until(lambda: ("cleared", fault) in events.log, what="the fault to clear")
    assert result["code"] == 0
    assert events.log.index(("fault", fault)) < events.log.index(("cleared", fault))
    assert len(tracebacks(caplog.records)) == 1


def test_a_grab_thread_that_dies_is_a_fault_is_restarted_and_frames_come_again(tmp_path, central, quick_restarts, monkeypatch, caplog):
    monkeypatch.setattr(FrameGrabber, "_publish", failing_on({2, 3}, lambda: RuntimeError("grabber bug"), FrameGrabber._publish))
    message = "RuntimeError: grabber bug (failed 2 times; restarted 2 times)"
    card_through_a_thread_fault(tmp_path, central, caplog, "thread grab v4l2:/dev/video9", message)


def test_a_delivery_step_that_raises_is_a_fault_and_delivery_goes_on(tmp_path, central, quick_restarts, monkeypatch, caplog):
    """The forwarder survives a bug in one delivery step (it backs off and tries again); now it is a fault too."""
    from device.forwarder import Forwarder

    monkeypatch.setattr(
        Forwarder, "deliver_once", failing_on({1, 2}, lambda: ValueError("cannot convert float infinity"), Forwarder.deliver_once)
    )
    message = "a delivery step: ValueError: cannot convert float infinity (failed 2 times; it carries on)"
    card_through_a_thread_fault(tmp_path, central, caplog, "thread forwarder", message)


class ExitingOutput(Recorder):
    """An output whose library calls ``sys.exit()`` on its first identification (SystemExit in its thread)."""

    def __init__(self):
        super().__init__()
        self.calls = 0

    def on_identified(self, event):
        self.calls += 1
        if self.calls == 1:
            sys.exit("pos link: giving up")
        super().on_identified(event)


def test_an_output_thread_that_dies_is_restarted_and_gets_the_next_events(tmp_path, central, quick_restarts, caplog):
    a, b = contracts(2)
    output = ExitingOutput()
    kiosk, counter = live_kiosk(tmp_path, central, [output])
    fault = "thread output ExitingOutput"
    with caplog.at_level(logging.INFO, logger="device.threads"), running(kiosk) as result:
        counter.show(card_photo(a))
        wait_until(lambda: fault in kiosk.status().faults, what="the output's fault in status")
        assert "SystemExit: pos link: giving up" in kiosk.status().faults[fault]
        counter.show(card_photo(b))
        wait_until(lambda: ("identified", b) in output.log, what="the restarted output told of the next card")
        wait_until(lambda: fault not in kiosk.status().faults, what="the fault to clear")
        wait_until(lambda: len(central.identifications()) == 2, what="both delivered")
    assert result["code"] == 0
    assert ("identified", a) not in output.log  # the event it died on is lost; the next ones are not
    assert len(tracebacks(caplog.records)) == 1


class StuckOnCards(Stuck):
    """Frames pass; an identification blocks it until released (a POS link hung in a call)."""

    on_frame, on_fault_raised, on_fault_cleared = Output.on_frame, Output.on_fault_raised, Output.on_fault_cleared


def test_an_output_stuck_in_one_event_starves_the_watchdog_and_ends_the_run_for_a_restart(tmp_path, central, monkeypatch):
    (a,) = contracts(1)
    monkeypatch.setattr(base, "OUTPUT_STALL_S", 1.0)
    sock, path = listen(tmp_path)
    stuck = StuckOnCards()
    kiosk, counter = live_kiosk(tmp_path, central, [stuck], notifier=Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "1000000"}))
    try:
        with running(kiosk) as result:
            messages(sock, lambda m: any("WATCHDOG=1" in x for x in m))
            counter.show(card_photo(a))
            wait_until(stuck.entered.is_set, what="the output stuck in the identification")
            wait_until(lambda: kiosk.restart_reason is not None, what="the hang seen")
            stuck.release.set()  # so the outputs close at once
            wait_until(lambda: "code" in result, what="the run to end by itself")
        assert result["code"] == EXIT_RESTART
        assert "thread output StuckOnCards made no progress" in kiosk.restart_reason
        got = []
        with contextlib.suppress(TimeoutError):
            while True:
                got.append(sock.recv(4096).decode())
        # From the turn that saw the hang on (its STATUS= names the fault), no more pings.
        seen = next(i for i, m in enumerate(got) if "thread output StuckOnCards" in m)
        assert not any("WATCHDOG=1" in m for m in got[seen:]), got
    finally:
        stuck.release.set()
        sock.close()


def test_a_scan_loop_that_raises_is_a_fault_and_ends_the_run_for_a_restart(tmp_path, central, monkeypatch, caplog):
    monkeypatch.setattr(Pipeline, "frame", failing_on({5}, lambda: RuntimeError("decoder bug"), Pipeline.frame))
    events = Recorder()
    kiosk, _ = live_kiosk(tmp_path, central, [events])
    with caplog.at_level(logging.INFO, logger="device.daemon"), running(kiosk) as result:
        wait_until(lambda: "code" in result, what="the run to end by itself")
    assert result["code"] == EXIT_RESTART
    assert kiosk.restart_reason == "the scan loop failed: RuntimeError: decoder bug"
    assert ("fault", "thread scan loop") in events.log  # the amber LED is told before the outputs close
    assert [r.getMessage() for r in tracebacks(caplog.records, "device.daemon")] == ["the scan loop failed"]


def received(sock) -> list[str]:
    """The datagrams waiting in ``sock`` now."""
    got = []
    sock.setblocking(False)
    try:
        with contextlib.suppress(BlockingIOError):
            while True:
                got.append(sock.recv(4096).decode())
    finally:
        sock.settimeout(0.2)
    return got


def test_housekeeping_that_hangs_feeds_no_watchdog_while_the_scan_loop_goes_on(tmp_path, central, monkeypatch):
    """The housekeeping thread watches the others; the watchdog watches it: a hung turn feeds nothing."""
    release = threading.Event()
    hung = threading.Event()
    check = Supervisor.check_device_classes

    def hang_once(self):
        if threading.current_thread().name == "housekeeping" and not release.is_set():
            hung.set()
            release.wait(30)
        check(self)

    monkeypatch.setattr(Supervisor, "check_device_classes", hang_once)
    sock, path = listen(tmp_path)
    cfg = load(kiosk_config(tmp_path, central=central, source="v4l2:/dev/video9", kiosk={"id": "kiosk-svc"}, api=QUICK_RETRY), environ={})
    source = HangingSource()  # never hangs here: 50 empty frames a second
    kiosk = hand_built_kiosk(cfg, source, notifier=Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "1000000"}))
    try:
        with running(kiosk):
            wait_until(hung.is_set, what="housekeeping to hang")
            received(sock)  # all sent before the turn hung
            frames = kiosk.counters.frames
            time.sleep(2.0)  # four watchdog periods
            assert kiosk.counters.frames > frames  # the scan loop turns...
            assert not any("WATCHDOG=1" in m for m in received(sock))  # ...and nothing feeds the watchdog
            release.set()
            messages(sock, lambda m: any("WATCHDOG=1" in x for x in m))  # housekeeping back: pings again
    finally:
        release.set()
        sock.close()


def test_housekeeping_that_keeps_failing_ends_the_run_for_a_restart(tmp_path, central, monkeypatch, caplog):
    # Its turns come every 2 s: "running well" must last longer than that to mean anything.
    monkeypatch.setattr(threads, "DEFAULT_POLICY", RestartPolicy(0.05, 0.2, max_restarts=3, healthy_after_s=5.0))
    check = Supervisor.check_device_classes

    def broken(self):
        if threading.current_thread().name == "housekeeping":
            raise KeyError("device watch bug")
        check(self)

    monkeypatch.setattr(Supervisor, "check_device_classes", broken)
    events = Recorder()
    kiosk, _ = live_kiosk(tmp_path, central, [events])
    with caplog.at_level(logging.INFO), running(kiosk) as result:
        wait_until(lambda: "code" in result, what="the run to end by itself")
    assert result["code"] == EXIT_RESTART
    assert kiosk.restart_reason.startswith("thread housekeeping keeps failing: KeyError: 'device watch bug'")
    assert ("fault", "thread housekeeping") in events.log  # raised by its own restarted turns
    assert len(tracebacks(caplog.records)) == 1


# --- the daemon as systemd runs it: `kiosk run` ----------------------------------------------------

# A backslash at a line's end inside LAUNCHER joins that line and the next in the generated script.
LAUNCHER = '''
import itertools, sys, threading

from device import threads

threads.DEFAULT_POLICY = threads.RestartPolicy(backoff_base_s=0.1, backoff_cap_s=0.4, \
max_restarts={max_restarts}, healthy_after_s={healthy_after_s})


def fail(owner, name, error, message, on_calls=None, thread=None):
    """owner.name raises error(message) on the calls numbered in on_calls (None: all), counting calls from thread (None: any)."""
    original = getattr(owner, name)
    calls = itertools.count(1)

    def failing(*args, **kwargs):
        if thread is None or threading.current_thread().name == thread:
            if on_calls is None or next(calls) in on_calls:
                raise error(message)
        return original(*args, **kwargs)

    setattr(owner, name, failing)


{inject}

from device.cli import main

sys.exit(main())
'''


def start_daemon(tmp_path, cfg, inject, *, max_restarts=5, healthy_after_s=6.0) -> subprocess.Popen:
    """``kiosk run --config cfg`` with ``inject`` (code using ``fail(...)``) run first."""
    launcher = tmp_path / "launch_kiosk.py"
    launcher.write_text(LAUNCHER.format(inject=textwrap.dedent(inject), max_restarts=max_restarts, healthy_after_s=healthy_after_s))
    env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1")
    return subprocess.Popen(
        [sys.executable, str(launcher), "run", "--config", str(cfg)],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def counter_config(tmp_path, card_folder, central, cards, pace="realtime"):
    """Cards, then a minute of empty counter at 5 frames a second: a daemon that runs while the test looks."""
    folder = with_empty_tail(card_folder(cards), seconds=60)
    return kiosk_config(tmp_path, central=central, source=f"file:{folder}", pace=pace, kiosk={"id": "kiosk-sup"}, api=QUICK_RETRY)


def status_when(cfg, condition, what, timeout_s=60.0):
    """Run `kiosk status` until ``condition(run)`` holds; that run."""
    last = {}

    def reached():
        last["run"] = run = run_kiosk("status", "--config", str(cfg))
        return condition(run) and run

    return wait_until(reached, what=what, timeout_s=timeout_s, every_s=0.2, detail=lambda: f"last status:\n{last['run'].stdout}")


@contextlib.contextmanager
def daemon(tmp_path, cfg, inject, *, ends_by_itself=False, **policy):
    """The launched daemon; at the end (SIGTERM unless it ``ends_by_itself``) its code and stderr."""
    proc = start_daemon(tmp_path, cfg, inject, **policy)
    result = {}
    try:
        yield result
    finally:
        if proc.poll() is None and not ends_by_itself:
            proc.send_signal(signal.SIGTERM)
        try:
            _, err = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
        result.update(code=proc.returncode, stderr=err)


def fault_shown_then_cleared(tmp_path, cfg, inject, fault_line, meanwhile=lambda: None) -> str:
    """Run the daemon with ``inject``: `kiosk status` shows ``fault_line`` and exits 1; then
    (after ``meanwhile()``) it shows no fault and exits 0; SIGTERM ends it with 0. Its stderr,
    which has exactly one traceback."""
    with daemon(tmp_path, cfg, inject) as result:
        run = status_when(cfg, lambda r: fault_line in r.stdout, f"{fault_line!r} in kiosk status")
        assert run.returncode == 1
        meanwhile()
        run = status_when(cfg, lambda r: "faults      none" in r.stdout, "the fault to clear")
        assert run.returncode == 0
    assert result["code"] == 0, result["stderr"]
    assert result["stderr"].count("Traceback (most recent call last)") == 1, result["stderr"]
    return result["stderr"]


def exits_for_a_restart(tmp_path, cfg, inject, **policy) -> str:
    """Run the daemon with ``inject`` until it ends by itself, with exit 75 and one traceback; its stderr."""
    with daemon(tmp_path, cfg, inject, ends_by_itself=True, **policy) as result:
        pass
    assert result["code"] == EXIT_RESTART, result["stderr"]
    assert result["stderr"].count("Traceback (most recent call last)") == 1, result["stderr"]
    return result["stderr"]


def test_kiosk_run_forwarder_dying_at_start_is_a_fault_then_delivers_and_clears(tmp_path, card_folder, central):
    """The issue's case: purge_delivered raised OverflowError at the forwarder's start
    (outbox.retention_days = 1000000) and status said "delivery ok ... faults none"."""
    shown = contracts(2)
    cfg = counter_config(tmp_path, card_folder, central, shown)
    inject = 'from device.outbox import Outbox\nfail(Outbox, "purge_delivered", OverflowError, "date value out of range", on_calls={1, 2})'
    err = fault_shown_then_cleared(
        tmp_path,
        cfg,
        inject,
        "FAULT       thread forwarder: OverflowError: date value out of range (failed 2 times; restarted 2 times)",
        meanwhile=lambda: wait_until(
            lambda: len(central.identifications()) == 2, timeout_s=60, what="both cards delivered by the restarted forwarder"
        ),
    )
    assert "OverflowError: date value out of range" in err and err.count("thread forwarder failed again") == 1
    assert "thread forwarder fault cleared" in err


def test_kiosk_run_forwarder_that_keeps_dying_exits_75_for_systemd_to_restart(tmp_path, card_folder, central):
    cfg = counter_config(tmp_path, card_folder, central, contracts(1))
    inject = 'from device.outbox import Outbox\nfail(Outbox, "purge_delivered", OverflowError, "date value out of range")'
    err = exits_for_a_restart(tmp_path, cfg, inject, max_restarts=3)
    assert err.count("thread forwarder failed again (OverflowError: date value out of range); restarting") == 2
    assert "after 3 restarts: giving up on it" in err
    assert "thread forwarder keeps failing: OverflowError: date value out of range" in err
    assert "exiting to be restarted" in err


def test_kiosk_run_output_failing_is_a_fault_and_it_logs_the_next_card(tmp_path, card_folder, central):
    a, b = contracts(2)
    cfg = counter_config(tmp_path, card_folder, central, [a, b])
    inject = 'from device.outputs.log import LogOutput\nfail(LogOutput, "on_identified", RuntimeError, "journal gone", on_calls={1})'
    err = fault_shown_then_cleared(
        tmp_path,
        cfg,
        inject,
        "FAULT       thread output LogOutput: identified: RuntimeError: journal gone (failed once; it carries on)",
        meanwhile=lambda: wait_until(lambda: len(central.identifications()) == 2, timeout_s=60, what="both delivered"),
    )
    assert f"identified contract ******{b[-4:]}" in err and f"identified contract ******{a[-4:]}" not in err


def test_kiosk_run_list_sync_dying_is_a_fault_then_it_syncs_and_clears(tmp_path, card_folder, signing_central, list_keys):
    """The replaced-card list's sync thread (issue 13) is supervised as the others are: a sync that
    raises is a fault in status, the thread is restarted, syncs, and the fault clears."""
    cfg = counter_config(tmp_path, card_folder, signing_central, contracts(1))
    cfg.write_text(cfg.read_text() + f'\n[revocations]\nenabled = true\npublic_key_file = "{list_keys[1]}"\n')
    inject = (
        "from device.revocations.sync import RevocationSync\n"
        'fail(RevocationSync, "sync_once", RuntimeError, "list parser bug", on_calls={1})'
    )
    err = fault_shown_then_cleared(tmp_path, cfg, inject, "FAULT       thread revocations: RuntimeError: list parser bug")
    assert "thread revocations fault cleared" in err


def test_kiosk_run_housekeeping_dying_is_a_fault_in_its_own_status_then_clears(tmp_path, card_folder, central):
    cfg = counter_config(tmp_path, card_folder, central, contracts(1))
    inject = (
        "import device.status\n"
        'fail(device.status, "write_status", RuntimeError, "status writer bug", on_calls={1, 2}, thread="housekeeping")'
    )
    fault_shown_then_cleared(
        tmp_path, cfg, inject, "FAULT       thread housekeeping: RuntimeError: status writer bug (failed 2 times; restarted 2 times)"
    )


def test_kiosk_run_scan_loop_raising_exits_75_with_the_fault_told(tmp_path, card_folder, central):
    cfg = counter_config(tmp_path, card_folder, central, contracts(1), pace="fast")
    inject = 'from device.pipeline import Pipeline\nfail(Pipeline, "frame", RuntimeError, "decoder bug", on_calls={3})'
    err = exits_for_a_restart(tmp_path, cfg, inject)
    assert "RuntimeError: decoder bug" in err
    assert "fault thread scan loop: RuntimeError: decoder bug (the daemon restarts)" in err
    assert "the scan loop failed: RuntimeError: decoder bug: exiting to be restarted" in err


def test_kiosk_run_a_library_thread_dying_exits_75(tmp_path, card_folder, central):
    """A thread the daemon did not start (gpiozero's, say) cannot be restarted: the daemon is."""
    cfg = counter_config(tmp_path, card_folder, central, contracts(1))
    inject = """
        from device.daemon.supervisor import Supervisor

        start = Supervisor.start

        def start_and_a_library_thread(self, run_stop):
            start(self, run_stop)

            def events():
                raise ConnectionError("gpio event thread lost")

            threading.Thread(target=events, name="gpio-events").start()

        Supervisor.start = start_and_a_library_thread
    """
    err = exits_for_a_restart(tmp_path, cfg, inject)
    assert "thread gpio-events died" in err
    assert "fault thread gpio-events: ConnectionError: gpio event thread lost" in err
