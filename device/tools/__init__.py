"""Tooling around the kiosk, never loaded by the daemon or the technician commands.

* :mod:`device.tools.synth`    -- synthetic client cards, counter scenes and presentation videos
* :mod:`device.tools.bench`    -- the benchmarks behind ``kiosk bench``
* :mod:`device.tools.demo`     -- ``kiosk demo``: the whole kiosk on a rendered video with a local central
* :mod:`device.tools.testcard` -- ``kiosk testcard``: a printable client card

They need what the daemon does not (python-barcode, Pillow, the reference central); keeping them
here keeps ``kiosk status`` and the daemon's start-up free of them (tests/test_layout.py checks).
"""
