"""Every kernel object a guest makes the monitor create is bounded by that
guest's limits, and the monitor's own work for it is charged to it.

Each test measures from outside the guest (the host's slab counters, the
monitor's fds, the run's result) and fails on a monitor that does not bound
or charge the resource.
"""

from __future__ import annotations

import dataclasses
import json
import os
import threading

import pytest
from picoproc.api import Sandbox
from picoproc.manifest import Tmpfs, default_manifest

pytestmark = pytest.mark.root

TIMEOUT = 120


def _slab_objects(cache: str) -> int:
    """Active objects of a slab cache, host-wide (/proc/slabinfo: root only)."""
    with open("/proc/slabinfo") as f:
        for line in f:
            fields = line.split()
            if fields and fields[0] == cache:
                return int(fields[1])
    raise LookupError(f"no slab cache {cache} in /proc/slabinfo")


def _run_in_thread(sandbox: Sandbox, argv, **kw):
    box: dict = {}

    def target():
        try:
            box["result"] = sandbox.run(argv, **kw)
        except BaseException as exc:  # noqa: BLE001 - re-raised by the caller
            box["error"] = exc

    t = threading.Thread(target=target, daemon=True)
    t.start()
    return t, box


def _read_line(fd: int, timeout: float) -> bytes:
    import select

    data = b""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    while not data.endswith(b"\n"):
        if not poller.poll(timeout * 1000):
            raise TimeoutError(f"no line from the guest within {timeout} s (got {data!r})")
        chunk = os.read(fd, 4096)
        if not chunk:
            break
        data += chunk
    return data


# A million mkdirs, each served by the monitor in its own context: without a
# bound on the scratch tmpfs's inodes, each one is host slab
# (shmem_inode_cache + dentry) charged to nobody (docs/ARCHITECTURE.md,
# "Kernel objects").  The guest stops at the
# first error and then holds what it made until the test has measured.
MKDIR_LOOP = (
    "import os, sys\n"
    "n, err = 0, None\n"
    "try:\n"
    "    while n < 1000000:\n"
    "        os.mkdir(f'/tmp/d{n}')\n"
    "        n += 1\n"
    "except OSError as e:\n"
    "    err = e.errno\n"
    "print(n, err, flush=True)\n"
    "sys.stdin.read(1)\n"
)


@pytest.mark.skipif(os.geteuid() != 0, reason="/proc/slabinfo is readable by root only")
def test_a_million_mkdirs_cannot_grow_host_slab_unbounded():
    from picoproc.scratch import default_inodes

    size = 4 << 20
    base = default_manifest()
    m = dataclasses.replace(base, tmpfs=(Tmpfs("/tmp", size),))
    bound = default_inodes(size)
    assert bound < 100_000
    out_r, out_w = os.pipe2(os.O_CLOEXEC)
    in_r, in_w = os.pipe2(os.O_CLOEXEC)
    before = _slab_objects("shmem_inode_cache")
    thread, box = _run_in_thread(Sandbox(m), ["python3", "-c", MKDIR_LOOP], stdin=in_r,
                                 stdout=out_w, timeout=TIMEOUT)
    try:
        line = _read_line(out_r, TIMEOUT)
        held = _slab_objects("shmem_inode_cache")
    finally:
        os.write(in_w, b"x")
        thread.join(TIMEOUT)
        for fd in (out_r, out_w, in_r, in_w):
            os.close(fd)
    assert not thread.is_alive()
    assert "error" not in box, box.get("error")
    assert box["result"].status == 0, box["result"].reason
    made, err = line.split()
    # The tmpfs refuses the inode past its bound (ENOSPC), long before a million.
    assert err == b"28", line
    assert int(made) < bound, line
    # From outside: the host's tmpfs inodes grew by about what the guest made
    # (other activity on the machine adds noise, never a million).
    assert held - before < bound + 20_000, (before, held)
    after = _slab_objects("shmem_inode_cache")
    assert after - before < 20_000, (before, after)


