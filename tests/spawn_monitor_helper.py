"""A monitor in its own process, driven by tests/test_spawn.py.

The spawn tests need a monitor they can SIGKILL (parent-death test) and one
that runs as an unprivileged user (user-namespace path without root).  This
script is that monitor.  Usage:

    python3 spawn_monitor_helper.py '<json config>'

config: {"argv": [...], "stdin_fd": N, "stdout_fd": N, "limits": {...},
         "cgroup": "auto"}
It spawns the guest with stdio (stdin_fd, stdout_fd, 2), closes its copies
of those fds, prints one JSON line describing the picoprocess, then waits for
a line on its stdin: "wait" -> waits (10 s at most) and prints the result as
one JSON line.  EOF on stdin -> kills the run and exits.
"""

import json
import os
import sys


def main() -> int:
    from picoproc import cgroups
    from picoproc.manifest import Limits
    from picoproc.spawn import SpawnConfig, kill_picoprocess, spawn_picoprocess, wait_picoprocess

    cfg = json.loads(sys.argv[1])
    config = SpawnConfig(
        argv=cfg["argv"],
        stdio=(cfg["stdin_fd"], cfg["stdout_fd"], 2),
        limits=Limits(**cfg.get("limits", {})),
        cgroup=cfg.get("cgroup", "auto"),
        hostname=cfg.get("hostname", "picoproc"),
    )
    try:
        spawned = spawn_picoprocess(config)
    except OSError as exc:
        print(json.dumps({"error": str(exc)}), flush=True)
        return 1
    os.close(cfg["stdin_fd"])
    os.close(cfg["stdout_fd"])
    print(
        json.dumps(
            {
                "pid": spawned.pid,
                "guest_pid": spawned.guest_pid,
                "monitor_pid": os.getpid(),
                "euid": os.geteuid(),
                "cgroup": spawned.cgroup.paths if spawned.cgroup else None,
                "cgroup_note": spawned.cgroup_note,
                "cgroups_available": list(cgroups.available()),
                "enforcement": dict(spawned.enforcement),
            }
        ),
        flush=True,
    )
    line = sys.stdin.readline()
    if line.strip() != "wait":
        kill_picoprocess(spawned)
        wait_picoprocess(spawned, timeout=10)
        return 0
    result = wait_picoprocess(spawned, timeout=10)
    print(
        json.dumps(
            {
                "exit_code": result.exit_code,
                "signal": result.signal,
                "limit": result.limit,
                "reason": result.reason,
            }
        ),
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
