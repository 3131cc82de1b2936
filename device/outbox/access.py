"""Why this process cannot write the outbox, told as a technician can act on it.

SQLite only says ``attempt to write a readonly database`` (or ``unable to open database file``);
the fix is almost always the owner of the folder or of the file, which this names::

    outbox.path /var/lib/kiosk/outbox.db: the folder /var/lib/kiosk is owned by root:root mode 0755
    and the kiosk runs as kiosk (uid 999): it cannot write there; sudo chown kiosk: /var/lib/kiosk
"""

from __future__ import annotations

import grp
import os
import pwd
from collections.abc import Callable
from pathlib import Path
from typing import Any


def _name(lookup: Callable[[int], Any], number: int) -> str:
    try:
        return str(lookup(number)[0])
    except KeyError:  # a number without a name (a file from another system)
        return str(number)


def _may(st: os.stat_result, uid: int, gids: set[int], want: int) -> bool:
    """Whether a user (``uid``, groups ``gids``) has the ``want`` bits (``os.W_OK | ...``) on a
    file with this stat, by its mode bits as the kernel checks them (root may do anything)."""
    if uid == 0:
        return True
    shift = 6 if st.st_uid == uid else 3 if st.st_gid in gids else 0
    return ((st.st_mode >> shift) & want) == want


def cannot_write(path: Path, user: str | None = None) -> str | None:
    """What stops this process (or, with ``user``, that user: the daemon's, for a technician
    asking why it stopped) from writing the outbox at ``path`` (its folder, the nearest one that
    exists, or the file and its -wal/-shm), or None when nothing visible does."""
    if user is None:
        uid, name = os.geteuid(), _name(pwd.getpwuid, os.geteuid())
        allowed: Callable[[Path, int], bool] = os.access
    else:
        try:
            entry = pwd.getpwnam(user)
        except KeyError:
            return None  # no such user here: nothing to say about it
        uid, name = entry.pw_uid, user
        gids = {entry.pw_gid, *os.getgrouplist(user, entry.pw_gid)}

        def allowed(p: Path, want: int) -> bool:
            return _may(p.stat(), uid, gids, want)

    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    candidates = [("the folder", folder, os.W_OK | os.X_OK)]
    candidates += [("the file", p, os.R_OK | os.W_OK) for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")) if p.exists()]
    for what, p, access in candidates:
        try:
            if allowed(p, access):
                continue
            st = p.stat()
        except OSError:  # gone meanwhile, or not ours to look at
            continue
        return (
            f"outbox.path {path}: {what} {p} is owned by {_name(pwd.getpwuid, st.st_uid)}:{_name(grp.getgrgid, st.st_gid)} "
            f"mode {st.st_mode & 0o7777:04o} and the kiosk runs as {name} (uid {uid}): it cannot write there; "
            f"sudo chown {name}: {p}"
        )
    return None
