"""A permission problem in any command says what to do (sudo, or the technicians' group), never a traceback.

Run as a real unprivileged user (``nobody``, in no group of the kiosk's) against files as root
leaves them: a config file mode 0600, an outbox folder mode 0700.
"""

from __future__ import annotations

import os
import pwd
import subprocess
from pathlib import Path

import pytest
from support.status import daemon_status
from support.unprivileged import kiosk_as_nobody

from device import config as config_mod
from device import status
from device.status import TECHNICIANS_GROUP
from device.status.report import CameraStatus

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


def test_the_technicians_group_reads_config_and_status_but_never_the_token(technicians_group):
    with kiosk_as_nobody(groups=(technicians_group,)) as (folder, run):
        cfg, state_dir = root_only_setup(folder)
        token = folder / "token"
        token.write_text("tok-" + "9" * 40 + "\n")
        token.chmod(0o640)  # root:root here, root:kiosk on a kiosk: the technicians' group is neither
        cfg.write_text(cfg.read_text() + f'[api]\nurl = "https://central.example.net"\ntoken_file = "{token}"\n')
        # As install.sh and the unit leave them: the config, /run/kiosk and the outbox folder the technicians' group's.
        runtime = folder / "run"
        status.write_status(runtime, daemon_status(camera=CameraStatus("v4l2:/dev/video0")))
        for path, mode in (
            (cfg, 0o640),
            (runtime, 0o750),
            (runtime / status.STATUS_FILE, 0o640),
            (state_dir, 0o750),
            (state_dir / "outbox.db", 0o640),
        ):
            os.chown(path, 0, technicians_group)
            path.chmod(mode)
        shown = run("config", "show", "--config", str(cfg))
        assert shown.returncode == 0, (shown.stdout, shown.stderr)
        assert "central.example.net" in shown.stdout and "9" * 40 not in shown.stdout + shown.stderr
        state = run("status", "--config", str(cfg))
        assert "Traceback" not in state.stderr, state.stderr
        assert "NOT RUNNING" not in state.stdout and "v4l2:/dev/video0" in state.stdout, state.stdout
        # The token itself stays out of reach.
        python = shown.args[0]
        peek = subprocess.run(
            [python, "-c", f"open({str(token)!r}).read()"],
            capture_output=True,
            text=True,
            timeout=60,
            user="nobody",
            group=pwd.getpwnam("nobody").pw_gid,
            extra_groups=[technicians_group],
        )
        assert peek.returncode != 0 and "Permission denied" in peek.stderr


def _outbox_as_the_daemon_leaves_it(state_dir: Path, gid: int, *, keep_open: bool):
    """A real outbox with two identifications, its files root:GROUP 0640 in a root:GROUP 0750
    folder, as the unit leaves them; with ``keep_open`` still open (its -wal and -shm there, as
    while the daemon runs): the open outbox, else None."""
    from device.card import Card
    from device.outbox import Outbox

    box = Outbox(state_dir / "outbox.db", "kiosk-perm", "site")
    for n in (1111, 2222):
        box.commit(Card("v1", f"001234{n}", 1), symbology="Code128", decoder="test")
    if not keep_open:
        box.close()
        box = None
    os.chown(state_dir, 0, gid)
    state_dir.chmod(0o750)
    for p in state_dir.iterdir():
        os.chown(p, 0, gid)
        p.chmod(0o640)
    return box


