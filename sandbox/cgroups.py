"""Per-run cgroups: memory and process-count limits, usage, and clean removal.

Each picoprocess gets its own cgroup, created by the monitor before the
reaper runs (the parent writes the reaper's pid to ``cgroup.procs`` before
letting it continue, so nothing the guest forks can start outside it) and
removed after the run, after killing any straggler.

Both cgroup versions are supported because real machines differ:

* **v2** (unified): run cgroups are created next to the monitor's own cgroup
  (in its parent, whose ``cgroup.subtree_control`` must delegate ``memory``
  and/or ``pids``), or under ``<root>/picoproc/`` when the monitor sits in the
  root cgroup.  Limits: ``memory.max`` (+ ``memory.swap.max`` = 0,
  ``memory.oom.group`` = 1 so an OOM ends the whole run), ``pids.max``.
* **v1** (per-controller hierarchies): run cgroups are nested under the
  monitor's own cgroup in the ``memory`` and ``pids`` hierarchies (v1 has no
  "no internal processes" rule), so the run stays inside whatever limits the
  monitor itself lives under.

Hybrid machines (v1 controllers plus an empty cgroup2 mount, like the
development VM) end up on v1.  Without root and without a writable delegated
cgroup, runs go without cgroups and ``available()`` says why.

Directory names are ``picoproc-<monitor pid>-<n>``; a monitor that died
without cleaning up leaves empty ones that the next monitor removes
(``sweep_stale``).
"""

from __future__ import annotations

import collections
import errno
import itertools
import os
import signal
import threading
import time

from picoproc import mountinfo, records
from picoproc.errors import PicoprocError

CONTROLLERS = ("memory", "pids")
# Usage only, no limit: the CPU time of a run while it runs (the monitor adds
# its own work for the run to it, picoproc.api).  cgroup v2 has it in every
# cgroup's cpu.stat; v1 needs the cpuacct hierarchy, joined only by runs
# with a CPU-time limit.
USAGE_CONTROLLERS = ("cpuacct",)
_PREFIX = "picoproc-"


# Which cgroup version runs will use (version: "v2", "v1" or None: none) and
# why (reason).  (A typing.NamedTuple would import typing on every run.)
Support = collections.namedtuple("Support", ["version", "reason"])


@records.record(frozen=True)
class _Plan:
    """Where run cgroups go: controller name -> parent directory."""

    version: str
    bases: tuple[
        tuple[str, str], ...
    ]  # v2: (("unified", dir),); v1: (("memory", dir), ("pids", dir))
    controllers: tuple[str, ...]  # the limits this plan can enforce
    usage_bases: tuple[tuple[str, str], ...] = ()  # v1: (("cpuacct", dir),) where present


@records.record(frozen=True)
class CgroupStats:
    memory_peak_bytes: int | None  # high-water mark of the run's memory
    oom_kills: int  # processes the OOM killer ended inside the run
    memory_limit_hits: int  # times the memory limit was reached (v1 failcnt, v2 events "max")
    pids_limit_hits: int  # forks refused by pids.max
    # The most tasks (processes and threads) alive at once, the reaper
    # included (pids.peak, Linux 6.1+); None where it cannot be read.
    pids_peak: int | None = None


def _read(path: str) -> str:
    # Raw fd calls: a text-mode open() adds an fstat, an ioctl, an lseek and
    # a wrapper object to each of the four stats files read after every run
    # (docs/PERFORMANCE.md, "Start-up").
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        chunks = []
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
    finally:
        os.close(fd)
    return b"".join(chunks).decode()


def _write(path: str, value: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)


def _keyed(text: str) -> dict[str, int]:
    """Parses "key value" lines (memory.events, pids.events, memory.oom_control)."""
    out = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].lstrip("-").isdigit():
            out[parts[0]] = int(parts[1])
    return out


def _mounts() -> tuple[str | None, dict[str, str]]:
    """(cgroup2 mount point or None, {v1 controller: mount point})."""
    unified, v1 = mountinfo.cgroup_mounts(mountinfo.read_mountinfo())
    return unified, {c: p for c, p in v1.items() if c in CONTROLLERS or c in USAGE_CONTROLLERS}


