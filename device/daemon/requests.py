"""The request folder (``/run/kiosk/requests``), screened: what technicians leave there is taken
without the daemon ever blocking, spinning or flooding the journal.

The technicians' group may write the folder (01770), so what is in it is theirs, not the
daemon's: a FIFO, a symlink to one, a directory, a socket or a huge file can be named like a
request. The housekeeping thread (which feeds systemd's watchdog) looks at it once a turn
(:meth:`RequestFolder.scan`) and only ever

* lists it and ``lstat``\\ s each entry (neither blocks, whatever the entry is);
* opens a snapshot request that ``lstat`` says is a regular file, with ``O_NOFOLLOW|O_NONBLOCK``
  (a FIFO swapped in meanwhile, a symlink, a file under a lease: refused at once), then checks it
  with ``fstat`` (a regular file, one link, at most :data:`MAX_REQUEST_BYTES`) before reading;
* never opens a sync request: it carries nothing but its name.

Anything else named like a request is ignored: removed when it is not a directory (the folder is
the daemon's; a directory it cannot empty is left), reported once in the log naming it (at most
:data:`REPORTS_PER_MINUTE` lines a minute, then one line with the count) and counted in the
status (``requests.ignored``). Requests older than :data:`REQUEST_MAX_AGE_S` are removed
unanswered (whoever asked gave up), at most :data:`MAX_ENTRIES_PER_PASS` entries are looked at
per turn, and each requester (the file's owner) gets at most :data:`ANSWERS_PER_MINUTE` answers
a minute after a burst of :data:`ANSWER_BURST` (:class:`RateLimit`; root and the daemon's own
user are not limited): the rest wait their turn, newest first. A sync is asked of the
replaced-card list at most once every :data:`SYNC_MIN_INTERVAL_S` (:class:`SyncRequests`)::

    folder = RequestFolder(Path("/run/kiosk/requests"))
    waiting = folder.scan()                      # Waiting(snapshots=[...], syncs=[...])
    for request in waiting.snapshots[:4]:
        options = folder.read(request)           # bytes, or None (ignored and counted)
        if options is not None and folder.take(request):
            ...                                   # answer it
"""

from __future__ import annotations

import logging
import os
import re
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from device.runtime_dir import REQUEST_SUFFIX, SNAPSHOT_PREFIX, SYNC_PREFIX

log = logging.getLogger("device.daemon")

#: A snapshot request holds a few options as JSON: anything longer is not one.
MAX_REQUEST_BYTES = 4096
#: Entries looked at per turn, at most: a folder flooded with a million names costs a turn this
#: many ``lstat`` calls, never the whole folder (the rest are looked at as these go).
MAX_ENTRIES_PER_PASS = 5000
#: A request older than this is removed unanswered: ``kiosk diag camera`` waits 10 s by default
#: and removes its own request when it gives up; nobody waits two minutes.
REQUEST_MAX_AGE_S = 120.0
#: Answers a requester gets a minute, after a burst of ANSWER_BURST (a technician runs the
#: command by hand; a loop that asks more waits).
ANSWERS_PER_MINUTE = 60.0
ANSWER_BURST = 16
#: A sync of the replaced-card list is asked at most this often on request (each is a call to
#: the central); requests in between wait, and one sync answers all of them.
SYNC_MIN_INTERVAL_S = 60.0
#: Lines a minute that name an ignored entry, at most; then one line a minute with the count.
REPORTS_PER_MINUTE = 10

SNAPSHOT = "snapshot"
SYNC = "sync"
_NAMES = (
    (SNAPSHOT, re.compile(rf"{re.escape(SNAPSHOT_PREFIX)}([0-9a-f]{{32}}){re.escape(REQUEST_SUFFIX)}")),
    (SYNC, re.compile(rf"{re.escape(SYNC_PREFIX)}([0-9a-f]{{32}}){re.escape(REQUEST_SUFFIX)}")),
)


@dataclass(frozen=True)
class Request:
    """A request as the folder's listing shows it: a regular file named like one.

    ``requester`` is its owner (who asked); ``created`` its ``st_ctime``, which its owner cannot
    set ahead (``st_mtime`` can be), so "newest first" cannot be gamed."""

    kind: str
    ident: str
    path: Path
    requester: int
    inode: int
    created: float


@dataclass(frozen=True)
class Waiting:
    """The requests a turn found, newest first."""

    snapshots: list[Request] = field(default_factory=list)
    syncs: list[Request] = field(default_factory=list)


@dataclass
class RequestCounts:
    """What the folder saw since the daemon started (``requests`` in the status)."""

    ignored: int = 0  # named like a request but not one: not a regular file, too big, linked elsewhere
    answered: int = 0  # snapshot requests taken and answered
    expired: int = 0  # requests removed unanswered: older than REQUEST_MAX_AGE_S
    waiting: int = 0  # requests in the folder after the last turn (limited, or beyond a turn's share)


