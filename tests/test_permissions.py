"""A permission problem in any command says what to do (sudo, or the technicians' group), never a traceback.

Run as a real unprivileged user (``nobody``, in no group of the kiosk's) against files as root
leaves them: a config file mode 0600, an outbox folder mode 0700.
"""

from __future__ import annotations

import os
import pwd
import shutil
import site
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from device import config as config_mod
from device.status import TECHNICIANS_GROUP

REPO = Path(__file__).resolve().parent.parent
ADVICE = f"sudo usermod -aG {TECHNICIANS_GROUP} $USER"


@pytest.fixture
def as_nobody():
    """``run(*kiosk_args)``: the kiosk as the user ``nobody``, through a Python that user may run
    with this test's packages; and a folder any user may enter."""
    if os.geteuid() != 0:
        pytest.skip("needs root to run a command as another user")
    try:
        nobody = pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("no user nobody on this machine")
    folder = Path(tempfile.mkdtemp(prefix="kiosk-permissions-"))
    folder.chmod(0o755)
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(folder),
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONPATH": os.pathsep.join([*site.getsitepackages(), str(REPO)]),
    }

    def run(command):
        return subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=folder, env=env,
                              user=nobody.pw_uid, group=nobody.pw_gid, extra_groups=[])

    version = "%d.%d" % sys.version_info[:2]
    python = None
    for candidate in dict.fromkeys([os.path.realpath(sys.executable), shutil.which("python3") or "", "/usr/bin/python3"]):
        try:
            probe = run([candidate, "-c", "import sys, device; print('%d.%d' % sys.version_info[:2])"])
        except OSError:  # not that user's to run (a pyenv under /root)
            continue
        if probe.returncode == 0 and probe.stdout.strip() == version:
            python = candidate
            break
    if python is None:
        shutil.rmtree(folder, ignore_errors=True)
        pytest.skip(f"no Python {version} that the user nobody may run")
    yield folder, lambda *args: run([python, "-m", "device", *args])
    shutil.rmtree(folder, ignore_errors=True)


def root_only_setup(folder: Path) -> tuple[Path, Path]:
    """A config (mode 0644, so the outbox is what fails) naming an outbox in a root-only folder."""
    state = folder / "state"
    state.mkdir(mode=0o700)
    (state / "outbox.db").write_bytes(b"")
    runtime = folder / "run"
    runtime.mkdir(mode=0o755)
    cfg = folder / "kiosk.toml"
    cfg.write_text(f'[kiosk]\nruntime_dir = "{runtime}"\n[outbox]\npath = "{state / "outbox.db"}"\n')
    cfg.chmod(0o644)
    return cfg, state


def assert_advice(run: subprocess.CompletedProcess, code: int, named: str) -> None:
    assert "Traceback" not in run.stderr, run.stderr
    assert run.returncode == code, (run.stdout, run.stderr)
    assert f"no permission for {named}" in run.stderr, run.stderr
    assert "sudo kiosk" in run.stderr and ADVICE in run.stderr, run.stderr


@pytest.mark.parametrize("command", [["status"], ["queue", "list"], ["config", "show"]])
def test_a_config_file_only_root_may_read_says_sudo_or_the_group(as_nobody, command):
    folder, run = as_nobody
    cfg, _ = root_only_setup(folder)
    cfg.chmod(0o600)
    result = run(*command, "--config", str(cfg))
    assert_advice(result, config_mod.EXIT_CONFIG, str(cfg))
    assert f"config error: {cfg}: cannot read the config file: permission denied" in result.stderr  # the file named, as before
    assert f"sudo kiosk {' '.join(command)}" in result.stderr


@pytest.mark.parametrize("command", [["status"], ["queue", "list"]])
def test_an_outbox_folder_only_root_may_enter_says_sudo_or_the_group(as_nobody, command):
    folder, run = as_nobody
    cfg, state = root_only_setup(folder)
    result = run(*command, "--config", str(cfg))
    assert_advice(result, 1, str(state / "outbox.db"))
