"""Fault injection for the reference central: the failures a kiosk must survive, on demand.

All faults are off by default. Rates are probabilities per POST of a batch, drawn from one seeded
random generator so that a run can be repeated (``--seed``).

>>> faults = Faults(fail_rate=1.0)
>>> faults.roll(faults.fail_rate), faults.roll(faults.drop_after_commit_rate)
(True, False)
"""

from __future__ import annotations

import json
import random
import threading
from dataclasses import dataclass, field, fields

#: The malformed answers ``--malformed-rate`` picks from; each comes after the batch is committed.
MALFORMED_KINDS = {
    # A proxy's error page with a 200 status.
    "html": ("text/html; charset=utf-8", b"<html><body><h1>Service temporarily unavailable</h1></body></html>"),
    "not-json": ("application/json", b"results: ok"),
    "wrong-shape": ("application/json", json.dumps({"ok": True}).encode()),
    # The results list without its last entry (filled in by the server from the real results).
    "missing-result": ("application/json", None),
    # Every status replaced by one the contract does not have.
    "unknown-status": ("application/json", None),
}


@dataclass
class Faults:
    """Which faults to inject, and the random generator that decides each time.

    ``fail_rate``: answer 503 with ``Retry-After: retry_after_s`` before looking at the batch.
    ``reset_rate``: abort the connection with a TCP reset before looking at the batch (nothing stored).
    ``latency_ms``: wait this long after reading a batch, before storing it and answering.
    ``drop_after_commit_rate``: store the batch, then close the connection without an answer.
    ``malformed_rate``: store the batch, then answer 200 with a malformed body (``malformed_kind``,
    or any of :data:`MALFORMED_KINDS` when it is ``"any"``).
    ``reject_contracts``: identifications with these contracts are ``rejected`` (a business refusal).
    """

    fail_rate: float = 0.0
    retry_after_s: int = 1
    reset_rate: float = 0.0
    latency_ms: int = 0
    drop_after_commit_rate: float = 0.0
    malformed_rate: float = 0.0
    malformed_kind: str = "any"
    reject_contracts: frozenset[str] = frozenset()
    seed: int | None = None
    _rng: random.Random = field(init=False, repr=False)
    _lock: threading.Lock = field(init=False, repr=False, default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.reject_contracts = frozenset(self.reject_contracts)
        self._rng = random.Random(self.seed)

    @classmethod
    def from_args(cls, args) -> Faults:
        """The faults a command line asks for: each option's destination is the field's name."""
        return cls(**{f.name: getattr(args, f.name) for f in fields(cls) if f.init})

    def roll(self, rate: float) -> bool:
        """True with probability ``rate`` (never for 0, always for 1)."""
        if rate <= 0.0:
            return False
        with self._lock:  # handler threads share one generator; keep its sequence reproducible
            return self._rng.random() < rate

    def pick_malformed(self) -> str:
        if self.malformed_kind != "any":
            return self.malformed_kind
        with self._lock:
            return self._rng.choice(sorted(MALFORMED_KINDS))

    def describe(self) -> str:
        """One line for the log: the faults that are on."""
        on = [
            f"{name}={value}"
            for name, value in (
                ("fail_rate", self.fail_rate),
                ("reset_rate", self.reset_rate),
                ("latency_ms", self.latency_ms),
                ("drop_after_commit_rate", self.drop_after_commit_rate),
                ("malformed_rate", self.malformed_rate),
            )
            if value
        ]
        if self.reject_contracts:
            on.append(f"reject_contracts={len(self.reject_contracts)}")
        return ", ".join(on) or "none"
