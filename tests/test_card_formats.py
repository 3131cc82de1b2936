"""Card formats as data that flows end to end: a second format (tests/support/card_formats.py, "XU"),
enabled by config, read from a rendered video by the daemon, delivered with its name to the
reference central, which checks it by that format."""

import dataclasses
import threading

import pytest
from support.card_formats import CENTRAL_FORMAT, XU
from support.config import QUICK_RETRY, kiosk_config, write_config
from support.kiosk import run_kiosk

from device.card import CARD_V1, Card, Rejection, formats_named, identify, register_format
from device.config import EXIT_CONFIG, ConfigError, load


def test_xu_is_its_own_format_beside_v1():
    both = formats_named(["v1", "xu"])
    assert identify(XU.encode("12345678", 3), "Code128", both) == Card("xu", "12345678", 3)
    assert identify(XU.encode("12345678", 3), "Code128") == Rejection("not-a-card")  # not enabled by default
    assert identify(XU.encode("12345678", 3)[:-1] + "9", "Code128", both) == Rejection("bad-check-digits")
    assert identify(XU.encode("12345678", 3), "EAN13", both) == Rejection("not-a-card")
    assert identify(CARD_V1.encode("0012345678", 1), "Code128", both) == Card("v1", "0012345678", 1)


def test_a_name_is_registered_once():
    with pytest.raises(ValueError, match="already registered"):
        register_format(dataclasses.replace(XU, prefix="XV"))
    # The same format again is fine (a module imported twice registers it twice).
    assert register_format(dataclasses.replace(XU)) == XU
    register_format(XU)


def test_card_formats_default_to_v1_and_unknown_names_stop_with_the_key(tmp_path):
    assert load(write_config(tmp_path / "empty.toml"), environ={}).scan.card_formats == ["v1"]
    assert load(write_config(tmp_path / "a.toml", scan={"card_formats": ["v1", "xu"]}), environ={}).scan.card_formats == ["v1", "xu"]
    with pytest.raises(ConfigError, match=r"scan\.card_formats: unknown card format 'zz'"):
        load(write_config(tmp_path / "b.toml", scan={"card_formats": ["v1", "zz"]}), environ={})
    # The enabled formats' symbologies must be decoded.
    with pytest.raises(ConfigError, match=r"scan\.symbologies: must include Code128"):
        load(write_config(tmp_path / "c.toml", scan={"symbologies": ["EAN13"]}), environ={})


def test_kiosk_config_check_exits_78_naming_an_unknown_format(tmp_path):
    path = write_config(tmp_path / "kiosk.toml", scan={"card_formats": ["v1", "xu"]})
    run = run_kiosk("config", "check", "--config", str(path))
    assert run.returncode == EXIT_CONFIG  # a fresh process: xu is registered only by the tests
    assert "scan.card_formats" in run.stderr and "'xu'" in run.stderr


def test_a_v1_and_an_xu_card_go_from_video_through_the_daemon_to_the_central_with_their_formats(tmp_path, central_factory):
    from device.assembly import build_kiosk
    from device.tools.synth.video import Presentation, write_presentation_video

    central = central_factory(accept_formats=[CENTRAL_FORMAT])
    video = tmp_path / "counter.avi"
    shown = [Presentation.card("0012345678", 2), Presentation.card("87654321", 4, card_format=XU)]
    truths = write_presentation_video(video, shown, seed=3)
    assert [t.is_card for t in truths] == [True, True]
    cfg = load(
        kiosk_config(
            tmp_path,
            central=central,
            source=f"file:{video}",
            kiosk={"id": "kiosk-formats", "site": "Riga Centre 3"},
            scan={"card_formats": ["v1", "xu"]},
            api=QUICK_RETRY,
        ),
        environ={},
    )
    # In this process: the XU format is registered here, as a plugin would be in a real kiosk.
    kiosk = build_kiosk(cfg)
    assert kiosk.run(threading.Event(), drain_timeout_s=60) == 0
    held = sorted((i["format"], i["contract"], i["card_issue"]) for i in central.identifications())
    assert held == [("v1", "0012345678", 2), ("xu", "87654321", 4)]
