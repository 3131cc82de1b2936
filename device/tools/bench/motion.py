"""``kiosk bench motion``: read rate against motion smear, and the fastest card speed it allows.

A card that moves while the shutter is open is smeared along its motion by speed x exposure
(:func:`device.camera.exposure.smear_modules`). Here client cards are shot as in ``kiosk bench
resolution`` (:mod:`device.tools.synth.scene`'s camera model, focus blur 0-1.5 px, noise, JPEG)
at a few module sizes, and smeared along the barcode's axis (the worst direction: a smear along
the bars changes nothing) by 0 to 5 modules: a box filter the smear's length in frame pixels.
The same cards and conditions at every smear, so the rows differ only in the smear. Readers,
side by side on the same frames: raw zxing-cpp, raw pyzbar, the pipeline without its smear
model ("pipeline, no smear model") and the pipeline.

Negatives smeared the same way at every smear, size and angle (a card with bad check digits,
another utility's prefix, a foreign Code 128 of the card's length, a product EAN-13): a "false
card" is any of them identified as a client card; a "misread" is any other text read from a card.

From the curve, per module size: the longest smear up to which every smear reads at least 90%
(interpolated), and from it and the exposure the fastest card speed read: smear x module width
(:data:`device.card.CARD_MODULE_MM`) / exposure. The exposure is the configured
``camera.max_exposure_us`` when ``camera.exposure`` is "short", else 1 ms and 20 ms (what a
camera's own auto-exposure picks indoors), or those given with ``--exposure-us``::

    kiosk bench motion --per-cell 6 --angles 0,30,60,90
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import statistics
import sys
import time
from collections.abc import Callable
from typing import TextIO

import numpy as np

from device.card import CARD_MODULE_MM, Card, identify
from device.tools.bench import resolution
from device.tools.bench.resolution import ANGLES, NEGATIVES, _floats, _random_card, conditions_for, frame_for, negative_card
from device.tools.synth.card import render_card
from device.tools.synth.scene import card_quad, render_scene

#: Smear lengths, in modules of the card's barcode.
SMEARS = (0.0, 1.0, 2.0, 3.0, 4.0, 5.0)
#: Module sizes in frame pixels: 2.8 is a card about 15 cm from a 1280x720 camera with a 65
#: degree lens, 2 at 20 cm.
MODULES = (2.0, 2.8)
#: Exposures the speed is given for when the configuration asks for the camera's own
#: auto-exposure: the short exposure's default, and what auto-exposure picks indoors.
AUTO_EXPOSURES_US = (1000, 20000)


def readers() -> dict[str, Callable[[np.ndarray], list]]:
    """The four readers, by table name (BGR image -> symbols): raw zxing-cpp, raw pyzbar, the
    pipeline without its smear model and the pipeline."""
    return resolution.readers("pipeline, no smear model", smear_model=False)


def shoot(card, module_px: float, angle: float, smear: float, rng: np.random.Generator) -> np.ndarray:
    """``card`` at ``module_px`` per module turned by ``angle``, smeared ``smear`` modules along
    its barcode's axis (the card's long side). ``rng`` draws the same conditions whatever the
    smear (the smear is drawn by nobody)."""
    conditions, size = conditions_for(card.size[0], module_px, angle, rng)
    quad = card_quad(card.size, conditions, size)
    axis = quad[1] - quad[0]  # the card's top edge: the barcode's axis in the frame
    conditions = dataclasses.replace(
        conditions, motion_blur_px=smear * module_px, motion_blur_angle_deg=math.degrees(math.atan2(float(axis[1]), float(axis[0])))
    )
    return render_scene(card, conditions, size, rng)


@dataclasses.dataclass
class Curve:
    """What :func:`measure` counted: per reader, per (module size, smear) the cards read and
    shown; misreads (other texts from cards) and false cards (negatives identified as cards)
    per (module size, smear); milliseconds per frame."""

    names: list[str]
    read: dict[str, dict[tuple[float, float], list[int]]]
    misread: dict[str, dict[tuple[float, float], int]]
    false_cards: dict[str, dict[tuple[float, float], int]]
    negative_frames: int
    ms: dict[str, list[float]]

    def rates(self, name: str, module_px: float) -> dict[float, float]:
        """Read rate per smear of one reader at one module size."""
        return {s: r / t for (m, s), (r, t) in self.read[name].items() if m == module_px}


def measure(modules=MODULES, smears=SMEARS, angles=ANGLES, per_cell: int = 4, negatives: int = 1, seed: int = 1) -> Curve:
    """Every reader on the same frames: cards and negatives at every size, smear and angle."""
    decode = readers()
    names = list(decode)
    cells = [(m, s) for m in modules for s in smears]
    curve = Curve(
        names,
        {n: {c: [0, 0] for c in cells} for n in names},
        {n: dict.fromkeys(cells, 0) for n in names},
        {n: dict.fromkeys(cells, 0) for n in names},
        0,
        {n: [] for n in names},
    )
    for mi, m in enumerate(modules):
        for ai, angle in enumerate(angles):
            for i in range(per_cell):
                rng = np.random.default_rng([seed, mi, ai, i])
                contract, payload, issue = _random_card(rng)
                card = render_card(contract, issue)
                state = rng.bit_generator.state
                for s in smears:
                    rng.bit_generator.state = state  # the same conditions at every smear
                    frame = shoot(card, m, angle, s, rng)
                    for n in names:
                        t0 = time.perf_counter()
                        texts = {x.text for x in decode[n](frame) if x.symbology == "Code128"}
                        curve.ms[n].append((time.perf_counter() - t0) * 1000)
                        cell = curve.read[n][(m, s)]
                        cell[0] += payload in texts
                        cell[1] += 1
                        curve.misread[n][(m, s)] += bool(texts - {payload})
                        curve.false_cards[n][(m, s)] += any(isinstance(identify(t, "Code128"), Card) for t in texts - {payload})
            for j in range(negatives):
                for kind in NEGATIVES:
                    rng = np.random.default_rng([seed, mi, ai, 1000 + j, NEGATIVES.index(kind)])
                    card, _text = negative_card(kind, rng)
                    state = rng.bit_generator.state
                    for s in smears:
                        rng.bit_generator.state = state
                        frame = shoot(card, m, angle, s, rng)
                        curve.negative_frames += 1
                        for n in names:
                            symbols = decode[n](frame)
                            curve.false_cards[n][(m, s)] += any(isinstance(identify(x.text, x.symbology), Card) for x in symbols)
    return curve


def smear_read(rates: dict[float, float], level: float = 0.9) -> float | None:
    """The longest smear up to which every smear reads at least ``level``, linearly interpolated
    towards the first smear below it; None if the shortest smear does not reach it.

    >>> smear_read({0.0: 1.0, 1.0: 1.0, 2.0: 1.0, 3.0: 0.5, 4.0: 1.0})
    2.2
    >>> smear_read({0.0: 1.0, 1.0: 0.9}), smear_read({0.0: 0.5, 1.0: 1.0})
    (1.0, None)
    """
    smears = sorted(rates)
    if rates[smears[0]] < level:
        return None
    for lo, hi in zip(smears, smears[1:], strict=False):
        if rates[hi] < level:
            r_lo, r_hi = rates[lo], rates[hi]
            return round(lo + (hi - lo) * (r_lo - level) / (r_lo - r_hi), 6)
    return smears[-1]


def fastest_speed_mm_s(smear_modules: float, exposure_us: float, module_mm: float = CARD_MODULE_MM) -> float:
    """The card speed that smears ``smear_modules`` in one exposure: smear x module / exposure.

    >>> fastest_speed_mm_s(2.0, 1000)   # 2 modules of 0.42 mm in 1 ms
    840.0
    """
    return smear_modules * module_mm / (exposure_us / 1_000_000)


def exposures_us(camera) -> tuple[tuple[int, str], ...]:
    """The exposures to give the speed for, with where each comes from, from a ``[camera]`` section."""
    if camera.exposure == "short":
        return ((camera.max_exposure_us, 'camera.max_exposure_us (camera.exposure = "short")'),)
    return (
        (AUTO_EXPOSURES_US[0], 'camera.exposure = "short" at its default max_exposure_us'),
        (AUTO_EXPOSURES_US[1], 'about what camera.exposure = "auto" picks indoors'),
    )


def report(
    out: TextIO,
    modules=MODULES,
    smears=SMEARS,
    angles=ANGLES,
    per_cell: int = 4,
    negatives: int = 1,
    seed: int = 1,
    exposures: tuple[tuple[int, str], ...] = (),
) -> None:
    from device.tools.bench.decode import machine

    curve = measure(modules, smears, angles, per_cell, negatives, seed)
    names = curve.names
    out.write(f"machine: {machine()}\n")
    out.write(
        f"cards per cell, smeared along the code's axis: {resolution.shots(per_cell * len(angles), angles, seed)}; negatives per "
        f"cell: {negatives * len(NEGATIVES) * len(angles)} ({', '.join(NEGATIVES)})\n\n"
    )
    out.write("| px per module | smear (modules) | smear (px) | frame | " + " | ".join(names) + " | misreads | false cards |\n")
    out.write("|---:|---:|---:|---|" + "---:|" * len(names) + "---:|---:|\n")
    for m in modules:
        w, h = frame_for(m)
        for s in smears:
            cells = " | ".join(f"{curve.rates(n, m)[s]:.0%}" for n in names)
            bad = " / ".join(str(curve.misread[n][(m, s)]) for n in names)
            false = " / ".join(str(curve.false_cards[n][(m, s)]) for n in names)
            out.write(f"| {m:g} | {s:g} | {s * m:.1f} | {w}x{h} | {cells} | {bad} | {false} |\n")
    limits = {m: [smear_read(curve.rates(n, m)) for n in names] for m in modules}
    for m in modules:
        cells = " | ".join("-" if v is None else f"**{v:.2f}**" for v in limits[m])
        out.write(f"| {m:g} | **read at 90% up to** | | | {cells} | | |\n")
    out.write("| | median ms per frame | | | " + " | ".join(f"{statistics.median(curve.ms[n]):.1f}" for n in names) + " | | |\n")
    out.write(f"\nmisreads and false cards: per reader ({' / '.join(names)}); {curve.negative_frames} negative frames in all\n")
    if exposures:
        out.write(f"\nfastest card speed read (smear read at 90% x {CARD_MODULE_MM} mm / exposure), the pipeline:\n\n")
        out.write("| exposure | from | " + " | ".join(f"{m:g} px/module" for m in modules) + " |\n")
        out.write("|---:|---|" + "---:|" * len(modules) + "\n")
        for exposure, source in exposures:
            speeds = []
            for m in modules:
                limit = limits[m][names.index("pipeline")]
                speeds.append("-" if limit is None else f"{fastest_speed_mm_s(limit, exposure) / 10:.1f} cm/s")
            out.write(f"| {exposure} us | {source} | " + " | ".join(speeds) + " |\n")


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``kiosk bench motion``."""
    p.add_argument(
        "--modules", type=lambda t: _floats(t, 0.5), default=MODULES, metavar="PX,...", help="module sizes in frame pixels (default 2,2.8)"
    )
    p.add_argument("--smears", type=_floats, default=SMEARS, metavar="MODULES,...", help="smear lengths in modules (default 0,1,2,3,4,5)")
    resolution.add_cell_arguments(p, "module size, smear and angle", per_cell=4)
    p.add_argument(
        "--exposure-us",
        type=lambda t: _floats(t, 1.0),
        metavar="US,...",
        help="exposures to give the fastest card speed for (default: from the configuration's camera.exposure)",
    )
    p.add_argument("--config", metavar="PATH", help="kiosk config whose [camera] exposure to use (default: built-in defaults)")


def main(args, out: TextIO = sys.stdout) -> int:
    """``kiosk bench motion``: print the curve and the speeds; 0 on success, 2 for bad arguments."""
    from device.config import load

    if args.per_cell < 1 or args.negatives < 0:
        out.write("kiosk bench motion: --per-cell must be >= 1 and --negatives >= 0\n")
        return 2
    if args.exposure_us:
        exposures = tuple((round(e), "--exposure-us") for e in args.exposure_us)
    else:
        exposures = exposures_us(load(args.config).camera)
    report(out, tuple(sorted(args.modules)), tuple(sorted(args.smears)), args.angles, args.per_cell, args.negatives, args.seed, exposures)
    return 0
