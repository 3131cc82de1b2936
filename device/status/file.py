"""The daemon's status file: written every few seconds under the runtime directory, read by
``kiosk status`` (a technician on SSH) and the diag commands.

The file is JSON (:meth:`DaemonStatus.to_json`), replaced atomically. It is fresh when it was
written on this boot within :data:`~device.runtime_dir.STALE_AFTER_S` seconds of the monotonic
clock (immune to wall-clock jumps); otherwise the daemon is not running (or hung)::

    snapshot = read_status(Path("/run/kiosk"))
    if snapshot.running:
        daemon = DaemonStatus.from_json(snapshot.data)   # StatusFormatError names a missing key
        print(daemon.camera.source)
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from device.runtime_dir import STALE_AFTER_S, STATUS_FILE

if TYPE_CHECKING:
    from device.status.report import DaemonStatus


def boot_id(proc: Path = Path("/proc")) -> str:
    try:
        return (proc / "sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def write_status(runtime_dir: Path, daemon: DaemonStatus) -> None:
    """Atomically replace the snapshot (readers never see half a file), stamped with this boot and now."""
    runtime_dir.mkdir(parents=True, exist_ok=True)
    daemon = dataclasses.replace(daemon, boot_id=boot_id(), written_monotonic=time.monotonic(), written_at=time.time())
    tmp = runtime_dir / f".{STATUS_FILE}.{os.getpid()}"
    tmp.write_text(json.dumps(daemon.to_json(), indent=1, default=str))
    os.replace(tmp, runtime_dir / STATUS_FILE)


@dataclass(frozen=True)
class Snapshot:
    """What ``read_status`` found: whether the daemon runs, why not, and the file's JSON (possibly stale).

    Only the liveness stamps (``pid``, ``boot_id``, ``written_monotonic``) are read here; the rest
    is :meth:`DaemonStatus.from_json`'s, which fails on a key it misses.
    """

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
    if not isinstance(data, dict):
        return Snapshot(False, f"cannot read {path}: not a JSON object", None)
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
