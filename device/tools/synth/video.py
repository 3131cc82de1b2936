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

import dataclasses
import json
import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from device.card import CARD_V1, REGISTRY, Card, CardFormat, identify
from device.tools.synth.card import render_card, render_product_label
from device.tools.synth.scene import (
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
    pause_s: float | None = None

    def after(self, pause_s: float) -> Presentation:
        """The same presentation after ``pause_s`` seconds of empty counter (default: 0.6-1 s)."""
        return dataclasses.replace(self, pause_s=pause_s)

    @classmethod
    def card(cls, contract: str, issue: int | None = 1, hold_s: float = 1.5, card_format: CardFormat = CARD_V1) -> Presentation:
        """A valid client card of ``card_format`` (default spec v1), printed with its contract number.

        >>> Presentation.card("0012345678").payload
        'LE00123456780168'
        """
        symbology = min(card_format.symbologies)  # the one it is printed in, for one-symbology formats
        return cls(card_format.encode(contract, issue), symbology, "card", contract, hold_s)

    @classmethod
    def bad_check(cls, contract: str, issue: int = 1, hold_s: float = 1.5) -> Presentation:
        """A client card whose check digits are wrong (misprinted or forged)."""
        good = CARD_V1.encode(contract, issue)
        bad = good[:-2] + f"{(int(good[-2:]) + 1) % 100:02d}"
        return cls(bad, "Code128", "bad-check", contract, hold_s)

    @classmethod
    def foreign_code128(cls, text: str = "SHOP-CLUB 4711 0815", hold_s: float = 1.5) -> Presentation:
        """Another company's card (a loyalty card) with a Code 128 of some other text."""
        return cls(text, "Code128", "foreign-code128", "", hold_s)

    @classmethod
    def product_ean13(cls, digits: str = "590123412345", hold_s: float = 1.5) -> Presentation:
        """A product with an EAN-13 (12 digits, the check digit is added; or all 13)."""
        import barcode

        return cls(barcode.EAN13(digits).get_fullcode(), "EAN13", "product-ean13", "", hold_s)

    @property
    def is_card(self) -> bool:
        """True when a kiosk accepting every registered card format must identify a client from it."""
        return isinstance(identify(self.payload, self.symbology, tuple(REGISTRY.values())), Card)


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


#: What the client's hand decides of a presentation (pose, distance, glare); the camera keeps the
#: rest (focus, light, noise, compression).
HELD = ("rotation_deg", "tilt_x_deg", "tilt_y_deg", "card_width_frac", "center", "glare", "glare_at", "glare_radius_mm")


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
        return render_card("", 1, name=name, utility="Shop Club", payload=p.payload, address="Member since 2019")
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


#: Where cards left lying on the counter lie: a strip along the left edge of the view (fractions of
#: the frame: left, top, right, bottom). Presented cards are then held to the right of it.
RESTING_STRIP = (0.0, 0.0, 0.38, 1.0)
#: A card lying on the counter is farther from the camera than one held up to it.
RESTING_WIDTH_FRAC = (0.3, 0.36)


def write_presentation_video(
    path: str | os.PathLike,
    presentations: Sequence[Presentation | Sequence[Presentation]],
    fps: float = 15,
    size: tuple[int, int] = (1280, 720),
    seed: int = 0,
    difficulty: float = 0.3,
    resting: Sequence[Presentation] = (),
) -> list[PresentationTruth]:
    """Render ``presentations`` one after another into an MJPG ``.avi`` at ``path``; return the truth.

    An item of ``presentations`` that is itself a sequence is shown together, side by side (two
    clients' cards held up at once). ``resting`` cards lie still at the left edge of the view for
    the whole video (a card left on the counter) while the others are presented beside them.
    The truth lists the presentations in order (the cards of a group in their order), then the
    resting cards.

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
    presented_box = (0.0, 0.0, 1.0, 1.0)
    for i, p in enumerate(resting):
        band = (
            RESTING_STRIP[1] + (RESTING_STRIP[3] - RESTING_STRIP[1]) * i / len(resting),
            RESTING_STRIP[1] + (RESTING_STRIP[3] - RESTING_STRIP[1]) * (i + 1) / len(resting),
        )
        lying = replace(
            camera,
            rotation_deg=float(rng.uniform(0.0, 360.0)),
            card_width_frac=float(rng.uniform(*RESTING_WIDTH_FRAC)),
            tilt_x_deg=0.0,
            tilt_y_deg=0.0,
            motion_blur_px=0.0,
            thumb=False,
        )
        lying = fit_in_view(lying, rng, size, box=(RESTING_STRIP[0], band[0], RESTING_STRIP[2], band[1]))
        place_card(background, card_layer(_object_image(p, rng), lying, rng, size), lying)
        presented_box = (RESTING_STRIP[2], 0.0, 1.0, 1.0)

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
        for item in presentations:
            group = [item] if isinstance(item, Presentation) else list(item)
            pause = int(round(rng.uniform(0.6, 1.0) * fps))  # empty counter
            if group[0].pause_s is not None:
                pause = int(round(group[0].pause_s * fps))
            for _ in range(pause):
                emit(background.copy(), camera)
            truths += _present(group, rng, camera, background, size, fps, emit, lambda: frame_index, presented_box)
        for _ in range(int(round(0.5 * fps))):  # a little empty counter at the end
            emit(background.copy(), camera)
    finally:
        writer.release()
    truths += [PresentationTruth(p.payload, p.symbology, p.kind, p.is_card, 0, 0, frame_index - 1, frame_index) for p in resting]
    return truths


def _present(
    group: list[Presentation],
    rng: np.random.Generator,
    camera: Conditions,
    background: np.ndarray,
    size: tuple[int, int],
    fps: float,
    emit,
    now,
    box: tuple[float, float, float, float],
) -> list[PresentationTruth]:
    """Render the frames of one presentation (or of a group held up together) through ``emit``;
    return the truth for each of its cards."""
    w, h = size
    holds, layers = [], []
    for i, p in enumerate(group):
        # Where and how it is held: any angle, a moderate tilt, at presenting distance.
        held = Conditions.random(rng, 0.3, size)
        hold = replace(camera, **{name: getattr(held, name) for name in HELD}, thumb=True, motion_blur_px=0.0)
        slot = box
        if len(group) > 1 or box != (0.0, 0.0, 1.0, 1.0):
            # Side by side: each card in its own share of the view, small enough to fit there.
            x0, x1 = box[0] + (box[2] - box[0]) * i / len(group), box[0] + (box[2] - box[0]) * (i + 1) / len(group)
            slot = (x0, box[1], x1, box[3])
            hold = replace(hold, card_width_frac=min(hold.card_width_frac, 0.72 * (x1 - x0)))
        # Room for the hand's jitter, so the card stays whole in view while held.
        holds.append(fit_in_view(hold, rng, size, margin_px=16.0, box=slot))
        layers.append(card_layer(_object_image(p, rng), holds[-1], rng, size))
    # It comes from the client's side: mostly the bottom of the frame, sometimes a side.
    direction = np.array([(0.0, 1.0), (0.0, 1.0), (-1.0, 0.0), (1.0, 0.0)][int(rng.integers(4))])
    travel = max(w, h) * (0.5 + max(hold.card_width_frac for hold in holds))
    n_in = max(int(round(rng.uniform(0.35, 0.6) * fps)), 2)
    n_hold = max(int(round(max(p.hold_s for p in group) * fps)), 1)
    n_out = max(int(round(rng.uniform(0.3, 0.5) * fps)), 2)

    # Per frame: (offset from the hold position in px, extra rotation deg) of each card.
    path: list[list[tuple[np.ndarray, float]]] = []
    for i in range(1, n_in + 1):
        path.append([(direction * travel * (1 - _ease(i / n_in)), 8.0 * (1 - _ease(i / n_in)))] * len(group))
    jitters = [np.zeros(2) for _ in group]
    for _ in range(n_hold):
        step = []
        for k in range(len(group)):
            # A hand is never still: a slow random walk of a few pixels and a fraction of a degree.
            jitters[k] = 0.7 * jitters[k] + rng.normal(0, 1.2, 2)
            step.append((jitters[k], float(rng.normal(0, 0.3))))
        path.append(step)
    for i in range(1, n_out + 1):
        path.append([(direction * travel * _ease(i / n_out), -6.0 * _ease(i / n_out))] * len(group))

    seen = [dict(enter=None, full_from=None, full_to=None, left=None) for _ in group]
    prev = [direction * travel for _ in group]
    for step in path:
        scene = background.copy()
        index = now()
        last = None
        for k, (hold, layer, (offset, extra_rot)) in enumerate(zip(holds, layers, step, strict=True)):
            hold_xy = np.array([hold.center[0] * w, hold.center[1] * h])
            velocity = offset - prev[k]
            prev[k] = offset
            blur = float(np.hypot(*velocity)) * SHUTTER_FRACTION
            centre = hold_xy + offset
            conditions = replace(
                hold,
                center=(float(centre[0] / w), float(centre[1] / h)),
                rotation_deg=hold.rotation_deg + extra_rot,
                motion_blur_px=blur,
                motion_blur_angle_deg=math.degrees(math.atan2(velocity[1], velocity[0])),
            )
            any_in, all_in = _in_view(card_quad(layer.card_size, conditions, size), size)
            t = seen[k]
            if any_in and t["enter"] is None:
                t["enter"] = index
            if all_in:
                t["full_from"] = index if t["full_from"] is None else t["full_from"]
                t["full_to"] = index
            if not any_in and t["full_to"] is not None and t["left"] is None:
                t["left"] = index
            if any_in:
                place_card(scene, layer, conditions)
            last = conditions
        emit(scene, last)
    truths = []
    for p, t in zip(group, seen, strict=True):
        if t["enter"] is None or t["full_from"] is None:
            raise RuntimeError("internal: a presentation never came fully into view")
        truths.append(
            PresentationTruth(
                p.payload,
                p.symbology,
                p.kind,
                p.is_card,
                t["enter"],
                t["full_from"],
                t["full_to"],
                now() if t["left"] is None else t["left"],
            )
        )
    return truths


def save_truth(path: str | os.PathLike, truths: list[PresentationTruth]) -> None:
    """Write the truth as JSON (one object per presentation), e.g. beside the video."""
    Path(path).write_text(json.dumps([asdict(t) for t in truths], indent=1) + "\n", encoding="utf-8")


def load_truth(path: str | os.PathLike) -> list[PresentationTruth]:
    """Read what :func:`save_truth` wrote."""
    return [PresentationTruth(**d) for d in json.loads(Path(path).read_text(encoding="utf-8"))]
