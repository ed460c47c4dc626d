"""``picoproc bench fuzz``: a fuzzer for the mediated interface, with an oracle.

A freestanding guest (guests/fuzz_guest.c) makes random and structure-aware
mediated calls against a live monitor: every call number (and numbers
beside the range), flags with unknown and upper bits, lengths (zero,
negative, past the mapping, over the bounds), pointers into unmapped,
read-only and loader memory, paths built from the names planted in a host
tree (mount points, hidden paths and names, host-made symbolic links
climbing out, into hidden directories, looping, through /proc), ``..``,
empty, long and non-UTF-8 components and embedded NULs, network URIs aimed
at a host listener nobody granted, and opens racing a thread that flips the
path between a granted and a hidden file.

The monitor runs in its own process (``python -m picoproc.bench.security.fuzz
--host``: ``Sandbox.run`` under the library OS, as ``picoproc run`` does), so
its fds and memory can be measured from outside; the guest reports every
call over a ``unix:`` socket the manifest grants and waits for the driver's
go-ahead, and the driver judges it against :class:`fuzz_model.PolicyModel`,
built from the manifest, with the host tree as that call left it:

* **findings** (each one a defect): a call succeeded that the model refuses;
  a returned fd or a stat's identity is a hidden object or one outside
  every mount; an fd open for writing on a read-only object; success with an
  unreadable input or unwritable output pointer, or memory the call must
  not write changed; an impossible call number answered with success; a
  connection reached the host listeners; the read-only, hidden or outside
  host trees changed; the monitor died; its fds or memory grew;
* **mismatches** (reported, not defects): the monitor refused with EACCES or
  EROFS what the model allows (stricter than the manifest requires), or
  succeeded where the model expected the host to fail.
"""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import json
import os
import pathlib
import secrets
import shutil
import socket
import stat as stat_mod
import struct
import subprocess
import sys
import threading
import time

from picoproc import manifest as manifest_mod
from picoproc.abi.table import load_table

from picoproc.errors import PicoprocError
from . import harness
from .fuzz_model import ALLOW, DENY, PolicyModel, Verdict, is_proc_view_path

ABI = load_table()
NR = {m.name: m.nr for m in ABI.mediated}
NAMES = {m.nr: m.name for m in ABI.mediated}
# The mediated calls the guest makes with arguments shaped for them and the
# judge has a model for; the guest draws its "file calls" from these alone
# (the driver passes their numbers), so a call added to the ABI is neither
# fuzzed with another call's arguments nor judged without a model.
MODELLED = ("open", "stat", "readlink", "access", "mkdir", "unlink", "rename", "symlink", "link", "chmod",
            "chown", "utimens", "truncate", "statfs", "note_unsupported", "mknod")
# The mediated calls left out, and why (docs/SECURITY.md repeats this).
NOT_MODELLED = {
    "task_info": "reports the calling thread's own accounting: it names no host object for the model to judge",
    "tty_ioctl": "acts on an fd of the run's own devpts, not on a name: no path policy to judge",
    "xattr": "not modelled yet: a grant depends on the operation, the attribute's namespace and the mount",
    "inotify": "not modelled yet: watches are judged by mount and bounded per run (instances, watches)",
}

# struct record in guests/fuzz_guest.c
RECORD = struct.Struct("<IHBBq6qIIQQIiIIII")
REC_MAGIC = 0x7A7A7570
KIND_PLAIN, KIND_RACE, KIND_BADPTR, KIND_RAWNR = range(4)
OUT_NONE, OUT_GOOD, OUT_NULL, OUT_UNMAPPED, OUT_RODATA, OUT_LOADER, OUT_STRADDLE = range(7)
OUT_NAMES = {OUT_NULL: "NULL", OUT_UNMAPPED: "unmapped", OUT_RODATA: "read-only",
             OUT_LOADER: "loader text", OUT_STRADDLE: "page-straddling"}

O_ACCMODE, O_CREAT, O_TRUNC, O_NOFOLLOW, O_PATH = 0o3, 0o100, 0o1000, 0o400000, 0o10000000
O_DIRECTORY = 0o200000
OPEN_EXEC = 0x40000000
# open(2) flags the ABI accepts (abi_v1.toml) and those Linux flags that
# change nothing about authority (the monitor may accept them too).
OPEN_FLAGS = (O_ACCMODE | O_CREAT | 0o200 | O_TRUNC | 0o2000 | 0o4000 | O_DIRECTORY | O_NOFOLLOW
              | 0o2000000 | O_PATH | OPEN_EXEC)
