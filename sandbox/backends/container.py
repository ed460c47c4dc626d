"""``container`` and ``container-crun``: a plain container as Docker would make it.

``container`` builds it with picoproc's own launcher (container_init.py): no
container engine needed.  ``container-crun`` writes the same container as an
OCI bundle (config.json) and hands it to ``crun``, so the two can be checked
against each other and against what a real runtime does.

Both: user, mount, pid, net, ipc, uts and cgroup namespaces; a read-only root
holding only the manifest's mounts (read-only unless writable), scratch tmpfs
(size-limited), hidden paths masked; /proc, /dev, /sys as Docker mounts them,
with Docker's masked and read-only /proc paths; Docker's default capability
set; Docker's default seccomp profile; no_new_privs NOT set (Docker's default).
"""

from __future__ import annotations

import functools
import itertools
import json
import os
import shutil
import subprocess
import sys
import tempfile
from typing import ClassVar

from . import docker_profile
from ._base import (
    Backend,
    BackendError,
    BackendUnavailable,
    manifest_env,
    require_smoke_run,
    rlimits_for,
    run_process,
    tool_version,
    which,
)
from ._view import view_ops

_LAUNCHER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "container_init.py")
_COUNTER = itertools.count()

_CONTAINER_UNSUPPORTED = {
    "hidden.names": "file-name patterns would need every mounted tree walked at start-up (and miss files created later); not expressed",
    "network.grants": "a container's network is all or nothing: a grant would need a bridge/NAT, "
    "which picoproc does not build; granted endpoints are unreachable (--network none)",
    "unix.grants": "no per-path unix-socket filtering; a socket file inside a mount is reachable",
}


def _common_available() -> str:
    if not os.path.exists("/proc/self/ns/user"):
        raise BackendUnavailable("the kernel has no user namespaces")
    try:
        with open("/proc/sys/user/max_user_namespaces") as f:
            if int(f.read()) == 0:
                raise BackendUnavailable(
                    "user namespaces are disabled (user.max_user_namespaces = 0)"
                )
    except FileNotFoundError:
        pass
    try:
        bpf, _ = docker_profile.compile_bpf()
    except Exception as exc:  # noqa: BLE001 - the cffi module missing or libseccomp failing: one line
        raise BackendUnavailable(f"cannot compile Docker's seccomp profile: {exc}") from None
    return f"Docker default seccomp profile ({len(bpf) // 8} BPF instructions)"


class ContainerBackend(Backend):
    launcher_tasks = 1  # the launcher's waiter outside the pid namespace
    name = "container"
    description = "Docker-style container built by picoproc: namespaces, read-only binds, Docker caps + seccomp"
    unsupported: ClassVar[dict[str, str]] = dict(_CONTAINER_UNSUPPORTED)

    def _check_available(self) -> str:
        return _probe_container()

    def _run(self, manifest, argv, *, stdin, capture, timeout):
        bpf, _ = docker_profile.compile_bpf()
        profile = docker_profile.load_profile()
        staging = tempfile.mkdtemp(prefix="picoproc-container-")
        err_r, err_w = os.pipe()
        try:
            root = os.path.join(staging, "root")
            os.mkdir(root, 0o755)
            spec = {
                "root": root,
                "ops": [op.__dict__ for op in view_ops(manifest)],
                "masked_paths": profile["masked_paths"],
                "readonly_paths": profile["readonly_paths"],
                "hostname": manifest.hostname,
                "cwd": manifest.cwd,
                "argv": argv,
                "env": manifest_env(manifest),
                "rlimits": rlimits_for(manifest),
                "capabilities": [docker_profile.CAPABILITIES[c] for c in profile["capabilities"]],
                "seccomp_bpf": bpf.hex(),
                "error_fd": err_w,
            }
            spec_path = os.path.join(staging, "spec.json")
            with open(spec_path, "w") as f:
                json.dump(spec, f)
            result = run_process(
                self.name,
                [sys.executable, "-I", _LAUNCHER, spec_path],
                env={},
                cwd="/",
                stdin=stdin,
                capture=capture,
                timeout=timeout,
                output_limit=manifest.limits.output_bytes,
                cgroup=self.run_cgroup(manifest),
                pass_fds=(err_w,),
            )
            os.close(err_w)
            err_w = -1
            setup_error = _read_all(err_r)
            if setup_error:
                raise BackendError(f"container: {setup_error}")
            return result
        finally:
            if err_w >= 0:
                os.close(err_w)
            os.close(err_r)
            # The mounts lived in the container's mount namespace, gone with it.
            shutil.rmtree(staging, ignore_errors=True)


def _read_all(fd: int) -> str:
    chunks = []
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    return b"".join(chunks).decode(errors="replace").strip()


@functools.cache
def _probe_container() -> str:
    what = _common_available()
    require_smoke_run(ContainerBackend(), "a probe container failed", timeout=20)
    return what


# ---------------------------------------------------------------------------
# OCI bundle (crun, runsc)


