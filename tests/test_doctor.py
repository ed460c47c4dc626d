"""`picoproc doctor`: each probe against an independent check, the report
formats, the exit-status logic, and that probing leaves nothing behind."""

from __future__ import annotations

import ctypes
import errno
import importlib.util
import io
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence

import pytest
from picoproc import doctor

pytestmark = pytest.mark.root

RUN_TIMEOUT = 60  # seconds any subprocess in this file may take before the test fails

libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long

SYS_PIDFD_OPEN = 434
SYS_CLOSE_RANGE = 436
SYS_OPENAT2 = 437
SYS_LANDLOCK_CREATE_RULESET = 444


def _native_or_skip():
    if doctor._lib is None:
        pytest.skip(f"picoproc's C module is not usable: {doctor._NATIVE_ERROR}")


@pytest.fixture(scope="module")
def probes() -> dict[str, doctor.Probe]:
    return {p.name: p for p in doctor.collect_probes()}


def _kernel_at_least(major: int, minor: int) -> bool:
    release = platform.release().split("-")[0].split(".")
    return (int(release[0]), int(release[1])) >= (major, minor)


def _open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def _children() -> set[int]:
    """Direct children of every thread of this process (zombies included)."""
    kids: set[int] = set()
    for tid in os.listdir("/proc/self/task"):
        with open(f"/proc/self/task/{tid}/children") as f:
            kids.update(int(x) for x in f.read().split())
    return kids


# ---- the set of probes ------------------------------------------------------


def test_every_probe_reports_once_with_a_one_line_why(probes):
    all_probes = doctor.collect_probes()
    assert [p.name for p in all_probes] == list(doctor.PROBE_NAMES)
    assert len(set(doctor.PROBE_NAMES)) == len(doctor.PROBE_NAMES)
    assert set(doctor.CORE_FEATURES) <= set(doctor.PROBE_NAMES)
    for p in all_probes:
        assert p.core == (p.name in doctor.CORE_FEATURES)
        assert isinstance(p.ok, bool)
        assert p.detail and "\n" not in p.detail, p


@pytest.mark.unit
def test_the_issue_lists_are_covered():
    names = set(doctor.PROBE_NAMES)
    for required in (
        "seccomp.filter",
        "seccomp.user_notif",
        "seccomp.addfd_send",
        "seccomp.sync_wake_up",
        "seccomp.wait_killable_recv",
        "landlock",
        "ns.user",
        "ns.pid",
        "ns.mount",
        "ns.net",
        "ns.ipc",
        "ns.uts",
        "cgroup.v1.memory",
        "cgroup.v1.pids",
        "cgroup.v2.memory",
        "cgroup.v2.pids",
        "cgroup.selected",
        "openat2.resolve_beneath",
        "process_vm_readv",
        "pidfd_open",
        "close_range",
        "backend.bwrap",
        "backend.gvisor",
        "backend.container-crun",
        "backend.sandlock",
        "backend.ptrace",
    ):
        assert required in names


# ---- seccomp ----------------------------------------------------------------


def _actions_avail() -> set[str]:
    try:
        with open("/proc/sys/kernel/seccomp/actions_avail") as f:
            return set(f.read().split())
    except OSError:
        return set()


def _own_seccomp_status() -> list[str]:
    with open("/proc/self/status") as f:
        return [line for line in f if line.startswith("Seccomp")]


def test_seccomp_filter_agrees_with_the_kernels_action_list(probes):
    _native_or_skip()
    actions = _actions_avail()
    if not actions:
        pytest.skip("/proc/sys/kernel/seccomp/actions_avail is not readable")
    assert probes["seccomp.filter"].ok == ("errno" in actions), probes["seccomp.filter"]
    assert probes["seccomp.user_notif"].ok == ("user_notif" in actions), probes[
        "seccomp.user_notif"
    ]


def test_probing_installs_no_filter_on_the_caller():
    """The filters go on probe children only, never on this process."""
    before = _own_seccomp_status()
    doctor.collect_probes()
    assert _own_seccomp_status() == before


@pytest.mark.parametrize(
    "name, since",
    [
        ("seccomp.addfd_send", (5, 14)),
        ("seccomp.wait_killable_recv", (5, 19)),
        ("seccomp.sync_wake_up", (6, 6)),
    ],
)
def test_notification_features_present_on_a_kernel_that_has_them(probes, name, since):
    """Only one direction can be checked: a distribution kernel may backport."""
    _native_or_skip()
    if not _kernel_at_least(*since):
        pytest.skip(f"kernel {platform.release()} predates {since}")
    assert probes[name].ok, probes[name]


def test_addfd_send_reports_the_fd_the_child_received(probes):
    _native_or_skip()
    p = probes["seccomp.addfd_send"]
    if not p.ok:
        pytest.skip(p.detail)
    # NOTIF_ADDFD without SETFD takes the child's lowest free number.
    assert isinstance(p.value, int) and p.value >= 0
    assert f"({p.value})" in p.detail


