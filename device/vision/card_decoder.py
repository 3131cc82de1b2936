"""A Code 128 reader for client cards at the resolution limit, used after the decoders failed.

zxing-cpp and zbar binarize each pixel row and measure bars in whole pixels: below about 1.5 px
per module, blurred, they lose the narrow bars. Here the region is already upright
(:mod:`device.vision.locate`), so:

1. **Profile**: the crop's rows are averaged into one brightness profile across the bars (after
   undoing a residual slant measured between its top and bottom halves): noise and JPEG blocks
   average out, the bars do not.
2. **Geometry**: the symbol's structure is known. A card's Code 128 starts with a fixed run of
   symbols (Start B or A, the prefix's characters, CODE C) and ends with the check symbol and the
   stop pattern, so the left anchor (quiet zone + those symbols) and the right one (stop + quiet
   zone) are fitted to the profile with a blur model (bars convolved with a Gaussian): where
   module 0 is, the pitch there, the blur, and where the stop starts. A quadratic through them
   maps module numbers to positions (the pitch drifts along a code seen in perspective).
3. **Symbols**: at each digit-pair position every candidate symbol's 11-module pattern, with its
   neighbours, is rendered through the same blur and fitted to the profile (gain and offset per
   window, for glare); twice, the second time with the neighbours' best guesses. A small shift
   search per symbol absorbs what the quadratic leaves.
4. **Decision**: the best few candidates per position are combined; a combination must pass the
   mod-103 check and the card format's own check (``accept``). The best one is a read only when
   (a) the second-best valid combination fits clearly worse (``min_margin``), (b) every symbol
   is about as good as the best of all 106 Code 128 symbols there (``max_penalty``: a foreign
   code with the card's layout does not fit), and (c) the model explains the profile
   (``max_residual``).

Thresholds are in units of the profile's own residual (noise and model error), so they hold at
any contrast. Gallo and Manduchi (IEEE TPAMI 33(9), 2011) read blurred VGA UPC codes with a
similar maximum-likelihood fit on grey levels.

The reader knows nothing about card numbers: :class:`CardLayout` is a prefix, a number of
digits and a validity test, made from the enabled card formats by the scanner.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import cv2
import numpy as np

#: Code 128 element widths (bar, space, bar, ...), by symbol value; 103-105 start A/B/C, 106 stop.
PATTERNS = (
    "212222",
    "222122",
    "222221",
    "121223",
    "121322",
    "131222",
    "122213",
    "122312",
    "132212",
    "221213",
    "221312",
    "231212",
    "112232",
    "122132",
    "122231",
    "113222",
    "123122",
    "123221",
    "223211",
    "221132",
    "221231",
    "213212",
    "223112",
    "312131",
    "311222",
    "321122",
    "321221",
    "312212",
    "322112",
    "322211",
    "212123",
    "212321",
    "232121",
    "111323",
    "131123",
    "131321",
    "112313",
    "132113",
    "132311",
    "211313",
    "231113",
    "231311",
    "112133",
    "112331",
    "132131",
    "113123",
    "113321",
    "133121",
    "313121",
    "211331",
    "231131",
    "213113",
    "213311",
    "213131",
    "311123",
    "311321",
    "331121",
    "312113",
    "312311",
    "332111",
    "314111",
    "221411",
    "431111",
    "111224",
    "111422",
    "121124",
    "121421",
    "141122",
    "141221",
    "112214",
    "112412",
    "122114",
    "122411",
    "142112",
    "142211",
    "241211",
    "221114",
    "413111",
    "241112",
    "134111",
    "111242",
    "121142",
    "121241",
    "114212",
    "124112",
    "124211",
    "411212",
    "421112",
    "421211",
    "212141",
    "214121",
    "412121",
    "111143",
    "111341",
    "131141",
    "114113",
    "114311",
    "411113",
    "411311",
    "113141",
    "114131",
    "311141",
    "411131",
    "211412",
    "211214",
    "211232",
    "2331112",
)
START_A, START_B, START_C, CODE_C, STOP = 103, 104, 105, 99, 106


def _modules(pattern: str) -> np.ndarray:
    """Darkness per module (1 = bar) of a width pattern."""
    out = []
    for i, w in enumerate(pattern):
        out += [1.0 - (i % 2)] * int(w)
    return np.array(out, np.float32)


_MODULES = [_modules(p) for p in PATTERNS]
#: All 106 data/start symbols' modules, one row each (the stop is 13 modules, kept apart).
_SYMBOLS = np.stack(_MODULES[:106])
_QUIET = 6  # modules of quiet zone fitted on each side (the standard asks for 10)


@dataclass(frozen=True)
class CardLayout:
    """What a card's Code 128 holds: ``prefix`` characters (code set B, or A), then ``digits``
    digits (code set C pairs), and ``accept(text)``: whether a full text is a valid card."""

    prefix: str
    digits: int
    accept: Callable[[str], bool]


@dataclass(frozen=True)
class CardRead:
    """A read: the text, and the evidence (margin, penalty, residual) it was accepted on."""

    text: str
    margin: float
    penalty: float
    residual: float
    reversed: bool
    x_range: tuple[float, float]  # first and last bar edge, in the crop's columns


@dataclass(frozen=True)
class _Plan:
    """One encoding of a layout: symbol values per position (None = free digit pair)."""

    start: int
    fixed: tuple[int, ...]  # symbols after the start, before the pairs (prefix chars, CODE C)
    pairs: int

    @property
    def symbols(self) -> int:  # start + fixed + pairs + check
        return 1 + len(self.fixed) + self.pairs + 1

    @property
    def modules(self) -> int:
        return 11 * self.symbols + 13


def _plans(layout: CardLayout) -> list[_Plan]:
    """The encodings an encoder may choose: Start B (or A, if the prefix allows) + prefix + CODE C
    + pairs. An odd digit count or other mixes are not supported (no card format has them)."""
    if layout.digits % 2 or not layout.prefix:
        return [] if layout.digits % 2 else [_Plan(START_C, (), layout.digits // 2)]
    values = tuple(ord(c) - 32 for c in layout.prefix)
    if any(not 0 <= v < 96 for v in values):
        return []
    plans = [_Plan(START_B, (*values, CODE_C), layout.digits // 2)]
    if all(v < 64 for v in values):  # code set A: upper case, digits, punctuation
        plans.append(_Plan(START_A, (*values, CODE_C), layout.digits // 2))
    return plans


# -- the blur model ---------------------------------------------------------------------------


def _phi(z: np.ndarray) -> np.ndarray:
    """The standard normal CDF, to ~1e-3 (tanh form): edges blurred by a Gaussian."""
    return 0.5 + 0.5 * np.tanh(0.7978846 * (z + 0.044715 * z * z * z))


def _phi_integral(z: np.ndarray) -> np.ndarray:
    """The integral of :func:`_phi` from minus infinity: z Phi(z) + phi(z)."""
    return z * _phi(z) + np.float32(0.3989423) * np.exp(np.float32(-0.5) * z * z)


def _step(d: np.ndarray, sigma, smear=None) -> np.ndarray:
    """Darkness ``d`` samples past an edge into a bar, blurred by a Gaussian of ``sigma`` and, if
    ``smear`` is given, smeared by a box that long (a card that moved while the shutter was open):
    the box's average of the blurred edge, in closed form (``sigma``, ``smear`` broadcast with ``d``).

    >>> round(float(_step(np.float32(0.0), 1.0)), 4), round(float(_step(np.float32(0.0), 1.0, 4.0)), 4)
    (0.5, 0.5)
    >>> round(float(_step(np.float32(1.0), 0.1, 4.0)), 2)  # a quarter of the box past the middle
    0.75
    """
    if smear is None:
        return _phi(d / sigma)
    # A box far shorter than the blur is the blur alone (and the difference below would cancel).
    width = np.maximum(smear, np.float32(0.05) * sigma)
    half = np.float32(0.5) * width
    return (sigma / width) * (_phi_integral((d + half) / sigma) - _phi_integral((d - half) / sigma))


def _render_edges(xs: np.ndarray, edges: np.ndarray, signs: np.ndarray, sigma: np.ndarray, smear: np.ndarray | None = None) -> np.ndarray:
    """Darkness at ``xs`` of bars whose edges sit at ``edges`` (..., E) with ``signs`` (+1 into
    a bar), blurred by ``sigma`` (..., 1) and smeared by ``smear`` (..., 1; None: no smear);
    result (..., len(xs))."""
    d = xs[None, :] - edges[..., :, None]
    step = _step(d, sigma[..., None], None if smear is None else smear[..., None])
    return np.matmul(signs, step)  # summed over the edges; matmul is far cheaper than einsum


def _edges_of(modules: np.ndarray, first: float) -> tuple[np.ndarray, np.ndarray]:
    """Edge positions (in modules, from ``first``) and signs of a module darkness vector that
    starts and ends light."""
    padded = np.concatenate(([0.0], modules, [0.0]))
    change = np.diff(padded)
    idx = np.flatnonzero(change)
    return (idx + first).astype(np.float32), change[idx].astype(np.float32)


def _fit_ssd(y: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """Least-squares residual of ``y ~ a - b * pred`` (b > 0) for each row of ``pred``."""
    yc = y - y.mean()
    pc = pred - pred.mean(axis=-1, keepdims=True)
    syy = float(yc @ yc)
    sxy = pc @ yc
    sxx = np.einsum("...n,...n->...", pc, pc) + 1e-6
    ssd = syy - np.where(sxy < 0, sxy * sxy / sxx, 0.0)
    return np.maximum(ssd, 1e-6)


# -- profile ----------------------------------------------------------------------------------


def profile_of(crop: np.ndarray) -> np.ndarray:
    """One brightness profile across the bars of an upright crop (float32), slant undone.

    The slant is measured between the top and bottom halves in a few segments along the code:
    a code seen in perspective has bars that fan out (slant changing along it), which a single
    shear would leave smeared at its ends.
    """
    img = crop.astype(np.float32)
    h = img.shape[0]
    lo, hi = int(h * 0.1), max(int(h * 0.9), int(h * 0.1) + 1)
    img = img[lo:hi]
    h, w = img.shape
    if h >= 6 and w >= 64:
        top = img[: h // 2].mean(axis=0)
        bottom = img[h - h // 2 :].mean(axis=0)
        segments = 4
        edges = np.linspace(0, w, segments + 1).astype(int)
        centres, shifts, weights = [], [], []
        for i in range(segments):
            a, b = max(0, edges[i] - 8), min(w, edges[i + 1] + 8)
            shift, strength = _shift(top[a:b], bottom[a:b])
            centres.append((a + b) / 2.0)
            shifts.append(shift)
            weights.append(strength)
        weights = np.asarray(weights)
        if weights.sum() > 0:
            # A straight line through the segments' shifts, weighted by how much edge each holds.
            slope, offset = np.polyfit(np.asarray(centres), np.asarray(shifts), 1, w=np.sqrt(weights) + 1e-9)
            xs = np.arange(w, dtype=np.float32)
            shift_x = (offset + slope * xs).astype(np.float32)
            if np.abs(shift_x).max() > 0.2:
                # Row r is displaced by shift(x) * (r - centre) / (h / 2): sample it back.
                rows = (np.arange(h, dtype=np.float32) - (h - 1) / 2.0) / (h / 2.0)
                map_x = xs[None, :] + rows[:, None] * shift_x[None, :]
                map_y = np.repeat(np.arange(h, dtype=np.float32)[:, None], w, axis=1)
                img = cv2.remap(img, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return img.mean(axis=0)


def bars_profile(crop: np.ndarray, bars: tuple[float, float] | None) -> tuple[np.ndarray, tuple[float, float]] | None:
    """The profile across an upright crop's bars (:func:`profile_of`) and the x range of its
    outer bars in it, or None when the crop is too small or shows no bars. ``bars``: the
    locator's range of the outermost bar edges, if known (:attr:`device.vision.locate.Region.bars`)."""
    if crop.ndim != 2 or crop.shape[1] < 40 or crop.shape[0] < 2:
        return None
    raw = profile_of(crop)
    # The locator's bar range may include a label's or a panel's edge beside the code:
    # the outer bars are where the profile first and last turns darker than mid-grey.
    within = None if bars is None or bars[1] - bars[0] < 20 else (int(bars[0]) - 2, int(bars[1]) + 4)
    span = _bar_extent(raw, within)
    return None if span is None else (raw, span)


