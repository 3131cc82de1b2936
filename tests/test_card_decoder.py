"""The card decoder on rendered low-resolution cards: reads where zxing-cpp fails, refuses near-misses.

Barcodes are drawn module by module at 10 px per module, blurred and shrunk to the module size a
640x480 camera gives a card (about 1.2-1.5 px), with noise; then enlarged along the bars the way
the locator enlarges a region (cubic, to ~3.5 px per module). Nothing here needs a camera or the
benchmark photographs.
"""

from __future__ import annotations

import numpy as np
import pytest
from support.barcodes import modules_from_values, modules_of, one_bar_off, strip, upright_crop

from device.card import CARD_V1, Card
from device.vision.card_decoder import CardDecoder, layouts_for
from device.vision.decoders import make_decoder
from device.vision.scanner import Scanner

DECODER = CardDecoder(layouts_for([CARD_V1]))
ZXING = make_decoder("zxing-cpp", ("Code128",))


def payloads(n: int, seed: int = 5) -> list[str]:
    rng = np.random.default_rng(seed)
    return [CARD_V1.encode("".join(str(d) for d in rng.integers(0, 10, 10)), int(rng.integers(1, 20))) for _ in range(n)]


def test_patterns_match_python_barcode():
    # Our table of symbol patterns draws the same modules as the encoder that prints the cards.
    assert modules_from_values([104, 44, 37, 99, 0, 12, 34, 56, 78, 1, 68]) == modules_of("LE00123456780168")


@pytest.mark.parametrize("module_px", [1.2, 1.5])
def test_reads_low_resolution_cards_zxing_cannot(module_px):
    read = zxing_read = 0
    texts = payloads(8, seed=int(module_px * 10))
    for i, text in enumerate(texts):
        grey = strip(modules_of(text), module_px, blur=0.8, noise=3.0, seed=i)
        zxing_read += any(s.text == text for s in ZXING.decode(grey))
        result = DECODER.decode(upright_crop(grey, module_px))
        assert result is None or result.text == text
        read += result is not None
    assert read >= 7, f"card decoder read {read}/8 at {module_px} px/module"
    assert zxing_read < read, "zxing-cpp read as many: the test cards are not low-resolution enough"


def test_reads_upside_down():
    text = payloads(1, seed=11)[0]
    grey = strip(modules_of(text), 1.4, blur=0.7, noise=2.0, seed=3)
    result = DECODER.decode(upright_crop(grey[:, ::-1].copy(), 1.4))
    assert result is not None and result.text == text and result.reversed


@pytest.mark.parametrize("module_px", [1.3, 2.0])
def test_refuses_near_misses(module_px):
    text = "LE00123456780168"
    assert CARD_V1.parse(text) == Card("v1", "0012345678", 1)
    # The genuine card reads at this resolution (so the refusals below mean something).
    genuine = DECODER.decode(upright_crop(strip(modules_of(text), module_px, blur=0.6, noise=2.0, seed=1), module_px))
    assert genuine is not None and genuine.text == text
    near = [
        one_bar_off(modules_of(text), 6),  # a digit pair one bar off
        one_bar_off(modules_of(text), 2),  # the prefix's E one bar off
        modules_of("LE00123456780169"),  # bad check digits (a valid Code 128)
        modules_of("LF00123456780168"),  # a foreign prefix, same length and layout
        modules_of("XY12345678901234"),
        modules_of("LE0012345678016"),  # one digit short
        modules_of("LE001234567801680"),  # one digit long
    ]
    for i, modules in enumerate(near):
        for seed in range(3):
            grey = strip(modules, module_px, blur=0.6, noise=2.0, seed=seed)
            assert DECODER.decode(upright_crop(grey, module_px)) is None, f"near-miss {i} read"


def test_never_returns_a_non_card():
    rng = np.random.default_rng(2)
    for seed in range(6):
        # Foreign Code 128s of the card's length, and noise: whatever comes back is a card.
        text = "".join(rng.choice(list("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"), 16))
        for grey in (strip(modules_of(text), 1.4, blur=0.8, noise=3.0, seed=seed), rng.integers(0, 256, (30, 500), dtype=np.uint8)):
            result = DECODER.decode(upright_crop(grey, 1.4))
            assert result is None or isinstance(CARD_V1.parse(result.text), Card)
    assert DECODER.decode(np.full((40, 600), 255, np.uint8)) is None


def reads_in_frames(cards: list[tuple[str, np.ndarray]], scanners: list[Scanner], size: tuple[int, int], noise: float) -> list[int]:
    """How many ``cards`` (text, bars) each scanner reads, each card's bars pasted in a frame of
    ``size`` with sensor ``noise``; the first scanner must read nothing else."""
    counts = [0] * len(scanners)
    w, h = size
    for i, (text, bars) in enumerate(cards):
        frame = np.full((h, w), 200, np.uint8)
        y, x = h * 5 // 12, (w - bars.shape[1]) // 2
        frame[y : y + bars.shape[0], x : x + bars.shape[1]] = bars
        frame = np.clip(frame + np.random.default_rng(i).normal(0, noise, frame.shape), 0, 255).astype(np.uint8)
        for j, scanner in enumerate(scanners):
            symbols = scanner.decode(frame)
            assert j or all(s.text == text for s in symbols)
            counts[j] += any(s.text == text for s in symbols)
    return counts


