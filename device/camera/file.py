"""Files as a camera: a video, an image, or a folder of images.

Used for benchmarks, ``kiosk scan`` and trying the daemon without a camera. Two ways in:

* :func:`iter_frames` -- every frame of one path, as fast as it decodes (``kiosk scan``)::

      for frame in iter_frames("counter.mp4"):      # CameraError if missing or unreadable
          print(frame.index, frame.image.shape)

* :class:`FileSource` -- a :class:`~device.camera.FrameSource` for the daemon; ``pace="realtime"``
  plays at the file's frame rate and, like a live camera, drops the frames a slow reader missed;
  ``pace="fast"`` hands out every frame as fast as the reader asks::

      with FileSource("counter.mp4", pace="realtime") as source:
          while (frame := source.read(timeout=1.0)) is not None:
              handle(frame)

Bad input never crashes: a corrupt or empty image in a folder is skipped with a warning naming
it, a video that fails part way ends there with a warning. Only a path that cannot be played at
all (missing, empty, not decodable, a folder without images) raises :class:`CameraError`.

Memory is bounded: an image (or a video's frame) of more than :data:`MAX_IMAGE_PIXELS` pixels is
refused before it is decoded, from the size its header states (a 76 KB PNG can say 20000x20000:
1.2 GB once decoded), and so is an image file of more than :data:`MAX_IMAGE_BYTES`.

Timestamps: for ``pace="fast"`` and :func:`iter_frames`, ``Frame.monotonic`` is *media time*
(the first read's ``time.monotonic()`` plus ``index / fps``), so time-based logic downstream
(the presentation window) sees the video's own timeline whatever the decoding speed. For
``"realtime"`` it is the moment the frame was handed out.
"""

from __future__ import annotations

import abc
import logging
import math
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import numpy as np

from device.camera import CameraError, CorruptFrame, Frame, FrameSource
from device.camera.frame import is_jpeg

log = logging.getLogger(__name__)
# Pillow reads every image's header (header_pixels) and logs each PNG chunk at DEBUG: with
# log.level = "DEBUG" a folder camera would flood the journal with them.
logging.getLogger("PIL").setLevel(logging.INFO)

#: File name endings read as still images (anything else in a folder is skipped quietly).
IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".jpe", ".png", ".bmp", ".dib", ".tif", ".tiff", ".webp", ".gif", ".pgm", ".ppm", ".pbm", ".pnm"}
)
#: Frame rate at which a folder of images plays in ``pace="realtime"``.
FOLDER_FPS = 5.0
#: Used when a video does not say its frame rate (or says something absurd).
FALLBACK_VIDEO_FPS = 30.0
MAX_VIDEO_FPS = 250.0

PACES = ("realtime", "fast")

#: Largest image or video frame decoded: 40 megapixels (a 12 MP camera photo three times over;
#: about 120 MB as BGR, within a 1 GB Pi's means). Larger ones are refused before decoding.
MAX_IMAGE_PIXELS = 40_000_000
#: Largest image file read into memory: enough for MAX_IMAGE_PIXELS uncompressed at 4 bytes a pixel.
MAX_IMAGE_BYTES = 4 * MAX_IMAGE_PIXELS + (1 << 20)


def is_image_path(path: str | Path) -> bool:
    """True when the name ends like an image file (``.jpg``, ``.png``, ...)."""
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def media_kind(path: str | Path) -> str:
    """``"folder"``, ``"image"`` or ``"video"`` (anything not a folder or an image name).

    ``kiosk scan`` uses it to print ``"frame": null`` for images and the index for videos.
    """
    p = Path(path)
    if p.is_dir():
        return "folder"
    return "image" if is_image_path(p) else "video"


def too_many_pixels(pixels: int, size: str, what: str = "image") -> str | None:
    """Why a picture of ``pixels`` pixels (``size``: "WxH") is not decoded, or None.

    >>> print(too_many_pixels(20000 * 20000, "20000x20000"))  # doctest: +NORMALIZE_WHITESPACE
    image of 20000x20000 pixels (400 megapixels) is larger than the 40 megapixels the kiosk decodes
    (it would take about 1144 MB of memory); scale it down
    """
    if pixels <= MAX_IMAGE_PIXELS:
        return None
    return (
        f"{what} of {size} pixels ({pixels / 1e6:.0f} megapixels) is larger than the "
        f"{MAX_IMAGE_PIXELS / 1e6:g} megapixels the kiosk decodes (it would take about "
        f"{pixels * 3 / 2**20:.0f} MB of memory); scale it down"
    )


