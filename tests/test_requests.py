"""The request folder under attack (issue 20, finding 1): what a technician may leave in
``/run/kiosk/requests`` never blocks, floods or starves the daemon.

Was: a FIFO named like a snapshot request blocked the housekeeping thread for ever on ``open()``
(no watchdog pings, no status); a directory named like a sync request made the replaced-card
list sync every second with a warning each time; 2,000 well-formed requests made a real
``kiosk diag camera`` wait about 16 minutes.
"""

from __future__ import annotations

import logging
import os
import pwd
import socket
import subprocess
import threading
import uuid
from pathlib import Path

import pytest
from support.cards import card_photo
from support.daemon import Daemon, wait_for_status, with_empty_tail
from support.revocations import OTHER
from support.unprivileged import installed_config, kiosk_as_nobody
from support.waiting import wait_until

from device import status
from device.daemon.requests import ANSWER_BURST, RequestFolder
from device.daemon.snapshot import SnapshotService, answer_paths
from device.pipeline import Pipeline
from device.vision.scanner import Scanner

CONTRACT = "0012345678"


def request_name(kind: str = "snapshot") -> str:
    return f"{'revocations' if kind == 'sync' else 'snapshot'}-{uuid.uuid4().hex}.request"


def plant_hostile(folder: Path) -> dict[str, str]:
    """Entries named like snapshot requests that are none: name -> what it is."""
    planted = {}
    fifo = folder / request_name()
    os.mkfifo(fifo)
    planted[fifo.name] = "a FIFO"
    link = folder / request_name()
    link.symlink_to(fifo)
    planted[link.name] = "a symlink"
    directory = folder / request_name()
    directory.mkdir()
    (directory / "inside").write_text("keeps it from being removed")
    planted[directory.name] = "a directory"
    huge = folder / request_name()
    with open(huge, "wb") as f:
        f.truncate(50 * 1024 * 1024)  # sparse: costs no disk, 50 MB to whoever reads it
    planted[huge.name] = "holds 52428800 bytes"
    sock_path = folder / request_name()
    here = os.getcwd()
    os.chdir(folder)  # a socket's path is limited to 107 bytes: bind it by its short name
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.bind(sock_path.name)
    finally:
        os.chdir(here)
    planted[sock_path.name] = "a socket"
    return planted


def answer_in_a_thread(service: SnapshotService, latest) -> None:
    """One housekeeping turn's answering, which must end: a turn that blocks fails the test."""
    done = threading.Event()

    def turn():
        service.answer(latest)
        done.set()

    threading.Thread(target=turn, daemon=True).start()
    wait_until(done.is_set, what="the turn to end (it must never block on what is in the request folder)")


def test_fifos_symlinks_directories_sockets_and_huge_files_are_ignored_reported_once_and_counted(tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="device.daemon")
    runtime = tmp_path / "run"
    runtime.mkdir()
    photo = card_photo(CONTRACT)
    latest = (photo, Pipeline(Scanner()).still(photo))
    service = SnapshotService(runtime, unmask=False)
    service.requests.make()
    folder = service.folder
    planted = plant_hostile(folder)
    good = folder / request_name()
    good.write_text('{"raw": true}')
    for _ in range(3):
        answer_in_a_thread(service, latest)
    ident = good.name.split("-")[1].split(".")[0]
    picture, answer = answer_paths(runtime, ident)
    assert answer.exists() and picture.exists(), "the good request among them is answered"
    assert service.requests.counts.ignored == len(planted)
    for name, what in planted.items():
        lines = [r.getMessage() for r in caplog.records if name in r.getMessage()]
        assert len(lines) == 1 and what in lines[0], (name, lines)
    # Removed, all but the directory the daemon cannot empty (its owner's): it stays, ignored.
    assert sorted(p.name for p in folder.iterdir()) == [n for n, what in planted.items() if what == "a directory"]


def test_a_flood_from_one_technician_waits_its_turn_newest_first_and_root_is_answered_at_once(tmp_path):
    runtime = tmp_path / "run"
    runtime.mkdir()
    photo = card_photo(CONTRACT)
    nobody = pwd.getpwnam("nobody").pw_uid
    service = SnapshotService(runtime, unmask=False, requests=RequestFolder(runtime / status.REQUESTS_DIR, unlimited=frozenset({0})))
    service.requests.make()
    flood = []
    for _ in range(3 * ANSWER_BURST):
        path = service.folder / request_name()
        path.write_text("{}")
        os.lchown(path, nobody, -1)  # as a technician leaves it
        flood.append(path)
    own = service.folder / request_name()
    own.write_text("{}")  # root's
    service.answer((photo, []))
    answered = [p for p in flood if not p.exists()]
    assert len(answered) == ANSWER_BURST and not own.exists()
    # The pictures are links to one picture: a flood costs no space per answer.
    pictures = {answer_paths(runtime, p.name.split("-")[1].split(".")[0])[0].stat().st_ino for p in [*answered, own]}
    assert len(pictures) == 1


