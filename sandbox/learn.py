"""``picoproc learn``: the narrowest manifest that lets a run succeed.

A program runs once (or several times: several profiles) under a
permissive *learning manifest*: the default's read-only system
directories, the mounts the user gives, no network unless ``--allow-net``,
and always the default's hidden secrets.  Its profile (picoproc.trace) says
which files and directories it used and how; this module writes the
manifest that grants exactly that, with a comment on every line saying why:

* mounts narrowed to the directories used, each shown from the same host
  directory as in the learning run.  A file's directory is mounted (a
  program that reads /etc/passwd gets /etc, minus the hidden secrets), a
  directory the program listed or made is mounted whole, a directory only
  looked up is mounted only if no other mount leads through it (the empty
  directories the guest's root shows on the way to the mount points
  answer the rest).  A directory within a mount already granted with at
  least the same rights adds nothing; where four or more directories side
  by side need the same rights, their parent is mounted instead (fewer,
  broader mounts: MERGE_SIBLINGS);
* ``ro`` unless something under it was written, created, removed or had
  its mode or times changed (a change of a name needs its directory
  writable); ``noexec`` unless a program under it was executed or checked
  for execution (``access(X_OK)``, as a shell's PATH search does);
* the tmpfs mounts that were used, sized from the observed peak;
* network grants for the host endpoints the run used: never for the
  program's own loopback (it needs none) and never for what was refused;
* limits from the observed peaks times ``margin``;
* the hidden paths and names of the learning manifest (the default's
  secrets at least), the environment, working directory and host name.

The manifest stands alone (no ``extends``): the default's whole ``/usr``
would come back with it.
"""

from __future__ import annotations

import dataclasses
import datetime
import math
import os
import stat as stat_mod
from collections.abc import Sequence

from picoproc.errors import PicoprocError
from picoproc.guestview import GuestView, host_path, under
from picoproc.manifest import (
    MIN_MEMORY_BYTES,
    Manifest,
    ManifestError,
    Mount,
    Tmpfs,
    format_size,
    parse_manifest,
    toml_string,
)
from picoproc.trace import DEVICE_PATHS, FileUse, Profile

# A directory of which a run used at most this many files (and did not
# list or change) gets those files mounted one by one, not the directory:
# /etc gives passwd and ld.so.cache, not ssh/ and cron.d/.
FILE_MOUNTS_MAX = 8
# Four or more directories side by side with the same rights: mount their
# parent instead.  Python's imports, a compiler's headers and a build tree
# all use many sibling directories; one mount each would be hundreds.
MERGE_SIBLINGS = 4
DEFAULT_MARGIN = 2.0
# Floors of learned limits: below these a second run's noise (a longer
# file name, a slower clock) would fail it.
MIN_MEMORY = 16 << 20
MIN_OUTPUT = 64 << 10
MIN_SCRATCH = 1 << 20
MIN_SCRATCH_INODES = 256
# Time varies with the machine's load far more than memory does.
TIME_FACTOR = 10
MIN_TIME_S = 10


class LearnError(ValueError, PicoprocError):
    """The profiles cannot be turned into a manifest; the message says why."""


@dataclasses.dataclass
class Anchor:
    """A directory (or file) of the learning view the learned manifest mounts."""

    guest: str
    host: str
    source: str  # the guest path of the learning mount it narrows
    writable: bool = False
    exec: bool = False
    is_file: bool = False  # one file (a file mount), not a directory
    why: dict[str, list[str]] = dataclasses.field(default_factory=dict)  # access -> example paths

    def note(self, access: str, path: str) -> None:
        seen = self.why.setdefault(access, [])
        if path not in seen:
            seen.append(path)

    def covers(self, other: Anchor) -> bool:
        return self.source == other.source and (self.writable or not other.writable) and \
            (self.exec or not other.exec)


def _is_dir(host: str) -> bool:
    try:
        return stat_mod.S_ISDIR(os.lstat(host).st_mode)
    except OSError:
        return False


def _existing_dir(mount: Mount, guest: str) -> str:
    """``guest`` or its nearest ancestor that is a directory on the host,
    not above the mount."""
    while guest != mount.guest and under(guest, mount.guest):
        if _is_dir(host_path(mount, guest)):
            return guest
        guest = os.path.dirname(guest)
    return mount.guest


