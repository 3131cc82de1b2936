"""The keyboard hand-off at the device edge: what the kiosk writes where ``/dev/hidg0`` would be.

A FIFO stands in for the gadget's HID device, read by a thread as the USB host would; what
arrives is decoded back to text the way a host does (a key types when it goes down, so a key
pressed again without a release between types nothing), with the inverse of the layout's table.
Exact reports are checked against codes written here from the USB HID Usage Tables and the XKB
files, not from the tables under test. A POS that is absent, stops reading or drops the gadget
must be :class:`PosOffline` within the bounded retries: each call runs in a thread that the test
waits for with a deadline, so a hang fails the test instead of stalling the run.
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import threading
from pathlib import Path

import pytest
from support.pos_host import DEADLINE_S, FifoHost
from support.waiting import wait_until

from device.keyboard_layouts import LAYOUTS, TYPEABLE, layout
from device.outputs.pos import keyboard as keyboard_module
from device.outputs.pos.host import typed_by_host
from device.outputs.pos.keyboard import RELEASE, HidKeyboard, reports
from device.outputs.pos.link import PosOffline
from device.sysfs import SYSFS_PREFIX_ENV

#: Per layout, keys written from the HID usage tables (page 0x07) and each layout's XKB file:
#: character -> (modifier byte, usage). 0x02 is Left Shift, 0x40 Right Alt (AltGr).
KNOWN_KEYS = {
    "us": {"A": (0x02, 0x04), "a": (0, 0x04), "1": (0, 0x1E), "!": (0x02, 0x1E), "@": (0x02, 0x1F), "0": (0, 0x27), "z": (0, 0x1D),
           "\n": (0, 0x28), "\t": (0, 0x2B), " ": (0, 0x2C), "-": (0, 0x2D), "/": (0, 0x38), "'": (0, 0x34)},
    "lv": {"1": (0, 0x1E), "0": (0, 0x27), "q": (0, 0x14), "z": (0, 0x1D), "@": (0x02, 0x1F), "-": (0, 0x2D), '"': (0x02, 0x34)},
    "de": {"z": (0, 0x1C), "Z": (0x02, 0x1C), "y": (0, 0x1D), "1": (0, 0x1E), "@": (0x40, 0x14), "-": (0, 0x38), "/": (0x02, 0x24),
           "#": (0, 0x31), "<": (0, 0x64), "~": (0x40, 0x30), "?": (0x02, 0x2D), "\n": (0, 0x28)},
    "fr": {"1": (0x02, 0x1E), "0": (0x02, 0x27), "&": (0, 0x1E), "a": (0, 0x14), "q": (0, 0x04), "z": (0, 0x1A), "w": (0, 0x1D),
           "m": (0, 0x33), ",": (0, 0x10), ".": (0x02, 0x36), "@": (0x40, 0x27), "-": (0, 0x23), "\t": (0, 0x2B)},
}  # fmt: skip

#: What each layout cannot type: dead (or latching) keys on the host, see device/keyboard_layouts.py.
LEFT_OUT = {"us": "", "lv": "'`", "de": "^`", "fr": "`~"}


def report(modifiers: int, usage: int) -> bytes:
    return bytes((modifiers, 0, usage, 0, 0, 0, 0, 0))


@pytest.fixture
def host(tmp_path):
    fifo = FifoHost(tmp_path / "hidg0")
    yield fifo
    fifo.close()  # a failed test's reader ends too, and no descriptor is left open


def bounded(call) -> BaseException | None:
    """Run ``call`` in a thread and wait, with a deadline, for it to return; what it raised, or None."""
    outcome: list[BaseException | None] = []

    def run():
        try:
            call()
        except BaseException as error:  # noqa: B036 -- handed to the test, which asserts on it
            outcome.append(error)
        else:
            outcome.append(None)

    threading.Thread(target=run, name="type-text", daemon=True).start()
    wait_until(lambda: outcome, what="the keyboard to return instead of hanging", timeout_s=DEADLINE_S)
    return outcome[0]


def keyboard(path: Path | str, layout_name: str = "us", **options) -> HidKeyboard:
    return HidKeyboard(layout=layout(layout_name), path=str(path), **{"key_delay_ms": 0, **options})


@pytest.mark.parametrize("name", sorted(KNOWN_KEYS))
def test_each_layout_presses_the_key_its_host_types_the_character_with(name):
    for char, (modifiers, usage) in KNOWN_KEYS[name].items():
        assert reports(char, layout(name)) == [report(modifiers, usage), RELEASE], f"{char!r} on {name}"


@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_each_layout_types_all_printable_ascii_tab_and_enter_but_its_dead_keys(name):
    typeable = set(layout(name).keystrokes_by_char)
    assert typeable == TYPEABLE - set(LEFT_OUT[name])
    assert len({layout(name).keystroke(char) for char in typeable}) == len(typeable), "two characters share a keystroke"
    for char in LEFT_OUT[name] + "é\r\x00":
        with pytest.raises(ValueError, match=re.escape(f"the '{name}' keyboard layout cannot type {ascii(char)}")):
            reports("12" + char, layout(name))


@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_a_line_typed_into_the_fifo_reads_back_as_the_line_in_each_layout(host, name):
    line = "".join(sorted(layout(name).keystrokes_by_char)) + "00112 Zz\n"
    pauses: list[float] = []
    typed = keyboard(host.path, name, key_delay_ms=20, sleep=pauses.append)
    assert bounded(lambda: typed.type_text(line)) is None
    received = host.received()
    assert typed_by_host(received, layout(name)) == line
    assert received == b"".join(reports(line, layout(name)))
    assert pauses == [0.02] * (2 * len(line) - 1), "one pause between each two reports"


def test_repeated_digits_arrive_intact_with_a_release_between_each(host):
    assert bounded(lambda: keyboard(host.path, "fr").type_text("00112")) is None
    received = host.received()
    zero, one, two = report(0x02, 0x27), report(0x02, 0x1E), report(0x02, 0x1F)
    assert received == b"".join([zero, RELEASE, zero, RELEASE, one, RELEASE, one, RELEASE, two, RELEASE])
    assert typed_by_host(received, layout("fr")) == "00112"


def test_the_host_model_loses_a_repeat_without_a_release_between():
    """The decoder itself: without the release between them, two zeros type one."""
    zero = report(0, 0x27)
    assert typed_by_host(zero + zero + RELEASE, layout("us")) == "0"
    assert typed_by_host(zero + RELEASE + zero + RELEASE, layout("us")) == "00"


def test_a_character_the_layout_lacks_is_refused_before_any_byte_is_written(host):
    with pytest.raises(ValueError, match=r"the 'us' keyboard layout cannot type '\\xe9'"):
        keyboard(host.path).type_text("4000é\n")
    with pytest.raises(ValueError, match="the 'fr' keyboard layout cannot type '~'"):
        keyboard(host.path, "fr").type_text("12~\n")
    assert host.received() == b""


def test_a_fifo_nobody_reads_is_pos_offline_at_once(tmp_path):
    os.mkfifo(tmp_path / "hidg0")
    error = bounded(lambda: keyboard(tmp_path / "hidg0").type_text("1\n"))
    assert isinstance(error, PosOffline)
    assert str(error) == f"{tmp_path / 'hidg0'}: nothing reads it, no POS is behind it (ENXIO)"


def test_a_device_that_is_not_there_is_pos_offline(tmp_path):
    error = bounded(lambda: keyboard(tmp_path / "hidg0").type_text("1\n"))
    assert isinstance(error, PosOffline)
    assert "the USB keyboard gadget is not set up (ENOENT)" in str(error)


def test_a_pos_that_stops_reading_is_offline_after_the_bounded_retries_with_the_line_partly_typed(tmp_path):
    fifo = tmp_path / "hidg0"
    os.mkfifo(fifo)
    stalled_reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # opened, never read: the host stopped taking keys
    try:
        fcntl.fcntl(stalled_reader, fcntl.F_SETPIPE_SZ, 4096)  # full after 512 reports, not 8192
        line = "0123456789" * 100
        error = bounded(lambda: keyboard(fifo, write_wait_s=0.05, write_retries=2).type_text(line))
        assert isinstance(error, PosOffline)
        assert "the POS took no key for 3 x 0.05 s (EAGAIN)" in str(error)
        arrived = b""
        while chunk := os.read(stalled_reader, 4096):
            arrived += chunk
    finally:
        os.close(stalled_reader)
    assert 0 < len(arrived) < len(b"".join(reports(line, layout("us"))))
    assert line.startswith(typed_by_host(arrived, layout("us"))), "what arrived is the start of the line"


class DriverAnswers:
    """``os`` as the keyboard module sees it, with the gadget driver's answers to writes: the first
    ``taken`` writes go through, the next ones fail with ``failure``. Every report tried is kept."""

    def __init__(self, taken: int, failure: OSError):
        self.taken, self.failure, self.tried = taken, failure, []

    def __getattr__(self, name):
        return getattr(os, name)

    def write(self, fd: int, data: bytes) -> int:
        self.tried.append(bytes(data))
        if len(self.tried) > self.taken:
            raise self.failure
        return os.write(fd, data)


def test_a_host_gone_mid_line_is_pos_offline_and_the_pressed_key_is_still_released(host, monkeypatch):
    driver = DriverAnswers(taken=3, failure=OSError(errno.ESHUTDOWN, os.strerror(errno.ESHUTDOWN)))
    monkeypatch.setattr(keyboard_module, "os", driver)
    error = bounded(lambda: keyboard(host.path).type_text("12\n"))
    assert isinstance(error, PosOffline)
    assert "the POS dropped the USB keyboard: cable unplugged, POS off or restarting (ESHUTDOWN)" in str(error)
    assert driver.tried == [report(0, 0x1E), RELEASE, report(0, 0x1F), RELEASE], "after a press, its release is tried"
    assert typed_by_host(host.received(), layout("us")) == "12", "a line cut short is partly typed (here 2 held down)"


def test_a_pause_cut_short_after_a_press_still_releases_the_key(host):
    """A stop arriving between a press and its release (here the pause raises) leaves no key held down."""

    def stopped(seconds: float) -> None:
        raise InterruptedError("the daemon stops")

    error = bounded(lambda: keyboard(host.path, key_delay_ms=20, sleep=stopped).type_text("12\n"))
    assert isinstance(error, InterruptedError)
    assert host.received() == report(0, 0x1E) + RELEASE


def test_a_device_that_always_answers_eagain_is_pos_offline_after_the_retries(host, monkeypatch):
    driver = DriverAnswers(taken=0, failure=BlockingIOError(errno.EAGAIN, os.strerror(errno.EAGAIN)))
    monkeypatch.setattr(keyboard_module, "os", driver)
    error = bounded(lambda: keyboard(host.path, write_retries=4).type_text("1\n"))
    assert isinstance(error, PosOffline)
    assert "(EAGAIN)" in str(error)
    assert driver.tried == [report(0, 0x1E)] * 5, "the first try and 4 retries, then no more"
    assert host.received() == b""


def test_a_plain_file_standing_in_for_the_device_keeps_each_line(tmp_path):
    device = tmp_path / "hidg0"
    device.touch()
    keyboard(device, "de").type_text("yz\n")
    keyboard(device, "de").type_text("1\n")
    assert typed_by_host(device.read_bytes(), layout("de")) == "yz\n1\n"


@pytest.fixture
def udcs(tmp_path, monkeypatch):
    """A fake /sys with an empty /sys/class/udc; ``udcs(name, state)`` adds a controller."""
    root = tmp_path / "sysfs-root"
    (root / "sys/class/udc").mkdir(parents=True)
    monkeypatch.setenv(SYSFS_PREFIX_ENV, str(root))

    def add(name: str, state: str) -> None:
        (root / "sys/class/udc" / name).mkdir()
        (root / "sys/class/udc" / name / "state").write_text(state + "\n")

    return add


# /dev/null is the character device here: what matters is that the device is one, so the gadget's
# controller is checked; what is written to it does not.


def test_a_character_device_is_typed_into_only_while_its_controller_is_configured(udcs):
    udcs("fe980000.usb", "not attached")
    error = bounded(lambda: keyboard("/dev/null").type_text("1\n"))
    assert isinstance(error, PosOffline)
    assert "its controller fe980000.usb is 'not attached', not 'configured'" in str(error)
    assert str(error).startswith("/dev/null: ") and "\n" not in str(error)


def test_a_configured_controller_lets_the_line_through(udcs):
    udcs("fe980000.usb", "configured")
    assert bounded(lambda: keyboard("/dev/null").type_text("1\n")) is None


def test_the_controller_named_is_the_one_checked(udcs):
    udcs("a-first.usb", "configured")
    udcs("b-gadget.usb", "suspended")
    assert bounded(lambda: keyboard("/dev/null").type_text("1")) is None
    error = bounded(lambda: keyboard("/dev/null", udc="b-gadget.usb").type_text("1"))
    assert isinstance(error, PosOffline) and "'suspended'" in str(error)


def test_a_machine_without_a_device_controller_says_what_is_missing(udcs):
    error = bounded(lambda: keyboard("/dev/null").type_text("1"))
    assert isinstance(error, PosOffline)
    assert "no USB device controller in /sys/class/udc" in str(error) and "dtoverlay=dwc2" in str(error)


def test_bounds_that_could_hang_or_spin_are_refused():
    for options in ({"write_wait_s": 0}, {"write_retries": -1}, {"key_delay_ms": -1}):
        with pytest.raises(ValueError):
            keyboard("/dev/hidg0", **options)


def test_a_device_path_the_kiosk_cannot_write_is_offline_naming_the_setup_not_an_error(tmp_path):
    # A directory where /dev/hidg0 should be (a typo, a technician's mkdir): the POS takes nothing,
    # and the cause says what to fix, so the pos fault names it instead of the output's thread failing.
    folder = tmp_path / "hidg0"
    folder.mkdir()
    keyboard = HidKeyboard(layout=layout("us"), path=str(folder), key_delay_ms=0)
    with pytest.raises(PosOffline) as offline:
        keyboard.hand_over("0012345678\n")
    assert str(offline.value).startswith(f"{folder}: cannot write to it: Is a directory") and "(EISDIR)" in str(offline.value)
    assert "pos.hid_device" in str(offline.value)
