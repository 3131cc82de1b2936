"""``kiosk bench resolution``: read rate against module size, down to the physical floor.

Synthetic client cards (:mod:`device.tools.synth.scene`'s camera model) placed so that the
barcode's narrow bar is a given number of frame pixels (0.8 to 3), at several in-plane angles,
each with a random focus blur (0-1.5 px), sensor noise and JPEG compression. Readers, side by
side on the same frames: raw zxing-cpp, raw pyzbar, the pipeline without the card decoder and
the general Code 128 fit ("before") and the pipeline with them. For each reader the table gives the read rate per module
size and where the curve crosses 90% (the smallest size from which on every size reads at least
90%, interpolated between sizes). The physical floor is about 1 px per module: below that the
bars alias.

Negatives at every size and angle, to show that nothing is misread: a card with bad check
digits, another utility's card (same length, other prefix), a foreign Code 128 of the card's
length, and a product EAN-13; a "false card" is any of them identified as a client card::

    kiosk bench resolution --per-cell 8 --angles 0,30,60,90
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

import numpy as np

from device.card import CARD_V1, Card, identify
from device.tools.synth.card import card_size_px, render_card, render_product_label
from device.tools.synth.scene import Conditions, render_scene

MODULES = (0.8, 0.9, 1.0, 1.1, 1.2, 1.3, 1.5, 1.75, 2.0, 2.5, 3.0)
ANGLES = (0, 30, 60, 90)
#: Narrow bar of the rendered card, in its 300 dpi pixels (device.tools.synth.card).
_CARD_MODULE_PX = 5
NEGATIVES = ("bad check digits", "other prefix", "foreign Code 128", "EAN-13 product")


def readers(before: str = "pipeline before", **without) -> dict[str, Callable[[np.ndarray], list]]:
    """The four readers, by table name (BGR image -> symbols): raw zxing-cpp, raw pyzbar, the
    pipeline made with the ``Scanner`` arguments ``without`` (default: no card decoder and no
    general Code 128 fit), named ``before``, and the pipeline."""
    from device.vision.decoders import as_grey, make_decoder
    from device.vision.scanner import Scanner

    zxing = make_decoder("zxing-cpp", ("Code128",))
    zbar = make_decoder("pyzbar", ("Code128",))
    baseline = Scanner(symbologies=("Code128",), **(without or {"card_formats": (), "code128_fit": False}))
    after = Scanner(symbologies=("Code128",))
    return {
        "raw zxing-cpp": lambda img: zxing.decode(as_grey(img)),
        "raw pyzbar": lambda img: zbar.decode(as_grey(img)),
        before: baseline.decode,
        "pipeline": after.decode,
    }


def shots(count: int, angles, seed: int) -> str:
    """How the cards of a cell were shot, for a report's header."""
    return (
        f"{count} (angles {', '.join(format(a, 'g') for a in angles)} deg, +-2), focus blur 0-1.5 px, noise 1-4, JPEG q60-95, seed {seed}"
    )


def frame_for(module_px: float) -> tuple[int, int]:
    """The smallest usual camera frame in which the card at this module size fits any way round."""
    for size in ((640, 480), (1280, 720), (1920, 1080)):
        frac = module_px * card_size_px()[0] / _CARD_MODULE_PX / size[0]
        if frac <= 0.6:
            return size
    return (1920, 1080)


def shoot(card, module_px: float, angle: float, rng: np.random.Generator) -> np.ndarray:
    """``card`` (true-size image) in a frame at ``module_px`` per module, turned by ``angle``."""
    conditions, size = conditions_for(card.size[0], module_px, angle, rng)
    return render_scene(card, conditions, size, rng)


def conditions_for(card_width: int, module_px: float, angle: float, rng: np.random.Generator) -> tuple[Conditions, tuple[int, int]]:
    """How a card ``card_width`` pixels wide at 300 dpi is shot so that its module is
    ``module_px`` frame pixels, and in which frame size."""
    size = frame_for(module_px)
    frac = module_px * card_width / _CARD_MODULE_PX / size[0]
    conditions = Conditions(
        rotation_deg=float(angle + rng.uniform(-2.0, 2.0)),
        card_width_frac=frac,
        center=(0.5 + float(rng.uniform(-0.05, 0.05)), 0.5 + float(rng.uniform(-0.05, 0.05))),
        focus_blur_sigma=float(rng.uniform(0.0, 1.5)),
        light=float(rng.uniform(0.7, 1.0)),
        noise_sigma=float(rng.uniform(1.0, 4.0)),
        jpeg_quality=int(rng.integers(60, 96)),
        clutter=int(rng.integers(0, 3)),
    )
    return conditions, size


