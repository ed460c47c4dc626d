"""The library OS: the freestanding loader image and its Python helpers.

The C sources in this folder build one static ELF, ``picoproc-loader``
(see build.py), that the monitor enters in "libos" mode.
"""

from __future__ import annotations

import os
import pathlib

LOADER_NAME = "picoproc-loader"


def loader_path() -> pathlib.Path:
    """Where the built loader image is (it may not exist if the build did not run)."""
    return pathlib.Path(__file__).resolve().parent / LOADER_NAME


def loader_argv(program: str, argv: list[str], *, cwd: str = "/", uid: int | None = None,
                gid: int | None = None, hostname: str | None = None, release: str | None = None,
                umask: int | None = None, limits=None, cpus: int | None = None,
                groups=(), trace: bool = False) -> list[str]:
    """The argv the monitor gives the loader image in "libos" mode:

        picoproc-loader [--option=value ...] -- PROGRAM ARGV0 ARGS...

    PROGRAM is the guest path the loader opens (pico_open with
    PICO_OPEN_EXEC; relative paths are taken against ``cwd``); ``argv`` is the
    program's own argv, argv[0] included.  The options set the library OS's
    initial state (the virtual identity uname/getuid report, the cwd, the
    umask); omitted ones keep the loader's defaults (uid/gid 1000, hostname
    "picoproc", umask 022).  ``groups`` are the supplementary groups
    getgroups reports (at most 64: those the monitor acts with).  ``limits`` (a manifest Limits) makes getrlimit
    report the limits spawn sets (open files, CPU time, processes); ``cpus``
    is the CPU count the guest sees (default: the CPUs this process may use).
    ``trace``: the library OS reports the first call of each Linux syscall it
    emulates in each program image (pico_note_unsupported with
    PICO_NOTE_EMULATED), for picoproc trace."""
    if not cwd.startswith("/"):
        raise ValueError(f"cwd must be an absolute guest path, not {cwd!r}")
    opts = [f"--cwd={cwd}"]
    if uid is not None:
        opts.append(f"--uid={int(uid)}")
    if gid is not None:
        opts.append(f"--gid={int(gid)}")
    groups = [int(g) for g in groups]
    if len(groups) > 64 or any(not 0 <= g < 2**32 - 1 for g in groups):
        raise ValueError("groups: at most 64 gids, each below 2**32-1")
    opts.append("--groups=" + ",".join(map(str, groups)))
    if hostname is not None:
        if not 0 < len(hostname.encode()) <= 64:
            raise ValueError("hostname must be 1..64 bytes")
        opts.append(f"--hostname={hostname}")
    if release is not None:
        if not 0 < len(release.encode()) <= 64:
            raise ValueError("release must be 1..64 bytes")
        opts.append(f"--release={release}")
    if umask is not None:
        if not 0 <= umask <= 0o777:
            raise ValueError("umask must be within 0..0o777")
        opts.append(f"--umask={umask:03o}")
    opts.extend(_rlimit_options(limits))
    if cpus is None:
        cpus = len(os.sched_getaffinity(0))
    if not 1 <= int(cpus) <= 1024:
        raise ValueError("cpus must be within 1..1024")
    opts.append(f"--cpus={int(cpus)}")
    if trace:
        opts.append("--trace")
    return [str(loader_path()), *opts, "--", program, *argv]


def _rlimit_options(limits) -> list[str]:
    """--rlimit=RES:SOFT:HARD for the limits picoproc.spawn sets as rlimits
    (the same values, so that getrlimit tells the guest the truth)."""
    import math
    import resource

    if limits is None:
        return []
    out = []
    if getattr(limits, "open_files", None) is not None:
        n = int(limits.open_files)
        out.append(f"--rlimit={resource.RLIMIT_NOFILE}:{n}:{n}")
    if getattr(limits, "cpu_time_s", None) is not None:
        soft = max(1, math.ceil(limits.cpu_time_s))
        out.append(f"--rlimit={resource.RLIMIT_CPU}:{soft}:{soft + 1}")
    if getattr(limits, "pids", None) is not None:
        n = int(limits.pids) + 1
        out.append(f"--rlimit={resource.RLIMIT_NPROC}:{n}:{n}")
    return out


def emulated_syscalls() -> frozenset[str]:
    """Names of the Linux syscalls the library OS implements: the entries of
    LIBOS_HANDLERS in libos.h, the one list its dispatch table is built from
    (for ``picoproc abi --linux``).  Calls outside it that reach the library
    OS answer ENOSYS and leave an audit record."""
    import re

    text = (pathlib.Path(__file__).resolve().parent / "libos.h").read_text()
    block = text[text.index("#define LIBOS_HANDLERS(X)"):]
    block = block[: block.index("#define LIBOS_DECLARE")]
    return frozenset(re.findall(r"X\((\w+)\)", block))


