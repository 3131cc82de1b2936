"""The kiosk's credentials: only the bearer token is sent, none is shown, and a token file's trouble is named.

Real `kiosk` processes; the reference central and a hostile one on 127.0.0.1 that records every header.
"""

from __future__ import annotations

import json
import os
import signal

import pytest
from support.cards import contracts
from support.central import CENTRAL_TOKEN, FakeCentral, accept_each
from support.config import kiosk_config, write_config
from support.daemon import Daemon, status_report, wait_for_status, with_empty_tail
from support.kiosk import run_kiosk

from device.status import token_file_warning


def test_kiosk_run_refuses_a_url_with_a_password_and_never_prints_it(tmp_path, card_folder):
    with FakeCentral(hostile=accept_each()) as server:
        url = server.url.replace("://", "://kiosk:s3cret@")
        run = run_kiosk("run", "--config", str(kiosk_config(tmp_path, central=url, source=f"file:{card_folder(contracts(1))}")))
        assert server.connections == 0
    assert run.returncode == 78, run.stderr
    assert "api.url: the URL carries a user name or password (http://***@127.0.0.1:" in run.stderr
    assert "s3cret" not in run.stderr + run.stdout


@pytest.mark.parametrize(
    "mode, gid, warning",
    [
        (0o640, 0, None),
        (0o644, 0, "mode 0644 lets everyone in"),
        (0o600, 0, None),
        (0o640, 54321, "group 54321 may read it"),
    ],
    ids=["root-group-0640", "world-readable", "owner-only", "other-group"],
)
def test_kiosk_status_warns_about_a_token_file_others_can_read(tmp_path, mode, gid, warning):
    if gid and os.geteuid() != 0:
        pytest.skip("giving the file another group needs root (CI runs as root)")
    token = tmp_path / "token"
    token.write_text("a-token\n")
    os.chown(token, -1, gid)
    token.chmod(mode)
    cfg = write_config(tmp_path / "kiosk.toml", kiosk={"runtime_dir": str(tmp_path / "run")}, outbox={"path": str(tmp_path / "o.db")},
                       api={"url": "https://central.example.net", "token_file": str(token)})  # fmt: skip
    warnings = status_report(cfg)["warnings"]
    human = run_kiosk("status", "--config", str(cfg)).stdout
    if warning is None:
        assert warnings == [] and "WARNING" not in human
        return
    (text,) = warnings
    assert text.startswith(f"the token file {token} is readable by others than root and the kiosk group (") and warning in text
    assert text.endswith(f"sudo chown root:kiosk {token} && sudo chmod 0640 {token}")
    assert f"WARNING     {text}" in human
    assert "a-token" not in human + json.dumps(warnings)


def test_a_missing_token_file_is_checked_by_the_fault_not_the_warning(tmp_path):
    assert token_file_warning(str(tmp_path / "missing")) is None and token_file_warning("") is None


def test_a_missing_token_file_is_its_own_fault_and_delivery_resumes_once_it_is_there(tmp_path, card_folder, central):
    shown = contracts(1)
    folder = with_empty_tail(card_folder(shown), seconds=120)
    token = tmp_path / "token"
    token.write_text("")  # as install.sh leaves it: the config check lets an empty one pass, a missing one not
    api = {"token": "", "token_file": str(token), "auth_retry_s": 0.5}
    cfg = kiosk_config(tmp_path, central=central, source=f"file:{folder}", pace="realtime", api=api)
    with Daemon(tmp_path, cfg) as daemon:
        report = wait_for_status(cfg, lambda r: "delivery-auth" in ((r["daemon"] or {}).get("faults") or {}))
        fault = report["daemon"]["faults"]["delivery-auth"]
        assert fault.startswith(f"token file empty: {token} (api.token_file)") and "refuse" not in fault
        token.unlink()  # the file goes away while the daemon runs
        report = wait_for_status(
            cfg, lambda r: ((r["daemon"] or {}).get("faults") or {}).get("delivery-auth", "").startswith("token file missing:")
        )
        fault = report["daemon"]["faults"]["delivery-auth"]
        assert fault.startswith(f"token file missing: {token} (api.token_file)") and "refuse" not in fault
        assert report["daemon"]["delivery"]["state"] == "paused-no-token"
        human = run_kiosk("status", "--config", str(cfg)).stdout
        assert "PAUSED: no usable token" in human and f"FAULT       delivery-auth: token file missing: {token}" in human
        token.write_text(CENTRAL_TOKEN + "\n")  # the technician puts the token in place: no restart
        wait_for_status(cfg, lambda r: r["queue"]["delivered"] == 1 and not r["daemon"]["faults"])
        assert [i["contract"] for i in central.identifications()] == shown
        daemon.proc.send_signal(signal.SIGTERM)
        assert daemon.exit_code() == 0
    assert "delivery-auth fault cleared" in daemon.log
