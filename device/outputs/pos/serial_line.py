"""Handing a line to the POS over a serial line (USB CDC ACM, a USB-serial adapter or RS-232), as
counter scanners do in their serial mode, optionally waiting for the POS to acknowledge it.

The line goes out byte for byte as ``pos.template`` made it, in ASCII: the line ending is the
template's own (``"{contract}\\n"`` ends in LF). Nothing is added and nothing is translated. A
POS that wants CR LF, as many scanners' serial default sends, cannot have it yet: ``pos.template``
holds Tab and Enter (LF) as its only control characters, for the keyboard's sake; this link would
send a CR as it is.

With ``ack_timeout_s`` above 0 the POS must answer each line within that time, as many POS serial
protocols do: the ACK byte 0x06 (``ack``) means taken; the NAK byte 0x15 means refused, a
:class:`~device.outputs.pos.link.PosOffline` at once (the POS heard the line and said no: sending
it again would not change its answer); any other byte is ignored. No answer sends the line again,
``retries`` times, before ``PosOffline``: so a POS that takes lines but never acknowledges receives
the line ``retries + 1`` times, and an unacknowledged line may still have been received.
The wait starts when the port took the line (at 9600 baud a 12-byte line is 12 ms on the wire); an
answer that comes only after the line gave up is dropped before the next line, never taken for its.

A port that is missing, gone (unplugged), refused (permission) or that takes no byte within
``write_timeout_s`` is ``PosOffline`` naming the device, never a hang. The port is opened on the
first line and reopened after an error, so an adapter plugged back in works again; name it by its
stable path (``/dev/serial/by-id/...``), which comes back when the adapter does::

    >>> link = SerialLine("/dev/serial/by-id/usb-no-such-adapter", ack_timeout_s=0.5)
    >>> link.hand_over("0012345678\\n")
    Traceback (most recent call last):
    ...
    device.outputs.pos.link.PosOffline: /dev/serial/by-id/usb-no-such-adapter: there is no such device (ENOENT): the USB-serial \
adapter is unplugged or the path is wrong
"""

from __future__ import annotations

import errno
import termios
import time
from dataclasses import KW_ONLY, dataclass, field

import serial

from device.outputs.pos.link import PosOffline

#: The POS took the line (ASCII ACK), the acknowledgement by default.
ACK = b"\x06"
#: The POS refused the line (ASCII NAK).
NAK = b"\x15"
#: Control characters a line may hold; every other character must be printable ASCII. Other control
#: bytes (ACK and NAK among them) would be the protocol's, not the line's.
LINE_CONTROLS = frozenset("\t\r\n")

#: How a port fails: pyserial's errors, and termios's where pyserial passes them on (flushing a port that is gone).
PORT_ERRORS = (serial.SerialException, termios.error)

#: What an error of the port means for the technician, by errno.
OFFLINE_CAUSES = {
    errno.ENOENT: "there is no such device (ENOENT): the USB-serial adapter is unplugged or the path is wrong",
    errno.ENODEV: "the device is gone (ENODEV): the USB-serial adapter was unplugged",
    errno.ENXIO: "the device is gone (ENXIO): the USB-serial adapter was unplugged",
    errno.EIO: "the port failed (EIO): the USB-serial adapter was unplugged or the POS's end of the line closed",
    errno.EACCES: "permission denied (EACCES): the kiosk's user must be in the port's group (dialout)",
    errno.EPERM: "permission denied (EPERM): the kiosk's user must be in the port's group (dialout)",
    errno.EBUSY: "the port is busy (EBUSY): another program holds it",
}


