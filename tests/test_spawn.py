"""The picoprocess spawn path (docs/ARCHITECTURE.md, "The reaper" and invariants 5-7).

Everything is checked from outside, through /proc, while the guest
(tests/guests/spawn_ctl.c) is blocked reading a pipe the test holds; the
test then releases it.  Synchronisation is through pipes and pidfds, never
sleeps; every wait has a timeout.

The spawn path is exercised twice: by this (root) process, and by a monitor
running as uid 65534 (``setpriv``) with the system /usr/bin/python3 and a
world-readable copy of the package, so that the unprivileged user-namespace
path really runs as a non-root user.  When the suite itself runs unprivileged,
the in-process tests are that second half and the setpriv tests are skipped.
"""

from __future__ import annotations

import errno
import json
import os
import pathlib
import resource
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading

import psutil
import pytest
from conftest import picoproc_cgroup_dirs
from picoproc import cgroups
from picoproc.image import ImageError
from picoproc.manifest import Limits
from picoproc.scratch import make_scratch
from picoproc.spawn import (
    ConfigError,
    SpawnConfig,
    SpawnError,
    kill_picoprocess,
    spawn_picoprocess,
    wait_picoprocess,
)

pytestmark = pytest.mark.root

TIMEOUT = 20.0
NAMESPACES = ("user", "pid", "mnt", "net", "ipc", "uts", "cgroup")
IS_ROOT = os.geteuid() == 0
GUEST_IDS = (65534, 65534) if IS_ROOT else (os.geteuid(), os.getegid())
REPO = pathlib.Path(__file__).resolve().parent.parent


# ---------------------------------------------------------------- helpers


def read_exact(fd: int, n: int, timeout: float = TIMEOUT) -> bytes:
    """Reads exactly n bytes from a pipe, failing (not hanging) after timeout."""
    data = b""
    while len(data) < n:
        ready, _, _ = select.select([fd], [], [], timeout)
        if not ready:
            raise TimeoutError(f"guest said {data!r}, still waiting for {n - len(data)} more bytes")
        chunk = os.read(fd, n - len(data))
        if not chunk:
            raise EOFError(f"guest closed stdout after {data!r}")
        data += chunk
    return data


def read_line(fd: int, timeout: float = TIMEOUT) -> str:
    data = b""
    while not data.endswith(b"\n"):
        data += read_exact(fd, 1, timeout)
    return data.decode()


def status_fields(pid: int) -> dict[str, str]:
    out = {}
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        out[key] = value.strip()
    return out


def ns_ids(pid) -> dict[str, str]:
    return {ns: os.readlink(f"/proc/{pid}/ns/{ns}") for ns in NAMESPACES}


def pids_in_pid_ns(ns_link: str) -> set[int]:
    """Host pids of every process whose pid namespace is ns_link."""
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.readlink(f"/proc/{entry}/ns/pid") == ns_link:
                    found.add(int(entry))
            except OSError:
                pass
    return found


def wait_all_gone(pids: set[int], timeout: float = TIMEOUT) -> None:
    """Waits (pidfds, no sleeps) until every pid has exited and its /proc
    entry is gone (reaped); fails after timeout."""
    pidfds = {}
    for pid in pids:
        try:
            pidfds[pid] = os.pidfd_open(pid)
        except ProcessLookupError:
            pass
    try:
        poller = select.poll()
        for fd in pidfds.values():
            poller.register(fd, select.POLLIN)
        pending = set(pidfds.values())
        while pending:
            events = poller.poll(timeout * 1000)
            assert events, (
                f"still alive after {timeout} s: {sorted(pid for pid, fd in pidfds.items() if fd in pending)}"
            )
            for fd, _ in events:
                poller.unregister(fd)
                pending.discard(fd)
    finally:
        for fd in pidfds.values():
            os.close(fd)
    # Exited; their parents (the reaper, then init) reap them.
    for pid in pids:
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            continue
        os.close(fd)
        state = status_fields(pid).get("State", "") if os.path.exists(f"/proc/{pid}") else ""
        assert state.startswith(("Z", "X")) or not state, f"pid {pid} is still {state!r}"


