"""The interface users touch: the conventions of the tools they know.

``picoproc run`` against ``docker run``, ``bwrap`` and ``timeout(1)``:
mounts written host first, exit statuses that cannot be read as the
program's own, signals passed on with a stop timeout, whom the program runs
as on a writable mount; discoverability (``--version``, ``abi NAME``,
``manifest``, start-up hints); the Python API against ``subprocess.run``;
and the one result shape and its JSON.  Every test here runs the real CLI or
API on real programs and checks what a user would see.
"""

from __future__ import annotations

import fcntl
import json
import os
import pathlib
import pty
import re
import select
import signal
import socket
import subprocess
import sys
import termios
import time

import pytest
from conftest import signal_when_ready
from picoproc import api, cgroups
from picoproc.manifest import (
    Limits,
    Manifest,
    Mount,
    apply_overrides,
    default_manifest,
    manifest_from_cli_args,
    parse_manifest,
)
from picoproc.result import SCHEMA, SCHEMA_VERSION, Result

pytestmark = pytest.mark.root

TIMEOUT = 60
REPO = pathlib.Path(__file__).resolve().parent.parent
root_only = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (the guest identity rules as root)")


def backend_or_skip(name: str):
    from picoproc.backends import get_backend

    backend = get_backend(name)
    ok, why = backend.available()
    if not ok:
        pytest.skip(f"backend {name} unavailable: {why}")
    return backend


@pytest.fixture
def hostdir(tmp_path):
    """A host directory the guest identity (nobody as root) may traverse."""
    d = tmp_path / "host"
    d.mkdir()
    for p in (tmp_path, d):
        p.chmod(0o755)
    return d


def one_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    return lines[0]


# --------------------------------------------------------------------------
# The bugs a new user hit


def test_output_limit_with_one_large_write_is_not_status_0(run_picoproc, tmp_path):
    """One write larger than the limit fits in the pipe, so the program exits 0
    before picoproc reads it; the output was cut, so the run is no pass."""
    result = tmp_path / "r.json"
    proc = run_picoproc("run", "--output-limit", "1K", "--json", result, "--",
                        "python3", "-c", "import sys; sys.stdout.write('x' * 5000)")
    assert proc.returncode == 123, proc.stderr
    assert proc.stdout == "x" * 1024
    doc = json.loads(result.read_text())
    assert doc["limit"] == "output" and doc["exit_status"] == 123
    assert "output limit reached" in proc.stderr


def test_gvisor_with_a_network_grant_reaches_the_host_network():
    backend = backend_or_skip("gvisor")
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]
    try:
        m = apply_overrides(default_manifest(), net_connect=[f"127.0.0.1:{port}"])
        code = (f"import socket; socket.create_connection(('127.0.0.1', {port}), timeout=10); "
                "print('connected')")
        result = backend.run(m, ["python3", "-c", code], timeout=120)
        assert result.stdout == b"connected\n", result.stderr
        listener.settimeout(10)
        listener.accept()[0].close()  # the connection really reached the host
    finally:
        listener.close()


@pytest.mark.parametrize("size", ["512", "64K"])
def test_a_memory_limit_too_small_to_start_is_a_clear_error(run_picoproc, size):
    proc = run_picoproc("run", "--memory", size, "--", "/bin/true")
    assert proc.returncode == 125
    line = one_line(proc.stderr)
    assert line.startswith("picoproc: --memory:") and "below the minimum 1M" in line


def test_an_oom_while_starting_is_named_as_the_memory_limit():
    """Below the manifest's floor (the spawn layer takes any Limits): the
    kernel kills the reaper while it starts; the error says why."""
    from picoproc.spawn import SpawnConfig, SpawnError, release, spawn_picoprocess

    if "memory" not in cgroups.available_controllers():
        pytest.skip("no memory cgroup controller here")
    with pytest.raises(SpawnError) as info:
        spawned = spawn_picoprocess(SpawnConfig(argv=["/bin/true"], limits=Limits(memory_bytes=4096),
                                                image_path=str(REPO / "tests/guests/bin/hello")))
        release(spawned)  # it started after all: the assertion below fails
    assert "memory limit" in str(info.value) and "too small" in str(info.value)