def oci_config(manifest, argv, rootfs: str, *, rootless: bool, seccomp: bool) -> dict:
    """An OCI runtime-spec config.json for the same container."""
    profile = docker_profile.load_profile()
    caps = profile["capabilities"]
    nosuid_nodev = ["nosuid", "nodev"]
    mounts = [
        {"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
         "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]},
        {"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
        {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]},
    ]  # fmt: skip
    masked = list(profile["masked_paths"])
    root = {"path": rootfs, "readonly": True}
    for op in view_ops(manifest):
        if op.kind == "bind" and op.guest == "/":
            # OCI mounts cannot target "/": the root itself is that host directory.
            root = {"path": op.host, "readonly": not op.writable}
        elif op.kind == "bind":
            mounts.append({"destination": op.guest, "type": "bind", "source": op.host,
                           "options": ["rbind", "rw" if op.writable else "ro"]})  # fmt: skip
        elif op.kind == "tmpfs":
            mounts.append({"destination": op.guest, "type": "tmpfs", "source": "tmpfs",
                           "options": nosuid_nodev + [f"size={op.size_bytes}", "mode=1777"]})  # fmt: skip
        else:
            masked.append(
                op.guest
            )  # OCI maskedPaths: /dev/null over files, empty ro tmpfs over dirs
    namespaces = [{"type": t} for t in ("pid", "network", "ipc", "uts", "mount", "cgroup")]
    linux: dict = {
        "namespaces": namespaces,
        "maskedPaths": masked,
        "readonlyPaths": list(profile["readonly_paths"]),
    }
    if rootless:
        namespaces.append({"type": "user"})
        linux["uidMappings"] = [{"containerID": 0, "hostID": os.getuid(), "size": 1}]
        linux["gidMappings"] = [{"containerID": 0, "hostID": os.getgid(), "size": 1}]
    if seccomp:
        linux["seccomp"] = docker_profile.oci_seccomp()
    import resource as _r

    rlimit_names = {
        _r.RLIMIT_CPU: "RLIMIT_CPU",
        _r.RLIMIT_AS: "RLIMIT_AS",
        _r.RLIMIT_NOFILE: "RLIMIT_NOFILE",
    }
    return {
        "ociVersion": "1.0.2",
        "process": {
            "terminal": False,
            "user": {"uid": 0, "gid": 0},
            "args": list(argv),
            "env": [f"{k}={v}" for k, v in manifest_env(manifest).items()],
            "cwd": manifest.cwd,
            "capabilities": {k: list(caps) for k in ("bounding", "effective", "permitted")},
            "rlimits": [
                {"type": rlimit_names[r], "hard": v, "soft": v} for r, v in rlimits_for(manifest)
            ],
            "noNewPrivileges": bool(profile["no_new_privileges"]),
        },
        "root": root,
        "hostname": manifest.hostname,
        "mounts": mounts,
        "linux": linux,
    }


def write_bundle(manifest, argv, *, rootless: bool, seccomp: bool) -> str:
    bundle = tempfile.mkdtemp(prefix="picoproc-bundle-")
    os.mkdir(os.path.join(bundle, "rootfs"), 0o755)
    config = oci_config(manifest, argv, "rootfs", rootless=rootless, seccomp=seccomp)
    with open(os.path.join(bundle, "config.json"), "w") as f:
        json.dump(config, f, indent=1)
    return bundle


def container_id(prefix: str) -> str:
    return f"{prefix}-{os.getpid()}-{next(_COUNTER)}-{os.urandom(3).hex()}"


class CrunBackend(Backend):
    launcher_tasks = 1  # crun waiting for the container (crun adds no cgroup of its own here)
    name = "container-crun"
    description = "the same container as an OCI bundle run by crun"
    unsupported: ClassVar[dict[str, str]] = dict(_CONTAINER_UNSUPPORTED)

    def _check_available(self) -> str:
        return _probe_crun()

    def _run(self, manifest, argv, *, stdin, capture, timeout):
        crun = which("crun")
        rootless = os.geteuid() != 0
        bundle = write_bundle(manifest, argv, rootless=rootless, seccomp=True)
        state = os.path.join(bundle, "state")
        cid = container_id("picoproc")
        base = [crun, "--root", state, "--cgroup-manager=disabled"]

        def remove():
            subprocess.run(
                base + ["delete", "--force", cid], capture_output=True, timeout=20, check=False
            )

        try:
            return run_process(
                self.name,
                _crun_wrapper(base + ["run", "--bundle", bundle, cid]),
                env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
                cwd="/",
                stdin=stdin,
                capture=capture,
                timeout=timeout,
                output_limit=manifest.limits.output_bytes,
                cgroup=self.run_cgroup(manifest),
                on_timeout=remove,
            )
        finally:
            remove()
            shutil.rmtree(bundle, ignore_errors=True)


def _crun_wrapper(cmd: list[str]) -> list[str]:
    """crun 1.x refuses a host in cgroup "hybrid" mode (v1 controllers plus a
    cgroup2 mount holding a controller), even with --cgroup-manager=disabled.
    picoproc creates no cgroup for the container, so crun runs in a private
    mount namespace where the cgroup2 mount is detached and it sees plain v1."""
    if not _cgroup_hybrid():
        return cmd
    import shlex

    return [which("unshare"), "--mount", "--propagation", "private", "sh", "-c",
            "umount -l /sys/fs/cgroup/unified && exec " + shlex.join(cmd)]  # fmt: skip


def _cgroup_hybrid() -> bool:
    try:
        with open("/sys/fs/cgroup/unified/cgroup.controllers") as f:
            return bool(f.read().strip())
    except OSError:
        return False


@functools.cache
def _probe_crun() -> str:
    crun = which("crun")
    version = tool_version([crun, "--version"])
    docker_profile.oci_seccomp()  # the data file loads and resolves
    require_smoke_run(CrunBackend(), "crun cannot run a container here", timeout=20)
    return version
