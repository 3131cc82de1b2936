"""`kiosk diag bundle`: one archive for operations, with no whole contract number and no token in it.

A real daemon run (file camera, reference central) fills the outbox with identifications of known
contracts; the bundle command then runs as a technician would, and the archive it writes is
opened member by member. Where this machine's journal has no kiosk unit, a `journalctl` first on
PATH answers with the daemon's own log, written with `log.unmask` so that whole contracts are
in it and the bundle must mask them.
"""

from __future__ import annotations

import os
import re
import stat
import tarfile
import textwrap
import time
import uuid
from pathlib import Path

import cv2
import numpy as np
import pytest
from support.camera import UVC_BY_ID, fake_video4linux
from support.cards import card_photo, contracts
from support.config import kiosk_config, write_config
from support.daemon import AnsweringDaemon
from support.kiosk import run_kiosk
from support.status import daemon_status, delivery_health

from device import status
from device.bundle import SNAPSHOT_FILE
from device.health.delivery import DeliveryState
from device.pipeline import Pipeline
from device.status.report import LastIdentification, ScanStatus
from device.vision.scanner import Scanner

EXPECTED = {
    "status.json", "status.txt", "config.toml", "versions.txt", "os.txt", "journal.txt", "queue.json",
    "devices.txt", "disk-clock.json", SNAPSHOT_FILE, "snapshot.json", "problems.txt",
}  # fmt: skip


def fake_journalctl(folder, log_file):
    """A `journalctl` that prints the daemon's log for exactly the bundle's question, else fails."""
    folder.mkdir()
    script = folder / "journalctl"
    script.write_text(
        textwrap.dedent(f"""\
        #!/bin/sh
        [ "$*" = "-u kiosk -n 500 --no-pager" ] || {{ echo "unexpected arguments: $*" >&2; exit 2; }}
        tail -n 500 '{log_file}'
    """)
    )
    script.chmod(0o755)
    return folder


def kiosk_with_identifications(tmp_path, card_folder, central_factory, cards, *, token_inline: bool):
    """A config whose daemon ran and delivered ``cards`` but the second, which the central refused
    (dead); the token inline or in a token file."""
    # Letters only: no digit run that masking contracts would spoil, so only scrubbing hides it.
    token = "tok-" + "".join(chr(ord("a") + int(c, 16)) for c in uuid.uuid4().hex)
    central = central_factory(token=token, reject_contracts=[cards[1]])
    api = {"url": central.url}
    if token_inline:
        api["token"] = token
    else:
        token_file = tmp_path / "token"
        token_file.write_text(token + "\n")
        token_file.chmod(0o640)
        api["token_file"] = str(token_file)
    cfg = kiosk_config(
        tmp_path,
        source=f"file:{card_folder(cards)}",
        kiosk={"id": "kiosk bundle/1", "site": "Riga 5"},
        api=api,
        log={"unmask": True},  # whole contracts in the daemon's log: the bundle must mask them
    )
    daemon = run_kiosk("run", "--config", str(cfg))
    assert daemon.returncode == 0, daemon.stderr
    log = tmp_path / "daemon.log"
    log.write_text(daemon.stderr)
    assert any(c in daemon.stderr for c in cards), "the daemon's log should hold whole contracts for this test"
    return cfg, token, log


def bundle(tmp_path, cfg, out, path_dirs, **env_vars):
    env = {**os.environ, "PATH": os.pathsep.join(str(d) for d in path_dirs), **env_vars}
    run = run_kiosk("diag", "bundle", "--config", str(cfg), *(["--out", str(out)] if out else []), env=env)
    assert run.returncode == 0, run.stderr
    assert "Traceback" not in run.stderr
    printed = re.fullmatch(r"bundle written to (\S+) \((\d+) bytes, .*\)\n", run.stdout)
    assert printed, run.stdout
    path = printed.group(1)
    assert int(printed.group(2)) == os.path.getsize(path)
    return path, run


