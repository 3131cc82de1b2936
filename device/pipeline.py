"""The daemon's per-frame pipeline up to the card check: gate, locate, decode, card.

It stops before the presentation step, so ``kiosk scan`` and the benchmarks run exactly what the
daemon runs on each frame::

    pipeline = Pipeline.from_config(cfg)
    for reading in pipeline.still(cv2.imread("card.jpg")):
        print(reading.symbol.text, reading.card or reading.rejection.reason)
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import numpy as np

from device.camera import Frame
from device.card import FORMATS, Card, CardFormat, Rejection, formats_named, identify
from device.redact import describe_text, mask_contract, mask_digit_runs
from device.vision import Symbol
from device.vision.decoders import check_image
from device.vision.scanner import Scanner

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Reading:
    """One decoded symbol and what the card check made of it: exactly one of ``card``/``rejection``."""

    symbol: Symbol
    card: Card | None
    rejection: Rejection | None

    def to_json(self, unmask: bool = False) -> dict:
        """For ``kiosk scan --json``: contract numbers (and digit runs in the text) masked unless ``unmask``."""
        return {
            "symbology": self.symbol.symbology,
            "text": self.symbol.text if unmask else mask_digit_runs(self.symbol.text),
            "card": (
                {"format": self.card.format, "contract": mask_contract(self.card.contract, unmask), "issue": self.card.issue}
                if self.card
                else None
            ),
            "reject": self.rejection.reason if self.rejection else None,
        }


@dataclass(frozen=True)
class FrameResult:
    """What the pipeline made of one frame. ``decoded`` is False when the gate skipped it.

    ``frame`` is the frame it looked at, for outputs that show it (the preview). Its ``image``
    (also :attr:`image` here) is decoded in full on first access if the frame came encoded and
    the gate skipped it: ask only when someone is watching. ``decode_s`` is how long locating,
    decoding and the card check took (seconds, 0 when the gate skipped the frame; not the gate, nor
    a JPEG frame's own decoding).
    """

    decoded: bool
    readings: list[Reading]
    frame: Frame | None = field(default=None, compare=False, repr=False)
    decode_s: float = field(default=0.0, compare=False)

    @property
    def image(self) -> np.ndarray | None:
        """The frame's full image (decoded now if it was not yet), None without a frame."""
        return None if self.frame is None else self.frame.image


class Pipeline:
    """Scanner plus card check."""

    def __init__(self, scanner: Scanner, formats: tuple[CardFormat, ...] = FORMATS, unmask: bool = False):
        self.scanner = scanner
        self.formats = formats
        self.unmask = unmask

    @classmethod
    def from_config(cls, cfg) -> Pipeline:
        """The pipeline of the ``[scan]`` section, logging as ``[log]`` says."""
        return cls(Scanner.from_config(cfg.scan), formats_named(cfg.scan.card_formats), unmask=cfg.log.unmask)

    def frame(self, frame: Frame | np.ndarray, monotonic: float) -> FrameResult:
        """A live frame (a :class:`~device.camera.Frame`, or an image): the gate may skip it.

        The gate looks at the frame's thumbnail only; the full image is decoded for the frames
        it lets through. ``ValueError`` for an odd image or a frame that does not decode.
        """
        if not isinstance(frame, Frame):
            check_image(frame)
            frame = Frame(frame, monotonic=monotonic)
        elif frame.decoded:
            check_image(frame.image)
        # Scanner.scan's two steps, split so the full image is asked for only past the gate.
        decision = self.scanner.gate.check(frame, monotonic)
        if not decision.decode:
            return FrameResult(False, [], frame)
        image = frame.image  # a JPEG frame is decoded here, outside the decode time
        started = time.perf_counter()
        readings = self._check(self.scanner.decode(image))
        return FrameResult(True, readings, frame, time.perf_counter() - started)

    def still(self, image: np.ndarray) -> list[Reading]:
        """A still image: always decoded."""
        return self._check(self.scanner.decode(image))

    def _check(self, symbols: list[Symbol]) -> list[Reading]:
        readings = []
        for symbol in symbols:
            verdict = identify(symbol.text, symbol.symbology, self.formats)
            if isinstance(verdict, Card):
                readings.append(Reading(symbol, verdict, None))
            else:
                # Why, without the raw bytes: a technician sees the reason and a masked, escaped text.
                log.debug("not a card (%s): %s %s", verdict.reason, symbol.symbology, describe_text(symbol.text, self.unmask))
                readings.append(Reading(symbol, None, verdict))
        return readings
