"""Raw picoprocesses: a static freestanding program under the seccomp filter alone.

What is shown here:

* a probe that uses only direct calls (write, mmap/munmap, a real thread made
  with clone and its own stack, futex wait/wake between the threads, exit)
  runs to completion under ``picoproc run --raw`` and under the Python API;
* one probe per forbidden operation is killed with SIGSYS (status 159 from the
  CLI, WTERMSIG == SIGSYS from picoproc.raw), between its "before" and
  "after" markers, and the test checks from outside that the operation had no
  effect.  The same probe run natively (no picoproc) is the control: there the
  call takes effect, which proves that the probe's arguments are real.  (The
  run's namespaces may stand in the way too; the kill between the markers is
  what shows that the filter itself refused the call.);
* bad input to the CLI gives one line on stderr naming the problem;
* nothing leaks: no processes left behind, no monitor fds, no host environment.
"""

from __future__ import annotations

import ctypes
import dataclasses
import os
import pathlib
import select
import signal
import subprocess
import sys
import termios
import tty
import uuid

import psutil
import pytest
from conftest import GUEST_TIMEOUT

pytestmark = pytest.mark.root

SIGSYS_STATUS = 128 + signal.SIGSYS  # 159


@dataclasses.dataclass(frozen=True)
class Outcome:
    via: str  # "cli" or "api"
    status: int
    signal: int | None  # only known through the API
    stdout: str
    stderr: str


@pytest.fixture(params=["cli", "api"])
def confined(request, run_picoproc, raw_run):
    """confined(argv, stdin=fd) -> Outcome: runs argv as a raw picoprocess
    through the CLI (``picoproc run --raw --``) or the Python API (run_raw's
    spawn path), so that every forbidden-call test covers both."""

    def run(argv, stdin=None):
        argv = [str(a) for a in argv]
        if request.param == "cli":
            proc = run_picoproc("run", "--raw", "--", *argv,
                                stdin=subprocess.DEVNULL if stdin is None else stdin)
            return Outcome("cli", proc.returncode, None, proc.stdout, proc.stderr)
        r = raw_run(argv, stdin=stdin)
        return Outcome("api", r.status, r.signal, r.stdout, r.stderr)

    return run


def run_native(argv, stdin=subprocess.DEVNULL) -> subprocess.CompletedProcess:
    """The control: the same probe with no sandbox at all."""
    return subprocess.run([str(a) for a in argv], stdin=stdin, capture_output=True,
                          text=True, timeout=GUEST_TIMEOUT, check=False)


def assert_killed_between_markers(outcome: Outcome, op: str) -> None:
    """Killed by SIGSYS after "before OP" and before anything else."""
    assert outcome.status == SIGSYS_STATUS, (outcome.status, outcome.stdout, outcome.stderr)
    if outcome.via == "api":
        assert outcome.signal == signal.SIGSYS
    else:
        # The CLI explains the status in one line and never shows a traceback.
        lines = outcome.stderr.splitlines()
        assert len(lines) == 1 and "SIGSYS" in lines[0], outcome.stderr
    assert outcome.stdout == f"before {op}\n"


def assert_took_effect_natively(proc: subprocess.CompletedProcess, op: str) -> None:
    assert proc.returncode == 0, (proc.stdout, proc.stderr)
    assert f"after {op} ret=" in proc.stdout
    ret = int(proc.stdout.split(f"after {op} ret=")[1].split()[0])
    assert ret >= 0, f"the control itself failed: {proc.stdout}"


def need_root(why: str) -> None:
    if os.geteuid() != 0:
        pytest.skip(f"needs root: {why}")


# ----------------------------------------------------------------------------
# The direct-call probe
# ----------------------------------------------------------------------------

DIRECT_OK_OUTPUT = (
    "main: mapped\n"
    "thread: started\n"
    "thread: got 42\n"
    "main: reply 43\n"
    "main: thread gone\n"
    "main: done\n"
)


