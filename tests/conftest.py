"""Shared fixtures for picoproc's test suites.

* ``repo_root``      the source tree (a pathlib.Path).
* ``guest_bin``      builds tests/guests once per session (``make -C tests/guests``)
                     and returns the directory of the freestanding guest binaries.
* ``picoproc_exe``   the installed ``picoproc`` console script.
* ``run_picoproc``   runs that script as a subprocess, always with a timeout.
* ``raw_run``        runs a guest through the Python API (picoproc.raw.spawn_raw)
                     and waits for it with a timeout: a hung guest fails the test
                     instead of hanging the suite (also importable as
                     ``conftest.run_raw_guest`` for module-scoped fixtures).
* ``wait_with_timeout(pid, timeout)``  waitpid through a pidfd that kills and
                     reaps the process instead of waiting forever.
* ``native_as_guest(argv)``  the oracle for "output equal to native": argv on
                     the host as the guest's identity (nobody when root), in a
                     fresh empty directory with the default manifest's environment.
* ``guest_runner``   parametrized "root" / "unprivileged": runs argv in a
                     picoprocess through the Python API, with manifest flags
                     (``volumes=[...]``, ``net_connect=[...]``...) on the default
                     manifest; the unprivileged one is a monitor running as uid
                     65534 (``unpriv_env``).

Every wait here has a timeout: a bug must fail a test, never hang CI.

Markers (registered in pyproject.toml, enforced by --strict-markers; README.md
"Testing" says how to select with them): every test is of exactly one kind,
``unit`` (no process, no guest: seconds for all of them), ``root`` (runs
guests, peers or probes, as the root half of the suite) or ``unprivileged``
(a monitor running as uid 65534); ``slow`` and ``peers`` are added where they
apply.  A module states its kind once (``pytestmark``); a test's own kind
marker replaces its module's; a ``guest_runner`` test takes the kind of its
parameter, and one using ``unpriv_env`` is ``unprivileged``.  tests/test_markers.py fails when a test has no kind.
"""

from __future__ import annotations

import dataclasses
import os
import contextlib
import pathlib
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import pytest

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
GUESTS_DIR = REPO_ROOT / "tests" / "guests"
# Generous: a guest that runs longer than this is hung, not slow.
GUEST_TIMEOUT = 30.0


@pytest.fixture(scope="session")
def repo_root() -> pathlib.Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def guest_bin() -> pathlib.Path:
    """Builds every tests/guests/*.c (once per session) and returns bin/."""
    if shutil.which("make") is None or shutil.which(os.environ.get("CC", "gcc")) is None:
        pytest.skip("make and a C compiler are needed to build the test guests")
    proc = subprocess.run(
        ["make", "-s", "-C", str(GUESTS_DIR)],
        capture_output=True, text=True, timeout=300, check=False,
    )
    if proc.returncode != 0:
        pytest.fail(f"building the test guests failed:\n{proc.stdout}{proc.stderr}", pytrace=False)
    return GUESTS_DIR / "bin"


@pytest.fixture(scope="session")
def picoproc_exe() -> str:
    """The console script installed with the package (next to this interpreter
    first, so a pyenv shim or another installation on PATH is not picked up)."""
    beside = pathlib.Path(sys.executable).parent / "picoproc"
    if beside.exists():
        return str(beside)
    found = shutil.which("picoproc")
    if found is None:
        pytest.fail("the picoproc console script is not installed (run ./setup.sh)", pytrace=False)
    return found


@pytest.fixture
def run_picoproc(picoproc_exe):
    """run_picoproc(*args, stdin=None, env=None, cwd=None, timeout=GUEST_TIMEOUT)
    -> subprocess.CompletedProcess with text stdout/stderr."""

    def run(*args, stdin=subprocess.DEVNULL, env=None, cwd=None, timeout=GUEST_TIMEOUT,
            preexec_fn=None):
        return subprocess.run(
            [picoproc_exe, *map(str, args)],
            stdin=stdin, capture_output=True, text=True, env=env, cwd=cwd,
            timeout=timeout, preexec_fn=preexec_fn, check=False,
        )

    return run