# ---- landlock ---------------------------------------------------------------


def test_landlock_version_matches_a_direct_syscall(probes):
    _native_or_skip()
    version = libc.syscall(
        SYS_LANDLOCK_CREATE_RULESET, None, ctypes.c_size_t(0), ctypes.c_uint32(1)
    )
    p = probes["landlock"]
    if version < 0:
        err = ctypes.get_errno()
        assert not p.ok and p.value == 0
        assert errno.errorcode[err] in p.detail
    else:
        assert p.ok and p.value == version
        assert f"ABI version {version}" in p.detail


# ---- namespaces -------------------------------------------------------------

UNSHARE_ARGS = {
    "ns.user": ["--user"],
    "ns.pid": ["--pid", "--fork"],
    "ns.mount": ["--mount"],
    "ns.net": ["--net"],
    "ns.ipc": ["--ipc"],
    "ns.uts": ["--uts"],
}


def _unshare_works(args: list[str], prefix: list[str] = ()) -> bool:
    proc = subprocess.run(
        [*prefix, "unshare", *args, "true"], check=False, capture_output=True, timeout=RUN_TIMEOUT
    )
    return proc.returncode == 0


@pytest.mark.parametrize("name", sorted(UNSHARE_ARGS))
def test_namespace_matches_unshare(probes, name):
    _native_or_skip()
    if shutil.which("unshare") is None:
        pytest.skip("unshare(1) is not installed")
    p = probes[name]
    direct = _unshare_works(UNSHARE_ARGS[name])
    with_userns = direct or (
        name != "ns.user" and _unshare_works(["--user", "--map-root-user", *UNSHARE_ARGS[name]])
    )
    assert p.ok == with_userns, p
    if p.ok:
        assert p.value == ("direct" if direct else "via_userns"), p


# ---- cgroups ----------------------------------------------------------------


def _proc_mounts() -> list[tuple[str, str, set[str]]]:
    """(mount point, type, options) from /proc/mounts, a different view than
    the probe's /proc/self/mountinfo."""
    out = []
    with open("/proc/mounts") as f:
        for line in f:
            _dev, mnt, fstype, opts, *_ = line.split()
            if fstype in ("cgroup", "cgroup2"):
                out.append((mnt.replace("\\040", " "), fstype, set(opts.split(","))))
    return out


@pytest.mark.parametrize("controller", ["memory", "pids"])
def test_cgroup_v1_matches_proc_mounts(probes, controller):
    p = probes[f"cgroup.v1.{controller}"]
    mounted = [m for m, t, o in _proc_mounts() if t == "cgroup" and controller in o]
    if not mounted:
        assert not p.ok and "no cgroup v1 hierarchy" in p.detail
        return
    path = p.value["path"]
    assert path.startswith(mounted[0])
    assert os.path.isdir(path)
    assert p.ok == (
        os.access(path, os.W_OK) and os.access(os.path.join(path, "cgroup.procs"), os.W_OK)
    )


@pytest.mark.parametrize("controller", ["memory", "pids"])
def test_cgroup_v2_matches_the_delegating_file(probes, controller):
    p = probes[f"cgroup.v2.{controller}"]
    mounted = [m for m, t, o in _proc_mounts() if t == "cgroup2"]
    if not mounted:
        assert not p.ok and "no cgroup2" in p.detail
        return
    with open("/proc/self/cgroup") as f:
        own = next(line.split(":", 2)[2].strip() for line in f if line.startswith("0::"))
    # In the root cgroup the root offers the controllers; elsewhere our
    # parent must delegate them (subtree_control) for sibling run cgroups.
    if own == "/":
        base, listing = mounted[0], os.path.join(mounted[0], "cgroup.controllers")
    else:
        base = os.path.dirname(os.path.join(mounted[0], own.lstrip("/")))
        listing = os.path.join(base, "cgroup.subtree_control")
    with open(listing) as f:
        offered = controller in f.read().split()
    if not offered:
        assert not p.ok and "not in" in p.detail
    else:
        assert p.ok == (
            os.access(base, os.W_OK) and os.access(os.path.join(base, "cgroup.procs"), os.W_OK)
        )


def test_cgroup_selection_is_the_runtimes_own_choice(probes):
    cgroups = pytest.importorskip("picoproc.cgroups")
    support = cgroups.available(refresh=True)
    selected = probes["cgroup.selected"]
    assert selected.value == {"version": support.version, "reason": support.reason}
    assert selected.ok == (support.version is not None)
    # ...and it is consistent with the per-version probes.
    v1 = probes["cgroup.v1.memory"].ok or probes["cgroup.v1.pids"].ok
    v2 = probes["cgroup.v2.memory"].ok or probes["cgroup.v2.pids"].ok
    if support.version == "v1":
        assert v1
    elif support.version == "v2":
        assert v2
    else:
        assert not v1 and not v2


