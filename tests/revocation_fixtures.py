"""Fixtures for the replaced-card list: a key pair, and a reference central that signs its list.

- ``list_keys``: ``(private_pem_path, public_pem_path)`` written by ``kiosk central keygen`` (a
  real subprocess of the CLI, as an operator makes them).
- ``signing_central``: a reference central started with ``--signing-key`` and
  ``--admin-token-file``; :data:`ADMIN_TOKEN` records re-issues through ``central.reissue``.
"""

from __future__ import annotations

import os

import pytest

from conftest import run_kiosk

#: The admin token the signing central accepts for PUT /v1/cards/{contract}.
ADMIN_TOKEN = "admin-token"


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
