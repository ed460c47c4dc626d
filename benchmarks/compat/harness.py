"""Runs CPython regression modules natively and inside a picoprocess and
compares them test by test.

Both sides run ``/usr/bin/python3 -m test -v MODULE`` (through
regrtest_marked.py, which marks each test's start in the audit) through
``/bin/sh`` (stderr joined to stdout inside, so the order of lines is the
program's):

* natively through ``launch.py``: the guest's identity, environment, working
  directory, hostname, private scratch tmpfs, a network namespace with its
  own loopback, and (where a cgroup can be made) the guest's memory and
  process-count limits;
* inside with ``picoproc run --manifest M`` (the default manifest plus the
  grants listed in ``GRANTS``), its audit streamed through a pipe and its
  result (``--json``) kept.

A run that prints nothing for ``test_timeout`` seconds is hung: the
harness asks it for a traceback of every thread (SIGUSR1, which regrtest
registers with faulthandler), stops it, records the test that was running as
a hang (where it hung), and runs the module again without the tests already
done.  A run that dies records the running test as a crash the same way.
Tests that hang or crash natively are broken on this machine: they are not
run inside and not counted.
"""

from __future__ import annotations

import bisect
import concurrent.futures
import dataclasses
import json
import os
import pathlib
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence

from . import regrtest
from .modules import EXPECTED_SECONDS
from .regrtest import CRASH, ERROR, FAIL, GOOD, HANG, MISSING, PASS, SKIP, XFAIL, ParsedRun, TestResult

SCHEMA = "picoproc-compat/1"
PYTHON = "/usr/bin/python3"
LAUNCHER = pathlib.Path(__file__).resolve().parent / "launch.py"
MARKED_RUNNER = pathlib.Path(__file__).resolve().parent / "regrtest_marked.py"

TEST_TIMEOUT_S = 120.0  # no output for this long: the running test hangs
MODULE_TIMEOUT_S = 1800.0  # one side of one module, restarts included
MAX_RUNS = 8  # runs of one side of one module (each hang or crash costs one)
DUMP_WAIT_S = 5.0  # for the traceback a hung run prints on SIGUSR1
STOP_TIMEOUT_S = 5  # picoproc run --stop-timeout: SIGTERM, then SIGKILL
EXIT_WAIT_S = 20.0  # for a stopped run to exit and close its output

# What the guest is granted beyond the default manifest, and why, as
# ({apply_overrides keyword: [values]}, reason); the native side gets the
# same (launch.py), so a grant is never a difference.  None is needed for
# the default modules: natively, with the default 64 MiB /tmp and /dev/shm,
# 1 GiB of memory and 256 processes, they pass as they do with a 1 GiB /tmp.
GRANTS: tuple[tuple[dict, str], ...] = ()

# Errors in the audit that programs meet all the time (probing for files,
# connecting to ports nothing listens on): not evidence of anything.
_ROUTINE_ERRNOS = {"ENOENT", "EEXIST", "ENOTDIR", "EISDIR", "ENOTEMPTY", "EAGAIN", "EINPROGRESS",
                   "EINTR", "ECONNREFUSED", "ELOOP", "ENAMETOOLONG"}
# Calls that fail in the ordinary course of things, whatever the errno says.
_ROUTINE_CALLS = {("readlink", "EINVAL")}  # not a symbolic link
_MAX_RECORDS_KEPT = 50_000  # per run: the audit records kept for explaining failures


# ---------------------------------------------------------------------------
# The two environments


@dataclasses.dataclass
class Setup:
    """What both sides of every module share."""

    manifest: object  # picoproc.manifest.Manifest: the guest's
    manifest_path: str  # the same, as TOML, for picoproc run --manifest
    identity: dict  # {"uid", "gid", "why"}: whom both sides run as
    work: str  # a host directory both sides can read (match files), not under /tmp
    grants: list[str]  # the grants in words
    test_timeout: float = TEST_TIMEOUT_S
    module_timeout: float = MODULE_TIMEOUT_S
    python: str = PYTHON
    picoproc: list[str] = dataclasses.field(default_factory=lambda: [sys.executable, "-m", "picoproc"])
    cgroups: bool = True  # give native runs a cgroup with the guest's limits where possible
    testdir: str | None = None  # regrtest --testdir: modules from there instead of CPython's
    marked_runner: str = ""  # regrtest_marked.py, copied where both sides can read it
    mark: str = ""  # the prefix of the paths it marks test starts with
    # Set to stop the comparison: every run in progress is killed (Stopped).
    stop: threading.Event = dataclasses.field(default_factory=threading.Event)


