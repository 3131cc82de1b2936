"""`kiosk revocations status|sync|check` and the list in `kiosk status`, as real CLI processes."""

from __future__ import annotations

import json

from support.central import CENTRAL_TOKEN
from support.config import kiosk_config, write_config
from support.daemon import Daemon, wait_for_status, with_empty_tail
from support.kiosk import run_kiosk
from support.revocations import ADMIN_TOKEN, LOST, OTHER
from support.unprivileged import installed_config, kiosk_as_nobody


def cli_config(tmp_path, central_url, public_key, source="file:/dev/null", pace="fast"):
    return kiosk_config(
        tmp_path,
        central=central_url,
        source=source,
        pace=pace,
        kiosk={"id": "kiosk-rev-cli"},
        revocations={"enabled": True, "public_key_file": str(public_key), "interval_s": 3600},
    )


def test_sync_then_status_and_check_without_the_daemon(tmp_path, signing_central, list_keys):
    cfg = str(cli_config(tmp_path, signing_central.url, list_keys[1]))
    none = run_kiosk("revocations", "status", "--config", cfg)
    assert none.returncode == 1 and "there is no replaced-card list" in none.stdout and "Traceback" not in none.stderr
    stopped = run_kiosk("status", "--config", cfg)
    assert "replaced    there is no replaced-card list" in stopped.stdout and "Traceback" not in stopped.stderr, stopped.stdout

    signing_central.reissue(LOST, 2, ADMIN_TOKEN)
    sync = run_kiosk("revocations", "sync", "--config", cfg)
    assert sync.returncode == 0, sync.stderr
    assert sync.stdout.startswith("applied: version 1, 1 contracts")

    shown = run_kiosk("revocations", "status", "--config", cfg)
    assert shown.returncode == 0 and "list        version 1, 1 contracts" in shown.stdout
    data = json.loads(run_kiosk("revocations", "status", "--json", "--config", cfg).stdout)
    assert (data["version"], data["count"], data["fault"]) == (1, 1, None)
    # kiosk status with the daemon stopped: the copy's version, size and age, read from its file.
    stopped = run_kiosk("status", "--config", cfg)
    assert (
        "not running" in stopped.stdout
        and "replaced    version 1, 1 contracts" in stopped.stdout
        and "confirmed by the central 0 min ago" in stopped.stdout
    ), stopped.stdout
    report = json.loads(run_kiosk("status", "--json", "--config", cfg).stdout)
    assert (report["revocations"]["version"], report["revocations"]["count"]) == (1, 1) and report["revocations"]["file_bytes"] > 0

    refused = run_kiosk("revocations", "check", LOST, "1", "--config", cfg)
    assert refused.returncode == 1
    assert "REFUSED: contract ******5678 issue 01 was replaced; its current issue is 02" in refused.stdout
    assert LOST not in refused.stdout
    assert run_kiosk("revocations", "check", LOST, "2", "--config", cfg).returncode == 0
    other = run_kiosk("revocations", "check", OTHER, "1", "--unmask", "--config", cfg)
    assert other.returncode == 0 and f"contract {OTHER} issue 01: never re-issued" in other.stdout


def test_a_refused_sync_says_why_and_keeps_the_copy(tmp_path, signing_central, list_keys, central_factory):
    cfg = cli_config(tmp_path, signing_central.url, list_keys[1])
    signing_central.reissue(LOST, 2, ADMIN_TOKEN)
    assert run_kiosk("revocations", "sync", "--config", str(cfg)).returncode == 0
    # A central signing with another key (its own key pair).
    other_keys = tmp_path / "other"
    other_keys.mkdir()
    assert run_kiosk("central", "keygen", "--private-key", str(other_keys / "k"), "--public-key", str(other_keys / "p")).returncode == 0
    impostor = central_factory(signing_key=str(other_keys / "k"))
    cfg = cli_config(tmp_path, impostor.url, list_keys[1])
    sync = run_kiosk("revocations", "sync", "--config", str(cfg))
    assert sync.returncode == 1
    assert "PROBLEM: replaced-card list refused: signed with an unknown key" in sync.stdout and "version 1 stays in force" in sync.stdout
    status = run_kiosk("revocations", "status", "--config", str(cfg))
    assert status.returncode == 1 and "FAULT       revocations: replaced-card list refused: signed with an unknown key" in status.stdout
    assert run_kiosk("revocations", "check", LOST, "1", "--config", str(cfg)).returncode == 1  # the copy still refuses


