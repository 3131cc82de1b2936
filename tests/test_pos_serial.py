"""The serial hand-off at the device edge: a real pseudo-terminal pair stands in for the POS's line.

The kiosk opens the pty's slave by name, as it opens ``/dev/ttyACM0``; the test's POS reads the
master in a thread, keeps every byte, and answers each complete line as told (ACK, NAK or
nothing). Every hand-over runs in a thread the test waits for with a deadline, so a hang fails the
test instead of stalling the run. A POS that "unplugs" closes its pair; one that comes back is a
new pair behind the same symlink, as ``/dev/serial/by-id/...`` comes back with the adapter.
"""

from __future__ import annotations

import os
import pwd
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from support.pos_serial import DEADLINE_S, PtyPos
from support.waiting import wait_until

from device.outputs.pos.link import PosOffline
from device.outputs.pos.serial_line import ACK, NAK, SerialLine

#: A line as ``pos.template``'s default makes it.
LINE = "0012345678\n"


@pytest.fixture
def pos_pairs():
    """``pos_pairs(answer)`` makes a :class:`PtyPos`; every one is unplugged at the end."""
    made: list[PtyPos] = []

    def make(answer: bytes = b"") -> PtyPos:
        made.append(PtyPos(answer))
        return made[-1]

    yield make
    for pos in made:
        pos.unplug()


@pytest.fixture
def pool():
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="hand-over") as executor:
        yield executor


def bounded(pool: ThreadPoolExecutor, call) -> BaseException | None:
    """Run ``call`` in the pool, waiting for it with a deadline; what it raised, or None."""
    future = pool.submit(call)
    wait_until(future.done, what="the hand-over to return instead of hanging", timeout_s=DEADLINE_S)
    return future.exception()


@pytest.fixture
def link():
    """``link(device, **options)`` makes a :class:`SerialLine`; every one is closed at the end."""
    made: list[SerialLine] = []

    def make(device: str | Path, **options) -> SerialLine:
        made.append(SerialLine(str(device), **options))
        return made[-1]

    yield make
    for line in made:
        line.close()


def test_a_line_arrives_exactly_as_the_template_made_it(pos_pairs, pool, link):
    pos = pos_pairs()
    serial_line = link(pos.name, baud=115200)
    assert bounded(pool, lambda: serial_line.hand_over(LINE)) is None
    assert bounded(pool, lambda: serial_line.hand_over("42\t7\r\n")) is None
    assert pos.lines() == [b"0012345678\n", b"42\t7\r\n"], "no CR added, no LF translated, no byte more"


def test_an_acknowledged_line_is_sent_once(pos_pairs, pool, link):
    pos = pos_pairs(answer=ACK)
    serial_line = link(pos.name, ack_timeout_s=DEADLINE_S, retries=2)
    assert bounded(pool, lambda: serial_line.hand_over(LINE)) is None
    assert bounded(pool, lambda: serial_line.hand_over("0012345679\n")) is None
    assert pos.lines() == [b"0012345678\n", b"0012345679\n"]


def test_a_pos_that_never_acknowledges_gets_the_line_once_per_try_then_is_offline(pos_pairs, pool, link):
    pos = pos_pairs(answer=b"")
    error = bounded(pool, lambda: link(pos.name, ack_timeout_s=0.1, retries=2).hand_over(LINE))
    assert isinstance(error, PosOffline)
    assert str(error) == f"{pos.name}: no acknowledgement within 0.1 s, 3 times: the POS is not answering (it may have received the line)"
    assert pos.lines() == [LINE.encode()] * 3, "each try reached the POS: an unacknowledged line may have been received"


def test_a_refusal_is_offline_at_once_without_sending_again(pos_pairs, pool, link):
    pos = pos_pairs(answer=NAK)
    error = bounded(pool, lambda: link(pos.name, ack_timeout_s=DEADLINE_S, retries=2).hand_over(LINE))
    assert isinstance(error, PosOffline)
    assert str(error) == f"{pos.name}: the POS refused the line (NAK)"
    assert pos.lines() == [LINE.encode()]


def test_other_bytes_before_the_acknowledgement_are_ignored(pos_pairs, pool, link):
    pos = pos_pairs(answer=b"\r\nOK?" + ACK)
    assert bounded(pool, lambda: link(pos.name, ack_timeout_s=DEADLINE_S).hand_over(LINE)) is None
    assert pos.lines() == [LINE.encode()]


def test_a_late_answer_to_an_earlier_line_does_not_acknowledge_the_next(pos_pairs, pool, link):
    pos = pos_pairs(answer=b"")
    serial_line = link(pos.name, ack_timeout_s=0.1, retries=0)
    assert isinstance(bounded(pool, lambda: serial_line.hand_over(LINE)), PosOffline)
    os.write(pos.master, ACK)  # the POS answers the first line, too late
    wait_until(pos.waiting_at_kiosk, what="the late ACK to be at the kiosk's end")
    error = bounded(pool, lambda: serial_line.hand_over("0012345679\n"))
    assert isinstance(error, PosOffline) and "no acknowledgement" in str(error)


