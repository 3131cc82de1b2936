"""The Ansible role without kiosks: its filters on statuses made by the kiosk's own code, its paths
equal to install.sh's, its playbooks lint-clean at ansible-lint's production profile, and the
example inventory's vault opening with the documented password. tests/test_fleet.py runs the
playbooks against booted kiosks.
"""

from __future__ import annotations

import dataclasses
import doctest
import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from support.kiosk import REPO
from support.status import daemon_status, delivery_health, outbox_health

from device.health.delivery import DeliveryState
from device.health.outputs import OutputHealth
from device.status.report import STATUS_VERSION, ReplacedListStatus, ScanStatus, StatusReport

ROLE = REPO / "ansible" / "roles" / "kiosk"
BIN = Path(sys.executable).parent
EXAMPLE_VAULT_PASSWORD = "example-vault-password"  # docs/ANSIBLE.md says it


def load_filters():
    spec = importlib.util.spec_from_file_location("kiosk_fleet", ROLE / "filter_plugins" / "kiosk_fleet.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


fleet = load_filters()


def report_text(daemon=None, running=True, **changes) -> str:
    """``kiosk status --json`` as the kiosk writes it (StatusReport.to_json), of ``daemon``."""
    daemon = daemon_status(version="0.1.0+gabc") if daemon is None and running else daemon
    report = StatusReport(
        running=running, why="kiosk.service is active" if running else "kiosk.service is inactive", kiosk_id="kiosk-riga-1",
        daemon=daemon, queue=daemon.queue if daemon else None, disk_free_bytes=10**9, clock_synced=True,
        cpu_temperature_c=None, warnings=[], stopped_because=None if running else ["kiosk.service is inactive (dead)"],
        revocations=None,
    )  # fmt: skip
    return json.dumps(dataclasses.replace(report, **changes).to_json())


def with_frames(frames: int, **changes) -> str:
    return report_text(daemon_status(version="0.1.0+gabc", scan=ScanStatus(frames=frames), **changes))


def test_the_filters_doctests_pass():
    assert doctest.testmod(fleet).failed == 0


def test_the_filters_read_the_status_version_the_kiosk_writes():
    assert fleet.STATUS_VERSION == STATUS_VERSION


def test_a_healthy_daemon_of_the_version_passes_and_frames_must_keep_coming():
    first = with_frames(10)
    assert fleet.gate_problems(first, "0.1.0+gabc") == []
    assert fleet.gate_problems(with_frames(14), "0.1.0+gabc", first) == []
    assert fleet.gate_problems(with_frames(10), "0.1.0+gabc", first) == ["the camera delivers no frames (10 read, 10 before)"]


def test_the_gate_names_what_keeps_a_kiosk_from_its_job():
    version = "0.1.0+gabc"
    assert fleet.gate_problems(report_text(running=False), version) == [
        "the daemon does not run: kiosk.service is inactive",
        "kiosk.service is inactive (dead)",
    ]
    assert fleet.gate_problems(with_frames(1), "0.1.0+gdef") == ["the daemon runs version 0.1.0+gabc, not 0.1.0+gdef"]
    assert fleet.gate_problems(with_frames(1, faults={"camera": "no frames for 10 s"}), version) == ["fault camera: no frames for 10 s"]
    retrying = delivery_health(state=DeliveryState.RETRYING, last_error="HTTP 404 at /v1/identifications")
    assert fleet.gate_problems(with_frames(1, delivery=retrying), version) == ["delivery is retrying: HTTP 404 at /v1/identifications"]
    assert "2 identifications are dead" in fleet.gate_problems(with_frames(1, queue=outbox_health(dead=2)), version)[0]
    full = with_frames(1, queue=outbox_health(last_commit_error="disk full"))
    assert "cannot be written: disk full" in fleet.gate_problems(full, version)[0]
    # Pending and nothing delivered between two reads: not draining. Pending and delivering: fine.
    earlier = with_frames(1, queue=outbox_health(pending=3))
    stuck = with_frames(5, queue=outbox_health(pending=4))
    assert fleet.gate_problems(stuck, version, earlier) == ["the outbox does not drain: 4 pending, none delivered since the earlier read"]
    draining = with_frames(5, queue=outbox_health(pending=4), delivery=delivery_health(delivered_total=2))
    assert fleet.gate_problems(draining, version, earlier) == []
    restarted = report_text(daemon_status(version=version, pid=1, scan=ScanStatus(frames=9)))
    assert fleet.gate_problems(restarted, version, earlier)[0].startswith("the daemon restarted between two reads")
    assert fleet.gate_problems("Failed to start transient service", version)[0].startswith("kiosk status --json printed no JSON")


def test_the_list_and_the_pos_are_checked_only_where_enabled():
    version = "0.1.0+gabc"
    plain = with_frames(1)
    assert fleet.gate_problems(plain, version, revocations=True) == ["the replaced-card list is off in the daemon (revocations.enabled)"]
    assert fleet.gate_problems(plain, version, pos=True) == ["the POS hand-off is not running (pos.output)"]
    replaced = ReplacedListStatus(
        version=None, count=None, issued_at=None, key_id=None, synced_at=None, attempt_at="2026-12-07T10:00:00Z",
        attempt_error="signature refused", path="/var/lib/kiosk/replaced.db", file_bytes=0, age_s=None, max_age_s=86400.0,
        interval_s=300.0, fault=None,
    )  # fmt: skip
    unverified = with_frames(1, revocations=replaced)
    assert fleet.gate_problems(unverified, version, revocations=True) == ["no verified replaced-card list yet: signature refused"]
    verified = with_frames(1, revocations=dataclasses.replace(replaced, version=7, attempt_error=None, age_s=60.0))
    assert fleet.gate_problems(verified, version, revocations=True) == []
    with_pos = with_frames(1, outputs={fleet.POS_OUTPUT: OutputHealth(queued=0, dropped={}, failures=0)})
    assert fleet.gate_problems(with_pos, version, pos=True) == []


def test_the_pos_output_is_named_as_the_daemon_names_it():
    from device.outputs.pos.output import PosOutput

    assert PosOutput.__name__ == fleet.POS_OUTPUT  # OutputRunner names an output by its class


def test_batches_never_hold_every_kiosk_of_a_site():
    hosts = [f"{site}-{n}" for site, count in (("riga", 3), ("ventspils", 2), ("liepaja", 1)) for n in range(count)]
    sites = [host.rsplit("-", 1)[0] for host in hosts]
    for size in (1, 2, 3, 10):
        planned = fleet.batches(hosts, sites, size)
        assert sorted(host for batch in planned for host in batch) == sorted(hosts)
        for batch in planned:
            batch_sites = [host.rsplit("-", 1)[0] for host in batch]
            assert len(batch_sites) == len(set(batch_sites)) <= size
    assert fleet.batches(hosts, sites, 10) == [["riga-0", "ventspils-0", "liepaja-0"], ["riga-1", "ventspils-1"], ["riga-2"]]
    with pytest.raises(ValueError, match="kiosk_batch_size"):
        fleet.batches(hosts, sites, 0)


def test_the_fleet_table_shows_each_kiosk_needing_someone_first():
    healthy = with_frames(1)
    stopped = report_text(running=False)
    reads = [{"stdout": healthy}, {"stdout": stopped}, {"msg": "timeout"}]
    table = fleet.fleet_table(["k1", "k2", "k3"], ["riga", "riga", "ventspils"], reads)
    header, *rows = table.splitlines()
    assert header.split()[:5] == ["kiosk", "site", "version", "running", "faults"]
    assert [row.split()[0] for row in rows] == ["k3", "kiosk-riga-1", "kiosk-riga-1"]  # unreachable, stopped, healthy
    assert rows[0].split()[3:5] == ["?", "unreachable:"]
    assert rows[1].split()[2:4] == ["-", "NO"]
    assert rows[2].split()[2:6] == ["0.1.0+gabc", "yes", "-", "0"]


def readonly_values(script: str) -> dict[str, str]:
    """install.sh's ``readonly NAME=value`` lines, with ``$OTHER`` expanded."""
    values: dict[str, str] = {}
    for name, value in re.findall(r"^readonly (\w+)=(\S+)$", script, re.M):
        values[name] = re.sub(r"\$(\w+)|\$\{(\w+)\}", lambda m: values[m.group(1) or m.group(2)], value.strip('"'))
    return values


def test_the_roles_paths_are_install_shs():
    ours = yaml.safe_load((ROLE / "vars" / "main.yml").read_text())
    theirs = readonly_values((REPO / "install.sh").read_text())
    assert {
        "kiosk_venv": theirs["VENV"],
        "kiosk_releases_dir": theirs["RELEASES"],
        "kiosk_release_marker": theirs["RELEASE_MARKER"],
        "kiosk_config_file": theirs["CONFIG"],
        "kiosk_token_file": theirs["TOKEN"],
        "kiosk_user": theirs["USER_NAME"],
        "kiosk_tech_group": theirs["TECH_GROUP"],
    } == {key: ours[key] for key in ("kiosk_venv", "kiosk_releases_dir", "kiosk_release_marker", "kiosk_config_file",
                                     "kiosk_token_file", "kiosk_user", "kiosk_tech_group")}  # fmt: skip
    unit = (REPO / "systemd" / "kiosk.service").read_text()
    assert f"ExecStart={theirs['VENV']}/bin/kiosk run --config {theirs['CONFIG']}" in unit  # the switch is what the unit runs


def test_ansible_lint_is_clean_at_the_production_profile():
    result = subprocess.run(
        [str(BIN / "ansible-lint"), "--profile", "production", "--nocolor"],
        cwd=REPO / "ansible", capture_output=True, text=True, timeout=600,
        env={"PATH": f"{BIN}:/usr/bin:/bin", "HOME": str(Path.home()), "ANSIBLE_CONFIG": str(REPO / "ansible" / "ansible.cfg")},
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-5000:]
    assert "Profile 'production' was required, and it passed" in result.stdout + result.stderr


def test_the_example_vault_opens_with_the_documented_password(tmp_path):
    password = tmp_path / "vault-password"
    password.write_text(EXAMPLE_VAULT_PASSWORD + "\n")
    vault = REPO / "ansible" / "inventory" / "example" / "group_vars" / "all" / "vault.yml"
    assert vault.read_text().startswith("$ANSIBLE_VAULT;1.1;AES256")  # encrypted in git
    result = subprocess.run(
        [str(BIN / "ansible-vault"), "view", "--vault-password-file", str(password), str(vault)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert "vault_kiosk_api_token" in yaml.safe_load(result.stdout)
    assert (
        "EXAMPLE_VAULT_PASSWORD" not in (REPO / "docs" / "ANSIBLE.md").read_text()
        and EXAMPLE_VAULT_PASSWORD in (REPO / "docs" / "ANSIBLE.md").read_text()
    )