class Guest:
    """A spawn_ctl guest with its stdin/stdout on pipes the test holds."""

    def __init__(self, guest_bin, **config):
        self.cmd_r, self.cmd_w = os.pipe()
        self.out_r, self.out_w = os.pipe()
        self.result = None
        try:
            self.sp = spawn_picoprocess(
                SpawnConfig(
                    argv=[str(guest_bin / "spawn_ctl")], stdio=(self.cmd_r, self.out_w, 2), **config
                )
            )
        except BaseException:
            self._close_all()
            raise
        os.close(self.cmd_r)
        os.close(self.out_w)
        self.cmd_r = self.out_w = -1

    def _close_all(self):
        for name in ("cmd_r", "cmd_w", "out_r", "out_w"):
            fd = getattr(self, name)
            if fd >= 0:
                os.close(fd)
                setattr(self, name, -1)

    def ask(self, cmd: bytes, answer_len: int | None = None) -> str:
        os.write(self.cmd_w, cmd)
        if answer_len is None:
            return read_line(self.out_r)
        return read_exact(self.out_r, answer_len).decode()

    def finish(self, cmd: bytes | None = None):
        """Sends cmd (or EOF) and waits for the result."""
        if cmd:
            os.write(self.cmd_w, cmd)
        os.close(self.cmd_w)
        self.cmd_w = -1
        self.result = wait_picoprocess(self.sp, timeout=TIMEOUT)
        self._close_all()
        return self.result

    def cleanup(self):
        if self.result is None:
            kill_picoprocess(self.sp)
            self.result = wait_picoprocess(self.sp, timeout=TIMEOUT)
        self._close_all()


@pytest.fixture
def spawn_guest(guest_bin):
    guests = []

    def make(**config) -> Guest:
        g = Guest(guest_bin, **config)
        guests.append(g)
        return g

    yield make
    for g in guests:
        g.cleanup()


@pytest.fixture(autouse=True)
def no_leftovers():
    """After every test: no child processes, no run cgroups, no new mounts,
    no new fds in this process."""
    before_children = {p.pid for p in psutil.Process().children(recursive=True)}
    before_mounts = pathlib.Path("/proc/self/mountinfo").read_text()
    before_fds = set(os.listdir("/proc/self/fd"))
    yield
    after_children = {p.pid for p in psutil.Process().children(recursive=True)} - before_children
    assert not after_children, f"processes left behind: {after_children}"
    assert picoproc_cgroup_dirs() == set(), "run cgroups left behind"
    assert pathlib.Path("/proc/self/mountinfo").read_text() == before_mounts
    leaked = set(os.listdir("/proc/self/fd")) - before_fds
    # listdir's own fd is closed again by the time we compare.
    assert not {fd for fd in leaked if os.path.exists(f"/proc/self/fd/{fd}")}, (
        f"fds left open: {leaked}"
    )


# ---------------------------------------------------------------- identity, namespaces, root, fds


def test_guest_and_reaper_have_no_privilege(spawn_guest):
    g = spawn_guest()
    assert g.ask(b"r", 1) == "R"
    uid, gid = GUEST_IDS
    for pid in (g.sp.pid, g.sp.guest_pid):
        st = status_fields(pid)
        assert st["Uid"].split() == [str(uid)] * 4
        assert st["Gid"].split() == [str(gid)] * 4
        if IS_ROOT:
            assert st["Groups"] == "", "supplementary groups of the monitor leaked"
        for cap in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
            assert int(st[cap], 16) == 0, f"{cap} of pid {pid} is {st[cap]}"
        assert st["NoNewPrivs"] == "1"
        assert st["Seccomp"] == "2", "reaper and guest both run under a filter"
    assert g.finish().exit_code == 0


def test_reaper_is_pid_1_and_guest_pid_2(spawn_guest):
    g = spawn_guest()
    assert g.ask(b"p") == "pid=2 ppid=1\n"
    assert status_fields(g.sp.pid)["NSpid"].split() == [str(g.sp.pid), "1"]
    assert status_fields(g.sp.guest_pid)["NSpid"].split() == [str(g.sp.guest_pid), "2"]
    assert status_fields(g.sp.guest_pid)["PPid"] == str(g.sp.pid)
    g.finish()