def members(path) -> dict[str, bytes]:
    with tarfile.open(path) as tar:
        infos = tar.getmembers()
        folders = {info.name.split("/")[0] for info in infos}
        assert len(folders) == 1 and folders.pop().startswith("kiosk-bundle-")  # one folder, as pihole -d
        assert all(stat.S_IMODE(info.mode) == 0o600 for info in infos)
        return {info.name.split("/", 1)[1]: tar.extractfile(info).read() for info in infos}


def assert_nothing_secret(found: dict[str, bytes], cards, token):
    for name, data in found.items():
        assert token.encode() not in data, f"the token is in {name}"
        for contract in cards:
            assert contract.encode() not in data, f"contract {contract} is whole in {name}"


def write_running_status(runtime, contract, token):
    """The daemon's status file as a running daemon with ``log.unmask`` writes it (this test's pid
    stands for the daemon's), with a whole contract and, in an error text, the token."""
    last = LastIdentification(contract=contract, issue=1, seq=3, scanned_at="2026-12-02T08:15:00Z")
    status.write_status(runtime, daemon_status(
        version="0.1.0",
        scan=ScanStatus(identifications=1, last_identification=last, last_identification_age_s=5.0),
        delivery=delivery_health(state=DeliveryState.RETRYING, consecutive_failures=1, last_error=f"HTTP 401 for token {token}"),
    ))  # fmt: skip


@pytest.mark.parametrize("token_inline", [True, False], ids=["api.token", "api.token_file"])
def test_the_bundle_holds_every_part_and_no_whole_contract_or_token(tmp_path, card_folder, central_factory, token_inline):
    cards = contracts(3, start=4_711_000)
    cfg, token, log = kiosk_with_identifications(tmp_path, card_folder, central_factory, cards, token_inline=token_inline)
    runtime = tmp_path / "run"
    runtime.mkdir(exist_ok=True)
    photo = card_photo(cards[0], dpi=150, size=(960, 600))
    out = tmp_path / "out" / "bundle.tar.gz"
    out.parent.mkdir()

    # The daemon runs (with log.unmask, as the config says) and answers the bundle's snapshot request.
    with AnsweringDaemon(runtime, (photo, Pipeline(Scanner()).still(photo)), unmask=True):
        write_running_status(runtime, cards[0], token)
        path, run = bundle(tmp_path, cfg, out, [fake_journalctl(tmp_path / "bin", log), "/usr/bin", "/bin"])

    assert path == str(out)
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o600
    found = members(out)
    assert EXPECTED <= set(found), sorted(found)
    assert_nothing_secret(found, cards, token)
    shot = cv2.imdecode(np.frombuffer(found[SNAPSHOT_FILE], np.uint8), cv2.IMREAD_COLOR)
    assert shot.shape == (600, 960, 3)  # the daemon's frame, masked (no whole contract in its readings)
    assert '"contract": "******' + cards[0][-4:] + '"' in found["snapshot.json"].decode()
    journal = found["journal.txt"].decode()
    assert "******" + cards[0][-4:] in journal  # the daemon's lines are there, masked
    queue = found["queue.json"].decode()
    assert '"delivered": 2' in queue and '"dead": 1' in queue
    assert '"contract": "******' + cards[1][-4:] + '"' in queue  # the dead one, masked
    status_json = found["status.json"].decode()
    assert '"running": true' in status_json and cards[0][-4:] in status_json
    assert "api.token" not in found["problems.txt"].decode()
    assert b'token = "********"' in found["config.toml"] if token_inline else str(tmp_path / "token").encode() in found["config.toml"]
    versions = found["versions.txt"].decode()
    assert versions.startswith("kiosk ") and "\nnumpy " in versions and "\npython " in versions


