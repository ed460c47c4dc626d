"""``python -m picoproc.bench.compat [...]`` (and ``--write-docs``)."""

import sys

from .cli import main

sys.exit(main())