def make_setup(work: str, grants: Sequence[tuple[dict, str]] = GRANTS, testdir: str | None = None,
               **kwargs) -> Setup:
    """The setup of a comparison whose files live in ``work`` (a directory
    the guest identity can read, not under /tmp).  ``testdir``: run the
    regression modules found there (regrtest --testdir), shown to the guest
    read-only at the same path."""
    from picoproc.api import resolve_identity
    from picoproc.manifest import apply_overrides, default_manifest, manifest_to_toml

    overrides: dict[str, list[str]] = {"volumes": [f"{work}:{work}:ro"]}
    if testdir:
        testdir = os.path.abspath(testdir)
        overrides["volumes"].append(f"{testdir}:{testdir}:ro")
    for grant, _ in grants:
        for key, values in grant.items():
            overrides.setdefault(key, []).extend(values)
    manifest = apply_overrides(default_manifest(), **overrides)
    path = os.path.join(work, "manifest.toml")
    with open(path, "w") as f:
        f.write(manifest_to_toml(manifest))
    ident = resolve_identity(manifest)
    runner = os.path.join(work, MARKED_RUNNER.name)
    shutil.copy(MARKED_RUNNER, runner)
    os.chmod(runner, 0o644)
    return Setup(manifest=manifest, manifest_path=path, identity=ident.as_dict(), work=work,
                 grants=[why for _, why in grants], testdir=testdir, marked_runner=runner,
                 mark=os.path.join(work, "test-starts", ""), **kwargs)


def _native_spec(setup: Setup, cgroup_procs: Sequence[str]) -> dict:
    from picoproc.scratch import default_inodes

    m = setup.manifest
    return {
        "uid": setup.identity["uid"], "gid": setup.identity["gid"], "env": dict(m.env),
        "cwd": m.cwd, "hostname": m.hostname,
        # The guest's scratch: owner-only, as picoproc.scratch makes it.
        "tmpfs": [[t.guest, t.size_bytes, t.inodes or default_inodes(t.size_bytes), 0o700]
                  for t in m.tmpfs],
        "nofile": m.limits.open_files, "cgroup_procs": list(cgroup_procs),
    }


def _shell(argv: Sequence[str]) -> list[str]:
    """argv through /bin/sh with stderr joined to stdout, inside the run."""
    return ["/bin/sh", "-c", 'exec "$@" 2>&1', "sh", *argv]


# ---------------------------------------------------------------------------
# One run of a program, its output time-stamped as it arrives


@dataclasses.dataclass
class Capture:
    output: bytes
    arrivals: list[tuple[int, int]]  # (output length after a chunk, time_ns it arrived)
    how: str  # "exited", "silent" (stopped: no output for too long), "deadline"
    status: int | None  # the shell's: exit code, or 128+N for signal N
    wall_s: float
    started_ns: int
    result: dict | None = None  # the guest's: picoproc's --json result
    records: list[dict] = dataclasses.field(default_factory=list)  # audit records worth showing
    records_total: int = 0
    test_starts: list[tuple[int, str]] = dataclasses.field(default_factory=list)  # (time_ns, test id)


def _interesting(rec: dict) -> bool:
    if rec.get("call") == "note_unsupported" or rec.get("decision") == "deny":
        return True
    return (rec.get("decision") == "error" and rec.get("errno_name") not in _ROUTINE_ERRNOS
            and (rec.get("call"), rec.get("errno_name")) not in _ROUTINE_CALLS)


class Stopped(Exception):
    """The comparison was stopped (Setup.stop was set): runs are killed."""


