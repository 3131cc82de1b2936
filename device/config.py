"""The kiosk's configuration: one typed schema, from which come validation, defaults,
environment overrides, the effective-config dump and the documentation.

A file is TOML (default ``/etc/kiosk/kiosk.toml``, see ``config/kiosk.toml`` for every key).
Anything wrong stops the program with :data:`EXIT_CONFIG` (78, ``EX_CONFIG``) and a message that
names the file and the key::

    /etc/kiosk/kiosk.toml: camera.fps: expected a number, got "fast"

Without ``--config`` the file is :data:`DEFAULT_PATH`, or the one ``KIOSK_CONFIG_FILE`` names
(the tests point it at a file that does not exist, so that an installed kiosk's file never
changes what they see).

>>> cfg = load(os.devnull, environ={})  # an empty file: every value is its default
>>> cfg.scan.repeat_window_s
10.0
>>> cfg.camera.source
'v4l2:/dev/video0'
"""

from __future__ import annotations

import dataclasses
import ipaddress
import math
import os
import re
import socket
import stat
import tomllib
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

# The schema's checks import nothing of the camera, vision or daemon (kvmd's rule): the names a
# value is checked against live below them all, so that `kiosk status` loads neither OpenCV nor numpy.
from device.camera_spec import EXPOSURE_MODES, FLICKER_HZ, FOCUS_MODES, device_path, flicker_problem, source_problem
from device.card import REGISTRY, formats_named
from device.keyboard_layouts import DEFAULT_LAYOUT, LAYOUTS
from device.pos_template import DEFAULT_TEMPLATE, FIELDS, MAX_LINE_LENGTH, template_problem
from device.redact import escape
from device.symbologies import DECODERS, SYMBOLOGIES
from device.sysfs import refuse_non_camera
from device.urls import url_credentials_problem
from device.wire import MAX_BATCH, MAX_NAME_LENGTH, is_name

#: Exit code for configuration errors (sysexits.h EX_CONFIG); systemd's unit does not restart on it.
EXIT_CONFIG = 78
DEFAULT_PATH = Path("/etc/kiosk/kiosk.toml")
#: Names the config file read without ``--config`` instead of :data:`DEFAULT_PATH` (tests, a bench).
DEFAULT_PATH_ENV = "KIOSK_CONFIG_FILE"
#: Environment variables override a few keys a technician changes often: KIOSK_<SECTION>_<KEY>.
ENV_PREFIX = "KIOSK_"

# Ranges: every number has one, so that no value can pass the check and break the kiosk later
# (a timeout of 1e300 s, a retention of a million days that overflows a date).
#: Longest timeout, wait or backoff any key allows: a day.
DAY_S = 86400.0
#: Longest retention of delivered identifications: ten years.
MAX_RETENTION_DAYS = 3650
#: Longest text shown back in a config error (a 100,000-character value is not repeated whole).
SHOWN_CHARS = 80


class ConfigError(Exception):
    """A configuration problem, named by file and key. ``str()`` is the message for the technician."""

    def __init__(self, key: str, problem: str, source: str = ""):
        self.key, self.problem, self.source = key, problem, source
        where = f"{source}: " if source else ""
        super().__init__(f"{where}{key}: {problem}" if key else f"{where}{problem}")


def opt(
    default: Any,
    doc: str,
    *,
    choices: tuple[Any, ...] | None = None,
    minimum: float | None = None,
    maximum: float | None = None,
    env: bool = False,
    secret: bool = False,
    check: Callable[[Any], str | None] | None = None,
    check_on_disk: Callable[[Any], str | None] | None = None,
    allowed: str | None = None,
    default_doc: str | None = None,
) -> Any:
    """Declare one option: its default, what it is for, and how it is checked.

    Numbers need both ``minimum`` and ``maximum`` (the reference shows the range; a test checks
    that every number has one). ``check`` returns a problem (str) or None, and ``allowed`` says
    in a few words what it lets through, for the reference. ``default_doc`` describes a
    computed default. Values from the environment pass the same checks as values from the file.
    ``check_on_disk`` looks at this machine's files or devices (after ``check``, same contract); it
    runs when the configuration is loaded to be used for real (``run``, ``config check``), not for
    the commands that diagnose a kiosk (``status``, ``queue``, ``diag``), which must still work
    when such a file went away or a device is not what it should be: that is what they show.
    """
    meta = dict(
        doc=doc, choices=choices, minimum=minimum, maximum=maximum, env=env, secret=secret, check=check,
        check_on_disk=check_on_disk, allowed=allowed, default_doc=default_doc,
    )  # fmt: skip
    if callable(default):
        return field(default_factory=default, metadata=meta)
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=meta)
    return field(default=default, metadata=meta)


def _check_camera_device(value: str) -> str | None:
    """A ``v4l2:`` node that sysfs says is no camera (a Pi's CSI receiver at /dev/video0).

    Checked here as well as when the camera opens, so that `kiosk config check` and `kiosk run`
    refuse it the same way (exit 78, naming camera.source); on disk, so that `kiosk status` and
    `kiosk queue` still run on the kiosk whose camera they are there to diagnose.
    """
    backend, _, target = value.partition(":")
    return refuse_non_camera(device_path(target)) if backend == "v4l2" else None


def _check_names(value: list[str], known: Collection[str], what: str) -> str | None:
    """A non-empty list of names, each one of ``known``."""
    unknown = [name for name in value if name not in known]
    if unknown:
        return f"unknown {what} {unknown[0]!r} (known: {', '.join(sorted(known))})"
    if not value:
        return f"expected at least one {what}"
    return None


def _check_symbologies(value: list[str]) -> str | None:
    return _check_names(value, SYMBOLOGIES, "symbology")


def _check_card_formats(value: list[str]) -> str | None:
    return _check_names(value, REGISTRY, "card format")


def _check_decoder(value: str) -> str | None:
    return None if value in DECODERS else f'expected one of {", ".join(DECODERS)}, got "{value}"'


def _check_pin(value: str) -> str | None:
    # gpiozero pin names: GPIO17, BCM17, BOARD11, J8:11, or a bare number (BCM); empty = not fitted.
    import re

    if value == "" or re.fullmatch(r"(GPIO|BCM|BOARD|J8:)?\d{1,2}", value):
        return None
    return f'expected a gpiozero pin name like "GPIO17" or "BOARD11" (or "" for none), got "{value}"'


def _has_control_or_space(text: str) -> bool:
    return any(c.isspace() or not c.isprintable() for c in text)


