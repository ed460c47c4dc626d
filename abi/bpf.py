"""Compiles the ABI table into a seccomp BPF program with libseccomp.

The monitor loads the returned bytes itself (native/spawn.c) so nothing in
the child after fork depends on libseccomp.  Two modes:

* ``libos``: calls outside the table trap (SECCOMP_RET_TRAP) into the library OS;
* ``raw``:   calls outside the table kill the process (no library OS to catch them).

In both, mediated numbers go to the monitor (SECCOMP_RET_USER_NOTIF), the
errno entries get their errno (in ``libos`` mode, those marked ``libos =
"trap"`` trap instead), and a foreign architecture (i386 ``int 0x80``, x32)
kills the process.
"""

from __future__ import annotations

import os
import struct

from picoproc.errors import PicoprocError
from picoproc.native import ffi, lib

from . import linux
from .table import LOADER_ONLY_CALLS, ABITable, load_table

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


class FilterBuildError(RuntimeError, PicoprocError):
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


AUDIT_ARCH_X86_64 = 0xC000003E
NR_CLONE = 56
NR_PPOLL = 271
NR_EPOLL_PWAIT = 281
# <linux/sched.h>
CLONE_VM = 0x100
CLONE_THREAD = 0x10000
# struct seccomp_data offsets (<linux/seccomp.h>): arguments are 64-bit, low half first.
_OFF_NR, _OFF_ARCH, _OFF_IP_LO, _OFF_IP_HI = 0, 4, 8, 12


def _off_arg_lo(i: int) -> int:
    return 16 + 8 * i


# classic BPF opcodes (<linux/filter.h>)
_LD_W_ABS = 0x20  # BPF_LD | BPF_W | BPF_ABS
_AND_K = 0x54  # BPF_ALU | BPF_AND | BPF_K
_JEQ_K = 0x15  # BPF_JMP | BPF_JEQ | BPF_K
_JGE_K = 0x35  # BPF_JMP | BPF_JGE | BPF_K
_RET_K = 0x06  # BPF_RET | BPF_K
_INSN = struct.Struct("<HBBI")
# A jump target of the prefix: "next" is the following instruction, any other
# name the instruction carrying that label; OUT is the first instruction of
# the program that follows.
_NEXT, _OUT = "next", "OUT"


def _assemble(listing) -> bytes:
    """(label, opcode, jump-if-true, jump-if-false, k) rows -> BPF.  Classic
    BPF jumps are relative (target = index + 1 + offset), so the jumps are
    written as label names and the offsets computed here."""
    where = {row[0]: i for i, row in enumerate(listing) if row[0]}
    where[_OUT] = len(listing)

    def offset(i: int, target) -> int:
        if target in (0, _NEXT):
            return 0
        off = where[target] - i - 1
        if not 0 <= off <= 255:
            raise FilterBuildError(f"prefix jump from {i} to {target} out of range")
        return off

    return b"".join(_INSN.pack(op, offset(i, jt), offset(i, jf), k)
                    for i, (_, op, jt, jf, k) in enumerate(listing))