def _shift(a: np.ndarray, b: np.ndarray, reach: int = 6) -> tuple[float, float]:
    """How far (pixels, sub-pixel) ``b`` lies right of ``a``, by correlating their derivatives,
    and the correlation's peak (how much edge there was to go by; 0: none)."""
    da, db = np.diff(a), np.diff(b)
    n = len(da)
    if n <= 2 * reach + 4:
        return 0.0, 0.0
    core = da[reach : n - reach]
    scores = np.array([float(core @ db[reach + s : n - reach + s]) for s in range(-reach, reach + 1)])
    k = int(np.argmax(scores))
    if 0 < k < len(scores) - 1:
        left, centre, right = scores[k - 1], scores[k], scores[k + 1]
        den = left - 2 * centre + right
        frac = 0.5 * (left - right) / den if den < 0 else 0.0
    else:
        frac = 0.0
    return k - reach + frac, max(0.0, float(scores[k]))


# -- the reader -------------------------------------------------------------------------------


@dataclass(frozen=True)
class FitLimits:
    """When a fit of symbols to a profile is believed (the checks (a)-(c) of the module docstring).

    ``min_margin``: how much worse (in units of the residual per sample) the second-best valid
    reading must fit; ``max_penalty``: how much worse than the best of all symbols the chosen ones
    may fit, summed; ``max_worst``: the same for the worst single symbol; ``max_residual``: the
    share of the profile's variance the model may leave unexplained.
    """

    min_margin: float = 12.0
    max_penalty: float = 60.0
    max_residual: float = 0.25
    max_worst: float = 10.0


