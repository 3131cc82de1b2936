"""Camera snapshots for the technician: ``kiosk diag camera`` with or without the daemon.

A snapshot is one frame, what was decoded in it, and a picture: by default the card's printed
name and address are blurred beyond reading outside the barcodes (:mod:`device.outputs.masking`)
and the located barcodes are drawn on it (:func:`~device.outputs.annotate.annotate`); ``raw`` leaves the drawings off (the
picture can be scanned again with ``kiosk scan``), ``unmask`` keeps the whole picture. Snapshot
files are written 0600 (the one in the runtime directory 0640, see :data:`RUNTIME_MODE`).

Without the daemon, :func:`from_camera` opens the camera itself. While the daemon runs it owns
the camera, so :func:`from_daemon` leaves a request in the runtime directory's request folder
and :class:`SnapshotService` (called from the supervisor's housekeeping turn) answers it with
the latest decoded frame and its readings::

    snapshots = SnapshotService(Path("/run/kiosk"), unmask=False)
    snapshots.answer(loop.latest)   # writes snapshot-<id>.png and .json for each request waiting

    shot = from_daemon(Path("/run/kiosk"), SnapshotOptions(raw=True), timeout=10, running=lambda: True)
    write_image(Path("s.png"), shot.image)
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from device import status
from device.camera.frame import Frame
from device.daemon.requests import Request, RequestFolder
from device.outputs.annotate import annotate
from device.outputs.masking import barcode_areas, blur_outside
from device.pipeline import Reading
from device.redact import describe_text, mask_contract
from device.vision.decoders import as_grey
from device.vision.locate import Locator

log = logging.getLogger(__name__)

#: A snapshot the user asked for (``--snapshot FILE``) is theirs alone.
PRIVATE_MODE = 0o600
#: The daemon's answer in the runtime directory: its user, and the runtime directory's group
#: (where that group is the technicians', they read it without sudo); never others.
RUNTIME_MODE = 0o640
#: JPEG quality of ``.jpg`` snapshots: high enough that a raw one still scans.
JPEG_QUALITY = 95


@dataclass(frozen=True)
class SnapshotOptions:
    """How the picture is made. ``raw``: no drawings. ``unmask``: the whole picture, not blurred
    outside the barcodes, and whole contract numbers in the labels. ``masked``: contract numbers
    masked in the labels and readings even where ``log.unmask`` shows them (the bundle, which
    leaves the kiosk)."""

    raw: bool = False
    unmask: bool = False
    masked: bool = False


@dataclass(frozen=True)
class Snapshot:
    """A frame as a snapshot: the picture (masked and drawn as asked), the frame size, and the
    readings as :meth:`Reading.to_json` gives them (masked unless asked otherwise)."""

    image: np.ndarray
    size: tuple[int, int]
    readings: list[dict]


class SnapshotError(Exception):
    """No snapshot could be had; the message says why and what to look at."""


def make_snapshot(image: np.ndarray, readings: list[Reading], options: SnapshotOptions, unmask_labels: bool = False) -> Snapshot:
    """The snapshot of a decoded frame. ``unmask_labels``: ``log.unmask`` (whole contracts in
    labels and readings, the picture still blurred unless ``options.unmask``)."""
    unmask = options.unmask or (unmask_labels and not options.masked)
    picture = image if options.unmask else blur_outside(image, barcode_areas(readings))
    if not options.raw:
        # Regions from the frame itself: the blurred picture hides the ones that did not read.
        picture = annotate(picture, readings, unmask, regions=Locator().find(as_grey(image)))
    h, w = image.shape[:2]
    return Snapshot(picture, (w, h), [r.to_json(unmask) for r in readings])


def reading_lines(readings: list[dict], unmask: bool = False) -> list[str]:
    """One line per reading for a person: symbology, text, and card or why not (masked unless ``unmask``)."""
    lines = []
    for r in readings:
        card = r.get("card")
        if card:
            issue = "" if card.get("issue") is None else f" issue {card['issue']}"
            what = f"card, contract {mask_contract(str(card['contract']), unmask)}{issue}"
        else:
            what = f"not a card ({r.get('reject')})"
        lines.append(f"  {r.get('symbology')} {describe_text(str(r.get('text', '')), unmask)} -> {what}")
    return lines


def write_image(path: Path, image: np.ndarray, mode: int = PRIVATE_MODE) -> None:
    """Write ``image`` in the format its suffix names (``.png``, ``.jpg``), atomically, with ``mode``
    from the start (never readable by others, not even for a moment). ``ValueError`` for a suffix
    OpenCV cannot write."""
    params = [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY] if path.suffix.lower() in (".jpg", ".jpeg") else []
    try:
        ok, data = cv2.imencode(path.suffix or ".png", image, params)
    except cv2.error:
        ok = False
    if not ok:
        raise ValueError(f"cannot write {path}: not an image type OpenCV writes (use .png or .jpg)")
    _write_atomically(path, data.tobytes(), mode)


def _write_atomically(path: Path, data: bytes, mode: int) -> None:
    """Replace ``path`` with ``data``: readers see the old file or the new one, never half, and
    the new one has ``mode`` from its first byte on."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")  # created 0600
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), mode)
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