# --- the daemon, as installed: a technician without sudo, the folders the technicians' group's ---


def technician_shell(group: int, script: str) -> None:
    """``script`` run by ``sh`` as a technician: the user nobody in the technicians' group."""
    nobody = pwd.getpwnam("nobody")
    subprocess.run(
        ["sh", "-ec", script], check=True, capture_output=True, timeout=120, user=nobody.pw_uid, group=nobody.pw_gid, extra_groups=[group]
    )


@pytest.fixture
def installed(tmp_path, signing_central, list_keys, card_folder, technicians_group):
    """The daemon as installed (runtime and state folders its group's, the technicians'), the
    replaced-card list synced from ``signing_central``; yields (config, runtime dir, as_technician)."""
    images = with_empty_tail(card_folder([OTHER]), 300)
    with kiosk_as_nobody(probe="cv2, device", groups=(technicians_group,)) as (folder, as_technician):
        cfg = installed_config(
            folder, technicians_group, list_keys[1], central=signing_central, source=f"file:{images}", kiosk_id="kiosk-requests"
        )
        with Daemon(tmp_path, cfg) as daemon:
            wait_for_status(cfg, lambda r: (r["daemon"].get("revocations") or {}).get("synced_at"))
            yield cfg, folder / "run", as_technician, daemon


def test_a_technician_cannot_block_the_daemon_with_a_fifo_or_make_it_sync_every_second(installed, technicians_group):
    cfg, runtime, as_technician, daemon = installed
    requests = runtime / status.REQUESTS_DIR
    fifo, link, directory, sync_dir, huge = (request_name(), request_name(), request_name(), request_name("sync"), request_name())
    technician_shell(
        technicians_group,
        f"cd {requests}; mkfifo {fifo}; ln -s {fifo} {link}; mkdir {directory}; touch {directory}/x; "
        f"mkdir {sync_dir}; touch {sync_dir}/x; truncate -s 50M {huge}",
    )
    seen = wait_for_status(cfg, lambda r: (r["daemon"].get("requests") or {}).get("ignored") == 5)
    synced_at = seen["daemon"]["revocations"]["attempt_at"]
    # Three more housekeeping turns: the status still comes, no sync was made for the directory.
    written = seen["daemon"]["written_monotonic"]
    later = wait_for_status(cfg, lambda r: r["daemon"]["written_monotonic"] >= written + 3 * status.WRITE_INTERVAL_S)
    assert later["daemon"]["revocations"]["attempt_at"] == synced_at
    assert later["daemon"]["requests"]["ignored"] == 5
    for name in (fifo, link, directory, sync_dir, huge):
        assert daemon.log.count(f"request folder: {name} ignored") == 1, daemon.log[-3000:]
    # The technician's own commands still work: a snapshot, a sync, the status naming what it ignored.
    shot = as_technician("diag", "camera", "--timeout", "60", "--config", str(cfg))
    assert shot.returncode == 0 and "from the running daemon" in shot.stdout, shot.stdout + shot.stderr
    sync = as_technician("revocations", "sync", "--config", str(cfg))
    assert sync.returncode == 0 and "synced by the daemon" in sync.stdout, sync.stdout + sync.stderr
    told = as_technician("status", "--config", str(cfg))
    assert "requests    5 ignored" in told.stdout, told.stdout


def test_two_thousand_queued_requests_do_not_keep_a_technicians_diag_camera_waiting(installed):
    cfg, runtime, as_technician, daemon = installed
    requests = runtime / status.REQUESTS_DIR
    nobody = pwd.getpwnam("nobody").pw_uid
    for _ in range(2000):
        path = requests / request_name()
        path.write_text("{}")
        os.lchown(path, nobody, -1)  # the technician's, as if they had left them
    # The real one, from the same technician, comes after them: it is answered within the
    # command's own wait (the time it took is in docs/BENCHMARKS.md, kiosk bench requests).
    shot = as_technician("diag", "camera", "--timeout", "60", "--config", str(cfg))
    assert shot.returncode == 0 and "from the running daemon" in shot.stdout, shot.stdout + shot.stderr
    wait_for_status(cfg, lambda r: r["daemon"]["requests"]["answered"] >= ANSWER_BURST + 1)
