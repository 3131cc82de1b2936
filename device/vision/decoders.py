"""Barcode decoders behind one interface: zxing-cpp and pyzbar (zbar).

A :class:`Decoder` turns a grey image into :class:`~device.vision.Symbol` objects, restricted to
the symbologies it was made for. Symbologies are always named with zxing-cpp's names ("Code128",
"EAN13", "ITF", ...), whatever library does the work, so that config, logs and card formats speak
one language::

    decoder = make_decoder("zxing-cpp", ("Code128",))
    for symbol in decoder.decode(grey):
        print(symbol.symbology, escape(symbol.text))

Neither library reads 1D codes tilted more than ~15-20 degrees in plane; that is
:mod:`device.vision.locate`'s job, not theirs.
"""

from __future__ import annotations

import abc
from collections.abc import Iterable, Sequence

import numpy as np

# The names live below the config and this module (device.symbologies): the config checks
# scan.decoder and scan.symbologies against them without importing numpy or a decoder library.
from device.symbologies import DECODERS, SYMBOLOGIES, ZBAR_NAMES
from device.vision import Symbol

_FROM_ZBAR = {v: k for k, v in ZBAR_NAMES.items()}
# zxing-cpp 3 reports DataBar Expanded as "DataBarExp"; we keep the long name everywhere.
_FROM_ZXING = {"DataBarExp": "DataBarExpanded"}

#: What the kiosk reads unless configured otherwise: client cards are Code 128 (spec v1).
DEFAULT_SYMBOLOGIES = ("Code128",)


def check_symbologies(symbologies: Iterable[str]) -> tuple[str, ...]:
    """The symbologies as a tuple, or ``ValueError`` naming the first unknown one."""
    names = tuple(symbologies)
    if not names:
        raise ValueError(f"no symbologies given; choose from {', '.join(SYMBOLOGIES)}")
    for name in names:
        if name not in ZBAR_NAMES:
            raise ValueError(f"unknown symbology {name!r}; known: {', '.join(SYMBOLOGIES)}")
    return names


def check_image(image) -> None:
    """``ValueError`` (with a message for the log) unless ``image`` is a uint8 array of shape
    H x W, H x W x 1, H x W x 3 (BGR) or H x W x 4 (BGRA) with at least one pixel."""
    if image is None:
        raise ValueError("no image (None)")
    # One exception type for every kind of bad frame: the camera loop catches ValueError.
    if not isinstance(image, np.ndarray):
        raise ValueError(f"expected a numpy image, got {type(image).__name__}")  # noqa: TRY004
    if image.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image, got dtype {image.dtype}")
    if image.size == 0:
        raise ValueError(f"empty image of shape {image.shape}")
    if not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] in (1, 3, 4))):
        raise ValueError(f"expected a grey (HxW) or BGR (HxWx3) image, got shape {image.shape}")


def as_grey(image: np.ndarray) -> np.ndarray:
    """A C-contiguous 2-D uint8 copy or view of ``image`` (BGR/BGRA converted, grey passed
    through); ``ValueError`` for anything :func:`check_image` refuses."""
    import cv2

    check_image(image)
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 2:
        return np.ascontiguousarray(image)
    code = cv2.COLOR_BGR2GRAY if image.shape[2] == 3 else cv2.COLOR_BGRA2GRAY
    return cv2.cvtColor(np.ascontiguousarray(image), code)


class Decoder(abc.ABC):
    """Decodes barcodes of the configured symbologies in a grey image.

    ``decode`` never raises for a valid uint8 grey image; symbols come back in the image's pixel
    coordinates (``Symbol.quad``). ``name`` is the library's name as in :data:`DECODERS`.
    """

    name: str

    def __init__(self, symbologies: Sequence[str] = DEFAULT_SYMBOLOGIES) -> None:
        self.symbologies = check_symbologies(symbologies)

    @abc.abstractmethod
    def decode(self, grey: np.ndarray) -> list[Symbol]: ...

    def __repr__(self) -> str:
        return f"{type(self).__name__}({list(self.symbologies)!r})"


