"""How well the camera sees a code: pixels per module, edge width, grey levels, likeness.

These figures tell a camera that is going out of focus, a window that is getting dirty, light
that is failing and a camera that was knocked, before the clients notice (the camera check,
:mod:`device.daemon.camera_check`, follows them over time)::

    >>> bars = np.tile(np.repeat(np.array([40, 220], np.uint8), 8), 12)[None, :].repeat(20, axis=0)
    >>> round(profile_edge_px(bars.mean(axis=0)), 1)         # a sharp edge: one pixel wide
    1.0
    >>> soft = cv2.GaussianBlur(bars, (0, 0), 1.5)
    >>> profile_edge_px(soft.mean(axis=0)) > 3                # defocused: several pixels
    True
    >>> levels(bars)
    Levels(dark=40.0, light=220.0)
    >>> round(likeness(thumbnail(bars), thumbnail(soft)), 2)   # blur keeps the view's layout
    1.0

Edge width is the contrast over the steepest slope: a step that falls within one pixel is 1 px
wide (2 when it falls between two), a Gaussian blur of sigma s makes it about 2.5 s. It does not
change when the contrast falls (a veil of dirt or less light scale both alike), so it tells
focus from a dirty window.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import cv2
import numpy as np

from device.vision import CodeFigures

if TYPE_CHECKING:
    from device.vision.locate import Region

#: Below this contrast (grey levels) there are no edges to measure: noise.
MIN_CONTRAST = 8.0
#: A thumbnail's long side, pixels: the layout of the view (where the code is, its quiet zones), not its bars.
THUMBNAIL_PX = 32


@dataclass(frozen=True)
class Levels:
    """The grey levels of a view: ``dark`` (its 5th percentile: the bars) and ``light`` (its 95th: the
    spaces and the paper around them). ``light`` falls with the light; ``contrast`` falls with a veil
    (dirt, condensation on the window) and stays when only the light falls."""

    dark: float
    light: float

    @property
    def contrast(self) -> float:
        """(light - dark) / light: 0 for a flat grey, near 1 for black bars on white paper.

        >>> Levels(dark=30.0, light=230.0).contrast, Levels(dark=15.0, light=115.0).contrast
        (0.8695652173913043, 0.8695652173913043)
        """
        return (self.light - self.dark) / self.light if self.light > 0 else 0.0


def levels(grey: np.ndarray) -> Levels:
    """The :class:`Levels` of a grey image (any shape)."""
    dark, light = np.percentile(grey, (5, 95))
    return Levels(float(dark), float(light))


def profile_edge_px(profile: np.ndarray) -> float | None:
    """The edge width (pixels) of bars in a 1-D brightness profile across them; None without bars.

    The median slope of the steeper half of the edges: the narrowest bars lose contrast first
    under blur, so the wide ones' edges measure the blur itself.
    """
    profile = np.asarray(profile, np.float32).ravel()
    if profile.size < 8:
        return None
    # Percentiles from one sort: np.percentile's generic machinery costs more than the rest here.
    ordered = np.sort(profile)
    top = ordered.size - 1
    contrast = float(ordered[round(0.95 * top)] - ordered[round(0.05 * top)])
    if contrast < MIN_CONTRAST:
        return None
    slope = np.abs(np.diff(profile))
    core = slope[1:-1]
    peaks = core[(core >= slope[:-2]) & (core > slope[2:]) & (core > 0.2 * contrast)]
    if peaks.size < 4:
        return None
    steep = np.sort(peaks)[peaks.size // 2 :]
    return contrast / float(steep[steep.size // 2])


def code_figures(region: Region) -> CodeFigures | None:
    """Pixels per module and edge width of the code in a located region, in frame pixels.

    The region's crop is upright and rescaled; its module estimate and the edges of its middle
    rows (where the locator measured the bars) are turned back into frame pixels. Cheap (tens of
    microseconds): the scanner measures each region that read.
    """
    crop = region.image
    h = crop.shape[0]
    middle, half = h // 2, max(1, min(h // 8, 6))
    rows = crop[max(0, middle - half) : middle + half + 1]
    edge = profile_edge_px(cv2.reduce(rows, 0, cv2.REDUCE_AVG, dtype=cv2.CV_32F))
    if edge is None or region.module_px <= 0:
        return None
    # Frame pixels per crop pixel across the bars: the length of the crop's x axis in the frame.
    scale = math.hypot(float(region.affine[0, 0]), float(region.affine[1, 0]))
    return CodeFigures(module_px=region.module_px * scale, edge_px=edge * scale)


def view_edge_px(grey: np.ndarray) -> float | None:
    """The edge width (pixels) of the sharpest edges in a view at any angle (a fixed target's
    place): its contrast over the steepest 1 % of its gradients; None when it is flat."""
    view = grey.astype(np.float32)
    lo, hi = np.percentile(view, (5, 95))
    if hi - lo < MIN_CONTRAST or min(view.shape[:2]) < 3:
        return None
    # Sobel's 3x3 derivative weighs 8 pixel differences: scaled back to grey levels per pixel.
    gx = cv2.Sobel(view, cv2.CV_32F, 1, 0, ksize=3, scale=1 / 8)
    gy = cv2.Sobel(view, cv2.CV_32F, 0, 1, ksize=3, scale=1 / 8)
    steepest = float(np.percentile(cv2.magnitude(gx, gy), 99))
    return float(hi - lo) / steepest if steepest > 0 else None


def thumbnail(grey: np.ndarray) -> np.ndarray:
    """The view's layout: blurred and shrunk to :data:`THUMBNAIL_PX` on its long side (float32).

    Blurred first by about a thumbnail pixel, so the bars average out instead of aliasing: what
    remains is where the code is, not how sharp it is.
    """
    h, w = grey.shape[:2]
    scale = THUMBNAIL_PX / max(h, w)
    size = (max(2, round(w * scale)), max(2, round(h * scale)))
    sigma = max(0.5, 0.5 / scale)
    smooth = cv2.GaussianBlur(grey.astype(np.float32), (0, 0), sigma)
    return cv2.resize(smooth, size, interpolation=cv2.INTER_AREA)


def likeness(a: np.ndarray, b: np.ndarray) -> float | None:
    """How alike two thumbnails are: their correlation, 1 for the same layout whatever the light
    and contrast, near 0 for another view. None when they differ in size or one is flat."""
    if a.shape != b.shape:
        return None
    x = a.astype(np.float64).ravel() - float(a.mean())
    y = b.astype(np.float64).ravel() - float(b.mean())
    norm = math.sqrt(float(x @ x) * float(y @ y))
    # A flat thumbnail (std under one grey level) has no layout to compare.
    if norm < x.size * 1.0:
        return None
    return float(x @ y) / norm
