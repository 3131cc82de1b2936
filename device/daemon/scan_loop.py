"""The scan loop: frames -> pipeline -> presentations -> outbox commit -> events.

It runs in the daemon's main thread and does nothing else: it never sleeps on an output (they
have their own threads), never writes status (the supervisor reads :attr:`ScanLoop.counters` and
:attr:`ScanLoop.heartbeat`) and publishes :class:`~device.events.Identified` only after the
commit, so the green LED means the identification is durable::

    loop = ScanLoop(source, pipeline, outbox, faults, outputs.publish, on_commit=forwarder.wake)
    ended = loop.run(stop)   # True: a finite source ended; False: stop was set
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import KW_ONLY, dataclass, field
from typing import Any

from device.camera import CameraError, FrameSource
from device.daemon.faults import FaultRegistry
from device.events import Event, FrameScanned, Identified, NotACard, Refused
from device.fault_names import CAMERA, OUTBOX, REVOCATIONS_LOOKUP
from device.outbox import Identification, Outbox, OutboxError
from device.pipeline import Pipeline, Reading
from device.presentation import Presentations
from device.redact import mask_contract

log = logging.getLogger("device.daemon")

#: How long one read may wait for a frame: the loop (and so its heartbeat) turns at least this often.
READ_TIMEOUT_S = 0.5


@dataclass
class ScanCounters:
    """What the scan loop has done since start, for status and the demo."""

    frames: int = 0
    decoded_frames: int = 0
    identifications: int = 0
    refusals: int = 0  # replaced cards shown (device.revocations)
    not_a_card: int = 0
    odd_frames: int = 0
    last_identification_at: float | None = None  # monotonic
    last_identification: dict | None = None  # masked, for status
    last_refusal: dict | None = None  # masked, for status


@dataclass(eq=False)
class ScanLoop:
    """One identification per presentation, committed before anyone is told.

    :param source: the camera.
    :param pipeline: gate, locate, decode and card check for one frame.
    :param outbox: where identifications are committed.
    :param faults: ``camera`` and ``outbox`` faults are raised and cleared here.
    :param publish: where :class:`~device.events.Identified`, :class:`~device.events.Refused`,
        :class:`~device.events.NotACard` and :class:`~device.events.FrameScanned` go (the
        kiosk's :meth:`OutputRunner.publish <device.outputs.OutputRunner.publish>`).
    :param repeat_window_s: ``scan.repeat_window_s``: a card shown again within it is the same presentation.
    :param unmask: ``log.unmask``: whole contract numbers in status.
    :param on_commit: called after each commit (the forwarder's ``wake``).
    :param replaced_by: the contract's current issue when a card is a replaced one, else None
        (:meth:`device.revocations.store.ReplacedCards.replaced_by`); it reads a local copy, never the network.
    """

    source: FrameSource
    pipeline: Pipeline
    outbox: Outbox
    faults: FaultRegistry
    publish: Callable[[Event], object]
    _: KW_ONLY
    repeat_window_s: float
    unmask: bool
    on_commit: Callable[[], object] = lambda: None
    replaced_by: Callable[[Any], int | None] = lambda card: None
    #: The cards seen and the other barcodes seen, each by presentation.
    cards: Presentations = field(init=False)
    foreign: Presentations = field(init=False)
    counters: ScanCounters = field(init=False, default_factory=ScanCounters)
    #: The loop's last turn, for the watchdog.
    heartbeat: float = field(init=False, default_factory=time.monotonic)
    #: (image, readings) of the last decoded frame, for diag snapshots.
    latest: Any = field(init=False, default=None)

    def __post_init__(self) -> None:
        self.cards = Presentations(self.repeat_window_s)
        self.foreign = Presentations(self.repeat_window_s)

    def new_presentation(self) -> None:
        """The operator's button: every open presentation ends, so any card in view (or shown
        next) is identified again, even one identified a moment ago.

        Called from gpiozero's callback thread; :class:`Presentations` locks against the loop.
        """
        self.cards.reset()
        self.foreign.reset()
        log.info("new presentation started by the button")

    def run(self, stop: threading.Event) -> bool:
        """Scan frames until ``stop`` is set (False) or a finite source ends (True)."""
        while not stop.is_set():
            self.heartbeat = time.monotonic()
            try:
                frame = self.source.read(timeout=READ_TIMEOUT_S)
            except CameraError as e:
                self.faults.raise_(CAMERA, str(e))
                continue
            if frame is None:
                return True
            self.faults.clear(CAMERA, "frames arriving")
            self.counters.frames += 1
            try:
                # The frame itself, not frame.image: the gate looks at its thumbnail, and only
                # frames it lets through are decoded in full.
                result = self.pipeline.frame(frame, frame.monotonic)
            except ValueError as e:  # an odd frame (zero-size, wrong type, corrupt JPEG): skip it, keep going
                self.counters.odd_frames += 1
                log.warning("frame %d skipped: %s", frame.index, e)
                continue
            self.counters.decoded_frames += result.decoded
            for reading in result.readings:
                self._handle(reading, frame.index, frame.monotonic)
            if result.decoded:  # at least once per full-look interval, so at most ~1 s old
                self.latest = (frame.image, result.readings)
            self.publish(FrameScanned(result, frame.index))
        return False

    def _handle(self, reading: Reading, index: int, now: float) -> None:
        if reading.card is None:
            key = (reading.symbol.symbology, reading.symbol.text)
            if self.foreign.is_new(key, now):
                self.foreign.identified(key, now)
                self.counters.not_a_card += 1
                self.publish(NotACard(reading, index))
            return
        card = reading.card
        if not self.cards.is_new(card, now):
            return
        current_issue = self._replaced_by(card)
        try:
            identification = self.outbox.commit(
                card, symbology=reading.symbol.symbology, decoder=reading.symbol.decoder, refused_for_issue=current_issue
            )
            committed = time.monotonic()  # the identification's age for outputs counts from here, not from the frame
        except OutboxError as e:
            # No "OK" to the client: nothing is durable. No presentation is opened either, so
            # the next frame of the same card tries again (and succeeds once space returns).
            self.faults.raise_(OUTBOX, f"cannot store identifications: {e}")
            return
        self.faults.clear(OUTBOX, "identifications are stored again")
        self.cards.identified(card, now)
        module_px = reading.symbol.module_px
        if current_issue is not None:
            self._refused(identification, index, module_px)
            return
        self.counters.identifications += 1
        self.counters.last_identification_at = now
        self.counters.last_identification = {
            "contract": mask_contract(card.contract, self.unmask),
            "issue": card.issue,
            "seq": identification.seq,
            "scanned_at": identification.scanned_at,
        }
        self.publish(Identified(identification, index, committed, module_px))
        self.on_commit()

    def _replaced_by(self, card) -> int | None:
        """The current issue of a replaced card, else None. A copy that cannot be read identifies
        the card (the ``revocations-lookup`` fault says why): the list must never stop the counter.

        That fault is the scan loop's alone, raised by a lookup that fails and cleared by one that
        works; the copy's own state (too old, refused) is the supervisor's ``revocations`` fault."""
        try:
            current = self.replaced_by(card)
        except Exception as e:  # RevocationsError, or a bug: the card is identified, the fault says why
            self.faults.raise_(REVOCATIONS_LOOKUP, f"cannot check the replaced-card list: {e}")
            return None
        self.faults.clear(REVOCATIONS_LOOKUP, "cards are checked against the replaced-card list again")
        return current

    def _refused(self, refusal: Identification, index: int, module_px: float | None) -> None:
        """A replaced card: its refusal is durable; no identification, its own signal."""
        self.counters.refusals += 1
        self.counters.last_refusal = {
            "contract": mask_contract(refusal.contract, self.unmask),
            "issue": refusal.card_issue,
            "current_issue": refusal.current_issue,
            "seq": refusal.seq,
            "scanned_at": refusal.scanned_at,
        }
        self.publish(Refused(refusal, index, module_px))
        self.on_commit()
