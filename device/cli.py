"""The ``kiosk`` command: a thin layer over the package's API.

Every command has ``--help`` and a section in the README (tests/test_cli.py checks both).
Exit codes: 0 fine, 1 a problem with some input (reported, the rest done), 2 usage,
78 configuration error (systemd does not restart on it).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from device import __version__
from device import config as config_mod

log = logging.getLogger("kiosk")


def _add_config_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="PATH", help=f"config file (default {config_mod.DEFAULT_PATH} if it exists, else built-in defaults)")


def _load_config(args) -> config_mod.Config:
    cfg = config_mod.load(getattr(args, "config", None))
    logging.getLogger().setLevel(cfg.log.level)
    return cfg


# --- kiosk scan -------------------------------------------------------------------------------


def cmd_scan(args) -> int:
    """Run the daemon's pipeline over images and videos and print what it read."""
    import numpy as np

    from device.camera import CameraError
    from device.camera.file import iter_frames
    from device.pipeline import Pipeline
    from device.redact import describe_text, mask_contract

    cfg = _load_config(args)
    failed = 0

    def emit(path: str, frame: int | None, readings=None, error: str | None = None) -> None:
        if args.json:
            line = {"path": path, "frame": frame}
            if error is not None:
                line["error"] = error
            else:
                line["symbols"] = [r.to_json(args.unmask) for r in readings]
            print(json.dumps(line), flush=True)
            return
        where = path if frame is None else f"{path} frame {frame}"
        if error is not None:
            print(f"{where}: error: {error}", flush=True)
        elif not readings:
            print(f"{where}: nothing decoded", flush=True)
        for r in readings or ():
            if r.card:
                what = f"card {r.card.format}, contract {mask_contract(r.card.contract, args.unmask)}, issue {r.card.issue}"
            else:
                what = f"not a card ({r.rejection.reason})"
            print(f"{where}: {r.symbol.format} {describe_text(r.symbol.text, args.unmask)!s} -> {what}", flush=True)

    for path in args.paths:
        # A fresh pipeline per file: the gate's memory of one video must not skip frames of the next.
        pipeline = Pipeline.from_config(cfg)
        try:
            frames = iter_frames(path)
            for frame in frames:
                if frame.still:
                    emit(frame.origin or path, None, pipeline.still(frame.image))
                    continue
                result = pipeline.frame(frame.image, frame.monotonic)
                if result.readings:
                    emit(path, frame.index, result.readings)
        except CameraError as e:
            failed += 1
            emit(path, None, error=str(e))
        except (ValueError, np.linalg.LinAlgError) as e:  # an odd frame the pipeline refused
            failed += 1
            emit(path, None, error=f"cannot scan: {e}")
    return 1 if failed else 0


def _add_scan(sub) -> None:
    p = sub.add_parser(
        "scan",
        help="read barcodes from images and videos with the kiosk's pipeline",
        description="Runs the daemon's pipeline (gate, locate, decode, card check) over image and video files. "
        "One line per image, and one per video frame in which a symbol was decoded. "
        "Unreadable files are reported and the rest still scanned; the exit code is then 1.",
    )
    _add_config_arg(p)
    p.add_argument("--json", action="store_true", help="one JSON object per line, for tools (masked like the rest unless --unmask)")
    p.add_argument("--unmask", action="store_true", help="show whole contract numbers and barcode texts (masked by default, also in --json)")
    p.add_argument("paths", nargs="+", metavar="PATH", help="image or video files")
    p.set_defaults(func=cmd_scan)


# --- kiosk config -----------------------------------------------------------------------------


def cmd_config_show(args) -> int:
    cfg = _load_config(args)
    sys.stdout.write(config_mod.dump(cfg, show_secrets=args.show_secrets))
    return 0


def cmd_config_check(args) -> int:
    cfg = _load_config(args)
    print(f"{cfg.source or 'built-in defaults'}: ok")
    return 0