OPEN_HARMLESS = 0o400 | 0o100000 | 0o10000 | 0o4010000  # O_NOCTTY O_LARGEFILE O_DSYNC O_SYNC
AT_SYMLINK_NOFOLLOW, AT_REMOVEDIR, AT_SYMLINK_FOLLOW = 0x100, 0x200, 0x400
S_IFMT = 0o170000
MKNOD_TYPES = (stat_mod.S_IFIFO, stat_mod.S_IFREG, stat_mod.S_IFSOCK)
W_OK = 2
# note_unsupported with this bit in its first argument notes an emulated
# call (abi_v1.toml) and is answered 0.
NOTE_EMULATED = 1 << 32
MAX_EXAMPLES = 20
# The short run the test suite makes, and the long run of the report.
CI_CALLS = 30_000
CI_RUNS = 3
LONG_CALLS = 1_000_000
# The monitor's heap (bytes malloc has handed out, every arena) may grow
# this much from the first run's end to the last (caches warmed by later
# runs); a leak of a few bytes per call over 10^4 calls is above it.  RSS is
# reported, not judged: it follows the Python objects each run's result
# holds (its audit records), which the allocator keeps for reuse.
HEAP_SLACK_BYTES = 256 * 1024

# The names the guest builds paths from: what FuzzTree plants, plus a few
# the host does not have.
WORDS = ["ro", "rw", "nx", "fz", "tmp", "dev", "null", "zero", "pub.txt", "sub", "in.txt",
         "secret.txt", "hid", "deep.txt", "id_rsa", "x.key", "priv.txt", "tool", "link_rel", "link_abs",
         "link_up", "link_hid", "link_rw", "link_loop", "link_proc", "link_host", "link_secret",
         "hard_secret", "a.txt", "d", "to_hid", "to_ro", "out", "outside", "o.txt", "proc", "self",
         "root", "etc", "shadow"]
RACE_GRANTED = "file:/ro/sub/in.txt"
RACE_HIDDEN = "file:/ro/secret.txt"


class FuzzError(RuntimeError, PicoprocError):
    """The fuzzer cannot run here (one line naming what is missing)."""


def uncovered_calls() -> list[str]:
    """The ABI's mediated calls the fuzzer neither models nor leaves out
    with a reason, and names it claims that the ABI does not have."""
    abi = set(NR)
    claimed = set(MODELLED) | set(NOT_MODELLED)
    return sorted(abi ^ claimed) + sorted(set(MODELLED) & set(NOT_MODELLED))


def call_name(nr: int) -> str:
    """A call number as the reports show it: the ABI's name, or what a
    number outside the mediated calls is."""
    if nr in NAMES:
        return NAMES[nr]
    return f"unassigned {nr}"


def file_call_numbers() -> str:
    """The numbers the guest draws its file calls from (its FILE_CALLS argument)."""
    return ",".join(str(NR[name]) for name in MODELLED)


# ---------------------------------------------------------------------------
# The host tree and the manifest


@dataclasses.dataclass
class FuzzTree:
    """/var/tmp/pp-fuzz-TOKEN/: the host tree the guest is shown.

    ro/       /ro read-only (and /nx: the same tree, no exec); secret.txt and
              hid/ hidden, id_rsa and x.key hidden by name; host-made links
    rw/       /rw writable, no exec: where the guest creates and removes
    bin/      /fz read-only: the guest binary
    outside/  in no mount: o.txt, and a unix socket the harness listens on
    sock/     the control socket (the one unix: grant)
    """

    root: pathlib.Path
    token: str

    def path(self, *parts: str) -> pathlib.Path:
        return self.root.joinpath(*parts)

    @property
    def control(self) -> str:
        return str(self.path("sock", "ctl.sock"))

    @property
    def trap_unix(self) -> str:
        return str(self.path("outside", "trap.sock"))

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def make_tree(guest_binary: str) -> FuzzTree:
    token = "ppfuzz" + secrets.token_hex(8)
    root = harness.RUN_ROOT / f"pp-fuzz-{token}"
    root.mkdir(mode=0o755)
    t = FuzzTree(root, token)
    for d, mode in (("ro", 0o755), ("ro/sub", 0o755), ("ro/hid", 0o755), ("rw", 0o777), ("rw/d", 0o777),
                    ("bin", 0o755), ("outside", 0o755), ("sock", 0o755)):
        t.path(d).mkdir(mode=mode)
        t.path(d).chmod(mode)
    files = {
        "ro/pub.txt": "public\n", "ro/sub/in.txt": "granted\n", "ro/secret.txt": f"SECRET {token}\n",
        "ro/hid/deep.txt": f"SECRET deep {token}\n", "ro/id_rsa": f"SECRET key {token}\n",
        "ro/x.key": f"SECRET key {token}\n", "ro/priv.txt": "owner only\n", "ro/tool": "#!/bin/sh\n",
        "rw/a.txt": "writable\n", "outside/o.txt": f"SECRET outside {token}\n",
    }
    for name, text in files.items():
        t.path(name).write_text(text)
        t.path(name).chmod(0o644)
    t.path("ro/tool").chmod(0o755)
    t.path("rw/a.txt").chmod(0o666)
    t.path("ro/priv.txt").chmod(0o600)
    links = {
        "ro/link_rel": "pub.txt", "ro/link_abs": "/ro/pub.txt", "ro/link_up": "../../outside/o.txt",
        "ro/link_hid": "/ro/hid/deep.txt", "ro/link_secret": "secret.txt", "ro/link_rw": "/rw",
        "ro/link_loop": "link_loop", "ro/link_proc": "/proc/self/root" + str(t.path("outside/o.txt")),
        "ro/link_host": str(t.path("outside/o.txt")), "rw/out": "../../outside",
        "rw/to_hid": "/nx/hid", "rw/to_ro": "../ro",
    }
    for name, target in links.items():
        os.symlink(target, t.path(name))
    os.link(t.path("ro/secret.txt"), t.path("ro/hard_secret"))
    shutil.copy2(guest_binary, t.path("bin", "pp-fuzz"))
    t.path("bin", "pp-fuzz").chmod(0o755)
    return t