def _shown_url(url: str) -> str:
    """``url`` fit to be quoted in a message: any ``user:password@`` cut out, escaped, shortened."""
    return escape(re.sub(r"//[^/?#]*@", "//", url, count=1), SHOWN_CHARS)


#: A host name's label (after IDNA encoding): letters, digits, underscores (container names), hyphens inside.
_HOST_LABEL = re.compile(r"[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?")


def url_problem(url: str) -> str | None:
    """Why ``url`` cannot be the central's base URL, or None (for an empty one too: run requires it).

    Scheme http or https, a valid host name or address, a port in 1..65535 if given, no user or
    password, no spaces or control characters, no query or fragment (paths are appended to it).
    A password is never quoted.

    >>> url_problem("https://central.example.net:8443/kiosk") is None
    True
    >>> url_problem("https://central.example.net:99999")
    'not a valid URL: port out of range 0-65535, got "https://central.example.net:99999"'
    """
    if not url:
        return None
    if _has_control_or_space(url):
        # Before parsing: urlsplit drops tabs and newlines silently.
        return "must not contain spaces or control characters"
    if problem := url_credentials_problem(url):
        return problem
    example = "e.g. https://central.example.net"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as e:
        return f'not a valid URL: {str(e)[:1].lower() + str(e)[1:]}, got "{_shown_url(url)}"'
    if parts.scheme not in ("http", "https"):
        return f'expected an http(s) URL of the central, {example}, got "{_shown_url(url)}"'
    host = parts.hostname or ""
    if not host:
        return f'no host name in "{_shown_url(url)}" ({example})'
    if not _valid_host(host):
        return f'"{escape(host, SHOWN_CHARS)}" is not a valid host name or IP address'
    if port == 0:
        return f'port 0 is not a port one can connect to, got "{_shown_url(url)}"'
    if parts.query or parts.fragment or url.endswith(("?", "#")):
        return f'expected the base URL without ?query or #fragment (the API paths are appended to it), got "{_shown_url(url)}"'
    return None


