"""``picoproc bench security``: an escape and abuse corpus, per backend.

Each case is a hostile guest (guests/attack.c, one attack per run) plus a
ground-truth check the harness makes from OUTSIDE the sandbox.  Outcomes:

* ``escaped``   the ground truth shows the host was affected: the planted
                secret's random token appears in what the guest printed, a
                canary appeared outside scratch, a host process was killed or
                its memory changed, the host listener saw a connection, the
                host's terminal received input, a host-kernel object of the
                attacked kind existed in a guest process, or a limit did not
                hold;
* ``blocked``   nothing of that, and every attempt was refused (or the guest
                was killed by the filter);
* ``contained`` nothing of that, but some attempt ran (e.g. against a private
                copy, an emulation, inside the limits);
* ``n/a``       the case was not run or could not be judged, with the reason.

The guest's own lines only separate ``blocked`` from ``contained``; they
never make a case pass.  Every case's method is in CASES (and in
docs/SECURITY.md).
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import fcntl
import os
import pathlib
import select
import signal
import socket
import subprocess
import termios
import threading

from . import harness

BLOCKED, CONTAINED, ESCAPED, NA = "blocked", "contained", "escaped", "n/a"
OUTCOMES = (BLOCKED, CONTAINED, ESCAPED, NA)
EVIDENCE_SHOWN = 600  # characters of a case's evidence that evidence_markdown prints


@dataclasses.dataclass
class CaseResult:
    case: str
    backend: str
    outcome: str
    evidence: list[str]
    guest_output: str = ""

    def to_json(self):
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class Params:
    """Sizes of the bounded attacks.  ``quick`` is for CI; the full run is for the report."""

    race_tries: int = 20000
    hold_ms: int = 1000
    fork_max: int = 1000
    pids: int = 32
    mem_limit: str = "256M"
    mem_max_mb: int = 1024
    fd_limit: int = 128
    fd_max: int = 4096
    scratch: str = "16M"
    fill_max_mb: int = 64
    cpu_limit: float = 1.0
    cpu_spin_s: int = 10

    @classmethod
    def quick(cls) -> Params:
        return cls(
            race_tries=3000,
            hold_ms=400,
            fork_max=200,
            pids=16,
            mem_limit="128M",
            mem_max_mb=384,
            fd_limit=64,
            fd_max=1024,
            scratch="8M",
            fill_max_mb=24,
            cpu_limit=1.0,
            cpu_spin_s=6,
        )


@dataclasses.dataclass
class Ctx:
    rd: harness.RunDir
    backend: str
    params: Params

    @property
    def token(self) -> str:
        return self.rd.token


@dataclasses.dataclass
class Run:
    result: object  # BackendResult
    observer: harness.Observer
    stdout: str
    stderr: str

    @property
    def started(self) -> bool:
        return self.stdout.startswith("start ")

    @property
    def text(self) -> str:
        return self.stdout + self.stderr

    def attempts(self) -> list[str]:
        return [ln for ln in self.stdout.splitlines() if ln.startswith("attempt ")]

    def any_ok(self) -> bool:
        return any(": ok" in ln for ln in self.attempts())

    def killed_by(self) -> int | None:
        return self.result.signal

    def summary(self) -> str:
        r = self.result
        end = f"signal {r.signal}" if r.signal is not None else f"exit {r.exit_code}"
        return end + (f", limit {r.limit}" if r.limit else "")


def run_guest(ctx: Ctx, case_args: list[str], *, manifest=None, timeout=60.0, **observer_kw) -> Run:
    from picoproc.backends import get_backend

    m = manifest or harness.bench_manifest(ctx.rd)
    argv = [ctx.rd.guest("pp-attack"), ctx.token, *case_args]
    with harness.Observer(ctx.token, **observer_kw) as obs:
        result = get_backend(ctx.backend).run(m, argv, timeout=timeout)
    return Run(
        result,
        obs,
        (result.stdout or b"").decode("utf-8", "replace"),
        (result.stderr or b"").decode("utf-8", "replace"),
    )


def not_started(run: Run) -> CaseResult | None:
    if run.started:
        return None
    if run.result.signal == signal.SIGSYS:
        return None  # killed by a seccomp filter before printing: judged by the caller as blocked
    return CaseResult(
        "", "", NA, [f"the guest did not start ({run.summary()}): {run.stderr.strip()[-300:]}"]
    )


def attempt_results(run: Run, key: tuple[str, ...] | None) -> list[tuple[str, bool]]:
    """(name, succeeded) of the guest's "attempt NAME: ok|err" lines whose
    name starts with one of ``key`` (every line when key is None)."""
    out = []
    for ln in run.attempts():
        name, _, rest = ln[len("attempt ") :].partition(": ")
        if rest.startswith(("ok", "err")) and (key is None or name.startswith(key)):
            out.append((name, rest.startswith("ok")))
    return out


def judge(
    ctx: Ctx, run: Run, escape_evidence: list[str], key: tuple[str, ...] | None = None
) -> tuple[str, list[str]]:
    """escaped on outside evidence; else blocked when every attempt named by
    ``key`` (the attack itself, not its preparation) was refused or the
    filter killed the guest; else contained."""
    ev = list(escape_evidence)
    if escape_evidence:
        return ESCAPED, ev
    if run.result.signal == signal.SIGSYS:
        return BLOCKED, ["the guest was killed by SIGSYS (seccomp) before the attempt completed"]
    attempts = run.attempts()
    ev.append(
        "harness saw no effect on the host; guest: "
        + ("; ".join(a[len("attempt ") :] for a in attempts[:8]) or "no attempt lines")
    )
    results = attempt_results(run, key)
    everything = attempt_results(run, None)
    if not results and everything and not any(ok for _, ok in everything):
        return BLOCKED, ev  # a step before the attack (e.g. socket()) was already refused
    if not results:
        if run.result.signal is not None:
            # It died inside the attempt (e.g. a crash in the sandbox's own
            # emulation): the attempt ran and the host was not affected.
            ev.append(
                f"the guest was killed by {signal.Signals(run.result.signal).name} during the attempt"
            )
            return CONTAINED, ev
        return NA, ev + [f"the guest reported no attempt ({run.summary()})"]
    if not any(ok for _, ok in results):
        return BLOCKED, ev
    return CONTAINED, ev


def token_seen(ctx: Ctx, run: Run) -> list[str]:
    if ctx.token in run.stdout or ctx.token in run.stderr:
        line = next(
            (ln for ln in run.text.splitlines() if ctx.token in ln and not ln.startswith("start")),
            "",
        )
        if f"SECRET {ctx.token}" in run.text:
            return [f"the planted secret's token appeared in the guest's output: {line[:160]!r}"]
    return []


def canaries(ctx: Ctx) -> list[str]:
    found = [p.name for p in ctx.rd.outside.iterdir() if p.name.startswith("canary")]
    return [f"canary created outside scratch on the host: {n}" for n in found]


# ---------------------------------------------------------------------------
# File-system cases.


def _secret_case(args_fn, key, extra=None):
    def run_case(ctx: Ctx) -> CaseResult:
        run = run_guest(ctx, args_fn(ctx))
        na = not_started(run)
        if na:
            return na
        ev = token_seen(ctx, run) + canaries(ctx)
        if extra:
            ev += extra(ctx, run)
        outcome, evidence = judge(ctx, run, ev, key)
        return CaseResult("", "", outcome, evidence, run.stdout[-2000:])

    return run_case


def _hardlink_evidence(ctx: Ctx, run: Run) -> list[str]:
    st = ctx.rd.secret.stat()
    if st.st_nlink > 1:
        return [f"the secret's host inode gained a hard link (st_nlink {st.st_nlink})"]
    return []


def case_race(ctx: Ctx) -> CaseResult:
    run = run_guest(
        ctx,
        ["race", str(ctx.rd.allowed), str(ctx.rd.secret), str(ctx.params.race_tries)],
        timeout=300,
    )
    na = not_started(run)
    if na:
        return na
    ev = token_seen(ctx, run)
    line = next((ln for ln in run.attempts() if ln.startswith("attempt race:")), "")
    if ev:
        return CaseResult("", "", ESCAPED, ev + [line], run.stdout[-2000:])
    if run.result.signal == signal.SIGSYS:
        return CaseResult("", "", BLOCKED, ["killed by SIGSYS"], run.stdout[-2000:])
    parts = line.split()
    refused = int(parts[parts.index("refused") + 1]) if "refused" in parts else 0
    opened = int(parts[parts.index("opened") + 1]) if "opened" in parts else 0
    outcome = BLOCKED if refused > 0 else CONTAINED
    return CaseResult(
        "",
        "",
        outcome,
        [
            f"no secret token in the output after the race; guest: {line[len('attempt ') :] or 'no summary'}",
            f"{refused} opens refused (the forbidden name was seen), {opened} opened (the allowed file)",
        ],
        run.stdout[-2000:],
    )


# ---------------------------------------------------------------------------
# Host processes, network, terminal.


@contextlib.contextmanager
def victim(ctx: Ctx):
    proc = subprocess.Popen(
        [ctx.rd.guest("pp-victim"), str(ctx.rd.secret.parent), str(ctx.rd.secret)],
        stdout=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        ready, _, _ = select.select([proc.stdout], [], [], 10)
        if not ready:
            raise harness.BenchSetupError("the victim process did not start")
        _, pid, addr = proc.stdout.readline().decode().split()
        yield proc, int(pid), int(addr, 16)
    finally:
        proc.kill()
        proc.wait(timeout=10)
        proc.stdout.close()


def _proc_state(pid: int) -> dict[str, str]:
    out = {}
    for line in (harness._read(f"/proc/{pid}/status") or "").splitlines():
        k, _, v = line.partition(":")
        out[k] = v.strip()
    return out


def case_proc_fd(ctx: Ctx) -> CaseResult:
    with victim(ctx) as (_proc, pid, _addr):
        run = run_guest(ctx, ["proc-fd", str(pid), str(ctx.rd.secret)])
    na = not_started(run)
    if na:
        return na
    outcome, ev = judge(ctx, run, token_seen(ctx, run), ("/proc/", "proc-pid"))
    return CaseResult(
        "",
        "",
        outcome,
        [f"host pid {pid} held the secret open, cwd in its directory"] + ev,
        run.stdout[-2000:],
    )


def case_kill(ctx: Ctx) -> CaseResult:
    with victim(ctx) as (proc, pid, _addr):
        run = run_guest(ctx, ["kill", str(pid)])
        if not_started(run) is None and run.any_ok():
            # The guest says a kill went through: a SIGKILLed process still
            # takes a moment to exit, so wait for it (bounded) before judging.
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        dead = proc.poll() is not None
        state = _proc_state(pid).get("State", "gone")
    na = not_started(run)
    if na:
        return na
    ev = [f"host victim pid {pid} died ({proc.returncode})"] if dead else []
    outcome, evidence = judge(ctx, run, ev, ("kill-",))
    return CaseResult(
        "",
        "",
        outcome,
        evidence + ([] if dead else [f"victim pid {pid} alive, state {state}"]),
        run.stdout[-2000:],
    )


def case_ptrace(ctx: Ctx) -> CaseResult:
    with victim(ctx) as (proc, pid, addr):
        run = run_guest(ctx, ["ptrace", str(pid), hex(addr)])
        st = _proc_state(pid)
        ev = []
        try:
            with open(f"/proc/{pid}/mem", "rb") as mem:
                mem.seek(addr)
                value = int.from_bytes(mem.read(8), "little")
        except OSError as exc:
            value = None
            ev.append(f"could not read the victim's memory: {exc}")
        if value is not None and value != 0x5EED5EED5EED5EED:
            ev.append(f"the victim's memory at {addr:#x} was changed to {value:#x}")
        if st.get("TracerPid", "0") != "0":
            ev.append(f"the victim is traced by pid {st['TracerPid']}")
        if st.get("State", "").startswith(("T", "t")):
            ev.append(f"the victim was left stopped ({st['State']})")
            os.kill(pid, signal.SIGCONT)
        if proc.poll() is not None:
            ev.append("the victim died")
    na = not_started(run)
    if na:
        return na
    escaped = [e for e in ev if not e.startswith("could not")]
    outcome, evidence = judge(ctx, run, escaped, ("ptrace-attach", "ptrace-seize"))
    state = (
        f"victim {pid}: TracerPid {st.get('TracerPid')}, "
        f"marker {'intact' if not escaped else 'changed'}"
    )
    return CaseResult("", "", outcome, [*evidence, state], run.stdout[-2000:])


class _Listener:
    """Accepts connections on a host socket and records them (and what they send)."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.connections: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self):
        while not self._stop.is_set():
            ready, _, _ = select.select([self.sock], [], [], 0.05)
            if not ready:
                continue
            conn, peer = self.sock.accept()
            conn.settimeout(2)
            try:
                data = conn.recv(256)
            except OSError:
                data = b""
            conn.close()
            self.connections.append(f"connection from {peer or 'a unix peer'} sent {data[:64]!r}")

    def close(self):
        self._stop.set()
        self._thread.join(timeout=5)
        self.sock.close()


