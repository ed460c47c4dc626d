"""Turns a suite document into Markdown tables, target verdicts, a plot and
docs/PERFORMANCE.md."""

from __future__ import annotations

import pathlib

from .workloads import CALL_CLASS_KIND, CALL_CLASS_LABEL, CALL_CLASSES

# The targets (issue 7).  Reported, never asserted.
TARGETS_TEXT = [
    ("direct", "direct call (getppid) <= 1.2x native"),
    ("emulated", "emulated calls (uname, getcwd) <= 1.5 us median"),
    ("mediated", "mediated open+close <= 5 us median"),
    ("startup", "/bin/true start-up no slower than bwrap"),
    ("py_imports", "python3 -c imports <= 1.15x native"),
    ("gcc", "gcc compile <= 1.2x native"),
    ("gvisor", "every row at least 10x faster than gvisor"),
    ("scale", "32 concurrent picoprocesses: >= 100 000 mediated calls/s total, p99 <= 100 us"),
]


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

    g = pico.get("getppid", {})
    if "ratio" in g:
        verdict("direct", f"{g['ratio']:.2f}x native ({fmt_ns(g['median'])} vs {fmt_ns(nat['getppid']['median'])})",
                g["ratio"] <= 1.2, over(g["ratio"], 1.2))
    else:
        verdict("direct", "not measured", None, note=g.get("error"))

    emu = [(c, pico[c]) for c in ("uname", "getcwd") if "median" in pico.get(c, {})]
    if emu:
        worst = max(emu, key=lambda x: x[1]["median"])
        verdict("emulated", ", ".join(f"{c} {fmt_ns(s['median'])}" for c, s in emu),
                worst[1]["median"] <= 1500, f"{worst[0]} {over(worst[1]['median'], 1500)}",
                note=(f"from glibc's wrappers, whose call sites the library OS rewrites after the first trap; "
                      f"a call that traps every time (uname via syscall(2)) costs {fmt_ns(pico['uname_trap']['median'])}"
                      if "median" in pico.get("uname_trap", {}) else None))
    else:
        verdict("emulated", "not measured", None)

    oc = pico.get("openclose", {})
    if "median" in oc:
        verdict("mediated", f"{fmt_ns(oc['median'])}{fmt_ratio(oc.get('ratio'))}", oc["median"] <= 5000,
                over(oc["median"], 5000))
    else:
        verdict("mediated", "not measured", None, note=oc.get("error"))

    api = doc.get("startup", {}).get("api", {})
    p, bw = api.get("pico", {}).get("ms"), api.get("bwrap", {}).get("ms")
    if p and bw:
        verdict("startup", f"pico {p['median']:.1f} ms, bwrap {bw['median']:.1f} ms (Python API)",
                p["median"] <= bw["median"], f"{p['median'] / bw['median']:.2f}x bwrap")
    else:
        verdict("startup", "not measured" if not p else f"pico {p['median']:.1f} ms; bwrap not run", None)

    for key, app_key, limit in (("py_imports", "py_imports", 1.15), ("gcc", "gcc_compile", 1.2)):
        r = doc.get("apps", {}).get(app_key, {}).get("results", {}).get("pico", {})
        if "ratio" in r and r["ratio"] is not None:
            verdict(key, f"{r['ratio']:.2f}x native ({r['s']['median'] * 1e3:.0f} ms)", r["ratio"] <= limit,
                    over(r["ratio"], limit))
        else:
            verdict(key, r.get("error", "not measured"), None if "error" not in r else False,
                    "fails" if "error" in r else None)

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

    sc = doc.get("scale", {}).get("pico", {}).get("32")
    if sc and "calls_per_s" in sc:
        met = sc["calls_per_s"] >= 100_000 and sc["p99_ns"] <= 100_000
        miss = []
        if sc["calls_per_s"] < 100_000:
            miss.append(f"throughput {100_000 / sc['calls_per_s']:.1f}x too low")
        if sc["p99_ns"] > 100_000:
            miss.append(f"p99 {sc['p99_ns'] / 100_000:.1f}x too high")
        verdict("scale", f"{sc['calls_per_s']:,.0f} calls/s, p50 {fmt_ns(sc['p50_ns'])}, p99 {fmt_ns(sc['p99_ns'])}",
                met, "; ".join(miss))
    else:
        verdict("scale", (sc or {}).get("error", "not measured"), None if not sc else False)
    return out


# ---------------------------------------------------------------------------
# Markdown.


def markdown(doc: dict) -> str:
    b = doc["backends"]
    lines: list[str] = []
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
                   "Latency per call measured in the guest, merged over all clients."), ""]
        rows = []
        for n, by_clients in doc["scale"].items():
            for clients, s in sorted(by_clients.items(), key=lambda kv: int(kv[0])):
                if "error" in s:
                    rows.append([n, clients, s["error"], "", "", ""])
                    continue
                cpu = ""
                if "harness_cpu_s" in s and s["calls"]:
                    cpu = f"{s['harness_cpu_s'] / s['calls'] * 1e6:.1f} us"
                rows.append([n, clients, f"{s['calls_per_s']:,.0f}", fmt_ns(s["p50_ns"]), fmt_ns(s["p99_ns"]), cpu])
        lines += _table(["backend", "clients", "calls/s (total)", "p50", "p99", "monitor CPU per call"], rows)
        lines.append("")
    targets = doc.get("targets") or evaluate_targets(doc)
    lines += ["### Targets (issue 7; reported, never asserted)", ""]
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
