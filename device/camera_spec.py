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
