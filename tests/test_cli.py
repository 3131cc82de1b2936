"""Every `kiosk` command has help and a mention in docs/COMMANDS.md (sqlite-utils' habit)."""

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from device.cli import build_parser

REPO = Path(__file__).resolve().parent.parent


def all_commands(parser=None, prefix=()):
    """Every leaf command as a tuple of words, e.g. ("bench", "decode")."""
    parser = parser or build_parser()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from all_commands(sub, prefix + (name,))
            return
    yield prefix


COMMANDS = sorted(all_commands())


def test_there_are_commands():
    assert ("scan",) in COMMANDS and ("config", "check") in COMMANDS


@pytest.mark.parametrize("words", COMMANDS, ids=" ".join)
def test_every_command_has_help(words):
    run = subprocess.run([sys.executable, "-m", "device", *words, "--help"], capture_output=True, text=True, cwd=REPO)
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("usage: kiosk " + " ".join(words))
    # A description beyond the usage line: something that says what the command is for.
    body = run.stdout.split("\n\n", 1)[1]
    assert len(body.splitlines()[0].strip()) > 20


@pytest.mark.parametrize("words", COMMANDS, ids=" ".join)
def test_every_command_is_in_the_commands_page(words):
    assert f"kiosk {' '.join(words)}" in (REPO / "docs" / "COMMANDS.md").read_text()


def test_version():
    run = subprocess.run([sys.executable, "-m", "device", "--version"], capture_output=True, text=True)
    assert run.returncode == 0 and run.stdout.startswith("kiosk ")


@pytest.mark.parametrize("words", [("scan", "--json"), ("queue", "list")], ids=" ".join)
def test_output_to_a_reader_that_went_away_ends_quietly(tmp_path, words):
    """`kiosk scan ... | head` and `kiosk queue list | head`: no traceback, ended by SIGPIPE as a Unix tool."""
    import signal

    import cv2
    from support.cards import card_photo, contracts
    from support.config import write_config

    from device.card import Card
    from device.outbox import Outbox

    box = Outbox(tmp_path / "outbox.db", kiosk_id="kiosk-pipe", site="Riga")
    for contract in contracts(50):
        box.commit(Card("v1", contract, 1), symbology="Code128", decoder="zxing-cpp")
    box.close()
    cfg = write_config(tmp_path / "kiosk.toml", outbox={"path": str(tmp_path / "outbox.db")})
    images = [str(tmp_path / f"card{i}.png") for i in range(3)]
    for path, contract in zip(images, contracts(3), strict=True):
        cv2.imwrite(path, card_photo(contract))
    args = [*words, "--config", str(cfg), *(images if words[0] == "scan" else [])]
    proc = subprocess.Popen([sys.executable, "-m", "device", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO)
    proc.stdout.close()  # the reader is gone before the command writes its first line
    stderr = proc.communicate(timeout=120)[1].decode()
    assert "Traceback" not in stderr and "BrokenPipe" not in stderr, stderr
    assert proc.returncode == -signal.SIGPIPE
