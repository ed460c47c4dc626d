"""The Python API: ``Sandbox(manifest).run(argv)`` -> ``Result``.

This is the layer that composes the others for one run (the CLI is a thin
layer over it):

    manifest --> scratch tmpfs (picoproc.scratch) --+--> FsPolicy / NetPolicy
                                                     |        |
    spawn (namespaces, identity, limits; picoproc.spawn)      v
        library-OS loader or raw image  -- listener --> Monitor (C loop, shared)
    output pump (counts bytes, enforces the output limit)
    wait (wall-time limit) --> Result (how it ended, usage, calls, audit)

One Monitor (one C event loop) serves every picoprocess of this Python
process; each run registers its guest with it and routes its audit records
by guest handle.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import select
import selectors
import signal as signal_mod
import threading
import time
from collections.abc import Callable, Mapping, Sequence

from picoproc import manifest as manifest_mod
from picoproc.manifest import Manifest
from picoproc.monitor import GUEST_SECCOMP_FLAGS, AuditJsonlWriter, FsPolicy, Monitor
from picoproc.scratch import make_scratch
from picoproc.spawn import (
    RawResult,
    SpawnConfig,
    Spawned,
    kill_picoprocess,
    spawn_picoprocess,
    wait_picoprocess,
)

# Read from the guest's stdout/stderr pipes in chunks of this size.
_PUMP_CHUNK = 65536


class SandboxError(Exception):
    """The run could not be started; the message names the problem."""


@dataclasses.dataclass
class Result:
    """How one run ended and what it used."""

    argv: list[str]
    mode: str  # "libos" or "raw"
    exit_code: int | None  # the guest's exit code, when it exited
    signal: int | None  # the signal that ended the guest, if one did
    limit: str | None  # the limit that ended the run: wall_time, cpu_time, memory, output
    wall_time_s: float
    cpu_user_s: float
    cpu_system_s: float
    max_rss_kb: int
    memory_peak_bytes: int | None  # from the run's cgroup, where there is one
    stdout: bytes | None  # captured output (None when relayed)
    stderr: bytes | None
    output_bytes: int  # stdout + stderr bytes the guest wrote
    calls: dict  # mediated: served/allowed/denied; emulated/direct: None (not counted)
    denials: list[dict]  # the audit records of refused mediated calls
    audit: list[dict]  # every audit record of this run
    enforcement: Mapping[str, str]  # limit -> how it was enforced (cgroup v1/v2, rlimit)
    unsupported: list[str] = dataclasses.field(default_factory=list)  # Linux calls answered ENOSYS

    @property
    def status(self) -> int:
        """The shell convention: the exit code, or 128+N for signal N."""
        if self.signal is not None:
            return 128 + self.signal
        return self.exit_code if self.exit_code is not None else 255

    @property
    def reason(self) -> str:
        """One line: how the run ended."""
        if self.limit == "wall_time":
            return "killed: wall-time limit reached"
        if self.limit == "output":
            return "killed: output limit reached"
        if self.limit == "memory":
            return "killed: memory limit reached (OOM kill)"
        if self.limit == "cpu_time":
            return "killed: CPU-time limit reached"
        if self.signal is None:
            return f"exited with status {self.exit_code}"
        try:
            name = signal_mod.Signals(self.signal).name
        except ValueError:
            name = f"signal {self.signal}"
        if self.signal == signal_mod.SIGSYS:
            return f"killed by {name}: a system call outside the ABI"
        return f"killed by {name}"

    def to_dict(self) -> dict:
        doc = dataclasses.asdict(self)
        doc["status"] = self.status
        doc["reason"] = self.reason
        doc["enforcement"] = dict(self.enforcement)
        for key in ("stdout", "stderr"):
            if doc[key] is not None:
                doc[key] = doc[key].decode("utf-8", "replace")
        return doc


class _AuditRouter:
    """Sends each audit record to the run whose guest made the call."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._buckets: dict[int, list[dict]] = {}
        self._sinks: dict[int, Callable[[list[dict]], None]] = {}
        # Records of a guest whose run has not claimed its handle yet: the
        # guest may call before Sandbox.run learns the handle.
        self._unclaimed: dict[int, list[dict]] = {}

    def open(self, handle: int, sink: Callable[[list[dict]], None] | None) -> None:
        with self._lock:
            early = self._unclaimed.pop(handle, [])
            self._buckets[handle] = list(early)
            if sink is not None:
                self._sinks[handle] = sink
                if early:
                    sink(early)

    def dispatch(self, records: list[dict]) -> None:
        by_guest: dict[int, list[dict]] = {}
        for rec in records:
            by_guest.setdefault(rec["guest"], []).append(rec)
        with self._lock:
            for handle, recs in by_guest.items():
                bucket = self._buckets.get(handle)
                if bucket is None:
                    bucket = self._unclaimed.setdefault(handle, [])
                bucket.extend(recs)
                sink = self._sinks.get(handle)
                if sink is not None:
                    sink(recs)

    def close(self, handle: int) -> list[dict]:
        with self._lock:
            self._sinks.pop(handle, None)
            self._unclaimed.pop(handle, None)
            return self._buckets.pop(handle, [])


