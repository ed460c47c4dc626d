"""Runs the whole performance suite and returns one JSON-ready document.

Order: for each workload, native first (every ratio is to the native run of
the same invocation), then the other selected backends.  Progress goes to a
stream (stderr) as "[elapsed] workload x backend", with the time each took.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import TextIO

from ..progress import Progress as BaseProgress
from . import floor, stats, workloads
from .machine import describe_machine

SCHEMA = "picoproc-perf/1"
# Scale is about one picoproc monitor; native is its reference.
SCALE_BACKENDS = ("native", "pico")
SECTIONS = ("calls", "startup", "apps", "scale", "engine")


class Progress(BaseProgress):
    """The shared n/N progress (picoproc.bench.progress) with the perf
    suite's "workload x backend ... done in N s" steps."""

    def __init__(self, stream: TextIO | None, total: int = 0) -> None:
        super().__init__(total, stream)

    def step(self, what: str, backend: str, fn, *args, **kwargs):
        t = time.monotonic()
        super().step(f"{what} x {backend} ...")
        result = fn(*args, **kwargs)
        err = result.get("error") if isinstance(result, dict) else None
        self.note(f"{what} x {backend}: {'FAILED: ' + err if err else 'done'} in {time.monotonic() - t:.1f} s")
        return result

    def begin(self, text: str) -> None:
        """A step that reports its own lines (through note)."""
        BaseProgress.step(self, text)


def select_backends(requested: Sequence[str] | None) -> tuple[list[str], dict[str, str]]:
    """(backends to run, native first; {name: why it is not run}).  Unknown
    names raise ValueError naming them."""
    from picoproc.backends import backend_names, get_backend

    known = backend_names()
    names = list(requested) if requested else list(known)
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"unknown backend(s) {', '.join(unknown)}; known: {', '.join(known)}")
    if "native" not in names:
        names.insert(0, "native")  # the baseline of every ratio
    names = ["native"] + [n for n in dict.fromkeys(names) if n != "native"]
    run, skipped = [], {}
    for n in names:
        ok, why = get_backend(n).available()
        if ok:
            run.append(n)
        else:
            skipped[n] = why
    if "native" not in run:
        raise RuntimeError(f"the native baseline cannot run: {skipped.get('native')}")
    return run, skipped


def run_suite(backends: Sequence[str] | None = None, *, quick: bool = False, profile=None,
              progress: TextIO | None = sys.stderr, sections: Sequence[str] | None = None) -> dict:
    """Measures every section for every selected, available backend."""
    prof = profile or (workloads.QUICK if quick else workloads.FULL)
    sections = list(sections or SECTIONS)
    names, unavailable = select_backends(backends)
    pr = Progress(progress, _count_steps(names, sections, prof))
    pr.note(f"picoproc perf ({prof.name}): backends {', '.join(names)}"
            + (f"; unavailable: {', '.join(unavailable)}" if unavailable else ""))
    doc: dict = {
        "schema": SCHEMA,
        "profile": prof.name,
        "machine": describe_machine(),
        "backends": names,
        "unavailable": unavailable,
        "versions": _backend_versions(names),
    }
    work = workloads.make_workdir(prof)
    try:
        manifest = workloads.suite_manifest(work)
        runners = {n: workloads.BackendRunner(n, manifest) for n in names}
        if "calls" in sections:
            pr.begin("call classes")
            doc["floor"] = {}
            doc["calls"] = workloads.measure_call_classes(names, runners, work, prof, pr.note, doc["floor"])
            _add_ratios_calls(doc["calls"])
            doc["floor"]["compared"] = floor.compare(doc["calls"], doc["floor"])
        if "startup" in sections:
            doc["startup"] = _startup(names, runners, prof, pr)
        if "apps" in sections:
            doc["apps"] = _apps(names, runners, manifest, work, prof, pr)
        if "scale" in sections:
            # Each client count several times, the backends interleaved, so
            # that other load on the machine falls on all of them alike.
            scale_backends = [b for b in SCALE_BACKENDS if b in names]
            doc["scale"] = {n: {} for n in scale_backends}
            for clients in prof.scale_ns:
                runs = {n: [] for n in scale_backends}
                for r in range(prof.scale_runs):
                    for n in scale_backends:
                        runs[n].append(pr.step(
                            f"scale {clients} clients x {prof.scale_calls} stat, run {r + 1}/{prof.scale_runs}", n,
                            workloads.measure_scale, n, manifest, work, clients, prof.scale_calls))
                for n in scale_backends:
                    doc["scale"][n][str(clients)] = workloads.combine_scale_runs(runs[n])
        if "engine" in sections:
            from .engine import measure_engine_startup

            doc["engine"] = pr.step("container start-up under podman", "runc, crun, runsc, picoproc",
                                    measure_engine_startup, prof.cli_runs, pr.note)
        doc["profile_counts"] = {k: v for k, v in vars(prof).items() if k != "name"}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    doc["elapsed_s"] = time.monotonic() - pr.t0
    pr.note(f"finished in {doc['elapsed_s']:.1f} s")
    return doc


