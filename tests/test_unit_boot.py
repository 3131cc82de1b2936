"""kiosk.service under a real systemd: a Debian 12 root booted with ``systemd-nspawn -b``.

``install.sh`` installs the kiosk into a throwaway bookworm root (debootstrap, as in
tests/test_install.py); the root then boots with systemd as its init in a container without a
network of its own (``--private-network``: loopback only, where a reference central listens). The
tests drive the REAL systemd inside through ``nsenter`` + ``systemctl`` and check what the unit
promises: a config error stays down (exit 78, no restart, the key in the journal); ``READY=1``
makes the unit active with the daemon's ``STATUS=`` line; SIGTERM stops it cleanly; SIGKILL and a
watchdog timeout bring it back. The camera is a file source: a long video of an empty counter.

Needs root (debootstrap, chroot, nspawn) and the network (Debian's mirror, PyPI); skipped only
when not root. About a minute and a half, most of it debootstrap and pip. The container is
powered off (killed if it does not stop) and the root removed, also when a test fails.

One thing behaves differently in a container: nspawn lays a made-up boot id over
/proc/sys/kernel/random/boot_id, but the unit's ``ProtectProc=`` mounts a fresh /proc for the
daemon, which shows the kernel's real one. A ``kiosk status`` run beside it (nsenter, machinectl
shell) then calls the daemon's snapshot "from before the last reboot". On a Pi there is no such
overlay; here ``kiosk status`` runs in a transient unit with the same ``ProtectProc=``.

Example::

    sudo .venv/bin/python -m pytest tests/test_unit_boot.py -q --durations=0
"""

from __future__ import annotations

import json
import os
import subprocess

import pytest
from support.booted_root import BootedRoot
from support.debian_root import CHECKOUT, copy_checkout, debootstrap, ensure_tool, proc_mounted, remove_root, run_in
from support.waiting import wait_until

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0, reason="booting a Debian root under systemd-nspawn needs root (debootstrap, chroot, nspawn)"
)

VIDEO = "/srv/kiosk-media/counter.avi"  # not under /tmp: the unit has PrivateTmp=yes
CONFIG = "/etc/kiosk/kiosk.toml"
GOOD_CONFIG = f"""\
[kiosk]
id = "kiosk-boot-test"
[camera]
source = "file:{VIDEO}"
pace = "realtime"
[api]
url = "http://127.0.0.1:8080"
token_file = "/etc/kiosk/token"
[feedback]
pin_factory = "mock"
"""
TOKEN = "boot-test-token"
WATCHDOG_DROP_IN = "/etc/systemd/system/kiosk.service.d/short-watchdog.conf"

# Ten minutes of 5 fps grey frames: the daemon must not reach the end of the clip (it would then
# drain and exit 0) before the last test; restarts start it from the beginning again.
MAKE_VIDEO = f"""
import cv2, numpy as np
out = cv2.VideoWriter("{VIDEO}", cv2.VideoWriter_fourcc(*"MJPG"), 5.0, (320, 240))
counter = np.full((240, 320, 3), (110, 118, 120), np.uint8)
for _ in range(5 * 600):
    out.write(counter)
out.release()
"""


@pytest.fixture(scope="module")
def booted(tmp_path_factory, request) -> BootedRoot:
    """A bookworm root with the kiosk installed by install.sh, booted, a central running inside."""
    ensure_tool("systemd-nspawn", "systemd-container")
    work = tmp_path_factory.mktemp("boot")
    root = work / "root"
    request.addfinalizer(lambda: remove_root(root))
    debootstrap(root, include=["systemd", "systemd-sysv", "dbus"])
    copy_checkout(root)
    with proc_mounted(root):
        install = run_in(root, "bash", f"{CHECKOUT}/install.sh")
        assert "installed kiosk" in install.stdout, install.stdout
        (root / VIDEO.lstrip("/")).parent.mkdir(parents=True)
        run_in(root, "/opt/kiosk/venv/bin/python", "-c", MAKE_VIDEO)
    (root / "etc/kiosk/token").write_text(TOKEN + "\n")
    (root / CONFIG.lstrip("/")).write_text(GOOD_CONFIG)

    machine = BootedRoot(root, work / "nspawn.log", f"kiosk-boot-{os.getpid()}")
    request.addfinalizer(machine.power_off)
    machine.wait_booted()
    machine.run(
        "systemd-run",
        "--unit=central",
        "/opt/kiosk/venv/bin/kiosk",
        "central",
        "--port",
        "8080",
        "--db",
        "/var/tmp/central.db",
        "--token",
        TOKEN,
    )
    return machine


