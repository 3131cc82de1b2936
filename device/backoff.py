"""How long to wait before trying again: exponential backoff, capped, with optional full jitter.

One implementation for every retry loop of the kiosk: the camera's reopen attempts, the
forwarder's deliveries and the restarts of a supervised thread (:mod:`device.threads`). Attempt ``n``
(counted from 1) waits up to ``base_s * 2**(n-1)``, never more than ``cap_s``. With full jitter the
wait is drawn uniformly from ``[0, that ceiling]``, so hundreds of kiosks coming back after a central
outage do not all knock at the same second
(the scheme from the AWS Architecture Blog's "Exponential Backoff And Jitter")::

    >>> reopen = Backoff(0.5, 4.0, jitter=False)
    >>> [reopen.next() for _ in range(5)]
    [0.5, 1.0, 2.0, 4.0, 4.0]
    >>> reopen.reset(); reopen.next()
    0.5
    >>> delivery = Backoff(1.0, 300.0, rng=random.Random(7))
    >>> delivery.ceiling(4), 0 <= delivery.delay(4) <= 8.0
    (8.0, True)

:meth:`next` counts attempts itself (a loop that lives as long as its device); :meth:`delay`
takes the attempt number from the caller (the forwarder's, stored in the outbox so that a restart
does not start again from the shortest wait). A ``Retry-After`` from a server is the caller's
business: it is a floor on the wait, not part of the backoff.
"""

from __future__ import annotations

import random

#: Doublings after which the ceiling stops growing (2**64 s is past any cap; avoids float overflow).
_MAX_DOUBLINGS = 64


class Backoff:
    """Waits between attempts: ``base_s`` doubling per attempt up to ``cap_s``; ``jitter`` draws below that.

    ``rng`` (with ``uniform(low, high)``) is for tests that need exact waits; the default is a
    private :class:`random.Random`.
    """

    def __init__(self, base_s: float, cap_s: float, *, jitter: bool = True, rng: random.Random | None = None) -> None:
        if base_s <= 0 or cap_s < base_s:
            raise ValueError(f"backoff: need 0 < base_s <= cap_s, got base_s={base_s:g}, cap_s={cap_s:g}")
        self.base_s = base_s
        self.cap_s = cap_s
        self.jitter = jitter
        self._rng = rng or random.Random()
        self.attempts = 0  #: attempts counted by :meth:`next` since the last :meth:`reset`

    def ceiling(self, attempt: int) -> float:
        """The longest wait after failed attempt number ``attempt`` (1 for the first; below 1 counts as 1)."""
        doublings = min(max(attempt, 1), _MAX_DOUBLINGS) - 1
        return min(self.cap_s, self.base_s * 2**doublings)

    def delay(self, attempt: int) -> float:
        """The wait after failed attempt number ``attempt``: the ceiling, or a draw below it with jitter."""
        ceiling = self.ceiling(attempt)
        return self._rng.uniform(0, ceiling) if self.jitter else ceiling

    def next(self) -> float:
        """Count one more failed attempt and return the wait before the next one."""
        self.attempts += 1
        return self.delay(self.attempts)

    def reset(self) -> None:
        """Back to the shortest wait (the thing worked again)."""
        self.attempts = 0
