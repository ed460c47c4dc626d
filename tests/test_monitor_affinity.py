"""The monitor leaves the guest's CPU affinity alone.

An earlier monitor narrowed the calling thread's affinity around each
NOTIF_ADDFD (to keep the kernel's wake-up on one CPU), which tasks created in
that window could inherit.  Fds now come back on the caller's channel, or by
a plain NOTIF_ADDFD (docs/ARCHITECTURE.md, "Handing fds back"), and nothing
touches a mask; these tests keep it so.  They run tests/guests/med_affinity,
which makes many mediated opens (a raw guest: by NOTIF_ADDFD, counted in the
loop's fds_by_addfd) and then waits on stdin, and look at every task of the
guest from outside (a raw guest cannot ask the kernel for its own mask, and
the library OS answers sched_getaffinity itself):

* each thread keeps exactly the mask it had: the one it inherited, whether
  every CPU or one a taskset restricted (compared with sched_getaffinity and
  with /proc's Cpus_allowed of the run's reaper, which never calls the
  monitor);
* a thread restricted to one CPU is never moved off it, even for a moment
  (the guest checks its CPU with RDTSCP after every open);
* children and threads created right after an open keep the mask too;
* threads calling concurrently all keep theirs;
* the same for a monitor running as an unprivileged user.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import select
import tempfile

import pytest
from picoproc.monitor import GUEST_SECCOMP_FLAGS, FsPolicy, Monitor
from picoproc.raw import spawn_raw
from picoproc.spawn import release, wait_picoprocess

pytestmark = pytest.mark.root

TIMEOUT = 60.0


@pytest.fixture(scope="module")
def data_dir():
    with tempfile.TemporaryDirectory(prefix="picoproc-affinity-") as d:
        os.chmod(d, 0o755)
        f = pathlib.Path(d) / "file.txt"
        f.write_text("data\n")
        os.chmod(f, 0o644)
        yield d


@pytest.fixture(scope="module")
def monitor():
    with Monitor() as mon:
        yield mon


@pytest.fixture(scope="module")
def policy(data_dir):
    with FsPolicy() as p:
        p.add_mount("/data", data_dir)
        yield p


def _mask_number(cpus) -> int:
    return sum(1 << c for c in cpus)


def _read_line(fd: int) -> str:
    data = b""
    while not data.endswith(b"\n"):
        ready, _, _ = select.select([fd], [], [], TIMEOUT)
        assert ready, f"the guest printed nothing in {TIMEOUT} s (so far: {data!r})"
        chunk = os.read(fd, 4096)
        assert chunk, f"the guest ended before it was ready (printed {data!r})"
        data += chunk
    return data.decode()


@contextlib.contextmanager
def waiting_guest(guest_bin, mon, policy, mode: str, n: int, cpus):
    """Runs med_affinity with the CPU mask `cpus` (inherited from this
    thread); yields (spawned, its "ready" line) while the guest waits for EOF
    on stdin, then lets it finish and checks that it did."""
    in_r, in_w = os.pipe()
    out_r, out_w = os.pipe()
    own = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cpus)  # this thread only; the guest inherits it
    try:
        g = spawn_raw([str(guest_bin / "med_affinity"), mode, "/data/file.txt", str(n), str(_mask_number(cpus))],
                      {}, (in_r, out_w, 2), seccomp_flags=GUEST_SECCOMP_FLAGS)
    finally:
        os.sched_setaffinity(0, own)
        os.close(in_r)
        os.close(out_w)
    try:
        handle = mon.add_guest(g.listener_fd, g.guest_pid, policy)
    finally:
        os.close(g.listener_fd)
    try:
        try:
            yield g, _read_line(out_r)
        finally:
            os.close(in_w)  # EOF: every task of the guest goes on and ends
            try:
                status = wait_picoprocess(g, TIMEOUT)
            except TimeoutError:
                release(g)
                raise
            mon.remove_guest(handle)
            mon.drain_audit()
        assert status.exit_code == 0, status
    finally:
        os.close(out_r)


def _pidns(pid: int):
    st = os.stat(f"/proc/{pid}/ns/pid")
    return st.st_dev, st.st_ino


def guest_threads(g) -> list[int]:
    """Every thread of the run (host tids): the tasks in its pid namespace."""
    ns = _pidns(g.pid)
    tids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if _pidns(int(entry)) != ns:
                continue
            tids.extend(int(t) for t in os.listdir(f"/proc/{entry}/task"))
        except (FileNotFoundError, PermissionError):  # gone, or not ours to look at
            continue
    return tids


def cpus_allowed(tid: int) -> str:
    """The kernel's whole mask of the task (not only its online CPUs)."""
    with open(f"/proc/{tid}/status") as f:
        for line in f:
            if line.startswith("Cpus_allowed:"):
                return line.split()[1]
    raise AssertionError(f"no Cpus_allowed for {tid}")


def assert_masks_untouched(g, cpus, at_least: int):
    reaper_mask = cpus_allowed(g.pid)  # the run's pid 1: never calls the monitor
    tids = guest_threads(g)
    assert len(tids) >= at_least, tids
    masks = {tid: os.sched_getaffinity(tid) for tid in tids}
    assert all(m == set(cpus) for m in masks.values()), masks
    whole = {tid: cpus_allowed(tid) for tid in tids}
    assert all(m == reaper_mask for m in whole.values()), (reaper_mask, whole)