def fuzz_manifest(t: FuzzTree, *, plant: str | None = None) -> manifest_mod.Manifest:
    """The manifest the model judges by.  ``plant``: "hidden" returns the
    same manifest without its hidden paths and names, a deliberately wrong
    policy for the monitor (the oracle must then report findings)."""
    hidden = ("/ro/secret.txt", "/ro/hid")
    hidden_names = ("id_rsa", "*.key")
    if plant == "hidden":
        hidden, hidden_names = (), ()
    elif plant is not None:
        raise ValueError(f"unknown planted bug {plant!r}")
    m = manifest_mod.Manifest(
        mounts=(
            manifest_mod.Mount("/ro", str(t.path("ro")), writable=False, exec=True),
            manifest_mod.Mount("/nx", str(t.path("ro")), writable=False, exec=False),
            manifest_mod.Mount("/rw", str(t.path("rw")), writable=True, exec=False),
            manifest_mod.Mount("/fz", str(t.path("bin")), writable=False, exec=True),
        ),
        tmpfs=(manifest_mod.Tmpfs("/tmp", 1 << 20),),
        hidden=hidden,
        hidden_names=hidden_names,
        cwd="/tmp",
        unix_paths=(t.control,),
        limits=manifest_mod.Limits(memory_bytes=256 << 20, pids=16, open_files=256,
                                   output_bytes=1 << 20),
    )
    return manifest_mod.check_manifest(m)


def build_guest() -> str:
    """The fuzz guest, compiled (cached like the other benchmark guests)."""
    return str(harness.build_guests() / "pp-fuzz")


# ---------------------------------------------------------------------------
# Snapshots of what must not change


def _tree_state(top: pathlib.Path) -> dict[str, tuple]:
    out = {}
    for dirpath, dirnames, filenames in os.walk(top):
        for name in [".", *dirnames, *filenames]:
            p = os.path.normpath(os.path.join(dirpath, name))
            try:
                st = os.lstat(p)
            except OSError:
                continue
            content = b""
            if stat_mod.S_ISREG(st.st_mode):
                with open(p, "rb") as f:
                    content = hashlib.sha256(f.read()).digest()
            elif stat_mod.S_ISLNK(st.st_mode):
                content = os.readlink(p).encode()
            out[os.path.relpath(p, top)] = (st.st_mode, st.st_uid, st.st_gid, st.st_size, st.st_mtime_ns,
                                            st.st_nlink, content)
    return out


def _tree_changes(before: dict, after: dict, where: str) -> list[str]:
    out = []
    for name in sorted(set(before) | set(after)):
        if before.get(name) != after.get(name):
            what = "appeared" if name not in before else "vanished" if name not in after else "changed"
            out.append(f"{where}/{name} {what}")
    return out


# ---------------------------------------------------------------------------
# The monitor host (a child process)


def malloc_in_use() -> int | None:
    """Bytes the C allocator has handed out and not taken back, over every
    arena (malloc_info(3); mallinfo2 sees only the main arena, and the
    monitor's loop allocates from its own thread's)."""
    import ctypes
    import re

    libc = ctypes.CDLL(None)
    buf, size = ctypes.c_char_p(), ctypes.c_size_t()
    libc.open_memstream.restype = ctypes.c_void_p
    stream = libc.open_memstream(ctypes.byref(buf), ctypes.byref(size))
    if not stream:
        return None
    try:
        if libc.malloc_info(0, ctypes.c_void_p(stream)) != 0:
            return None
    finally:
        libc.fclose(ctypes.c_void_p(stream))
    try:
        xml = ctypes.string_at(buf, size.value).decode()
    finally:
        libc.free(buf)
    # The whole-process totals follow the last </heap>.
    tail = xml.rsplit("</heap>", 1)[-1]
    current = re.search(r'<system type="current" size="(\d+)"', tail)
    free = sum(int(n) for n in re.findall(r'<total type="(?:fast|rest)" count="\d+" size="(\d+)"', tail))
    mmap = re.search(r'<total type="mmap" count="\d+" size="(\d+)"', tail)
    if current is None:
        return None
    return int(current.group(1)) - free + (int(mmap.group(1)) if mmap else 0)


