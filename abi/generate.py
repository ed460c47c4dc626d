"""Generates the checked-in artifacts of the ABI table.

    python -m picoproc.abi.generate           # rewrite abi/picoproc_abi.h and docs/ABI.md
    python -m picoproc.abi.generate --check   # exit 1 if either is out of date

The BPF program is not checked in: it is compiled from the same table at run
time (picoproc.abi.bpf), so it cannot drift.
"""

from __future__ import annotations

import pathlib
import sys

from .table import ABITable, load_table

HEADER_PATH = pathlib.Path("abi/picoproc_abi.h")
DOCS_PATH = pathlib.Path("docs/ABI.md")
GENERATED_BY = "python -m picoproc.abi.generate"


def _c_ident(name: str) -> str:
    return name.upper().replace(".", "_")


def render_header(table: ABITable) -> str:
    out = [
        f"/* GENERATED from abi/abi_v1.toml by `{GENERATED_BY}`: do not edit. */",
        "/* The picoproc ABI v%d for C: the monitor (native/), the library OS (libos/)" % table.version,
        " * and freestanding guests include this one header. */",
        "#ifndef PICOPROC_ABI_H",
        "#define PICOPROC_ABI_H",
        "",
        "#include <stddef.h>",
        "",
        f"#define PICO_ABI_VERSION {table.version}",
        f"#define PICO_MEDIATED_BASE {table.mediated_base}",
        f"#define PICO_MEDIATED_COUNT {len(table.mediated)}",
        f"#define PICO_DIRECT_COUNT {len(table.direct)}",
        f"#define PICO_LOADER_FD {table.loader_fd}",
        f"#define PICO_LOADER_TEXT_START {table.loader_text_start:#x}UL",
        f"#define PICO_LOADER_TEXT_SIZE {table.loader_text_size:#x}UL",
        f"#define PICO_MAX_PATH {table.max_path}",
        f"#define PICO_MAX_URI {table.max_uri}",
        "",
    ]
    for name, value in table.constants.items():
        if name.startswith("PICO_"):
            out.append(f"#define {name} {value:#x}")
    out += ["", "/* Mediated call numbers (the guest issues them as syscalls). */"]
    for m in table.mediated:
        out.append(f"#define PICO_NR_{_c_ident(m.name)} {m.nr}")
    out += [
        "",
        "/* X-macros: X(name, linux_nr) for each direct call; X(name, nr, nargs) for each",
        " * mediated call. */",
        "#define PICO_DIRECT_CALLS(X) \\",
    ]
    out += [f"\tX({d.name}, {d.nr}) \\" for d in table.direct]
    out += ["", "#define PICO_MEDIATED_CALLS(X) \\"]
    out += [f"\tX({m.name}, {m.nr}, {len(m.args)}) \\" for m in table.mediated]
    out += [
        "",
        "#if defined(__x86_64__) && !defined(PICO_ABI_NO_WRAPPERS)",
        "#ifdef PICO_ABI_AREA",
        "/* The argument area (PICO_AREA_*), for a caller that holds one (the",
        " * library OS defines PICO_ABI_AREA and implements these).  A call takes a",
        " * slot, copies its in-arguments there and passes area references; out-",
        " * arguments are reserved there and copied back after the call.  When no",
        " * slot is free (or an argument does not fit) the wrappers pass the",
        " * caller's own pointers, which the monitor reads from the process. */",
        "struct pico_area_call {",
        "\tunsigned int slot;",
        "\tunsigned int tag;",
        "\tunsigned long used;",
        "};",
        "/* 1 with a slot held, 0 without (no area, or every slot busy). */",
        "int pico_area_begin(struct pico_area_call *c);",
        "/* The area reference of a copy of n bytes of p, or 0 when they do not fit. */",
        "long pico_area_put(struct pico_area_call *c, const void *p, unsigned long n);",
        "/* The area reference of n bytes for a result, or 0. */",
        "long pico_area_reserve(struct pico_area_call *c, unsigned long n);",
        "void pico_area_get(const struct pico_area_call *c, long ref, void *dst, unsigned long n);",
        "/* Before a call that answers with an fd: ask for it on the slot's channel. */",
        "void pico_area_ask_fd(struct pico_area_call *c);",
        "/* After it: the answer, with an fd sent on the channel received (flags: the",
        " * open flags, for O_CLOEXEC). */",
        "long pico_area_take_fd(struct pico_area_call *c, long answer, int flags);",
        "void pico_area_end(struct pico_area_call *c);",
        "#endif",
        "",
        "/* Raw system call with up to six arguments; no libc, no errno: returns -errno. */",
        "static inline long pico_syscall6(long nr, long a0, long a1, long a2, long a3, long a4, long a5)",
        "{",
        "\tlong ret;",
        "\tregister long r10 __asm__(\"r10\") = a3;",
        "\tregister long r8 __asm__(\"r8\") = a4;",
        "\tregister long r9 __asm__(\"r9\") = a5;",
        "\t__asm__ volatile(\"syscall\"",
        "\t\t\t : \"=a\"(ret)",
        "\t\t\t : \"a\"(nr), \"D\"(a0), \"S\"(a1), \"d\"(a2), \"r\"(r10), \"r\"(r8), \"r\"(r9)",
        "\t\t\t : \"rcx\", \"r11\", \"memory\");",
        "\treturn ret;",
        "}",
        "",
        "struct statx;",
        "struct statfs;",
        "struct timespec;",
        "",
        "/* One typed wrapper per mediated call: pico_<name>(args...). */",
    ]
    for m in table.mediated:
        params = ", ".join(f"{a.ctype}{'' if a.ctype.endswith('*') else ' '}{a.name}" for a in m.args)
        regs = [f"(long){a.name}" for a in m.args] + ["0"] * (6 - len(m.args))
        out.append(f"static inline long pico_{m.name}({params or 'void'})")
        out.append("{")
        out += _area_wrapper_body(m)
        out.append(f"\treturn pico_syscall6(PICO_NR_{_c_ident(m.name)}, {', '.join(regs)});")
        out.append("}")
    out += [
        "#endif /* __x86_64__ && !PICO_ABI_NO_WRAPPERS */",
        "",
        "#endif /* PICOPROC_ABI_H */",
        "",
    ]
    return "\n".join(out)


