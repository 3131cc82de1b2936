"""One identification per presentation of each card, whatever else is in view.

First the rule on sightings, then the same cases through the real daemon on rendered counter
videos (file camera, fast pace), counting what reaches the reference central.
"""

import threading

import pytest
from support.config import QUICK_RETRY, kiosk_config
from support.kiosk import run_kiosk

from device.card import Card
from device.outputs import Output
from device.presentation import Presentations
from device.tools.synth.video import Presentation as Shown
from device.tools.synth.video import write_presentation_video

A = Card("v1", "0012345678", 1)
B = Card("v1", "0099999999", 1)
A_REPLACEMENT = Card("v1", "0012345678", 2)


def identify_all(presentations, sightings):
    """Feed (card, time) sightings as the daemon does; return the identifications made."""
    made = []
    for card, t in sightings:
        if presentations.is_new(card, t):
            presentations.identified(card, t)
            made.append((card, t))
    return made


def test_a_card_held_for_a_minute_is_identified_once():
    # Seen every 0.1 s for 60 s: each sighting extends the presentation beyond the 10 s window.
    sightings = [(A, i / 10) for i in range(600)]
    assert identify_all(Presentations(10), sightings) == [(A, 0.0)]


def test_same_card_after_the_window_is_a_new_presentation():
    made = identify_all(Presentations(10), [(A, 0.0), (A, 5.0), (A, 15.01)])
    assert made == [(A, 0.0), (A, 15.01)]


def test_same_card_just_inside_the_window_is_the_same_presentation():
    assert identify_all(Presentations(10), [(A, 0.0), (A, 10.0)]) == [(A, 0.0)]


def test_a_then_b_then_a_within_the_window_is_one_presentation_each():
    made = identify_all(Presentations(10), [(A, 0.0), (B, 0.5), (A, 1.0), (B, 1.5), (A, 9.0)])
    assert made == [(A, 0.0), (B, 0.5)]


def test_two_cards_in_the_same_frame_are_each_identified_once():
    # Both seen in every frame for 3 s, in the order the decoder happens to return them.
    sightings = []
    for i in range(30):
        pair = [(A, i / 10), (B, i / 10)]
        sightings += pair if i % 2 else pair[::-1]
    made = identify_all(Presentations(10), sightings)
    assert len(made) == 2 and set(made) == {(A, 0.0), (B, 0.0)}


