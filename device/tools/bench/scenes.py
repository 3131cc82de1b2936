"""Synthetic counter scenes: how often the kiosk pipeline reads a card, against the raw decoders.

``count`` random scenes (seeded; see :mod:`device.tools.synth.scene` for the camera model) each show one
client card; every reader gets the same images. A scene counts as read by a reader when the
card's payload is among the symbols it decoded; a decoded Code 128 that is not the payload is a
misread. Read rates come overall and by condition bucket (angle, size, blur, light, ...), with
median milliseconds per image, side by side in one run::

    kiosk bench scenes --count 200 --seed 1
    kiosk bench scenes --videos 3          # also: presentation videos, frames to first read

For presentation videos, :func:`score_presentations` turns per-frame reads into "identified or
not, and how many frames after the card entered the view".
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import cv2
import numpy as np

from device.card import CARD_V1, Card, identify
from device.tools.synth.card import render_card
from device.tools.synth.scene import Conditions, fit_in_view, render_scene

#: Symbologies every reader is restricted to: the kiosk's default (client cards are Code 128).
SYMBOLOGIES = ("Code128",)

_NAMES = ("Jana Ozola", "Peteris Kalnins", "Anna Berzina", "Maris Liepa", "Ilze Krumina", "Olga Ivanova")
_STREETS = ("Brivibas iela", "Valdemara iela", "Lacplesa iela", "Dzirnavu iela", "Maskavas iela")

Reader = Callable[[np.ndarray], list]  # BGR image -> symbols with .format and .text


@dataclass(frozen=True)
class SyntheticScene:
    """One benchmark scene: the frame (BGR), the card's payload, and how it was shot."""

    index: int
    image: np.ndarray
    payload: str
    conditions: Conditions


def make_scenes(
    count: int, seed: int = 1, difficulty: float = 0.5, size: tuple[int, int] = (1280, 720), card_width: tuple[float, float] | None = None
) -> Iterator[SyntheticScene]:
    """``count`` scenes, each a different client card; scene ``i`` depends only on (seed, i).

    ``card_width``: the card's width as a share of the frame's, drawn uniformly from this range
    (the camera's distance; default: as :meth:`Conditions.random` draws it, 20-50%).
    """
    for i in range(count):
        rng = np.random.default_rng([seed, i])
        contract = "".join(str(d) for d in rng.integers(0, 10, 10))
        if int(contract) == 0:
            contract = "0000000001"
        issue = int(rng.integers(1, 6))
        card = render_card(
            contract, issue, name=str(rng.choice(_NAMES)), address=f"{rng.choice(_STREETS)} {int(rng.integers(1, 99))}, Riga"
        )
        conditions = Conditions.random(rng, difficulty, size)
        if card_width is not None:
            frac = float(rng.uniform(*card_width))
            conditions = fit_in_view(dataclasses.replace(conditions, card_width_frac=frac), rng, size)
        yield SyntheticScene(i, render_scene(card, conditions, size, rng), CARD_V1.encode(contract, issue), conditions)


def rectified_reference(scene: SyntheticScene) -> list:
    """zxing-cpp on the card cut out of the frame with the *true* geometry (1x-3x, upright).

    Not a reader a kiosk can have (it knows where the card is): a reference for how much of the
    barcode the camera model left readable at all, so that misses can be told apart into "the
    pipeline's fault" and "gone in the image".
    """
    from device.tools.synth.card import card_size_px
    from device.tools.synth.scene import card_quad
    from device.vision.decoders import make_decoder

    cw, ch = card_size_px(300)
    h, w = scene.image.shape[:2]
    quad = card_quad((cw, ch), scene.conditions, (w, h)).astype(np.float32)
    decoder = make_decoder("zxing-cpp", SYMBOLOGIES)
    width = float(np.linalg.norm(quad[1] - quad[0]))
    symbols: list = []
    for scale, interpolation in ((1.0, cv2.INTER_LINEAR), (1.5, cv2.INTER_CUBIC), (2.0, cv2.INTER_CUBIC), (3.0, cv2.INTER_CUBIC)):
        out_w = max(int(scale * width), 8)
        out_h = max(int(out_w * ch / cw), 8)
        m = cv2.getPerspectiveTransform(quad, np.float32([[0, 0], [out_w, 0], [out_w, out_h], [0, out_h]]))
        card = cv2.warpPerspective(scene.image, m, (out_w, out_h), flags=interpolation)
        symbols = decoder.decode(cv2.cvtColor(card, cv2.COLOR_BGR2GRAY))
        if any(s.text == scene.payload for s in symbols):
            break
    return symbols