@pytest.mark.parametrize("daemon_running", [False, True], ids=["outbox-closed", "outbox-open"])
def test_the_technicians_group_reads_the_queue_and_is_told_sudo_to_change_it(technicians_group, daemon_running):
    with kiosk_as_nobody(groups=(technicians_group,)) as (folder, run):
        cfg, state_dir = root_only_setup(folder)
        (state_dir / "outbox.db").unlink()
        cfg.write_text(cfg.read_text().replace("[kiosk]\n", '[kiosk]\nid = "kiosk-perm"\n'))
        box = _outbox_as_the_daemon_leaves_it(state_dir, technicians_group, keep_open=daemon_running)
        try:
            if daemon_running:
                assert (state_dir / "outbox.db-wal").exists() and (state_dir / "outbox.db-shm").exists()
            listed = run("queue", "list", "--config", str(cfg))
            assert listed.returncode == 0 and "Traceback" not in listed.stderr, (listed.stdout, listed.stderr)
            assert "******1111" in listed.stdout and "******2222" in listed.stdout, listed.stdout
            shown = run("queue", "show", "2", "--config", str(cfg))
            assert shown.returncode == 0 and "******2222" in shown.stdout, (shown.stdout, shown.stderr)
            state = run("status", "--config", str(cfg))
            assert "Traceback" not in state.stderr and "2 pending" in state.stdout.replace("  ", " "), (state.stdout, state.stderr)
            # Changing it is root's or the daemon's: sudo, said before anything is tried.
            for command in (("queue", "retry", "1"), ("queue", "resend", "1"), ("queue", "resend", "--missing"), ("queue", "ack")):
                changed = run(*command, "--config", str(cfg))
                assert changed.returncode == 1 and "Traceback" not in changed.stderr, changed.stderr
                assert f"sudo kiosk {' '.join(command[:2])}" in changed.stderr, changed.stderr
            # Reading left nothing of nobody's behind (no -shm made, no mode changed).
            assert all(p.stat().st_uid == 0 and p.stat().st_mode & 0o777 == 0o640 for p in state_dir.iterdir())
        finally:
            if box is not None:
                box.close()


@pytest.fixture
def daemon_user(technicians_group):
    """A user made as install.sh makes ``kiosk``: its own primary group (the token's group), and
    the technicians' group as a supplementary one. Yields (name, uid, its group's gid); removed after."""
    import shutil
    import uuid

    if shutil.which("useradd") is None:
        pytest.skip("needs useradd to make a user")
    import grp

    name = f"kd-{uuid.uuid4().hex[:8]}"
    tech = grp.getgrgid(technicians_group).gr_name
    subprocess.run(["useradd", "--system", "--user-group", "--no-create-home", "--groups", tech, name], check=True, timeout=30)
    try:
        user = pwd.getpwnam(name)
        yield name, user.pw_uid, user.pw_gid
    finally:
        subprocess.run(["userdel", name], check=False, capture_output=True, timeout=30)
        subprocess.run(["groupdel", name], check=False, capture_output=True, timeout=30)


def test_root_commands_that_become_the_outbox_owner_keep_its_groups_and_read_the_token(
    daemon_user, technicians_group, signing_central, list_keys
):
    """Issue 20, finding 7, on the installed layout: the outbox owned by the daemon's user and the
    technicians' group, the token root:<its group> 0640. `sudo kiosk diag api` and `sudo kiosk
    revocations sync` switch to the outbox's owner, but without its supplementary groups: the
    token could no longer be read, `diag api` made "did everything arrive?" a note and exited 0,
    and the documented manual sync always failed. Now both keep the owner's groups (initgroups)."""
    import shutil
    import tempfile

    from support.central import CENTRAL_TOKEN
    from support.config import write_config
    from support.kiosk import run_kiosk

    name, uid, token_gid = daemon_user
    base = Path(tempfile.mkdtemp(prefix="kiosk-owner-"))  # a folder the daemon's user may enter
    try:
        base.chmod(0o755)
        state = base / "state"
        state.mkdir(mode=0o750)
        os.chown(state, uid, technicians_group)
        token = base / "token"
        token.write_text(CENTRAL_TOKEN + "\n")
        os.chown(token, 0, token_gid)
        token.chmod(0o640)
        public_key = base / "list.pub"
        shutil.copy(list_keys[1], public_key)
        public_key.chmod(0o644)
        cfg = write_config(
            base / "kiosk.toml",
            kiosk={"id": "kiosk-owner-1", "runtime_dir": str(base / "run")},
            outbox={"path": str(state / "outbox.db")},
            api={"url": signing_central.url, "token_file": str(token)},
            revocations={"enabled": True, "public_key_file": str(public_key)},
        )
        from device.outbox import Outbox

        with Outbox(state / "outbox.db", "kiosk-owner-1"):
            pass
        for made in state.iterdir():
            os.chown(made, uid, technicians_group)

        api = run_kiosk("diag", "api", "--config", str(cfg))
        assert api.returncode == 0, api.stdout + api.stderr
        assert "ok: the central holds seq" in api.stdout and "note:" not in api.stdout, api.stdout
        sync = run_kiosk("revocations", "sync", "--config", str(cfg))
        assert sync.returncode == 0 and "PROBLEM" not in sync.stdout, sync.stdout + sync.stderr
        copy = state / "revocations.db"
        assert copy.stat().st_uid == uid  # made as the owner, so the daemon may write it
    finally:
        shutil.rmtree(base, ignore_errors=True)
