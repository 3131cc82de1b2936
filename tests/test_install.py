"""The system install for real: ``install.sh`` in a throwaway Debian 12 root.

``debootstrap --variant=minbase bookworm`` makes a fresh root in a temporary folder, with systemd
added (Raspberry Pi OS always has it; it is not running in a chroot, as when an SD card image is
built). The checkout is copied in and ``install.sh`` runs there under ``chroot`` on the real paths
(/opt/kiosk, /etc/kiosk, /var/lib/kiosk, /etc/systemd/system). The tests below are one scenario,
in file order: first install, its results, a re-run (upgrade), ``--uninstall``, then a reinstall
and ``--uninstall --purge``.

Needs root (debootstrap, chroot, mount) and the network (Debian's mirror, PyPI); skipped
otherwise only when not root. Takes a few minutes, most of it debootstrap and pip. The root is
always unmounted and removed, also when a test fails.

Example::

    sudo .venv/bin/python -m pytest tests/test_install.py -q --durations=0
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
from support.debian_root import ARCH, CHECKOUT, copy_checkout, debootstrap, remove_root, run_in
from support.kiosk import REPO as ROOT

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the system install test needs root (debootstrap, chroot, mount)")


def install_sh(root: Path, *args: str) -> subprocess.CompletedProcess:
    return run_in(root, "bash", f"{CHECKOUT}/install.sh", *args)


@pytest.fixture(scope="module")
def debian_root(tmp_path_factory, request) -> Path:
    """A fresh Debian 12 root with systemd and this checkout in /root/kiosk, proc mounted."""
    root = tmp_path_factory.mktemp("debian") / "root"
    request.addfinalizer(lambda: remove_root(root))  # unmounts proc too
    debootstrap(root)
    subprocess.run(["mount", "-t", "proc", "proc", str(root / "proc")], check=True)
    run_in(root, "apt-get", "install", "-y", "-q", "--no-install-recommends", "systemd")
    copy_checkout(root)
    return root


@pytest.fixture(scope="module")
def first_install(debian_root) -> subprocess.CompletedProcess:
    return install_sh(debian_root)


# --- Looking inside the root --------------------------------------------------------------------


def stat(root: Path, path: str) -> tuple[str, str, str]:
    """(octal mode, owner, group) of a path, names as the root's own /etc/passwd has them."""
    mode, owner, group = run_in(root, "stat", "-c", "%a %U %G", path).stdout.split()
    return mode, owner, group


def exists(root: Path, path: str) -> bool:
    return run_in(root, "test", "-e", path, check=False).returncode == 0 or (root / path.lstrip("/")).is_symlink()


def groups_of(root: Path, user: str) -> set[str]:
    return set(run_in(root, "id", "-nG", user).stdout.split())


def as_user(root: Path, user: str, *command: str) -> subprocess.CompletedProcess:
    return run_in(root, "runuser", "-u", user, "--", *command, check=False)


# --- First install ------------------------------------------------------------------------------


def test_first_install_creates_the_kiosk_system_user(debian_root, first_install):
    _, _, uid, _, _, home, shell = run_in(debian_root, "getent", "passwd", "kiosk").stdout.strip().split(":")
    assert int(uid) < 1000, "kiosk should be a system user"
    assert (home, shell) == ("/var/lib/kiosk", "/usr/sbin/nologin")
    assert {"kiosk", "video", "gpio", "kiosk-tech"} <= groups_of(debian_root, "kiosk")
    # The technicians' group: made here, and not the token's group.
    assert run_in(debian_root, "getent", "group", "kiosk-tech", check=False).returncode == 0
    # Debian has no gpio group: install.sh creates it, or the unit's SupplementaryGroups= fails.
    assert run_in(debian_root, "getent", "group", "gpio", check=False).returncode == 0