def test_sync_asks_the_running_daemon_and_kiosk_status_shows_the_list(tmp_path, signing_central, list_keys, card_folder):
    from device import status

    signing_central.reissue(LOST, 2, ADMIN_TOKEN)
    folder = with_empty_tail(card_folder([OTHER]), 120)
    cfg = cli_config(tmp_path, signing_central.url, list_keys[1], source=f"file:{folder}", pace="realtime")
    with Daemon(tmp_path, cfg):
        report = wait_for_status(cfg, lambda r: (r["daemon"].get("revocations") or {}).get("version") == 1)
        assert report["daemon"]["revocations"]["fault"] is None
        text = run_kiosk("status", "--config", str(cfg)).stdout
        assert "replaced    version 1, 1 contracts" in text
        signing_central.reissue(OTHER, 3, ADMIN_TOKEN)
        sync = run_kiosk("revocations", "sync", "--config", str(cfg))
        assert sync.returncode == 0, sync.stdout + sync.stderr
        assert "synced by the daemon: version 2, 2 contracts" in sync.stdout
        assert list((tmp_path / "run" / status.REQUESTS_DIR).iterdir()) == []  # the request was taken


def test_revocations_without_a_key_or_with_a_file_that_is_no_key_is_a_config_error_naming_it(tmp_path, signing_central):
    cfg = write_config(tmp_path / "kiosk.toml", api={"url": signing_central.url, "token": CENTRAL_TOKEN}, revocations={"enabled": True})
    check = run_kiosk("config", "check", "--config", str(cfg))
    assert check.returncode == 78 and "revocations.public_key_file: required when revocations.enabled" in check.stderr
    not_a_key = tmp_path / "key.pem"
    not_a_key.write_text("hello\n")
    cfg = cli_config(tmp_path, signing_central.url, not_a_key)
    run = run_kiosk("revocations", "sync", "--config", str(cfg))
    assert run.returncode == 78, run.stderr
    assert "revocations.public_key_file" in run.stderr and "is not a PEM public key" in run.stderr and "Traceback" not in run.stderr


def test_a_technician_in_the_files_group_reads_the_list_without_sudo(tmp_path, signing_central, list_keys):
    import os

    technicians = 4242  # the group the copy's folder and files belong to (kiosk-tech on a kiosk)
    signing_central.reissue(LOST, 2, ADMIN_TOKEN)
    with kiosk_as_nobody(groups=(technicians,)) as (folder, as_nobody):
        cfg = kiosk_config(
            folder,
            central=signing_central,
            kiosk={"id": "kiosk-rev-cli"},
            outbox={"path": str(folder / "lib" / "outbox.db")},
            revocations={"enabled": True, "public_key_file": str(list_keys[1])},
        )
        os.chmod(cfg, 0o644)
        (folder / "lib").mkdir(mode=0o750)
        assert run_kiosk("revocations", "sync", "--config", str(cfg)).returncode == 0
        copy = folder / "lib" / "revocations.db"
        assert os.stat(copy).st_mode & 0o777 == 0o640 and not (folder / "lib" / "revocations.db-wal").exists()
        for path in (folder / "lib", copy):
            os.chown(path, 0, technicians)
        check = as_nobody("revocations", "check", LOST, "1", "--config", str(cfg))
        assert check.returncode == 1 and "REFUSED: contract ******5678 issue 01" in check.stdout, check.stdout + check.stderr
        status = as_nobody("revocations", "status", "--config", str(cfg))
        assert status.returncode == 0 and "version 1, 1 contracts" in status.stdout, status.stdout + status.stderr
        status = as_nobody("status", "--config", str(cfg))
        assert "replaced    version 1, 1 contracts" in status.stdout and "Traceback" not in status.stderr, status.stdout + status.stderr


def test_a_technician_in_the_group_asks_the_running_daemon_to_sync_without_sudo(
    tmp_path, signing_central, list_keys, card_folder, technicians_group
):
    from device import status

    signing_central.reissue(LOST, 2, ADMIN_TOKEN)
    images = with_empty_tail(card_folder([OTHER]), 120)
    with kiosk_as_nobody(groups=(technicians_group,)) as (folder, as_nobody):
        cfg = installed_config(
            folder, technicians_group, list_keys[1], central=signing_central, source=f"file:{images}", kiosk_id="kiosk-rev-cli"
        )
        with Daemon(tmp_path, cfg):
            wait_for_status(cfg, lambda r: (r["daemon"].get("revocations") or {}).get("version") == 1)
            requests = folder / "run" / status.REQUESTS_DIR
            assert requests.is_dir() and requests.stat().st_mode & 0o7777 == 0o1770
            signing_central.reissue(OTHER, 3, ADMIN_TOKEN)
            sync = as_nobody("revocations", "sync", "--config", str(cfg))
            assert sync.returncode == 0 and "Traceback" not in sync.stderr, sync.stdout + sync.stderr
            assert "synced by the daemon: version 2, 2 contracts" in sync.stdout
            assert list(requests.iterdir()) == []  # taken by the daemon
