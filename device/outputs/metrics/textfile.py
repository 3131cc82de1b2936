"""The metrics file for node_exporter's textfile collector, replaced atomically and readable by it.

node_exporter reads every ``*.prom`` file in its ``--collector.textfile.directory`` at each scrape,
so a file half written would be a scrape error: the text goes to a hidden temporary file beside it
(same filesystem, a name the collector skips) and is renamed over the old one::

    write_textfile(Path("/var/lib/prometheus/node-exporter/kiosk.prom"), registry)

Why not :func:`prometheus_client.write_to_textfile`, which also writes a temporary file and renames
it: its file gets the mode the process's umask leaves, and the service's ``UMask=0027`` would make
it 0640, owned by the kiosk, which node_exporter's own user (``prometheus`` on Debian) cannot read.
Here the file is 0644 whatever the umask: the metrics hold counts and names, never a contract.
No fsync: after a power cut a lost or empty file is rewritten within ``metrics.interval_s``.
"""

from __future__ import annotations

import os
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest

#: Readable by node_exporter's user, writable by the kiosk's.
MODE = 0o644


def temporary_path(path: Path) -> Path:
    """Where the text is written before the rename: hidden, beside ``path``, not ``*.prom``.

    >>> tmp = temporary_path(Path("/var/lib/prometheus/node-exporter/kiosk.prom"))
    >>> tmp.parent, tmp.name.startswith(".kiosk.prom."), tmp.suffix
    (PosixPath('/var/lib/prometheus/node-exporter'), True, '.tmp')
    """
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def write_textfile(path: Path, registry: CollectorRegistry) -> int:
    """Replace ``path`` with the registry's metrics in the text format; the bytes written.

    ``OSError`` when the folder is missing or not writable, or the disk is full (the temporary
    file is removed then, the old file is left as it was).
    """
    data = generate_latest(registry)
    tmp = temporary_path(path)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, MODE)
    try:
        try:
            os.fchmod(fd, MODE)  # open's mode passed through the umask
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return len(data)