def test_every_namespace_is_new(spawn_guest):
    g = spawn_guest()
    g.ask(b"r", 1)
    mine = ns_ids("self")
    guest = ns_ids(g.sp.guest_pid)
    for ns in NAMESPACES:
        assert guest[ns] != mine[ns], f"guest shares the monitor's {ns} namespace"
    assert ns_ids(g.sp.pid) == guest, "reaper and guest share one set of namespaces"
    g.finish()


def test_id_maps(spawn_guest):
    g = spawn_guest()
    g.ask(b"r", 1)
    uid, gid = GUEST_IDS
    assert pathlib.Path(f"/proc/{g.sp.guest_pid}/uid_map").read_text().split() == [
        str(uid),
        str(uid),
        "1",
    ]
    assert pathlib.Path(f"/proc/{g.sp.guest_pid}/gid_map").read_text().split() == [
        str(gid),
        str(gid),
        "1",
    ]
    setgroups = pathlib.Path(f"/proc/{g.sp.guest_pid}/setgroups").read_text().strip()
    # Root maps and drops groups itself; an unprivileged monitor must deny setgroups.
    assert setgroups == ("allow" if IS_ROOT else "deny")
    g.finish()


def test_root_is_empty_and_read_only(spawn_guest):
    g = spawn_guest()
    g.ask(b"r", 1)
    for pid in (g.sp.pid, g.sp.guest_pid):
        assert os.listdir(f"/proc/{pid}/root") == []
        assert os.readlink(f"/proc/{pid}/cwd") == "/"
        mounts = pathlib.Path(f"/proc/{pid}/mountinfo").read_text().splitlines()
        assert len(mounts) == 1, f"the mount namespace holds more than the empty root: {mounts}"
        fields = mounts[0].split()
        assert fields[4] == "/" and fields[5].split(",")[0] == "ro" and "tmpfs" in mounts[0]
    with pytest.raises(OSError) as exc:
        os.open(f"/proc/{g.sp.guest_pid}/root/x", os.O_WRONLY | os.O_CREAT, 0o600)
    assert exc.value.errno in (errno.EROFS, errno.EACCES)
    g.finish()


def test_only_stdio_reaches_the_guest(spawn_guest):
    # An inheritable fd in the monitor must not reach the guest.
    leak = os.open("/dev/null", os.O_RDONLY)
    os.set_inheritable(leak, True)
    try:
        g = spawn_guest()
        assert g.ask(b"o") == "fds=0,1,2\n"
        assert sorted(os.listdir(f"/proc/{g.sp.guest_pid}/fd"), key=int) == ["0", "1", "2"]
        # The guest's 0 and 1 are the pipes this test holds.
        assert os.readlink(f"/proc/{g.sp.guest_pid}/fd/0") == f"pipe:[{os.fstat(g.cmd_w).st_ino}]"
        assert os.readlink(f"/proc/{g.sp.guest_pid}/fd/1") == f"pipe:[{os.fstat(g.out_r).st_ino}]"
        # The reaper keeps only its status pipe to the monitor.
        reaper_fds = os.listdir(f"/proc/{g.sp.pid}/fd")
        assert len(reaper_fds) == 1
        assert os.readlink(f"/proc/{g.sp.pid}/fd/{reaper_fds[0]}").startswith("pipe:")
        g.finish()
    finally:
        os.close(leak)


@pytest.mark.skipif(
    shutil.which("nsenter") is None or not IS_ROOT,
    reason="needs nsenter and root to enter the UTS namespace",
)
def test_hostname_from_config(spawn_guest):
    g = spawn_guest(hostname="box-17")
    g.ask(b"r", 1)
    out = subprocess.run(
        ["nsenter", "-t", str(g.sp.guest_pid), "-u", "hostname"],
        capture_output=True,
        text=True,
        check=False,
        timeout=TIMEOUT,
    )
    assert out.stdout.strip() == "box-17"
    assert os.uname().nodename != "box-17"
    g.finish()


# ---------------------------------------------------------------- the reaper


def test_exit_code_is_the_guests(spawn_guest):
    assert spawn_guest().finish(b"e").exit_code == 42
    assert spawn_guest().finish().exit_code == 0


