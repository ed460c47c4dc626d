"""Starts a program natively the way a picoprocess would see the world, so
that its output can be compared with the same program inside: the guest's
identity, environment, working directory and hostname, and private, empty,
size-limited tmpfs where the guest has its scratch (/tmp, /dev/shm), in a
network namespace of its own with only a loopback (the guest's own network),
with the guest's open-file limit, no core dumps and no_new_privs.

It is the plain host kernel otherwise: no seccomp filter, no library OS, the
host's own /proc and /dev.  Run as a script (``python3 -I launch.py SPEC --
PROG ARGS...``), single-threaded, by the harness; it execs PROG and is gone.
It uses the standard library only, because it runs before any of picoproc is
importable in some settings (an unprivileged copy, a bare /usr/bin/python3).

SPEC is JSON: {"uid", "gid", "env": {...}, "cwd", "hostname",
"tmpfs": [[path, size_bytes, inodes, mode], ...], "nofile",
"cgroup_procs": [cgroup.procs files to join]}.  As root the
namespaces are made directly and the identity is then switched to uid:gid;
unprivileged, a user namespace maps the caller to itself (so it stays who
it is) and gives the rights to mount and to bring the loopback up.
"""

from __future__ import annotations

import ctypes
import fcntl
import json
import os
import resource
import signal
import socket
import struct
import sys

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_REC = 0x4000
MS_PRIVATE = 0x40000
PR_SET_NO_NEW_PRIVS = 38
SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1

_libc = ctypes.CDLL(None, use_errno=True)


def _check(rc: int, what: str) -> None:
    if rc != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"{what}: {os.strerror(e)}")


def _write(path: str, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)


def _loopback_up() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        req = struct.pack("16sH14x", b"lo", 0)
        flags = struct.unpack("16sH14x", fcntl.ioctl(s.fileno(), SIOCGIFFLAGS, req))[1]
        fcntl.ioctl(s.fileno(), SIOCSIFFLAGS, struct.pack("16sH14x", b"lo", flags | IFF_UP))


def enter(spec: dict) -> None:
    """Everything but the exec, in this process."""
    uid, gid = int(spec["uid"]), int(spec["gid"])
    root = os.geteuid() == 0
    # The cgroup first: everything the program starts is counted and killed with it.
    for procs in spec.get("cgroup_procs", []):
        _write(procs, "0")
    flags = CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWUTS | CLONE_NEWIPC
    if not root:
        if (uid, gid) != (os.geteuid(), os.getegid()):
            raise OSError(1, f"an unprivileged launcher runs as itself, not {uid}:{gid}")
        _check(_libc.unshare(CLONE_NEWUSER | flags), "unshare")
        _write("/proc/self/setgroups", "deny")
        _write("/proc/self/uid_map", f"{uid} {uid} 1\n")
        _write("/proc/self/gid_map", f"{gid} {gid} 1\n")
    else:
        _check(_libc.unshare(flags), "unshare")
    _check(_libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, None), "making / private")
    for path, size, inodes, mode in spec.get("tmpfs", []):
        opts = f"size={int(size)},nr_inodes={int(inodes)},mode={int(mode):o}"
        if root:
            opts += f",uid={uid},gid={gid}"
        _check(_libc.mount(b"tmpfs", os.fsencode(path), b"tmpfs", MS_NOSUID | MS_NODEV,
                           opts.encode()), f"mounting a tmpfs on {path}")
    _loopback_up()
    socket.sethostname(spec.get("hostname", "picoproc"))
    if root:
        os.setgroups([])
        os.setresgid(gid, gid, gid)
        os.setresuid(uid, uid, uid)
    if spec.get("nofile"):
        n = int(spec["nofile"])
        resource.setrlimit(resource.RLIMIT_NOFILE, (n, n))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    _check(_libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(PR_SET_NO_NEW_PRIVS)")
    os.chdir(spec.get("cwd", "/"))


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[1] != "--":
        print("usage: launch.py SPEC -- PROG [ARGS...]", file=sys.stderr)
        return 125
    spec = json.loads(argv[0])
    prog = argv[2:]
    try:
        enter(spec)
    except OSError as exc:
        print(f"launch: {exc.strerror or exc}", file=sys.stderr)
        return 125
    env = {str(k): str(v) for k, v in spec.get("env", {}).items()}
    # Every signal with its default action, as a guest starts: a comparison
    # started in a shell's background (SIGINT, SIGQUIT ignored) or by this
    # Python (SIGPIPE, SIGXFSZ ignored) must not pass that on to the oracle.
    for sig in signal.valid_signals():
        if sig not in (signal.SIGKILL, signal.SIGSTOP) and signal.getsignal(sig) == signal.SIG_IGN:
            signal.signal(sig, signal.SIG_DFL)
    try:
        os.execvpe(prog[0], prog, env)
    except OSError as exc:
        print(f"launch: {prog[0]}: {exc.strerror}", file=sys.stderr)
        return 127 if isinstance(exc, FileNotFoundError) else 126


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
