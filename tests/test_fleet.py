"""The fleet's rollout for real: ``ansible/site.yml`` and ``ansible/fleet-status.yml`` against three
kiosks, each a Debian 12 root booted with ``systemd-nspawn -b`` and reached over SSH.

One bookworm root is debootstrapped (systemd, sshd, python3) and copied three times; each copy gets
host keys of its own and sshd on its own loopback port, and boots on the host's network, where a
reference central (``kiosk central``) listens for the kiosks' deliveries. Each kiosk's camera is a
file: a long video of an empty counter, played in real time, so frames keep coming through the
health gate. The inventory has two sites, riga (kiosk-riga-1, kiosk-riga-2) and ventspils
(kiosk-ventspils-1), so the batches are [kiosk-riga-1, kiosk-ventspils-1] then [kiosk-riga-2]; the
token comes from ansible-vault.

The refs are commits of a temporary repository made of this checkout's files as they are now (a
developer's uncommitted changes included): A, then B (a later commit), then C, whose file camera
stalls after its first frame: its daemon starts and says READY=1, but no frames come, so the gate
must fail it. The tests are one scenario, in file order: roll out A; run again, nothing changes;
upgrade to B; C is rolled back on the first batch's kiosks and never reaches the second batch; the
fleet table. Each run of ansible-playbook is timed and the times are printed in the test log
(the terminal summary of a ``.ci/run``).

Needs root (debootstrap, nspawn) and the network (Debian's mirror, PyPI for the controller's
wheelhouse). About seven minutes on a 2-core machine (6 min 51 s measured, most of it pip installing
each release's venv and the broken ref's gate deadline); the containers are powered off and the
roots removed, also when a test fails.

Example::

    sudo .venv/bin/python -m pytest tests/test_fleet.py -q
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml
from support.booted_root import BootedRoot
from support.debian_root import checkout_files, debootstrap, ensure_tool, remove_root
from support.kiosk import REPO
from support.ports import reserved_port

from central.process import CentralProcess, start_subprocess

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="booting Debian roots under systemd-nspawn needs root (debootstrap, nspawn)")

ANSIBLE = REPO / "ansible"
BIN = Path(sys.executable).parent
TOKEN = "fleet-test-token"
VAULT_PASSWORD = "fleet-test-vault-password"
VIDEO = "/srv/kiosk-media/counter.avi"  # not under /tmp: the unit has PrivateTmp=yes
#: The kiosks in inventory order, and their sites.
KIOSKS = {"kiosk-riga-1": "riga", "kiosk-riga-2": "riga", "kiosk-ventspils-1": "ventspils"}
FIRST_BATCH = ["kiosk-riga-1", "kiosk-ventspils-1"]
#: Seconds a kiosk has to pass the gate here: the broken ref waits this long before its rollback.
GATE_DEADLINE_S = 20
#: Where ref C stalls the file camera before its first frame: its daemon starts and says READY=1
#: (that comes before the first frame), but no frame ever comes, so the gate must fail it.
HEALTHY_READ = "    def read(self, timeout: float | None = None) -> Frame | None:\n        clip = self._clip\n"
STALLED_READ = HEALTHY_READ.replace(
    "        clip = self._clip\n",
    '        __import__("time").sleep(86400)  # ref C: broken on purpose (tests/test_fleet.py)\n        clip = self._clip\n',
)


@dataclass
class Fleet:
    """The booted kiosks, the central, the repository of refs, and what the runs measured."""

    work: Path
    machines: dict[str, BootedRoot]
    central: CentralProcess
    repo: Path
    inventory: Path
    vault_password_file: Path
    refs: dict[str, str] = field(default_factory=dict)  #: "A", "B", "C" -> commit
    timings: dict[str, float] = field(default_factory=dict)

    def playbook(self, name: str, *extra: str) -> subprocess.CompletedProcess:
        command = [
            str(BIN / "ansible-playbook"),
            "-i",
            str(self.inventory),
            "--vault-password-file",
            str(self.vault_password_file),
            "-e",
            f"kiosk_repo={self.repo}",
            "-e",
            f"kiosk_build_dir={self.work / 'build'}",
            *extra,
            name,
        ]
        env = dict(os.environ, ANSIBLE_CONFIG=str(ANSIBLE / "ansible.cfg"), ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0")
        env["PATH"] = f"{BIN}:{env.get('PATH', '')}"
        return subprocess.run(command, cwd=ANSIBLE, env=env, capture_output=True, text=True, timeout=900)

    def site(self, ref: str, what: str, request) -> subprocess.CompletedProcess:
        """``site.yml`` at ref ``ref`` ("A", "B", "C"), timed as ``what``."""
        started = time.monotonic()
        result = self.playbook("site.yml", "-e", f"kiosk_ref={self.refs[ref]}")
        self.timings[what] = time.monotonic() - started
        report_timing(request, what, self.timings[what])
        (self.work / f"{what.replace(' ', '-')}.log").write_text(result.stdout + result.stderr)
        return result

    def status(self, name: str) -> dict:
        """The kiosk's ``kiosk status --json``, read as the gate reads it (the daemon's ProtectProc=)."""
        read = self.machines[name].run(
            "systemd-run", "--wait", "--pipe", "--quiet", "-p", "ProtectProc=invisible",
            "/usr/local/bin/kiosk", "status", "--json", "--config", "/etc/kiosk/kiosk.toml", check=False,
        )  # fmt: skip
        return json.loads(read.stdout)

    def running_version(self, name: str) -> str | None:
        report = self.status(name)
        return report["daemon"]["version"] if report["running"] and report["daemon"] else None

    def releases(self, name: str) -> set[str]:
        folder = self.machines[name].root / "opt/kiosk/releases"
        return {p.name for p in folder.iterdir() if (p / "installed").exists()} if folder.is_dir() else set()

    def version_of(self, ref: str) -> str:
        base = re.search(r'^__version__ = "([^"]+)"', (REPO / "device/__init__.py").read_text(), re.M).group(1)
        return f"{base}+g{self.refs[ref][:10]}"


def show(request, *lines: str) -> None:
    """Lines in the run's output as it goes (``.ci/run``'s log): pytest captures a test's output,
    so they are written with capturing suspended."""
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is None or capture is None:
        return
    with capture.global_and_fixture_disabled():
        reporter.ensure_newline()
        for line in lines:
            reporter.write_line(line)


def report_timing(request, what: str, seconds: float) -> None:
    """A timing in the run's output, and in the test's properties (junit XML)."""
    request.node.user_properties.append((what, round(seconds, 1)))
    show(request, f"tests/test_fleet.py: {what}: {seconds:.1f} s (3 kiosks in containers)")


def recap(output: str) -> dict[str, dict[str, int]]:
    """ansible-playbook's PLAY RECAP: host -> {"ok": n, "changed": n, "failed": n, ...}."""
    found = {}
    for host, counts in re.findall(r"^(\S+)\s+:\s+(ok=.*)$", output, re.M):
        found[host] = {key: int(value) for key, value in re.findall(r"(\w+)=(\d+)", counts)}
    return found