#: A camera that does not say whether its auto-exposure and autofocus settled (a USB webcam, a
#: file) gets this many frames, at least :data:`SETTLE_MIN_S` seconds, before one is taken: a
#: webcam's auto-exposure converges within about a second at 30 fps.
SETTLE_FRAMES = 30
SETTLE_MIN_S = 1.0


def take_settled_frame(source, timeout: float) -> tuple[Frame | None, str, Exception | None]:
    """A frame from ``source`` taken once its exposure and focus have settled, within ``timeout``.

    The camera's first frames are taken before auto-exposure and autofocus found their way (a
    Camera Module 3 starts with its lens at 1 m): misleading for focusing. A live source that says
    (:meth:`~device.camera.grabber.LiveSource.settled`, from libcamera's ``AeLocked``/``AeState`` and
    ``AfState``) is read until it says so, and the frame after that is taken; one that does not say
    is read for :data:`SETTLE_FRAMES` frames and :data:`SETTLE_MIN_S` seconds. A file is taken as it
    is. Returns the frame (None: none came), how it settled, for the technician, and the last error.
    """
    from device.camera import CameraError, CorruptFrame

    deadline = time.monotonic() + timeout
    first_at: float | None = None
    frame, last_error, frames = None, None, 0
    settled_at: int | None = None  # frames read when the camera first said it settled
    settled_now = getattr(source, "settled", lambda: None)
    while time.monotonic() < deadline:
        try:
            candidate = source.read(timeout=max(0.1, deadline - time.monotonic()))
        except CameraError as e:
            last_error = e
            continue
        if candidate is None:  # a file that ended
            break
        try:
            candidate.check()  # sources check only a JPEG buffer's ends: this one is decoded, so check it all
        except CorruptFrame as e:
            last_error = e
            continue
        frame, frames = candidate, frames + 1
        first_at = first_at if first_at is not None else time.monotonic()
        if source.finite:
            return frame, "", None
        if settled_at is not None:  # the first frame read after the camera said so: captured settled
            return frame, f"exposure and focus settled after {settled_at} frame(s)", None
        said = settled_now()
        if said is True:
            settled_at = frames
        if said is None and frames >= SETTLE_FRAMES and time.monotonic() - first_at >= SETTLE_MIN_S:
            return frame, f"after {frames} frames (the camera does not say when its exposure settled)", None
    if frame is None:
        return None, "", last_error
    return frame, f"NOT settled within {timeout:g} s: exposure or focus still searching (--timeout waits longer)", last_error


def from_camera(cfg, options: SnapshotOptions, timeout: float) -> tuple[str, Snapshot]:
    """Open the camera as ``cfg.camera`` says, take one frame once exposure and focus have settled
    (:func:`take_settled_frame`) and decode it with the daemon's pipeline: the camera's description
    (what it set up and applied, and how it settled) and the snapshot."""
    from device.camera import CameraError, open_camera
    from device.pipeline import Pipeline

    try:
        source = open_camera(cfg.camera, pace="fast")
    except (CameraError, ValueError) as e:
        raise SnapshotError(str(e)) from None
    try:
        frame, settling, last_error = take_settled_frame(source, timeout)
        if frame is None:
            why = f": {last_error}" if last_error else ""
            raise SnapshotError(f"no frame from {cfg.camera.source} within {timeout:g} s{why}")
        described = source.describe() + (f"; {settling}" if settling else "")
    finally:
        source.close()
    readings = Pipeline.from_config(cfg).still(frame.image)
    return described, make_snapshot(frame.image, readings, options, cfg.log.unmask)


