"""What a USB host types from the boot-keyboard reports the kiosk wrote: the hand-off read back.

Tests and the demo write to a FIFO or a file where ``/dev/hidg0`` would be; this turns what
arrived back into text as a host does: a key types when it goes down, so a report that repeats
the key already down types nothing (a collapsed repeat), with the inverse of the layout's table::

    >>> from device.keyboard_layouts import layout
    >>> from device.outputs.pos.keyboard import reports
    >>> typed_by_host(b"".join(reports("007\\n", layout("fr"))), layout("fr"))
    '007\\n'
"""

from __future__ import annotations

from device.keyboard_layouts import KeyboardLayout, Keystroke
from device.outputs.pos.keyboard import REPORT_LENGTH


def typed_by_host(data: bytes, layout: KeyboardLayout) -> str:
    """What a host with ``layout`` types from the reports in ``data``; a ``ValueError`` for bytes
    that are no whole number of reports, a report holding more than one key, or a key the layout lacks."""
    if len(data) % REPORT_LENGTH:
        raise ValueError(f"{len(data)} bytes are no whole number of {REPORT_LENGTH}-byte reports")
    char_of = {stroke: char for char, stroke in layout.keystrokes_by_char.items()}
    text, down = [], 0
    for start in range(0, len(data), REPORT_LENGTH):
        modifiers, reserved, usage, *others = data[start : start + REPORT_LENGTH]
        if reserved or any(others):
            raise ValueError(f"report {data[start : start + REPORT_LENGTH].hex()} holds more than one key")
        if usage and usage != down:
            stroke = Keystroke(modifiers, usage)
            if stroke not in char_of:
                raise ValueError(f"report {data[start : start + REPORT_LENGTH].hex()} types nothing in the {layout.name!r} layout")
            text.append(char_of[stroke])
        down = usage
    return "".join(text)
