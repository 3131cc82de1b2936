"""The metrics (issue 23): the daemon's file for node_exporter, /metrics, and the Pi's flags.

The daemon is the one ``kiosk run`` builds (:func:`device.assembly.build_kiosk`) on a generated
presentation video, delivering to the fake central of tests/support; the file is read back with
prometheus_client's own parser, as node_exporter would take it. The only stand-in is the Pi's
firmware (a sysfs file in a temporary tree, or a ``vcgencmd`` on PATH).
"""

from __future__ import annotations

import os
import socket
import stat
import threading
from pathlib import Path

import pytest
import requests
from prometheus_client import CollectorRegistry, Gauge
from prometheus_client.parser import text_string_to_metric_families
from support.central import FakeCentral, unavailable
from support.config import QUICK_RETRY, kiosk_config
from support.ports import occupied_port, reserved_port
from support.waiting import wait_until

from device.assembly import build_kiosk, metrics_output
from device.config import ConfigError, load
from device.fault_names import KNOWN, METRICS
from device.outputs.metrics.families import KioskMetrics
from device.outputs.metrics.server import MetricsServer
from device.outputs.metrics.textfile import write_textfile
from device.outputs.metrics.throttle import SYSFS_PATH, ThrottleReader
from device.tools.synth.video import Presentation, write_presentation_video

#: Every family docs/METRICS.md lists that a kiosk without a Pi's firmware and without the
#: replaced-card list exports (the sample names, as a scrape shows them).
EXPECTED = {
    "kiosk_build_info",
    "kiosk_start_time_seconds",
    "kiosk_daemon_running",
    "kiosk_identifications_total",
    "kiosk_refusals_total",
    "kiosk_not_a_card_total",
    "kiosk_frames_total",
    "kiosk_frames_decoded_total",
    "kiosk_decode_seconds",
    "kiosk_read_module_pixels",
    "kiosk_outbox_records",
    "kiosk_outbox_oldest_pending_age_seconds",
    "kiosk_delivered_records_total",
    "kiosk_rejected_records_total",
    "kiosk_delivery_failures_total",
    "kiosk_fault_active",
    "kiosk_pos_handoff_records",
}


