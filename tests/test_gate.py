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
    gate = Gate(full_look_interval_s=1.0, settle_s=0.3)
    rng = np.random.default_rng(1)
    still = scene()
    reasons = [gate.check(with_noise(still, rng), T0 + i / 30).reason for i in range(61)]
    assert reasons[0] == "first"
    decoded = [i for i, r in enumerate(reasons) if r != "skip"]
    # 30 fps for 2 s: the first frame, then one full look per second.
    assert decoded == [0, 30, 60]
    assert {reasons[30], reasons[60]} == {"full-look"}


def test_a_card_entering_opens_the_gate_and_it_settles_after():
    gate = Gate(full_look_interval_s=10.0, settle_s=0.3)
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
    gate = Gate()
    grey = scene()
    bgr = np.dstack([grey, grey, grey])
    assert gate.check(bgr, T0).reason == "first"
    assert gate.check(bgr, T0 + 0.1).reason == "skip"
    assert gate.check(with_card(bgr, 100), T0 + 0.2).reason == "change"


def test_reset_forgets_the_view():
    gate = Gate()
    gate.check(scene(), T0)
    gate.reset()
    assert gate.check(scene(), T0 + 0.01).reason == "first"


@pytest.mark.parametrize(
    "kwargs",
    [{"full_look_interval_s": 0}, {"settle_s": -1}, {"changed_fraction": 0}, {"changed_fraction": 2}, {"thumb_width": 2}],
)
def test_bad_settings_are_refused(kwargs):
    with pytest.raises(ValueError):
        Gate(**kwargs)
