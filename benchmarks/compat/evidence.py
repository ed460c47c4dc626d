"""What the guest saw while a test ran: the audit records of the run cut
into tests by the marks regrtest_marked.py leaves at every test's start,
described as lines, and the short name of a reason that counts alike
failures together."""

from __future__ import annotations

import bisect
import re
from collections import Counter
from collections.abc import Sequence

from . import regrtest
from .regrtest import CRASH, HANG, MISSING, PASS, SKIP, XFAIL, ParsedRun, TestResult

# Errors in the audit that programs meet all the time (probing for files,
# connecting to ports nothing listens on): not evidence of anything.
_ROUTINE_ERRNOS = {"ENOENT", "EEXIST", "ENOTDIR", "EISDIR", "ENOTEMPTY", "EAGAIN", "EINPROGRESS",
                   "EINTR", "ECONNREFUSED", "ELOOP", "ENAMETOOLONG"}
# Calls that fail in the ordinary course of things, whatever the errno says.
_ROUTINE_CALLS = {("readlink", "EINVAL")}  # not a symbolic link


def interesting(rec: dict) -> bool:
    """Whether an audit record may explain a failure (kept while a run lasts)."""
    if rec.get("call") == "note_unsupported" or rec.get("decision") == "deny":
        return True
    return (rec.get("decision") == "error" and rec.get("errno_name") not in _ROUTINE_ERRNOS
            and (rec.get("call"), rec.get("errno_name")) not in _ROUTINE_CALLS)


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


BEFORE_THE_FIRST_TEST = "before the first test: "


def evidence_lines(records: Sequence[dict]) -> list[str]:
    """Audit records as lines, most direct first, alike ones counted."""
    seen = Counter(describe_audit(r) for r in records)
    # ENOSYS first: the most direct reason there is.
    lines = sorted(seen.items(), key=lambda kv: (0 if "ENOSYS (not handled" in kv[0] else 1, -kv[1]))
    return [text + (f" (x{n})" if n > 1 else "") for text, n in lines[:6]]


def attribute(parsed: ParsedRun, test_starts: Sequence[tuple[int, str]],
              records: Sequence[dict]) -> dict[str, list[str]]:
    """Evidence for every test of ``parsed`` that did not pass: the audit's
    marks of test starts (regrtest_marked.py) cut it into tests, and a call
    belongs to the test whose mark came last before it (its own calls and
    those of the processes it started; a test starts only after the last
    one ended)."""
    out: dict[str, list[str]] = {}
    if not test_starts or not records:
        return out
    starts = sorted(test_starts)
    times = [t for t, _ in starts]
    records = sorted(records, key=lambda r: r.get("time_ns", 0))
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
            out[tid] = evidence_lines(recs)
    # A test skipped for want of a feature often decided so at import, before
    # any test started (skipUnless(can_use_pidfd())): show the calls that
    # failed then, as such; they do not name its reason (reason_key).
    early = [r for r in records[:bisect.bisect_left(rtimes, times[0])] if r.get("call") == "note_unsupported"]
    if early:
        lines = [f"{BEFORE_THE_FIRST_TEST}{e}" for e in evidence_lines(early)]
        for tid in wanted:
            r = parsed.tests.get(tid)
            if r is not None and r.outcome == SKIP and tid not in out:
                out[tid] = lines
    return out


def reason_key(result: TestResult, evidence: Sequence[str]) -> str:
    """A short, stable name for why a test did not pass inside, so that the
    tests failing for one reason are counted together."""
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
    line = line.strip()
    m = re.match(r"^([\w.]+): \[Errno (\d+)\] ([^:'\"]+)", line)
    if m:
        return f"{m.group(1)}: [Errno {m.group(2)}] {m.group(3).strip()}"
    line = re.sub(r"0x[0-9a-fA-F]+", "0x...", line)
    line = re.sub(r"'[^']*'", "'...'", line)
    line = re.sub(r'"[^"]*"', '"..."', line)
    line = re.sub(r"\b\d+(\.\d+)?\b", "N", line)
    return line[:160]
