"""``picoproc doctor``: what this machine lets this user do, probed for real.

Every answer comes from exercising the feature the way picoproc uses it (a
child installs a filter and this process answers its notification; a child
unshares a namespace and uses it; ...), never from the kernel version.  The
probes that need C live in ``native/probe.c``; the rest is here.

Other code asks "is X available" through :func:`run_probes` (cached once per
process) or :func:`available`::

    from picoproc.doctor import available
    if not available("seccomp.sync_wake_up"): ...

Every probe finishes within its timeout even when the feature is missing:
probe children are killed and reaped on every path and no fd stays open.
"""

from __future__ import annotations

import dataclasses
import errno
import importlib.util
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import IO

from picoproc.mountinfo import MountEntry, parse_mountinfo, read_proc_cgroup

DEFAULT_TIMEOUT = 2.0  # seconds each probe may take before its child is killed
VERSION_TIMEOUT = 5.0  # seconds a backend's `--version` may take
EXIT_MISSING_CORE = 1

# Without these picoproc cannot build a picoprocess at all.
CORE_FEATURES = (
    "seccomp.filter",
    "seccomp.user_notif",
    "seccomp.addfd_send",
    "ns.user",
    "ns.pid",
    "ns.mount",
    "ns.net",
    "openat2.resolve_beneath",
)


@dataclasses.dataclass(frozen=True)
class Probe:
    """One feature: present or not, and why (what was probed, what was seen)."""

    name: str
    ok: bool
    detail: str
    core: bool
    # Machine-readable extra (JSON-serialisable), e.g. the Landlock ABI version.
    value: object = None


def _probe(name: str, ok: bool, detail: str, value: object = None) -> Probe:
    return Probe(name, bool(ok), detail, name in CORE_FEATURES, value)


def _errno_text(err: int) -> str:
    if not err:
        return ""
    return f"{errno.errorcode.get(err, f'errno {err}')} ({os.strerror(err)})"


# ---- probes in C (native/probe.c) -------------------------------------------

try:
    from picoproc.native import ffi as _ffi
    from picoproc.native import lib as _lib

    _NATIVE_ERROR = ""
except ImportError as exc:  # NativeModuleError included: doctor must still report
    _ffi = _lib = None
    _NATIVE_ERROR = str(exc)


def _native_missing(names: Sequence[str]) -> list[Probe]:
    return [_probe(n, False, f"not probed: {_NATIVE_ERROR}") for n in names]


def _call(fn: Callable, *args) -> tuple[bool, int, int, int]:
    out = _ffi.new("struct pico_probe_result *")
    ok = fn(*args, out)
    return bool(ok), out.step, out.err, out.value


def _failure(step: int, err: int, value: int, timeout_ms: int, what: dict[int, str]) -> str:
    """The one-line why of a failed C probe; `what` names the probe's own steps."""
    L = _lib
    timed_out = err == errno.ETIMEDOUT
    generic = {
        L.PICO_PROBE_STEP_SETUP: "setting up the probe's pipes and sockets failed",
        L.PICO_PROBE_STEP_FORK: "creating the probe child failed",
        L.PICO_PROBE_STEP_NO_NEW_PRIVS: "prctl(PR_SET_NO_NEW_PRIVS) in the child failed",
        L.PICO_PROBE_STEP_CHILD_DIED: f"the probe child died without reporting (wait status {value:#x})",
        L.PICO_PROBE_STEP_TIMEOUT: f"the probe child did not finish within {timeout_ms} ms and was killed",
        L.PICO_PROBE_STEP_PASS_LISTENER: f"no listener fd came back from the child within {timeout_ms} ms"
        if timed_out
        else "receiving the listener fd from the child failed",
        L.PICO_PROBE_STEP_WAIT_NOTIF: f"no notification arrived on the listener within {timeout_ms} ms"
        if timed_out
        else "waiting for the notification failed",
    }
    text = what.get(step) or generic.get(step) or f"the probe stopped at step {step}"
    if timed_out and step in (
        L.PICO_PROBE_STEP_PASS_LISTENER,
        L.PICO_PROBE_STEP_WAIT_NOTIF,
        L.PICO_PROBE_STEP_TIMEOUT,
    ):
        return text
    return f"{text}: {_errno_text(err)}" if err else text


