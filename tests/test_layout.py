"""Production and tooling apart: what each command loads.

The daemon and the technician commands must not load synthetic media, benchmarks, the demo or the
reference central; the commands a technician types all day (`status`, `queue`, `config`, `--help`)
must not even load OpenCV or numpy (seconds of CPU on a Pi).
"""

import json
import subprocess
import sys

import pytest
from support.config import write_config
from support.kiosk import REPO

TOOLING = ("device.tools", "central", "PIL", "barcode")
HEAVY = ("cv2", "numpy", "sqlite_utils", "requests")


def modules_loaded(code: str) -> set[str]:
    """The modules a fresh interpreter has loaded after running ``code``."""
    probe = f"import json, sys\ntry:\n    {code}\nexcept SystemExit:\n    pass\nprint(json.dumps(sorted(sys.modules)), file=sys.__stderr__)"
    run = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO, timeout=60)
    return set(json.loads(run.stderr.strip().splitlines()[-1]))


def loaded_by(*words: str) -> set[str]:
    return modules_loaded(f"from device.cli import main; main({list(words)!r})")


def of(modules: set[str], roots) -> list[str]:
    return sorted(m for m in modules if m.split(".")[0] in roots or any(m == r or m.startswith(r + ".") for r in roots))


@pytest.fixture
def cfg(tmp_path):
    return str(write_config(tmp_path / "kiosk.toml", kiosk={"runtime_dir": str(tmp_path / "run")}, outbox={"path": str(tmp_path / "outbox.db")}))


@pytest.mark.parametrize("words", [("--help",), ("status",), ("queue", "list"), ("config", "check"), ("config", "show"), ("diag", "--help")], ids=" ".join)
def test_everyday_commands_load_neither_tooling_nor_opencv(words, cfg):
    args = [*words, "--config", cfg] if words[-1] != "--help" else list(words)
    loaded = loaded_by(*args)
    assert "device.cli" in loaded  # the probe did run the command
    assert of(loaded, TOOLING + HEAVY) == []


def test_the_daemon_loads_no_tooling():
    loaded = modules_loaded("import device.cli.run, device.daemon, device.outputs.feedback, device.camera.file, device.camera.v4l2")
    assert "device.daemon.kiosk" in loaded
    assert of(loaded, TOOLING) == []


def test_tool_commands_still_load_their_tools():
    # The lazy registration must not hide a tool: its own --help builds its options.
    assert "device.tools.bench.decode" in loaded_by("bench", "decode", "--help")


def test_queue_list_on_an_existing_outbox_loads_no_numpy_nor_sqlite_utils(cfg, tmp_path):
    from device.card import Card
    from device.outbox import Outbox

    with Outbox(tmp_path / "outbox.db", kiosk_id="k-1") as box:
        box.commit(Card("v1", "0012345678", 1), symbology="Code128", decoder="zxing-cpp")
    loaded = loaded_by("queue", "list", "--config", cfg)
    assert "device.outbox.store" in loaded  # the outbox was opened, not skipped as missing
    assert of(loaded, TOOLING + HEAVY) == []
