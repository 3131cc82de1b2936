"""install.sh's pieces that need no root: sourced, it only defines its functions."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def run_function(tmp_path, function: str, python3: str) -> subprocess.CompletedProcess:
    """Call ``function`` from install.sh with a fake ``python3`` (a shell script body) first on PATH."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "python3"
    fake.write_text("#!/bin/sh\n" + python3)
    fake.chmod(0o755)
    script = f'source "{REPO / "install.sh"}" && {function}'
    return subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=30, env={"PATH": f"{bin_dir}:/usr/bin:/bin"})


def test_numpy_pin_is_the_system_numpys_version(tmp_path):
    result = run_function(tmp_path, "numpy_constraint", 'echo "some warning" >&2; echo numpy==1.24.2\n')
    assert result.returncode == 0, result.stderr
    assert result.stdout == "numpy==1.24.2\nopencv-python-headless<4.12\n"  # OpenCV 4.12 and later need numpy 2


def test_with_numpy_2_opencv_is_left_free(tmp_path):
    result = run_function(tmp_path, "numpy_constraint", "echo numpy==2.2.4\n")
    assert result.returncode == 0 and result.stdout == "numpy==2.2.4\n", result.stderr


def test_a_system_numpy_that_cannot_be_imported_is_an_error_with_its_reason(tmp_path):
    broken = (
        'echo "Traceback (most recent call last):" >&2\n'
        'echo "ImportError: libopenblas.so.0: cannot open shared object file: No such file or directory" >&2\n'
        "exit 1\n"
    )
    result = run_function(tmp_path, "numpy_constraint", broken)
    assert result.returncode != 0
    assert result.stdout == ""  # no pin written, and no silent skip either
    assert "system numpy" in result.stderr and "libopenblas.so.0: cannot open shared object file" in result.stderr
    assert "python3-numpy" in result.stderr  # what to do about it


def test_sourcing_install_sh_runs_nothing(tmp_path):
    result = subprocess.run(["bash", "-c", f'source "{REPO / "install.sh"}" && echo sourced'], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0 and result.stdout == "sourced\n", result.stderr


def dev_checkout(tmp_path) -> Path:
    """A copy of install.sh and the requirements it names, where ``./install.sh --dev`` can run."""
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    for name in ("install.sh", "requirements.txt", "requirements-dev.txt", "requirements-central.txt"):
        (checkout / name).write_bytes((REPO / name).read_bytes())
    (checkout / "install.sh").chmod(0o755)
    return checkout


def run_dev_install(checkout: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(checkout / "install.sh"), "--dev"], capture_output=True, text=True, timeout=120, cwd=checkout)


def test_a_failing_pip_step_ends_with_the_step_and_pips_error_line(tmp_path):
    checkout = dev_checkout(tmp_path)
    # A venv whose pip fails as pip does when an index lacks a package.
    (checkout / ".venv" / "bin").mkdir(parents=True)
    python = checkout / ".venv" / "bin" / "python"
    python.write_text(
        "#!/bin/sh\n"
        'echo "Collecting opencv-python-headless" >&2\n'
        'echo "ERROR: Could not find a version that satisfies the requirement opencv-python-headless" >&2\n'
        'echo "ERROR: No matching distribution found for opencv-python-headless" >&2\n'
        "exit 1\n"
    )
    python.chmod(0o755)
    result = run_dev_install(checkout)
    assert result.returncode == 1, result.stdout + result.stderr
    steps = [line for line in result.stdout.splitlines() if line.startswith("install.sh: [")]
    assert steps == [
        "install.sh: [1/4] system packages for the kiosk and its tests (apt)",
        "install.sh: [2/4] python 3.11 with venv",
        "install.sh: [3/4] virtual environment .venv",
        "install.sh: [4/4] python packages and test tools into .venv (about 30 s)",
    ], result.stdout
    last = result.stderr.splitlines()[-1]
    assert last == (
        "install.sh: error: python packages and test tools into .venv (about 30 s) failed: "
        "ERROR: No matching distribution found for opencv-python-headless"
    ), result.stderr
    assert "  | Collecting opencv-python-headless" in result.stderr  # the tail of pip's output, to see where it stopped
    assert "done" not in result.stdout


