"""A second card format, used only in tests: another utility's card ("XU").

Code 128, ``XU`` + contract (8 digits) + card issue (1 digit, 1-9) + one Luhn check digit over the
9 digits: 12 characters, e.g. ``XU1234567830``. Importing this module registers it, so that
``scan.card_formats = ["v1", "xu"]`` is valid; the reference central accepts it with
``--accept-format`` :data:`CENTRAL_FORMAT`.

>>> XU.encode("12345678", 3)
'XU1234567830'
>>> identify("XU1234567830", "Code128", (XU,))
Card(format='xu', contract='12345678', issue=3)
"""

from __future__ import annotations

from device.card import PrefixedDigitsFormat, identify, register_format  # noqa: F401  (identify: the doctest's)


def luhn_check(digits: str) -> str:
    """The Luhn check digit for ``digits`` (the payment-card scheme)."""
    total = 0
    for i, c in enumerate(reversed(digits)):
        d = int(c) * (2 if i % 2 == 0 else 1)
        total += d - 9 if d > 9 else d
    return str(-total % 10)


#: Utility XU's card: Code 128, ``XU`` + 8-digit contract + 1-digit issue + Luhn check digit.
XU = register_format(PrefixedDigitsFormat("xu", frozenset({"Code128"}), "XU", 8, 1, 1, check=luhn_check))
#: The reference central's ``--accept-format`` for XU records.
CENTRAL_FORMAT = "xu:8:9"