# Pointer arguments the area wrappers copy, by C type: bytes of a fixed size
# (the kernel's structures on x86-64) in or out.  (const char *, size_t) and
# (char *, size_t) pairs are in- and out-bytes of that length.
_AREA_IN_FIXED = {"const struct timespec *": 32}  # two timespecs, or NULL
_AREA_OUT_FIXED = {"struct statx *": 256, "struct statfs *": 120}


def _area_wrapper_body(m) -> list[str]:
    """The PICO_ABI_AREA part of the wrapper of mediated call ``m``: the
    arguments staged in an area slot (see the header's comment); nothing
    for a call with a pointer argument of no fixed size."""
    nr = f"PICO_NR_{_c_ident(m.name)}"
    setup, regs, after = [], [], []
    for i, a in enumerate(m.args):
        nxt = m.args[i + 1] if i + 1 < len(m.args) else None
        var = f"a{i}_"
        if a.ctype == "const char *" and nxt is not None and nxt.ctype == "size_t":
            setup.append(f"\t\tlong {var} = pico_area_put(&area_, {a.name}, {nxt.name});")
            setup.append(f"\t\tok_ &= {var} != 0;")
        elif a.ctype == "char *" and nxt is not None and nxt.ctype == "size_t":
            setup.append(f"\t\tlong {var} = pico_area_reserve(&area_, {nxt.name});")
            setup.append(f"\t\tok_ &= {var} != 0;")
            after.append(f"\t\t\tif (r_ > 0)")
            after.append(f"\t\t\t\tpico_area_get(&area_, {var}, {a.name}, "
                         f"(unsigned long)r_ < {nxt.name} ? (unsigned long)r_ : {nxt.name});")
        elif a.ctype in _AREA_OUT_FIXED:
            size = _AREA_OUT_FIXED[a.ctype]
            setup.append(f"\t\tlong {var} = pico_area_reserve(&area_, {size});")
            setup.append(f"\t\tok_ &= {var} != 0;")
            after.append(f"\t\t\tif (r_ >= 0)")
            after.append(f"\t\t\t\tpico_area_get(&area_, {var}, {a.name}, {size});")
        elif a.ctype in _AREA_IN_FIXED:
            size = _AREA_IN_FIXED[a.ctype]
            setup.append(f"\t\tlong {var} = {a.name} ? pico_area_put(&area_, {a.name}, {size}) : 0;")
            setup.append(f"\t\tok_ &= !{a.name} || {var} != 0;")
        elif a.ctype.endswith("*"):
            # A pointer whose size depends on other arguments (xattr's value,
            # task_info's words): this call passes ordinary pointers.
            return []
        else:
            regs.append(f"(long){a.name}")
            continue
        regs.append(var)
    regs += ["0"] * (6 - len(regs))
    flags = next((a.name for a in m.args if a.name == "flags"), "0")
    call = [f"\t\t\tlong r_ = pico_syscall6({nr}, {', '.join(regs)});"]
    if m.fd_result:
        call = ["\t\t\tpico_area_ask_fd(&area_);", call[0],
                f"\t\t\tr_ = pico_area_take_fd(&area_, r_, {flags});"]
    return [
        "#ifdef PICO_ABI_AREA",
        "\tstruct pico_area_call area_;",
        "\tif (pico_area_begin(&area_)) {",
        "\t\tint ok_ = 1;",
        *setup,
        "\t\tif (ok_) {",
        *call,
        *after,
        "\t\t\tpico_area_end(&area_);",
        "\t\t\treturn r_;",
        "\t\t}",
        "\t\tpico_area_end(&area_);",
        "\t}",
        "#endif",
    ]


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|")