def from_daemon(runtime_dir: Path, options: SnapshotOptions, timeout: float, running: Callable[[], bool]) -> Snapshot:
    """Ask the running daemon for its latest decoded frame, waiting up to ``timeout`` seconds
    while ``running()`` says it still runs. ``PermissionError`` when the request folder is not
    the caller's to write (not root, not the daemon's user, not in its group)."""
    ident = uuid.uuid4().hex
    folder = runtime_dir / status.REQUESTS_DIR
    if not folder.is_dir():
        raise SnapshotError(status.no_request_folder(folder))
    request = folder / f"{status.SNAPSHOT_PREFIX}{ident}.request"
    try:
        # Readable by all: the daemon's user must read it, and it holds nothing but options.
        _write_atomically(request, json.dumps(asdict(options)).encode(), 0o644)
    except PermissionError as e:  # named by the folder, not by the temporary file
        raise PermissionError(e.errno, e.strerror, str(folder)) from None
    picture, answer = answer_paths(runtime_dir, ident)
    deadline = time.monotonic() + timeout
    next_check = time.monotonic() + status.WRITE_INTERVAL_S
    try:
        while not answer.exists():
            if time.monotonic() > deadline:
                raise SnapshotError(
                    f"the daemon did not answer within {timeout:g} s (is it busy or hung? see kiosk status; --timeout waits longer)"
                )
            if time.monotonic() > next_check:
                if not running():
                    raise SnapshotError(
                        "the daemon stopped before it answered: run kiosk diag camera again (it then opens the camera itself)"
                    )
                next_check = time.monotonic() + status.WRITE_INTERVAL_S
            time.sleep(0.1)
        found = _read_answer(answer)
        if found.get("error"):
            raise SnapshotError(f"the daemon has no frame: {found['error']} (see kiosk status)")
        image = cv2.imread(str(picture), cv2.IMREAD_UNCHANGED)
        if image is None or "size" not in found:
            raise SnapshotError(f"the daemon's snapshot {picture} is gone or unreadable: try again")
        return Snapshot(image, tuple(found["size"]), found.get("readings", []))
    finally:
        request.unlink(missing_ok=True)  # not answered in time: the daemon need not answer it later
        for path in (answer, picture):  # a snapshot does not linger there...
            try:
                path.unlink(missing_ok=True)
            except PermissionError:
                pass  # ...but a technician may not remove the daemon's files: it does, after ANSWER_KEEP_S


def answer_paths(runtime_dir: Path, ident: str) -> tuple[Path, Path]:
    """Where the daemon answers request ``ident``: the picture, then the JSON."""
    stem = runtime_dir / f"{status.SNAPSHOT_PREFIX}{ident}"
    return stem.with_suffix(".png"), stem.with_suffix(".json")


def _read_answer(path: Path) -> dict:
    try:
        found = json.loads(path.read_text())
    except (OSError, ValueError):  # replaced atomically, so only a foreign file
        return {}
    return found if isinstance(found, dict) else {}


#: Answers nobody collected (the asker was a technician, who may not remove them, or gave up)
#: are removed after this many seconds.
ANSWER_KEEP_S = 60.0
#: At most this many requests are answered per housekeeping turn, newest first (a flood waits its
#: turn); one frame answers them all: its picture is written once per set of options and linked
#: as each answer's picture, so a flood costs links and small JSON files, never a picture each.
MAX_ANSWERS_PER_TURN = 64


