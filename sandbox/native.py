"""Access to the compiled C module ``picoproc._native``.

Imported lazily by whoever needs C; refuses a module built from a different
revision of native/ so a stale build is never used with newer Python code.
"""

from __future__ import annotations

from picoproc.errors import PicoprocError
from picoproc.native_version import NATIVE_VERSION as EXPECTED_NATIVE_VERSION


class NativeModuleError(ImportError, PicoprocError):
    pass


def _load():
    try:
        from picoproc import _native  # type: ignore[attr-defined]
    except ImportError as exc:  # pragma: no cover - depends on the build
        raise NativeModuleError(
            f"picoproc's C module is not built ({exc}); run `pip install .` from the source tree"
        ) from None
    found = _native.lib.PICO_NATIVE_VERSION
    if found != EXPECTED_NATIVE_VERSION:
        raise NativeModuleError(
            f"picoproc's C module is version {found}, this code expects "
            f"{EXPECTED_NATIVE_VERSION}; rebuild with `pip install .`"
        )
    return _native.ffi, _native.lib


ffi, lib = _load()
