"""The POS hand-off (issue 22): the client's number handed to the counter's POS, as a counter scanner does.

* :mod:`device.outputs.pos.output` -- :class:`~device.outputs.pos.output.PosOutput`, the output that
  hands each committed identification (``pos.template``) to a :class:`~device.outputs.pos.link.PosLink`
  and records the outcome with it in the outbox
* :mod:`device.outputs.pos.link` -- the one interface of every way to the POS, and ``PosOffline``
* :mod:`device.outputs.pos.keyboard` -- the keyboard wedge: boot-keyboard reports for a text, and the
  writer that types them into ``/dev/hidg0`` without ever hanging, in a layout of :mod:`device.keyboard_layouts`
* :mod:`device.outputs.pos.udc` -- the USB device controller the gadget sits on, and its state
* :mod:`device.outputs.pos.host` -- what a USB host types from the reports written (tests, the demo)
"""
