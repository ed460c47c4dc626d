"""Creating picoprocesses and waiting for them (docs/ARCHITECTURE.md, "The
picoprocess" and "The reaper").

``spawn_picoprocess(SpawnConfig(...))`` is the one path every picoprocess is
created through (raw mode and library-OS mode alike).  What the guest gets:

* new user, pid, mount, network, IPC, UTS and cgroup namespaces;
* identity: ``nobody`` (65534:65534 on the host, the same ids inside the user
  namespace, no supplementary groups) when the monitor is root; the invoking
  user's uid/gid (mapped to themselves, ``setgroups`` denied) otherwise;
* no capabilities in any set (bounding set emptied), ``no_new_privs``;
* an empty, read-only root: nothing of the host file system is visible, all
  file access goes through mediated calls served in the monitor's namespace;
* a reaper as pid 1 that forwards signals, reaps orphans and reports the
  guest's own wait status; it has PR_SET_PDEATHSIG(SIGKILL) on the monitor,
  so when the monitor dies the reaper dies, and with the reaper the kernel
  kills the whole pid namespace;
* rlimits (core 0; open files, CPU seconds, process count from the limits)
  and a cgroup of its own with memory and pids limits where the machine
  offers cgroups (see picoproc.cgroups);
* only fds 0, 1, 2 (from ``stdio``), the image on the loader fd 1023, and —
  to the monitor — the seccomp listener if asked for.

The parent-death signal fires when the *thread* that created the reaper
exits, not the process.  So spawns requested from any thread but the main
thread are carried out by one long-lived daemon thread ("picoproc-spawner"):
a worker thread that spawns a run and then ends does not kill the run.
"""

from __future__ import annotations

import errno
import math
import os
import resource
import select
import signal
import threading
from collections.abc import Mapping, Sequence

# queue.SimpleQueue is _queue's, which comes without the rest of queue (heapq...).
try:
    from _queue import SimpleQueue
except ImportError:  # another Python implementation
    from queue import SimpleQueue

from picoproc import cgroups, records
from picoproc.abi.compiled import filter_for
from picoproc.errors import PicoprocError
from picoproc.image import ImageError, inspect_elf, resolve_program
from picoproc.manifest import Limits
from picoproc.native import ffi, lib
from picoproc.scratch import default_identity

CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
# CLONE_NEWCGROUP is not among these: the reaper unshares it after the parent
# has moved it into the run's cgroup, so that cgroup becomes its root.
NAMESPACES = CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS

MAX_HOSTNAME = 64  # HOST_NAME_MAX

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
    lib.PICO_STEP_CLONE: "creating the reaper in new namespaces (clone)",
    lib.PICO_STEP_ID_MAP: "writing the user namespace's uid/gid maps",
    lib.PICO_STEP_CGROUP: "moving the reaper into the run's cgroup",
    lib.PICO_STEP_IDENTITY: "switching to the guest identity",
    lib.PICO_STEP_HOSTNAME: "setting the hostname",
    lib.PICO_STEP_EMPTY_ROOT: "building the empty root (tmpfs + pivot_root)",
    lib.PICO_STEP_RLIMITS: "setting rlimits",
    lib.PICO_STEP_CAPS: "dropping capabilities",
    lib.PICO_STEP_FORK_GUEST: "creating the guest under the reaper",
    lib.PICO_STEP_REAPER_FILTER: "installing the reaper's filter",
    lib.PICO_STEP_HANDSHAKE: "talking to the reaper (report channel)",
    lib.PICO_STEP_CGROUP_NS: "creating the cgroup namespace",
    lib.PICO_STEP_SETUP: "preparing the spawn (pipes, sockets, fds)",
    lib.PICO_STEP_LOOPBACK: "bringing up the loopback interface of the guest's network",
    lib.PICO_STEP_GUESTNET: "starting the socket helper of the guest's network",
    lib.PICO_STEP_JOIN: "joining the namespaces of the running picoprocess (setns)",
    lib.PICO_STEP_DEVPTS: "mounting the picoprocess's own devpts (fsopen devpts)",
}


class SpawnError(OSError, PicoprocError):
    """Creating the picoprocess failed; the message names the step."""


