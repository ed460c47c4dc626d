"""The kernel's floor under each call class, measured in the same run.

``benchmarks/floor/notif_floor.c`` is a two-process seccomp supervisor that
does nothing but the host call a mediated call needs and answers at once
(SYNC_WAKE_UP set): no path checks, no policy, no audit.  What it measures
is what any monitor built on seccomp user notification pays on this machine
and this kernel, so picoproc's cost is reported as a ratio to it:

* a mediated ``stat``: one notification round trip + the supervisor's
  native ``stat`` (``stat_floor``);
* a mediated ``open`` + ``close``: the supervisor's native ``open``, the fd
  handed back, the guest's ``close``, by the cheapest mechanism measured:
  NOTIF_ADDFD + ADDFD_FLAG_SEND (``open_addfd``, the kernel's own way) or
  an AF_UNIX socket pair with NOTIF_SEND (``open_channel``);
* a direct call (``getppid``): the same call in a process whose only filter
  allows everything in 4 instructions (``getppid_filtered``): any filter
  costs the kernel's seccomp entry.

One more row is not a floor but shows what confinement alone costs on the
host: the supervisor looks the file up as a confining monitor must (openat2
beneath its directory without links or mount crossings, statx of that fd,
close) instead of one ``stat`` (``stat_confined``).

The floor program runs natively in each round of the call-class
measurement, between the backends, and is timed the way the call-class
guest is (batches of a calibrated length, per-call means), so that floor
and picoproc see the same machine and the same statistics.
"""

from __future__ import annotations

import pathlib
import subprocess

from . import stats

SOURCE = pathlib.Path(__file__).resolve().parent.parent / "floor" / "notif_floor.c"

# Call class of the suite -> the floor rows it is compared with (the
# cheapest of them is its floor).
FLOOR_ROWS = {
    "getppid": ("getppid_filtered",),
    "stat": ("stat_floor",),
    "openclose": ("open_addfd", "open_channel"),
}
FLOOR_ROW_LABEL = {
    "getppid_filtered": "getppid under a 4-instruction filter",
    "null": "bare notification round trip",
    "stat_floor": "round trip + native stat in the supervisor",
    "stat_confined": "round trip + confined lookup in the supervisor (openat2 RESOLVE_BENEATH, statx, close)",
    "open_addfd": "native open + NOTIF_ADDFD(SEND) + close",
    "open_addfd_then_send": "native open + NOTIF_ADDFD, then NOTIF_SEND + close",
    "open_channel": "native open + fd over AF_UNIX + NOTIF_SEND + recvmsg + close",
}
FLOOR_CLASSES = ("getppid", "getppid_filtered", "stat", "openclose", "null", "stat_floor", "stat_confined",
                 "open_addfd", "open_addfd_then_send", "open_channel")


def floor_binary() -> pathlib.Path:
    """notif_floor, compiled once per source (cached like the floor scripts')."""
    from picoproc.bench.bench_floor import build

    return build(SOURCE)


def run_floor_once(binary: pathlib.Path, file: str, target_ns: int, batches: int,
                   timeout: float = 600.0) -> dict:
    """One run: {class: {"iters", "per_call_ns"}}, or {"error": ...}."""
    from .workloads import parse_callclass_output

    try:
        out = subprocess.run([str(binary), file, str(target_ns), str(batches), *FLOOR_CLASSES],
                             capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:g} s"}
    parsed = parse_callclass_output(out.stdout)
    if out.returncode != 0:
        parsed["error"] = f"notif_floor exit status {out.returncode}: {out.stderr.strip()[-200:]}"
    return parsed


def summarise(batches: dict[str, list[float]], error: str | None) -> dict:
    """{"classes": {row: summary}, "error"?} from the per-call ns of every batch."""
    doc: dict = {"classes": {row: stats.summary(v) for row, v in batches.items() if v}}
    if error:
        doc["error"] = error
    return doc


def compare(calls: dict, floor: dict) -> dict:
    """{class: {"floor_row", "floor_ns", "pico_ns", "ratio"}} for every class
    of FLOOR_ROWS that both picoproc and the floor measured: the floor is the
    cheapest of the class's floor rows."""
    pico = calls.get("pico", {}).get("classes", {})
    rows = floor.get("classes", {})
    out = {}
    for cls, candidates in FLOOR_ROWS.items():
        measured = [(rows[r]["median"], r) for r in candidates if "median" in rows.get(r, {})]
        if not measured or "median" not in pico.get(cls, {}):
            continue
        floor_ns, row = min(measured)
        out[cls] = {"floor_row": row, "floor_ns": floor_ns, "pico_ns": pico[cls]["median"],
                    "ratio": stats.ratio(pico[cls]["median"], floor_ns)}
    return out
