"""``sandlock``: the sandlock PyPI sandbox (Landlock + seccomp user notification).

The manifest's mounts become sandlock's readable/writable path lists, hidden
paths its denied list, network grants its ``net_allow``/``net_allow_bind``
rules, limits its resource limits.  Like ptrace, sandlock has no mount
namespace: guest paths are host paths.  It runs in its own stage process
(``python3 sandlock_backend.py SPEC``) so that its supervisor and the guest's
stdio are those of one child, killed as a group on timeout.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from typing import ClassVar

# Devices and /proc every sandbox in the comparison gives the guest.
IMPLICIT_READABLE = ("/proc", "/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom")
IMPLICIT_WRITABLE = ("/dev/null",)
SIGNAL_UNKNOWN_STATUS = 255  # sandlock's run_interactive() returns -1 for any death by signal


def stage_main(spec_path: str) -> None:
    import sandlock

    with open(spec_path) as f:
        spec = json.load(f)
    lim = spec["limits"]
    sb = sandlock.Sandbox(
        fs_readable=spec["readable"],
        fs_writable=spec["writable"],
        fs_denied=spec["hidden"],
        net_allow=spec["net_allow"],
        net_allow_bind=spec["net_allow_bind"],
        clean_env=True,
        env=spec["env"],
        cwd=spec["cwd"],
        max_memory=lim["memory"],
        max_processes=lim["pids"],
        max_open_files=lim["open_files"],
    )
    rc = sb.run_interactive(spec["argv"])
    sys.stdout.flush()
    os._exit(rc if rc >= 0 else SIGNAL_UNKNOWN_STATUS)


if __package__:
    from ._base import (
        Backend,
        BackendUnavailable,
        manifest_env,
        require_identity_mounts,
        require_smoke_run,
        run_process,
    )

    class SandlockBackend(Backend):
        name = "sandlock"
        description = "sandlock (PyPI): Landlock path rules + seccomp user notification"
        enforces_pids_itself = True  # max_processes
        unsupported: ClassVar[dict[str, str]] = {
            "hidden.names": "sandlock's denied list takes paths, not file-name patterns",
            "mount.remap": "no mount namespace: guest paths are host paths (a remapping manifest is refused)",
            "tmpfs.private": "a scratch path is the host directory of that name (granted writable), not a private tmpfs",
            "tmpfs.size": "no size limit on scratch",
            "unix.grants": "no per-path unix-socket grants are passed (Landlock scopes apply instead)",
            "hostname": "sandlock shows its own per-sandbox hostname (sandbox-PID-N), not the manifest's",
            "pid.isolation": "no pid namespace: host processes are visible in /proc",
            "ipc.isolation": "host System V IPC objects are reachable",
            "limits.cpu_time": "sandlock has a CPU share limit, not a CPU-time limit",
        }

        def _check_available(self) -> str:
            return _probe_sandlock()

        def _run(self, manifest, argv, *, stdin, capture, timeout):
            require_identity_mounts(self.name, manifest)
            scratch = [t.guest for t in manifest.tmpfs]
            lim = manifest.limits
            spec = {
                "readable": [m.host for m in manifest.mounts] + scratch + list(IMPLICIT_READABLE),
                "writable": [m.host for m in manifest.mounts if m.writable]
                + scratch
                + list(IMPLICIT_WRITABLE),
                "hidden": list(manifest.hidden),
                "net_allow": [
                    f"tcp://{_host(e.host)}:{e.port if e.port else '*'}"
                    for e in manifest.net_connect
                ],
                "net_allow_bind": [e.port for e in manifest.net_listen],
                "env": manifest_env(manifest),
                "cwd": manifest.cwd,
                "argv": argv,
                "limits": {
                    "memory": lim.memory_bytes,
                    "pids": lim.pids,
                    "open_files": lim.open_files,
                },
            }
            import tempfile

            fd, spec_path = tempfile.mkstemp(prefix="picoproc-sandlock-", suffix=".json")
            try:
                with os.fdopen(fd, "w") as f:
                    json.dump(spec, f)
                result = run_process(
                    self.name,
                    [sys.executable, "-I", os.path.abspath(__file__), spec_path],
                    env={},
                    cwd="/",
                    stdin=stdin,
                    capture=capture,
                    timeout=timeout,
                    output_limit=manifest.limits.output_bytes,
                )
            finally:
                os.unlink(spec_path)
            if result.exit_code == SIGNAL_UNKNOWN_STATUS:
                result.notes.append(
                    "sandlock: status 255 may mean the guest died by a signal (sandlock does not say which)"
                )
            return result

    def _host(host: str) -> str:
        return f"[{host}]" if ":" in host else host

    @functools.cache
    def _probe_sandlock() -> str:
        try:
            import sandlock
        except ImportError:
            raise BackendUnavailable("sandlock is not installed (pip install sandlock)") from None
        require_smoke_run(SandlockBackend(), "sandlock cannot confine here", timeout=30)
        return f"sandlock {getattr(sandlock, '__version__', '?')}"


if __name__ == "__main__":
    stage_main(sys.argv[1])
