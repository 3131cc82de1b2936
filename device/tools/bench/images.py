"""Labelled image sets for decoding benchmarks, and in-plane rotation of images.

A directory of sets is laid out like the ZXing blackbox test data::

    DIR/code128-1/1.png   DIR/code128-1/1.txt   (expected text, UTF-8)
    DIR/falsepositives-2/01.png                  (no .txt: no barcode in this set)

>>> sets = load_sets(Path("/work/shared/zxing-blackbox"))        # doctest: +SKIP
>>> [(s.name, len(s.images), s.has_barcodes) for s in sets][:1]  # doctest: +SKIP
[('code128-1', 7, True)]
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

#: Image file suffixes a set may contain.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif", ".bmp", ".tif", ".tiff", ".webp")


@dataclass(frozen=True)
class LabelledImage:
    """One image of a set and the text its barcode holds (None in a no-barcode set)."""

    path: Path
    expected: str | None


@dataclass(frozen=True)
class ImageSet:
    """A folder of images. ``has_barcodes`` is False for sets without any ``.txt`` (false-read sets)."""

    name: str
    images: tuple[LabelledImage, ...]
    has_barcodes: bool


def load_sets(root: Path) -> list[ImageSet]:
    """The image sets under ``root``, by folder name; ``root`` may also be one set's folder.

    In a set with barcodes, images without a ``.txt`` beside them are left out (there is nothing
    to compare against). Raises ``FileNotFoundError`` when ``root`` is not a directory.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: not a directory of image sets")
    folders = sorted(p for p in root.iterdir() if p.is_dir())
    if not folders and _image_files(root):
        folders = [root]
    sets = []
    for folder in folders:
        files = _image_files(folder)
        if not files:
            continue
        labelled = [(f, f.with_suffix(".txt")) for f in files]
        has_barcodes = any(txt.is_file() for _, txt in labelled)
        images = []
        for image, txt in labelled:
            if has_barcodes:
                if not txt.is_file():
                    continue
                images.append(LabelledImage(image, txt.read_text(encoding="utf-8")))
            else:
                images.append(LabelledImage(image, None))
        sets.append(ImageSet(folder.name, tuple(images), has_barcodes))
    return sets


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def read_grey(path: Path) -> np.ndarray:
    """The image at ``path`` as grey uint8; ``ValueError`` when it cannot be read (GIFs via Pillow)."""
    grey = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if grey is None:
        try:
            from PIL import Image

            with Image.open(path) as im:
                grey = np.asarray(im.convert("L"))
        except Exception as exc:  # Pillow raises many kinds for a bad file
            raise ValueError(f"{path}: cannot read image ({exc})") from exc
    return grey


def rotate(image: np.ndarray, degrees: float, border: int = 255) -> np.ndarray:
    """``image`` rotated counter-clockwise by ``degrees`` on a canvas grown to hold all of it.

    The uncovered corners are filled with ``border`` (white: a card on a light background).
    Multiples of 90 degrees are exact (no resampling).
    """
    turns = degrees / 90.0
    if turns == int(turns):
        return np.ascontiguousarray(np.rot90(image, int(turns) % 4))
    h, w = image.shape[:2]
    matrix = cv2.getRotationMatrix2D((w / 2.0, h / 2.0), degrees, 1.0)
    cos, sin = abs(matrix[0, 0]), abs(matrix[0, 1])
    new_w = int(np.ceil(h * sin + w * cos))
    new_h = int(np.ceil(h * cos + w * sin))
    matrix[0, 2] += new_w / 2.0 - w / 2.0
    matrix[1, 2] += new_h / 2.0 - h / 2.0
    fill = (border,) * (image.shape[2] if image.ndim == 3 else 1)
    return cv2.warpAffine(image, matrix, (new_w, new_h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=fill)
