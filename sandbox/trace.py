"""``picoproc trace``: a profile of what a program asked for in one run.

The monitor leaves an audit record for every mediated call; the run's
cgroup and scratch tmpfs say how much memory, how many tasks and how much
scratch it used.  This module turns one traced run (``Sandbox(trace=True)``)
into a ``Profile``:

* files and directories, by the mount that showed them, with what was done
  to each (read, written, created, removed, executed, listed, looked up),
  at their canonical guest path (symbolic links resolved in the guest's
  view, and the links themselves kept: they must stay visible too);
* paths outside every mount that the program probed, and what was refused;
* network endpoints, and which network served each: the host's (a grant),
  the program's own loopback, or none (refused);
* programs executed (ELF interpreters apart);
* Linux calls the library OS does not implement;
* peaks: memory, tasks, scratch use, output, time.

The profile is written as text (``format_profile``) or JSON
(``Profile.to_json``, schema ``picoproc.trace``); ``picoproc learn`` turns
one or more profiles into a manifest (picoproc.learn), which is why the
JSON also carries the manifest the run had (as TOML).
"""

from __future__ import annotations

import dataclasses
import errno
import ipaddress
import os
import threading
from collections.abc import Iterable, Mapping
from typing import Any

from picoproc.denials import PICO_OPEN_EXEC, Denial, record_path
from picoproc.guestview import GuestView, picoprocess_own, under
from picoproc.libos import devices as libos_devices
from picoproc.manifest import (
    Manifest,
    Mount,
    Tmpfs,
    format_endpoint,
    format_size,
    manifest_to_toml,
    parse_endpoint,
    parse_manifest,
)

SCHEMA = "picoproc.trace"
SCHEMA_VERSION = 1

O_ACCMODE, O_CREAT, O_TRUNC, O_NOFOLLOW = 0o3, 0o100, 0o1000, 0o400000
O_PATH, O_TMPFILE = 0o10000000, 0o20000000
AT_SYMLINK_NOFOLLOW, X_OK = 0x100, 1

# What a run can do to a file or directory, in the order a profile shows it.
ACCESS_ORDER = ("exec", "map", "create", "write", "remove", "attr", "watch", "read", "list",
                "stat", "link")
# Kinds of access that change a directory's contents (need a writable mount
# of the directory the name is in).
CHANGES_NAME = {"create", "remove"}
CHANGES_DATA = {"write", "attr"}
# The host devices every run gets (libos/devices.h; FsPolicy.add_library_os_devices).
DEVICE_PATHS = {f"/dev/{name}" for name, _minor in libos_devices()}


@dataclasses.dataclass
class FileUse:
    """One canonical guest path and what the run did to it."""

    path: str
    access: set[str] = dataclasses.field(default_factory=set)  # done successfully
    calls: int = 0
    missing: bool = False  # asked for and absent (ENOENT)
    errors: dict[str, int] = dataclasses.field(default_factory=dict)  # other errnos, by name
    exec_checked: bool = False  # access(X_OK) succeeded on it

    def to_json(self) -> dict:
        return {"path": self.path, "access": [a for a in ACCESS_ORDER if a in self.access],
                "calls": self.calls, "missing": self.missing, "errors": dict(self.errors),
                "exec_checked": self.exec_checked}

    @classmethod
    def from_json(cls, doc: Mapping) -> FileUse:
        return cls(doc["path"], set(doc.get("access", ())), int(doc.get("calls", 0)),
                   bool(doc.get("missing", False)), dict(doc.get("errors", {})),
                   bool(doc.get("exec_checked", False)))


