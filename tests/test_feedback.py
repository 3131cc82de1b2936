"""Feedback on gpiozero's mock pins: what each event does to the LEDs, buzzer and button.

gpiozero lights and beeps in background threads, so tests wait for a pin's history to reach a
state (with a deadline) instead of sleeping. Timings are shortened to a few milliseconds.
"""

from __future__ import annotations

import dataclasses
import io
import itertools
import logging
from pathlib import Path

import pytest
from gpiozero import LED, Device
from gpiozero.pins.mock import MockFactory
from support.waiting import wait_until

from device.config import Config, FeedbackSection
from device.events import EVENT_TYPES, FaultCleared, FaultRaised, Identified, NotACard, Refused
from device.outputs import Output
from device.outputs.feedback import SIGNALS, Feedback, Timings, diag_gpio, make_pin_factory, pin_factory_names

FAST = Timings(lit_s=0.01, beep_s=0.005, beep_gap_s=0.005, fault_on_s=0.005, fault_off_s=0.005, bounce_s=0)
NO_WAIT = Timings(lit_s=0, beep_s=0, beep_gap_s=0, long_beep_s=0, fault_on_s=0, fault_off_s=0, bounce_s=0)
PINS = {"green": "GPIO17", "red": "GPIO27", "amber": "GPIO22", "buzzer": "GPIO23", "button": "GPIO5"}


@pytest.fixture(autouse=True)
def clean_gpiozero(monkeypatch):
    """Each test starts with no global pin factory and leaves none behind."""
    monkeypatch.delenv("GPIOZERO_PIN_FACTORY", raising=False)
    saved, Device.pin_factory = Device.pin_factory, None
    yield
    if Device.pin_factory is not None and Device.pin_factory is not saved:
        Device.pin_factory.close()
    Device.pin_factory = saved


@pytest.fixture
def factory():
    f = MockFactory()
    yield f
    f.close()


def section(**keys) -> FeedbackSection:
    fields = {"pin_factory": "mock", **{f"{role}_pin": pin for role, pin in PINS.items()}}
    fields.update(keys)
    return FeedbackSection(**fields)


def states(factory, pin) -> list[bool]:
    return [bool(s.state) for s in factory.pin(pin).states]


def wait_states(factory, pin, expected: list[bool]):
    wait_until(lambda: states(factory, pin) == expected, what=f"{pin} to go {expected}", detail=lambda: f"it went {states(factory, pin)}")
    assert states(factory, pin) == expected


def rises(factory, pin) -> int:
    s = states(factory, pin)
    return sum(1 for a, b in itertools.pairwise(s) if b and not a)


def test_identified_lights_green_and_beeps_once(factory):
    with Feedback(section(), pin_factory=factory, timings=FAST) as feedback:
        feedback.on_identified(Identified(None, 0, 0.0))
        wait_states(factory, "GPIO17", [False, True, False])
        wait_states(factory, "GPIO23", [False, True, False])
        assert states(factory, "GPIO27") == [False]
        assert states(factory, "GPIO22") == [False]


def test_not_a_card_lights_red_and_beeps_twice(factory):
    with Feedback(section(), pin_factory=factory, timings=FAST) as feedback:
        feedback.on_not_a_card(NotACard(None, 0))
        wait_states(factory, "GPIO27", [False, True, False])
        wait_states(factory, "GPIO23", [False, True, False, True, False])
        assert states(factory, "GPIO17") == [False]


def test_events_return_at_once_while_the_light_stays_on(factory):
    slow = dataclasses.replace(FAST, lit_s=30)
    with Feedback(section(), pin_factory=factory, timings=slow) as feedback:
        feedback.on_identified(Identified(None, 0, 0.0))  # would take 30 s if it blocked
        wait_states(factory, "GPIO17", [False, True])
    assert not factory.pin("GPIO17").state  # close() turns it off


