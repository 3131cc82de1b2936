"""install.sh's pieces that need no root: sourced, it only defines its functions."""

from __future__ import annotations

import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def run_function(tmp_path, function: str, python3: str) -> subprocess.CompletedProcess:
    """Call ``function`` from install.sh with a fake ``python3`` (a shell script body) first on PATH."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "python3"
    fake.write_text("#!/bin/sh\n" + python3)
    fake.chmod(0o755)
    script = f'source "{REPO / "install.sh"}" && {function}'
    return subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=30,
                          env={"PATH": f"{bin_dir}:/usr/bin:/bin"})


def test_numpy_pin_is_the_system_numpys_version(tmp_path):
    result = run_function(tmp_path, "numpy_constraint", 'echo "some warning" >&2; echo numpy==1.24.2\n')
    assert result.returncode == 0, result.stderr
    assert result.stdout == "numpy==1.24.2\n"


def test_a_system_numpy_that_cannot_be_imported_is_an_error_with_its_reason(tmp_path):
    broken = (
        'echo "Traceback (most recent call last):" >&2\n'
        'echo "ImportError: libopenblas.so.0: cannot open shared object file: No such file or directory" >&2\n'
        "exit 1\n"
    )
    result = run_function(tmp_path, "numpy_constraint", broken)
    assert result.returncode != 0
    assert result.stdout == ""  # no pin written, and no silent skip either
    assert "system numpy" in result.stderr and "libopenblas.so.0: cannot open shared object file" in result.stderr
    assert "python3-numpy" in result.stderr  # what to do about it


def test_sourcing_install_sh_runs_nothing(tmp_path):
    result = subprocess.run(["bash", "-c", f'source "{REPO / "install.sh"}" && echo sourced'], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0 and result.stdout == "sourced\n", result.stderr
