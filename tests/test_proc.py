"""The picoprocess's own /proc (native/procview.c, libos/special.c): the
guest's processes under their pid-namespace numbers, listings of /proc,
/proc/PID/fd and /dev, maps that list every mapping, the guest's mounts --
checked against native runs under the guest's identity (in a pid namespace
of their own, so that both sides see only their own processes), and proved
never to show or reach a host process.
"""

from __future__ import annotations

import ctypes
import dataclasses
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

api = pytest.importorskip("picoproc.api")
from picoproc.manifest import Mount, default_manifest  # noqa: E402

pytestmark = pytest.mark.root

GUEST_TIMEOUT = 60.0
ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": "/tmp", "TMPDIR": "/tmp"}


def need(*programs: str) -> None:
    for p in programs:
        if not shutil.which(p):
            pytest.skip(f"{p} is not installed (setup.sh installs procps)")


def guest(script: str, *mounts: Mount, **changes):
    base = default_manifest()
    m = dataclasses.replace(base, mounts=(*base.mounts, *mounts), **changes)
    return api.Sandbox(m).run(["/bin/sh", "-c", script], capture=True, timeout=GUEST_TIMEOUT)


def native_in_own_pidns(script: str) -> subprocess.CompletedProcess:
    """The script natively, as the guest's identity, in a user and pid
    namespace of its own with its own /proc: it sees its own processes
    only, as the guest does (where the shell is pid 1, not 2)."""
    prefix = []
    if os.geteuid() == 0:
        prefix = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    if shutil.which("unshare") is None:
        pytest.skip("unshare (util-linux) is needed for the native side")
    with tempfile.TemporaryDirectory() as d:
        os.chmod(d, 0o777)
        proc = subprocess.run([*prefix, "unshare", "--user", "--pid", "--fork", "--mount-proc", "/bin/sh", "-c", script],
                              cwd=d, env=ENV, capture_output=True, timeout=GUEST_TIMEOUT, stdin=subprocess.DEVNULL)
    if proc.returncode and b"unshare" in proc.stderr:
        pytest.skip(f"no pid namespace for the native side here: {proc.stderr.decode().strip()}")
    return proc


# Waits (bounded by the run's timeout) until each pid given has exec'd sleep
# and is asleep in it, with shell builtins only, so it adds no processes.
ASLEEP = ('asleep() { for p; do while :; do read -r c < /proc/$p/comm; '
          'if [ "$c" = sleep ]; then read -r _ _ st _ < /proc/$p/stat; [ "$st" = S ] && break; fi; done; done; }; ')


def rows(text: bytes) -> list[list[str]]:
    return [line.split(None, 3) for line in text.decode().splitlines()[1:]]


# ---------------------------------------------------------------------------------------
# ps, pgrep, pkill, top
# ---------------------------------------------------------------------------------------

PS_SCRIPT = ASLEEP + "sleep 30 & a=$!; sleep 31 & b=$!; asleep $a $b; ps -o pid,ppid,comm,args; kill $a $b; wait"


def test_ps_lists_the_guests_processes_as_native_does():
    need("ps")
    got = guest(PS_SCRIPT)
    want = native_in_own_pidns(PS_SCRIPT)
    assert got.exit_code == 0 and want.returncode == 0, (got.stderr, want.stderr)
    assert got.stdout.decode().splitlines()[0] == want.stdout.decode().splitlines()[0]  # the header
    g, n = rows(got.stdout), rows(want.stdout)
    # The same processes (command and arguments), the same parentage; the
    # guest's pid 1 is its reaper, shown as a kernel-thread-like entry.
    assert g[0][1:] == ["0", "picoproc-init", "[picoproc-init]"], g
    shell = {r[0] for r in g if r[2] == "sh"}
    assert len(shell) == 1
    g_procs = sorted((r[2], r[3], r[1] in shell) for r in g[1:])
    n_shell = {r[0] for r in n if r[2] == "sh"}
    n_procs = sorted((r[2], r[3], r[1] in n_shell) for r in n)
    assert [p for p in g_procs if p[0] != "sh"] == [p for p in n_procs if p[0] != "sh"], (g, n)
    assert ("sleep", "sleep 30", True) in g_procs and ("ps", "ps -o pid,ppid,comm,args", True) in g_procs