@dataclasses.dataclass
class NetUse:
    """One network endpoint the run asked for."""

    scheme: str  # tcp, udp, tcp.srv, udp.srv, udp.new, tcp.new, unix, unix.srv
    endpoint: str  # "127.0.0.1:80", "[::1]:53", a unix path, "@name", "inet"
    network: str  # "host" (a grant served it), "own" (the program's own), "refused"
    calls: int = 0
    ok: int = 0
    errors: dict[str, int] = dataclasses.field(default_factory=dict)

    @property
    def op(self) -> str:
        return {"tcp.srv": "listen", "udp.srv": "bind", "unix.srv": "listen", "unixdg.srv": "bind",
                "udp.new": "socket", "tcp.new": "socket", "unixdg.new": "socket"}.get(self.scheme, "connect")

    def to_json(self) -> dict:
        return {"scheme": self.scheme, "op": self.op, "endpoint": self.endpoint,
                "network": self.network, "calls": self.calls, "ok": self.ok,
                "errors": dict(self.errors)}

    @classmethod
    def from_json(cls, doc: Mapping) -> NetUse:
        return cls(doc["scheme"], doc["endpoint"], doc["network"], int(doc.get("calls", 0)),
                   int(doc.get("ok", 0)), dict(doc.get("errors", {})))


@dataclasses.dataclass
class Profile:
    """What one run asked for (see the module docstring)."""

    argv: list[str]
    manifest: Manifest
    any_host_network: bool = False
    files: dict[str, FileUse] = dataclasses.field(default_factory=dict)  # canonical path -> use
    links: dict[str, str] = dataclasses.field(default_factory=dict)  # link guest path -> its text
    network: list[NetUse] = dataclasses.field(default_factory=list)
    executed: dict[str, int] = dataclasses.field(default_factory=dict)  # program -> times
    interpreters: dict[str, int] = dataclasses.field(default_factory=dict)
    unsupported: dict[str, int] = dataclasses.field(default_factory=dict)
    # Linux calls the library OS emulated: name -> program images that made
    # it (each reports a call once; None: the run was not traced).
    emulated: dict[str, int] | None = None
    denials: list[dict] = dataclasses.field(default_factory=list)  # Denial.to_json()
    peaks: dict[str, Any] = dataclasses.field(default_factory=dict)
    outcome: dict[str, Any] = dataclasses.field(default_factory=dict)
    audit_dropped: bool = False

    # -- by mount ---------------------------------------------------------------

    def mount_of(self, path: str) -> Mount | Tmpfs | None:
        return GuestView(self.manifest).mount_of(path)

    def by_mount(self) -> tuple[dict[str, list[FileUse]], list[FileUse]]:
        """({mount guest path: its uses}, uses outside every mount but the
        library OS's devices and the picoprocess's own /proc)."""
        view = GuestView(self.manifest)
        grouped: dict[str, list[FileUse]] = {}
        outside: list[FileUse] = []
        for use in sorted(self.files.values(), key=lambda u: u.path):
            m = view.mount_of(use.path)
            if m is None:
                if use.path not in DEVICE_PATHS and not picoprocess_own(use.path):
                    outside.append(use)
                continue
            grouped.setdefault(m.guest, []).append(use)
        return grouped, outside

    # -- JSON -------------------------------------------------------------------

    def to_json(self) -> dict:
        return {
            "schema": SCHEMA,
            "version": SCHEMA_VERSION,
            "argv": list(self.argv),
            "outcome": dict(self.outcome),
            "any_host_network": self.any_host_network,
            "manifest_toml": manifest_to_toml(self.manifest),
            "files": [u.to_json() for u in sorted(self.files.values(), key=lambda u: u.path)],
            "links": dict(sorted(self.links.items())),
            "network": [n.to_json() for n in self.network],
            "executed": dict(self.executed),
            "interpreters": dict(self.interpreters),
            "unsupported": dict(self.unsupported),
            "emulated": None if self.emulated is None else dict(self.emulated),
            "denials": list(self.denials),
            "peaks": dict(self.peaks),
            "audit_dropped": self.audit_dropped,
        }

    @classmethod
    def from_json(cls, doc: Mapping, source: str = "<trace>") -> Profile:
        if not isinstance(doc, Mapping) or doc.get("schema") != SCHEMA:
            raise ValueError(f"{source}: not a picoproc trace (no \"schema\": \"{SCHEMA}\"; write one "
                             "with picoproc trace --json FILE)")
        if doc.get("version") != SCHEMA_VERSION:
            raise ValueError(f"{source}: trace version {doc.get('version')!r}, this picoproc reads "
                             f"version {SCHEMA_VERSION}")
        try:
            manifest = parse_manifest(doc["manifest_toml"], f"{source}: manifest_toml", base_dir="/",
                                      host_env={})
            return cls(
                argv=list(doc.get("argv", [])),
                manifest=manifest,
                any_host_network=bool(doc.get("any_host_network", False)),
                files={f["path"]: FileUse.from_json(f) for f in doc.get("files", [])},
                links=dict(doc.get("links", {})),
                network=[NetUse.from_json(n) for n in doc.get("network", [])],
                executed=dict(doc.get("executed", {})),
                interpreters=dict(doc.get("interpreters", {})),
                unsupported=dict(doc.get("unsupported", {})),
                emulated=None if doc.get("emulated") is None else dict(doc["emulated"]),
                denials=list(doc.get("denials", [])),
                peaks=dict(doc.get("peaks", {})),
                outcome=dict(doc.get("outcome", {})),
                audit_dropped=bool(doc.get("audit_dropped", False)),
            )
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"{source}: malformed trace ({exc!r})") from None


