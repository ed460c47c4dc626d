"""podman runs picoprocesses: ``podman --runtime picoproc-oci`` against the same
images under crun, output compared, and what podman's lifecycle commands do
checked from outside (processes, cgroups, mounts, runtime state).

One private podman (picoproc.oci.engine.PrivatePodman) serves the module:
its own storage, run and network-config directories under a temporary
directory, images imported from tarballs made of this host's Debian files.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import urllib.request

import pytest

from picoproc.oci.engine import EngineUnavailable, PrivatePodman

pytestmark = [pytest.mark.root, pytest.mark.peers, pytest.mark.slow]

TIMEOUT = 60


@pytest.fixture(scope="module")
def podman():
    try:
        engine = PrivatePodman()
    except EngineUnavailable as exc:
        pytest.skip(str(exc))
    try:
        try:
            engine.images = engine.build_images()
            engine.pico = engine.runtime("picoproc")
            engine.crun = engine.runtime("crun")
        except EngineUnavailable as exc:
            pytest.skip(str(exc))
        yield engine
    finally:
        engine.close()
    assert not os.path.exists(engine.dir)


def _run(podman, runtime, *args, **kw):
    return podman.run(runtime, "run", "--rm", *args, check=False, timeout=TIMEOUT, **kw)


def _same(podman, *args):
    """Runs the same container under crun and picoproc; returns both results."""
    ref = _run(podman, podman.crun, *args)
    got = _run(podman, podman.pico, *args)
    return ref, got


def test_echo_in_busybox_matches_crun(podman):
    ref, got = _same(podman, podman.images["busybox"], "echo", "hello", "from", "a", "picoprocess")
    assert ref.returncode == 0, ref.stderr
    assert (got.returncode, got.stdout, got.stderr) == (ref.returncode, ref.stdout, ref.stderr)
    assert got.stdout == b"hello from a picoprocess\n"


def test_exit_status_matches_crun(podman):
    ref, got = _same(podman, podman.images["busybox"], "sh", "-c", "echo bye >&2; exit 42")
    assert (got.returncode, got.stderr) == (ref.returncode, ref.stderr) == (42, b"bye\n")


def test_python_script_with_a_bind_mount_matches_crun(podman, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    (work / "job.py").write_text(
        "import hashlib, json, os, sys\n"
        "data = open('/work/input.txt', 'rb').read()\n"
        "print(json.dumps({'sha256': hashlib.sha256(data).hexdigest(), 'lines': data.count(b'\\n'),\n"
        "                  'cwd': os.getcwd(), 'argv': sys.argv[1:], 'ro': not os.access('/work', os.W_OK)}))\n")
    (work / "input.txt").write_text("".join(f"line {i}\n" for i in range(1000)))
    os.chmod(tmp_path, 0o755)
    ref, got = _same(podman, "-v", f"{work}:/work:ro", "-w", "/work", podman.images["python"],
                     "python3", "job.py", "a", "b")
    assert ref.returncode == 0, ref.stderr
    assert (got.returncode, got.stdout, got.stderr) == (0, ref.stdout, ref.stderr)
    doc = json.loads(got.stdout)
    assert doc["lines"] == 1000 and doc["cwd"] == "/work" and doc["argv"] == ["a", "b"]


def _get(port: int, path: str, deadline: float) -> bytes:
    last = None
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
                return r.read()
        except OSError as exc:  # not listening yet
            last = exc
            time.sleep(0.1)
    raise AssertionError(f"no answer on port {port}: {last}")


def _serve(podman, runtime, tmp_path) -> tuple[str, int]:
    """Python's own http.server (it listens on [::], dual-stack) serving a
    bind-mounted directory, published on a port of the host's loopback."""
    site = tmp_path / "site"
    site.mkdir(exist_ok=True)
    (site / "hello.txt").write_text("hello through a published port\n")
    os.chmod(tmp_path, 0o755)
    cid = podman.run(runtime, "run", "-d", "-p", "127.0.0.1::8000", "-v", f"{site}:/srv:ro",
                     podman.images["python"], "python3", "-m", "http.server", "-d", "/srv", "8000",
                     timeout=TIMEOUT).stdout.decode().strip()
    port = int(podman.run(None, "port", cid, "8000").stdout.decode().strip().rsplit(":", 1)[1])
    return cid, port


