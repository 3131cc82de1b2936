"""`kiosk preview`: the live view for aiming the camera, in a real browser, directly and through the daemon.

The browser is Debian's chromium (installed with apt when missing and root), driven headless by
playwright; the camera is a file camera playing a synthetic video of a card.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import socket
import subprocess

import cv2
import numpy as np
import pytest
from support.cards import card_photo, empty_counter
from support.central import CENTRAL_TOKEN
from support.config import write_config
from support.kiosk import REPO, kiosk_cmd, run_kiosk
from support.ports import occupied_port, reserved_port
from support.waiting import wait_until

from device.camera import Frame
from device.config import Config
from device.events import FrameScanned
from device.outputs.preview import PreviewOutput
from device.pipeline import Pipeline

#: Generous: a busy 2-core machine, a browser starting, a video decoding in real time.
DEADLINE_S = 90.0
#: How the tests here wait: up to DEADLINE_S, asking ten times a second (a page, an HTTP request).
PATIENT = {"timeout_s": DEADLINE_S, "every_s": 0.1}
#: How chromium must start as root on a machine without network (see the module's docstring).
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip


def get(port: int, path: str, host: str | None = None, method: str = "GET", headers: dict | None = None) -> http.client.HTTPResponse:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request(method, path, headers={"Host": host or f"localhost:{port}", **(headers or {})})
    return conn.getresponse()


def figures(port: int) -> dict | None:
    """``/figures.json``, or None while nothing answers."""
    try:
        return json.loads(get(port, "/figures.json").read())
    except OSError:
        return None


def read_jpegs(response: http.client.HTTPResponse, count: int) -> list[np.ndarray]:
    """The first ``count`` images of an MJPEG stream, decoded."""
    images = []
    while len(images) < count:
        line = response.fp.readline()
        assert line, "the stream ended"
        if line.strip() != b"--frame":
            continue
        headers = {}
        while (line := response.fp.readline().strip()) != b"":
            name, _, value = line.decode().partition(":")
            headers[name.lower()] = value.strip()
        assert headers["content-type"] == "image/jpeg"
        data = response.fp.read(int(headers["content-length"]))
        images.append(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR))
    return images


@pytest.fixture(scope="module")
def card_video(tmp_path_factory):
    """A synthetic counter video (640x360, 10 fps, about 15 s): a card slides in and is held."""
    from device.tools.synth.video import Presentation, write_presentation_video

    path = tmp_path_factory.mktemp("preview") / "card.avi"
    write_presentation_video(path, [Presentation.card("0012345678", 1, hold_s=12.0)], fps=10, size=(640, 360), seed=1)
    return path


# --- the output itself ---------------------------------------------------------------------------


@pytest.fixture
def preview():
    out = PreviewOutput(port=0, unmask=False, title="kiosk-preview-test", camera="file:test")
    yield out
    out.close()


def feed(preview: PreviewOutput, count: int, start: int = 0) -> None:
    """``count`` frames through the real pipeline into ``preview``: a card, then the empty counter."""
    pipeline = Pipeline.from_config(Config())
    card, empty = card_photo("0012345678"), empty_counter()
    for i in range(start, start + count):
        image = card if i % 4 < 2 else empty
        preview.on_frame(FrameScanned(pipeline.frame(image, i * 0.2), i))


def test_nothing_is_drawn_or_encoded_while_nobody_watches(preview):
    feed(preview, 40)
    assert preview.frames == 40 and preview.encodes == 0
    assert figures(preview.port)["sharpness"] is None  # the figures are not computed either
    assert preview.encodes == 0

    stream = get(preview.port, "/stream.mjpg")
    assert stream.status == 200 and stream.getheader("Content-Type") == "multipart/x-mixed-replace; boundary=frame"
    feed(preview, 1, start=40)
    first = read_jpegs(stream, 1)
    assert first[0].shape == (600, 960, 3)
    assert preview.encodes >= 1
    stream.close()
    # The watcher is gone once a write to it fails; from then on frames cost no drawing again.
    wait_until(lambda: feed(preview, 1, start=41) or preview.watchers == 0, what="the closed stream noticed", **PATIENT)
    drawn = preview.encodes
    feed(preview, 40, start=100)
    assert preview.encodes == drawn


def test_frames_the_gate_skipped_are_decoded_only_for_a_watcher(preview):
    """Camera frames come as JPEG buffers: while nobody watches, the preview keeps the newest
    one undecoded; a watcher gets it decoded (and drawn) on the stream's thread."""
    pipeline = Pipeline.from_config(Config())
    _, data = cv2.imencode(".jpg", empty_counter())
    frames = [Frame(encoded=data.tobytes(), index=i, monotonic=i / 30) for i in range(20)]
    for frame in frames:
        preview.on_frame(FrameScanned(pipeline.frame(frame, frame.monotonic), frame.index))
    assert preview.frames == 20
    skipped = [f for f in frames[1:] if f.full_decodes == 0]
    assert len(skipped) == 19  # only the first frame was let through by the gate, and decoded
    stream = get(preview.port, "/stream.mjpg")
    assert read_jpegs(stream, 1)[0].shape == (600, 960, 3)
    assert frames[-1].full_decodes == 1  # the newest frame, decoded for the watcher
    assert all(f.full_decodes == 0 for f in frames[1:-1])  # the others never
    stream.close()


