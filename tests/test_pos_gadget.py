"""The USB keyboard gadget on a fake sysfs tree: what the kiosk writes into configfs, and what it says is missing.

The fake tree (``$KIOSK_SYSFS_PREFIX``) holds ``/sys/kernel/config/usb_gadget`` as a plain folder,
``/sys/class/udc`` with or without a controller, and the device tree's model. What these tests
check is what is written, where, in which order of folders, and what is read back: every
attribute's bytes (the report descriptor against the kernel's Documentation/usb/gadget_hid.rst,
copied here by hand as hex, not from the module), the function's link into the configuration,
the controller's name in ``UDC``.

What they cannot check is the kernel's side. On real configfs ``mkdir`` of a gadget makes its
attributes and its ``configs``/``functions``/``strings`` folders, writing ``UDC`` enumerates the
gadget on the host, and the kernel refuses a bad value; in a plain folder those are only files
and folders. That the POS then sees a keyboard is checked on a Pi, by hand (docs/POS.md).

The boot unit is checked with ``systemd-analyze verify`` like kiosk.service (tests/test_systemd.py).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from test_systemd import needs_systemd_analyze, parse_unit

from device.outputs.pos import gadget
from device.outputs.pos.gadget import GadgetError, check_host, create_gadget, main, remove_gadget
from device.outputs.pos.udc import NoUdc
from device.sysfs import SYSFS_PREFIX_ENV

REPO = Path(__file__).resolve().parent.parent
UNIT = REPO / "systemd" / "kiosk-usb-keyboard.service"
PYTHON = "/opt/kiosk/venv/bin/python"

#: Documentation/usb/gadget_hid.rst's keyboard report descriptor (63 bytes), typed in from the kernel's page.
KERNEL_DESCRIPTOR = bytes.fromhex(
    "05010906a101050719e029e71500250175019508810295017508810395057501050819012905910295017503910395067508150025650507190029658100c0"
)
UDC = "fe980000.usb"
PI4 = "Raspberry Pi 4 Model B Rev 1.4"


def fake_sys(root: Path, *, model: str = PI4, udc: str | None = UDC, libcomposite: bool = True) -> Path:
    """A fake /sys under ``root``: the board's model (NUL-terminated, as the firmware writes it), the
    device controllers, configfs's usb_gadget folder when libcomposite is loaded."""
    base = root / "sys/firmware/devicetree/base"
    base.mkdir(parents=True)
    (base / "model").write_bytes(model.encode() + b"\0")
    (base / "serial-number").write_bytes(b"10000000abcdef01\0")
    (root / "sys/class/udc").mkdir(parents=True)
    if udc:
        (root / "sys/class/udc" / udc).mkdir()
    (root / "sys/kernel/config").mkdir(parents=True)
    if libcomposite:
        (root / "sys/kernel/config/usb_gadget").mkdir()
    return root / "sys/kernel/config/usb_gadget/kiosk"


