"""Raw picoprocesses: a static program under the seccomp filter alone.

No library OS catches anything: a call outside the ABI kills the process
(SIGSYS, exit status 159).  Only freestanding programs survive this — static
glibc already makes non-ABI calls while starting — so this mode exists to test
the filter itself and to drive the monitor with hand-written guests.
"""

from __future__ import annotations

import os
import signal

from picoproc.image import ImageError  # noqa: F401  (re-exported: callers catch it from here)
from picoproc.spawn import (  # noqa: F401  (re-exported)
    STEP_NAMES,
    RawResult,
    SpawnConfig,
    Spawned,
    SpawnError,
    lookup,
    spawn_picoprocess,
    wait_picoprocess,
)


def spawn_raw(
    argv: list[str],
    env: dict[str, str] | None = None,
    stdio=(0, 1, 2),
    *,
    mode: str = "raw",
    keep_image_fd: bool = False,
    seccomp_flags: int = 0,
    **config,
) -> Spawned:
    """Starts argv[0] (a static ELF) as a picoprocess confined by the ``mode`` filter.

    With SECCOMP_FILTER_FLAG_NEW_LISTENER in ``seccomp_flags`` the returned
    listener fd receives the guest's mediated calls.  Further keyword
    arguments are SpawnConfig fields (limits, hostname, cgroup, identity...).
    ``Spawned.pid`` is the reaper (pid 1 of the run's namespace); wait for it
    with wait_raw()/wait_picoprocess(), which report the guest's status."""
    return spawn_picoprocess(
        SpawnConfig(
            argv=list(argv),
            env=env,
            stdio=tuple(stdio),
            mode=mode,
            keep_image_fd=keep_image_fd,
            seccomp_flags=seccomp_flags,
            **config,
        )
    )


def wait_raw(pid: int, timeout: float | None = None) -> RawResult:
    """Waits for a picoprocess started by spawn_raw (by its reaper pid)."""
    spawned = lookup(pid)
    if spawned is not None:
        return wait_picoprocess(spawned, timeout)
    # Not one of ours (or already waited for): plain wait, plain decoding.
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        return RawResult(pid, None, os.WTERMSIG(status))
    return RawResult(pid, os.WEXITSTATUS(status), None)


def run_raw(
    argv: list[str], env: dict[str, str] | None = None, stdio=(0, 1, 2), **config
) -> RawResult:
    """Runs a static program under the raw filter and waits for it."""
    spawned = spawn_raw(argv, env, stdio, **config)
    try:
        return wait_picoprocess(spawned)
    except BaseException:
        # Interrupted (e.g. Ctrl-C): never leave the guest behind.
        os.kill(spawned.pid, signal.SIGKILL)
        try:
            wait_picoprocess(spawned)
        except ChildProcessError:
            pass
        raise
