"""``picoproc bench compat`` and ``python -m picoproc.bench.compat``.

``add_compat_parser(subparsers)`` adds the ``compat`` subcommand to the
``picoproc bench`` parser (sandbox/cli.py); the module entry point adds
``--write-docs``, which regenerates docs/COMPAT.md (and compat.json) from a
run, or from a saved ``--json`` result with ``--from-json``.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import re
import subprocess
import sys

DOCS = pathlib.Path(__file__).resolve().parent.parent.parent / "docs"
EXIT_USAGE = 125  # picoproc's own failures and usage errors (docker run's status)


def _module_list(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise argparse.ArgumentTypeError("--modules needs at least one name, e.g. test_os,test_fcntl")
    bad = [n for n in names if not re.fullmatch(r"[A-Za-z_]\w*", n)]
    if bad:
        raise argparse.ArgumentTypeError(f"--modules: not a module name: {', '.join(bad)}")
    return names


def _seconds(text: str) -> float:
    try:
        value = float(text.rstrip("s"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 < value <= 86400:
        raise argparse.ArgumentTypeError(f"{text}: must be in (0, 86400] seconds")
    return value


def _jobs(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--jobs {text!r} is not a whole number") from None
    if not 1 <= value <= 64:
        raise argparse.ArgumentTypeError(f"--jobs {text}: must be 1 to 64")
    return value


def add_compat_options(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    from .runs import MODULE_TIMEOUT_S, TEST_TIMEOUT_S

    which = parser.add_mutually_exclusive_group()
    which.add_argument("--modules", type=_module_list, metavar="M1,M2,...",
                       help="these regression modules (default: the 30 OS-facing ones of docs/COMPAT.md)")
    which.add_argument("--all", action="store_true",
                       help="a longer list: the default modules and 44 more (sockets, servers, "
                            "multiprocessing, files, start-up)")
    parser.add_argument("--jobs", "-j", type=_jobs, default=os.cpu_count() or 2, metavar="N",
                        help="modules compared at a time (default: the number of CPUs)")
    parser.add_argument("--json", metavar="FILE", help="write every test's outcomes and reasons as JSON")
    parser.add_argument("-q", "--quiet", action="store_true",
                        help="no progress lines on stderr (step n/N, elapsed time)")
    parser.add_argument("--test-timeout", type=_seconds, default=TEST_TIMEOUT_S, metavar="S",
                        help=f"a run that prints nothing for S seconds is hung (default {TEST_TIMEOUT_S:.0f})")
    parser.add_argument("--module-timeout", type=_seconds, default=MODULE_TIMEOUT_S, metavar="S",
                        help=f"the most one side of one module may take (default {MODULE_TIMEOUT_S:.0f})")
    parser.add_argument("--keep-output", metavar="DIR",
                        help="keep the output of every run in DIR (MODULE.native.N.out, MODULE.guest.N.out)")
    parser.add_argument("--testdir", metavar="DIR",
                        help="take the modules from DIR (regrtest --testdir) instead of CPython's test package")
    return parser


def add_compat_parser(subparsers) -> argparse.ArgumentParser:
    """Adds ``compat`` to a ``picoproc bench`` subparsers object."""
    parser = subparsers.add_parser(
        "compat", help="CPython's regression tests natively and inside, compared test by test",
        description="Run CPython regression modules (python3 -m test -v MODULE) natively as the guest's "
                    "identity and inside a picoprocess; print, per module, the tests that pass in both, "
                    "are skipped in both, and every test whose outcome differs, with the reason the guest "
                    "saw.  Exit 0 when the comparison ran (differences are reported, not failures).")
    add_compat_options(parser)
    parser.set_defaults(func=run_compat_command)
    return parser


def _selected(args) -> list[str]:
    from .modules import ALL_MODULES, DEFAULT_MODULES

    if args.modules:
        return list(dict.fromkeys(args.modules))
    return list(ALL_MODULES if args.all else DEFAULT_MODULES)


def _check(args, modules: list[str]) -> str | None:
    """A usage problem in words, or None."""
    from .runs import PYTHON, check_prerequisites

    if args.testdir:
        if not os.path.isdir(args.testdir):
            return f"--testdir {args.testdir}: no such directory"
        where = os.path.abspath(args.testdir)
        from picoproc.manifest import default_manifest

        for t in default_manifest().tmpfs:
            if where == t.guest or where.startswith(t.guest.rstrip("/") + "/"):
                return (f"--testdir {args.testdir}: under {t.guest}, which both sides replace with a "
                        "private scratch directory; put the modules elsewhere (e.g. /var/tmp)")
    else:
        problem = check_prerequisites(PYTHON)
        if problem:
            return problem
        where = subprocess.run([PYTHON, "-c", "import os, test; print(os.path.dirname(test.__file__))"],
                               capture_output=True, text=True, timeout=60, check=False).stdout.strip()
    missing = [m for m in modules if not (os.path.exists(os.path.join(where, m + ".py"))
                                          or os.path.isdir(os.path.join(where, m)))]
    if missing:
        return f"no regression module {', '.join(missing)} in {where}"
    return None


def _run(args) -> dict | int:
    from .harness import run_compat

    modules = _selected(args)
    problem = _check(args, modules)
    if problem:
        print(f"picoproc bench compat: {problem}", file=sys.stderr)
        return EXIT_USAGE
    if args.keep_output:
        os.makedirs(args.keep_output, exist_ok=True)
    try:
        return run_compat(modules, jobs=args.jobs, progress=None if args.quiet else sys.stderr,
                          out_dir=args.keep_output, test_timeout=args.test_timeout,
                          module_timeout=args.module_timeout, testdir=args.testdir)
    except RuntimeError as exc:
        print(f"picoproc bench compat: {exc}", file=sys.stderr)
        return EXIT_USAGE


def run_compat_command(args) -> int:
    """Runs the comparison; Markdown to stdout, progress to stderr (unless -q)."""
    from .report import markdown

    doc = _run(args)
    if isinstance(doc, int):
        return doc
    sys.stdout.write(markdown(doc))
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(doc, indent=1) + "\n")
    return 0


def write_docs(args) -> int:
    """docs/COMPAT.md and docs/compat.json, from a run or a saved result."""
    from .harness import SCHEMA

    if args.from_json:
        try:
            doc = json.loads(pathlib.Path(args.from_json).read_text())
        except (OSError, ValueError) as exc:
            print(f"picoproc bench compat: --from-json {args.from_json}: {exc}", file=sys.stderr)
            return EXIT_USAGE
        if doc.get("schema") != SCHEMA:
            print(f"picoproc bench compat: --from-json {args.from_json}: not a {SCHEMA} result", file=sys.stderr)
            return EXIT_USAGE
    else:
        doc = _run(args)
        if isinstance(doc, int):
            return doc
        if args.json:
            pathlib.Path(args.json).write_text(json.dumps(doc, indent=1) + "\n")
    DOCS.mkdir(exist_ok=True)
    (DOCS / "compat.json").write_text(json.dumps(doc, indent=1) + "\n")
    for path, text in generated_files(DOCS.parent).items():
        (DOCS.parent / path).write_text(text)
    print(f"wrote {DOCS / 'COMPAT.md'} and compat.json", file=sys.stderr)
    return 0


def generated_files(root: pathlib.Path) -> dict[pathlib.Path, str]:
    """docs/COMPAT.md as rendered from the docs/compat.json under ``root``
    (path relative to root -> text), without running anything: what
    ``--write-docs`` writes after a run, and what ``python -m picoproc.regen``
    re-renders and checks."""
    from .report import compat_doc

    doc = json.loads((root / "docs" / "compat.json").read_text())
    command = "python -m picoproc.bench.compat --write-docs" + (" --all" if len(doc["modules"]) > 30 else "")
    return {pathlib.Path("docs/COMPAT.md"): compat_doc(doc, command)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m picoproc.bench.compat",
                                     description="CPython's regression tests natively and inside "
                                                 "(also: picoproc bench compat).")
    add_compat_options(parser)
    parser.add_argument("--write-docs", action="store_true",
                        help="regenerate docs/COMPAT.md and docs/compat.json")
    parser.add_argument("--from-json", metavar="FILE",
                        help="with --write-docs: render a saved --json result instead of running")
    args = parser.parse_args(argv)
    try:
        if args.write_docs:
            return write_docs(args)
        if args.from_json:
            print("picoproc bench compat: --from-json goes with --write-docs", file=sys.stderr)
            return EXIT_USAGE
        return run_compat_command(args)
    except KeyboardInterrupt:
        return 130
