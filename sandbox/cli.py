"""The ``picoproc`` command line: a thin layer over the Python API.

Every user error ends in one line on stderr naming the problem and a non-zero
exit (2 for usage, 127 for a program that cannot be run), never a traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys

from picoproc.manifest import add_cli_options

EXIT_USAGE = 2
EXIT_CANNOT_RUN = 127


class UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    """argparse, but errors are one line and raise instead of exiting."""

    def error(self, message: str):  # type: ignore[override]
        raise UsageError(f"{self.prog}: {message} (see {self.prog} --help)")


def _cmd_abi_linux(args) -> int:
    """How picoproc handles every x86-64 Linux syscall (gVisor's linux64.go style)."""
    from picoproc.libos import linux_table

    rows = linux_table()
    if args.json:
        json.dump(rows, sys.stdout, indent=2)
        print()
        return 0
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["handling"]] = counts.get(r["handling"], 0) + 1
    print(f"{len(rows)} x86-64 Linux syscalls: " + ", ".join(f"{n} {k}" for k, n in sorted(counts.items())))
    for r in rows:
        if r["handling"] == "mediated":
            how = "via " + ", ".join(r["mediated"])
        elif r["handling"] == "refused":
            how = f"{r['errno']} ({r['by']})"
        elif r["handling"] == "direct" and r["rules"]:
            how = f"when {r['rules'][0]}" + (f" (+{len(r['rules']) - 1} more rules)" if len(r["rules"]) > 1 else "")
        else:
            how = ""
        print(f"  {r['nr']:4d} {r['name']:24s} {r['handling']:9s} {how}")
    return 0


def _cmd_abi(args) -> int:
    from picoproc.abi import load_table

    if args.linux:
        return _cmd_abi_linux(args)
    table = load_table()
    if args.json:
        doc = {
            "version": table.version,
            "mediated_base": table.mediated_base,
            "loader_fd": table.loader_fd,
            "direct_count": len(table.direct),
            "calls": [
                {
                    "name": d.name, "nr": d.nr, "kind": "direct", "group": d.group,
                    "constraints": [r.text for r in d.rules], "why": d.why,
                }
                for d in table.direct
            ]
            + [
                {"name": e.name, "nr": e.nr, "kind": "errno", "errno": e.errno_name,
                 "constraints": [], "why": e.why}
                for e in table.errno_calls
            ]
            + [
                {"name": m.name, "nr": m.nr, "kind": "mediated",
                 "args": [{"name": a.name, "type": a.ctype, "doc": a.doc} for a in m.args],
                 "result": m.result, "errors": list(m.errors), "constraints": [], "why": m.purpose}
                for m in table.mediated
            ],
        }
        json.dump(doc, sys.stdout, indent=2)
        print()
        return 0
    print(f"picoproc ABI v{table.version}: {len(table.direct)} direct, "
          f"{len(table.errno_calls)} errno, {len(table.mediated)} mediated "
          f"(base {table.mediated_base}); everything else traps (or kills in raw mode)")
    for d in table.direct:
        rule = " or ".join(r.text for r in d.rules) if d.rules else "any arguments"
        print(f"  direct    {d.nr:4d} {d.name:16s} {rule}")
    for e in table.errno_calls:
        print(f"  errno     {e.nr:4d} {e.name:16s} -> {e.errno_name}")
    for m in table.mediated:
        sig = ", ".join(a.name for a in m.args)
        print(f"  mediated  {m.nr:4d} {m.name:16s} ({sig})")
    return 0


def _cmd_doctor(args) -> int:
    from picoproc.doctor import report

    return report(sys.stdout, sys.stderr, as_json=args.json)