def cmd_config_reference(args) -> int:
    sys.stdout.write(config_mod.example_toml() if args.example else config_mod.reference_markdown())
    return 0


def _add_config(sub) -> None:
    p = sub.add_parser("config", help="show or check the configuration", description="Show or check the configuration.")
    csub = p.add_subparsers(dest="config_command", required=True, metavar="COMMAND")
    show = csub.add_parser("show", help="print the effective configuration (secrets masked)", description="Print the effective configuration as TOML: file, defaults and environment overrides together. Secrets are masked.")
    _add_config_arg(show)
    show.add_argument("--show-secrets", action="store_true", help="print secrets in clear")
    show.set_defaults(func=cmd_config_show)
    check = csub.add_parser("check", help="check a configuration file; exit 78 naming the bad key", description="Check the configuration and exit 0, or 78 with a message naming the file and key.")
    _add_config_arg(check)
    check.set_defaults(func=cmd_config_check)
    ref = csub.add_parser("reference", help="print the configuration reference (Markdown) generated from the schema", description="Print the table of every configuration key, its type, default and purpose, as in the README.")
    ref.add_argument("--example", action="store_true", help="print the commented example file (config/kiosk.toml) instead")
    ref.set_defaults(func=cmd_config_reference)


# --- kiosk run ------------------------------------------------------------------------------


def cmd_run(args) -> int:
    from device.daemon import Kiosk, run_until_signalled
    from device.feedback import Feedback

    cfg = _load_config(args)
    kiosk = Kiosk.from_config(cfg)  # config problems stop here, before any pin is touched
    feedback = Feedback.from_config(cfg, on_button=kiosk.new_presentation)
    kiosk.listeners.append(feedback)
    try:
        log.info("kiosk %s starting: camera %s, outbox %s, central %s", cfg.kiosk.id, kiosk.source.describe(), cfg.outbox.path, cfg.api.url)
        return run_until_signalled(kiosk, args.drain_timeout)
    finally:
        feedback.close()


def _add_run(sub) -> None:
    p = sub.add_parser(
        "run",
        help="run the kiosk daemon: camera, pipeline, outbox and delivery",
        description="Run the kiosk daemon: read the camera, identify cards once per presentation, store each "
        "identification durably and deliver it to the central. SIGTERM or Ctrl-C stop it cleanly. With a file "
        "camera (camera.source = file:PATH) it exits 0 once the file is consumed and the outbox drained.",
    )
    _add_config_arg(p)
    p.add_argument("--drain-timeout", type=float, default=60.0, metavar="SECONDS", help="file cameras: give up draining after this long, exit 1 (default 60)")
    p.set_defaults(func=cmd_run)


# --- kiosk queue ----------------------------------------------------------------------------


def _become_outbox_owner(path: Path) -> None:
    """Run as the outbox's owner when started as root (``sudo kiosk queue ...``).

    SQLite creates the -wal and -shm files as whoever opens the database first; root-owned ones
    would lock the daemon (user kiosk) out of its own outbox.
    """
    owner = path.stat()
    if os.geteuid() == 0 and owner.st_uid != 0:
        os.setegid(owner.st_gid)
        os.seteuid(owner.st_uid)


def _open_outbox_reader(cfg):
    """The daemon's outbox opened beside it, as its owner; never created, never moved aside."""
    from device.outbox import Outbox

    _become_outbox_owner(Path(cfg.outbox.path))
    return Outbox(cfg.outbox.path, cfg.kiosk.id, cfg.kiosk.site, on_corrupt="raise", check_integrity=False, create=False)


def _open_queue(args):
    cfg = _load_config(args)
    if not Path(cfg.outbox.path).exists():
        raise SystemExit(f"kiosk queue: no outbox at {cfg.outbox.path} (outbox.path); has the kiosk run yet?")
    return _open_outbox_reader(cfg)