def test_ps_ef_and_job_columns_tell_the_truth():
    need("ps")
    got = guest(ASLEEP + "setsid sleep 30 & asleep $!; ps -eo pid,pgid,sid,user,stat,comm; kill $!")
    assert got.exit_code == 0, got.stderr
    table = {r[0]: r for r in (line.split() for line in got.stdout.decode().splitlines()[1:])}
    me = next(r for r in table.values() if r[5] == "sh")
    sleeper = next(r for r in table.values() if r[5] == "sleep")
    # The shell leads its own group and session; setsid made the sleeper a
    # new session of its own (the library OS's virtual groups, shown).
    assert me[1] == me[0] and me[2] == me[0]
    assert sleeper[1] == sleeper[0] and sleeper[2] == sleeper[0]
    uid_name = "nobody" if os.geteuid() == 0 else None
    if uid_name:
        assert {r[3] for r in table.values()} == {uid_name}
    assert sleeper[4][0] == "S"


def test_top_pgrep_and_pkill_work_on_the_guests_processes():
    need("top", "pgrep", "pkill")
    # (The patterns must not match the shell's own command line.)
    got = guest(ASLEEP + "a=30; b=31; sleep $a & x=$!; sleep $b & y=$!; asleep $x $y; pgrep -l sleep; pgrep -f '^sleep 31$'; pkill -f '^sleep 30$'; "
                "wait %1; echo first=$?; top -b -n1 | sed -n '1,3p;7,$p'; kill $!")
    assert got.exit_code == 0, got.stderr
    out = got.stdout.decode()
    lines = out.splitlines()
    sleeps = [ln for ln in lines[:2]]
    assert all(re.fullmatch(r"\d+ sleep", s) for s in sleeps), out
    assert lines[2] == sleeps[1].split()[0], out  # pgrep -f found the second one
    assert "first=143" in out  # SIGTERM, from pkill
    assert re.search(r"^Tasks: +\d+ total", out, re.M), out
    top_rows = [ln.split() for ln in out[out.index("  PID"):].splitlines()[1:]]
    assert {r[-1] for r in top_rows} >= {"sh", "sleep", "top"}, out
    assert "library failed" not in got.stderr.decode()


@pytest.fixture()
def host_marker(tmp_path):
    """A host process with a name no guest process has."""
    exe = tmp_path / "picoproc-hostmark"
    exe.symlink_to(shutil.which("sleep"))
    proc = subprocess.Popen([str(exe), "300"])
    comm = Path(f"/proc/{proc.pid}/comm")
    deadline = time.monotonic() + GUEST_TIMEOUT
    while comm.read_text().strip() != exe.name[:15]:  # until it has exec'd
        assert time.monotonic() < deadline, "the host marker never started"
        time.sleep(0.01)
    yield proc
    proc.kill()
    proc.wait(timeout=10)


def test_host_processes_are_never_visible_or_signalable(host_marker):
    need("pgrep", "pkill", "ps")
    pid = host_marker.pid
    got = guest(f"pgrep picoproc-hostm; echo pgrep=$?; pkill -f '^[^ ]*picoproc-hostmar[k]'; echo pkill=$?; "
                f"kill -0 {pid}; echo kill=$?; cat /proc/{pid}/status; echo cat=$?; "
                f"ls /proc | grep -cx {pid}; ps -e | grep -c hostmark")
    assert got.exit_code is not None, got.stderr
    out = got.stdout.decode()
    assert "pgrep=1" in out and "pkill=1" in out and "kill=1" in out and "cat=1" in out, out
    assert out.splitlines()[-2:] == ["0", "0"], out
    assert str(pid) not in out
    assert host_marker.poll() is None  # still running, untouched


