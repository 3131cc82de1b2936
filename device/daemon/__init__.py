"""The kiosk daemon: the stages between the camera and the outputs, and what keeps them running.

* :mod:`device.daemon.kiosk` -- :class:`Kiosk`: the stages wired together, and ``run``
  (built from a config by :func:`device.assembly.build_kiosk`)
* :mod:`device.daemon.scan_loop` -- frames -> pipeline -> presentations -> outbox commit -> outputs
* :mod:`device.daemon.faults` -- the fault registry: each fault published once when raised, once when cleared
* :mod:`device.daemon.supervisor` -- threads, watchdog, status file, systemd, device classes
* :mod:`device.daemon.snapshot` -- ``kiosk diag camera``: snapshots, from the daemon or the camera
* :mod:`device.daemon.requests` -- the request folder, screened: nothing left there blocks or floods the daemon
* :mod:`device.daemon.notify` -- systemd's notify protocol (READY, STATUS, WATCHDOG)
* :mod:`device.daemon.devclass` -- device classes that appeared after start (restart to allow them)
"""

from device.daemon.kiosk import Kiosk, run_until_signalled

__all__ = ["Kiosk", "run_until_signalled"]
