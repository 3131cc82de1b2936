"""`kiosk preview`: the live view for aiming the camera, in a real browser, directly and through the daemon.

The browser is Debian's chromium (installed with apt when missing and root), driven headless by
playwright, reaching the live view's Unix socket through a port forwarded as ``ssh -L`` would
(:func:`support.preview.ssh_forward`); the camera is a file camera playing a synthetic video of a card.
"""

from __future__ import annotations

import http.client
import os
import shutil
import signal
import socket
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest
from support.cards import card_photo, empty_counter, name_and_address
from support.central import CENTRAL_TOKEN
from support.config import write_config
from support.kiosk import REPO, kiosk_cmd, run_kiosk
from support.preview import figures, get, ssh_forward
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
def preview(tmp_path):
    out = PreviewOutput(socket_path=tmp_path / "preview.sock", unmask=False, title="kiosk-preview-test", camera="file:test")
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
    assert figures(preview.socket_path)["sharpness"] is None  # the figures are not computed either
    assert preview.encodes == 0

    stream = get(preview.socket_path, "/stream.mjpg")
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
    stream = get(preview.socket_path, "/stream.mjpg")
    assert read_jpegs(stream, 1)[0].shape == (600, 960, 3)
    assert frames[-1].full_decodes == 1  # the newest frame, decoded for the watcher
    assert all(f.full_decodes == 0 for f in frames[1:-1])  # the others never
    stream.close()


def test_it_listens_on_a_socket_of_the_folders_group_and_opens_no_tcp_port(preview, tmp_path):
    import stat

    path = preview.socket_path
    assert stat.S_ISSOCK(os.lstat(path).st_mode) and stat.S_IMODE(os.lstat(path).st_mode) == 0o660
    assert os.lstat(path).st_gid == tmp_path.stat().st_gid
    assert get(path, "/").status == 200
    listening = subprocess.run(["ss", "-Hltnp"], capture_output=True, text=True, timeout=30).stdout
    assert f"pid={os.getpid()}," not in listening  # no TCP port of this process's
    preview.close()
    assert not path.exists()  # its socket goes with it


def test_it_answers_only_gets_of_its_own_paths_for_local_host_names(preview):
    port = preview.socket_path
    page = get(port, "/", headers={"Origin": "https://evil.example"})
    assert page.status == 200 and b"/stream.mjpg" in page.read()
    for response in (page, get(port, "/figures.json", headers={"Origin": "https://evil.example"})):
        assert not [h for h in response.headers if h.lower().startswith("access-control-")]  # no CORS
        assert response.getheader("Cross-Origin-Resource-Policy") == "same-origin"
    for host in ("127.0.0.1:8088", "[::1]:8088", "localhost"):
        assert get(port, "/figures.json", host=host).status == 200
    # A page whose own name resolves to 127.0.0.1 (DNS rebinding) sends its name as the Host.
    assert get(port, "/figures.json", host="evil.example:8088").status == 403
    assert get(port, "/stream.mjpg", host="evil.example:8088").status == 403
    assert get(port, "/etc/passwd").status == 404
    assert get(port, "/", method="POST").status == 501
    assert preview.encodes == 0


def test_the_read_zone_is_where_cards_read(preview):
    assert figures(preview.socket_path)["zone"] is None
    feed(preview, 8)
    zone = figures(preview.socket_path)["zone"]
    assert zone is not None and zone["reads"] >= 1
    # The card lies in the middle of the 960x600 view (505x319 pixels); its barcode is on it.
    x0, y0, x1, y1 = zone["box"]
    assert 227 <= x0 < x1 <= 733 and 140 <= y0 < y1 <= 460


