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

    The view is served on a Unix socket only root and the technicians' group may connect to
    (kiosk.runtime_dir/preview.sock, 0660), never on a TCP port: from a laptop,
    ssh -L 8088:/run/kiosk/preview.sock USER@KIOSK, then open http://localhost:8088/. It shows the
    camera image several times a second, blurred outside the barcodes read (as snapshots are;
    preview.unblurred in root's config shows it whole), with the located regions (amber) and
    reads (green: card, red: other barcode) drawn, contracts masked, the frame rate, a sharpness
    and a contrast figure for the barcode in view, and a dashed box where cards have read ("hold
    the card here"). While the daemon runs it holds the camera: with preview.enabled it serves the
    view itself, and this command checks it answers and prints the ssh line (exit 0). With the
    daemon stopped, this command opens the camera and serves the view on --socket until Ctrl-C (a
    file camera plays again from the start); nothing is identified or sent meanwhile.

    Example: kiosk preview --port 8090
    """
    from device import status

    cfg = load_config(args)
    port = cfg.preview.port if args.port is None else args.port
    runtime_dir = Path(cfg.kiosk.runtime_dir)
    if status.read_status(runtime_dir).running:
        if args.socket is not None:
            print("note: the daemon serves the live view on its own socket; --socket applies when the daemon is stopped")
        return _through_daemon(cfg, runtime_dir / status.PREVIEW_SOCKET, port)
    return _directly(cfg, args.socket or runtime_dir / status.PREVIEW_SOCKET, port)


def _where(socket_path: Path, port: int) -> str:
    """The lines that say how to reach the live view on ``socket_path`` from a laptop."""
    user = os.environ.get("SUDO_USER") or getpass.getuser()
    return (
        f"live view on {socket_path} (root and the technicians' group only)\n"
        f"from a laptop: ssh -L {port}:{socket_path} {user}@{socket.gethostname()}\n"
        f"then open http://localhost:{port}/ in its browser"
    )


def probe(socket_path: Path, timeout_s: float = PROBE_TIMEOUT_S) -> dict:
    """``/figures.json`` of the live view on ``socket_path``; ``OSError`` or ``ValueError`` when it does not answer so."""
    import json

    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(timeout_s)
        conn.connect(str(socket_path))
        conn.sendall(b"GET /figures.json HTTP/1.0\r\nHost: localhost\r\n\r\n")
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
            if len(answer) > 1 << 20:
                raise ValueError("an answer over 1 MB: not the live view")
    head, _, body = answer.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.0 200"):
        raise ValueError(head.split(b"\r\n")[0].decode("ascii", "replace") or "no answer")
    found = json.loads(body)
    if not isinstance(found, dict):
        raise ValueError("not the live view's figures")
    return found


def _through_daemon(cfg, socket_path: Path, port: int) -> int:
    if not cfg.preview.enabled:
        print(
            "kiosk preview: the daemon is running and holds the camera, and its live view is off: set\n"
            f"  [preview] enabled = true   in {cfg.source or 'the config file'}, then: sudo systemctl restart kiosk\n"
            "or stop the daemon (sudo systemctl stop kiosk) and run kiosk preview again to open the camera here",
            file=sys.stderr,
        )
        return 1
    try:
        served = probe(socket_path).get("kiosk")
    except PermissionError:
        from device.status import permission_advice

        print(
            f"kiosk preview: {permission_advice(PermissionError(13, 'Permission denied', str(socket_path)), 'kiosk preview')}",
            file=sys.stderr,
        )
        return 1
    except (OSError, ValueError) as e:
        print(
            f"kiosk preview: the daemon is running but its live view does not answer on {socket_path} ({e});\n"
            "  journalctl -u kiosk | grep preview  says why",
            file=sys.stderr,
        )
        return 1
    if served != cfg.kiosk.id:
        print(
            f"kiosk preview: {socket_path} answers for {served!r}, not this kiosk ({cfg.kiosk.id!r}): check kiosk.runtime_dir",
            file=sys.stderr,
        )
        return 1
    print(f"the running daemon serves the {_where(socket_path, port)}")
    return 0


def _directly(cfg, socket_path: Path, port: int) -> int:
    import signal

    from device.camera import CameraError, open_camera
    from device.outputs.preview import PreviewOutput, watch_camera

    if cfg.preview.unblurred and os.geteuid() != 0:
        print(
            "kiosk preview: preview.unblurred (the whole picture, names and addresses readable) is root's: sudo kiosk preview",
            file=sys.stderr,
        )
        return 1
    try:
        source = open_camera(cfg.camera)
    except (CameraError, ValueError) as e:
        print(f"kiosk preview: {e}", file=sys.stderr)
        return 1
    folder = Path(socket_path).parent
    made = not folder.exists()  # the unit removes /run/kiosk when the daemon stops: made for now, removed after
    try:
        if made:
            _make_folder(folder)
        preview = PreviewOutput.from_config(cfg, socket_path=socket_path)
    except OSError as e:
        source.close()
        _remove_folder(folder, made)
        print(
            f"kiosk preview: cannot listen on {socket_path}: {e.strerror or e} (sudo kiosk preview, or --socket PATH in a folder of yours)",
            file=sys.stderr,
        )
        return 1
    stop = threading.Event()
    previous = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGTERM, signal.SIGINT)}
    print(f"camera {source.describe()}\n{_where(preview.socket_path, port)}\nCtrl-C stops it", flush=True)
    try:
        watch_camera(source, lambda: open_camera(cfg.camera), cfg, preview, stop)
    finally:
        preview.close()
        _remove_folder(folder, made)
        for s, handler in previous.items():
            signal.signal(s, handler)
    return 0


def _make_folder(folder: Path) -> None:
    """The socket's folder, as the unit makes the runtime directory: 0750, the technicians' group when there is one."""
    import grp

    from device.status import TECHNICIANS_GROUP

    folder.mkdir(mode=0o750, parents=True)
    try:
        os.chown(folder, -1, grp.getgrnam(TECHNICIANS_GROUP).gr_gid)
    except (KeyError, PermissionError):
        pass  # no such group here, or not ours to give: the folder stays the caller's


def _remove_folder(folder: Path, made: bool) -> None:
    if made:
        try:
            folder.rmdir()  # only if empty: whatever else came there stays
        except OSError:
            pass


def _port(text: str) -> int:
    import argparse

    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"expected a TCP port, 1 to 65535, got {text!r}")
    return int(text)


def register(sub) -> None:
    p = add_command(sub, "preview", cmd_preview, HELP["preview"])
    p.add_argument("--port", type=_port, metavar="PORT", help="the laptop's port in the ssh -L line printed (default preview.port, 8088)")
    p.add_argument(
        "--socket",
        type=Path,
        metavar="PATH",
        help="where to serve when the daemon is stopped (default kiosk.runtime_dir/preview.sock; a path in a folder of yours without sudo)",
    )
