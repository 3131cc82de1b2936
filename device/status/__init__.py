"""The kiosk's status: what the daemon publishes and what ``kiosk status`` shows.

One job per module:

- :mod:`~device.status.report`: the versioned report, dataclasses read by attribute
  (:class:`DaemonStatus` the daemon writes, :class:`StatusReport` the command shows), their JSON
  and its reading back, which names a missing key instead of showing 0;
- :mod:`~device.status.file`: the status file in the runtime directory, written atomically,
  and whether the daemon that wrote it still runs;
- :mod:`~device.status.build`: the report for ``kiosk status``, ``--json`` and the diag bundle;
- :mod:`~device.status.render`: that report for a person;
- :mod:`~device.status.host`: disk and CPU temperature; :mod:`~device.status.access`: who may
  read what, and what to say when someone may not.

The names most callers need are here (the runtime directory's names are
:mod:`device.runtime_dir`'s, repeated here for them); the report's are in its module, so that
what only looks at the file (a camera's sysfs prefix, a command asking whether the daemon runs)
loads no stage's types::

    from device import status
    if status.read_status(runtime_dir).running:
        ...
"""

from device.runtime_dir import (
    PREVIEW_SOCKET,
    REQUESTS_DIR,
    SNAPSHOT_PREFIX,
    STALE_AFTER_S,
    STATUS_FILE,
    WRITE_INTERVAL_S,
    no_request_folder,
)
from device.status.access import TECHNICIANS_GROUP, TOKEN_READERS, permission_advice, token_file_warning
from device.status.file import Snapshot, boot_id, read_status, remove_status, write_status
from device.status.host import cpu_temperature_c, disk_free_bytes

__all__ = [
    "PREVIEW_SOCKET",
    "REQUESTS_DIR",
    "SNAPSHOT_PREFIX",
    "STALE_AFTER_S",
    "STATUS_FILE",
    "TECHNICIANS_GROUP",
    "TOKEN_READERS",
    "WRITE_INTERVAL_S",
    "Snapshot",
    "boot_id",
    "cpu_temperature_c",
    "disk_free_bytes",
    "no_request_folder",
    "permission_advice",
    "read_status",
    "remove_status",
    "token_file_warning",
    "write_status",
]
