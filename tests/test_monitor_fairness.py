"""The monitor serves every guest on a thread of its own and bounds the work
of one call (native/loop.c, native/mediate_fs.c).  Behaviour only, never
timings (benchmarks/perf measures those):

* each live guest has its own serving thread, and the threads go when the
  guests do;
* while guests flood the monitor with calls from many threads, another
  guest's calls are all answered, and the flooders keep being served too;
* resolving a path of thousands of components, or of thousands of `..`,
  or a deep path that ends in a link, takes a handful of host lookups
  (counted by the monitor), not one per component, also while renames on
  the host make the kernel refuse lookups through `..` (EAGAIN).
"""

from __future__ import annotations

import os
import pathlib
import signal
import subprocess
import sys
import tempfile
import time

import pytest
from picoproc.monitor import GUEST_SECCOMP_FLAGS, FsPolicy, Monitor
from picoproc.raw import spawn_raw
from picoproc.spawn import release, wait_picoprocess

pytestmark = pytest.mark.root

TIMEOUT = 120.0
DEPTH = 1000


def _make_deep(root: pathlib.Path) -> None:
    """DEPTH nested directories "a" under root/deep, with a file f and a
    link l to it at the bottom (built and removed through directory fds:
    the paths are too long, and too deep for os.walk's recursion)."""
    fd = os.open(root, os.O_RDONLY)
    os.mkdir("deep", 0o755, dir_fd=fd)
    cur = os.open("deep", os.O_RDONLY, dir_fd=fd)
    os.close(fd)
    for _ in range(DEPTH):
        os.mkdir("a", 0o755, dir_fd=cur)
        os.chmod("a", 0o755, dir_fd=cur)
        nxt = os.open("a", os.O_RDONLY, dir_fd=cur)
        os.close(cur)
        cur = nxt
    f = os.open("f", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=cur)
    os.write(f, b"bottom")
    os.fchmod(f, 0o644)
    os.close(f)
    os.symlink("f", "l", dir_fd=cur)
    os.close(cur)


def _remove_deep(root: pathlib.Path) -> None:
    fds = [os.open(root / "deep", os.O_RDONLY)]
    for _ in range(DEPTH):
        fds.append(os.open("a", os.O_RDONLY, dir_fd=fds[-1]))
    os.unlink("f", dir_fd=fds[-1])
    os.unlink("l", dir_fd=fds[-1])
    for parent in reversed(fds[:-1]):
        os.rmdir("a", dir_fd=parent)
    for fd in fds:
        os.close(fd)
    os.rmdir(root / "deep")


@pytest.fixture(scope="module")
def tree():
    with tempfile.TemporaryDirectory(prefix="picoproc-fair-") as d:
        root = pathlib.Path(d)
        os.chmod(root, 0o755)
        (root / "f").write_text("hello data")
        os.chmod(root / "f", 0o644)
        (root / "x").mkdir(mode=0o755)
        (root / "lnk").symlink_to("f")
        _make_deep(root)
        try:
            yield root
        finally:
            _remove_deep(root)


@pytest.fixture(scope="module")
def policy(tree):
    p = FsPolicy()
    p.add_mount("/data", str(tree))
    yield p
    p.close()


def start(mon, policy, argv, out):
    g = spawn_raw([str(a) for a in argv], {}, (0, out.fileno(), 2), seccomp_flags=GUEST_SECCOMP_FLAGS)
    try:
        handle = mon.add_guest(g.listener_fd, g.guest_pid, policy)
    finally:
        os.close(g.listener_fd)
    return g, handle


def finish(mon, g, handle):
    try:
        status = wait_picoprocess(g, TIMEOUT)
    except TimeoutError:
        release(g)
        raise
    return status, mon.remove_guest(handle)


def test_every_guest_has_a_serving_thread_of_its_own(guest_bin, policy):
    with Monitor() as mon:
        with tempfile.TemporaryFile() as out:
            started = [start(mon, policy, [guest_bin / "med_spam", "/data/f", "hello data", 0], out)
                       for _ in range(5)]
            try:
                assert mon.counters()["servers"] == 5
            finally:
                for g, _ in started:
                    os.kill(g.pid, signal.SIGKILL)
            for g, h in started:
                finish(mon, g, h)
        deadline = time.monotonic() + TIMEOUT
        while mon.counters()["servers"] and time.monotonic() < deadline:
            time.sleep(0.01)  # a server ends when its guest is removed: bounded wait for the count
        assert mon.counters()["servers"] == 0


