"""Directory syncs: a created or renamed file survives a power cut only once its directory is synced.

``fsync`` on a file makes its contents durable, not its name: after a power cut a new file whose
directory was not synced may be gone (or a rename undone), however often the file itself was
synced. The outbox calls :func:`fsync_dir` after creating its database, its WAL and its
high-water mark, and after moving a damaged file aside.
"""

from __future__ import annotations

import os
from pathlib import Path


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """Make the directory entries in ``path`` (a directory) durable."""
    fd = os.open(Path(path), os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
