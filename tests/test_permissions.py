"""A permission problem in any command says what to do (sudo, or the technicians' group), never a traceback.

Run as a real unprivileged user (``nobody``, in no group of the kiosk's) against files as root
leaves them: a config file mode 0600, an outbox folder mode 0700.
"""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest
from unprivileged import kiosk_as_nobody

from device import config as config_mod
from device import status
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


def test_the_technicians_group_reads_config_and_status_but_never_the_token(technicians_group):
    with kiosk_as_nobody(groups=(technicians_group,)) as (folder, run):
        cfg, state_dir = root_only_setup(folder)
        token = folder / "token"
        token.write_text("tok-" + "9" * 40 + "\n")
        token.chmod(0o640)  # root:root here, root:kiosk on a kiosk: the technicians' group is neither
        cfg.write_text(cfg.read_text() + f'[api]\nurl = "https://central.example.net"\ntoken_file = "{token}"\n')
        # As install.sh and the unit leave them: the config, /run/kiosk and the outbox folder the technicians' group's.
        runtime = folder / "run"
        status.write_status(runtime, {"pid": os.getpid(), "camera": {"source": "v4l2:/dev/video0"}})
        for path, mode in ((cfg, 0o640), (runtime, 0o750), (runtime / status.STATUS_FILE, 0o640), (state_dir, 0o750), (state_dir / "outbox.db", 0o640)):
            os.chown(path, 0, technicians_group)
            path.chmod(mode)
        shown = run("config", "show", "--config", str(cfg))
        assert shown.returncode == 0, (shown.stdout, shown.stderr)
        assert "central.example.net" in shown.stdout and "9" * 40 not in shown.stdout + shown.stderr
        state = run("status", "--config", str(cfg))
        assert "Traceback" not in state.stderr, state.stderr
        assert "NOT RUNNING" not in state.stdout and "v4l2:/dev/video0" in state.stdout, state.stdout
        # The queue: SQLite wants to write beside the outbox, which the group may not: sudo, said so.
        queue = run("queue", "list", "--config", str(cfg))
        assert "Traceback" not in queue.stderr and queue.returncode == 1, queue.stderr
        assert "sudo kiosk queue list" in queue.stderr, queue.stderr
        # The token itself stays out of reach.
        python = shown.args[0]
        peek = subprocess.run([python, "-c", f"open({str(token)!r}).read()"], capture_output=True, text=True, timeout=60,
                              user="nobody", group=pwd.getpwnam("nobody").pw_gid, extra_groups=[technicians_group])
        assert peek.returncode != 0 and "Permission denied" in peek.stderr