#: A card's limits: its layout and check digits already rule out most wrong readings.
CARD_LIMITS = FitLimits()


class CardDecoder:
    """Reads card barcodes from upright crops (see the module docstring).

    ``layouts``: what the enabled card formats hold; ``limits``: when a fit is believed.

    >>> CardDecoder([CardLayout("LE", 14, lambda t: True)]).decode(np.full((40, 400), 255, np.uint8))
    """

    def __init__(
        self, layouts: Sequence[CardLayout], *, limits: FitLimits = CARD_LIMITS, samples_per_module: float = 2.5, smear: bool = True
    ) -> None:
        self.layouts = tuple(layouts)
        self._plans = [(layout, plan) for layout in self.layouts for plan in _plans(layout)]
        self.limits = limits
        self.samples_per_module = samples_per_module
        self.smear = smear

    def decode(self, crop: np.ndarray, bars: tuple[float, float] | None = None, *, smeared: bool = False) -> CardRead | None:
        """The card read in ``crop`` (grey, bars vertical), or None. ``bars``: the x range of the
        outermost bar edges if known (:attr:`device.vision.locate.Region.bars`). ``smeared``: fit
        a motion smear along the code too (a box of unknown length, 0-6.5 modules), for a crop
        the plain fit did not read; it costs several times as much (None if made with
        ``smear=False``)."""
        if not self._plans or (smeared and not self.smear):
            return None
        found = bars_profile(crop, bars)
        if found is None:
            return None
        reads = self._cards(*found, smeared=smeared)
        texts = {r.text for r in reads}
        if len(texts) != 1:
            return None  # nothing, or two readings disagree: no read
        return max(reads, key=lambda r: r.margin)

    def _cards(self, raw: np.ndarray, span: tuple[float, float], smeared: bool = False) -> list[CardRead]:
        """Readings of the card layouts, in either orientation."""
        # The left anchor (quiet zone, start, prefix, CODE C) tells the orientation and the
        # start code: the right one (stop) is fitted only for the plausible ones.
        lefts = []
        searched: dict = {}  # (modules, rev) -> the first plan's left fit there
        for layout, plan in self._plans:
            p0 = (span[1] - span[0]) / plan.modules
            if p0 < 0.6:  # below ~0.7 px per module the bars alias: nothing to read
                continue
            step = max(1.0, p0 / self.samples_per_module)
            prof = _resample(raw, step)
            lo, hi = span[0] / step, span[1] / step
            for rev in (False, True):
                y = prof[::-1].copy() if rev else prof
                a, b = (len(prof) - hi, len(prof) - lo) if rev else (lo, hi)
                near = searched.get((plan.modules, rev))
                if near is not None:
                    # Another start code at the same place: only worth a search if it fits about
                    # as well at the geometry found for the first (start A and B differ in 4
                    # modules).
                    here = _left_fit(y, a, near[1], plan, at=near, smeared=smeared)
                    if here is None or here[3] > 1.3 * near[3]:
                        continue
                left = _left_fit(y, a, (b - a) / plan.modules, plan, smeared=smeared)
                if left is not None:
                    searched.setdefault((plan.modules, rev), left)
                    lefts.append((left[3] / left[4] / left[5], left, y, a, b, step, rev, layout, plan))
        if not lefts:
            return []
        least = min(f[0] for f in lefts)
        fits = []
        rights: dict = {}
        for quality, left, y, a, b, step, rev, layout, plan in lefts:
            if quality > 1.5 * least + 0.02 or quality > 0.5:
                continue
            key = (plan.modules, rev, step)
            if key not in rights:
                rights[key] = _right_fit(y, b, (b - a) / plan.modules, plan.modules, smeared=smeared)
            geometry = _geometry(y, plan, left, rights[key])
            if geometry is not None:
                fits.append((geometry, y, step, rev, layout, plan))
        reads = []
        for geometry, y, step, rev, layout, plan in fits:
            read = self._symbols(y, geometry, plan, functools.partial(_best_valid, plan, layout))
            if read is not None:
                x0, x1 = geometry.pos(0) * step, geometry.pos(plan.modules) * step
                if rev:
                    x0, x1 = len(y) * step - x1, len(y) * step - x0
                reads.append(CardRead(read.text, read.margin, read.penalty, read.residual, rev, (x0, x1)))
        return reads

    def _symbols(
        self, y: np.ndarray, g: _Geometry, plan: _Plan, solve, values: int = 100, min_margin: float | None = None
    ) -> CardRead | None:
        """The best valid reading of one plan at geometry ``g``, if it passes the tests.

        ``solve(costs, free, check_at, known)`` finds the best and second-best valid readings
        from the per-position costs; ``values``: the data symbols' candidates (0..values-1)."""
        xs = np.arange(len(y), dtype=np.float32) + 0.5
        pos, sigma, smear = g.pos, g.sigma, g.smear
        free = list(range(1 + len(plan.fixed), 1 + len(plan.fixed) + plan.pairs))
        check_at = plan.symbols - 1
        known: dict[int, int] = {0: plan.start, **{1 + i: v for i, v in enumerate(plan.fixed)}}
        guess: dict[int, np.ndarray] = {}
        mean = _SYMBOLS[:100].mean(axis=0)

        def neighbours(k):
            prev = np.zeros(11, np.float32) if k == 0 else (_MODULES[known[k - 1]] if k - 1 in known else guess.get(k - 1, mean))
            if k + 1 == plan.symbols:
                return prev, _MODULES[STOP]
            return prev, _MODULES[known[k + 1]] if k + 1 in known else guess.get(k + 1, mean)

        costs: dict[int, np.ndarray] = {}
        # Round 1 with average neighbours and no shift search; round 2 with the guessed ones.
        for shifts in ((0.0,), _SHIFTS):
            for k in [*free, check_at]:
                costs[k] = _symbol_costs(y, xs, pos, 11 * k, *neighbours(k), sigma, shifts, smear=smear)
                guess[k] = _SYMBOLS[int(np.argmin(costs[k][:values] if k != check_at else costs[k][:103]))]
        best = solve(costs, free, check_at, known)
        if best is not None and smear is not None:
            # A smear carries a third of a symbol's neighbours into its window or more: fitted
            # beside their best single guesses, a symbol whose neighbour was guessed wrong fits
            # worse than it is. Once more beside the reading's own symbols; it must hold.
            guess.update({k: _MODULES[v] for k, v in best[3].items()})
            for k in [*free, check_at]:
                costs[k] = _symbol_costs(y, xs, pos, 11 * k, *neighbours(k), sigma, _SHIFTS, smear=smear)
            again = solve(costs, free, check_at, known)
            best = again if again is not None and again[0] == best[0] else None
        if best is None:
            return None
        text, total, second, chosen = best
        fixed = {k: _symbol_costs(y, xs, pos, 11 * k, *neighbours(k), sigma, _SHIFTS, smear=smear) for k in known}
        # Each symbol's residual per sample; their median is the noise unit (noise plus model
        # error, as it is along this code), floored at 2% of the contrast (a clean average).
        each = {k: float(costs[k][v]) / _window_samples(pos, 11 * k) for k, v in chosen.items()}
        each.update({k: float(fixed[k][v]) / _window_samples(pos, 11 * k) for k, v in known.items()})
        lo, hi = _levels(y[int(max(0, pos(0))) : int(min(len(y), pos(plan.modules)))])
        unit = max(float(np.median(list(each.values()))), (0.02 * float(hi - lo)) ** 2)
        margin = (second - total) / unit
        # Every symbol, the fixed ones too, against the best of all 106 there: a foreign code
        # laid out like a card fits some other symbol better somewhere.
        penalty = sum(float(costs[k][v] - costs[k].min()) for k, v in chosen.items())
        penalty += sum(float(fixed[k][v] - fixed[k].min()) for k, v in known.items())
        penalty /= unit
        # A bar one module off is no symbol at all, so its nearest symbol wins above: it shows
        # as one symbol fitting far worse than the others, even allowed to shift by more than
        # the search above did (what perspective and a bent card do to a genuine one).
        worst = 0.0
        for k, v in [*chosen.items(), *known.items()]:
            c = _symbol_costs(y, xs, pos, 11 * k, *neighbours(k), sigma, _WIDE, only=v, smear=smear)
            worst = max(worst, float(c[0]) / _window_samples(pos, 11 * k) / unit)
        residual = float(np.median(list(each.values()))) / (
            float(np.var(y[int(max(0, pos(0))) : int(min(len(y), pos(plan.modules)))])) + 1e-6
        )
        if (
            margin < (self.limits.min_margin if min_margin is None else min_margin)
            or penalty > self.limits.max_penalty
            or worst > self.limits.max_worst
            or residual > self.limits.max_residual
        ):
            return None
        return CardRead(text, margin, penalty, residual, False, (0.0, 0.0))


