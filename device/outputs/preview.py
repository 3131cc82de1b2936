"""The live view for aiming the camera: an MJPEG page on a Unix socket only technicians reach.

An :class:`~device.outputs.base.Output` that keeps the newest frame the pipeline looked at and
serves, on a Unix socket (``<kiosk.runtime_dir>/preview.sock``), a page with the camera image
(blurred outside the barcodes read, as snapshots are; located regions and reads drawn, contracts
masked unless ``log.unmask``), the frame rate, a sharpness and a contrast figure for the barcode
region, the zone where cards have read (a dashed rectangle: "hold the card here"), and the exposure
the camera reported with the smear a card moving at 20 cm/s gets in it (:func:`exposure_text`)::

    preview = PreviewOutput(socket_path=Path("/run/kiosk/preview.sock"), unmask=False, title="kiosk-riga-07")
    kiosk.add_output(preview)          # the daemon (preview.enabled); or feed it frames yourself:
    preview.on_frame(FrameScanned(pipeline.frame(frame, frame.monotonic), frame.index))
    print(preview.ssh_line("pi", "kiosk-riga-07", 8088))   # ssh -L 8088:/run/kiosk/preview.sock pi@kiosk-riga-07
    preview.close()

The paths: ``/`` (the page), ``/stream.mjpg`` (the image) and ``/figures.json`` (the figures);
GET only. Why MJPEG (``multipart/x-mixed-replace``) rather than polled JPEGs: the browser shows it
in a plain ``<img>``, one connection carries every frame (one round trip per frame over an ssh
tunnel would halve the rate), and an open stream is an exact "somebody is watching": frames are
drawn and encoded only while a stream is open, once per new frame whatever the number of
watchers, at most :data:`STREAM_FPS` a second. While nobody watches, a frame costs a reference
kept and a counter bumped (:attr:`PreviewOutput.encodes` stays put; tests count it).

Who may look: the technicians. The socket is 0660, its group the technicians' (the daemon's main
group under the unit, kiosk-tech; the folder's group otherwise), in the runtime directory (0750,
the same group): an account outside that group cannot connect, and no TCP port is open at all.
A technician's laptop reaches it with OpenSSH's forwarding to a Unix socket
(``ssh -L 8088:/run/kiosk/preview.sock pi@kiosk``, then http://localhost:8088/). The picture is
blurred outside the barcodes read (:mod:`device.outputs.masking`), unless ``preview.unblurred``
(root's config file) says otherwise. A request whose ``Host`` is not localhost, 127.0.0.1 or
[::1] is refused (a web page in the technician's browser cannot point its own host name at the
tunnel and read the stream: DNS rebinding); no CORS headers are sent, and
``Cross-Origin-Resource-Policy: same-origin`` keeps other sites from embedding the image.

What a connection may cost: at most :data:`MAX_CONNECTIONS` are served at once (one more is
answered 503 at once and closed, so descriptors stay bounded), its request line and headers must
arrive within :data:`HEADER_DEADLINE_S` in all (a deadline, not renewed by each byte), and a
viewer that leaves early is one line in the log, never a traceback.
"""

from __future__ import annotations

import base64
import hashlib
import html
import http.server
import io
import json
import logging
import os
import socket
import socketserver
import stat
import sys
import threading
import time
from collections import deque
from pathlib import Path
from urllib.parse import urlsplit

import cv2
import numpy as np

from device.camera import CorruptFrame, Frame
from device.camera.exposure import CARD_SPEED_MM_S, smear_modules
from device.events import FaultCleared, FaultRaised, FrameScanned
from device.fault_names import CAMERA
from device.outputs.annotate import annotate
from device.outputs.base import Output
from device.outputs.masking import barcode_areas, blur_outside
from device.pipeline import Reading
from device.runtime_dir import PREVIEW_SOCKET
from device.vision.decoders import as_grey
from device.vision.locate import Locator

log = logging.getLogger(__name__)

