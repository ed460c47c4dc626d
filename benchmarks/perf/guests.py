"""The measuring guests: C sources in benchmarks/guests/, compiled at run time.

They are ordinary dynamic glibc programs (the same binary runs natively and
under every backend, so ratios compare like with like), compiled once per
source/compiler into a cache directory and then copied into the run's work
directory, which every backend mounts read-only at the same path.
"""

from __future__ import annotations

import hashlib
import os
import pathlib
import shutil
import subprocess

from picoproc.errors import PicoprocError

GUEST_SOURCES = pathlib.Path(__file__).resolve().parent.parent / "guests"
# Shared with the security suite's cache root; our binaries go in perf/.
CACHE_ROOT = pathlib.Path(os.environ.get("PICOPROC_BENCH_CACHE", "/var/tmp/picoproc-bench-cache"))
CFLAGS = ["-O2", "-Wall", "-Wextra", "-Werror"]
GUEST_NAMES = ("callclass", "statloop")


class GuestBuildError(RuntimeError, PicoprocError):
    """A guest did not compile; the message names it and quotes the compiler."""


def _compiler_id(cc: str) -> str:
    try:
        out = subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=30, check=False)
    except OSError as exc:
        raise GuestBuildError(f"cannot run the C compiler {cc!r}: {exc.strerror}") from None
    return out.stdout.splitlines()[0] if out.stdout else cc


def build_guest(name: str, cache_root: pathlib.Path = CACHE_ROOT) -> pathlib.Path:
    """The compiled guest ``name`` (from the cache when the source and the
    compiler are unchanged)."""
    source = GUEST_SOURCES / f"{name}.c"
    if not source.is_file():
        raise GuestBuildError(f"no guest source {source}")
    cc = os.environ.get("CC", "gcc")
    key = hashlib.sha256(source.read_bytes() + _compiler_id(cc).encode() + " ".join(CFLAGS).encode())
    target = cache_root / "perf" / f"{name}-{key.hexdigest()[:16]}"
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + f".tmp{os.getpid()}")
    out = subprocess.run([cc, *CFLAGS, "-o", str(tmp), str(source)], capture_output=True, text=True,
                         timeout=120, check=False)
    if out.returncode != 0:
        tmp.unlink(missing_ok=True)
        raise GuestBuildError(f"{source.name} does not compile: {out.stderr.strip()[-400:]}")
    os.replace(tmp, target)  # atomic: a concurrent build never sees half a file
    return target


def install_guests(bin_dir: pathlib.Path) -> dict[str, str]:
    """Builds every guest and copies it into ``bin_dir`` (mode 0755, so an
    unprivileged guest identity can run it); returns name -> path."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name in GUEST_NAMES:
        dest = bin_dir / name
        shutil.copyfile(build_guest(name), dest)
        os.chmod(dest, 0o755)
        paths[name] = str(dest)
    return paths
