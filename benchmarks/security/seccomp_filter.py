"""Reading a process's seccomp filters from outside and evaluating them.

The surface benchmark must not trust a guest to say what it may call, and an
errno alone is ambiguous (ENOSYS or EPERM can come from a filter or from the
kernel).  So for every backend whose guest is a host process, the harness
reads the filters the kernel actually attached to that process
(``PTRACE_SECCOMP_GET_FILTER``, root only) and evaluates them here, for each
syscall number and the probe's arguments, the way the kernel does:

* every filter in the process's stack runs on the same ``struct seccomp_data``;
* the action with the highest precedence wins (KILL_PROCESS > KILL_THREAD >
  TRAP > ERRNO > USER_NOTIF > TRACE > LOG > ALLOW: the kernel keeps the
  smallest ``(s32)(ret & SECCOMP_RET_ACTION_FULL)``).

The interpreter implements the classic-BPF subset the kernel accepts for
seccomp (``seccomp_check_filter``: loads from seccomp_data, scratch memory,
ALU, jumps, returns).  It is written from the kernel's documentation
(Documentation/userspace-api/seccomp_filter.rst, include/uapi/linux/filter.h).
"""

from __future__ import annotations

import ctypes
import dataclasses
import errno as errno_mod
import os
import struct

from picoproc.errors import PicoprocError

AUDIT_ARCH_X86_64 = 0xC000003E

RET_KILL_PROCESS = 0x80000000
RET_KILL_THREAD = 0x00000000
RET_TRAP = 0x00030000
RET_ERRNO = 0x00050000
RET_USER_NOTIF = 0x7FC00000
RET_TRACE = 0x7FF00000
RET_LOG = 0x7FFC0000
RET_ALLOW = 0x7FFF0000
RET_ACTION_FULL = 0xFFFF0000
RET_DATA = 0x0000FFFF

ACTION_NAMES = {
    RET_KILL_PROCESS: "kill_process",
    RET_KILL_THREAD: "kill_thread",
    RET_TRAP: "trap",
    RET_ERRNO: "errno",
    RET_USER_NOTIF: "user_notif",
    RET_TRACE: "trace",
    RET_LOG: "log",
    RET_ALLOW: "allow",
}

_INSN = struct.Struct("<HBBI")

# Classic BPF encoding (<linux/bpf_common.h>).
BPF_LD, BPF_LDX, BPF_ST, BPF_STX, BPF_ALU, BPF_JMP, BPF_RET, BPF_MISC = range(8)
BPF_W, BPF_H, BPF_B = 0x00, 0x08, 0x10
BPF_IMM, BPF_ABS, BPF_IND, BPF_MEM, BPF_LEN, BPF_MSH = 0x00, 0x20, 0x40, 0x60, 0x80, 0xA0
BPF_K, BPF_X, BPF_A = 0x00, 0x08, 0x10
BPF_JA, BPF_JEQ, BPF_JGT, BPF_JGE, BPF_JSET = 0x00, 0x10, 0x20, 0x30, 0x40
BPF_TAX, BPF_TXA = 0x00, 0x80
SECCOMP_DATA_SIZE = 64
MASK32 = 0xFFFFFFFF


class FilterError(ValueError, PicoprocError):
    """The program is not one the kernel would run (bad load, jump or opcode)."""


def seccomp_data(
    nr: int, args: tuple[int, ...], arch: int = AUDIT_ARCH_X86_64, ip: int = 0
) -> bytes:
    """struct seccomp_data {int nr; u32 arch; u64 instruction_pointer; u64 args[6];}"""
    full = tuple(a & 0xFFFFFFFFFFFFFFFF for a in (list(args) + [0] * 6)[:6])
    return struct.pack("<iIQ6Q", nr, arch, ip & 0xFFFFFFFFFFFFFFFF, *full)


def decode(program: bytes) -> list[tuple[int, int, int, int]]:
    if not program or len(program) % _INSN.size:
        raise FilterError(f"{len(program)} bytes is not a BPF program")
    return [_INSN.unpack_from(program, off) for off in range(0, len(program), _INSN.size)]


