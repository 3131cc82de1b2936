"""The one interface every way of handing a line to the counter's POS implements.

A :class:`PosLink` takes one line (a card's fields in ``pos.template``: printable characters, Tab
and Enter) and hands it to the POS: typed as a USB keyboard (:mod:`device.outputs.pos.keyboard`),
written to a serial line, or answered to the POS software's request. It either hands the whole
line over or raises :class:`PosOffline` with one line a technician can act on, within a bounded
time: a POS that is off, unplugged or busy never holds the kiosk::

    link = HidKeyboard(layout=layout("us"))
    try:
        link.hand_over("0012345678\\n")
    except PosOffline as e:
        print(f"POS offline: {e}")
"""

from __future__ import annotations

from typing import Protocol


class PosOffline(Exception):
    """The POS takes nothing now; ``str()`` is one line a technician can act on, naming the device."""


class PosLink(Protocol):
    """A way to hand a line to the POS (see the module docstring)."""

    def hand_over(self, line: str) -> None:
        """Hand ``line`` over whole, or raise :class:`PosOffline` within a bounded time."""

    def close(self) -> None:
        """Release the device (the kiosk stops)."""
