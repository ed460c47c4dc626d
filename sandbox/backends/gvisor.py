"""``gvisor``: gVisor's ``runsc`` running the same OCI bundle, ptrace platform, no network.

The KVM platform does not work on the development machine and systrap is
newer than Debian's runsc (0.0~20221219), so the ptrace platform is used.
Observed with that runsc (see docs/BACKENDS.md): the OCI bundle runs as root;
``maskedPaths`` outside /proc are not honoured, so hidden paths are masked
with explicit mounts (an empty mode-0 file, an empty read-only tmpfs);
CAP_NET_RAW is dropped unless --net-raw (gVisor's own default); the bundle's
seccomp section is not used (the gVisor kernel is the boundary).
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
from typing import ClassVar

from ._base import Backend, BackendUnavailable, require_smoke_run, run_process, tool_version, which
from .container import container_id, write_bundle


class GvisorBackend(Backend):
    name = "gvisor"
    description = "gVisor runsc (ptrace platform, --network=none) on an OCI bundle"
    unsupported: ClassVar[dict[str, str]] = {
        "hidden.names": "file-name patterns would need every mounted tree walked at start-up (and miss files created later); not expressed",
        "network.grants": "runsc's network is all or nothing: any grant uses the host network stack "
        "(--network=host), so every endpoint is reachable",
        "unix.grants": "no per-path unix-socket filtering",
        "limits.pids": "no process-count limit (no cgroup limit is set)",
        # Observed by the security corpus: a 10 s spin ran to its end under a
        # 1 s limit; the rlimit applies to runsc's own processes, not to the
        # sandbox's tasks, which the Sentry schedules itself.
        "limits.cpu_time": "RLIMIT_CPU set on runsc does not bound the sandboxed program's CPU time",
    }

    def _check_available(self) -> str:
        return _probe_runsc()

    def _run(self, manifest, argv, *, stdin, capture, timeout):
        runsc = which("runsc")
        if os.geteuid() != 0:
            # Observed: the runsc packaged in Debian 12 needs root for `runsc run`.
            raise BackendUnavailable("gvisor: runsc run needs root here")
        bundle = write_bundle(manifest, argv, rootless=False, seccomp=False)
        _mask_hidden_with_mounts(bundle)
        state = os.path.join(bundle, "state")
        cid = container_id("picoproc")
        granted = bool(manifest.net_connect or manifest.net_listen)
        if granted:
            _join_host_network(bundle)
        base = [
            runsc,
            "--root",
            state,
            "--platform=ptrace",
            "--network=host" if granted else "--network=none",
        ]

        def remove():
            subprocess.run(
                base + ["delete", "-force", cid], capture_output=True, timeout=30, check=False
            )

        try:
            # runsc fchown()s the stdio it is given to its sandbox user
            # (nobody).  Given the host's /dev/null (stdin=None) or the
            # caller's terminal, that changes the HOST file's owner -- seen:
            # /dev/null became nobody:nogroup, which then let any process
            # running as nobody chmod it.  So runsc only ever gets pipes: an
            # empty input, and output captured here (relayed afterwards when
            # the caller did not ask to capture).
            result = run_process(
                self.name,
                base + ["run", "--bundle", bundle, cid],
                env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
                cwd="/",
                stdin=stdin if stdin is not None else b"",
                capture=True,
                timeout=timeout,
                output_limit=manifest.limits.output_bytes,
                on_timeout=remove,
            )
        finally:
            remove()
            shutil.rmtree(bundle, ignore_errors=True)
        if not capture:
            _relay(result.stdout, 1)
            _relay(result.stderr, 2)
            result.stdout = result.stderr = None
        if granted:
            result.notes.append(
                "network: host network stack (--network=host) because the manifest grants network"
            )
        result.notes.append("rusage: the runsc process tree (sentry, gofer), not the guest alone")
        return result


def _join_host_network(bundle: str) -> None:
    """--network=host hands the sandbox the network of the namespace runsc
    starts in, and with a "network" entry in the bundle's namespaces that is
    a new, empty one (observed: "Network is unreachable").  The host network
    the backend promises needs the entry gone."""
    path = os.path.join(bundle, "config.json")
    with open(path) as f:
        config = json.load(f)
    namespaces = config["linux"]["namespaces"]
    config["linux"]["namespaces"] = [ns for ns in namespaces if ns.get("type") != "network"]
    with open(path, "w") as f:
        json.dump(config, f, indent=1)


def _relay(data: bytes | None, fd: int) -> None:
    view = memoryview(data or b"")
    while view:
        view = view[os.write(fd, view):]


def _mask_hidden_with_mounts(bundle: str) -> None:
    """Moves the manifest's hidden paths from maskedPaths (ignored by this runsc
    outside /proc) to explicit mounts."""
    path = os.path.join(bundle, "config.json")
    with open(path) as f:
        config = json.load(f)
    empty = os.path.join(bundle, "empty")
    with open(empty, "w"):
        pass
    os.chmod(empty, 0)
    docker_masked = {"/proc/", "/sys/"}
    keep, mounts = [], config["mounts"]
    host_of = {m["destination"]: m["source"] for m in mounts if m["type"] == "bind"}
    for masked in config["linux"]["maskedPaths"]:
        if any(masked.startswith(p) for p in docker_masked):
            keep.append(masked)
            continue
        host = _host_path(host_of, masked)
        if host is not None and os.path.isdir(host):
            mounts.append(
                {
                    "destination": masked,
                    "type": "tmpfs",
                    "source": "tmpfs",
                    "options": ["ro", "size=0", "mode=000"],
                }
            )
        else:
            mounts.append(
                {"destination": masked, "type": "bind", "source": empty, "options": ["bind", "ro"]}
            )
    config["linux"]["maskedPaths"] = keep
    with open(path, "w") as f:
        json.dump(config, f, indent=1)


def _host_path(host_of: dict[str, str], guest: str) -> str | None:
    best = max(
        (d for d in host_of if guest == d or guest.startswith(d.rstrip("/") + "/")),
        key=len,
        default=None,
    )
    if best is None:
        return None
    return os.path.join(host_of[best], guest[len(best) :].lstrip("/"))


@functools.cache
def _probe_runsc() -> str:
    runsc = which("runsc")
    version = tool_version([runsc, "--version"])
    if os.geteuid() != 0:
        raise BackendUnavailable(
            "runsc run needs root with the runsc packaged here (rootless bundles fail)"
        )
    require_smoke_run(GvisorBackend(), "runsc cannot run a sandbox here", timeout=60)
    return version + ", ptrace platform"
