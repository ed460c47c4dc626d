"""Reads what ``python3 -m test -v MODULE`` printed: the outcome of every
test, with the text a failure left, and how the run ended.

The verbose stream of unittest is the source (``method (full.id) ... ok``),
because it is written as the tests run: a run killed in the middle still
says which tests finished and which one was running.  The summary at the
end (``FAIL: ...`` / ``ERROR: ...`` sections with their tracebacks) gives
the failure text and has the last word on failures.  The format is
CPython 3.11's (``unittest/runner.py``, ``test/libregrtest``):

* a test starts with ``method (id)`` (or, with a docstring, that line and
  then the docstring's first line) and `` ... ``, without a newline; the
  status follows (``ok``, ``FAIL``, ``ERROR``, ``skipped 'why'``,
  ``expected failure``, ``unexpected success``), after anything the test
  itself printed;
* a failed subtest prints ``  method (id) (params) ... FAIL`` on its own
  line, and its test then prints no status of its own;
* class and module fixtures that fail or skip print as
  ``setUpClass (test.mod.Class) ... ERROR`` and their tests print nothing;
* regrtest prints ``test_x skipped -- why`` for a module skipped as a
  whole, ``test test_x crashed -- why`` when it could not run it, and
  ``Tests result: ...`` at the very end.

Offsets are kept (in the bytes of the output), so the harness can tell when
each test ran from when its lines arrived.
"""

from __future__ import annotations

import ast
import dataclasses
import re

# Outcomes of one test.  Those of a run cut short: HANG (it was running when
# the run stopped printing and was stopped), CRASH (it was running when the
# run died), MISSING (it never ran: its class or module failed or was
# skipped, or the run ended before it).
PASS, FAIL, ERROR, SKIP = "pass", "fail", "error", "skip"
XFAIL, XPASS = "xfail", "xpass"
HANG, CRASH, MISSING = "hang", "crash", "missing"
OUTCOMES = (PASS, SKIP, XFAIL, FAIL, ERROR, XPASS, HANG, CRASH, MISSING)
GOOD = (PASS, XFAIL)  # what counts as "passes"

FIXTURES = ("setUpClass", "tearDownClass", "setUpModule", "tearDownModule")
SEPARATOR1 = "=" * 70
SEPARATOR2 = "-" * 70

# A method, or a dotted name (a module the loader skipped:
# "test.mod (unittest.loader.ModuleSkipped.test.mod)").
_START = re.compile(r"^(?P<sub>  )?(?P<method>[A-Za-z_][\w.]*) \((?P<paren>[A-Za-z_][\w.]*)\)(?P<tail>.*)$")
# A test's description after other text on its line (a test that prints
# its duration in tearDown: "0.00s test_x (test.mod.C.test_x) ... 1.01s ok").
_DESC_IN = re.compile(r"(?<![\w.])(?P<method>[A-Za-z_][\w.]*) \((?P<paren>[A-Za-z_][\w.]*)\)")
_STATUS_WORDS = {"ok": PASS, "FAIL": FAIL, "ERROR": ERROR, "expected failure": XFAIL,
                 "unexpected success": XPASS}
_SKIPPED = re.compile(r"skipped (?P<why>'.*'|\".*\")$")
_MODULE_SKIPPED = re.compile(r"^(?P<module>test_\w+) skipped -- (?P<why>.*)$")
_MODULE_CRASHED = re.compile(r"^test (?P<module>\S+) crashed -- (?P<why>.*)$")
_RESULT = re.compile(r"^(?:== )?Tests result: (?P<result>[A-Z ,_]+?)(?: ==)?$")
_SUMMARY_HEAD = re.compile(r"^(?P<kind>FAIL|ERROR|UNEXPECTED SUCCESS): (?P<desc>.*)$")
_RAN = re.compile(r"^Ran \d+ tests? in ")
_FRAME = re.compile(r'^\s+File "(?P<file>[^"]+)", line (?P<line>\d+) in (?P<func>\S+)')


@dataclasses.dataclass
class TestResult:
    """One test's outcome in one run."""

    outcome: str
    detail: str = ""  # one line: the skip reason, the exception, how it hung
    text: str = ""  # the failure's traceback (from the summary), trimmed
    start: int | None = None  # byte offsets of its lines in the output
    end: int | None = None
    key: str = ""  # for a hang or crash: where, without line numbers (to count alike ones together)

    def to_json(self) -> dict:
        doc = {"outcome": self.outcome}
        if self.detail:
            doc["detail"] = self.detail
        if self.text:
            doc["text"] = self.text
        return doc


