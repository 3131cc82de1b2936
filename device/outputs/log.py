"""The log output: one line per identification, per replaced card refused and per barcode that is not a card.

The lines a technician greps for (``journalctl -u kiosk | grep identified``); contracts are
masked unless ``log.unmask`` is set, and foreign barcodes are described, never echoed::

    outputs = OutputRunner([LogOutput.from_config(cfg)])
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from device.events import Identified, NotACard, Refused
from device.outputs.base import Output
from device.redact import describe_text, mask_contract

if TYPE_CHECKING:
    from device.config import Config

#: The daemon's logger: these lines have always come from the daemon.
log = logging.getLogger("device.daemon")


class LogOutput(Output):
    """Logs "identified contract ... (seq, id)" and "not a card (reason): ..." lines.

    :param unmask: log whole contract numbers and barcode texts (``log.unmask``; for bench work only).
    """

    def __init__(self, *, unmask: bool):
        self.unmask = unmask

    @classmethod
    def from_config(cls, cfg: Config) -> LogOutput:
        return cls(unmask=cfg.log.unmask)

    def on_identified(self, event: Identified) -> None:
        identification = event.record
        log.info(
            "identified contract %s issue %d (seq %d, id %s)",
            mask_contract(identification.contract, self.unmask),
            identification.card_issue,
            identification.seq,
            identification.id,
        )

    def on_refused(self, event: Refused) -> None:
        refusal = event.record
        log.info(
            "card replaced: contract %s issue %d refused, its current issue is %d (refusal seq %d, id %s)",
            mask_contract(refusal.contract, self.unmask),
            refusal.card_issue,
            refusal.current_issue,
            refusal.seq,
            refusal.id,
        )

    def on_not_a_card(self, event: NotACard) -> None:
        reading = event.reading
        symbol = reading.symbol
        log.info("not a card (%s): %s %s", reading.rejection.reason, symbol.symbology, describe_text(symbol.text, self.unmask))
