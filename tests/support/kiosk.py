"""The kiosk command as a user runs it: a real subprocess of ``python -m device`` from the checkout.

>>> kiosk_cmd("status", "--json")[1:]
['-m', 'device', 'status', '--json']
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

#: The checkout the tests run from.
REPO = Path(__file__).resolve().parents[2]


def kiosk_cmd(*args) -> list[str]:
    """The kiosk command as a user runs it (the installed entry point's module)."""
    return [sys.executable, "-m", "device", *args]


def run_kiosk(*args, timeout=120, **kwargs) -> subprocess.CompletedProcess:
    """``kiosk *args`` to its end, its output captured as text."""
    return subprocess.run(kiosk_cmd(*args), capture_output=True, text=True, timeout=timeout, cwd=REPO, **kwargs)
