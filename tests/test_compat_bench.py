"""``picoproc bench compat``: the short form of the CPython comparison.

* The parser of ``python3 -m test -v`` output, on outputs written the way
  unittest and regrtest write them (every status, subtests, docstrings,
  fixtures, tests that print, a run cut short, a faulthandler dump).
* The whole harness, as root and unprivileged, on a regression module whose
  outcomes are planted (tests/compat/planted_regrtest.py): a difference, a
  hang and a crash inside only, a hang natively only, and tests alike on both
  sides.  The comparison must report each as planted, with the reason the
  guest saw.
* Real CPython modules, natively as the guest's identity and inside: every
  test accounted for, and every difference explained.  In the suite a few
  quick ones; ``pytest --compat-full`` runs the 30 modules of
  ``picoproc bench compat``'s default list instead (about 11 minutes on two
  CPUs) and holds them to the 99 % floor.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time

import pytest
from picoproc.bench.compat import evidence, harness, regrtest, report, runs

pytestmark = pytest.mark.unit  # the parser and the comparison; tests that run things are marked root

PLANTED = os.path.join(os.path.dirname(os.path.abspath(__file__)), "compat", "planted_regrtest.py")
PY = "planted_regrtest.Planted."
# No output for this long: hung.  The planted tests take well under a second.
TEST_TIMEOUT = 10


# ---------------------------------------------------------------------------------------
# The parser
# ---------------------------------------------------------------------------------------

VERBOSE = textwrap.dedent("""\
    == CPython 3.11.2
    0:00:00 load avg: 0.00 [1/1] test_x
    test_ok (test.test_x.A.test_ok) ... ok
    test_skip (test.test_x.A.test_skip) ... skipped 'no "thing" here'
    test_prints (test.test_x.A.test_prints) ... some output
    more outputok
    test_fail (test.test_x.A.test_fail) ... FAIL
    test_error (test.test_x.A.test_error) ... ERROR
    test_doc (test.test_x.A.test_doc)
    The first line of a docstring. ... ERROR
    test_sub (test.test_x.A.test_sub) ...
      test_sub (test.test_x.A.test_sub) (i=2) ... FAIL
    test_subskip (test.test_x.A.test_subskip) ...
      test_subskip (test.test_x.A.test_subskip) (i=1) ... skipped 'one'
    test_subskip (test.test_x.A.test_subskip) ... ok
    test_xf (test.test_x.A.test_xf) ... expected failure
    test_xp (test.test_x.A.test_xp) ... unexpected success
    0.00s test_timed (test.test_x.A.test_timed) ... 1.50s ok
    setUpClass (test.test_x.B) ... skipped 'class says no'
    test_last (test.test_x.A.test_last) ... 6.00s ok
    test.test_x.win (unittest.loader.ModuleSkipped.test.test_x.win) ... skipped 'Windows only'
    test_late (test.test_x.A.test_late) ... 6.00s ok
    Traceback (most recent call last):
      File "/usr/lib/python3.11/multiprocessing/util.py", line 300, in _run_finalizers
    OSError: printed by a finalizer after the last test's status

    ======================================================================
    ERROR: test_error (test.test_x.A.test_error)
    ----------------------------------------------------------------------
    Traceback (most recent call last):
      File "/usr/lib/python3.11/test/test_x.py", line 9, in test_error
        os.mkfifo(path)
    OSError: [Errno 38] Function not implemented: '/tmp/f'

    ======================================================================
    ERROR: test_doc (test.test_x.A.test_doc)
    The first line of a docstring.
    ----------------------------------------------------------------------
    Traceback (most recent call last):
    OSError: [Errno 38] Function not implemented: '/proc/2/fd'

    ======================================================================
    FAIL: test_fail (test.test_x.A.test_fail)
    ----------------------------------------------------------------------
    Traceback (most recent call last):
      File "/usr/lib/python3.11/test/test_x.py", line 5, in test_fail
        self.assertEqual(1, 2)
    AssertionError: 1 != 2

    ======================================================================
    FAIL: test_sub (test.test_x.A.test_sub) (i=2)
    ----------------------------------------------------------------------
    Traceback (most recent call last):
    AssertionError: 2 not less than 2

    ======================================================================
    UNEXPECTED SUCCESS: test_xp (test.test_x.A.test_xp)
    ----------------------------------------------------------------------
    Ran 14 tests in 0.5s

    FAILED (failures=2, errors=1, skipped=1)
    test_x failed

    == Tests result: FAILURE ==
    Total duration: 1 sec
    Tests result: FAILURE
    """)

UNIVERSE = {f"test.test_x.A.{n}" for n in ("test_ok", "test_skip", "test_prints", "test_fail", "test_error",
                                            "test_doc", "test_sub", "test_subskip", "test_xf", "test_xp",
                                            "test_timed", "test_last", "test_late", "test_never")} | {
    "test.test_x.B.test_b", "unittest.loader.ModuleSkipped.test.test_x.win"}


def test_parser_reads_every_status():
    run = regrtest.parse(VERBOSE.encode(), UNIVERSE)
    got = {tid.rsplit(".", 1)[1]: r.outcome for tid, r in run.tests.items()}
    assert got == {"win": "skip", "test_ok": "pass", "test_skip": "skip", "test_prints": "pass", "test_fail": "fail",
                   "test_error": "error", "test_doc": "error", "test_sub": "fail", "test_subskip": "pass",
                   "test_xf": "xfail", "test_xp": "xpass", "test_timed": "pass", "test_last": "pass",
                   "test_late": "pass"}
    assert run.tests["test.test_x.A.test_skip"].detail == 'no "thing" here'
    error = run.tests["test.test_x.A.test_error"]
    assert error.detail == "OSError: [Errno 38] Function not implemented: '/tmp/f'"
    assert "os.mkfifo(path)" in error.text
    assert run.tests["test.test_x.A.test_fail"].detail == "AssertionError: 1 != 2"
    # A docstring's first line belongs to the description in the summary too.
    assert run.tests["test.test_x.A.test_doc"].detail == "OSError: [Errno 38] Function not implemented: '/proc/2/fd'"
    assert run.tests["test.test_x.A.test_sub"].detail == "AssertionError: 2 not less than 2"
    assert run.fixtures == {"setUpClass (test.test_x.B)": ("skip", "class says no")}
    assert run.complete and run.result == "FAILURE" and run.in_flight is None


def test_parser_finds_the_test_a_cut_short_run_was_in():
    cut = textwrap.dedent("""\
        test_ok (test.test_x.A.test_ok) ... ok
        test_hangs (test.test_x.A.test_hangs) ... Current thread 0x00007f66788062c0 (most recent call first):
          File "/usr/lib/python3.11/threading.py", line 320 in wait
          File "/usr/lib/python3.11/test/test_x.py", line 40 in test_hangs
          File "/usr/lib/python3.11/unittest/case.py", line 579 in _callTestMethod
        """)
    run = regrtest.parse(cut.encode(), {"test.test_x.A.test_ok", "test.test_x.A.test_hangs"})
    assert run.in_flight == "test.test_x.A.test_hangs" and not run.complete
    assert list(run.tests) == ["test.test_x.A.test_ok"]
    assert run.dump_frames[:2] == [("/usr/lib/python3.11/threading.py", 320, "wait"),
                                   ("/usr/lib/python3.11/test/test_x.py", 40, "test_hangs")]
    # A status that only ends the last line of a run cut short is not
    # believed: the test may have printed "ok" and then hung.
    run = regrtest.parse(b"test_a (test.test_x.A.test_a) ... looks ok", {"test.test_x.A.test_a"})
    assert run.in_flight == "test.test_x.A.test_a"
    crashed = regrtest.parse(b"test_a (test.test_x.A.test_a) ... Fatal Python error: Segmentation fault\n",
                             {"test.test_x.A.test_a"})
    assert crashed.fatal == "Fatal Python error: Segmentation fault"


def test_parser_takes_module_level_outcomes():
    skipped = regrtest.parse(b"0:00:00 [1/1] test_kq\ntest_kq skipped -- test works only on BSD\n"
                             b"== Tests result: SUCCESS ==\n", None)
    assert skipped.module_skipped == "test works only on BSD" and not skipped.tests
    assert regrtest.list_cases_output(b"test.test_x.A.test_a\ntest.test_x.B.test_b\nsomething else\n") == \
        ["test.test_x.A.test_a", "test.test_x.B.test_b"]


@pytest.mark.parametrize("native, guest, kind", [
    ("pass", "pass", harness.BOTH_PASS), ("xfail", "pass", harness.BOTH_PASS),
    ("skip", "skip", harness.BOTH_SKIP), ("fail", "error", harness.BOTH_FAIL),
    ("pass", "error", harness.REGRESSED), ("pass", "skip", harness.REGRESSED),
    ("pass", "hang", harness.REGRESSED), ("pass", "missing", harness.REGRESSED),
    ("fail", "pass", harness.IMPROVED), ("skip", "fail", harness.OTHER),
    ("hang", "pass", harness.NATIVE_BROKEN), ("crash", "missing", harness.NATIVE_BROKEN),
])
def test_comparison_of_two_outcomes(native, guest, kind):
    assert harness.compare_outcomes(native, guest) == kind


def test_reasons_group_alike_failures():
    one = regrtest.TestResult("error", "OSError: [Errno 38] Function not implemented: '/tmp/a'")
    two = regrtest.TestResult("error", "OSError: [Errno 38] Function not implemented: '/tmp/b'")
    assert evidence.reason_key(one, []) == evidence.reason_key(two, []) == \
        "OSError: [Errno 38] Function not implemented"
    # A call the library OS does not handle, seen while the test ran, comes first.
    assert evidence.reason_key(one, ["timer_create: ENOSYS (not handled by the library OS) (x2)"]) == \
        "timer_create: ENOSYS (not handled by the library OS)"
    assert evidence.reason_key(regrtest.TestResult("fail", "AssertionError: 3 != 4"), []) == \
        "AssertionError: N != N"


def test_audit_records_go_to_the_test_whose_start_mark_precedes_them():
    out = (b"test_a (m.C.test_a) ... ok\ntest_b (m.C.test_b) ... ERROR\n"
           b"test_c (m.C.test_c) ... FAIL\ntest_d (m.C.test_d) ... skipped 'no pidfds'\n")
    parsed = regrtest.parse(out, {"m.C.test_a", "m.C.test_b", "m.C.test_c", "m.C.test_d"})

    def rec(t, nr):
        return {"time_ns": t, "call": "note_unsupported", "linux_nr": nr, "decision": "error"}

    # The output says nothing of when each test ran: the marks cut the audit.
    records = [rec(5, 434), rec(15, 283), rec(25, 259), rec(26, 259), rec(35, 317)]
    starts = [(10, "m.C.test_a"), (20, "m.C.test_b"), (30, "m.C.test_c"), (40, "m.C.test_d")]
    found = evidence.attribute(parsed, starts, records)
    # test_a passed: nothing kept for it; timerfd_create (283) was its call, not test_b's.
    # A skip decided at import shows what failed then, as such.
    assert found == {
        "m.C.test_b": ["mknodat: ENOSYS (not handled by the library OS) (x2)"],
        "m.C.test_c": ["seccomp: ENOSYS (not handled by the library OS)"],
        "m.C.test_d": ["before the first test: pidfd_open: ENOSYS (not handled by the library OS)"]}
    # ... which is shown, not taken for the reason.
    assert evidence.reason_key(parsed.tests["m.C.test_d"], found["m.C.test_d"]) == \
        "skipped inside: no pidfds"


@pytest.mark.root
def test_the_marked_runner_is_python_m_test():
    """regrtest_marked.py takes the arguments of python3 -m test and finds
    the same tests (it only adds a stat at every test's start)."""
    problem = runs.check_prerequisites()
    if problem:
        pytest.skip(problem)
    plain = subprocess.run([runs.PYTHON, "-m", "test", "--list-cases", "test_fcntl"], capture_output=True,
                           text=True, timeout=120, check=False, cwd="/")
    marked = subprocess.run([runs.PYTHON, str(runs.MARKED_RUNNER), "/nonexistent/mark/", "--list-cases",
                             "test_fcntl"], capture_output=True, text=True, timeout=120, check=False, cwd="/")
    assert plain.returncode == marked.returncode == 0, marked.stderr
    assert marked.stdout == plain.stdout and "test.test_fcntl.TestFcntl.test_flock" in plain.stdout


# ---------------------------------------------------------------------------------------
# The harness, end to end, on planted outcomes
# ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def planted_dir():
    # Not under /tmp: both sides of the comparison have a private /tmp.
    d = tempfile.mkdtemp(prefix="picoproc-planted-", dir="/var/tmp")
    os.chmod(d, 0o755)
    shutil.copy(PLANTED, d)
    os.chmod(os.path.join(d, os.path.basename(PLANTED)), 0o644)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def _compat_cli(mode: str, planted_dir: str, request) -> tuple[subprocess.CompletedProcess, dict]:
    """``picoproc bench compat`` on the planted module, as root (this
    interpreter) or unprivileged (uid 65534 with a copy of the package)."""
    fd, out = tempfile.mkstemp(prefix="compat-", suffix=".json", dir="/var/tmp")
    os.close(fd)
    os.chmod(out, 0o666)
    args = ["bench", "compat", "--testdir", planted_dir, "--modules", "planted_regrtest",
            "--test-timeout", str(TEST_TIMEOUT), "--jobs", "1", "--json", out]
    try:
        if mode == "root":
            if os.geteuid() != 0:
                pytest.skip("not root: the unprivileged case covers this process")
            proc = subprocess.run([sys.executable, "-m", "picoproc", *args], capture_output=True, text=True,
                                  timeout=300, check=False)
        else:
            env = request.getfixturevalue("unpriv_env")
            proc = subprocess.run([*env["prefix"], env["python"], "-m", "picoproc", *args], capture_output=True,
                                  text=True, env=env["env"], cwd="/", timeout=300, check=False)
        assert proc.returncode == 0, proc.stderr[-3000:]
        with open(out) as f:
            return proc, json.load(f)
    finally:
        os.unlink(out)


@pytest.mark.slow
@pytest.mark.parametrize("mode", [pytest.param("root", marks=pytest.mark.root),
                                  pytest.param("unprivileged", marks=pytest.mark.unprivileged)])
def test_planted_outcomes_are_reported_as_planted(mode, planted_dir, request):
    proc, doc = _compat_cli(mode, planted_dir, request)
    (m,) = doc["modules"]
    assert doc["schema"] == "picoproc-compat/1" and m["module"] == "planted_regrtest"
    if mode == "unprivileged":
        assert doc["identity"]["uid"] == 65534
    native = m["native"]["counts"]
    assert native == {"pass": 7, "skip": 2, "fail": 2, "xfail": 1, "hang": 1}, m["native"]
    assert m["counts"] == {"pass_both": 5, "skip_both": 2, "fail_both": 2, "regressed": 3,
                           "native_broken": 1}, m["counts"]
    assert m["passes_natively"] == 8 and m["passes_both"] == 5
    diffs = {d["test"]: d for d in m["differences"]}
    assert set(diffs) == {PY + "test_d_differs_inside", PY + "test_e_hangs_inside",
                          PY + "test_f_crashes_inside"}

    differs = diffs[PY + "test_d_differs_inside"]
    assert (differs["native"], differs["guest"]) == ("pass", "fail")
    assert differs["detail"] == "AssertionError: True is not false : planted difference"
    assert "self.assertFalse(inside()" in differs["text"]
    # What the audit saw while it ran: the refused file.
    assert "open file:/etc/shadow: EACCES (refused by the manifest)" in \
        [e.split(" (x")[0] for e in differs["evidence"]], differs["evidence"]

    hang = diffs[PY + "test_e_hangs_inside"]
    assert hang["guest"] == "hang"
    assert re.match(rf"hang: no output for {TEST_TIMEOUT} s in wait \(threading\.py:\d+\), from "
                    r"test_e_hangs_inside \(planted_regrtest\.py:\d+\)$", hang["detail"]), hang["detail"]
    assert hang["reason"] == "hang in wait (threading.py)"

    crash = diffs[PY + "test_f_crashes_inside"]
    assert crash["guest"] == "crash"
    assert crash["detail"].startswith("crash: Fatal Python error: Aborted in test_f_crashes_inside"), crash

    (broken,) = m["native_broken_tests"]
    assert broken["test"] == PY + "test_h_hangs_natively" and broken["native"] == "hang"

    # The guest's runs: stopped at the hang, died at the crash, ran the rest
    # (without the test that hangs natively), then the failure alone for its text.
    attempts = m["guest"]["attempts"]
    assert [a["how"] for a in attempts[:3]] == ["silent", "exited", "exited"], attempts
    assert attempts[0]["in_flight"] == PY + "test_e_hangs_inside"
    assert attempts[1]["in_flight"] == PY + "test_f_crashes_inside"
    assert attempts[1]["status"] == 134  # SIGABRT, as picoproc reports it
    assert any("failure text of" in a.get("purpose", "") for a in attempts)
    # The tests after the hang and the crash ran: restarts lose nothing.
    assert m["counts"]["pass_both"] == 5

    md = proc.stdout
    assert "| `planted_regrtest` | 8 | 5 | 62.5 % |" in md, md
    assert "hang in wait (threading.py)" in md and "planted difference" in md
    assert "`Planted.test_h_hangs_natively` (planted_regrtest): hang" in md
    # Progress, one line per side of the module.
    steps = re.findall(r"^\[ *(\d+)/(\d+) +[\d.]+ s\] (.*)$", proc.stderr, re.MULTILINE)
    assert [s[2].split(":")[0] for s in steps[1:]] == ["planted_regrtest native", "planted_regrtest inside"]


def test_the_report_lists_reasons_by_count():
    """report.py from a document alone (what --write-docs --from-json does)."""
    def diff(test, reason):
        return {"test": test, "kind": harness.REGRESSED, "native": "pass", "guest": "error", "detail": reason,
                "native_detail": "", "text": "", "evidence": [], "reason": reason}

    module = {"module": "test_y", "native": {"counts": {"pass": 4}, "wall_s": 1.0},
              "guest": {"counts": {"pass": 1, "error": 3}, "wall_s": 2.0}, "passes_natively": 4,
              "passes_both": 1, "counts": {"pass_both": 1, "regressed": 3}, "native_broken_tests": [],
              "differences": [diff("test.test_y.C.test_1", "fcntl: ENOSYS (not handled by the library OS)"),
                              diff("test.test_y.C.test_2", "fcntl: ENOSYS (not handled by the library OS)"),
                              diff("test.test_y.C.test_3", "OSError: [Errno 30] Read-only file system")]}
    doc = {"modules": [module, {"module": "test_z", "native": {"counts": {}, "wall_s": 0.1,
                                                                "module_error": "crashed"},
                                "guest": None, "native_broken": "exited with status 1 before finishing"}]}
    reasons = report.top_reasons(doc)
    assert [(r["reason"], r["tests"]) for r in reasons] == [
        ("fcntl: ENOSYS (not handled by the library OS)", 2), ("OSError: [Errno 30] Read-only file system", 1)]
    md = report.markdown(doc)
    assert "**1 of the 4 tests that pass natively pass inside too (25.0 %)**" in md
    assert "| `test_z` | - | - | - | - | - | broken natively, not counted" in md
    assert "`C.test_1`, `C.test_2`" in md


@pytest.mark.root
def test_usage_errors_are_one_line_and_125():
    proc = subprocess.run([sys.executable, "-m", "picoproc", "bench", "compat", "--modules", "test_no_such_module"],
                          capture_output=True, text=True, timeout=120, check=False)
    if "regression tests are not installed" in proc.stderr:
        pytest.skip(proc.stderr.strip())
    assert proc.returncode == 125
    assert proc.stderr.startswith("picoproc bench compat: no regression module test_no_such_module in ")
    assert len(proc.stderr.strip().splitlines()) == 1
    bad = subprocess.run([sys.executable, "-m", "picoproc", "bench", "compat", "--all", "--modules", "test_os"],
                         capture_output=True, text=True, timeout=120, check=False)
    assert bad.returncode == 125 and "not allowed with argument" in bad.stderr
    with tempfile.TemporaryDirectory(dir="/tmp") as d:
        hidden = subprocess.run([sys.executable, "-m", "picoproc", "bench", "compat", "--testdir", d],
                                capture_output=True, text=True, timeout=120, check=False)
    assert hidden.returncode == 125 and "under /tmp, which both sides replace" in hidden.stderr


# ---------------------------------------------------------------------------------------
# One real module
# ---------------------------------------------------------------------------------------


# The short form: quick modules of the default list (files, processes,
# waiting), about half a minute on two CPUs.  ``--compat-full`` (conftest.py)
# runs the default list instead, as ``picoproc bench compat`` does.
SHORT_MODULES = ("test_fcntl", "test_wait4", "test_fork1", "test_glob")
FLOOR = 0.99  # of the tests that pass natively, the share that must pass inside (the stated target)


@pytest.mark.root
def test_a_real_module_natively_and_inside(tmp_path):
    """test_fcntl: its 11 tests, each accounted for on both sides; natively,
    as the guest's identity, every one passes but the macOS-only one; every
    difference carries what the guest saw."""
    problem = runs.check_prerequisites()
    if problem:
        pytest.skip(problem)
    if os.geteuid() != 0:
        pytest.skip("the in-process harness as root; the unprivileged harness runs the planted module")
    work = tempfile.mkdtemp(prefix="picoproc-compat-", dir="/var/tmp")
    try:
        os.chmod(work, 0o755)
        setup = runs.make_setup(work, test_timeout=60)
        doc = harness.compare_module(setup, "test_fcntl")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    assert doc["listed"] == 11
    assert doc["native"]["counts"] == {"pass": 10, "skip": 1}, doc["native"]
    assert doc["passes_natively"] == 10
    assert sum(doc["counts"].values()) == 11
    assert doc["counts"].get("skip_both") == 1
    assert doc["counts"].get("pass_both", 0) + doc["counts"].get("regressed", 0) == 10
    for d in doc["differences"]:
        assert d["kind"] == harness.REGRESSED and d["reason"] and d["detail"], d
    assert doc["native"]["attempts"][0]["status"] == 0


@pytest.mark.root
@pytest.mark.slow
def test_the_command_over_real_modules(request):
    """``picoproc bench compat`` over real modules (SHORT_MODULES, or with
    --compat-full the default list): natively as the guest's identity, every
    test of every module accounted for on both sides, every difference with
    the reason the guest saw, the Markdown report's total equal to the JSON's.
    With --compat-full, at least FLOOR of what passes natively passes inside."""
    from picoproc.bench.compat.modules import DEFAULT_MODULES

    problem = runs.check_prerequisites()
    if problem:
        pytest.skip(problem)
    if os.geteuid() != 0:
        pytest.skip("as root: the unprivileged harness runs the planted module")
    full = request.config.getoption("--compat-full")
    modules = DEFAULT_MODULES if full else SHORT_MODULES
    fd, out = tempfile.mkstemp(prefix="compat-", suffix=".json", dir="/var/tmp")
    os.close(fd)
    try:
        proc = subprocess.run([sys.executable, "-m", "picoproc", "bench", "compat", "--modules", ",".join(modules),
                               "--jobs", "2", "-q", "--json", out],
                              capture_output=True, text=True, timeout=3600 if full else 600, check=False)
        assert proc.returncode == 0, proc.stderr[-3000:]
        with open(out) as f:
            doc = json.load(f)
    finally:
        os.unlink(out)
    assert doc["identity"]["uid"] == 65534, doc["identity"]
    assert [m["module"] for m in doc["modules"]] == list(modules)
    for m in doc["modules"]:
        if m.get("guest") is None:  # broken natively: listed as such, with what happened
            assert m.get("native_broken") or m.get("error"), m
            continue
        assert m["listed"] and sum(m["counts"].values()) >= m["listed"], m["module"]
        for d in m["differences"]:
            assert d["reason"] and d["kind"] in (harness.REGRESSED, harness.IMPROVED, harness.OTHER), d
    total = report.totals(doc)
    assert total["modules"] >= 1 and total["passes_natively"] > 0, total
    assert f"{total['passes_both']:,} of the {total['passes_natively']:,} tests" in proc.stdout
    if full:
        assert total["passes_both"] >= FLOOR * total["passes_natively"], report.top_reasons(doc)[:10]
    else:
        assert total["modules"] == len(modules)


@pytest.mark.root
@pytest.mark.slow
def test_ctrl_c_stops_every_run(planted_dir):
    """SIGINT (a terminal's Ctrl-C) ends the comparison with 130 and leaves no
    run behind: not the native regrtest, not picoproc and its guest."""
    if os.geteuid() != 0:
        pytest.skip("as root: the planted runs of the unprivileged case show the harness itself")
    import psutil

    def planted_runs() -> list[int]:
        found = []
        for p in psutil.process_iter(["cmdline"]):
            if any(planted_dir in a for a in (p.info["cmdline"] or [])) and p.pid != os.getpid():
                found.append(p.pid)
        return found

    # As started from a terminal: with SIGINT's default action, even when this
    # suite runs in the background of a shell, which starts it ignored.
    proc = subprocess.Popen(["env", "--default-signal=INT", sys.executable, "-m", "picoproc", "bench", "compat",
                             "--testdir", planted_dir,
                             "--modules", "planted_regrtest", "--test-timeout", "60", "--jobs", "1"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        # The native run of the planted module hangs in test_h for 60 s: wait
        # until its regrtest runs, then interrupt.
        deadline = time.monotonic() + 120
        while not any("regrtest_marked" in " ".join(psutil.Process(p).cmdline()) for p in planted_runs()):
            assert proc.poll() is None, proc.stderr.read()
            assert time.monotonic() < deadline, "the native run never started"
            time.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        # Bounded by the harness's own stop path: a killed run's exit and its
        # cgroup's removal (runs.EXIT_WAIT_S each), on a loaded machine.
        try:
            status = proc.wait(timeout=3 * runs.EXIT_WAIT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise AssertionError(f"still running after SIGINT: {proc.communicate(timeout=30)[1][-3000:]}") from None
        assert status == 130, proc.stderr.read()[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    left = planted_runs()
    if left:
        psutil.wait_procs([psutil.Process(p) for p in left], timeout=10)
    assert planted_runs() == []


@pytest.mark.root
def test_the_native_oracle_starts_with_default_signal_actions():
    """A comparison started with signals ignored (a shell's background job
    ignores SIGINT and SIGQUIT) does not pass that on to the native side: a
    guest starts with every action the default."""
    if os.geteuid() != 0:
        pytest.skip("the launcher switches to the guest's identity as root")
    spec = json.dumps({"uid": 65534, "gid": 65534, "cwd": "/", "env": {"PATH": "/usr/bin:/bin"}})
    proc = subprocess.run(["env", "--ignore-signal=INT", "--ignore-signal=QUIT", sys.executable, str(runs.LAUNCHER),
                           spec, "--", "grep", "^SigIgn:", "/proc/self/status"],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    assert int(proc.stdout.split()[1], 16) == 0, proc.stdout
