"""Mediated open+close latency, measured inside a guest, against native.

Runs tests/guests/bin/med_bench three ways in the same run:

* ``native``: the same static binary, unconfined, timing openat+close of a
  host file;
* ``mediated``: in a raw picoprocess served by a Monitor, timing
  pico_open("file:...")+close of the same file through a read-only mount
  (the monitor resolves, checks, opens and installs the fd);
* ``null``: pico_note_unsupported, which the monitor answers at once: the
  bare cost of one user-notification round trip through the loop.

Each guest times every iteration with the TSC (calibrated against
CLOCK_MONOTONIC over the run) and reports the median, p10 and p90.  Usage:

    python3 benchmarks/bench_mediated.py [--iterations N] [--repeat R] [--json FILE]

or ``python3 -m pytest benchmarks/bench_mediated.py -s`` (files in
benchmarks/ are not collected by ``pytest tests``).  Target: mediated median
<= 5 us on the 2-core development VM.  Never a pass/fail timing test.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parent.parent
GUEST = ROOT / "tests" / "guests" / "bin" / "med_bench"


def _parse(line: str) -> dict[str, int]:
    return {k: int(v) for k, v in (kv.split("=") for kv in line.split())}


def _run_native(path: str, n: int) -> dict[str, int]:
    out = subprocess.run([str(GUEST), "native", path, str(n)], capture_output=True, text=True, timeout=120,
                         check=True)
    return _parse(out.stdout.strip())


def _run_mediated(mon, policy, mode: str, guest_path: str, n: int) -> dict[str, int]:
    from picoproc.monitor import GUEST_SECCOMP_FLAGS
    from picoproc.raw import spawn_raw
    from picoproc.spawn import release, wait_picoprocess

    with tempfile.TemporaryFile() as out, open(os.devnull, "rb") as devnull:
        g = spawn_raw([str(GUEST), mode, guest_path, str(n)], {}, (devnull.fileno(), out.fileno(), 2),
                      seccomp_flags=GUEST_SECCOMP_FLAGS)
        try:
            handle = mon.add_guest(g.listener_fd, g.guest_pid, policy)
        finally:
            os.close(g.listener_fd)
        try:
            result = wait_picoprocess(g, 120)
        except TimeoutError:
            release(g)
            raise
        mon.remove_guest(handle)
        mon.drain_audit()
        out.seek(0)
        text = out.read().decode()
    if result.exit_code != 0:
        raise RuntimeError(f"med_bench {mode} failed ({result}): {text}")
    return _parse(text.strip())


def run(iterations: int = 20000, repeat: int = 3) -> dict:
    from picoproc.monitor import FsPolicy, Monitor

    if not GUEST.exists():
        subprocess.run(["make", "-s", "-C", str(GUEST.parent.parent)], check=True)
    with tempfile.TemporaryDirectory(prefix="picoproc-bench-") as d:
        os.chmod(d, 0o755)
        host_file = pathlib.Path(d) / "file.txt"
        host_file.write_text("benchmark\n")
        os.chmod(host_file, 0o644)
        rows: dict[str, list[dict[str, int]]] = {"native": [], "mediated": [], "null": []}
        with Monitor() as mon, FsPolicy() as policy:
            policy.add_mount("/data", d)
            policy.add_hidden("/data/hidden")  # as in a real manifest: the hidden-inode check runs
            for _ in range(repeat):
                rows["native"].append(_run_native(str(host_file), iterations))
                rows["mediated"].append(_run_mediated(mon, policy, "mediated", "/data/file.txt", iterations))
                rows["null"].append(_run_mediated(mon, policy, "null", "/data/file.txt", iterations))
            sync = mon.counters()["sync_wakeup"]
    summary = {name: {key: statistics.median(r[key] for r in rs) for key in ("median", "p10", "p90")}
               for name, rs in rows.items()}
    summary["ratio_mediated_to_native"] = summary["mediated"]["median"] / summary["native"]["median"]
    summary["iterations"] = iterations
    summary["repeat"] = repeat
    summary["sync_wakeup"] = sync
    summary["load_average"] = os.getloadavg()
    return summary


def report(summary: dict) -> str:
    lines = [(f"open+close, {summary['iterations']} iterations x {summary['repeat']} runs "
              f"(median of runs; sync wake-up: {summary['sync_wakeup']}; "
              f"load average {summary['load_average'][0]:.2f})")]
    for name in ("native", "mediated", "null"):
        s = summary[name]
        lines.append(f"  {name:9s} median {s['median'] / 1000:7.2f} us   p10 {s['p10'] / 1000:7.2f} us   "
                     f"p90 {s['p90'] / 1000:7.2f} us")
    lines.append(f"  mediated / native = {summary['ratio_mediated_to_native']:.1f}x   "
                 "(target: mediated median <= 5 us)")
    return "\n".join(lines)


def test_bench_mediated_open_close():
    """pytest entry (not a timed test: it reports, it does not assert a time)."""
    summary = run(iterations=5000, repeat=1)
    print("\n" + report(summary))
    assert summary["mediated"]["median"] > 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iterations", type=int, default=20000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", help="also write the summary here")
    args = ap.parse_args(argv)
    summary = run(args.iterations, args.repeat)
    print(report(summary))
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(summary, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
