"""pytest-benchmark micro suite: the Python-side costs around a run.

Not collected by ``pytest tests`` (it lives in benchmarks/); run it with

    python3 -m pytest benchmarks/test_micro.py --benchmark-only

Each benchmark isolates one step that ``Sandbox.run`` pays per run (manifest
layering, policy construction, filter compilation, scratch creation) or the
whole of a short run, so that a regression in start-up can be pinned to its
step.  The whole-suite numbers (per backend, ratios to native) come from
``picoproc bench perf``.  Timings here are reported, never asserted; each
test still checks that the step did its job, so a broken step fails instead
of looking fast.
"""

from __future__ import annotations

import os

import pytest

pytest.importorskip("pytest_benchmark")


def _pico_or_skip():
    from picoproc.backends import get_backend

    ok, why = get_backend("pico").available()
    if not ok:
        pytest.skip(f"pico backend unavailable: {why}")


def test_default_manifest(benchmark):
    from picoproc.manifest import default_manifest

    m = benchmark(default_manifest)
    assert any(mt.guest == "/usr" for mt in m.mounts)


def test_apply_overrides(benchmark):
    from picoproc.manifest import apply_overrides, default_manifest

    base = default_manifest()
    m = benchmark(apply_overrides, base, volumes=["/var/tmp:/var/tmp:ro"], env=["A=1"], timeout="5s")
    assert m.limits.wall_time_s == 5 and ("A", "1") in m.env


def test_compile_libos_filter(benchmark):
    from picoproc.abi import load_table
    from picoproc.abi.bpf import compile_filter

    table = load_table()
    prog = benchmark(compile_filter, table, "libos")
    assert len(prog) % 8 == 0 and len(prog) > 8 * 10


def test_fs_policy_from_default_manifest(benchmark):
    from picoproc.manifest import default_manifest
    from picoproc.monitor import FsPolicy

    m = default_manifest()
    no_tmpfs = m.__class__(**{**m.__dict__, "tmpfs": ()})

    def build_and_close():
        policy = FsPolicy.from_manifest(no_tmpfs, {})
        policy.close()
        return policy

    benchmark(build_and_close)


def test_decode_audit_batch(benchmark):
    """Decoding one drained batch of 1024 audit records (open, 20-byte URI)
    into dicts, as Monitor.drain_audit does at the end of every run."""
    from picoproc.monitor import CALL_NAMES, _record_dicts
    from picoproc.native import ffi

    n = 1024
    buf = ffi.new("struct pico_audit_record[]", n)
    uri = b"file:/usr/lib/x.so.6"
    open_nr = {name: nr for nr, name in CALL_NAMES.items()}["open"]
    for i in range(n):
        buf[i].call = open_nr
        buf[i].text_len = buf[i].text_full = len(uri)
        ffi.memmove(buf[i].text, uri, len(uri))
    recs = benchmark(_record_dicts, buf, n)
    assert len(recs) == n and recs[-1]["uri"] == uri.decode()


def test_scratch_tmpfs(benchmark):
    if os.geteuid() != 0:
        pytest.skip("measured as root (the monitor's usual identity)")
    from picoproc.scratch import make_scratch

    def make_and_close():
        s = make_scratch(64 << 20)
        fd = s.dir_fd
        s.close()
        return fd

    assert benchmark(make_and_close) >= 0


def test_sandbox_run_true(benchmark):
    """Spawn to reap of /bin/true through the Python API (shared monitor)."""
    _pico_or_skip()
    from picoproc.api import Sandbox

    box = Sandbox()
    result = benchmark.pedantic(box.run, args=(["/bin/true"],), kwargs={"capture": True, "timeout": 30},
                                rounds=30, iterations=1, warmup_rounds=2)
    assert result.status == 0


def test_native_backend_run_true(benchmark):
    from picoproc.backends import get_backend
    from picoproc.manifest import default_manifest

    backend, m = get_backend("native"), default_manifest()
    result = benchmark.pedantic(backend.run, args=(m, ["/bin/true"]), kwargs={"capture": True, "timeout": 30},
                                rounds=30, iterations=1, warmup_rounds=2)
    assert result.returncode == 0


def test_sandbox_run_python_pass(benchmark):
    _pico_or_skip()
    from picoproc.api import Sandbox

    box = Sandbox()
    result = benchmark.pedantic(box.run, args=(["python3", "-c", "pass"],),
                                kwargs={"capture": True, "timeout": 60}, rounds=10, iterations=1, warmup_rounds=1)
    assert result.status == 0, result.stderr
