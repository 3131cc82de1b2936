"""The Pi as a USB keyboard: the USB gadget with the HID keyboard function, and nothing else.

The Linux USB gadget is made through configfs (the ``libcomposite`` module): a folder under
``/sys/kernel/config/usb_gadget/``, its USB ids and strings, one configuration, one function
``hid.usb0`` (a boot keyboard: protocol 1, subclass 1, 8-byte reports, the report descriptor of the
kernel's ``Documentation/usb/gadget_hid.rst``) linked into the configuration, and the gadget bound
to the machine's USB device controller (UDC). The POS then sees a keyboard, and the kiosk types
into ``/dev/hidg0`` (:mod:`device.outputs.pos.keyboard`).

Nothing else is ever exposed: no mass storage, no network, no serial function. A kiosk that can
type into a bank's POS is a security boundary (docs/POS.md): the gadget gives the POS one HID
keyboard, and :func:`create_gadget` refuses a gadget folder that holds any other function.

Run as root at boot by ``kiosk-usb-keyboard.service``; by hand::

    sudo /opt/kiosk/venv/bin/python -m device.outputs.pos.gadget check    # what this machine lacks
    sudo /opt/kiosk/venv/bin/python -m device.outputs.pos.gadget create   # the keyboard appears on the POS
    sudo /opt/kiosk/venv/bin/python -m device.outputs.pos.gadget remove

configfs sits under ``/sys``, so the fake tree of ``$KIOSK_SYSFS_PREFIX`` (:mod:`device.sysfs`)
holds it in tests, with ``/sys/class/udc`` and the device tree's model.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from device.outputs.pos.keyboard import REPORT_LENGTH
from device.outputs.pos.udc import UDC_CLASS, NoUdc, udc_name
from device.sysfs import SYSFS_PREFIX_ENV, prefixed

#: Where configfs keeps the USB gadgets once ``libcomposite`` is loaded.
GADGETS = "/sys/kernel/config/usb_gadget"
#: The kiosk's gadget.
GADGET = f"{GADGETS}/kiosk"
#: The model the firmware's device tree names (``/proc/device-tree`` links to this folder).
MODEL = "/sys/firmware/devicetree/base/model"
#: The Raspberry Pi firmware's config file (Bookworm; ``/boot/config.txt`` before).
BOOT_CONFIG = "/boot/firmware/config.txt"

#: The Linux Foundation's vendor id and its "Multifunction Composite Gadget" product id, which the
#: kernel's own gadget examples and most Pi gadget projects (PiKVM, P4wnP1) use: no id of a real
#: keyboard maker is borrowed.
ID_VENDOR = 0x1D6B
ID_PRODUCT = 0x0104
#: The function, the configuration and the language of the strings (0x409: US English).
FUNCTION = "hid.usb0"
CONFIGURATION = "c.1"
STRINGS = "strings/0x409"
#: HID boot interface subclass and keyboard protocol: a BIOS, a login screen and every POS take it.
SUBCLASS = 1
PROTOCOL = 1

#: The boot keyboard's report descriptor, byte for byte the one in the kernel's
#: Documentation/usb/gadget_hid.rst: 8 modifier bits, a reserved byte, 5 LED bits and 3 padding
#: bits (output), six key codes 0-101. Its input report is the 8 bytes keyboard.py writes.
REPORT_DESCRIPTOR = bytes(
    (
        0x05, 0x01,  # USAGE_PAGE (Generic Desktop)
        0x09, 0x06,  # USAGE (Keyboard)
        0xA1, 0x01,  # COLLECTION (Application)
        0x05, 0x07,  #   USAGE_PAGE (Keyboard)
        0x19, 0xE0,  #   USAGE_MINIMUM (Keyboard LeftControl)
        0x29, 0xE7,  #   USAGE_MAXIMUM (Keyboard Right GUI)
        0x15, 0x00,  #   LOGICAL_MINIMUM (0)
        0x25, 0x01,  #   LOGICAL_MAXIMUM (1)
        0x75, 0x01,  #   REPORT_SIZE (1)
        0x95, 0x08,  #   REPORT_COUNT (8)
        0x81, 0x02,  #   INPUT (Data,Var,Abs): the modifier byte
        0x95, 0x01,  #   REPORT_COUNT (1)
        0x75, 0x08,  #   REPORT_SIZE (8)
        0x81, 0x03,  #   INPUT (Cnst,Var,Abs): the reserved byte
        0x95, 0x05,  #   REPORT_COUNT (5)
        0x75, 0x01,  #   REPORT_SIZE (1)
        0x05, 0x08,  #   USAGE_PAGE (LEDs)
        0x19, 0x01,  #   USAGE_MINIMUM (Num Lock)
        0x29, 0x05,  #   USAGE_MAXIMUM (Kana)
        0x91, 0x02,  #   OUTPUT (Data,Var,Abs)
        0x95, 0x01,  #   REPORT_COUNT (1)
        0x75, 0x03,  #   REPORT_SIZE (3)
        0x91, 0x03,  #   OUTPUT (Cnst,Var,Abs)
        0x95, 0x06,  #   REPORT_COUNT (6)
        0x75, 0x08,  #   REPORT_SIZE (8)
        0x15, 0x00,  #   LOGICAL_MINIMUM (0)
        0x25, 0x65,  #   LOGICAL_MAXIMUM (101)
        0x05, 0x07,  #   USAGE_PAGE (Keyboard)
        0x19, 0x00,  #   USAGE_MINIMUM (Reserved)
        0x29, 0x65,  #   USAGE_MAXIMUM (Keyboard Application)
        0x81, 0x00,  #   INPUT (Data,Ary,Abs): six key codes
        0xC0,  # END_COLLECTION
    )
)  # fmt: skip

#: Exit codes of the command line (sysexits.h): the machine lacks the controller or the module
#: (EX_UNAVAILABLE), a configfs step failed (EX_CANTCREAT); neither is fixed by trying again.
EXIT_UNAVAILABLE = 69
EXIT_CANTCREAT = 73


class GadgetError(Exception):
    """A step of making or removing the gadget failed: one line naming the path and the cause."""


@dataclass(frozen=True)
class Attribute:
    """One configfs attribute the gadget sets: its path in the gadget folder and what is written."""

    path: str
    value: bytes


def attributes(serial: str) -> tuple[Attribute, ...]:
    """Every attribute of the gadget, in the order they are written; ``serial`` is its serial number.

    >>> [a.path for a in attributes("kiosk-1")][:3]
    ['idVendor', 'idProduct', 'bcdDevice']
    """

    def text(path: str, value: str) -> Attribute:
        return Attribute(path, f"{value}\n".encode())

    function = f"functions/{FUNCTION}"
    config = f"configs/{CONFIGURATION}"
    return (
        text("idVendor", f"0x{ID_VENDOR:04x}"),
        text("idProduct", f"0x{ID_PRODUCT:04x}"),
        text("bcdDevice", "0x0100"),  # the kiosk's gadget version 1.0
        text("bcdUSB", "0x0200"),  # USB 2.0
        text(f"{STRINGS}/manufacturer", "Counter kiosk"),
        text(f"{STRINGS}/product", "Counter kiosk keyboard"),
        text(f"{STRINGS}/serialnumber", serial),
        text(f"{config}/{STRINGS}/configuration", "Boot keyboard"),
        # The Pi runs on its own supply (docs/POS.md): it asks the POS's port for no more than a keyboard.
        text(f"{config}/MaxPower", "100"),
        text(f"{function}/protocol", str(PROTOCOL)),
        text(f"{function}/subclass", str(SUBCLASS)),
        text(f"{function}/report_length", str(REPORT_LENGTH)),
        Attribute(f"{function}/report_desc", REPORT_DESCRIPTOR),
    )


#: The folders the gadget makes inside its own, parents first; removed in the reverse order.
FOLDERS = (STRINGS, f"functions/{FUNCTION}", f"configs/{CONFIGURATION}", f"configs/{CONFIGURATION}/{STRINGS}")
#: Folders configfs makes by itself with their parent (and removes with it); a plain folder
#: standing in for configfs gets them from ``mkdir(parents=True)``.
KERNEL_MADE = ("strings", "functions", "configs", f"configs/{CONFIGURATION}/strings")
#: The function's link into the configuration: what puts the keyboard into the gadget.
LINK = f"configs/{CONFIGURATION}/{FUNCTION}"


def gadget_path() -> Path:
    """The kiosk's gadget folder (under ``$KIOSK_SYSFS_PREFIX`` in tests)."""
    return prefixed(GADGET, SYSFS_PREFIX_ENV)