def run_filter(insns: list[tuple[int, int, int, int]], data: bytes) -> int:
    """The 32-bit value the program returns for ``data`` (a seccomp_data)."""
    a = x = 0
    mem = [0] * 16
    pc = 0
    # Classic BPF only jumps forward, so at most len(insns) steps.
    for _ in range(len(insns) + 1):
        if not 0 <= pc < len(insns):
            raise FilterError(f"execution left the program at {pc}")
        code, jt, jf, k = insns[pc]
        cls = code & 0x07
        if cls == BPF_LD:
            mode = code & 0xE0
            if mode == BPF_ABS and code & 0x18 == BPF_W:
                if k % 4 or k + 4 > SECCOMP_DATA_SIZE:
                    raise FilterError(f"load of seccomp_data offset {k}")
                a = struct.unpack_from("<I", data, k)[0]
            elif mode == BPF_IMM:
                a = k
            elif mode == BPF_MEM:
                a = mem[k]
            elif mode == BPF_LEN:
                a = SECCOMP_DATA_SIZE
            else:
                raise FilterError(f"load mode {code:#x} not valid in seccomp")
        elif cls == BPF_LDX:
            mode = code & 0xE0
            if mode == BPF_IMM:
                x = k
            elif mode == BPF_MEM:
                x = mem[k]
            elif mode == BPF_LEN:
                x = SECCOMP_DATA_SIZE
            else:
                raise FilterError(f"ldx mode {code:#x} not valid in seccomp")
        elif cls == BPF_ST:
            mem[k] = a
        elif cls == BPF_STX:
            mem[k] = x
        elif cls == BPF_ALU:
            op = code & 0xF0
            src = x if code & BPF_X else k
            if op == 0x00:
                a = (a + src) & MASK32
            elif op == 0x10:
                a = (a - src) & MASK32
            elif op == 0x20:
                a = (a * src) & MASK32
            elif op == 0x30:
                if src == 0:
                    return (
                        RET_KILL_THREAD  # the kernel's "division by zero" exits the filter with 0
                    )
                a = a // src
            elif op == 0x40:
                a = a | src
            elif op == 0x50:
                a = a & src
            elif op == 0x60:
                a = (a << (src & 31)) & MASK32 if src < 32 else 0
            elif op == 0x70:
                a = a >> src if src < 32 else 0
            elif op == 0x80:
                a = (-a) & MASK32
            elif op == 0x90:
                if src == 0:
                    return RET_KILL_THREAD
                a = a % src
            elif op == 0xA0:
                a = a ^ src
            else:
                raise FilterError(f"alu op {code:#x}")
        elif cls == BPF_JMP:
            op = code & 0xF0
            if op == BPF_JA:
                pc += 1 + k
                continue
            src = x if code & BPF_X else k
            taken = {
                BPF_JEQ: a == src,
                BPF_JGT: a > src,
                BPF_JGE: a >= src,
                BPF_JSET: bool(a & src),
            }.get(op)
            if taken is None:
                raise FilterError(f"jump op {code:#x}")
            pc += 1 + (jt if taken else jf)
            continue
        elif cls == BPF_RET:
            src = code & 0x18
            return (a if src == BPF_A else x if src == BPF_X else k) & MASK32
        elif cls == BPF_MISC:
            if code & 0xF8 == BPF_TAX:
                x = a
            else:
                a = x
        pc += 1
    raise FilterError("program did not return")


def _signed(action: int) -> int:
    return action - (1 << 32) if action & 0x80000000 else action


def combine(results: list[int]) -> int:
    """The kernel's choice among the stacked filters' results (no filter: ALLOW)."""
    best = RET_ALLOW
    for r in results:
        if _signed(r & RET_ACTION_FULL) < _signed(best & RET_ACTION_FULL):
            best = r
    return best


def describe_action(ret: int) -> str:
    action = ret & RET_ACTION_FULL
    name = ACTION_NAMES.get(action, f"unknown({action:#x})")
    if action == RET_ERRNO:
        data = ret & RET_DATA
        return f"errno({errno_mod.errorcode.get(data, data)})"
    return name


@dataclasses.dataclass
class FilterStack:
    """The filters attached to one process, newest first (as the kernel lists them)."""

    programs: list[list[tuple[int, int, int, int]]]

    def action(self, nr: int, args: tuple[int, ...], ip: int = 0) -> int:
        data = seccomp_data(nr, args, ip=ip)
        return combine([run_filter(p, data) for p in self.programs])

    @property
    def instructions(self) -> int:
        return sum(len(p) for p in self.programs)


# ---------------------------------------------------------------------------
# Reading the filters of another process (ptrace; needs CAP_SYS_ADMIN).

PTRACE_DETACH = 17
PTRACE_SEIZE = 0x4206
PTRACE_INTERRUPT = 0x4207
PTRACE_SECCOMP_GET_FILTER = 0x420C
WALL = 0x40000000

_libc = ctypes.CDLL(None, use_errno=True)
_libc.ptrace.restype = ctypes.c_long
_libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p]


def _ptrace(request: int, pid: int, addr: int, data) -> int:
    ctypes.set_errno(0)
    rc = _libc.ptrace(request, pid, ctypes.c_void_p(addr), data)
    if rc == -1:
        err = ctypes.get_errno()
        if err:
            raise OSError(err, f"ptrace({request:#x}, {pid}): {os.strerror(err)}")
    return rc


def seccomp_status(pid: int) -> tuple[int, int]:
    """(Seccomp mode, Seccomp_filters count) from /proc/PID/status."""
    mode = count = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("Seccomp:"):
                mode = int(line.split()[1])
            elif line.startswith("Seccomp_filters:"):
                count = int(line.split()[1])
    return mode, count


def read_filters(pid: int) -> FilterStack:
    """Seizes ``pid``, stops it, copies every filter, and detaches.

    Raises OSError (EPERM when the process is already traced, as under the
    ptrace backend; EACCES when the caller itself runs under seccomp)."""
    _ptrace(PTRACE_SEIZE, pid, 0, None)
    try:
        _ptrace(PTRACE_INTERRUPT, pid, 0, None)
        os.waitpid(pid, WALL)
        programs = []
        for index in range(1024):
            try:
                count = _ptrace(PTRACE_SECCOMP_GET_FILTER, pid, index, None)
            except OSError as exc:
                if exc.errno == errno_mod.ENOENT:
                    break
                raise
            buf = ctypes.create_string_buffer(count * _INSN.size)
            _ptrace(PTRACE_SECCOMP_GET_FILTER, pid, index, buf)
            programs.append(decode(buf.raw))
        return FilterStack(programs)
    finally:
        try:
            _ptrace(PTRACE_DETACH, pid, 0, None)
        except OSError:
            pass