# ---------------------------------------------------------------------------------------
# /proc/PID files, listings, maps, mounts
# ---------------------------------------------------------------------------------------

def test_another_processes_files_are_its_own():
    got = guest(ASLEEP + "(cd /usr/lib && MARK=from-child exec sleep 30) & p=$!; asleep $p; "
                "readlink /proc/$p/cwd /proc/$p/exe; tr '\\0' ' ' < /proc/$p/cmdline; echo; "
                "cat /proc/$p/comm; tr '\\0' '\\n' < /proc/$p/environ | grep ^MARK=; "
                "cut -d' ' -f1,2,3,4 /proc/$p/stat; grep -E '^(Name|State|PPid):' /proc/$p/status; "
                "ls /proc/$p/task; kill $p")
    assert got.exit_code == 0, got.stderr
    lines = got.stdout.decode().splitlines()
    assert lines[0] == "/usr/lib" and lines[1] == "/usr/bin/sleep"
    assert lines[2] == "sleep 30 " and lines[3] == "sleep" and lines[4] == "MARK=from-child"
    pid, comm, state, ppid = lines[5].split()
    assert comm == "(sleep)" and state == "S" and lines[9] == pid
    assert lines[6:9] == ["Name:\tsleep", "State:\tS (sleeping)", f"PPid:\t{ppid}"]


FD_SCRIPT = ("exec 3</etc/hostname 4>/dev/null 7</etc/passwd; ls /proc/self/fd; "
             "for f in 0 3 4 7; do readlink /proc/$$/fd/$f; done; ls /dev/fd/ | tr '\\n' ' '; echo")


def test_proc_self_fd_lists_and_names_a_known_set_of_fds_like_native():
    got = guest(FD_SCRIPT)
    want = native_in_own_pidns(FD_SCRIPT)
    assert got.exit_code == 0 and want.returncode == 0, (got.stderr, want.stderr)
    assert got.stdout == want.stdout
    assert got.stdout.decode().splitlines()[:8] == ["0", "1", "2", "3", "4", "5", "7", "/dev/null"]


def test_maps_lists_every_mapping_in_the_guests_names():
    script = "import re; print('\\n'.join(sorted({l.split(None, 5)[5] for l in open('/proc/self/maps') if len(l.split()) > 5})))"
    got = api.Sandbox().run(["/usr/bin/python3", "-c", script], capture=True, timeout=GUEST_TIMEOUT)
    assert got.exit_code == 0, got.stderr
    names = set(got.stdout.decode().split("\n")) - {""}
    want = subprocess.run(["/usr/bin/python3", "-c", script], capture_output=True, env=ENV, timeout=GUEST_TIMEOUT)
    native_names = set(want.stdout.decode().split("\n")) - {""}
    # Every library python maps natively is there, by the same path; the
    # library OS's own image and the argument area it shares with the
    # monitor are named as such, nothing else is extra.
    assert native_names - {"[vvar]", "[vvar_vclock]"} <= names, native_names - names
    assert names - native_names <= {"[picoproc-libos]", "[picoproc-area]", "[vvar]", "[vvar_vclock]"}, \
        names - native_names
    assert any(n.endswith("libc.so.6") for n in names)
    assert not any("wt/" in n or "picoproc-loader" in n for n in names)


def test_mountinfo_describes_the_guests_view_and_nothing_of_the_host(tmp_path):
    need("findmnt")
    data = tmp_path / "data"
    data.mkdir()
    got = guest("findmnt -rn -o TARGET,FSTYPE,OPTIONS; cat /proc/mounts; cat /proc/self/mountinfo",
                Mount("/data", str(data), writable=True))
    assert got.exit_code == 0, got.stderr
    out = got.stdout.decode()
    targets = [ln.split()[0] for ln in out.splitlines() if ln and not ln[0].isdigit()]
    manifest = default_manifest()
    wanted = {"/", "/data", *(m.guest for m in manifest.mounts), *(t.guest for t in manifest.tmpfs)}
    assert wanted <= set(targets), targets
    assert re.search(r"^/data \S+ rw,", out, re.M) and re.search(r"^/usr \S+ ro,", out, re.M)
    assert str(tmp_path) not in out and "/dev/vd" not in out and "/dev/sd" not in out


