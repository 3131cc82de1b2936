"""kiosk bench resolution: the curve's crossings, the frames it draws, and a small run end to end."""

from __future__ import annotations

import re

import numpy as np
from support.kiosk import run_kiosk

from device.tools.bench import resolution


def test_crossing_is_where_the_curve_stays_above_the_level():
    assert resolution.crossing({1.0: 0.5, 2.0: 1.0, 3.0: 1.0}) == 1.8
    # A dip above the crossing counts: the curve must stay above from there on.
    assert resolution.crossing({1.0: 1.0, 1.5: 0.5, 2.0: 1.0}) == 1.5 + 0.5 * 0.8
    assert resolution.crossing({1.0: 0.95, 2.0: 1.0}) == 1.0
    assert resolution.crossing({1.0: 0.95, 2.0: 0.5}) is None


def test_frames_put_the_module_at_the_asked_size():
    # The card's barcode module (5 px at 300 dpi) lands at module_px frame pixels: the card's
    # outline in the frame says so.
    from device.tools.synth.card import card_size_px
    from device.tools.synth.scene import card_quad

    rng = np.random.default_rng(1)
    width = card_size_px()[0]
    for module_px in (0.8, 1.3, 2.5):
        conditions, size = resolution.conditions_for(width, module_px, 30.0, rng)
        quad = card_quad(card_size_px(), conditions, size)
        seen = float(np.linalg.norm(quad[1] - quad[0]))
        assert abs(seen * 5 / width - module_px) < 0.03 * module_px
        assert size == resolution.frame_for(module_px) and quad.min() >= 0 and (quad.max(axis=0) <= size).all()


def test_small_run_reports_the_curve_crossings_and_no_false_cards():
    run = run_kiosk("bench", "resolution", "--modules", "1.5,3", "--angles", "0", "--per-cell", "2", "--negatives", "1", timeout=300)
    assert run.returncode == 0, run.stderr
    rows = {
        line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]] for line in run.stdout.splitlines() if line.startswith("|")
    }
    assert set(rows) >= {"1.5", "3", "**crosses 90% at**", "false cards (8 negatives + cards)"}
    assert rows["3"][-1] == "100%"  # the pipeline reads every large card
    assert rows["false cards (8 negatives + cards)"][1:] == ["0"] * 4
    assert re.search(r"machine: .*cores", run.stdout)
    bad = run_kiosk("bench", "resolution", "--modules", "0.1")
    assert bad.returncode == 2 and "0.5" in bad.stderr


def test_photo_negatives_count_false_cards_on_photographs(tmp_path):
    import cv2
    import zxingcpp

    from device.card import CARD_V1

    # A foreign Code 128 and a card photographed: the card counts as a false card (the table
    # is for sets without cards), the foreign code does not.
    root = tmp_path / "sets" / "code128-1"
    root.mkdir(parents=True)
    for name, text in (("foreign", "ABC-12345"), ("card", CARD_V1.encode("0012345678", 1))):
        image = np.asarray(zxingcpp.create_barcode(text, zxingcpp.BarcodeFormat.Code128).to_image(scale=3))
        cv2.imwrite(str(root / f"{name}.png"), cv2.copyMakeBorder(image, 40, 40, 40, 40, cv2.BORDER_CONSTANT, value=255))
        (root / f"{name}.txt").write_text(text)
    table = resolution.photo_negatives(tmp_path / "sets", rotations=(0, 90), scales=(1.0,))
    assert table == {(1.0, 0): (2, 0, 1), (1.0, 90): (2, 0, 1)}
