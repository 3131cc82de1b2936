"""Typing a line into the POS as a USB keyboard: boot-keyboard reports written to ``/dev/hidg0``.

The Linux USB gadget's HID function takes 8-byte boot-keyboard reports: the modifier byte, a
reserved byte, six key codes; an all-zero report releases every key. :func:`reports` gives one
press report then one release report per character, so two identical keys in a row stay two
(a host sees a key again only after it was released)::

    keyboard = HidKeyboard(layout=layout("fr"), path="/dev/hidg0", key_delay_ms=20)
    keyboard.type_text("4000123456\\n")    # or PosOffline("/dev/hidg0: ...") within a bounded time

:class:`HidKeyboard` never hangs, whatever the POS does (the failures Pi keyboard-gadget projects
report): it types only while the gadget's device controller reads ``configured``
(:mod:`device.outputs.pos.udc`), opens the device non-blocking, waits at most ``write_wait_s`` for
each report to be taken (as PiKVM's kvmd waits 0.1 s in ``select()``) and tries ``write_retries``
more times, so a report takes at most ``(write_retries + 1) * write_wait_s`` before the line gives
up. A POS that is unplugged, off, asleep or in its BIOS is a :class:`PosOffline` saying so in one
line. Reports are paced ``key_delay_ms`` apart: at full speed some hosts drop the Shift.

A line is typed whole or the cause is raised, but the keys are the POS's once sent: a line cut
short by an unplug or a host that stops reading may already be partly typed in the POS's field.
After a press was written its release is always attempted, so no key is left held down.
"""

from __future__ import annotations

import errno
import os
import select
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import NoReturn

from device.keyboard_layouts import KeyboardLayout, Keystroke
from device.outputs.pos.link import PosOffline
from device.outputs.pos.udc import CONFIGURED, NoUdc, udc_name, udc_state

#: A boot-keyboard report's length: modifiers, reserved, six key codes.
REPORT_LENGTH = 8
#: The report that releases every key.
RELEASE = bytes(REPORT_LENGTH)
#: The gadget's HID function, where the POS reads keys.
DEFAULT_DEVICE = "/dev/hidg0"

#: What each error of opening or writing the device means for the technician: the POS is offline.
#: EAGAIN is one of these only once the retries are spent (see :meth:`HidKeyboard._write`).
OFFLINE_CAUSES = {
    errno.ESHUTDOWN: "the POS dropped the USB keyboard: cable unplugged, POS off or restarting",
    errno.ENXIO: "nothing reads it, no POS is behind it",
    errno.EPIPE: "the POS stopped reading it",
    errno.ENODEV: "the USB keyboard gadget behind it is gone",
    errno.ENOENT: "there is no such device: the USB keyboard gadget is not set up",
}


def press_report(stroke: Keystroke) -> bytes:
    """The report that presses ``stroke``: its modifiers, the reserved byte, its key, five empty slots.

    >>> press_report(Keystroke(modifiers=0x02, usage=0x04)).hex()
    '0200040000000000'
    """
    return bytes((stroke.modifiers, 0, stroke.usage, 0, 0, 0, 0, 0))


def reports(text: str, layout: KeyboardLayout) -> list[bytes]:
    """The reports that type ``text`` in ``layout``: per character a press, then a release.

    A character the layout cannot type is a ``ValueError`` before any report is made.

    >>> from device.keyboard_layouts import layout
    >>> [report.hex() for report in reports("A1", layout("us"))]
    ['0200040000000000', '0000000000000000', '00001e0000000000', '0000000000000000']
    >>> [report.hex() for report in reports("11", layout("fr"))][::2]  # AZERTY: the digits need Shift
    ['02001e0000000000', '02001e0000000000']
    """
    typed = []
    for stroke in layout.keystrokes(text):
        typed += (press_report(stroke), RELEASE)
    return typed


