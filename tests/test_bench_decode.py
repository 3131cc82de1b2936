"""device.tools.bench.decode: raw decoders vs the pipeline on labelled sets, per rotation."""

from __future__ import annotations

import argparse
import io
import json

import cv2
import numpy as np
import pytest
import zxingcpp

from device.card import CARD_V1
from device.tools.bench import decode as bench
from device.tools.bench.images import load_sets, rotate


def code_image(text: str, fmt: str = "Code128", scale: int = 2) -> np.ndarray:
    """A label-like photo: the code on white, on a darker surround."""
    code = np.asarray(zxingcpp.create_barcode(text, getattr(zxingcpp.BarcodeFormat, fmt)).to_image(scale=scale))
    code = cv2.resize(code, None, fx=1, fy=0.7, interpolation=cv2.INTER_AREA)
    label = cv2.copyMakeBorder(code, 30, 50, 30, 30, cv2.BORDER_CONSTANT, value=240)
    return cv2.copyMakeBorder(label, 60, 60, 60, 60, cv2.BORDER_CONSTANT, value=120)


@pytest.fixture
def image_sets(tmp_path):
    """Three small sets in the ZXing blackbox layout: Code 128, client cards, no barcodes."""
    root = tmp_path / "sets"
    labels = root / "code128-1"
    labels.mkdir(parents=True)
    for i, text in enumerate(["ABC-12345", "10064908", "Kiosk test 7"]):
        cv2.imwrite(str(labels / f"{i}.png"), code_image(text))
        (labels / f"{i}.txt").write_text(text, encoding="utf-8")
    cards = root / "code128-cards"
    cards.mkdir()
    payload = CARD_V1.encode("0012345678", 1)
    cv2.imwrite(str(cards / "card.png"), code_image(payload))
    (cards / "card.txt").write_text(payload, encoding="utf-8")
    empty = root / "falsepositives-1"
    empty.mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        cv2.imwrite(str(empty / f"{i:02d}.png"), rng.normal(128, 30, (200, 300)).clip(0, 255).astype(np.uint8))
    (root / "README.md").write_text("not an image set")
    return root


def test_sets_are_loaded_with_their_expected_text(image_sets):
    sets = {s.name: s for s in load_sets(image_sets)}
    assert set(sets) == {"code128-1", "code128-cards", "falsepositives-1"}
    assert sets["code128-1"].has_barcodes and not sets["falsepositives-1"].has_barcodes
    assert sorted(i.expected for i in sets["code128-1"].images) == ["10064908", "ABC-12345", "Kiosk test 7"]
    assert {i.expected for i in sets["falsepositives-1"].images} == {None}


def test_measure_compares_raw_decoders_and_pipeline_per_rotation(image_sets):
    rows = {(r.set, r.rotation): r for r in bench.measure(image_sets, [0, 45])}
    level, tilted = rows[("code128-1", 0)], rows[("code128-1", 45)]
    for name in bench.METHODS:
        assert level.cells[name].read == 3 and level.cells[name].images == 3
    # At 45 degrees the raw libraries read nothing; the pipeline reads them all.
    assert tilted.cells["zxing-cpp"].read == 0 and tilted.cells["pyzbar"].read == 0
    assert tilted.cells["pipeline"].read == 3
    assert all(c.wrong == 0 for r in rows.values() for c in r.cells.values())
    # Card check: only the client-card set turns into cards.
    assert rows[("code128-cards", 45)].cells["pipeline"].cards == 1
    assert rows[("code128-1", 45)].cells["pipeline"].cards == 0
    assert rows[("falsepositives-1", 0)].symbologies == ("Code128",)
    assert rows[("falsepositives-1", 0)].cells["pipeline"].images == 2


