"""Config refuses what would fail later: `kiosk config check` and `kiosk run` give one verdict.

Every value here once passed `config check` and then broke the running kiosk (issue 11, point 5):
a traceback and a systemd restart loop, an internal error on every delivery attempt, every record
refused by the central, a password in the log. Each bad config is given to both commands, as
processes, and both must exit 78 with the same message naming the same key.
"""

import math

import pytest
import tomli_w
from support.kiosk import run_kiosk

from device import config
from device.config import EXIT_CONFIG, ConfigError, load

PASSWORD = "s3cret-pw"


@pytest.fixture
def base(tmp_path):
    """A config `kiosk run` would start with (file camera, loopback central, a token file)."""
    import cv2
    import numpy as np

    image = tmp_path / "counter.png"
    cv2.imwrite(str(image), np.full((60, 80, 3), 120, np.uint8))
    token = tmp_path / "token"
    token.write_text("t0ken\n")
    return {
        "kiosk": {"id": "k-1", "runtime_dir": str(tmp_path / "run")},
        "camera": {"source": f"file:{image}", "pace": "fast"},
        "outbox": {"path": str(tmp_path / "outbox.db")},
        "api": {"url": "http://127.0.0.1:9", "token_file": str(token)},
        "feedback": {"pin_factory": "mock"},
    }


def with_value(base: dict, key: str, value) -> dict:
    section, name = key.split(".")
    return {**base, section: {**base.get(section, {}), name: value}}


def verdicts(tmp_path, cfg: dict, env: dict | None = None):
    """(config check, run) results for ``cfg`` written as TOML."""
    import os

    path = tmp_path / "kiosk.toml"
    path.write_text(tomli_w.dumps(cfg))
    environ = {**os.environ, **(env or {})}
    check = run_kiosk("config", "check", "--config", str(path), env=environ, timeout=60)
    run = run_kiosk("run", "--config", str(path), "--drain-timeout", "5", env=environ, timeout=60)
    return path, check, run


#: (key, bad value, words in the message): every case of the issue's finding 5, and kin.
CASES = [
    ("api.url", "http://central.example.net", "plain http:// to central.example.net"),
    ("api.url", "central.example.net", "expected an http(s) URL"),
    ("api.url", "https://", "no host name"),
    ("api.url", "https://central example.net", "spaces or control characters"),
    ("api.url", "https://central.example.net:99999", "port out of range"),
    ("api.url", "https://central.example.net:http", "port could not be cast"),
    ("api.url", "gopher://central.example.net", "expected an http(s) URL"),
    ("api.url", "https://[::1", "invalid IPv6 URL"),
    ("api.url", "https://central.example.net/?kiosk=1", "without ?query"),
    ("api.url", f"https://kiosk:{PASSWORD}@central.example.net", "user name or password"),
    ("api.url", f"https://kiosk:{PASSWORD}@central.example.net:99999", "user name or password"),
    ("api.ca_bundle", "{tmp}/missing-ca.pem", "no such file"),
    ("api.ca_bundle", "{tmp}/token", "not a CA bundle"),
    ("api.token_file", "{tmp}/missing-token", "no such file"),
    ("api.token", "two words", "without spaces"),
    ("scan.change_threshold", 5.0, "expected 0.0001 .. 1, got 5.0"),
    ("api.read_timeout_s", 1e300, "expected 0.1 .. 86400"),
    ("api.connect_timeout_s", math.inf, "finite"),
    ("api.backoff_base_s", math.nan, "finite"),
    ("api.backoff_cap_s", 1e300, "expected 0.01 .. 86400"),
    ("api.retry_after_cap_s", 1e300, "expected 0.01 .. 86400"),
    ("api.batch_size", 5000, "expected 1 .. 1000"),
    ("outbox.retention_days", 1000000, "expected 0 .. 3650, got 1000000"),
    ("outbox.path", "", "must not be empty"),
    ("outbox.path", "/var/lib/kiosk/out\x00box.db", "control characters"),
    ("kiosk.id", "k" * 100_000, "at most 128 characters"),
    ("kiosk.id", "kiosk\x1b[2J", "without control characters"),
    ("kiosk.site", "Riga\ncounter 2", "without control characters"),
    ("scan.symbologies", ["EAN13", "EAN8"], "must include Code128: card format 'v1'"),
    ("camera.fps", 1e6, "expected 1 .. 240"),
    ("camera.bad_reads", 10**12, "expected 1 .. 1000"),
    ("metrics.textfile", "/var/lib/prometheus/node-exporter/kiosk.txt", "must end in .prom"),
    ("metrics.textfile", "kiosk.prom", "expected an absolute path"),
    ("metrics.listen", "0.0.0.0:9102", "not a loopback address"),
    ("metrics.interval_s", 0, "expected 1 .. 3600"),
    ("camera.exposure", "fast", "expected one of 'auto', 'short', got \"fast\""),
    ("camera.flicker_hz", 55, "expected one of 0, 50, 60, got 55"),
    ("camera.max_exposure_us", 0, "expected 50 .. 100000, got 0"),
    ("camera.max_gain", 0.5, "expected 1 .. 64, got 0.5"),
    # Alone, with camera.exposure left "auto": a key that would do nothing.
    ("camera.max_exposure_us", 2000, 'used only with camera.exposure = "short" (it is "auto")'),
    ("camera.v4l2_gain", 32, 'used only with camera.exposure = "short"'),
]