class _Learner:
    def __init__(self) -> None:
        self.anchors: dict[str, Anchor] = {}
        self.looked_up: list[tuple[Mount, str]] = []  # directories only looked up
        # Files used, by (learning mount, directory): path -> (writable, exec, kinds)
        self.files: dict[tuple[str, str], dict[str, list]] = {}
        self.mounts: dict[str, Mount] = {}
        self.link_targets: dict[str, str] = {}  # link -> the canonical path it leads to

    def add(self, mount: Mount, guest: str, writable: bool, exec_: bool, access: str,
            path: str, single_file: bool = False) -> None:
        if not _is_dir(mount.host):
            guest = mount.guest  # a single-file mount: all of it or nothing
        elif not single_file and not _is_dir(host_path(mount, guest)):
            guest = _existing_dir(mount, guest)  # gone since (made and removed by the run)
        host = host_path(mount, guest)
        a = self.anchors.get(guest)
        if a is None:
            a = self.anchors[guest] = Anchor(guest, host, mount.guest, is_file=single_file)
        elif a.host != host:
            raise LearnError(f"the traces disagree on what {guest} is: host {a.host} and {host}")
        a.is_file &= single_file
        a.writable |= writable
        a.exec |= exec_
        a.note(access, path)

    def use(self, mount: Mount, use: FileUse, view: GuestView) -> None:
        self.mounts[mount.guest] = mount
        if "link" in use.access and os.path.islink(host_path(mount, use.path)):
            # A link mounted on its own shows what it leads to (the manifest
            # resolves host paths when it is loaded): it needs that file's rights.
            self.link_targets[use.path] = view.resolve(use.path).path
        access = use.access
        is_dir = _is_dir(host_path(mount, use.path))
        # A watch is offered only in writable mounts (the monitor's rule).
        data_change = bool(access & {"write", "attr", "watch"})
        # An ELF object loaded (mapped executable) needs exec as much as a
        # program run: the kernel refuses mmap(PROT_EXEC) on a noexec mount.
        runs = bool(access & {"exec", "map"}) or (use.exec_checked and not is_dir)
        parent = os.path.dirname(use.path) if use.path != mount.guest else mount.guest
        if access & {"create", "remove"}:
            # A name made or removed: its directory must be writable.
            self.add(mount, parent, True, False, "create" if "create" in access else "remove",
                     use.path)
        if is_dir:
            if access & {"list", "read"} or data_change:
                self.add(mount, use.path, data_change, False,
                         "attr" if data_change else "list", use.path)
            elif not access & {"create", "remove"}:
                self.looked_up.append((mount, use.path))
            return
        kind = next((k for k in ("exec", "map", "write", "attr", "watch", "read", "stat", "link")
                     if k in access), None)
        if runs and kind not in ("exec", "map"):
            kind = "exec"
        if kind is None or not os.path.lexists(host_path(mount, use.path)):
            return  # gone since: its directory was made writable above
        if "create" in access:
            # Made by the run (a build's output): not an input to mount on its
            # own, which would not exist before the next run; its directory,
            # writable already, also runs it if the run did.
            if runs:
                self.add(mount, parent, True, True, "exec", use.path)
            return
        need = self.files.setdefault((mount.guest, parent), {}).setdefault(use.path,
                                                                           [False, False, kind])
        need[0] |= data_change
        need[1] |= runs

    def place_files(self) -> None:
        """Files used: each mounted on its own where its directory had few
        used (FILE_MOUNTS_MAX), else the directory."""
        needs = {p: n for files in self.files.values() for p, n in files.items()}
        for (source, parent), files in self.files.items():
            mount = self.mounts[source]
            single = len(files) <= FILE_MOUNTS_MAX and _is_dir(mount.host)
            for path, (writable, runs, kind) in sorted(files.items()):
                target = needs.get(self.link_targets.get(path, ""))
                if single and target is not None:
                    writable, runs = writable or target[0], runs or target[1]
                if single:
                    self.add(mount, path, writable, runs, kind, path, single_file=True)
                else:
                    self.add(mount, parent, writable, runs, kind, path)


def _collapse(anchors: dict[str, Anchor]) -> list[Anchor]:
    """Drops every anchor that a nearer ancestor of the same learning mount
    already grants (parents come first in path order)."""
    kept: list[Anchor] = []
    for a in sorted(anchors.values(), key=lambda x: (x.guest.count("/") if x.guest != "/" else 0,
                                                      x.guest)):
        ancestors = [k for k in kept if under(a.guest, k.guest) and k.guest != a.guest]
        nearest = max(ancestors, key=lambda k: len(k.guest), default=None)
        if nearest is not None and nearest.covers(a):
            for access, paths in a.why.items():
                for p in paths:
                    nearest.note(access, p)
            continue
        kept.append(a)
    return sorted(kept, key=lambda x: x.guest)


