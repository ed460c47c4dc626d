"""The Python API: ``Sandbox(manifest).run(argv)`` -> ``Result``.

This is the layer that composes the others for one run (the CLI is a thin
layer over it):

    manifest --> scratch tmpfs (picoproc.scratch) --+--> FsPolicy / NetPolicy
                                                     |        |
    spawn (namespaces, identity, limits; picoproc.spawn)      v
        library-OS loader or raw image  -- listener --> Monitor (C loop, shared)
    input feeder, output pump (counts bytes, enforces the output limit)
    wait (wall-time limit, relayed signals) --> Result (picoproc.result)

``run`` takes the arguments of ``subprocess.run`` where they mean the same
(``input``, ``stdin``, ``stdout``, ``stderr``, ``capture_output``, ``text``,
``encoding``, ``errors``, ``check``, ``timeout``) and returns the one
``Result`` shape every backend returns.

One Monitor (one C event loop) serves every picoprocess of this Python
process that runs as the same identity; each run registers its guest with it
and routes its audit records by guest handle.
"""

from __future__ import annotations

import errno
import functools
import math
import os
import pwd
import resource
import select
import signal as signal_mod
import stat as stat_mod
import threading
import time
from collections.abc import Callable, Sequence

from picoproc import manifest as manifest_mod
from picoproc import records
from picoproc.errors import PicoprocError
from picoproc.fspolicy import FsPolicy
from picoproc.manifest import Manifest
from picoproc.monitor import (
    AUDIT_FILE_LIMIT,
    GUEST_SECCOMP_FLAGS,
    AuditJsonlWriter,
    GuestArea,
    Monitor,
    MonitorError,
)
from picoproc.mounttable import MountTable
from picoproc.result import (
    EXIT_CANNOT_EXECUTE,
    EXIT_NOT_FOUND,
    Result,
    Usage,
)
from picoproc.scratch import make_scratch
from picoproc.signals import DEFAULT_STOP_TIMEOUT, SignalRelay, blocked_in_new_threads
from picoproc.spawn import (
    RawResult,
    SpawnConfig,
    Spawned,
    kill_picoprocess,
    spawn_picoprocess,
    wait_picoprocess,
)

__all__ = ["Identity", "ProgramNotExecutable", "ProgramNotFound", "Result", "RunError",
           "RunTimeout", "Sandbox", "SandboxError", "Usage", "resolve_identity", "run"]


