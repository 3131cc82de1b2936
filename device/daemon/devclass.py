"""The device classes the service may open, and whether a driver registered one after it started.

systemd turns ``DeviceAllow=char-video4linux`` (and the unit's other ``char-*`` classes) into
device numbers by reading ``/proc/devices`` once, when the unit starts. A class whose driver has
not loaded yet (the camera or GPIO driver still loading while the kiosk starts at boot) gets no
rule, and the service cannot open those devices until it is started again, even after the driver
is there. No ``After=`` names "every camera and GPIO driver has loaded" (udev loads them as the
hardware is found, and systemd-udev-settle is deprecated), so the daemon watches instead: a class
missing at start that appears later makes it exit with :data:`EXIT_RESTART`, and systemd's
``Restart=on-failure`` starts it again with the class allowed::

    watch = DeviceClassWatch()          # reads /proc/devices now
    ...
    if watch.appeared():                # ['video4linux']: restart to be allowed to open it
        ...
"""

from __future__ import annotations

from pathlib import Path

#: The classes the unit's DeviceAllow= lines name (tests/test_camera_platform.py keeps them equal).
ALLOWED_CLASSES = ("video4linux", "media", "dma_heap", "gpiochip")
PROC_DEVICES = Path("/proc/devices")
#: Exit code asking systemd for a restart (sysexits.h EX_TEMPFAIL); any non-zero code but 78 does.
EXIT_RESTART = 75


def char_classes(proc_devices: Path = PROC_DEVICES) -> set[str] | None:
    """The names in the "Character devices:" part of ``/proc/devices``; None if it cannot be read."""
    try:
        text = proc_devices.read_text()
    except OSError:
        return None
    names: set[str] = set()
    in_char = False
    for line in text.splitlines():
        if line.strip().endswith("devices:"):
            in_char = line.strip() == "Character devices:"
            continue
        parts = line.split()
        if in_char and len(parts) == 2 and parts[0].isdigit():
            names.add(parts[1])
    return names


class DeviceClassWatch:
    """Remembers which of ``classes`` were missing from ``proc_devices`` when it was made.

    ``proc_devices`` is swappable so tests run on a fake file. If the file cannot be read, nothing
    is watched (never a restart loop on a system without /proc).
    """

    def __init__(self, classes: tuple[str, ...] = ALLOWED_CLASSES, proc_devices: Path = PROC_DEVICES) -> None:
        self.proc_devices = Path(proc_devices)
        present = char_classes(self.proc_devices)
        self.missing_at_start = set() if present is None else set(classes) - present

    def appeared(self) -> list[str]:
        """Classes missing at start that the kernel has registered since (sorted); [] if none."""
        if not self.missing_at_start:
            return []
        present = char_classes(self.proc_devices) or set()
        return sorted(self.missing_at_start & present)
