"""The security monitor's driver: the C event loop that serves mediated calls.

``Monitor`` runs one C loop (native/loop.c) in a Python thread; the loop waits
on the seccomp listener of every guest added to it and serves each mediated
call in C (no Python per notification; cffi releases the GIL while the loop
runs).  Python composes the policies, adds and removes guests while the loop
runs, and drains the audit records in batches.

``FsPolicy`` is the file half of a guest's policy: the manifest's mount table
as directory fds opened once (O_PATH), the scratch tmpfs mounts as the
directory fds ``picoproc.scratch`` made, the hidden paths and the hidden
file names.

``GuestArea`` is a picoprocess's argument area and its channels: the
library OS passes mediated arguments through the area and receives fds on
the channels (native/loop.h), so that no call reads the guest's memory or
waits for NOTIF_ADDFD's wake-ups.  Spawn gives the guest its ends; the
monitor maps the area and keeps its ends of the channels.

Typical use::

    with Monitor() as mon, FsPolicy.from_manifest(manifest, scratch) as fs, GuestArea() as area:
        guest = spawn_picoprocess(SpawnConfig(..., area=area))
        handle = mon.add_guest(guest.listener_fd, guest.pid, fs, area=area)
        os.close(guest.listener_fd)      # the loop keeps its own copy
        ... wait for the guest ...
        stats = mon.remove_guest(handle)
        records = mon.drain_audit()
"""

from __future__ import annotations

import errno as errno_mod
import functools
import os
import re
import select
import stat as stat_mod
import struct
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Self

from picoproc.native import ffi, lib

# <linux/seccomp.h>
SECCOMP_FILTER_FLAG_NEW_LISTENER = 1 << 3
SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV = 1 << 5  # Linux 5.19
# What spawn must pass to seccomp(2) for a guest served by a Monitor: a
# listener for the monitor, and (WAIT_KILLABLE_RECV) once the monitor has
# received a call, only a fatal signal can make the guest abandon it, so a
# call the monitor performs (a file created, a socket connected) is never
# lost to a stray signal.
GUEST_SECCOMP_FLAGS = SECCOMP_FILTER_FLAG_NEW_LISTENER | SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV

DECISIONS = {
    lib.PICO_DECISION_ALLOW: "allow",
    lib.PICO_DECISION_DENY: "deny",
    lib.PICO_DECISION_ERROR: "error",
    lib.PICO_DECISION_ABANDONED: "abandoned",
}

# Why a call was denied (native/denial.h), as the audit record's "reason";
# picoproc.denials turns each into the rule and the flag that would grant it.
DENIAL_REASONS = {
    lib.PICO_DENY_NOT_MOUNTED: "not_mounted",
    lib.PICO_DENY_HIDDEN_PATH: "hidden_path",
    lib.PICO_DENY_HIDDEN_NAME: "hidden_name",
    lib.PICO_DENY_HIDDEN_OBJECT: "hidden_object",
    lib.PICO_DENY_READ_ONLY: "read_only",
    lib.PICO_DENY_NOEXEC: "noexec",
    lib.PICO_DENY_DEVICE: "device",
    lib.PICO_DENY_HOST_MOUNT: "host_mount",
    lib.PICO_DENY_HOLDS_HIDDEN: "holds_hidden",
    lib.PICO_DENY_NET: "net_not_granted",
    lib.PICO_DENY_XATTR_NAMESPACE: "xattr_namespace",
    lib.PICO_DENY_HOST_TERMINAL: "host_terminal",
    lib.PICO_DENY_RUN_BOUND: "run_bound",
}

_NOTE_EMULATED = lib.PICO_NOTE_EMULATED

def _call_names() -> dict[int, str]:
    """Mediated call index -> name, as the C loop was built (the ABI table's
    generated header): no need to parse the table in every monitor."""
    names = {}
    while (name := lib.pico_mediated_call_name(len(names))) != ffi.NULL:
        names[len(names)] = ffi.string(name).decode()
    return names


CALL_NAMES = _call_names()
_DRAIN_BATCH = 1024


class MonitorError(OSError):
    """The monitor could not do what was asked; the message says what."""


def guest_identity() -> tuple[int, int, tuple[int, ...]]:
    """The host identity file operations run under: nobody (no supplementary
    groups) for a root monitor, otherwise the invoking user."""
    if os.geteuid() == 0:
        return 65534, 65534, ()
    return os.geteuid(), os.getegid(), tuple(os.getgroups())


def escape_bytes(data: bytes) -> str:
    """Text for a guest-supplied name: UTF-8 as is, every other byte as
    \\xNN and a backslash as \\\\, so distinct names stay distinct."""
    # Fast path (nearly every record): valid UTF-8 with no backslash is
    # itself; the per-character loop below cost microseconds per record.
    if b"\\" not in data:
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            pass
    out = []
    text = data.decode("utf-8", "surrogateescape")
    for ch in text:
        code = ord(ch)
        if ch == "\\":
            out.append("\\\\")
        elif 0xDC80 <= code <= 0xDCFF:  # an undecodable byte
            out.append(f"\\x{code - 0xDC00:02x}")
        else:
            out.append(ch)
    return "".join(out)


def _raise_errno(ret: int, what: str) -> None:
    if ret < 0:
        raise MonitorError(-ret, f"{what}: {os.strerror(-ret)}")


