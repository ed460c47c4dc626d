"""``picoproc bench surface``: how much of the host kernel a confined program reaches.

For each backend a probe guest (guests/surface_probe.c) makes every x86-64
system call, one per forked child, with an impossible argument pattern (all
bits set), and reports per number what happened: the value or -errno it got,
or the signal that killed it.  The harness then classifies each number as
*reaching the host kernel* or *stopped before it*:

* ``kernel``     the host kernel's implementation ran (the filter allowed it,
                 or there is no filter, or a supervisor let it continue);
* ``filtered``   a seccomp filter answered (errno, kill, or a trap nobody handles);
* ``emulated``   trapped and served in the guest's own address space (picoproc's
                 library OS) or by gVisor's Sentry: the host kernel never saw it;
* ``supervised`` (only in the evidence) a monitor outside decided (seccomp
                 user notification, ptrace stop): counted as ``kernel`` when the
                 monitor let it continue, ``filtered`` when it answered itself.

An errno alone is ambiguous (ENOSYS, EPERM can come from a filter or from the
kernel), so the classification never rests on it:

1. the filters the kernel attached to the guest are read from outside
   (PTRACE_SECCOMP_GET_FILTER) while the probe waits, and evaluated for each
   number and the probe's exact arguments (seccomp_filter.py); a process
   without filters (``Seccomp: 0`` in /proc/PID/status) reaches the kernel
   with everything;
2. the observation must agree with the filter's action (ERRNO(e) -> -e,
   KILL -> SIGSYS ...); disagreements are listed in the result;
3. for picoproc the ABI table (``DirectCall.allows`` for these arguments)
   predicts the filter's decision, the filter read from the guest must agree
   with it, and in raw mode a trapped call is observable (it kills the child
   with SIGSYS);
4. for supervised calls: the ptrace backend (the guest's TracerPid is its
   monitor) names every call it cancelled in its result notes (the probe runs
   in chunks small enough for the list to be complete), every other call went
   on to the kernel; under seccomp user notification a call that succeeded, or
   failed with the unconfined run's errno, is counted as having continued to
   the kernel;
5. gVisor: no host process runs the guest's code (the harness sees no process
   carrying the probe's token), every call is served by the Sentry; the
   Sentry's own host calls are bounded by its own seccomp policy, which is not
   the guest's surface and is not measured here.
"""

from __future__ import annotations

import dataclasses
import errno as errno_mod
import os
import signal
import time

from picoproc.abi import linux

from . import harness, seccomp_filter

ALL_ONES = -1
# Per-number argument overrides where all-ones would change the host:
# msgget(key=-1, flags=-1) has IPC_CREAT|IPC_EXCL set and would create a
# System V message queue under a backend that shares the host's IPC namespace.
ARG_OVERRIDES = {linux.SYSCALLS_BY_NAME["msgget"]: (-1, 0, 0, 0, 0, 0)}

# Calls with a history of kernel CVEs (privilege escalation or sandbox escape).
CVE_HISTORY = (
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    "bpf",
    "userfaultfd",
    "keyctl",
    "add_key",
    "request_key",
    "perf_event_open",
    "unshare",
    "setns",
    "mount",
    "umount2",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "move_mount",
    "open_tree",
    "mount_setattr",
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "open_by_handle_at",
    "name_to_handle_at",
    "kexec_load",
    "kexec_file_load",
    "init_module",
    "finit_module",
    "delete_module",
    "clone3",
    "pidfd_getfd",
    "memfd_secret",
    "seccomp",
    "modify_ldt",
    "vmsplice",
    "splice",
    "msgsnd",
    "mremap",
    "futex",
    "waitid",
    "pivot_root",
    "chroot",
    "setxattr",
    "landlock_restrict_self",
    "uretprobe",
    "uprobe",
    "personality",
)

KERNEL, FILTERED, EMULATED = "kernel", "filtered", "emulated"
UNKNOWN = "unknown"  # the backend failed while probing this number: not judged
CHUNK = 90  # numbers per run: the ptrace backend lists at most 100 denials per run
SIGSYS = int(signal.SIGSYS)
# rt_sigaction, rt_sigprocmask, getsockname: see
# picoproc.abi.bpf.loader_sigaction_prefix.
LOADER_ONLY = {13, 14, 51}