def _cmd_run(args) -> int:
    from picoproc.image import ImageError
    from picoproc.manifest import ManifestError, manifest_from_cli_args

    if not args.command:
        raise UsageError("picoproc run: no program given (usage: picoproc run [options] -- PROG [ARGS...])")
    try:
        manifest = manifest_from_cli_args(args)
    except ManifestError as exc:
        print(f"picoproc: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.backend != "pico":
        return _run_with_backend(args, manifest)

    from picoproc.api import Sandbox, SandboxError
    from picoproc.spawn import ConfigError, SpawnError

    try:
        result = Sandbox(manifest, raw=args.raw, audit=args.audit).run(args.command, stdin=0)
    except (ImageError, SandboxError, ConfigError) as exc:
        print(f"picoproc: cannot run {exc}", file=sys.stderr)
        return EXIT_CANNOT_RUN
    except SpawnError as exc:
        print(f"picoproc: could not start the picoprocess: {exc.strerror}", file=sys.stderr)
        return EXIT_CANNOT_RUN
    except OSError as exc:
        print(f"picoproc: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_CANNOT_RUN
    if args.json:
        _write_json(args.json, result.to_dict())
    if result.signal is not None or result.limit is not None:
        print(f"picoproc: {args.command[0]}: {result.reason}", file=sys.stderr)
    return result.status


def _write_json(target: str, doc: dict) -> None:
    text = json.dumps(doc, indent=2, default=str) + "\n"
    if target == "-":
        sys.stderr.write(text)
        return
    with open(target, "w") as f:
        f.write(text)


def _run_with_backend(args, manifest) -> int:
    """Runs the same manifest and command under a comparison backend."""
    from picoproc.backends import BackendUnavailable, ManifestNotExpressible, run_with_backend

    if args.raw:
        raise UsageError("picoproc run: --raw applies to the pico backend only")
    try:
        result = run_with_backend(args.backend, manifest, args.command, capture=False)
    except (BackendUnavailable, ManifestNotExpressible) as exc:
        print(f"picoproc: {exc}", file=sys.stderr)
        return EXIT_CANNOT_RUN
    except (KeyError, ValueError) as exc:
        raise UsageError(f"picoproc run: {exc.args[0]}") from None
    if args.json:
        _write_json(args.json, result.to_dict() if hasattr(result, "to_dict") else dataclasses.asdict(result))
    # One line naming what this backend could not enforce of the manifest
    # (details: --json, docs/BACKENDS.md), so a user never mistakes it for picoproc.
    from picoproc.backends import get_backend

    cannot = get_backend(args.backend).cannot_express()
    unenforced = [n.split(":", 1)[0] for n in result.notes if n.split(":", 1)[0] in cannot]
    if unenforced:
        print(f"picoproc: backend {args.backend} does not enforce: {', '.join(unenforced)}", file=sys.stderr)
    return result.returncode


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="picoproc", description="Run untrusted Linux programs as picoprocesses.")
    sub = parser.add_subparsers(dest="cmd", metavar="COMMAND", parser_class=_Parser)

    run = sub.add_parser("run", help="run a program in a picoprocess")
    run.add_argument("--raw", action="store_true",
                     help="no library OS: a static program under the filter alone; any call outside the ABI kills it")
    run.add_argument("--backend", default="pico", metavar="NAME",
                     help="pico (default), or a comparison backend: native, container, bwrap, gvisor, ptrace, ...")
    run.add_argument("--audit", metavar="FILE", help="write every mediated call's audit record (JSONL)")
    run.add_argument("--json", metavar="FILE", help="write the result as JSON ('-' for stderr)")
    add_cli_options(run)
    run.add_argument("command", nargs=argparse.REMAINDER, help="-- PROG [ARGS...]")
    run.set_defaults(func=_cmd_run)

    abi = sub.add_parser("abi", help="print the ABI table")
    abi.add_argument("--json", action="store_true", help="machine-readable")
    abi.add_argument("--linux", action="store_true",
                     help="how every x86-64 Linux syscall is handled: direct, emulated, mediated or refused")
    abi.set_defaults(func=_cmd_abi)

    doctor = sub.add_parser("doctor", help="probe kernel features and comparison backends")
    doctor.add_argument("--json", action="store_true", help="machine-readable")
    doctor.set_defaults(func=_cmd_doctor)

    # picoproc bench surface|security|perf: the suites live in benchmarks/
    # (picoproc.bench) and register their own parsers.  A copy of picoproc
    # without them (e.g. only the monitor) still runs everything else.
    try:
        from picoproc.bench.perf.cli import add_perf_parser
        from picoproc.bench.security.cli import add_bench_parsers
    except ImportError as exc:
        missing = sub.add_parser("bench", help="benchmarks (not installed in this copy)")
        reason = f"picoproc bench: the benchmark suites are not installed ({exc})"

        def _no_bench(_args) -> int:
            print(reason, file=sys.stderr)
            return 1

        missing.set_defaults(func=_no_bench)
    else:
        add_bench_parsers(sub, parser_class=_Parser, extra=[add_perf_parser])
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if getattr(args, "command", None) and args.command[0] == "--":
            args.command = args.command[1:]
        if not getattr(args, "func", None):
            raise UsageError("picoproc: no command given (see picoproc --help)")
        return args.func(args)
    except UsageError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_USAGE
    except ImportError as exc:
        # A missing or stale C module (picoproc.native.NativeModuleError) is an
        # installation problem: one line saying so, not a traceback.
        print(f"picoproc: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (e.g. `picoproc abi --linux | head`): not an
        # error worth a traceback; silence the final flush too.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