_NOTIF_NAMES = (
    "seccomp.user_notif",
    "seccomp.addfd_send",
    "seccomp.sync_wake_up",
    "seccomp.wait_killable_recv",
)


def _probe_seccomp(timeout_ms: int) -> list[Probe]:
    names = ("seccomp.filter",) + _NOTIF_NAMES
    if _lib is None:
        return _native_missing(names)
    L = _lib
    probes = []
    ok, step, err, value = _call(L.pico_probe_seccomp_filter, timeout_ms)
    if ok:
        detail = (
            "a child's filter made getppid() fail with EDOM (SECCOMP_RET_ERRNO); PR_GET_SECCOMP = 2"
        )
    else:
        detail = _failure(
            step,
            err,
            value,
            timeout_ms,
            {
                L.PICO_PROBE_STEP_INSTALL_FILTER: "seccomp(SECCOMP_SET_MODE_FILTER) in a child failed",
                L.PICO_PROBE_STEP_FILTER_EFFECT: f"the filter was installed but getppid() returned {value}, not EDOM",
            },
        )
    probes.append(_probe("seccomp.filter", ok, detail))

    answer = L.PICO_PROBE_NOTIF_ANSWER
    # "{value}" is filled in per probe below, with that probe's value.
    notif_steps = {
        L.PICO_PROBE_STEP_INSTALL_FILTER: "seccomp(SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_NEW_LISTENER) "
        "in a child failed",
        L.PICO_PROBE_STEP_RECV_NOTIF: "ioctl(SECCOMP_IOCTL_NOTIF_RECV) failed",
        L.PICO_PROBE_STEP_NOTIF_CONTENT: "the notification named syscall {value}, not the child's getppid",
        L.PICO_PROBE_STEP_SEND: "ioctl(SECCOMP_IOCTL_NOTIF_SEND) failed",
        L.PICO_PROBE_STEP_CHILD_RESULT: "the child's getppid() returned {value} instead of the answer",
    }
    plan = [
        (
            "seccomp.user_notif",
            L.PICO_PROBE_NOTIF_PLAIN,
            f"a child's getppid() reached a NEW_LISTENER fd; NOTIF_RECV + NOTIF_SEND answered it ({answer})",
            {},
        ),
        (
            "seccomp.addfd_send",
            L.PICO_PROBE_NOTIF_ADDFD_SEND,
            (
                "NOTIF_ADDFD with SECCOMP_ADDFD_FLAG_SEND answered a child's getppid() with a new fd "
                "({value}) that it wrote through"
            ),
            {
                L.PICO_PROBE_STEP_ADDFD: "ioctl(SECCOMP_IOCTL_NOTIF_ADDFD, SECCOMP_ADDFD_FLAG_SEND) failed",
                L.PICO_PROBE_STEP_WRONG_RESULT: "NOTIF_ADDFD returned fd {value} but the child did not get it "
                "or could not write through it",
                L.PICO_PROBE_STEP_CHILD_RESULT: "the child's getppid() returned {value}, not a usable fd",
            },
        ),
        (
            "seccomp.sync_wake_up",
            L.PICO_PROBE_NOTIF_SYNC_WAKE_UP,
            (
                "ioctl(SECCOMP_IOCTL_NOTIF_SET_FLAGS, SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP) accepted; "
                "a notification round trip worked with it"
            ),
            {
                L.PICO_PROBE_STEP_SET_FLAGS: "ioctl(SECCOMP_IOCTL_NOTIF_SET_FLAGS, "
                "SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP) failed"
            },
        ),
        (
            "seccomp.wait_killable_recv",
            L.PICO_PROBE_NOTIF_WAIT_KILLABLE,
            (
                "a filter with SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV installed; a SIGUSR1 after NOTIF_RECV "
                "did not abandon the call"
            ),
            {
                L.PICO_PROBE_STEP_INSTALL_FILTER: "seccomp(SECCOMP_SET_MODE_FILTER, NEW_LISTENER | "
                "WAIT_KILLABLE_RECV) in a child failed",
                L.PICO_PROBE_STEP_SIGNAL: "a SIGUSR1 after NOTIF_RECV made the child abandon the call",
            },
        ),
    ]
    for name, feature, success, own_steps in plan:
        ok, step, err, value = _call(L.pico_probe_notif, feature, timeout_ms)
        if ok:
            detail = success.format(value=value)
        else:
            steps = {**notif_steps, **own_steps}
            steps = {k: v.format(value=value) if "{value}" in v else v for k, v in steps.items()}
            detail = _failure(step, err, value, timeout_ms, steps)
        probes.append(
            _probe(name, ok, detail, value if ok and name == "seccomp.addfd_send" else None)
        )
    return probes