def _record_json(record, unmask: bool) -> dict:
    from device.redact import mask_contract

    data = record.as_dict()
    data["contract"] = mask_contract(record.contract, unmask)
    return data


def _record_line(record, unmask: bool) -> str:
    from device.redact import mask_contract

    extra = record.dead_reason or record.last_error or ""
    return (
        f"{record.seq:>7}  {record.id}  {record.state:<9} {mask_contract(record.contract, unmask)} /{record.card_issue:02d}"
        f"  {record.scanned_at}  attempts {record.attempts}" + (f"  {extra}" if extra else "")
    )


def cmd_queue_list(args) -> int:
    outbox = _open_queue(args)
    try:
        records = outbox.list(args.state)
    finally:
        outbox.close()
    for record in records:
        print(json.dumps(_record_json(record, args.unmask)) if args.json else _record_line(record, args.unmask))
    if not args.json:
        print(f"{len(records)} identification(s)" + (f" {args.state}" if args.state else ""), file=sys.stderr)
    return 0


def cmd_queue_show(args) -> int:
    outbox = _open_queue(args)
    try:
        record = outbox.get(args.id)
    finally:
        outbox.close()
    if record is None:
        print(f"kiosk queue show: no identification {args.id!r}", file=sys.stderr)
        return 1
    data = _record_json(record, args.unmask)
    if args.json:
        print(json.dumps(data))
    else:
        for key, value in data.items():
            print(f"{key:>16}: {value}")
    return 0


def cmd_queue_retry(args) -> int:
    outbox = _open_queue(args)
    try:
        if args.dead:
            n = outbox.retry_dead()
            print(f"{n} dead identification(s) set to pending")
            return 0
        if not args.id:
            print("kiosk queue retry: give an ID or --dead", file=sys.stderr)
            return 2
        if not outbox.retry(args.id):
            print(f"kiosk queue retry: no dead or pending identification {args.id!r}", file=sys.stderr)
            return 1
        print(f"{args.id}: pending, will be sent at the next attempt")
        return 0
    finally:
        outbox.close()


def _add_queue(sub) -> None:
    p = sub.add_parser("queue", help="list, show and retry queued identifications", description="Look into the outbox (works while the daemon runs).")
    qsub = p.add_subparsers(dest="queue_command", required=True, metavar="COMMAND")
    lst = qsub.add_parser("list", help="list identifications in the outbox", description="List identifications in the outbox, oldest first; contracts masked unless --unmask.")
    lst.add_argument("--state", choices=("pending", "delivered", "dead"), help="only this state")
    show = qsub.add_parser("show", help="show one identification", description="Show every field of one identification, by its id.")
    show.add_argument("id", metavar="ID")
    retry = qsub.add_parser("retry", help="send a dead identification again", description="Set a dead (or waiting) identification back to pending, to be sent at once; --dead for all dead ones.")
    retry.add_argument("id", nargs="?", metavar="ID")
    retry.add_argument("--dead", action="store_true", help="retry every dead identification")
    for q, func in ((lst, cmd_queue_list), (show, cmd_queue_show), (retry, cmd_queue_retry)):
        _add_config_arg(q)
        if q is not retry:
            q.add_argument("--json", action="store_true", help="JSON output (one object per record)")
            q.add_argument("--unmask", action="store_true", help="show whole contract numbers")
        q.set_defaults(func=func)


# --- kiosk central --------------------------------------------------------------------------


def _add_central(sub) -> None:
    from central import server

    p = sub.add_parser(
        "central",
        help="run the reference central API server (tests, demo, integrators)",
        description="Run the reference implementation of the central API (docs/CENTRAL_API.md): stores "
        "identifications in SQLite, counts each id once, and can inject faults for tests.",
    )
    server.add_arguments(p)
    p.set_defaults(func=server.main)


# --- kiosk status -----------------------------------------------------------------------------


