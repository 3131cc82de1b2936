"""Time for identifications: UTC wall time, whether it can be trusted, and a monotonic clock.

A Raspberry Pi before the 5 has no hardware clock: after a power cut its wall clock is wrong until
NTP syncs. So every identification records whether the clock was synchronised when it was made,
and nothing orders or deduplicates by wall time (the outbox has a sequence number for that).

"Synchronised" is the kernel's view, read with ``adjtimex(2)`` like systemd's ``timedatectl``
(``NTPSynchronized``): the maximum error the NTP discipline reports is under 16 s. Where the
system call is unavailable, the flag file systemd-timesyncd writes is the fallback.

Tests never depend on the host: pass a :class:`FakeClock`, or call :func:`ntp_synchronized` with
their own ``adjtimex`` and flag path::

    >>> clock = FakeClock("2024-05-02T09:15:00Z", synced=False)
    >>> utc_iso(clock.now()), clock.synced()
    ('2024-05-02T09:15:00.000Z', False)
    >>> clock.advance(90); utc_iso(clock.now())
    '2024-05-02T09:16:30.000Z'
    >>> ntp_synchronized(adjtimex=lambda: TimexReading(state=0, status=0, maxerror_us=250_000))
    True
"""

from __future__ import annotations

import ctypes
import ctypes.util
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Protocol

#: systemd-timesyncd touches this file once it has synchronised the clock.
TIMESYNC_FLAG = Path("/run/systemd/timesync/synchronized")

#: The kernel's "clock not synchronised" status bit (linux/timex.h).
STA_UNSYNC = 0x0040
#: adjtimex's return value when the clock is not synchronised (linux/timex.h).
TIME_ERROR = 5
#: The kernel sets STA_UNSYNC once maxerror passes NTP_PHASE_LIMIT (16 s); systemd uses the same
#: threshold and ignores STA_UNSYNC itself, which chrony may leave set to keep the RTC untouched.
MAX_SYNCED_ERROR_US = 16_000_000


@dataclass(frozen=True)
class TimexReading:
    """What ``adjtimex(2)`` says about the clock: return state, status bits, max error (microseconds)."""

    state: int
    status: int
    maxerror_us: int


class _Timeval(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_usec", ctypes.c_long)]


class _Timex(ctypes.Structure):
    # struct timex from <sys/timex.h>; ``long`` fields follow the platform (32-bit on armhf),
    # which is what the plain ``adjtimex`` symbol expects. The trailing padding is the kernel's.
    _fields_ = [
        ("modes", ctypes.c_uint),
        ("offset", ctypes.c_long),
        ("freq", ctypes.c_long),
        ("maxerror", ctypes.c_long),
        ("esterror", ctypes.c_long),
        ("status", ctypes.c_int),
        ("constant", ctypes.c_long),
        ("precision", ctypes.c_long),
        ("tolerance", ctypes.c_long),
        ("time", _Timeval),
        ("tick", ctypes.c_long),
        ("ppsfreq", ctypes.c_long),
        ("jitter", ctypes.c_long),
        ("shift", ctypes.c_int),
        ("stabil", ctypes.c_long),
        ("jitcnt", ctypes.c_long),
        ("calcnt", ctypes.c_long),
        ("errcnt", ctypes.c_long),
        ("stbcnt", ctypes.c_long),
        ("tai", ctypes.c_int),
        ("_padding", ctypes.c_int * 11),
    ]


_libc: ctypes.CDLL | None = None


def read_adjtimex() -> TimexReading:
    """Ask the kernel (read only: ``modes = 0``). Raises OSError where adjtimex is unavailable."""
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    try:
        adjtimex = _libc.adjtimex
    except AttributeError:
        raise OSError("adjtimex is not available on this system") from None
    tx = _Timex()
    state = adjtimex(ctypes.byref(tx))
    if state < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"adjtimex failed: {err}")
    return TimexReading(state=state, status=tx.status, maxerror_us=tx.maxerror)


def ntp_synchronized(
    adjtimex: Callable[[], TimexReading] | None = read_adjtimex,
    flag_path: Path | None = TIMESYNC_FLAG,
) -> bool:
    """Is the wall clock synchronised (NTP)? Never raises; False when nothing can tell.

    ``adjtimex`` (None to skip it) is asked first; if it fails, the systemd-timesyncd flag file
    decides (None to skip it).
    """
    if adjtimex is not None:
        try:
            reading = adjtimex()
        except OSError:
            pass
        else:
            return 0 <= reading.maxerror_us < MAX_SYNCED_ERROR_US
    if flag_path is not None:
        try:
            return flag_path.exists()
        except OSError:
            return False
    return False


def utc_iso(moment: datetime) -> str:
    """A UTC time as fixed-width ISO 8601 with milliseconds and ``Z`` (sorts as text)."""
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def parse_utc(text: str) -> datetime:
    """The inverse of :func:`utc_iso` (also reads other ISO 8601 forms with an offset)."""
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


class Clock(Protocol):
    """What the outbox and the forwarder need to know about time."""

    def now(self) -> datetime:
        """The wall clock, UTC, timezone-aware."""

    def synced(self) -> bool:
        """Whether the wall clock is NTP-synchronised."""

    def monotonic(self) -> float:
        """Seconds on a clock that never jumps (for waits and ages within one process)."""


class SystemClock:
    """The machine's clocks.

    The adjtimex answer is cached for ``synced_cache_s`` (one system call per identification
    would be cheap too; the cache keeps a burst of commits from asking again and again).
    """

    def __init__(self, synced_cache_s: float = 1.0, check: Callable[[], bool] = ntp_synchronized):
        self._cache_s = synced_cache_s
        self._check = check
        self._cached: tuple[float, bool] | None = None

    def now(self) -> datetime:
        return datetime.now(UTC)

    def synced(self) -> bool:
        now = time.monotonic()
        if self._cached is None or now - self._cached[0] >= self._cache_s:
            self._cached = (now, self._check())
        return self._cached[1]

    def monotonic(self) -> float:
        return time.monotonic()


class FakeClock:
    """A clock tests move by hand: ``advance()`` moves both clocks, ``jump()`` only the wall clock.

    >>> c = FakeClock("2030-01-01T00:00:00Z"); c.jump(-86400 * 365); c.now().year
    2029
    """

    def __init__(self, start: str | datetime = "2024-05-02T09:15:00Z", synced: bool = True):
        self._now = parse_utc(start) if isinstance(start, str) else start.astimezone(UTC)
        self._mono = 1000.0
        self._synced = synced
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def synced(self) -> bool:
        return self._synced

    def monotonic(self) -> float:
        with self._lock:
            return self._mono

    def advance(self, seconds: float) -> None:
        """Time passes: both clocks move forward."""
        with self._lock:
            self._now += timedelta(seconds=seconds)
            self._mono += seconds

    def jump(self, seconds: float) -> None:
        """The wall clock is set (NTP after a power cut): only it moves, by ``seconds`` (may be < 0)."""
        with self._lock:
            self._now += timedelta(seconds=seconds)

    def set_synced(self, synced: bool) -> None:
        self._synced = synced
