"""Requests per kiosk: a token bucket per kiosk id, so one kiosk (or a forger in its name) cannot
crowd out the others. Over its rate a kiosk is answered 429 with ``Retry-After``; its client waits
that long and loses nothing.

Each server process keeps its own buckets: with N worker processes a kiosk may get up to N times
the rate (its requests spread over the workers). That bound is the one documented.

>>> rate = KioskRate(rate_per_s=1.0, burst=2, clock=iter([0.0, 0.0, 0.0, 0.5]).__next__)
>>> rate.take("k-1"), rate.take("k-1"), rate.take("k-1") > 0, round(rate.take("k-1"), 2)
(0.0, 0.0, True, 0.5)
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

#: Buckets kept at most; beyond it, the full ones (kiosks quiet long enough to be back at their
#: burst) are forgotten, so a flood of made-up kiosk names cannot grow memory without bound.
MAX_BUCKETS = 100_000


class KioskRate:
    """``rate_per_s`` requests a second per kiosk on average, ``burst`` at once. Thread-safe."""

    def __init__(self, rate_per_s: float, burst: int, clock: Callable[[], float] = time.monotonic):
        if rate_per_s <= 0 or burst < 1:
            raise ValueError("the rate must be above 0 and the burst at least 1")
        self.rate_per_s = rate_per_s
        self.burst = burst
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[str, tuple[float, float]] = {}  # kiosk -> (tokens, when)

    def take(self, kiosk_id: str) -> float:
        """Take one request from the kiosk's bucket: 0.0 if allowed, else the seconds to wait."""
        now = self._clock()
        with self._lock:
            tokens, when = self._buckets.get(kiosk_id, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - when) * self.rate_per_s)
            if tokens >= 1.0:
                self._buckets[kiosk_id] = (tokens - 1.0, now)
                if len(self._buckets) > MAX_BUCKETS:
                    self._forget_full(now)
                return 0.0
            self._buckets[kiosk_id] = (tokens, now)
            return (1.0 - tokens) / self.rate_per_s

    def _forget_full(self, now: float) -> None:
        full = [k for k, (tokens, when) in self._buckets.items() if tokens + (now - when) * self.rate_per_s >= self.burst]
        for kiosk_id in full:
            del self._buckets[kiosk_id]