def test_first_install_lays_out_files_with_safe_modes(debian_root, first_install):
    assert stat(debian_root, "/etc/kiosk") == ("755", "root", "root")
    assert stat(debian_root, "/etc/kiosk/kiosk.toml") == ("640", "root", "kiosk-tech")
    assert stat(debian_root, "/etc/kiosk/token") == ("640", "root", "kiosk")
    assert (debian_root / "etc/kiosk/token").stat().st_size == 0
    assert stat(debian_root, "/var/lib/kiosk") == ("750", "kiosk", "kiosk-tech")
    assert stat(debian_root, "/etc/systemd/system/kiosk.service") == ("644", "root", "root")
    assert (debian_root / "etc/systemd/system/kiosk.service").read_text() == (ROOT / "systemd/kiosk.service").read_text()
    assert os.readlink(debian_root / "usr/local/bin/kiosk") == "/opt/kiosk/venv/bin/kiosk"
    # The example config, pointed at the token file.
    config = (debian_root / "etc/kiosk/kiosk.toml").read_text()
    example = (ROOT / "config/kiosk.toml").read_text()
    # Only api.token_file (a line of its own): pos.http_token_file stays empty.
    assert config == re.sub(r'^token_file = ""$', 'token_file = "/etc/kiosk/token"', example, count=1, flags=re.M)
    assert 'http_token_file = ""' in config
    # The token: the service user reads it, other users do not.
    assert as_user(debian_root, "kiosk", "cat", "/etc/kiosk/token").returncode == 0
    assert as_user(debian_root, "nobody", "cat", "/etc/kiosk/token").returncode != 0
    # pip built from a copy: the checkout has no build leftovers owned by root.
    checkout = debian_root / CHECKOUT.lstrip("/")
    leftovers = [p.name for p in checkout.iterdir() if p.name == "build" or p.name.endswith(".egg-info")]
    assert not leftovers


def test_the_root_is_of_the_architecture_asked_for(debian_root):
    """KIOSK_TEST_ARCH=arm64 installs into a Pi's architecture under emulation (debian_root.ARCH)."""
    machine = {"arm64": "aarch64", "armhf": "armv7l"}.get(ARCH, os.uname().machine)
    assert run_in(debian_root, "uname", "-m").stdout.strip() == machine
    if ARCH:
        assert run_in(debian_root, "dpkg", "--print-architecture").stdout.strip() == ARCH


def test_first_install_kiosk_runs_from_the_venv(debian_root, first_install):
    assert "usage: kiosk" in run_in(debian_root, "/opt/kiosk/venv/bin/kiosk", "--help").stdout
    # The native libraries are there (libzbar0 from apt, OpenCV and zxing-cpp wheels).
    run_in(debian_root, "/opt/kiosk/venv/bin/python", "-c", "import cv2, numpy, pyzbar.pyzbar, zxingcpp, gpiozero")
    # The service user can read its config.
    check = as_user(debian_root, "kiosk", "kiosk", "config", "check", "--config", "/etc/kiosk/kiosk.toml")
    assert check.returncode == 0, check.stdout + check.stderr


def test_first_install_says_what_to_fill_in_and_does_not_enable(debian_root, first_install):
    out = first_install.stdout
    assert "not started" in out
    assert "api.url" in out and "/etc/kiosk/kiosk.toml" in out
    assert "/etc/kiosk/token" in out
    assert "systemctl enable --now kiosk" in out
    assert not exists(debian_root, "/etc/systemd/system/multi-user.target.wants/kiosk.service")


def test_installed_unit_verifies_with_the_real_program(debian_root, first_install):
    result = run_in(debian_root, "systemd-analyze", "verify", "/etc/systemd/system/kiosk.service", check=False)
    assert result.returncode == 0 and "kiosk" not in result.stdout + result.stderr, result.stdout + result.stderr


# --- Re-run: upgrade ----------------------------------------------------------------------------


