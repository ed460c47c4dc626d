"""Regenerates every generated file of the source tree, or checks that none is stale.

    python -m picoproc.regen [--check] [--root DIR]

Each generated file has one source: the ABI table (abi/abi_v1.toml), the
Linux call table (libos/linux_calls.toml), or a stored benchmark result
(docs/*.json, re-rendered here without measuring again).  ``--check`` writes
nothing and exits 1 naming every file that differs from what its source
gives; the test suite runs it, so a stale file fails CI.  The per-file
commands (``python -m picoproc.abi.generate`` ...) remain the entry points
of one generator each; a benchmark's ``--write-docs`` (the security
report's ``--write``) measures anew.

A new generated file is one entry in GENERATORS: a function from the tree's
root to {path relative to the root: expected text}.
"""

from __future__ import annotations

import argparse
import dataclasses
import pathlib
import sys
from collections.abc import Callable


@dataclasses.dataclass(frozen=True)
class Generator:
    command: str  # the generator's own entry point, named in messages
    files: Callable[[pathlib.Path], dict[pathlib.Path, str]]


def _abi(root: pathlib.Path) -> dict[pathlib.Path, str]:
    from picoproc.abi import generate

    return generate.outputs()


def _linux_calls(root: pathlib.Path) -> dict[pathlib.Path, str]:
    from picoproc.libos import generate

    return generate.outputs()


def _performance(root: pathlib.Path) -> dict[pathlib.Path, str]:
    from picoproc.bench.perf.cli import generated_files

    return generated_files(root)


def _security(root: pathlib.Path) -> dict[pathlib.Path, str]:
    from picoproc.bench.security.report import generated_files

    return generated_files(root)


def _compat(root: pathlib.Path) -> dict[pathlib.Path, str]:
    from picoproc.bench.compat.cli import generated_files

    return generated_files(root)


GENERATORS = [
    Generator("python -m picoproc.abi.generate", _abi),
    Generator("python -m picoproc.libos.generate", _linux_calls),
    Generator("python -m picoproc.bench.perf --write-docs", _performance),
    Generator("python -m picoproc.bench.security.report --write docs/SECURITY.md", _security),
    Generator("python -m picoproc.bench.compat --write-docs", _compat),
]


def expected(root: pathlib.Path) -> dict[pathlib.Path, tuple[str, str]]:
    """Every generated file: relative path -> (expected text, its generator's command)."""
    out = {}
    for gen in GENERATORS:
        for path, text in gen.files(root).items():
            if path in out:
                raise RuntimeError(f"{path} is generated twice ({out[path][1]}, {gen.command})")
            out[path] = (text, gen.command)
    return out


def stale_paths(outputs: dict[pathlib.Path, str], root: pathlib.Path) -> list[pathlib.Path]:
    """The paths of ``outputs`` (relative path -> expected text) that are
    missing under ``root`` or differ."""
    return [path for path, text in outputs.items()
            if not (root / path).is_file() or (root / path).read_text() != text]


def stale_files(root: pathlib.Path) -> list[tuple[pathlib.Path, str]]:
    """(path, command) of every generated file that is missing or differs."""
    every = expected(root)
    return [(path, every[path][1]) for path in stale_paths({p: t for p, (t, _) in every.items()}, root)]


def generator_main(description: str, outputs: Callable[[], dict[pathlib.Path, str]], command: str,
                   argv: list[str] | None = None) -> int:
    """The command line of one generator (``python -m picoproc.abi.generate``
    ...): write its files, or with --check name the stale ones and exit 1."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--check", action="store_true", help="fail if a generated file is stale")
    parser.add_argument("--root", type=pathlib.Path, default=pathlib.Path("."), help="source tree root")
    args = parser.parse_args(argv)
    files = outputs()
    if args.check:
        stale = stale_paths(files, args.root)
        for path in stale:
            print(f"out of date: {path} (run `{command}`)", file=sys.stderr)
        return 1 if stale else 0
    for path, text in files.items():
        (args.root / path).parent.mkdir(parents=True, exist_ok=True)
        (args.root / path).write_text(text)
        print(f"wrote {path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m picoproc.regen", description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 naming every stale generated file")
    parser.add_argument("--root", type=pathlib.Path, default=pathlib.Path("."),
                        help="the source tree (default: the current directory)")
    args = parser.parse_args(argv)
    if not (args.root / "abi" / "abi_v1.toml").is_file():
        print(f"regen: {args.root} is not picoproc's source tree (no abi/abi_v1.toml)", file=sys.stderr)
        return 2
    try:
        if args.check:
            stale = stale_files(args.root)
            for path, command in stale:
                print(f"out of date: {path} (run `python -m picoproc.regen`, or `{command}`)", file=sys.stderr)
            return 1 if stale else 0
        for path, (text, _) in expected(args.root).items():
            target = args.root / path
            if target.is_file() and target.read_text() == text:
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
            print(f"wrote {path}")
    except (OSError, ValueError, KeyError) as exc:
        # A missing or malformed source (a stored result that is not JSON,
        # or lacks a field the renderer needs): one line, not a traceback.
        print(f"regen: {exc.__class__.__name__}: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
