"""The skip policy can fail a run: pytest on small test files, in a subprocess, with an allowlist of ours."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from support.skip_policy import ALLOWLIST, Allowlist

REPO = Path(__file__).resolve().parent.parent

TESTS = """
import pytest

def test_needs_a_tool():
    pytest.skip("the frobnicate command is not installed")

@pytest.fixture
def pi():
    pytest.skip("needs a real Raspberry Pi")

def test_on_a_pi(pi):
    pass

@pytest.mark.xfail(reason="decoding a torn card is not done yet")
def test_torn_card():
    assert False

def test_runs():
    pass
"""


def run_pytest(tmp_path: Path, allowed: dict[str, str], *selection: str) -> subprocess.CompletedProcess:
    """pytest on TESTS in ``tmp_path``, the policy turned on as tests/conftest.py does, with ``allowed``
    ({test id: reason}) as the allowlist."""
    (tmp_path / "test_sample.py").write_text(TESTS)
    entries = [f'[[allowed]]\ntest = "{test}"\nreason = "{reason}"\n' for test, reason in allowed.items()]
    (tmp_path / "skips.toml").write_text("\n".join(entries))
    (tmp_path / "conftest.py").write_text(
        textwrap.dedent(f"""
        import sys
        from pathlib import Path

        sys.path.insert(0, {str(REPO / "tests")!r})
        from support import skip_policy

        def pytest_configure(config):
            skip_policy.enforce(config, Path(__file__).parent / "skips.toml")
    """)
    )
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-o", "addopts=", "--rootdir", str(tmp_path), *selection]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=tmp_path)


def test_a_skip_outside_the_allowlist_fails_the_run_naming_the_test_and_its_reason(tmp_path):
    result = run_pytest(tmp_path, {}, "test_sample.py::test_needs_a_tool", "test_sample.py::test_runs")
    assert result.returncode == pytest.ExitCode.TESTS_FAILED, result.stdout + result.stderr
    assert "FAILED test_sample.py::test_needs_a_tool" in result.stdout
    message = "skip policy: skipped at test_sample.py:5: the frobnicate command is not installed\nand skips.toml does not allow it"
    assert message in result.stdout
    assert "1 failed, 1 passed" in result.stdout


def test_a_skip_in_a_fixture_fails_too(tmp_path):
    result = run_pytest(tmp_path, {}, "test_sample.py::test_on_a_pi")
    assert result.returncode == pytest.ExitCode.TESTS_FAILED, result.stdout + result.stderr
    assert "ERROR test_sample.py::test_on_a_pi" in result.stdout
    assert "skip policy: skipped at test_sample.py:13: needs a real Raspberry Pi\n"  # where the test is in result.stdout


def test_an_expected_failure_outside_the_allowlist_fails_the_run(tmp_path):
    result = run_pytest(tmp_path, {}, "test_sample.py::test_torn_card")
    assert result.returncode == pytest.ExitCode.TESTS_FAILED, result.stdout + result.stderr
    assert "FAILED test_sample.py::test_torn_card" in result.stdout
    assert "skip policy: xfailed (decoding a torn card is not done yet)\n" in result.stdout
    assert "xfailed" not in result.stdout.splitlines()[-1]  # counted as what it is now: a failure


def test_allowlisted_skips_pass(tmp_path):
    allowed = {
        "test_sample.py::test_needs_a_tool": "no frobnicate for this platform",
        "test_sample.py::test_on_a_pi": "needs a real Raspberry Pi",
        "test_sample.py::test_torn_card": "torn cards are the next issue",
    }
    result = run_pytest(tmp_path, allowed)
    assert result.returncode == pytest.ExitCode.OK, result.stdout + result.stderr
    assert "1 passed, 2 skipped, 1 xfailed" in result.stdout
    assert "skip policy: only the 3 tests in skips.toml may skip" in result.stdout  # the header says it is on


def test_an_allowlisted_test_that_runs_fails_as_a_stale_entry(tmp_path):
    result = run_pytest(tmp_path, {"test_sample.py::test_runs": "needs a real Raspberry Pi"}, "test_sample.py::test_runs")
    assert result.returncode == pytest.ExitCode.TESTS_FAILED, result.stdout + result.stderr
    assert "skips.toml allows this test to skip (needs a real Raspberry Pi), but it ran: remove its entry" in result.stdout


def test_a_module_that_skips_whole_fails_the_run(tmp_path):
    (tmp_path / "test_module.py").write_text('import pytest\npytest.importorskip("no_such_module_here")\n')
    result = run_pytest(tmp_path, {}, "test_module.py")
    assert result.returncode != pytest.ExitCode.OK, result.stdout + result.stderr
    assert "skip policy: skipped at test_module.py:2: could not import 'no_such_module_here'" in result.stdout


@pytest.mark.parametrize(
    "entry",
    [
        'test = "tests/test_a.py::test_b"',
        'reason = "needs a real Raspberry Pi"',
        'test = "tests/test_a.py::test_b"\nreason = ""',
        'test = "tests/test_a.py::test_b"\nreason = "a Pi"\nwhen = "always"',
        'test = "tests/test_a.py::test_b"\nreason = "  "',
    ],
)
def test_an_entry_without_exactly_its_test_and_reason_is_refused(entry):
    with pytest.raises(pytest.UsageError, match="allowed entry 1 needs exactly a test and a reason"):
        Allowlist.parse(f"[[allowed]]\n{entry}\n")


def test_allowed_must_be_entries():
    with pytest.raises(pytest.UsageError, match="allowed entry 1 needs exactly a test and a reason"):
        Allowlist.parse('allowed = ["tests/test_a.py::test_b"]\n')


def test_the_same_test_allowed_twice_is_refused():
    entry = '[[allowed]]\ntest = "tests/test_a.py::test_b"\nreason = "a Pi"\n'
    with pytest.raises(pytest.UsageError, match="tests/test_a.py::test_b is allowed twice"):
        Allowlist.parse(entry + entry)


def test_the_repositorys_allowlist_names_files_that_exist():
    entries = Allowlist.load(ALLOWLIST).entries
    assert entries, "tests/skips.toml is empty: then this test and its entry can go"
    assert [entry.test for entry in entries if not (REPO / entry.test.split("::")[0]).is_file()] == []
