"""The README's Quick start is a promise: two commands, and CI runs the second one."""

import re
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def quick_start_commands():
    text = (REPO / "README.md").read_text()
    section = re.search(r"^## Quick start\n(.*?)(?=^## )", text, re.S | re.M).group(1)
    block = re.search(r"```sh\n(.*?)```", section, re.S).group(1)
    return [line.strip() for line in block.splitlines() if line.strip() and not line.strip().startswith("#")]


def test_quick_start_has_two_commands_setup_and_demo_then_tests():
    setup, tests = quick_start_commands()
    assert setup.startswith("./install.sh --dev") and "kiosk demo" in setup
    assert "pytest" in tests


def test_ci_runs_the_readme_test_command():
    _, tests = quick_start_commands()
    ci = (REPO / ".ci" / "run").read_text().splitlines()
    assert tests in [line.strip() for line in ci]
    assert "./install.sh --dev" in ci
