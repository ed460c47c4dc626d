"""Stage 2 of the ``container`` backend: run as ``python3 -I container_init.py SPEC``.

Self-contained on purpose (ctypes and the standard library only, no picoproc
import) so it starts fast and does not depend on the package inside the new
namespaces.  The steps are what a container runtime does for
``docker run --network none``:

 1. unshare user, mount, pid, net, ipc, uts and cgroup namespaces; map
    root inside to the caller's uid/gid (a single mapping: enough for an
    unprivileged caller, and for root it is Docker's no-userns-remap layout);
 2. fork: the child is pid 1 of the new pid namespace, the parent waits
    and passes the child's exit status or signal on;
 3. child: a tmpfs root with the manifest's binds (read-only unless
    writable), scratch tmpfs, masks, /proc, /dev, /sys; pivot_root into it;
    hostname; loopback up; rlimits;
 4. capabilities: bounding set cut to Docker's default set, seccomp filter
    (the Docker profile, compiled by the host side) loaded while
    CAP_SYS_ADMIN is still held (Docker does not set no_new_privs by
    default, so the filter needs the capability), then capset to Docker's set;
 5. execve the program, which becomes pid 1 as in Docker.

Any failure before execve is written to the error fd (close-on-exec, so a
successful exec leaves it empty) and the process exits 125.
"""

import ctypes
import errno
import fcntl
import json
import os
import resource
import signal
import socket
import struct
import sys

CLONE_NEWNS, CLONE_NEWCGROUP, CLONE_NEWUTS, CLONE_NEWIPC = (
    0x20000,
    0x02000000,
    0x04000000,
    0x08000000,
)
CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x10000000, 0x20000000, 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE, MS_STRICTATIME = 32, 4096, 16384, 1 << 18, 1 << 24
MNT_DETACH = 2
PR_SET_PDEATHSIG, PR_CAPBSET_DROP, PR_SET_SECCOMP = 1, 24, 22
SECCOMP_MODE_FILTER = 2
SYS_PIVOT_ROOT, SYS_CAPSET, SYS_MOUNT_SETATTR = 155, 126, 442
AT_FDCWD, AT_RECURSIVE = -100, 0x8000
MOUNT_ATTR_RDONLY = 1
LINUX_CAPABILITY_VERSION_3 = 0x20080522
SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1

# By soname: ctypes.util.find_library would run ldconfig/gcc at every start.
libc = ctypes.CDLL("libc.so.6", use_errno=True)
libc.syscall.restype = ctypes.c_long
libc.mount.argtypes = [
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_ulong,
    ctypes.c_char_p,
]


class Step(Exception):
    pass


def _ok(rc, what):
    if rc < 0:
        e = ctypes.get_errno()
        raise Step(f"{what}: {os.strerror(e)}")
    return rc


def _b(s):
    return s.encode() if isinstance(s, str) else s


def mount(src, target, fstype, flags, data=None):
    _ok(
        libc.mount(
            _b(src) if src else None,
            _b(target),
            _b(fstype) if fstype else None,
            flags,
            _b(data) if data else None,
        ),
        f"mount {src or fstype} on {target}",
    )


class MountAttr(ctypes.Structure):
    _fields_ = [
        ("attr_set", ctypes.c_uint64),
        ("attr_clr", ctypes.c_uint64),
        ("propagation", ctypes.c_uint64),
        ("userns_fd", ctypes.c_uint64),
    ]


def make_readonly(target):
    # Recursive, and it adds RDONLY without touching flags the kernel locked
    # when the mount came from a more privileged namespace (nosuid, nodev...).
    attr = MountAttr(MOUNT_ATTR_RDONLY, 0, 0, 0)
    _ok(
        libc.syscall(
            SYS_MOUNT_SETATTR,
            AT_FDCWD,
            _b(target),
            AT_RECURSIVE,
            ctypes.byref(attr),
            ctypes.sizeof(attr),
        ),
        f"read-only {target}",
    )


def write_file(path, text):
    with open(path, "w") as f:
        f.write(text)