#: Its mode: the daemon and the technicians' group (connecting needs write permission).
SOCKET_MODE = 0o660
#: Frames a second sent to a watcher, at most (enough to aim; a Pi's CPU belongs to the scan loop).
STREAM_FPS = 8.0
#: Open streams at a time, at most (each may cost an encode per frame).
MAX_WATCHERS = 4
#: Connections served at once, at most (streams, the page, its figures): each is a thread and a
#: descriptor, so a flood of connections costs a bounded number of both; the rest get 503 at once.
MAX_CONNECTIONS = 8
#: The request line and headers must arrive within this many seconds in all.
HEADER_DEADLINE_S = 5.0
#: The frame rate is counted over this many seconds.
FPS_WINDOW_S = 2.0
#: The read zone is the bounding box of the card barcodes in this many most recent reads.
ZONE_READS = 50
JPEG_QUALITY = 75
ZONE_BGR = (255, 255, 0)  # cyan: the zone where cards have read
#: Host names a browser on this machine or at the laptop end of an ssh tunnel sends.
LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "[::1]"})


def exposure_text(exposure_us: float | None) -> str:
    """The exposure line drawn on the live view: the exposure and the smear of a card moving at
    20 cm/s in it, in the card's modules (0.42 mm); empty when the camera does not say (a file).

    >>> exposure_text(1000.0)
    'exposure 1.0 ms: 0.5 modules of smear at 20 cm/s'
    >>> exposure_text(16667.0)
    'exposure 16.7 ms: 7.9 modules of smear at 20 cm/s'
    """
    if exposure_us is None:
        return ""
    return f"exposure {exposure_us / 1000:.1f} ms: {smear_modules(exposure_us):.1f} modules of smear at {CARD_SPEED_MM_S / 10:g} cm/s"


def region_figures(grey: np.ndarray, corners) -> tuple[float, float]:
    """(sharpness, contrast) of the pixels inside the polygon ``corners`` of ``grey``.

    Sharpness is the variance of the Laplacian (higher is sharper: turn the focus for the
    highest); contrast is the spread of the grey levels, 5th to 95th percentile, over 255 (dark
    bars on light spaces: well above 0.3).

    >>> bars = np.tile(np.repeat(np.array([0, 255], np.uint8), 4), (40, 10))
    >>> sharp, contrast = region_figures(bars, [(0, 0), (79, 0), (79, 39), (0, 39)])
    >>> sharp > 1000, contrast
    (True, 1.0)
    >>> region_figures(np.full((40, 80), 128, np.uint8), [(0, 0), (79, 0), (79, 39), (0, 39)])
    (0.0, 0.0)
    """
    pts = np.asarray(corners, np.float32).reshape(-1, 2)
    h, w = grey.shape[:2]
    x0, y0 = np.clip(np.floor(pts.min(axis=0)).astype(int), 0, [w - 1, h - 1])
    x1, y1 = np.clip(np.ceil(pts.max(axis=0)).astype(int) + 1, 1, [w, h])
    crop = grey[y0:y1, x0:x1]
    mask = np.zeros(crop.shape, np.uint8)
    cv2.fillPoly(mask, [np.round(pts - (x0, y0)).astype(np.int32)], 1)
    inside = mask.astype(bool)
    if crop.size == 0 or not inside.any():
        return 0.0, 0.0
    sharpness = float(cv2.Laplacian(crop, cv2.CV_64F)[inside].var())
    low, high = np.percentile(crop[inside], (5, 95))
    return round(sharpness, 1), round(float(high - low) / 255.0, 3)


def measured_region(readings: list[Reading], regions, size: tuple[int, int]) -> tuple[str, list]:
    """Where the figures are measured: a card's barcode, else any barcode read, else the best
    located region, else the whole view; as (what it is, its corners)."""
    for what, found in (
        ("card barcode", [r.symbol.quad for r in readings if r.card and r.symbol.quad]),
        ("barcode read", [r.symbol.quad for r in readings if r.symbol.quad]),
        ("located region", [region.corners for region in regions]),
    ):
        if found:
            return what, list(found[0])
    w, h = size
    return "whole view", [(0, 0), (w - 1, 0), (w - 1, h - 1), (0, h - 1)]


