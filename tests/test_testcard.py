"""`kiosk testcard`: a printable card at true size that the kiosk's own scanner reads back."""

from __future__ import annotations

import json
import re
import subprocess

import pytest
from PIL import Image
from support.kiosk import REPO, kiosk_cmd

MM_PER_INCH = 25.4
#: A 300 dpi card is a whole number of pixels: its true size is met to within half a pixel.
HALF_PIXEL_MM = MM_PER_INCH / 300 / 2


def run_testcard(*args) -> subprocess.CompletedProcess:
    return subprocess.run(kiosk_cmd("testcard", *args), capture_output=True, text=True, cwd=REPO, timeout=120)


def test_png_is_true_size_at_300_dpi_and_kiosk_scan_reads_the_requested_card(tmp_path):
    out = tmp_path / "card.png"
    run = run_testcard("--contract", "0012345678", "--issue", "2", "--out", str(out))
    assert run.returncode == 0, run.stderr

    with Image.open(out) as image:
        assert image.size == (1011, 638)
        assert [round(d) for d in image.info["dpi"]] == [300, 300]

    scan = subprocess.run(kiosk_cmd("scan", "--json", "--unmask", str(out)), capture_output=True, text=True, cwd=REPO, timeout=120)
    assert scan.returncode == 0, scan.stderr
    cards = [s["card"] for line in scan.stdout.splitlines() for s in json.loads(line)["symbols"]]
    assert cards == [{"format": "v1", "contract": "0012345678", "issue": 2}]


def test_pdf_page_is_the_card_at_true_size(tmp_path):
    out = tmp_path / "card.pdf"
    run = run_testcard("--contract", "0012345678", "--out", str(out), "--name", "Counter 5 test")
    assert run.returncode == 0, run.stderr

    boxes = re.findall(rb"/MediaBox\s*\[\s*([-\d.\s]+)\]", out.read_bytes())
    assert len(boxes) == 1, "one page"
    x0, y0, x1, y1 = (float(v) for v in boxes[0].split())
    width_mm, height_mm = (x1 - x0) / 72 * MM_PER_INCH, (y1 - y0) / 72 * MM_PER_INCH
    assert width_mm == pytest.approx(85.60, abs=HALF_PIXEL_MM)
    assert height_mm == pytest.approx(53.98, abs=HALF_PIXEL_MM)


@pytest.mark.parametrize("contract", ["12345", "00123456789", "00123A5678", "0000000000", ""])
def test_a_contract_no_kiosk_would_accept_is_refused_with_exit_2(tmp_path, contract):
    out = tmp_path / "card.png"
    run = run_testcard("--contract", contract, "--out", str(out))
    assert run.returncode == 2
    assert "--contract" in run.stderr and "contract number" in run.stderr
    assert not out.exists()
