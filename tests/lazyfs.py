"""A FUSE filesystem that keeps only what was synced, and can lose the rest on demand: power cuts.

It follows the idea of LazyFS (the tool Jepsen uses): what programs write is held in memory, like
a kernel's page cache, and reaches the backing directory only when it is synced. A "cut" then
drops everything not yet synced, as a power loss would: the backing directory is left holding only
the synced state, and mounting it again is the machine booting on what the disk kept.

What survives a cut (the model, stricter than ext4 and as strict as POSIX allows):

- A file's **contents and size** (and its mode and owner) are those of its last ``fsync`` or
  ``fdatasync`` (the two are the same here). ``close`` syncs nothing.
- A directory's **entries** are those of its last ``fsync`` of the directory itself (open it, fsync
  it). So a file that was created, or renamed, or unlinked, and whose directory was not synced
  after that, is at a cut back to the entries of the directory's last sync: a new file vanishes
  even if its data was fsynced, a rename is undone, an unlinked file comes back (with its synced
  contents). A new directory is reachable only once its parent is synced.
- Times are not kept (a cut leaves the backing files' own times).

Invariant, which makes a cut exact: the backing directory always holds exactly the synced state.
Every sync writes through to it (and fsyncs the backing file) before the sync returns, under one
lock; nothing else writes there. A cut takes the lock, so no sync is half done, and from then on
every operation but close (which syncs nothing anyway) fails with EIO: nothing later can be
synced. After a cut, unmount, and mount again on the same backing directory to see what a
restart sees.

A cut loses every unsynced change whole (LazyFS's "clear cache" fault): it never keeps some of
them, as a real disk might (torn or reordered unsynced writes are not simulated).

Not modelled (nothing under test does it; each fails with an errno rather than pretending):
hard links and symlinks (ENOSYS), renaming a directory (EXDEV), extended attributes. POSIX locks
are left to the kernel (no ``lock`` operation, so FUSE keeps fcntl locks locally): SQLite's locks
work between processes on this machine. The ``-shm`` file SQLite maps works because the mount
does not use ``direct_io`` (shared mmap goes through the page cache; its pages reach this process
as ordinary writes, and a cut loses them too, as SQLite expects of ``-shm``).

Everything is held in memory (each file twice: as seen and as synced): made for small test data.

Run it as its own process (it stays in the foreground until unmounted)::

    python tests/lazyfs.py BACKING MOUNTPOINT --control /tmp/fs.sock

and cut with one line on the control socket: ``cut`` (answers ``cut``). From a test,
:class:`PowerCutFS` does both::

    fs = PowerCutFS(backing, mount).start()
    ...                     # the program under test writes into `mount`
    fs.cut()                # power gone: only the synced state is left in `backing`
    fs.stop()               # unmount
    fs.start()              # boot on what is left

Needs root (it mounts without fusermount), /dev/fuse, libfuse3 (Debian: libfuse3-3) and mfusepy.
"""

from __future__ import annotations

import argparse
import errno
import functools
import os
import shutil
import socket
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

#: Dirty tracking granularity (bytes): a sync writes the changed pages, not the whole file.
PAGE = 4096

#: How long :class:`PowerCutFS` waits for a mount to appear or go.
MOUNT_TIMEOUT_S = 30.0


