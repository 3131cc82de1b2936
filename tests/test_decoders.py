"""device.vision.decoders: zxing-cpp and pyzbar behind one interface, restricted to symbologies."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import zxingcpp

from device.vision.decoders import (
    DECODERS,
    SYMBOLOGIES,
    PyzbarDecoder,
    ZxingDecoder,
    as_grey,
    make_decoder,
)

PAYLOAD = "LE00123456780168"
EAN = "5901234123457"


def barcode(text: str, fmt: str, scale: int = 3) -> np.ndarray:
    """A level, clean barcode with quiet zones on a white canvas (grey uint8)."""
    code = np.asarray(zxingcpp.create_barcode(text, getattr(zxingcpp.BarcodeFormat, fmt)).to_image(scale=scale))
    return np.pad(code, 20, constant_values=255)


@pytest.mark.parametrize("name", DECODERS)
def test_reads_code128_with_zxing_names(name):
    symbols = make_decoder(name, ["Code128"]).decode(barcode(PAYLOAD, "Code128"))
    assert [(s.symbology, s.text, s.decoder) for s in symbols] == [("Code128", PAYLOAD, name)]
    assert symbols[0].quad is not None and len(symbols[0].quad) >= 2


@pytest.mark.parametrize("name", DECODERS)
def test_only_the_configured_symbologies_are_read(name):
    ean = barcode(EAN, "EAN13")
    assert make_decoder(name, ["Code128"]).decode(ean) == []
    assert [(s.symbology, s.text) for s in make_decoder(name, ["Code128", "EAN13"]).decode(ean)] == [("EAN13", EAN)]


@pytest.mark.parametrize("name", DECODERS)
def test_itf_is_named_itf_for_both(name):
    symbols = make_decoder(name, ["ITF"]).decode(barcode("30712345000010", "ITF"))
    assert [(s.symbology, s.text) for s in symbols] == [("ITF", "30712345000010")]


def test_every_listed_symbology_builds_for_both_decoders():
    assert "Code128" in SYMBOLOGIES and "EAN13" in SYMBOLOGIES and "ITF" in SYMBOLOGIES
    for symbology in SYMBOLOGIES:
        assert isinstance(make_decoder("zxing-cpp", [symbology]), ZxingDecoder)
        assert isinstance(make_decoder("pyzbar", [symbology]), PyzbarDecoder)


def test_unknown_decoder_is_named_in_the_error():
    with pytest.raises(ValueError, match="'zbar-ng'"):
        make_decoder("zbar-ng", ["Code128"])


def test_unknown_symbology_is_named_in_the_error():
    with pytest.raises(ValueError, match="'Code129'"):
        make_decoder("zxing-cpp", ["Code128", "Code129"])
    with pytest.raises(ValueError, match="no symbologies"):
        make_decoder("pyzbar", [])


def test_blank_image_decodes_to_nothing():
    for name in DECODERS:
        assert make_decoder(name, SYMBOLOGIES).decode(np.full((200, 300), 255, np.uint8)) == []


def test_as_grey_converts_colour_and_refuses_non_images():
    grey = barcode(PAYLOAD, "Code128")
    bgr = np.dstack([grey, grey, grey])
    assert np.array_equal(as_grey(bgr), grey)
    assert as_grey(bgr[:, :, :1]).shape == grey.shape
    # A BGR frame whose blue channel is blank still reads once made grey (pyzbar alone would
    # read only that first channel).
    tinted = bgr.copy()
    tinted[:, :, 0] = 255
    assert [s.text for s in make_decoder("pyzbar", ["Code128"]).decode(as_grey(tinted))] == [PAYLOAD]
    for bad in (np.zeros((4, 4), np.float32), np.zeros((0, 5), np.uint8), np.zeros((4, 4, 2), np.uint8), [[1, 2]]):
        with pytest.raises(ValueError):
            as_grey(bad)


def test_an_upright_decoder_reads_rows_only():
    # For located regions' crops, whose bars stand vertical: the turned passes are skipped.
    code = np.asarray(zxingcpp.create_barcode("LE00123456780168", zxingcpp.BarcodeFormat.Code128).to_image(scale=3))
    code = cv2.copyMakeBorder(code, 30, 30, 30, 30, cv2.BORDER_CONSTANT, value=255)
    turned = cv2.rotate(code, cv2.ROTATE_90_CLOCKWISE)
    upright = make_decoder("zxing-cpp", ["Code128"], upright=True)
    anyway = make_decoder("zxing-cpp", ["Code128"])
    assert [s.text for s in upright.decode(code)] == ["LE00123456780168"]
    assert upright.decode(turned) == []
    assert [s.text for s in anyway.decode(turned)] == ["LE00123456780168"]