def __getattr__(name: str):
    # check=True's exceptions, imported with subprocess when first asked for
    # (picoproc.runerror).
    if name in ("RunError", "RunTimeout"):
        from picoproc import runerror

        return getattr(runerror, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# Read from the guest's stdout/stderr pipes in chunks of this size.
_PUMP_CHUNK = 65536
# How often a run with a CPU-time limit adds up the CPU time charged to it.
_CPU_CHECK_S = 0.1
NOBODY = 65534


class SandboxError(PicoprocError):
    """The run could not be started; the message names the problem."""


class ProgramNotFound(SandboxError):
    """The program does not exist in the guest's view (``picoproc run``: 127)."""

    exit_status = EXIT_NOT_FOUND


class ProgramNotExecutable(SandboxError):
    """The program exists in the guest's view but cannot be executed: a
    directory, not executable by the guest, or on a noexec mount (126)."""

    exit_status = EXIT_CANNOT_EXECUTE


# --------------------------------------------------------------------------
# Whom the guest runs as


@records.record(frozen=True)
class Identity:
    """The host uid/gid the guest runs as (and the monitor's file operations
    for it: fsuid/fsgid, no supplementary groups), and why."""

    uid: int
    gid: int
    why: str

    def as_dict(self) -> dict:
        return {"uid": self.uid, "gid": self.gid, "why": self.why}


def _parse_user(user) -> tuple[int, int | None, str]:
    """(uid, gid or None, how it was written) from ``UID[:GID]``, a user
    name, or a (uid, gid) tuple."""
    if isinstance(user, tuple):
        if len(user) != 2:
            raise SandboxError(f"user: expected (uid, gid), got {user!r}")
        return int(user[0]), int(user[1]), f"{user[0]}:{user[1]}"
    if isinstance(user, int) and not isinstance(user, bool):
        return user, None, str(user)
    if not isinstance(user, str) or not user:
        raise SandboxError(f"--user: expected UID[:GID] or a user name, got {user!r}")
    name, _, group = user.partition(":")
    if name.isdigit():
        uid = int(name)
    else:
        try:
            uid = pwd.getpwnam(name).pw_uid
        except KeyError:
            raise SandboxError(f"--user {user}: no user {name!r} on this host "
                               "(give a numeric UID[:GID])") from None
    gid = None
    if group:
        if group.isdigit():
            gid = int(group)
        else:
            import grp

            try:
                gid = grp.getgrnam(group).gr_gid
            except KeyError:
                raise SandboxError(f"--user {user}: no group {group!r} on this host") from None
    return uid, gid, user


def _primary_gid(uid: int) -> int | None:
    try:
        return pwd.getpwuid(uid).pw_gid
    except KeyError:
        return None


def resolve_identity(manifest: Manifest, user=None) -> Identity:
    """Whom the guest runs as.  The rule (docs/ARCHITECTURE.md, README):

    * an unprivileged picoproc runs the guest as the invoking user, always;
    * as root, ``user`` (``--user UID[:GID]`` or a name) when given; without a
      GID the user's primary group from /etc/passwd, else the same number;
    * as root without ``user``: the owner of the writable mounts when they
      all belong to one user other than root (so ``-v ./out:/out:rw`` writes
      as the owner of ./out), else ``nobody`` (65534:65534).

    Never root: uid 0 or gid 0 is refused, because the monitor's file
    operations for the guest would then act as root on every mounted file."""
    own_uid, own_gid = os.geteuid(), os.getegid()
    if own_uid != 0:
        if user is None:
            return Identity(own_uid, own_gid, "the invoking user (picoproc is not root)")
        uid, gid, text = _parse_user(user)
        if uid != own_uid or gid not in (None, own_gid):
            raise SandboxError(f"--user {text}: picoproc runs the program as you "
                               f"({own_uid}:{own_gid}) unless it runs as root")
        return Identity(own_uid, own_gid, "--user (the invoking user)")
    if user is not None:
        uid, gid, text = _parse_user(user)
        if gid is None:
            gid = _primary_gid(uid)
            gid = uid if gid is None or gid == 0 else gid
        if uid == 0 or gid == 0:
            raise SandboxError(f"--user {text}: the program never runs as root (uid or gid 0): "
                               "the monitor would then open and write every mounted file as "
                               "root; give an unprivileged UID[:GID]")
        if not (0 < uid < 2**32 - 1 and 0 < gid < 2**32 - 1):
            raise SandboxError(f"--user {text}: uid and gid must be in 1..4294967294")
        return Identity(uid, gid, "--user")
    owners = set()
    for m in manifest.mounts:
        if m.writable:
            try:
                st = os.stat(m.host)
            except OSError:
                continue
            owners.add((m.guest, st.st_uid, st.st_gid))
    uids = {uid for _, uid, _ in owners}
    if len(uids) == 1 and 0 not in uids:
        guests = sorted(g for g, _, _ in owners)
        uid = uids.pop()
        gids = {gid for _, _, gid in owners if gid != 0}
        gid = gids.pop() if len(gids) == 1 else (_primary_gid(uid) or NOBODY)
        if gid == 0:
            gid = NOBODY
        return Identity(uid, gid, f"owner of the writable mount{'s' if len(guests) > 1 else ''} "
                                  f"{', '.join(guests)}")
    return Identity(NOBODY, NOBODY, "nobody (picoproc is root)")


# Audit records a run keeps in memory for its Result (the first ones; the
# rest are counted in Result.audit_dropped, and still reach an audit file):
# a guest that floods the monitor with calls must not grow the monitor.
AUDIT_KEEP = 10000


class _AuditBucket:
    """One run's records: the first ``keep`` of them, and of its denials."""

    def __init__(self, keep: int) -> None:
        self.keep = keep
        self.records: list[dict] = []
        self.denials: list[dict] = []
        self.dropped = 0

    def extend(self, recs: list[dict]) -> None:
        room = self.keep - len(self.records)
        self.records.extend(recs[:room])
        self.dropped += max(len(recs) - room, 0)
        if len(self.denials) < self.keep:
            self.denials.extend([r for r in recs if r["decision"] == "deny"][: self.keep - len(self.denials)])


class _AuditRouter:
    """Sends each audit record to the run whose guest made the call."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._buckets: dict[int, _AuditBucket] = {}
        self._sinks: dict[int, Callable[[list[dict]], None]] = {}
        # Records of a guest whose run has not claimed its handle yet: the
        # guest may call before Sandbox.run learns the handle.
        self._unclaimed: dict[int, _AuditBucket] = {}

    def open(self, handle: int, sink: Callable[[list[dict]], None] | None,
             keep: int = AUDIT_KEEP) -> None:
        with self._lock:
            bucket = _AuditBucket(keep)
            early = self._unclaimed.pop(handle, None)
            if early is not None:
                bucket.extend(early.records)
                bucket.dropped += early.dropped
            self._buckets[handle] = bucket
            if sink is not None:
                self._sinks[handle] = sink
                if early is not None and early.records:
                    sink(early.records)

    def dispatch(self, records: list[dict]) -> None:
        by_guest: dict[int, list[dict]] = {}
        for rec in records:
            by_guest.setdefault(rec["guest"], []).append(rec)
        with self._lock:
            for handle, recs in by_guest.items():
                bucket = self._buckets.get(handle)
                if bucket is None:
                    bucket = self._unclaimed.setdefault(handle, _AuditBucket(AUDIT_KEEP))
                bucket.extend(recs)
                sink = self._sinks.get(handle)
                if sink is not None:
                    sink(recs)

    def close(self, handle: int) -> _AuditBucket:
        with self._lock:
            self._sinks.pop(handle, None)
            self._unclaimed.pop(handle, None)
            return self._buckets.pop(handle, None) or _AuditBucket(0)


_shared_lock = threading.Lock()
_shared: dict[tuple[int, int], tuple[Monitor, _AuditRouter]] = {}


# The monitor holds ~20 fds for every run (its mounts' directories, the
# run's pipes, the guest's listener): past ~50 runs at once the usual soft
# limit of 1024 would refuse the next one.
_FD_LIMIT = 1 << 16


def _raise_fd_limit() -> None:
    """Raises this process's soft fd limit towards its hard limit (as a
    service manager would for a server that does not use select())."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = _FD_LIMIT if hard == resource.RLIM_INFINITY else min(hard, _FD_LIMIT)
    if soft != resource.RLIM_INFINITY and soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


def shared_monitor(identity: tuple[int, int] | None = None) -> tuple[Monitor, _AuditRouter]:
    """The process-wide monitor for guests running as ``identity`` (uid, gid;
    default: the default guest identity), started on first use, and its
    audit router.  The loop's thread does every file operation as that
    identity, so each identity has its own."""
    from picoproc.monitor import guest_identity

    if identity is None:
        identity = guest_identity()[:2]
    key = (int(identity[0]), int(identity[1]))
    with _shared_lock:
        entry = _shared.get(key)
        if entry is None:
            _raise_fd_limit()
            router = _AuditRouter()
            groups = guest_identity()[2] if key == guest_identity()[:2] else ()
            monitor = Monitor(identity=(key[0], key[1], groups), audit_sink=router.dispatch)
            with blocked_in_new_threads():
                monitor.start()
            entry = _shared[key] = (monitor, router)
        return entry


def guest_to_host(manifest: Manifest, guest_path: str) -> str | None:
    """The host path a guest path shows under the manifest's mounts (not
    tmpfs, not hidden), or None.  Only for locating the program before the
    run: the monitor resolves every access itself."""
    return MountTable.of(manifest).visible_host_path(guest_path)