def _probe_landlock(timeout_ms: int) -> list[Probe]:
    if _lib is None:
        return _native_missing(("landlock",))
    ok, _step, err, value = _call(_lib.pico_probe_landlock_abi)
    call = "landlock_create_ruleset(NULL, 0, LANDLOCK_CREATE_RULESET_VERSION)"
    if ok:
        return [_probe("landlock", True, f"ABI version {value}: {call} = {value}", value)]
    hint = {
        errno.ENOSYS: "; the kernel has no Landlock",
        errno.EOPNOTSUPP: "; Landlock is built in but not enabled (lsm= boot parameter)",
    }.get(err, "")
    text = f"{call} failed: {_errno_text(err)}{hint}" if err else f"{call} = {value}"
    return [_probe("landlock", False, text, 0)]


# name, PICO_PROBE_NS_* constant name, CLONE_* flag name, what the child does inside
_NAMESPACES = (
    (
        "ns.user",
        "PICO_PROBE_NS_USER",
        "CLONE_NEWUSER",
        "mapped uid 0 to its own uid (uid_map) and became uid 0",
    ),
    ("ns.pid", "PICO_PROBE_NS_PID", "CLONE_NEWPID", "its first child was pid 1"),
    ("ns.mount", "PICO_PROBE_NS_MOUNT", "CLONE_NEWNS", "made / MS_REC|MS_PRIVATE"),
    ("ns.net", "PICO_PROBE_NS_NET", "CLONE_NEWNET", "brought lo up (SIOCSIFFLAGS)"),
    ("ns.ipc", "PICO_PROBE_NS_IPC", "CLONE_NEWIPC", "its /proc/self/ns/ipc changed"),
    ("ns.uts", "PICO_PROBE_NS_UTS", "CLONE_NEWUTS", "set the hostname"),
)


def _probe_namespaces(timeout_ms: int) -> list[Probe]:
    if _lib is None:
        return _native_missing([n[0] for n in _NAMESPACES])
    L = _lib
    probes = []
    for name, const, flag, use in _NAMESPACES:
        ok, step, err, value = _call(L.pico_probe_namespace, getattr(L, const), timeout_ms)
        how = {L.PICO_PROBE_NS_DIRECT: "direct", L.PICO_PROBE_NS_VIA_USERNS: "via_userns"}.get(
            value
        )
        with_user = f"CLONE_NEWUSER|{flag}" if how == "via_userns" else flag
        if ok:
            where = (
                "inside a new user namespace"
                if how == "via_userns"
                else "directly (this user has CAP_SYS_ADMIN)"
                if flag != "CLONE_NEWUSER"
                else "directly"
            )
            detail = f"a child did unshare({with_user}) {where} and {use}"
        elif step == L.PICO_PROBE_STEP_UNSHARE and value:
            detail = (
                f"unshare({flag}) in a child failed: {_errno_text(value)}; "
                f"unshare(CLONE_NEWUSER|{flag}) failed: {_errno_text(err)}"
            )
        else:
            detail = _failure(
                step,
                err,
                value,
                timeout_ms,
                {
                    L.PICO_PROBE_STEP_NS_BEFORE: "stat(/proc/self/ns/...) failed (is /proc mounted?)",
                    L.PICO_PROBE_STEP_UNSHARE: f"unshare({flag}) in a child failed",
                    L.PICO_PROBE_STEP_NS_UNCHANGED: f"unshare({with_user}) succeeded but /proc/self/ns did not change",
                    L.PICO_PROBE_STEP_NS_USE: f"unshare({with_user}) succeeded but the child could not use it "
                    f"(expected: {use})",
                },
            )
        probes.append(_probe(name, ok, detail, how if ok else None))
    return probes