def board_model() -> str:
    """The board's model as its device tree names it (``"Raspberry Pi 4 Model B Rev 1.4"``), or "" when not known."""
    try:
        return prefixed(MODEL, SYSFS_PREFIX_ENV).read_bytes().rstrip(b"\0\n").decode(errors="replace")
    except OSError:
        return ""


@dataclass(frozen=True)
class Board:
    """Where a Raspberry Pi model takes the cable to the POS, and the overlay line that enables it.

    ``port`` is None for the models whose USB controller sits behind a hub: they cannot be a keyboard.
    """

    pattern: str
    port: str | None
    overlay: str = "dtoverlay=dwc2"


#: Per model (a regular expression on the device tree's model), first match wins.
BOARDS = (
    Board(
        r"Raspberry Pi 5",
        "the USB-C power port",
        "dtoverlay=dwc2 (on some Pi 5 the controller then stays a host: dtoverlay=dwc2,dr_mode=peripheral)",
    ),
    Board(r"Raspberry Pi (4|400)\b", "the USB-C power port"),
    Board(r"Raspberry Pi Zero", 'the inner micro-USB port marked "USB" (not "PWR IN")'),
    Board(r"Raspberry Pi (3|2|Model [AB])\b", None),
)


def board(model: str) -> Board | None:
    """The :class:`Board` entry for ``model``, or None for a machine this table does not know.

    >>> board("Raspberry Pi 3 Model B Plus Rev 1.3").port is None
    True
    >>> board("Raspberry Pi Zero 2 W Rev 1.0").port
    'the inner micro-USB port marked "USB" (not "PWR IN")'
    """
    return next((b for b in BOARDS if re.match(b.pattern, model)), None)


