"""Reference implementation of the central API that kiosks deliver identifications to.

The contract is docs/openapi.yaml (described in docs/CENTRAL_API.md). This package is the server
for tests, the demo and integrators, not the utility's production system:

- :mod:`central.contract`  what a batch must look like; statuses and limits
- :mod:`central.store`     SQLite, each identification once under its id
- :mod:`central.faults`    the failures a kiosk must survive, on demand
- :mod:`central.server`    HTTP, the command line (``kiosk central``, ``python -m central.server``)
- :mod:`central.process`   run it as a real subprocess from tests: ``start_subprocess``
"""
