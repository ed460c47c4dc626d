"""Process creation with Linux semantics: vfork, posix_spawn, system(),
clone with CLONE_VM and clone3 (libos/vmchild.c, the clone prefix of
abi/bpf.py), checked against native runs of the same programs under the
guest's identity, and the filter rules that route them.

A child that shares its parent's memory (vfork, posix_spawn) must see that
memory (posix_spawn reports a failed exec through it), must leave its
parent's library-OS state alone (cwd, umask, session, signal dispositions,
even while another thread of the parent watches), and must not break its
parent however it uses the stack they share.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import shutil
import subprocess
import tempfile

import pytest

api = pytest.importorskip("picoproc.api")
from picoproc.manifest import Mount, default_manifest  # noqa: E402

pytestmark = pytest.mark.root

GUEST_TIMEOUT = 60.0
ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": "/tmp", "TMPDIR": "/tmp"}
KINDS = ("static", "pie", "dyn")


def as_guest_identity() -> list[str]:
    """The prefix that runs a native command as the guest's identity: the
    guest is uid/gid 65534 when the monitor is root, the caller otherwise."""
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) is needed to run the native side as the guest's identity")
    return ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


def native(argv: list[str], cwd: str | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory() as d:
        os.chmod(d, 0o777)
        return subprocess.run([*as_guest_identity(), *argv], cwd=cwd or d, env=env or {**ENV, "TMPDIR": d},
                              capture_output=True, timeout=GUEST_TIMEOUT)


def sandbox_with(*mounts: Mount, **changes):
    base = default_manifest()
    return api.Sandbox(dataclasses.replace(base, mounts=(*base.mounts, *mounts), **changes))


@pytest.fixture(scope="module")
def spawn_guest(guest_bin):
    return {kind: guest_bin / f"libos_spawn.{kind}" for kind in KINDS}


@pytest.fixture(scope="module")
def guests_sandbox(guest_bin):
    return sandbox_with(Mount(str(guest_bin), str(guest_bin)))


def lines(data: bytes) -> list[str]:
    # posix_spawn returns when the child has exec'd, not when it has written:
    # the parent's and the child's lines interleave differently run to run.
    return sorted(data.decode().splitlines())


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("cmd", ["spawn", "system", "vfork", "clonevm 100", "threads", "clone3", "concurrent 40",
                                 "timers", "forktimers 1000"])
def test_process_creation_matches_native(guests_sandbox, spawn_guest, kind, cmd):
    argv = [str(spawn_guest[kind]), *cmd.split()]
    want = native(argv)
    assert want.returncode == 0, want.stderr
    got = guests_sandbox.run(argv, capture=True, timeout=GUEST_TIMEOUT)
    assert (got.exit_code, got.signal) == (0, None), (got.stderr, got.unsupported)
    assert lines(got.stdout) == lines(want.stdout), got.stderr
    # The facts the comparison stands on, stated outright.
    out = got.stdout.decode()
    for fact in {
        "spawn": ["parent_state_kept=1", "spawn_missing_rc=2", "child_cwd=/usr", "child_sid_is_self=1"],
        "system": ["system_exit=7", "parent_state_kept=1"],
        "vfork": ["shared_write_seen=1", "parent_state_kept=1", "child_rounding_kept=1", "errno_seen=2",
                  "vfork_killed status=137", "parent_state_kept_after_all=1",
                  "vfork_exec_args n=1 status=0", "vfork_exec_args n=2000 status=207",
                  "vfork_exec_args n=10000 status=15"],
        "clonevm 100": ["clonevm_ok=100/100 parent_state_kept=1"],
        "threads": ["threads_ok=64/64 main_rounding_kept=1"],
        "clone3": ["nonzero_tail=-7", "fork_like status=0"],
        "concurrent 40": ["concurrent_spawns=40/40 watcher_saw_foreign_state=0"],
        # A vfork child's timers, CPU-time itimer, parent-death signal, nice
        # value and dispositions are its own; programs with timers start
        # from posix_spawn and vfork+exec beside the parent's armed timer.
        "timers": ["vfork_child status=0 timer=1 itimer=1 pdeathsig=1 nice=1 saw_handler=1",
                   "spawn_timerchild rc=0 status=0", "vfork_exec_timerchild status=0",
                   "timerchild ok=1 signo=14 code_is_timer=1 more=2",
                   "parent timer_kept=1 fires=3 itimer_virtual_off=1 pdeathsig=0 nice_kept=1",
                   "parent next_timer_is_second=1", "parent usr1_handler_kept=1 signalfd_read=128 signo=10",
                   "parent mapped_kept=1",
                   "vfork_child_sigwait status=0 sig=10 from_self=1", "fork_child_sigwait status=10"],
        # The library OS's locks held by a thread of the parent at fork.
        "forktimers 1000": ["fork_children_with_timers ok=1000/1000"],
    }[cmd]:
        assert fact in out, out


def test_vfork_children_no_longer_fall_back_to_ENOSYS(guests_sandbox, spawn_guest):
    """The run leaves no audit record of a refused clone3, clone or vfork."""
    got = guests_sandbox.run([str(spawn_guest["dyn"]), "spawn"], capture=True, timeout=GUEST_TIMEOUT)
    assert got.exit_code == 0, got.stderr
    assert not {"clone3", "clone", "vfork", "setresuid"} & set(got.unsupported), got.unsupported


HOSTILE = r"""
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
what = sys.argv[1]
pid = libc.vfork()
if pid == 0:
    if what == "stack":
        # Trash everything above the child's stack pointer: the frames the
        # parent will return through (as on Linux, the parent may die of it).
        buf = (ctypes.c_char * 1)()
        base = ctypes.addressof(buf)
        ctypes.memset(base, 0x41, 1 << 16)
    else:
        # Zero every writable page of the library OS image (its state).
        fd = os.open("/dev/zero", os.O_RDONLY)
        start = 1 << 40
        for page in range(start, start + (16 << 20), 4096):
            libc.read(fd, ctypes.c_void_p(page), 4096)
    libc._exit(0)
