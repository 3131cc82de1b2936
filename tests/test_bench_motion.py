"""kiosk bench motion: the smear curve's limits, the speed derived from it, and a small run end to end."""

from __future__ import annotations

import re

import numpy as np
from support.config import write_config
from support.kiosk import run_kiosk

from device.tools.bench import motion


def test_smear_read_is_where_the_curve_first_drops_below_the_level():
    assert motion.smear_read({0.0: 1.0, 1.0: 1.0, 2.0: 1.0}) == 2.0
    # Interpolated towards the first smear below the level; what reads again later does not count.
    assert motion.smear_read({0.0: 1.0, 2.0: 1.0, 3.0: 0.5, 4.0: 1.0}) == 2.2
    assert motion.smear_read({0.0: 0.8, 1.0: 1.0}) is None


def test_speed_is_smear_times_module_over_exposure():
    assert motion.fastest_speed_mm_s(4.0, 1000) == 4.0 * 0.42 * 1000
    assert motion.fastest_speed_mm_s(2.0, 20000) == 42.0


def test_frames_are_smeared_along_the_code_only():
    # Same card, same conditions: only the smear differs, and it runs along the barcode's axis,
    # whichever way the card is turned (a profile across the bars flattens, one along them not).
    from device.tools.bench.resolution import _random_card
    from device.tools.synth.card import render_card

    for angle in (0.0, 90.0):
        frames = []
        for smear in (0.0, 4.0):
            rng = np.random.default_rng([3, int(angle)])
            contract, _payload, issue = _random_card(rng)
            frames.append(motion.shoot(render_card(contract, issue), 2.8, angle, smear, rng).astype(np.float32).mean(axis=2))
        sharp, smeared = frames
        across, along = (1, 0) if angle == 0.0 else (0, 1)
        change = [np.abs(np.diff(f, axis=across)).sum() for f in frames]
        unchanged = [np.abs(np.diff(f, axis=along)).sum() for f in frames]
        assert change[1] < 0.7 * change[0], f"not smeared across the bars at {angle} deg"
        assert unchanged[1] > 0.6 * unchanged[0], f"smeared along the bars at {angle} deg"
        assert sharp.shape == smeared.shape == (720, 1280)


def test_small_run_reports_the_curve_and_the_speed_at_the_configured_exposure(tmp_path):
    config = write_config(tmp_path / "kiosk.toml", camera={"exposure": "short", "max_exposure_us": 500})
    args = ("--modules", "2.8", "--smears", "0,4", "--angles", "0", "--per-cell", "2", "--negatives", "1")
    run = run_kiosk("bench", "motion", *args, "--config", str(config), timeout=600)
    assert run.returncode == 0, run.stderr
    rows = [[c.strip() for c in line.split("|")[1:-1]] for line in run.stdout.splitlines() if line.startswith("|")]
    cells = {(r[0], r[1]): r for r in rows}
    assert cells[("2.8", "0")][7] == "100%"  # the pipeline reads the still card
    assert cells[("2.8", "4")][7] == "100%" and cells[("2.8", "4")][6] == "0%"  # smeared: only with the smear model
    assert all(cells[("2.8", s)][9] == "0 / 0 / 0 / 0" for s in ("0", "4"))  # no false card
    assert cells[("2.8", "**read at 90% up to**")][7] == "**4.00**"
    # 4 modules of 0.42 mm in 500 us: 336 cm/s, from camera.max_exposure_us.
    assert re.search(r"\| 500 us \| camera\.max_exposure_us .*\| 336\.0 cm/s \|", run.stdout), run.stdout
    assert re.search(r"machine: .*cores", run.stdout)
    bad = run_kiosk("bench", "motion", "--per-cell", "0")
    assert bad.returncode == 2