_SHIFTS = (-0.3, -0.15, 0.0, 0.15, 0.3)
_WIDE = tuple(np.round(np.arange(-0.6, 0.61, 0.1), 2))


@dataclass(frozen=True)
class _Geometry:
    """Module number -> position x(m) = o + p m + q m^2; blur ``sigma``; ``noise``: the anchors'
    residual per sample; ``fit``: that residual over the profile's variance (0 = perfect);
    ``smear``: the motion smear's length in samples (None: not modelled)."""

    o: float
    p: float
    q: float
    sigma: float
    noise: float
    fit: float
    smear: float | None = None

    def pos(self, m):
        return self.o + self.p * m + self.q * m * m


#: After the coarse search, a residual above this share of the samples' variance means the run
#: is not there (the cards read in the benchmarks were all below 0.4; other regions ~0.97).
_HOPELESS = 0.85
#: The anchor search, coarse to fine: (position steps, pitch steps, blurs, smears) in modules
#: (pitch steps relative); None keeps the value found so far.
_STAGES = (
    (np.arange(-1.5, 1.51, 0.25), np.zeros(1), None, None),
    (np.arange(-0.25, 0.26, 0.25), np.arange(-0.08, 0.081, 0.02), None, None),
    (np.zeros(1), np.zeros(1), np.array([0.3, 0.45, 0.6, 0.8, 1.0, 1.25]), None),
    (np.arange(-0.1, 0.11, 0.1), np.arange(-0.008, 0.0081, 0.004), None, None),
)
#: The same with a motion smear along the code (a box up to 6.5 modules long). The position is
#: searched further (a smeared first bar moves the bars' outer edge) and with wider Gaussians
#: only (a box is symmetric: a Gaussian as wide finds its middle, at a fraction of the cost);
#: then blur and smear together (a box is no Gaussian: the fit tells them apart by the bars it
#: flattens most), then position and pitch as before.
_SMEAR_STAGES = (
    (np.arange(-2.5, 2.51, 0.25), np.zeros(1), np.array([0.6, 1.2, 1.8]), None),
    (np.zeros(1), np.zeros(1), np.array([0.3, 0.5, 0.75, 1.0]), np.arange(0.0, 6.6, 0.5)),
    _STAGES[1],
    _STAGES[3],
)
#: The position search alone with one Gaussian as wide as a middling smear: to compare pitch
#: guesses cheaply (``coarse``).
_SMEAR_COARSE = (np.arange(-1.5, 1.51, 0.25), np.zeros(1), np.array([1.2]), None)
#: The average modules of a symbol nobody knows yet: what a smear brings into an anchor from the
#: symbol beside it.
_MEAN_SYMBOL = _SYMBOLS.mean(axis=0)