@dataclass(frozen=True, kw_only=True)
class HidKeyboard:
    """Types text into the POS through the USB gadget's keyboard device, or raises why it cannot.

    :param layout: the POS's keyboard layout (:func:`device.keyboard_layouts.layout`).
    :param path: the gadget's HID device; a plain file or FIFO stands in for it in tests and demos.
    :param key_delay_ms: the pause between two reports.
    :param write_wait_s: how long one try waits for the device to take a report.
    :param write_retries: tries after the first before the POS counts as offline.
    :param udc: the device controller whose state to check; the machine's only one when None.
    :param sleep: the pause (tests pass one that does not sleep).
    """

    layout: KeyboardLayout
    path: str = DEFAULT_DEVICE
    key_delay_ms: float = 20.0
    write_wait_s: float = 0.1
    write_retries: int = 5
    udc: str | None = None
    sleep: Callable[[float], None] = time.sleep

    def __post_init__(self) -> None:
        if self.key_delay_ms < 0 or self.write_wait_s <= 0 or self.write_retries < 0:
            raise ValueError(
                f"key_delay_ms must be >= 0, write_wait_s > 0 and write_retries >= 0, got {self.key_delay_ms}, {self.write_wait_s}, "
                f"{self.write_retries}"
            )

    def hand_over(self, line: str) -> None:
        """:class:`~device.outputs.pos.link.PosLink`'s call: type ``line``."""
        self.type_text(line)

    def close(self) -> None:
        """Nothing to release: the device is opened for each line, so a gadget re-created while
        the kiosk runs (the POS rebooted) is found again."""

    def type_text(self, text: str) -> None:
        """Type ``text`` (the whole line, e.g. ``"4000123456\\n"``) into the POS, or raise
        :class:`PosOffline` naming the cause; a ``ValueError`` before anything is typed when the
        layout cannot type one of its characters. A device the kiosk cannot write (a directory, no
        permission) is :class:`PosOffline` too, its cause naming ``pos.hid_device``."""
        strokes = self.layout.keystrokes(text)
        self._check_host()
        fd = self._open()
        try:
            for index, stroke in enumerate(strokes):
                if index:
                    self._pause()
                self._write(fd, press_report(stroke))
                try:
                    self._pause()
                finally:
                    self._write(fd, RELEASE)
        finally:
            os.close(fd)

    def _check_host(self) -> None:
        """The POS has configured the gadget; a plain file or FIFO standing in for it has no UDC."""
        try:
            mode = os.stat(self.path).st_mode
        except OSError as error:
            self._offline(error)
        if not stat.S_ISCHR(mode):
            return
        try:
            name = udc_name(self.udc)
        except NoUdc as error:
            raise PosOffline(f"{self.path}: {error}") from None
        state = udc_state(name)
        if state != CONFIGURED:
            raise PosOffline(
                f"{self.path}: the POS has not taken the USB keyboard (its controller {name} is {state!r}, not {CONFIGURED!r}):"
                " cable unplugged, POS off or asleep"
            )

    def _open(self) -> int:
        # Non-blocking, so neither the open (a FIFO nobody reads) nor a write (a host that stopped
        # reading) can block; appending, so a plain file standing in for the device keeps each line.
        try:
            return os.open(self.path, os.O_WRONLY | os.O_NONBLOCK | os.O_APPEND | os.O_CLOEXEC)
        except OSError as error:
            self._offline(error)

    def _write(self, fd: int, report: bytes) -> None:
        """Write ``report`` whole, waiting in ``poll()`` at most ``write_wait_s`` per try."""
        poller = select.poll()  # poll, not select: no limit on the descriptor's number
        poller.register(fd, select.POLLOUT)
        tries = self.write_retries + 1
        for _ in range(tries):
            if not poller.poll(self.write_wait_s * 1000):
                continue
            try:
                written = os.write(fd, report)
            except BlockingIOError:
                continue
            except OSError as error:
                self._offline(error)
            if written != len(report):
                raise PosOffline(f"{self.path}: took {written} of a report's {len(report)} bytes")
            return
        raise PosOffline(
            f"{self.path}: the POS took no key for {tries} x {self.write_wait_s:g} s (EAGAIN): it is not reading keys"
            " (asleep, in its BIOS or setup, or busy)"
        )

    def _offline(self, error: OSError) -> NoReturn:
        """Raise ``error`` as :class:`PosOffline`: the POS took nothing, whatever the cause. An error
        that is not the POS's (a directory or a file the kiosk may not write at ``pos.hid_device``)
        says so, so the ``pos`` fault names the setup to fix instead of a thread failing per card."""
        code = errno.errorcode.get(error.errno or 0, "?")
        cause = OFFLINE_CAUSES.get(error.errno or 0)
        if cause is None:
            cause = f"cannot write to it: {error.strerror or error}: check pos.hid_device and that the kiosk's user may write it"
        raise PosOffline(f"{self.path}: {cause} ({code})") from error

    def _pause(self) -> None:
        if self.key_delay_ms:
            self.sleep(self.key_delay_ms / 1000)