def kind_of(name: str) -> tuple[str, str] | None:
    """``(kind, ident)`` of a name made like a request, else None.

    >>> kind_of("snapshot-" + "0" * 32 + ".request")
    ('snapshot', '00000000000000000000000000000000')
    >>> kind_of("revocations-" + "a" * 32 + ".request")[0], kind_of("snapshot-x.request")
    ('sync', None)
    """
    for kind, pattern in _NAMES:
        if m := pattern.fullmatch(name):
            return kind, m.group(1)
    return None


def _what(mode: int) -> str:
    """What an entry is, for the log line that names it.

    >>> _what(stat.S_IFIFO | 0o644), _what(stat.S_IFDIR | 0o755)
    ('a FIFO', 'a directory')
    """
    for test, what in (
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISLNK, "a symlink"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a device"),
        (stat.S_ISBLK, "a device"),
    ):
        if test(mode):
            return what
    return "not a regular file"


class RateLimit:
    """A token bucket per requester: ``burst`` at once, then ``per_minute`` a minute.

    >>> clock = [0.0]
    >>> limit = RateLimit(per_minute=60, burst=2, clock=lambda: clock[0])
    >>> [limit.allow(1000) for _ in range(3)], limit.allow(1001)
    ([True, True, False], True)
    >>> clock[0] = 1.0
    >>> limit.allow(1000)
    True
    """

    def __init__(self, *, per_minute: float = ANSWERS_PER_MINUTE, burst: int = ANSWER_BURST, clock: Callable[[], float] = time.monotonic):
        self.per_s = per_minute / 60.0
        self.burst = burst
        self.clock = clock
        self._buckets: dict[int, tuple[float, float]] = {}  # requester -> (tokens, when)

    def allow(self, requester: int) -> bool:
        """Take one answer from ``requester``'s bucket: False when it is empty (the request waits)."""
        now = self.clock()
        tokens, then = self._buckets.get(requester, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - then) * self.per_s)
        if tokens < 1.0:
            self._buckets[requester] = (tokens, now)
            return False
        self._buckets[requester] = (tokens - 1.0, now)
        return True


