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
import subprocess
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
