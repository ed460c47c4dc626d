"""The mediated-interface fuzzer (picoproc.bench.security.fuzz), short form.

The long run is ``picoproc bench fuzz --calls 1000000``; here a few tens of
thousands of calls against a live monitor must give no finding, must have
reached every kind of call (so the oracle judged real grants, not only
refusals), and a deliberately wrong policy given to the monitor (its hidden
paths and names left out) must be caught by the oracle.  The oracle's model
is also checked on its own against hand-made cases.
"""

from __future__ import annotations

import errno
import json
import os
import pathlib
import stat
import socket
import subprocess
import sys

import pytest
from picoproc.abi.table import load_table
from picoproc.bench.security import fuzz, harness
from picoproc.bench.security.fuzz_model import ALLOW, DENY, INVALID, PolicyModel

pytestmark = pytest.mark.root

CI_CALLS = fuzz.CI_CALLS


@pytest.fixture(scope="module")
def fuzz_guest():
    try:
        return fuzz.build_guest()
    except harness.BenchSetupError as exc:
        pytest.fail(f"the fuzz guest does not build: {exc}")


def test_short_run_finds_nothing_and_reaches_every_call(fuzz_guest):
    report = fuzz.run_fuzz(CI_CALLS, runs=fuzz.CI_RUNS)
    assert report.findings == [] and report.finding_count == 0, (report.seed, report.findings)
    assert report.calls == CI_CALLS and report.runs == fuzz.CI_RUNS
    # Every mediated call was made, and the ones that can succeed did, so
    # the oracle judged grants as well as refusals.
    for name in fuzz.MODELLED:
        assert report.by_call.get(name, [0])[0] > 0, name
    for name in ("open", "stat", "readlink", "access", "mkdir", "mknod", "unlink", "symlink", "statfs"):
        assert report.by_call[name][1] > 0, f"no {name} succeeded: the fuzzer never got past the policy"
    # Only the modelled calls were made as mediated calls, each named from
    # the ABI table; the rest are the numbers beside the mediated range.
    for name in report.by_call:
        if name not in fuzz.MODELLED:
            assert name.startswith("unassigned "), name
            assert int(name.split()[1]) not in fuzz.NAMES, name
    assert report.by_call["note_unsupported"][1] == 0
    for kind in ("plain", "race", "bad-pointer", "raw-number"):
        assert report.by_kind.get(kind, 0) > 0, kind
    # Every guest ran to its end; the monitor's fds and memory were
    # measured during and after each run (a growth is a finding above).
    assert all(r.get("exit") == 0 and not r.get("signal") for r in report.runs_detail), report.runs_detail
    assert len(report.usage) > report.runs
    assert len({d["fds"] for d in report.runs_detail}) == 1, report.runs_detail


def test_planted_bug_is_caught(fuzz_guest):
    """The monitor is given the manifest without its hidden paths and
    names; the model keeps them: the oracle must report the grants."""
    report = fuzz.run_fuzz(6000, runs=2, seed=7, plant="hidden")
    assert report.finding_count > 0
    text = "\n".join(report.findings)
    assert "refused object" in text or "the manifest refuses" in text, text


@pytest.mark.unit
def test_fuzzer_covers_exactly_the_abi_mediated_calls():
    """Every mediated call of the ABI table is either modelled (and drawn
    by the guest, with arguments shaped for it) or left out with a
    reason, and nothing else is claimed."""
    abi = load_table()
    names = {m.name for m in abi.mediated}
    assert set(fuzz.MODELLED) | set(fuzz.NOT_MODELLED) == names
    assert not set(fuzz.MODELLED) & set(fuzz.NOT_MODELLED)
    assert all(why.strip() for why in fuzz.NOT_MODELLED.values())
    assert fuzz.uncovered_calls() == []
    # The numbers the guest draws from are the ABI's, call by call, and
    # every mediated number is reported by its ABI name.
    assert fuzz.file_call_numbers().split(",") == [str(abi.mediated_by_name()[n].nr) for n in fuzz.MODELLED]
    assert {fuzz.call_name(m.nr) for m in abi.mediated} == names
    assert fuzz.call_name(abi.mediated_base + len(abi.mediated)).startswith("unassigned ")
    # The guest builds arguments for each call it is given.
    source = (pathlib.Path(fuzz.__file__).parent / "guests" / "fuzz_guest.c").read_text()
    for name in fuzz.MODELLED:
        assert f"case PICO_NR_{name.upper()}:" in source, name


