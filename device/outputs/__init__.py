"""What happens after a commit, each output behind one interface: feedback (LEDs, buzzer), ...

* :mod:`device.outputs.feedback` -- LEDs, buzzer and the operator's button through gpiozero
"""
