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
