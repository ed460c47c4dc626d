"""The library OS: the freestanding loader image and its Python helpers.

The C sources in this folder build one static ELF, ``picoproc-loader``
(see build.py), that the monitor enters in "libos" mode.
"""

from __future__ import annotations

import functools
import os

LOADER_NAME = "picoproc-loader"

TYPE_CHECKING = False  # typing's own flag, without importing typing on every run
if TYPE_CHECKING:
    import pathlib


def loader_file() -> str:
    """Where the built loader image is (it may not exist if the build did not run)."""
    return os.path.join(os.path.dirname(os.path.realpath(__file__)), LOADER_NAME)


@functools.cache
def devices() -> tuple[tuple[str, int], ...]:
    """The host devices a picoprocess sees under /dev, (name, minor) each, in
    the library OS's order: read (once, on first use) from libos/devices.h,
    the list the loader is compiled with, so that the monitor mounts exactly
    those."""
    path = os.path.join(os.path.dirname(os.path.realpath(__file__)), "devices.h")
    with open(path, encoding="utf-8") as f:
        text = f.read()
    rows = []
    for line in text.splitlines():
        row = line.strip().rstrip("\\").strip()
        if not row.startswith("LIBOS_DEVICE("):
            continue
        name, _, minor = row[len("LIBOS_DEVICE("):].rstrip(")").partition(", ")
        if not (row.endswith(")") and name.isidentifier() and minor.isdigit()):
            raise RuntimeError(f"libos/devices.h: {row!r} is not in the form LIBOS_DEVICE(name, minor)")
        rows.append((name, int(minor)))
    if not rows:
        raise RuntimeError("libos/devices.h: no LIBOS_DEVICE row")
    return tuple(rows)


def loader_path() -> pathlib.Path:
    """loader_file() as a pathlib.Path."""
    import pathlib

    return pathlib.Path(loader_file())


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
    return [loader_file(), *opts, "--", program, *argv]


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
    """Names of the Linux syscalls the library OS implements (full or partial
    support in libos/linux_calls.toml, the table its dispatch table is
    generated from).  Calls outside it that reach the library OS are refused
    on purpose (the table says why) or answer ENOSYS and leave an audit
    record."""
    from .linux_calls import load_calls

    return frozenset(c.name for c in load_calls() if not c.refused)


def linux_table() -> list[dict]:
    """How picoproc answers every x86-64 Linux syscall (``picoproc abi --linux``);
    see :func:`picoproc.libos.linux_calls.linux_table`."""
    from .linux_calls import linux_table as table

    return table()