#: Name of the reference column (see :func:`rectified_reference`).
REFERENCE = "reference: true geometry"


def default_readers(decoder: str = "zxing-cpp") -> dict[str, Reader]:
    """The kiosk pipeline (no gate: every scene is a new still image) and the raw decoders."""
    from device.vision.decoders import as_grey, make_decoder
    from device.vision.scanner import Scanner

    scanner = Scanner(decoder=decoder, symbologies=SYMBOLOGIES)
    before = Scanner(decoder=decoder, symbologies=SYMBOLOGIES, card_formats=(), code128_fit=False)
    raw_zxing = make_decoder("zxing-cpp", SYMBOLOGIES)
    raw_zbar = make_decoder("pyzbar", SYMBOLOGIES)
    return {
        f"kiosk pipeline ({decoder})": scanner.decode,
        "pipeline without card decoder": before.decode,
        "raw zxing-cpp": lambda image: raw_zxing.decode(as_grey(image)),
        "raw pyzbar": lambda image: raw_zbar.decode(as_grey(image)),
    }


@dataclass
class ReaderTally:
    """Counts for one reader over the scenes."""

    read: int = 0
    misread: int = 0
    false_card: int = 0
    scenes: int = 0
    ms: list | None = None
    cpu_ms: list | None = None

    def __post_init__(self) -> None:
        self.ms = [] if self.ms is None else self.ms
        self.cpu_ms = [] if self.cpu_ms is None else self.cpu_ms


@dataclass
class SceneResults:
    """Per reader: overall tally, and tallies by (bucket name, bucket value)."""

    readers: list[str]
    overall: dict[str, ReaderTally]
    by_bucket: dict[tuple[str, str], dict[str, ReaderTally]]

    def rate(self, reader: str) -> float:
        t = self.overall[reader]
        return t.read / t.scenes if t.scenes else 0.0


def run_scenes(scenes: Iterable[SyntheticScene], readers: dict[str, Reader], reference: bool = False) -> SceneResults:
    """Give every scene to every reader; tally reads, misreads and time.

    ``reference`` adds the :func:`rectified_reference` column (not timed against the others).
    """
    names = list(readers) + ([REFERENCE] if reference else [])
    overall = {n: ReaderTally() for n in names}
    by_bucket: dict[tuple[str, str], dict[str, ReaderTally]] = defaultdict(lambda: {n: ReaderTally() for n in names})
    for scene in scenes:
        buckets = scene.conditions.buckets().items()
        for name in names:
            t0, c0 = time.perf_counter(), time.process_time()
            symbols = rectified_reference(scene) if name == REFERENCE else readers[name](scene.image)
            ms = (time.perf_counter() - t0) * 1000
            cpu_ms = (time.process_time() - c0) * 1000
            texts = {s.text for s in symbols if s.symbology == "Code128"}
            hit = scene.payload in texts
            wrong = texts - {scene.payload}
            false_card = any(isinstance(identify(t, "Code128"), Card) for t in wrong)
            for tally in [overall[name]] + [by_bucket[b][name] for b in buckets]:
                tally.scenes += 1
                tally.read += hit
                tally.misread += bool(wrong)
                tally.false_card += false_card
            overall[name].ms.append(ms)
            overall[name].cpu_ms.append(cpu_ms)
    return SceneResults(names, overall, dict(by_bucket))


