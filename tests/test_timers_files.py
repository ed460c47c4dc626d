"""Timers, signals and files that programs use and the ABI has no call for:
POSIX timers and CPU-time interval timers (helper threads), sigwaitinfo and
friends (a catcher of the library OS), rt_sigpending and getrusage (the
monitor reads the caller's own /proc), scheduling policy, msync, fallocate,
splice, pipe sizes, O_PATH, FIFOs (a mediated mknod), supplementary groups.

Each program runs inside (as root and as an unprivileged monitor) and
natively as the guest's identity; the outputs must be equal.  Where a new
monitor path touches host files (mknod), hostile cases check its bounds.
"""

from __future__ import annotations

import errno
import os
import pathlib
import shutil
import stat
import subprocess
import tempfile

import pytest
from conftest import assert_same_as_native, native_as_guest

pytestmark = pytest.mark.root

PYTHON = "/usr/bin/python3"
COMPAT = pathlib.Path(__file__).resolve().parent / "compat"


def same_as_native(run, argv, **overrides):
    inside = assert_same_as_native(run, argv, **overrides)
    assert inside.unsupported == [], inside.unsupported
    return inside


def script(name: str) -> list[str]:
    return [PYTHON, "-c", (COMPAT / name).read_text()]


@pytest.fixture
def world_dir():
    """A directory the guest identity (nobody) can traverse and write."""
    d = tempfile.mkdtemp(prefix="picoproc-timers-test-")
    os.chmod(d, 0o777)
    yield pathlib.Path(d)
    shutil.rmtree(d, ignore_errors=True)


# ---------------------------------------------------------------------------------------
# timers and signals
# ---------------------------------------------------------------------------------------

C_GUESTS = {
    # POSIX timers on the monotonic, real-time and CPU clocks; SIGEV_SIGNAL,
    # SIGEV_NONE, glibc's SIGEV_THREAD; sigwaitinfo shows SI_TIMER and the
    # timer's value; errors as Linux answers them.
    "libos_timers": ("cpu fired 1", "sigwaitinfo 1 code_is_timer 1 value 99"),
    # signalfd: records for kill and SIGCHLD, poll, non-blocking, a new mask.
    "libos_signalfd": ("chld 128 signo 17 status 7 pid_is_child 1", "usr2 128 signo 12"),
    # timerfd: one-shot, periodic, re-arm, absolute, errors, 100 created and closed.
    "libos_timerfd": ("read 8 n 1", "ticks>=5 1", "100 created and closed 1"),
    # clock_getres on every clock through the raw syscall (the vDSO answers
    # only some), the CPU-time and coarse ones included.
    "libos_clock_getres": ("-6 0 0.000000001", "12345 -1"),
}


@pytest.mark.parametrize("kind", ["dyn", "static"])
@pytest.mark.parametrize("name", sorted(C_GUESTS))
def test_c_programs_as_native(guest_runner, guest_bin, name, kind):
    prog = guest_bin / f"{name}.{kind}"
    native = native_as_guest([str(prog)])
    assert native.returncode == 0, native.stderr
    r = guest_runner(["/g/" + prog.name], volumes=[f"{guest_bin}:/g:ro"])
    assert r.status == 0, (r.reason, r.stderr, r.unsupported)
    assert r.stdout == native.stdout.decode()
    for line in C_GUESTS[name]:
        assert line in r.stdout
    assert r.unsupported == []


def test_cpu_time_interval_timers(guest_runner):
    same_as_native(guest_runner, script("cpu_itimers.py"))


def test_sigwait_sigwaitinfo_sigtimedwait_sigpending(guest_runner):
    r = same_as_native(guest_runner, script("sigwait.py"))
    assert "sigwaitinfo True True" in r.stdout and "pending set()" in r.stdout


def test_sigpending_reports_blocked_pending_signals(guest_runner):
    code = ("import os, signal, threading\n"
            "signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGUSR1, signal.SIGUSR2, signal.SIGHUP])\n"
            "os.kill(os.getpid(), signal.SIGUSR1)\n"
            "signal.pthread_kill(threading.get_ident(), signal.SIGUSR2)\n"
            "print(sorted(signal.sigpending()))\n")
    r = same_as_native(guest_runner, [PYTHON, "-c", code])
    assert "SIGUSR1" in r.stdout and "SIGUSR2" in r.stdout and "SIGHUP" not in r.stdout


