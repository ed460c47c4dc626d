"""The argument area and the channels, against hostile guests.

A picoprocess with a library OS passes mediated arguments through a sealed
memfd that it and the monitor map, and gets its fds on per-slot AF_UNIX
channels (abi/abi_v1.toml, "The argument area"; native/loop.c).  Every byte
of the area is the guest's, so these tests play the guest: a raw program
(tests/guests/med_area.c) maps its area and passes area references itself,
and does what the library OS never would.  What must hold:

* the monitor copies each argument once before checking it: a thread
  rewriting the URI in the area during the call never gets a forbidden file,
  and the audit names exactly the bytes that were checked (docs/ARCHITECTURE.md,
  invariant 2);
* references past the area, straddling its end or with huge offsets or
  lengths get EFAULT, and the monitor keeps serving;
* an fd asked for on a channel comes with the call's tag; a refused call
  sends none; a guest that never takes its fds cannot make the monitor hold
  more than a few in flight (then NOTIF_ADDFD);
* unmapping, replacing or write-protecting its view hurts only the guest:
  the monitor reads and writes its own mapping and never faults;
* the area cannot shrink or grow (its seals), and a library-OS guest cannot
  close or replace the area's fds (EBADF);
* fork, exec, threads and vfork children of a library-OS program all make
  their calls through the area and get their fds on channels.
"""

from __future__ import annotations

import errno
import os
import pathlib
import subprocess
import sys
import tempfile

import pytest
from conftest import public_and_secret_tree
from picoproc.abi.table import load_table
from picoproc.monitor import GUEST_SECCOMP_FLAGS, FsPolicy, GuestArea, Monitor
from picoproc.raw import spawn_raw
from picoproc.spawn import release, wait_picoprocess

pytestmark = pytest.mark.root

TIMEOUT = 120.0
ABI = load_table().constants


@pytest.fixture(scope="module")
def tree():
    with public_and_secret_tree("picoproc-area-") as root:
        (root / "pub" / "link").symlink_to("x.txt")
        yield root


@pytest.fixture(scope="module")
def policy(tree):
    p = FsPolicy()
    p.add_mount("/", str(tree))
    p.add_hidden("/sec")
    yield p
    p.close()


def run_area_guest(mon: Monitor, policy: FsPolicy, args, *, with_area: bool = True, guest_bin=None):
    """Runs med_area with an argument area (unless with_area is false); its
    output lines, exit code, records and stats."""
    area = GuestArea() if with_area else None
    try:
        with tempfile.TemporaryFile() as out, open(os.devnull, "rb") as devnull:
            g = spawn_raw([str(guest_bin / "med_area"), *map(str, args)], {}, (devnull.fileno(), out.fileno(), 2),
                          seccomp_flags=GUEST_SECCOMP_FLAGS, area=area)
            try:
                handle = mon.add_guest(g.listener_fd, g.guest_pid, policy, area=area)
            finally:
                os.close(g.listener_fd)
            if area is not None:
                area.close()  # the guest and the monitor have their own copies
                area = None
            try:
                status = wait_picoprocess(g, TIMEOUT)
            except TimeoutError:
                release(g)
                raise
            stats = mon.remove_guest(handle)
            out.seek(0)
            lines = out.read().decode().splitlines()
    finally:
        if area is not None:
            area.close()
    records = [r for r in mon.drain_audit() if r["guest"] == handle]
    return status, lines, records, stats


def report(lines) -> dict[str, str]:
    return dict(line.split(": ", 1) for line in lines if ": " in line)


def test_rewriting_the_uri_in_the_area_during_the_call_never_gets_the_forbidden_file(guest_bin, policy):
    n = 20000
    allowed, forbidden = "file:/pub/x.txt", "file:/sec/x.txt"
    with Monitor(audit_capacity=2 * n) as mon:
        before = mon.counters()
        status, lines, records, stats = run_area_guest(mon, policy, ["race", allowed, forbidden, n],
                                                       guest_bin=guest_bin)
        after = mon.counters()
    assert status.exit_code == 0, lines
    fields = dict(kv.split("=") for kv in lines[0].split())
    assert int(fields["forbidden_content"]) == 0
    assert int(fields["opened"]) + int(fields["refused"]) == n
    # Every allowed open came back on the channel, with its own tag (the
    # guest exits 4 otherwise): no fd by NOTIF_ADDFD, no read of the process.
    assert int(fields["by_channel"]) == int(fields["opened"]) > 0
    assert after["fds_on_channel"] - before["fds_on_channel"] == int(fields["opened"])
    assert after["fds_by_addfd"] == before["fds_by_addfd"]
    assert after["area_calls"] - before["area_calls"] == n
    # The monitor used exactly the bytes it checked.
    assert len(records) == n
    for r in records:
        if r["decision"] == "allow":
            assert r["uri"] == allowed
        if r["uri"] == forbidden:
            assert r["decision"] == "deny"
    seen = {r["uri"] for r in records}
    assert allowed in seen and forbidden in seen, "the rewriting thread never raced the call"


