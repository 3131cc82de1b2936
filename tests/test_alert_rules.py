"""The example alert rules (config/prometheus/kiosk-rules.yml) with Prometheus' own promtool:
they load, their unit tests pass, and those tests fail when an alert stops firing."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
RULES = REPO / "config" / "prometheus" / "kiosk-rules.yml"
RULE_TESTS = REPO / "config" / "prometheus" / "kiosk-rules.test.yml"


def promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    tool = shutil.which("promtool")
    assert tool, "promtool is missing: apt-get install prometheus (./install.sh --dev does)"
    return subprocess.run([tool, *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def alert_names(rules_text: str) -> list[str]:
    return re.findall(r"^\s*- alert: (\w+)$", rules_text, re.M)


def test_the_rules_load():
    result = promtool("check", "rules", RULES.name, cwd=RULES.parent)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alert_names(RULES.read_text()))} rules found" in result.stdout


def test_the_rules_unit_tests_pass():
    result = promtool("test", "rules", RULE_TESTS.name, cwd=RULE_TESTS.parent)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_is_tested_firing_and_silent():
    names = alert_names(RULES.read_text())
    asked = {"KioskDaemonDown", "KioskMetricsStale", "KioskFault", "KioskBacklogOld", "KioskUnderVoltage", "KioskReplacedListOld"}
    assert asked <= set(names)
    tests = RULE_TESTS.read_text()
    for name in names:
        cases = re.findall(rf"alertname: {name}\n\s*exp_alerts:(.*)", tests)
        assert "" in cases, f"{name} is never tested firing"
        assert " []" in cases, f"{name} is never tested silent"


@pytest.mark.parametrize("name", alert_names(RULES.read_text()))
def test_the_unit_tests_fail_when_an_alert_never_fires(tmp_path, name):
    """Each alert's expression replaced by one that is never true: its firing case must catch it."""
    rules = RULES.read_text()
    start = rules.index(f"- alert: {name}\n")
    expr = re.compile(r"(        expr: )(>-\n(?:          .*\n)+|.*\n)")
    found = expr.search(rules, start)
    assert found is not None
    broken = rules[: found.start()] + found.group(1) + "vector(0) == 1\n" + rules[found.end() :]
    (tmp_path / RULES.name).write_text(broken)
    shutil.copy(RULE_TESTS, tmp_path / RULE_TESTS.name)
    assert promtool("check", "rules", RULES.name, cwd=tmp_path).returncode == 0  # still valid rules
    result = promtool("test", "rules", RULE_TESTS.name, cwd=tmp_path)
    assert result.returncode != 0, f"the unit tests did not notice {name} never firing"
    assert f"alertname: {name}" in result.stdout + result.stderr
