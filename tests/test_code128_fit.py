"""The general Code 128 fit on rendered low-resolution codes of any text: reads keystoned codes
zxing-cpp does not, refuses near-misses, never reads what is no Code 128.

Codes are rendered as tests/support/barcodes.py renders cards (module by module, blurred,
shrunk to about 1.3 px per module, noise), then seen at a slant (a perspective warp: the bars
fan out and the pitch shrinks along the code) and pasted into a 640x480 frame for the whole
pipeline, or enlarged as the locator enlarges a region for the fit alone.
"""

from __future__ import annotations

import barcode
import cv2
import numpy as np
import pytest
from support.barcodes import modules_from_values, modules_of, one_bar_off, strip, upright_crop

from device.vision.card_decoder import PATTERNS
from device.vision.code128_fit import Code128Fit, decode_values
from device.vision.decoders import make_decoder
from device.vision.scanner import Scanner

FIT = Code128Fit()
ZXING = make_decoder("zxing-cpp", ("Code128",))
TEXTS = ["PKG-48213-XZ", "31001171800000017989", "Order 7/12 a", "CNK8181G2C", "FGGQ6D1", "x9;Lq_04"]


def keystoned(grey: np.ndarray, far: float = 0.75) -> np.ndarray:
    """``grey`` seen at a slant: its right end ``far`` times as tall (and its modules about as
    much narrower), its top tilted (bars fan out)."""
    h, w = grey.shape
    src = np.float32([[0, 0], [w, 0], [w, h], [0, h]])
    drop = h * (1 - far) / 2
    dst = np.float32([[0.03 * w, 0], [w * (0.5 + far / 2), drop + 0.06 * h], [w * (0.5 + far / 2), h - drop], [0, h]])
    out_w = int(np.ceil(dst[:, 0].max())) + 2
    m = cv2.getPerspectiveTransform(src, dst)
    return cv2.warpPerspective(grey, m, (out_w, h), flags=cv2.INTER_AREA, borderValue=245)


def label(text: str, module_px: float, seed: int) -> np.ndarray:
    """A shipping label's Code 128 of ``text``: taller than a card's, 14 modules of quiet zone."""
    return np.repeat(strip(modules_of(text), module_px, blur=0.8, noise=2.0, seed=seed, quiet=14), 3, axis=0)


def in_frame(bars: np.ndarray, seed: int) -> np.ndarray:
    frame = np.full((480, 640), 200, np.uint8)
    y, x = 200, (640 - bars.shape[1]) // 2
    frame[y : y + bars.shape[0], x : x + bars.shape[1]] = bars
    return np.clip(frame + np.random.default_rng(seed).normal(0, 2.0, frame.shape), 0, 255).astype(np.uint8)


def test_reads_keystoned_low_resolution_code128_zxing_cannot():
    # General text (code sets B and C, punctuation), 1.6 px per module, blurred, in perspective
    # (the far end 0.85 as tall), enlarged as the locator enlarges fine bars.
    read = zxing_read = 0
    for i, text in enumerate(TEXTS):
        crop = upright_crop(keystoned(label(text, 1.6, i), 0.85), 1.6)
        result = FIT.decode(crop)
        assert result is None or result.text == text, result.text
        read += result is not None
        zxing_read += any(s.text == text for s in ZXING.decode(crop))
    assert read >= 5, f"read {read}/{len(TEXTS)}"
    assert zxing_read == 0


def test_scanner_reads_more_with_the_fit_and_nothing_wrong():
    # Through the whole pipeline (locate, zxing-cpp's views, then the fit), 1.35 px per module,
    # the far end 0.75 as tall: the fit reads codes the pipeline before it did not.
    fit = Scanner(symbologies=("Code128",), card_formats=())
    before = Scanner(symbologies=("Code128",), card_formats=(), code128_fit=False)
    read = read_before = 0
    for i, text in enumerate(TEXTS):
        frame = in_frame(keystoned(label(text, 1.35, i), 0.75), i)
        symbols = fit.decode(frame)
        assert all(s.text == text for s in symbols), [s.text for s in symbols]
        read += any(s.text == text for s in symbols)
        read_before += any(s.text == text for s in before.decode(frame))
    assert read > read_before


def test_reads_reversed_and_reports_where():
    text = "Order 7/12 a"
    grey = upright_crop(strip(modules_of(text), 1.4, blur=0.7, noise=2.0, seed=3, quiet=14), 1.4)
    result = FIT.decode(grey[:, ::-1].copy())
    assert result is not None and result.text == text and result.reversed
    x0, x1 = result.x_range
    columns = np.flatnonzero(grey.min(axis=0) < 128)
    assert abs(x0 - columns[0]) < 6 and abs(x1 - columns[-1]) < 6