_shared_lock = threading.Lock()
_shared: tuple[Monitor, _AuditRouter] | None = None


def shared_monitor() -> tuple[Monitor, _AuditRouter]:
    """The process-wide monitor (started on first use) and its audit router."""
    global _shared
    with _shared_lock:
        if _shared is None:
            router = _AuditRouter()
            monitor = Monitor(audit_sink=router.dispatch)
            monitor.start()
            _shared = (monitor, router)
        return _shared


def guest_to_host(manifest: Manifest, guest_path: str) -> str | None:
    """The host path a guest path shows under the manifest's mounts (not
    tmpfs, not hidden), or None.  Only for locating the program before the
    run: the monitor resolves every access itself."""
    if manifest.is_hidden(guest_path):
        return None
    best = None
    for m in manifest.mounts:
        if guest_path == m.guest or guest_path.startswith(m.guest.rstrip("/") + "/"):
            if best is None or len(m.guest) > len(best.guest):
                best = m
    if best is None:
        return None
    rest = guest_path[len(best.guest):].lstrip("/")
    return os.path.join(best.host, rest) if rest else best.host


def resolve_guest_program(manifest: Manifest, prog: str) -> str:
    """PROG as a guest path: absolute as given, relative against the guest
    cwd if it has a slash, else searched on the manifest's PATH."""
    if not prog:
        raise SandboxError("no program given")
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
    raise SandboxError(f"{prog}: not found on the guest's PATH ({path})")