# --------------------------------------------------------------------------
# From a run


def _file_accesses(rec: Mapping) -> list[tuple[str, str, bool]]:
    """(guest path, access, follow the last link) for each path a file call names."""
    call = rec.get("call")
    flags = rec.get("arg", 0) if isinstance(rec.get("arg"), int) else 0
    if call == "open":
        scheme, path = record_path(rec)
        if not path or not path.startswith("/"):
            return []
        follow = not flags & O_NOFOLLOW
        if scheme == "dir":
            return [(path, "list", follow)]
        if scheme in ("unixdg", "unixdg.srv"):
            path = path.rsplit("?fd=", 1)[0]  # the program's own socket, bound or connected in place
        if scheme in ("unix.srv", "unixdg.srv"):
            return [(path, "create", False)]
        if scheme in ("unix", "unixdg"):
            return [(path, "write", True)]  # a socket of the program's, in a writable mount
        if scheme != "file":
            return []
        if flags & O_PATH:
            return [(path, "stat", follow)]
        if flags & PICO_OPEN_EXEC:
            return [(path, "exec", True)]
        if flags & O_TMPFILE:
            return [(path, "create", True)]  # an unnamed file in this directory
        if flags & O_CREAT:
            return [(path, "create", follow)]
        if flags & O_ACCMODE or flags & O_TRUNC:
            return [(path, "write", follow)]
        return [(path, "read", follow)]
    path = rec.get("path")
    if not path or not path.startswith("/"):
        return []
    if call == "stat":
        return [(path, "stat", not flags & AT_SYMLINK_NOFOLLOW)]
    if call in ("access", "statfs"):
        return [(path, "stat", True)]
    if call == "readlink":
        return [(path, "stat", False)]
    if call in ("mkdir", "symlink"):
        return [(path, "create", False)]
    if call == "unlink":
        return [(path, "remove", False)]
    if call == "rename":
        out = [(path, "remove", False)]
        if rec.get("new_path"):
            out.append((rec["new_path"], "create", False))
        return out
    if call == "link":
        out = [(path, "stat", bool(flags & 0x400))]  # AT_SYMLINK_FOLLOW
        if rec.get("new_path"):
            out.append((rec["new_path"], "create", False))
        return out
    if call in ("chmod", "chown", "utimens", "truncate"):
        return [(path, "attr", True)]
    if call == "mknod":
        return [(path, "create", False)]
    if call == "xattr":
        # The op in the low bits: get 0, list 1, set 2, remove 3 (PICO_XATTR_*).
        op = flags & 0x7
        return [(path, "attr" if op in (2, 3) else "stat", True)]
    if call == "inotify":
        # A watch is offered only in writable mounts: learning must keep that.
        return [(path, "watch", True)]
    return []


