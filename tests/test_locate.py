"""device.vision.locate: barcode regions at any angle, cut out upright."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import zxingcpp

from device.vision.locate import Locator

PAYLOAD = "LE00123456780168"


def card_scene(angle: float, size=(640, 480), module: int = 2, background: int = 150) -> np.ndarray:
    """A card-like light patch with a Code 128 on a grey counter, turned ``angle`` degrees."""
    code = np.asarray(zxingcpp.create_barcode(PAYLOAD, zxingcpp.BarcodeFormat.Code128).to_image(scale=module))
    code = cv2.resize(code, None, fx=1, fy=0.6, interpolation=cv2.INTER_AREA)  # card codes are short
    card = cv2.copyMakeBorder(code, 30, 60, 20, 20, cv2.BORDER_CONSTANT, value=235)
    w, h = size
    canvas = np.full((h, w), background, np.uint8)
    ch, cw = card.shape
    canvas[(h - ch) // 2 : (h - ch) // 2 + ch, (w - cw) // 2 : (w - cw) // 2 + cw] = card
    turn = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)
    return cv2.warpAffine(canvas, turn, size, flags=cv2.INTER_LINEAR, borderValue=background)


def read_upright(crop: np.ndarray) -> list[str]:
    """zxing-cpp told the bars are vertical: no rotated scans."""
    return [r.text for r in zxingcpp.read_barcodes(crop, formats=[zxingcpp.BarcodeFormat.Code128], try_rotate=False)]


@pytest.mark.parametrize("angle", [0, 30, 45, 60, 90, 135, 180])
def test_region_is_found_and_cut_upright_at_any_angle(angle):
    regions = Locator().find(card_scene(angle))
    assert regions, "no region found"
    best = regions[0]
    # cv2 turns counter-clockwise with y down: the bars' across direction ends at -angle.
    error = (best.angle + angle) % 180
    assert min(error, 180 - error) < 3.0
    assert read_upright(best.image) == [PAYLOAD]
    h, w = best.image.shape
    assert w > h  # upright: the code runs along the crop


def test_crop_maps_back_onto_the_code_in_the_frame():
    frame = card_scene(30)
    region = Locator().find(frame)[0]
    corners = np.array(region.corners)
    centre = corners.mean(axis=0)
    assert np.hypot(*(centre - (320, 240))) < 40  # the code sits in the middle of the frame
    h, w = region.image.shape
    assert np.allclose(region.to_frame([(0, 0), (w, 0), (w, h), (0, h)]), corners)
    assert region.contains((320, 240)) and not region.contains((5, 5))
    lo, hi = region.bars
    assert 0 < lo < hi < w


def test_small_code_on_a_big_frame_is_enlarged_for_the_decoder():
    frame = card_scene(45, size=(1280, 720), module=1)
    region = Locator().find(frame)[0]
    assert region.module_px >= 2.0
    assert read_upright(region.image) == [PAYLOAD]


@pytest.mark.parametrize(
    "frame",
    [
        np.full((480, 640), 128, np.uint8),
        np.random.default_rng(3).normal(128, 4, (480, 640)).clip(0, 255).astype(np.uint8),
        np.zeros((720, 1280), np.uint8),
    ],
    ids=["flat", "noise", "black"],
)
def test_empty_scenes_have_no_regions(frame):
    assert Locator().find(frame) == []


def test_text_and_lines_are_not_taken_for_bars():
    page = np.full((480, 640), 230, np.uint8)
    for i, y in enumerate(range(40, 440, 28)):
        cv2.putText(page, f"Invoice 2026-{i:02d} total EUR 12.40 paid", (20, y), cv2.FONT_HERSHEY_SIMPLEX, 0.8, 30, 2)
    cv2.rectangle(page, (10, 10), (630, 470), 0, 3)
    for region in Locator().find(page):
        assert read_upright(region.image) == []


@pytest.mark.parametrize("shape", [(1, 1), (5, 300), (300, 5), (15, 15)])
def test_tiny_frames_are_fine(shape):
    assert Locator().find(np.full(shape, 200, np.uint8)) == []


def test_bad_settings_are_refused():
    for kwargs in ({"work_size": 10}, {"window": 1}, {"min_coherence": 1.5}):
        with pytest.raises(ValueError):
            Locator(**kwargs)


def test_candidates_cut_out_are_the_regions_found():
    frame = card_scene(30)
    locator = Locator()
    candidates = locator.candidates(frame)
    regions = locator.find(frame)
    cut = [region for region in (c.cut() for c in candidates) if region is not None]
    assert len(cut) == len(regions) >= 1
    for a, b in zip(cut, regions, strict=True):
        assert np.array_equal(a.image, b.image) and np.allclose(a.affine, b.affine)
    best = candidates[0]
    assert np.hypot(best.centre[0] - 320, best.centre[1] - 240) < 40
    error = (np.degrees(best.theta) + 30) % 180
    assert min(error, 180 - error) < 8.0


@pytest.mark.parametrize("angle", [0, 30])
def test_bars_smeared_by_motion_are_cut_out_whole(angle):
    # A card moved 4 modules along its code during the exposure (2.8 px per module, 1280x720):
    # no pixel step is an edge any more; the region still spans the code and keeps its module
    # size, and its unstretched crop comes with it (for the smear fit).
    code = np.asarray(zxingcpp.create_barcode(PAYLOAD, zxingcpp.BarcodeFormat.Code128).to_image(scale=10)).astype(np.float32)
    code = cv2.blur(code, (40, 1))  # 4 modules of 10 px
    code = cv2.resize(code, None, fx=0.28, fy=0.12, interpolation=cv2.INTER_AREA)
    frame = np.full((720, 1280), 160, np.float32)
    h, w = code.shape
    frame[300 : 300 + h, 640 - w // 2 : 640 - w // 2 + w] = code
    turn = cv2.getRotationMatrix2D((640, 360), angle, 1.0)
    frame = cv2.warpAffine(frame, turn, (1280, 720), flags=cv2.INTER_LINEAR, borderValue=160)
    frame = np.clip(frame + np.random.default_rng(1).normal(0, 2.0, frame.shape), 0, 255).astype(np.uint8)
    bars_px = 145 * 2.8  # a card's Code 128 is 145 modules (zxing-cpp adds a 10-module quiet zone each side)

    def widest(regions) -> float:
        spans = [0.0]
        for region in regions:
            ends = region.to_frame([(region.bars[0], 0.0), (region.bars[1], 0.0)])
            spans.append(float(np.hypot(ends[1][0] - ends[0][0], ends[1][1] - ends[0][1])))
        return max(spans)

    regions = Locator().find(frame, smeared=True)
    assert widest(regions) > 0.85 * bars_px, f"region spans {widest(regions):.0f} of {bars_px:.0f} px of bars"
    assert all(r.linear is not None and r.linear.shape == r.image.shape for r in regions)
    # Looked at as sharp bars only (what a frame costs until nothing read it), they are not.
    assert widest(Locator().find(frame)) < 0.5 * bars_px