def batches_run(output: str) -> list[set[str]]:
    """The kiosks of each batch of site.yml's rollout play, in the order they ran."""
    plays = output.split("PLAY RECAP")[0].split("PLAY [Roll out, batch by batch]")[1:]
    return [set(re.findall(r"^\S+: \[(kiosk-[\w-]+)", play, re.M)) for play in plays]


def git(repo: Path, *args: str) -> str:
    env = dict(os.environ, GIT_AUTHOR_NAME="fleet test", GIT_AUTHOR_EMAIL="fleet@test", GIT_COMMITTER_NAME="fleet test")
    env["GIT_COMMITTER_EMAIL"] = "fleet@test"
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True, env=env).stdout.strip()


def make_refs(repo: Path) -> dict[str, str]:
    """Commits A, B and C of this checkout's files as they are now (committed or not)."""
    for name in checkout_files():
        target = repo / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, target)
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "A: the checkout as it is")
    refs = {"A": git(repo, "rev-parse", "HEAD")}
    notes = repo / "docs" / "RELEASE-B.md"
    notes.write_text("# Release B\n\nA later commit: the fleet upgrades to it.\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "B: a later release")
    refs["B"] = git(repo, "rev-parse", "HEAD")
    camera = repo / "device/camera/file.py"
    source = camera.read_text()
    assert source.count(HEALTHY_READ) == 1, "device/camera/file.py changed: update HEALTHY_READ for the broken ref"
    camera.write_text(source.replace(HEALTHY_READ, STALLED_READ))
    git(repo, "commit", "-q", "-am", "C: a release whose camera stalls")
    refs["C"] = git(repo, "rev-parse", "HEAD")
    return refs


# Ten minutes of 5 fps grey frames, as in tests/test_unit_boot.py: a restart plays it from the start.
def make_video(path: Path) -> None:
    import cv2
    import numpy as np

    path.parent.mkdir(parents=True, exist_ok=True)
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 5.0, (320, 240))
    counter = np.full((240, 320, 3), (110, 118, 120), np.uint8)
    for _ in range(5 * 600):
        out.write(counter)
    out.release()