@dataclasses.dataclass
class ParsedRun:
    tests: dict[str, TestResult] = dataclasses.field(default_factory=dict)
    # "setUpClass (test.mod.Class)" -> (outcome, detail), for fixtures that
    # failed or skipped: their tests print nothing of their own.
    fixtures: dict[str, tuple[str, str]] = dataclasses.field(default_factory=dict)
    module_skipped: str | None = None
    module_crashed: str | None = None
    in_flight: str | None = None  # the test running when the output ended
    in_flight_start: int | None = None
    result: str | None = None  # regrtest's "Tests result", when it got that far
    fatal: str | None = None  # "Fatal Python error: ..." when the interpreter died
    # Frames (innermost first) of the current thread in a faulthandler dump.
    dump_frames: list[tuple[str, int, str]] = dataclasses.field(default_factory=list)

    @property
    def complete(self) -> bool:
        return self.result is not None


def test_id(method: str, paren: str) -> str:
    """The unittest id of ``method (paren)``: Python 3.11 prints the full id
    in the parentheses; doctests print their module there."""
    if paren.endswith("." + method):
        return paren
    return f"{paren}.{method}"


def _status_of(text: str) -> tuple[str, str] | None:
    """(outcome, skip reason) when ``text`` is, or ends with, a status: a
    test that printed without a final newline has its status at the end of
    its last line (run together with the text: ``...doneok``)."""
    text = text.rstrip()
    m = _SKIPPED.search(text)
    if m:
        try:
            why = ast.literal_eval(m.group("why"))
        except (ValueError, SyntaxError):
            why = m.group("why")[1:-1]
        return SKIP, str(why)
    for word, outcome in _STATUS_WORDS.items():
        if text.endswith(word):
            return outcome, ""
    return None


def _exact_status(text: str) -> tuple[str, str] | None:
    """(outcome, skip reason) when ``text`` is a status and nothing else."""
    text = text.strip()
    if text in _STATUS_WORDS or _SKIPPED.fullmatch(text):
        return _status_of(text)
    return None


def exception_line(traceback_text: str) -> str:
    """The line a traceback ends with, naming the exception (``OSError:
    [Errno 38] Function not implemented``); its last line otherwise."""
    lines = [ln for ln in traceback_text.rstrip().splitlines() if ln.strip()]
    for ln in reversed(lines):
        if not ln.startswith((" ", "\t")) and re.match(r"^[\w.]+(Error|Exception|Exit|Failure|Warning|"
                                                       r"Interrupt|Timeout|Expired|Denied|Test)\b", ln):
            return ln.strip()
    for ln in reversed(lines):
        if not ln.startswith((" ", "\t")) and not ln.startswith("Traceback"):
            return ln.strip()
    return lines[-1].strip() if lines else ""


