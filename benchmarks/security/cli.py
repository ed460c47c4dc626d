"""``picoproc bench surface`` and ``picoproc bench security``.

sandbox/cli.py calls :func:`add_bench_parsers` with its subparsers object
(or :func:`add_security_suites` with the subparsers of its own ``bench``
parser); ``python -m picoproc.bench.security`` runs the same commands standalone.
"""

from __future__ import annotations

import argparse
import json
import sys

EXIT_USAGE = 125  # picoproc's own usage errors (docker run's status)


def _split(value: str | None) -> list[str] | None:
    if value is None:
        return None
    items = [v.strip() for v in value.split(",") if v.strip()]
    if not items:
        raise ValueError(f"empty list {value!r}")
    return items


def _write_json(target: str, doc) -> None:
    with open(target, "w") as f:
        json.dump(doc, f, indent=2)
        f.write("\n")


def cmd_surface(args) -> int:
    from . import surface

    try:
        results = surface.run_surface(_split(args.backends), quiet=args.quiet)
    except ValueError as exc:
        print(f"picoproc bench surface: {exc}", file=sys.stderr)
        return EXIT_USAGE
    shown = surface.stored(results)
    print(surface.markdown(shown))
    if args.list:
        print(surface.reachable_lists(shown))
    if args.json:
        _write_json(args.json, {"suite": "surface", "results": [r.to_json() for r in results]})
    return 0


def cmd_security(args) -> int:
    from . import corpus, cve

    if args.cve_only and args.no_cve:
        print("picoproc bench security: --cve-only and --no-cve exclude each other", file=sys.stderr)
        return EXIT_USAGE
    results, cve_results = [], []
    try:
        if not args.cve_only:
            results = corpus.run_security(
                _split(args.backends), _split(args.cases), quick=args.quick, quiet=args.quiet
            )
        if not args.no_cve:
            cve_results = cve.run_cve(_split(args.backends), quiet=args.quiet)
    except ValueError as exc:
        print(f"picoproc bench security: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if results:
        print(corpus.markdown(results))
        if args.evidence:
            print()
            print(corpus.evidence_markdown(results))
    if cve_results:
        if results:
            print()
        print(cve.markdown(cve_results))
    if args.json:
        _write_json(
            args.json,
            {"suite": "security", "quick": args.quick, "results": [r.to_json() for r in results],
             "cve": [r.to_json() for r in cve_results]},
        )
    return 0


def _progress_options(parser) -> None:
    parser.add_argument("-q", "--quiet", action="store_true",
                        help="no progress lines on stderr (step n/N, elapsed time)")
    # Progress is on by default now; -v is still accepted.
    parser.add_argument("-v", "--verbose", action="store_true", help=argparse.SUPPRESS)


def cmd_fuzz(args) -> int:
    from . import fuzz

    from picoproc.bench.progress import Progress

    runs = args.runs or fuzz.default_runs(args.calls)
    pr = Progress(runs, quiet=args.quiet)
    try:
        report = fuzz.run_fuzz(args.calls, seed=args.seed, runs=runs, log=pr.step)
    except (ValueError, fuzz.FuzzError) as exc:
        print(f"picoproc bench fuzz: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print(fuzz.markdown(report))
    if args.json:
        _write_json(args.json, {"suite": "fuzz", **report.to_json()})
    return 1 if report.finding_count else 0


def _count(text: str) -> int:
    try:
        value = int(text.replace("_", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def add_security_suites(bench_subparsers) -> None:
    """Adds ``surface`` and ``security`` to a ``picoproc bench`` subparsers object."""
    sub = bench_subparsers
    surface = sub.add_parser(
        "surface", help="host syscalls a confined program reaches, per backend"
    )
    surface.add_argument(
        "--backends", metavar="A,B", help="default: pico-raw and every available backend"
    )
    surface.add_argument(
        "--json", metavar="FILE", help="write every number's observation and class as JSON"
    )
    surface.add_argument(
        "--list", action="store_true", help="also list the reachable calls of each backend"
    )
    _progress_options(surface)
    surface.set_defaults(func=cmd_surface)

    security = sub.add_parser(
        "security", help="escape and abuse corpus and CVE-prerequisite corpus, per backend"
    )
    security.add_argument("--backends", metavar="A,B", help="default: every available backend")
    security.add_argument(
        "--cases", metavar="X,Y", help="default: every case (see docs/SECURITY.md)"
    )
    security.add_argument("--json", metavar="FILE", help="write outcomes and evidence as JSON")
    security.add_argument("--quick", action="store_true", help="smaller bounded attacks (CI)")
    security.add_argument(
        "--evidence", action="store_true", help="also print the evidence per case"
    )
    security.add_argument("--cve-only", action="store_true",
                          help="only the CVE-prerequisite corpus (published exploits' mechanisms)")
    security.add_argument("--no-cve", action="store_true", help="only the escape and abuse cases")
    _progress_options(security)
    security.set_defaults(func=cmd_security)

    fuzz = sub.add_parser(
        "fuzz",
        help="fuzz the mediated interface against a policy model of the manifest "
        "(exit status 1 on findings)",
    )
    fuzz.add_argument("--calls", type=_count, default=20_000, metavar="N",
                      help="mediated calls to make (default 20000; the long run: 1000000)")
    fuzz.add_argument("--seed", type=int, help="reproduce a run (default: random, reported)")
    fuzz.add_argument("--runs", type=_count, metavar="R",
                      help="guest runs to spread the calls over (default: one per 50000, at least 2)")
    fuzz.add_argument("--json", metavar="FILE", help="write the report (findings, counts, usage) as JSON")
    _progress_options(fuzz)
    fuzz.set_defaults(func=cmd_fuzz)


def add_bench_parsers(subparsers, parser_class=None, extra=()) -> argparse.ArgumentParser:
    """Adds ``bench`` to a ``picoproc`` subparsers object, with the
    ``surface`` and ``security`` suites and every ``extra`` adder (e.g.
    picoproc.bench.perf.cli.add_perf_parser); each suite sets ``func``
    (args -> exit status)."""
    kw = {"parser_class": parser_class} if parser_class else {}
    bench = subparsers.add_parser("bench", help="benchmarks (picoproc bench SUITE --help)")
    sub = bench.add_subparsers(dest="bench_cmd", metavar="SUITE", **kw)
    add_security_suites(sub)
    for adder in extra:
        adder(sub)

    def no_suite(_args) -> int:
        bench.print_usage(sys.stderr)
        print("picoproc bench: name a suite: " + ", ".join(sub.choices), file=sys.stderr)
        return EXIT_USAGE

    bench.set_defaults(func=no_suite)
    return bench


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m picoproc.bench.security")
    add_bench_parsers(parser.add_subparsers(dest="cmd", metavar="COMMAND"))
    args = parser.parse_args(["bench", *(argv if argv is not None else sys.argv[1:])])
    return args.func(args)