class SnapshotService:
    """Answers ``kiosk diag camera`` requests left in the runtime directory's request folder.

    The folder (:data:`status.REQUESTS_DIR`) is screened by a
    :class:`~device.daemon.requests.RequestFolder`: only regular files named
    ``snapshot-<id>.request`` (JSON ``raw`` and ``unmask``) are read, without ever blocking; the
    newest are answered first, each requester at most so many a minute. Each is answered with the
    latest decoded frame: the picture, then the readings naming the size, or an error when no
    frame has been decoded yet (:func:`answer_paths`). Answers nobody took are removed after
    :data:`ANSWER_KEEP_S`.

    :param runtime_dir: ``kiosk.runtime_dir``, where the requests and the answers live.
    :param unmask: ``log.unmask``: whole contract numbers in the labels and readings.
    :param requests: the screened request folder (the supervisor shares it with sync requests).
    """

    def __init__(self, runtime_dir: Path, *, unmask: bool, requests: RequestFolder | None = None):
        self.runtime_dir = runtime_dir
        self.requests = requests or RequestFolder(runtime_dir / status.REQUESTS_DIR)
        self.folder = self.requests.folder
        self.unmask = unmask

    def answer(self, latest: tuple[np.ndarray, list[Reading]] | None, waiting: list[Request] | None = None) -> None:
        """Answer the requests that wait (``waiting``, newest first; by default the folder is
        screened now) with ``latest`` (the last decoded frame and its readings)."""
        if waiting is None:
            waiting = self.requests.scan().snapshots
        taken: dict[SnapshotOptions, list[str]] = {}
        answered = 0
        for request in waiting:
            if answered >= MAX_ANSWERS_PER_TURN:
                break
            if not self.requests.allowed(request):
                continue  # this requester asked too often: it waits, the others go on
            data = self.requests.read(request)
            if data is None or not self.requests.take(request):
                continue
            taken.setdefault(_parse_request(data), []).append(request.ident)
            answered += 1
        for options, idents in taken.items():
            self._answer(idents, options, latest)
        self.requests.counts.answered += answered
        self._remove_old_answers()

    def _answer(self, idents: list[str], options: SnapshotOptions, latest: tuple[np.ndarray, list[Reading]] | None) -> None:
        """Answer the requests ``idents`` (all asking ``options``) with one snapshot of ``latest``."""
        answer: dict = {}
        shared = None
        try:
            if latest is None:
                answer["error"] = "no frame decoded since the daemon started (is the camera down?)"
            else:
                shot = make_snapshot(*latest, options, self.unmask)
                shared = self.runtime_dir / f".{status.SNAPSHOT_PREFIX}shared-{uuid.uuid4().hex}.png"
                write_image(shared, shot.image, RUNTIME_MODE)
                answer.update(size=list(shot.size), readings=shot.readings)
            body = json.dumps(answer).encode()
            for ident in idents:
                picture, answer_file = answer_paths(self.runtime_dir, ident)
                if shared is not None:
                    picture.unlink(missing_ok=True)  # an id asked again: the new answer replaces the old
                    os.link(shared, picture)  # the same picture, no copy: a flood costs no space
                _write_atomically(answer_file, body, RUNTIME_MODE)
        except OSError as e:  # a full runtime directory: the requests fail, the daemon goes on
            log.warning("cannot answer the snapshot request: %s", e)
        finally:
            if shared is not None:
                shared.unlink(missing_ok=True)

    def _remove_old_answers(self) -> None:
        now = time.time()
        for path in self.runtime_dir.glob(f"{status.SNAPSHOT_PREFIX}*"):
            try:
                if now - path.stat().st_mtime > ANSWER_KEEP_S:
                    path.unlink()
            except OSError:
                pass  # taken meanwhile


def _parse_request(data: bytes) -> SnapshotOptions:
    """The request's options; anything that is not a JSON object gives the defaults (masked, drawn).

    >>> _parse_request(b'{"raw": true}'), _parse_request(b"not json") == SnapshotOptions()
    (SnapshotOptions(raw=True, unmask=False, masked=False), True)
    """
    try:
        request = json.loads(data)
    except ValueError:
        request = None
    if not isinstance(request, dict):
        return SnapshotOptions()
    return SnapshotOptions(**{name: request.get(name) is True for name in ("raw", "unmask", "masked")})
