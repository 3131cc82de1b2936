"""What each stage says about its own health, as plain values: read by the supervisor, written in
the status file, shown by ``kiosk status``.

The types live here, below the stages and the status, and import nothing heavy: ``kiosk status``
reads a running daemon's status without loading the outbox's store or the HTTP client. One
module per stage:

- :mod:`~device.health.delivery`: the forwarder (:class:`DeliveryHealth`, :class:`DeliveryState`);
- :mod:`~device.health.outbox`: the outbox (:class:`OutboxHealth`, its :class:`IntegrityProblem`
  items, the record states :class:`RecordState`);
- :mod:`~device.health.outputs`: an output's queue (:class:`OutputHealth`).
"""
