"""The lint, format and type gate: ruff (lint and format, one line length) and mypy (strict for the
outbox, delivery, the central client and the config). Settings live in pyproject.toml, so an editor,
a newcomer's ``ruff check`` and this test agree.

Each check runs the tool on the whole tree as a subprocess; a finding fails the test with the
tool's own report, which names the file and line.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def run_tool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *args], cwd=REPO, capture_output=True, text=True, timeout=600)


def test_ruff_finds_nothing():
    result = run_tool("ruff", "check", "--no-cache", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_tree_is_formatted_as_ruff_formats_it():
    result = run_tool("ruff", "format", "--no-cache", "--check", "--diff", ".")
    assert result.returncode == 0, result.stdout[-20000:] + result.stderr


def test_mypy_strict_is_clean_where_it_is_asked():
    result = run_tool("mypy", "--no-incremental", "--cache-dir", "/dev/null")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Success" in result.stdout  # it checked the files pyproject.toml names, not none