def resolve_guest_program(manifest: Manifest, prog: str) -> str:
    """PROG as a guest path: absolute as given, relative against the guest
    cwd if it has a slash, else searched on the manifest's PATH
    (ProgramNotFound if it is on none of its directories)."""
    if not prog:
        raise ProgramNotFound("no program given")
    if prog.startswith("/"):
        return prog
    if "/" in prog:
        return os.path.normpath(os.path.join(manifest.cwd, prog))
    path = dict(manifest.env).get("PATH", "/usr/local/bin:/usr/bin:/bin")
    for directory in path.split(":"):
        if not directory.startswith("/"):
            continue
        candidate = os.path.join(directory, prog)
        host = guest_to_host(manifest, candidate)
        if host and os.path.isfile(host) and os.access(host, os.X_OK):
            return candidate
    hint = ""
    if " " in prog:
        hint = (" (the program name contains a space: give argv as a list, "
                f"e.g. {prog.split()!r}, or run it through a shell: ['sh', '-c', ...])")
    raise ProgramNotFound(f"{prog}: not found on the guest's PATH ({path}){hint}")


def check_guest_program(manifest: Manifest, guest_path: str, identity: Identity,
                        shown_as: str | None = None) -> None:
    """Explains, before anything starts, why the loader would refuse the
    program: ProgramNotFound or ProgramNotExecutable with the hint a user
    needs.  It reads the host file the manifest shows there; the run itself
    is still decided by the monitor, with the guest's identity."""
    name = shown_as or guest_path
    if manifest.is_hidden(guest_path):
        raise ProgramNotFound(f"{name}: hidden by the manifest (it is refused in the guest)")
    table = MountTable.of(manifest)
    mount = table.mount_of(guest_path)
    host = table.host_path(guest_path)
    if mount is None or isinstance(mount, manifest_mod.Tmpfs):
        where = (f"{guest_path} is in the tmpfs {mount.guest}, empty when the run starts"
                 if mount is not None else f"no mount of the manifest shows {guest_path}")
        raise ProgramNotFound(f"{name}: no such file in the guest ({where})")
    try:
        st = os.stat(host)
    except OSError:
        if os.path.lexists(host):
            return  # a symbolic link the host cannot follow: the guest's view decides
        raise ProgramNotFound(f"{name}: no such file in the guest ({guest_path}, host "
                              f"{host})") from None
    if stat_mod.S_ISDIR(st.st_mode):
        raise ProgramNotExecutable(f"{name}: is a directory")
    if not stat_mod.S_ISREG(st.st_mode):
        raise ProgramNotExecutable(f"{name}: not a regular file")
    if not mount.exec:
        raise ProgramNotExecutable(
            f"{name}: on a noexec mount ({mount.guest} from {mount.host}); "
            f"mount it without noexec to run programs from it")
    if identity.uid == st.st_uid:
        bit = stat_mod.S_IXUSR
    elif identity.gid == st.st_gid:
        bit = stat_mod.S_IXGRP
    else:
        bit = stat_mod.S_IXOTH
    if not st.st_mode & bit:
        raise ProgramNotExecutable(
            f"{name}: permission denied: host file {host} is mode {stat_mod.filemode(st.st_mode)} "
            f"owned by {st.st_uid}:{st.st_gid}, not executable by the guest "
            f"({identity.uid}:{identity.gid}, {identity.why})")
    interpreter = _interpreter_of(host)
    if interpreter and interpreter.startswith("/"):
        # Hidden entries are left to the loader: checking them costs more
        # than the rest of this function, and no default hides one.
        shown = table.host_path(interpreter)
        if shown is None or not os.path.lexists(shown):
            raise ProgramNotFound(f"{name}: its interpreter {interpreter} is not in the guest "
                                  "(no mount shows it)")


