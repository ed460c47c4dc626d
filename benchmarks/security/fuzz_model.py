"""The policy model the mediated-interface fuzzer judges the monitor against.

Built from a :class:`~picoproc.manifest.Manifest` alone (never from the
monitor's answers), it says for one mediated call whether the manifest
grants it:

* a guest path names an object through the manifest's mounts (longest guest
  prefix wins; the directories above mount points exist and are empty and
  read-only); a symbolic link's text is a guest path, resolved again in the
  guest's view; ``..`` goes to the parent of the path resolved so far;
* ``hidden`` refuses a path and everything beneath it, through any mount of
  the same host tree and any hard link of a hidden object; ``hidden_names``
  refuses every path with a component matching one (the manifest's own
  ``hidden_name_matches``); a path that passes through a refused name is
  refused;
* changing anything (creating, removing, renaming, linking, chmod, chown,
  times, size, opening for writing) needs a writable mount; the library OS's
  devices (``/dev/null`` ...) may be opened for writing and nothing else;
  opening an image to execute needs a mount that allows exec;
* network URIs are granted only by ``net.connect``, ``net.listen`` and
  ``net.unix``;
* ``/proc`` and the paths below it, and ``/dev`` itself, as given (not
  resolved), are the picoprocess's own ``/proc`` (docs/ARCHITECTURE.md,
  "The guest's /proc"): open, stat, readlink and access may read them,
  nothing may change them; their links (``exe``, ``cwd``, ``fd/N``) lead to
  guest paths the model cannot name, so what they hand back is judged by
  its identity alone.

The model also lists the host objects (device, inode) the manifest refuses
outright (hidden objects, the trees no mount shows) and those it shows
read-only, for the fuzzer's identity checks on what a call handed back.

It is deliberately independent of native/mediate_fs.c: it walks the host
tree with os.lstat/os.readlink as the host is at the moment of judging.
"""

from __future__ import annotations

import dataclasses
import errno
import ipaddress
import os
import posixpath
import stat as stat_mod

from picoproc import manifest as manifest_mod
from picoproc.mounttable import under

NAME_MAX = 255
PATH_MAX = 4096
MAX_LINKS = 40

O_ACCMODE = 0o3
O_CREAT = 0o100
O_TRUNC = 0o1000
O_NOFOLLOW = 0o400000
O_PATH = 0o10000000
AT_SYMLINK_NOFOLLOW = 0x100
AT_SYMLINK_FOLLOW = 0x400
OPEN_EXEC = 0x40000000

ALLOW, DENY, INVALID = "allow", "deny", "invalid"

# The library OS's unnamed file for the text it makes (an empty memfd).
PROC_TEXT = b"/proc/.picoproc-text"
PROC_LINKS = (b"exe", b"cwd", b"root")


def is_proc_view_path(path: bytes) -> bool:
    """Whether the monitor answers ``path`` (as given) from the picoprocess's
    own /proc rather than through the mounts."""
    return path in (b"/dev", b"/proc") or path.startswith(b"/proc/")


@dataclasses.dataclass(frozen=True)
class ModelMount:
    guest: str
    host: str | None  # real host path (a directory or a file); None: a private tmpfs
    writable: bool
    exec: bool
    data_only: bool = False  # open for writing, never change otherwise


@dataclasses.dataclass
class Verdict:
    decision: str  # ALLOW, DENY (the manifest refuses) or INVALID (malformed request)
    why: str
    canon: str | None = None  # the canonical guest path reached, when known


