"""The fault registry: what is wrong right now, each fault raised once and cleared once.

Anything may raise or clear a fault, from any thread, as often as it likes (the scan loop clears
``camera`` on every frame); the registry logs and tells the outputs only on a change, so the amber
LED and the log see one start and one end per fault::

    faults = FaultRegistry(outputs)
    faults.raise_(CAMERA, "no frame for 5 s")   # logged, outputs told
    faults.raise_(CAMERA, "no frame for 6 s")   # message updated, nobody told again
    faults.clear(CAMERA, "frames arriving")     # logged, outputs told
"""

from __future__ import annotations

import logging
import threading

log = logging.getLogger("device.daemon")

#: Fault names, shared with feedback and status.
CAMERA = "camera"  # no frames: unplugged, stalled
OUTBOX = "outbox"  # identifications cannot be stored: disk full, file unusable
DELIVERY_AUTH = "delivery-auth"  # the central refuses the token: delivery paused
BACKLOG = "backlog"  # the oldest undelivered identification is older than feedback.backlog_alert_s
OUTBOX_INTEGRITY = "outbox-integrity"  # identifications lost, salvaged or quarantined: on until `kiosk queue ack`


class FaultRegistry:
    """Active faults by name, with their latest message; changes go to ``outputs``.

    :param outputs: told ``fault(name, message)`` and ``fault_cleared(name)`` (an
        :class:`~device.outputs.OutputRunner`, or any :class:`~device.outputs.Output`).
    """

    def __init__(self, outputs):
        self.outputs = outputs
        self._lock = threading.Lock()
        self._active: dict[str, str] = {}

    def raise_(self, name: str, message: str) -> None:
        """Fault ``name`` is on; only the first call until it clears is logged and told."""
        with self._lock:
            first = name not in self._active
            self._active[name] = message
        if first:
            log.warning("fault %s: %s", name, message)
            self.outputs.fault(name, message)

    def clear(self, name: str, how: str) -> None:
        """Fault ``name`` is over (``how`` says why, for the log); a no-op when it was not on."""
        with self._lock:
            was = self._active.pop(name, None)
        if was is not None:
            log.info("%s fault cleared: %s", name, how)
            self.outputs.fault_cleared(name)

    def set(self, name: str, on: bool, message: str, how: str) -> None:
        """Raise or clear ``name`` as ``on`` says: for checks that run every turn."""
        if on:
            self.raise_(name, message)
        else:
            self.clear(name, how)

    def active(self) -> dict[str, str]:
        """A copy: name -> message, for every fault on now."""
        with self._lock:
            return dict(self._active)