class ConfigError(ValueError, PicoprocError):
    """A SpawnConfig field is unusable; the message names the field."""


@records.record(frozen=True)
class SpawnConfig:
    argv: Sequence[str]
    env: Mapping[str, str] | None = None
    stdio: tuple[int, int, int] = (0, 1, 2)  # host fds that become the guest's 0, 1, 2
    image_fd: int | None = None  # the image to enter (the caller keeps ownership)...
    image_path: str | None = None  # ...or its path (default: argv[0], searched on PATH)
    mode: str = "raw"  # filter mode: "raw" (kill outside the ABI) or "libos" (trap)
    seccomp_flags: int = 0  # SECCOMP_FILTER_FLAG_*; NEW_LISTENER (8) returns the listener
    hostname: str = "picoproc"
    limits: Limits = records.field(default_factory=Limits)
    cgroup: str | cgroups.RunCgroup = (
        "auto"  # "auto" | "none" | "v1" | "v2", or a cgroup made by the caller
    )
    identity: tuple[int, int] | None = None  # host uid, gid (default: nobody as root, else self)
    keep_image_fd: bool = False  # the loader fd survives exec (library OS)
    rlimits: Mapping[int, tuple[int, int]] = records.field(
        default_factory=dict
    )  # extra RLIMIT_*
    allow_dynamic: bool = False  # raw mode refuses dynamically linked images
    # The reaper makes sockets in the guest's own network namespace for the
    # monitor (native/guestnet.h): Spawned.guestnet_fd is its channel.
    guestnet: bool = False
    # With guestnet: (family, address bytes, port) of granted UDP
    # destinations; the reaper binds a proxy socket at each in the guest's
    # network (NetPolicy.udp_proxies), returned in Spawned.proxy_fds.
    udp_proxies: Sequence[tuple[int, bytes, int]] = ()
    # A pidfd of a running picoprocess's reaper: join its namespaces instead of
    # making new ones (a second program in the same picoprocess; the hostname
    # and the empty root are that picoprocess's already).
    join_pidfd: int | None = None
    # No network namespace of its own: the picoprocess uses the caller's (an
    # OCI runtime's container process, which is in the pod's), and guestnet's
    # helper serves that one.  For a container engine's network only.
    share_network: bool = False
    # A procfs of the guest's pid namespace for the monitor's /proc (Spawned.proc_fd)
    proc_view: bool = False
    # > 0: the reaper mounts a devpts instance of the picoprocess's own, with
    # at most this many ptys, and passes its root back (Spawned.devpts_fd).
    devpts_max: int = 0
    # The guest's argument area (picoproc.monitor.GuestArea): its memfd and
    # its ends of the channels become PICO_AREA_FD and PICO_CHANNEL_FD + k
    # in the guest and survive exec (the library OS maps the area).
    area: object | None = None


@records.record(frozen=True)
class Spawned:
    pid: int  # the reaper's host pid: wait for (and SIGKILL) this one
    listener_fd: int  # seccomp user-notification fd (owned by the caller), or -1
    guest_pid: int = 0  # the guest's host pid (pid 2 inside)
    status_fd: int = (
        -1
    )  # where the reaper reports the guest's wait status (wait_picoprocess reads it)
    cgroup: cgroups.RunCgroup | None = None
    cgroup_note: str = ""  # which cgroup version was used, or why none
    enforcement: Mapping[str, str] = records.field(
        default_factory=dict
    )  # limit -> how it is enforced
    limits: Limits = records.field(default_factory=Limits)
    guestnet_fd: int = -1  # the socket helper's channel (owned by the caller), or -1
    proxy_fds: tuple[int, ...] = ()  # the UDP proxies' sockets (owned by the caller)
    # With SpawnConfig.proc_view: an fd on the guest's procfs (the caller owns
    # it and passes it to Monitor.add_guest), or -1 when the kernel made none.
    proc_fd: int = -1
    devpts_fd: int = -1  # the picoprocess's own devpts root (owned by the caller), or -1


