"""Turns a suite document into Markdown tables, target verdicts, a plot and
docs/PERFORMANCE.md."""

from __future__ import annotations

import pathlib

from .workloads import CALL_CLASS_KIND, CALL_CLASS_LABEL, CALL_CLASSES, EXEC_FLOORS, EXEC_LOOP

# The targets, reported, never asserted: the floor-relative ones first, then
# the earlier ones that they do not replace.
TARGETS_TEXT = [
    ("floor_stat", "mediated stat <= 1.5x its kernel floor (same run)"),
    ("floor_open", "mediated open+close <= 1.5x its kernel floor (same run)"),
    ("monitor_cpu", "monitor CPU per mediated call <= 5 us"),
    ("scale", "8 and 32 concurrent clients: >= 100 000 mediated calls/s total, slowest client >= 2/3 of the fastest"),
    ("exec_inside", "exec inside a running picoprocess: python3 -c pass <= 1.15x native, /bin/true <= 1.3x"),
    ("cli", "CLI /bin/true <= 30 ms"),
    ("api", "API /bin/true <= native + 3 ms"),
    ("apps", "applications <= 1.15x native"),
    ("direct", "direct call (getppid) <= 1.05x a process with a 4-instruction filter"),
    ("emulated", "rewritten emulated calls (uname, getcwd) <= native"),
    ("startup", "/bin/true start-up no slower than bwrap"),
    ("gvisor", "every row at least 10x faster than gvisor"),
]
TARGET_FLOOR_RATIO = 1.5
TARGET_MONITOR_CPU_NS = 5000
TARGET_SCALE_CALLS = 100_000
TARGET_SCALE_FAIRNESS = 2 / 3
TARGET_EXEC = {"python3 -c pass": 1.15, "/bin/true": 1.3}
TARGET_CLI_MS = 30.0
TARGET_API_EXTRA_MS = 3.0
TARGET_APPS = 1.15
TARGET_DIRECT_FLOOR = 1.05


def _cli_floors(doc: dict, cpu: bool = False) -> str:
    """' (...)': the CLI's floors measured with it: the interpreter with the
    site module (`python -c pass`, a console script's start) and without it
    (`python -S -c pass`, the `picoproc` command's), and bwrap's start
    (Python API) as the peer's reference."""
    startup = doc.get("startup", {})
    cli = startup.get("cli", {}).get("pico", {})

    def ms(key: str) -> str:
        wall = cli.get(key, {}).get("median")
        if wall is None:
            return ""
        used = cli.get(f"cpu_{key}", {}).get("median")
        return f"{wall:.1f} ms" + (f" ({used:.1f} ms CPU)" if cpu and used is not None else "")

    parts = [f"pico CLI {ms('ms')}"] if cpu else []
    if ms("interpreter_ms"):
        parts.append(f"the interpreter alone: `python -c pass` {ms('interpreter_ms')}")
    if ms("interpreter_nosite_ms"):
        parts.append(f"`python -S -c pass` {ms('interpreter_nosite_ms')}")
    bwrap = startup.get("api", {}).get("bwrap", {}).get("ms", {}).get("median")
    if bwrap is not None:
        parts.append(f"bwrap through the Python API {bwrap:.1f} ms")
    return f" ({'; '.join(parts)})" if parts else ""

def fmt_ns(ns: float | None) -> str:
    if ns is None:
        return "-"
    if ns < 0:
        return "-" + fmt_ns(-ns)
    if ns < 1000:
        return f"{ns:.0f} ns"
    if ns < 1e6:
        return f"{ns / 1e3:.1f} us"
    if ns < 1e9:
        return f"{ns / 1e6:.1f} ms"
    return f"{ns / 1e9:.2f} s"


def fmt_ratio(r: float | None) -> str:
    if r is None:
        return ""
    return f" ({r:.2f}x)" if r < 10 else f" ({r:.0f}x)"