class _Resolver:
    """os.path.realpath for absolute paths, remembering what each lstat (and
    readlink) found for the life of one policy build.

    A manifest's hidden paths share most of their directories (/etc,
    /etc/ssh, ...): resolved one by one, os.path.realpath looks at the same
    components again for each of them (docs/PERFORMANCE.md, "Start-up").
    Resolving anew for every build
    matters: a host symlink changed between two runs must move the aliases
    with it (a cache of the resolved aliases kept the old target hidden and
    the new one visible).  The result is os.path.realpath's (non-strict):
    missing components are kept as written, and at a symlink loop the rest
    of the path is left unresolved."""

    def __init__(self) -> None:
        self._links: dict[str, str | None] = {}  # path -> symlink text, None if not a symlink
        self._missing: set[str] = set()  # paths lstat found absent (ENOENT, ENOTDIR)

    def _link(self, path: str) -> str | None:
        try:
            return self._links[path]
        except KeyError:
            pass
        text = None
        if path.rpartition("/")[0] in self._missing:
            self._missing.add(path)  # nothing exists under a missing path
        else:
            try:
                if stat_mod.S_ISLNK(os.lstat(path).st_mode):
                    text = os.readlink(path)
            except (FileNotFoundError, NotADirectoryError):
                self._missing.add(path)
            except OSError:
                pass  # unreadable: kept as written, as realpath does
        self._links[path] = text
        return text

    def realpath(self, path: str, base: str = "/") -> str:
        """os.path.realpath(path); a relative ``path`` is taken under
        ``base``, which must already be a real (resolved, absolute) path."""
        resolved, _ = self._walk(base, path, {})
        return os.path.normpath(resolved)

    def _walk(self, base: str, rest: str, links_seen: dict[str, str | None]) -> tuple[str, bool]:
        """Appends ``rest`` to the resolved directory ``base`` component by
        component, following symlinks; (path, False) after a loop."""
        if rest.startswith("/"):
            base, rest = "/", rest[1:]
        while rest:
            name, _, rest = rest.partition("/")
            if name in ("", "."):
                continue
            if name == "..":
                base = os.path.dirname(base)  # base is absolute: "/" stays "/"
                continue
            candidate = base + name if base.endswith("/") else base + "/" + name
            text = self._link(candidate)
            if text is None:
                base = candidate
                continue
            if candidate in links_seen:
                done = links_seen[candidate]
                if done is None:  # met again while resolving it: a loop
                    return os.path.join(candidate, rest), False
                base = done
                continue
            links_seen[candidate] = None
            base, ok = self._walk(base, text, links_seen)
            if not ok:
                return os.path.join(base, rest), False
            links_seen[candidate] = base
        return base, True


def _unescape_mountinfo(field: str) -> str:
    """A mountinfo path field: space, tab, newline and backslash are \\ooo."""
    if "\\" not in field:
        return field
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


class MountTable:
    """The monitor's mount table (/proc/self/mountinfo), to tell which file
    system and which path in it a host path shows.  Two mounts can show one
    tree under different paths (a bind mount): the same files have the same
    identity through both, whatever the paths say."""

    def __init__(self, text: str) -> None:
        mounts = []  # (id, parent, device, root, mount point)
        for line in text.splitlines():
            fields = line.split(" ")
            if len(fields) < 7 or "-" not in fields[6:]:
                continue
            mounts.append((fields[0], fields[1], fields[2], _unescape_mountinfo(fields[3]),
                           _unescape_mountinfo(fields[4])))
        # A mount point covered by a later mount on the same point (its child
        # there) is not what a path shows: keep the top one of each point.
        covered = {parent for mid, parent, _, _, point in mounts
                   for pid, _, _, _, ppoint in mounts if pid == parent and ppoint == point}
        self._by_point = {point: (device, root) for mid, _, device, root, point in mounts
                          if mid not in covered}
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


_mount_table_lock = threading.Lock()
_mount_table_fd = -1
_mount_table: MountTable | None = None


def current_mount_table() -> MountTable | None:
    """The monitor's mount table as it is now, or None if it cannot be read.
    Parsed again only when it changed: the open mountinfo file polls
    POLLPRI after a mount or unmount in this mount namespace."""
    global _mount_table_fd, _mount_table
    with _mount_table_lock:
        try:
            if _mount_table_fd < 0:
                _mount_table_fd = os.open("/proc/self/mountinfo", os.O_RDONLY | os.O_CLOEXEC)
                _mount_table = None
            else:
                poller = select.poll()
                poller.register(_mount_table_fd, select.POLLPRI)
                if poller.poll(0):
                    _mount_table = None
            if _mount_table is None:
                os.lseek(_mount_table_fd, 0, os.SEEK_SET)
                chunks = []
                while chunk := os.read(_mount_table_fd, 65536):
                    chunks.append(chunk)
                _mount_table = MountTable(b"".join(chunks).decode("utf-8", "surrogateescape"))
        except OSError:
            return None
        return _mount_table


def _within(path: str, top: str) -> bool:
    return path == top or top == "/" or path.startswith(top.rstrip("/") + "/")


# The pure parts of finding a hidden path's aliases are cached (they depend
# only on their arguments); resolving the host path, which depends on the
# host's symlinks at the time, is done for every build (_Resolver).

@functools.lru_cache(maxsize=4096)
def _mount_of(mounts: tuple[tuple[str, str | None], ...], guest: str) -> tuple[str, str] | None:
    """(host path of the directory mount ``guest`` is under (longest match),
    the rest of ``guest`` below it), or None."""
    best = None
    for g, h in mounts:
        if h is None:
            continue
        if guest == g or g == "/" or guest.startswith(g.rstrip("/") + "/"):
            if best is None or len(g) > len(best[0]):
                best = (g, h)
    if best is None:
        return None
    rest = guest[len(best[0]):].lstrip("/") if best[0] != "/" else guest.lstrip("/")
    return best[1], rest