def _left_run(plan: _Plan) -> np.ndarray:
    return np.concatenate([np.zeros(_QUIET, np.float32), _MODULES[plan.start], *(_MODULES[v] for v in plan.fixed), [1.0]])


def _left_fit(y: np.ndarray, lo: float, p0: float, plan: _Plan, at=None, coarse: bool = False, smeared: bool = False):
    """The quiet zone, start and fixed symbols fitted near the first bar edge ``lo``; ``at``: no
    search, only the cost at that (position, pitch, blur, smear); ``coarse``: the position search
    only (to compare pitch guesses cheaply); ``smeared``: a motion smear fitted too."""
    run = _left_run(plan)
    end = len(run) - _QUIET - 0.5
    if smeared:  # the next symbol's smear reaches into the run's end: its average modules
        run = np.concatenate([run, _MEAN_SYMBOL[1:]])
    xs = np.arange(len(y), dtype=np.float32) + 0.5
    search = _SMEAR_STAGES if smeared else _STAGES
    stages = ((_SMEAR_COARSE if smeared else search[0]),) if coarse else None if at is None else ((np.zeros(1), np.zeros(1), None, None),)
    guess, sigma, smear = (lo, None, None) if at is None else (at[0], at[2], at[6])
    return _fit_anchor(y, xs, run, -float(_QUIET), 0.0, (-float(_QUIET), end), guess, p0, stages or search, sigma, smear)


