"""Raw picoprocesses: a static program under the seccomp filter alone.

No library OS catches anything: a call outside the ABI kills the process
(SIGSYS, exit status 159).  Only freestanding programs survive this — static
glibc already makes non-ABI calls while starting — so this mode exists to test
the filter itself and to drive the monitor with hand-written guests.
"""

from __future__ import annotations

import os
import re
import select
import signal
import time

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


def wait_raw_or_kill(pid: int, timeout: float) -> RawResult:
    """wait_raw with a timeout that never leaves the guest behind: at the
    timeout it is killed and reaped, then TimeoutError propagates."""
    try:
        return wait_raw(pid, timeout=timeout)
    except TimeoutError:
        os.kill(pid, signal.SIGKILL)
        wait_raw(pid)
        raise


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


# audit(7) record type AUDIT_SECCOMP: the kernel logs every seccomp kill
# (kernel.seccomp.actions_logged has kill_process by default) and prints it
# to the kernel log when no audit daemon takes it.
_SECCOMP_RECORD = re.compile(rb"type=1326 .*?\bpid=(\d+)\b.*?\bsyscall=(\d+)\b")


class SeccompKillLog:
    """Which system call a raw-mode program was killed for.  The exit status
    says only SIGSYS; the kernel's own seccomp log record says the call.
    Read from /dev/kmsg (root, or kernel.dmesg_restrict = 0), from the
    position it had when this object was made; ``available`` is False when
    the log cannot be read."""

    def __init__(self) -> None:
        try:
            self._fd = os.open("/dev/kmsg", os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:
            self._fd = -1
            return
        try:
            os.lseek(self._fd, 0, os.SEEK_END)
        except OSError:
            self.close()

    @property
    def available(self) -> bool:
        return self._fd >= 0

    def find(self, pid: int, timeout: float = 1.0) -> int | None:
        """The syscall number the kernel killed ``pid`` (a host pid) for, or
        None.  The record is written by the kernel's audit thread shortly
        after the kill: waits at most ``timeout`` seconds for it."""
        if self._fd < 0:
            return None
        deadline = time.monotonic() + timeout
        poller = select.poll()
        poller.register(self._fd, select.POLLIN)
        while True:
            while True:
                try:
                    record = os.read(self._fd, 8192)
                except BlockingIOError:
                    break
                except BrokenPipeError:
                    continue  # records were overwritten before we read them
                except OSError:
                    return None
                m = _SECCOMP_RECORD.search(record)
                if m and int(m.group(1)) == pid:
                    return int(m.group(2))
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            poller.poll(max(1, int(left * 1000)))

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
