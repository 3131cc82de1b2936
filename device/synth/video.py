"""Presentation videos: clients showing cards (and other things) to the counter camera, one after another.

Each presentation: the empty counter for a while, the card slides in from the client's side with
motion blur, is held for 1-2 s at some angle with small hand jitter, and slides out. The camera's
conditions (light, focus, noise) stay the same for the whole video, as they would at one counter.
The function returns the truth for each presentation, so benchmarks and tests can check "every
presentation identified, within N frames of the card entering the view".

>>> truths = write_presentation_video("counter.avi", [Presentation.card("0012345678", 1),
...                                                   Presentation.product_ean13("590123412345")])  # doctest: +SKIP
>>> truths[0].is_card, truths[1].is_card                                                             # doctest: +SKIP
(True, False)
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from device.card import CARD_V1, Card, identify
from device.synth.card import render_card, render_product_label
from device.synth.scene import (
    Conditions,
    card_layer,
    card_quad,
    expose,
    fit_in_view,
    make_vignette,
    place_card,
    render_background,
    replace,
)

#: Share of the frame interval the shutter is open (a webcam indoors: ~1/30 s at 15 fps).
SHUTTER_FRACTION = 0.5


@dataclass(frozen=True)
class Presentation:
    """One thing a client shows: its barcode ``payload`` and ``symbology``, for ``hold_s`` seconds.

    Use the constructors: :meth:`card`, :meth:`bad_check`, :meth:`foreign_code128`,
    :meth:`product_ean13`. ``contract`` is what is printed on a card (empty for products).
    """

    payload: str
    symbology: str = "Code128"
    kind: str = "card"
    contract: str = ""
    hold_s: float = 1.5

    @classmethod
    def card(cls, contract: str, issue: int = 1, hold_s: float = 1.5) -> "Presentation":
        """A valid client card (spec v1)."""
        return cls(CARD_V1.encode(contract, issue), "Code128", "card", contract, hold_s)

    @classmethod
    def bad_check(cls, contract: str, issue: int = 1, hold_s: float = 1.5) -> "Presentation":
        """A client card whose check digits are wrong (misprinted or forged)."""
        good = CARD_V1.encode(contract, issue)
        bad = good[:-2] + f"{(int(good[-2:]) + 1) % 100:02d}"
        return cls(bad, "Code128", "bad-check", contract, hold_s)

    @classmethod
    def foreign_code128(cls, text: str = "SHOP-CLUB 4711 0815", hold_s: float = 1.5) -> "Presentation":
        """Another company's card (a loyalty card) with a Code 128 of some other text."""
        return cls(text, "Code128", "foreign-code128", "", hold_s)

    @classmethod
    def product_ean13(cls, digits: str = "590123412345", hold_s: float = 1.5) -> "Presentation":
        """A product with an EAN-13 (12 digits, the check digit is added; or all 13)."""
        import barcode

        return cls(barcode.EAN13(digits).get_fullcode(), "EAN13", "product-ean13", "", hold_s)

    @property
    def is_card(self) -> bool:
        """True when the kiosk must identify a client from this presentation."""
        return isinstance(identify(self.payload, self.symbology), Card)


@dataclass(frozen=True)
class PresentationTruth:
    """What happened in a video for one presentation (frame indices are 0-based).

    ``enter_frame``: first frame in which any part of the card is in view. ``full_from`` ..
    ``full_to``: first and last frame in which the whole card is in view. ``left_frame``: first
    frame after that in which no part of it is in view (the video may end before: then it is the
    frame count).
    """

    payload: str
    symbology: str
    kind: str
    is_card: bool
    enter_frame: int
    full_from: int
    full_to: int
    left_frame: int


def default_presentations() -> list[Presentation]:
    """A short mixed queue for demos: three clients, a product, a bad card, one more client."""
    return [
        Presentation.card("0012345678", 1),
        Presentation.card("4000000017", 2, hold_s=1.2),
        Presentation.product_ean13("590123412345", hold_s=1.0),
        Presentation.card("0000009999", 1, hold_s=1.8),
        Presentation.bad_check("1234567890", 1, hold_s=1.0),
        Presentation.foreign_code128(hold_s=1.0),
    ]


