"""Every kernel object a guest makes the monitor create is bounded by that
guest's limits, and the monitor's own work for it is charged to it.

Each test measures from outside the guest (the host's slab counters, the
monitor's fds, the run's result) and fails on a monitor that does not bound
or charge the resource.
"""

from __future__ import annotations

import dataclasses
import os
import threading

import pytest
from picoproc.api import Sandbox
from picoproc.manifest import Tmpfs, default_manifest
from picoproc.scratch import default_inodes

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
# bound on the scratch tmpfs's inodes, each one is ~1 KiB of host slab
# (shmem_inode_cache + dentry) charged to nobody.  The guest stops at the
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
