"""Answers programs check exactly: the errno, the return value or the /proc
field that CPython's own regression tests (and the programs they stand for)
depend on.  Each small program runs natively as the guest's identity and
inside (as root and as an unprivileged monitor); their outputs must be equal.
"""

from __future__ import annotations

import pytest
from conftest import assert_same_as_native

pytestmark = pytest.mark.root

PYTHON = "/usr/bin/python3"


def same_as_native(run, source: str, timeout: float = 60.0, **overrides):
    return assert_same_as_native(run, [PYTHON, "-c", source], timeout=timeout, **overrides)


NONBLOCKING_CONNECT = r"""
import errno, select, socket
srv = socket.create_server(("127.0.0.1", 0))
port = srv.getsockname()[1]
c = socket.socket()
c.setblocking(False)
print("first", errno.errorcode.get(c.connect_ex(("127.0.0.1", port)), 0))
print("writable", select.select([], [c], [], 10)[1] == [c])
print("so_error", c.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR))
print("second", errno.errorcode.get(c.connect_ex(("127.0.0.1", port)), 0))
print("third", errno.errorcode.get(c.connect_ex(("127.0.0.1", port)), 0))
s, _ = srv.accept()
c.send(b"ping")
print("data", s.recv(4))
s.close(); c.close()
b = socket.socket()
print("blocking", b.connect_ex(("127.0.0.1", port)), errno.errorcode.get(b.connect_ex(("127.0.0.1", port))))
"""


def test_nonblocking_tcp_connect_on_own_loopback_is_in_progress(guest_runner):
    # Linux answers a non-blocking TCP connect with EINPROGRESS even on
    # loopback, then 0 once, then EISCONN (test_epoll, asyncio's connect).
    r = same_as_native(guest_runner, NONBLOCKING_CONNECT)
    assert "first EINPROGRESS" in r.stdout and "second 0" in r.stdout


WAITID = r"""
import os, signal
def show(r):
    print(None if r is None else (r.si_signo, r.si_code, r.si_status, r.si_pid > 0))
pid = os.fork()
if pid == 0:
    os._exit(3)
r = os.waitid(os.P_PID, pid, os.WEXITED); show(r); print("pid", r.si_pid == pid)
pid = os.fork()
if pid == 0:
    signal.pause()
    os._exit(0)
print("nothing yet", os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG))
os.kill(pid, signal.SIGTERM)
show(os.waitid(os.P_ALL, 0, os.WEXITED))
pid = os.fork()
if pid == 0:
    os._exit(5)
show(os.waitid(os.P_PGID, 0, os.WEXITED))
pid = os.fork()
if pid == 0:
    os._exit(7)
fd = os.pidfd_open(pid)
show(os.waitid(os.P_PIDFD, fd, os.WEXITED))
for args in ((os.P_ALL, 0, os.WEXITED), (os.P_ALL, 0, 0), (99, 0, os.WEXITED)):
    try:
        os.waitid(*args)
    except OSError as e:
        print("error", os.strerror(e.errno))
"""


def test_waitid_reports_children_as_linux_does(guest_runner):
    r = same_as_native(guest_runner, WAITID)
    assert "(17, 1, 3, True)" in r.stdout and "(17, 2, 15, True)" in r.stdout


# How Go's os/exec waits for a child: waitid(WEXITED|WNOWAIT) first, and on
# ENOSYS a plain wait; any other error is the wait's failure.
WAITID_NOWAIT_THEN_WAIT = r"""
import errno, os
pid = os.fork()
if pid == 0:
    os._exit(3)
try:
    os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)
except OSError as e:
    if e.errno != errno.ENOSYS:
        print("wait failed:", errno.errorcode[e.errno])
        raise SystemExit(0)
print("status", os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
"""


def test_a_wait_without_reaping_falls_back_as_go_does(guest_runner):
    r = same_as_native(guest_runner, WAITID_NOWAIT_THEN_WAIT)
    assert r.stdout == "status 3\n"


