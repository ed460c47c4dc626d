"""``native``: the program runs as a plain child process, with no isolation.

The baseline every ratio is taken against.  Only the manifest's environment,
working directory (mapped through the mount that holds it) and rlimit-shaped
limits are applied; everything else is declared as not expressed.
"""

from __future__ import annotations

import os
from typing import ClassVar

from ._base import (
    Backend,
    ManifestNotExpressible,
    host_path_for,
    manifest_env,
    rlimits_for,
    run_process,
)

_NONE = "native runs the program directly on the host with no isolation"


class NativeBackend(Backend):
    name = "native"
    description = "no isolation: a plain subprocess (the baseline)"
    launcher_tasks = 0
    unsupported: ClassVar[dict[str, str]] = {
        "fs.view": _NONE + ": the whole host filesystem is visible",
        "mount.readonly": _NONE + ": host permissions alone decide what is writable",
        "mount.remap": "guest paths are host paths; only the working directory is mapped",
        "tmpfs.private": "a scratch path is the host directory of that name, shared and persistent",
        "tmpfs.size": "no size limit on scratch",
        "hidden": "hidden paths are readable if host permissions allow",
        "hidden.names": "files named like secrets are readable if host permissions allow",
        "network.none": _NONE + ": the host network is reachable",
        "network.grants": "no network filtering at all",
        "unix.grants": "no unix-socket filtering at all",
        "hostname": "the guest sees the host's hostname",
        "pid.isolation": "host processes are visible and signalable",
        "ipc.isolation": "host IPC objects are reachable",
    }

    def _check_available(self) -> str:
        return "always available"

    def _run(self, manifest, argv, *, stdin, capture, timeout):
        cwd = host_path_for(manifest, manifest.cwd)
        if cwd is None:
            cwd = manifest.cwd
        if not os.path.isdir(cwd):
            raise ManifestNotExpressible(
                f"native: working directory {manifest.cwd} (host {cwd}) does not exist"
            )
        return run_process(
            self.name,
            argv,
            env=manifest_env(manifest),
            cwd=cwd,
            stdin=stdin,
            capture=capture,
            timeout=timeout,
            output_limit=manifest.limits.output_bytes,
            cgroup=self.run_cgroup(manifest),
            rlimits=rlimits_for(manifest),
        )