class ZxingDecoder(Decoder):
    """zxing-cpp. Reads 1D codes at 0/90/180/270 degrees (``try_rotate``) and small tilts.

    The defaults are the library's. ``try_invert=False`` skips the light-on-dark pass (cheaper;
    printed cards are dark bars on light plastic); ``try_downscale=False`` reads only at the
    given resolution; ``try_rotate=False`` reads rows only, for images whose bars are known to
    stand upright (a located region's crop): the passes over the turned image would cost as
    much again and find nothing there.

    >>> ZxingDecoder(("Code128",)).decode(np.full((50, 50), 255, np.uint8))
    []
    """

    name = "zxing-cpp"

    def __init__(
        self,
        symbologies: Sequence[str] = DEFAULT_SYMBOLOGIES,
        *,
        try_downscale: bool = True,
        try_invert: bool = True,
        try_rotate: bool = True,
    ) -> None:
        super().__init__(symbologies)
        import zxingcpp

        self._zxing = zxingcpp
        formats = []
        for name in self.symbologies:
            zx_name = "DataBarExp" if name == "DataBarExpanded" else name
            formats.append(getattr(zxingcpp.BarcodeFormat, zx_name))
        self._formats = tuple(formats)
        self._try_downscale = try_downscale
        self._try_invert = try_invert
        self._try_rotate = try_rotate

    def decode(self, grey: np.ndarray) -> list[Symbol]:
        results = self._zxing.read_barcodes(
            grey,
            formats=self._formats,
            try_rotate=self._try_rotate,
            try_downscale=self._try_downscale,
            try_invert=self._try_invert,
        )
        symbols = []
        for r in results:
            if not r.valid:
                continue
            p = r.position
            quad = tuple((float(pt.x), float(pt.y)) for pt in (p.top_left, p.top_right, p.bottom_right, p.bottom_left))
            fmt = _FROM_ZXING.get(r.format.name, r.format.name)
            symbols.append(Symbol(fmt, r.text, self.name, quad))
        return symbols


class PyzbarDecoder(Decoder):
    """pyzbar (zbar). Give it grey: on a colour array it would read only the first (blue) channel.

    zbar returns bytes; they are decoded as UTF-8 (its default output), else as Latin-1.
    """

    name = "pyzbar"

    def __init__(self, symbologies: Sequence[str] = DEFAULT_SYMBOLOGIES) -> None:
        super().__init__(symbologies)
        from pyzbar import pyzbar

        self._pyzbar = pyzbar
        self._types = [getattr(pyzbar.ZBarSymbol, ZBAR_NAMES[n]) for n in self.symbologies]

    def decode(self, grey: np.ndarray) -> list[Symbol]:
        h, w = grey.shape[:2]
        results = self._pyzbar.decode((grey.tobytes(), w, h), symbols=self._types)
        symbols = []
        for r in results:
            try:
                text = r.data.decode("utf-8")
            except UnicodeDecodeError:
                text = r.data.decode("latin-1")
            quad = tuple((float(pt.x), float(pt.y)) for pt in r.polygon) or None
            symbols.append(Symbol(_FROM_ZBAR.get(r.type, r.type), text, self.name, quad))
        return symbols


def make_decoder(name: str, symbologies: Sequence[str] = DEFAULT_SYMBOLOGIES, *, upright: bool = False) -> Decoder:
    """The decoder called ``name`` (one of :data:`DECODERS`) for ``symbologies``.

    ``upright``: it will only see images whose bars stand vertical (located regions' crops), so
    it need not try them turned (zxing-cpp's ``try_rotate``; zbar has no such switch here).

    Raises ``ValueError`` naming the bad value for an unknown decoder or symbology.

    >>> make_decoder("pyzbar", ["Code128", "EAN13"])
    PyzbarDecoder(['Code128', 'EAN13'])
    """
    if name == "zxing-cpp":
        return ZxingDecoder(symbologies, try_rotate=not upright)
    if name == "pyzbar":
        return PyzbarDecoder(symbologies)
    raise ValueError(f"unknown decoder {name!r}; known: {', '.join(DECODERS)}")