@pytest.mark.parametrize("key, value, words", CASES, ids=[f"{k}={str(v)[:40]}" for k, v, _ in CASES])
def test_config_check_and_run_refuse_alike_naming_the_key(tmp_path, base, key, value, words):
    value = value.replace("{tmp}", str(tmp_path)) if isinstance(value, str) else value
    path, check, run = verdicts(tmp_path, with_value(base, key, value))
    assert check.returncode == EXIT_CONFIG, check.stdout + check.stderr
    assert run.returncode == EXIT_CONFIG, run.stderr[-2000:]
    said = check.stderr.strip().splitlines()[-1]
    assert said.startswith(f"kiosk: config error: {path}: {key}: "), said
    assert words in said
    assert run.stderr.strip().splitlines()[-1] == said  # one validation, one verdict
    assert "Traceback" not in check.stderr + run.stderr
    assert len(said) < 600  # a 100,000-character value is not repeated whole
    assert not (tmp_path / "outbox.db").exists()  # refused before anything was created


#: (camera keys, the key named, words): exposure settings that are wrong together.
EXPOSURE_COMBINATIONS = [
    (
        {"exposure": "short", "flicker_hz": 50, "max_exposure_us": 15000},
        "camera.max_exposure_us",
        "must be a whole number of flicker periods under 50 Hz mains (10000 us: 10000 or 20000), got 15000",
    ),
    ({"exposure": "short", "flicker_hz": 60, "max_exposure_us": 10000}, "camera.max_exposure_us", "(8333 us: 8333 or 16667)"),
    ({"exposure": "auto", "flicker_hz": 50, "max_gain": 4.0}, "camera.max_gain", 'used only with camera.exposure = "short"'),
]


@pytest.mark.parametrize("camera, key, words", EXPOSURE_COMBINATIONS, ids=["50Hz-15ms", "60Hz-10ms", "gain-with-auto"])
def test_exposure_settings_wrong_together_are_refused_alike_naming_the_key(tmp_path, base, camera, key, words):
    path, check, run = verdicts(tmp_path, {**base, "camera": {**base["camera"], **camera}})
    said = check.stderr.strip().splitlines()[-1]
    assert check.returncode == run.returncode == EXIT_CONFIG, said
    assert said.startswith(f"kiosk: config error: {path}: {key}: ") and words in said, said
    assert run.stderr.strip().splitlines()[-1] == said


def test_exposure_settings_that_fit_together_pass():
    for camera in (
        {"exposure": "short", "flicker_hz": 50, "max_exposure_us": 20000},  # two flicker periods
        {"exposure": "short", "flicker_hz": 50, "max_exposure_us": 800},  # under one: banding, but allowed
        {"exposure": "short", "flicker_hz": 60, "max_exposure_us": 16667},  # within 1 us of two 60 Hz periods
        {"exposure": "auto", "flicker_hz": 60},
    ):
        cfg = config.Config(camera=config.CameraSection(**camera))
        config._check_together(cfg)  # the rules that involve more than one key: nothing to say


def test_the_base_config_is_good(tmp_path, base):
    """The cases above fail because of their one bad value, not because of the rest."""
    path, check, run = verdicts(tmp_path, base)
    assert check.returncode == 0, check.stderr
    assert run.returncode != EXIT_CONFIG, run.stderr[-2000:]


def test_a_password_in_the_url_is_never_printed(tmp_path, base):
    bad = with_value(base, "api.url", f"https://kiosk:{PASSWORD}@central.example.net")
    path, check, run = verdicts(tmp_path, bad)
    show = run_kiosk("config", "show", "--config", str(path))
    for result in (check, run, show):
        assert result.returncode == EXIT_CONFIG
        assert PASSWORD not in result.stdout + result.stderr
        assert "api.url" in result.stderr


