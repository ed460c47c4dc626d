"""The picoproc ABI: the table of what a picoprocess may ask of the host, and
the generators that turn it into a seccomp filter, a C header and docs."""

from .table import ABITable, DirectCall, ErrnoCall, MediatedCall, load_table

__all__ = ["ABITable", "DirectCall", "ErrnoCall", "MediatedCall", "load_table"]