def _right_fit(y: np.ndarray, hi: float, p0: float, modules: int, coarse: bool = False, smeared: bool = False):
    """The check's last module, the stop and the quiet zone fitted near the last bar edge ``hi``
    (anchored there: a pitch off does not move it). Returns it as :func:`_fit_anchor` does, but
    for the stop's first module; ``coarse``, ``smeared`` as for :func:`_left_fit`."""
    stop_at = modules - 13
    run = np.concatenate([[0.0], _MODULES[STOP], np.zeros(_QUIET, np.float32)]).astype(np.float32)
    first = stop_at - 1.0
    if smeared:  # the check symbol's smear reaches into the run's start
        run = np.concatenate([_MEAN_SYMBOL[:10], run]).astype(np.float32)
        first -= 10
    xs = np.arange(len(y), dtype=np.float32) + 0.5
    search = _SMEAR_STAGES if smeared else _STAGES
    stages = ((_SMEAR_COARSE if smeared else search[0]),) if coarse else search
    fit = _fit_anchor(y, xs, run, first, float(modules), (stop_at - 0.5, modules + _QUIET), hi, p0, stages)
    if fit is None:
        return None
    end, pitch, *rest = fit
    return (end - 13 * pitch, pitch, *rest)


def _geometry(y: np.ndarray, plan: _Plan, fit_l, fit_r) -> _Geometry | None:
    """Module positions from the two anchors' fits (see :func:`_fit_anchor`)."""
    if fit_l is None or fit_r is None:
        return None
    modules = plan.modules
    stop_at = modules - 13
    o_l, pitch_l, sigma_l, ssd_l, cnt_l, _, smear_l = fit_l
    stop_x, _pitch_r, sigma_r, ssd_r, cnt_r, _, smear_r = fit_r
    # x(0) = o_l, x'(middle of the left run) = pitch_l, x(stop_at) = stop_x.
    ml = (len(_left_run(plan)) - _QUIET) / 2.0
    q = (stop_x - o_l - pitch_l * stop_at) / (stop_at * stop_at - 2.0 * ml * stop_at)
    p = pitch_l - 2.0 * q * ml
    if p <= 0 or not 0.7 < (p + 2 * q * modules) / p < 1.4:  # more drift than perspective gives
        return None
    noise = (ssd_l + ssd_r) / (cnt_l + cnt_r)
    code = y[int(max(0, o_l)) : int(min(len(y), stop_x + 13 * p))]
    fit = noise / (float(code.var()) + 1e-6) if len(code) > 8 else 1.0
    # One motion smears the whole code alike (in pixels): the two ends' estimates averaged.
    smear = None if smear_l is None or smear_r is None else 0.5 * (smear_l + smear_r)
    return _Geometry(o_l, p, q, 0.5 * (sigma_l + sigma_r), noise, fit, smear)


def _window_samples(pos, m0: int) -> float:
    return pos(m0 + 11.5) - pos(m0 - 0.5)