def _count_steps(names: Sequence[str], sections: Sequence[str], prof) -> int:
    """How many steps run_suite announces (for the n/N of its progress)."""
    from picoproc.manifest import default_manifest

    n = 0
    if "calls" in sections:
        n += 1
    if "startup" in sections:
        n += 3 + len(names)  # bare, the interleaved API runs, one CLI step per backend, exec inside
    if "apps" in sections:
        n += len(workloads.applications(default_manifest()))  # skipped ones are announced too
    if "scale" in sections:
        n += len([b for b in SCALE_BACKENDS if b in names]) * len(prof.scale_ns) * prof.scale_runs
    return n


def _backend_versions(names: Sequence[str]) -> dict[str, str]:
    from picoproc.backends import get_backend

    return {n: get_backend(n).available()[1] for n in names}


def _add_ratios_calls(calls: dict) -> None:
    base = calls.get("native", {}).get("classes", {})
    for entry in calls.values():
        for cls, s in entry.get("classes", {}).items():
            if "median" in s and "median" in base.get(cls, {}):
                s["ratio"] = stats.ratio(s["median"], base[cls]["median"])


def _startup(names, runners, prof, pr) -> dict:
    out: dict = {"api": {}, "cli": {}}
    # The floor: /bin/true started by subprocess with nothing around it.
    out["api"]["bare"] = pr.step("start-up /bin/true (API)", "bare subprocess", _bare_true, prof.startup_runs)
    for n in names:  # one untimed run each: first-use costs (imports, caches) are not start-up
        workloads.run_true(runners[n])

    def runs_of(n):
        return prof.startup_runs_slow if n in workloads.SLOW_BACKENDS else prof.startup_runs

    pr.begin("start-up /bin/true (API), every backend interleaved")
    out["api"].update(workloads.interleaved(names, runs_of, lambda n: workloads.run_true(runners[n]),
                                            pr.note, "start-up /bin/true (API)", scale=1000.0, unit="ms"))
    for n in names:
        out["cli"][n] = pr.step("start-up /bin/true (CLI)", n, workloads.measure_startup_cli, n, prof.cli_runs)
    pr.begin("exec inside a running sandbox (shell loops)")
    out["exec_inside"] = workloads.measure_exec_inside(names, runners, runners["native"].manifest,
                                                       prof.exec_runs, pr.note)
    for kind in ("api", "cli"):
        base = out[kind].get("native", {}).get("ms", {}).get("median")
        for entry in out[kind].values():
            if "ms" in entry:
                entry["ratio"] = stats.ratio(entry["ms"]["median"], base)
    return out


def _bare_true(runs: int) -> dict:
    walls = []
    for _ in range(runs + 1):
        t0 = time.perf_counter()
        subprocess.run(["/bin/true"], check=True)
        walls.append((time.perf_counter() - t0) * 1000.0)
    return {"ms": stats.summary(walls[1:])}


def _apps(names, runners, manifest, work, prof, pr) -> dict:
    out: dict = {}
    for app in workloads.applications(manifest):
        entry: dict = {"label": app.label, "results": {}}
        out[app.key] = entry
        pr.begin(app.label)
        if app.skip:
            entry["skipped"] = app.skip
            pr.note(f"{app.label}: skipped: {app.skip}")
            continue
        # One untimed native run first: the page cache is then warm for every backend alike.
        runners["native"].run(app.argv(work, "warmup"))
        for p in app.scratch("warmup"):
            _unlink(p)
        t = time.monotonic()

        def runs_of(n):
            return prof.app_runs_slow if n in workloads.SLOW_BACKENDS else prof.app_runs

        entry["results"] = workloads.interleaved(
            names, runs_of, lambda n, app=app: workloads.run_app_once(runners[n], app, work), pr.note, app.label)
        pr.note(f"{app.label}: done in {time.monotonic() - t:.1f} s")
        base = entry["results"].get("native", {}).get("s", {}).get("median")
        for r in entry["results"].values():
            if "s" in r:
                r["ratio"] = stats.ratio(r["s"]["median"], base)
    return out


def _unlink(path: str) -> None:
    import os

    try:
        os.unlink(path)
    except OSError:
        pass
