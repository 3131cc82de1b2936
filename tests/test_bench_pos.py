"""`kiosk bench pos` runs end to end on a tiny video and reports both rows (the numbers are in docs/BENCHMARKS.md)."""

import re

from support.kiosk import run_kiosk


def test_bench_pos_runs_none_and_keyboard_side_by_side_and_types_each_identification(tmp_path):
    run = run_kiosk(
        "bench", "pos", "--cards", "2", "--size", "640x360", "--fps", "10", "--pace", "fast", "--key-delay-ms", "2", timeout=300
    )
    assert run.returncode == 0, run.stdout + run.stderr
    row = (
        r"^  pos\.output = '(\w+)' +(\d+) frames, [\d.]+ fps; "
        r"scan loop per frame mean [\d.]+ ms, median [\d.]+ ms, max [\d.]+ ms; (\d+) identifications$"
    )
    rows = re.findall(row, run.stdout, re.M)
    assert [(mode, identifications) for mode, _, identifications in rows] == [("none", "2"), ("keyboard", "2")], run.stdout
    assert rows[0][1] == rows[1][1], "the same video, frame for frame"
    assert re.search(
        r"commit -> last report of its line read at the FIFO \(2 lines, key_delay_ms 2\): median [\d.]+ ms, max [\d.]+ ms; "
        r"minus the key delays \(42 ms a line\): median -?[\d.]+ ms",
        run.stdout,
    ), run.stdout
    assert "PROBLEM" not in run.stdout
