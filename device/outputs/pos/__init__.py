"""The POS hand-off (issue 22): the client's number handed to the counter's POS, as a counter scanner does.

This package is the hand-off's home. What is here today is its device edge, the keyboard wedge
(the Pi as a USB keyboard typing into the POS's focused field):

* :mod:`device.outputs.pos.layouts` -- the host's keyboard layouts as data: which key, with which
  modifier, types each character the kiosk may type
* :mod:`device.outputs.pos.keyboard` -- boot-keyboard reports for a text, and the writer that types
  them into ``/dev/hidg0`` without ever hanging (:class:`~device.outputs.pos.keyboard.PosOffline`)
* :mod:`device.outputs.pos.udc` -- the USB device controller the gadget sits on, and its state

The output that calls it on each committed identification, its config section and the serial
and HTTP hand-offs come in the modules beside these.
"""
