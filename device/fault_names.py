"""The kiosk's fault names: one place, shared by what raises them and what shows them.

The daemon raises and clears them (:mod:`device.daemon.faults`); outputs (the amber LED, the
live view), ``kiosk status`` and ``kiosk diag`` show them. They live here, below both, so an
output never has to import the daemon to name a fault::

    >>> from device.fault_names import CAMERA
    >>> CAMERA
    'camera'
"""

CAMERA = "camera"  # no frames: unplugged, stalled
OUTBOX = "outbox"  # identifications cannot be stored: disk full, file unusable
DELIVERY_AUTH = "delivery-auth"  # the central refuses the token, or there is no usable one: delivery paused
DELIVERY = "delivery"  # delivery has failed for api.delivery_alert_s (not the token's fault): the cause and the next step
BACKLOG = "backlog"  # the oldest undelivered identification is older than feedback.backlog_alert_s
OUTBOX_INTEGRITY = "outbox-integrity"  # identifications lost, salvaged or quarantined: on until `kiosk queue ack`
REVOCATIONS = "revocations"  # the replaced-card list: refused (signature, version, format), unreachable, too old, or none yet
REVOCATIONS_LOOKUP = "revocations-lookup"  # a card could not be checked against the copy (it is identified): the scan loop's
POS = "pos"  # the counter's POS took nothing (pos.output): the cause; cleared by the next hand-over that works
OPEN_FILES = "open-files"  # the daemon's file descriptors nearly or all used (EMFILE): its own fault, never the token's
METRICS = "metrics"  # metrics.textfile cannot be written (folder missing, not writable, disk full): the cause; cleared by the next write

#: Every fault name above, for what shows them all (the metrics export each as 0 while it is off, so
#: an alert sees it turn 1). A failing thread's fault is named after the thread (``thread forwarder``),
#: so it is not among them.
KNOWN = (CAMERA, OUTBOX, DELIVERY_AUTH, DELIVERY, BACKLOG, OUTBOX_INTEGRITY, REVOCATIONS, REVOCATIONS_LOOKUP, POS, METRICS, OPEN_FILES)
