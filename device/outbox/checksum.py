"""A checksum per outbox record over every field the central receives.

The outbox stores it beside the record when the record is committed and verifies it whenever the
record is read for delivery (:meth:`device.outbox.Outbox.due`) and when a damaged file is salvaged;
a record whose fields no longer match is quarantined, never sent::

    digest = record_checksum(fields)            # fields: a mapping with every name in FIELDS
    problem = checksum_problem(fields, digest)  # None, or why the record cannot be trusted

What it protects against: a field changed after the commit by anything but the outbox's own
code: bit rot on the SD card inside a page that SQLite still parses (``PRAGMA integrity_check``
checks the b-tree and index structure, not the values in a record, and SQLite keeps no checksum
of its own pages), a hand edit with the ``sqlite3`` shell, a salvaged row whose bytes were
garbage, a bug that writes a field it must never write.

What it does not protect against: someone who means to forge a record (the hash is plain and the
code is public; a key kept on the same card would be read as easily as the file); a wrong value
given to :meth:`~device.outbox.Outbox.commit` (it is checksummed as given); whole records lost or
deleted (the high-water mark, :mod:`device.outbox.highwater`, sees those); the delivery
bookkeeping (state, attempts, errors), which is not sent and changes on every attempt.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping

#: The fields a record's checksum covers: every field of the wire record (device.forwarder's
#: ``wire_record``) and the kiosk id and site its request carries. Order matters: it is the encoding.
FIELDS = ("id", "seq", "kiosk_id", "site", "format", "contract", "card_issue", "scanned_at", "clock_synced", "symbology")

#: What a refusal (a replaced card, device.revocations) sends besides: covered only for refusals,
#: so an identification's checksum is the same as before refusals existed.
REFUSAL_FIELDS = ("kind", "current_issue")
IDENTIFICATION = "identification"

#: Names the encoding, so that a later change of fields or hash can be told from damage.
_VERSION = "kiosk-outbox-record-v1"


def record_checksum(fields: Mapping[str, object]) -> str:
    """The BLAKE2b-128 hex digest of ``fields`` (see :data:`FIELDS`) in their canonical encoding.

    The encoding is a JSON array of the values in :data:`FIELDS` order, ``clock_synced`` as a
    boolean (SQLite stores it as 0/1): a value stored with another type (a seq of ``'5'`` instead
    of ``5``) does not match, since the central would receive that type.

    >>> record_checksum({"id": "a", "seq": 1, "kiosk_id": "k", "site": "", "format": "v1", "contract": "0012345678",
    ...                  "card_issue": 1, "scanned_at": "2024-05-02T09:15:00.000Z", "clock_synced": 1, "symbology": "Code128"})
    'd1c0923b402d45ec6142afad246ef620'
    """
    values = [_VERSION, *(bool(fields[name]) if name == "clock_synced" else fields[name] for name in FIELDS)]
    if fields.get("kind", IDENTIFICATION) != IDENTIFICATION:
        values += [fields.get(name) for name in REFUSAL_FIELDS]
    encoded = json.dumps(values, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return hashlib.blake2b(encoded.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()


def checksum_problem(fields: Mapping[str, object], stored: object) -> str | None:
    """None when ``stored`` is the checksum of ``fields``; otherwise why the record cannot be trusted."""
    if not isinstance(stored, str) or not stored:
        return "the record has no checksum"
    try:
        actual = record_checksum(fields)
    except (TypeError, ValueError) as e:  # a value no JSON can carry: garbage from a damaged page
        return f"a field cannot be encoded ({e})"
    if actual != stored:
        return "checksum mismatch: a field sent to the central changed after the commit"
    return None
