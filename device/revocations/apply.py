"""Reading and applying a verified list, and doing it in a child process when it is large.

The scan loop and the sync thread share one interpreter: parsing and writing a complete list of a
million contracts is seconds of Python holding the GIL, which doubled the scan loop's frame times
while it ran (docs/BENCHMARKS.md). A verified answer larger than :data:`IN_PROCESS_MAX_BYTES` is
therefore written to a temporary file beside the copy and handed to ``python -m
device.revocations.apply``, which parses it, checks its version and applies it in the copy's one
transaction, at the idle scheduling class (it runs when the cores would otherwise idle); the
daemon's threads only wait for its one line of JSON. The guarantees stay those
of :func:`apply_verified`, whichever process runs it:

- nothing is applied that is not the format, goes back in version or leaves a gap (the signature
  is checked before the bytes are written out; only verified bytes reach either reading);
- one transaction: a child that dies or is stopped mid-way leaves the last good copy in force
  (SQLite rolls an uncommitted transaction back);
- a child that dies, answers nothing or runs past its deadline is a failed sync with a sentence
  saying so (a fault), never a hang; its memory goes with it when it exits.

A delta (a few thousand contracts at most between two syncs) stays in the daemon: starting an
interpreter costs more than parsing it.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from device.revocations import document
from device.revocations.document import ListRefused
from device.revocations.store import ReplacedCards, RevocationsError

log = logging.getLogger(__name__)

APPLIED, UNCHANGED, REFUSED, FAILED, ABORTED = "applied", "unchanged", "refused", "failed", "aborted"

#: A verified answer up to this size is parsed and applied in the daemon (~15,000 contracts, tens of
#: milliseconds); a larger one (a complete list) in a child process.
IN_PROCESS_MAX_BYTES = 256 * 1024
#: How long a child may take to parse and apply a list before it is stopped (a million contracts
#: take ~5 s on the development VM; a Pi several times that).
CHILD_DEADLINE_S = 300.0
#: How often the waiting thread looks at its stop event while the child runs.
CHILD_POLL_S = 0.5
#: The sync's nice value (thread and child): parsing and applying a complete list takes seconds of
#: CPU, which the scan loop on the same cores must not lose to it.
SYNC_NICE = 10


def idle_priority() -> None:
    """This process (the child) runs only when the CPU would otherwise idle (SCHED_IDLE): the scan
    loop, on the same two cores, keeps its frame times; an idle kiosk leaves it most of a core."""
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    except (AttributeError, OSError) as e:  # not Linux: nice 10 as the thread
        log.debug("cannot give the list's child the idle priority: %s", e)


def lower_priority() -> None:
    """Give the calling thread (only it: Linux's setpriority takes a thread id) a lower CPU priority."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), max(SYNC_NICE, os.getpriority(os.PRIO_PROCESS, 0)))
    except (AttributeError, OSError) as e:  # not Linux, or not allowed: the sync runs at the daemon's priority
        log.debug("cannot lower the sync thread's priority: %s", e)


def outcome(kind: str, version: int | None, changed: int = 0, complete: bool = False, error: str | None = None) -> dict:
    """What applying came to, as a dict (it crosses a pipe): the fields of ``SyncResult``."""
    return {"kind": kind, "version": version, "changed": changed, "complete": complete, "error": error}


def apply_verified(copy: ReplacedCards, body: bytes, *, key_id: str, version: int | None, since: int) -> dict:
    """Parse verified ``body``, refuse it if it goes back or leaves a gap after ``version``, else apply it."""
    try:
        listed = document.parse(body)
    except ListRefused as e:
        return outcome(REFUSED, version, error=f"replaced-card list refused: {e}")
    if version is not None and listed.version < version:
        return outcome(
            REFUSED,
            version,
            error=f"replaced-card list refused: version {listed.version} is older than the copy's {version} (a replayed list)",
        )
    if not listed.complete and listed.since > since:
        return outcome(
            REFUSED, version, error=f"replaced-card list refused: a delta since version {listed.since} does not follow the copy's {since}"
        )
    try:
        if listed.version == version and not listed.cards:
            copy.confirm()
            return outcome(UNCHANGED, version)
        changed = copy.apply(listed, key_id=key_id)
    except RevocationsError as e:
        return outcome(FAILED, version, error=str(e))
    return outcome(APPLIED, listed.version, changed, listed.complete)


def child_command() -> list[str]:
    """The child's command line, before its arguments."""
    return [sys.executable, "-m", "device.revocations.apply"]


def apply_in_child(path: Path, body: bytes, *, key_id: str, version: int | None, since: int,
                   deadline_s: float = CHILD_DEADLINE_S, cancel=None, command: list[str] | None = None) -> dict:  # fmt: skip
    """:func:`apply_verified` in a child process on the copy at ``path``; never raises for the child's faults."""
    import device

    # An answer left by a daemon killed while its child ran (one sync at a time per copy): gone now.
    for stale in path.parent.glob(f".{path.name}.incoming-*"):
        stale.unlink(missing_ok=True)
    try:
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.incoming-", dir=path.parent)
        with os.fdopen(fd, "wb") as f:
            f.write(body)
    except OSError as e:
        return outcome(FAILED, version, error=f"cannot write the replaced-card list's answer beside {path}: {e.strerror or e}")
    # The child imports this very tree, whether installed or run from a checkout.
    root = str(Path(device.__file__).resolve().parent.parent)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p))
    args = ["--copy", str(path), "--body", name, "--key-id", key_id, "--since", str(since)]
    if version is not None:
        args += ["--version", str(version)]
    try:
        child = subprocess.Popen(
            (command or child_command()) + args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
        )
        return _wait(child, version, deadline_s, cancel)
    except OSError as e:
        return outcome(FAILED, version, error=f"cannot start the process that applies the replaced-card list: {e.strerror or e}")
    finally:
        Path(name).unlink(missing_ok=True)