def header_pixels(path: str | Path) -> tuple[int, str] | None:
    """(pixel count, "WxH") as an image file's header states them, without decoding anything;
    None if no image header is recognised. Reads only the first bytes (Pillow's lazy open)."""
    import warnings

    from PIL import Image, UnidentifiedImageError

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            with Image.open(path) as image:
                width, height = image.size
                return width * height, f"{width}x{height}"
        except Image.DecompressionBombError as e:
            # Pillow's own limit (far above ours) refused it before saying the size: its message has the count.
            found = re.search(r"\((\d+) pixels\)", str(e))
            pixels = int(found.group(1)) if found else 2 * Image.MAX_IMAGE_PIXELS
            return pixels, f"{pixels}" if found else f"more than {pixels}"
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
            return None


def load_image(path: str | Path) -> np.ndarray:
    """One image file as uint8 BGR (H x W x 3) or grey (H x W); CameraError saying what is wrong.

    The size in the file's header is checked first (:func:`image_size`): more than
    :data:`MAX_IMAGE_PIXELS` is refused before anything is decoded. Then the bytes are read in
    Python and decoded with ``cv2.imdecode`` (any path works, and a missing file gives our
    message rather than OpenCV's warning on stderr). EXIF orientation is applied; grey images
    stay grey (cheaper downstream); 16-bit images become 8-bit.
    """
    data, _size = _image_bytes(Path(path))
    return _decoded(Path(path), data)


def load_frame(path: Path, index: int) -> tuple[Frame, str]:
    """One image file as a still :class:`Frame`, and its size ("WxH"): a JPEG stays encoded (the
    gate needs only its 1/8-scale decode, checked here), anything else is decoded as
    :func:`load_image` does. CameraError as there."""
    data, size = _image_bytes(path)
    if not is_jpeg(data):
        return Frame(_decoded(path, data), index, origin=str(path), still=True), size
    frame = Frame(encoded=data, index=index, origin=str(path), still=True, colour=cv2.IMREAD_ANYCOLOR)
    try:
        frame.check()
    except CorruptFrame:
        raise CameraError(f"{path}: not a readable image ({data.size} bytes; corrupt or unsupported format)") from None
    return frame, size


def _image_bytes(p: Path) -> tuple[np.ndarray, str]:
    """The file's bytes and size ("WxH"), after the checks of :func:`load_image` (file size,
    header, pixel count)."""
    try:
        size = p.stat().st_size
    except FileNotFoundError:
        raise CameraError(f"{p}: no such file") from None
    except OSError as exc:
        raise CameraError(f"{p}: cannot read: {exc.strerror or exc}") from None
    if size == 0:
        raise CameraError(f"{p}: empty file (0 bytes)")
    if size > MAX_IMAGE_BYTES:
        raise CameraError(f"{p}: image file of {size / 2**20:.0f} MB is larger than the {MAX_IMAGE_BYTES / 2**20:.0f} MB the kiosk reads")
    header = header_pixels(p)
    if header is None:
        raise CameraError(f"{p}: not a readable image ({size} bytes; no image header recognised: corrupt or unsupported format)")
    if problem := too_many_pixels(*header):
        raise CameraError(f"{p}: {problem}")
    try:
        return np.fromfile(p, dtype=np.uint8), header[1]
    except OSError as exc:
        raise CameraError(f"{p}: cannot read: {exc.strerror or exc}") from None


def _decoded(p: Path, data: np.ndarray) -> np.ndarray:
    try:
        image = cv2.imdecode(data, cv2.IMREAD_ANYCOLOR)
    except cv2.error:
        image = None
    if image is None or image.size == 0:
        raise CameraError(f"{p}: not a readable image ({data.size} bytes; corrupt or unsupported format)")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    return image


def _natural_key(name: str) -> list:
    # "frame2" before "frame10": numbers in names compare as numbers.
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def image_files(folder: str | Path) -> list[Path]:
    """The images in ``folder`` (not its subfolders), sorted by name with numbers compared as numbers."""
    names = [p for p in Path(folder).iterdir() if p.is_file() and not p.name.startswith(".") and is_image_path(p)]
    return sorted(names, key=lambda p: _natural_key(p.name))


