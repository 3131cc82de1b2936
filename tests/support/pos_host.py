"""A FIFO standing in for ``/dev/hidg0`` and a thread reading it as the USB host reads the gadget.

Used by the keyboard's tests (tests/test_pos_keyboard.py) and the POS output's (tests/test_pos_output.py);
what arrives is decoded back to text with :func:`device.outputs.pos.host.typed_by_host`.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from support.waiting import wait_until

#: Generous: only reached when the writer hangs, which is the failure these tests look for.
DEADLINE_S = 30


class FifoHost:
    """A FIFO standing in for /dev/hidg0, and a thread reading it as the USB host reads the gadget.

    The test holds a write end of its own, so the reader sees the end only when :meth:`received`
    closes it, after the keyboard closed its own.
    """

    def __init__(self, path: Path):
        self.path = path
        if not path.exists():  # else a FIFO the kiosk already found nobody reading: the POS comes back
            os.mkfifo(path)
        self._read_end: int | None = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # a reader first, so the holder's open succeeds
        self._holder: int | None = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
        os.set_blocking(self._read_end, True)
        self._data = bytearray()
        self._thread = threading.Thread(target=self._read, name="usb-host", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self._read_end is not None
        while chunk := os.read(self._read_end, 4096):
            self._data += chunk

    def received(self) -> bytes:
        """Everything written to the FIFO, once every writer closed it."""
        self.close()
        wait_until(lambda: not self._thread.is_alive(), what="the host's reader to see the FIFO's end", timeout_s=DEADLINE_S)
        return bytes(self._data)

    def close(self) -> None:
        """Close the test's write end; the read end once the reader has seen the end."""
        if self._holder is not None:
            os.close(self._holder)
            self._holder = None
        self._thread.join(timeout=DEADLINE_S)
        if not self._thread.is_alive() and self._read_end is not None:
            os.close(self._read_end)
            self._read_end = None
