"""The POS output: each identification, once committed, handed to the counter's POS, and the outcome kept.

:class:`PosOutput` hears only :class:`~device.events.Identified` (refusals and barcodes that are
not cards are never handed over), in its own thread (:class:`~device.outputs.OutputRunner`), so a
POS that is slow or gone never holds up scanning or delivery. For each identification, when its
turn comes:

* older than ``pos.max_age_s`` since its commit: dropped, **too old** (a POS back online gets no
  burst of old numbers);
* else ``pos.template`` filled in with the card's fields is handed to the :class:`PosLink`:
  **handed over**, or **POS offline** when the link raises :class:`PosOffline` -- then the fault
  ``pos`` is on with the cause, until a hand-over works again.

The outcome is recorded with the identification in the outbox (``pos_outcome``, see
:class:`~device.pos_template.PosOutcome`), where ``kiosk queue show`` and ``kiosk status`` find it::

    output = PosOutput(HidKeyboard(layout=layout("us")), template="{contract}\\n", max_age_s=10,
                       outcomes=kiosk.outbox, faults=kiosk.faults)
    kiosk.add_output(output)

With ``pos.output = "none"`` no output is built (:func:`device.assembly.pos_output`) and nothing is recorded.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from device.card import REGISTRY
from device.events import Identified
from device.fault_names import POS
from device.outputs.base import FaultSwitch, Output
from device.outputs.pos.link import PosLink, PosOffline
from device.pos_template import PosFields, PosOutcome, render

if TYPE_CHECKING:
    from device.config import PosSection
    from device.outbox import Identification

log = logging.getLogger(__name__)


class OutcomeRecord(Protocol):
    """Where outcomes are kept: the outbox (:meth:`device.outbox.Outbox.record_pos_outcome`)."""

    def record_pos_outcome(self, id: str, outcome: PosOutcome) -> bool: ...


def pos_fields(record: Identification) -> PosFields:
    """The fields ``pos.template`` may use, of one outbox record; the payload is the card's text,
    made again by its format (the outbox keeps the fields, not the text).

    >>> from types import SimpleNamespace
    >>> pos_fields(SimpleNamespace(format="v1", contract="0012345678", card_issue=1, seq=9)).payload
    'LE00123456780168'
    """
    return PosFields(
        contract=record.contract, issue=record.card_issue, payload=REGISTRY[record.format].encode(record.contract, record.card_issue),
        seq=record.seq,
    )  # fmt: skip


def make_link(pos: PosSection, *, poll_wait_s: float | None = None) -> PosLink:
    """The link ``pos.output`` names: the USB keyboard, the serial line or the HTTP long poll (imported only then).

    ``poll_wait_s``: how long the HTTP link waits for the POS software's poll (None: its default,
    :data:`~device.outputs.pos.http_poll.HAND_OVER_WAIT_S`). An address the HTTP link cannot listen
    on is a :class:`~device.config.ConfigError` naming ``pos.http_listen`` (exit 78).
    """
    if pos.output == "keyboard":
        from device.keyboard_layouts import layout
        from device.outputs.pos.keyboard import HidKeyboard

        return HidKeyboard(layout=layout(pos.keyboard_layout), path=pos.hid_device, key_delay_ms=pos.key_delay_ms)
    if pos.output == "serial":
        from device.outputs.pos.serial_line import SerialLine

        return SerialLine(pos.serial_device, baud=pos.baud, ack_timeout_s=pos.ack_timeout_s)
    if pos.output == "http":
        from device.config import ConfigError, listen_address
        from device.outputs.pos.http_poll import HAND_OVER_WAIT_S, HttpPollLink

        wait_s = HAND_OVER_WAIT_S if poll_wait_s is None else poll_wait_s
        try:
            return HttpPollLink(listen_address(pos.http_listen), token_file=pos.http_token_file, wait_s=wait_s)
        except OSError as error:  # in use (the daemon, when `kiosk pos test` runs beside it), or not this machine's address
            raise ConfigError("pos.http_listen", f"cannot listen on {pos.http_listen}: {error.strerror or error}") from None
    raise ValueError(f"pos.output = {pos.output!r} hands nothing over: no link to make")


class PosOutput(Output):
    """Hands each identification to ``link`` (see the module docstring).

    :param link: the way to the POS.
    :param template: ``pos.template``, checked by the config.
    :param max_age_s: an identification whose turn comes later than this after its commit is dropped.
    :param outcomes: where each outcome is recorded (the outbox).
    :param faults: where the ``pos`` fault is raised and cleared.
    :param clock: monotonic seconds, the clock of :attr:`~device.events.Identified.committed_monotonic`.
    """

    def __init__(
        self,
        link: PosLink,
        *,
        template: str,
        max_age_s: float,
        outcomes: OutcomeRecord,
        faults: FaultSwitch,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.link, self.template, self.max_age_s = link, template, max_age_s
        self.outcomes, self.faults, self.clock = outcomes, faults, clock
        #: Outcomes since start, for tests and the log; status counts them from the outbox.
        self.counts = dict.fromkeys(PosOutcome, 0)

    @classmethod
    def from_config(cls, pos: PosSection, *, outcomes: OutcomeRecord, faults: FaultSwitch) -> PosOutput:
        """The output ``[pos]`` describes (``pos.output`` other than "none")."""
        return cls(make_link(pos), template=pos.template, max_age_s=pos.max_age_s, outcomes=outcomes, faults=faults)

    def on_identified(self, event: Identified) -> None:
        record = event.record
        if record.kind != "identification":  # a refusal never reaches the POS, whatever event carries it
            return
        age = self.clock() - event.committed_monotonic
        if age > self.max_age_s:
            log.warning("seq %d not handed to the POS: its turn came %.1f s after it was stored (pos.max_age_s %g)", record.seq, age,
                        self.max_age_s)  # fmt: skip
            self._record(record, PosOutcome.TOO_OLD)
            return
        line = render(self.template, pos_fields(record))
        try:
            self.link.hand_over(line)
        except PosOffline as error:
            self.faults.raise_(POS, f"the POS took nothing: {error}")
            self._record(record, PosOutcome.OFFLINE)
            return
        self.faults.clear(POS, "the POS took a line again")
        self._record(record, PosOutcome.HANDED_OVER)

    def _record(self, record: Identification, outcome: PosOutcome) -> None:
        self.counts[outcome] += 1
        from device.outbox import OutboxError

        try:
            self.outcomes.record_pos_outcome(record.id, outcome)
        except OutboxError as error:  # the hand-off happened or not either way; only its record is missing
            log.warning("seq %d: the POS outcome %r could not be recorded: %s", record.seq, outcome.value, error)

    def close(self) -> None:
        self.link.close()
