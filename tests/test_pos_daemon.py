"""The POS hand-off in the whole daemon on a presentation video, with a POS that is absent, slow, or back too late.

The kiosk is the one ``kiosk run`` builds (:func:`device.assembly.build_kiosk`), the central the
reference one in its own process; the POS is a FIFO standing in for ``/dev/hidg0``
(tests/support/pos_host.py), decoded back to text as a USB host would type it, or the POS end of a
pseudo-terminal standing in for a serial line (tests/support/pos_serial.py). Whatever the POS
does, scanning and delivery to the central go on: every card shown is identified and delivered once.
"""

from __future__ import annotations

import os
import threading
import time

from support.cards import contracts
from support.config import QUICK_RETRY, kiosk_config
from support.pos_host import FifoHost
from support.pos_serial import PtyPos
from support.waiting import wait_until

from device.assembly import build_kiosk
from device.card import CARD_V1
from device.clock import SystemClock
from device.config import load
from device.fault_names import POS
from device.keyboard_layouts import layout
from device.outbox import Outbox
from device.outputs.pos.host import typed_by_host
from device.outputs.pos.keyboard import REPORT_LENGTH
from device.outputs.pos.output import PosOutput
from device.outputs.pos.serial_line import ACK
from device.pos_template import PosOutcome
from device.tools.synth.video import Presentation, write_presentation_video

#: A host that takes one report at a time, this long apart (a POS busy elsewhere): slower than the kiosk types.
SLOW_READ_S = 0.01


def run_daemon(tmp_path, central, shown, hid_device, *, pace="fast", size=(640, 360), during=None, **pos):
    """Run the daemon on a video of ``shown`` (presentations, or groups shown together) typing into
    ``hid_device``; ``during(kiosk)`` runs in the test's thread while the daemon runs. The kiosk, after its run."""
    video = tmp_path / "counter.avi"
    write_presentation_video(video, shown, fps=10, size=size, seed=5)
    cfg_path = kiosk_config(
        tmp_path,
        central=central,
        source=f"file:{video}",
        pace=pace,
        kiosk={"id": "kiosk-pos"},
        api=QUICK_RETRY,
        feedback={"pin_factory": "mock"},
        pos={"output": "keyboard", "hid_device": str(hid_device), "key_delay_ms": 2, **pos},
    )
    kiosk = build_kiosk(load(cfg_path, environ={}))
    codes: list[int] = []
    runner = threading.Thread(target=lambda: codes.append(kiosk.run(threading.Event(), drain_timeout_s=60)), name="daemon")
    runner.start()
    try:
        if during is not None:
            during(kiosk)
    finally:
        runner.join()
    assert codes == [0], "a finite run: every event handled and the outbox drained before it returns"
    return kiosk


def outcomes(tmp_path) -> dict[str, str | None]:
    """Each identification's POS outcome by contract, as the outbox keeps it."""
    with Outbox(tmp_path / "outbox.db", kiosk_id="kiosk-pos", site="", clock=SystemClock()) as box:
        return {record.contract: record.pos_outcome for record in box.list() if record.kind == "identification"}


def delivered_once(central, expected: list[str]) -> None:
    held = [item["contract"] for item in central.identifications()]
    assert sorted(held) == sorted(expected), "every identification reached the central once, whatever the POS did"


def test_an_absent_pos_is_offline_a_fault_and_scanning_and_delivery_go_on(tmp_path, central):
    shown = contracts(4)
    device = tmp_path / "hidg0"
    os.mkfifo(device)  # nobody reads it: no POS behind the cable
    kiosk = run_daemon(tmp_path, central, [Presentation.card(c, 1, hold_s=0.8) for c in shown], device)
    assert outcomes(tmp_path) == dict.fromkeys(shown, PosOutcome.OFFLINE)
    assert kiosk.faults.active() == {POS: f"the POS took nothing: {device}: nothing reads it, no POS is behind it (ENXIO)"}
    delivered_once(central, shown)


class SlowHost(FifoHost):
    """A host that reads the keyboard one report at a time, :data:`SLOW_READ_S` apart."""

    def _read(self) -> None:
        assert self._read_end is not None
        while chunk := os.read(self._read_end, REPORT_LENGTH):
            self._data += chunk
            time.sleep(SLOW_READ_S)  # the host's pace, not synchronisation: it is what makes this POS slow


def test_a_slow_pos_gets_each_line_whole_and_once(tmp_path, central):
    shown = contracts(4)
    host = SlowHost(tmp_path / "hidg0")
    try:
        kiosk = run_daemon(
            tmp_path, central, [Presentation.card(c, 1, hold_s=0.8) for c in shown], host.path, template="{payload}\t{contract}\n"
        )
        typed = typed_by_host(host.received(), layout("us"))
    finally:
        host.close()
    assert typed == "".join(f"{CARD_V1.encode(c, 1)}\t{c}\n" for c in shown)
    assert outcomes(tmp_path) == dict.fromkeys(shown, PosOutcome.HANDED_OVER)
    assert POS not in kiosk.faults.active()
    delivered_once(central, shown)


