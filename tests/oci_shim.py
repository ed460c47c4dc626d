"""A minimal engine shim for the picoproc-oci tests, doing what conmon and
containerd-shim do with a runtime: become a subreaper, run ``create`` with a
pid file, and wait for the container process that re-parents to it.

    python oci_shim.py TIMEOUT RUNTIME [GLOBAL_FLAGS...] -- create ARGS...

Prints ``created PID`` once create has returned (or ``create-failed STATUS``
and create's stderr), then ``exited CODE`` or ``signaled SIGNAL`` when the
container process ends, and exits 0.  Kills the container process and fails
(status 3) if it has not ended within TIMEOUT seconds: a hung container
fails the test instead of hanging the suite.  The container's stdout and
stderr are this process's stdout and the file PID_FILE.stderr.
"""

import ctypes
import os
import select
import subprocess
import sys

PR_SET_CHILD_SUBREAPER = 36


def main() -> int:
    timeout = float(sys.argv[1])
    split = sys.argv.index("--")
    runtime = sys.argv[2:split]
    create = sys.argv[split + 1:]
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        print("prctl failed", flush=True)
        return 2
    pid_file = create[create.index("--pid-file") + 1]
    # Not a pipe: the container process keeps create's stdio (it is the
    # program's), so a pipe would never reach EOF while it runs.
    err = open(pid_file + ".stderr", "w+b")
    proc = subprocess.run(runtime + create, stdin=subprocess.DEVNULL, stderr=err, timeout=60)
    if proc.returncode != 0:
        err.seek(0)
        print(f"create-failed {proc.returncode} {err.read().decode(errors='replace').strip()}", flush=True)
        return 0
    with open(pid_file) as f:
        pid = int(f.read())
    print(f"created {pid}", flush=True)
    pidfd = os.pidfd_open(pid)
    if not select.select([pidfd], [], [], timeout)[0]:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        print("timeout", flush=True)
        return 3
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        print(f"signaled {os.WTERMSIG(status)}", flush=True)
    else:
        print(f"exited {os.WEXITSTATUS(status)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
