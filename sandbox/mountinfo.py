"""The kernel's mount and cgroup tables as this process sees them.

One parser for /proc/PID/mountinfo (proc(5)) and /proc/PID/cgroup
(cgroups(7)), for every layer that asks where something is mounted: the
run cgroups (picoproc.cgroups, picoproc.oci.cgroup), ``picoproc doctor``,
the file policy's host mount identities (picoproc.fspolicy) and the OCI
engine's clean-up.

The kernel writes a space, tab, newline or backslash in a mountinfo path as
a backslash and three octal digits (``\\040`` for a space); ``unescape``
undoes every such escape, so a mount point with any of them reads back as
the path it is.
"""

from __future__ import annotations

import os
import re
import select
import threading

from picoproc import records

MOUNTINFO = "/proc/self/mountinfo"
PROC_CGROUP = "/proc/self/cgroup"

_ESCAPE = r"\\([0-7]{3})"  # compiled on first use (re keeps it), not at import


def unescape(field: str) -> str:
    """A mountinfo path field as the path it names (``\\ooo`` octal escapes
    decoded; a backslash not followed by three octal digits is kept)."""
    if "\\" not in field:
        return field
    return re.sub(_ESCAPE, lambda m: chr(int(m.group(1), 8)), field)


@records.record(frozen=True)
class MountEntry:
    """One line of mountinfo."""

    mount_id: int
    parent_id: int
    device: str  # "major:minor" of the file system
    root: str  # the path inside that file system shown at mount_point
    mount_point: str
    options: tuple[str, ...]  # per-mount options: "ro" or "rw", "nosuid", ...
    fstype: str
    source: str
    super_options: tuple[str, ...]  # per-file-system options (cgroup v1: its controllers)

    @property
    def read_only(self) -> bool:
        return "ro" in self.options


def parse_mountinfo(text: str) -> list[MountEntry]:
    """Every well-formed line of a mountinfo text, in order; others are skipped."""
    out = []
    for line in text.splitlines():
        left, sep, right = line.partition(" - ")
        if not sep:
            continue
        fields, tail = left.split(), right.split()
        if len(fields) < 6 or len(tail) < 3 or not (fields[0].isdigit() and fields[1].isdigit()):
            continue
        out.append(MountEntry(
            mount_id=int(fields[0]),
            parent_id=int(fields[1]),
            device=fields[2],
            root=unescape(fields[3]),
            mount_point=unescape(fields[4]),
            options=tuple(fields[5].split(",")),
            fstype=tail[0],
            source=unescape(tail[1]),
            super_options=tuple(tail[2].split(",")),
        ))
    return out


def read_mountinfo(path: str | None = None) -> list[MountEntry]:
    """parse_mountinfo of ``path`` (this process's mount table by default);
    OSError if it cannot be read."""
    with open(path or MOUNTINFO, encoding="utf-8", errors="surrogateescape") as f:
        return parse_mountinfo(f.read())


def parse_proc_cgroup(text: str) -> tuple[str | None, dict[str, str]]:
    """(the cgroup v2 path or None, {v1 controller or ``name=...``: path}) of
    a /proc/PID/cgroup text; malformed lines are skipped."""
    unified = None
    v1: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        hierarchy, controllers, path = parts
        if hierarchy == "0" and controllers == "":
            unified = path
        else:
            for controller in controllers.split(","):
                if controller:
                    v1[controller] = path
    return unified, v1


def read_proc_cgroup(path: str | None = None) -> tuple[str | None, dict[str, str]]:
    """parse_proc_cgroup of ``path`` (this process's cgroups by default)."""
    with open(path or PROC_CGROUP, encoding="utf-8", errors="surrogateescape") as f:
        return parse_proc_cgroup(f.read())


def cgroup_mounts(entries: list[MountEntry]) -> tuple[str | None, dict[str, str]]:
    """(the first cgroup2 mount point or None, {v1 controller: the first
    mount point it is bound to})."""
    unified = None
    v1: dict[str, str] = {}
    for entry in entries:
        if entry.fstype == "cgroup2" and unified is None:
            unified = entry.mount_point
        elif entry.fstype == "cgroup":
            for option in entry.super_options:
                v1.setdefault(option, entry.mount_point)
    return unified, v1


class HostMounts:
    """A mount table read as which file system, and which path in it, a
    host path shows.  Two mounts can show one tree under different paths (a
    bind mount): the same files have the same identity through both,
    whatever the paths say."""

    def __init__(self, text: str) -> None:
        mounts = parse_mountinfo(text)
        # A mount point covered by a later mount on the same point (its child
        # there) is not what a path shows: keep the top one of each point.
        points = {m.mount_id: m.mount_point for m in mounts}
        covered = {m.parent_id for m in mounts if points.get(m.parent_id) == m.mount_point}
        self._by_point = {m.mount_point: (m.device, m.root) for m in mounts
                          if m.mount_id not in covered}
        self._known: dict[str, tuple[str, str] | None] = {}  # builds ask for the same paths

    def identity(self, real_path: str) -> tuple[str, str] | None:
        """(device, path inside that file system) of an absolute, resolved
        host path, or None if no mount shows it."""
        try:
            return self._known[real_path]
        except KeyError:
            pass
        point, found = real_path, None
        while True:
            mount = self._by_point.get(point)
            if mount is not None:
                device, root = mount
                rest = real_path[len(point):].lstrip("/")
                found = device, os.path.normpath(root.rstrip("/") + "/" + rest) if rest else root
                break
            if point == "/":
                break
            point = os.path.dirname(point)
        if len(self._known) < 65536:
            self._known[real_path] = found
        return found


_current_lock = threading.Lock()
_current_fd = -1
_current: HostMounts | None = None


def current_host_mounts() -> HostMounts | None:
    """This process's mount table as it is now, or None if it cannot be
    read.  Parsed again only when it changed: the open mountinfo file polls
    POLLPRI after a mount or unmount in this mount namespace."""
    global _current_fd, _current
    with _current_lock:
        try:
            if _current_fd < 0:
                _current_fd = os.open(MOUNTINFO, os.O_RDONLY | os.O_CLOEXEC)
                _current = None
            else:
                poller = select.poll()
                poller.register(_current_fd, select.POLLPRI)
                if poller.poll(0):
                    _current = None
            if _current is None:
                os.lseek(_current_fd, 0, os.SEEK_SET)
                chunks = []
                while chunk := os.read(_current_fd, 65536):
                    chunks.append(chunk)
                _current = HostMounts(b"".join(chunks).decode("utf-8", "surrogateescape"))
        except OSError:
            return None
        return _current
