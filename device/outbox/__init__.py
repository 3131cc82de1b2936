"""The outbox: the kiosk's durable local queue of identifications.

:mod:`device.outbox.store` is the SQLite store (commit before "OK", delivery states, retention,
corrupt files moved aside). The names a caller needs are here::

    from device.outbox import Outbox, OutboxError
"""

from device.outbox.store import (
    DEAD,
    DELIVERED,
    PENDING,
    SCHEMA_VERSION,
    STATES,
    Identification,
    Outbox,
    OutboxCorrupt,
    OutboxError,
    OutboxFull,
)

__all__ = [
    "DEAD",
    "DELIVERED",
    "PENDING",
    "SCHEMA_VERSION",
    "STATES",
    "Identification",
    "Outbox",
    "OutboxCorrupt",
    "OutboxError",
    "OutboxFull",
]
