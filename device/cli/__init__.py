"""The ``kiosk`` command: a thin layer over the package's API, one module per command group.

Every command has ``--help`` and an entry in docs/COMMANDS.md (tests/test_cli.py checks both). A
group's module keeps each command's options beside its body and imports what the body needs
inside it, so that a command loads only its own part of the kiosk.
Exit codes: 0 fine, 1 a problem with some input (reported, the rest done), 2 usage,
78 configuration error (systemd does not restart on it).
"""

from __future__ import annotations

import argparse
import inspect
import logging
import os
import re
import sys

from device import __version__
from device import config as config_mod


def config_option(p: argparse.ArgumentParser) -> None:
    """The ``--config PATH`` option every command that reads the configuration takes."""
    p.add_argument(
        "--config",
        metavar="PATH",
        help=(
            f"config file (default {config_mod.DEFAULT_PATH}, or the file ${config_mod.DEFAULT_PATH_ENV} names, "
            "if it exists; else built-in defaults)"
        ),
    )


def plain(text: str) -> str:
    """Docstring text as ``--help`` shows it: the reST markup taken off, the line breaks kept.

    >>> plain("Reads ``kiosk.toml`` (see :mod:`device.config`, :class:`~device.outbox.Outbox`)::")
    'Reads kiosk.toml (see device.config, Outbox):'
    """
    text = re.sub(r":[a-z]+:`~[\w.]*?(\w+)`", r"\1", text)  # :class:`~a.b.C` -> C
    text = re.sub(r":[a-z]+:`([^`]+)`", r"\1", text)  # :mod:`a.b` -> a.b
    text = re.sub(r"``([^`]+)``", r"\1", text)
    text = re.sub(r"\*\*([^*]+)\*\*", r"\1", text)
    text = re.sub(r"\s*::$", ":", text, flags=re.M)  # a literal block follows
    return text


def described_parser(sub, name: str, help: str, description: str, example: str | None) -> argparse.ArgumentParser:
    """One command's parser: ``description`` shown as written (already wrapped), the example on
    its own last line."""
    if example:
        description = f"{description.rstrip()}\n\nExample: {example}"
    return sub.add_parser(name, help=help, description=plain(description), formatter_class=argparse.RawDescriptionHelpFormatter)


def add_command(sub, name: str, func, help: str | None = None, *, config: bool = True) -> argparse.ArgumentParser:
    """A command's parser, described by its function's docstring, as sqlite-utils' commands are.

    The docstring's first line is the help line in the list of commands (unless ``help`` is
    given: a group's top-level command takes it from its ``HELP``, which is listed without
    importing the command), the rest is the ``--help`` description, shown as wrapped there; it
    ends in a line ``Example: kiosk ...``. ``config``: the command takes ``--config``.
    """
    doc = inspect.cleandoc(func.__doc__ or "")
    summary, _, rest = doc.partition("\n\n")
    if help is None:
        help, doc = summary.rstrip("."), rest
    p = described_parser(sub, name, help, doc, None)
    if config:
        config_option(p)
    p.set_defaults(func=func)
    return p


def add_group(sub, name: str, help: str, description: str, *, example: str, dest: str):
    """A command group (``kiosk queue ...``): its parser, and the subparsers its commands go in."""
    p = described_parser(sub, name, help, description, example)
    return p.add_subparsers(dest=dest, required=True, metavar="COMMAND")


def add_module_command(sub, words: str, module, help: str) -> argparse.ArgumentParser:
    """A tool's command (``kiosk demo``, ``kiosk bench loop``) from its module: the module's
    ``add_arguments(p)`` and ``main(args)``; described by its docstring's first paragraph, with
    the docstring's first example of ``kiosk <words>`` (a literal block's line)."""
    doc = inspect.cleandoc(module.__doc__ or help)
    example = next((line.strip() for line in doc.splitlines() if line.strip().startswith(f"kiosk {words}")), None)
    if example:
        example = re.sub(r"\s{2,}#", "   #", example)
    p = described_parser(sub, words.split()[-1], help, doc.split("\n\n")[0], example)
    module.add_arguments(p)
    p.set_defaults(func=module.main)
    return p


def load_config(args, *, check_files: bool = True) -> config_mod.Config:
    """The configuration named by ``--config`` (a :class:`~device.config.ConfigError` names the bad key).

    ``check_files=False``: for a command that diagnoses, which must work when a file the
    configuration names (the token file) went away; that is what it is there to tell.
    """
    cfg = config_mod.load(getattr(args, "config", None), check_files=check_files)
    logging.getLogger().setLevel(cfg.log.level)
    return cfg


