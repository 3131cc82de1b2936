"""Counter scenes: a card as a kiosk camera above the counter sees it.

The camera model, in the order light goes through a real one:

1. **Geometry**: a pinhole camera (about 65 degrees horizontal field of view, like most USB
   webcams) looks down at the counter; the card is a flat 85.6 x 54 mm plate held at some
   distance (which sets its size in the frame), turned by any in-plane angle and tilted by a
   moderate amount (perspective). A thumb may hold it at an edge.
2. **Scene**: a desk or counter texture, papers with text, sometimes a product with an EAN-13:
   the pipeline is never tested on white paper only.
3. **Optics and motion**: glare from the card's laminate (added light, saturates), focus blur
   (gaussian: lens softness, plus defocus for cards nearer or further than the presentation
   zone the camera is focused on), motion blur of the card (the hand moves during the exposure;
   the background does not).
4. **Sensor**: exposure (low light), vignetting, white balance, noise that grows with the gain
   low light needs, 8-bit quantisation, then the JPEG compression of an MJPG webcam stream.

Everything random comes from the ``rng`` passed in, so a seed gives the same scene.

>>> import numpy as np
>>> from device.tools.synth.card import render_card
>>> rng = np.random.default_rng(7)
>>> conditions = Conditions.random(rng)
>>> frame = render_scene(render_card("0012345678", 1), conditions, rng=rng)
>>> frame.shape
(720, 1280, 3)
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image

from device.tools.synth.card import CARD_WIDTH_MM, card_size_px, render_product_label

#: Horizontal field of view of the modelled camera (typical USB webcams: 60-78 degrees).
HFOV_DEG = 65.0
#: Distance at which the modelled camera is sharpest, in mm: the middle of the presentation zone
#: (an installer sets the focus there, or an autofocus camera settles there).
FOCUS_MM = 200.0
#: Defocus blur (gaussian sigma, pixels of a 1280-wide frame) per unit of |1/distance - 1/focus|
#: (1/mm): a ~2.8 mm f/2 webcam lens with ~2.8 um pixels gives a blur disc of about
#: A*f/pitch*|1/Z - 1/F| = 1400 px*mm times that, i.e. a sigma of ~500 px*mm.
DEFOCUS_PX_MM = 450.0

# A handful of words for the papers lying on the counter.
_WORDS = (
    "receipt",
    "total",
    "EUR",
    "payment",
    "account",
    "invoice",
    "No.",
    "date",
    "2026",
    "paid",
    "cash",
    "change",
    "Riga",
    "office",
    "thank",
    "you",
    "VAT",
    "21%",
    "12.40",
    "kWh",
    "meter",
)


def _lerp(a: float, b: float, t: float) -> float:
    return a + (b - a) * t


@dataclass(frozen=True)
class Conditions:
    """How one scene is shot. All fields have "ideal" defaults: a level card, sharp, clean.

    Geometry: ``rotation_deg`` in-plane angle (0-360, 0 = barcode level, reading left to right),
    ``tilt_x_deg``/``tilt_y_deg`` the card plane's tilt about its horizontal / vertical axis,
    ``card_width_frac`` the card's width over the frame's width (distance), ``center`` the card
    centre in the frame as fractions of width and height.
    Optics: ``focus_blur_sigma`` in frame pixels, ``motion_blur_px`` length and
    ``motion_blur_angle_deg`` direction of the card's motion during the exposure.
    Light and sensor: ``light`` (1 = a well-lit counter, 0.3 = dim), ``noise_sigma`` (8-bit
    units at full light; the gain for low light multiplies it), ``glare`` (peak added light on
    the card, 0-1, at ``glare_at`` in card fractions with ``glare_radius_mm``), ``jpeg_quality``
    (None: no compression). Scene: ``clutter`` (0 = bare counter, 1-3 = more papers),
    ``distractor_ean13`` (a product with an EAN-13 lies on the counter), ``thumb`` (a thumb holds
    the card at an edge).
    """

    rotation_deg: float = 0.0
    tilt_x_deg: float = 0.0
    tilt_y_deg: float = 0.0
    card_width_frac: float = 0.35
    center: tuple[float, float] = (0.5, 0.5)
    focus_blur_sigma: float = 0.0
    motion_blur_px: float = 0.0
    motion_blur_angle_deg: float = 0.0
    light: float = 1.0
    noise_sigma: float = 0.0
    glare: float = 0.0
    glare_at: tuple[float, float] = (0.5, 0.5)
    glare_radius_mm: float = 12.0
    jpeg_quality: int | None = None
    clutter: int = 0
    distractor_ean13: bool = False
    thumb: bool = False

    @classmethod
    def random(cls, rng: np.random.Generator, difficulty: float = 0.5, frame_size: tuple[int, int] = (1280, 720)) -> Conditions:
        """Conditions drawn from what a counter camera sees, scaled by ``difficulty`` (0-1).

        0.5 is a typical counter (the default for benchmarks); 1.0 is a bad day (dim light,
        hurried clients, a card held far away). The in-plane angle is uniform over 0-360 at every
        difficulty: clients hold cards any way round.
        """
        d = float(np.clip(difficulty, 0.0, 1.0))
        # Distance: the client holds the card up to the camera, over the zone the kiosk marks for
        # it; people land around that spot, some too close, some too far (at 0.5: 68% within
        # 16-25 cm, all within 13-32 cm). With a 65 degree lens the card spans 20-50% of the width.
        spread = _lerp(0.12, 0.3, d)
        distance_mm = float(np.clip(FOCUS_MM * math.exp(rng.normal(0.0, spread)), _lerp(150.0, 110.0, d), _lerp(280.0, 360.0, d)))
        frac = CARD_WIDTH_MM * focal_px(1280) / (distance_mm * 1280)
        # Perspective: the card is rarely square to the camera; tilt in a random direction.
        tilt = min(abs(rng.normal(0.0, _lerp(6.0, 16.0, d))), _lerp(15.0, 40.0, d))
        tilt_dir = rng.uniform(0.0, 2 * math.pi)
        # Light: dim counters need gain, which brings noise, and longer exposures (motion blur).
        light = float(rng.uniform(_lerp(0.75, 0.3, d), 1.1))
        # Focus: lens softness and defocus (growing away from the focus distance) add as variances.
        defocus = DEFOCUS_PX_MM * abs(1.0 / distance_mm - 1.0 / FOCUS_MM)
        # (The warp's resampling already softens by ~0.3 px, about a sensor's pixel aperture; the
        # lens and demosaicing add 0.2-0.75 px at 0.5, a cheap lens or a smudge up to 0.9.)
        focus = float(math.hypot(rng.uniform(0.2, _lerp(0.6, 0.9, d)), defocus))
        # Motion: a hand "holding still" drifts and trembles at 1-3 cm/s; during the exposure
        # (1/60 s in good light, longer when dim, up to a frame time) that smears the card by
        # speed * exposure, i.e. ~0.3-1.5 narrow bars whatever the distance.
        speed_mm_s = abs(rng.normal(0.0, _lerp(10.0, 30.0, d)))
        exposure_s = min(1.0 / 60.0 / max(light, 0.01), 1.0 / 30.0)
        px_per_mm = frac * frame_size[0] / CARD_WIDTH_MM
        motion = float(min(speed_mm_s * exposure_s * px_per_mm, 20.0))
        glare = float(rng.uniform(0.15, _lerp(0.4, 0.7, d))) if rng.random() < _lerp(0.25, 0.5, d) else 0.0
        conditions = cls(
            rotation_deg=float(rng.uniform(0.0, 360.0)),
            tilt_x_deg=float(tilt * math.cos(tilt_dir)),
            tilt_y_deg=float(tilt * math.sin(tilt_dir)),
            card_width_frac=frac,
            center=(float(rng.uniform(0.3, 0.7)), float(rng.uniform(0.3, 0.7))),
            focus_blur_sigma=focus,
            motion_blur_px=motion,
            motion_blur_angle_deg=float(rng.uniform(0.0, 180.0)),
            light=light,
            noise_sigma=float(rng.uniform(1.0, _lerp(3.0, 5.0, d))),
            glare=glare,
            glare_at=(float(rng.uniform(0.1, 0.9)), float(rng.uniform(0.1, 0.9))),
            glare_radius_mm=float(rng.uniform(6.0, 20.0)),
            jpeg_quality=int(rng.integers(round(_lerp(75, 55, d)), 96)),
            clutter=int(rng.integers(0, 4)),
            distractor_ean13=bool(rng.random() < 0.3),
            thumb=bool(rng.random() < 0.6),
        )
        return fit_in_view(conditions, rng, frame_size)

    def buckets(self) -> dict[str, str]:
        """Named condition buckets, for read rates "by condition" in benchmarks."""
        # A barcode's orientation matters modulo 180 degrees; fold to 0-90 from level.
        angle = self.rotation_deg % 180.0
        angle = min(angle, 180.0 - angle)
        tilt = math.hypot(self.tilt_x_deg, self.tilt_y_deg)
        return {
            "angle": _bucket(angle, (10, 30, 60), ("0-10", "10-30", "30-60", "60-90"), "deg"),
            "size": _bucket(self.card_width_frac * 100, (25, 35, 45), ("<25", "25-35", "35-45", ">=45"), "% width"),
            "tilt": _bucket(tilt, (10, 20), ("<10", "10-20", ">=20"), "deg"),
            "focus blur": _bucket(self.focus_blur_sigma, (0.8, 1.3), ("<0.8", "0.8-1.3", ">=1.3"), "px"),
            "motion blur": _bucket(self.motion_blur_px, (2, 5), ("<2", "2-5", ">=5"), "px"),
            "light": _bucket(self.light, (0.5, 0.8), ("<0.5", "0.5-0.8", ">=0.8"), ""),
            "glare": "yes" if self.glare > 0 else "no",
            "jpeg": _bucket(self.jpeg_quality or 100, (70, 85), ("<70", "70-85", ">=85"), "q"),
        }


def fit_in_view(
    conditions: Conditions,
    rng: np.random.Generator,
    frame_size: tuple[int, int] = (1280, 720),
    margin_px: float = 8.0,
    box: tuple[float, float, float, float] = (0.0, 0.0, 1.0, 1.0),
) -> Conditions:
    """``conditions`` moved (and if need be the card made smaller) so the whole card is in view.

    A presented card is in view: the kiosk asks for that. Partly visible cards are the video's
    business (sliding in and out). The centre is redrawn at random until the card fits.
    ``box`` (left, top, right, bottom as fractions of the frame) keeps the card in one part of the
    view, for scenes with several cards side by side.
    """
    w, h = frame_size
    bx0, by0, bx1, by1 = box[0] * w, box[1] * h, box[2] * w, box[3] * h

    def centre() -> tuple[float, float]:
        return (_lerp(box[0], box[2], float(rng.uniform(0.3, 0.7))), _lerp(box[1], box[3], float(rng.uniform(0.3, 0.7))))

    c = conditions
    if box != (0.0, 0.0, 1.0, 1.0):
        c = dataclasses.replace(c, center=centre())
    for attempt in range(40):
        quad = card_quad(card_size_px(300), c, frame_size)
        if (
            quad[:, 0].min() >= bx0 + margin_px
            and quad[:, 1].min() >= by0 + margin_px
            and quad[:, 0].max() <= bx1 - margin_px
            and quad[:, 1].max() <= by1 - margin_px
        ):
            return c
        frac = c.card_width_frac * (0.95 if attempt >= 20 else 1.0)
        c = dataclasses.replace(c, card_width_frac=frac, center=centre())
    return dataclasses.replace(c, center=(_lerp(box[0], box[2], 0.5), _lerp(box[1], box[3], 0.5)))


def _bucket(value: float, edges: tuple[float, ...], names: tuple[str, ...], unit: str) -> str:
    # One name more than edges: the last is for values at or above every edge, after the loop.
    for edge, name in zip(edges, names, strict=False):
        if value < edge:
            return f"{name} {unit}".strip()
    return f"{names[-1]} {unit}".strip()


def focal_px(frame_width: int) -> float:
    """Focal length in pixels of the modelled camera for a frame ``frame_width`` wide."""
    return (frame_width / 2) / math.tan(math.radians(HFOV_DEG / 2))


def _distance_for_frac(frac: float, frame_width: int = 1280) -> float:
    """Distance (mm) at which a card facing the camera spans ``frac`` of the frame's width."""
    return focal_px(frame_width) * CARD_WIDTH_MM / (frac * frame_width)


