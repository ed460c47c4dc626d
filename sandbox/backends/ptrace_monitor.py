"""``ptrace``: a syscall-interposition monitor on python-ptrace, the classic design.

Every system call of every guest thread stops the guest twice (PTRACE_SYSCALL
entry and exit stops).  At the entry stop the monitor reads the call's path
and address arguments out of the guest's memory, resolves them as it sees the
host filesystem at that instant, and checks them against the manifest.  A
denied call is cancelled by rewriting its number to -1 (the kernel skips it
with ENOSYS) and its result is set to the policy's errno at the exit stop.
Forks, vforks, clones and execs are followed (PTRACE_O_TRACE*), and the guest
dies with the monitor (PTRACE_O_EXITKILL).

Its weaknesses are the design's, kept real so the security suite can measure
them: the check reads arguments from memory the guest still controls, so
another guest thread can change a path between the check and the kernel's
own read (time-of-check/time-of-use); symlinks are resolved by the monitor
and again by the kernel, so a symlink swapped in between escapes; there is no
mount namespace, so guest paths are host paths (no remapping, no private
scratch); every call costs two stops and several monitor syscalls.

The monitor runs as its own process (``python3 -m ...ptrace_monitor SPEC``)
so that its waitpid(-1) loop only ever sees the guest's processes.
"""

from __future__ import annotations

import ctypes
import errno
import fnmatch
import functools
import ipaddress
import json
import os
import signal
import socket
import struct
import sys
from typing import ClassVar

try:
    from ptrace.binding import func as _pt
    from ptrace.binding.linux_struct import user_regs_struct
except ImportError:  # reported by available(); the monitor process itself needs it
    _pt = None

if __package__:
    from ._base import (
        Backend,
        BackendError,
        BackendUnavailable,
        manifest_env,
        require_identity_mounts,
        require_smoke_run,
        rlimits_for,
        run_process,
    )

# ---------------------------------------------------------------------------
# ptrace plumbing

PTRACE_GETREGS, PTRACE_SETREGS = 12, 13
PTRACE_GET_SYSCALL_INFO = 0x420E
PTRACE_SYSCALL_INFO_ENTRY, PTRACE_SYSCALL_INFO_EXIT = 1, 2
PTRACE_O_TRACESYSGOOD, PTRACE_O_TRACEFORK, PTRACE_O_TRACEVFORK = 0x1, 0x2, 0x4
PTRACE_O_TRACECLONE, PTRACE_O_TRACEEXEC, PTRACE_O_EXITKILL = 0x8, 0x10, 0x100000
PTRACE_EVENT_FORK, PTRACE_EVENT_VFORK, PTRACE_EVENT_CLONE, PTRACE_EVENT_EXEC = 1, 2, 3, 4
WALL = 0x40000000
AUDIT_ARCH_X86_64 = 0xC000003E
U64 = (1 << 64) - 1


class SyscallInfo(ctypes.Structure):
    _fields_ = [
        ("op", ctypes.c_uint8), ("pad", ctypes.c_uint8 * 3), ("arch", ctypes.c_uint32),
        ("instruction_pointer", ctypes.c_uint64), ("stack_pointer", ctypes.c_uint64),
        ("nr", ctypes.c_uint64), ("args", ctypes.c_uint64 * 6), ("ret_data", ctypes.c_uint32),
    ]  # fmt: skip


def _get_syscall_info(tid: int, info: SyscallInfo) -> int:
    _pt.ptrace(PTRACE_GET_SYSCALL_INFO, tid, ctypes.sizeof(info), ctypes.addressof(info))
    return info.op


def _getregs(tid: int):
    regs = user_regs_struct()
    _pt.ptrace(PTRACE_GETREGS, tid, 0, ctypes.addressof(regs))
    return regs


def _setregs(tid: int, regs) -> None:
    _pt.ptrace(PTRACE_SETREGS, tid, 0, ctypes.addressof(regs))


# ---------------------------------------------------------------------------
# The policy: the manifest, as checks on host paths and socket addresses.

