"""Find 1D barcode regions at any in-plane angle and turn them upright for the decoders.

Decoders scan pixel rows: a 1D code tilted by more than ~15 degrees falls off the row before
its end and does not read. :class:`Locator` finds the places in a grey frame where there are
many strong, parallel edges (the bars), measures which way they point, and cuts out each such
region rotated so that the bars stand vertical, rescaled to a module size decoders like::

    locator = Locator()
    for region in locator.find(grey):
        for symbol in decoder.decode(region.image):
            quad = region.to_frame(symbol.quad)   # corners in frame pixels

How: on a copy of the frame scaled to at most ``work_size`` pixels on its long side, the
gradient structure tensor, smoothed over a small window, gives per pixel the edge energy and
how coherent the edge orientation is (1 = all edges parallel, as in a barcode; text and texture
are lower). Energetic, coherent pixels are grouped into connected regions; each region's
dominant orientation is the energy-weighted mean of the doubled angles. A region must be wider
across its bars than a single edge's smear, and its upright crop must show many alternating
edges along its middle rows, which rules out lines, box borders and table rules cheaply
before any decoding is spent on them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from device.config import DEFAULTS

Point = tuple[float, float]


@dataclass(frozen=True)
class Region:
    """One candidate barcode region, cut out upright.

    ``image`` is a grey crop with the bars vertical. ``affine`` is the 2x3 matrix that maps crop
    pixel coordinates back to the frame. ``angle`` is the direction across the bars in the frame,
    in degrees (0 = bars already vertical). ``corners`` are the crop's corners in the frame (for
    drawing), ``score`` orders regions, most barcode-like first. ``module_px`` is the estimated
    narrowest-bar width in the crop, ``frame_module_px`` the same in the frame (before the crop was
    rescaled), ``bars`` the x range of the outermost bar edges in the crop.
    The crop's grey levels are stretched: bars near 0, spaces near 255, anything lighter than the
    spaces (glare, a white sheet beside the card) clipped to 255. ``linear`` is the same crop
    before that (None: the same as ``image``): its grey levels are the light's, unclipped, for a
    fit of a model of the bars (clipping a smeared code's wide spaces and quiet zone at the
    brightest narrow one bends the very profile such a fit explains). ``edges``: how many bar
    edges were counted along its middle (0: not counted).
    """

    image: np.ndarray
    affine: np.ndarray
    angle: float
    corners: tuple[Point, ...]
    score: float
    module_px: float
    bars: tuple[float, float] = (0.0, 0.0)
    frame_module_px: float = 0.0
    linear: np.ndarray | None = None
    edges: int = 0

    def to_frame(self, points) -> tuple[Point, ...] | None:
        """Crop pixel coordinates (e.g. ``Symbol.quad``) mapped to frame coordinates."""
        if not points:
            return None
        pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        mapped = pts @ self.affine[:, :2].T + self.affine[:, 2]
        return tuple((float(x), float(y)) for x, y in mapped)

    def contains(self, point: Point) -> bool:
        """Whether a frame point lies inside this region's crop."""
        contour = np.asarray(self.corners, dtype=np.float32).reshape(-1, 1, 2)
        return cv2.pointPolygonTest(contour, (float(point[0]), float(point[1])), False) >= 0


#: The locator's default ``min_edges``: fewer edges along a crop's middle is no barcode.
_FEW_EDGES = 12
#: Fewer edges than this (a Code 128 of 4 characters has about 40, a card's 80) and the bars
#: are looked for again with a wider derivative (:func:`_bar_box`): they may be smeared.
_SMEARED_EDGES = 40


