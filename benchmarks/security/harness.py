"""What the security benchmarks share: the guest binaries, the run directory
with its planted secret, the manifest every backend gets, and the observer
that watches the guest's host processes from outside.

Nothing here trusts the guest.  The guest's output is read only to find the
planted secret in it (a guest cannot fake having read a random token it never
saw) and to tell "the attempt was refused" from "the attempt ran"; every
claim about the host is made from what the harness itself observes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import pathlib
import secrets
import shutil
import subprocess
import threading
import time

import picoproc.abi
from picoproc import manifest as manifest_mod
from picoproc.errors import PicoprocError

GUEST_SRC = pathlib.Path(__file__).resolve().parent / "guests"
# picoproc_abi.h, for the guests that make mediated calls themselves.
ABI_DIR = pathlib.Path(picoproc.abi.__file__).resolve().parent
# Not under /tmp (a guest's scratch there is a private tmpfs in the namespace
# backends but the host's /tmp under native, ptrace and sandlock) and not
# under /root (mode 700 and hidden by the default manifest).
CACHE_ROOT = pathlib.Path(os.environ.get("PICOPROC_BENCH_CACHE", "/var/tmp/picoproc-bench-cache"))
RUN_ROOT = pathlib.Path(os.environ.get("PICOPROC_BENCH_RUNS", "/var/tmp"))
GUEST_PREFIX = "pp-"  # every guest binary's name starts with it (its /proc comm too)
# picoproc runs every program through its library OS's loader image, so the
# host process of a pico guest is named after the loader (its command line
# still carries the guest's argv, token included).
LOADER_COMM = "picoproc-loader"

# name -> (source, gcc flags).  Static so that the same file runs in every
# backend's view, including gVisor's and a bare tmpfs root.
GUESTS = {
    "pp-surface": (
        "surface_probe.c",
        ["-static", "-nostdlib", "-fno-stack-protector", "-fno-builtin", "-O1"],
    ),
    "pp-attack": ("attack.c", ["-static", "-O2", "-pthread"]),
    "pp-victim": ("victim.c", ["-static", "-O2"]),
    "pp-cve": ("cve_probe.c", ["-static", "-O2", "-pthread"]),
    "pp-fuzz": (
        "fuzz_guest.c",
        ["-static", "-nostdlib", "-fno-stack-protector", "-fno-builtin", "-O1", "-I", "{abi}"],
    ),
}


class BenchSetupError(RuntimeError, PicoprocError):
    """The benchmark cannot run here (one line naming what is missing)."""


def build_guests() -> pathlib.Path:
    """Compiles benchmarks/security/guests/*.c with gcc into a cache directory
    keyed by the sources' hash, and returns it."""
    cc = os.environ.get("CC", "gcc")
    if shutil.which(cc) is None:
        raise BenchSetupError(f"no C compiler ({cc}) to build the benchmark guests")
    digest = hashlib.sha256()
    for name, (src, flags) in sorted(GUESTS.items()):
        digest.update(name.encode() + b"\0" + " ".join(flags).encode() + b"\0")
        digest.update((GUEST_SRC / src).read_bytes())
    digest.update((ABI_DIR / "picoproc_abi.h").read_bytes())
    out = CACHE_ROOT / digest.hexdigest()[:16]
    if all((out / name).exists() for name in GUESTS):
        return out
    CACHE_ROOT.mkdir(mode=0o755, parents=True, exist_ok=True)
    tmp = pathlib.Path(f"{out}.tmp{os.getpid()}")
    tmp.mkdir(mode=0o755, parents=True, exist_ok=True)
    try:
        for name, (src, flags) in GUESTS.items():
            cmd = [
                cc,
                *(f.format(abi=ABI_DIR) for f in flags),
                "-Wall",
                "-Wextra",
                "-Werror",
                "-o",
                str(tmp / name),
                str(GUEST_SRC / src),
            ]
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
            if proc.returncode != 0:
                errors = [
                    ln for ln in proc.stderr.splitlines() if "error" in ln
                ] or proc.stderr.splitlines()[-1:]
                raise BenchSetupError(
                    f"compiling {src} failed: {errors[0] if errors else proc.returncode}"
                )
        try:
            tmp.rename(out)
        except OSError:  # another process built the same sources first
            shutil.rmtree(tmp, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out


@dataclasses.dataclass
class RunDir:
    """/var/tmp/pp-sec-TOKEN/: what one benchmark run plants on the host.

    bin/      granted read-only: the guests, allowed.txt, a symlink to the secret
    scratch/  the guest's writable scratch (a private tmpfs where the backend has one)
    secret/   NOT granted: secret.txt holds the token
    outside/  NOT granted: where a guest would drop a canary
    """

    root: pathlib.Path
    token: str

    @property
    def bin(self) -> pathlib.Path:
        return self.root / "bin"

    @property
    def scratch(self) -> pathlib.Path:
        return self.root / "scratch"

    @property
    def secret(self) -> pathlib.Path:
        return self.root / "secret" / "secret.txt"

    @property
    def outside(self) -> pathlib.Path:
        return self.root / "outside"

    @property
    def allowed(self) -> pathlib.Path:
        return self.bin / "allowed.txt"

    def guest(self, name: str) -> str:
        return str(self.bin / name)

    def remove(self) -> None:
        unmount_token_mounts(self.token)
        shutil.rmtree(self.root, ignore_errors=True)


def make_run_dir() -> RunDir:
    built = build_guests()
    token = "ppsec" + secrets.token_hex(12)
    root = RUN_ROOT / f"pp-sec-{token}"
    root.mkdir(mode=0o755)
    rd = RunDir(root, token)
    for d in (rd.bin, rd.scratch, rd.secret.parent, rd.outside):
        d.mkdir(mode=0o755, exist_ok=True)
    # Everyone may traverse and write the scratch; the guest's identity varies by backend.
    rd.scratch.chmod(0o1777)
    rd.outside.chmod(0o777)
    for name in GUESTS:
        shutil.copy2(built / name, rd.bin / name)
    rd.secret.write_text(f"SECRET {token}\n")
    rd.secret.chmod(0o644)
    rd.allowed.write_text("allowed file: nothing secret here\n")
    (rd.bin / "link-to-secret").symlink_to(rd.secret)
    return rd


def bench_manifest(
    rd: RunDir,
    *,
    pids=64,
    memory="512M",
    open_files=256,
    scratch_size="16M",
    cpu_time=None,
    wall_time=60.0,
):
    """The default manifest (system directories read-only, no secrets, no
    network) plus the run's bin/ read-only and its scratch as the private,
    size-limited, writable working directory.  Guest paths equal host paths
    so that path-checking backends (ptrace, sandlock) can express it."""
    base = manifest_mod.default_manifest()
    limits = dataclasses.replace(
        base.limits,
        pids=pids,
        memory_bytes=manifest_mod.parse_size(memory),
        open_files=open_files,
        cpu_time_s=cpu_time,
        wall_time_s=wall_time,
        output_bytes=16 << 20,
    )
    m = dataclasses.replace(
        base,
        mounts=tuple(base.mounts)
        + (manifest_mod.Mount(str(rd.bin), str(rd.bin), writable=False, exec=True),),
        tmpfs=(manifest_mod.Tmpfs(str(rd.scratch), manifest_mod.parse_size(scratch_size)),),
        cwd=str(rd.scratch),
        env=tuple(kv for kv in base.env if kv[0] not in ("HOME", "TMPDIR"))
        + (("HOME", str(rd.scratch)), ("TMPDIR", str(rd.scratch))),
        limits=limits,
    )
    manifest_mod.check_manifest(m)
    return m


def unmount_token_mounts(token: str) -> None:
    """Detaches any host mount whose source or target names the token (a
    guest under ``native`` mounts in the host's namespace)."""
    try:
        lines = pathlib.Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    for line in reversed(lines):
        if token in line:
            target = line.split()[4]
            libc.umount2(target.encode(), 2)  # MNT_DETACH


# ---------------------------------------------------------------------------
# Watching the guest from outside.


def _read(path: str) -> str | None:
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8", "replace")
    except OSError:
        return None


@dataclasses.dataclass
class ProcSeen:
    pid: int
    comm: str
    fd_targets: set[str] = dataclasses.field(default_factory=set)
    max_fds: int = 0
    max_target_count: int = 0  # most fds at once pointing at Observer.count_target
    max_rss_kib: int = 0
    user_ns: set[str] = dataclasses.field(default_factory=set)
    token_mounts: set[str] = dataclasses.field(default_factory=set)


class Observer:
    """Samples, from a background thread, every host process whose command
    line holds the run's token and whose name starts with "pp-" (the
    guests) or is picoproc's loader (a pico guest), recording what only the host kernel knows about them: their fds'
    targets (anon_inode:[io_uring], bpf-map ...), fd count, RSS, user
    namespace, mounts naming the token; and the host's /proc/keys.

    ``on_new(pid, comm)`` is called (in the sampler thread) the first time a
    process is seen.  This is sampling, not synchronisation: guests that
    create an object hold it for a stated time so that samples see it."""

    def __init__(
        self,
        token: str,
        interval: float = 0.004,
        on_new=None,
        want_mounts=False,
        want_keys=False,
        count_target: str | None = None,
    ):
        self.token = token
        self.interval = interval
        self.on_new = on_new
        self.want_mounts = want_mounts
        self.want_keys = want_keys
        self.count_target = count_target
        self.seen: dict[int, ProcSeen] = {}
        self.max_live = 0
        self.key_lines: set[str] = set()
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._errors: list[str] = []

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    def stop(self):
        self._stop.set()
        self._thread.join(timeout=10)

    def guest_pids_now(self) -> list[int]:
        out = []
        needle = self.token.encode()
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                with open(f"/proc/{entry.name}/cmdline", "rb") as f:
                    cmdline = f.read()
            except OSError:
                continue
            if needle in cmdline:
                comm = (_read(f"/proc/{entry.name}/comm") or "").strip()
                if comm.startswith(GUEST_PREFIX) or comm == LOADER_COMM:
                    out.append(int(entry.name))
        return out

    def _sample_one(self, pid: int) -> None:
        rec = self.seen.get(pid)
        if rec is None:
            comm = (_read(f"/proc/{pid}/comm") or "").strip()
            rec = self.seen[pid] = ProcSeen(pid, comm)
            if self.on_new is not None:
                try:
                    self.on_new(pid, comm)
                except Exception as exc:  # noqa: BLE001 - recorded, never fatal to the sampler
                    self._errors.append(f"on_new({pid}): {exc}")
        try:
            names = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            return
        rec.max_fds = max(rec.max_fds, len(names))
        if self.count_target is not None:
            hits = 0
            for n in names:
                try:
                    hits += os.readlink(f"/proc/{pid}/fd/{n}") == self.count_target
                except OSError:
                    pass
            rec.max_target_count = max(rec.max_target_count, hits)
        if len(names) < 64:
            for n in names:
                try:
                    rec.fd_targets.add(os.readlink(f"/proc/{pid}/fd/{n}"))
                except OSError:
                    pass
        status = _read(f"/proc/{pid}/status") or ""
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                rec.max_rss_kib = max(rec.max_rss_kib, int(line.split()[1]))
        try:
            rec.user_ns.add(os.readlink(f"/proc/{pid}/ns/user"))
        except OSError:
            pass
        if self.want_mounts:
            # Only mounts whose SOURCE is the guest's "pp-TOKEN": the run's own
            # bind mounts (bin/, scratch/) also carry the token in their paths.
            source = f" pp-{self.token} "
            for line in (_read(f"/proc/{pid}/mountinfo") or "").splitlines():
                if source in line.partition(" - ")[2]:
                    rec.token_mounts.add(line)

    def _loop(self):
        while not self._stop.is_set():
            pids = self.guest_pids_now()
            self.max_live = max(self.max_live, len(pids))
            for pid in pids:
                self._sample_one(pid)
            if self.want_keys:
                for line in (_read("/proc/keys") or "").splitlines():
                    if self.token in line:
                        self.key_lines.add(line)
            self.samples += 1
            self._stop.wait(self.interval)

    @property
    def errors(self) -> list[str]:
        return list(self._errors)

    def all_fd_targets(self) -> set[str]:
        out: set[str] = set()
        for rec in self.seen.values():
            out |= rec.fd_targets
        return out


def leftover_guests(token: str) -> list[int]:
    """Host processes of the run still alive after it ended (they must not be)."""
    return Observer(token).guest_pids_now()


def kill_leftovers(token: str) -> list[int]:
    pids = leftover_guests(token)
    for pid in pids:
        try:
            os.kill(pid, 9)
        except OSError:
            pass
    return pids


def now() -> float:
    return time.monotonic()