def _own_paths() -> tuple[str | None, dict[str, str]]:
    """The monitor's own cgroup: (v2 path or None, {v1 controller: path})."""
    v2, v1 = mountinfo.read_proc_cgroup()
    return v2, {c: p for c, p in v1.items() if c in CONTROLLERS or c in USAGE_CONTROLLERS}


def _join(mount: str, path: str) -> str:
    return os.path.normpath(mount + "/" + path.lstrip("/"))


def _plan_v2(mount: str, own: str) -> tuple[_Plan | None, str]:
    if own == "/":
        root = mount
        try:
            have = set(_read(os.path.join(root, "cgroup.controllers")).split())
            enabled = set(_read(os.path.join(root, "cgroup.subtree_control")).split())
        except OSError as exc:
            return None, f"cgroup2 at {mount}: cannot read cgroup.controllers ({exc.strerror})"
        if not any(c in have for c in CONTROLLERS):
            return (
                None,
                f"cgroup2 at {mount} offers no memory/pids controller (they are bound to v1 hierarchies)",
            )
        # Enabling controllers in the root is the system manager's decision, not ours.
        usable = tuple(c for c in CONTROLLERS if c in have and c in enabled)
        if not usable:
            return (
                None,
                f"cgroup2 at {mount}: memory/pids are not enabled in the root's cgroup.subtree_control",
            )
        if not os.access(root, os.W_OK):
            return None, f"cgroup2 root {root} is not writable by this user"
        return _Plan(
            "v2", (("unified", os.path.join(root, "picoproc")),), usable
        ), f"cgroup2 at {root}/picoproc"
    parent = os.path.dirname(_join(mount, own))
    try:
        delegated = set(_read(os.path.join(parent, "cgroup.subtree_control")).split())
    except OSError as exc:
        return None, f"cgroup2: cannot read {parent}/cgroup.subtree_control ({exc.strerror})"
    usable = tuple(c for c in CONTROLLERS if c in delegated)
    if not usable:
        return None, f"cgroup2: {parent} delegates no memory/pids controller to its children"
    if not (
        os.access(parent, os.W_OK) and os.access(os.path.join(parent, "cgroup.procs"), os.W_OK)
    ):
        return None, f"cgroup2: {parent} is not writable by this user (no delegated cgroup)"
    return _Plan("v2", (("unified", parent),), usable), f"cgroup2 under {parent}"


def _plan_v1(mounts: dict[str, str], own: dict[str, str]) -> tuple[_Plan | None, str]:
    bases = []
    missing = []
    for c in CONTROLLERS:
        if c not in mounts or c not in own:
            missing.append(f"{c}: no hierarchy")
            continue
        base = _join(mounts[c], own[c])
        if not os.access(base, os.W_OK):
            missing.append(f"{c}: {base} not writable by this user")
            continue
        bases.append((c, base))
    if not bases:
        return None, "cgroup v1: " + "; ".join(missing)
    note = "cgroup v1 under " + ", ".join(b for _, b in bases)
    if missing:
        note += " (" + "; ".join(missing) + ")"
    usage = []
    for c in USAGE_CONTROLLERS:
        if c in mounts and c in own and os.access(_join(mounts[c], own[c]), os.W_OK):
            usage.append((c, _join(mounts[c], own[c])))
    return _Plan("v1", tuple(bases), tuple(c for c, _ in bases), tuple(usage)), note


_support_lock = threading.Lock()
_support_cache: tuple[_Plan | None, Support] | None = None


def _probe() -> tuple[_Plan | None, Support]:
    try:
        unified, v1_mounts = _mounts()
        own_v2, own_v1 = _own_paths()
    except OSError as exc:
        return None, Support(
            None, f"cannot read /proc/self/mountinfo or /proc/self/cgroup: {exc.strerror}"
        )
    notes = []
    plan_v2 = None
    if unified is not None and own_v2 is not None:
        plan_v2, note = _plan_v2(unified, own_v2)
        if plan_v2 and set(plan_v2.controllers) == set(CONTROLLERS):
            return plan_v2, Support("v2", note)
        notes.append(note)
    else:
        notes.append("no cgroup2 mount")
    plan_v1, note = (
        _plan_v1(v1_mounts, own_v1) if v1_mounts else (None, "no cgroup v1 memory/pids hierarchy")
    )
    if plan_v1:
        return plan_v1, Support("v1", note)
    notes.append(note)
    if plan_v2:  # v2 with only one of the controllers beats nothing
        return plan_v2, Support("v2", notes[0])
    return None, Support(None, "; ".join(notes))


