"""End-to-end runs through the Python API and the CLI (docs/ARCHITECTURE.md,
"The interface: CLI, API and result").

Real programs under the embedded default manifest: how a run ends (exit code,
signal, which limit), what it used, its audit, and that the manifest's grants
and refusals hold.  The unprivileged half runs the CLI as uid 65534.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys

import psutil
import pytest
from picoproc.api import Sandbox, SandboxError, resolve_guest_program
from picoproc.manifest import Limits, Mount, apply_overrides, default_manifest

pytestmark = pytest.mark.root

TIMEOUT = 60
BUSYBOX = "/bin/busybox"


def _children() -> set[int]:
    return {p.pid for p in psutil.Process().children(recursive=True)}


@pytest.fixture(autouse=True)
def no_leftover_processes():
    before = _children()
    yield
    left = _children() - before
    assert not left, f"processes left behind: {left}"


def target(record: dict) -> str | None:
    """The guest path an audit record names (open records carry a file: URI)."""
    uri = record.get("uri")
    if uri and uri.startswith("file:"):
        return uri[len("file:"):]
    return record.get("path")


def run(argv, manifest=None, **kw):
    kw.setdefault("capture", True)
    return Sandbox(manifest).run(argv, **kw)


def test_python_runs_under_the_default_manifest():
    result = run(["python3", "-c", "import json, sys; print(json.dumps({'v': sys.version_info[0]}))"])
    assert result.stdout == b'{"v": 3}\n', result.stderr
    assert (result.exit_code, result.signal, result.limit) == (0, None, None)
    assert result.status == 0 and result.reason == "exited with status 0"
    assert result.calls["mediated"] > 0  # python opened its modules through the monitor


def test_exit_code_and_fatal_signal_are_the_guests():
    assert run(["/bin/sh", "-c", "exit 7"]).status == 7
    killed = run(["/bin/sh", "-c", "kill -TERM $$"])
    assert killed.signal == 15 and killed.status == 143 and "SIGTERM" in killed.reason


def test_stdin_reaches_the_guest():
    r, w = os.pipe()
    os.write(w, b"through the pipe\n")
    os.close(w)
    try:
        result = run(["/bin/cat"], stdin=r)
    finally:
        os.close(r)
    assert result.stdout == b"through the pipe\n"


def test_secrets_are_refused_and_audited():
    result = run(["/bin/cat", "/etc/shadow"])
    assert result.exit_code != 0
    assert b"hunter" not in result.stdout
    shadow = [d for d in result.denials if target(d) == "/etc/shadow"]
    assert shadow, result.audit
    assert shadow[0]["errno"] != 0 and shadow[0]["call"] == "open"


def test_allowed_calls_are_counted_and_audited_only_for_a_sink():
    """Allowed calls are counted in C; their audit records are made only when
    an audit sink asks for them.  The counts are exact either way."""
    argv = ["/bin/cat", "/etc/hostname", "/etc/shadow", "/nonexistent"]
    quiet = run(argv)
    got: list[dict] = []
    loud = Sandbox(audit=got.extend).run(argv, capture=True, timeout=TIMEOUT)
    for r in (quiet, loud):
        c = r.counts
        assert c["mediated"] == c["mediated_allowed"] + c["mediated_denied"] + c["mediated_errors"]
        assert c["mediated_allowed"] > 0 and c["mediated_denied"] == 1 and c["mediated_errors"] >= 1
    assert quiet.counts == loud.counts
    # Without a sink: the refused and failed calls, not the allowed ones.
    assert {r["decision"] for r in quiet.audit} == {"deny", "error"}
    assert len(quiet.audit) == quiet.counts["mediated"] - quiet.counts["mediated_allowed"]
    # With one: every call, and the sink saw each record once.
    assert len(loud.audit) == loud.counts["mediated"] and got == loud.audit
    assert any(r["decision"] == "allow" and target(r) == "/etc/hostname" for r in loud.audit)


def test_system_directories_are_read_only_and_scratch_is_private():
    first = run(["/bin/sh", "-c", "echo canary > /tmp/mine && cat /tmp/mine; echo x > /usr/escape"])
    assert first.stdout == b"canary\n"
    assert b"Read-only file system" in first.stderr
    assert not os.path.exists("/usr/escape")
    second = run(["/bin/sh", "-c", "ls -A /tmp"])
    assert second.stdout == b"", "scratch must be empty at the start of every run"


def test_no_network_by_default():
    import socket

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    listener.setblocking(False)
    port = listener.getsockname()[1]
    try:
        code = (
            "import socket,sys\n"
            "try:\n"
            f"    socket.create_connection(('127.0.0.1', {port}), timeout=5)\n"
            "    print('connected')\n"
            "except OSError as e:\n"
            "    print('refused', e.errno)\n"
        )
        result = run(["python3", "-c", code])
        assert result.stdout.startswith(b"refused"), (result.stdout, result.stderr)
        with pytest.raises(BlockingIOError):
            listener.accept()  # nothing ever reached the host listener
    finally:
        listener.close()


def test_wall_time_limit_ends_the_run():
    result = run(["/bin/sh", "-c", "while :; do :; done"], timeout=1.0)
    assert result.limit == "wall_time"
    assert result.signal == 9 and "wall-time" in result.reason


def test_output_limit_ends_the_run():
    m = apply_overrides(default_manifest(), output="64K")
    result = run([BUSYBOX, "yes", "spam"], m)
    assert result.limit == "output"
    assert result.output_bytes == 64 * 1024
    assert len(result.stdout) == 64 * 1024


def test_relayed_output_and_its_limit(tmp_path):
    """Relayed (not captured) output reaches the host fds as written, and the
    output limit holds there too: past it the run ends and nothing more is
    relayed."""
    out, err = tmp_path / "out", tmp_path / "err"
    with open(out, "wb") as o, open(err, "wb") as e:
        result = Sandbox().run(["/bin/sh", "-c", "echo to-out; echo to-err >&2"],
                               stdout=o.fileno(), stderr=e.fileno())
    assert result.exit_code == 0 and result.stdout is None and result.stderr is None
    assert out.read_bytes() == b"to-out\n" and err.read_bytes() == b"to-err\n"
    assert result.output_bytes == len(b"to-out\nto-err\n")
    # Nothing written: nothing relayed, the run ends as usual.
    with open(out, "wb") as o:
        assert Sandbox().run(["/bin/true"], stdout=o.fileno()).exit_code == 0
    assert out.read_bytes() == b""
    m = apply_overrides(default_manifest(), output="64K")
    with open(out, "wb") as o:
        limited = Sandbox(m).run([BUSYBOX, "yes", "spam"], stdout=o.fileno())
    assert limited.limit == "output" and limited.output_bytes == 64 * 1024
    assert out.stat().st_size == 64 * 1024


def test_memory_limit_is_named():
    m = apply_overrides(default_manifest(), memory="64M")
    result = run(["python3", "-c", "x = bytearray(400 << 20); print('allocated')"], m)
    assert b"allocated" not in result.stdout
    assert result.status != 0
    if "cgroup" in result.enforcement.get("memory", ""):
        # A cgroup memory limit: the kernel's OOM killer ends it, named as such.
        assert result.limit == "memory", (result.reason, result.stderr)
    else:
        # RLIMIT_AS: the allocation itself fails inside the guest.
        assert b"MemoryError" in result.stderr


def test_pids_limit_contains_a_fork_loop():
    m = apply_overrides(default_manifest(), pids="16")
    script = "i=0; while [ $i -lt 64 ]; do sleep 5 & i=$((i+1)); done 2>/dev/null; echo spawned; kill 0"
    result = run(["/bin/sh", "-c", script], m, timeout=30)
    assert result.limit != "wall_time"
    # The shell hits the limit (fork fails) long before 64 children.
    assert b"spawned" in result.stdout or result.status != 0


def test_audit_jsonl_and_json_result_from_the_cli(tmp_path):
    audit, result_file = tmp_path / "audit.jsonl", tmp_path / "result.json"
    proc = subprocess.run(
        [sys.executable, "-m", "picoproc", "run", "--audit", str(audit), "--json", str(result_file),
         "--", "/bin/cat", "/etc/hostname", "/etc/shadow"],
        capture_output=True, timeout=TIMEOUT, check=False,
    )
    records = [json.loads(line) for line in audit.read_text().splitlines()]
    assert any(target(r) == "/etc/shadow" and r["decision"] == "deny" for r in records)
    assert any(target(r) == "/etc/hostname" and r["decision"] == "allow" for r in records)
    for r in records:
        assert {"time_ns", "pid", "call", "decision", "errno"} <= r.keys()
    doc = json.loads(result_file.read_text())
    assert doc["exit_code"] == proc.returncode == 1
    assert doc["counts"]["mediated_denied"] >= 1
    assert doc["reason"] == "exited with status 1"


def test_cli_default_manifest_main_job():
    proc = subprocess.run([sys.executable, "-m", "picoproc", "run", "--", "python3", "-c", "print(1)"],
                          capture_output=True, timeout=TIMEOUT, check=False)
    assert (proc.returncode, proc.stdout) == (0, b"1\n"), proc.stderr


def test_cli_errors_are_one_line(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[[mount]]\nguest = '/x'\nhots = '/usr'\n")
    for args, needle in (
        (["--manifest", str(bad), "--", "/bin/true"], "mount[0].hots"),
        (["--", "no-such-program-anywhere"], "not found"),
        (["--memory", "12Q", "--", "/bin/true"], "memory"),
        (["--backend", "no-such-backend", "--", "/bin/true"], "no-such-backend"),
    ):
        proc = subprocess.run([sys.executable, "-m", "picoproc", "run", *args],
                              capture_output=True, text=True, timeout=TIMEOUT, check=False)
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode != 0 and len(lines) == 1 and needle in lines[0], proc.stderr
        assert "Traceback" not in proc.stderr


@pytest.mark.unit
def test_program_resolution_uses_the_guest_view():
    m = default_manifest()
    assert resolve_guest_program(m, "sh").endswith("/sh")
    assert resolve_guest_program(m, "/opt/x") == "/opt/x"
    with pytest.raises(SandboxError, match="not found"):
        resolve_guest_program(m, "definitely-not-a-program")
    no_path = dataclasses.replace(m, env=(("PATH", "/nowhere"),))
    with pytest.raises(SandboxError):
        resolve_guest_program(no_path, "sh")


def test_raw_mode_through_the_api(guest_bin):
    m = dataclasses.replace(default_manifest(), limits=Limits())
    result = Sandbox(m, raw=True).run([str(guest_bin / "hello")], capture=True)
    assert result.stdout == b"hello from a picoprocess\n" and result.mode == "raw"


def test_many_runs_share_one_monitor_and_leak_no_fds():
    def fds():
        return set(os.listdir("/proc/self/fd"))

    run(["/bin/true"])  # the shared monitor is up
    before = fds()
    for _ in range(5):
        assert run(["/bin/sh", "-c", "cat /etc/hostname >/dev/null; echo ok"]).stdout == b"ok\n"
    assert fds() == before


def test_signals_that_reach_the_monitor_thread_never_lose_an_answer():
    # A process-wide signal may land on the monitor's loop thread (any
    # thread that does not block it).  Were it to interrupt the loop while
    # it hands the guest an opened fd, the guest's open would return 0 with
    # nothing installed: reads then fail with EBADF.  Here every thread of
    # the monitor is sent a handled signal, over and over, while a guest
    # opens files.
    import signal
    import threading

    run(["/bin/true"])  # the shared monitor is up
    loops = [t for t in threading.enumerate() if t.name == "picoproc-monitor"]
    assert loops
    stop = threading.Event()
    sent = 0

    def storm():
        nonlocal sent
        while not stop.is_set():
            for t in loops:
                signal.pthread_kill(t.ident, signal.SIGWINCH)
                sent += 1

    # SIGWINCH: its default is to ignore it, so putting the default back
    # drops any still pending on a thread that blocks it.
    old = signal.signal(signal.SIGWINCH, lambda signo, frame: None)
    stormer = threading.Thread(target=storm)
    stormer.start()
    try:
        r = run(["/bin/sh", "-c", "for i in $(seq 200); do cat /etc/hostname >/dev/null || echo lost; done; echo done"],
                timeout=TIMEOUT)
    finally:
        stop.set()
        stormer.join()
        signal.signal(signal.SIGWINCH, old)
    assert sent > 100  # (the storm really ran)
    assert (r.exit_code, r.stdout, r.stderr) == (0, b"done\n", b"")


def test_cli_as_an_unprivileged_user(unpriv_env):
    env = dict(unpriv_env["env"])
    proc = subprocess.run(
        [*unpriv_env["prefix"], unpriv_env["python"], "-m", "picoproc", "run", "--",
         "python3", "-c", "import os; print(os.getuid(), open('/etc/hostname').read() != '')"],
        capture_output=True, timeout=TIMEOUT, env=env, cwd="/", check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == b"65534 True\n"
    shadow = subprocess.run(
        [*unpriv_env["prefix"], unpriv_env["python"], "-m", "picoproc", "run", "--", "/bin/cat", "/etc/shadow"],
        capture_output=True, timeout=TIMEOUT, env=env, cwd="/", check=False,
    )
    assert shadow.returncode == 1 and shadow.stdout == b""


def test_root_shows_only_the_mount_points_and_no_exec_dirs_are_searchable():
    result = run(["/bin/sh", "-c", "ls -A /; cd / && cd /etc && pwd"])
    names = result.stdout.decode().split()
    assert names[-1] == "/etc", result.stderr
    listed = set(names[:-1])
    m = default_manifest()
    expected = {p.strip("/").split("/")[0] for p in [x.guest for x in m.mounts] + [t.guest for t in m.tmpfs]}
    assert listed == expected
    assert not {"root", "home", "proc"} & listed
    # The skeleton is read-only: nothing can be created beside the mounts.
    made = run(["/bin/sh", "-c", "mkdir /newdir"])
    assert made.status != 0


@pytest.mark.parametrize("path", [
    "/proc/self/cwd/../../../../etc/hostname",
    "/dev/../../etc/hostname",
    "/proc/../etc/hostname",
    "/proc/self/fd/../../../../etc/hostname",
])
def test_dotdot_out_of_the_library_os_views_is_a_plain_path(path):
    """`..` climbing out of /proc or /dev lands on an ordinary guest path that
    the monitor resolves (regression: the library OS crashed with SIGSEGV)."""
    result = run(["/bin/cat", path])
    assert result.signal is None, result.reason
    with open("/etc/hostname", "rb") as f:
        assert result.stdout == f.read()


def test_hidden_aliases_follow_a_host_symlink_changed_between_runs(tmp_path):
    """A hidden path is also hidden where another mount shows its host target.
    That target is resolved at every run, not remembered from an earlier one:
    a symlink retargeted between two runs of one monitor must hide the new
    target (regression: a per-process cache kept hiding the old one and
    showed the secret under its new name).  The absolute host link text is
    nothing in the guest's view, so only the alias can hide it."""
    data, other = tmp_path / "data", tmp_path / "other"
    data.mkdir()
    other.mkdir()
    (other / "a").write_text("secret-a\n")
    (other / "b").write_text("secret-b\n")
    (data / "secret").symlink_to(other / "a")
    base = default_manifest()
    m = dataclasses.replace(
        base,
        mounts=(*base.mounts, Mount("/data", str(data)), Mount("/other", str(other))),
        hidden=(*base.hidden, "/data/secret"),
    )
    sandbox = Sandbox(m)
    first = sandbox.run(["/bin/cat", "/other/a", "/other/b"], capture=True)
    assert first.stdout == b"secret-b\n", first.stderr
    (data / "secret").unlink()
    (data / "secret").symlink_to(other / "b")
    second = sandbox.run(["/bin/cat", "/other/a", "/other/b"], capture=True)
    assert second.stdout == b"secret-a\n", second.stderr
    assert [target(d) for d in second.denials] == ["/other/b"]


