"""`kiosk diag camera|api|gpio|bundle`: diagnostics for field technicians."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from device.cli import add_command, add_group, load_config

HELP = {"diag": "check the camera, the central and the LEDs"}


def cmd_diag_camera(args) -> int:
    """Grab a frame, show what is decoded, and with --snapshot save it to aim and focus by.

    From the running daemon (it holds the camera), or from the camera itself when the daemon is
    not running, once its exposure and focus have settled. The snapshot is written 0600 with the card's printed name and address blurred
    outside the barcodes (--unmask: the whole picture) and the located barcodes drawn (--raw: no
    drawings, so `kiosk scan FILE` reads it again).

    Example: kiosk diag camera --snapshot /tmp/s.png
    """
    from device import status
    from device.daemon.snapshot import SnapshotError, SnapshotOptions, from_camera, from_daemon, reading_lines, write_image

    cfg = load_config(args, check_files=False)
    runtime = Path(cfg.kiosk.runtime_dir)
    out = Path(args.snapshot) if args.snapshot else None
    if args.raw and out is None:
        print("kiosk diag camera: --raw shapes the snapshot: give --snapshot FILE too", file=sys.stderr)
        return 2
    options = SnapshotOptions(raw=args.raw, unmask=args.unmask)
    try:
        # Opening the status file first: a permission problem is said as one, not taken for
        # "the daemon is not running" (which would open a camera the daemon holds).
        try:
            (runtime / status.STATUS_FILE).open("rb").close()
        except FileNotFoundError:
            pass
        daemon = status.read_status(runtime)
        if daemon.running:
            # The daemon owns the camera: ask it for its latest decoded frame. Its status says
            # what the camera is doing (focus mode, lens position, up or down).
            print(f"camera {daemon.data.get('camera', {}).get('source', '?')}")
            shot = from_daemon(runtime, options, args.timeout, running=lambda: status.read_status(runtime).running)
            origin = " from the running daemon"
        else:
            described, shot = from_camera(cfg, options, args.timeout)
            print(f"camera {described}")
            origin = ""
    except SnapshotError as e:
        print(f"kiosk diag camera: {e}", file=sys.stderr)
        return 1
    except PermissionError as e:
        print(f"kiosk diag camera: {status.permission_advice(e, 'kiosk diag camera')}", file=sys.stderr)
        return 1
    w, h = shot.size
    print(f"frame {w}x{h}{origin}; decoded {len(shot.readings)} symbol(s)")
    for line in reading_lines(shot.readings, args.unmask or cfg.log.unmask):
        print(line)
    if out:
        try:
            write_image(out, shot.image)
        except (OSError, ValueError) as e:
            print(f"kiosk diag camera: cannot write the snapshot: {e}", file=sys.stderr)
            return 1
        picture = "the whole picture" if args.unmask else "blurred outside the barcodes read"
        drawn = "" if args.raw else "; located regions amber, cards green, other barcodes red"
        print(f"snapshot written to {out} (mode 0600, {picture}{drawn})")
    return 0


def cmd_diag_api(args) -> int:
    """Can the kiosk reach the central, is its token accepted, and did everything arrive?

    Ask the central's health endpoint, then post an empty batch to check the token, then ask which
    of this kiosk's seqs the central holds and look there for every identification the outbox
    marks delivered. A problem is said in one line with the next step for its cause, after the
    running daemon's delivery fault if it has one. Exit 0 only when the central is reached, takes
    the token and lacks nothing (a central without the accounting endpoint is said, not a failure;
    an accounting that cannot be checked for another reason is, with the reason).

    Example: kiosk diag api
    """
    from device import status
    from device.central_client import CentralClient
    from device.diag import check_central, check_seqs
    from device.fault_names import DELIVERY

    cfg = load_config(args, check_files=False)
    # What the running daemon meets when it delivers (its fault line), beside what this check meets now.
    running = status.read_status(Path(cfg.kiosk.runtime_dir))
    daemon_fault = ((running.data or {}).get("faults") or {}).get(DELIVERY) if running.running else None
    # The client the daemon delivers with: same session, TLS, token and timeouts.
    client = CentralClient.from_config(cfg)
    result = check_central(client, cfg.kiosk.id, cfg.kiosk.site)
    seqs = check_seqs(client, cfg.kiosk.id, _delivered_seqs(cfg)) if result.ok else None
    ok = result.ok and (seqs is None or seqs.ok is not False)
    if args.json:
        report = {
            "reachable": result.reachable,
            "token_accepted": result.token_accepted,
            "detail": result.detail,
            "next_step": result.next_step,
            "ok": ok,
        }
        if seqs is not None:
            report["seqs"] = {"ok": seqs.ok, "detail": seqs.detail, "missing": list(seqs.missing)}
        report["daemon_delivery_fault"] = daemon_fault
        print(json.dumps(report))
    else:
        if daemon_fault:
            print(f"daemon: FAULT delivery: {daemon_fault}")
        print(("ok: " if result.ok else "PROBLEM: ") + result.detail)
        if result.next_step:
            print(f"next step: {result.next_step}")
        if seqs is not None:
            print({True: "ok: ", False: "PROBLEM: ", None: "note: "}[seqs.ok] + seqs.detail)
    return 0 if ok else 1


def _delivered_seqs(cfg) -> list[int]:
    """The seqs the outbox marks delivered; none when there is no outbox yet."""
    from device.outbox.reader import open_outbox_reader

    if not Path(cfg.outbox.path).exists():
        return []
    outbox = open_outbox_reader(cfg)
    try:
        # Seqs are numbered per kiosk id: records made under an earlier one are not this kiosk's at the central.
        return [r.seq for r in outbox.list("delivered") if r.kiosk_id == outbox.kiosk_id]
    finally:
        outbox.close()


def cmd_diag_gpio(args) -> int:
    """Cycle the LEDs and the buzzer and show the button, naming each pin.

    Light each fitted LED for a second, sound the buzzer's three patterns (a short beep: identified;
    a double beep: not a card; a long beep: card replaced), and show the button's state, naming each pin,
    so a technician can check the wiring. Stop the daemon first (it holds the pins).

    Example: sudo kiosk diag gpio   # the daemon stopped first: sudo systemctl stop kiosk
    """
    from device.outputs.feedback import diag_gpio

    cfg = load_config(args, check_files=False)
    return diag_gpio(cfg.feedback, sys.stdout)


def cmd_diag_bundle(args) -> int:
    """Write one archive for operations: status, config, versions, journal, queue, devices.

    Write one tar.gz (mode 0600) with the status, the effective configuration (secrets masked),
    the versions of the kiosk and its libraries, OS and kernel, the last 500 lines of the kiosk's
    journal, the queue summary, the camera and GPIO devices, disk and clock, and the latest
    snapshot; contracts masked, no token anywhere. A part that cannot be collected is a line in
    its problems.txt. Prints the archive's path and size.

    Example: sudo kiosk diag bundle --out /tmp/kiosk.tar.gz
    """
    from device import bundle
    from device import config as config_mod

    problems = []
    try:
        cfg = load_config(args, check_files=False)
    except config_mod.ConfigError as e:  # the case operations most need a bundle for
        problems.append(f"config: {e}; the rest is collected with the built-in defaults")
        cfg = config_mod.Config()
    collected = bundle.collect(cfg, problems=problems)
    path = Path(args.out) if args.out else bundle.default_path(collected)
    try:
        size = bundle.write(collected, path)
    except OSError as e:
        print(f"kiosk diag bundle: cannot write {path}: {e.strerror or e} (choose another place with --out)", file=sys.stderr)
        return 1
    for line in collected.problems:
        print(f"note: {line}", file=sys.stderr)
    print(f"bundle written to {path} ({size} bytes, {len(collected.members)} files, {len(collected.problems)} problem(s) in problems.txt)")
    return 0


def register(sub) -> None:
    dsub = add_group(
        sub,
        "diag",
        HELP["diag"],
        "Diagnostics for field technicians.",
        example="kiosk diag camera --snapshot /tmp/s.png",
        dest="diag_command",
    )
    cam = add_command(dsub, "camera", cmd_diag_camera)
    cam.add_argument("--snapshot", metavar="FILE", help="write the frame, located barcodes drawn (.png or .jpg; mode 0600)")
    cam.add_argument("--raw", action="store_true", help="no drawings on the snapshot: `kiosk scan FILE` reads it again")
    cam.add_argument(
        "--unmask", action="store_true", help="the whole picture (by default blurred outside the barcodes) and whole contract numbers"
    )
    cam.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for a frame or the daemon's answer (default 10)")
    api = add_command(dsub, "api", cmd_diag_api)
    api.add_argument("--json", action="store_true", help="machine-readable output")
    add_command(dsub, "gpio", cmd_diag_gpio)
    bundle = add_command(dsub, "bundle", cmd_diag_bundle)
    bundle.add_argument("--out", metavar="FILE", help="where to write the archive (default /tmp/kiosk-bundle-<kiosk id>-<UTC time>.tar.gz)")
