"""device.vision.scanner: gate + locate + decode, as the daemon and `kiosk scan` use it."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import zxingcpp
from barcode import Code128
from barcode.writer import ImageWriter

from device.vision.decoders import make_decoder
from device.vision.scanner import Scanner, _covers

PAYLOAD = "LE00123456780168"
EAN = "5901234123457"


def python_barcode_card(payload: str = PAYLOAD) -> np.ndarray:
    """A card-sized white patch with a python-barcode Code 128 (grey)."""
    writer_options = {"module_width": 0.2, "module_height": 6.0, "dpi": 254, "quiet_zone": 4.0, "write_text": False}
    image = Code128(payload, writer=ImageWriter()).render(writer_options).convert("L")
    code = np.asarray(image)
    return cv2.copyMakeBorder(code, 30, 70, 30, 30, cv2.BORDER_CONSTANT, value=255)


def counter(card: np.ndarray, angle: float, size=(800, 600), background: int = 140) -> np.ndarray:
    """``card`` on a grey counter, turned ``angle`` degrees in plane (BGR, like a camera)."""
    w, h = size
    canvas = np.full((h, w), background, np.uint8)
    ch, cw = card.shape
    canvas[(h - ch) // 2 : (h - ch) // 2 + ch, (w - cw) // 2 : (w - cw) // 2 + cw] = card
    turn = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)
    grey = cv2.warpAffine(canvas, turn, size, flags=cv2.INTER_LINEAR, borderValue=background)
    return cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR)


@pytest.fixture(scope="module")
def card():
    return python_barcode_card()


@pytest.mark.parametrize("angle", [0, 30, 45, 60, 90, 180])
def test_cards_read_at_any_angle(card, angle):
    symbols = Scanner().decode(counter(card, angle))
    assert [(s.symbology, s.text) for s in symbols] == [("Code128", PAYLOAD)]


def test_locating_is_what_makes_tilted_cards_read(card):
    frame = counter(card, 45)
    assert make_decoder("zxing-cpp", ["Code128"]).decode(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)) == []
    assert Scanner(locate=False).decode(frame) == []
    assert [s.text for s in Scanner().decode(frame)] == [PAYLOAD]


def test_pyzbar_pipeline_reads_tilted_cards_too(card):
    assert [s.text for s in Scanner(decoder="pyzbar").decode(counter(card, 30))] == [PAYLOAD]


def test_symbol_quad_is_in_frame_coordinates(card):
    symbol = Scanner().decode(counter(card, 45))[0]
    quad = np.array(symbol.quad)
    assert quad.shape[1] == 2
    assert np.hypot(*(quad.mean(axis=0) - (400, 300))) < 60


def test_only_configured_symbologies_come_out():
    ean = np.asarray(zxingcpp.create_barcode(EAN, zxingcpp.BarcodeFormat.EAN13).to_image(scale=3))
    frame = counter(cv2.copyMakeBorder(ean, 40, 40, 40, 40, cv2.BORDER_CONSTANT, value=255), 40)
    assert Scanner(symbologies=("Code128",)).decode(frame) == []
    assert [(s.symbology, s.text) for s in Scanner(symbologies=("Code128", "EAN13")).decode(frame)] == [("EAN13", EAN)]


def test_each_symbol_comes_out_once(card):
    # Level: the whole-frame pass reads it, and the located region holds the same code.
    assert len(Scanner().decode(counter(card, 0))) == 1


def test_no_false_reads_on_text_lines_and_noise():
    page = np.full((600, 800), 225, np.uint8)
    for i, y in enumerate(range(40, 580, 26)):
        cv2.putText(page, f"||| Invoice {i:03d} |||| llll IIII 1111 total", (10, y), cv2.FONT_HERSHEY_PLAIN, 1.6, 20, 2)
    stripes = np.tile(np.repeat(np.array([30, 220], np.uint8), 3), 60)[None, :].repeat(120, axis=0)
    page[450:570, 300:660] = stripes  # a grille: bars with no code in them
    noisy = np.clip(page + np.random.default_rng(5).normal(0, 6, page.shape), 0, 255).astype(np.uint8)
    scanner = Scanner(symbologies=("Code128", "EAN13", "ITF"))
    for angle in (0, 30, 45):
        assert scanner.decode(counter(noisy, angle, size=(900, 700))) == []


def test_scan_goes_through_the_gate(card):
    scanner = Scanner(full_look_interval_s=1.0, settle_s=0.0, quiet_look_every=1)  # every frame looked at
    empty = counter(np.full((10, 10), 140, np.uint8), 0)
    first = scanner.scan(empty, 100.0)
    assert first.decoded and first.reason == "first" and first.symbols == []
    skipped = scanner.scan(empty, 100.1)
    assert (skipped.decoded, skipped.reason, skipped.symbols) == (False, "skip", [])
    arrived = scanner.scan(counter(card, 30), 100.2)
    assert arrived.decoded and arrived.reason == "change"
    assert [s.text for s in arrived.symbols] == [PAYLOAD]
    assert arrived.decode_ms > 0 and arrived.gate_ms >= 0
    assert scanner.scan(counter(card, 30), 100.3).decoded is False
    assert scanner.scan(counter(card, 30), 101.3).reason == "full-look"


@pytest.mark.parametrize(
    "bad",
    [
        None,
        "frame.png",
        np.zeros((0, 10), np.uint8),
        np.zeros((10, 10), np.float32),
        np.zeros((10, 10, 2), np.uint8),
        np.zeros((2, 2, 2, 2), np.uint8),
    ],
    ids=["none", "str", "zero-size", "float", "two-channel", "4-d"],
)
def test_non_images_raise_a_clear_value_error(bad):
    scanner = Scanner()
    with pytest.raises(ValueError):
        scanner.decode(bad)
    with pytest.raises(ValueError):
        scanner.scan(bad, 1.0)


@pytest.mark.parametrize("shape", [(1, 1), (3, 7), (7, 3, 3), (1, 5000), (5000, 1), (9, 9, 1)])
def test_odd_but_valid_frames_decode_to_nothing(shape):
    frame = np.full(shape, 200, np.uint8)
    assert Scanner().decode(frame) == []
    assert Scanner().scan(frame, 0.0).symbols == []


def test_views_and_alpha_channels_are_accepted(card):
    bgra = cv2.cvtColor(counter(card, 30), cv2.COLOR_BGR2BGRA)
    assert [s.text for s in Scanner().decode(bgra)] == [PAYLOAD]
    strided = counter(card, 0)[::-1, ::-1]  # a view with negative strides (a flipped camera)
    assert [s.text for s in Scanner().decode(strided)] == [PAYLOAD]


def test_bad_configuration_is_a_value_error():
    with pytest.raises(ValueError, match="qr-magic"):
        Scanner(decoder="qr-magic")
    with pytest.raises(ValueError, match="Code129"):
        Scanner(symbologies=("Code129",))
    with pytest.raises(ValueError):
        Scanner(full_look_interval_s=0)


def two_cards_frame(card) -> np.ndarray:
    """A level card on the left, a second one at 40 degrees on the right (grey)."""
    frame = np.full((600, 1200), 140, np.uint8)
    ch, cw = card.shape
    frame[150 : 150 + ch, 40 : 40 + cw] = card
    frame[:, 640:] = cv2.cvtColor(counter(python_barcode_card("LE00987654320143"), 40, size=(560, 600)), cv2.COLOR_BGR2GRAY)
    return frame


def test_two_cards_in_view_are_both_read_and_a_read_one_covers_its_candidate(card):
    frame = two_cards_frame(card)
    scanner = Scanner(symbologies=("Code128",))
    read = scanner.decode(frame)
    assert sorted(s.text for s in read) == sorted([PAYLOAD, "LE00987654320143"])
    # A candidate a read symbol lies across would not be cut out again.
    candidates = scanner.locator.candidates(frame)
    for symbol in read:
        covered = [c for c in candidates if _covers(symbol.quad, c)]
        assert covered, f"{symbol.text}'s candidate is not recognised as read"
        assert all((c.centre[0] < 640) == (symbol.text == PAYLOAD) for c in covered)


def spy_on_whole_frame(scanner: Scanner) -> list:
    """The images the scanner's whole-frame decoder is given, as they come."""
    seen = []
    whole = scanner.decoder.decode
    scanner.decoder.decode = lambda grey: seen.append(grey.shape) or whole(grey)
    return seen