@pytest.mark.unit
def test_alias_resolution_matches_realpath(tmp_path):
    """The per-build resolver behind hidden-path aliases gives exactly
    os.path.realpath's answers: relative and absolute links, '..' after a
    link, dangling links, missing components, a file in the middle, loops."""
    from picoproc.fspolicy import _Resolver

    root = tmp_path.resolve()
    (root / "real" / "sub").mkdir(parents=True)
    (root / "file").write_text("x")
    links = {"rel": "real/sub", "abs": str(root / "real"), "up": "real/sub/../..",
             "dangling": "/nonexistent/target", "loop1": "loop2", "loop2": "loop1",
             "intoloop": "loop1/x", "self": ".", "viafile": "file/inside"}
    for name, text in links.items():
        (root / name).symlink_to(text)
    rests = ["rel", "rel/x/y", "abs/sub", "up/real", "dangling", "dangling/more", "loop1",
             "loop1/a/b", "intoloop/c", "self/self/rel", "viafile", "file/x/y", "missing/a/b",
             "rel/../../file", "real/./sub/", "..", "../..", "."]
    resolver = _Resolver()  # one for all, as in a policy build
    for rest in rests:
        expected = os.path.realpath(os.path.join(root, rest))
        assert resolver.realpath(rest, str(root)) == expected, rest
        assert _Resolver().realpath(os.path.join(root, rest)) == expected, rest
