"""The central API that kiosks deliver identifications to: a reference server and a production one.

The contract is docs/openapi.yaml (described in docs/CENTRAL_API.md); running it for a fleet is
docs/CENTRAL.md.

- :mod:`central.contract`     what a batch must look like; statuses and limits
- :mod:`central.storage`      where it is kept: SQLite (embedded) or PostgreSQL (a fleet), one interface
- :mod:`central.credentials`  per-kiosk tokens, stored as hashes
- :mod:`central.api`          the API's semantics, shared by both servers
- :mod:`central.server`       the command line (``kiosk central``) and the reference server, with faults
- :mod:`central.workers`      the production server: Starlette on uvicorn worker processes
- :mod:`central.faults`       the failures a kiosk must survive, on demand
- :mod:`central.process`      run it as a real subprocess from tests: ``start_subprocess``
"""