@pytest.mark.parametrize("name", ["ptrace", "sandlock"])
def test_a_backend_refusing_a_remapped_mount_is_a_config_error(run_picoproc, hostdir, name):
    backend_or_skip(name)
    proc = run_picoproc("run", "--backend", name, "-v", f"{hostdir}:/data", "--", "/bin/true")
    assert proc.returncode == 125
    assert "cannot remap paths" in one_line(proc.stderr)


def test_a_refused_fork_is_the_pids_limit(run_picoproc, tmp_path):
    if "pids" not in cgroups.available_controllers():
        pytest.skip("no pids cgroup controller: forks refused by RLIMIT_NPROC are not counted")
    result = tmp_path / "r.json"
    proc = run_picoproc("run", "--pids", "4", "--json", result, "--", "/bin/sh", "-c",
                        "for i in 1 2 3 4 5 6 7 8; do /bin/sleep 1 & done; wait")
    doc = json.loads(result.read_text())
    assert doc["limit"] == "pids" and proc.returncode == 120, proc.stderr
    assert doc["exit_code"] is not None  # the shell's own status is kept
    assert "process-count limit" in proc.stderr
    m = apply_overrides(default_manifest(), pids="4")
    r = api.run(["/bin/sh", "-c", "for i in 1 2 3 4 5 6 7 8; do /bin/sleep 1 & done; wait"], m,
                capture=True)
    assert r.limit == "pids" and r.exit_status == 120


def _backends_table() -> dict[str, dict[str, str]]:
    text = (REPO / "docs" / "BACKENDS.md").read_text()
    section = text.split("## What each backend expresses", 1)[1]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    header = next(line for line in section.splitlines() if line.startswith("| feature |"))
    names = [c.strip() for c in header.strip("|").split("|")][1:]
    table: dict[str, dict[str, str]] = {n: {} for n in names}
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        feature = cells[0].strip("`")
        for name, cell in zip(names, cells[1:]):
            table[name][feature] = cell
    return table


@pytest.mark.unit
def test_the_backends_table_says_what_each_backend_declares():
    """docs/BACKENDS.md's table is what the code declares: "no" exactly where
    a backend lists the feature as unsupported (limits.pids also where the
    backend has no process-count mechanism at all)."""
    from picoproc.backends import FEATURES, get_backend

    table = _backends_table()
    assert table, "no table found"
    for name, column in table.items():
        backend = get_backend(name)
        declared = dict(backend.unsupported)
        if backend.launcher_tasks is None and not backend.enforces_pids_itself:
            declared.setdefault("limits.pids", "no process-count limit")
        for feature in FEATURES:
            expected = "no" if feature in declared else "yes"
            assert column.get(feature) == expected, (name, feature, declared.get(feature))


# --------------------------------------------------------------------------
# Mounts in the order users type them


def test_volume_is_host_first_as_docker(run_picoproc, hostdir):
    (hostdir / "in.txt").write_text("from the host\n")
    (hostdir / "in.txt").chmod(0o644)
    proc = run_picoproc("run", "-v", f"{hostdir}:/data:ro", "--", "/bin/cat", "/data/in.txt")
    assert (proc.returncode, proc.stdout) == (0, "from the host\n"), proc.stderr
    proc = run_picoproc("run", "--volume", f"{hostdir}:/data", "--", "/bin/sh", "-c",
                        "echo x > /data/new")
    assert proc.returncode != 0 and not (hostdir / "new").exists()  # read-only by default


def test_mount_takes_docker_keys(run_picoproc, hostdir):
    (hostdir / "in.txt").write_text("keys\n")
    (hostdir / "in.txt").chmod(0o755)
    proc = run_picoproc("run", "--mount", f"type=bind,source={hostdir},target=/d,readonly", "--",
                        "/bin/cat", "/d/in.txt")
    assert (proc.returncode, proc.stdout) == (0, "keys\n"), proc.stderr
    proc = run_picoproc("run", "--mount", f"src={hostdir},dst=/d,ro,noexec", "--", "/d/in.txt")
    assert proc.returncode == 126 and "noexec" in one_line(proc.stderr)
    proc = run_picoproc("run", "--mount", "type=tmpfs,dst=/scratch,tmpfs-size=1M", "--",
                        "/bin/sh", "-c", "echo ok > /scratch/f && cat /scratch/f")
    assert (proc.returncode, proc.stdout) == (0, "ok\n"), proc.stderr