class Locator:
    """Finds barcode regions in grey frames; cheap (a few ms for 1280x720).

    Parameters (defaults suit 640x480 to 1920x1080 cameras):

    ``work_size``: gradients are taken on the frame scaled down to at most this many pixels on
    its long side. Bars thinner than ~1 px there blur away; at 640 a 1280x720 camera's card
    codes (~1.5-2 px modules) still show (measured: 640 reads as many cards as 1280, cheaper).
    Raise it for cameras well above 720p showing small cards. Regions are then grouped on a
    grid ~:data:`GRID` pixels long.
    ``window``: side of the smoothing window of the structure tensor, in grid pixels.
    ``min_coherence``: 0..1, how parallel the edges in a window must be.
    ``min_contrast``: grey levels; edges weaker than this are noise (keeps empty scenes empty).
    ``max_regions``: at most this many regions per frame, best first (bounds decode cost).
    ``min_edges``: a crop with fewer bar edges along its middle is not a barcode.
    ``target_module_px``: crops are rescaled so the narrowest bar is about this wide.
    ``max_crop_height``: crops are squeezed vertically to at most this many rows (bars are
    vertical, so this only drops redundant rows; it bounds decode cost for near cards).

    >>> Locator().find(np.full((480, 640), 200, np.uint8))
    []
    """

    def __init__(
        self,
        *,
        work_size: int = DEFAULTS.scan.work_size,
        window: int = 5,
        min_coherence: float = 0.6,
        min_contrast: float = 12.0,
        max_regions: int = DEFAULTS.scan.max_regions,
        min_edges: int = _FEW_EDGES,
        target_module_px: float = 3.5,
        max_crop_height: int = 160,
    ) -> None:
        if work_size < 64:
            raise ValueError(f"work_size must be at least 64 pixels, got {work_size}")
        if window < 3:
            raise ValueError(f"window must be at least 3 pixels, got {window}")
        if not 0.0 < min_coherence < 1.0:
            raise ValueError(f"min_coherence must be between 0 and 1, got {min_coherence}")
        self.work_size = work_size
        self.window = window
        self._across_kernels = [_line_kernel((band + 0.5) * 180.0 / _BANDS, 4 * window + 1) for band in range(_BANDS)]
        self.min_coherence = min_coherence
        self.min_contrast = min_contrast
        self.max_regions = max_regions
        self.min_edges = min_edges
        self.target_module_px = target_module_px
        self.max_crop_height = max_crop_height

    # -- public ---------------------------------------------------------------------------

    def find(self, grey: np.ndarray, *, smeared: bool = False) -> list[Region]:
        """Upright crops of the likely barcode regions in ``grey`` (2-D uint8), best first;
        ``smeared`` as for :meth:`Candidate.cut`."""
        regions = (candidate.cut(smeared=smeared) for candidate in self.candidates(grey))
        return [region for region in regions if region is not None]

    def candidates(self, grey: np.ndarray) -> list[Candidate]:
        """The likely barcode regions in ``grey``, best first, not yet cut out.

        Cutting a region out costs as much as finding them all (at 1280x720 about 2 ms each):
        a caller that already knows what lies at a candidate's place skips its ``cut()``.
        """
        h, w = grey.shape[:2]
        if h < 16 or w < 16:
            return []
        scale = min(1.0, self.work_size / max(h, w))
        small = (
            grey if scale == 1.0 else cv2.resize(grey, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
        )
        # Try the best few only.
        return [Candidate(self, grey, blob, scale) for blob in self._blobs(small, self._pool(small))[: self.max_regions]]

    # -- stage 1: where are many parallel edges (work scale) ------------------------------

    def _pool(self, small: np.ndarray) -> int:
        """How many work pixels make one grouping-grid pixel (grid ~``GRID`` pixels long)."""
        return max(1, round(max(small.shape[:2]) / GRID))

    def _blobs(self, small: np.ndarray, pool: int) -> list[_Blob]:
        """Regions of parallel edges, in ``small``'s pixel coordinates."""
        # 16-bit Sobel and OpenCV's own multiply: several times faster than float Sobel here.
        gx = cv2.Sobel(small, cv2.CV_16S, 1, 0, ksize=3)
        gy = cv2.Sobel(small, cv2.CV_16S, 0, 1, ksize=3)
        # Fine bars need the full work resolution for their gradients, but smoothing and
        # grouping do not: the tensor is pooled onto a coarse grid first (a box average, like
        # the smoothing), and everything after works there.
        pooled = (max(1, small.shape[1] // pool), max(1, small.shape[0] // pool))
        pwin = self.window
        win = (pwin, pwin)

        def smoothed(a, b):
            product = cv2.multiply(a, b, dtype=cv2.CV_32F)
            if pool > 1:
                product = cv2.resize(product, pooled, interpolation=cv2.INTER_AREA)
            return cv2.blur(product, win)

        jxx, jyy, jxy = smoothed(gx, gx), smoothed(gy, gy), smoothed(gx, gy)
        trace = cv2.add(jxx, jyy)
        diff = cv2.subtract(jxx, jyy)
        cross = cv2.multiply(jxy, 2.0)
        aniso, double_angle = cv2.cartToPolar(diff, cross)  # lambda1 - lambda2, 2*theta in [0, 2pi)
        # A Sobel step response of a contrast c edge is 4c; in a window of a barcode about a
        # third of the pixels are on an edge. Below this energy it is sensor noise or shading.
        floor = (4.0 * self.min_contrast) ** 2 / 3.0
        strong = (aniso > self.min_coherence * trace) & (trace > floor)
        # Orientation bands 45 degrees wide, every 22.5 degrees: any barcode (whose local
        # orientations spread well under 22.5 degrees) lies wholly in one band, and structures at
        # other angles (box borders, text across it) fall into other bands instead of merging.
        sector = cv2.convertScaleAbs(double_angle, alpha=_BANDS / (2.0 * math.pi))  # rounds
        sector = np.where(strong, sector % _BANDS, 255).astype(np.uint8)
        min_area = max(20, pwin * pwin * 2)
        components = []
        for band in range(_BANDS):
            if band + 1 < _BANDS:
                mask = cv2.inRange(sector, band, band + 1)
            else:
                mask = cv2.bitwise_or(cv2.inRange(sector, band, band), cv2.inRange(sector, 0, 0))
            if cv2.countNonZero(mask) < min_area:
                continue
            in_band = mask  # before closing: the band's own pixels (0 or 255)
            # Close along the band's across-the-bars direction only: it bridges the flat middles
            # of wide bars and spaces, but does not glue on text above or below the bars (and
            # nothing sits right beside a barcode: that is its quiet zone).
            mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, self._across_kernels[band])
            # Outer contours are far cheaper than labelling components, and enough here.
            contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
            for contour in contours:
                x, y, bw, bh = cv2.boundingRect(contour)
                # Cheap rejects before touching pixels: too small, or too thin to be many bars.
                if max(bw, bh) < 1.7 * pwin or bw * bh < min_area:
                    continue
                area = cv2.contourArea(contour)
                if area >= min_area:
                    components.append((area, contour, in_band, (x, y, bw, bh)))
        # A cluttered scene has many small coherent patches: look closely at the largest only.
        components.sort(key=lambda c: c[0], reverse=True)
        # Score them all (sums over their pixels, cheap), then measure the shape of the best
        # only until enough are kept: most patches of a cluttered scene are never looked at
        # again, and the shape costs the most.
        scored = []
        for _, contour, in_band, (x, y, bw, bh) in components[: self.max_regions * 4]:
            inside = np.zeros((bh, bw), np.uint8)
            cv2.drawContours(inside, [contour], 0, 1, thickness=cv2.FILLED, offset=(-x, -y))
            sub = cv2.bitwise_and(inside, in_band[y : y + bh, x : x + bw])  # 0 or 1
            patch = _Patch.of(sub, x, y, diff, cross, trace, min_area)
            if patch is not None:
                scored.append(patch)
        scored.sort(key=lambda p: p.score, reverse=True)
        # Neighbouring bands overlap: the same barcode may come out twice.
        unique: list[_Blob] = []
        for patch in scored:
            blob = patch.blob(pwin, pool)
            if blob is not None and not any(blob.same_place(u) for u in unique):
                unique.append(blob)
                if len(unique) == self.max_regions:
                    break
        return unique

    # -- stage 2: cut out upright at frame resolution -------------------------------------

    def _cut(self, grey: np.ndarray, blob: _Blob, scale: float, smeared: bool = False) -> Region | None:
        inv = 1.0 / scale
        cx, cy, theta = blob.cx * inv, blob.cy * inv, blob.theta
        # The grid's angle is good to a few degrees; a long code needs better (a row must stay
        # within the bars from end to end), so measure it again at full resolution, on the
        # middle of the region (bars; its fringe may be text or a label's edge).
        # Generous: the grid's region may miss the weaker ends of a code, and the trimming
        # below cuts the crop down to the bars anyway.
        width = blob.width * inv * 1.25 + 24.0
        height = blob.height * inv * 1.2 + 8.0
        # Most candidates in a cluttered scene are no barcode: a look at the grid's angle
        # already shows no bars there (a few degrees off smear little over the few middle rows
        # it averages), which rejects them before the costlier angle refinement.
        if _bar_box(self._warp(grey, cx, cy, theta, width, height), smeared) is None:
            return None
        probe_w, probe_h = max(16.0, blob.width * inv * 0.6), max(8.0, blob.height * inv * 0.5)
        for _ in range(2):
            delta = _residual_angle(self._warp(grey, cx, cy, theta, probe_w, probe_h))
            theta += delta
            if abs(delta) < math.radians(2.0):
                break
        # Cut again even after a small turn: a fraction of a degree decides some reads.
        crop = self._warp(grey, cx, cy, theta, width, height)
        # Trim to the rows that look like bars (not the text or edges merged into the region)
        # and to the span of the bars plus a quiet zone.
        box = _bar_box(crop, smeared)
        if box is None:
            return None
        x0, x1, y0, y1, module = box.x0, box.x1, box.y0, box.y1, box.module
        if box.edges < self.min_edges:
            return None
        ox, oy = (x0 + x1) / 2.0 - width / 2.0, (y0 + y1) / 2.0 - height / 2.0
        cos_t, sin_t = math.cos(theta), math.sin(theta)
        cx, cy = cx + ox * cos_t - oy * sin_t, cy + ox * sin_t + oy * cos_t
        width, height = float(x1 - x0), float(y1 - y0)
        # Decoders binarize with local windows of a few dozen pixels: modules much finer or
        # coarser than a few pixels read worse. Blur hides the narrowest bars and spaces, so
        # the estimate errs high; a shrunk code stays resolved all the same.
        kx = 1.0
        if 0 < module < 0.8 * self.target_module_px or module > 1.3 * self.target_module_px:
            kx = min(3.0, self.target_module_px / module)
        ky = min(kx, self.max_crop_height / max(height, 1.0))
        size = (max(1, int(width * kx)), max(1, int(height * ky)))
        if kx >= 1.0:
            # Enlarging (or keeping): sample the frame directly. Dropping rows when ky < 1 is
            # harmless, every row of upright bars holds the same code.
            affine = self._affine(cx, cy, theta, width, height, kx, ky)
            crop = cv2.warpAffine(
                grey, affine, size, flags=cv2.INTER_CUBIC if kx > 1.0 else cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
            )
        else:
            # Shrinking: point sampling would alias the bars; cut at full size, then average.
            affine = self._affine(cx, cy, theta, width, height, 1.0, 1.0)
            full = cv2.warpAffine(
                grey, affine, (max(1, int(width)), max(1, int(height))), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
            )
            crop = cv2.resize(full, size, interpolation=cv2.INTER_AREA)
            affine = np.diag([size[0] / full.shape[1], size[1] / full.shape[0]]) @ affine
        # Anything lighter than the spaces is background too: without this a white sheet
        # or glare beside the code makes a binarizer see the grey quiet zone as dark. And
        # stretch to full range, for dim scenes. (A new array: the crop as cut is kept.)
        linear = crop
        if box.light - box.dark >= 8.0:
            scale_levels = 255.0 / (box.light - box.dark)
            crop = cv2.convertScaleAbs(
                np.minimum(crop, np.uint8(min(255, round(box.light)))), alpha=scale_levels, beta=-box.dark * scale_levels
            )
        back = cv2.invertAffineTransform(affine)
        ch, cw = crop.shape[:2]
        corners = tuple(
            (float(back[0, 0] * x + back[0, 1] * y + back[0, 2]), float(back[1, 0] * x + back[1, 1] * y + back[1, 2]))
            for x, y in ((0, 0), (cw, 0), (cw, ch), (0, ch))
        )
        bars = ((box.first - x0) * kx, (box.last - x0) * kx)
        return Region(
            crop, back, math.degrees(theta), corners, blob.score, module * kx, bars, frame_module_px=module, linear=linear, edges=box.edges
        )

    def _warp(self, grey, cx, cy, theta, width, height) -> np.ndarray:
        affine = self._affine(cx, cy, theta, width, height, 1.0, 1.0)
        size = (max(1, int(width)), max(1, int(height)))
        return cv2.warpAffine(grey, affine, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)

    @staticmethod
    def _affine(cx: float, cy: float, theta: float, width: float, height: float, kx: float, ky: float) -> np.ndarray:
        """Frame -> crop: centre to origin, turn by -theta (bars vertical), scale, centre in crop."""
        cos_t, sin_t = math.cos(theta), math.sin(theta)
        rot = np.array([[cos_t, sin_t], [-sin_t, cos_t]])
        lin = np.diag([kx, ky]) @ rot
        offset = np.array([width * kx / 2.0, height * ky / 2.0]) - lin @ np.array([cx, cy])
        return np.hstack([lin, offset[:, None]]).astype(np.float64)


#: Regions are grouped on a grid about this many pixels long (a card barcode is still >10 wide).
GRID = 320
#: Orientation sectors of 22.5 degrees; a band is two neighbouring sectors.
_BANDS = 8


class Candidate:
    """A located region before it is cut out: where it is in the frame, and ``cut()``."""

    def __init__(self, locator: Locator, grey: np.ndarray, blob: _Blob, scale: float) -> None:
        self._locator, self._grey, self._blob, self._scale = locator, grey, blob, scale
        #: Centre in frame pixels, and the direction across the bars (radians).
        self.centre: Point = (blob.cx / scale, blob.cy / scale)
        self.theta = blob.theta
        #: Extent across the bars, frame pixels (the coherent area: about the bars' span).
        self.width = blob.width / scale
        self._cuts: dict[bool, Region | None] = {}  # by ``smeared``

    def cut(self, *, smeared: bool = False) -> Region | None:
        """The upright crop (:class:`Region`), or None when it shows no bars after all.

        ``smeared``: look for bars smeared by motion too (see :func:`_bar_box`), for a frame
        nothing read as it was cut at first; the same region when that cut counted edges enough.
        """
        if smeared:
            plain = self._cuts.get(False, False)
            if plain is not False and plain is not None and plain.edges >= _SMEARED_EDGES:
                return plain
        if smeared not in self._cuts:
            self._cuts[smeared] = self._locator._cut(self._grey, self._blob, self._scale, smeared)
        return self._cuts[smeared]


@dataclass(frozen=True)
class _Patch:
    """A coherent patch of one orientation band, at grid scale, scored but not yet measured:
    ``sub`` (0/1) marks its pixels in the box at ``x, y``; ``theta`` is the direction across
    its edges (radians), ``score`` their strength times coherence."""

    sub: np.ndarray
    x: int
    y: int
    theta: float
    score: float

    @classmethod
    def of(cls, sub, x, y, diff, cross, trace, min_area) -> _Patch | None:
        count = cv2.countNonZero(sub)
        if count < min_area:
            return None
        h, w = sub.shape
        sums = [cv2.mean(a[y : y + h, x : x + w], mask=sub)[0] * count for a in (diff, cross, trace)]
        # Doubled angles add up for parallel edges whatever their sign (dark-to-light or
        # light-to-dark), which a plain mean of gradient directions would cancel.
        sd, sc, st = sums
        strength = math.hypot(sd, sc)
        coherence = strength / (st + 1e-9)
        return cls(sub, x, y, 0.5 * math.atan2(sc, sd), strength * coherence)

    def blob(self, pwin: int, pool: int) -> _Blob | None:
        """Its extent across and along the bars, as a :class:`_Blob` in work pixels; None
        when that is no barcode's shape."""
        ys, xs = np.nonzero(self.sub)
        cos_t, sin_t = math.cos(self.theta), math.sin(self.theta)
        xs = xs + self.x
        ys = ys + self.y
        across = xs * cos_t + ys * sin_t  # along the gradient: across the bars
        along = -xs * sin_t + ys * cos_t  # along the bars
        a0, a1 = float(across.min()), float(across.max())
        b0, b1 = float(along.min()), float(along.max())
        width, height = a1 - a0, b1 - b0
        # A lone edge or line smears to about one window across; a barcode is many edges wide,
        # and not much taller than wide (a tall strip of parallel lines is a grille or a text
        # column's edge).
        if width < 2.5 * pwin or height < 2 or height > 3.0 * width:
            return None
        # Pixel centres: +0.5, then back to work-scale pixels.
        centre_a, centre_b = (a0 + a1) / 2.0, (b0 + b1) / 2.0
        cx = (centre_a * cos_t - centre_b * sin_t + 0.5) * pool
        cy = (centre_a * sin_t + centre_b * cos_t + 0.5) * pool
        return _Blob(cx, cy, self.theta, (width + 1) * pool, (height + 1) * pool, self.score)


@dataclass(frozen=True)
class _Blob:
    """A region at work scale: centre, direction across the bars (radians), extents, score."""

    cx: float
    cy: float
    theta: float
    width: float
    height: float
    score: float

    def same_place(self, other: _Blob) -> bool:
        near = math.hypot(self.cx - other.cx, self.cy - other.cy) < 0.25 * max(self.width, other.width)
        parallel = abs(math.cos(self.theta - other.theta)) > math.cos(math.radians(12))
        return near and parallel


def _line_kernel(degrees: float, length: int) -> np.ndarray:
    """A 1-pixel line structuring element through the centre, at ``degrees`` from the x axis."""
    kernel = np.zeros((length, length), np.uint8)
    c = length // 2
    dx, dy = c * math.cos(math.radians(degrees)), c * math.sin(math.radians(degrees))
    cv2.line(kernel, (round(c - dx), round(c - dy)), (round(c + dx), round(c + dy)), 1, 1)
    return kernel


def _residual_angle(crop: np.ndarray) -> float:
    """How far (radians) the bars in ``crop`` are from vertical.

    Only gradients within ~30 degrees of horizontal count: text strokes and edges at other
    angles would pull the estimate towards them.
    """
    gx = cv2.Sobel(crop, cv2.CV_16S, 1, 0, ksize=3)
    gy = cv2.Sobel(crop, cv2.CV_16S, 0, 1, ksize=3)
    xx = cv2.multiply(gx, gx, dtype=cv2.CV_32F)
    yy = cv2.multiply(gy, gy, dtype=cv2.CV_32F)
    xy = cv2.multiply(gx, gy, dtype=cv2.CV_32F)
    keep = (xx > 3.0 * yy).astype(np.uint8)
    if not keep.any():
        return 0.0
    diff = cv2.sumElems(cv2.subtract(xx, yy, mask=keep))[0]
    cross = 2.0 * cv2.sumElems(cv2.multiply(xy, keep, dtype=cv2.CV_32F))[0]
    return 0.5 * math.atan2(cross, diff)


@dataclass(frozen=True)
class _Bars:
    """Where the bars are in an upright crop: columns ``x0:x1`` (quiet zones included, may
    reach outside the crop), rows ``y0:y1``, edge count, module width, and the grey levels of
    bars (``dark``) and spaces (``light``)."""

    x0: int
    x1: int
    y0: int
    y1: int
    edges: int
    module: float
    dark: float
    light: float
    first: int  # outermost bar edges, in the crop's columns
    last: int


def _bar_box(crop: np.ndarray, smeared: bool = False) -> _Bars | None:
    """The rows of ``crop`` that look like vertical bars, the columns the bars span plus a
    quiet zone, and their grey levels; None when nothing looks like bars.

    A bar row has strong horizontal change and little vertical change; text rows have both,
    blank rows neither. The longest run of bar rows wins (bars are one contiguous block).

    Bars smeared by motion along the code (or far out of focus) change by a few grey levels per
    pixel over several pixels: against the noise's vertical change no row looks like bars, and
    no pixel step is an edge, or only the few strongest are (then the module looks several
    times too wide and the crop is shrunk to nothing). With ``smeared`` the change over three
    pixels is looked at too when the pixel steps found no bars or fewer edges than a short code
    has (the bars of a card have 80): the scanner asks for that only on a frame nothing read.
    """
    box = _bar_box_at(crop, 1)
    if smeared and (box is None or box.edges < _SMEARED_EDGES):
        wider = _bar_box_at(crop, 3)
        if wider is not None and (box is None or wider.edges > box.edges):
            return wider
    return box


def _bar_box_at(crop: np.ndarray, baseline: int) -> _Bars | None:
    """:func:`_bar_box` with horizontal changes taken over ``baseline`` pixels."""
    h, w = crop.shape[:2]
    if h < 4 or w < 16:
        return None
    # Mean absolute differences per row; OpenCV's saturating uint8 absdiff and row reduce are
    # exact here and several times cheaper than numpy's int16 diff on a full-resolution crop.
    dx = cv2.reduce(cv2.absdiff(crop[:, baseline:], crop[:, :-baseline]), 1, cv2.REDUCE_AVG, dtype=cv2.CV_32F).ravel()[:-1]  # h-1 rows
    dy = cv2.reduce(cv2.absdiff(crop[1:], crop[:-1]), 1, cv2.REDUCE_AVG, dtype=cv2.CV_32F).ravel()
    score = dx - 2.0 * dy
    # Smooth over a few rows: a scratch or a noisy row must not split the block.
    k = max(3, (h // 20) | 1)
    score = np.convolve(score, np.ones(k, np.float32) / k, mode="same")
    good = score > 0.3 * max(float(score.max()), 1e-6)
    if not good.any() or score.max() <= 1.0:
        return None
    # Longest run of good rows.
    padded = np.concatenate(([False], good, [False]))
    changes = np.flatnonzero(padded[1:] != padded[:-1])
    starts, ends = changes[::2], changes[1::2]
    longest = int(np.argmax(ends - starts))
    y0, y1 = int(starts[longest]), int(ends[longest]) + 1
    y0, y1 = max(0, y0 - 2), min(h, y1 + 2)
    # Average only a few middle rows: bars that are not quite parallel (perspective, a bent
    # label) smear when averaged over the whole height.
    mid, half = (y0 + y1) // 2, max(1, min((y1 - y0) // 8, 6))
    profile = crop[mid - half : mid + half + 1].mean(axis=0, dtype=np.float32)
    span = _bar_span(profile, baseline)
    if span is None:
        return None
    first, last, edges, module = span
    # Code 128 wants 10 modules of quiet zone, EAN 7 to 11: leave a good deal more than that
    # (decoders look for it in their binarized rows). It may reach beyond the crop: the caller
    # cuts again from the frame.
    quiet = max(16, int(20 * module))
    bars = profile[first : last + 1]
    dark, light = _percentiles(bars, 2, 98)
    return _Bars(first - quiet, last + 1 + quiet, y0, y1, edges, module, dark, light, first, last)


def _bar_span(profile: np.ndarray, baseline: int = 1) -> tuple[int, int, int, float] | None:
    """``(first, last, edges, module)``: the bars in a 1-D brightness profile across them.

    Edges are the peaks of the profile's derivative (its change over ``baseline`` pixels) that
    are strong relative to its contrast.
    Bars belong together while the gap between edges stays below a quiet zone: neighbouring
    lines (a label's edge, text beside the code) are cut off there. The group with the most
    edges is the code. Code 128, EAN and ITF average ~1.8 modules per bar or space, which turns
    the edge spacing into a module width (pixels).
    """
    deriv = profile[baseline:] - profile[:-baseline]
    if len(deriv) < 3:
        return None
    lo, hi = _percentiles(profile, 5, 95)
    threshold = max(4.0, 0.15 * float(hi - lo))
    mag = np.abs(deriv)
    # A peak needs both neighbours lower-or-equal, so one blurred edge counts once.
    core = mag[1:-1]
    idx = np.flatnonzero((core >= mag[:-2]) & (core > mag[2:]) & (core > threshold)) + 1
    if len(idx) < 2:
        return None
    gaps = np.diff(idx)
    # The widest bar or space is 4 modules (~2.2 median gaps) but blur can hide a thin one
    # between two wide ones; a quiet zone is 10 modules (5.5+ median gaps) and usually more.
    breaks = np.flatnonzero(gaps > 7.0 * _percentiles(gaps, 50)[0])
    starts = np.concatenate(([0], breaks + 1))
    ends = np.concatenate((breaks, [len(idx) - 1]))
    best = int(np.argmax(ends - starts))
    i0, i1 = int(starts[best]), int(ends[best])
    edges = i1 - i0 + 1
    if edges < 2:
        return None
    module = float(idx[i1] - idx[i0]) / (edges - 1) / 1.8
    shift = (baseline - 1) // 2  # a change over several pixels is centred within them
    return int(idx[i0]) + shift, int(idx[i1]) + shift, edges, module


def _percentiles(values: np.ndarray, *qs: float) -> list[float]:
    """``np.percentile(values, qs)`` (linear between ranks), from one sort: for the few hundred
    values of a profile np.percentile's generic machinery costs ~0.1 ms a call, the sort ~us."""
    ordered = np.sort(values, axis=None)
    top = len(ordered) - 1
    out = []
    for q in qs:
        pos = q / 100.0 * top
        lo = int(pos)
        hi = min(lo + 1, top)
        out.append(float(ordered[lo]) + (float(ordered[hi]) - float(ordered[lo])) * (pos - lo))
    return out
