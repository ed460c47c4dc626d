"""containerd runs picoprocesses: ``ctr run --runtime io.containerd.runc.v2
--runc-binary picoproc-oci`` (the runc shim with another BinaryName, as a
Kubernetes RuntimeClass would configure it), against runc itself.

A private containerd (its own root, state and sockets under a temporary
directory) is started for the module and stopped after it.  Containers use
``--rootfs`` (a directory, no image store: no registry is reachable).
"""

from __future__ import annotations

import os
import pathlib
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import pytest

pytestmark = [pytest.mark.root, pytest.mark.peers]

TIMEOUT = 60
BUSYBOX = "/bin/busybox"


@pytest.fixture(scope="module")
def containerd():
    if os.geteuid() != 0:
        pytest.skip("containerd runs as root here")
    for tool in ("containerd", "ctr", "containerd-shim-runc-v2"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed (setup.sh installs containerd)")
    if not os.path.exists(BUSYBOX):
        pytest.skip("needs busybox-static")
    base = pathlib.Path(tempfile.mkdtemp(prefix="picoproc-containerd-"))
    (base / "config.toml").write_text(
        "version = 2\n"
        f'root = "{base}/root"\nstate = "{base}/state"\n'
        f'[grpc]\n  address = "{base}/c.sock"\n'
        f'[ttrpc]\n  address = "{base}/t.sock"\n'
        '[debug]\n  address = ""\n[metrics]\n  address = ""\n'
        'disabled_plugins = ["io.containerd.grpc.v1.cri"]\n')
    log = open(base / "containerd.log", "w")
    daemon = subprocess.Popen(["containerd", "--config", str(base / "config.toml")], stdout=log,
                              stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    sock = base / "c.sock"
    deadline = time.monotonic() + TIMEOUT
    try:
        while True:
            ready = subprocess.run(["ctr", "--address", str(sock), "version"], capture_output=True,
                                   timeout=TIMEOUT, check=False)
            if ready.returncode == 0:
                break
            if daemon.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"containerd did not start: {(base / 'containerd.log').read_text()[-2000:]}")
            time.sleep(0.1)
        rootfs = base / "rootfs"
        (rootfs / "bin").mkdir(parents=True)
        (rootfs / "tmp").mkdir(mode=0o1777)
        shutil.copy(BUSYBOX, rootfs / "bin" / "busybox")
        for applet in ("sh", "echo", "cat", "hostname", "sleep", "wc"):
            (rootfs / "bin" / applet).symlink_to("busybox")
        os.chmod(base, 0o755)
        yield {"sock": str(sock), "rootfs": str(rootfs), "base": base}
    finally:
        daemon.send_signal(signal.SIGTERM)
        try:
            daemon.wait(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait(timeout=TIMEOUT)
        log.close()
        shutil.rmtree(base, ignore_errors=True)


def _ctr(cd, *args):
    return subprocess.run(["ctr", "--address", cd["sock"], *args], capture_output=True, timeout=TIMEOUT,
                          stdin=subprocess.DEVNULL, check=False)


def test_ctr_runs_a_picoprocess_with_the_runc_shim(containerd):
    runtime = str(pathlib.Path(sys.executable).parent / "picoproc-oci")
    script = "echo hello from $(hostname); cat /bin/sh | wc -c; exit 3"
    ref = _ctr(containerd, "run", "--rm", "--runc-binary", "runc", "--rootfs", containerd["rootfs"],
               f"ref-{os.getpid()}", "/bin/sh", "-c", script)
    cid = f"pico-{os.getpid()}"
    got = _ctr(containerd, "run", "--rm", "--runc-binary", runtime, "--rootfs", containerd["rootfs"],
               cid, "/bin/sh", "-c", script)
    assert ref.returncode == 3, ref.stderr
    assert (got.returncode, got.stdout, got.stderr) == (ref.returncode, ref.stdout, ref.stderr)
    # No hostname in ctr's spec: the host's, as runc keeps it.
    assert got.stdout.startswith(f"hello from {os.uname().nodename}\n".encode())
    assert _ctr(containerd, "containers", "list", "--quiet").stdout == b""
    assert _ctr(containerd, "tasks", "list", "--quiet").stdout == b""
    deadline = time.monotonic() + TIMEOUT
    while True:  # the shim exits once the task is deleted
        left = [p for p in os.listdir("/proc") if p.isdigit() and _cmdline(p).find(cid) >= 0]
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert left == [], [_cmdline(p) for p in left]


def _cmdline(pid: str) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""
