"""Presentations: a client holding a card up lasts many frames and gives exactly one identification.

The rule, per card: a presentation of a card lasts while that card is seen again within
``repeat_window_s`` of when it was last seen, **whatever other cards are seen meanwhile** (in the
same frame or in between). Two cards in view together are two presentations, each identified
once; a card left lying in view stays one presentation for as long as it lies there, while other
clients present theirs. A card taken away and shown again after the window has passed is a new
presentation. Time is the monotonic clock (a Pi without a hardware clock may jump its wall clock
when NTP syncs).

The daemon asks :meth:`Presentations.is_new` for every card it decodes, and calls
:meth:`Presentations.identified` only once the identification is durable, so a failed commit
(disk full) leaves the card without an open presentation and the next frame tries again:

>>> from device.card import Card
>>> a, b = Card("v1", "0012345678", 1), Card("v1", "0099999999", 1)
>>> presentations = Presentations(repeat_window_s=10)
>>> for card, t in [(a, 0.0), (b, 0.0), (a, 4.0), (b, 9.0), (a, 13.0), (a, 30.0)]:
...     if presentations.is_new(card, t):
...         presentations.identified(card, t)  # after the outbox commit
...         print(card.contract, t)
0012345678 0.0
0099999999 0.0
0012345678 30.0

Memory is bounded: cards not seen for longer than the window are forgotten, and at most
``max_tracked`` cards are tracked at once (beyond that the one seen longest ago is forgotten
first; a counter never has that many cards in view).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable

#: How many cards are tracked at once, at most. A camera sees a handful of cards at a time; the
#: cap only bounds memory against a flood of distinct barcodes (a sheet of labels, an attack).
MAX_TRACKED = 256


class Presentations:
    """Decides which decoded cards are new identifications: one per presentation of each card.

    A "card" here is anything hashable that names what was shown: a :class:`device.card.Card`,
    or (symbology, text) for a barcode that is not a card, so that it too gets its "not a card"
    feedback once per presentation.

    ``repeat_window_s``: a card seen again within this many seconds of when it was last seen is
    still the same presentation. ``max_tracked``: how many cards are remembered at most.
    """

    def __init__(self, repeat_window_s: float = 10.0, max_tracked: int = MAX_TRACKED):
        if max_tracked < 1:
            raise ValueError("max_tracked must be at least 1")
        self.repeat_window_s = repeat_window_s
        self.max_tracked = max_tracked
        # card -> monotonic time it was last seen, least recently seen first.
        self._last_seen: OrderedDict[Hashable, float] = OrderedDict()
        # The button's reset comes from gpiozero's callback thread, while the scan loop iterates.
        self._lock = threading.Lock()

    def is_new(self, card: Hashable, now: float) -> bool:
        """True when ``card`` seen at monotonic time ``now`` starts a new presentation.

        Seeing a card whose presentation is open (seen within the window) extends it, so a client
        who keeps the card in view for a minute is identified once.
        """
        with self._lock:
            self._expire(now)
            if card in self._last_seen:
                self._seen(card, now)
                return False
            return True

    def identified(self, card: Hashable, now: float) -> None:
        """Record that ``card`` was identified (committed) at ``now``: its presentation is open."""
        with self._lock:
            self._seen(card, now)
            while len(self._last_seen) > self.max_tracked:
                self._last_seen.popitem(last=False)

    def reset(self) -> None:
        """End every open presentation (the operator's button): any card shown identifies again at once."""
        with self._lock:
            self._last_seen.clear()

    def __len__(self) -> int:
        """How many presentations are open (as of the last call)."""
        return len(self._last_seen)

    def _seen(self, card: Hashable, now: float) -> None:
        # Frames can arrive slightly out of order across a camera reopen: never move time back.
        self._last_seen[card] = max(now, self._last_seen.get(card, now))
        self._last_seen.move_to_end(card)

    def _expire(self, now: float) -> None:
        # Oldest first, so the loop stops at the first card still within its window.
        while self._last_seen:
            card, seen = next(iter(self._last_seen.items()))
            if now - seen <= self.repeat_window_s:
                break
            del self._last_seen[card]