# Each stat of /data/l0 makes the monitor walk a chain of 39 symbolic links,
# each to a name 30 directories deep (an openat2 and fstat per component, a
# readlinkat per link: ~1200 host calls), while the guest only waits: nearly
# all the CPU time this guest causes is the monitor's.
STAT_LOOP = (
    "import os\n"
    "while True:\n"
    "    try:\n"
    "        os.stat('/data/l0')\n"
    "    except OSError:\n"
    "        pass\n"
)
DEPTH = 30


def _link_chain(root, n=39):
    """The chain, readable by the guest identity (pytest's tmp_path is not)."""
    deep = root.joinpath(*["d"] * DEPTH)
    deep.mkdir(parents=True)
    for d in [root, *deep.parents][: DEPTH + 1]:
        d.chmod(0o755)
    deep.chmod(0o755)
    guest_deep = "/data/" + "/".join(["d"] * DEPTH)
    os.symlink(f"{guest_deep}/l1", root / "l0")
    for i in range(1, n):
        os.symlink(f"{guest_deep}/l{i + 1}", deep / f"l{i}")
    (deep / f"l{n}").write_text("end\n")


@pytest.mark.slow
def test_monitor_cpu_is_charged_and_ends_the_run_at_the_cpu_time_limit(tmp_path):
    from picoproc.manifest import Mount

    _link_chain(tmp_path)
    base = default_manifest()
    m = dataclasses.replace(base, mounts=(*base.mounts, Mount("/data", str(tmp_path))),
                            limits=dataclasses.replace(base.limits, cpu_time_s=2))
    result = Sandbox(m).run(["python3", "-c", STAT_LOOP], capture=True, timeout=60)
    assert result.limit == "cpu_time", (result.reason, result.monitor_cpu_s, result.wall_time_s)
    assert result.reason == "killed: CPU-time limit reached"
    # The monitor's work for it is what ended it (the guest's own CPU time
    # is a small part: RLIMIT_CPU alone would have let it run for minutes);
    # it is charged with the guest's, not on its own (below the limit).
    assert 1.5 < result.monitor_cpu_s < 2.0 + 0.5, result.monitor_cpu_s


def test_monitor_cpu_is_reported_for_every_run():
    result = Sandbox().run(["python3", "-c", "import json, email, http.client"], capture=True,
                           timeout=60)
    assert result.status == 0, result.stderr
    # Python opens and stats its modules through the monitor.
    assert result.calls["mediated"] > 50
    assert 0 < result.monitor_cpu_s < result.wall_time_s
    assert result.to_json()["usage"]["monitor_cpu_s"] == result.monitor_cpu_s


# ---------------------------------------------------------------------------
# Audit: bounded in the file, in memory and in the monitor's ring

DENIED_FLOOD = (
    "import sys\n"
    "for _ in range(int(sys.argv[1])):\n"
    "    try:\n"
    "        open('/etc/shadow')\n"
    "    except OSError:\n"
    "        pass\n"
    "print('done')\n"
)


def test_audit_file_is_cut_at_its_size_limit_and_says_so(run_picoproc, tmp_path):
    audit, result_json = tmp_path / "audit.jsonl", tmp_path / "result.json"
    proc = run_picoproc("run", "--audit", audit, "--audit-limit", "64K", "--json", result_json, "--",
                        "python3", "-c", DENIED_FLOOD, "20000", timeout=TIMEOUT)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "done\n"
    assert audit.stat().st_size <= 64 * 1024
    lines = audit.read_text().splitlines()
    records = [json.loads(line) for line in lines]  # whole records only
    assert records[-1]["audit_truncated"] is True
    assert records[-1]["records_written"] == len(records) - 1
    assert all(r["decision"] == "deny" for r in records[:-1] if r.get("uri") == "file:/etc/shadow")
    doc = json.loads(result_json.read_text())
    assert "size limit of 65536 bytes" in doc["audit_error"]
    assert doc["audit_dropped"] >= 20000 - 10000  # past the in-memory bound
    errors = [line for line in proc.stderr.splitlines() if "audit" in line]
    assert errors == [f"picoproc: audit file {audit}: size limit of 65536 bytes reached; "
                      "later records were not written"]


