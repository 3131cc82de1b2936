"""An output's health: its queue, what it dropped, what failed. ``OutputRunner.status()`` gives one per output::

    for name, health in runner.status().items():
        print(name, health.queued, health.dropped, health.failures)
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class OutputHealth:
    """One output's queue: events waiting, events dropped by kind (``frame`` ones are normal for a
    slow output, any other is worth a look), calls that raised."""

    queued: int
    dropped: dict[str, int]
    failures: int

    @classmethod
    def of(cls, health) -> OutputHealth:
        """From ``OutputRunner.status()``'s value for one output: an object with these fields, or a dict of them.

        >>> OutputHealth.of({"queued": 1, "dropped": {"frame": 3}, "failures": 0})
        OutputHealth(queued=1, dropped={'frame': 3}, failures=0)
        """
        if isinstance(health, dict):
            return cls(health["queued"], dict(health["dropped"]), health["failures"])
        return cls(health.queued, dict(health.dropped), health.failures)
