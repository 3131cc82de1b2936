"""The kiosk role's filters: the health gate's verdict on a kiosk's status, the rollout's batches,
the fleet table, and the pip platform of a kiosk.

Plain Python over the JSON of ``kiosk status --json`` (:class:`device.status.report.StatusReport`,
``status_version`` 1): the controller needs ansible-core, not the kiosk's own packages
(tests/test_ansible.py feeds these filters reports made by the kiosk's real ``to_json``, so a key
renamed there fails here). In a playbook::

    until: (status.stdout | kiosk_gate_problems(kiosk_version)) | length == 0

    >>> batches(["a1", "a2", "b1", "a3", "c1"], ["A", "A", "B", "A", "C"], size=10)
    [['a1', 'b1', 'c1'], ['a2'], ['a3']]
"""

from __future__ import annotations

import json
from typing import Any

#: The version of ``kiosk status --json`` these filters read (device/status/report.py STATUS_VERSION).
STATUS_VERSION = 1
#: The POS hand-off's name among the daemon's outputs (its class, device/outputs/pos/output.py).
POS_OUTPUT = "PosOutput"
#: The POS's fault (device/fault_names.py POS).
POS_FAULT = "pos"


def _report(status_text: str) -> tuple[dict[str, Any] | None, str]:
    """The report in ``status_text``, or None and why it cannot be read."""
    try:
        report = json.loads(status_text)
    except (TypeError, ValueError):
        shown = str(status_text).strip()[:200] or "nothing"
        return None, f"kiosk status --json printed no JSON: {shown!r}"
    if not isinstance(report, dict):
        return None, "kiosk status --json printed no JSON object"
    if report.get("status_version") != STATUS_VERSION:
        return None, f"kiosk status --json is of status_version {report.get('status_version')!r}, this role reads {STATUS_VERSION}"
    return report, ""


def gate_problems(
    status_text: str, version: str, earlier_text: str | None = None, revocations: bool = False, pos: bool = False
) -> list[str]:
    """What keeps a kiosk from passing the health gate: empty when it does its job.

    The job, not the boot: the daemon of ``version`` runs without a fault; with an ``earlier_text``
    read of the same daemon, frames kept coming and the outbox drained in between (nothing pending,
    or more delivered); delivery is ok and no identification is dead; the replaced-card list is
    verified when ``revocations``; the POS hand-off is there when ``pos``.

    >>> gate_problems('{"status_version": 1, "running": false, "why": "kiosk.service is inactive",'
    ...               ' "daemon": null, "stopped_because": null}', "0.1.0")
    ['the daemon does not run: kiosk.service is inactive']
    """
    report, unreadable = _report(status_text)
    if report is None:
        return [unreadable]
    daemon = report.get("daemon")
    if not report.get("running") or not isinstance(daemon, dict):
        return [f"the daemon does not run: {report.get('why')}", *(report.get("stopped_because") or [])]
    problems = []
    if daemon.get("version") != version:
        problems.append(f"the daemon runs version {daemon.get('version')}, not {version}")
    problems += [f"fault {name}: {message}" for name, message in sorted((daemon.get("faults") or {}).items())]
    queue = daemon.get("queue") or {}
    if "error" in queue:
        problems.append(f"the outbox cannot be read: {queue['error']}")
    else:
        if queue.get("last_commit_error"):
            problems.append(f"the outbox cannot be written: {queue['last_commit_error']}")
        if queue.get("dead"):
            problems.append(f"{queue['dead']} identifications are dead (the central rejected them): kiosk queue list --state dead")
    delivery = daemon.get("delivery") or {}
    if delivery.get("state") != "ok":
        problems.append(f"delivery is {delivery.get('state')}: {delivery.get('last_error')}")
    if revocations:
        problems += _list_problems(daemon.get("revocations"))
    if pos and POS_OUTPUT not in (daemon.get("outputs") or {}):
        problems.append("the POS hand-off is not running (pos.output)")
    if earlier_text is not None:
        problems += _progress_problems(report, earlier_text)
    return problems