def _probe_openat2(timeout_ms: int) -> list[Probe]:
    if _lib is None:
        return _native_missing(("openat2.resolve_beneath",))
    L = _lib
    ok, step, err, value = _call(L.pico_probe_openat2_beneath)
    if ok:
        magic = (
            "RESOLVE_NO_MAGICLINKS refused proc/self/exe (ELOOP)"
            if value & L.PICO_PROBE_OPENAT2_NO_MAGICLINKS
            else "RESOLVE_NO_MAGICLINKS did not refuse proc/self/exe"
        )
        detail = f'openat2("/", ".", RESOLVE_BENEATH) opened; ".." and "/" gave EXDEV; {magic}'
    else:
        escape = {0: '".."', 1: '"/"'}.get(value, "an escape")
        detail = _failure(
            step,
            err,
            value,
            timeout_ms,
            {
                L.PICO_PROBE_STEP_SETUP: 'open("/", O_PATH) failed',
                L.PICO_PROBE_STEP_SYSCALL: 'openat2("/", ".", RESOLVE_BENEATH) failed',
                L.PICO_PROBE_STEP_WRONG_RESULT: f'openat2("/", {escape}, RESOLVE_BENEATH) did not fail with EXDEV'
                + ("" if err else ": it opened"),
            },
        )
    flags = (
        []
        if not ok
        else ["RESOLVE_BENEATH"]
        + (["RESOLVE_NO_MAGICLINKS"] if value & L.PICO_PROBE_OPENAT2_NO_MAGICLINKS else [])
    )
    return [_probe("openat2.resolve_beneath", ok, detail, flags)]


def _probe_process_vm_readv(timeout_ms: int) -> list[Probe]:
    if _lib is None:
        return _native_missing(("process_vm_readv",))
    L = _lib
    ok, step, err, value = _call(L.pico_probe_process_vm_readv, timeout_ms)
    if ok:
        detail = f"read the {value} bytes a child wrote into its own memory"
    else:
        detail = _failure(
            step,
            err,
            value,
            timeout_ms,
            {
                L.PICO_PROBE_STEP_SYSCALL: "process_vm_readv() of a child failed",
                L.PICO_PROBE_STEP_WRONG_RESULT: f"process_vm_readv() of a child returned {value} bytes "
                "that differ from what it wrote",
            },
        )
    return [_probe("process_vm_readv", ok, detail)]


def _probe_close_range(timeout_ms: int) -> list[Probe]:
    if _lib is None:
        return _native_missing(("close_range",))
    L = _lib
    ok, step, err, value = _call(L.pico_probe_close_range)
    cloexec = (
        "CLOSE_RANGE_CLOEXEC works"
        if value & L.PICO_PROBE_CLOSE_RANGE_CLOEXEC
        else "CLOSE_RANGE_CLOEXEC did not work"
    )
    if ok:
        detail = f"close_range(fd, fd, 0) closed a dup of /dev/null; {cloexec}"
    else:
        detail = _failure(
            step,
            err,
            value,
            timeout_ms,
            {
                L.PICO_PROBE_STEP_SETUP: "opening /dev/null to have an fd to close failed",
                L.PICO_PROBE_STEP_SYSCALL: "close_range(fd, fd, 0) failed",
                L.PICO_PROBE_STEP_WRONG_RESULT: "close_range(fd, fd, 0) returned 0 but the fd stayed open",
            },
        )
    return [_probe("close_range", ok, detail)]


# ---- probes in Python -------------------------------------------------------


def _probe_pidfd(timeout_ms: int) -> list[Probe]:
    try:
        fd = os.pidfd_open(os.getpid())
    except OSError as exc:
        return [
            _probe("pidfd_open", False, f"pidfd_open(getpid(), 0) failed: {_errno_text(exc.errno)}")
        ]
    try:
        signal.pidfd_send_signal(fd, 0)
    except OSError as exc:
        return [
            _probe(
                "pidfd_open",
                False,
                f"pidfd_open worked but pidfd_send_signal(fd, 0) failed: {_errno_text(exc.errno)}",
            )
        ]
    finally:
        os.close(fd)
    return [
        _probe("pidfd_open", True, "pidfd_open(getpid(), 0) and pidfd_send_signal(fd, 0) worked")
    ]


def _cgroup_mounts(text: str) -> list[MountEntry]:
    return [m for m in parse_mountinfo(text) if m.fstype in ("cgroup", "cgroup2")]


