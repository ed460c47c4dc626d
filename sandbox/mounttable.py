"""The guest's mount table: which mount shows a guest path, which host path
that is, which guest paths show a host path, and what is hidden.

``MountTable`` is the one place these questions are answered in Python: the
manifest (its hidden paths' aliases), the file policy (the same, as the
host is now), the API and the CLI (finding the program before a run), the
backends (the host path under a guest path) and the after-the-fact views
(picoproc.guestview).  The monitor answers them again in C for every
mediated call (native/mediate_fs.c), with the same rules:

* a guest path is served by the mount or tmpfs whose guest path is its
  longest prefix, compared by whole components (/usr serves /usr/bin, not
  /usrx); ``.``, ``..``, repeated and trailing slashes are resolved
  lexically first, so "/usr/../etc/x" is served by /etc's mount;
* a hidden path hides itself and everything beneath it, whole components
  again; a hidden name hides every path with a component matching it
  (``fnmatch``, case-sensitive, ``*`` matches a leading dot).

An entry is anything with a ``guest`` path and, for a host mount, a
``host`` path (picoproc.manifest.Mount); one without ``host`` (a Tmpfs)
serves its guest paths from no host path.
"""

from __future__ import annotations

import fnmatch
import functools
import posixpath
from collections.abc import Iterable

TYPE_CHECKING = False  # typing's own flag, without importing typing on every run
if TYPE_CHECKING:
    from typing import Any


def under(path: str, root: str) -> bool:
    """True if ``path`` is ``root`` or lies beneath it (whole components)."""
    return path == root or path.startswith(root.rstrip("/") + "/")


def canonical(guest_path: str) -> str:
    """``guest_path`` absolute, with ``.``, ``..`` and extra slashes resolved
    lexically: "/etc/../etc//shadow/" is "/etc/shadow"."""
    return posixpath.normpath("/" + guest_path.lstrip("/"))


def join(root: str, rest: str) -> str:
    """``rest`` (relative, possibly empty) below ``root``."""
    rest = rest.strip("/")
    return root if not rest else (root.rstrip("/") + "/" + rest)


def _below(path: str, root: str) -> str:
    """What follows ``root`` in ``path`` (which is under it), without slashes."""
    return path[len(root):].strip("/")


def hidden_path_matches(hidden: str, guest_path: str) -> bool:
    """True if ``guest_path`` is ``hidden`` or lies beneath it (whole
    components: /etc/shadow hides /etc/shadow/x, not /etc/shadowx)."""
    return under(canonical(guest_path), hidden)


def hidden_name_matches(pattern: str, guest_path: str) -> bool:
    """True if a component of ``guest_path`` matches the name ``pattern``.

    fnmatch rules, case-sensitive, within one component: ``*`` (which also
    matches a leading dot), ``?``, ``[...]``.  "*.key" hides /srv/a.key and
    everything under a directory /srv/b.key/; "id_rsa" does not hide
    /x/id_rsa.pub.
    """
    match = _name_matcher(pattern)
    return any(match(comp) for comp in canonical(guest_path).split("/") if comp)


@functools.lru_cache(maxsize=1024)
def _name_matcher(pattern: str):
    """fnmatch.fnmatchcase(name, pattern) as a function of name.  The usual
    patterns ("id_rsa", "*.key") are a comparison: no regular expression to
    compile (fnmatch compiles one per pattern, in every run)."""
    if not any(c in pattern for c in "*?["):
        return pattern.__eq__
    if pattern.startswith("*") and not any(c in pattern[1:] for c in "*?["):
        suffix = pattern[1:]
        return lambda name: name.endswith(suffix)
    return lambda name: fnmatch.fnmatchcase(name, pattern)


def is_hidden(guest_path: str, hidden: Iterable[str], hidden_names: Iterable[str] = ()) -> bool:
    """True if a ``hidden`` path or a ``hidden_names`` pattern refuses ``guest_path``."""
    path = canonical(guest_path)
    return (any(under(path, h) for h in hidden)
            or any(hidden_name_matches(n, path) for n in hidden_names))


class MountTable:
    """A guest view's mounts (and tmpfs), hidden paths and hidden names."""

    def __init__(self, mounts: Iterable[Any] = (), tmpfs: Iterable[Any] = (),
                 hidden: Iterable[str] = (), hidden_names: Iterable[str] = ()) -> None:
        self.entries = (*mounts, *tmpfs)  # the first of equal guest paths serves them
        self.hidden = tuple(canonical(h) for h in hidden)
        self.hidden_names = tuple(hidden_names)
        # (guest path, host path or None, entry), both paths without a trailing slash.
        self._points = tuple(
            (canonical(e.guest), None if getattr(e, "host", None) is None else canonical(e.host), e)
            for e in self.entries)

    @classmethod
    def of(cls, manifest) -> MountTable:
        """The table of a picoproc.manifest.Manifest (kept per manifest)."""
        try:
            return _table_of(manifest)
        except TypeError:  # built in Python with lists: not hashable, not kept
            return cls(manifest.mounts, manifest.tmpfs, manifest.hidden, manifest.hidden_names)

    def mount_of(self, guest_path: str):
        """The mount or tmpfs serving ``guest_path`` (the longest match), or None."""
        found = self._find(canonical(guest_path))
        return None if found is None else found[2]

    def _find(self, path: str):
        best = None
        for point in self._points:
            if under(path, point[0]) and (best is None or len(point[0]) > len(best[0])):
                best = point
        return best

    def locate(self, guest_path: str) -> tuple[Any, str] | None:
        """(the entry serving ``guest_path``, the rest of the path below its
        guest path, without slashes), or None outside every entry."""
        path = canonical(guest_path)
        found = self._find(path)
        return None if found is None else (found[2], _below(path, found[0]))

    def host_path(self, guest_path: str) -> str | None:
        """The host path shown at ``guest_path``, hidden entries not
        considered; None under a tmpfs or outside every mount."""
        path = canonical(guest_path)
        found = self._find(path)
        if found is None or found[1] is None:
            return None
        return join(found[1], _below(path, found[0]))

    def visible_host_path(self, guest_path: str) -> str | None:
        """host_path, or None where the table hides ``guest_path``."""
        return None if self.is_hidden(guest_path) else self.host_path(guest_path)

    def is_hidden(self, guest_path: str) -> bool:
        return is_hidden(guest_path, self.hidden, self.hidden_names)

    def guest_paths(self, host: str, *, inside: bool = False) -> list[tuple[Any, str]]:
        """(mount, guest path) for every host mount whose host tree holds the
        host path ``host``, in table order; with ``inside``, also (mount,
        its guest path) for every mount whose host tree lies inside ``host``
        (all of that mount shows part of the ``host`` tree).  Paths are
        compared as given: pass resolved host paths."""
        out = []
        for guest, other, entry in self._points:
            if other is None:
                continue
            if under(host, other):
                out.append((entry, join(guest, _below(host, other))))
            elif inside and under(other, host):
                out.append((entry, guest))
        return out


@functools.lru_cache(maxsize=64)
def _table_of(manifest) -> MountTable:
    return MountTable(manifest.mounts, manifest.tmpfs, manifest.hidden, manifest.hidden_names)
