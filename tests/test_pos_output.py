"""The POS output: each committed identification typed into the POS once, never stale, its outcome kept.

A FIFO read by a thread stands in for ``/dev/hidg0`` (tests/support/pos_host.py), and what
arrives is decoded back to text as a USB host would (:func:`device.outputs.pos.host.typed_by_host`).
The outbox and the fault registry are the real ones; a POS that is offline is a FIFO nobody reads.
"""

from __future__ import annotations

import json
import os
import threading
import time

import pytest
from support.cards import contracts
from support.config import QUICK_RETRY, kiosk_config, write_config
from support.kiosk import run_kiosk
from support.pos_host import FifoHost

from device.card import Card
from device.cli import main
from device.clock import SystemClock
from device.config import EXIT_CONFIG, ConfigError, load
from device.daemon.faults import FaultRegistry
from device.events import FaultCleared, FaultRaised, Identified, NotACard, Refused
from device.fault_names import POS
from device.keyboard_layouts import layout
from device.outbox import Outbox
from device.outputs.pos.host import typed_by_host
from device.outputs.pos.keyboard import HidKeyboard
from device.outputs.pos.output import PosOutput
from device.pos_template import PosOutcome


@pytest.fixture
def outbox(tmp_path):
    box = Outbox(tmp_path / "outbox.db", kiosk_id="kiosk-pos", site="Riga 5", clock=SystemClock())
    yield box
    box.close()


@pytest.fixture
def host(tmp_path):
    fifo = FifoHost(tmp_path / "hidg0")
    yield fifo
    fifo.close()


class Kiosk:
    """What the output is given of the kiosk: its outbox and its real fault registry, whose events are kept."""

    def __init__(self, outbox: Outbox):
        self.outbox = outbox
        self.events: list[object] = []
        self.faults = FaultRegistry(self.events.append)


def pos_output(kiosk: Kiosk, device, *, template="{contract}\n", layout_name="us", **options) -> PosOutput:
    keyboard = HidKeyboard(layout=layout(layout_name), path=str(device), key_delay_ms=0)
    return PosOutput(keyboard, template=template, max_age_s=10.0, outcomes=kiosk.outbox, faults=kiosk.faults, **options)


def identified(outbox: Outbox, contract: str, issue: int = 1, *, committed: float | None = None) -> Identified:
    record = outbox.commit(Card("v1", contract, issue), symbology="Code128", decoder="zxing-cpp")
    return Identified(record, 0, time.monotonic() if committed is None else committed)


def test_an_identification_is_typed_into_the_pos_and_recorded_handed_over(outbox, host):
    kiosk = Kiosk(outbox)
    output = pos_output(kiosk, host.path, template="{contract}\t{issue}\t{seq}\t{payload}\n", layout_name="fr")
    event = identified(outbox, "0012345678", 2)
    output.on_identified(event)
    assert typed_by_host(host.received(), layout("fr")) == "0012345678\t2\t1\tLE00123456780265\n"
    stored = outbox.get(event.record.id)
    assert stored.pos_outcome == "handed over"
    assert outbox.checksum_problem(stored) is None, "the outcome is outside the checksum"
    assert outbox.stats().pos_outcomes == {"handed over": 1}
    assert kiosk.events == [], "no fault"


def test_an_identification_whose_turn_comes_too_late_is_not_typed_and_recorded_too_old(outbox, host):
    kiosk = Kiosk(outbox)
    committed = 1000.0
    output = pos_output(kiosk, host.path, clock=lambda: committed + 10.5)  # pos.max_age_s is 10
    event = identified(outbox, "0012345678", committed=committed)
    output.on_identified(event)
    late_but_in_time = identified(outbox, "0087654321", committed=committed + 0.6)
    output.on_identified(late_but_in_time)
    assert typed_by_host(host.received(), layout("us")) == "0087654321\n", "the one too old is not typed"
    assert outbox.get(event.record.id).pos_outcome == "too old"
    assert outbox.get(late_but_in_time.record.id).pos_outcome == "handed over"