def _cell(summary: dict | None, scale_ns: float, ratio: float | None, error: str | None) -> str:
    if error:
        return error if error.startswith("fails") else f"fails: {error}"
    if not summary:
        return "-"
    med = fmt_ns(summary["median"] * scale_ns)
    spread = f" [{fmt_ns(summary['p10'] * scale_ns)}-{fmt_ns(summary['p90'] * scale_ns)}]"
    return med + spread + fmt_ratio(ratio)


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows]
    return out


def rows_by_workload(doc: dict) -> list[tuple[str, dict[str, float | None], dict[str, str | None]]]:
    """(workload label, {backend: median seconds}, {backend: error}) for every
    row of the call-class, start-up and application tables: what the plot
    and the "10x faster than gvisor" verdict are computed from."""
    rows = []
    for cls in CALL_CLASSES:
        vals, errs = {}, {}
        for b, entry in doc.get("calls", {}).items():
            s = entry.get("classes", {}).get(cls, {})
            vals[b] = s["median"] / 1e9 if "median" in s else None
            errs[b] = s.get("error")
        rows.append((f"{CALL_CLASS_LABEL[cls]} ({CALL_CLASS_KIND[cls]})", vals, errs))
    for kind, label in (("api", "/bin/true start-up (API)"), ("cli", "/bin/true start-up (CLI)")):
        entries = doc.get("startup", {}).get(kind, {})
        if entries:
            rows.append((label, {b: e["ms"]["median"] / 1e3 if "ms" in e else None for b, e in entries.items()
                                 if b != "bare"},
                         {b: e.get("error") for b, e in entries.items() if b != "bare"}))
    for app in doc.get("apps", {}).values():
        if app.get("skipped"):
            continue
        res = app["results"]
        rows.append((app["label"], {b: r["s"]["median"] if "s" in r else None for b, r in res.items()},
                     {b: r.get("error") for b, r in res.items()}))
    return rows


# ---------------------------------------------------------------------------
# Targets.


def over(value: float, target: float) -> str:
    """How far ``value`` is above ``target``: a percentage below 2x, else a factor."""
    f = value / target
    if f >= 2:
        return f"{f:.1f}x the target"
    pct = (f - 1) * 100
    return f"{pct:.1f} % over the target" if pct < 10 else f"{pct:.0f} % over the target"


