"""``bwrap``: bubblewrap with the manifest's binds and every namespace unshared."""

from __future__ import annotations

import functools
import subprocess
from typing import ClassVar

from ._base import (
    Backend,
    BackendUnavailable,
    manifest_env,
    rlimits_for,
    run_process,
    tool_version,
    which,
)
from ._view import view_ops


class BwrapBackend(Backend):
    name = "bwrap"
    description = "bubblewrap: --unshare-all, read-only binds, tmpfs scratch, --cap-drop ALL"
    launcher_tasks = 2  # bwrap itself and its pid-namespace init
    unsupported: ClassVar[dict[str, str]] = {
        "hidden.names": "file-name patterns would need every mounted tree walked at start-up (and miss files created later); not expressed",
        "network.grants": "bwrap's network is all or nothing: any grant shares the whole host network (--share-net)",
        "unix.grants": "no per-path unix-socket filtering; a socket file inside a mount is reachable",
    }

    def _check_available(self) -> str:
        return _probe_bwrap()

    def command(self, manifest, argv) -> list[str]:
        cmd = [
            which("bwrap"),
            "--unshare-all",
            "--die-with-parent",
            "--new-session",
            "--cap-drop",
            "ALL",
            "--hostname",
            manifest.hostname,
            "--proc",
            "/proc",
            "--dev",
            "/dev",
        ]
        if manifest.net_connect or manifest.net_listen:
            cmd.append("--share-net")
        for op in view_ops(manifest):
            if op.kind == "bind":
                cmd += ["--bind" if op.writable else "--ro-bind", op.host, op.guest]
            elif op.kind == "tmpfs":
                cmd += ["--size", str(op.size_bytes), "--tmpfs", op.guest]
            elif op.kind == "mask-file":
                cmd += ["--ro-bind", "/dev/null", op.guest]
            elif op.kind == "mask-dir":
                cmd += ["--perms", "0000", "--tmpfs", op.guest, "--remount-ro", op.guest]
        cmd += ["--chdir", manifest.cwd, "--", *argv]
        return cmd

    def _run(self, manifest, argv, *, stdin, capture, timeout):
        result = run_process(
            self.name,
            self.command(manifest, argv),
            env=manifest_env(manifest),
            cwd="/",
            stdin=stdin,
            capture=capture,
            timeout=timeout,
            output_limit=manifest.limits.output_bytes,
            cgroup=self.run_cgroup(manifest),
            rlimits=rlimits_for(manifest),
        )
        if manifest.net_connect or manifest.net_listen:
            result.notes.append(
                "network: shared with the host (--share-net) because the manifest grants network"
            )
        return result


@functools.cache
def _probe_bwrap() -> str:
    bwrap = which("bwrap")
    version = tool_version([bwrap, "--version"])
    try:
        probe = subprocess.run(
            [bwrap, "--unshare-all", "--ro-bind", "/", "/", "true"],
            capture_output=True,
            timeout=10,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise BackendUnavailable("bwrap probe timed out") from None
    if probe.returncode != 0:
        msg = probe.stderr.decode(errors="replace").strip().splitlines()
        raise BackendUnavailable(
            f"bwrap cannot create namespaces here: {msg[-1] if msg else probe.returncode}"
        )
    return version
