"""The one backoff: doubling up to a cap, reset after success, full jitter below the ceiling."""

import doctest
import random

import pytest

import device.backoff
from device.backoff import Backoff


class Highest:
    """Full jitter that always draws the top of its range."""

    def uniform(self, low, high):
        return high


def test_reopen_delays_double_up_to_the_cap_and_restart_after_success():
    backoff = Backoff(0.5, 30.0, jitter=False)
    assert [backoff.next() for _ in range(8)] == [0.5, 1, 2, 4, 8, 16, 30, 30]
    assert backoff.attempts == 8
    backoff.reset()
    assert backoff.next() == 0.5


@pytest.mark.parametrize("base, cap", [(1.0, 0.5), (0, 1.0), (-1.0, 1.0)])
def test_a_backoff_that_could_not_wait_is_refused(base, cap):
    with pytest.raises(ValueError, match="base_s"):
        Backoff(base, cap)


def test_the_ceiling_of_a_stored_attempt_number():
    backoff = Backoff(1.0, 8.0, rng=Highest())
    assert [backoff.delay(n) for n in (0, 1, 2, 3, 4, 5)] == [1, 1, 2, 4, 8, 8]
    assert backoff.delay(10_000) == 8  # an attempt count from a months-long outage does not overflow
    assert backoff.attempts == 0  # delay() leaves the counter to the caller


def test_full_jitter_spreads_the_waits_below_the_ceiling():
    backoff = Backoff(1.0, 100.0, rng=random.Random(3))
    waits = [backoff.delay(8) for _ in range(200)]
    assert all(0 <= w <= 100 for w in waits)
    assert min(waits) < 25 and max(waits) > 75  # spread over the range, not bunched at the top


def test_the_docstring_example_runs():
    result = doctest.testmod(device.backoff)
    assert result.attempted and not result.failed