@records.record(frozen=True)
class RawResult:
    pid: int
    exit_code: int | None  # set when the program exited
    signal: int | None  # set when a signal ended it
    rusage: resource.struct_rusage | None = None  # the whole run (reaper + everything it reaped)
    cgroup_stats: cgroups.CgroupStats | None = None
    limit: str | None = None  # "memory", "cpu_time" or "pids" when that limit ended the run (or refused a fork)
    cleanup_error: str | None = None  # what could not be cleaned up after the run (retried later)

    @property
    def status(self) -> int:
        """The shell convention: the exit code, or 128+N for signal N."""
        return self.exit_code if self.signal is None else 128 + self.signal

    @property
    def reason(self) -> str:
        if self.limit == "memory":
            return "killed: memory limit reached (OOM kill)"
        if self.limit == "cpu_time":
            return "killed: CPU time limit reached"
        if self.limit == "pids":
            return "process-count limit reached (a fork was refused)"
        if self.signal is None:
            return f"exited with status {self.exit_code}"
        name = (
            signal.Signals(self.signal).name
            if self.signal in signal.valid_signals()
            else str(self.signal)
        )
        if self.signal == signal.SIGSYS:
            return f"killed by {name}: a system call outside the ABI"
        return f"killed by {name}"


def _check_text(value, what: str) -> bytes:
    if not isinstance(value, str):
        raise ConfigError(f"{what} must be a string, not {type(value).__name__}")
    data = value.encode("utf-8", "surrogateescape")
    if b"\0" in data:
        raise ConfigError(f"{what} contains a NUL byte")
    return data


def _cstrings(items: list[bytes]):
    """A NULL-terminated char*[] (and the buffers it points into, to keep alive)."""
    bufs = [ffi.new("char[]", s) for s in items]
    array = ffi.new("char *[]", len(bufs) + 1)
    for i, b in enumerate(bufs):
        array[i] = b
    array[len(bufs)] = ffi.NULL
    return array, bufs


def _check_fd(fd, what: str) -> int:
    if isinstance(fd, bool) or not isinstance(fd, int) or fd < 0:
        raise ConfigError(f"{what} must be a non-negative fd number, not {fd!r}")
    try:
        os.fstat(fd)
    except OSError:
        raise ConfigError(f"{what}: fd {fd} is not open") from None
    return fd


def _identity(config: SpawnConfig) -> tuple[int, int, int]:
    """(uid, gid, PICO_IDENTITY_*) for the guest."""
    if os.geteuid() == 0:
        uid, gid = config.identity or default_identity()
        if uid == 0 or gid == 0:
            raise ConfigError("identity: the guest never runs as root (uid/gid 0)")
        return uid, gid, lib.PICO_IDENTITY_SWITCH
    own = (os.geteuid(), os.getegid())
    if config.identity is not None and tuple(config.identity) != own:
        raise ConfigError(
            f"identity: an unprivileged monitor can only run the guest as itself {own}, "
            f"not {tuple(config.identity)}"
        )
    return own[0], own[1], lib.PICO_IDENTITY_SELF


