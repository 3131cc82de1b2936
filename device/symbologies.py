"""The barcode names the configuration and the decoders share, below both of them.

Symbologies are named with zxing-cpp's names ("Code128", "EAN13", "ITF", ...) whatever library
does the work; :mod:`device.vision.decoders` makes the decoders, and ``scan.symbologies`` and
``scan.decoder`` are checked against these lists without importing it (nor numpy)::

    >>> "Code128" in SYMBOLOGIES, DECODERS
    (True, ('zxing-cpp', 'pyzbar'))
"""

from __future__ import annotations

#: Decoder names :func:`device.vision.decoders.make_decoder` accepts (the ``scan.decoder`` values).
DECODERS = ("zxing-cpp", "pyzbar")

#: zxing-cpp name -> zbar symbol type name, for the symbologies both libraries read.
ZBAR_NAMES = {
    "Codabar": "CODABAR",
    "Code39": "CODE39",
    "Code93": "CODE93",
    "Code128": "CODE128",
    "DataBar": "DATABAR",
    "DataBarExpanded": "DATABAR_EXP",
    "EAN8": "EAN8",
    "EAN13": "EAN13",
    "ITF": "I25",
    "UPCA": "UPCA",
    "UPCE": "UPCE",
    "QRCode": "QRCODE",
}

#: Symbologies both decoders support, by zxing-cpp's name (the ``scan.symbologies`` values).
SYMBOLOGIES = tuple(sorted(ZBAR_NAMES))
