"""How a run ended: the one result shape every backend returns, its JSON
form, and the exit statuses ``picoproc run`` derives from it.

``Result`` is what ``picoproc.api.Sandbox.run`` returns for the ``pico``
backend and what every comparison backend returns (picoproc.backends), so a
benchmark, a grader or the CLI reads one shape whatever ran the program.
It follows ``subprocess.CompletedProcess`` where the two overlap
(``args``, ``returncode``, ``stdout``, ``stderr``, ``check_returncode()``)
and adds what a sandbox knows: which limit ended the run, the resource usage,
the counts of mediated calls and the refused ones.

Exit statuses (``Result.exit_status``, what ``picoproc run`` exits with) are
chosen so that picoproc's own outcomes cannot be read as an ordinary exit of
the program, following ``docker run`` and ``timeout(1)``:

    N        the program exited with status N (and no limit was reached)
    128+N    the program died of signal N (as a shell reports it)
    124      the wall-time limit ended the run        (timeout(1)'s status)
    123      the output limit was reached
    122      the CPU-time limit ended the run
    121      the memory limit ended the run (OOM kill)
    120      the process-count limit refused a fork
    119      another limit ended the run
    125      picoproc itself failed: usage, manifest, internal error (docker run's)
    126      the program was found but cannot be executed (docker run's, the shell's)
    127      the program was not found                (docker run's, the shell's)

A program may exit 119-127 itself; the JSON result (``limit``, ``error``,
``exit_code``) and the one line on stderr always tell the cases apart.

JSON (``Result.to_json()``, ``picoproc run --json FILE``) carries
``"schema": "picoproc.result"`` and ``"version"``; within a version fields
are only ever added (new limits, usage and counts included), never renamed
or removed.  docs/RESULT.md documents every field.
"""

from __future__ import annotations

import os
import signal as signal_mod
from collections.abc import Mapping, Sequence
TYPE_CHECKING = False  # typing's own flag, without importing typing on every run
if TYPE_CHECKING:
    from typing import Any

from picoproc import records
from picoproc.errors import PicoprocError

SCHEMA = "picoproc.result"
SCHEMA_VERSION = 1

EXIT_PICOPROC_ERROR = PicoprocError.exit_status  # 125: usage, manifest/config, backend, internal
EXIT_CANNOT_EXECUTE = 126  # found, but not executable (permission, noexec, directory, format)
EXIT_NOT_FOUND = 127
EXIT_OTHER_LIMIT = 119
# limit name -> exit status; a limit a later version adds takes the next free
# status below 119 or, until it has one, EXIT_OTHER_LIMIT.
LIMIT_EXIT_STATUS: dict[str, int] = {
    "wall_time": 124,
    "output": 123,
    "cpu_time": 122,
    "memory": 121,
    "pids": 120,
}
# How much of the list of refused calls the JSON result repeats (the audit
# file has all of them); the total is always given.
JSON_DENIALS_SHOWN = 100

_LIMIT_TEXT = {
    "wall_time": "wall-time limit reached",
    "output": "output limit reached",
    "cpu_time": "CPU-time limit reached",
    "memory": "memory limit reached (OOM kill)",
    "pids": "process-count limit reached (a fork was refused)",
}


def signal_name(sig: int) -> str:
    try:
        return signal_mod.Signals(sig).name
    except ValueError:
        return f"signal {sig}"