@functools.lru_cache(maxsize=4096)
def _aliases_of(mounts: tuple[tuple[str, str | None], ...], guest: str, host: str) -> tuple[str, ...]:
    """``guest`` and every other guest path whose mount shows host path ``host``."""
    out = [guest]
    for other_guest, other_host in mounts:
        if other_host is None:
            continue
        if host == other_host or host.startswith(other_host.rstrip("/") + "/"):
            rest = host[len(other_host):].lstrip("/")
            alias = other_guest.rstrip("/") + "/" + rest if rest else other_guest
            alias = alias or "/"
            if alias not in out:
                out.append(alias)
    return tuple(out)


@functools.lru_cache(maxsize=4096)
def _identity_aliases(mount_ids: tuple[tuple[str, tuple[str, str]], ...],
                      hidden: tuple[str, str]) -> tuple[str, ...]:
    """The guest paths whose mount shows the host object of identity
    ``hidden`` (MountTable.identity), a tree holding it, or lies inside it:
    through a bind mount of an ancestor, or of a directory inside it, too.
    ``mount_ids``: (guest path, identity) of every mount."""
    device, path = hidden
    out = []
    for other_guest, (other_device, other_path) in mount_ids:
        if other_device != device:
            continue
        if _within(path, other_path):
            rest = path[len(other_path):].lstrip("/") if other_path != "/" else path.lstrip("/")
            out.append(other_guest.rstrip("/") + "/" + rest if rest else other_guest)
        elif _within(other_path, path):
            out.append(other_guest)  # the whole of that mount is inside the hidden tree
    return tuple(out)


def _hidden_aliases(mounts: tuple[tuple[str, str | None], ...], guest: str,
                    resolver: _Resolver | None = None, table: MountTable | None = None,
                    mount_ids: tuple[tuple[str, tuple[str, str]], ...] = ()) -> tuple[str, ...]:
    """``guest`` and every other guest path showing the same host tree, as
    the host's symlinks and mounts are now.  ``mounts``: the directory
    mounts (host path None for others); ``table`` and ``mount_ids``: the
    mount table and the identity of every mount, single files included."""
    found = _mount_of(mounts, guest)
    if found is None:
        return (guest,)
    base, rest = found
    # The mount's host path is already real (add_mount resolved it in this
    # build): only ``rest`` needs resolving.
    host = (resolver or _Resolver()).realpath(rest, base) if rest else base
    out = _aliases_of(mounts, guest, host)
    hidden = None if table is None else table.identity(host)
    if hidden is None:
        return out
    extra = [a for a in _identity_aliases(mount_ids, hidden) if a not in out]
    return out + tuple(extra) if extra else out


def _kernel_mount_attrs(mode: int, exec: bool) -> int:
    """The mount attributes the kernel enforces for a mount of this policy
    mode (PICO_MOUNT_*): RDONLY for read-only, NOEXEC without exec, NOSUID
    with either; 0: the host directory is used as it is."""
    attrs = (lib.PICO_MOUNT_ATTR_RDONLY if mode == lib.PICO_MOUNT_RO else 0) | (
        0 if exec else lib.PICO_MOUNT_ATTR_NOEXEC)
    return attrs | lib.PICO_MOUNT_ATTR_NOSUID if attrs else 0


# Detached copies made for earlier policies, kept for the next ones while
# the mount table stays the same: (dev, ino, attrs) -> O_PATH fd.  Sharing
# is safe (a copy is a view of the host directory with attributes that only
# take away); a changed mount table drops them all, so a copy never shows
# the host's mounts as they were (a mount added on the host since would
# show what it covers).  Making them takes a system call each as root and a
# helper process unprivileged (docs/PERFORMANCE.md, "Start-up").
_COPY_CACHE_MAX = 256
_copy_lock = threading.Lock()
_copy_cache: dict[tuple[int, int, int], int] = {}
_copy_cache_table: MountTable | None = None


def _detached_copies(wanted: list[tuple[str, int, str, int]]) -> list[int]:
    """For each (guest, O_PATH directory fd, its real path, attrs): a
    detached copy of the directory with the mount attributes ``attrs``
    (pico_detached_mounts), or -1 where attrs is 0.  Every fd returned is
    the caller's to close."""
    global _copy_cache_table
    out = [-1] * len(wanted)
    todo: dict[tuple[int, int, int], list[int]] = {}  # (dev, ino, attrs) -> indexes
    for i, (_, fd, _, attrs) in enumerate(wanted):
        if attrs:
            st = os.fstat(fd)
            todo.setdefault((st.st_dev, st.st_ino, attrs), []).append(i)
    if not todo:
        return out
    with _copy_lock:
        table = current_mount_table()
        if table is None or table is not _copy_cache_table or len(_copy_cache) > _COPY_CACHE_MAX:
            for fd in _copy_cache.values():
                os.close(fd)
            _copy_cache.clear()
            _copy_cache_table = table
        missing = [key for key in todo if key not in _copy_cache]
        made = _make_copies([wanted[todo[key][0]] for key in missing])
        if table is not None:
            _copy_cache.update(zip(missing, made, strict=True))
        try:
            for key, indexes in todo.items():
                shared = _copy_cache[key] if table is not None else made[missing.index(key)]
                for i in indexes:
                    try:
                        out[i] = os.dup(shared)
                    except OSError as exc:
                        raise MonitorError(exc.errno, f"mount {wanted[i][0]}: {exc.strerror}") from None
        except BaseException:
            for fd in out:
                if fd >= 0:
                    os.close(fd)
            raise
        finally:
            if table is None:
                for fd in made:
                    os.close(fd)
    return out