def probe_cases() -> list[tuple[int, tuple[int, ...]]]:
    return [(nr, ARG_OVERRIDES.get(nr, (ALL_ONES,) * 6)) for nr in sorted(linux.SYSCALLS_BY_NR)]


def case_arg(nr: int, args: tuple[int, ...]) -> str:
    return ",".join([str(nr), *(str(a) for a in args)])


def parse_probe_output(text: str) -> dict[int, str]:
    """``nr N ret R`` -> {N: "ret R"}."""
    out = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[0] == "nr" and parts[1].lstrip("-").isdigit():
            out[int(parts[1])] = " ".join(parts[2:])
    return out


def describe_observation(obs: str | None) -> str:
    if obs is None:
        return "no report"
    kind, _, value = obs.partition(" ")
    if kind == "ret" and value.startswith("-") and -int(value) < 4096:
        e = -int(value)
        return f"-{errno_mod.errorcode.get(e, e)}"
    if kind == "signal":
        try:
            return f"killed by {signal.Signals(int(value)).name}"
        except ValueError:
            return f"killed by signal {value}"
    return obs


@dataclasses.dataclass
class NrResult:
    nr: int
    name: str
    args: tuple[int, ...]
    observed: str | None
    klass: str
    how: str  # the evidence for the class

    def to_json(self):
        return {
            "nr": self.nr,
            "name": self.name,
            "observed": self.observed,
            "observed_text": describe_observation(self.observed),
            "class": self.klass,
            "how": self.how,
        }


@dataclasses.dataclass
class SurfaceResult:
    backend: str
    status: str  # "ok" or "n/a: reason"
    method: str = ""
    filter_info: str = ""
    results: list[NrResult] = dataclasses.field(default_factory=list)
    disagreements: list[str] = dataclasses.field(default_factory=list)
    notes: list[str] = dataclasses.field(default_factory=list)

    def count(self, klass: str) -> int:
        return sum(1 for r in self.results if r.klass == klass)

    def reachable(self) -> list[NrResult]:
        return [r for r in self.results if r.klass == KERNEL]

    def summary(self) -> dict:
        """What the report shows of this backend (``stored``)."""
        if self.status != "ok":
            return {"backend": self.backend, "status": self.status}
        return {
            "backend": self.backend,
            "status": self.status,
            "how_known": self.filter_info or self.method,
            "counts": {k: self.count(k) for k in (KERNEL, FILTERED, EMULATED, UNKNOWN)},
            "reachable": [r.name for r in self.reachable()],
            "failures": [n for n in self.notes if n.startswith("the backend failed")],
            "disagreements": len(self.disagreements),
            "disagreements_shown": self.disagreements[:DISAGREEMENTS_SHOWN],
        }

    def to_json(self):
        return {
            "backend": self.backend,
            "status": self.status,
            "method": self.method,
            "filter": self.filter_info,
            "counts": {k: self.count(k) for k in (KERNEL, FILTERED, EMULATED, UNKNOWN)},
            "reachable": [r.name for r in self.reachable()],
            "reachable_with_cve_history": [
                r.name for r in self.reachable() if r.name in CVE_HISTORY
            ],
            "disagreements": self.disagreements,
            "notes": self.notes,
            "syscalls": [r.to_json() for r in self.results],
        }


# ---------------------------------------------------------------------------
# Running the probe.


@dataclasses.dataclass
class ProbeRun:
    observations: dict[int, str]
    filters: seccomp_filter.FilterStack | None
    filter_error: str | None
    seccomp_mode: int | None
    host_process_seen: bool
    notes: list[str]
    failed: list[int] = dataclasses.field(default_factory=list)  # numbers the backend failed on
    traced: bool = False


class _FilterGrabber:
    """on_new callback: the first probe process seen is the parent; wait until
    it has installed its SIGUSR1 handler, read its filters, release it."""

    def __init__(self):
        self.done = False
        self.traced = False  # a ptrace supervisor (the ptrace backend) stops every call
        self.filters = None
        self.error = None
        self.mode = None

    def __call__(self, pid: int, comm: str):
        if self.done or comm not in ("pp-surface", harness.LOADER_COMM):
            return
        self.done = True
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            status = harness._read(f"/proc/{pid}/status") or ""
            cgt = [ln for ln in status.splitlines() if ln.startswith("SigCgt:")]
            if cgt and int(cgt[0].split()[1], 16) & (1 << (signal.SIGUSR1 - 1)):
                break
            time.sleep(0.001)  # polling a kernel-side state with a deadline
        status = harness._read(f"/proc/{pid}/status") or ""
        self.traced = any(
            ln.startswith("TracerPid:") and ln.split()[1] != "0" for ln in status.splitlines()
        )
        try:
            self.mode, _ = seccomp_filter.seccomp_status(pid)
            if self.mode == 0:
                self.filters = seccomp_filter.FilterStack([])
            else:
                self.filters = seccomp_filter.read_filters(pid)
        except OSError as exc:
            self.error = f"cannot read the filters of pid {pid}: {exc.strerror or exc}"
        finally:
            try:
                os.kill(pid, signal.SIGUSR1)
            except OSError:
                pass


