"""The kiosk as a service: camera faults, systemd notifications, watchdog, signals, status and diag."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time

import pytest
from support.camera import Counter, FakeCapture, HangingSource
from support.cards import card_photo, contracts, empty_counter
from support.central import CENTRAL_TOKEN
from support.config import QUICK_RETRY, kiosk_config, write_config
from support.daemon import hand_built_kiosk
from support.kiosk import REPO, kiosk_cmd, run_kiosk
from support.notify import listen, messages
from support.outputs import Recorder
from support.waiting import wait_until

from device.assembly import build_kiosk, make_forwarder, open_outbox
from device.camera import FrameSource
from device.camera.file import FileSource
from device.camera.v4l2 import V4L2Source
from device.config import load
from device.daemon import Kiosk
from device.daemon.notify import Notifier
from device.fault_names import CAMERA
from device.outbox import Outbox
from device.pipeline import Pipeline


def service_config(tmp_path, central, source="v4l2:/dev/video9", **sections):
    """A kiosk on a fake USB camera (``source``) delivering to ``central``."""
    return kiosk_config(tmp_path, central=central, source=source, pace=None, kiosk={"id": "kiosk-svc"}, api=QUICK_RETRY, **sections)


def test_camera_unplugged_and_back_needs_no_restart_and_loses_nothing(tmp_path, central):
    a, b = contracts(2)
    cfg = load(service_config(tmp_path, central), environ={})
    counter = Counter()
    source = V4L2Source(
        "/dev/video9", capture_factory=lambda path: FakeCapture(counter), stall_timeout_s=0.5, backoff_initial_s=0.05, backoff_max_s=0.2
    )
    outbox = open_outbox(cfg)
    events = Recorder()
    kiosk = Kiosk(source, Pipeline.from_config(cfg), outbox, make_forwarder(cfg, outbox), outputs=[events], runtime_dir=tmp_path / "run")
    stop = threading.Event()
    runner = threading.Thread(target=kiosk.run, args=(stop,))
    runner.start()
    try:
        counter.show(card_photo(a))
        wait_until(lambda: ("identified", a) in events.log, what="card A identified")
        counter.show(empty_counter())
        counter.unplug()
        wait_until(lambda: CAMERA in kiosk.status().faults, what="the camera fault in status")
        assert "down" in kiosk.status().camera.source
        wait_until(lambda: source.stats().reopen_attempts >= 3, what="reopen attempts while unplugged")
        counter.plug()
        counter.show(card_photo(b))
        wait_until(lambda: ("identified", b) in events.log, what="card B identified after the camera came back")
        assert CAMERA not in kiosk.status().faults
        wait_until(lambda: len(central.identifications()) == 2, what="both delivered")
    finally:
        stop.set()
        runner.join(timeout=20)
    assert not runner.is_alive()
    assert events.log == [("identified", a), ("fault", CAMERA), ("cleared", CAMERA), ("identified", b)]


def test_watchdog_is_fed_only_while_the_scan_loop_turns(tmp_path, central):
    cfg = load(service_config(tmp_path, central), environ={})
    sock, path = listen(tmp_path)
    source = HangingSource()
    outbox = open_outbox(cfg)
    notifier = Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "1000000"})
    kiosk = Kiosk(source, Pipeline.from_config(cfg), outbox, make_forwarder(cfg, outbox), notifier=notifier)
    stop = threading.Event()
    runner = threading.Thread(target=kiosk.run, args=(stop,))
    runner.start()
    try:
        got = messages(sock, lambda m: sum("WATCHDOG=1" in x for x in m) >= 3)
        ready = next(i for i, m in enumerate(got) if m.startswith("READY=1"))
        assert not any("WATCHDOG=1" in m for m in got[:ready])  # no ping before the daemon is up
        source.hang.set()
        # Once the loop is stuck, pings stop: within a few periods the last one has been sent.
        time.sleep(2.5)  # the loop's heartbeat goes stale (2 s) and the last ping in flight arrives
        while True:
            try:
                sock.recv(4096)
            except TimeoutError:
                break
        silent = []
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            try:
                silent.append(sock.recv(4096).decode())
            except TimeoutError:
                pass
        assert not any("WATCHDOG=1" in m for m in silent), silent
        assert any("STATUS=" in m for m in silent)  # housekeeping itself is alive
    finally:
        stop.set()
        source.release.set()
        runner.join(timeout=20)
        sock.close()


def test_service_notifies_systemd_publishes_status_and_stops_cleanly_on_sigterm(tmp_path, card_folder, central):
    shown = contracts(1)
    folder = card_folder(shown, frames_per_card=3)
    # realtime pace, looping is not needed: the folder plays at 5 fps and then the daemon drains and exits,
    # so use a long tail of empty frames to keep it running while we look at it.
    import cv2

    for i in range(200):
        cv2.imwrite(str(folder / f"9{i:05d}.png"), empty_counter())
    cfg = service_config(tmp_path, central, source=f"file:{folder}", camera={"pace": "realtime"})
    sock, path = listen(tmp_path)
    env = dict(os.environ, NOTIFY_SOCKET=path, WATCHDOG_USEC="2000000", PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        kiosk_cmd("run", "--config", str(cfg)), cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        messages(sock, lambda m: any("READY=1" in x for x in m) and any("WATCHDOG=1" in x for x in m))
        wait_until(lambda: len(central.identifications()) == 1, what="the card delivered")

        def status_report():
            run = run_kiosk("status", "--json", "--config", str(cfg))
            assert run.returncode == 0, run.stdout
            return json.loads(run.stdout)

        # The snapshot is refreshed every couple of seconds: wait for one written after the delivery.
        wait_until(lambda: status_report()["queue"]["delivered"] == 1, what="the snapshot to show the delivery")
        report = status_report()
        assert report["running"] is True
        last = report["daemon"]["scan"]["last_identification"]
        assert last["contract"] == "******" + shown[0][-4:] and last["issue"] == 1
        assert report["queue"]["delivered"] == 1 and report["queue"]["pending"] == 0
        human = run_kiosk("status", "--config", str(cfg)).stdout
        assert "daemon      running" in human and shown[0] not in human

        # The daemon owns the camera: diag asks it for its latest frame instead of opening the camera.
        snap = run_kiosk("diag", "camera", "--snapshot", str(tmp_path / "live.jpg"), "--timeout", "60", "--config", str(cfg))
        assert snap.returncode == 0, snap.stderr
        assert "from the running daemon; decoded" in snap.stdout and (tmp_path / "live.jpg").stat().st_size > 0
        assert (tmp_path / "live.jpg").stat().st_mode & 0o777 == 0o600

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
        assert any("STOPPING=1" in m for m in messages(sock, lambda m: any("STOPPING=1" in x for x in m)))
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()
        sock.close()
    after = run_kiosk("status", "--json", "--config", str(cfg))
    assert after.returncode == 1


def test_diag_api_says_whether_the_central_takes_the_token(tmp_path, central):
    cfg = service_config(tmp_path, central)
    ok = run_kiosk("diag", "api", "--config", str(cfg))
    assert ok.returncode == 0 and "token accepted" in ok.stdout
    bad = write_config(tmp_path / "bad.toml", api={"url": central.url, "token": "wrong"})
    refused = run_kiosk("diag", "api", "--config", str(bad))
    assert refused.returncode == 1 and "REFUSED" in refused.stdout
    down = write_config(tmp_path / "down.toml", api={"url": "http://127.0.0.1:9", "token": "x", "connect_timeout_s": 1})
    unreachable = run_kiosk("diag", "api", "--config", str(down))
    assert unreachable.returncode == 1 and "cannot reach" in unreachable.stdout


def test_diag_camera_writes_an_annotated_snapshot(tmp_path, central):
    import cv2

    image = tmp_path / "card.png"
    cv2.imwrite(str(image), card_photo(contracts(1)[0]))
    cfg = service_config(tmp_path, central, source=f"file:{image}")
    run = run_kiosk("diag", "camera", "--snapshot", str(tmp_path / "snap.jpg"), "--config", str(cfg))
    assert run.returncode == 0, run.stderr
    assert "card, contract ******" in run.stdout
    snap = cv2.imread(str(tmp_path / "snap.jpg"))
    original = cv2.imread(str(image))
    assert snap.shape == original.shape
    # Something was drawn: the annotated frame differs from the camera's.
    assert (cv2.absdiff(snap, original) > 60).sum() > 500


def test_diag_camera_reports_a_missing_camera(tmp_path, central):
    cfg = service_config(tmp_path, central, source=f"file:{tmp_path / 'nope.avi'}")
    run = run_kiosk("diag", "camera", "--config", str(cfg))
    assert run.returncode == 1 and "nope.avi" in run.stderr


def test_delivery_faults_token_refused_then_fixed_and_backlog(tmp_path, card_folder, central_factory):
    """Amber-LED faults that come from delivery: raised by the daemon's housekeeping, cleared when fixed."""
    central = central_factory()
    down = central_factory(fail_rate=1.0)
    token_file = tmp_path / "token"
    token_file.write_text("not-the-token\n")
    shown = contracts(2)
    cfg = load(
        kiosk_config(
            tmp_path,
            source=f"file:{card_folder(shown[:1], name='a')}",
            kiosk={"id": "kiosk-faults"},
            api={"url": central.url, "token_file": str(token_file), "auth_retry_s": 0.5, **QUICK_RETRY},
        ),
        environ={},
    )
    events = Recorder()
    kiosk = build_kiosk(cfg, outputs=[events])  # as `kiosk run` builds it
    runner = threading.Thread(target=kiosk.run, args=(threading.Event(), 60))
    runner.start()
    try:
        wait_until(lambda: ("fault", "delivery-auth") in events.log, what="the token fault")
        assert central.identifications() == []  # nothing delivered with a refused token...
        token_file.write_text(CENTRAL_TOKEN + "\n")  # ...until the technician fixes the file: no restart
        wait_until(lambda: ("cleared", "delivery-auth") in events.log, what="the token fault to clear")
    finally:
        runner.join(timeout=60)
    assert not runner.is_alive()
    assert [i["contract"] for i in central.identifications()] == shown[:1]

    # A central that fails for longer than feedback.backlog_alert_s: the backlog fault.
    outbox = Outbox(tmp_path / "outbox2.db", "kiosk-faults")
    cfg2 = load(
        write_config(tmp_path / "k2.toml", api={"url": down.url, "token": CENTRAL_TOKEN, "backoff_base_s": 0.05, "backoff_cap_s": 0.5}),
        environ={},
    )
    stop = threading.Event()
    events2 = Recorder()
    kiosk = Kiosk(
        FileSource(card_folder(shown[1:], name="c"), pace="fast"),
        Pipeline.from_config(cfg2),
        outbox,
        make_forwarder(cfg2, outbox),
        outputs=[events2],
        backlog_alert_s=0.5,
    )
    runner = threading.Thread(target=kiosk.loop.run, args=(stop,))
    housekeeping = threading.Thread(target=kiosk.supervisor.housekeeping, args=(stop,))
    deliver = threading.Thread(target=kiosk.forwarder.run, args=(stop,))
    for t in (runner, housekeeping, deliver):
        t.start()
    try:
        wait_until(lambda: ("fault", "backlog") in events2.log, what="the backlog fault")
        assert "backlog" in kiosk.status().faults
    finally:
        stop.set()
        kiosk.forwarder.wake()
        for t in (runner, housekeeping, deliver):
            t.join(timeout=30)
        outbox.close()