def report(results: SceneResults, out: TextIO) -> None:
    """Print the overall table and the by-condition table (markdown, ready for the docs)."""
    names = results.readers
    out.write("| reader | cards read | read rate | misreads | false cards | median ms/image | median CPU ms/image |\n")
    out.write("|---|---:|---:|---:|---:|---:|---:|\n")
    for n in names:
        t = results.overall[n]
        med = f"{statistics.median(t.ms):.1f}" if t.ms and n != REFERENCE else "-"
        cpu = f"{statistics.median(t.cpu_ms):.1f}" if t.cpu_ms and n != REFERENCE else "-"
        out.write(f"| {n} | {t.read}/{t.scenes} | {results.rate(n):.1%} | {t.misread} | {t.false_card} | {med} | {cpu} |\n")
    raw = [n for n in names if n.startswith("raw")]
    pipe = [n for n in names if not n.startswith("raw") and n != REFERENCE]
    if raw and pipe:
        best = max(results.rate(n) for n in raw)
        ratio = results.rate(pipe[0]) / best if best > 0 else float("inf")
        out.write(f"\npipeline read rate / best raw decoder's: {ratio:.2f}x\n")
    out.write("\nRead rate by condition (scenes in bucket; " + ", ".join(names) + "):\n\n")
    out.write("| condition | bucket | scenes | " + " | ".join(names) + " |\n")
    out.write("|---|---|---:|" + "---:|" * len(names) + "\n")
    for cond, value in sorted(results.by_bucket, key=_bucket_order):
        row = results.by_bucket[(cond, value)]
        n0 = row[names[0]].scenes
        cells = " | ".join(f"{row[n].read / row[n].scenes:.0%}" for n in names)
        out.write(f"| {cond} | {value} | {n0} | {cells} |\n")


def _bucket_order(key: tuple[str, str]) -> tuple:
    cond, value = key
    order = ["angle", "size", "tilt", "focus blur", "motion blur", "light", "glare", "jpeg"]
    rank = order.index(cond) if cond in order else len(order)
    # Bucket values start with their lower bound ("<25", "10-30", ">=45"): sort by it.
    v = value.split()[0].lstrip("<>=")
    try:
        first = float(v.split("-")[0]) if not value.startswith("<") else -1.0
    except ValueError:
        first = 0.0 if value.startswith("no") else 1.0
    return rank, first, value


# --- presentation videos -------------------------------------------------------------------------


@dataclass(frozen=True)
class PresentationScore:
    """How the pipeline did on one presentation of a video.

    ``identified``: the card's payload was read between entering and leaving the view (for a
    non-card: always False, and ``false_card`` says whether some card was identified meanwhile).
    ``frames_to_read``: frames from the card entering the view to its first read (None if never).
    """

    payload: str
    is_card: bool
    identified: bool
    first_read_frame: int | None
    frames_to_read: int | None
    false_card: bool


def score_presentations(truths, reads: Iterable[tuple[int, str, str]]) -> list[PresentationScore]:
    """Match per-frame reads ``(frame, format, text)`` to presentations ``truths`` (PresentationTruth).

    A read counts for the presentation whose [enter_frame, left_frame) span holds its frame.
    """
    by_frame: dict[int, list[tuple[str, str]]] = defaultdict(list)
    for frame, fmt, text in reads:
        by_frame[frame].append((fmt, text))
    scores = []
    for t in truths:
        first = None
        false_card = False
        for f in range(t.enter_frame, t.left_frame):
            for fmt, text in by_frame.get(f, ()):
                card = isinstance(identify(text, fmt), Card)
                if text == t.payload and fmt == t.symbology and t.is_card and first is None:
                    first = f
                elif card and text != t.payload:
                    false_card = True
                elif card and not t.is_card:
                    false_card = True
        scores.append(
            PresentationScore(t.payload, t.is_card, first is not None, first, None if first is None else first - t.enter_frame, false_card)
        )
    return scores


def scan_video(path: str | Path, decoder: str = "zxing-cpp") -> Iterator[tuple[int, str, str]]:
    """Run the kiosk's scanner (gate included, as in the daemon) on every frame of a video file."""
    from device.vision.scanner import Scanner

    scanner = Scanner(decoder=decoder, symbologies=("Code128", "EAN13"))
    cap = cv2.VideoCapture(str(path))
    fps = cap.get(cv2.CAP_PROP_FPS) or 15.0
    index = 0
    try:
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            for s in scanner.scan(frame, index / fps).symbols:
                yield index, s.symbology, s.text
            index += 1
    finally:
        cap.release()


