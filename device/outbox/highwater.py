"""The high-water mark: the last committed seq per kiosk id, in a small file beside the outbox.

The database alone cannot tell that it lost committed records: a WAL truncated after a crash
leaves a smaller database that passes ``PRAGMA integrity_check``, and a deleted or moved-aside
file starts again from nothing. So every commit also raises the mark in ``<outbox>.hwm``, outside
the database file, before the "OK" is given; at the next start a database whose last seq is below
the mark has lost ``mark - last`` identifications, and new seqs continue after the mark::

    mark = HighWaterMark(Path("/var/lib/kiosk/outbox.db.hwm"))
    mark.read()                    # {"riga-5-1": 150}, {} for a new file, None when there is none
    mark.advance("riga-5-1", 151)  # durable when it returns

The mark is only ever raised after the database commit is durable, so it never claims a record
the database does not hold: a crash between the two leaves the mark one behind, which is safe
(the next start raises it to the database's last seq).

The file holds two fixed slots of :data:`SLOT_SIZE` bytes, each a generation number, the seqs and
a BLAKE2b digest; an update rewrites the older slot in place and ``fdatasync``s it: one flush per
commit, no new blocks to allocate on a full disk, no directory entry to sync. A write torn by a
power cut spoils only the slot being written, whose digest then fails; the other slot still holds
the mark one commit older. The file itself is created whole (written to a temporary file,
fsynced, renamed into place, then the directory fsynced), so it never exists half-made.
Processes writing the same outbox serialise their updates with ``flock``.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from pathlib import Path

from device.outbox.fsync import fsync_dir

log = logging.getLogger(__name__)

#: Bytes per slot; the file is two slots.
SLOT_SIZE = 4096
_MAGIC = b"KIOSK-HWM 1"
#: The file's mode: it names kiosk ids, nothing personal, but it lives with the outbox.
FILE_MODE = 0o600

_datasync = getattr(os, "fdatasync", os.fsync)


class MarkUnreadable(Exception):
    """The mark file exists but neither slot holds a valid mark (damaged, or not a mark file)."""


def _slot(generation: int, seqs: dict[str, int]) -> bytes:
    payload = json.dumps({"generation": generation, "seqs": seqs}, sort_keys=True, separators=(",", ":")).encode()
    digest = hashlib.blake2b(payload, digest_size=16).hexdigest().encode()
    return b"%s %d %s\n%s" % (_MAGIC, len(payload), digest, payload)


def _fit(generation: int, seqs: dict[str, int], first: Collection[str] = ()) -> dict[str, int]:
    """``seqs``, or as many of them as fit in a slot: the ids in ``first`` (the kiosk id of this
    outbox), then those with the highest seqs.

    Only kiosk ids used on this outbox are listed; dozens of long ones means years of renames.
    Losing an old id's mark only blinds that id's loss check; the current id's is always kept.

    >>> many = {f"kiosk-renamed-{i:03d}-" + "x" * 100: i for i in range(1, 60)}
    >>> kept = _fit(7, many, first=["kiosk-renamed-001-" + "x" * 100])
    >>> 0 < len(kept) < len(many), "kiosk-renamed-001-" + "x" * 100 in kept, "kiosk-renamed-059-" + "x" * 100 in kept
    (True, True, True)
    """
    if len(_slot(generation, seqs)) <= SLOT_SIZE:
        return seqs
    order = [k for k in first if k in seqs] + sorted((k for k in seqs if k not in first), key=lambda k: seqs[k], reverse=True)
    kept: dict[str, int] = {}
    for kiosk_id in order:
        if len(_slot(generation, {**kept, kiosk_id: seqs[kiosk_id]})) <= SLOT_SIZE:
            kept[kiosk_id] = seqs[kiosk_id]  # else a shorter id further down may still fit
    return kept


def _encode(generation: int, seqs: dict[str, int]) -> bytes:
    """One slot; ``seqs`` must fit (:func:`_fit`)."""
    slot = _slot(generation, seqs)
    if len(slot) > SLOT_SIZE:
        raise ValueError(f"{len(seqs)} kiosk ids do not fit in a {SLOT_SIZE}-byte slot")
    return slot.ljust(SLOT_SIZE, b"\0")


def _decode(slot: bytes) -> tuple[int, dict[str, int]] | None:
    """(generation, seqs) of a valid slot, or None."""
    head, _, rest = slot.partition(b"\n")
    parts = head.split(b" ")
    if len(parts) != 4 or b" ".join(parts[:2]) != _MAGIC or not parts[2].isdigit():
        return None
    payload = rest[: int(parts[2])]
    if hashlib.blake2b(payload, digest_size=16).hexdigest().encode() != parts[3]:
        return None
    try:
        data = json.loads(payload)
        generation, seqs = int(data["generation"]), {str(k): int(v) for k, v in data["seqs"].items()}
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
    return generation, seqs


class HighWaterMark:
    """The mark file at ``path``: read it, create it, raise it. Safe to share between threads
    (the outbox calls it under its own lock) and between processes (``flock``)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._fd: int | None = None
        self._trimmed = False

    def read(self) -> dict[str, int] | None:
        """The last committed seq per kiosk id; None when there is no mark file.

        Raises :class:`MarkUnreadable` when the file is there but holds no valid slot.
        """
        try:
            with open(self.path, "rb") as f:
                data = f.read(2 * SLOT_SIZE)
        except FileNotFoundError:
            return None
        current = self._newest(data)
        if current is None:
            raise MarkUnreadable(f"the high-water mark {self.path} holds no valid mark (damaged or replaced)")
        return current[1]

    def store(self, seqs: dict[str, int], *, keep_first: Collection[str] = ()) -> None:
        """Raise the mark to at least ``seqs`` (creating the file, or replacing an unreadable one).

        When more kiosk ids than fit in a slot are known, the ids in ``keep_first`` (the outbox's
        own) are kept, then those with the highest seqs (:func:`_fit`)."""
        if self._fd is None:
            try:
                self._open()
            except (FileNotFoundError, MarkUnreadable):
                self._create(self._fitted(1, seqs, keep_first))
                return
        with self._locked() as current:
            generation, old = current
            merged = {**old, **{k: max(v, old.get(k, 0)) for k, v in seqs.items()}}
            if merged != old:
                self._write_slot(generation + 1, self._fitted(generation + 1, merged, keep_first))

    def advance(self, kiosk_id: str, seq: int) -> None:
        """``seq`` is committed for ``kiosk_id``: raise the mark to it; durable when this returns."""
        self.store({kiosk_id: seq}, keep_first=[kiosk_id])

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    # --- the file -----------------------------------------------------------------------------

    def _open(self) -> None:
        fd = os.open(self.path, os.O_RDWR)
        try:
            if self._newest(os.pread(fd, 2 * SLOT_SIZE, 0)) is None:
                raise MarkUnreadable(str(self.path))
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd

    def _create(self, seqs: dict[str, int]) -> None:
        """Write the whole file beside it, fsync it, rename it into place, fsync the directory."""
        self.close()
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_CREAT | os.O_TRUNC | os.O_WRONLY, FILE_MODE)
        try:
            # Slot i holds the generations g with g % 2 == i: the next update (2) overwrites slot 0.
            os.write(fd, _encode(0, {}) + _encode(1, seqs))
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.path)
        fsync_dir(self.path.parent)  # the new name is durable only with its directory
        self._open()

    @contextmanager
    def _locked(self) -> Iterator[tuple[int, dict[str, int]]]:
        assert self._fd is not None
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        try:
            current = self._newest(os.pread(self._fd, 2 * SLOT_SIZE, 0))
            if current is None:
                raise MarkUnreadable(f"the high-water mark {self.path} was damaged while in use")
            yield current
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def _fitted(self, generation: int, seqs: dict[str, int], keep_first: Collection[str]) -> dict[str, int]:
        kept = _fit(generation, seqs, keep_first)
        if len(kept) < len(seqs) and not self._trimmed:
            self._trimmed = True  # once per process: every commit would say it again
            log.warning(
                "high-water mark %s: %d kiosk ids do not fit, keeping %d (this one and the highest seqs)", self.path, len(seqs), len(kept)
            )
        return kept

    def _write_slot(self, generation: int, seqs: dict[str, int]) -> None:
        slot = _encode(generation, seqs)
        assert self._fd is not None  # written only under _locked(), which holds it open
        # The older slot is overwritten: the newer one stays valid if this write is torn.
        os.pwrite(self._fd, slot, (generation % 2) * SLOT_SIZE)
        _datasync(self._fd)

    @staticmethod
    def _newest(data: bytes) -> tuple[int, dict[str, int]] | None:
        slots = [_decode(data[i * SLOT_SIZE : (i + 1) * SLOT_SIZE]) for i in range(2)]
        valid = [s for s in slots if s is not None]
        return max(valid, key=lambda s: s[0]) if valid else None
