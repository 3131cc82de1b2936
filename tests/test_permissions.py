"""A permission problem in any command says what to do (sudo, or the technicians' group), never a traceback.

Run as a real unprivileged user (``nobody``, in no group of the kiosk's) against files as root
leaves them: a config file mode 0600, an outbox folder mode 0700.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from unprivileged import kiosk_as_nobody

from device import config as config_mod
from device.status import TECHNICIANS_GROUP

ADVICE = f"sudo usermod -aG {TECHNICIANS_GROUP} $USER"


@pytest.fixture
def as_nobody():
    with kiosk_as_nobody() as found:
        yield found


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
