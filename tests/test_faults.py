"""Fault injection: the monitor meets real failures (no fds left, no memory,
a full disk, a cgroup it cannot remove, being killed in the middle of a
call).  Each must give a clear error, lose no result already produced and
leave nothing behind.

The faults are real kernel conditions made for the occasion (rlimits on a
monitor process of its own, a tiny tmpfs, a foreign cgroup, SIGKILL), never
mocks; the monitors that get them run in processes of their own, so the
test process itself is never starved.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import textwrap
import time

import psutil
import pytest
from picoproc import cgroups
from picoproc.manifest import Limits
from picoproc.spawn import SpawnConfig, kill_picoprocess, spawn_picoprocess, wait_picoprocess

pytestmark = pytest.mark.root

TIMEOUT = 60


def _read_line(fd: int, timeout: float = TIMEOUT) -> bytes:
    data = b""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    while not data.endswith(b"\n"):
        if not poller.poll(timeout * 1000):
            raise TimeoutError(f"nothing within {timeout} s (got {data!r})")
        chunk = os.read(fd, 4096)
        if not chunk:
            break
        data += chunk
    return data


# ---------------------------------------------------------------------------
# A run cgroup that cannot be removed

@pytest.mark.skipif(not cgroups.available().version, reason="no cgroups here")
def test_a_run_cgroup_that_cannot_be_removed_keeps_the_result_and_is_removed_later(guest_bin):
    """Someone made a cgroup inside the run's: rmdir says EBUSY for as long
    as it is there.  The run's result must still come back (before: the
    CgroupError replaced it), with one line saying what is left, and the
    run cgroup must go as soon as it can."""
    cmd_r, cmd_w = os.pipe()
    out_r, out_w = os.pipe()
    sp = spawn_picoprocess(SpawnConfig(argv=[str(guest_bin / "spawn_ctl")], stdio=(cmd_r, out_w, 2),
                                       limits=Limits(pids=16)))
    os.close(cmd_r)
    os.close(out_w)
    blockers = []
    try:
        os.write(cmd_w, b"r")
        assert os.read(out_r, 1) == b"R"
        for path in dict.fromkeys(sp.cgroup.paths.values()):
            os.mkdir(os.path.join(path, "foreign"))
            blockers.append(os.path.join(path, "foreign"))
        os.write(cmd_w, b"e")
        started = time.monotonic()
        result = wait_picoprocess(sp, timeout=TIMEOUT)
        # Failed at once: no waiting for a cgroup that no kill can empty.
        assert time.monotonic() - started < 4
        assert result.exit_code == 42  # the result stands
        assert "foreign" in result.cleanup_error and "retried later" in result.cleanup_error
        stuck = cgroups.pending_removals()
        assert stuck == set(sp.cgroup.paths.values())
        assert all(os.path.isdir(p) for p in stuck)
    finally:
        os.close(cmd_w)
        os.close(out_r)
        kill_picoprocess(sp)
        for b in blockers:
            os.rmdir(b)
    # The next run cgroup made retries first.
    again, _ = cgroups.create_run_cgroup(pids=4)
    again.remove()
    assert cgroups.pending_removals() == set()
    assert not any(os.path.exists(p) for p in stuck)
    for path in dict.fromkeys(sp.cgroup.paths.values()):  # whatever the outcome above
        if os.path.isdir(path):
            os.rmdir(path)


# ---------------------------------------------------------------------------
# No fds, no memory: real limits on a monitor process of its own

def _monitor_script(body: str, *args: str, timeout: float = 240) -> list[dict]:
    """Runs ``body`` (Python, with ``sb`` a warmed-up Sandbox, ``fds()`` and
    ``children()``) in a monitor process of its own; returns the JSON lines
    it printed."""
    script = textwrap.dedent("""
        import json, os, resource, sys, traceback
        import psutil
        from picoproc.api import Sandbox
        def fds():
            return len(os.listdir("/proc/self/fd"))
        def children():
            return len(psutil.Process().children(recursive=True))
        def emit(**kw):
            print(json.dumps(kw), flush=True)
        sb = Sandbox()
        sb.run(["/bin/cat", "/etc/hostname"], capture=True)
    """) + textwrap.dedent(body)
    proc = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True,
                          timeout=timeout, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return [json.loads(line) for line in proc.stdout.splitlines()]


# The errors picoproc's own failures raise: each names the step that failed.
CLEAR_ERRORS = ("MonitorError", "SpawnError", "ScratchError", "SandboxError", "CgroupError")

SWEEP = """
    soft, hard = resource.getrlimit(LIMIT)
    base_fds, base_children = fds(), children()
    base = START()
    for k in range(int(sys.argv[1])):
        resource.setrlimit(LIMIT, (base + k * int(sys.argv[2]), hard))
        try:
            r = sb.run(["/bin/sh", "-c", "cat /etc/hostname; echo x > /tmp/c; mv /tmp/c /tmp/d; cat /tmp/d"],
                       capture=True, timeout=20)
            outcome = dict(status=r.status, stdout=r.stdout.decode(), stderr=r.stderr.decode())
        except Exception as e:
            outcome = dict(error=type(e).__name__, message=str(e))
        resource.setrlimit(LIMIT, (soft, hard))
        emit(k=k, fds=fds() - base_fds, children=children() - base_children, **outcome)
    r = sb.run(["/bin/cat", "/etc/hostname"], capture=True)
    emit(final=r.status, stdout=r.stdout.decode())