@pytest.mark.unit
def test_mountinfo_parsing_handles_escapes_and_junk():
    lines = [
        r"41 31 0:38 / /sys/fs/cgroup/with\040space rw,relatime - cgroup2 cgroup2 rw",
        "35 31 0:32 /sub /mnt/mem ro,relatime - cgroup cgroup rw,memory",
        "garbage line without separator",
        "1 2 3 - cgroup",  # too few fields
        "22 1 0:5 / /proc rw - proc proc rw",
    ]
    mounts = doctor._cgroup_mounts("\n".join(lines))
    assert [(m.fstype, m.mount_point, m.root, m.read_only) for m in mounts] == [
        ("cgroup2", "/sys/fs/cgroup/with space", "/", False),
        ("cgroup", "/mnt/mem", "/sub", True),
    ]
    assert "memory" in mounts[1].super_options
    # A cgroup inside the mounted subtree maps below the mount point; one
    # outside it (another namespace's view) falls back to the path as given.
    assert doctor._cgroup_dir(mounts[1], "/sub/job") == "/mnt/mem/job"
    assert doctor._cgroup_dir(mounts[1], "/sub") == "/mnt/mem"
    assert doctor._cgroup_dir(mounts[0], "/") == "/sys/fs/cgroup/with space"


# ---- openat2, process_vm_readv, pidfd_open, close_range ---------------------


class OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


def test_openat2_matches_a_direct_syscall(probes, tmp_path):
    _native_or_skip()
    (tmp_path / "inner").mkdir()
    dirfd = os.open(tmp_path / "inner", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        how = OpenHow(os.O_PATH | os.O_CLOEXEC, 0, 0x08)  # RESOLVE_BENEATH
        fd = libc.syscall(
            SYS_OPENAT2, dirfd, b"..", ctypes.byref(how), ctypes.c_size_t(ctypes.sizeof(how))
        )
        err = ctypes.get_errno()
        if fd >= 0:
            os.close(fd)
    finally:
        os.close(dirfd)
    assert probes["openat2.resolve_beneath"].ok == (fd < 0 and err == errno.EXDEV)
    if fd < 0 and err == errno.ENOSYS:
        assert "ENOSYS" in probes["openat2.resolve_beneath"].detail


class IoVec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]


def test_process_vm_readv_matches_a_direct_call(probes):
    _native_or_skip()
    source = ctypes.create_string_buffer(b"independent check", 32)
    target = ctypes.create_string_buffer(32)
    local = IoVec(ctypes.cast(target, ctypes.c_void_p), 32)
    remote = IoVec(ctypes.cast(source, ctypes.c_void_p), 32)
    libc.process_vm_readv.restype = ctypes.c_ssize_t
    n = libc.process_vm_readv(os.getpid(), ctypes.byref(local), 1, ctypes.byref(remote), 1, 0)
    works = n == 32 and target.raw == source.raw
    assert probes["process_vm_readv"].ok == works, probes["process_vm_readv"]


def test_pidfd_open_matches_a_direct_syscall(probes):
    fd = libc.syscall(SYS_PIDFD_OPEN, os.getpid(), 0)
    if fd >= 0:
        os.close(fd)
    assert probes["pidfd_open"].ok == (fd >= 0)


def test_close_range_matches_a_direct_syscall(probes):
    _native_or_skip()
    fd = os.open("/dev/null", os.O_RDONLY)
    rc = libc.syscall(SYS_CLOSE_RANGE, fd, fd, 0)
    if rc != 0:
        os.close(fd)
    else:
        with pytest.raises(OSError) as exc:
            os.fstat(fd)
        assert exc.value.errno == errno.EBADF
    assert probes["close_range"].ok == (rc == 0)


# ---- backends ---------------------------------------------------------------


@pytest.mark.parametrize(
    "name, programs",
    [
        ("backend.bwrap", ["bwrap"]),
        ("backend.gvisor", ["runsc"]),
        ("backend.container-crun", ["crun"]),
    ],
)
def test_program_backends_match_which(probes, name, programs):
    p = probes[name]
    found = next((shutil.which(x) for x in programs if shutil.which(x)), None)
    if found is None:
        assert not p.ok and "not on PATH" in p.detail
    else:
        assert found in p.detail and p.value["path"] == found
        if p.ok:
            assert p.value["version"] and p.value["version"] in p.detail


@pytest.mark.parametrize(
    "name, module", [("backend.sandlock", "sandlock"), ("backend.ptrace", "ptrace")]
)
def test_python_backends_match_find_spec(probes, name, module):
    p = probes[name]
    if importlib.util.find_spec(module) is None:
        assert not p.ok and "not installed" in p.detail
    else:
        assert p.ok == (p.value is not None)
        if p.ok:
            assert f"import {module} works" in p.detail