AT_FDCWD = 0xFFFFFF9C  # -100 as the low 32 bits of the register
AT_SYMLINK_NOFOLLOW, AT_EMPTY_PATH = 0x100, 0x1000
O_ACCMODE, O_CREAT, O_TRUNC, O_APPEND, O_NOFOLLOW = 0o3, 0o100, 0o1000, 0o2000, 0o400000
CLONE_NEW_ANY = 0x7E020000  # NEWNS|NEWCGROUP|NEWUTS|NEWIPC|NEWUSER|NEWPID|NEWNET
# Devices every sandbox in the comparison gives the guest.
IMPLICIT_DEVICES = (
    "/dev/null",
    "/dev/zero",
    "/dev/full",
    "/dev/random",
    "/dev/urandom",
    "/dev/tty",
)


class Policy:
    def __init__(self, spec: dict):
        self.read_roots = [m["path"] for m in spec["mounts"]]
        self.write_roots = [m["path"] for m in spec["mounts"] if m["writable"]] + list(
            spec["scratch"]
        )
        self.read_roots += list(spec["scratch"])
        self.hidden = list(spec["hidden"])
        self.hidden_names = list(spec["hidden_names"])
        self.connect = [(e[0], e[1]) for e in spec["net_connect"]]
        self.listen = [(e[0], e[1]) for e in spec["net_listen"]]
        self.unix = list(spec["unix_paths"])
        # Directories above a mount are shown (as a container's skeleton would be).
        self.ancestors = set()
        for root in self.read_roots:
            parts = root.rstrip("/").split("/")
            for i in range(1, len(parts)):
                self.ancestors.add("/".join(parts[:i]) or "/")

    @staticmethod
    def _under(path: str, roots) -> bool:
        for r in roots:
            if path == r or r == "/" or path.startswith(r.rstrip("/") + "/"):
                return True
        return False

    def check(self, path: str, write: bool, tid: int) -> int:
        """0 if allowed, else the errno the guest gets."""
        if self._under(path, self.hidden):
            return errno.EACCES
        if self.hidden_names and any(
            fnmatch.fnmatchcase(c, pat) for c in path.split("/") if c for pat in self.hidden_names
        ):
            return errno.EACCES
        if path in IMPLICIT_DEVICES:
            return 0
        if path == "/proc" or path.startswith("/proc/"):
            return errno.EROFS if write and not path.startswith(f"/proc/{tid}/") else 0
        if write:
            if self._under(path, self.write_roots):
                return 0
            return (
                errno.EROFS
                if (self._under(path, self.read_roots) or path in self.ancestors)
                else errno.ENOENT
            )
        if self._under(path, self.read_roots) or path in self.ancestors:
            return 0
        return errno.ENOENT

    def check_inet(self, host: str, port: int, grants) -> int:
        for gh, gp in grants:
            if (gp == 0 or gp == port) and ipaddress.ip_address(gh) == ipaddress.ip_address(host):
                return 0
        return errno.ECONNREFUSED if grants is self.connect else errno.EACCES


