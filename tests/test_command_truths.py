"""Commands tell the truth (issue 12): each promise in docs/COMMANDS.md and docs/TECHNICIANS.md, run as a user runs it."""

from __future__ import annotations

import os

import cv2
import numpy as np
import pytest
from support.config import kiosk_config, write_config
from support.kiosk import run_kiosk
from support.status import daemon_status

from device.card import Card
from device.outbox import Outbox
from device.redact import mask_contract
from device.status import write_status
from device.status.report import LastIdentification, ScanStatus

CONTRACT = "0012345678"


def _running_daemon_status(runtime: os.PathLike, seq: int) -> None:
    """A fresh status file as the daemon writes it, its pid this (living) test process."""
    last = LastIdentification(contract=mask_contract(CONTRACT), issue=1, seq=seq, scanned_at="now")
    write_status(runtime, daemon_status(scan=ScanStatus(identifications=1, last_identification=last)))


def _kiosk_with_one_identification(tmp_path):
    outbox = tmp_path / "outbox.db"
    with Outbox(outbox, kiosk_id="truths-1", site="Riga") as box:
        seq = box.commit(Card("v1", CONTRACT, 1), symbology="Code128", decoder="zxing-cpp").seq
    _running_daemon_status(tmp_path / "run", seq)
    return kiosk_config(tmp_path, kiosk={"id": "truths-1"})


def test_status_unmask_shows_the_whole_contract_and_masks_by_default(tmp_path):
    cfg = _kiosk_with_one_identification(tmp_path)
    masked = run_kiosk("status", "--config", str(cfg))
    assert "last card   contract " in masked.stdout, masked.stdout + masked.stderr
    assert CONTRACT not in masked.stdout and CONTRACT[-4:] in masked.stdout
    whole = run_kiosk("status", "--unmask", "--config", str(cfg))
    assert "unrecognized arguments" not in whole.stderr and "Traceback" not in whole.stderr, whole.stderr
    assert f"last card   contract {CONTRACT} issue 1" in whole.stdout, whole.stdout


def _fake_sysfs(tmp_path, millidegrees: str | None):
    root = tmp_path / "fake"
    (root / "sys/class").mkdir(parents=True)
    if millidegrees is not None:
        zone = root / "sys/class/thermal/thermal_zone0"
        zone.mkdir(parents=True)
        (zone / "temp").write_text(millidegrees + "\n")
    return {**os.environ, "KIOSK_SYSFS_PREFIX": str(root)}


def test_status_says_no_sensor_where_there_is_no_thermal_zone(tmp_path):
    cfg = kiosk_config(tmp_path)
    without = run_kiosk("status", "--config", str(cfg), env=_fake_sysfs(tmp_path / "a", None))
    assert "cpu temp    no sensor" in without.stdout, without.stdout + without.stderr
    with_zone = run_kiosk("status", "--config", str(cfg), env=_fake_sysfs(tmp_path / "b", "48312"))
    assert "cpu temp    48.3 C" in with_zone.stdout, with_zone.stdout + with_zone.stderr


def test_a_missing_config_file_names_the_installed_one_and_the_example_command(tmp_path):
    run = run_kiosk("config", "check", "--config", str(tmp_path / "nowhere.toml"))
    assert run.returncode == 78, run.stderr
    assert "no such config file" in run.stderr and "/etc/kiosk/kiosk.toml" in run.stderr, run.stderr
    assert "kiosk config reference --example" in run.stderr and "config/kiosk.toml" not in run.stderr
    example = run_kiosk("config", "reference", "--example")  # the command the message names works
    assert example.returncode == 0 and "[kiosk]" in example.stdout


