"""The ABI table, its generated artifacts, and the filter the kernel enforces.

* the checked-in generated files match the table; ``picoproc abi --json``
  lists every call with its kind and constraints; the direct set stays <= 60
  and every direct call says why it is safe;
* the table parser rejects malformed tables with an error naming the entry;
* the Python model of the table (DirectCall.allows and the kinds) agrees with
  what the kernel does under the raw filter for EVERY x86-64 syscall number,
  plus rule-satisfying and hostile argument sets (syscall_probe runs each call
  in a forked child and reports its fate);
* hostile cases: garbage in the upper 32 bits of int arguments, the x32 ABI,
  i386 ``int $0x80``, clone escapes, fcntl/arch_prctl/execveat outside their
  rules, and mediated numbers with no monitor listening.
"""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import signal
import subprocess

import pytest
from conftest import GUEST_TIMEOUT, run_raw_guest
from picoproc.abi import generate, linux
from picoproc.abi.table import DIRECT_LIMIT, ABITableError, load_table, parse_table

pytestmark = pytest.mark.root

TABLE = load_table()
DIRECT_BY_NR = {d.nr: d for d in TABLE.direct}
ERRNO_BY_NR = {e.nr: e for e in TABLE.errno_calls}
MEDIATED_BY_NR = TABLE.mediated_by_nr()
NR = linux.SYSCALLS_BY_NAME
C = TABLE.constants
HI32 = 1 << 32


# ----------------------------------------------------------------------------
# The table and its generated artifacts
# ----------------------------------------------------------------------------


@pytest.mark.unit
def test_generated_files_are_in_sync(repo_root):
    stale = generate.stale_files(repo_root)
    assert stale == [], f"regenerate with `python -m picoproc.abi.generate`: {stale}"


@pytest.mark.unit
def test_stale_file_is_detected(repo_root, tmp_path):
    """The sync check can fail: a copy of the tree with one edited output is stale."""
    for path, text in generate.outputs().items():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(text)
    assert generate.stale_files(tmp_path) == []
    header = tmp_path / generate.HEADER_PATH
    header.write_text(header.read_text().replace("PICO_LOADER_FD 1023", "PICO_LOADER_FD 1022"))
    assert generate.stale_files(tmp_path) == [generate.HEADER_PATH]


