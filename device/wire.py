"""What the central API accepts, in the facts the kiosk must know too: one place for both sides.

The kiosk's configuration checks ``kiosk.id``, ``kiosk.site`` and ``api.batch_size`` against
them (a kiosk must never start with a name every record of which the central would refuse), and
the reference central (``central/contract.py``) enforces them; docs/openapi.yaml states them as
``maxLength``, ``pattern`` and the batch limit. Kept free of imports: the technician's everyday
commands load this module, and must not load the reference central.

>>> is_name("Riga, Brivibas 5, counter 2"), is_name("k\\x1b[2J"), is_name("x" * (MAX_NAME_LENGTH + 1))
(True, False, False)
"""

from __future__ import annotations

import re
from typing import Any

#: Most identifications in one POST; more is answered 413.
MAX_BATCH = 1000
#: Longest kiosk id, site or symbology accepted.
MAX_NAME_LENGTH = 128

# Names (kiosk id, site, symbology): any text but control characters (C0, DEL, C1). The same rule
# is the "pattern" in docs/openapi.yaml.
_NAME = re.compile(r"[^\x00-\x1f\x7f-\x9f]*")


def is_name(value: Any) -> bool:
    """A string of at most MAX_NAME_LENGTH characters, no control characters, encodable as UTF-8.

    JSON allows lone surrogate escapes ("\\ud800") that no database can store as text.
    """
    if not isinstance(value, str) or len(value) > MAX_NAME_LENGTH or not _NAME.fullmatch(value):
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