def kiosk_root(base: Path, root: Path, name: str, port: int, authorized_key: str) -> str:
    """A copy of the base root as kiosk ``name``: its own host keys, sshd on ``port``. Returns its
    host key's line for known_hosts."""
    subprocess.run(["cp", "-a", "--reflink=auto", str(base), str(root)], check=True)
    (root / "etc/hostname").write_text(name + "\n")
    for key in (root / "etc/ssh").glob("ssh_host_*"):
        key.unlink()
    subprocess.run(["ssh-keygen", "-q", "-A", "-f", str(root)], check=True)
    (root / "etc/ssh/sshd_config.d/fleet-test.conf").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nPermitRootLogin prohibit-password\nPasswordAuthentication no\nUseDNS no\n"
    )
    ssh = root / "root/.ssh"
    ssh.mkdir(mode=0o700, exist_ok=True)
    (ssh / "authorized_keys").write_text(authorized_key)
    (ssh / "authorized_keys").chmod(0o600)
    host_key = (root / "etc/ssh/ssh_host_ed25519_key.pub").read_text().split()[:2]
    return f"[127.0.0.1]:{port} {' '.join(host_key)}"


def write_inventory(work: Path, ports: dict[str, int], central_url: str) -> tuple[Path, Path]:
    """The test fleet's inventory (two sites, the token in ansible-vault) and the vault's password file."""
    password = work / "vault-password"
    password.write_text(VAULT_PASSWORD + "\n")
    password.chmod(0o600)
    vault = subprocess.run(
        [str(BIN / "ansible-vault"), "encrypt_string", "--vault-password-file", str(password), TOKEN, "--name", "vault_kiosk_api_token"],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    inventory = work / "inventory"
    (inventory / "group_vars/kiosks").mkdir(parents=True)
    ssh_args = f"-o UserKnownHostsFile={work / 'known_hosts'} -o StrictHostKeyChecking=yes -o IdentitiesOnly=yes"
    sites: dict[str, dict] = {}
    for name, site in KIOSKS.items():
        sites.setdefault(f"site_{site}", {"hosts": {}, "vars": {"kiosk_site": site}})["hosts"][name] = {"ansible_port": ports[name]}
    (inventory / "hosts.yml").write_text(yaml.safe_dump({"kiosks": {"children": sites}}, sort_keys=False))
    (inventory / "group_vars/kiosks/main.yml").write_text(
        yaml.safe_dump(
            {
                "ansible_host": "127.0.0.1",
                "ansible_user": "root",
                "ansible_ssh_private_key_file": str(work / "id_ed25519"),
                "ansible_ssh_common_args": ssh_args,
                "ansible_python_interpreter": "/usr/bin/python3",
                "kiosk_api_url": central_url,
                "kiosk_api_token": "{{ vault_kiosk_api_token }}",
                "kiosk_camera": {"source": f"file:{VIDEO}", "pace": "realtime"},
                "kiosk_feedback": {"pin_factory": "mock"},
                "kiosk_gate_deadline_s": GATE_DEADLINE_S,
                "kiosk_gate_poll_s": 1,
            },
            sort_keys=False,
        )
    )
    (inventory / "group_vars/kiosks/vault.yml").write_text(vault)
    return inventory, password


@pytest.fixture(scope="module")
def fleet(tmp_path_factory, request) -> Fleet:
    ensure_tool("systemd-nspawn", "systemd-container")
    ensure_tool("ssh-keygen", "openssh-client")
    work = tmp_path_factory.mktemp("fleet")
    base = work / "base"
    roots = {name: work / name for name in KIOSKS}
    request.addfinalizer(lambda: [remove_root(root) for root in [base, *roots.values()]])
    debootstrap(base, include=["systemd", "systemd-sysv", "dbus", "openssh-server", "python3", "python3-venv", "sudo", "libzbar0"])
    make_video(base / VIDEO.lstrip("/"))
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(work / "id_ed25519")], check=True)
    authorized = (work / "id_ed25519.pub").read_text()

    ports_held = contextlib.ExitStack()
    request.addfinalizer(ports_held.close)
    ports = {name: ports_held.enter_context(reserved_port()) for name in KIOSKS}
    known_hosts = [kiosk_root(base, roots[name], name, ports[name], authorized) for name in KIOSKS]
    (work / "known_hosts").write_text("\n".join(known_hosts) + "\n")

    (work / "central").mkdir()
    central = start_subprocess(work / "central", TOKEN)
    request.addfinalizer(central.stop)
    inventory, password = write_inventory(work, ports, central.url)
    repo = work / "repo"
    repo.mkdir()
    refs = make_refs(repo)

    machines: dict[str, BootedRoot] = {}
    request.addfinalizer(lambda: power_off_all(list(machines.values())))
    for number, name in enumerate(KIOSKS):
        machines[name] = BootedRoot(roots[name], work / f"{name}.log", f"fleet-{os.getpid()}-{number}", private_network=False)
    for machine in machines.values():
        machine.wait_booted()
    fleet = Fleet(work, machines, central, repo, inventory, password, refs)
    request.addfinalizer(lambda: report_timing_summary(request, fleet))
    return fleet