def _valid_host(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        pass
    try:
        # An ASCII name is its own IDNA form (the codec only checks label lengths, as the pattern
        # below does): the codec, with unicodedata, is loaded only for a name that needs it.
        ascii_host = host if host.isascii() else host.encode("idna").decode("ascii")
    except UnicodeError:
        return False
    labels = ascii_host.removesuffix(".").split(".")
    return len(ascii_host) <= 253 and all(_HOST_LABEL.fullmatch(label) for label in labels)


def _check_name(required: bool) -> Callable[[str], str | None]:
    """The central's rule for a kiosk id or site (device/wire.py, docs/openapi.yaml)."""

    def check(value: str) -> str | None:
        if required and not value.strip():
            return "must not be empty"
        if not is_name(value):
            return (
                f"expected at most {MAX_NAME_LENGTH} characters without control characters (what the central "
                f'accepts, docs/openapi.yaml), got {len(value)} characters: "{escape(value, SHOWN_CHARS)}"'
            )
        return None

    return check


#: What the reference says of a kiosk id or site.
_NAME_ALLOWED = f"at most {MAX_NAME_LENGTH} characters, no control characters"


def _check_path(value: str) -> str | None:
    """A file or folder the kiosk creates: named, no control characters (a NUL cannot be opened)."""
    if not value.strip():
        return "must not be empty"
    if any(not c.isprintable() for c in value):
        return f'must not contain control characters, got "{escape(value, SHOWN_CHARS)}"'
    return None


def _check_existing_file(value: str) -> str | None:
    """A file that must be there already: refused when it is certainly missing.

    A file this user may not look at (``kiosk config check`` by someone outside the kiosk group)
    is let through: the service's own check at start sees it.
    """
    if not value:
        return None
    if problem := _check_path(value):
        return problem
    shown = escape(value, SHOWN_CHARS)
    try:
        mode = os.stat(value).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return f'no such file "{shown}"'
    except PermissionError:
        return None
    except OSError as e:
        return f'cannot look at "{shown}": {e.strerror or e}'
    if not stat.S_ISREG(mode):
        return f'"{shown}" is not a regular file'
    return None


def _check_ca_bundle(value: str) -> str | None:
    """A CA bundle that is there and that TLS can load (PEM certificates)."""
    if not value or (problem := _check_existing_file(value)):
        return problem if value else None
    import ssl

    try:
        ssl.create_default_context(cafile=value)
    except PermissionError:
        return None  # see _check_existing_file
    except (ssl.SSLError, OSError, ValueError) as e:
        return f'"{escape(value, SHOWN_CHARS)}" is not a CA bundle TLS can load (PEM certificates): {getattr(e, "reason", None) or e}'
    return None


def _check_token(value: str) -> str | None:
    # Never quotes the value: it is a secret.
    if _has_control_or_space(value):
        return "must be one word, without spaces or control characters"
    return None


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1)."""
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def insecure_url_problem(url: str, allow_insecure_http: bool) -> str | None:
    """Why ``url`` must not be used (plain http:// leaving the machine), or None.

    The schema checks it (``kiosk config check``) and so does :class:`device.central_client.CentralClient`.
    """
    host = urlsplit(url).hostname or ""
    if url.startswith("http://") and not is_loopback(host) and not allow_insecure_http:
        return (
            f"plain http:// to {host} would send identifications and the token unencrypted; "
            "use https://, or set api.allow_insecure_http = true (never in production)"
        )
    return None


def listen_address(value: str) -> tuple[str, int]:
    """``"HOST:PORT"`` (an IPv6 address in brackets) as (host, port); ValueError saying why not.

    >>> listen_address("127.0.0.1:8089"), listen_address("[::1]:8089")
    (('127.0.0.1', 8089), ('::1', 8089))
    """
    host, colon, port = value.rpartition(":")
    if not colon or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(f'expected HOST:PORT with a port in 1 .. 65535, such as 127.0.0.1:8089, got "{escape(value, SHOWN_CHARS)}"')
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        if ":" not in host:
            raise ValueError(f'brackets are for an IPv6 address, got "{escape(value, SHOWN_CHARS)}"')
    if not host or not _valid_host(host) or (":" in host and not value.startswith("[")):
        raise ValueError(f'"{escape(host, SHOWN_CHARS)}" is not a host name or IP address (IPv6 in brackets: [::1]:8089)')
    return host, int(port)


def _check_listen(value: str) -> str | None:
    try:
        listen_address(value)
    except ValueError as error:
        return str(error)
    return None


def insecure_listen_problem(listen: str) -> str | None:
    """Why the POS's HTTP API must not listen on ``listen`` without ``pos.http_allow_insecure``, or None."""
    host, _ = listen_address(listen)
    if is_loopback(host):
        return None
    return (
        f"plain HTTP on {host} would send contract numbers and the POS's token unencrypted over the network, and the "
        "kiosk serves no TLS yet: listen on 127.0.0.1 (POS software on the kiosk, or through an ssh tunnel), or set "
        "pos.http_allow_insecure = true (a trusted counter network only)"
    )


#: What the reference says of a GPIO pin key.
_PIN_ALLOWED = "a gpiozero pin name (GPIO17, BOARD11) or empty for none"


def _pin_opt(default: str, doc: str) -> Any:
    """A GPIO pin option: a gpiozero pin name, or empty for none (checked by :func:`_check_pin`)."""
    return opt(default, doc, check=_check_pin, allowed=_PIN_ALLOWED)


def _v4l2_units_opt(when: str, control: str, unset: str) -> Any:
    """A USB camera's V4L2 ``control``, used ``when`` so configured, in the camera's own units; -1: not set."""
    return opt(
        -1,
        f"USB cameras, {when}: the V4L2 {control} value, in the camera's own units "
        f"(`v4l2-ctl -d DEVICE --list-ctrls` shows its range); -1 {unset}.",
        minimum=-1,
        maximum=2**31 - 1,
    )


@dataclass(frozen=True)
class KioskSection:
    id: str = opt(
        socket.gethostname, "This kiosk's name at the central; unique across the fleet.",
        check=_check_name(required=True), allowed="not empty, " + _NAME_ALLOWED, default_doc="the host name",
    )  # fmt: skip
    site: str = opt(
        "", "Where the kiosk stands (branch or counter), sent with every identification.",
        check=_check_name(required=False), allowed=_NAME_ALLOWED,
    )  # fmt: skip
    runtime_dir: str = opt(
        "/run/kiosk", "Where the daemon publishes its status for `kiosk status` (systemd's RuntimeDirectory).",
        env=True, check=_check_path, allowed="a path, no control characters",
    )  # fmt: skip


@dataclass(frozen=True)
class CameraSection:
    source: str = opt(
        "v4l2:/dev/video0",
        "Frame source: v4l2:/dev/v4l/by-id/usb-...-video-index0 (USB webcam by its stable name, see "
        "`ls /dev/v4l/by-id/`; v4l2:/dev/videoN works, but with a CSI module fitted /dev/video0 is the "
        "CSI receiver and is refused), picamera2:N (CSI module), file:PATH (video, image or folder).",
        env=True,
        check=source_problem,
        check_on_disk=_check_camera_device,
        allowed="v4l2:PATH, picamera2:N or file:PATH",
    )
    pace: str = opt(
        "realtime", "For file sources: realtime plays at the file's frame rate, fast as fast as possible.", choices=("realtime", "fast")
    )
    fps: float = opt(30.0, "Frames per second requested from the camera.", minimum=1, maximum=240)
    width: int = opt(1280, "Frame width requested from the camera, pixels.", minimum=16, maximum=16384)
    height: int = opt(720, "Frame height requested from the camera, pixels.", minimum=16, maximum=16384)
    stall_timeout_s: float = opt(5.0, "A live camera that gives no frame for this long is reopened.", minimum=0.1, maximum=DAY_S)
    restart_after_s: float = opt(
        120.0,
        "A CSI camera that delivered frames and then none for this long stops the systemd watchdog, so systemd "
        "restarts the daemon (what a stalled libcamera pipeline needs); an absent USB camera is a camera fault that "
        "stays while it is reopened, no restart. 0: never. Longer than camera.stall_timeout_s.",
        minimum=0,
        maximum=DAY_S,
    )
    bad_reads: int = opt(
        5,
        "USB cameras: failed reads in a row (a corrupt MJPG frame on a busy USB bus) tolerated before the camera is reopened.",
        minimum=1,
        maximum=1000,
    )
    focus: str = opt(
        "auto",
        "Lens focus: auto (continuous autofocus where the camera has it), manual (the lens held at "
        "camera.focus_dioptres, USB: camera.v4l2_focus) or fixed (no lens control). Set only where the camera offers it.",
        choices=FOCUS_MODES,
    )
    focus_dioptres: float = opt(
        5.0,
        'CSI cameras, camera.focus = "manual": lens position in dioptres, 1 / distance in metres '
        "(5.0: 20 cm, 4.0: 25 cm, 3.3: 30 cm, 2.0: 50 cm; see docs/INSTALL.md).",
        minimum=0,
        maximum=32,
    )
    v4l2_focus: int = _v4l2_units_opt('camera.focus = "manual"', "focus_absolute", "leaves the lens where it is")
    exposure: str = opt(
        "auto",
        "Exposure: auto (the camera's own auto-exposure, which indoors picks 15-30 ms: a moving card smears) or "
        "short (held at camera.max_exposure_us with the gain at camera.max_gain, for a card that moves; light it, "
        "see docs/INSTALL.md). Set only where the camera offers it; `kiosk status` shows what it applied.",
        choices=EXPOSURE_MODES,
    )
    max_exposure_us: int = opt(
        1000,
        'camera.exposure = "short": the exposure time in microseconds (a card at 20 cm/s moves 0.2 mm, half a '
        "module, in 1000 us). With camera.flicker_hz, over one flicker period it must be a whole number of them.",
        minimum=50,
        maximum=100_000,
    )
    max_gain: float = opt(
        8.0,
        'CSI cameras, camera.exposure = "short": the analogue gain held (the ceiling auto gain would reach anyway).',
        minimum=1,
        maximum=64,
    )
    v4l2_gain: int = _v4l2_units_opt('camera.exposure = "short"', "gain", "leaves it as it is")
    flicker_hz: int = opt(
        0,
        "Mains frequency of the room's light (50 in Europe, 60 in North America): the auto-exposure keeps to whole "
        "flicker periods (libcamera AeFlickerMode, V4L2 power_line_frequency); 0 leaves the camera's own setting.",
        choices=FLICKER_HZ,
        minimum=0,
        maximum=60,
    )


@dataclass(frozen=True)
class ScanSection:
    decoder: str = opt(
        "zxing-cpp",
        "Barcode decoder: zxing-cpp (reads more, faster; see docs/BENCHMARKS.md) or pyzbar.",
        check=_check_decoder,
        allowed="zxing-cpp or pyzbar",
    )
    symbologies: list[str] = opt(
        ["Code128", "EAN13", "EAN8", "UPCA", "UPCE"],
        "Barcode types decoded. Cards are Code128; the others are read only to tell the client "
        '"this is not your card" (a product barcode held up by mistake).',
        check=_check_symbologies,
        allowed="names the decoder knows (Code128, EAN13, EAN8, UPCA, UPCE, ...); at least those scan.card_formats use",
    )
    card_formats: list[str] = opt(
        ["v1"],
        'Client card payload formats accepted, by name (spec v1 is "v1", see docs/CARD_SPEC.md); '
        "scan.symbologies must include the symbologies they use.",
        check=_check_card_formats,
        allowed="at least one format name the kiosk knows",
    )
    repeat_window_s: float = opt(
        10.0,
        "A card seen again within this many seconds of when it was last seen is the same presentation, "
        "whatever other cards were seen meanwhile.",
        minimum=0,
        maximum=DAY_S,
    )
    full_look_interval_s: float = opt(
        1.0, "Decode at least this often even when the view has not changed (a card held perfectly still).", minimum=0.05, maximum=DAY_S
    )
    settle_s: float = opt(
        0.3, "Keep decoding this long after the view changed: a card that just stopped moving is at its sharpest.", minimum=0, maximum=DAY_S
    )
    change_threshold: float = opt(
        0.005,
        "Share of the view that must change for the gate to decode a frame (raise it for flickering light).",
        minimum=0.0001,
        maximum=1,
    )
    quiet_look_every: int = opt(
        2,
        "When the view has not changed for longer than scan.settle_s, the gate looks at one frame in this many "
        "and skips the others undecoded (idle CPU); a card entering is then noticed at most this many frames "
        "minus one later, and every frame is looked at again from that change on. 1: look at every frame. "
        "The full look (scan.full_look_interval_s) is never skipped.",
        minimum=1,
        maximum=4,
    )
    max_regions: int = opt(
        4, "Barcode-like regions decoded per frame, at most (more reads cluttered counters, costs more CPU).", minimum=1, maximum=64
    )
    work_size: int = opt(
        640,
        "Resolution (long side, pixels) the locator works at; raise it for cameras well above 720p showing small cards.",
        minimum=160,
        maximum=8192,
    )


@dataclass(frozen=True)
class OutboxSection:
    path: str = opt(
        "/var/lib/kiosk/outbox.db",
        "The durable queue of identifications (SQLite).",
        env=True,
        check=_check_path,
        allowed="a path, no control characters",
    )
    retention_days: float = opt(
        30, "Delivered identifications are kept this many days, then deleted.", minimum=0, maximum=MAX_RETENTION_DAYS
    )


@dataclass(frozen=True)
class ApiSection:
    url: str = opt(
        "", "Base URL of the central API, e.g. https://central.example.net.", env=True, check=url_problem,
        allowed="http(s)://HOST[:PORT][/PATH], no user:password, no query; http:// only to loopback (see api.allow_insecure_http)",
    )  # fmt: skip
    token: str = opt(
        "", "Bearer token for the central API. Prefer api.token_file.", secret=True, env=True, check=_check_token,
        allowed="one word, no spaces or control characters",
    )  # fmt: skip
    token_file: str = opt(
        "", "File holding the bearer token (readable by root and the kiosk group only).", env=True,
        check_on_disk=_check_existing_file, allowed="an existing file (it may still be empty)",
    )  # fmt: skip
    ca_bundle: str = opt(
        "", "CA bundle to verify the central's TLS certificate with (empty: the system's).", check_on_disk=_check_ca_bundle,
        allowed="an existing PEM file",
    )  # fmt: skip
    allow_insecure_http: bool = opt(False, "Allow plain http:// to hosts other than loopback (never in production).")
    connect_timeout_s: float = opt(5.0, "Seconds to wait for a connection to the central.", minimum=0.1, maximum=DAY_S)
    read_timeout_s: float = opt(15.0, "Seconds to wait for the central's answer.", minimum=0.1, maximum=DAY_S)
    batch_size: int = opt(100, "Identifications sent per request.", minimum=1, maximum=MAX_BATCH)
    backoff_base_s: float = opt(
        1.0, "First wait after a failed delivery; doubles per attempt (with full jitter).", minimum=0.01, maximum=DAY_S
    )
    backoff_cap_s: float = opt(300.0, "Longest wait between delivery attempts.", minimum=0.01, maximum=DAY_S)
    retry_after_cap_s: float = opt(3600.0, "Longest wait the central may ask for with Retry-After.", minimum=0.01, maximum=DAY_S)
    auth_retry_s: float = opt(
        60.0, "While the central refuses the token, try again this often (at once when the token file changes).", minimum=0.1, maximum=DAY_S
    )
    delivery_alert_s: float = opt(
        300.0, "Fault 'delivery' (amber, with the cause) once delivery has failed this long with identifications pending.",
        minimum=1, maximum=DAY_S,
    )  # fmt: skip


@dataclass(frozen=True)
class RevocationsSection:
    enabled: bool = opt(
        False,
        "Refuse replaced cards (a card whose issue is lower than its contract's current issue) "
        "against a signed list synced from the central (needs revocations.public_key_file).",
    )
    public_key_file: str = opt(
        "", "The central's Ed25519 public key (PEM) that signs the replaced-card list (`kiosk central keygen` writes a pair).",
        check_on_disk=_check_existing_file, allowed="an existing PEM file",
    )  # fmt: skip
    path: str = opt(
        "",
        "The kiosk's copy of the list (SQLite). Empty: revocations.db beside outbox.path.",
        check=lambda v: _check_path(v) if v else None,
        allowed="a path, no control characters; empty: beside the outbox",
    )
    interval_s: float = opt(
        900.0,
        "Sync the list this often (each wait 20 % shorter or longer at random, so a fleet does not sync in step); "
        "also at start and on `kiosk revocations sync`.",
        minimum=10,
        maximum=DAY_S,
    )
    max_age_s: float = opt(
        3 * DAY_S,
        "Fault 'revocations' when the copy was last confirmed by the central longer ago than this (the kiosk goes on checking against it).",
        minimum=60,
        maximum=30 * DAY_S,
    )
    max_bytes: int = opt(
        64 * 1024 * 1024,
        "The largest list answer read; a larger one is refused (a complete list of a million contracts is about 17 MB).",
        minimum=1024,
        maximum=1024 * 1024 * 1024,
    )
    deadline_s: float = opt(
        120.0,
        "The longest one sync's request may take, however slowly the central sends (a trickled answer is refused).",
        minimum=1,
        maximum=DAY_S,
    )


@dataclass(frozen=True)
class FeedbackSection:
    pin_factory: str = opt(
        "",
        "gpiozero pin factory: empty lets gpiozero choose (lgpio on a Pi 5); mock on machines without GPIO.",
        choices=("", "mock", "lgpio", "rpigpio", "pigpio", "native"),
        env=True,
    )
    green_pin: str = _pin_opt("GPIO17", "Green LED: lit with a short beep when a client is identified. Empty: none.")
    red_pin: str = _pin_opt("GPIO27", "Red LED: lit with a double beep for a barcode that is not a client card. Empty: none.")
    amber_pin: str = _pin_opt("GPIO22", "Amber LED: blinks while something needs a technician (camera, delivery, disk). Empty: none.")
    buzzer_pin: str = _pin_opt("GPIO23", "Active buzzer. Empty: none.")
    button_pin: str = _pin_opt(
        "", "Optional button to ground: ends every open presentation, so a card in view identifies again at once. Empty: none."
    )
    backlog_alert_s: float = opt(
        3600.0, "Amber when the oldest undelivered identification is older than this.", minimum=1, maximum=30 * DAY_S
    )


@dataclass(frozen=True)
class PreviewSection:
    enabled: bool = opt(
        False,
        "The daemon serves `kiosk preview`'s live view of the camera (for aiming it) on a Unix socket, "
        "kiosk.runtime_dir/preview.sock, that only the technicians' group may connect to (no TCP port), reached from "
        "a laptop with ssh -L 8088:/run/kiosk/preview.sock; nothing is drawn or encoded while nobody watches.",
    )
    port: int = opt(
        8088,
        "The laptop's port in the ssh -L line `kiosk preview` prints (http://localhost:PORT/ there); the kiosk opens no TCP port.",
        minimum=1,
        maximum=65535,
    )
    unblurred: bool = opt(
        False,
        "Show the live view's picture whole: by default it is blurred outside the barcodes read, as snapshots are, "
        "so the client's name and address are not for whoever watches.",
    )


def _check_device_path(value: str) -> str | None:
    """A device node the POS output opens: an absolute path, no control characters."""
    if problem := _check_path(value):
        return problem
    return None if value.startswith("/") else f'expected an absolute path such as /dev/hidg0, got "{escape(value, SHOWN_CHARS)}"'


@dataclass(frozen=True)
class PosSection:
    output: str = opt(
        "none",
        "How each identification is handed to the counter's POS once it is stored (see docs/POS.md): none; keyboard "
        "(the kiosk types pos.template as a USB keyboard into pos.hid_device); serial (one line per identification on "
        "pos.serial_device); http (POS software takes each one with a long poll, GET /v1/scan on pos.http_listen, "
        "docs/pos-openapi.yaml). Refusals and barcodes that are not cards are never handed over.",
        choices=("none", "keyboard", "serial", "http"),
        env=True,
    )
    template: str = opt(
        DEFAULT_TEMPLATE,
        "The line handed over for each identification: fields " + ", ".join("{" + f + "}" for f in FIELDS) + " (payload: the "
        "card's whole barcode text; seq: the outbox's sequence number) and text of its own, \\t for Tab and \\n for Enter.",
        check=template_problem,
        allowed=f"printable ASCII, Tab and Enter; known fields only; at most {MAX_LINE_LENGTH} characters with each field at its longest",
    )
    hid_device: str = opt(
        "/dev/hidg0", 'pos.output = "keyboard": the USB gadget\'s keyboard device.', check=_check_device_path, allowed="an absolute path"
    )
    keyboard_layout: str = opt(
        DEFAULT_LAYOUT,
        'pos.output = "keyboard": the keyboard layout the POS uses (XKB name): the kiosk presses the key that types '
        "each character in it (fr: AZERTY, the digits need Shift).",
        choices=tuple(sorted(LAYOUTS)),
    )
    key_delay_ms: float = opt(
        20.0,
        'pos.output = "keyboard": pause between two keyboard reports; some hosts drop the Shift when keys come faster, '
        "and it bounds how fast the kiosk can ever type.",
        minimum=2,
        maximum=1000,
    )
    max_age_s: float = opt(
        10.0,
        "An identification not handed over within this many seconds of being stored (the POS was busy or offline) is "
        "dropped as too old: a POS back online gets no burst of old numbers.",
        minimum=0.5,
        maximum=3600,
    )
    serial_device: str = opt(
        "/dev/ttyUSB0",
        'pos.output = "serial": the serial line to the POS: a USB-serial adapter or an RS-232 HAT (better its stable '
        "name under /dev/serial/by-id/).",
        check=_check_device_path,
        allowed="an absolute path",
    )
    baud: int = opt(9600, 'pos.output = "serial": line speed, bits per second (8N1).', minimum=300, maximum=4000000)
    ack_timeout_s: float = opt(
        0.0, 'pos.output = "serial": wait this long for the POS to acknowledge each line; 0: no acknowledgement.', minimum=0, maximum=60
    )
    http_listen: str = opt(
        "127.0.0.1:8089",
        'pos.output = "http": where the kiosk serves the POS software\'s long poll (plain HTTP, no TLS yet): loopback only '
        "unless pos.http_allow_insecure.",
        check=_check_listen,
        allowed="HOST:PORT ([::1]:PORT for IPv6); a non-loopback host needs pos.http_allow_insecure",
    )
    http_token_file: str = opt(
        "",
        'pos.output = "http" (required then): file holding the bearer token the POS software must send (re-read at '
        "every request; readable by root and the kiosk group only).",
        check_on_disk=_check_existing_file,
        allowed="an existing file",
    )
    http_allow_insecure: bool = opt(
        False, "Allow pos.http_listen on an address other than loopback: plain HTTP over the counter's network (never a shared one)."
    )


#: Where node_exporter's textfile collector reads on Debian and Raspberry Pi OS (prometheus-node-exporter's
#: --collector.textfile.directory): the usual folder for ``metrics.textfile``.
TEXTFILE_DIRECTORY = "/var/lib/prometheus/node-exporter"


def _check_textfile(value: str) -> str | None:
    """``metrics.textfile``: empty (off), or an absolute path ending in ``.prom``, the only files the collector reads.

    >>> _check_textfile("/var/lib/prometheus/node-exporter/kiosk.prom") is None
    True
    >>> print(_check_textfile("/var/lib/prometheus/node-exporter/kiosk.txt"))
    must end in .prom (node_exporter's textfile collector reads only *.prom files), got "/var/lib/prometheus/node-exporter/kiosk.txt"
    """
    if not value:
        return None
    if problem := _check_path(value):
        return problem
    shown = escape(value, SHOWN_CHARS)
    if not value.startswith("/"):
        return f'expected an absolute path such as {TEXTFILE_DIRECTORY}/kiosk.prom, got "{shown}"'
    name = value.rpartition("/")[2]
    if not name.endswith(".prom") or name == ".prom":
        return f'must end in .prom (node_exporter\'s textfile collector reads only *.prom files), got "{shown}"'
    return None


def _check_metrics_listen(value: str) -> str | None:
    """``metrics.listen``: empty (off), or a loopback HOST:PORT (the metrics leave the kiosk through node_exporter)."""
    if not value:
        return None
    if problem := _check_listen(value):
        return problem
    host, _ = listen_address(value)
    if not is_loopback(host):
        return (
            f"{escape(host, SHOWN_CHARS)} is not a loopback address: /metrics is served on 127.0.0.1 or [::1] only "
            "(Prometheus reads the kiosk through node_exporter and metrics.textfile, or an ssh tunnel)"
        )
    return None


@dataclass(frozen=True)
class MetricsSection:
    textfile: str = opt(
        "",
        "File the daemon writes its Prometheus metrics to, atomically, for node_exporter's textfile collector: a "
        f"*.prom file in its --collector.textfile.directory ({TEXTFILE_DIRECTORY} on Debian and Raspberry Pi OS, "
        "writable by the kiosk user; see docs/METRICS.md). Empty: no file. A file that cannot be written is the "
        "metrics fault, never a stop.",
        check=_check_textfile,
        allowed="empty, or an absolute path ending in .prom",
    )
    interval_s: float = opt(
        15.0,
        "How often metrics.textfile is rewritten (at the first status turn, every 2 s, after this long); and once "
        "more when the daemon stops.",
        minimum=1,
        maximum=3600,
    )
    listen: str = opt(
        "",
        "Also serve the metrics over plain HTTP at http://HOST:PORT/metrics, on a loopback address only (a local "
        "Prometheus agent, or a look over ssh -L). Empty: not served.",
        check=_check_metrics_listen,
        allowed="empty, or a loopback HOST:PORT (127.0.0.1:9102, [::1]:9102)",
    )


@dataclass(frozen=True)
class LogSection:
    level: str = opt("INFO", "Log level.", choices=("DEBUG", "INFO", "WARNING", "ERROR"), env=True)
    unmask: bool = opt(False, "Show whole contract numbers in logs (default: only the last 4 digits).")


@dataclass(frozen=True)
class Config:
    """The whole configuration. Sections are attributes: ``cfg.camera.fps``."""

    kiosk: KioskSection = field(default_factory=KioskSection)
    camera: CameraSection = field(default_factory=CameraSection)
    scan: ScanSection = field(default_factory=ScanSection)
    outbox: OutboxSection = field(default_factory=OutboxSection)
    api: ApiSection = field(default_factory=ApiSection)
    revocations: RevocationsSection = field(default_factory=RevocationsSection)
    feedback: FeedbackSection = field(default_factory=FeedbackSection)
    preview: PreviewSection = field(default_factory=PreviewSection)
    pos: PosSection = field(default_factory=PosSection)
    metrics: MetricsSection = field(default_factory=MetricsSection)
    log: LogSection = field(default_factory=LogSection)
    #: Where it was read from ("" for defaults only); not a key.
    source: str = field(default="", compare=False)
    #: Where each key's value came from when not the default: "section.key" -> "file" or
    #: "environment KIOSK_...", see :meth:`origin`; not a key.
    origins: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False)

    def origin(self, key: str) -> str:
        """Where ``key``'s value came from: ``file``, ``default`` or ``environment KIOSK_...``."""
        return self.origins.get(key, "default")