@records.record
class Usage:
    """What the run used.  Fields a backend cannot measure stay at their zero
    value or None (documented per backend in docs/BACKENDS.md)."""

    wall_time_s: float = 0.0
    cpu_user_s: float = 0.0  # the run's processes, as wait4() reports them
    cpu_system_s: float = 0.0
    max_rss_kb: int = 0  # the largest single process
    memory_peak_bytes: int | None = None  # the whole run, from its cgroup where there is one
    output_bytes: int = 0  # stdout + stderr bytes the program wrote (where counted)
    # pico: CPU time the monitor spent serving the program (its calls, its
    # udp: relays), counted against the CPU-time limit with the program's own.
    monitor_cpu_s: float = 0.0
    # The most tasks (processes and threads) of the run alive at once, from
    # its cgroup (None without one).
    tasks_peak: int | None = None
    # Scratch tmpfs use, by guest path: {"size_bytes", "used_bytes",
    # "used_inodes" (at the end), "peak_bytes", "peak_inodes" (sampled while
    # the run lasted when it was traced, else None)}; None: not measured.
    scratch: dict[str, dict[str, int | None]] | None = None


@records.record
class Result:
    """How one run ended and what it used (every backend, one shape).

    ``returncode`` follows subprocess: the exit code, or -N for signal N.
    ``exit_status`` is what ``picoproc run`` exits with (see the module
    docstring); ``limit`` names the limit that ended or cut the run short.
    """

    argv: list[str]
    backend: str = "pico"
    mode: str | None = None  # pico: "libos" or "raw"
    exit_code: int | None = None  # the program's exit status, when it exited
    signal: int | None = None  # the signal that ended it, when one did
    limit: str | None = None  # wall_time, output, cpu_time, memory, pids (LIMIT_EXIT_STATUS)
    stdout: bytes | str | None = None  # captured output; None when relayed
    stderr: bytes | str | None = None
    usage: Usage = records.field(default_factory=Usage)
    # Calls the run made, by class: mediated (served / allowed / denied /
    # errors); None where a backend cannot count a class.
    counts: dict[str, int | None] = records.field(default_factory=dict)
    denials: list[dict] = records.field(default_factory=list)  # refused calls (audit records)
    # pico: its audit records (the first 10000); allowed calls have one only
    # when an audit sink asked for them (they are always counted in `counts`).
    audit: list[dict] = records.field(default_factory=list)
    # pico: audit records not in ``audit`` (past its bound, or lost when the
    # program flooded the monitor faster than they were drained).
    audit_dropped: int = 0
    audit_error: str | None = None  # pico: why the --audit file stopped, if it did
    cleanup_error: str | None = None  # pico: what was left to clean up after the run (retried later)
    notes: list[str] = records.field(default_factory=list)  # what a reader must also know
    enforcement: Mapping[str, str] = records.field(default_factory=dict)  # limit -> mechanism
    unsupported: list[str] = records.field(default_factory=list)  # Linux calls answered ENOSYS
    identity: dict | None = None  # {"uid", "gid", "why"}: whom file operations ran as
    # Set when the run never started: {"status": 125|126|127, "message": "..."}.
    error: dict | None = None
    stopped_by: int | None = None  # a signal picoproc forwarded before it ended the run
    pid: int | None = None  # the program's host pid (pico: the first guest process)
    # raw mode, killed by SIGSYS: the call outside the ABI ("bpf (321)"), when
    # the kernel's seccomp log could be read; "" when it could not.
    fatal_syscall: str | None = None
    # The manifest the run was given (pico): what denial_summary explains
    # the refusals against.  Not part of the JSON document.
    manifest: Any = records.field(default=None, repr=False, compare=False)
    _denial_summary: list | None = records.field(default=None, init=False, repr=False,
                                                     compare=False)

    # -- subprocess.CompletedProcess compatibility --------------------------------

    @property
    def args(self) -> list[str]:
        return self.argv

    @property
    def returncode(self) -> int | None:
        """subprocess's convention: the exit code, -N for signal N, None if
        the program never started."""
        if self.signal is not None:
            return -self.signal
        return self.exit_code

    def check_returncode(self) -> None:
        """Raises RunError (a CalledProcessError) unless the program exited 0
        with no limit reached."""
        if self.error is not None or self.limit is not None or self.returncode != 0:
            from picoproc.runerror import run_error

            raise run_error(self)

    # -- how it ended ---------------------------------------------------------------

    @property
    def exit_status(self) -> int:
        """What ``picoproc run`` exits with (the module docstring lists them)."""
        if self.error is not None:
            return int(self.error.get("status", EXIT_PICOPROC_ERROR))
        if self.limit is not None:
            return LIMIT_EXIT_STATUS.get(self.limit, EXIT_OTHER_LIMIT)
        return self.status

    @property
    def status(self) -> int:
        """The shell's convention: the exit code, or 128+N for signal N."""
        if self.signal is not None:
            return 128 + self.signal
        return self.exit_code if self.exit_code is not None else 255

    @property
    def timed_out(self) -> bool:
        return self.limit == "wall_time"

    @property
    def reason(self) -> str:
        """One line: how the run ended."""
        if self.error is not None:
            return str(self.error.get("message", "could not start"))
        ended = self._ended()
        if self.limit is None:
            return ended
        text = _LIMIT_TEXT.get(self.limit, f"{self.limit} limit reached")
        if self.signal is not None:
            return f"killed: {text}"
        return f"{text}; the program then {ended}"

    def _ended(self) -> str:
        if self.signal is None:
            return f"exited with status {self.exit_code}"
        name = signal_name(self.signal)
        if self.signal == signal_mod.SIGSYS and self.mode == "raw":
            if self.fatal_syscall:
                return f"killed by {name}: {self.fatal_syscall} is outside the ABI"
            where = f", pid={self.pid}" if self.pid else ""
            return (f"killed by {name}: a system call outside the ABI (the kernel's log names "
                    f"it: audit type=1326{where})")
        if self.stopped_by is not None and self.signal == signal_mod.SIGKILL:
            return f"killed by {name}: still running at the end of the stop timeout after " \
                f"{signal_name(self.stopped_by)}"
        return f"killed by {name}"

    # -- what the manifest refused ----------------------------------------------------

    @property
    def denial_summary(self) -> list:
        """One ``picoproc.denials.Denial`` per distinct guest path or network
        address the manifest refused: the rule that refused it (hidden path,
        read-only mount, not mounted, network not granted, ...), the manifest
        key and the flag that would grant it.  Empty without audit records or
        a manifest (comparison backends)."""
        if self._denial_summary is None:
            from picoproc.denials import summarize

            self._denial_summary = summarize(self.audit or self.denials, self.manifest) \
                if (self.denials or self.audit) else []
        return self._denial_summary

    @property
    def unsupported_counts(self) -> dict[str, int]:
        """{Linux call: times the library OS answered it ENOSYS}."""
        if not self.audit:
            return {}
        from picoproc.denials import unsupported_counts

        return unsupported_counts(self.audit)

    def denial_report(self) -> str | None:
        """What ``picoproc run`` prints on stderr at the end of a run that had
        denials or unsupported calls (None: nothing to report)."""
        if not (self.denials or self.audit):
            return None  # what the run refused or did not implement is in these
        from picoproc.denials import format_summary

        return format_summary(self.denial_summary, self.unsupported_counts)

    # -- older attribute names (kept: they cost nothing) -------------------------------

    @property
    def calls(self) -> dict:
        return self.counts

    @property
    def wall_time_s(self) -> float:
        return self.usage.wall_time_s

    @property
    def cpu_user_s(self) -> float:
        return self.usage.cpu_user_s

    @property
    def cpu_system_s(self) -> float:
        return self.usage.cpu_system_s

    @property
    def monitor_cpu_s(self) -> float:
        return self.usage.monitor_cpu_s

    @property
    def max_rss_kb(self) -> int:
        return self.usage.max_rss_kb

    @property
    def memory_peak_bytes(self) -> int | None:
        return self.usage.memory_peak_bytes

    @property
    def output_bytes(self) -> int:
        return self.usage.output_bytes

    @property
    def rusage(self) -> dict[str, float]:
        """wait4()'s numbers as the peers' runner reports them."""
        return {"ru_utime": self.usage.cpu_user_s, "ru_stime": self.usage.cpu_system_s,
                "ru_maxrss": float(self.usage.max_rss_kb)}

    # -- JSON -----------------------------------------------------------------------------

    def to_json(self, *, audit: bool = False, output: bool = True) -> dict:
        """The documented JSON document (docs/RESULT.md).  ``audit``: include
        every audit record (the CLI leaves them to ``--audit FILE``);
        ``output``: include captured stdout/stderr (as text)."""
        denials = [describe_record(r) for r in self.denials[:JSON_DENIALS_SHOWN]]
        doc: dict[str, Any] = {
            "schema": SCHEMA,
            "version": SCHEMA_VERSION,
            "backend": self.backend,
            "mode": self.mode,
            "argv": list(self.argv),
            "started": self.error is None,
            "exit_status": self.exit_status,
            "returncode": self.returncode,
            "exit_code": self.exit_code,
            "signal": self.signal,
            "signal_name": signal_name(self.signal) if self.signal is not None else None,
            "limit": self.limit,
            "reason": self.reason,
            "error": dict(self.error) if self.error is not None else None,
            "usage": records.asdict(self.usage),
            "counts": dict(self.counts),
            "denials": denials,
            "denials_total": len(self.denials),
            "audit_records": len(self.audit),
            "audit_dropped": self.audit_dropped,
            "audit_error": self.audit_error,
            "cleanup_error": self.cleanup_error,
            "unsupported": list(self.unsupported),
            "unsupported_counts": self.unsupported_counts,
            "denial_summary": [d.to_json() for d in self.denial_summary],
            "enforcement": dict(self.enforcement),
            "identity": dict(self.identity) if self.identity else None,
            "pid": self.pid,
            "notes": list(self.notes),
        }
        if self.stopped_by is not None:
            doc["stopped_by"] = signal_name(self.stopped_by)
        if self.fatal_syscall is not None:
            doc["fatal_syscall"] = self.fatal_syscall
        if output:
            doc["stdout"] = _text(self.stdout)
            doc["stderr"] = _text(self.stderr)
        if audit:
            doc["audit"] = [describe_record(r) for r in self.audit]
        return doc

    def to_dict(self) -> dict:
        """Kept for older callers: the JSON document with every audit record."""
        return self.to_json(audit=True)

    @classmethod
    def failed_start(cls, argv: Sequence[str], backend: str, status: int, message: str, *,
                     mode: str | None = None) -> Result:
        """The result of a run that never started (JSON is written for it too)."""
        return cls(argv=[os.fsdecode(a) for a in argv], backend=backend, mode=mode,
                   error={"status": status, "message": message})


