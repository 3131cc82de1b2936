"""What barcode text and contract numbers may look like in logs and human output.

Decoded text is foreign input: it can hold control characters or terminal escapes, and a
contract number is personal data. Logs show it escaped and masked.

>>> mask_contract("0012345678")
'******5678'
>>> escape("LE\\x1b[2J")
'LE\\\\x1b[2J'
"""

from __future__ import annotations

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
    shown = text[:limit].encode("ascii", "backslashreplace").decode("ascii")
    shown = "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in shown)
    return shown + ("..." if len(text) > limit else "")


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