def test_the_daemon_runs_on_without_its_live_view_when_its_socket_cannot_be_made(caplog, tmp_path):
    from dataclasses import replace

    from device.outputs.preview import daemon_preview

    cfg = Config()
    assert daemon_preview(cfg) is None  # preview.enabled is off by default: no socket at all
    runtime = tmp_path / "run"
    runtime.mkdir()
    (runtime / "preview.sock").write_text("not a socket: not the kiosk's to remove")
    enabled = replace(cfg, kiosk=replace(cfg.kiosk, runtime_dir=str(runtime)), preview=replace(cfg.preview, enabled=True))
    assert daemon_preview(enabled) is None
    assert f"cannot listen on {runtime / 'preview.sock'}" in caplog.text and "kiosk.runtime_dir" in caplog.text
    assert (runtime / "preview.sock").read_text().startswith("not a socket")


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
    """`kiosk preview` on the card video, daemon stopped; yields (process, its socket)."""
    cfg = write_config(
        tmp_path / "kiosk.toml", kiosk={"id": "kiosk-aim-1", "runtime_dir": str(tmp_path / "run")}, camera={"source": f"file:{card_video}"}
    )
    sock = tmp_path / "aim.sock"
    proc = subprocess.Popen(
        kiosk_cmd("preview", "--config", str(cfg), "--socket", str(sock), "--port", "8090"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    try:
        lines = [proc.stdout.readline() for _ in range(4)]
        assert lines[1].startswith(f"live view on {sock} "), (lines, proc.stderr.read() if proc.poll() is not None else "")
        assert f"ssh -L 8090:{sock} " in lines[2] and "http://localhost:8090/" in lines[3]
        yield proc, sock
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)


def test_kiosk_preview_shows_the_camera_live_in_a_browser(direct_preview, browser_page, tmp_path):
    proc, sock = direct_preview
    page = browser_page
    with ssh_forward(sock) as port:  # the technician's laptop: ssh -L PORT:SOCKET
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
    assert not sock.exists()  # the socket is removed


def test_kiosk_preview_where_something_else_lies_says_so_and_removes_nothing(tmp_path, card_video):
    cfg = write_config(tmp_path / "kiosk.toml", kiosk={"runtime_dir": str(tmp_path / "run")}, camera={"source": f"file:{card_video}"})
    taken = tmp_path / "notes.txt"
    taken.write_text("a technician's notes")
    run = run_kiosk("preview", "--config", str(cfg), "--socket", str(taken))
    assert run.returncode == 1
    assert f"cannot listen on {taken}" in run.stderr and "--socket" in run.stderr
    assert "Traceback" not in run.stderr and taken.read_text() == "a technician's notes"


def test_a_preview_port_out_of_range_is_a_config_error(tmp_path):
    cfg = write_config(tmp_path / "kiosk.toml", preview={"port": 70000})
    run = run_kiosk("config", "check", "--config", str(cfg))
    assert run.returncode == 78 and "preview.port" in run.stderr


# --- through the daemon ---------------------------------------------------------------------------


def test_the_daemon_serves_the_live_view_and_kiosk_preview_says_where(tmp_path, card_video, central):
    from device import status

    runtime = tmp_path / "run"
    sock = runtime / "preview.sock"
    sections = dict(
        kiosk={"id": "kiosk-aim-2", "runtime_dir": str(runtime)},
        camera={"source": f"file:{card_video}"},
        outbox={"path": str(tmp_path / "outbox.db")},
        api={"url": central.url, "token": CENTRAL_TOKEN},
    )
    cfg = write_config(tmp_path / "kiosk.toml", **sections, preview={"enabled": True})
    daemon = subprocess.Popen(
        kiosk_cmd("run", "--config", str(cfg)), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=REPO
    )
    try:
        seen = wait_until(lambda: (f := figures(sock)) and f["frames"] > 0 and f, what="the daemon's live view with frames", **PATIENT)
        assert seen["kiosk"] == "kiosk-aim-2" and seen["frames_drawn"] == 0  # nobody watched yet: nothing drawn
        stream = get(sock, "/stream.mjpg")
        images = read_jpegs(stream, 2)
        stream.close()
        assert all(image.shape == (360, 640, 3) for image in images)
        after = figures(sock)
        assert after["frames_drawn"] >= 2 and after["sharpness"] is not None and after["fps"] > 0
        wait_until(lambda: figures(sock)["zone"], what="the card read, and its zone shown", **PATIENT)

        wait_until(lambda: status.read_status(runtime).running, what="the daemon's status file", **PATIENT)
        said = run_kiosk("preview", "--config", str(cfg))
        assert said.returncode == 0, said.stderr
        assert f"live view on {sock} " in said.stdout and f"ssh -L 8088:{sock} " in said.stdout
        off = run_kiosk("preview", "--config", str(write_config(tmp_path / "off.toml", **sections)))
        assert off.returncode == 1 and "enabled = true" in off.stderr and "systemctl restart kiosk" in off.stderr
    finally:
        daemon.send_signal(signal.SIGTERM)
        stderr = daemon.communicate(timeout=60)[1]
    assert daemon.returncode == 0, stderr
    assert not sock.exists()


# --- for technicians only, and what a connection may cost (issue 20, findings 4 and 5) ---------


def test_the_picture_is_blurred_outside_the_barcodes_unless_preview_unblurred(tmp_path):
    def streamed(unblurred: bool) -> np.ndarray:
        out = PreviewOutput(socket_path=tmp_path / f"p{unblurred:d}.sock", unmask=False, unblurred=unblurred, title="k")
        try:
            feed(out, 1)
            return read_jpegs(get(out.socket_path, "/stream.mjpg"), 1)[0]
        finally:
            out.close()

    def detail(image: np.ndarray) -> float:
        return float(cv2.Laplacian(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY), cv2.CV_64F).var())

    blurred, whole = (name_and_address(streamed(unblurred)) for unblurred in (False, True))
    assert detail(blurred) < 0.1 * detail(whole)  # the client's name and address beyond reading


