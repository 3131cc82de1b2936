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
    from device.daemon import Kiosk, run_until_signalled
    from device.outputs.feedback import Feedback
    from device.outputs.preview import daemon_preview
    from device.urls import url_without_credentials

    cfg = load_config(args)
    kiosk = Kiosk.from_config(cfg)  # config problems stop here, before any pin is touched
    feedback = Feedback.from_config(cfg, on_button=kiosk.new_presentation)
    kiosk.add_output(feedback)  # the kiosk closes it once its last event is shown
    if preview := daemon_preview(cfg):  # preview.enabled: the live view of `kiosk preview`
        kiosk.add_output(preview)
    try:
        central = url_without_credentials(cfg.api.url)  # the client refuses credentials in it; never print them anyway
        log.info("kiosk %s starting: camera %s, outbox %s, central %s", cfg.kiosk.id, kiosk.source.describe(), cfg.outbox.path, central)
        return run_until_signalled(kiosk, args.drain_timeout)
    finally:
        feedback.close()  # idempotent: for a run that never started


def register(sub) -> None:
    p = add_command(sub, "run", cmd_run, HELP["run"])
    p.add_argument("--drain-timeout", type=float, default=60.0, metavar="SECONDS", help="file cameras: give up draining after this long, exit 1 (default 60)")
