"""What outside text, barcode text and contract numbers may look like in logs and human output.

Decoded text is foreign input: it can hold control characters or terminal escapes, and a
contract number is personal data. Logs show it escaped and masked. So are file names, server
answers and any other text from outside: :class:`EscapingFormatter` escapes what every log line
holds, and :func:`undecodable_as_bytes` makes a file name that is not UTF-8 fit for JSON.

>>> mask_contract("0012345678")
'******5678'
>>> escape("LE\\x1b[2J")
'LE\\\\x1b[2J'
>>> log_text("frames/\\x1b[31mred\\udcff.png")
'frames/\\\\x1b[31mred\\\\xff.png'
"""

from __future__ import annotations

import logging
import re

#: How many trailing digits of a contract stay visible.
VISIBLE_DIGITS = 4
#: At most this many characters of foreign text appear in a log line.
MAX_SHOWN = 40


def mask_contract(contract: str, unmask: bool = False) -> str:
    """The contract with all but the last four characters replaced by ``*`` (unless ``unmask``)."""
    if unmask:
        return contract
    hidden = max(len(contract) - VISIBLE_DIGITS, 0)
    return "*" * hidden + contract[hidden:]


def escape(text: str, limit: int = MAX_SHOWN) -> str:
    """Printable ASCII as is, everything else as a Python escape; cut to ``limit`` characters."""
    shown = log_text(text[:limit]).encode("ascii", "backslashreplace").decode("ascii")
    return shown + ("..." if len(text) > limit else "")


# Lone surrogates: U+DC80..U+DCFF are the bytes of a file name that were not UTF-8
# (os.fsdecode's surrogateescape); any other cannot be encoded at all.
_SURROGATE = re.compile("[\ud800-\udfff]")


def _surrogate_escape(match: re.Match) -> str:
    code = ord(match.group())
    return f"\\x{code - 0xDC00:02x}" if 0xDC80 <= code <= 0xDCFF else f"\\u{code:04x}"


def undecodable_as_bytes(text: str) -> str:
    """``text`` with the bytes a file name held that were not UTF-8 written as ``\\xff``: valid
    Unicode, so it encodes as UTF-8 and as JSON any parser takes (``kiosk scan --json``).

    >>> import os
    >>> undecodable_as_bytes(os.fsdecode(b"caf\\xff.png"))
    'caf\\\\xff.png'
    """
    return _SURROGATE.sub(_surrogate_escape, text)


def log_text(text: str) -> str:
    """``text`` fit for one log line: control characters (a terminal escape, a newline that
    would fake a second line), invisible format characters and undecodable bytes escaped
    (``\\x1b``, ``\\n``, ``\\u202e``, ``\\xff``); readable letters of any script stay as they are."""
    if text.isprintable():
        return text
    text = undecodable_as_bytes(text)
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


class EscapingFormatter(logging.Formatter):
    """A log formatter that passes every message through :func:`log_text`, and every traceback
    line too (a traceback keeps its line breaks): whatever a file name, a server's answer or a
    barcode holds, a log line stays one harmless line."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = log_text(record.message)
        return super().formatMessage(record)

    def formatException(self, ei) -> str:
        return "\n".join(log_text(line) for line in super().formatException(ei).split("\n"))


def describe_text(text: str, unmask: bool = False) -> str:
    """A decoded text as it may be logged: escaped, and with digit runs masked unless ``unmask``."""
    return escape(text if unmask else mask_digit_runs(text))


def mask_digit_runs(text: str) -> str:
    """``text`` with every run of 5+ digits masked as a contract is.

    Masking every such run hides contract numbers whatever the format around them (a card's
    payload, another utility's, a misprint), so it suits any decoded text.

    >>> mask_digit_runs("LE00123456780168 and 42")
    'LE**********0168 and 42'
    """
    out, run = [], []
    for c in text:
        if "0" <= c <= "9":
            run.append(c)
            continue
        out.append(_mask_run(run))
        run = []
        out.append(c)
    out.append(_mask_run(run))
    return "".join(out)


def _mask_run(run: list[str]) -> str:
    digits = "".join(run)
    return mask_contract(digits) if len(digits) >= 5 else digits
