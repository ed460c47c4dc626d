"""The installed ``picoproc`` command (sandbox/bin/picoproc): a launcher that
starts its installation's interpreter with -S and sets sys.path up itself,
without running the ``import`` lines of site-packages' .pth files, and that
falls back to the interpreter's ordinary start where it cannot find picoproc
that way.  Checked from outside: the process the caller started is the one
that runs (same pid, the interpreter with -S), the statuses and signals are
the run's, and in an installation made here (a virtual environment of
/usr/bin/python3, used by uid 65534) a .pth hook that leaves a mark shows
which start was taken.  No timing is asserted (docs/PERFORMANCE.md)."""

from __future__ import annotations

import os
import pathlib
import shutil
import signal
import subprocess
import sys
import tempfile

import pytest

from conftest import REPO_ROOT, read_line_of, signal_when_ready

pytestmark = pytest.mark.root

TIMEOUT = 60.0
LAUNCHER = REPO_ROOT / "sandbox" / "bin" / "picoproc"

HANDLES_TERM = (
    "import os, signal, sys, time\n"
    "def on_term(sig, frame):\n"
    "    os.write(1, b'got ' + signal.Signals(sig).name.encode() + b'\\n')\n"
    "    sys.exit(3)\n"
    "signal.signal(signal.SIGTERM, on_term)\n"
    "os.write(1, b'ready\\n')\n"
    "time.sleep(60)\n"
)


def _cmdline(pid: int) -> list[str]:
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        return [a.decode() for a in f.read().split(b"\0")[:-1]]


def test_the_installed_command_is_this_launcher(picoproc_exe):
    with open(picoproc_exe, "rb") as f:
        assert f.readline() == b"#!/bin/sh\n", f"{picoproc_exe} is not sandbox/bin/picoproc (run ./setup.sh)"


