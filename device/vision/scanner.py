"""The scanner: gate, locate and decode, in the order the daemon runs them.

``Scanner.scan`` is for the camera loop (the gate decides whether the frame is decoded at all);
``Scanner.decode`` is for still images and ``kiosk scan`` (always decodes)::

    scanner = Scanner(decoder="zxing-cpp", symbologies=("Code128",), full_look_interval_s=1.0)
    result = scanner.scan(frame.image, frame.monotonic)
    for symbol in result.symbols:
        card = identify(symbol.text, symbol.symbology)

How a frame is decoded: each region :class:`~device.vision.locate.Locator` finds, cut out
upright, unless a symbol already read lies inside it. The decoders' own checks (Code 128's check
character, EAN's check digit) are the only ones applied there: nothing is guessed, so a region
that does not decode adds nothing. A region no decoder read goes to
:class:`~device.vision.card_decoder.CardDecoder`, which reads only the enabled card formats'
Code 128 (down to about 1 px per module, where the decoders need 1.5-2) and only when both the
code's and the card's checks pass with a clear margin. Only when no region read anything: the
whole frame (codes the locator does not take for bars); then, on a frame whose view changed
(a card moving: the gate's reasons :data:`MOVING`; always for still images), the card decoder's
smear model on the candidates cut again looking for smeared bars too (a card moved along its
code while the shutter was open, several modules: the bars are a box filter's average of
themselves); then :class:`~device.vision.code128_fit.Code128Fit` on the regions, which reads
Code 128 of any text as the card decoder does (following a perspective or a bend along the
code) when its check passes with a clearer margin, plainly and then, on such a frame, with its
smear model. Cheapest first: a frame with a card read plainly pays for none of them. Symbols
are deduplicated by (format, text).

Bad input: ``None``, non-arrays, non-uint8 arrays, zero-size arrays and shapes other than
H x W, H x W x 1, H x W x 3 (BGR) or H x W x 4 (BGRA) raise ``ValueError`` with a message for
the log; the caller skips the frame and goes on. Tiny but valid frames decode to nothing.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np

from device.config import DEFAULTS, ScanSection
from device.vision import Symbol
from device.vision.card_decoder import CardDecoder, CardRead, layouts_for
from device.vision.code128_fit import Code128Fit
from device.vision.decoders import (
    DEFAULT_SYMBOLOGIES,
    Decoder,
    as_grey,
    check_image,
    make_decoder,
)
from device.vision.figures import code_figures
from device.vision.gate import Gate
from device.vision.locate import Candidate, Locator, Region

#: The gate's reasons (:data:`device.vision.gate.REASONS`) for a frame whose view just changed:
#: only such a frame can show a card smeared by its motion.
MOVING = ("change", "settle")
#: Bar edges a region must count along its middle to be fitted with a smear model (see
#: :func:`_smeared_regions`).
SMEARED_CARD_EDGES = 36


@dataclass(frozen=True)
class ScanResult:
    """What one camera frame gave.

    ``decoded`` is False when the gate skipped the frame (then ``symbols`` is empty);
    ``reason`` is the gate's reason (see :data:`device.vision.gate.REASONS`). ``regions`` is
    how many located regions were decoded; times are in milliseconds.
    """

    symbols: list[Symbol] = field(default_factory=list)
    decoded: bool = False
    reason: str = "skip"
    regions: int = 0
    gate_ms: float = 0.0
    decode_ms: float = 0.0


class Scanner:
    """Gate + locate + decode. Not thread-safe: one scanner per camera loop.

    ``decoder``: "zxing-cpp" or "pyzbar" (:data:`device.vision.decoders.DECODERS`).
    ``symbologies``: zxing-cpp names (:data:`device.vision.decoders.SYMBOLOGIES`).
    ``full_look_interval_s``, ``settle_s``, ``change_threshold``, ``quiet_look_every``: see
    :class:`~device.vision.gate.Gate` (``change_threshold`` is its ``changed_fraction``).
    ``locate``: False decodes whole frames only (level cards only; for comparison).
    ``max_regions``: located regions decoded per frame, at most.
    ``work_size``: the locator's gradient resolution (long side, pixels); lower it to save CPU
    above 1280x720 when cards are small in the view.
    ``card_formats``: the card formats (:mod:`device.card`) the card decoder reads in regions the
    decoder could not (default: the default formats; empty: no card decoder). Only with Code 128
    among the symbologies. ``code128_fit``: after both, whether
    :class:`~device.vision.code128_fit.Code128Fit` reads any Code 128 text in the regions still
    unread (only with Code 128 among the symbologies; False: for comparison). ``smear_model``:
    whether those two also fit a motion smear along the code when the plain fit does not read
    (False: for comparison). ``ignore``: a place in the view, as (x, y, w, h) fractions of the
    frame, whose codes are not read (the camera check's reference target, ``camera.target_region``).
    A symbol read from a located region carries its :class:`~device.vision.CodeFigures` (pixels
    per module, edge width).

    >>> scanner = Scanner(symbologies=("Code128",))
    >>> scanner.decode(np.full((480, 640), 255, np.uint8))
    []
    """

    def __init__(
        self,
        decoder: str = DEFAULTS.scan.decoder,
        symbologies: Sequence[str] = DEFAULT_SYMBOLOGIES,
        *,
        full_look_interval_s: float = DEFAULTS.scan.full_look_interval_s,
        settle_s: float = DEFAULTS.scan.settle_s,
        change_threshold: float = DEFAULTS.scan.change_threshold,
        quiet_look_every: int = DEFAULTS.scan.quiet_look_every,
        locate: bool = True,
        max_regions: int = DEFAULTS.scan.max_regions,
        work_size: int = DEFAULTS.scan.work_size,
        card_formats: Sequence | None = None,
        code128_fit: bool = True,
        ignore: tuple[float, float, float, float] | None = None,
        smear_model: bool = True,
    ) -> None:
        self.ignore = ignore
        self.decoder: Decoder = make_decoder(decoder, symbologies)
        self.region_decoder: Decoder = make_decoder(decoder, symbologies, upright=True)
        if card_formats is None:
            from device.card import FORMATS as card_formats
        layouts = layouts_for(card_formats) if "Code128" in self.decoder.symbologies else []
        self.card_decoder = CardDecoder(layouts, smear=smear_model) if layouts and locate else None
        self.code128_fit = Code128Fit(smear=smear_model) if code128_fit and "Code128" in self.decoder.symbologies and locate else None
        self.gate = Gate(
            full_look_interval_s=full_look_interval_s,
            settle_s=settle_s,
            changed_fraction=change_threshold,
            quiet_look_every=quiet_look_every,
        )
        self.locator = Locator(max_regions=max_regions, work_size=work_size) if locate else None

    @classmethod
    def from_config(cls, section: ScanSection, ignore: tuple[float, float, float, float] | None = None) -> Scanner:
        """The scanner as the ``[scan]`` section configures it (the daemon's, ``kiosk scan``'s), not reading at ``ignore``."""
        from device.card import formats_named

        return cls(
            decoder=section.decoder,
            symbologies=tuple(section.symbologies),
            full_look_interval_s=section.full_look_interval_s,
            settle_s=section.settle_s,
            change_threshold=section.change_threshold,
            quiet_look_every=section.quiet_look_every,
            max_regions=section.max_regions,
            work_size=section.work_size,
            card_formats=formats_named(section.card_formats),
            ignore=ignore,
        )

    def scan(self, image: np.ndarray, monotonic: float) -> ScanResult:
        """Gate the frame, and decode it if the gate lets it through. ``ValueError`` for non-images."""
        check_image(image)
        t0 = time.perf_counter()
        decision = self.gate.check(image, monotonic)
        t1 = time.perf_counter()
        if not decision.decode:
            return ScanResult(decoded=False, reason=decision.reason, gate_ms=(t1 - t0) * 1000)
        # Only a card that moves is smeared, and only a view that changed shows one moving: a
        # still view (a full look at an idle counter) does not pay for the smear model.
        symbols, regions = self._decode(as_grey(image), smear=decision.reason in MOVING)
        t2 = time.perf_counter()
        return ScanResult(symbols, True, decision.reason, regions, (t1 - t0) * 1000, (t2 - t1) * 1000)

    def decode(self, image: np.ndarray) -> list[Symbol]:
        """All symbols in one image, no gate. ``ValueError`` for non-images."""
        check_image(image)
        return self._decode(as_grey(image))[0]

    def _decode(self, grey: np.ndarray, smear: bool = True) -> tuple[list[Symbol], int]:
        if min(grey.shape) < 8:
            return [], 0
        found: dict[tuple[str, str], Symbol] = {}
        cut: list[Region] = []
        ignored = _ignored(self.ignore, grey.shape)
        candidates = [] if self.locator is None else [c for c in self.locator.candidates(grey) if not ignored(c.centre)]
        if self.locator is not None:
            for candidate in candidates:
                # A symbol already read across this place (the same code found again in a
                # neighbouring orientation band): do not pay for the cut (about 2 ms at 1280x720).
                if any(s.quad and _covers(s.quad, candidate) for s in found.values()):
                    continue
                region = candidate.cut()
                if region is None or any(s.quad and region.contains(_centre(s.quad)) for s in found.values()):
                    continue
                cut.append(region)
                symbols = self._decode_region(region)
                figures = code_figures(region) if symbols else None
                for symbol in symbols:
                    key = (symbol.symbology, symbol.text)
                    if key not in found:
                        found[key] = Symbol(symbol.symbology, symbol.text, symbol.decoder, region.to_frame(symbol.quad), figures)
        if not found:
            # Nothing located read: the whole frame, for codes the locator does not take for
            # bars (a code filling the view, a damaged one). Last, not first: a frame with a
            # card is read from its region, and the whole frame costs about as much again as
            # reading the region (1.7 ms at 640x480, 2.9 ms at 1280x720).
            for symbol in self.decoder.decode(grey):
                if symbol.quad and ignored(_centre(symbol.quad)):
                    continue
                # A read that covers only part of the bars of a region around it is a fragment
                # misread (ITF has no checksum: any few bars of it decode); the region decided.
                inside = [r for r in cut if symbol.quad and r.contains(_centre(symbol.quad))]
                if not any(not _explains(_to_crop(symbol, r), r, 0.0) for r in inside):
                    found.setdefault((symbol.symbology, symbol.text), symbol)
        if not found and self.card_decoder is not None and smear:
            for symbol in self._smeared_cards(candidates):
                found[(symbol.symbology, symbol.text)] = symbol
        if not found and self.code128_fit is not None:
            for symbol in self._fit_regions(cut, candidates if smear else []):
                found[(symbol.symbology, symbol.text)] = symbol
        return _one_code_per_place(list(found.values())), len(cut)

    def _decode_region(self, region: Region) -> list[Symbol]:
        """Symbols read from an upright crop, trying the views of :func:`region_views` in turn."""
        for view in region_views(region.image):
            symbols = []
            for symbol in self.region_decoder.decode(view.image):
                if symbol.quad and view.x_scale != 1.0:
                    quad = tuple((x / view.x_scale, y) for x, y in symbol.quad)
                    symbol = Symbol(symbol.symbology, symbol.text, symbol.decoder, quad)
                if _explains(symbol, region, view.min_rows):
                    symbols.append(symbol)
            if symbols:
                return symbols
        if self.card_decoder is not None:
            read = self.card_decoder.decode(region.image, region.bars)
            if read is not None:
                (x0, x1), h = read.x_range, float(region.image.shape[0])
                return [Symbol("Code128", read.text, "card-decoder", ((x0, 0.0), (x1, 0.0), (x1, h), (x0, h)))]
        return []

    def _smeared_cards(self, candidates: list[Candidate]) -> list[Symbol]:
        """A card smeared by motion in a frame nothing else read: the candidates cut again
        looking for smeared bars too, and the card decoder with its smear model (several times
        the plain fit's cost). Only on frames where every plain reader found nothing, so a frame
        with a card read plainly pays nothing for it."""
        if not self.card_decoder.smear:
            return []
        for region in _smeared_regions(candidates, 2):
            read = self.card_decoder.decode(_linear(region), region.bars, smeared=True)
            if read is not None:
                return [_region_symbol(region, read, "card-decoder")]
        return []

    def _fit_regions(self, cut: list[Region], candidates: list[Candidate]) -> list[Symbol]:
        """Any Code 128 text in the regions nothing else read, by the general fit: the costliest
        reader (several ms a region that is no code), so it runs only on frames where every
        other reader found nothing, and a frame with a card pays nothing for it. Plainly first
        in every region, then with its smear model in the regions cut looking for smeared bars."""
        for region in cut:
            read = self.code128_fit.decode(region.image, region.bars)
            if read is not None:
                return [_region_symbol(region, read, "code128-fit")]
        if self.code128_fit.smear:
            for region in _smeared_regions(candidates, 1):
                read = self.code128_fit.decode(_linear(region), region.bars, smeared=True)
                if read is not None:
                    return [_region_symbol(region, read, "code128-fit")]
        return []


def _smeared_regions(candidates: list[Candidate], most: int) -> list[Region]:
    """The candidates cut out looking for smeared bars too (:meth:`Candidate.cut`), the ``most``
    that count the most bar edges along their middle, and only those with a card's share of them.

    The smear fits cost several milliseconds a region; a frame whose view changed without a card
    (a hand, a sleeve, papers moved) has a few regions of text and edges, most with under 30 bar
    edges, while a card's code smeared by up to 5 modules still shows 37-67 (of 80 sharp)."""
    regions = [r for r in (c.cut(smeared=True) for c in candidates) if r is not None and r.edges >= SMEARED_CARD_EDGES]
    return sorted(regions, key=lambda r: -r.edges)[:most]


def _linear(region: Region) -> np.ndarray:
    """The region's crop as the light fell on it (not stretched and clipped): what a fit of a
    smear model explains."""
    return region.image if region.linear is None else region.linear


def _region_symbol(region: Region, read: CardRead, decoder: str) -> Symbol:
    """A fit's read in a region's crop as a symbol in the frame."""
    (x0, x1), h = read.x_range, float(region.image.shape[0])
    return Symbol("Code128", read.text, decoder, region.to_frame(((x0, 0.0), (x1, 0.0), (x1, h), (x0, h))), code_figures(region))


@dataclass(frozen=True)
class View:
    """One version of a region's crop for the decoder: the image, its width relative to the
    crop's, and the share of its rows a read must span to count (see :func:`_explains`)."""

    image: np.ndarray
    x_scale: float = 1.0
    min_rows: float = 0.0


def region_views(crop: np.ndarray):
    """Versions of an upright, level-stretched crop for the decoder to try, best first.

    1. Smoothed along the bars (noise and JPEG blocks average out, the bars do not) and
       sharpened across them (blur from focus or motion narrows thin spaces and bars until a
       local-threshold binarizer loses them; an unsharp mask gives their contrast back).
    2. The crop as it is: sharpening overshoots on codes that were sharp already.
    3. View 1 thresholded at mid-grey: the crop's levels are stretched so that bars are near 0
       and spaces near 255, which makes the middle the right threshold even where a
       binarizer's local window would be fooled by a wide bar or a glare patch. Hard
       thresholding turns noise into crisp fake bars, so a read must hold over 10% of the rows.
    4. View 1 narrowed to 0.7 of its width: decoders are oddly sensitive to the exact module
       size (their edge and width quantisation), and a code that just fails at one scale often
       reads at another.

    Later views cost only when the earlier ones read nothing.
    """
    smooth = cv2.blur(crop, (1, 5))
    blurred = cv2.GaussianBlur(smooth, (0, 0), sigmaX=1.5, sigmaY=0.1)
    sharp = cv2.addWeighted(smooth, 2.0, blurred, -1.0, 0)
    yield View(sharp)
    yield View(crop)
    yield View(cv2.threshold(sharp, 127, 255, cv2.THRESH_BINARY)[1], min_rows=0.1)
    narrow = max(1, round(sharp.shape[1] * 0.7))
    yield View(cv2.resize(sharp, (narrow, sharp.shape[0]), interpolation=cv2.INTER_AREA), x_scale=narrow / sharp.shape[1])


def _explains(symbol: Symbol, region: Region, min_rows: float) -> bool:
    """Whether a symbol read in a region explains the region's bars.

    It must span most of the bars across: a decoder that finds a short code inside a longer
    one's bars (a few bars can pass a one-character checksum by chance) has misread, the real
    code explains all of them. And it must have been read on at least ``min_rows`` of the
    crop's rows (a share, 0..1).
    """
    if not symbol.quad:
        return True
    xs = [p[0] for p in symbol.quad]
    ys = [p[1] for p in symbol.quad]
    lo, hi = region.bars
    wide = hi - lo <= 0 or (max(xs) - min(xs)) >= 0.6 * (hi - lo)
    tall = (max(ys) - min(ys)) >= min_rows * region.image.shape[0]
    return wide and tall


def _ignored(place: tuple[float, float, float, float] | None, shape: tuple[int, ...]):
    """Whether a frame point lies in ``place`` (fractions of a frame of ``shape``): a test per point."""
    if place is None:
        return lambda point: False
    h, w = shape[:2]
    x0, y0, x1, y1 = place[0] * w, place[1] * h, (place[0] + place[2]) * w, (place[1] + place[3]) * h
    return lambda point: x0 <= point[0] <= x1 and y0 <= point[1] <= y1


def _covers(quad, candidate: Candidate) -> bool:
    """Whether a symbol read at ``quad`` (frame pixels) lies on ``candidate``'s bars and spans
    most of them across (as :func:`_explains` asks of a read in the cut-out region)."""
    cos_t, sin_t = math.cos(candidate.theta), math.sin(candidate.theta)
    cx, cy = candidate.centre
    across = [(x - cx) * cos_t + (y - cy) * sin_t for x, y in quad]
    along = [-(x - cx) * sin_t + (y - cy) * cos_t for x, y in quad]
    # Its middle near the candidate's, along the bars within their length (a 1-D read's
    # outline may be one row only), and as wide as most of the bars.
    middle_across, middle_along = sum(across) / len(across), sum(along) / len(along)
    return (
        abs(middle_across) <= 0.25 * candidate.width
        and abs(middle_along) <= 0.5 * candidate.width
        and max(across) - min(across) >= 0.6 * candidate.width
    )


def _one_code_per_place(symbols: list[Symbol]) -> list[Symbol]:
    """Drop misreads: of two different texts of one symbology read at the same place, keep the
    one read over the larger area (more scan rows agreed on it).

    Weak checksums (EAN's mod 10, none for ITF) let a decoder misread a damaged row of a code it
    also reads correctly on other rows; the misread then lies on or right beside the real
    code's outline (a decoder's outline spans the rows it read, not the whole bars). Two
    different codes of one symbology that close together lose the weaker read.
    """
    if len(symbols) < 2:
        return symbols
    hulls = [_hull(s.quad) for s in symbols]
    keep = []
    for i, symbol in enumerate(symbols):
        beaten = False
        for j, other in enumerate(symbols):
            if i == j or other.symbology != symbol.symbology or other.text == symbol.text:
                continue
            if hulls[i] is None or hulls[j] is None:
                continue
            if _near(hulls[j], symbol.quad) and (cv2.contourArea(hulls[j]), j) > (cv2.contourArea(hulls[i]), i):
                beaten = True
                break
        if not beaten:
            keep.append(symbol)
    return keep


def _to_crop(symbol: Symbol, region: Region) -> Symbol:
    """``symbol`` with its frame quad mapped into ``region``'s crop coordinates."""
    forward = cv2.invertAffineTransform(region.affine)
    pts = np.asarray(symbol.quad, dtype=np.float64).reshape(-1, 2) @ forward[:, :2].T + forward[:, 2]
    return Symbol(symbol.symbology, symbol.text, symbol.decoder, tuple(map(tuple, pts)))


def _near(hull: np.ndarray, quad) -> bool:
    """Whether ``quad``'s centre lies within a quarter of the hull's length of the hull."""
    (_, _), (w, h), _ = cv2.minAreaRect(hull)
    distance = cv2.pointPolygonTest(hull, _centre(quad), True)  # > 0 inside
    return distance >= -0.25 * max(w, h)


def _hull(quad) -> np.ndarray | None:
    if not quad or len(quad) < 2:
        return None
    return cv2.convexHull(np.asarray(quad, dtype=np.float32).reshape(-1, 1, 2))


def _centre(quad) -> tuple[float, float]:
    xs = [p[0] for p in quad]
    ys = [p[1] for p in quad]
    return sum(xs) / len(xs), sum(ys) / len(ys)
