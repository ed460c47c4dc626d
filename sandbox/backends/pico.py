"""``pico``: picoproc itself, through the same interface as the peers, so the
benchmarks and the security corpus compare like with like.

A thin adapter over picoproc.api.Sandbox: the manifest is picoproc's own, so
nothing is lost in translation (``unsupported`` is empty).
"""

from __future__ import annotations

import os
from typing import ClassVar

from picoproc.result import Result

from ._base import Backend, BackendUnavailable


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

    def _run(self, manifest, argv, *, stdin, capture, timeout) -> Result:
        from picoproc.api import Sandbox

        from ._base import _options

        result = Sandbox(manifest).run(
            argv, input=stdin, capture=capture, timeout=timeout,
            forward_signals=_options.forward_signals,
            stop_timeout=_options.stop_timeout if _options.stop_timeout is not None else 10.0,
        )
        # Same "feature key: what happened" shape as the other backends' notes.
        limit_notes = {
            "output": f"limits.output_bytes: killed after more than {manifest.limits.output_bytes} "
                      "bytes of output",
            "wall_time": "limits.wall_time: killed at the wall-time limit",
            "memory": "limits.memory: killed by the run's memory limit (OOM)",
            "cpu_time": "limits.cpu_time: killed at the CPU-time limit",
        }
        if result.limit in limit_notes:
            result.notes.insert(0, limit_notes[result.limit])
        result.notes += [f"denied: {d.get('call')} {d.get('uri') or d.get('path')}"
                         for d in result.denials]
        return result