def _network_of(manifest: Manifest, any_host: bool, scheme: str, endpoint: str) -> str:
    """Which network served an allowed network open: "host" or "own"."""
    if scheme in ("udp.new", "tcp.new", "udp.srv", "unix.srv", "unixdg.new", "unixdg.srv"):
        return "own"
    if scheme in ("unix", "unixdg"):
        if endpoint.startswith("@"):
            return "own"
        for granted in manifest.unix_paths:
            real = os.path.realpath(granted)
            if endpoint == real or (os.path.isdir(real) and under(endpoint, real)):
                return "host"
        return "own"
    try:
        ep = parse_endpoint(endpoint)
        ip = ipaddress.ip_address(ep.host)
    except Exception:  # noqa: BLE001
        return "own"
    grants = manifest.net_listen if scheme == "tcp.srv" else manifest.net_connect
    if any(g.host == ep.host and g.port in (0, ep.port) for g in grants):
        return "host"
    if any_host and scheme in ("tcp", "udp") and not ip.is_loopback and not ip.is_unspecified:
        return "host"
    return "own"


def _net_endpoint(scheme: str, rest: str) -> str:
    if scheme in ("unixdg", "unixdg.srv"):
        return rest.rsplit("?fd=", 1)[0]
    body = rest.split("?", 1)[0]
    if scheme in ("unix", "unix.srv", "udp.new", "tcp.new", "unixdg.new"):
        return body
    try:
        return format_endpoint(parse_endpoint(body))
    except Exception:  # noqa: BLE001
        return body


NET_SCHEMES = ("tcp", "udp", "tcp.srv", "udp.srv", "udp.new", "tcp.new", "unix", "unix.srv", "unixdg",
               "unixdg.srv", "unixdg.new")