"""


def _check_sweep(lines: list[dict], errno_text: str) -> None:
    *steps, final = lines
    for step in steps:
        # Nothing left behind by any attempt, whatever it met.
        assert (step["fds"], step["children"]) == (0, 0), step
        if "error" in step:
            assert step["error"] in CLEAR_ERRORS, step
            assert errno_text in step["message"] and "\n" not in step["message"], step
    failed = [s for s in steps if "error" in s]
    worked = [s for s in steps if "error" not in s]
    assert failed and worked, "the sweep must cross from failing to working runs"
    assert {s["stdout"] for s in worked if s["status"] == 0} <= {"vm\nx\n", open("/etc/hostname").read() + "x\n"}
    # The monitor lives on: the next run works.
    assert final["final"] == 0 and final["stdout"] == open("/etc/hostname").read()


def test_emfile_at_every_step_of_a_run_is_a_clear_error_and_leaks_nothing():
    """The monitor's fd limit is set k fds above what it holds, for k = 0,
    1, 2, ...: each run fails at a different step (the scratch tmpfs, each
    mount, the detached copies, the pipes, the spawn, the guest's
    listener...) until one fits."""
    lines = _monitor_script(SWEEP.replace("LIMIT", "resource.RLIMIT_NOFILE").replace("START()", "fds()"),
                            "48", "1")
    _check_sweep(lines, "Too many open files")


def test_enomem_in_the_monitor_is_a_clear_error_and_leaks_nothing():
    """The monitor's address space is capped just above what it maps, in
    small steps: a run fails where the next mapping is refused (the
    reaper's fork of the guest first), or works."""
    lines = _monitor_script(
        SWEEP.replace("LIMIT", "resource.RLIMIT_AS").replace("START()", "psutil.Process().memory_info().vms"),
        "24", str(64 << 10))
    _check_sweep(lines, "Cannot allocate memory")


def test_python_out_of_memory_during_a_run_is_the_same_clear_error(monkeypatch):
    """Where Python itself cannot allocate during a run (reading the guest's
    output, the cgroup's figures), the caller gets a MonitorError with
    ENOMEM, as for a system call's ENOMEM, not a bare MemoryError; the run
    is cleaned up and the monitor goes on."""
    import errno

    from picoproc import api
    from picoproc.monitor import MonitorError

    sb = api.Sandbox()
    assert sb.run(["/bin/true"]).status == 0
    fds = len(os.listdir("/proc/self/fd"))

    def out_of_memory(*args, **kwargs):
        raise MemoryError

    with monkeypatch.context() as m:
        m.setattr(api, "_wait_and_pump", out_of_memory)
        with pytest.raises(MonitorError) as info:
            sb.run(["/bin/sh", "-c", "sleep 5"], capture=True)
    assert info.value.errno == errno.ENOMEM and "Cannot allocate memory" in str(info.value)
    assert "\n" not in str(info.value)
    assert len(os.listdir("/proc/self/fd")) == fds
    assert psutil.Process().children(recursive=True) == []
    assert sb.run(["/bin/true"]).status == 0


EMFILE_WHILE_SERVING = """
    import select, threading
    r_in, w_in = os.pipe()
    r_out, w_out = os.pipe()
    box = {}
    argv = ["/bin/sh", "-c", "echo ready; read a; read l < /etc/hostname && echo first $l; echo mark; "
                             "read b; read l < /etc/hostname && echo second $l"]
    t = threading.Thread(target=lambda: box.update(
        r=sb.run(argv, stdin=r_in, stdout=w_out, stderr=w_out, timeout=30)))
    t.start()
    out = b""
    while b"ready" not in out and select.select([r_out], [], [], 20)[0]:
        out += os.read(r_out, 4096)
    hog = []
    try:
        while True:
            hog.append(os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC))
    except OSError:
        pass
    os.write(w_in, b"1\\n")  # the shell opens /etc/hostname: the monitor has no fd for it
    while b"mark" not in out and select.select([r_out], [], [], 20)[0]:
        out += os.read(r_out, 4096)
    for fd in hog:
        os.close(fd)
    os.write(w_in, b"2\\n")
    t.join(40)
    os.close(w_out)
    while chunk := os.read(r_out, 4096):
        out += chunk
    r = box["r"]
    emit(status=r.status, out=out.decode(),
         audit=[(a["call"], a.get("uri"), a["errno_name"]) for a in r.audit if a["call"] == "open"])
"""


def test_emfile_while_serving_a_call_is_the_guests_errno_and_the_monitor_goes_on():
    """The monitor's fd table is full while the guest's shell opens a file:
    the loop answers that call EMFILE (the shell says so), and the same
    guest's next open, once fds are free again, works."""
    (line,) = _monitor_script(EMFILE_WHILE_SERVING)
    hostname = open("/etc/hostname").read().strip()
    out = line["out"].splitlines()
    assert out[0] == "ready" and out[1].endswith("Too many open files"), out
    assert out[2:] == ["mark", f"second {hostname}"], out
    assert ["open", "file:/etc/hostname", "EMFILE"] in line["audit"]
    assert line["status"] == 0


# ---------------------------------------------------------------------------
# The monitor killed in the middle of a call

def _mount_points() -> set[str]:
    with open("/proc/self/mountinfo") as f:
        return {line.split()[4] for line in f}


KILLED_MONITOR = """
    from picoproc.monitor import AuditJsonlWriter
    first = sb.run(["/bin/echo", "first"], capture=True)
    fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.write(fd, json.dumps(first.to_dict(), default=str).encode())
    os.fsync(fd)
    os.close(fd)
    emit(first=first.status)
    sb2 = Sandbox(audit=sys.argv[2])
    sb2.run(["/bin/sh", "-c", "while :; do read l < /etc/hostname; read l < /nonexistent; done"],
            capture=True, timeout=60)
    emit(never="reached")
"""


@pytest.mark.skipif(not cgroups.available().version, reason="no cgroups here")
def test_a_monitor_killed_mid_call_leaves_nothing_and_keeps_what_it_wrote(tmp_path):
    """SIGKILL while a guest is making calls: the guest dies with it (no
    confined process outlives its monitor), the result written before and
    every whole audit record stay, the run's empty cgroup goes with the next
    monitor's first run, and no mount or process is left."""
    result_file, audit = tmp_path / "first.json", tmp_path / "audit.jsonl"
    script = textwrap.dedent("""
        import json, os, sys
        from picoproc.api import Sandbox
        def emit(**kw):
            print(json.dumps(kw), flush=True)
        sb = Sandbox()
    """) + textwrap.dedent(KILLED_MONITOR)
    mounts_before = _mount_points()
    monitor = subprocess.Popen([sys.executable, "-c", script, str(result_file), str(audit)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert json.loads(_read_line(monitor.stdout.fileno())) == {"first": 0}
        deadline = time.monotonic() + TIMEOUT
        while (not audit.exists() or audit.stat().st_size < 20000) and time.monotonic() < deadline:
            time.sleep(0.01)
        confined = psutil.Process(monitor.pid).children(recursive=True)
        assert len(confined) >= 2  # the reaper and the guest's shell, at least
        owned = {p for p in cgroups._mounts()[1].values()}
        monitor.send_signal(signal.SIGKILL)
        monitor.wait(TIMEOUT)
        gone, alive = psutil.wait_procs(confined, timeout=10)
        assert not alive, f"confined processes outlived their monitor: {alive}"
    finally:
        if monitor.poll() is None:
            monitor.kill()
            monitor.wait()
        monitor.stdout.close()
        monitor.stderr.close()
    # What was written before the kill is intact.
    assert json.loads(result_file.read_text())["stdout"] == "first\n"
    text = audit.read_text()
    complete = text.splitlines() if text.endswith("\n") else text.splitlines()[:-1]
    records = [json.loads(line) for line in complete]
    assert len(records) > 10 and all(r["guest"] > 0 and r["call"] for r in records)
    # The dead monitor's run cgroups are empty, and the next monitor's first
    # run cgroup sweeps them away.
    stale = set()
    for base in owned:
        for dirpath, dirnames, _ in os.walk(base):
            stale |= {os.path.join(dirpath, d) for d in dirnames if d.startswith(f"picoproc-{monitor.pid}-")}
    assert stale
    for path in stale:
        assert open(os.path.join(path, "cgroup.procs")).read() == ""
    cgroups._swept = False
    again, _ = cgroups.create_run_cgroup(pids=4)
    again.remove()
    assert not any(os.path.exists(p) for p in stale)
    # (Other programs may mount and unmount meanwhile: only new mounts count.)
    assert _mount_points() - mounts_before == set()
    assert not [n for n in os.listdir("/tmp") if str(monitor.pid) in n]


# ---------------------------------------------------------------------------
# A full disk under the audit file

@pytest.mark.skipif(os.geteuid() != 0, reason="mounting the small file system needs root")
def test_a_full_disk_under_the_audit_file_is_one_clear_error_and_loses_nothing(picoproc_exe, tmp_path):
    """The audit file is on a 64 KiB file system that fills up during the
    run: the run goes on to its end, its result (--json, exit status) is
    whole, the audit file holds only whole records, and the error is one
    line naming the file."""
    disk = tmp_path / "disk"
    disk.mkdir()
    audit, result_json = disk / "audit.jsonl", tmp_path / "result.json"
    flood = "for i in $(seq 3000); do read l < /etc/shadow; done 2>/dev/null; echo done"
    kept = tmp_path / "audit-as-left.jsonl"  # the file system goes with its mount namespace
    proc = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c",
         f"mount -t tmpfs -o size=64k tmpfs {disk} || exit 99; \"$@\"; rc=$?; cp {audit} {kept}; exit $rc",
         # -q: the end-of-run summary of the 3000 refusals is not this test's matter.
         "sh", picoproc_exe, "run", "-q", "--audit", str(audit), "--json", str(result_json), "--",
         "/bin/sh", "-c", flood],
        capture_output=True, text=True, timeout=TIMEOUT, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "done\n"
    text = kept.read_text()
    assert 32 * 1024 < len(text) <= 64 * 1024 and text.endswith("\n")
    assert all(json.loads(line)["call"] for line in text.splitlines())
    doc = json.loads(result_json.read_text())
    assert doc["exit_status"] == 0 and doc["counts"]["mediated_denied"] >= 3000
    assert "No space left on device" in doc["audit_error"]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("picoproc:")]
    assert errors == [f"picoproc: audit file {audit}: No space left on device; later records were not written"]