def test_the_old_guest_first_form_is_refused_with_a_hint(run_picoproc, hostdir):
    proc = run_picoproc("run", "--mount", f"/data={hostdir}:ro", "--", "/bin/true")
    assert proc.returncode == 125
    line = one_line(proc.stderr)
    assert f"-v {hostdir}:/data:ro" in line and f"--mount src={hostdir},dst=/data,ro" in line


@pytest.mark.unit
def test_manifest_keys_are_unchanged(hostdir):
    m = parse_manifest(f'[[mount]]\nguest = "/data"\nhost = "{hostdir}"\nmode = "rw"\n')
    assert m.mounts == (Mount("/data", str(hostdir), writable=True),)


# --------------------------------------------------------------------------
# Exit statuses


def test_the_programs_own_status_passes_through(run_picoproc):
    assert run_picoproc("run", "--", "/bin/sh", "-c", "exit 2").returncode == 2
    assert run_picoproc("run", "--", "/bin/ls", "/nonexistent").returncode == 2  # ls's own 2
    assert run_picoproc("run", "--", "/bin/sh", "-c", "kill -TERM $$").returncode == 143


def test_picoprocs_own_failures_have_their_own_statuses(run_picoproc, hostdir):
    usage = run_picoproc("run", "--no-such-flag", "--", "/bin/true")
    assert usage.returncode == 125 and "--no-such-flag" in one_line(usage.stderr)
    assert run_picoproc("run", "--memory", "12Q", "--", "/bin/true").returncode == 125
    assert run_picoproc("run", "--", "no-such-program-anywhere").returncode == 127
    directory = run_picoproc("run", "--", "/usr")
    assert directory.returncode == 126 and "is a directory" in one_line(directory.stderr)
    script = hostdir / "run.sh"
    script.write_text("#!/bin/sh\necho hi\n")
    script.chmod(0o644)
    denied = run_picoproc("run", "-v", f"{hostdir}:/w", "--", "/w/run.sh")
    assert denied.returncode == 126 and "permission denied" in one_line(denied.stderr)


def test_limits_have_distinct_statuses(run_picoproc):
    wall = run_picoproc("run", "--timeout", "1", "--", "/bin/sh", "-c", "while :; do :; done")
    assert wall.returncode == 124 and "wall-time" in wall.stderr
    if "memory" in cgroups.available_controllers():
        oom = run_picoproc("run", "--memory", "64M", "--", "python3", "-c",
                           "x = bytearray(400 << 20)")
        assert oom.returncode == 121 and "memory limit" in oom.stderr
    killed = run_picoproc("run", "--", "/bin/sh", "-c", "kill -KILL $$")
    assert killed.returncode == 137  # the program's own death is not a limit


def test_help_lists_the_exit_statuses(run_picoproc):
    text = run_picoproc("run", "--help").stdout
    for status in ("124", "123", "122", "121", "120", "125", "126", "127", "128+N"):
        assert re.search(rf"^\s+{re.escape(status)}\s", text, re.MULTILINE), status
    assert "exit status" in run_picoproc("--help").stdout


# --------------------------------------------------------------------------
# Signals


# os.write, not print: a handler that prints while the main code is inside
# print() raises "reentrant call" in the program (a test program bug).
HANDLES_TERM = (
    "import os, signal, sys, time\n"
    "def on_term(sig, frame):\n"
    "    os.write(1, b'cleaned up after ' + signal.Signals(sig).name.encode() + b'\\n')\n"
    "    sys.exit(0)\n"
    "signal.signal(signal.SIGTERM, on_term)\n"
    "signal.signal(signal.SIGUSR1, lambda s, f: os.write(1, b'usr1\\n'))\n"
    "os.write(1, b'ready\\n')\n"
    "while True:\n"
    "    time.sleep(1)\n"
)


