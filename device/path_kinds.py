"""What a configured path is on disk, checked before anything touches it.

The kiosk creates, chmods and (when damaged) moves aside its SQLite files, and makes its runtime
folder. A typo in the configuration must not turn that on someone else's file: ``outbox.path =
"/dev/null"`` once chmodded the machine's ``/dev/null``, ``"/etc/kiosk/kiosk.toml"`` would have
moved the config away, a folder would have been chmodded 0640. So ``kiosk config check`` and
``kiosk run`` refuse a path that exists as the wrong kind (the configuration's check, exit 78),
and the outbox and the replaced-card list refuse it again where they open, chmod or move aside::

    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> database_problem(folder).startswith(folder + " is a folder")
    True
    >>> database_problem("/dev/null")
    '/dev/null is a character device, not a file: the kiosk keeps an SQLite file there; name a new file'
    >>> database_problem(os.path.join(folder, "outbox.db")) is None   # not there yet: the kiosk creates it
    True
    >>> folder_problem("/dev/null")
    '/dev/null is a character device, expected a folder'

A file the kiosk may keep is one that is empty, begins with SQLite's header, or (a damaged outbox)
has the kiosk's high-water mark beside it. Nothing here imports the outbox: the configuration's
check uses it too.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

#: The first 16 bytes of every SQLite database file.
SQLITE_HEADER = b"SQLite format 3\x00"
#: The outbox's high-water mark is ``<outbox>`` with this suffix (:mod:`device.outbox.highwater`).
MARK_SUFFIX = ".hwm"


def mark_path(outbox: str | os.PathLike[str]) -> Path:
    """Where the high-water mark of the outbox at ``outbox`` is kept.

    >>> mark_path("/var/lib/kiosk/outbox.db")
    PosixPath('/var/lib/kiosk/outbox.db.hwm')
    """
    return Path(f"{os.fspath(outbox)}{MARK_SUFFIX}")


_KINDS = (
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISLNK, "a symbolic link"),
)


def kind(mode: int) -> str:
    """What a file of this mode is, in words: ``a folder``, ``a character device``, ``a file``."""
    return next((name for test, name in _KINDS if test(mode)), "a file")


def _stat(path: Path) -> os.stat_result | str | None:
    """The path's stat (following symlinks); None when it is not there, "unknown" when this user
    may not look (the opening reports that)."""
    try:
        return path.stat()
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError:
        return "unknown"


def _parent_problem(path: Path) -> str | None:
    """The nearest folder above ``path`` that exists must be a folder (not a file one level up)."""
    parent = path.parent
    while parent != parent.parent:
        st = _stat(parent)
        if isinstance(st, str):
            return None
        if st is not None:
            return None if stat.S_ISDIR(st.st_mode) else f"{parent} is {kind(st.st_mode)}, not a folder: {path} cannot be made in it"
        parent = parent.parent
    return None


def database_problem(path: str | os.PathLike[str], *, mark: str | os.PathLike[str] | None = None) -> str | None:
    """Why the kiosk must not create, chmod or move aside an SQLite file at ``path``, or None.

    None when nothing is there yet (the folder above may be made), or when a regular file is
    there that is empty, begins with :data:`SQLITE_HEADER`, or has ``mark`` (the outbox's
    high-water mark) beside it: a damaged outbox, which the daemon moves aside and salvages.
    A path this user may not look at is the opening's to report.
    """
    path = Path(path)
    st = _stat(path)
    if not isinstance(st, os.stat_result):
        return None if st else _parent_problem(path)
    if stat.S_ISDIR(st.st_mode):
        return f"{path} is a folder, expected the SQLite file the kiosk keeps (e.g. {path / 'outbox.db'})"
    if not stat.S_ISREG(st.st_mode):
        return f"{path} is {kind(st.st_mode)}, not a file: the kiosk keeps an SQLite file there; name a new file"
    if st.st_size == 0 or (mark is not None and Path(mark).exists()):
        return None
    try:
        with open(path, "rb") as f:
            head = f.read(len(SQLITE_HEADER))
    except OSError:
        return None
    if head == SQLITE_HEADER:
        return None
    return (
        f"{path} is not an SQLite database and not the kiosk's (no high-water mark beside it): the kiosk would move it "
        "aside and start a new file there; check the path (name a new file)"
    )


def folder_problem(path: str | os.PathLike[str]) -> str | None:
    """Why ``path`` cannot be a folder the kiosk makes and writes in, or None (a folder, or nothing yet)."""
    path = Path(path)
    st = _stat(path)
    if not isinstance(st, os.stat_result):
        return None if st else _parent_problem(path)
    return None if stat.S_ISDIR(st.st_mode) else f"{path} is {kind(st.st_mode)}, expected a folder"