def parse_ready(line: str) -> dict[str, int]:
    words = line.split()
    assert words[0] == "ready", line
    return {k: int(v) for k, v in (w.split("=") for w in words[1:])}


ALL = sorted(os.sched_getaffinity(0))


def _masks():
    masks = [pytest.param(ALL, id="all-cpus")]
    masks += [pytest.param([c], id=f"cpu{c}") for c in (ALL[0], ALL[-1])][: len(ALL)]
    if len(ALL) >= 3:
        masks.append(pytest.param(ALL[:2], id="two-cpus"))
    return masks


@pytest.mark.parametrize("cpus", _masks())
def test_opens_leave_each_thread_its_own_mask(guest_bin, monitor, policy, cpus):
    before = monitor.counters()["fds_by_addfd"]
    with waiting_guest(guest_bin, monitor, policy, "open", 300, cpus) as (g, line):
        ready = parse_ready(line)
        assert ready == {"opens": 300, "outside": 0}
        assert_masks_untouched(g, cpus, at_least=2)
    assert monitor.counters()["fds_by_addfd"] - before == 300  # every fd by NOTIF_ADDFD


def test_children_forked_right_after_an_open_keep_the_parents_mask(guest_bin, monitor, policy):
    n = 100
    with waiting_guest(guest_bin, monitor, policy, "fork", n, ALL) as (g, line):
        assert parse_ready(line) == {"opens": n, "outside": 0}
        assert_masks_untouched(g, ALL, at_least=n + 2)


def test_threads_started_right_after_an_open_keep_the_callers_mask(guest_bin, monitor, policy):
    n = 100
    with waiting_guest(guest_bin, monitor, policy, "thread", n, ALL) as (g, line):
        assert parse_ready(line) == {"opens": n, "outside": 0}
        assert_masks_untouched(g, ALL, at_least=n + 2)


def test_concurrent_callers_each_get_their_mask_back(guest_bin, monitor, policy):
    n = 300
    with waiting_guest(guest_bin, monitor, policy, "threads", n, ALL) as (g, line):
        assert parse_ready(line) == {"opens": 3 * n, "outside": 0}
        assert_masks_untouched(g, ALL, at_least=2)


# The unprivileged half: a monitor running as uid 65534 (its guests are in a
# user namespace it owns).
_UNPRIV_SCRIPT = r"""
import json, os, select, sys
from picoproc.monitor import GUEST_SECCOMP_FLAGS, FsPolicy, Monitor
from picoproc.raw import spawn_raw
from picoproc.spawn import wait_picoprocess

guests, n = sys.argv[1], int(sys.argv[2])
cpus = sorted(os.sched_getaffinity(0))
mask = sum(1 << c for c in cpus)
with Monitor() as mon, FsPolicy() as policy:
    policy.add_mount("/data", guests)
    in_r, in_w = os.pipe()
    out_r, out_w = os.pipe()
    g = spawn_raw([guests + "/med_affinity", "open", "/data/med_affinity", str(n), str(mask)],
                  {}, (in_r, out_w, 2), seccomp_flags=GUEST_SECCOMP_FLAGS)
    os.close(in_r)
    os.close(out_w)
    handle = mon.add_guest(g.listener_fd, g.guest_pid, policy)
    os.close(g.listener_fd)
    line = b""
    while not line.endswith(b"\n"):
        assert select.select([out_r], [], [], 60)[0], "the guest printed nothing"
        chunk = os.read(out_r, 4096)
        assert chunk, line
        line += chunk
    ns = os.stat(f"/proc/{g.pid}/ns/pid")
    masks = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                st = os.stat(f"/proc/{entry}/ns/pid")
                if (st.st_dev, st.st_ino) == (ns.st_dev, ns.st_ino):
                    for tid in os.listdir(f"/proc/{entry}/task"):
                        masks[tid] = sorted(os.sched_getaffinity(int(tid)))
            except (FileNotFoundError, PermissionError):
                pass
    os.close(in_w)
    status = wait_picoprocess(g, 60)
    mon.remove_guest(handle)
    print(json.dumps({"ready": line.decode().strip(), "uid": os.geteuid(), "cpus": cpus,
                      "masks": masks, "exit_code": status.exit_code,
                      "by_addfd": mon.counters()["fds_by_addfd"]}))
"""


def test_an_unprivileged_monitor_leaves_the_masks_alone(unpriv_env):
    import json
    import subprocess

    n = 200
    env = dict(unpriv_env["env"])
    proc = subprocess.run(
        [*unpriv_env["prefix"], unpriv_env["python"], "-c", _UNPRIV_SCRIPT,
         str(unpriv_env["root"] / "guests"), str(n)],
        capture_output=True, text=True, check=False, timeout=TIMEOUT, env=env,
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["uid"] == 65534
    assert out["exit_code"] == 0
    assert out["ready"] == f"ready opens={n} outside=0"
    assert len(out["masks"]) >= 2  # the reaper and the guest
    assert all(m == out["cpus"] for m in out["masks"].values()), out["masks"]
    assert out["by_addfd"] == n
