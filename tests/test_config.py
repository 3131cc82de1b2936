"""One schema: defaults, validation naming the key, environment overrides, dump, example file."""

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from device import config
from device.config import EXIT_CONFIG, ConfigError, load

REPO = Path(__file__).resolve().parent.parent


def write(tmp_path, text):
    """``tmp_path/kiosk.toml``, mode 0600 (some hold api.token, refused in a file others may read)."""
    p = tmp_path / "kiosk.toml"
    p.write_text(text)
    p.chmod(0o600)
    return p


def test_defaults_without_a_file(monkeypatch, tmp_path):
    monkeypatch.setattr(config, "DEFAULT_PATH", tmp_path / "absent.toml")
    cfg = load(None, environ={})
    assert cfg.camera.source == "v4l2:/dev/video0"
    assert cfg.scan.repeat_window_s == 10.0
    assert cfg.outbox.retention_days == 30
    assert cfg.kiosk.id  # the host name
    assert cfg.source == ""


def test_file_values_are_typed(tmp_path):
    p = write(tmp_path, '[kiosk]\nid = "k-1"\nsite = "Riga 5"\n[camera]\nfps = 15\nsource = "file:/dev/null"\npace = "fast"\n')
    cfg = load(p, environ={})
    assert (cfg.kiosk.id, cfg.kiosk.site, cfg.camera.source, cfg.camera.pace) == ("k-1", "Riga 5", "file:/dev/null", "fast")
    assert cfg.camera.fps == 15.0 and isinstance(cfg.camera.fps, float)


@pytest.mark.parametrize(
    "text, key, words",
    [
        ('[camera]\nfps = "fast"\n', "camera.fps", 'expected a number, got "fast"'),
        ("[camera]\nfps = 0\n", "camera.fps", "expected 1 .. 240, got 0"),
        ("[camera]\nwidth = 1280.5\n", "camera.width", "expected an integer"),
        ('[camera]\nsource = "usb0"\n', "camera.source", "BACKEND:TARGET"),
        ('[camera]\npace = "slow"\n', "camera.pace", "'realtime'"),
        ("[camera]\nfsp = 30\n", "camera.fsp", "unknown key"),
        ("[cmaera]\nfps = 30\n", "cmaera", "unknown section"),
        ("camera = 3\n", "camera", "expected a [section] table"),
        ('[scan]\nsymbologies = ["Code128", "Code12"]\n', "scan.symbologies", "unknown symbology 'Code12'"),
        ('[scan]\nsymbologies = "Code128"\n', "scan.symbologies", "expected a list of strings"),
        ('[scan]\ndecoder = "zbar"\n', "scan.decoder", "zxing-cpp"),
        ('[api]\nurl = "central.example"\n', "api.url", "http(s) URL"),
        ('[api]\ntoken = "a"\ntoken_file = "{tmp}/token"\n', "api.token_file", "not both"),
        ('[api]\nallow_insecure_http = "yes"\n', "api.allow_insecure_http", "true or false"),
        ('[kiosk]\nid = " "\n', "kiosk.id", "must not be empty"),
        ('[feedback]\npin_factory = "gpio"\n', "feedback.pin_factory", "'mock'"),
        ("[scan]\nrepeat_window_s = nan\n", "scan.repeat_window_s", "finite"),
    ],
)
def test_bad_values_name_file_and_key(tmp_path, text, key, words):
    (tmp_path / "token").write_text("t\n")
    p = write(tmp_path, text.replace("{tmp}", str(tmp_path)))
    with pytest.raises(ConfigError) as e:
        load(p, environ={})
    assert e.value.key == key
    assert str(e.value).startswith(f"{p}: {key}: ")
    assert words in str(e.value)


@pytest.mark.parametrize(
    "text, words",
    [("[camera\n", "not valid TOML"), (b"\xff\xfe[x]", "not UTF-8")],
)
def test_unparseable_files_name_the_file(tmp_path, text, words):
    p = tmp_path / "kiosk.toml"
    p.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(ConfigError, match=words) as e:
        load(p, environ={})
    assert str(p) in str(e.value)


def test_explicit_missing_file_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="no such config file"):
        load(tmp_path / "nope.toml", environ={})


