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

REPO = Path(__file__).resolve().parent.parent


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


def committed_states(outbox_path: Path, ids) -> list[str]:
    """The states of the outbox records ``ids`` (in that order) as a connection of their own sees
    them: only what the outbox has committed, as another process would read it."""
    import sqlite3

    ids = list(ids)
    db = sqlite3.connect(f"file:{outbox_path}?mode=ro", uri=True)
    try:
        states = dict(db.execute(f"SELECT id, state FROM identifications WHERE id IN ({','.join('?' * len(ids))})", ids).fetchall())
    finally:
        db.close()
    return [states.get(i, "missing") for i in ids]


def record_ids(event) -> list[str]:
    """The outbox records a delivery event (Delivered, Dead) is about, by id."""
    return [r.id for r in event.records] if hasattr(event, "records") else [event.record.id]


class Published:
    """A publish sink (the forwarder's ``publish``): ``events`` holds each event with the
    committed states of its records at the instant it was published (:func:`committed_states`)."""

    def __init__(self, outbox_path: Path):
        self.outbox_path = outbox_path
        self.events = []

    def __call__(self, event) -> None:
        self.events.append((event, committed_states(self.outbox_path, record_ids(event))))


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

    def on_identified(self, event):
        self.log.append(("identified", event.record.contract))

    def on_not_a_card(self, event):
        self.log.append(("not-a-card", event.reading.rejection.reason))

    def on_fault_raised(self, event):
        self.log.append(("fault", event.name))
        if self.on_fault:
            self.on_fault(event.name)

    def on_fault_cleared(self, event):
        self.log.append(("cleared", event.name))

    def on_frame(self, event):
        if self._frames:
            self.log.append(("frame", event.frame_index))