def loader_sigaction_prefix(table: ABITable) -> bytes:
    """BPF for the signal-mask calls the library OS must own in "libos" mode:
    rt_sigaction and rt_sigprocmask, and ppoll and epoll_pwait with a signal
    mask (a3 resp. a4 not NULL), are allowed when the calling instruction
    lies in the loader's fixed text range and trap (SIGSYS) anywhere else;
    every other call (ppoll and epoll_pwait without a mask included) falls
    through to the program that follows.  getsockname is handled the same
    way, for another reason: a unix socket the monitor bound for the
    program shows its name within its directory, and the library OS answers
    with the path the program bound (libos/sys_socket.c).

    Why: SIGSYS is how the library OS receives traps, and a seccomp SIGSYS
    that arrives while SIGSYS is blocked makes the kernel reset its handler
    and kill the process (force_sig_info_to_task).  Programs block every
    signal routinely (sigfillset + sigprocmask in posix_spawn and
    pthread_create, sigfillset(&sa_mask) in handlers, a full mask for the
    duration of a ppoll or epoll_pwait in event loops), so the library OS
    serves these calls itself and removes SIGSYS from every mask before
    making the real call from its own range.  (The library OS is untrusted
    like the program: this is not a security boundary.)

    The prefix also keeps one form of clone for the library OS: a child that
    shares the caller's memory without being its thread (CLONE_VM without
    CLONE_THREAD: vfork, posix_spawn) traps when the program asks for it,
    and goes on to the table's rule (no namespace flags...) when the library
    OS does.  Such a child would otherwise run the library OS on state it
    shares with its parent (cwd, fd paths, the SIGSYS frame on the parent's
    stack); the library OS makes it with state of its own (libos/vmchild.c).
    Unlike the signal calls, clone from the loader's range is not simply
    allowed: it falls through to the table's rule, so the prefix can only
    make clone stricter.

    libseccomp cannot express instruction-pointer checks, so these few
    instructions are written by hand; classic BPF jumps are relative, so
    prepending them leaves libseccomp's program intact."""
    start = table.loader_text_start
    end = start + table.loader_text_size
    hi, lo_start, lo_end = start >> 32, start & 0xFFFFFFFF, end & 0xFFFFFFFF
    ppoll_mask, epoll_mask = _off_arg_lo(3), _off_arg_lo(4)
    listing = [
        # label        opcode     if true      if false     k
        ("", _LD_W_ABS, 0, 0, _OFF_ARCH),
        ("", _JEQ_K, _NEXT, _OUT, AUDIT_ARCH_X86_64),  # foreign arch: libseccomp kills it
        ("", _LD_W_ABS, 0, 0, _OFF_NR),
        *[("", _JEQ_K, "FROM_LOADER", _NEXT, linux.SYSCALLS_BY_NAME[name]) for name in LOADER_ONLY_CALLS],
        ("", _JEQ_K, "PPOLL", _NEXT, NR_PPOLL),
        ("", _JEQ_K, "CLONE", _NEXT, NR_CLONE),
        ("", _JEQ_K, "EPOLL", _OUT, NR_EPOLL_PWAIT),  # another call: not ours
        # The mask pointer is a 64-bit argument: NULL only if both halves are 0.
        ("PPOLL", _LD_W_ABS, 0, 0, ppoll_mask),
        ("", _JEQ_K, _NEXT, "FROM_LOADER", 0),  # a mask: only from the loader
        ("", _LD_W_ABS, 0, 0, ppoll_mask + 4),
        ("", _JEQ_K, _OUT, "FROM_LOADER", 0),  # no mask: the table's rule allows it
        ("EPOLL", _LD_W_ABS, 0, 0, epoll_mask),
        ("", _JEQ_K, _NEXT, "FROM_LOADER", 0),
        ("", _LD_W_ABS, 0, 0, epoll_mask + 4),
        ("", _JEQ_K, _OUT, "FROM_LOADER", 0),
        # Is the calling instruction in [start, end)?  (The range does not
        # cross a 4 GiB boundary, so one comparison of the high half does.)
        ("FROM_LOADER", _LD_W_ABS, 0, 0, _OFF_IP_HI),
        ("", _JEQ_K, _NEXT, "TRAP", hi),  # another 4 GiB block
        ("", _LD_W_ABS, 0, 0, _OFF_IP_LO),
        ("", _JGE_K, _NEXT, "TRAP", lo_start),  # below start
        ("", _JGE_K, "TRAP", _NEXT, lo_end),  # at or above end
        ("", _RET_K, 0, 0, RET_ALLOW),
        # clone shares memory but is not a thread: only the library OS may
        # make it (clone's flags are an int: the low half decides).
        ("CLONE", _LD_W_ABS, 0, 0, _off_arg_lo(0)),
        ("", _AND_K, 0, 0, CLONE_VM | CLONE_THREAD),
        ("", _JEQ_K, _NEXT, _OUT, CLONE_VM),
        ("", _LD_W_ABS, 0, 0, _OFF_IP_HI),
        ("", _JEQ_K, _NEXT, "TRAP", hi),
        ("", _LD_W_ABS, 0, 0, _OFF_IP_LO),
        ("", _JGE_K, _NEXT, "TRAP", lo_start),
        ("", _JGE_K, "TRAP", _OUT, lo_end),  # from the loader: the table's rule decides
        ("TRAP", _RET_K, 0, 0, RET_TRAP),
    ]
    return _assemble(listing)


def compile_filter(table: ABITable, mode: str) -> bytes:
    """Returns the BPF program (struct sock_filter[]) for ``mode``."""
    program = _compile_with_libseccomp(table, mode)
    if mode == "libos":
        program = loader_sigaction_prefix(table) + program
    return program


def _compile_with_libseccomp(table: ABITable, mode: str) -> bytes:
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
            if mode == "libos" and call.libos_traps:
                continue  # the default action: a trap to the library OS
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


def filter_for(mode: str) -> bytes:
    """The shipped table's filter for ``mode`` (picoproc.abi.compiled: compiled
    once per content of the table, then cached)."""
    from .compiled import filter_for as cached

    return cached(mode)


def libseccomp_version() -> str:
    v = lib.seccomp_version()
    return f"{v.major}.{v.minor}.{v.micro}"
