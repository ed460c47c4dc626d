"""The backend registry: names -> backend objects, status for ``picoproc doctor``."""

from __future__ import annotations

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


def _load_builtin() -> None:
    if _BACKENDS:
        return
    from .bwrap import BwrapBackend
    from .container import ContainerBackend, CrunBackend
    from .gvisor import GvisorBackend
    from .native import NativeBackend
    from .pico import PicoBackend
    from .ptrace_monitor import PtraceBackend
    from .sandlock_backend import SandlockBackend

    for cls in (
        PicoBackend,
        NativeBackend,
        ContainerBackend,
        CrunBackend,
        BwrapBackend,
        GvisorBackend,
        PtraceBackend,
        SandlockBackend,
    ):
        register(cls())


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