def _interpreter_of(host: str) -> str | None:
    """The ELF interpreter (PT_INTERP) or the #! interpreter of a host file;
    None when it has none or cannot be read."""
    from picoproc.image import ImageError, inspect_elf

    try:
        fd = os.open(host, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        head = os.pread(fd, 256, 0)
        if head.startswith(b"#!"):
            line = head[2:].split(b"\n", 1)[0].strip()
            return os.fsdecode(line.split()[0]) if line else None
        return inspect_elf(host, fd).interpreter
    except (ImageError, OSError):
        return None
    finally:
        os.close(fd)


class _OutputPump:
    """Relays (or captures) the guest's stdout and stderr, counting bytes; past
    ``limit`` bytes it calls ``on_limit`` once and stops passing output on.

    No thread of its own for captured output: the thread that waits for the
    run reads it (``_wait_and_pump``), because starting and joining a thread
    is a noticeable part of a short run's start-up (docs/PERFORMANCE.md,
    "Start-up").  Relayed output is written to host fds that may
    block (a full pipe nobody reads), and a blocked write must not hold up
    the wall-time limit: the first time the guest writes, the fds are handed
    to a thread that relays them, as before; a guest that writes nothing
    never pays for that thread."""

    def __init__(self, fds: Sequence[int], sinks: Sequence[int | None], limit: int | None,
                 on_limit: Callable[[], None]) -> None:
        self.fds = list(fds)
        self._sinks = list(sinks)  # an fd to relay to, or None to capture
        self.relays = any(sink is not None for sink in self._sinks)
        self.captured = [bytearray() for _ in fds]
        self.total = 0
        self.limit_hit = False
        self._limit = limit
        self._on_limit = on_limit
        self._open = set(range(len(self.fds)))  # indexes not yet at EOF
        self._thread: threading.Thread | None = None

    def _emit(self, index: int, data: bytes) -> None:
        sink = self._sinks[index]
        if sink is None:
            self.captured[index] += data
            return
        view = memoryview(data)
        while view:
            try:
                n = os.write(sink, view)
            except BrokenPipeError:
                return  # our reader went away: keep draining the guest
            view = view[n:]

    def read(self, index: int) -> bool:
        """Reads one chunk of fds[index]; False at EOF (the fd is done)."""
        data = os.read(self.fds[index], _PUMP_CHUNK)
        if not data:
            self._open.discard(index)
            return False
        if self._limit is not None and self.total + len(data) > self._limit:
            data = data[: max(self._limit - self.total, 0)]
            self._emit(index, data)
            self.total += len(data)
            if not self.limit_hit:
                self.limit_hit = True
                self._on_limit()
            return True
        self.total += len(data)
        self._emit(index, data)
        return True

    def start_thread(self) -> None:
        """Hands every fd not yet at EOF to a relaying thread."""
        self._thread = threading.Thread(target=self._run, name="picoproc-output", daemon=True)
        with blocked_in_new_threads():
            self._thread.start()

    def _run(self) -> None:
        import selectors

        sel = selectors.DefaultSelector()
        for i in sorted(self._open):
            sel.register(self.fds[i], selectors.EVENT_READ, i)
        while self._open:
            for key, _ in sel.select():
                if not self.read(key.data):
                    sel.unregister(key.fd)
        sel.close()

    def join(self) -> None:
        """Waits for the relaying thread, if one was started."""
        if self._thread is not None:
            self._thread.join()

    def finish(self) -> None:
        """After the guest is gone (every writer closed): relays what is
        left, as the relaying thread would have, and waits for that thread."""
        if self._thread is not None:
            self._thread.join()
            return
        if self.relays:
            for i in sorted(self._open):
                while self.read(i):
                    pass


class _InputFeeder:
    """Writes ``input`` into the guest's stdin pipe as the pipe drains, from
    the waiting thread (no thread of its own), then closes it so the guest
    sees EOF.  A guest that closes its stdin early ends the feeding."""

    def __init__(self, fd: int, data: bytes) -> None:
        os.set_blocking(fd, False)
        self.fd = fd
        self._view = memoryview(data)

    def write_some(self) -> bool:
        """Writes what the pipe takes; True once everything is written (or
        the reader went away) and the fd is closed."""
        try:
            while self._view:
                n = os.write(self.fd, self._view[:_PUMP_CHUNK])
                self._view = self._view[n:]
        except BlockingIOError:
            return False
        except BrokenPipeError:
            pass
        self.close()
        return True

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


@records.record
class _Ending:
    """How the waiting ended, besides the guest's own status."""

    timed_out: bool = False
    cpu_time: bool = False  # the CPU time charged to it reached the limit (_CpuWatch)
    stopped_by: int | None = None  # the stop signal after which the run was killed
    forwarded: list[int] = records.field(default_factory=list)


class _CpuWatch:
    """The CPU time charged to a run while it runs: what its processes used
    (from its cgroup, where the cgroup can tell; otherwise each process is
    held to the limit by RLIMIT_CPU alone) plus what the monitor spent
    serving it."""

    def __init__(self, limit_s: float, monitor: Monitor, handle: int, spawned: Spawned) -> None:
        self.limit_ns = int(limit_s * 1e9)
        self._monitor = monitor
        self._handle = handle
        cgroup = spawned.cgroup
        self._cgroup = cgroup if cgroup is not None and cgroup.counts_cpu else None

    def used_ns(self) -> int:
        used = self._monitor.guest_stats(self._handle)["monitor_cpu_ns"]
        if self._cgroup is not None:
            used += self._cgroup.cpu_usage_ns() or 0
        return used

    def exceeded(self) -> bool:
        return self.used_ns() >= self.limit_ns


class _ScratchSampler:
    """Samples the use of a run's scratch tmpfs while it lasts, for its peak
    (a tmpfs keeps no high-water mark).  Every SCRATCH_SAMPLE_S seconds: a
    build that fills and empties a tmpfs faster than that is under-counted,
    which is why picoproc learn adds a margin."""

    SCRATCH_SAMPLE_S = 0.002

    def __init__(self, scratches) -> None:
        self._scratches = list(scratches)
        self.peaks: dict[str, list[int]] = {g: [0, 0] for g, _ in self._scratches}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="picoproc-scratch", daemon=True)
        self._thread.start()

    def sample(self) -> None:
        for guest, scratch in self._scratches:
            try:
                used, inodes = scratch.used()
            except (OSError, ValueError):
                continue  # closed under us at the end of the run
            peak = self.peaks[guest]
            peak[0] = max(peak[0], used)
            peak[1] = max(peak[1], inodes)

    def _loop(self) -> None:
        while not self._stop.wait(self.SCRATCH_SAMPLE_S):
            self.sample()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def _scratch_use(scratches, sampler: _ScratchSampler | None) -> dict | None:
    """Usage.scratch: each tmpfs's use at the end, and its sampled peak."""
    if not scratches:
        return None
    if sampler is not None:
        sampler.stop()
        sampler.sample()
    out = {}
    for guest, scratch in scratches:
        used, inodes = scratch.used()
        peak = sampler.peaks[guest] if sampler is not None else None
        out[guest] = {"size_bytes": scratch.size_bytes, "used_bytes": used, "used_inodes": inodes,
                      "peak_bytes": max(peak[0], used) if peak else None,
                      "peak_inodes": max(peak[1], inodes) if peak else None}
    return out


