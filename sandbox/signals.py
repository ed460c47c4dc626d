"""Passing the signals a supervisor sends on to the program, as ``docker run``
does: SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1 and SIGUSR2 sent to picoproc
reach the program, which may handle them; a stop signal (the first four)
also starts the stop timeout, after which the run is killed.

The signals are read with a signalfd, not a Python handler, because the
sender matters.  A terminal's Ctrl-C (or Ctrl-\\) is sent by the kernel to
the whole foreground process group, which includes the picoprocess: the
program already has it, and passing it on again would deliver it twice.
signalfd reports the sender's ``si_code`` (SI_KERNEL for the terminal), so
those are only counted for the stop timeout.  A signal another process sent
to picoproc (``kill``, systemd, a supervisor) is passed on.

The stop timeout starts at the first stop signal that is not a terminal's
Ctrl-C: Ctrl-C interrupts what an interactive program (a shell, a REPL) is
doing, and such programs go on; Ctrl-\\ (SIGQUIT) and ``kill`` end it.

A signalfd only receives signals that are blocked in every thread, so
picoproc's own threads are started with them blocked
(``blocked_in_new_threads``) and a run that relays them blocks them in the
calling thread for its duration (``SignalRelay``).  Processes picoproc starts
get an empty mask back (spawn resets it; ``unblock_in_child`` for
subprocesses).
"""

from __future__ import annotations

import os
import signal
import struct
import threading
TYPE_CHECKING = False  # typing's own flag, without importing typing on every run
if TYPE_CHECKING:
    from typing import Self

from picoproc import records

FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1,
             signal.SIGUSR2)
# Signals that ask the program to stop: the stop timeout starts at the first.
STOPPING = frozenset({signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT})
DEFAULT_STOP_TIMEOUT = 10.0  # seconds, as docker stop

SI_KERNEL = 0x80
# struct signalfd_siginfo: 128 bytes; ssi_signo (u32), ssi_errno (i32),
# ssi_code (i32), ssi_pid (u32) lead.
_SIGINFO = struct.Struct("<IiiI")
_SIGINFO_SIZE = 128


@records.record(frozen=True)
class Caught:
    signo: int
    code: int  # si_code: SI_USER (0), SI_KERNEL (0x80), ...
    pid: int  # the sender, as seen from picoproc's pid namespace (0: from outside it)

    @property
    def from_terminal(self) -> bool:
        """Sent by the kernel (a terminal's Ctrl-C, Ctrl-\\, hang-up) to the
        whole foreground process group, the program included."""
        return self.code == SI_KERNEL

    @property
    def stops(self) -> bool:
        """Whether it starts the stop timeout: a stop signal, except a
        terminal's Ctrl-C, which interrupts what an interactive program
        (a shell, a REPL) is doing and is not a request to end it."""
        return self.signo in STOPPING and not (self.signo == signal.SIGINT and self.from_terminal)


class blocked_in_new_threads:
    """``with blocked_in_new_threads():`` threads started inside the block
    start with FORWARDED blocked, so a signal meant for a run's signalfd is
    never taken by one of them.  (A class rather than a
    contextlib.contextmanager: a run needs nothing else of contextlib.)"""

    def __enter__(self) -> None:
        self._old = signal.pthread_sigmask(signal.SIG_BLOCK, FORWARDED)

    def __exit__(self, *exc) -> None:
        signal.pthread_sigmask(signal.SIG_SETMASK, self._old)


def unblock_in_child() -> None:
    """preexec_fn for subprocesses started while FORWARDED is blocked: exec
    keeps the signal mask, and the program must get its signals."""
    signal.pthread_sigmask(signal.SIG_UNBLOCK, FORWARDED)


def forwarded_blocked() -> bool:
    """Whether the calling thread has any of FORWARDED blocked (its children
    would inherit that)."""
    return bool(set(signal.pthread_sigmask(signal.SIG_BLOCK, [])) & set(FORWARDED))


class SignalRelay:
    """For the duration of a ``with`` block in the main thread: FORWARDED are
    blocked and read from ``fileno()`` (poll it; then ``read()``).  What is
    still pending at the end is read and dropped, so a stop signal that
    arrived as the run ended does not kill the caller afterwards."""

    def __init__(self, stop_timeout: float = DEFAULT_STOP_TIMEOUT) -> None:
        if not stop_timeout >= 0:
            raise ValueError(f"stop_timeout must be >= 0 seconds, not {stop_timeout!r}")
        self.stop_timeout = stop_timeout
        self._fd = -1
        self._old_mask: set | None = None
        self.first_stop: Caught | None = None  # the first stop signal received

    def __enter__(self) -> Self:
        if threading.current_thread() is not threading.main_thread():
            raise RuntimeError("signals can only be relayed by the main thread "
                               "(forward_signals=True needs the main thread)")
        from picoproc.native import ffi, lib

        self._old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, FORWARDED)
        fd = lib.pico_signalfd(ffi.new("int[]", [int(s) for s in FORWARDED]), len(FORWARDED))
        if fd < 0:
            signal.pthread_sigmask(signal.SIG_SETMASK, self._old_mask)
            raise OSError(-fd, f"signalfd: {os.strerror(-fd)}")
        self._fd = fd
        return self

    def fileno(self) -> int:
        return self._fd

    def read(self) -> list[Caught]:
        out = []
        while True:
            try:
                data = os.read(self._fd, _SIGINFO_SIZE * 16)
            except BlockingIOError:
                return out
            for off in range(0, len(data) - _SIGINFO_SIZE + 1, _SIGINFO_SIZE):
                signo, _errno, code, pid = _SIGINFO.unpack_from(data, off)
                caught = Caught(signo, code, pid)
                if caught.stops and self.first_stop is None:
                    self.first_stop = caught
                out.append(caught)

    def __exit__(self, *exc) -> None:
        if self._fd >= 0:
            self.read()
            os.close(self._fd)
            self._fd = -1
        if self._old_mask is not None:
            signal.pthread_sigmask(signal.SIG_SETMASK, self._old_mask)
            self._old_mask = None
