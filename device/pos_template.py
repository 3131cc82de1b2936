"""``pos.template`` and :class:`PosOutcome`: the one line a POS hand-off makes of an identification, checked and filled in.

A keyboard attached to a bank's POS is a security boundary (a kiosk that can type can type
anything), so the line is made of a validated card's fields and the template's own characters
only, and both are checked: the template holds printable ASCII, Tab and Enter alone
(:data:`~device.keyboard_layouts.TYPEABLE`), names only the :data:`FIELDS`, and with each field at
its longest (:data:`FIELD_WIDTHS`) is at most :data:`MAX_LINE_LENGTH` characters. The config checks
it (exit 78 naming ``pos.template``); the POS output fills it in::

    >>> template_problem("{contract}\\n") is None
    True
    >>> print(template_problem("{contract}{name}"))
    unknown field {name}: a template may use {contract}, {issue}, {payload}, {seq}
    >>> render("{contract}\\t{issue}\\n", PosFields(contract="0012345678", issue=1, payload="LE00123456780168", seq=7))
    '0012345678\\t1\\n'

This module sits below the config and the outputs alike (it imports only the layouts' character set).
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from enum import StrEnum

from device.card import MAX_TEXT_LENGTH
from device.keyboard_layouts import TYPEABLE

#: The default template: the contract number, then Enter (what a counter scanner sends).
DEFAULT_TEMPLATE = "{contract}\n"

#: The longest field of each kind, in characters: a contract and a payload are at most a card's
#: whole text (:data:`device.card.MAX_TEXT_LENGTH`), an issue and a sequence number a 64-bit integer.
FIELD_WIDTHS = {"contract": MAX_TEXT_LENGTH, "issue": 20, "payload": MAX_TEXT_LENGTH, "seq": 20}

#: The fields a template may use, in the order the messages name them.
FIELDS = tuple(FIELD_WIDTHS)

#: The longest line a hand-off may make, with every field at its longest: one line of one card,
#: typed in at most 2 x 160 x ``pos.key_delay_ms`` (6.4 s at the default 20 ms).
MAX_LINE_LENGTH = 160


class PosOutcome(StrEnum):
    """What became of one identification's hand-off, as the outbox records it (``pos_outcome``)
    and ``kiosk queue show`` and ``kiosk status`` show it.

    With ``pos.output = "none"`` nothing is handed over and nothing recorded: "not configured" is
    what status says of the whole kiosk then, not a record's outcome.
    """

    HANDED_OVER = "handed over"  # the POS took the whole line
    OFFLINE = "POS offline"  # the POS took nothing (or part of the line): the ``pos`` fault says why
    TOO_OLD = "too old"  # its turn came after pos.max_age_s: dropped, never handed over


@dataclass(frozen=True, kw_only=True)
class PosFields:
    """The fields of one identification a template may use; ``issue`` is "" in the line when the
    card's format has none."""

    contract: str
    issue: int | None
    payload: str
    seq: int


def _shown(char: str) -> str:
    return {"\n": "Enter", "\t": "Tab"}.get(char, ascii(char))


def template_problem(template: str) -> str | None:
    """Why ``template`` may not be ``pos.template``, or None (see the module docstring)."""
    bad = [char for char in template if char not in TYPEABLE]
    if bad:
        return f"may hold only printable ASCII, Tab and Enter (\\t, \\n), got {_shown(bad[0])}"
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as error:
        return f"not a template: {error} (write {{{{ and }}}} for a literal brace)"
    longest, used = 0, 0
    for literal, name, spec, conversion in parsed:
        longest += len(literal)
        if name is None:
            continue
        if name not in FIELD_WIDTHS:
            return f"unknown field {{{name}}}: a template may use {', '.join('{' + f + '}' for f in FIELDS)}"
        if spec or conversion:
            return f"field {{{name}}} takes no format or conversion (write {{{name}}} alone)"
        longest += FIELD_WIDTHS[name]
        used += 1
    if not used:
        return f"must use at least one field ({', '.join('{' + f + '}' for f in FIELDS)}): a hand-off is a card's fields"
    if longest > MAX_LINE_LENGTH:
        return f"makes lines of up to {longest} characters with its fields at their longest; at most {MAX_LINE_LENGTH} are allowed"
    return None


def render(template: str, fields: PosFields) -> str:
    """``template`` (checked by :func:`template_problem`) filled in with ``fields``; a ``ValueError``
    when a field would put a character into the line that the template could not hold."""
    line = template.format(
        contract=fields.contract, issue="" if fields.issue is None else str(fields.issue), payload=fields.payload, seq=str(fields.seq)
    )
    bad = [char for char in line if char not in TYPEABLE]
    if bad or len(line) > MAX_LINE_LENGTH:
        raise ValueError(f"a card's fields made a line that may not be handed over ({len(line)} characters, {len(bad)} not typeable)")
    return line