@dataclasses.dataclass(frozen=True)
class GuestRun:
    """What a guest run through the Python API did."""

    pid: int
    exit_code: int | None
    signal: int | None
    stdout: str
    stderr: str

    @property
    def status(self) -> int:
        return self.exit_code if self.signal is None else 128 + self.signal


def read_line_of(proc: subprocess.Popen, timeout: float = GUEST_TIMEOUT) -> str:
    """The next line of a text-mode Popen's stdout; kills the process and
    raises TimeoutError when none comes within timeout."""
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    if not ready:
        proc.kill()
        proc.wait()
        raise TimeoutError("no line from the program")
    return proc.stdout.readline()


def signal_when_ready(proc: subprocess.Popen, *steps, timeout: float = 60.0) -> tuple[str, str]:
    """Waits for the program's "ready" line, then for each step sends it
    (a signal) or expects it (a line of stdout), and returns the rest of
    stdout and stderr once the process has ended.  The process never
    outlives the call."""
    try:
        assert read_line_of(proc, timeout) == "ready\n"
        for step in steps:
            if isinstance(step, str):
                assert read_line_of(proc, timeout) == step
            else:
                proc.send_signal(step)
        return proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def wait_with_timeout(pid: int, timeout: float) -> int:
    """waitpid(pid) that gives up after ``timeout`` seconds: the process is then
    killed, reaped, and TimeoutError raised.  Returns the raw wait status."""
    pidfd = os.pidfd_open(pid)
    try:
        poller = select.poll()
        poller.register(pidfd, select.POLLIN)
        if not poller.poll(timeout * 1000):
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            raise TimeoutError(f"pid {pid} still running after {timeout} s (killed)")
        _, status = os.waitpid(pid, 0)
        return status
    finally:
        os.close(pidfd)


def _read_all(f) -> str:
    f.seek(0)
    return f.read().decode("utf-8", "replace")


def run_raw_guest(argv, env=None, stdin=None, timeout=GUEST_TIMEOUT) -> GuestRun:
    """Runs argv through picoproc.raw.spawn_raw (the same path as
    ``picoproc run --raw``) and waits at most ``timeout`` seconds (then the
    run is killed and TimeoutError raised).  stdout and stderr go to temporary
    files (a pipe could fill up and deadlock); stdin is /dev/null unless an fd
    is given."""
    from picoproc import raw

    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, \
            open(os.devnull, "rb") as devnull:
        stdin_fd = devnull.fileno() if stdin is None else stdin
        spawned = raw.spawn_raw([str(a) for a in argv], env or {},
                                (stdin_fd, out.fileno(), err.fileno()))
        result = raw.wait_raw_or_kill(spawned.pid, timeout)
        return GuestRun(spawned.pid, result.exit_code, result.signal,
                        _read_all(out), _read_all(err))


@pytest.fixture
def raw_run():
    """raw_run(argv, env=None, stdin=None, timeout=GUEST_TIMEOUT) -> GuestRun
    (see run_raw_guest)."""
    return run_raw_guest


_REPO = pathlib.Path(__file__).resolve().parent.parent
UNPRIV_TIMEOUT = 20.0