# x86_64 system calls with path arguments.  Each entry: (name, dirfd/path
# argument pairs as (dirfd_index or None, path_index, follow, write), extra
# decoding key).  "write" True/False, or "flags:N" to decide from open flags.
P = "path"
SYSCALLS: dict[int, tuple] = {
    2: ("open", [(None, 0, "oflags:1")]),
    4: ("stat", [(None, 0, False)]),
    6: ("lstat", [(None, 0, False, "nofollow")]),
    21: ("access", [(None, 0, False)]),
    59: ("execve", [(None, 0, False)]),
    76: ("truncate", [(None, 0, True)]),
    80: ("chdir", [(None, 0, False)]),
    82: ("rename", [(None, 0, True, "nofollow"), (None, 1, True, "nofollow")]),
    83: ("mkdir", [(None, 0, True, "nofollow")]),
    84: ("rmdir", [(None, 0, True, "nofollow")]),
    85: ("creat", [(None, 0, True)]),
    86: ("link", [(None, 0, True, "nofollow"), (None, 1, True, "nofollow")]),
    87: ("unlink", [(None, 0, True, "nofollow")]),
    88: ("symlink", [(None, 1, True, "nofollow")]),
    89: ("readlink", [(None, 0, False, "nofollow")]),
    90: ("chmod", [(None, 0, True)]),
    92: ("chown", [(None, 0, True)]),
    94: ("lchown", [(None, 0, True, "nofollow")]),
    132: ("utime", [(None, 0, True)]),
    133: ("mknod", [(None, 0, True, "nofollow")]),
    137: ("statfs", [(None, 0, False)]),
    161: ("chroot", [(None, 0, False)]),
    188: ("setxattr", [(None, 0, True)]),
    189: ("lsetxattr", [(None, 0, True, "nofollow")]),
    191: ("getxattr", [(None, 0, False)]),
    192: ("lgetxattr", [(None, 0, False, "nofollow")]),
    194: ("listxattr", [(None, 0, False)]),
    195: ("llistxattr", [(None, 0, False, "nofollow")]),
    197: ("removexattr", [(None, 0, True)]),
    198: ("lremovexattr", [(None, 0, True, "nofollow")]),
    235: ("utimes", [(None, 0, True)]),
    254: ("inotify_add_watch", [(None, 1, False)]),
    257: ("openat", [(0, 1, "oflags:2")]),
    258: ("mkdirat", [(0, 1, True, "nofollow")]),
    259: ("mknodat", [(0, 1, True, "nofollow")]),
    260: ("fchownat", [(0, 1, True, "atflags:4")]),
    261: ("futimesat", [(0, 1, True)]),
    262: ("newfstatat", [(0, 1, False, "atflags:3")]),
    263: ("unlinkat", [(0, 1, True, "nofollow")]),
    264: ("renameat", [(0, 1, True, "nofollow"), (2, 3, True, "nofollow")]),
    265: ("linkat", [(0, 1, True, "nofollow"), (2, 3, True, "nofollow")]),
    266: ("symlinkat", [(1, 2, True, "nofollow")]),
    267: ("readlinkat", [(0, 1, False, "nofollow")]),
    268: ("fchmodat", [(0, 1, True)]),
    269: ("faccessat", [(0, 1, False)]),
    280: ("utimensat", [(0, 1, True, "atflags:3")]),
    303: ("name_to_handle_at", [(0, 1, False, "atflags:4")]),
    316: ("renameat2", [(0, 1, True, "nofollow"), (2, 3, True, "nofollow")]),
    322: ("execveat", [(0, 1, False, "atflags:4")]),
    332: ("statx", [(0, 1, False, "atflags:2")]),
    437: ("openat2", [(0, 1, "how:2")]),
    439: ("faccessat2", [(0, 1, False, "atflags:3")]),
    452: ("fchmodat2", [(0, 1, True, "atflags:3")]),
}
# Calls that would let the guest act outside what the monitor can see or check.
REFUSED = {
    101: ("ptrace", errno.EPERM),
    155: ("pivot_root", errno.EPERM),
    165: ("mount", errno.EPERM),
    166: ("umount2", errno.EPERM),
    175: ("init_module", errno.EPERM),
    272: ("unshare", errno.EPERM),
    298: ("perf_event_open", errno.EPERM),
    304: ("open_by_handle_at", errno.EPERM),
    308: ("setns", errno.EPERM),
    310: ("process_vm_readv", errno.EPERM),
    311: ("process_vm_writev", errno.EPERM),
    313: ("finit_module", errno.EPERM),
    321: ("bpf", errno.EPERM),
    425: ("io_uring_setup", errno.EPERM),  # its operations never stop at a syscall
    428: ("open_tree", errno.EPERM),
    429: ("move_mount", errno.EPERM),
    430: ("fsopen", errno.EPERM),
    432: ("fsmount", errno.EPERM),
    433: ("fspick", errno.EPERM),
    435: ("clone3", errno.ENOSYS),  # flags live in memory; libc falls back to clone
    442: ("mount_setattr", errno.EPERM),
}
NR_CLONE, NR_CONNECT, NR_SENDTO, NR_SENDMSG, NR_BIND, NR_SENDMMSG = 56, 42, 44, 46, 49, 307


