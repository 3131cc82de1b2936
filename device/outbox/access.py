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
from pathlib import Path


def _name(lookup, number: int) -> str:
    try:
        return lookup(number)[0]
    except KeyError:  # a number without a name (a file from another system)
        return str(number)


def cannot_write(path: Path) -> str | None:
    """What stops this process from writing the outbox at ``path`` (its folder, the nearest one
    that exists, or the file and its -wal/-shm), or None when nothing visible does."""
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    candidates = [("the folder", folder, os.W_OK | os.X_OK)]
    candidates += [("the file", p, os.R_OK | os.W_OK) for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")) if p.exists()]
    for what, p, access in candidates:
        if os.access(p, access):
            continue
        st = p.stat()
        user = _name(pwd.getpwuid, os.geteuid())
        return (
            f"outbox.path {path}: {what} {p} is owned by {_name(pwd.getpwuid, st.st_uid)}:{_name(grp.getgrgid, st.st_gid)} "
            f"mode {st.st_mode & 0o7777:04o} and the kiosk runs as {user} (uid {os.geteuid()}): it cannot write there; "
            f"sudo chown {user}: {p}"
        )
    return None
