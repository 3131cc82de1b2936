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
