"""``python -m host --config FILE``: the Pi service (``smartpdu-serve``)."""

import sys

from host.cli import main

sys.exit(main())