def daemon_with_preview(tmp_path, card_video, central, runtime: Path, nofile: int = 1024) -> tuple[subprocess.Popen, Path]:
    """``kiosk run`` with the live view on, its descriptors limited as the unit's are (1024)."""
    import resource

    cfg = write_config(
        tmp_path / "kiosk.toml",
        kiosk={"id": "kiosk-aim-3", "runtime_dir": str(runtime)},
        camera={"source": f"file:{card_video}", "pace": "realtime"},
        outbox={"path": str(tmp_path / "outbox.db")},
        api={"url": central.url, "token": CENTRAL_TOKEN},
        preview={"enabled": True},
    )
    cfg.chmod(0o644)
    log = open(tmp_path / "kiosk.log", "w")  # noqa: SIM115 (the daemon writes it while the test reads)
    proc = subprocess.Popen(
        kiosk_cmd("run", "--config", str(cfg)),
        stdout=subprocess.DEVNULL,
        stderr=log,
        cwd=REPO,
        env=dict(os.environ, PYTHONUNBUFFERED="1"),
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile)),
    )
    log.close()
    sock = runtime / "preview.sock"
    wait_until(lambda: (f := figures(sock)) and f["frames"] > 0, what="the daemon's live view", **PATIENT)
    return proc, cfg


def stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)


def test_an_account_outside_the_technicians_group_cannot_connect_to_the_live_view(tmp_path, card_video, central, technicians_group):
    import pwd

    from support.unprivileged import kiosk_as_nobody

    with kiosk_as_nobody(probe="device", groups=(technicians_group,)) as (folder, as_technician):
        runtime = folder / "run"
        runtime.mkdir()
        os.chown(runtime, 0, technicians_group)  # as the unit leaves /run/kiosk (setgid here: the daemon runs as root)
        runtime.chmod(0o2750)
        proc, cfg = daemon_with_preview(folder, card_video, central, runtime)
        try:
            nobody = pwd.getpwnam("nobody")
            connect = f"import socket; socket.socket(socket.AF_UNIX).connect({str(runtime / 'preview.sock')!r}); print('connected')"

            def attempt(groups: list[int]) -> subprocess.CompletedProcess:
                return subprocess.run(
                    ["/usr/bin/python3", "-c", connect],
                    capture_output=True,
                    text=True,
                    timeout=60,
                    user=nobody.pw_uid,
                    group=nobody.pw_gid,
                    extra_groups=groups,
                )

            for runtime_mode in (0o2750, 0o2755):  # as installed; then even with the folder open to all
                runtime.chmod(runtime_mode)
                outsider = attempt([])
                assert outsider.returncode != 0 and "PermissionError" in outsider.stderr, outsider.stdout + outsider.stderr
                assert attempt([technicians_group]).stdout.strip() == "connected"
            runtime.chmod(0o2750)
            wait_until(lambda: (runtime / "status.json").exists(), what="the status file", **PATIENT)
            (runtime / "status.json").chmod(0o640)
            said = as_technician("preview", "--config", str(cfg))
            assert said.returncode == 0 and f"ssh -L 8088:{runtime / 'preview.sock'} " in said.stdout, said.stdout + said.stderr
        finally:
            stop(proc)


def fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def test_a_thousand_slow_connections_cost_a_bounded_number_of_descriptors_and_no_fault(tmp_path, card_video, central):
    import resource

    from support.daemon import status_report

    from device.outputs.preview import MAX_CONNECTIONS

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 4096)), hard))  # this test's own 1,000 ends
    runtime = tmp_path / "run"
    proc, cfg = daemon_with_preview(tmp_path, card_video, central, runtime)
    slow: list[socket.socket] = []
    try:
        before = fds(proc.pid)
        most = before
        for i in range(1000):
            conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            conn.connect(str(runtime / "preview.sock"))
            try:
                conn.send(b"G")  # and then nothing: a request line that never ends
            except OSError:
                pass  # answered 503 and closed already: the connections over the bound
            slow.append(conn)
            if i % 50 == 0:
                most = max(most, fds(proc.pid))
        most = max(most, fds(proc.pid))
        # Its own listening socket and MAX_CONNECTIONS served, one being refused: never one per connection.
        assert most <= before + MAX_CONNECTIONS + 2, (before, most)
        # The slow ones are let go at the header deadline; the live view answers again, and no fault was raised.
        wait_until(lambda: figures(runtime / "preview.sock") is not None and get(runtime / "preview.sock", "/").status == 200,
                   what="the live view answering again", **PATIENT)  # fmt: skip
        report = status_report(cfg)
        assert report["running"] and report["daemon"]["faults"] == {}, report["daemon"]["faults"]
    finally:
        for conn in slow:
            conn.close()
        stop(proc)
    log = (tmp_path / "kiosk.log").read_text()
    assert "Traceback" not in log and "token" not in log, log[-3000:]


def test_a_viewer_leaving_early_is_one_line_in_the_log_never_a_traceback(tmp_path, card_video, central):
    runtime = tmp_path / "run"
    proc, _ = daemon_with_preview(tmp_path, card_video, central, runtime)
    log = tmp_path / "kiosk.log"

    def leave_early() -> bool:
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        conn.connect(str(runtime / "preview.sock"))
        conn.sendall(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n")
        conn.close()  # before the page comes back
        return "preview: a viewer left before its answer was sent" in log.read_text()

    try:
        wait_until(leave_early, what="a viewer leaving early, in the log", **PATIENT)
    finally:
        stop(proc)
    text = log.read_text()
    assert "Traceback" not in text and "BrokenPipeError:" not in text, text[-3000:]
    lines = [line for line in text.splitlines() if "a viewer left before its answer was sent" in line]
    assert lines and all(line.endswith("(BrokenPipeError)") or line.endswith("(ConnectionResetError)") for line in lines), lines


def test_the_live_view_shows_the_exposure_and_the_smear_of_a_card_moving_at_20_cm_s(preview):
    pipeline = Pipeline.from_config(Config())
    stream = get(preview.socket_path, "/stream.mjpg")
    try:
        for index, exposure_us in enumerate((1000.0, None)):  # a camera that reports it, then a file that does not
            frame = Frame(card_photo("0012345678"), index=index, exposure_us=exposure_us)
            preview.on_frame(FrameScanned(pipeline.frame(frame, index * 0.2), index))
            read_jpegs(stream, 1)
            shown = figures(preview.socket_path)
            if exposure_us is None:
                assert shown["exposure_us"] is None and shown["smear_modules"] is None
            else:
                assert shown["exposure_us"] == 1000.0 and shown["smear_modules"] == 0.48  # 0.2 mm of a 0.42 mm module
    finally:
        stream.close()