@pytest.mark.unit
def test_backend_probes_are_the_registrys_peers():
    """doctor probes what the backend registry says each backend needs,
    for exactly the backends it registers, in its order."""
    from picoproc.backends import backend_names
    from picoproc.backends._registry import BUILTIN

    assert [b.name for b in BUILTIN] == backend_names()
    peers = [b for b in BUILTIN if b.programs or b.python_module]
    assert {b.name for b in peers} == {"container-crun", "bwrap", "gvisor", "ptrace", "sandlock"}
    backend_probes = [n for n in doctor.PROBE_NAMES if n.startswith("backend.")]
    assert backend_probes == [f"backend.{b.name}" for b in peers]


@pytest.mark.unit
def test_backend_not_on_path_is_reported_as_such():
    p = doctor._program_probe("backend.x", ("picoproc-no-such-program",))
    assert not p.ok and p.detail == "picoproc-no-such-program not on PATH"


def test_backend_whose_version_fails_is_not_present():
    p = doctor._program_probe("backend.x", ("false",))
    assert not p.ok and "exited with status 1" in p.detail


def test_backend_that_hangs_is_cut_off_and_reaped(monkeypatch):
    monkeypatch.setattr(doctor, "VERSION_TIMEOUT", 0.2)
    before = _children()
    p = doctor._program_probe("backend.x", ("sleep",), args=("30",))
    assert not p.ok and "did not answer within 0.2 s" in p.detail
    assert _children() <= before


def test_python_backend_that_fails_to_import(tmp_path, monkeypatch):
    (tmp_path / "picoproc_broken_peer.py").write_text("raise ImportError('needs libfoo.so.1')\n")
    (tmp_path / "picoproc_chatty_peer.py").write_text("print('banner on import')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    broken, missing, fine, chatty = doctor._module_probes(
        [
            ("backend.x", "picoproc_broken_peer", "no-such-dist"),
            ("backend.y", "picoproc_no_such_module", "no-such-dist"),
            ("backend.z", "json", "no-such-dist"),
            ("backend.w", "picoproc_chatty_peer", "no-such-dist"),
        ]
    )
    assert chatty.ok, chatty
    assert not broken.ok and "import picoproc_broken_peer failed" in broken.detail
    assert "needs libfoo.so.1" in broken.detail
    assert not missing.ok and "not installed" in missing.detail
    # One broken peer does not spoil the others checked in the same interpreter.
    assert fine.ok and fine.value["module"] == "json"


def test_peers_are_imported_in_another_process_not_this_one():
    """Loading a peer's native code into the monitor just to report on it
    would change the monitor (address space, threads, signal handlers)."""
    peers = ("sandlock", "ptrace")
    before = {m for m in peers if m in sys.modules}
    doctor.collect_probes()
    assert {m for m in peers if m in sys.modules} == before


@pytest.mark.unit
def test_missing_python_backend():
    (p,) = doctor._module_probes([("backend.x", "picoproc_no_such_module", "no-such-dist")])
    assert not p.ok and "not installed" in p.detail


# ---- nothing left behind ----------------------------------------------------


def test_probing_leaves_no_fds_or_children():
    before_fds, before_kids = _open_fds(), _children()
    result = doctor.collect_probes()
    assert _open_fds() == before_fds
    assert _children() <= before_kids
    assert len(result) == len(doctor.PROBE_NAMES)


ZERO_TIMEOUT_SCRIPT = """
import json, os
from picoproc import doctor
def fds(): return sorted(os.listdir("/proc/self/fd"))
def kids(): return sorted(open(f"/proc/self/task/{t}/children").read() for t in os.listdir("/proc/self/task"))
before = (fds(), kids())
probes = doctor.collect_probes(timeout=0.0)
print(json.dumps({"same": before == (fds(), kids()), "probes": [[p.name, p.ok, p.detail] for p in probes]}))
"""


def test_zero_timeout_finishes_and_leaves_nothing():
    """Every child-based probe with a deadline already passed: each either
    finds its child done or kills and reaps it.  Run in a subprocess so a
    hang fails the test (RUN_TIMEOUT) instead of hanging the suite."""
    proc = subprocess.run(
        [sys.executable, "-c", ZERO_TIMEOUT_SCRIPT],
        check=False,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
    )
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["same"]
    assert [name for name, _, _ in doc["probes"]] == list(doctor.PROBE_NAMES)
    for name, ok, detail in doc["probes"]:
        assert ok or detail, name