def run_probe_with_backend(
    backend_name: str, rd: harness.RunDir, cases, *, timeout=600.0
) -> ProbeRun:
    from picoproc.backends import BackendError, get_backend

    backend = get_backend(backend_name)
    manifest = harness.bench_manifest(rd, wall_time=timeout)
    observations: dict[int, str] = {}
    notes: list[str] = []
    grabber = _FilterGrabber()
    seen = False
    failed: list[int] = []

    def run_chunk(chunk, first: bool, split_on_failure: bool):
        nonlocal seen
        hold = 4000 if first else 0
        argv = [rd.guest("pp-surface"), rd.token, str(hold)] + [case_arg(nr, a) for nr, a in chunk]
        try:
            with harness.Observer(rd.token, on_new=grabber if first else None) as obs:
                result = backend.run(manifest, argv, timeout=timeout)
        except BackendError as exc:
            harness.kill_leftovers(rd.token)
            if split_on_failure and len(chunk) > 1:
                # Find the number(s) the backend itself fails on, one at a time.
                for one in chunk:
                    run_chunk([one], False, False)
            else:
                failed.extend(nr for nr, _ in chunk)
                notes.append(
                    f"the backend failed while probing {[linux.SYSCALLS_BY_NR[nr] for nr, _ in chunk]}: {exc}"
                )
            return
        seen = seen or bool(obs.seen)
        text = (result.stdout or b"").decode("utf-8", "replace")
        if "probe done" not in text:
            notes.append(
                f"probe did not finish (status {result.returncode}): "
                f"{(result.stderr or b'').decode('utf-8', 'replace').strip()[-300:]}"
            )
        observations.update(parse_probe_output(text))
        notes.extend(n for n in result.notes if n.startswith(("ptrace denied:", "ptrace:")))

    for i in range(0, len(cases), CHUNK):
        run_chunk(cases[i : i + CHUNK], i == 0, True)
    harness.kill_leftovers(rd.token)
    return ProbeRun(
        observations,
        grabber.filters,
        grabber.error,
        grabber.mode,
        seen,
        notes,
        failed,
        grabber.traced,
    )


def run_probe_raw(rd: harness.RunDir, cases, *, timeout=600.0) -> ProbeRun:
    """picoproc's raw mode: the ABI filter alone, a trapped call kills."""
    import tempfile

    from picoproc import raw

    observations: dict[int, str] = {}
    notes = []
    for i in range(0, len(cases), CHUNK):
        chunk = cases[i : i + CHUNK]
        argv = [rd.guest("pp-surface"), rd.token, "0"] + [case_arg(nr, a) for nr, a in chunk]
        with tempfile.TemporaryFile() as out, open(os.devnull, "rb") as devnull:
            spawned = raw.spawn_raw(argv, {}, (devnull.fileno(), out.fileno(), 2))
            res = raw.wait_raw_or_kill(spawned.pid, timeout)
            out.seek(0)
            text = out.read().decode("utf-8", "replace")
        if "probe done" not in text:
            notes.append(f"raw chunk {i // CHUNK}: exit {res.exit_code} signal {res.signal}")
        observations.update(parse_probe_output(text))
    return ProbeRun(observations, None, None, 2, True, notes)


# ---------------------------------------------------------------------------
# Classification.


def _expected_for_action(ret: int) -> str | None:
    action = ret & seccomp_filter.RET_ACTION_FULL
    if action == seccomp_filter.RET_ERRNO:
        return f"ret -{ret & seccomp_filter.RET_DATA}"
    if action in (seccomp_filter.RET_KILL_PROCESS, seccomp_filter.RET_KILL_THREAD):
        return f"signal {SIGSYS}"
    if action == seccomp_filter.RET_TRACE:
        return f"ret -{errno_mod.ENOSYS}"  # no tracer attached: the kernel answers ENOSYS
    return None


