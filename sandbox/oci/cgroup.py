"""The container's cgroup, where the engine asked for it (``linux.cgroupsPath``).

Engines read a container's usage from, and kill it through, the cgroup they
named, so the runtime makes that cgroup and puts the container in it, in
every hierarchy that carries a limit it writes (v1: memory, pids, cpu,
cpuacct, freezer; v2: the unified tree).  Inside it are two leaves:

    CGROUP/            memory.max, pids.max, cpu.max: the container's limits
    CGROUP/monitor     the container process (the monitor serving the guest)
    CGROUP/guest       the picoprocess: reaper, guest, everything it forks
    CGROUP/exec-N      each program started by ``exec`` and its reaper

so that the monitor's own work for the guest is charged to the container
too, and cgroup v2's rule (processes only in leaves) holds.  The guest leaf
is the run cgroup picoproc.spawn puts the reaper into and removes after the
run; ``delete`` removes the rest, after killing anything still inside.

Paths: absolute ones are taken from each hierarchy's root, relative ones
from the runtime's own cgroup (as runc does); with ``--systemd-cgroup`` a
``slice:prefix:name`` path names ``/slice/prefix-name.scope``, made
directly (no systemd is asked).  Without cgroupsPath: ``/picoproc-oci/ID``.
"""

from __future__ import annotations

import errno
import os
import signal
import time

from picoproc import cgroups as run_cgroups
from picoproc import mountinfo
from picoproc.errors import PicoprocError

V1_CONTROLLERS = ("memory", "pids", "cpu", "cpuacct", "freezer")
MONITOR_LEAF = "monitor"
GUEST_LEAF = "guest"


class CgroupError(OSError, PicoprocError):
    pass


def _mounts() -> tuple[str | None, dict[str, str]]:
    """(cgroup2 mount or None, {v1 controller: mount})."""
    unified, v1 = mountinfo.cgroup_mounts(mountinfo.read_mountinfo())
    return unified, {c: p for c, p in v1.items() if c in V1_CONTROLLERS}


def _own(controller: str | None) -> str:
    """The runtime's own cgroup path in a hierarchy (None: v2)."""
    v2, v1 = mountinfo.read_proc_cgroup()
    found = v2 if controller is None else v1.get(controller)
    return "/" if found is None else found


def _systemd_path(text: str) -> str:
    slice_, prefix, name = text.split(":", 2)
    slice_ = slice_ or "system.slice"
    # "a-b.slice" lives in "a.slice/a-b.slice", as systemd nests slices.
    parts = []
    if slice_ != "-.slice":
        stem = slice_[: -len(".slice")] if slice_.endswith(".slice") else slice_
        pieces = stem.split("-")
        for i in range(1, len(pieces) + 1):
            parts.append("-".join(pieces[:i]) + ".slice")
    leaf = f"{prefix}-{name}.scope" if prefix else f"{name}.scope"
    return "/" + "/".join(parts + [leaf])


_write = run_cgroups._write  # one write(2) of the whole value, as the kernel wants


def _read_pids(path: str) -> list[int]:
    try:
        with open(os.path.join(path, "cgroup.procs")) as f:
            return [int(p) for p in f.read().split()]
    except OSError:
        return []