def host_main(manifest_path: str) -> int:
    """Runs one guest per line read from stdin (a JSON argv) with
    Sandbox.run under ``manifest_path``; answers one JSON line each."""
    import gc

    from picoproc.api import Sandbox

    manifest = manifest_mod.load_manifest(manifest_path)
    print(json.dumps({"ready": os.getpid()}), flush=True)
    for line in sys.stdin:
        req = json.loads(line)
        try:
            res = Sandbox(manifest).run(req["argv"], capture=True, timeout=req["timeout"])
            out = {"exit": res.exit_code, "signal": res.signal, "limit": res.limit,
                   "stderr": (res.stderr or b"")[-400:].decode("utf-8", "replace"),
                   "mediated": res.calls["mediated"]}
        except Exception as exc:  # noqa: BLE001 - reported to the driver as a finding
            out = {"error": f"{type(exc).__name__}: {exc}"}
        res = None
        gc.collect()
        out["heap_in_use"] = malloc_in_use()
        print(json.dumps(out), flush=True)
    return 0


class MonitorHost:
    def __init__(self, manifest_path: str):
        env = dict(os.environ)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "picoproc.bench.security.fuzz", "--host", manifest_path],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        line = self._line(60)
        if not line or "ready" not in line:
            err = self.proc.stderr.read() if self.proc.poll() is not None else ""
            raise FuzzError(f"the monitor host did not start: {(line or err).strip()[-300:]}")

    def _line(self, timeout: float) -> str | None:
        out: list[str] = []
        reader = threading.Thread(target=lambda: out.append(self.proc.stdout.readline()), daemon=True)
        reader.start()
        reader.join(timeout)
        return out[0] if out else None

    def start(self, argv: list[str], timeout: float) -> None:
        self.proc.stdin.write(json.dumps({"argv": argv, "timeout": timeout}) + "\n")
        self.proc.stdin.flush()

    def result(self, timeout: float) -> dict:
        line = self._line(timeout)
        if not line:
            code = self.proc.poll()
            return {"error": f"the monitor host gave no result (exit status {code})"}
        return json.loads(line)

    def usage(self) -> tuple[int, int]:
        """(open fds, RSS in KiB) of the monitor process, from /proc."""
        pid = self.proc.pid
        fds = len(os.listdir(f"/proc/{pid}/fd"))
        rss = 0
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1])
        return fds, rss

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc.stdout.close()
        self.proc.stderr.close()


# ---------------------------------------------------------------------------
# Judging one call


@dataclasses.dataclass
class Report:
    seed: int
    calls: int = 0
    runs: int = 0
    seconds: float = 0.0
    by_call: dict = dataclasses.field(default_factory=dict)  # name -> [calls, ok]
    by_kind: dict = dataclasses.field(default_factory=dict)
    findings: list = dataclasses.field(default_factory=list)
    finding_count: int = 0
    mismatches: dict = dataclasses.field(default_factory=dict)  # class -> count
    mismatch_examples: list = dataclasses.field(default_factory=list)
    usage: list = dataclasses.field(default_factory=list)  # (calls so far, fds, rss KiB)
    runs_detail: list = dataclasses.field(default_factory=list)

    @property
    def calls_per_s(self) -> float:
        return self.calls / self.seconds if self.seconds else 0.0

    def finding(self, text: str) -> None:
        self.finding_count += 1
        if len(self.findings) < MAX_EXAMPLES:
            self.findings.append(text)

    def mismatch(self, cls: str, text: str) -> None:
        self.mismatches[cls] = self.mismatches.get(cls, 0) + 1
        if len(self.mismatch_examples) < MAX_EXAMPLES:
            self.mismatch_examples.append(f"{cls}: {text}")

    def to_json(self) -> dict:
        d = dataclasses.asdict(self)
        d["calls_per_s"] = round(self.calls_per_s, 1)
        return d


def _show(b: bytes) -> str:
    text = b[:120].decode("utf-8", "backslashreplace")
    return repr(text) + ("..." if len(b) > 120 else "")