def start_with(machine: BootedRoot, config: str) -> tuple[subprocess.CompletedProcess, str]:
    """(Re)start the kiosk from a clean slate with this config: how `systemctl start` ended,
    and the journal cursor from just before it."""
    machine.run("systemctl", "stop", "kiosk")
    machine.run("systemctl", "reset-failed", "kiosk", check=False)
    machine.write(CONFIG, config)
    cursor = machine.journal_cursor()
    return machine.run("systemctl", "start", "kiosk", check=False), cursor


def kiosk_status(machine: BootedRoot) -> subprocess.CompletedProcess:
    # In a unit with the daemon's ProtectProc=, so that both see the same boot id (module docstring).
    return machine.run(
        "systemd-run",
        "--wait",
        "--pipe",
        "--quiet",
        "-p",
        "ProtectProc=invisible",
        "/usr/local/bin/kiosk",
        "status",
        "--json",
        "--config",
        CONFIG,
        check=False,
    )


def test_a_config_error_exits_78_and_stays_down_with_the_key_in_the_journal(booted):
    started, cursor = start_with(booted, GOOD_CONFIG.replace('pace = "realtime"', 'pace = "realtime"\nfps = "fast"'))

    assert started.returncode != 0
    unit = booted.show("kiosk")
    # "failed" at once, not "auto-restart": RestartPreventExitStatus=78 took effect.
    assert (unit["ActiveState"], unit["SubState"], unit["Result"]) == ("failed", "failed", "exit-code"), unit
    assert unit["ExecMainStatus"] == "78"
    assert unit["NRestarts"] == "0"
    booted.wait_for_journal("kiosk", 'camera.fps: expected a number, got "fast"', after=cursor)


def test_a_good_config_becomes_ready_with_the_status_line(booted):
    started, _ = start_with(booted, GOOD_CONFIG)

    # Type=notify: `systemctl start` returns once the daemon said READY=1.
    assert started.returncode == 0, started.stdout + started.stderr
    unit = booted.show("kiosk")
    assert (unit["ActiveState"], unit["SubState"]) == ("active", "running"), unit
    assert unit["WatchdogUSec"] == "30s"
    assert "frames" in unit["StatusText"] and "faults" in unit["StatusText"], unit["StatusText"]
    # The daemon writes its first status snapshot before READY=1: `kiosk status` works at once.
    status = kiosk_status(booted)
    assert status.returncode == 0, status.stdout + status.stderr
    report = json.loads(status.stdout)
    assert report["running"] and not report["daemon"]["faults"], report
    assert str(report["daemon"]["pid"]) == unit["MainPID"]


def test_sigterm_stops_the_daemon_cleanly(booted):
    start_with(booted, GOOD_CONFIG)
    cursor = booted.journal_cursor()

    booted.run("systemctl", "stop", "kiosk")

    unit = booted.show("kiosk")
    assert (unit["ActiveState"], unit["Result"], unit["ExecMainStatus"]) == ("inactive", "success", "0"), unit
    booted.wait_for_journal("kiosk", "signal SIGTERM: stopping", after=cursor)


def test_sigkill_is_restarted_by_systemd(booted):
    _, cursor = start_with(booted, GOOD_CONFIG)
    before = booted.show("kiosk")

    booted.run("systemctl", "kill", "--signal=SIGKILL", "kiosk")

    def back():
        unit = booted.show("kiosk")
        return unit["NRestarts"] == "1" and unit["ActiveState"] == "active"

    wait_until(back, timeout_s=60, every_s=0.1, what="systemd to restart the killed kiosk")
    assert booted.show("kiosk")["MainPID"] != before["MainPID"]
    assert "status=9/KILL" in booted.journal("kiosk", after=cursor)


