import sys

from picoproc.cli import main

sys.exit(main())
