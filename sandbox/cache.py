"""Results derived from files picoproc ships (the ABI table's seccomp filter,
the parsed default manifest), kept between runs the way Python keeps
bytecode: in the ``__pycache__`` directory beside the module that derives
them, under a name holding a hash of everything they are derived from.

A start-up then reads a few hundred bytes instead of importing a TOML
parser, compiling regular expressions and calling libseccomp.  The same
rules as bytecode apply: nothing is written when Python is told not to
write bytecode (``PYTHONDONTWRITEBYTECODE``, ``-B``) or the directory is
not writable, and a file is trusted as much as the package's own bytecode
beside it (same directory, same owner).  A stale or damaged file is never
used: its name carries the hash, and ``load`` validates what it reads.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable

try:  # CPython's built-in SHA-256: hashlib would load OpenSSL for it, in every start-up
    from _sha256 import sha256
except ImportError:  # pragma: no cover - other Pythons (3.12: _sha2)
    try:
        from _sha2 import sha256
    except ImportError:
        from hashlib import sha256


def content_key(parts: Iterable[bytes | str]) -> str:
    """A hash of ``parts`` (bytes, or paths whose contents are read)."""
    h = sha256()
    for part in parts:
        if isinstance(part, str):
            with open(part, "rb") as f:
                part = f.read()
        h.update(len(part).to_bytes(8, "little"))
        h.update(part)
    return h.hexdigest()[:32]


def _path(module_file: str, name: str, key: str, suffix: str) -> str:
    return os.path.join(os.path.dirname(os.path.abspath(module_file)), "__pycache__", f"{name}.{key}{suffix}")


def load(module_file: str, name: str, key: str, suffix: str, decode: Callable[[bytes], object]):
    """What ``store`` kept for (name, key), decoded; None when there is
    nothing usable (absent, unreadable, or ``decode`` raised ValueError)."""
    path = _path(module_file, name, key, suffix)
    try:
        with open(path, "rb") as f:
            if os.fstat(f.fileno()).st_uid not in (os.geteuid(), _owner(module_file)):
                return None  # not written by us nor by whoever installed the package
            data = f.read()
    except OSError:
        return None
    try:
        return decode(data)
    except (ValueError, EOFError):
        return None


def store(module_file: str, name: str, key: str, suffix: str, data: bytes) -> None:
    """Keeps ``data`` for (name, key) and removes what was kept under other
    keys, if bytecode may be written there; silently does nothing otherwise."""
    if sys.dont_write_bytecode:
        return
    path = _path(module_file, name, key, suffix)
    directory = os.path.dirname(path)
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        os.makedirs(directory, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
        os.replace(tmp, path)  # atomic: a concurrent reader sees all of it or nothing
        for other in os.listdir(directory):
            if other.startswith(name + ".") and other.endswith(suffix) and other != os.path.basename(path):
                try:
                    os.unlink(os.path.join(directory, other))
                except OSError:
                    pass
    except OSError:
        try:
            os.unlink(tmp)
        except OSError:
            pass


def _owner(module_file: str) -> int:
    try:
        return os.stat(module_file).st_uid
    except OSError:
        return -1
