"""One captured frame, decoded only as far as someone needs it.

A kiosk spends its day looking at an empty counter, and the gate needs only a grey thumbnail of
each frame to see that nothing changed. A USB webcam sends MJPEG: decoding each 1280x720 frame in
full costs about 2 ms of CPU, while libjpeg decodes the same buffer at 1/8 scale in the DCT domain
(``cv2.IMREAD_REDUCED_GRAYSCALE_8``: a 160x90 grey picture) in about a quarter of that. So a
:class:`Frame` carries either a decoded image or the camera's encoded buffer (plus, from
picamera2, the small "lores" stream's grey plane), gives :meth:`Frame.thumbnail_source` cheaply,
and decodes the full :attr:`Frame.image` only when asked (once; the result is kept)::

    frame = Frame(encoded=jpeg_bytes, index=7, monotonic=time.monotonic())
    frame.check()                       # CorruptFrame if the buffer does not decode
    frame.check_framing()               # the same for a buffer cut short, without decoding it
    small = frame.thumbnail_source(80)  # 160x90 grey for a 1280x720 frame; no full decode
    if gate_says_decode:
        image = frame.image             # the full BGR image, decoded now
    frame.full_decodes                  # 1: how often this frame was decoded in full

cv2 and numpy are imported on first use: ``kiosk status`` imports this package and stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

#: libjpeg's DCT-domain reductions, largest first, as OpenCV's imdecode flags name them.
_REDUCTIONS = (
    (8, "IMREAD_REDUCED_GRAYSCALE_8"),
    (4, "IMREAD_REDUCED_GRAYSCALE_4"),
    (2, "IMREAD_REDUCED_GRAYSCALE_2"),
    (1, "IMREAD_GRAYSCALE"),
)


class CorruptFrame(ValueError):
    """An encoded frame that does not decode (a corrupt or truncated MJPEG buffer).

    A ValueError: the scan loop skips such a frame as an odd one and goes on.
    """


def is_jpeg(buffer: Any) -> bool:
    """True when ``buffer`` (bytes or a uint8 array) starts like a JPEG (the SOI marker FF D8)."""
    head = bytes(memoryview(buffer).cast("B")[:2]) if not isinstance(buffer, bytes) else buffer[:2]
    return head == b"\xff\xd8"


class Frame:
    """One captured frame.

    ``image`` is uint8, either BGR (H x W x 3) or grey (H x W); for a frame that came encoded it
    is decoded on first access (``CorruptFrame`` if it cannot be) and kept. ``index`` counts frames
    from 0 in the order the source produced them (for files: the frame number in the video, or the
    image's position in the folder). ``monotonic`` is ``time.monotonic()`` at capture; never
    wall-clock. ``origin`` says where it came from, for logs and ``kiosk scan`` (a path for files).
    ``still`` is True for a frame that is a still image (an image file, an image in a folder)
    rather than a frame of a video or a live camera: ``kiosk scan`` reports every still, read or not.

    ``encoded``: the camera's JPEG buffer (bytes or a 1 x N uint8 array), instead of ``image``;
    ``colour`` is the imdecode flag for the full decode (``cv2.IMREAD_COLOR`` by default, as
    OpenCV's V4L2 backend decodes; ``IMREAD_ANYCOLOR`` keeps a grey JPEG grey). ``lores``: a
    small grey view of the same moment (picamera2's lores Y plane), for the thumbnail.
    ``exposure_us``: the exposure time the camera reported for this frame, for the live view.

    Two threads may ask for ``image`` at once (the scan loop and the live view): both get the same
    pixels; at worst the frame is decoded twice, which costs time, never correctness.
    """

    __slots__ = (
        "index", "monotonic", "origin", "still", "full_decodes", "exposure_us", "_image", "_encoded", "_colour", "_lores", "_reduced",
    )  # fmt: skip

    def __init__(
        self,
        image: np.ndarray | None = None,
        index: int = 0,
        monotonic: float = 0.0,
        origin: str = "",
        still: bool = False,
        *,
        encoded: Any = None,
        colour: int | None = None,
        lores: np.ndarray | None = None,
        exposure_us: float | None = None,
    ) -> None:
        if image is None and encoded is None:
            raise ValueError("a frame needs an image or an encoded buffer")
        self.index = index
        self.monotonic = monotonic
        self.origin = origin
        self.still = still
        #: Full decodes of the encoded buffer done for this frame (0 for a frame that came decoded).
        self.full_decodes = 0
        #: The exposure time the camera reported for this frame, microseconds (None: not known).
        self.exposure_us = exposure_us
        self._image = image
        self._encoded = encoded
        self._colour = colour
        self._lores = lores
        self._reduced: dict[int, np.ndarray] = {}

    def __repr__(self) -> str:
        what = "decoded" if self._image is not None else f"encoded {len(memoryview(self._encoded).cast('B'))} bytes"
        return f"Frame(index={self.index}, monotonic={self.monotonic:.3f}, origin={self.origin!r}, {what})"

    @property
    def decoded(self) -> bool:
        """True when the full image exists (it came decoded, or someone asked for it)."""
        return self._image is not None

    @property
    def encoded(self) -> Any:
        """The encoded buffer the frame came as, or None for a frame that came decoded."""
        return self._encoded

    @property
    def image(self) -> np.ndarray:
        """The full image (see the class docstring); decodes an encoded frame on first access."""
        if self._image is None:
            import cv2

            flag = cv2.IMREAD_COLOR if self._colour is None else self._colour
            image = _imdecode(self._encoded, flag)
            self.full_decodes += 1
            if image is None:
                raise CorruptFrame(f"frame {self.index}: the camera's JPEG buffer does not decode (corrupt or truncated)")
            if image.ndim == 3 and image.shape[2] == 1:
                image = image[:, :, 0]
            self._image = image
        return self._image

    def check(self) -> None:
        """Raise :class:`CorruptFrame` when the encoded buffer does not decode.

        Decodes at 1/8 scale (the entropy-coded data is read whole, so a broken buffer fails as it
        would in full) and keeps that as the thumbnail: checking costs the gate nothing extra.
        Nothing to check for a frame that came decoded.
        """
        if self._image is None:
            self._reduced_grey(8)

    def check_framing(self) -> None:
        """Raise :class:`CorruptFrame` unless the encoded buffer looks whole, as cheaply as that
        can be told: for the sources, which hand out every frame, while the gate of a quiet view
        looks at only some of them (see :mod:`device.vision.gate`).

        A buffer that starts with the JPEG start marker and ends with the end marker (FF D9,
        followed by at most a few zero bytes of padding) is taken as whole without decoding: a
        truncated USB transfer, the usual broken frame, has no end marker. Any other buffer is
        checked as :meth:`check` does (a camera that pads otherwise costs time, never a frame).
        What this lets through (a buffer broken in the middle, both ends intact) raises
        ``CorruptFrame`` when the gate or the scanner looks at it, and the scan loop passes such a
        frame over as an odd one; a frame nobody looks at is never decoded at all.
        """
        if self._image is None and not _looks_whole(self._encoded):
            self.check()

    def thumbnail_source(self, min_width: int) -> np.ndarray:
        """The cheapest picture of this frame at least ``min_width`` pixels wide (or the whole
        frame, if it is narrower), grey or BGR, for a thumbnail to be made from.

        A frame that came with a lores plane wide enough gives that; one that came decoded (or
        was decoded since) gives its image; an encoded one gives a libjpeg-reduced grey decode
        (1/8, 1/4 or 1/2 scale, the smallest wide enough). ``CorruptFrame`` if it does not decode.
        """
        if self._lores is not None and self._lores.shape[1] >= min_width:
            return self._lores
        if self._image is not None:
            return self._image
        for scale, _flag in _REDUCTIONS:
            reduced = self._reduced_grey(scale)
            if reduced.shape[1] >= min_width or scale == 1:
                return reduced
        raise AssertionError("unreachable: scale 1 always returns")

    def _reduced_grey(self, scale: int) -> np.ndarray:
        found = self._reduced.get(scale)
        if found is None:
            import cv2

            flag = getattr(cv2, dict(_REDUCTIONS)[scale])
            found = _imdecode(self._encoded, flag)
            if found is None:
                raise CorruptFrame(f"frame {self.index}: the camera's JPEG buffer does not decode (corrupt or truncated)")
            self._reduced[scale] = found
        return found


#: How many bytes at a buffer's end may be zero padding after its end marker.
_PADDING_BYTES = 32


def _looks_whole(buffer: Any) -> bool:
    """True when ``buffer`` starts with SOI (FF D8) and ends with EOI (FF D9), padding aside."""
    data = memoryview(buffer).cast("B") if not isinstance(buffer, bytes) else memoryview(buffer)
    if len(data) < 4 or data[0] != 0xFF or data[1] != 0xD8:
        return False
    return bytes(data[-(_PADDING_BYTES + 2) :]).rstrip(b"\x00").endswith(b"\xff\xd9")


def _imdecode(buffer: Any, flag: int) -> np.ndarray | None:
    import cv2
    import numpy as np

    data = np.frombuffer(buffer, np.uint8) if isinstance(buffer, (bytes, bytearray, memoryview)) else buffer.reshape(-1)
    if data.size == 0:
        return None
    try:
        image = cv2.imdecode(data, flag)
    except cv2.error:
        return None
    return image if image is not None and image.size else None