@pytest.fixture(scope="session")
def unpriv_env(guest_bin, tmp_path_factory):
    """The unprivileged half of the suite: a world-readable copy of the package
    (monitor, ABI, library OS with its loader), the spawn helper and the guests,
    and the command prefix that runs /usr/bin/python3 as uid/gid 65534.

    Root's own Python cannot serve: it lives under /root (mode 0700).  Copies,
    not symlinks, so this works wherever the checkout is."""
    if not (os.geteuid() == 0):
        pytest.skip("the suite already runs unprivileged: the in-process tests cover that path")
    python = "/usr/bin/python3"
    if not os.access(python, os.X_OK) or shutil.which("setpriv") is None:
        pytest.skip("needs /usr/bin/python3 and setpriv (util-linux)")
    probe = subprocess.run(
        [python, "-c", "import _cffi_backend, sys; assert sys.version_info >= (3, 11)"],
        capture_output=True,
        check=False,
        timeout=UNPRIV_TIMEOUT,
    )
    if probe.returncode:
        pytest.skip(
            "/usr/bin/python3 lacks cffi (apt package python3-cffi-backend) or is older than 3.11"
        )
    root = pathlib.Path(tempfile.mkdtemp(prefix="picoproc-unpriv-"))
    try:
        root.chmod(0o755)
        ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
        shutil.copytree(_REPO / "sandbox", root / "picoproc", ignore=ignore)
        shutil.copytree(_REPO / "abi", root / "picoproc" / "abi", ignore=ignore)
        # The library OS package, with its built loader image.
        shutil.copytree(_REPO / "libos", root / "picoproc" / "libos", ignore=ignore)
        shutil.copytree(_REPO / "benchmarks", root / "picoproc" / "bench", ignore=ignore)
        shutil.copytree(guest_bin, root / "guests")
        shutil.copy(_REPO / "tests" / "spawn_monitor_helper.py", root / "helper.py")
        for dirpath, dirnames, filenames in os.walk(root):
            for d in dirnames:
                os.chmod(os.path.join(dirpath, d), 0o755)
            for f in filenames:
                p = os.path.join(dirpath, f)
                os.chmod(p, 0o755 if os.access(p, os.X_OK) else 0o644)
        prefix = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all"]
        userns = subprocess.run(
            prefix + ["unshare", "-U", "true"], capture_output=True, check=False, timeout=UNPRIV_TIMEOUT
        )
        if userns.returncode:
            pytest.skip("unprivileged user namespaces are disabled on this machine")
        yield {
            "root": root,
            "prefix": prefix,
            "python": python,
            "env": {"PYTHONPATH": str(root), "PYTHONDONTWRITEBYTECODE": "1", "PATH": os.defpath},
        }
    finally:
        shutil.rmtree(root, ignore_errors=True)


@contextlib.contextmanager
def public_and_secret_tree(prefix: str):
    """A world-readable temporary tree with pub/x.txt ("PUBLIC") and
    sec/x.txt ("SECRET"): the shape the mediation tests hide /sec in."""
    with tempfile.TemporaryDirectory(prefix=prefix) as d:
        root = pathlib.Path(d)
        os.chmod(root, 0o755)
        for sub, text in (("pub", "PUBLIC"), ("sec", "SECRET")):
            (root / sub).mkdir(mode=0o755)
            (root / sub / "x.txt").write_text(text)
            os.chmod(root / sub / "x.txt", 0o644)
        yield root

def picoproc_cgroup_dirs(owner: int | None = None) -> set[str]:
    """Run cgroups whose name says they belong to ``owner`` (default: this process)."""
    from picoproc import cgroups

    owner = os.getpid() if owner is None else owner
    found = set()
    unified, v1 = cgroups._mounts()
    for mount in [*v1.values(), *([unified] if unified else [])]:
        for dirpath, dirnames, _ in os.walk(mount):
            for d in dirnames:
                if d.startswith(f"picoproc-{owner}-"):
                    found.add(os.path.join(dirpath, d))
    return found


def _live_children(exclude: set[int]) -> list:
    import psutil

    out = []
    for p in psutil.Process().children(recursive=True):
        try:
            if p.pid not in exclude and p.status() != psutil.STATUS_ZOMBIE:
                out.append(p)
        except psutil.NoSuchProcess:
            pass
    return out


@pytest.fixture(autouse=True)
def no_run_left_behind():
    """Invariant 6 (docs/ARCHITECTURE.md), after every test of the suite: no
    process, run cgroup or mount left behind by whatever the test ran
    (picoproc or a peer)."""
    import psutil

    before_children = {p.pid for p in psutil.Process().children(recursive=True)}
    before_mounts = pathlib.Path("/proc/self/mountinfo").read_text()
    yield
    deadline = time.monotonic() + 5.0
    left = _live_children(before_children)
    while left and time.monotonic() < deadline:
        # A peer's own helper may still be exiting after its result came
        # back: wait on those processes (bounded), never sleep blindly.
        psutil.wait_procs(left, timeout=0.2)
        left = _live_children(before_children)
    left = sorted(p.pid for p in left)
    assert not left, f"processes left behind: {left}"
    assert picoproc_cgroup_dirs() == set(), "run cgroups left behind"
    assert pathlib.Path("/proc/self/mountinfo").read_text() == before_mounts, "mounts changed"


