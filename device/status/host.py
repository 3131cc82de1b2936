"""What the host says about itself for ``kiosk status``: free disk where the outbox is, the CPU temperature.

::

    disk_free_bytes("/var/lib/kiosk/outbox.db")   # 27345678336
    cpu_temperature_c()                            # 48.3 on a Pi, None where there is no sensor
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from device.sysfs import SYSFS_PREFIX_ENV  # where sysfs is: a fake tree in tests (the camera's too)


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