def test_abi_json_lists_every_call(run_picoproc):
    proc = run_picoproc("abi", "--json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    calls = doc["calls"]
    direct = [c for c in calls if c["kind"] == "direct"]
    assert doc["direct_count"] == len(direct) == len(TABLE.direct) <= DIRECT_LIMIT == 60
    assert {c["kind"] for c in calls} == {"direct", "errno", "mediated"}
    for c in calls:
        assert {"name", "nr", "kind", "constraints"} <= set(c), c
        assert isinstance(c["constraints"], list)
    by_name = {c["name"]: c for c in calls}
    for d in TABLE.direct:
        assert by_name[d.name]["nr"] == d.nr
        assert by_name[d.name]["constraints"] == [r.text for r in d.rules]
        assert by_name[d.name]["why"].strip()
    # The argument constraints docs/ARCHITECTURE.md ("The ABI") names are there.
    assert by_name["ioctl"]["constraints"] and by_name["rt_sigaction"]["constraints"]
    assert by_name["socketpair"]["constraints"] == ["a0 == AF_UNIX"]
    assert by_name["execveat"]["constraints"] == ["a0 == loader_fd && a4 == AT_EMPTY_PATH"]
    assert by_name["clone3"]["kind"] == "errno" and by_name["clone3"]["errno"] == "ENOSYS"
    mediated = [c for c in calls if c["kind"] == "mediated"]
    assert 0 < len(mediated) <= 20
    assert all(c["nr"] >= TABLE.mediated_base for c in mediated)


def test_abi_text_lists_every_call(run_picoproc):
    proc = run_picoproc("abi")
    assert proc.returncode == 0, proc.stderr
    for call in [*TABLE.direct, *TABLE.errno_calls, *TABLE.mediated]:
        assert f" {call.name} " in proc.stdout


@pytest.mark.unit
def test_every_direct_call_is_justified_and_real():
    assert len(TABLE.direct) <= DIRECT_LIMIT
    for d in TABLE.direct:
        assert d.why.strip(), d.name
        assert NR[d.name] == d.nr
    names = [d.name for d in TABLE.direct]
    assert len(names) == len(set(names))


# Calls that must never be direct (docs/ARCHITECTURE.md, invariant 1).
NEVER_DIRECT = [
    "io_uring_setup", "io_uring_enter", "io_uring_register", "bpf", "userfaultfd",
    "perf_event_open", "keyctl", "add_key", "request_key", "ptrace", "process_vm_readv",
    "process_vm_writev", "mount", "umount2", "unshare", "setns", "open_by_handle_at",
    "name_to_handle_at", "seccomp", "openat", "open", "openat2", "socket", "connect", "bind",
    "prctl", "pivot_root", "chroot", "init_module", "finit_module", "kexec_load", "fsopen",
    "fsmount", "move_mount", "open_tree", "pidfd_getfd", "clone3", "vfork", "fork", "execve",
]


@pytest.mark.unit
@pytest.mark.parametrize("name", NEVER_DIRECT)
def test_dangerous_call_is_not_direct(name):
    assert name in NR, f"{name} is not a syscall name: the check would be vacuous"
    assert name not in {d.name for d in TABLE.direct}


# --- the parser rejects malformed tables ------------------------------------


@pytest.fixture(scope="module")
def table_text(repo_root):
    return (repo_root / "abi" / "abi_v1.toml").read_text()


@pytest.mark.unit
def test_real_table_parses(table_text):
    assert parse_table(table_text) == TABLE


def _edit(text: str, old: str, new: str) -> str:
    assert text.count(old) == 1, f"the real table no longer contains {old!r} exactly once"
    return text.replace(old, new)


def _direct_entry(name: str) -> str:
    return f'\n[[direct]]\nname = "{name}"\ngroup = "test"\nwhy = "test entry"\n'


def _before_errno(text: str, insert: str) -> str:
    """Inserts entries just before the first [[errno]] (still inside the
    [[direct]] array section of the TOML)."""
    return _edit(text, "\n[[errno]]\n", insert + "\n[[errno]]\n")


BAD_TABLES = {
    "unknown constant": (
        lambda t: _edit(t, '"a1 == TCGETS"', '"a1 == TCGETZ"'),
        ["direct.ioctl", "unknown constant", "TCGETZ"],
    ),
    "two comparisons on one argument": (
        lambda t: _edit(t, 'rules = ["a0 == AF_UNIX"]', 'rules = ["a0 == AF_UNIX && a0 != 2"]'),
        ["direct.socketpair", "a0", "twice"],
    ),
    "duplicate call": (
        lambda t: _before_errno(t, _direct_entry("read")),
        ["direct.read", "twice"],
    ),
    "unknown syscall": (
        lambda t: _before_errno(t, _direct_entry("frobnicate")),
        ["direct.frobnicate", "not an x86-64 Linux syscall"],
    ),
    "too many direct calls": (
        lambda t: _before_errno(t, "".join(
            _direct_entry(n) for n in sorted(set(NR) - {d.name for d in TABLE.direct}
                                             - {e.name for e in TABLE.errno_calls})
            [: DIRECT_LIMIT + 1 - len(TABLE.direct)])),
        [f"{DIRECT_LIMIT + 1} direct calls", f"limit is {DIRECT_LIMIT}"],
    ),
    "direct call without a reason": (
        lambda t: _edit(t, 'why = "gives a handle up; never gains authority"', 'why = "  "'),
        ["direct.close", "reason"],
    ),
    "argument index out of range": (
        lambda t: _edit(t, '"a0 == ARCH_SET_FS"', '"a6 == ARCH_SET_FS"'),
        ["direct.arch_prctl", "cannot parse", "a6"],
    ),
    "masked comparison that is not ==": (
        lambda t: _edit(t, '"a0 & CLONE_FORBIDDEN == 0"', '"a0 & CLONE_FORBIDDEN != 0"'),
        ["direct.clone", "masked"],
    ),
    "unknown key in an entry": (
        lambda t: _edit(t, 'name = "brk"\n', 'name = "brk"\nallow = "always"\n'),
        ["direct.brk", "unknown keys", "allow"],
    ),
    "duplicate mediated number": (
        lambda t: _edit(t, 'name = "stat"\nnr = 1\n', 'name = "stat"\nnr = 0\n'),
        ["mediated.stat", "nr 0"],
    ),
    "mediated range overlapping Linux": (
        lambda t: _edit(t, "mediated_base = 4096", "mediated_base = 400"),
        ["mediated_base overlaps the Linux syscall range"],
    ),
}


@pytest.mark.unit
@pytest.mark.parametrize("case", sorted(BAD_TABLES))
def test_malformed_table_is_rejected_clearly(table_text, case):
    edit, needles = BAD_TABLES[case]
    with pytest.raises(ABITableError) as info:
        parse_table(edit(table_text))
    message = str(info.value)
    assert "\n" not in message
    for needle in needles:
        assert needle in message, f"{case}: {message!r} lacks {needle!r}"


# ----------------------------------------------------------------------------
# The model against the kernel: every syscall number under the raw filter
# ----------------------------------------------------------------------------

# "Z" is the probe's zeroed 8 KiB buffer (a harmless pointer; an empty string).
Z = "Z"

# Arguments that keep each direct call harmless and non-blocking in case the
# filter lets it through (every other call gets zeros and never runs).
BENIGN = {
    # CLONE_THREAD without CLONE_SIGHAND: EINVAL if it reaches the kernel, so
    # no stray process is made; flags still pass the rule.
    "clone": [0x10000],
    # A zero timeout: returns at once instead of waiting forever.
    "ppoll": [0, 0, Z, 0, 0],
}


@dataclasses.dataclass(frozen=True)
class Case:
    label: str
    nr: int
    args: tuple  # ints or Z
    expect: str | None = None  # "killed", "ran" or "errno:NAME": stated by hand for hostile cases
    plain: bool = False  # the one benign-argument case of its number

    def numeric_args(self) -> tuple[int, ...]:
        # For the model a pointer is some non-zero user address.
        return tuple(0x400000 if a == Z else a for a in self.args)

    def argv_item(self) -> str:
        def fmt(a):
            return a if a == Z else hex(a & 0xFFFFFFFFFFFFFFFF)
        return ",".join([str(self.nr), *map(fmt, self.args)])


PASSTHROUGH_BY_NR = {nr: name for name, nr in linux.SECCOMP_PASSTHROUGH.items()}


def model_fate(nr: int, args: tuple[int, ...]) -> str:
    """What the table says the raw filter does with (nr, args)."""
    if nr in PASSTHROUGH_BY_NR:
        # The kernel skips seccomp for these (see linux.SECCOMP_PASSTHROUGH).
        return "passthrough"
    if nr in DIRECT_BY_NR:
        return "ran" if DIRECT_BY_NR[nr].allows(args) else "killed"
    if nr in ERRNO_BY_NR:
        return f"errno:{ERRNO_BY_NR[nr].errno_name}"
    if nr in MEDIATED_BY_NR:
        # Raw mode has no listener: the kernel answers USER_NOTIF with ENOSYS.
        return "errno:ENOSYS"
    return "killed"


def _args(values) -> tuple:
    values = list(values)
    return tuple(values + [0] * (6 - len(values)))


def _satisfying(base: tuple, rule) -> tuple:
    """``base`` changed as little as possible so that every comparison of
    ``rule`` holds (arguments that already satisfy it stay, e.g. clone's
    harmless CLONE_THREAD)."""
    args = list(base)
    for c in rule.comparisons:
        current = 0x400000 if args[c.arg] == Z else args[c.arg]
        if c.matches(tuple(current if i == c.arg else 0 for i in range(6))):
            continue
        if c.mask is not None:
            args[c.arg] = c.value
        else:
            args[c.arg] = {"==": c.value, "<=": c.value, ">=": c.value, "<": c.value - 1,
                           ">": c.value + 1, "!=": c.value + 1}[c.op]
    return tuple(args)


def exhaustive_cases() -> list[Case]:
    cases = []
    top = max(NR.values())
    # Every x86-64 number, the gap up to the x32 numbers and a little beyond.
    for nr in range(max(top + 1, 560)):
        name = next((n for n, v in NR.items() if v == nr), f"nr{nr}")
        base = _args(BENIGN.get(name, []))
        cases.append(Case(f"{name}{base}", nr, base, plain=True))
        call = DIRECT_BY_NR.get(nr)
        if call is None:
            continue
        for rule in call.rules:
            ok = _satisfying(base, rule)
            cases.append(Case(f"{name} satisfying {rule.text!r}", nr, ok))
            for c in rule.comparisons:
                if ok[c.arg] == Z:
                    continue
                # The kernel truncates int arguments to 32 bits: garbage above
                # must not make an allowed-looking value out of anything.
                hostile = tuple(a | HI32 if i == c.arg else a for i, a in enumerate(ok))
                cases.append(Case(f"{name} {rule.text!r} with a{c.arg} | 1<<32", nr, hostile))
    for m in TABLE.mediated:
        cases.append(Case(f"mediated {m.name}", m.nr, _args([])))
    # A reserved but unassigned mediated number is outside the ABI.
    unused = max(MEDIATED_BY_NR) + 1
    cases.append(Case(f"unassigned mediated number {unused}", unused, _args([])))
    return cases


CLONE_THREAD = 0x10000
CLONE_FLAGS_FORBIDDEN = {
    "CLONE_NEWNS": 0x00020000, "CLONE_NEWCGROUP": 0x02000000, "CLONE_NEWUTS": 0x04000000,
    "CLONE_NEWIPC": 0x08000000, "CLONE_NEWUSER": 0x10000000, "CLONE_NEWPID": 0x20000000,
    "CLONE_NEWNET": 0x40000000, "CLONE_PARENT": 0x00008000, "CLONE_PTRACE": 0x00002000,
}
TIOCSTI, TIOCLINUX = 0x5412, 0x541C
F_SETOWN, F_SETSIG, F_SETLEASE, F_NOTIFY, F_SETPIPE_SZ = 8, 10, 1024, 1026, 1031
ARCH_SET_CPUID, ARCH_SHSTK_ENABLE = 0x1012, 0x5001
AT_EMPTY_PATH, AT_SYMLINK_NOFOLLOW = 0x1000, 0x100
AF_UNIX, AF_INET, SOCK_STREAM = 1, 2, 1
SIGSYS = 31


def hostile_cases() -> list[Case]:
    """The argument-rule attacks, each with the fate stated by hand (and the
    model must agree)."""
    k = "killed"
    cases = [
        Case("rt_sigaction(SIGSYS)", NR["rt_sigaction"], _args([SIGSYS, Z, 0, 8]), k),
        Case("rt_sigaction((1<<32)|SIGSYS)", NR["rt_sigaction"],
             _args([HI32 | SIGSYS, Z, 0, 8]), k),
        Case("rt_sigaction((1<<32)|SIGUSR1)", NR["rt_sigaction"], _args([HI32 | 10, 0, 0, 8]), k),
        Case("rt_sigaction(SIGUSR1) query", NR["rt_sigaction"], _args([10, 0, Z, 8]), "ran"),
        Case("rt_sigaction(65)", NR["rt_sigaction"], _args([65, 0, 0, 8]), k),
        # A wait's signal mask could block SIGSYS: raw mode has no library
        # OS to serve it (libos mode traps it from guest code, see abi/bpf.py).
        Case("ppoll with a signal mask", NR["ppoll"], _args([0, 0, Z, Z, 8]), k),
        Case("ppoll with (1<<32) as the mask", NR["ppoll"], _args([0, 0, Z, HI32, 8]), k),
        Case("ppoll without a mask", NR["ppoll"], _args([0, 0, Z, 0, 8]), "ran"),
        Case("epoll_pwait with a signal mask", NR["epoll_pwait"], _args([0, Z, 1, 0, Z, 8]), k),
        Case("epoll_pwait without a mask", NR["epoll_pwait"], _args([0, Z, 1, 0, 0, 8]), "ran"),
        Case("ioctl(TIOCSTI)", NR["ioctl"], _args([0, TIOCSTI, Z]), k),
        Case("ioctl((1<<32)|TIOCSTI)", NR["ioctl"], _args([0, HI32 | TIOCSTI, Z]), k),
        Case("ioctl(TIOCLINUX)", NR["ioctl"], _args([0, TIOCLINUX, Z]), k),
        Case("ioctl((1<<32)|TCGETS)", NR["ioctl"], _args([0, HI32 | C["TCGETS"], Z]), k),
        Case("ioctl(TCGETS)", NR["ioctl"], _args([0, C["TCGETS"], Z]), "ran"),
        # O_NOTIFICATION_PIPE (O_EXCL) turns the pipe into a watch_queue.
        Case("pipe2(O_NOTIFICATION_PIPE)", NR["pipe2"], _args([Z, 0o200]), k),
        Case("pipe2((1<<32)|O_CLOEXEC)", NR["pipe2"], _args([Z, HI32 | 0o2000000]), k),
        Case("pipe2(O_CLOEXEC|O_NONBLOCK|O_DIRECT)", NR["pipe2"], _args([Z, 0o2000000 | 0o4000 | 0o40000]),
             "ran"),
        Case("socketpair((1<<32)|AF_UNIX)", NR["socketpair"],
             _args([HI32 | AF_UNIX, SOCK_STREAM, 0, Z]), k),
        Case("socketpair(AF_INET)", NR["socketpair"], _args([AF_INET, SOCK_STREAM, 0, Z]), k),
        Case("socketpair(AF_UNIX)", NR["socketpair"], _args([AF_UNIX, SOCK_STREAM, 0, Z]), "ran"),
        Case("clone3", NR["clone3"], _args([Z, 88]), "errno:ENOSYS"),
        Case("fcntl(F_SETOWN)", NR["fcntl"], _args([0, F_SETOWN, 1]), k),
        Case("fcntl(F_SETSIG)", NR["fcntl"], _args([0, F_SETSIG, 1]), k),
        Case("fcntl(F_SETLEASE)", NR["fcntl"], _args([0, F_SETLEASE, 0]), k),
        Case("fcntl(F_NOTIFY)", NR["fcntl"], _args([0, F_NOTIFY, 0]), k),
        Case("fcntl(F_SETPIPE_SZ)", NR["fcntl"], _args([0, F_SETPIPE_SZ, 4096]), k),
        Case("fcntl((1<<32)|F_GETFD)", NR["fcntl"], _args([0, HI32 | 1]), k),
        Case("fcntl(F_GETFD)", NR["fcntl"], _args([0, 1]), "ran"),
        Case("arch_prctl(ARCH_SET_CPUID)", NR["arch_prctl"], _args([ARCH_SET_CPUID, 0]), k),
        Case("arch_prctl(ARCH_SHSTK_ENABLE)", NR["arch_prctl"], _args([ARCH_SHSTK_ENABLE, 1]), k),
        Case("arch_prctl(ARCH_GET_FS)", NR["arch_prctl"], _args([C["ARCH_GET_FS"], Z]), "ran"),
        Case("execveat(fd 0)", NR["execveat"], _args([0, Z, 0, 0, AT_EMPTY_PATH]), k),
        Case("execveat(fd 1022)", NR["execveat"], _args([1022, Z, 0, 0, AT_EMPTY_PATH]), k),
        Case("execveat(AT_FDCWD)", NR["execveat"], _args([-100, Z, 0, 0, AT_EMPTY_PATH]), k),
        Case("execveat((1<<32)|1023)", NR["execveat"],
             _args([HI32 | 1023, Z, 0, 0, AT_EMPTY_PATH]), k),
        Case("execveat(1023, flags 0)", NR["execveat"], _args([1023, Z, 0, 0, 0]), k),
        Case("execveat(1023, AT_EMPTY_PATH|AT_SYMLINK_NOFOLLOW)", NR["execveat"],
             _args([1023, Z, 0, 0, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW]), k),
        # Allowed by the filter; the raw guest's loader fd is closed on exec: EBADF.
        Case("execveat(1023, AT_EMPTY_PATH)", NR["execveat"], _args([1023, Z, 0, 0, AT_EMPTY_PATH]),
             "errno:EBADF"),
        Case("mediated open with no listener", TABLE.mediated_by_name()["open"].nr,
             _args([Z, 5, 0, 0]), "errno:ENOSYS"),
        Case("x32 getpid (nr | 0x40000000)", linux.X32_SYSCALL_BIT | NR["getpid"], _args([]), k),
        Case("x32 write (nr | 0x40000000)", linux.X32_SYSCALL_BIT | NR["write"],
             _args([1, Z, 0]), k),
        Case("clone(CLONE_THREAD) harmless", NR["clone"], _args([CLONE_THREAD]), "errno:EINVAL"),
    ]
    for flag, value in CLONE_FLAGS_FORBIDDEN.items():
        # With CLONE_THREAD and no CLONE_SIGHAND the kernel would say EINVAL,
        # so a filter bug shows up as "ran", never as a real escape.
        cases.append(Case(f"clone({flag})", NR["clone"], _args([value | CLONE_THREAD]), k))
    return cases


@dataclasses.dataclass(frozen=True)
class Fate:
    status: int | None  # raw wait status; None when the child hung
    ret: int | None  # what the call returned, if the child reported it

    def kind(self) -> str:
        if self.status is None:
            return "hang"
        if os.WIFSIGNALED(self.status) and os.WTERMSIG(self.status) == signal.SIGSYS:
            return "killed"
        if self.ret is not None and -4096 < self.ret < 0:
            return f"errno:{errno.errorcode.get(-self.ret, -self.ret)}"
        return "ran"


def run_probe(guest_bin, cases: list[Case]) -> list[Fate]:
    r = run_raw_guest([guest_bin / "syscall_probe", *(c.argv_item() for c in cases)],
                      timeout=GUEST_TIMEOUT * 4)
    assert (r.exit_code, r.signal) == (0, None), (r.status, r.stdout[-2000:], r.stderr)
    fates: dict[int, Fate] = {}
    for line in r.stdout.splitlines():
        words = line.split()
        assert words[0] == "case", line
        if words[2] == "hang":
            fates[int(words[1])] = Fate(None, None)
        else:
            ret = int(words[5]) if len(words) > 5 else None
            fates[int(words[1])] = Fate(int(words[3]), ret)
    assert sorted(fates) == list(range(len(cases))), "the probe skipped cases"
    return [fates[i] for i in range(len(cases))]


@pytest.fixture(scope="module")
def exhaustive_results(guest_bin):
    cases = exhaustive_cases() + hostile_cases()
    return cases, run_probe(guest_bin, cases)


def _agrees(case: Case, fate: Fate) -> bool:
    expected = model_fate(case.nr, case.numeric_args())
    actual = fate.kind()
    if expected == "passthrough":
        # Unfilterable, but inert outside the uprobe trampoline: uretprobe
        # raises SIGILL, uprobe answers ENXIO.  A kernel older than the
        # passthrough (or without the call) lets the filter kill it.
        sigill = fate.status is not None and os.WIFSIGNALED(fate.status) \
            and os.WTERMSIG(fate.status) == signal.SIGILL
        return actual in ("killed", "errno:ENXIO", "errno:ENOSYS") or sigill
    if expected == "ran":
        # Allowed: the call reached the kernel; it may fail with any errno or
        # even crash the child (rt_sigreturn on a zeroed frame), but neither
        # SIGSYS nor a hang.
        return actual not in ("killed", "hang")
    return actual == expected


def test_model_agrees_with_kernel_for_every_syscall_number(exhaustive_results):
    """For every x86-64 syscall number 0..max (and the numbers around), the
    rule-satisfying and the upper-32-bit-garbage variants of each constrained
    call, and every mediated number: the fate predicted from the table
    (DirectCall.allows / the kind) is the fate the kernel gave."""
    cases, fates = exhaustive_results
    disagreements = [
        f"{c.label}: model {model_fate(c.nr, c.numeric_args())}, kernel {f.kind()} "
        f"(status {f.status}, ret {f.ret})"
        for c, f in zip(cases, fates) if not _agrees(c, f)
    ]
    assert not disagreements, "\n".join(disagreements)
    # The run covered what it claims to.
    numbers = {c.nr for c in cases}
    assert set(range(max(NR.values()) + 1)) <= numbers
    kinds = {f.kind() for f in fates}
    assert {"killed", "ran", "errno:ENOSYS"} <= kinds


def test_direct_calls_reach_the_kernel_and_nothing_else_does(exhaustive_results):
    """Counted over the plain (benign-argument) cases: exactly the
    unconstrained direct calls plus the constrained ones whose benign
    arguments satisfy a rule are not killed."""
    cases, fates = exhaustive_results
    plain = [(c, f) for c, f in zip(cases, fates) if c.plain]
    not_killed = {c.nr for c, f in plain
                  if f.kind() != "killed" and c.nr not in PASSTHROUGH_BY_NR}
    expected = {c.nr for c, _ in plain
                if c.nr in DIRECT_BY_NR and DIRECT_BY_NR[c.nr].allows(c.numeric_args())}
    assert not_killed == expected | set(ERRNO_BY_NR)
    # Most direct calls are unconstrained, so most of them are in there.
    assert len(expected) >= len([d for d in TABLE.direct if not d.rules])


@pytest.mark.parametrize("case", hostile_cases(), ids=lambda c: c.label)
def test_hostile_arguments(exhaustive_results, case):
    """Each argument-rule attack has the fate stated by hand, and the model
    predicts the same fate (so the table is not merely matching itself)."""
    cases, fates = exhaustive_results
    fate = fates[cases.index(case)]
    model = model_fate(case.nr, case.numeric_args())
    if case.expect.startswith("errno:") and case.nr in DIRECT_BY_NR:
        assert model == "ran"  # allowed by the filter; the kernel itself answers the errno
    else:
        assert model == case.expect
    if case.expect == "ran":
        assert fate.kind() not in ("killed", "hang"), fate
    else:
        assert fate.kind() == case.expect, fate


# --- foreign ABIs, with an observable effect ----------------------------------


def _native_int80(guest_bin) -> subprocess.CompletedProcess:
    return subprocess.run([guest_bin / "forbid", "int80_write"], capture_output=True, text=True,
                          timeout=GUEST_TIMEOUT, check=False)


def _skip_without_int80(guest_bin) -> subprocess.CompletedProcess:
    """Natively, the int $0x80 probe writes its marker, unless the kernel has
    no i386 emulation (CONFIG_IA32_EMULATION off or ia32_emulation=0), where
    int $0x80 faults before seccomp is consulted: nothing to test then."""
    proc = _native_int80(guest_bin)
    if "INT80-WROTE" not in proc.stdout and proc.returncode < 0:
        pytest.skip("this kernel has no i386 emulation (int $0x80 faults natively)")
    return proc


@pytest.mark.parametrize("op,marker", [("x32_write", "X32-WROTE"), ("int80_write", "INT80-WROTE")])
def test_foreign_abi_write_is_killed(guest_bin, raw_run, run_picoproc, op, marker):
    """write(2) through the x32 ABI (nr | 0x40000000) and through i386
    ``int $0x80``: the filter's architecture check kills the process before
    the kernel would write the marker to stdout."""
    if op == "int80_write":
        _skip_without_int80(guest_bin)
    r = raw_run([guest_bin / "forbid", op])
    assert (r.signal, r.stdout) == (signal.SIGSYS, f"before {op}\n")
    proc = run_picoproc("run", "--raw", "--", guest_bin / "forbid", op)
    assert proc.returncode == 128 + signal.SIGSYS
    assert marker not in proc.stdout


def test_int80_control_writes_natively(guest_bin):
    """The int $0x80 probe is real: natively it writes its marker."""
    proc = _skip_without_int80(guest_bin)
    assert proc.returncode == 0
    assert "INT80-WROTE" in proc.stdout


def test_abi_linux_covers_every_syscall_with_one_handling(run_picoproc):
    """`picoproc abi --linux --json`: every x86-64 syscall exactly once, each
    direct / emulated / mediated / refused, agreeing with the ABI table."""
    from picoproc.abi.linux import SECCOMP_PASSTHROUGH, SYSCALLS_BY_NAME
    from picoproc.abi.table import load_table

    proc = run_picoproc("abi", "--linux", "--json")
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    assert sorted(r["name"] for r in rows) == sorted(SYSCALLS_BY_NAME)
    table = load_table()
    direct = {d.name for d in table.direct}
    for r in rows:
        assert r["handling"] in {"direct", "emulated", "mediated", "refused"}, r
        assert (r["handling"] == "direct") == (r["name"] in direct), r
        if r["handling"] == "refused":
            # uprobe/uretprobe pass every seccomp filter by the kernel's design:
            # the table must say the kernel, not picoproc, answers them.
            if r["name"] in SECCOMP_PASSTHROUGH:
                assert r["by"] == "kernel", r
            else:
                assert r["errno"], r
        if r["handling"] == "mediated":
            assert set(r["mediated"]) <= {m.name for m in table.mediated}, r
    by_name = {r["name"]: r for r in rows}
    # The filter answers clone3 ENOSYS only in raw mode; with a library OS it
    # traps, and the library OS makes the call with clone.
    assert by_name["clone3"]["handling"] == "emulated" and by_name["clone3"]["by"] == "library OS"
    assert by_name["io_uring_setup"]["handling"] == "refused"
    assert by_name["openat"]["handling"] == "mediated"
    assert by_name["uname"]["handling"] == "emulated"
    human = run_picoproc("abi", "--linux")
    assert human.returncode == 0 and f"{len(rows)} x86-64 Linux syscalls" in human.stdout
