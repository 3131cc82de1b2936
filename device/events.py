"""What the kiosk tells its outputs: one small family of typed events.

Each event is a frozen dataclass saying what happened, published once it is true (an
identification once it is durable in the outbox, a delivery once the outbox says so). An
output (:class:`device.outputs.Output`) receives them in its own thread, in order, each in
the method named after it (``on_identified``, ``on_delivered``, ...)::

    >>> event = FaultRaised("camera", "no frames for 5 s")
    >>> event.name, event.message
    ('camera', 'no frames for 5 s')
    >>> FaultRaised.kind, FrameScanned.kind
    ('fault_raised', 'frame')
    >>> [kind.kind for kind in EVENT_TYPES if kind.droppable]
    ['frame', 'status']

Only :class:`FrameScanned` and :class:`StatusPublished` may be dropped when an output falls
behind: the next frame, the next status, says the same. This module imports nothing heavy (no OpenCV, no numpy, no SQLite): the record and
reading types are for the type checker only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from device.health.delivery import DeliveryFailure

if TYPE_CHECKING:  # for the annotations only: importing them would load numpy and the outbox
    from device.outbox import Identification
    from device.pipeline import FrameResult, Reading
    from device.status.report import DaemonStatus


@dataclass(frozen=True)
class Event:
    """What every event has: its ``kind`` (a name for logs, status counts and the output's
    ``on_<kind>`` method) and whether it may be dropped when an output falls behind."""

    kind: ClassVar[str]
    droppable: ClassVar[bool] = False


@dataclass(frozen=True)
class Identified(Event):
    """A client was identified and the identification is durable in the outbox (the "OK").

    ``record`` is the outbox record (kind ``identification``); ``frame_index`` the camera frame
    (:attr:`device.camera.Frame.index`) it was read in, since outputs hear of it a little later;
    ``committed_monotonic`` the :func:`time.monotonic` right after the commit, so an output can
    tell how old the identification is when its turn comes (the POS hand-off's ``pos.max_age_s``);
    ``module_px`` the width of one bar module in the frame, in pixels, as the locator estimated it
    for the read (None for a read of the whole frame): the metrics' sign of a lens drifting out of
    focus or a camera moved.
    """

    kind: ClassVar[str] = "identified"

    record: Identification
    frame_index: int
    committed_monotonic: float
    module_px: float | None = None


@dataclass(frozen=True)
class Refused(Event):
    """A replaced card (lost, re-issued) was shown: not identified; its refusal is durable.

    ``record`` is the outbox record of kind ``refusal``, with the contract's ``current_issue``;
    ``module_px`` as :class:`Identified`'s.
    """

    kind: ClassVar[str] = "refused"

    record: Identification
    frame_index: int
    module_px: float | None = None


@dataclass(frozen=True)
class NotACard(Event):
    """A barcode that is not a client card was shown (once per presentation); ``reading`` says
    what it was and why it is not a card (``reading.rejection``)."""

    kind: ClassVar[str] = "not_a_card"

    reading: Reading
    frame_index: int


@dataclass(frozen=True)
class Delivered(Event):
    """The central holds these records (accepted, or a duplicate of one it had), and the outbox
    has marked them delivered: published by the forwarder after that commit.

    ``records`` are the records as they were sent, in the order sent (their ``state`` field is
    still the one they were read with); one event per batch the central answered.
    """

    kind: ClassVar[str] = "delivered"

    records: tuple[Identification, ...]


@dataclass(frozen=True)
class Dead(Event):
    """The central refused this record for good (``reason``, its words), and the outbox has
    marked it dead: published by the forwarder after that commit. A technician may retry it."""

    kind: ClassVar[str] = "dead"

    record: Identification
    reason: str


@dataclass(frozen=True)
class DeliveryFailed(Event):
    """One attempt to deliver failed and its records stay pending (``cause``, a
    :class:`~device.health.delivery.DeliveryFailure`; ``error`` the forwarder's words): published by
    the forwarder once per failed attempt, which its backoff spaces out."""

    kind: ClassVar[str] = "delivery_failed"

    cause: DeliveryFailure
    error: str


@dataclass(frozen=True)
class FaultRaised(Event):
    """Fault ``name`` (see :mod:`device.fault_names`) started: told once until it clears."""

    kind: ClassVar[str] = "fault_raised"

    name: str
    message: str


@dataclass(frozen=True)
class FaultCleared(Event):
    """Fault ``name`` is over; ``how`` says why (e.g. "frames arriving")."""

    kind: ClassVar[str] = "fault_cleared"

    name: str
    how: str


@dataclass(frozen=True)
class FrameScanned(Event):
    """A frame went through the pipeline (for the live view); the only event that may be
    dropped, oldest first, when an output falls behind."""

    kind: ClassVar[str] = "frame"
    droppable: ClassVar[bool] = True

    result: FrameResult
    frame_index: int


@dataclass(frozen=True)
class StatusPublished(Event):
    """The daemon's status, as the supervisor builds it every couple of seconds (what ``kiosk
    status`` shows): for outputs that report the counts no single event carries (the outbox's
    backlog, the replaced-card list's age). Published only while an output handles it or the
    status file is written; may be dropped when an output falls behind: the next one says more."""

    kind: ClassVar[str] = "status"
    droppable: ClassVar[bool] = True

    status: DaemonStatus


#: Every event type, in the order of a presentation's life.
EVENT_TYPES: tuple[type[Event], ...] = (
    Identified, Refused, NotACard, Delivered, DeliveryFailed, Dead, FaultRaised, FaultCleared, FrameScanned, StatusPublished,
)  # fmt: skip