class SilentCamera(FrameSource):
    """A live camera whose "seconds without a frame" the test sets (the grabber's clock, faked)."""

    def __init__(self):
        self.silent_s = 0.0

    def no_frame_for_s(self):
        return self.silent_s

    def read(self, timeout=None):
        raise AssertionError("not read in this test")

    def close(self):
        pass

    def describe(self):
        return f"silent camera, no frame for {self.silent_s:g} s"


def test_a_camera_without_frames_for_restart_after_s_starves_the_watchdog(tmp_path, central, caplog):
    cfg = load(service_config(tmp_path, central, camera={"restart_after_s": 60.0}), environ={})
    sock, path = listen(tmp_path)
    camera = SilentCamera()
    notifier = Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "30000000"})
    kiosk = hand_built_kiosk(cfg, camera, notifier=notifier, camera_restart_after_s=cfg.camera.restart_after_s)

    def one_turn():
        kiosk.loop.heartbeat = time.monotonic()  # the scan loop turns: only the camera decides
        kiosk.supervisor.turn(1.0)
        return messages(sock, lambda m: any("STATUS=" in x for x in m))

    try:
        camera.silent_s = 59.0
        assert any("WATCHDOG=1" in m for m in one_turn())
        camera.silent_s = 61.0
        with caplog.at_level("ERROR", logger="device.daemon"):
            assert not any("WATCHDOG=1" in m for m in one_turn())
            assert not any("WATCHDOG=1" in m for m in one_turn())
        assert sum("no camera frame for 61 s" in r.getMessage() for r in caplog.records) == 1  # said once
        camera.silent_s = 0.0  # a frame came: pings again
        assert any("WATCHDOG=1" in m for m in one_turn())
    finally:
        kiosk.outbox.close()
        sock.close()


def test_restart_after_s_must_exceed_the_stall_timeout(tmp_path, central):
    from device.config import ConfigError

    with pytest.raises(ConfigError, match="camera.restart_after_s: must be longer than camera.stall_timeout_s"):
        load(service_config(tmp_path, central, camera={"restart_after_s": 3.0}), environ={})
    assert load(service_config(tmp_path, central, camera={"restart_after_s": 0.0}), environ={}).camera.restart_after_s == 0