def case_tcp(ctx: Ctx) -> CaseResult:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    s.listen(16)
    port = s.getsockname()[1]
    lst = _Listener(s)
    try:
        run = run_guest(ctx, ["tcp", str(port)])
    finally:
        lst.close()
    na = not_started(run)
    if na:
        return na
    ev = [f"host listener on 127.0.0.1:{port} (not granted): {c}" for c in lst.connections]
    outcome, evidence = judge(ctx, run, ev, ("connect",))
    return CaseResult(
        "",
        "",
        outcome,
        evidence + ([] if ev else [f"host listener on 127.0.0.1:{port} saw no connection"]),
        run.stdout[-2000:],
    )


def _unix_case(abstract: bool):
    def run_case(ctx: Ctx) -> CaseResult:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        if abstract:
            name = f"pp-{ctx.token}-abstract"
            s.bind("\0" + name)
            where = f"abstract @{name}"
        else:
            name = str(ctx.rd.outside / "host.sock")
            with contextlib.suppress(FileNotFoundError):
                os.unlink(name)
            s.bind(name)
            os.chmod(name, 0o777)
            where = name
        s.listen(16)
        lst = _Listener(s)
        try:
            run = run_guest(ctx, ["unix-abstract" if abstract else "unix", name])
        finally:
            lst.close()
            if not abstract:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(name)
        na = not_started(run)
        if na:
            return na
        ev = [f"host unix socket {where}: {c}" for c in lst.connections]
        outcome, evidence = judge(ctx, run, ev, ("connect",))
        return CaseResult(
            "",
            "",
            outcome,
            evidence + ([] if ev else [f"host unix socket {where} saw no connection"]),
            run.stdout[-2000:],
        )

    return run_case