def _wait_and_pump(spawned: Spawned, pump: _OutputPump, wall: float | None, *,
                   feeder: _InputFeeder | None = None,
                   relay: SignalRelay | None = None,
                   cpu: _CpuWatch | None = None) -> tuple[RawResult, _Ending]:
    """Waits for the run while reading its output (see _OutputPump), feeding
    its input and passing on the signals ``relay`` catches; past ``wall``
    seconds, once ``cpu`` says the CPU time charged to it reached its limit,
    or ``relay.stop_timeout`` after a stop signal, kills it."""
    pidfd = os.pidfd_open(spawned.pid)
    ending = _Ending()
    try:
        poller = select.poll()
        poller.register(pidfd, select.POLLIN)
        reading = {}
        for i, fd in enumerate(pump.fds):
            poller.register(fd, select.POLLIN)
            reading[fd] = i
        if feeder is not None:
            if feeder.write_some():
                feeder = None
            else:
                poller.register(feeder.fd, select.POLLOUT)
        if relay is not None:
            poller.register(relay.fileno(), select.POLLIN)
        deadline = None if wall is None else time.monotonic() + wall
        stop_deadline = None
        cpu_check = None if cpu is None else time.monotonic() + _CPU_CHECK_S
        alive = True
        # Until the reaper has exited and both pipes are at EOF: the reaper
        # exits only once every process of its pid namespace is gone, so EOF
        # follows (as it did for the pump thread before).
        while alive or reading:
            timeout = None
            now = time.monotonic()
            if deadline is not None and deadline - now <= 0:
                ending.timed_out = True
                deadline = None
                kill_picoprocess(spawned)
                continue
            if stop_deadline is not None and stop_deadline - now <= 0:
                stop_deadline = None
                ending.stopped_by = relay.first_stop.signo
                kill_picoprocess(spawned)
                continue
            if cpu_check is not None and alive and cpu_check - now <= 0:
                cpu_check = now + _CPU_CHECK_S
                if cpu.exceeded():
                    ending.cpu_time = True
                    deadline = cpu_check = None
                    kill_picoprocess(spawned)
                continue
            pending = [d for d in (deadline, stop_deadline, cpu_check if alive else None) if d is not None]
            if pending:
                timeout = math.ceil((min(pending) - now) * 1000)
            for fd, events in poller.poll(timeout):
                if fd == pidfd:
                    alive = False
                    poller.unregister(pidfd)
                elif relay is not None and fd == relay.fileno():
                    for caught in relay.read():
                        # The terminal's own signals reached the program
                        # already: it is in picoproc's process group.
                        if alive and not caught.from_terminal:
                            try:
                                os.kill(spawned.pid, caught.signo)  # the reaper passes it on
                            except ProcessLookupError:
                                pass
                            ending.forwarded.append(caught.signo)
                        if caught.stops and stop_deadline is None and alive \
                                and ending.stopped_by is None and relay.first_stop is caught:
                            stop_deadline = time.monotonic() + relay.stop_timeout
                elif feeder is not None and fd == feeder.fd:
                    if feeder.write_some() or events & (select.POLLERR | select.POLLHUP):
                        poller.unregister(fd)
                        feeder.close()
                        feeder = None
                elif fd in reading:
                    if pump.relays and events & select.POLLIN:
                        for other in reading:
                            poller.unregister(other)
                        reading.clear()
                        pump.start_thread()
                    # Captured data, or a hang-up with nothing left (EOF:
                    # the read cannot block or write anything).
                    elif not pump.read(reading[fd]):
                        poller.unregister(fd)
                        del reading[fd]
    finally:
        os.close(pidfd)
        if feeder is not None:
            feeder.close()
    return wait_picoprocess(spawned), ending


# subprocess.PIPE, STDOUT and DEVNULL (a run takes subprocess's constants),
# without importing subprocess on every run.
_PIPE, _STDOUT, _DEVNULL = -1, -2, -3


def _stdin_fd(stdin, input_data) -> tuple[int, int, tuple[int, bytes] | None]:
    """(fd the guest reads, fd of ours to close once the guest has its copy
    or -1, and (pipe write end, bytes) to feed for ``input``)."""
    if input_data is not None:
        if stdin is not None:
            raise ValueError("stdin and input arguments may not both be used")
        r, w = os.pipe2(os.O_CLOEXEC)
        return r, r, (w, input_data)
    if stdin is None or stdin == _DEVNULL:
        fd = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        return fd, fd, None
    if stdin == _PIPE:
        raise ValueError("stdin=PIPE: a run has no Popen object to write to; pass the data as "
                         "input=")
    if isinstance(stdin, bool):
        raise TypeError(f"stdin must be an fd, a file or None, not {stdin!r}")
    if isinstance(stdin, int):
        return stdin, -1, None
    if hasattr(stdin, "fileno"):
        return stdin.fileno(), -1, None
    raise TypeError(f"stdin must be an fd, a file object or None, not {type(stdin).__name__} "
                    "(data goes in input=)")


def _output_sink(target, capture: bool, default: int) -> tuple[int | None, int]:
    """(fd to relay to or None to capture, fd to close afterwards or -1)."""
    if capture or target == _PIPE:
        return None, -1
    if target is None:
        return default, -1
    if target == _DEVNULL:
        fd = os.open(os.devnull, os.O_WRONLY | os.O_CLOEXEC)
        return fd, fd
    if target == _STDOUT:
        raise ValueError("stderr=STDOUT is not supported: give both the same fd instead")
    if isinstance(target, int) and not isinstance(target, bool):
        return target, -1
    if hasattr(target, "fileno"):
        if hasattr(target, "flush"):
            target.flush()
        return target.fileno(), -1
    raise TypeError(f"stdout/stderr must be an fd, a file object, None, PIPE or DEVNULL, "
                    f"not {type(target).__name__}")


def _as_argv(argv) -> list[str]:
    """subprocess's rule: a str (or path) is one program name; a sequence is
    the argv; bytes and path-like items are decoded."""
    if isinstance(argv, (str, bytes, os.PathLike)):
        return [os.fsdecode(argv)]
    out = []
    for item in argv:
        if isinstance(item, (str, bytes, os.PathLike)):
            out.append(os.fsdecode(item))
        else:
            raise TypeError(f"argv items must be str, bytes or path-like, not "
                            f"{type(item).__name__} ({item!r})")
    return out