def _random_card(rng: np.random.Generator) -> tuple[str, str, int]:
    contract = "".join(str(d) for d in rng.integers(0, 10, 10))
    if int(contract) == 0:
        contract = "0000000001"
    issue = int(rng.integers(1, 10))
    return contract, CARD_V1.encode(contract, issue), issue


def negative_card(kind: str, rng: np.random.Generator):
    """A card-sized object that is not a client card, with the text its barcode holds."""
    contract, payload, issue = _random_card(rng)
    if kind == "bad check digits":
        bad = payload[:-2] + f"{(int(payload[-2:]) + int(rng.integers(1, 97))) % 100:02d}"
        return render_card(contract, issue, payload=bad), bad
    if kind == "other prefix":
        other = "LF" + payload[2:]
        return render_card(contract, issue, payload=other), other
    if kind == "foreign Code 128":
        text = "".join(rng.choice(list("ABCDEFGHJKMNPRSTUVWXYZ0123456789"), 16))
        return render_card(contract, issue, payload=text), text
    ean = "".join(str(d) for d in rng.integers(0, 10, 12))
    return render_product_label(ean), ean


def measure(modules=MODULES, angles=ANGLES, per_cell: int = 6, negatives: int = 1, seed: int = 1):
    """Reads per (reader, module size); false cards and misreads per reader; ms per frame."""
    names = list(readers())
    decode = readers()
    read = {n: {m: [0, 0] for m in modules} for n in names}
    misread = {n: 0 for n in names}
    false_cards = {n: 0 for n in names}
    negative_frames = 0
    ms: dict[str, list[float]] = {n: [] for n in names}
    for mi, m in enumerate(modules):
        for ai, angle in enumerate(angles):
            for i in range(per_cell):
                rng = np.random.default_rng([seed, mi, ai, i])
                contract, payload, issue = _random_card(rng)
                frame = shoot(render_card(contract, issue), m, angle, rng)
                for n in names:
                    t0 = time.perf_counter()
                    texts = {s.text for s in decode[n](frame) if s.symbology == "Code128"}
                    ms[n].append((time.perf_counter() - t0) * 1000)
                    read[n][m][0] += payload in texts
                    read[n][m][1] += 1
                    misread[n] += bool(texts - {payload})
                    false_cards[n] += any(isinstance(identify(t, "Code128"), Card) for t in texts - {payload})
            for j in range(negatives):
                for kind in NEGATIVES:
                    rng = np.random.default_rng([seed, mi, ai, 1000 + j, NEGATIVES.index(kind)])
                    card, _text = negative_card(kind, rng)
                    frame = shoot(card, m, angle, rng)
                    negative_frames += 1
                    for n in names:
                        symbols = decode[n](frame)
                        false_cards[n] += any(isinstance(identify(s.text, s.symbology), Card) for s in symbols)
    rates = {n: {m: r / t for m, (r, t) in read[n].items()} for n in names}
    return names, rates, misread, false_cards, negative_frames, ms


def photo_negatives(images, rotations=(0, 30, 90, 180), scales=(1.0, 0.5, 0.35)):
    """Every photograph under ``images`` (ZXing blackbox layout) that is not a client card, at
    each rotation and scale, through the kiosk's pipeline (Code 128, card decoder on): per
    (scale, rotation), (frames, card decoder reads, false cards). None of them is a card, so
    every identified card is false."""
    from device.tools.bench.decode import shrink
    from device.tools.bench.images import load_sets, read_grey, rotate
    from device.vision.scanner import Scanner

    scanner = Scanner(symbologies=("Code128",))
    table = {}
    for scale in scales:
        for rotation in rotations:
            frames = reads = false = 0
            for image_set in load_sets(images):
                for labelled in image_set.images:
                    try:
                        grey = rotate(shrink(read_grey(labelled.path), scale), rotation)
                    except ValueError:
                        continue
                    symbols = scanner.decode(grey)
                    frames += 1
                    reads += any(s.decoder == "card-decoder" for s in symbols)
                    false += any(isinstance(identify(s.text, s.symbology), Card) for s in symbols)
            table[(scale, rotation)] = (frames, reads, false)
    return table


def crossing(rates: dict[float, float], level: float = 0.9) -> float | None:
    """The smallest module size from which on every size reads at least ``level``, linearly
    interpolated with the size below it; None if the largest size does not reach it."""
    sizes = sorted(rates)
    if rates[sizes[-1]] < level:
        return None
    i = len(sizes) - 1
    while i > 0 and rates[sizes[i - 1]] >= level:
        i -= 1
    if i == 0:
        return sizes[0]
    lo, hi = sizes[i - 1], sizes[i]
    r_lo, r_hi = rates[lo], rates[hi]
    return lo + (hi - lo) * (level - r_lo) / (r_hi - r_lo) if r_hi > r_lo else hi