@pytest.mark.unit
def test_oracle_judges_mknod(tmp_path):
    """mknod is judged like mkdir, and a device made is a finding."""
    tree = fuzz.make_tree("/bin/true")
    listener = socket.socket(socket.AF_UNIX)
    try:
        listener.bind(tree.control)
        report = fuzz.Report(seed=0)
        judge = fuzz.Judge(PolicyModel(fuzz.fuzz_manifest(tree)), tree, report)

        def call(result, path, mode):
            args = [0, len(path), mode, 0, 0, 0]
            judge((fuzz.REC_MAGIC, fuzz.NR["mknod"], fuzz.KIND_PLAIN, fuzz.OUT_NONE, result, *args, len(path), 0,
                   0, 0, 0, -1, 0, 0, 0, 0), path, b"")

        call(0, b"/rw/fifo", stat.S_IFIFO | 0o644)
        call(0, b"/rw/sock", stat.S_IFSOCK | 0o600)
        call(-errno.EROFS, b"/ro/fifo", stat.S_IFIFO | 0o644)
        assert report.finding_count == 0, report.findings
        call(0, b"/ro/fifo", stat.S_IFIFO | 0o644)
        assert report.finding_count == 1 and "read-only" in report.findings[-1]
        call(0, b"/rw/dev0", stat.S_IFCHR | 0o666)
        assert report.finding_count == 2 and "device" in report.findings[-1]
        assert report.by_call == {"mknod": [5, 4]}
    finally:
        listener.close()
        tree.remove()


@pytest.mark.unit
def test_oracle_flags_a_grant_the_model_refuses(tmp_path):
    """The judge alone, fed records as the guest writes them: a successful
    open of a hidden file, of a path outside every mount, a write open on
    a read-only mount and a stat into read-only memory are findings; the
    same calls refused are not."""
    tree = fuzz.make_tree("/bin/true")
    listener = socket.socket(socket.AF_UNIX)
    try:
        listener.bind(tree.control)
        model = PolicyModel(fuzz.fuzz_manifest(tree))
        report = fuzz.Report(seed=0)
        judge = fuzz.Judge(model, tree, report)

        def rec(nr, result, args, p1, kind=fuzz.KIND_PLAIN, out_kind=fuzz.OUT_NONE, obj=None, fl=-1):
            a = list(args) + [0] * (6 - len(args))
            dev, ino = obj or (0, 0)
            return (fuzz.REC_MAGIC, nr, kind, out_kind, result, *a, len(p1), 0, dev, ino, 0, fl, 0,
                    1 if obj else 0, 0, 0)

        def call(nr, result, args, p1, **kw):
            judge(rec(nr, result, args, p1, **kw), p1, b"")

        secret = os.stat(tree.path("ro", "secret.txt"))
        pub = os.stat(tree.path("ro", "pub.txt"))
        o = fuzz.NR["open"]
        uri = b"file:/ro/secret.txt"
        call(o, -13, [0, len(uri), 0], uri)
        call(o, 3, [0, len(uri), 0], uri, obj=(secret.st_dev, secret.st_ino), fl=0)
        assert report.finding_count == 2  # the path refused, and the object
        for path in (b"file:/outside/o.txt", b"file:/ro/hid/deep.txt", b"file:/ro/link_up",
                     b"file:/ro/x.key", b"file:/nx/hid/../pub.txt"):
            before = report.finding_count
            call(o, 3, [0, len(path), 0], path)
            assert report.finding_count == before + 1, path
        before = report.finding_count
        p = b"file:/ro/pub.txt"
        call(o, 3, [0, len(p), 0], p, obj=(pub.st_dev, pub.st_ino), fl=0)
        assert report.finding_count == before  # granted
        call(o, 3, [0, len(p), 2], p, obj=(pub.st_dev, pub.st_ino), fl=2)
        assert report.finding_count == before + 2  # refused path, and a writable fd on it
        before = report.finding_count
        call(fuzz.NR["stat"], 0, [0, 11, 0, 0], b"/ro/pub.txt", out_kind=fuzz.OUT_RODATA)
        assert report.finding_count == before + 1
        call(fuzz.NR["stat"], -14, [0, 11, 0, 0], b"/ro/pub.txt", out_kind=fuzz.OUT_RODATA)
        assert report.finding_count == before + 1
        call(fuzz.NR["mkdir"], 0, [0, 8, 0o755], b"/ro/newd")
        assert report.finding_count == before + 2
        call(fuzz.NR["mkdir"], 0, [0, 8, 0o755], b"/rw/newd")
        assert report.finding_count == before + 2
        # a length that is not the bytes' length: must not succeed
        call(o, 3, [0, 0, 0], p)
        assert report.finding_count == before + 3
    finally:
        listener.close()
        tree.remove()


