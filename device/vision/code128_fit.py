"""A reader of general Code 128 (any text) at the resolution limit, for regions nothing else read.

:class:`~device.vision.card_decoder.CardDecoder` reads only the card's fixed layout. A shipping
label's Code 128 holds any text in any code set, so here only the code's own structure is known:

1. **Profile and anchors**, as the card decoder makes them (its functions): the crop's rows
   averaged into one profile with the slant and fanning undone; Start A, B or C plus its quiet
   zone fitted through the blur model at the first bar edge, the stop pattern at the last.
2. **Symbol count**: the span between them at the start's and stop's pitches; Code 128 has
   11 modules per symbol, so the count is nearly always one integer (its neighbours are tried
   too, and must not read).
3. **Geometry that follows the bars**: a code seen at a slant to the camera, or on a bent
   parcel, has a pitch that changes along it in a way a quadratic through the two ends misses
   by a module in the middle. Each symbol's place is tracked from the previous one's: expected
   11 modules on along the perspective course the start's and stop's pitches give, scaled by
   how the last steps went, and found where some pattern fits best (within +-0.6 modules); the
   track must arrive at the stop.
4. **Symbols**: every one of the 106 patterns fitted at every position (the card decoder's
   fit, with the neighbours' best guesses), then a dynamic programme over the mod-103 check
   sum gives the best and the second-best complete readings whose check passes.
5. **Decision**, stricter than the card decoder's: the second-best valid reading fits clearly
   worse, every symbol is about as good as the best of all patterns there, none fits far worse
   than the others, the model explains the profile, at least ``min_symbols`` data symbols (a
   short code's check passes by chance too often); and the reading is one an encoder writes
   (no FNC2/FNC3, no GS1 FNC1 first, no code change or shift at the end). A misread is worse
   than a miss: margins stricter than the card decoder's, which also has the card's own check.

Text follows zxing-cpp's conventions for what it reads (FNC4 extended Latin-1 characters,
a later FNC1 as GS), so the two agree on the same code.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from device.vision.card_decoder import (
    _MODULES,
    _SYMBOLS,
    _WIDE,
    START_A,
    START_B,
    START_C,
    STOP,
    CardDecoder,
    CardRead,
    FitLimits,
    _fit_ssd,
    _left_fit,
    _Plan,
    _resample,
    _right_fit,
    _step,
    _symbol_costs,
    bars_profile,
)

_STARTS = (START_A, START_B, START_C)
_SHIFT, _FNC1, _FNC2, _FNC3 = 98, 102, 97, 96


@dataclass(frozen=True)
class _Knots:
    """Module number -> position: straight between known places (symbol starts), extended
    straight beyond the first and last."""

    ms: np.ndarray
    xs: np.ndarray
    sigma: float
    smear: float | None = None

    def pos(self, m):
        m = np.asarray(m, np.float64)
        inside = np.interp(m, self.ms, self.xs)
        lo = self.xs[0] + (m - self.ms[0]) * (self.xs[1] - self.xs[0]) / (self.ms[1] - self.ms[0])
        hi = self.xs[-1] + (m - self.ms[-1]) * (self.xs[-1] - self.xs[-2]) / (self.ms[-1] - self.ms[-2])
        return np.where(m < self.ms[0], lo, np.where(m > self.ms[-1], hi, inside))


@dataclass(frozen=True)
class _Start:
    """Where module 0 is, the pitch there, the blur and smear (from the start's fit)."""

    o: float
    p: float
    sigma: float
    smear: float | None = None


#: Stricter than a card's: any text may be read here, with no layout or check digits of a card's
#: format to rule out a wrong one, only Code 128's mod-103 check.
GENERAL_LIMITS = FitLimits(min_margin=35.0, max_penalty=12.0)


class Code128Fit:
    """Reads Code 128 of any text from upright crops (see the module docstring).

    ``min_symbols``/``max_symbols``: data symbols accepted (start, check and stop not counted);
    ``limits``: when a fit is believed, as for :class:`~device.vision.card_decoder.CardDecoder`.

    >>> Code128Fit().decode(np.full((40, 400), 255, np.uint8))
    """

    def __init__(
        self,
        *,
        min_symbols: int = 4,
        max_symbols: int = 40,
        limits: FitLimits = GENERAL_LIMITS,
        samples_per_module: float = 2.5,
        smear: bool = True,
    ) -> None:
        self.min_symbols = min_symbols
        self.max_symbols = max_symbols
        self.samples_per_module = samples_per_module
        self.smear = smear
        # The per-symbol fit and its tests are the card decoder's; it is given no layouts.
        self._fit = CardDecoder([], limits=limits)

    def decode(self, crop: np.ndarray, bars: tuple[float, float] | None = None, *, smeared: bool = False) -> CardRead | None:
        """The Code 128 read in ``crop`` (grey, bars vertical), or None; ``bars`` and
        ``smeared`` as for the card decoder. The read's ``text`` is zxing-cpp's text of the
        same code."""
        if smeared and not self.smear:
            return None
        found = bars_profile(crop, bars)
        if found is None:
            return None
        raw, span = found
        reads = []
        for rev in (False, True):
            read = self._oriented(raw, span, rev, smeared)
            if read is not None:
                reads.append(read)
        if len({r.text for r in reads}) != 1:
            return None
        return reads[0]

    def _oriented(self, raw: np.ndarray, span: tuple[float, float], rev: bool, smeared: bool = False) -> CardRead | None:
        width = span[1] - span[0]
        # The pitch from the widest plausible code down: at most max_symbols, at least ~0.6 px.
        shortest = 11 * (self.min_symbols + 2) + 13
        p_hi = width / shortest
        if p_hi < 0.6:
            return None
        # Resample so a module is about samples_per_module samples at the finest pitch the code
        # could have (the decoder's fit is per sample: fewer samples, less work).
        p_lo = max(0.6, width / (11 * (self.max_symbols + 2) + 13))
        step = max(1.0, p_lo / self.samples_per_module)
        prof = _resample(raw, step)
        lo, hi = span[0] / step, span[1] / step
        y = prof[::-1].copy() if rev else prof
        a, b = (len(prof) - hi, len(prof) - lo) if rev else (lo, hi)
        # The start: which of the three, and its pitch (the anchor fit searches +-8% and
        # position; the pitch guess from an assumed count is refined by the search).
        # Pitch guesses compared by the position search alone (cheap), with Start B (the three
        # starts share their first three elements); the best two fitted fully with each start.
        coarse = []
        for guess in _pitch_guesses(y, a, b):
            fit = _left_fit(y, a, guess, _Plan(START_B, (), 1), coarse=True, smeared=smeared)
            if fit is not None:
                coarse.append((fit[3] / fit[4] / fit[5], guess))
        best_left = None
        # The best two guesses fitted fully; smeared, the best one (a smeared fit costs several
        # times as much, and the coarse search already sees the smear).
        tried = 1 if smeared else 2
        for _, guess in sorted(coarse)[:tried]:
            for start in _STARTS:
                left = _left_fit(y, a, guess, _Plan(start, (), 1), smeared=smeared)
                if left is None:
                    continue
                quality = left[3] / left[4] / left[5]
                if best_left is None or quality < best_left[0]:
                    best_left = (quality, start, left)
        if best_left is None or best_left[0] > 0.5:
            return None
        _, start, left = best_left
        pitch = left[1]
        # The stop: a code seen at a slant has a pitch there up to half as large again, or
        # smaller (the anchor fit searches +-8% of each guess).
        coarse = []
        for scale in (0.7, 0.8, 0.9, 1.0, 1.12, 1.25, 1.4, 1.55):
            fit = _right_fit(y, b, pitch * scale, 0, coarse=True, smeared=smeared)
            if fit is not None:
                coarse.append((fit[3] / fit[4] / fit[5], scale))
        right = None
        for _, scale in sorted(coarse)[:tried]:
            fit = _right_fit(y, b, pitch * scale, 0, smeared=smeared)
            if fit is not None and (right is None or fit[3] / fit[4] / fit[5] < right[3] / right[4] / right[5]):
                right = fit
        if right is None or right[3] / right[4] / right[5] > 0.5:
            return None  # no stop pattern at the last bar
        stop_x = right[0]
        # Modules from module 0 to the stop's first: 11 per symbol (start, data, check).
        symbols_f = (stop_x - left[0]) / (0.5 * (pitch + right[1])) / 11.0
        reads = []
        # The count nearest the estimate, and its neighbour too when the estimate falls between.
        for symbols in sorted({round(symbols_f - 0.3), round(symbols_f + 0.3)}):
            data = symbols - 2
            if not self.min_symbols <= data <= self.max_symbols:
                continue
            plan = _Plan(start, (), data)
            smear = None if left[6] is None or right[6] is None else 0.5 * (left[6] + right[6])
            read = self._read(y, _Start(left[0], pitch, 0.5 * (left[2] + right[2]), smear), plan, stop_x, right[1])
            if read is not None:
                x0, x1 = float(read[1].pos(0)) * step, float(read[1].pos(plan.modules)) * step
                if rev:
                    x0, x1 = len(y) * step - x1, len(y) * step - x0
                r = read[0]
                reads.append(CardRead(r.text, r.margin, r.penalty, r.residual, rev, (x0, x1)))
        if len(reads) != 1:
            return None  # none, or two symbol counts both read: not sure of either
        return reads[0]

    def _read(self, y: np.ndarray, g, plan: _Plan, stop_x: float, stop_pitch: float):
        """Refine the geometry to follow the bars, then fit and decide (``(read, curve)``)."""
        curve = _track(y, g, plan, stop_x, stop_pitch)
        if curve is None:
            return None
        read = self._fit._symbols(y, curve, plan, _solve, values=103)
        if read is None:
            return None
        return read, curve


def _pitch_guesses(y: np.ndarray, a: float, b: float) -> list[float]:
    """Pitches to start the start's fit from: Code 128 has 6 elements per 11 modules, so the
    mid-grey crossings between the outer bars give the pitch; blur merges narrow elements
    (fewer crossings, a pitch too wide), so smaller guesses too. The anchor fit searches +-8%
    around each: guesses 14% apart."""
    part = y[int(a) : int(np.ceil(b)) + 1]
    if len(part) < 8:
        return []
    mid = 0.5 * (float(part.min()) + float(part.max()))
    crossings = int(np.count_nonzero(np.diff(np.sign(part - mid))))
    if crossings < 10:
        return []
    estimate = (b - a) / ((crossings + 1) * 11.0 / 6.0)
    return [estimate * 1.14**k for k in range(-6, 4) if estimate * 1.14**k >= 0.6]


def _track(y: np.ndarray, g: _Start, plan: _Plan, stop_x: float, stop_pitch: float):
    """Each symbol's place found from the previous one's, left to right, and the stop's.

    The expected course is a quadratic from module 0 to the stop with the start's and the
    stop's pitches at its ends (perspective); the next symbol is expected 11 modules on along
    it, scaled by how far the last steps were from it (a bent label), and its place is the
    offset (within +-0.6 modules) where some pattern fits best. None when the track does not
    arrive at the stop (lost on the way: no code, or not this count)."""
    xs = np.arange(len(y), dtype=np.float32) + 0.5
    n = plan.symbols
    span_m = 11.0 * n
    ratio = stop_pitch / g.p
    p0 = 2.0 * (stop_x - g.o) / (span_m * (1.0 + ratio))
    q = (ratio - 1.0) * p0 / (2.0 * span_m)

    def course(m):
        return g.o + p0 * m + q * m * m

    mean = _SYMBOLS.mean(axis=0)
    wide = np.asarray(_WIDE)
    scale = 1.0
    places = [float(g.o)]
    prev = np.zeros(11, np.float32)
    for k in range(1, n + 1):
        m0 = 11 * k
        step = course(m0) - course(m0 - 11)
        pred = places[-1] + scale * step
        pitch = scale * (p0 + 2 * q * (m0 + 5.5))

        def local(m, pred=pred, m0=m0, pitch=pitch):
            return pred + (np.asarray(m, np.float64) - m0) * pitch

        if k == n:
            c = _stop_costs(y, xs, local, m0, g.sigma, wide, g.smear)
        else:
            nxt = _MODULES[STOP] if k == n - 1 else mean
            table = _symbol_costs(y, xs, local, m0, prev, nxt, g.sigma, wide, per_shift=True, smear=g.smear)[:, :103]
            c = table.min(axis=1)
        j = int(np.argmin(c))
        frac = 0.0
        if 0 < j < len(c) - 1:  # a parabola through the three around the least: sub-step place
            den = c[j - 1] - 2 * c[j] + c[j + 1]
            frac = float(np.clip(0.5 * (c[j - 1] - c[j + 1]) / den, -0.5, 0.5)) if den > 0 else 0.0
        place = pred + (float(wide[j]) + frac * float(wide[1] - wide[0])) * pitch
        # A bend changes the pitch slowly: follow the measured step half way, within 8%.
        scale = float(np.clip(0.5 * (scale + (place - places[-1]) / step), 0.92 * scale, 1.08 * scale))
        places.append(place)
        if k < n:
            prev = _SYMBOLS[int(np.argmin(table[j]))]

    if abs(places[-1] - stop_x) > 0.5 * stop_pitch:
        return None
    ms = 11.0 * np.arange(n + 1)
    return _Knots(ms, np.asarray(places), float(g.sigma), g.smear)


def _stop_costs(y, xs, pos, m0, sigma, shifts, smear=None):
    """The stop pattern's fit residual at modules m0..m0+13 at each shift (``smear`` as for
    the card decoder's symbols)."""
    stop = _MODULES[STOP]
    a, b = pos(m0 - 0.5), pos(m0 + 13.5)
    i0, i1 = max(0, int(np.floor(a))), min(len(y), int(np.ceil(b)))
    if i1 - i0 < 4:
        return np.zeros(len(shifts), np.float32)
    win = xs[i0:i1]
    pitch = (b - a) / 14.0
    ms = np.arange(m0 - 1, m0 + 15, dtype=np.float64)
    out = []
    for s in shifts:
        bounds = (pos(ms) + s * pitch).astype(np.float32)
        cdf = _step(win[:, None] - bounds[None, :], np.float32(sigma), None if smear is None else np.float32(smear))
        basis = cdf[:, :-1] - cdf[:, 1:]
        modules = np.concatenate(([1.0], stop, [0.0])).astype(np.float32)
        out.append(float(_fit_ssd(y[i0:i1], (basis @ modules)[None, :])[0]))
    return np.asarray(out)


def _solve(costs, free, check_at, known):
    """The best and second-best readings whose mod-103 check passes, by a dynamic programme
    over the running check sum: (text, best cost, second cost, chosen values) or None when the
    best is not a text an encoder writes."""
    start = known[0]
    inf = np.float64(1e300)
    best1 = np.full(103, inf)
    best2 = np.full(103, inf)
    best1[start % 103] = 0.0
    back = []  # per position: for each state, (value, came from state, from which of the two)
    states = np.arange(103)
    for k in free:
        c = np.asarray(costs[k][:103], np.float64)
        v = np.arange(103)
        prev = (states[:, None] - k * v[None, :]) % 103  # new state x value -> previous state
        m1 = best1[prev] + c[None, :]
        m2 = best2[prev] + c[None, :]
        both = np.concatenate([m1, m2], axis=1)  # 103 x 206
        order = np.argsort(both, axis=1)[:, :2]
        nb1 = both[states, order[:, 0]]
        nb2 = both[states, order[:, 1]]
        back.append((order % 103, prev[states[:, None], order % 103], order // 103))
        best1, best2 = nb1, nb2
    check = np.asarray(costs[check_at][:103], np.float64)
    final = np.concatenate([best1 + check, best2 + check])
    order = np.argsort(final)
    if final[order[0]] >= inf:
        return None
    total, second = float(final[order[0]]), float(final[order[1]])
    state, which = int(order[0] % 103), int(order[0] // 103)
    values = []
    for value, came, rank in reversed(back):
        values.append(int(value[state, which]))
        state, which = int(came[state, which]), int(rank[state, which])
    values.reverse()
    text = decode_values(start, values)
    if text is None:
        return None
    chosen = dict(zip(free, values, strict=True))
    chosen[check_at] = int(order[0] % 103)
    return text, total, second, chosen


def decode_values(start: int, values: list[int]) -> str | None:
    """The text of a Code 128 symbol sequence (start value, data values; no check), as zxing-cpp
    gives it; None for sequences no encoder writes (FNC2, FNC3, GS1's leading FNC1, a code
    change or shift with nothing after it, a change to the set already in use)."""
    sets = {START_A: "A", START_B: "B", START_C: "C"}
    current = sets[start]
    out: list[str] = []
    shift = False
    fnc4_latch = False
    fnc4_once = False
    last = len(values) - 1
    for i, v in enumerate(values):
        active = ("B" if current == "A" else "A") if shift else current
        shift = False
        if v == _FNC1:  # the same value in every code set
            if i == 0:
                return None
            out.append("\x1d")
            continue
        if active == "C":
            if v < 100:
                out.append(f"{v:02d}")
                continue
            if i == last:
                return None
            current = "B" if v == 100 else "A"
            continue
        if v < 96:
            code = v + 32 if active == "B" or v < 64 else v - 64
            if fnc4_latch != fnc4_once:
                code += 128
            fnc4_once = False
            out.append(chr(code))
            continue
        if v in (_FNC2, _FNC3):
            return None
        if i == last:
            return None  # a shift, code change or FNC4 with nothing after it
        if v == _SHIFT:
            shift = True
        elif v == 99:
            current = "C"
        elif (v == 101 and active == "A") or (v == 100 and active == "B"):
            # FNC4: once for the next character, twice in a row to latch (or unlatch).
            if fnc4_once:
                fnc4_once = False
                fnc4_latch = not fnc4_latch
            else:
                fnc4_once = True
        else:
            target = "A" if v == 101 else "B"
            if target == current:
                return None
            current = target
    if shift:
        return None
    return "".join(out)