def test_it_listens_on_127_0_0_1_only(preview):
    host, port = preview.address
    assert host == "127.0.0.1"
    assert get(port, "/").status == 200
    others = {"127.0.0.2"} | non_loopback_addresses()
    for address in sorted(others):
        with pytest.raises(OSError):
            socket.create_connection((address, port), timeout=5).close()
    if socket.has_ipv6:
        with pytest.raises(OSError):
            socket.create_connection(("::1", port), timeout=5).close()


def non_loopback_addresses() -> set[str]:
    """This machine's other IPv4 addresses (its outgoing interface, its host name's)."""
    found = set()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))  # UDP: picks the outgoing interface, sends nothing
            found.add(s.getsockname()[0])
        except OSError:
            pass
    try:
        found |= {info[4][0] for info in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET)}
    except OSError:
        pass
    return {a for a in found if not a.startswith("127.")}


def test_it_answers_only_gets_of_its_own_paths_for_local_host_names(preview):
    port = preview.port
    page = get(port, "/", headers={"Origin": "https://evil.example"})
    assert page.status == 200 and b"/stream.mjpg" in page.read()
    for response in (page, get(port, "/figures.json", headers={"Origin": "https://evil.example"})):
        assert not [h for h in response.headers if h.lower().startswith("access-control-")]  # no CORS
        assert response.getheader("Cross-Origin-Resource-Policy") == "same-origin"
    for host in (f"127.0.0.1:{port}", f"[::1]:{port}", "localhost"):
        assert get(port, "/figures.json", host=host).status == 200
    # A page whose own name resolves to 127.0.0.1 (DNS rebinding) sends its name as the Host.
    assert get(port, "/figures.json", host=f"evil.example:{port}").status == 403
    assert get(port, "/stream.mjpg", host=f"evil.example:{port}").status == 403
    assert get(port, "/etc/passwd").status == 404
    assert get(port, "/", method="POST").status == 501
    assert preview.encodes == 0


def test_the_read_zone_is_where_cards_read(preview):
    assert figures(preview.port)["zone"] is None
    feed(preview, 8)
    zone = figures(preview.port)["zone"]
    assert zone is not None and zone["reads"] >= 1
    # The card lies in the middle of the 960x600 view (505x319 pixels); its barcode is on it.
    x0, y0, x1, y1 = zone["box"]
    assert 227 <= x0 < x1 <= 733 and 140 <= y0 < y1 <= 460