@pytest.mark.unit
def test_model_verdicts(tmp_path):
    tree = fuzz.make_tree("/bin/true")
    listener = socket.socket(socket.AF_UNIX)
    try:
        listener.bind(tree.control)
        m = PolicyModel(fuzz.fuzz_manifest(tree))
        cases = [
            (b"/ro/pub.txt", {}, ALLOW),
            (b"/ro/link_rel", {}, ALLOW),
            (b"/ro/link_abs", {}, ALLOW),
            (b"/ro/link_up", {}, DENY),  # climbs out of every mount
            (b"/ro/link_host", {}, DENY),  # a host path is a guest path: in no mount
            (b"/ro/link_proc", {}, DENY),
            (b"/ro/link_hid", {}, DENY),
            (b"/ro/link_hid", {"follow": False}, ALLOW),  # the link itself is visible
            (b"/ro/hard_secret", {}, DENY),  # a hard link of a hidden file
            (b"/nx/secret.txt", {}, DENY),  # the same tree through another mount
            (b"/nx/hid/deep.txt", {}, DENY),
            (b"/ro/sub/../hid/x", {}, DENY),
            (b"/ro/hid/../pub.txt", {}, DENY),  # passes through a hidden name
            (b"/ro/x.key", {}, DENY),
            (b"/rw/d/id_rsa", {"write": True, "name_op": True}, DENY),
            (b"/ro/pub.txt", {"write": True}, DENY),
            (b"/ro/tool", {"exec": True}, ALLOW),
            (b"/nx/tool", {"exec": True}, DENY),
            (b"/nx/sub", {"exec": True}, ALLOW),  # search permission on a directory
            (b"/rw/a.txt", {"write": True}, ALLOW),
            (b"/rw/out/o.txt", {}, DENY),
            (b"/rw/to_ro/pub.txt", {}, ALLOW),
            (b"/rw/to_hid/deep.txt", {}, DENY),
            (b"/ro/link_rw/new", {"write": True, "name_op": True}, ALLOW),
            (b"/dev/null", {"data_write": True}, ALLOW),
            (b"/dev/null", {"write": True}, DENY),
            (b"/", {}, ALLOW),
            (b"/", {"write": True}, DENY),
            (b"/etc/passwd", {}, DENY),
            (b"/tmp/anything", {"write": True}, ALLOW),
            (b"/ro/link_loop", {}, INVALID),
            (b"ro/pub.txt", {}, INVALID),
            (b"/ro/pub\0.txt", {}, INVALID),
            (b"/ro/" + b"a" * 256, {}, INVALID),
        ]
        for path, kw, want in cases:
            kw = {"follow": True, **kw}
            got = m.path_verdict(path, **kw)
            assert got.decision == want, (path, kw, got)
        # The host needs search permission on every directory a walk looks
        # a name up in, including one that a later ".." leaves.
        nobody = (65534, 65534)
        tree.path("rw", "nosearch").mkdir(mode=0o600)
        tree.path("rw", "nosearch").chmod(0o600)
        for path in (b"/rw/nosearch/..", b"/rw/nosearch/../a.txt", b"/rw/nosearch/.", b"/rw/d/../nosearch/.."):
            assert m.path_verdict(path, follow=True).decision == ALLOW, path
            assert not m.host_permits(path, follow=True, write=False, name_op=False, identity=nobody), path
        for path in (b"/rw/d/..", b"/rw/d/../a.txt", b"/rw/d/.", b"/rw/to_ro/pub.txt"):
            assert m.host_permits(path, follow=True, write=False, name_op=False, identity=nobody), path
        # The picoprocess's own /proc: read, never changed; an image only
        # through one of its links.
        assert m.proc_verdict(b"/proc/self/status").decision == ALLOW
        assert m.proc_verdict(b"/proc").decision == ALLOW
        assert m.proc_verdict(b"/proc/1/environ", write=True).decision == DENY
        assert m.proc_verdict(b"/proc/self/status", exec=True).decision == DENY
        assert m.proc_verdict(b"/proc/self/exe", exec=True).decision == ALLOW
        assert m.proc_verdict(b"/proc/.picoproc-text", write=True).decision == ALLOW
        assert m.net_verdict(b"unix:" + tree.control.encode()).decision == ALLOW
        assert m.net_verdict(b"unix:" + tree.trap_unix.encode()).decision == DENY
        # loopback nobody granted: the guest's own network, never the host's
        assert m.net_verdict(b"tcp:127.0.0.1:80").decision == ALLOW
        assert m.net_verdict(b"tcp.srv:[::]:80").decision == ALLOW
        assert m.net_verdict(b"tcp:192.0.2.1:80").decision == DENY
        assert m.net_verdict(b"udp:10.0.0.1:53").decision == DENY
    finally:
        listener.close()
        tree.remove()


def test_cli_fuzz_json(fuzz_guest, tmp_path):
    out = tmp_path / "fuzz.json"
    proc = subprocess.run([sys.executable, "-m", "picoproc", "bench", "fuzz", "--calls", "2000", "--seed", "11", "--json", str(out)],
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(out.read_text())
    assert doc["suite"] == "fuzz" and doc["calls"] == 2000 and doc["seed"] == 11
    assert doc["finding_count"] == 0 and doc["calls_per_s"] > 0
    assert "Findings: **0**" in proc.stdout


def test_cli_fuzz_bad_count():
    proc = subprocess.run([sys.executable, "-m", "picoproc", "bench", "fuzz", "--calls", "zero"], capture_output=True, text=True,
                          timeout=60, check=False)
    assert proc.returncode == 125  # picoproc's own usage error
    assert len(proc.stderr.strip().splitlines()) == 1 and "not a whole number" in proc.stderr


def test_fuzz_as_an_unprivileged_user(unpriv_env, fuzz_guest):
    """The same short run with the monitor as uid 65534 (its guest identity
    is then itself)."""
    proc = subprocess.run(
        [*unpriv_env["prefix"], unpriv_env["python"], "-m", "picoproc", "bench", "fuzz", "--calls", "4000"],
        capture_output=True, text=True, timeout=300, check=False, env=unpriv_env["env"])
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "Findings: **0**" in proc.stdout
