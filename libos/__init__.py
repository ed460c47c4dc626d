"""The library OS: the freestanding loader image and its Python helpers.

The C sources in this folder build one static ELF, ``picoproc-loader``
(see build.py), that the monitor enters in "libos" mode.
"""

from __future__ import annotations

import pathlib

LOADER_NAME = "picoproc-loader"


def loader_path() -> pathlib.Path:
    """Where the built loader image is (it may not exist if the build did not run)."""
    return pathlib.Path(__file__).resolve().parent / LOADER_NAME


def loader_argv(program: str, argv: list[str], *, cwd: str = "/", uid: int | None = None,
                gid: int | None = None, hostname: str | None = None, release: str | None = None,
                umask: int | None = None) -> list[str]:
    """The argv the monitor gives the loader image in "libos" mode:

        picoproc-loader [--option=value ...] -- PROGRAM ARGV0 ARGS...

    PROGRAM is the guest path the loader opens (pico_open with
    PICO_OPEN_EXEC; relative paths are taken against ``cwd``); ``argv`` is the
    program's own argv, argv[0] included.  The options set the library OS's
    initial state (the virtual identity uname/getuid report, the cwd, the
    umask); omitted ones keep the loader's defaults (uid/gid 1000, hostname
    "picoproc", umask 022)."""
    if not cwd.startswith("/"):
        raise ValueError(f"cwd must be an absolute guest path, not {cwd!r}")
    opts = [f"--cwd={cwd}"]
    if uid is not None:
        opts.append(f"--uid={int(uid)}")
    if gid is not None:
        opts.append(f"--gid={int(gid)}")
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
    return [str(loader_path()), *opts, "--", program, *argv]


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
