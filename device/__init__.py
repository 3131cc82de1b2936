"""The counter kiosk: camera -> vision -> card -> presentation -> outbox -> forwarder.

Each stage is its own module or package, named after what it is (see docs/CODE_LAYOUT.md).
"""

__version__ = "0.1.0"
