"""What happens after the kiosk did something, each output behind one interface, off the scan thread.

* :mod:`device.outputs.base` -- the :class:`Output` interface and the :class:`OutputRunner`
* :mod:`device.outputs.log` -- the "identified" and "not a card" log lines
* :mod:`device.outputs.feedback` -- LEDs, buzzer and the operator's button through gpiozero
* :mod:`device.outputs.preview` -- the live view (``preview.enabled``, ``kiosk preview``)
* :mod:`device.outputs.annotate` -- the readings drawn on a frame (the live view, diag snapshots)

Outputs receive the typed events of :mod:`device.events`. A new output is one module here with
an :class:`Output` subclass and a ``from_config(cfg)`` reading its own config section, and one
line in :data:`device.assembly.OUTPUT_FACTORIES`.
"""

from device.outputs.base import Output, OutputHealth, OutputRunner, handler_name

__all__ = ["Output", "OutputHealth", "OutputRunner", "handler_name"]
