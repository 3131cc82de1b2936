"""Presentations: a client holding a card up lasts many frames and gives exactly one identification.

The same card seen again within ``repeat_window_s`` of when it was last seen belongs to the
presentation already identified; a different card starts a new presentation at once. Time is the
monotonic clock (a Pi without a hardware clock may jump its wall clock when NTP syncs).

The daemon asks :meth:`Presentations.is_new` for every card it decodes, and calls
:meth:`Presentations.identified` only once the identification is durable, so a failed commit
(disk full) leaves the presentation open and the next frame tries again::

    presentations = Presentations(repeat_window_s=10)
    if presentations.is_new(card, frame.monotonic):
        outbox.commit(card)                       # may raise: then nothing is marked
        presentations.identified(card, frame.monotonic)
"""

from __future__ import annotations

from collections.abc import Hashable


class Presentations:
    """Decides which decoded cards are new identifications.

    A "card" here is anything hashable that names what was shown: a :class:`device.card.Card`,
    or (format, text) for a barcode that is not a card, so that it too gets its "not a card"
    feedback once per presentation.
    """

    def __init__(self, repeat_window_s: float = 10.0):
        self.repeat_window_s = repeat_window_s
        self._current: Hashable | None = None
        self._last_seen = 0.0

    def is_new(self, card: Hashable, now: float) -> bool:
        """True when ``card`` at monotonic time ``now`` starts a new presentation.

        Seeing the current card again (within the window) extends its presentation, so a client
        who keeps the card in view for a minute is identified once.
        """
        if self._current == card and now - self._last_seen <= self.repeat_window_s:
            self._last_seen = max(self._last_seen, now)
            return False
        return True

    def identified(self, card: Hashable, now: float) -> None:
        """Record that ``card`` was identified (committed) at ``now``: its presentation is open."""
        self._current, self._last_seen = card, now

    def reset(self) -> None:
        """End the current presentation (the operator's button): the same card identifies again at once."""
        self._current = None
