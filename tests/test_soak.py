"""The soak in its short form: 64 guests at once for a minute against one
monitor (PICOPROC_SOAK_SECONDS=600 for the ten-minute form, and
PICOPROC_SOAK_GUESTS to change how many), mixing files, sockets, fork and
exec, and runs that end at a limit.  Every run must give what its workload
gives, and the monitor's fds, threads, run cgroups, mounts, relay threads,
children and registered guests must come back exactly to where they were
(RSS must not grow in the second half): see benchmarks/soak.py."""

from __future__ import annotations

import os

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
def test_the_soak_table_has_its_own_section_that_the_security_report_keeps(tmp_path):
    from picoproc.bench.soak import SECTION_BEGIN, preserve_sections, write_doc_section

    doc = tmp_path / "SECURITY.md"
    doc.write_text("# Security benchmarks\n\ngenerated body\n")
    write_doc_section(str(doc), "soak table 1")
    write_doc_section(str(doc), "soak table 2")  # replaces, never appends a second one
    text = doc.read_text()
    assert text.count(SECTION_BEGIN) == 1 and "soak table 2" in text and "soak table 1" not in text
    assert text.startswith("# Security benchmarks\n\ngenerated body\n")
    regenerated = preserve_sections(text, "# Security benchmarks\n\nnew body\n")
    assert regenerated.startswith("# Security benchmarks\n\nnew body\n")
    assert regenerated.count(SECTION_BEGIN) == 1 and "soak table 2" in regenerated