print("parent-resumed", flush=True)
"""


@pytest.mark.parametrize("what", ["stack", "libos"])
def test_hostile_vfork_child_hurts_only_its_own_program(what):
    """A vfork child may scribble over the memory it shares: over its
    parent's stack, or over the library OS's own state.  The program may
    then misbehave or die, as it could on Linux, but the run ends, the
    monitor keeps serving other guests, and nothing is left behind
    (no_run_left_behind)."""
    box = api.Sandbox()
    got = box.run(["/usr/bin/python3", "-c", HOSTILE, what], capture=True, timeout=GUEST_TIMEOUT)
    assert got.limit is None, (got.limit, got.stderr)
    assert got.exit_code is not None or got.signal is not None
    after = box.run(["/bin/sh", "-c", "echo still-served"], capture=True, timeout=GUEST_TIMEOUT)
    assert (after.exit_code, after.stdout) == (0, b"still-served\n"), after.stderr


MAKEFILE = """\
SUB := $(shell echo from-shell)
all: first second sub
\t@echo all done $(SUB)
first:
\techo first; printf '%s\\n' "$$(pwd | sed 's,.*/,,')"
second: first
\t@for i in 1 2 3; do echo loop $$i; done | tr a-z A-Z
sub:
\t$(MAKE) -s -C subdir inner
fails:
\t@false
"""
SUB_MAKEFILE = "inner:\n\t@echo inner in $$(basename $$(pwd)) with exit $$(sh -c 'exit 3'; echo $$?)\n"


@pytest.fixture()
def make_tree(tmp_path):
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    tree = tmp_path / "proj"
    (tree / "subdir").mkdir(parents=True)
    (tree / "Makefile").write_text(MAKEFILE)
    (tree / "subdir" / "Makefile").write_text(SUB_MAKEFILE)
    for p in (tmp_path, tree, tree / "subdir"):
        p.chmod(0o755)
    for f in tree.rglob("Makefile"):
        f.chmod(0o644)
    return tree


@pytest.mark.parametrize("args", [[], ["-j2"], ["fails"], ["-k", "fails", "first"]])
def test_make_runs_recipes_like_native(make_tree, args):
    want = native(["make", "--no-print-directory", *args], cwd=str(make_tree))
    box = sandbox_with(Mount("/proj", str(make_tree)), cwd="/proj")
    got = box.run(["make", "--no-print-directory", *args], capture=True, timeout=GUEST_TIMEOUT)
    assert got.exit_code == want.returncode, (got.stderr, want.stderr, got.unsupported)
    if args == ["-j2"]:
        assert lines(got.stdout) == lines(want.stdout)
    else:
        assert got.stdout == want.stdout, got.stderr
    assert got.stderr.decode().replace("/proj", str(make_tree)) == want.stderr.decode()


SUBPROCESS = r"""
import os, subprocess, sys
print(subprocess.run(["echo", "hi"], capture_output=True).stdout)
r = subprocess.run("pwd; umask; exit 3", shell=True, cwd="/usr", capture_output=True, text=True)
print(r.returncode, r.stdout.split())
r = subprocess.run([sys.executable, "-c", "import os; print(os.getsid(0) == os.getpid())"],
                   start_new_session=True, capture_output=True, text=True)