class Judge:
    """Checks each record against the model and the object sets."""

    def __init__(self, model: PolicyModel, tree: FuzzTree, report: Report):
        self.model = model
        self.report = report
        self.refused = model.refused_objects([str(tree.path("outside")), str(tree.path("sock"))])
        self.read_only = model.read_only_objects()
        from picoproc.monitor import guest_identity

        self.identity = guest_identity()[:2]

    def __call__(self, rec: tuple, p1: bytes, p2: bytes) -> None:
        (_magic, nr, kind, out_kind, result, *rest) = rec
        args = rest[:6]
        p1_len, p2_len, obj_dev, obj_ino, obj_mode, fd_flags, changed, has_obj, out_room, _ = rest[6:]
        name = call_name(nr)
        st = self.report.by_call.setdefault(name, [0, 0])
        st[0] += 1
        if name == "note_unsupported" and args[0] & NOTE_EMULATED and result == 0:
            return  # a traced run's note of an emulated call: an audit record, it grants nothing
        st[1] += result >= 0
        kname = ("plain", "race", "bad-pointer", "raw-number")[kind]
        self.report.by_kind[kname] = self.report.by_kind.get(kname, 0) + 1
        ok = result >= 0
        what = f"{name}({_show(p1)}{', ' + _show(p2) if p2 else ''}, args={[hex(a) for a in args[2:5]]}) = {result}"

        if changed:
            self.report.finding(f"{what}: guest memory it must not write ({OUT_NAMES.get(out_kind)}) changed")
        if has_obj and ok and (obj_dev, obj_ino) in self.refused:
            self.report.finding(f"{what}: handed back a refused object (dev {obj_dev}, ino {obj_ino})")
        if (ok and name == "open" and fd_flags >= 0 and fd_flags & O_ACCMODE in (1, 2)
                and (obj_dev, obj_ino) in self.read_only):
            self.report.finding(f"{what}: an fd open for writing on a read-only object")
        if not ok:
            if kind == KIND_PLAIN and result in (-errno.EACCES, -errno.EROFS):
                self._check_stricter(name, args, p1, p2, what)
            return
        # The call succeeded: was it granted?
        if kind == KIND_RAWNR:
            self.report.finding(f"{what}: call number {nr} answered with success")
            return
        if kind == KIND_BADPTR:
            self.report.finding(f"{what}: succeeded with an unreadable input pointer")
            return
        if out_kind not in (OUT_NONE, OUT_GOOD) and name in ("stat", "readlink", "statfs"):
            # readlink writes only the bytes it returns: they may fit
            # before the end of a page-straddling buffer.
            if not (out_kind == OUT_STRADDLE and name == "readlink" and result <= out_room):
                self.report.finding(f"{what}: succeeded writing into {OUT_NAMES[out_kind]} memory")
                return
        if kind == KIND_RACE:
            return  # judged by the identity of what it got (above)
        if args[1] != p1_len or (p2_len and name in ("rename", "link", "symlink") and args[3] != p2_len):
            self.report.finding(f"{what}: succeeded though the length passed ({args[1]}) is not the "
                                f"length of the bytes there ({p1_len})")
            return
        for verdict, label in self._verdicts(name, args, p1, p2):
            if verdict.decision == DENY and self._acted_on_link(name, args, p1):
                self.report.mismatch("a path ending in '/' acted on the link itself (Linux follows it)",
                                     f"{what}: {verdict.why}")
                return
            if verdict.decision == DENY:
                self.report.finding(f"{what}: granted, but the manifest refuses {label}: {verdict.why}")
                return
            if verdict.decision != ALLOW:
                self.report.mismatch("succeeded where the model expected an error",
                                     f"{what}: {label}: {verdict.why}")
                return
        if name == "readlink" and out_kind == OUT_GOOD:
            self._check_link_text(p1, p2, what)

    def _verdicts(self, name, args, p1, p2):
        m = self.model
        if name == "open":
            flags = args[2]
            if flags < 0 or flags >> 32:
                return [(_invalid("flags above 32 bits"), "flags")]
            if flags & ~(OPEN_FLAGS | OPEN_HARMLESS):
                return [(_invalid("unknown open flags"), "flags")]
            scheme, sep, rest = p1.partition(b":")
            if not sep:
                return [(_invalid("no scheme"), "the URI")]
            if scheme in (b"tcp", b"udp", b"tcp.srv", b"unix"):
                return [(m.net_verdict(p1), "the network URI")]
            if scheme not in (b"file", b"dir"):
                return [(_invalid("unknown scheme"), "the URI")]
            # Opening for writing, creating or truncating all need a
            # writable mount (a device's single-file mount is one: O_CREAT
            # and O_TRUNC on an existing device create and cut nothing).
            writes = (flags & O_ACCMODE) != 0 or flags & (O_CREAT | O_TRUNC)
            follow = not flags & O_NOFOLLOW
            if is_proc_view_path(rest):
                return [(m.proc_verdict(rest, write=bool(writes), exec=bool(flags & OPEN_EXEC)), "the path")]
            return [(m.path_verdict(rest, follow=follow, data_write=bool(writes), exec=bool(flags & OPEN_EXEC)),
                     "the path")]
        nofollow = bool(args[2 if name == "stat" else 3] & AT_SYMLINK_NOFOLLOW) if name in (
            "stat", "access", "chmod", "utimens") else False
        if name in ("stat", "readlink", "access") and is_proc_view_path(p1):
            return [(m.proc_verdict(p1, write=name == "access" and bool(args[2] & W_OK)), "the path")]
        if name == "stat":
            return [(m.path_verdict(p1, follow=not nofollow), "the path")]
        if name in ("readlink",):
            return [(m.path_verdict(p1, follow=False), "the path")]
        if name == "statfs":
            return [(m.path_verdict(p1, follow=True), "the path")]
        if name == "access":  # X_OK on a noexec mount fails, as on Linux
            return [(m.path_verdict(p1, follow=not nofollow, data_write=bool(args[2] & W_OK),
                                    exec=bool(args[2] & 1)), "the path")]
        if name == "mknod":  # only what an unprivileged user makes: never a device
            if args[2] & ~(S_IFMT | 0o7777):
                return [(_invalid("unknown mode bits"), "the mode")]
            if args[2] & S_IFMT in (stat_mod.S_IFCHR, stat_mod.S_IFBLK):
                return [(Verdict(DENY, "a device is never made"), "the mode")]
            if args[2] & S_IFMT not in MKNOD_TYPES:
                return [(_invalid("not a FIFO, regular file or socket"), "the mode")]
            return [(m.path_verdict(p1, follow=False, write=True, name_op=True), "the path")]
        if name in ("mkdir", "unlink"):
            return [(m.path_verdict(p1, follow=False, write=True, name_op=True), "the path")]
        if name in ("chmod", "utimens"):
            return [(m.path_verdict(p1, follow=not nofollow, write=True), "the path")]
        if name == "chown":
            return [(m.path_verdict(p1, follow=not args[4] & AT_SYMLINK_NOFOLLOW, write=True), "the path")]
        if name == "truncate":
            return [(m.path_verdict(p1, follow=True, write=True), "the path")]
        if name == "rename":
            return [(m.path_verdict(p1, follow=False, write=True, name_op=True), "the old name"),
                    (m.path_verdict(p2, follow=False, write=True, name_op=True), "the new name")]
        if name == "link":
            return [(m.path_verdict(p1, follow=bool(args[4] & AT_SYMLINK_FOLLOW)), "the old name"),
                    (m.path_verdict(p2, follow=False, write=True, name_op=True), "the new name")]
        if name == "symlink":  # (target, path): the target is only text
            return [(m.path_verdict(p2, follow=False, write=True, name_op=True), "the new link")]
        return [(_invalid("not a call that can succeed"), name)]

    def _acted_on_link(self, name, args, path: bytes) -> bool:
        """A call that does not follow a final link, on a path ending in
        '/': is what it denied only the link's target, while the link
        itself is granted?"""
        if not path.endswith((b"/", b"/.")):
            return False
        nofollow = {"stat": args[2] & AT_SYMLINK_NOFOLLOW, "access": args[3] & AT_SYMLINK_NOFOLLOW,
                    "chmod": args[3] & AT_SYMLINK_NOFOLLOW, "utimens": args[3] & AT_SYMLINK_NOFOLLOW,
                    "chown": args[4] & AT_SYMLINK_NOFOLLOW, "readlink": 1}.get(name, 0)
        if not nofollow:
            return False
        write = name in ("chmod", "utimens", "chown")
        return self.model.path_verdict(path, follow=False, write=write, name_op=True).decision == ALLOW

    def _check_stricter(self, name, args, p1, p2, what) -> None:
        """A refusal of what the model allows, where the host's permission
        bits would not refuse it either: the monitor is stricter than the
        manifest (reported, not a defect)."""
        if name not in ("open", "stat", "access", "readlink", "statfs", "mkdir", "mknod", "unlink", "chmod",
                        "utimens", "truncate", "symlink"):
            return
        if name == "open" and not p1.startswith((b"file:", b"dir:")):
            return
        try:
            verdicts = self._verdicts(name, args, p1, p2)
        except Exception:  # noqa: BLE001 - a refused call is never a finding
            return
        if not all(v.decision == ALLOW for v, _ in verdicts):
            return
        path = p2 if name == "symlink" else p1.partition(b":")[2] if name == "open" else p1
        name_op = name in ("mkdir", "mknod", "unlink", "symlink")
        write = name in ("chmod", "utimens", "truncate") or (
            name == "open" and (args[2] & O_ACCMODE or args[2] & (O_CREAT | O_TRUNC))) or (
            name == "access" and args[2] & W_OK)
        follow = not (name == "readlink" or (name == "open" and args[2] & O_NOFOLLOW))
        exec = (name == "open" and args[2] & OPEN_EXEC) or (name == "access" and args[2] & 1)
        if exec and name == "open" and p1.startswith(b"file:") and m_is_dir(self.model, path):
            return  # a directory is never an image to execute
        if self.model.host_permits(path, follow=follow, write=bool(write), name_op=name_op,
                                   identity=self.identity, exec=bool(exec)):
            self.report.mismatch("refused (EACCES/EROFS) what the manifest and the host allow", what)

    def _check_link_text(self, path: bytes, got: bytes, what: str) -> None:
        canon, _, exists = self.model.resolve(path, False)
        host = self.model._host_of(canon) if canon else None
        if not host or not exists:
            return
        try:
            text = os.readlink(os.fsencode(host))
        except OSError:
            return
        if not text.startswith(got):
            self.report.finding(f"{what}: returned {_show(got)}, the link at {canon} says {_show(text)}")