def _rlimits(
    limits: Limits, cgroup: cgroups.RunCgroup | None, extra: Mapping[int, tuple[int, int]],
    run_tasks: int = 1,
):
    """The rlimits to set, clamped to the monitor's hard limits (raising a
    hard limit needs CAP_SYS_RESOURCE), and how each limit is enforced.
    ``run_tasks``: tasks of the run that are not the guest's (the reaper,
    and its socket helper thread)."""
    want: dict[int, tuple[int, int]] = {resource.RLIMIT_CORE: (0, 0)}
    how: dict[str, str] = {}
    if limits.open_files is not None:
        want[resource.RLIMIT_NOFILE] = (limits.open_files, limits.open_files)
        how["open_files"] = "RLIMIT_NOFILE"
    if limits.cpu_time_s is not None:
        soft = max(1, math.ceil(limits.cpu_time_s))
        # SIGXCPU at the soft limit (catchable), SIGKILL one second later.
        want[resource.RLIMIT_CPU] = (soft, soft + 1)
        how["cpu_time"] = "RLIMIT_CPU (per process)"
    if cgroup is not None:
        for name, path in cgroup.enforced.items():
            how[name] = path
    if limits.pids is not None:
        # Counted per (user namespace, uid): the run's own namespace makes it
        # a per-run count of tasks, the reaper (and its helper) included.
        # Where the cgroup enforces the limit, RLIMIT_NPROC stays one task
        # above it: the kernel checks RLIMIT_NPROC first, and only the
        # cgroup counts the forks it refuses (the result's "pids" limit).
        nproc = limits.pids + run_tasks + (1 if "pids" in how else 0)
        want[resource.RLIMIT_NPROC] = (nproc, nproc)
        how["pids"] = f"{how['pids']} + RLIMIT_NPROC" if "pids" in how else "RLIMIT_NPROC"
    if limits.memory_bytes is not None and "memory" not in how:
        # No memory cgroup: per-process address-space limit as a fallback.
        want[resource.RLIMIT_AS] = (limits.memory_bytes, limits.memory_bytes)
        how["memory"] = "RLIMIT_AS (per process; no memory cgroup)"
    for res, (soft, hard) in extra.items():
        want[res] = (soft, hard)
    out = []
    for res, (soft, hard) in want.items():
        _, cur_hard = resource.getrlimit(res)
        inf = resource.RLIM_INFINITY
        if cur_hard != inf:
            hard = cur_hard if hard == inf else min(hard, cur_hard)
            soft = hard if soft == inf else min(soft, hard)
        out.append((res, soft, hard))
    return out, how


def _open_image(config: SpawnConfig) -> tuple[int, bool]:
    """(fd, owned): the image to enter, checked to be an ELF we can run."""
    if config.image_fd is not None:
        return _check_fd(config.image_fd, "image_fd"), False
    path = resolve_program(config.image_path or config.argv[0])
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        info = inspect_elf(path, fd)
        if info.kind == "dynamic" and config.mode == "raw" and not config.allow_dynamic:
            raise ImageError(
                f"{path}: dynamically linked (interpreter {info.interpreter}); "
                "raw mode runs static programs only"
            )
    except BaseException:
        os.close(fd)
        raise
    return fd, True


class _SpawnerThread:
    """The thread non-main threads spawn through (see the module docstring)."""

    def __init__(self):
        self._requests: SimpleQueue = SimpleQueue()
        threading.Thread(target=self._serve, name="picoproc-spawner", daemon=True).start()

    def _serve(self):
        while True:
            fn, box, done = self._requests.get()
            try:
                box.append((True, fn()))
            except BaseException as exc:  # noqa: BLE001 - re-raised in the calling thread
                box.append((False, exc))
            done.set()

    def call(self, fn):
        box: list = []
        done = threading.Event()
        self._requests.put((fn, box, done))
        done.wait()
        ok, value = box[0]
        if ok:
            return value
        raise value


_spawner: _SpawnerThread | None = None
_spawner_lock = threading.Lock()


def _in_long_lived_thread(fn):
    """Runs fn in the main thread (if that is us) or in the spawner thread."""
    global _spawner
    if threading.current_thread() is threading.main_thread():
        return fn()
    with _spawner_lock:
        if _spawner is None:
            _spawner = _SpawnerThread()
    return _spawner.call(fn)


_live_lock = threading.Lock()
_live: dict[int, Spawned] = {}  # reaper pid -> Spawned, for wait_raw(pid)