@dataclass(eq=False)
class SerialLine:
    """Writes a line to the POS's serial port and, when asked, waits for its acknowledgement.

    :param device: the port, e.g. ``/dev/ttyACM0`` or a stable ``/dev/serial/by-id/...`` link.
    :param baud: the line's speed; 8 data bits, no parity, 1 stop bit, no flow control.
    :param ack_timeout_s: how long to wait for ACK after each sending; 0 waits for none.
    :param retries: sendings after the first when no acknowledgement came.
    :param ack: the byte(s) that acknowledge a line.
    :param write_timeout_s: how long the port may take to accept the line before the POS is offline.
    """

    device: str
    _: KW_ONLY
    baud: int = 9600
    ack_timeout_s: float = 0.0
    retries: int = 2
    ack: bytes = ACK
    write_timeout_s: float = 1.0
    #: The open port, between two lines; None until the first and after an error.
    _port: serial.Serial | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.baud <= 0 or self.ack_timeout_s < 0 or self.retries < 0 or self.write_timeout_s <= 0:
            raise ValueError(
                f"baud and write_timeout_s must be > 0, ack_timeout_s and retries >= 0, got {self.baud}, {self.write_timeout_s}, "
                f"{self.ack_timeout_s}, {self.retries}"
            )
        if not self.ack or NAK in self.ack:
            raise ValueError(f"the acknowledgement must be some bytes other than NAK, got {self.ack!r}")

    def hand_over(self, line: str) -> None:
        """:class:`~device.outputs.pos.link.PosLink`'s call: send ``line`` (acknowledged, when asked),
        or raise :class:`PosOffline` naming the device and the cause. A character outside printable
        ASCII, Tab, CR and LF is a ``ValueError`` before anything is sent.

        A port opened for an earlier line that fails is reopened once before giving up: the adapter
        may have been unplugged and plugged back in between two lines.
        """
        data = encode(line)
        was_open = self._port is not None
        try:
            self._send(data)
        except PORT_ERRORS as error:
            self.close()
            if not was_open:
                raise self._offline(error) from error
            try:
                self._send(data)
            except PORT_ERRORS as again:
                self.close()
                raise self._offline(again) from again

    def close(self) -> None:
        """Close the port; the next line opens it again."""
        port, self._port = self._port, None
        if port is not None:
            try:
                port.close()
            except (*PORT_ERRORS, OSError):
                pass  # a port that is gone has nothing left to release

    def _send(self, data: bytes) -> None:
        port = self._open()
        port.reset_input_buffer()  # a late answer to an earlier line acknowledges nothing of this one
        for _ in range(self.retries + 1):
            port.write(data)
            if not self.ack_timeout_s or self._acknowledged(port):
                return
        raise PosOffline(
            f"{self.device}: no acknowledgement within {self.ack_timeout_s:g} s, {self.retries + 1} times: the POS is not"
            " answering (it may have received the line)"
        )

    def _open(self) -> serial.Serial:
        if self._port is None:
            try:
                self._port = serial.Serial(self.device, baudrate=self.baud, timeout=self.ack_timeout_s, write_timeout=self.write_timeout_s)
            except OSError as error:  # SerialException is one; a bad path can be another
                raise serial.SerialException(error.errno, str(error)) from error
        return self._port

    def _acknowledged(self, port: serial.Serial) -> bool:
        """Whether ``ack`` came within ``ack_timeout_s``; NAK raises :class:`PosOffline`."""
        deadline = time.monotonic() + self.ack_timeout_s
        received = b""
        while (remaining := deadline - time.monotonic()) > 0:
            port.timeout = remaining
            byte = port.read(1)
            if byte == NAK:
                raise PosOffline(f"{self.device}: the POS refused the line (NAK)")
            received += byte
            if received.endswith(self.ack):
                return True
        return False

    def _offline(self, error: Exception) -> PosOffline:
        """``error`` as one line naming the device: its cause when the errno is known, else its text."""
        if isinstance(error, serial.SerialTimeoutException):
            return PosOffline(
                f"{self.device}: the port took no line for {self.write_timeout_s:g} s: the POS is not reading"
                " (flow control held, POS off or busy)"
            )
        code = error.args[0] if isinstance(error, termios.error) else None  # termios.error is (errno, text)
        code = code or next((e.errno for e in (error, error.__context__) if isinstance(e, OSError) and e.errno), None)
        cause = OFFLINE_CAUSES.get(code or 0) or " ".join(str(error).split())
        return PosOffline(f"{self.device}: {cause}")


def encode(line: str) -> bytes:
    """``line``'s bytes on the wire: ASCII as it is, the line ending included.

    >>> encode("0012345678\\r\\n")
    b'0012345678\\r\\n'
    >>> encode("00\\x06")
    Traceback (most recent call last):
    ...
    ValueError: a serial line holds printable ASCII, Tab, CR and LF only, not '\\x06'
    """
    for char in line:
        if not (" " <= char <= "~" or char in LINE_CONTROLS):
            raise ValueError(f"a serial line holds printable ASCII, Tab, CR and LF only, not {char!r}")
    return line.encode("ascii")