def _cgroup_dir(mount: MountEntry, own_path: str) -> str:
    rel = own_path
    if mount.root != "/" and (
        own_path == mount.root or own_path.startswith(mount.root.rstrip("/") + "/")
    ):
        rel = own_path[len(mount.root.rstrip("/")) :]
    return os.path.join(mount.mount_point, rel.lstrip("/")).rstrip("/") or "/"


def _writable(directory: str, mount: MountEntry, files: Sequence[str]) -> tuple[bool, str]:
    """Can this user create child cgroups here and move processes into them?

    Checked with access(2) and ownership, without creating anything: the
    cgroup we run in may belong to whoever started us."""
    euid = os.geteuid()
    try:
        owner = os.stat(directory).st_uid
    except OSError as exc:
        return False, f"{directory}: {_errno_text(exc.errno)}"
    if mount.read_only:
        return False, f"{directory} is on a read-only mount"
    blocked = [
        p
        for p in (directory, *(os.path.join(directory, f) for f in files))
        if not os.access(p, os.W_OK)
    ]
    if blocked:
        return False, f"not writable by uid {euid} (owner uid {owner}): {', '.join(blocked)}"
    if euid == 0:
        return True, f"{directory} writable (uid 0)"
    if owner == euid:
        return True, f"{directory} writable, delegated to uid {euid}"
    return True, f"{directory} writable by uid {euid} (owner uid {owner})"


def _probe_cgroups(timeout_ms: int) -> list[Probe]:
    try:
        with open("/proc/self/mountinfo") as f:
            mounts = _cgroup_mounts(f.read())
        own_v2, own_v1 = read_proc_cgroup()
    except OSError as exc:
        why = f"cannot read /proc/self/mountinfo or /proc/self/cgroup: {_errno_text(exc.errno)}"
        return [
            _probe(n, False, why)
            for n in (
                "cgroup.v1.memory",
                "cgroup.v1.pids",
                "cgroup.v2.memory",
                "cgroup.v2.pids",
                "cgroup.selected",
            )
        ]
    probes = []

    for controller in ("memory", "pids"):
        name = f"cgroup.v1.{controller}"
        mount = next((m for m in mounts if m.fstype == "cgroup" and controller in m.super_options), None)
        if mount is None:
            probes.append(
                _probe(name, False, f"no cgroup v1 hierarchy with {controller} is mounted")
            )
            continue
        directory = _cgroup_dir(mount, own_v1.get(controller, "/"))
        ok, why = _writable(directory, mount, ("cgroup.procs",))
        probes.append(
            _probe(
                name,
                ok,
                f"mounted at {mount.mount_point}; {why}",
                {"path": directory, "writable": ok},
            )
        )

    # v2 has the "no internal processes" rule, so run cgroups go next to
    # ours (in our parent, which must delegate the controllers to its
    # children), or under the root when we sit in the root cgroup.
    v2 = next((m for m in mounts if m.fstype == "cgroup2"), None)
    v2_base = v2_list = None
    if v2 is not None:
        own_dir = _cgroup_dir(v2, own_v2 or "/")
        if (own_v2 or "/") == "/":
            v2_base, v2_list = own_dir, os.path.join(own_dir, "cgroup.controllers")
        else:
            v2_base = os.path.dirname(own_dir)
            v2_list = os.path.join(v2_base, "cgroup.subtree_control")
    offered: set[str] = set()
    v2_error = ""
    if v2_list:
        try:
            with open(v2_list) as f:
                offered = set(f.read().split())
        except OSError as exc:
            v2_error = f"cannot read {v2_list}: {_errno_text(exc.errno)}"
    for controller in ("memory", "pids"):
        name = f"cgroup.v2.{controller}"
        if v2 is None:
            probes.append(_probe(name, False, "no cgroup2 hierarchy is mounted"))
        elif v2_error:
            probes.append(_probe(name, False, v2_error))
        elif controller not in offered:
            others = " ".join(sorted(offered)) or "none"
            probes.append(
                _probe(
                    name,
                    False,
                    f"cgroup2 at {v2.mount_point}: {controller} is not in "
                    f"{v2_list} (it has: {others})",
                    {"path": v2_base, "writable": None},
                )
            )
        else:
            ok, why = _writable(v2_base, v2, ("cgroup.procs",))
            probes.append(
                _probe(
                    name,
                    ok,
                    f"cgroup2 at {v2.mount_point} offers {controller} in {v2_list}; {why}",
                    {"path": v2_base, "writable": ok},
                )
            )
    probes.append(_probe_cgroup_selected())
    return probes