PROC_DIR_AS_PIDFD = r"""
import os, signal
got = []
signal.signal(signal.SIGUSR1, lambda s, f: got.append(s))
fd = os.open(f"/proc/{os.getpid()}", os.O_DIRECTORY)
signal.pidfd_send_signal(fd, signal.SIGUSR1)
print("self", got)
pid = os.fork()
if pid == 0:
    signal.pause()
    os._exit(0)
cfd = os.open(f"/proc/{pid}", os.O_DIRECTORY)
signal.pidfd_send_signal(cfd, signal.SIGKILL)
print("child", os.waitpid(pid, 0)[1])
for bad in (os.open("/proc", os.O_DIRECTORY), os.open("/proc/self/status", os.O_RDONLY), 0):
    try:
        signal.pidfd_send_signal(bad, signal.SIGUSR1)
    except OSError as e:
        print("not a pidfd", os.strerror(e.errno))
"""


def test_a_proc_pid_directory_fd_is_a_pidfd(guest_runner):
    r = same_as_native(guest_runner, PROC_DIR_AS_PIDFD)
    assert "self [10]" in r.stdout and "child 9" in r.stdout


TRAILING_SLASH_CREATE = r"""
import os, tempfile
d = tempfile.mkdtemp()
os.mkdir(os.path.join(d, "dir"))
open(os.path.join(d, "file"), "w").close()
for name in ("missing/", "dir/", "file/", "missing/deeper/", "file/deeper/"):
    for flags in (os.O_CREAT | os.O_WRONLY | os.O_TRUNC, os.O_CREAT | os.O_RDONLY,
                  os.O_CREAT | os.O_EXCL | os.O_WRONLY, os.O_CREAT | os.O_DIRECTORY | os.O_RDONLY,
                  os.O_WRONLY):
        try:
            os.close(os.open(os.path.join(d, name), flags, 0o600))
            print(name, flags, "opened")
        except OSError as e:
            print(name, flags, os.strerror(e.errno))
print(sorted(os.listdir(d)))
"""


def test_creating_a_name_with_a_trailing_slash_is_eisdir(guest_runner):
    # shutil.copyfile to "missing_dir/" turns Linux's EISDIR into the
    # FileNotFoundError test_shutil expects.
    r = same_as_native(guest_runner, TRAILING_SLASH_CREATE)
    assert "missing/ 577 Is a directory" in r.stdout


SYMLINK_O_PATH = r"""
import os, stat, tempfile
d = tempfile.mkdtemp()
os.symlink("nowhere", os.path.join(d, "dangling"))
open(os.path.join(d, "file"), "w").close()
os.symlink("file", os.path.join(d, "to_file"))
for name in ("dangling", "to_file"):
    link = os.path.join(d, name)
    for flags in (os.O_PATH | os.O_NOFOLLOW, os.O_PATH | os.O_NOFOLLOW | os.O_DIRECTORY,
                  os.O_RDONLY | os.O_NOFOLLOW):
        try:
            fd = os.open(link, flags)
        except OSError as e:
            print(name, flags, os.strerror(e.errno))
            continue
        print(name, flags, stat.filemode(os.stat(fd).st_mode))
        for what, call in (("read", lambda: os.read(fd, 1)), ("fchmod", lambda: os.fchmod(fd, 0o600)),
                           ("fchown", lambda: os.fchown(fd, -1, -1)), ("listdir", lambda: os.listdir(fd))):
            try:
                call()
                print(" ", what, "done")
            except OSError as e:
                print(" ", what, os.strerror(e.errno))
        os.close(fd)
    # glibc's lchmod: an O_PATH|O_NOFOLLOW open, then EOPNOTSUPP for a link.
    try:
        os.chmod(link, 0o600, follow_symlinks=False)
        print("lchmod done")
    except NotImplementedError:
        print("lchmod not implemented")
    except OSError as e:
        print("lchmod", os.strerror(e.errno))
"""


def test_a_link_opened_o_path_nofollow_is_the_link(guest_runner):
    # tempfile's cleanup of links with odd modes (test_tempfile) chmods
    # them with follow_symlinks=False, which must fail the way glibc fails.
    r = same_as_native(guest_runner, SYMLINK_O_PATH)
    assert "lchmod not implemented" in r.stdout


PRLIMIT = r"""
import os, resource
for pid in (-1, 0, os.getpid(), 2 ** 22 - 1):
    try:
        print(pid > 0, resource.prlimit(pid, resource.RLIMIT_NOFILE) == resource.getrlimit(resource.RLIMIT_NOFILE))
    except OSError as e:
        print(pid > 0, os.strerror(e.errno))
"""