def test_misreads_and_false_reads_are_counted(tmp_path):
    wrong = tmp_path / "code128-9"
    wrong.mkdir()
    cv2.imwrite(str(wrong / "a.png"), code_image("REAL-TEXT"))
    (wrong / "a.txt").write_text("OTHER-TEXT")
    fp = tmp_path / "falsepositives-9"
    fp.mkdir()
    cv2.imwrite(str(fp / "b.png"), code_image("SHOULD-NOT-BE-HERE"))
    rows = {r.set: r for r in bench.measure(tmp_path, [0])}
    assert rows["code128-9"].cells["zxing-cpp"].wrong == 1 and rows["code128-9"].cells["zxing-cpp"].read == 0
    assert rows["falsepositives-9"].cells["pipeline"].wrong == 1


def test_run_prints_a_table_with_totals(image_sets):
    out = io.StringIO()
    assert bench.run(image_sets, [0, 30], out, frames=False) == 0
    text = out.getvalue()
    assert "machine:" in text and "zxing-cpp" in text and "pyzbar" in text and "pipeline" in text
    assert "code128-1" in text and "falsepositives-1" in text and "code128-*" in text
    assert "100.0%" in text


def test_json_output_has_one_object_per_set_and_rotation(image_sets):
    out = io.StringIO()
    assert bench.run(image_sets, [0, 90], out, as_json=True) == 0
    rows = [json.loads(line) for line in out.getvalue().splitlines()]
    assert len(rows) == 3 * 2
    assert set(rows[0]["cells"]) == set(bench.METHODS)


def test_frame_cost_times_1280x720_frames(image_sets):
    costs = bench.frame_cost(image_sets, [0, 45])
    assert [c.rotation for c in costs] == [0, 45]
    assert costs[0].frames == 4  # both code128 sets
    assert costs[1].read["pipeline"] == 4 and costs[1].read["zxing-cpp"] == 0
    assert all(ms > 0 for c in costs for ms in c.ms.values())


def test_missing_folder_is_reported_not_raised(tmp_path, capsys):
    assert bench.run(tmp_path / "nope", [0], io.StringIO()) == 2
    assert "nope" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert bench.run(tmp_path / "empty", [0], io.StringIO()) == 2


def test_cli_arguments(image_sets):
    parser = argparse.ArgumentParser()
    bench.add_arguments(parser)
    args = parser.parse_args(["--images", str(image_sets), "--rotations", "0,45", "--no-frames"])
    assert args.rotations == [0, 45]
    out = io.StringIO()
    assert bench.main(args, out) == 0
    assert "code128-1" in out.getvalue()
    assert parser.parse_args(["--images", "x"]).rotations == list(bench.DEFAULT_ROTATIONS)
    with pytest.raises(SystemExit):
        parser.parse_args(["--images", "x", "--rotations", "0,fast"])


def test_rotate_grows_the_canvas_and_keeps_right_angles_exact():
    image = np.zeros((40, 100), np.uint8)
    image[10:20, 10:30] = 255
    assert rotate(image, 90).shape == (100, 40)
    assert np.array_equal(rotate(rotate(image, 180), 180), image)
    turned = rotate(image, 45)
    assert turned.shape[0] > 90 and turned.shape[1] > 90
    assert turned[0, 0] == 255  # white border


def test_scale_shrinks_every_photograph_first(image_sets):
    # At a tenth of their size the labels' 2 px modules are gone: nothing reads; at full size all do.
    full = bench.measure(image_sets, [0])
    tiny = bench.measure(image_sets, [0], scale=0.1)
    labelled = [(f, t) for f, t in zip(full, tiny, strict=True) if f.has_barcodes]
    assert all(f.cells["pipeline"].read == f.cells["pipeline"].images for f, _ in labelled)
    assert all(t.cells["pipeline"].read == 0 for _, t in labelled)
    assert bench.shrink(np.zeros((100, 60), np.uint8), 0.5).shape == (50, 30)
    parser = argparse.ArgumentParser()
    bench.add_arguments(parser)
    assert parser.parse_args(["--images", "x", "--scale", "0.5"]).scale == 0.5
    for bad in ("0", "1.5", "half"):
        with pytest.raises(SystemExit):
            parser.parse_args(["--images", "x", "--scale", bad])
