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


def test_every_test_docs_reliability_names_exists():
    """docs/RELIABILITY.md says which test keeps each result so: each named test must be there."""
    text = (REPO / "docs" / "RELIABILITY.md").read_text()
    named = set(re.findall(r"::(test_\w+)", text))
    defined = set()
    for path in (REPO / "tests").glob("test_*.py"):
        defined.update(re.findall(r"^def (test_\w+)\(", path.read_text(), re.M))
    assert len(named) > 40
    assert sorted(named - defined) == []