def code(values: list[int], check_off: int = 0) -> str:
    """The modules of Code 128 symbol values (start first), their check (``check_off`` added:
    a wrong one) and the stop."""
    check = (values[0] + sum(i * v for i, v in enumerate(values) if i) + check_off) % 103
    return "".join("".join(("1" if j % 2 == 0 else "0") * int(w) for j, w in enumerate(PATTERNS[v])) for v in [*values, check, 106])


@pytest.mark.parametrize("module_px", [1.3, 2.0])
def test_refuses_near_misses(module_px):
    text = "PKG-4/XZ"
    values = [104, *(ord(c) - 32 for c in text)]
    assert code(values) == modules_from_values(values)
    genuine = FIT.decode(upright_crop(strip(code(values), module_px, blur=0.6, noise=2.0, seed=1, quiet=14), module_px))
    assert genuine is not None and genuine.text == text
    near = [
        one_bar_off(code(values), 3),  # a data symbol one bar off
        one_bar_off(code(values), 6),
        code(values, check_off=1),  # a wrong check character
        code(values, check_off=40),
        code(values)[: -13 - 22] + code(values)[-13 - 11 :],  # a symbol cut out (check now wrong)
        code(values)[:-13],  # no stop pattern
    ]
    for i, modules in enumerate(near):
        for seed in range(3):
            grey = strip(modules, module_px, blur=0.6, noise=2.0, seed=seed, quiet=14)
            result = FIT.decode(upright_crop(grey, module_px))
            assert result is None, f"near-miss {i} read as {result.text!r}"


def test_never_reads_what_is_no_code128():
    rng = np.random.default_rng(7)
    ean = barcode.get("ean13", "400638133393").build()[0]
    negatives = [
        np.full((40, 600), 255, np.uint8),
        rng.integers(0, 256, (40, 500), dtype=np.uint8),
        strip(ean, 1.4, blur=0.7, noise=2.0, seed=1, quiet=14),  # a product code
        strip(ean, 2.5, blur=0.7, noise=2.0, seed=2, quiet=14),
        # A grating and random bars: edges everywhere, no symbol.
        np.tile((127 + 120 * np.sign(np.sin(np.arange(500) / 1.7))).astype(np.uint8), (40, 1)),
        strip("".join(rng.choice(["1", "0"], 300)), 1.4, blur=0.7, noise=2.0, seed=3, quiet=14),
    ]
    for grey in negatives:
        for crop in (grey, upright_crop(grey, 1.4)):
            assert FIT.decode(crop) is None


def test_code_sets_shifts_and_fnc4_as_zxing_reads_them():
    assert decode_values(105, [12, 34, 100, 33]) == "1234A"  # C, then CODE B
    assert decode_values(104, [65, 98, 65, 66]) == "a\x01b"  # B, SHIFT to A (a control character)
    assert decode_values(104, [100, 83, 17]) == "ó1"  # FNC4: the next character + 128
    assert decode_values(104, [100, 100, 83, 83, 100, 100, 65]) == "óóa"  # FNC4 twice: latched
    assert decode_values(103, [33, 102, 34]) == "A\x1dB"  # a later FNC1 is GS
    for refused in ([102, 33], [33, 97], [33, 96], [33, 99], [33, 98], [33, 100]):
        assert decode_values(104, refused) is None, refused  # GS1, FNC2/3, a change or shift at the end


def test_reads_smeared_code128_and_refuses_smeared_near_misses():
    # A label moved along its code while the shutter was open (a box 4 modules long, 2.8 px
    # per module): the fit's smear model reads what the plain fit does not, and refuses the
    # near-misses smeared the same way.
    read = plain = 0
    for i, text in enumerate(TEXTS):
        crop = upright_crop(strip(modules_of(text), 2.8, blur=0.6, noise=2.0, seed=i, quiet=14, smear=4.0), 2.8)
        result = FIT.decode(crop, smeared=True)
        assert result is None or result.text == text, result.text
        read += result is not None
        plain += FIT.decode(crop) is not None
    assert read >= 4, f"read {read}/{len(TEXTS)} smeared"
    assert plain <= 1
    values = [104, *(ord(c) - 32 for c in "Order 7/12 a")]
    genuine = FIT.decode(upright_crop(strip(code(values), 2.8, blur=0.6, noise=2.0, seed=0, quiet=14, smear=4.0), 2.8), smeared=True)
    assert genuine is not None and genuine.text == "Order 7/12 a"
    for i, modules in enumerate(
        [one_bar_off(code(values), 3), one_bar_off(code(values), 8), code(values, check_off=1), code(values)[:-13]]
    ):
        for seed in range(2):
            grey = strip(modules, 2.8, blur=0.6, noise=2.0, seed=seed, quiet=14, smear=4.0)
            result = FIT.decode(upright_crop(grey, 2.8), smeared=True)
            assert result is None, f"near-miss {i} read smeared as {result.text!r}"
