"""Run the reference central as a real separate process, for tests and the demo.

>>> with start_subprocess(tmp_path, "secret", fail_rate=0.2, seed=1) as central:  # doctest: +SKIP
...     requests.get(central.url + "/v1/health").json()
{'status': 'ok'}

The server is ``python -m central.server``; its port (``port=0``: a free one) is read from the
line it prints on stdout. ``stop()`` sends SIGTERM (the server exits 0), ``kill()`` SIGKILL.
``restart()`` starts it again on the same port and database, optionally with other faults: the
kiosk's configured URL stays valid across an outage.
"""

from __future__ import annotations

import json
import os
import queue
import secrets
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

from central import contract

#: The start of the one line the server prints on stdout once it listens; the URL follows.
LISTENING_PREFIX = "central listening on "

# Fault keywords of start_subprocess, and the command-line flag each becomes.
# Options of start_subprocess that take a list, and the repeatable flag each item becomes
# (accept_formats is not a fault but the server's extra card formats, "xu:8:9").
_LIST_FLAGS = {"reject_contracts": "--reject-contract", "accept_formats": "--accept-format"}
_FAULT_FLAGS = {
    "fail_rate": "--fail-rate",
    "retry_after": "--retry-after",
    "retry_after_spread": "--retry-after-spread",
    "reset_rate": "--reset-rate",
    "latency_ms": "--latency-ms",
    "drop_after_commit_rate": "--drop-after-commit-rate",
    "malformed_rate": "--malformed-rate",
    "malformed_kind": "--malformed-kind",
    "seed": "--seed",
    # Not faults: the replaced-card list's signing key and the admin tokens' file (paths).
    "signing_key": "--signing-key",
    "admin_token_file": "--admin-token-file",
    # Not faults either: the production server's processes, and the limits of both servers.
    "workers": "--workers",
    "max_connections": "--max-connections",
    "header_timeout_s": "--header-timeout-s",
    "body_timeout_s": "--body-timeout-s",
    "kiosk_rate": "--kiosk-rate",
    "kiosk_burst": "--kiosk-burst",
}

_REPO = Path(__file__).resolve().parent.parent


