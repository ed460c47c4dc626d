"""Scratch space for a run: a private, size-limited tmpfs the monitor reaches
through a directory fd.

The tmpfs is a *detached* mount (``fsopen``/``fsconfig``/``fsmount``): it has
no path and appears in no mount table, so no other process can find it, and
it disappears when the last fd on it is closed — nothing is left behind even
if the monitor is killed.  The monitor resolves guest paths under it with
``openat2`` relative to ``Scratch.dir_fd`` (docs/ARCHITECTURE.md, invariant 3); the guest
never sees it directly (its root is empty).

As root the monitor creates it itself, owned by the guest identity.  An
unprivileged monitor has a short-lived helper with its own user and mount
namespace create it (tmpfs may be mounted in a user namespace) and pass the
fd back; it is then owned by the invoking user, which is also the guest's
identity in that case.
"""

from __future__ import annotations

import os
TYPE_CHECKING = False  # typing's own flag, without importing typing on every run
if TYPE_CHECKING:
    from typing import Self

from picoproc import records
from picoproc.errors import PicoprocError
from picoproc.native import ffi, lib


class ScratchError(OSError, PicoprocError):
    pass


def default_identity() -> tuple[int, int]:
    """The host uid/gid a guest runs as: nobody for a root monitor, else the caller."""
    if os.geteuid() == 0:
        return 65534, 65534
    return os.geteuid(), os.getegid()


@records.record
class Scratch:
    dir_fd: int  # O_RDONLY|O_DIRECTORY fd on the tmpfs root; -1 once closed
    size_bytes: int
    inodes: int  # the most files, directories and links it holds
    uid: int  # owner of the root directory
    gid: int
    mode: int

    def used(self) -> tuple[int, int]:
        """(bytes, inodes) the tmpfs holds now, its root directory included."""
        st = os.fstatvfs(self.dir_fd)
        return (st.f_blocks - st.f_bfree) * st.f_frsize, st.f_files - st.f_ffree

    @property
    def closed(self) -> bool:
        return self.dir_fd < 0

    def close(self) -> None:
        """Drops the monitor's fd; the tmpfs goes away with the last fd on it."""
        if self.dir_fd >= 0:
            fd, self.dir_fd = self.dir_fd, -1
            os.close(fd)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):  # a forgotten Scratch must not keep the memory pinned
        try:
            self.close()
        except OSError:
            pass


def default_inodes(size_bytes: int) -> int:
    """The inode bound of a scratch tmpfs that does not name one: one per
    4 KiB of its size (a file that holds data takes at least a page, so a
    tmpfs of small files reaches both limits together), at least 1024."""
    return max(1024, size_bytes // 4096)


def make_scratch(
    size_bytes: int,
    *,
    inodes: int | None = None,
    uid: int | None = None,
    gid: int | None = None,
    mode: int = 0o700,
    noexec: bool = False,
) -> Scratch:
    """A new empty tmpfs of at most ``size_bytes`` (rounded up to pages by the
    kernel) and at most ``inodes`` files, directories and links (default:
    default_inodes(size_bytes)), root directory owned by uid:gid (default:
    the guest identity)."""
    if isinstance(size_bytes, bool) or not isinstance(size_bytes, int) or size_bytes <= 0:
        raise ValueError(f"scratch size must be a positive number of bytes, not {size_bytes!r}")
    if inodes is None:
        inodes = default_inodes(size_bytes)
    if isinstance(inodes, bool) or not isinstance(inodes, int) or inodes <= 0:
        raise ValueError(f"scratch inodes must be a positive count, not {inodes!r}")
    if not 0 <= mode <= 0o7777:
        raise ValueError(f"scratch mode {mode:#o} is not a permission mode")
    d_uid, d_gid = default_identity()
    uid = d_uid if uid is None else uid
    gid = d_gid if gid is None else gid
    privileged = os.geteuid() == 0
    if not privileged and (uid, gid) != (os.geteuid(), os.getegid()):
        raise ValueError(
            f"an unprivileged monitor can only create scratch owned by itself "
            f"({os.geteuid()}:{os.getegid()}), not {uid}:{gid}"
        )
    out = ffi.new("int *")
    # Unprivileged: no uid/gid option (the helper's mount belongs to its own
    # user namespace, where only the caller's ids are mapped; the default
    # owner is the caller).
    rc = lib.pico_make_tmpfs(
        size_bytes,
        inodes,
        mode,
        uid if privileged else -1,
        gid if privileged else -1,
        0 if privileged else 1,
        int(noexec),
        out,
    )
    if rc < 0:
        how = "fsopen(tmpfs)" if privileged else "fsopen(tmpfs) in a user namespace helper"
        raise ScratchError(
            -rc, f"creating a {size_bytes}-byte scratch tmpfs with {how}: {os.strerror(-rc)}"
        )
    return Scratch(out[0], size_bytes, inodes, uid, gid, mode)
