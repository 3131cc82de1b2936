"""Delivery events: every output learns what reached the central, and only once the outbox says so.

The forwarder publishes :class:`Delivered` for the records the central holds and :class:`Dead`
for a record it refused, each after the outbox commit that records it. The central here is the
reference central as a real process; what the outbox holds is read over a connection of its own,
as another process would see it, at the moment each event is published or handled.
"""

from __future__ import annotations

import threading
from pathlib import Path

from support.cards import contracts
from support.central import CENTRAL_TOKEN
from support.config import write_config
from support.outputs import Published, Recorder, committed_states, record_ids

from device.assembly import build_kiosk
from device.card import Card
from device.clock import SystemClock
from device.config import ApiSection, Config, load
from device.events import Dead, Delivered, Event
from device.forwarder import Forwarder
from device.outbox import Outbox


def test_the_forwarder_publishes_delivered_and_dead_after_the_outbox_commit(tmp_path, central_factory):
    refused = Card("v1", "0099999999", 1)
    central = central_factory(reject_contracts=[refused.contract])
    path = tmp_path / "outbox.db"
    box = Outbox(path, kiosk_id="kiosk-events", site="Riga 5", clock=SystemClock())
    accepted = [box.commit(Card("v1", c, 1), symbology="Code128", decoder="zxing-cpp") for c in contracts(5)]
    dead = box.commit(refused, symbology="Code128", decoder="zxing-cpp")
    seen = Published(path)
    api = ApiSection(url=central.url, token=CENTRAL_TOKEN, batch_size=2, backoff_base_s=0.01, backoff_cap_s=0.05)
    forwarder = Forwarder.from_config(Config(api=api), box)
    forwarder.publish = seen  # called in this thread, at the moment of publishing: the commit must be done by then
    try:
        assert forwarder.drain(timeout_s=60) is True
    finally:
        box.close()
    delivered = [(e, states) for e, states in seen.events if isinstance(e, Delivered)]
    refusals = [(e, states) for e, states in seen.events if isinstance(e, Dead)]
    # Each record the central accepted, once, in the order committed; each already delivered in the outbox.
    assert [r.id for e, _ in delivered for r in e.records] == [r.id for r in accepted]
    assert all(states == ["delivered"] * len(e.records) for e, states in delivered)
    assert {r["id"] for r in central.identifications()} == {r.id for r in accepted}
    # The refused one: Dead with the central's reason, already dead in the outbox; never Delivered.
    assert [(e.record.id, e.record.contract, states) for e, states in refusals] == [(dead.id, refused.contract, ["dead"])]
    assert refusals[0][0].reason  # the central's words, for the technician


class DeliveryRecorder(Recorder):
    """The daemon's kind of output: keeps Delivered and Dead with the committed states it found
    when it handled them (in its own thread, some time after the commit)."""

    def __init__(self, outbox_path: Path):
        super().__init__()
        self.outbox_path = outbox_path
        self.deliveries: list[tuple[Event, dict[str, str]]] = []

    def on_delivered(self, event: Delivered) -> None:
        self.deliveries.append((event, committed_states(self.outbox_path, record_ids(event))))

    def on_dead(self, event: Dead) -> None:
        self.deliveries.append((event, committed_states(self.outbox_path, record_ids(event))))


def test_every_output_learns_what_reached_the_central_without_reading_the_outbox(tmp_path, card_folder, central_factory):
    """The whole kiosk, as the assembly builds it: cards on a file camera, the central refuses one contract."""
    shown = contracts(4)
    refused = shown[2]
    central = central_factory(reject_contracts=[refused])
    outbox_path = tmp_path / "outbox.db"
    cfg_path = write_config(
        tmp_path / "kiosk.toml",
        kiosk={"id": "kiosk-events", "site": "Riga Centre 3", "runtime_dir": str(tmp_path / "run")},
        camera={"source": f"file:{card_folder(shown)}", "pace": "fast"},
        outbox={"path": str(outbox_path)},
        feedback={"pin_factory": "mock"},
        api={"url": central.url, "token": CENTRAL_TOKEN, "backoff_base_s": 0.05, "backoff_cap_s": 0.5},
    )
    output = DeliveryRecorder(outbox_path)
    kiosk = build_kiosk(load(cfg_path, environ={}), outputs=[output])
    assert kiosk.run(threading.Event(), drain_timeout_s=60) == 0  # a finite run: every event handled before it returns
    assert [e for e in output.log if e[0] == "identified"] == [("identified", c) for c in shown]
    delivered = [r for e, _ in output.deliveries if isinstance(e, Delivered) for r in e.records]
    dead = [e for e, _ in output.deliveries if isinstance(e, Dead)]
    assert sorted(r.contract for r in delivered) == sorted(c for c in shown if c != refused)  # each accepted one, once
    assert sorted(r["id"] for r in central.identifications()) == sorted(r.id for r in delivered)
    assert [e.record.contract for e in dead] == [refused]
    for event, states in output.deliveries:
        want = "delivered" if isinstance(event, Delivered) else "dead"
        assert states == [want] * len(record_ids(event)), (event, states)