SECTION_FIELDS = [f for f in dataclasses.fields(Config) if f.name not in ("source", "origins")]

#: The built-in defaults, for parameters whose default is a config key's: a constructor writes
#: ``settle_s: float = DEFAULTS.scan.settle_s`` instead of copying the number (copies drift).
DEFAULTS = Config()


def options() -> list[tuple[str, dataclasses.Field[object]]]:
    """Every option as ("section.key", field), in schema order (for docs, dumps and tests)."""
    return [(f"{s.name}.{o.name}", o) for s in SECTION_FIELDS for o in dataclasses.fields(_section_type(s))]


def _section_type(f: dataclasses.Field[object]) -> type:
    return f.type if isinstance(f.type, type) else globals()[f.type]


def _kind(o: dataclasses.Field[object]) -> str:
    """An option's type by name: ``str``, ``int``, ``float``, ``bool`` or ``list`` (annotated ``list[str]``)."""
    name = o.type if isinstance(o.type, str) else o.type.__name__
    return name.partition("[")[0]


def _default(o: dataclasses.Field[object]) -> object:
    """An option's built-in value: its default, or a new one from its factory (a list's)."""
    return o.default_factory() if o.default_factory is not dataclasses.MISSING else o.default


def _type_name(o: dataclasses.Field[object]) -> str:
    t = _kind(o)
    return {"str": "string", "int": "integer", "float": "number", "bool": "boolean", "list": "list of strings"}[t]


