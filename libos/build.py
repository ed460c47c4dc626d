"""Builds the library OS: one static, freestanding ELF (the loader, which is
also the in-process library OS) linked at the ABI's fixed loader address.

    python3 -m picoproc.libos.build          # or: python3 libos/build.py

setup.py calls :func:`build_loader` from its build_py step, so
``pip install -e .`` produces ``libos/picoproc-loader``.  Warnings are errors.
After linking, :func:`check_loader_layout` verifies that every PT_LOAD lies
inside [PICO_LOADER_TEXT_START, +PICO_LOADER_TEXT_SIZE): the filter lets the
loader install its SIGSYS handler only from there.
"""

from __future__ import annotations

import os
import pathlib
import re
import shutil
import struct
import subprocess
import sys
import tempfile

try:
    from picoproc.errors import PicoprocError
except ImportError:  # setup.py runs this file to build picoproc, before picoproc can be imported
    PicoprocError = Exception

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent
ABI_HEADER = ROOT / "abi" / "picoproc_abi.h"
LOADER_NAME = "picoproc-loader"

CFLAGS = [
    "-std=gnu11", "-O2", "-g0",
    "-Wall", "-Wextra", "-Werror", "-Wno-unused-parameter",
    # Freestanding: no libc, no stack protector (it reads %fs:0x28, the
    # guest's TLS), no calls to libc functions synthesised by the compiler.
    "-ffreestanding", "-fno-builtin", "-fno-stack-protector", "-fno-tree-loop-distribute-patterns",
    # Position-independent code generation so that RIP-relative addressing
    # reaches the 1 TiB link address; the link itself is static, non-PIE.
    "-fpie", "-fvisibility=hidden", "-fcf-protection=none",
    "-fno-asynchronous-unwind-tables", "-fno-unwind-tables",
    # Rewritten syscall sites call the library OS without a signal frame to
    # save the FPU state (rewrite.c): its code must never touch a vector or
    # x87 register, which the guest expects a syscall to preserve.
    "-mgeneral-regs-only",
]


def _abi_constant(name: str) -> int:
    m = re.search(rf"#define {name} (0x[0-9a-fA-F]+|\d+)", ABI_HEADER.read_text())
    if not m:
        raise RuntimeError(f"{ABI_HEADER}: no #define {name}")
    return int(m.group(1).rstrip("UL"), 0)


def sources() -> list[pathlib.Path]:
    return sorted(HERE.glob("*.c")) + sorted(HERE.glob("*.S"))


class LoaderBuildError(RuntimeError, PicoprocError):
    pass


def check_loader_layout(path: pathlib.Path) -> None:
    """Raises LoaderBuildError unless the image is a static ET_EXEC whose
    PT_LOAD segments all lie in the loader's fixed range."""
    start = _abi_constant("PICO_LOADER_TEXT_START")
    end = start + _abi_constant("PICO_LOADER_TEXT_SIZE")
    data = path.read_bytes()
    if data[:4] != b"\x7fELF":
        raise LoaderBuildError(f"{path}: not an ELF file")
    (e_type, e_machine, _v, e_entry, e_phoff, _sh, _fl, _eh, e_phentsize, e_phnum) = struct.unpack_from(
        "<HHIQQQIHHH", data, 16)
    if e_type != 2:
        raise LoaderBuildError(f"{path}: ELF type {e_type}, expected ET_EXEC (static, non-PIE)")
    if not start <= e_entry < end:
        raise LoaderBuildError(f"{path}: entry {e_entry:#x} outside [{start:#x}, {end:#x})")
    loads = 0
    for i in range(e_phnum):
        p_type, _f, _off, vaddr, _pa, _fsz, memsz, _al = struct.unpack_from("<IIQQQQQQ", data, e_phoff + i * e_phentsize)
        if p_type == 3:  # PT_INTERP
            raise LoaderBuildError(f"{path}: has an interpreter; it must be static")
        if p_type == 2:  # PT_DYNAMIC
            raise LoaderBuildError(f"{path}: has a dynamic section; it must be static, non-PIE")
        if p_type != 1:
            continue
        loads += 1
        if not (start <= vaddr and vaddr + memsz <= end):
            raise LoaderBuildError(
                f"{path}: PT_LOAD [{vaddr:#x}, {vaddr + memsz:#x}) outside the loader range [{start:#x}, {end:#x})")
    if loads == 0:
        raise LoaderBuildError(f"{path}: no PT_LOAD segments")
    public = _abi_constant("PICO_LIBOS_PUBLIC_ADDR")
    if not any(addr == public for addr in _section_addresses(data, ".picoproc_public")):
        raise LoaderBuildError(f"{path}: section .picoproc_public is not at {public:#x}")


