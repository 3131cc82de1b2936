"""A throwaway Debian 12 root with this checkout installed by ``install.sh``, for system tests.

Shared by tests/test_install.py and tests/test_unit_boot.py: ``debootstrap`` a bookworm root
into a temporary folder, copy the checkout and the
machine's CA bundle in, run commands in it under ``chroot`` with a clean environment that keeps
proxies and usable pip settings, and remove it without ever crossing a mount. Needs root.

Example::

    root = tmp_path / "root"
    try:
        debootstrap(root, include=["systemd", "systemd-sysv", "dbus"])
        copy_checkout(root)
        with proc_mounted(root):
            run_in(root, "bash", f"{CHECKOUT}/install.sh")
    finally:
        remove_root(root)
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path

import pytest

from support.kiosk import REPO

SUITE = "bookworm"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
CHECKOUT = "/root/kiosk"  # where the checkout lies inside the Debian root
CA_BUNDLE = "/root/host-ca.pem"  # the machine's CA bundle, for pip inside the root
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#: The root's Debian architecture when not this machine's: ``KIOSK_TEST_ARCH=arm64`` makes a Pi's
#: (64-bit Raspberry Pi OS is Debian arm64) and runs it under qemu-user emulation, which needs
#: ``qemu-user-static`` and ``binfmt-support`` from apt and binfmt_misc mounted. Not in CI (slow).
ARCH = os.environ.get("KIOSK_TEST_ARCH", "")


def debian_mirror(sources_dir: Path = Path("/etc/apt/sources.list.d"), sources_list: Path = Path("/etc/apt/sources.list")) -> str:
    """The Debian mirror this machine's apt uses for ``bookworm``, else deb.debian.org.

    Reads deb822 ``*.sources`` files and one-line ``sources.list`` entries.
    """
    for path in sorted(sources_dir.glob("*.sources")) if sources_dir.is_dir() else []:
        for stanza in re.split(r"\n\s*\n", path.read_text(errors="replace")):
            fields = dict(re.findall(r"^(\w[\w-]*):\s*(.*)$", stanza, re.MULTILINE))
            if "deb" in fields.get("Types", "").split() and SUITE in fields.get("Suites", "").split():
                return fields["URIs"].split()[0]
    lists = [sources_list] + (sorted(sources_dir.glob("*.list")) if sources_dir.is_dir() else [])
    for path in lists:
        if not path.is_file():
            continue
        for line in path.read_text(errors="replace").splitlines():
            m = re.match(r"\s*deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+(\S+)", line)
            if m and m.group(2) == SUITE:
                return m.group(1)
    return DEFAULT_MIRROR


def pip_environment(environ: dict[str, str], pip_config: str) -> dict[str, str]:
    """PIP_* settings that pip inside the root can use: this machine's, minus local paths.

    >>> pip_environment({"PIP_FIND_LINKS": "/opt/wheels", "PIP_DEFAULT_TIMEOUT": "180"},
    ...                 "global.extra-index-url='file:///opt/pypi/simple https://mirror/simple'")
    {'PIP_EXTRA_INDEX_URL': 'https://mirror/simple', 'PIP_DEFAULT_TIMEOUT': '180'}
    """
    settings: dict[str, str] = {}
    for line in pip_config.splitlines():
        m = re.match(r"[^.]*\.([\w-]+)='(.*)'$", line.strip())
        if m:
            settings["PIP_" + m.group(1).upper().replace("-", "_")] = m.group(2)
    settings.update({k: v for k, v in environ.items() if k.startswith("PIP_")})
    usable = {}
    for key, value in settings.items():
        # Files named here (a wheel folder, constraints, file: indexes) do not exist in the root.
        kept = [word for word in value.split() if not word.startswith(("/", "file:"))]
        if kept and key not in ("PIP_CERT", "PIP_CONFIG_FILE"):
            usable[key] = " ".join(kept)
    return usable


@cache
def root_environment() -> dict[str, str]:
    """A clean environment for commands in the root: PATH, locale, proxies, pip's settings."""
    config = subprocess.run([sys.executable, "-m", "pip", "config", "list"], check=False, capture_output=True, text=True).stdout
    env = {"PATH": PATH, "HOME": "/root", "LANG": "C.UTF-8", "DEBIAN_FRONTEND": "noninteractive"}
    env.update({k: v for k, v in os.environ.items() if k.lower() in ("http_proxy", "https_proxy", "no_proxy")})
    env.update(pip_environment(dict(os.environ), config))
    if HOST_CA_BUNDLE.is_file():
        env["PIP_CERT"] = CA_BUNDLE  # copied in by copy_checkout()
    return env


