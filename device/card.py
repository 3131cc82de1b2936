"""Client card payload formats: is this decoded text a client card, and whose?

A format is a small named unit (:class:`CardFormat`) with a name that travels with every
identification (outbox, wire record, central). :data:`REGISTRY` holds every format this software
knows by name; config ``scan.card_formats`` picks the ones a kiosk accepts (default: v1 only).
Adding another utility's card, or a later card generation, is one class and one
:func:`register_format` call. Spec v1 is documented in docs/CARD_SPEC.md.

>>> identify("LE00123456780168", "Code128")
Card(format='v1', contract='0012345678', issue=1)
>>> identify("LE00123456780169", "Code128").reason
'bad-check-digits'
"""

from __future__ import annotations

import abc
from dataclasses import dataclass

#: Longest decoded text we even look at. Anything longer is rejected before any parsing.
MAX_TEXT_LENGTH = 64


@dataclass(frozen=True)
class Card:
    """A valid client card: which payload format, which contract, which card issue (1 = first card).

    ``issue`` is None for a format that has no issue number.
    """

    format: str
    contract: str
    issue: int | None


@dataclass(frozen=True)
class Rejection:
    """Why a decoded text is not a card. ``reason`` is a stable token for logs, JSON and tests."""

    reason: str


# Stable reasons, shared by every format.
NOT_A_CARD = "not-a-card"  # no format claims it (other prefix, other symbology)
BAD_LENGTH = "bad-length"
BAD_CHARACTERS = "bad-characters"  # control characters, letters where digits belong, ...
BAD_CHECK_DIGITS = "bad-check-digits"
ZERO_CONTRACT = "zero-contract"
ZERO_ISSUE = "zero-issue"
TOO_LONG = "too-long"

REASONS = (NOT_A_CARD, BAD_LENGTH, BAD_CHARACTERS, BAD_CHECK_DIGITS, ZERO_CONTRACT, ZERO_ISSUE, TOO_LONG)


class CardFormat(abc.ABC):
    """One card payload format.

    ``claims`` says whether a text is meant to be this format (right symbology and prefix), so that
    a damaged card of this format gets a specific reason instead of "not-a-card". ``parse`` then
    validates it; it never raises.
    """

    #: The format's name: stored and sent with each identification, listed in ``scan.card_formats``.
    name: str
    #: The barcode symbologies (zxing-cpp names) its cards are printed in.
    symbologies: frozenset[str]

    @abc.abstractmethod
    def claims(self, text: str, symbology: str) -> bool: ...

    @abc.abstractmethod
    def parse(self, text: str) -> Card | Rejection: ...

    @abc.abstractmethod
    def encode(self, contract: str, issue: int | None) -> str:
        """The payload for a contract and card issue (for test cards and synthetic scenes)."""


class PrefixedDigitsFormat(CardFormat):
    """A format whose payload is a fixed ``prefix`` then ASCII digits, ``length`` characters in all.

    Spec v1 is one; so are most utilities' cards. Subclasses parse the digits from :meth:`digits`.
    """

    prefix: str
    length: int

    def claims(self, text: str, symbology: str) -> bool:
        return symbology in self.symbologies and text.startswith(self.prefix)

    def digits(self, text: str) -> str | Rejection:
        """The digits after the prefix, or why the text is not of the right length and alphabet."""
        if len(text) != self.length:
            return Rejection(BAD_LENGTH)
        body = text[len(self.prefix) :]
        # str.isdigit() accepts other scripts' digits and superscripts: only ASCII 0-9 count.
        if not all("0" <= c <= "9" for c in body):
            return Rejection(BAD_CHARACTERS)
        return body


def mod97_check(digits: str) -> str:
    """ISO 7064 MOD 97-10 check digits (the IBAN scheme) for a string of digits."""
    return f"{98 - int(digits + '00') % 97:02d}"


class CardV1(PrefixedDigitsFormat):
    """Spec v1: Code 128, ``LE`` + contract (10 digits) + issue (2 digits) + MOD 97-10 check (2 digits).

    >>> CardV1().encode("0012345678", 1)
    'LE00123456780168'
    """

    name = "v1"
    symbologies = frozenset({"Code128"})
    prefix = "LE"
    contract_digits = 10
    issue_digits = 2
    length = 2 + 10 + 2 + 2

    def parse(self, text: str) -> Card | Rejection:
        body = self.digits(text)
        if isinstance(body, Rejection):
            return body
        contract = body[: self.contract_digits]
        issue = body[self.contract_digits : self.contract_digits + self.issue_digits]
        if int(body) % 97 != 1:
            return Rejection(BAD_CHECK_DIGITS)
        if int(contract) == 0:
            return Rejection(ZERO_CONTRACT)
        if int(issue) == 0:
            return Rejection(ZERO_ISSUE)
        return Card(self.name, contract, int(issue))

    def encode(self, contract: str, issue: int) -> str:
        if len(contract) != self.contract_digits or not all("0" <= c <= "9" for c in contract):
            raise ValueError(f"contract must be {self.contract_digits} digits")
        if not 1 <= issue <= 99:
            raise ValueError("card issue must be 1..99")
        digits = f"{contract}{issue:02d}"
        return f"{self.prefix}{digits}{mod97_check(digits)}"


CARD_V1 = CardV1()
#: Every format this software knows, by name (:func:`register_format` adds one).
REGISTRY: dict[str, CardFormat] = {CARD_V1.name: CARD_V1}
#: The formats a kiosk accepts unless configured otherwise (``scan.card_formats``).
DEFAULT_FORMAT_NAMES: tuple[str, ...] = (CARD_V1.name,)


def register_format(fmt: CardFormat) -> CardFormat:
    """Make ``fmt`` known by its name, so that ``scan.card_formats`` may enable it.

    Returns ``fmt`` (usable as a class decorator's helper). Registering another format under a
    name already taken is refused: identifications already stored under that name would change
    meaning.

    >>> register_format(CARD_V1) is CARD_V1
    True
    """
    known = REGISTRY.get(fmt.name)
    if known is not None and known is not fmt and type(known) is not type(fmt):
        raise ValueError(f"card format {fmt.name!r} is already registered ({type(known).__name__})")
    REGISTRY[fmt.name] = fmt
    return fmt


def formats_named(names) -> tuple[CardFormat, ...]:
    """The registered formats for ``names``, in that order; KeyError names an unknown one.

    >>> [f.name for f in formats_named(["v1"])]
    ['v1']
    """
    return tuple(REGISTRY[name] for name in names)


#: The formats tried when none are given: the defaults.
FORMATS: tuple[CardFormat, ...] = formats_named(DEFAULT_FORMAT_NAMES)


def identify(text: str, symbology: str, formats: tuple[CardFormat, ...] = FORMATS) -> Card | Rejection:
    """Decide whether a decoded barcode is a client card.

    Returns the :class:`Card`, or a :class:`Rejection` whose reason comes from the format that
    claims the text (a damaged card), else ``not-a-card``. Never raises, whatever the text.
    """
    if len(text) > MAX_TEXT_LENGTH:
        return Rejection(TOO_LONG)
    for fmt in formats:
        if fmt.claims(text, symbology):
            return fmt.parse(text)
    return Rejection(NOT_A_CARD)
