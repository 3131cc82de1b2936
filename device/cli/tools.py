"""`kiosk demo` and `kiosk testcard` (device.tools), loaded only when asked for."""

from __future__ import annotations

from device.cli import add_module_command

HELP = {
    "demo": "run the whole kiosk on a rendered counter video (or a camera) with a local central",
    "testcard": "write a printable client card (PDF, or PNG at 300 dpi) at true size",
}


def register(sub) -> None:
    from device.tools import demo, testcard

    add_module_command(sub, "demo", demo, HELP["demo"])
    add_module_command(sub, "testcard", testcard, HELP["testcard"])