def spawn_picoprocess(config: SpawnConfig) -> Spawned:
    """Creates a picoprocess; returns once the guest has entered its image."""
    argv = list(config.argv) if not isinstance(config.argv, (str, bytes)) else None
    if not argv:
        raise ConfigError("argv must be a non-empty list of strings")
    c_argv_items = [_check_text(a, f"argv[{i}]") for i, a in enumerate(argv)]
    env_items = []
    for k, v in (config.env or {}).items():
        kb = _check_text(k, "env name")
        if not kb or b"=" in kb:
            raise ConfigError(f"env name {k!r} is empty or contains '='")
        env_items.append(kb + b"=" + _check_text(v, f"env[{k!r}]"))
    if len(config.stdio) != 3:
        raise ConfigError(f"stdio must give exactly 3 fds, not {len(config.stdio)}")
    stdio = [_check_fd(fd, f"stdio[{i}]") for i, fd in enumerate(config.stdio)]
    hostname = _check_text(config.hostname, "hostname")
    if not 0 < len(hostname) <= MAX_HOSTNAME:
        raise ConfigError(f"hostname must be 1..{MAX_HOSTNAME} bytes, not {len(hostname)}")
    uid, gid, identity_mode = _identity(config)
    program = filter_for(config.mode)

    limits = config.limits
    # The reaper's socket helper is a thread: a task that pids counts.  (The
    # cgroup adds the reaper itself.)
    helper_tasks = 1 if config.guestnet else 0
    if isinstance(config.cgroup, cgroups.RunCgroup):
        # The caller made it (and wrote any limits); the run still removes it.
        cgroup, cgroup_note = config.cgroup, f"{config.cgroup.version} cgroup given by the caller"
    else:
        cgroup, cgroup_note = cgroups.create_run_cgroup(
            limits.memory_bytes,
            None if limits.pids is None else limits.pids + helper_tasks,
            config.cgroup,
            count_cpu=limits.cpu_time_s is not None,
        )
    procs_fds: list[int] = []
    image_fd, own_image = -1, False
    try:
        image_fd, own_image = _open_image(config)
        rlimits, enforcement = _rlimits(limits, cgroup, config.rlimits, 1 + helper_tasks)
        if cgroup is not None:
            procs_fds = [os.open(p, os.O_WRONLY | os.O_CLOEXEC) for p in cgroup.join_files()]

        spec = ffi.new("struct pico_spawn_spec *")
        spec.image_fd = image_fd
        spec.keep_image_fd = int(config.keep_image_fd)
        for i in range(3):
            spec.stdio[i] = stdio[i]
        c_argv, keep_a = _cstrings(c_argv_items)
        c_envp, keep_e = _cstrings(env_items)
        spec.argv = c_argv
        spec.envp = c_envp
        bpf = ffi.from_buffer(program)
        spec.filter = bpf
        spec.filter_len = len(program) // 8
        spec.seccomp_flags = config.seccomp_flags
        spec.identity_mode = identity_mode
        spec.guest_uid = uid
        spec.guest_gid = gid
        c_hostname = ffi.new("char[]", hostname)
        spec.share_net = int(config.share_network)
        if config.join_pidfd is None:
            spec.clone_flags = NAMESPACES & ~CLONE_NEWNET if config.share_network else NAMESPACES
            spec.hostname = c_hostname
            spec.empty_root = 1
            spec.cgroup_ns = 1
        else:
            spec.join_namespaces = 1
            spec.join_pidfd = config.join_pidfd
        for i, fd in enumerate(procs_fds):
            spec.cgroup_procs_fds[i] = fd
        spec.n_cgroup_procs_fds = len(procs_fds)
        spec.cgroup_join_self = int(cgroup is not None and cgroup.join_self)
        for i, (res, soft, hard) in enumerate(rlimits):
            spec.rlimits[i].resource = res
            spec.rlimits[i].soft = soft
            spec.rlimits[i].hard = hard
        spec.n_rlimits = len(rlimits)
        spec.guestnet = int(config.guestnet)
        if len(config.udp_proxies) > lib.PICO_MAX_UDP_PROXIES:
            raise ConfigError(f"udp_proxies: at most {lib.PICO_MAX_UDP_PROXIES}")
        for i, (family, addr, port) in enumerate(config.udp_proxies):
            spec.udp_proxies[i].family = family
            ffi.memmove(spec.udp_proxies[i].addr, addr, len(addr))
            spec.udp_proxies[i].port = port
        spec.n_udp_proxies = len(config.udp_proxies)
        spec.proc_view = int(config.proc_view)
        spec.devpts_max = int(config.devpts_max)
        spec.area_fd = -1
        if config.area is not None:
            spec.area_fd = config.area.area_fd
            for i, fd in enumerate(config.area.guest_channels):
                spec.channel_fds[i] = fd
            spec.n_channels = len(config.area.guest_channels)

        result = ffi.new("struct pico_spawn_result *")
        if _in_long_lived_thread(lambda: lib.pico_spawn(spec, result)) < 0:
            if cgroup is not None and limits.memory_bytes is not None and cgroup.stats().oom_kills:
                raise SpawnError(
                    errno.ENOMEM,
                    f"the memory limit ({limits.memory_bytes} bytes) is too small for the run to "
                    "start: the kernel's OOM killer ended it while it was being set up",
                )
            raise SpawnError(
                result.err, f"{STEP_NAMES.get(result.step, 'spawn')}: {os.strerror(result.err)}"
            )
        del keep_a, keep_e, c_hostname, bpf
    except BaseException:
        if cgroup is not None:
            cgroup.remove()
        raise
    finally:
        for fd in procs_fds:
            os.close(fd)
        if own_image:
            os.close(image_fd)
    spawned = Spawned(
        result.pid,
        result.listener_fd,
        result.guest_pid,
        result.status_fd,
        cgroup,
        cgroup_note,
        enforcement,
        limits,
        result.guestnet_fd,
        tuple(result.proxy_fds[i] for i in range(result.n_proxy_fds)),
        result.proc_fd,
        result.devpts_fd,
    )
    with _live_lock:
        _live[spawned.pid] = spawned
    return spawned