def report(out: TextIO, modules=MODULES, angles=ANGLES, per_cell: int = 6, negatives: int = 1, seed: int = 1) -> None:
    from device.tools.bench.decode import machine

    names, rates, misread, false_cards, negative_frames, ms = measure(modules, angles, per_cell, negatives, seed)
    out.write(f"machine: {machine()}\n")
    out.write(f"cards per module size: {shots(per_cell * len(angles), angles, seed)}\n\n")
    out.write("| px per module | frame | " + " | ".join(names) + " |\n")
    out.write("|---:|---|" + "---:|" * len(names) + "\n")
    for m in modules:
        w, h = frame_for(m)
        out.write(f"| {m:g} | {w}x{h} | " + " | ".join(f"{rates[n][m]:.0%}" for n in names) + " |\n")
    cross = [crossing(rates[n]) for n in names]
    out.write("| **crosses 90% at** | | " + " | ".join("-" if c is None else f"**{c:.2f}**" for c in cross) + " |\n")
    out.write("| misreads (cards) | | " + " | ".join(str(misread[n]) for n in names) + " |\n")
    out.write(f"| false cards ({negative_frames} negatives + cards) | | " + " | ".join(str(false_cards[n]) for n in names) + " |\n")
    out.write("| median ms per frame | | " + " | ".join(f"{statistics.median(ms[n]):.1f}" for n in names) + " |\n")
    out.write(f"\nnegatives at every size and angle: {', '.join(NEGATIVES)}\n")


def report_photos(out: TextIO, images) -> None:
    """The :func:`photo_negatives` table."""
    out.write(f"\nphotographs under {images} (none is a client card), through the pipeline with the card decoder:\n\n")
    out.write("| scale | rotation | photos | card decoder reads | false cards |\n|---:|---:|---:|---:|---:|\n")
    for (scale, rotation), (frames, reads, false) in photo_negatives(images).items():
        out.write(f"| {scale:g} | {rotation} | {frames} | {reads} | {false} |\n")


def _floats(text: str, minimum: float = 0.0) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None
    if not values or any(not math.isfinite(v) or v < minimum for v in values):
        raise argparse.ArgumentTypeError(f"expected numbers >= {minimum:g}, got {text!r}")
    return values


def _modules(text: str) -> tuple[float, ...]:
    return _floats(text, 0.5)


def add_cell_arguments(p: argparse.ArgumentParser, cell: str, per_cell: int) -> None:
    """``--angles``, ``--per-cell``, ``--negatives`` and ``--seed``: what is shot per ``cell``
    (e.g. "module size and angle")."""
    p.add_argument("--angles", type=_floats, default=ANGLES, metavar="DEG,...", help="in-plane angles (default 0,30,60,90)")
    p.add_argument("--per-cell", type=int, default=per_cell, help=f"cards per {cell} (default {per_cell})")
    p.add_argument("--negatives", type=int, default=1, help=f"of each negative kind per {cell} (default 1; 0 = none)")
    p.add_argument("--seed", type=int, default=1, help="seed (default 1); same seed, same frames")


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``kiosk bench resolution``."""
    p.add_argument(
        "--modules",
        type=_modules,
        default=MODULES,
        metavar="PX,...",
        help="module sizes in frame pixels (default 0.8,0.9,1,1.1,1.2,1.3,1.5,1.75,2,2.5,3)",
    )
    add_cell_arguments(p, "module size and angle", per_cell=6)
    p.add_argument(
        "--photos",
        type=Path,
        metavar="DIR",
        help="also: false cards on every photograph under DIR (ZXing blackbox layout) at 0/30/90/180 degrees, full, half and 0.35 size",
    )


def main(args, out: TextIO = sys.stdout) -> int:
    """``kiosk bench resolution``: print the curve; 0 on success, 2 for bad arguments."""
    if args.per_cell < 1 or args.negatives < 0:
        out.write("kiosk bench resolution: --per-cell must be >= 1 and --negatives >= 0\n")
        return 2
    report(out, tuple(sorted(args.modules)), args.angles, args.per_cell, args.negatives, args.seed)
    if args.photos is not None:
        if not args.photos.is_dir():
            out.write(f"kiosk bench resolution: {args.photos}: no such folder\n")
            return 2
        report_photos(out, args.photos)
    return 0