def test_an_unanswered_notification_is_killed_at_the_deadline():
    """The child sits in getppid() waiting for an answer that never comes:
    the probe must kill it at the deadline, reap it and close every fd."""
    _native_or_skip()
    ffi, lib = doctor._ffi, doctor._lib
    out = ffi.new("struct pico_probe_result *")
    before_fds, before_kids = _open_fds(), _children()
    assert lib.pico_probe_notif(lib.PICO_PROBE_NOTIF_UNANSWERED, 100, out) == 0
    assert (out.step, out.err) == (lib.PICO_PROBE_STEP_TIMEOUT, errno.ETIMEDOUT)
    assert _open_fds() == before_fds
    assert _children() <= before_kids


@pytest.mark.unit
def test_c_probes_reject_bad_arguments():
    _native_or_skip()
    ffi, lib = doctor._ffi, doctor._lib
    out = ffi.new("struct pico_probe_result *")
    before_fds, before_kids = _open_fds(), _children()
    for bad in (-1, 0, 7, 1 << 30):
        assert lib.pico_probe_namespace(bad, 1000, out) == 0
        assert (out.step, out.err) == (lib.PICO_PROBE_STEP_SETUP, errno.EINVAL)
    for bad in (-1, 5, 1 << 30):
        assert lib.pico_probe_notif(bad, 1000, out) == 0
        assert (out.step, out.err) == (lib.PICO_PROBE_STEP_SETUP, errno.EINVAL)
    # A negative timeout is a deadline already passed: a timeout at whichever
    # wait the parent had reached, never a hang.
    assert lib.pico_probe_notif(lib.PICO_PROBE_NOTIF_UNANSWERED, -5, out) == 0
    assert out.step in (
        lib.PICO_PROBE_STEP_TIMEOUT,
        lib.PICO_PROBE_STEP_PASS_LISTENER,
        lib.PICO_PROBE_STEP_WAIT_NOTIF,
    )
    assert _open_fds() == before_fds and _children() <= before_kids


# ---- caching and the "is X available" API -------------------------------------


@pytest.mark.unit
def test_run_probes_is_cached_per_process(monkeypatch):
    calls = []

    def counting_probe(timeout_ms):
        calls.append(timeout_ms)
        return [doctor.Probe("x", True, "counted", False)]

    monkeypatch.setattr(doctor, "_PROBES", [(("x",), counting_probe)])
    monkeypatch.setattr(doctor, "_cache", None)
    first = doctor.run_probes()
    second = doctor.run_probes()
    assert first == second and len(calls) == 1
    second.clear()  # callers get a copy: mutating it does not touch the cache
    assert doctor.run_probes() == first
    doctor.run_probes(refresh=True)
    assert len(calls) == 2
    # A forked child must not trust the parent's answers (another pid).
    monkeypatch.setattr(doctor, "_cache", (os.getpid() + 1, tuple(first)))
    doctor.run_probes()
    assert len(calls) == 3


@pytest.mark.unit
def test_a_probe_that_raises_is_reported_not_propagated(monkeypatch):
    def broken(timeout_ms):
        raise RuntimeError("boom")

    monkeypatch.setattr(doctor, "_PROBES", [(("a", "b"), broken)])
    result = doctor.collect_probes()
    assert [(p.name, p.ok) for p in result] == [("a", False), ("b", False)]
    assert "RuntimeError: boom" in result[0].detail


@pytest.mark.unit
def test_available_and_get_probe(monkeypatch):
    monkeypatch.setattr(
        doctor,
        "_cache",
        (
            os.getpid(),
            (
                doctor.Probe("seccomp.filter", True, "x", True),
                doctor.Probe("landlock", False, "y", False),
            ),
        ),
    )
    assert doctor.available("seccomp.filter") is True
    assert doctor.available("landlock") is False
    with pytest.raises(KeyError, match="no doctor probe named 'nope'"):
        doctor.get_probe("nope")


# ---- exit status --------------------------------------------------------------


def _all_core_ok() -> list[doctor.Probe]:
    return [doctor.Probe(n, True, "present", True) for n in doctor.CORE_FEATURES] + [
        doctor.Probe("landlock", False, "absent, not core", False)
    ]


@pytest.mark.unit
def test_exit_zero_when_every_core_feature_is_present():
    out, err = io.StringIO(), io.StringIO()
    assert doctor.report(out, err, probes=_all_core_ok()) == 0
    assert err.getvalue() == ""
    assert out.getvalue().rstrip().endswith("core features: all present")


@pytest.mark.parametrize(
    "missing", [["seccomp.addfd_send"], ["ns.user", "openat2.resolve_beneath"]]
)
@pytest.mark.unit
def test_exit_nonzero_naming_the_missing_core_features(missing):
    out, err = io.StringIO(), io.StringIO()
    status = doctor.report(out, err, probes=_all_core_ok(), pretend_missing=missing)
    assert status == doctor.EXIT_MISSING_CORE
    line = err.getvalue()
    assert line.count("\n") == 1 and line.startswith("picoproc doctor: missing core features: ")
    for name in missing:
        assert name in line
    assert doctor.missing_core(_all_core_ok(), pretend_missing=missing) == [
        n for n in doctor.CORE_FEATURES if n in missing
    ]


