"""``picoproc bench perf`` and ``python -m picoproc.bench.perf``.

``add_perf_parser(subparsers)`` adds the ``perf`` subcommand to the
``picoproc bench`` parser (sandbox/cli.py); the module entry point adds
``--write-docs``, which runs the full suite and regenerates
docs/PERFORMANCE.md with its plot and raw JSON.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

DOCS = pathlib.Path(__file__).resolve().parent.parent.parent / "docs"
EXIT_USAGE = 125  # picoproc's own usage errors (docker run's status)


def _backend_list(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise argparse.ArgumentTypeError("--backends needs at least one name, e.g. native,pico")
    return names


def add_perf_options(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--backends", type=_backend_list, metavar="A,B,...",
                        help="backends to measure (default: every available one; native is always added "
                             "as the baseline)")
    parser.add_argument("--quick", action="store_true",
                        help="fewer repetitions and smaller inputs (CI smoke: under two minutes on native,pico)")
    parser.add_argument("--json", metavar="FILE", help="write the raw results as JSON")
    parser.add_argument("--plot", metavar="FILE.png", help="write a plot (matplotlib): one group per workload, "
                                                            "one bar per backend, log scale")
    parser.add_argument("--only", type=_backend_list, metavar="SECTION,...",
                        help="run only these sections: calls, startup, apps, scale, engine (container "
                             "start-up under podman with runc, crun, runsc and picoproc-oci)")
    parser.add_argument("-q", "--quiet", action="store_true",
                        help="no progress lines on stderr (step n/N, elapsed time)")
    parser.add_argument("--factor", type=_factor, default=1.0, metavar="F",
                        help="multiply every repetition count and input size by F (e.g. 0.1 to check the "
                             "plumbing in seconds; the numbers are then noise)")
    return parser


def _factor(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--factor {text!r} is not a number") from None
    if not 0 < value <= 100:
        raise argparse.ArgumentTypeError(f"--factor {text}: must be in (0, 100]")
    return value


def _profile(args):
    from . import workloads

    base = workloads.QUICK if args.quick else workloads.FULL
    return base if args.factor == 1.0 else workloads.scaled(base, args.factor)


def add_perf_parser(subparsers) -> argparse.ArgumentParser:
    """Adds ``perf`` to a ``picoproc bench`` subparsers object."""
    parser = subparsers.add_parser(
        "perf", help="performance: call classes, start-up, applications, scale, per backend",
        description="Measure picoproc against native and the comparison backends; prints a Markdown table.")
    add_perf_options(parser)
    parser.set_defaults(func=run_perf_command)
    return parser


def _check_args(args) -> str | None:
    if args.only:
        from .suite import SECTIONS

        bad = [s for s in args.only if s not in SECTIONS]
        if bad:
            return f"--only: unknown section(s) {', '.join(bad)}; known: {', '.join(SECTIONS)}"
    if args.plot and not args.plot.endswith(".png"):
        return f"--plot {args.plot}: the plot is a PNG file; give a name ending in .png"
    if args.plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            return "--plot needs matplotlib (pip install 'picoproc[bench]')"
    return None


def run_perf_command(args, profile=None) -> int:
    """Runs the suite; Markdown to stdout, progress to stderr (unless -q).
    Exit 125 for a usage error; 0 otherwise (targets are reported, never
    asserted)."""
    from .report import evaluate_targets, markdown, plot
    from .suite import run_suite

    problem = _check_args(args)
    if problem:
        print(f"picoproc bench perf: {problem}", file=sys.stderr)
        return EXIT_USAGE
    try:
        doc = run_suite(args.backends, profile=profile or _profile(args), sections=args.only,
                        progress=None if getattr(args, "quiet", False) else sys.stderr)
    except ValueError as exc:
        print(f"picoproc bench perf: {exc}", file=sys.stderr)
        return EXIT_USAGE
    doc["targets"] = evaluate_targets(doc)
    sys.stdout.write(markdown(doc))
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(doc, indent=1) + "\n")
    if args.plot:
        plot(doc, args.plot)
    return 0


def write_docs(args, profile=None) -> int:
    """Runs the suite and writes docs/PERFORMANCE.md, docs/performance.png and
    docs/performance.json."""
    from .report import evaluate_targets, plot
    from .suite import run_suite

    problem = _check_args(args)
    if problem:
        print(f"picoproc bench perf: {problem}", file=sys.stderr)
        return EXIT_USAGE
    if getattr(args, "from_json", None):
        try:
            doc = json.loads(pathlib.Path(args.from_json).read_text())
        except (OSError, ValueError) as exc:
            print(f"picoproc bench perf: --from-json {args.from_json}: {exc}", file=sys.stderr)
            return EXIT_USAGE
        if doc.get("schema") != "picoproc-perf/1":
            print(f"picoproc bench perf: --from-json {args.from_json}: not a picoproc-perf/1 result", file=sys.stderr)
            return EXIT_USAGE
    else:
        doc = run_suite(args.backends, profile=profile or _profile(args), sections=args.only,
                        progress=None if getattr(args, "quiet", False) else sys.stderr)
    doc["targets"] = evaluate_targets(doc)
    DOCS.mkdir(exist_ok=True)
    (DOCS / "performance.json").write_text(json.dumps(doc, indent=1) + "\n")
    plot(doc, DOCS / "performance.png")
    for path, text in generated_files(DOCS.parent).items():
        (DOCS.parent / path).write_text(text)
    print(f"wrote {DOCS / 'PERFORMANCE.md'}, performance.png, performance.json", file=sys.stderr)
    return 0


def generated_files(root: pathlib.Path) -> dict[pathlib.Path, str]:
    """docs/PERFORMANCE.md as rendered from the docs/performance.json under
    ``root`` (path relative to root -> text), without measuring anything:
    what ``--write-docs`` writes after a run, and what ``python -m
    picoproc.regen`` re-renders and checks."""
    from .report import performance_doc

    doc = json.loads((root / "docs" / "performance.json").read_text())
    command = "python -m picoproc.bench.perf --write-docs" + (" --quick" if doc["profile"] != "full" else "")
    return {pathlib.Path("docs/PERFORMANCE.md"):
            performance_doc(doc, "performance.png", "performance.json", command)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m picoproc.bench.perf",
                                     description="picoproc's performance suite (also: picoproc bench perf).")
    add_perf_options(parser)
    parser.add_argument("--write-docs", action="store_true",
                        help="regenerate docs/PERFORMANCE.md (with docs/performance.png and .json)")
    parser.add_argument("--from-json", metavar="FILE",
                        help="with --write-docs: re-render from a saved --json result instead of measuring")
    args = parser.parse_args(argv)
    try:
        if args.write_docs:
            return write_docs(args)
        return run_perf_command(args)
    except KeyboardInterrupt:
        return 130