class PolicyModel:
    """What a manifest grants, as a function of a call and the host tree."""

    def __init__(self, manifest: manifest_mod.Manifest, *, devices=("null", "zero", "full", "random",
                                                                   "urandom")):
        self.manifest = manifest
        self.walked_opaque = False  # the last resolve passed through a tmpfs
        self.searched: list[str] = []  # the host directories the last resolve looked names up in
        mounts = [ModelMount(m.guest, os.path.realpath(m.host), m.writable, m.exec) for m in manifest.mounts]
        # The library OS's devices are part of what every picoprocess is
        # given (docs/ARCHITECTURE.md, "/dev and /proc"): data only.
        for name in devices:
            if os.path.exists(f"/dev/{name}"):
                mounts.append(ModelMount(f"/dev/{name}", f"/dev/{name}", True, False, data_only=True))
        # A tmpfs is private to the run: the model sees none of its
        # names (nothing in it is hidden or linked by the host).
        mounts += [ModelMount(t.guest, None, True, True) for t in manifest.tmpfs]
        self.mounts = mounts
        # Hidden objects by host path: a hidden guest path hides the host
        # tree it shows, wherever else that tree is mounted.
        self.hidden_hosts: list[str] = []
        self.hidden_objects: set[tuple[int, int]] = set()
        for h in manifest.hidden:
            host = self._host_of_canonical_guess(h)
            if host is not None:
                self.hidden_hosts.append(host)
                try:
                    st = os.stat(host)
                    self.hidden_objects.add((st.st_dev, st.st_ino))
                except OSError:
                    pass

    # -- the mount table -----------------------------------------------------

    def _mount_of(self, canon: str) -> ModelMount | None:
        best = None
        for m in self.mounts:
            if under(canon, m.guest) and (best is None or len(m.guest) > len(best.guest)):
                best = m
        return best

    def _is_ancestor(self, canon: str) -> bool:
        return any(m.guest != canon and under(m.guest, canon) for m in self.mounts)

    def _host_of(self, canon: str) -> str | None:
        """The host path a canonical guest path shows, or None (a tmpfs, an
        ancestor of mount points, or outside every mount)."""
        m = self._mount_of(canon)
        if m is None or m.host is None:
            return None
        rest = canon[len(m.guest):].lstrip("/") if m.guest != "/" else canon.lstrip("/")
        if rest and not os.path.isdir(m.host):
            return ""  # below a single-file mount: not a directory
        return os.path.join(m.host, rest) if rest else m.host

    def _host_of_canonical_guess(self, guest: str) -> str | None:
        host = self._host_of(guest)
        return os.path.realpath(host) if host else None

    # -- refusals ------------------------------------------------------------

    def _hidden_path(self, canon: str) -> bool:
        if self.manifest.is_hidden(canon):
            return True
        host = self._host_of(canon)
        if host:
            if any(under(host, h) for h in self.hidden_hosts):
                return True
        return False

    def _hidden_name(self, name: str) -> bool:
        return any(manifest_mod.hidden_name_matches(p, "/" + name) for p in self.manifest.hidden_names)

    def hidden_object(self, dev: int, ino: int) -> bool:
        return (dev, ino) in self.hidden_objects

    # -- resolution ----------------------------------------------------------

    def resolve(self, path: bytes, follow: bool, *, trailing_follows: bool = True
                ) -> tuple[str | None, str, bool]:
        """(canonical guest path or None, why, exists) for an absolute guest
        path.  None with the reason when the manifest refuses the walk
        (why starts with "deny:") or the path is malformed ("invalid:").
        A trailing '/' follows a final link, as Linux does, unless
        ``trailing_follows`` is False (calls that act on the name itself)."""
        if not path or path[:1] != b"/":
            return None, "invalid: not absolute", False
        if b"\0" in path:
            return None, "invalid: embedded NUL", False
        if len(path) > PATH_MAX:
            return None, "invalid: too long", False
        self.searched = []
        dot_tail = path.endswith(b"/.") and len(path) > 2
        while path.endswith(b"/.") and len(path) > 2:
            path = path[:-1]  # "name/." is "name/"
        trailing = path.endswith(b"/")
        follow = follow or (trailing and trailing_follows)
        self.walked_opaque = False
        pending = [c for c in path.split(b"/")]
        canon: list[str] = []
        links = 0
        exists = True
        i = 0
        while i < len(pending):
            comp = pending[i]
            i += 1
            last = all(c in (b"", b".") for c in pending[i:])
            if comp == b"":
                continue
            self._searching(canon)
            if comp == b".":
                continue
            if comp == b"..":
                if canon:
                    canon.pop()
                continue
            if len(comp) > NAME_MAX:
                return None, "invalid: component too long", False
            name = os.fsdecode(comp)
            canon.append(name)
            cpath = "/" + "/".join(canon)
            if self._hidden_path(cpath) or self._hidden_name(name):
                return None, f"deny: {cpath} is hidden", False
            if last and not follow:
                break
            m = self._mount_of(cpath)
            if m is None:
                if self._is_ancestor(cpath):
                    continue
                return None, f"deny: {cpath} is in no mount", False
            host = self._host_of(cpath)
            if host is None:  # inside a tmpfs the model cannot see: its own names only
                self.walked_opaque = True
                continue
            if host == "":
                return None, "invalid: below a file", False
            try:
                st = os.lstat(host)
            except FileNotFoundError:
                if last:
                    exists = False
                    break
                return None, "invalid: missing directory", False
            except OSError as exc:
                return None, f"invalid: {errno.errorcode.get(exc.errno, exc.errno)}", False
            if not stat_mod.S_ISLNK(st.st_mode):
                if not last and not stat_mod.S_ISDIR(st.st_mode):
                    return None, "invalid: not a directory", False
                continue
            links += 1
            if links > MAX_LINKS:
                return None, "invalid: too many links", False
            target = os.readlink(os.fsencode(host))
            canon.pop()
            if target.startswith(b"/"):
                canon = []
            pending = pending[:0] + target.split(b"/") + pending[i:]
            i = 0
        if dot_tail:
            self._searching(canon)  # the "." looked up in the last directory
        cpath = "/" + "/".join(canon)
        if self._hidden_path(cpath):
            return None, f"deny: {cpath} is hidden", False
        if self._mount_of(cpath) is None and not self._is_ancestor(cpath) and cpath != "/":
            return None, f"deny: {cpath} is in no mount", False
        return cpath, "", exists

    def _searching(self, canon: list[str]) -> None:
        """Notes that a component is looked up in the directory ``canon``
        names: the host needs search permission on every directory a walk
        looks a name up in, including one a later ``..`` leaves."""
        host = self._host_of("/" + "/".join(canon))
        if host:
            self.searched.append(host)

    def _object_hidden(self, canon: str, follow: bool) -> bool:
        host = self._host_of(canon)
        if not host:
            return False
        try:
            st = os.stat(host) if follow else os.lstat(host)
        except OSError:
            return False
        return (st.st_dev, st.st_ino) in self.hidden_objects

    # -- verdicts ------------------------------------------------------------

    def path_verdict(self, path: bytes, *, follow: bool, write: bool = False, exec: bool = False,
                     data_write: bool = False, name_op: bool = False) -> Verdict:
        """Is this operation on ``path`` granted?  ``write``: it changes the
        name or object (needs a writable, non-device mount); ``data_write``:
        it opens for writing (a device mount is enough); ``exec``: it
        opens an image to execute; ``name_op``: it creates, removes or
        renames the name itself (the last component is never followed)."""
        canon, why, exists = self.resolve(path, follow and not name_op, trailing_follows=not name_op)
        if canon is None:
            return Verdict(DENY if why.startswith("deny") else INVALID, why)
        if exists and self._object_hidden(canon, follow):
            return Verdict(DENY, f"{canon} is a hidden object", canon)
        m = self._mount_of(canon)
        if exec and self._is_directory(canon):
            exec = False  # execute permission on a directory is search permission
        if m is None:
            # the directories above mount points: read-only, empty
            if write or data_write or exec:
                return Verdict(DENY, f"{canon} is above the mounts (read-only)", canon)
            return Verdict(ALLOW, "", canon)
        if write and (not m.writable or m.data_only):
            return Verdict(DENY, f"{canon}: mount {m.guest} is read-only", canon)
        if data_write and not m.writable:
            return Verdict(DENY, f"{canon}: mount {m.guest} is read-only", canon)
        if exec and not m.exec:
            return Verdict(DENY, f"{canon}: mount {m.guest} is noexec", canon)
        return Verdict(ALLOW, "", canon)

    def proc_verdict(self, path: bytes, *, write: bool = False, exec: bool = False) -> Verdict:
        """Is reading ``path`` of the picoprocess's own /proc granted (open,
        stat, readlink, access)?  ``write``: to open it for writing or to
        change it; ``exec``: to open it as an image to execute."""
        parts = path.split(b"/")
        link = parts[-1] in PROC_LINKS or (len(parts) >= 2 and parts[-2] == b"fd")
        if exec and not link:
            return Verdict(DENY, f"{os.fsdecode(path)}: not an image")
        if path == PROC_TEXT:
            return Verdict(ALLOW, "an unnamed file of the library OS's own")
        if write:
            return Verdict(DENY, f"{os.fsdecode(path)}: the picoprocess's /proc is read-only")
        return Verdict(ALLOW, "the picoprocess's own /proc")

    def _is_directory(self, canon: str) -> bool:
        m = self._mount_of(canon)
        if m is None:
            return True
        host = self._host_of(canon)
        if host is None:
            return False  # unknown (a tmpfs): judged as a file
        return os.path.isdir(host)

    def net_verdict(self, uri: bytes) -> Verdict:
        scheme, _, rest = uri.partition(b":")
        scheme = scheme.decode("latin-1")
        if scheme == "unix":
            path = os.fsdecode(rest)
            for granted in self.manifest.unix_paths:
                real = os.path.realpath(granted)
                if path == real or (os.path.isdir(real) and path.startswith(real.rstrip("/") + "/")
                                    and ".." not in path.split("/")):
                    return Verdict(ALLOW, "")
            return Verdict(DENY, f"unix socket {path} not granted")
        grants = self.manifest.net_listen if scheme == "tcp.srv" else self.manifest.net_connect
        host, _, port = rest.decode("latin-1").rpartition(":")
        host = host.strip("[]")
        for ep in grants:
            if ep.host.strip("[]") == host and (ep.port == 0 or str(ep.port) == port):
                return Verdict(ALLOW, "")
        # A loopback or wildcard address nobody granted is the guest's own
        # network namespace (docs/MANIFEST.md): allowed, and never the
        # host's loopback (the fuzzer's host listeners check that).
        try:
            addr = ipaddress.ip_address(host)
        except ValueError:
            return Verdict(DENY, f"{scheme}:{host}:{port}: not an address")
        if addr.is_loopback or addr.is_unspecified:
            return Verdict(ALLOW, "the guest's own network")
        return Verdict(DENY, f"{scheme}:{host}:{port} not granted")

    def host_permits(self, path: bytes, *, follow: bool, write: bool, name_op: bool,
                     identity: tuple[int, int], exec: bool = False) -> bool:
        """Would the host's permission bits let ``identity`` (uid, gid) do
        this?  True only when the model can see every directory on the way
        and they all plainly allow it (for telling a refusal by the policy
        from one by the host)."""
        canon, _, exists = self.resolve(path, follow and not name_op, trailing_follows=not name_op)
        if canon is None or self.walked_opaque:
            return False
        m = self._mount_of(canon)
        if m is None or m.host is None or not os.path.isdir(m.host):
            return False
        host = self._host_of(canon)
        uid, gid = identity

        def allows(p: str, bits: int) -> bool:
            try:
                st = os.lstat(p)
            except OSError:
                return False
            if uid == 0:
                return True
            shift = 6 if st.st_uid == uid else 3 if st.st_gid == gid else 0
            return (st.st_mode >> shift) & bits == bits

        if not all(allows(d, 1) for d in self.searched):
            return False
        rest = os.path.relpath(host, m.host)
        parts = [] if rest == "." else rest.split("/")
        d = m.host
        for comp in parts[:-1]:
            if not allows(d, 1):
                return False
            d = os.path.join(d, comp)
        if not allows(d, 1):
            return False
        if name_op:
            return allows(d, 3) and not os.lstat(d).st_mode & stat_mod.S_ISVTX
        if not exists:
            return False
        if exec:
            if not os.path.isdir(host) and not stat_mod.S_ISREG(os.stat(host).st_mode):
                return False
            return allows(host, 1)
        return allows(host, 2 if write else 4)

    # -- host objects ----------------------------------------------------------

    def refused_objects(self, roots: list[str]) -> set[tuple[int, int]]:
        """Every object under the hidden host trees, and under ``roots``
        (host trees no mount shows, named by the caller)."""
        out = set(self.hidden_objects)
        for top in [*self.hidden_hosts, *roots]:
            out |= _tree_objects(top)
        return out

    def read_only_objects(self) -> set[tuple[int, int]]:
        """Every object the read-only mounts show (their host trees)."""
        out: set[tuple[int, int]] = set()
        for m in self.mounts:
            if not m.writable and m.host and os.path.isdir(m.host):
                out |= _tree_objects(m.host)
        return out


def _tree_objects(top: str) -> set[tuple[int, int]]:
    out = set()
    try:
        st = os.lstat(top)
    except OSError:
        return out
    out.add((st.st_dev, st.st_ino))
    if not stat_mod.S_ISDIR(st.st_mode):
        return out
    for dirpath, dirnames, filenames in os.walk(top):
        for name in dirnames + filenames:
            try:
                st = os.lstat(os.path.join(dirpath, name))
            except OSError:
                continue
            out.add((st.st_dev, st.st_ino))
    return out


def canonical(path: str) -> str:
    return posixpath.normpath(path)
