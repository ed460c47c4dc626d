"""picoproc's performance suite: ``picoproc bench perf``.

Call classes measured inside the guest (direct, emulated, mediated, a 4 KiB
read), start-up of /bin/true (Python API and CLI), applications (python3,
CPython's regression tests, sqlite3, busybox tar, gcc), and N concurrent
picoprocesses against one monitor; every backend, every ratio to native in
the same run.  Output: Markdown, JSON, a PNG plot, docs/PERFORMANCE.md
(``python -m picoproc.bench.perf --write-docs``).
"""

from .cli import add_perf_parser, main, run_perf_command

__all__ = ["add_perf_parser", "main", "run_perf_command"]