def case_tiocsti(ctx: Ctx) -> CaseResult:
    master, slave = os.openpty()
    try:
        path = os.ttyname(slave)
        os.chmod(path, 0o666)
        run = run_guest(ctx, ["tiocsti", path])
        # Injected bytes land in the terminal's input queue (read on the slave
        # side); with ECHO on they are also echoed to the master.
        got = b""
        for fd in (slave, master):
            fl = fcntl.fcntl(fd, fcntl.F_GETFL)
            fcntl.fcntl(fd, fcntl.F_SETFL, fl | os.O_NONBLOCK)
            with contextlib.suppress(BlockingIOError, OSError):
                while chunk := os.read(fd, 4096):
                    got += chunk
        termios.tcflush(slave, termios.TCIOFLUSH)
    finally:
        os.close(master)
        os.close(slave)
    na = not_started(run)
    if na:
        return na
    ev = (
        [f"the harness's terminal {path} received injected input {got[:80]!r}"]
        if ctx.token.encode() in got
        else []
    )
    outcome, evidence = judge(ctx, run, ev, ("tiocsti-",))
    return CaseResult(
        "",
        "",
        outcome,
        evidence + ([] if ev else [f"nothing arrived on the harness's terminal {path}"]),
        run.stdout[-2000:],
    )


