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
    args = argparse.Namespace(kiosk=[kiosk, str(other)], runs=2, words=["--version"], baseline=None)
    assert command.main(args, out) == 0
    rows = [line for line in out.getvalue().splitlines() if line.startswith(("| /", "| " + str(other)))]
    assert len(rows) == 2
    assert all(float(row.split("|")[2]) > 0 for row in rows)  # a real process used real CPU


def test_a_baseline_is_timed_in_the_same_rounds_and_each_median_compared_to_it():
    kiosk = str(Path(sys.executable).with_name("kiosk"))
    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    baseline = ["--baseline", "import json, sqlite3"]
    args = parser.parse_args(["--kiosk", kiosk, "--runs", "2", *baseline, "--", "config", "show", "--config", "/nonexistent"])
    assert args.words == ["config", "show", "--config", "/nonexistent"]  # the command's own options pass through
    out = io.StringIO()
    assert command.main(args, out) == 0
    header, _, kiosk_row, python_row = out.getvalue().splitlines()[1:]
    assert header.endswith("| x baseline |")
    assert kiosk_row.startswith(f"| {kiosk} |") and python_row.startswith(f'| {sys.executable} -c "import json, sqlite3" |')
    assert python_row.endswith("| 1.0 |")  # the baseline is 1x itself
    assert float(kiosk_row.split("|")[-2]) > 0  # a multiple of the baseline's median, whatever the machine's load
