"""Run the kiosk as a real unprivileged user (``nobody``), to test what a technician without root meets."""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import site
import stat
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest

from device.config import DEFAULT_PATH_ENV
from support.kiosk import REPO


@contextmanager
def kiosk_as_nobody(
    probe: str = "device", groups: tuple[int, ...] = ()
) -> Iterator[tuple[Path, Callable[..., subprocess.CompletedProcess]]]:
    """A folder any user may enter, and ``run(*kiosk_args)``: the kiosk as ``nobody``, in only the
    supplementary ``groups`` (gids), through an interpreter of this Python version that user may run
    and that imports ``probe`` (comma-separated modules) with this test's packages. Skips without root.
    """
    if os.geteuid() != 0:
        pytest.skip("needs root to run a command as another user")
    try:
        nobody = pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("no user nobody on this machine")
    with ExitStack() as cleanup:
        # The packages, through a path that user may enter: a bind mount when the checkout is in a
        # folder closed to others (a clone under /root or in a mkdtemp folder). Debian's Python also
        # names site folders that a venv does not have.
        existing = [path for path in map(Path, [*site.getsitepackages(), REPO]) if path.is_dir()]
        code = [cleanup.enter_context(seen_by_others(path)) for path in existing]
        folder = Path(tempfile.mkdtemp(prefix="kiosk-unprivileged-"))
        folder.chmod(0o755)
        cleanup.callback(shutil.rmtree, folder, ignore_errors=True)
        env = {
            "PATH": os.environ.get("PATH", ""),
            "HOME": str(folder),
            "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONPATH": os.pathsep.join(map(str, code)),
            DEFAULT_PATH_ENV: os.environ.get(DEFAULT_PATH_ENV, ""),  # the tests' default config file, never /etc/kiosk's
        }

        def run(command):
            return subprocess.run(
                command,
                capture_output=True,
                text=True,
                timeout=120,
                cwd=folder,
                env=env,
                user=nobody.pw_uid,
                group=nobody.pw_gid,
                extra_groups=list(groups),
            )

        version = f"{sys.version_info.major}.{sys.version_info.minor}"
        python = None
        for candidate in dict.fromkeys([os.path.realpath(sys.executable), shutil.which("python3") or "", "/usr/bin/python3"]):
            try:
                found = run([candidate, "-c", f"import sys, {probe}; print('%d.%d' % sys.version_info[:2])"])
            except OSError:  # not that user's to run (a pyenv under /root)
                continue
            if found.returncode == 0 and found.stdout.strip() == version:
                python = candidate
                break
        if python is None:
            pytest.skip(f"no Python {version} that the user nobody may run (apt-get install python3) and that imports {probe}")
        yield folder, lambda *args: run([python, "-m", "device", *args])


def others_may_enter(path: Path) -> bool:
    """Whether a user who is neither owner nor in the group (``nobody``) may enter ``path``."""
    return all(folder.stat().st_mode & stat.S_IXOTH for folder in [path, *path.parents])


@contextmanager
def seen_by_others(path: Path) -> Iterator[Path]:
    """``path``, or, when a folder above it is closed to other users (a clone under /root or in a
    mkdtemp folder), a read-only bind mount of it in a folder they may enter."""
    if others_may_enter(path):
        yield path
        return
    parent = Path(tempfile.mkdtemp(prefix="kiosk-seen-by-others-"))
    parent.chmod(0o755)
    mount_point = parent / path.name
    mount_point.mkdir()
    try:
        mounted = subprocess.run(["mount", "-o", "bind,ro", str(path), str(mount_point)], capture_output=True, text=True, timeout=30)
        if mounted.returncode != 0:
            pytest.skip(f"{path} is in a folder the user nobody may not enter, and it cannot be bind-mounted: {mounted.stderr.strip()}")
        try:
            yield mount_point
        finally:
            subprocess.run(["umount", str(mount_point)], check=True, capture_output=True, timeout=30)
    finally:
        # rmdir, never rmtree: while still mounted, that would delete the checkout itself.
        mount_point.rmdir()
        parent.rmdir()


@pytest.fixture
def technicians_group():
    """A group made for this test (as install.sh makes kiosk-tech): its gid, removed afterwards."""
    if os.geteuid() != 0 or shutil.which("groupadd") is None:
        pytest.skip("needs root and groupadd to make a group")
    name = f"ktech-{uuid.uuid4().hex[:8]}"
    subprocess.run(["groupadd", "--system", name], check=True, capture_output=True, timeout=30)
    try:
        yield grp.getgrnam(name).gr_gid
    finally:
        subprocess.run(["groupdel", name], check=False, capture_output=True, timeout=30)


@pytest.fixture
def unprivileged():
    """A folder any user may enter, and ``as_nobody(*kiosk_args)`` to run the kiosk as ``nobody``."""
    with kiosk_as_nobody(probe="cv2, device") as found:
        yield found


def installed_config(folder: Path, technicians_group: int, list_key: Path, *, central, source: str, kiosk_id: str) -> Path:
    """The config of a daemon laid out in ``folder`` as install.sh and the unit leave it: its
    folders ``lib`` (the outbox) and ``run`` (the runtime directory) 0750, their group the
    technicians' (setgid here, as the daemon in the tests runs as root); the replaced-card list
    on, verified with a copy of ``list_key`` others may read; the config readable by all."""
    from support.config import kiosk_config

    key = folder / "list.pub"
    shutil.copy(list_key, key)
    key.chmod(0o644)
    for name in ("lib", "run"):
        (folder / name).mkdir()
        os.chown(folder / name, 0, technicians_group)
        (folder / name).chmod(0o2750)
    cfg = kiosk_config(
        folder,
        central=central,
        source=source,
        pace="realtime",
        kiosk={"id": kiosk_id},
        outbox={"path": str(folder / "lib" / "outbox.db")},
        revocations={"enabled": True, "public_key_file": str(key), "interval_s": 3600},
    )
    cfg.chmod(0o644)
    return cfg
