"""Compiles the ABI table into a seccomp BPF program with libseccomp.

The monitor loads the returned bytes itself (native/spawn.c) so nothing in
the child after fork depends on libseccomp.  Two modes:

* ``libos``: calls outside the table trap (SECCOMP_RET_TRAP) into the library OS;
* ``raw``:   calls outside the table kill the process (no library OS to catch them).

In both, mediated numbers go to the monitor (SECCOMP_RET_USER_NOTIF), the
errno entries get their errno, and a foreign architecture (i386 ``int 0x80``,
x32) kills the process.
"""

from __future__ import annotations

import functools
import os

from picoproc.native import ffi, lib

from .table import ABITable, load_table

# Kernel SECCOMP_RET_* values (<linux/seccomp.h>); libseccomp's SCMP_ACT_* are the same.
RET_KILL_PROCESS = 0x80000000
RET_TRAP = 0x00030000
RET_ERRNO = 0x00050000
RET_USER_NOTIF = 0x7FC00000
RET_ALLOW = 0x7FFF0000

MODES = ("raw", "libos")
BPF_INSN_SIZE = 8

_CMP_OPS = {
    "==": lib.SCMP_CMP_EQ,
    "!=": lib.SCMP_CMP_NE,
    "<": lib.SCMP_CMP_LT,
    "<=": lib.SCMP_CMP_LE,
    ">": lib.SCMP_CMP_GT,
    ">=": lib.SCMP_CMP_GE,
}


class FilterBuildError(RuntimeError):
    pass


def default_action(mode: str) -> int:
    if mode == "raw":
        return RET_KILL_PROCESS
    if mode == "libos":
        return RET_TRAP
    raise ValueError(f"unknown filter mode {mode!r}; expected one of {MODES}")


def _check(rc: int, what: str) -> None:
    if rc < 0:
        raise FilterBuildError(f"libseccomp: {what} failed: {os.strerror(-rc)}")


def _add_rule(ctx, action: int, nr: int, comparisons) -> None:
    cmps = ffi.new("struct scmp_arg_cmp[]", max(len(comparisons), 1))
    for i, c in enumerate(comparisons):
        cmps[i].arg = c.arg
        if c.mask is not None:
            cmps[i].op = lib.SCMP_CMP_MASKED_EQ
            cmps[i].datum_a = c.mask
            cmps[i].datum_b = c.value
        else:
            cmps[i].op = _CMP_OPS[c.op]
            cmps[i].datum_a = c.value
            cmps[i].datum_b = 0
    _check(lib.seccomp_rule_add_exact_array(ctx, action, nr, len(comparisons), cmps), f"rule for syscall {nr}")


def compile_filter(table: ABITable, mode: str) -> bytes:
    """Returns the BPF program (struct sock_filter[]) for ``mode``."""
    ctx = lib.seccomp_init(default_action(mode))
    if ctx == ffi.NULL:
        raise FilterBuildError("libseccomp: seccomp_init failed")
    try:
        _check(lib.seccomp_attr_set(ctx, lib.SCMP_FLTATR_ACT_BADARCH, RET_KILL_PROCESS), "bad-arch action")
        # The monitor sets no_new_privs itself, before loading.
        _check(lib.seccomp_attr_set(ctx, lib.SCMP_FLTATR_CTL_NNP, 0), "NNP attribute")
        # 2 = binary tree of syscall numbers instead of a linear list.
        _check(lib.seccomp_attr_set(ctx, lib.SCMP_FLTATR_CTL_OPTIMIZE, 2), "binary-tree optimisation")
        for call in table.direct:
            if not call.rules:
                _add_rule(ctx, RET_ALLOW, call.nr, ())
            for rule in call.rules:
                _add_rule(ctx, RET_ALLOW, call.nr, rule.comparisons)
        for call in table.errno_calls:
            _add_rule(ctx, RET_ERRNO | call.errno, call.nr, ())
        for call in table.mediated:
            _add_rule(ctx, RET_USER_NOTIF, call.nr, ())
        # A memfd rather than a pipe: no size limit to deadlock on.
        fd = os.memfd_create("picoproc-bpf", os.MFD_CLOEXEC)
        try:
            _check(lib.seccomp_export_bpf(ctx, fd), "export")
            size = os.lseek(fd, 0, os.SEEK_END)
            program = os.pread(fd, size, 0)
        finally:
            os.close(fd)
        if not program or len(program) % BPF_INSN_SIZE:
            raise FilterBuildError(f"libseccomp exported {len(program)} bytes, not a BPF program")
        return program
    finally:
        lib.seccomp_release(ctx)


@functools.cache
def filter_for(mode: str) -> bytes:
    """The shipped table's filter for ``mode``, compiled once per process."""
    return compile_filter(load_table(), mode)


def libseccomp_version() -> str:
    v = lib.seccomp_version()
    return f"{v.major}.{v.minor}.{v.micro}"