class File:
    """A file as seen (``data``) and as synced (``synced``, what the backing file holds)."""

    def __init__(self, mode: int, uid: int, gid: int, data: bytes = b""):
        self.data = bytearray(data)
        self.synced = bytearray(data)
        self.dirty: set[int] = set()  # pages of `data` changed since the last sync
        self.mode, self.uid, self.gid = mode, uid, gid
        self.mtime_ns = time.time_ns()

    def changed(self, start: int, end: int) -> None:
        """Bytes [start, end) changed (a write, or a truncate's old and new ends)."""
        if end > start:
            self.dirty.update(range(start // PAGE, (end - 1) // PAGE + 1))
        self.mtime_ns = time.time_ns()

    def sync(self) -> set[int]:
        """Make the synced copy equal to what is seen; returns the pages that changed."""
        size = len(self.data)
        if len(self.synced) > size:
            del self.synced[size:]
        else:
            self.synced.extend(bytes(size - len(self.synced)))
        pages = {p for p in self.dirty if p * PAGE < size}
        for p in pages:
            self.synced[p * PAGE : (p + 1) * PAGE] = self.data[p * PAGE : (p + 1) * PAGE]
        self.dirty.clear()
        return pages


class Dir:
    """A directory's entries as seen (``entries``) and as synced (``synced``)."""

    def __init__(self, mode: int, uid: int, gid: int):
        self.entries: dict[str, File | Dir] = {}
        self.synced: dict[str, File | Dir] = {}
        self.mode, self.uid, self.gid = mode, uid, gid
        self.mtime_ns = time.time_ns()


def load(backing: Path) -> Dir:
    """The tree as the backing directory holds it: everything in it counts as synced."""
    st = backing.stat()
    root = Dir(st.st_mode, st.st_uid, st.st_gid)
    for entry in os.scandir(backing):
        st = entry.stat(follow_symlinks=False)
        if stat.S_ISDIR(st.st_mode):
            node: File | Dir = load(Path(entry.path))
        elif stat.S_ISREG(st.st_mode):
            node = File(st.st_mode, st.st_uid, st.st_gid, Path(entry.path).read_bytes())
        else:
            continue  # nothing under test makes other kinds
        root.entries[entry.name] = root.synced[entry.name] = node
    return root


def _main_fs():
    """The filesystem class, built on first use: importing mfusepy needs libfuse installed."""
    import mfusepy
    from mfusepy import FuseOSError

    def operation(method):
        """A FUSE operation: one at a time with the control thread; EIO once the power is cut."""

        @functools.wraps(method)
        def run(self, *args, **kwargs):
            with self.mutex:
                if self.cut_done:
                    raise FuseOSError(errno.EIO)
                return method(self, *args, **kwargs)

        return run

    class LazyFS(mfusepy.Operations):
        """The FUSE operations (see the module docstring for what survives a cut)."""

        use_ns = True

        def __init__(self, backing: Path, control: Path | None):
            self.backing = backing
            self.control = control
            self.root = load(backing)
            self.mutex = threading.Lock()
            self.cut_done = False
            self.handles: dict[int, File | Dir] = {}
            self.next_handle = 1

        # --- the power cut ----------------------------------------------------------------

        def cut(self) -> None:
            with self.mutex:
                self.cut_done = True

        def init(self, path):
            # Called once the mount is live: only now may a test see the control socket.
            if self.control is not None:
                threading.Thread(target=self._serve_control, daemon=True).start()

        def _serve_control(self) -> None:
            server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            tmp = self.control.with_name(self.control.name + ".tmp")
            tmp.unlink(missing_ok=True)
            server.bind(str(tmp))
            server.listen()
            tmp.rename(self.control)  # appears only once it accepts connections
            while True:
                conn, _ = server.accept()
                with conn:
                    command = conn.makefile().readline().strip()
                    if command == "cut":
                        self.cut()
                        conn.sendall(b"cut\n")
                    else:
                        conn.sendall(f"unknown command {command!r}\n".encode())

        # --- lookups ----------------------------------------------------------------------

        def _parent(self, path: str) -> tuple[Dir, str]:
            parts = [p for p in path.split("/") if p]
            node: File | Dir = self.root
            for part in parts[:-1]:
                if not isinstance(node, Dir) or part not in node.entries:
                    raise FuseOSError(errno.ENOENT)
                node = node.entries[part]
            if not isinstance(node, Dir):
                raise FuseOSError(errno.ENOTDIR)
            return node, (parts[-1] if parts else "")

        def _node(self, path: str | None, fh: int | None = None) -> File | Dir:
            if fh is not None and fh in self.handles:
                return self.handles[fh]
            parent, name = self._parent(path or "/")
            if not name:
                return self.root
            if name not in parent.entries:
                raise FuseOSError(errno.ENOENT)
            return parent.entries[name]

        def _file(self, path: str | None, fh: int | None = None) -> File:
            node = self._node(path, fh)
            if isinstance(node, Dir):
                raise FuseOSError(errno.EISDIR)
            return node

        def _handle(self, node: File | Dir) -> int:
            fh = self.next_handle
            self.next_handle += 1
            self.handles[fh] = node
            return fh

        def _backing_paths(self, target: File | Dir) -> list[Path]:
            """Where the synced tree holds ``target`` (a rename synced in one directory but not
            the other can leave it in two places, as on a real disk)."""
            found: list[Path] = []
            seen: set[int] = set()

            def walk(d: Dir, at: Path) -> None:
                if id(d) in seen:
                    return
                seen.add(id(d))
                if d is target:
                    found.append(at)
                for name, child in d.synced.items():
                    if child is target and isinstance(child, File):
                        found.append(at / name)
                    elif isinstance(child, Dir):
                        walk(child, at / name)

            walk(self.root, self.backing)
            return found

        # --- writing the synced state through to the backing directory --------------------

        @staticmethod
        def _write_back(node: File, at: Path, pages: set[int] | None) -> None:
            """Put ``node.synced`` at ``at`` (only ``pages`` if the file is already there)."""
            fd = os.open(at, os.O_WRONLY | os.O_CREAT, 0o600)
            try:
                if pages is None:
                    os.ftruncate(fd, 0)
                    os.pwrite(fd, node.synced, 0)
                else:
                    for p in sorted(pages):
                        os.pwrite(fd, node.synced[p * PAGE : (p + 1) * PAGE], p * PAGE)
                    os.ftruncate(fd, len(node.synced))
                os.fchmod(fd, stat.S_IMODE(node.mode))
                os.fchown(fd, node.uid, node.gid)
                os.fsync(fd)
            finally:
                os.close(fd)

        def _materialize(self, d: Dir, at: Path, old: dict[str, File | Dir]) -> None:
            """Make the backing directory ``at`` hold ``d.synced``; it now holds ``old``."""
            for name, node in old.items():
                if d.synced.get(name) is not node:
                    path = at / name
                    if isinstance(node, Dir):
                        shutil.rmtree(path)
                    else:
                        path.unlink()
            for name, node in d.synced.items():
                if old.get(name) is node:
                    continue
                path = at / name
                if isinstance(node, Dir):
                    path.mkdir(mode=stat.S_IMODE(node.mode))
                    self._materialize(node, path, {})
                else:
                    self._write_back(node, path, None)
            fd = os.open(at, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

        # --- operations -------------------------------------------------------------------

        @operation
        def getattr(self, path, fh=None):
            node = self._node(path, fh)
            if isinstance(node, Dir):
                size, nlink = 4096, 2 + sum(isinstance(c, Dir) for c in node.entries.values())
            else:
                size, nlink = len(node.data), 1
            t = node.mtime_ns
            return {"st_mode": node.mode, "st_size": size, "st_nlink": nlink, "st_uid": node.uid, "st_gid": node.gid,
                    "st_atime": t, "st_mtime": t, "st_ctime": t, "st_blksize": PAGE, "st_blocks": (size + 511) // 512}  # fmt: skip

        @operation
        def readdir(self, path, fh):
            node = self._node(path)
            if not isinstance(node, Dir):
                raise FuseOSError(errno.ENOTDIR)
            return [".", "..", *node.entries]

        @operation
        def statfs(self, path):
            v = os.statvfs(self.backing)
            return {
                k: getattr(v, k)
                for k in ("f_bsize", "f_frsize", "f_blocks", "f_bfree", "f_bavail", "f_files", "f_ffree", "f_favail", "f_namemax")
            }

        @operation
        def create(self, path, mode, fi=None):
            parent, name = self._parent(path)
            uid, gid, _ = mfusepy.fuse_get_context()
            node = parent.entries.get(name)
            if node is None:
                node = parent.entries[name] = File(stat.S_IFREG | stat.S_IMODE(mode), uid, gid)
                parent.mtime_ns = time.time_ns()
            return self._handle(node)

        @operation
        def open(self, path, flags):
            return self._handle(self._file(path))

        @operation
        def opendir(self, path):
            node = self._node(path)
            if not isinstance(node, Dir):
                raise FuseOSError(errno.ENOTDIR)
            return self._handle(node)

        def release(self, path, fh):
            with self.mutex:
                self.handles.pop(fh, None)  # even after a cut: the kernel is letting go
                return 0

        releasedir = release

        def flush(self, path, fh):
            return 0  # close() syncs nothing, so it may succeed even after a cut

        @operation
        def read(self, path, size, offset, fh):
            return bytes(self._file(path, fh).data[offset : offset + size])

        @operation
        def write(self, path, data, offset, fh):
            node = self._file(path, fh)
            end = offset + len(data)
            start = min(offset, len(node.data))  # a write past the end fills the gap with zeros
            if end > len(node.data):
                node.data.extend(bytes(end - len(node.data)))
            node.data[offset:end] = data
            node.changed(start, end)
            return len(data)

        @operation
        def truncate(self, path, length, fh=None):
            node = self._file(path, fh)
            old = len(node.data)
            if length < old:
                del node.data[length:]
            else:
                node.data.extend(bytes(length - old))
            node.changed(min(old, length), max(old, length))
            return 0

        @operation
        def fsync(self, path, datasync, fh):
            node = self._node(path, fh)
            if isinstance(node, Dir):
                return self._sync_dir(node)
            pages = node.sync()
            for at in self._backing_paths(node):
                self._write_back(node, at, pages)
            return 0

        @operation
        def fsyncdir(self, path, datasync, fh):
            node = self._node(path, fh)
            if not isinstance(node, Dir):
                raise FuseOSError(errno.ENOTDIR)
            return self._sync_dir(node)

        def _sync_dir(self, d: Dir) -> int:
            old, d.synced = d.synced, dict(d.entries)
            for at in self._backing_paths(d):
                self._materialize(d, at, old)
            return 0

        @operation
        def unlink(self, path):
            parent, name = self._parent(path)
            if isinstance(parent.entries.get(name), Dir):
                raise FuseOSError(errno.EISDIR)
            if parent.entries.pop(name, None) is None:
                raise FuseOSError(errno.ENOENT)
            parent.mtime_ns = time.time_ns()
            return 0

        @operation
        def mkdir(self, path, mode):
            parent, name = self._parent(path)
            if name in parent.entries:
                raise FuseOSError(errno.EEXIST)
            uid, gid, _ = mfusepy.fuse_get_context()
            parent.entries[name] = Dir(stat.S_IFDIR | stat.S_IMODE(mode), uid, gid)
            parent.mtime_ns = time.time_ns()
            return 0

        @operation
        def rmdir(self, path):
            parent, name = self._parent(path)
            node = parent.entries.get(name)
            if not isinstance(node, Dir):
                raise FuseOSError(errno.ENOTDIR if node else errno.ENOENT)
            if node.entries:
                raise FuseOSError(errno.ENOTEMPTY)
            del parent.entries[name]
            return 0

        @operation
        def rename(self, old, new):
            src, a = self._parent(old)
            dst, b = self._parent(new)
            node = src.entries.get(a)
            if node is None:
                raise FuseOSError(errno.ENOENT)
            if isinstance(node, Dir) or isinstance(dst.entries.get(b), Dir):
                raise FuseOSError(errno.EXDEV)  # not modelled (see the module docstring)
            del src.entries[a]
            dst.entries[b] = node
            src.mtime_ns = dst.mtime_ns = time.time_ns()
            return 0

        @operation
        def chmod(self, path, mode):
            node = self._node(path)
            node.mode = stat.S_IFMT(node.mode) | stat.S_IMODE(mode)
            return 0

        @operation
        def chown(self, path, uid, gid):
            node = self._node(path)
            node.uid = node.uid if uid == -1 else uid
            node.gid = node.gid if gid == -1 else gid
            return 0

        @operation
        def utimens(self, path, times=None):
            node = self._node(path)
            node.mtime_ns = times[1] if times else time.time_ns()
            return 0

    return mfusepy, LazyFS


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("backing", type=Path, help="the directory that holds the synced state")
    parser.add_argument("mountpoint", type=Path)
    parser.add_argument("--control", type=Path, help="Unix socket for commands (`cut`)")
    args = parser.parse_args(argv)
    mfusepy, LazyFS = _main_fs()
    # foreground: the test owns this process; nothreads: one request at a time (the lock
    # is for the control thread); hard_remove: unlink really unlinks (no .fuse_hidden files).
    mfusepy.FUSE(LazyFS(args.backing.resolve(), args.control), str(args.mountpoint),
                 foreground=True, nothreads=True, hard_remove=True, fsname="lazyfs")  # fmt: skip
    return 0


class PowerCutFS:
    """Runs ``tests/lazyfs.py`` over ``backing`` at ``mount`` and cuts its power (for tests).

    ``start()`` mounts and returns once the mount is live; ``cut()`` drops everything not synced
    (the backing directory keeps the synced state; every later operation on the mount fails);
    ``stop()`` unmounts. ``start()`` again boots on what the last cut left.
    """

    def __init__(self, backing: Path, mount: Path):
        self.backing, self.mount = Path(backing), Path(mount)
        self.control = self.mount.with_name(self.mount.name + ".control")
        self.log = self.mount.with_name(self.mount.name + ".log")
        self.process: subprocess.Popen | None = None

    def start(self) -> PowerCutFS:
        self.backing.mkdir(parents=True, exist_ok=True)
        self.mount.mkdir(parents=True, exist_ok=True)
        self.control.unlink(missing_ok=True)
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen([sys.executable, __file__, str(self.backing), str(self.mount), "--control", str(self.control)],
                                            stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
        deadline = time.monotonic() + MOUNT_TIMEOUT_S
        while not (self.control.exists() and self.mounted()):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"lazyfs did not mount {self.mount}: {self.log.read_text()[-2000:]}")
            time.sleep(0.02)
        return self

    def cut(self) -> None:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(MOUNT_TIMEOUT_S)
            s.connect(str(self.control))
            s.sendall(b"cut\n")
            answer = s.makefile().readline().strip()
        if answer != "cut":
            raise RuntimeError(f"lazyfs did not cut: {answer!r}")

    def stop(self) -> None:
        """Unmount (lazily if something still holds it) and wait for the process to end."""
        if self.mounted():
            if subprocess.run(["umount", str(self.mount)], capture_output=True).returncode != 0:
                subprocess.run(["umount", "-l", str(self.mount)], capture_output=True)
        if self.process is not None:
            try:
                self.process.wait(timeout=MOUNT_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process = None

    def mounted(self) -> bool:
        """Whether the mount is there (os.path.ismount cannot tell after a cut: stat fails)."""
        target = os.fsencode(self.mount.resolve(strict=False))
        with open("/proc/self/mounts", "rb") as mounts:
            return any(line.split()[1] == target for line in mounts)

    def restart(self) -> PowerCutFS:
        """Unmount after a cut and mount again on what was left: a reboot."""
        self.stop()
        return self.start()


if __name__ == "__main__":
    sys.exit(main())
