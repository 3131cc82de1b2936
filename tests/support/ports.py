"""TCP ports on 127.0.0.1 that are the test's own, without the race of "find a free port, close it".

:func:`reserved_port` binds a socket to port 0 and keeps it bound, not listening, for as long as
the test needs the port: a connection to it is refused (a central that is down), no other program
can bind it, and only a server that sets ``SO_REUSEADDR`` as the reservation does (``http.server``,
the reference central, the preview, :class:`support.central.FakeCentral`) can listen on it while it
is held (the central that comes back at the same address)::

    with reserved_port() as port:
        assert refused(port)
        with FakeCentral(port=port) as back:
            ...

    >>> import socket
    >>> with reserved_port() as port:
    ...     try:
    ...         socket.create_connection((HOST, port), timeout=5)
    ...     except ConnectionRefusedError:
    ...         print("refused: nobody listens")
    refused: nobody listens
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator

HOST = "127.0.0.1"


@contextlib.contextmanager
def occupied_port() -> Iterator[int]:
    """A port another program listens on (and never serves) while the ``with`` block runs: one a
    server the test starts there cannot have."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:  # no SO_REUSEADDR: nobody shares it
        listener.bind((HOST, 0))
        listener.listen()
        yield listener.getsockname()[1]


@contextlib.contextmanager
def reserved_port() -> Iterator[int]:
    """A port nobody listens on and nobody else may take while the ``with`` block runs."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        holder.bind((HOST, 0))
        yield holder.getsockname()[1]