def _section_addresses(data: bytes, name: str) -> list[int]:
    """sh_addr of every section called ``name`` in an ELF64 image."""
    (e_shoff,) = struct.unpack_from("<Q", data, 40)
    e_shentsize, e_shnum, e_shstrndx = struct.unpack_from("<HHH", data, 58)
    if not e_shoff or e_shstrndx >= e_shnum:
        return []
    strtab_off = struct.unpack_from("<Q", data, e_shoff + e_shstrndx * e_shentsize + 24)[0]
    out = []
    for i in range(e_shnum):
        sh_name, _type, _flags, sh_addr = struct.unpack_from("<IIQQ", data, e_shoff + i * e_shentsize)
        end = data.index(b"\0", strtab_off + sh_name)
        if data[strtab_off + sh_name:end].decode(errors="replace") == name:
            out.append(sh_addr)
    return out


def build_loader(out: pathlib.Path | None = None, cc: str | None = None, verbose: bool = False) -> pathlib.Path:
    """Compiles and links the loader; returns its path (default libos/picoproc-loader)."""
    out = pathlib.Path(out) if out else HERE / LOADER_NAME
    cc = cc or os.environ.get("CC", "gcc")
    if shutil.which(cc) is None:
        raise LoaderBuildError(f"C compiler {cc!r} not found")
    start = _abi_constant("PICO_LOADER_TEXT_START")
    public = _abi_constant("PICO_LIBOS_PUBLIC_ADDR")
    cmd = [
        cc, *CFLAGS, f"-I{HERE}", f"-I{ABI_HEADER.parent}",
        "-static", "-nostdlib", "-no-pie",
        f"-Wl,-Ttext-segment={start:#x}", "-Wl,-z,noexecstack", "-Wl,-z,max-page-size=4096",
        # What the monitor's /proc reads from every guest (abi/libos_public.h).
        f"-Wl,--section-start=.picoproc_public={public:#x}",
        "-Wl,--build-id=none", "-Wl,-e,_start",
        *[str(s) for s in sources()],
        "-lgcc",
    ]
    with tempfile.TemporaryDirectory(prefix="picoproc-libos-") as tmp:
        tmp_out = pathlib.Path(tmp) / LOADER_NAME
        if verbose:
            print(" ".join(cmd + ["-o", str(tmp_out)]), file=sys.stderr)
        proc = subprocess.run(cmd + ["-o", str(tmp_out)], capture_output=True, text=True)
        if proc.returncode != 0:
            raise LoaderBuildError(f"building the library OS failed:\n{proc.stdout}{proc.stderr}")
        check_loader_layout(tmp_out)
        # Atomic replace: a running test may be executing the old file.
        staged = out.with_name(out.name + ".tmp")
        shutil.copyfile(tmp_out, staged)
        os.chmod(staged, 0o755)
        os.replace(staged, out)
    return out


def main() -> int:
    try:
        path = build_loader(verbose="-v" in sys.argv)
    except LoaderBuildError as exc:
        print(f"picoproc.libos.build: {exc}", file=sys.stderr)
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
