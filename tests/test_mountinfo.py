"""picoproc.mountinfo: the one parser of /proc/PID/mountinfo and /proc/PID/cgroup."""

from __future__ import annotations

import json
import subprocess
import sys

from picoproc import mountinfo
import pytest

pytestmark = pytest.mark.unit


def test_unescape_decodes_every_octal_escape_the_kernel_writes():
    # proc(5): space, tab, newline and backslash are written as \ooo.
    assert mountinfo.unescape(r"/a\040b\011c\012d\134e") == "/a b\tc\nd\\e"
    # Not an escape: kept as written (no digits 8/9 in octal, too short).
    assert mountinfo.unescape(r"/x\089") == r"/x\089"
    assert mountinfo.unescape("/x\\04") == "/x\\04"
    assert mountinfo.unescape("/plain") == "/plain"


def test_parse_mountinfo_fields_escapes_and_junk():
    text = "\n".join([
        r"41 31 0:38 / /sys/fs/cgroup/with\040space rw,nosuid - cgroup2 cgroup2 rw,nsdelegate",
        r"35 31 0:32 /sub\011dir /mnt/m\134em ro,relatime shared:5 master:1 - cgroup cg\040src rw,memory",
        "garbage line without separator",
        "1 2 3 - cgroup",  # too few fields
        "x 2 0:1 / /y rw - tmpfs tmpfs rw",  # not a mount id
    ])
    first, second = mountinfo.parse_mountinfo(text)
    assert first == mountinfo.MountEntry(41, 31, "0:38", "/", "/sys/fs/cgroup/with space",
                                         ("rw", "nosuid"), "cgroup2", "cgroup2", ("rw", "nsdelegate"))
    assert not first.read_only
    assert (second.root, second.mount_point, second.source) == ("/sub\tdir", "/mnt/m\\em", "cg src")
    assert second.read_only and "memory" in second.super_options


def test_cgroup_mounts_first_of_each_kind_wins():
    entries = mountinfo.parse_mountinfo("\n".join([
        r"1 0 0:1 / /cg\040two rw - cgroup2 cgroup2 rw",
        "2 0 0:2 / /cg2b rw - cgroup2 cgroup2 rw",
        "3 0 0:3 / /v1/mem rw - cgroup cgroup rw,memory",
        "4 0 0:4 / /v1/mem-again rw - cgroup cgroup rw,memory,pids",
    ]))
    unified, v1 = mountinfo.cgroup_mounts(entries)
    assert unified == "/cg two"
    assert v1["memory"] == "/v1/mem" and v1["pids"] == "/v1/mem-again"


def test_parse_proc_cgroup():
    v2, v1 = mountinfo.parse_proc_cgroup(
        "4:memory:/a\n3:cpu,cpuacct:/b:c\n1:name=systemd:/s\n0::/c\nbogus\n")
    assert v2 == "/c"
    assert v1 == {"memory": "/a", "cpu": "/b:c", "cpuacct": "/b:c", "name=systemd": "/s"}
    assert mountinfo.parse_proc_cgroup("4:memory:/a\n") == (None, {"memory": "/a"})


@pytest.mark.root
def test_every_reader_agrees_on_an_escaped_cgroup_mount_point(tmp_path):
    """The run cgroups, the OCI runtime's cgroups and doctor read the same
    cgroup mount points from one mountinfo, whatever its escapes (doctor
    decoded every \\ooo escape, the cgroup readers only \\040)."""
    text = "\n".join([
        r"41 31 0:38 / /sys/fs/cg\011roup\134x rw - cgroup2 cgroup2 rw",
        r"35 31 0:32 / /mnt/mem\040ory rw - cgroup cgroup rw,memory",
        r"36 31 0:33 / /mnt/pi\012ds rw - cgroup cgroup rw,pids",
    ]) + "\n"
    info = tmp_path / "mountinfo"
    info.write_text(text)
    cgroup_file = tmp_path / "cgroup"
    cgroup_file.write_text("5:pids:/p\n4:memory:/m\n0::/u\n")
    # Point every reader at the files (a child process, so no module state
    # of this one is touched).
    code = f"""
import json
from picoproc import cgroups, doctor, mountinfo
from picoproc.oci import cgroup as oci_cgroup
mountinfo.MOUNTINFO = {str(info)!r}
mountinfo.PROC_CGROUP = {str(cgroup_file)!r}
mounts = [m for m in doctor._cgroup_mounts(open({str(info)!r}).read())]
print(json.dumps({{
    "run": cgroups._mounts(), "run_own": cgroups._own_paths(),
    "oci": oci_cgroup._mounts(), "oci_own": [oci_cgroup._own(None), oci_cgroup._own("pids")],
    "doctor": [[m.fstype, m.mount_point] for m in mounts],
}}))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         check=True).stdout
    got = json.loads(out)
    unified, v1 = r"/sys/fs/cg" + "\troup\\x", {"memory": "/mnt/mem ory", "pids": "/mnt/pi\nds"}
    assert got["run"] == [unified, v1]
    assert got["oci"] == [unified, v1]
    assert got["run_own"] == ["/u", {"pids": "/p", "memory": "/m"}]
    assert got["oci_own"] == ["/u", "/p"]
    assert got["doctor"] == [["cgroup2", unified], ["cgroup", "/mnt/mem ory"],
                             ["cgroup", "/mnt/pi\nds"]]


def test_host_mounts_reads_this_process_mount_table():
    table = mountinfo.current_host_mounts()
    assert table is not None and table.identity("/") is not None
    assert [m for m in mountinfo.read_mountinfo() if m.mount_point == "/"]