def test_a_device_that_does_not_exist_is_offline_naming_it(pool, link, tmp_path):
    device = tmp_path / "ttyACM9"
    error = bounded(pool, lambda: link(device, ack_timeout_s=1).hand_over(LINE))
    assert isinstance(error, PosOffline)
    assert str(error) == f"{device}: there is no such device (ENOENT): the USB-serial adapter is unplugged or the path is wrong"


def test_a_port_the_kiosk_may_not_open_is_offline_naming_it(pos_pairs, pool, link):
    pos = pos_pairs()
    os.chmod(pos.name, 0)
    as_root = os.geteuid() == 0
    if as_root:  # root opens it whatever its mode: the kiosk's user, unprivileged, does not
        os.seteuid(pwd.getpwnam("nobody").pw_uid)
    try:
        error = bounded(pool, lambda: link(pos.name).hand_over(LINE))
    finally:
        if as_root:
            os.seteuid(0)
    assert isinstance(error, PosOffline)
    assert str(error) == f"{pos.name}: permission denied (EACCES): the kiosk's user must be in the port's group (dialout)"


def test_a_pos_that_stops_reading_is_offline_after_the_write_timeout(pos_pairs, pool, link):
    pos = pos_pairs()
    pos.stop_reading()
    error = bounded(pool, lambda: link(pos.name, write_timeout_s=0.1).hand_over("0" * 200_000 + "\n"))
    assert isinstance(error, PosOffline)
    assert str(error) == f"{pos.name}: the port took no line for 0.1 s: the POS is not reading (flow control held, POS off or busy)"


def test_an_unplugged_port_is_offline_and_a_port_back_at_the_same_path_is_opened_again(pos_pairs, pool, link, tmp_path):
    device = tmp_path / "usb-POS_Serial-if00"  # as /dev/serial/by-id/... points at the adapter's tty
    first = pos_pairs(answer=ACK)
    device.symlink_to(first.name)
    serial_line = link(device, ack_timeout_s=DEADLINE_S)
    assert bounded(pool, lambda: serial_line.hand_over(LINE)) is None
    assert first.lines() == [LINE.encode()]

    first.unplug()
    device.unlink()  # udev removes the link with the adapter
    error = bounded(pool, lambda: serial_line.hand_over("0012345679\n"))
    assert isinstance(error, PosOffline)
    assert str(error).startswith(f"{device}: ") and "\n" not in str(error)

    second = pos_pairs(answer=ACK)
    device.symlink_to(second.name)
    assert bounded(pool, lambda: serial_line.hand_over("0012345680\n")) is None
    assert second.lines() == [b"0012345680\n"]


def test_a_port_replugged_between_two_lines_takes_the_next_line(pos_pairs, pool, link, tmp_path):
    """The kiosk still holds the gone port's descriptor: the first failure on it reopens the path, once."""
    device = tmp_path / "usb-POS_Serial-if00"
    first = pos_pairs()
    device.symlink_to(first.name)
    serial_line = link(device)
    assert bounded(pool, lambda: serial_line.hand_over(LINE)) is None
    assert first.lines() == [LINE.encode()]

    first.unplug()
    second = pos_pairs()
    device.unlink()
    device.symlink_to(second.name)
    assert bounded(pool, lambda: serial_line.hand_over("0012345679\n")) is None
    assert second.lines() == [b"0012345679\n"]


def test_a_line_with_other_control_characters_is_refused_before_anything_is_sent(pos_pairs, pool, link):
    pos = pos_pairs()
    serial_line = link(pos.name)
    for line in ("00" + ACK.decode() + "\n", "00é\n", "00\x1b\n"):
        with pytest.raises(ValueError, match="a serial line holds printable ASCII, Tab, CR and LF only"):
            serial_line.hand_over(line)
    assert pos.lines() == []


def test_close_releases_the_port_and_the_next_line_opens_it_again(pos_pairs, pool, link):
    pos = pos_pairs()
    serial_line = link(pos.name)
    assert bounded(pool, lambda: serial_line.hand_over(LINE)) is None
    serial_line.close()
    serial_line.close()
    assert bounded(pool, lambda: serial_line.hand_over(LINE)) is None
    assert pos.lines() == [LINE.encode()] * 2


def test_bounds_that_could_hang_or_spin_are_refused():
    for options in ({"baud": 0}, {"ack_timeout_s": -1}, {"retries": -1}, {"write_timeout_s": 0}, {"ack": b""}, {"ack": NAK}):
        with pytest.raises(ValueError):
            SerialLine("/dev/ttyACM0", **options)