def _capture(argv: list[str], *, env: dict | None, silence_s: float, deadline: float,
             stop_steps: Sequence[tuple[int, bool, float]], audit_rfd: int | None = None,
             pass_fds: Sequence[int] = (), on_end: Callable[[], None] | None = None,
             mark: str | None = None, stop: threading.Event | None = None) -> Capture:
    """Runs argv (own session), reading its output until it closes and the
    process has exited.  No output for ``silence_s``, or the monotonic
    ``deadline``, starts ``stop_steps``: (signal, to the whole group?, how long
    to wait before the next step).  ``on_end`` runs once the process has
    exited (native: removes its cgroup, killing what it left)."""
    started_ns = time.time_ns()
    t0 = time.monotonic()
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, env=env, start_new_session=True,
                            pass_fds=tuple(pass_fds))
    for fd in pass_fds:
        os.close(fd)
    out = bytearray()
    arrivals: list[tuple[int, int]] = []
    records: list[dict] = []
    starts: list[tuple[int, str]] = []
    total = 0
    audit_buf = b""
    how = "exited"
    steps = list(stop_steps)
    next_step_at: float | None = None
    step_signalled_at: float | None = None
    last_output = time.monotonic()
    exited_at: float | None = None
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ, "out")
    if audit_rfd is not None:
        os.set_blocking(audit_rfd, False)
        sel.register(audit_rfd, selectors.EVENT_READ, "audit")

    def signal_run(signo: int, group: bool) -> None:
        try:
            if group:
                os.killpg(proc.pid, signo)
            else:
                proc.send_signal(signo)
        except (ProcessLookupError, PermissionError):
            pass

    def advance() -> None:
        nonlocal next_step_at, step_signalled_at
        if not steps:
            next_step_at = None
            return
        signo, group, wait = steps.pop(0)
        signal_run(signo, group)
        step_signalled_at = time.monotonic()
        next_step_at = step_signalled_at + wait

    try:
        while sel.get_map():
            if stop is not None and stop.is_set():
                raise Stopped
            now = time.monotonic()
            if next_step_at is None and how == "exited" and exited_at is None:
                if now >= deadline:
                    how = "deadline"
                    advance()
                elif now - last_output >= silence_s:
                    how = "silent"
                    advance()
            elif next_step_at is not None and now >= next_step_at:
                advance()
            if exited_at is not None and now - exited_at > 5.0:
                # It exited, but something it started still holds the output.
                if on_end is not None:
                    on_end()
                    on_end = None
                signal_run(signal.SIGKILL, True)
                break
            waits = [1.0]
            if next_step_at is not None:
                waits.append(next_step_at - now)
            elif how == "exited" and exited_at is None:
                waits += [deadline - now, last_output + silence_s - now]
            for key, _ in sel.select(max(0.01, min(waits))):
                if key.data == "out":
                    chunk = os.read(key.fd, 65536)
                    if not chunk:
                        sel.unregister(key.fd)
                        continue
                    out += chunk
                    arrivals.append((len(out), time.time_ns()))
                    last_output = time.monotonic()
                    if step_signalled_at is not None and next_step_at is not None and \
                            steps and steps[0][0] != signal.SIGKILL and now - step_signalled_at > 1.0:
                        # The traceback came: go on at once after a quiet second.
                        next_step_at = min(next_step_at, last_output + 1.0)
                else:
                    try:
                        chunk = os.read(key.fd, 1 << 16)
                    except BlockingIOError:
                        continue
                    if not chunk:
                        sel.unregister(key.fd)
                        continue
                    audit_buf += chunk
                    *lines, audit_buf = audit_buf.split(b"\n")
                    for line in lines:
                        if not line.strip():
                            continue
                        total += 1
                        try:
                            rec = json.loads(line)
                        except ValueError:
                            continue
                        path = rec.get("path") or ""
                        if mark and path.startswith(mark):
                            starts.append((rec.get("time_ns", 0), path[len(mark):]))
                        elif _interesting(rec) and len(records) < _MAX_RECORDS_KEPT:
                            records.append(rec)
            if exited_at is None and proc.poll() is not None:
                exited_at = time.monotonic()
        proc.wait(timeout=EXIT_WAIT_S)
    except subprocess.TimeoutExpired:
        signal_run(signal.SIGKILL, True)
        proc.wait()
    except BaseException:
        # Stopped (Ctrl-C), or a bug here: the run must not outlive us.
        # Killing picoproc kills its guest; a native run's cgroup goes in on_end.
        signal_run(signal.SIGKILL, True)
        proc.wait()
        raise
    finally:
        sel.close()
        proc.stdout.close()
        if audit_rfd is not None:
            os.close(audit_rfd)
        if on_end is not None:
            on_end()
    rc = proc.returncode
    return Capture(bytes(out), arrivals, how, 128 - rc if rc < 0 else rc, time.monotonic() - t0,
                   started_ns, records=records, records_total=total, test_starts=starts)


def _regrtest_argv(setup: Setup, module: str, ignore_file: str | None) -> list[str]:
    """``python3 -m test -v MODULE``, through regrtest_marked.py (a mark in
    the audit at every test's start), on both sides alike."""
    argv = [setup.python, setup.marked_runner, setup.mark, "-v"]
    if setup.testdir:
        argv += ["--testdir", setup.testdir]
    if ignore_file:
        argv += ["--ignorefile", ignore_file]
    return argv + [module]


def run_native(setup: Setup, argv: list[str], *, silence_s: float, deadline: float) -> Capture:
    """argv natively, in the guest's environment (launch.py)."""
    cgroup = None
    if setup.cgroups:
        cgroup = _native_cgroup(setup)
    spec = _native_spec(setup, cgroup.join_files() if cgroup is not None else ())
    launcher = [sys.executable, "-I", str(LAUNCHER), json.dumps(spec), "--", *_shell(argv)]

    def end() -> None:
        if cgroup is not None:
            try:
                cgroup.remove()
            except OSError:
                pass

    try:
        return _capture(launcher, env=None, silence_s=silence_s, deadline=deadline,
                        stop_steps=[(signal.SIGUSR1, False, DUMP_WAIT_S), (signal.SIGKILL, True, EXIT_WAIT_S)],
                        on_end=end, stop=setup.stop)
    finally:
        end()


def _native_cgroup(setup: Setup):
    try:
        from picoproc import cgroups
    except ImportError:
        return None
    if cgroups.available().version is None:
        return None
    lim = setup.manifest.limits
    cg, _ = cgroups.create_run_cgroup(memory_bytes=lim.memory_bytes, pids=lim.pids)
    return cg


def run_guest(setup: Setup, argv: list[str], *, silence_s: float, deadline: float) -> Capture:
    """argv inside a picoprocess, through the ``picoproc run`` CLI (each run
    has its own monitor, so runs in parallel do not share one)."""
    rfd, wfd = os.pipe()
    os.set_inheritable(wfd, True)
    fd, json_path = tempfile.mkstemp(prefix="result-", suffix=".json", dir=setup.work)
    os.close(fd)
    cmd = [*setup.picoproc, "run", "--manifest", setup.manifest_path, "--json", json_path,
           "--audit", f"/dev/fd/{wfd}", "--stop-timeout", str(STOP_TIMEOUT_S), "--", *_shell(argv)]
    try:
        cap = _capture(cmd, env=None, silence_s=silence_s, deadline=deadline, audit_rfd=rfd,
                       pass_fds=[wfd], mark=setup.mark or None, stop=setup.stop,
                       stop_steps=[(signal.SIGUSR1, False, DUMP_WAIT_S),
                                   (signal.SIGTERM, False, STOP_TIMEOUT_S + EXIT_WAIT_S),
                                   (signal.SIGKILL, True, EXIT_WAIT_S)])
        try:
            with open(json_path) as f:
                cap.result = json.load(f)
        except (OSError, ValueError):
            cap.result = None
        if cap.result and cap.result.get("exit_status") is not None:
            cap.status = cap.result["exit_status"]
        return cap
    finally:
        os.unlink(json_path)