def test_getrusage_and_times_report_real_usage(guest_runner):
    """User and system time, peak RSS, faults, and the children's times after
    wait: non-zero where the program really used them (they were zero)."""
    code = ("import os, resource\n"
            "x = bytearray(32 << 20)\n"
            "for i in range(0, len(x), 4096): x[i] = 1\n"
            "s = sum(range(3 * 10**6))\n"
            "r = resource.getrusage(resource.RUSAGE_SELF)\n"
            "print(r.ru_maxrss > 32 * 1024, r.ru_minflt > 8000, r.ru_utime > 0, r.ru_nvcsw >= 0)\n"
            "pid = os.fork()\n"
            "if pid == 0:\n"
            "    sum(range(3 * 10**7)); os._exit(0)\n"
            "os.waitpid(pid, 0)\n"
            "c = resource.getrusage(resource.RUSAGE_CHILDREN)\n"
            "print(c.ru_utime > 0.05, os.times().children_user > 0.05, os.times().user > 0)\n"
            "t = resource.getrusage(resource.RUSAGE_THREAD)\n"
            "print(t.ru_utime > 0)\n")
    r = same_as_native(guest_runner, [PYTHON, "-c", code])
    assert r.stdout == "True True True True\nTrue True True\nTrue\n"


def test_prctl_options_and_the_parent_death_signal(guest_runner):
    r = same_as_native(guest_runner, script("prctl.py"))
    assert "child of a dead parent: b'got'" in r.stdout


def test_pidfds_of_own_processes(guest_runner):
    r = same_as_native(guest_runner, script("pidfd.py"))
    assert "exited True" in r.stdout and "killed 9" in r.stdout


def test_pidfd_open_sees_only_the_guests_own_processes(guest_runner):
    """The monitor looks for the pid in the caller's own pid namespace: a
    host pid (this test's) is not there, whatever its number."""
    code = ("import os, errno\n"
            f"for pid in ({os.getpid()}, 1, 2, 10**6):\n"
            "    try: fd = os.pidfd_open(pid); print(pid > 2 and 'host!' or 'own', end=' ')\n"
            "    except OSError as e: print(errno.errorcode[e.errno], end=' ')\n"
            "print()\n")
    r = guest_runner([PYTHON, "-c", code])
    assert r.status == 0, r.stderr
    # pid 1 is the reaper, pid 2 the program itself; the host pid (far
    # above any of the guest's) is not in its namespace.
    assert r.stdout.split() == ["ESRCH", "own", "own", "ESRCH"]


def test_inotify_as_native(guest_runner):
    r = same_as_native(guest_runner, script("inotify.py"))
    assert "(True, '0x80', 'b.txt')" in r.stdout


def test_inotify_watches_only_writable_mounts_and_is_bounded(guest_runner, world_dir):
    """Watches are added in writable mounts only (a read-only host view,
    also through a link into it, answers EACCES), not on another process's
    fd, and a run has at most 16 instances and 8192 watches."""
    rw = world_dir / "rw"
    rw.mkdir()
    os.chmod(rw, 0o777)
    (rw / "to_usr").symlink_to("/usr")
    code = ("import ctypes, os, errno\n"
            "libc = ctypes.CDLL(None, use_errno=True)\n"
            "fd = libc.inotify_init1(0)\n"
            "def w(p):\n"
            "    r = libc.inotify_add_watch(fd, p.encode(), 0x100)\n"
            "    return 'ok' if r > 0 else errno.errorcode[ctypes.get_errno()]\n"
            "print(w('/rw'), w('/tmp'), w('/usr'), w('/rw/to_usr'), w('/etc/passwd'))\n"
            "n = 0\n"
            "for i in range(10000):\n"
            "    p = f'/tmp/d{i}'; open(p, 'w').close()\n"
            "    if libc.inotify_add_watch(fd, p.encode(), 0x2) < 0: break\n"
            "    n += 1\n"
            "print(n + 2, errno.errorcode[ctypes.get_errno()])\n"
            "fds = [libc.inotify_init1(0) for _ in range(20)]\n"
            "print(sum(f >= 0 for f in fds) + 1, errno.errorcode[ctypes.get_errno()])\n")
    r = guest_runner([PYTHON, "-c", code], volumes=[f"{rw}:/rw:rw"])
    assert r.status == 0, r.stderr
    assert r.stdout == "ok ok EACCES EACCES EACCES\n8192 ENOSPC\n16 EMFILE\n"


RUBY = shutil.which("ruby")


