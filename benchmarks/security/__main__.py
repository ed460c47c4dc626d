"""``python -m picoproc.bench.security surface|security [...]``."""

import sys

from .cli import main

sys.exit(main())
