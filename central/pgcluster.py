"""A throwaway PostgreSQL cluster in a temporary folder, for the store tests and ``kiosk bench``.

Debian's ``postgresql`` package (``apt-get install postgresql``) provides initdb and pg_ctl under
/usr/lib/postgresql/VERSION/bin; the newest found is used. PostgreSQL refuses to run as root, so
as root the cluster runs as the ``postgres`` user the package creates (else ``nobody``), which is
given the folder. It listens on a unix socket in the folder and a free TCP port on 127.0.0.1
only, trusts local connections (nothing else can reach it), and keeps ``fsync`` on: the stores'
durability is what the tests and the benchmarks are about. Stopped with ``-m immediate`` (nothing
of it is kept) and the folder removed::

    with TemporaryCluster() as cluster:
        cluster.create_database("central")
        store = open_store(cluster.url("central"))
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType

#: The superuser initdb makes (connections are trusted: no password).
SUPERUSER = "postgres"


class PostgresMissing(RuntimeError):
    """No PostgreSQL server binaries on this machine."""


def server_bin() -> Path:
    """The bin folder of the newest PostgreSQL installed, e.g. /usr/lib/postgresql/15/bin."""
    found = sorted(
        (p for p in Path("/usr/lib/postgresql").glob("*/bin") if (p / "initdb").is_file() and p.parent.name.isdigit()),
        key=lambda p: int(p.parent.name),
    )
    if not found:
        raise PostgresMissing("PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb): apt-get install postgresql")
    return found[-1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run_as() -> str | None:
    """The user the server runs as when we are root (None: as ourselves)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
        except KeyError:
            continue
        return name
    raise PostgresMissing("running as root and there is neither a postgres nor a nobody user to run PostgreSQL as")


class TemporaryCluster:
    """A PostgreSQL cluster that lives as long as the ``with`` block (or until :meth:`stop`)."""

    def __init__(self, parent: str | None = None):
        self.bin = server_bin()
        self.user = _run_as()
        self.folder = Path(tempfile.mkdtemp(prefix="central-pg-", dir=parent))
        self.data = self.folder / "data"
        self.port = 0
        self._running = False

    def _command(self, *args: str) -> list[str]:
        return ["runuser", "-u", self.user, "--", *args] if self.user else list(args)

    def start(self) -> TemporaryCluster:
        if self.user:
            # The folder (mkdtemp: 0700) becomes the server user's; / and /tmp let it reach it.
            entry = pwd.getpwnam(self.user)
            os.chown(self.folder, entry.pw_uid, entry.pw_gid)
        try:
            self._check(self._command(str(self.bin / "initdb"), "-D", str(self.data), "-U", SUPERUSER, "--auth=trust", "-E", "UTF8"))
            for _attempt in range(3):  # the free port may be taken between the probe and the start
                self.port = _free_port()
                options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1"
                start = self._command(str(self.bin / "pg_ctl"), "-D", str(self.data), "-o", options, "-l", str(self.folder / "log"), "-w")
                if subprocess.run([*start, "start"], capture_output=True, text=True).returncode == 0:
                    self._running = True
                    return self
            raise RuntimeError(f"PostgreSQL did not start: {self.log()}")
        except BaseException:
            self.stop()
            raise

    def _check(self, command: list[str]) -> None:
        run = subprocess.run(command, capture_output=True, text=True)
        if run.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed ({run.returncode}): {run.stderr.strip() or run.stdout.strip()}")

    def log(self) -> str:
        """The server's log so far (why it did not start, what it refused)."""
        path = self.folder / "log"
        return path.read_text(errors="replace") if path.exists() else "(no log)"

    def url(self, dbname: str = "postgres") -> str:
        """A URL of the database ``dbname`` over TCP on 127.0.0.1 (what a central is given with --db)."""
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{dbname}"

    def create_database(self, name: str) -> str:
        """Create the database ``name`` (a plain identifier); its URL."""
        if not name.replace("_", "").isalnum():
            raise ValueError(f"a database name of letters, digits and _ only, got {name!r}")
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        """Stop at once (``-m immediate``: nothing here is kept) and remove the folder."""
        if self._running:
            subprocess.run(self._command(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop"), capture_output=True)
            self._running = False
        shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> TemporaryCluster:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None) -> None:
        self.stop()
