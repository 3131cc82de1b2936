"""The replaced-card document: its bytes, its Ed25519 signature, and what the kiosk accepts.

``GET /v1/cards/replaced?since=<version>`` answers a JSON document, signed over its exact bytes::

    Signature-Key-Id: 3f1c0a526a3e4c1e            (the first 8 bytes of SHA-256 of the public key, hex)
    Signature: 1fUq...==                         (Ed25519 over the body, base64)

    {"version": 7, "complete": false, "since": 5, "issued_at": "2024-05-02T09:15:00Z",
     "cards": [["0012345678", 2], ["0099999999", 3]]}

``version`` only grows at the central (one step per re-issue it records). ``complete`` true: the
whole list (every contract whose card was re-issued); false: a delta holding every contract whose
current issue changed after version ``since``. ``cards`` are ``[contract, current_issue]`` pairs:
pairs, not objects, so that a million contracts are ~17 MB of JSON rather than ~45 MB.

:func:`parse` refuses, with a one-line reason, anything that is not exactly that (a contract that
is not ASCII digits, an issue that is not a small integer, a missing field); :func:`verify`
refuses a signature that does not hold or a key id it does not know. Only the bytes that were
verified are parsed. Keys are PEM files (``kiosk central keygen`` writes a pair)::

    key_id, signature = sign(private_key, body)         # the reference central
    problem = verify(public_key, body, key_id, signature)  # the kiosk: None when it holds
    document = parse(body)                              # ListRefused names what is wrong
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

#: The answer's headers: which key signed it, and the signature.
KEY_ID_HEADER = "Signature-Key-Id"
SIGNATURE_HEADER = "Signature"
#: A contract in the list: ASCII digits (any card format's contract), not all zeros.
MAX_CONTRACT_DIGITS = 32
#: The highest card issue the list may name (card formats print two digits; room to spare).
MAX_ISSUE = 9999
#: The highest list version (SQLite's INTEGER).
MAX_VERSION = 2**63 - 1

_CONTRACT = re.compile(rf"[0-9]{{1,{MAX_CONTRACT_DIGITS}}}")


class ListRefused(Exception):
    """The document (or its signature) is not accepted; ``str()`` says why in one line."""


@dataclass(frozen=True)
class ReplacedList:
    """A parsed, verified document: ``cards`` maps contract -> current issue."""

    version: int
    complete: bool
    since: int | None
    issued_at: str
    cards: dict[str, int]


# --- keys ---------------------------------------------------------------------------------------


def key_id(public_key: Ed25519PublicKey) -> str:
    """The key's id: the first 8 bytes of SHA-256 over its 32 raw bytes, as 16 hex digits."""
    from cryptography.hazmat.primitives import serialization

    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def load_public_key(path: str | Path) -> Ed25519PublicKey:
    """The Ed25519 public key in a PEM file; ValueError (a sentence naming the file) if it is none."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    data = Path(path).read_bytes()
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError) as e:
        raise ValueError(f"{path} is not a PEM public key ({e})") from None
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError(f"{path} holds a {type(key).__name__}, not an Ed25519 public key")
    return key


def load_private_key(path: str | Path) -> Ed25519PrivateKey:
    """The Ed25519 private key in a PEM file (PKCS#8, unencrypted); ValueError if it is none."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    data = Path(path).read_bytes()
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as e:
        raise ValueError(f"{path} is not an unencrypted PEM private key ({e})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{path} holds a {type(key).__name__}, not an Ed25519 private key")
    return key


def generate_key_pair() -> tuple[bytes, bytes]:
    """A new key pair as PEM bytes: (private PKCS#8, public SubjectPublicKeyInfo)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return private, public


# --- signature ----------------------------------------------------------------------------------


def sign(private_key: Ed25519PrivateKey, body: bytes) -> tuple[str, str]:
    """(key id, base64 signature) for the headers of an answer whose body is ``body``."""
    return key_id(private_key.public_key()), base64.b64encode(private_key.sign(body)).decode("ascii")


def verify(public_key: Ed25519PublicKey, body: bytes, given_key_id: str | None, signature: str | None) -> str | None:
    """None when ``signature`` is ``public_key``'s over ``body``; else why not, in one line."""
    from cryptography.exceptions import InvalidSignature

    expected = key_id(public_key)
    if not given_key_id or not signature:
        return f"the answer has no signature (headers {KEY_ID_HEADER} and {SIGNATURE_HEADER})"
    if given_key_id.strip().lower() != expected:
        shown = re.sub(r"[^0-9A-Za-z]", "?", given_key_id[:32])
        return f"signed with an unknown key {shown} (revocations.public_key_file holds key {expected})"
    try:
        raw = base64.b64decode(signature.strip(), validate=True)
    except (binascii.Error, ValueError):
        return "the signature is not base64"
    try:
        public_key.verify(raw, body)
    except InvalidSignature:
        return f"the signature does not match the {len(body)} bytes received (changed or cut short on the way)"
    return None


# --- the document -------------------------------------------------------------------------------


def encode(version: int, complete: bool, since: int | None, issued_at: str, cards: list[tuple[str, int]]) -> bytes:
    """The document's bytes, as the reference central signs and serves them."""
    head = json.dumps({"version": version, "complete": complete, "since": since, "issued_at": issued_at}, separators=(",", ":"))
    # One join rather than json.dumps of a million small lists: the same bytes, several times faster.
    rows = ",".join(f'["{contract}",{issue}]' for contract, issue in cards)
    return f'{head[:-1]},"cards":[{rows}]}}'.encode("ascii")


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


#: The parse gives up the GIL every this many pairs (a power of two, minus one: a mask).
YIELD_EVERY_MASK = 63

# The cards array as the central writes it (any JSON whitespace allowed): one pair at a time.
_CARDS_START = re.compile(rb'"cards"\s*:\s*\[\s*')
_PAIR = re.compile(rb'\[\s*"([0-9]{1,%d})"\s*,\s*([1-9][0-9]{0,3})\s*\]\s*(?:,\s*|(\]))' % MAX_CONTRACT_DIGITS)
_EMPTY_END = re.compile(rb"\]")


def parse(body: bytes) -> ReplacedList:
    """The document in ``body`` (verified bytes); :class:`ListRefused` says what is wrong.

    A million pairs are read one at a time in a Python loop (~2 s on the development VM) rather than by one ``json.loads``:
    that single C call would hold the GIL for about a second, stalling the scan loop's thread,
    while the loop lets it run every few milliseconds (docs/BENCHMARKS.md). Anything the fast
    reading does not recognise is parsed by ``json.loads`` as a whole, so every valid document
    is read alike either way.
    """
    fast = _parse_fast(body)
    return fast if fast is not None else _parse_json(body)


def _parse_fast(body: bytes) -> ReplacedList | None:
    start = _CARDS_START.search(body)
    if start is None or body.count(b'"cards"') != 1:
        return None
    pos = start.end()
    cards: dict[str, int] = {}
    end = _EMPTY_END.match(body, pos)
    if end is None:
        closed = None
        for n, m in enumerate(_PAIR.finditer(body, pos)):
            if not n & YIELD_EVERY_MASK:
                time.sleep(0)  # hand the GIL to the scan loop now, not at the interpreter's next 5 ms switch
            if m.start() != pos:
                return None  # not the plain form (or malformed): json.loads decides, and names the entry
            contract, issue, closed = m.groups()
            if not contract.strip(b"0"):
                return None
            key, value = contract.decode("ascii"), int(issue)
            if key in cards:
                value = max(value, cards[key])
            cards[key] = value
            pos = m.end()
            if closed:
                break
        if not closed:
            return None
    else:
        pos = end.end()
    try:
        rest = _parse_json(body[: start.start()] + b'"cards":[]' + body[pos:])
    except ListRefused:
        return None
    return ReplacedList(rest.version, rest.complete, rest.since, rest.issued_at, cards)


def _parse_json(body: bytes) -> ReplacedList:
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise ListRefused(f"the list is not JSON ({len(body)} bytes)") from None
    if not isinstance(data, dict):
        raise ListRefused("the list is not a JSON object")
    version = _int(data.get("version"))
    if version is None or not 0 <= version <= MAX_VERSION:
        raise ListRefused("the list has no valid 'version' (an integer, 0 or more)")
    complete = data.get("complete")
    if not isinstance(complete, bool):
        raise ListRefused("the list has no valid 'complete' (true or false)")
    since = data.get("since")
    if not complete and (_int(since) is None or not 0 <= since <= version):
        raise ListRefused("a delta list has no valid 'since' (an integer from 0 to its version)")
    issued_at = data.get("issued_at")
    if not isinstance(issued_at, str) or len(issued_at) > 40:
        raise ListRefused("the list has no valid 'issued_at'")
    rows = data.get("cards")
    if not isinstance(rows, list):
        raise ListRefused("the list has no 'cards' array")
    cards: dict[str, int] = {}
    fullmatch = _CONTRACT.fullmatch
    for n, row in enumerate(rows):
        # The common case first and cheap: a pair of a digit string and a small int.
        if (
            type(row) is list
            and len(row) == 2
            and type(row[0]) is str
            and type(row[1]) is int
            and fullmatch(row[0])
            and 1 <= row[1] <= MAX_ISSUE
        ):
            contract = row[0]
            if contract.strip("0"):
                cards[contract] = max(row[1], cards.get(contract, 0))
                continue
        raise ListRefused(
            f"entry {n + 1} of the list is not a [contract, current issue] pair "
            f"(contract: 1-{MAX_CONTRACT_DIGITS} ASCII digits, not all zeros; issue: 1-{MAX_ISSUE})"
        )
    return ReplacedList(version, complete, None if complete else since, issued_at, cards)