def test_environment_overrides_win_and_are_checked(tmp_path):
    p = write(tmp_path, '[camera]\nsource = "v4l2:/dev/video0"\n')
    cfg = load(p, environ={"KIOSK_CAMERA_SOURCE": "file:/dev/null", "KIOSK_LOG_LEVEL": "DEBUG"})
    assert cfg.camera.source == "file:/dev/null" and cfg.log.level == "DEBUG"
    with pytest.raises(ConfigError) as e:
        load(p, environ={"KIOSK_CAMERA_SOURCE": "webcam"})
    assert e.value.key == "camera.source" and "KIOSK_CAMERA_SOURCE" in str(e.value)


def test_keys_not_marked_for_environment_ignore_it(tmp_path):
    cfg = load(write(tmp_path, ""), environ={"KIOSK_CAMERA_FPS": "5"})
    assert cfg.camera.fps == 30.0


def test_dump_masks_secrets_and_reloads_to_the_same_config(tmp_path):
    cfg = load(write(tmp_path, '[kiosk]\nid = "k-1"\n[api]\ntoken = "s3cret"\nurl = "https://c.example"\n'), environ={})
    shown = config.dump(cfg)
    assert "s3cret" not in shown and 'token = "********"' in shown
    again = load(write(tmp_path, config.dump(cfg, show_secrets=True)), environ={})
    assert again == cfg


def test_dump_writes_valid_toml_whatever_a_value_holds(tmp_path):
    site = 'Rīga "Centre" \\ counter 3'  # quotes, a backslash, not ASCII
    source = f"file:{tmp_path}/odd\x7fname.avi"  # a file name may hold a control character
    (tmp_path / "odd\x7fname.avi").touch()  # a file: source must be there
    cfg = load(write(tmp_path, f"[kiosk]\nsite = {config.toml_value(site)}\n[camera]\nsource = {config.toml_value(source)}\n"), environ={})
    assert (cfg.kiosk.site, cfg.camera.source) == (site, source)
    again = load(write(tmp_path, config.dump(cfg)), environ={})
    assert (again.kiosk.site, again.camera.source) == (site, source)


def test_example_file_is_generated_from_the_schema():
    text = (REPO / "config" / "kiosk.toml").read_text()
    assert text == config.example_toml(), "regenerate: kiosk config reference --example > config/kiosk.toml"


def test_example_file_has_every_key_and_loads(tmp_path):
    example = REPO / "config" / "kiosk.toml"
    text = example.read_text()
    for key, _ in config.options():
        section, name = key.split(".")
        assert f"\n{name} = " in text or f"\n#{name} = " in text, f"{key} missing from config/kiosk.toml"
    tomllib.loads(text)
    load(example, environ={})


def test_cli_exits_78_naming_the_key(tmp_path):
    p = write(tmp_path, '[camera]\nfps = "fast"\n')
    run = subprocess.run([sys.executable, "-m", "device", "config", "check", "--config", str(p)], capture_output=True, text=True)
    assert run.returncode == EXIT_CONFIG
    assert f'{p}: camera.fps: expected a number, got "fast"' in run.stderr
    assert "Traceback" not in run.stderr


def test_every_scan_tunable_reaches_the_scanner(tmp_path):
    """The [scan] tunables pass straight to Scanner: a value set in the file is the one it scans with."""
    from device.vision.scanner import Scanner

    tuned = {"decoder": "pyzbar", "full_look_interval_s": 2.5, "settle_s": 0.7, "change_threshold": 0.02, "quiet_look_every": 3,
             "max_regions": 7, "work_size": 960}  # fmt: skip
    assert all(value != getattr(config.DEFAULTS.scan, name) for name, value in tuned.items())  # none is its default
    file = write(tmp_path, "[scan]\n" + "".join(f"{name} = {config.toml_value(value)}\n" for name, value in tuned.items()))
    scanner = Scanner.from_config(load(file, environ={}).scan)
    gate, locator = scanner.gate, scanner.locator
    assert (scanner.decoder.name, scanner.region_decoder.name) == ("pyzbar", "pyzbar")
    assert (gate.full_look_interval_s, gate.settle_s, gate.changed_fraction, gate.quiet_look_every) == (2.5, 0.7, 0.02, 3)
    assert (locator.max_regions, locator.work_size) == (7, 960)


