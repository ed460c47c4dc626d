"""Answers programs check exactly: the errno, the return value or the /proc
field that CPython's own regression tests (and the programs they stand for)
depend on.  Each small program runs natively as the guest's identity and
inside (as root and as an unprivileged monitor); their outputs must be equal.
"""

from __future__ import annotations

import pytest
from conftest import native_as_guest

PYTHON = "/usr/bin/python3"


def same_as_native(run, source: str, timeout: float = 60.0, **overrides):
    argv = [PYTHON, "-c", source]
    native = native_as_guest(argv, timeout=timeout)
    assert native.returncode == 0, native.stderr.decode()
    inside = run(argv, timeout=timeout, **overrides)
    assert inside.status == 0, (inside.reason, inside.stderr, inside.unsupported)
    assert inside.stdout == native.stdout.decode(), inside.stderr
    return inside


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