def run_videos(count: int, seed: int, out: TextIO, decoder: str = "zxing-cpp") -> list[PresentationScore]:
    """Write ``count`` presentation videos to a temporary folder, scan them, print the scores."""
    from device.tools.synth.video import default_presentations, write_presentation_video

    scores: list[PresentationScore] = []
    with tempfile.TemporaryDirectory() as tmp:
        for v in range(count):
            path = Path(tmp) / f"counter-{v}.avi"
            truths = write_presentation_video(path, default_presentations(), seed=seed * 1000 + v)
            scores += score_presentations(truths, scan_video(path, decoder))
    cards = [s for s in scores if s.is_card]
    found = [s for s in cards if s.identified]
    delays = [s.frames_to_read for s in found]
    out.write(
        f"\npresentation videos: {count}, presentations with a card: {len(cards)}, "
        f"identified: {len(found)}/{len(cards)}, other objects: {len(scores) - len(cards)}, "
        f"presentations with a wrong card identified: {sum(s.false_card for s in scores)}\n"
    )
    if delays:
        out.write(
            f"frames from the card entering the view to its first read: median {statistics.median(delays):g}, "
            f"max {max(delays)} (all: {sorted(delays)})\n"
        )
    return scores


# --- command line -------------------------------------------------------------------------------


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``kiosk bench scenes``."""
    p.add_argument("--count", type=int, default=200, help="number of random scenes (default 200)")
    p.add_argument("--seed", type=int, default=1, help="seed of the scenes (default 1); same seed, same scenes")
    p.add_argument("--difficulty", type=float, default=0.5, help="0 = easy, 0.5 = a typical counter (default), 1 = a bad day")
    p.add_argument("--decoder", default="zxing-cpp", help="the pipeline's decoder (default zxing-cpp)")
    p.add_argument("--size", type=_size, default=(1280, 720), metavar="WxH", help="frame size (default 1280x720)")
    p.add_argument(
        "--card-width",
        type=_range,
        default=None,
        metavar="MIN,MAX",
        help="card width as a share of the frame's, drawn uniformly (e.g. 0.35,0.8; default: 0.2-0.5 by distance)",
    )
    p.add_argument(
        "--videos", type=int, default=0, help="also render this many presentation videos and score frames-to-first-read (default 0)"
    )
    p.add_argument(
        "--no-reference", action="store_true", help="leave out the reference column (zxing-cpp on the card cut out with the true geometry)"
    )
    p.add_argument("--save", metavar="DIR", help="also write the scenes as DIR/NNNN.png + .txt (the layout `kiosk bench decode` reads)")


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT like 640x480, got {text!r}") from None
    if not (64 <= w <= 8192 and 64 <= h <= 8192):
        raise argparse.ArgumentTypeError(f"frame size must be 64-8192 pixels each way, got {text!r}")
    return w, h


def _range(text: str) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected MIN,MAX like 0.35,0.8, got {text!r}") from None
    if not 0.05 <= lo <= hi <= 0.95:
        raise argparse.ArgumentTypeError(f"card width shares must be 0.05 <= MIN <= MAX <= 0.95, got {text!r}")
    return lo, hi


def _width_text(card_width: tuple[float, float] | None) -> str:
    return "by distance (20-50%)" if card_width is None else f"{card_width[0]:.0%}-{card_width[1]:.0%}"


def main(args, out: TextIO = sys.stdout) -> int:
    """``kiosk bench scenes``: print the tables; 0 on success, 2 for bad arguments."""
    if args.count < 0 or args.videos < 0:
        out.write("kiosk bench scenes: --count and --videos must be >= 0\n")
        return 2
    readers = default_readers(args.decoder)
    save = Path(args.save) if args.save else None
    if save:
        save.mkdir(parents=True, exist_ok=True)

    def scenes() -> Iterator[SyntheticScene]:
        for scene in make_scenes(args.count, args.seed, args.difficulty, args.size, args.card_width):
            if save:
                cv2.imwrite(str(save / f"{scene.index:04d}.png"), scene.image)  # lossless: the scene is as rendered
                (save / f"{scene.index:04d}.txt").write_text(scene.payload, encoding="utf-8")
            yield scene

    if args.count:
        out.write(
            f"synthetic counter scenes: {args.count}, seed {args.seed}, difficulty {args.difficulty:g}, "
            f"{args.size[0]}x{args.size[1]}, card width {_width_text(args.card_width)}, symbologies {', '.join(SYMBOLOGIES)}\n\n"
        )
        report(run_scenes(scenes(), readers, reference=not args.no_reference), out)
    if args.videos:
        run_videos(args.videos, args.seed, out, args.decoder)
    return 0


if __name__ == "__main__":  # python -m device.tools.bench.scenes
    parser = argparse.ArgumentParser(prog="kiosk bench scenes", description=__doc__.split("\n")[0])
    add_arguments(parser)
    sys.exit(main(parser.parse_args()))
