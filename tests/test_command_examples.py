"""The example outputs in docs/COMMANDS.md are what the commands print: each `$ kiosk ...`
example is run on real files made here, and its output compared with the page's, line by line.

Where the page shortens a line (`[...]`, `...`) or names a machine's own value (a camera path,
a port, an SSH host), that part of the line is matched loosely; everything else must be exact.
"""

from __future__ import annotations

import re
import signal
import subprocess

import cv2
import numpy as np
import pytest
from support.config import write_config
from support.kiosk import REPO, kiosk_cmd

from device.tools.synth.card import save_card

#: The card of the examples in docs/COMMANDS.md: contract 0012345678, issue 01 (payload LE00123456780168).
CONTRACT, ISSUE = "0012345678", 1


def examples(command: str) -> list[tuple[str, list[str]]]:
    """Each example in docs/COMMANDS.md whose command starts with ``$ {command}``: (the command line, the
    output lines up to the next command or the end of its block)."""
    found = []
    for block in re.findall(r"```sh\n(.*?)```", (REPO / "docs" / "COMMANDS.md").read_text(), re.S):
        lines = block.splitlines()
        for i, line in enumerate(lines):
            if line.startswith(f"$ {command}"):
                output = []
                for after in lines[i + 1 :]:
                    if after.startswith("$ "):
                        break
                    output.append(after)
                found.append((line[2:], output))
    assert found, f"docs/COMMANDS.md has no `$ {command}` example"
    return found


def loose(line: str, **values: str) -> re.Pattern:
    """``line`` as a pattern: exact but for ``[...]``/``...`` (anything) and each value in
    ``values`` (the page's example of a machine's own value) standing for ``values``' pattern."""
    pattern = re.escape(line)
    for shortening in (re.escape("[...]"), re.escape("...")):
        pattern = pattern.replace(shortening, ".*")
    for example, stands_for in values.items():
        pattern = pattern.replace(re.escape(example), stands_for)
    return re.compile(pattern)


@pytest.fixture
def counter_files(tmp_path):
    """card.png (the page's card), counter.avi (a few frames of it) and no missing.jpg."""
    save_card(tmp_path / "card.png", CONTRACT, ISSUE)
    card = cv2.imread(str(tmp_path / "card.png"))
    frame = np.full((720, 1280, 3), 200, np.uint8)
    small = cv2.resize(card, (800, int(800 * card.shape[0] / card.shape[1])), interpolation=cv2.INTER_AREA)
    frame[100 : 100 + small.shape[0], 240 : 240 + small.shape[1]] = small
    video = cv2.VideoWriter(str(tmp_path / "counter.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 5.0, (1280, 720))
    for _ in range(3):
        video.write(np.full((720, 1280, 3), 200, np.uint8))  # an empty counter first: the card from frame 3
    for _ in range(3):
        video.write(frame)
    video.release()
    return tmp_path


def test_the_scan_examples_print_what_the_readme_shows(counter_files):
    for command, expected in examples("kiosk scan"):
        run = subprocess.run(kiosk_cmd(*command.split()[1:]), capture_output=True, text=True, timeout=300, cwd=counter_files)
        printed = run.stdout.splitlines()
        assert len(printed) >= len(expected), (command, printed, run.stderr)
        # The page shows the first line a video gives; the video's other frames may follow it.
        videos = [line for line in expected if '"counter.avi"' in line]
        assert not videos or any(loose(videos[0], **{'"frame": 17': r'"frame": \d+'}).fullmatch(line) for line in printed), (
            command,
            printed,
        )
        others = [line for line in printed if '"counter.avi"' not in line]
        assert others == [line for line in expected if '"counter.avi"' not in line], (command, printed, run.stderr)


def test_the_preview_example_prints_what_the_readme_shows(counter_files):
    ((command, expected),) = examples("sudo kiosk preview")
    cfg = write_config(
        counter_files / "kiosk.toml",
        kiosk={"runtime_dir": str(counter_files / "run")},
        camera={"source": f"file:{counter_files / 'counter.avi'}"},
    )
    proc = subprocess.Popen(kiosk_cmd("preview", "--config", str(cfg)), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
    try:
        printed = [proc.stdout.readline().rstrip("\n") for _ in expected]
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    machine = {
        "v4l2:/dev/v4l/by-id/usb-046d_HD_Pro_Webcam_C920_1234ABCD-video-index0": r"\S+",
        "/run/kiosk/preview.sock": re.escape(str(counter_files / "run" / "preview.sock")),
        "tech@kiosk-riga-07": r"\S+@\S+",
    }
    for want, got in zip(expected, printed, strict=True):
        assert loose(want, **machine).fullmatch(got), (want, got)