def _merge_siblings(anchors: list[Anchor], mounts: dict[str, Mount]) -> dict[str, Anchor]:
    """Where MERGE_SIBLINGS or more anchors with the same rights share a
    parent directory (inside their learning mount), the parent instead."""
    out = {a.guest: a for a in anchors}
    groups: dict[tuple, list[Anchor]] = {}
    for a in anchors:
        parent = os.path.dirname(a.guest)
        if a.is_file or a.guest == a.source or not under(parent, a.source):
            continue
        groups.setdefault((parent, a.source, a.writable, a.exec), []).append(a)
    for (parent, source, writable, exec_), members in groups.items():
        if len(members) < MERGE_SIBLINGS:
            continue
        mount = mounts[source]
        merged = out.get(parent)
        if merged is None:
            merged = out[parent] = Anchor(parent, host_path(mount, parent), source)
        merged.writable |= writable
        merged.exec |= exec_
        for m in members:
            for access, paths in m.why.items():
                for p in paths:
                    merged.note(access, p)
    return out


# --------------------------------------------------------------------------


@dataclasses.dataclass
class Learned:
    """The learned manifest: its TOML text (with comments) and the Manifest."""

    toml: str
    manifest: Manifest
    mounts: list[Anchor]
    tmpfs: list[Tmpfs]
    connect: list[str]
    listen: list[str]
    unix: list[str]


def _c(text: str) -> str:
    """Text for a TOML comment: one line, whatever a path or argv holds."""
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)


def _round_up(n: float, unit: int) -> int:
    return int(math.ceil(n / unit) * unit)


def _examples(why: dict[str, list[str]], limit: int = 2) -> str:
    words = {"exec": "executed", "map": "loaded", "create": "created", "remove": "removed",
             "write": "wrote",
             "attr": "changed", "watch": "watched", "read": "read", "list": "listed",
             "stat": "looked up", "link": "followed links"}
    parts = []
    for access in ("exec", "map", "create", "remove", "write", "attr", "watch", "read", "list",
                   "stat", "link"):
        paths = why.get(access)
        if not paths:
            continue
        shown = ", ".join(paths[:limit]) + (f" and {len(paths) - limit} more" if len(paths) > limit else "")
        parts.append(f"{words[access]} {shown}")
    return "; ".join(parts)


def learn_manifest(profiles: Sequence[Profile], margin: float = DEFAULT_MARGIN) -> Learned:
    """The narrowest manifest under which every profiled run does what it did."""
    if not profiles:
        raise LearnError("nothing to learn from: give a program to run or --from TRACE")
    if not margin >= 1:
        raise LearnError(f"--margin {margin}: must be at least 1")
    learner = _Learner()
    tmpfs_used: dict[str, Tmpfs] = {}
    mounts: dict[str, Mount] = {}
    net_connect: dict[str, str] = {}
    net_listen: dict[str, str] = {}
    net_unix: dict[str, str] = {}
    own: list[str] = []
    refused: list[str] = []
    base = profiles[-1].manifest
    for prof in profiles:
        view = GuestView(prof.manifest)
        for m in prof.manifest.mounts:
            seen = mounts.get(m.guest)
            if seen is not None and seen.host != m.host:
                raise LearnError(f"the traces disagree on what {m.guest} is: host {seen.host} "
                                 f"and {m.host}")
            mounts[m.guest] = m
        for use in prof.files.values():
            m = view.mount_of(use.path)
            if isinstance(m, Tmpfs):
                tmpfs_used[m.guest] = m
                continue
            if m is None or use.path in DEVICE_PATHS or not use.access:
                continue
            learner.use(m, use, view)
        if prof.manifest.cwd != "/":
            m = view.mount_of(prof.manifest.cwd)
            if isinstance(m, Mount):
                learner.looked_up.append((m, prof.manifest.cwd))
            elif isinstance(m, Tmpfs):
                tmpfs_used[m.guest] = m
        for n in prof.network:
            what = f"{n.scheme} {n.op} {n.endpoint}"
            if n.network == "refused":
                refused.append(what)
            elif n.network == "own":
                own.append(what)
            elif n.scheme in ("tcp", "udp"):
                net_connect.setdefault(n.endpoint, what)
            elif n.scheme == "tcp.srv":
                net_listen.setdefault(n.endpoint, what)
            elif n.scheme == "unix":
                net_unix.setdefault(n.endpoint, what)
    learner.place_files()
    # Directories only looked up: mounted only when no other mount leads
    # through them (the guest's root shows those on the way) or holds them.
    for mount, path in learner.looked_up:
        if any(under(g, path) for g in learner.anchors) or \
                any(under(path, a.guest) and a.source == mount.guest for a in learner.anchors.values()):
            continue
        learner.add(mount, path, False, False, "stat", path)
    kept = _collapse(learner.anchors)
    for _ in range(32):
        merged = _collapse(_merge_siblings(kept, mounts))
        if [(a.guest, a.writable, a.exec) for a in merged] == \
                [(a.guest, a.writable, a.exec) for a in kept]:
            break
        kept = merged
    tmpfs = _learned_tmpfs(profiles, tmpfs_used, margin)
    toml = _write_toml(profiles, base, kept, tmpfs, net_connect, net_listen, net_unix, own,
                       refused, margin)
    try:
        manifest = parse_manifest(toml, "<learned manifest>", base_dir="/", host_env={})
    except ManifestError as exc:
        raise LearnError(f"the learned manifest does not load: {exc}") from None
    return Learned(toml, manifest, kept, tmpfs, list(net_connect), list(net_listen),
                   list(net_unix))


