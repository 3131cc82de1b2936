"""The replaced-card list in the tests: a key pair, a reference central that signs its list, and
the pieces the sync tests share.

- ``list_keys``: ``(private_pem_path, public_pem_path)`` written by ``kiosk central keygen`` (a
  real subprocess of the CLI, as an operator makes them).
- ``signing_central``: a reference central started with ``--signing-key`` and
  ``--admin-token-file``; :data:`ADMIN_TOKEN` records re-issues through ``central.reissue``.
"""

from __future__ import annotations

import os

import pytest

from device.card import Card
from device.central_client import CentralClient
from device.revocations import document
from device.revocations.store import ReplacedCards
from device.revocations.sync import RevocationSync
from support.central import CENTRAL_TOKEN, head
from support.kiosk import run_kiosk

#: The admin token the signing central accepts for PUT /v1/cards/{contract}.
ADMIN_TOKEN = "admin-token"

#: A card the tests re-issue (its issue 1 is then replaced), and another one.
LOST, OTHER = "0012345678", "0099999999"


@pytest.fixture
def list_keys(tmp_path):
    private, public = tmp_path / "list.key", tmp_path / "list.pub"
    made = run_kiosk("central", "keygen", "--private-key", str(private), "--public-key", str(public))
    assert made.returncode == 0, made.stderr
    assert os.stat(private).st_mode & 0o777 == 0o600
    return private, public


@pytest.fixture
def signing_central(tmp_path, central_factory, list_keys):
    admin = tmp_path / "admin-tokens"
    admin.write_text(ADMIN_TOKEN + "\n")
    return central_factory(signing_key=str(list_keys[0]), admin_token_file=str(admin))


def make_sync(tmp_path, url, public_key, **options) -> RevocationSync:
    """The kiosk's sync of the list from ``url``, its copy in tmp_path."""
    settings = {"interval_s": 900, "max_age_s": 3600, "max_bytes": 64 * 1024 * 1024, "deadline_s": 20, **options}
    client = CentralClient(url, token=CENTRAL_TOKEN, connect_timeout_s=2, read_timeout_s=5)
    return RevocationSync(ReplacedCards(tmp_path / "revocations.db"), client, document.load_public_key(public_key), **settings)


def serve_list(body: bytes, key_id: str, signature: str, length: int | None = None):
    """A hostile central's behaviour: every GET answered with these bytes and signature headers."""
    extra = f"{document.KEY_ID_HEADER}: {key_id}\r\n{document.SIGNATURE_HEADER}: {signature}\r\n"

    def behave(conn):
        while conn.read_request() is not None:
            conn.send(head(200, len(body) if length is None else length, extra) + body)
            if length is not None:
                return  # cut short: hang up

    return behave


def assert_kept(sync: RevocationSync, version: int = 1) -> None:
    """The previous copy is still in force: same version, the replaced card still refused."""
    assert sync.copy.version == version
    assert sync.copy.replaced_by(Card("v1", LOST, 1)) == 2
    assert sync.copy.replaced_by(Card("v1", LOST, 2)) is None
