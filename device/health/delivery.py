"""The forwarder's health as status and the faults read it: its state, the last error, since when.

Kept apart from :mod:`device.forwarder` (which loads the HTTP client) so that ``kiosk status``
reads it without loading what delivers::

    health = forwarder.status()
    if health.state is DeliveryState.PAUSED_AUTH:
        print(health.auth_fault)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from enum import StrEnum


class DeliveryState(StrEnum):
    """Where delivery stands; the value is what ``status.json`` holds.

    >>> DeliveryState("paused-auth") is DeliveryState.PAUSED_AUTH, DeliveryState.OK.value
    (True, 'ok')
    """

    OK = "ok"
    RETRYING = "retrying"  #: the last attempts failed; records stay pending and are tried again
    PAUSED_AUTH = "paused-auth"  #: the central refused the token
    PAUSED_NO_TOKEN = "paused-no-token"  #: no usable token (missing, empty, unreadable token file)

    @property
    def label(self) -> str:
        """How ``kiosk status`` says it: calm when all is well, in capitals when it needs someone."""
        return _LABELS[self]


_LABELS = {
    DeliveryState.OK: "ok",
    DeliveryState.RETRYING: "RETRYING",
    DeliveryState.PAUSED_AUTH: "PAUSED: token refused",
    DeliveryState.PAUSED_NO_TOKEN: "PAUSED: no usable token",
}


class DeliveryFailure(StrEnum):
    """Why one delivery attempt failed, in a few words a fleet's alert can group by (the metrics'
    ``cause`` label); the value is the label's text. The forwarder's ``last_error`` says it in full.

    >>> DeliveryFailure("unreachable") is DeliveryFailure.UNREACHABLE, str(DeliveryFailure.TOKEN_REFUSED)
    (True, 'token-refused')
    """

    UNREACHABLE = "unreachable"  #: no answer: connection refused, DNS, TLS not trusted, connection cut
    TIMEOUT = "timeout"  #: no whole answer within the request's deadline
    BUSY = "busy"  #: the central said "not now" (408, 429, 503)
    HTTP_ERROR = "http-error"  #: another HTTP status (a 404 for a wrong api.url, 5xx, 413 for one record)
    MALFORMED = "malformed"  #: an answer the kiosk cannot use (not JSON, no result for some record)
    TOKEN_REFUSED = "token-refused"  #: 401/403: delivery paused until the token changes
    NO_TOKEN = "no-token"  #: no usable token to send (the token file missing, empty, unreadable)
    NO_DESCRIPTORS = "no-descriptors"  #: the kiosk's own file descriptors ran out (EMFILE): the open-files fault, not the token's
    OUTBOX = "outbox"  #: the outbox could not be read or marked
    INTERNAL = "internal"  #: a bug in a delivery step (its traceback in the log)


@dataclass(frozen=True)
class DeliveryHealth:
    """What :meth:`device.forwarder.Forwarder.status` says, for ``kiosk status`` and the delivery faults.

    ``url`` is the central's; times are UTC ISO text (for people), ``failing_for_s`` is measured on
    the monotonic clock (for the delivery fault's age).
    """

    state: DeliveryState
    url: str
    paused_by_auth: bool
    auth_fault: str | None  #: why delivery is paused (token refused, or none usable); None while not paused
    consecutive_failures: int
    last_error: str | None
    next_step: str  #: what a technician does about last_error ("" when the cause has no advice)
    last_error_at: str | None
    failing_since: str | None
    failing_for_s: float | None
    last_success_at: str | None
    delivered_total: int

    def to_json(self) -> dict:
        """The ``delivery`` object of ``status.json`` (the state as its text)."""
        return {**asdict(self), "state": self.state.value}

    @classmethod
    def from_json(cls, data: dict) -> DeliveryHealth:
        """Back from ``status.json``; a missing key raises KeyError naming it, an unknown state ValueError."""
        return cls(**{**{name: data[name] for name in cls.__dataclass_fields__}, "state": DeliveryState(data["state"])})