def _start(picoproc_exe, *args, **kw):
    proc = subprocess.Popen([picoproc_exe, *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True, **kw)
    return proc


@pytest.mark.parametrize("backend", ["pico", "native"])
def test_sigterm_reaches_the_program_and_its_handler_runs(picoproc_exe, tmp_path, backend):
    result = tmp_path / "r.json"
    proc = _start(picoproc_exe, "run", "--backend", backend, "--json", result, "--",
                  "python3", "-c", HANDLES_TERM)
    out, err = signal_when_ready(proc, signal.SIGUSR1, "usr1\n", signal.SIGTERM, timeout=TIMEOUT)
    assert out == "cleaned up after SIGTERM\n", err
    assert proc.returncode == 0, err
    assert json.loads(result.read_text())["exit_status"] == 0


def test_the_stop_timeout_kills_a_program_that_ignores_sigterm(picoproc_exe, tmp_path):
    ignores = ("import os, signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
               "os.write(1, b'ready\\n')\ntime.sleep(60)\n")
    result = tmp_path / "r.json"
    proc = _start(picoproc_exe, "run", "--stop-timeout", "1", "--json", result, "--",
                  "python3", "-c", ignores)
    _, err = signal_when_ready(proc, signal.SIGTERM, timeout=TIMEOUT)
    assert proc.returncode == 137, err
    assert "stop timeout after SIGTERM" in err
    doc = json.loads(result.read_text())
    assert doc["stopped_by"] == "SIGTERM" and doc["signal_name"] == "SIGKILL"


def test_a_terminals_ctrl_c_reaches_the_program_once(picoproc_exe, tmp_path):
    """Ctrl-C makes the kernel signal the terminal's whole foreground process
    group, the program included: picoproc and the reaper must not pass it
    on a second time, and it does not end an interactive program."""
    counts = (
        "import os, signal, sys\n"
        "n = 0\n"
        "def on_int(s, f):\n"
        "    global n\n"
        "    n += 1\n"
        "    os.write(1, b'got INT\\n')\n"
        "def on_usr1(s, f):\n"
        "    os.write(1, b'INT count %d\\n' % n)\n"
        "    sys.exit(0)\n"
        "signal.signal(signal.SIGINT, on_int)\n"
        "signal.signal(signal.SIGUSR1, on_usr1)\n"
        "os.write(1, b'ready\\n')\n"
        "while True:\n"
        "    signal.pause()\n"
    )
    result = tmp_path / "r.json"
    master, slave = pty.openpty()

    def controlling_terminal():
        os.setsid()
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    # preexec_fn: the only way to give the child a controlling terminal.
    proc = subprocess.Popen(
        [picoproc_exe, "run", "--json", str(result), "--", "python3", "-c", counts],
        stdin=slave, stdout=slave, stderr=slave, preexec_fn=controlling_terminal)  # noqa: PLW1509
    os.close(slave)
    seen = b""

    def wait_for(token: bytes) -> None:
        nonlocal seen
        deadline = time.monotonic() + TIMEOUT
        while token not in seen:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([master], [], [], left)[0]:
                raise TimeoutError(f"{token!r} not seen; got {seen!r}")
            seen += os.read(master, 4096)

    try:
        wait_for(b"ready")
        os.write(master, b"\x03")  # the terminal's Ctrl-C
        wait_for(b"got INT")
        # Signals are delivered lowest number first: a second SIGINT passed on
        # by picoproc or the reaper would arrive before this SIGUSR1.
        proc.send_signal(signal.SIGUSR1)
        wait_for(b"INT count")
        assert proc.wait(timeout=TIMEOUT) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    assert b"INT count 1" in seen, seen
    notes = json.loads(result.read_text())["notes"]
    assert "signals passed on to the program: SIGUSR1" in notes  # not the terminal's SIGINT


def test_signals_reach_the_program_unprivileged(unpriv_env):
    proc = subprocess.Popen(
        [*unpriv_env["prefix"], unpriv_env["python"], "-m", "picoproc", "run", "--",
         "python3", "-c", HANDLES_TERM],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=unpriv_env["env"], cwd="/")
    out, err = signal_when_ready(proc, signal.SIGTERM, timeout=TIMEOUT)
    assert (proc.returncode, out) == (0, "cleaned up after SIGTERM\n"), err


# --------------------------------------------------------------------------
# Whom the program runs as on a writable mount


@root_only
def test_a_writable_mount_is_written_as_its_owner(run_picoproc, hostdir):
    out = hostdir / "out"
    out.mkdir()
    os.chown(out, 1000, 1000)
    proc = run_picoproc("run", "-v", f"{out}:/out:rw", "--", "/bin/sh", "-c",
                        "echo result > /out/f && id -u")
    assert (proc.returncode, proc.stdout) == (0, "1000\n"), proc.stderr
    st = (out / "f").stat()
    assert (st.st_uid, st.st_gid) == (1000, 1000) and (out / "f").read_text() == "result\n"


@root_only
def test_user_flag_and_its_limits(run_picoproc, hostdir):
    proc = run_picoproc("run", "--user", "1234:1235", "--", "/bin/sh", "-c", "id -u; id -g")
    assert (proc.returncode, proc.stdout) == (0, "1234\n1235\n"), proc.stderr
    for user in ("0", "0:0", "1000:0", "root"):
        refused = run_picoproc("run", "--user", user, "--", "/bin/true")
        assert refused.returncode == 125 and "never runs as root" in one_line(refused.stderr), user


@root_only
def test_a_refused_write_names_the_host_permission(run_picoproc, hostdir):
    out = hostdir / "out"
    out.mkdir()  # root's, mode 0755: the program (nobody) cannot write there
    proc = run_picoproc("run", "-v", f"{out}:/out:rw", "--", "/bin/sh", "-c", "echo x > /out/f")
    assert proc.returncode != 0 and not (out / "f").exists()
    hint = [line for line in proc.stderr.splitlines() if line.startswith("picoproc: /out/f:")]
    assert hint, proc.stderr
    assert f"{out} is owned by 0:0, mode drwxr-xr-x" in hint[0] and "65534:65534" in hint[0]
    assert "--user" in hint[0]


def test_unprivileged_user_flag_is_only_yourself(unpriv_env):
    import shutil
    import tempfile

    def run(*args):
        return subprocess.run([*unpriv_env["prefix"], unpriv_env["python"], "-m", "picoproc", "run",
                               *args], capture_output=True, text=True, env=unpriv_env["env"], cwd="/",
                              timeout=TIMEOUT, check=False)

    assert run("--user", "65534", "--", "/bin/true").returncode == 0
    other = run("--user", "1000", "--", "/bin/true")
    assert other.returncode == 125 and "unless it runs as root" in one_line(other.stderr)
    # Outside pytest's own (root-only) temporary tree: the unprivileged CLI
    # resolves the host path itself.
    base = pathlib.Path(tempfile.mkdtemp(prefix="picoproc-cli-", dir="/var/tmp"))
    try:
        base.chmod(0o755)
        out = base / "out"
        out.mkdir()
        os.chown(out, 65534, 65534)
        wrote = run("-v", f"{out}:/out:rw", "--", "/bin/sh", "-c", "echo y > /out/g")
        assert wrote.returncode == 0, wrote.stderr
        assert (out / "g").stat().st_uid == 65534
    finally:
        shutil.rmtree(base)


# --------------------------------------------------------------------------
# Discoverability


def test_version(run_picoproc):
    proc = run_picoproc("--version")
    assert proc.returncode == 0 and re.fullmatch(r"picoproc \S+ \(ABI v\d+\)\n", proc.stdout)


def test_abi_lookup_of_one_linux_call(run_picoproc):
    proc = run_picoproc("abi", "--linux", "openat", "close")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("openat (257): mediated")
    assert "close (3): direct" in proc.stdout
    assert "fd is below 2^31, but not 1018 (PICO_RESERVED_FD_BASE)..1023" in proc.stdout
    assert "0xFFFF" not in proc.stdout  # rules in words, not masks
    doc = json.loads(run_picoproc("abi", "--linux", "--json", "close").stdout)
    assert [r["name"] for r in doc] == ["close"] and doc[0]["rules_in_words"]
    bad = run_picoproc("abi", "--linux", "opnat")
    assert bad.returncode == 125 and "did you mean" in one_line(bad.stderr)


def test_abi_prints_rules_in_words(run_picoproc):
    proc = run_picoproc("abi")
    assert proc.returncode == 0
    lines = {line.split()[2]: line for line in proc.stdout.splitlines()[1:] if line.strip()}
    assert "fd is below 2^31, but not 1018 (PICO_RESERVED_FD_BASE)..1023" in lines["close"]
    assert "signum is at most 64 (NSIG), but not 31 (SIGSYS)" in lines["rt_sigaction"]
    assert "cmd is one of F_DUPFD, F_GETFD" in lines["fcntl"]
    assert max(len(line) for line in proc.stdout.splitlines()) < 200


def test_manifest_prints_the_effective_manifest(run_picoproc, hostdir):
    proc = run_picoproc("manifest", "-v", f"{hostdir}:/data:rw", "--memory", "256M", "-e", "K=V")
    assert proc.returncode == 0, proc.stderr
    printed = parse_manifest(proc.stdout)
    import argparse

    from picoproc.manifest import add_cli_options

    parser = argparse.ArgumentParser()
    add_cli_options(parser)
    expected = manifest_from_cli_args(parser.parse_args(
        ["-v", f"{hostdir}:/data:rw", "--memory", "256M", "-e", "K=V"]))
    assert printed == expected
    assert Mount("/data", str(hostdir), writable=True) in printed.mounts


def test_start_up_hints(run_picoproc, hostdir, tmp_path):
    script = hostdir / "run.sh"
    script.write_text("#!/bin/sh\necho hi\n")
    script.chmod(0o755)
    # ./run.sh from a host directory the guest does not see.
    proc = run_picoproc("run", "--", "./run.sh", cwd=hostdir)
    assert proc.returncode == 127
    assert f"your current directory {hostdir} is not mounted" in proc.stderr
    assert '-v "$PWD":/work -w /work' in proc.stderr
    # ... which the hint's flags fix.
    ok = run_picoproc("run", "-v", f"{hostdir}:/work", "-w", "/work", "--", "./run.sh", cwd=hostdir)
    assert (ok.returncode, ok.stdout) == (0, "hi\n"), ok.stderr
    # A manifest that forgot extends = "default".
    manifest = tmp_path / "m.toml"
    manifest.write_text('[[mount]]\nguest = "/usr"\nhost = "/usr"\n')
    proc = run_picoproc("run", "--manifest", manifest, "--", "python3", "-c", "pass")
    assert proc.returncode == 127
    assert 'does not say extends = "default"' in proc.stderr
    assert "interpreter" in proc.stderr


def test_raw_mode_names_the_call_that_killed_it(run_picoproc, guest_bin, tmp_path):
    result = tmp_path / "r.json"
    proc = run_picoproc("run", "--raw", "--json", result, "--", guest_bin / "forbid", "bpf")
    assert proc.returncode == 128 + signal.SIGSYS
    doc = json.loads(result.read_text())
    if doc["fatal_syscall"]:
        assert doc["fatal_syscall"] == "bpf (321)"
        assert "bpf (321) is outside the ABI" in proc.stderr
    else:
        # The kernel's seccomp record could not be read (not root, or
        # dmesg_restrict, or the kernel's printk rate limit dropped it):
        # the message says where it is.
        assert f"audit type=1326, pid={doc['pid']}" in proc.stderr


# --------------------------------------------------------------------------
# The Python API, like subprocess.run


def test_run_takes_subprocess_arguments():
    r = api.run(["cat"], input="line\n" * 50_000, text=True, capture_output=True)
    assert (r.returncode, r.stdout) == (0, "line\n" * 50_000)
    assert api.run("true").args == ["true"]  # a str is one program name
    assert api.run(["cat"], stdin=b"bytes as stdin", capture=True).stdout == b"bytes as stdin"
    with pytest.raises(api.ProgramNotFound, match=r"give argv as a list"):
        api.run("echo hi")


def test_check_raises_a_called_process_error():
    with pytest.raises(subprocess.CalledProcessError) as info:
        api.run(["/bin/sh", "-c", "echo out; exit 3"], check=True, capture=True)
    assert info.value.returncode == 3 and info.value.output == b"out\n"
    assert info.value.result.exit_status == 3
    with pytest.raises(subprocess.TimeoutExpired) as info:
        api.run(["/bin/sleep", "30"], check=True, timeout=0.5)
    assert isinstance(info.value, subprocess.CalledProcessError) and info.value.timeout == 0.5
    # A limit that cut the run short fails check even though the program exited 0.
    m = apply_overrides(default_manifest(), output="1K")
    with pytest.raises(api.RunError) as info:
        api.run(["python3", "-c", "print('x' * 5000)"], m, check=True, capture=True)
    assert info.value.result.limit == "output"


def test_every_backend_returns_one_result_shape(tmp_path):
    from picoproc.backends import get_backend

    m = default_manifest()
    pico = get_backend("pico").run(m, ["/bin/sh", "-c", "echo hi; kill -USR1 $$"])
    native = get_backend("native").run(m, ["/bin/sh", "-c", "echo hi; kill -USR1 $$"])
    for r in (pico, native):
        assert type(r) is Result
        assert (r.returncode, r.signal, r.limit, r.stdout) == (-10, 10, None, b"hi\n")
        assert r.reason == "killed by SIGUSR1" and r.exit_status == 138
        assert set(r.to_json()) == set(pico.to_json())
    assert pico.counts["mediated"] > 0 and native.counts.get("mediated") is None


def test_json_is_versioned_names_flags_and_leaves_the_audit_out(run_picoproc, tmp_path):
    result, audit = tmp_path / "r.json", tmp_path / "a.jsonl"
    proc = run_picoproc("run", "--json", result, "--audit", audit, "--", "/bin/cat", "/etc/shadow")
    assert proc.returncode == 1
    doc = json.loads(result.read_text())
    assert (doc["schema"], doc["version"]) == (SCHEMA, SCHEMA_VERSION)
    assert "audit" not in doc and doc["audit_records"] == len(audit.read_text().splitlines())
    (denial,) = [d for d in doc["denials"] if d.get("uri") == "file:/etc/shadow"]
    assert denial["flags"].startswith("O_RDONLY") and "arg" not in denial
    assert (doc["returncode"], doc["exit_code"], doc["exit_status"]) == (1, 1, 1)


def test_json_is_written_when_the_run_cannot_start(run_picoproc, tmp_path):
    for args, status in ((["--", "no-such-program-anywhere"], 127),
                         (["--memory", "12Q", "--", "/bin/true"], 125),
                         (["--bogus-flag", "--", "/bin/true"], 125)):
        result = tmp_path / "r.json"
        proc = run_picoproc("run", "--json", result, *args)
        assert proc.returncode == status
        doc = json.loads(result.read_text())
        assert doc["started"] is False and doc["exit_status"] == status
        assert doc["error"]["message"] and doc["schema"] == SCHEMA
        result.unlink()


def test_a_manifest_built_in_python_runs_with_the_same_result(hostdir):
    (hostdir / "f").write_text("api\n")
    (hostdir / "f").chmod(0o644)
    m = apply_overrides(Manifest(), volumes=[f"{hostdir}:/d", "/usr:/usr", "/lib:/lib",
                                             "/lib64:/lib64"])
    r = api.Sandbox(m).run(["/usr/bin/cat", "/d/f"], capture_output=True, text=True)
    assert (r.returncode, r.stdout) == (0, "api\n"), r.stderr
    assert r.identity["uid"] == (65534 if os.geteuid() == 0 else os.geteuid())


@pytest.mark.unit
def test_python_in_a_non_main_thread_cannot_forward_signals():
    import threading

    box: list = []

    def worker():
        try:
            api.run(["true"], forward_signals=True)
        except RuntimeError as exc:
            box.append(str(exc))

    t = threading.Thread(target=worker)
    t.start()
    t.join(TIMEOUT)
    assert box and "main thread" in box[0]


def test_api_default_stdin_is_empty():
    r = api.run(["/bin/cat"], capture=True)
    assert r.stdout == b"" and r.returncode == 0


def test_input_and_output_arguments_leak_no_fds():
    def fds():
        return set(os.listdir("/proc/self/fd"))

    api.run(["true"])  # the shared monitor is up
    before = fds()
    for _ in range(3):
        assert api.run(["cat"], input=b"x" * 200_000, stdout=subprocess.DEVNULL).returncode == 0
    with pytest.raises(TypeError):
        api.run(["cat"], input=b"x", stdout=object())
    with pytest.raises(ValueError, match="input="):
        api.run(["cat"], stdin=subprocess.PIPE)
    assert fds() == before


# --------------------------------------------------------------------------
# Nothing left in the host's temporary directories

# Run as root in a mount namespace of its own (unshare -m), so that /tmp,
# /var/tmp and /dev/shm can be fresh, empty tmpfs that only this run writes
# to: argv[1] is a JSON list, the picoproc command to run in it and its
# environment; argv[2:] are directories the command's code lives in, bound
# again at their own paths where a new tmpfs would hide them (a checkout or
# a copy of the package under /tmp).  Prints, as JSON, the command's exit
# status and output and every entry left in the three directories (the
# directories bound again, and the ones made to hold them, aside).
_IN_FRESH_TMP = r"""
import json, os, subprocess, sys
cmd, env = json.loads(sys.argv[1])
tops = ("/tmp", "/var/tmp", "/dev/shm")
keep = sorted({os.path.realpath(d) for d in sys.argv[2:]})
keep = [d for d in keep if d.startswith(tuple(t + "/" for t in tops))
        and not any(d.startswith(k + "/") for k in keep)]
fds = [os.open(d, os.O_PATH) for d in keep]
for d in tops:
    subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=1777", "picoproc-test", d], check=True)
for d, fd in zip(keep, fds):
    os.makedirs(d, 0o755)
    subprocess.run(["mount", "--no-canonicalize", "--bind", f"/proc/{os.getpid()}/fd/{fd}", d], check=True)
p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120, cwd="/")
holders = set()
for d in keep:
    d = os.path.dirname(d)
    while d not in tops:
        holders.add(d)
        d = os.path.dirname(d)
left = []
for top in tops:
    for root, dirs, files in os.walk(top):
        dirs[:] = [n for n in dirs if os.path.join(root, n) not in keep]
        left += [q for q in (os.path.join(root, n) for n in dirs + files) if q not in holders]
print(json.dumps({"status": p.returncode, "stdout": p.stdout, "stderr": p.stderr, "left": left}))
"""

_WRITES_SCRATCH = ("echo a > /tmp/f && mkdir /tmp/d && echo b > /tmp/d/g && echo c > /dev/shm/s && "
                   "python3 -c 'import os, tempfile; os.memfd_create(\"m\"); tempfile.mkstemp()' && "
                   "cat /tmp/f /tmp/d/g /dev/shm/s")


@root_only
@pytest.mark.parametrize("who", ["root", pytest.param("unprivileged", marks=pytest.mark.unprivileged)])
def test_a_run_leaves_nothing_in_the_hosts_temporary_directories(who, request):
    """The guest's /tmp and /dev/shm are scratch that exists in no host
    directory, and the monitor itself makes nothing in the host's /tmp,
    /var/tmp or /dev/shm (nor in $TMPDIR): after a run that wrote files and
    directories there, all three are as empty as before it."""
    run = ["run", "--", "/bin/sh", "-c", _WRITES_SCRATCH]
    if who == "root":
        import picoproc

        env = {**os.environ, "TMPDIR": "/tmp"}
        cmd = [sys.executable, "-m", "picoproc", *run]
        code = [str(pathlib.Path(__file__).resolve().parent.parent), os.path.dirname(picoproc.__file__)]
    else:
        unpriv = request.getfixturevalue("unpriv_env")
        env = {**unpriv["env"], "TMPDIR": "/tmp"}
        cmd = [*unpriv["prefix"], unpriv["python"], "-m", "picoproc", *run]
        code = [str(unpriv["root"])]
    proc = subprocess.run(["unshare", "-m", "--propagation", "private", sys.executable, "-c", _IN_FRESH_TMP,
                           json.dumps([cmd, env]), *code],
                          capture_output=True, text=True, timeout=180, check=False)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert (out["status"], out["stdout"]) == (0, "a\nb\nc\n"), out["stderr"]
    assert out["left"] == [], f"left in the host's temporary directories: {out['left']}"
