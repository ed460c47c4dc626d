"""A manifest's guest view, looked at from the host after a run.

The monitor resolves every guest path itself, in C, while the guest waits
(native/mediate_fs.c); its audit records keep the path the guest *gave*.
Explaining a refusal (picoproc.denials) or learning which directories a run
used (picoproc.learn) needs more: which mount showed the path, which host
file that is, and where the symbolic links on the way led.  This module
answers those questions the same way the monitor does (longest mount
match, a link's text is a guest path, at most 40 links), reading the
host's files as they are now.  It decides nothing: it is only ever used to
describe a run after the fact.

Paths inside a tmpfs cannot be looked at once the run is over (the scratch
is gone); they are taken as written.
"""

from __future__ import annotations

import os
import posixpath
import stat as stat_mod

from picoproc import records
from picoproc.manifest import Manifest, Mount, Tmpfs
from picoproc.mounttable import MountTable, join, under  # noqa: F401  (under: picoproc.guestview's API)

# As the monitor (PICO_FS_MAX_LINKS).
MAX_LINKS = 40


def picoprocess_own(guest_path: str) -> bool:
    """True for what every picoprocess has of its own, whatever its manifest
    mounts: its /proc (its processes, as the monitor and the library OS show
    them).  No mount shows it and none could: a name missing there is not
    a grant the manifest lacks."""
    return under(normalise(guest_path), "/proc")


def mount_of(manifest: Manifest, guest_path: str) -> Mount | Tmpfs | None:
    """The mount or tmpfs that shows ``guest_path`` (the longest match), or None."""
    return MountTable.of(manifest).mount_of(guest_path)


def host_path(mount: Mount, guest_path: str) -> str:
    """The host path ``mount`` shows at ``guest_path`` (which it must cover)."""
    return join(mount.host, guest_path[len(mount.guest):])


@records.record(frozen=True)
class Resolved:
    """Where a guest path led: ``path`` is the canonical guest path (no
    ``.``, ``..`` or link left, as far as could be seen); ``links`` are the
    guest paths of the symbolic links followed on the way, in order."""

    path: str
    links: tuple[str, ...] = ()
    complete: bool = True  # False: a tmpfs, a loop or an unreadable link stopped the look


class GuestView:
    """Resolves guest paths of one manifest, remembering what it read."""

    def __init__(self, manifest: Manifest) -> None:
        self.manifest = manifest
        self._links: dict[str, str | None] = {}  # host path -> link text, None: not a link

    def mount_of(self, guest_path: str) -> Mount | Tmpfs | None:
        return mount_of(self.manifest, guest_path)

    def host_path(self, guest_path: str) -> str | None:
        """The host path shown at ``guest_path`` (links not followed), or None
        (not mounted, or in a tmpfs)."""
        m = self.mount_of(guest_path)
        return host_path(m, guest_path) if isinstance(m, Mount) else None

    def _link_text(self, guest_path: str) -> str | None | bool:
        """The link text at ``guest_path``; None: not a link; False: cannot tell."""
        host = self.host_path(guest_path)
        if host is None:
            return None if not isinstance(self.mount_of(guest_path), Tmpfs) else False
        if host in self._links:
            return self._links[host]
        text = None
        try:
            if stat_mod.S_ISLNK(os.lstat(host).st_mode):
                text = os.readlink(host)
        except OSError:
            pass
        self._links[host] = text
        return text

    def resolve(self, guest_path: str, follow: bool = True) -> Resolved:
        """The canonical guest path ``guest_path`` leads to.  With ``follow``
        false a link as the last component is not followed."""
        pending = [c for c in guest_path.split("/") if c]
        pending.reverse()  # a stack: the next component last
        canon: list[str] = []
        links: list[str] = []
        complete = True
        while pending:
            name = pending.pop()
            if name == ".":
                continue
            if name == "..":
                if canon:
                    canon.pop()
                continue
            candidate = "/" + "/".join([*canon, name])
            if not pending and not follow:
                canon.append(name)
                break
            text = self._link_text(candidate)
            if text is False:
                complete = False
            if not text:
                canon.append(name)
                continue
            if len(links) >= MAX_LINKS:
                canon.append(name)
                complete = False
                break
            links.append(candidate)
            if text.startswith("/"):
                canon = []
            pending.extend(reversed([c for c in text.split("/") if c]))
        return Resolved("/" + "/".join(canon), tuple(links), complete)

    def exists_on_host(self, guest_path: str) -> bool | None:
        """Whether the host has something at the path the manifest shows
        there (links not followed); None when it cannot tell (a tmpfs)."""
        m = self.mount_of(guest_path)
        if isinstance(m, Tmpfs):
            return None
        if m is None:
            return None
        return os.path.lexists(host_path(m, guest_path))


def normalise(guest_path: str) -> str:
    """Lexical normalisation of a guest path (``//``, ``.``, ``..``)."""
    return posixpath.normpath("/" + guest_path.lstrip("/"))