def report_timing_summary(request, fleet: Fleet) -> None:
    if fleet.timings:
        show(
            request,
            "fleet rollout timings (tests/test_fleet.py, 3 kiosks):",
            *(f"  {what:<24} {s:6.1f} s" for what, s in fleet.timings.items()),
        )


def power_off_all(machines: list[BootedRoot]) -> None:
    """Every container powered off at once (each is killed if it does not stop in time)."""
    with ThreadPoolExecutor(max_workers=len(machines) or 1) as pool:
        for done in [pool.submit(machine.power_off) for machine in machines]:
            done.result()


def test_site_yml_rolls_out_ref_a_to_every_kiosk(fleet, request):
    result = fleet.site("A", "rollout A", request)

    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    # The plan: the first kiosk of every site, then the second; each batch is a play of its own.
    assert batches_run(result.stdout) == [set(FIRST_BATCH), {"kiosk-riga-2"}], result.stdout[-6000:]
    version = fleet.version_of("A")
    for name, site in KIOSKS.items():
        report = fleet.status(name)
        assert report["running"] and report["daemon"]["version"] == version, report
        assert not report["daemon"]["faults"], report["daemon"]["faults"]
        assert report["kiosk_id"] == name
        assert os.readlink(fleet.machines[name].root / "opt/kiosk/venv") == f"/opt/kiosk/releases/{version}/venv"
        config = (fleet.machines[name].root / "etc/kiosk/kiosk.toml").read_text()
        assert f'site = "{site}"' in config and f'url = "{fleet.central.url}"' in config
        # The token came from the vault, readable by the service only.
        token = fleet.machines[name].root / "etc/kiosk/token"
        assert token.read_text() == TOKEN + "\n" and oct(token.stat().st_mode & 0o777) == "0o640"
        assert fleet.machines[name].run("systemctl", "is-enabled", "kiosk").stdout.strip() == "enabled"