def test_a_hung_daemon_is_killed_by_the_watchdog_and_restarted(booted):
    drop_in = booted.root / WATCHDOG_DROP_IN.lstrip("/")
    drop_in.parent.mkdir(exist_ok=True)
    drop_in.write_text("[Service]\nWatchdogSec=3s\n")
    booted.run("systemctl", "daemon-reload")
    try:
        _, cursor = start_with(booted, GOOD_CONFIG)
        assert booted.show("kiosk")["WatchdogUSec"] == "3s"

        # A stopped process sends no WATCHDOG=1, like a hung scan loop.
        booted.run("systemctl", "kill", "--kill-who=main", "--signal=SIGSTOP", "kiosk")

        def back():
            unit = booted.show("kiosk")
            return unit["NRestarts"] == "1" and unit["ActiveState"] == "active"

        wait_until(back, timeout_s=60, every_s=0.1, what="the watchdog to restart the stopped kiosk")
        assert "Watchdog timeout" in booted.journal("kiosk", after=cursor)
    finally:
        drop_in.unlink(missing_ok=True)
        booted.run("systemctl", "daemon-reload")


def test_kiosk_status_says_why_the_daemon_is_down_when_it_cannot_write_its_outbox(booted):
    """A root-owned outbox file (a `sudo sqlite3` left it so): systemd's StateDirectory= fixes the
    folder's owner, not the file's. The daemon stops at start; `kiosk status` names the unit's
    state, where to read why, and the file, its owner and mode, and the chown that fixes it."""
    outbox = "/var/lib/kiosk/outbox.db"
    start_with(booted, GOOD_CONFIG)  # the outbox exists
    booted.run("systemctl", "stop", "kiosk")
    booted.run("chown", "root:root", outbox)
    try:
        booted.run("systemctl", "start", "kiosk", check=False)  # fails, then systemd tries again

        def explained() -> list[str]:
            report = json.loads(kiosk_status(booted).stdout)
            return [] if report["running"] else report["stopped_because"]

        wait_until(
            lambda: any("cannot write there" in line for line in explained()),
            timeout_s=60,
            every_s=0.1,
            what="kiosk status to explain the stop",
        )
        lines = explained()
        assert any(line.startswith("kiosk.service ") and "journalctl -u kiosk -n 20" in line for line in lines), lines
        assert any(
            line.startswith(f"outbox.path {outbox}: the file {outbox} is owned by root:root mode 0640 and the kiosk runs as kiosk")
            and line.endswith(f"sudo chown kiosk: {outbox}")
            for line in lines
        ), lines
    finally:
        booted.run("systemctl", "stop", "kiosk")
        booted.run("chown", "kiosk:kiosk-tech", outbox)
        booted.run("systemctl", "reset-failed", "kiosk", check=False)


def test_the_units_system_call_filter_lets_the_list_sync_lower_its_priority(booted):
    """The replaced-card sync lowers its thread to nice 10 (and a complete list's child to
    SCHED_IDLE); the unit's SystemCallFilter= must allow it, or the sync would take CPU from the
    scan loop. A central with a signing key serves the list; a thread of the daemon ends at nice 10."""
    booted.run(
        "/opt/kiosk/venv/bin/kiosk", "central", "keygen", "--private-key", "/var/tmp/list.key", "--public-key", "/etc/kiosk/list.pub"
    )
    booted.run(
        "systemd-run",
        "--unit=signing-central",
        "/opt/kiosk/venv/bin/kiosk",
        "central",
        "--port",
        "8081",
        "--db",
        "/var/tmp/central2.db",
        "--token",
        TOKEN,
        "--signing-key",
        "/var/tmp/list.key",
    )
    try:
        config = (
            GOOD_CONFIG.replace("127.0.0.1:8080", "127.0.0.1:8081")
            + '[revocations]\nenabled = true\npublic_key_file = "/etc/kiosk/list.pub"\n'
        )
        started, cursor = start_with(booted, config)
        assert started.returncode == 0, started.stdout + started.stderr
        pid = booted.show("kiosk")["MainPID"]
        probe = f"import os; print(sorted(os.getpriority(os.PRIO_PROCESS, int(t)) for t in os.listdir('/proc/{pid}/task')))"

        def niceness() -> list[int]:
            return json.loads(booted.run("/opt/kiosk/venv/bin/python", "-c", probe).stdout)

        wait_until(lambda: 10 in niceness(), timeout_s=60, every_s=0.1, what="the sync thread at nice 10")
        assert "cannot lower" not in booted.journal("kiosk", after=cursor)
    finally:
        booted.run("systemctl", "stop", "kiosk", "signing-central", check=False)