def _list_problems(replaced: Any) -> list[str]:
    if not isinstance(replaced, dict):
        return ["the replaced-card list is off in the daemon (revocations.enabled)"]
    if "error" in replaced:
        return [f"the replaced-card list cannot be read: {replaced['error']}"]
    if replaced.get("version") is None:
        return [f"no verified replaced-card list yet: {replaced.get('attempt_error') or 'no sync yet'}"]
    return []


def _progress_problems(report: dict[str, Any], earlier_text: str) -> list[str]:
    """Between the earlier read and this one: the same daemon, more frames, the outbox draining."""
    earlier, unreadable = _report(earlier_text)
    if earlier is None or not isinstance(earlier.get("daemon"), dict):
        return [f"the earlier read shows no running daemon: {unreadable or earlier and earlier.get('why')}"]
    now, before = report["daemon"], earlier["daemon"]
    if now.get("pid") != before.get("pid"):
        return [f"the daemon restarted between two reads (pid {before.get('pid')} -> {now.get('pid')})"]
    problems = []
    frames, frames_before = now["scan"]["frames"], before["scan"]["frames"]
    if frames <= frames_before:
        problems.append(f"the camera delivers no frames ({frames} read, {frames_before} before)")
    pending = (now.get("queue") or {}).get("pending") or 0
    delivered, delivered_before = now["delivery"]["delivered_total"], before["delivery"]["delivered_total"]
    if pending and delivered <= delivered_before:
        problems.append(f"the outbox does not drain: {pending} pending, none delivered since the earlier read")
    return problems


def batches(hosts: list[str], sites: list[str], size: int) -> list[list[str]]:
    """The rollout's batches: waves of at most one kiosk of each site (the first kiosk of every
    site, then the second, ...), each wave cut into batches of at most ``size``. So a site's kiosks
    are never all in one batch, unless it has only one. ``sites`` is each host's site, in order; a
    host without one is a site of its own.

    >>> batches(["r1", "r2", "v1", "v2", "v3"], ["riga", "riga", "ventspils", "ventspils", "ventspils"], size=1)
    [['r1'], ['v1'], ['r2'], ['v2'], ['v3']]
    """
    if len(hosts) != len(sites):
        raise ValueError(f"{len(hosts)} hosts but {len(sites)} sites")
    if int(size) < 1:
        raise ValueError(f"kiosk_batch_size must be 1 or more, got {size!r}")
    waves: list[list[str]] = []
    seen: dict[str, int] = {}
    for host, site in zip(hosts, sites, strict=True):
        key = site or f"host:{host}"
        wave = seen.get(key, 0)
        seen[key] = wave + 1
        if wave == len(waves):
            waves.append([])
        waves[wave].append(host)
    return [wave[i : i + int(size)] for wave in waves for i in range(0, len(wave), int(size))]


def batch_sizes(planned: list[list[str]]) -> list[int]:
    """The play's ``serial`` list for :func:`batches`: the hosts then come in their order.

    >>> batch_sizes([["a1", "b1"], ["a2"]])
    [2, 1]
    """
    return [len(batch) for batch in planned]


def pip_platform(machine: str, python_version: str, glibc: str) -> list[str]:
    """pip's options for wheels that install on a kiosk of this CPU, Python and glibc (``pip
    download`` on the controller, which may be another machine).

    >>> pip_platform("aarch64", "3.11", "2.36")[:6]
    ['--only-binary=:all:', '--implementation', 'cp', '--python-version', '3.11', '--platform']
    >>> pip_platform("aarch64", "3.11", "2.36")[-3:]
    ['manylinux_2_17_aarch64', '--platform', 'manylinux2014_aarch64']
    """
    major, minor = (int(part) for part in str(glibc).split(".")[:2])
    tags = [f"manylinux_{major}_{m}_{machine}" for m in range(minor, 16, -1)] + [f"manylinux2014_{machine}"]
    if machine == "x86_64":  # older wheels still name the first manylinux standards
        tags += ["manylinux2010_x86_64", "manylinux1_x86_64"]
    options = ["--only-binary=:all:", "--implementation", "cp", "--python-version", str(python_version)]
    for tag in tags:
        options += ["--platform", tag]
    return options