def test_prlimit_of_no_process_is_esrch(guest_runner):
    r = same_as_native(guest_runner, PRLIMIT)
    assert "No such process" in r.stdout


TCP_OPTIONS_BEFORE_CONNECT = r"""
import socket
def opt(s, level, name):
    return s.getsockopt(level, name)
for family, host in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
    srv = socket.socket(family)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    print("unbound", srv.getsockname()[:2], opt(srv, socket.SOL_SOCKET, socket.SO_TYPE),
          opt(srv, socket.SOL_SOCKET, socket.SO_DOMAIN) == family)
    srv.bind((host, 0))
    srv.listen()
    port = srv.getsockname()[1]
    # a second listener on the same port: SO_REUSEPORT as asyncio's reuse_port sets it
    twin = socket.socket(family)
    twin.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    twin.bind((host, port))
    twin.listen()
    print("reuseport", opt(srv, socket.SOL_SOCKET, socket.SO_REUSEPORT), opt(twin, socket.SOL_SOCKET, socket.SO_REUSEPORT))
    c = socket.socket(family)
    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 77)
    c.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    print("before", opt(c, socket.IPPROTO_TCP, socket.TCP_NODELAY), opt(c, socket.IPPROTO_TCP, socket.TCP_KEEPIDLE))
    c.connect((host, port))
    print("after", opt(c, socket.IPPROTO_TCP, socket.TCP_NODELAY), opt(c, socket.IPPROTO_TCP, socket.TCP_KEEPIDLE),
          opt(c, socket.SOL_SOCKET, socket.SO_KEEPALIVE) != 0)
    for s in (c, srv, twin):
        s.close()
"""


def test_tcp_options_set_before_bind_or_connect(guest_runner):
    # asyncio's reuse_port and set_nodelay set these on a socket that is not
    # yet bound or connected (test_events, test_base_events).
    r = same_as_native(guest_runner, TCP_OPTIONS_BEFORE_CONNECT)
    assert "after 1 77 True" in r.stdout


ACCEPTED_PEER_NAME = r"""
import os, socket, tempfile
for family, host in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
    srv = socket.create_server((host, 0), family=family)
    c = socket.create_connection(srv.getsockname()[:2])
    a, addr = srv.accept()
    print(family == socket.AF_INET, a.getpeername() == addr == c.getsockname(), c.getpeername() == srv.getsockname())
    try:
        srv.getpeername()
    except OSError as e:
        print("listener", os.strerror(e.errno))
d = tempfile.mkdtemp()
u = socket.socket(socket.AF_UNIX)
u.bind(os.path.join(d, "srv"))
u.listen()
named = socket.socket(socket.AF_UNIX)
named.bind("\0picoproc-peer-test-%d" % os.getpid())
named.connect(os.path.join(d, "srv"))
anon = socket.socket(socket.AF_UNIX)
anon.connect(os.path.join(d, "srv"))
for client in (named, anon):
    a, _ = u.accept()
    print("unix", repr(a.getpeername()) == repr(client.getsockname()), client.getpeername() == os.path.join(d, "srv"))
try:
    socket.socket().getpeername()
except OSError as e:
    print("unconnected", os.strerror(e.errno))
try:
    os.close(os.dup(0)); socket.socket(fileno=os.open(d, os.O_RDONLY)).getpeername()
except OSError as e:
    print("not a socket", os.strerror(e.errno))
"""


def test_getpeername_of_an_accepted_socket(guest_runner):
    # ssl.SSLSocket asks getpeername() whether its socket is connected: an
    # accepted socket answering ENOTCONN failed every TLS server in asyncio.
    r = same_as_native(guest_runner, ACCEPTED_PEER_NAME)
    assert r.stdout.count(" True True\n") == 4 and r.stdout.count("unix True True") == 2


VFORK_KEEPS_PARENT_MAPPINGS = r"""
import mmap, subprocess
kept = []
for i in range(8):
    # CPython's subprocess execs through vfork: the child's exec scratch
    # lives in the parent's memory, which the parent maps again right after.
    subprocess.run(["/bin/true"], check=True)
    m = mmap.mmap(-1, 32768)
    m[:8] = b"alive:%02d" % i
    kept.append(m)
# Had a child unmapped one of them, a later mapping would have taken its
# place: two mappings would show the same bytes (or a read would fault).
print([m[:8].decode() for m in kept])
"""


