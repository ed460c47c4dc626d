"""picoproc: run untrusted, unmodified Linux programs as picoprocesses.

This package is the monitor (source folder ``sandbox/``); ``picoproc.abi`` is
the ABI table (``abi/``) and ``picoproc._native`` the C hot path (``native/``).
"""

__version__ = "0.1.0"