class AsleepHost:
    """A POS that holds the keyboard but takes no key (asleep, in its BIOS): the FIFO is open for
    reading and its buffer full of release reports, which type nothing; the kiosk's writes wait and give up."""

    def __init__(self, path):
        os.mkfifo(path)
        self._read_end = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        self._write_end = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
        try:
            while True:
                os.write(self._write_end, bytes(4096))
        except BlockingIOError:
            pass

    def close(self) -> None:
        for fd in (self._read_end, self._write_end):
            os.close(fd)


def test_a_pos_back_after_max_age_gets_no_line_from_while_it_was_away_and_the_next_card_is_typed(tmp_path, central):
    away, after = contracts(3)[:2], contracts(3)[2]
    device = tmp_path / "hidg0"
    asleep = AsleepHost(device)
    woken: list[FifoHost] = []

    def wake_when_the_away_ones_are_recorded(kiosk) -> None:
        try:
            (output,) = [o for o in kiosk.outputs.outputs if isinstance(o, PosOutput)]
            wait_until(lambda: sum(output.counts.values()) == len(away), what="the outcomes of the cards shown while the POS was away")
            assert output.counts[PosOutcome.HANDED_OVER] == 0
        finally:
            woken.append(FifoHost(device))  # the POS reads again: what sits in the buffer first (releases only), then new keys
            asleep.close()

    # Two clients hold their cards up together while the POS is away; the next client comes 6 s
    # later (the video plays in real time, so the POS is back by then: pos.max_age_s is 0.5 s).
    shown = [tuple(Presentation.card(c, 1, hold_s=2.7) for c in away), Presentation.card(after, 1, hold_s=1.5).after(6.0)]
    try:
        kiosk = run_daemon(
            tmp_path, central, shown, device, pace="realtime", size=(1280, 720), during=wake_when_the_away_ones_are_recorded, max_age_s=0.5
        )
        typed = typed_by_host(woken[0].received(), layout("us"))
    finally:
        for host in woken:
            host.close()
    assert typed == f"{after}\n", "nothing identified while the POS was away is typed once it is back"
    kept = outcomes(tmp_path)
    assert kept.pop(after) == PosOutcome.HANDED_OVER
    # The first found it asleep (6 x 0.1 s of waiting); the second's turn came after that: offline again, or too old.
    assert sorted(kept) == sorted(away) and PosOutcome.OFFLINE in kept.values(), kept
    assert set(kept.values()) <= {PosOutcome.OFFLINE, PosOutcome.TOO_OLD}, kept
    assert POS not in kiosk.faults.active(), "the fault is cleared once the POS took a line again"
    delivered_once(central, [*away, after])


def test_an_identification_whose_turn_comes_after_max_age_behind_a_slow_line_is_too_old_and_never_typed(tmp_path, central):
    together = contracts(2)
    host = FifoHost(tmp_path / "hidg0")
    try:
        # 100 ms between reports: a line of 11 keys takes 2.1 s, so whichever card is typed second
        # waits longer than pos.max_age_s (0.5 s) after its commit: the two are read within a few frames.
        shown = [tuple(Presentation.card(c, 1, hold_s=2.7) for c in together)]
        run_daemon(tmp_path, central, shown, host.path, size=(1280, 720), key_delay_ms=100, max_age_s=0.5)
        typed = typed_by_host(host.received(), layout("us"))
    finally:
        host.close()
    kept = outcomes(tmp_path)
    assert sorted(kept.values()) == sorted([PosOutcome.HANDED_OVER, PosOutcome.TOO_OLD]), kept
    (first,) = [c for c, outcome in kept.items() if outcome == PosOutcome.HANDED_OVER]
    assert typed == f"{first}\n", "the one too old is never typed"
    delivered_once(central, together)


def test_the_serial_output_sends_each_identified_contract_once_and_the_pos_acknowledges_it(tmp_path, central):
    shown = contracts(3)
    pos = PtyPos(answer=ACK)
    try:
        run_daemon(
            tmp_path, central, [Presentation.card(c, 1, hold_s=0.8) for c in shown], tmp_path / "no-keyboard",
            output="serial", serial_device=pos.name, ack_timeout_s=5.0,
        )  # fmt: skip
        lines = pos.lines()
    finally:
        pos.unplug()
    assert lines == [f"{contract}\n".encode() for contract in shown], "one line per identification, in order, each once"
    assert outcomes(tmp_path) == dict.fromkeys(shown, PosOutcome.HANDED_OVER)
    delivered_once(central, shown)