def evaluate_targets(doc: dict) -> list[dict]:
    """One verdict per target: met True/False, or None when not measured,
    with the measured value and, when missed, by how much."""
    out = []

    def verdict(key, value_text, met, miss=None, note=None):
        text = dict(TARGETS_TEXT)[key]
        out.append({"target": key, "text": text, "value": value_text, "met": met,
                    "miss": miss if met is False else None, "note": note})

    calls = doc.get("calls", {})
    pico = calls.get("pico", {}).get("classes", {})
    nat = calls.get("native", {}).get("classes", {})
    compared = doc.get("floor", {}).get("compared", {})
    floor_rows = doc.get("floor", {}).get("classes", {})

    for key, cls in (("floor_stat", "stat"), ("floor_open", "openclose")):
        c = compared.get(cls)
        if c:
            verdict(key, f"{c['ratio']:.2f}x ({fmt_ns(c['pico_ns'])} vs {fmt_ns(c['floor_ns'])}, "
                         f"{c['floor_row']})", c["ratio"] <= TARGET_FLOOR_RATIO,
                    over(c["ratio"], TARGET_FLOOR_RATIO))
        else:
            verdict(key, "not measured", None, note=doc.get("floor", {}).get("error") or pico.get(cls, {}).get("error"))

    g = pico.get("getppid", {})
    f = floor_rows.get("getppid_filtered", {})
    if "median" in g and "median" in f:
        r = g["median"] / f["median"]
        verdict("direct", f"{r:.2f}x ({fmt_ns(g['median'])} vs {fmt_ns(f['median'])}; native "
                          f"{fmt_ns(nat.get('getppid', {}).get('median'))})", r <= TARGET_DIRECT_FLOOR,
                over(r, TARGET_DIRECT_FLOOR))
    else:
        verdict("direct", "not measured", None, note=g.get("error"))

    emu = [(c, pico[c], nat[c]) for c in ("uname", "getcwd")
           if "median" in pico.get(c, {}) and "median" in nat.get(c, {})]
    if emu:
        worst = max(emu, key=lambda x: x[1]["median"] / x[2]["median"])
        r = worst[1]["median"] / worst[2]["median"]
        verdict("emulated", ", ".join(f"{c} {fmt_ns(p['median'])} (native {fmt_ns(n['median'])})" for c, p, n in emu),
                r <= 1.0, f"{worst[0]} {over(r, 1.0)}",
                note=(f"from glibc's wrappers, whose call sites the library OS rewrites after the first trap; "
                      f"a call that traps every time (uname via syscall(2)) costs {fmt_ns(pico['uname_trap']['median'])}"
                      if "median" in pico.get("uname_trap", {}) else None))
    else:
        verdict("emulated", "not measured", None)

    scale = doc.get("scale", {}).get("pico", {})
    cpu = [(int(k), v["harness_cpu_s"] / v["calls"] * 1e9) for k, v in scale.items()
           if v.get("calls") and "harness_cpu_s" in v]
    if cpu:
        worst = max(cpu, key=lambda x: x[1])
        verdict("monitor_cpu", ", ".join(f"{fmt_ns(ns)} ({n} client{'s' if n > 1 else ''})" for n, ns in sorted(cpu)),
                worst[1] <= TARGET_MONITOR_CPU_NS, f"{over(worst[1], TARGET_MONITOR_CPU_NS)} at {worst[0]} clients",
                note="the harness process's CPU (the monitor's threads and the Python runs) per served call")
    else:
        verdict("monitor_cpu", "not measured", None)

    parts, met, miss = [], True, []
    for n in ("8", "32"):
        sc = scale.get(n)
        if not sc or "calls_per_s" not in sc:
            parts.append(f"{n} clients: {(sc or {}).get('error', 'not measured')}")
            met = None if met is not False and not sc else False
            continue
        fair = sc.get("slowest_to_fastest")
        ref = (doc.get("scale", {}).get("native", {}).get(n) or {}).get("slowest_to_fastest")
        parts.append(f"{n} clients: {sc['calls_per_s']:,.0f} calls/s, slowest/fastest "
                     f"{fair:.2f}" + (f" (native clients: {ref:.2f})" if ref is not None else "")
                     if fair is not None else f"{n} clients: {sc['calls_per_s']:,.0f} calls/s")
        if sc["calls_per_s"] < TARGET_SCALE_CALLS:
            met = False
            miss.append(f"{n} clients: throughput {TARGET_SCALE_CALLS / sc['calls_per_s']:.1f}x too low")
        if fair is not None and fair < TARGET_SCALE_FAIRNESS:
            met = False
            miss.append(f"{n} clients: slowest at {fair:.2f} of the fastest")
    verdict("scale", "; ".join(parts), met, "; ".join(miss))

    ex = doc.get("startup", {}).get("exec_inside", {})
    parts, met, miss = [], None, []
    for label, limit in TARGET_EXEC.items():
        e = ex.get(label, {}).get("pico", {}) if isinstance(ex.get(label), dict) else {}
        if "ratio" in e and e["ratio"] is not None:
            fl = ex[label].get("notified", {})
            parts.append(f"{label} {e['ratio']:.2f}x ({e['ms']:.2f} ms vs {ex[label]['native']['ms']:.2f} ms"
                         + (f"; kernel floor {fl['ms']:.2f} ms, {fl['ratio']:.2f}x native, pico "
                            f"{e['floor_ratio']:.2f}x the floor" if e.get("floor_ratio") is not None else "")
                         + ")")
            met = (met is not False) and e["ratio"] <= limit
            if e["ratio"] > limit:
                miss.append(f"{label} {over(e['ratio'], limit)}")
        elif e.get("error"):
            parts.append(f"{label}: {e['error']}")
            met = False
            miss.append(f"{label} fails")
    verdict("exec_inside", "; ".join(parts) or "not measured", met, "; ".join(miss),
            note=f"marginal cost: a shell loop of {EXEC_LOOP} execs minus one of 1, per exec")

    cli = doc.get("startup", {}).get("cli", {}).get("pico", {})
    if "ms" in cli:
        verdict("cli", f"{cli['ms']['median']:.1f} ms" + _cli_floors(doc),
                cli["ms"]["median"] <= TARGET_CLI_MS, over(cli["ms"]["median"], TARGET_CLI_MS))
    else:
        verdict("cli", cli.get("error", "not measured"), None)

    api = doc.get("startup", {}).get("api", {})
    p, n = api.get("pico", {}).get("ms"), api.get("native", {}).get("ms")
    if p and n:
        extra = p["median"] - n["median"]
        verdict("api", f"native + {extra:.1f} ms ({p['median']:.1f} vs {n['median']:.1f} ms)",
                extra <= TARGET_API_EXTRA_MS, f"{extra - TARGET_API_EXTRA_MS:.1f} ms over")
    else:
        verdict("api", "not measured", None)

    ratios, failing = [], []
    for app in doc.get("apps", {}).values():
        r = app.get("results", {}).get("pico", {})
        if r.get("ratio") is not None:
            ratios.append((r["ratio"], app["label"]))
        elif "error" in r:
            failing.append(app["label"])
    if ratios or failing:
        slow = [f"{label} {over(r, TARGET_APPS)}" for r, label in sorted(ratios, reverse=True) if r > TARGET_APPS]
        verdict("apps", ", ".join(f"{label} {r:.2f}x" for r, label in ratios)
                + (f"; pico fails: {', '.join(failing)}" if failing else ""),
                not slow and not failing, "; ".join(slow + [f"{f} fails" for f in failing]))
    else:
        verdict("apps", "not measured", None)

    api = doc.get("startup", {}).get("api", {})
    p, bw = api.get("pico", {}).get("ms"), api.get("bwrap", {}).get("ms")
    if p and bw:
        verdict("startup", f"pico {p['median']:.1f} ms, bwrap {bw['median']:.1f} ms (Python API)",
                p["median"] <= bw["median"], f"{p['median'] / bw['median']:.2f}x bwrap")
    else:
        verdict("startup", "not measured" if not p else f"pico {p['median']:.1f} ms; bwrap not run", None)

    if "gvisor" in doc.get("backends", []):
        speedups, failing = [], []
        for label, vals, errs in rows_by_workload(doc):
            pv, gv, nv = vals.get("pico"), vals.get("gvisor"), vals.get("native")
            if pv and gv:
                speedups.append((gv / pv, label, gv / nv if nv else None))
            elif errs.get("pico"):
                failing.append(label)
        slow = sorted(s for s in speedups if s[0] < 10)
        worst = min(speedups) if speedups else None
        value = f"{len(speedups) - len(slow)} of {len(speedups)} rows; lowest: {worst[0]:.1f}x ({worst[1]})" \
            if worst else "no row measured on both"
        if failing:
            value += f"; pico fails: {', '.join(failing)}"
        unreachable = [s for s in slow if s[2] is not None and s[2] < 10]
        note = (f"{len(unreachable)} of the missed rows cannot meet it: gVisor itself is under 10x native there"
                if unreachable else None)
        verdict("gvisor", value, (not slow and not failing) if speedups else None,
                "; ".join(f"{label} {s:.1f}x" + (f" (gvisor {g:.1f}x native)" if g is not None else "")
                          for s, label, g in slow)
                + (f"; failing rows: {len(failing)}" if failing else ""), note)
    else:
        verdict("gvisor", "gvisor not run", None)
    order = [k for k, _ in TARGETS_TEXT]
    return sorted(out, key=lambda t: order.index(t["target"]))


