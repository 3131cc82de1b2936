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


def run_probe(code: str) -> tuple[set[str], object]:
    """The modules a fresh interpreter has loaded after running ``code``, and what ``code`` left in
    ``result`` (or the code it exited with)."""
    probe = (
        f"import json, sys\nresult = None\ntry:\n    {code}\nexcept SystemExit as e:\n    result = e.code\n"
        "print(json.dumps([sorted(sys.modules), result], default=str), file=sys.__stderr__)"
    )
    run = subprocess.run([sys.executable, "-c", probe], check=False, capture_output=True, text=True, cwd=REPO, timeout=60)
    modules, result = json.loads(run.stderr.strip().splitlines()[-1])
    return set(modules), result


def modules_loaded(code: str) -> set[str]:
    return run_probe(code)[0]


def loaded_by(*words: str) -> set[str]:
    return modules_loaded(f"from device.cli import main; main({list(words)!r})")


def loaded_and_exit_code(*words: str) -> tuple[set[str], object]:
    return run_probe(f"from device.cli import main; result = main({list(words)!r})")


def of(modules: set[str], roots) -> list[str]:
    return sorted(m for m in modules if m.split(".")[0] in roots or any(m == r or m.startswith(r + ".") for r in roots))


@pytest.fixture
def cfg(tmp_path):
    return str(
        write_config(tmp_path / "kiosk.toml", kiosk={"runtime_dir": str(tmp_path / "run")}, outbox={"path": str(tmp_path / "outbox.db")})
    )


@pytest.mark.parametrize(
    "words", [("--help",), ("status",), ("queue", "list"), ("config", "check"), ("config", "show"), ("diag", "--help")], ids=" ".join
)
def test_everyday_commands_load_neither_tooling_nor_opencv(words, cfg):
    args = [*words, "--config", cfg] if words[-1] != "--help" else list(words)
    loaded = loaded_by(*args)
    assert "device.cli" in loaded  # the probe did run the command
    assert of(loaded, TOOLING + HEAVY) == []


def test_the_daemon_loads_no_tooling():
    loaded = modules_loaded("import device.cli.run, device.daemon, device.outputs.feedback, device.camera.file, device.camera.v4l2")
    assert "device.daemon.kiosk" in loaded
    assert of(loaded, TOOLING) == []


#: Camera sources a kiosk really has: a USB webcam by its stable name (what the README recommends),
#: and a CSI camera module. Neither is the default, so both go through the config's checks.
REAL_SOURCES = {
    "usb-by-id": "v4l2:/dev/v4l/by-id/usb-046d_HD_Pro_Webcam_C920_1234ABCD-video-index0",
    "csi": "picamera2:0",
}


@pytest.fixture(params=REAL_SOURCES.values(), ids=REAL_SOURCES.keys())
def realistic_cfg(request, tmp_path):
    """A kiosk as installed: a real camera source, every scan key set, replaced cards refused
    against a list signed by a real key, and an outbox with an identification in it."""
    from device.card import Card
    from device.outbox import Outbox
    from device.revocations.document import generate_key_pair

    key = tmp_path / "central.pub"
    key.write_bytes(generate_key_pair()[1])
    with Outbox(tmp_path / "outbox.db", kiosk_id="k-1") as box:
        box.commit(Card("v1", "0012345678", 1), symbology="Code128", decoder="zxing-cpp")
    return str(write_config(
        tmp_path / "kiosk.toml",
        kiosk={"id": "k-1", "runtime_dir": str(tmp_path / "run")},
        camera={"source": request.param, "focus": "manual", "focus_dioptres": 5.0},
        scan={"decoder": "pyzbar", "symbologies": ["Code128", "EAN13"], "card_formats": ["v1"]},
        outbox={"path": str(tmp_path / "outbox.db")},
        api={"url": "https://central.example.net"},
        revocations={"enabled": True, "public_key_file": str(key)},
    ))  # fmt: skip


#: What each everyday command exits with on that kiosk with its daemon stopped: status says it is
#: not healthy (1); the others do their job (0). A refusal of the config would be 78.
EVERYDAY = {("status",): 1, ("queue", "list"): 0, ("config", "check"): 0, ("config", "show"): 0}


@pytest.mark.parametrize("words", EVERYDAY, ids=" ".join)
def test_everyday_commands_on_a_real_kiosks_config_load_no_opencv(words, realistic_cfg):
    loaded, exit_code = loaded_and_exit_code(*words, "--config", realistic_cfg)
    assert exit_code == EVERYDAY[words]  # the command did its work, past the config's checks
    assert of(loaded, TOOLING + HEAVY) == []


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