def _wait(child: subprocess.Popen, version: int | None, deadline_s: float, cancel) -> dict:
    import time

    deadline = time.monotonic() + deadline_s
    while True:
        try:
            out, err = child.communicate(timeout=min(CHILD_POLL_S, max(deadline - time.monotonic(), 0.01)))
            break
        except subprocess.TimeoutExpired:
            stopped = cancel is not None and cancel.is_set()
            if stopped or time.monotonic() >= deadline:
                child.kill()
                child.communicate()
                if stopped:
                    return outcome(ABORTED, version)
                return outcome(
                    FAILED,
                    version,
                    error=(
                        f"the process applying the replaced-card list did not finish within {deadline_s:g} s "
                        "and was stopped (nothing of it applied)"
                    ),
                )
    try:
        answer = json.loads(out.decode("utf-8").strip().splitlines()[-1])
        if child.returncode == 0 and isinstance(answer, dict) and answer.get("kind") in (APPLIED, UNCHANGED, REFUSED, FAILED):
            return outcome(
                answer["kind"], answer.get("version"), answer.get("changed") or 0, bool(answer.get("complete")), answer.get("error")
            )
    except (UnicodeDecodeError, ValueError, IndexError):
        pass
    how = f"was killed by signal {-child.returncode}" if child.returncode < 0 else f"exited with status {child.returncode}"
    last = err.decode("utf-8", "replace").strip().splitlines()[-1:] or ["no message"]
    return outcome(FAILED, version, error=f"the process applying the replaced-card list {how} ({last[0][:200]}); nothing of it applied")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m device.revocations.apply", description="Apply a verified replaced-card list (the daemon's child)."
    )
    p.add_argument("--copy", required=True)
    p.add_argument("--body", required=True)
    p.add_argument("--key-id", required=True)
    p.add_argument("--version", type=int, default=None)
    p.add_argument("--since", type=int, required=True)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(message)s")
    lower_priority()
    idle_priority()
    body = Path(args.body).read_bytes()
    try:
        copy = ReplacedCards(args.copy)
    except RevocationsError as e:
        result = outcome(FAILED, args.version, error=str(e))
    else:
        result = apply_verified(copy, body, key_id=args.key_id, version=args.version, since=args.since)
        copy.close()
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