def _text(data: bytes | str | None) -> str | None:
    if data is None or isinstance(data, str):
        return data
    return data.decode("utf-8", "replace")


# ---------------------------------------------------------------------------
# check=True: RunError and RunTimeout are subprocess's exception types too,
# so they live in picoproc.runerror, imported (with subprocess, and through
# it locale and selectors) only when one is asked for: a run that does not
# fail a check needs none of it.


def __getattr__(name: str):
    if name in ("RunError", "RunTimeout", "run_error"):
        from picoproc import runerror

        return getattr(runerror, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# ---------------------------------------------------------------------------
# Audit records for people: flags and modes by name


def _flag_names(value: int, names: Sequence[tuple[int, str]], zero: str = "0") -> str:
    out = []
    rest = value
    for bit, name in names:
        if bit and rest & bit == bit:
            out.append(name)
            rest &= ~bit
    if rest:
        out.append(hex(rest))
    return "|".join(out) or zero


PICO_OPEN_EXEC = 0x40000000
# Composite flags first, so O_SYNC is not shown as O_DSYNC|0x100000.
_OPEN_BITS = [
    (0o20200000, "O_TMPFILE"), (0o4010000, "O_SYNC"), (0o100, "O_CREAT"), (0o200, "O_EXCL"),
    (0o400, "O_NOCTTY"), (0o1000, "O_TRUNC"), (0o2000, "O_APPEND"), (0o4000, "O_NONBLOCK"),
    (0o10000, "O_DSYNC"), (0o20000, "O_ASYNC"), (0o40000, "O_DIRECT"), (0o100000, "O_LARGEFILE"),
    (0o200000, "O_DIRECTORY"), (0o400000, "O_NOFOLLOW"), (0o1000000, "O_NOATIME"),
    (0o2000000, "O_CLOEXEC"), (0o10000000, "O_PATH"), (PICO_OPEN_EXEC, "PICO_OPEN_EXEC"),
]
_ACCESS_MODES = {0: "O_RDONLY", 1: "O_WRONLY", 2: "O_RDWR", 3: "O_ACCMODE"}
_AT_BITS = [(0x100, "AT_SYMLINK_NOFOLLOW"), (0x200, "AT_REMOVEDIR"), (0x400, "AT_SYMLINK_FOLLOW"),
            (0x800, "AT_NO_AUTOMOUNT"), (0x1000, "AT_EMPTY_PATH")]
_ACCESS_AT_BITS = [(0x100, "AT_SYMLINK_NOFOLLOW"), (0x200, "AT_EACCESS"), (0x1000, "AT_EMPTY_PATH")]
_RENAME_BITS = [(1, "RENAME_NOREPLACE"), (2, "RENAME_EXCHANGE"), (4, "RENAME_WHITEOUT")]
_ACCESS_BITS = [(4, "R_OK"), (2, "W_OK"), (1, "X_OK")]


def open_flags_text(flags: int) -> str:
    """``O_RDONLY|O_CLOEXEC|PICO_OPEN_EXEC`` for the open call's flags."""
    rest = flags & ~3
    mode = _ACCESS_MODES[flags & 3]
    if rest & 0o10000000:  # O_PATH ignores the access mode
        return _flag_names(rest, _OPEN_BITS)
    return "|".join([mode] + ([_flag_names(rest, _OPEN_BITS)] if rest else []))


# The audit record's "arg" for each mediated call (native/loop.c: rec.arg),
# as (key in the described record, how to show it).
_ARG_MEANING = {
    "open": ("flags", open_flags_text),
    "stat": ("flags", lambda v: _flag_names(v, _AT_BITS)),
    "access": ("mode", lambda v: _flag_names(v, _ACCESS_BITS, "F_OK")),
    "mkdir": ("mode", lambda v: f"{v:04o}"),
    "unlink": ("flags", lambda v: _flag_names(v, _AT_BITS)),
    "rename": ("flags", lambda v: _flag_names(v, _RENAME_BITS)),
    "link": ("flags", lambda v: _flag_names(v, _AT_BITS)),
    "chmod": ("mode", lambda v: f"{v:04o}"),
    "chown": ("uid", lambda v: -1 if v in (0xFFFFFFFF, -1) else v),
    "truncate": ("length", lambda v: v),
}


def describe_record(record: Mapping[str, Any]) -> dict:
    """An audit record for a reader: flags and modes by name instead of the
    raw ``arg`` number, the monitor-internal guest handle left out, and an
    unsupported call named."""
    out = {k: v for k, v in record.items() if k not in ("arg", "guest", "arg0", "linux_nr", "nr")}
    call = record.get("call")
    if "arg" in record:
        key, show = _ARG_MEANING.get(call, ("arg", lambda v: v))
        value = record["arg"]
        out[key] = show(value) if isinstance(value, int) else value
    if call in ("note_unsupported", "note_emulated"):
        from picoproc.abi.linux import SYSCALLS_BY_NR

        nr = record.get("linux_nr")
        out["syscall"] = SYSCALLS_BY_NR.get(nr, str(nr))
        if call == "note_unsupported":
            out["first_arg"] = record.get("arg0")
    elif call == "unknown" and "nr" in record:
        out["nr"] = record["nr"]
    return out