@pytest.mark.skipif(RUBY is None, reason="ruby is not installed (setup.sh installs it)")
def test_ruby_threads_and_backticks_without_timer_warning(guest_runner):
    """Ruby's thread timer is a POSIX timer (SIGEV_THREAD_ID); before, it
    warned `timer_create failed ... signals racy` on stderr."""
    code = ("q = Queue.new; ts = 4.times.map { |i| Thread.new { sleep 0.01 * i; q << i * i } }; ts.each(&:join)\n"
            "puts (1..4).map { q.pop }.sort.inspect\n"
            "puts `echo from a child`\n"
            "r, w = IO.pipe; t = Thread.new { r.read }; w.write 'pipe'; w.close; puts t.value\n")
    native = native_as_guest([RUBY, "-e", code])
    assert native.returncode == 0, native.stderr
    r = guest_runner([RUBY, "-e", code])
    assert r.status == 0, (r.reason, r.stderr)
    assert r.stdout == native.stdout.decode()
    assert r.stderr == native.stderr.decode() == ""
    assert r.unsupported == []


def test_timers_are_bounded_and_die_with_the_process(guest_runner):
    """A process has at most 32 timers (EAGAIN after); their helper threads
    end with timer_delete and with the process (nothing left behind: the
    suite's own fixture checks every run's processes)."""
    code = ("import ctypes, ctypes.util, threading\n"
            "rt = ctypes.CDLL(ctypes.util.find_library('c'), use_errno=True)\n"
            "ids = []\n"
            "for i in range(40):\n"
            "    t = ctypes.c_void_p()\n"
            "    if rt.timer_create(1, None, ctypes.byref(t)) != 0: print('refused at', i, ctypes.get_errno()); break\n"
            "    ids.append(t)\n"
            "    spec = (ctypes.c_long * 4)(0, 0, 1000, 0)\n"
            "    rt.timer_settime(t, 0, spec, None)\n"
            "print(len(ids))\n"
            "for t in ids: assert rt.timer_delete(t) == 0\n"
            "print('deleted')\n")
    r = guest_runner([PYTHON, "-c", code])
    assert r.status == 0, (r.stderr, r.unsupported)
    assert r.stdout == f"refused at 32 {errno.EAGAIN}\n32\ndeleted\n"


# ---------------------------------------------------------------------------------------
# files, pipes, identity
# ---------------------------------------------------------------------------------------

def test_sched_msync_pipe_sizes_fallocate_opath_splice(guest_runner):
    r = same_as_native(guest_runner, script("fileops.py"))
    assert "msync b'hello EINVAL'" in r.stdout and "pipesz [65536, 32768" in r.stdout


def test_fallocate_is_bounded_by_the_scratch_quota(guest_runner):
    """Growing a file writes zeros, so it is charged to the tmpfs: a huge
    posix_fallocate fails with ENOSPC and leaves the file as it was."""
    code = ("import os, errno\n"
            "fd = os.open('/tmp/big', os.O_CREAT | os.O_RDWR)\n"
            "os.write(fd, b'abc')\n"
            "free = os.statvfs('/tmp').f_bfree\n"
            "try: os.posix_fallocate(fd, 0, 1 << 40)\n"
            "except OSError as e: print(errno.errorcode[e.errno])\n"
            "print(os.fstat(fd).st_size, os.statvfs('/tmp').f_bfree >= free - 1)\n"
            "os.posix_fallocate(fd, 0, 1 << 20); print(os.fstat(fd).st_size)\n")
    r = guest_runner([PYTHON, "-c", code])
    assert r.status == 0, r.stderr
    assert r.stdout == "ENOSPC\n3 True\n1048576\n"


def test_fifos_as_native(guest_runner):
    same_as_native(guest_runner, script("fifos.py"))


