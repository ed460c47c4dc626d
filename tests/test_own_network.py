"""Every picoprocess has a network of its own: its loopback (127.0.0.1 and
::1), brought up by the reaper, whose socket helper makes sockets there for
the monitor.
"""

from __future__ import annotations

import array
import errno
import os
import select
import shutil
import socket
import struct
import subprocess
import tempfile
import threading
import time

import pytest
from conftest import native_as_guest

PYTHON = "/usr/bin/python3"


def assert_same_as_native(run, argv, timeout=60.0, **overrides):
    native = native_as_guest(argv, timeout=timeout)
    assert native.returncode == 0, native.stderr.decode()
    inside = run(argv, timeout=timeout, **overrides)
    assert inside.status == 0, (inside.reason, inside.stderr, inside.unsupported)
    assert inside.stdout == native.stdout.decode(), inside.stderr
    return inside


# ---------------------------------------------------------------------------------------
# the reaper's socket helper
# ---------------------------------------------------------------------------------------

_REQUEST = struct.Struct("<IiiiiiI128s")


def _helper_call(chan, op, domain, type_, addr=b"", options=0, backlog=8, raw=None):
    """One request to the guest's socket helper: (err, fd or -1)."""
    chan.send(raw if raw is not None else
              _REQUEST.pack(7, op, domain, type_, options, backlog, len(addr), addr))
    ready, _, _ = select.select([chan], [], [], 10)
    assert ready, "the helper did not answer"
    msg, anc, _, _ = chan.recvmsg(8, socket.CMSG_SPACE(4))
    _, err = struct.unpack("<Ii", msg)
    fds = [fd for level, kind, data in anc for fd in array.array("i", data)]
    assert len(fds) == (1 if err in (0, errno.EINPROGRESS) else 0), (err, fds)
    return err, fds[0] if fds else -1


def _sin(host: str, port: int) -> bytes:
    return struct.pack("<H", socket.AF_INET) + struct.pack(">H", port) + socket.inet_aton(host) + bytes(8)


def test_the_reaper_helper_makes_sockets_only_in_the_guest_network(guest_bin):
    from picoproc.native import lib
    from picoproc.spawn import SpawnConfig, release, spawn_picoprocess, wait_picoprocess

    def tasks_become(n):
        deadline = time.monotonic() + 10
        while len(os.listdir(f"/proc/{sp.pid}/task")) != n:
            assert time.monotonic() < deadline, f"the reaper never had {n} task(s)"
            time.sleep(0.01)  # nothing to wait on: the reaper starts or ends a thread

    rd, wr = os.pipe()
    out_r, out_w = os.pipe()
    sp = spawn_picoprocess(SpawnConfig(argv=[str(guest_bin / "spawn_ctl")], stdio=(rd, out_w, 2),
                                       guestnet=True))
    os.close(rd)
    os.close(out_w)
    chan = socket.socket(fileno=sp.guestnet_fd)
    ended = False
    try:
        # The guest never holds the channel (or anything else but stdio).
        os.write(wr, b"o")
        answer = b""
        while not answer.endswith(b"\n"):
            chunk = os.read(out_r, 64)
            assert chunk, answer
            answer += chunk
        assert answer == b"fds=0,1,2\n"
        # The helper is a thread of the reaper (started once the guest has
        # exec'd), not a process of the guest's.
        tasks_become(2)
        err, fd = _helper_call(chan, lib.PICO_GN_LISTEN, socket.AF_INET, socket.SOCK_STREAM,
                               _sin("127.0.0.1", 0), lib.PICO_GN_REUSEADDR)
        assert err == 0
        with socket.socket(fileno=fd) as listener:
            port = listener.getsockname()[1]
            # From the host's loopback that port is not the guest's listener.
            with socket.socket() as probe:
                probe.settimeout(5)
                probe.connect_ex(("127.0.0.1", port))
            assert select.select([listener], [], [], 0.1)[0] == []
            # From the guest's own network it is.
            err, cfd = _helper_call(chan, lib.PICO_GN_CONNECT, socket.AF_INET, socket.SOCK_STREAM,
                                    _sin("127.0.0.1", port))
            assert err in (0, errno.EINPROGRESS)
            os.close(cfd)
            assert select.select([listener], [], [], 10)[0] == [listener]
        # Below 1024 the guest's identity may not bind (no capabilities).
        assert _helper_call(chan, lib.PICO_GN_LISTEN, socket.AF_INET, socket.SOCK_STREAM,
                            _sin("127.0.0.1", 80)) == (errno.EACCES, -1)
        bad = [
            dict(op=9, domain=socket.AF_INET, type_=socket.SOCK_STREAM),
            dict(op=lib.PICO_GN_SOCKET, domain=17, type_=socket.SOCK_DGRAM),  # AF_PACKET
            dict(op=lib.PICO_GN_SOCKET, domain=socket.AF_NETLINK, type_=socket.SOCK_DGRAM),
            dict(op=lib.PICO_GN_SOCKET, domain=socket.AF_INET, type_=socket.SOCK_RAW),
            dict(op=lib.PICO_GN_LISTEN, domain=socket.AF_UNIX, type_=socket.SOCK_STREAM,
                 addr=struct.pack("<H", socket.AF_UNIX) + b"/tmp/a-path\0"),
            dict(op=lib.PICO_GN_LISTEN, domain=socket.AF_INET, type_=socket.SOCK_STREAM,
                 addr=struct.pack("<H", socket.AF_INET6) + bytes(26)),
            dict(op=lib.PICO_GN_BIND, domain=socket.AF_INET, type_=socket.SOCK_DGRAM, addr=b"\x02"),
            dict(op=lib.PICO_GN_SOCKET, domain=socket.AF_INET, type_=socket.SOCK_DGRAM, options=0x100),
            dict(op=0, domain=0, type_=0, raw=b"short"),
        ]
        for case in bad:
            assert _helper_call(chan, **case) == (errno.EINVAL, -1), case
        # Still serving after all that.
        err, fd = _helper_call(chan, lib.PICO_GN_SOCKET, socket.AF_INET6, socket.SOCK_DGRAM)
        assert err == 0
        os.close(fd)
        # The monitor's end closed: the helper thread ends, the reaper goes on.
        chan.close()
        tasks_become(1)
        os.close(wr)
        wr = -1
        assert wait_picoprocess(sp, timeout=10).exit_code == 0
        ended = True
    finally:
        chan.close()
        if wr >= 0:
            os.close(wr)
        os.close(out_r)
        if not ended:
            release(sp)
