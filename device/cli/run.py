"""`kiosk run`: the daemon, as systemd starts it."""

from __future__ import annotations

import logging

from device.cli import add_command, load_config

log = logging.getLogger("kiosk")

HELP = {"run": "run the kiosk daemon: camera, pipeline, outbox and delivery"}


def cmd_run(args) -> int:
    """Run the kiosk daemon: read the camera, identify cards once per presentation, store each
    identification durably and deliver it to the central. SIGTERM or Ctrl-C stop it cleanly.
    With a file camera (camera.source = file:PATH) it exits 0 once the file is consumed and the
    outbox drained.

    Example: kiosk run --config /etc/kiosk/kiosk.toml
    """
    from device.assembly import build_kiosk
    from device.daemon import run_until_signalled
    from device.urls import url_without_credentials

    cfg = load_config(args)
    kiosk = build_kiosk(cfg)  # config problems stop here, before any pin is touched
    try:
        central = url_without_credentials(cfg.api.url)  # the client refuses credentials in it; never print them anyway
        log.info("kiosk %s starting: camera %s, outbox %s, central %s", cfg.kiosk.id, kiosk.source.describe(), cfg.outbox.path, central)
        return run_until_signalled(kiosk, args.drain_timeout)
    finally:
        kiosk.close()  # for a run that never started: pins released, outbox closed (a no-op after a run)


def register(sub) -> None:
    p = add_command(sub, "run", cmd_run, HELP["run"])
    p.add_argument(
        "--drain-timeout",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="file cameras: give up draining after this long, exit 1 (default 60)",
    )
