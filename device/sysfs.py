"""What this machine's ``/sys`` and ``/dev`` say about its video nodes, read without OpenCV.

Both trees sit under a prefix that tests swap for a fake tree (kvmd style): ``/sys`` under
``$KIOSK_SYSFS_PREFIX``, ``/dev`` under ``$KIOSK_DEV_PREFIX``. Nothing here imports the camera
stack, so the configuration's check of ``camera.source`` and ``kiosk diag bundle`` can ask::

    v4l2_driver("/dev/video0")          # ("unicam", "unicam-image") on a Pi 4 with a CSI module
    usb_camera_paths()                  # ["/dev/v4l/by-id/usb-046d_..._C920_...-video-index0"]
    refuse_non_camera("/dev/video0")    # why that node is not a USB camera, or None

On a Pi with a CSI camera module fitted, ``/dev/video0`` is the CSI receiver (unicam on a Pi 4,
rp1-cfe on a Pi 5), not a webcam: :func:`refuse_non_camera` names it and the by-id path to use.
"""

from __future__ import annotations

import os
from pathlib import Path

#: sysfs is under this prefix when the variable is set: a fake tree in tests (the CPU temperature
#: that ``kiosk status`` shows, the drivers of video nodes).
SYSFS_PREFIX_ENV = "KIOSK_SYSFS_PREFIX"
#: /dev is under this prefix when the variable is set (tests).
DEV_PREFIX_ENV = "KIOSK_DEV_PREFIX"

#: Video4linux drivers on a Raspberry Pi whose nodes are not a camera one can open with V4L2:
#: the CSI receivers (their frames are raw Bayer that only libcamera turns into pictures) and
#: the ISP and codec blocks. Keyed by driver name, with what to tell the technician.
NOT_A_CAMERA = {
    "unicam": "the CSI camera receiver of a Pi 4 or earlier",
    "bcm2835-unicam": "the CSI camera receiver of a Pi 4 or earlier",
    "rp1-cfe": "the CSI camera receiver of a Pi 5",
    "bcm2835-isp": "the Pi's image signal processor",
    "pispbe": "the Pi 5's image signal processor",
    "bcm2835-codec": "the Pi's video codec",
    "rpivid": "the Pi's video decoder",
    "rpi-hevc-dec": "the Pi's video decoder",
}


def prefixed(path: str, env: str) -> Path:
    """``path`` under the fake tree named by the variable ``env``, if it is set.

    >>> str(prefixed("/sys/class", "KIOSK_NO_SUCH_PREFIX"))
    '/sys/class'
    """
    prefix = os.environ.get(env, "")
    return Path(prefix + path) if prefix else Path(path)


def v4l2_driver(path: str) -> tuple[str, str] | None:
    """The (driver, name) of the video4linux node ``path`` from sysfs, or None if it is not known.

    ``/dev/v4l/by-id/...`` links are followed. The driver is the last part of
    ``/sys/class/video4linux/videoN/device/driver`` (a symlink), the name is the node's ``name``.
    """
    node = prefixed(path, DEV_PREFIX_ENV)
    try:
        real = node.resolve(strict=True)
    except (OSError, RuntimeError):
        return None
    entry = prefixed(f"/sys/class/video4linux/{real.name}", SYSFS_PREFIX_ENV)
    if not entry.exists():
        return None
    try:
        driver = os.path.basename(os.readlink(entry / "device" / "driver"))
    except OSError:
        driver = ""
    try:
        name = (entry / "name").read_text().strip()
    except OSError:
        name = ""
    return driver, name


def usb_camera_paths() -> list[str]:
    """The stable ``/dev/v4l/by-id/usb-...-video-index0`` paths of the USB cameras plugged in.

    ``index0`` is a camera's capture node; a UVC camera's other nodes (index1, ...) carry metadata.
    """
    by_id = prefixed("/dev/v4l/by-id", DEV_PREFIX_ENV)
    try:
        names = sorted(os.listdir(by_id))
    except OSError:
        return []
    return [f"/dev/v4l/by-id/{n}" for n in names if n.startswith("usb-") and n.endswith("-video-index0")]


def refuse_non_camera(path: str) -> str | None:
    """Why ``path`` cannot be a USB camera (its driver is a CSI receiver, an ISP or a codec), or None.

    The answer names the node, what it is, and the ``/dev/v4l/by-id/...`` path to use instead.
    A path sysfs does not know (nothing plugged in, not a Pi) is not refused: the camera may come.
    """
    found = v4l2_driver(path)
    if found is None:
        return None
    driver, name = found
    what = NOT_A_CAMERA.get(driver) or next((w for d, w in NOT_A_CAMERA.items() if name.startswith(d)), None)
    if what is None:
        return None
    usb = usb_camera_paths()
    if usb:
        instead = "for the USB webcam use " + " or ".join(f'"v4l2:{p}"' for p in usb)
    else:
        instead = "no USB camera is plugged in (`ls /dev/v4l/by-id/`, `v4l2-ctl --list-devices`)"
    return (
        f'{path} is {name or "?"} (driver {driver or "?"}), {what}, not a USB camera: {instead}; for a CSI camera module use "picamera2:0"'
    )