def _cgroup_of(podman, cid) -> list[str]:
    found = []
    for base in ("/sys/fs/cgroup/memory/libpod_parent", "/sys/fs/cgroup/pids/libpod_parent",
                 "/sys/fs/cgroup/libpod_parent"):
        path = os.path.join(base, f"libpod-{cid}")
        if os.path.exists(path):
            found.append(path)
    return found


def test_server_on_a_published_port_and_podman_ps_kill_rm(podman, tmp_path):
    deadline = time.monotonic() + TIMEOUT
    ref_cid, ref_port = _serve(podman, podman.crun, tmp_path)
    try:
        expected = _get(ref_port, "/hello.txt", deadline)
    finally:
        podman.run(None, "rm", "--force", "--time", "0", ref_cid, check=False)
    cid, port = _serve(podman, podman.pico, tmp_path)
    try:
        assert _get(port, "/hello.txt", deadline) == expected == b"hello through a published port\n"
        # The pod's network is the guest's own: its [::]:8000 listener is made
        # there (dual-stack, as on Linux) and reached through podman's port
        # forwarding, from the host's IPv4 loopback.
        ps = json.loads(podman.run(None, "ps", "--format", "json").stdout)
        mine = [c for c in ps if c["Id"] == cid]
        assert len(mine) == 1 and mine[0]["State"] == "running"
        inspect = json.loads(podman.run(None, "inspect", cid).stdout)[0]
        pid = inspect["State"]["Pid"]
        assert pid > 0 and os.path.exists(f"/proc/{pid}")
        cgroups = _cgroup_of(podman, cid)
        assert cgroups, "the container is in the cgroup podman asked for"
        members = set()
        for path in cgroups:
            for dirpath, _, files in os.walk(path):
                if "cgroup.procs" in files:
                    members.update(int(p) for p in open(os.path.join(dirpath, "cgroup.procs")).read().split())
        assert pid in members and len(members) >= 3  # monitor, reaper, python
        podman.run(None, "kill", cid)
        waited = podman.run(None, "wait", cid, timeout=TIMEOUT)
        assert waited.stdout.decode().strip() == "137"  # SIGKILL, as under crun
        state = json.loads(podman.run(None, "inspect", cid).stdout)[0]["State"]
        assert state["Status"] == "exited" and state["ExitCode"] == 137
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
        for p in members:
            assert not os.path.exists(f"/proc/{p}"), f"process {p} outlived the container"
        podman.run(None, "rm", cid)
        assert not [c for c in json.loads(podman.run(None, "ps", "-a", "--format", "json").stdout)
                    if c["Id"] == cid]
        assert _cgroup_of(podman, cid) == []
        assert podman.settled_leftovers() == []
    finally:
        podman.run(None, "rm", "--force", "--time", "0", cid, check=False)


def test_podman_stop_sends_the_stop_signal_to_the_program(podman):
    cid = podman.run(podman.pico, "run", "-d", podman.images["busybox"], "sh", "-c",
                     "trap 'echo got TERM; exit 5' TERM; echo ready; while true; do sleep 0.1; done",
                     timeout=TIMEOUT).stdout.decode().strip()
    try:
        deadline = time.monotonic() + TIMEOUT
        while b"ready" not in podman.run(None, "logs", cid).stdout:
            assert time.monotonic() < deadline, "the container never started"
            time.sleep(0.05)
        podman.run(None, "stop", "--time", "20", cid, timeout=TIMEOUT)
        state = json.loads(podman.run(None, "inspect", cid).stdout)[0]["State"]
        assert state["ExitCode"] == 5
        assert podman.run(None, "logs", cid).stdout == b"ready\ngot TERM\n"
    finally:
        podman.run(None, "rm", "--force", "--time", "0", cid, check=False)
    assert podman.settled_leftovers() == []