def _is_success(obs: str | None) -> bool:
    if obs is None or not obs.startswith("ret "):
        return False
    value = int(obs.split()[1])
    return not -4096 < value < 0


def _ptrace_denied(notes: list[str]) -> set[str]:
    out = set()
    for n in notes:
        if n.startswith("ptrace denied: "):
            out.add(n[len("ptrace denied: ") :].split()[0])
    return out


def classify(
    backend: str, run: ProbeRun, cases, native: dict[int, str] | None, trap_is_emulated: bool
) -> SurfaceResult:
    res = SurfaceResult(backend, "ok", notes=list(run.notes))
    denied = _ptrace_denied(run.notes)
    if run.filters is not None:
        res.filter_info = (
            f"{len(run.filters.programs)} filter(s), {run.filters.instructions} BPF "
            "instructions, read from the guest process"
            if run.filters.programs
            else "no seccomp filter on the guest process (Seccomp: 0)"
        )
    elif run.filter_error:
        res.filter_info = run.filter_error
    for nr, args in cases:
        name = linux.SYSCALLS_BY_NR[nr]
        obs = run.observations.get(nr)
        if nr in run.failed:
            res.results.append(
                NrResult(nr, name, args, None, UNKNOWN, "the backend failed while probing it")
            )
            continue
        if name in linux.SECCOMP_PASSTHROUGH and run.host_process_seen:
            res.results.append(
                NrResult(
                    nr,
                    name,
                    args,
                    obs,
                    KERNEL,
                    "exempt from every seccomp filter by the kernel's design",
                )
            )
            continue
        if not run.host_process_seen:
            res.results.append(
                NrResult(
                    nr,
                    name,
                    args,
                    obs,
                    EMULATED,
                    "no host process ran the guest: served by the Sentry",
                )
            )
            continue
        filtered_first = None
        if run.filters is not None and run.filters.programs:
            ret0 = run.filters.action(nr, args)
            if ret0 & seccomp_filter.RET_ACTION_FULL not in (
                seccomp_filter.RET_ALLOW,
                seccomp_filter.RET_LOG,
            ):
                filtered_first = ret0
        if run.traced and filtered_first is None:
            # Stopped at every call by the backend's own tracer (the ptrace
            # backend): its notes name what it cancelled.
            # Every call stops at the monitor; the probe runs in chunks small
            # enough that its list of cancellations is complete.
            if name in denied:
                res.results.append(
                    NrResult(
                        nr, name, args, obs, FILTERED, "cancelled by the ptrace monitor (its notes)"
                    )
                )
            else:
                res.results.append(
                    NrResult(
                        nr,
                        name,
                        args,
                        obs,
                        KERNEL,
                        "stopped by the ptrace monitor and let through (not among its cancellations)",
                    )
                )
            continue
        if run.filters is None:
            res.results.append(
                NrResult(nr, name, args, obs, UNKNOWN, "the guest's filters could not be read")
            )
            continue
        ret = run.filters.action(nr, args)
        action = ret & seccomp_filter.RET_ACTION_FULL
        what = seccomp_filter.describe_action(ret)
        expected = _expected_for_action(ret)
        if expected is not None and obs != expected and obs is not None:
            res.disagreements.append(
                f"{name}: filter says {what}, observed {describe_observation(obs)}"
            )
        if action in (seccomp_filter.RET_ALLOW, seccomp_filter.RET_LOG):
            klass, how = KERNEL, f"filter: {what}" if run.filters.programs else "no filter"
        elif action == seccomp_filter.RET_TRAP:
            klass, how = (
                (EMULATED, "filter: trap -> library OS")
                if trap_is_emulated
                else (FILTERED, "filter: trap")
            )
        elif action == seccomp_filter.RET_USER_NOTIF:
            if _is_success(obs):
                klass, how = (
                    KERNEL,
                    "filter: user_notif; it succeeded, so the supervisor let it continue",
                )
            elif native is not None and obs == native.get(nr):
                klass, how = (
                    KERNEL,
                    "filter: user_notif; same error as native, so the supervisor let it continue",
                )
            else:
                klass, how = (
                    FILTERED,
                    "filter: user_notif; the supervisor answered (result differs from native)",
                )
        else:
            klass, how = FILTERED, f"filter: {what}"
        res.results.append(NrResult(nr, name, args, obs, klass, how))
    return res