def test_guest_signal_is_reported_not_the_reapers(spawn_guest):
    result = spawn_guest().finish(b"k")
    assert (result.exit_code, result.signal) == (None, signal.SIGUSR1)
    assert result.status == 128 + signal.SIGUSR1


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_signals_to_the_reaper_reach_the_guest(spawn_guest, sig):
    g = spawn_guest()
    g.ask(b"r", 1)
    os.kill(g.sp.pid, sig)
    result = wait_picoprocess(g.sp, timeout=TIMEOUT)
    g.result = result
    assert (result.exit_code, result.signal) == (None, sig)


def test_orphans_are_reaped_and_die_with_the_guest(spawn_guest):
    g = spawn_guest()
    acks = g.ask(b"f", 7)
    assert sorted(acks) == sorted("cccgggF")
    run = pids_in_pid_ns(os.readlink(f"/proc/{g.sp.guest_pid}/ns/pid"))
    assert len(run) == 8  # reaper, guest, 3 children, 3 grandchildren
    # Kill one child: its grandchild is re-parented to the reaper (pid 1).
    child = next(p for p in run if status_fields(p)["PPid"] == str(g.sp.guest_pid))
    grandchild = next(p for p in run if status_fields(p)["PPid"] == str(child))
    os.kill(child, signal.SIGKILL)
    wait_all_gone({child})
    assert status_fields(grandchild)["PPid"] == str(g.sp.pid)
    # The guest exits: everything else in the run dies with it.
    result = g.finish(b"e")
    assert result.exit_code == 42
    wait_all_gone(run)


# ---------------------------------------------------------------- limits


def limits_of(pid: int) -> dict[str, tuple[str, str]]:
    out = {}
    for line in pathlib.Path(f"/proc/{pid}/limits").read_text().splitlines()[1:]:
        name, soft, hard = line[:26].strip(), line[26:47].strip(), line[47:68].strip()
        out[name] = (soft, hard)
    return out


def test_rlimits(spawn_guest):
    g = spawn_guest(limits=Limits(open_files=64, cpu_time_s=5, pids=10))
    g.ask(b"r", 1)
    lim = limits_of(g.sp.guest_pid)
    assert lim["Max open files"] == ("64", "64")
    assert lim["Max cpu time"] == ("5", "6")
    assert lim["Max core file size"] == ("0", "0")
    # One above the cgroup's pids.max where a cgroup enforces it, so that the
    # cgroup refuses (and counts) the fork first.
    nproc = "12" if "pids.max" in g.sp.enforcement["pids"] else "11"
    assert lim["Max processes"] == (nproc, nproc)
    g.finish()


def test_rlimits_never_raise_the_monitors_hard_limit(spawn_guest):
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    g = spawn_guest(
        limits=Limits(open_files=hard * 4 if hard != resource.RLIM_INFINITY else 1 << 20)
    )
    g.ask(b"r", 1)
    got = limits_of(g.sp.guest_pid)["Max open files"]
    if hard != resource.RLIM_INFINITY:
        assert got == (str(hard), str(hard))
    g.finish()


@pytest.mark.parametrize("cgroup", ["auto", "none"])
def test_pids_limit(spawn_guest, cgroup):
    g = spawn_guest(limits=Limits(pids=5), cgroup=cgroup)
    # The reaper is not counted against the guest: 5 tasks = the guest + 4 forks.
    assert g.ask(b"n") == f"forks=4 err={errno.EAGAIN}\n"
    g.finish()


needs_cgroups = pytest.mark.skipif(
    cgroups.available().version is None, reason=f"no usable cgroups: {cgroups.available().reason}"
)


@needs_cgroups
def test_cgroup_membership_limits_and_removal(spawn_guest):
    g = spawn_guest(limits=Limits(memory_bytes=96 << 20, pids=20))
    g.ask(b"r", 1)
    cg = g.sp.cgroup
    assert cg is not None and cg.version == cgroups.available().version
    for pid in (g.sp.pid, g.sp.guest_pid):
        assert pid in cg.members()
    memory_dir = cg.paths.get("memory", cg.paths.get("unified"))
    pids_dir = cg.paths.get("pids", cg.paths.get("unified"))
    if "memory" in cg.controllers:
        name = "memory.max" if cg.version == "v2" else "memory.limit_in_bytes"
        assert int(pathlib.Path(memory_dir, name).read_text()) == 96 << 20
    if "pids" in cg.controllers:
        assert pathlib.Path(pids_dir, "pids.max").read_text().strip() == "21"
    if IS_ROOT and shutil.which("nsenter"):
        # In its cgroup namespace the run's cgroup is the root: the guest
        # cannot learn the host's cgroup layout.
        view = subprocess.run(
            ["nsenter", "-C", "-t", str(g.sp.guest_pid), "cat", f"/proc/{g.sp.guest_pid}/cgroup"],
            capture_output=True,
            text=True,
            check=False,
            timeout=TIMEOUT,
        ).stdout
        for line in view.splitlines():
            hier, controllers, path = line.split(":", 2)
            if set(controllers.split(",")) & set(cg.controllers) or (
                cg.version == "v2" and hier == "0"
            ):
                assert path == "/", view
    result = g.finish()
    assert result.cgroup_stats is not None and result.cgroup_stats.memory_peak_bytes
    for path in cg.paths.values():
        assert not os.path.exists(path)