def _object_image(p: Presentation, rng: np.random.Generator):
    if p.symbology == "EAN13":
        return render_product_label(p.payload)
    names = ("Jana Ozola", "Peteris Kalnins", "Anna Berzina", "Maris Liepa", "Ilze Krumina")
    name = names[int(rng.integers(len(names)))]
    if p.kind == "foreign-code128":
        return render_card("", 1, name=name, utility="Shop Club", payload=p.payload,
                           address="Member since 2019")
    return render_card(p.contract, 1, name=name, payload=p.payload)


def _ease(t: float) -> float:
    """Smooth start and stop (a hand decelerates into place)."""
    t = min(max(t, 0.0), 1.0)
    return t * t * (3 - 2 * t)


def _in_view(quad: np.ndarray, size: tuple[int, int]) -> tuple[bool, bool]:
    """(any part in view, whole card in view) for a card quad in a frame of ``size``."""
    w, h = size
    inside = (quad[:, 0] >= 0) & (quad[:, 0] <= w - 1) & (quad[:, 1] >= 0) & (quad[:, 1] <= h - 1)
    if inside.all():
        return True, True
    frame = np.array([[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]], np.float32)
    area, _ = cv2.intersectConvexConvex(quad.astype(np.float32), frame)
    return area > 1.0, False


def write_presentation_video(path: str | os.PathLike, presentations: list[Presentation], fps: float = 15,
                             size: tuple[int, int] = (1280, 720), seed: int = 0,
                             difficulty: float = 0.3) -> list[PresentationTruth]:
    """Render ``presentations`` one after another into an MJPG ``.avi`` at ``path``; return the truth.

    The counter's look and the camera's conditions come from ``seed`` and ``difficulty`` (see
    :meth:`Conditions.random`); each presentation gets its own angle, distance and path. Raises
    ``OSError`` when the video cannot be written.
    """
    path = Path(path)
    rng = np.random.default_rng(seed)
    w, h = size
    base = Conditions.random(rng, difficulty)
    # A counter with some papers; never a product EAN on the counter here: products are presented.
    background = render_background(size, rng, clutter=max(base.clutter, 1), distractor_ean13=False)
    vignette = make_vignette(size, rng)
    white_balance = rng.uniform(0.92, 1.08, 3).astype(np.float32)
    camera = replace(base, jpeg_quality=None)  # the MJPG writer compresses

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), float(fps), (w, h))
    if not writer.isOpened():
        raise OSError(f"{path}: cannot write an MJPG video here (check the folder and the .avi suffix)")
    writer.set(cv2.VIDEOWRITER_PROP_QUALITY, 85)
    frame_index = 0
    # Fresh sensor noise for every frame is the slowest part of rendering; a few noise fields,
    # flipped at random, give frames that all differ from their neighbours at a fraction of the cost.
    noise_bank = [rng.standard_normal((h, w, 3), dtype=np.float32) for _ in range(3)]

    def emit(scene: np.ndarray, conditions: Conditions) -> None:
        nonlocal frame_index
        noise = noise_bank[frame_index % len(noise_bank)]
        flip = int(rng.integers(4))
        noise = noise[:: 1 if flip & 1 else -1, :: 1 if flip & 2 else -1]
        writer.write(expose(scene, conditions, rng, vignette=vignette, white_balance=white_balance, noise=noise))
        frame_index += 1

    truths = []
    try:
        for p in presentations:
            for _ in range(int(round(rng.uniform(0.6, 1.0) * fps))):  # empty counter
                emit(background.copy(), camera)
            truths.append(_present(p, rng, camera, background, size, fps, emit, lambda: frame_index))
        for _ in range(int(round(0.5 * fps))):  # a little empty counter at the end
            emit(background.copy(), camera)
    finally:
        writer.release()
    return truths


