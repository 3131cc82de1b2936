"""The strict skip policy: a test may skip only where tests/skips.toml allows it, with a reason.

A test that skips because a tool is missing (openssl, libfuse, chromium, a Python that the user
``nobody`` may run, ...) is a test that did not run, and a CI that lost an install step would stay
green without it. This plugin makes each skip, expected failure (xfail) or unexpected pass (xpass)
outside the allowlist a failure of that test, with the reason it skipped; and an allowlisted test
that ran fails too, since its entry is stale. ``tests/conftest.py`` turns it on for every run.

>>> allowlist = Allowlist.parse('[[allowed]]\\ntest = "tests/test_pi.py::test_gpio"\\nreason = "needs a real Raspberry Pi"\\n')
>>> allowlist.reason_for("tests/test_pi.py::test_gpio")
'needs a real Raspberry Pi'
>>> allowlist.reason_for("tests/test_tls.py::test_verified") is None
True
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest

#: The allowlist, in the repository: each entry a test id and why it may skip.
ALLOWLIST = Path(__file__).resolve().parent.parent / "skips.toml"


def shown(path: Path) -> str:
    """``path`` as a message shows it: from the working folder (the checkout's root in CI) when inside it."""
    return str(path.relative_to(Path.cwd()) if path.is_absolute() and path.is_relative_to(Path.cwd()) else path)


@dataclass(frozen=True)
class AllowedSkip:
    """One test that may skip: its id as pytest prints it, and why no install makes it run."""

    test: str
    reason: str


@dataclass(frozen=True)
class Allowlist:
    """The tests that may skip, read from a TOML file of ``[[allowed]]`` entries (``test``, ``reason``)."""

    entries: tuple[AllowedSkip, ...]
    source: str = "tests/skips.toml"

    @classmethod
    def load(cls, path: Path) -> Allowlist:
        return cls.parse(path.read_text(), source=shown(path))

    @classmethod
    def parse(cls, text: str, source: str = "tests/skips.toml") -> Allowlist:
        """The allowlist in ``text``; a usage error naming ``source`` when an entry lacks its test
        or its reason, has other keys, or is there twice."""
        try:
            document = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            raise pytest.UsageError(f"{source}: {e}") from None
        entries = []
        for number, entry in enumerate(document.pop("allowed", []), start=1):
            if not isinstance(entry, dict) or set(entry) != {"test", "reason"} or not all(str(v).strip() for v in entry.values()):
                raise pytest.UsageError(f"{source}: allowed entry {number} needs exactly a test and a reason, has {entry}")
            test, reason = str(entry["test"]).strip(), str(entry["reason"]).strip()
            if any(known.test == test for known in entries):
                raise pytest.UsageError(f"{source}: {test} is allowed twice")
            entries.append(AllowedSkip(test, reason))
        if document:
            raise pytest.UsageError(f"{source}: unknown tables {sorted(document)} (only [[allowed]] entries)")
        return cls(tuple(entries), source)

    def reason_for(self, test: str) -> str | None:
        """Why ``test`` (a pytest node id) may skip, or None when it may not."""
        return next((entry.reason for entry in self.entries if entry.test == test), None)


def why_not_run(report: pytest.TestReport | pytest.CollectReport) -> str | None:
    """What kept a test from its verdict (a skip's or an xfail's reason), or None when it ran."""
    if hasattr(report, "wasxfail"):
        return f"{'xpassed' if report.passed else 'xfailed'} ({report.wasxfail or 'no reason given'})"
    if report.skipped:
        if isinstance(report.longrepr, tuple):  # (file, line, "Skipped: reason")
            path, line, message = report.longrepr
            return f"skipped at {shown(Path(path))}:{line}: {message.removeprefix('Skipped: ')}"
        return f"skipped: {report.longrepr}"
    return None


class SkipPolicy:
    """The plugin: judges each report as pytest makes it, before anything counts or prints it."""

    def __init__(self, allowlist: Allowlist):
        self.allowlist = allowlist

    def judge(self, report: pytest.TestReport | pytest.CollectReport) -> None:
        """Turn ``report`` into a failure when it skipped outside the allowlist, or ran inside it."""
        why = why_not_run(report)
        allowed = self.allowlist.reason_for(report.nodeid)
        if why is not None and allowed is None:
            self._fail(
                report,
                f"{why}\nand {self.allowlist.source} does not allow it: install what it needs "
                f"(./install.sh --dev, as root), or if nothing can make it run here, add it there with the reason",
            )
        elif why is None and allowed is not None and report.passed and report.when == "call":
            self._fail(report, f"{self.allowlist.source} allows this test to skip ({allowed}), but it ran: remove its entry")

    @staticmethod
    def _fail(report: pytest.TestReport | pytest.CollectReport, message: str) -> None:
        report.outcome = "failed"
        report.longrepr = "skip policy: " + message
        if hasattr(report, "wasxfail"):
            del report.wasxfail  # else the reporters would still count it as an xfail or xpass

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo) -> pytest.TestReport:
        report = yield
        self.judge(report)
        return report

    @pytest.hookimpl(wrapper=True)
    def pytest_make_collect_report(self, collector: pytest.Collector) -> pytest.CollectReport:
        report = yield  # a whole module that skips (pytest.skip at module level, importorskip)
        self.judge(report)
        return report

    def pytest_report_header(self) -> str:
        return f"skip policy: only the {len(self.allowlist.entries)} tests in {self.allowlist.source} may skip"


def enforce(config: pytest.Config, allowlist: Path = ALLOWLIST) -> None:
    """Turn the policy on for this run (call it from ``pytest_configure``), with ``allowlist``."""
    config.pluginmanager.register(SkipPolicy(Allowlist.load(allowlist)), "skip-policy")
