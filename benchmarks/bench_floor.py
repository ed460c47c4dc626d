"""The kernel's floor under a mediated call and a picoprocess start-up on
this machine (not a test).

    python3 benchmarks/bench_floor.py [--target-ms T] [--batches B] [--repeat R] [--runs K] [--json FILE]

Builds benchmarks/floor/notif_floor.c and runs it: a child whose seccomp
filter sends calls to a supervisor process that does only the host call a
mediated call needs and answers at once, with
SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP (the classes are described in that
file: a bare round trip, a stat, an open answered with NOTIF_ADDFD + SEND,
with NOTIF_ADDFD then NOTIF_SEND, or through an AF_UNIX channel).  No
monitor can serve a mediated call faster on the same machine;
``picoproc bench perf`` measures the same floor in every run and reports
picoproc's in-guest cost as a ratio to it.

Each configuration runs R times: unpinned (the scheduler decides where the
woken task runs) and with both processes pinned to one CPU (every wake-up
stays local: the best case).  Per-call means of batches of about T ms; the
medians of all batches are reported.

It also builds benchmarks/floor/spawn_floor.c and runs ``/bin/true`` and
``python3 -c pass`` K times each natively (fork, exec, wait) and in fresh
user, pid, mount, network, IPC and UTS namespaces, alternating: what the
namespaces alone add to a start-up, with no monitor, filter or library OS.
Compare benchmarks/bench_libos.py's start-up ratio against it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile

HERE = pathlib.Path(__file__).resolve().parent
SOURCE = HERE / "floor" / "notif_floor.c"
SPAWN_SOURCE = HERE / "floor" / "spawn_floor.c"
# The programs benchmarks/bench_libos.py starts.
SPAWN_PROGRAMS = {"/bin/true": ["/bin/true"], "python3 -c pass": ["/usr/bin/python3", "-c", "pass"]}
CACHE = pathlib.Path(os.environ.get("PICOPROC_BENCH_CACHE", "/var/tmp/picoproc-bench-cache")) / "floor"


def build(source: pathlib.Path = SOURCE) -> pathlib.Path:
    # The shared header is part of what the binary is built from.
    digest = hashlib.sha256(source.read_bytes() + (HERE / "floor" / "floor_common.h").read_bytes()).hexdigest()[:16]
    target = CACHE / f"{source.stem}-{digest}"
    if not target.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(target.name + f".tmp{os.getpid()}")
        subprocess.run([os.environ.get("CC", "gcc"), "-O2", "-Wall", "-Wextra", "-Werror", "-o", str(tmp),
                        str(source)], check=True, capture_output=True, text=True)
        os.replace(tmp, target)
    return target


def run_once(binary: pathlib.Path, file: str, target_ms: float, batches: int,
             cpu: int | None) -> dict[str, list[float]]:
    """{class: per-call ns of each batch} of one run of notif_floor."""
    preexec = (lambda: os.sched_setaffinity(0, {cpu})) if cpu is not None else None
    out = subprocess.run([str(binary), file, str(int(target_ms * 1e6)), str(batches)], capture_output=True,
                         text=True, timeout=600, preexec_fn=preexec)
    if out.returncode != 0:
        raise RuntimeError(f"notif_floor failed ({out.returncode}): {out.stderr.strip()}")
    rows = {}
    for line in out.stdout.splitlines():
        fields = dict(kv.split("=", 1) for kv in line.split())
        rows[fields["class"]] = [int(x) / 1000.0 for x in fields["ps"].split(",") if x]
    return rows


def run_spawn(runs: int) -> dict[str, dict[str, dict[str, int]]]:
    """{program: {"native"|"ns": {median_ns, p10_ns, p90_ns}}}."""
    binary = build(SPAWN_SOURCE)
    out = {}
    for name, argv in SPAWN_PROGRAMS.items():
        # Parsed like run_once's output; spawn_floor prints the same rows.
        proc = subprocess.run([str(binary), str(runs), *argv], capture_output=True, text=True, timeout=600)
        if proc.returncode != 0:
            raise RuntimeError(f"spawn_floor {name} failed ({proc.returncode}): {proc.stderr.strip()}")
        out[name] = {row: {k: int(v) for k, v in (f.split("=") for f in fields)}
                     for row, *fields in (line.split() for line in proc.stdout.splitlines())}
    return out


def _median(values: list[float]) -> float:
    return statistics.median(values)


def run(target_ms: float = 10.0, batches: int = 7, repeat: int = 3, spawn_runs: int = 100) -> dict:
    binary = build()
    cpu = min(os.sched_getaffinity(0))
    summary: dict = {"target_ms": target_ms, "batches": batches, "repeat": repeat,
                     "load_average": os.getloadavg()}
    with tempfile.NamedTemporaryFile(prefix="picoproc-floor-", dir="/var/tmp") as f:
        f.write(b"floor\n")
        f.flush()
        for label, pin in (("unpinned", None), ("pinned", cpu)):
            merged: dict[str, list[float]] = {}
            for _ in range(repeat):
                for cls, values in run_once(binary, f.name, target_ms, batches, pin).items():
                    merged.setdefault(cls, []).extend(values)
            summary[label] = {cls: {"median_ns": _median(v), "p10_ns": sorted(v)[len(v) // 10],
                                    "p90_ns": sorted(v)[len(v) * 9 // 10]} for cls, v in merged.items()}
    summary["spawn_runs"] = spawn_runs
    summary["spawn"] = run_spawn(spawn_runs)
    return summary


def report(summary: dict) -> str:
    lines = [f"seccomp user-notification floor, {summary['repeat']} runs x {summary['batches']} batches of "
             f"~{summary['target_ms']:g} ms, per-call mean of each batch (load average "
             f"{summary['load_average'][0]:.2f})"]
    for label in ("unpinned", "pinned"):
        for call, s in summary[label].items():
            lines.append(f"  {label:8s} {call:22s} median {s['median_ns'] / 1000:7.2f} us   "
                         f"p10 {s['p10_ns'] / 1000:7.2f} us   p90 {s['p90_ns'] / 1000:7.2f} us")
    lines.append(f"start-up in the six namespaces, no monitor ({summary['spawn_runs']} runs each, alternating)")
    for name, rows in summary["spawn"].items():
        nat, ns = rows["native"]["median_ns"], rows["ns"]["median_ns"]
        lines.append(f"  {name:16s} native {nat / 1e6:6.2f} ms   namespaces {ns / 1e6:6.2f} ms   "
                     f"+{(ns - nat) / 1e6:5.2f} ms   ratio {ns / nat:4.2f}")
    return "\n".join(lines)


def test_bench_floor():
    """pytest entry: reports, asserts only that every class was measured."""
    summary = run(target_ms=1.0, batches=2, repeat=1, spawn_runs=5)
    print("\n" + report(summary))
    assert summary["pinned"]["open_addfd"]["median_ns"] > 0
    assert all(rows["ns"]["median_ns"] > 0 for rows in summary["spawn"].values())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--target-ms", type=float, default=10.0, help="length of one batch of calls")
    ap.add_argument("--batches", type=int, default=7)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--runs", type=int, default=100, help="start-ups of each program each way")
    ap.add_argument("--json", help="also write the summary here")
    args = ap.parse_args(argv)
    summary = run(args.target_ms, args.batches, args.repeat, args.runs)
    print(report(summary))
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(summary, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
