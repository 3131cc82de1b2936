"""An output's health: its queue, what it dropped, what failed. ``OutputRunner.status()`` gives one per output::

for name, health in runner.status().items():
    print(name, health.queued, health.dropped, health.failures)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class OutputHealth:
    """One output's queue: events waiting, events dropped by kind (:attr:`Event.kind
    <device.events.Event.kind>`: ``frame`` ones are normal for a slow output, any other is worth a
    look), calls that raised."""

    queued: int
    dropped: dict[str, int]
    failures: int

    @classmethod
    def from_json(cls, values: dict[str, Any]) -> OutputHealth:
        """From the status file's object for one output.

        >>> OutputHealth.from_json({"queued": 1, "dropped": {"frame": 3}, "failures": 0})
        OutputHealth(queued=1, dropped={'frame': 3}, failures=0)
        """
        return cls(values["queued"], dict(values["dropped"]), values["failures"])
