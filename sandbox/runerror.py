"""``check=True``'s exceptions: a run that did not exit 0, or that a limit
cut short.  They are subprocess's exception types too (``except
subprocess.CalledProcessError`` catches them), so this module imports
subprocess; picoproc.result and picoproc.api name them without importing it
until one is used.
"""

from __future__ import annotations

import subprocess

from picoproc.errors import PicoprocError

TYPE_CHECKING = False  # typing's own flag, without importing typing on every run
if TYPE_CHECKING:
    from picoproc.result import Result


class RunError(subprocess.CalledProcessError, PicoprocError):
    """``check=True``: the program did not exit 0, or a limit cut the run
    short.  A ``subprocess.CalledProcessError`` (``returncode``, ``cmd``,
    ``output``, ``stderr``) that also carries the whole ``result``."""

    def __init__(self, result: Result) -> None:
        super().__init__(result.returncode if result.returncode is not None else result.exit_status,
                         result.argv, result.stdout, result.stderr)
        self.result = result

    @property
    def exit_status(self) -> int:
        """The run's own exit status (``picoproc run`` exits with it)."""
        return self.result.exit_status

    def __str__(self) -> str:
        prog = self.result.argv[0] if self.result.argv else "?"
        return f"{prog}: {self.result.reason}"


class RunTimeout(RunError, subprocess.TimeoutExpired):
    """``check=True`` and the wall-time limit ended the run: both a RunError
    and a ``subprocess.TimeoutExpired``, so either ``except`` catches it."""

    def __init__(self, result: Result, timeout: float | None) -> None:
        RunError.__init__(self, result)
        self.timeout = timeout
        self.output = result.stdout

    def __str__(self) -> str:
        return RunError.__str__(self)


def run_error(result: Result, timeout: float | None = None) -> RunError:
    if result.limit == "wall_time":
        return RunTimeout(result, timeout)
    return RunError(result)
