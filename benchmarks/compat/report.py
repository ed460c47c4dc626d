"""Turns a comparison document (harness.run_compat) into Markdown and
docs/COMPAT.md.  Everything here is computed from the document: the doc
holds nothing written by hand, so regenerating it loses nothing."""

from __future__ import annotations

from collections import Counter, defaultdict

from .harness import BOTH_FAIL, BOTH_SKIP, IMPROVED, NATIVE_BROKEN, OTHER, REGRESSED
from .modules import DEFAULT_MODULES

_KIND_TEXT = {REGRESSED: "passes natively, not inside", IMPROVED: "passes inside only",
              OTHER: "neither passes, differently"}


def _esc(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ").replace("`", "'")


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(row) + " |" for row in rows]
    return out


def _pct(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f} %" if whole else "-"


def _short(test: str, module: str) -> str:
    """A test's id without the module's own prefix."""
    for prefix in (f"test.{module}.", f"{module}."):
        if test.startswith(prefix):
            return test[len(prefix):]
    return test


def totals(doc: dict, only=None) -> dict:
    """Counts over the modules that were compared (not those broken
    natively); ``only``: over these module names alone."""
    t: Counter = Counter()
    for m in doc["modules"]:
        if m.get("error") or m.get("guest") is None or (only is not None and m["module"] not in only):
            continue
        t["modules"] += 1
        t["passes_natively"] += m["passes_natively"]
        t["passes_both"] += m["passes_both"]
        for k, v in m["counts"].items():
            t[k] += v
    return dict(t)


def top_reasons(doc: dict, kinds=(REGRESSED,)) -> list[dict]:
    """The reasons tests that pass natively do not pass inside, most tests first."""
    by: dict[str, dict] = {}
    for m in doc["modules"]:
        for d in m.get("differences", ()):
            if d["kind"] not in kinds:
                continue
            r = by.setdefault(d["reason"], {"reason": d["reason"], "tests": 0, "modules": Counter(),
                                            "example": None, "evidence": Counter()})
            r["tests"] += 1
            r["modules"][m["module"]] += 1
            if r["example"] is None:
                r["example"] = (m["module"], d)
            for e in d.get("evidence", ()):
                r["evidence"][e.split(" (x")[0]] += 1
    return sorted(by.values(), key=lambda r: (-r["tests"], r["reason"]))


def markdown(doc: dict, top: int = 25) -> str:
    lines: list[str] = []
    t = totals(doc)
    lines += ["### Summary", ""]
    if t.get("modules"):
        lines.append(
            f"Over {t['modules']} modules: **{t['passes_both']:,} of the {t['passes_natively']:,} tests that "
            f"pass natively pass inside too ({_pct(t['passes_both'], t['passes_natively'])})**.  Skipped on "
            f"both sides: {t.get(BOTH_SKIP, 0):,}; failing on both: {t.get(BOTH_FAIL, 0):,}; passing only "
            f"inside: {t.get(IMPROVED, 0):,}; different otherwise: {t.get(OTHER, 0):,}; hanging or crashing "
            f"natively (not counted): {t.get(NATIVE_BROKEN, 0):,}.")
        lines.append("")
    rows = []
    for m in doc["modules"]:
        name = m["module"]
        if m.get("error"):
            rows.append([f"`{name}`", "-", "-", "-", "-", "-", f"comparison failed: {_esc(m['error'])}"])
            continue
        if m.get("guest") is None:
            rows.append([f"`{name}`", "-", "-", "-", "-", "-",
                         f"broken natively, not counted: {_esc(m.get('native_broken', ''))}"])
            continue
        c = m["counts"]
        differ = c.get(REGRESSED, 0) + c.get(IMPROVED, 0) + c.get(OTHER, 0)
        notes = []
        if c.get(NATIVE_BROKEN):
            notes.append(f"{c[NATIVE_BROKEN]} broken natively")
        hangs = sum(1 for d in m["differences"] if d["guest"] == "hang")
        crashes = sum(1 for d in m["differences"] if d["guest"] == "crash")
        if hangs:
            notes.append(f"{hangs} hang{'s' if hangs > 1 else ''} inside")
        if crashes:
            notes.append(f"{crashes} crash{'es' if crashes > 1 else ''} inside")
        if m["native"].get("module_skipped"):
            notes.append(f"skipped: {_esc(m['native']['module_skipped'])}")
        rows.append([f"`{name}`", f"{m['passes_natively']}", f"{m['passes_both']}",
                     _pct(m["passes_both"], m["passes_natively"]),
                     f"{c.get(BOTH_SKIP, 0)} / {c.get(BOTH_FAIL, 0)}", f"{differ}",
                     f"{m['native']['wall_s']:.0f} / {m['guest']['wall_s']:.0f} s"
                     + (f"; {'; '.join(notes)}" if notes else "")])
    if t.get("modules"):
        rows.append(["**total**", f"**{t['passes_natively']:,}**", f"**{t['passes_both']:,}**",
                     f"**{_pct(t['passes_both'], t['passes_natively'])}**",
                     f"{t.get(BOTH_SKIP, 0):,} / {t.get(BOTH_FAIL, 0):,}",
                     f"{t.get(REGRESSED, 0) + t.get(IMPROVED, 0) + t.get(OTHER, 0):,}", ""])
    lines += _table(["module", "pass natively", "pass inside too", "%", "skip both / fail both",
                     "differ", "time native / inside; notes"], rows) + [""]

    reasons = top_reasons(doc)
    if reasons:
        lines += ["### Why tests that pass natively do not pass inside", "",
                  ("Grouped by what the test saw inside: a call the library OS does not handle (from the "
                   "run's audit while the test ran), else the exception it failed with, the reason it "
                   "skipped, or where it hung.  Most tests first."), ""]
        rows = []
        for r in reasons[:top]:
            module, ex = r["example"]
            mods = ", ".join(f"{name} {n}" for name, n in r["modules"].most_common(4))
            if len(r["modules"]) > 4:
                mods += f", {len(r['modules']) - 4} more"
            seen = "; ".join(f"{e} ({n})" for e, n in r["evidence"].most_common(2))
            rows.append([f"{r['tests']}", _esc(r["reason"]), _esc(mods), f"`{_esc(_short(ex['test'], module))}`",
                         _esc(seen)])
        lines += _table(["tests", "reason", "modules", "for example", "audit while they ran (tests)"], rows)
        if len(reasons) > top:
            rest = sum(r["tests"] for r in reasons[top:])
            lines += ["", f"... and {len(reasons) - top} more reasons ({rest} tests): see the modules below."]
        lines.append("")

    broken = [(m["module"], b) for m in doc["modules"] for b in m.get("native_broken_tests", ())]
    broken_modules = [m for m in doc["modules"] if m.get("guest") is None and not m.get("error")]
    if broken or broken_modules:
        lines += ["### Broken natively on this machine (not run inside, not counted)", ""]
        for m in broken_modules:
            lines.append(f"* `{m['module']}`: the whole module: {_esc(m.get('native_broken', ''))}")
        for module, b in broken:
            lines.append(f"* `{_short(b['test'], module)}` ({module}): {_esc(b['detail'])}")
        lines.append("")

    details = [m for m in doc["modules"] if m.get("differences")]
    if details:
        lines += ["### Every difference, by module", ""]
    for m in details:
        module = m["module"]
        lines += [f"#### {module}: {m['passes_both']} of {m['passes_natively']} pass inside "
                  f"({_pct(m['passes_both'], m['passes_natively'])})", ""]
        groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
        for d in m["differences"]:
            groups[(d["kind"], d["reason"])].append(d)
        rows = []
        for (kind, reason), ds in sorted(groups.items(), key=lambda kv: (kv[0][0] != REGRESSED, -len(kv[1]),
                                                                         kv[0][1])):
            names = ", ".join(f"`{_esc(_short(d['test'], module))}`" for d in ds[:12])
            if len(ds) > 12:
                names += f" and {len(ds) - 12} more"
            first = ds[0]
            outcome = f"{first['native']} -> {first['guest']}"
            evidence = "; ".join(first.get("evidence", ())[:3])
            detail = first["detail"] if first["detail"] and first["detail"] != reason else ""
            rows.append([f"{len(ds)}", _KIND_TEXT[kind] + f" ({outcome})", _esc(reason),
                         _esc(detail[:200]), _esc(evidence), names])
        lines += _table(["tests", "how", "reason", "as the first one saw it", "audit while it ran", "tests"],
                        rows) + [""]
    return "\n".join(lines).rstrip() + "\n"


def compat_doc(doc: dict, command: str) -> str:
    """docs/COMPAT.md."""
    m = doc["machine"]
    t = totals(doc)
    ident = doc["identity"]
    commit = doc["picoproc"].get("commit")
    lines = [
        "# picoproc compatibility: CPython's regression tests, natively and inside",
        "",
        f"<!-- Generated by `{command}` from benchmarks/compat/; edit those, not this file. -->",
        "",
        f"Measured {m['date_utc']} on {m['cpu_model']}, {m['cores']} cores, {m['ram_gib']} GiB RAM; "
        f"Linux {m['kernel']}; {m.get('os') or ''}; CPython {doc['python']['version']} "
        f"(`{doc['python']['path']}`, Debian's libpython{'.'.join(doc['python']['version'].split('.')[:2])}"
        f"-testsuite); picoproc {doc['picoproc']['version']}"
        + (f" at commit {commit}" if commit else "")
        + (f"; load average at the start {m['loadavg_1m']}" if m.get("loadavg_1m") is not None else "") + ".",
        f"{len(doc['modules'])} modules, {doc['jobs']} at a time, in {doc['elapsed_s'] / 60:.0f} min.",
        "",
        ("Each module runs as `python3 -m test -v MODULE` twice, and its tests are compared one by one. "
         f"**Natively**: as uid {ident['uid']}:{ident['gid']} (the identity a picoprocess gets here: "
         f"{ident['why']}), with the guest's environment (only "
         + ", ".join(f"`{k}`" for k in doc["env"])
         + "), working directory, hostname and private scratch tmpfs, in a network namespace with a "
         "loopback of its own, with the guest's open-file, memory and process-count limits "
         "(`benchmarks/compat/launch.py`); the host kernel is otherwise used directly (its /proc and "
         "/dev, no seccomp filter). **Inside**: `picoproc run` with the default manifest"
         + (" and these grants: " + "; ".join(doc["grants"]) if doc["grants"] else ", no grant")
         + ". Both sides also see the harness's work directory read-only (its runner, which marks "
         "each test's start with a stat of a path that does not exist, so that the audit inside says "
         "which test made which call; and the lists of tests to leave out when a module runs again)."),
        "",
        (f"A run that prints nothing for {doc['test_timeout_s']:.0f} s is hung: the harness asks it for a "
         "traceback of every thread (SIGUSR1, which regrtest hands to faulthandler), stops it, records "
         "where the running test hung, and runs the rest of the module again; a test that was running "
         "when a run died is a crash, the same way. Tests that hang or crash natively are broken on this "
         "machine: they are not run inside and not counted. Failures seen in a run that was then cut short "
         "are run once more, alone, for their failure text. The reason given for a test that passes "
         "natively but not inside is what the test saw inside: a call the library OS does not handle "
         "(the run's audit while the test ran), else its exception, skip reason or hang."),
        "",
        "How to reproduce: `picoproc bench compat [--modules m1,m2] [--all] [--jobs N] [--json F]`; "
        f"this file: `{command}`.",
        "",
    ]
    core = totals(doc, only=DEFAULT_MODULES)
    if core.get("modules") and core.get("modules") != t.get("modules"):
        # A longer list: the default modules' total first (the stated target).
        lines += [f"**Over the {core['modules']} default modules: {core['passes_both']:,} of the "
                  f"{core['passes_natively']:,} tests that pass natively pass inside too "
                  f"({_pct(core['passes_both'], core['passes_natively'])}).**  Over all {t['modules']}: "
                  f"{t['passes_both']:,} of {t['passes_natively']:,} "
                  f"({_pct(t['passes_both'], t['passes_natively'])}).", ""]
    elif t.get("modules"):
        lines += [f"**{t['passes_both']:,} of {t['passes_natively']:,} tests that pass natively pass inside "
                  f"too ({_pct(t['passes_both'], t['passes_natively'])}).**", ""]
    lines.append(markdown(doc))
    return "\n".join(lines).rstrip() + "\n"
