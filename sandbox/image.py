"""Checks that a file is an image picoproc can enter, before any process exists.

Only the ELF header and program headers are read (bounded sizes); a malformed
or foreign file gives an ImageError naming the problem.
"""

from __future__ import annotations

import os
import stat
import struct

from picoproc import records
from picoproc.errors import PicoprocError

ELF_MAGIC = b"\x7fELF"
ELFCLASS64 = 2
ELFDATA2LSB = 1
EM_X86_64 = 62
ET_EXEC = 2
ET_DYN = 3
PT_INTERP = 3
PT_DYNAMIC = 2
EHDR = struct.Struct("<16sHHIQQQIHHHHHH")
PHDR = struct.Struct("<IIQQQQQQ")
MAX_PHNUM = 512  # the kernel's own bound is 64 KiB of headers


class ImageError(PicoprocError):
    """The program cannot be run; the message names the file and the reason."""


@records.record(frozen=True)
class ElfInfo:
    path: str
    kind: str  # "static", "static-pie" or "dynamic"
    interpreter: str | None


def resolve_program(prog: str, search_path: str | None = None) -> str:
    """PROG as given if it contains a slash, else the first match on PATH (like execvp)."""
    if not prog:
        raise ImageError("no program given")
    if "/" in prog:
        path = prog
    else:
        import shutil

        found = shutil.which(prog, path=search_path or os.environ.get("PATH", os.defpath))
        if found is None:
            raise ImageError(f"{prog}: not found on PATH")
        path = found
    try:
        st = os.stat(path)
    except OSError as exc:
        raise ImageError(f"{path}: {exc.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise ImageError(f"{path}: not a regular file")
    if not os.access(path, os.X_OK):
        raise ImageError(f"{path}: not executable")
    return path


def inspect_elf(path: str, fd: int | None = None) -> ElfInfo:
    """Reads the ELF headers of ``path`` (or of ``fd`` if given, so that the
    inspected file is the one that will run)."""
    own = fd is None
    if own:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            raise ImageError(f"{path}: {exc.strerror}") from None
    try:
        head = os.pread(fd, EHDR.size, 0)
        if len(head) < 4 or head[:4] != ELF_MAGIC:
            if head[:2] == b"#!":
                raise ImageError(f"{path}: a #! script, not an ELF binary (raw mode runs static ELF programs only)")
            raise ImageError(f"{path}: not an ELF binary")
        if len(head) < EHDR.size:
            raise ImageError(f"{path}: truncated ELF header")
        (ident, e_type, e_machine, _ver, _entry, e_phoff, _shoff, _flags,
         _ehsize, e_phentsize, e_phnum, *_rest) = EHDR.unpack(head)
        if ident[4] != ELFCLASS64 or ident[5] != ELFDATA2LSB:
            raise ImageError(f"{path}: not a 64-bit little-endian ELF binary")
        if e_machine != EM_X86_64:
            raise ImageError(f"{path}: ELF for machine {e_machine}, not x86-64")
        if e_type not in (ET_EXEC, ET_DYN):
            raise ImageError(f"{path}: ELF type {e_type} is not an executable")
        if e_phentsize != PHDR.size or not 0 < e_phnum <= MAX_PHNUM:
            raise ImageError(f"{path}: implausible program header table ({e_phnum} x {e_phentsize} bytes)")
        table = os.pread(fd, e_phnum * PHDR.size, e_phoff)
        if len(table) < e_phnum * PHDR.size:
            raise ImageError(f"{path}: truncated program header table")
        interpreter = None
        for i in range(e_phnum):
            p_type, _f, p_offset, _va, _pa, p_filesz, _memsz, _align = PHDR.unpack_from(table, i * PHDR.size)
            if p_type == PT_INTERP:
                if not 0 < p_filesz <= 4096:
                    raise ImageError(f"{path}: implausible PT_INTERP size {p_filesz}")
                raw = os.pread(fd, p_filesz, p_offset)
                interpreter = raw.split(b"\0", 1)[0].decode("utf-8", "replace")
        if interpreter:
            kind = "dynamic"
        else:
            kind = "static-pie" if e_type == ET_DYN else "static"
        return ElfInfo(path, kind, interpreter)
    finally:
        if own:
            os.close(fd)
