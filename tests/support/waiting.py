"""Wait on a condition with a deadline: the one way a test synchronises with a thread or a process.

The ceiling is generous because it only matters when something is wrong (a test that passes returns
as soon as the condition holds), and it grows with ``KIOSK_TEST_TIME_SCALE`` (default 1) on a slow
or shared machine: a CI runner that is three times slower than a laptop sets 3::

    KIOSK_TEST_TIME_SCALE=3 .venv/bin/python -m pytest tests/test_service.py

    >>> answers = iter([None, 0, "ready"])
    >>> wait_until(lambda: next(answers), what="the third answer", every_s=0)
    'ready'
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import TypeVar

import pytest

T = TypeVar("T")

#: The environment variable that multiplies every ceiling (a number, 1 unless set).
TIME_SCALE_ENV = "KIOSK_TEST_TIME_SCALE"

#: Seconds a wait gives its condition before the test fails, on a machine of scale 1.
DEFAULT_TIMEOUT_S = 30.0


def time_scale(environ=os.environ) -> float:
    """The factor of every ceiling, from :data:`TIME_SCALE_ENV`.

    >>> time_scale({"KIOSK_TEST_TIME_SCALE": "3"})
    3.0
    """
    text = environ.get(TIME_SCALE_ENV, "1")
    try:
        scale = float(text)
    except ValueError:
        scale = 0.0
    if not scale > 0:
        raise ValueError(f"{TIME_SCALE_ENV} must be a positive number, got {text!r}")
    return scale


def scaled(seconds: float) -> float:
    """``seconds`` on this machine: what a ceiling of ``seconds`` on a machine of scale 1 becomes."""
    return seconds * time_scale()


def wait_until(
    condition: Callable[[], T],
    *,
    what: str,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    every_s: float = 0.02,
    detail: Callable[[], str] | None = None,
) -> T:
    """``condition()``'s first truthy value, asked every ``every_s`` seconds; the test fails naming
    ``what`` if none came within ``timeout_s`` (scaled, see the module docstring), followed by
    ``detail()`` when given (the last status seen, a log)."""
    ceiling_s = scaled(timeout_s)
    deadline = time.monotonic() + ceiling_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {ceiling_s:g} s waiting for {what}" + (f"; {detail()}" if detail else ""))
        time.sleep(every_s)
