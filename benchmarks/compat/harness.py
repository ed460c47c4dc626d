"""Compares CPython regression modules natively and inside a picoprocess,
test by test (the runs themselves: runs.py; what the guest saw: evidence.py).

A run that prints nothing for ``test_timeout`` seconds is hung: the harness
asks it for a traceback of every thread (SIGUSR1, which regrtest registers
with faulthandler), stops it, records the test that was running as a hang
(where it hung), and runs the module again without the tests already done.
A run that dies records the running test as a crash the same way.  Tests
that hang or crash natively are broken on this machine: they are not run
inside and not counted.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import os
import pathlib
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
from .evidence import attribute, reason_key
from .modules import EXPECTED_SECONDS
from .regrtest import CRASH, ERROR, FAIL, GOOD, HANG, MISSING, SKIP, ParsedRun, TestResult
from .runs import (
    MODULE_TIMEOUT_S,
    PYTHON,
    TEST_TIMEOUT_S,
    Capture,
    Setup,
    Stopped,
    check_prerequisites,
    list_cases,
    make_setup,
    regrtest_argv,
    run_guest,
    run_native,
)

SCHEMA = "picoproc-compat/1"
MAX_RUNS = 8  # runs of one side of one module (each hang or crash costs one)


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
            cap = runner(setup, regrtest_argv(setup, module, ignore_path if ignore else None),
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
            res.evidence.update(attribute(parsed, cap.test_starts, cap.records))
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
    argv = regrtest_argv(setup, module, None)
    argv[-1:-1] = ["--matchfile", path]
    cap = runner(setup, argv, silence_s=setup.test_timeout, deadline=deadline)
    parsed = regrtest.parse(cap.output, set(bare))
    attempt = Attempt(cap.how, cap.status, round(cap.wall_s, 2), parsed.in_flight,
                      records_total=cap.records_total, purpose="failure text of " + ", ".join(
                          t.rsplit(".", 1)[-1] for t in bare[:5]) + (" ..." if len(bare) > 5 else ""))
    res.attempts.append(attempt)
    before = dict(res.evidence)
    res.evidence.update(attribute(parsed, cap.test_starts, cap.records))
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