def test_a_guest_is_served_while_others_flood_the_monitor(guest_bin, policy):
    n = 2000
    with Monitor() as mon, tempfile.TemporaryFile() as noise, tempfile.TemporaryFile() as out:
        # Eight flooding guests, each calling as fast as it can, forever.
        flooders = [start(mon, policy, [guest_bin / "med_spam", "/data/f", "hello data", 0], noise)
                    for _ in range(8)]
        try:
            before = {h: mon.guest_stats(h)["calls"] for _, h in flooders}
            g, h = start(mon, policy, [guest_bin / "med_spam", "/data/f", "hello data", n], out)
            status, stats = finish(mon, g, h)
            during = {h: mon.guest_stats(h)["calls"] - before[h] for _, h in flooders}
            alive = all(mon.guest_stats(fh)["alive"] for _, fh in flooders)
        finally:
            for fg, _ in flooders:
                os.kill(fg.pid, signal.SIGKILL)
        for fg, fh in flooders:
            finish(mon, fg, fh)
        out.seek(0)
        assert status.exit_code == 0 and out.read() == f"good={n} bad=0\n".encode()
        assert stats["calls"] == stats["allowed"] == n
        # The flood went on the whole time, and every flooder was served.
        assert alive and all(c > 0 for c in during.values()), during


def _lookups(mon, policy, guest_bin, path: str, n: int = 10) -> float:
    before = mon.counters()["fs_lookups"]
    with tempfile.TemporaryFile() as out:
        g, h = start(mon, policy, [guest_bin / "med_bench", "stat", path, n], out)
        status, stats = finish(mon, g, h)
        out.seek(0)
        text = out.read().decode()
    assert status.exit_code == 0 and stats["allowed"] == n, text
    return (mon.counters()["fs_lookups"] - before) / n


@pytest.mark.parametrize("name, path", [
    ("thousands of dots", "/data/" + "./" * 1900 + "f"),
    ("thousands of x/..", "/data/" + "x/../" * 800 + "f"),
    ("a thousand directories", "/data/deep" + "/a" * DEPTH + "/f"),
    ("a thousand directories, then a link", "/data/deep" + "/a" * DEPTH + "/l"),
    ("a thousand directories down and up", "/data/deep" + "/a" * 500 + "/.." * 500 + "/a"),
])
def test_the_work_of_a_path_is_bounded(guest_bin, policy, name, path):
    assert len(path) <= 4096
    with Monitor() as mon:
        per_call = _lookups(mon, policy, guest_bin, path)
        plain = _lookups(mon, policy, guest_bin, "/data/f")
        link = _lookups(mon, policy, guest_bin, "/data/lnk")
    # A handful of host lookups per call, as for a short path: not one (or
    # several) per component.
    assert per_call <= max(plain, link) + 12, (name, per_call, plain, link)


_RENAMES = """
import os, sys
a, b = os.path.join(sys.argv[1], "a"), os.path.join(sys.argv[1], "b")
open(a, "w").close()
print("renaming", flush=True)
while True:
    os.rename(a, b)
    os.rename(b, a)
"""


@pytest.fixture
def renaming_host():
    """Renames on the host as fast as two processes can: the kernel refuses
    a RESOLVE_BENEATH lookup through `..` with EAGAIN when a rename happened
    anywhere during it, as on a busy host (how often depends on the CPUs
    each runs on: without the monitor's answer to EAGAIN, this fails some
    of the time)."""
    with tempfile.TemporaryDirectory(prefix="picoproc-renames-") as d:
        procs = []
        try:
            for i in range(2):
                os.mkdir(os.path.join(d, str(i)))
                procs.append(subprocess.Popen([sys.executable, "-c", _RENAMES, os.path.join(d, str(i))],
                                              stdout=subprocess.PIPE))
            for proc in procs:
                assert proc.stdout.readline() == b"renaming\n"
            yield
        finally:
            for proc in procs:
                proc.kill()
                proc.wait()
                proc.stdout.close()


@pytest.mark.parametrize("name, path", [
    ("thousands of x/..", "/data/" + "x/../" * 800 + "f"),
    ("a thousand directories down and up", "/data/deep" + "/a" * 500 + "/.." * 500 + "/a"),
])
def test_the_work_of_a_path_with_dotdot_is_bounded_while_the_host_renames(guest_bin, policy, renaming_host,
                                                                           name, path):
    with Monitor() as mon:
        per_call = _lookups(mon, policy, guest_bin, path)
        plain = _lookups(mon, policy, guest_bin, "/data/f")
        link = _lookups(mon, policy, guest_bin, "/data/lnk")
    assert per_call <= max(plain, link) + 12, (name, per_call, plain, link)


def test_a_link_inside_a_mount_costs_the_lookups_of_its_names(guest_bin, policy):
    """/data/lnk -> f: the link's own name, read, then the target's name;
    the mount's own directory (its fd, a directory by construction) is never
    looked up again on the way (the dynamic loader's /lib64 link, in every
    exec, goes through a mount's root like this)."""
    with Monitor() as mon:
        plain = _lookups(mon, policy, guest_bin, "/data/f")
        link = _lookups(mon, policy, guest_bin, "/data/lnk")
    assert link - plain <= 3, (plain, link)