def test_amber_blinks_while_any_fault_is_active_and_stops_when_all_clear(factory):
    with Feedback(section(), pin_factory=factory, timings=FAST) as feedback:
        feedback.on_fault_raised(FaultRaised("camera", "no frames for 5 s"))
        feedback.on_fault_raised(FaultRaised("outbox", "disk full"))
        wait_until(lambda: rises(factory, "GPIO22") >= 3, what="amber to blink")
        assert feedback.faults == ("camera", "outbox")

        feedback.on_fault_cleared(FaultCleared("camera", "frames arriving"))
        blinks = rises(factory, "GPIO22")
        wait_until(lambda: rises(factory, "GPIO22") >= blinks + 2, what="amber to keep blinking with one fault left")

        feedback.on_fault_cleared(FaultCleared("outbox", "frames arriving"))
        assert not factory.pin("GPIO22").state
        after_clear = states(factory, "GPIO22")
        # Another event runs to completion; the amber pin has not moved meanwhile.
        feedback.on_identified(Identified(None, 0, 0.0))
        wait_states(factory, "GPIO17", [False, True, False])
        assert states(factory, "GPIO22") == after_clear
        assert feedback.faults == ()
        # No sound for faults.
        assert states(factory, "GPIO23") == [False, True, False]


def test_button_press_calls_on_button_once(factory):
    presses = []
    with Feedback(section(), pin_factory=factory, timings=FAST, on_button=lambda: presses.append(1)):
        button = factory.pin("GPIO5")
        assert button.state  # pulled up: released
        button.drive_low()
        button.drive_high()
        wait_until(lambda: presses, what="on_button")
        assert presses == [1]


def test_a_failing_button_handler_is_logged_not_raised(factory, caplog):
    def broken():
        raise RuntimeError("kiosk gone")

    with Feedback(section(), pin_factory=factory, timings=FAST, on_button=broken):
        factory.pin("GPIO5").drive_low()
    assert "button handler failed" in caplog.text


def test_a_pin_set_to_empty_is_not_fitted(factory):
    with Feedback(section(red_pin="", button_pin=""), pin_factory=factory, timings=FAST) as feedback:
        feedback.on_not_a_card(NotACard(None, 0))
        wait_states(factory, "GPIO23", [False, True, False, True, False])
        opened = {info.name for info in factory.pins}
        assert "GPIO27" not in opened and "GPIO5" not in opened
        assert set(feedback.status()["pins"]) == {"green", "amber", "buzzer"}


@pytest.mark.parametrize(
    "role, bad",
    [("green", "GPIO99"), ("green", "BOARD1"), ("amber", "GPIO17")],  # no such pin; the 3V3 pin; green's pin
)
def test_a_pin_that_cannot_be_opened_disables_only_that_device(factory, caplog, role, bad):
    caplog.set_level(logging.WARNING)
    with Feedback(section(**{f"{role}_pin": bad}), pin_factory=factory, timings=FAST) as feedback:
        assert f"feedback.{role}_pin = '{bad}'" in caplog.text
        assert set(feedback.status()["problems"]) == {role}
        feedback.on_identified(Identified(None, 0, 0.0))  # still a beep, whatever else is missing
        wait_states(factory, "GPIO23", [False, True, False])
        feedback.on_not_a_card(NotACard(None, 0))
        wait_states(factory, "GPIO27", [False, True, False])


def test_no_gpio_logs_one_warning_and_events_do_nothing(monkeypatch, caplog):
    # An unknown factory name makes gpiozero's default lookup fail the same way as a PC does.
    monkeypatch.setenv("GPIOZERO_PIN_FACTORY", "no-such-factory")
    caplog.set_level(logging.DEBUG, logger="device.outputs.feedback")
    presses = []
    feedback = Feedback(section(pin_factory=""), on_button=lambda: presses.append(1))
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert [r.getMessage() for r in warnings] == ['no GPIO found: feedback off; set feedback.pin_factory = "mock" to silence']
    feedback.on_identified(Identified(None, 0, 0.0))
    feedback.on_not_a_card(NotACard(None, 0))
    feedback.on_fault_raised(FaultRaised("camera", "gone"))
    feedback.on_fault_cleared(FaultCleared("camera", "frames arriving"))
    assert feedback.status()["on"] is False
    feedback.close()


def test_default_factory_is_gpiozero_s_choice(monkeypatch):
    monkeypatch.setenv("GPIOZERO_PIN_FACTORY", "mock")
    with Feedback(section(pin_factory=""), timings=FAST) as feedback:
        assert isinstance(Device.pin_factory, MockFactory)
        feedback.on_identified(Identified(None, 0, 0.0))
        wait_states(Device.pin_factory, "GPIO17", [False, True, False])