def test_bad_area_references_get_efault_and_the_monitor_keeps_serving(guest_bin, policy, tree):
    with Monitor() as mon:
        status, lines, records, _ = run_area_guest(mon, policy, ["hostile", "file:/pub/x.txt"],
                                                   guest_bin=guest_bin)
        assert status.exit_code == 0, lines
        got = report(lines)
        efault = f"err {errno.EFAULT}"
        for name in ("open_past_end", "open_straddling", "open_huge_offset", "stat_result_past_end",
                     "readlink_buffer_past_end"):
            assert got[name] == efault, (name, got)
        assert got["open_huge_length"] == f"err {errno.ENAMETOOLONG}"
        assert got["readlink_into_area"] == "ok 5" and got["readlink_text_right"] == "ok 0"
        assert got["stat_result_in_area"] == "ok 0"
        assert got["stat_result_size"] == f"ok {len('PUBLIC')}"
        assert got["stat_result_in_head"] == "ok 0"  # the guest's own bookkeeping: its business
        assert got["open_uri_in_head_is_a_number"] == "ok 0"
        assert got["open_without_asking_is_a_number"] == "ok 0"
        assert got["open_on_channel_answers_the_marker"] == "ok 0"
        assert got["channel_fd"] == "ok 0" and got["channel_tag"] == "ok 0"
        assert got["open_refused_on_channel"] == f"err {errno.ENOENT}"
        assert got["nothing_on_channel"] == f"err {errno.EAGAIN}"
        assert got["open_past_the_last_slot"] == efault
        # Still serving: another guest's calls are answered.
        status, lines, _, _ = run_area_guest(mon, policy, ["race", "file:/pub/x.txt", "file:/pub/x.txt", 10],
                                             guest_bin=guest_bin)
        assert status.exit_code == 0 and lines[0].startswith("opened=10 "), lines


def test_an_area_reference_without_an_area_is_efault(guest_bin, policy):
    with Monitor() as mon:
        status, lines, _, _ = run_area_guest(mon, policy, ["noarea", "file:/pub/x.txt"], with_area=False,
                                             guest_bin=guest_bin)
    assert status.exit_code == 0
    assert report(lines)["open_without_an_area"] == f"err {errno.EFAULT}"


def test_a_guest_that_never_takes_its_fds_is_bounded(guest_bin, policy):
    n = 200
    with Monitor() as mon:
        status, lines, _, stats = run_area_guest(mon, policy, ["flood", "file:/pub/x.txt", n],
                                                 guest_bin=guest_bin)
    assert status.exit_code == 0, lines
    f = {k: int(v) for k, v in (kv.split("=") for kv in lines[0].split())}
    # Every call answered; the fds it never took are few (the channel's
    # send buffer is the minimum), the rest came by NOTIF_ADDFD.
    assert f["answered"] == n and stats["allowed"] == n
    assert 1 <= f["on_channel"] <= 16 and f["queued"] == f["on_channel"]
    assert f["by_addfd"] == n - f["on_channel"]


def test_unmapping_or_protecting_the_view_hurts_only_the_guest(guest_bin, policy):
    with Monitor() as mon:
        status, lines, _, _ = run_area_guest(mon, policy, ["unmap", "file:/pub/x.txt"], guest_bin=guest_bin)
        assert status.exit_code == 0, lines
        got = report(lines)
        assert got["munmap"] == "ok 0" and got["private_memory_in_its_place"] == "ok 0"
        # The monitor reads its own mapping: what was written before.
        assert got["stat_after_unmap"] == "ok 0" and got["access_after_unmap"] == "ok 0"
        assert got["read_only_view"] == "ok 0"
        assert got["stat_into_a_read_only_view"] == "ok 0" and got["result_visible"] == "ok 0"
        assert got["mprotect_none"] == "ok 0" and got["stat_into_an_inaccessible_view"] == "ok 0"
        status, lines, _, _ = run_area_guest(mon, policy, ["race", "file:/pub/x.txt", "file:/pub/x.txt", 10],
                                             guest_bin=guest_bin)
        assert status.exit_code == 0 and lines[0].startswith("opened=10 "), lines