def sections_of(cfg, masked=False):
    """The configuration as the dict TOML loads into (secrets as ``config show`` masks them)."""
    import dataclasses

    data = {s.name: dataclasses.asdict(getattr(cfg, s.name)) for s in config.SECTION_FIELDS}
    if masked:
        for key, o in config.options():
            section, name = key.split(".")
            if o.metadata["secret"] and data[section][name]:
                data[section][name] = "********"
    return data


def test_config_show_marks_where_each_value_came_from_and_loads_as_toml(tmp_path):
    import os

    from support.kiosk import run_kiosk

    p = write(tmp_path, '[kiosk]\nid = "k-1"\n[camera]\nfps = 15\n[api]\ntoken = "s3cret"\nurl = "https://c.example"\n')
    overrides = {"KIOSK_CAMERA_SOURCE": "file:/dev/null", "KIOSK_LOG_LEVEL": "DEBUG"}
    env = {k: v for k, v in os.environ.items() if not k.startswith(config.ENV_PREFIX)} | overrides
    run = run_kiosk("config", "show", "--config", str(p), env=env)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert f"# file: {p}" in lines and run.stdout.count(str(p)) == 1
    for line in ('id = "k-1"  # file', "fps = 15.0  # file", 'source = "file:/dev/null"  # environment KIOSK_CAMERA_SOURCE',
                 'level = "DEBUG"  # environment KIOSK_LOG_LEVEL', 'token = "********"  # file, masked',
                 "width = 1280  # default", 'url = "https://c.example"  # file'):  # fmt: skip
        assert line in lines
    assert "s3cret" not in run.stdout
    values = [line for line in lines if line and not line.startswith(("#", "["))]
    assert len(values) == len(config.options())
    assert all(re.fullmatch(r"\w+ = .+  # (file|default( \(.+\))?|environment KIOSK_\w+)(, masked)?", line) for line in values)
    cfg = load(p, environ=overrides)
    assert tomllib.loads(run.stdout) == sections_of(cfg, masked=True)
    clear = run_kiosk("config", "show", "--show-secrets", "--config", str(p), env=env)
    assert 'token = "s3cret"  # file' in clear.stdout.splitlines()
    assert tomllib.loads(clear.stdout) == sections_of(cfg)


def test_config_show_without_a_file_says_so_and_marks_computed_defaults(monkeypatch, tmp_path):
    monkeypatch.setattr(config, "DEFAULT_PATH", tmp_path / "absent.toml")
    shown = config.dump(load(None, environ={}))
    assert "# file: none (built-in defaults only)" in shown
    assert "  # default (the host name)\n" in shown and "# file\n" not in shown
    assert tomllib.loads(shown) == sections_of(load(None, environ={}))


def test_the_default_config_file_is_the_one_kiosk_config_file_names_and_the_tests_name_none(tmp_path):
    """Without --config the kiosk reads /etc/kiosk/kiosk.toml, or the file KIOSK_CONFIG_FILE names:
    tests/conftest.py names one that does not exist, so an installed kiosk's file changes no test."""
    import os

    from support.kiosk import run_kiosk

    assert not config.default_path(os.environ).exists() and config.default_path(os.environ) != config.DEFAULT_PATH
    assert "# file: none (built-in defaults only)" in run_kiosk("config", "show").stdout
    bench = write(tmp_path, '[kiosk]\nid = "bench-1"\n')
    shown = run_kiosk("config", "show", env={**os.environ, config.DEFAULT_PATH_ENV: str(bench)})
    assert f"# file: {bench}" in shown.stdout and 'id = "bench-1"  # file' in shown.stdout, shown.stdout + shown.stderr
    assert config.default_path({}) == config.DEFAULT_PATH == Path("/etc/kiosk/kiosk.toml")


def test_config_show_header_stays_a_comment_whatever_the_path_holds(tmp_path):
    odd = tmp_path / "odd\nname"
    odd.mkdir()
    cfg = load(write(odd, '[kiosk]\nid = "k-1"\n'), environ={})
    shown = config.dump(cfg)
    assert tomllib.loads(shown)["kiosk"]["id"] == "k-1"
    assert "odd\\nname" in shown
