"""What a Raspberry Pi's firmware says about its power and heat: under-voltage, a capped clock,
throttling, the soft temperature limit, each now and since boot.

The firmware keeps one bit field (``vcgencmd get_throttled``): bits 0-3 are the conditions now,
bits 16-19 the same conditions at any time since boot. Raspberry Pi OS kernels show it in sysfs
as hex (``/sys/devices/platform/soc/soc:firmware/get_throttled``, e.g. ``50005``), read here under
the swappable sysfs prefix (:mod:`device.sysfs`); without that file, ``vcgencmd get_throttled``
(``throttled=0x50005``) is asked once, and kept only if it answers. Any other machine has neither:
then there is nothing to report, which is not the same as "all well"::

    >>> flags = ThrottleFlags(0x50005)
    >>> flags.now(UNDER_VOLTAGE), flags.since_boot(THROTTLED), flags.now(SOFT_TEMP_LIMIT)
    (True, True, False)
    >>> parse_throttled("throttled=0x50005\\n"), parse_throttled("50005\\n"), parse_throttled("0\\n")
    (327685, 327685, 0)

The service's sandbox (``DevicePolicy=closed``) keeps ``/dev/vchiq`` from ``vcgencmd``; the sysfs
file is what the daemon reads on a Pi. Newer kernels log a one-time "deprecated" warning when it
is first read (their hwmon ``in0_lcrit_alarm`` tells only under-voltage).
"""

from __future__ import annotations

import logging
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from device.sysfs import SYSFS_PREFIX_ENV, prefixed

log = logging.getLogger(__name__)

#: The firmware's throttling word in sysfs (Raspberry Pi OS kernels).
SYSFS_PATH = "/sys/devices/platform/soc/soc:firmware/get_throttled"
#: The tool that asks the firmware directly, where the sysfs file is missing.
VCGENCMD = "vcgencmd"
VCGENCMD_TIMEOUT_S = 2.0

#: The conditions, by their bit for "now"; the same condition since boot is 16 bits higher.
UNDER_VOLTAGE = "under_voltage"
FREQ_CAPPED = "freq_capped"
THROTTLED = "throttled"
SOFT_TEMP_LIMIT = "soft_temp_limit"
CONDITIONS: dict[str, int] = {UNDER_VOLTAGE: 0, FREQ_CAPPED: 1, THROTTLED: 2, SOFT_TEMP_LIMIT: 3}
SINCE_BOOT_SHIFT = 16


def parse_throttled(text: str) -> int:
    """The firmware's word from sysfs (``50005``) or vcgencmd (``throttled=0x50005``), always hex; ValueError otherwise."""
    value = text.strip().rpartition("=")[2]
    return int(value, 16)


@dataclass(frozen=True)
class ThrottleFlags:
    """The firmware's throttling word, read by condition (one of :data:`CONDITIONS`)."""

    word: int

    def now(self, condition: str) -> bool:
        return bool(self.word >> CONDITIONS[condition] & 1)

    def since_boot(self, condition: str) -> bool:
        return bool(self.word >> (CONDITIONS[condition] + SINCE_BOOT_SHIFT) & 1)


class ThrottleReader:
    """Reads the flags where this machine's firmware tells them; :meth:`read` is None where it does not.

    Which way works is found on the first read and kept: the sysfs file when it is there, else
    ``vcgencmd`` when it answers, else none (no more tries: a machine that is no Pi stays one).
    A read that fails after working once is None for that read, and logged once.
    """

    def __init__(self, sysfs_path: str = SYSFS_PATH):
        self.path: Path = prefixed(sysfs_path, SYSFS_PREFIX_ENV)
        self._way: str | None = None  # "sysfs", "vcgencmd" or "none", once known
        self._failed = False

    @property
    def way(self) -> str | None:
        """How the flags are read here ("sysfs", "vcgencmd", "none"), None before the first read."""
        return self._way

    def read(self) -> ThrottleFlags | None:
        if self._way is None:
            self._way = self._probe()
            if self._way != "none":
                log.info("metrics: the Pi's throttling flags are read from %s", self.path if self._way == "sysfs" else VCGENCMD)
        if self._way == "none":
            return None
        try:
            word = parse_throttled(self._text())
        except (OSError, ValueError, subprocess.SubprocessError) as e:
            if not self._failed:
                log.warning("metrics: cannot read the Pi's throttling flags (%s): no kiosk_pi_throttled series meanwhile", e)
            self._failed = True
            return None
        self._failed = False
        return ThrottleFlags(word)

    def _probe(self) -> str:
        if self.path.exists():
            return "sysfs"
        if shutil.which(VCGENCMD) is not None:
            try:
                parse_throttled(self._vcgencmd())
                return "vcgencmd"
            except (OSError, ValueError, subprocess.SubprocessError):
                pass
        return "none"

    def _text(self) -> str:
        return self.path.read_text(encoding="ascii") if self._way == "sysfs" else self._vcgencmd()

    @staticmethod
    def _vcgencmd() -> str:
        done = subprocess.run([VCGENCMD, "get_throttled"], capture_output=True, text=True, timeout=VCGENCMD_TIMEOUT_S, check=True)
        return done.stdout