class RequestFolder:
    """The request folder, screened (see the module's docstring).

    :param folder: ``<kiosk.runtime_dir>/requests``.
    :param unlimited: requesters that are not rate-limited (default: root and this process's user).
    :param clock: the wall clock the files' times are on (``time.time``).
    """

    def __init__(self, folder: Path, *, unlimited: frozenset[int] | None = None, clock: Callable[[], float] = time.time):
        self.folder = folder
        self.unlimited = unlimited if unlimited is not None else frozenset({0, os.geteuid()})
        self.clock = clock
        self.limit = RateLimit()
        self.counts = RequestCounts()
        self._reported: set[tuple[str, int]] = set()  # (name, inode) told once
        self._reports_minute = (0.0, 0, 0)  # (minute started, lines, unreported)
        self._cannot_list: str | None = None

    def make(self) -> None:
        """The folder, sticky and writable by the daemon's group (technicians ask without root,
        none removes another's request); never left to the umask."""
        if self.folder.is_dir():
            return
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.folder.chmod(0o1770)

    def scan(self) -> Waiting:
        """The requests waiting, newest first; what is not one is ignored, reported and counted;
        old requests are removed. A folder that cannot be made or listed is said once."""
        try:
            self.make()
            found = self._screen()
        except OSError as e:  # a full or read-only runtime directory: no requests, the daemon goes on
            if self._cannot_list != str(e):
                log.warning("cannot take requests in %s: %s", self.folder, e)
            self._cannot_list = str(e)
            return Waiting()
        self._cannot_list = None
        newest_first = sorted(found, key=lambda r: r.created, reverse=True)
        waiting = Waiting([r for r in newest_first if r.kind == SNAPSHOT], [r for r in newest_first if r.kind == SYNC])
        self.counts.waiting = len(newest_first)
        return waiting

    def _screen(self) -> list[Request]:
        found: list[Request] = []
        oldest = self.clock() - REQUEST_MAX_AGE_S
        with os.scandir(self.folder) as entries:
            for looked, entry in enumerate(entries):
                if looked >= MAX_ENTRIES_PER_PASS:
                    break
                named = kind_of(entry.name)
                if named is None:
                    continue  # not a request's name: a request on its way (a hidden temporary file) or nothing of ours
                try:
                    st = entry.stat(follow_symlinks=False)  # an lstat: never opens, never follows
                except OSError:
                    continue  # gone meanwhile
                if not stat.S_ISREG(st.st_mode):
                    self.ignore(entry.name, st.st_ino, f"it is {_what(st.st_mode)}", remove=not stat.S_ISDIR(st.st_mode))
                    continue
                if st.st_size > MAX_REQUEST_BYTES:
                    self.ignore(entry.name, st.st_ino, f"it holds {st.st_size} bytes (a request holds at most {MAX_REQUEST_BYTES})")
                    continue
                if st.st_ctime < oldest:
                    self._remove(Path(entry.path))
                    self.counts.expired += 1
                    continue
                found.append(Request(named[0], named[1], Path(entry.path), st.st_uid, st.st_ino, st.st_ctime))
        return found

    def allowed(self, request: Request) -> bool:
        """Whether ``request``'s requester may have an answer now (root and the daemon always may)."""
        return request.requester in self.unlimited or self.limit.allow(request.requester)

    def read(self, request: Request) -> bytes | None:
        """A snapshot request's bytes, read without blocking: None (ignored, reported, counted,
        removed) unless it is still the regular file listed, with one link, small enough."""
        flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
        try:
            fd = os.open(request.path, flags)
        except FileNotFoundError:
            return None  # the asker gave up meanwhile
        except OSError as e:  # a symlink (ELOOP), a lease (EWOULDBLOCK), a socket (ENXIO) swapped in
            self.ignore(request.path.name, request.inode, f"it cannot be opened without blocking ({e.strerror})")
            return None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or st.st_ino != request.inode:
                problem = f"it is {_what(st.st_mode)}" if not stat.S_ISREG(st.st_mode) else "it was replaced while read"
            elif st.st_size > MAX_REQUEST_BYTES:
                problem = f"it holds {st.st_size} bytes (a request holds at most {MAX_REQUEST_BYTES})"
            elif st.st_nlink != 1:
                problem = "it is a hard link to another file"
            else:
                return os.read(fd, MAX_REQUEST_BYTES + 1)[:MAX_REQUEST_BYTES]
        except OSError as e:
            problem = f"it cannot be read ({e.strerror})"
        finally:
            os.close(fd)
        self.ignore(request.path.name, request.inode, problem)
        return None

    def take(self, request: Request) -> bool:
        """Remove ``request`` from the folder (the daemon owns the sticky folder, so it may remove
        anyone's): True when it was there to take."""
        try:
            request.path.unlink()
        except FileNotFoundError:
            return False  # the asker gave up meanwhile
        except OSError as e:
            self.ignore(request.path.name, request.inode, f"it cannot be removed ({e.strerror})", remove=False)
            return False
        return True

    def ignore(self, name: str, inode: int, why: str, *, remove: bool = True) -> None:
        """Ignore the entry ``name``: reported once (one log line naming it), counted, and removed
        unless it is a directory (``remove``)."""
        if remove:
            self._remove(self.folder / name)
        if (name, inode) in self._reported:
            return
        if len(self._reported) > 10 * MAX_ENTRIES_PER_PASS:  # a flood of new names: forget the old ones
            self._reported.clear()
        self._reported.add((name, inode))
        self.counts.ignored += 1
        self._report(f"request folder: {name} ignored: {why} (requests are regular files named as kiosk commands make them)")

    def _report(self, line: str) -> None:
        started, lines, unreported = self._reports_minute
        now = time.monotonic()
        if now - started >= 60.0:
            if unreported:
                log.warning("request folder: %d more entries ignored in the last minute (kiosk status counts them)", unreported)
            started, lines, unreported = now, 0, 0
        if lines < REPORTS_PER_MINUTE:
            log.warning("%s", line)
            lines += 1
        else:
            unreported += 1
        self._reports_minute = (started, lines, unreported)

    @staticmethod
    def _remove(path: Path) -> None:
        try:
            path.unlink()  # removes the name only: a symlink's target or a hard link's file stays
        except OSError:
            pass  # gone meanwhile, or a directory


class SyncRequests:
    """Sync requests become one sync of the replaced-card list, at most once every ``min_interval_s``.

    >>> clock = [100.0]
    >>> syncs = SyncRequests(min_interval_s=60, clock=lambda: clock[0])
    >>> syncs.due(), syncs.due()
    (True, False)
    >>> clock[0] = 160.0
    >>> syncs.due()
    True
    """

    def __init__(self, *, min_interval_s: float = SYNC_MIN_INTERVAL_S, clock: Callable[[], float] = time.monotonic):
        self.min_interval_s = min_interval_s
        self.clock = clock
        self._last: float | None = None

    def due(self) -> bool:
        """Whether a requested sync may start now; True counts as the sync asked."""
        now = self.clock()
        if self._last is not None and now - self._last < self.min_interval_s:
            return False
        self._last = now
        return True

    def take(self, folder: RequestFolder, waiting: list[Request], sync: Callable[[], None] | None) -> None:
        """Take the waiting sync requests and ask ``sync`` once, when a sync is due; otherwise they
        wait in the folder. Without the replaced-card list (``sync`` None) they are removed."""
        if not waiting:
            return
        if sync is not None and not self.due():
            return
        for request in waiting:
            folder.take(request)
        if sync is not None:
            sync()
