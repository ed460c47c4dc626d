"""``PicoprocError``: the root of every exception picoproc raises.

Each error keeps the standard base its callers already catch it by (a
``ManifestError`` is still a ``ValueError``, a ``MonitorError`` an
``OSError`` with its ``errno``, a ``RunError`` a
``subprocess.CalledProcessError``); ``except picoproc.PicoprocError``
catches any of them.  The standard base comes first in each class's bases,
so its constructor, ``str()`` and ``errno`` are the ones used.

``exit_status`` is what ``picoproc`` exits with when the error ends a
command (docs/RESULT.md): 125, picoproc's own failure, unless the class says
otherwise (a program not found: 127, not executable: 126).  ``errno`` is
the system error behind it, None where there is none.
"""

from __future__ import annotations


class PicoprocError(Exception):
    """Something picoproc was asked to do failed; ``str()`` says what."""

    exit_status: int = 125  # picoproc.result.EXIT_PICOPROC_ERROR
    errno: int | None = None