@pytest.mark.unit
def test_the_area_cannot_shrink_or_grow_and_the_monitor_checks_it(policy):
    with GuestArea() as area:
        for size in (0, 4096, ABI["PICO_AREA_SIZE"] * 2):
            with pytest.raises(PermissionError):
                os.ftruncate(area.area_fd, size)
        assert os.fstat(area.area_fd).st_size == ABI["PICO_AREA_SIZE"]
        # The monitor's end of a channel reads nothing and takes nothing
        # from the guest: sending to it fails.
        with pytest.raises(BrokenPipeError):
            os.write(area.guest_channels[0], b"x")
    # The monitor maps only a sealed memfd of the area's size.
    import socket

    with Monitor() as mon, tempfile.TemporaryFile() as f:
        f.truncate(ABI["PICO_AREA_SIZE"])
        a, b = socket.socketpair()
        fake = GuestArea.__new__(GuestArea)
        fake.area_fd, fake.guest_channels, fake.monitor_channels = f.fileno(), (), ()
        from picoproc.monitor import MonitorError

        with pytest.raises(MonitorError) as e:
            mon.add_guest(a.fileno(), 1, policy, area=fake)
        assert e.value.errno == errno.EINVAL
        a.close()
        b.close()


# A library-OS program that abuses the area's fds, and one that makes calls
# from every kind of task: run through the Python API (which gives it an area).
_ABUSE = r"""
import errno, mmap, os, sys
AREA, CHANNEL = int(sys.argv[1]), int(sys.argv[2])
def attempt(name, fn):
    try:
        fn()
        print(name, "ok")
    except OSError as e:
        print(name, errno.errorcode[e.errno])
attempt("close_area", lambda: os.close(AREA))
attempt("close_channel", lambda: os.close(CHANNEL))
attempt("dup2_onto_area", lambda: os.dup2(1, AREA))
attempt("ftruncate_area", lambda: os.ftruncate(AREA, 0))
attempt("grow_area", lambda: os.ftruncate(AREA, 1 << 30))
os.closerange(3, 4096)
# Still served through the area, and fds still come back on the channels.
print(open("/etc/hostname").read() != "", os.path.exists("/usr"))
"""

_TASKS = r"""
import os, sys, threading
def calls():
    return open("/etc/hostname").read() != "" and os.stat("/usr").st_mode != 0
results = []
t = threading.Thread(target=lambda: results.append(calls())); t.start(); t.join()
pid = os.fork()
if pid == 0:
    os._exit(0 if calls() else 3)
assert os.waitpid(pid, 0)[1] == 0
pid = os.posix_spawn(sys.executable, [sys.executable, "-c", "import os; os.stat('/usr'); open('/etc/hostname').read()"], {})
assert os.waitpid(pid, 0)[1] == 0
print("all", results == [True] and calls())
"""


def _api_run(code, *args, monitor_counters=True):
    from picoproc.api import Sandbox, shared_monitor

    before = shared_monitor()[0].counters()
    r = Sandbox().run([sys.executable if os.path.exists(sys.executable) and sys.executable.startswith("/usr")
                       else "/usr/bin/python3", "-c", code, *map(str, args)], capture=True, timeout=TIMEOUT)
    after = shared_monitor()[0].counters()
    return r, {k: after[k] - before[k] for k in ("fds_on_channel", "fds_by_addfd", "area_calls", "notifications")}


def test_a_library_os_program_cannot_close_or_resize_its_area():
    r, delta = _api_run(_ABUSE, ABI["PICO_AREA_FD"], ABI["PICO_CHANNEL_FD"])
    assert r.status == 0, r.stderr
    assert r.stdout.decode().splitlines() == [
        "close_area EBADF", "close_channel EBADF", "dup2_onto_area EBADF", "ftruncate_area EPERM",
        "grow_area EPERM", "True True"]
    assert delta["area_calls"] == delta["notifications"] > 0
    assert delta["fds_on_channel"] > 0 and delta["fds_by_addfd"] == 0


