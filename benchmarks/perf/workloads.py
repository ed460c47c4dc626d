"""The measurements: call classes, start-up, applications, scale.

Every measurement runs one backend at a time through one interface
(:class:`BackendRunner`): picoproc through its Python API (``Sandbox``, one
shared monitor for the whole suite), the peers through ``Backend.run``.  All
of them get the same manifest: the embedded default plus the suite's work
directory mounted read-only at the same path (identity, so that the
path-checking peers can express it too).  Programs write only into the
manifest's scratch ``/tmp``.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import random
import resource
import secrets
import selectors
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence

from . import stats

# Peers whose every system call leaves the process (a ptrace stop, a gVisor
# Sentry round trip): they get fewer batches and repetitions so that a run
# finishes in minutes, which their spread reflects.
SLOW_BACKENDS = frozenset({"gvisor", "ptrace"})

CALL_CLASSES = ("getppid", "uname", "getcwd", "uname_trap", "openclose", "stat", "read4k")
CALL_CLASS_KIND = {"getppid": "direct", "uname": "emulated", "getcwd": "emulated", "uname_trap": "emulated",
                   "openclose": "mediated", "stat": "mediated", "read4k": "direct"}
CALL_CLASS_LABEL = {"getppid": "getppid", "uname": "uname", "getcwd": "getcwd",
                    "uname_trap": "uname via syscall(2)",
                    "openclose": "open+close", "stat": "stat", "read4k": "read 4 KiB"}

RUN_TIMEOUT_S = 600.0


@dataclasses.dataclass
class Outcome:
    """One run of one program under one backend."""

    ok: bool
    status: int
    wall_s: float  # measured here, around the whole call (spawn to reap)
    stdout: bytes
    stderr: bytes
    why: str | None = None  # set when not ok: one line
    mediated_calls: int | None = None  # pico only: calls the monitor served for this run

    def fail_reason(self) -> str:
        return self.why or "failed"


@dataclasses.dataclass
class Profile:
    """How much to measure: the quick profile (CI smoke, < 2 min on
    native+pico) or the full one (docs/PERFORMANCE.md)."""

    name: str
    call_target_ns: int  # length of one batch of calls
    call_rounds: int  # runs of the call-class guest per backend, round-robin; batches are split over them
    call_batches: int
    call_batches_slow: int
    startup_runs: int
    startup_runs_slow: int
    cli_runs: int
    exec_runs: int  # rounds of the exec-inside loops (each: a loop of EXEC_LOOP and of 1 exec per backend)
    app_runs: int
    app_runs_slow: int
    sqlite_rows: int
    tar_files: int
    gcc_functions: int
    scale_ns: tuple[int, ...]
    scale_calls: int  # per client
    scale_runs: int = 1  # runs of each client count, interleaved over the backends


QUICK = Profile("quick", call_target_ns=2_000_000, call_rounds=1, call_batches=7, call_batches_slow=3,
                startup_runs=8, startup_runs_slow=3, cli_runs=3, exec_runs=2, app_runs=2, app_runs_slow=1,
                sqlite_rows=5_000, tar_files=40, gcc_functions=40, scale_ns=(1, 8, 32),
                scale_calls=1_000, scale_runs=1)
FULL = Profile("full", call_target_ns=10_000_000, call_rounds=3, call_batches=21, call_batches_slow=7,
               startup_runs=40, startup_runs_slow=10, cli_runs=10, exec_runs=7, app_runs=7, app_runs_slow=3,
               sqlite_rows=50_000, tar_files=400, gcc_functions=150, scale_ns=(1, 8, 32),
               scale_calls=20_000, scale_runs=3)


def scaled(profile: Profile, factor: float) -> Profile:
    """``profile`` with every repetition count multiplied by ``factor`` (at
    least one of each): the smoke test runs the plumbing with tiny counts."""
    def n(x: int) -> int:
        return max(1, int(x * factor))

    return dataclasses.replace(
        profile, name=f"{profile.name}x{factor:g}", call_target_ns=n(profile.call_target_ns),
        call_rounds=n(profile.call_rounds),
        call_batches=n(profile.call_batches), call_batches_slow=n(profile.call_batches_slow),
        startup_runs=n(profile.startup_runs), startup_runs_slow=n(profile.startup_runs_slow),
        cli_runs=n(profile.cli_runs), exec_runs=n(profile.exec_runs), app_runs=n(profile.app_runs), app_runs_slow=n(profile.app_runs_slow),
        sqlite_rows=n(profile.sqlite_rows), tar_files=n(profile.tar_files),
        gcc_functions=n(profile.gcc_functions), scale_calls=max(10, n(profile.scale_calls)),
        scale_runs=n(profile.scale_runs))


# ---------------------------------------------------------------------------
# The work directory: guests and inputs, mounted read-only in every backend.


def make_workdir(profile: Profile) -> pathlib.Path:
    """A fresh directory outside /tmp (which every sandbox replaces with its
    scratch) holding the guests and generated inputs, readable by the
    unprivileged guest identity."""
    base = os.environ.get("PICOPROC_PERF_WORKDIR", "/var/tmp")
    if not os.path.isdir(base):
        raise RuntimeError(f"work directory base {base} does not exist (set PICOPROC_PERF_WORKDIR)")
    import tempfile

    from .guests import install_guests

    work = pathlib.Path(tempfile.mkdtemp(prefix="picoproc-perf-", dir=base))
    os.chmod(work, 0o755)
    install_guests(work / "bin")
    data = work / "data"
    data.mkdir()
    (data / "file").write_bytes(random.Random(7).randbytes(64 * 1024))
    _write_sqlite_script(work / "inserts.sql", profile.sqlite_rows)
    _write_tree(work / "tree", profile.tar_files)
    _write_c_program(work / "prog.c", profile.gcc_functions)
    for path in [work, *work.rglob("*")]:
        os.chmod(path, 0o755 if path.is_dir() or path.parent.name == "bin" else 0o644)
    return work


def _write_sqlite_script(path: pathlib.Path, rows: int) -> None:
    # synchronous=OFF and an in-memory journal: the scratch of each backend
    # lives on different storage (host disk for native, tmpfs elsewhere);
    # without fsync the workload measures the sandbox, not the disk.
    rng = random.Random(11)
    lines = ["PRAGMA synchronous=OFF;", "PRAGMA journal_mode=MEMORY;", "BEGIN;",
             "CREATE TABLE item(id INTEGER PRIMARY KEY, name TEXT NOT NULL, qty INTEGER, price REAL);"]
    for i in range(rows):
        name = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(12))
        lines.append(f"INSERT INTO item(name, qty, price) VALUES('{name}', {rng.randint(0, 999)}, "
                     f"{rng.random() * 100:.2f});")
    lines += ["COMMIT;", "CREATE INDEX item_name ON item(name);",
              "SELECT count(*), sum(qty) FROM item;"]
    path.write_text("\n".join(lines) + "\n")


def _write_tree(root: pathlib.Path, files: int) -> None:
    rng = random.Random(13)
    words = [bytes(rng.choice(b"abcdefghij klmnop\n") for _ in range(16)) for _ in range(64)]
    for i in range(files):
        d = root / f"d{i % 8}" / f"e{i % 3}"
        d.mkdir(parents=True, exist_ok=True)
        # Compressible text (like sources), 8 KiB per file.
        (d / f"f{i}.txt").write_bytes(b"".join(rng.choice(words) for _ in range(512)))


def _write_c_program(path: pathlib.Path, functions: int) -> None:
    out = ["#include <stdio.h>", "#include <string.h>", ""]
    for i in range(functions):
        out.append(f"static unsigned f{i}(const char *s, unsigned k) {{ unsigned h = {i}u + k;"
                   f" for (size_t j = 0; j < strlen(s); j++) h = h * 31u + (unsigned)s[j] + (h >> {i % 7 + 1});"
                   f" return h ^ (k << {i % 5}); }}")
    out.append("int main(int argc, char **argv) { unsigned h = 0; const char *s = argc > 1 ? argv[1] : \"x\";")
    out += [f"  h += f{i}(s, h);" for i in range(functions)]
    out.append('  printf("%u\\n", h); return 0; }')
    path.write_text("\n".join(out) + "\n")


def suite_manifest(work: pathlib.Path):
    from picoproc.manifest import apply_overrides, default_manifest

    return apply_overrides(default_manifest(), volumes=[f"{work}:{work}:ro"])


# ---------------------------------------------------------------------------
# Running one program under one backend.


class BackendRunner:
    """Runs programs under one backend with one manifest; picoproc through
    its Sandbox API (the shared monitor), the peers through Backend.run."""

    def __init__(self, name: str, manifest) -> None:
        self.name = name
        self.manifest = manifest
        if name == "pico":
            from picoproc.api import Sandbox

            self._sandbox = Sandbox(manifest)
        else:
            from picoproc.backends import get_backend

            self._backend = get_backend(name)

    def run(self, argv: Sequence[str], timeout: float = RUN_TIMEOUT_S) -> Outcome:
        t0 = time.perf_counter()
        try:
            if self.name == "pico":
                r = self._sandbox.run(list(argv), capture=True, timeout=timeout)
                wall = time.perf_counter() - t0
                status, out, err = r.status, r.stdout or b"", r.stderr or b""
                timed_out = r.limit == "wall_time"
                why_end = r.reason
                mediated = r.calls.get("mediated")
            else:
                r = self._backend.run(self.manifest, list(argv), capture=True, timeout=timeout)
                wall = time.perf_counter() - t0
                status, out, err = r.status, r.stdout or b"", r.stderr or b""
                timed_out = r.timed_out
                why_end = f"exit status {status}"
                mediated = None
        except Exception as exc:  # noqa: BLE001 -- a backend that cannot run this is a result, not a crash
            return Outcome(False, -1, time.perf_counter() - t0, b"", b"",
                           f"{type(exc).__name__}: {_one_line(str(exc))}")
        if timed_out:
            return Outcome(False, status, wall, out, err, f"timed out after {timeout:g} s")
        if status != 0:
            return Outcome(False, status, wall, out, err, f"{why_end}: {_last_line(err) or _last_line(out)}")
        return Outcome(True, status, wall, out, err, mediated_calls=mediated)


def _one_line(text: str, limit: int = 160) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _last_line(data: bytes) -> str:
    lines = [ln for ln in data.decode("utf-8", "replace").splitlines() if ln.strip()]
    return _one_line(lines[-1]) if lines else ""


# ---------------------------------------------------------------------------
# Call classes.


def parse_callclass_output(text: str) -> dict:
    """The guest's lines -> {"vdso": bool, class: {"iters": n, "per_call_ns": [...]}}."""
    doc: dict = {}
    for line in text.splitlines():
        fields = dict(kv.split("=", 1) for kv in line.split() if "=" in kv)
        if "vdso" in fields:
            doc["vdso"] = fields["vdso"] == "1"
        elif "class" in fields:
            batches = [int(x) / 1000.0 for x in fields["ps"].split(",") if x]
            doc[fields["class"]] = {"iters": int(fields["iters"]), "per_call_ns": batches}
    return doc


