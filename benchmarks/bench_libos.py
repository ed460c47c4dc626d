"""Library-OS cost, as ratios to native measured in the same run (not a test).

    python3 benchmarks/bench_libos.py [--runs N]

Per-call cost inside the guest (median ns, from tests/guests/libos_probe's
``bench`` subcommand, run natively and in a picoprocess): an emulated call
(uname, getcwd), a direct one (getppid); a mediated stat (from a busybox
loop); and `python3 -c pass` start-up wall time through picoproc.api.
"""

from __future__ import annotations

import argparse
import pathlib
import statistics
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
PROBE = ROOT / "tests" / "guests" / "bin" / "libos_probe.static"


def parse(text: str) -> dict[str, int]:
    return {k: int(v) for k, v in (line.split("=", 1) for line in text.splitlines() if line.endswith(tuple("0123456789")) and "=" in line)}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=20)
    args = ap.parse_args()
    from picoproc import api

    import dataclasses

    from picoproc.manifest import Mount, default_manifest

    sandbox = api.Sandbox()
    # The probe lives in the source tree: show its directory read-only.
    m = default_manifest()
    probe_dir = str(PROBE.parent)
    with_probe = api.Sandbox(dataclasses.replace(m, mounts=type(m.mounts)([*m.mounts, Mount(probe_dir, probe_dir)])))
    native = parse(subprocess.run([str(PROBE), "bench"], capture_output=True, text=True).stdout)
    r = with_probe.run([str(PROBE), "bench"], capture=True)
    guest = parse(r.stdout.decode())
    if not guest:
        print(f"probe failed in the sandbox: {r.reason}: {r.stderr!r}", file=sys.stderr)
    print(f"{'call':14} {'native ns':>10} {'picoproc ns':>12} {'ratio':>7}")
    for key in ("uname_ns", "getcwd_ns", "uname_trap_ns", "getcwd_trap_ns", "getppid_ns", "sched_yield_ns"):
        if key in native and key in guest:
            print(f"{key[:-3]:14} {native[key]:10d} {guest[key]:12d} {guest[key] / max(native[key], 1):7.1f}")

    # Mediated stat: N stats of one file in a shell loop, minus the loop.
    n = 2000
    loop = f"i=0; while [ $i -lt {n} ]; do i=$((i+1)); done"
    with_stat = f"i=0; while [ $i -lt {n} ]; do [ -e /usr/bin/env ]; i=$((i+1)); done"
    def timed(argv, inside):
        t = time.perf_counter()
        if inside:
            sandbox.run(argv, capture=True)
        else:
            subprocess.run(argv, capture_output=True)
        return time.perf_counter() - t
    for inside in (False, True):
        base = statistics.median(timed(["/bin/busybox", "sh", "-c", loop], inside) for _ in range(5))
        full = statistics.median(timed(["/bin/busybox", "sh", "-c", with_stat], inside) for _ in range(5))
        print(f"stat ({'picoproc' if inside else 'native'}): {(full - base) / n * 1e9:.0f} ns per call")

    def paired(argv):
        # Interleaved, so that load from elsewhere on the machine hits both.
        nat, pic = [], []
        for _ in range(args.runs):
            nat.append(timed(argv, False))
            pic.append(timed(argv, True))
        return statistics.median(nat), statistics.median(pic)

    true = ["/bin/true"]
    t_nat, t_pic = paired(true)
    print(f"/bin/true: native {t_nat * 1e3:.1f} ms, picoproc {t_pic * 1e3:.1f} ms (spawn + libos start-up)")
    py = ["/usr/bin/python3", "-c", "pass"]
    nat, pic = paired(py)
    calls = sandbox.run(py, capture=True).calls
    print(f"python3 -c pass: native {nat * 1e3:.1f} ms, picoproc {pic * 1e3:.1f} ms, ratio {pic / nat:.2f}; "
          f"mediated calls {calls}")
    print(f"python3 -c pass minus the /bin/true start-up difference: ratio {(pic - (t_pic - t_nat)) / nat:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
