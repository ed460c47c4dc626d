"""The backend registry: names -> backend objects, status for ``picoproc doctor``."""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Sequence

from picoproc.manifest import Manifest

from ._base import Backend, BackendResult, BackendUnavailable

_BACKENDS: dict[str, Backend] = {}


def register(backend: Backend) -> Backend:
    """Adds a backend (the ``pico`` backend registers itself this way)."""
    if not backend.name:
        raise ValueError("a backend needs a name")
    _BACKENDS[backend.name] = backend
    return backend


@dataclasses.dataclass(frozen=True)
class Builtin:
    """A built-in backend: where its class is, and what it needs from the
    host beyond the kernel, so that ``picoproc doctor`` can report on it
    without importing it (a peer's module would load the peer's code into
    the process)."""

    name: str
    module: str  # in picoproc.backends
    cls: str
    programs: tuple[str, ...] = ()  # the host program it runs (the first found on PATH)
    python_module: tuple[str, str] | None = None  # (module, distribution) it imports


BUILTIN: tuple[Builtin, ...] = (
    Builtin("pico", "pico", "PicoBackend"),
    Builtin("native", "native", "NativeBackend"),
    Builtin("container", "container", "ContainerBackend"),
    Builtin("container-crun", "container", "CrunBackend", programs=("crun",)),
    Builtin("bwrap", "bwrap", "BwrapBackend", programs=("bwrap",)),
    Builtin("gvisor", "gvisor", "GvisorBackend", programs=("runsc",)),
    Builtin("ptrace", "ptrace_monitor", "PtraceBackend", python_module=("ptrace", "python-ptrace")),
    Builtin("sandlock", "sandlock_backend", "SandlockBackend", python_module=("sandlock", "sandlock")),
)


def _load_builtin() -> None:
    if _BACKENDS:
        return
    for builtin in BUILTIN:
        module = importlib.import_module(f"{__package__}.{builtin.module}")
        register(getattr(module, builtin.cls)())


def backend_names() -> list[str]:
    _load_builtin()
    return list(_BACKENDS)


def all_backends() -> list[Backend]:
    _load_builtin()
    return list(_BACKENDS.values())


def get_backend(name: str) -> Backend:
    """The backend called ``name``; ValueError naming the known ones otherwise."""
    _load_builtin()
    try:
        return _BACKENDS[name]
    except KeyError:
        raise ValueError(f"unknown backend {name!r}; known: {', '.join(_BACKENDS)}") from None


def backend_status() -> list[tuple[str, bool, str]]:
    """(name, available, reason or version) for every backend, for ``picoproc doctor``."""
    return [(b.name, *b.available()) for b in all_backends()]


def run_with_backend(
    name: str,
    manifest: Manifest,
    argv: Sequence[str],
    *,
    stdin: bytes | None = None,
    capture: bool = True,
    timeout: float | None = None,
    forward_signals: bool = False,
    stop_timeout: float | None = None,
) -> BackendResult:
    """``picoproc run --backend NAME``: runs under exactly that backend or raises
    BackendUnavailable / ManifestNotExpressible; never falls back to another."""
    backend = get_backend(name)
    ok, reason = backend.available()
    if not ok:
        raise BackendUnavailable(f"backend {name!r} is unavailable: {reason}")
    return backend.run(manifest, argv, stdin=stdin, capture=capture, timeout=timeout,
                       forward_signals=forward_signals, stop_timeout=stop_timeout)
