"""The kiosk daemon: the scan loop and everything that keeps it running.

* :mod:`device.daemon.kiosk`  -- camera -> pipeline -> presentations -> outbox, with the forwarder
* :mod:`device.daemon.notify` -- systemd's notify protocol (READY, STATUS, WATCHDOG)
* :mod:`device.daemon.devclass` -- device classes that appeared after start (restart to allow them)
"""

from device.daemon.kiosk import Kiosk, make_forwarder, open_outbox, run_until_signalled

__all__ = ["Kiosk", "make_forwarder", "open_outbox", "run_until_signalled"]
