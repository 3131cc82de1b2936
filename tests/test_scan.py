"""`kiosk scan`: the daemon's pipeline over files, one JSON line per image and per video frame read."""

import json

import cv2
import numpy as np
from PIL import Image
from support.cards import card_photo, contracts, empty_counter
from support.kiosk import run_kiosk

from device.card import CARD_V1


def write(path, image):
    cv2.imwrite(str(path), image)
    return str(path)


def rotated(image, degrees):
    h, w = image.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2, h / 2), degrees, 0.8)
    return cv2.warpAffine(image, m, (w, h), borderValue=(110, 118, 120))


def product_photo(tmp_path):
    from device.tools.synth.card import render_product_label

    label = render_product_label("590123412345", dpi=200).convert("RGB")
    canvas = Image.new("RGB", (900, 600), (120, 118, 110))
    canvas.paste(label, (200, 150))
    return write(tmp_path / "product.png", np.asarray(canvas)[:, :, ::-1].copy())


def test_json_lines_for_images_a_video_and_broken_files(tmp_path):
    contract = contracts(1)[0]
    card = write(tmp_path / "card.png", rotated(card_photo(contract, 2), 40))
    nothing = write(tmp_path / "nothing.png", empty_counter())
    product = product_photo(tmp_path)
    bad_check = CARD_V1.encode(contract, 2)[:-2] + "00"
    forged = write(tmp_path / "forged.png", card_photo(contract, payload=bad_check))
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8 not really a jpeg")
    video = tmp_path / "counter.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (960, 600))
    for image in [empty_counter()] * 3 + [card_photo(contract, 2)] * 3:
        writer.write(image)
    writer.release()

    run = run_kiosk("scan", "--json", "--unmask", card, str(corrupt), nothing, product, forged, str(video), str(tmp_path / "missing.png"))
    lines = [json.loads(line) for line in run.stdout.splitlines()]
    by_path = {}
    for line in lines:
        by_path.setdefault(line["path"], []).append(line)

    assert run.returncode == 1  # the broken files, reported after all the others were scanned
    [c] = by_path[card]
    assert c["frame"] is None
    assert c["symbols"] == [
        {
            "symbology": "Code128",
            "text": CARD_V1.encode(contract, 2),
            "card": {"format": "v1", "contract": contract, "issue": 2},
            "reject": None,
        }
    ]
    assert by_path[nothing] == [{"path": nothing, "frame": None, "symbols": []}]
    [p] = by_path[product]
    assert [(s["symbology"], s["card"], s["reject"]) for s in p["symbols"]] == [("EAN13", None, "not-a-card")]
    [f] = by_path[forged]
    assert [(s["card"], s["reject"]) for s in f["symbols"]] == [(None, "bad-check-digits")]
    assert "error" in by_path[str(corrupt)][0] and "error" in by_path[str(tmp_path / "missing.png")][0]
    frames = by_path[str(video)]
    assert frames and all(line["frame"] >= 3 for line in frames)  # only frames in which the card was read
    assert all(s["card"] == {"format": "v1", "contract": contract, "issue": 2} for line in frames for s in line["symbols"])
    # Paths are reported in the order given, every one of them.
    assert list(by_path) == [card, str(corrupt), nothing, product, forged, str(video), str(tmp_path / "missing.png")]


def test_human_output_masks_the_contract(tmp_path):
    contract = contracts(1)[0]
    card = write(tmp_path / "card.png", card_photo(contract))
    run = run_kiosk("scan", card)
    assert run.returncode == 0
    assert f"contract ******{contract[-4:]}, issue 1" in run.stdout and contract not in run.stdout
    unmasked = run_kiosk("scan", "--unmask", card)
    assert f"contract {contract}" in unmasked.stdout


def test_json_output_is_masked_unless_unmask(tmp_path):
    contract = contracts(1)[0]
    card = write(tmp_path / "card.png", card_photo(contract, 2))
    run = run_kiosk("scan", "--json", card)
    assert run.returncode == 0, run.stderr
    [symbol] = json.loads(run.stdout)["symbols"]
    payload = CARD_V1.encode(contract, 2)
    assert symbol["card"] == {"format": "v1", "contract": "******" + contract[-4:], "issue": 2}
    assert symbol["text"] == "LE" + "*" * 10 + payload[-4:]
    assert contract not in run.stdout and payload not in run.stdout


def test_a_folder_reports_each_image_by_its_own_path(tmp_path):
    folder = tmp_path / "shots"
    folder.mkdir()
    a = write(folder / "a.png", card_photo(contracts(2)[0]))
    b = write(folder / "b.png", empty_counter())
    lines = [json.loads(line) for line in run_kiosk("scan", "--json", str(folder)).stdout.splitlines()]
    assert [line["path"] for line in lines] == [a, b]


def test_a_file_name_that_is_not_utf8_is_valid_json(tmp_path):
    """Byte 0xff in a name: Python holds it as a lone surrogate, which plain json.dumps would
    write as "\\udcff" (not Unicode: strict parsers refuse it). It is shown as \\xff instead."""
    import os
    import subprocess

    from support.kiosk import kiosk_cmd

    name = os.fsencode(tmp_path) + b"/caf\xff.png"
    ok, data = cv2.imencode(".png", card_photo(contracts(1)[0]))
    with open(name, "wb") as f:
        f.write(data.tobytes())
    run = subprocess.run(kiosk_cmd("scan", "--json", os.fsdecode(name)), capture_output=True)  # bytes: no decoding here
    assert run.returncode == 0, run.stderr
    text = run.stdout.decode("utf-8")  # strict: the output is UTF-8
    [line] = [json.loads(line) for line in text.splitlines()]
    assert line["path"] == f"{tmp_path}/caf\\xff.png"
    line["path"].encode("utf-8")  # no lone surrogate left inside
    assert line["symbols"][0]["card"]["issue"] == 1
    # A folder holding it, and the error for a missing one, too.
    for args in (["--json", str(tmp_path)], ["--json", os.fsdecode(os.fsencode(tmp_path) + b"/gone\xfe.png")]):
        out = subprocess.run(kiosk_cmd("scan", *args), capture_output=True).stdout.decode("utf-8")
        for line in map(json.loads, out.splitlines()):
            assert "\\x" in line["path"] and all(not 0xD800 <= ord(c) <= 0xDFFF for c in json.dumps(line, ensure_ascii=False))


def test_control_bytes_in_file_names_are_shown_escaped(tmp_path):
    folder = tmp_path / "shots"
    folder.mkdir()
    (folder / "evil\x1b[2J\x1b[31m.png").write_bytes(b"not an image")
    write(folder / "fine.png", empty_counter())
    run = run_kiosk("scan", str(folder / "evil\x1b[2J\x1b[31m.png"), str(folder))
    assert run.returncode == 1
    assert "\x1b" not in run.stdout and "\x1b" not in run.stderr  # neither the output nor the log
    assert "evil\\x1b[2J\\x1b[31m.png: error:" in run.stdout
    assert "skipping image 0 of" in run.stderr and "evil\\x1b[2J" in run.stderr
