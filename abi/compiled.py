"""The seccomp filter of each mode, as the monitor loads it: compiled from
the ABI table by picoproc.abi.bpf once per content of the files it is built
from (and per libseccomp version), then read from the cache beside this
module (picoproc.cache) instead of parsing the table and calling libseccomp
in every process that starts a picoprocess."""

from __future__ import annotations

import functools
import os

from picoproc import cache

_HERE = os.path.dirname(os.path.abspath(__file__))
# Everything the program is derived from.
_SOURCES = ("abi_v1.toml", "table.py", "bpf.py", "linux.py")
_MAGIC = b"picoproc-bpf\n"
BPF_INSN_SIZE = 8


def _decode(data: bytes) -> bytes:
    if not data.startswith(_MAGIC):
        raise ValueError("not a cached filter")
    program = data[len(_MAGIC):]
    if not program or len(program) % BPF_INSN_SIZE:
        raise ValueError("a damaged cached filter")
    return program


@functools.cache
def filter_for(mode: str) -> bytes:
    """The BPF program (struct sock_filter[]) for ``mode`` ("raw" or "libos")."""
    from picoproc.native import lib

    v = lib.seccomp_version()
    key = cache.content_key([mode.encode(), f"libseccomp {v.major}.{v.minor}.{v.micro}".encode(),
                             *(os.path.join(_HERE, s) for s in _SOURCES)])
    program = cache.load(__file__, f"seccomp-{mode}", key, ".bpf", _decode)
    if program is None:
        from .bpf import compile_filter
        from .table import load_table

        program = compile_filter(load_table(), mode)
        cache.store(__file__, f"seccomp-{mode}", key, ".bpf", _MAGIC + program)
    return program
