"""Camera snapshots for the technician: ``kiosk diag camera`` with or without the daemon.

A snapshot is one frame, what was decoded in it, and a picture: by default the card's printed
name and address are blurred beyond reading outside the barcodes (:mod:`device.daemon.masking`)
and the located barcodes are drawn on it (:func:`annotate`); ``raw`` leaves the drawings off (the
picture can be scanned again with ``kiosk scan``), ``unmask`` keeps the whole picture. Snapshot
files are written 0600 (the one in the runtime directory 0640, see :data:`RUNTIME_MODE`).

Without the daemon, :func:`from_camera` opens the camera itself. While the daemon runs it owns
the camera, so :func:`from_daemon` leaves a request file in the runtime directory and
:class:`SnapshotService` (called from the supervisor's housekeeping turn) answers it with the
latest decoded frame and its readings::

    snapshots = SnapshotService(Path("/run/kiosk"), unmask=False)
    snapshots.answer(loop.latest)   # writes snapshot.png and snapshot.json if a request waits

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
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from device import status
from device.daemon.masking import barcode_areas, blur_outside
from device.pipeline import Reading
from device.redact import describe_text, mask_contract
from device.vision.decoders import as_grey
from device.vision.locate import Locator, Region

log = logging.getLogger(__name__)

REGION_BGR = (0, 200, 255)  # amber: "a barcode-like region was found here"
CARD_BGR = (0, 200, 0)  # green: a client card was read
OTHER_BGR = (0, 0, 255)  # red: read, but not a card


def annotate(image: np.ndarray, readings: list[Reading], unmask: bool = False, regions: list[Region] | None = None) -> np.ndarray:
    """A copy of ``image`` (BGR) with located regions and decoded symbols drawn, to aim and focus by.

    ``regions``: the located regions when the caller has found them already (else found here).

        cv2.imwrite("aim.jpg", annotate(frame.image, result.readings))
    """
    out = image.copy() if image.ndim == 3 else cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    for region in Locator().find(as_grey(image)) if regions is None else regions:
        pts = np.asarray(region.corners, np.int32).reshape(-1, 1, 2)
        cv2.polylines(out, [pts], True, REGION_BGR, 2)
    for reading in readings:
        colour = CARD_BGR if reading.card else OTHER_BGR
        label = (
            f"card {mask_contract(reading.card.contract, unmask)}" + ("" if reading.card.issue is None else f"/{reading.card.issue:02d}")
            if reading.card
            else f"{reading.symbol.symbology} {describe_text(reading.symbol.text, unmask)}: {reading.rejection.reason}"
        )
        if reading.symbol.quad:
            pts = np.asarray(reading.symbol.quad, np.int32).reshape(-1, 1, 2)
            cv2.polylines(out, [pts], True, colour, 3)
            x, y = pts[:, 0, 0].min(), pts[:, 0, 1].min()
        else:
            x, y = 10, 30
        cv2.putText(out, label, (int(x), max(int(y) - 8, 20)), cv2.FONT_HERSHEY_SIMPLEX, 0.8, colour, 2, cv2.LINE_AA)
    return out


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
    outside the barcodes, and whole contract numbers in the labels."""

    raw: bool = False
    unmask: bool = False


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
    unmask = options.unmask or unmask_labels
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


def from_camera(cfg, options: SnapshotOptions, timeout: float) -> tuple[str, Snapshot]:
    """Open the camera as ``cfg.camera`` says, take one frame and decode it with the daemon's
    pipeline: the camera's description (focus mode, lens position) and the snapshot."""
    from device.camera import CameraError, open_camera
    from device.pipeline import Pipeline

    try:
        source = open_camera(cfg.camera, pace="fast")
    except (CameraError, ValueError) as e:
        raise SnapshotError(str(e)) from None
    try:
        frame, last_error = None, None
        deadline = time.monotonic() + timeout
        while frame is None and time.monotonic() < deadline:
            try:
                frame = source.read(timeout=max(0.1, deadline - time.monotonic()))
            except CameraError as e:
                last_error = e
                continue
            if frame is None:  # a file that ended
                break
        if frame is None:
            why = f": {last_error}" if last_error else ""
            raise SnapshotError(f"no frame from {cfg.camera.source} within {timeout:g} s{why}")
        described = source.describe()
    finally:
        source.close()
    readings = Pipeline.from_config(cfg).still(frame.image)
    return described, make_snapshot(frame.image, readings, options, cfg.log.unmask)