def test_rerun_upgrades_the_code_keeps_config_and_data_and_enables(debian_root, first_install):
    config = debian_root / "etc/kiosk/kiosk.toml"
    config.write_text(config.read_text().replace('url = ""', 'url = "https://central.example.net"', 1))
    edited = config.read_text()
    (debian_root / "etc/kiosk/token").write_text("token-for-this-kiosk\n")
    (debian_root / "etc/kiosk/token").chmod(0o644)  # a slip that the re-run repairs
    outbox = debian_root / "var/lib/kiosk/outbox.db"
    outbox.write_bytes(b"SQLite format 3\x00queued identifications")  # the kiosk's own kind of file (issue 20)
    (debian_root / "opt/kiosk/venv/kept").write_text("")  # the venv is upgraded in place
    # A newer checkout: a module the installed code does not have yet.
    (debian_root / CHECKOUT.lstrip("/") / "device/_upgrade_probe.py").write_text("NEW = True\n")

    result = install_sh(debian_root)

    assert "keeping /etc/kiosk/kiosk.toml" in result.stdout
    assert config.read_text() == edited
    assert (debian_root / "etc/kiosk/token").read_text() == "token-for-this-kiosk\n"
    assert stat(debian_root, "/etc/kiosk/token") == ("640", "root", "kiosk")
    assert outbox.read_bytes() == b"SQLite format 3\x00queued identifications"
    assert exists(debian_root, "/opt/kiosk/venv/kept")
    run_in(debian_root, "/opt/kiosk/venv/bin/python", "-c", "import device._upgrade_probe")
    # Complete config: enabled (systemd is not running in a chroot: it would start at boot).
    assert "enabled" in result.stdout
    wants = debian_root / "etc/systemd/system/multi-user.target.wants/kiosk.service"
    assert os.readlink(wants) == "/etc/systemd/system/kiosk.service"


def test_rerun_says_when_the_service_could_not_read_the_token(debian_root, first_install):
    config = debian_root / "etc/kiosk/kiosk.toml"
    before = config.read_text()
    secret = debian_root / "etc/kiosk/other-token"
    secret.write_text("token\n")
    secret.chmod(0o600)  # root's only: the service (user kiosk) could not read it
    config.write_text(before.replace('token_file = "/etc/kiosk/token"', 'token_file = "/etc/kiosk/other-token"'))
    try:
        result = install_sh(debian_root)
    finally:
        config.write_text(before)
        secret.unlink()
    assert "not started" in result.stdout
    assert "let the service read /etc/kiosk/other-token" in result.stdout


# --- Uninstall ----------------------------------------------------------------------------------


def test_uninstall_removes_the_program_and_keeps_config_data_and_user(debian_root, first_install):
    install_sh(debian_root, "--uninstall")

    for gone in (
        "/etc/systemd/system/kiosk.service",
        "/etc/systemd/system/multi-user.target.wants/kiosk.service",
        "/opt/kiosk",
        "/usr/local/bin/kiosk",
    ):
        assert not exists(debian_root, gone), gone
    for kept in ("/etc/kiosk/kiosk.toml", "/etc/kiosk/token", "/var/lib/kiosk/outbox.db"):
        assert exists(debian_root, kept), kept
    assert run_in(debian_root, "id", "kiosk", check=False).returncode == 0
    install_sh(debian_root, "--uninstall")  # again: nothing left to do, no error


def test_reinstall_then_purge_removes_everything_but_the_gpio_group(debian_root, first_install):
    edited = (debian_root / "etc/kiosk/kiosk.toml").read_text()
    install_sh(debian_root)
    assert (debian_root / "etc/kiosk/kiosk.toml").read_text() == edited

    install_sh(debian_root, "--uninstall", "--purge")

    for gone in ("/etc/kiosk", "/var/lib/kiosk", "/opt/kiosk", "/etc/systemd/system/kiosk.service", "/usr/local/bin/kiosk"):
        assert not exists(debian_root, gone), gone
    assert run_in(debian_root, "getent", "passwd", "kiosk", check=False).returncode != 0
    assert run_in(debian_root, "getent", "group", "kiosk", check=False).returncode != 0
    assert run_in(debian_root, "getent", "group", "gpio", check=False).returncode == 0
    install_sh(debian_root, "--uninstall", "--purge")  # again: no error