class _Clip(abc.ABC):
    """Frames of one path in order, with a cheap way to pass over frames nobody will look at."""

    path: Path
    fps: float
    kind: str
    #: Frames are still images (Frame.still), not frames of a video.
    still: bool = False
    #: Index the next decoded frame will have (at least; a folder skips corrupt images).
    next_index: int = 0

    @abc.abstractmethod
    def decode(self) -> Frame | None:
        """The next frame (``monotonic`` still to be set by the caller), or None at the end.

        It may come encoded (a JPEG file, an MJPEG video's packet): its buffer has been checked
        to decode, its full image is decoded when someone asks."""

    @abc.abstractmethod
    def skip(self) -> bool:
        """Pass over the next frame without decoding it fully; False at the end."""

    @property
    def exhausted(self) -> bool:
        """True when it is known that no frame is left (without trying to read one)."""
        return False

    def size_text(self) -> str:
        return ""

    @abc.abstractmethod
    def close(self) -> None:
        """Release what the clip holds open; each kind of clip says what that is."""


class _ImagesClip(_Clip):
    """A single image file or a folder's images."""

    still = True

    def __init__(self, path: Path, files: list[Path], kind: str, fps: float) -> None:
        self.path = path
        self.kind = kind
        self.fps = fps
        self._files = files
        self._first: Frame | None = None
        self._last_size = ""

    @classmethod
    def single(cls, path: Path, fps: float) -> _ImagesClip:
        clip = cls(path, [path], "image", fps)
        # Read and check now: an unreadable single image is an error at open, not an empty stream.
        clip._first, clip._last_size = load_frame(path, 0)
        return clip

    @property
    def exhausted(self) -> bool:
        return self.next_index >= len(self._files)

    def decode(self) -> Frame | None:
        while self.next_index < len(self._files):
            index = self.next_index
            file = self._files[index]
            self.next_index += 1
            if self._first is not None:
                frame, self._first = self._first, None
                return frame
            try:
                frame, self._last_size = load_frame(file, index)
            except CameraError as exc:
                log.warning("skipping image %d of %s: %s", index, self.path, exc)
                continue
            return frame
        return None

    def skip(self) -> bool:
        if self.exhausted:
            return False
        self.next_index += 1
        self._first = None
        return True

    def size_text(self) -> str:
        if self.kind == "folder":
            return f"{len(self._files)} images"
        return self._last_size

    def close(self) -> None:
        """Nothing to release: each image file is read whole, and closed, when it is decoded."""


