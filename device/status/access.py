"""Who may read what the kiosk keeps (the token, the status, the queue), and what to say when someone may not.

::

    print(permission_advice(error, "kiosk diag camera"))
    warning = token_file_warning("/etc/kiosk/token")   # None when only root and the kiosk may read it
"""

from __future__ import annotations

import os

from device.redact import escape

#: Who may read the token file: root, and the kiosk (the service's user and group).
TOKEN_READERS = ("root", "kiosk")
#: The technicians' group: may read status, the queue and snapshots (never the token).
TECHNICIANS_GROUP = "kiosk-tech"


def permission_advice(error: PermissionError, command: str) -> str:
    """What to do about ``error`` met by ``command`` (e.g. ``"kiosk diag camera"``), in one line.

    >>> print(permission_advice(PermissionError(13, "Permission denied", "/run/kiosk/requests"), "kiosk diag camera"))
    ... # doctest: +NORMALIZE_WHITESPACE
    no permission for /run/kiosk/requests: run it as root (sudo kiosk diag camera ...) or from an account
    in the technicians' group kiosk-tech (sudo usermod -aG kiosk-tech $USER, then log in again)
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
