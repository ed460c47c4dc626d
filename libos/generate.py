"""Generates the checked-in artifacts of the Linux-call table (libos/linux_calls.toml).

    python -m picoproc.libos.generate           # rewrite the files below
    python -m picoproc.libos.generate --check   # exit 1 if one is out of date

    libos/linux_calls.h   declarations of the handlers, the call flags
    libos/linux_calls.c   the dispatch table, the flags, the refused calls' stubs
    docs/LINUX.md         how picoproc answers each x86-64 Linux call

The loader build (libos/build.py) compiles the checked-in C; a test fails when
any of them drifts from the table.
"""

from __future__ import annotations

import pathlib
import sys

from .linux_calls import LinuxCall, linux_table, load_calls

HEADER_PATH = pathlib.Path("libos/linux_calls.h")
SOURCE_PATH = pathlib.Path("libos/linux_calls.c")
DOCS_PATH = pathlib.Path("docs/LINUX.md")
GENERATED_BY = "python -m picoproc.libos.generate"
# libos.h's LIBOS_NR_MAX: the dispatch table's size.
NR_MAX = 512


def _c_comment(text: str) -> str:
    return text.replace("*/", "* /")


def render_header(calls: tuple[LinuxCall, ...]) -> str:
    handled = sorted((c for c in calls if not c.refused), key=lambda c: c.nr)
    out = [
        f"/* GENERATED from libos/linux_calls.toml by `{GENERATED_BY}`: do not edit. */",
        "/* The Linux calls the library OS handles: one handler each, with the shape of",
        " * LIBOS_SYSCALL (libos.h, which includes this header), and the flags of every call. */",
        "#ifndef PICO_LIBOS_LINUX_CALLS_H",
        "#define PICO_LIBOS_LINUX_CALLS_H",
        "",
        "/* libos_call_flags[nr] */",
        "#define LIBOS_CALL_REWRITABLE 1 /* its call sites may be rewritten (rewrite.c) */",
        "#define LIBOS_CALL_QUIET 2 /* an ENOSYS answer leaves no audit record */",
        "extern const unsigned char libos_call_flags[LIBOS_NR_MAX];",
        "",
    ]
    out += [f"LIBOS_SYSCALL({c.name});" for c in handled]
    out += ["", "#endif", ""]
    return "\n".join(out)


def render_source(calls: tuple[LinuxCall, ...]) -> str:
    by_nr = sorted(calls, key=lambda c: c.nr)
    for c in by_nr:
        if c.nr >= NR_MAX:
            raise ValueError(f"{c.name}: number {c.nr} beyond the dispatch table ({NR_MAX})")
    out = [
        f"/* GENERATED from libos/linux_calls.toml by `{GENERATED_BY}`: do not edit. */",
        "/* The dispatch table of the library OS (trap.c, rewrite.c), indexed by x86-64",
        " * syscall number, and the stubs of the calls it refuses on purpose. */",
        '#include "libos.h"',
        "",
        "#define REFUSE(name, err)                                                                  \\",
        "\tstatic long libos_refuse_##name(long a0, long a1, long a2, long a3, long a4, long a5, \\",
        "\t\t\t\t\tstruct ucontext *uc)                                \\",
        "\t{                                                                                  \\",
        "\t\treturn -(err);                                                             \\",
        "\t}",
        "",
    ]
    for c in by_nr:
        if c.refused:
            out.append(f"/* {c.name}: {_c_comment(c.note)} */")
            out.append(f"REFUSE({c.name}, {c.errno}) /* {c.errno_name} */")
    out += ["", "const libos_syscall_fn libos_syscall_table[LIBOS_NR_MAX] = {"]
    out += [f"\t[{c.nr}] = {c.handler}," for c in by_nr]
    out += ["};", "", "const unsigned char libos_call_flags[LIBOS_NR_MAX] = {"]
    for c in by_nr:
        flags = []
        if c.rewritable:
            flags.append("LIBOS_CALL_REWRITABLE")
        if not c.audit:
            flags.append("LIBOS_CALL_QUIET")
        if flags:
            out.append(f"\t[{c.nr}] = {' | '.join(flags)}, /* {c.name} */")
    out += ["};", ""]
    return "\n".join(out)


def _md(text: str) -> str:
    return text.replace("|", "\\|")