def test_a_pos_nobody_reads_is_offline_a_fault_with_the_cause_cleared_when_the_pos_reads_again(outbox, tmp_path):
    kiosk = Kiosk(outbox)
    device = tmp_path / "hidg0"
    os.mkfifo(device)
    output = pos_output(kiosk, device)
    missed = identified(outbox, "0012345678")
    output.on_identified(missed)  # returns: a FIFO nobody reads is ENXIO at once, no hang
    assert outbox.get(missed.record.id).pos_outcome == "POS offline"
    assert kiosk.events == [FaultRaised(POS, f"the POS took nothing: {device}: nothing reads it, no POS is behind it (ENXIO)")]
    host = FifoHost(device)  # the POS is back
    try:
        taken = identified(outbox, "0087654321")
        output.on_identified(taken)
        assert typed_by_host(host.received(), layout("us")) == "0087654321\n", "the missed one is not typed later"
    finally:
        host.close()
    assert outbox.get(taken.record.id).pos_outcome == "handed over"
    assert kiosk.events[1:] == [FaultCleared(POS, "the POS took a line again")]
    assert outbox.stats().pos_outcomes == {"POS offline": 1, "handed over": 1}


def test_only_identifications_are_handed_over(outbox, host):
    assert PosOutput.handles(Identified) and not PosOutput.handles(Refused) and not PosOutput.handles(NotACard)
    refusal = outbox.commit(Card("v1", "0012345678", 1), symbology="Code128", decoder="zxing-cpp", refused_for_issue=2)
    kiosk = Kiosk(outbox)
    pos_output(kiosk, host.path).on_identified(Identified(refusal, 0, time.monotonic()))  # a refusal, whatever carries it
    assert host.received() == b""
    assert outbox.get(refusal.id).pos_outcome is None


@pytest.mark.parametrize(
    ("template", "problem"),
    [
        ("{contract}\x1b[2J\n", "may hold only printable ASCII, Tab and Enter"),
        ("{contract}é\n", "may hold only printable ASCII, Tab and Enter"),
        ("{contract}\r", "may hold only printable ASCII, Tab and Enter"),
        ("{name}\n", "unknown field {name}"),
        ("{contract!r}\n", "takes no format or conversion"),
        ("PAY\n", "must use at least one field"),
        ("{payload}{payload}{contract}\n", "at most 160 are allowed"),
    ],
)
def test_kiosk_config_check_refuses_a_template_naming_pos_template(tmp_path, template, problem):
    cfg = write_config(tmp_path / "kiosk.toml", pos={"output": "keyboard", "template": template})
    run = run_kiosk("config", "check", "--config", str(cfg))
    assert run.returncode == EXIT_CONFIG, run.stderr
    assert "pos.template: " in run.stderr and problem in run.stderr


def test_a_template_character_the_pos_layout_cannot_type_is_refused(tmp_path):
    cfg = write_config(tmp_path / "kiosk.toml", pos={"output": "keyboard", "keyboard_layout": "de", "template": "^{contract}\n"})
    with pytest.raises(ConfigError, match=r"pos\.template: the 'de' keyboard layout cannot type '\^'"):
        load(cfg, environ={})
    write_config(tmp_path / "kiosk.toml", pos={"output": "keyboard", "keyboard_layout": "us", "template": "^{contract}\n"})
    assert load(cfg, environ={}).pos.template == "^{contract}\n"


def test_kiosk_pos_test_types_the_test_line_or_says_why_not(tmp_path, host, capsys):
    cfg = write_config(tmp_path / "kiosk.toml", pos={"output": "keyboard", "hid_device": str(host.path), "keyboard_layout": "lv"})
    assert main(["pos", "test", "--config", str(cfg)]) == 0
    assert typed_by_host(host.received(), layout("lv")) == "0012345678\n"
    assert "test card" in capsys.readouterr().out
    nobody = tmp_path / "nobody-reads"
    os.mkfifo(nobody)
    write_config(tmp_path / "kiosk.toml", pos={"output": "keyboard", "hid_device": str(nobody)})
    assert main(["pos", "test", "--config", str(cfg)]) == 1
    assert "POS offline: " in capsys.readouterr().err
    write_config(tmp_path / "kiosk.toml", pos={})
    assert main(["pos", "test", "--config", str(cfg)]) == 1


