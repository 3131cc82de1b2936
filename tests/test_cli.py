"""Every `kiosk` command has help and a mention in the README (sqlite-utils' habit)."""

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
def test_every_command_is_in_the_readme(words):
    assert f"kiosk {' '.join(words)}" in (REPO / "README.md").read_text()


def test_version():
    run = subprocess.run([sys.executable, "-m", "device", "--version"], capture_output=True, text=True)
    assert run.returncode == 0 and run.stdout.startswith("kiosk ")