class ProfileBuilder:
    """Builds a Profile from a run's audit records as they come: a traced
    run's audit sink (``Sandbox(trace=True, audit=builder.add)``), since a
    run keeps only its first records in memory (api.AUDIT_KEEP).  Records
    are folded as they arrive into one entry per distinct (path, kind of
    access) and endpoint, at most MAX_ENTRIES (a guest that makes up names
    must not grow the monitor): beyond that the profile is marked
    incomplete.  Paths are resolved in the guest's view at ``finish``."""

    MAX_ENTRIES = 200_000

    def __init__(self, manifest: Manifest, any_host_network: bool = False) -> None:
        self.manifest = manifest
        self.any_host_network = any_host_network
        # (path, access, follow) -> [calls, ok, enoent, exec_checked, {errno: n}]
        self._files: dict[tuple[str, str, bool], list] = {}
        self._net: dict[tuple[str, str], NetUse] = {}
        self._unsupported: dict[int, int] = {}
        self._emulated: dict[int, int] = {}
        self.overflow = False
        self._lock = threading.Lock()

    def add(self, records: Iterable[Mapping]) -> None:
        with self._lock:
            for rec in records:
                self._add(rec)

    def _room(self) -> bool:
        if len(self._files) + len(self._net) < self.MAX_ENTRIES:
            return True
        self.overflow = True
        return False

    def _add(self, rec: Mapping) -> None:
        decision = rec.get("decision")
        call = rec.get("call")
        if decision == "abandoned":
            return
        if call in ("note_unsupported", "note_emulated"):
            into = self._unsupported if call == "note_unsupported" else self._emulated
            nr = rec.get("linux_nr")
            if nr in into or len(into) < 1024:
                into[nr] = into.get(nr, 0) + 1
            return
        scheme, rest = record_path(rec)
        if call == "open" and scheme in NET_SCHEMES and rest is not None:
            endpoint = _net_endpoint(scheme, rest)
            # unix:/PATH names a socket in the guest's view unless granted:
            # also a file use (it needs its writable mount).
            network = "refused" if decision == "deny" else \
                _network_of(self.manifest, self.any_host_network, scheme, endpoint)
            key = (scheme, endpoint)
            use = self._net.get(key)
            if use is None:
                if not self._room():
                    return
                use = self._net[key] = NetUse(scheme, endpoint, network)
            use.calls += 1
            if decision == "allow":
                use.ok += 1
            elif rec.get("errno_name"):
                use.errors[rec["errno_name"]] = use.errors.get(rec["errno_name"], 0) + 1
            if not (scheme in ("unix", "unix.srv", "unixdg", "unixdg.srv") and network == "own"
                    and rest.startswith("/")):
                return
        if decision == "deny":
            return  # in the denial summary
        for path, access, follow in _file_accesses(rec):
            key = (path, access, follow)
            entry = self._files.get(key)
            if entry is None:
                if not self._room():
                    return
                entry = self._files[key] = [0, 0, False, False, {}]
            entry[0] += 1
            if decision == "allow":
                entry[1] += 1
                if call == "access" and isinstance(rec.get("arg"), int) and rec["arg"] & X_OK:
                    entry[3] = True
            elif rec.get("errno") == errno.ENOENT:
                entry[2] = True
            elif rec.get("errno_name"):
                entry[4][rec["errno_name"]] = entry[4].get(rec["errno_name"], 0) + 1

    def finish(self, result, audit_dropped: bool = False) -> Profile:
        """The profile, once every record of the run has been added."""
        from picoproc.abi.linux import SYSCALLS_BY_NR

        view = GuestView(self.manifest)
        prof = Profile(argv=list(result.argv), manifest=self.manifest,
                       any_host_network=self.any_host_network,
                       audit_dropped=audit_dropped or self.overflow)
        exec_paths: dict[str, int] = {}
        with self._lock:
            files = list(self._files.items())
            prof.network = sorted(self._net.values(), key=lambda n: (n.network, n.scheme, n.endpoint))
            unsupported = dict(self._unsupported)
            emulated = dict(self._emulated)
        for (path, access, follow), (calls, ok, enoent, exec_checked, errs) in files:
            res = view.resolve(path, follow=follow)
            canon = res.path
            for link in res.links:
                prof.links.setdefault(link, _link_text(view, link))
                _use(prof, link).access.add("link")
            use = _use(prof, canon)
            use.calls += calls
            if ok:
                use.access.add(access)
                use.exec_checked |= exec_checked
                if access == "exec":
                    exec_paths[canon] = exec_paths.get(canon, 0) + ok
            use.missing |= enoent
            for name, n in errs.items():
                use.errors[name] = use.errors.get(name, 0) + n
        _mark_elf_objects(view, prof)
        prof.executed, prof.interpreters = _split_interpreters(view, exec_paths)
        prof.unsupported = dict(sorted(((SYSCALLS_BY_NR.get(nr, str(nr)), n)
                                        for nr, n in unsupported.items()),
                                       key=lambda kv: (-kv[1], kv[0])))
        prof.emulated = dict(sorted((SYSCALLS_BY_NR.get(nr, str(nr)), n)
                                    for nr, n in emulated.items())) or None
        prof.denials = [d.to_json() for d in result.denial_summary]
        prof.peaks = _peaks(result)
        prof.outcome = {"exit_status": result.exit_status, "exit_code": result.exit_code,
                        "signal": result.signal, "limit": result.limit, "reason": result.reason}
        return prof


def profile_run(result, manifest: Manifest | None = None, *, any_host_network: bool = False,
                audit_dropped: bool = False) -> Profile:
    """The profile of a finished run from the records its Result kept (a run
    keeps only its first records: for a long run, build it while the run
    lasts with ProfileBuilder)."""
    manifest = manifest or result.manifest
    if manifest is None:
        raise ValueError("profile_run: the run's manifest is needed")
    builder = ProfileBuilder(manifest, any_host_network)
    builder.add(result.audit)
    return builder.finish(result, audit_dropped or bool(getattr(result, "audit_dropped", 0)))


ELF_MAGIC = b"\x7fELF"


def _mark_elf_objects(view: GuestView, prof: Profile) -> None:
    """Marks "map" on the ELF shared objects and executables the run read:
    the dynamic loader and dlopen map them executable, which a noexec mount
    refuses (the monitor never sees an mmap: it is a direct call).  One read
    only as data is marked too."""
    for use in prof.files.values():
        if "read" not in use.access or "exec" in use.access:
            continue
        host = view.host_path(use.path)
        if host is None:
            continue
        try:
            with open(host, "rb") as f:
                head = f.read(18)
        except OSError:
            continue
        # Shared objects and executables (e_type ET_EXEC 2, ET_DYN 3, little
        # endian); an object file (.o, ET_REL) is only ever read.
        if head[:4] == ELF_MAGIC and len(head) == 18 and head[16:18] in (b"\x02\x00", b"\x03\x00"):
            use.access.add("map")