def test_direct_call_probe_runs_under_raw_cli(guest_bin, run_picoproc):
    """write, mmap/munmap, clone of a real thread, futex wait/wake, exit: all
    direct calls, so the probe completes under the raw filter."""
    proc = run_picoproc("run", "--raw", "--", guest_bin / "direct_ok")
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, DIRECT_OK_OUTPUT, "")


def test_direct_call_probe_runs_under_raw_api(guest_bin, raw_run):
    r = raw_run([guest_bin / "direct_ok"])
    assert (r.exit_code, r.signal, r.stdout) == (0, None, DIRECT_OK_OUTPUT)


def test_exit_status_is_the_guests(guest_bin, run_picoproc):
    """A non-zero exit code passes through unchanged (the forbid probe exits 2
    on an unknown operation, before making any call outside the ABI)."""
    proc = run_picoproc("run", "--raw", "--", guest_bin / "forbid", "no-such-op")
    assert proc.returncode == 2
    assert "unknown operation no-such-op" in proc.stdout


# ----------------------------------------------------------------------------
# Forbidden calls with an effect the test can observe from outside
# ----------------------------------------------------------------------------


def test_openat_is_killed_and_creates_nothing(guest_bin, confined, tmp_path):
    target = tmp_path / "created-by-guest"
    outcome = confined([guest_bin / "forbid", "openat", target])
    assert_killed_between_markers(outcome, "openat")
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []

    control = tmp_path / "created-natively"
    assert_took_effect_natively(run_native([guest_bin / "forbid", "openat", control]), "openat")
    assert control.exists()


def _mounts_with_source(source: str) -> list[str]:
    return [line for line in pathlib.Path("/proc/self/mountinfo").read_text().splitlines()
            if f" - tmpfs {source} " in line]


def test_mount_is_killed_and_mounts_nothing(guest_bin, confined, tmp_path):
    """The probe mounts a tmpfs (source name "picoproc-probe") on a directory
    of the test's: in a shared mount namespace the directory's device and
    /proc/self/mountinfo would show it.  (When the run has a mount namespace
    of its own, that alone would hide such a mount from here; the SIGSYS kill
    right after "before" is what shows the filter refused the call.)"""
    target = tmp_path / "mountpoint"
    target.mkdir()
    dev_before = target.stat().st_dev
    try:
        outcome = confined([guest_bin / "forbid", "mount", target])
        assert_killed_between_markers(outcome, "mount")
        assert target.stat().st_dev == dev_before
        assert not _mounts_with_source("picoproc-probe")
    finally:
        # Never leave a mount behind, even when the assertion above failed.
        if target.stat().st_dev != dev_before:
            subprocess.run(["umount", "-l", str(target)], timeout=GUEST_TIMEOUT, check=False)


@pytest.fixture
def raw_pty():
    """A pty whose slave is in raw mode (no line discipline buffering, no echo),
    so any byte pushed into its input queue is readable at once."""
    master, slave = os.openpty()
    tty.setraw(slave, termios.TCSANOW)
    yield master, slave
    os.close(master)
    os.close(slave)


def _pending_input(fd: int) -> bytes:
    """What can be read from fd right now, without waiting."""
    os.set_blocking(fd, False)
    try:
        return os.read(fd, 4096)
    except BlockingIOError:
        return b""
    finally:
        os.set_blocking(fd, True)


@pytest.mark.parametrize("op", ["ioctl_tiocsti", "ioctl_tiocsti_hi32"])
def test_tiocsti_is_killed_and_injects_nothing(guest_bin, confined, raw_pty, op):
    """TIOCSTI pushes bytes into a terminal's input as if typed: the classic
    escape into the session that owns the terminal.  The probe's stdin is a pty
    the test owns; had the call run, "INJECTED" would be readable on the
    slave.  The _hi32 variant sets garbage in the upper half of the request
    (the kernel truncates it to 32 bits, so it would still be TIOCSTI)."""
    master, slave = raw_pty
    outcome = confined([guest_bin / "forbid", op], stdin=slave)
    assert_killed_between_markers(outcome, op)
    # The guest is dead and reaped: anything it injected would be queued now.
    assert _pending_input(slave) == b""
    assert _pending_input(master) == b""


