"""``python -m device`` is the ``kiosk`` command."""

import sys

from device.cli import main

sys.exit(main())