def test_threads_forks_execs_and_spawned_children_call_through_the_area():
    r, delta = _api_run(_TASKS)
    assert (r.status, r.stdout) == (0, b"all True\n"), r.stderr
    # Every call of every task (the loader's own after each exec included)
    # went through the area, every fd came back on a channel.
    assert delta["area_calls"] == delta["notifications"] > 0
    assert delta["fds_on_channel"] > 0 and delta["fds_by_addfd"] == 0


def test_a_run_leaves_no_area_fd_open_in_the_monitor():
    from picoproc.api import Sandbox

    Sandbox().run(["/bin/true"], capture=True, timeout=TIMEOUT)  # warm the process-wide caches

    def fds():
        return {fd: os.readlink(f"/proc/self/fd/{fd}") for fd in os.listdir("/proc/self/fd")
                if os.path.exists(f"/proc/self/fd/{fd}")}

    before = fds()
    for _ in range(3):
        Sandbox().run(["/bin/cat", "/etc/hostname"], capture=True, timeout=TIMEOUT)
    after = fds()
    assert {k: v for k, v in after.items() if "picoproc-area" in v or "socket:" in v} == \
           {k: v for k, v in before.items() if "picoproc-area" in v or "socket:" in v}
    assert not any("picoproc-area" in line for line in pathlib.Path("/proc/self/maps").read_text().splitlines())


_PROC_VIEW = """
import os, sys
first = int(sys.argv[1])
listed = sorted(int(n) for n in os.listdir("/proc/self/fd"))
hidden = all(not os.path.lexists(f"{d}/{fd}") for fd in range(first, 1024) for d in ("/proc/self/fd", "/dev/fd"))
print(max(listed) < first, hidden)
"""


def test_the_guests_proc_shows_none_of_picoprocs_fds():
    r, _ = _api_run(_PROC_VIEW, ABI["PICO_RESERVED_FD_BASE"])
    assert (r.status, r.stdout) == (0, b"True True\n"), r.stderr


_SEND_ON_EVERY_FD = r"""
import os, socket, sys
name = b"\0" + sys.argv[1].encode()
sent = []
for fd in range(3, 1024):
    try:
        s = socket.socket(fileno=fd)
    except OSError:
        continue
    for how in ("sendto", "sendmsg"):
        try:
            if how == "sendto":
                s.sendto(b"from %d" % fd, name)
            else:
                s.sendmsg([b"from %d" % fd], [], 0, name)
            sent.append(f"{how} {fd}")
        except OSError:
            pass
    s.detach()
print(" ".join(sent) or "none")
"""


@pytest.mark.parametrize("who", ["root", pytest.param("unprivileged", marks=pytest.mark.unprivileged)])
def test_no_socket_a_guest_holds_reaches_a_host_abstract_name(who, request):
    """The sockets picoproc hands a guest that live in the host's network
    namespace (its fd channels, relays, granted connections) are connected
    ones whose send ignores an address: no datagram addressed to a host
    abstract AF_UNIX name from any fd of the guest arrives."""
    import json
    import secrets
    import socket

    name = "\0picoproc-test-" + secrets.token_hex(8)
    host = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    host.bind(name)
    host.setblocking(False)
    argv = ["/usr/bin/python3", "-c", _SEND_ON_EVERY_FD, name[1:]]
    try:
        if who == "root":
            from picoproc.api import Sandbox
            from picoproc.manifest import default_manifest

            r = Sandbox(default_manifest()).run(argv, capture=True, timeout=60)
            status, out, err = r.status, r.stdout.decode(), r.stderr.decode()
        else:
            env = request.getfixturevalue("unpriv_env")
            script = ("import json, sys\nfrom picoproc.api import Sandbox\n"
                      "from picoproc.manifest import default_manifest\n"
                      "r = Sandbox(default_manifest()).run(json.loads(sys.argv[1]), capture=True, timeout=60)\n"
                      "print(json.dumps([r.status, r.stdout.decode(), r.stderr.decode()]))\n")
            p = subprocess.run([*env["prefix"], env["python"], "-c", script, json.dumps(argv)], capture_output=True,
                               text=True, env=env["env"], cwd="/", timeout=120, check=False)
            assert p.returncode == 0, p.stderr
            status, out, err = json.loads(p.stdout)
        assert status == 0, err
        received = []
        while True:
            try:
                received.append(host.recv(100))
            except BlockingIOError:
                break
    finally:
        host.close()
    assert received == [], f"a host abstract socket received from the guest: {received} (sent: {out.strip()})"