def _age(seconds: Any) -> str:
    """An age as a person reads it.

    >>> [_age(s) for s in (None, 4.2, 125, 7300, 200000)]
    ['-', '4s', '2m', '2h', '2d']
    """
    if seconds is None:
        return "-"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"


#: The fleet table's columns, in order.
COLUMNS = ("kiosk", "site", "version", "running", "faults", "pending", "oldest", "last id", "list", "list age", "pos")


def fleet_row(host: str, site: str, status_text: str) -> dict[str, str]:
    """One kiosk's line of the fleet table, from its ``kiosk status --json``."""
    row = dict.fromkeys(COLUMNS, "-")
    row.update(kiosk=host, site=site or "-")
    report, unreadable = _report(status_text)
    if report is None:
        row["running"] = "?"
        row["faults"] = unreadable
        return row
    daemon = report.get("daemon") if isinstance(report.get("daemon"), dict) else None
    row["kiosk"] = report.get("kiosk_id") or host
    row["running"] = "yes" if report.get("running") and daemon else "NO"
    queue = report.get("queue") or {}
    if "error" not in queue and queue:
        row["pending"] = str(queue.get("pending"))
        row["oldest"] = _age(queue.get("oldest_pending_age_s"))
    replaced = daemon.get("revocations") if daemon else report.get("revocations")
    if replaced is None:
        row["list"] = "off"
    elif "error" in replaced:
        row["list"] = "unreadable"
    else:
        row["list"] = "none" if replaced.get("version") is None else str(replaced["version"])
        row["list age"] = _age(replaced.get("age_s"))
    if daemon is None:
        row["faults"] = report.get("why") or "-"
        return row
    row["version"] = str(daemon.get("version"))
    row["faults"] = ",".join(sorted(daemon.get("faults") or {})) or "-"
    scan = daemon.get("scan") or {}
    row["last id"] = "never" if scan.get("last_identification_age_s") is None else _age(scan["last_identification_age_s"]) + " ago"
    if POS_OUTPUT not in (daemon.get("outputs") or {}):
        row["pos"] = "off"
    else:
        row["pos"] = "FAULT" if POS_FAULT in (daemon.get("faults") or {}) else "ok"
    return row


def fleet_table(hosts: list[str], sites: list[str], reads: list[Any]) -> str:
    """The fleet table: one line per kiosk, columns aligned, the kiosks that need someone first (not
    running, then faults). ``reads`` is each host's registered ``kiosk status --json`` result (its
    ``stdout``; an unreachable host has none, its ``msg`` says why) or the JSON text itself.

    >>> print(fleet_table(["k1"], ["riga"], [{"msg": "ssh: timed out"}]))
    kiosk  site  version  running  faults                       pending  oldest  last id  list  list age  pos
    k1     riga  -        ?        unreachable: ssh: timed out  -        -       -        -     -         -
    """
    rows = []
    for host, site, read in zip(hosts, sites, reads, strict=True):
        if isinstance(read, dict) and "stdout" not in read:
            row = dict.fromkeys(COLUMNS, "-")
            row.update(kiosk=host, site=site or "-", running="?", faults=f"unreachable: {read.get('msg', 'no answer')}")
        else:
            row = fleet_row(host, site, read["stdout"] if isinstance(read, dict) else read)
        rows.append(row)
    rows.sort(key=lambda r: (r["running"] == "yes", r["faults"] == "-", r["kiosk"]))
    widths = {c: max(len(c), *(len(r[c]) for r in rows)) for c in COLUMNS}
    lines = ["  ".join(c.ljust(widths[c]) for c in COLUMNS).rstrip()]
    lines += ["  ".join(r[c].ljust(widths[c]) for c in COLUMNS).rstrip() for r in rows]
    return "\n".join(lines)


class FilterModule:
    """The filters Ansible loads from the role."""

    def filters(self) -> dict[str, Any]:
        return {
            "kiosk_gate_problems": gate_problems,
            "kiosk_batches": batches,
            "kiosk_batch_sizes": batch_sizes,
            "kiosk_pip_platform": pip_platform,
            "kiosk_fleet_table": fleet_table,
        }
