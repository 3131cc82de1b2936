"""`kiosk preview`: the live view for aiming the camera, through the daemon or directly."""

from __future__ import annotations

import getpass
import os
import socket
import sys
import threading
from pathlib import Path

from device.cli import add_command, load_config

HELP = {"preview": "a live view of the camera in a browser, to aim and focus it"}

#: How long `kiosk preview` waits for the daemon's live view to answer.
PROBE_TIMEOUT_S = 5.0


def cmd_preview(args) -> int:
    """A live view of the camera in a browser, to aim and focus it.

    Serves a page on 127.0.0.1 only (never on another address): the camera image several times a
    second with the located regions (amber) and reads (green: card, red: other barcode) drawn,
    contracts masked, the frame rate, a sharpness and a contrast figure for the barcode in view,
    and a dashed box where cards have read ("hold the card here"). From a laptop:
    ssh -L PORT:localhost:PORT USER@KIOSK, then open http://localhost:PORT/. While the daemon
    runs it holds the camera: with preview.enabled it serves the page itself, and this command
    only says where (exit 0). With the daemon stopped, this command opens the camera and serves
    the page until Ctrl-C (a file camera plays again from the start); nothing is identified or
    sent meanwhile.

    Example: sudo kiosk preview --port 8090
    """
    from device import status

    cfg = load_config(args)
    if status.read_status(Path(cfg.kiosk.runtime_dir)).running:
        return _through_daemon(cfg, args.port)
    return _directly(cfg, cfg.preview.port if args.port is None else args.port)


def _where(port: int) -> str:
    """The lines that say how to reach the live view on ``port`` from a laptop."""
    user = os.environ.get("SUDO_USER") or getpass.getuser()
    return (
        f"live view at http://127.0.0.1:{port}/ (this machine only)\n"
        f"from a laptop: ssh -L {port}:localhost:{port} {user}@{socket.gethostname()}\n"
        f"then open http://localhost:{port}/ in its browser"
    )


def _through_daemon(cfg, port: int | None) -> int:
    import json
    import urllib.request

    if not cfg.preview.enabled:
        print(
            "kiosk preview: the daemon is running and holds the camera, and its live view is off: set\n"
            f"  [preview] enabled = true   in {cfg.source or 'the config file'}, then: sudo systemctl restart kiosk\n"
            "or stop the daemon (sudo systemctl stop kiosk) and run kiosk preview again to open the camera here",
            file=sys.stderr,
        )
        return 1
    url = f"http://127.0.0.1:{cfg.preview.port}/figures.json"
    try:
        with urllib.request.urlopen(url, timeout=PROBE_TIMEOUT_S) as answer:
            served = json.loads(answer.read()).get("kiosk")
    except (OSError, ValueError) as e:
        print(
            f"kiosk preview: the daemon is running but its live view does not answer at {url} ({getattr(e, 'reason', e)});\n"
            "  journalctl -u kiosk | grep preview  says why (another program on preview.port?)",
            file=sys.stderr,
        )
        return 1
    if served != cfg.kiosk.id:
        print(
            f"kiosk preview: 127.0.0.1:{cfg.preview.port} answers for {served!r}, "
            f"not this kiosk ({cfg.kiosk.id!r}): set another preview.port",
            file=sys.stderr,
        )
        return 1
    if port is not None and port != cfg.preview.port:
        print(f"note: the daemon serves on preview.port ({cfg.preview.port}); --port applies when the daemon is stopped")
    print(f"the running daemon serves the {_where(cfg.preview.port)}")
    return 0


def _directly(cfg, port: int) -> int:
    import signal

    from device.camera import CameraError, open_camera
    from device.outputs.preview import PreviewOutput, watch_camera

    try:
        source = open_camera(cfg.camera)
    except (CameraError, ValueError) as e:
        print(f"kiosk preview: {e}", file=sys.stderr)
        return 1
    try:
        preview = PreviewOutput.from_config(cfg, port=port)
    except OSError as e:
        source.close()
        print(f"kiosk preview: cannot listen on 127.0.0.1:{port}: {e.strerror or e} (choose another with --port)", file=sys.stderr)
        return 1
    stop = threading.Event()
    previous = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGTERM, signal.SIGINT)}
    print(f"camera {source.describe()}\n{_where(preview.port)}\nCtrl-C stops it", flush=True)
    try:
        watch_camera(source, lambda: open_camera(cfg.camera), cfg, preview, stop)
    finally:
        preview.close()
        for s, handler in previous.items():
            signal.signal(s, handler)
    return 0


def _port(text: str) -> int:
    import argparse

    if not text.isdigit() or int(text) > 65535:
        raise argparse.ArgumentTypeError(f"expected a TCP port, 0 to 65535 (0: one the system picks), got {text!r}")
    return int(text)


def register(sub) -> None:
    p = add_command(sub, "preview", cmd_preview, HELP["preview"])
    p.add_argument(
        "--port",
        type=_port,
        metavar="PORT",
        help="port on 127.0.0.1 when the daemon is stopped (default preview.port, 8088; 0: any free one)",
    )
