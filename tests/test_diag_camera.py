"""`kiosk diag camera` as a technician runs it: with the daemon stopped or running, what it
prints, and what its snapshots show and who may read them."""

from __future__ import annotations

import os
import pwd
import stat
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
from support.cards import card_photo, contracts, name_and_address
from support.config import kiosk_config
from support.daemon import AnsweringDaemon
from support.kiosk import run_kiosk
from support.status import daemon_status
from support.unprivileged import kiosk_as_nobody

from device import status
from device.daemon.snapshot import SnapshotOptions, SnapshotService, from_daemon
from device.pipeline import Pipeline
from device.vision.scanner import Scanner

CONTRACT = contracts(1, start=4321987)[0]
PHOTO_SIZE = (960, 600)
PHOTO_DPI = 150


def camera_config(folder: Path, image: Path) -> Path:
    return kiosk_config(folder, source=f"file:{image}", pace=None)


def card_on_the_counter(folder: Path) -> tuple[np.ndarray, Path]:
    photo = card_photo(CONTRACT, dpi=PHOTO_DPI, size=PHOTO_SIZE)
    path = folder / "card.png"
    cv2.imwrite(str(path), photo)
    return photo, path


def sharpness(image: np.ndarray) -> float:
    return float(cv2.Laplacian(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY), cv2.CV_64F).var())


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_without_the_daemon_it_opens_the_camera_itself_and_says_what_it_decoded(tmp_path):
    _, image = card_on_the_counter(tmp_path)
    cfg = camera_config(tmp_path, image)
    # A status file left by a daemon that was killed: not a daemon to ask.
    status.write_status(tmp_path / "run", daemon_status(pid=dead_pid()))
    run = run_kiosk("diag", "camera", "--config", str(cfg))
    assert run.returncode == 0, run.stderr
    assert f"camera file:{image}" in run.stdout
    assert "frame 960x600; decoded 1 symbol(s)" in run.stdout
    assert "Code128 LE**********" in run.stdout  # the payload's digit run, masked but its last four
    assert f"card, contract ******{CONTRACT[-4:]} issue 1" in run.stdout
    assert CONTRACT not in run.stdout and "the running daemon" not in run.stdout and run.stderr == ""
    unmasked = run_kiosk("diag", "camera", "--unmask", "--config", str(cfg))
    assert f"card, contract {CONTRACT} issue 1" in unmasked.stdout


def test_the_snapshot_blurs_name_and_address_keeps_the_barcode_readable_and_is_private(tmp_path):
    photo, image = card_on_the_counter(tmp_path)
    cfg = camera_config(tmp_path, image)
    shots = {name: tmp_path / f"{name}.png" for name in ("masked", "drawn", "whole")}
    shots["drawn"].write_bytes(b"an older snapshot")
    shots["drawn"].chmod(0o644)  # written over: the new one is private all the same
    for name, flags in (("masked", ["--raw"]), ("drawn", []), ("whole", ["--raw", "--unmask"])):
        run = run_kiosk("diag", "camera", *flags, "--snapshot", str(shots[name]), "--config", str(cfg))
        assert run.returncode == 0, run.stderr
        assert f"snapshot written to {shots[name]} (mode 0600" in run.stdout
        assert mode(shots[name]) == 0o600
    masked, drawn, whole = (cv2.imread(str(shots[name])) for name in ("masked", "drawn", "whole"))

    # --unmask --raw: the camera's frame exactly.
    assert np.array_equal(whole, photo)
    # By default the printed text is blurred beyond reading, drawn or not.
    text = sharpness(name_and_address(photo))
    assert text > 1000  # the region does hold sharp print
    assert sharpness(name_and_address(masked)) < text / 100
    assert sharpness(name_and_address(drawn)) < text / 100
    # Drawn on: located regions and reads.
    assert (cv2.absdiff(drawn, masked) > 60).sum() > 500
    # The raw masked snapshot reads again.
    scan = run_kiosk("scan", str(shots["masked"]), "--config", str(cfg))
    assert scan.returncode == 0 and f"card v1, contract ******{CONTRACT[-4:]}, issue 1" in scan.stdout, scan.stdout


def test_through_the_running_daemon_it_prints_the_readings_and_saves_a_private_raw_snapshot(tmp_path):
    photo, image = card_on_the_counter(tmp_path)
    cfg = camera_config(tmp_path, tmp_path / "no-camera-here.png")  # the daemon holds the camera
    latest = (photo, Pipeline(Scanner()).still(photo))
    with AnsweringDaemon(tmp_path / "run", latest):
        run = run_kiosk("diag", "camera", "--raw", "--snapshot", str(tmp_path / "live.png"), "--timeout", "60", "--config", str(cfg))
    assert run.returncode == 0, run.stderr
    assert "camera v4l2:/dev/video0 (fake daemon)" in run.stdout
    assert "frame 960x600 from the running daemon; decoded 1 symbol(s)" in run.stdout
    assert f"card, contract ******{CONTRACT[-4:]} issue 1" in run.stdout and CONTRACT not in run.stdout
    assert mode(tmp_path / "live.png") == 0o600
    live = cv2.imread(str(tmp_path / "live.png"))
    assert sharpness(name_and_address(live)) < sharpness(name_and_address(photo)) / 100
    scan = run_kiosk("scan", str(tmp_path / "live.png"), "--config", str(cfg))
    assert f"card v1, contract ******{CONTRACT[-4:]}, issue 1" in scan.stdout, scan.stdout
    # Nothing of the snapshot is left behind in the runtime directory.
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == [status.REQUESTS_DIR, status.STATUS_FILE]
    assert list((tmp_path / "run" / status.REQUESTS_DIR).iterdir()) == []