def test_v2_join_kill_and_removal_mechanics(spawn_guest):
    """The cgroup2 path (parent writes the reaper into cgroup.procs, stragglers
    die through cgroup.kill, the directory goes) on whatever cgroup2 mount the
    machine has, even one without controllers (the hybrid VM's)."""
    unified, _ = cgroups._mounts()
    own_v2, _ = cgroups._own_paths()
    if unified is None or own_v2 is None:
        pytest.skip("no cgroup2 mount")
    parent = cgroups._join(unified, own_v2)
    path = os.path.join(parent, f"picoproc-{os.getpid()}-v2mechanics")
    try:
        os.mkdir(path)
    except OSError as exc:
        pytest.skip(f"cannot create a cgroup under {parent}: {exc.strerror}")
    cg = cgroups.RunCgroup("v2", {"unified": path}, ())
    try:
        g = spawn_guest(cgroup=cg)
    except BaseException:
        cg.remove()
        raise
    assert not cg.join_self
    assert sorted(g.ask(b"f", 7)) == sorted("cccgggF")
    members = cg.members()
    assert {g.sp.pid, g.sp.guest_pid} <= members and len(members) == 8
    # Removal while the run is alive kills every member (cgroup.kill) first.
    cg.remove()
    assert not os.path.exists(path)
    result = wait_picoprocess(g.sp, timeout=TIMEOUT)
    g.result = result
    assert result.signal == signal.SIGKILL


@needs_cgroups
def test_memory_limit_ends_the_run_with_a_reason(spawn_guest):
    if "memory" not in cgroups.available_controllers():
        pytest.skip("the cgroups here have no memory controller")
    g = spawn_guest(limits=Limits(memory_bytes=32 << 20))
    g.ask(b"r", 1)
    result = g.finish(b"m")
    assert result.limit == "memory", result
    assert result.cgroup_stats.oom_kills >= 1
    assert "memory limit" in result.reason


def test_cpu_time_limit(spawn_guest):
    g = spawn_guest(limits=Limits(cpu_time_s=1))
    g.ask(b"r", 1)
    result = g.finish(b"c")
    assert result.signal in (signal.SIGXCPU, signal.SIGKILL)
    assert result.limit == "cpu_time"


def test_memory_falls_back_to_rlimit_as_without_cgroups(spawn_guest):
    g = spawn_guest(limits=Limits(memory_bytes=64 << 20), cgroup="none")
    g.ask(b"r", 1)
    assert g.sp.cgroup is None
    assert g.sp.enforcement["memory"].startswith("RLIMIT_AS")
    assert limits_of(g.sp.guest_pid)["Max address space"] == (str(64 << 20), str(64 << 20))
    assert g.ask(b"m") == "mmap-failed\n"
    g.finish()


# ---------------------------------------------------------------- bad input, failures