def test_tiocsti_control_injects_natively(guest_bin, raw_pty):
    need_root("TIOCSTI on a terminal that is not the caller's controlling tty")
    _, slave = raw_pty
    proc = run_native([guest_bin / "forbid", "ioctl_tiocsti"], stdin=slave)
    assert_took_effect_natively(proc, "ioctl_tiocsti")
    assert _pending_input(slave) == b"INJECTED\n"


class Victim:
    """secret_holder running natively: holds an 8-byte secret and prints it,
    as it currently is in its memory, whenever asked."""

    def __init__(self, path: pathlib.Path):
        self.proc = subprocess.Popen([str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        pid, addr = self._line().split()
        self.pid, self.addr = int(pid), addr
        assert self.pid == self.proc.pid

    def _line(self) -> str:
        ready, _, _ = select.select([self.proc.stdout], [], [], GUEST_TIMEOUT)
        assert ready, "secret_holder did not answer"
        return self.proc.stdout.readline().decode()

    def secret(self) -> str:
        self.proc.stdin.write(b"?")
        self.proc.stdin.flush()
        return self._line().rstrip("\n")

    def status(self) -> dict[str, str]:
        fields = {}
        for line in pathlib.Path(f"/proc/{self.pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            fields[key] = value.strip()
        return fields

    def close(self) -> None:
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=GUEST_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def victim(guest_bin):
    v = Victim(guest_bin / "secret_holder")
    yield v
    v.close()


def assert_victim_untouched(victim: Victim) -> None:
    status = victim.status()
    assert status["TracerPid"] == "0"
    assert status["State"].startswith("S"), status["State"]  # asleep in read, not stopped
    assert victim.proc.poll() is None
    assert victim.secret() == "SECRET42"


def test_ptrace_is_killed_and_victim_untouched(guest_bin, confined, victim):
    """The probe would attach to a process the test runs, overwrite its secret
    with PTRACE_POKEDATA and detach: the change would outlive the probe."""
    outcome = confined([guest_bin / "forbid", "ptrace", victim.pid, victim.addr])
    assert_killed_between_markers(outcome, "ptrace")
    assert_victim_untouched(victim)


def test_ptrace_control_overwrites_natively(guest_bin, victim):
    need_root("ptrace of a process that is not a descendant")
    proc = run_native([guest_bin / "forbid", "ptrace", victim.pid, victim.addr])
    assert_took_effect_natively(proc, "ptrace")
    assert victim.secret() == "PWNED!!!"


def test_process_vm_readv_is_killed_and_reads_nothing(guest_bin, confined, victim):
    """The probe would copy the victim's secret into its own memory and print it."""
    outcome = confined([guest_bin / "forbid", "process_vm_readv", victim.pid, victim.addr])
    assert_killed_between_markers(outcome, "process_vm_readv")
    assert "SECRET42" not in outcome.stdout + outcome.stderr
    assert_victim_untouched(victim)


def test_process_vm_readv_control_reads_natively(guest_bin, victim):
    need_root("process_vm_readv of another process")
    proc = run_native([guest_bin / "forbid", "process_vm_readv", victim.pid, victim.addr])
    assert_took_effect_natively(proc, "process_vm_readv")
    assert "read: SECRET42" in proc.stdout


# keyctl(2) through libc's syscall(): Python has no binding.
_libc = ctypes.CDLL(None, use_errno=True)
NR_ADD_KEY, NR_KEYCTL = 248, 250
KEY_SPEC_SESSION_KEYRING = -3
KEYCTL_READ, KEYCTL_INVALIDATE = 11, 21


def _keyctl(*args) -> int:
    ret = _libc.syscall(ctypes.c_long(NR_KEYCTL), *[ctypes.c_long(a) for a in args])
    return ret if ret >= 0 else -ctypes.get_errno()


@pytest.fixture
def session_key():
    """A "user" key in the test's session keyring (inherited by the probe),
    invalidated again at the end."""
    if not pathlib.Path("/proc/keys").exists():
        pytest.skip("the kernel has no key management (CONFIG_KEYS)")
    payload = b"picoproc-key-payload"
    serial = _libc.syscall(
        ctypes.c_long(NR_ADD_KEY), b"user", f"picoproc-test-{uuid.uuid4().hex}".encode(),
        payload, ctypes.c_size_t(len(payload)), ctypes.c_long(KEY_SPEC_SESSION_KEYRING))
    if serial < 0:
        pytest.skip(f"add_key failed: {os.strerror(ctypes.get_errno())}")
    yield serial, payload
    _keyctl(KEYCTL_INVALIDATE, serial)


def _read_key(serial: int) -> bytes | int:
    buf = ctypes.create_string_buffer(256)
    n = _libc.syscall(ctypes.c_long(NR_KEYCTL), ctypes.c_long(KEYCTL_READ), ctypes.c_long(serial),
                      buf, ctypes.c_size_t(len(buf)))
    return buf.raw[:n] if n >= 0 else -ctypes.get_errno()


def test_keyctl_is_killed_and_key_survives(guest_bin, confined, session_key):
    """The probe would invalidate a key that the test put in the session
    keyring it inherits; the key must still be readable afterwards."""
    serial, payload = session_key
    outcome = confined([guest_bin / "forbid", "keyctl", serial])
    assert_killed_between_markers(outcome, "keyctl")
    assert _read_key(serial) == payload


def test_keyctl_control_invalidates_natively(guest_bin, session_key):
    serial, payload = session_key
    proc = run_native([guest_bin / "forbid", "keyctl", serial])
    assert_took_effect_natively(proc, "keyctl")
    assert _read_key(serial) != payload


class _FileHandle(ctypes.Structure):
    MAX_HANDLE_SZ = 128
    _fields_ = [("handle_bytes", ctypes.c_uint), ("handle_type", ctypes.c_int),
                ("f_handle", ctypes.c_ubyte * MAX_HANDLE_SZ)]


@pytest.fixture
def secret_by_handle(tmp_path):
    """A file the guest is given no path to, and its file handle (hex of struct
    file_handle, as name_to_handle_at returns it)."""
    secret = tmp_path / "secret.txt"
    secret.write_text("HANDLE-SECRET")
    fh = _FileHandle(handle_bytes=_FileHandle.MAX_HANDLE_SZ)
    mount_id = ctypes.c_int()
    AT_FDCWD = -100
    if _libc.name_to_handle_at(AT_FDCWD, str(secret).encode(), ctypes.byref(fh),
                               ctypes.byref(mount_id), 0) != 0:
        pytest.skip(f"name_to_handle_at: {os.strerror(ctypes.get_errno())} on this file system")
    handle_hex = bytes(fh)[: 8 + fh.handle_bytes].hex()
    # Any fd on the same file system names the mount; a regular file rather
    # than the directory, because the CLI (Python) refuses a directory as stdin.
    anchor = tmp_path / "anchor"
    anchor.write_text("")
    mount_fd = os.open(anchor, os.O_RDONLY)
    yield handle_hex, mount_fd
    os.close(mount_fd)


def test_open_by_handle_at_is_killed_and_reads_nothing(guest_bin, confined, secret_by_handle):
    """open_by_handle_at opens a file from its handle, skipping every path
    check (the "shocker" container escape).  stdin is an fd on the same file
    system, which the call needs to name the mount."""
    handle_hex, mount_fd = secret_by_handle
    outcome = confined([guest_bin / "forbid", "open_by_handle_at", handle_hex], stdin=mount_fd)
    assert_killed_between_markers(outcome, "open_by_handle_at")
    assert "HANDLE-SECRET" not in outcome.stdout + outcome.stderr


def test_open_by_handle_at_control_reads_natively(guest_bin, secret_by_handle):
    need_root("open_by_handle_at needs CAP_DAC_READ_SEARCH")
    handle_hex, mount_fd = secret_by_handle
    proc = run_native([guest_bin / "forbid", "open_by_handle_at", handle_hex], stdin=mount_fd)
    assert_took_effect_natively(proc, "open_by_handle_at")
    assert "read: HANDLE-SECRET" in proc.stdout


def test_clone_newuser_is_killed_and_makes_no_child(guest_bin, confined):
    """The probe would fork into a new user namespace and the child would
    announce itself; neither the child's line nor any leftover process appears."""
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    outcome = confined([guest_bin / "forbid", "clone_newuser"])
    assert_killed_between_markers(outcome, "clone_newuser")
    assert "child in a new user namespace" not in outcome.stdout
    assert {p.pid for p in psutil.Process().children(recursive=True)} <= before


def test_clone_newuser_control_forks_natively(guest_bin):
    need_root("user namespaces may be restricted for unprivileged users")
    proc = run_native([guest_bin / "forbid", "clone_newuser"])
    assert_took_effect_natively(proc, "clone_newuser")
    assert "child in a new user namespace\n" in proc.stdout


# ----------------------------------------------------------------------------
# Forbidden calls whose effect stays inside the caller
# ----------------------------------------------------------------------------

# op -> why nothing can be observed from outside (the evidence is then the
# SIGSYS kill between the markers, plus the native control showing the call
# with these arguments succeeds).
INWARD_OPS = {
    "io_uring_setup": "creates an io_uring instance: a new fd private to the caller",
    "bpf": "creates a BPF array map: a new fd private to the caller",
    "userfaultfd": "creates a userfaultfd: a new fd private to the caller",
    "perf_event_open": "a task-clock counter on the caller itself",
    "seccomp": "stacks a filter on the caller (it could pre-empt the monitor's notifier)",
    "unshare": "moves the caller alone into new user and mount namespaces",
    "setns": "joins the namespace behind stdin (the test's own UTS namespace)",
    "socket_netlink": "opens a NETLINK_ROUTE socket; nothing is sent on it",
    "rt_sigaction_sigsys": "installs a SIGSYS handler in the caller",
    "rt_sigaction_hi32": "SIGSYS with garbage in the upper 32 bits (the kernel truncates to int)",
}


@pytest.fixture
def uts_ns_fd():
    fd = os.open("/proc/self/ns/uts", os.O_RDONLY)
    yield fd
    os.close(fd)


@pytest.mark.parametrize("op", sorted(INWARD_OPS))
def test_inward_call_is_killed(guest_bin, confined, uts_ns_fd, op):
    """These calls change only the caller (see INWARD_OPS for each), so there is
    no outside effect to look for: the evidence is the SIGSYS kill right
    after "before" and the missing "after" marker."""
    outcome = confined([guest_bin / "forbid", op], stdin=uts_ns_fd)
    assert_killed_between_markers(outcome, op)


@pytest.mark.parametrize("op", sorted(INWARD_OPS))
def test_inward_call_control_succeeds_natively(guest_bin, uts_ns_fd, op):
    need_root("namespaces, bpf and perf need privileges")
    proc = run_native([guest_bin / "forbid", op], stdin=uts_ns_fd)
    assert_took_effect_natively(proc, op)


# ----------------------------------------------------------------------------
# Bad input to the CLI
# ----------------------------------------------------------------------------


def assert_one_line_error(proc: subprocess.CompletedProcess, *needles: str) -> None:
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


@pytest.mark.parametrize("args", [["run", "--raw"], ["run", "--raw", "--"]])
def test_cli_missing_program(run_picoproc, args):
    assert_one_line_error(run_picoproc(*args), "no program")


def test_cli_dynamic_program(run_picoproc):
    proc = run_picoproc("run", "--raw", "--", "/bin/ls")
    assert_one_line_error(proc, "/bin/ls", "dynamically linked")
    assert proc.stdout == ""


def test_cli_text_file_with_exec_bit(run_picoproc, tmp_path):
    prog = tmp_path / "notes.txt"
    prog.write_text("just some text\n")
    prog.chmod(0o755)
    assert_one_line_error(run_picoproc("run", "--raw", "--", prog), str(prog), "not an ELF")


def test_cli_shebang_script(run_picoproc, tmp_path):
    prog = tmp_path / "script.sh"
    prog.write_text("#!/bin/sh\necho ran > ran.txt\n")
    prog.chmod(0o755)
    proc = run_picoproc("run", "--raw", "--", prog, cwd=tmp_path)
    assert_one_line_error(proc, str(prog), "#!")
    assert not (tmp_path / "ran.txt").exists()


def test_cli_nonexistent_program(run_picoproc, tmp_path):
    missing = tmp_path / "no-such-program"
    assert_one_line_error(run_picoproc("run", "--raw", "--", missing), str(missing))


def test_cli_program_not_on_path(run_picoproc):
    name = f"picoproc-no-such-program-{uuid.uuid4().hex[:8]}"
    assert_one_line_error(run_picoproc("run", "--raw", "--", name), name, "not found")


def test_cli_directory_as_program(run_picoproc, tmp_path):
    assert_one_line_error(run_picoproc("run", "--raw", "--", tmp_path), str(tmp_path))


def test_cli_program_without_exec_bit(run_picoproc, guest_bin, tmp_path):
    prog = tmp_path / "hello"
    prog.write_bytes((guest_bin / "hello").read_bytes())
    prog.chmod(0o644)
    assert_one_line_error(run_picoproc("run", "--raw", "--", prog), str(prog), "not executable")


@pytest.mark.parametrize("args,flag", [
    (["run", "--no-such-flag", "--", "x"], "--no-such-flag"),
    (["--no-such-flag"], "--no-such-flag"),
    (["run", "--raw", "--env", "=oops", "--", "x"], "--env"),
])
def test_cli_bad_flag(run_picoproc, args, flag):
    assert_one_line_error(run_picoproc(*args), flag)


def test_cli_no_command(run_picoproc):
    assert_one_line_error(run_picoproc(), "no command")


def test_cli_broken_native_module_is_one_line(guest_bin):
    """A missing or stale C module is an installation problem: the CLI says so
    in one line instead of a traceback.  (The import is made to fail by
    blocking picoproc._native in sys.modules before main() runs.)"""
    code = ("import sys; sys.modules['picoproc._native'] = None\n"
            "from picoproc.cli import main\n"
            f"sys.exit(main(['run', '--raw', '--', {str(guest_bin / 'hello')!r}]))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=GUEST_TIMEOUT, check=False)
    assert_one_line_error(proc, "C module")
    assert proc.stdout == ""


# ----------------------------------------------------------------------------
# Nothing leaks into the guest, nothing is left behind
# ----------------------------------------------------------------------------


def _introspect(stdout: str) -> tuple[list[int], list[str], list[str]]:
    fds, args, env = [], [], []
    for line in stdout.splitlines():
        kind, _, value = line.partition(" ")
        {"fd": lambda v: fds.append(int(v)), "arg": args.append, "env": env.append}[kind](value)
    return fds, args, env


@pytest.fixture
def inheritable_fds():
    """Open, inheritable (not close-on-exec) fds in the monitor: a careless
    spawn would pass them on.  One is placed high, near the loader fd."""
    r, w = os.pipe()
    os.set_inheritable(r, True)
    os.set_inheritable(w, True)
    high = os.dup2(r, 1000, inheritable=True)
    yield [r, w, high]
    for fd in (r, w, high):
        os.close(fd)


def test_guest_inherits_only_stdio_api(guest_bin, raw_run, inheritable_fds):
    """The loader fd (1023) is close-on-exec in raw mode and every other
    monitor fd is closed, so the guest holds exactly 0, 1 and 2."""
    r = raw_run([guest_bin / "introspect", "a b", ""], env={"ONLY": "this", "EMPTY": ""})
    assert (r.exit_code, r.signal) == (0, None)
    fds, args, env = _introspect(r.stdout)
    assert fds == [0, 1, 2]
    assert args == [str(guest_bin / "introspect"), "a b", ""]
    assert env == ["ONLY=this", "EMPTY="]


def test_guest_inherits_only_stdio_cli(guest_bin, run_picoproc, inheritable_fds):
    """Through the CLI: the monitor's own environment (PATH, HOME, a secret)
    does not reach the guest; only the manifest's env and --env do."""
    host_env = dict(os.environ, PICOPROC_TEST_SECRET="do-not-leak")
    proc = run_picoproc("run", "--raw", "--env", "K=V=W", "--", guest_bin / "introspect",
                        env=host_env)
    assert proc.returncode == 0, proc.stderr
    fds, _, env = _introspect(proc.stdout)
    assert fds == [0, 1, 2]
    from picoproc.manifest import default_manifest

    expected = [f"{k}={v}" for k, v in default_manifest().env] + ["K=V=W"]
    assert sorted(env) == sorted(expected)
    assert not any("do-not-leak" in e for e in env)


def test_no_processes_left_after_runs(guest_bin, raw_run, run_picoproc):
    """Normal exit, SIGSYS kill and a guest that forks children (the ABI
    probe): afterwards this process has no new descendants."""
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    raw_run([guest_bin / "direct_ok"])
    raw_run([guest_bin / "forbid", "bpf"])
    raw_run([guest_bin / "syscall_probe", "39,0,0,0,0,0,0", "321,0,0,0,0,0,0"])
    run_picoproc("run", "--raw", "--", guest_bin / "forbid", "mount", "/nonexistent")
    after = {p.pid for p in psutil.Process().children(recursive=True)}
    assert after <= before


def test_orphaned_grandchild_does_not_outlive_the_run(guest_bin, raw_run):
    """The guest forks a child that blocks forever on stdin (a pipe this test
    keeps open) and exits: when the run is over, that orphan must be gone too
    (docs/ARCHITECTURE.md, invariant 6), not re-parented to init and still running."""
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    r, w = os.pipe()
    try:
        result = raw_run([guest_bin / "orphan"], stdin=r, timeout=10)
        assert (result.exit_code, result.signal) == (0, None)
        assert "parent: exiting" in result.stdout
        leftovers = [p for p in psutil.process_iter(["exe", "pid"])
                     if p.info["exe"] == str(guest_bin / "orphan")]
        assert leftovers == [], f"the guest's child outlived the run: {leftovers}"
        assert {p.pid for p in psutil.Process().children(recursive=True)} <= before
    finally:
        os.close(r)
        os.close(w)


def test_guest_dies_with_the_monitor(guest_bin, picoproc_exe):
    """Killing the monitor (the CLI) with SIGKILL takes every process of the
    run with it (PR_SET_PDEATHSIG, and whatever sits between monitor and guest):
    no confined process outlives its monitor.  The guest is secret_holder,
    which waits on stdin forever."""
    r, w = os.pipe()
    monitor = subprocess.Popen([picoproc_exe, "run", "--raw", "--", guest_bin / "secret_holder"],
                               stdin=r, stdout=subprocess.PIPE)
    os.close(r)
    try:
        ready, _, _ = select.select([monitor.stdout], [], [], GUEST_TIMEOUT)
        assert ready, "the guest did not start"
        assert monitor.stdout.readline()  # the guest is running
        run = psutil.Process(monitor.pid).children(recursive=True)
        assert run, "no process under the monitor"
        monitor.kill()
        monitor.wait(timeout=GUEST_TIMEOUT)
        # They are not our children: wait for them through psutil, with a timeout.
        _, alive = psutil.wait_procs(run, timeout=GUEST_TIMEOUT)
        assert not alive, f"outlived their monitor: {alive}"
    finally:
        os.close(w)
        if monitor.poll() is None:
            monitor.kill()
            monitor.wait()


def test_core_dump_is_not_written_to_host(guest_bin, run_picoproc, tmp_path):
    """SIGSYS's default action dumps core.  With a core limit inherited from the
    caller and core_pattern "core", the kernel would write the guest's memory
    into the monitor's working directory: a file the guest put on the host."""
    import resource

    def allow_core_dumps():
        resource.setrlimit(resource.RLIMIT_CORE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))

    proc = run_picoproc("run", "--raw", "--", guest_bin / "forbid", "bpf",
                        cwd=tmp_path, preexec_fn=allow_core_dumps)
    assert proc.returncode == SIGSYS_STATUS
    assert list(tmp_path.iterdir()) == []