def render_docs(table: ABITable) -> str:
    out = [
        f"<!-- GENERATED from abi/abi_v1.toml by `{GENERATED_BY}`: do not edit. -->",
        f"# picoproc ABI v{table.version}",
        "",
        "What a picoprocess may ask of the host kernel. The seccomp filter is compiled from",
        "the same table by libseccomp (binary-tree optimised) each time picoproc starts.",
        "",
        "| kind | count | filter action |",
        "|---|---|---|",
        f"| direct | {len(table.direct)} (limit 60) | `SECCOMP_RET_ALLOW` when the argument rules hold |",
        f"| answered by errno | {len(table.errno_calls)} | `SECCOMP_RET_ERRNO` |",
        f"| mediated | {len(table.mediated)} (limit 20) | `SECCOMP_RET_USER_NOTIF` to the monitor |",
        "| anything else | — | `SECCOMP_RET_TRAP` to the library OS; `SECCOMP_RET_KILL_PROCESS` in raw mode |",
        "| another architecture (i386, x32) | — | `SECCOMP_RET_KILL_PROCESS` |",
        "",
        f"Mediated calls are numbered from {table.mediated_base} (`PICO_MEDIATED_BASE`), clear of",
        "the Linux range and of the x32 bit. The only `execveat` allowed is on the loader fd",
        f"{table.loader_fd} (`PICO_LOADER_FD`) with `AT_EMPTY_PATH`. Paths are at most",
        f"{table.max_path} bytes, URIs {table.max_uri}.",
        "",
        "With a library OS (\"libos\" mode) `rt_sigaction` and `rt_sigprocmask`, and `ppoll` and",
        "`epoll_pwait` with a signal mask, are allowed only from the loader's fixed text range",
        f"[{table.loader_text_start:#x}, {table.loader_text_start + table.loader_text_size:#x})",
        "and trap everywhere else (a hand-written BPF prefix, `abi/bpf.py`): the loader must",
        "re-install its SIGSYS handler after each exec, and a seccomp SIGSYS that arrives while",
        "SIGSYS is blocked kills the process, so the library OS serves these calls and keeps",
        "SIGSYS out of every mask, including the temporary mask of a wait. `ppoll` and",
        "`epoll_pwait` without a mask stay direct from anywhere. The same prefix traps `clone` for",
        "a child that shares memory without being a thread (`CLONE_VM` without `CLONE_THREAD`:",
        "vfork, posix_spawn) unless the library OS makes it: such a child needs library-OS state",
        "of its own. The rules in the table below apply to the calls the loader then makes (and",
        "to raw mode, where a wait with a mask is therefore killed). `getsockname` is handled",
        "like the signal calls in \"libos\" mode: a unix socket the monitor bound for the program",
        "shows its name within its directory, and the library OS answers with the path the",
        "program bound.",
        "",
        "Two calls bypass every seccomp filter by the kernel's own design: `uretprobe` (335) and",
        "`uprobe` (336), which the kernel's uprobe trampolines issue (exempt since Linux 6.14 and 6.16). Outside a",
        "trampoline they do nothing but signal the caller (SIGILL / ENXIO); no filter can close them,",
        "and the test over every syscall number expects exactly these two.",
        "",
        "## Direct calls",
        "",
        "Argument rules compare the full 64-bit register; a call is allowed when any rule",
        "holds, and otherwise treated like a call outside the ABI (trapped or killed).",
        "",
        "| call | nr | group | allowed when | why it is safe |",
        "|---|---|---|---|---|",
    ]
    for d in table.direct:
        when = " or ".join(f"`{r.text}`" for r in d.rules) if d.rules else "always"
        out.append(f"| `{d.name}` | {d.nr} | {d.group} | {_md_escape(when)} | {_md_escape(d.why)} |")
    out += ["", "## Answered with an errno", "", "| call | nr | errno | with a library OS | why |",
            "|---|---|---|---|---|"]
    for e in table.errno_calls:
        libos = "trapped to it" if e.libos_traps else "the same errno"
        out.append(f"| `{e.name}` | {e.nr} | `{e.errno_name}` | {libos} | {_md_escape(e.why)} |")
    out += ["", "## Mediated calls", ""]
    for m in table.mediated:
        sig = ", ".join(f"{a.ctype} {a.name}" for a in m.args)
        out += [
            f"### `{m.name}` — nr {m.nr} (`PICO_NR_{_c_ident(m.name)}`)",
            "",
            m.purpose,
            "",
            f"`long pico_{m.name}({sig})`",
            "",
        ]
        out += [f"* `{a.name}` ({a.ctype}) — {a.doc}" for a in m.args]
        out += ["", f"**Result:** {m.result}.", "", "**Errors:**", ""]
        out += [f"* {e}" for e in m.errors]
        out.append("")
    out += [
        "## Constants",
        "",
        "| name | value |",
        "|---|---|",
    ]
    out += [f"| `{k}` | `{v:#x}` |" for k, v in table.constants.items()]
    out.append("")
    return "\n".join(out)


def outputs(table: ABITable | None = None) -> dict[pathlib.Path, str]:
    """Relative path -> expected content, for every checked-in generated file."""
    table = table or load_table()
    return {HEADER_PATH: render_header(table), DOCS_PATH: render_docs(table)}


def stale_files(root: pathlib.Path) -> list[pathlib.Path]:
    from picoproc.regen import stale_paths

    return stale_paths(outputs(), root)


def main(argv: list[str] | None = None) -> int:
    from picoproc.regen import generator_main

    return generator_main(__doc__.splitlines()[0], outputs, GENERATED_BY, argv)


if __name__ == "__main__":
    sys.exit(main())