def _present(p: Presentation, rng: np.random.Generator, camera: Conditions, background: np.ndarray,
             size: tuple[int, int], fps: float, emit, now) -> PresentationTruth:
    """Render one presentation's frames through ``emit``; return its truth."""
    w, h = size
    # Where and how it is held: any angle, a moderate tilt, at presenting distance.
    held = Conditions.random(rng, 0.3, size)
    hold = replace(camera, rotation_deg=held.rotation_deg, tilt_x_deg=held.tilt_x_deg,
                   tilt_y_deg=held.tilt_y_deg, card_width_frac=held.card_width_frac,
                   center=held.center, thumb=True, glare=held.glare, glare_at=held.glare_at,
                   glare_radius_mm=held.glare_radius_mm, motion_blur_px=0.0)
    # Room for the hand's jitter, so the card stays whole in view while held.
    hold = fit_in_view(hold, rng, size, margin_px=16.0)
    image = _object_image(p, rng)
    layer = card_layer(image, hold, rng, size)
    # It comes from the client's side: mostly the bottom of the frame, sometimes a side.
    direction = [(0.0, 1.0), (0.0, 1.0), (-1.0, 0.0), (1.0, 0.0)][int(rng.integers(4))]
    hold_xy = np.array([hold.center[0] * w, hold.center[1] * h])
    start_xy = hold_xy + np.array(direction) * (max(w, h) * (0.5 + hold.card_width_frac))
    n_in = max(int(round(rng.uniform(0.35, 0.6) * fps)), 2)
    n_hold = max(int(round(p.hold_s * fps)), 1)
    n_out = max(int(round(rng.uniform(0.3, 0.5) * fps)), 2)

    path: list[tuple[np.ndarray, float]] = []  # (centre in px, extra rotation deg)
    for i in range(1, n_in + 1):
        path.append((start_xy + (hold_xy - start_xy) * _ease(i / n_in), 8.0 * (1 - _ease(i / n_in))))
    jitter = np.zeros(2)
    for _ in range(n_hold):
        # A hand is never still: a slow random walk of a few pixels and a fraction of a degree.
        jitter = 0.7 * jitter + rng.normal(0, 1.2, 2)
        path.append((hold_xy + jitter, float(rng.normal(0, 0.3))))
    end_xy = hold_xy + np.array(direction) * (max(w, h) * (0.5 + hold.card_width_frac))
    for i in range(1, n_out + 1):
        path.append((hold_xy + (end_xy - hold_xy) * _ease(i / n_out), -6.0 * _ease(i / n_out)))

    enter = full_from = full_to = left = None
    prev = start_xy
    for centre, extra_rot in path:
        velocity = centre - prev
        prev = centre
        blur = float(np.hypot(*velocity)) * SHUTTER_FRACTION
        conditions = replace(hold, center=(float(centre[0] / w), float(centre[1] / h)),
                             rotation_deg=hold.rotation_deg + extra_rot, motion_blur_px=blur,
                             motion_blur_angle_deg=math.degrees(math.atan2(velocity[1], velocity[0])))
        quad = card_quad(layer.card_size, conditions, size)
        any_in, all_in = _in_view(quad, size)
        index = now()
        if any_in and enter is None:
            enter = index
        if all_in:
            full_from = index if full_from is None else full_from
            full_to = index
        if not any_in and full_to is not None and left is None:
            left = index
        scene = background.copy()
        if any_in:
            place_card(scene, layer, conditions)
        emit(scene, conditions)
    if left is None:
        left = now()
    if enter is None or full_from is None:
        raise RuntimeError("internal: a presentation never came fully into view")
    return PresentationTruth(p.payload, p.symbology, p.kind, p.is_card, enter, full_from, full_to, left)


def save_truth(path: str | os.PathLike, truths: list[PresentationTruth]) -> None:
    """Write the truth as JSON (one object per presentation), e.g. beside the video."""
    Path(path).write_text(json.dumps([asdict(t) for t in truths], indent=1) + "\n", encoding="utf-8")


def load_truth(path: str | os.PathLike) -> list[PresentationTruth]:
    """Read what :func:`save_truth` wrote."""
    return [PresentationTruth(**d) for d in json.loads(Path(path).read_text(encoding="utf-8"))]
