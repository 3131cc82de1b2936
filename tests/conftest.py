"""Fixtures shared by the test modules: generated card media and kiosk config files.

Everything is generated into tmp_path: no media in git, and no test needs the ZXing photos.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from central_fixtures import CENTRAL_TOKEN, central, central_factory  # noqa: F401  (fixtures)
from device.card import CARD_V1
from device.outputs.base import Output
from support import skip_policy

REPO = Path(__file__).resolve().parent.parent


def pytest_configure(config):
    # Every run, CI's and a newcomer's: a skip outside tests/skips.toml fails it.
    skip_policy.enforce(config)


def contracts(n: int, start: int = 1000) -> list[str]:
    """``n`` distinct valid contract numbers."""
    return [f"{start + 7919 * i:010d}" for i in range(n)]


def card_photo(contract: str, issue: int = 1, *, payload: str | None = None, size=(960, 600), dpi: int = 150) -> np.ndarray:
    """A level client card on a grey counter, BGR: easy to read, for tests about what happens after reading."""
    from device.tools.synth.card import render_card

    card = render_card(contract, issue, dpi=dpi, payload=payload).convert("RGB")
    canvas = Image.new("RGB", size, (120, 118, 110))
    canvas.paste(card, ((size[0] - card.width) // 2, (size[1] - card.height) // 2))
    return np.asarray(canvas)[:, :, ::-1].copy()


def empty_counter(size=(960, 600)) -> np.ndarray:
    return np.full((size[1], size[0], 3), (110, 118, 120), np.uint8)


@pytest.fixture
def card_folder(tmp_path):
    """``card_folder(cards)`` writes a folder of images, one per card, each between empty frames.

    ``cards`` is a list of contracts (or (contract, issue) pairs), each held still for
    ``frames_per_card`` frames (at the folder's 5 fps). Returns the folder.
    """
    import cv2

    def make(cards, name="frames", frames_per_card=2):
        folder = tmp_path / name
        folder.mkdir()
        blank = empty_counter()
        i = 0
        for card in cards:
            contract, issue = card if isinstance(card, tuple) else (card, 1)
            photo = card_photo(contract, issue)
            for image in [photo] * frames_per_card + [blank]:
                cv2.imwrite(str(folder / f"{i:05d}.png"), image)
                i += 1
        return folder

    return make


def write_config(path: Path, **sections) -> Path:
    """A kiosk.toml from ``section={key: value}`` keyword arguments."""
    import tomli_w

    path.write_text(tomli_w.dumps(sections))
    return path


def kiosk_cmd(*args) -> list[str]:
    """The kiosk command as a user runs it (the installed entry point's module)."""
    return [sys.executable, "-m", "device", *args]


def run_kiosk(*args, timeout=120, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(kiosk_cmd(*args), capture_output=True, text=True, timeout=timeout, cwd=REPO, **kwargs)


@pytest.fixture
def payload_of():
    return lambda contract, issue=1: CARD_V1.encode(contract, issue)


class Recorder(Output):
    """A daemon output that records what the outside world was told, in order: ``log`` holds
    ("identified", contract), ("not-a-card", reason), ("fault", name), ("cleared", name) and,
    with ``frames``, ("frame", index). ``on_fault(name)`` is called on each fault raised."""

    def __init__(self, on_fault=None, frames=False):
        self.log = []
        self.on_fault = on_fault
        self._frames = frames

    def identified(self, identification, frame_index):
        self.log.append(("identified", identification.contract))

    def not_a_card(self, reading, frame_index):
        self.log.append(("not-a-card", reading.rejection.reason))

    def fault(self, name, message):
        self.log.append(("fault", name))
        if self.on_fault:
            self.on_fault(name)

    def fault_cleared(self, name):
        self.log.append(("cleared", name))

    def frame(self, result, frame_index):
        if self._frames:
            self.log.append(("frame", frame_index))