@pytest.mark.unit
def test_a_failed_or_absent_core_probe_counts_as_missing():
    probes = [
        p if p.name != "ns.net" else doctor.Probe("ns.net", False, "unshare failed: EPERM", True)
        for p in _all_core_ok()
        if p.name != "openat2.resolve_beneath"
    ]
    assert doctor.missing_core(probes) == ["ns.net", "openat2.resolve_beneath"]
    err = io.StringIO()
    assert doctor.report(io.StringIO(), err, probes=probes) == doctor.EXIT_MISSING_CORE
    assert "ns.net (unshare failed: EPERM)" in err.getvalue()
    assert "openat2.resolve_beneath (not probed)" in err.getvalue()


@pytest.mark.unit
def test_pretending_a_non_core_feature_missing_is_an_error():
    with pytest.raises(ValueError, match="not core features: landlock"):
        doctor.missing_core(_all_core_ok(), pretend_missing=["landlock"])


@pytest.mark.unit
def test_json_report_carries_the_missing_list():
    out = io.StringIO()
    status = doctor.report(
        out, io.StringIO(), as_json=True, probes=_all_core_ok(), pretend_missing=["ns.pid"]
    )
    doc = json.loads(out.getvalue())
    assert status == doctor.EXIT_MISSING_CORE
    assert doc["ok"] is False and doc["missing_core"] == ["ns.pid"]


# ---- the CLI ------------------------------------------------------------------


def _picoproc(
    *args: str, prefix: Sequence[str] = (), env=None, cwd=None
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*prefix, sys.executable, "-m", "picoproc", *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        env=env,
        cwd=cwd,
    )


def _check_document(doc: dict) -> None:
    assert set(doc) >= {"kernel", "euid", "ok", "core_features", "missing_core", "probes"}
    assert [p["name"] for p in doc["probes"]] == list(doctor.PROBE_NAMES)
    for p in doc["probes"]:
        assert set(p) == {"name", "ok", "core", "detail", "value"}
        assert isinstance(p["ok"], bool) and isinstance(p["core"], bool) and p["detail"]
        assert p["core"] == (p["name"] in doctor.CORE_FEATURES)
    by_name = {p["name"]: p for p in doc["probes"]}
    assert doc["missing_core"] == [n for n in doctor.CORE_FEATURES if not by_name[n]["ok"]]
    assert doc["ok"] == (not doc["missing_core"])
    assert doc["core_features"] == list(doctor.CORE_FEATURES)


def test_cli_json_is_valid_complete_and_matches_the_exit_status():
    proc = _picoproc("doctor", "--json")
    doc = json.loads(proc.stdout)
    _check_document(doc)
    assert doc["euid"] == os.geteuid()
    assert proc.returncode == (0 if doc["ok"] else doctor.EXIT_MISSING_CORE)
    if proc.returncode:
        assert proc.stderr.startswith("picoproc doctor: missing core features: ")
        for name in doc["missing_core"]:
            assert name in proc.stderr
    else:
        assert proc.stderr == ""


def test_cli_table_is_aligned_and_says_yes_or_no():
    proc = _picoproc("doctor")
    lines = proc.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("FEATURE"))
    rows = lines[header + 1 : header + 1 + len(doctor.PROBE_NAMES)]
    ok_col = lines[header].index("OK")
    why_col = lines[header].index("WHY")
    for name, row in zip(doctor.PROBE_NAMES, rows):
        assert row.split()[0] == name
        assert row[ok_col : ok_col + 3].strip() in ("yes", "no"), row
        assert row[why_col - 2 : why_col] == "  " and row[why_col] != " ", row
    assert lines[-1].startswith("core features: ")
    assert proc.returncode in (0, doctor.EXIT_MISSING_CORE)


def test_cli_rejects_an_unknown_doctor_flag():
    proc = _picoproc("doctor", "--bogus")
    assert proc.returncode == 125
    assert (
        proc.stderr.count("\n") == 1 and "--bogus" in proc.stderr and "Traceback" not in proc.stderr
    )


# ---- a machine that lacks core features ---------------------------------------

# A classic-BPF filter (struct sock_filter = u16 code, u8 jt, u8 jf, u32 k)
# that makes the kernel itself refuse what some core probes need: unshare
# fails with EPERM, openat2 with ENOSYS, and seccomp() with
# SECCOMP_FILTER_FLAG_NEW_LISTENER with EINVAL.  The doctor runs under it
# unchanged, so this checks the missing-feature path end to end without
# touching the probes.
_BPF_LD_W_ABS, _BPF_JEQ_K, _BPF_JSET_K, _BPF_RET_K = 0x20, 0x15, 0x45, 0x06
_RET_ALLOW, _RET_ERRNO = 0x7FFF0000, 0x00050000
_AUDIT_ARCH_X86_64 = 0xC000003E
_NR_UNSHARE, _NR_SECCOMP, _NR_OPENAT2 = 272, 317, 437