def list_cases(setup: Setup, module: str) -> list[str] | None:
    """The ids of the module's tests (regrtest --list-cases, natively), or
    None when it cannot list them."""
    argv = [setup.python, "-m", "test", "--list-cases"]
    if setup.testdir:
        argv += ["--testdir", setup.testdir]
    cap = run_native(setup, [*argv, module],
                     silence_s=setup.test_timeout, deadline=time.monotonic() + setup.test_timeout)
    if cap.how != "exited" or cap.status != 0:
        return None
    ids = regrtest.list_cases_output(cap.output)
    return ids or None


# ---------------------------------------------------------------------------
# One side of one module


@dataclasses.dataclass
class Attempt:
    how: str  # "exited", "silent", "deadline"
    status: int | None
    wall_s: float
    in_flight: str | None
    reason: str | None = None  # picoproc's one-line reason (guest)
    unsupported: list[str] = dataclasses.field(default_factory=list)
    records_total: int = 0
    purpose: str | None = None  # why this run, when not to run the module (the rest of it)

    def to_json(self) -> dict:
        return {k: v for k, v in dataclasses.asdict(self).items() if v not in (None, [], "")}


@dataclasses.dataclass
class Side:
    """One module's results on one side (native or inside)."""

    name: str
    tests: dict[str, TestResult] = dataclasses.field(default_factory=dict)
    attempts: list[Attempt] = dataclasses.field(default_factory=list)
    module_skipped: str | None = None
    module_error: str | None = None  # the module could not run at all
    ended_early: str | None = None  # how the last run ended, when it ended before its tests did
    fixtures: dict[str, tuple[str, str]] = dataclasses.field(default_factory=dict)
    evidence: dict[str, list[str]] = dataclasses.field(default_factory=dict)  # test -> audit lines

    @property
    def wall_s(self) -> float:
        return sum(a.wall_s for a in self.attempts)

    def counts(self) -> dict[str, int]:
        return dict(Counter(r.outcome for r in self.tests.values()))


def run_side(setup: Setup, side: str, module: str, universe: list[str] | None,
             skip: set[str] = frozenset(), runner: Callable[..., Capture] | None = None,
             out_dir: str | None = None) -> Side:
    """Runs the module until every test has an outcome: after a hang or a
    crash, again without the tests already done (and the one that hung)."""
    runner = runner or (run_native if side == "native" else run_guest)
    known = set(universe) if universe else None
    res = Side(side)
    deadline = time.monotonic() + setup.module_timeout
    done: set[str] = set()
    fd, ignore_path = tempfile.mkstemp(prefix=f"{module}-{side}-", suffix=".ignore", dir=setup.work)
    os.close(fd)
    os.chmod(ignore_path, 0o644)
    try:
        while True:
            ignore = sorted(done | set(skip))
            with open(ignore_path, "w") as f:
                f.write("".join(t + "\n" for t in ignore))
            cap = runner(setup, _regrtest_argv(setup, module, ignore_path if ignore else None),
                         silence_s=setup.test_timeout, deadline=deadline)
            if out_dir:
                pathlib.Path(out_dir, f"{module}.{side}.{len(res.attempts) + 1}.out").write_bytes(cap.output)
            parsed = regrtest.parse(cap.output, known)
            attempt = Attempt(cap.how, cap.status, round(cap.wall_s, 2), parsed.in_flight,
                              records_total=cap.records_total)
            if cap.result:
                attempt.reason = cap.result.get("reason")
                attempt.unsupported = list(cap.result.get("unsupported") or [])
            res.attempts.append(attempt)
            _attribute(parsed, cap, res)
            for tid, r in parsed.tests.items():
                res.tests[tid] = r
                done.add(tid)
            res.fixtures.update(parsed.fixtures)
            res.module_skipped = res.module_skipped or parsed.module_skipped
            if parsed.module_crashed and not parsed.tests:
                res.module_error = res.module_error or parsed.module_crashed
            if parsed.in_flight:
                res.tests[parsed.in_flight] = _cut_short(parsed, cap, setup)
                done.add(parsed.in_flight)
            if parsed.complete or res.module_skipped:
                break
            left = [t for t in (universe or ()) if t not in done and t not in skip]
            if parsed.in_flight is None:
                # It ended outside any test: at start-up, in a fixture,
                # between tests.  Again for the rest only if this run got
                # somewhere (a start-up failure would fail the same way).
                if not parsed.tests:
                    res.module_error = res.module_error or _ended(cap, parsed)
                    break
                res.ended_early = _ended(cap, parsed)
                if universe is None or not left or cap.how == "deadline" or len(res.attempts) >= MAX_RUNS:
                    break
                continue
            if universe is not None and not left:
                break
            if cap.how == "deadline" or len(res.attempts) >= MAX_RUNS:
                why = (f"not run: the module's time limit ({setup.module_timeout:.0f} s) was reached"
                       if cap.how == "deadline" else
                       f"not run: the module was stopped {len(res.attempts)} times (hangs, crashes)")
                for t in left:
                    res.tests[t] = TestResult(MISSING, why)
                break
        if side == "guest":
            _explain(setup, side, module, res, runner, ignore_path, deadline)
    finally:
        os.unlink(ignore_path)
    _fill_missing(res, universe, skip)
    return res