# ---------------------------------------------------------------------------
# Kernel attack surface: the ground truth is the host kernel object itself.


def _object_case(
    case: str,
    key: tuple[str, ...],
    fd_kind: str | None = None,
    *,
    keys=False,
    userns=False,
    mounts=False,
):
    def run_case(ctx: Ctx) -> CaseResult:
        run = run_guest(ctx, [case, str(ctx.params.hold_ms)], want_keys=keys, want_mounts=mounts)
        if keys:
            _invalidate_keys(run.observer.key_lines)
            _invalidate_keys(leftover_keys(ctx.token))  # added too briefly to be sampled
        harness.unmount_token_mounts(ctx.token)
        na = not_started(run)
        if na:
            return na
        obs = run.observer
        ev = []
        if fd_kind:
            for rec in obs.seen.values():
                hits = [t for t in rec.fd_targets if fd_kind in t]
                if hits:
                    ev.append(
                        f"host kernel object {hits[0]} held by guest process {rec.pid} ({rec.comm})"
                    )
        if keys and obs.key_lines:
            ev.append(
                f"the host kernel's /proc/keys listed the guest's key: {min(obs.key_lines)[:120]}"
            )
        if userns:
            for rec in obs.seen.values():
                if len(rec.user_ns) > 1:
                    ev.append(
                        f"guest process {rec.pid} moved to a new host user namespace: {sorted(rec.user_ns)}"
                    )
        if mounts:
            for rec in obs.seen.values():
                if rec.token_mounts:
                    ev.append(
                        f"the host kernel mounted for guest process {rec.pid}: {min(rec.token_mounts)[:160]}"
                    )
        outcome, evidence = judge(ctx, run, ev, key)
        seen = f"{len(obs.seen)} guest host process(es) sampled {obs.samples} times"
        return CaseResult("", "", outcome, evidence + [seen], run.stdout[-2000:])

    return run_case


def _invalidate_keys(lines) -> None:
    """Invalidates the keys a guest added to the session keyring it shares
    with the harness (possessed, so the harness may)."""
    libc = ctypes.CDLL(None, use_errno=True)
    for line in lines:
        with contextlib.suppress(ValueError):
            libc.syscall(250, 21, int(line.split()[0], 16))  # keyctl(KEYCTL_INVALIDATE, id)


def leftover_keys(token: str) -> list[str]:
    """Live (not invalidated, not dead) keys naming the token in /proc/keys."""
    try:
        text = pathlib.Path("/proc/keys").read_text()
    except OSError:
        return []
    return [ln for ln in text.splitlines() if token in ln and not set("iD") & set(ln.split()[1])]


def case_open_by_handle(ctx: Ctx) -> CaseResult:
    handle_type, handle_hex = _file_handle(str(ctx.rd.secret))
    run = run_guest(ctx, ["open_by_handle_at", str(ctx.rd.bin), str(handle_type), handle_hex])
    na = not_started(run)
    if na:
        return na
    # name_to_handle_at on the guest's own cwd is harmless; it is not the attack.
    outcome, evidence = judge(ctx, run, token_seen(ctx, run), ("open_by_handle_at",))
    return CaseResult(
        "",
        "",
        outcome,
        [f"handle of the secret computed by the harness (type {handle_type})"] + evidence,
        run.stdout[-2000:],
    )


def _file_handle(path: str) -> tuple[int, str]:
    class FileHandle(ctypes.Structure):
        _fields_ = [
            ("handle_bytes", ctypes.c_uint),
            ("handle_type", ctypes.c_int),
            ("f_handle", ctypes.c_ubyte * 128),
        ]

    libc = ctypes.CDLL(None, use_errno=True)
    fh = FileHandle()
    fh.handle_bytes = 128
    mount_id = ctypes.c_int()
    if (
        libc.name_to_handle_at(-100, path.encode(), ctypes.byref(fh), ctypes.byref(mount_id), 0)
        != 0
    ):
        raise harness.BenchSetupError(
            f"name_to_handle_at({path}): {os.strerror(ctypes.get_errno())}"
        )
    return fh.handle_type, bytes(fh.f_handle[: fh.handle_bytes]).hex()


# ---------------------------------------------------------------------------
# Resource abuse: contained by the limits, host healthy afterwards.


def host_health(ctx: Ctx) -> list[str]:
    """Problems found on the host after a run (empty = healthy)."""
    problems = []
    left = harness.kill_leftovers(ctx.token)
    if left:
        problems.append(
            f"{len(left)} guest process(es) were left running after the run: {left[:5]}"
        )
    try:
        proc = subprocess.run(["/bin/sh", "-c", "exec true"], timeout=20, check=False)
        if proc.returncode != 0:
            problems.append(f"the host could not fork+exec /bin/true (status {proc.returncode})")
    except (OSError, subprocess.TimeoutExpired) as exc:
        problems.append(f"the host could not fork+exec: {exc}")
    try:
        buf = bytearray(64 << 20)
        buf[-1] = 1
        del buf
    except MemoryError:
        problems.append("the host could not allocate 64 MiB")
    return problems


def _resource_manifest(ctx: Ctx, **kw):
    p = ctx.params
    args = {
        "pids": p.pids,
        "memory": p.mem_limit,
        "open_files": p.fd_limit,
        "scratch_size": p.scratch,
    }
    args.update(kw)
    return harness.bench_manifest(ctx.rd, **args)


