"""`kiosk diag camera|api|gpio`: diagnostics for field technicians."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from device.cli import add_command, load_config

HELP = {"diag": "check the camera, the central and the LEDs"}


def cmd_diag_camera(args) -> int:
    """Grab a frame, show what is decoded, draw located barcodes on it.

    Grab one frame (from the running daemon, or from the camera itself when the daemon is stopped),
    decode it, and with --snapshot write it with the located barcodes drawn, to aim and focus.
    """
    import time

    import cv2

    from device import status
    from device.camera import CameraError, open_camera
    from device.daemon.snapshot import annotate
    from device.pipeline import Pipeline

    cfg = load_config(args, check_files=False)
    runtime = Path(cfg.kiosk.runtime_dir)
    out = Path(args.snapshot) if args.snapshot else None
    running = status.read_status(runtime)
    if running.running:
        # The daemon owns the camera: ask it for its latest frame. Its status says what the
        # camera is doing (focus mode, lens position, up or down).
        print(f"camera {running.data.get('camera', {}).get('source', '?')}")
        answer = runtime / status.SNAPSHOT_FILE
        answer.unlink(missing_ok=True)
        (runtime / status.SNAPSHOT_REQUEST).touch()
        deadline = time.monotonic() + 3 * status.WRITE_INTERVAL_S + 2
        while not answer.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        if not answer.exists():
            print("kiosk diag camera: the daemon did not answer with a frame (is the camera down? see kiosk status)", file=sys.stderr)
            return 1
        image = cv2.imread(str(answer))
        h, w = image.shape[:2]
        print(f"frame {w}x{h} from the running daemon (located regions amber, cards green, other barcodes red)")
        if out:
            out.write_bytes(answer.read_bytes())
            print(f"snapshot written to {out}")
        return 0
    try:
        source = open_camera(cfg.camera, pace="fast")
    except (CameraError, ValueError) as e:
        print(f"kiosk diag camera: {e}", file=sys.stderr)
        return 1
    try:
        frame, last_error = None, None
        deadline = time.monotonic() + args.timeout
        while frame is None and time.monotonic() < deadline:
            try:
                frame = source.read(timeout=max(0.1, deadline - time.monotonic()))
            except CameraError as e:
                last_error = e
                continue
            if frame is None:  # a file that ended
                break
        if frame is None:
            why = f": {last_error}" if last_error else ""
            print(f"kiosk diag camera: no frame from {cfg.camera.source} within {args.timeout:g} s{why}", file=sys.stderr)
            return 1
        print(f"camera {source.describe()}")  # with the focus mode and lens position
    finally:
        source.close()
    readings = Pipeline.from_config(cfg).still(frame.image)
    h, w = frame.image.shape[:2]
    print(f"frame {w}x{h}; decoded {len(readings)} symbol(s)")
    from device.redact import describe_text, mask_contract

    for r in readings:
        what = f"card, contract {mask_contract(r.card.contract)}" if r.card else f"not a card ({r.rejection.reason})"
        print(f"  {r.symbol.symbology} {describe_text(r.symbol.text)} -> {what}")
    if out:
        cv2.imwrite(str(out), annotate(frame.image, readings, cfg.log.unmask))
        print(f"snapshot written to {out} (located regions amber, cards green, other barcodes red)")
    return 0


def cmd_diag_api(args) -> int:
    """Can the kiosk reach the central, is its token accepted, and did everything arrive?

    Ask the central's health endpoint, then post an empty batch to check the token, then ask which
    of this kiosk's seqs the central holds and look there for every identification the outbox
    marks delivered. A problem is said in one line with the next step for its cause, after the
    running daemon's delivery fault if it has one. Exit 0 only
    when the central is reached, takes the token and lacks nothing (a central that does not
    report seqs is said, not a failure).
    """
    from device import status
    from device.central_client import CentralClient
    from device.daemon.faults import DELIVERY
    from device.diag import check_central, check_seqs

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
        report = {"reachable": result.reachable, "token_accepted": result.token_accepted, "detail": result.detail, "next_step": result.next_step, "ok": ok}
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
    from device.cli.queue import open_outbox_reader

    if not Path(cfg.outbox.path).exists():
        return []
    outbox = open_outbox_reader(cfg)
    try:
        return [r.seq for r in outbox.list("delivered")]
    finally:
        outbox.close()


def cmd_diag_gpio(args) -> int:
    """Cycle the LEDs and the buzzer and show the button, naming each pin.

    Light each fitted LED for a second, beep the buzzer once and twice, and show the button's state,
    naming each pin, so a technician can check the wiring. Stop the daemon first (it holds the
    pins).
    """
    from device.outputs.feedback import diag_gpio

    cfg = load_config(args, check_files=False)
    return diag_gpio(cfg.feedback, sys.stdout)


def register(sub) -> None:
    p = sub.add_parser("diag", help=HELP["diag"], description="Diagnostics for field technicians.")
    dsub = p.add_subparsers(dest="diag_command", required=True, metavar="COMMAND")
    cam = add_command(dsub, "camera", cmd_diag_camera)
    cam.add_argument("--snapshot", metavar="FILE", help="write the annotated frame (JPEG/PNG)")
    cam.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for a frame (default 10)")
    api = add_command(dsub, "api", cmd_diag_api)
    api.add_argument("--json", action="store_true", help="machine-readable output")
    add_command(dsub, "gpio", cmd_diag_gpio)