class _VideoClip(_Clip):
    """A video file through cv2.VideoCapture."""

    kind = "video"

    def __init__(self, path: Path, raw: bool = True) -> None:
        self.path = path
        capture = cv2.VideoCapture(str(path))
        if not capture.isOpened():
            capture.release()
            raise CameraError(f"{path}: cannot open as a video or image (corrupt, or a format OpenCV cannot read)")
        fps = capture.get(cv2.CAP_PROP_FPS)
        # Some containers report a time base (1000, 90000) instead of a frame rate.
        if not (math.isfinite(fps) and 0 < fps <= MAX_VIDEO_FPS):
            log.info("%s: no usable frame rate in the video (%r); assuming %g fps", path, fps, FALLBACK_VIDEO_FPS)
            fps = FALLBACK_VIDEO_FPS
        self.fps = float(fps)
        count = capture.get(cv2.CAP_PROP_FRAME_COUNT)
        self.expected_frames = int(count) if math.isfinite(count) and count > 0 else None
        self.width = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH))
        self.height = int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
        if problem := too_many_pixels(self.width * self.height, f"{self.width}x{self.height}", "video with frames"):
            capture.release()  # before the first frame is decoded
            raise CameraError(f"{path}: {problem}")
        self._capture: cv2.VideoCapture | None = capture
        # An MJPEG video's packets are JPEG files: take them as they are (FFmpeg's raw mode,
        # CAP_PROP_FORMAT = -1), so that only the frames someone looks at are decoded in full.
        self.raw = raw and int(capture.get(cv2.CAP_PROP_FOURCC)) in MJPEG_FOURCCS and bool(capture.set(cv2.CAP_PROP_FORMAT, -1))
        # Decode the first frame now: a video with no decodable frame is an error at open.
        first = self._read_capture()
        if first is not None and self.raw and first.encoded is not None and not is_jpeg(first.encoded):
            # Not JPEG packets after all (the backend ignored raw mode or the codec lied): decode.
            capture.release()
            self._capture, self.raw = cv2.VideoCapture(str(path)), False
            first = self._read_capture()
        if first is None:
            self.close()
            raise CameraError(f"{path}: no frame could be decoded (corrupt or truncated video)")
        self._pending: Frame | None = first

    def _read_capture(self) -> Frame | None:
        """The next frame, or None at the end (or when decoding fails: the video ends there).
        In raw mode a packet that is not a decodable JPEG is passed over with a warning."""
        while self._capture is not None:
            try:
                ok, image = self._capture.read()
            except cv2.error as exc:
                log.warning("%s: decoding frame %d failed: %s", self.path, self.next_index, exc)
                return None
            if not ok or image is None or not image.size:
                return None
            if not self.raw:
                return Frame(image, origin=str(self.path))
            frame = Frame(encoded=image.copy(), origin=str(self.path))  # the backend reuses its buffer
            if not is_jpeg(image):
                return frame  # the caller, at open, falls back to decoded frames
            try:
                frame.check_framing()  # not decoded here: the gate of a quiet view skips most frames unlooked
            except CorruptFrame:
                log.warning("%s: frame %d is a corrupt JPEG, passed over", self.path, self.next_index)
                self.next_index += 1
                continue
            return frame
        return None

    def _ended(self) -> None:
        if self._capture is None:
            return
        if self.expected_frames is not None and self.next_index < self.expected_frames:
            log.warning(
                "%s: video ended after %d frames, its header says %d (truncated or corrupt?)",
                self.path,
                self.next_index,
                self.expected_frames,
            )
        self.close()

    def decode(self) -> Frame | None:
        if self._pending is not None:
            frame, self._pending = self._pending, None
        else:
            frame = self._read_capture()
            if frame is None:
                self._ended()
                return None
        frame.index = self.next_index
        self.next_index += 1
        return frame

    def skip(self) -> bool:
        if self._pending is not None:
            self._pending = None
        else:
            if self._capture is None:
                return False
            try:
                ok = self._capture.grab()  # demux and decode, but no colour conversion or copy
            except cv2.error:
                ok = False
            if not ok:
                self._ended()
                return False
        self.next_index += 1
        return True

    @property
    def exhausted(self) -> bool:
        return self._capture is None and self._pending is None

    def size_text(self) -> str:
        return f"{self.width}x{self.height}"

    def close(self) -> None:
        if self._capture is not None:
            self._capture.release()
            self._capture = None


#: CAP_PROP_FOURCC codes of Motion-JPEG video (AVI: "MJPG"; QuickTime: "jpeg", "mjpa").
MJPEG_FOURCCS = frozenset(cv2.VideoWriter_fourcc(*code) for code in ("MJPG", "mjpg", "jpeg", "mjpa", "AVRn", "LJPG"))


def _open_clip(path: str | Path, folder_fps: float, raw: bool = True) -> _Clip:
    p = Path(path)
    if not p.exists():
        raise CameraError(f"{p}: no such file or folder")
    if p.is_dir():
        try:
            files = image_files(p)
        except OSError as exc:
            raise CameraError(f"{p}: cannot list the folder: {exc.strerror or exc}") from None
        if not files:
            raise CameraError(f"{p}: no images in this folder (looked for {', '.join(sorted(IMAGE_EXTENSIONS))})")
        return _ImagesClip(p, files, "folder", folder_fps)
    if not p.is_file():
        raise CameraError(f"{p}: not a regular file or folder")
    if p.stat().st_size == 0:
        raise CameraError(f"{p}: empty file (0 bytes)")
    if is_image_path(p):
        return _ImagesClip.single(p, folder_fps)
    # OpenCV also opens an image as a one-frame "video", decoding it whole: an image bomb named
    # .avi is refused here, from its header, like one named .png.
    header = header_pixels(p)
    if header is not None and (problem := too_many_pixels(*header)):
        raise CameraError(f"{p}: {problem}")
    return _VideoClip(p, raw)


def iter_frames(path: str | Path) -> Iterator[Frame]:
    """Every frame of a video, image or folder of images, in order, as fast as they decode.

    Opens at once, so a missing or unreadable path raises :class:`CameraError` here (with a
    message naming it), not on the first ``next()``. Corrupt images in a folder and a video that
    fails part way are logged and passed over. ``Frame.index`` is the frame number in the video
    or the position in the (sorted) folder; ``Frame.origin`` is the video's or the image's path;
    ``Frame.still`` is True for images.
    """
    clip = _open_clip(path, FOLDER_FPS)
    return _iterate(clip)