def _declared(ctx: Ctx, key: str) -> list[str]:
    why = _cannot(ctx, key)
    return [f"the backend declares it cannot express {key}: {why}"] if why else []


def _cannot(ctx: Ctx, key: str) -> str | None:
    from picoproc.backends import get_backend

    return get_backend(ctx.backend).cannot_express().get(key)


def case_forkbomb(ctx: Ctx) -> CaseResult:
    why = _cannot(ctx, "limits.pids")
    if why:
        reason = (
            f"not run: the backend cannot limit processes ({why}); "
            "an unbounded fork bomb would harm the host"
        )
        return CaseResult("", "", NA, [reason])
    p = ctx.params
    run = run_guest(
        ctx, ["forkbomb", str(p.fork_max), str(p.hold_ms)], manifest=_resource_manifest(ctx)
    )
    na = not_started(run)
    if na:
        return na
    health = host_health(ctx)
    line = next((ln for ln in run.attempts() if "forkbomb" in ln), "no summary")
    peak = run.observer.max_live
    ev = [f"peak guest processes seen on the host: {peak} (limit {p.pids})", f"guest: {line[8:]}"]
    ev += [n for n in run.result.notes if n.startswith("limits.pids")]
    if health:
        return CaseResult("", "", ESCAPED, health + ev, run.stdout[-1000:])
    if peak > p.pids + 2:  # + the backend's init/launcher processes that carry the token
        return CaseResult(
            "",
            "",
            ESCAPED,
            [f"the process limit did not hold: {peak} > {p.pids}"] + ev,
            run.stdout[-1000:],
        )
    if "failed 0" in line and peak >= p.fork_max:
        return CaseResult("", "", ESCAPED, ["every fork succeeded"] + ev, run.stdout[-1000:])
    return CaseResult(
        "",
        "",
        CONTAINED,
        ev + ["host healthy afterwards (fork+exec, 64 MiB, no guest left)"],
        run.stdout[-1000:],
    )


def case_membomb(ctx: Ctx) -> CaseResult:
    p = ctx.params
    limit = harness.manifest_mod.parse_size(p.mem_limit)
    run = run_guest(ctx, ["membomb", str(p.mem_max_mb)], manifest=_resource_manifest(ctx))
    na = not_started(run)
    if na:
        return na
    health = host_health(ctx)
    sampled = max((r.max_rss_kib for r in run.observer.seen.values()), default=0)
    tree = int((run.result.rusage or {}).get("ru_maxrss", 0))
    lines = [ln[8:] for ln in run.attempts() if "membomb" in ln][-1:]
    ev = [
        (
            f"largest resident set: {max(sampled, tree) // 1024} MiB (sampled guest {sampled // 1024} MiB, "
            f"backend tree max RSS {tree // 1024} MiB; limit {limit >> 20} MiB)"
        ),
        f"run ended: {run.summary()}",
    ] + [f"guest: {x}" for x in lines]
    if health:
        return CaseResult("", "", ESCAPED, health + ev, run.stdout[-1000:])
    if max(sampled, tree) * 1024 > limit * 1.1 and "own cap" in run.stdout:
        return CaseResult(
            "",
            "",
            ESCAPED,
            ["the memory limit did not hold"] + _declared(ctx, "limits.memory") + ev,
            run.stdout[-1000:],
        )
    return CaseResult("", "", CONTAINED, ev + ["host healthy afterwards"], run.stdout[-1000:])


def case_fdbomb(ctx: Ctx) -> CaseResult:
    p = ctx.params
    run = run_guest(
        ctx,
        ["fdbomb", str(p.fd_max), str(p.hold_ms)],
        manifest=_resource_manifest(ctx),
        count_target="/dev/null",
    )
    na = not_started(run)
    if na:
        return na
    health = host_health(ctx)
    # Counted by target: the fds the guest opened all name /dev/null; fds the
    # sandbox itself keeps in the process (picoproc's loader fd 1023) do not.
    peak = max((r.max_target_count for r in run.observer.seen.values()), default=None)
    line = next((ln[8:] for ln in run.attempts() if "fdbomb" in ln), "no summary")
    ev = [f"guest: {line}"]
    ev.append(
        f"peak fds to /dev/null in a guest process seen on the host: {peak} (limit {p.fd_limit})"
        if peak is not None
        else "no guest process on the host to count fds of (the guest ran elsewhere)"
    )
    if health:
        return CaseResult("", "", ESCAPED, health + ev, run.stdout[-1000:])
    if (peak is not None and peak > p.fd_limit) or "own cap" in line:
        return CaseResult(
            "",
            "",
            ESCAPED,
            ["the open-file limit did not hold"] + _declared(ctx, "limits.open_files") + ev,
            run.stdout[-1000:],
        )
    return CaseResult("", "", CONTAINED, ev + ["host healthy afterwards"], run.stdout[-1000:])