# Which mediated calls back each emulated Linux call (the rest of the emulated
# calls are served by the library OS alone, on direct calls).
MEDIATED_BY = {
    "open": ("open",), "openat": ("open",), "creat": ("open",),
    "execve": ("open",), "execveat": ("open",),
    "stat": ("stat",), "lstat": ("stat",), "newfstatat": ("stat",), "statx": ("stat",),
    "access": ("access",), "faccessat": ("access",), "faccessat2": ("access",),
    "chdir": ("stat", "access"), "fchdir": ("access",),
    "readlink": ("readlink",), "readlinkat": ("readlink",),
    "mkdir": ("mkdir",), "mkdirat": ("mkdir",),
    "unlink": ("unlink",), "unlinkat": ("unlink",), "rmdir": ("unlink",),
    "rename": ("rename",), "renameat": ("rename",), "renameat2": ("rename",),
    "link": ("link",), "linkat": ("link",),
    "symlink": ("symlink",), "symlinkat": ("symlink",),
    "chmod": ("chmod",), "fchmod": ("chmod",), "fchmodat": ("chmod",), "fchmodat2": ("chmod",),
    "chown": ("chown", "stat"), "fchown": ("chown", "stat"), "lchown": ("chown", "stat"),
    "fchownat": ("chown", "stat"),
    "utimensat": ("utimens",), "utimes": ("utimens",), "utime": ("utimens",), "futimesat": ("utimens",),
    "truncate": ("truncate",),
    "statfs": ("statfs",), "fstatfs": ("statfs",),
    "socket": ("open",), "connect": ("open",), "bind": ("open",), "listen": ("open",),
    "memfd_create": ("open",),
    "getrusage": ("task_info",), "times": ("task_info",), "rt_sigpending": ("task_info",),
    "mknod": ("mknod",), "mknodat": ("mknod",), "pidfd_open": ("open",),
    "inotify_init": ("inotify",), "inotify_init1": ("inotify",), "inotify_add_watch": ("inotify",),
    "inotify_rm_watch": ("inotify",),
    **{f"{p}{op}xattr": ("xattr",) for p in ("", "l", "f") for op in ("get", "set", "list", "remove")},
}

# Emulated calls whose handler refuses on purpose (no audit record).
DELIBERATELY_REFUSED = {"rseq": "ENOSYS"}

# Direct calls that the filter also traps when their rules do not match, so
# that the library OS emulates the other forms.
DIRECT_AND_EMULATED_NOTES = {
    "fcntl": "direct for fd flags, duplication and locks; the pipe-size and seal commands are emulated",
    "ioctl": "direct for the read-only terminal queries and fd flags; the terminal requests that change a "
             "terminal go to the monitor (tty_ioctl), only for the run's own ptys",
    "rt_sigaction": "direct from the library OS's own code range; emulated for the program (SIGSYS is virtual)",
    "rt_sigprocmask": "direct from the library OS's own code range; emulated for the program (SIGSYS stays deliverable)",
    "execveat": "direct only on the loader fd; every program exec is emulated by re-entering the loader",
    "close": "direct on every fd but the loader fd; the library OS answers EBADF for it",
    "dup3": "direct onto every fd but the loader fd; the library OS answers EBADF for it",
    "getsockname": "direct from the library OS's own code range; emulated for the program (a unix socket "
                   "the monitor bound shows the path the program bound)",
    "setsockopt": "direct for SOL_SOCKET and IPPROTO_TCP; IPV6_V6ONLY is recorded for the socket the "
                  "monitor makes",
    "getsockopt": "direct for SOL_SOCKET and IPPROTO_TCP; IPV6_V6ONLY as recorded",
}


def linux_table() -> list[dict]:
    """How picoproc handles every x86-64 Linux syscall (``picoproc abi --linux``).

    One dict per syscall, by number: ``name``, ``nr``, ``handling`` (one of
    "direct", "emulated", "mediated", "refused"), ``rules`` (direct: the
    argument rules, [] when unconditional), ``mediated`` (the mediated calls
    that back it), ``errno`` (refused: the errno the program sees), ``by``
    (who decides: "filter", "library OS", "kernel") and ``note``."""
    from picoproc.abi.linux import SECCOMP_PASSTHROUGH, SYSCALLS_BY_NAME
    from picoproc.abi.table import load_table

    table = load_table()
    direct = {d.name: d for d in table.direct}
    refused_by_filter = {e.name: e for e in table.errno_calls}
    mediated_names = {m.name for m in table.mediated}
    emulated = emulated_syscalls()
    rows = []
    for name, nr in sorted(SYSCALLS_BY_NAME.items(), key=lambda kv: kv[1]):
        row = {"name": name, "nr": nr, "handling": "", "rules": [], "mediated": [], "errno": None,
               "by": "", "note": ""}
        if name in direct:
            d = direct[name]
            row.update(handling="direct", by="filter", rules=[r.text for r in d.rules], note=d.why)
            if name in emulated:
                row["note"] = DIRECT_AND_EMULATED_NOTES.get(name, "") or d.why
                row["mediated"] = list(MEDIATED_BY.get(name, ()))
        elif name in refused_by_filter:
            e = refused_by_filter[name]
            row.update(handling="refused", errno=e.errno_name, by="filter", note=e.why)
        elif name in SECCOMP_PASSTHROUGH:
            row.update(handling="refused", errno=None, by="kernel",
                       note="the kernel exempts it from seccomp; it only works from a uprobe trampoline, "
                            "which a picoprocess cannot install")
        elif name in DELIBERATELY_REFUSED:
            row.update(handling="refused", errno=DELIBERATELY_REFUSED[name], by="library OS",
                       note="refused on purpose (the C library then runs without it); not audited")
        elif name in emulated:
            backing = MEDIATED_BY.get(name, ())
            unknown = set(backing) - mediated_names
            if unknown:
                raise RuntimeError(f"{name}: backed by unknown mediated calls {sorted(unknown)}")
            row.update(handling="mediated" if backing else "emulated", by="library OS",
                       mediated=list(backing))
        else:
            row.update(handling="refused", errno="ENOSYS", by="library OS",
                       note="not implemented: the library OS answers ENOSYS and leaves an audit record naming it")
        rows.append(row)
    return rows