def _explain(setup: Setup, side: str, module: str, res: Side, runner, path: str, deadline: float) -> None:
    """Failures seen in a run that was then cut short have no traceback
    (unittest prints them at the end): runs those tests once more, alone
    (``--matchfile``), for their failure text."""
    bare = sorted(t for t, r in res.tests.items() if r.outcome in (FAIL, ERROR) and not r.text)
    if not bare or time.monotonic() >= deadline:
        return
    with open(path, "w") as f:
        f.write("".join(t + "\n" for t in bare))
    argv = _regrtest_argv(setup, module, None)
    argv[-1:-1] = ["--matchfile", path]
    cap = runner(setup, argv, silence_s=setup.test_timeout, deadline=deadline)
    parsed = regrtest.parse(cap.output, set(bare))
    attempt = Attempt(cap.how, cap.status, round(cap.wall_s, 2), parsed.in_flight,
                      records_total=cap.records_total, purpose="failure text of " + ", ".join(
                          t.rsplit(".", 1)[-1] for t in bare[:5]) + (" ..." if len(bare) > 5 else ""))
    res.attempts.append(attempt)
    before = dict(res.evidence)
    _attribute(parsed, cap, res)
    for tid in bare:
        again = parsed.tests.get(tid)
        r = res.tests[tid]
        if again is not None and again.text:
            r.text, r.detail = again.text, again.detail
            if again.outcome != r.outcome:
                r.detail += f" (when run again alone it ended: {again.outcome})"
        if tid in before:
            res.evidence[tid] = before[tid]


def _ended(cap: Capture, parsed: ParsedRun) -> str:
    if cap.how == "silent":
        return f"no output for {cap.wall_s:.0f} s before any test finished"
    if cap.how == "deadline":
        return "the module's time limit was reached"
    if parsed.fatal:
        return parsed.fatal
    if cap.result and cap.result.get("signal_name"):
        return f"killed by {cap.result['signal_name']}"
    if cap.status is not None and cap.status > 128:
        return f"killed by {_signame(cap.status - 128)}"
    last = [ln for ln in cap.output.decode("utf-8", "replace").splitlines() if ln.strip()][-1:]
    return f"exited with status {cap.status} before finishing" + (f": {last[0].strip()[:300]}" if last else "")


def _signame(n: int) -> str:
    try:
        return signal.Signals(n).name
    except ValueError:
        return f"signal {n}"


def _where(frames: Sequence[tuple[str, int, str]]) -> tuple[str, str]:
    """(where a thread is, in words; the same without line numbers) from a
    faulthandler traceback (innermost frame first): the innermost frame, and
    the test's own frame that led there."""
    frames = [f for f in frames if "/unittest/" not in f[0]]
    if not frames:
        return "", ""
    file, line, func = frames[0]
    text = f" in {func} ({os.path.basename(file)}:{line})"
    key = f" in {func} ({os.path.basename(file)})"
    own = next((f for f in frames if f[2].startswith("test") or os.path.basename(f[0]).startswith("test_")),
               None)
    if own is not None and own != frames[0]:
        text += f", from {own[2]} ({os.path.basename(own[0])}:{own[1]})"
    return text, key


def _cut_short(parsed: ParsedRun, cap: Capture, setup: Setup) -> TestResult:
    """The outcome of the test that was running when the run was stopped or died."""
    where, key = _where(parsed.dump_frames)
    if cap.how in ("silent", "deadline"):
        detail = (f"hang: no output for {setup.test_timeout:.0f} s{where}" if cap.how == "silent"
                  else f"still running at the module's time limit{where}")
        return TestResult(HANG, detail, start=parsed.in_flight_start, key="hang" + key)
    how = _ended(cap, parsed)
    return TestResult(CRASH, f"crash: {how}{where}", start=parsed.in_flight_start,
                      key=f"crash: {how}{key}")


def _fill_missing(res: Side, universe: list[str] | None, skip: set[str]) -> None:
    """Tests of the module that printed nothing: their class's or module's
    fixture failed or skipped, the module was skipped or could not run."""
    for tid in universe or ():
        if tid in res.tests or tid in skip:
            continue
        why, outcome = None, MISSING
        for fixture, (kind, detail) in res.fixtures.items():
            name, _, owner = fixture.partition(" (")
            owner = owner.rstrip(")")
            if tid.startswith(owner + "."):
                why = f"{name} {'skipped' if kind == SKIP else 'failed'}: {detail}"
                outcome = SKIP if kind == SKIP else MISSING
                break
        if why is None and res.module_skipped:
            why, outcome = res.module_skipped, SKIP
        if why is None and res.module_error:
            why = f"the module did not run: {res.module_error}"
        if why is None and res.ended_early:
            why = f"not run: the run ended before it ({res.ended_early})"
        if why is None:
            why = "not run (no outcome printed)"
        res.tests[tid] = TestResult(outcome, why)