def _use(prof: Profile, path: str) -> FileUse:
    use = prof.files.get(path)
    if use is None:
        use = prof.files[path] = FileUse(path)
    return use


def _link_text(view: GuestView, link: str) -> str:
    host = view.host_path(link)
    try:
        return os.readlink(host) if host else ""
    except OSError:
        return ""


def _split_interpreters(view: GuestView, exec_paths: dict[str, int]) -> tuple[dict, dict]:
    """(programs executed, ELF interpreters) among the images opened for
    execution: an interpreter is the PT_INTERP of another image opened."""
    from picoproc.image import ImageError, inspect_elf

    interps: set[str] = set()
    for path in exec_paths:
        host = view.host_path(path)
        if host is None:
            continue
        try:
            info = inspect_elf(host)
        except (ImageError, OSError):
            continue
        if info.interpreter:
            interps.add(view.resolve(info.interpreter).path)
    programs = {p: n for p, n in sorted(exec_paths.items()) if p not in interps}
    interpreters = {p: n for p, n in sorted(exec_paths.items()) if p in interps}
    return programs, interpreters


def _peaks(result) -> dict[str, Any]:
    u = result.usage
    # The cgroup's peak misses file pages that another cgroup read first
    # (they stay charged there); the largest process's RSS counts them.
    rss = u.max_rss_kb * 1024
    memory = u.memory_peak_bytes
    if memory is None:
        source = "largest process's RSS (no cgroup)"
    elif memory >= rss:
        source = "the run's cgroup"
    else:
        source = "largest process's RSS, above the cgroup's peak"
    return {
        "memory_bytes": max(memory or 0, rss),
        "memory_source": source,
        "tasks": u.tasks_peak,
        "output_bytes": u.output_bytes,
        "wall_time_s": round(u.wall_time_s, 3),
        "cpu_time_s": round(u.cpu_user_s + u.cpu_system_s, 3),
        "scratch": {g: dict(v) for g, v in (u.scratch or {}).items()},
    }


# --------------------------------------------------------------------------
# Text


def _size(n: int | None) -> str:
    if n is None:
        return "?"
    for unit, shift in (("G", 30), ("M", 20), ("K", 10)):
        if n >= 1 << shift:
            return f"{n / (1 << shift):.1f}{unit}"
    return f"{n}B"


_WORDS = {"exec": "executed", "map": "loaded (shared objects)",
          "create": "created", "write": "written", "remove": "removed",
          "attr": "changed (mode, times, size)", "watch": "watched (inotify)", "read": "read",
          "list": "listed",
          "stat": "looked up", "link": "symbolic links followed"}


def _group_lines(uses: Iterable[FileUse], verbose: bool, indent: str) -> list[str]:
    """Lines for one mount: per kind of access, the paths (or per directory
    counts, unless verbose)."""
    by_access: dict[str, list[str]] = {}
    missing: list[str] = []
    for use in uses:
        strongest = next((a for a in ACCESS_ORDER if a in use.access), None)
        if strongest is None:
            if use.missing:
                missing.append(use.path)
            continue
        by_access.setdefault(strongest, []).append(use.path)
    lines = []
    for access in ACCESS_ORDER:
        paths = by_access.get(access)
        if paths:
            lines.append(f"{indent}{_WORDS[access]:<28} {_paths_text(paths, verbose)}")
    if missing:
        lines.append(f"{indent}{'absent (asked for, ENOENT)':<28} {_paths_text(missing, verbose)}")
    return lines


