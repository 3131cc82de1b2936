"""``kiosk diag bundle``: everything operations ask for, in one archive (like ``pihole -d``).

A bundle is a gzipped tar of small files in one folder: the status, the effective configuration,
versions, OS and kernel, the kiosk's journal, the queue summary, the camera and GPIO devices, disk
and clock, and the daemon's latest (masked) snapshot. Each part is collected on its own: one that
fails is a line in ``problems.txt`` and the rest is still written. Nothing in it may hold a whole
contract number or the central's token: contracts are masked where they are collected (digit
runs in collected text are masked as in logs), and every member is scrubbed of the token at the
end, whatever part it came from.

tar.gz rather than zip: ``tar xzf`` is on every Pi and every Linux box operations use (and in
Windows' own tar), and it is what ``pihole -d`` and ``sosreport`` hand over::

    bundle = collect(cfg)
    size = write(bundle, default_path(cfg.kiosk.id))
"""

from __future__ import annotations

import io
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from device.config import Config
from device.redact import mask_contract, mask_digit_runs

#: The journal lines a bundle holds.
JOURNAL_LINES = 500
#: What stands in for the token wherever it appeared.
SCRUBBED = b"********"
#: The kiosk's distribution (its dependencies are requirements.txt's).
DISTRIBUTION = "counter-kiosk"
#: The device nodes listed, as globs under /dev (KIOSK_DEV_PREFIX moves them for tests).
DEVICE_GLOBS = ("video*", "v4l/by-id/*", "media*", "gpiochip*")

Content = str | bytes | dict


class Missing(Exception):
    """A part that cannot be collected, and why: one line of ``problems.txt``, never a traceback."""


@dataclass(frozen=True)
class Part:
    """One part of a bundle: its name (in ``problems.txt``) and what collects its members.

    ``collect(cfg)`` returns ``{member name: content}`` (a dict content is written as JSON) and
    raises :class:`Missing`, or anything else, when it cannot.
    """

    name: str
    collect: Callable[[Config], dict[str, Content]]


@dataclass
class Bundle:
    """What :func:`collect` gathered: the members by name, and a line per part that failed."""

    kiosk_id: str
    created: datetime
    members: dict[str, bytes] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


# --- the parts --------------------------------------------------------------------------------