class CentralProcess:
    """A running central: ``url``, ``port``, ``db``, ``tokens``, ``admin_token``, ``log_path``, ``process``.

    A context manager; leaving it stops the server. ``admin_token`` is made for this process (kept
    in a 0600 file beside the database, never on the command line): the listings use it.
    """

    def __init__(
        self, db: Path | str, files: Path, tokens: list[str], host: str, port: int, faults: dict[str, Any], startup_timeout: float
    ):  # fmt: skip
        # db: the SQLite file, or a postgresql:// URL; files: the path its token files and log are named after.
        self.db, self.tokens, self.host = db, tokens, host
        self.token_file = files.with_name(files.name + ".tokens")
        fd = os.open(self.token_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write("".join(f"{t}\n" for t in tokens))
        self.admin_token = secrets.token_urlsafe(32)
        self.admin_token_file = files.with_name(files.name + ".admin-token")
        fd = os.open(self.admin_token_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(self.admin_token + "\n")
        self.log_path = files.with_name(files.name + ".log")
        self.startup_timeout = startup_timeout
        self.faults = faults
        self.process: subprocess.Popen | None = None
        self.url = ""
        self.port = port
        self._start(port)

    @property
    def token(self) -> str:
        """The first token (the one most tests use)."""
        return self.tokens[0]

    def command(self, port: int) -> list[str]:
        # Tokens go in a file, never on the command line: there anyone could read them in `ps`, and
        # a token starting with "-" would be taken for an option.
        cmd = [
            sys.executable,
            "-m",
            "central.server",
            "--host",
            self.host,
            "--port",
            str(port),
            "--db",
            str(self.db),
            "--token-file",
            str(self.token_file),
            "--admin-token-file",
            str(self.admin_token_file),
        ]
        for name, value in self.faults.items():
            if name in _LIST_FLAGS:
                for item in value:
                    cmd += [_LIST_FLAGS[name], item]
            elif value is not None:
                cmd += [_FAULT_FLAGS[name], str(value)]
        return cmd

    def _start(self, port: int) -> None:
        env = dict(os.environ)
        # The checkout's central package, whether or not it is installed in the interpreter.
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(_REPO), env.get("PYTHONPATH", "")) if p)
        env["PYTHONUNBUFFERED"] = "1"
        with open(self.log_path, "ab") as log_file:
            self.process = subprocess.Popen(
                self.command(port),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=log_file,
                env=env,
                text=True,
            )
        lines: queue.Queue[str | None] = queue.Queue()
        self._pump = threading.Thread(target=_pump, args=(self.process.stdout, lines), daemon=True)
        self._pump.start()
        deadline = time.monotonic() + self.startup_timeout
        while True:
            try:
                line = lines.get(timeout=max(deadline - time.monotonic(), 0.0))
            except queue.Empty:
                self.kill()
                raise RuntimeError(f"the central did not start within {self.startup_timeout} s; log:\n{self.log_text()[-2000:]}") from None
            if line is None:  # stdout closed: the process ended
                code = self.process.wait()
                self._close_stdout()
                raise RuntimeError(f"the central exited with {code} before listening; log:\n{self.log_text()[-2000:]}")
            if line.startswith(LISTENING_PREFIX):
                self.url = line[len(LISTENING_PREFIX) :].strip()
                self.port = int(self.url.rsplit(":", 1)[1])
                return

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM, wait up to ``timeout`` s, then SIGKILL. The exit code (None if never started)."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._close_stdout()
        return self.process.returncode

    def kill(self) -> None:
        """SIGKILL: the server dies at once, as on a crash."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self._close_stdout()

    def _close_stdout(self) -> None:
        # The process has ended, so its stdout reaches EOF and the reader thread ends: then close.
        if self.process is not None and self.process.stdout is not None and not self.process.stdout.closed:
            self._pump.join(timeout=5)
            if not self._pump.is_alive():
                self.process.stdout.close()

    def restart(self, **faults: Any) -> CentralProcess:
        """Stop, then start again on the same port and database; ``faults`` replace the old ones if given."""
        self.stop()
        if faults:
            self.faults = _check_faults(faults)
        self._start(self.port)
        return self

    def identifications(self) -> list[dict]:
        """``GET /v1/identifications`` with the admin token: everything the central holds."""
        return self._get(contract.IDENTIFICATIONS_PATH, self.admin_token)["identifications"]

    def refusals(self) -> list[dict]:
        """``GET /v1/refusals`` (admin token): every refusal of a replaced card the central holds."""
        return self._get(contract.REFUSALS_PATH, self.admin_token)["refusals"]

    def conflicts(self) -> list[dict]:
        """``GET /v1/conflicts`` (admin token): the latest records refused as contradicting one held."""
        return self._get(contract.API_PREFIX + "/conflicts", self.admin_token)["conflicts"]

    def fleet(self) -> list[dict]:
        """``GET /v1/kiosks`` (admin token): every kiosk's last contact, version and accounting."""
        return self._get(contract.API_PREFIX + "/kiosks", self.admin_token)["kiosks"]

    def reissue(self, contract_number: str, current_issue: int, admin_token: str) -> dict:
        """``PUT /v1/cards/{contract}``: record that the contract's card was re-issued (an admin token)."""
        request = urllib.request.Request(
            self.url + contract.CARD_PATH.format(contract=contract_number),
            data=json.dumps({"current_issue": current_issue}).encode(),
            method="PUT",
            headers={"Authorization": f"Bearer {admin_token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.load(response)

    def seqs_held(self, kiosk_id: str) -> dict:
        """``GET /v1/kiosks/{kiosk}/seqs``: which of that kiosk's seqs the central holds."""
        path = contract.KIOSK_SEQS_PATH.format(kiosk=quote(kiosk_id, safe=""))
        return self._get(path)

    def _get(self, path: str, token: str | None = None) -> dict:
        request = urllib.request.Request(self.url + path, headers={"Authorization": f"Bearer {token or self.token}"})
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.load(response)

    def log_text(self) -> str:
        """What the server wrote to stderr so far (its log)."""
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def __enter__(self) -> CentralProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"CentralProcess(url={self.url!r}, db={str(self.db)!r})"


def _pump(stream, lines: queue.Queue) -> None:
    for line in stream:
        lines.put(line)
    lines.put(None)


def _check_faults(faults: dict[str, Any]) -> dict[str, Any]:
    unknown = set(faults) - set(_FAULT_FLAGS) - set(_LIST_FLAGS)
    if unknown:
        raise TypeError(f"unknown fault(s): {', '.join(sorted(unknown))}; known: {', '.join(sorted([*_FAULT_FLAGS, *_LIST_FLAGS]))}")
    for name in _LIST_FLAGS:
        if isinstance(faults.get(name), str):
            raise TypeError(f"{name} is a list, not one string")
    return dict(faults)


def start_subprocess(
    db: str | os.PathLike,
    token: str | Sequence[str] = "test-token",
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    startup_timeout: float = 20.0,
    files: str | os.PathLike | None = None,
    **faults: Any,
) -> CentralProcess:
    """Start a central in its own process and wait until it listens.

    ``db``: the SQLite file, a directory in which ``central.db`` is used, or a ``postgresql://`` URL
    (then ``files`` names the folder for the token files and the log). ``token``: one token or
    several (none: kiosks need tokens of their own, ``kiosk central token issue``). ``faults``:
    ``fail_rate``, ``retry_after`` (and ``retry_after_spread``), ``reset_rate``, ``latency_ms``, ``drop_after_commit_rate``,
    ``malformed_rate``, ``malformed_kind``, ``reject_contracts`` (a list),
    ``accept_formats`` (a list of card formats, "xu:8:9"), ``seed``, ``signing_key`` and ``admin_token_file``
    (paths; an admin token of its own is always added), ``workers`` (N: the production server, uvicorn with N
    processes; no faults then), ``max_connections``, ``header_timeout_s``, ``body_timeout_s``, ``kiosk_rate``, ``kiosk_burst``
    -- the command-line options of the same names. The server's log goes to ``<db>.log`` (``FILES/central.log``).
    Raises RuntimeError (with the log) if it does not listen within ``startup_timeout``.
    """
    tokens = [token] if isinstance(token, str) else list(token)
    if os.fspath(db).startswith(("postgresql://", "postgres://")):
        if files is None:
            raise TypeError("a central on PostgreSQL needs files=FOLDER for its token files and log")
        return CentralProcess(os.fspath(db), Path(files) / "central", tokens, host, port, _check_faults(faults), startup_timeout)
    path = Path(db)
    if path.is_dir():
        path = path / "central.db"
    return CentralProcess(path, path, tokens, host, port, _check_faults(faults), startup_timeout)
