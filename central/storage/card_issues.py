"""The replaced-card list's one rule, for every store: a re-issue takes the next list version,
the same issue again changes nothing, a lower one is refused.

Each contract's current card issue is kept with the list version that set it (versions only grow,
one per re-issue), so the delta since any version is one indexed query.
"""

from __future__ import annotations

#: A contract's current card issue set, in a store's own placeholders (``?``; PostgreSQL: ``%s``).
UPSERT_CARD_ISSUE = (
    "INSERT INTO card_issues (contract, current_issue, version) VALUES (?, ?, ?) "
    "ON CONFLICT (contract) DO UPDATE SET current_issue = excluded.current_issue, version = excluded.version"
)


def reissue_version(held_issue: int | None, current_issue: int, version: int) -> int | None:
    """The list version a re-issue takes (the next), or None when it changes nothing (the same issue
    again: a PUT repeated); ValueError for a lower issue (issues only grow: a kiosk holding the
    higher one would never take it back).

    >>> reissue_version(None, 2, 7), reissue_version(2, 2, 7)
    (8, None)
    """
    if held_issue is not None and held_issue > current_issue:
        raise ValueError(f"the contract's current issue is {held_issue}; an issue only grows")
    return None if held_issue == current_issue else version + 1
