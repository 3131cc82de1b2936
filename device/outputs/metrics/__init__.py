"""The kiosk's Prometheus metrics (``[metrics]``): an output like the others, one module per job.

* :mod:`~device.outputs.metrics.families`: every metric family, in a registry of its own, and
  which event or status field updates it;
* :mod:`~device.outputs.metrics.output`: :class:`MetricsOutput`, fed by the events and the
  daemon's status, writing ``metrics.textfile`` every ``metrics.interval_s``;
* :mod:`~device.outputs.metrics.textfile`: the file, replaced atomically, readable by node_exporter;
* :mod:`~device.outputs.metrics.server`: ``GET /metrics`` on ``metrics.listen`` (loopback), bounded;
* :mod:`~device.outputs.metrics.throttle`: the Pi firmware's under-voltage and throttling flags.

Every metric, the alerts and how node_exporter reads the file: docs/METRICS.md.
"""