def _learned_tmpfs(profiles: Sequence[Profile], used: dict[str, Tmpfs], margin: float) -> list[Tmpfs]:
    out = []
    for guest, t in sorted(used.items()):
        peak_bytes = peak_inodes = 0
        for prof in profiles:
            s = (prof.peaks.get("scratch") or {}).get(guest) or {}
            peak_bytes = max(peak_bytes, s.get("peak_bytes") or s.get("used_bytes") or 0)
            peak_inodes = max(peak_inodes, s.get("peak_inodes") or s.get("used_inodes") or 0)
        size = max(_round_up(peak_bytes * margin, 1 << 20), MIN_SCRATCH)
        inodes = max(_round_up(peak_inodes * margin, 64), MIN_SCRATCH_INODES)
        out.append(Tmpfs(guest, size, inodes))
    return out


def _write_toml(profiles: Sequence[Profile], base: Manifest, anchors: list[Anchor],
                tmpfs: list[Tmpfs], net_connect: dict[str, str], net_listen: dict[str, str],
                net_unix: dict[str, str], own: list[str], refused: list[str],
                margin: float) -> str:
    q = toml_string
    lines = []
    runs = _c("; ".join(" ".join(p.argv) for p in profiles))
    today = datetime.date.today().isoformat()
    lines += [
        f"# Learned by picoproc learn on {today} from {len(profiles)} run{'s' if len(profiles) != 1 else ''}:",
        f"#   {runs}",
        "# It grants what those runs used and nothing else; a run that strays outside it",
        "# is refused, and picoproc run says what was refused and which flag grants it.",
        "#   picoproc run --manifest THIS_FILE -- PROG ...",
        "# Stand-alone (no extends = \"default\"): the default would bring back all of /usr.",
    ]
    failed = [p for p in profiles if p.outcome.get("exit_status") not in (0, None)]
    for p in failed:
        lines.append(f"# NOTE: {_c(' '.join(p.argv))} ended with status "
                     f"{p.outcome.get('exit_status')} ({_c(str(p.outcome.get('reason')))}) while "
                     "learning: this manifest reproduces that run.")
    if any(p.audit_dropped for p in profiles):
        lines.append("# NOTE: the monitor dropped audit records while learning: some uses may be missing.")
    lines += ["", "# The learning run's working directory and host name.",
              f"cwd = {q(base.cwd)}", f"hostname = {q(base.hostname)}"]
    if base.hidden:
        lines += ["", "# Secrets stay hidden even where a mount below would show them (the",
                  "# learning manifest's hidden paths, the default's secrets among them).",
                  "hidden = ["] + [f"  {q(h)}," for h in base.hidden] + ["]"]
    if base.hidden_names:
        lines += ["# Names like private keys and credential stores, in every directory.",
                  "hidden_names = ["] + [f"  {q(n)}," for n in base.hidden_names] + ["]"]
    lines += ["", "# The environment of the learning run."]
    lines += ["[env]"] + [f"{q(k)} = {q(v)}" for k, v in base.env]

    lines += ["", "[net]"]
    if own:
        lines.append("# The program's own loopback needs no grant: " + _c(", ".join(dict.fromkeys(own))))
    if refused:
        lines.append("# Refused while learning, so not granted (learn again with --allow-net or "
                     "--net-connect to include): " + _c(", ".join(dict.fromkeys(refused))))
    for key, grants in (("connect", net_connect), ("listen", net_listen), ("unix", net_unix)):
        if grants:
            lines.append(f"{key} = [")
            for ep, what in grants.items():
                lines.append(f"  {q(ep)},  # used: {_c(what)}")
            lines.append("]")
        else:
            lines.append(f"{key} = []")

    lines += ["", "[limits]"] + _limit_lines(profiles, base, margin)

    for a in anchors:
        mode = "rw" if a.writable else "ro"
        lines += ["", f"# {_c(_examples(a.why))}"[:400]]
        if a.source != a.guest:
            lines.append(f"# (narrowed from the learning mount {_c(a.source)})")
        lines += ["[[mount]]", f"guest = {q(a.guest)}", f"host = {q(a.host)}",
                  f"mode = \"{mode}\"" + ("  # written" if a.writable else ""),
                  f"exec = {'true' if a.exec else 'false'}"
                  + ("  # a program ran or was loaded from here" if a.exec else "")]
    for t in tmpfs:
        peak = _tmpfs_peak(profiles, t.guest)
        lines += ["", (f"# Scratch: peak {peak[0]} bytes and {peak[1]} inodes observed "
                       f"(sampled every few ms), times {margin:g}, at least "
                       f"{format_size(MIN_SCRATCH)}."),
                  "[[tmpfs]]", f"guest = {q(t.guest)}", f"size = {q(format_size(t.size_bytes))}",
                  f"inodes = {t.inodes}"]
    return "\n".join(lines) + "\n"