def test_listings_of_proc_and_dev():
    got = guest("ls /proc; echo --; ls /dev; echo --; ls /proc/self; echo --; ls /proc/1/fd | wc -l; echo --; "
                "ls -l /dev | grep -c '^c'")
    assert got.exit_code == 0 and got.stderr == b"", got.stderr
    proc, dev, self_, init_fds, devices = got.stdout.decode().split("--\n")
    names = proc.split()
    assert {"1", "2", "self", "thread-self", "meminfo", "stat"} <= set(names)
    assert [n for n in names if n.isdigit()] == sorted((n for n in names if n.isdigit()), key=int)
    # The library OS's devices, the run's own devpts, and what the manifest
    # mounts under /dev (the default one gives /dev/shm a tmpfs).
    manifest_dev = {t.guest.split("/")[2] for t in default_manifest().tmpfs if t.guest.startswith("/dev/")}
    assert set(dev.split()) == {"null", "zero", "full", "random", "urandom", "tty", "stdin", "stdout", "stderr",
                                "fd", "pts"} | manifest_dev
    assert {"stat", "status", "maps", "fd", "task", "exe", "cwd", "cmdline", "environ"} <= set(self_.split())
    assert init_fds.strip() == "0"  # the reaper's fds are the monitor's
    # Every device can be looked at, /dev/tty too with no terminal (only
    # opening it fails, as on Linux).
    assert devices.strip() == "6"  # full null random tty urandom zero


def test_threads_are_listed_under_task():
    script = ("import threading, os; e = threading.Event(); "
              "ts = [threading.Thread(target=e.wait) for _ in range(3)]; [t.start() for t in ts]; "
              "print(len(os.listdir('/proc/self/task')), sorted(os.listdir('/proc/self/task'), key=int)[0] == str(os.getpid())); "
              "print(open(f'/proc/self/task/{ts[0].native_id}/comm').read().strip()); e.set()")
    got = api.Sandbox().run(["/usr/bin/python3", "-c", script], capture=True, timeout=GUEST_TIMEOUT)
    assert got.exit_code == 0, got.stderr
    assert got.stdout.decode().splitlines()[0] == "4 True"


def test_the_reaper_shows_nothing_of_the_monitor():
    got = guest("wc -c < /proc/1/environ; wc -c < /proc/1/cmdline; wc -c < /proc/1/maps; "
                "cut -d' ' -f2,23,24 /proc/1/stat; grep -c ^Vm /proc/1/status; readlink /proc/1/exe; echo exe=$?")
    assert got.exit_code == 0, got.stderr
    assert got.stdout.decode().split("\n") == ["0", "0", "0", "(picoproc-init) 0 0", "0", "exe=1", ""]


def test_ps_works_under_an_unprivileged_monitor(unpriv_env):
    need("ps")
    proc = subprocess.run([*unpriv_env["prefix"], unpriv_env["python"], "-m", "picoproc", "run", "--",
                           "/bin/sh", "-c", "sleep 30 & ps -o comm=; ls /proc/self/fd; kill $!"],
                          capture_output=True, timeout=GUEST_TIMEOUT, env=unpriv_env["env"], cwd="/")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.decode().split() == ["picoproc-init", "sh", "sleep", "ps", "0", "1", "2", "3"]


# ---------------------------------------------------------------------------------------
# hostile guests
# ---------------------------------------------------------------------------------------