# ---------------------------------------------------------------------------------------
# Output equal to native, run as the same identity, as root and unprivileged
# ---------------------------------------------------------------------------------------

GUEST_UID = 65534  # nobody: the identity a root monitor gives its guests


def native_as_guest(argv, timeout: float = 60.0, stdin=subprocess.DEVNULL) -> subprocess.CompletedProcess:
    """argv on the host as the identity a guest runs under (nobody when this
    process is root, else this user), in a fresh empty directory that is its
    cwd, HOME and TMPDIR, with the default manifest's environment.  The
    directory is that identity's, mode 0700, as the guest's scratch /tmp is
    (programs check: Ruby warns about a world-writable TMPDIR)."""
    from picoproc.manifest import default_manifest

    prefix = []
    if os.geteuid() == 0:
        prefix = ["setpriv", f"--reuid={GUEST_UID}", f"--regid={GUEST_UID}", "--clear-groups"]
    env = dict(default_manifest().env)
    with tempfile.TemporaryDirectory(prefix="picoproc-native-") as d:
        if os.geteuid() == 0:
            os.chown(d, GUEST_UID, GUEST_UID)
        os.chmod(d, 0o700)
        env.update(HOME=d, TMPDIR=d)
        return subprocess.run([*prefix, *argv], cwd=d, env=env, stdin=stdin, capture_output=True,
                              timeout=timeout, check=False)



def assert_same_as_native(run, argv, timeout: float = 60.0, **overrides):
    """argv natively as the guest's identity (native_as_guest) and inside
    through ``run`` (a guest_runner): both succeed with the same stdout.
    Returns the run inside."""
    native = native_as_guest(argv, timeout=timeout)
    assert native.returncode == 0, native.stderr.decode()
    inside = run(argv, timeout=timeout, **overrides)
    assert inside.status == 0, (inside.reason, inside.stderr, inside.unsupported)
    assert inside.stdout == native.stdout.decode(), inside.stderr
    return inside

# Runs one picoprocess through the Python API and prints its outcome as JSON:
# the same code for an in-process root monitor and an unprivileged one.
_GUEST_RUNNER = r"""
import json, sys
from picoproc.api import Sandbox
from picoproc.manifest import apply_overrides, default_manifest

spec = json.loads(sys.argv[1])
manifest = apply_overrides(default_manifest(), **spec["overrides"])
r = Sandbox(manifest).run(spec["argv"], capture=True, timeout=spec["timeout"])
print(json.dumps({"status": r.status, "reason": r.reason, "stdout": r.stdout.decode("utf-8", "replace"),
                  "stderr": r.stderr.decode("utf-8", "replace"), "unsupported": r.unsupported,
                  "audit": r.audit}))
"""


@dataclasses.dataclass(frozen=True)
class PicoRun:
    status: int
    reason: str
    stdout: str
    stderr: str
    unsupported: list
    audit: list