def case_diskfill(ctx: Ctx) -> CaseResult:
    p = ctx.params
    limit = harness.manifest_mod.parse_size(p.scratch)
    run = run_guest(ctx, ["diskfill", str(p.fill_max_mb)], manifest=_resource_manifest(ctx))
    na = not_started(run)
    if na:
        return na
    host_file = ctx.rd.scratch / f"fill-{ctx.token}"
    on_host = host_file.stat().st_size if host_file.exists() else 0
    health = host_health(ctx)
    line = next((ln[8:] for ln in run.attempts() if "diskfill" in ln), "no summary")
    ev = [
        f"bytes that reached the host's disk: {on_host} (scratch limit {limit})",
        f"guest: {line}",
    ]
    with contextlib.suppress(FileNotFoundError):
        host_file.unlink()
    if health:
        return CaseResult("", "", ESCAPED, health + ev, run.stdout[-1000:])
    if on_host > limit or "own cap" in line:
        return CaseResult(
            "",
            "",
            ESCAPED,
            ["the scratch size limit did not hold"] + _declared(ctx, "tmpfs.size") + ev,
            run.stdout[-1000:],
        )
    return CaseResult("", "", CONTAINED, ev + ["host healthy afterwards"], run.stdout[-1000:])


def case_cpuburn(ctx: Ctx) -> CaseResult:
    p = ctx.params
    m = _resource_manifest(ctx, cpu_time=p.cpu_limit, wall_time=p.cpu_spin_s * 4)
    run = run_guest(ctx, ["cpuburn", str(p.cpu_spin_s)], manifest=m, timeout=p.cpu_spin_s * 4)
    na = not_started(run)
    if na:
        return na
    health = host_health(ctx)
    r = run.result
    cpu = (r.rusage or {}).get("ru_utime", 0.0) + (r.rusage or {}).get("ru_stime", 0.0)
    ended = (
        f"killed by {signal.Signals(r.signal).name}" if r.signal else f"exit {r.exit_code}"
    ) + (f", backend stopped it: {r.limit} limit" if r.limit else "")
    ev = [
        (
            f"run ended: {ended}; CPU time of the backend's tree {cpu:.2f} s (limit {p.cpu_limit} s); "
            f"wall {r.wall_time_s:.2f} s (guest would spin {p.cpu_spin_s} s of CPU)"
        )
    ]
    if health:
        return CaseResult("", "", ESCAPED, health + ev, run.stdout[-1000:])
    if "finished its own" in run.stdout:
        return CaseResult(
            "",
            "",
            ESCAPED,
            ["the CPU limit did not stop the guest"] + _declared(ctx, "limits.cpu_time") + ev,
            run.stdout[-1000:],
        )
    return CaseResult("", "", CONTAINED, ev + ["host healthy afterwards"], run.stdout[-1000:])


# ---------------------------------------------------------------------------
# The corpus.


@dataclasses.dataclass(frozen=True)
class Case:
    id: str
    group: str
    title: str
    method: str
    run: object


def _a(*parts):
    return lambda ctx: [p(ctx) if callable(p) else p for p in parts]


def _secret(ctx):
    return str(ctx.rd.secret)


def _outside(ctx):
    return str(ctx.rd.outside)


