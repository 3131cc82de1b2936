"""device.vision.gate: decode on change, after it settles, and on a periodic full look."""

from __future__ import annotations

import numpy as np
import pytest

from device.vision.gate import Gate

# Far from time.monotonic() on purpose: the gate must use the frames' own timestamps.
T0 = 5_000_000.0


def scene(seed: int = 0, size=(480, 640)) -> np.ndarray:
    """A static, textured counter (grey)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(60, 200, (size[0] // 40, size[1] // 40), dtype=np.uint8)
    return np.kron(small, np.ones((40, 40), np.uint8))


def with_noise(image: np.ndarray, rng: np.random.Generator, sigma: float = 3.0) -> np.ndarray:
    """Sensor noise: what changes between two frames of a still scene."""
    return np.clip(image + rng.normal(0, sigma, image.shape), 0, 255).astype(np.uint8)


def with_card(image: np.ndarray, x: int) -> np.ndarray:
    out = image.copy()
    out[150:300, x : x + 240] = 245
    return out


def test_static_scene_is_skipped_until_the_full_look():
    gate = Gate(full_look_interval_s=1.0, settle_s=0.3, quiet_look_every=1)
    rng = np.random.default_rng(1)
    still = scene()
    reasons = [gate.check(with_noise(still, rng), T0 + i / 30).reason for i in range(61)]
    assert reasons[0] == "first"
    assert set(reasons[1:]) == {"skip", "full-look"}  # every frame looked at
    decoded = [i for i, r in enumerate(reasons) if r != "skip"]
    # 30 fps for 2 s: the first frame, then one full look per second.
    assert decoded == [0, 30, 60]
    assert {reasons[30], reasons[60]} == {"full-look"}


def test_a_card_entering_opens_the_gate_and_it_settles_after():
    gate = Gate(full_look_interval_s=10.0, settle_s=0.3, quiet_look_every=1)
    background = scene()
    assert gate.check(background, T0).decode
    assert not gate.check(background, T0 + 0.1).decode
    # The card slides in over 5 frames: every frame changed.
    t = T0 + 0.2
    for x in (0, 80, 160, 240, 320):
        decision = gate.check(with_card(background, x), t)
        assert (decision.decode, decision.reason) == (True, "change")
        assert decision.changed > 0.01
        t += 1 / 30
    # Held still: a few more looks while it settles (the sharpest frames), then skipped.
    still = with_card(background, 320)
    reasons = [gate.check(still, t + i / 30).reason for i in range(1, 16)]
    assert reasons[:8] == ["settle"] * 8
    assert reasons[-1] == "skip"


def test_a_card_held_perfectly_still_is_looked_at_again():
    gate = Gate(full_look_interval_s=0.5)
    still = with_card(scene(), 200)
    gate.check(still, T0)
    assert [gate.check(still, T0 + dt).decode for dt in (0.1, 0.4, 0.49)] == [False, False, False]
    assert gate.check(still, T0 + 0.5).reason == "full-look"


def test_time_going_backwards_or_a_new_frame_size_restarts():
    gate = Gate()
    gate.check(scene(), T0)
    assert gate.check(scene(), T0 - 5.0).reason == "first"
    assert gate.check(scene(size=(720, 1280)), T0 + 1.0).reason == "first"


def test_colour_and_grey_frames_both_work():
    gate = Gate(quiet_look_every=1)
    grey = scene()
    bgr = np.dstack([grey, grey, grey])
    assert gate.check(bgr, T0).reason == "first"
    assert gate.check(bgr, T0 + 0.1).reason == "skip"
    assert gate.check(with_card(bgr, 100), T0 + 0.2).reason == "change"


def test_a_quiet_view_is_looked_at_one_frame_in_n_and_the_full_looks_stay_on_time():
    rng = np.random.default_rng(1)
    still = scene()
    frames = [with_noise(still, rng) for _ in range(61)]
    for every in (2, 3):
        gate = Gate(full_look_interval_s=1.0, settle_s=0.3, quiet_look_every=every)
        reasons = [gate.check(image, T0 + i / 30).reason for i, image in enumerate(frames)]
        # 30 fps for 2 s: the same frames decoded as when every frame is looked at ...
        assert [i for i, r in enumerate(reasons) if r not in ("skip", "quiet")] == [0, 30, 60]
        # ... and between them only one in `every` looked at (the others: no thumbnail at all).
        looked = [i for i, r in enumerate(reasons) if r != "quiet"]
        assert looked[:4] == [0, every, 2 * every, 3 * every]
        assert reasons.count("quiet") >= 60 * (every - 1) // every - 2


@pytest.mark.parametrize("every", [2, 3])
@pytest.mark.parametrize("enters", range(40, 44))
def test_a_card_entering_a_quiet_view_is_let_through_within_n_minus_1_frames(enters, every):
    """Whichever frame it enters on: then every frame is looked at while it moves and settles."""
    gate = Gate(full_look_interval_s=10.0, settle_s=0.3, quiet_look_every=every)
    rng = np.random.default_rng(2)
    background = scene()
    xs = [None] * enters + [0, 80, 160, 240, 320] + [320] * 30
    decisions = [gate.check(with_noise(background if x is None else with_card(background, x), rng), T0 + i / 30) for i, x in enumerate(xs)]
    assert "quiet" in {d.reason for d in decisions[:enters]}  # the empty counter was quiet
    assert not any(d.decode for d in decisions[1:enters])
    first = next(i for i, d in enumerate(decisions) if d.decode and i > 0)
    assert enters <= first <= enters + every - 1
    # From the first change on: every frame looked at while it moves, then while it settles.
    assert all(d.reason == "change" for d in decisions[first : enters + 5])
    settle_end = enters + 4 + 9  # 0.3 s at 30 fps after the last move
    assert all(d.decode for d in decisions[first:settle_end])
    assert "quiet" not in {d.reason for d in decisions[first : settle_end + 1]}
    assert decisions[-1].reason in ("skip", "quiet") and "quiet" in {d.reason for d in decisions[settle_end:]}


@pytest.mark.parametrize("every", [2, 4])
def test_a_card_held_perfectly_still_gets_its_full_look_in_a_quiet_view(every):
    """The full look falls due on a frame the quiet view would not look at (frame 15: looked at
    are 0, 2, 4, ... or 0, 4, 8, ...): it is looked at anyway, on time."""
    gate = Gate(full_look_interval_s=0.5, settle_s=0.0, quiet_look_every=every)
    still = with_card(scene(), 200)
    reasons = [gate.check(still, T0 + i / 30).reason for i in range(32)]
    assert [i for i, r in enumerate(reasons) if r == "full-look"] == [15, 30]
    assert reasons[14] == "quiet" or reasons[13] == "quiet"  # a quiet view up to then


def test_a_clock_going_backwards_in_a_quiet_view_is_looked_at():
    gate = Gate(quiet_look_every=4)
    gate.check(scene(), T0)
    assert gate.check(scene(), T0 + 0.1).reason == "quiet"
    assert gate.check(scene(), T0 - 5.0).reason == "first"


def test_the_daemons_gate_takes_quiet_look_every_from_the_config(tmp_path):
    from device.config import load
    from device.pipeline import Pipeline

    (tmp_path / "kiosk.toml").write_text("[scan]\nquiet_look_every = 3\n")
    assert Pipeline.from_config(load(tmp_path / "kiosk.toml", environ={})).scanner.gate.quiet_look_every == 3


def test_reset_forgets_the_view():
    gate = Gate()
    gate.check(scene(), T0)
    gate.reset()
    assert gate.check(scene(), T0 + 0.01).reason == "first"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"full_look_interval_s": 0},
        {"settle_s": -1},
        {"changed_fraction": 0},
        {"changed_fraction": 2},
        {"thumb_width": 2},
        {"quiet_look_every": 0},
    ],
)
def test_bad_settings_are_refused(kwargs):
    with pytest.raises(ValueError):
        Gate(**kwargs)
