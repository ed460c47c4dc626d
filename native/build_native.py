"""cffi build script for ``picoproc._native`` (out-of-line API mode).

The C lives in real ``native/*.c`` files.  Each unit's public interface is in
its ``native/<unit>.h``; the part of that header between the markers
``/* cffi:begin */`` and ``/* cffi:end */`` is what cffi parses (cffi cannot
read preprocessor conditionals, so keep that part to plain declarations and
``#define NAME <integer>`` lines).  Adding a unit = adding a .c/.h pair here.
"""

import importlib.util
import pathlib
import re

from cffi import FFI

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent


def _native_version() -> int:
    """The one definition, sandbox/native_version.py (picoproc.native_version),
    loaded by path: picoproc cannot be imported while it is being built."""
    spec = importlib.util.spec_from_file_location("picoproc_native_version", ROOT / "sandbox" / "native_version.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.NATIVE_VERSION


NATIVE_VERSION = _native_version()

_MARKED = re.compile(r"/\* cffi:begin \*/(.*?)/\* cffi:end \*/", re.S)


def _cdef_of(header: pathlib.Path) -> str:
    parts = _MARKED.findall(header.read_text())
    return "\n".join(parts)


def _units():
    return sorted(p for p in HERE.glob("*.c"))


ffibuilder = FFI()
ffibuilder.cdef(f"#define PICO_NATIVE_VERSION {NATIVE_VERSION}\n")
for _h in sorted(HERE.glob("*.h")):
    ffibuilder.cdef(_cdef_of(_h))
# From the ABI header the C code is built with (loop.h includes it), for
# Python that must not parse the ABI table to know them (picoproc.monitor).
ffibuilder.cdef("#define PICO_NOTE_EMULATED ...\n")

ffibuilder.set_source(
    "picoproc._native",
    f"#define PICO_NATIVE_VERSION {NATIVE_VERSION}\n"
    + "".join(f'#include "{h.name}"\n' for h in sorted(HERE.glob("*.h")) if _cdef_of(h)),
    sources=[str(p.relative_to(ROOT)) for p in _units()],
    include_dirs=[str(HERE), str(ROOT / "abi")],
    libraries=["seccomp"],
    # -flto: the serving path crosses units (loop, serve, args, fs_resolve,
    # fs_policy); link-time optimisation inlines across them as it did
    # when they were one file.
    extra_compile_args=["-O2", "-flto=auto", "-Wall", "-Wextra", "-Werror", "-Wno-unused-parameter", "-std=gnu11"],
    extra_link_args=["-O2", "-flto=auto"],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