def _iterate(clip: _Clip) -> Iterator[Frame]:
    start = time.monotonic()
    try:
        while (frame := clip.decode()) is not None:
            frame.monotonic = start + frame.index / clip.fps
            yield frame
    finally:
        clip.close()


class FileSource(FrameSource):
    """A video, an image or a folder of images played as a camera; see the module docstring.

    ``pace`` is ``"realtime"`` (the video's frame rate, ``folder_fps`` for images; frames the
    reader was too slow for are dropped, as with a live camera) or ``"fast"`` (every frame, no
    waiting). ``clock`` and ``sleep`` are injectable so tests can check the pacing without
    waiting. ``raw=False`` has OpenCV decode every frame of an MJPEG video as it is read (the
    kiosk before it gated on thumbnails; ``kiosk bench idle`` compares). Raises
    :class:`CameraError` when the path cannot be played at all.
    """

    finite = True

    def __init__(
        self,
        path: str | Path,
        pace: str = "realtime",
        *,
        folder_fps: float = FOLDER_FPS,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        raw: bool = True,
    ) -> None:
        if pace not in PACES:
            raise ValueError(f"camera pace {pace!r}: expected one of {', '.join(PACES)}")
        if not folder_fps > 0:
            raise ValueError(f"folder_fps must be > 0, got {folder_fps!r}")
        self.path = Path(path)
        self.pace = pace
        self._clock = clock
        self._sleep = sleep
        self._clip: _Clip | None = _open_clip(self.path, folder_fps, raw)
        self.kind = self._clip.kind
        self.fps = self._clip.fps
        self._start: float | None = None
        self._returned = 0
        self._dropped = 0
        self._size_text = self._clip.size_text()

    @property
    def frames_returned(self) -> int:
        """Frames handed out by :meth:`read` so far."""
        return self._returned

    @property
    def frames_dropped(self) -> int:
        """Frames passed over because the reader was slower than real time (realtime pace only)."""
        return self._dropped

    def read(self, timeout: float | None = None) -> Frame | None:
        clip = self._clip
        if clip is None:
            return None
        now = self._clock()
        if self._start is None:
            self._start = now  # the file starts playing when the reader first asks
        if self.pace == "realtime" and not self._wait_for_next(clip, now, timeout):
            return self._finish()
        frame = clip.decode()
        if frame is None:
            return self._finish()
        self._returned += 1
        frame.monotonic = self._clock() if self.pace == "realtime" else self._start + frame.index / clip.fps
        return frame

    def _wait_for_next(self, clip: _Clip, now: float, timeout: float | None) -> bool:
        """Realtime pacing: drop the frames already superseded, wait until the next one is due.

        Frame ``i`` is due at ``start + i / fps``. Returns False at the end of the clip; raises
        CameraError when the next frame is not due within ``timeout``.
        """
        assert self._start is not None
        newest_due = math.floor((now - self._start) * clip.fps + 1e-9)
        while clip.next_index < newest_due:
            if not clip.skip():
                return False
            self._dropped += 1
        if clip.exhausted:
            return False
        wait = self._start + clip.next_index / clip.fps - now
        if wait > 0:
            if timeout is not None and wait > timeout:
                self._sleep(max(timeout, 0.0))
                raise CameraError(f"file:{self.path}: next frame ({clip.next_index}) not due for {wait:.2f} s (timeout {timeout:g} s)")
            self._sleep(wait)
        return True

    def _finish(self) -> None:
        self.close()
        return None

    def describe(self) -> str:
        clip = self._clip
        if clip is not None:
            self._size_text = clip.size_text() or self._size_text
        size = self._size_text
        parts = [f"file:{self.path}", f"({self.kind}{', ' + size if size else ''}, {self.fps:g} fps, {self.pace})"]
        if clip is None:
            parts.append(f"ended after {self._returned} frames")
        else:
            parts.append(f"{self._returned} frames read")
        if self._dropped:
            parts.append(f"{self._dropped} dropped")
        return " ".join(parts[:2]) + ": " + ", ".join(parts[2:])

    def close(self) -> None:
        if self._clip is not None:
            self._clip.close()
            self._clip = None