# ---------------------------------------------------------------------------
# What the guest saw while a test ran


def describe_audit(rec: dict) -> str:
    """One audit record as a line of evidence."""
    call = rec.get("call", "?")
    if call == "note_unsupported":
        from picoproc.abi.linux import SYSCALLS_BY_NR

        nr = rec.get("linux_nr")
        return f"{SYSCALLS_BY_NR.get(nr, f'syscall {nr}')}: ENOSYS (not handled by the library OS)"
    target = rec.get("uri") or rec.get("path") or ""
    how = "refused by the manifest" if rec.get("decision") == "deny" else "failed"
    return f"{call} {target}: {rec.get('errno_name') or rec.get('errno')} ({how})".replace("  ", " ")


def _attribute(parsed: ParsedRun, cap: Capture, res: Side) -> None:
    """Audit records made while each not-passing test ran become its evidence."""
    if not cap.records:
        return
    if cap.test_starts:
        _attribute_by_marks(parsed, cap, res)
        return
    # No marks (a runner without them): by when the test's lines arrived.
    times = [t for _, t in cap.arrivals]
    ends = [e for e, _ in cap.arrivals]
    records = sorted(cap.records, key=lambda r: r.get("time_ns", 0))
    rtimes = [r.get("time_ns", 0) for r in records]

    test_ends = sorted(r.end for r in parsed.tests.values() if r.end is not None)

    def chunk_of(offset: int) -> int:
        return bisect.bisect_left(ends, offset + 1)

    def arrival(k: int) -> int:
        return times[k] if k < len(times) else time.time_ns()

    def window(start: int | None, end: int | None) -> tuple[int, int]:
        # From the arrival of the previous test's last line to the arrival
        # of this test's last.  When this test's first line came in the same
        # read as the previous test's last, what happened before that read
        # may be either's: it is left to the previous test (a call shown
        # under the wrong test would be worse than one not shown).
        start = start or 0
        k = bisect.bisect_right(test_ends, start) - 1
        prev_end = test_ends[k] if k >= 0 else 0
        t0 = cap.started_ns if prev_end == 0 else arrival(chunk_of(prev_end - 1))
        if prev_end and chunk_of(prev_end - 1) == chunk_of(start):
            t0 = arrival(chunk_of(start))
        t1 = arrival(chunk_of(end - 1)) if end is not None else time.time_ns()
        return t0, t1

    items = [(tid, r.start, r.end) for tid, r in parsed.tests.items() if r.outcome not in (PASS, XFAIL)]
    if parsed.in_flight:
        items.append((parsed.in_flight, parsed.in_flight_start, None))
    for tid, start, end in items:
        t0, t1 = window(start, end)
        lo, hi = bisect.bisect_left(rtimes, t0), bisect.bisect_right(rtimes, t1)
        if hi > lo:
            res.evidence[tid] = _evidence(records[lo:hi])


BEFORE_THE_FIRST_TEST = "before the first test: "


def _evidence(records: Sequence[dict]) -> list[str]:
    seen = Counter(describe_audit(r) for r in records)
    # ENOSYS first: the most direct reason there is.
    lines = sorted(seen.items(), key=lambda kv: (0 if "ENOSYS (not handled" in kv[0] else 1, -kv[1]))
    return [text + (f" (x{n})" if n > 1 else "") for text, n in lines[:6]]


def _attribute_by_marks(parsed: ParsedRun, cap: Capture, res: Side) -> None:
    """The audit's marks of test starts cut it into tests: a call belongs to
    the test whose mark came last before it (a test's own calls and those of
    the processes it started; a test starts only after the last one ended)."""
    starts = sorted(cap.test_starts)
    times = [t for t, _ in starts]
    records = sorted(cap.records, key=lambda r: r.get("time_ns", 0))
    rtimes = [r.get("time_ns", 0) for r in records]
    wanted = {tid for tid, r in parsed.tests.items() if r.outcome not in (PASS, XFAIL)}
    if parsed.in_flight:
        wanted.add(parsed.in_flight)
    by_test: dict[str, list[dict]] = {}
    for k, (t0, marked) in enumerate(starts):
        tid = next((w for w in wanted if w[:200] == marked), None)
        if tid is None:
            continue
        t1 = times[k + 1] if k + 1 < len(times) else 1 << 63
        lo, hi = bisect.bisect_left(rtimes, t0), bisect.bisect_left(rtimes, t1)
        by_test.setdefault(tid, []).extend(records[lo:hi])
    for tid, recs in by_test.items():
        if recs:
            res.evidence[tid] = _evidence(recs)
    # A test skipped for want of a feature often decided so at import, before
    # any test started (skipUnless(can_use_pidfd())): show the calls that
    # failed then, as such; they do not name its reason (reason_key).
    early = [r for r in records[:bisect.bisect_left(rtimes, times[0])] if r.get("call") == "note_unsupported"]
    if early:
        lines = [f"{BEFORE_THE_FIRST_TEST}{e}" for e in _evidence(early)]
        for tid in wanted:
            r = parsed.tests.get(tid)
            if r is not None and r.outcome == SKIP and tid not in res.evidence:
                res.evidence[tid] = lines


