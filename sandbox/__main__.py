import sys

from picoproc.cli import console_main

sys.exit(console_main())