def test_mknod_only_in_writable_mounts(guest_runner, world_dir):
    """The monitor makes FIFOs through the pinned parent of a writable
    mount, as the guest: never in a read-only mount (also through a link
    that points there), never a device; the FIFO it made is the guest's."""
    rw = world_dir / "rw"
    rw.mkdir()
    os.chmod(rw, 0o777)
    ro = world_dir / "ro"
    ro.mkdir()
    os.chmod(ro, 0o777)
    (rw / "to_ro").symlink_to("/ro")
    (rw / "to_host_etc").symlink_to("/etc")
    code = ("import os, errno, stat\n"
            "def t(p, mode=0o600 | stat.S_IFIFO, dev=0):\n"
            "    try: os.mknod(p, mode, dev); return 'made'\n"
            "    except OSError as e: return errno.errorcode[e.errno]\n"
            "print(t('/rw/f'), t('/ro/f'), t('/rw/to_ro/f'), t('/rw/to_host_etc/f'), t('/usr/f'))\n"
            "print(t('/rw/d', 0o600 | stat.S_IFCHR, os.makedev(1, 3)), t('/rw/b', 0o600 | stat.S_IFBLK, 0))\n"
            "print(t('/rw/f'), t('/rw/' + 'x' * 300))\n"
            "os.mkfifo('/tmp/f'); print(stat.S_ISFIFO(os.stat('/tmp/f').st_mode))\n")
    r = guest_runner([PYTHON, "-c", code], volumes=[f"{rw}:/rw:rw", f"{ro}:/ro:ro"])
    assert r.status == 0, r.stderr
    assert r.stdout == "made EROFS EROFS EROFS EROFS\nEPERM EPERM\nEEXIST ENAMETOOLONG\nTrue\n"
    st = os.lstat(rw / "f")
    assert stat.S_ISFIFO(st.st_mode)
    assert st.st_uid == (65534 if os.geteuid() == 0 else os.geteuid())
    assert not (ro / "f").exists() and not os.path.exists("/etc/f")
    denied = [a for a in r.audit if a.get("call") == "mknod" and a.get("errno")]
    assert len(denied) == 8, denied  # 4 EROFS, 2 EPERM, EEXIST, ENAMETOOLONG


def test_user_xattrs_as_native(guest_runner):
    same_as_native(guest_runner, script("xattrs.py"))


def test_xattrs_change_only_in_writable_mounts_and_are_bounded(guest_runner, world_dir):
    """Reading works wherever the name is visible; changing needs a writable
    mount and the user. namespace, also through a link into a read-only
    mount; what a guest stores on a scratch tmpfs is bounded by it."""
    rw = world_dir / "rw"
    rw.mkdir()
    os.chmod(rw, 0o777)
    ro = world_dir / "ro"
    ro.mkdir()
    (ro / "f").write_text("x")
    os.chmod(ro / "f", 0o666)
    os.setxattr(ro / "f", "user.host", b"set on the host")
    (rw / "f").write_text("x")
    os.chmod(rw / "f", 0o666)
    (rw / "to_ro").symlink_to("/ro/f")
    code = ("import os, errno\n"
            "def t(f, *a):\n"
            "    try: r = f(*a); return 'ok' if r is None else r\n"
            "    except OSError as e: return errno.errorcode[e.errno]\n"
            "print(t(os.getxattr, '/ro/f', 'user.host'), t(os.setxattr, '/ro/f', 'user.a', b'1'),"
            " t(os.removexattr, '/ro/f', 'user.host'), t(os.setxattr, '/rw/to_ro', 'user.a', b'1'))\n"
            "print(t(os.setxattr, '/rw/f', 'user.a', b'guest'), t(os.setxattr, '/rw/f', 'security.x', b'1'),"
            " t(os.setxattr, '/rw/f', 'trusted.x', b'1'), t(os.setxattr, '/usr/bin/env', 'user.a', b'1'))\n"
            "open('/tmp/f', 'w').close(); n = 0\n"
            "try:\n"
            "    for i in range(100000): os.setxattr('/tmp/f', 'user.%d' % i, b'x' * 60000); n += 1\n"
            "except OSError as e: print(errno.errorcode[e.errno], 0 < n < 1000)\n")
    r = guest_runner([PYTHON, "-c", code], volumes=[f"{rw}:/rw:rw", f"{ro}:/ro:ro"])
    assert r.status == 0, r.stderr
    assert r.stdout == "b'set on the host' EROFS EROFS EROFS\nok EPERM EPERM EROFS\nENOSPC True\n"
    assert os.getxattr(rw / "f", "user.a") == b"guest"
    assert os.listxattr(ro / "f") == ["user.host"]
    denied = [a for a in r.audit if a.get("call") == "xattr" and a.get("errno")]
    assert len(denied) >= 7, denied


# ---------------------------------------------------------------------------------------
# pseudo-terminals
# ---------------------------------------------------------------------------------------

def test_pseudo_terminals_as_native(guest_runner):
    r = same_as_native(guest_runner, script("ptys.py"))
    assert "child: setsid again EPERM" in r.stdout and "winsize (40, 132)" in r.stdout


def test_cpython_test_pty_inside(guest_runner):
    """CPython's own pty tests: the same tests pass inside as natively
    (before, test_pty could not open a pty at all)."""
    argv = [PYTHON, "-m", "test", "test_pty", "-v"]
    native = native_as_guest(argv, timeout=120)
    assert native.returncode == 0, native.stdout.decode()[-2000:]
    r = guest_runner(argv, timeout=120)
    assert r.status == 0, r.stdout[-2000:] + r.stderr[-2000:]

    def outcomes(text):
        return sorted(line.rsplit(" ... ", 1)[1] for line in text.splitlines() if " ... " in line)

    assert outcomes(r.stdout) == outcomes(native.stdout.decode())
    assert "Tests result: SUCCESS" in r.stdout


