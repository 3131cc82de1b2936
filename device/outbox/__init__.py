"""The outbox: the kiosk's durable local queue of identifications.

:mod:`device.outbox.store` is the SQLite store (commit before "OK", delivery states, retention,
corrupt files moved aside); beside it :mod:`~device.outbox.schema` (tables and migrations),
:mod:`~device.outbox.checksum` (per record), :mod:`~device.outbox.highwater` (the last committed
seq outside the database), :mod:`~device.outbox.salvage` (what still reads from a damaged file) and
:mod:`~device.outbox.fsync`. The names a caller needs are here::

    from device.outbox import Outbox, OutboxError
"""

from device.health.outbox import IntegrityProblem, OutboxHealth, RecordState
from device.outbox.schema import SCHEMA_VERSION
from device.outbox.store import (
    DEAD,
    DELIVERED,
    PENDING,
    QUARANTINED,
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
    "QUARANTINED",
    "SCHEMA_VERSION",
    "STATES",
    "Identification",
    "IntegrityProblem",
    "Outbox",
    "OutboxCorrupt",
    "OutboxError",
    "OutboxFull",
    "OutboxHealth",
    "RecordState",
]