def _support(refresh: bool = False) -> tuple[_Plan | None, Support]:
    global _support_cache
    with _support_lock:
        if _support_cache is None or refresh:
            _support_cache = _probe()
        return _support_cache


def available(refresh: bool = False) -> Support:
    """Which cgroup version runs will use, with the reason (for ``doctor``)."""
    return _support(refresh)[1]


def available_controllers() -> tuple[str, ...]:
    """The limits run cgroups can enforce here ("memory", "pids"), maybe none."""
    plan = _support()[0]
    return plan.controllers if plan else ()


_counter = itertools.count(1)
_swept = False


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _kill_members(path: str) -> None:
    """SIGKILLs every process left in a cgroup (v2 has cgroup.kill for this)."""
    kill_file = os.path.join(path, "cgroup.kill")
    if os.path.exists(kill_file):
        try:
            _write(kill_file, "1")
            return
        except OSError:
            pass
    try:
        pids = [int(p) for p in _read(os.path.join(path, "cgroup.procs")).split()]
    except OSError:
        return
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _child_cgroups(path: str) -> list[str]:
    try:
        return sorted(e.name for e in os.scandir(path) if e.is_dir(follow_symlinks=False))
    except OSError:
        return []


def _remove_dir(path: str, timeout: float = 5.0) -> None:
    """Removes a run cgroup, killing stragglers; bounded retries while the
    kernel finishes tearing down exiting members (rmdir says EBUSY).  A
    cgroup holding cgroups of its own is not picoproc's to empty: that fails
    at once, naming them."""
    deadline = time.monotonic() + timeout
    killed = False
    while True:
        try:
            os.rmdir(path)
            return
        except FileNotFoundError:
            return
        except OSError as exc:
            if exc.errno != errno.EBUSY:
                raise
            children = _child_cgroups(path)
            if children:
                raise OSError(errno.EBUSY, f"it holds cgroups picoproc did not make: {', '.join(children)}",
                              path) from None
            if time.monotonic() > deadline:
                raise
        if not killed:
            _kill_members(path)
            killed = True
        time.sleep(0.002)


# Run cgroups that could not be removed when their run ended (a process that
# would not die in time, a cgroup someone else made inside): retried before
# each new run cgroup is made and when the monitor exits; a monitor that
# dies first leaves them to the next one's sweep_stale.
_pending_lock = threading.Lock()
_pending: set[str] = set()


def _defer_removal(paths: list[str]) -> None:
    global _atexit_registered
    with _pending_lock:
        _pending.update(paths)
        if not _atexit_registered:
            import atexit

            atexit.register(retry_pending_removals)
            _atexit_registered = True


_atexit_registered = False


def pending_removals() -> set[str]:
    """Run cgroups waiting to be removed."""
    with _pending_lock:
        return set(_pending)


def retry_pending_removals() -> list[str]:
    """Tries again to remove the run cgroups that could not be removed;
    returns those still there."""
    with _pending_lock:
        paths = sorted(_pending)
    left = []
    for path in paths:
        try:
            _remove_dir(path, timeout=0.05)
        except OSError:
            left.append(path)
            continue
        with _pending_lock:
            _pending.discard(path)
    return left


def sweep_stale(plan: _Plan | None = None) -> list[str]:
    """Removes run cgroups left by monitors that no longer exist."""
    if plan is None:
        plan = _support()[0]
    removed = []
    if plan is None:
        return removed
    for _, base in plan.bases + plan.usage_bases:
        try:
            names = os.listdir(base)
        except OSError:
            continue
        for name in names:
            if not name.startswith(_PREFIX):
                continue
            owner = name[len(_PREFIX) :].split("-", 1)[0]
            if not owner.isdigit() or _pid_alive(int(owner)):
                continue
            try:
                _remove_dir(os.path.join(base, name))
                removed.append(os.path.join(base, name))
            except OSError:
                pass
    return removed


