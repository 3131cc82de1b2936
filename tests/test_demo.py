"""`kiosk demo`: the whole path on a rendered counter video, and an exit code that tells the truth.

The demo runs as a real process (it starts the central as another). It renders its video once, in
the module's fixture, and keeps it; the failing run plays that video again instead of rendering.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections import Counter

import pytest
from support.kiosk import REPO, kiosk_cmd

from device.card import CARD_V1
from device.redact import mask_contract
from device.tools.demo import Record, Seen, Verdict, judge, judge_pos
from device.tools.synth.video import PresentationTruth, default_presentations

#: The valid cards of the demo's video.
CONTRACTS = [p.contract for p in default_presentations() if p.is_card]

#: The demo ends by itself (the test waits for that); this only stops a hung one. It is generous
#: for a slow machine: under arm64 emulation the demo took longer than 300 s.
DEMO_DEADLINE_S = 1800


def run_demo(*args, env=None) -> subprocess.CompletedProcess:
    return subprocess.run(kiosk_cmd("demo", *args), capture_output=True, text=True, cwd=REPO, timeout=DEMO_DEADLINE_S, env=env)


def assert_central_stopped(stdout: str) -> None:
    pid = int(re.search(r"central .* \(pid (\d+)", stdout).group(1))
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


@pytest.fixture(scope="module")
def kept_run(tmp_path_factory):
    """One whole demo (rendered video, fast pace), kept: (the finished process, its folder)."""
    folder = tmp_path_factory.mktemp("demo") / "kept"
    return run_demo("--pace", "fast", "--keep", str(folder)), folder


def test_demo_identifies_each_card_once_delivers_it_and_exits_0(kept_run):
    run, folder = kept_run
    assert run.returncode == 0, run.stdout + run.stderr
    out = run.stdout
    for contract in CONTRACTS:
        assert len(re.findall(rf"identified +contract {re.escape(mask_contract(contract))} ", out)) == 1, out
        assert contract not in out  # contracts are masked
    assert len(re.findall(r"delivered +identification", out)) == len(CONTRACTS)
    assert "not a card" in out and "feedback" in out
    summary = out.split("\nSummary\n", 1)[1]
    assert f"identified   {len(CONTRACTS)} of {len(CONTRACTS)} valid cards" in summary
    assert f"delivered    {len(CONTRACTS)} of {len(CONTRACTS)}" in summary
    assert re.search(r"frames from the card entering view to its identification: median \d", summary)
    assert "PASS" in summary
    # The lost card of a re-issued contract is refused once, with its own signal, and its refusal delivered.
    assert len(re.findall(r"REFUSED +contract \*{6}0017 issue 1: card replaced, its current issue is 2", out)) == 1, out
    assert "red LED 2 s + one long beep" in out
    assert len(re.findall(r"delivered +refusal", out)) == 1
    assert "refused      1 of 1 replaced cards shown (1 refusals delivered)" in summary
    assert (folder / "counter.avi").is_file() and (folder / "counter.truth.json").is_file()
    assert_central_stopped(out)


def test_demo_fails_honestly_when_the_central_refuses_a_contract(kept_run, tmp_path):
    _, folder = kept_run
    refused = CONTRACTS[1]
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = {**os.environ, "TMPDIR": str(tmp)}
    run = run_demo("--video", str(folder / "counter.avi"), "--pace", "fast", "--central-reject-contract", refused, env=env)
    assert run.returncode == 1, run.stdout + run.stderr
    fail = run.stdout.split("\nFAIL:\n", 1)[1]
    assert f"({mask_contract(refused)}) was not delivered: the central refused it" in fail
    assert list(tmp.iterdir()) == []  # its temporary folder is gone
    assert_central_stopped(run.stdout)


def test_demo_pos_keyboard_types_exactly_one_line_per_identification(kept_run):
    _, folder = kept_run
    run = run_demo("--video", str(folder / "counter.avi"), "--pace", "fast", "--pos", "keyboard")
    assert run.returncode == 0, run.stdout + run.stderr
    out = run.stdout
    typed = re.findall(r"POS typed +(\S+) \(keyboard, us layout\)", out)
    assert Counter(typed) == Counter(f"{mask_contract(c)}⏎" for c in CONTRACTS), out  # decoded back from the reports, each once
    summary = out.split("\nSummary\n", 1)[1]
    assert f"POS typed    {len(CONTRACTS)} lines for {len(CONTRACTS)} identifications (keyboard, us layout)" in summary
    assert "PASS: " in summary and "the POS received one line per identification" in summary
    assert_central_stopped(out)


def test_keep_refuses_a_folder_that_is_not_empty(kept_run):
    _, folder = kept_run
    run = run_demo("--keep", str(folder))
    assert run.returncode == 2
    assert "new or empty folder" in run.stderr


# --- the judgement, on made-up runs (no video, no processes) ------------------------------------


def _truth(contract: str, enter: int, left: int) -> PresentationTruth:
    return PresentationTruth(CARD_V1.encode(contract, 1), "Code128", "card", True, enter, enter + 3, left - 3, left)


def test_judge_wants_each_card_once_delivered_once_and_nothing_else():
    truths = [_truth("0012345678", 10, 40), _truth("4000000017", 60, 90)]
    good = [Seen(12, "0012345678", 1, "a", 1), Seen(65, "4000000017", 1, "b", 2)]
    delivered = {"a": Record("delivered"), "b": Record("delivered")}
    verdict = judge(truths, good, [], delivered, Counter(a=1, b=1))
    assert verdict.ok and verdict.frames_to_read == [2, 5]

    twice = good + [Seen(70, "4000000017", 1, "c", 3)]
    verdict = judge(truths, twice, [], {**delivered, "c": Record("delivered")}, Counter(a=1, b=1, c=1))
    assert any("identified 2 times" in p for p in verdict.problems)

    missed = judge(truths, good[:1], [], delivered, Counter(a=1))
    assert any("shown but not identified" in p for p in missed.problems)

    stray = judge(truths, good + [Seen(50, "0000009999", 1, "d", 3)], [], {**delivered, "d": Record("delivered")}, Counter(a=1, b=1, d=1))
    assert any("no such valid card was in view" in p for p in stray.problems)

    counted_twice = judge(truths, good, [], delivered, Counter(a=1, b=2))
    assert any("holds it 2 times" in p for p in counted_twice.problems)

    pending = judge(truths, good, [], {"a": Record("delivered"), "b": Record("pending", "connection refused")}, Counter(a=1))
    assert any("not delivered (pending: connection refused)" in p for p in pending.problems)


def test_judge_wants_a_replaced_card_refused_once_and_never_identified():
    truths = [_truth("4000000017", 10, 40)]
    refusal = Seen(12, "4000000017", 1, "r", 1)
    good = judge(
        truths,
        [],
        [],
        {"r": Record("delivered")},
        Counter(),
        replaced={"4000000017": 2},
        refused=[refusal],
        central_refusal_ids=Counter(r=1),
    )
    assert good.ok and (good.replaced_shown, good.replaced_refused, good.refusals_delivered) == (1, 1, 1)

    identified = judge(
        truths, [Seen(12, "4000000017", 1, "a", 1)], [], {"a": Record("delivered")}, Counter(a=1), replaced={"4000000017": 2}
    )
    assert any("refused 0 times" in p for p in identified.problems)
    assert any("no such valid card was in view" in p for p in identified.problems)

    undelivered = judge(
        truths, [], [], {"r": Record("pending")}, Counter(), replaced={"4000000017": 2}, refused=[refusal], central_refusal_ids=Counter()
    )
    assert any("refusal 1" in p and "not delivered" in p for p in undelivered.problems)


def test_judge_pos_wants_one_typed_line_per_identification_in_order():
    identified = [Seen(12, "0012345678", 1, "a", 1), Seen(65, "4000000017", 2, "b", 2)]
    good = Verdict()
    judge_pos(good, ["0012345678\n", "4000000017\n"], identified)
    assert good.ok and good.pos_typed == 2
    for typed in (["0012345678\n"], ["0012345678\n", "0012345678\n", "4000000017\n"], ["4000000017\n", "0012345678\n"]):
        bad = Verdict()
        judge_pos(bad, typed, identified)
        assert bad.problems == [
            f"the POS received {len(typed)} lines for 2 identifications, not one each: typed "
            f"[{', '.join(mask_contract(t[:-1]) + '⏎' for t in typed)}], identified [******5678⏎, ******0017⏎]"
        ]
    undecodable = Verdict()
    judge_pos(undecodable, [], [], error="report 0000ff0000000000 types nothing in the 'us' layout")
    assert undecodable.problems == [
        "the POS received keyboard reports no host would type: report 0000ff0000000000 types nothing in the 'us' layout"
    ]