class Monitor:
    def __init__(self, spec: dict):
        self.policy = Policy(spec)
        self.stops = 0
        self.denials: list[str] = []
        self.denied_count = 0
        self.pending_errno: dict[int, int] = {}
        self.info = SyscallInfo()
        self._started: set[int] = set()  # tracees that have been resumed once

    # -- guest memory ------------------------------------------------------
    @staticmethod
    def read_mem(tid: int, addr: int, size: int) -> bytes:
        fd = os.open(f"/proc/{tid}/mem", os.O_RDONLY)
        try:
            return os.pread(fd, size, addr)
        finally:
            os.close(fd)

    def read_str(self, tid: int, addr: int) -> bytes | None:
        if addr == 0:
            return None
        out = b""
        fd = os.open(f"/proc/{tid}/mem", os.O_RDONLY)
        try:
            while len(out) < 4096:
                # Do not read across a page boundary in one go: the next page may be unmapped.
                chunk_len = 4096 - ((addr + len(out)) & 4095)
                try:
                    chunk = os.pread(fd, chunk_len, addr + len(out))
                except (OSError, OverflowError, ValueError):
                    # A faulting or absurd pointer (e.g. -1, beyond off_t):
                    # the kernel would answer EFAULT; never kill the monitor.
                    return None
                if not chunk:
                    return None
                nul = chunk.find(b"\0")
                if nul >= 0:
                    return out + chunk[:nul]
                out += chunk
            return None  # longer than PATH_MAX: the kernel says ENAMETOOLONG
        finally:
            os.close(fd)

    # -- path resolution ---------------------------------------------------
    def resolve(self, tid: int, dirfd: int | None, raw: bytes, follow: bool) -> str | None:
        path = os.fsdecode(raw)
        if not path.startswith("/"):
            base_link = (
                f"/proc/{tid}/cwd"
                if dirfd is None or (dirfd & 0xFFFFFFFF) == AT_FDCWD
                else f"/proc/{tid}/fd/{dirfd & 0xFFFFFFFF}"
            )
            try:
                base = os.readlink(base_link)
            except OSError:
                return None
            path = os.path.join(base, path)
        # The monitor's /proc/self is not the guest's.
        for alias in ("/proc/self", "/proc/thread-self"):
            if path == alias or path.startswith(alias + "/"):
                path = f"/proc/{tid}" + path[len(alias) :]
        if follow:
            return os.path.realpath(path)
        head, tail = os.path.split(os.path.normpath(path))
        if tail in ("", ".", ".."):
            return os.path.realpath(path)
        return os.path.join(os.path.realpath(head), tail)

    # -- one entry stop ------------------------------------------------------
    def on_entry(self, tid: int, nr: int, args) -> int:
        """0 to let the call run, else the errno to fail it with."""
        if nr in SYSCALLS:
            name, specs = SYSCALLS[nr]
            for spec in specs:
                dirfd_i, path_i, mode = spec[0], spec[1], spec[2]
                extra = spec[3] if len(spec) > 3 else ""
                follow = extra != "nofollow"
                if extra.startswith("atflags:"):
                    flags = args[int(extra[8:])]
                    follow = not flags & AT_SYMLINK_NOFOLLOW
                    if flags & AT_EMPTY_PATH:
                        raw = self.read_str(tid, args[path_i])
                        if raw == b"":
                            continue  # operates on the fd itself, granted earlier
                if isinstance(mode, str):
                    if mode.startswith("how:"):
                        how = self.read_mem(tid, args[int(mode[4:])], 8)
                        flags = struct.unpack("<Q", how)[0] if len(how) == 8 else 0
                    else:
                        flags = args[int(mode[7:])]
                    write = bool(flags & O_ACCMODE or flags & (O_CREAT | O_TRUNC | O_APPEND))
                    follow = not flags & O_NOFOLLOW
                else:
                    write = mode
                raw = self.read_str(tid, args[path_i])
                if raw is None:
                    if name in ("utimensat",) and args[path_i] == 0:
                        continue  # utimensat(fd, NULL, ...) acts on the fd
                    return self.deny(tid, name, "<unreadable path>", errno.EFAULT)
                if raw == b"":
                    continue  # the kernel answers ENOENT itself
                dirfd = None if dirfd_i is None else args[dirfd_i]
                path = self.resolve(tid, dirfd, raw, follow)
                if path is None:
                    return self.deny(tid, name, os.fsdecode(raw), errno.EBADF)
                err = self.policy.check(path, write, tid)
                if err:
                    return self.deny(tid, name, path, err)
            return 0
        if nr in REFUSED:
            name, err = REFUSED[nr]
            return self.deny(tid, name, "", err)
        if nr == NR_CLONE and args[0] & CLONE_NEW_ANY:
            return self.deny(tid, "clone", "namespace flags", errno.EPERM)
        if nr in (NR_CONNECT, NR_BIND):
            return self.check_sockaddr(
                tid, "connect" if nr == NR_CONNECT else "bind", args[1], args[2]
            )
        if nr == NR_SENDTO and args[4]:
            return self.check_sockaddr(tid, "sendto", args[4], args[5])
        if nr == NR_SENDMSG:
            return self.check_msghdr(tid, "sendmsg", args[1])
        if nr == NR_SENDMMSG:
            for i in range(min(args[2], 1024)):
                err = self.check_msghdr(tid, "sendmmsg", args[1] + 64 * i)
                if err:
                    return err
        return 0

    def check_msghdr(self, tid: int, name: str, addr: int) -> int:
        hdr = self.read_mem(tid, addr, 16)
        if len(hdr) < 16:
            return self.deny(tid, name, "<unreadable msghdr>", errno.EFAULT)
        msg_name, msg_namelen = struct.unpack("<QI4x", hdr)
        return self.check_sockaddr(tid, name, msg_name, msg_namelen) if msg_name else 0

    def check_sockaddr(self, tid: int, name: str, addr: int, length: int) -> int:
        length = min(length, 128)
        data = self.read_mem(tid, addr, length) if addr else b""
        if len(data) < 2:
            return 0  # the kernel answers EFAULT/EINVAL itself
        family = struct.unpack("<H", data[:2])[0]
        pol = self.policy
        grants = pol.connect if name != "bind" else pol.listen
        if family == socket.AF_INET and len(data) >= 8:
            port = struct.unpack(">H", data[2:4])[0]
            host = socket.inet_ntop(socket.AF_INET, data[4:8])
            if name == "bind" and port == 0 and host == "0.0.0.0":
                return 0  # an ephemeral local address for an outgoing socket
            err = pol.check_inet(host, port, grants)
            return self.deny(tid, name, f"{host}:{port}", err) if err else 0
        if family == socket.AF_INET6 and len(data) >= 24:
            port = struct.unpack(">H", data[2:4])[0]
            host = socket.inet_ntop(socket.AF_INET6, data[8:24])
            if name == "bind" and port == 0 and host == "::":
                return 0
            err = pol.check_inet(host, port, grants)
            return self.deny(tid, name, f"[{host}]:{port}", err) if err else 0
        if family == socket.AF_UNIX:
            sun = data[2:]
            if not sun or sun[0] == 0:
                # Abstract sockets have no path to check: they reach host services.
                return self.deny(tid, name, "@abstract", errno.ECONNREFUSED) if sun else 0
            raw = sun.split(b"\0", 1)[0]
            path = self.resolve(tid, None, raw, True)
            if path is None:
                return self.deny(tid, name, os.fsdecode(raw), errno.EBADF)
            if name == "bind":
                err = pol.check(path, True, tid)
            else:
                err = 0 if pol._under(path, pol.unix) else errno.ECONNREFUSED
            return self.deny(tid, name, path, err) if err else 0
        if family in (socket.AF_NETLINK,):
            return 0
        return self.deny(tid, name, f"family {family}", errno.EAFNOSUPPORT)

    def deny(self, tid: int, name: str, what: str, err: int) -> int:
        self.denied_count += 1
        if len(self.denials) < 100:
            self.denials.append(f"{name} {what}: {errno.errorcode.get(err, err)}")
        return err

    # -- the loop ------------------------------------------------------------
    def run(self, main_pid: int) -> int:
        """Traces until every guest process has exited; returns the main
        process's wait status."""
        opts = (PTRACE_O_TRACESYSGOOD | PTRACE_O_TRACEFORK | PTRACE_O_TRACEVFORK | PTRACE_O_TRACECLONE
                | PTRACE_O_TRACEEXEC | PTRACE_O_EXITKILL)  # fmt: skip
        _, status = os.waitpid(main_pid, WALL)
        if not os.WIFSTOPPED(status):
            return status
        _pt.ptrace(0x4200, main_pid, 0, opts)  # PTRACE_SETOPTIONS
        _pt.ptrace_syscall(main_pid, 0)
        tracees = {main_pid}
        main_status = 0
        info = self.info
        while tracees:
            try:
                tid, status = os.waitpid(-1, WALL)
            except ChildProcessError:
                break
            if os.WIFEXITED(status) or os.WIFSIGNALED(status):
                tracees.discard(tid)
                self.pending_errno.pop(tid, None)
                if tid == main_pid:
                    main_status = status
                continue
            if not os.WIFSTOPPED(status):
                continue
            sig = os.WSTOPSIG(status)
            event = status >> 16
            inject = 0
            try:
                if sig == signal.SIGTRAP | 0x80:
                    self.stops += 1
                    self.on_syscall_stop(tid, info)
                elif event in (PTRACE_EVENT_FORK, PTRACE_EVENT_VFORK, PTRACE_EVENT_CLONE):
                    tracees.add(_geteventmsg(tid))
                elif event == PTRACE_EVENT_EXEC:
                    pass
                elif tid not in tracees and sig == signal.SIGSTOP:
                    tracees.add(tid)  # a new child's first stop, seen before its parent's event
                elif sig == signal.SIGSTOP and tid in tracees and tid not in self._started:
                    pass  # the auto-attach SIGSTOP of a child we already know
                else:
                    inject = sig
                self._started.add(tid)
                _pt.ptrace_syscall(tid, inject)
            except _pt.PtraceError as exc:
                if exc.errno != errno.ESRCH:  # the tracee was killed meanwhile
                    raise
        return main_status

    def on_syscall_stop(self, tid: int, info: SyscallInfo) -> None:
        op = _get_syscall_info(tid, info)
        if op == PTRACE_SYSCALL_INFO_ENTRY:
            if info.arch != AUDIT_ARCH_X86_64:
                # An int 0x80 (i386) call numbers everything differently: the
                # policy tables would check the wrong call (i386 open is
                # x86_64 fstat).  Refuse the whole foreign ABI.
                err = self.deny(
                    tid, f"foreign-arch call {info.nr}", f"arch {info.arch:#x}", errno.ENOSYS
                )
            else:
                err = self.on_entry(tid, info.nr, info.args)
            if err:
                regs = _getregs(tid)
                regs.orig_rax = U64  # -1: no such call; the kernel skips it
                _setregs(tid, regs)
                self.pending_errno[tid] = err
        elif op == PTRACE_SYSCALL_INFO_EXIT:
            err = self.pending_errno.pop(tid, 0)
            if err:
                regs = _getregs(tid)
                regs.rax = (-err) & U64
                _setregs(tid, regs)