def parse(data: bytes, universe: set[str] | None = None) -> ParsedRun:
    """Parses one run's output.  ``universe``: the ids the module has
    (``--list-cases``); a line is taken as a test's only if its id is there
    (when given), so that a test printing ``word (a.b)`` is not mistaken
    for one."""
    text = data.decode("latin-1")  # one character per byte: offsets stay byte offsets
    run = ParsedRun()
    cur: str | None = None  # the test whose status is awaited
    cur_marker = False  # its " ... " was seen
    cur_lines: list[str] = []  # what it printed after its " ... " (a status may end a line)
    sub_failed: dict[str, str] = {}
    pos = 0
    lines = text.split("\n")
    i = 0

    def known(tid: str) -> bool:
        return universe is None or tid in universe

    def finish(tid: str, outcome: str, detail: str, end: int) -> None:
        r = run.tests.get(tid)
        start = r.start if r is not None else None
        run.tests[tid] = TestResult(outcome, detail, start=start, end=end)

    def last_status() -> tuple[str, str] | None:
        """The status the awaited test printed on a line of its output: the
        last line that ends with one (things print after a status too: a
        finalizer's traceback, another thread)."""
        for ln in reversed(cur_lines):
            st = _status_of(ln)
            if st is not None:
                return st
        return None

    def close_pending(end: int) -> None:
        """The awaited test's status never came on its own line: it may
        end the last line the test printed."""
        nonlocal cur
        if cur is None:
            return
        st = last_status()
        if st is not None:
            finish(cur, st[0], st[1], end)
        elif cur in sub_failed:
            finish(cur, FAIL if sub_failed[cur] == FAIL else ERROR, "a subtest failed", end)
        else:
            run.tests[cur].detail = "no status printed"
        cur = None

    def faulthandler_output(ln: str) -> None:
        """faulthandler writes where the output is, so also after a
        test's " ... ": a fatal error, or the traceback of a dump."""
        nonlocal i, pos
        if "Fatal Python error:" in ln:
            run.fatal = ln[ln.index("Fatal Python error:"):].strip()
        if "Current thread 0x" in ln and "most recent call first" in ln:
            frames = []
            while i < len(lines):
                fm = _FRAME.match(lines[i])
                if not fm:
                    break
                frames.append((fm.group("file"), int(fm.group("line")), fm.group("func")))
                pos += len(lines[i]) + 1
                i += 1
            if frames:
                run.dump_frames = frames

    def after_marker(rest: str) -> None:
        """What follows a test's " ... ": its status, or what it printed."""
        nonlocal cur
        st = _exact_status(rest)
        if st:
            finish(cur, st[0], st[1], pos)
            cur = None
        else:
            cur_lines.append(rest)
            faulthandler_output(rest)

    while i < len(lines):
        line = lines[i]
        line_start = pos
        pos += len(line) + 1
        i += 1
        ln = line.rstrip("\r")
        if ln == SEPARATOR1:
            close_pending(line_start)
            i, pos = _summary_entry(run, lines, i, pos, universe)
            continue
        m = _START.match(ln)
        tail = m.group("tail") if m else ""
        if universe is not None and (m is None or not (m.group("method") in FIXTURES or
                                                       known(test_id(m.group("method"), m.group("paren"))))):
            m = None
            for found in _DESC_IN.finditer(ln):
                if known(test_id(found.group("method"), found.group("paren"))):
                    m, tail = found, ln[found.end():]
                    break
        if m:
            tid = test_id(m.group("method"), m.group("paren"))
            fixture = m.group("method") in FIXTURES
            if fixture or known(tid):
                if m.re is _START and m.group("sub"):
                    # A subtest's own line: it fails its test.
                    after = tail.split(" ... ", 1)
                    st = _status_of(after[1]) if len(after) == 2 else None
                    if st and st[0] in (FAIL, ERROR) and cur is not None:
                        sub_failed.setdefault(cur, st[0])
                    continue
                if fixture:
                    name = f"{m.group('method')} ({m.group('paren')})"
                    st = _status_of(tail.split(" ... ", 1)[1]) if " ... " in tail else None
                    if st:
                        run.fixtures[name] = (st[0], st[1])
                    continue
                if cur is not None and cur != tid:
                    close_pending(line_start)
                if cur != tid or tid not in run.tests:
                    run.tests[tid] = TestResult(MISSING, start=line_start)
                cur, cur_marker = tid, False
                cur_lines.clear()
                if tail.startswith(" ... "):
                    cur_marker = True
                    after_marker(tail[5:])
                continue
        if cur is not None:
            if not cur_marker:
                # The docstring line of a test's description.
                if " ... " in ln:
                    cur_marker = True
                    after_marker(ln.split(" ... ", 1)[1])
                continue
            st = _exact_status(ln)
            if st:
                finish(cur, st[0], st[1], pos)
                cur = None
                continue
            if _RAN.match(ln):
                # The end of the run's tests: the last one's status ended
                # its last line, before the separator.
                close_pending(line_start)
                continue
            if ln.strip() and ln != SEPARATOR2:
                cur_lines.append(ln)
            # A line the test printed: a regrtest line may still follow.
        mm = _MODULE_SKIPPED.match(ln)
        if mm:
            run.module_skipped = mm.group("why")
            continue
        mm = _MODULE_CRASHED.match(ln)
        if mm:
            run.module_crashed = mm.group("why")
            continue
        mm = _RESULT.match(ln)
        if mm:
            close_pending(line_start)
            run.result = mm.group("result").strip()
            continue
        faulthandler_output(ln)
    if cur is not None:
        # Its status may end its last line only if nothing came after it
        # (a new test, the summary); at the end of a run cut short, it was
        # still running.
        st = last_status() if run.complete else None
        if st is not None:
            finish(cur, st[0], st[1], len(text))
        elif cur in sub_failed:
            finish(cur, FAIL if sub_failed[cur] == FAIL else ERROR, "a subtest failed", len(text))
        elif not run.complete:
            run.in_flight = cur
            run.in_flight_start = run.tests[cur].start
            del run.tests[cur]
    for tid, kind in sub_failed.items():
        r = run.tests.get(tid)
        if r is not None and r.outcome in (PASS, MISSING):
            r.outcome = FAIL if kind == FAIL else ERROR
            r.detail = r.detail or "a subtest failed"
    return run