class Sandbox:
    """Runs programs as picoprocesses under one manifest.

    ``raw=True`` runs a static, freestanding program under the filter alone
    (no library OS).  ``audit``: a JSONL file path, or a callable given each
    batch of this run's audit records.  ``user``: whom the program runs as
    (``"UID[:GID]"``, a user name or a (uid, gid) tuple; see
    resolve_identity for the rule when it is None).  ``trace``: also sample
    the scratch tmpfs use while the run lasts (``Usage.scratch`` peaks), and
    have the library OS report the first call of each Linux syscall it
    emulates in each program image (audit records ``note_emulated``): what
    picoproc.trace profiles.  ``any_host_network``: grant connects to every
    host address but loopback (picoproc learn --allow-net)."""

    def __init__(self, manifest: Manifest | None = None, *, raw: bool = False,
                 audit: str | os.PathLike | Callable[[list[dict]], None] | None = None,
                 user=None, audit_limit: int | None = AUDIT_FILE_LIMIT,
                 trace: bool = False, any_host_network: bool = False) -> None:
        self.manifest = manifest if manifest is not None else manifest_mod.default_manifest()
        self.raw = raw
        self.audit = audit
        self.user = user
        self.audit_limit = audit_limit  # bytes an audit file may hold (None: no bound)
        # Watch the run more closely, for picoproc trace and learn: the
        # scratch tmpfs use is sampled while it lasts (its peak), and the
        # library OS names the calls it emulates.
        self.trace = trace
        # Learning (picoproc learn --allow-net): TCP and UDP connects to any
        # host address but loopback and the wildcard, which stay the
        # program's own.  No manifest can say this.
        self.any_host_network = any_host_network

    def identity(self) -> Identity:
        return resolve_identity(self.manifest, self.user)

    def run(self, argv, *, input: bytes | str | None = None, stdin=None,
            capture: bool = False, capture_output: bool = False, text: bool = False,
            encoding: str | None = None, errors: str | None = None, check: bool = False,
            timeout: float | None = None, stdout=None, stderr=None,
            forward_signals: bool = False, stop_timeout: float = DEFAULT_STOP_TIMEOUT) -> Result:
        """Runs ``argv`` and waits for it, like ``subprocess.run``.

        input: bytes (or str with ``text``/``encoding``) the program reads
        on stdin.  stdin: an fd or file object it reads instead (default:
        an empty input).  capture / capture_output: collect stdout and
        stderr into the Result instead of relaying them to ``stdout`` /
        ``stderr`` (fds or file objects, default 1 and 2; PIPE captures
        that one stream, DEVNULL drops it).  text (or encoding / errors):
        captured output is str (undecodable bytes replaced unless
        ``errors`` says otherwise).  check: raise RunError (a
        subprocess.CalledProcessError) unless the program exited 0 and no
        limit was reached; RunTimeout (also a subprocess.TimeoutExpired)
        for the wall-time limit.  timeout: the wall-time limit in seconds
        (overrides the manifest's).  forward_signals: while the run lasts,
        SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1 and SIGUSR2 sent to this
        process are passed to the program (main thread only); the run is
        killed ``stop_timeout`` seconds after the first stop signal."""
        try:
            return self._run(argv, input, stdin, capture or capture_output, text, encoding, errors, check,
                             timeout, stdout, stderr, forward_signals, stop_timeout)
        except MemoryError:
            # Python itself could not allocate during the run (the monitor's
            # address space or memory is exhausted): one clear error, as an
            # ENOMEM from a system call is; the run's clean-up has run.
            raise MonitorError(errno.ENOMEM, f"the monitor's own memory, during the run: "
                                             f"{os.strerror(errno.ENOMEM)}") from None

    def _run(self, argv, input, stdin, capture: bool, text: bool, encoding, errors, check: bool, timeout,
             stdout, stderr, forward_signals: bool, stop_timeout: float) -> Result:
        argv = _as_argv(argv)
        if not argv:
            raise SandboxError("no program given")
        if forward_signals and threading.current_thread() is not threading.main_thread():
            raise RuntimeError("forward_signals=True needs the main thread (signals are "
                               "received there)")
        text_mode = bool(text or encoding or errors)
        if isinstance(stdin, (bytes, bytearray, memoryview, str)):
            if input is not None:
                raise ValueError("stdin and input arguments may not both be used")
            stdin, input = None, stdin  # older callers passed data as stdin
        input_data = None
        if input is not None:
            if isinstance(input, str):
                input_data = input.encode(encoding or "utf-8", errors or "strict")
            else:
                input_data = bytes(input)
        manifest = self.manifest
        limits = manifest.limits
        wall = timeout if timeout is not None else limits.wall_time_s
        identity = self.identity()
        if not self.raw:
            program = resolve_guest_program(manifest, argv[0])
            check_guest_program(manifest, program, identity, shown_as=argv[0])
        else:
            program = None
        monitor, router = shared_monitor((identity.uid, identity.gid))
        sink = self._audit_sink()
        scratches = []
        policy = net = area = None
        spawned = None
        handle = None
        pump = None
        pipes: list[int] = []
        owned: list[int] = []
        feeder = None
        kill_log = None
        sampler = None
        started = time.monotonic()
        try:
            if self.raw:
                from picoproc.raw import SeccompKillLog

                kill_log = SeccompKillLog()
            for t in manifest.tmpfs:
                scratches.append((t.guest, make_scratch(t.size_bytes, inodes=t.inodes, uid=identity.uid,
                                                        gid=identity.gid)))
            policy = FsPolicy.from_manifest(manifest, {g: s.dir_fd for g, s in scratches})
            skeleton = _mount_point_skeleton(manifest)
            if skeleton is not None:
                # exec only lets directories be searched: the skeleton holds no files.
                policy.add_mount_fd("/", skeleton.dir_fd, writable=False, exec=True)
            net = _net_policy(manifest, any_host=self.any_host_network)

            stdin_fd, own_stdin, feed = _stdin_fd(stdin, input_data)
            if own_stdin >= 0:
                owned.append(own_stdin)
            if feed is not None:
                feeder = _InputFeeder(*feed)
            out_sink, own_out = _output_sink(stdout, capture, 1)
            err_sink, own_err = _output_sink(stderr, capture, 2)
            owned += [fd for fd in (own_out, own_err) if fd >= 0]
            out_r, out_w = os.pipe2(os.O_CLOEXEC)
            err_r, err_w = os.pipe2(os.O_CLOEXEC)
            pipes = [out_r, out_w, err_r, err_w]

            # The library OS passes arguments and receives fds through it.
            area = None if self.raw else GuestArea()
            config = self._spawn_config(argv, program, (stdin_fd, out_w, err_w), identity,
                                        net.udp_proxies(), area)
            spawned = spawn_picoprocess(config)
            os.close(out_w)
            os.close(err_w)
            pipes = [out_r, err_r]
            if own_stdin >= 0:
                os.close(own_stdin)  # the guest holds its own copy now
                owned.remove(own_stdin)
            try:
                if spawned.devpts_fd >= 0:
                    # The guest's /dev/pts (and /dev/ptmx, its ptmx node):
                    # the devpts instance its reaper made, never the host's.
                    policy.add_mount_fd("/dev/pts", spawned.devpts_fd, writable=True, exec=False)
                net.start_udp_proxies(list(spawned.proxy_fds))
                # Allowed calls are counted; their records are made only
                # for an audit sink that wants them, or for a traced run's
                # profile (picoproc.trace.profile_run reads Result.audit).
                handle = monitor.add_guest(spawned.listener_fd, spawned.guest_pid or spawned.pid, policy, net,
                                           spawned.guestnet_fd, proc_fd=spawned.proc_fd, area=area,
                                           audit_allowed=sink is not None or self.trace)
            finally:
                os.close(spawned.listener_fd)
                if spawned.guestnet_fd >= 0:
                    os.close(spawned.guestnet_fd)
                if spawned.proc_fd >= 0:
                    os.close(spawned.proc_fd)
                if spawned.devpts_fd >= 0:
                    os.close(spawned.devpts_fd)
                if area is not None:
                    area.close()  # the guest and the monitor hold their own copies
                    area = None
            router.open(handle, sink)

            if self.trace and scratches:
                with blocked_in_new_threads():
                    sampler = _ScratchSampler(scratches)
            victim = spawned
            pump = _OutputPump([out_r, err_r], [out_sink, err_sink], limits.output_bytes,
                               lambda: kill_picoprocess(victim))

            relay = SignalRelay(stop_timeout) if forward_signals else None
            cpu = None
            if limits.cpu_time_s is not None:
                cpu = _CpuWatch(limits.cpu_time_s, monitor, handle, spawned)
            try:
                if relay is not None:
                    with relay:
                        raw_result, ending = _wait_and_pump(spawned, pump, wall, feeder=feeder,
                                                            relay=relay, cpu=cpu)
                else:
                    raw_result, ending = _wait_and_pump(spawned, pump, wall, feeder=feeder, cpu=cpu)
                feeder = None
            except BaseException:
                kill_picoprocess(spawned)
                wait_picoprocess(spawned)
                raise
            limit = "wall_time" if ending.timed_out else "cpu_time" if ending.cpu_time else None
            spawned_done, spawned = spawned, None
            # The guest is gone: every writer of the pipes is closed, so a
            # relaying thread reaches EOF.
            pump.join()
            if pump.limit_hit:
                limit = limit or "output"
            limit = limit or raw_result.limit
            stats = monitor.remove_guest(handle)
            router.dispatch(monitor.drain_audit())
            bucket = router.close(handle)
            records = bucket.records
            handle = None
            ru = raw_result.rusage
            out_data = bytes(pump.captured[0]) if out_sink is None else None
            err_data = bytes(pump.captured[1]) if err_sink is None else None
            if text_mode:
                out_data = None if out_data is None else out_data.decode(encoding or "utf-8",
                                                                         errors or "replace")
                err_data = None if err_data is None else err_data.decode(encoding or "utf-8",
                                                                         errors or "replace")
            notes = []
            if ending.forwarded:
                from picoproc.result import signal_name

                notes.append("signals passed on to the program: "
                             + ", ".join(signal_name(s) for s in ending.forwarded))
            cg = raw_result.cgroup_stats
            scratch_use = _scratch_use(scratches, sampler)
            sampler = None
            if cg is not None and cg.pids_limit_hits:
                notes.append(f"limits.pids: {cg.pids_limit_hits} fork(s) refused")
            result = Result(
                argv=argv,
                backend="pico",
                mode="raw" if self.raw else "libos",
                exit_code=raw_result.exit_code,
                signal=raw_result.signal,
                limit=limit,
                stdout=out_data,
                stderr=err_data,
                usage=Usage(
                    wall_time_s=time.monotonic() - started,
                    cpu_user_s=ru.ru_utime if ru else 0.0,
                    cpu_system_s=ru.ru_stime if ru else 0.0,
                    max_rss_kb=ru.ru_maxrss if ru else 0,
                    memory_peak_bytes=getattr(cg, "memory_peak_bytes", None),
                    output_bytes=pump.total,
                    monitor_cpu_s=stats["monitor_cpu_ns"] / 1e9,
                    # The reaper is a task of the run's cgroup too.
                    tasks_peak=(cg.pids_peak - 1 if cg is not None and cg.pids_peak else None),
                    scratch=scratch_use,
                ),
                counts={"mediated": stats["calls"], "mediated_allowed": stats["allowed"],
                        "mediated_denied": stats["denied"], "mediated_errors": stats["errors"],
                        "emulated": None, "direct": None},
                denials=bucket.denials,
                audit=records,
                audit_dropped=bucket.dropped + stats["audit_dropped"],
                audit_error=sink.error if isinstance(sink, AuditJsonlWriter) else None,
                notes=notes,
                enforcement=dict(spawned_done.enforcement),
                unsupported=sorted({_syscall_name(r.get("linux_nr")) for r in records
                                    if r["call"] == "note_unsupported"}),
                identity=identity.as_dict(),
                manifest=manifest,
                stopped_by=ending.stopped_by,
                pid=spawned_done.guest_pid or None,
                cleanup_error=raw_result.cleanup_error,
            )
            if kill_log is not None and result.signal == signal_mod.SIGSYS:
                nr = kill_log.find(spawned_done.guest_pid)
                result.fatal_syscall = "" if nr is None else f"{_syscall_name(nr)} ({nr})"
        finally:
            if spawned is not None:
                kill_picoprocess(spawned)
                try:
                    wait_picoprocess(spawned)
                except ChildProcessError:
                    pass
            if feeder is not None:
                feeder.close()
            if handle is not None:
                try:
                    monitor.remove_guest(handle)
                finally:
                    router.close(handle)
            if pump is not None:
                pump.finish()
            if sampler is not None:
                sampler.stop()
            for fd in pipes + owned:
                os.close(fd)
            if area is not None:
                area.close()
            if policy is not None:
                policy.close()
            if net is not None:
                net.close()
            for _, s in scratches:
                s.close()
            if isinstance(sink, AuditJsonlWriter):
                sink.close()
            if kill_log is not None:
                kill_log.close()
        if check and (result.limit is not None or result.returncode != 0):
            from picoproc.runerror import run_error

            raise run_error(result, wall)
        return result

    def _audit_sink(self):
        if self.audit is None:
            return None
        if callable(self.audit):
            return self.audit
        return AuditJsonlWriter(self.audit, self.audit_limit)

    def _spawn_config(self, argv: list[str], program: str | None, stdio: tuple[int, int, int],
                      identity: Identity, udp_proxies=(), area: GuestArea | None = None) -> SpawnConfig:
        m = self.manifest
        common = dict(
            env=dict(m.env),
            stdio=stdio,
            seccomp_flags=GUEST_SECCOMP_FLAGS,
            hostname=m.hostname,
            limits=m.limits,
            identity=(identity.uid, identity.gid) if os.geteuid() == 0 else None,
            guestnet=True,
            udp_proxies=tuple(udp_proxies),
            devpts_max=DEVPTS_MAX,
        )
        if self.raw:
            host = argv[0] if "/" in argv[0] else None
            return SpawnConfig(argv=argv, image_path=host, mode="raw", **common)
        from picoproc.libos import loader_argv
        from picoproc.monitor import guest_identity

        # A path with a slash goes to the loader as given, as execve gets it
        # (it becomes AT_EXECFN; the loader resolves it against the cwd): the
        # resolved path served only for the checks run() made before spawning.
        if "/" in argv[0]:
            program = argv[0]

        # The groups the shared monitor of this identity acts with.
        default = guest_identity()
        groups = default[2][:64] if (identity.uid, identity.gid) == default[:2] else ()
        return SpawnConfig(
            argv=loader_argv(program, argv, cwd=m.cwd, uid=identity.uid, gid=identity.gid,
                             hostname=m.hostname, limits=m.limits, groups=groups,
                             trace=self.trace),
            image_path=_loader_image_path(),
            mode="libos",
            keep_image_fd=True,
            proc_view=True,
            area=area,
            **common,
        )