def classify_pico_table(run: ProbeRun, cases, mode: str) -> SurfaceResult:
    """picoproc by its ABI table, checked against what the probe observed (raw
    mode: a trapped call kills the child with SIGSYS) and against the compiled
    filter evaluated by the interpreter."""
    from picoproc.abi import bpf
    from picoproc.abi.table import load_table

    table = load_table()
    direct = {d.nr: d for d in table.direct}
    errno_calls = {e.nr: e for e in table.errno_calls}
    stack = seccomp_filter.FilterStack([seccomp_filter.decode(bpf.filter_for(mode))])
    res = SurfaceResult("pico-raw" if mode == "raw" else "pico", "ok", notes=list(run.notes))
    res.filter_info = (
        f"the ABI table ({len(table.direct)} direct calls) and its compiled {mode} filter "
        f"({stack.instructions} instructions)"
    )
    for nr, args in cases:
        name = linux.SYSCALLS_BY_NR[nr]
        obs = run.observations.get(nr)
        ret = stack.action(nr, args)
        if name in linux.SECCOMP_PASSTHROUGH:
            res.results.append(
                NrResult(
                    nr,
                    name,
                    args,
                    obs,
                    KERNEL,
                    "exempt from every seccomp filter by the kernel's design",
                )
            )
            continue
        if mode == "libos" and nr in LOADER_ONLY:
            # The libos filter's hand-written prefix allows these only from the
            # loader's text range; the probe's call site is the program's.
            klass, how = (
                EMULATED,
                "libos mode: direct only from the library OS's text; from the program it traps",
            )
        elif nr in direct and direct[nr].allows(args):
            klass, how = KERNEL, "ABI direct call, allowed for these arguments"
        elif nr in errno_calls and not (mode == "libos" and errno_calls[nr].libos_traps):
            klass, how = FILTERED, f"ABI errno entry ({errno_calls[nr].errno_name})"
        elif mode == "raw":
            klass, how = FILTERED, "not in the ABI for these arguments: killed (SIGSYS)"
        else:
            klass, how = EMULATED, "not in the ABI for these arguments: trapped to the library OS"
        table_action = {
            KERNEL: seccomp_filter.RET_ALLOW,
            FILTERED: None,
            EMULATED: seccomp_filter.RET_TRAP,
        }[klass]
        filt = ret & seccomp_filter.RET_ACTION_FULL
        if (klass == KERNEL) != (filt == seccomp_filter.RET_ALLOW) or (
            table_action and filt != table_action
        ):
            res.disagreements.append(
                f"{name}: table says {klass}, compiled filter says {seccomp_filter.describe_action(ret)}"
            )
        if mode == "raw" and obs is not None:
            killed = obs == f"signal {SIGSYS}"
            if klass == KERNEL and killed:
                res.disagreements.append(
                    f"{name}: allowed by the table but the child was killed by SIGSYS"
                )
            if klass == FILTERED and nr not in errno_calls and not killed:
                res.disagreements.append(
                    f"{name}: refused by the table but observed {describe_observation(obs)}"
                )
        res.results.append(NrResult(nr, name, args, obs, klass, how))
    return res


def available_backends() -> list[str]:
    from picoproc.backends import all_backends

    names = [b.name for b in all_backends() if b.available()[0]]
    return ["pico-raw"] + names