def test_what_is_not_honoured_is_in_the_runtime_state_not_in_the_output(podman):
    created = podman.run(podman.pico, "create", podman.images["busybox"], "true").stdout.decode().strip()
    try:
        podman.run(None, "init", created)
        state = subprocess.run([podman.pico.path, "state", created], capture_output=True, timeout=TIMEOUT, check=True)
        notes = json.loads(state.stdout)["org.picoproc.notes"]
        assert any("/sys" in n for n in notes) and any("capabilities" in n for n in notes)
        assert json.loads(state.stdout)["status"] == "created"
        started = podman.run(None, "start", "--attach", created, timeout=TIMEOUT)
        assert (started.returncode, started.stdout, started.stderr) == (0, b"", b"")
    finally:
        podman.run(None, "rm", "--force", "--time", "0", created, check=False)


def test_podman_exec_runs_a_second_program_in_the_same_picoprocess(podman):
    cid = podman.run(podman.pico, "run", "-d", podman.images["busybox"], "sh", "-c",
                     "echo main > /tmp/mark; exec sleep 60", timeout=TIMEOUT).stdout.decode().strip()
    try:
        deadline = time.monotonic() + TIMEOUT
        while True:
            ex = podman.run(None, "exec", cid, "sh", "-c", "cat /tmp/mark; hostname; exit 3", check=False)
            if ex.returncode != 1 or time.monotonic() > deadline:  # 1: /tmp/mark not written yet
                break
            time.sleep(0.05)
        assert (ex.returncode, ex.stdout) == (3, b"main\n" + cid[:12].encode() + b"\n")
        ex = podman.run(None, "exec", "-e", "X=y", "-w", "/tmp", cid, "sh", "-c", "echo $X $PWD", check=False)
        assert (ex.returncode, ex.stdout) == (0, b"y /tmp\n")
        missing = podman.run(None, "exec", cid, "no-such-program", check=False)
        assert missing.returncode == 127  # podman's "not found" status, from runc's error text
        assert json.loads(podman.run(None, "inspect", cid).stdout)[0]["State"]["Status"] == "running"
    finally:
        podman.run(None, "rm", "--force", "--time", "0", cid, check=False)
    assert podman.settled_leftovers() == []


def test_terminal_matches_crun(podman):
    ref, got = _same(podman, "-t", podman.images["busybox"], "sh", "-c", "test -t 0 && test -t 1 && echo tty")
    assert ref.stdout == b"tty\r\n"
    assert (got.returncode, got.stdout) == (ref.returncode, ref.stdout)


def test_memory_limit_ends_the_container_like_crun(podman):
    args = ("--memory", "64m", podman.images["python"], "python3", "-c", "x = bytearray(256 << 20); print('no')")
    cwd_before = set(os.listdir("."))
    ref, got = _same(podman, *args)
    assert ref.returncode == 137
    assert (got.returncode, got.stdout) == (137, b"")
    # conmon's "oom" marker file stays in the engine's private tree.
    assert set(os.listdir(".")) == cwd_before


def test_loopback_inside_the_container_matches_crun(podman):
    prog = ("import socket\n"
            "s = socket.socket(); s.bind(('127.0.0.1', 9000)); s.listen()\n"
            "c = socket.create_connection(('127.0.0.1', 9000)); a, _ = s.accept()\n"
            "c.sendall(b'over loopback'); print(a.recv(64).decode())\n")
    ref, got = _same(podman, podman.images["python"], "python3", "-c", prog)
    assert ref.stdout == b"over loopback\n"
    assert (got.returncode, got.stdout, got.stderr) == (ref.returncode, ref.stdout, ref.stderr)