# ---------------------------------------------------------------------------
# Markdown.


def floor_markdown(doc: dict) -> list[str]:
    """The table the suite leads with: each mediated class (and the direct
    call) against the kernel's floor measured in the same run."""
    from .floor import FLOOR_ROW_LABEL, FLOOR_ROWS

    fl = doc.get("floor") or {}
    if not fl:
        return []
    lines = ["### Against the kernel's floor, measured in the same run", "",
             ("The floor is what any seccomp user-notification monitor pays on this machine: "
              "`benchmarks/floor/notif_floor.c`, a supervisor that does only the host call and answers at "
              "once (SYNC_WAKE_UP), run natively in every round of the call classes, between the backends, "
              "and timed like the guest (per-call means of batches).  For open+close the floor is the "
              "cheapest way measured of handing the fd back.  Median [p10-p90].")]
    if fl.get("error"):
        lines += ["", f"Floor not (fully) measured: {fl['error']}"]
    lines.append("")
    calls = doc.get("calls", {})
    rows = []
    for cls, candidates in FLOOR_ROWS.items():
        c = fl.get("compared", {}).get(cls)
        nat = calls.get("native", {}).get("classes", {}).get(cls, {})
        pico = calls.get("pico", {}).get("classes", {}).get(cls, {})
        if not c:
            continue
        floor_s = fl["classes"][c["floor_row"]]
        rows.append([f"{CALL_CLASS_LABEL[cls]} ({CALL_CLASS_KIND[cls]})",
                     _cell(nat if "median" in nat else None, 1.0, None, nat.get("error")),
                     _cell(floor_s, 1.0, None, None), FLOOR_ROW_LABEL[c["floor_row"]],
                     _cell(pico, 1.0, None, None), f"**{c['ratio']:.2f}x**"])
    lines += _table(["call class", "native", "kernel floor", "floor: how", "pico", "pico / floor"], rows) + [""]
    others = [[FLOOR_ROW_LABEL.get(r, r), _cell(s, 1.0, None, None)] for r, s in fl.get("classes", {}).items()
              if r in FLOOR_ROW_LABEL]
    if others:
        lines += ["Every floor row of the run:", ""] + _table(["mechanism", "per call"], others) + [""]
    confined = fl.get("classes", {}).get("stat_confined", {})
    pico_stat = calls.get("pico", {}).get("classes", {}).get("stat", {})
    if "median" in confined and "median" in pico_stat:
        lines += [f"Against a supervisor that confines its lookup as picoproc must (`stat_confined`, not a "
                  f"floor: what confinement alone adds on the host), picoproc's stat is "
                  f"{pico_stat['median'] / confined['median']:.2f}x.", ""]
    return lines