# ---------------------------------------------------------------------------
# Comparison


# How a test's two outcomes compare.
BOTH_PASS, BOTH_SKIP, BOTH_FAIL = "pass_both", "skip_both", "fail_both"
NATIVE_BROKEN = "native_broken"  # hung or crashed natively: not counted
REGRESSED = "regressed"  # passes natively, not inside
IMPROVED = "improved"  # does not pass natively, passes inside
OTHER = "other"  # neither passes, differently (e.g. skipped natively, fails inside)


def compare_outcomes(native: str, guest: str) -> str:
    if native in (HANG, CRASH):
        return NATIVE_BROKEN
    if native in GOOD and guest in GOOD:
        return BOTH_PASS
    if native == SKIP and guest == SKIP:
        return BOTH_SKIP
    if native in GOOD:
        return REGRESSED
    if guest in GOOD:
        return IMPROVED
    if native == guest or (native != SKIP and guest != SKIP and guest not in (HANG, CRASH, MISSING)):
        return BOTH_FAIL
    return OTHER


def module_doc(module: str, native: Side, guest: Side | None, universe: list[str] | None) -> dict:
    """The JSON of one module: counts, and every test whose outcomes differ."""
    doc: dict = {"module": module, "listed": len(universe) if universe else None,
                 "native": _side_doc(native), "guest": _side_doc(guest) if guest else None}
    if native.module_error and not native.tests:
        doc["native_broken"] = native.module_error
    if guest is None:
        return doc
    ids = sorted(set(native.tests) | set(guest.tests))
    counts: Counter = Counter()
    diffs = []
    broken = []
    for tid in ids:
        n = native.tests.get(tid, TestResult(MISSING, "not run natively"))
        g = guest.tests.get(tid)
        if g is None:
            g = TestResult(MISSING, "not run inside: it hangs or crashes natively") \
                if n.outcome in (HANG, CRASH) else TestResult(MISSING, "not run inside")
        kind = compare_outcomes(n.outcome, g.outcome)
        counts[kind] += 1
        if kind == NATIVE_BROKEN:
            broken.append({"test": tid, "native": n.outcome, "detail": regrtest.describe_text(n.detail)})
        elif kind in (REGRESSED, IMPROVED, OTHER):
            diffs.append({"test": tid, "kind": kind, "native": n.outcome,
                          "native_detail": regrtest.describe_text(n.detail),
                          "guest": g.outcome, "detail": regrtest.describe_text(g.detail),
                          "text": regrtest.describe_text(g.text),
                          "evidence": guest.evidence.get(tid, []),
                          "reason": reason_key(g, guest.evidence.get(tid, []))})
    doc["counts"] = dict(counts)
    doc["passes_natively"] = sum(1 for t in native.tests.values() if t.outcome in GOOD)
    doc["passes_both"] = counts[BOTH_PASS]
    doc["differences"] = diffs
    doc["native_broken_tests"] = broken
    return doc


def _side_doc(side: Side) -> dict:
    doc = {"counts": side.counts(), "wall_s": round(side.wall_s, 1),
           "attempts": [a.to_json() for a in side.attempts]}
    if side.module_skipped:
        doc["module_skipped"] = side.module_skipped
    if side.module_error:
        doc["module_error"] = regrtest.describe_text(side.module_error)
    if side.ended_early:
        doc["ended_early"] = regrtest.describe_text(side.ended_early)
    return doc


def reason_key(result: TestResult, evidence: Sequence[str]) -> str:
    """A short, stable name for why a test did not pass inside, so that the
    tests failing for one reason are counted together."""
    import re

    unsupported = [e.split(":", 1)[0] for e in evidence
                   if "ENOSYS (not handled" in e and not e.startswith(BEFORE_THE_FIRST_TEST)]
    if unsupported:
        return f"{unsupported[0]}: ENOSYS (not handled by the library OS)"
    detail = regrtest.describe_text(result.detail or "")
    if result.outcome in (HANG, CRASH):
        return result.key or re.sub(r":\d+\)", ")", detail)
    if result.outcome == SKIP:
        return "skipped inside: " + _normalise(detail)
    if result.outcome == MISSING:
        return _normalise(detail)
    return _normalise(detail) or result.outcome


def _normalise(line: str) -> str:
    import re

    line = line.strip()
    m = re.match(r"^([\w.]+): \[Errno (\d+)\] ([^:'\"]+)", line)
    if m:
        return f"{m.group(1)}: [Errno {m.group(2)}] {m.group(3).strip()}"
    line = re.sub(r"0x[0-9a-fA-F]+", "0x...", line)
    line = re.sub(r"'[^']*'", "'...'", line)
    line = re.sub(r'"[^"]*"', '"..."', line)
    line = re.sub(r"\b\d+(\.\d+)?\b", "N", line)
    return line[:160]


# ---------------------------------------------------------------------------
# The whole comparison