def check_host() -> list[str]:
    """What this machine lacks to be a USB keyboard, one line for a technician each; [] when nothing.

    No device controller in ``/sys/class/udc``: the overlay line for the firmware's config file and
    the port to use, per the board's model, or that the model cannot (a Pi 3, 3B+, 2). No
    ``usb_gadget`` folder in configfs: the ``libcomposite`` module is not loaded.
    """
    missing = []
    if not _udcs():
        model = board_model()
        known = board(model)
        if known is not None and known.port is None:
            missing.append(
                f"a {model} cannot be a USB keyboard: its USB controller sits behind the board's USB hub, so it has"
                ' no device port; use a Pi 4, Pi 5 or Zero 2 W, or pos.output = "serial" with a USB-serial adapter'
            )
        elif known is not None:
            missing.append(
                f"no USB device controller in {UDC_CLASS}: add the line {known.overlay} to {BOOT_CONFIG} (under [all]),"
                f" reboot, and connect the POS to {known.port} of this {model}"
            )
        else:
            missing.append(
                f"no USB device controller in {UDC_CLASS} ({model or 'model unknown'}): on a Raspberry Pi 4, Pi 5 or Zero 2 W"
                f" add the line dtoverlay=dwc2 to {BOOT_CONFIG} and reboot; a Pi 3, 3B+ or 2 cannot be a USB keyboard"
            )
    if not prefixed(GADGETS, SYSFS_PREFIX_ENV).is_dir():
        missing.append(
            f"no {GADGETS}: the libcomposite module is not loaded (sudo modprobe libcomposite;"
            " if modprobe does not find it, this kernel has no USB gadget support)"
        )
    return missing


def _udcs() -> list[str]:
    try:
        return sorted(os.listdir(prefixed(UDC_CLASS, SYSFS_PREFIX_ENV)))
    except OSError:
        return []


def load_libcomposite() -> None:
    """``modprobe libcomposite``: configfs's ``usb_gadget`` folder appears. Its failure is left to
    :func:`check_host`, which says what is missing."""
    modprobe = shutil.which("modprobe") or next((p for p in ("/usr/sbin/modprobe", "/sbin/modprobe") if os.path.exists(p)), None)
    if modprobe:
        subprocess.run([modprobe, "libcomposite"], check=False, capture_output=True, timeout=30)


def create_gadget(*, udc: str | None = None, serial: str | None = None, load_module: Callable[[], None] = load_libcomposite) -> str:
    """Make the keyboard gadget and bind it to ``udc`` (the machine's first); the UDC's name.

    Idempotent: a gadget already bound to that controller is left as it is (nothing written), a
    half-made one (a failed earlier try) is completed. Whatever this machine lacks is a
    :class:`NoUdc` with :func:`check_host`'s lines; a step that fails is a :class:`GadgetError`
    naming its path; a gadget folder holding another function is refused (only the keyboard).
    ``load_module`` loads libcomposite when configfs has no ``usb_gadget`` folder yet.
    """
    if not prefixed(GADGETS, SYSFS_PREFIX_ENV).is_dir():
        load_module()
    missing = check_host()
    if missing:
        raise NoUdc("; ".join(missing))
    name = udc_name(udc)
    root = gadget_path()
    _refuse_other_functions(root)
    bound = _bound_to(root)
    if bound == name:
        return name
    if bound:  # on another controller: attributes cannot change while bound
        with _step("unbind from the device controller", root / "UDC"):
            (root / "UDC").write_text("\n")
    with _step("make the folder", root):
        root.mkdir(exist_ok=True)
    for folder in FOLDERS:
        with _step("make the folder", root / folder):
            (root / folder).mkdir(parents=True, exist_ok=True)
    for attribute in attributes(serial or _serial()):
        with _step("write", root / attribute.path):
            (root / attribute.path).write_bytes(attribute.value)
    link = root / LINK
    if not link.is_symlink():
        with _step("link the keyboard function into the configuration", link):
            link.symlink_to(root / "functions" / FUNCTION)
    with _step(f"bind to the device controller {name} (is another gadget bound to it? ls {GADGETS})", root / "UDC"):
        (root / "UDC").write_text(f"{name}\n")
    return name