def test_ptys_are_the_runs_own_and_bounded(guest_runner):
    """The guest's /dev/pts is a devpts instance of its own: none of the
    host's ptys (this test holds one open) are there, and it holds at most
    64; the guest identity owns the slaves it opens."""
    host_master, host_slave = os.openpty()
    try:
        code = ("import os, errno\n"
                "print(sorted(os.listdir('/dev/pts')))\n"
                "fds = []\n"
                "try:\n"
                "    for i in range(100): fds.append(os.open('/dev/ptmx', os.O_RDWR | os.O_NOCTTY))\n"
                "except OSError as e: print(len(fds), errno.errorcode[e.errno])\n"
                "print(len(os.listdir('/dev/pts')))\n"
                "for fd in fds: os.close(fd)\n"
                "m, s = os.openpty(); st = os.fstat(s)\n"
                "print(st.st_uid == os.getuid())\n")
        r = guest_runner([PYTHON, "-c", code])
        assert r.status == 0, r.stderr
        assert r.stdout == "['ptmx']\n64 ENOSPC\n65\nTrue\n"
    finally:
        os.close(host_master)
        os.close(host_slave)


@pytest.mark.skipif(os.geteuid() != 0, reason="runs the monitor in this process, as root")
def test_a_host_terminal_on_stdin_is_never_changed():
    """The guest's stdin may be the user's terminal: the ioctls that would
    change it reach no host terminal (ENOTTY; TIOCSTI EPERM), only the
    run's own ptys; the host's settings stay as they were."""
    import termios

    from picoproc.api import Sandbox
    from picoproc.manifest import default_manifest

    master, slave = os.openpty()
    try:
        before = termios.tcgetattr(slave)
        code = ("import os, termios, fcntl, struct, errno, tty\n"
                "def t(f):\n"
                "    try: f(); return 'changed'\n"
                "    except OSError as e: return errno.errorcode[e.errno]\n"
                "    except termios.error as e: return errno.errorcode[e.args[0]]\n"
                "print(os.isatty(0), t(lambda: tty.setraw(0)),"
                " t(lambda: fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack('HHHH', 1, 1, 0, 0))),"
                " t(lambda: fcntl.ioctl(0, termios.TIOCSTI, b'x')),"
                " t(lambda: termios.tcflush(0, termios.TCIFLUSH)))\n")
        r = Sandbox(default_manifest()).run([PYTHON, "-c", code], stdin=slave, capture=True, timeout=60)
        assert r.status == 0, r.stderr
        assert r.stdout.decode() == "True ENOTTY ENOTTY EPERM ENOTTY\n"
        assert termios.tcgetattr(slave) == before
        refused = [a for a in r.audit if a.get("call") == "tty_ioctl" and a.get("errno")]
        assert refused and all(a["errno_name"] == "ENOTTY" for a in refused)
    finally:
        os.close(master)
        os.close(slave)


def test_getgroups_is_the_identity(guest_runner):
    """nobody (a root monitor's guest, and the unprivileged monitor here)
    has no supplementary groups; setgroups is refused as natively."""
    code = ("import os\nprint(os.getgroups())\n"
            "try: os.setgroups([])\nexcept OSError as e: print(e.errno)\n")
    same_as_native(guest_runner, [PYTHON, "-c", code])


def test_getgroups_of_an_unprivileged_user_with_groups(unpriv_env):
    """An unprivileged picoproc runs the program as its user, whose
    supplementary groups the monitor acts with: the guest sees them."""
    code = ("import json, sys\n"
            "from picoproc.api import Sandbox\n"
            "from picoproc.manifest import default_manifest\n"
            "r = Sandbox(default_manifest()).run(['python3', '-c', 'import os; print(sorted(os.getgroups()))'],"
            " capture=True, timeout=30)\n"
            "print(r.stdout.decode().strip(), r.status)\n")
    prefix = ["setpriv", "--reuid=65534", "--regid=65534", "--groups=100,65534", "--inh-caps=-all"]
    proc = subprocess.run([*prefix, unpriv_env["python"], "-c", code], capture_output=True, text=True,
                          env=unpriv_env["env"], cwd="/", timeout=90, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "[100, 65534] 0\n"
