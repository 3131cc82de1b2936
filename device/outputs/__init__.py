"""What happens after the kiosk did something, each output behind one interface, off the scan thread.

* :mod:`device.outputs.base` -- the :class:`Output` interface and the :class:`OutputRunner`
* :mod:`device.outputs.log` -- the "identified" and "not a card" log lines
* :mod:`device.outputs.feedback` -- LEDs, buzzer and the operator's button through gpiozero

A new output is one module here with an :class:`Output` subclass and a ``from_config(cfg)``
reading its own config section.
"""

from device.outputs.base import EVENTS, Output, OutputRunner

__all__ = ["EVENTS", "Output", "OutputRunner"]
