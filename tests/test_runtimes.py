"""Real runtimes and everyday tools run inside a picoprocess with output equal
to native.

Each program in tests/programs/ exercises what that runtime's programs do
every day (threads, child processes, signals, timers, files, servers on the
loopback) and prints it in a fixed order.  It runs natively as the guest's
identity with the default manifest's environment (conftest.native_as_guest)
and inside, as root and with an unprivileged monitor (guest_runner): exit
status, stdout and stderr must be equal.

Tests marked xfail(strict=True) fail on purpose while the library OS or the
monitor lacks what they need; the marker names it and the error seen today.
When that is fixed the test passes, strict xfail turns that into a failure,
and whoever fixed it removes the marker.
"""

from __future__ import annotations

import hashlib
import http.server
import os
import shutil
import subprocess
import tempfile
import threading

import pytest
from conftest import native_as_guest

# Each test runs a whole runtime natively and inside (and the fixture builds
# the Go program): seconds each.
pytestmark = pytest.mark.slow

PROGRAMS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "programs")
PYTHON = "/usr/bin/python3"
TIMEOUT = 120.0


@pytest.fixture(scope="module")
def programs():
    """tests/programs copied to a directory every identity can read (the
    unprivileged monitor and the native run are uid 65534), with the Go
    program built there, statically."""
    d = tempfile.mkdtemp(prefix="picoproc-runtimes-")
    try:
        os.chmod(d, 0o755)
        for name in os.listdir(PROGRAMS):
            shutil.copy(os.path.join(PROGRAMS, name), d)
            os.chmod(os.path.join(d, name), 0o755 if name.endswith(".sh") else 0o644)
        go = shutil.which("go")
        if go is not None:
            env = dict(os.environ, CGO_ENABLED="0", GO111MODULE="off")
            built = subprocess.run([go, "build", "-o", os.path.join(d, "runtime_check"),
                                    os.path.join(d, "runtime_check.go")],
                                   env=env, capture_output=True, text=True, timeout=600, check=False)
            assert built.returncode == 0, built.stderr
            os.chmod(os.path.join(d, "runtime_check"), 0o755)
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def same_as_native(run, programs: str, argv: list[str], timeout: float = TIMEOUT, **overrides):
    """Runs argv natively as the guest's identity and inside (the programs
    directory shown at the same path), and asserts equal exit status,
    stdout and stderr.  Returns the run inside."""
    native = native_as_guest(argv, timeout=timeout)
    out, err = native.stdout.decode(), native.stderr.decode()
    assert native.returncode == 0, f"natively: {err[-3000:]}"
    volumes = [f"{programs}:{programs}", *overrides.pop("volumes", [])]
    inside = run(argv, timeout=timeout, volumes=volumes, **overrides)
    assert (inside.status, inside.stdout, inside.stderr) == (0, out, err), (
        inside.reason, inside.unsupported, inside.stderr[-3000:])
    return inside


# An unprivileged picoproc with no memory cgroup of its own limits memory
# with RLIMIT_AS, which counts address space a runtime reserves, not memory
# it uses (sandbox/spawn.py).
ADDRESS_SPACE_LIMIT = ("needs a memory limit that counts memory, not reserved address space, for an "
                       "unprivileged picoproc without a memory cgroup (the default 1G becomes RLIMIT_AS): ")


def xfail_when(request, param: str, reason: str) -> None:
    """Expects this test to fail (strictly) when guest_runner is ``param``."""
    if request.node.callspec.params.get("guest_runner") == param:
        request.applymarker(pytest.mark.xfail(strict=True, reason=reason))


def need(program: str) -> str:
    path = shutil.which(program)
    if path is None:
        pytest.skip(f"{program} is not installed (setup.sh installs it)")
    return path


# ---------------------------------------------------------------------------------------
# Runtimes
# ---------------------------------------------------------------------------------------


def test_go_static_binary(guest_runner, programs):
    """Goroutines, net/http on the loopback, os/exec, signals, tickers, files."""
    need("go")
    r = same_as_native(guest_runner, programs, [os.path.join(programs, "runtime_check")])
    assert "http 200 hello GET /b" in r.stdout and "ticks 5" in r.stdout


def test_node(request, guest_runner, programs):
    """fs, child_process, http on the loopback, worker threads, timers."""
    node = need("node")
    xfail_when(request, "unprivileged", ADDRESS_SPACE_LIMIT + "V8's worker threads fail with 'Fatal "
               "process OOM in Failed to reserve virtual memory for CodeRange'")
    r = same_as_native(guest_runner, programs, [node, os.path.join(programs, "runtime_check.js")])
    assert "workers 5999994 11999995 true" in r.stdout