def test_the_command_is_the_process_its_caller_started_running_python_without_site(picoproc_exe):
    """Each step execs the next: the pid the caller has is the interpreter's,
    started with -S on the launcher, with the caller's arguments after it."""
    proc = subprocess.Popen([picoproc_exe, "run", "--", "/bin/sh", "-c", "echo ready; read x; exit 4"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert read_line_of(proc, TIMEOUT) == "ready\n"
        argv = _cmdline(proc.pid)
        proc.stdin.write("go\n")
        proc.stdin.close()
        proc.wait(timeout=TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "python" in os.path.basename(argv[0]), argv
    assert argv[1] == "-S", argv
    assert os.path.realpath(argv[2]) == os.path.realpath(picoproc_exe), argv
    assert argv[3:] == ["run", "--", "/bin/sh", "-c", "echo ready; read x; exit 4"]
    assert proc.returncode == 4, proc.stderr.read()


def test_python_m_picoproc_still_runs():
    r = subprocess.run([sys.executable, "-m", "picoproc", "run", "--", "/bin/sh", "-c", "exit 6"],
                       capture_output=True, text=True, timeout=TIMEOUT, check=False)
    assert r.returncode == 6, r.stderr


# --------------------------------------------------------------------------
# An installation made here: a virtual environment of /usr/bin/python3 (with
# its system packages, for cffi), world-readable, with the launcher as a
# wheel installs it (no editable folders) and a console script beside it
# whose first line names the interpreter, as pip writes it.


HOOK_PTH = "import os; p = os.environ.get('PICOPROC_TEST_MARK'); p and open(p, 'a').close()\n"


class Install:
    def __init__(self, base: pathlib.Path, site_packages: pathlib.Path, package_root: pathlib.Path):
        self.base = base
        self.bin = base / "bin"
        self.site_packages = site_packages
        self.package_root = package_root  # holds picoproc/ (unpriv_env's copy)
        self.mark = base / "mark" / "site-hooks-ran"

    def picoproc_on_plain_path(self) -> None:
        (self.site_packages / "picoproc").symlink_to(self.package_root / "picoproc")

    def picoproc_only_through_a_hook(self) -> None:
        (self.site_packages / "zz_picoproc_path.pth").write_text(
            f"import sys; sys.path.append({str(self.package_root)!r})\n")
        (self.site_packages / "zz_picoproc_path.pth").chmod(0o644)

    def oci_script(self, text: str) -> None:
        script = self.bin / "picoproc-oci"
        script.write_text(text)
        script.chmod(0o755)


@pytest.fixture
def world(tmp_path_factory):
    """A temporary directory uid 65534 can reach (pytest's own are 0700)."""
    root = pathlib.Path(tempfile.mkdtemp(prefix="picoproc-command-"))
    try:
        root.chmod(0o755)
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def install(unpriv_env, world):
    base = world / "inst"
    made = subprocess.run([unpriv_env["python"], "-m", "venv", "--without-pip", "--system-site-packages",
                           str(base)], capture_output=True, text=True, timeout=TIMEOUT, check=False)
    if made.returncode:
        pytest.skip(f"/usr/bin/python3 cannot make a virtual environment: {made.stderr.strip()}")
    site_packages = pathlib.Path(subprocess.run(
        [str(base / "bin" / "python3"), "-S", "-c", "import site; site.venv(None); print(site.getsitepackages()[0])"],
        capture_output=True, text=True, timeout=TIMEOUT, check=True).stdout.strip())
    inst = Install(base, site_packages, unpriv_env["root"])
    shutil.copy(LAUNCHER, inst.bin / "picoproc")
    inst.oci_script(f"#!{inst.bin / 'python3'}\nimport sys\n")
    (site_packages / "aa_hook.pth").write_text(HOOK_PTH)
    inst.mark.parent.mkdir()
    os.chmod(inst.mark.parent, 0o777)
    for dirpath, dirnames, filenames in os.walk(world):
        os.chmod(dirpath, 0o755 if dirpath != str(inst.mark.parent) else 0o777)
        for f in filenames:
            p = os.path.join(dirpath, f)
            if not os.path.islink(p):
                os.chmod(p, 0o755 if os.access(p, os.X_OK) else 0o644)
    return inst


def _as_nobody(unpriv_env, inst: Install, *args, command=None, **kw) -> subprocess.CompletedProcess:
    env = {"PATH": os.defpath, "PYTHONDONTWRITEBYTECODE": "1", "PICOPROC_TEST_MARK": str(inst.mark)}
    return subprocess.run([*unpriv_env["prefix"], str(command or inst.bin / "picoproc"), *args],
                          capture_output=True, text=True, env=env, cwd="/", timeout=TIMEOUT, check=False, **kw)


def test_an_installed_package_starts_without_site_hooks_as_nobody(unpriv_env, install):
    install.picoproc_on_plain_path()
    r = _as_nobody(unpriv_env, install, "run", "--", "/bin/sh", "-c", "id -u; exit 3")
    assert (r.returncode, r.stdout) == (3, "65534\n"), r.stderr
    assert not install.mark.exists()  # the .pth file's import line did not run
    assert _as_nobody(unpriv_env, install, "run", "--", "/bin/true").returncode == 0
    assert _as_nobody(unpriv_env, install, "run", "--", "no-such-program-anywhere").returncode == 127
    assert _as_nobody(unpriv_env, install, "run", "--no-such-flag", "--", "/bin/true").returncode == 125
    assert not install.mark.exists()


def test_the_ordinary_start_when_picoproc_is_found_only_through_a_hook(unpriv_env, install):
    """A package that only a .pth file's code puts on sys.path: the launcher
    cannot see it, so the interpreter starts again the ordinary way, runs
    the hooks, and the run is the same."""
    install.picoproc_only_through_a_hook()
    r = _as_nobody(unpriv_env, install, "run", "--", "/bin/sh", "-c", "exit 3")
    assert r.returncode == 3, r.stderr
    assert install.mark.exists()


def test_a_symbolic_link_to_the_command_finds_its_installation(unpriv_env, install, world):
    install.picoproc_on_plain_path()
    elsewhere = world / "elsewhere"
    elsewhere.mkdir(mode=0o755)
    (elsewhere / "picoproc").symlink_to(install.bin / "picoproc")
    r = _as_nobody(unpriv_env, install, "run", "--", "/bin/sh", "-c", "exit 5", command=elsewhere / "picoproc")
    assert r.returncode == 5, r.stderr
    assert not install.mark.exists()


def test_a_long_interpreter_path_on_the_scripts_second_line(unpriv_env, install):
    # pip's form for a path that cannot go on a #! line.
    install.picoproc_on_plain_path()
    install.oci_script(f"#!/bin/sh\n'''exec' \"{install.bin / 'python3'}\" \"$0\" \"$@\"\n' '''\nimport sys\n")
    r = _as_nobody(unpriv_env, install, "run", "--", "/bin/sh", "-c", "exit 5")
    assert r.returncode == 5, r.stderr
    assert not install.mark.exists()


def test_an_interpreter_line_with_arguments_is_the_ordinary_start(unpriv_env, install):
    install.picoproc_on_plain_path()
    install.oci_script(f"#!{install.bin / 'python3'} -u\nimport sys\n")
    r = _as_nobody(unpriv_env, install, "run", "--", "/bin/sh", "-c", "exit 5")
    assert r.returncode == 5, r.stderr
    assert install.mark.exists()


def test_without_the_console_script_the_interpreter_beside_it(unpriv_env, install):
    install.picoproc_on_plain_path()
    (install.bin / "picoproc-oci").unlink()
    r = _as_nobody(unpriv_env, install, "run", "--", "/bin/sh", "-c", "exit 5")
    assert r.returncode == 5, r.stderr
    assert not install.mark.exists()


@pytest.mark.parametrize("script", [None, "#!/no/such/python3\n", "not a script\n"])
def test_no_interpreter_to_start_is_a_one_line_error(unpriv_env, install, script):
    install.picoproc_on_plain_path()
    for name in ("python3", "python"):  # nothing beside it either
        (install.bin / name).unlink()
    if script is None:
        (install.bin / "picoproc-oci").unlink()
    else:
        install.oci_script(script)
    r = _as_nobody(unpriv_env, install, "run", "--", "/bin/true")
    assert r.returncode == 125
    assert r.stderr.count("\n") == 1 and "cannot tell which Python interpreter" in r.stderr, r.stderr


def test_sigterm_to_the_command_reaches_the_program_as_nobody(unpriv_env, install):
    install.picoproc_on_plain_path()
    env = {"PATH": os.defpath, "PYTHONDONTWRITEBYTECODE": "1"}
    proc = subprocess.Popen([*unpriv_env["prefix"], str(install.bin / "picoproc"), "run", "--",
                             "python3", "-c", HANDLES_TERM],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd="/")
    out, err = signal_when_ready(proc, signal.SIGTERM, timeout=TIMEOUT)
    assert (proc.returncode, out) == (3, "got SIGTERM\n"), err