print("new session:", r.stdout.strip())
try:
    subprocess.run(["/nonexistent/prog"])
except FileNotFoundError as e:
    print("missing:", e.errno)
rd, wr = os.pipe()
r = subprocess.run(["sh", "-c", f"echo via-fd >&{wr}"], pass_fds=[wr])
os.close(wr)
print(os.read(rd, 100))
print(subprocess.check_output("echo $X", shell=True, env={"X": "env-passed"}))
print("parent cwd:", os.getcwd(), "umask:", oct(os.umask(0o22)))
"""


def test_python_subprocess_like_native():
    want = native(["/usr/bin/python3", "-c", SUBPROCESS], cwd="/tmp")
    assert want.returncode == 0, want.stderr
    got = api.Sandbox().run(["/usr/bin/python3", "-c", SUBPROCESS], capture=True, timeout=GUEST_TIMEOUT)
    assert got.exit_code == 0, (got.stderr, got.unsupported)
    assert got.stdout == want.stdout, got.stderr


def test_unprivileged_monitor_spawns_with_linux_semantics(unpriv_env):
    guests = unpriv_env["root"] / "guests"
    script = (
        "import sys\n"
        "from picoproc.api import Sandbox\n"
        "from picoproc.manifest import Mount, default_manifest\n"
        "import dataclasses\n"
        "m = default_manifest()\n"
        f"m = dataclasses.replace(m, mounts=(*m.mounts, Mount({str(guests)!r}, {str(guests)!r})))\n"
        f"r = Sandbox(m).run([{str(guests / 'libos_spawn.dyn')!r}, sys.argv[1]], capture=True, timeout=60)\n"
        "sys.stdout.write(r.stdout.decode()); sys.stderr.write(r.stderr.decode()); sys.exit(r.exit_code)\n"
    )
    for cmd, fact in [("spawn", "parent_state_kept=1"), ("vfork", "shared_write_seen=1"),
                      ("threads", "threads_ok=64/64")]:
        proc = subprocess.run([*unpriv_env["prefix"], unpriv_env["python"], "-c", script, cmd],
                              capture_output=True, timeout=GUEST_TIMEOUT * 2, env=unpriv_env["env"], cwd="/")
        assert proc.returncode == 0, proc.stderr
        assert fact in proc.stdout.decode(), proc.stdout


# ---------------------------------------------------------------------------------------
# the filter: which forms of clone the library OS makes
# ---------------------------------------------------------------------------------------

CLONE_VM, CLONE_VFORK, CLONE_THREAD, CLONE_SIGHAND = 0x100, 0x4000, 0x10000, 0x800
CLONE_NEWUSER, SIGCHLD = 0x10000000, 17
NR_CLONE, NR_CLONE3 = 56, 435


def _filters():
    sf = pytest.importorskip("picoproc.bench.security.seccomp_filter")
    from picoproc.abi import bpf
    from picoproc.abi.table import load_table

    table = load_table()
    return sf, table, {mode: sf.FilterStack([sf.decode(bpf.filter_for(mode))]) for mode in ("raw", "libos")}


@pytest.mark.unit
def test_libos_filter_leaves_vm_children_to_the_library_os():
    """clone with CLONE_VM but not CLONE_THREAD traps from the program and
    goes on to the table's rule from the library OS (which still refuses
    namespaces: the prefix only ever makes clone stricter); threads and
    forks stay direct; clone3 traps with a library OS and answers ENOSYS
    without one."""
    sf, table, f = _filters()
    guest_ip, loader_ip = 0x401000, table.loader_text_start + 64
    vm = CLONE_VM | CLONE_VFORK | SIGCHLD
    thread = CLONE_VM | CLONE_THREAD | CLONE_SIGHAND
    cases = [
        # (flags, ip, libos action, raw action)
        (vm, guest_ip, sf.RET_TRAP, sf.RET_ALLOW),
        (vm, loader_ip, sf.RET_ALLOW, sf.RET_ALLOW),
        (CLONE_VM | SIGCHLD, guest_ip, sf.RET_TRAP, sf.RET_ALLOW),
        ((1 << 32) | vm, guest_ip, sf.RET_TRAP, sf.RET_ALLOW),  # the kernel takes an int
        (thread, guest_ip, sf.RET_ALLOW, sf.RET_ALLOW),
        (SIGCHLD, guest_ip, sf.RET_ALLOW, sf.RET_ALLOW),
        (vm | CLONE_NEWUSER, loader_ip, sf.RET_TRAP, sf.RET_KILL_PROCESS),
        (thread | CLONE_NEWUSER, guest_ip, sf.RET_TRAP, sf.RET_KILL_PROCESS),
    ]
    for flags, ip, libos, raw in cases:
        args = (flags, 0, 0, 0, 0, 0)
        assert f["libos"].action(NR_CLONE, args, ip=ip) & sf.RET_ACTION_FULL == libos, (hex(flags), hex(ip))
        assert f["raw"].action(NR_CLONE, args, ip=ip) & sf.RET_ACTION_FULL == raw, (hex(flags), hex(ip))
    for ip in (guest_ip, loader_ip):
        assert f["libos"].action(NR_CLONE3, (0, 88, 0, 0, 0, 0), ip=ip) == sf.RET_TRAP
        assert f["raw"].action(NR_CLONE3, (0, 88, 0, 0, 0, 0), ip=ip) == sf.RET_ERRNO | 38


def test_forged_clone_forms_are_refused(guests_sandbox, guest_bin, tmp_path):
    """A program that calls clone with namespace flags or jumps into the
    trapped path with a form the filter never traps gets an errno, never a
    namespace (the call is audited as unsupported)."""
    src = tmp_path / "forge.c"
    src.write_text(r"""
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <sched.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>
int main(void) {
    long r = syscall(SYS_clone, CLONE_VM | CLONE_VFORK | CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0);
    printf("newuser=%ld errno=%d\n", r, r < 0 ? errno : 0);
    r = syscall(SYS_clone, CLONE_NEWPID | SIGCHLD, 0, 0, 0, 0);
    printf("newpid=%ld errno=%d\n", r, r < 0 ? errno : 0);
    return 0;
}
""")
    exe = tmp_path / "forge"
    subprocess.run(["gcc", "-O1", "-o", str(exe), str(src)], check=True, timeout=60)
    tmp_path.chmod(0o755)
    box = sandbox_with(Mount("/t", str(tmp_path)))
    got = box.run(["/t/forge"], capture=True, timeout=GUEST_TIMEOUT)
    assert got.exit_code == 0, got.stderr
    assert got.stdout == b"newuser=-1 errno=38\nnewpid=-1 errno=38\n"
    assert "clone" in got.unsupported