def test_audit_file_has_a_default_bound_and_flag_errors_are_one_line(run_picoproc, tmp_path):
    from picoproc.monitor import AUDIT_FILE_LIMIT, AuditJsonlWriter

    assert Sandbox().audit_limit == AUDIT_FILE_LIMIT
    writer = AuditJsonlWriter(tmp_path / "a.jsonl")
    try:
        writer([{"n": i, "pad": "x" * 1000} for i in range(100)])
        assert writer.error is None and writer.records_written == 100
    finally:
        writer.close()
    proc = run_picoproc("run", "--audit", tmp_path / "b.jsonl", "--audit-limit", "12", "--", "true")
    assert proc.returncode == 125
    assert proc.stderr.strip() == "picoproc: --audit-limit: must be at least 512 bytes (got 12)"


def test_a_runs_audit_in_memory_is_bounded():
    from picoproc.api import AUDIT_KEEP

    n = AUDIT_KEEP + 3000
    result = Sandbox().run(["python3", "-c", DENIED_FLOOD, str(n)], capture=True, timeout=TIMEOUT)
    assert result.stdout == b"done\n", result.stderr
    assert result.calls["mediated_denied"] >= n
    assert len(result.audit) == AUDIT_KEEP
    assert len(result.denials) == AUDIT_KEEP
    # Without an audit sink, allowed calls are counted but make no record:
    # every refused one does, and all past the bound are dropped.
    assert result.audit_dropped >= result.calls["mediated_denied"] - AUDIT_KEEP


def test_a_flooding_guest_loses_its_own_audit_records_not_anothers(guest_bin, tmp_path):
    """The monitor's ring of audit records is shared by every guest; with
    nobody draining it, a guest's flood fills its part and the rest stays
    for the others (before: the flood filled it and the quiet guest's
    records were the ones dropped)."""
    from picoproc.monitor import FsPolicy, Monitor
    from picoproc.raw import spawn_raw
    from picoproc.monitor import GUEST_SECCOMP_FLAGS
    from picoproc.spawn import wait_picoprocess

    (tmp_path / "a.txt").write_text("A")
    tmp_path.chmod(0o755)
    (tmp_path / "a.txt").chmod(0o644)
    capacity, flood = 400, 3000

    def run(mon, policy, argv):
        with open(os.devnull, "rb") as devnull, open(os.devnull, "wb") as out:
            g = spawn_raw([str(a) for a in argv], {}, (devnull.fileno(), out.fileno(), 2),
                          seccomp_flags=GUEST_SECCOMP_FLAGS)
        try:
            handle = mon.add_guest(g.listener_fd, g.guest_pid, policy)
        finally:
            os.close(g.listener_fd)
        wait_picoprocess(g, 60)
        return handle, mon.remove_guest(handle)

    with Monitor(audit_capacity=capacity) as mon, FsPolicy() as policy:
        policy.add_mount("/data", str(tmp_path))
        flooder, fstats = run(mon, policy, [guest_bin / "med_spam", "/nope", "x", flood])
        quiet, qstats = run(mon, policy, [guest_bin / "med_spam", "/data/a.txt", "A", 5])
        records = mon.drain_audit()
    assert fstats["calls"] == flood and fstats["audit_dropped"] > 0
    assert qstats["calls"] == 5 and qstats["audit_dropped"] == 0
    assert sum(r["guest"] == quiet for r in records) == 5
    assert sum(r["guest"] == flooder for r in records) == flood - fstats["audit_dropped"]


# ---------------------------------------------------------------------------
# Sockets the monitor holds for a guest

def _net_manifest(connect=(), listen=()):
    from picoproc.manifest import Endpoint

    base = default_manifest()
    return dataclasses.replace(base, net_connect=tuple(Endpoint("127.0.0.1", p) for p in connect),
                               net_listen=tuple(Endpoint("127.0.0.1", p) for p in listen))


