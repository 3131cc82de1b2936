"""`kiosk demo` and `kiosk testcard` (device.tools), loaded only when asked for."""

from __future__ import annotations

HELP = {
    "demo": "run the whole kiosk on a rendered counter video (or a camera) with a local central",
    "testcard": "write a printable client card (PDF, or PNG at 300 dpi) at true size",
}


def register(sub) -> None:
    from device.tools import demo, testcard

    for name, module, help_text in (
        ("demo", demo, "run the whole kiosk on a rendered counter video (or a camera) with a local central"),
        ("testcard", testcard, "write a printable client card (PDF, or PNG at 300 dpi) at true size"),
    ):
        p = sub.add_parser(name, help=help_text, description=module.__doc__.strip().splitlines()[0])
        module.add_arguments(p)
        p.set_defaults(func=module.main)