def lookup(pid: int) -> Spawned | None:
    """The Spawned record of a reaper pid not yet waited for."""
    with _live_lock:
        return _live.get(pid)


def _decode(status: int) -> tuple[int | None, int | None]:
    if os.WIFSIGNALED(status):
        return None, os.WTERMSIG(status)
    return os.WEXITSTATUS(status), None


def _guest_status(status_fd: int) -> int | None:
    """The guest's raw wait status the reaper wrote, if it got that far."""
    if status_fd < 0:
        return None
    try:
        data = b""
        # The reaper has exited: the pipe holds the status or is at EOF.
        while len(data) < 4:
            chunk = os.read(status_fd, 4 - len(data))
            if not chunk:
                break
            data += chunk
    finally:
        os.close(status_fd)
    return int.from_bytes(data, "little", signed=True) if len(data) == 4 else None


def wait_picoprocess(spawned: Spawned, timeout: float | None = None) -> RawResult:
    """Waits for the run to end; returns the *guest's* exit code or signal,
    the run's rusage, cgroup usage, and which limit ended it (if one did).
    Removes the run's cgroup.  With ``timeout`` (seconds) raises TimeoutError
    and leaves the run alone if it has not ended by then."""
    if timeout is not None:
        pidfd = os.pidfd_open(spawned.pid)
        try:
            ready, _, _ = select.select([pidfd], [], [], timeout)
        finally:
            os.close(pidfd)
        if not ready:
            raise TimeoutError(f"picoprocess {spawned.pid} still running after {timeout} s")
    _, status, rusage = os.wait4(spawned.pid, 0)
    with _live_lock:
        _live.pop(spawned.pid, None)
    guest = _guest_status(spawned.status_fd)
    exit_code, sig = _decode(guest if guest is not None else status)
    stats = None
    cleanup_error = None
    if spawned.cgroup is not None:
        stats = spawned.cgroup.stats()
        try:
            spawned.cgroup.remove()
        except cgroups.CgroupError as exc:
            # The run's result stands; the cgroup is removed later.
            cleanup_error = exc.strerror
    limit = None
    killed = sig == signal.SIGKILL or (guest is None and os.WIFSIGNALED(status))
    if stats is not None and stats.oom_kills > 0 and killed:
        limit = "memory"
    elif sig == signal.SIGXCPU or (
        sig == signal.SIGKILL
        and spawned.limits.cpu_time_s is not None
        and rusage.ru_utime + rusage.ru_stime >= spawned.limits.cpu_time_s
    ):
        limit = "cpu_time"
    elif stats is not None and stats.pids_limit_hits > 0:
        limit = "pids"
    return RawResult(spawned.pid, exit_code, sig, rusage, stats, limit, cleanup_error)


def kill_picoprocess(spawned: Spawned) -> None:
    """Ends the whole run now: SIGKILL to the reaper kills its pid namespace."""
    try:
        os.kill(spawned.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def release(spawned: Spawned) -> None:
    """Kills and reaps a run whose result nobody wants (error paths, tests)."""
    kill_picoprocess(spawned)
    try:
        wait_picoprocess(spawned)
    except ChildProcessError:
        pass