def test_environment_overrides_pass_the_same_checks(tmp_path, base):
    env = {"KIOSK_API_URL": f"https://kiosk:{PASSWORD}@central.example.net"}
    path, check, run = verdicts(tmp_path, base, env=env)
    for result in (check, run):
        assert result.returncode == EXIT_CONFIG
        assert "environment KIOSK_API_URL: api.url: the URL carries a user name or password (https://***@" in result.stderr
        assert PASSWORD not in result.stderr
    path, check, run = verdicts(tmp_path, base, env={"KIOSK_OUTBOX_PATH": ""})
    assert check.returncode == run.returncode == EXIT_CONFIG
    assert "KIOSK_OUTBOX_PATH: outbox.path: must not be empty" in check.stderr


def test_a_token_file_still_empty_is_not_a_config_error(tmp_path, base):
    """install.sh creates the token file empty and runs `config check`: the token comes later
    (while it is empty the running kiosk reports it as a fault, not as exit 78)."""
    (tmp_path / "token").write_text("")
    path, check, _ = verdicts(tmp_path, base)
    assert check.returncode == 0, check.stderr


def test_a_missing_token_file_stops_run_but_not_the_commands_that_diagnose(tmp_path, base):
    """A token file that went away is what `kiosk status` and `diag api` must be able to tell."""
    (tmp_path / "token").unlink()
    path, check, run = verdicts(tmp_path, base)
    assert check.returncode == run.returncode == 78 and "api.token_file: no such file" in check.stderr
    status = run_kiosk("status", "--config", str(path), timeout=60)
    assert status.returncode == 1 and "NOT RUNNING" in status.stdout and "config error" not in status.stderr
    diag = run_kiosk("diag", "api", "--config", str(path), timeout=60)
    # No central listens in this config: diag gets as far as asking it, instead of a config error.
    assert diag.returncode == 1 and diag.stdout.startswith("PROBLEM: cannot reach the central") and not diag.stderr


def test_the_value_of_a_secret_is_not_shown_in_its_error(tmp_path):
    p = tmp_path / "kiosk.toml"
    p.write_text('[api]\ntoken = "my token"\n')
    with pytest.raises(ConfigError) as e:
        load(p, environ={})
    assert "my token" not in str(e.value) and e.value.key == "api.token"
    p.write_text("[api]\ntoken = 12345\n")
    with pytest.raises(ConfigError) as e:
        load(p, environ={})
    assert "12345" not in str(e.value)


def test_control_characters_in_a_value_are_escaped_in_the_message(tmp_path):
    p = tmp_path / "kiosk.toml"
    p.write_text('[camera]\npace = "fa\\u001b[2Jst"\n')
    with pytest.raises(ConfigError) as e:
        load(p, environ={})
    assert "\x1b" not in str(e.value) and "\\x1b[2J" in str(e.value)


@pytest.mark.parametrize(
    "url",
    [
        "https://central.example.net",
        "https://central.example.net:8443/kiosk/",
        "http://127.0.0.1:8080",
        "http://[::1]:80",
        "https://central_1.internal",
        "https://zentrale.bücher.example",
    ],
)
def test_good_urls_pass(url):
    assert config.url_problem(url) is None


def test_every_number_has_a_documented_range():
    """Timeouts and backoffs at most a day (alert ages up to 30 days), retention at most ten years, shares in 0..1."""
    numbers = [(key, o) for key, o in config.options() if o.type in ("int", "float", int, float)]
    assert len(numbers) >= 20
    for key, o in numbers:
        low, high = o.metadata["minimum"], o.metadata["maximum"]
        assert low is not None and high is not None, f"{key} has no range"
        assert config.allowed_text(o) in config.reference_markdown()
        if key.endswith("_s") and key not in ("feedback.backlog_alert_s", "revocations.max_age_s"):  # ages, not waits
            assert high <= config.DAY_S, key
    assert config.ScanSection.__dataclass_fields__["change_threshold"].metadata["maximum"] == 1
    assert config.OutboxSection.__dataclass_fields__["retention_days"].metadata["maximum"] == 3650


def test_the_example_file_shows_the_ranges():
    text = config.example_toml()
    assert "# allowed: 0 .. 3650\nretention_days = 30" in text
    assert "# allowed: 0.0001 .. 1\nchange_threshold = 0.005" in text


def test_kiosk_names_follow_the_centrals_rule():
    """One rule: what the config lets through, the reference central accepts."""
    from central.contract import MAX_NAME_LENGTH, is_name

    check_id = config.KioskSection.__dataclass_fields__["id"].metadata["check"]
    for name in ["k-1", "Rīga 5", "x" * MAX_NAME_LENGTH, "x" * (MAX_NAME_LENGTH + 1), "a\x7fb", "a\x85b", "a\tb", ""]:
        assert (check_id(name) is None) == (is_name(name) and bool(name.strip())), repr(name)