def _refusing_filter() -> bytes:
    import struct

    insns = [
        (_BPF_LD_W_ABS, 0, 0, 4),  # arch
        (_BPF_JEQ_K, 1, 0, _AUDIT_ARCH_X86_64),
        (_BPF_RET_K, 0, 0, _RET_ALLOW),
        (_BPF_LD_W_ABS, 0, 0, 0),  # nr
        (_BPF_JEQ_K, 0, 1, _NR_UNSHARE),
        (_BPF_RET_K, 0, 0, _RET_ERRNO | errno.EPERM),
        (_BPF_JEQ_K, 0, 1, _NR_OPENAT2),
        (_BPF_RET_K, 0, 0, _RET_ERRNO | errno.ENOSYS),
        (_BPF_JEQ_K, 0, 3, _NR_SECCOMP),
        (_BPF_LD_W_ABS, 0, 0, 24),  # low half of args[1]: the flags
        (_BPF_JSET_K, 0, 1, 8),  # SECCOMP_FILTER_FLAG_NEW_LISTENER
        (_BPF_RET_K, 0, 0, _RET_ERRNO | errno.EINVAL),
        (_BPF_RET_K, 0, 0, _RET_ALLOW),
    ]
    return b"".join(struct.pack("=HBBI", *i) for i in insns)


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def test_missing_core_features_are_named_when_the_kernel_refuses_them():
    _native_or_skip()
    if platform.machine() != "x86_64":
        pytest.skip("the hand-written filter uses x86_64 syscall numbers")
    code = ctypes.create_string_buffer(_refusing_filter())
    prog = _SockFprog(len(code.raw) // 8, ctypes.cast(code, ctypes.c_void_p))

    def confine():  # runs in the forked child before exec: two system calls only
        if libc.prctl(38, 1, 0, 0, 0) != 0:  # PR_SET_NO_NEW_PRIVS
            os._exit(120)
        if libc.syscall(_NR_SECCOMP, 1, 0, ctypes.byref(prog)) != 0:  # SECCOMP_SET_MODE_FILTER
            os._exit(121)

    proc = subprocess.run(
        [sys.executable, "-m", "picoproc", "doctor", "--json"],
        check=False,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        preexec_fn=confine,  # pytest runs tests in one thread, so preexec_fn is safe
    )
    assert proc.returncode == doctor.EXIT_MISSING_CORE, proc.stderr
    doc = json.loads(proc.stdout)
    _check_document(doc)
    by_name = {p["name"]: p for p in doc["probes"]}
    refused = [
        "seccomp.user_notif",
        "seccomp.addfd_send",
        "ns.user",
        "ns.pid",
        "ns.mount",
        "ns.net",
        "openat2.resolve_beneath",
    ]
    assert doc["missing_core"] == refused
    assert by_name["seccomp.filter"]["ok"]  # a filter without a listener is still allowed
    assert "EINVAL" in by_name["seccomp.user_notif"]["detail"]
    assert "NEW_LISTENER" in by_name["seccomp.user_notif"]["detail"]
    assert "unshare(CLONE_NEWUSER) in a child failed: EPERM" in by_name["ns.user"]["detail"]
    assert "ENOSYS" in by_name["openat2.resolve_beneath"]["detail"]
    for name in ("ns.ipc", "ns.uts", "seccomp.sync_wake_up", "seccomp.wait_killable_recv"):
        assert not by_name[name]["ok"]
    line = proc.stderr
    assert line.count("\n") == 1 and line.startswith("picoproc doctor: missing core features: ")
    for name in refused:
        assert name in line


# ---- as an unprivileged user ----------------------------------------------------

SYSTEM_PYTHON = "/usr/bin/python3"
NOBODY = 65534


def test_doctor_as_an_unprivileged_user():
    """root's pyenv python lives under /root (mode 0700), so the unprivileged
    run uses the system python with a PYTHONPATH that maps `picoproc` onto
    sandbox/ (the C module is abi3, so it loads in any CPython 3)."""
    if os.geteuid() != 0:
        pytest.skip("needs root to switch to an unprivileged uid")
    if shutil.which("setpriv") is None or not os.access(SYSTEM_PYTHON, os.X_OK):
        pytest.skip("needs setpriv(1) and a system python3")
    _native_or_skip()
    as_nobody = [
        "setpriv",
        f"--reuid={NOBODY}",
        f"--regid={NOBODY}",
        "--clear-groups",
        "--inh-caps=-all",
    ]
    env = {
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
        "PYTHONDONTWRITEBYTECODE": "1",
        "LANG": "C.UTF-8",
    }
    cffi_check = subprocess.run(
        [*as_nobody, SYSTEM_PYTHON, "-c", "import _cffi_backend"],
        check=False,
        capture_output=True,
        env=env,
        cwd="/",
        timeout=RUN_TIMEOUT,
    )
    if cffi_check.returncode != 0:
        pytest.skip(
            f"the system python cannot load cffi modules: {cffi_check.stderr.decode().strip()}"
        )
    sandbox_dir = os.path.dirname(doctor.__file__)
    with tempfile.TemporaryDirectory(prefix="picoproc-doctor-") as tree:
        os.chmod(tree, 0o755)
        os.symlink(sandbox_dir, os.path.join(tree, "picoproc"))
        loads = subprocess.run(
            [*as_nobody, SYSTEM_PYTHON, "-c", "import picoproc.native"],
            check=False,
            capture_output=True,
            text=True,
            env={**env, "PYTHONPATH": tree},
            cwd="/",
            timeout=RUN_TIMEOUT,
        )
        if loads.returncode != 0:
            last = (loads.stderr.strip().splitlines() or ["?"])[-1]
            pytest.skip(
                f"uid {NOBODY} cannot load picoproc from {sandbox_dir} with {SYSTEM_PYTHON}: {last}"
            )
        proc = subprocess.run(
            [*as_nobody, SYSTEM_PYTHON, "-m", "picoproc", "doctor", "--json"],
            check=False,
            capture_output=True,
            text=True,
            env={**env, "PYTHONPATH": tree},
            cwd="/",
            timeout=RUN_TIMEOUT,
        )
    assert proc.stdout, proc.stderr
    doc = json.loads(proc.stdout)
    _check_document(doc)
    assert doc["euid"] == NOBODY
    by_name = {p["name"]: p for p in doc["probes"]}
    # Namespaces: the same yes/no as unshare(1) run as that user.
    for name, args in UNSHARE_ARGS.items():
        direct = _unshare_works(args, as_nobody)
        via_userns = name != "ns.user" and _unshare_works(
            ["--user", "--map-root-user", *args], as_nobody
        )
        assert by_name[name]["ok"] == (direct or via_userns), by_name[name]
        if by_name[name]["ok"] and name != "ns.user":
            assert by_name[name]["value"] == ("direct" if direct else "via_userns")
    # Cgroups: writable exactly when test(1) -w says so for that user.
    for name in ("cgroup.v1.memory", "cgroup.v1.pids"):
        value = by_name[name]["value"]
        if value:
            writable = (
                subprocess.run(
                    [*as_nobody, "test", "-w", value["path"]], check=False, timeout=RUN_TIMEOUT
                ).returncode
                == 0
            )
            assert by_name[name]["ok"] == (writable and value["writable"])
    # The probes that need no privilege give the same answer as for root.
    root = {p.name: p for p in doctor.run_probes()}
    for name in (
        "seccomp.filter",
        "seccomp.user_notif",
        "seccomp.addfd_send",
        "seccomp.sync_wake_up",
        "seccomp.wait_killable_recv",
        "landlock",
        "openat2.resolve_beneath",
        "close_range",
        "pidfd_open",
        "process_vm_readv",
    ):
        assert by_name[name]["ok"] == root[name].ok, (name, by_name[name], root[name])
    assert proc.returncode == (0 if doc["ok"] else doctor.EXIT_MISSING_CORE), proc.stderr


@pytest.mark.slow
def test_doctor_lists_every_backend_with_availability_and_what_it_cannot_enforce():
    """Doctor names each comparison backend (docs/BACKENDS.md), available or not with the
    reason, and what of a manifest it cannot enforce here."""
    import subprocess
    import sys

    from picoproc.backends import all_backends

    proc = subprocess.run([sys.executable, "-m", "picoproc", "doctor", "--json"],
                          capture_output=True, text=True, timeout=120, check=False)
    doc = json.loads(proc.stdout)
    rows = {b["name"]: b for b in doc["backends"]}
    assert set(rows) == {b.name for b in all_backends()}
    for backend in all_backends():
        ok, reason = backend.available()
        row = rows[backend.name]
        assert (row["available"], row["reason"]) == (ok, reason)
        assert row["cannot_express"] == backend.cannot_express()
        assert row["reason"], "a backend's state always comes with a reason"
    # No isolation at all is never presented as enforcing anything.
    assert "fs.view" in rows["native"]["cannot_express"]
    human = subprocess.run([sys.executable, "-m", "picoproc", "doctor"],
                           capture_output=True, text=True, timeout=120, check=False)
    assert "comparison backends" in human.stdout
    for name in rows:
        assert f"  {name} " in human.stdout
