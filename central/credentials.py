"""Per-kiosk tokens: made here, stored only as hashes, bound to one kiosk id.

A token is 32 random bytes (URL-safe base64), so a plain SHA-256 of it is enough to store: there
is nothing to guess that a slow password hash would protect, and a lookup stays one indexed read.

>>> token = new_token()
>>> len(token), token_hash(token) == token_hash(token), token_hash(token) != token_hash(new_token())
(43, True, True)
"""

from __future__ import annotations

import hashlib
import secrets


def new_token() -> str:
    """A fresh kiosk token (printed once by ``kiosk central token issue``; never stored as such)."""
    return secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    """The hex SHA-256 a store keeps and looks a token up by."""
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()
