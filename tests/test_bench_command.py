"""`kiosk bench command`: CPU time of a command per install, side by side."""

import argparse
import io
import sys
from pathlib import Path

from device.tools.bench import command


def test_it_measures_each_install_and_reports_a_row_each(tmp_path):
    kiosk = str(Path(sys.executable).with_name("kiosk"))
    other = tmp_path / "kiosk"  # a second "install": the same command by another path
    other.symlink_to(kiosk)
    out = io.StringIO()
    args = argparse.Namespace(kiosk=[kiosk, str(other)], runs=2, words=["--version"])
    assert command.main(args, out) == 0
    rows = [line for line in out.getvalue().splitlines() if line.startswith(("| /", "| " + str(other)))]
    assert len(rows) == 2
    assert all(float(row.split("|")[2]) > 0 for row in rows)  # a real process used real CPU