RAW_OPEN = r"""
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
def pico_open(uri, flags=0):
    b = uri.encode()
    r = libc.syscall(4096, b, len(b), flags, 0)
    return -ctypes.get_errno() if r < 0 else r
for arg in sys.argv[1:]:
    uri, flags = arg.replace("{pid}", str(os.getpid())), 0
    if uri.startswith("exec:"):  # PICO_OPEN_EXEC
        uri, flags = uri[5:], 0x40000000
    print(arg, pico_open(uri, flags))
"""


def test_the_view_refuses_paths_it_does_not_know():
    """Mediated calls straight from the program, past the library OS:
    '..', host-looking names, other processes' fds, absurd pids."""
    uris = ["file:/proc/2/../../etc/passwd", "file:/proc/2/./stat", "file:/proc//2/stat", "file:/proc/self/stat",
            "file:/proc/2/mem", "file:/proc/2/fd/0", "file:/proc/99999999999/stat", "file:/proc/2/root/etc/passwd",
            "file:/proc/sys/kernel/osrelease", "dir:/proc/2/fd/../../1", "file:/proc/0/stat"]
    got = api.Sandbox().run(["/usr/bin/python3", "-c", RAW_OPEN, *uris], capture=True, timeout=GUEST_TIMEOUT)
    assert got.exit_code == 0, got.stderr
    results = dict(line.rsplit(" ", 1) for line in got.stdout.decode().splitlines())
    for uri in uris:
        assert int(results[uri]) < 0, (uri, results[uri])
    assert int(results["file:/proc/2/fd/0"]) == -13  # another process's file: EACCES


def test_only_a_link_of_the_view_opens_as_an_image():
    # A listing or a generated file is never an image to execute; a link
    # leads to a file the file policy then checks.
    refused = ["exec:file:/dev", "exec:dir:/proc", "exec:file:/proc/{pid}/status", "exec:file:/proc/.picoproc-text",
               "exec:file:/proc/1/stat"]
    uris = [*refused, "exec:file:/proc/{pid}/exe", "file:/proc/{pid}/status"]
    got = api.Sandbox().run(["/usr/bin/python3", "-c", RAW_OPEN, *uris], capture=True, timeout=GUEST_TIMEOUT)
    assert got.exit_code == 0, got.stderr
    results = {uri: int(r) for uri, r in (line.rsplit(" ", 1) for line in got.stdout.decode().splitlines())}
    assert [results[u] for u in refused] == [-13] * len(refused), results
    assert results["exec:file:/proc/{pid}/exe"] >= 0 and results["file:/proc/{pid}/status"] >= 0, results


def test_a_guest_that_forges_its_published_state_fools_only_itself():
    """The monitor reads what the library OS publishes about its process as
    hostile: a program that fills its record and image name with garbage
    (no NULs, absurd numbers) gets sane text back (or breaks itself), and the
    monitor serves everyone after."""
    from picoproc.abi.table import load_table

    need("ps")
    addr = load_table().constants["PICO_LIBOS_PUBLIC_ADDR"]
    script = (f"import ctypes, subprocess, sys; base = {addr}; "
              "record = ctypes.c_uint64.from_address(base + 8).value; "
              "ctypes.memset(record + 4, 0xff, 8192); ctypes.memset(base + 16 + 512, 0xff, 4096); "
              "out = subprocess.run(['ps', '-o', 'pid=,pgid=,sid=,comm='], capture_output=True).stdout; "
              "sys.stdout.buffer.write(out)")
    got = api.Sandbox().run(["/usr/bin/python3", "-c", script], capture=True, timeout=GUEST_TIMEOUT)
    assert got.limit is None and (got.exit_code is not None or got.signal is not None), got.stderr
    assert all(32 <= b < 127 or b in b"\n" for b in got.stdout), got.stdout
    after = api.Sandbox().run(["/bin/sh", "-c", "ps -o comm= | sort"], capture=True, timeout=GUEST_TIMEOUT)
    assert after.stdout.decode().split() == ["picoproc-init", "ps", "sh", "sort"], after.stderr