def test_without_outbox_runtime_dir_and_journalctl_the_bundle_is_still_written(tmp_path):
    cfg = write_config(
        tmp_path / "kiosk.toml",
        kiosk={"id": "kiosk new/1", "runtime_dir": str(tmp_path / "no-run")},
        camera={"source": "v4l2:/dev/video0"},
        outbox={"path": str(tmp_path / "not-yet" / "outbox.db")},
    )
    empty_path = tmp_path / "empty-bin"
    empty_path.mkdir()
    # A webcam and a Pi's GPIO chip, in a fake /dev and /sys (KIOSK_DEV_PREFIX, KIOSK_SYSFS_PREFIX).
    devices = fake_video4linux(tmp_path / "root", {"video0": ("uvcvideo", "HD Pro Webcam C920")}, {UVC_BY_ID: "video0"})
    (tmp_path / "root" / "dev" / "gpiochip0").touch()
    before = time.time()

    path, run = bundle(tmp_path, cfg, None, [empty_path], **devices)

    try:
        # The default path: /tmp, the kiosk id and the UTC time in its name.
        assert re.fullmatch(r"/tmp/kiosk-bundle-kiosk_new_1-\d{8}T\d{6}Z\.tar\.gz", path)
        assert os.path.getmtime(path) >= before - 1
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        found = members(path)
    finally:
        os.unlink(path)
    problems = found["problems.txt"].decode()
    # Only the paths' ends: runs of 5+ digits are masked as contracts would be (pytest-10000/...).
    assert "/not-yet/outbox.db" in problems
    assert "snapshot: no snapshot: no frame from v4l2:/dev/video0" in problems and "/dev/video0 does not exist" in problems
    assert "journalctl is not on PATH" in found["journal-note.txt"].decode()
    assert {"status.json", "config.toml", "versions.txt", "os.txt", "devices.txt", "disk-clock.json"} <= set(found)
    assert "queue.json" not in found and SNAPSHOT_FILE not in found
    listing = found["devices.txt"].decode()
    assert f"{tmp_path}/root/dev/video0  [driver uvcvideo, name HD Pro Webcam C920]" in listing
    assert f"{tmp_path}/root/dev/v4l/by-id/{UVC_BY_ID} -> ../../video0  [driver uvcvideo" in listing
    assert f"{tmp_path}/root/dev/gpiochip0" in listing and "/dev/media*: none" in listing
    assert f"note: queue: no outbox at {tmp_path / 'not-yet' / 'outbox.db'}" in run.stderr


def test_a_config_that_does_not_load_is_a_problem_line_and_the_rest_is_collected(tmp_path):
    cfg = write_config(tmp_path / "kiosk.toml", camera={"fps": "fast"})
    out = tmp_path / "b.tar.gz"
    path, _ = bundle(tmp_path, cfg, out, [])
    found = members(path)
    assert "camera.fps" in found["problems.txt"].decode()
    assert "config.toml" in found and "versions.txt" in found


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root: the outbox belongs to another user, as the daemon's does")
def test_as_root_the_bundle_reads_the_outbox_as_its_owner_and_is_still_roots(tmp_path, card_folder, central_factory):
    """Reading the outbox as root becomes its owner (device.cli.queue); the parts after it (the
    snapshot in a root-only folder) and the archive are root's again."""
    import pwd
    import shutil
    import tempfile

    cards = contracts(2, start=5_100_000)
    cfg, token, log = kiosk_with_identifications(tmp_path, card_folder, central_factory, cards, token_inline=True)
    owner = pwd.getpwnam("nobody")
    shared = Path(tempfile.mkdtemp(prefix="kiosk-bundle-outbox-"))  # reachable by nobody, unlike tmp_path
    try:
        shared.chmod(0o755)
        for name in os.listdir(tmp_path):
            if name.startswith("outbox.db"):
                shutil.move(tmp_path / name, shared / name)
                os.chown(shared / name, owner.pw_uid, owner.pw_gid)
        os.chown(shared, owner.pw_uid, owner.pw_gid)
        cfg.write_text(cfg.read_text().replace(str(tmp_path / "outbox.db"), str(shared / "outbox.db")))
        out = tmp_path / "root-only" / "bundle.tar.gz"
        out.parent.mkdir(mode=0o700)

        path, _ = bundle(tmp_path, cfg, out, [fake_journalctl(tmp_path / "bin", log), "/usr/bin", "/bin"])

        assert os.stat(path).st_uid == 0
        found = members(path)
        assert '"dead": 1' in found["queue.json"].decode()  # read as nobody
        assert found[SNAPSHOT_FILE].startswith(b"\x89PNG")  # the daemon stopped: taken from its camera, as root again
        assert_nothing_secret(found, cards, token)
    finally:
        shutil.rmtree(shared)
