"""Barcode text never reaches a log raw; contracts show only their last 4 digits."""

from hypothesis import given
from hypothesis import strategies as st

from device.redact import describe_text, escape, mask_contract


def test_mask_contract_keeps_last_four():
    assert mask_contract("0012345678") == "******5678"
    assert mask_contract("0012345678", unmask=True) == "0012345678"


def test_describe_hides_digit_runs_and_escapes_control_characters():
    shown = describe_text("LE00123456780168\x1b[2J\n")
    assert "0012345678" not in shown
    assert "\x1b" not in shown and "\n" not in shown
    assert shown.startswith("LE") and "0168" in shown


@given(st.text(max_size=200))
def test_anything_becomes_printable_ascii_of_bounded_length(text):
    for shown in (escape(text), describe_text(text), describe_text(text, unmask=True)):
        assert shown.isascii() and shown.isprintable()
        assert len(shown) <= 40 * 10 + 3  # each character escapes to at most 10 (\U0001f600)


def test_log_lines_escape_outside_text_and_stay_one_line():
    import io
    import logging

    from device.redact import EscapingFormatter

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(EscapingFormatter("%(levelname)s %(message)s"))
    logger = logging.getLogger("test.redact.escaping")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("skipping %s", "frames/evil\x1b[2J\nERROR fake line\u202e\udcff.png")
        try:
            raise ValueError("bad name \x1b[31m")
        except ValueError:
            logger.exception("Rīga counter 2: failed")
    finally:
        logger.removeHandler(handler)
    text = stream.getvalue()
    assert "\x1b" not in text and "\u202e" not in text and "\udcff" not in text
    lines = text.splitlines()
    assert lines[0] == "WARNING skipping frames/evil\\x1b[2J\\nERROR fake line\\u202e\\xff.png"
    assert lines[1] == "ERROR Rīga counter 2: failed"  # letters of any script stay readable
    assert lines[2] == "Traceback (most recent call last):"  # a traceback keeps its lines
    assert lines[-1] == "ValueError: bad name \\x1b[31m"


def test_a_name_that_is_not_utf8_becomes_valid_unicode():
    import os

    from device.redact import undecodable_as_bytes

    shown = undecodable_as_bytes(os.fsdecode(b"/srv/caf\xff\xfe.png"))
    assert shown == "/srv/caf\\xff\\xfe.png"
    shown.encode("utf-8")
    assert undecodable_as_bytes("lone \ud800") == "lone \\ud800"
    assert escape(os.fsdecode(b"caf\xff")) == "caf\\xff"


@given(st.text(max_size=200))
def test_any_text_becomes_one_printable_line(text):
    from device.redact import log_text

    shown = log_text(text)
    assert shown.isprintable() and "\n" not in shown
    shown.encode("utf-8")