def _masked(value):
    """A JSON value with every 5+ digit run in its strings masked (a central's error text, a
    file name: whatever a contract could hide in)."""
    if isinstance(value, str):
        return mask_digit_runs(value)
    if isinstance(value, dict):
        return {k: _masked(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_masked(v) for v in value]
    return value


def _status(cfg: Config) -> dict[str, Content]:
    from device.status.build import build_report
    from device.status.render import render
    from device.status.report import StatusReport

    # Masked as JSON, then read back: the text shows exactly what the JSON holds.
    masked = _masked(json.loads(json.dumps(build_report(cfg).to_json(), default=str)))
    return {"status.json": masked, "status.txt": f"kiosk {cfg.kiosk.id}\n" + render(StatusReport.from_json(masked))}


def _config(cfg: Config) -> dict[str, Content]:
    from device.config import dump

    return {"config.toml": dump(cfg)}


def _requirements() -> list[str]:
    """The kiosk's dependencies by name: the installed distribution's, else requirements.txt's."""
    from importlib import metadata

    try:
        lines = metadata.requires(DISTRIBUTION) or []
    except metadata.PackageNotFoundError:
        path = Path(__file__).resolve().parent.parent / "requirements.txt"
        lines = [line for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]
    names = (re.match(r"[A-Za-z0-9._-]+", line.strip()) for line in lines)
    return [name.group() for name in names if name]


def _versions(cfg: Config) -> dict[str, Content]:
    from importlib import metadata

    from device import __version__

    lines = [f"kiosk {__version__}", f"python {platform.python_version()} ({platform.python_implementation()}, {sys.executable})"]
    for name in _requirements():
        try:
            lines.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            lines.append(f"{name} NOT INSTALLED")
    return {"versions.txt": "\n".join(lines) + "\n"}


def _read_or_say(path: str) -> str:
    try:
        return Path(path).read_text(errors="replace").replace("\x00", "").strip()
    except OSError as e:
        return f"({e.strerror or e})"


def _os(cfg: Config) -> dict[str, Content]:
    u = platform.uname()
    return {
        "os.txt": (
            f"uname: {u.system} {u.node} {u.release} {u.version} {u.machine}\n"
            f"model: {_read_or_say('/proc/device-tree/model')}\n"
            f"uptime_s: {_read_or_say('/proc/uptime').split(' ')[0]}\n\n"
            f"/etc/os-release:\n{_read_or_say('/etc/os-release')}\n"
        )
    }


def _journal(cfg: Config) -> dict[str, Content]:
    """The kiosk's last journal lines, digit runs masked (``log.unmask`` may have let contracts in).

    Where there is no journalctl, a note says so instead: the daemon then logs to its stderr,
    wherever whoever started it sent that.
    """
    command = ["journalctl", "-u", "kiosk", "-n", str(JOURNAL_LINES), "--no-pager"]
    if shutil.which("journalctl") is None:
        return {
            "journal-note.txt": f"no journal: journalctl is not on PATH ({os.environ.get('PATH', '')}); the daemon logs to its stderr\n"
        }
    try:
        run = subprocess.run(command, capture_output=True, text=True, errors="replace", timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise Missing(f"{' '.join(command)}: {e}") from None
    if run.returncode != 0:
        raise Missing(f"{' '.join(command)} exited {run.returncode}: {run.stderr.strip()[:300]}")
    members: dict[str, Content] = {"journal.txt": mask_digit_runs(run.stdout)}
    if run.stderr.strip():  # e.g. not in the systemd-journal group: only part of the journal
        members["journal-note.txt"] = mask_digit_runs(run.stderr)
    return members


def _queue(cfg: Config) -> dict[str, Content]:
    from device.outbox.reader import open_outbox_reader

    if not Path(cfg.outbox.path).exists():
        raise Missing(f"no outbox at {cfg.outbox.path} (outbox.path): has the kiosk run yet?")
    outbox = open_outbox_reader(cfg)
    try:
        stats = outbox.stats().to_json()
        dead = [
            {"seq": r.seq, "id": r.id, "contract": mask_contract(r.contract), "scanned_at": r.scanned_at,
             "attempts": r.attempts, "dead_reason": r.dead_reason}
            for r in outbox.list("dead")
        ]  # fmt: skip
    finally:
        outbox.close()
    return {"queue.json": _masked({**stats, "dead_identifications": dead})}


def _node_line(node: Path) -> str:
    import grp
    import pwd
    import stat

    st = node.lstat()
    try:
        owner = pwd.getpwuid(st.st_uid).pw_name
    except KeyError:
        owner = str(st.st_uid)
    try:
        group = grp.getgrgid(st.st_gid).gr_name
    except KeyError:
        group = str(st.st_gid)
    line = f"{stat.filemode(st.st_mode)} {owner}:{group} {node}"
    if node.is_symlink():
        line += f" -> {os.readlink(node)}"
    return line


def _devices(cfg: Config) -> dict[str, Content]:
    """The camera, media and GPIO nodes with owner and mode (who may open them), and each video
    node's driver and name from sysfs."""
    from device.camera.v4l2 import DEV_PREFIX_ENV, v4l2_driver

    prefix = os.environ.get(DEV_PREFIX_ENV, "")
    dev = Path(prefix + "/dev")
    lines = [f"# device nodes under {dev}" + (f" ({DEV_PREFIX_ENV})" if prefix else "")]
    for pattern in DEVICE_GLOBS:
        nodes = sorted(dev.glob(pattern))
        lines.append(f"\n/dev/{pattern}: {len(nodes) or 'none'}")
        for node in nodes:
            line = _node_line(node)
            if node.name.startswith("video") or "/v4l/" in str(node):
                driver = v4l2_driver("/dev/" + str(node.relative_to(dev)))
                line += f"  [driver {driver[0] or '?'}, name {driver[1] or '?'}]" if driver else "  [not in sysfs]"
            lines.append("  " + line)
    return {"devices.txt": "\n".join(lines) + "\n"}


def _disk_and_clock(cfg: Config) -> dict[str, Content]:
    from device import status
    from device.clock import TIMESYNC_FLAG, ntp_synchronized, read_adjtimex, utc_iso

    outbox = Path(cfg.outbox.path)
    sizes = {}
    for path in (outbox, Path(f"{outbox}-wal"), Path(f"{outbox}-shm")):
        try:
            sizes[path.name] = path.stat().st_size
        except OSError:
            pass
    try:
        reading = read_adjtimex()
        kernel = {"state": reading.state, "status": reading.status, "maxerror_us": reading.maxerror_us}
    except OSError as e:
        kernel = {"error": str(e)}
    return {
        "disk-clock.json": {
            "outbox_path": str(outbox),
            "outbox_filesystem_free_bytes": status.disk_free_bytes(outbox),
            "outbox_file_bytes": sizes,
            "utc_now": utc_iso(datetime.now(UTC)),
            "clock_synced": ntp_synchronized(),
            "adjtimex": kernel,
            "timesyncd_flag": TIMESYNC_FLAG.exists(),
        }
    }


#: The snapshot's file in the bundle, and how long the bundle waits for its frame.
SNAPSHOT_FILE = "snapshot.png"
SNAPSHOT_TIMEOUT_S = 10.0


def _snapshot(cfg: Config) -> dict[str, Content]:
    """A snapshot taken now, masked and drawn (the daemon's latest frame while it runs, else
    the camera's), and what was decoded in it, masked."""
    import cv2

    from device import status
    from device.daemon.snapshot import SnapshotError, SnapshotOptions, from_camera, from_daemon

    runtime = Path(cfg.kiosk.runtime_dir)
    masked = SnapshotOptions(masked=True)
    try:
        if status.read_status(runtime).running:
            shot = from_daemon(runtime, masked, SNAPSHOT_TIMEOUT_S, running=lambda: status.read_status(runtime).running)
        else:
            _, shot = from_camera(cfg, masked, SNAPSHOT_TIMEOUT_S)
    except SnapshotError as e:
        raise Missing(f"no snapshot: {e}") from None
    ok, png = cv2.imencode(".png", shot.image)
    if not ok:
        raise Missing("no snapshot: the frame could not be encoded")
    return {SNAPSHOT_FILE: png.tobytes(), "snapshot.json": {"size": list(shot.size), "readings": shot.readings}}


#: Every part of a bundle, in the order the archive lists them.
PARTS: tuple[Part, ...] = (
    Part("status", _status),
    Part("config", _config),
    Part("versions", _versions),
    Part("os", _os),
    Part("journal", _journal),
    Part("queue", _queue),
    Part("devices", _devices),
    Part("disk and clock", _disk_and_clock),
    Part("snapshot", _snapshot),
)


# --- collecting and writing -------------------------------------------------------------------


@contextmanager
def _same_user() -> Iterator[None]:
    """Give back the user a part became: reading the outbox as root becomes its owner
    (device.cli.queue), and the next parts (the journal) and the archive are root's again."""
    uid, gid = os.geteuid(), os.getegid()
    try:
        yield
    finally:
        if os.geteuid() != uid:
            os.seteuid(uid)  # first: only root may set the group back
        if os.getegid() != gid:
            os.setegid(gid)


def secrets_of(cfg: Config) -> list[bytes]:
    """The token as the config gives it and as the token file holds it (when this user may read
    it): what no member may contain."""
    found = {cfg.api.token.strip()}
    if cfg.api.token_file:
        try:
            found.add(Path(cfg.api.token_file).read_text().strip())
        except (OSError, UnicodeDecodeError):
            pass  # unreadable here: then no part could have read it either
    return sorted((s.encode() for s in found if s), key=len, reverse=True)


def scrub(data: bytes, secrets: list[bytes]) -> bytes:
    """``data`` with every secret replaced by :data:`SCRUBBED`.

    >>> scrub(b"Authorization: Bearer s3cret", [b"s3cret"])
    b'Authorization: Bearer ********'
    """
    for secret in secrets:
        data = data.replace(secret, SCRUBBED)
    return data


def _encode(content: Content) -> bytes:
    if isinstance(content, dict):
        return (json.dumps(content, indent=1, default=str) + "\n").encode()
    return content if isinstance(content, bytes) else content.encode()


def collect(cfg: Config, parts: tuple[Part, ...] = PARTS, problems: list[str] | None = None) -> Bundle:
    """Collect every part; one that fails is a line in ``problems.txt`` (``problems``: lines
    known before, a configuration that did not load)."""
    bundle = Bundle(kiosk_id=cfg.kiosk.id, created=datetime.now(UTC), problems=list(problems or []))
    secrets = secrets_of(cfg)
    for part in parts:
        try:
            with _same_user():
                members = part.collect(cfg)
        except Missing as e:
            bundle.problems.append(f"{part.name}: {e}")
            continue
        except Exception as e:  # any failure of one part: said in one line, the rest still collected
            bundle.problems.append(f"{part.name}: {type(e).__name__}: {e}")
            continue
        for name, content in members.items():
            bundle.members[name] = scrub(_encode(content), secrets)
    text = "".join(f"{line}\n" for line in bundle.problems) or "no problems: every part was collected\n"
    bundle.members["problems.txt"] = scrub(mask_digit_runs(text).encode(), secrets)
    return bundle


def file_safe(text: str) -> str:
    """``text`` fit for one file name: letters, digits, ``.``, ``_`` and ``-``; others as ``_``.

    >>> file_safe("kiosk/riga 5")
    'kiosk_riga_5'
    """
    return re.sub(r"[^A-Za-z0-9._-]", "_", text).lstrip(".") or "kiosk"


def bundle_name(kiosk_id: str, created: datetime) -> str:
    """``kiosk-bundle-<kiosk id>-<UTC time>``: the archive's name without ``.tar.gz``, and its folder."""
    return f"kiosk-bundle-{file_safe(kiosk_id)}-{created.astimezone(UTC):%Y%m%dT%H%M%SZ}"


def default_path(bundle: Bundle, folder: Path = Path("/tmp")) -> Path:
    """Where an archive goes without ``--out``: ``/tmp/kiosk-bundle-<kiosk id>-<UTC time>.tar.gz``.

    >>> default_path(Bundle("kiosk 7", datetime(2026, 12, 2, 8, 15, tzinfo=UTC)))
    PosixPath('/tmp/kiosk-bundle-kiosk_7-20261202T081500Z.tar.gz')
    """
    return folder / f"{bundle_name(bundle.kiosk_id, bundle.created)}.tar.gz"


def write(bundle: Bundle, path: Path) -> int:
    """Write the archive to ``path``, mode 0600 from its creation on; returns its size in bytes.

    Written to a new file beside ``path`` (``O_EXCL``: never through someone's symlink) and
    renamed over it, so a reader never sees half an archive.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    folder = bundle_name(bundle.kiosk_id, bundle.created)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as f, tarfile.open(fileobj=f, mode="w:gz") as tar:
            for name, data in bundle.members.items():
                info = tarfile.TarInfo(f"{folder}/{name}")
                info.size, info.mode, info.mtime = len(data), 0o600, int(time.time())
                tar.addfile(info, io.BytesIO(data))
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path.stat().st_size
