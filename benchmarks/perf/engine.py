"""Container start-up under one engine: podman with runc, crun, runsc and
picoproc-oci as its ``--runtime``, the same busybox image, ``true``.

What is timed: ``podman start --attach`` of a container made beforehand by
``podman create --interactive`` (untimed), to the program's exit.  That is the runtime's
``create`` + ``start`` + ``state`` + the program + podman's own work (conmon,
the exit file), with ``--network none`` for every runtime so that no network
set-up is measured (Debian's runsc cannot join podman's network namespace
here anyway).  The container is removed after each run, untimed.

The floor is busybox ``true`` started by ``subprocess.run`` in the same
run; ratios are to runc, the reference runtime.  Runtimes that are not
installed are skipped with the reason.
"""

from __future__ import annotations

import subprocess
import time

from . import stats
from .workloads import Outcome, interleaved

RUNTIMES = ("runc", "crun", "runsc", "picoproc")
REFERENCE = "runc"


def measure_engine_startup(runs: int, progress) -> dict:
    from picoproc.oci.engine import BUSYBOX_EXE, EngineUnavailable, PrivatePodman

    out: dict = {"engine": "podman", "runtimes": {}, "skipped": {}}
    try:
        podman = PrivatePodman()
    except EngineUnavailable as exc:
        out["error"] = str(exc)
        return out
    try:
        version = podman.run(None, "--version", check=False).stdout.decode().strip()
        out["engine"] = version or "podman"
        image = podman.build_images()["busybox"]
        runtimes = {}
        for name in RUNTIMES:
            try:
                runtimes[name] = podman.runtime(name)
            except EngineUnavailable as exc:
                out["skipped"][name] = str(exc)
        out["versions"] = {n: _version(r.path) for n, r in runtimes.items()}

        def once(name: str) -> Outcome:
            rt = runtimes[name]
            args = list(rt.run_args)
            if "--network" not in args:
                args += ["--network", "none"]
            if "--interactive" not in args:
                args.append("--interactive")  # the same stdio for every runtime (see engine.runtime)
            made = podman.run(rt, "create", *args, image, "true", check=False)
            if made.returncode != 0:
                return _failed(made)
            null_before = _owner("/dev/null")
            cid = made.stdout.decode().strip()
            try:
                t0 = time.perf_counter()
                started = podman.run(rt, "start", "--attach", cid, check=False)
                wall = time.perf_counter() - t0
            finally:
                podman.run(None, "rm", "--force", "--time", "0", cid, check=False)
            if started.returncode != 0:
                return _failed(started)
            if _owner("/dev/null") != null_before:
                return Outcome(False, 0, wall, b"", b"", "changed the owner of the host's /dev/null")
            return Outcome(True, started.returncode, wall, started.stdout, started.stderr)

        names = list(runtimes)
        for n in names:  # one untimed run each: first use warms caches and podman's own state
            once(n)
        out["runtimes"] = interleaved(names, lambda n: runs, once, progress, "podman start --attach",
                                      scale=1000.0, unit="ms")
        floor = []
        for _ in range(runs + 1):
            t0 = time.perf_counter()
            subprocess.run([BUSYBOX_EXE, "true"], check=True)
            floor.append((time.perf_counter() - t0) * 1000.0)
        out["floor"] = {"ms": stats.summary(floor[1:])}
        base = out["runtimes"].get(REFERENCE, {}).get("ms", {}).get("median")
        for entry in out["runtimes"].values():
            if "ms" in entry:
                entry["ratio"] = stats.ratio(entry["ms"]["median"], base)
        out["leftovers"] = podman.settled_leftovers()
    finally:
        podman.close()
    return out


def _owner(path: str) -> tuple[int, int]:
    import os

    st = os.stat(path)
    return st.st_uid, st.st_gid


def _failed(proc) -> Outcome:
    why = f"status {proc.returncode}: {proc.stderr.decode(errors='replace').strip()[-300:]}"
    return Outcome(False, proc.returncode, 0.0, proc.stdout, proc.stderr, why)


def _version(path: str) -> str:
    try:
        text = subprocess.run(["sh", path, "--version"], capture_output=True, text=True, timeout=30,
                              check=False).stdout
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    return text.strip().splitlines()[0] if text.strip() else "?"


def markdown(doc: dict) -> list[str]:
    lines = ["### Container start-up under podman: `podman start --attach` of busybox `true`", ""]
    if "error" in doc:
        return lines + [f"Not measured: {doc['error']}", ""]
    lines.append(f"{doc['engine']}, `--network none`, the same image for every runtime; median [p10-p90] "
                 f"(ratio to {REFERENCE}).  Floor: busybox `true` by `subprocess.run`: "
                 f"{doc['floor']['ms']['median']:.2f} ms.")
    lines += ["", "| runtime | version | start-up |", "|---|---|---|"]
    for name, entry in doc["runtimes"].items():
        if "ms" in entry:
            s = entry["ms"]
            cell = f"{s['median']:.0f} ms [{s['p10']:.0f}-{s['p90']:.0f}]"
            if entry.get("ratio") is not None:
                cell += f" ({entry['ratio']:.2f}x)"
        else:
            cell = entry.get("error", "?")
        lines.append(f"| {name} | {doc.get('versions', {}).get(name, '?')} | {cell} |")
    for name, why in doc.get("skipped", {}).items():
        lines.append(f"| {name} | - | skipped: {why} |")
    lines.append("")
    return lines
