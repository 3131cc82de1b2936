"""`kiosk scan`: the daemon's own pipeline over image and video files, one line per read."""

from __future__ import annotations

import json

from device.cli import add_command, load_config

#: The top-level commands this module registers, with their one-line help.
HELP = {"scan": "read barcodes from images and videos with the kiosk's pipeline"}


def cmd_scan(args) -> int:
    """Run the daemon's pipeline (gate, locate, decode, card check) over image and video files. One
    line per image, and one per video frame in which a symbol was decoded. Unreadable files are
    reported and the rest still scanned; the exit code is then 1.

    Example: kiosk scan --json card.png counter.avi
    """
    import numpy as np

    from device.camera import CameraError
    from device.camera.file import iter_frames
    from device.pipeline import Pipeline
    from device.redact import describe_text, log_text, mask_contract, undecodable_as_bytes

    # Only the pipeline's keys matter here: the camera, token and outbox the file names are the
    # daemon's (a snapshot is scanned with the kiosk's config while the daemon holds the camera).
    cfg = load_config(args, check_files=False)
    failed = 0

    def emit(path: str, frame: int | None, readings=None, error: str | None = None) -> None:
        if args.json:
            # A file name that is not UTF-8 is shown with its odd bytes as \xff: valid JSON for any parser.
            line = {"path": undecodable_as_bytes(path), "frame": frame}
            if error is not None:
                line["error"] = undecodable_as_bytes(error)
            else:
                line["symbols"] = [r.to_json(args.unmask) for r in readings]
            print(json.dumps(line), flush=True)
            return
        # File names and messages are outside text: a terminal escape in a name is shown, not obeyed.
        where = log_text(path) if frame is None else f"{log_text(path)} frame {frame}"
        if error is not None:
            print(f"{where}: error: {log_text(error)}", flush=True)
        elif not readings:
            print(f"{where}: nothing decoded", flush=True)
        for r in readings or ():
            if r.card:
                what = f"card {r.card.format}, contract {mask_contract(r.card.contract, args.unmask)}, issue {r.card.issue}"
            else:
                what = f"not a card ({r.rejection.reason})"
            print(f"{where}: {r.symbol.symbology} {describe_text(r.symbol.text, args.unmask)!s} -> {what}", flush=True)

    for path in args.paths:
        # A fresh pipeline per file: the gate's memory of one video must not skip frames of the next.
        pipeline = Pipeline.from_config(cfg)
        try:
            frames = iter_frames(path)
            for frame in frames:
                if frame.still:
                    emit(frame.origin or path, None, pipeline.still(frame.image))
                    continue
                result = pipeline.frame(frame, frame.monotonic)  # decoded in full only past the gate
                if result.readings:
                    emit(path, frame.index, result.readings)
        except CameraError as e:
            failed += 1
            emit(path, None, error=str(e))
        except (ValueError, np.linalg.LinAlgError) as e:  # an odd frame the pipeline refused
            failed += 1
            emit(path, None, error=f"cannot scan: {e}")
    return 1 if failed else 0


def register(sub) -> None:
    p = add_command(sub, "scan", cmd_scan, HELP["scan"])
    p.add_argument("--json", action="store_true", help="one JSON object per line, for tools (masked like the rest unless --unmask)")
    p.add_argument(
        "--unmask", action="store_true", help="show whole contract numbers and barcode texts (masked by default, also in --json)"
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help="image or video files")
