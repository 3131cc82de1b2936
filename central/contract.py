"""The central API contract as code: what a batch of identifications must look like.

One place for the facts that docs/openapi.yaml and docs/CENTRAL_API.md describe: the statuses, the
batch limit, the card formats accepted (:data:`FORMATS`: the shape of a contract and card issue per
format; a record without ``format`` is ``v1``, as old kiosks send it), and the checks on the body (a bad
body is a 400 for the whole request) and on each identification (a bad one is ``rejected`` with a reason,
the others in the batch still count).

>>> batch = parse_batch({"kiosk": {"id": "k-1", "site": "Riga 5"}, "identifications": [
...     {"id": "3f1c0a52-6a3e-4c1e-9a57-0d3a1f2b9c10", "seq": 1, "contract": "0012345678",
...      "card_issue": 1, "scanned_at": "2024-05-02T09:15:00Z", "clock_synced": True,
...      "symbology": "Code128"}]})
>>> batch.kiosk_id, batch.items[0].record.contract, batch.items[0].record.format
('k-1', '0012345678', 'v1')
>>> parse_batch({"kiosk": {"id": "k-1", "site": ""}, "identifications": [{"id": "x"}]}).items[0].reason
'invalid-id: must be a UUID string (8-4-4-4-12 hex digits)'
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

# The limits the kiosk must know too (MAX_BATCH, MAX_NAME_LENGTH, the name rule) live with the
# kiosk, so that its config check and this contract cannot drift apart.
from device.wire import MAX_BATCH, MAX_NAME_LENGTH, is_name

API_PREFIX = "/v1"
IDENTIFICATIONS_PATH = API_PREFIX + "/identifications"
HEALTH_PATH = API_PREFIX + "/health"
#: ``GET`` of one kiosk's seqs as the central holds them (``{kiosk}`` percent-encoded).
KIOSK_SEQS_PATH = API_PREFIX + "/kiosks/{kiosk}/seqs"
#: The replaced-card list (``GET``, ``?since=N``), one card's re-issue (``PUT``, admin token),
#: and the refusals held (``GET``).
REPLACED_CARDS_PATH = API_PREFIX + "/cards/replaced"
CARD_PATH = API_PREFIX + "/cards/{contract}"
REFUSALS_PATH = API_PREFIX + "/refusals"
#: The kinds of record a kiosk sends (a record without ``kind`` is an identification).
IDENTIFICATION, REFUSAL = "identification", "refusal"
KINDS = (IDENTIFICATION, REFUSAL)
#: At most this many gaps are listed (the count of missing seqs is always whole).
MAX_GAPS_LISTED = 1000

ACCEPTED = "accepted"
DUPLICATE = "duplicate"
REJECTED = "rejected"
STATUSES = (ACCEPTED, DUPLICATE, REJECTED)

#: Largest request body read at all (a full batch is ~250 KB); more is answered 413 unread.
MAX_BODY_BYTES = 4 * 1024 * 1024
#: SQLite's INTEGER is 64-bit signed; a larger seq could not be stored.
MAX_SEQ = 2**63 - 1

# Canonical UUID text only: "{...}", "urn:uuid:" or bare hex would let one identification arrive
# under two spellings of its key. Letters are compared lower-cased.
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
# [0-9], not \d: \d also matches Arabic-Indic and other Unicode digits.
_DIGITS = re.compile(r"[0-9]+")
# ISO 8601 / RFC 3339 date-time with a UTC offset; fromisoformat alone also takes dates and
# odd forms such as "2024-05-02 09:15" without a zone.
_DATETIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?(Z|[+-][0-9]{2}:[0-9]{2})")


@dataclass(frozen=True)
class CardFormat:
    """What an identification of one card payload format must hold.

    ``contract_digits``: the contract number's length (ASCII digits, not all zeros).
    ``max_issue``: card issues run 1..max_issue; 0 for a format without an issue number (then
    ``card_issue`` is null or absent).

    >>> CardFormat.parse("xu:8:9")
    CardFormat(name='xu', contract_digits=8, max_issue=9)
    """

    name: str
    contract_digits: int
    max_issue: int

    @classmethod
    def parse(cls, text: str) -> CardFormat:
        """``NAME:CONTRACT_DIGITS:MAX_ISSUE`` (the server's ``--accept-format``); ValueError if not."""
        name, _, rest = text.partition(":")
        digits, _, issue = rest.partition(":")
        if not name or not is_name(name) or not digits.isdigit() or not issue.isdigit() or not 1 <= int(digits) <= 64:
            raise ValueError(f"expected NAME:CONTRACT_DIGITS:MAX_ISSUE (e.g. xu:8:9), got {text!r}")
        return cls(name, int(digits), int(issue))


#: The format of a record that names none (kiosks before formats were sent).
DEFAULT_FORMAT = "v1"
#: Card formats every reference central accepts; ``--accept-format`` adds more.
FORMATS: dict[str, CardFormat] = {DEFAULT_FORMAT: CardFormat(DEFAULT_FORMAT, 10, 99)}


class BadRequest(Exception):
    """The body as a whole is unusable (not JSON, wrong shape): HTTP 400, nothing stored.

    ``str()`` is the message sent to the client; it never quotes the client's data.
    """


class TooLarge(Exception):
    """More identifications in one batch than :data:`MAX_BATCH`: HTTP 413, nothing stored."""


@dataclass(frozen=True)
class Identification:
    """One valid identification as the central stores it (``id`` lower-cased)."""

    id: str
    seq: int
    contract: str
    card_issue: int | None
    scanned_at: str
    clock_synced: bool
    symbology: str
    format: str = DEFAULT_FORMAT
    #: ``identification``, or ``refusal``: a replaced card was shown and refused (``current_issue``
    #: is its contract's current card issue, higher than ``card_issue``).
    kind: str = IDENTIFICATION
    current_issue: int | None = None


@dataclass(frozen=True)
class Item:
    """One entry of a batch: the id as sent (echoed in the result), and either a record or a reason."""

    sent_id: Any
    record: Identification | None
    reason: str | None


@dataclass(frozen=True)
class Batch:
    kiosk_id: str
    site: str
    items: list[Item]


def parse_batch(body: Any, formats: dict[str, CardFormat] = FORMATS) -> Batch:
    """Check a decoded JSON body; raise :class:`BadRequest` or :class:`TooLarge` for the whole body.

    ``formats``: the card formats accepted, by name; a record of another format is rejected.

    Unknown extra fields are ignored (a newer kiosk may send more, e.g. its decoder).
    """
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object with 'kiosk' and 'identifications'")
    kiosk = body.get("kiosk")
    if not isinstance(kiosk, dict):
        raise BadRequest("'kiosk' must be an object with 'id' and 'site'")
    kiosk_id, site = kiosk.get("id"), kiosk.get("site")
    if not is_name(kiosk_id) or not kiosk_id:
        raise BadRequest(f"'kiosk.id' must be a non-empty string of at most {MAX_NAME_LENGTH} characters, without control characters")
    if not is_name(site):
        raise BadRequest(
            f"'kiosk.site' must be a string of at most {MAX_NAME_LENGTH} characters, without control characters (may be empty)"
        )
    records = body.get("identifications")
    if not isinstance(records, list):
        raise BadRequest("'identifications' must be an array")
    if len(records) > MAX_BATCH:
        raise TooLarge(f"at most {MAX_BATCH} identifications per request; split the batch")
    if not all(isinstance(r, dict) for r in records):
        raise BadRequest("every entry of 'identifications' must be an object")
    return Batch(kiosk_id, site, [_parse_item(r, formats) for r in records])


def _parse_item(raw: dict, formats: dict[str, CardFormat]) -> Item:
    sent_id = raw.get("id")
    reason = record_problem(raw, formats)
    if reason is not None:
        return Item(sent_id, None, reason)
    record = Identification(
        id=raw["id"].lower(),
        seq=_as_int(raw["seq"]),
        contract=raw["contract"],
        card_issue=_as_int(raw.get("card_issue")),
        scanned_at=raw["scanned_at"],
        clock_synced=raw["clock_synced"],
        symbology=raw["symbology"],
        format=raw.get("format", DEFAULT_FORMAT),
        kind=raw.get("kind", IDENTIFICATION),
        current_issue=_as_int(raw.get("current_issue")) if raw.get("kind") == REFUSAL else None,
    )
    return Item(sent_id, record, None)


def _as_int(value: Any) -> int | None:
    """A JSON integer as int, else None. As in JSON Schema, 7.0 is the integer 7; true is not 1."""
    if isinstance(value, bool):  # bool is a subclass of int in Python
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def record_problem(raw: dict, formats: dict[str, CardFormat] = FORMATS) -> str | None:
    """Why one identification is rejected (``"invalid-<field>: <what is expected>"``), or None.

    The contract and card issue are checked by the record's format (``v1`` if it names none).

    The reason names the field and the rule, never the value (it may be personal data).
    """
    value = raw.get("id")
    if not isinstance(value, str) or not _UUID.fullmatch(value):
        return "invalid-id: must be a UUID string (8-4-4-4-12 hex digits)"
    value = _as_int(raw.get("seq"))
    if value is None or not 1 <= value <= MAX_SEQ:
        return "invalid-seq: must be a positive integer"
    value = raw.get("format", DEFAULT_FORMAT)
    fmt = formats.get(value) if isinstance(value, str) else None
    if fmt is None:
        return f"invalid-format: must be one of the card formats this central accepts ({', '.join(sorted(formats))})"
    value = raw.get("contract")
    if not isinstance(value, str) or len(value) != fmt.contract_digits or not _DIGITS.fullmatch(value):
        return f"invalid-contract: must be a string of {fmt.contract_digits} ASCII digits (format {fmt.name})"
    if int(value) == 0:
        return "invalid-contract: must not be all zeros"
    value = raw.get("card_issue")
    if fmt.max_issue == 0:
        if value is not None:
            return f"invalid-card_issue: must be null or absent (format {fmt.name} has no card issue)"
    elif (issue := _as_int(value)) is None or not 1 <= issue <= fmt.max_issue:
        return f"invalid-card_issue: must be an integer from 1 to {fmt.max_issue} (format {fmt.name})"
    value = raw.get("scanned_at")
    if not isinstance(value, str) or not _DATETIME.fullmatch(value) or not _parses_as_datetime(value):
        return "invalid-scanned_at: must be an ISO 8601 date-time with a UTC offset, e.g. 2024-05-02T09:15:00Z"
    if not isinstance(raw.get("clock_synced"), bool):
        return "invalid-clock_synced: must be true or false"
    value = raw.get("symbology")
    if not is_name(value) or not value:
        return f"invalid-symbology: must be a non-empty string of at most {MAX_NAME_LENGTH} characters, without control characters"
    value = raw.get("kind", IDENTIFICATION)
    if value not in KINDS:
        return f"invalid-kind: must be one of {', '.join(KINDS)} (absent: identification)"
    if value == REFUSAL:
        issue, current = _as_int(raw.get("card_issue")), _as_int(raw.get("current_issue"))
        if issue is None or current is None or not issue < current <= max(fmt.max_issue, 1):
            return (
                "invalid-current_issue: a refusal's current_issue must be an integer above card_issue, "
                f"at most {fmt.max_issue} (format {fmt.name})"
            )
    return None


def is_card_contract(value: Any) -> bool:
    """A contract the replaced-card list may name: 1-32 ASCII digits, not all zeros (any card format's)."""
    return isinstance(value, str) and 1 <= len(value) <= 32 and bool(_DIGITS.fullmatch(value)) and int(value) != 0


def _parses_as_datetime(text: str) -> bool:
    """The regular expression checks the form; this checks the values (month 13, 25 o'clock, ...)."""
    try:
        datetime.fromisoformat(text)  # Python 3.11+: reads "Z" and cuts fractions past microseconds
    except ValueError:
        return False
    return True


def result(item: Item, status: str) -> dict:
    """The JSON result for one entry, in the order the batch came in."""
    return {"id": item.sent_id if isinstance(item.sent_id, str) else None, "status": status, "reason": item.reason}