def test_the_daemon_runs_on_without_its_live_view_when_the_port_is_taken(caplog):
    from dataclasses import replace

    from device.outputs.preview import daemon_preview

    cfg = Config()
    assert daemon_preview(cfg) is None  # preview.enabled is off by default: no socket at all
    with occupied_port() as port:
        assert daemon_preview(replace(cfg, preview=replace(cfg.preview, enabled=True, port=port))) is None
    assert f"cannot listen on 127.0.0.1:{port}" in caplog.text and "preview.port" in caplog.text


# --- kiosk preview directly, in a real browser ------------------------------------------------


def chromium() -> str:
    """Debian's chromium, installed with apt when it is missing and we are root."""
    if shutil.which("chromium") is None and os.geteuid() == 0:
        from support.debian_root import ensure_tool

        try:
            ensure_tool("chromium", "chromium")
        except AssertionError as e:
            pytest.skip(f"chromium cannot be installed here: {e}")
    path = shutil.which("chromium")
    if path is None:
        pytest.skip("chromium is not installed, and only root can install it: sudo apt-get install chromium")
    return path


@pytest.fixture
def browser_page(tmp_path):
    """A headless chromium page (playwright), with a new empty profile."""
    executable = chromium()
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed: ./install.sh --dev")
    with sync_api.sync_playwright() as pw:
        try:
            context = pw.chromium.launch_persistent_context(
                str(tmp_path / "profile"), executable_path=executable, headless=True, args=CHROMIUM_FLAGS,
                viewport={"width": 1280, "height": 800},
            )  # fmt: skip
        except sync_api.Error as e:
            pytest.skip(f"chromium does not start here: {str(e).splitlines()[0]}")
        page = context.new_page()
        page.set_default_timeout(DEADLINE_S * 1000)
        errors = []
        page.on("console", lambda m: m.type == "error" and errors.append(m.text))
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.errors = errors
        yield page
        context.close()


@pytest.fixture
def direct_preview(tmp_path, card_video):
    """`kiosk preview --port 0` on the card video, daemon stopped; yields (process, port)."""
    cfg = write_config(
        tmp_path / "kiosk.toml", kiosk={"id": "kiosk-aim-1", "runtime_dir": str(tmp_path / "run")}, camera={"source": f"file:{card_video}"}
    )
    proc = subprocess.Popen(
        kiosk_cmd("preview", "--config", str(cfg), "--port", "0"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO
    )
    try:
        lines = [proc.stdout.readline() for _ in range(4)]
        assert lines[1].startswith("live view at http://127.0.0.1:"), (lines, proc.stderr.read() if proc.poll() is not None else "")
        port = int(lines[1].split("127.0.0.1:")[1].split("/")[0])
        assert f"ssh -L {port}:localhost:{port} " in lines[2]
        yield proc, port
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)


def test_kiosk_preview_shows_the_camera_live_in_a_browser(direct_preview, browser_page, tmp_path):
    proc, port = direct_preview
    page = browser_page
    page.goto(f"http://localhost:{port}/", wait_until="domcontentloaded")
    view = page.locator("#view")
    page.wait_for_function("() => document.getElementById('view').naturalWidth > 0")
    first = view.screenshot()
    wait_until(lambda: view.screenshot() != first, what="the image in the page changed", **PATIENT)
    # The figures the page shows: a frame rate, a sharpness number, where it was measured.
    page.wait_for_function("() => parseFloat(document.getElementById('fps').textContent) > 0")
    page.wait_for_function("() => /^[0-9]+$/.test(document.getElementById('sharpness').textContent)")
    assert page.inner_text("#measured").startswith("on the ")
    assert "kiosk-aim-1" in page.title()
    shot = tmp_path / "preview.png"
    page.screenshot(path=str(shot))
    image = cv2.imread(str(shot))
    assert image.shape[:2] == (800, 1280) and shot.stat().st_size > 20_000
    assert float(image.std()) > 20  # not blank: the camera picture and the figures
    assert page.errors == []  # the page's script ran under its own CSP, without errors
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0
    with pytest.raises(OSError):  # the port is released
        socket.create_connection(("127.0.0.1", port), timeout=5).close()