def test_java_started_as_usr_bin_java(request, guest_runner, programs):
    """Threads and executors, NIO files, mapped files and a selector on the
    loopback, ProcessBuilder; started the way users start it."""
    need("java")
    xfail_when(request, "unprivileged", ADDRESS_SPACE_LIMIT + "the JVM fails with 'Could not allocate "
               "compressed class space: 1073741824 bytes'")
    r = same_as_native(guest_runner, programs,
                       ["/usr/bin/java", "-Xmx256m", os.path.join(programs, "RuntimeCheck.java")],
                       timeout=240)
    assert "nio echo pong" in r.stdout and "process got line arg 5" in r.stdout


def test_ruby_without_warnings(guest_runner, programs):
    """Threads, a queue and a mutex, backticks, system, popen, fork, files,
    a TCP server on the loopback, a signal handler; and no warnings."""
    ruby = need("ruby")
    r = same_as_native(guest_runner, programs, [ruby, os.path.join(programs, "runtime_check.rb")])
    assert r.stderr == ""


def test_perl(guest_runner, programs):
    """fork and waitpid, pipes from commands, system and backticks, files,
    a signal handler, a TCP server on the loopback."""
    perl = need("perl")
    r = same_as_native(guest_runner, programs, [perl, os.path.join(programs, "runtime_check.pl")])
    assert "fork 2 4 6 8" in r.stdout and "tcp hello perl" in r.stdout


def test_python_fork_futures_and_asyncio(guest_runner, programs):
    """multiprocessing with fork, a Manager, concurrent.futures with threads
    and processes, asyncio subprocesses, TCP and unix servers and signals."""
    r = same_as_native(guest_runner, programs,
                       [PYTHON, os.path.join(programs, "runtime_check.py"), "fork", "futures", "asyncio"])
    assert "multiprocessing fork 285" in r.stdout and "asyncio server" in r.stdout


def test_python_multiprocessing_spawn_and_forkserver(guest_runner, programs):
    """multiprocessing Pool, Queue and Process with the start methods that
    exec a fresh interpreter and share named semaphores in /dev/shm."""
    r = same_as_native(guest_runner, programs,
                       [PYTHON, os.path.join(programs, "runtime_check.py"), "forkserver", "spawn"])
    assert "multiprocessing spawn 285" in r.stdout


# ---------------------------------------------------------------------------------------
# Everyday tools
# ---------------------------------------------------------------------------------------

TOOLS = [
    "make",
    "ps",
    "top",
    "find",
    "xargs",
    "git",
    "tar",
]


@pytest.mark.parametrize("tool", TOOLS)
def test_everyday_tool(guest_runner, programs, tool):
    """make, ps, top, find -exec, xargs, git, tar as a shell script uses them
    (tests/programs/tools_check.sh)."""
    need(tool)
    r = same_as_native(guest_runner, programs, ["/bin/sh", os.path.join(programs, "tools_check.sh"), tool])
    assert r.stdout.strip()


# ---------------------------------------------------------------------------------------
# A download over a granted TCP connection, without curl
# ---------------------------------------------------------------------------------------

DOWNLOAD = r"""
import hashlib, sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=60) as r:
    body = r.read()
    print(r.status, r.headers["Content-Type"], len(body), hashlib.sha256(body).hexdigest())
"""


@pytest.fixture
def host_http_server():
    """An HTTP server on the host's 127.0.0.1 (port 0) serving one file."""
    payload = hashlib.sha256(b"picoproc").digest() * 40000  # 1.28 MB

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path != "/payload.bin":
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1], payload
    server.shutdown()
    server.server_close()
    thread.join(10)


def test_download_over_a_granted_tcp_connection(guest_runner, host_http_server):
    port, payload = host_http_server
    url = f"http://127.0.0.1:{port}/payload.bin"
    argv = [PYTHON, "-c", DOWNLOAD, url]
    native = native_as_guest(argv, timeout=TIMEOUT)
    assert native.returncode == 0, native.stderr.decode()
    expected = f"200 application/octet-stream {len(payload)} {hashlib.sha256(payload).hexdigest()}\n"
    assert native.stdout.decode() == expected
    inside = guest_runner(argv, timeout=TIMEOUT, net_connect=[f"127.0.0.1:{port}"])
    assert (inside.status, inside.stdout, inside.stderr) == (0, expected, ""), inside.reason
    # Without the grant the host's server is out of reach: 127.0.0.1 is the guest's own loopback.
    refused = guest_runner(argv, timeout=TIMEOUT)
    assert refused.status == 1 and "Connection refused" in refused.stderr, refused.stderr