def test_a_second_run_changes_nothing(fleet, request):
    result = fleet.site("A", "no-change rerun", request)

    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    counts = recap(result.stdout)
    assert set(KIOSKS) <= set(counts), result.stdout[-3000:]
    assert {name: counts[name]["changed"] for name in KIOSKS} == dict.fromkeys(KIOSKS, 0), result.stdout[-6000:]


def test_site_yml_upgrades_every_kiosk_to_ref_b(fleet, request):
    before = {name: fleet.status(name)["daemon"]["pid"] for name in KIOSKS}

    result = fleet.site("B", "upgrade A to B", request)

    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    for name in KIOSKS:
        report = fleet.status(name)
        assert report["daemon"]["version"] == fleet.version_of("B") and not report["daemon"]["faults"], report
        assert report["daemon"]["pid"] != before[name]
        assert fleet.releases(name) == {fleet.version_of("A"), fleet.version_of("B")}  # side by side: A is the rollback


def test_a_ref_that_fails_the_gate_is_rolled_back_and_stops_the_rollout(fleet, request):
    result = fleet.site("C", "broken C, rolled back", request)

    assert result.returncode != 0, result.stdout[-6000:]
    good, broken = fleet.version_of("B"), fleet.version_of("C")
    for name in FIRST_BATCH:
        # C was installed and run, failed its gate, and the kiosk runs B again.
        assert broken in fleet.releases(name)
        assert f"{name} failed on release {broken}" in result.stdout, result.stdout[-6000:]
        assert "the camera delivers no frames" in result.stdout or "daemon restarted" in result.stdout, result.stdout[-6000:]
        assert os.readlink(fleet.machines[name].root / "opt/kiosk/venv") == f"/opt/kiosk/releases/{good}/venv"
        report = fleet.status(name)
        assert report["running"] and report["daemon"]["version"] == good and not report["daemon"]["faults"], report
    # The second batch was never touched: no C there at all.
    assert fleet.releases("kiosk-riga-2") == {fleet.version_of("A"), good}
    assert fleet.running_version("kiosk-riga-2") == good
    assert recap(result.stdout)["kiosk-riga-2"]["changed"] == 0


def test_fleet_status_prints_one_table_of_every_kiosk(fleet, request):
    table_file = fleet.work / "fleet.txt"
    started = time.monotonic()
    result = fleet.playbook("fleet-status.yml", "-e", f"kiosk_fleet_table_file={table_file}")
    report_timing(request, "fleet status", time.monotonic() - started)

    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    header, *rows = table_file.read_text().splitlines()
    assert header.split() == [
        "kiosk",
        "site",
        "version",
        "running",
        "faults",
        "pending",
        "oldest",
        "last",
        "id",
        "list",
        "list",
        "age",
        "pos",
    ]
    assert sorted(row.split()[0] for row in rows) == sorted(KIOSKS)
    for row in rows:
        kiosk, site, version, running, faults, pending, *rest = row.split()
        assert (site, version, running, faults, pending) == (KIOSKS[kiosk], fleet.version_of("B"), "yes", "-", "0"), row
        assert rest[-3:] == ["off", "-", "off"], row  # no replaced-card list, no POS on these kiosks
    assert "kiosk-riga-2" in result.stdout  # the table is in the play's output too