@pytest.mark.parametrize("angle", [0, 40])
def test_a_card_its_region_reads_costs_no_whole_frame_decode(card, angle):
    scanner = Scanner(symbologies=("Code128",))
    seen = spy_on_whole_frame(scanner)
    assert [s.text for s in scanner.decode(counter(card, angle))] == [PAYLOAD]
    assert seen == []


def test_the_whole_frame_is_read_when_no_region_is(card, monkeypatch):
    # A code the locator does not take for bars is still read from the whole frame.
    scanner = Scanner(symbologies=("Code128",))
    monkeypatch.setattr(scanner.locator, "candidates", lambda grey: [])
    seen = spy_on_whole_frame(scanner)
    assert [s.text for s in scanner.decode(counter(card, 0))] == [PAYLOAD]
    assert seen == [(600, 800)]
    # An empty view: the whole frame is looked at too, and gives nothing.
    assert Scanner(symbologies=("Code128",)).decode(np.full((600, 800), 140, np.uint8)) == []


def test_a_fragment_read_does_not_cover_a_candidate(card):
    frame = cv2.cvtColor(counter(card, 0), cv2.COLOR_BGR2GRAY)
    scanner = Scanner(symbologies=("Code128",))
    (symbol,) = scanner.decoder.decode(frame)
    candidate = max(scanner.locator.candidates(frame), key=lambda c: c.width)
    assert _covers(symbol.quad, candidate)
    xs = [x for x, _ in symbol.quad]
    lo, hi = min(xs), max(xs)
    y = sum(y for _, y in symbol.quad) / len(symbol.quad)
    short = ((lo, y - 2), (lo + 0.3 * (hi - lo), y - 2), (lo + 0.3 * (hi - lo), y + 2), (lo, y + 2))
    assert not _covers(short, candidate)
    far = tuple((x, y + 250) for x, y in symbol.quad)
    assert not _covers(far, candidate)
