"""What the test modules share, one module per job; test modules import from here, never from each other.

- :mod:`support.waiting`: ``wait_until(condition, what=..., timeout_s=...)``, the one wait on a
  condition; its ceilings grow with ``KIOSK_TEST_TIME_SCALE`` (set 3 on a slow CI machine).
- :mod:`support.config`: ``write_config`` (exactly the sections given) and ``kiosk_config`` (a
  kiosk whose runtime directory and outbox live in the test's folder).
- :mod:`support.central`: the reference central's fixtures and ``FakeCentral``, the scripted
  fake (well-behaved answers by default, a hostile mode byte by byte).
- :mod:`support.ports`: ``reserved_port()`` (nobody listens; a server the test starts may take it)
  and ``occupied_port()`` (another program listens), both the test's own, without races.
- :mod:`support.kiosk`: the ``kiosk`` command as a subprocess; :mod:`support.daemon`: ``kiosk
  run`` as a process, its status, and a stand-in for its snapshot side.
- :mod:`support.cards`, :mod:`support.barcodes`, :mod:`support.card_formats`: generated cards,
  bars and a second card format. :mod:`support.camera`: video devices at the hardware edge.
- :mod:`support.outputs`, :mod:`support.notify`, :mod:`support.outbox`, :mod:`support.revocations`,
  :mod:`support.disk`, :mod:`support.unprivileged`, :mod:`support.debian_root`: doubles and real
  environments for one family of tests each.
- :mod:`support.pos_host`, :mod:`support.pos_serial`: the POS at the hardware edge: a FIFO as
  ``/dev/hidg0`` read as a USB host reads it, a pseudo-terminal as the serial line.
- :mod:`support.skip_policy`: a skip outside ``tests/skips.toml`` fails the run.

tests/ is on ``sys.path`` (pytest's rootdir-relative import of tests/conftest.py), so a test
module writes ``from support.waiting import wait_until``.
"""