@pytest.mark.unit
def test_bad_configs_are_named(guest_bin):
    hello = str(guest_bin / "hello")
    cases = [
        ({"argv": []}, "argv"),
        ({"argv": [hello, "a\0b"]}, "argv[1] contains a NUL"),
        ({"argv": [hello], "env": {"A=B": "1"}}, "env name"),
        ({"argv": [hello], "env": {"A": "x\0"}}, "NUL"),
        ({"argv": [hello], "stdio": (0, 987654, 2)}, "stdio[1]: fd 987654 is not open"),
        ({"argv": [hello], "stdio": (0, 1)}, "exactly 3"),
        ({"argv": [hello], "hostname": "h" * 65}, "hostname"),
        ({"argv": [hello], "hostname": ""}, "hostname"),
    ]
    if IS_ROOT:
        cases.append(({"argv": [hello], "identity": (0, 0)}, "never runs as root"))
    for kwargs, message in cases:
        with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
            spawn_picoprocess(SpawnConfig(**kwargs))
    with pytest.raises(ValueError, match="cgroup"):
        spawn_picoprocess(SpawnConfig(argv=[hello], cgroup="v9"))
    with pytest.raises(ImageError, match="/nonexistent/prog: No such file"):
        spawn_picoprocess(SpawnConfig(argv=["/nonexistent/prog"]))


def test_fds_on_the_childs_fixed_numbers_are_moved_out_of_the_way(guest_bin):
    """The child puts its report and status ends and the image on fixed
    numbers just below 1024; a monitor serving many guests holds that many
    fds, so the stdio it passes can sit there.  They are moved, not
    clobbered (before: refused with ConfigError, which a busy monitor's own
    pipes hit)."""
    from picoproc.native import lib

    r, w = os.pipe()
    try:
        for number in (lib.PICO_GUESTNET_FD, lib.PICO_STATUS_FD, lib.PICO_REPORT_FD, 1023):  # 1023: loader fd
            os.dup2(w, number)
            try:
                sp = spawn_picoprocess(SpawnConfig(argv=[str(guest_bin / "hello")], stdio=(0, number, 2)))
            finally:
                os.close(number)
            result = wait_picoprocess(sp, timeout=TIMEOUT)
            assert result.exit_code == 0
            assert read_line(r).startswith("hello"), number
    finally:
        os.close(r)
        os.close(w)


def test_failed_exec_is_reported_and_leaves_nothing(tmp_path):
    junk = tmp_path / "junk"
    junk.write_bytes(b"\x7fELF" + b"\0" * 60)  # an ELF magic with nothing behind it
    junk.chmod(0o755)
    fd = os.open(junk, os.O_RDONLY)
    try:
        with pytest.raises(SpawnError, match="entering the image") as exc:
            spawn_picoprocess(SpawnConfig(argv=["junk"], image_fd=fd, limits=Limits(pids=4)))
        assert exc.value.errno == errno.ENOEXEC
    finally:
        os.close(fd)


def test_oversized_argv_is_refused_by_exec_and_reported(guest_bin):
    with pytest.raises(SpawnError, match="entering the image") as exc:
        spawn_picoprocess(SpawnConfig(argv=[str(guest_bin / "hello"), "x" * (256 << 10)]))
    assert exc.value.errno == errno.E2BIG


def test_spawn_from_many_threads_at_once(guest_bin):
    """Concurrent spawns from threads of one monitor each get their own run."""
    results = []
    errors = []

    def one():
        try:
            r, w = os.pipe()
            try:
                sp = spawn_picoprocess(
                    SpawnConfig(argv=[str(guest_bin / "hello")], stdio=(0, w, 2))
                )
                os.close(w)
                w = -1
                results.append((wait_picoprocess(sp, timeout=TIMEOUT).exit_code, read_exact(r, 25)))
            finally:
                os.close(r)
                if w >= 0:
                    os.close(w)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=one) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(TIMEOUT)
    assert not errors, errors
    assert results == [(0, b"hello from a picoprocess\n")] * 8


def test_run_outlives_the_thread_that_spawned_it(spawn_guest):
    """PR_SET_PDEATHSIG follows the creating *thread*: a worker thread that
    spawns and exits must not take the run with it."""
    box = []

    def work():
        # A pidfd on this very thread (PIDFD_THREAD == O_EXCL, Linux 6.9):
        # readable once the OS thread has exited, i.e. after the kernel has
        # sent any parent-death signal it was going to send.
        try:
            box.append(os.pidfd_open(threading.get_native_id(), os.O_EXCL))
        except OSError:
            box.append(None)
        box.append(spawn_guest())

    worker = threading.Thread(target=work)
    worker.start()
    worker.join(TIMEOUT)
    assert not worker.is_alive() and len(box) == 2
    thread_fd, g = box
    if thread_fd is None:
        pytest.skip(
            "no PIDFD_THREAD (Linux < 6.9): cannot tell when the worker thread has really exited"
        )
    try:
        assert select.select([thread_fd], [], [], TIMEOUT)[0], "the worker thread did not exit"
    finally:
        os.close(thread_fd)
    assert g.ask(b"r", 1) == "R"
    assert g.ask(b"p") == "pid=2 ppid=1\n"
    assert g.finish(b"e").exit_code == 42