def run_surface(backends: list[str] | None = None, *, quiet: bool = True,
                progress=None) -> list[SurfaceResult]:
    """Probes every backend in ``backends``; progress (step n/N, elapsed) on
    stderr unless ``quiet`` (or into a given picoproc.bench.progress.Progress)."""
    from picoproc.backends import backend_names, get_backend

    known = ["pico-raw", *backend_names()]
    wanted = backends or available_backends()
    for name in wanted:
        if name not in known:
            raise ValueError(f"unknown backend {name!r}; known: {', '.join(known)}")
    cases = probe_cases()
    from picoproc.bench.progress import Progress

    pr = progress or Progress(len(wanted) + 1, quiet=quiet)
    rd = harness.make_run_dir()
    out: list[SurfaceResult] = []
    try:
        native_obs = None
        pr.step("surface: native (the reference every backend is compared with)")
        if get_backend("native").available()[0]:
            native_run = run_probe_with_backend("native", rd, cases)
            native_obs = native_run.observations
        for name in wanted:
            pr.step(f"surface: {name}")
            if name == "pico-raw":
                run = run_probe_raw(rd, cases)
                res = classify_pico_table(run, cases, "raw")
                res.method = "ABI table + compiled filter (interpreted) + raw-mode run (a trapped call kills)"
                out.append(res)
                continue
            ok, why = get_backend(name).available()
            if not ok:
                out.append(SurfaceResult(name, f"n/a: {why}"))
                continue
            run = (
                native_run
                if name == "native" and native_obs is not None
                else run_probe_with_backend(name, rd, cases)
            )
            res = classify(name, run, cases, native_obs, trap_is_emulated=(name == "pico"))
            if name == "pico":
                table_view = classify_pico_table(run, cases, "libos")
                for a, b in zip(res.results, table_view.results):
                    if a.klass != b.klass:
                        res.disagreements.append(
                            f"{a.name}: filter read from the guest says {a.klass}, ABI table says {b.klass}"
                        )
            res.method = (
                "the ptrace monitor's cancellations (result notes)"
                if run.traced
                else "filters read from the guest (PTRACE_SECCOMP_GET_FILTER) and interpreted, "
                "checked against the observed results"
                if run.filters is not None
                else "no host process ran the guest"
                if not run.host_process_seen
                else "filters could not be read"
            )
            if run.traced:
                res.filter_info = (
                    res.filter_info + "; " if res.filter_info else ""
                ) + "traced by the backend's monitor: its cancellations (result notes)"
            out.append(res)
    finally:
        harness.kill_leftovers(rd.token)
        rd.remove()
    return out


# ---------------------------------------------------------------------------
# Reporting.


DISAGREEMENTS_SHOWN = 20


def stored(results: list[SurfaceResult]) -> dict:
    """What docs/SECURITY.md shows of a run, as JSON (``markdown`` and
    ``reachable_lists`` render it): per backend its counts, how its filter
    was known, the names it reaches and what it failed on.  ``to_json`` is
    the full record, with every number's evidence."""
    return {"syscalls_probed": len(probe_cases()), "highest_nr": max(linux.SYSCALLS_BY_NR),
            "backends": [r.summary() for r in results]}


def markdown(run: dict) -> str:
    """The results table of a ``stored`` run."""
    lines = [
        (
            "| backend | reaches host kernel | filtered | emulated | not judged | how the filter was known | "
            "disagreements |"
        ),
        "|---|---:|---:|---:|---:|---|---:|",
    ]
    for r in run["backends"]:
        if r["status"] != "ok":
            lines.append(f"| {r['backend']} | {r['status']} | | | | | |")
            continue
        c = r["counts"]
        lines.append(
            f"| {r['backend']} | {c[KERNEL]} | {c[FILTERED]} | {c[EMULATED]} | "
            f"{c[UNKNOWN]} | {r['how_known']} | {r['disagreements']} |"
        )
    lines.append("")
    lines.append(
        f"Syscalls probed: {run['syscalls_probed']} (every x86-64 number the kernel defines up to "
        f"{run['highest_nr']}), arguments all bits set (msgget: key -1, flags 0)."
    )
    lines.append("")
    for r in run["backends"]:
        if r["status"] != "ok":
            continue
        cve = [name for name in r["reachable"] if name in CVE_HISTORY]
        lines.append(
            f"**{r['backend']}** reachable calls with a kernel-CVE history ({len(cve)}): "
            + (", ".join(f"`{c}`" for c in cve) if cve else "none")
        )
        lines.append("")
    return "\n".join(lines)


def reachable_lists(run: dict) -> str:
    """Every reachable name per backend of a ``stored`` run, with the numbers
    a backend failed on and the disagreements."""
    lines = []
    for r in run["backends"]:
        if r["status"] != "ok":
            continue
        names = r["reachable"]
        lines.append(f"<details><summary>{r['backend']}: {len(names)} reachable</summary>\n")
        lines.append(", ".join(f"**{n}**" if n in CVE_HISTORY else n for n in names) or "none")
        lines.append("\n</details>\n")
        if r["failures"]:
            lines.append(f"{r['backend']}: " + "; ".join(r["failures"]))
            lines.append("")
        if r["disagreements_shown"]:
            lines.append(
                f"{r['backend']} disagreements between filter and observation: "
                + "; ".join(r["disagreements_shown"])
            )
            lines.append("")
    return "\n".join(lines)
