"""Card payload spec v1: what is a client card and what is not."""

import dataclasses
import string

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from device.card import CARD_V1, FORMATS, REASONS, Card, Rejection, identify, mod97_check

contracts = st.text(alphabet="0123456789", min_size=10, max_size=10).filter(lambda c: int(c) != 0)
issues = st.integers(min_value=1, max_value=99)


def test_spec_example_from_the_guide():
    assert identify("LE00123456780168", "Code128") == Card("v1", "0012345678", 1)


@pytest.mark.parametrize(
    "text, symbology, reason",
    [
        ("LE00123456780169", "Code128", "bad-check-digits"),
        ("LE0012345678016", "Code128", "bad-length"),
        ("LE001234567801680", "Code128", "bad-length"),
        ("LE0012345678O168", "Code128", "bad-characters"),  # letter O for zero
        ("LE00123456\x0080168", "Code128", "bad-characters"),
        ("LE００１２３４５６７８０１６８", "Code128", "bad-characters"),  # full-width digits are not ASCII
        ("LE00000000000195", "Code128", "zero-contract"),
        ("LE00123456780071", "Code128", "zero-issue"),
        ("LE00123456780168", "EAN13", "not-a-card"),  # right text, wrong symbology
        ("4006381333931", "EAN13", "not-a-card"),
        ("le00123456780168", "Code128", "not-a-card"),
        ("", "Code128", "not-a-card"),
        ("LE" + "0" * 200, "Code128", "too-long"),
    ],
)
def test_rejections_name_the_reason(text, symbology, reason):
    assert identify(text, symbology) == Rejection(reason)


def test_zero_cases_have_valid_check_digits():
    # So the zero-contract / zero-issue cases above are rejected for the zero rule, not the checksum.
    assert mod97_check("000000000001") == "95"
    assert mod97_check("001234567800") == "71"


@given(contracts, issues)
def test_every_valid_payload_round_trips(contract, issue):
    payload = CARD_V1.encode(contract, issue)
    assert len(payload) == 16
    assert identify(payload, "Code128") == Card("v1", contract, issue)


@given(st.text(max_size=40), st.sampled_from(["Code128", "EAN13", "ITF", "QRCode", ""]))
def test_nothing_raises_and_only_canonical_payloads_are_cards(text, symbology):
    result = identify(text, symbology)
    assert isinstance(result, (Card, Rejection))
    if isinstance(result, Card):
        assert symbology == "Code128"
        assert text == CARD_V1.encode(result.contract, result.issue)
    else:
        assert result.reason in REASONS


@given(st.text(alphabet=string.digits, min_size=14, max_size=14))
def test_digit_strings_are_cards_exactly_when_the_spec_says(body):
    text = "LE" + body
    valid = int(body) % 97 == 1 and int(body[:10]) != 0 and int(body[10:12]) != 0
    assert isinstance(identify(text, "Code128"), Card) == valid


@given(contracts, issues, st.integers(0, 13), st.integers(1, 9))
def test_any_single_digit_error_is_caught(contract, issue, position, delta):
    body = CARD_V1.encode(contract, issue)[2:]
    wrong = body[:position] + str((int(body[position]) + delta) % 10) + body[position + 1 :]
    assert identify("LE" + wrong, "Code128") == Rejection("bad-check-digits")


@given(contracts, issues, st.integers(0, 12))
def test_any_adjacent_transposition_is_caught(contract, issue, position):
    body = CARD_V1.encode(contract, issue)[2:]
    assume(body[position] != body[position + 1])
    swapped = body[:position] + body[position + 1] + body[position] + body[position + 2 :]
    assert not isinstance(identify("LE" + swapped, "Code128"), Card)


def test_encode_refuses_what_it_cannot_encode():
    with pytest.raises(ValueError):
        CARD_V1.encode("123", 1)
    with pytest.raises(ValueError):
        CARD_V1.encode("0012345678", 0)
    with pytest.raises(ValueError):
        CARD_V1.encode("0012345678", 100)


def test_a_new_format_is_a_small_unit_beside_v1():
    """Adding a card generation is a value and a tuple entry; identify() takes the list."""
    card_v2 = dataclasses.replace(CARD_V1, name="v2", prefix="LV")

    formats = FORMATS + (card_v2,)
    v2 = card_v2.encode("0012345678", 3)
    assert identify(v2, "Code128", formats) == Card("v2", "0012345678", 3)
    assert identify(v2, "Code128") == Rejection("not-a-card")