def _symbol_costs(
    y,
    xs,
    pos,
    m0: int,
    prev: np.ndarray,
    nxt: np.ndarray,
    sigma: float,
    shifts=_SHIFTS,
    only: int | None = None,
    per_shift: bool = False,
    smear: float | None = None,
) -> np.ndarray:
    """Fit residual of every symbol (106) at modules m0..m0+11, neighbours ``prev``/``nxt``,
    the least over a few sub-module shifts; ``only``: of that symbol value alone; ``per_shift``:
    not the least but one row per shift (for :mod:`device.vision.code128_fit`); ``smear``: the
    motion smear's length in samples (None: none)."""
    n = len(y)
    a, b = pos(m0 - 0.5), pos(m0 + 11.5)
    i0, i1 = max(0, int(math.floor(a))), min(n, int(math.ceil(b)))
    if i1 - i0 < 4:
        return np.zeros((len(shifts), 106) if per_shift else 106, np.float32)
    win = xs[i0:i1]
    yw = y[i0:i1]
    ms = np.arange(m0 - len(prev), m0 + 11 + len(nxt) + 1, dtype=np.float64)
    bounds = pos(ms)
    pitch = (b - a) / 12.0
    edges = (bounds[None, :] + np.asarray(shifts)[:, None] * pitch).astype(np.float32)  # shifts x boundaries
    # shifts x samples x boundaries
    cdf = _step(win[None, :, None] - edges[:, None, :], np.float32(sigma), None if smear is None else np.float32(smear))
    basis = cdf[:, :, :-1] - cdf[:, :, 1:]  # ... x modules: each module's blurred footprint
    ctx = basis[:, :, : len(prev)] @ prev + basis[:, :, len(prev) + 11 :] @ nxt  # shifts x samples
    symbols = _SYMBOLS if only is None else _SYMBOLS[only : only + 1]
    # (shifts x samples x modules) @ (modules x symbols), then symbols before samples; matmul
    # costs a sixteenth of the equivalent einsum here.
    pred = np.matmul(basis[:, :, len(prev) : len(prev) + 11], symbols.T).transpose(0, 2, 1) + ctx[:, None, :]
    ssd = _fit_ssd(yw, pred)
    return ssd if per_shift else ssd.min(axis=0)


def _fit_anchor(
    y,
    xs,
    modules,
    first: float,
    anchor: float,
    span: tuple[float, float],
    guess_x: float,
    p0: float,
    stages=_STAGES,
    sigma: float | None = None,
    smear: float | None = None,
):
    """Fit a known run of ``modules`` (the first one is module number ``first`` of the code)
    to the samples between modules ``span``; positions are x(m) = xa + p (m - ``anchor``), xa
    searched near ``guess_x``, p within 8% of ``p0`` (perspective changes the pitch locally).
    Returns (xa, p, sigma, ssd, samples, variance of those samples, smear) or None; the smear
    (samples) is None unless ``stages`` search one (:data:`_SMEAR_STAGES`). ``stages``, ``sigma``,
    ``smear``: another search (or none) from that blur and smear."""
    edges_m, signs = _edges_of(modules, first)
    rel = edges_m - anchor
    n = len(y)
    best = (guess_x, p0, 0.6 * p0 if sigma is None else sigma, 0.0, 1, 1.0, smear)
    # Coarse to fine: position, then pitch (perspective changes it locally), blur, both finely.
    for stage, (dos, dps, sigmas, smears) in enumerate(stages):
        if stage == 1 and best[3] / best[4] / best[5] > _HOPELESS:
            return None  # nothing like the run anywhere near: no finer search will change that
        o_c, p_c, s_c, l_c = best[0], best[1], best[2], best[6]
        ss = sigmas * p_c if sigmas is not None else np.array([s_c])
        ll = smears * p_c if smears is not None else np.array([np.nan if l_c is None else l_c])
        oo, pp, ss, ll = (a.ravel() for a in np.meshgrid(o_c + dos * p_c, p_c * (1 + dps), ss, ll, indexing="ij"))
        i0 = max(0, int(o_c + p_c * (span[0] - anchor)))
        i1 = min(n, int(math.ceil(o_c + p_c * (span[1] - anchor))))
        if i1 - i0 < 8:
            return None
        win = xs[i0:i1]
        edges = (oo[:, None] + pp[:, None] * rel[None, :]).astype(np.float32)
        modelled = smears is not None or l_c is not None
        pred = _render_edges(win, edges, signs, ss.astype(np.float32)[:, None], ll.astype(np.float32)[:, None] if modelled else None)
        c = _fit_ssd(y[i0:i1], pred)
        k = int(np.argmin(c))
        found = float(ll[k]) if modelled else None
        best = (float(oo[k]), float(pp[k]), float(ss[k]), float(c[k]), i1 - i0, float(y[i0:i1].var()) + 1e-6, found)
    return best