def test_the_daemon_answers_each_request_once_with_files_only_its_group_may_read(tmp_path):
    photo, _ = card_on_the_counter(tmp_path)
    runtime = tmp_path / "run"
    runtime.mkdir()
    service = SnapshotService(runtime, unmask=False)
    service.answer((photo, []))  # no request: nothing written but the request folder
    assert [p.name for p in runtime.rglob("*")] == [status.REQUESTS_DIR]
    readings = Pipeline(Scanner()).still(photo)
    with AnsweringDaemon(runtime, (photo, readings)) as daemon:
        shot = from_daemon(runtime, SnapshotOptions(unmask=True), timeout=60, running=lambda: True)
        assert shot.size == (960, 600) and shot.readings[0]["card"]["contract"] == CONTRACT
        daemon.stop.set()
        daemon.thread.join(timeout=10)
    # The files as the daemon leaves them (the command removes them once read): the request
    # folder sticky and the group's to write, the answers the group's to read.
    requests = runtime / status.REQUESTS_DIR
    assert stat.S_IMODE(requests.stat().st_mode) == 0o1770
    ident = "0123456789abcdef" * 2
    (requests / f"snapshot-{ident}.request").write_text("not json")  # an odd request gets the defaults
    (requests / "snapshot-../../x.request".replace("/", "_")).write_text("{}")  # not an id it made: left alone
    service.answer((photo, readings))
    assert sorted(p.name for p in requests.iterdir()) == ["snapshot-.._.._x.request"]
    picture, answer = runtime / f"snapshot-{ident}.png", runtime / f"snapshot-{ident}.json"
    for path in (picture, answer):
        assert mode(path) == 0o640
    assert CONTRACT not in answer.read_text() and f"******{CONTRACT[-4:]}" in answer.read_text()
    # Answers nobody took go after a minute.
    old = time.time() - 120
    os.utime(answer, (old, old))
    service.answer((photo, readings))
    assert not answer.exists() and picture.exists()
    # A daemon with no decoded frame yet says so at once.
    cfg = camera_config(tmp_path, tmp_path / "no-camera-here.png")
    with AnsweringDaemon(runtime, None):
        run = run_kiosk("diag", "camera", "--timeout", "60", "--config", str(cfg))
    assert run.returncode == 1 and "the daemon has no frame: no frame decoded since the daemon started" in run.stderr


def test_a_permission_problem_says_to_use_sudo_or_join_the_technicians_group(unprivileged):
    folder, as_nobody = unprivileged
    _, image = card_on_the_counter(folder)
    image.chmod(0o644)
    cfg = camera_config(folder, image)
    cfg.chmod(0o644)
    runtime = folder / "run"
    status.write_status(runtime, daemon_status())  # the daemon runs
    (runtime / status.STATUS_FILE).chmod(0o644)
    (runtime / status.REQUESTS_DIR).mkdir(mode=0o770)
    for runtime_mode, named in ((0o755, status.REQUESTS_DIR), (0o700, status.STATUS_FILE)):
        runtime.chmod(runtime_mode)  # root's: others may enter (but not ask), then not even enter
        run = as_nobody("diag", "camera", "--config", str(cfg))
        assert run.returncode == 1, (run.stdout, run.stderr)
        assert "Traceback" not in run.stderr
        assert f"no permission for {runtime / named}" in run.stderr
        assert "sudo kiosk diag camera" in run.stderr and f"technicians' group {status.TECHNICIANS_GROUP}" in run.stderr


def test_the_technicians_group_gets_the_running_daemons_snapshot_without_sudo(technicians_group):
    with kiosk_as_nobody(probe="cv2, device", groups=(technicians_group,)) as (folder, as_nobody):
        photo, image = card_on_the_counter(folder)
        cfg = camera_config(folder, folder / "no-camera-here.png")  # the daemon holds the camera
        cfg.chmod(0o644)
        runtime = folder / "run"
        runtime.mkdir()
        # As the unit leaves /run/kiosk: the daemon's, its group the technicians' (here by setgid,
        # as the daemon here runs as root), 0750; the daemon makes the request folder in it.
        os.chown(runtime, 0, technicians_group)
        runtime.chmod(0o2750)
        with AnsweringDaemon(runtime, (photo, Pipeline(Scanner()).still(photo))):
            for path in runtime.iterdir():
                path.chmod(0o640)  # the status file, as the unit's UMask= leaves it
            home = folder / "home"
            home.mkdir()
            os.chown(home, pwd.getpwnam("nobody").pw_uid, -1)
            run = as_nobody("diag", "camera", "--snapshot", str(home / "aim.png"), "--timeout", "60", "--config", str(cfg))
        assert run.returncode == 0 and "Traceback" not in run.stderr, (run.stdout, run.stderr)
        assert "from the running daemon; decoded 1 symbol(s)" in run.stdout, run.stdout
        assert f"card, contract ******{CONTRACT[-4:]} issue 1" in run.stdout
        assert (home / "aim.png").stat().st_uid == pwd.getpwnam("nobody").pw_uid and mode(home / "aim.png") == 0o600