CONNECT_HOARD = (
    "import socket, sys, threading, time, errno\n"
    "errs = []\n"
    "def one():\n"
    "    s = socket.socket()\n"
    "    try:\n"
    "        s.connect(('127.0.0.1', int(sys.argv[1])))\n"
    "    except OSError as e:\n"
    "        errs.append(e.errno)\n"
    "for _ in range(int(sys.argv[2])):\n"
    "    threading.Thread(target=one, daemon=True).start()\n"
    "deadline = time.monotonic() + 30\n"
    "while len(errs) < int(sys.argv[3]) and time.monotonic() < deadline:\n"
    "    time.sleep(0.01)\n"
    "print(sorted(errs), flush=True)\n"
    "sys.stdin.read(1)\n"
    "import os; os._exit(0)\n"
)


def test_a_guests_connects_in_progress_are_bounded():
    """Connects to a listener whose queue is full stay in progress: each is
    a socket the monitor holds (and a slot of its table) until it ends."""
    import socket

    from picoproc.native import lib

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    port = server.getsockname()[1]
    filler = socket.create_connection(("127.0.0.1", port))  # the one place in its queue
    cap, tries = lib.PICO_LOOP_GUEST_CONNECTS, lib.PICO_LOOP_GUEST_CONNECTS + 8
    in_r, in_w = os.pipe2(os.O_CLOEXEC)
    out_r, out_w = os.pipe2(os.O_CLOEXEC)
    thread, box = _run_in_thread(Sandbox(_net_manifest(connect=[port])),
                                 ["python3", "-c", CONNECT_HOARD, str(port), str(tries), str(tries - cap)],
                                 stdin=in_r, stdout=out_w, timeout=TIMEOUT)
    try:
        line = _read_line(out_r, TIMEOUT)
    finally:
        os.write(in_w, b"x")
        thread.join(TIMEOUT)
        for fd in (in_r, in_w, out_r, out_w):
            os.close(fd)
        filler.close()
        server.close()
    result = box["result"]
    assert line == f"{[11] * (tries - cap)}\n".encode(), line  # EAGAIN past the cap
    assert result.status == 0, result.reason


LISTEN_MANY = (
    "import socket, sys\n"
    "n, err = 0, None\n"
    "for _ in range(int(sys.argv[1])):\n"
    "    s = socket.socket()\n"
    "    try:\n"
    "        s.bind(('127.0.0.1', 0))\n"
    "        s.listen()\n"
    "    except OSError as e:\n"
    "        err = e.errno\n"
    "        break\n"
    "    s.close()\n"
    "    n += 1\n"
    "print(n, err)\n"
)


def test_a_guest_gets_a_bounded_number_of_listeners():
    from picoproc.native import lib

    cap = lib.PICO_LOOP_GUEST_LISTENERS
    result = Sandbox(_net_manifest(listen=[0])).run(["python3", "-c", LISTEN_MANY, str(cap + 10)],
                                                   capture=True, timeout=TIMEOUT)
    assert result.stdout == f"{cap} 24\n".encode(), result.stderr


def test_scratch_inodes_are_bounded_for_an_unprivileged_monitor_too(unpriv_env):
    """The scratch tmpfs an unprivileged monitor gets from its user-namespace
    helper has the same inode bound."""
    import subprocess

    from picoproc.scratch import default_inodes

    proc = subprocess.run(
        [*unpriv_env["prefix"], unpriv_env["python"], "-m", "picoproc", "run", "--tmpfs", "/tmp:1M", "--",
         "python3", "-c", MKDIR_LOOP.replace("sys.stdin.read(1)\n", "")],
        capture_output=True, timeout=TIMEOUT, env=unpriv_env["env"], cwd="/", check=False)
    assert proc.returncode == 0, proc.stderr
    made, err = proc.stdout.split()
    assert err == b"28" and int(made) < default_inodes(1 << 20), proc.stdout


# ---------------------------------------------------------------------------
# What a manifest makes the monitor hold

def test_mounts_and_scratch_file_systems_are_counted(run_picoproc):
    from picoproc.manifest import MAX_TMPFS

    # One flag too many, on top of the default manifest's own tmpfs.
    extra = MAX_TMPFS + 1 - len(default_manifest().tmpfs)
    tmpfs = [a for i in range(extra) for a in ("--tmpfs", f"/t{i}:64K")]
    proc = run_picoproc("run", *tmpfs, "--", "true")
    assert proc.returncode == 125
    assert proc.stderr.strip() == (f"picoproc: --tmpfs: {MAX_TMPFS + 1} tmpfs; at most {MAX_TMPFS} (each is "
                                   "a file system the monitor creates for the run)")
    ok = run_picoproc("run", *tmpfs[:-2], "--", "/bin/sh", "-c", f"ls -d /t{extra - 2}")
    assert ok.returncode == 0 and ok.stdout == f"/t{extra - 2}\n", ok.stderr


