"""Synthetic cards, counter scenes and presentation videos (device.tools.synth) and the scenes benchmark."""

from __future__ import annotations

import argparse
import io
import re

import cv2
import numpy as np
import pytest
import zxingcpp
from PIL import Image

from device.card import CARD_V1
from device.tools.bench import scenes as bench_scenes
from device.tools.synth.card import card_size_px, render_card, render_product_label, save_card
from device.tools.synth.scene import Conditions, card_quad, render_scene
from device.tools.synth.video import Presentation, PresentationTruth, load_truth, save_truth, write_presentation_video


def zxing_texts(image) -> set[str]:
    return {r.text for r in zxingcpp.read_barcodes(image)}


# --- cards --------------------------------------------------------------------------------------


def test_card_barcode_decodes_to_the_spec_v1_payload():
    card = render_card("0012345678", 1)
    assert zxing_texts(card.convert("RGB")) == {"LE00123456780168"}


def test_card_payload_override_is_what_the_barcode_holds():
    card = render_card("0012345678", 1, payload="LE00123456780169")
    assert zxing_texts(card.convert("RGB")) == {"LE00123456780169"}


def test_card_bars_are_whole_pixel_modules_with_quiet_zones():
    grey = np.asarray(render_card("4000000017", 2).convert("L"))
    rows, cols = np.nonzero(grey < 80)
    # The darkest row band is the barcode; its runs of dark and light must be multiples of 5 px.
    row = grey[int(np.median(rows[rows > grey.shape[0] // 2]))]
    dark = row < 128
    edges = np.flatnonzero(np.diff(dark.astype(np.int8))) + 1
    first, last = edges[0], edges[-1]
    runs = np.diff(edges)
    assert set(runs % 5) == {0}
    # Ten modules of light on each side (the panel is white there).
    assert (row[first - 50 : first] > 200).all() and (row[last : last + 50] > 200).all()


def test_card_png_is_true_size_at_300_dpi(tmp_path):
    path = save_card(tmp_path / "card.png", "0012345678", 1)
    with Image.open(path) as im:
        assert im.size == (1011, 638) == card_size_px(300)
        assert im.info["dpi"] == pytest.approx((300, 300), abs=0.01)


def test_card_pdf_page_is_85_60_by_53_98_mm(tmp_path):
    path = save_card(tmp_path / "card.pdf", "0012345678", 1)
    data = path.read_bytes()
    assert data.startswith(b"%PDF")
    box = re.search(rb"/MediaBox \[ ?([\d.]+) ([\d.]+) ([\d.]+) ([\d.]+) ?\]", data)
    width_mm, height_mm = (float(box.group(i)) / 72 * 25.4 for i in (3, 4))
    assert width_mm == pytest.approx(85.60, abs=0.1)
    assert height_mm == pytest.approx(53.98, abs=0.1)


def test_save_card_refuses_other_suffixes(tmp_path):
    with pytest.raises(ValueError, match="png or .pdf"):
        save_card(tmp_path / "card.gif", "0012345678", 1)


def test_product_label_holds_an_ean13():
    label = render_product_label("590123412345")
    assert {(r.format.name, r.text) for r in zxingcpp.read_barcodes(label.convert("RGB"))} == {("EAN13", "5901234123457")}


# --- scenes -------------------------------------------------------------------------------------


def test_scene_is_deterministic_for_a_seed_and_has_the_requested_size():
    card = render_card("0012345678", 1)

    def scene(seed, size):
        rng = np.random.default_rng(seed)
        return render_scene(card, Conditions.random(rng, frame_size=size), size, rng)

    a, b, c = scene(5, (640, 480)), scene(5, (640, 480)), scene(6, (640, 480))
    assert a.shape == (480, 640, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_level_clean_card_in_a_scene_reads_with_raw_zxing():
    frame = render_scene(render_card("0012345678", 1), Conditions(card_width_frac=0.45), rng=np.random.default_rng(1))
    assert "LE00123456780168" in zxing_texts(frame)


def test_random_conditions_cover_any_angle_and_keep_the_card_in_view():
    rng = np.random.default_rng(0)
    conds = [Conditions.random(rng) for _ in range(200)]
    angles = np.array([c.rotation_deg for c in conds])
    assert angles.min() < 30 and angles.max() > 330
    assert np.histogram(angles, bins=4, range=(0, 360))[0].min() > 20
    for c in conds:
        quad = card_quad(card_size_px(300), c, (1280, 720))
        assert quad[:, 0].min() >= 0 and quad[:, 0].max() <= 1280
        assert quad[:, 1].min() >= 0 and quad[:, 1].max() <= 720
        assert 0.15 <= c.card_width_frac <= 0.6
    # Degradations are really drawn, not all zero.
    assert any(c.glare > 0 for c in conds) and any(c.motion_blur_px > 2 for c in conds)
    assert any(c.distractor_ean13 for c in conds) and any(c.thumb for c in conds)


def test_conditions_buckets_name_every_condition():
    buckets = Conditions(rotation_deg=135.0).buckets()
    assert buckets["angle"] == "30-60 deg"  # 135 degrees is 45 degrees from level
    assert set(buckets) >= {"angle", "size", "focus blur", "motion blur", "light", "glare", "jpeg"}


# --- videos -------------------------------------------------------------------------------------


def test_presentation_video_reads_back_and_its_truth_is_consistent(tmp_path):
    path = tmp_path / "counter.avi"
    presentations = [
        Presentation.card("0012345678", 1, hold_s=0.5),
        Presentation.product_ean13(hold_s=0.5),
        Presentation.bad_check("1234567890", hold_s=0.5),
    ]
    truths = write_presentation_video(path, presentations, fps=10, size=(320, 180), seed=3)

    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    assert frames and frames[0].shape == (180, 320, 3)

    assert [t.payload for t in truths] == ["LE00123456780168", "5901234123457", "LE12345678900178"]
    assert [t.is_card for t in truths] == [True, False, False]
    previous_left = 0
    for t in truths:
        assert previous_left < t.enter_frame <= t.full_from <= t.full_to < t.left_frame <= len(frames)
        assert t.full_to - t.full_from + 1 >= 4  # held about 0.5 s at 10 fps
        previous_left = t.left_frame
    # Frames before the first card are the empty counter; a frame with the card fully in view is not.
    empty = frames[0].astype(np.int16)

    def changed_share(frame):
        return (np.abs(frame - empty).max(axis=2) > 30).mean()

    assert changed_share(frames[truths[0].enter_frame - 1]) < 0.005
    assert changed_share(frames[truths[0].full_from]) > 0.03  # the card covers >= 4% of the frame


def test_cards_shown_together_and_a_card_lying_in_view(tmp_path):
    path = tmp_path / "counter.avi"
    together = (Presentation.card("0012345678", hold_s=0.5), Presentation.card("4000000017", 2, hold_s=0.5))
    later = Presentation.card("0000009999", hold_s=0.5).after(2.0)
    truths = write_presentation_video(path, [together, later], fps=10, size=(640, 360), seed=4, resting=[Presentation.card("1111111116")])
    frames = int(cv2.VideoCapture(str(path)).get(cv2.CAP_PROP_FRAME_COUNT))
    assert [t.payload[2:12] for t in truths] == ["0012345678", "4000000017", "0000009999", "1111111116"]
    a, b, c, lying = truths
    # Held up together: both whole in view at the same time.
    assert max(a.full_from, b.full_from) < min(a.full_to, b.full_to)
    # The pause before the third: 2 s of empty counter (20 frames) between them at least.
    assert c.enter_frame - max(a.left_frame, b.left_frame) >= 20
    # The resting card is in view from the first frame to the last.
    assert (lying.enter_frame, lying.full_from, lying.full_to, lying.left_frame) == (0, 0, frames - 1, frames)


def test_truth_round_trips_through_json(tmp_path):
    truths = [PresentationTruth("LE00123456780168", "Code128", "card", True, 5, 7, 20, 23)]
    save_truth(tmp_path / "t.json", truths)
    assert load_truth(tmp_path / "t.json") == truths


def test_presentation_kinds_know_whether_they_are_cards():
    assert Presentation.card("0012345678", 1).is_card
    assert not Presentation.bad_check("0012345678", 1).is_card
    assert not Presentation.foreign_code128().is_card
    assert not Presentation.product_ean13().is_card
    assert Presentation.product_ean13("590123412345").payload == "5901234123457"


# --- benchmark ----------------------------------------------------------------------------------


def test_score_presentations_counts_frames_from_entering_view():
    truths = [
        PresentationTruth("LE00123456780168", "Code128", "card", True, 10, 12, 30, 33),
        PresentationTruth("5901234123457", "EAN13", "product-ean13", False, 50, 52, 60, 63),
    ]
    reads = [
        (14, "Code128", "LE00123456780168"),
        (15, "Code128", "LE00123456780168"),
        (55, "EAN13", "5901234123457"),
        (40, "Code128", "LE00123456780168"),
    ]
    card, product = bench_scenes.score_presentations(truths, reads)
    assert card.identified and card.first_read_frame == 14 and card.frames_to_read == 4 and not card.false_card
    assert not product.identified and not product.false_card

    other = CARD_V1.encode("4000000017", 2)
    (card,) = bench_scenes.score_presentations(truths[:1], [(20, "Code128", other)])
    assert not card.identified and card.false_card


def test_scene_benchmark_tallies_reads_per_reader_and_bucket():
    scenes = list(bench_scenes.make_scenes(3, seed=2))
    assert [s.index for s in scenes] == [0, 1, 2]
    assert all(CARD_V1.parse(s.payload).contract for s in scenes)
    # Scenes depend only on (seed, index).
    again = next(bench_scenes.make_scenes(1, seed=2))
    assert np.array_equal(again.image, scenes[0].image) and again.payload == scenes[0].payload

    class Sym:
        def __init__(self, text):
            self.symbology, self.text = "Code128", text

    truth = {s.image.tobytes()[:64]: s.payload for s in scenes}
    readers = {
        "oracle": lambda im: [Sym(truth[im.tobytes()[:64]])],
        "blind": lambda im: [],
        "raw liar": lambda im: [Sym(CARD_V1.encode("9999999999", 1))],
    }
    results = bench_scenes.run_scenes(scenes, readers)
    assert results.rate("oracle") == 1.0 and results.rate("blind") == 0.0
    assert results.overall["raw liar"].false_card == 3
    out = io.StringIO()
    bench_scenes.report(results, out)
    assert "| oracle | 3/3 | 100.0% |" in out.getvalue()
    assert "angle" in out.getvalue()


def test_scene_benchmark_command_runs(capsys):
    parser = argparse.ArgumentParser()
    bench_scenes.add_arguments(parser)
    out = io.StringIO()
    assert bench_scenes.main(parser.parse_args(["--count", "2", "--seed", "4"]), out) == 0
    text = out.getvalue()
    assert "raw zxing-cpp" in text and "raw pyzbar" in text and "kiosk pipeline" in text
    assert bench_scenes.main(parser.parse_args(["--count", "-1"]), io.StringIO()) == 2


def test_scene_benchmark_at_another_size_and_card_width():
    scenes = list(bench_scenes.make_scenes(4, seed=3, size=(640, 480), card_width=(0.6, 0.8)))
    assert all(s.image.shape == (480, 640, 3) for s in scenes)
    # fit_in_view may shrink a card that does not fit at its angle, never enlarge it.
    assert all(0.4 <= s.conditions.card_width_frac <= 0.8 for s in scenes)
    assert max(s.conditions.card_width_frac for s in scenes) >= 0.6
    parser = argparse.ArgumentParser()
    bench_scenes.add_arguments(parser)
    out = io.StringIO()
    args = parser.parse_args(["--count", "1", "--size", "640x480", "--card-width", "0.5,0.6", "--no-reference"])
    assert bench_scenes.main(args, out) == 0
    assert "640x480, card width 50%-60%" in out.getvalue() and "pipeline without card decoder" in out.getvalue()
    for bad in (["--size", "640"], ["--card-width", "0.9,0.2"]):
        with pytest.raises(SystemExit):
            parser.parse_args(bad)