def _coerce(key: str, o: dataclasses.Field[object], value: Any, source: str, check_files: bool = True) -> Any:
    """Check one value against its option; return it in the option's type."""
    t = _kind(o)
    if o.metadata["secret"]:
        shown = "(a secret, not shown)"
    elif isinstance(value, str):
        shown = f'"{escape(value, SHOWN_CHARS)}"'
    else:
        shown = escape(repr(value), SHOWN_CHARS)
    expected = {"str": "a string", "int": "an integer", "float": "a number", "bool": "true or false", "list": "a list of strings"}[t]
    ok = {
        "str": isinstance(value, str),
        "int": isinstance(value, int) and not isinstance(value, bool),
        "float": isinstance(value, (int, float)) and not isinstance(value, bool),
        "bool": isinstance(value, bool),
        "list": isinstance(value, list) and all(isinstance(v, str) for v in value),
    }[t]
    if not ok:
        raise ConfigError(key, f"expected {expected}, got {shown}", source)
    if t == "float":
        value = float(value)
        if not math.isfinite(value):
            raise ConfigError(key, f"expected a finite number, got {shown}", source)
    meta = o.metadata
    if meta["choices"] is not None and value not in meta["choices"]:
        raise ConfigError(key, f"expected one of {', '.join(repr(c) for c in meta['choices'])}, got {shown}", source)
    low, high = meta["minimum"], meta["maximum"]
    if (low is not None and value < low) or (high is not None and value > high):
        raise ConfigError(key, f"expected {_range_text(low, high)}, got {shown}", source)
    if meta["check"] is not None and (problem := meta["check"](value)):
        raise ConfigError(key, problem, source)
    if check_files and meta["check_on_disk"] is not None and (problem := meta["check_on_disk"](value)):
        raise ConfigError(key, problem, source)
    return value


