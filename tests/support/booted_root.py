"""A Debian root booted with ``systemd-nspawn -b``: systemd as its init, commands run inside with
``nsenter``. Shared by tests/test_unit_boot.py (one root, loopback only) and tests/test_fleet.py
(three roots on the host's network, each with sshd on its own port). Needs root.

Example::

    machine = BootedRoot(root, tmp_path / "nspawn.log", "kiosk-boot-1")
    try:
        machine.wait_booted()
        machine.run("systemctl", "start", "kiosk")
    finally:
        machine.power_off()
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest

from support.debian_root import PATH, run_entered
from support.waiting import wait_until


def descendants(pid: int) -> list[int]:
    """Every process below ``pid``, parents before children."""
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            children = [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
        for child in children:
            found += [child, *descendants(child)]
    return found


def comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


class BootedRoot:
    """A root booted with ``systemd-nspawn -b``; commands run inside through ``nsenter``."""

    def __init__(self, root: Path, log: Path, name: str, *, private_network: bool = True):
        """``private_network``: loopback only (the default); else the host's network, whose loopback
        the container shares (a server of the test reaches it, and it reaches the test's)."""
        self.root = root
        self.name = name
        self._log = log.open("wb")
        # --register=no and --keep-unit: this machine has no systemd (no machined, no bus) to
        # register with or to put the container into a scope. The timeout bounds it even if
        # pytest dies before the teardown.
        self.process = subprocess.Popen(
            [
                "timeout",
                "--kill-after=10",
                "1200",
                "systemd-nspawn",
                "--quiet",
                "-D",
                str(root),
                "-M",
                name,
                "--register=no",
                "--keep-unit",
                *(["--private-network"] if private_network else []),
                "-b",
                "--console=pipe",
            ],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self.log = log
        self.init_pid = 0
        self.state = ""

    def wait_booted(self) -> None:
        def init_started() -> bool:
            if self.process.poll() is not None:
                pytest.fail(f"systemd-nspawn exited {self.process.returncode}:\n{self.log.read_text(errors='replace')[-3000:]}")
            self.init_pid = next((p for p in descendants(self.process.pid) if comm(p) == "systemd"), 0)
            return bool(self.init_pid)

        wait_until(init_started, timeout_s=60, every_s=0.1, what="systemd to start in the container")

        # Empty until systemd listens, then "initializing", "starting", and where the boot ended.
        def boot_ended() -> bool:
            self.state = self.run("systemctl", "is-system-running", check=False).stdout.strip()
            return self.state not in ("", "initializing", "starting")

        wait_until(boot_ended, timeout_s=120, every_s=0.1, what="the container to finish booting")
        if self.state == "degraded":
            self._start_failed_units_again()
        state = self.state
        failed = self.run("systemctl", "--failed", "--no-legend", "--plain", check=False).stdout
        journal = self.run("journalctl", "-b", "-p", "warning", "-n", "40", "--no-pager", check=False).stdout
        assert state == "running", f"the container booted to {state!r}; failed units:\n{failed}\n{journal}"

    def _start_failed_units_again(self) -> None:
        """Start once more the units that failed at boot. Several containers booting at once on
        this machine's shared /proc and /sys once made systemd-tmpfiles-setup fail in one of them
        (before anything of the kiosk was installed); a unit that fails again fails the boot,
        with the journal shown."""
        failed = self.run("systemctl", "--failed", "--no-legend", "--plain", check=False).stdout.split()
        units = [word for word in failed if word.endswith((".service", ".mount", ".socket"))]
        self.run("systemctl", "reset-failed", check=False)
        for unit in units:
            self.run("systemctl", "start", unit, check=False)
        self.state = self.run("systemctl", "is-system-running", check=False).stdout.strip()

    def run(self, *command: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
        enter = ["nsenter", "-t", str(self.init_pid), "-a", "/usr/bin/env", "-i", f"PATH={PATH}", "LANG=C.UTF-8"]
        return run_entered(enter, command, check=check, timeout=timeout)

    def show(self, unit: str) -> dict[str, str]:
        """The unit's state as systemd has it (the properties the tests look at)."""
        props = "ActiveState,SubState,Result,NRestarts,MainPID,ExecMainStatus,StatusText,WatchdogUSec"
        out = self.run("systemctl", "show", "-p", props, unit).stdout
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def journal_cursor(self) -> str:
        """Where the journal ends now (``journal(after=...)`` shows what comes later)."""
        out = self.run("journalctl", "-n", "1", "--show-cursor", "--no-pager", "-o", "cat").stdout
        return next(line.removeprefix("-- cursor: ") for line in out.splitlines() if line.startswith("-- cursor: "))

    def journal(self, unit: str, after: str) -> str:
        return self.run("journalctl", "-u", unit, f"--after-cursor={after}", "--no-pager", "-o", "cat").stdout

    def wait_for_journal(self, unit: str, text: str, after: str) -> None:
        # The daemon's own lines reach journald through a stream, possibly after systemd's.
        wait_until(lambda: text in self.journal(unit, after), timeout_s=30, every_s=0.1, what=f"{text!r} in the journal of {unit}")

    def write(self, path: str, text: str) -> None:
        (self.root / path.lstrip("/")).write_text(text)

    def power_off(self) -> None:
        """Shut the container down; kill it when it does not stop in time."""
        if self.process.poll() is None and self.init_pid:
            self.run("systemctl", "poweroff", check=False, timeout=30)
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            # The container's init is PID 1 of its namespace: killing it kills everything in it.
            if self.init_pid:
                os.kill(self.init_pid, signal.SIGKILL)
            self.process.kill()
            self.process.wait(timeout=30)
        self._log.close()
