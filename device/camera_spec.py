"""The camera as the configuration names it, checked as text: nothing is opened, nothing imported
from the camera stack.

``camera.source`` is ``BACKEND:TARGET``; the backends are those :func:`device.camera.open_source`
opens, and ``camera.focus`` takes one of :data:`FOCUS_MODES`. The configuration checks a value
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