def run_call_classes_once(runner: BackendRunner, work: pathlib.Path, profile: Profile, batches: int) -> dict:
    """One run of the call-class guest: {"vdso", class: {"iters", "per_call_ns"}} and "error" if it failed."""
    argv = [str(work / "bin" / "callclass"), str(work / "data" / "file"), str(profile.call_target_ns),
            str(batches), *CALL_CLASSES]
    outcome = runner.run(argv)
    parsed = parse_callclass_output(outcome.stdout.decode("utf-8", "replace"))
    if not outcome.ok:
        parsed["error"] = outcome.fail_reason()
    return parsed


def measure_call_classes(names: Sequence[str], runners: dict[str, BackendRunner], work: pathlib.Path,
                         profile: Profile, progress: Callable[[str], None] | None = None,
                         floor_out: dict | None = None) -> dict:
    """Per backend and class: median/p10/p90 of the batches' per-call ns, or
    an error.  The guest runs ``profile.call_rounds`` times per backend,
    round-robin over the backends (each run calibrates again and adds its
    batches), so a burst of other load cannot land on one backend only.
    With ``floor_out`` (a dict), the kernel's floor (picoproc.bench.perf.floor)
    is measured in every round too, after the backends, and its summary is
    put there."""
    batches: dict[str, dict[str, list[float]]] = {n: {c: [] for c in CALL_CLASSES} for n in names}
    iters: dict[str, dict[str, int]] = {n: {} for n in names}
    vdso: dict[str, bool | None] = {n: None for n in names}
    errors: dict[str, str] = {}
    floor_batches: dict[str, list[float]] = {}
    floor_error = None
    floor_bin = None
    if floor_out is not None:
        from . import floor

        try:
            floor_bin = floor.floor_binary()
        except (OSError, subprocess.CalledProcessError) as exc:
            floor_error = f"notif_floor does not build: {exc}"
    for r in range(profile.call_rounds):
        for n in names:
            if n in errors:
                continue
            per_round = max(1, (profile.call_batches_slow if n in SLOW_BACKENDS else profile.call_batches)
                            // profile.call_rounds)
            t = time.monotonic()
            parsed = run_call_classes_once(runners[n], work, profile, per_round)
            vdso[n] = parsed.get("vdso", vdso[n])
            for cls in CALL_CLASSES:
                if cls in parsed:
                    batches[n][cls] += parsed[cls]["per_call_ns"]
                    iters[n][cls] = parsed[cls]["iters"]
            if "error" in parsed:
                errors[n] = parsed["error"]
            if progress:
                progress(f"call classes round {r + 1}/{profile.call_rounds} x {n}: "
                         + (f"FAILED: {errors[n]}" if n in errors else "done") + f" in {time.monotonic() - t:.1f} s")
        if floor_bin is not None and floor_error is None:
            t = time.monotonic()
            parsed = floor.run_floor_once(floor_bin, str(work / "data" / "file"), profile.call_target_ns,
                                          max(1, profile.call_batches // profile.call_rounds))
            for row, v in parsed.items():
                if isinstance(v, dict):
                    floor_batches.setdefault(row, []).extend(v["per_call_ns"])
            floor_error = parsed.get("error")
            if progress:
                progress(f"call classes round {r + 1}/{profile.call_rounds} x kernel floor: "
                         + (f"FAILED: {floor_error}" if floor_error else "done") + f" in {time.monotonic() - t:.1f} s")
    if floor_out is not None:
        floor_out.update(floor.summarise(floor_batches, floor_error))
    out = {}
    for n in names:
        result: dict = {"vdso": vdso[n], "classes": {}}
        for cls in CALL_CLASSES:
            # The guest stops at the first class whose call fails: the
            # classes it reached keep their numbers, the rest get the error.
            if batches[n][cls] and not (n in errors and cls not in iters[n]):
                s = stats.summary(batches[n][cls])
                s["iters"] = iters[n][cls]
                result["classes"][cls] = s
            else:
                result["classes"][cls] = {"error": errors.get(n, "no output")}
        if n in errors:
            result["error"] = errors[n]
        out[n] = result
    return out


# ---------------------------------------------------------------------------
# Start-up.


def run_true(runner: BackendRunner) -> Outcome:
    """One spawn-to-exit of /bin/true."""
    return runner.run(["/bin/true"])


def picoproc_cli() -> list[str]:
    """How to start the ``picoproc`` command of this installation: the
    console script beside this interpreter (a virtual environment's), else
    the one on PATH, else ``python -m picoproc``.  (A ``picoproc`` found on
    PATH first may be another installation, or a version manager's shim.)"""
    beside = os.path.join(os.path.dirname(sys.executable), "picoproc")
    if os.access(beside, os.X_OK):
        return [beside]
    script = shutil.which("picoproc")
    return [script] if script else [sys.executable, "-m", "picoproc"]


def _cli_interpreter(cmd: list[str]) -> str:
    """The Python interpreter the CLI command runs on: the one on the first
    line of the console script installed beside it (the ``picoproc`` command
    itself is a shell launcher that starts that one: sandbox/bin/picoproc),
    else on its own first line, else this one."""
    if cmd[0] == sys.executable:
        return sys.executable
    for script in (os.path.join(os.path.dirname(cmd[0]), "picoproc-oci"), cmd[0]):
        try:
            with open(script, "rb") as f:
                first = f.readline()
        except OSError:
            continue
        interp = first[2:].split() if first.startswith(b"#!") else []
        if interp and b"python" in os.path.basename(interp[0]) and os.path.isabs(interp[0].decode()):
            return interp[0].decode()
    return sys.executable


def measure_startup_cli(backend: str, runs: int) -> dict:
    """``picoproc run --backend B -- /bin/true`` as a subprocess: includes the
    CLI's own Python start-up and imports, which a user pays per run; with
    the interpreter's own start-up interleaved, its floors: ``python -c
    pass`` (with the site module, and so the .pth hooks of site-packages,
    which is how a console script starts) and ``python -S -c pass`` (without,
    which is how the ``picoproc`` command starts its interpreter).  Wall
    and CPU time (the child's, from its rusage).  Bytecode is cached as an
    installed package has it (the first, untimed round writes it when the
    environment says not to)."""
    cmd = [*picoproc_cli(), "run", "--backend", backend, "--", "/bin/true"]
    interp = _cli_interpreter(cmd)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    kinds = {"ms": cmd, "interpreter_ms": [interp, "-c", "pass"],
             "interpreter_nosite_ms": [interp, "-S", "-c", "pass"]}
    wall: dict[str, list[float]] = {k: [] for k in kinds}
    cpu: dict[str, list[float]] = {k: [] for k in kinds}
    for i in range(runs + 1):
        for kind, argv in kinds.items():
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            t0 = time.perf_counter()
            try:
                p = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=RUN_TIMEOUT_S,
                                   check=False, env=env)
            except subprocess.TimeoutExpired:
                return {"error": f"{' '.join(argv)}: timed out after {RUN_TIMEOUT_S:g} s"}
            elapsed = time.perf_counter() - t0
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            if p.returncode != 0:
                return {"error": f"{' '.join(argv)}: exit status {p.returncode}: {_last_line(p.stderr)}"}
            if i:  # the first round warms the page cache and writes bytecode
                wall[kind].append(elapsed * 1000.0)
                cpu[kind].append((after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime) * 1000.0)
    out: dict = {kind: stats.summary(wall[kind]) for kind in kinds}
    out.update({f"cpu_{kind}": stats.summary(cpu[kind]) for kind in kinds})
    out["command"] = " ".join(cmd)
    return out


# Exec inside a running sandbox: a shell loop that runs the program
# EXEC_LOOP times, minus the same loop running it once, per exec: the
# marginal cost of an exec (the loader, its mediated opens, the dynamic
# loader's) without the sandbox's own start-up.
EXEC_LOOP = 41
EXEC_BACKENDS = ("native", "pico")
# The floor under it, measured with the same loops natively through
# benchmarks/floor/exec_floor.c (it describes both): the loop under a filter
# that allows everything, and under one that sends every call naming a file
# to a supervisor answering at once.  Keys of the result next to the backends'.
EXEC_FLOORS = {"filtered": "seccomp filter", "notified": "kernel floor"}
EXEC_FLOOR_SOURCE = pathlib.Path(__file__).resolve().parent.parent / "floor" / "exec_floor.c"


class ExecFloorRunner:
    """Runs a program natively (the native runner: same environment and
    working directory) under exec_floor in one mode."""

    def __init__(self, mode: str, native: BackendRunner, binary: pathlib.Path) -> None:
        self.mode, self._native, self._binary = mode, native, binary

    def run(self, argv: Sequence[str], timeout: float = RUN_TIMEOUT_S) -> Outcome:
        o = self._native.run([str(self._binary), self.mode, "--", *argv], timeout)
        for line in o.stderr.decode("ascii", "replace").splitlines():
            if line.startswith("notifications="):
                o.mediated_calls = int(line.split("=", 1)[1])
        return o


def exec_inside_programs(manifest) -> dict[str, list[str]]:
    python3 = _guest_program("python3", manifest)
    progs = {"/bin/true": ["/bin/true"]}
    if python3:
        progs["python3 -c pass"] = [python3, "-c", "pass"]
    return progs


def _exec_loop(sh: str, argv: Sequence[str], n: int) -> list[str]:
    import shlex

    cmd = " ".join(shlex.quote(a) for a in argv)
    return [sh, "-c", f"i=0; while [ $i -lt {n} ]; do {cmd} || exit 3; i=$((i+1)); done"]


def measure_exec_inside(names: Sequence[str], runners: dict[str, BackendRunner], manifest, runs: int,
                        progress: Callable[[str], None] | None = None) -> dict:
    """{program: {backend or floor: {"ms": marginal ms per exec, "loop_ms",
    "once_ms", "ratio" (to native), "calls_per_exec"?}}}, loops interleaved
    over the backends and the floors round by round; pico's entry also has
    "floor_ratio" (to the kernel floor)."""
    sh = _guest_program("sh", manifest)
    if not sh:
        return {"error": "no sh on the manifest's PATH"}
    runners = dict(runners)
    backends = [n for n in EXEC_BACKENDS if n in names]
    floor_error = None
    if "native" in names:
        try:
            from picoproc.bench.bench_floor import build

            binary = build(EXEC_FLOOR_SOURCE)
            for mode in EXEC_FLOORS:
                runners[mode] = ExecFloorRunner(mode, runners["native"], binary)
                backends.append(mode)
        except (OSError, subprocess.CalledProcessError) as exc:
            floor_error = f"exec_floor not built: {_one_line(str(exc))}"
    out: dict = {}
    for label, argv in exec_inside_programs(manifest).items():
        long = {n: [] for n in backends}
        once = {n: [] for n in backends}
        calls = {n: ([], []) for n in backends}
        failed: dict[str, str] = {}
        for r in range(runs):
            for n in backends:
                if n in failed:
                    continue
                for loops, into, counted in ((EXEC_LOOP, long, calls[n][0]), (1, once, calls[n][1])):
                    o = runners[n].run(_exec_loop(sh, argv, loops))
                    if not o.ok:
                        failed[n] = "fails: " + o.fail_reason()
                        break
                    into[n].append(o.wall_s * 1000.0)
                    if o.mediated_calls is not None:
                        counted.append(o.mediated_calls)
            if progress:
                progress(f"exec inside ({label}) round {r + 1}/{runs}: "
                         + ", ".join(f"{n} {long[n][-1]:.0f}/{once[n][-1]:.1f} ms" if n not in failed
                                     else f"{n} FAILED" for n in backends))
        entry = {}
        for n in backends:
            if n in failed:
                entry[n] = {"error": failed[n]}
                continue
            lm, om = stats.percentile(long[n], 50), stats.percentile(once[n], 50)
            entry[n] = {"ms": (lm - om) / (EXEC_LOOP - 1), "loop_ms": stats.summary(long[n]),
                        "once_ms": stats.summary(once[n])}
            many, one = calls[n]
            if many and one:
                entry[n]["calls_per_exec"] = (stats.percentile(many, 50) - stats.percentile(one, 50)) / (EXEC_LOOP - 1)
        base = entry.get("native", {}).get("ms")
        for e in entry.values():
            if "ms" in e:
                e["ratio"] = stats.ratio(e["ms"], base)
        if "ms" in entry.get("pico", {}) and "ms" in entry.get("notified", {}):
            entry["pico"]["floor_ratio"] = stats.ratio(entry["pico"]["ms"], entry["notified"]["ms"])
        if floor_error:
            entry["notified"] = {"error": floor_error}
        out[label] = entry
    return out


# ---------------------------------------------------------------------------
# Applications.


@dataclasses.dataclass
class App:
    key: str
    label: str
    argv: Callable[[pathlib.Path, str], list[str]]  # (work dir, unique token) -> argv
    check: Callable[[bytes], bool]  # accepts the program's stdout
    scratch: Callable[[str], list[str]]  # token -> paths it leaves in scratch /tmp
    skip: str | None = None  # reason it cannot run on this machine


_PY_IMPORTS = ("import json, re, hashlib, sqlite3, subprocess, collections, datetime, decimal, "
               "email.parser, urllib.parse, pathlib, tempfile, argparse, logging, csv; print('ok')")
# A small, self-contained module of CPython's own regression suite.
PY_TEST_MODULE = "test_json"


def _guest_program(name: str, manifest) -> str | None:
    """The absolute path of ``name`` on the manifest's PATH (as the guest
    would find it), if the host has it."""
    path = dict(manifest.env).get("PATH", "/usr/bin:/bin")
    found = shutil.which(name, path=path)
    return os.path.abspath(found) if found else None


def applications(manifest) -> list[App]:
    python3 = _guest_program("python3", manifest)
    sqlite3 = _guest_program("sqlite3", manifest)
    busybox = _guest_program("busybox", manifest)
    gcc = _guest_program("gcc", manifest)
    apps = [
        App("py_imports", "python3 -c imports",
            lambda w, t: [python3, "-c", _PY_IMPORTS], lambda out: out.strip() == b"ok", lambda t: [],
            None if python3 else "python3 is not installed"),
        App("py_regrtest", f"python3 -m test {PY_TEST_MODULE}",
            lambda w, t: [python3, "-m", "test", "-q", PY_TEST_MODULE],
            lambda out: b"SUCCESS" in out, lambda t: [], _regrtest_skip_reason(python3)),
        App("sqlite_inserts", "sqlite3 bulk inserts",
            lambda w, t: [sqlite3, f"/tmp/perf-{t}.db", f".read {w}/inserts.sql"],
            lambda out: b"|" in out, lambda t: [f"/tmp/perf-{t}.db"],
            None if sqlite3 else "the sqlite3 command is not installed (Debian: sqlite3)"),
        App("tar_czf", "busybox tar czf",
            lambda w, t: [busybox, "tar", "czf", f"/tmp/perf-{t}.tgz", "-C", str(w), "tree"],
            lambda out: True, lambda t: [f"/tmp/perf-{t}.tgz"],
            None if busybox else "busybox is not installed (Debian: busybox-static)"),
        App("gcc_compile", "gcc -O2 compile+link",
            lambda w, t: [gcc, "-O2", "-o", f"/tmp/perf-{t}", f"{w}/prog.c"],
            lambda out: True, lambda t: [f"/tmp/perf-{t}"],
            None if gcc else "gcc is not installed"),
    ]
    return apps


def _regrtest_skip_reason(python3: str | None) -> str | None:
    if not python3:
        return "python3 is not installed"
    probe = subprocess.run([python3, "-c", f"import test.{PY_TEST_MODULE}"], capture_output=True, timeout=60,
                           check=False)
    if probe.returncode != 0:
        ver = subprocess.run([python3, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                             capture_output=True, text=True, timeout=60, check=False).stdout.strip()
        return (f"CPython's regression tests are not installed for {python3} "
                f"(Debian: libpython{ver}-testsuite)")
    return None


def run_app_once(runner: BackendRunner, app: App, work: pathlib.Path) -> Outcome:
    """One run of ``app``; a wrong output makes it a failed run."""
    token = secrets.token_hex(6)
    try:
        o = runner.run(app.argv(work, token))
    finally:
        # Backends without a private scratch (native, ptrace, sandlock)
        # write to the host's /tmp: leave nothing behind there.
        for p in app.scratch(token):
            try:
                os.unlink(p)
            except OSError:
                pass
    if o.ok and not app.check(o.stdout):
        o.ok, o.why = False, f"unexpected output {_last_line(o.stdout)!r}"
    return o


def interleaved(names: Sequence[str], runs_of: Callable[[str], int], once: Callable[[str], Outcome],
                progress: Callable[[str], None] | None = None, what: str = "",
                scale: float = 1.0, unit: str = "s") -> dict[str, dict]:
    """Runs ``once(backend)`` round-robin: round r runs every backend that
    still needs a run, so load from anything else on the machine falls on
    every backend alike instead of on whichever ran during it.  A backend's
    first failure ends its runs and becomes its result."""
    walls: dict[str, list[float]] = {n: [] for n in names}
    mediated: dict[str, list[int]] = {n: [] for n in names}
    failed: dict[str, str] = {}
    rounds = max((runs_of(n) for n in names), default=0)
    for r in range(rounds):
        parts = []
        for n in names:
            if n in failed or r >= runs_of(n):
                continue
            o = once(n)
            if not o.ok:
                failed[n] = "fails: " + o.fail_reason()
                parts.append(f"{n} FAILED")
                continue
            walls[n].append(o.wall_s * scale)
            if o.mediated_calls is not None:
                mediated[n].append(o.mediated_calls)
            parts.append(f"{n} {o.wall_s * scale:.{1 if scale > 1 else 2}f}{unit}")
        if progress:
            progress(f"{what} round {r + 1}/{rounds}: " + ", ".join(parts))
    out = {}
    for n in names:
        if n in failed:
            out[n] = {"error": failed[n]}
        elif walls[n]:
            out[n] = {unit: stats.summary(walls[n])}
            if mediated[n]:
                out[n]["mediated_calls"] = int(stats.percentile(mediated[n], 50))
    return out


# ---------------------------------------------------------------------------
# Scale: N concurrent clients of one monitor.


def _parse_statloop(line: str) -> dict:
    fields = dict(kv.split("=", 1) for kv in line.split())
    return {"calls": int(fields["calls"]), "start": int(fields["start"]), "end": int(fields["end"]),
            "vdso": fields.get("vdso") == "1", "hist": stats.parse_hist(fields.get("hist", "")),
            "marks": [int(x) for x in fields["marks"].split(",")] if fields.get("marks") else []}


def _calls_by(client: dict, t: int) -> float:
    """How many calls the client had done at time t (its progress marks,
    interpolated)."""
    points = [(client["start"], 0.0)] + [(m, client["calls"] * (k + 1) / len(client["marks"]))
                                         for k, m in enumerate(client["marks"])]
    for (t0, c0), (t1, c1) in zip(points, points[1:]):
        if t <= t1:
            return c0 if t1 == t0 else c0 + (c1 - c0) * (t - t0) / (t1 - t0)
    return float(client["calls"])


def _fairness(clients: list[dict]) -> tuple[float, float, float] | None:
    """(slowest, fastest client's rate, the window's share of the run) over
    the window in which every client runs: the latest start to the earliest
    end, so that a client that started late or finished early does not look
    fast or slow for running while others did not.  None without marks."""
    if not all(c["marks"] for c in clients):
        return None
    lo, hi = max(c["start"] for c in clients), min(c["end"] for c in clients)
    span = max(c["end"] for c in clients) - min(c["start"] for c in clients)
    if hi <= lo or span <= 0:
        return None
    rates = [(_calls_by(c, hi) - _calls_by(c, lo)) / ((hi - lo) / 1e9) for c in clients]
    return min(rates), max(rates), (hi - lo) / span


class _ReadyBarrier:
    """Collects each client's stdout; knows when all have printed "ready"."""

    def __init__(self, fds: list[int]) -> None:
        self.bufs = {fd: bytearray() for fd in fds}
        self.open = set(fds)
        self.sel = selectors.DefaultSelector()
        for fd in fds:
            self.sel.register(fd, selectors.EVENT_READ)

    def ready_count(self) -> int:
        return sum(1 for b in self.bufs.values() if b.startswith(b"ready\n"))

    def waiting(self) -> int:
        """Clients still starting: not ready yet and not gone (a client that
        failed to start closes its pipe without "ready")."""
        return sum(1 for fd in self.open if not self.bufs[fd].startswith(b"ready\n"))

    def pump(self, deadline: float) -> None:
        for key, _ in self.sel.select(max(0.0, min(0.5, deadline - time.monotonic()))):
            data = os.read(key.fd, 65536)
            if data:
                self.bufs[key.fd] += data
            else:
                self.sel.unregister(key.fd)
                self.open.discard(key.fd)

    def close(self) -> None:
        self.sel.close()


# Native clients make this many times the calls, so that they run about as
# long as pico's and all run at once: their slowest/fastest is then the
# machine's own fairness in that run (other load on it shows there too).
NATIVE_SCALE_FACTOR = 8


def combine_scale_runs(runs: list[dict]) -> dict:
    """One client count's several runs as one: the run of median throughput,
    with every run's throughput and fairness, and the median fairness (with
    its range) as ``slowest_to_fastest``."""
    good = [r for r in runs if "calls_per_s" in r]
    if not good:
        return runs[0] if runs else {"error": "not measured"}
    good.sort(key=lambda r: r["calls_per_s"])
    doc = dict(good[(len(good) - 1) // 2])
    doc["runs"] = [{"calls_per_s": r["calls_per_s"], "slowest_to_fastest": r.get("slowest_to_fastest")}
                   for r in runs if "calls_per_s" in r]
    fair = sorted(r["slowest_to_fastest"] for r in good if r.get("slowest_to_fastest") is not None)
    if fair:
        doc["slowest_to_fastest"] = fair[(len(fair) - 1) // 2]
        doc["fairness_range"] = [fair[0], fair[-1]]
    failed = [r["error"] for r in runs if "error" in r]
    if failed:
        doc["failed_runs"] = failed
    return doc


def measure_scale(backend: str, manifest, work: pathlib.Path, n: int, calls: int,
                  timeout: float = RUN_TIMEOUT_S) -> dict:
    """``n`` clients, released together, each timing ``calls`` stat calls.

    pico: ``n`` Sandbox runs in threads of this process, all served by the
    one shared monitor.  native: ``n`` plain processes (the reference),
    each making NATIVE_SCALE_FACTOR times the calls."""
    if backend == "native":
        calls *= NATIVE_SCALE_FACTOR
    argv = [str(work / "bin" / "statloop"), str(work / "data" / "file"), str(calls)]
    go_r, go_w = os.pipe()
    outs = [os.pipe() for _ in range(n)]
    errors: list[str] = []
    threads: list[threading.Thread] = []
    procs: list[subprocess.Popen] = []
    results: list = [None] * n
    barrier = _ReadyBarrier([r for r, _ in outs])
    cpu0 = os.times()
    t_start = time.monotonic()
    try:
        if backend == "pico":
            from picoproc.api import Sandbox

            def client(i: int) -> None:
                try:
                    results[i] = Sandbox(manifest).run(argv, stdin=go_r, stdout=outs[i][1], stderr=outs[i][1],
                                                       timeout=timeout)
                except Exception as exc:  # noqa: BLE001 -- reported as this client's failure
                    errors.append(f"client {i}: {type(exc).__name__}: {_one_line(str(exc))}")
                finally:
                    os.close(outs[i][1])

            for i in range(n):
                t = threading.Thread(target=client, args=(i,), daemon=True)
                t.start()
                threads.append(t)
        elif backend == "native":
            for i in range(n):
                procs.append(subprocess.Popen(argv, stdin=go_r, stdout=outs[i][1], stderr=outs[i][1],
                                              env=dict(manifest.env), cwd="/"))
                os.close(outs[i][1])
        else:
            raise ValueError(f"scale is measured for pico and native only, not {backend}")
        deadline = time.monotonic() + timeout
        while barrier.waiting() and time.monotonic() < deadline:
            barrier.pump(deadline)
        ready = barrier.ready_count()
        os.write(go_w, b"g" * n)  # releases every client (one byte each)
        spawn_s = time.monotonic() - t_start
        while barrier.open and time.monotonic() < deadline:
            barrier.pump(deadline)
        for t in threads:
            t.join(max(0.0, deadline - time.monotonic()))
        for p in procs:
            p.wait(max(0.1, deadline - time.monotonic()))
    finally:
        barrier.close()
        for fd in (go_r, go_w):
            os.close(fd)
        for r, _ in outs:
            os.close(r)
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    cpu1 = os.times()
    if ready < n:
        errors.append(f"only {ready} of {n} clients started")
    clients = []
    for i, (r, _) in enumerate(outs):
        text = barrier.bufs[r].decode("utf-8", "replace")
        line = next((ln for ln in text.splitlines() if ln.startswith("calls=")), None)
        if line is None:
            errors.append(f"client {i}: {_one_line(text) or 'no output'}")
            continue
        clients.append(_parse_statloop(line))
    if errors or not clients:
        return {"error": "fails: " + "; ".join(errors[:3])}
    hist = stats.merge_hists(c["hist"] for c in clients)
    total = sum(c["calls"] for c in clients)
    span_ns = max(c["end"] for c in clients) - min(c["start"] for c in clients)
    doc = {
        "clients": n,
        "calls": total,
        "span_s": span_ns / 1e9,
        "calls_per_s": total / (span_ns / 1e9),
        "p50_ns": stats.hist_percentile(hist, 50),
        "p90_ns": stats.hist_percentile(hist, 90),
        "p99_ns": stats.hist_percentile(hist, 99),
        "max_ns": stats.hist_bucket_mid(max(hist)),
        "spawn_s": spawn_s,
        "vdso": all(c["vdso"] for c in clients),
    }
    # Fairness: each client's rate while every client runs.
    fair = _fairness(clients)
    doc["slowest_to_fastest"] = None  # the clients never all ran at once
    if fair and fair[1] > 0:
        doc["client_rate_min"], doc["client_rate_max"], doc["fairness_window"] = fair
        doc["slowest_to_fastest"] = fair[0] / fair[1]
    if backend == "pico":
        # The monitor runs in this process: its CPU time over the run, per
        # served call (the C loop thread; the Python threads only wait).
        used = (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)
        doc["harness_cpu_s"] = used
        doc["guest_cpu_s"] = sum((r.cpu_user_s + r.cpu_system_s) for r in results if r is not None)
    return doc