def _make_copies(wanted: list[tuple[str, int, str, int]]) -> list[int]:
    """pico_detached_mounts for each (guest, fd, real path, attrs)."""
    out: list[int] = []
    in_userns = int(os.geteuid() != 0)
    try:
        for start in range(0, len(wanted), lib.PICO_HELPER_MAX_FDS):
            chunk = wanted[start:start + lib.PICO_HELPER_MAX_FDS]
            paths = [ffi.new("char[]", os.fsencode(real)) for _, _, real, _ in chunk]
            fds = ffi.new("int[]", len(chunk))
            ret = lib.pico_detached_mounts(ffi.new("int[]", [fd for _, fd, _, _ in chunk]),
                                           ffi.new("char *[]", paths),
                                           ffi.new("unsigned int[]", [a for _, _, _, a in chunk]),
                                           len(chunk), in_userns, fds)
            if ret < 0:
                names = ", ".join(guest for guest, *_ in chunk)
                how = "open_tree + mount_setattr" + (" in a user namespace helper" if in_userns else "")
                raise MonitorError(-ret, f"mount {names}: making the read-only/no-exec copy of the host "
                                   f"directory ({how}): {os.strerror(-ret)}")
            out.extend(fds)
    except BaseException:
        for fd in out:
            os.close(fd)
        raise
    return out


# Errors of opening a host path as a directory that mean "not one" (what a
# failing stat or a non-directory told before): the file-mount path decides.
_NOT_OPENABLE_AS_DIRECTORY = frozenset({errno_mod.ENOTDIR, errno_mod.ENOENT, errno_mod.ELOOP,
                                        errno_mod.EACCES, errno_mod.ENAMETOOLONG})


