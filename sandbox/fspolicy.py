"""A guest's file policy: what ``FsPolicy`` hands the monitor's C loop.

``FsPolicy`` is the file half of a guest's policy (native/mediate_fs.c): the
manifest's mount table as directory fds opened once (O_PATH), the scratch
tmpfs mounts as the directory fds ``picoproc.scratch`` made, the hidden
paths (with every other guest path that shows the same host files) and the
hidden file names.  ``picoproc.netpolicy.NetPolicy`` is the network half.
"""

from __future__ import annotations

import collections
import errno as errno_mod
import functools
import os
import stat as stat_mod
import threading
from collections.abc import Iterable, Mapping

from picoproc.libos import devices as libos_devices
from picoproc.mountinfo import HostMounts, current_host_mounts
from picoproc.mounttable import MountTable
from picoproc.monitor import MonitorError, _raise_errno
from picoproc.native import ffi, lib

TYPE_CHECKING = False  # typing's own flag, without importing typing on every run
if TYPE_CHECKING:
    from typing import Self


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


# The pure parts of finding a hidden path's aliases are cached (they depend
# only on their arguments); resolving the host path, which depends on the
# host's symlinks at the time, is done for every build (_Resolver).

# A mount as the alias search sees it: the guest path showing a host path (a
# real path, or a path inside one file system, see _identity_aliases).  (A
# typing.NamedTuple would import typing on every run.)
_HostTree = collections.namedtuple("_HostTree", ["guest", "host"])


@functools.lru_cache(maxsize=4096)
def _directory_mounts(mounts: tuple[tuple[str, str | None], ...]) -> MountTable:
    """The directory mounts of a policy (host path None: a file mount or a
    scratch directory, which shows no host tree)."""
    return MountTable(_HostTree(g, h) for g, h in mounts if h is not None)


@functools.lru_cache(maxsize=4096)
def _aliases_of(mounts: tuple[tuple[str, str | None], ...], guest: str, host: str) -> tuple[str, ...]:
    """``guest`` and every other guest path whose mount shows host path ``host``."""
    out = [guest]
    for _, alias in _directory_mounts(mounts).guest_paths(host):
        if alias not in out:
            out.append(alias)
    return tuple(out)


@functools.lru_cache(maxsize=4096)
def _identity_aliases(mount_ids: tuple[tuple[str, tuple[str, str]], ...],
                      hidden: tuple[str, str]) -> tuple[str, ...]:
    """The guest paths whose mount shows the host object of identity
    ``hidden`` (HostMounts.identity), a tree holding it, or lies inside it:
    through a bind mount of an ancestor, or of a directory inside it, too.
    ``mount_ids``: (guest path, identity) of every mount."""
    device, path = hidden
    return tuple(alias for _, alias in _mounts_on_device(mount_ids, device).guest_paths(path, inside=True))


@functools.lru_cache(maxsize=256)
def _mounts_on_device(mount_ids: tuple[tuple[str, tuple[str, str]], ...], device: str) -> MountTable:
    """The mounts whose host object is on file system ``device``, as a table
    of (guest path, path in that file system): one per device for all the
    hidden paths of a build, not one per hidden path."""
    return MountTable(_HostTree(g, p) for g, (d, p) in mount_ids if d == device)


def _hidden_aliases(mounts: tuple[tuple[str, str | None], ...], guest: str,
                    resolver: _Resolver | None = None, table: HostMounts | None = None,
                    mount_ids: tuple[tuple[str, tuple[str, str]], ...] = ()) -> tuple[str, ...]:
    """``guest`` and every other guest path showing the same host tree, as
    the host's symlinks and mounts are now.  ``mounts``: the directory
    mounts (host path None for others); ``table`` and ``mount_ids``: the
    mount table and the identity of every mount, single files included."""
    found = _directory_mounts(mounts).locate(guest)
    if found is None:
        return (guest,)
    base, rest = found[0].host, found[1]
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
_copy_cache_table: HostMounts | None = None


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
        table = current_host_mounts()
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
        self._identities = None  # (mount count, HostMounts, identities), see _mount_identities
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

    # Host devices the library OS's /dev/NAME opens through pico_open (the
    # list is libos/devices.h's, picoproc.libos.devices): stateless, hold no
    # host data, and every other call on them runs under the guest's
    # unprivileged identity (host permissions on /dev refuse unlink, chmod,
    # rename).  Single-file mounts: nothing else of the host's /dev is visible.
    def add_library_os_devices(self) -> None:
        """Mounts /dev/null, zero, full, random and urandom: writable data,
        no exec, and never changed otherwise, whatever the host's permissions
        (a host /dev/null owned by nobody was seen: chmod must not reach it)."""
        self.add_mounts(self._library_os_devices())

    def _library_os_devices(self) -> list[tuple[str, str, bool, bool, bool]]:
        return [(f"/dev/{name}", f"/dev/{name}", False, False, True)
                for name, _minor in libos_devices() if os.path.exists(f"/dev/{name}")]

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
            table = current_host_mounts()
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