def remove_gadget() -> bool:
    """Unbind and take the gadget apart, in the kernel's order (docs: usb/gadget_configfs.rst); True
    when there was one. Idempotent: nothing there, nothing done.

    On configfs the attributes and the folders it made itself go with their folder, and unlinking
    or removing one of them is refused (EPERM); in a plain folder standing in for configfs (tests)
    they are files and folders like any other and are removed before their folder.
    """
    root = gadget_path()
    if not root.exists():
        return False
    if _bound_to(root):
        with _step("unbind from the device controller", root / "UDC"):
            (root / "UDC").write_text("\n")
    link = root / LINK
    if link.is_symlink():
        with _step("unlink the keyboard function from the configuration", link):
            link.unlink()
    written = [root / a.path for a in attributes("")] + [root / "UDC"]
    made = [root / f for f in KERNEL_MADE]
    for folder in [*reversed([root / f for f in FOLDERS]), root]:
        for file in written:
            if file.parent == folder:
                _remove_if_plain(file, file.unlink)
        for sub in made:
            if sub.parent == folder:
                _remove_if_plain(sub, sub.rmdir)
        if folder.exists():
            with _step("remove the folder", folder):
                folder.rmdir()
    return True


def _remove_if_plain(path: Path, remove: Callable[[], None]) -> None:
    """Remove ``path`` where it is a plain file or folder; on configfs the kernel refuses (EPERM)
    and takes it with its parent."""
    try:
        remove()
    except (FileNotFoundError, PermissionError):
        pass
    except OSError as exc:
        raise GadgetError(f"{path}: could not remove: {exc.strerror or exc}") from exc


def _bound_to(root: Path) -> str:
    """The controller the gadget is bound to ("" when unbound or not there)."""
    try:
        return (root / "UDC").read_text().strip()
    except OSError:
        return ""


def _refuse_other_functions(root: Path) -> None:
    try:
        others = sorted(set(os.listdir(root / "functions")) - {FUNCTION})
    except OSError:
        return
    if others:
        raise GadgetError(
            f"{root / 'functions'} holds {', '.join(others)} besides the keyboard: the kiosk exposes the HID keyboard alone;"
            " remove that gadget (python -m device.outputs.pos.gadget remove) and create it again"
        )


def _serial() -> str:
    """The board's serial number (unique per Pi), else the host name: two kiosks on one POS differ."""
    try:
        found = prefixed("/sys/firmware/devicetree/base/serial-number", SYSFS_PREFIX_ENV).read_bytes().rstrip(b"\0\n").decode()
    except (OSError, UnicodeDecodeError):
        found = ""
    return found or os.uname().nodename


@contextmanager
def _step(what: str, path: Path) -> Iterator[None]:
    """One step on ``path``: its ``OSError`` becomes a :class:`GadgetError` naming the path and the step."""
    try:
        yield
    except OSError as exc:
        raise GadgetError(f"{path}: could not {what}: {exc.strerror or exc}") from exc


def main(argv: list[str] | None = None) -> int:
    """``python -m device.outputs.pos.gadget create|remove|check``: what the boot unit runs."""
    parser = argparse.ArgumentParser(prog="python -m device.outputs.pos.gadget", description="The Pi as a USB keyboard for the POS.")
    parser.add_argument("action", choices=("create", "remove", "check"))
    parser.add_argument("--udc", help="the USB device controller (default: the machine's first, in /sys/class/udc)")
    args = parser.parse_args(argv)
    try:
        if args.action == "check":
            missing = check_host()
            for line in missing:
                print(f"missing: {line}", file=sys.stderr)
            if missing:
                return EXIT_UNAVAILABLE
            print(f"ok: USB device controller {udc_name(args.udc)}, libcomposite loaded")
        elif args.action == "create":
            print(f"USB keyboard gadget {gadget_path()} bound to {create_gadget(udc=args.udc)}")
        else:
            print(f"USB keyboard gadget {gadget_path()} {'removed' if remove_gadget() else 'was not there'}")
    except NoUdc as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    except GadgetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_CANTCREAT
    return 0


if __name__ == "__main__":
    sys.exit(main())