def _range_text(low: float | None, high: float | None) -> str:
    """``"0.1 .. 86400"``: the range as the messages and the reference show it (at least one limit is given)."""
    if low is not None and high is not None:
        return f"{_number(low)} .. {_number(high)}"
    if low is not None:
        return f"at least {_number(low)}"
    if high is not None:
        return f"at most {_number(high)}"
    raise ValueError("a range needs a minimum or a maximum")


def _number(x: float) -> str:
    """A limit as written in the reference: whole numbers in full (86400, not 8.64e+04)."""
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


def allowed_text(o: dataclasses.Field[object]) -> str:
    """What values ``o`` takes, in a few words, for the reference: its range, choices or rule."""
    meta = o.metadata
    if meta["choices"] is not None:
        return "one of " + ", ".join(toml_value(c) for c in meta["choices"])
    if meta["minimum"] is not None or meta["maximum"] is not None:
        return _range_text(meta["minimum"], meta["maximum"])
    return meta["allowed"] or ""


def _from_env(key: str, o: dataclasses.Field[object], text: str) -> Any:
    """Turn an environment variable's text into the option's type (then checked like a file value)."""
    t = _kind(o)
    try:
        if t == "int":
            return int(text)
        if t == "float":
            return float(text)
    except ValueError:
        return text  # _coerce names the key and shows the text
    if t == "bool":
        return {"1": True, "true": True, "yes": True, "0": False, "false": False, "no": False}.get(text.lower(), text)
    if t == "list":
        return [s.strip() for s in text.split(",") if s.strip()]
    return text