@functools.cache
def _loader_image_path() -> str:
    """Where the loader image is: fixed for the life of the process (the
    file itself is opened anew by every spawn), so resolved once."""
    from picoproc.libos import loader_file

    return loader_file()


# The skeleton is a few empty directories: a small tmpfs holds them.
_SKELETON_BYTES = 256 * 1024
# The most pseudo-terminals one picoprocess may have at once: each costs
# kernel memory in the monitor's name (it opens them), and every devpts
# instance but the host's shares one kernel budget (kernel.pty.max less
# kernel.pty.reserve).
DEVPTS_MAX = 64


def _mount_point_skeleton(manifest: Manifest):
    """A read-only directory tree shown at / beneath every mount: the
    directories that lead to the mount points (and the mount points
    themselves), empty.  Without it, ``ls /`` or ``cd /`` fails although
    /usr is mounted: no host directory is shown there, and the guest must not
    see the host's root.  Returns a Scratch (shared: do not close it), or
    None when / is mounted."""
    points = tuple(sorted({m.guest for m in manifest.mounts} | {t.guest for t in manifest.tmpfs}))
    if "/" in points:
        return None
    # Read-only to every guest and the same for the same mount points, so
    # runs share one (kept for the life of the process) instead of paying
    # for a new tmpfs each time.
    with _skeleton_lock:
        skeleton = _skeletons.get(points)
        if skeleton is None:
            skeleton = _skeletons[points] = _make_skeleton(points)
    return skeleton


