"""Reading a WAL-mode SQLite file without writing anything beside it: the technicians' way in.

A technician in the group that may read the kiosk's files (the outbox, the replaced-card list)
may not write their folder, so SQLite cannot create the -shm a WAL reader normally makes. SQLite
still reads read-only while the -wal and -shm exist (the daemon has the file open); with no -wal
no connection is open, so nothing can change under the reader and the file may be read as
immutable. See https://www.sqlite.org/wal.html#readonly::

    db = sqlite3.connect(read_only_uri(Path("/var/lib/kiosk/outbox.db")), uri=True)
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import quote


def read_only_uri(path: Path) -> str:
    """The ``file:`` URI that opens ``path`` to read only, immutable when nobody has it open and
    this user may not write its folder."""
    uri = f"file:{quote(str(path))}?mode=ro"
    if not Path(f"{path}-wal").exists() and not os.access(path.parent, os.W_OK):
        uri += "&immutable=1"
    return uri
