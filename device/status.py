"""The daemon's status snapshot: written every few seconds under the runtime directory, read by
``kiosk status`` (a technician on SSH) and the diag commands.

The file is JSON, replaced atomically. It is fresh when it was written on this boot within
:data:`STALE_AFTER_S` seconds of the monotonic clock (immune to wall-clock jumps); otherwise the
daemon is not running (or hung)::

    snapshot = read_status(Path("/run/kiosk"))
    if snapshot.running:
        print(snapshot.data["camera"]["state"])
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from device.redact import escape
from device.sysfs import SYSFS_PREFIX_ENV  # where sysfs is: a fake tree in tests (the camera's too)

STATUS_FILE = "status.json"
#: ``kiosk diag camera`` asks the running daemon for a frame (``snapshot-<id>.request``) and
#: ``kiosk revocations sync`` for a sync (``revocations-<id>.request``) by leaving a request in
#: this folder. The daemon makes it sticky and group-writable (01770), so the technicians' group
#: may ask without root while the rest of the runtime directory stays the daemon's...
REQUESTS_DIR = "requests"
#: ...and the daemon answers with ``snapshot-<id>.png`` (masked, the located barcodes drawn) and
#: then ``snapshot-<id>.json`` (the frame size and what was decoded), 0640, beside the status.
SNAPSHOT_PREFIX = "snapshot-"
#: The daemon writes every WRITE_INTERVAL_S; older than this means it is not running.
WRITE_INTERVAL_S = 2.0
STALE_AFTER_S = 15.0


def boot_id(proc: Path = Path("/proc")) -> str:
    try:
        return (proc / "sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def write_status(runtime_dir: Path, data: dict) -> None:
    """Atomically replace the snapshot (readers never see half a file)."""
    runtime_dir.mkdir(parents=True, exist_ok=True)
    data = {**data, "boot_id": boot_id(), "written_monotonic": time.monotonic(), "written_at": time.time()}
    tmp = runtime_dir / f".{STATUS_FILE}.{os.getpid()}"
    tmp.write_text(json.dumps(data, indent=1, default=str))
    os.replace(tmp, runtime_dir / STATUS_FILE)


@dataclass(frozen=True)
class Snapshot:
    """What ``read_status`` found: the data (possibly stale) and whether the daemon runs."""

    running: bool
    why: str
    data: dict | None


def read_status(runtime_dir: Path) -> Snapshot:
    path = runtime_dir / STATUS_FILE
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return Snapshot(False, f"no status file {path}: the daemon is not running (systemctl status kiosk)", None)
    except (OSError, ValueError) as e:
        return Snapshot(False, f"cannot read {path}: {e}", None)
    if data.get("boot_id") != boot_id():
        return Snapshot(False, "status is from before the last reboot: the daemon has not started since", data)
    if not _alive(data.get("pid")):
        return Snapshot(False, f"the daemon (pid {data.get('pid')}) has exited (journalctl -u kiosk says why)", data)
    age = time.monotonic() - float(data.get("written_monotonic", 0))
    if age > STALE_AFTER_S:
        return Snapshot(False, f"status is {age:.0f} s old: the daemon is not running or is hung (journalctl -u kiosk)", data)
    return Snapshot(True, "running", data)


def _alive(pid) -> bool:
    try:
        os.kill(int(pid), 0)
    except PermissionError:  # alive, but another user's (the CLI is not the kiosk user)
        return True
    except (OSError, TypeError, ValueError):
        return False
    return True


def remove_status(runtime_dir: Path) -> None:
    """A clean stop: no snapshot left that could look fresh."""
    (runtime_dir / STATUS_FILE).unlink(missing_ok=True)


def disk_free_bytes(path: str | Path) -> int | None:
    """Free bytes on the filesystem holding ``path`` (or its nearest existing parent)."""
    p = Path(path)
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        return shutil.disk_usage(p).free
    except OSError:
        return None


def cpu_temperature_c(sys_root: Path | None = None) -> float | None:
    """The SoC temperature where the kernel exposes it (a Pi does), else None.

    ``sys_root`` defaults to ``/sys`` under ``$KIOSK_SYSFS_PREFIX`` (a fake tree in tests).
    """
    if sys_root is None:
        sys_root = Path(os.environ.get(SYSFS_PREFIX_ENV, "") + "/sys")
    try:
        return int((sys_root / "class/thermal/thermal_zone0/temp").read_text().strip()) / 1000
    except (OSError, ValueError):
        return None


#: Who may read the token file: root, and the kiosk (the service's user and group).
TOKEN_READERS = ("root", "kiosk")
#: The technicians' group: may read status, the queue and snapshots (never the token).
TECHNICIANS_GROUP = "kiosk-tech"


def no_request_folder(folder: Path) -> str:
    """What to say when the running daemon has no request folder (it predates this command)."""
    return f"the daemon takes no requests ({folder} is missing): is it older than this command? restart it (sudo systemctl restart kiosk)"


def permission_advice(error: PermissionError, command: str) -> str:
    """What to do about ``error`` met by ``command`` (e.g. ``"kiosk diag camera"``), in one line.

    >>> permission_advice(PermissionError(13, "Permission denied", "/run/kiosk/requests"), "kiosk diag camera")
    "no permission for /run/kiosk/requests: run it as root (sudo kiosk diag camera ...) or from an account in the technicians' group kiosk-tech (sudo usermod -aG kiosk-tech $USER, then log in again)"
    """
    path = escape(str(error.filename), 300) if error.filename else "a file it needs"
    return (
        f"no permission for {path}: run it as root (sudo {command} ...) or from an account in the technicians' group "
        f"{TECHNICIANS_GROUP} (sudo usermod -aG {TECHNICIANS_GROUP} $USER, then log in again)"
    )


def token_file_warning(path: str) -> str | None:
    """Why the token file at ``path`` is open to others than root and the kiosk group, or None.

    Others may read or write it (``mode & 0o007``), or its group or owner is someone else and may
    read it. A missing file is not this check's: the delivery fault names it.
    """
    import grp
    import pwd
    import stat

    if not path:
        return None
    try:
        st = os.stat(path)
    except OSError:
        return None
    problems = []
    if st.st_mode & 0o007:
        problems.append(f"mode {stat.S_IMODE(st.st_mode):04o} lets everyone in")
    group = _name(grp.getgrgid, st.st_gid)
    if st.st_mode & 0o040 and group not in TOKEN_READERS:
        problems.append(f"group {group} may read it")
    owner = _name(pwd.getpwuid, st.st_uid)
    if st.st_mode & 0o400 and owner not in TOKEN_READERS:
        problems.append(f"its owner {owner} may read it")
    if not problems:
        return None
    path = escape(path, 300)
    return (
        f"the token file {path} is readable by others than root and the kiosk group ({'; '.join(problems)}): "
        f"sudo chown root:kiosk {path} && sudo chmod 0640 {path}"
    )


def _name(lookup, number: int) -> str:
    try:
        return lookup(number)[0]
    except KeyError:
        return str(number)  # no such user or group: only its number


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "never"
    seconds = max(0.0, float(seconds))
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.0f} s"


def _bytes(n: int | None) -> str:
    if n is None:
        return "unknown"
    for unit in ("GB", "MB", "kB"):
        size = {"GB": 1e9, "MB": 1e6, "kB": 1e3}[unit]
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} B"


def _integrity_lines(queue: dict) -> list[str]:
    """What the outbox found wrong with itself (lost, salvaged, quarantined), until acknowledged."""
    problems = queue.get("integrity") or []
    lines = [f"outbox      INTEGRITY: {p['message']} (found {p['found_at']})" for p in problems]
    more = queue.get("integrity_unacknowledged", len(problems)) - len(problems)
    if more > 0:
        lines.insert(0, f"outbox      INTEGRITY: {more} older problem(s) not listed")
    if queue.get("mark_error"):
        lines.append(f"outbox      INTEGRITY: {queue['mark_error']}")
    if problems:
        lines.append("outbox      once handled: kiosk queue ack (the fault clears; the records stay as they are)")
    return lines


def dead_problem(queue: dict | None) -> str | None:
    """The line on dead identifications (the central refused them: never delivered), or None.

    They need a technician, so ``kiosk status`` exits 1 while there are any::

        >>> dead_problem({"dead": 2})
        '2 identification(s) refused by the central, never delivered: kiosk queue list --state dead'
    """
    dead = (queue or {}).get("dead") or 0
    if not dead:
        return None
    return f"{dead} identification(s) refused by the central, never delivered: kiosk queue list --state dead"


def render(report: dict) -> str:
    """``kiosk status`` for a person: one line per subject, problems first-class."""
    lines = []
    daemon = report.get("daemon") or {}
    if report["running"]:
        lines.append(f"daemon      running (pid {daemon.get('pid')}, up {_age(daemon.get('uptime_s'))}), version {daemon.get('version')}")
    else:
        lines.append(f"daemon      NOT RUNNING: {report['why']}")
        lines += [f"            {escape(line, 400)}" for line in report.get("stopped_because") or ()]
    if daemon:
        cam = daemon.get("camera", {})
        state = cam.get("state", "")
        problem = f"; last error: {cam['last_error']}" if cam.get("last_error") and state != "up" else ""
        lines.append(f"camera      {cam.get('source')}{problem}")
        scan = daemon.get("scan", {})
        lines.append(f"frames      {scan.get('frames', 0)} read, {scan.get('decoded_frames', 0)} decoded, {scan.get('odd_frames', 0)} unusable")
        last = scan.get("last_identification")
        if last:
            lines.append(f"last card   contract {last['contract']} issue {last['issue']}, {_age(scan.get('last_identification_age_s'))} ago (seq {last['seq']})")
        else:
            lines.append("last card   none since start")
        refused = f", {scan['refusals']} replaced cards refused" if scan.get("refusals") else ""
        lines.append(f"today       {scan.get('identifications', 0)} identified{refused}, {scan.get('not_a_card', 0)} not a card (since start)")
    queue = report.get("queue") or {}
    if "error" in queue:
        lines.append(f"queue       cannot read: {queue['error']}")
    elif queue:
        oldest = f" (oldest {_age(queue.get('oldest_pending_age_s'))})" if queue.get("pending") else ""
        dead, quarantined = queue.get("dead", 0), queue.get("quarantined", 0)
        lines.append(
            f"queue       {queue.get('pending', 0)} pending{oldest}, {dead} dead{' <- kiosk queue list --state dead' if dead else ''}, "
            f"{queue.get('delivered', 0)} delivered"
            + (f", {quarantined} QUARANTINED (never sent) <- kiosk queue list --state quarantined" if quarantined else "")
            + (f"; {queue['refusals']} of these are refusals of replaced cards" if queue.get("refusals") else "")
        )
        if queue.get("corrupt_files"):
            lines.append(f"outbox      damaged file(s) moved aside, kept for inspection: {', '.join(queue['corrupt_files'])}")
        if queue.get("last_commit_error"):
            lines.append(f"outbox      CANNOT STORE: {queue['last_commit_error']}")
        lines.extend(_integrity_lines(queue))
    delivery = daemon.get("delivery") if daemon else None
    if delivery:
        state = {"ok": "ok", "retrying": "RETRYING", "paused-auth": "PAUSED: token refused", "paused-no-token": "PAUSED: no usable token"}.get(delivery.get("state"), delivery.get("state"))
        last_ok = delivery.get("last_success_at") or "never"
        err = f"; last error: {delivery['last_error']}" if delivery.get("last_error") and delivery.get("state") != "ok" else ""
        lines.append(f"delivery    {state} to {delivery.get('url')}; last success {last_ok}{err}")
    # The daemon's view while it runs; else the copy on disk, read by the command.
    revocations = (daemon or {}).get("revocations") or report.get("revocations")
    if revocations:
        from device.revocations.store import summary

        lines.append(f"replaced    {revocations['error'] if 'error' in revocations else summary(revocations)}")
    for name, out in sorted(((daemon or {}).get("outputs") or {}).items()):
        # Frames an output skips while behind are normal; lost events and errors are not.
        lost = {event: n for event, n in out.get("dropped", {}).items() if event != "frame"}
        if lost or out.get("failures"):
            what = [f"{n} {event} events dropped" for event, n in sorted(lost.items())]
            what += [f"{out['failures']} failed calls (see the log)"] if out.get("failures") else []
            lines.append(f"output      {name}: {', '.join(what)}")
    lines.append(f"disk        {_bytes(report.get('disk_free_bytes'))} free where the outbox is")
    lines.append(f"clock       {'synchronised' if report.get('clock_synced') else 'NOT synchronised (identifications are marked so)'}")
    temp = report.get("cpu_temperature_c")
    if "cpu_temperature_c" in report:  # a report without the key is from an older kiosk
        lines.append(f"cpu temp    {temp:.1f} C" if temp is not None else "cpu temp    no sensor")
    for warning in report.get("warnings") or ():
        lines.append(f"WARNING     {warning}")
    dead = dead_problem(queue)
    if dead:
        lines.append(f"DEAD        {dead}")
    faults = (daemon or {}).get("faults") or {}
    if faults:
        for name, message in sorted(faults.items()):
            lines.append(f"FAULT       {name}: {message}")
    elif report["running"]:
        lines.append("faults      none")
    return "\n".join(lines) + "\n"
