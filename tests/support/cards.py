"""Client cards for the tests, generated (no media in git, no test needs the ZXing photos).

>>> contracts(2)
['0000001000', '0000008919']
>>> card_photo("0012345678").shape
(600, 960, 3)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def contracts(n: int, start: int = 1000) -> list[str]:
    """``n`` distinct valid contract numbers."""
    return [f"{start + 7919 * i:010d}" for i in range(n)]


def card_photo(contract: str, issue: int = 1, *, payload: str | None = None, size=(960, 600), dpi: int = 150) -> np.ndarray:
    """A level client card on a grey counter, BGR: easy to read, for tests about what happens after reading."""
    from device.tools.synth.card import render_card

    card = render_card(contract, issue, dpi=dpi, payload=payload).convert("RGB")
    canvas = Image.new("RGB", size, (120, 118, 110))
    canvas.paste(card, ((size[0] - card.width) // 2, (size[1] - card.height) // 2))
    return np.asarray(canvas)[:, :, ::-1].copy()


def name_and_address(image: np.ndarray, size=(960, 600), dpi: int = 150) -> np.ndarray:
    """The part of a :func:`card_photo` (of ``size`` and ``dpi``) where the client's name, contract and address are printed."""
    from device.tools.synth.card import card_size_px, mm_to_px

    w, h = card_size_px(dpi)
    left, top = (size[0] - w) // 2, (size[1] - h) // 2

    def px(mm: float) -> int:
        return mm_to_px(mm, dpi)

    # The layout of render_card: the band (9.5 mm), 3.5 mm, name, contract and address lines.
    return image[top + px(12.0) : top + px(28.5), left + px(4.0) : left + w * 2 // 3]


def empty_counter(size=(960, 600)) -> np.ndarray:
    """The counter with no card on it, BGR."""
    return np.full((size[1], size[0], 3), (110, 118, 120), np.uint8)


def write_card_folder(folder: Path, cards, frames_per_card: int = 2) -> Path:
    """A folder of images (a file camera plays it at 5 fps): each card held still for
    ``frames_per_card`` frames, then an empty counter. ``cards``: contracts or (contract, issue) pairs."""
    import cv2

    folder.mkdir()
    blank = empty_counter()
    i = 0
    for card in cards:
        contract, issue = card if isinstance(card, tuple) else (card, 1)
        photo = card_photo(contract, issue)
        for image in [photo] * frames_per_card + [blank]:
            cv2.imwrite(str(folder / f"{i:05d}.png"), image)
            i += 1
    return folder