class ContainerCgroup:
    """The container's cgroup directories: {"unified" or v1 controller: path}."""

    def __init__(self, version: str, paths: dict[str, str]) -> None:
        self.version = version
        self.paths = paths

    def to_json(self) -> dict:
        return {"version": self.version, "paths": self.paths}

    @classmethod
    def from_json(cls, doc: dict | None) -> ContainerCgroup | None:
        if not doc:
            return None
        return cls(doc["version"], dict(doc["paths"]))

    @classmethod
    def create(cls, cgroups_path: str | None, cid: str, *, systemd: bool = False) -> ContainerCgroup:
        if not cgroups_path:
            rel = f"/picoproc-oci/{cid}"
        elif systemd and cgroups_path.count(":") == 2:
            rel = _systemd_path(cgroups_path)
        else:
            rel = cgroups_path
        if ".." in rel.split("/"):
            raise CgroupError(errno.EINVAL, f"linux.cgroupsPath {cgroups_path!r}: '..' is not allowed")
        unified, v1 = _mounts()
        if v1:
            version, bases = "v1", {c: (m, _own(c)) for c, m in v1.items()}
        elif unified:
            version, bases = "v2", {"unified": (unified, _own(None))}
        else:
            raise CgroupError(errno.ENOENT, "no cgroup hierarchy is mounted")
        paths: dict[str, str] = {}
        for key, (mount, own) in bases.items():
            path = rel if rel.startswith("/") else os.path.join(own, rel)
            paths[key] = os.path.normpath(mount + "/" + path.lstrip("/"))
        cg = cls(version, paths)
        try:
            for key, path in paths.items():
                if version == "v2":
                    cg._v2_makedirs(path)
                else:
                    os.makedirs(path, 0o755, exist_ok=True)
                for leaf in (MONITOR_LEAF, GUEST_LEAF):
                    os.makedirs(os.path.join(path, leaf), 0o755, exist_ok=True)
                if _read_pids(path) or _read_pids(os.path.join(path, GUEST_LEAF)):
                    raise CgroupError(errno.EBUSY, f"container's cgroup {path} is not empty")
        except OSError as exc:
            cg.remove()
            if isinstance(exc, CgroupError):
                raise
            raise CgroupError(exc.errno, f"creating the container's cgroup {rel}: {exc.strerror}") from None
        return cg

    def _v2_makedirs(self, path: str) -> None:
        """Each level delegates the controllers below it (v2 needs that)."""
        mount = path
        while os.path.exists(os.path.join(os.path.dirname(mount), "cgroup.controllers")) and mount != "/":
            mount = os.path.dirname(mount)
        parts = os.path.relpath(path, mount).split("/")
        cur = mount
        for part in parts:
            try:
                with open(os.path.join(cur, "cgroup.controllers")) as f:
                    have = f.read().split()
                want = " ".join(f"+{c}" for c in ("memory", "pids", "cpu") if c in have)
                if want:
                    _write(os.path.join(cur, "cgroup.subtree_control"), want)
            except OSError:
                pass
            cur = os.path.join(cur, part)
            os.makedirs(cur, 0o755, exist_ok=True)
        try:
            with open(os.path.join(cur, "cgroup.controllers")) as f:
                have = f.read().split()
            want = " ".join(f"+{c}" for c in ("memory", "pids", "cpu") if c in have)
            if want:
                _write(os.path.join(cur, "cgroup.subtree_control"), want)
        except OSError:
            pass

    def _dir(self, controller: str) -> str | None:
        return self.paths.get("unified") if self.version == "v2" else self.paths.get(controller)

    def apply(self, resources) -> dict[str, str]:
        """Writes the limits; returns {limit: file that enforces it}."""
        enforced: dict[str, str] = {}
        d = self._dir("memory")
        if resources.memory_bytes is not None and d:
            if self.version == "v2":
                _write(os.path.join(d, "memory.max"), str(resources.memory_bytes))
                for name, value in (("memory.swap.max", "0"), ("memory.oom.group", "1")):
                    if os.path.exists(os.path.join(d, name)):
                        _write(os.path.join(d, name), value)
                enforced["memory"] = os.path.join(d, "memory.max")
            else:
                _write(os.path.join(d, "memory.limit_in_bytes"), str(resources.memory_bytes))
                memsw = os.path.join(d, "memory.memsw.limit_in_bytes")
                if os.path.exists(memsw):
                    try:
                        _write(memsw, str(resources.memory_bytes))
                    except OSError:
                        pass
                enforced["memory"] = os.path.join(d, "memory.limit_in_bytes")
        d = self._dir("pids")
        if resources.pids is not None and d:
            _write(os.path.join(d, "pids.max"), str(resources.pids))
            enforced["pids"] = os.path.join(d, "pids.max")
        d = self._dir("cpu")
        if d and (resources.cpu_quota_us or resources.cpu_shares):
            if self.version == "v2":
                if resources.cpu_quota_us:
                    period = resources.cpu_period_us or 100000
                    _write(os.path.join(d, "cpu.max"), f"{resources.cpu_quota_us} {period}")
                    enforced["cpu"] = os.path.join(d, "cpu.max")
                if resources.cpu_shares:
                    # runc's conversion of shares (2..262144) to weight (1..10000).
                    weight = 1 + ((resources.cpu_shares - 2) * 9999) // 262142
                    _write(os.path.join(d, "cpu.weight"), str(max(1, min(weight, 10000))))
            else:
                if resources.cpu_period_us:
                    _write(os.path.join(d, "cpu.cfs_period_us"), str(resources.cpu_period_us))
                if resources.cpu_quota_us:
                    _write(os.path.join(d, "cpu.cfs_quota_us"), str(resources.cpu_quota_us))
                    enforced["cpu"] = os.path.join(d, "cpu.cfs_quota_us")
                if resources.cpu_shares:
                    _write(os.path.join(d, "cpu.shares"), str(resources.cpu_shares))
        return enforced

    def join(self, pid: int) -> None:
        """Moves a process into the monitor leaf of every hierarchy."""
        for path in dict.fromkeys(self.paths.values()):
            _write(os.path.join(path, MONITOR_LEAF, "cgroup.procs"), str(pid))

    def guest_run_cgroup(self, enforced: dict[str, str], leaf: str = GUEST_LEAF) -> run_cgroups.RunCgroup:
        """A leaf as the run cgroup spawn joins and removes after the run (the
        limits sit one level up): ``guest`` for the program, one of its own
        for each exec'd program, so that ending one never kills another."""
        if self.version == "v2":
            paths = {"unified": os.path.join(self.paths["unified"], leaf)}
        else:
            paths = {c: os.path.join(p, leaf) for c, p in self.paths.items()
                     if c in run_cgroups.CONTROLLERS}
        for path in paths.values():
            os.makedirs(path, 0o755, exist_ok=True)
        controllers = tuple(c for c in run_cgroups.CONTROLLERS
                            if (self.version == "v2" or c in self.paths))
        cg = run_cgroups.RunCgroup(self.version, paths, controllers)
        cg.enforced.update({k: v for k, v in enforced.items() if k in ("memory", "pids")})
        return cg

    def pids(self) -> list[int]:
        """Every process in the container's cgroup, the monitor included."""
        out: dict[int, None] = {}
        for base in dict.fromkeys(self.paths.values()):
            for dirpath, _, _ in os.walk(base):
                for pid in _read_pids(dirpath):
                    out[pid] = None
        return list(out)

    def guest_pids(self) -> list[int]:
        """Every process of the container but the monitor."""
        out: dict[int, None] = {}
        for base in dict.fromkeys(self.paths.values()):
            for dirpath, _, _ in os.walk(base):
                if os.path.relpath(dirpath, base).split("/")[0] == MONITOR_LEAF:
                    continue
                for pid in _read_pids(dirpath):
                    out[pid] = None
        return list(out)

    def remove_default_parents(self, cid: str) -> None:
        """The /picoproc-oci parent made when the engine named no cgroup,
        once no other container is in it (an engine's own parents stay)."""
        for path in dict.fromkeys(self.paths.values()):
            parent = os.path.dirname(path)
            if os.path.basename(path) == cid and os.path.basename(parent) == "picoproc-oci":
                try:
                    os.rmdir(parent)
                except OSError:
                    pass

    def remove(self, timeout: float = 10.0) -> None:
        """Kills what is left inside and removes the directories, leaves first."""
        deadline = time.monotonic() + timeout
        errors = []
        for base in dict.fromkeys(self.paths.values()):
            if not os.path.isdir(base):
                continue
            dirs = [d for d, _, _ in os.walk(base)]
            for d in reversed(dirs):  # deepest first
                while True:
                    try:
                        os.rmdir(d)
                        break
                    except FileNotFoundError:
                        break
                    except OSError as exc:
                        if exc.errno != errno.EBUSY or time.monotonic() > deadline:
                            errors.append(f"{d}: {exc.strerror}")
                            break
                    for pid in _read_pids(d):
                        try:
                            os.kill(pid, signal.SIGKILL)
                        except ProcessLookupError:
                            pass
                    time.sleep(0.005)
        if errors:
            raise CgroupError(errno.EBUSY, "could not remove the container's cgroup: " + "; ".join(errors))
