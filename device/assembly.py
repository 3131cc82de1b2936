"""One place that builds the kiosk from its config: camera, pipeline, presentations, outbox,
forwarder, replaced-card list and outputs.

``kiosk run``, ``kiosk demo`` and the tests build their kiosk here, so they run the same one::

    kiosk = build_kiosk(cfg)                          # kiosk run
    kiosk = build_kiosk(cfg, outputs=[printer])       # the demo's own output as well
    code = run_until_signalled(kiosk, drain_timeout_s=60)

A new output is its module in :mod:`device.outputs` (an :class:`~device.outputs.Output` with a
``from_config``), its config section, and one line in :data:`OUTPUT_FACTORIES`.

Config problems are :class:`~device.config.ConfigError` naming the key (``kiosk run`` exits
78), raised before anything is left open: the camera and outbox are closed again when a later
part refuses.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from device.camera import CameraError, open_camera
from device.config import Config, ConfigError
from device.daemon.devclass import DeviceClassWatch
from device.daemon.kiosk import Kiosk
from device.forwarder import Forwarder
from device.outbox import Outbox
from device.outputs import Output
from device.pipeline import Pipeline

if TYPE_CHECKING:
    from device.revocations.sync import RevocationSync

#: Builds one output for a kiosk from its config (None: not configured), after the kiosk exists
#: (the feedback's button starts a new presentation on it).
OutputFactory = Callable[[Config, Kiosk], "Output | None"]


def feedback_output(cfg: Config, kiosk: Kiosk) -> Output:
    """LEDs, buzzer and the operator's button (``[feedback]``); pins that are missing are logged, not fatal."""
    from device.outputs.feedback import Feedback

    return Feedback.from_config(cfg, on_button=kiosk.new_presentation)


def preview_output(cfg: Config, kiosk: Kiosk) -> Output | None:
    """The live view of ``kiosk preview`` when ``preview.enabled`` (``[preview]``)."""
    from device.outputs.preview import daemon_preview

    return daemon_preview(cfg)


def pos_output(cfg: Config, kiosk: Kiosk) -> Output | None:
    """The hand-off to the counter's POS (``[pos]``), outcomes recorded in the kiosk's outbox and
    its failures the kiosk's ``pos`` fault; None when ``pos.output = "none"`` (nothing recorded)."""
    if cfg.pos.output == "none":
        return None
    from device.outputs.pos.output import PosOutput

    return PosOutput.from_config(cfg.pos, outcomes=kiosk.outbox, faults=kiosk.faults)


def metrics_output(cfg: Config, kiosk: Kiosk) -> Output | None:
    """The Prometheus metrics (``[metrics]``): a file for node_exporter and/or ``/metrics`` on a
    loopback port; a file it cannot write is the kiosk's ``metrics`` fault. None when both are off."""
    if not cfg.metrics.textfile and not cfg.metrics.listen:
        return None
    from device.outputs.metrics.output import MetricsOutput

    return MetricsOutput.from_config(cfg, faults=kiosk.faults)


#: Every configurable output, in the order they are told (after the log lines, which every kiosk has).
OUTPUT_FACTORIES: tuple[OutputFactory, ...] = (feedback_output, preview_output, pos_output, metrics_output)


def check_delivery_config(cfg: Config) -> None:
    """A kiosk that runs must know its central: a missing api.url or token is a config error (exit 78)."""
    if not cfg.api.url:
        raise ConfigError("api.url", "required to run the kiosk: the central's base URL, e.g. https://central.example.net", cfg.source)
    if not cfg.api.token and not cfg.api.token_file:
        raise ConfigError("api.token_file", "required to run the kiosk: a file holding the central's token (or set api.token)", cfg.source)


def open_outbox(cfg: Config) -> Outbox:
    """The outbox of ``[outbox]``."""
    return Outbox.from_config(cfg)


def make_forwarder(cfg: Config, outbox: Outbox) -> Forwarder:
    """The forwarder as configured; problems are config errors naming the key (exit 78)."""
    check_delivery_config(cfg)
    return Forwarder.from_config(cfg, outbox)


def make_revocations(cfg: Config) -> RevocationSync | None:
    """The replaced-card list's sync when ``revocations.enabled``, else None (config errors name the key)."""
    if not cfg.revocations.enabled:
        return None
    from device.revocations.store import RevocationsError
    from device.revocations.sync import RevocationSync

    try:
        return RevocationSync.from_config(cfg)
    except RevocationsError as e:  # a folder it may not write, say: named, exit 78, no traceback
        raise ConfigError("revocations.path", str(e), cfg.source) from None


def build_kiosk(cfg: Config, *, outputs: Iterable[Output] = (), output_factories: Iterable[OutputFactory] = OUTPUT_FACTORIES) -> Kiosk:
    """The kiosk ``cfg`` describes, ready to :meth:`~device.daemon.Kiosk.run`.

    :param outputs: outputs of the caller's own (the demo's printer, a test's recorder), told
        after the log lines and before the configured ones.
    :param output_factories: the configured outputs (default :data:`OUTPUT_FACTORIES`; a test
        that wants no GPIO and no live view passes ``()``).

    A camera that cannot be used at all (picamera2 not installed, a file that is not there) is a
    config error on ``camera.source``; a live camera that is merely unplugged is not: it is
    retried while the kiosk runs.
    """
    check_delivery_config(cfg)  # before any file is created
    device_watch = DeviceClassWatch()  # before the camera opens: what the unit was allowed at start
    try:
        source = open_camera(cfg.camera)
    except CameraError as e:
        raise ConfigError("camera.source", str(e), cfg.source) from None
    try:
        outbox = open_outbox(cfg)
    except BaseException:
        source.close()
        raise
    try:
        forwarder = make_forwarder(cfg, outbox)
        revocations = make_revocations(cfg)
    except BaseException:
        outbox.close()
        source.close()
        raise
    kiosk = Kiosk(
        source,
        Pipeline.from_config(cfg),
        outbox,
        forwarder,
        outputs=outputs,
        repeat_window_s=cfg.scan.repeat_window_s,
        unmask=cfg.log.unmask,
        kiosk_id=cfg.kiosk.id,
        runtime_dir=Path(cfg.kiosk.runtime_dir),
        backlog_alert_s=cfg.feedback.backlog_alert_s,
        camera_restart_after_s=cfg.camera.restart_after_s,
        device_watch=device_watch,
        revocations=revocations,
    )
    try:
        for factory in output_factories:
            output = factory(cfg, kiosk)
            if output is not None:
                kiosk.add_output(output)  # the kiosk closes it once its last event is shown
    except BaseException:
        kiosk.close()
        raise
    return kiosk
