"""Comparison backends: the same manifest and workload under other isolation mechanisms.

docs/BACKENDS.md.  Each backend turns a :class:`picoproc.manifest.Manifest` into the
nearest thing its mechanism can express and runs one command under it:

    native          no isolation: the baseline every ratio is taken against
    container       namespaces + read-only bind view + Docker's default caps and
                    seccomp profile, built by picoproc itself (no engine)
    container-crun  the same container as an OCI bundle run by ``crun``
    bwrap           bubblewrap
    gvisor          gVisor ``runsc`` (ptrace platform)
    ptrace          a syscall-interposition monitor on python-ptrace
    sandlock        the sandlock PyPI sandbox (Landlock + seccomp notification)

What a backend cannot express is declared, never hidden: ``Backend.unsupported``
maps a feature key (see :data:`FEATURES`) to the reason, ``limitations()`` lists
them as text, and every :class:`BackendResult` carries the ones that applied to
the manifest it ran.  A backend that is missing is refused with
:class:`BackendUnavailable`; nothing is ever run under a different backend.

The picoproc backend itself (``pico``) registers with :func:`register` once the
monitor exists; the interface here is the one it implements.
"""

from __future__ import annotations

from ._base import (
    FEATURES,
    Backend,
    BackendError,
    BackendResult,
    BackendUnavailable,
    ManifestNotExpressible,
)
from ._registry import (
    all_backends,
    backend_names,
    backend_status,
    get_backend,
    register,
    run_with_backend,
)

__all__ = [
    "FEATURES",
    "Backend",
    "BackendError",
    "BackendResult",
    "BackendUnavailable",
    "ManifestNotExpressible",
    "all_backends",
    "backend_names",
    "backend_status",
    "get_backend",
    "register",
    "run_with_backend",
]