@pytest.fixture
def sys_root(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv(SYSFS_PREFIX_ENV, str(tmp_path))
    return tmp_path


def tree(root: Path) -> dict[str, bytes | str]:
    """Every file (its bytes) and link (``-> target``, relative to ``root``) under ``root``."""
    found: dict[str, bytes | str] = {}
    for path in sorted(root.rglob("*")):
        name = path.relative_to(root).as_posix()
        if path.is_symlink():
            found[name] = "-> " + Path(os.readlink(path)).relative_to(root).as_posix()
        elif path.is_file():
            found[name] = path.read_bytes()
    return found


def stamps(root: Path) -> dict[str, int]:
    return {p.relative_to(root).as_posix(): p.lstat().st_mtime_ns for p in root.rglob("*")}


def no_module() -> None:
    raise AssertionError("libcomposite is loaded in this tree: nothing should load it")


def test_create_writes_the_keyboard_gadget_and_nothing_else(sys_root):
    kiosk = fake_sys(sys_root)
    assert create_gadget(load_module=no_module) == UDC
    assert len(KERNEL_DESCRIPTOR) == 63
    assert tree(kiosk) == {
        "idVendor": b"0x1d6b\n",  # the Linux Foundation
        "idProduct": b"0x0104\n",  # Multifunction Composite Gadget
        "bcdDevice": b"0x0100\n",
        "bcdUSB": b"0x0200\n",
        "strings/0x409/manufacturer": b"Counter kiosk\n",
        "strings/0x409/product": b"Counter kiosk keyboard\n",
        "strings/0x409/serialnumber": b"10000000abcdef01\n",  # the board's own
        "configs/c.1/strings/0x409/configuration": b"Boot keyboard\n",
        "configs/c.1/MaxPower": b"100\n",
        "functions/hid.usb0/protocol": b"1\n",  # keyboard
        "functions/hid.usb0/subclass": b"1\n",  # boot interface
        "functions/hid.usb0/report_length": b"8\n",
        "functions/hid.usb0/report_desc": KERNEL_DESCRIPTOR,
        "configs/c.1/hid.usb0": "-> functions/hid.usb0",
        "UDC": f"{UDC}\n".encode(),
    }
    # One function, one configuration: no storage, network or serial function beside the keyboard.
    assert os.listdir(kiosk / "functions") == ["hid.usb0"]
    assert os.listdir(kiosk / "configs") == ["c.1"]


def test_a_second_create_changes_nothing(sys_root):
    kiosk = fake_sys(sys_root)
    create_gadget(load_module=no_module)
    before, written = stamps(kiosk), tree(kiosk)
    assert create_gadget(load_module=no_module) == UDC
    assert (stamps(kiosk), tree(kiosk)) == (before, written)


def test_a_half_made_gadget_is_completed(sys_root):
    kiosk = fake_sys(sys_root)
    (kiosk / "functions/hid.usb0").mkdir(parents=True)
    (kiosk / "functions/hid.usb0/protocol").write_text("2\n")  # an earlier try stopped part way
    create_gadget(load_module=no_module)
    assert (kiosk / "functions/hid.usb0/protocol").read_text() == "1\n"
    assert (kiosk / "UDC").read_text() == f"{UDC}\n"


def test_remove_undoes_create_and_a_second_remove_does_nothing(sys_root):
    kiosk = fake_sys(sys_root)
    create_gadget(load_module=no_module)
    assert remove_gadget() is True
    assert not kiosk.exists()
    assert os.listdir(kiosk.parent) == []  # usb_gadget itself stays: it is the kernel's
    assert remove_gadget() is False


def test_another_function_in_the_gadget_is_refused(sys_root):
    kiosk = fake_sys(sys_root)
    (kiosk / "functions/mass_storage.usb0").mkdir(parents=True)
    with pytest.raises(GadgetError, match=r"mass_storage\.usb0 besides the keyboard"):
        create_gadget(load_module=no_module)
    assert not (kiosk / "UDC").exists()


def test_a_failing_step_names_its_path(sys_root):
    kiosk = fake_sys(sys_root)
    (kiosk / "UDC").mkdir(parents=True)  # a folder where the attribute goes: the write fails
    with pytest.raises(GadgetError) as failed:
        create_gadget(load_module=no_module)
    assert str(failed.value).startswith(f"{kiosk / 'UDC'}: could not bind to the device controller {UDC}")


def test_libcomposite_is_loaded_when_configfs_has_no_usb_gadget_folder(sys_root):
    fake_sys(sys_root, libcomposite=False)
    loaded = []

    def load() -> None:  # as modprobe does: the kernel makes the folder
        loaded.append(True)
        (sys_root / "sys/kernel/config/usb_gadget").mkdir()

    assert create_gadget(load_module=load) == UDC
    assert loaded == [True]


def test_nothing_is_written_on_a_machine_without_a_controller(sys_root):
    fake_sys(sys_root, udc=None)
    with pytest.raises(NoUdc, match="dtoverlay=dwc2"):
        create_gadget(load_module=no_module)
    assert os.listdir(sys_root / "sys/kernel/config/usb_gadget") == []


def test_a_pi_4_with_its_controller_and_libcomposite_lacks_nothing(sys_root):
    fake_sys(sys_root)
    assert check_host() == []


@pytest.mark.parametrize(
    ("model", "says"),
    [
        (PI4, ["dtoverlay=dwc2 to /boot/firmware/config.txt", "the USB-C power port of this Raspberry Pi 4"]),
        ("Raspberry Pi 5 Model B Rev 1.0", ["dtoverlay=dwc2,dr_mode=peripheral", "the USB-C power port"]),
        ("Raspberry Pi Zero 2 W Rev 1.0", ["dtoverlay=dwc2 to /boot/firmware/config.txt", 'micro-USB port marked "USB"']),
        ("Raspberry Pi 3 Model B Plus Rev 1.3", ["a Raspberry Pi 3 Model B Plus Rev 1.3 cannot be", "Pi 4, Pi 5 or Zero 2 W"]),
        ("Raspberry Pi 2 Model B Rev 1.1", ["cannot be a USB keyboard"]),
        ("", ["model unknown", "dtoverlay=dwc2", "a Pi 3, 3B+ or 2 cannot"]),
    ],
)
def test_without_a_controller_the_model_says_what_to_do(sys_root, model, says):
    fake_sys(sys_root, model=model, udc=None)
    (line,) = check_host()
    for words in says:
        assert words in line
    assert ("dtoverlay" in line) == ("cannot be a USB keyboard:" not in line)  # no overlay line for a Pi 3


def test_without_libcomposite_the_line_says_modprobe(sys_root):
    fake_sys(sys_root, libcomposite=False)
    (line,) = check_host()
    assert "the libcomposite module is not loaded" in line and "sudo modprobe libcomposite" in line


def test_the_command_line_exit_codes(sys_root, capsys):
    kiosk = fake_sys(sys_root)
    assert main(["check"]) == 0 and f"ok: USB device controller {UDC}" in capsys.readouterr().out
    assert main(["create"]) == 0 and (kiosk / "UDC").read_text() == f"{UDC}\n"
    assert main(["remove"]) == 0 and not kiosk.exists()
    (kiosk / "UDC").mkdir(parents=True)
    assert main(["create"]) == gadget.EXIT_CANTCREAT and f"error: {kiosk / 'UDC'}: could not bind" in capsys.readouterr().err


def test_the_command_line_on_a_pi_3(sys_root, capsys):
    fake_sys(sys_root, model="Raspberry Pi 3 Model B Rev 1.2", udc=None)
    assert main(["check"]) == gadget.EXIT_UNAVAILABLE
    assert "missing: a Raspberry Pi 3 Model B Rev 1.2 cannot be a USB keyboard" in capsys.readouterr().err
    assert main(["create"]) == gadget.EXIT_UNAVAILABLE
    assert "cannot be a USB keyboard" in capsys.readouterr().err


def test_the_module_runs_as_the_unit_runs_it(sys_root):
    """``python -m device.outputs.pos.gadget``, as ExecStart= has it, in a child process."""
    fake_sys(sys_root, udc=None)
    result = subprocess.run(
        [str(REPO / ".venv/bin/python"), "-m", "device.outputs.pos.gadget", "check"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        env={**os.environ, SYSFS_PREFIX_ENV: str(sys_root)},
    )
    assert result.returncode == gadget.EXIT_UNAVAILABLE and "dtoverlay=dwc2" in result.stderr, result.stderr


def test_the_unit_creates_the_gadget_before_the_kiosk_once_configfs_is_mounted():
    unit = parse_unit(UNIT.read_text())
    assert unit["Service"]["Type"] == ["oneshot"] and unit["Service"]["RemainAfterExit"] == ["yes"]
    assert unit["Service"]["ExecStart"] == [f"{PYTHON} -m device.outputs.pos.gadget create"]
    assert unit["Service"]["ExecStop"] == [f"{PYTHON} -m device.outputs.pos.gadget remove"]
    assert unit["Unit"]["Before"] == ["kiosk.service"] and unit["Unit"]["After"] == ["sys-kernel-config.mount"]
    assert unit["Install"]["WantedBy"] == ["multi-user.target"]


@needs_systemd_analyze
def test_the_unit_verifies_clean(tmp_path):
    # verify insists that the programs exist: point a copy of the unit at a stand-in for the venv's Python.
    stand_in = tmp_path / "python"
    stand_in.write_text("#!/bin/sh\nexit 0\n")
    stand_in.chmod(0o755)
    copy = tmp_path / UNIT.name
    copy.write_text(UNIT.read_text().replace(PYTHON, str(stand_in)))
    result = subprocess.run(["systemd-analyze", "verify", str(copy)], check=False, capture_output=True, text=True, timeout=60)
    output = result.stdout + result.stderr
    assert result.returncode == 0 and "kiosk-usb-keyboard" not in output, output


def test_install_sh_offers_the_usb_keyboard():
    result = subprocess.run(["bash", str(REPO / "install.sh"), "--help"], check=False, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0 and "--usb-keyboard" in result.stdout
    assert "systemd/kiosk-usb-keyboard.service" in (REPO / "install.sh").read_text()
