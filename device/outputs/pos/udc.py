"""The USB device controller (UDC) the keyboard gadget sits on, and whether a host has configured it.

A Pi is a USB keyboard through its one device controller (``fe980000.usb`` on a Pi 4, the dwc2
overlay); ``/sys/class/udc/<udc>/state`` says how far the POS has taken the gadget: ``not
attached`` (no cable, or the POS is off), ``powered``, ``default``, ``addressed``, ``configured``
(the POS enumerated it: keys typed now arrive), ``suspended`` (the POS sleeps). Like PiKVM's kvmd,
the kiosk types only while it reads ``configured``. sysfs sits under ``$KIOSK_SYSFS_PREFIX`` in
tests (:mod:`device.sysfs`)::

    state = udc_state(udc_name())       # "configured" when the POS has enumerated the keyboard
"""

from __future__ import annotations

import os

from device.sysfs import SYSFS_PREFIX_ENV, prefixed

#: The state in which the host takes keystrokes.
CONFIGURED = "configured"

#: Where the kernel lists the device controllers.
UDC_CLASS = "/sys/class/udc"


class NoUdc(Exception):
    """This machine has no USB device controller: the gadget cannot exist (one line, for a technician)."""


def udc_name(name: str | None = None) -> str:
    """The device controller to check: ``name`` if given, else the machine's first (a Pi has one).

    A :class:`NoUdc` when there is none, saying what is missing.
    """
    if name:
        return name
    try:
        found = sorted(os.listdir(prefixed(UDC_CLASS, SYSFS_PREFIX_ENV)))
    except OSError:
        found = []
    if not found:
        raise NoUdc(
            f"no USB device controller in {UDC_CLASS}: the Pi is no USB keyboard yet"
            " (dtoverlay=dwc2 in /boot/firmware/config.txt, the USB-C port of a Pi 4 or 5, the data port of a Zero 2 W; a Pi 3 has none)"
        )
    return found[0]


def udc_state(name: str) -> str:
    """What ``/sys/class/udc/<name>/state`` reads (``"configured"``, ``"not attached"``, ...);
    ``"gone"`` when the controller is not there."""
    try:
        return prefixed(f"{UDC_CLASS}/{name}/state", SYSFS_PREFIX_ENV).read_text().strip()
    except OSError:
        return "gone"
