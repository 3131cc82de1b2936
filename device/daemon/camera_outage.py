"""Since when the camera is down, kept across daemon restarts.

A camera that stays away (a USB webcam unplugged) is a ``camera`` fault that stays; a daemon that
restarts meanwhile (a thread that gave up, an upgrade, ``systemctl restart``) must not make it look
new: ``kiosk status`` says "down for" counted from when it went down, not from the last start.

So the supervisor writes, when the camera goes down, the moment it went down to
:data:`~device.runtime_dir.CAMERA_DOWN_FILE` in the runtime directory, and removes the file once
frames come again. A new daemon reads it at start and carries the outage on
(:meth:`~device.camera.grabber.LiveSource.carry_outage`). The moment is ``time.monotonic()``:
Linux's CLOCK_MONOTONIC counts from boot in every process alike and never jumps with the wall
clock (a Pi without a real-time clock sets its wall clock late), so it is only compared on the
same boot, named by the kernel's boot id, and for the same ``camera.source``. The runtime
directory (``/run/kiosk``) survives a restart of the unit (``RuntimeDirectoryPreserve=restart``)
but not a stop or a reboot, and after a reboot a camera is looked at afresh::

    outage = CameraOutage(Path("/run/kiosk"), "v4l2:/dev/video0")
    since = outage.load()                 # None: no outage going on from before
    outage.update(stats.state, stats.down_for_s)   # each housekeeping turn
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

from device.runtime_dir import CAMERA_DOWN_FILE
from device.status.file import boot_id

log = logging.getLogger(__name__)


class CameraOutage:
    """The camera's outage on disk: written once when it goes down, removed when it is back.

    :param runtime_dir: ``kiosk.runtime_dir``.
    :param source: ``camera.source`` as the source names itself: an outage of another camera is not this one's.
    """

    def __init__(self, runtime_dir: Path, source: str) -> None:
        self.path = runtime_dir / CAMERA_DOWN_FILE
        self.source = source
        self._written: float | None = None  # the moment on disk, to write only when it changes

    def load(self) -> float | None:
        """Since when (``time.monotonic()``) the camera has been down, from an earlier daemon on
        this boot; None when no such outage is recorded, or it is another boot's or camera's."""
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as e:
            log.warning("cannot read %s (the camera's outage starts afresh): %s", self.path, e)
            return None
        if not isinstance(data, dict) or data.get("boot_id") != boot_id() or data.get("source") != self.source:
            return None
        since = data.get("down_since_monotonic")
        if not isinstance(since, (int, float)) or since > time.monotonic():
            return None
        self._written = float(since)
        return float(since)

    def update(self, state: str | None, down_for_s: float | None) -> None:
        """Record the outage while the camera is ``down``, forget it once it is ``up``."""
        if state == "down" and down_for_s is not None:
            since = time.monotonic() - down_for_s
            if self._written is not None and abs(self._written - since) < 1.0:
                return
            self._write(since)
        elif state == "up" and self._written is not None:
            self._written = None
            try:
                self.path.unlink(missing_ok=True)
            except OSError as e:
                log.warning("cannot remove %s: %s", self.path, e)

    def _write(self, since: float) -> None:
        record = {"boot_id": boot_id(), "source": self.source, "down_since_monotonic": since}
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}")
        try:
            tmp.write_text(json.dumps(record))
            os.replace(tmp, self.path)
        except OSError as e:  # a full runtime directory costs only the count across restarts
            log.warning("cannot record the camera's outage in %s: %s", self.path, e)
            return
        self._written = since
