"""The monitor's C event loop serving mediated file calls (docs/ARCHITECTURE.md,
"The monitor's serving threads" and "Resolving guest paths").

Freestanding guests (tests/guests/med_*.c) issue mediated calls directly with
the pico_<call>() wrappers; a ``Monitor`` serves them against an ``FsPolicy``:

* allowed reads and writes work and the content is checked, on the host too;
* read-only mounts answer EROFS, paths outside the mounts and hidden paths
  EACCES, each with a "deny" audit record;
* `..`, relative and absolute symlinks (host-made and guest-planted in the
  scratch tmpfs), hard links, /proc/self/root and /proc/<pid>/fd tricks never
  reach a file the manifest does not grant;
* a second guest thread rewriting the URI during the call never gets the
  forbidden file, and the audit log shows the monitor used the bytes it
  checked;
* hostile arguments (bad pointers, lengths, flags, NULs, non-UTF-8) each get
  an errno and the monitor keeps serving; guests killed mid-call leave it
  healthy; 50 guests are served at once; no fd leaks in the monitor.

Files are laid out by the host (as root when the tests run as root); the
guest's file operations run as nobody (65534) then, so host permissions apply.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import pathlib
import signal
import stat
import tempfile
import threading
import time

import pytest
from conftest import public_and_secret_tree
from picoproc.manifest import Manifest, Mount, Tmpfs
from picoproc.monitor import (
    GUEST_SECCOMP_FLAGS,
    AuditJsonlWriter,
    FsPolicy,
    Monitor,
    MonitorError,
    escape_bytes,
    guest_identity,
)
from picoproc.raw import spawn_raw
from picoproc.scratch import make_scratch
from picoproc.spawn import release, wait_picoprocess

pytestmark = pytest.mark.root

TIMEOUT = 60.0
SCRATCH_BYTES = 4 << 20


# ---------------------------------------------------------------------------
# The host tree every test shows the guest
#
#   /data  -> root/data   read-only   a.txt, sub/b.txt, links (below)
#   /etc   -> root/etc    read-only   passwd, shadow (hidden)
#   /bin   -> root/bin    read-only, exec     tool (0755), plain (0644)
#   /noexec-> root/bin    read-only, no exec
#   /tmp   -> scratch tmpfs, writable
#   root/outside/secret.txt is on the host but in no mount.

@pytest.fixture(scope="module")
def host_root():
    with tempfile.TemporaryDirectory(prefix="picoproc-med-") as d:
        root = pathlib.Path(d)
        os.chmod(root, 0o755)
        for sub in ("data", "data/sub", "etc", "bin", "outside"):
            (root / sub).mkdir()
            os.chmod(root / sub, 0o755)
        files = {
            "data/a.txt": "hello data",
            "data/sub/b.txt": "in sub",
            "etc/passwd": "root:x:0:0",
            "etc/shadow": "SECRET shadow",
            "outside/secret.txt": "SECRET outside",
            "bin/tool": "#!tool",
            "bin/plain": "plain",
            "data/private.txt": "private",
        }
        for name, text in files.items():
            (root / name).write_text(text)
            os.chmod(root / name, 0o644)
        os.chmod(root / "bin/tool", 0o755)
        os.chmod(root / "data/private.txt", 0o600)  # root's: nobody may not read it
        data = root / "data"
        os.symlink("a.txt", data / "link_rel")
        os.symlink("/data/a.txt", data / "link_abs")  # a guest path
        os.symlink("../../outside/secret.txt", data / "link_up")  # climbs out of the mount
        os.symlink(str(root / "outside/secret.txt"), data / "link_host")  # a host path
        os.symlink("/proc/self/root" + str(root / "outside/secret.txt"), data / "link_proc")
        os.symlink("/proc/self/root", data / "procroot")
        os.symlink("loop2", data / "loop1")
        os.symlink("loop1", data / "loop2")
        os.symlink("sub", data / "subdir_link")
        os.link(root / "etc/shadow", data / "shadow_hardlink")
        yield root


@pytest.fixture(scope="module")
def monitor():
    mon = Monitor()
    mon.start()
    yield mon
    mon.close()


@pytest.fixture
def scratch():
    s = make_scratch(SCRATCH_BYTES)
    yield s
    s.close()


@pytest.fixture
def policy(host_root, scratch):
    p = FsPolicy()
    p.add_mount("/data", str(host_root / "data"))
    p.add_mount("/etc", str(host_root / "etc"))
    p.add_mount("/bin", str(host_root / "bin"), exec=True)
    p.add_mount("/noexec", str(host_root / "bin"), exec=False)
    p.add_mount_fd("/tmp", scratch.dir_fd, writable=True)
    p.add_hidden("/etc/shadow")
    yield p
    p.close()


class GuestRun:
    def __init__(self, status, out, records, stats):
        self.status = status
        self.out = out
        self.records = records
        self.stats = stats

    @property
    def lines(self) -> list[str]:
        return self.out.splitlines()

    def result(self, index: int) -> str:
        return self.lines[index]


def start_guest(mon: Monitor, policy: FsPolicy, argv, out_fd: int, net=None):
    with open(os.devnull, "rb") as devnull:
        g = spawn_raw([str(a) for a in argv], {}, (devnull.fileno(), out_fd, 2),
                      seccomp_flags=GUEST_SECCOMP_FLAGS)
    try:
        handle = mon.add_guest(g.listener_fd, g.guest_pid, policy, net)
    finally:
        os.close(g.listener_fd)
    return g, handle


def wait_guest(g, timeout: float = TIMEOUT):
    """The guest's RawResult; a guest still running after ``timeout`` is
    killed and the test fails instead of hanging."""
    try:
        return wait_picoprocess(g, timeout)
    except TimeoutError:
        release(g)
        raise


def run_guest(mon: Monitor, policy: FsPolicy, argv, timeout: float = TIMEOUT) -> GuestRun:
    with tempfile.TemporaryFile() as out:
        g, handle = start_guest(mon, policy, argv, out.fileno())
        status = wait_guest(g, timeout)
        stats = mon.remove_guest(handle)
        out.seek(0)
        text = out.read().decode("utf-8", "replace")
    records = [r for r in mon.drain_audit() if r["guest"] == handle]
    # Each record names the calling thread as the monitor sees it (a host
    # pid); in these guests only the main thread calls: the guest process.
    assert all(r["pid"] == g.guest_pid for r in records)
    return GuestRun(status, text, records, stats)


def med_fs(guest_bin, monitor, policy, *args) -> GuestRun:
    return run_guest(monitor, policy, [guest_bin / "med_fs", *args])


def err(e: int) -> str:
    return f"err {e}"


def scratch_read(scratch, name: str) -> bytes:
    fd = os.open(name, os.O_RDONLY, dir_fd=scratch.dir_fd)
    try:
        return os.read(fd, 65536)
    finally:
        os.close(fd)


# ---------------------------------------------------------------------------
# Allowed calls

def test_allowed_read_returns_the_host_content(guest_bin, monitor, policy):
    run = med_fs(guest_bin, monitor, policy, "read", "/data/a.txt", "read", "/data/sub/b.txt",
                 "read", "/etc/passwd")
    assert run.lines == ["read: ok hello data", "read: ok in sub", "read: ok root:x:0:0"]
    assert [r["decision"] for r in run.records] == ["allow"] * 3
    assert [r["uri"] for r in run.records] == ["file:/data/a.txt", "file:/data/sub/b.txt", "file:/etc/passwd"]
    assert run.stats["calls"] == 3 and run.stats["allowed"] == 3


def test_write_in_scratch_lands_in_the_scratch_tmpfs(guest_bin, monitor, policy, scratch):
    run = med_fs(guest_bin, monitor, policy, "write", "/tmp/out.txt", "written by guest",
                 "read", "/tmp/out.txt")
    assert run.lines == ["write: ok 16", "read: ok written by guest"]
    assert scratch_read(scratch, "out.txt") == b"written by guest"
    st = os.stat("out.txt", dir_fd=scratch.dir_fd)
    # Created under the guest's identity, with the mode the guest asked for
    # (the monitor's own umask is not applied a second time).
    assert st.st_uid == guest_identity()[0]
    assert stat.S_IMODE(st.st_mode) == 0o644


def test_scratch_name_operations(guest_bin, monitor, policy, scratch):
    uid, gid, _ = guest_identity()
    run = med_fs(guest_bin, monitor, policy,
                 "mkdir", "/tmp/d", "0750",
                 "write", "/tmp/d/f", "0123456789",
                 "rename", "/tmp/d/f", "/tmp/d/g", "0",
                 "link", "/tmp/d/g", "/tmp/h",
                 "symlink", "d/g", "/tmp/s",
                 "readlink", "/tmp/s",
                 "read", "/tmp/s",
                 "chmod", "/tmp/h", "0600",
                 "chown", "/tmp/h", str(uid), str(gid),
                 "utimens", "/tmp/h", "1000000",
                 "truncate", "/tmp/h", "3",
                 "stat", "/tmp/d/g",
                 "lstat", "/tmp/s",
                 "rename", "/tmp/h", "/tmp/d/g", str(1),  # RENAME_NOREPLACE
                 "rmdir", "/tmp/d",
                 "unlink", "/tmp/d/g",
                 "rmdir", "/tmp/d",
                 "unlink", "/tmp/h")
    lines = run.lines
    assert lines[:7] == ["mkdir: ok", "write: ok 10", "rename: ok", "link: ok", "symlink: ok",
                         "readlink: ok d/g", "read: ok 0123456789"]
    assert lines[7:11] == ["chmod: ok", "chown: ok", "utimens: ok", "truncate: ok"]
    assert lines[11].startswith("stat: ok size=3 mode=100600 ")
    assert lines[12].startswith("lstat: ok size=3 mode=120777 ")
    assert lines[13:] == ["rename: " + err(errno.EEXIST), "rmdir: " + err(errno.ENOTEMPTY), "unlink: ok",
                          "rmdir: ok", "unlink: ok"]
    assert os.listdir(scratch.dir_fd) == ["s"]


def test_stat_readlink_access_statfs(guest_bin, monitor, policy):
    run = med_fs(guest_bin, monitor, policy,
                 "stat", "/data/a.txt", "stat", "/data/link_rel", "lstat", "/data/link_rel",
                 "readlink", "/data/link_up", "access", "/data/a.txt", "4", "access", "/data/private.txt", "4",
                 "statfs", "/tmp", "stat", "/data", "note", "999")
    lines = run.lines
    assert lines[0].startswith("stat: ok size=10 mode=100644")
    assert lines[1].startswith("stat: ok size=10 mode=100644")  # followed
    assert lines[2].startswith("lstat: ok size=5 mode=120777")  # the link itself
    assert lines[3] == "readlink: ok ../../outside/secret.txt"  # verbatim
    assert lines[4] == "access: ok"
    if os.geteuid() == 0:
        # The monitor is root but checks as nobody: host permissions apply.
        assert lines[5] == "access: " + err(errno.EACCES)
    assert lines[6].startswith("statfs: ok type=0x1021994 ")  # TMPFS_MAGIC
    assert lines[7].startswith("stat: ok size=") and " mode=40755 " in lines[7]
    assert lines[8] == "note: " + err(errno.ENOSYS)
    note = run.records[-1]
    assert note["call"] == "note_unsupported" and note["linux_nr"] == 999 and note["arg0"] == 7


@pytest.mark.skipif(os.geteuid() != 0, reason="needs a root monitor to show it acts as nobody")
def test_host_permissions_apply_to_a_root_monitor(guest_bin, monitor, policy):
    run = med_fs(guest_bin, monitor, policy, "read", "/data/private.txt")
    assert run.lines == ["read: " + err(errno.EACCES)]
    # The host refused it (permission bits), not the policy.
    assert run.records[0]["decision"] == "error"


def test_open_flags_cloexec_nonblock_append(guest_bin, monitor, policy):
    run = med_fs(guest_bin, monitor, policy,
                 "open", "file:/data/a.txt", str(0o2000000),  # O_CLOEXEC
                 "open", "file:/data/a.txt", "0",
                 "open", "file:/tmp/app", str(0o2101),  # O_WRONLY|O_CREAT|O_APPEND
                 "open", "file:/data/a.txt", str(0o4000),  # O_NONBLOCK asked for
                 "open", "dir:/data", "0",
                 "open", "dir:/data/a.txt", "0",
                 "list", "/data/sub")
    lines = run.lines
    assert " getfd=1 " in lines[0]
    assert " getfd=0 " in lines[1]
    # The monitor opens non-blocking (a FIFO must not block it) but the
    # guest gets the flags it asked for.
    assert lines[1].endswith(" getfl=100000")  # O_LARGEFILE only
    assert lines[2].endswith(" getfl=102001")
    assert lines[3].endswith(" getfl=104000")
    assert lines[4].endswith(" getfl=300000")  # O_DIRECTORY|O_LARGEFILE
    assert lines[5] == "open: " + err(errno.ENOTDIR)
    assert lines[6] == "list: ok b.txt"


def test_fifo_does_not_block_the_monitor(guest_bin, monitor, policy, scratch):
    os.mkfifo("fifo", dir_fd=scratch.dir_fd)
    os.chown("fifo", *guest_identity()[:2], dir_fd=scratch.dir_fd)
    run = med_fs(guest_bin, monitor, policy, "open", "file:/tmp/fifo", "0", "open", "file:/tmp/fifo", "1",
                 "truncate", "/tmp/fifo", "0", "read", "/data/a.txt")
    # Read side: opened at once; write side with no reader: ENXIO, as a
    # non-blocking open(2) answers; truncate of a FIFO: EINVAL.
    assert run.lines[0].startswith("open: ok")
    assert run.lines[1:] == ["open: " + err(errno.ENXIO), "truncate: " + err(errno.EINVAL),
                             "read: ok hello data"]


def test_exec_needs_execute_permission_and_an_exec_mount(guest_bin, monitor, policy):
    run = med_fs(guest_bin, monitor, policy, "exec", "/bin/tool", "exec", "/bin/plain",
                 "exec", "/noexec/tool", "exec", "/bin")
    assert run.lines == ["exec: ok", "exec: " + err(errno.EACCES), "exec: " + err(errno.EACCES),
                         "exec: " + err(errno.EACCES)]
    assert [r["decision"] for r in run.records] == ["allow", "error", "deny", "error"]


# ---------------------------------------------------------------------------
# Refusals

def test_read_only_mount_refuses_every_change(guest_bin, monitor, policy, host_root):
    before = (host_root / "data/a.txt").read_bytes()
    run = med_fs(guest_bin, monitor, policy,
                 "write", "/data/new.txt", "x",
                 "open", "file:/data/a.txt", "2",  # O_RDWR
                 "open", "file:/data/a.txt", str(0o100),  # O_CREAT, read-only access
                 "mkdir", "/data/d", "0755",
                 "unlink", "/data/a.txt",
                 "rename", "/data/a.txt", "/data/b.txt", "0",
                 "symlink", "x", "/data/s",
                 "link", "/data/a.txt", "/data/l",
                 "chmod", "/data/a.txt", "0777",
                 "utimens", "/data/a.txt", "0",
                 "truncate", "/data/a.txt", "0",
                 "access", "/data/a.txt", "2")
    assert run.lines == [f"{c}: " + err(errno.EROFS) for c in
                         ("write", "open", "open", "mkdir", "unlink", "rename", "symlink", "link", "chmod",
                          "utimens", "truncate", "access")]
    assert all(r["decision"] == "deny" and r["errno"] == errno.EROFS for r in run.records)
    assert (host_root / "data/a.txt").read_bytes() == before
    assert sorted(os.listdir(host_root / "data")) == sorted(
        ["a.txt", "sub", "private.txt", "link_rel", "link_abs", "link_up", "link_host", "link_proc",
         "procroot", "loop1", "loop2", "subdir_link", "shadow_hardlink"])


def test_paths_outside_the_mounts_are_denied_and_audited(guest_bin, monitor, policy, host_root):
    run = med_fs(guest_bin, monitor, policy,
                 "read", "/outside/secret.txt", "read", "/etc/shadow", "stat", "/etc/shadow",
                 "read", "/root/.ssh/id_rsa", "stat", "/", "list", "/etc/shadow",
                 "stat", "/nonexistent")
    assert run.lines == [f"{c}: " + err(errno.EACCES) for c in ("read", "read", "stat", "read", "stat", "list",
                                                                 "stat")]
    assert [r["decision"] for r in run.records] == ["deny"] * 7
    assert run.records[0]["uri"] == "file:/outside/secret.txt"
    assert run.records[2]["path"] == "/etc/shadow" and run.records[2]["errno_name"] == "EACCES"
    assert run.stats["denied"] == 7


def test_dotdot_never_leaves_the_manifest(guest_bin, monitor, policy):
    run = med_fs(guest_bin, monitor, policy,
                 "read", "/data/../outside/secret.txt",
                 "read", "/data/../../../../../outside/secret.txt",
                 "read", "/data/sub/../../etc/shadow",
                 "read", "/etc/../etc/shadow",
                 "read", "/tmp/../etc/./shadow",
                 "read", "/data/sub/../a.txt",
                 "read", "/../../data/./sub/../a.txt",
                 "stat", "/etc/shadow/..")
    assert run.lines[:5] == ["read: " + err(errno.EACCES)] * 5
    assert run.lines[5:7] == ["read: ok hello data"] * 2
    # Passing through a hidden name reveals nothing about it.
    assert run.lines[7] == "stat: " + err(errno.EACCES)
    assert "SECRET" not in run.out


def test_symlinks_are_resolved_in_the_guest_view(guest_bin, monitor, policy):
    run = med_fs(guest_bin, monitor, policy,
                 "read", "/data/link_rel",
                 "read", "/data/link_abs",
                 "read", "/data/subdir_link/b.txt",
                 "read", "/data/subdir_link/../a.txt",
                 "read", "/data/link_up",
                 "read", "/data/link_host",
                 "read", "/data/link_proc",
                 "read", "/data/procroot/etc/shadow",
                 "read", "/data/loop1")
    assert run.lines[:4] == ["read: ok hello data", "read: ok hello data", "read: ok in sub",
                             "read: ok hello data"]
    # ../../outside from /data is /outside in the guest's view: not mounted.
    assert run.lines[4] == "read: " + err(errno.EACCES)
    # A host path means nothing in the guest's view (the host's /tmp is the
    # guest's scratch /tmp): not found there, never the host file.
    assert run.lines[5] in ("read: " + err(errno.ENOENT), "read: " + err(errno.EACCES))
    assert run.lines[6:8] == ["read: " + err(errno.EACCES)] * 2  # /proc is never mounted
    assert run.lines[8] == "read: " + err(errno.ELOOP)
    assert "SECRET" not in run.out


def test_symlinks_planted_in_scratch_cannot_reach_the_host(guest_bin, monitor, policy, host_root, scratch):
    secret = str(host_root / "outside/secret.txt")
    # Planted by the host too, through the scratch fd: the guest cannot tell.
    os.symlink(secret, "host_planted", dir_fd=scratch.dir_fd)
    run = med_fs(guest_bin, monitor, policy,
                 "symlink", secret, "/tmp/l1",
                 "symlink", "/proc/self/root" + secret, "/tmp/l2",
                 "symlink", "/proc/self/root/etc/shadow", "/tmp/l3",
                 "symlink", "/proc/1/root/etc/shadow", "/tmp/l4",
                 "symlink", "../etc/shadow", "/tmp/l5",
                 "symlink", "/proc/self/fd/0", "/tmp/l6",
                 "symlink", "/etc", "/tmp/etcdir",
                 "read", "/tmp/l1", "read", "/tmp/l2", "read", "/tmp/l3", "read", "/tmp/l4",
                 "read", "/tmp/l5", "read", "/tmp/l6", "read", "/tmp/host_planted",
                 "read", "/tmp/etcdir/shadow", "read", "/tmp/etcdir/passwd",
                 "read", "/proc/self/root/etc/shadow", "read", "/proc/self/fd/1",
                 "stat", "/proc/self/root")
    assert run.lines[:7] == ["symlink: ok"] * 7
    reads = run.lines[7:]
    assert reads[0] in ("read: " + err(errno.ENOENT), "read: " + err(errno.EACCES))  # a host path
    assert reads[1:6] == ["read: " + err(errno.EACCES)] * 5
    assert reads[6] in ("read: " + err(errno.ENOENT), "read: " + err(errno.EACCES))
    assert reads[7] == "read: " + err(errno.EACCES)  # /etc/shadow through a directory link: hidden
    assert reads[8] == "read: ok root:x:0:0"  # the guest's /etc/passwd, as the link says
    # /proc paths go to the monitor's view of the guest's own processes
    # (native/procview.c), which has no "self" (the library OS names its own
    # pid) and, here, no procfs at all: never the host's /proc.
    assert reads[9:] == ["read: " + err(errno.ENOENT), "read: " + err(errno.ENOENT),
                         "stat: " + err(errno.ENOENT)]
    assert "SECRET" not in run.out


def test_hidden_file_is_refused_through_a_hard_link(guest_bin, monitor, policy):
    run = med_fs(guest_bin, monitor, policy,
                 "read", "/data/shadow_hardlink", "stat", "/data/shadow_hardlink",
                 "link", "/etc/shadow", "/tmp/stolen", "linkf", "/data/shadow_hardlink", "/tmp/stolen")
    assert run.lines[:2] == ["read: " + err(errno.EACCES), "stat: " + err(errno.EACCES)]
    assert run.records[0]["decision"] == "deny"
    # Linking it elsewhere fails too (refused, and another mount anyway).
    assert run.lines[2] == "link: " + err(errno.EACCES)
    assert run.lines[3] in ("linkf: " + err(errno.EACCES), "linkf: " + err(errno.EXDEV))
    assert "SECRET" not in run.out


def test_hidden_path_is_refused_through_an_alias_mount(guest_bin, monitor, host_root, scratch):
    manifest = Manifest(
        mounts=(Mount("/etc", str(host_root / "etc")), Mount("/alias", str(host_root))),
        tmpfs=(Tmpfs("/tmp", SCRATCH_BYTES),),
        hidden=("/etc/shadow",),
    )
    with FsPolicy.from_manifest(manifest, {"/tmp": scratch.dir_fd}) as p:
        run = med_fs(guest_bin, monitor, p, "read", "/alias/etc/shadow", "read", "/alias/etc/passwd")
    assert run.lines == ["read: " + err(errno.EACCES), "read: ok root:x:0:0"]


def test_hostile_arguments_get_an_errno_and_the_monitor_keeps_serving(guest_bin, monitor, policy, scratch):
    fd = os.open("good.txt", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=scratch.dir_fd)
    os.write(fd, b"good")
    os.close(fd)
    os.chown("good.txt", *guest_identity()[:2], dir_fd=scratch.dir_fd)
    os.symlink("good.txt", "lnk", dir_fd=scratch.dir_fd)
    run = run_guest(monitor, policy, [guest_bin / "med_hostile", "/tmp/good.txt", "/tmp/lnk", "/tmp"])
    got = dict(line.split(": ", 1) for line in run.lines)
    E = {name: err(getattr(errno, name)) for name in ("EFAULT", "EINVAL", "ENAMETOOLONG")}
    expected = {
        "null_uri": E["EFAULT"], "unmapped_uri": E["EFAULT"], "kernel_uri": E["EFAULT"],
        "at_page_end": "ok", "past_page_end": E["EFAULT"], "len_zero": E["EINVAL"],
        "len_over_max": E["ENAMETOOLONG"], "len_huge": E["ENAMETOOLONG"], "len_negative": E["ENAMETOOLONG"],
        "len_max_component": E["ENAMETOOLONG"], "embedded_nul": E["EINVAL"], "flags_unknown": E["EINVAL"],
        "flags_upper_half": E["EINVAL"], "scheme_unknown": E["EINVAL"], "scheme_missing": E["EINVAL"],
        "path_relative": E["EINVAL"], "path_empty": E["EINVAL"], "dir_for_writing": E["EINVAL"],
        "trunc_readonly": E["EINVAL"],
        "stat_null_buf": E["EFAULT"], "stat_unmapped_buf": E["EFAULT"], "stat_buf_straddles": E["EFAULT"],
        "stat_flags_unknown": E["EINVAL"], "stat_len_huge": E["ENAMETOOLONG"],
        "readlink_len_zero": E["EINVAL"], "readlink_len_huge": E["EINVAL"], "readlink_unmapped_buf": E["EFAULT"],
        "readlink_not_link": E["EINVAL"], "access_mode_unknown": E["EINVAL"], "access_flags_unknown": E["EINVAL"],
        "mkdir_mode_unknown": E["EINVAL"], "unlink_flags_unknown": E["EINVAL"],
        "rename_flags_unknown": E["EINVAL"], "rename_unmapped_new": E["EFAULT"],
        "symlink_target_empty": E["EINVAL"], "link_flags_unknown": E["EINVAL"],
        "chmod_mode_unknown": E["EINVAL"], "utimens_unmapped_times": E["EFAULT"],
        "utimens_bad_nsec": E["EINVAL"], "truncate_negative": E["EINVAL"], "statfs_null_buf": E["EFAULT"],
        "non_utf8_create": "ok", "non_utf8_stat": "ok", "still_serving": "ok",
    }
    assert got == expected
    assert run.status.exit_code == 0
    assert scratch_read(scratch, "good.txt") == b"good"
    assert b"\xff\xfe-not-utf8" in os.listdir(os.fsencode(f"/proc/self/fd/{scratch.dir_fd}"))
    # The audit log escapes the name (and keeps distinct names distinct).
    assert any(r.get("uri") == "file:/tmp/\\xff\\xfe-not-utf8" for r in run.records)
    # Over-long texts are recorded truncated, with their real length.
    over = [r for r in run.records if r.get("uri_truncated_from")]
    assert over and all(len(r["uri"]) <= 256 for r in over)
    assert monitor.counters()["recv_errors"] == 0


@pytest.mark.unit
def test_escape_bytes_is_unambiguous():
    assert escape_bytes(b"plain/\xc3\xa9") == "plain/\u00e9"
    assert escape_bytes(b"\xff") == "\\xff"
    assert escape_bytes(b"\\xff") == "\\\\xff"


# ---------------------------------------------------------------------------
# Races, kills, many guests, leaks

@pytest.fixture
def race_tree():
    with public_and_secret_tree("picoproc-race-") as root:
        p = FsPolicy()
        p.add_mount("/", str(root))
        p.add_hidden("/sec")
        yield p
        p.close()


def test_flipping_the_path_during_the_call_never_gets_the_forbidden_file(guest_bin, race_tree):
    n = 20000
    allowed, forbidden = "file:/pub/x.txt", "file:/sec/x.txt"
    with Monitor(audit_capacity=2 * n) as mon:
        run = run_guest(mon, race_tree, [guest_bin / "med_race", allowed, forbidden, n])
        dropped = mon.counters()["audit_dropped"]
    assert dropped == 0
    fields = dict(kv.split("=") for kv in run.lines[0].split())
    assert int(fields["forbidden_content"]) == 0
    assert int(fields["opened"]) + int(fields["refused"]) == n
    assert len(run.records) == n
    # The monitor used exactly the bytes it checked: every allowed open was
    # of the allowed name, every record naming the forbidden one a denial.
    for r in run.records:
        if r["decision"] == "allow":
            assert r["uri"] == allowed
        if r["uri"] == forbidden:
            assert r["decision"] == "deny"
    seen = {r["uri"] for r in run.records}
    assert allowed in seen and forbidden in seen, "the flipping thread never raced the call"


@contextlib.contextmanager
def temp_files(n: int):
    with contextlib.ExitStack() as stack:
        yield [stack.enter_context(tempfile.TemporaryFile()) for _ in range(n)]


def test_guests_killed_mid_call_leave_the_monitor_healthy(guest_bin, policy):
    # Guests that call in a loop are SIGKILLed wherever they are, round after
    # round, until some kill has landed while the monitor was serving the
    # call (its answer then finds the notification gone: "abandoned"; a
    # few percent of kills do).  The rounds are bounded: a bug fails the test.
    abandoned = []
    with Monitor() as mon:
        for _round in range(300):
            with temp_files(4) as outs:
                started = [start_guest(mon, policy, [guest_bin / "med_spam", "/data/a.txt", "hello data", 0],
                                       o.fileno()) for o in outs]
                try:
                    deadline = time.monotonic() + TIMEOUT
                    while any(mon.guest_stats(h)["calls"] < 20 for _, h in started):
                        assert time.monotonic() < deadline, "the spamming guests made no calls"
                        time.sleep(0.002)
                finally:
                    for g, _ in started:
                        os.kill(g.pid, signal.SIGKILL)
                for g, h in started:
                    wait_guest(g)
                    stats = mon.remove_guest(h)
                    assert stats["calls"] >= 20 and stats["denied"] == 0 and stats["errors"] == 0
            # Drain every round: on a loaded machine many rounds may pass
            # before a kill lands mid-call, and the audit ring keeps only the
            # newest records.
            abandoned += [r for r in mon.drain_audit() if r["decision"] == "abandoned"]
            if mon.counters()["abandoned"] > 0:
                break
        counters = mon.counters()
        assert counters["abandoned"] > 0, "no kill ever landed during a call"
        assert counters["recv_errors"] == 0 and counters["guests"] == 0
        assert abandoned and all(r["errno"] == errno.ECANCELED for r in abandoned)
        run = med_fs(guest_bin, mon, policy, "read", "/data/a.txt")
        assert run.lines == ["read: ok hello data"]


def test_fifty_guests_served_concurrently(guest_bin, host_root, scratch):
    n_guests, n_calls = 50, 100
    with Monitor() as mon, FsPolicy() as p, temp_files(n_guests) as outs:
        p.add_mount_fd("/tmp", scratch.dir_fd)
        for i in range(n_guests):
            fd = os.open(f"f{i}", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=scratch.dir_fd)
            os.write(fd, f"content of guest {i}".encode())
            os.close(fd)
        started = []
        try:
            for i in range(n_guests):
                started.append(start_guest(mon, p, [guest_bin / "med_spam", f"/tmp/f{i}", f"content of guest {i}",
                                                    n_calls], outs[i].fileno()))
            # All 50 are registered with the one loop at once.
            assert mon.counters()["guests"] == n_guests
        except BaseException:
            for g, _ in started:
                release(g)
            raise
        for (g, h), out in zip(started, outs):
            status = wait_guest(g)
            stats = mon.remove_guest(h)
            out.seek(0)
            assert out.read() == f"good={n_calls} bad=0\n".encode()
            assert status.exit_code == 0
            assert stats["calls"] == n_calls and stats["allowed"] == n_calls
        assert len(mon.drain_audit()) == n_guests * n_calls


def _open_fds() -> dict[str, str]:
    found = {}
    for fd in os.listdir("/proc/self/fd"):
        try:
            found[fd] = os.readlink(f"/proc/self/fd/{fd}")
        except FileNotFoundError:  # the directory listing's own fd
            pass
    return found


def test_no_fd_leaks_in_the_monitor(guest_bin, host_root):
    # What the process keeps for every policy (its mount table, the
    # read-only copy of a host directory) is made once, before counting.
    with FsPolicy() as warm:
        warm.add_mount("/data", str(host_root / "data"))
    before = _open_fds()
    scratch = make_scratch(SCRATCH_BYTES)
    with Monitor() as mon:
        p = FsPolicy()
        p.add_mount("/data", str(host_root / "data"))
        p.add_mount_fd("/tmp", scratch.dir_fd)
        p.add_hidden("/data/private.txt")
        run = run_guest(mon, p, [guest_bin / "med_fs", "read", "/data/a.txt", "read", "/nope",
                                 "read", "/data/link_up", "write", "/tmp/x", "y", "list", "/data",
                                 "exec", "/data/a.txt", "open", "tcp:127.0.0.1:9", "0"])
        assert run.lines[-1] == "open: " + err(errno.EACCES)  # no network policy: refused
        assert run.records[-1]["decision"] == "deny"
        g, h = start_guest(mon, p, [guest_bin / "med_spam", "/data/a.txt", "hello data", 0], 2)
        os.kill(g.pid, signal.SIGKILL)
        wait_guest(g)
        mon.remove_guest(h)
        p.close()
    scratch.close()
    assert _open_fds() == before


def test_api_errors_and_restart(guest_bin, policy):
    mon = Monitor()
    try:
        with pytest.raises(MonitorError) as e:
            mon.remove_guest(12345)
        assert e.value.errno == errno.ENOENT
        with pytest.raises(MonitorError) as e:
            mon.add_guest(-1, 1, policy)
        assert e.value.errno == errno.EBADF
        # A guest added before the loop runs is served once it does; the
        # loop can be stopped and started again.
        mon.start()
        with pytest.raises(MonitorError):
            mon.start()
        mon.stop()
        mon.start()
        run = med_fs(guest_bin, mon, policy, "read", "/data/a.txt")
        assert run.lines == ["read: ok hello data"]
    finally:
        mon.close()


def test_audit_jsonl_writer(guest_bin, policy, tmp_path):
    path = tmp_path / "audit.jsonl"
    writer = AuditJsonlWriter(path)
    mon = Monitor(audit_sink=writer)
    mon.start()
    try:
        with tempfile.TemporaryFile() as out:
            g, h = start_guest(mon, policy, [guest_bin / "med_fs", "read", "/data/a.txt", "read", "/etc/shadow"],
                               out.fileno())
            wait_guest(g)
            mon.remove_guest(h)
    finally:
        mon.close()
        writer.close()
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert [(r["call"], r["uri"], r["decision"], r["errno"]) for r in records] == [
        ("open", "file:/data/a.txt", "allow", 0), ("open", "file:/etc/shadow", "deny", errno.EACCES)]
    assert all(r["pid"] > 0 and r["time_ns"] > 0 for r in records)


def test_guests_added_from_other_threads_while_serving(guest_bin, monitor, policy):
    results: list[list[str]] = []
    lock = threading.Lock()

    def one():
        run = med_fs(guest_bin, monitor, policy, "read", "/data/a.txt", "stat", "/data/sub/b.txt")
        with lock:
            results.append(run.lines)

    threads = [threading.Thread(target=one) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(TIMEOUT)
    assert len(results) == 8
    for lines in results:
        assert lines[0] == "read: ok hello data" and lines[1].startswith("stat: ok size=6 ")


# ---------------------------------------------------------------------------
# The host's own tree, and the network seam

def test_a_mount_of_the_host_root_does_not_reach_other_host_mounts(guest_bin, monitor):
    with pytest.raises(MonitorError) as e:
        FsPolicy().add_mount("/proc", "/proc")
    assert e.value.errno == errno.EPERM
    with FsPolicy() as p:
        p.add_mount("/", "/")
        p.add_hidden("/etc/shadow")
        p.add_hidden("/root")
        run = med_fs(guest_bin, monitor, p, "read", "/etc/hostname", "read", "/proc/self/status",
                     "read", "/proc/1/environ", "stat", "/dev/null", "read", "/etc/shadow",
                     "stat", "/root/.bashrc", "read", "/etc/../etc/./hostname")
    host_name = pathlib.Path("/etc/hostname").read_text()
    # /dev is another host mount below the granted root: refused
    # (RESOLVE_NO_XDEV), so no device node of the host is reached.  /proc is
    # never resolved through a mount at all: it is the monitor's view of the
    # guest's own processes (native/procview.c), which has no "self" and, for
    # this guest, no procfs (ENOSYS) -- no magic link, no host process.
    eacces = err(errno.EACCES)
    assert run.out == (f"read: ok {host_name}\n" + f"read: {err(errno.ENOENT)}\n" + f"read: {err(errno.ENOSYS)}\n"
                       + f"stat: {eacces}\n" + f"read: {eacces}\n" + f"stat: {eacces}\n"
                       + f"read: ok {host_name}\n")


def test_network_uris_go_through_the_net_policy(guest_bin, monitor, policy):
    import socket

    from picoproc.manifest import Endpoint
    from picoproc.netpolicy import NetPolicy

    with socket.socket() as srv, socket.socket() as closed:
        srv.bind(("127.0.0.1", 0))
        srv.listen(4)
        srv.settimeout(TIMEOUT)
        port = srv.getsockname()[1]
        closed.bind(("127.0.0.1", 0))  # bound, never listening: connects are refused
        refused_port = closed.getsockname()[1]
        net = NetPolicy(Manifest(net_connect=(Endpoint("127.0.0.1", port), Endpoint("127.0.0.1", refused_port))))
        with tempfile.TemporaryFile() as out:
            g, h = start_guest(monitor, policy, [guest_bin / "med_fs", "open", f"tcp:127.0.0.1:{port}", "2",
                                                 "open", "tcp:127.0.0.1:9", "2",  # not granted
                                                 "open", f"tcp:127.0.0.1:{refused_port}", "2"],
                               out.fileno(), net)
            conn, _ = srv.accept()
            conn.close()
            wait_guest(g)
            monitor.remove_guest(h)
            out.seek(0)
            lines = out.read().decode().splitlines()
    assert lines[0].startswith("open: ok fd=")
    assert lines[1:] == ["open: " + err(errno.EACCES), "open: " + err(errno.ECONNREFUSED)]
    records = [r for r in monitor.drain_audit() if r["guest"] == h]
    assert [r["decision"] for r in records] == ["allow", "deny", "error"]
    assert monitor.counters()["pending_connects"] == 0


def test_full_guest_fd_table_gets_emfile_and_the_monitor_leaks_nothing(guest_bin, host_root):
    import resource

    before = _open_fds()
    with Monitor() as mon, FsPolicy() as p:
        p.add_mount("/data", str(host_root / "data"))
        with tempfile.TemporaryFile() as out, open(os.devnull, "rb") as devnull:
            g = spawn_raw([str(guest_bin / "med_fs"), "hoard", "file:/data/a.txt"], {},
                          (devnull.fileno(), out.fileno(), 2), seccomp_flags=GUEST_SECCOMP_FLAGS,
                          rlimits={resource.RLIMIT_NOFILE: (8, 8)})
            h = mon.add_guest(g.listener_fd, g.guest_pid, p)
            os.close(g.listener_fd)
            wait_guest(g)
            stats = mon.remove_guest(h)
            out.seek(0)
            # fds 0-2 are stdio: 3..7 are given, the sixth open finds the
            # table full (the fd is installed by the guest's own kernel call).
            assert out.read() == f"hoard: 5 then err {errno.EMFILE}\n".encode()
        assert stats["allowed"] == 5 and stats["errors"] == 1
    assert _open_fds() == before


def test_file_mount_and_a_policy_in_use_is_frozen(guest_bin, monitor, host_root):
    with FsPolicy() as p:
        p.add_mount("/single.txt", str(host_root / "data/a.txt"))
        with tempfile.TemporaryFile() as out:
            g, h = start_guest(monitor, p, [guest_bin / "med_fs", "read", "/single.txt", "read", "/single.txt/x",
                                            "stat", "/", "read", "/a.txt"], out.fileno())
            with pytest.raises(MonitorError) as e:
                p.add_mount("/more", str(host_root))
            assert e.value.errno == errno.EBUSY
            wait_guest(g)
            monitor.remove_guest(h)
            out.seek(0)
            lines = out.read().decode().splitlines()
    assert lines == ["read: ok hello data", "read: " + err(errno.ENOTDIR), "stat: " + err(errno.EACCES),
                     "read: " + err(errno.EACCES)]


def test_renaming_a_directory_that_holds_a_hidden_path_is_refused(guest_bin, monitor, scratch):
    with FsPolicy() as p:
        p.add_mount_fd("/tmp", scratch.dir_fd)
        os.mkdir("keys", 0o755, dir_fd=scratch.dir_fd)
        os.chown("keys", *guest_identity()[:2], dir_fd=scratch.dir_fd)
        fd = os.open("keys/id", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=scratch.dir_fd)
        os.write(fd, b"SECRET key")
        os.close(fd)
        p.add_hidden("/tmp/keys/id")
        run = med_fs(guest_bin, monitor, p, "rename", "/tmp/keys", "/tmp/open", "0", "read", "/tmp/open/id",
                     "read", "/tmp/keys/id", "link", "/tmp/keys/id", "/tmp/copy", "write", "/tmp/keys/new", "ok")
    assert run.lines == ["rename: " + err(errno.EACCES), "read: " + err(errno.ENOENT), "read: " + err(errno.EACCES),
                         "link: " + err(errno.EACCES), "write: ok 2"]
    assert "SECRET" not in run.out


# ---------------------------------------------------------------------------
# Hidden names (manifest hidden_names): file-name patterns refused in every
# directory by the monitor's C path check.
#
#   /keys -> keys/ read-only:  id_rsa, server.key, .ssh/config (secrets),
#            notes.txt, id_rsa.pub, sub/ (innocent), innocent -> id_rsa,
#            abs_innocent -> /keys/server.key, sshdir -> .ssh (links with
#            innocent names), link.key -> notes.txt (a key-named link),
#            copy.key (a host hard link of notes.txt: key-named),
#            notes_copy (a host hard link of id_rsa: innocent name)

KEY_NAMES = ("id_rsa", "*.key", ".ssh")


@pytest.fixture(scope="module")
def keys_root():
    with tempfile.TemporaryDirectory(prefix="picoproc-keys-") as d:
        root = pathlib.Path(d)
        os.chmod(root, 0o755)
        keys = root / "keys"
        for sub in (keys, keys / ".ssh", keys / "sub"):
            sub.mkdir()
            os.chmod(sub, 0o755)
        for name, text in {"id_rsa": "SECRET rsa", "server.key": "SECRET server",
                           ".ssh/config": "SECRET config", "notes.txt": "notes",
                           "id_rsa.pub": "public"}.items():
            (keys / name).write_text(text)
            os.chmod(keys / name, 0o644)
        os.symlink("id_rsa", keys / "innocent")
        os.symlink("/keys/server.key", keys / "abs_innocent")
        os.symlink(".ssh", keys / "sshdir")
        os.symlink("notes.txt", keys / "link.key")
        os.link(keys / "notes.txt", keys / "copy.key")
        os.link(keys / "id_rsa", keys / "notes_copy")
        yield root


@pytest.fixture
def key_policy(keys_root, scratch):
    p = FsPolicy()
    p.add_mount("/keys", str(keys_root / "keys"))
    p.add_mount_fd("/tmp", scratch.dir_fd, writable=True)
    for pattern in KEY_NAMES:
        p.add_hidden_name(pattern)
    yield p
    p.close()


def _c_name_matches(pattern: str, name: bytes) -> int:
    from picoproc.native import lib

    p = pattern.encode("utf-8", "surrogateescape")
    return lib.pico_fs_hidden_name_matches(p, len(p), name, len(name))


def _python_name_matches(pattern: str, name: bytes) -> bool:
    from picoproc.manifest import hidden_name_matches

    # A host name reaches Python as os.fsdecode gives it (undecodable bytes
    # as surrogates), which is how the C side reads it too.
    return hidden_name_matches(pattern, "/" + os.fsdecode(name))


# Patterns that exercise every corner of Python's fnmatch.translate; several
# are read differently by glibc's fnmatch(3) ("[^ab]" negates there, "\\*" is
# an escaped star there, "[[:alpha:]]" a class), which is why the C side
# implements Python's rule rather than calling fnmatch(3).
AGREEMENT_PATTERNS = [
    "id_rsa", "*.key", ".ssh", "*", "?", "??", "*?", "a*", "*a*", "**a", "a*b*c", "*.[ch]",
    "[ab]", "[!ab]", "[^ab]", "[a-c]", "[c-a]", "[!c-a]", "[a-]", "[-a]", "[!-a]", "[]a]", "[!]a]",
    "[!]", "[]", "[", "[a", "a[", "a]", "\\*", "[\\]", "[\\-a]", "[[:alpha:]]", "[a-c-e]",
    "[z-ab-c]", "[z-a!b]", "[z-a!]", "[z-a^b]", "[a--]", "[--a]", "[&&]", "[~|]", "[!!]",
    "é*", "?é", "[é-ê]", "[!é]", "ssh_host_*_key", ".*", "*.", "[.]*",
]
AGREEMENT_NAMES = [
    b"a", b"b", b"c", b"d", b"e", b"z", b"^", b"-", b"]", b"[", b"!", b"\\", b"\\x", b"*", b":", b"&",
    b"~", b"|", b"..x", b".x", b"id_rsa", b"id_rsa.pub", b"ID_RSA", b"a.key", b".key", b"a.KEY",
    b"x.c", b"x.h", b"abc", b"aXbYc", b"ab", b".ssh", b".sshx", b"ssh_host_rsa_key", b"\n",
    "é".encode(), "éa".encode(), "ê".encode(), "aé".encode(), b"\xc3", b"\xff", b"a\xffb",
    b"\xe2\x82", b"\xed\xa0\x80", b"\xf0\x9f\x98\x80",
]


@pytest.mark.unit
def test_hidden_name_rule_agrees_with_python_on_a_table():
    disagreements = [(p, n, _python_name_matches(p, n), _c_name_matches(p, n))
                     for p in AGREEMENT_PATTERNS for n in AGREEMENT_NAMES
                     if _c_name_matches(p, n) != int(_python_name_matches(p, n))]
    assert disagreements == []
    # A few answers spelled out, so that the rule itself (not only the
    # agreement) is pinned down.
    assert _c_name_matches("[^ab]", b"^") == 1 and _c_name_matches("[^ab]", b"c") == 0
    assert _c_name_matches("\\*", b"\\x") == 1 and _c_name_matches("\\*", b"*") == 0
    assert _c_name_matches("*.key", b".key") == 1  # '*' matches a leading dot
    assert _c_name_matches("*.key", b"a.KEY") == 0  # case-sensitive
    assert _c_name_matches("?", "é".encode()) == 1  # one character, not one byte
    assert _c_name_matches("?", b"\xff") == 1 and _c_name_matches("??", b"\xc3\x28") == 1


@pytest.mark.unit
def test_hidden_name_rule_agrees_with_python_on_generated_pairs():
    import random

    rnd = random.Random(20261125)
    pattern_chars = list("abc-!^][*?\\.") + ["é", "\U0001F600"]
    name_pieces = [b"a", b"b", b"c", b"-", b"!", b"^", b"]", b"[", b"\\", b".", b"\xc3", b"\xa9",
                   b"\xe2", b"\x82", b"\xff", b"\xed", b"\xa0", b"\x80", b"\xf0", b"\x9f",
                   "é".encode(), "\U0001F600".encode()]
    checked = matched = 0
    disagreements = []
    for _ in range(20000):
        pattern = "".join(rnd.choice(pattern_chars) for _ in range(rnd.randint(1, 7)))
        if pattern in (".", ".."):
            continue
        name = b"".join(rnd.choice(name_pieces) for _ in range(rnd.randint(1, 4)))
        if name in (b".", b".."):
            continue
        py = _python_name_matches(pattern, name)
        checked += 1
        matched += py
        if _c_name_matches(pattern, name) != int(py):
            disagreements.append((pattern, name, py))
    assert disagreements[:10] == []
    assert checked > 19000 and matched > 100  # the pairs do exercise matches


@pytest.mark.unit
def test_add_hidden_name_validates_the_pattern():
    with FsPolicy() as p:
        for bad in ("", "a/b", "/", ".", "..", "a\x00b", "\udcff"):
            with pytest.raises(MonitorError) as e:
                p.add_hidden_name(bad)
            assert e.value.errno == errno.EINVAL and "not a file-name pattern" in str(e.value)
        with pytest.raises(MonitorError) as e:
            p.add_hidden_name("x" * 256)
        assert e.value.errno == errno.ENAMETOOLONG
        from picoproc.native import lib

        for i in range(lib.PICO_FS_MAX_HIDDEN_NAMES):
            p.add_hidden_name(f"n{i}")
        with pytest.raises(MonitorError) as e:
            p.add_hidden_name("one-more")
        assert e.value.errno == errno.E2BIG and "more than 256 hidden names" in str(e.value)
    assert _c_name_matches("a", b"x/y") == -errno.EINVAL
    assert _c_name_matches("a", b"x" * 256) == -errno.ENAMETOOLONG


def test_hidden_names_in_a_read_only_mount(guest_bin, monitor, key_policy):
    refused = ["read", "/keys/id_rsa", "read", "/keys/server.key", "stat", "/keys/id_rsa",
               "lstat", "/keys/server.key", "readlink", "/keys/link.key", "access", "/keys/id_rsa", "4",
               "rename", "/keys/id_rsa", "/keys/free", "0", "link", "/keys/id_rsa", "/keys/free",
               "read", "/keys/.ssh/config", "list", "/keys/.ssh",
               "read", "/keys/innocent", "read", "/keys/abs_innocent", "read", "/keys/sshdir/config",
               "read", "/keys/sub/../id_rsa", "read", "/keys/.ssh/../notes.txt", "read", "/keys/copy.key",
               "rename", "/keys/notes.txt", "/keys/x.key", "0"]
    allowed = ["read", "/keys/notes.txt", "read", "/keys/id_rsa.pub", "readlink", "/keys/innocent",
               "lstat", "/keys/sshdir", "read", "/keys/sub/../notes.txt", "list", "/keys"]
    run = med_fs(guest_bin, monitor, key_policy, *refused, *allowed)
    calls = ["read", "read", "stat", "lstat", "readlink", "access", "rename", "link", "read", "list",
             "read", "read", "read", "read", "read", "read", "rename"]
    # EACCES (the name is refused), never EROFS: the policy refuses the name
    # before looking at what the call would do.
    assert run.lines[:len(calls)] == [f"{c}: " + err(errno.EACCES) for c in calls]
    denied = run.records[:len(calls)]
    assert all(r["decision"] == "deny" and r["errno_name"] == "EACCES" for r in denied)
    assert run.stats["denied"] == len(calls)
    ok = run.lines[len(calls):]
    assert ok[:4] == ["read: ok notes", "read: ok public", "readlink: ok id_rsa", ok[3]]
    assert ok[3].startswith("lstat: ok ") and " mode=120777 " in ok[3]
    assert ok[4] == "read: ok notes"
    # Directory listings are a direct call on the dir fd: hidden names stay
    # listable, but not openable.
    assert ok[5].startswith("list: ok ") and " id_rsa " in ok[5] + " " and " .ssh " in ok[5] + " "
    assert [r["decision"] for r in run.records[len(calls):]] == ["allow"] * 6
    assert "SECRET" not in run.out


def test_hidden_names_in_scratch(guest_bin, monitor, key_policy, scratch):
    uid, gid, _ = guest_identity()
    for d in ("d", ".ssh"):
        os.mkdir(d, 0o755, dir_fd=scratch.dir_fd)
        os.chown(d, uid, gid, dir_fd=scratch.dir_fd)
    for name, text in (("id_rsa", b"SECRET scratch rsa"), (".ssh/config", b"SECRET scratch config"),
                       ("notes.txt", b"notes")):
        fd = os.open(name, os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=scratch.dir_fd)
        os.write(fd, text)
        os.close(fd)
        os.chown(name, uid, gid, dir_fd=scratch.dir_fd)
    os.symlink("notes.txt", "link.key", dir_fd=scratch.dir_fd)
    refused = [
        # the existing key and the directory holding one
        "read", "/tmp/id_rsa", "stat", "/tmp/id_rsa", "access", "/tmp/id_rsa", "4",
        "readlink", "/tmp/link.key", "chmod", "/tmp/id_rsa", "0666", "truncate", "/tmp/id_rsa", "0",
        "unlink", "/tmp/id_rsa", "rename", "/tmp/id_rsa", "/tmp/free", "0",
        "link", "/tmp/id_rsa", "/tmp/free", "write", "/tmp/.ssh/config", "x",
        "read", "/tmp/d/../id_rsa", "rename", "/tmp/.ssh", "/tmp/open", "0",
        # creating a key name, by every call that makes a name
        "write", "/tmp/new.key", "x", "mkdir", "/tmp/d/.ssh", "0700", "symlink", "notes.txt", "/tmp/d/id_rsa",
        "rename", "/tmp/notes.txt", "/tmp/d/id_rsa", "0", "link", "/tmp/notes.txt", "/tmp/stolen.key",
    ]
    rest = [
        # links the guest plants with innocent names lead to refused names
        "symlink", "id_rsa", "/tmp/innocent", "symlink", "/tmp/.ssh", "/tmp/dirlink",
        "read", "/tmp/innocent", "read", "/tmp/dirlink/config", "linkf", "/tmp/innocent", "/tmp/free",
        "readlink", "/tmp/innocent",
        # innocent names still work
        "write", "/tmp/d/ok.txt", "fine", "rename", "/tmp/d/ok.txt", "/tmp/d/ok2.txt", "0",
        "read", "/tmp/d/ok2.txt", "link", "/tmp/notes.txt", "/tmp/d/notes2",
    ]
    run = med_fs(guest_bin, monitor, key_policy, *refused, *rest)
    calls = ["read", "stat", "access", "readlink", "chmod", "truncate", "unlink", "rename", "link", "write",
             "read", "rename", "write", "mkdir", "symlink", "rename", "link"]
    assert run.lines[:len(calls)] == [f"{c}: " + err(errno.EACCES) for c in calls]
    assert all(r["decision"] == "deny" and r["errno"] == errno.EACCES for r in run.records[:len(calls)])
    assert run.lines[len(calls):] == [
        "symlink: ok", "symlink: ok", "read: " + err(errno.EACCES), "read: " + err(errno.EACCES),
        "linkf: " + err(errno.EACCES), "readlink: ok id_rsa",
        "write: ok 4", "rename: ok", "read: ok fine", "link: ok"]
    assert "SECRET" not in run.out
    # Nothing changed or appeared under a key name on the host side.
    assert scratch_read(scratch, "id_rsa") == b"SECRET scratch rsa"
    assert stat.S_IMODE(os.stat("id_rsa", dir_fd=scratch.dir_fd).st_mode) == 0o644
    assert sorted(os.listdir(scratch.dir_fd)) == [".ssh", "d", "dirlink", "id_rsa", "innocent", "link.key",
                                                 "notes.txt"]
    for directory, names in ((".ssh", ["config"]), ("d", ["notes2", "ok2.txt"])):
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY, dir_fd=scratch.dir_fd)
        try:
            assert sorted(os.listdir(fd)) == names
        finally:
            os.close(fd)


def test_hidden_names_are_names_not_inodes(guest_bin, monitor, key_policy):
    # A host hard link is another name for the same file: key-named, it is
    # refused (copy.key shows the innocent notes.txt); innocent-named, it is
    # not (notes_copy shows id_rsa's content).  That second case is the
    # documented limit of name patterns (mediate_fs.h, docs/MANIFEST.md):
    # refusing it would mean finding every matching file in every mounted
    # tree; a secret the host links under an innocent name needs `hidden`.
    run = med_fs(guest_bin, monitor, key_policy, "read", "/keys/copy.key", "read", "/keys/notes.txt",
                 "read", "/keys/notes_copy")
    assert run.lines == ["read: " + err(errno.EACCES), "read: ok notes", "read: ok SECRET rsa"]


def test_hidden_names_from_the_manifest(guest_bin, monitor, keys_root, scratch):
    manifest = Manifest(
        mounts=(Mount("/keys", str(keys_root / "keys")),),
        tmpfs=(Tmpfs("/tmp", SCRATCH_BYTES),),
        hidden_names=("id_rsa", "*.key"),
    )
    with FsPolicy.from_manifest(manifest, {"/tmp": scratch.dir_fd}) as p:
        run = med_fs(guest_bin, monitor, p, "read", "/keys/id_rsa", "read", "/keys/abs_innocent",
                     "read", "/keys/.ssh/config", "write", "/tmp/a.key", "x")
    # .ssh is not in this manifest's names: its config is readable.
    assert run.lines == ["read: " + err(errno.EACCES), "read: " + err(errno.EACCES),
                         "read: ok SECRET config", "write: " + err(errno.EACCES)]


def test_links_in_a_read_only_mount_decide_by_where_they_lead(guest_bin, monitor, tmp_path):
    """A link in a read-only (or noexec) mount that names a writable (or
    exec) one: changes through it land where it leads, as on Linux, and
    the link itself stays unchangeable; a link from the writable mount into
    the read-only one still gets EROFS.  (Found by picoproc bench fuzz: the
    read-only check ran on the path as written, before the link.)"""
    ro, rw = tmp_path / "ro", tmp_path / "rw"
    for d in (tmp_path, ro, rw):
        d.mkdir(exist_ok=True)
    os.chmod(tmp_path, 0o755)
    os.chmod(ro, 0o755)
    os.chmod(rw, 0o777)
    (ro / "f.txt").write_text("ro")
    (ro / "tool").write_text("#!/bin/true\n")
    os.chmod(ro / "tool", 0o755)
    os.symlink("/rw", ro / "to_rw")
    os.symlink("/ro", rw / "to_ro")
    os.symlink("/bin/tool", ro / "to_tool")
    with FsPolicy() as fs:
        fs.add_mount("/ro", str(ro), writable=False, exec=False)
        fs.add_mount("/bin", str(ro), writable=False, exec=True)
        fs.add_mount("/rw", str(rw), writable=True, exec=False)
        run = run_guest(monitor, fs, [guest_bin / "med_fs",
                                      "write", "/ro/to_rw/new.txt", "via",
                                      "mkdir", "/ro/to_rw/d", "0755",
                                      "chmod", "/ro/to_rw/new.txt", "0600",
                                      "chmod", "/ro/to_rw/d/", "0700",
                                      "exec", "/ro/to_tool",
                                      "exec", "/ro/tool",
                                      "unlink", "/ro/to_rw",
                                      "write", "/rw/to_ro/f.txt", "x",
                                      "write", "/ro/f.txt", "x"])
    assert run.lines[:5] == ["write: ok 3", "mkdir: ok", "chmod: ok", "chmod: ok", "exec: ok"], run.lines
    assert run.lines[5:] == ["exec: " + err(errno.EACCES), "unlink: " + err(errno.EROFS),
                             "write: " + err(errno.EROFS), "write: " + err(errno.EROFS)]
    assert (rw / "new.txt").read_text() == "via" and (rw / "d").is_dir()
    assert stat.S_IMODE(os.stat(rw / "new.txt").st_mode) == 0o600
    assert stat.S_IMODE(os.stat(rw / "d").st_mode) == 0o700
    assert (ro / "f.txt").read_text() == "ro" and os.path.islink(ro / "to_rw")
    # A refusal that the walk confirms is still audited as a denial.
    assert [r["decision"] for r in run.records if r["errno"] == errno.EROFS] == ["deny"] * 3


def test_data_only_mount_writes_but_never_changes_the_file(guest_bin, monitor, tmp_path):
    """The device files the library OS shows (/dev/null ...) are data-only
    mounts: writing is allowed, changing the file is not, even when host
    permissions would allow it (a host /dev/null owned by nobody was seen)."""
    uid, gid, _ = guest_identity()
    target = tmp_path / "dev" / "sink"
    target.parent.mkdir()
    target.write_bytes(b"original")
    os.chown(target, uid, gid)  # the guest identity owns it: host perms alone would allow all
    os.chmod(target, 0o666)
    os.chmod(tmp_path, 0o755)
    os.chmod(target.parent, 0o777)
    before = os.stat(target)
    with FsPolicy() as fs:
        fs.add_mount("/dev/sink", str(target), exec=False, data_only=True)
        run = run_guest(monitor, fs, [guest_bin / "med_fs",
                                      "write", "/dev/sink", "xy",
                                      "chmod", "/dev/sink", "0600",
                                      "chown", "/dev/sink", str(uid), str(gid),
                                      "utimens", "/dev/sink", "1000",
                                      "truncate", "/dev/sink", "0",
                                      "unlink", "/dev/sink",
                                      "rename", "/dev/sink", "/dev/other", "0"])
    assert run.lines[0] == "write: ok 2"
    assert run.lines[1:6] == ["chmod: " + err(errno.EPERM), "chown: " + err(errno.EPERM),
                              "utimens: " + err(errno.EPERM), "truncate: " + err(errno.EPERM),
                              "unlink: " + err(errno.EPERM)]
    assert run.lines[6].startswith("rename: ")
    assert run.lines[6] != "rename: ok"
    after = os.stat(target)
    # Writing changes the data (and so mtime): that is allowed.  Nothing else.
    assert (after.st_mode, after.st_uid, after.st_gid, after.st_ino) == (
        before.st_mode, before.st_uid, before.st_gid, before.st_ino)
    assert target.exists()


@pytest.mark.unit
def test_unknown_mount_mode_is_refused(tmp_path):
    from picoproc.native import ffi, lib

    p = lib.pico_fs_policy_new()
    fd = os.open(tmp_path, os.O_PATH | os.O_DIRECTORY)
    try:
        assert lib.pico_fs_policy_add_mount(p, b"/x", 2, fd, ffi.NULL, 7, 1) == -errno.EINVAL
        assert lib.pico_fs_policy_add_mount(p, b"/x", 2, fd, ffi.NULL, lib.PICO_MOUNT_DATA, 1) == 0
    finally:
        os.close(fd)
        lib.pico_fs_policy_free(p)


@pytest.mark.unit
def test_audit_records_decode_every_field():
    """The batch decoder (one struct.unpack over the drained array) against
    records written field by field through cffi: every kind of record, text
    cut at PICO_AUDIT_TEXT, bytes that are not UTF-8, a backslash."""
    from picoproc.monitor import CALL_NAMES, _record_dicts
    from picoproc.native import ffi, lib

    number = {name: nr for nr, name in CALL_NAMES.items()}
    cap = lib.PICO_AUDIT_TEXT
    long_path = b"/" + b"d" * (cap + 40)
    rows = [
        # call, decision, err, result, arg, arg2, text, text_full, text2, text2_full
        ("open", lib.PICO_DECISION_ALLOW, 0, 5, 0o100000, 0, b"file:/etc/hosts", None, b"", 0),
        ("open", lib.PICO_DECISION_DENY, errno.EACCES, -errno.EACCES, 0, 0, long_path[:cap], len(long_path),
         b"", 0),
        ("stat", lib.PICO_DECISION_ERROR, errno.ENOENT, -errno.ENOENT, 0, 0, b"/tmp/\xff\\x", None, b"", 0),
        ("symlink", lib.PICO_DECISION_ALLOW, 0, 0, 0, 0, b"/tmp/link", None, b"../target", None),
        ("rename", lib.PICO_DECISION_ALLOW, 0, 0, 0, 0, b"/tmp/a", None, long_path[:cap], len(long_path)),
        ("note_unsupported", lib.PICO_DECISION_ERROR, errno.ENOSYS, -errno.ENOSYS, 321, 7, b"", 0, b"", 0),
        (None, lib.PICO_DECISION_ERROR, errno.ENOSYS, -errno.ENOSYS, 4242, 0, b"", 0, b"", 0),
    ]
    buf = ffi.new("struct pico_audit_record[]", len(rows) + 1)  # one more, not decoded
    for i, (call, decision, err, result, arg, arg2, text, full, text2, full2) in enumerate(rows):
        r = buf[i]
        r.time_ns, r.guest, r.pid = 10**18 + i, (1 << 32) + i, 100 + i
        r.call = number[call] if call else -1
        r.decision, r.err, r.result, r.arg, r.arg2 = decision, err, result, arg, arg2
        # A denial carries the reason code of the rule that refused it.
        r.reason = lib.PICO_DENY_HIDDEN_PATH if decision == lib.PICO_DECISION_DENY else 0
        r.text_len, r.text_full = len(text), len(text) if full is None else full
        ffi.memmove(r.text, text, len(text))
        r.text2_len, r.text2_full = len(text2), len(text2) if full2 is None else full2
        ffi.memmove(r.text2, text2, len(text2))
    buf[len(rows)].guest = 99
    recs = _record_dicts(buf, len(rows))
    assert len(recs) == len(rows)
    base = [{"time_ns": 10**18 + i, "guest": (1 << 32) + i, "pid": 100 + i} for i in range(len(rows))]
    assert recs[0] == {**base[0], "call": "open", "decision": "allow", "errno": 0, "errno_name": "",
                       "result": 5, "arg": 0o100000, "uri": "file:/etc/hosts"}
    assert recs[1] == {**base[1], "call": "open", "decision": "deny", "errno": errno.EACCES,
                       "errno_name": "EACCES", "result": -errno.EACCES, "arg": 0,
                       "reason": "hidden_path",
                       "uri": long_path[:cap].decode(), "uri_truncated_from": len(long_path)}
    assert recs[2] == {**base[2], "call": "stat", "decision": "error", "errno": errno.ENOENT,
                       "errno_name": "ENOENT", "result": -errno.ENOENT, "arg": 0, "path": "/tmp/\\xff\\\\x"}
    assert recs[3]["path"] == "/tmp/link" and recs[3]["target"] == "../target"
    assert "new_path" not in recs[3]
    assert recs[4]["path"] == "/tmp/a" and recs[4]["new_path"] == long_path[:cap].decode()
    assert recs[4]["new_path_truncated_from"] == len(long_path)
    assert recs[5] == {**base[5], "call": "note_unsupported", "decision": "error", "errno": errno.ENOSYS,
                       "errno_name": "ENOSYS", "result": -errno.ENOSYS, "linux_nr": 321, "arg0": 7}
    assert recs[6] == {**base[6], "call": "unknown", "decision": "error", "errno": errno.ENOSYS,
                       "errno_name": "ENOSYS", "result": -errno.ENOSYS, "nr": 4242}