def compare_module(setup: Setup, module: str, out_dir: str | None = None,
                   note: Callable[[str], None] | None = None) -> dict:
    """Lists, runs natively, runs inside (without the tests that are broken
    natively), compares."""
    t0 = time.monotonic()
    universe = list_cases(setup, module)
    native = run_side(setup, "native", module, universe, out_dir=out_dir)
    if note:
        note(f"{module} native: {_counts_text(native)} ({native.wall_s:.0f} s)")
    if native.module_error and not native.tests:
        doc = module_doc(module, native, None, universe)
        doc["wall_s"] = round(time.monotonic() - t0, 1)
        return doc
    broken = {t for t, r in native.tests.items() if r.outcome in (HANG, CRASH)}
    guest = run_side(setup, "guest", module, universe, skip=broken, out_dir=out_dir)
    doc = module_doc(module, native, guest, universe)
    doc["wall_s"] = round(time.monotonic() - t0, 1)
    if note:
        note(f"{module} inside: {_counts_text(guest)} ({guest.wall_s:.0f} s); passes natively "
             f"{doc['passes_natively']}, inside too {doc['passes_both']}")
    return doc


def _counts_text(side: Side) -> str:
    c = side.counts()
    text = ", ".join(f"{c[k]} {k}" for k in regrtest.OUTCOMES if c.get(k))
    if side.module_error and not side.tests:
        text = f"did not run: {regrtest.describe_text(side.module_error)}"
    return text or "no tests"


def check_prerequisites(python: str = PYTHON) -> str | None:
    """Why the comparison cannot run here, or None."""
    if not os.access(python, os.X_OK):
        return f"{python} is not installed"
    # Found, not imported: importing test_os writes files in the working directory.
    probe = subprocess.run([python, "-c", "import importlib.util, test.libregrtest; "
                            "assert importlib.util.find_spec('test.test_os')"], capture_output=True,
                           timeout=60, check=False, cwd="/")
    if probe.returncode:
        return (f"CPython's regression tests are not installed for {python} "
                "(Debian: libpython3.11-testsuite)")
    return None


def _git_commit() -> str | None:
    here = pathlib.Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "-C", str(here), "rev-parse", "--short=12", "HEAD"], capture_output=True,
                             text=True, timeout=10, check=False)
    except OSError:
        return None
    return out.stdout.strip() or None


def run_compat(modules: Sequence[str], *, jobs: int = 2, progress=sys.stderr, out_dir: str | None = None,
               test_timeout: float = TEST_TIMEOUT_S, module_timeout: float = MODULE_TIMEOUT_S,
               python: str = PYTHON, work_base: str | None = None, testdir: str | None = None) -> dict:
    """Every module natively and inside (``jobs`` modules at a time); the
    JSON document of the comparison.  ``out_dir``: keep every run's output
    there.  Progress: one line per side of a module on ``progress``."""
    from picoproc import __version__

    from ..perf.machine import describe_machine
    from ..progress import Progress

    problem = check_prerequisites(python)
    if problem:
        raise RuntimeError(problem)
    if work_base is None:
        # Not under /tmp: both sides have a private /tmp of their own.
        work_base = "/var/tmp" if os.path.isdir("/var/tmp") else os.getcwd()
    work = tempfile.mkdtemp(prefix="picoproc-compat-", dir=work_base)
    os.chmod(work, 0o755)  # the guest identity reads the ignore files
    t0 = time.monotonic()
    pr = Progress(2 * len(modules), progress)
    lock = threading.Lock()
    try:
        setup = make_setup(work, test_timeout=test_timeout, module_timeout=module_timeout, python=python,
                           testdir=testdir)
        version = subprocess.run([python, "-c", "import platform; print(platform.python_version())"],
                                 capture_output=True, text=True, timeout=60, check=False).stdout.strip()
        pr.note(f"picoproc bench compat: {len(modules)} modules, {jobs} at a time, as uid "
                f"{setup.identity['uid']} ({setup.identity['why']}); a test hangs after "
                f"{test_timeout:.0f} s without output")

        def note(text: str) -> None:
            with lock:
                pr.step(text)

        def one(module: str) -> dict:
            try:
                doc = compare_module(setup, module, out_dir=out_dir, note=note)
            except Stopped:
                raise
            except Exception as exc:  # a harness or start-up failure: the others go on
                note(f"{module}: the comparison failed: {exc!r}")
                return {"module": module, "error": repr(exc)}
            if doc.get("guest") is None:
                note(f"{module}: not run inside (broken natively)")
            return doc

        order = sorted(modules, key=lambda m: -EXPECTED_SECONDS.get(m, 10))
        pool = concurrent.futures.ThreadPoolExecutor(max(1, jobs))
        try:
            done = dict(zip(order, pool.map(one, order)))
        except BaseException:
            # Ctrl-C reaches this thread only: stop the workers' runs too.
            setup.stop.set()
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        return {
            "schema": SCHEMA,
            "machine": describe_machine(),
            "python": {"path": python, "version": version},
            "picoproc": {"version": __version__, "commit": _git_commit()},
            "identity": setup.identity,
            "grants": setup.grants,
            "env": dict(setup.manifest.env),
            "jobs": jobs,
            "test_timeout_s": test_timeout,
            "module_timeout_s": module_timeout,
            "elapsed_s": round(time.monotonic() - t0, 1),
            "modules": [done[m] for m in modules],
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)
