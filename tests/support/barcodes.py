"""Code 128 bars drawn module by module, as a low-resolution camera sees them, for the decoder tests.

Drawn at 10 px per module, blurred and shrunk to the module size a 640x480 camera gives a card
(about 1.2-1.5 px), with noise; then enlarged along the bars the way the locator enlarges a region.

    >>> modules_of("LE00123456780168") == modules_from_values([104, 44, 37, 99, 0, 12, 34, 56, 78, 1, 68])
    True
    >>> strip(modules_of("LE00123456780168"), 1.4, blur=0.7, noise=2.0, seed=4).dtype
    dtype('uint8')
"""

from __future__ import annotations

import barcode
import cv2
import numpy as np

from device.vision.card_decoder import PATTERNS


def modules_of(text: str) -> str:
    """The '1'/'0' modules of ``text`` as python-barcode encodes it (what our cards carry)."""
    return barcode.Code128(text).build()[0]


def modules_from_values(values: list[int]) -> str:
    """The modules of Code 128 symbol values (start first), with their check and the stop."""
    check = (values[0] + sum(i * v for i, v in enumerate(values) if i)) % 103
    return "".join("".join(("1" if j % 2 == 0 else "0") * int(w) for j, w in enumerate(PATTERNS[v])) for v in [*values, check, 106])


def strip(modules: str, module_px: float, *, blur: float, noise: float, seed: int, quiet: int = 12, smear: float = 0.0) -> np.ndarray:
    """The bars as a camera at ``module_px`` pixels per module sees them (grey, level);
    ``smear``: moved that many modules along the code while the shutter was open (a box filter)."""
    rng = np.random.default_rng(seed)
    bits = np.array([0] * quiet + [int(c) for c in modules] + [0] * quiet, np.float32)
    fine = np.repeat(1.0 - bits, 10)[None, :].repeat(60, axis=0) * 215.0 + 30.0
    if smear:
        length = round(smear * 10)
        fine = cv2.blur(fine, (length, 1), borderType=cv2.BORDER_REPLICATE)
    k = module_px / 10.0
    if blur:
        fine = cv2.GaussianBlur(fine, (0, 0), sigmaX=blur / k, sigmaY=0.1)
    # A sub-pixel offset: bar edges do not fall on pixel borders in a camera.
    m = np.float32([[1, 0, rng.uniform(0, 10)], [0, 1, 0]])
    fine = cv2.warpAffine(fine, m, (fine.shape[1], fine.shape[0]), borderMode=cv2.BORDER_REPLICATE)
    small = cv2.resize(fine, (round(fine.shape[1] * k), max(12, round(60 * k * 0.4))), interpolation=cv2.INTER_AREA)
    small = small + rng.normal(0.0, noise, small.shape)
    return np.clip(small, 0, 255).astype(np.uint8)


def upright_crop(grey: np.ndarray, module_px: float) -> np.ndarray:
    """Enlarged across the bars as the locator does for fine modules."""
    kx = min(3.0, 3.5 / module_px)
    return cv2.resize(grey, (round(grey.shape[1] * kx), grey.shape[0]), interpolation=cv2.INTER_CUBIC)


def one_bar_off(modules: str, symbol: int) -> str:
    """``modules`` with one edge inside symbol ``symbol`` moved by one module (a bar one wider,
    the space beside it one narrower): no longer a Code 128 symbol."""
    start = 11 * symbol
    cells = list(modules)
    for i in range(start + 1, start + 10):
        if cells[i] == "1" and cells[i + 1] == "0" and cells[i + 2] == "0":
            cells[i + 1] = "1"
            return "".join(cells)
    raise AssertionError("no bar followed by a wide space in that symbol")