def make_mountpoint(target, is_dir):
    if is_dir:
        os.makedirs(target, exist_ok=True)
    else:
        os.makedirs(os.path.dirname(target), exist_ok=True)
        if not os.path.lexists(target):
            os.close(os.open(target, os.O_CREAT | os.O_WRONLY, 0o644))


def build_view(spec, root):
    mount("tmpfs", root, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=1m")
    guests = set()
    for op in spec["ops"]:
        target = root + op["guest"]
        guests.add(op["guest"])
        kind = op["kind"]
        if kind == "bind":
            make_mountpoint(target, os.path.isdir(op["host"]))
            mount(op["host"], target, None, MS_BIND | MS_REC)
            if not op["writable"]:
                make_readonly(target)
        elif kind == "tmpfs":
            make_mountpoint(target, True)
            mount(
                "tmpfs", target, "tmpfs", MS_NOSUID | MS_NODEV, f"size={op['size_bytes']},mode=1777"
            )
        elif kind == "mask-file":
            mount("/dev/null", target, None, MS_BIND)
            make_readonly(target)
        elif kind == "mask-dir":
            mount(
                "tmpfs",
                target,
                "tmpfs",
                MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC,
                "size=0,mode=000",
            )
    if "/proc" not in guests:
        make_mountpoint(root + "/proc", True)
        mount("proc", root + "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    if "/dev" not in guests:
        build_dev(root + "/dev")
    if "/sys" not in guests:
        make_mountpoint(root + "/sys", True)
        mount("sysfs", root + "/sys", "sysfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC)
    for path in spec["masked_paths"]:
        target = root + path
        if not os.path.lexists(target):
            continue
        if os.path.isdir(target):
            mount("tmpfs", target, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=0")
        else:
            mount("/dev/null", target, None, MS_BIND)
    for path in spec["readonly_paths"]:
        target = root + path
        if os.path.lexists(target):
            mount(target, target, None, MS_BIND | MS_REC)
            make_readonly(target)
    # The skeleton itself is read-only (``docker run --read-only``): only
    # writable mounts and scratch can be written.
    mount(None, root, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)


def build_dev(dev):
    make_mountpoint(dev, True)
    mount("tmpfs", dev, "tmpfs", MS_NOSUID | MS_STRICTATIME, "mode=755,size=65536k")
    # Inside a user namespace device nodes cannot be created: bind the host's
    # (rootless Docker/Podman do the same).
    for name in ("null", "zero", "full", "random", "urandom", "tty"):
        make_mountpoint(f"{dev}/{name}", False)
        mount(f"/dev/{name}", f"{dev}/{name}", None, MS_BIND)
    for name, target in (
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
        ("ptmx", "pts/ptmx"),
        ("core", "/proc/kcore"),
    ):
        os.symlink(target, f"{dev}/{name}")
    make_mountpoint(f"{dev}/pts", True)
    mount(
        "devpts",
        f"{dev}/pts",
        "devpts",
        MS_NOSUID | MS_NOEXEC,
        "newinstance,ptmxmode=0666,mode=0620",
    )
    make_mountpoint(f"{dev}/shm", True)
    mount("shm", f"{dev}/shm", "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=1777,size=65536k")
    make_mountpoint(f"{dev}/mqueue", True)
    mount("mqueue", f"{dev}/mqueue", "mqueue", MS_NOSUID | MS_NODEV | MS_NOEXEC)


def pivot_into(root):
    os.chdir(root)
    _ok(libc.syscall(SYS_PIVOT_ROOT, b".", b"."), "pivot_root")
    _ok(libc.umount2(b".", MNT_DETACH), "detach old root")
    os.chdir("/")


def loopback_up():
    # ``--network none`` still has a loopback interface, up.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        req = struct.pack("16sH14x", b"lo", 0)
        flags = struct.unpack("16sH14x", fcntl.ioctl(s.fileno(), SIOCGIFFLAGS, req))[1]
        fcntl.ioctl(s.fileno(), SIOCSIFFLAGS, struct.pack("16sH14x", b"lo", flags | IFF_UP))


class CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class CapData(ctypes.Structure):
    _fields_ = [
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    ]


def drop_bounding_set(keep, last_cap):
    for cap in range(last_cap + 1):
        if cap not in keep:
            _ok(
                libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0),
                f"drop capability {cap} from the bounding set",
            )


def set_capabilities(keep):
    mask = sum(1 << c for c in keep)
    data = (CapData * 2)(
        CapData(mask & 0xFFFFFFFF, mask & 0xFFFFFFFF, 0), CapData(mask >> 32, mask >> 32, 0)
    )
    hdr = CapHeader(LINUX_CAPABILITY_VERSION_3, 0)
    _ok(libc.syscall(SYS_CAPSET, ctypes.byref(hdr), data), "capset")


class SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def load_seccomp(program):
    buf = ctypes.create_string_buffer(program, len(program))
    prog = SockFprog(len(program) // 8, ctypes.addressof(buf))
    _ok(
        libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(prog), 0, 0),
        "load the seccomp filter",
    )


def init_process(spec, err_fd):
    """pid 1 of the container: build it, then become the program."""
    _ok(libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0), "PR_SET_PDEATHSIG")
    with open("/proc/sys/kernel/cap_last_cap") as f:
        last_cap = int(f.read())
    mount(None, "/", None, MS_REC | MS_PRIVATE)
    build_view(spec, spec["root"])
    pivot_into(spec["root"])
    _ok(libc.sethostname(_b(spec["hostname"]), len(_b(spec["hostname"]))), "sethostname")
    loopback_up()
    for res, value in spec["rlimits"]:
        resource.setrlimit(res, (value, value))
    try:
        os.chdir(spec["cwd"])
    except OSError as exc:
        raise Step(f"working directory {spec['cwd']}: {exc.strerror}") from None
    keep = set(spec["capabilities"])
    drop_bounding_set(keep, last_cap)
    program = bytes.fromhex(spec["seccomp_bpf"])
    argv, env = spec["argv"], spec["env"]
    os.closerange(3, err_fd)
    os.closerange(err_fd + 1, 65536)
    load_seccomp(program)
    set_capabilities(keep)
    try:
        os.execvpe(argv[0], argv, env)
    except OSError as exc:
        # Like Docker's "exec: ...: not found": the runtime's failure, exit 127.
        os.write(2, f"picoproc container: exec {argv[0]}: {exc.strerror}\n".encode())
        os._exit(127 if exc.errno == errno.ENOENT else 126)


def main():
    with open(sys.argv[1]) as f:
        spec = json.load(f)
    err_fd = spec["error_fd"]
    os.set_inheritable(err_fd, False)
    try:
        uid, gid = os.getuid(), os.getgid()
        _ok(
            libc.unshare(
                CLONE_NEWUSER
                | CLONE_NEWNS
                | CLONE_NEWPID
                | CLONE_NEWNET
                | CLONE_NEWIPC
                | CLONE_NEWUTS
                | CLONE_NEWCGROUP
            ),
            "unshare namespaces",
        )
        write_file("/proc/self/setgroups", "deny")
        write_file("/proc/self/uid_map", f"0 {uid} 1")
        write_file("/proc/self/gid_map", f"0 {gid} 1")
    except (Step, OSError) as exc:
        os.write(err_fd, f"container setup: {exc}".encode())
        os._exit(125)
    pid = os.fork()
    if pid == 0:
        try:
            init_process(spec, err_fd)
        except (Step, OSError) as exc:
            os.write(err_fd, f"container setup: {exc}".encode())
        except BaseException as exc:  # noqa: BLE001 - a bug here must still reach the host as one line
            os.write(err_fd, f"container setup: {type(exc).__name__}: {exc}".encode())
        os._exit(125)
    os.close(err_fd)
    # The waiter: ignore job-control signals the session may get, pass the
    # child's fate on to whoever waits for us.
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        signal.signal(sig, signal.SIG_DFL)
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # the guest's crash, not ours to dump
        os.kill(os.getpid(), sig)
        os._exit(128 + sig)
    os._exit(os.WEXITSTATUS(status))


if __name__ == "__main__":
    main()