def m_is_dir(model: PolicyModel, path: bytes) -> bool:
    canon, _, exists = model.resolve(path, True)
    return bool(canon and exists and model._is_directory(canon))


def _invalid(why: str):
    from .fuzz_model import INVALID, Verdict

    return Verdict(INVALID, why)


# ---------------------------------------------------------------------------
# Host listeners nobody granted


class Traps:
    """A TCP listener on 127.0.0.1 and a unix listener outside the grants;
    any connection that reaches either is a finding."""

    def __init__(self, unix_path: str):
        self.tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.tcp.bind(("127.0.0.1", 0))
        self.tcp.listen(64)
        self.tcp.setblocking(False)
        self.port = self.tcp.getsockname()[1]
        self.unix = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.unix.bind(unix_path)
        os.chmod(unix_path, 0o777)
        self.unix.listen(64)
        self.unix.setblocking(False)
        self.hits: list[str] = []

    def poll(self) -> None:
        for s, label in ((self.tcp, f"127.0.0.1:{self.port}"), (self.unix, "the unix trap")):
            while True:
                try:
                    conn, _ = s.accept()
                except BlockingIOError:
                    break
                conn.close()
                self.hits.append(label)

    def close(self) -> None:
        self.tcp.close()
        self.unix.close()


# ---------------------------------------------------------------------------
# Driving


