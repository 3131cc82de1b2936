"""The assembly: one place builds the kiosk from its config, outputs included.

What a newcomer relies on: the kiosk `kiosk run` builds is the one the demo and the tests build;
a new output is one more factory; and a part that cannot start leaves nothing open behind it.
"""

from __future__ import annotations

import pytest
from support.central import CENTRAL_TOKEN
from support.config import write_config

from device.assembly import OUTPUT_FACTORIES, build_kiosk
from device.config import ConfigError, load
from device.events import Identified
from device.outbox import OutboxError
from device.outputs import Output


@pytest.fixture
def cfg(tmp_path, card_folder):
    return load(
        write_config(
            tmp_path / "kiosk.toml",
            kiosk={"id": "kiosk-assembly", "runtime_dir": str(tmp_path / "run")},
            camera={"source": f"file:{card_folder(['0012345678'])}", "pace": "fast"},
            outbox={"path": str(tmp_path / "outbox.db")},
            feedback={"pin_factory": "mock"},
            api={"url": "http://127.0.0.1:9", "token": CENTRAL_TOKEN},
        ),
        environ={},
    )


class Pos(Output):
    """A stand-in for a new output (a POS hand-off)."""

    def on_identified(self, event: Identified) -> None:
        pass


class PosFactory:
    """The line a new output adds to OUTPUT_FACTORIES; keeps the kiosks it was given, raises ``error`` if set."""

    def __init__(self, error: Exception | None = None):
        self.error = error
        self.kiosks = []

    def __call__(self, cfg, kiosk) -> Pos:
        self.kiosks.append(kiosk)
        if self.error is not None:
            raise self.error
        return Pos()


def output_names(kiosk) -> list[str]:
    return [type(o).__name__ for o in kiosk.outputs.outputs]


def test_the_kiosk_has_the_log_the_callers_outputs_then_the_configured_ones(cfg):
    own = Pos()
    kiosk = build_kiosk(cfg, outputs=[own])
    try:
        # preview.enabled is off; the camera check (from the cards' figures) is on by default
        assert output_names(kiosk) == ["LogOutput", "Pos", "Feedback", "CameraCheck"]
        assert kiosk.outputs.outputs[1] is own
        assert kiosk.forwarder.publish == kiosk.outputs.publish  # deliveries reach the outputs too
    finally:
        kiosk.close()


def test_a_new_output_is_one_more_factory(cfg):
    pos = PosFactory()
    kiosk = build_kiosk(cfg, output_factories=(*OUTPUT_FACTORIES, pos))
    try:
        assert pos.kiosks == [kiosk] and output_names(kiosk) == ["LogOutput", "Feedback", "CameraCheck", "Pos"]
    finally:
        kiosk.close()


def test_an_output_that_cannot_start_leaves_nothing_open(cfg):
    broken = PosFactory(RuntimeError("POS link refused"))
    with pytest.raises(RuntimeError, match="POS link refused"):
        build_kiosk(cfg, output_factories=(*OUTPUT_FACTORIES, broken))
    (kiosk,) = broken.kiosks
    assert not any(thread.is_alive() for thread in kiosk.outputs.threads())  # the feedback made first is closed
    with pytest.raises(OutboxError, match="closed database"):  # the outbox is closed
        kiosk.outbox.stats()


def test_config_problems_stop_the_assembly_before_any_output_is_made(cfg, tmp_path):
    from dataclasses import replace

    pos = PosFactory()
    no_central = replace(cfg, api=replace(cfg.api, url=""))
    with pytest.raises(ConfigError, match="api.url"):
        build_kiosk(no_central, output_factories=[pos])
    assert pos.kiosks == [] and not (tmp_path / "outbox.db").exists()