def from_daemon(runtime_dir: Path, options: SnapshotOptions, timeout: float, running: Callable[[], bool]) -> Snapshot:
    """Ask the running daemon for its latest decoded frame, waiting up to ``timeout`` seconds
    while ``running()`` says it still runs. ``PermissionError`` when the runtime directory is
    not the caller's to write."""
    ident = uuid.uuid4().hex
    request = runtime_dir / status.SNAPSHOT_REQUEST
    try:
        # Readable by all: the daemon's user must read it, and it holds nothing but options.
        _write_atomically(request, json.dumps({"id": ident, **asdict(options)}).encode(), 0o644)
    except PermissionError as e:  # named by the request, not by the temporary file
        raise PermissionError(e.errno, e.strerror, str(request)) from None
    answer = runtime_dir / status.SNAPSHOT_ANSWER
    deadline = time.monotonic() + timeout
    next_check = time.monotonic() + status.WRITE_INTERVAL_S
    while True:
        found = _read_answer(answer)
        if found.get("id") == ident:
            break
        if time.monotonic() > deadline:
            raise SnapshotError(f"the daemon did not answer within {timeout:g} s (is it busy or hung? see kiosk status; --timeout waits longer)")
        if time.monotonic() > next_check:
            if not running():
                raise SnapshotError("the daemon stopped before it answered: run kiosk diag camera again (it then opens the camera itself)")
            next_check = time.monotonic() + status.WRITE_INTERVAL_S
        time.sleep(0.1)
    if found.get("error"):
        raise SnapshotError(f"the daemon has no frame: {found['error']} (see kiosk status)")
    image = cv2.imread(str(runtime_dir / status.SNAPSHOT_FILE), cv2.IMREAD_UNCHANGED)
    for path in (answer, runtime_dir / status.SNAPSHOT_FILE):  # a snapshot does not linger there
        path.unlink(missing_ok=True)
    if image is None:
        raise SnapshotError(f"the daemon's snapshot {runtime_dir / status.SNAPSHOT_FILE} is gone or unreadable: try again")
    return Snapshot(image, tuple(found["size"]), found["readings"])


def _read_answer(path: Path) -> dict:
    try:
        found = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except ValueError:  # replaced atomically, so only a foreign file: not ours
        return {}
    return found if isinstance(found, dict) else {}


class SnapshotService:
    """Answers ``kiosk diag camera`` requests left in ``runtime_dir`` while the daemon runs.

    The request (JSON: ``id``, ``raw``, ``unmask``) is claimed by renaming it, so a request
    made meanwhile waits for the next turn. The answer is the picture (:data:`status.SNAPSHOT_FILE`)
    and then, naming the request, the readings (:data:`status.SNAPSHOT_ANSWER`), or an error
    when no frame has been decoded yet.

    :param runtime_dir: ``kiosk.runtime_dir``, where the request and the snapshot live.
    :param unmask: ``log.unmask``: whole contract numbers in the labels and readings.
    """

    def __init__(self, runtime_dir: Path, *, unmask: bool):
        self.runtime_dir = runtime_dir
        self.unmask = unmask

    def answer(self, latest: tuple[np.ndarray, list[Reading]] | None) -> None:
        """If a request waits, answer it with ``latest`` (the last decoded frame and its readings)."""
        claimed = self.runtime_dir / f".{status.SNAPSHOT_REQUEST}.claimed"
        try:
            os.replace(self.runtime_dir / status.SNAPSHOT_REQUEST, claimed)
        except FileNotFoundError:
            return
        try:
            ident, options = _parse_request(claimed)
            answer: dict = {"id": ident}
            if latest is None:
                answer["error"] = "no frame decoded since the daemon started (is the camera down?)"
            else:
                shot = make_snapshot(*latest, options, self.unmask)
                write_image(self.runtime_dir / status.SNAPSHOT_FILE, shot.image, RUNTIME_MODE)
                answer.update(size=list(shot.size), readings=shot.readings)
            _write_atomically(self.runtime_dir / status.SNAPSHOT_ANSWER, json.dumps(answer).encode(), RUNTIME_MODE)
        except OSError as e:  # a full or read-only runtime directory: the request fails, the daemon goes on
            log.warning("cannot answer the snapshot request: %s", e)
        finally:
            claimed.unlink(missing_ok=True)


def _parse_request(path: Path) -> tuple[str, SnapshotOptions]:
    """The request's id and options; anything unreadable gives the defaults (masked, drawn)."""
    try:
        request = json.loads(path.read_text())
    except (OSError, ValueError):
        request = None
    if not isinstance(request, dict):
        return "", SnapshotOptions()
    return str(request.get("id", "")), SnapshotOptions(raw=request.get("raw") is True, unmask=request.get("unmask") is True)