@pytest.fixture(params=["root", "unprivileged"])
def guest_runner(request):
    """guest_runner(argv, timeout=60, **overrides) -> PicoRun: argv in a
    picoprocess under the default manifest plus apply_overrides(**overrides)
    (``volumes=["/host/dir:/g"]``, ``net_connect=["127.0.0.1:80"]``...).  As
    root: this process is the monitor; unprivileged: a monitor process
    running as uid 65534 (the paths it is given must be readable by it)."""
    import json

    def spec_of(argv, timeout, overrides):
        return json.dumps({"argv": [str(a) for a in argv], "timeout": timeout,
                           "overrides": {k: [str(x) for x in v] if isinstance(v, (list, tuple)) else str(v)
                                         for k, v in overrides.items()}})

    if request.param == "root":
        if os.geteuid() != 0:
            pytest.skip("not root: the unprivileged case covers this process")

        def run(argv, timeout: float = 60.0, **overrides) -> PicoRun:
            from picoproc.api import Sandbox
            from picoproc.manifest import apply_overrides, default_manifest

            manifest = apply_overrides(default_manifest(), **overrides)
            r = Sandbox(manifest).run([str(a) for a in argv], capture=True, timeout=timeout)
            return PicoRun(r.status, r.reason, r.stdout.decode("utf-8", "replace"),
                           r.stderr.decode("utf-8", "replace"), r.unsupported, r.audit)

        return run
    env = request.getfixturevalue("unpriv_env")

    def run_unprivileged(argv, timeout: float = 60.0, **overrides) -> PicoRun:
        proc = subprocess.run(
            [*env["prefix"], env["python"], "-c", _GUEST_RUNNER, spec_of(argv, timeout, overrides)],
            capture_output=True, env=env["env"], cwd="/", timeout=timeout + 30, check=False,
        )
        assert proc.returncode == 0, proc.stderr.decode("utf-8", "replace")
        return PicoRun(**json.loads(proc.stdout))

    return run_unprivileged


# ---------------------------------------------------------------------------------------
# Markers: what kind of test each one is, for -m selection
# ---------------------------------------------------------------------------------------

KINDS = ("unit", "root", "unprivileged")
# Tests collected without a kind marker (test_markers.py asserts there are none).
UNKINDED: list[str] = []


class SpawnInUnitTest(AssertionError):
    pass


def _kind_of(item) -> str | None:
    """The test's own kind marker, else its guest_runner parameter, else
    "unprivileged" when it uses unpriv_env, else its class's or module's."""
    own = [m.name for m in item.own_markers if m.name in KINDS]
    if own:
        return own[0]
    fixtures = getattr(item, "fixturenames", ())
    if "guest_runner" in fixtures and hasattr(item, "callspec"):
        return item.callspec.params.get("guest_runner")
    if "unpriv_env" in fixtures:
        return "unprivileged"
    return next((m.name for m in item.iter_markers() if m.name in KINDS), None)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """Gives every test exactly one kind (``_kind_of``) before -m deselects:
    the kind is moved onto the test itself and taken off its parents, since
    the mark plugin's deselection, which runs after this, reads the markers
    of the test and of all its parents."""
    parents = set()
    for item in items:
        kind = _kind_of(item)
        if kind is None:
            UNKINDED.append(item.nodeid)
            continue
        item.own_markers[:] = [m for m in item.own_markers if m.name not in KINDS]
        item.add_marker(kind)
        parents.update(item.listchain()[:-1])
    for node in parents:
        node.own_markers[:] = [m for m in node.own_markers if m.name not in KINDS]


def _forbid_in_unit_tests(event, args):
    if _unit_test_running and event in ("subprocess.Popen", "os.fork", "os.forkpty", "os.posix_spawn",
                                        "os.system", "os.exec"):
        raise SpawnInUnitTest(f"a unit test started a process ({event}): mark it root")


_unit_test_running = False
sys.addaudithook(_forbid_in_unit_tests)


@pytest.fixture(autouse=True)
def unit_tests_start_no_process(request, monkeypatch):
    """A test marked unit must not start a process or spawn a guest: that is
    what keeps ``-m unit`` at seconds.  Python's own process creation is
    caught by an audit hook, the guest spawn at its one entry point."""
    global _unit_test_running
    if request.node.get_closest_marker("unit") is None:
        yield
        return
    from picoproc import spawn

    def refuse(*_args, **_kwargs):
        raise SpawnInUnitTest("a unit test spawned a picoprocess: mark it root")

    monkeypatch.setattr(spawn, "_in_long_lived_thread", refuse)
    _unit_test_running = True
    try:
        yield
    finally:
        _unit_test_running = False


def pytest_addoption(parser):
    parser.addoption("--compat-full", action="store_true",
                     help="test_compat_bench: compare the 30 modules of picoproc bench compat's default list "
                          "(about 11 minutes on two CPUs) instead of a few quick ones")