def cmd_status(args) -> int:
    """Exit 0 when the daemon runs without faults, 1 otherwise (handy in scripts and fleet checks)."""
    from device import status
    from device.clock import ntp_synchronized
    from device.outbox import OutboxError

    cfg = _load_config(args)
    snapshot = status.read_status(Path(cfg.kiosk.runtime_dir))
    queue = None
    if snapshot.running:
        queue = snapshot.data.get("queue")
    elif Path(cfg.outbox.path).exists():
        try:
            outbox = _open_outbox_reader(cfg)
            try:
                queue = outbox.stats()
            finally:
                outbox.close()
        except OutboxError as e:
            queue = {"error": str(e)}
    report = {
        "running": snapshot.running,
        "why": snapshot.why,
        "kiosk_id": cfg.kiosk.id,
        "daemon": snapshot.data if snapshot.running else None,
        "queue": queue,
        "disk_free_bytes": status.disk_free_bytes(cfg.outbox.path),
        "clock_synced": ntp_synchronized(),
        "cpu_temperature_c": status.cpu_temperature_c(),
    }
    if args.json:
        print(json.dumps(report, default=str))
    else:
        sys.stdout.write(f"kiosk {cfg.kiosk.id}{' at ' + cfg.kiosk.site if cfg.kiosk.site else ''}\n")
        sys.stdout.write(status.render(report))
    healthy = snapshot.running and not (snapshot.data or {}).get("faults")
    return 0 if healthy else 1


def _add_status(sub) -> None:
    p = sub.add_parser(
        "status",
        help="is the kiosk working? daemon, camera, last card, queue, delivery, disk, clock",
        description="Show what the kiosk is doing: whether the daemon runs, the camera and frames, the last "
        "identification (contract masked), the queue, delivery to the central, disk, clock and CPU temperature. "
        "Exit 0 when the daemon runs without faults, else 1.",
    )
    _add_config_arg(p)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_status)


# --- kiosk diag -------------------------------------------------------------------------------


def cmd_diag_camera(args) -> int:
    import time

    import cv2

    from device import status
    from device.camera import CameraError, open_camera
    from device.diag import annotate
    from device.pipeline import Pipeline

    cfg = _load_config(args)
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
        print(f"  {r.symbol.format} {describe_text(r.symbol.text)} -> {what}")
    if out:
        cv2.imwrite(str(out), annotate(frame.image, readings, cfg.log.unmask))
        print(f"snapshot written to {out} (located regions amber, cards green, other barcodes red)")
    return 0


def cmd_diag_api(args) -> int:
    from device.daemon import make_forwarder
    from device.diag import check_central

    cfg = _load_config(args)
    # The same session, TLS and token settings the daemon delivers with; no outbox: nothing is sent from it.
    forwarder = make_forwarder(cfg, None)  # type: ignore[arg-type]
    result = check_central(forwarder, cfg.kiosk.id, cfg.kiosk.site)
    if args.json:
        print(json.dumps({"reachable": result.reachable, "token_accepted": result.token_accepted, "detail": result.detail, "ok": result.ok}))
    else:
        print(("ok: " if result.ok else "PROBLEM: ") + result.detail)
    return 0 if result.ok else 1


def cmd_diag_gpio(args) -> int:
    from device.feedback import diag_gpio

    cfg = _load_config(args)
    return diag_gpio(cfg.feedback, sys.stdout)


