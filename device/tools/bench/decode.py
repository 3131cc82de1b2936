"""``kiosk bench decode``: raw decoders against the kiosk pipeline on labelled photographs.

For each image set and each in-plane rotation, side by side in one run:

* ``zxing-cpp`` and ``pyzbar``: the raw library on the whole rotated image, restricted to the
  set's symbology (library defaults otherwise),
* ``pipeline``: :meth:`device.vision.scanner.Scanner.decode` (whole frame, then located upright
  regions) with zxing-cpp and the same symbology,

and reports the read rate, misreads (images where a decoded text differs from the expected
one), median milliseconds per image, and for the pipeline how many images
:func:`device.card.identify` turned into a client card (must be 0 on every public set).
In a set without ``.txt`` files (no barcode), every image with any decoded symbol is a false
read, counted in the same "wrong" column. Rotation is on a canvas grown to hold the whole image,
with a white border. Then the cost of a 1280x720 frame holding a code is timed the same way.

    kiosk bench decode --images ../shared/zxing-blackbox --rotations 0,15,30,45,60,90,180
    kiosk bench decode --images ../shared/zxing-blackbox --rotations 0,30 --scale 0.5

``--scale`` shrinks every photograph first (area averaging, as a camera further away sees it):
the same codes with fewer pixels per module.

API: :func:`run` (the whole report), :func:`measure` (the numbers, for tests and other tools).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TextIO

import cv2
import numpy as np

from device.card import Card, identify
from device.tools.bench.images import ImageSet, load_sets, read_grey, rotate
from device.vision import Symbol
from device.vision.decoders import SYMBOLOGIES, make_decoder
from device.vision.scanner import Scanner

#: The methods compared, in table order.
METHODS = ("zxing-cpp", "pyzbar", "pipeline")
DEFAULT_ROTATIONS = (0, 15, 30, 45, 60, 90, 180)

#: Set-name prefix (before the first "-") -> symbology, for the ZXing blackbox naming.
_SET_SYMBOLOGY = {
    "code128": "Code128",
    "code39": "Code39",
    "code93": "Code93",
    "codabar": "Codabar",
    "ean13": "EAN13",
    "ean8": "EAN8",
    "itf": "ITF",
    "upca": "UPCA",
    "upce": "UPCE",
    "qrcode": "QRCode",
}


@dataclass
class Cell:
    """One method on one set at one rotation."""

    images: int = 0
    read: int = 0
    wrong: int = 0  # misreads (labelled sets) or false reads (no-barcode sets)
    cards: int = 0  # images turned into a client card (pipeline only)
    ms: list[float] = field(default_factory=list)

    @property
    def median_ms(self) -> float:
        return statistics.median(self.ms) if self.ms else 0.0


@dataclass
class Row:
    """One set at one rotation: a :class:`Cell` per method."""

    set: str
    rotation: int
    has_barcodes: bool
    symbologies: tuple[str, ...]
    cells: dict[str, Cell]


def set_symbologies(image_set: ImageSet, all_sets: Sequence[ImageSet]) -> tuple[str, ...]:
    """The symbologies a set is decoded with: by its name's prefix; for a no-barcode set, those
    of every labelled set beside it (a false read in any of them counts); else all."""
    if image_set.has_barcodes:
        prefix = image_set.name.split("-")[0].lower()
        return (_SET_SYMBOLOGY[prefix],) if prefix in _SET_SYMBOLOGY else SYMBOLOGIES
    names = {_SET_SYMBOLOGY.get(s.name.split("-")[0].lower()) for s in all_sets if s.has_barcodes}
    names.discard(None)
    return tuple(sorted(names)) or SYMBOLOGIES


def measure(
    images: Path,
    rotations: Sequence[int] = DEFAULT_ROTATIONS,
    *,
    progress: Callable[[Row], None] | None = None,
    scale: float = 1.0,
) -> list[Row]:
    """Decode every image of every set under ``images`` at every rotation with every method,
    each image first shrunk to ``scale`` of its size."""
    sets = load_sets(images)
    rows = []
    for image_set in sets:
        symbologies = set_symbologies(image_set, sets)
        methods = _methods(symbologies)
        # The card check runs on what a kiosk configured for these symbologies plus Code 128
        # (the card's own) would decode.
        for rotation in rotations:
            row = Row(image_set.name, rotation, image_set.has_barcodes, symbologies, {m: Cell() for m in METHODS})
            for labelled in image_set.images:
                try:
                    grey = rotate(shrink(read_grey(labelled.path), scale), rotation)
                except ValueError:
                    continue
                for name, decode in methods.items():
                    t0 = time.perf_counter()
                    symbols = decode(grey)
                    elapsed = (time.perf_counter() - t0) * 1000
                    _score(row.cells[name], symbols, labelled.expected, elapsed, count_cards=name == "pipeline")
            rows.append(row)
            if progress is not None:
                progress(row)
    return rows


def shrink(grey: np.ndarray, scale: float) -> np.ndarray:
    """``grey`` resized to ``scale`` of its size by area averaging (1.0: unchanged)."""
    if scale == 1.0:
        return grey
    h, w = grey.shape[:2]
    return cv2.resize(grey, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)


def _methods(symbologies: tuple[str, ...]) -> dict[str, Callable[[np.ndarray], list[Symbol]]]:
    # Raw decoders keep the libraries' defaults (zxing-cpp also tries inverted codes).
    zxing = make_decoder("zxing-cpp", symbologies)
    zbar = make_decoder("pyzbar", symbologies)
    scanner = Scanner("zxing-cpp", symbologies)
    return {"zxing-cpp": zxing.decode, "pyzbar": zbar.decode, "pipeline": scanner.decode}


def _score(cell: Cell, symbols: list[Symbol], expected: str | None, ms: float, count_cards: bool) -> None:
    cell.images += 1
    cell.ms.append(ms)
    texts = {s.text for s in symbols}
    if expected is None:
        cell.wrong += bool(texts)
    else:
        cell.read += expected in texts
        cell.wrong += bool(texts - {expected})
    if count_cards:
        cell.cards += any(isinstance(identify(s.text, s.symbology), Card) for s in symbols)


# -- 1280x720 frame cost ----------------------------------------------------------------


@dataclass
class FrameCost:
    """Median wall and CPU ms per 1280x720 frame holding one code, per method and rotation,
    and how many frames each method read."""

    rotation: int
    frames: int
    ms: dict[str, float]
    read: dict[str, int]
    cpu_ms: dict[str, float] = field(default_factory=dict)


def frame_cost(images: Path, rotations: Sequence[int] = DEFAULT_ROTATIONS, size: tuple[int, int] = (1280, 720)) -> list[FrameCost]:
    """Each Code 128 image, rotated, pasted on a grey ``size`` frame; raw zxing-cpp vs pipeline.

    Sets other than ``code128-*`` are left out: this measures what a card costs.
    """
    sets = [s for s in load_sets(images) if s.has_barcodes and s.name.lower().startswith("code128")]
    zxing = make_decoder("zxing-cpp", ("Code128",))
    scanner = Scanner("zxing-cpp", ("Code128",))
    w, h = size
    out = []
    for rotation in rotations:
        ms: dict[str, list[float]] = {"zxing-cpp": [], "pipeline": []}
        cpu: dict[str, list[float]] = {"zxing-cpp": [], "pipeline": []}
        read = {"zxing-cpp": 0, "pipeline": 0}
        frames = 0
        for image_set in sets:
            for labelled in image_set.images:
                try:
                    code = rotate(read_grey(labelled.path), rotation)
                except ValueError:
                    continue
                frame = _paste(code, w, h)
                frames += 1
                for name, decode in (("zxing-cpp", zxing.decode), ("pipeline", scanner.decode)):
                    t0, c0 = time.perf_counter(), time.process_time()
                    symbols = decode(frame)
                    ms[name].append((time.perf_counter() - t0) * 1000)
                    cpu[name].append((time.process_time() - c0) * 1000)
                    read[name] += any(s.text == labelled.expected for s in symbols)
        out.append(FrameCost(rotation, frames, _medians(ms), read, _medians(cpu)))
    return out


def _medians(samples: dict[str, list[float]]) -> dict[str, float]:
    return {k: statistics.median(v) if v else 0.0 for k, v in samples.items()}


def _paste(code: np.ndarray, w: int, h: int) -> np.ndarray:
    """``code`` in the middle of a light grey w x h frame, shrunk to fit (a card seen at the counter)."""
    frame = np.full((h, w), 230, np.uint8)
    ch, cw = code.shape[:2]
    k = min(1.0, 0.9 * w / cw, 0.9 * h / ch)
    if k < 1.0:
        code = cv2.resize(code, (max(1, int(cw * k)), max(1, int(ch * k))), interpolation=cv2.INTER_AREA)
        ch, cw = code.shape[:2]
    y, x = (h - ch) // 2, (w - cw) // 2
    frame[y : y + ch, x : x + cw] = code
    return frame


# -- report ------------------------------------------------------------------------------


def machine() -> str:
    """One line naming the machine, for the benchmark record."""
    import os

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith(("model name", "Model")):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    from importlib.metadata import PackageNotFoundError, version

    def package(name: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:
            return "?"

    return (
        f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, zxing-cpp {package('zxing-cpp')}, "
        f"pyzbar {package('pyzbar')}, OpenCV {cv2.__version__}"
    )


def format_row(row: Row) -> str:
    parts = [f"{row.set:<18} {row.rotation:>4} {next(iter(row.cells.values())).images:>4}"]
    for name in METHODS:
        c = row.cells[name]
        rate = f"{100.0 * c.read / c.images:5.1f}%" if row.has_barcodes and c.images else "     -"
        parts.append(f"{rate} {c.wrong:>5} {c.median_ms:>6.1f}")
    parts.append(f"{row.cells['pipeline'].cards:>5}")
    return " | ".join(parts)


HEADER = (
    f"{'set':<18} {'rot':>4} {'imgs':>4} | "
    + " | ".join(f"{name:^19}" for name in METHODS)
    + " | cards\n"
    + f"{'':<28} | "
    + " | ".join(f"{'read':>6} {'wrong':>5} {'ms':>6}" for _ in METHODS)
    + " |"
)


def totals(rows: Sequence[Row]) -> list[Row]:
    """Rows summed over sets of the same kind (name before the last "-") at each rotation."""
    groups: dict[tuple[str, int], Row] = {}
    for row in rows:
        kind = row.set.rsplit("-", 1)[0] + "-*"
        key = (kind, row.rotation)
        if key not in groups:
            groups[key] = Row(kind, row.rotation, row.has_barcodes, row.symbologies, {m: Cell() for m in METHODS})
        for name, cell in row.cells.items():
            total = groups[key].cells[name]
            total.images += cell.images
            total.read += cell.read
            total.wrong += cell.wrong
            total.cards += cell.cards
            total.ms.extend(cell.ms)
    return list(groups.values())


def run(images: Path, rotations: Sequence[int], out: TextIO, *, frames: bool = True, as_json: bool = False, scale: float = 1.0) -> int:
    """Print the benchmark for the sets under ``images``; 0 when done, 2 when ``images`` is unusable."""
    try:
        sets = load_sets(images)
    except FileNotFoundError as exc:
        print(f"bench decode: {exc}", file=sys.stderr)
        return 2
    if not sets:
        print(f"bench decode: {images}: no image sets (folders of images with NAME.txt beside each)", file=sys.stderr)
        return 2
    if as_json:
        for row in measure(images, rotations, scale=scale):
            cells = {k: {**asdict(v), "ms": round(v.median_ms, 2)} for k, v in row.cells.items()}
            print(json.dumps({"set": row.set, "rotation": row.rotation, "symbologies": list(row.symbologies), "cells": cells}), file=out)
        return 0
    print(f"machine: {machine()}", file=out)
    if scale != 1.0:
        print(f"every photograph shrunk to {scale:g} of its size first", file=out)
    print("read: expected text decoded; wrong: misread images (labelled sets) or false reads (no-barcode sets);", file=out)
    print("ms: median per image; cards: images the pipeline + card check turned into a client card", file=out)
    print(HEADER, file=out)
    rows = measure(images, rotations, progress=lambda row: print(format_row(row), file=out, flush=True), scale=scale)
    print("\ntotals by kind of set", file=out)
    print(HEADER, file=out)
    for row in totals(rows):
        print(format_row(row), file=out)
    if frames:
        costs = frame_cost(images, rotations)
        if costs and costs[0].frames:
            print("\n1280x720 frames holding one Code 128 photo (light grey surround): median ms per frame", file=out)
            print("(wall: elapsed; cpu: this process's CPU time, all threads)", file=out)
            print(
                f"{'rot':>4} {'frames':>6} | {'zxing-cpp wall':>14} {'cpu':>5} {'read':>5} | {'pipeline wall':>13} {'cpu':>5} {'read':>5}",
                file=out,
            )
            for c in costs:
                print(
                    f"{c.rotation:>4} {c.frames:>6} | {c.ms['zxing-cpp']:>14.1f} {c.cpu_ms['zxing-cpp']:>5.1f} {c.read['zxing-cpp']:>5} |"
                    f" {c.ms['pipeline']:>13.1f} {c.cpu_ms['pipeline']:>5.1f} {c.read['pipeline']:>5}",
                    file=out,
                )
    return 0


def parse_rotations(text: str) -> list[int]:
    """``"0,15,30"`` -> ``[0, 15, 30]``; ``argparse.ArgumentTypeError`` naming a bad item."""
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"rotations: expected comma-separated whole degrees like 0,15,30, got {text!r}") from None


def parse_scale(text: str) -> float:
    """``"0.5"`` -> 0.5; ``argparse.ArgumentTypeError`` outside 0.1-1."""
    try:
        value = float(text)
        usable = 0.1 <= value <= 1.0
    except ValueError:
        value, usable = 0.0, False
    if not usable:
        raise argparse.ArgumentTypeError(f"scale: expected a number from 0.1 to 1 like 0.5, got {text!r}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``kiosk bench decode`` options."""
    parser.add_argument(
        "--images",
        type=Path,
        required=True,
        metavar="DIR",
        help="folder of image sets laid out like the ZXing blackbox (NAME.png + NAME.txt)",
    )
    parser.add_argument(
        "--rotations",
        type=parse_rotations,
        default=list(DEFAULT_ROTATIONS),
        metavar="DEG,...",
        help="in-plane rotations in degrees (default: 0,15,30,45,60,90,180)",
    )
    parser.add_argument(
        "--scale",
        type=parse_scale,
        default=1.0,
        metavar="S",
        help="shrink every photograph to this share of its size first, 0.1-1 (default 1)",
    )
    parser.add_argument("--no-frames", action="store_true", help="skip the 1280x720 frame-cost table")
    parser.add_argument("--json", action="store_true", help="one JSON object per set and rotation instead of tables")


def main(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """Run ``kiosk bench decode`` with parsed ``args``."""
    return run(args.images, args.rotations, out or sys.stdout, frames=not args.no_frames, as_json=args.json, scale=args.scale)