def _tmpfs_peak(profiles: Sequence[Profile], guest: str) -> tuple[int, int]:
    b = i = 0
    for prof in profiles:
        s = (prof.peaks.get("scratch") or {}).get(guest) or {}
        b = max(b, s.get("peak_bytes") or s.get("used_bytes") or 0)
        i = max(i, s.get("peak_inodes") or s.get("used_inodes") or 0)
    return b, i


def _limit_lines(profiles: Sequence[Profile], base: Manifest, margin: float) -> list[str]:
    def peak(key: str):
        values = [p.peaks.get(key) for p in profiles if p.peaks.get(key) is not None]
        return max(values) if values else None

    lines = []
    memory = peak("memory_bytes")
    if memory is not None:
        value = max(_round_up(memory * margin, 1 << 20), MIN_MEMORY, MIN_MEMORY_BYTES)
        source = next((p.peaks.get("memory_source") for p in profiles), "")
        lines.append(f"memory = {toml_string(format_size(value))}  # {margin:g} x the peak "
                     f"{memory} bytes ({source}), at least {format_size(MIN_MEMORY)}")
    tasks = peak("tasks")
    if tasks is not None:
        value = max(math.ceil(tasks * margin), tasks + 2)
        lines.append(f"pids = {value}  # {margin:g} x the peak of {tasks} processes and threads")
    elif base.limits.pids is not None:
        lines.append(f"pids = {base.limits.pids}  # the learning run's limit (no cgroup here to "
                     "measure the peak)")
    if base.limits.open_files is not None:
        lines.append(f"open_files = {base.limits.open_files}  # the learning run's limit (not measured)")
    output = peak("output_bytes")
    if output is not None:
        value = max(_round_up(output * margin, 1024), MIN_OUTPUT)
        lines.append(f"output = {toml_string(format_size(value))}  # {margin:g} x the {output} "
                     f"bytes written, at least {format_size(MIN_OUTPUT)}")
    for key, limit_key in (("wall_time_s", "wall_time"), ("cpu_time_s", "cpu_time")):
        observed = peak(key)
        if observed is not None:
            value = max(math.ceil(observed * TIME_FACTOR), MIN_TIME_S)
            lines.append(f"{limit_key} = \"{value}s\"  # {TIME_FACTOR} x the {observed} s "
                         f"observed, at least {MIN_TIME_S} s: time varies with the machine's load")
    return lines