def _geteventmsg(tid: int) -> int:
    msg = ctypes.c_ulong()
    _pt.ptrace(0x4201, tid, 0, ctypes.addressof(msg))  # PTRACE_GETEVENTMSG
    return msg.value


def monitor_main(spec_path: str) -> None:
    with open(spec_path) as f:
        spec = json.load(f)
    stats_fd = spec["stats_fd"]
    os.set_inheritable(stats_fd, False)
    pid = os.fork()
    if pid == 0:
        try:
            import resource

            for res, value in spec["rlimits"]:
                resource.setrlimit(res, (value, value))
            os.chdir(spec["cwd"])
            _pt.ptrace_traceme()
            os.kill(os.getpid(), signal.SIGSTOP)  # let the monitor set options first
            os.execvpe(spec["argv"][0], spec["argv"], spec["env"])
        except OSError as exc:
            os.write(2, f"picoproc ptrace: exec {spec['argv'][0]}: {exc.strerror}\n".encode())
            os._exit(127 if exc.errno == errno.ENOENT else 126)
        os._exit(127)
    monitor = Monitor(spec)
    status = monitor.run(pid)
    stats = {
        "syscall_stops": monitor.stops,
        "denied": monitor.denied_count,
        "denials": monitor.denials,
    }
    os.write(stats_fd, json.dumps(stats).encode())
    os.close(stats_fd)
    if os.WIFSIGNALED(status):
        import resource

        sig = os.WTERMSIG(status)
        signal.signal(sig, signal.SIG_DFL)
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        os.kill(os.getpid(), sig)
        os._exit(128 + sig)
    os._exit(os.WEXITSTATUS(status) if os.WIFEXITED(status) else 255)


