"""The benchmark commands run end to end on small inputs and report what they promise.

(What they measure is recorded in docs/BENCHMARKS.md; here only that they work and count right.)
"""

import re

import cv2
from support.cards import card_photo, contracts, empty_counter
from support.kiosk import run_kiosk


def test_bench_loop_compares_the_pipeline_with_raw_zxing_on_the_same_frames(tmp_path):
    video = tmp_path / "v.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (960, 600))
    for image in [empty_counter()] * 20 + [card_photo(contracts(1)[0])] * 5:
        writer.write(image)
    writer.release()
    run = run_kiosk("bench", "loop", "--video", str(video), "--metrics-rounds", "1", "--pace", "fast")
    assert run.returncode == 0, run.stdout + run.stderr[-2000:]
    rows = {
        line.split()[0]: line.split() for line in run.stdout.splitlines() if line.startswith(("pipeline ", "raw ")) and " / " not in line
    }
    assert rows["pipeline"][1] == "25" and rows["raw"][4] == "25"
    skipped = int(rows["pipeline"][5].rstrip("%"))
    assert 50 <= skipped < 100  # the unchanged empty frames were skipped, the card's were not all
    assert re.search(r"pipeline CPU / raw zxing-cpp CPU: [\d.]+x", run.stdout)
    # The daemon side by side with metrics.textfile off and on: same frames, files written only when on.
    daemon = dict(re.findall(r"^  metrics (off|on) +1 runs, 25 frames: mean [\d.]+ ms, .*, (\d+) files written$", run.stdout, re.M))
    assert daemon.keys() == {"off", "on"}, run.stdout
    assert daemon["off"] == "0" and int(daemon["on"]) >= 1
    assert re.search(r"metrics on / off, mean scan-loop time per frame: [\d.]+x", run.stdout)


def test_bench_idle_reports_cpu_share_and_memory_samples(tmp_path):
    run = run_kiosk("bench", "idle", "--seconds", "1", "--frames", "300", "--size", "320x240", "--videos", "0", timeout=300)
    assert run.returncode == 0, run.stderr
    rows = re.findall(r"^(before|after) .*: real time: 1 s, (\d+) frames .* (\d+) decoded in full; .*% of one core$", run.stdout, re.M)
    assert [label for label, _, _ in rows] == ["before", "after"]
    (_, frames_before, full_before), (_, frames_after, full_after) = rows
    assert int(full_before) == int(frames_before) > 0  # before: every frame decoded in full
    assert int(full_after) < int(frames_after)  # after: the frames the gate skipped were not
    samples = re.findall(r"^\s+(\d+)\s+([\d.]+)$", run.stdout, re.M)
    assert [int(n) for n, _ in samples][-1] == 300
    assert "growth after warm-up" in run.stdout


def test_bench_revocations_syncs_a_complete_list_and_a_delta_and_counts_right(tmp_path):
    import json

    run = run_kiosk(
        "bench",
        "revocations",
        "--dir",
        str(tmp_path),
        "--contracts",
        "3000",
        "--delta",
        "20",
        "--checks",
        "400",
        "--frames",
        "5",
        "--rounds",
        "1",
        "--json",
        timeout=600,
    )
    assert run.returncode == 0, run.stderr
    data = json.loads(run.stdout.strip().splitlines()[-1])
    assert (data["complete"]["contracts"], data["steps"]["verified"]) == (3000, True)
    assert (data["delta_sync"]["kind"], data["delta_sync"]["contracts"]) == ("applied", 20)
    assert (data["check"]["checks"], data["check"]["refused"]) == (400, 200)
    assert data["frames"]["frames"] == 5 and data["frames"]["syncs_meanwhile"] >= 1
    assert {"alone", "during_sync_in_daemon", "during_sync"} <= data["frames"].keys()


def test_bench_requests_floods_the_running_daemon_and_reports_both_phases():
    run = run_kiosk("bench", "requests", "--hostile", "8", "--valid", "20", "--seconds", "2", timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    for text in ("quiet ", "attacked ", "frame rate attacked/quiet", "kiosk diag camera", "(answered)", "'ignored': 8"):
        assert text in run.stdout, run.stdout


def test_bench_preview_holds_slow_connections_and_reports_descriptors():
    run = run_kiosk("bench", "preview", "--connections", "50", "--seconds", "2", timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    for text in ("quiet ", "attacked ", "descriptors at most", "let go at the header deadline"):
        assert text in run.stdout, run.stdout