def _best_valid(plan: _Plan, layout: CardLayout, costs, free, check_at, known, top: int = 4):
    """The best and second-best total cost of combinations of the best ``top`` pairs per
    position that pass the mod-103 check and ``layout.accept``: (text, best, second, chosen)."""
    lists = []
    for k in free:
        order = np.argsort(costs[k][:100])[:top]
        lists.append(order)
    combos = np.stack(np.meshgrid(*lists, indexing="ij"), axis=-1).reshape(-1, len(free))  # C x pairs
    pair_cost = np.stack([costs[k] for k in free])[np.arange(len(free))[None, :], combos].sum(axis=1)
    weights = np.array(free, dtype=np.int64)
    base = plan.start + sum(k * v for k, v in known.items() if k > 0)
    check = (base + combos @ weights) % 103
    total = pair_cost + costs[check_at][check]
    # The digits as one number per combination (up to 18 digits fit an int64): cheap to format.
    kind = np.int64 if len(free) <= 9 else object
    powers = (100 ** np.arange(len(free) - 1, -1, -1)).astype(kind)
    width = 2 * len(free)
    found = []
    # Cheapest first, a slice at a time: the two best valid ones are nearly always among the
    # first few hundred (a check digit pair passes one in 97).
    ranked = np.argsort(total) if len(total) <= 2048 else None
    for lo in range(0, len(total), 1024):
        if ranked is None:
            head = np.argpartition(total, min(len(total) - 1, lo + 1023))[: lo + 1024]
            order = head[np.argsort(total[head])][lo:]
        else:
            order = ranked[lo : lo + 1024]
        numbers = combos[order].astype(kind) @ powers
        for i, number in zip(order.tolist(), numbers.tolist(), strict=True):
            text = f"{layout.prefix}{number:0{width}d}"
            if layout.accept(text):
                found.append((text, float(total[i]), i))
                if len(found) == 2:
                    break
        if len(found) == 2:
            break
    if not found:
        return None
    # A second reading outside the enumerated lists costs at least the cheapest step out of them.
    bound = found[0][1] + min(float(np.sort(costs[k][:100])[top] - costs[k][combos[found[0][2], j]]) for j, k in enumerate(free))
    second = found[1][1] if len(found) > 1 else bound
    second = min(second, bound)
    text, total_best, i = found[0]
    chosen = {k: int(combos[i, j]) for j, k in enumerate(free)}
    chosen[check_at] = int(check[i])
    return text, total_best, second, chosen


def _levels(values: np.ndarray) -> tuple[float, float]:
    """The 5th and 95th percentiles (dark and light levels); np.percentile costs far more."""
    ordered = np.sort(values)
    n = len(ordered) - 1
    return float(ordered[int(0.05 * n)]), float(ordered[int(0.95 * n)])


def _resample(profile: np.ndarray, step: float) -> np.ndarray:
    """``profile`` averaged over bins ``step`` samples wide (area resampling)."""
    if step <= 1.0:
        return profile.astype(np.float32)
    csum = np.concatenate(([0.0], np.cumsum(profile, dtype=np.float64)))
    edges = np.arange(0.0, len(profile) + 1e-9, step)
    vals = np.interp(edges, np.arange(len(csum)), csum)
    return (np.diff(vals) / step).astype(np.float32)


def _bar_extent(profile: np.ndarray, within: tuple[int, int] | None = None) -> tuple[float, float] | None:
    """First and last crossings of the local mid-grey (sub-pixel): the outer edges of the bars.

    Local: glare over part of the code lifts its bars above the code's overall mid-grey; the
    middle between the darkest and lightest values nearby still falls between bar and space.
    """
    i0, i1 = (0, len(profile)) if within is None else (max(0, within[0]), min(len(profile), within[1]))
    part = profile[i0:i1]
    if len(part) < 20:
        return None
    lo, hi = _levels(part)
    if hi - lo < 10:
        return None
    k = max(5, int(len(part) / 12)) | 1
    dark_env = cv2.erode(part[None, :].astype(np.float32), np.ones((1, k), np.uint8))[0]
    light_env = cv2.dilate(part[None, :].astype(np.float32), np.ones((1, 3 * k), np.uint8))[0]
    mid = (dark_env + light_env) / 2.0
    # Only where there is real contrast nearby: a quiet zone's noise is no bar.
    dark = np.flatnonzero((part < mid) & (light_env - dark_env > 0.3 * (hi - lo)))
    if len(dark) < 4:
        return None
    a, b = int(dark[0]), int(dark[-1])

    def cross(i: int, j: int) -> float:  # where the line from sample i (dark) to j meets mid
        d = part[j] - part[i]
        return i + (j - i) * float(np.clip((mid[i] - part[i]) / d, 0.0, 1.0)) if d else float(i)

    left = cross(a, a - 1) if a > 0 else float(a)
    right = cross(b, b + 1) if b + 1 < len(part) else float(b)
    # Samples are centred at +0.5.
    return i0 + left + 0.5, i0 + right + 0.5


def layouts_for(formats) -> list[CardLayout]:
    """The layouts of the card formats printed in Code 128 with a fixed prefix and digits
    (:class:`device.card.PrefixedDigitsFormat`); other formats have none (not read here)."""
    from device.card import Card

    layouts = []
    for fmt in formats:
        if "Code128" not in getattr(fmt, "symbologies", ()) or not hasattr(fmt, "prefix"):
            continue
        digits = fmt.length - len(fmt.prefix)
        layouts.append(CardLayout(fmt.prefix, digits, lambda text, fmt=fmt: isinstance(fmt.parse(text), Card)))
    return layouts