def test_kiosk_preview_on_a_port_in_use_says_so(tmp_path, card_video):
    cfg = write_config(tmp_path / "kiosk.toml", kiosk={"runtime_dir": str(tmp_path / "run")}, camera={"source": f"file:{card_video}"})
    with occupied_port() as port:
        run = run_kiosk("preview", "--config", str(cfg), "--port", str(port))
    assert run.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in run.stderr and "--port" in run.stderr
    assert "Traceback" not in run.stderr


def test_a_preview_port_out_of_range_is_a_config_error(tmp_path):
    cfg = write_config(tmp_path / "kiosk.toml", preview={"port": 70000})
    run = run_kiosk("config", "check", "--config", str(cfg))
    assert run.returncode == 78 and "preview.port" in run.stderr


# --- through the daemon ---------------------------------------------------------------------------


def test_the_daemon_serves_the_live_view_and_kiosk_preview_says_where(tmp_path, card_video, central):
    from device import status

    with reserved_port() as port:  # the daemon's preview listens there; nobody else can take it meanwhile
        runtime = tmp_path / "run"
        sections = dict(
            kiosk={"id": "kiosk-aim-2", "runtime_dir": str(runtime)},
            camera={"source": f"file:{card_video}"},
            outbox={"path": str(tmp_path / "outbox.db")},
            api={"url": central.url, "token": CENTRAL_TOKEN},
        )
        cfg = write_config(tmp_path / "kiosk.toml", **sections, preview={"enabled": True, "port": port})
        daemon = subprocess.Popen(
            kiosk_cmd("run", "--config", str(cfg)), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=REPO
        )
        try:
            seen = wait_until(lambda: (f := figures(port)) and f["frames"] > 0 and f, what="the daemon's live view with frames", **PATIENT)
            assert seen["kiosk"] == "kiosk-aim-2" and seen["frames_drawn"] == 0  # nobody watched yet: nothing drawn
            stream = get(port, "/stream.mjpg")
            images = read_jpegs(stream, 2)
            stream.close()
            assert all(image.shape == (360, 640, 3) for image in images)
            after = figures(port)
            assert after["frames_drawn"] >= 2 and after["sharpness"] is not None and after["fps"] > 0
            wait_until(lambda: figures(port)["zone"], what="the card read, and its zone shown", **PATIENT)

            wait_until(lambda: status.read_status(runtime).running, what="the daemon's status file", **PATIENT)
            said = run_kiosk("preview", "--config", str(cfg))
            assert said.returncode == 0, said.stderr
            assert f"http://127.0.0.1:{port}/" in said.stdout and f"ssh -L {port}:localhost:{port} " in said.stdout
            off = run_kiosk("preview", "--config", str(write_config(tmp_path / "off.toml", **sections)))
            assert off.returncode == 1 and "enabled = true" in off.stderr and "systemctl restart kiosk" in off.stderr
        finally:
            daemon.send_signal(signal.SIGTERM)
            stderr = daemon.communicate(timeout=60)[1]
        assert daemon.returncode == 0, stderr
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=5).close()


def test_the_live_view_shows_the_exposure_and_the_smear_of_a_card_moving_at_20_cm_s(preview):
    pipeline = Pipeline.from_config(Config())
    stream = get(preview.port, "/stream.mjpg")
    try:
        for index, exposure_us in enumerate((1000.0, None)):  # a camera that reports it, then a file that does not
            frame = Frame(card_photo("0012345678"), index=index, exposure_us=exposure_us)
            preview.on_frame(FrameScanned(pipeline.frame(frame, index * 0.2), index))
            read_jpegs(stream, 1)
            shown = figures(preview.port)
            if exposure_us is None:
                assert shown["exposure_us"] is None and shown["smear_modules"] is None
            else:
                assert shown["exposure_us"] == 1000.0 and shown["smear_modules"] == 0.48  # 0.2 mm of a 0.42 mm module
    finally:
        stream.close()