def env_name(key: str) -> str:
    """The environment variable that overrides ``key`` (for keys that allow it)."""
    return ENV_PREFIX + key.replace(".", "_").upper()


def default_path(environ: Mapping[str, str]) -> Path:
    """The config file read when none is given: the one :data:`DEFAULT_PATH_ENV` names, else :data:`DEFAULT_PATH`.

    >>> default_path({"KIOSK_CONFIG_FILE": "/srv/bench/kiosk.toml"})
    PosixPath('/srv/bench/kiosk.toml')
    """
    named = environ.get(DEFAULT_PATH_ENV)
    return Path(named) if named else DEFAULT_PATH


def load(path: str | Path | None = None, environ: Mapping[str, str] | None = None, *, check_files: bool = True) -> Config:
    """Read, check and complete the configuration.

    ``path=None`` reads :func:`default_path` when it exists and uses the defaults when it does not
    (a development machine); a path given explicitly must exist. Environment overrides
    (``KIOSK_CAMERA_SOURCE`` and the other keys marked so in the schema) win over the file.
    Raises :class:`ConfigError` naming the file and key. ``check_files=False`` skips the checks of
    files and devices the options name (token file, CA bundle, camera node), for commands that diagnose.
    """
    environ = os.environ if environ is None else environ
    data: dict[str, Any] = {}
    source = ""
    if path is None and default_path(environ).exists():
        path = default_path(environ)
    if path is not None:
        source = str(path)
        try:
            with open(path, "rb") as f:
                data = tomllib.load(f)
        except FileNotFoundError:
            raise ConfigError(
                "",
                f"no such config file; the installed one is {DEFAULT_PATH}, "
                "and `kiosk config reference --example` prints a commented example",
                source,
            ) from None
        except PermissionError:
            raise ConfigError("", "cannot read the config file: permission denied", source) from None
        except IsADirectoryError:
            raise ConfigError("", "is a directory, expected a TOML file", source) from None
        except tomllib.TOMLDecodeError as e:
            raise ConfigError("", f"not valid TOML: {e}", source) from None
        except UnicodeDecodeError:
            raise ConfigError("", "not valid TOML: not UTF-8 text", source) from None

    known_sections = {s.name: s for s in SECTION_FIELDS}
    for name, value in data.items():
        if name not in known_sections:
            raise ConfigError(name, f"unknown section (known: {', '.join(known_sections)})", source)
        if not isinstance(value, dict):
            raise ConfigError(name, "expected a [section] table", source)

    sections = {}
    origins = {}
    for s in SECTION_FIELDS:
        stype = _section_type(s)
        given = data.get(s.name, {})
        opts = {o.name: o for o in dataclasses.fields(stype)}
        for k in given:
            if k not in opts:
                raise ConfigError(f"{s.name}.{k}", f"unknown key (known in [{s.name}]: {', '.join(opts)})", source)
        values = {}
        for name, o in opts.items():
            key = f"{s.name}.{name}"
            if o.metadata["env"] and env_name(key) in environ:
                origins[key] = f"environment {env_name(key)}"
                values[name] = _coerce(key, o, _from_env(key, o, environ[env_name(key)]), origins[key], check_files)
            elif name in given:
                origins[key] = "file"
                values[name] = _coerce(key, o, given[name], source, check_files)
        sections[s.name] = stype(**values)
    cfg = Config(**sections, source=source, origins=origins)
    _check_together(cfg)
    return cfg


