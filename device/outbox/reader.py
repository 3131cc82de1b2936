"""The daemon's outbox opened by another process: a technician's command, the diagnostics bundle.

Never created, never moved aside, no integrity check (that is the daemon's, at start). Root
(``sudo kiosk queue ...``) opens it as its owner; anyone else who may not write its folder opens
it read-only, and a command that would write is told to use sudo before anything is tried::

    outbox = open_outbox_reader(cfg)                               # kiosk status, kiosk queue list
    outbox = open_outbox_reader(cfg, write="kiosk queue retry")   # OutboxError: "... sudo kiosk queue retry ..."
"""

from __future__ import annotations

import os
import pwd
from pathlib import Path
from typing import TYPE_CHECKING

from device.outbox.store import Outbox, OutboxError

if TYPE_CHECKING:
    from device.config import Config


def become_owner(path: Path) -> None:
    """Run as the owner of ``path`` (a file or folder of the daemon's) when started as root.

    SQLite creates the -wal and -shm files as whoever opens the database first; root-owned ones
    would lock the daemon (user kiosk) out of its own outbox (or replaced-card list).

    With the owner's supplementary groups too (``initgroups``): the token (root:kiosk 0640) is read
    through the group kiosk, and without it `sudo kiosk diag api` and `sudo kiosk revocations sync`
    could not read the token they send once they had become the owner.
    """
    owner = path.stat()
    if os.geteuid() == 0 and owner.st_uid != 0:
        try:
            user = pwd.getpwuid(owner.st_uid)
        except KeyError:  # a number without a name: no groups to take
            os.setgroups([owner.st_gid])
        else:
            os.initgroups(user.pw_name, user.pw_gid)
        os.setegid(owner.st_gid)
        os.seteuid(owner.st_uid)


def open_outbox_reader(cfg: Config, *, write: str | None = None) -> Outbox:
    """The daemon's outbox opened beside it; never created, never moved aside.

    Root opens it as its owner. Anyone else who may not write its folder (a technician in the
    group that may read the files) opens it read-only; a command that writes (``write`` is its
    name, e.g. ``"kiosk queue ack"``) is then told to use sudo, before anything is tried.
    """
    path = Path(cfg.outbox.path)
    become_owner(path)
    may_write = os.access(path.parent, os.W_OK) and os.access(path, os.W_OK)
    if write and not may_write:
        raise OutboxError(f"the outbox {path} may be changed only by root and the daemon's user ({_owner(path)}): sudo {write} ...")
    return Outbox.from_config(cfg, on_corrupt="raise", check_integrity=False, create=False, read_only=not may_write)


def _owner(path: Path) -> str:
    import pwd

    try:
        return pwd.getpwuid(path.stat().st_uid).pw_name
    except (KeyError, OSError):
        return "its owner"