def test_mock_factory_from_config_is_private_and_released_on_close():
    cfg = dataclasses.replace(Config(), feedback=section())
    feedback = Feedback.from_config(cfg)
    assert feedback.status()["factory"] == "MockFactory"
    assert Device.pin_factory is None  # did not touch gpiozero's global
    feedback.close()
    feedback.close()  # twice is fine
    feedback.on_identified(Identified(None, 0, 0.0))  # after close: nothing, no error


def test_a_missing_named_factory_turns_feedback_off(caplog):
    try:
        import pigpio  # noqa: F401

        pytest.skip("pigpio is installed here")
    except ImportError:
        pass
    feedback = Feedback(section(pin_factory="pigpio"))
    assert 'feedback.pin_factory = "pigpio" cannot be used' in caplog.text
    assert feedback.status()["on"] is False


def test_pin_factories_come_from_gpiozero_s_registry():
    # gpiozero registers its factories as entry points; the schema's choices must all be there.
    assert set(FeedbackSection.__dataclass_fields__["pin_factory"].metadata["choices"]) - {""} <= set(pin_factory_names())
    factory, owned = make_pin_factory("mock")
    try:
        assert isinstance(factory, MockFactory) and owned
    finally:
        factory.close()


def test_feedback_is_an_output():
    with Feedback(section(pin_factory=""), timings=FAST) as feedback:
        assert isinstance(feedback, Output)


def test_a_device_failing_at_run_time_is_switched_off_not_raised(factory, caplog):
    with Feedback(section(), pin_factory=factory, timings=FAST) as feedback:
        factory.pin("GPIO22").function = "input"  # the amber LED's pin yanked from under it
        feedback.on_fault_cleared(FaultCleared("camera", "frames arriving"))  # amber off: a synchronous write, which now fails
        feedback.on_fault_raised(FaultRaised("camera", "gone"))
        feedback.on_fault_cleared(FaultCleared("camera", "frames arriving"))
        assert caplog.text.count("amber LED failed") == 1
        feedback.on_identified(Identified(None, 0, 0.0))
        wait_states(factory, "GPIO17", [False, True, False])


def test_signals_describe_every_event_feedback_shows():
    assert set(SIGNALS) == {kind for kind in EVENT_TYPES if Feedback.handles(kind)}
    assert "green" in SIGNALS[Identified] and "one short beep" in SIGNALS[Identified]
    assert "red" in SIGNALS[NotACard] and "double beep" in SIGNALS[NotACard]
    assert "red" in SIGNALS[Refused] and "long beep" in SIGNALS[Refused]
    assert "amber" in SIGNALS[FaultRaised]


def test_wiring_doc_shows_every_signal():
    wiring = (Path(__file__).resolve().parent.parent / "docs" / "WIRING.md").read_text()
    for event, description in SIGNALS.items():
        assert f"| {description} |" in wiring, event


def test_diag_gpio_cycles_every_fitted_pin(factory):
    out = io.StringIO()
    assert diag_gpio(section(), out, factory, timings=NO_WAIT, sleep=lambda s: None) == 0
    for pin in ("GPIO17", "GPIO27", "GPIO22"):
        assert states(factory, pin) == [False, True, False]
    assert states(factory, "GPIO23") == [False, True, False, True, False, True, False, True, False]  # short, double, long
    text = out.getvalue()
    assert "green LED GPIO17: on ... off" in text.replace("  ", " ")
    assert "buzzer    GPIO23: short beep (identified) ... double beep (not a card) ... long beep (card replaced) ... done" in text
    assert "button    GPIO5: released" in text
    for pin in PINS.values():  # all released: each opens again
        LED(pin, pin_factory=factory).close()


def test_diag_gpio_reports_pins_it_cannot_open_and_not_fitted_ones(factory):
    out = io.StringIO()
    code = diag_gpio(section(red_pin="GPIO99", button_pin=""), out, factory, timings=NO_WAIT, sleep=lambda s: None)
    text = out.getvalue()
    assert code == 1
    assert "GPIO99: CANNOT OPEN: PinInvalidPin" in text and "(feedback.red_pin)" in text
    assert "not fitted (feedback.button_pin is empty)" in text
    assert states(factory, "GPIO17") == [False, True, False]  # the rest still cycled


def test_diag_gpio_without_gpio_says_so(monkeypatch):
    monkeypatch.setenv("GPIOZERO_PIN_FACTORY", "no-such-factory")
    out = io.StringIO()
    assert diag_gpio(section(pin_factory=""), out) == 1
    assert "no GPIO found" in out.getvalue()