def _paths_text(paths: list[str], verbose: bool, show: int = 4) -> str:
    if verbose or len(paths) <= show:
        return ", ".join(paths)
    by_dir: dict[str, int] = {}
    for p in paths:
        d = os.path.dirname(p)
        by_dir[d] = by_dir.get(d, 0) + 1
    parts = [f"{d}/ ({n})" if n > 1 else next(p for p in paths if os.path.dirname(p) == d)
             for d, n in sorted(by_dir.items(), key=lambda kv: (-kv[1], kv[0]))]
    if len(parts) > 6:
        parts = parts[:6] + [f"... {len(paths)} paths in {len(by_dir)} directories"]
    return ", ".join(parts)


def format_profile(prof: Profile, verbose: bool = False) -> str:
    """The profile as text for a person (``picoproc trace``'s output)."""
    out = []
    o = prof.outcome
    out.append(f"picoproc trace: {' '.join(prof.argv)}")
    out.append(f"  {o.get('reason', '?')} (exit status {o.get('exit_status')})")
    if prof.audit_dropped:
        out.append("  WARNING: the monitor dropped audit records: this profile is incomplete")
    grouped, outside = prof.by_mount()
    out.append("")
    out.append("Files, by mount:")
    mounts = {m.guest: m for m in (*prof.manifest.mounts, *prof.manifest.tmpfs)}
    scratch = prof.peaks.get("scratch") or {}
    for guest in sorted(mounts):
        m = mounts[guest]
        uses = grouped.get(guest, [])
        if isinstance(m, Tmpfs):
            s = scratch.get(guest, {})
            peak = s.get("peak_bytes", s.get("used_bytes"))
            head = (f"  {guest}  (tmpfs {format_size(m.size_bytes)}: peak {_size(peak)}, "
                    f"{s.get('peak_inodes', s.get('used_inodes', '?'))} inodes)")
        else:
            mode = "rw" if m.writable else "ro"
            head = f"  {guest}  (host {m.host}, {mode}{'' if m.exec else ', noexec'})"
        if not uses and not isinstance(m, Tmpfs):
            out.append(f"{head}: not used")
            continue
        out.append(head + ("" if uses else ": not used"))
        out += _group_lines(uses, verbose, "    ")
    if outside:
        out.append("  (not mounted)")
        out += _group_lines(outside, verbose, "    ")
    out.append("")
    if prof.network:
        out.append("Network:")
        for n in prof.network:
            where = {"host": "the host's (granted)", "own": "the program's own network",
                     "refused": "REFUSED (not granted)"}[n.network]
            errs = "".join(f", {k} x{v}" for k, v in n.errors.items())
            out.append(f"  {n.scheme:8} {n.op:7} {n.endpoint:24} {where}; {n.calls} call"
                       f"{'s' if n.calls != 1 else ''}{errs}")
    else:
        out.append("Network: none")
    out.append("")
    if prof.executed:
        out.append("Programs executed: " + ", ".join(
            f"{p}" + (f" (x{n})" if n > 1 else "") for p, n in prof.executed.items()))
    if prof.interpreters:
        out.append("ELF interpreters: " + ", ".join(prof.interpreters))
    if prof.emulated:
        out.append(f"Emulated by the library OS ({len(prof.emulated)} calls; images that made "
                   "each): " + ", ".join(f"{k}" + (f" ({v})" if v > 1 else "")
                                         for k, v in prof.emulated.items()))
    if prof.unsupported:
        out.append("Not implemented by picoproc (ENOSYS): " + ", ".join(
            f"{k} ({v})" for k, v in prof.unsupported.items()))
    p = prof.peaks
    tasks = p.get("tasks")
    out.append(f"Peaks: memory {_size(p.get('memory_bytes'))} ({p.get('memory_source')}), "
               f"tasks {tasks if tasks is not None else '? (no cgroup)'}, output "
               f"{_size(p.get('output_bytes'))}, wall {p.get('wall_time_s')} s, CPU "
               f"{p.get('cpu_time_s')} s")
    if prof.denials:
        out.append("")
        out.append("Refused by the manifest:")
        for d in prof.denials:
            out.append(f"  {Denial(**d).line()}")
    return "\n".join(out) + "\n"