class CgroupError(OSError, PicoprocError):
    pass


class RunCgroup:
    """The cgroup (one directory per v1 hierarchy) of one run."""

    def __init__(self, version: str, paths: dict[str, str], controllers: tuple[str, ...]):
        self.version = version
        self.paths = paths  # controller (or "unified"), or a usage controller -> directory
        self.controllers = controllers
        self.enforced: dict[str, str] = {}  # limit -> file that enforces it
        self._removed = False

    def __repr__(self) -> str:
        return f"RunCgroup({self.version}, {sorted(set(self.paths.values()))})"

    def _dir(self, controller: str) -> str | None:
        if self.version == "v2":
            return self.paths["unified"]
        return self.paths.get(controller)

    def procs_files(self) -> list[str]:
        """The cgroup.procs files a process must be written to (one per hierarchy)."""
        return [os.path.join(p, "cgroup.procs") for p in dict.fromkeys(self.paths.values())]

    @property
    def join_self(self) -> bool:
        """v1: the new process joins by writing "0" to ``tasks`` itself.  The
        kernel moves a single calling thread without taking the global
        threadgroup lock, whose RCU grace period would otherwise be paid by
        every spawn (docs/PERFORMANCE.md, "Start-up").  v2 only accepts whole
        processes (cgroup.procs)."""
        return self.version == "v1"

    def join_files(self) -> list[str]:
        """The files the spawn writes to put the reaper into this cgroup."""
        if self.join_self:
            return [os.path.join(p, "tasks") for p in dict.fromkeys(self.paths.values())]
        return self.procs_files()

    def members(self) -> set[int]:
        out: set[int] = set()
        for f in self.procs_files():
            try:
                out.update(int(p) for p in _read(f).split())
            except OSError:
                pass
        return out

    def apply_limits(self, memory_bytes: int | None, pids: int | None) -> None:
        """Writes the limits; ``pids`` counts guest tasks, the reaper is added."""
        if memory_bytes is not None and "memory" in self.controllers:
            d = self._dir("memory")
            if self.version == "v2":
                _write(os.path.join(d, "memory.max"), str(memory_bytes))
                for name, value in (("memory.swap.max", "0"), ("memory.oom.group", "1")):
                    if os.path.exists(os.path.join(d, name)):
                        _write(os.path.join(d, name), value)
                self.enforced["memory"] = os.path.join(d, "memory.max")
            else:
                _write(os.path.join(d, "memory.limit_in_bytes"), str(memory_bytes))
                memsw = os.path.join(d, "memory.memsw.limit_in_bytes")
                if os.path.exists(memsw):  # no escape into swap (needs swap accounting)
                    try:
                        _write(memsw, str(memory_bytes))
                    except OSError:
                        pass
                self.enforced["memory"] = os.path.join(d, "memory.limit_in_bytes")
        if pids is not None and "pids" in self.controllers:
            d = self._dir("pids")
            _write(os.path.join(d, "pids.max"), str(pids + 1))
            self.enforced["pids"] = os.path.join(d, "pids.max")

    @property
    def counts_cpu(self) -> bool:
        """Whether cpu_usage_ns() can tell the run's CPU time while it runs."""
        return self.version == "v2" or "cpuacct" in self.paths

    def cpu_usage_ns(self) -> int | None:
        """CPU time used so far by every process of the run, or None."""
        try:
            if self.version == "v2":
                usec = _keyed(_read(os.path.join(self.paths["unified"], "cpu.stat"))).get("usage_usec")
                return None if usec is None else usec * 1000
            if "cpuacct" in self.paths:
                return int(_read(os.path.join(self.paths["cpuacct"], "cpuacct.usage")))
        except (OSError, ValueError):
            pass
        return None

    def stats(self) -> CgroupStats:
        peak = pids_peak = None
        oom = mem_hits = pid_hits = 0
        d = self._dir("memory") if "memory" in self.controllers else None
        if d:
            try:
                if self.version == "v2":
                    if os.path.exists(os.path.join(d, "memory.peak")):
                        peak = int(_read(os.path.join(d, "memory.peak")))
                    events = _keyed(_read(os.path.join(d, "memory.events")))
                    oom = events.get("oom_kill", 0)
                    mem_hits = events.get("max", 0)
                else:
                    peak = int(_read(os.path.join(d, "memory.max_usage_in_bytes")))
                    oom = _keyed(_read(os.path.join(d, "memory.oom_control"))).get("oom_kill", 0)
                    mem_hits = int(_read(os.path.join(d, "memory.failcnt")))
            except (OSError, ValueError):
                pass
        d = self._dir("pids") if "pids" in self.controllers else None
        if d:
            try:
                pid_hits = _keyed(_read(os.path.join(d, "pids.events"))).get("max", 0)
            except OSError:
                pass
            try:
                pids_peak = int(_read(os.path.join(d, "pids.peak")))
            except (OSError, ValueError):
                pass
        return CgroupStats(peak, oom, mem_hits, pid_hits, pids_peak)

    def remove(self) -> None:
        """Kills anything still inside and removes the directories
        (idempotent).  A directory that cannot be removed is retried later
        (before the next run cgroup is made, and at exit): CgroupError says
        which and why, after everything else was done."""
        if self._removed:
            return
        errors, stuck = [], []
        for path in dict.fromkeys(self.paths.values()):
            try:
                _remove_dir(path)
            except OSError as exc:
                errors.append(f"{path}: {exc.strerror}")
                stuck.append(path)
        self._removed = True
        if errors:
            _defer_removal(stuck)
            raise CgroupError(errno.EBUSY, "could not remove run cgroup " + "; ".join(errors)
                              + " (retried later)")