CASES: list[Case] = [
    Case(
        "secret-read",
        "filesystem",
        "read a planted secret outside the manifest",
        "harness writes a random token into a file outside every mount; escaped if the token appears in the guest's output",
        _secret_case(_a("read", _secret), ("open-secret",)),
    ),
    Case(
        "canary-write",
        "filesystem",
        "write a canary outside scratch",
        "guest creates a file in a host directory outside the manifest; escaped if the harness finds it there",
        _secret_case(_a("write", _outside), ("outside",)),
    ),
    Case(
        "dotdot",
        "filesystem",
        "`..` traversal from scratch",
        "relative path of 16 `../` then the secret's path, and `/../../..` + path; token check",
        _secret_case(_a("dotdot", _secret), ("dotdot",)),
    ),
    Case(
        "symlink-scratch",
        "filesystem",
        "symlink made in scratch pointing at a host file",
        "guest creates absolute and relative symlinks to the secret in its scratch and opens them; token check",
        _secret_case(_a("symlink-scratch", _secret), ("open-symlink",)),
    ),
    Case(
        "symlink-mount",
        "filesystem",
        "symlink planted by the host inside a granted directory",
        "harness plants bin/link-to-secret -> the secret inside the read-only mount; guest opens it; token check",
        _secret_case(
            _a("symlink-mount", lambda ctx: str(ctx.rd.bin / "link-to-secret")), ("open-planted",)
        ),
    ),
    Case(
        "hardlink",
        "filesystem",
        "hard link to a host file",
        "guest links the secret into scratch and opens the link; token check, and the harness checks the "
        "secret's st_nlink on the host",
        _secret_case(_a("hardlink", _secret), ("link",), extra=_hardlink_evidence),
    ),
    Case(
        "proc-self-root",
        "filesystem",
        "/proc/self/root and /proc/1/root",
        "open /proc/self/root + secret path and /proc/1/root + secret path; token check",
        _secret_case(_a("proc-root", _secret), ("proc-",)),
    ),
    Case(
        "proc-self-cwd",
        "filesystem",
        "/proc/self/cwd with `..`, chdir to /proc/self/root",
        "open /proc/self/cwd/../..(x16)/secret; chdir(/proc/self/root) then a relative path; token check",
        _secret_case(_a("proc-cwd", _secret), ("proc-self-cwd", "relative-from")),
    ),
    Case(
        "proc-pid-fd",
        "filesystem",
        "/proc/<host pid>/fd, cwd and root of a host process holding the secret",
        "harness runs a host process that holds the secret open with its cwd in the secret's directory; guest "
        "opens /proc/PID/fd/0..15, /proc/PID/cwd/secret.txt, /proc/PID/root/...; token check",
        case_proc_fd,
    ),
    Case(
        "path-race",
        "filesystem",
        "path-argument race (TOCTOU)",
        "a second guest thread flips the path buffer between an allowed file and the secret while the main "
        "thread opens it many thousands of times; token check",
        case_race,
    ),
    Case(
        "tcp-loopback",
        "network",
        "connect to an ungranted host loopback port",
        "harness listens on 127.0.0.1:random and records accepted connections; escaped if one arrives",
        case_tcp,
    ),
    Case(
        "unix-socket",
        "network",
        "connect to a host unix socket (path)",
        "harness listens on a socket file outside the manifest; escaped if a connection arrives",
        _unix_case(False),
    ),
    Case(
        "unix-abstract",
        "network",
        "connect to a host abstract unix socket",
        "harness listens on @pp-TOKEN-abstract in the host network namespace; escaped if a connection arrives",
        _unix_case(True),
    ),
    Case(
        "signal-host",
        "process",
        "signal a host process",
        "harness runs a host victim; guest sends SIGTERM and SIGKILL to its host pid; escaped if it died",
        case_kill,
    ),
    Case(
        "ptrace-host",
        "process",
        "ptrace-attach a host process and poke its memory",
        "guest PTRACE_ATTACHes the host victim and writes its marker word, then PTRACE_SEIZE; harness reads the "
        "marker through /proc/PID/mem and checks TracerPid and the stopped state",
        case_ptrace,
    ),
    Case(
        "tiocsti",
        "process",
        "TIOCSTI injection into a terminal the harness owns",
        "harness opens a pty and passes its slave path; guest opens it (and tries fds 0-2 and /dev/tty) and "
        "pushes `echo TOKEN` with TIOCSTI; harness reads both sides of its pty",
        case_tiocsti,
    ),
    Case(
        "io_uring",
        "kernel",
        "io_uring_setup",
        "guest creates a ring and holds it; harness samples the guest's host fds for anon_inode:[io_uring]",
        _object_case("io_uring", ("io_uring",), "[io_uring]"),
    ),
    Case(
        "bpf",
        "kernel",
        "bpf(BPF_MAP_CREATE)",
        "guest creates an array map and holds it; harness looks for anon_inode:bpf-map",
        _object_case("bpf", ("bpf",), "bpf-map"),
    ),
    Case(
        "userfaultfd",
        "kernel",
        "userfaultfd (syscall and /dev/userfaultfd)",
        "harness looks for anon_inode:[userfaultfd] in the guest's host fds",
        _object_case("userfaultfd", ("userfaultfd",), "[userfaultfd]"),
    ),
    Case(
        "perf_event_open",
        "kernel",
        "perf_event_open (software clock on itself)",
        "harness looks for anon_inode:[perf_event]",
        _object_case("perf_event_open", ("perf_event_open",), "[perf_event]"),
    ),
    Case(
        "keyctl",
        "kernel",
        "add_key/keyctl on the session keyring",
        "guest adds a key named pp-TOKEN; harness samples the host's /proc/keys for it (and invalidates it)",
        _object_case("keyctl", ("add_key",), keys=True),
    ),
    Case(
        "unshare-user",
        "kernel",
        "unshare(CLONE_NEWUSER)",
        "harness samples /proc/PID/ns/user of the guest before and after; escaped if it changed",
        _object_case("unshare", ("unshare",), userns=True),
    ),
    Case(
        "mount",
        "kernel",
        "mount(tmpfs) and fsopen",
        "guest mounts a tmpfs with source pp-TOKEN in its scratch and opens a tmpfs context with fsopen; "
        "harness samples the guest's mountinfo for that source and its fds for anon_inode:[fscontext]",
        _object_case("mount", ("mount-", "fsopen"), "[fscontext]", mounts=True),
    ),
    Case(
        "open_by_handle_at",
        "kernel",
        'open_by_handle_at with the secret\'s handle ("shocker")',
        "harness computes the secret's file handle with name_to_handle_at and passes it; guest opens it relative "
        "to its granted directory; token check",
        case_open_by_handle,
    ),
    Case(
        "fork-bomb",
        "resources",
        "fork bomb (bounded)",
        "guest forks up to N children that sleep; harness samples the number of guest processes on the host "
        "against the pids limit, then checks host health",
        case_forkbomb,
    ),
    Case(
        "memory-bomb",
        "resources",
        "memory bomb (bounded)",
        "guest maps and touches 16 MiB chunks; harness compares the sampled RSS and the backend tree's max RSS "
        "with the memory limit",
        case_membomb,
    ),
    Case(
        "fd-exhaustion",
        "resources",
        "fd exhaustion (bounded)",
        "guest opens /dev/null until refused; harness counts the guest's fds in /proc against the limit",
        case_fdbomb,
    ),
    Case(
        "disk-fill",
        "resources",
        "scratch-disk fill (bounded)",
        "guest writes to scratch until refused; harness measures the bytes that reached the host's disk",
        case_diskfill,
    ),
    Case(
        "cpu-burn",
        "resources",
        "CPU burn",
        "guest spins; the run must end by the CPU limit (signal or reason) before the guest's own end",
        case_cpuburn,
    ),
    Case(
        "sigsys-override",
        "monitor",
        "ignore and block SIGSYS, then raw forbidden calls",
        "guest sets SIGSYS to SIG_IGN and blocks it, then makes raw openat of the secret and of a canary outside; "
        "token and canary checks",
        _secret_case(_a("sigsys", _secret, _outside), ("raw-openat",)),
    ),
    Case(
        "seccomp-blind",
        "monitor",
        "install a guest seccomp filter to blind the monitor",
        "guest installs an allow-all filter of its own (with a listener, on all threads), then raw openat of the "
        "secret and a canary outside; token and canary checks",
        _secret_case(_a("seccomp-blind", _secret, _outside), ("raw-openat",)),
    ),
]
CASES_BY_ID = {c.id: c for c in CASES}