def draw_dashed_box(image: np.ndarray, box: tuple[int, int, int, int], colour, dash: int = 14) -> None:
    """A dashed rectangle ``box`` = (x0, y0, x1, y1) drawn into ``image``."""
    x0, y0, x1, y1 = box
    for (ax, ay), (bx, by) in (((x0, y0), (x1, y0)), ((x1, y0), (x1, y1)), ((x1, y1), (x0, y1)), ((x0, y1), (x0, y0))):
        length = max(abs(bx - ax), abs(by - ay), 1)
        for start in range(0, length, 2 * dash):
            end = min(start + dash, length)
            p = (round(ax + (bx - ax) * start / length), round(ay + (by - ay) * start / length))
            q = (round(ax + (bx - ax) * end / length), round(ay + (by - ay) * end / length))
            cv2.line(image, p, q, colour, 2, cv2.LINE_AA)


class ReadZone:
    """Where card barcodes were read: the bounding box of the last ``size`` reads.

    >>> zone = ReadZone(size=2)
    >>> zone.add([(10, 10), (30, 10), (30, 20), (10, 20)], (640, 480))
    >>> zone.add([(50, 40), (70, 40), (70, 60), (50, 60)], (640, 480))
    >>> zone.box(), zone.reads
    ((10, 10, 70, 60), 2)
    """

    def __init__(self, size: int = ZONE_READS):
        self._boxes: deque[tuple[int, int, int, int]] = deque(maxlen=size)
        self._frame_size: tuple[int, int] | None = None

    @property
    def reads(self) -> int:
        return len(self._boxes)

    def add(self, quad, frame_size: tuple[int, int]) -> None:
        if frame_size != self._frame_size:  # another camera mode: old places mean nothing now
            self._boxes.clear()
            self._frame_size = frame_size
        pts = np.asarray(quad, np.float64).reshape(-1, 2)
        x0, y0 = pts.min(axis=0)
        x1, y1 = pts.max(axis=0)
        self._boxes.append((int(x0), int(y0), int(round(x1)), int(round(y1))))

    def box(self) -> tuple[int, int, int, int] | None:
        if not self._boxes:
            return None
        boxes = np.asarray(self._boxes)
        return (int(boxes[:, 0].min()), int(boxes[:, 1].min()), int(boxes[:, 2].max()), int(boxes[:, 3].max()))


