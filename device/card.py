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
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

#: The narrow bar (module) of the Code 128 printed on a spec-v1 card, in millimetres (docs/CARD_SPEC.md;
#: the synthetic cards are drawn with it). How far a moving card may smear is counted in these.
CARD_MODULE_MM = 0.42

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


@dataclass(frozen=True)
class PrefixedDigitsFormat(CardFormat):
    """A format whose payload is a fixed ``prefix``, then the contract, the card issue and check
    digits, all ASCII digits of fixed widths: most utilities' cards, spec v1 among them.

    Such a format is data: its widths and its check-digit function; parsing and encoding follow
    from them. ``check`` gives the check digits for the contract and issue digits; ``valid``, if
    given, decides instead whether the digits after the prefix carry good check digits (for a
    scheme whose own rule is not "recompute and compare"). An issue width of 0: no issue number.

    >>> f = PrefixedDigitsFormat("ab", frozenset({"Code128"}), "AB", 4, 1, 1, check=lambda d: str(sum(map(int, d)) % 10))
    >>> f.encode("1234", 5), f.parse("AB123455")
    ('AB123455', Card(format='ab', contract='1234', issue=5))
    """

    name: str
    symbologies: frozenset[str]
    prefix: str
    contract_digits: int
    issue_digits: int
    check_digits: int
    check: Callable[[str], str]
    valid: Callable[[str], bool] | None = None

    @property
    def length(self) -> int:
        return len(self.prefix) + self.contract_digits + self.issue_digits + self.check_digits

    def claims(self, text: str, symbology: str) -> bool:
        return symbology in self.symbologies and text.startswith(self.prefix)

    def _check_holds(self, body: str) -> bool:
        if self.valid is not None:
            return self.valid(body)
        return self.check(body[: -self.check_digits]) == body[-self.check_digits :]

    def parse(self, text: str) -> Card | Rejection:
        if len(text) != self.length:
            return Rejection(BAD_LENGTH)
        body = text[len(self.prefix) :]
        # str.isdigit() accepts other scripts' digits and superscripts: only ASCII 0-9 count.
        if not _ascii_digits(body):
            return Rejection(BAD_CHARACTERS)
        if not self._check_holds(body):
            return Rejection(BAD_CHECK_DIGITS)
        contract = body[: self.contract_digits]
        issue = body[self.contract_digits : self.contract_digits + self.issue_digits]
        if int(contract) == 0:
            return Rejection(ZERO_CONTRACT)
        if issue and int(issue) == 0:
            return Rejection(ZERO_ISSUE)
        return Card(self.name, contract, int(issue) if issue else None)

    def encode(self, contract: str, issue: int | None) -> str:
        if len(contract) != self.contract_digits or not _ascii_digits(contract):
            raise ValueError(f"contract must be {self.contract_digits} digits")
        if not self.issue_digits:
            digits = contract
        elif issue is None or not 1 <= issue < 10**self.issue_digits:
            raise ValueError(f"card issue must be 1..{10**self.issue_digits - 1}")
        else:
            digits = f"{contract}{issue:0{self.issue_digits}d}"
        return f"{self.prefix}{digits}{self.check(digits)}"


def _ascii_digits(text: str) -> bool:
    return all("0" <= c <= "9" for c in text)


def mod97_check(digits: str) -> str:
    """ISO 7064 MOD 97-10 check digits (the IBAN scheme) for a string of digits."""
    return f"{98 - int(digits + '00') % 97:02d}"


def mod97_valid(digits: str) -> bool:
    """The spec's rule for MOD 97-10: the whole number, check digits included, is 1 modulo 97."""
    return int(digits) % 97 == 1


#: Spec v1: Code 128, ``LE`` + contract (10 digits) + issue (2 digits) + MOD 97-10 check (2 digits).
#:
#: >>> CARD_V1.encode("0012345678", 1)
#: 'LE00123456780168'
CARD_V1 = PrefixedDigitsFormat("v1", frozenset({"Code128"}), "LE", 10, 2, 2, check=mod97_check, valid=mod97_valid)
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
    if known is not None and _identity(known) != _identity(fmt):
        raise ValueError(f"card format {fmt.name!r} is already registered ({type(known).__name__})")
    REGISTRY[fmt.name] = fmt
    return fmt


def _identity(fmt: CardFormat) -> tuple:
    """What makes two formats the same one, also when a module defining one is imported twice."""
    if dataclasses.is_dataclass(fmt):
        values = (getattr(fmt, f.name) for f in dataclasses.fields(fmt))
        return (type(fmt).__qualname__, *(getattr(v, "__qualname__", v) for v in values))
    return (type(fmt).__qualname__,)


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
