"""picoproc: run untrusted, unmodified Linux programs as picoprocesses.

This package is the monitor (source folder ``sandbox/``); ``picoproc.abi`` is
the ABI table (``abi/``) and ``picoproc._native`` the C hot path (``native/``).
"""

from picoproc.errors import PicoprocError

__all__ = ["PicoprocError", "__version__"]
__version__ = "0.1.0"