def _check_together(cfg: Config) -> None:
    """Rules that involve more than one key."""
    if cfg.api.token and cfg.api.token_file:
        raise ConfigError("api.token_file", "set either api.token or api.token_file, not both", cfg.source)
    if cfg.api.backoff_cap_s < cfg.api.backoff_base_s:
        raise ConfigError("api.backoff_cap_s", f"must be at least api.backoff_base_s ({cfg.api.backoff_base_s:g})", cfg.source)
    insecure = insecure_url_problem(cfg.api.url, cfg.api.allow_insecure_http)
    if insecure:
        raise ConfigError("api.url", insecure, cfg.source)
    if cfg.revocations.enabled and not cfg.revocations.public_key_file:
        raise ConfigError(
            "revocations.public_key_file",
            "required when revocations.enabled: the central's public key that signs the replaced-card list",
            cfg.source,
        )
    pins: dict[str, str] = {}  # pin -> the key that uses it
    for name in ("green_pin", "red_pin", "amber_pin", "buzzer_pin", "button_pin"):
        pin = getattr(cfg.feedback, name)
        if pin and pin in pins:
            raise ConfigError(f"feedback.{name}", f'pin "{pin}" is already used by feedback.{pins[pin]}', cfg.source)
        pins[pin] = name
    if cfg.camera.restart_after_s and cfg.camera.restart_after_s <= cfg.camera.stall_timeout_s:
        raise ConfigError(
            "camera.restart_after_s",
            f"must be longer than camera.stall_timeout_s ({cfg.camera.stall_timeout_s:g}), or 0 for never",
            cfg.source,
        )
    _check_exposure(cfg)
    if cfg.pos.output == "keyboard":
        try:
            LAYOUTS[cfg.pos.keyboard_layout].keystrokes(cfg.pos.template)
        except ValueError as error:
            raise ConfigError("pos.template", f"{error} (pos.keyboard_layout)", cfg.source) from None
    if cfg.pos.output == "http":
        if not cfg.pos.http_token_file:
            raise ConfigError("pos.http_token_file", 'required when pos.output = "http": the token the POS software sends', cfg.source)
        if not cfg.pos.http_allow_insecure and (insecure := insecure_listen_problem(cfg.pos.http_listen)):
            raise ConfigError("pos.http_listen", insecure, cfg.source)
    for fmt in formats_named(cfg.scan.card_formats):
        missing = sorted(fmt.symbologies - set(cfg.scan.symbologies))
        if missing:
            raise ConfigError(
                "scan.symbologies", f"must include {', '.join(missing)}: card format {fmt.name!r} (scan.card_formats) uses it", cfg.source
            )


#: The keys that only a short exposure uses: changed from their defaults with camera.exposure =
#: "auto", they are a mistake (the technician meant a short exposure, and would get none).
SHORT_EXPOSURE_KEYS = ("max_exposure_us", "max_gain", "v4l2_gain")


def _check_exposure(cfg: Config) -> None:
    """camera.exposure's companions: used only with "short", and a fixed exposure that suits the mains flicker.

    A key only "short" uses is refused with "auto" when its value is not the default: a file that
    lists every key at its default (config/kiosk.toml, ``kiosk config show``) is fine."""
    camera = cfg.camera
    if camera.exposure != "short":
        defaults = CameraSection()
        for name in SHORT_EXPOSURE_KEYS:
            if getattr(camera, name) != getattr(defaults, name):
                unused = f'used only with camera.exposure = "short" (it is "{camera.exposure}"): set that too, or remove this key'
                raise ConfigError(f"camera.{name}", unused, cfg.source)
        return
    if problem := flicker_problem(camera.max_exposure_us, camera.flicker_hz):
        raise ConfigError("camera.max_exposure_us", f"{problem} (camera.flicker_hz = {camera.flicker_hz})", cfg.source)


def toml_value(value: Any) -> str:
    r"""One value as inline TOML, arrays on one line (for the reference table and the example file).

    tomli-w writes the scalars, so strings with quotes, backslashes or control characters come
    out as valid TOML.

    >>> print(toml_value(["Code128", 'say "hi"']), toml_value(0.5), toml_value(True))
    ["Code128", "say \"hi\""] 0.5 true
    """
    import tomli_w

    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return tomli_w.dumps({"v": value})[len("v = ") : -1]


def dump(cfg: Config, show_secrets: bool = False) -> str:
    """The effective configuration as TOML, secrets masked unless ``show_secrets``.

    Each value ends in a comment saying where it came from (the file named once at the top, the
    default, or an environment variable), and the whole still loads as TOML::

        # file: /etc/kiosk/kiosk.toml
        [camera]
        source = "v4l2:/dev/video1"  # environment KIOSK_CAMERA_SOURCE
        fps = 30.0  # default
    """
    # Escaped: a comment must not hold a newline or other control character.
    out = [
        "# effective configuration: the file, defaults and environment overrides together",
        f"# file: {escape(str(Path(cfg.source).absolute()), 4096)}" if cfg.source else "# file: none (built-in defaults only)",
        "# after each value, where it came from: file, default, or environment VARIABLE",
    ]
    for s in SECTION_FIELDS:
        section = getattr(cfg, s.name)
        out.append(f"\n[{s.name}]")
        for o in dataclasses.fields(section):
            key = f"{s.name}.{o.name}"
            value, origin = getattr(section, o.name), cfg.origin(key)
            if origin == "default" and o.metadata["default_doc"]:
                origin += f" ({o.metadata['default_doc']})"
            if o.metadata["secret"] and value and not show_secrets:
                value, origin = "********", origin + ", masked"
            out.append(f"{o.name} = {toml_value(value)}  # {origin}")
    return "\n".join(out) + "\n"


def reference_markdown() -> str:
    """The configuration reference table of docs/CONFIGURATION.md, generated from the schema (``kiosk config reference``)."""
    rows = ["| key | type | default | allowed | environment | what it is for |", "|---|---|---|---|---|---|"]
    for key, o in options():
        if o.metadata["default_doc"]:
            default = o.metadata["default_doc"]
        else:
            default = "`" + toml_value(_default(o)) + "`"
        env = f"`{env_name(key)}`" if o.metadata["env"] else ""
        allowed = allowed_text(o).replace("|", "\\|")
        rows.append(f"| `{key}` | {_type_name(o)} | {default} | {allowed} | {env} | {o.metadata['doc']} |")
    return "\n".join(rows) + "\n"


def example_toml() -> str:
    """``config/kiosk.toml``: every key with its default and what it is for (tests keep them equal)."""
    import textwrap

    out = [
        "# Counter kiosk configuration (TOML). Installed as /etc/kiosk/kiosk.toml.",
        "# Every key is shown with its default; delete or comment out what you do not change.",
        "# Check a file with:  kiosk config check --config /etc/kiosk/kiosk.toml",
        "# Keys marked 'env' can be overridden by an environment variable (KIOSK_<SECTION>_<KEY>).",
        "# Generated from the schema in device/config.py: kiosk config reference --example",
    ]
    for s in SECTION_FIELDS:
        out.append(f"\n[{s.name}]")
        for o in dataclasses.fields(_section_type(s)):
            key = f"{s.name}.{o.name}"
            doc = o.metadata["doc"] + (f" (env {env_name(key)})" if o.metadata["env"] else "")
            out.extend("# " + line for line in textwrap.wrap(doc, 98))
            if allowed := allowed_text(o):
                out.extend("# " + line for line in textwrap.wrap(f"allowed: {allowed}", 98))
            if o.metadata["default_doc"]:
                out.append(f"# default: {o.metadata['default_doc']}")
                out.append(f'#{o.name} = "kiosk-0001"')
            else:
                out.append(f"{o.name} = {toml_value(_default(o))}")
    return "\n".join(out) + "\n"