def _reset(rd: harness.RunDir) -> None:
    """Fresh scratch and outside directories between cases."""
    import shutil

    harness.unmount_token_mounts(rd.token)
    for d in (rd.scratch, rd.outside):
        for entry in d.iterdir():
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)


def run_case(case: Case, ctx: Ctx) -> CaseResult:
    _reset(ctx.rd)
    from picoproc.backends import BackendError

    try:
        res = case.run(ctx)
    except BackendError as exc:  # the backend itself broke on this guest: not judged, said so
        res = CaseResult("", "", NA, [f"the backend failed on this guest: {exc}"])
    except Exception as exc:  # noqa: BLE001 - a harness failure is reported, never counted as a pass
        res = CaseResult("", "", NA, [f"the harness failed: {type(exc).__name__}: {exc}"])
    finally:
        left = harness.kill_leftovers(ctx.token)
    if left:
        res.evidence.append(f"harness killed {len(left)} guest process(es) left after the run")
        if res.outcome in (BLOCKED, CONTAINED):
            res.outcome = ESCAPED
            res.evidence.insert(0, "guest processes outlived the run")
    res.case, res.backend = case.id, ctx.backend
    _reset(ctx.rd)
    return res


def run_security(
    backends: list[str] | None = None, cases: list[str] | None = None, *, quick=False,
    quiet: bool = True, progress=None
) -> list[CaseResult]:
    from picoproc.backends import all_backends, backend_names, get_backend

    known = backend_names()
    wanted = backends or [b.name for b in all_backends() if b.available()[0]]
    for name in wanted:
        if name not in known:
            raise ValueError(f"unknown backend {name!r}; known: {', '.join(known)}")
    selected = [
        CASES_BY_ID[c] if c in CASES_BY_ID else _unknown_case(c) for c in (cases or CASES_BY_ID)
    ]
    params = Params.quick() if quick else Params()
    from picoproc.bench.progress import Progress

    pr = progress or Progress(len(wanted) * len(selected), quiet=quiet)
    rd = harness.make_run_dir()
    out: list[CaseResult] = []
    try:
        for name in wanted:
            ok, why = get_backend(name).available()
            for case in selected:
                pr.step(f"security: {name} {case.id}" + ("" if ok else " (backend unavailable)"))
                if not ok:
                    out.append(CaseResult(case.id, name, NA, [f"backend unavailable: {why}"]))
                    continue
                out.append(run_case(case, Ctx(rd, name, params)))
    finally:
        harness.kill_leftovers(rd.token)
        rd.remove()
    return out


def _unknown_case(name: str):
    raise ValueError(f"unknown case {name!r}; known: {', '.join(CASES_BY_ID)}")


def counts(results: list[CaseResult], backend: str) -> dict[str, int]:
    return {o: sum(1 for r in results if r.backend == backend and r.outcome == o) for o in OUTCOMES}


def markdown(results: list[CaseResult]) -> str:
    backends = list(dict.fromkeys(r.backend for r in results))
    case_ids = list(dict.fromkeys(r.case for r in results))
    by = {(r.case, r.backend): r for r in results}
    lines = ["| backend | blocked | contained | escaped | n/a |", "|---|---:|---:|---:|---:|"]
    for b in backends:
        c = counts(results, b)
        lines.append(f"| {b} | {c[BLOCKED]} | {c[CONTAINED]} | {c[ESCAPED]} | {c[NA]} |")
    lines += ["", "| case | " + " | ".join(backends) + " |", "|---|" + "---|" * len(backends)]
    for cid in case_ids:
        cells = []
        for b in backends:
            r = by.get((cid, b))
            cells.append(
                "" if r is None else ("**escaped**" if r.outcome == ESCAPED else r.outcome)
            )
        lines.append(f"| {cid} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def evidence_markdown(results: list[CaseResult]) -> str:
    lines = []
    for r in results:
        ev = " / ".join(e.replace("|", "\\|").replace("\n", " ") for e in r.evidence)
        lines.append(f"- `{r.backend}` **{r.case}**: {r.outcome} — {ev[:EVIDENCE_SHOWN]}")
    return "\n".join(lines)


def stored(results: list[CaseResult]) -> list[dict]:
    """What docs/SECURITY.md shows of a run, as JSON (``from_stored`` gives
    back what ``markdown`` and ``evidence_markdown`` take): each outcome and
    its evidence up to what the report prints, not the guest's output."""
    out = []
    for r in results:
        evidence, used = [], 0
        for e in r.evidence:
            if used >= EVIDENCE_SHOWN:
                break
            evidence.append(e[:EVIDENCE_SHOWN - used])
            used += len(e) + len(" / ")
        out.append({"case": r.case, "backend": r.backend, "outcome": r.outcome, "evidence": evidence})
    return out


def from_stored(data: list[dict]) -> list[CaseResult]:
    return [CaseResult(d["case"], d["backend"], d["outcome"], list(d["evidence"])) for d in data]