def test_cli_raw_still_runs_on_the_spawn_path(guest_bin, run_picoproc):
    proc = run_picoproc("run", "--raw", "--", guest_bin / "hello")
    assert (proc.returncode, proc.stdout) == (0, "hello from a picoprocess\n")


# ---------------------------------------------------------------- scratch tmpfs


def test_scratch_is_private_size_limited_and_owned_by_the_guest():
    mounts_before = pathlib.Path("/proc/self/mountinfo").read_text()
    with make_scratch(1 << 20) as scratch:
        st = os.fstat(scratch.dir_fd)
        assert (st.st_uid, st.st_gid) == GUEST_IDS
        assert st.st_mode & 0o7777 == 0o700
        mnt_id = next(
            line.split()[1]
            for line in pathlib.Path(f"/proc/self/fdinfo/{scratch.dir_fd}").read_text().splitlines()
            if line.startswith("mnt_id:")
        )
        assert pathlib.Path("/proc/self/mountinfo").read_text() == mounts_before, (
            "scratch must not be mounted anywhere"
        )
        fd = os.open("data", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600, dir_fd=scratch.dir_fd)
        try:
            written = 0
            with pytest.raises(OSError) as exc:
                while True:
                    written += os.write(fd, b"x" * 65536)
            assert exc.value.errno == errno.ENOSPC
            assert written <= 1 << 20
        finally:
            os.close(fd)
    assert scratch.closed
    # Nothing in this process still refers to that mount.
    for fd in os.listdir("/proc/self/fdinfo"):
        try:
            info = pathlib.Path(f"/proc/self/fdinfo/{fd}").read_text()
        except OSError:
            continue
        assert f"mnt_id:\t{mnt_id}\n" not in info
    assert pathlib.Path("/proc/self/mountinfo").read_text() == mounts_before


@pytest.mark.unit
def test_scratch_bad_sizes():
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="size"):
            make_scratch(bad)


# ---------------------------------------------------------------- out-of-process monitors


