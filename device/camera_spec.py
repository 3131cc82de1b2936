"""The camera as the configuration names it, checked as text: nothing is opened, nothing imported
from the camera stack.

``camera.source`` is ``BACKEND:TARGET``; the backends are those :func:`device.camera.open_source`
opens, ``camera.focus`` takes one of :data:`FOCUS_MODES` and ``camera.exposure`` one of
:data:`EXPOSURE_MODES`; a fixed exposure must suit the mains flicker (:func:`flicker_problem`). The configuration checks a value
here, and the camera package takes its names from here: one list, below both::

    >>> source_problem("v4l2:/dev/v4l/by-id/usb-046d_HD_Pro_Webcam_C920_1234ABCD-video-index0") is None
    True
    >>> source_problem("picamera2:0") is None
    True
    >>> source_problem("usb0")
    'expected BACKEND:TARGET with BACKEND one of v4l2, picamera2, file (e.g. "v4l2:/dev/video0"), got "usb0"'

Whether a ``v4l2:`` node is a camera at all is a question for the machine, not the text: see
:func:`device.sysfs.refuse_non_camera`.
"""

from __future__ import annotations

#: Backends :func:`device.camera.open_source` knows: USB webcams, CSI modules, files.
BACKENDS = ("v4l2", "picamera2", "file")

#: The values of ``camera.focus`` (see :mod:`device.camera.focus`).
FOCUS_MODES = ("auto", "manual", "fixed")

#: The values of ``camera.exposure`` (see :mod:`device.camera.exposure`): the camera's own
#: auto-exposure, or a short exposure held at ``camera.max_exposure_us``.
EXPOSURE_MODES = ("auto", "short")

#: The values of ``camera.flicker_hz``: the mains frequency whose flicker the exposure avoids (0: none set).
FLICKER_HZ = (0, 50, 60)


def flicker_period_us(flicker_hz: int) -> float:
    """The period of the light's flicker under ``flicker_hz`` mains: lamps flicker at twice the
    mains frequency, so 10 ms under 50 Hz and 8.3 ms under 60 Hz (libcamera's ``AeFlickerPeriod``).

    >>> flicker_period_us(50), round(flicker_period_us(60), 1)
    (10000.0, 8333.3)
    """
    return 1_000_000 / (2 * flicker_hz)


def flicker_problem(exposure_us: int, flicker_hz: int) -> str | None:
    """Why a fixed exposure of ``exposure_us`` shows the flicker of ``flicker_hz`` mains, or None.

    An exposure longer than one flicker period must span whole periods, or each frame catches a
    different share of the light (bands roll through the picture); a shorter one cannot avoid
    that at all, which is why short exposures want the kiosk's own steady light (docs/INSTALL.md).
    Refused, not rounded: the exposure sets how fast a card may move (:func:`device.camera.exposure.smear_modules`),
    and a technician who chose it should choose the replacement too. Within 1 us of a multiple is a
    multiple (60 Hz periods are not whole microseconds)::

        >>> flicker_problem(20000, 50) is None, flicker_problem(8000, 50) is None, flicker_problem(16667, 60) is None
        (True, True, True)
        >>> flicker_problem(15000, 50)
        'an exposure over 10000 us must be a whole number of flicker periods under 50 Hz mains (10000 us: 10000 or 20000), got 15000'
    """
    if not flicker_hz:
        return None
    period = flicker_period_us(flicker_hz)
    if exposure_us <= period + 1:
        return None
    periods = round(exposure_us / period)
    if abs(exposure_us - periods * period) <= 1:
        return None
    below, above = max(1, int(exposure_us // period)), int(exposure_us // period) + 1
    return (
        f"an exposure over {period:.0f} us must be a whole number of flicker periods under {flicker_hz} Hz mains "
        f"({period:.0f} us: {below * period:.0f} or {above * period:.0f}), got {exposure_us}"
    )


def device_path(device: str) -> str:
    """``"0"`` -> ``"/dev/video0"``; a path stays as it is; anything else is a ``ValueError``.

    >>> device_path("0"), device_path("/dev/v4l/by-id/usb-cam-video-index0")
    ('/dev/video0', '/dev/v4l/by-id/usb-cam-video-index0')
    """
    device = device.strip()
    if device.isdigit():
        return f"/dev/video{int(device)}"
    if not device.startswith("/"):
        raise ValueError(f"v4l2 device {device!r}: expected a number (0) or a device path (/dev/video0)")
    return device


def source_problem(value: str) -> str | None:
    """Why ``value`` cannot be a ``camera.source``, read as text, or None."""
    backend, sep, target = value.partition(":")
    if not sep or not target or backend not in BACKENDS:
        return f'expected BACKEND:TARGET with BACKEND one of {", ".join(BACKENDS)} (e.g. "v4l2:/dev/video0"), got "{value}"'
    if backend == "v4l2":
        try:
            device_path(target)
        except ValueError as e:
            return str(e)
    return None


#: The smallest reference target region the check can work with, frame pixels (a few bars across, a few rows high).
MIN_TARGET_PX = (32, 16)


def target_region(value: str) -> tuple[float, float, float, float] | None:
    """``camera.target_region`` as (x, y, w, h) fractions of the frame, None when empty; ValueError saying why not.

    Fractions, not pixels: the same place in the view whatever the resolution (camera.width and
    height, a snapshot, a video file), as the view is what the target is fixed in::

        >>> target_region("0.8, 0.02, 0.18, 0.1")
        (0.8, 0.02, 0.18, 0.1)
        >>> target_region("") is None
        True
        >>> target_region("0.9,0,0.2,0.1")
        Traceback (most recent call last):
        ...
        ValueError: x + w must be at most 1 (the region ends inside the frame), got 0.9 + 0.2
    """
    if not value.strip():
        return None
    parts = [part.strip() for part in value.split(",")]
    try:
        numbers = [float(part) for part in parts]
    except ValueError:
        numbers = []
    if len(numbers) != 4 or not all(0.0 <= n <= 1.0 for n in numbers):
        raise ValueError(f'expected x,y,w,h as four fractions of the frame between 0 and 1, such as "0.8,0.02,0.18,0.1", got "{value}"')
    x, y, w, h = numbers
    if w <= 0 or h <= 0:
        raise ValueError(f"w and h must be above 0, got {w:g} x {h:g}")
    for start, size, names in ((x, w, "x + w"), (y, h, "y + h")):
        if start + size > 1.0 + 1e-9:
            raise ValueError(f"{names} must be at most 1 (the region ends inside the frame), got {start:g} + {size:g}")
    return x, y, w, h


def target_region_problem(value: str) -> str | None:
    """Why ``value`` cannot be a ``camera.target_region``, or None."""
    try:
        target_region(value)
    except ValueError as error:
        return str(error)
    return None


def region_pixels(region: tuple[float, float, float, float], width: int, height: int) -> tuple[int, int, int, int]:
    """``region`` (fractions) in a ``width`` x ``height`` frame: (x0, y0, x1, y1) pixel bounds, at least one pixel.

    >>> region_pixels((0.8, 0.0, 0.2, 0.1), 1280, 720)
    (1024, 0, 1280, 72)
    """
    x, y, w, h = region
    x0, y0 = min(width - 1, int(round(x * width))), min(height - 1, int(round(y * height)))
    return x0, y0, max(x0 + 1, min(width, int(round((x + w) * width)))), max(y0 + 1, min(height, int(round((y + h) * height))))