def _rotation(rx: float, ry: float, rz: float) -> np.ndarray:
    cx, sx = math.cos(rx), math.sin(rx)
    cy, sy = math.cos(ry), math.sin(ry)
    cz, sz = math.cos(rz), math.sin(rz)
    mx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    my = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    mz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return my @ mx @ mz


def card_homography(
    layer_size: tuple[int, int],
    card_size: tuple[int, int],
    conditions: Conditions,
    frame_size: tuple[int, int],
    card_origin: tuple[float, float] | None = None,
) -> np.ndarray:
    """3x3 homography from a card layer's pixels to frame pixels.

    ``layer_size`` is the (width, height) of the image warped (the card, perhaps with a margin
    around it); ``card_size`` is the card's own (width, height) in that image's pixels, and
    ``card_origin`` the card's top-left corner in it (None: the card is centred).
    """
    frame_w, frame_h = frame_size
    f = focal_px(frame_w)
    mm_per_px = CARD_WIDTH_MM / card_size[0]
    distance = _distance_for_frac(conditions.card_width_frac, frame_w)
    rot = _rotation(math.radians(conditions.tilt_x_deg), math.radians(conditions.tilt_y_deg), math.radians(conditions.rotation_deg))
    # The card centre sits on the ray through the requested frame point, at the distance.
    cx = conditions.center[0] * frame_w
    cy = conditions.center[1] * frame_h
    ray = np.array([(cx - frame_w / 2) / f, (cy - frame_h / 2) / f, 1.0])
    centre = ray * distance
    lw, lh = layer_size
    if card_origin is None:
        card_origin = ((lw - card_size[0]) / 2, (lh - card_size[1]) / 2)
    mid_u, mid_v = card_origin[0] + card_size[0] / 2, card_origin[1] + card_size[1] / 2
    src = np.array([[0, 0], [lw, 0], [lw, lh], [0, lh]], dtype=np.float32)
    dst = []
    for u, v in src:
        p = rot @ np.array([(u - mid_u) * mm_per_px, (v - mid_v) * mm_per_px, 0.0]) + centre
        z = max(p[2], 1.0)
        dst.append((f * p[0] / z + frame_w / 2, f * p[1] / z + frame_h / 2))
    return cv2.getPerspectiveTransform(src, np.array(dst, dtype=np.float32))