def markdown(doc: dict) -> str:
    b = doc["backends"]
    lines: list[str] = floor_markdown(doc)
    if "calls" in doc:
        lines += ["### Call classes: cost per call, measured in the guest",
                  "",
                  "Median of the batches [p10-p90] (ratio to native).  vDSO clock in the guest: "
                  + ", ".join(f"{n} {'yes' if doc['calls'][n].get('vdso') else 'no'}" for n in b) + ".", ""]
        rows = []
        for cls in CALL_CLASSES:
            row = [CALL_CLASS_LABEL[cls], CALL_CLASS_KIND[cls]]
            for n in b:
                s = doc["calls"][n].get("classes", {}).get(cls)
                row.append(_cell(s if s and "median" in s else None, 1.0, (s or {}).get("ratio"),
                                 (s or {}).get("error")))
            rows.append(row)
        lines += _table(["call", "class", *b], rows) + [""]
    if "startup" in doc:
        lines += ["### Start-up: /bin/true, spawn to exit", "",
                  ("Python API: many runs in one process (Sandbox for pico, Backend.run for the others); "
                   "CLI: `picoproc run --backend B -- /bin/true` as a subprocess (includes the CLI's own "
                   "Python start-up).  Median [p10-p90] (ratio to native).")]
        bare = doc["startup"]["api"].get("bare", {}).get("ms")
        if bare:
            lines += ["", f"Floor: /bin/true by plain `subprocess.run`: {bare['median']:.2f} ms."]
        lines.append("")
        rows = []
        for kind, label in (("api", "Python API"), ("cli", "CLI")):
            row = [label]
            for n in b:
                e = doc["startup"][kind].get(n, {})
                row.append(_cell(e.get("ms"), 1e6, e.get("ratio"), e.get("error")))
            rows.append(row)
        lines += _table(["/bin/true", *b], rows) + [""]
        cli = doc["startup"]["cli"].get("pico", {})
        if "interpreter_ms" in cli:
            lines += [f"The pico CLI against its floors, interleaved with its runs, wall (CPU incl. children): "
                      f"{_cli_floors(doc, cpu=True)[2:-1]}.", ""]
        ex = doc["startup"].get("exec_inside")
        if ex:
            lines += ["#### Exec inside a running sandbox", "",
                      (f"The marginal cost of one exec: a shell loop running the program {EXEC_LOOP} times minus "
                       "the same loop running it once, divided by the difference (no sandbox start-up in it: "
                       "the loader, its mediated opens and the dynamic loader's).  Ratio to native.  "
                       "The floor rows run the same loops natively under `benchmarks/floor/exec_floor.c`: "
                       f"*{EXEC_FLOORS['filtered']}*, a filter that allows every call; "
                       f"*{EXEC_FLOORS['notified']}*, a filter that sends every call naming a file "
                       "(open, stat, access, readlink, execve, ...) to a supervisor that answers at once "
                       "and lets the kernel make the call (SECCOMP_USER_NOTIF_FLAG_CONTINUE): a round trip "
                       "per such call and nothing else, less than any confining monitor can do.  "
                       "Calls per exec: the calls sent to the supervisor, for pico the mediated calls."), ""]
            if "error" in ex:
                lines += [f"Not measured: {ex['error']}", ""]
            else:
                cols = [n for n in ("native", *EXEC_FLOORS, *[n for n in b if n != "native"])
                        if any(n in e for e in ex.values())]
                heads = [EXEC_FLOORS.get(n, n) for n in cols]
                rows = []
                for label, entry in ex.items():
                    row = [label]
                    for n in cols:
                        e = entry.get(n, {})
                        cell = (e["error"] if "error" in e else
                                f"{e['ms']:.2f} ms{fmt_ratio(e.get('ratio'))}" if "ms" in e else "-")
                        if e.get("calls_per_exec") is not None and n != "filtered":
                            cell += f", {e['calls_per_exec']:.0f} calls"
                        row.append(cell)
                    fr = entry.get("pico", {}).get("floor_ratio")
                    row.append(f"**{fr:.2f}x**" if fr is not None else "-")
                    rows.append(row)
                lines += _table(["program", *heads, "pico / kernel floor"], rows) + [""]
    if "engine" in doc:
        from .engine import markdown as engine_markdown

        lines += engine_markdown(doc["engine"])
    if "apps" in doc:
        lines += ["### Applications: wall time, spawn to exit", "", "Median [p10-p90] (ratio to native).", ""]
        rows, skipped = [], []
        for app in doc["apps"].values():
            if app.get("skipped"):
                skipped.append(f"* {app['label']}: skipped: {app['skipped']}")
                continue
            row = [app["label"]]
            for n in b:
                r = app["results"].get(n, {})
                row.append(_cell(r.get("s"), 1e9, r.get("ratio"), r.get("error")))
            rows.append(row)
        lines += _table(["workload", *b], rows) + [""]
        if skipped:
            lines += skipped + [""]
        lines += _mediated_share(doc)
    if doc.get("scale"):
        lines += ["### Scale: N concurrent clients, each timing stat() in a loop", "",
                  ("pico: N picoprocesses against one monitor; native: N plain processes (reference).  "
                   "Latency per call measured in the guest, merged over all clients.  Slowest / fastest "
                   "client: their rates while every client runs; with several runs of a client count "
                   "(backends interleaved), the median run's throughput and latencies, and the median "
                   "fairness [lowest-highest].  Native clients make 8 times the calls, so that they too all "
                   "run at once: theirs is the machine's own fairness in the same run."), ""]
        rows = []
        for n, by_clients in doc["scale"].items():
            for clients, s in sorted(by_clients.items(), key=lambda kv: int(kv[0])):
                if "error" in s:
                    rows.append([n, clients, s["error"], "", "", "", ""])
                    continue
                cpu = ""
                if "harness_cpu_s" in s and s["calls"]:
                    cpu = f"{s['harness_cpu_s'] / s['calls'] * 1e6:.1f} us"
                fair = f"{s['slowest_to_fastest']:.2f}" if s.get("slowest_to_fastest") is not None else ""
                if fair and len(s.get("runs", ())) > 1 and s.get("fairness_range"):
                    lo, hi = s["fairness_range"]
                    fair += f" [{lo:.2f}-{hi:.2f}]"
                rows.append([n, clients, f"{s['calls_per_s']:,.0f}", fair, fmt_ns(s["p50_ns"]), fmt_ns(s["p99_ns"]),
                             cpu])
        lines += _table(["backend", "clients", "calls/s (total)", "slowest / fastest client", "p50", "p99",
                         "monitor CPU per call"], rows)
        lines.append("")
    targets = doc.get("targets") or evaluate_targets(doc)
    lines += ["### Targets (reported, never asserted)", ""]
    rows = []
    for t in targets:
        verdict = {True: "met", False: "MISSED", None: "not measured"}[t["met"]]
        if t["met"] is False and t.get("miss"):
            verdict += f": {t['miss']}"
        if t.get("note"):
            verdict += f" ({t['note']})"
        rows.append([t["text"], t["value"], verdict])
    lines += _table(["target", "measured", "verdict"], rows)
    return "\n".join(lines) + "\n"