def _probe_cgroup_selected() -> Probe:
    """The choice the runtime itself makes (picoproc.cgroups), so doctor and
    spawn can never disagree about it."""
    try:
        from picoproc import cgroups

        support = cgroups.available(refresh=True)
    except Exception as exc:  # noqa: BLE001 - the runtime module is missing or broken
        return _probe(
            "cgroup.selected", False, f"not probed: picoproc.cgroups: {type(exc).__name__}: {exc}"
        )
    if support.version is None:
        return _probe(
            "cgroup.selected",
            False,
            f"runs get no cgroup (no memory/pids limits through cgroups): {support.reason}",
            {"version": None, "reason": support.reason},
        )
    return _probe(
        "cgroup.selected",
        True,
        f"runs use cgroup {support.version}: {support.reason}",
        {"version": support.version, "reason": support.reason},
    )


def _version_line(path: str, args: Sequence[str]) -> tuple[bool, str]:
    try:
        proc = subprocess.run(
            [path, *args],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=VERSION_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return False, f"`{path} {' '.join(args)}` did not answer within {VERSION_TIMEOUT:g} s"
    except OSError as exc:
        return False, f"cannot run {path}: {_errno_text(exc.errno)}"
    text = (proc.stdout or proc.stderr).decode("utf-8", "replace")
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    if proc.returncode != 0:
        return (
            False,
            f"`{path} {' '.join(args)}` exited with status {proc.returncode}: {first or 'no output'}",
        )
    return True, first or "no version output"


def _program_probe(
    name: str, programs: Sequence[str], args: Sequence[str] = ("--version",)
) -> Probe:
    for program in programs:
        path = shutil.which(program)
        if path is None:
            continue
        ok, version = _version_line(path, args)
        fallback = f"{programs[0]} not on PATH; " if program != programs[0] else ""
        detail = f"{fallback}{path}: {version}" if ok else f"{fallback}found {path} but {version}"
        return _probe(
            name, ok, detail, {"program": program, "path": path, "version": version if ok else None}
        )
    return _probe(name, False, f"{' / '.join(programs)} not on PATH")


# Run by a separate interpreter: importing a peer loads its native code, and
# that does not belong in the monitor's address space just to report on it.
# One interpreter checks every module (argv: module dist module dist ...).
_IMPORT_CHECK = """
import importlib, importlib.metadata, json, sys
found = {}
for module, dist in zip(sys.argv[1::2], sys.argv[2::2]):
    try:
        imported = importlib.import_module(module)
    except BaseException as exc:
        found[module] = {"error": f"{type(exc).__name__}: {exc}"}
        continue
    try:
        version = importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        version = str(getattr(imported, "__version__", "unknown version"))
    found[module] = {"version": version, "path": getattr(imported, "__file__", None)}
print(json.dumps(found))
"""


def _module_probes(peers: Sequence[tuple[str, str, str]]) -> list[Probe]:
    """Probes for python peers, given as (probe name, module, distribution)."""
    results: dict[str, Probe] = {}
    to_import = []
    for name, module, dist in peers:
        if importlib.util.find_spec(module) is None:
            results[name] = _probe(
                name,
                False,
                f"python module {module} is not installed for {sys.executable} (pip install {dist})",
            )
        else:
            to_import.append((name, module, dist))
    if to_import:
        argv = [x for _, module, dist in to_import for x in (module, dist)]
        found, failure = {}, ""
        try:
            proc = subprocess.run(
                [sys.executable, "-c", _IMPORT_CHECK, *argv],
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=VERSION_TIMEOUT,
                check=False,
            )
            if proc.returncode != 0:
                failure = (proc.stderr.strip().splitlines() or ["no error output"])[-1]
            else:
                # The last line: a peer may print something of its own on import.
                found = json.loads((proc.stdout.strip().splitlines() or [""])[-1])
        except subprocess.TimeoutExpired:
            failure = f"the imports did not finish within {VERSION_TIMEOUT:g} s"
        except ValueError:
            failure = "the import check printed no result"
        for name, module, dist in to_import:
            seen = found.get(module)
            if seen is None:
                results[name] = _probe(
                    name, False, f"import {module} in {sys.executable}: {failure}"
                )
            elif "error" in seen:
                results[name] = _probe(
                    name, False, f"import {module} failed in {sys.executable}: {seen['error']}"
                )
            else:
                where = seen.get("path") or "namespace package"
                results[name] = _probe(
                    name,
                    True,
                    f"import {module} works: {dist} {seen['version']} at {where}",
                    {"module": module, "version": seen["version"], "path": where},
                )
    return [results[name] for name, _, _ in peers]


def _probe_backends(timeout_ms: int) -> list[Probe]:
    """backend.NAME for each built-in backend that needs host programs or
    python modules (the registry says which): are they there, and which
    version.  Quick and side-effect free; whether a backend really runs here
    is the backends section of the report (Backend.available)."""
    peers = _peer_backends()
    by_name = {p.name: p for p in _module_probes(  # one interpreter checks them all
        [(f"backend.{b.name}", *b.python_module) for b in peers if b.python_module])}
    return [by_name[f"backend.{b.name}"] if b.python_module
            else _program_probe(f"backend.{b.name}", b.programs) for b in peers]


def _peer_backends():
    from picoproc.backends._registry import BUILTIN

    return [b for b in BUILTIN if b.programs or b.python_module]


# (the names a probe function reports, the function); the order is the report's.
_PROBES: list[tuple[tuple[str, ...], Callable[[int], list[Probe]]]] = [
    (("seccomp.filter",) + _NOTIF_NAMES, _probe_seccomp),
    (("landlock",), _probe_landlock),
    (tuple(n[0] for n in _NAMESPACES), _probe_namespaces),
    (
        (
            "cgroup.v1.memory",
            "cgroup.v1.pids",
            "cgroup.v2.memory",
            "cgroup.v2.pids",
            "cgroup.selected",
        ),
        _probe_cgroups,
    ),
    (("openat2.resolve_beneath",), _probe_openat2),
    (("process_vm_readv",), _probe_process_vm_readv),
    (("pidfd_open",), _probe_pidfd),
    (("close_range",), _probe_close_range),
    (tuple(f"backend.{b.name}" for b in _peer_backends()), _probe_backends),
]

PROBE_NAMES = tuple(name for names, _ in _PROBES for name in names)


def collect_probes(timeout: float = DEFAULT_TIMEOUT) -> list[Probe]:
    """Runs every probe now (uncached); each child gets `timeout` seconds."""
    timeout_ms = max(0, int(timeout * 1000))
    probes: list[Probe] = []
    for names, probe_fn in _PROBES:
        try:
            probes.extend(probe_fn(timeout_ms))
        except Exception as exc:  # noqa: BLE001 - a bug in one probe must not hide the others
            probes.extend(
                _probe(n, False, f"the probe raised {type(exc).__name__}: {exc}") for n in names
            )
    return probes


_cache_lock = threading.Lock()
_cache: tuple[int, tuple[Probe, ...]] | None = None


def run_probes(*, refresh: bool = False) -> list[Probe]:
    """Every probe's result, computed once per process (a forked child
    recomputes: its pid differs) unless `refresh`."""
    global _cache
    with _cache_lock:
        if refresh or _cache is None or _cache[0] != os.getpid():
            _cache = (os.getpid(), tuple(collect_probes()))
        return list(_cache[1])


def get_probe(name: str) -> Probe:
    for p in run_probes():
        if p.name == name:
            return p
    raise KeyError(f"no doctor probe named {name!r} (known: {', '.join(PROBE_NAMES)})")


def available(name: str) -> bool:
    """Is feature `name` (one of PROBE_NAMES) available to this process?"""
    return get_probe(name).ok


def missing_core(probes: Iterable[Probe], *, pretend_missing: Iterable[str] = ()) -> list[str]:
    """The core features absent from `probes`, in CORE_FEATURES order.

    `pretend_missing` names core features to treat as absent whatever the
    probes said: how tests (and callers) check the missing-feature path on a
    machine that has everything."""
    pretend = set(pretend_missing)
    unknown = pretend - set(CORE_FEATURES)
    if unknown:
        raise ValueError(
            f"not core features: {', '.join(sorted(unknown))} (core: {', '.join(CORE_FEATURES)})"
        )
    by_name = {p.name: p for p in probes}
    return [n for n in CORE_FEATURES if n in pretend or n not in by_name or not by_name[n].ok]


def _document(probes: Sequence[Probe], missing: Sequence[str]) -> dict:
    uname = platform.uname()
    return {
        "kernel": {"release": uname.release, "machine": uname.machine},
        "euid": os.geteuid(),
        "ok": not missing,
        "core_features": list(CORE_FEATURES),
        "missing_core": list(missing),
        "probes": [dataclasses.asdict(p) for p in probes],
    }


def _table(probes: Sequence[Probe]) -> list[str]:
    rows = [("FEATURE", "OK", "CORE", "WHY")] + [
        (p.name, "yes" if p.ok else "no", "core" if p.core else "", p.detail) for p in probes
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    return [f"{r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]:<{widths[2]}}  {r[3]}" for r in rows]


def report(
    out: IO[str],
    err: IO[str],
    *,
    as_json: bool = False,
    probes: Sequence[Probe] | None = None,
    pretend_missing: Iterable[str] = (),
) -> int:
    """Writes the doctor report; returns the exit status (0: every core
    feature present, EXIT_MISSING_CORE otherwise, with the missing ones named
    on `err`)."""
    probes = list(run_probes() if probes is None else probes)
    missing = missing_core(probes, pretend_missing=pretend_missing)
    backends = backend_rows()
    if as_json:
        doc = _document(probes, missing)
        doc["backends"] = backends
        json.dump(doc, out, indent=2)
        out.write("\n")
    else:
        uname = platform.uname()
        out.write(f"picoproc doctor: Linux {uname.release} {uname.machine}, euid {os.geteuid()}\n")
        for line in _table(probes):
            out.write(line.rstrip() + "\n")
        out.write("comparison backends (picoproc run --backend NAME):\n")
        width = max((len(b["name"]) for b in backends), default=0)
        for b in backends:
            state = "available" if b["available"] else "unavailable"
            out.write(f"  {b['name']:{width}s}  {state:11s}  {b['reason']}\n")
            if b["available"] and b["cannot_express"]:
                out.write(f"  {'':{width}s}  {'':11s}  does not enforce: {', '.join(b['cannot_express'])}\n")
        out.write(
            "core features: "
            + ("all present\n" if not missing else f"missing {', '.join(missing)}\n")
        )
    if missing:
        err.write(f"picoproc doctor: missing core features: {_missing_reasons(probes, missing)}\n")
        return EXIT_MISSING_CORE
    return 0


def backend_rows() -> list[dict]:
    """Each comparison backend: available or not (with the reason), and what
    of a manifest it cannot enforce on this machine (feature key -> why)."""
    try:
        from picoproc.backends import all_backends
    except ImportError as exc:  # pragma: no cover - a broken installation
        return [{"name": "?", "available": False, "reason": f"backends not importable: {exc}",
                 "cannot_express": {}}]
    rows = []
    for backend in all_backends():
        # A probe that breaks (e.g. doctor itself runs confined) makes that
        # backend unavailable with the reason, never the whole report.
        try:
            ok, reason = backend.available()
        except Exception as exc:  # noqa: BLE001 - reported, not raised
            ok, reason = False, f"probe failed: {type(exc).__name__}: {exc}"
        try:
            cannot = backend.cannot_express()
        except Exception as exc:  # noqa: BLE001
            cannot = {"?": f"could not be determined: {exc}"}
        rows.append({"name": backend.name, "available": ok, "reason": reason, "cannot_express": cannot})
    return rows


def _missing_reasons(probes: Sequence[Probe], missing: Sequence[str]) -> str:
    """`a, b (why); c (why)`: names sharing a reason (e.g. an unbuilt C module) grouped."""
    by_name = {p.name: p for p in probes}
    groups: dict[str, list[str]] = {}
    for name in missing:
        probe = by_name.get(name)
        why = "not probed" if probe is None else "marked missing" if probe.ok else probe.detail
        groups.setdefault(why, []).append(name)
    return "; ".join(f"{', '.join(names)} ({why})" for why, names in groups.items())
