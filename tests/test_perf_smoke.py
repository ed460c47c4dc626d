"""The performance suite's plumbing (docs/PERFORMANCE.md), fast: ``--quick`` on native and
pico with tiny counts, checking that the Markdown, JSON and PNG outputs are
produced and well-formed.  No timing is ever asserted here: the numbers of a
tiny run are noise; docs/PERFORMANCE.md holds the real ones.

Plus the pure parts the tables rest on: percentiles, the guests' latency
histogram encoding (checked against the C guest itself), target verdicts,
and one-line errors for bad options.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile

import pytest
from picoproc.bench.perf import report, stats, workloads

pytestmark = pytest.mark.unit

SMOKE_TIMEOUT = 300  # a hung run fails; a normal smoke takes a small part of this


def _pico_available() -> tuple[bool, str]:
    from picoproc.backends import get_backend

    return get_backend("pico").available()


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    ok, why = _pico_available()
    if not ok:
        pytest.skip(f"the pico backend cannot run here: {why}")
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        pytest.skip("matplotlib is not installed (pip install -e '.[test]')")
    out = tmp_path_factory.mktemp("perf")
    json_path, png_path = out / "perf.json", out / "perf.png"
    # The work directory must be outside /tmp (every sandbox replaces /tmp
    # with its scratch); a base of our own shows whether the run cleans up.
    work_base = tempfile.mkdtemp(prefix="picoproc-perf-smoke-", dir="/var/tmp" if os.path.isdir("/var/tmp") else None)
    os.chmod(work_base, 0o755)  # the guest identity (nobody) may need to traverse it
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "picoproc.bench.perf", "--quick", "--backends", "native,pico",
             "--factor", "0.05", "--json", str(json_path), "--plot", str(png_path)],
            capture_output=True, text=True, timeout=SMOKE_TIMEOUT, check=False,
            env={**os.environ, "PICOPROC_PERF_WORKDIR": work_base})
        leftovers = os.listdir(work_base)
    finally:
        shutil.rmtree(work_base, ignore_errors=True)
    return proc, json_path, png_path, leftovers


@pytest.mark.root
@pytest.mark.slow
def test_smoke_exits_zero_and_shows_progress(smoke):
    proc, *_ = smoke
    assert proc.returncode == 0, proc.stderr[-2000:]
    # Progress on stderr: workload x backend with elapsed time, for each section.
    for what in ("call classes round 1/1 x native: done", "call classes round 1/1 x pico",
                 "start-up /bin/true (API) round 1/1: native", "start-up /bin/true (CLI) x pico",
                 "python3 -c imports round 1/1: native", "scale 32 clients"):
        assert what in proc.stderr, f"no progress line for {what!r}"
    assert "finished in" in proc.stderr
    # Every line says which step of how many, and the time so far.
    steps = re.findall(r"^\[ *(\d+)/(\d+) +[\d.]+ s\] ", proc.stderr, re.MULTILINE)
    assert steps and len(steps) == len(proc.stderr.splitlines()), proc.stderr[-2000:]
    totals = {int(total) for _, total in steps}
    assert len(totals) == 1 and int(steps[-1][0]) == totals.pop(), steps[-3:]


@pytest.mark.root
@pytest.mark.slow
def test_smoke_markdown_tables_are_well_formed(smoke):
    proc, *_ = smoke
    md = proc.stdout
    for heading in ("### Against the kernel's floor", "### Call classes", "### Start-up",
                    "#### Exec inside a running sandbox", "### Applications", "### Scale",
                    "### Container start-up under podman", "### Targets"):
        assert heading in md
    # The floor table leads.
    assert md.index("### Against the kernel's floor") < md.index("### Call classes")
    tables, current = [], []
    for line in md.splitlines() + [""]:
        if line.startswith("|"):
            current.append(line)
        elif current:
            tables.append(current)
            current = []
    by_header = {t[0].split("|")[1].strip(): t for t in tables}
    # floor, floor rows, call classes, start-up, exec inside, applications, scale, targets (+ where
    # the time goes, when pico ran the apps; + container start-up per runtime, when podman is installed)
    assert {"call class", "mechanism", "call", "/bin/true", "program", "workload", "backend",
            "target"} <= set(by_header)
    assert len(tables) in (8, 9, 10)
    floor_table = by_header["call class"]
    assert [row.split("|")[1].strip() for row in floor_table[2:]] == [
        "getppid (direct)", "stat (mediated)", "open+close (mediated)"]
    for row in floor_table[2:]:
        assert re.fullmatch(r"\*\*\d+\.\d\dx\*\*", row.rstrip(" |").rsplit("|", 1)[1].strip()), row
    assert ("runtime" in by_header) == (shutil.which("podman") is not None and os.geteuid() == 0)
    for table in tables:
        widths = {len(row.replace("\\|", "").split("|")) for row in table}
        assert len(widths) == 1, f"ragged table: {table[0]}"
        assert set(table[1].strip("|").split("|")) == {"---"}
    call_table = by_header["call"]
    assert call_table[0].split("|")[3:5] == [" native ", " pico "]
    assert len(call_table) == 2 + len(workloads.CALL_CLASSES)
    targets_table = by_header["target"]
    assert len(targets_table) == 2 + len(report.TARGETS_TEXT)
    for row in targets_table[2:]:
        verdict = row.rstrip(" |").rsplit("|", 1)[1].strip()
        assert verdict.startswith(("met", "MISSED", "not measured")), row


def _is_summary(s: dict) -> bool:
    keys = {"median", "p10", "p90", "min", "max", "n"}
    return keys <= s.keys() and s["n"] >= 1 and s["min"] <= s["p10"] <= s["median"] <= s["p90"] <= s["max"]


@pytest.mark.root
@pytest.mark.slow
def test_smoke_json_is_complete(smoke):
    _, json_path, *_ = smoke
    doc = json.loads(json_path.read_text())
    assert doc["schema"] == "picoproc-perf/1"
    assert doc["backends"] == ["native", "pico"]
    m = doc["machine"]
    assert m["cores"] >= 1 and m["kernel"] and m["cpu_model"] and m["date_utc"]
    for backend in ("native", "pico"):
        classes = doc["calls"][backend]["classes"]
        assert set(classes) == set(workloads.CALL_CLASSES)
        for cls, s in classes.items():
            # Either a measurement or a stated failure, never an empty cell.
            assert ("error" in s) != _is_summary(s), (backend, cls, s)
    # The native baseline itself must always work: every ratio rests on it.
    for cls, s in doc["calls"]["native"]["classes"].items():
        assert _is_summary(s) and s["median"] > 0 and math.isclose(s["ratio"], 1.0), cls
        assert s["iters"] >= 16
    for kind in ("api", "cli"):
        assert _is_summary(doc["startup"][kind]["native"]["ms"])
        assert "pico" in doc["startup"][kind]
    assert _is_summary(doc["startup"]["api"]["bare"]["ms"])
    assert set(doc["apps"]) == {"py_imports", "py_regrtest", "sqlite_inserts", "tar_czf", "gcc_compile"}
    for key, app in doc["apps"].items():
        if app.get("skipped"):
            assert app["skipped"].strip(), key
            continue
        assert _is_summary(app["results"]["native"]["s"]), key
        pico = app["results"]["pico"]
        assert ("error" in pico) != ("s" in pico), (key, pico)
        if "error" in pico:
            assert pico["error"].startswith("fails: ")
    for backend in ("native", "pico"):
        assert set(doc["scale"][backend]) == {"1", "8", "32"}
        for n, s in doc["scale"][backend].items():
            if "error" in s:
                assert backend == "pico", s  # the native reference must run
                continue
            assert s["clients"] == int(n)
            factor = workloads.NATIVE_SCALE_FACTOR if backend == "native" else 1
            assert s["calls"] == int(n) * doc["profile_counts"]["scale_calls"] * factor
            assert s["calls_per_s"] > 0 and 0 < s["p50_ns"] <= s["p99_ns"] <= s["max_ns"]
            assert len(s["runs"]) == doc["profile_counts"]["scale_runs"]
            assert s["calls_per_s"] in [r["calls_per_s"] for r in s["runs"]]
    from picoproc.bench.perf import floor

    for row in floor.FLOOR_CLASSES:
        assert _is_summary(doc["floor"]["classes"][row]), row
    for cls, candidates in floor.FLOOR_ROWS.items():
        c = doc["floor"]["compared"][cls]
        assert c["floor_row"] in candidates
        assert c["floor_ns"] == min(doc["floor"]["classes"][r]["median"] for r in candidates)
        assert math.isclose(c["ratio"], doc["calls"]["pico"]["classes"][cls]["median"] / c["floor_ns"])
    for label in ("/bin/true", "python3 -c pass"):
        entry = doc["startup"]["exec_inside"][label]
        assert set(entry) == {"native", "pico", *workloads.EXEC_FLOORS}
        assert math.isclose(entry["native"]["ratio"], 1.0)
        assert _is_summary(entry["pico"]["loop_ms"]) and _is_summary(entry["pico"]["once_ms"])
        # The floors ran the same loops: the notifying one saw every exec's
        # calls naming a file (at least the execve), the filter alone none.
        floor = entry["notified"]
        assert _is_summary(floor["loop_ms"]) and floor["calls_per_exec"] >= 1, floor
        assert entry["filtered"]["calls_per_exec"] == 0
        assert math.isclose(entry["pico"]["floor_ratio"], entry["pico"]["ms"] / floor["ms"])
    assert _is_summary(doc["startup"]["cli"]["pico"]["interpreter_ms"])
    for n in ("8", "32"):
        s = doc["scale"]["pico"][n]
        if "error" not in s and s["slowest_to_fastest"] is not None:
            assert 0 <= s["slowest_to_fastest"] <= 1 and s["client_rate_min"] <= s["client_rate_max"]
    assert [t["target"] for t in doc["targets"]] == [k for k, _ in report.TARGETS_TEXT]
    assert all(t["met"] in (True, False, None) for t in doc["targets"])


@pytest.mark.root
@pytest.mark.slow
def test_smoke_plot_is_a_png(smoke):
    _, _, png_path, _ = smoke
    data = png_path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    import matplotlib.image

    img = matplotlib.image.imread(str(png_path))
    assert img.shape[0] > 200 and img.shape[1] > 400


@pytest.mark.root
@pytest.mark.slow
def test_smoke_leaves_no_work_directory(smoke):
    *_, leftovers = smoke
    assert leftovers == []


# ---------------------------------------------------------------------------
# The pure parts.


def test_percentile_interpolates_and_rejects_bad_input():
    assert stats.percentile([5.0], 50) == 5.0
    assert stats.percentile([1, 2, 3, 4], 50) == 2.5
    assert stats.percentile([10, 0, 20], 0) == 0 and stats.percentile([10, 0, 20], 100) == 20
    assert math.isclose(stats.percentile(list(range(11)), 90), 9.0)
    with pytest.raises(ValueError):
        stats.percentile([], 50)
    with pytest.raises(ValueError):
        stats.percentile([1], 101)


def test_histogram_buckets_are_contiguous_and_ordered():
    lows = [stats.hist_bucket_low(i) for i in range(stats.HIST_SUB * 40)]
    assert lows[:16] == list(range(16))
    assert all(a < b for a, b in itertools.pairwise(lows))
    # Relative width of a bucket above 16 ns is at most 1/16.
    assert all((b - a) / a <= 1 / 16 + 1e-9 for a, b in itertools.pairwise(lows[16:]))


@pytest.mark.root
def test_histogram_decoding_matches_the_guest(tmp_path):
    """The C guest's bucket of a known latency decodes to a range holding it:
    run statloop natively on a file and check every reported bucket decodes
    to a plausible range and the counts add up."""
    from picoproc.bench.perf.guests import build_guest

    exe = build_guest("statloop")
    target = tmp_path / "f"
    target.write_bytes(b"x")
    p = subprocess.run([str(exe), str(target), "500"], input=b"g", capture_output=True, timeout=60, check=True)
    lines = p.stdout.decode().splitlines()
    assert lines[0] == "ready"
    parsed = workloads._parse_statloop(lines[1])
    assert parsed["calls"] == 500 and sum(parsed["hist"].values()) == 500
    assert parsed["end"] - parsed["start"] >= sum(stats.hist_bucket_low(i) * c for i, c in parsed["hist"].items())


def test_parse_hist_rejects_garbage():
    assert stats.parse_hist("3:2,3:1,20:5") == {3: 3, 20: 5}
    for bad in ("3", "a:1", "3:-1", "3:1:2"):
        with pytest.raises(ValueError):
            stats.parse_hist(bad)
    merged = stats.merge_hists([{1: 2}, {1: 1, 40: 1}])
    assert merged == {1: 3, 40: 1}
    assert stats.hist_percentile(merged, 50) == 1
    assert stats.hist_percentile(merged, 100) == stats.hist_bucket_mid(40)


def _doc(pico_getppid=300.0, pico_stat=4000.0, scale_rate=150_000.0, fairness=0.9, cpu_s=1.0):
    def summ(v):
        return {"median": v, "p10": v, "p90": v, "min": v, "max": v, "n": 1}

    native = {c: summ(100.0) for c in workloads.CALL_CLASSES}
    pico = {c: summ(1000.0) for c in workloads.CALL_CLASSES}
    pico["getppid"], pico["stat"] = summ(pico_getppid), summ(pico_stat)
    pico["uname"] = pico["getcwd"] = summ(50.0)
    for s in pico.values():
        s["ratio"] = s["median"] / 100.0
    calls = {"native": {"classes": native}, "pico": {"classes": pico}}
    fl = {"classes": {"getppid_filtered": summ(120.0), "stat_floor": summ(2000.0), "open_addfd": summ(900.0),
                      "open_channel": summ(800.0)}}
    from picoproc.bench.perf import floor

    fl["compared"] = floor.compare(calls, fl)
    return {
        "backends": ["native", "pico"],
        "calls": calls,
        "floor": fl,
        "apps": {"gcc_compile": {"label": "gcc", "results": {"native": {"s": summ(1.0), "ratio": 1.0},
                                                              "pico": {"error": "fails: exit status 1: ld"}}}},
        "scale": {"pico": {n: {"calls_per_s": scale_rate, "p50_ns": 1000.0, "p99_ns": 9000.0,
                               "calls": 100_000, "harness_cpu_s": cpu_s, "slowest_to_fastest": fairness}
                           for n in ("8", "32")}},
    }


def test_floor_is_the_cheapest_mechanism():
    from picoproc.bench.perf import floor

    compared = _doc()["floor"]["compared"]
    assert compared["openclose"]["floor_row"] == "open_channel" and compared["openclose"]["floor_ns"] == 800.0
    assert compared["stat"] == {"floor_row": "stat_floor", "floor_ns": 2000.0, "pico_ns": 4000.0, "ratio": 2.0}
    # A class the floor did not measure is left out, not compared with nothing.
    assert "stat" not in floor.compare(_doc()["calls"], {"classes": {}})


def test_targets_report_met_missed_and_by_how_much():
    verdicts = {t["target"]: t for t in report.evaluate_targets(_doc())}
    assert verdicts["direct"]["met"] is False and verdicts["direct"]["miss"] == "2.4x the target"
    assert verdicts["floor_stat"]["met"] is False and verdicts["floor_stat"]["miss"] == "33 % over the target"
    assert verdicts["floor_open"]["met"] is True  # 1000 ns against open_channel's 800
    assert verdicts["emulated"]["met"] is True
    assert verdicts["apps"]["met"] is False and "gcc fails" in verdicts["apps"]["miss"]
    assert verdicts["startup"]["met"] is None and verdicts["gvisor"]["met"] is None
    assert verdicts["scale"]["met"] is True
    assert verdicts["monitor_cpu"]["met"] is False and verdicts["monitor_cpu"]["miss"].startswith("2.0x the target")
    slow = {t["target"]: t for t in report.evaluate_targets(_doc(scale_rate=25_000.0, fairness=0.5, cpu_s=0.4))}
    assert slow["scale"]["met"] is False
    assert "4.0x too low" in slow["scale"]["miss"] and "slowest at 0.50 of the fastest" in slow["scale"]["miss"]
    assert slow["monitor_cpu"]["met"] is True
    md = report.markdown({**_doc(), "targets": report.evaluate_targets(_doc())})
    assert "MISSED: 2.4x the target" in md
    near = {t["target"]: t for t in report.evaluate_targets(_doc(pico_getppid=130.0))}
    assert near["direct"]["miss"] == "3.2 % over the target"  # 130 ns against 120 ns x 1.05


@pytest.mark.parametrize("argv, message", [
    (["--backends", "native,nosuch"], "unknown backend(s) nosuch"),
    (["--plot", "out.jpg"], "ending in .png"),
    (["--only", "calls,bogus"], "unknown section(s) bogus"),
])
@pytest.mark.root
def test_bad_options_are_one_line_errors(argv, message, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "picoproc.bench.perf", *argv], capture_output=True, text=True,
                          timeout=120, check=False, cwd=tmp_path)
    assert proc.returncode == 125
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stdout == ""


def test_add_perf_parser_wires_a_bench_subcommand():
    import argparse

    from picoproc.bench.perf import add_perf_parser, run_perf_command

    parser = argparse.ArgumentParser(prog="picoproc bench")
    add_perf_parser(parser.add_subparsers(dest="bench_cmd"))
    args = parser.parse_args(["perf", "--backends", "native,pico", "--quick", "--json", "x.json"])
    assert args.func is run_perf_command
    assert args.backends == ["native", "pico"] and args.quick and args.json == "x.json" and args.factor == 1.0
    with pytest.raises(SystemExit):
        parser.parse_args(["perf", "--factor", "0"])


@pytest.mark.root
def test_scale_with_clients_that_cannot_start_fails_fast(tmp_path):
    """Clients that die before "ready" end the start barrier at once (a run
    must never wait out its whole deadline for clients that are gone)."""
    import threading

    from picoproc.bench.perf.guests import build_guest
    from picoproc.manifest import default_manifest

    (tmp_path / "bin").mkdir()
    shutil.copy(build_guest("statloop"), tmp_path / "bin" / "statloop")
    # No data/file: every client fails its first stat and exits before "ready".
    box: dict = {}
    t = threading.Thread(target=lambda: box.update(r=workloads.measure_scale(
        "native", default_manifest(), tmp_path, 3, 10, timeout=600)), daemon=True)
    t.start()
    t.join(60)
    assert not t.is_alive(), "measure_scale waited for clients that had already exited"
    assert box["r"]["error"].startswith("fails: ")
    assert "only 0 of 3 clients started" in box["r"]["error"]


def test_fairness_is_measured_while_every_client_runs():
    def client(start, end, calls=64):
        # Even progress from start to end: a mark every 1/64 of the calls.
        marks = [start + (end - start) * (k + 1) // 64 for k in range(64)]
        return {"calls": calls, "start": start, "end": end, "marks": marks}

    # Two clients at the same pace, one of them started late and finished
    # late: fair while both ran (their average rates differ only by overlap).
    assert workloads._fairness([client(0, 1000), client(500, 1500)])[:2] == (6.4e7, 6.4e7)
    # Half the pace: half the rate.
    slow, fast, window = workloads._fairness([client(0, 2000), client(0, 1000)])
    assert (slow, fast, window) == (3.2e7, 6.4e7, 0.5)
    # Never running at once: no window, no verdict.
    assert workloads._fairness([client(0, 10), client(20, 30)]) is None


def test_scale_runs_combine_into_the_median_run_with_the_median_fairness():
    runs = [{"calls_per_s": 300.0, "slowest_to_fastest": 0.9, "p50_ns": 3.0},
            {"calls_per_s": 100.0, "slowest_to_fastest": 0.2, "p50_ns": 1.0},
            {"error": "fails: client 3: boom"},
            {"calls_per_s": 200.0, "slowest_to_fastest": None, "p50_ns": 2.0}]
    doc = workloads.combine_scale_runs(runs)
    assert doc["calls_per_s"] == 200.0 and doc["p50_ns"] == 2.0  # the median run, whole
    assert doc["slowest_to_fastest"] == 0.2 and doc["fairness_range"] == [0.2, 0.9]
    assert [r["calls_per_s"] for r in doc["runs"]] == [300.0, 100.0, 200.0]
    assert doc["failed_runs"] == ["fails: client 3: boom"]
    assert workloads.combine_scale_runs([{"error": "fails: x"}]) == {"error": "fails: x"}
