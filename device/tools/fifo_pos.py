"""A POS on this machine: a FIFO where ``/dev/hidg0`` would be, read by a thread as a USB host reads the gadget.

``kiosk demo --pos keyboard`` and ``kiosk bench pos`` point ``pos.hid_device`` at it. Each line the
kiosk types is decoded back as the host would type it (:func:`device.outputs.pos.host.typed_by_host`)
and handed to ``on_line`` with the time its last report (the release after Enter) was read::

    pos = FifoPos(folder / "hidg0", layout("us"), on_line=lambda line: print(repr(line.text)))
    ...                                    # the kiosk types into folder / "hidg0"
    pos.close()                            # after the kiosk's outputs are closed: every line read
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from device.keyboard_layouts import KeyboardLayout
from device.outputs.pos.host import typed_by_host
from device.outputs.pos.keyboard import RELEASE, REPORT_LENGTH

#: How long :meth:`FifoPos.close` waits for the reader to see the end (only reached when a writer hangs).
CLOSE_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class TypedLine:
    """One line as the POS received it (Enter included) and when its last report was read (``time.monotonic``)."""

    text: str
    read_monotonic: float


def line_ends(data: bytes) -> int:
    """How many bytes of ``data`` make whole lines: up to the release report that follows the last Enter
    decoded, or 0. A host types Enter on the press; the line is whole once that key is released too.

    >>> from device.keyboard_layouts import layout
    >>> from device.outputs.pos.keyboard import reports
    >>> data = b"".join(reports("12\\n3", layout("us")))
    >>> line_ends(data) == 6 * REPORT_LENGTH, line_ends(data[: 5 * REPORT_LENGTH])
    (True, 0)
    """
    end = 0
    for start in range(0, len(data) - len(data) % REPORT_LENGTH, REPORT_LENGTH):
        if data[start : start + REPORT_LENGTH] == RELEASE and start >= REPORT_LENGTH:
            press = data[start - REPORT_LENGTH : start]
            if press != RELEASE and press[2] == 0x28:  # Enter's usage: the line is complete with its release
                end = start + REPORT_LENGTH
    return end


class FifoPos:
    """A FIFO at ``path`` read by a thread, each whole line decoded in ``layout`` and passed to ``on_line``.

    It holds a write end of its own, so the reader does not see the end between two lines (the
    kiosk opens the device for each line); :meth:`close` lets go of it. :attr:`lines` keeps every
    line, :attr:`error` what the reader could not decode (reports no host would type).
    """

    def __init__(self, path: Path, layout: KeyboardLayout, on_line: Callable[[TypedLine], None] | None = None):
        self.path, self.layout, self.on_line = path, layout, on_line
        self.lines: list[TypedLine] = []
        self.error: str | None = None
        if not path.exists():
            os.mkfifo(path)
        self._read_end: int | None = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # a reader first, so the holder's open succeeds
        self._holder: int | None = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
        os.set_blocking(self._read_end, True)
        self._thread = threading.Thread(target=self._read, name="fifo-pos", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self._read_end is not None
        pending = b""
        while chunk := os.read(self._read_end, 4096):
            read_at = time.monotonic()
            pending += chunk
            end = line_ends(pending)
            if not end:
                continue
            try:
                text = typed_by_host(pending[:end], self.layout)
            except ValueError as error:  # keep reading, so the kiosk is never blocked by its POS
                self.error = self.error or str(error)
            else:
                for line in text.splitlines(keepends=True):
                    typed = TypedLine(line, read_at)
                    self.lines.append(typed)
                    if self.on_line is not None:
                        self.on_line(typed)
            pending = pending[end:]  # after a release no key is down: decoding starts afresh
        if pending:
            self.error = self.error or f"{len(pending)} bytes after the last whole line"

    def close(self) -> None:
        """Let go of the write end and wait until the reader has read everything written (every writer closed)."""
        holder, self._holder = self._holder, None
        if holder is not None:
            os.close(holder)
        self._thread.join(timeout=CLOSE_TIMEOUT_S)
        if self._thread.is_alive():
            return  # a writer still holds the FIFO open: the read end stays the reader's
        read_end, self._read_end = self._read_end, None
        if read_end is not None:
            os.close(read_end)
