"""``pico``: picoproc itself, through the same interface as the peers, so the
benchmarks and the security corpus compare like with like.

A thin adapter over picoproc.api.Sandbox: the manifest is picoproc's own, so
nothing is lost in translation (``unsupported`` is empty).
"""

from __future__ import annotations

import os
from typing import ClassVar

from ._base import Backend, BackendResult, BackendUnavailable


class PicoBackend(Backend):
    name = "pico"
    description = "picoproc: seccomp ABI + monitor-mediated resources + library OS"
    # pids are enforced by picoproc's own per-run cgroup (or RLIMIT_NPROC in
    # its user namespace), not by the shared backend launcher.
    enforces_pids_itself: ClassVar[bool] = True
    unsupported: ClassVar[dict[str, str]] = {}

    def _check_available(self) -> str:
        try:
            from picoproc import doctor
            from picoproc.libos import loader_path
        except ImportError as exc:
            raise BackendUnavailable(f"picoproc is not built: {exc}") from None
        if not os.path.exists(loader_path()):
            raise BackendUnavailable(f"the library OS loader is not built ({loader_path()})")
        missing = doctor.missing_core(doctor.run_probes())
        if missing:
            raise BackendUnavailable("missing kernel features: " + ", ".join(missing))
        return "picoproc (this build)"

    def _run(self, manifest, argv, *, stdin, capture, timeout) -> BackendResult:
        from picoproc.api import Sandbox

        stdin_fd = -1
        if stdin is not None:
            r, w = os.pipe()
            try:
                # Small inputs only (a pipe's buffer); the corpus and workloads
                # pass a few bytes at most.
                os.write(w, stdin)
            finally:
                os.close(w)
            stdin_fd = r
        try:
            result = Sandbox(manifest).run(
                argv, stdin=None if stdin_fd < 0 else stdin_fd, capture=capture, timeout=timeout
            )
        finally:
            if stdin_fd >= 0:
                os.close(stdin_fd)
        reason = {"wall_time": "wall_time", "output": "output_bytes"}.get(result.limit or "")
        # Same "feature key: what happened" shape as the other backends' notes.
        limit_notes = {
            "output": f"limits.output_bytes: killed after more than {_output_limit(manifest)} bytes of output",
            "wall_time": "limits.wall_time: killed at the wall-time limit",
            "memory": "limits.memory: killed by the run's memory limit (OOM)",
            "cpu_time": "limits.cpu_time: killed at the CPU-time limit",
        }
        notes = [limit_notes[result.limit]] if result.limit in limit_notes else []
        notes += [f"denied: {d.get('call')} {d.get('uri') or d.get('path')}" for d in result.denials]
        return BackendResult(
            backend=self.name,
            exit_code=result.exit_code,
            signal=result.signal,
            stdout=result.stdout,
            stderr=result.stderr,
            wall_time_s=result.wall_time_s,
            rusage={"ru_utime": result.cpu_user_s, "ru_stime": result.cpu_system_s,
                    "ru_maxrss": result.max_rss_kb},
            timed_out=result.limit == "wall_time",
            reason=reason,
            notes=notes,
        )


def _output_limit(manifest) -> int | None:
    return manifest.limits.output_bytes
