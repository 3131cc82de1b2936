"""Fixtures shared by the test modules; the helpers behind them live in tests/support/.

Everything is generated into tmp_path: no media in git, and no test needs the ZXing photos. The
fixtures of the support modules named in ``pytest_plugins`` are everyone's: ``central`` and
``central_factory`` (the reference central), ``list_keys`` and ``signing_central`` (the
replaced-card list), ``small_disk`` (a real 2 MiB tmpfs), ``unprivileged`` and
``technicians_group`` (the kiosk as ``nobody``), ``clock`` and ``path`` (an outbox file),
``store_url`` (each central store: SQLite and PostgreSQL), ``pg_cluster`` and ``pg_url``.

No test reads the installed ``/etc/kiosk/kiosk.toml``: the default config file of this process
and of every ``kiosk`` it starts is one that does not exist (``KIOSK_CONFIG_FILE``, see
:func:`device.config.default_path`); a test that wants a config passes one.
"""

from __future__ import annotations

import os
import tempfile
import threading
from pathlib import Path

import pytest
from support import skip_policy
from support.camera import CameraWorld, FakePicamera2
from support.cards import write_card_folder

from device.card import CARD_V1
from device.config import DEFAULT_PATH_ENV

pytest_plugins = ["support.central", "support.revocations", "support.disk", "support.unprivileged", "support.outbox", "support.postgres"]

_no_default_config = tempfile.TemporaryDirectory(prefix="kiosk-tests-")
os.environ[DEFAULT_PATH_ENV] = str(Path(_no_default_config.name) / "no-such-kiosk.toml")


def pytest_configure(config):
    # Every run, CI's and a newcomer's: a skip outside tests/skips.toml fails it.
    skip_policy.enforce(config)


@pytest.fixture
def card_folder(tmp_path):
    """``card_folder(cards)`` writes a folder of images, one per card, each between empty frames.

    ``cards`` is a list of contracts (or (contract, issue) pairs), each held still for
    ``frames_per_card`` frames (at the folder's 5 fps). Returns the folder.
    """
    return lambda cards, name="frames", frames_per_card=2: write_card_folder(tmp_path / name, cards, frames_per_card)


@pytest.fixture
def payload_of():
    return lambda contract, issue=1: CARD_V1.encode(contract, issue)


@pytest.fixture
def world():
    """A camera the test drives (frames on demand, unplug, stall): see :class:`support.camera.CameraWorld`."""
    w = CameraWorld()
    yield w
    w.unplug()  # wake any read still blocked so the grab thread ends


@pytest.fixture
def picamera2_class(world):
    """:class:`support.camera.FakePicamera2` in front of ``world``, its class state fresh for the test."""
    FakePicamera2.world = world
    FakePicamera2.instances = []
    FakePicamera2.owners = set()
    FakePicamera2.test_over = threading.Event()
    saved = {name: getattr(FakePicamera2, name) for name in ("cameras", "controls", "settle_frames", "min_side")}
    yield FakePicamera2
    FakePicamera2.test_over.set()
    for name, value in saved.items():
        setattr(FakePicamera2, name, value)