def test_scanner_reads_a_low_resolution_card_in_a_frame():
    # Through the whole pipeline: locate, decoders fail, the card decoder reads.
    cards = [(text, strip(modules_of(text), 1.2, blur=0.9, noise=0.0, seed=i)) for i, text in enumerate(payloads(4, seed=21))]
    with_card = Scanner(symbologies=("Code128",))
    without = Scanner(symbologies=("Code128",), card_formats=(), code128_fit=False)
    read, read_before = reads_in_frames(cards, [with_card, without], (640, 480), 2.5)
    assert read >= 3
    assert read > read_before


def test_reads_a_card_an_encoder_started_in_code_set_a():
    # 'L' and 'E' have the same values in code sets A and B: some encoders start with A.
    text = "LE00123456780168"
    values = [103, 44, 37, 99, 0, 12, 34, 56, 78, 1, 68]
    grey = strip(modules_from_values(values), 1.4, blur=0.7, noise=2.0, seed=4)
    result = DECODER.decode(upright_crop(grey, 1.4))
    assert result is not None and result.text == text


# -- motion smear (issue 24) ------------------------------------------------------------------
# A card that moves while the shutter is open is smeared along its code: a box filter
# ``smear`` modules long (tests/support/barcodes.strip), at the 2.8 px per module of a card
# 15 cm from a 1280x720 camera.


def test_reads_smeared_cards_the_plain_fit_cannot():
    texts = payloads(6, seed=31)
    plain = smeared = 0
    for i, text in enumerate(texts):
        crop = upright_crop(strip(modules_of(text), 2.8, blur=0.6, noise=2.0, seed=i, smear=4.0), 2.8)
        result = DECODER.decode(crop, smeared=True)
        assert result is None or result.text == text
        smeared += result is not None
        plain += DECODER.decode(crop) is not None
    assert smeared >= 5, f"smear model read {smeared}/6 cards smeared 4 modules"
    assert plain <= 2, f"the plain fit read {plain}/6: the test cards are not smeared enough"
    # Made without its smear model, the decoder does not try.
    crop = upright_crop(strip(modules_of(texts[0]), 2.8, blur=0.6, noise=2.0, seed=0, smear=4.0), 2.8)
    assert CardDecoder(layouts_for([CARD_V1]), smear=False).decode(crop, smeared=True) is None


@pytest.mark.parametrize("smear", [2.0, 3.5])
def test_refuses_smeared_near_misses(smear):
    text = "LE00123456780168"
    genuine = DECODER.decode(upright_crop(strip(modules_of(text), 2.8, blur=0.6, noise=2.0, seed=1, smear=smear), 2.8), smeared=True)
    assert genuine is not None and genuine.text == text
    near = [
        one_bar_off(modules_of(text), 6),
        one_bar_off(modules_of(text), 2),
        modules_of("LE00123456780169"),  # bad check digits
        modules_of("LF00123456780168"),  # another prefix
        modules_of("XY12345678901234"),
        modules_of("LE0012345678016"),
    ]
    for i, modules in enumerate(near):
        for seed in range(2):
            grey = strip(modules, 2.8, blur=0.6, noise=2.0, seed=seed, smear=smear)
            assert DECODER.decode(upright_crop(grey, 2.8), smeared=True) is None, f"near-miss {i} read smeared {smear}"


def test_a_smeared_foreign_code_is_never_a_card():
    rng = np.random.default_rng(41)
    for seed in range(4):
        text = "".join(rng.choice(list("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"), 16))
        grey = strip(modules_of(text), 2.8, blur=0.6, noise=2.0, seed=seed, smear=float(seed + 2))
        result = DECODER.decode(upright_crop(grey, 2.8), smeared=True)
        assert result is None or isinstance(CARD_V1.parse(result.text), Card)


def test_scanner_reads_a_smeared_card_in_a_frame():
    # Through the whole pipeline: the locator finds the smeared bars, nothing reads them plainly,
    # the card decoder's smear model does.
    cards = [
        (text, np.repeat(strip(modules_of(text), 2.8, blur=0.6, noise=0.0, seed=i, smear=4.0), 4, axis=0))
        for i, text in enumerate(payloads(4, seed=51))
    ]
    scanners = [Scanner(symbologies=("Code128",)), Scanner(symbologies=("Code128",), smear_model=False)]
    read, read_plain = reads_in_frames(cards, scanners, (1280, 720), 2.0)
    assert read >= 3
    assert read_plain < read
