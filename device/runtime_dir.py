"""The daemon's runtime directory (``kiosk.runtime_dir``, ``/run/kiosk``): what lives there.

The daemon writes its status file there; commands leave requests in its request folder (a
snapshot for ``kiosk diag camera``, a sync for ``kiosk revocations sync``) and read the answers
beside it. The names are here, below everything that uses them (the status, the snapshot service,
the replaced-card list's sync, the commands), so imports between those point one way::

    folder = Path(cfg.kiosk.runtime_dir) / REQUESTS_DIR
"""

from __future__ import annotations

from pathlib import Path

STATUS_FILE = "status.json"
#: ``kiosk diag camera`` asks the running daemon for a frame (``snapshot-<id>.request``) and
#: ``kiosk revocations sync`` for a sync (``revocations-<id>.request``) by leaving a request in
#: this folder. The daemon makes it sticky and group-writable (01770), so the technicians' group
#: may ask without root while the rest of the runtime directory stays the daemon's...
REQUESTS_DIR = "requests"
#: A request's name: its kind's prefix, 32 hex digits (a uuid4), this suffix.
REQUEST_SUFFIX = ".request"
#: The prefix of a sync request (``revocations-<id>.request``).
SYNC_PREFIX = "revocations-"
#: ...and the daemon answers with ``snapshot-<id>.png`` (masked, the located barcodes drawn) and
#: then ``snapshot-<id>.json`` (the frame size and what was decoded), 0640, beside the status.
SNAPSHOT_PREFIX = "snapshot-"
#: Since when the camera is down (boot id, ``camera.source``, a monotonic moment), kept while it
#: stays down so that "down for" counts across daemon restarts (device/daemon/camera_outage.py).
CAMERA_DOWN_FILE = "camera-down.json"
#: The live view (``preview.enabled``): a Unix socket only the daemon's group (the technicians') may connect to.
PREVIEW_SOCKET = "preview.sock"
#: The daemon writes its status every WRITE_INTERVAL_S; older than this means it is not running.
WRITE_INTERVAL_S = 2.0
STALE_AFTER_S = 15.0


def no_request_folder(folder: Path) -> str:
    """What to say when the running daemon has no request folder (it predates this command)."""
    return f"the daemon takes no requests ({folder} is missing): is it older than this command? restart it (sudo systemctl restart kiosk)"