def _recv_exact(conn: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = conn.recv(n - len(buf))
        if not chunk:
            raise EOFError
        buf += chunk
    return bytes(buf)


def default_runs(calls: int) -> int:
    """Guest runs for ``calls`` calls: one per 50 000, at least 2 (the
    leak checks compare runs), at most 20."""
    return max(2, min(20, calls // 50_000 + 1))


def run_fuzz(calls: int, *, seed: int | None = None, runs: int | None = None, plant: str | None = None,
             call_timeout: float = 30.0, log=None) -> Report:
    """Makes ``calls`` mediated calls in ``runs`` guest runs (one monitor
    host for all) and returns the report."""
    if calls < 1:
        raise ValueError("calls must be at least 1")
    if uncovered_calls():
        raise FuzzError("the fuzzer neither models nor leaves out (with a reason) these mediated calls: "
                        + ", ".join(uncovered_calls()))
    seed = secrets.randbits(31) if seed is None else seed
    runs = runs or default_runs(calls)
    report = Report(seed=seed)
    tree = make_tree(build_guest())
    traps = None
    host = None
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        listener.bind(tree.control)
        os.chmod(tree.control, 0o777)
        listener.listen(4)
        manifest = fuzz_manifest(tree)
        monitor_manifest = fuzz_manifest(tree, plant=plant)
        mpath = tree.path("manifest.toml")
        mpath.write_text(manifest_mod.manifest_to_toml(monitor_manifest))
        model = PolicyModel(manifest)
        judge = Judge(model, tree, report)
        traps = Traps(tree.trap_unix)
        watched = {"ro": _tree_state(tree.path("ro")), "outside": _tree_state(tree.path("outside"))}
        host = MonitorHost(str(mpath))
        per_run = [calls // runs + (1 if i < calls % runs else 0) for i in range(runs)]
        baseline = None
        started = time.monotonic()
        for i, n in enumerate(per_run):
            argv = ["/fz/pp-fuzz", str(seed + i), str(n), tree.control, str(traps.port), tree.trap_unix,
                    RACE_GRANTED, RACE_HIDDEN, file_call_numbers(), *WORDS]
            host.start(argv, timeout=call_timeout + n * 0.01)
            done = _serve_run(listener, judge, traps, report, n, host, call_timeout)
            res = host.result(call_timeout + 30)
            report.runs += 1
            report.runs_detail.append({"calls": done, **res})
            if "error" in res:
                report.finding(f"run {i}: the monitor failed: {res['error']}")
                break
            if res.get("signal") or res.get("exit") != 0 or done != n:
                report.finding(f"run {i}: the guest ended with exit {res.get('exit')} signal "
                               f"{res.get('signal')} after {done} of {n} calls: {res.get('stderr', '')[-200:]}")
            fds, rss = host.usage()
            report.usage.append((report.calls, fds, rss))
            report.runs_detail[-1].update(fds=fds, rss_kib=rss)
            if baseline is None:
                baseline = (fds, res.get("heap_in_use"))
            if log:
                log(f"fuzz: run {i + 1}/{runs} done: {report.calls} calls, monitor fds {fds}, rss {rss} KiB")
        report.seconds = time.monotonic() - started
        if host.proc.poll() is not None:
            report.finding(f"the monitor process died (status {host.proc.returncode})")
        elif baseline is not None:
            fds = report.usage[-1][1]
            heap = report.runs_detail[-1].get("heap_in_use")
            if fds != baseline[0]:
                report.finding(f"the monitor's open fds went from {baseline[0]} to {fds}")
            if heap is not None and baseline[1] is not None and heap - baseline[1] > HEAP_SLACK_BYTES:
                report.finding(f"the monitor's heap grew from {baseline[1]} to {heap} bytes "
                               f"over {report.calls} calls")
        traps.poll()
        for hit in traps.hits:
            report.finding(f"a connection reached {hit}, which nobody granted")
        for where, before in watched.items():
            for change in _tree_changes(before, _tree_state(tree.path(where)), where):
                report.finding(f"host tree changed: {change}")
    finally:
        listener.close()
        if host is not None:
            host.close()
        if traps is not None:
            traps.close()
        tree.remove()
    return report


def _serve_run(listener, judge: Judge, traps: Traps, report: Report, n: int, host: MonitorHost,
               call_timeout: float) -> int:
    listener.settimeout(call_timeout)
    try:
        conn, _ = listener.accept()
    except TimeoutError:
        return 0
    done = 0
    conn.settimeout(call_timeout)
    try:
        with conn:
            while done < n:
                try:
                    head = _recv_exact(conn, RECORD.size)
                except (EOFError, TimeoutError, ConnectionError):
                    break
                rec = RECORD.unpack(head)
                if rec[0] != REC_MAGIC:
                    report.finding("the guest's record stream lost its framing")
                    break
                p1_len, p2_len = rec[11], rec[12]
                body = _recv_exact(conn, p1_len + p2_len)
                judge(rec, body[:p1_len], body[p1_len:])
                done += 1
                report.calls += 1
                if done % 4096 == 0:
                    traps.poll()
                    fds, rss = host.usage()
                    report.usage.append((report.calls, fds, rss))
                conn.sendall(b"g")
    except (EOFError, ConnectionError, TimeoutError):
        pass
    return done


def markdown(r: Report) -> str:
    lines = [
        f"{r.calls} mediated calls in {r.runs} guest runs, {r.seconds:.1f} s, "
        f"{r.calls_per_s:.0f} calls/s (each judged before the next; seed {r.seed}).",
        "",
        f"Findings: **{r.finding_count}**." + ("" if not r.findings else ""),
    ]
    for f in r.findings:
        lines.append(f"- {f}")
    lines += ["", "| call | made | succeeded |", "|---|---:|---:|"]
    for name, (n, ok) in sorted(calls_by_name(r).items()):
        lines.append(f"| {name} | {n} | {ok} |")
    lines += ["", "Call kinds: " + ", ".join(f"{k} {v}" for k, v in sorted(r.by_kind.items())) + "."]
    ends = [d for d in r.runs_detail if "fds" in d]
    if ends:
        fmax = max(u[1] for u in r.usage)
        lines.append(f"Monitor process after each run: open fds {', '.join(str(d['fds']) for d in ends[:8])}"
                     f"{' ...' if len(ends) > 8 else ''} (at most {fmax} while a guest ran, "
                     f"{len(r.usage)} samples); RSS {ends[0]['rss_kib']} -> {ends[-1]['rss_kib']} KiB.")
    heaps = [d.get("heap_in_use") for d in r.runs_detail if d.get("heap_in_use") is not None]
    if len(heaps) >= 2:
        lines.append(f"Monitor heap in use after each run (malloc_info): {heaps[0]} -> {heaps[-1]} bytes "
                     f"({heaps[-1] - heaps[0]:+d} over {r.runs - 1} runs after the first).")
    if r.mismatches:
        lines.append("Mismatches (not defects): " + "; ".join(f"{k}: {v}" for k, v in r.mismatches.items())
                     + ".")
    return "\n".join(lines)


def stored(r: Report) -> dict:
    """What docs/SECURITY.md shows of a run, as JSON (``from_stored`` gives
    back what ``markdown`` takes): the report without its mismatch examples."""
    d = dataclasses.asdict(r)
    del d["mismatch_examples"]
    return d


def from_stored(d: dict) -> Report:
    return Report(**{f.name: d[f.name] for f in dataclasses.fields(Report) if f.name != "mismatch_examples"})


def calls_by_name(r: Report) -> dict:
    """``r.by_call`` under the names the reports show (reports stored by an
    older fuzzer named calls "nrNNNN")."""
    return {call_name(int(k[2:])) if k.startswith("nr") and k[2:].isdigit() else k: v
            for k, v in r.by_call.items()}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) == 2 and argv[0] == "--host":
        return host_main(argv[1])
    print("usage: picoproc bench fuzz [--calls N] [--seed S] [--json FILE]", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
