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

from device.card import BAD_CHECK_DIGITS, ZERO_CONTRACT, ZERO_ISSUE, Card, PrefixedDigitsFormat, Rejection, identify, register_format


def luhn_check(digits: str) -> str:
    """The Luhn check digit for ``digits`` (the payment-card scheme)."""
    total = 0
    for i, c in enumerate(reversed(digits)):
        d = int(c) * (2 if i % 2 == 0 else 1)
        total += d - 9 if d > 9 else d
    return str(-total % 10)


class CardXU(PrefixedDigitsFormat):
    """Utility XU's card: Code 128, ``XU`` + 8-digit contract + 1-digit issue + Luhn check digit."""

    name = "xu"
    symbologies = frozenset({"Code128"})
    prefix = "XU"
    contract_digits = 8
    length = 2 + 8 + 1 + 1

    def parse(self, text: str) -> Card | Rejection:
        body = self.digits(text)
        if isinstance(body, Rejection):
            return body
        if luhn_check(body[:-1]) != body[-1]:
            return Rejection(BAD_CHECK_DIGITS)
        contract, issue = body[: self.contract_digits], int(body[self.contract_digits])
        if int(contract) == 0:
            return Rejection(ZERO_CONTRACT)
        if issue == 0:
            return Rejection(ZERO_ISSUE)
        return Card(self.name, contract, issue)

    def encode(self, contract: str, issue: int | None) -> str:
        if len(contract) != self.contract_digits or not all("0" <= c <= "9" for c in contract):
            raise ValueError(f"contract must be {self.contract_digits} digits")
        if issue is None or not 1 <= issue <= 9:
            raise ValueError("card issue must be 1..9")
        digits = f"{contract}{issue}"
        return f"{self.prefix}{digits}{luhn_check(digits)}"


XU = register_format(CardXU())
#: The reference central's ``--accept-format`` for XU records.
CENTRAL_FORMAT = "xu:8:9"