if __package__:

    class PtraceBackend(Backend):
        name = "ptrace"
        description = "syscall interposition with ptrace (python-ptrace): path and address checks at syscall entry"
        launcher_tasks = 1  # the monitor
        unsupported: ClassVar[dict[str, str]] = {
            "fs.view": "getdents is fd-based and unchecked: listing / (or any directory above a mount) "
            "shows the host's entry names, though what they name stays unreachable",
            "mount.remap": "no mount namespace: guest paths are host paths (a remapping manifest is refused)",
            "tmpfs.private": "a scratch path is the host directory of that name (granted writable), not a private tmpfs",
            "tmpfs.size": "no size limit on scratch",
            "hostname": "the guest sees the host's hostname",
            "pid.isolation": "no pid namespace: host processes are visible in /proc and signalable (kill is not checked)",
            "ipc.isolation": "host System V / POSIX IPC objects are reachable",
        }

        def _check_available(self) -> str:
            if _pt is None:
                raise BackendUnavailable(
                    "python-ptrace is not installed (pip install python-ptrace)"
                )
            return _probe_ptrace()

        def _run(self, manifest, argv, *, stdin, capture, timeout):
            require_identity_mounts(self.name, manifest)
            for t in manifest.tmpfs:
                if not os.path.isdir(t.guest):
                    raise BackendError(
                        f"ptrace: scratch {t.guest} must exist on the host (no private tmpfs here)"
                    )
            stats_r, stats_w = os.pipe()
            import tempfile

            fd, spec_path = tempfile.mkstemp(prefix="picoproc-ptrace-", suffix=".json")
            try:
                # The monitor compares resolved paths, so the grants are resolved too.
                real = os.path.realpath
                spec = {
                    "mounts": [
                        {"path": real(m.host), "writable": m.writable} for m in manifest.mounts
                    ],
                    "scratch": [real(t.guest) for t in manifest.tmpfs],
                    "hidden": [real(h) for h in manifest.hidden],
                    "hidden_names": list(getattr(manifest, "hidden_names", ())),
                    "net_connect": [(e.host, e.port) for e in manifest.net_connect],
                    "net_listen": [(e.host, e.port) for e in manifest.net_listen],
                    "unix_paths": [real(u) for u in manifest.unix_paths],
                    "cwd": manifest.cwd,
                    "argv": argv,
                    "env": manifest_env(manifest),
                    "rlimits": rlimits_for(manifest),
                    "stats_fd": stats_w,
                }
                with os.fdopen(fd, "w") as f:
                    json.dump(spec, f)
                result = run_process(
                    self.name,
                    [sys.executable, "-I", os.path.abspath(__file__), spec_path],
                    env={},
                    cwd="/",
                    stdin=stdin,
                    capture=capture,
                    timeout=timeout,
                    output_limit=manifest.limits.output_bytes,
                    cgroup=self.run_cgroup(manifest),
                    pass_fds=(stats_w,),
                )
                os.close(stats_w)
                stats_w = -1
                chunks = []
                while chunk := os.read(stats_r, 65536):
                    chunks.append(chunk)
                if chunks:
                    stats = json.loads(b"".join(chunks))
                    result.notes.append(
                        f"ptrace: {stats['syscall_stops']} syscall stops, {stats['denied']} calls denied"
                    )
                    result.notes += [f"ptrace denied: {d}" for d in stats["denials"]]
                elif result.limit is None and result.stopped_by is None:  # not killed by a limit: the monitor itself failed
                    raise BackendError("ptrace: the monitor died without reporting (see stderr)")
                return result
            finally:
                if stats_w >= 0:
                    os.close(stats_w)
                os.close(stats_r)
                os.unlink(spec_path)

    @functools.cache
    def _probe_ptrace() -> str:
        require_smoke_run(PtraceBackend(), "ptrace monitor cannot trace here", timeout=20)
        import ptrace

        return f"python-ptrace {getattr(ptrace, '__version__', '?')}"


if __name__ == "__main__":
    monitor_main(sys.argv[1])