def test_a_venv_that_cannot_be_made_names_the_step_and_venvs_reason(tmp_path):
    checkout = dev_checkout(tmp_path)
    (checkout / ".venv").write_text("a file where the venv should go\n")
    result = run_dev_install(checkout)
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stdout.splitlines()[-1] == "install.sh: [3/4] virtual environment .venv", result.stdout
    last = result.stderr.splitlines()[-1]
    assert last.startswith("install.sh: error: virtual environment .venv failed: "), result.stderr
    assert ".venv" in last.split("failed: ", 1)[1]  # venv's own reason, naming the path


def dev_packages() -> list[str]:
    result = subprocess.run(
        ["bash", "-c", f'source "{REPO / "install.sh"}" && printf "%s\\n" "${{DEV_PACKAGES[@]}}"'],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return result.stdout.split()


def test_dev_install_brings_every_package_a_test_names():
    """What a test's skip reason tells to install, or installs itself (debian_root.ensure_tool), comes
    with ./install.sh --dev: a CI or a newcomer that ran it never skips for lack of it."""
    named = set()
    for path in (REPO / "tests").rglob("*.py"):
        text = path.read_text()
        named.update(re.findall(r"apt-get install ([a-z0-9][a-z0-9.+-]+)", text))
        named.update(re.findall(r'ensure_tool\("[^"]+", "([a-z0-9.+-]+)"\)', text))
    assert {"libfuse3-3", "shellcheck", "chromium", "debootstrap", "systemd-container"} <= named  # the search still finds them
    assert sorted(named - set(dev_packages())) == []


def dev_packages_as_a_user(tmp_path, installed: set[str], zbar: bool) -> subprocess.CompletedProcess:
    """install.sh's dev_system_packages as uid 1000, with dpkg knowing only ``installed`` and ldconfig
    listing libzbar only when ``zbar``."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    known = " ".join(sorted(installed))
    fakes = {
        "id": "echo 1000",
        "dpkg-query": f'case " {known} " in *" $3 "*) echo "install ok installed" ;; *) exit 1 ;; esac',
        "ldconfig": "echo '\tlibzbar.so.0 (libc6,x86-64) => /usr/lib/libzbar.so.0'" if zbar else "true",
        "apt-get": "echo apt-get must not run >&2; exit 1",
    }
    for name, body in fakes.items():
        (bin_dir / name).write_text(f"#!/bin/sh\n{body}\n")
        (bin_dir / name).chmod(0o755)
    script = f'source "{REPO / "install.sh"}" && dev_system_packages'
    return subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=30, env={"PATH": f"{bin_dir}:/usr/bin:/bin"})


def test_without_root_the_missing_test_tools_are_named_with_one_command_to_install_them(tmp_path):
    installed = set(dev_packages()) - {"libfuse3-3", "chromium"}
    result = dev_packages_as_a_user(tmp_path, installed, zbar=True)
    assert result.returncode == 0, result.stderr
    assert "install.sh: warning: the tests need libfuse3-3 chromium" in result.stdout
    assert "only root can install them: sudo apt-get install -y --no-install-recommends libfuse3-3 chromium\n" in result.stdout


def test_without_root_and_without_zbar_the_dev_install_stops_with_the_command(tmp_path):
    installed = set(dev_packages()) - {"libzbar0", "shellcheck"}
    result = dev_packages_as_a_user(tmp_path, installed, zbar=False)
    assert result.returncode == 1
    assert result.stderr == (
        "install.sh: error: the kiosk needs packages that only root can install; run: "
        "sudo apt-get install -y --no-install-recommends libzbar0 shellcheck   then run this again\n"
    )


def test_a_step_that_fails_silently_still_gets_a_reason(tmp_path):
    result = subprocess.run(
        ["bash", "-c", f'source "{REPO / "install.sh"}" && STEPS=1 && run_step "the silent step" false'],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 1
    assert result.stdout == "install.sh: [1/1] the silent step\n"
    assert result.stderr.splitlines()[-1] == "install.sh: error: the silent step failed: exit status 1, no output"


def test_a_step_stops_at_its_first_failing_command(tmp_path):
    marker = tmp_path / "after"
    body = f'one() {{ say "first"; false; touch "{marker}"; }}'
    # Plain statements, as in install.sh: inside `a && b` bash would ignore set -e altogether.
    script = f'source "{REPO / "install.sh"}"\n{body}\nSTEPS=2\nrun_step "one" one\nrun_step "two" true\n'
    result = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=30)
    assert result.returncode == 1, result.stdout + result.stderr
    assert not marker.exists()  # set -e holds inside the step although run_step tests its status
    assert "[2/2]" not in result.stdout
    assert "  | install.sh: first" in result.stderr


#: A Raspberry Pi OS Bookworm venv as pip sees it: CPython 3.11 on 64-bit ARM (glibc 2.36).
PI_PLATFORM = [
    "--implementation",
    "cp",
    "--python-version",
    "3.11",
    "--platform",
    "manylinux_2_36_aarch64",
    "--platform",
    "manylinux_2_28_aarch64",
    "--platform",
    "manylinux_2_17_aarch64",
    "--platform",
    "manylinux2014_aarch64",
]


def test_on_a_pi_every_requirement_has_an_aarch64_wheel_and_one_opencv_is_downloaded(tmp_path):
    """pip resolves requirements.txt for a Pi with the pin install.sh writes there (apt's numpy
    1.24.2): wheels only, so each dependency has one for aarch64, and only the one OpenCV release
    built for that numpy is fetched (without the OpenCV pin pip fetched six, about 200 MB)."""
    import sys

    pin = run_function(tmp_path, "numpy_constraint", "echo numpy==1.24.2\n")
    assert pin.returncode == 0, pin.stderr
    constraints = tmp_path / "constraints.txt"
    constraints.write_text(pin.stdout)
    result = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--only-binary=:all:", *PI_PLATFORM,
         "--target", str(tmp_path / "target"), "--report", str(tmp_path / "report.json"), "--no-cache-dir",
         "-c", str(constraints), "-r", str(REPO / "requirements.txt")],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    if result.returncode != 0 and ("NewConnectionError" in result.stderr or "Temporary failure in name resolution" in result.stderr):
        import pytest

        pytest.skip(f"PyPI is not reachable from here: {result.stderr.strip().splitlines()[-1]}")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    import json

    installed = {item["metadata"]["name"].lower(): item for item in json.loads((tmp_path / "report.json").read_text())["install"]}
    assert {"numpy", "opencv-python-headless", "zxing-cpp", "pyzbar", "gpiozero", "requests"} <= set(installed)
    assert installed["numpy"]["metadata"]["version"] == "1.24.2"
    assert all(
        "aarch64" in item["download_info"]["url"] or item["download_info"]["url"].endswith("-none-any.whl") for item in installed.values()
    ), [item["download_info"]["url"] for item in installed.values()]
    fetched = [line for line in result.stdout.splitlines() if "Downloading opencv_python_headless" in line]
    assert len(fetched) == 1 and "4.11." in fetched[0], fetched


def upgrade_picamera2(tmp_path, installed: str | None) -> tuple[subprocess.CompletedProcess, list[str]]:
    """``upgrade_old_picamera2`` with ``installed`` as dpkg's python3-picamera2 (None: not installed)
    and an apt-get that records its arguments and then installs 0.3.31-1; dpkg compares for real."""
    bin_dir, state, calls = tmp_path / "bin", tmp_path / "version", tmp_path / "apt-calls"
    bin_dir.mkdir(parents=True)
    if installed is not None:
        state.write_text(installed)
    scripts = {
        "dpkg-query": f'[ -f "{state}" ] || exit 1\ncat "{state}"\n',
        "apt-get": f'echo "$*" >> "{calls}"\nprintf 0.3.31-1 > "{state}"\n',
    }
    for name, body in scripts.items():
        (bin_dir / name).write_text("#!/bin/sh\n" + body)
        (bin_dir / name).chmod(0o755)
    script = f'source "{REPO / "install.sh"}" && upgrade_old_picamera2'
    result = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=30, env={"PATH": f"{bin_dir}:/usr/bin:/bin"})
    return result, calls.read_text().splitlines() if calls.exists() else []


def test_an_old_picamera2_is_upgraded_and_a_current_or_absent_one_left_alone(tmp_path):
    result, calls = upgrade_picamera2(tmp_path / "old", "0.3.17-1")
    assert result.returncode == 0, result.stderr
    assert calls == ["install -y -q --only-upgrade python3-picamera2"]
    assert "upgrading python3-picamera2 0.3.17-1 (older than 0.3.20" in result.stdout
    for name, installed in (("current", "0.3.20-1"), ("newer", "0.3.31-1"), ("absent", None)):
        result, calls = upgrade_picamera2(tmp_path / name, installed)
        assert result.returncode == 0 and calls == [] and result.stdout == "", (name, result.stdout, result.stderr)