def test_a_card_lying_in_view_stays_one_presentation_while_others_come_and_go():
    others = [Card("v1", f"{5000 + i:010d}", 1) for i in range(20)]
    sightings = []
    for second in range(200):  # the resting card seen once a second (the gate's full look)
        sightings.append((A, float(second)))
        if second % 10 == 5:
            sightings.append((others[second // 10], second + 0.2))
    made = identify_all(Presentations(10), sightings)
    assert made == [(A, 0.0)] + [(others[i], i * 10 + 5.2) for i in range(20)]


def test_forgotten_cards_are_expired_and_tracking_is_capped():
    p = Presentations(10, max_tracked=3)
    cards = [Card("v1", f"{7000 + i:010d}", 1) for i in range(5)]
    identify_all(p, [(c, 0.0) for c in cards])
    assert len(p) == 3  # the two seen longest ago were dropped
    assert not p.is_new(cards[4], 1.0) and p.is_new(cards[0], 1.0)
    assert p.is_new(cards[4], 20.0) and len(p) == 0  # all expired


def test_a_replacement_card_is_a_different_card():
    assert len(identify_all(Presentations(10), [(A, 0.0), (A_REPLACEMENT, 0.2)])) == 2


def test_uncommitted_identification_is_retried_on_the_next_frame():
    p = Presentations(10)
    assert p.is_new(A, 0.0)  # commit fails (disk full): identified() is not called
    assert p.is_new(A, 0.1)


def test_button_reset_ends_every_open_presentation():
    p = Presentations(10)
    identify_all(p, [(A, 0.0), (B, 0.0)])
    p.reset()
    assert p.is_new(A, 0.5) and p.is_new(B, 0.5)


def test_barcodes_that_are_not_cards_alternating_are_reported_once_each():
    ean, other = ("EAN13", "5901234123457"), ("Code128", "SHOP-CLUB 4711")
    sightings = [(ean if i % 2 else other, i / 10) for i in range(40)]
    assert [k for k, _ in identify_all(Presentations(10), sightings)] == [other, ean]


# --- Through the real daemon: rendered counter videos, the file camera, the reference central ---------

CLIENT_A, CLIENT_B, CLIENT_C, CLIENT_D = "0012345678", "4000000017", "0000009999", "1111111116"


def video_config(tmp_path, video, central, feedback=None, **scan):
    return kiosk_config(
        tmp_path,
        central=central,
        source=f"file:{video}",
        kiosk={"id": "kiosk-presentations", "site": "Riga Centre 3"},
        scan=scan,
        feedback=feedback or {},
        api=QUICK_RETRY,
    )


def identified_at_central(tmp_path, central, presentations, *, seed, resting=(), **scan) -> list[str]:
    """Render the video, run `kiosk run` on it until drained, and list the contracts the central holds."""
    video = tmp_path / "counter.avi"
    truths = write_presentation_video(video, presentations, seed=seed, resting=resting)
    run = run_kiosk("run", "--config", str(video_config(tmp_path, video, central, **scan)), "--drain-timeout", "60")
    assert run.returncode == 0, run.stderr[-3000:]
    assert all(t.full_to > t.full_from for t in truths)  # every card was whole in view for a while
    return sorted(i["contract"] for i in central.identifications())


def test_daemon_two_cards_in_view_together_are_each_identified_once(tmp_path, central):
    shown = [(Shown.card(CLIENT_A, hold_s=2.7), Shown.card(CLIENT_B, 2, hold_s=2.7))]
    assert identified_at_central(tmp_path, central, shown, seed=5) == sorted([CLIENT_A, CLIENT_B])


def test_daemon_a_card_lying_in_view_is_identified_once_while_others_present_theirs(tmp_path, central):
    shown = [Shown.card(CLIENT_B, 2), Shown.card(CLIENT_C), Shown.product_ean13(), Shown.card(CLIENT_D)]
    made = identified_at_central(tmp_path, central, shown, seed=6, resting=[Shown.card(CLIENT_A)])
    assert made == sorted([CLIENT_A, CLIENT_B, CLIENT_C, CLIENT_D])


def test_daemon_a_then_b_then_a_again_within_the_window_is_one_each(tmp_path, central):
    shown = [Shown.card(CLIENT_A), Shown.card(CLIENT_B, 2), Shown.card(CLIENT_A)]
    assert identified_at_central(tmp_path, central, shown, seed=7) == sorted([CLIENT_A, CLIENT_B])


def test_daemon_a_card_shown_again_after_the_window_is_identified_twice(tmp_path, central):
    shown = [Shown.card(CLIENT_A), Shown.card(CLIENT_A).after(4.0)]  # the window is 2.5 s here
    assert identified_at_central(tmp_path, central, shown, seed=8, repeat_window_s=2.5) == [CLIENT_A, CLIENT_A]


class Told(Output):
    """An output that records what the client and the operator were told, and can press
    the operator's button (a gpiozero mock pin) when a given frame goes by."""

    def __init__(self, press_at_frame=None, button_pin=None):
        self.identified_contracts, self.not_a_card_texts, self.frames = [], [], 0
        self.press_at_frame, self.button_pin = press_at_frame, button_pin

    def on_identified(self, event):
        self.identified_contracts.append(event.record.contract)

    def on_not_a_card(self, event):
        self.not_a_card_texts.append(event.reading.symbol.text)

    def on_frame(self, event):
        self.frames += 1
        if self.frames == self.press_at_frame:
            self.button_pin.drive_low()  # pressed (the button pulls the pin to ground) ...
            self.button_pin.drive_high()  # ... and released


def run_in_process(tmp_path, central, presentations, *, seed, output, with_button=False):
    """The daemon's own run loop in this process, so a test can watch its events and use the
    operator's button on gpiozero mock pins."""
    from gpiozero.pins.mock import MockFactory

    from device.assembly import build_kiosk
    from device.config import load
    from device.outputs.feedback import Feedback

    video = tmp_path / "counter.avi"
    write_presentation_video(video, presentations, seed=seed)
    feedback = {"pin_factory": "mock", "button_pin": "GPIO5"} if with_button else {}
    cfg = load(video_config(tmp_path, video, central, feedback), environ={})
    kiosk = build_kiosk(cfg, outputs=[output], output_factories=())  # the test's own feedback below, on its mock pins
    factory = MockFactory()
    feedback = None
    if with_button:
        feedback = Feedback.from_config(cfg, on_button=kiosk.new_presentation, pin_factory=factory)
        output.button_pin = factory.pin(cfg.feedback.button_pin)
    try:
        assert kiosk.run(threading.Event(), drain_timeout_s=60) == 0
    finally:
        if feedback is not None:
            feedback.close()
        factory.close()
    return sorted(i["contract"] for i in central.identifications())


def test_daemon_the_button_ends_every_open_presentation(tmp_path, central):
    # Two clients hold their cards up together for 4 s; halfway the operator presses the button:
    # both cards, still in view, are identified again (and only once more).
    told = Told(press_at_frame=50)
    shown = [(Shown.card(CLIENT_A, hold_s=4.0), Shown.card(CLIENT_B, 2, hold_s=4.0))]
    made = run_in_process(tmp_path, central, shown, seed=5, output=told, with_button=True)
    assert made == sorted([CLIENT_A, CLIENT_A, CLIENT_B, CLIENT_B])
    assert sorted(told.identified_contracts) == made


def test_daemon_barcodes_that_are_not_cards_get_not_a_card_once_per_presentation(tmp_path, central):
    # A product and a loyalty card held up together: each gets "not a card" once, none is stored.
    told = Told()
    shown = [(Shown.product_ean13(hold_s=2.5), Shown.foreign_code128(hold_s=2.5))]
    assert run_in_process(tmp_path, central, shown, seed=9, output=told) == []
    assert sorted(told.not_a_card_texts) == sorted([shown[0][0].payload, shown[0][1].payload])


@pytest.fixture(autouse=True)
def _no_global_pin_factory():
    """gpiozero keeps a process-wide default factory; a test here must not leave one behind."""
    from gpiozero import Device

    saved = Device.pin_factory
    yield
    Device.pin_factory = saved