# --- entry point ------------------------------------------------------------------------------


#: The command groups, one module each (``device.cli.<name>``), in the order ``--help`` lists
#: them. Each has ``HELP`` (its top-level commands and their one-line help) and ``register(sub)``.
GROUPS = ("scan", "run", "preview", "queue", "central", "status", "revocations", "pos", "diag", "config", "bench", "tools")


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The whole command line; with ``argv``, only the group of the command asked for is built.

    Building a group imports its module; tool groups (bench, demo, the reference central) import
    OpenCV and more while registering. ``kiosk status`` and ``kiosk --help`` must stay cheap on a
    Pi, so the other groups are listed by name and help only.
    """
    import importlib

    parser = argparse.ArgumentParser(
        prog="kiosk",
        description="The counter kiosk: reads client cards, queues identifications, forwards them to the central API.",
    )
    parser.add_argument("--version", action="version", version=f"kiosk {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    wanted = next((word for word in argv if not word.startswith("-")), None) if argv is not None else None
    for name in GROUPS:
        group = importlib.import_module(f"device.cli.{name}")
        if argv is None or wanted in group.HELP:
            group.register(sub)
        else:
            for command, help_text in group.HELP.items():
                sub.add_parser(command, help=help_text)
    return parser


def main(argv: list[str] | None = None) -> int:
    from device.redact import EscapingFormatter

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(EscapingFormatter("%(levelname)s %(name)s: %(message)s"))  # outside text made harmless
    logging.basicConfig(level=logging.INFO, handlers=[handler])
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser(argv).parse_args(argv)
    try:
        code = args.func(args)
        sys.stdout.flush()  # here, where a closed pipe is caught, not at exit
        return code
    except BrokenPipeError:  # `kiosk scan ... | head`: the reader went away
        _die_of_sigpipe()
    except config_mod.ConfigError as e:
        print(f"kiosk: config error: {e}", file=sys.stderr)
        if "permission denied" in e.problem.lower():
            print(f"kiosk: {_permission_advice(argv, e.source or e.key)}", file=sys.stderr)
        return config_mod.EXIT_CONFIG
    except PermissionError as e:  # a file of root's or the daemon's: say who may, not a traceback
        print(f"kiosk: {_permission_advice(argv, e.filename)}", file=sys.stderr)
        return 1
    except Exception as e:  # an outbox that cannot be opened, and the like: say what, no traceback
        from device.outbox import OutboxError

        if not isinstance(e, OutboxError):
            raise
        print(f"kiosk: {e}", file=sys.stderr)
        cause = e.__cause__
        if os.geteuid() == 0:
            pass  # root met no permission problem: "run it as root" would send it round in circles
        elif isinstance(cause, PermissionError):
            print(f"kiosk: {_permission_advice(argv, cause.filename)}", file=sys.stderr)
        elif "readonly database" in str(cause) or "unable to open database file" in str(cause):
            # SQLite's words for a folder or file this user may read but not write (or not even open).
            print(f"kiosk: {_permission_advice(argv, getattr(e, 'path', None) or 'the outbox')}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _permission_advice(argv: list[str], path: object) -> str:
    """What to do when this command (``argv``) may not read ``path``: sudo, or the technicians' group.

    >>> _permission_advice(["queue", "list", "--config", "k.toml"], "/var/lib/kiosk/outbox.db")  # doctest: +ELLIPSIS
    "no permission for /var/lib/kiosk/outbox.db: run it as root (sudo kiosk queue list ...) or ..."
    """
    import errno
    import itertools

    from device.status import permission_advice

    words = itertools.takewhile(lambda a: not a.startswith("-"), argv)  # the command, not its options
    error = PermissionError(errno.EACCES, "Permission denied", str(path) if path else None)
    return permission_advice(error, " ".join(["kiosk", *words]))


def _die_of_sigpipe() -> None:
    """End as a Unix tool does when its reader goes away: quietly, killed by SIGPIPE (status 141).

    Python ignores SIGPIPE so that sockets raise instead; a command whose stdout is closed gets a
    BrokenPipeError. Output still buffered must not raise again at exit, so stdout is pointed at
    /dev/null first.
    """
    import signal

    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGPIPE)


if __name__ == "__main__":
    sys.exit(main())
