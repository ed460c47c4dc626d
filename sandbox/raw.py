"""Raw picoprocesses: a static program under the seccomp filter alone.

No library OS catches anything: a call outside the ABI kills the process
(SIGSYS, exit status 159).  Only freestanding programs survive this — static
glibc already makes non-ABI calls while starting — so this mode exists to test
the filter itself and to drive the monitor with hand-written guests.
"""

from __future__ import annotations

import dataclasses
import os
import signal

from picoproc.abi.bpf import filter_for
from picoproc.image import ImageError, inspect_elf, resolve_program
from picoproc.native import ffi, lib

STEP_NAMES = {
    lib.PICO_STEP_NONE: "spawn",
    lib.PICO_STEP_PDEATHSIG: "setting the parent-death signal",
    lib.PICO_STEP_STDIO: "setting up stdin/stdout/stderr",
    lib.PICO_STEP_LOADER_FD: "placing the image on the loader fd",
    lib.PICO_STEP_CLOSE_FDS: "closing inherited fds",
    lib.PICO_STEP_SIGNALS: "resetting signal dispositions",
    lib.PICO_STEP_NO_NEW_PRIVS: "setting no_new_privs",
    lib.PICO_STEP_SECCOMP: "installing the seccomp filter",
    lib.PICO_STEP_EXEC: "entering the image (execveat on the loader fd)",
}


class SpawnError(OSError):
    """Creating the picoprocess failed; the message names the step."""


@dataclasses.dataclass(frozen=True)
class RawResult:
    pid: int
    exit_code: int | None  # set when the program exited
    signal: int | None  # set when a signal ended it

    @property
    def status(self) -> int:
        """The shell convention: the exit code, or 128+N for signal N."""
        return self.exit_code if self.signal is None else 128 + self.signal

    @property
    def reason(self) -> str:
        if self.signal is None:
            return f"exited with status {self.exit_code}"
        name = signal.Signals(self.signal).name if self.signal in signal.valid_signals() else str(self.signal)
        if self.signal == signal.SIGSYS:
            return f"killed by {name}: a system call outside the ABI"
        return f"killed by {name}"


def _cstrings(items: list[str]):
    """A NULL-terminated char*[] (and the buffers it points into, to keep alive)."""
    bufs = [ffi.new("char[]", s.encode("utf-8", "surrogateescape")) for s in items]
    array = ffi.new("char *[]", len(bufs) + 1)
    for i, b in enumerate(bufs):
        array[i] = b
    array[len(bufs)] = ffi.NULL
    return array, bufs


@dataclasses.dataclass(frozen=True)
class Spawned:
    pid: int
    listener_fd: int  # seccomp user-notification fd (owned by the caller), or -1


def spawn_raw(argv: list[str], env: dict[str, str] | None = None, stdio=(0, 1, 2), *, mode: str = "raw",
              keep_image_fd: bool = False, seccomp_flags: int = 0) -> Spawned:
    """Starts argv[0] (a static ELF) confined by the ``mode`` filter.

    With SECCOMP_FILTER_FLAG_NEW_LISTENER in ``seccomp_flags`` the returned
    listener fd receives the guest's mediated calls."""
    path = resolve_program(argv[0])
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        info = inspect_elf(path, fd)
        if info.kind == "dynamic":
            raise ImageError(f"{path}: dynamically linked (interpreter {info.interpreter}); raw mode runs static programs only")
        program = filter_for(mode)
        c_argv, keep_a = _cstrings(argv)
        c_envp, keep_e = _cstrings([f"{k}={v}" for k, v in (env or {}).items()])
        spec = ffi.new("struct pico_spawn_spec *")
        spec.image_fd = fd
        spec.keep_image_fd = int(keep_image_fd)
        for i in range(3):
            spec.stdio[i] = stdio[i]
        spec.argv = c_argv
        spec.envp = c_envp
        bpf = ffi.from_buffer(program)
        spec.filter = bpf
        spec.filter_len = len(program) // 8
        spec.seccomp_flags = seccomp_flags
        result = ffi.new("struct pico_spawn_result *")
        if lib.pico_spawn(spec, result) < 0:
            raise SpawnError(result.err, f"{STEP_NAMES.get(result.step, 'spawn')}: {os.strerror(result.err)}")
        del keep_a, keep_e
        return Spawned(result.pid, result.listener_fd)
    finally:
        os.close(fd)


def wait_raw(pid: int) -> RawResult:
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        return RawResult(pid, None, os.WTERMSIG(status))
    return RawResult(pid, os.WEXITSTATUS(status), None)


def run_raw(argv: list[str], env: dict[str, str] | None = None, stdio=(0, 1, 2)) -> RawResult:
    """Runs a static program under the raw filter and waits for it."""
    pid = spawn_raw(argv, env, stdio).pid
    try:
        return wait_raw(pid)
    except BaseException:
        # Interrupted (e.g. Ctrl-C): never leave the guest behind.
        try:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass
        raise
