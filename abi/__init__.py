"""The picoproc ABI: the table of what a picoprocess may ask of the host, and
the generators that turn it into a seccomp filter, a C header and docs.

The table is parsed only when something asks for it (a monitor starting a
picoprocess reads the compiled filter, picoproc.abi.compiled, instead)."""

__all__ = ["ABITable", "DirectCall", "ErrnoCall", "MediatedCall", "load_table"]


def __getattr__(name: str):
    if name in __all__:
        from . import table

        return getattr(table, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