class _OutputPump:
    """Relays (or captures) the guest's stdout and stderr, counting bytes; past
    ``limit`` bytes it calls ``on_limit`` once and stops passing output on.

    No thread of its own for captured output: the thread that waits for the
    run reads it (``_wait_and_pump``), because starting and joining a thread
    cost 0.3-0.6 ms per run.  Relayed output is written to host fds that may
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
        self._thread.start()

    def _run(self) -> None:
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


def _wait_and_pump(spawned: Spawned, pump: _OutputPump, wall: float | None) -> tuple[RawResult, bool]:
    """Waits for the run while reading its output (see _OutputPump); past
    ``wall`` seconds kills it.  Returns (RawResult, whether the wall-time
    limit ended it)."""
    pidfd = os.pidfd_open(spawned.pid)
    timed_out = False
    try:
        poller = select.poll()
        poller.register(pidfd, select.POLLIN)
        reading = {}
        for i, fd in enumerate(pump.fds):
            poller.register(fd, select.POLLIN)
            reading[fd] = i
        deadline = None if wall is None else time.monotonic() + wall
        alive = True
        # Until the reaper has exited and both pipes are at EOF: the reaper
        # exits only once every process of its pid namespace is gone, so EOF
        # follows (as it did for the pump thread before).
        while alive or reading:
            timeout = None
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    timed_out = True
                    deadline = None
                    kill_picoprocess(spawned)
                    continue
                timeout = math.ceil(left * 1000)
            for fd, events in poller.poll(timeout):
                if fd == pidfd:
                    alive = False
                    poller.unregister(pidfd)
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
    return wait_picoprocess(spawned), timed_out


class Sandbox:
    """Runs programs as picoprocesses under one manifest.

    ``raw=True`` runs a static, freestanding program under the filter alone
    (no library OS).  ``audit``: a JSONL file path, or a callable given each
    batch of this run's audit records."""

    def __init__(self, manifest: Manifest | None = None, *, raw: bool = False,
                 audit: str | os.PathLike | Callable[[list[dict]], None] | None = None) -> None:
        self.manifest = manifest if manifest is not None else manifest_mod.default_manifest()
        self.raw = raw
        self.audit = audit

    def run(self, argv: Sequence[str], *, stdin: int | None = None, capture: bool = False,
            timeout: float | None = None, stdout: int | None = None, stderr: int | None = None) -> Result:
        """Runs ``argv`` and waits for it.

        stdin: a host fd the guest reads (default: an empty input).
        capture: collect stdout/stderr into the Result instead of relaying
        them to ``stdout``/``stderr`` (host fds, default 1 and 2).
        timeout: wall-time limit in seconds (overrides the manifest's)."""
        argv = list(argv)
        if not argv:
            raise SandboxError("no program given")
        manifest = self.manifest
        limits = manifest.limits
        wall = timeout if timeout is not None else limits.wall_time_s
        monitor, router = shared_monitor()
        sink = self._audit_sink()
        scratches = []
        policy = net = None
        spawned = None
        handle = None
        pump = None
        pipes: list[int] = []
        own_stdin = -1
        started = time.monotonic()
        try:
            for t in manifest.tmpfs:
                scratches.append((t.guest, make_scratch(t.size_bytes)))
            policy = FsPolicy.from_manifest(manifest, {g: s.dir_fd for g, s in scratches})
            skeleton = _mount_point_skeleton(manifest)
            if skeleton is not None:
                # exec only lets directories be searched: the skeleton holds no files.
                policy.add_mount_fd("/", skeleton.dir_fd, writable=False, exec=True)
            net = _net_policy(manifest)

            if stdin is None:
                own_stdin = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
                stdin = own_stdin
            out_r, out_w = os.pipe2(os.O_CLOEXEC)
            err_r, err_w = os.pipe2(os.O_CLOEXEC)
            pipes = [out_r, out_w, err_r, err_w]

            config = self._spawn_config(argv, (stdin, out_w, err_w))
            spawned = spawn_picoprocess(config)
            os.close(out_w)
            os.close(err_w)
            pipes = [out_r, err_r]
            try:
                handle = monitor.add_guest(spawned.listener_fd, spawned.guest_pid or spawned.pid, policy, net)
            finally:
                os.close(spawned.listener_fd)
            router.open(handle, sink)

            sinks = [None, None] if capture else [1 if stdout is None else stdout, 2 if stderr is None else stderr]
            victim = spawned
            pump = _OutputPump([out_r, err_r], sinks, limits.output_bytes, lambda: kill_picoprocess(victim))

            try:
                raw_result, timed_out = _wait_and_pump(spawned, pump, wall)
            except BaseException:
                kill_picoprocess(spawned)
                wait_picoprocess(spawned)
                raise
            limit = "wall_time" if timed_out else None
            spawned_done, spawned = spawned, None
            # The guest is gone: every writer of the pipes is closed, so a
            # relaying thread reaches EOF.
            pump.join()
            if pump.limit_hit:
                limit = "output"
            limit = limit or raw_result.limit
            stats = monitor.remove_guest(handle)
            router.dispatch(monitor.drain_audit())
            records = router.close(handle)
            handle = None
            usage = raw_result.rusage
            return Result(
                argv=argv,
                mode="raw" if self.raw else "libos",
                exit_code=raw_result.exit_code,
                signal=raw_result.signal,
                limit=limit,
                wall_time_s=time.monotonic() - started,
                cpu_user_s=usage.ru_utime if usage else 0.0,
                cpu_system_s=usage.ru_stime if usage else 0.0,
                max_rss_kb=usage.ru_maxrss if usage else 0,
                memory_peak_bytes=getattr(raw_result.cgroup_stats, "memory_peak_bytes", None),
                stdout=bytes(pump.captured[0]) if capture else None,
                stderr=bytes(pump.captured[1]) if capture else None,
                output_bytes=pump.total,
                calls={"mediated": stats["calls"], "mediated_allowed": stats["allowed"],
                       "mediated_denied": stats["denied"], "mediated_errors": stats["errors"],
                       "emulated": None, "direct": None},
                denials=[r for r in records if r["decision"] == "deny"],
                audit=records,
                enforcement=dict(spawned_done.enforcement),
                unsupported=sorted({_syscall_name(r.get("linux_nr")) for r in records
                                    if r["call"] == "note_unsupported"}),
            )
        finally:
            if spawned is not None:
                kill_picoprocess(spawned)
                try:
                    wait_picoprocess(spawned)
                except ChildProcessError:
                    pass
            if handle is not None:
                try:
                    monitor.remove_guest(handle)
                finally:
                    router.close(handle)
            if pump is not None:
                pump.finish()
            for fd in pipes:
                os.close(fd)
            if own_stdin >= 0:
                os.close(own_stdin)
            if policy is not None:
                policy.close()
            if net is not None:
                net.close()
            for _, s in scratches:
                s.close()
            if isinstance(sink, AuditJsonlWriter):
                sink.close()

    def _audit_sink(self):
        if self.audit is None:
            return None
        if callable(self.audit):
            return self.audit
        return AuditJsonlWriter(self.audit)

    def _spawn_config(self, argv: list[str], stdio: tuple[int, int, int]) -> SpawnConfig:
        m = self.manifest
        common = dict(
            env=dict(m.env),
            stdio=stdio,
            seccomp_flags=GUEST_SECCOMP_FLAGS,
            hostname=m.hostname,
            limits=m.limits,
        )
        if self.raw:
            host = argv[0] if "/" in argv[0] else None
            return SpawnConfig(argv=argv, image_path=host, mode="raw", **common)
        from picoproc.libos import loader_argv

        program = resolve_guest_program(m, argv[0])
        uid = 65534 if os.geteuid() == 0 else os.geteuid()
        gid = 65534 if os.geteuid() == 0 else os.getegid()
        return SpawnConfig(
            argv=loader_argv(program, argv, cwd=m.cwd, uid=uid, gid=gid, hostname=m.hostname,
                             limits=m.limits),
            image_path=_loader_image_path(),
            mode="libos",
            keep_image_fd=True,
            **common,
        )


