"""The soak in its short form: 64 guests at once for a minute against one
monitor (PICOPROC_SOAK_SECONDS=600 for the ten-minute form, and
PICOPROC_SOAK_GUESTS to change how many), mixing files, sockets, fork and
exec, and runs that end at a limit.  Every run must give what its workload
gives, and the monitor's fds, threads, run cgroups, mounts, relay threads,
children and registered guests must come back exactly to where they were
(RSS must not grow in the second half): see benchmarks/soak.py."""

from __future__ import annotations

import os
import pathlib

import pytest

pytestmark = pytest.mark.root

SECONDS = float(os.environ.get("PICOPROC_SOAK_SECONDS", "60"))
GUESTS = int(os.environ.get("PICOPROC_SOAK_GUESTS", "64"))


@pytest.mark.slow
@pytest.mark.skipif(os.geteuid() != 0, reason="the limit workloads (memory, pids) need the run cgroups of root")
def test_soak_many_guests_leave_the_monitor_as_they_found_it(tmp_path):
    """The soak's monitor is a process of its own, in a mount namespace of
    its own (so that other programs' mounts do not count as its own)."""
    import json
    import subprocess
    import sys

    from picoproc.bench.soak import markdown

    out = tmp_path / "soak.json"
    proc = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", sys.executable, "-m", "picoproc.bench.soak",
         "--guests", str(GUESTS), "--duration", str(SECONDS), "--json", str(out), "--quiet"],
        capture_output=True, text=True, timeout=SECONDS * 4 + 300, check=False)
    assert out.exists(), proc.stderr[-3000:]
    result = json.loads(out.read_text())
    report = markdown(result)
    print("\n" + report)
    assert result["errors"] == [], report
    assert result["problems"] == [], report
    assert result["not_flat"] == [], report
    # Every workload ran, each more than once (a workload that hangs would
    # show as a count of one or none).
    assert min(result["runs"].values()) >= 3, report


@pytest.mark.unit
def test_the_soak_result_is_stored_with_the_security_report_and_kept_by_its_runs(repo_root, tmp_path):
    """``soak --write-doc`` puts its result into docs/security.json (replacing
    the one before) and renders SECURITY.md from it; a new run of the report
    keeps it; regen renders the same document from the stored result."""
    import json

    from picoproc.bench.security import report
    from picoproc.bench.soak import markdown

    stored = json.loads((repo_root / "docs/security.json").read_text())
    soak = stored.pop("soak")
    (tmp_path / "docs").mkdir()
    doc = tmp_path / "docs/SECURITY.md"
    report.write(doc, stored)
    assert "## Soak" not in doc.read_text()
    for guests in (7, 9):
        report.store_soak(doc, {**soak, "guests": guests})
    text = doc.read_text()
    assert text.count("## Soak") == 1 and "\n9 guests at once for " in text and "\n7 guests" not in text
    assert text.rstrip("\n").endswith(markdown({**soak, "guests": 9}))
    report.write_run(doc, stored)  # a new run of the suites, without a soak of its own
    assert json.loads((tmp_path / "docs/security.json").read_text())["soak"]["guests"] == 9
    assert doc.read_text() == text
    assert report.generated_files(tmp_path) == {pathlib.Path("docs/SECURITY.md"): text}
