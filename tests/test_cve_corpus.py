"""The CVE-prerequisite corpus of ``picoproc bench security`` (benchmarks/security/cve.py).

* The corpus is what it claims: at least 25 published exploits from 2016
  on, each with prerequisites that are probes, each with a public source.
* Positive control: natively (as root, no sandbox) every probe reaches its
  mechanism, except those this kernel does not offer at all, which must
  fail with the kernel's own answer for that; the leaked-fd probe detects a
  directory fd when one is really leaked to it.
* picoproc blocks every prerequisite its ABI does not let through as a
  direct call, and the exploits left possible under it are those built from
  its direct data path alone; the read-only file the Dirty COW and Dirty
  Pipe probes map is unchanged.
"""

from __future__ import annotations

import os
import re
import subprocess

import pytest
from picoproc.bench.security import cve, harness

pytestmark = pytest.mark.root

# Mechanisms this kernel may lack entirely, with the answer the kernel
# gives then (the probe reached the kernel's code, which has nothing there).
HOST_MAY_LACK = {
    "watch_queue": "ENOPKG",  # built without CONFIG_WATCH_QUEUE
    "cgroup_v1_mount": "EPERM",  # no new cgroup v1 hierarchy from a user namespace
    "af_vsock": "EAFNOSUPPORT",  # no vsock transport loaded
    "leaked_dir_fd": "ENOENT",  # nothing leaks natively: see the test with a leak
}


@pytest.fixture(scope="module")
def built():
    try:
        return harness.build_guests()
    except harness.BenchSetupError as exc:
        pytest.fail(f"the benchmark guests do not build: {exc}")


@pytest.fixture(scope="module")
def run_dir(built):
    rd = harness.make_run_dir()
    yield rd
    harness.kill_leftovers(rd.token)
    rd.remove()


@pytest.mark.unit
def test_corpus_is_well_formed():
    assert len(cve.EXPLOITS) >= 25
    assert len({e.cve for e in cve.EXPLOITS}) == len(cve.EXPLOITS)
    used = set()
    for e in cve.EXPLOITS:
        year = int(re.fullmatch(r"CVE-(\d{4})-\d{4,}", e.cve).group(1))
        assert year >= 2016, e.cve
        assert e.needs and all(p in cve.PROBES for p in e.needs), e.cve
        assert e.source.startswith("https://") and e.kind in ("kernel", "runtime"), e.cve
        used |= set(e.needs)
    assert used == set(cve.PROBES), set(cve.PROBES) - used
    # The probes the guest implements are the probes the harness knows.
    src = (harness.GUEST_SRC / "cve_probe.c").read_text()
    assert set(re.findall(r'\{"(\w+)", p_\w+\}', src)) == set(cve.PROBES)


def test_native_positive_control(run_dir):
    if os.geteuid() != 0:
        pytest.skip("the native positive control runs the probes as root (host_root, setuid_exec, bpf)")
    res = cve.run_backend(run_dir, "native")
    assert not res.notes, res.notes
    for pid, r in res.probes.items():
        if pid in HOST_MAY_LACK and r.status != cve.REACHABLE:
            assert r.status == cve.REFUSED and r.detail.startswith(HOST_MAY_LACK[pid]), (pid, r)
        else:
            assert r.status == cve.REACHABLE, (pid, r)
    # Every exploit whose prerequisites this kernel has is possible natively.
    for e in cve.EXPLOITS:
        ok, pid, _ = res.verdict(e)
        assert ok or pid in HOST_MAY_LACK, e.cve


def test_leaked_dir_fd_probe_sees_a_real_leak(built, tmp_path):
    probe = str(built / "pp-cve")
    ro = tmp_path / "ro.txt"
    ro.write_text("x")
    fd = os.open(str(tmp_path), os.O_RDONLY | os.O_DIRECTORY)
    try:
        leaked = subprocess.run([probe, "tok", str(ro), "leaked_dir_fd"], pass_fds=(fd,), capture_output=True,
                                text=True, timeout=60, check=True)
    finally:
        os.close(fd)
    clean = subprocess.run([probe, "tok", str(ro), "leaked_dir_fd"], capture_output=True, text=True,
                           timeout=60, check=True)
    assert f"probe leaked_dir_fd ok inherited directory fd {fd}" in leaked.stdout
    assert "probe leaked_dir_fd err ENOENT" in clean.stdout


def test_pico_blocks_what_its_abi_does_not_pass(run_dir):
    before = (run_dir.allowed.read_bytes(), run_dir.allowed.stat().st_mtime_ns)
    res = cve.run_backend(run_dir, "pico")
    assert not res.notes, res.notes
    assert (run_dir.allowed.read_bytes(), run_dir.allowed.stat().st_mtime_ns) == before
    data_path_only = set()
    for pid, r in res.probes.items():
        blocked_by_abi = cve._pico_direct(cve.PROBES[pid])
        if blocked_by_abi is not None:
            assert r.status != cve.REACHABLE, (pid, r)
        elif cve.PROBES[pid].calls:
            data_path_only.add(pid)
    # /dev/fuse, the host's /proc and its uid 0 are never granted either.
    for pid in ("fuse_dev", "host_procfs", "proc_mem_write", "host_root", "setuid_exec"):
        assert res.probes[pid].status != cve.REACHABLE, (pid, res.probes[pid])
    possible = set(res.possible())
    assert possible == {e.cve for e in cve.EXPLOITS
                        if set(e.needs) <= data_path_only and e.needs != ("leaked_dir_fd",)
                        and all(res.probes[p].status == cve.REACHABLE for p in e.needs)}
    # What remains is built only from memory calls every program needs.
    assert all(set(cve.EXPLOITS_BY_CVE[c].needs) <= {"threads_mm", "madvise_dontneed"} for c in possible)


@pytest.mark.unit
def test_classification_of_emulated_answers():
    out = {"io_uring": ("ok", "io_uring_setup"), "threads_mm": ("ok", "threads"),
           "userns": ("err", "EPERM unshare"), "keyctl": ("signal", "31"), "bpf_prog": ("hang", "")}
    pico = cve.classify("pico", out, list(out))
    assert pico["io_uring"].status == cve.EMULATED  # not a direct call: the library OS answered
    assert pico["threads_mm"].status == cve.REACHABLE
    assert pico["userns"].status == cve.REFUSED and pico["userns"].cell() == "EPERM"
    assert pico["keyctl"].status == cve.KILLED and "SIGSYS" in pico["keyctl"].detail
    assert pico["bpf_prog"].status == cve.HANG
    gv = cve.classify("gvisor", out, list(out))
    assert gv["threads_mm"].status == cve.EMULATED
    nat = cve.classify("native", out, list(out))
    assert nat["io_uring"].status == cve.REACHABLE


def test_cli_cve_only_json(built, tmp_path):
    import json
    import sys

    out = tmp_path / "sec.json"
    proc = subprocess.run([sys.executable, "-m", "picoproc", "bench", "security", "--cve-only",
                           "--backends", "pico", "--json", str(out)],
                          capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    doc = json.loads(out.read_text())
    assert doc["results"] == [] and [r["backend"] for r in doc["cve"]] == ["pico"]
    assert set(doc["cve"][0]["exploits"]) == {e.cve for e in cve.EXPLOITS}
    assert "exploits with every prerequisite reachable" in proc.stdout
    bad = subprocess.run([sys.executable, "-m", "picoproc", "bench", "security", "--cve-only", "--no-cve"],
                         capture_output=True, text=True, timeout=60, check=False)
    assert bad.returncode == 125 and len(bad.stderr.strip().splitlines()) == 1
