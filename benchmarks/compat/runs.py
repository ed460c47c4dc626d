"""One run of a program natively or inside a picoprocess, the two
environments it runs in.

* Natively through ``launch.py``: the guest's identity, environment, working
  directory, hostname, private scratch tmpfs, a network namespace with its
  own loopback, and (where a cgroup can be made) the guest's memory and
  process-count limits.
* Inside through ``picoproc run --manifest M`` (the default manifest plus
  ``GRANTS``), its audit streamed through a pipe and its ``--json`` result kept.

Both run ``/bin/sh -c 'exec "$@" 2>&1'`` first, so stderr joins stdout inside
the run and the order of lines is the program's.
"""

from __future__ import annotations

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
from collections.abc import Callable, Sequence

from picoproc.errors import PicoprocError

from . import regrtest
from .evidence import interesting

PYTHON = "/usr/bin/python3"
LAUNCHER = pathlib.Path(__file__).resolve().parent / "launch.py"
MARKED_RUNNER = pathlib.Path(__file__).resolve().parent / "regrtest_marked.py"

TEST_TIMEOUT_S = 120.0  # no output for this long: the running test hangs
MODULE_TIMEOUT_S = 1800.0  # one side of one module, restarts included
DUMP_WAIT_S = 5.0  # for the traceback a hung run prints on SIGUSR1
STOP_TIMEOUT_S = 5  # picoproc run --stop-timeout: SIGTERM, then SIGKILL
EXIT_WAIT_S = 20.0  # for a stopped run to exit and close its output
_MAX_RECORDS_KEPT = 50_000  # per run: the audit records kept for explaining failures

# What the guest is granted beyond the default manifest, and why, as
# ({apply_overrides keyword: [values]}, reason); the native side gets the
# same (launch.py), so a grant is never a difference.  None is needed for
# the default modules: natively, with the default 64 MiB /tmp and /dev/shm,
# 1 GiB of memory and 256 processes, they pass as they do with a 1 GiB /tmp.
GRANTS: tuple[tuple[dict, str], ...] = ()


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
# One run of a program


@dataclasses.dataclass
class Capture:
    output: bytes
    how: str  # "exited", "silent" (stopped: no output for too long), "deadline"
    status: int | None  # the shell's: exit code, or 128+N for signal N
    wall_s: float
    result: dict | None = None  # the guest's: picoproc's --json result
    records: list[dict] = dataclasses.field(default_factory=list)  # audit records worth showing
    records_total: int = 0
    test_starts: list[tuple[int, str]] = dataclasses.field(default_factory=list)  # (time_ns, test id)


class Stopped(PicoprocError):
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
    t0 = time.monotonic()
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, env=env, start_new_session=True,
                            pass_fds=tuple(pass_fds))
    for fd in pass_fds:
        os.close(fd)
    out = bytearray()
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
                        elif interesting(rec) and len(records) < _MAX_RECORDS_KEPT:
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
    return Capture(bytes(out), how, 128 - rc if rc < 0 else rc, time.monotonic() - t0,
                   records=records, records_total=total, test_starts=starts)


def regrtest_argv(setup: Setup, module: str, ignore_file: str | None) -> list[str]:
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