@functools.cache
def _loader_image_path() -> str:
    """Where the loader image is: fixed for the life of the process (the
    file itself is opened anew by every spawn), so resolved once (~30 us)."""
    from picoproc.libos import loader_path

    return str(loader_path())


# The skeleton is a few empty directories: a small tmpfs holds them.
_SKELETON_BYTES = 256 * 1024


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
    skeleton = make_scratch(_SKELETON_BYTES, mode=0o755)
    try:
        made = set()
        for point in points:
            parts = [p for p in point.split("/") if p]
            for i in range(1, len(parts) + 1):
                rel = "/".join(parts[:i])
                if rel not in made:
                    os.mkdir(rel, 0o755, dir_fd=skeleton.dir_fd)
                    made.add(rel)
    except BaseException:
        skeleton.close()
        raise
    return skeleton


def _net_policy(manifest: Manifest):
    if not (manifest.net_connect or manifest.net_listen or manifest.unix_paths):
        return None
    from picoproc.netpolicy import build_net_policy

    return build_net_policy(manifest)


def _syscall_name(nr) -> str:
    from picoproc.abi.linux import SYSCALLS_BY_NR

    if nr is None:
        return "?"
    return SYSCALLS_BY_NR.get(nr, str(nr))


def run(argv: Sequence[str], manifest: Manifest | None = None, **kwargs) -> Result:
    """Shorthand: ``Sandbox(manifest).run(argv, **kwargs)``."""
    raw = kwargs.pop("raw", False)
    audit = kwargs.pop("audit", None)
    return Sandbox(manifest, raw=raw, audit=audit).run(argv, **kwargs)