def card_quad(card_size: tuple[int, int], conditions: Conditions, frame_size: tuple[int, int]) -> np.ndarray:
    """The card's four corners in the frame (4x2 float array: top-left, top-right, ...)."""
    h = card_homography(card_size, card_size, conditions, frame_size)
    w, hgt = card_size
    pts = np.array([[[0, 0], [w, 0], [w, hgt], [0, hgt]]], dtype=np.float64)
    return cv2.perspectiveTransform(pts, h)[0]


# --- the scene -------------------------------------------------------------------------------


def _smooth_noise(rng: np.random.Generator, size: tuple[int, int], cells: tuple[int, int]) -> np.ndarray:
    small = rng.random((cells[1], cells[0])).astype(np.float32)
    return cv2.resize(small, size, interpolation=cv2.INTER_CUBIC)


def render_background(size: tuple[int, int], rng: np.random.Generator, *, clutter: int = 1, distractor_ean13: bool = False) -> np.ndarray:
    """An empty counter: float32 BGR in 0-1, ``size`` = (width, height).

    A wood, laminate or stone-like surface with uneven light, ``clutter`` papers with text (and
    pens), and when ``distractor_ean13`` a product label with an EAN-13 barcode.
    """
    w, h = size
    kind = int(rng.integers(0, 3))
    base = {0: (0.32, 0.45, 0.62), 1: (0.72, 0.72, 0.70), 2: (0.50, 0.52, 0.55)}[kind]
    base = np.array(base, dtype=np.float32) * rng.uniform(0.8, 1.15, 3).astype(np.float32)
    shade = 0.85 + 0.3 * _smooth_noise(rng, size, (4, 3))
    texture = _smooth_noise(rng, size, (w // 8, h // 8)) - 0.5
    if kind == 0:
        # Wood grain: stretched noise along one axis, warped a little.
        grain = cv2.resize(rng.random((h // 2, 12)).astype(np.float32), size, interpolation=cv2.INTER_CUBIC)
        texture = 0.6 * texture + 1.2 * (grain - 0.5)
    img = base[None, None, :] * (shade * (1.0 + 0.12 * texture))[..., None]
    img = img.astype(np.float32)

    # Things on the counter are further from the camera than a presented card: their size in the
    # frame follows from the counter's distance (50-70 cm).
    frame_mm = rng.uniform(500, 700) * w / focal_px(w)
    for _ in range(max(clutter, 0)):
        _paste_paper(img, rng, frame_mm)
        if rng.random() < 0.4:
            _draw_pen(img, rng)
    if distractor_ean13:
        digits = "".join(str(int(x)) for x in rng.integers(0, 10, 12))
        label = render_product_label(digits)
        _paste_rgba(img, label, rng, width_frac=60.0 / frame_mm)
    return np.clip(img, 0.0, 1.0)


def _paste_paper(img: np.ndarray, rng: np.random.Generator, frame_mm: float) -> None:
    pw, ph = int(rng.integers(260, 520)), int(rng.integers(320, 620))
    paper = np.full((ph, pw, 4), 255, np.uint8)
    paper[..., :3] = (np.array([240, 244, 246]) * rng.uniform(0.9, 1.0)).astype(np.uint8)
    y = int(rng.integers(20, 50))
    while y < ph - 20:
        x = int(rng.integers(15, 40))
        line = " ".join(rng.choice(_WORDS, int(rng.integers(2, 6))))
        scale = float(rng.uniform(0.6, 1.1))
        cv2.putText(paper, line, (x, y), cv2.FONT_HERSHEY_SIMPLEX, scale, (40, 40, 40, 255), 2, cv2.LINE_AA)
        y += int(rng.integers(28, 48))
    # Receipts and A6-A5 sheets: 80-150 mm wide.
    _paste_rgba(img, Image.fromarray(paper[..., [2, 1, 0, 3]], "RGBA"), rng, width_frac=rng.uniform(80, 150) / frame_mm)


def _draw_pen(img: np.ndarray, rng: np.random.Generator) -> None:
    h, w = img.shape[:2]
    p0 = np.array([rng.uniform(0, w), rng.uniform(0, h)])
    ang = rng.uniform(0, math.pi)
    p1 = p0 + 180 * np.array([math.cos(ang), math.sin(ang)])
    colour = tuple(float(c) for c in rng.uniform(0.05, 0.5, 3))
    cv2.line(img, tuple(int(v) for v in p0), tuple(int(v) for v in p1), colour, 11, cv2.LINE_AA)


def _paste_rgba(img: np.ndarray, patch: Image.Image, rng: np.random.Generator, *, width_frac: float) -> None:
    """Lay a flat thing (paper, label) on the counter at a random place and angle."""
    h, w = img.shape[:2]
    arr = np.asarray(patch.convert("RGBA"), dtype=np.float32) / 255.0
    ph, pw = arr.shape[:2]
    scale = width_frac * w / pw
    angle = rng.uniform(0, 360)
    m = cv2.getRotationMatrix2D((pw / 2, ph / 2), angle, scale)
    m[:, 2] += (rng.uniform(0.05, 0.95) * w - pw / 2, rng.uniform(0.05, 0.95) * h - ph / 2)
    _composite(img, _premultiply(arr[..., [2, 1, 0]], arr[..., 3]), m, affine=True)


def _premultiply(rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """BGRA float with colour premultiplied by alpha: warps and blurs without dark fringes."""
    return np.dstack([rgb * alpha[..., None], alpha]).astype(np.float32)


def _composite(
    img: np.ndarray, premult: np.ndarray, m: np.ndarray, *, affine: bool, motion: np.ndarray | None = None, glare: np.ndarray | None = None
) -> None:
    """Warp a premultiplied BGRA layer into ``img`` in place: over-composite, then add glare.

    Only the layer's bounding box in the frame is touched (most layers are small).
    """
    h, w = img.shape[:2]
    m3 = np.vstack([m, [0, 0, 1]]) if affine else m
    lh, lw = premult.shape[:2]
    corners = cv2.perspectiveTransform(np.array([[[0, 0], [lw, 0], [lw, lh], [0, lh]]], np.float64), m3)[0]
    pad = (motion.shape[0] if motion is not None else 0) + 2
    x0, y0 = (max(int(math.floor(v)) - pad, 0) for v in corners.min(axis=0))
    x1, y1 = min(int(math.ceil(corners[:, 0].max())) + pad, w), min(int(math.ceil(corners[:, 1].max())) + pad, h)
    if x1 <= x0 or y1 <= y0:
        return  # entirely outside the frame
    m_roi = np.array([[1, 0, -x0], [0, 1, -y0], [0, 0, 1]], np.float64) @ m3
    size = (x1 - x0, y1 - y0)

    def warp(a: np.ndarray) -> np.ndarray:
        return cv2.warpPerspective(a, m_roi, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)

    layer = warp(premult)
    light = warp(glare.astype(np.float32)) if glare is not None else None
    if motion is not None:
        layer = cv2.filter2D(layer, -1, motion, borderType=cv2.BORDER_CONSTANT)
        if light is not None:
            light = cv2.filter2D(light, -1, motion, borderType=cv2.BORDER_CONSTANT)
    roi = img[y0:y1, x0:x1]
    roi *= 1.0 - layer[..., 3:4]
    roi += layer[..., :3]
    if light is not None:
        roi += light[..., None]


def motion_kernel(length_px: float, angle_deg: float) -> np.ndarray | None:
    """A normalised line kernel for motion blur, or None when shorter than a pixel."""
    if length_px < 1.0:
        return None
    size = int(math.ceil(length_px)) | 1
    size += 2
    k = np.zeros((size, size), np.float32)
    c = size / 2 - 0.5
    dx, dy = math.cos(math.radians(angle_deg)), math.sin(math.radians(angle_deg))
    # Sample the segment finely so that a fractional length still gets its weight.
    for t in np.linspace(-length_px / 2, length_px / 2, int(length_px * 4) + 1):
        x, y = c + t * dx, c + t * dy
        x0, y0 = int(math.floor(x)), int(math.floor(y))
        fx, fy = x - x0, y - y0
        for xx, yy, wgt in (
            (x0, y0, (1 - fx) * (1 - fy)),
            (x0 + 1, y0, fx * (1 - fy)),
            (x0, y0 + 1, (1 - fx) * fy),
            (x0 + 1, y0 + 1, fx * fy),
        ):
            if 0 <= xx < size and 0 <= yy < size:
                k[yy, xx] += wgt
    return k / k.sum()


@dataclass
class CardLayer:
    """A card ready to be placed in frames: BGR float, alpha, glare map, and the card's own size.

    The layer is the card plus whatever sticks out of it (the thumb holding it); ``card_origin``
    is the card's top-left corner in the layer. Build once per card with :func:`card_layer`,
    place many times (video frames).
    """

    rgb: np.ndarray
    alpha: np.ndarray
    glare: np.ndarray | None
    card_size: tuple[int, int]
    card_origin: tuple[int, int] = (0, 0)

    def __post_init__(self) -> None:
        self.premultiplied = _premultiply(self.rgb, self.alpha)

    @property
    def size(self) -> tuple[int, int]:
        return self.rgb.shape[1], self.rgb.shape[0]


def card_layer(
    card_image: Image.Image, conditions: Conditions, rng: np.random.Generator, frame_size: tuple[int, int] = (1280, 720)
) -> CardLayer:
    """Prepare ``card_image`` (RGBA or RGB, true size) with thumb and glare as ``conditions`` ask.

    The layer is built at about the resolution the card will have in a ``frame_size`` frame at
    ``conditions``' distance (area-averaged down from the true-size image, as the sensor's pixels
    average light), which keeps the warp free of aliasing and cheap.
    """
    src = np.asarray(card_image.convert("RGBA"))
    full_w, full_h = src.shape[1], src.shape[0]
    quad = card_quad((full_w, full_h), conditions, frame_size)
    edges = [float(np.linalg.norm(quad[(i + 1) % 4] - quad[i])) for i in range(4)]
    # At 2x the frame's scale the area averaging and the warp's bilinear interpolation together
    # soften about as much as a sensor's pixel aperture does (~0.3 px), not more.
    scale = min(1.0, 2.0 * max(max(edges[0], edges[2]) / full_w, max(edges[1], edges[3]) / full_h))
    if scale < 1.0:
        size = (max(int(round(full_w * scale)), 8), max(int(round(full_h * scale)), 8))
        src = cv2.resize(src, size, interpolation=cv2.INTER_AREA)
    card = src.astype(np.float32) / 255.0
    ch, cw = card.shape[:2]
    px_per_mm = cw / CARD_WIDTH_MM
    margin = int(round(40 * px_per_mm))
    lh, lw = ch + 2 * margin, cw + 2 * margin
    rgb = np.zeros((lh, lw, 3), np.float32)
    alpha = np.zeros((lh, lw), np.float32)
    # Plastic is not paper white, and a printed black is not zero.
    rgb[margin : margin + ch, margin : margin + cw] = 0.06 + 0.86 * card[..., [2, 1, 0]]
    alpha[margin : margin + ch, margin : margin + cw] = card[..., 3]

    if conditions.thumb:
        # A thumb over one edge, reaching 3-8 mm onto the card, on the top or a short side
        # (people hold a card there without meaning to cover its barcode).
        side = int(rng.integers(0, 3))
        reach = rng.uniform(3, 8) * px_per_mm
        half_w, half_len = 9 * px_per_mm, 28 * px_per_mm
        if side == 0:  # top edge, thumb pointing down
            cx, cy = margin + rng.uniform(0.2, 0.8) * cw, margin + reach - half_len
            axes = (half_w, half_len)
        else:  # left or right edge, upper half, thumb pointing inwards
            inwards = 1 if side == 1 else -1
            cx = (margin if side == 1 else margin + cw) + inwards * (reach - half_len)
            cy = margin + rng.uniform(0.15, 0.45) * ch
            axes = (half_len, half_w)
        mask = np.zeros((lh, lw), np.uint8)
        cv2.ellipse(mask, (int(cx), int(cy)), (int(axes[0]), int(axes[1])), float(rng.uniform(-12, 12)), 0, 360, 255, -1, cv2.LINE_AA)
        m = mask.astype(np.float32)[..., None] / 255.0
        skin = np.array([0.50, 0.62, 0.84], np.float32) * rng.uniform(0.65, 1.05)
        shade = 0.8 + 0.2 * _smooth_noise(rng, (lw, lh), (6, 4))[..., None]
        rgb = rgb * (1 - m) + skin * shade * m
        alpha = np.maximum(alpha, m[..., 0])

    glare = None
    if conditions.glare > 0:
        gx = margin + conditions.glare_at[0] * cw
        gy = margin + conditions.glare_at[1] * ch
        yy, xx = np.mgrid[0:lh, 0:lw].astype(np.float32)
        r = conditions.glare_radius_mm * px_per_mm
        # An elongated highlight, as a window or ceiling lamp reflected in a laminate.
        ang = rng.uniform(0, math.pi)
        u = (xx - gx) * math.cos(ang) + (yy - gy) * math.sin(ang)
        v = -(xx - gx) * math.sin(ang) + (yy - gy) * math.cos(ang)
        glare = conditions.glare * np.exp(-(u**2 / (2 * (1.8 * r) ** 2) + v**2 / (2 * r**2)))
        # Only the card's laminate reflects.
        card_mask = np.zeros((lh, lw), np.float32)
        card_mask[margin : margin + ch, margin : margin + cw] = card[..., 3]
        glare = (glare * card_mask).astype(np.float32)
    # Keep only what is not transparent: the margin was room for the thumb, and every pixel of
    # the layer costs in each frame it is placed in.
    ys, xs = np.nonzero(alpha > 0)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    crop = (slice(y0, y1), slice(x0, x1))
    return CardLayer(
        np.ascontiguousarray(rgb[crop]),
        np.ascontiguousarray(alpha[crop]),
        None if glare is None else np.ascontiguousarray(glare[crop]),
        (cw, ch),
        (int(margin - x0), int(margin - y0)),
    )


def place_card(img: np.ndarray, layer: CardLayer, conditions: Conditions) -> None:
    """Warp a prepared card into a float BGR frame in place (geometry and motion blur)."""
    h, w = img.shape[:2]
    hom = card_homography(layer.size, layer.card_size, conditions, (w, h), layer.card_origin)
    premult, glare = layer.premultiplied, layer.glare
    # The layer is normally built at the frame's scale (card_layer); if it is much larger here,
    # shrink it with area averaging first so the warp does not alias bars into moire.
    quad = cv2.perspectiveTransform(
        np.array([[[0, 0], [layer.size[0], 0], [layer.size[0], layer.size[1]], [0, layer.size[1]]]], np.float64), hom
    )[0]
    edges = [np.linalg.norm(quad[(i + 1) % 4] - quad[i]) for i in range(4)]
    shrink = max(max(edges[0], edges[2]) / layer.size[0], max(edges[1], edges[3]) / layer.size[1])
    if shrink < 0.4:
        s = shrink * 1.1
        new = (max(int(layer.size[0] * s), 2), max(int(layer.size[1] * s), 2))
        sx, sy = new[0] / layer.size[0], new[1] / layer.size[1]
        premult = cv2.resize(premult, new, interpolation=cv2.INTER_AREA)
        if glare is not None:
            glare = cv2.resize(glare, new, interpolation=cv2.INTER_AREA)
        hom = hom @ np.diag([1 / sx, 1 / sy, 1.0])
    motion = motion_kernel(conditions.motion_blur_px, conditions.motion_blur_angle_deg)
    _composite(img, premult, hom, affine=False, motion=motion, glare=glare)


def expose(
    img: np.ndarray,
    conditions: Conditions,
    rng: np.random.Generator,
    *,
    vignette: np.ndarray | None = None,
    white_balance: np.ndarray | None = None,
    noise: np.ndarray | None = None,
) -> np.ndarray:
    """The camera's optics and sensor: float BGR scene (0-1) -> uint8 BGR frame (JPEG if asked).

    ``vignette``, ``white_balance`` and ``noise`` (standard normal, the frame's shape) may be
    given to keep them fixed across a video's frames (and to save time); else they are drawn.
    """
    h, w = img.shape[:2]
    if conditions.focus_blur_sigma > 0.05:
        out = cv2.GaussianBlur(img, (0, 0), conditions.focus_blur_sigma)
    else:
        out = img.copy()
    if vignette is None:
        vignette = make_vignette((w, h), rng)
    if white_balance is None:
        white_balance = rng.uniform(0.92, 1.08, 3).astype(np.float32)
    # (OpenCV's element-wise functions instead of numpy: this runs for every video frame.)
    illumination = cv2.merge([vignette * float(c) for c in white_balance])
    cv2.multiply(out, illumination, dst=out, scale=float(conditions.light))
    # Sensor noise: a read-noise floor plus shot noise ...
    sigma = conditions.noise_sigma / 255.0
    if sigma > 0:
        if noise is None:
            noise = rng.standard_normal(out.shape, dtype=np.float32)
        noise = np.ascontiguousarray(noise)
        cv2.max(out, 0.0, dst=out)
        shot = cv2.sqrt(out)
        cv2.multiply(shot, noise, dst=shot, scale=sigma)
        cv2.add(out, shot, dst=out)
        cv2.scaleAdd(noise, 0.5 * sigma, out, dst=out)
    # ... then the gain auto-exposure applies in dim light (up to a limit), amplifying the noise.
    cv2.max(out, 0.0, dst=out)
    frame = cv2.convertScaleAbs(out, alpha=255.0 * auto_exposure_gain(conditions.light))
    if conditions.jpeg_quality is not None:
        ok, buf = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, int(conditions.jpeg_quality)])
        frame = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    return frame


def auto_exposure_gain(light: float) -> float:
    """The gain a webcam's auto-exposure applies at ``light`` (1 at a well-lit counter, at most 2.5)."""
    return float(np.clip(0.85 / max(light, 0.01), 1.0, 2.5))


def make_vignette(size: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """Corner light falloff of a cheap wide lens (float32, 1 in the centre)."""
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    r2 = ((xx - w / 2) / (w / 2)) ** 2 + ((yy - h / 2) / (w / 2)) ** 2
    return (1.0 - rng.uniform(0.15, 0.35) * r2).astype(np.float32)


def render_scene(
    card_image: Image.Image | None, conditions: Conditions, size: tuple[int, int] = (1280, 720), rng: np.random.Generator | None = None
) -> np.ndarray:
    """A camera frame (uint8 BGR, ``size`` = (width, height)) of ``card_image`` on a counter.

    ``card_image`` is a true-size card (:func:`device.tools.synth.card.render_card`) or any flat
    object image; None renders the empty counter. Same ``rng`` state, same frame.
    """
    if rng is None:
        rng = np.random.default_rng(0)
    img = render_background(size, rng, clutter=conditions.clutter, distractor_ean13=conditions.distractor_ean13)
    if card_image is not None:
        place_card(img, card_layer(card_image, conditions, rng, size), conditions)
    return expose(img, conditions, rng)


def replace(conditions: Conditions, **changes) -> Conditions:
    """``conditions`` with some fields changed (a shorthand for :func:`dataclasses.replace`)."""
    return dataclasses.replace(conditions, **changes)