class PreviewOutput(Output):
    """The live view, served from its own thread on the Unix socket ``socket_path``.

    :param socket_path: where to listen (``<kiosk.runtime_dir>/preview.sock``); a socket left
        there by an earlier run is replaced, anything else there is refused (``OSError``).
    :param unmask: ``log.unmask``: whole contract numbers in the drawn labels.
    :param unblurred: ``preview.unblurred``: the whole picture, not blurred outside the barcodes.
    :param title: the kiosk's name, shown on the page.
    :param camera: what the camera is (``camera.source``), shown on the page.

    Listening raises ``OSError`` (a path too long, a folder it may not write) before anything
    else starts.
    """

    def __init__(self, *, socket_path: Path, unmask: bool, unblurred: bool = False, title: str = "", camera: str = ""):
        self.unmask = unmask
        self.unblurred = unblurred
        self.title = title
        self.camera = camera
        self.encodes = 0  # frames drawn and encoded, for "no cost while nobody watches"
        self.frames = 0
        self._changed = threading.Condition()
        self._frame: Frame | None = None  # the newest frame, decoded in full only when drawn
        self._readings: list[Reading] = []  # of the last decoded frame: what the view shows now
        self._seq = 0
        self._times: deque[float] = deque(maxlen=512)
        self._zone = ReadZone()
        self._faults: dict[str, str] = {}
        self._watchers = 0
        self._closing = False
        self._render_lock = threading.Lock()
        self._rendered: tuple[int, bytes, dict] = (0, b"", {})
        self._server = _Server(Path(socket_path), self)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.25}, name="preview-http", daemon=True)
        self._thread.start()
        log.info("preview: the live view is served on %s (from a laptop: %s)", self.socket_path, self.ssh_line("USER", "KIOSK"))

    @classmethod
    def from_config(cls, cfg, *, socket_path: Path | None = None) -> PreviewOutput:
        """The live view of the ``[preview]`` section, on ``socket_path`` (default: in ``kiosk.runtime_dir``)."""
        return cls(
            socket_path=socket_path or default_socket(cfg),
            unmask=cfg.log.unmask,
            unblurred=cfg.preview.unblurred,
            title=cfg.kiosk.id,
            camera=cfg.camera.source,
        )

    @property
    def socket_path(self) -> Path:
        """The socket it listens on."""
        return self._server.path

    @property
    def connections(self) -> int:
        """Connections served now (at most :data:`MAX_CONNECTIONS`)."""
        return self._server.connections

    @property
    def refused(self) -> int:
        """Connections answered 503 because :data:`MAX_CONNECTIONS` were served already."""
        return self._server.refused

    def ssh_line(self, user: str, host: str, port: int = 8088) -> str:
        """The command that brings the live view to a laptop's ``http://localhost:PORT/``."""
        return ssh_line(self.socket_path, user, host, port)

    @property
    def watchers(self) -> int:
        """Streams open now."""
        return self._watchers

    # --- events (the output's thread) ---------------------------------------------------------

    def on_frame(self, event: FrameScanned) -> None:
        """Keep the frame for whoever watches; nothing is drawn or encoded here."""
        result = event.result
        if result.frame is None:
            return
        with self._changed:
            self._frame = result.frame  # not result.image: a frame the gate skipped stays undecoded
            if result.decoded:
                self._readings = result.readings
                size = (result.image.shape[1], result.image.shape[0])  # decoded already
                for reading in result.readings:
                    if reading.card and reading.symbol.quad:
                        self._zone.add(reading.symbol.quad, size)
            self._seq += 1
            self.frames += 1
            self._times.append(time.monotonic())
            self._changed.notify_all()

    def on_fault_raised(self, event: FaultRaised) -> None:
        with self._changed:
            self._faults[event.name] = event.message

    def on_fault_cleared(self, event: FaultCleared) -> None:
        with self._changed:
            self._faults.pop(event.name, None)

    def close(self) -> None:
        """Stop serving: streams end, the port is released. Idempotent."""
        with self._changed:
            if self._closing:
                return
            self._closing = True
            self._changed.notify_all()
        self._server.shutdown()
        self._server.server_close()
        self._server.remove_socket()

    # --- what the server asks (its threads) ---------------------------------------------------

    def fps(self) -> float:
        """Frames through the pipeline per second, over the last :data:`FPS_WINDOW_S` seconds."""
        now = time.monotonic()
        with self._changed:
            recent = [t for t in self._times if t >= now - FPS_WINDOW_S]
        if len(recent) < 2:
            return 0.0
        return round((len(recent) - 1) / max(now - recent[0], 1e-6), 1)

    def figures(self) -> dict:
        """What ``/figures.json`` answers: frame rate, the figures of the last frame drawn, the read zone."""
        with self._changed:
            zone = self._zone.box()
            reads = self._zone.reads
            faults = dict(self._faults)
            frames = self.frames
        drawn = self._rendered[2]
        return {
            "kiosk": self.title,
            "camera": self.camera,
            "fps": self.fps(),
            "frames": frames,
            "frames_drawn": self.encodes,
            "watching": self._watchers,
            "frame_size": drawn.get("frame_size"),
            "sharpness": drawn.get("sharpness"),
            "contrast": drawn.get("contrast"),
            "measured_on": drawn.get("measured_on"),
            "zone": {"box": list(zone), "reads": reads} if zone else None,
            "exposure_us": drawn.get("exposure_us"),
            "smear_modules": drawn.get("smear_modules"),
            "faults": faults,
        }

    def next_jpeg(self, after: int, timeout: float) -> tuple[int, bytes] | None:
        """The newest frame after frame number ``after``, drawn and encoded, with its number;
        None when none came within ``timeout`` or the preview is closing."""
        with self._changed:
            if not self._changed.wait_for(lambda: self._closing or (self._frame is not None and self._seq > after), timeout):
                return None
            if self._closing:
                return None
        return self._render()

    def _render(self) -> tuple[int, bytes]:
        with self._render_lock:  # one encode per frame, however many watch
            with self._changed:
                seq, frame, readings, zone = self._seq, self._frame, self._readings, self._zone.box()
            if self._rendered[0] == seq:
                return seq, self._rendered[1]
            try:
                image = frame.image  # decoded here, on the watcher's thread, at most STREAM_FPS a second
            except CorruptFrame:  # a broken camera buffer: this frame shows the last good picture
                self._rendered = (seq, *self._rendered[1:])
                return seq, self._rendered[1]
            grey = as_grey(image)
            regions = Locator().find(grey)
            size = (image.shape[1], image.shape[0])
            measured_on, corners = measured_region(readings, regions, size)
            sharpness, contrast = region_figures(grey, corners)
            # Blurred outside the barcodes read, as snapshots are: the client's name and address
            # are not for whoever watches (regions found on the frame itself, before the blur).
            picture = image if self.unblurred else blur_outside(image, barcode_areas(readings))
            drawn = annotate(picture, readings, self.unmask, regions=regions)
            if zone:
                draw_dashed_box(drawn, zone, ZONE_BGR)
                x0, y0 = zone[:2]
                cv2.putText(drawn, "hold the card here", (x0, max(y0 - 8, 20)), cv2.FONT_HERSHEY_SIMPLEX, 0.7, ZONE_BGR, 2, cv2.LINE_AA)
            exposure = exposure_text(frame.exposure_us)
            if exposure:
                # Black under white: readable on a white card and a dark counter alike.
                at = (10, size[1] - 12)
                cv2.putText(drawn, exposure, at, cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 0), 4, cv2.LINE_AA)
                cv2.putText(drawn, exposure, at, cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 255), 1, cv2.LINE_AA)
            ok, data = cv2.imencode(".jpg", drawn, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
            self.encodes += 1
            jpeg = data.tobytes() if ok else b""
            figures = {
                "frame_size": list(size),
                "sharpness": sharpness,
                "contrast": contrast,
                "measured_on": measured_on,
                "exposure_us": frame.exposure_us,
                "smear_modules": None if frame.exposure_us is None else round(smear_modules(frame.exposure_us), 2),
            }
            self._rendered = (seq, jpeg, figures)
            return seq, jpeg

    def watching(self) -> bool:
        """Count one more stream; False when :data:`MAX_WATCHERS` are open already."""
        with self._changed:
            if self._watchers >= MAX_WATCHERS:
                return False
            self._watchers += 1
            return True

    def stopped_watching(self) -> None:
        with self._changed:
            self._watchers -= 1

    @property
    def closing(self) -> bool:
        return self._closing

    def page(self) -> bytes:
        return PAGE.replace("{{title}}", html.escape(self.title or "kiosk")).encode()


def default_socket(cfg) -> Path:
    """The live view's socket: :data:`~device.runtime_dir.PREVIEW_SOCKET` in ``kiosk.runtime_dir``."""
    return Path(cfg.kiosk.runtime_dir) / PREVIEW_SOCKET


def ssh_line(socket_path: Path, user: str, host: str, port: int = 8088) -> str:
    """The OpenSSH command that forwards a laptop's ``localhost:port`` to the live view's socket.

    >>> ssh_line(Path("/run/kiosk/preview.sock"), "pi", "kiosk-7")
    'ssh -L 8088:/run/kiosk/preview.sock pi@kiosk-7'
    """
    return f"ssh -L {port}:{socket_path} {user}@{host}"


def daemon_preview(cfg) -> PreviewOutput | None:
    """The daemon's live view when ``preview.enabled``; None when it is not, or when its socket
    cannot be made (logged): a live view must never stop the kiosk."""
    if not cfg.preview.enabled:
        return None
    path = default_socket(cfg)
    try:
        path.parent.mkdir(mode=0o750, parents=True, exist_ok=True)
        return PreviewOutput.from_config(cfg, socket_path=path)
    except OSError as e:
        log.error("preview: cannot listen on %s (%s): the live view is off (check kiosk.runtime_dir)", path, e.strerror or e)
        return None


def watch_camera(source, reopen, cfg, preview: PreviewOutput, stop: threading.Event) -> None:
    """``kiosk preview`` without the daemon: frames from ``source`` through the scanner pipeline
    into ``preview`` until ``stop``; nothing is identified or stored.

    A finite source (a file camera) that ends is replaced by ``reopen()``: it plays again. A
    camera that gives no frames is shown on the page as the daemon shows it, a ``camera`` fault.
    The source in use at the end is closed.
    """
    from device.camera import CameraError
    from device.pipeline import Pipeline

    pipeline = Pipeline.from_config(cfg)
    try:
        while not stop.is_set():
            try:
                frame = source.read(timeout=0.5)
            except CameraError as e:
                preview.on_fault_raised(FaultRaised(CAMERA, str(e)))
                continue
            if frame is None:
                source.close()
                source = reopen()
                continue
            preview.on_fault_cleared(FaultCleared(CAMERA, "frames arriving"))
            try:
                preview.on_frame(FrameScanned(pipeline.frame(frame, frame.monotonic), frame.index))
            except ValueError as e:  # an odd frame: the next one will do
                log.debug("frame %d skipped: %s", frame.index, e)
    finally:
        source.close()


# --- the HTTP side ----------------------------------------------------------------------------


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    """The HTTP server on a Unix socket: at most :data:`MAX_CONNECTIONS` connections at a time,
    each in its own thread; one more is answered 503 at once and closed."""

    daemon_threads = True
    request_queue_size = 64

    def __init__(self, path: Path, preview: PreviewOutput):
        self.preview = preview
        self.path = path
        self.connections = 0
        self.refused = 0
        self._count = threading.Lock()
        super().__init__(str(path), _Handler)

    def server_bind(self) -> None:
        """Bind to :attr:`path`: a socket an earlier run left there is replaced, anything else is
        not the kiosk's to remove; then 0660 and the folder's group (the technicians')."""
        try:
            found = os.lstat(self.path)
        except FileNotFoundError:
            pass
        else:
            if not stat.S_ISSOCK(found.st_mode):
                raise FileExistsError(17, "exists and is not a socket (not the kiosk's to remove)", str(self.path))
            self.path.unlink()
        self.socket.bind(str(self.path))
        os.chmod(self.path, SOCKET_MODE)
        group = self.path.parent.stat().st_gid
        if os.stat(self.path).st_gid != group:
            try:
                os.chown(self.path, -1, group)  # root's `kiosk preview`: the technicians' group, as the folder's
            except PermissionError:
                pass  # not ours to give: it stays the process's group
        self.server_address = str(self.path)

    def remove_socket(self) -> None:
        try:
            if stat.S_ISSOCK(os.lstat(self.path).st_mode):
                self.path.unlink()
        except OSError:
            pass

    def process_request(self, request, client_address) -> None:
        with self._count:
            busy = self.connections >= MAX_CONNECTIONS
            if not busy:
                self.connections += 1
            else:
                self.refused += 1
        if busy:
            _refuse(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._done()
            raise

    def process_request_thread(self, request, client_address) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._done()

    def _done(self) -> None:
        with self._count:
            self.connections -= 1

    def handle_error(self, request, client_address) -> None:
        """A viewer that left early (a closed tab, a dropped tunnel) is one line; anything else is a bug, with its traceback."""
        error = sys.exc_info()[1]
        if isinstance(error, OSError):
            log.info("preview: a viewer left before its answer was sent (%s)", type(error).__name__)
        else:
            log.exception("preview: a request failed")


def _refuse(request: socket.socket) -> None:
    """503 to a connection over :data:`MAX_CONNECTIONS`, without waiting for it to read, then closed."""
    body = f"{MAX_CONNECTIONS} connections are served already: try again\n".encode()
    try:
        request.setblocking(False)
        request.send(
            b"HTTP/1.0 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n"
            + b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
        )
    except OSError:
        pass
    finally:
        request.close()


class _UntilDeadline(io.RawIOBase):
    """A connection's reading side that ends at ``deadline`` (monotonic) in all: each read waits
    only what is left, so a client sending a byte at a time cannot stretch it."""

    def __init__(self, sock: socket.socket, deadline: float):
        self.sock = sock
        self.deadline = deadline

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"no request within {HEADER_DEADLINE_S:g} s")
        self.sock.settimeout(left)
        return self.sock.recv_into(buffer)


class _Handler(http.server.BaseHTTPRequestHandler):
    """GET of the page, the stream and the figures; anything else is refused."""

    server: _Server
    server_version = "kiosk-preview"
    sys_version = ""
    timeout = 15  # a watcher that stops reading is let go, not waited for

    def setup(self) -> None:
        super().setup()
        # The request line and headers within HEADER_DEADLINE_S in all; GETs have no body.
        self.rfile = io.BufferedReader(_UntilDeadline(self.connection, time.monotonic() + HEADER_DEADLINE_S))

    def address_string(self) -> str:
        return "a local viewer"  # a Unix socket's peer has no address

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        preview = self.server.preview
        self.connection.settimeout(self.timeout)  # the headers are in: writes wait per send, as a stream needs
        if not self._host_is_local():
            self._send(403, "text/plain; charset=utf-8", b"the live view answers only to localhost, 127.0.0.1 or [::1]\n")
            return
        path = urlsplit(self.path).path
        if path == "/":
            self._send(200, "text/html; charset=utf-8", preview.page())
        elif path == "/figures.json":
            self._send(200, "application/json", json.dumps(preview.figures()).encode())
        elif path == "/stream.mjpg":
            self._stream(preview)
        elif path == "/favicon.ico":  # browsers ask; nothing to show, and no 404 in their console
            self._send(204, "text/plain; charset=utf-8", b"")
        else:
            self._send(404, "text/plain; charset=utf-8", b"not here: / is the live view\n")

    def _host_is_local(self) -> bool:
        host = (self.headers.get("Host") or "").strip().lower()
        name = host[: host.index("]") + 1] if host.startswith("[") and "]" in host else host.rpartition(":")[0] or host
        return name in LOCAL_HOSTS

    def _headers(self, code: int, content_type: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Cross-Origin-Resource-Policy", "same-origin")
        self.send_header("Referrer-Policy", "no-referrer")
        self.send_header("X-Frame-Options", "DENY")
        self.send_header("Content-Security-Policy", CSP)

    def _send(self, code: int, content_type: str, body: bytes) -> None:
        self._headers(code, content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _stream(self, preview: PreviewOutput) -> None:
        if not preview.watching():
            self._send(503, "text/plain; charset=utf-8", f"{MAX_WATCHERS} streams are open already\n".encode())
            return
        try:
            self._headers(200, "multipart/x-mixed-replace; boundary=frame")
            self.end_headers()
            seq = 0
            while not preview.closing:
                started = time.monotonic()
                frame = preview.next_jpeg(seq, timeout=1.0)
                if frame is None:
                    continue
                seq, jpeg = frame
                self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n%s\r\n" % (len(jpeg), jpeg))
                self.wfile.flush()
                # At most STREAM_FPS a second: the rest of the time belongs to the scan loop.
                time.sleep(max(0.0, started + 1.0 / STREAM_FPS - time.monotonic()))
        except OSError as e:  # the watcher went away (closed the tab, the tunnel dropped): one line
            log.info("preview: a viewer stopped watching (%s)", type(e).__name__)
        finally:
            preview.stopped_watching()

    def log_message(self, format: str, *args) -> None:  # noqa: A002 (http.server's name)
        log.debug("preview: %s %s", self.address_string(), format % args)


_SCRIPT = """
const show = (id, text) => { document.getElementById(id).textContent = text; };
async function tick() {
  try {
    const f = await (await fetch('/figures.json', {cache: 'no-store'})).json();
    show('fps', f.fps.toFixed(1) + ' frames/s');
    show('sharpness', f.sharpness === null ? 'waiting for a frame' : f.sharpness.toFixed(0));
    show('contrast', f.contrast === null ? '-' : Math.round(f.contrast * 100) + ' %');
    show('measured', f.measured_on === null ? '-' : 'on the ' + f.measured_on);
    show('zone', f.zone === null ? 'no card read yet: show one' :
      f.zone.reads + ' reads within x ' + f.zone.box[0] + '-' + f.zone.box[2] + ', y ' + f.zone.box[1] + '-' + f.zone.box[3]);
    show('exposure', f.exposure_us === null ? 'not reported by the camera' :
      (f.exposure_us / 1000).toFixed(1) + ' ms: ' + f.smear_modules.toFixed(1) + ' modules of smear at 20 cm/s');
    show('camera', f.camera + (f.frame_size ? ' (' + f.frame_size[0] + 'x' + f.frame_size[1] + ')' : ''));
    const faults = Object.entries(f.faults).map(([name, why]) => 'FAULT ' + name + ': ' + why);
    show('faults', faults.length ? faults.join('\\n') : 'none');
  } catch (e) {
    show('fps', 'the kiosk does not answer');
  }
  setTimeout(tick, 500);
}
const view = document.getElementById('view');
view.onerror = () => setTimeout(() => { view.src = '/stream.mjpg?' + Date.now(); }, 1000);
tick();
"""

_STYLE = """
body { font: 15px system-ui, sans-serif; margin: 0; background: #1d1f21; color: #eee; display: flex; flex-wrap: wrap; }
main { flex: 1 1 640px; padding: 8px; } #view { width: 100%; height: auto; display: block; background: #000; }
aside { flex: 0 1 300px; padding: 8px 16px; } h1 { font-size: 18px; } dt { color: #9aa; margin-top: 10px; }
dd { margin: 2px 0 0 0; font-size: 20px; } #faults { white-space: pre-wrap; font-size: 15px; } p { color: #9aa; font-size: 13px; }
"""


def _csp_hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


#: Only this page's own script and style run; images and data only from here; no framing.
CSP = (
    f"default-src 'none'; img-src 'self'; connect-src 'self'; script-src {_csp_hash(_SCRIPT)}; "
    f"style-src {_csp_hash(_STYLE)}; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)

PAGE = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>kiosk preview: {{{{title}}}}</title><style>{_STYLE}</style></head>
<body><main><img id="view" src="/stream.mjpg" alt="the camera's view"></main>
<aside><h1>{{{{title}}}}: aiming the camera</h1>
<dl><dt>frame rate</dt><dd id="fps">-</dd>
<dt>sharpness (variance of the Laplacian; turn the focus for the highest)</dt><dd id="sharpness">-</dd>
<dt>contrast (bars against spaces)</dt><dd id="contrast">-</dd>
<dt>measured</dt><dd id="measured">-</dd>
<dt>where cards read (dashed box: hold the card here)</dt><dd id="zone">-</dd>
<dt>exposure (a card moving at 20 cm/s smears; over 2 modules does not read)</dt><dd id="exposure">-</dd>
<dt>camera</dt><dd id="camera">-</dd>
<dt>faults</dt><dd id="faults">-</dd></dl>
<p>Amber: barcode-like regions; green: a card read; red: a barcode that is not a card.
Contract numbers are masked unless log.unmask is set.</p></aside>
<script>{_SCRIPT}</script></body></html>
"""