def _mediated_share(doc: dict) -> list[str]:
    """For each application: how many mediated calls picoproc served per run,
    and how much of picoproc's extra time over native those calls explain at
    the measured in-guest cost of one mediated stat (minus native's)."""
    pico_stat = doc.get("calls", {}).get("pico", {}).get("classes", {}).get("stat", {}).get("median")
    nat_stat = doc.get("calls", {}).get("native", {}).get("classes", {}).get("stat", {}).get("median")
    api = doc.get("startup", {}).get("api", {})
    spawn_extra = None
    if "ms" in api.get("pico", {}) and "ms" in api.get("native", {}):
        spawn_extra = (api["pico"]["ms"]["median"] - api["native"]["ms"]["median"]) * 1e6
    rows = []
    for app in doc.get("apps", {}).values():
        p = app.get("results", {}).get("pico", {})
        nat = app.get("results", {}).get("native", {})
        if "s" not in p or "s" not in nat or "mediated_calls" not in p:
            continue
        extra = p["s"]["median"] - nat["s"]["median"]
        explained = ""
        if pico_stat and nat_stat and extra > 0:
            cost = p["mediated_calls"] * (pico_stat - nat_stat) / 1e9
            explained = f"{fmt_ns(cost * 1e9)} ({100 * cost / extra:.0f}% of the extra)"
        rows.append([app["label"], f"{p['mediated_calls']:,}", fmt_ns(extra * 1e9), explained])
    if not rows:
        return []
    text = ("Where picoproc's extra time goes: mediated calls per run (served by the monitor), and what they "
            "cost at the in-guest price of one mediated `stat` (pico minus native) measured above.  The rest is "
            "start-up (per process the program starts")
    text += f": {fmt_ns(spawn_extra)} more than native for /bin/true)" if spawn_extra is not None else ")"
    text += " and emulated calls (a SIGSYS round trip each; not counted per run yet)."
    return [text, ""] + _table(["workload", "mediated calls", "pico - native", "mediated calls x cost"], rows) + [""]


