"""A pseudo-terminal pair standing in for the serial line to the POS, and a thread reading its
POS end as a POS that answers each line (tests/test_pos_serial.py, tests/test_pos_daemon.py)."""

from __future__ import annotations

import fcntl
import os
import select
import struct
import termios
import threading
import tty

from support.waiting import wait_until

#: Generous: only reached when the kiosk hangs, which is the failure these tests look for.
DEADLINE_S = 30

#: Written by the test into the kiosk's end after a hand-over returned: once the POS sees it, it has
#: seen every byte the kiosk sent before it.
END = b"END\n"


class PtyPos:
    """The POS's end of a pseudo-terminal pair: reads what the kiosk writes, answers each line with ``answer``.

    The test also holds the slave open, so the pair lives between two of the kiosk's openings and
    :meth:`mark_end` can write after the kiosk's bytes.
    """

    def __init__(self, answer: bytes = b""):
        self.answer = answer
        self.master, self._slave = os.openpty()
        self.name = os.ttyname(self._slave)
        tty.setraw(self._slave)  # a line passes bytes as they are, before the kiosk opens it (pyserial makes it raw too)
        self.received = bytearray()
        self._open = True
        self._wake_read, self._wake_write = os.pipe()
        self._thread = threading.Thread(target=self._serve, name="pos", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        poller = select.poll()
        poller.register(self.master, select.POLLIN)
        poller.register(self._wake_read, select.POLLIN)
        pending = b""
        while all(fd != self._wake_read for fd, _ in poller.poll()):
            chunk = os.read(self.master, 4096)  # never EIO: the test holds the slave open
            self.received += chunk
            pending += chunk
            while b"\n" in pending:
                _, pending = pending.split(b"\n", 1)
                if self.answer:
                    os.write(self.master, self.answer)

    def lines(self) -> list[bytes]:
        """Every line the kiosk sent, once it is done (the end mark has arrived), the mark left out."""
        os.write(self._slave, END)
        wait_until(lambda: self.received.endswith(END), what="the POS to read all the kiosk sent", timeout_s=DEADLINE_S)
        return bytes(self.received[: -len(END)]).splitlines(keepends=True)

    def waiting_at_kiosk(self) -> int:
        """How many bytes the POS sent that the kiosk has not read yet."""
        return struct.unpack("i", fcntl.ioctl(self._slave, termios.FIONREAD, b"\0\0\0\0"))[0]

    def stop_reading(self) -> None:
        """The POS reads no more (the pair stays): what the kiosk writes fills the line's buffer."""
        if self._thread.is_alive():
            os.write(self._wake_write, b"x")
            self._thread.join(timeout=DEADLINE_S)

    def unplug(self) -> None:
        """The pair is gone, as an adapter pulled out: its reader stops, both ends close (once: the
        numbers of closed descriptors are soon another's)."""
        self.stop_reading()
        if self._open:
            self._open = False
            for fd in (self.master, self._slave, self._wake_read, self._wake_write):
                os.close(fd)