_skeleton_lock = threading.Lock()
_skeletons: dict[tuple[str, ...], object] = {}


def _make_skeleton(points: tuple[str, ...]):
    dirs: dict[str, None] = {}  # in creation order, parents first
    for point in points:
        parts = [p for p in point.split("/") if p]
        for i in range(1, len(parts) + 1):
            dirs.setdefault("/".join(parts[:i]))
    skeleton = make_scratch(_SKELETON_BYTES, mode=0o755, inodes=len(dirs) + 1)
    try:
        for rel in dirs:
            os.mkdir(rel, 0o755, dir_fd=skeleton.dir_fd)
    except BaseException:
        skeleton.close()
        raise
    return skeleton


def _net_policy(manifest: Manifest, any_host: bool = False):
    """The run's network policy: its grants, and the bound on the udp:
    relays it may hold.  Even with no grants: the guest's own network
    (loopback) needs no grant, but the relay bound still applies.
    ``any_host``: connects to every host address but loopback (learning)."""
    from picoproc.netpolicy import build_net_policy

    return build_net_policy(manifest, any_host=any_host)


def _syscall_name(nr) -> str:
    from picoproc.abi.linux import SYSCALLS_BY_NR

    if nr is None:
        return "?"
    return SYSCALLS_BY_NR.get(nr, str(nr))



def run(argv, manifest: Manifest | None = None, **kwargs) -> Result:
    """Shorthand: ``Sandbox(manifest, raw=, audit=, user=).run(argv, **kwargs)``."""
    raw = kwargs.pop("raw", False)
    audit = kwargs.pop("audit", None)
    user = kwargs.pop("user", None)
    return Sandbox(manifest, raw=raw, audit=audit, user=user).run(argv, **kwargs)
