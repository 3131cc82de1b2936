"""The replaced-card list: which contracts' cards were re-issued, and their current issue.

A lost card is replaced by a card with the next issue number (``01``, then ``02``); the kiosk
refuses a card whose issue is lower than its contract's current issue, offline, against a signed
copy of the central's list kept beside the outbox (EMV terminals' exception file, transit gates'
negative lists). Three small parts:

- :mod:`device.revocations.document`: the signed document the central serves
  (``GET /v1/cards/replaced``), its Ed25519 signature and its checks;
- :mod:`device.revocations.store`: the kiosk's copy in its own SQLite file, a delta applied in one
  transaction, the lookup the scan loop makes per card (a primary-key read, microseconds);
- :mod:`device.revocations.sync`: fetching through the central client, verifying, applying, and
  the ``revocations`` fault (a refused list, or a copy older than ``revocations.max_age_s``).
"""