def test_run_names_the_outbox_folder_its_owner_mode_and_the_user_when_it_cannot_write(unprivileged):
    """The daemon as an unprivileged user (``nobody``) and an outbox folder root keeps to itself."""
    import pwd

    folder, as_nobody = unprivileged
    outbox = folder / "lib" / "outbox.db"
    outbox.parent.mkdir(mode=0o755)  # root's: others may enter, not write
    cfg = write_config(
        folder / "kiosk.toml", kiosk={"runtime_dir": str(folder / "run")}, outbox={"path": str(outbox)},
        camera={"source": f"file:{folder / 'none.png'}"},
        api={"url": "http://127.0.0.1:9", "token_file": str(folder / "token")},  # a token in a file others read is refused
    )  # fmt: skip
    (folder / "token").write_text("never-sent\n")
    cfg.chmod(0o644)
    (folder / "run").mkdir(mode=0o777)
    cv2.imwrite(str(folder / "none.png"), np.full((240, 320, 3), 255, np.uint8))  # a frame without a card
    (folder / "none.png").chmod(0o644)
    nobody = pwd.getpwnam("nobody")
    for existing in (False, True):  # a new outbox, and one the kiosk owns in a folder it cannot write
        if existing:
            Outbox(outbox, kiosk_id="truths-1").close()
            for p in outbox.parent.iterdir():
                os.chown(p, nobody.pw_uid, nobody.pw_gid)
        # It runs degraded (issue 20): the outbox fault names the cause, the file played, then the drain gives up.
        run = as_nobody("run", "--config", str(cfg), "--drain-timeout", "5")
        assert run.returncode == 1, (run.stdout, run.stderr)
        assert "Traceback" not in run.stderr and "readonly database" not in run.stderr, run.stderr
        assert (
            f"outbox.path {outbox}: the folder {outbox.parent} is owned by root:root mode 0755 and the kiosk runs as nobody "
            f"(uid {nobody.pw_uid}): it cannot write there; sudo chown nobody: {outbox.parent}"
        ) in run.stderr, run.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to make files another user may not write")
def test_why_the_daemons_user_cannot_write_is_told_to_whoever_asks(tmp_path):
    """What `kiosk status` says of a stopped daemon's outbox, judged for the daemon's user (here
    ``nobody``) by the files' owners and modes, not for whoever runs the command (root)."""
    import pwd

    from device.outbox.access import cannot_write

    nobody = pwd.getpwnam("nobody")
    folder = tmp_path / "lib"
    folder.mkdir()
    os.chown(folder, nobody.pw_uid, nobody.pw_gid)
    outbox = folder / "outbox.db"
    Outbox(outbox, kiosk_id="truths-2").close()
    os.chown(outbox, nobody.pw_uid, nobody.pw_gid)
    assert cannot_write(outbox, "nobody") is None
    os.chown(outbox, 0, 0)  # a root-owned outbox file (sudo sqlite3 ... left it so)
    assert cannot_write(outbox, "nobody") == (
        f"outbox.path {outbox}: the file {outbox} is owned by root:root mode 0640 and the kiosk runs as nobody "
        f"(uid {nobody.pw_uid}): it cannot write there; sudo chown nobody: {outbox}"
    )
    assert cannot_write(outbox) is None  # root may
    assert cannot_write(outbox, "no-such-user-here") is None


def _every_parser(parser=None, words=("kiosk",)):
    """(words, parser) of the whole command line: ``kiosk``, each group and each command."""
    import argparse

    from device.cli import build_parser

    parser = parser or build_parser()
    yield words, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _every_parser(sub, words + (name,))


def test_every_commands_help_has_an_example_line_and_no_markup():
    import re

    helps = {" ".join(words): parser.format_help() for words, parser in _every_parser()}
    assert {"kiosk demo", "kiosk testcard", "kiosk bench loop", "kiosk queue", "kiosk status"} <= set(helps)
    for words, text in helps.items():
        assert "``" not in text and not re.search(r":(mod|class|func|meth|data):`", text), f"{words} --help shows markup:\n{text}"
        if words == "kiosk":
            continue
        examples = [line for line in text.splitlines() if re.match(r"Example: (sudo )?kiosk ", line)]
        assert examples, f"{words} --help has no line 'Example: kiosk ...':\n{text}"
        assert f"kiosk {words.removeprefix('kiosk ')}" in examples[0], f"{words}: the example is of another command: {examples[0]}"


def test_demo_and_testcard_help_as_a_user_sees_it_has_no_markup():
    for command in ("demo", "testcard"):
        run = run_kiosk(command, "--help")
        assert run.returncode == 0 and "``" not in run.stdout, run.stdout
        assert f"\nExample: kiosk {command} " in run.stdout, run.stdout