class Monitor:
    """tests/spawn_monitor_helper.py in its own process (optionally unprivileged)."""

    def __init__(self, argv, prefix=(), python=sys.executable, helper=None, env=None, **config):
        self.cmd_r, self.cmd_w = os.pipe()
        self.out_r, self.out_w = os.pipe()
        helper = helper or str(REPO / "tests" / "spawn_monitor_helper.py")
        cfg = dict(argv=argv, stdin_fd=self.cmd_r, stdout_fd=self.out_w, **config)
        self.proc = subprocess.Popen(
            [*prefix, python, helper, json.dumps(cfg)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            pass_fds=(self.cmd_r, self.out_w),
            env=env,
        )
        os.close(self.cmd_r)
        os.close(self.out_w)
        ready, _, _ = select.select([self.proc.stdout], [], [], TIMEOUT)
        assert ready, "the monitor did not report its picoprocess"
        self.info = json.loads(self.proc.stdout.readline())
        assert "error" not in self.info, self.info["error"]

    def ask(self, cmd: bytes, n: int) -> str:
        os.write(self.cmd_w, cmd)
        return read_exact(self.out_r, n).decode()

    def finish(self, cmd: bytes | None = None) -> dict:
        if cmd:
            os.write(self.cmd_w, cmd)
        os.close(self.cmd_w)
        self.cmd_w = -1
        out, _ = self.proc.communicate("wait\n", timeout=TIMEOUT)
        return json.loads(out)

    def close(self):
        for fd in (self.cmd_w, self.out_r):
            if fd >= 0:
                os.close(fd)
        self.cmd_w = self.out_r = -1
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(TIMEOUT)
        self.proc.stdout.close()
        self.proc.stdin.close()


@pytest.fixture(params=["root", "unprivileged"] if IS_ROOT else ["self"])
def monitor(request, guest_bin):
    """Starts a separate monitor process running spawn_ctl; as root and as 65534."""
    opened = []

    def start(**config) -> Monitor:
        if request.param == "unprivileged":
            env = request.getfixturevalue("unpriv_env")
            m = Monitor(
                [str(env["root"] / "guests" / "spawn_ctl")],
                prefix=env["prefix"],
                python=env["python"],
                helper=str(env["root"] / "helper.py"),
                env=env["env"],
                **config,
            )
        else:
            m = Monitor([str(guest_bin / "spawn_ctl")], **config)
        opened.append(m)
        return m

    start.kind = request.param
    yield start
    for m in opened:
        m.close()


def test_out_of_process_monitor_confines_the_guest(monitor):
    m = monitor(hostname="elsewhere")
    assert m.ask(b"r", 1) == "R"
    guest = m.info["guest_pid"]
    uid = 65534 if monitor.kind != "self" else os.geteuid()
    st = status_fields(guest)
    assert st["Uid"].split() == [str(uid)] * 4
    for cap in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
        assert int(st[cap], 16) == 0
    assert (st["NoNewPrivs"], st["Seccomp"]) == ("1", "2")
    assert st["NSpid"].split()[-1] == "2"
    assert pathlib.Path(f"/proc/{guest}/uid_map").read_text().split() == [str(uid), str(uid), "1"]
    expected_setgroups = "deny" if monitor.kind != "root" else "allow"
    assert pathlib.Path(f"/proc/{guest}/setgroups").read_text().strip() == expected_setgroups
    mine = ns_ids(m.proc.pid)
    theirs = ns_ids(guest)
    assert all(mine[ns] != theirs[ns] for ns in NAMESPACES)
    assert os.listdir(f"/proc/{guest}/root") == []
    assert sorted(os.listdir(f"/proc/{guest}/fd"), key=int) == ["0", "1", "2"]
    if monitor.kind == "unprivileged" and cgroups.available().version is not None:
        # An unprivileged monitor here has no delegated cgroup: it says why.
        assert m.info["cgroup"] is None and m.info["cgroup_note"]
    result = m.finish(b"e")
    assert (result["exit_code"], result["signal"]) == (42, None)


def test_no_guest_outlives_a_killed_monitor(monitor):
    """SIGKILL the monitor: the reaper's parent-death signal takes the whole
    pid namespace with it — guest, children and grandchildren."""
    m = monitor(limits={"pids": 32})
    assert sorted(m.ask(b"f", 7)) == sorted("cccgggF")
    run = pids_in_pid_ns(os.readlink(f"/proc/{m.info['guest_pid']}/ns/pid"))
    assert len(run) == 8
    m.proc.kill()
    m.proc.wait(TIMEOUT)
    wait_all_gone(run)
    # Its run cgroup (if any) is left for the next monitor's sweep to remove.
    if m.info["cgroup"]:
        removed = cgroups.sweep_stale()
        for path in m.info["cgroup"].values():
            assert not os.path.exists(path)
            assert path in removed


def test_unprivileged_scratch(unpriv_env):
    """make_scratch without root: a user+mount namespace helper makes the tmpfs."""
    script = (
        "import errno, json, os\n"
        "from picoproc.scratch import make_scratch\n"
        "before = open('/proc/self/mountinfo').read()\n"
        "s = make_scratch(1 << 20)\n"
        "st = os.fstat(s.dir_fd)\n"
        "fd = os.open('f', os.O_WRONLY | os.O_CREAT, 0o600, dir_fd=s.dir_fd)\n"
        "n = 0\n"
        "try:\n"
        "    while True: n += os.write(fd, b'x' * 65536)\n"
        "except OSError as e: err = e.errno\n"
        "print(json.dumps({'uid': st.st_uid, 'written': n, 'errno': err,\n"
        "                  'mounts_unchanged': before == open('/proc/self/mountinfo').read()}))\n"
    )
    proc = subprocess.run(
        [*unpriv_env["prefix"], unpriv_env["python"], "-c", script],
        capture_output=True,
        text=True,
        check=False,
        timeout=TIMEOUT,
        env=unpriv_env["env"],
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["uid"] == 65534
    assert out["errno"] == errno.ENOSPC and out["written"] <= 1 << 20
    assert out["mounts_unchanged"], "the scratch tmpfs must not be mounted anywhere"