def test_the_fds_the_monitor_holds_for_a_run_are_bounded_and_given_back(tmp_path):
    """Measured from outside the guest: the monitor's own fd table while a
    run with 16 scratch file systems waits, and after it."""
    from picoproc.manifest import MAX_TMPFS

    def fds():
        return len(os.listdir("/proc/self/fd"))

    base = default_manifest()
    m = dataclasses.replace(base, tmpfs=(*base.tmpfs, *(Tmpfs(f"/t{i}", 65536)
                                                         for i in range(MAX_TMPFS - len(base.tmpfs)))))
    sandbox = Sandbox(m)
    sandbox.run(["/bin/true"], capture=True)  # the shared monitor and its caches exist
    before = fds()
    in_r, in_w = os.pipe2(os.O_CLOEXEC)
    out_r, out_w = os.pipe2(os.O_CLOEXEC)
    thread, box = _run_in_thread(sandbox, ["/bin/sh", "-c", "echo waiting; read x"], stdin=in_r,
                                 stdout=out_w, timeout=TIMEOUT)
    try:
        assert _read_line(out_r, TIMEOUT) == b"waiting\n"
        during = fds()
    finally:
        os.write(in_w, b"x\n")
        thread.join(TIMEOUT)
    for fd in (in_r, in_w, out_r, out_w):
        os.close(fd)
    assert box["result"].status == 0
    # Per run: two per scratch (its fd and the policy's), one per mount,
    # two for its /proc (the guest's procfs, the directory its listings are
    # made in), the pipes, the guest's listener, and a few of the spawn's;
    # the guest's serving thread holds an epoll and an eventfd, and the
    # monitor's ends of the channels the library OS receives fds on.
    from picoproc.abi.table import load_table
    mounts = len(m.mounts) + 5 + 1  # the library OS's devices, the skeleton
    serving = 2 + load_table().constants["PICO_AREA_SLOTS"]
    print(f"monitor fds: {before} before, {during} during a run with {len(m.tmpfs)} tmpfs and {mounts} mounts")
    assert during - before <= 2 * len(m.tmpfs) + mounts + 2 + serving + 12, (before, during)
    assert fds() == before


@pytest.mark.slow
def test_monitor_cpu_ends_the_run_for_an_unprivileged_monitor_too(unpriv_env):
    """Without root there is no run cgroup to read the guest's own CPU time
    from: the monitor's part is checked against the limit on its own."""
    import pathlib
    import shutil
    import subprocess
    import tempfile
    import textwrap

    root = pathlib.Path(tempfile.mkdtemp(prefix="picoproc-cpu-"))
    try:
        _link_chain(root)
        script = textwrap.dedent(f"""
            import dataclasses, json, sys
            from picoproc.api import Sandbox
            from picoproc.manifest import Mount, default_manifest
            base = default_manifest()
            m = dataclasses.replace(base, mounts=(*base.mounts, Mount("/data", {str(root)!r})),
                                    limits=dataclasses.replace(base.limits, cpu_time_s=2))
            r = Sandbox(m).run(["python3", "-c", sys.argv[1]], capture=True, timeout=60)
            print(json.dumps({{"limit": r.limit, "monitor_cpu_s": r.monitor_cpu_s}}))
        """)
        proc = subprocess.run([*unpriv_env["prefix"], unpriv_env["python"], "-c", script, STAT_LOOP],
                              capture_output=True, text=True, timeout=120, env=unpriv_env["env"],
                              cwd="/", check=False)
        assert proc.returncode == 0, proc.stderr
        doc = json.loads(proc.stdout)
        assert doc["limit"] == "cpu_time" and doc["monitor_cpu_s"] >= 2.0, doc
    finally:
        shutil.rmtree(root, ignore_errors=True)
