"""A kiosk's accounting at scale: one row per kiosk kept with each batch, and the index range above
its contiguous seq for the gaps, so no answer scans a kiosk's whole history.

A kiosk numbers its records 1, 2, 3, ... without gaps, so what the central holds below the highest
seq should be every seq: ``contiguous_through`` is the highest seq up to which all are held,
advanced with each batch by reading only the run of seqs above it.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

# The gaps above contiguous_through: a LAG over the index range (kiosk, seq > contiguous_through),
# read no further than the first max_gaps + 1 gaps.
GAPS = (
    "SELECT prev + 1, seq - 1 FROM (SELECT seq, LAG(seq, 1, CAST(%s AS bigint)) OVER (ORDER BY seq) AS prev "
    "FROM identifications WHERE kiosk = %s AND seq > %s) g WHERE seq > prev + 1 ORDER BY seq LIMIT %s"
)
REUSED = "SELECT DISTINCT seq FROM conflicts WHERE kiosk = %s AND key = %s ORDER BY seq LIMIT %s"
#: The run of a kiosk's seqs above one (advance_contiguous's index range scan).
SEQS_ABOVE = "SELECT seq FROM identifications WHERE kiosk = %s AND seq > %s ORDER BY seq LIMIT %s"
#: A kiosk's row after a batch: (site, now, version, highest accepted, accepted, contiguous, repeats, conflicts, kiosk).
UPDATE_KIOSK = (
    "UPDATE kiosks SET site = %s, last_contact = %s, version = COALESCE(%s, version), highest_seq = GREATEST(highest_seq, %s), "
    "held = held + %s, contiguous_through = %s, repeats = repeats + %s, conflicts = conflicts + %s WHERE kiosk = %s"
)
FLEET_COLUMNS = "kiosk, site, first_contact, last_contact, version, highest_seq, held, contiguous_through, repeats, conflicts"


def advance_contiguous(contiguous_through: int, seqs_above: Callable[[int, int], list[int]], chunk: int = 1000) -> int:
    """The highest seq up to which every seq is held, from ``contiguous_through`` on.

    ``seqs_above(after, limit)``: the kiosk's seqs above ``after``, ascending, at most ``limit``
    (an index range scan). Reads only the run that follows, in chunks, and stops at its first gap.

    >>> held = [1, 2, 3, 5]
    >>> advance_contiguous(1, lambda after, limit: [s for s in held if s > after][:limit], chunk=2)
    3
    """
    while True:
        seqs = seqs_above(contiguous_through, chunk)
        for seq in seqs:
            if seq != contiguous_through + 1:
                return contiguous_through
            contiguous_through = seq
        if len(seqs) < chunk:
            return contiguous_through


def accounting(
    kiosk_id: str, held: int, highest: int, contiguous: int, repeats: int, conflicts: int, gaps: list, reused: list[int], max_gaps: int
) -> dict:
    """The answer of ``GET /v1/kiosks/{kiosk}/seqs``, alike from every store."""
    return {
        "kiosk": kiosk_id,
        "held": held,
        "highest": highest,
        "contiguous_through": contiguous,
        "missing": highest - held,
        "gaps": [{"first": a, "last": b} for a, b in gaps[:max_gaps]],
        "gaps_truncated": len(gaps) > max_gaps,
        "reused": reused[:max_gaps],
        "repeats": repeats,
        "conflicts": conflicts,
    }


def fleet_row(row: tuple, text: Callable[[datetime], str]) -> dict:
    """One row of ``GET /v1/kiosks`` (``text``: how the store writes a timestamp)."""
    kiosk, site, first, last, version, highest, held, contiguous, repeats, conflicts = row
    return {
        "kiosk": kiosk,
        "site": site,
        "first_contact": first if isinstance(first, str) else text(first),
        "last_contact": last if isinstance(last, str) else text(last),
        "version": version,
        "highest": highest,
        "held": held,
        "contiguous_through": contiguous,
        "missing": highest - held,
        "repeats": repeats,
        "conflicts": conflicts,
    }