def summary(rows: list[dict]) -> dict[str, int]:
    """Counts for the docs and the CLI: direct, handled (full, partial),
    refused on purpose, unimplemented."""
    lib = [r for r in rows if r["by"] == "library OS"]
    return {
        "total": len(rows),
        "direct": sum(r["handling"] == "direct" for r in rows),
        "full": sum(r["support"] == "full" for r in lib),
        "partial": sum(r["support"] == "partial" for r in lib),
        "refused": sum(r["support"] == "refused" for r in rows),
        "unimplemented": sum(r["support"] == "unimplemented" for r in rows),
    }


def render_docs(rows: list[dict]) -> str:
    n = summary(rows)
    out = [
        f"<!-- GENERATED from libos/linux_calls.toml and abi/abi_v1.toml by `{GENERATED_BY}`: do not edit. -->",
        "# How picoproc answers each Linux call",
        "",
        "A program in a picoprocess makes ordinary x86-64 Linux system calls. The seccomp filter",
        "lets the ABI's direct calls reach the host kernel ([ABI.md](ABI.md)); everything else",
        "traps into the library OS, which answers it with its own code, on direct calls, or",
        "through the monitor's mediated calls. `picoproc abi --linux` prints the same table.",
        "",
        f"Of the {n['total']} x86-64 Linux calls, {n['direct']} are direct; the library OS handles "
        f"{n['full'] + n['partial']} more",
        f"({n['full']} fully, {n['partial']} partially); {n['refused']} are refused on purpose; "
        f"{n['unimplemented']} are not",
        "implemented (the library OS answers `ENOSYS` and leaves an audit record naming the call).",
        "",
        "*Rewritten*: after the first trap, the call's `mov $nr,%eax; syscall` sites are",
        "rewritten into calls of the handler, so later calls cost no signal (libos/rewrite.c).",
        "",
        "## Handled by the library OS",
        "",
    ]
    handled = [r for r in rows if r["by"] == "library OS" and r["support"] in ("full", "partial")]
    families = list(dict.fromkeys(c.family for c in load_calls()))
    for family in families:
        members = [r for r in handled if r["family"] == family]
        if not members:
            continue
        out += [f"### {family}", "", "| call | nr | support | backed by | rewritten | note |",
                "|---|---|---|---|---|---|"]
        for r in members:
            backed = ", ".join(f"`{m}`" for m in r["mediated"])
            out.append(f"| `{r['name']}` | {r['nr']} | {r['support']} | {backed} | "
                       f"{'yes' if r['rewritable'] else ''} | {_md(r['note'])} |")
        out.append("")
    out += ["## Direct calls with trapped forms", "",
            "Direct in the ABI, but the filter traps some of their forms to the library OS.", "",
            "| call | nr | support | note |", "|---|---|---|---|"]
    for r in rows:
        if r["handling"] == "direct" and r["family"]:
            out.append(f"| `{r['name']}` | {r['nr']} | {r['support']} | {_md(r['note'])} |")
    out += ["", "## Refused on purpose", "", "| call | nr | errno | by | why |", "|---|---|---|---|---|"]
    for r in rows:
        if r["support"] == "refused":
            errno = f"`{r['errno']}`" if r["errno"] else "—"
            out.append(f"| `{r['name']}` | {r['nr']} | {errno} | {r['by']} | {_md(r['note'])} |")
    out += ["", "## Not implemented", "",
            "Answered `ENOSYS` by the library OS, with an audit record naming the call:", ""]
    out.append(", ".join(f"`{r['name']}`" for r in rows if r["support"] == "unimplemented") + ".")
    out.append("")
    return "\n".join(out)


def outputs() -> dict[pathlib.Path, str]:
    """Relative path -> expected content, for every checked-in generated file."""
    calls = load_calls()
    return {HEADER_PATH: render_header(calls), SOURCE_PATH: render_source(calls),
            DOCS_PATH: render_docs(linux_table())}


def stale_files(root: pathlib.Path) -> list[pathlib.Path]:
    from picoproc.regen import stale_paths

    return stale_paths(outputs(), root)


def main(argv: list[str] | None = None) -> int:
    from picoproc.regen import generator_main

    return generator_main(__doc__.splitlines()[0], outputs, GENERATED_BY, argv)


if __name__ == "__main__":
    sys.exit(main())