# ---------------------------------------------------------------------------
# Plot.


def plot(doc: dict, path: str | pathlib.Path) -> None:
    """One group per workload, one bar per backend: median time relative to
    native on a log scale (failed runs marked), plus the scale panel."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = rows_by_workload(doc)
    backends = [n for n in doc["backends"]]
    has_scale = bool(doc.get("scale"))
    fig, axes = plt.subplots(2 if has_scale else 1, 1, figsize=(max(10, 1.1 * len(rows) + 3), 9 if has_scale else 5.5),
                             gridspec_kw={"height_ratios": [3, 2]} if has_scale else None, squeeze=False)
    ax = axes[0][0]
    width = 0.8 / max(1, len(backends))
    colours = plt.get_cmap("tab10")
    for i, n in enumerate(backends):
        xs, ys, fails = [], [], []
        for j, (_, vals, errs) in enumerate(rows):
            base = vals.get("native")
            x = j - 0.4 + width * (i + 0.5)
            if vals.get(n) and base:
                xs.append(x)
                ys.append(vals[n] / base)
            elif errs.get(n):
                fails.append(x)
        ax.bar(xs, ys, width, label=n, color=colours(i % 10))
        for x in fails:
            ax.text(x, 1.0, "x", ha="center", va="bottom", color=colours(i % 10), fontsize=9, fontweight="bold")
    ax.set_yscale("log")
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_xticks(range(len(rows)))
    ax.set_xticklabels([r[0] for r in rows], rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("median time / native (log)")
    ax.set_title(f"picoproc perf ({doc['profile']}): {doc['machine']['cpu_model']}, {doc['machine']['cores']} cores, "
                 f"Linux {doc['machine']['kernel']}  (x = run failed)", fontsize=9)
    ax.legend(fontsize=8, ncol=min(4, len(backends)))
    ax.grid(axis="y", which="both", alpha=0.3)
    if has_scale:
        ax2 = axes[1][0]
        for i, (n, by_clients) in enumerate(doc["scale"].items()):
            pts = sorted((int(c), s["calls_per_s"]) for c, s in by_clients.items() if "calls_per_s" in s)
            if pts:
                ax2.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=f"{n} calls/s")
        ax2.axhline(100_000, color="grey", linestyle="--", linewidth=0.8, label="target 100k/s (32 clients)")
        ax2.set_xscale("log", base=2)
        ax2.set_yscale("log")
        ax2.set_xlabel("concurrent clients (stat loop)")
        ax2.set_ylabel("total calls/s (log)")
        ax2.legend(fontsize=8)
        ax2.grid(which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(str(path), dpi=110)
    plt.close(fig)


# ---------------------------------------------------------------------------
# docs/PERFORMANCE.md


ANALYSIS = pathlib.Path(__file__).resolve().parent / "analysis.md"


def performance_doc(doc: dict, plot_name: str | None, json_name: str | None, command: str) -> str:
    m = doc["machine"]
    lines = [
        "# picoproc performance",
        "",
        f"<!-- Generated by `{command}`; edit benchmarks/perf/ (and analysis.md there), not this file. -->",
        "",
        f"Measured {m['date_utc']} on {m['cpu_model']}, {m['cores']} cores, {m['ram_gib']} GiB RAM"
        + (f" ({m['virtualisation']})" if m.get("virtualisation") and m["virtualisation"] != "none" else "")
        + f"; Linux {m['kernel']}; {m.get('os') or ''}; Python {m['python']}; {m.get('gcc') or ''}"
        + (f"; load average at the start {m['loadavg_1m']}" if m.get("loadavg_1m") is not None else "") + ".",
        f"Profile: {doc['profile']} ({doc['elapsed_s']:.0f} s).  Backends: "
        + ", ".join(f"{n} ({doc['versions'].get(n, '')})" for n in doc["backends"]) + ".",
    ]
    if doc.get("unavailable"):
        lines.append("Not run: " + "; ".join(f"{n}: {why}" for n, why in doc["unavailable"].items()) + ".")
    lines += [
        "",
        ("Every number is a median over repeated runs in one invocation, with its spread (p10-p90), and every "
        "ratio is to the native run of the same invocation.  Call costs are measured inside the guest "
        "(`benchmarks/guests/callclass.c`: a loop around each call, timed with `CLOCK_MONOTONIC`); "
        "programs write into the manifest's scratch `/tmp` and read inputs from a read-only mount.  "
        "Start-up and application runs go round-robin over the backends, so that other load on the "
        "machine falls on all of them alike.  "
        "How to reproduce: `picoproc bench perf [--backends a,b] [--quick] [--json F] [--plot F.png]`."),
        "",
    ]
    if plot_name:
        lines += [f"![per-workload time relative to native, log scale]({plot_name})", ""]
    lines.append(markdown(doc))
    if ANALYSIS.exists():
        lines += ["", ANALYSIS.read_text().strip(), ""]
    if json_name:
        lines += ["", f"Raw results: [{json_name}]({json_name})."]
    return "\n".join(lines) + "\n"