def test_vfork_children_never_unmap_what_the_parent_maps_later(guest_runner):
    r = same_as_native(guest_runner, VFORK_KEEPS_PARENT_MAPPINGS)
    assert r.stdout == str(["alive:%02d" % i for i in range(8)]) + "\n"


BIND_THEN_CONNECT = r"""
import socket
srv = socket.create_server(("127.0.0.1", 0))
port = srv.getsockname()[1]
for host in ("127.0.0.1", "0.0.0.0"):
    c = socket.socket()
    c.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    c.bind((host, 0))
    bound = c.getsockname()
    c.connect(("127.0.0.1", port))
    a, addr = srv.accept()
    print(host, c.getsockname()[1] == bound[1], addr == c.getsockname(), c.getsockname()[0])
    a.close(); c.close()
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.bind(("127.0.0.1", 0))
b = u.getsockname()
r = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
r.bind(("127.0.0.1", 0))
u.connect(r.getsockname())
u.send(b"x")
print("udp", u.getsockname() == b, r.recvfrom(10)[1] == b)
"""


def test_a_socket_bound_before_connect_keeps_its_address(guest_runner):
    # asyncio's create_connection(local_addr=...) binds, then connects.
    r = same_as_native(guest_runner, BIND_THEN_CONNECT)
    assert "127.0.0.1 True True 127.0.0.1" in r.stdout and "udp True True" in r.stdout


VECTOR_IO_FLAGS = r"""
import os, tempfile
fd, path = tempfile.mkstemp()
os.write(fd, b"test1tt2t3t5t6t6t8")
for name in ("RWF_HIPRI", "RWF_DSYNC", "RWF_SYNC", "RWF_NOWAIT", "RWF_APPEND"):
    flag = getattr(os, name)
    buf = [bytearray(5), bytearray(3)]
    try:
        print(name, "read", os.preadv(fd, buf, 3, flag), bytes(buf[0]), bytes(buf[1]))
    except OSError as e:
        print(name, "read", os.strerror(e.errno))
    if name in ("RWF_NOWAIT", "RWF_APPEND"):
        continue  # a write with those: the answer depends on the file system
    print(name, "write", os.pwritev(fd, [b"ab", b"cd"], 1, flag), os.pread(fd, 6, 0))
try:
    os.preadv(fd, [bytearray(1)], 0, 0x8000)
except OSError as e:
    print("unknown", os.strerror(e.errno))
r, w = os.pipe()
try:
    os.preadv(r, [bytearray(1)], -1, os.RWF_NOWAIT)
except OSError as e:
    print("empty pipe", os.strerror(e.errno))
"""


def test_preadv2_and_pwritev2_flags(guest_runner):
    # test_posix's test_preadv_flags reads with RWF_HIPRI.
    r = same_as_native(guest_runner, VECTOR_IO_FLAGS)
    assert "RWF_HIPRI read 8 b't1tt2' b't3t'" in r.stdout


DNOTIFY_WITHOUT_EVENTS = r"""
import fcntl, os, tempfile
d = tempfile.mkdtemp()
open(os.path.join(d, "file"), "w").close()
# a directory asking for no event; a file asking for none, then for one
for path, args in ((d, (0, fcntl.DN_MULTISHOT)), (os.path.join(d, "file"), (0, fcntl.DN_MULTISHOT, fcntl.DN_CREATE))):
    fd = os.open(path, os.O_RDONLY)
    for arg in args:
        try:
            print(path == d, arg, fcntl.fcntl(fd, fcntl.F_NOTIFY, arg))
        except OSError as e:
            print(path == d, arg, os.strerror(e.errno))
    os.close(fd)
"""


def test_dnotify_asking_for_no_event(guest_runner):
    # test_fcntl's test_fcntl_64_bit: F_NOTIFY with DN_MULTISHOT alone.
    r = same_as_native(guest_runner, DNOTIFY_WITHOUT_EVENTS)
    assert f"True {0x80000000} 0" in r.stdout
    # Asking for events is not offered, and says so.
    inside = guest_runner([PYTHON, "-c", "import fcntl, os; fd = os.open('/tmp', os.O_RDONLY)\n"
                           "try: fcntl.fcntl(fd, fcntl.F_NOTIFY, fcntl.DN_CREATE)\n"
                           "except OSError as e: print(e.errno)"])
    assert inside.stdout == "38\n" and inside.unsupported, inside