def checkout_files() -> list[str]:
    """The checkout's files as git sees them: tracked and new, not ignored (so no .venv)."""
    result = subprocess.run(
        ["git", "-C", str(REPO), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        check=False,
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        pytest.skip(f"not a git checkout, cannot tell which files to copy: {result.stderr.strip()}")
    return [name for name in result.stdout.split("\0") if name and (REPO / name).is_file()]


def ensure_tool(command: str, package: str) -> None:
    """Install ``package`` with apt when ``command`` is missing (update the lists only if needed)."""
    if shutil.which(command):
        return
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    install = ["apt-get", "install", "-y", "-q", package]
    if subprocess.run(install, env=env, check=False, capture_output=True).returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], env=env, check=False, capture_output=True)
        subprocess.run(install, env=env, check=False, capture_output=True)
    assert shutil.which(command), f"{command} is missing and apt-get could not install {package}"


def debootstrap(root: Path, include: list[str] = ()) -> None:
    """A minimal bookworm in ``root`` (which must not exist yet), with ``include`` packages added."""
    ensure_tool("debootstrap", "debootstrap")
    command = ["debootstrap", "--variant=minbase", *([f"--arch={ARCH}"] if ARCH else [])]
    if include:
        command.append("--include=" + ",".join(include))
    result = subprocess.run([*command, SUITE, str(root), debian_mirror()], check=False, capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, f"debootstrap failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"


def copy_checkout(root: Path) -> None:
    """This checkout into ``CHECKOUT`` in the root, and the CA bundle that pip there uses."""
    for name in checkout_files():
        target = root / CHECKOUT.lstrip("/") / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, target)
    if HOST_CA_BUNDLE.is_file():
        shutil.copy(HOST_CA_BUNDLE, root / CA_BUNDLE.lstrip("/"))


@contextmanager
def proc_mounted(root: Path) -> Iterator[None]:
    """/proc mounted in the root while chrooted commands need it (apt, pip, runuser)."""
    subprocess.run(["mount", "-t", "proc", "proc", str(root / "proc")], check=True)
    try:
        yield
    finally:
        subprocess.run(["umount", str(root / "proc")], check=False)


def mounts_under(path: Path) -> list[str]:
    prefix = str(path.resolve()) + "/"
    points = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
    return [p for p in points if p.startswith(prefix)]


def remove_root(root: Path) -> None:
    """Unmount whatever is mounted inside the root, then delete it (never crossing a mount)."""
    for point in sorted(mounts_under(root), reverse=True):
        if subprocess.run(["umount", point], check=False).returncode != 0:
            subprocess.run(["umount", "-l", point], check=False)
    leftover = mounts_under(root)
    assert not leftover, f"could not unmount {leftover}; not removing {root}"
    subprocess.run(["rm", "-rf", "--one-file-system", str(root)], check=True)


def run_in(root: Path, *command: str, check: bool = True, timeout: float = 900) -> subprocess.CompletedProcess:
    """Run a command inside the root under chroot; with check, fail showing its output."""
    environment = [f"{k}={v}" for k, v in root_environment().items()]
    return run_entered(["chroot", str(root), "/usr/bin/env", "-i", *environment], command, check=check, timeout=timeout)


def run_entered(enter: list[str], command: tuple[str, ...], *, check: bool, timeout: float) -> subprocess.CompletedProcess:
    """Run ``command`` behind ``enter`` (a chroot, an nsenter into a booted root); with check, fail
    showing its output."""
    result = subprocess.run([*enter, *command], check=False, capture_output=True, text=True, timeout=timeout)
    if check:
        assert result.returncode == 0, f"{' '.join(command)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
    return result