class FsPolicy:
    """A guest's file policy (native/mediate_fs.c).  Build it, then hand it
    to Monitor.add_guest; close it only after the guest is removed."""

    def __init__(self) -> None:
        self._p = lib.pico_fs_policy_new()
        if self._p == ffi.NULL:
            raise MemoryError("pico_fs_policy_new")
        self._mounts: list[tuple[str, str | None]] = []  # (guest, host real path of a directory)
        self._host_objects: list[tuple[str, str]] = []  # (guest, host real path) of every host mount
        self._identities = None  # (mount count, MountTable, identities), see _mount_identities
        self._in_use = False

    @property
    def pointer(self):
        if self._p is None:
            raise MonitorError(errno_mod.EBADF, "the file policy is closed")
        return self._p

    def _building(self):
        # The loop thread reads the policy without a lock: it must not
        # change (or move in memory) once a guest uses it.
        if self._in_use:
            raise MonitorError(errno_mod.EBUSY, "the file policy is in use by a guest: build a new one")
        return self.pointer

    def add_mount(self, guest: str, host: str, *, writable: bool = False, exec: bool = True,
                  data_only: bool = False) -> None:
        """Shows the host directory (or file) ``host`` at ``guest``.  With
        ``data_only`` files may be opened for writing but never changed
        otherwise (mode, owner, times, size, names): for device files.
        A read-only or no-exec mount is shown through a detached copy of
        the host directory with those mount attributes (see add_mounts)."""
        self.add_mounts([(guest, host, writable, exec, data_only)])

    def add_mounts(self, mounts: Iterable[tuple[str, str, bool, bool, bool]]) -> None:
        """add_mount for each (guest, host, writable, exec, data_only).

        Where a mount is read-only or no-exec, the monitor does not use the
        host directory itself but a detached copy of it (open_tree +
        mount_setattr: it appears in no mount table and lives as long as an
        fd on it) with the mount attributes RDONLY and/or NOEXEC (and
        NOSUID): every fd the monitor opens there, and so every fd the guest
        gets from there, carries them, and the kernel enforces them on its
        own: no write through it, and no mmap(PROT_EXEC) or execveat of a
        no-exec file, whoever asks (the dynamic loader mapping a program,
        dlopen).  The copies of one call are made together (an unprivileged
        monitor needs one helper in a user namespace for them)."""
        opened = []  # (guest, fd, leaf, mode, exec, real)
        try:
            for guest, host, writable, exec_, data_only in mounts:
                try:
                    fd, leaf, real = self._open_host(guest, host)
                except MonitorError:
                    raise
                except OSError as exc:
                    raise MonitorError(exc.errno, f"mount {guest}: opening host {host}: {exc.strerror}") from None
                mode = lib.PICO_MOUNT_DATA if data_only else (lib.PICO_MOUNT_RW if writable else lib.PICO_MOUNT_RO)
                opened.append((guest, fd, leaf, mode, exec_, real))
            copies = _detached_copies([(guest, fd, os.path.dirname(real) if leaf else real,
                                        _kernel_mount_attrs(mode, exec_))
                                       for guest, fd, leaf, mode, exec_, real in opened])
            try:
                for (guest, fd, leaf, mode, exec_, real), copy in zip(opened, copies, strict=True):
                    self._add_fd(guest, fd if copy < 0 else copy, leaf, mode, exec_)
                    if copy >= 0:
                        # The kernel names what is under a copy from the
                        # copy's root: the guest is shown the host's names.
                        h = (os.path.dirname(real) if leaf else real).encode("utf-8", "surrogateescape")
                        _raise_errno(lib.pico_fs_policy_set_host_path(self._building(), h, len(h)),
                                     f"mount {guest}")
                    self._mounts.append((guest, real if leaf is None else None))
                    self._host_objects.append((guest, real))
            finally:
                for fd in set(copies):
                    if fd >= 0:
                        os.close(fd)
        finally:
            for _, fd, *_ in opened:
                os.close(fd)

    @staticmethod
    def _open_host(guest: str, host: str) -> tuple[int, str | None, str]:
        """(O_PATH fd of the directory, leaf name for a file mount, real path)."""
        real = os.path.realpath(host)
        leaf = None
        fd = -1
        try:
            # A directory (the usual mount) is opened straight away rather
            # than stat'ed first; anything that would have failed that stat,
            # or is not a directory, takes the file path as before.
            try:
                fd = os.open(real, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
            except OSError as exc:
                if exc.errno not in _NOT_OPENABLE_AS_DIRECTORY:
                    raise
            if fd < 0:
                if not os.path.lexists(real):
                    raise MonitorError(errno_mod.ENOENT, f"mount {guest}: host path {host} does not exist")
                parent, leaf = os.path.split(real)
                fd = os.open(parent, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise MonitorError(errno_mod.ENOENT, f"mount {guest}: host path {host} does not exist") from None
        return fd, leaf, real

    def add_mount_fd(self, guest: str, dir_fd: int, *, writable: bool = True, exec: bool = True) -> None:
        """Shows the directory open on ``dir_fd`` (e.g. a scratch tmpfs) at
        ``guest``; the policy keeps its own duplicate of the fd."""
        self._add_fd(guest, dir_fd, None, lib.PICO_MOUNT_RW if writable else lib.PICO_MOUNT_RO, exec)
        self._mounts.append((guest, None))

    def _add_fd(self, guest: str, fd: int, leaf: str | None, mode: int, exec: bool) -> None:
        g = guest.encode("utf-8", "surrogateescape")
        c_leaf = ffi.NULL if leaf is None else ffi.new("char[]", leaf.encode("utf-8", "surrogateescape"))
        ret = lib.pico_fs_policy_add_mount(self._building(), g, len(g), fd, c_leaf, mode, int(exec))
        _raise_errno(ret, f"mount {guest}")

    # Host devices the library OS's /dev/NAME opens through pico_open (libos/
    # special.c): stateless, hold no host data, and every other call on them
    # runs under the guest's unprivileged identity (host permissions on /dev
    # refuse unlink, chmod, rename).  Single-file mounts: nothing else of the
    # host's /dev is visible.
    LIBRARY_OS_DEVICES = ("null", "zero", "full", "random", "urandom")

    def add_library_os_devices(self) -> None:
        """Mounts /dev/null, zero, full, random and urandom: writable data,
        no exec, and never changed otherwise, whatever the host's permissions
        (a host /dev/null owned by nobody was seen: chmod must not reach it)."""
        self.add_mounts(self._library_os_devices())

    def _library_os_devices(self) -> list[tuple[str, str, bool, bool, bool]]:
        return [(f"/dev/{name}", f"/dev/{name}", False, False, True)
                for name in self.LIBRARY_OS_DEVICES if os.path.exists(f"/dev/{name}")]

    def add_hidden(self, guest: str) -> None:
        """Refuses ``guest`` and everything under it (call after the mounts)."""
        g = guest.encode("utf-8", "surrogateescape")
        _raise_errno(lib.pico_fs_policy_add_hidden(self._building(), g, len(g)), f"hidden path {guest}")

    def add_hidden_name(self, pattern: str) -> None:
        """Refuses every guest path that has a component matching the file-name
        ``pattern`` (manifest ``hidden_names``: the rule of
        picoproc.manifest.hidden_name_matches, enforced in C), in every
        directory, for every file call, including names the guest would create."""
        p = pattern.encode("utf-8", "surrogateescape")
        ret = lib.pico_fs_policy_add_hidden_name(self._building(), p, len(p))
        if ret == -errno_mod.E2BIG:
            raise MonitorError(errno_mod.E2BIG, f"hidden name {pattern!r}: more than "
                               f"{lib.PICO_FS_MAX_HIDDEN_NAMES} hidden names")
        if ret == -errno_mod.EINVAL:
            raise MonitorError(errno_mod.EINVAL, f"hidden name {pattern!r}: not a file-name pattern "
                               "(it must be non-empty UTF-8 without '/' or NUL, and not '.' or '..')")
        _raise_errno(ret, f"hidden name {pattern!r}")

    def hide_with_aliases(self, guest: str, _resolver: _Resolver | None = None) -> None:
        """Hides ``guest`` and every other guest path whose mount shows the
        same host directory tree: two mounts of overlapping host paths, or
        of the same files mounted twice on the host (a bind mount, found by
        the file system and path each mount shows in the monitor's mount
        table).  The host paths and mounts are taken as they are now."""
        table, mount_ids = self._mount_identities()
        for path in _hidden_aliases(tuple(self._mounts), guest, _resolver, table, mount_ids):
            self.add_hidden(path)

    def _mount_identities(self):
        """The mount table and each host mount's identity in it, once per
        set of mounts (a build hides many paths)."""
        key = len(self._host_objects)
        if self._identities is None or self._identities[0] != key:
            table = current_mount_table()
            ids = () if table is None else tuple(
                (g, ident) for g, h in self._host_objects if (ident := table.identity(h)) is not None)
            self._identities = (key, table, ids)
        return self._identities[1], self._identities[2]

    @classmethod
    def from_manifest(cls, manifest, scratch_fds: Mapping[str, int] | None = None) -> FsPolicy:
        """The manifest's mounts, hidden paths and hidden names; ``scratch_fds`` maps each
        tmpfs guest path to the directory fd of its scratch tmpfs
        (picoproc.scratch.make_scratch(...).dir_fd)."""
        scratch_fds = dict(scratch_fds or {})
        policy = cls()
        try:
            # One batch: the detached copies are made together.
            policy.add_mounts([(m.guest, m.host, m.writable, m.exec, False) for m in manifest.mounts]
                              + policy._library_os_devices())
            for t in manifest.tmpfs:
                if t.guest not in scratch_fds:
                    raise MonitorError(errno_mod.EINVAL, f"tmpfs {t.guest}: no scratch directory fd given")
                policy.add_mount_fd(t.guest, scratch_fds.pop(t.guest), writable=True, exec=True)
            if scratch_fds:
                raise MonitorError(errno_mod.EINVAL, f"scratch fds for paths the manifest has no tmpfs at: "
                                   f"{', '.join(sorted(scratch_fds))}")
            resolver = _Resolver()  # one for all the hidden paths of this build
            for h in manifest.hidden:
                policy.hide_with_aliases(h, resolver)
            # After the hidden paths: those resolve their path once to learn
            # its inode, which a name refused earlier would prevent.
            for pattern in manifest.hidden_names:
                policy.add_hidden_name(pattern)
        except BaseException:
            policy.close()
            raise
        return policy

    def close(self) -> None:
        """Frees the policy: only once no guest uses it (Monitor.remove_guest)."""
        if self._p is not None:
            p, self._p = self._p, None
            lib.pico_fs_policy_free(p)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _stats_dict(s) -> dict:
    return {
        "handle": s.handle, "pid": s.pid, "alive": bool(s.alive), "calls": s.calls,
        "allowed": s.allowed, "denied": s.denied, "errors": s.errors, "abandoned": s.abandoned,
        "monitor_cpu_ns": s.monitor_cpu_ns, "audit_dropped": s.audit_dropped,
        "connects_peak": s.connects_peak, "listeners": s.listeners,
    }


# struct pico_audit_record (native/loop.h), read with one struct.iter_unpack
# over the drained batch: reading each field through cffi is a Python-level
# call per field, several times slower (docs/PERFORMANCE.md, "Counting and
# auditing").  Checked against the C layout at import.
_RECORD = struct.Struct(f"<QqiihhiqqqIIII{lib.PICO_AUDIT_TEXT}s{lib.PICO_AUDIT_TEXT}s")
if _RECORD.size != ffi.sizeof("struct pico_audit_record"):
    raise ImportError(f"struct pico_audit_record is {ffi.sizeof('struct pico_audit_record')} bytes, "
                      f"the decoder expects {_RECORD.size}: update monitor._RECORD with native/loop.h")


def _record_dicts(buf, n: int) -> list[dict]:
    """The first ``n`` records of the cffi array ``buf`` as dicts."""
    out = []
    errorcode = errno_mod.errorcode
    for (time_ns, guest, pid, call_nr, decision, reason, err, result, arg, arg2,
         text_len, text_full, text2_len, text2_full, text, text2) in _RECORD.iter_unpack(
            ffi.buffer(buf, n * _RECORD.size)):
        call = CALL_NAMES.get(call_nr, "unknown")
        rec = {
            "time_ns": time_ns,
            "guest": guest,
            "pid": pid,
            "call": call,
            "decision": DECISIONS.get(decision, str(decision)),
            "errno": err,
            "errno_name": errorcode.get(err, "") if err else "",
            "result": result,
        }
        if reason:
            rec["reason"] = DENIAL_REASONS.get(reason, str(reason))
        if call == "note_unsupported" and arg & _NOTE_EMULATED:
            # A traced run's note of a call the library OS emulated.
            rec["call"] = "note_emulated"
            rec["linux_nr"] = arg & ~_NOTE_EMULATED
        elif call == "note_unsupported":
            rec["linux_nr"] = arg
            rec["arg0"] = arg2
        elif call == "unknown":
            rec["nr"] = arg
        else:
            rec["arg"] = arg
        if text_full:
            key = "uri" if call == "open" else "path"
            rec[key] = escape_bytes(text[:text_len])
            if text_len < text_full:
                rec[key + "_truncated_from"] = text_full
        if text2_full:
            key = "target" if call == "symlink" else "new_path"
            rec[key] = escape_bytes(text2[:text2_len])
            if text2_len < text2_full:
                rec[key + "_truncated_from"] = text2_full
        out.append(rec)
    return out


# The default bound on an audit file (``picoproc run --audit-limit``): a
# guest that floods the monitor with refused calls writes tens of MB/s.
AUDIT_FILE_LIMIT = 64 << 20
# Room kept below the bound for the line that says the file was cut.
AUDIT_FILE_MIN_LIMIT = _AUDIT_TRUNCATION_ROOM = 512


class AuditJsonlWriter:
    """Appends audit records to a file, one JSON object per line
    (``picoproc run --audit FILE``).  Usable as a Monitor audit_sink.

    At most ``limit`` bytes (None: no bound) are written: the records that
    would go past it are dropped, and one last line
    ``{"audit_truncated": true, "reason": ..., "records_written": N}`` says
    so.  A write that fails (a full disk, an I/O error) stops the file the
    same way; whatever part of a batch did reach the file is cut off again
    (ftruncate), so the file only ever holds whole records.  Either way
    ``error`` says why, and ``dropped`` counts the records not written."""

    def __init__(self, path: str | os.PathLike, limit: int | None = AUDIT_FILE_LIMIT) -> None:
        if limit is not None and limit < _AUDIT_TRUNCATION_ROOM:
            raise ValueError(f"an audit size limit must be at least {_AUDIT_TRUNCATION_ROOM} bytes")
        self.path = os.fspath(path)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        self._lock = threading.Lock()
        self._limit = limit
        self.written_bytes = 0
        self.records_written = 0
        self.dropped = 0
        self.error: str | None = None

    def __call__(self, records: Iterable[dict]) -> None:
        import json  # only a run with an audit file writes JSON

        records = list(records)
        with self._lock:
            if self.error is not None or self._fd < 0:
                self.dropped += len(records)
                return
            lines = [(json.dumps(rec, sort_keys=True) + "\n").encode("utf-8") for rec in records]
            keep = len(lines)
            if self._limit is not None:
                room = self._limit - _AUDIT_TRUNCATION_ROOM - self.written_bytes
                total = 0
                for i, line in enumerate(lines):
                    total += len(line)
                    if total > room:
                        keep = i
                        break
            written = self._write_lines(lines[:keep])
            self.records_written += written
            self.dropped += len(lines) - written
            if self.error is None and keep < len(lines):
                self._stop(f"size limit of {self._limit} bytes reached")

    # Records are written in chunks of about this many bytes; a chunk that
    # does not fit is written again record by record, so that a full disk
    # keeps every record that fits.
    _CHUNK = 16384

    def _write_lines(self, lines: list[bytes]) -> int:
        """Appends whole lines until one cannot be written (self.error then
        says why); returns how many were written."""
        i = 0
        while i < len(lines):
            j, size = i, 0
            while j < len(lines) and (j == i or size + len(lines[j]) <= self._CHUNK):
                size += len(lines[j])
                j += 1
            if self._append(b"".join(lines[i:j])) is None:
                i = j
                continue
            for k in range(i, j):
                failure = self._append(lines[k])
                if failure is not None:
                    self.error = f"audit file {self.path}: {failure.strerror}"
                    return k
            i = j
        return i

    def _append(self, data: bytes) -> OSError | None:
        """Appends data whole, or leaves the file as it was."""
        try:
            start = os.fstat(self._fd).st_size
        except OSError as exc:
            return exc
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(self._fd, view):]
        except OSError as exc:
            try:
                os.ftruncate(self._fd, start)
            except OSError:
                pass
            return exc
        self.written_bytes += len(data)
        return None

    def _stop(self, reason: str) -> None:
        import json

        marker = {"audit_truncated": True, "reason": reason, "records_written": self.records_written}
        self.error = f"audit file {self.path}: {reason}"
        try:
            os.write(self._fd, (json.dumps(marker, sort_keys=True) + "\n").encode("utf-8"))
        except OSError:
            pass  # the error above says why the file ends

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0:
                fd, self._fd = self._fd, -1
                os.close(fd)


class GuestArea:
    """The argument area of one picoprocess: a sealed memfd and a channel
    per slot (native/loop.h, pico_area_make).  Hand ``area_fd`` and
    ``guest_channels`` to spawn (SpawnConfig.area) and the area to
    Monitor.add_guest; close it once both have their own copies."""

    def __init__(self, channels: int | None = None) -> None:
        n = lib.PICO_SPAWN_MAX_CHANNELS if channels is None else channels
        area = ffi.new("int *")
        guest, monitor = ffi.new("int[]", max(n, 1)), ffi.new("int[]", max(n, 1))
        ret = lib.pico_area_make(n, area, guest, monitor)
        _raise_errno(ret, "making the guest's argument area")
        self.area_fd = area[0]
        self.guest_channels = tuple(guest[i] for i in range(n))
        self.monitor_channels = tuple(monitor[i] for i in range(n))

    def close(self) -> None:
        for fd in (self.area_fd, *self.guest_channels, *self.monitor_channels):
            if fd >= 0:
                os.close(fd)
        self.area_fd, self.guest_channels, self.monitor_channels = -1, (), ()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class Monitor:
    """One C loop serving the mediated calls of many guests.

    ``audit_sink``: a callable given each batch of records (lists of dicts)
    from a drainer thread; without one, call ``drain_audit()`` yourself often
    enough that the ring (``audit_capacity`` records) does not fill (dropped
    records are counted in ``counters()['audit_dropped']``)."""

    def __init__(self, *, identity: tuple[int, int, Iterable[int]] | None = None, max_guests: int = 1024,
                 audit_capacity: int = 65536, audit_sink: Callable[[list[dict]], None] | None = None) -> None:
        self._loop = lib.pico_loop_new(max_guests, audit_capacity)
        if self._loop == ffi.NULL:
            e = ffi.errno
            raise MonitorError(e, f"creating the monitor loop: {os.strerror(e)}")
        uid, gid, groups = identity if identity is not None else guest_identity()
        self.identity = (uid, gid, tuple(groups))
        self._thread: threading.Thread | None = None
        self._run_result: int | None = None
        self._sink = audit_sink
        self._drainer: threading.Thread | None = None
        self._draining = False
        self._lock = threading.Lock()
        self._handles: set[int] = set()
        self._policies: dict[int, object] = {}  # keeps each guest's policy alive
        self._drain_lock = threading.Lock()
        self._drain_buf = None
        self._listings = None  # where guests' /proc listings are built (made on first use)

    # -- running -----------------------------------------------------------------

    def start(self, timeout: float = 10.0) -> None:
        if self._thread is not None:
            raise MonitorError(errno_mod.EBUSY, "the monitor is already running")
        uid, gid, groups = self.identity
        c_groups = ffi.new("uint32_t[]", list(groups) or [0])

        def serve():
            self._run_result = lib.pico_loop_run(self._loop, uid, gid, c_groups, len(groups))

        self._thread = threading.Thread(target=serve, name="picoproc-monitor", daemon=True)
        self._thread.start()
        ret = lib.pico_loop_wait_running(self._loop, int(timeout * 1000))
        if ret != 1:
            self._thread.join(timeout)
            self._thread = None
            err = -ret if ret < 0 else errno_mod.ETIMEDOUT
            raise MonitorError(err, f"starting the monitor loop as {uid}:{gid}: {os.strerror(err)}")
        if self._sink is not None:
            self._draining = True
            self._drainer = threading.Thread(target=self._drain_forever, name="picoproc-audit", daemon=True)
            self._drainer.start()

    def stop(self, timeout: float = 10.0) -> None:
        if self._thread is None:
            return
        lib.pico_loop_stop(self._loop)
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise MonitorError(errno_mod.ETIMEDOUT, "the monitor loop did not stop")
        self._thread = None
        if self._drainer is not None:
            self._draining = False
            os.eventfd_write(lib.pico_loop_audit_eventfd(self._loop), 1)
            self._drainer.join(timeout)
            self._drainer = None
        if self._sink is not None:
            self._flush_to_sink()
        if self._run_result:
            raise MonitorError(-self._run_result, f"the monitor loop failed: {os.strerror(-self._run_result)}")

    def close(self) -> None:
        """Stops the loop and frees it; every guest still registered loses
        the monitor (its pending and later mediated calls fail)."""
        self.stop()
        if self._loop is not None:
            loop, self._loop = self._loop, None
            lib.pico_loop_free(loop)
            self._policies.clear()
            self._handles.clear()
        if self._listings is not None:
            self._listings.close()
            self._listings = None

    # Directory listings of the guests' /proc and /dev are built as real
    # directories (getdents64 is a direct call): a few empty files each,
    # at most 8 per guest, in a small private tmpfs no guest can name.
    _LISTINGS_BYTES = 8 << 20

    def _listing_dir(self) -> int:
        with self._lock:
            if self._listings is None:
                from picoproc.scratch import make_scratch

                try:
                    self._listings = make_scratch(self._LISTINGS_BYTES)
                except OSError:
                    return -1  # the guests' listings answer ENOSYS
            return self._listings.dir_fd

    @property
    def running(self) -> bool:
        return self._thread is not None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- guests ------------------------------------------------------------------

    def add_guest(self, listener_fd: int, pid: int, policy: FsPolicy, net_policy=None,
                  guestnet_fd: int = -1, proc_fd: int = -1, *, area: GuestArea | None = None,
                  audit_allowed: bool = True) -> int:
        """Starts serving the guest behind ``listener_fd`` (the loop keeps its
        own duplicate; the caller may close its fd).  ``net_policy``: a
        picoproc.netpolicy.NetPolicy (its ``handle`` is the C policy), or
        None (nothing granted).  ``guestnet_fd``: the channel to the socket
        helper of the guest's own network (``Spawned.guestnet_fd``; the loop
        keeps a duplicate), or -1: no own network, its URIs are refused as
        not granted.  ``proc_fd``: the guest's procfs (``Spawned.proc_fd``;
        the loop keeps a duplicate), for its /proc, or -1.  ``area``: the
        guest's argument area (the one spawn gave it; the loop maps it and
        keeps duplicates of the channels).  ``audit_allowed``: make an audit
        record of every allowed call too (otherwise they are only counted).
        Returns the guest's handle."""
        net = ffi.NULL if net_policy is None else net_policy.handle
        spec = ffi.new("struct pico_guest_spec *")
        spec.listener_fd = listener_fd
        spec.pid = pid
        spec.fs = policy.pointer
        spec.net = net
        spec.guestnet_fd = guestnet_fd
        spec.proc_fd = proc_fd
        spec.listing_fd = self._listing_dir() if proc_fd >= 0 else -1
        spec.area_fd = area.area_fd if area is not None else -1
        channels = ffi.new("int[]", list(area.monitor_channels) if area is not None else [-1])
        spec.channel_fds = channels
        spec.n_channels = len(area.monitor_channels) if area is not None else 0
        spec.audit_allowed = int(audit_allowed)
        handle = lib.pico_loop_add_guest(self._loop, spec)
        _raise_errno(handle, f"adding guest pid {pid}")
        policy._in_use = True
        with self._lock:
            self._handles.add(handle)
            self._policies[handle] = (policy, net_policy)
        return handle

    def remove_guest(self, handle: int) -> dict:
        """Stops serving the guest; returns its final counts."""
        out = ffi.new("struct pico_guest_stats *")
        _raise_errno(lib.pico_loop_remove_guest(self._loop, handle, out), f"removing guest {handle}")
        with self._lock:
            self._handles.discard(handle)
            self._policies.pop(handle, None)
        return _stats_dict(out)

    def guest_stats(self, handle: int) -> dict:
        out = ffi.new("struct pico_guest_stats *")
        _raise_errno(lib.pico_loop_guest_stats(self._loop, handle, out), f"guest {handle}")
        return _stats_dict(out)

    @property
    def stats(self) -> dict[int, dict]:
        """Counts (calls served, allowed, denied, ...) of every registered guest."""
        with self._lock:
            handles = sorted(self._handles)
        return {h: self.guest_stats(h) for h in handles}

    def counters(self) -> dict:
        c = ffi.new("struct pico_loop_counters *")
        lib.pico_loop_get_counters(self._loop, c)
        return {
            "notifications": c.notifications, "abandoned": c.abandoned, "audit_dropped": c.audit_dropped,
            "recv_errors": c.recv_errors, "guests": c.guests, "servers": c.servers,
            "sync_wakeup": bool(c.sync_wakeup), "fds_on_channel": c.fds_on_channel,
            "fds_by_addfd": c.fds_by_addfd, "area_calls": c.area_calls, "fs_lookups": c.fs_lookups,
            "running": bool(c.running), "pending_connects": c.pending_connects,
            "guestnet_pending": c.guestnet_pending,
        }

    # -- audit -------------------------------------------------------------------

    def drain_audit(self) -> list[dict]:
        """Every audit record not yet drained, oldest first."""
        out: list[dict] = []
        # One buffer for the monitor's life (under a lock: the drainer
        # thread and every run drain): a fresh buffer of a whole batch per
        # call would be mapped and zeroed anew for every run
        # (docs/PERFORMANCE.md, "Counting and auditing").
        with self._drain_lock:
            buf = self._drain_buf
            if buf is None:
                buf = self._drain_buf = ffi.new("struct pico_audit_record[]", _DRAIN_BATCH)
            while True:
                n = lib.pico_loop_drain_audit(self._loop, buf, _DRAIN_BATCH)
                out.extend(_record_dicts(buf, n))
                if n < _DRAIN_BATCH:
                    return out

    def _flush_to_sink(self) -> None:
        records = self.drain_audit()
        if records:
            self._sink(records)

    def _drain_forever(self) -> None:
        efd = lib.pico_loop_audit_eventfd(self._loop)
        while self._draining:
            os.eventfd_read(efd)  # the loop signals a half-full ring; stop() signals too
            self._flush_to_sink()