def test_the_daemon_types_each_identified_contract_once_and_queue_show_says_handed_over(tmp_path, central_factory, host, capsys):
    from device.assembly import build_kiosk
    from device.tools.synth.video import Presentation, write_presentation_video

    shown = contracts(4)
    video = tmp_path / "counter.avi"
    truths = write_presentation_video(video, [Presentation.card(c, 1, hold_s=0.8) for c in shown], fps=10, size=(640, 360), seed=5)
    assert all(t.is_card for t in truths)
    cfg_path = kiosk_config(
        tmp_path,
        central=central_factory(),
        source=f"file:{video}",
        kiosk={"id": "kiosk-pos"},
        api=QUICK_RETRY,
        feedback={"pin_factory": "mock"},
        pos={"output": "keyboard", "hid_device": str(host.path), "key_delay_ms": 2},
    )
    kiosk = build_kiosk(load(cfg_path, environ={}))  # every configured output, the POS's among them
    assert kiosk.run(threading.Event(), drain_timeout_s=60) == 0  # a finite run: every event handled before it returns
    assert typed_by_host(host.received(), layout("us")) == "".join(f"{c}\n" for c in shown)
    for seq in range(1, len(shown) + 1):
        assert main(["queue", "show", str(seq), "--json", "--config", str(cfg_path)]) == 0
        assert json.loads(capsys.readouterr().out)["pos_outcome"] == PosOutcome.HANDED_OVER


def test_kiosk_status_counts_the_outcomes_kept_and_the_status_reads_back():
    from support.status import daemon_status, outbox_health

    from device.health.outbox import OutboxHealth
    from device.status.render import render
    from device.status.report import StatusReport

    queue = outbox_health(delivered=3, pos_outcomes={"POS offline": 1, "handed over": 2})
    assert OutboxHealth.from_json(json.loads(json.dumps(queue.to_json()))) == queue
    daemon = daemon_status(queue=queue)
    text = render(StatusReport(True, "running", "kiosk-test", daemon, queue, None, True, None, [], None, None))
    assert "pos         1 POS offline, 2 handed over (of the identifications kept) <- kiosk queue show SEQ" in text
    assert "pos " not in render(StatusReport(True, "running", "kiosk-test", daemon, outbox_health(), None, True, None, [], None, None))


def test_the_serial_settings_are_checked_by_the_config(tmp_path):
    cfg = write_config(
        tmp_path / "kiosk.toml", pos={"output": "serial", "serial_device": "/dev/ttyUSB0", "baud": 115200, "ack_timeout_s": 0.5}
    )
    pos = load(cfg, environ={}).pos
    assert (pos.output, pos.serial_device, pos.baud, pos.ack_timeout_s) == ("serial", "/dev/ttyUSB0", 115200, 0.5)
    for key, value, problem in [("baud", 10**9, "expected 300 .. 4000000"), ("serial_device", "ttyUSB0", "expected an absolute path")]:
        write_config(tmp_path / "kiosk.toml", pos={"output": "serial", key: value})
        with pytest.raises(ConfigError, match=f"pos.{key}: {problem}"):
            load(cfg, environ={})


def test_an_outbox_of_schema_v4_gets_the_column_its_records_unchanged(tmp_path):
    import sqlite3

    path = tmp_path / "v4.db"
    with Outbox(path, kiosk_id="kiosk-pos", site="", clock=SystemClock()) as box:
        before = box.commit(Card("v1", "0012345678", 1), symbology="Code128", decoder="zxing-cpp")
    conn = sqlite3.connect(path)
    conn.execute("ALTER TABLE identifications DROP COLUMN pos_outcome")  # as schema v4 wrote it
    conn.execute("PRAGMA user_version = 4")
    conn.commit()
    conn.close()
    with Outbox(path, kiosk_id="kiosk-pos", site="", clock=SystemClock()) as box:
        after = box.get(before.id)
        assert after == before and after.pos_outcome is None
        assert box.checksum_problem(after) is None
        assert box.record_pos_outcome(before.id, PosOutcome.TOO_OLD)
        assert box.get(before.id).checksum == before.checksum