def create_run_cgroup(
    memory_bytes: int | None = None, pids: int | None = None, version: str = "auto",
    count_cpu: bool = False,
) -> tuple[RunCgroup | None, str]:
    """Creates the cgroup for one run and writes its limits.

    ``version``: "auto" (what ``available()`` found), "none", "v1" or "v2"
    (use it only if that is what the machine offers).  ``count_cpu``: the
    run's CPU time must be readable while it runs (RunCgroup.cpu_usage_ns;
    on v1 this joins the cpuacct hierarchy too, where there is one).
    Returns the cgroup (or None) and a note saying what was used or why
    nothing was."""
    global _swept
    if version == "none":
        return None, "cgroups disabled by the caller"
    if version not in ("auto", "v1", "v2"):
        raise ValueError(f"cgroup: {version!r} is not one of 'auto', 'none', 'v1', 'v2'")
    plan, support = _support()
    if plan is None:
        return None, support.reason
    if version != "auto" and plan.version != version:
        return (
            None,
            f"{version} requested but this machine offers {plan.version} ({support.reason})",
        )
    if not _swept:
        _swept = True
        sweep_stale(plan)
    if _pending:
        retry_pending_removals()
    name = f"{_PREFIX}{os.getpid()}-{next(_counter)}"
    paths: dict[str, str] = {}
    bases = plan.bases + (plan.usage_bases if count_cpu else ())
    try:
        for controller, base in bases:
            if plan.version == "v2" and not os.path.isdir(base):
                # <root>/picoproc: the parent of all runs when we sit in the root cgroup.
                try:
                    os.mkdir(base)
                except FileExistsError:
                    pass
                ctl = " ".join(f"+{c}" for c in plan.controllers)
                _write(os.path.join(base, "cgroup.subtree_control"), ctl)
            path = os.path.join(base, name)
            os.mkdir(path, 0o755)
            paths[controller] = path
        cg = RunCgroup(plan.version, paths, plan.controllers)
        cg.apply_limits(memory_bytes, pids)
    except OSError as exc:
        for path in paths.values():
            try:
                os.rmdir(path)
            except OSError:
                pass
        raise CgroupError(
            exc.errno, f"creating the run cgroup ({support.reason}): {exc.strerror}"
        ) from None
    return cg, support.reason