def parse(text: str) -> dict[str, dict[tuple, float]]:
    """Each sample name's values by their labels (sorted pairs), from the text format."""
    samples: dict[str, dict[tuple, float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return samples


def families(text: str) -> set[str]:
    """The family names as Prometheus users know them (counters with their ``_total``)."""
    names = set()
    for family in text_string_to_metric_families(text):
        names.add(family.name + "_total" if family.type == "counter" else family.name)
    return names


def one(samples, name: str, **labels) -> float:
    return samples[name][tuple(sorted(labels.items()))]


@pytest.fixture
def no_firmware(tmp_path, monkeypatch):
    """This machine as a kiosk that is no Pi: an empty sysfs tree, no vcgencmd."""
    monkeypatch.setenv("KIOSK_SYSFS_PREFIX", str(tmp_path / "sysroot"))
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    assert ThrottleReader().read() is None


def write_video(tmp_path, shown, **options) -> Path:
    video = tmp_path / "counter.avi"
    write_presentation_video(video, shown, fps=10, size=(640, 360), seed=23, **options)
    return video


def identifications_received(central: FakeCentral) -> set[str]:
    """The ids of the identifications (not refusals) the central was sent."""
    records = [r for post in central.posts for r in (post.json or {}).get("identifications", [])]
    return {r["id"] for r in records if r.get("kind", "identification") != "refusal"}


def test_the_daemon_s_file_parses_and_counts_what_the_central_received(tmp_path, no_firmware):
    shown = [
        Presentation.card("0012345678", 1, hold_s=1.0),
        Presentation.product_ean13(hold_s=1.0),
        Presentation.card("0000004711", 1, hold_s=1.0),
        Presentation.bad_check("0000000815", hold_s=1.0),
        Presentation.card("0000031337", 1, hold_s=1.0),
    ]
    video = write_video(tmp_path, shown)
    textfile = tmp_path / "node-exporter" / "kiosk.prom"
    textfile.parent.mkdir()
    umask = os.umask(0o027)  # as the unit's UMask=: the file must still be node_exporter's to read
    try:
        with FakeCentral() as central:
            central.then(unavailable(retry_after="0"))  # one failed attempt, counted by its cause
            cfg = load(kiosk_config(tmp_path, central=central, source=f"file:{video}", kiosk={"id": "kiosk-m", "site": "riga-5"},
                                    api=QUICK_RETRY, metrics={"textfile": str(textfile)}), environ={})  # fmt: skip
            kiosk = build_kiosk(cfg, output_factories=[metrics_output])
            assert kiosk.run(threading.Event(), drain_timeout_s=60) == 0
            received = identifications_received(central)
    finally:
        os.umask(umask)
    text = textfile.read_text()
    assert stat.S_IMODE(textfile.stat().st_mode) == 0o644
    assert sorted(EXPECTED - families(text)) == []
    assert not [name for name in families(text) if not name.startswith("kiosk_")]
    samples = parse(text)
    counters = kiosk.counters
    assert len(received) == 3 and counters.identifications == 3  # the video as shown: the test can tell
    assert one(samples, "kiosk_identifications_total") == len(received)
    assert one(samples, "kiosk_delivered_records_total", kind="identification") == len(received)
    assert one(samples, "kiosk_not_a_card_total") == counters.not_a_card == 2
    assert one(samples, "kiosk_delivery_failures_total", cause="busy") == 1
    assert sum(samples["kiosk_delivery_failures_total"].values()) == 1
    assert one(samples, "kiosk_frames_total") == counters.frames > 0
    assert one(samples, "kiosk_frames_decoded_total") == counters.decoded_frames
    assert 0 < one(samples, "kiosk_decode_seconds_count") <= counters.decoded_frames  # frames may be dropped, never invented
    assert 0 < one(samples, "kiosk_read_module_pixels_count") <= 5
    assert one(samples, "kiosk_outbox_records", state="pending") == 0
    assert one(samples, "kiosk_outbox_records", state="delivered") == 3
    assert one(samples, "kiosk_build_info", kiosk="kiosk-m", site="riga-5", version=__import__("device").__version__) == 1
    assert one(samples, "kiosk_daemon_running") == 0  # the last write, as it stopped
    assert {labels[0][1] for labels in samples["kiosk_fault_active"]} >= set(KNOWN)
    assert set(samples["kiosk_fault_active"].values()) == {0}
    assert "kiosk_pi_throttle_flag" not in samples  # no firmware here: no series, not a made-up 0
    assert sorted(p.name for p in textfile.parent.iterdir()) == ["kiosk.prom"]  # no temporary file left


def test_a_folder_it_cannot_write_is_the_metrics_fault_seen_on_metrics_then_cleared(tmp_path, no_firmware):
    video = write_video(tmp_path, [Presentation.card(f"{4000 + 97 * i:010d}", 1, hold_s=1.0).after(1.0) for i in range(8)])
    folder = tmp_path / "node-exporter"  # not there yet: as on a Pi without node_exporter installed
    with FakeCentral() as central, reserved_port() as port:
        cfg = load(kiosk_config(tmp_path, central=central, source=f"file:{video}", pace="realtime", api=QUICK_RETRY,
                                metrics={"textfile": str(folder / "kiosk.prom"), "interval_s": 1, "listen": f"127.0.0.1:{port}"}),
                   environ={})  # fmt: skip
        kiosk = build_kiosk(cfg, output_factories=[metrics_output])
        stop = threading.Event()
        codes: list[int] = []
        runner = threading.Thread(target=lambda: codes.append(kiosk.run(stop, drain_timeout_s=30)), name="daemon")
        runner.start()
        try:
            url = f"http://127.0.0.1:{port}/metrics"

            def scraped(fault: float):
                try:
                    answer = requests.get(url, timeout=5)
                except requests.ConnectionError:
                    return None
                samples = parse(answer.text)
                return samples if samples.get("kiosk_fault_active", {}).get((("fault", METRICS),)) == fault else None

            samples = wait_until(lambda: scraped(1.0), what="the metrics fault on /metrics", timeout_s=30)
            assert METRICS in kiosk.faults.active() and "No such file or directory" in kiosk.faults.active()[METRICS]
            frames = one(samples, "kiosk_frames_total")
            wait_until(lambda: kiosk.counters.frames > frames + 5, what="scanning going on meanwhile")
            folder.mkdir()
            wait_until(lambda: scraped(0.0), what="the metrics fault cleared on /metrics", timeout_s=30)
            wait_until(lambda: written_fault(folder / "kiosk.prom") == 0, what="the file written, saying the fault is over", timeout_s=30)
            assert METRICS not in kiosk.faults.active()
        finally:
            stop.set()
            runner.join()
        assert codes == [0]
        with pytest.raises(requests.ConnectionError):
            requests.get(url, timeout=5)  # the server closed with the daemon
    assert one(parse((folder / "kiosk.prom").read_text()), "kiosk_daemon_running") == 0


def written_fault(path: Path) -> float | None:
    """The metrics fault's value in the file, None while there is no file."""
    return one(parse(path.read_text()), "kiosk_fault_active", fault=METRICS) if path.exists() else None


def test_a_metrics_port_already_taken_is_a_config_error_naming_the_key(tmp_path):
    with occupied_port() as port:
        cfg = load(kiosk_config(tmp_path, central="http://127.0.0.1:9", source=f"file:{write_video(tmp_path, [])}",
                                metrics={"listen": f"127.0.0.1:{port}"}), environ={})  # fmt: skip
        with pytest.raises(ConfigError) as refused:
            build_kiosk(cfg, output_factories=[metrics_output])
    assert refused.value.key == "metrics.listen" and str(port) in str(refused.value)


def test_clients_that_say_nothing_neither_pile_up_nor_keep_the_server_from_answering():
    registry = CollectorRegistry()
    Gauge("kiosk_test_value", "a value", registry=registry).set(7)
    server = MetricsServer("127.0.0.1", 0, registry, max_clients=2, client_timeout_s=0.5)
    idle = [socket.create_connection(server.address, timeout=5) for _ in range(2)]
    try:
        refused = socket.create_connection(server.address, timeout=5)  # a third, while two hold the slots
        assert wait_until(lambda: refused.recv(1) == b"", what="the connection over the bound closed at once")
        refused.close()
        answer = wait_until(lambda: _get(server.url), what="a scrape once the silent clients were let go", timeout_s=10)
        assert answer.status_code == 200 and answer.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        assert one(parse(answer.text), "kiosk_test_value") == 7
        assert requests.get(server.url.replace("/metrics", "/other"), timeout=5).status_code == 404
    finally:
        for client in idle:
            client.close()
        server.close()


def _get(url: str):
    try:
        return requests.get(url, timeout=2)
    except requests.RequestException:
        return None


def test_a_file_it_cannot_write_leaves_the_old_one_and_no_temporary_file(tmp_path):
    registry = CollectorRegistry()
    gauge = Gauge("kiosk_test_value", "a value", registry=registry)
    path = tmp_path / "kiosk.prom"
    gauge.set(1)
    write_textfile(path, registry)
    (tmp_path / "blocker").write_text("a file where a folder should be\n")
    with pytest.raises(NotADirectoryError):
        write_textfile(tmp_path / "blocker" / "kiosk.prom", registry)
    with pytest.raises(FileNotFoundError):
        write_textfile(tmp_path / "missing" / "kiosk.prom", registry)
    gauge.set(2)
    write_textfile(path, registry)
    assert one(parse(path.read_text()), "kiosk_test_value") == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blocker", "kiosk.prom"]


# --- the Pi's firmware: the one stand-in, at the hardware edge ---------------------------------


def firmware(tmp_path, monkeypatch, text: str | None) -> None:
    """A sysfs tree whose get_throttled holds ``text`` (None: no such file), and no vcgencmd."""
    root = tmp_path / "sysroot"
    monkeypatch.setenv("KIOSK_SYSFS_PREFIX", str(root))
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    if text is not None:
        node = Path(str(root) + SYSFS_PATH)
        node.parent.mkdir(parents=True)
        node.write_text(text)


def throttle_samples(reader: ThrottleReader) -> dict[tuple, float]:
    metrics = KioskMetrics(version="1", kiosk_id="k", site="", started_at=0.0, throttle=reader)
    from prometheus_client import generate_latest

    return parse(generate_latest(metrics.registry).decode()).get("kiosk_pi_throttle_flag", {})


def flag(samples, condition: str, period: str) -> float:
    return samples[(("condition", condition), ("period", period))]


def test_the_firmware_s_bits_in_sysfs_are_each_condition_now_and_since_boot(tmp_path, monkeypatch):
    firmware(tmp_path, monkeypatch, "50005\n")  # under-voltage now, throttled now, both since boot
    samples = throttle_samples(ThrottleReader())
    assert len(samples) == 8
    assert flag(samples, "under_voltage", "now") == flag(samples, "under_voltage", "since_boot") == 1
    assert flag(samples, "throttled", "now") == flag(samples, "throttled", "since_boot") == 1
    assert flag(samples, "freq_capped", "now") == flag(samples, "freq_capped", "since_boot") == 0
    assert flag(samples, "soft_temp_limit", "now") == flag(samples, "soft_temp_limit", "since_boot") == 0


def test_a_past_under_voltage_is_since_boot_only(tmp_path, monkeypatch):
    firmware(tmp_path, monkeypatch, "80000\n")  # the soft temperature limit was reached since boot, nothing now
    samples = throttle_samples(ThrottleReader())
    assert flag(samples, "soft_temp_limit", "since_boot") == 1
    assert sum(samples.values()) == 1


def test_without_the_firmware_there_is_no_series_and_garbage_is_none(tmp_path, monkeypatch):
    firmware(tmp_path, monkeypatch, None)
    assert throttle_samples(ThrottleReader()) == {}
    garbage = tmp_path / "other"
    monkeypatch.setenv("KIOSK_SYSFS_PREFIX", str(garbage))
    node = Path(str(garbage) + SYSFS_PATH)
    node.parent.mkdir(parents=True)
    node.write_text("not hex\n")
    assert throttle_samples(ThrottleReader()) == {}


def test_without_sysfs_vcgencmd_is_asked(tmp_path, monkeypatch):
    firmware(tmp_path, monkeypatch, None)
    tools = tmp_path / "bin"
    tools.mkdir()
    fake = tools / "vcgencmd"
    fake.write_text('#!/bin/sh\n[ "$1" = get_throttled ] && echo "throttled=0x20002"\n')
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tools}:/usr/bin:/bin")
    reader = ThrottleReader()
    samples = throttle_samples(reader)
    assert reader.way == "vcgencmd"
    assert flag(samples, "freq_capped", "now") == flag(samples, "freq_capped", "since_boot") == 1
    assert sum(samples.values()) == 2


def full_exposition(tmp_path, monkeypatch) -> str:
    """Every family a kiosk can export: on a Pi, with the replaced-card list, after a status."""
    from prometheus_client import generate_latest
    from support.status import daemon_status

    from device.status.report import ReplacedListStatus

    firmware(tmp_path, monkeypatch, "0\n")
    metrics = KioskMetrics(version="1", kiosk_id="k", site="s", started_at=0.0, throttle=ThrottleReader())
    replaced = ReplacedListStatus(version=7, count=3, issued_at=None, key_id="k1", synced_at=None, attempt_at=None,
                                  attempt_error=None, path="/var/lib/kiosk/revocations.db", file_bytes=4096, age_s=60.0,
                                  max_age_s=86400.0, interval_s=3600.0)  # fmt: skip
    metrics.update(daemon_status(revocations=replaced))
    return generate_latest(metrics.registry).decode()


def test_metrics_md_lists_every_family_and_the_series_count(tmp_path, monkeypatch):
    import re

    text = full_exposition(tmp_path, monkeypatch)
    exported = families(text)
    doc = (Path(__file__).resolve().parent.parent / "docs" / "METRICS.md").read_text()
    documented = set(re.findall(r"^\| `(kiosk_[a-z_]+)` \| (?:gauge|counter|histogram) \|", doc, re.M))
    assert sorted(exported ^ documented) == []
    series = sum(1 for line in text.splitlines() if line and not line.startswith("#"))
    assert f"A kiosk exports **{series} series**" in doc