def _add_diag(sub) -> None:
    p = sub.add_parser("diag", help="check the camera, the central and the LEDs", description="Diagnostics for field technicians.")
    dsub = p.add_subparsers(dest="diag_command", required=True, metavar="COMMAND")
    cam = dsub.add_parser(
        "camera",
        help="grab a frame, show what is decoded, draw located barcodes on it",
        description="Grab one frame (from the running daemon, or from the camera itself when the daemon is "
        "stopped), decode it, and with --snapshot write it with the located barcodes drawn, to aim and focus.",
    )
    cam.add_argument("--snapshot", metavar="FILE", help="write the annotated frame (JPEG/PNG)")
    cam.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for a frame (default 10)")
    cam.set_defaults(func=cmd_diag_camera)
    api = dsub.add_parser(
        "api",
        help="can the kiosk reach the central, and is its token accepted?",
        description="Ask the central's health endpoint, then post an empty batch to check the token. Exit 0 only when both work.",
    )
    api.add_argument("--json", action="store_true", help="machine-readable output")
    api.set_defaults(func=cmd_diag_api)
    gpio = dsub.add_parser(
        "gpio",
        help="cycle the LEDs and the buzzer and show the button, naming each pin",
        description="Light each fitted LED for a second, beep the buzzer once and twice, and show the button's state, "
        "naming each pin, so a technician can check the wiring. Stop the daemon first (it holds the pins).",
    )
    gpio.set_defaults(func=cmd_diag_gpio)
    for q in (cam, api, gpio):
        _add_config_arg(q)


# --- kiosk bench ------------------------------------------------------------------------------


def _add_bench(sub) -> None:
    from device.bench import decode, idle, loop, outbox, scenes

    p = sub.add_parser("bench", help="measure read rates and speed", description="Benchmarks: read rates and costs, side by side in one run.")
    bsub = p.add_subparsers(dest="bench_command", required=True, metavar="COMMAND")
    for name, module, help_text in (
        ("decode", decode, "read rate, misreads and ms per image: raw zxing-cpp, raw pyzbar and the pipeline, per rotation"),
        ("scenes", scenes, "read rate on synthetic counter scenes: the pipeline against the raw decoders"),
        ("loop", loop, "frames per second, CPU per frame and gate skips of the scan loop on a video"),
        ("outbox", outbox, "commit latency with synchronous=FULL and the drain rate of a backlog into the central"),
        ("idle", idle, "the idle daemon (camera on, nobody at the counter): CPU share, and memory over 50,000 frames"),
    ):
        bp = bsub.add_parser(name, help=help_text, description=(module.__doc__ or help_text).strip().splitlines()[0])
        module.add_arguments(bp)
        bp.set_defaults(func=module.main)


# --- kiosk demo, kiosk testcard ----------------------------------------------------------------


def _add_demo_and_testcard(sub) -> None:
    from device import demo, testcard

    for name, module, help_text in (
        ("demo", demo, "run the whole kiosk on a rendered counter video (or a camera) with a local central"),
        ("testcard", testcard, "write a printable client card (PDF, or PNG at 300 dpi) at true size"),
    ):
        p = sub.add_parser(name, help=help_text, description=module.__doc__.strip().splitlines()[0])
        module.add_arguments(p)
        p.set_defaults(func=module.main)


# --- entry point ------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kiosk",
        description="The counter kiosk: reads client cards, queues identifications, forwards them to the central API.",
    )
    parser.add_argument("--version", action="version", version=f"kiosk {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_scan(sub)
    _add_run(sub)
    _add_queue(sub)
    _add_central(sub)
    _add_status(sub)
    _add_diag(sub)
    _add_config(sub)
    _add_bench(sub)
    _add_demo_and_testcard(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    args = build_parser().parse_args(argv)
    try:
        code = args.func(args)
        sys.stdout.flush()  # here, where a closed pipe is caught, not at exit
        return code
    except BrokenPipeError:  # `kiosk scan ... | head`: the reader went away
        _die_of_sigpipe()
    except config_mod.ConfigError as e:
        print(f"kiosk: config error: {e}", file=sys.stderr)
        return config_mod.EXIT_CONFIG
    except Exception as e:  # an outbox that cannot be opened, and the like: say what, no traceback
        from device.outbox import OutboxError

        if not isinstance(e, OutboxError):
            raise
        print(f"kiosk: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


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
