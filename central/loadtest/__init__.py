"""Load test of a central over its HTTP API: simulated kiosks, a reconnect storm, exactly-once checked.

- :mod:`central.loadtest.kiosks`    simulated kiosks: id, site, token, a backlog of valid identifications
- :mod:`central.loadtest.driver`    the load: asyncio kiosks with the forwarder's retry rules, faults injected
- :mod:`central.loadtest.verify`    afterwards: every identification held exactly once, no gap (or it raises)
- :mod:`central.loadtest.workers`   find a server's worker processes and SIGKILL one mid-storm
- :mod:`central.loadtest.centrals`  the centrals to run against (SQLite reference, PostgreSQL production)
- :mod:`central.loadtest.bench`     ``kiosk bench central``: the phases side by side per central

Only the HTTP API is used (and /proc to find workers), so any central that answers can be measured::

    with reference_central(tmp_path) as central:
        fleet = build_fleet(central.credentials(kiosk_ids("storm", 1000)), per_kiosk=10)
        result = drain(central.url, fleet, faults=ClientFaults(lost_answer_rate=0.01, resend_rate=0.01))
        verify(central.url, central.admin_token, fleet)
"""