def _summary_entry(run: ParsedRun, lines: list[str], i: int, pos: int,
                   universe: set[str] | None) -> tuple[int, int]:
    """One ``FAIL:`` / ``ERROR:`` section of the summary, after its
    separator line: records the failure text on its test (or fixture)."""
    if i >= len(lines):
        return i, pos
    head = _SUMMARY_HEAD.match(lines[i].rstrip("\r"))
    if not head:
        return i, pos
    pos += len(lines[i]) + 1
    i += 1
    if i + 1 < len(lines) and lines[i].rstrip("\r") != SEPARATOR2 and lines[i + 1].rstrip("\r") == SEPARATOR2:
        # The first line of the test's docstring, part of its description.
        pos += len(lines[i]) + 1
        i += 1
    body: list[str] = []
    # Its own separator; an UNEXPECTED SUCCESS has none (the separator that
    # follows it is the one before "Ran N tests").
    if i < len(lines) and lines[i].rstrip("\r") == SEPARATOR2 and not (
            i + 1 < len(lines) and _RAN.match(lines[i + 1])):
        pos += len(lines[i]) + 1
        i += 1
        while i < len(lines):
            ln = lines[i].rstrip("\r")
            if ln == SEPARATOR1:
                break
            if ln == SEPARATOR2 and i + 1 < len(lines) and _RAN.match(lines[i + 1]):
                break
            body.append(ln)
            pos += len(lines[i]) + 1
            i += 1
    desc = head.group("desc")
    kind = {"FAIL": FAIL, "ERROR": ERROR, "UNEXPECTED SUCCESS": XPASS}[head.group("kind")]
    text = _trim("\n".join(body).strip("\n"))
    m = _START.match(desc)
    if not m:
        return i, pos
    if m.group("method") in FIXTURES:
        name = f"{m.group('method')} ({m.group('paren')})"
        run.fixtures[name] = (kind, exception_line(text))
        return i, pos
    tid = test_id(m.group("method"), m.group("paren"))
    if universe is not None and tid not in universe:
        if m.group("paren").startswith("unittest.loader._FailedTest"):
            run.module_crashed = run.module_crashed or exception_line(text)
        return i, pos
    r = run.tests.get(tid)
    if r is None:
        r = run.tests[tid] = TestResult(kind)
    if kind in (FAIL, ERROR) and r.outcome not in (FAIL, ERROR):
        r.outcome = kind
    if text:
        first = not r.text
        r.text = text if first else _trim(r.text + "\n\n" + text)
        if first or not r.detail or r.detail == "a subtest failed":
            r.detail = exception_line(text)
    return i, pos


def _trim(text: str, limit: int = 2000) -> str:
    if len(text) <= limit:
        return text
    return text[: limit // 4] + "\n[...]\n" + text[-(3 * limit) // 4:]


def describe_text(s: str) -> str:
    """Output text (read as latin-1) as the UTF-8 it was."""
    try:
        return s.encode("latin-1").decode("utf-8", "replace")
    except UnicodeEncodeError:
        return s


def list_cases_output(data: bytes) -> list[str]:
    """The ids ``python3 -m test --list-cases MODULE`` printed."""
    out = []
    for ln in data.decode("utf-8", "replace").splitlines():
        ln = ln.strip()
        if re.fullmatch(r"[A-Za-z_][\w.]*\.[A-Za-z_]\w*", ln):
            out.append(ln)
    return out
