"""Network mediation (native/net.c, sandbox/netpolicy.py): tcp:, udp:, tcp.srv:, unix:.

The C entry points the event loop calls (pico_net_start / pico_net_finish) are
driven directly here, against listeners this test runs on loopback and unix
sockets in a temporary directory.  A refusal must not only return the right
errno: the listener behind an ungranted endpoint must see no connection at
all.  No traffic leaves loopback.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import select
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

import pytest
from picoproc.manifest import Endpoint, Limits, Manifest
from picoproc.native import ffi, lib
from picoproc.netpolicy import NetPolicy, NetPolicyError

pytestmark = pytest.mark.unit

MSG_FASTOPEN = 0x20000000
# A listener that saw nothing within this time saw nothing at all: on loopback
# a connect's handshake is processed inside the connecting call itself.
QUIET_S = 0.1
WAIT_S = 10.0


def _has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


needs_ipv6 = pytest.mark.skipif(not _has_ipv6_loopback(), reason="no IPv6 loopback (::1) here")


def _open_fds() -> set[int]:
    return {int(n) for n in os.listdir("/proc/self/fd")}


def _wait_until(predicate, timeout=WAIT_S, what="condition"):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        # Polling a counter the C relay threads update; nothing to wait on.
        time.sleep(0.005)


@pytest.fixture(autouse=True)
def no_fd_leak():
    """Every test leaves the process's fd table as it found it (udp: relay
    threads close their fds when they notice the guest end closed)."""
    before = _open_fds()
    yield
    _wait_until(lambda: lib.pico_net_udp_relay_count() == 0, what="udp relays to end")
    leaked = _open_fds() - before
    # An fd listed before may have been closed; only new ones are leaks.
    leaked = {fd for fd in leaked if os.path.exists(f"/proc/self/fd/{fd}")}
    assert not leaked, {fd: os.readlink(f"/proc/self/fd/{fd}") for fd in leaked}


@pytest.fixture
def listeners():
    """listeners(addr="127.0.0.1", family=AF_INET, backlog=16) -> listening socket
    on an ephemeral port; closed after the test."""
    made = []

    def make(addr="127.0.0.1", family=socket.AF_INET, backlog=16):
        s = socket.socket(family, socket.SOCK_STREAM)
        made.append(s)
        s.bind((addr, 0))
        s.listen(backlog)
        return s

    yield make
    for s in made:
        s.close()


def _policy(connect=(), listen=(), unix=()) -> NetPolicy:
    return NetPolicy(
        Manifest(
            net_connect=tuple(Endpoint(h, p) for h, p in connect),
            net_listen=tuple(Endpoint(h, p) for h, p in listen),
            unix_paths=tuple(str(u) for u in unix),
        )
    )


def _start(policy: NetPolicy, uri: bytes, flags: int = 0) -> tuple[int, int]:
    rc, fd = policy.start(uri, flags)
    if rc < 0 and rc != -errno.EINPROGRESS:
        assert fd == -1, "a failed start must not hand out an fd"
    return rc, fd


def _refused(policy: NetPolicy, uri: bytes, err: int, flags: int = 0) -> None:
    before = _open_fds()
    rc, _ = _start(policy, uri, flags)
    assert rc == -err, (uri, os.strerror(-rc) if rc < 0 else rc, policy.last_decision())
    assert _open_fds() == before


def _saw_connection(listener: socket.socket, timeout: float = QUIET_S) -> bool:
    poller = select.poll()
    poller.register(listener.fileno(), select.POLLIN)
    return bool(poller.poll(timeout * 1000))


def _accept(listener: socket.socket) -> socket.socket:
    assert _saw_connection(listener, WAIT_S), "the listener never saw the connection"
    conn, _ = listener.accept()
    return conn


def _exchange(fd: int, peer: socket.socket) -> None:
    """Data flows both ways between the monitor-made fd and the peer."""
    with socket.socket(fileno=os.dup(fd)) as mine:
        mine.settimeout(WAIT_S)
        peer.settimeout(WAIT_S)
        mine.sendall(b"ping")
        assert peer.recv(16) == b"ping"
        peer.sendall(b"pong")
        assert mine.recv(16) == b"pong"


def _is_nonblocking(fd: int) -> bool:
    return bool(fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_NONBLOCK)


# ---- tcp: ------------------------------------------------------------------


@pytest.mark.parametrize("flags", [0, os.O_NONBLOCK, os.O_RDWR | os.O_CLOEXEC])
def test_granted_tcp_connect_carries_data(listeners, flags):
    srv = listeners()
    port = srv.getsockname()[1]
    policy = _policy(connect=[("127.0.0.1", port)])
    fd = policy.open(f"tcp:127.0.0.1:{port}", flags)
    try:
        assert _is_nonblocking(fd) == bool(flags & os.O_NONBLOCK)
        assert "granted" in policy.last_decision() or "connected" in policy.last_decision()
        with _accept(srv) as conn:
            if flags & os.O_NONBLOCK:
                select.select([], [fd], [], WAIT_S)
            os.set_blocking(fd, True)
            _exchange(fd, conn)
    finally:
        os.close(fd)


@needs_ipv6
def test_granted_tcp_connect_ipv6(listeners):
    srv = listeners("::1", socket.AF_INET6)
    port = srv.getsockname()[1]
    policy = _policy(connect=[("::1", port)])
    fd = policy.open(f"tcp:[::1]:{port}")
    try:
        with _accept(srv) as conn:
            _exchange(fd, conn)
    finally:
        os.close(fd)


def test_port_zero_grant_means_any_port(listeners):
    srv = listeners()
    port = srv.getsockname()[1]
    fd = _policy(connect=[("127.0.0.1", 0)]).open(f"tcp:127.0.0.1:{port}")
    try:
        with _accept(srv) as conn:
            _exchange(fd, conn)
    finally:
        os.close(fd)


def test_ungranted_port_is_refused_before_any_packet(listeners):
    granted, other = listeners(), listeners()
    policy = _policy(connect=[("127.0.0.1", granted.getsockname()[1])])
    uri = f"tcp:127.0.0.1:{other.getsockname()[1]}".encode()
    _refused(policy, uri, errno.EACCES)
    assert "not granted" in policy.last_decision()
    _refused(policy, b"udp:" + uri[4:], errno.EACCES)
    assert not _saw_connection(other)


def test_ungranted_address_is_refused_before_any_packet(listeners):
    # 127.0.0.2 is loopback too on Linux: same host, different address.
    other = listeners("127.0.0.2")
    port = other.getsockname()[1]
    policy = _policy(connect=[("127.0.0.1", port)])
    _refused(policy, f"tcp:127.0.0.2:{port}".encode(), errno.EACCES)
    _refused(policy, f"tcp:[::ffff:127.0.0.2]:{port}".encode(), errno.EACCES)
    assert not _saw_connection(other)


@pytest.mark.parametrize(
    "host, err",
    [
        ("127.000.000.001", errno.EINVAL),  # leading zeros: inet_pton refuses them
        ("127.1", errno.EINVAL),  # inet_aton shorthand
        ("0x7f.0.0.1", errno.EINVAL),
        ("2130706433", errno.EINVAL),
        ("127.0.0.1.", errno.EINVAL),
        (" 127.0.0.1", errno.EINVAL),
        ("localhost", errno.EINVAL),  # no names: the grant is an address
        ("[127.0.0.1]", errno.EINVAL),  # IPv4 must not be bracketed
        ("[::127.0.0.1]", errno.EACCES),  # IPv4-compatible IPv6: a different address
        ("[::1]", errno.EACCES),
        ("[::ffff:7f00:1]", errno.EACCES),  # 127.0.0.1, mapped: not granted
        ("[::1%lo]", errno.EINVAL),  # zone ids are not supported
        ("[0:0:0:0:0:ffff:127.0.0.1]", errno.EACCES),
    ],
)
def test_address_spellings_cannot_reach_an_ungranted_address(listeners, host, err):
    srv = listeners()
    port = srv.getsockname()[1]
    policy = _policy(connect=[("127.0.0.2", port)])
    _refused(policy, f"tcp:{host}:{port}".encode(), err)
    assert not _saw_connection(srv, 0)


@pytest.mark.parametrize("spelling", ["[::ffff:127.0.0.1]", "[0:0:0:0:0:ffff:7f00:1]"])
def test_v4_mapped_ipv6_is_the_ipv4_address(listeners, spelling):
    """Documented choice: ::ffff:a.b.c.d is a.b.c.d, both in grants and URIs."""
    srv = listeners()
    port = srv.getsockname()[1]
    for grant in ("127.0.0.1", "::ffff:127.0.0.1"):
        fd = _policy(connect=[(grant, port)]).open(f"tcp:{spelling}:{port}")
        try:
            with _accept(srv) as conn:
                _exchange(fd, conn)
        finally:
            os.close(fd)


def test_connect_in_progress_then_finish(listeners):
    """A listener with a full accept queue drops the SYN: the connect stays in
    progress until the queue drains and the SYN is retransmitted."""
    srv = listeners(backlog=0)
    port = srv.getsockname()[1]
    filler = socket.create_connection(("127.0.0.1", port), timeout=WAIT_S)
    policy = _policy(connect=[("127.0.0.1", port)])
    rc, fd = _start(policy, f"tcp:127.0.0.1:{port}".encode())
    try:
        assert rc == -errno.EINPROGRESS and fd >= 0, (rc, policy.last_decision())
        assert _is_nonblocking(fd)
        assert lib.pico_net_finish(fd) == -errno.EINPROGRESS
        first, _ = srv.accept()
        first.close()
        filler.close()
        poller = select.poll()
        poller.register(fd, select.POLLOUT)
        assert poller.poll(WAIT_S * 1000), "the connect never completed"
        assert lib.pico_net_finish(fd) == 0, policy.last_decision()
        assert not _is_nonblocking(fd), "the guest asked for a blocking socket"
        with _accept(srv) as conn:
            _exchange(fd, conn)
    finally:
        os.close(fd)


def test_finish_refuses_an_fd_it_did_not_start():
    r, w = os.pipe()
    try:
        assert lib.pico_net_finish(r) == -errno.EBADF
        assert lib.pico_net_finish(-1) == -errno.EBADF
        assert lib.pico_net_finish(1 << 30) == -errno.EBADF
    finally:
        os.close(r)
        os.close(w)


def test_abandoned_connect_does_not_confuse_a_reused_fd_number(listeners):
    """The loop may close an in-progress socket without finishing it (the
    guest went away); the fd number then names something else."""
    srv = listeners(backlog=0)
    port = srv.getsockname()[1]
    filler = socket.create_connection(("127.0.0.1", port), timeout=WAIT_S)
    policy = _policy(connect=[("127.0.0.1", port)])
    try:
        for _ in range(50):
            rc, fd = _start(policy, f"tcp:127.0.0.1:{port}".encode())
            assert rc == -errno.EINPROGRESS, os.strerror(-rc)
            os.close(fd)
            r, w = os.pipe()
            try:
                assert lib.pico_net_finish(fd if fd in (r, w) else r) == -errno.EBADF
            finally:
                os.close(r)
                os.close(w)
    finally:
        filler.close()


def test_connection_refused():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))  # bound, not listening: the port answers RST
        port = s.getsockname()[1]
        policy = _policy(connect=[("127.0.0.1", port)])
        with pytest.raises(ConnectionRefusedError):
            policy.open(f"tcp:127.0.0.1:{port}")


def test_reset_socket_cannot_be_redirected_by_fastopen(listeners):
    """sendto(MSG_FASTOPEN) connects an unconnected TCP socket to the address
    it names.  The monitor hands over only fully connected sockets, which
    answer EISCONN for ever, even after the peer resets the connection."""
    srv, forbidden = listeners(), listeners()
    port = srv.getsockname()[1]
    fd = _policy(connect=[("127.0.0.1", port)]).open(f"tcp:127.0.0.1:{port}")
    try:
        conn = _accept(srv)
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        conn.close()  # RST
        with socket.socket(fileno=os.dup(fd)) as guest:
            assert select.select([guest], [], [], WAIT_S)[0]
            for _ in range(4):
                with pytest.raises(OSError):
                    guest.sendto(b"x", MSG_FASTOPEN, forbidden.getsockname())
            with pytest.raises(OSError):
                guest.shutdown(socket.SHUT_RDWR)
            with pytest.raises(OSError):
                guest.sendto(b"x", MSG_FASTOPEN, forbidden.getsockname())
        assert not _saw_connection(forbidden)
    finally:
        os.close(fd)


def _sendto_allowed(table, name, args):
    return table.direct_by_name()[name].allows(args)


def test_abi_refuses_msg_fastopen():
    """A guest can shutdown(SHUT_RD) a tcp.srv: listener, which leaves an
    unconnected socket in the host network namespace; sendto/sendmsg with
    MSG_FASTOPEN would connect it anywhere, so the filter refuses the flag."""
    from picoproc.abi.table import load_table

    table = load_table()
    assert not _sendto_allowed(table, "sendto", (3, 0, 1, MSG_FASTOPEN, 0x1000, 16))
    assert not _sendto_allowed(table, "sendmsg", (3, 0x1000, MSG_FASTOPEN, 0, 0, 0))


# ---- tcp.srv: --------------------------------------------------------------


def test_tcp_srv_listens_on_the_granted_address_and_accepts():
    policy = _policy(listen=[("127.0.0.1", 0)])
    fd = policy.open(b"tcp.srv:127.0.0.1:0")
    with socket.socket(fileno=fd) as srv:
        addr, port = srv.getsockname()
        assert addr == "127.0.0.1" and port > 0
        assert srv.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) == 1
        assert srv.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR) == 1
        assert not _is_nonblocking(fd)
        with (
            socket.create_connection(("127.0.0.1", port), timeout=WAIT_S) as client,
            _accept(srv) as conn,
        ):
            _exchange(client.fileno(), conn)


def test_tcp_srv_specific_port_grant():
    with socket.socket() as probe:  # find a free port
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    policy = _policy(listen=[("127.0.0.1", port)])
    _refused(
        policy, f"tcp.srv:127.0.0.1:{port + 1 if port < 65535 else port - 1}".encode(), errno.EACCES
    )
    _refused(policy, b"tcp.srv:127.0.0.1:0", errno.EACCES)  # 0 = any, not granted
    _refused(policy, f"tcp.srv:0.0.0.0:{port}".encode(), errno.EACCES)
    _refused(policy, f"tcp.srv:127.0.0.2:{port}".encode(), errno.EACCES)
    _refused(policy, f"tcp:127.0.0.1:{port}".encode(), errno.EACCES)  # listen is not connect
    fd = policy.open(f"tcp.srv:127.0.0.1:{port}", os.O_NONBLOCK)
    try:
        assert _is_nonblocking(fd)
        # The port is taken now: a second listener is EADDRINUSE, not a crash.
        _refused(policy, f"tcp.srv:127.0.0.1:{port}".encode(), errno.EADDRINUSE)
    finally:
        os.close(fd)


@needs_ipv6
def test_tcp_srv_ipv6_wildcard_is_v6_only():
    fd = _policy(listen=[("::", 0)]).open(b"tcp.srv:[::]:0")
    with socket.socket(fileno=fd) as srv:
        assert srv.family == socket.AF_INET6
        assert srv.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY) == 1


def test_connect_grant_does_not_grant_listen():
    _refused(_policy(connect=[("127.0.0.1", 0)]), b"tcp.srv:127.0.0.1:0", errno.EACCES)


# ---- udp: ------------------------------------------------------------------


@pytest.fixture
def udp_server():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    s.settimeout(WAIT_S)
    yield s
    s.close()


def test_udp_datagrams_flow_both_ways(udp_server):
    port = udp_server.getsockname()[1]
    policy = _policy(connect=[("127.0.0.1", port)])
    fd = policy.open(f"udp:127.0.0.1:{port}")
    try:
        assert lib.pico_net_udp_relay_count() == 1
        with socket.socket(fileno=os.dup(fd)) as guest:
            guest.settimeout(WAIT_S)
            guest.send(b"one")
            guest.send(b"two!")
            data, peer = udp_server.recvfrom(100)
            assert data == b"one"
            assert udp_server.recvfrom(100)[0] == b"two!"  # boundaries kept
            udp_server.sendto(b"reply-1", peer)
            udp_server.sendto(b"r2", peer)
            assert guest.recv(100) == b"reply-1"
            assert guest.recv(100) == b"r2"
    finally:
        os.close(fd)
    _wait_until(lambda: lib.pico_net_udp_relay_count() == 0, what="the relay to end")


def test_udp_edge_datagrams(udp_server):
    """Zero-length datagrams pass both ways; one too big for UDP is dropped
    whole (never truncated) and the relay goes on."""
    port = udp_server.getsockname()[1]
    fd = _policy(connect=[("127.0.0.1", port)]).open(f"udp:127.0.0.1:{port}")
    try:
        with socket.socket(fileno=os.dup(fd)) as guest:
            guest.settimeout(WAIT_S)
            guest.send(b"")
            data, peer = udp_server.recvfrom(100)
            assert data == b""
            udp_server.sendto(b"", peer)
            assert guest.recv(100) == b""
            guest.send(b"x" * 70000)
            guest.send(b"after")
            assert udp_server.recvfrom(100_000)[0] == b"after"
    finally:
        os.close(fd)


@pytest.mark.parametrize("how", ["close", "shutdown"])
def test_udp_datagrams_sent_before_the_end_are_delivered(udp_server, how):
    port = udp_server.getsockname()[1]
    fd = _policy(connect=[("127.0.0.1", port)]).open(f"udp:127.0.0.1:{port}")
    with socket.socket(fileno=fd) as guest:
        for i in range(3):
            guest.send(b"d%d" % i)
        if how == "shutdown":
            # Half-closed: the relay must end, not spin on end-of-file.
            guest.shutdown(socket.SHUT_WR)
            _wait_until(lambda: lib.pico_net_udp_relay_count() == 0, what="the relay to end")
    assert [udp_server.recvfrom(100)[0] for _ in range(3)] == [b"d0", b"d1", b"d2"]


def test_udp_explicit_destination_is_ignored(udp_server, tmp_path):
    """The guest's fd ignores any address given to sendto/sendmsg: a datagram
    aimed elsewhere still goes to the granted peer, never to the other target."""
    port = udp_server.getsockname()[1]
    target = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    target.bind(("127.0.0.1", 0))
    unix_target = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    unix_target.bind(str(tmp_path / "dgram"))
    fd = _policy(connect=[("127.0.0.1", port)]).open(f"udp:127.0.0.1:{port}")
    try:
        # What a hostile guest would do: raw sendto/sendmsg with a sockaddr_in.
        libc = ctypes.CDLL(None, use_errno=True)
        tport = target.getsockname()[1]
        sin = struct.pack(
            "=HH4s8x", socket.AF_INET, socket.htons(tport), socket.inet_aton("127.0.0.1")
        )
        buf = ctypes.create_string_buffer(b"aimed")
        sent = libc.sendto(fd, buf, 5, 0, ctypes.c_char_p(sin), len(sin))
        assert sent == 5, os.strerror(ctypes.get_errno())
        with socket.socket(fileno=os.dup(fd)) as guest:
            guest.sendto(b"by-path", str(tmp_path / "dgram"))
            guest.sendmsg([b"by-msg"], [], 0, str(tmp_path / "dgram"))
        assert udp_server.recvfrom(100)[0] == b"aimed"
        assert udp_server.recvfrom(100)[0] == b"by-path"
        assert udp_server.recvfrom(100)[0] == b"by-msg"
        for s in (target, unix_target):
            assert not select.select([s], [], [], QUIET_S)[0]
    finally:
        os.close(fd)
        target.close()
        unix_target.close()


def test_udp_nonblocking_flag_and_refusals(udp_server):
    port = udp_server.getsockname()[1]
    policy = _policy(connect=[("127.0.0.1", port)])
    fd = policy.open(f"udp:127.0.0.1:{port}", os.O_NONBLOCK)
    try:
        assert _is_nonblocking(fd)
        with pytest.raises(BlockingIOError):
            os.read(fd, 10)
    finally:
        os.close(fd)
    # The relay closes its two fds on its own thread; let it finish so the
    # fd-table checks below see only what the refusals do.
    _wait_until(lambda: lib.pico_net_udp_relay_count() == 0, what="the relay to end")
    _refused(policy, f"udp:127.0.0.1:{port + 1 if port < 65535 else 1}".encode(), errno.EACCES)
    _refused(policy, f"udp:127.0.0.2:{port}".encode(), errno.EACCES)
    assert lib.pico_net_udp_relay_count() == 0


def test_many_udp_relays_end_when_their_guests_close(udp_server):
    port = udp_server.getsockname()[1]
    policy = _policy(connect=[("127.0.0.1", port)])
    fds = [policy.open(f"udp:127.0.0.1:{port}") for _ in range(32)]
    assert lib.pico_net_udp_relay_count() == 32
    for fd in fds:
        os.close(fd)
    _wait_until(lambda: lib.pico_net_udp_relay_count() == 0, what="32 relays to end")


# ---- unix: -----------------------------------------------------------------


@pytest.fixture
def unix_listeners():
    made = []

    def make(path, listen=True):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        made.append(s)
        s.bind(os.fsencode(path))
        if listen:
            s.listen(64)
        return s

    yield make
    for s in made:
        s.close()


def test_unix_exact_grant(tmp_path, unix_listeners):
    srv = unix_listeners(tmp_path / "a.sock")
    sibling = unix_listeners(tmp_path / "a.sock2")
    policy = _policy(unix=[tmp_path / "a.sock"])
    fd = policy.open(f"unix:{tmp_path}/a.sock")
    try:
        assert not _is_nonblocking(fd)
        with _accept(srv) as conn:
            _exchange(fd, conn)
    finally:
        os.close(fd)
    _refused(policy, f"unix:{tmp_path}/a.sock2".encode(), errno.EACCES)
    assert not _saw_connection(sibling, 0)  # a unix connect is queued synchronously


def test_unix_directory_grant_respects_component_boundary(tmp_path, unix_listeners):
    (tmp_path / "socks").mkdir()
    (tmp_path / "socks2").mkdir()
    (tmp_path / "socks" / "sub").mkdir()
    inside = unix_listeners(tmp_path / "socks" / "sub" / "s")
    outside = unix_listeners(tmp_path / "socks2" / "s")
    policy = _policy(unix=[tmp_path / "socks"])
    assert policy.grants[0].addr.endswith("/socks/")
    fd = policy.open(f"unix:{tmp_path}/socks/sub/s", os.O_NONBLOCK)
    try:
        assert _is_nonblocking(fd)
        with _accept(inside) as conn:
            os.set_blocking(fd, True)
            _exchange(fd, conn)
    finally:
        os.close(fd)
    _refused(policy, f"unix:{tmp_path}/socks2/s".encode(), errno.EACCES)
    _refused(policy, f"unix:{tmp_path}/socks".encode(), errno.EACCES)
    _refused(policy, f"unix:{tmp_path}/socks/../socks2/s".encode(), errno.EINVAL)
    _refused(policy, f"unix:{tmp_path}/socks/./sub/s".encode(), errno.EINVAL)
    _refused(policy, f"unix:{tmp_path}/socks//sub/s".encode(), errno.EINVAL)
    _refused(policy, f"unix:{tmp_path}/socks/sub/s/".encode(), errno.EINVAL)
    assert not _saw_connection(outside, 0)


def test_unix_symlinks_are_refused(tmp_path, unix_listeners):
    (tmp_path / "granted").mkdir()
    secret = unix_listeners(tmp_path / "secret.sock")
    os.symlink(tmp_path / "secret.sock", tmp_path / "granted" / "link")
    os.symlink(tmp_path, tmp_path / "granted" / "dirlink")
    policy = _policy(unix=[tmp_path / "granted"])
    _refused(policy, f"unix:{tmp_path}/granted/link".encode(), errno.ELOOP)
    _refused(policy, f"unix:{tmp_path}/granted/dirlink/secret.sock".encode(), errno.ELOOP)
    assert not _saw_connection(secret, 0)


def test_unix_grant_through_a_symlink_is_resolved_once(tmp_path, unix_listeners):
    (tmp_path / "real").mkdir()
    srv = unix_listeners(tmp_path / "real" / "s")
    os.symlink(tmp_path / "real", tmp_path / "alias")
    policy = _policy(unix=[tmp_path / "alias"])
    assert policy.grants[0].addr == f"{os.path.realpath(tmp_path)}/real/"
    # The guest names the resolved path; the symlinked spelling is not granted.
    real = os.path.realpath(tmp_path / "real" / "s")
    fd = policy.open(f"unix:{real}")
    os.close(fd)
    _accept(srv).close()
    _refused(policy, f"unix:{tmp_path}/alias/s".encode(), errno.EACCES)


def test_unix_non_socket_missing_and_not_listening(tmp_path, unix_listeners):
    (tmp_path / "file").write_text("x")
    unix_listeners(tmp_path / "bound", listen=False)
    policy = _policy(unix=[tmp_path])
    _refused(policy, f"unix:{tmp_path}/file".encode(), errno.ECONNREFUSED)
    _refused(policy, f"unix:{tmp_path}/missing".encode(), errno.ENOENT)
    _refused(policy, f"unix:{tmp_path}/bound".encode(), errno.ECONNREFUSED)


def test_unix_non_utf8_name(tmp_path, unix_listeners):
    name = os.fsencode(str(tmp_path)) + b"/s\xff\xfe"
    srv = unix_listeners(name)
    policy = _policy(unix=[tmp_path])
    fd = policy.open(b"unix:" + name)
    os.close(fd)
    _accept(srv).close()
    _refused(_policy(unix=[tmp_path / "other"]), b"unix:" + name, errno.EACCES)
    _refused(policy, b"unix:" + name + b"\x01\x1b[2J", errno.ENOENT)
    assert "\x1b" not in policy.last_decision() and "\\x1b" in policy.last_decision()


def test_unix_full_backlog_is_eagain_not_a_wait(tmp_path, unix_listeners):
    srv = unix_listeners(tmp_path / "s", listen=False)
    srv.listen(0)
    policy = _policy(unix=[tmp_path / "s"])
    held = []
    try:
        for _ in range(64):  # fill the accept queue, whatever its exact size
            rc, fd = _start(policy, f"unix:{tmp_path}/s".encode())
            if rc < 0:
                assert rc == -errno.EAGAIN, os.strerror(-rc)
                break
            held.append(fd)
        else:
            pytest.fail("a backlog-0 listener accepted 64 queued connections")
    finally:
        for fd in held:
            os.close(fd)


@pytest.mark.root
@pytest.mark.slow
def test_unix_symlink_swap_race_never_reaches_the_ungranted_socket(tmp_path, unix_listeners):
    """Another process flips <granted>/s between a hard link to the granted
    socket and a symlink to an ungranted one while the monitor connects, many
    times (a process, not a thread: it must not wait for our GIL)."""
    (tmp_path / "granted").mkdir()
    good = unix_listeners(tmp_path / "granted" / "real")
    secret = unix_listeners(tmp_path / "secret.sock")
    policy = _policy(unix=[tmp_path / "granted"])
    name = tmp_path / "granted" / "s"
    os.link(tmp_path / "granted" / "real", name)
    flipper_code = (
        "import os, sys\n"
        "d, secret = sys.argv[1], sys.argv[2]\n"
        "n = 0\n"
        "while True:\n"
        "    tmp = f'{d}/.t{n}'\n"
        "    n += 1\n"
        "    if n % 2:\n"
        "        os.symlink(secret, tmp)\n"
        "    else:\n"
        "        os.link(f'{d}/real', tmp)\n"
        "    os.replace(tmp, f'{d}/s')\n"
    )
    flipper = subprocess.Popen(
        [
            sys.executable,
            "-c",
            flipper_code,
            str(tmp_path / "granted"),
            str(tmp_path / "secret.sock"),
        ]
    )
    outcomes = {"connected": 0, "eloop": 0}
    deadline = time.monotonic() + 20
    try:
        while sum(outcomes.values()) < 3000 or min(outcomes.values()) < 100:
            assert time.monotonic() < deadline, f"the race was not exercised: {outcomes}"
            assert flipper.poll() is None, "the flipping process died"
            rc, fd = _start(policy, f"unix:{name}".encode())
            if rc >= 0:
                os.close(fd)
                _accept(good).close()  # fails (not hangs) if it went elsewhere
                outcomes["connected"] += 1
            else:
                assert rc == -errno.ELOOP, os.strerror(-rc)
                outcomes["eloop"] += 1
    finally:
        flipper.kill()
        flipper.wait(WAIT_S)
    assert not _saw_connection(secret, 0)


def _in_thread_as(uid: int, gid: int, fn):
    """Runs fn() on a fresh thread whose fsuid/fsgid are uid/gid (as the
    event loop's thread is while it serves a guest) and returns its result.
    Raw syscalls change only that thread; it restores them before ending."""
    libc = ctypes.CDLL(None, use_errno=True)
    SYS_setfsuid, SYS_setfsgid = 122, 123  # x86_64
    result = {}

    def body():
        old_gid = libc.syscall(SYS_setfsgid, gid)
        old_uid = libc.syscall(SYS_setfsuid, uid)
        try:
            result["value"] = fn()
            result["ids"] = (os.getresuid(), os.getresgid())
        except BaseException as exc:  # noqa: BLE001 - re-raised on the test's thread
            result["error"] = exc
        finally:
            result["fs_after"] = (
                libc.syscall(SYS_setfsuid, old_uid),
                libc.syscall(SYS_setfsgid, old_gid),
            )

    t = threading.Thread(target=body)
    t.start()
    t.join(WAIT_S)
    assert not t.is_alive()
    if "error" in result:
        raise result["error"]
    return result


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as another uid")
def test_unix_connect_uses_the_threads_guest_identity():
    """A root monitor must not lend uid 0 to a guest: the server sees the
    guest's uid/gid in SO_PEERCRED, and socket permissions apply to it."""
    nobody = 65534
    top = tempfile.mkdtemp(prefix="picoproc-net-")
    try:
        os.chmod(top, 0o755)
        with socket.socket(socket.AF_UNIX) as open_srv, socket.socket(socket.AF_UNIX) as root_srv:
            open_srv.bind(f"{top}/open")
            os.chmod(f"{top}/open", 0o666)
            open_srv.listen(4)
            root_srv.bind(f"{top}/root-only")
            os.chmod(f"{top}/root-only", 0o600)
            root_srv.listen(4)
            policy = _policy(unix=[top])

            got = _in_thread_as(nobody, nobody, lambda: policy.start(f"unix:{top}/open".encode()))
            rc, fd = got["value"]
            assert rc >= 0, os.strerror(-rc)
            os.close(fd)
            # The thread got its effective ids back, and its fs ids.
            assert got["ids"] == ((0, 0, 0), (0, 0, 0))
            assert got["fs_after"] == (nobody, nobody)
            with _accept(open_srv) as conn:
                _pid, uid, gid = struct.unpack(
                    "3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12)
                )
                assert (uid, gid) == (nobody, nobody)

            got = _in_thread_as(
                nobody, nobody, lambda: policy.start(f"unix:{top}/root-only".encode())
            )
            assert got["value"] == (-errno.EACCES, -1)
            assert got["ids"] == ((0, 0, 0), (0, 0, 0))
            assert not _saw_connection(root_srv, 0)

            # As itself (fsuid == euid) the monitor connects as it is.
            fd = policy.open(f"unix:{top}/root-only")
            os.close(fd)
            with _accept(root_srv) as conn:
                _, uid, _ = struct.unpack(
                    "3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12)
                )
                assert uid == 0
    finally:
        shutil.rmtree(top)


# ---- hostile input ---------------------------------------------------------


@pytest.mark.parametrize(
    "uri, err",
    [
        (b"", errno.EINVAL),
        (b"tcp", errno.EINVAL),
        (b"tcp:", errno.EINVAL),
        (b"tcp:127.0.0.1", errno.EINVAL),
        (b"tcp:127.0.0.1:", errno.EINVAL),
        (b"tcp::80", errno.EINVAL),
        (b"tcp:127.0.0.1:0", errno.EINVAL),  # nothing to connect to on port 0
        (b"tcp:127.0.0.1:65536", errno.EINVAL),
        (b"tcp:127.0.0.1:99999999999999999999", errno.EINVAL),
        (b"tcp:127.0.0.1:-1", errno.EINVAL),
        (b"tcp:127.0.0.1:+80", errno.EINVAL),
        (b"tcp:127.0.0.1:080", errno.EINVAL),
        (b"tcp:127.0.0.1:0x50", errno.EINVAL),
        (b"tcp:127.0.0.1:80 ", errno.EINVAL),
        (b"tcp:127.0.0.1:80:80", errno.EINVAL),
        (b"tcp:[::1", errno.EINVAL),
        (b"tcp:[::1]", errno.EINVAL),
        (b"tcp:[::1]80", errno.EINVAL),
        (b"tcp:[::1]:", errno.EINVAL),
        (b"tcp:[]:80", errno.EINVAL),
        (b"tcp:::1:80", errno.EINVAL),  # IPv6 must be bracketed
        (b"tcp:[" + b"1:" * 40 + b"]:80", errno.EINVAL),
        (b"tcp:127.0.0.1:80\x00", errno.EINVAL),
        (b"tcp:127.0.0.1\x00:80", errno.EINVAL),
        (b"tcp:\xff\xfe:80", errno.EINVAL),
        (b"tcp:127.0.0.1:\xff", errno.EINVAL),
        (b"TCP:127.0.0.1:80", errno.EINVAL),
        (b"ftp:127.0.0.1:21", errno.EINVAL),
        (b"file:/etc/passwd", errno.EINVAL),
        (b"tcp.srv:", errno.EINVAL),
        (b"tcp.srv:127.0.0.1:65536", errno.EINVAL),
        (b"udp:[::1]:", errno.EINVAL),
        (b"unix:", errno.EINVAL),
        (b"unix:relative/path", errno.EINVAL),
        (b"unix:@abstract", errno.EINVAL),
        (b"unix:\x00abstract", errno.EINVAL),
        (b"unix:/", errno.EINVAL),
        (b"unix:/" + b"a" * 300, errno.ENAMETOOLONG),  # component above NAME_MAX
        (b"unix:" + b"/aaaaaaaa" * 460, errno.ENAMETOOLONG),  # above PATH_MAX
        (b"unix:/" + b"a" * 5000, errno.ENAMETOOLONG),  # above max_uri
        (b"tcp:" + b"1" * 5000, errno.ENAMETOOLONG),
    ],
)
def test_hostile_uris_get_the_documented_errno(uri, err):
    policy = _policy(connect=[("127.0.0.1", 0), ("::1", 0)], listen=[("127.0.0.1", 0)], unix=["/"])
    _refused(policy, uri, err)
    text = policy.last_decision()
    assert text and text.isprintable(), text


def test_bad_flags_and_null_arguments():
    policy = _policy(connect=[("127.0.0.1", 0)])
    for flags in (os.O_CREAT, os.O_TRUNC, os.O_DIRECTORY, os.O_PATH, os.O_ACCMODE, -1, 0x40000000):
        _refused(policy, b"tcp:127.0.0.1:80", errno.EINVAL, flags)
    out = ffi.new("int *", 7)
    assert lib.pico_net_start(ffi.NULL, b"tcp:127.0.0.1:80", 16, 0, out) == -errno.EINVAL
    assert out[0] == -1
    assert lib.pico_net_start(policy.handle, ffi.NULL, 16, 0, out) == -errno.EINVAL
    # A length far beyond the buffer is refused before any byte is read.
    assert lib.pico_net_start(policy.handle, b"tcp:", 1 << 62, 0, out) == -errno.ENAMETOOLONG
    assert lib.pico_net_start(policy.handle, b"tcp:1.2.3.4:5", 13, 0, ffi.NULL) == -errno.EACCES


def test_nothing_is_granted_by_default(listeners, tmp_path, unix_listeners):
    srv = listeners()
    unix_listeners(tmp_path / "s")
    policy = _policy()
    port = srv.getsockname()[1]
    for uri in (
        f"tcp:127.0.0.1:{port}",
        f"udp:127.0.0.1:{port}",
        "tcp.srv:127.0.0.1:0",
        f"unix:{tmp_path}/s",
    ):
        _refused(policy, uri.encode(), errno.EACCES)
    assert not _saw_connection(srv)


def test_is_network_uri():
    for uri in (b"tcp:x", b"udp:", b"tcp.srv:", b"unix:/a", b"unixdg:/a", b"unixdg.srv:@", b"unixdg.new:"):
        assert lib.pico_net_is_network_uri(uri, len(uri)) == 1
    for uri in (b"file:/a", b"dir:/", b"tcp", b"unix", b""):
        assert lib.pico_net_is_network_uri(uri, len(uri)) == 0


# ---- the policy built from the manifest ------------------------------------


def test_policy_add_rejects_bad_grants():
    p = ffi.gc(lib.pico_net_policy_new(), lib.pico_net_policy_free)
    assert lib.pico_net_policy_add(p, lib.PICO_NET_TCP_CONNECT, b"127.0.0.1", 80) == 0
    assert lib.pico_net_policy_add(p, lib.PICO_NET_TCP_CONNECT, b"::1", 0) == 0
    bad = [
        (99, b"127.0.0.1", 80),
        (lib.PICO_NET_TCP_CONNECT, b"localhost", 80),
        (lib.PICO_NET_TCP_CONNECT, b"[::1]", 80),
        (lib.PICO_NET_TCP_CONNECT, b"127.0.0.1", 65536),
        (lib.PICO_NET_TCP_CONNECT, b"127.0.0.1", -1),
        (lib.PICO_NET_UNIX, b"relative", 0),
        (lib.PICO_NET_UNIX, b"/a/../b", 0),
        (lib.PICO_NET_UNIX, b"/a/b", 1),
        (lib.PICO_NET_UNIX, b"", 0),
    ]
    for kind, addr, port in bad:
        assert lib.pico_net_policy_add(p, kind, addr, port) == -errno.EINVAL, (kind, addr, port)
    assert lib.pico_net_policy_add(ffi.NULL, lib.PICO_NET_UNIX, b"/a", 0) == -errno.EINVAL


@pytest.mark.parametrize(
    "field, endpoint, message",
    [
        ("net_connect", Endpoint("localhost", 80), "net_connect[0].host"),
        ("net_connect", Endpoint("127.0.0.1", 70000), "net_connect[0].port"),
        ("net_listen", Endpoint("fe80::1%eth0", 0), "net_listen[0].host"),
        ("net_listen", Endpoint("127.0.0.1", True), "net_listen[0].port"),
    ],
)
def test_manifest_errors_name_the_grant(field, endpoint, message):
    with pytest.raises(NetPolicyError, match=message.replace("[", r"\[").replace("]", r"\]")):
        NetPolicy(Manifest(**{field: (endpoint,)}))


def test_manifest_unix_path_must_be_absolute():
    with pytest.raises(NetPolicyError, match=r"unix_paths\[0\]"):
        NetPolicy(Manifest(unix_paths=("run/x.sock",)))


def test_manifest_grants_are_normalised():
    policy = _policy(connect=[("[::1]", 53), ("::ffff:127.0.0.1", 0)], listen=[("0.0.0.0", 8080)])
    assert [(g.kind, g.addr, g.port) for g in policy.grants] == [
        ("tcp", "::1", 53),
        ("udp", "::1", 53),
        ("tcp", "127.0.0.1", 0),
        ("udp", "127.0.0.1", 0),
        ("tcp.srv", "0.0.0.0", 8080),
    ]


def test_policy_close_is_idempotent_and_final():
    policy = _policy(connect=[("127.0.0.1", 0)])
    with policy:
        assert policy.handle != ffi.NULL
    policy.close()
    with pytest.raises(ValueError, match="closed"):
        policy.start(b"tcp:127.0.0.1:80")


# ---- through the monitor's event loop --------------------------------------


@pytest.mark.root
def test_guest_opens_through_the_event_loop(guest_bin, listeners, udp_server):
    """A confined guest (tests/guests/med_fs) issues the mediated open itself;
    the C loop calls this unit and installs the fd in the guest.  The audit
    log records each decision; the ungranted listener sees nothing."""
    from picoproc.monitor import GUEST_SECCOMP_FLAGS, FsPolicy, Monitor
    from picoproc.raw import spawn_raw
    from picoproc.spawn import release, wait_picoprocess

    srv, other = listeners(), listeners()
    port, oport = srv.getsockname()[1], other.getsockname()[1]
    uport = udp_server.getsockname()[1]
    O_NONBLOCK, O_CLOEXEC = os.O_NONBLOCK, os.O_CLOEXEC
    calls = [
        (f"tcp:127.0.0.1:{port}", os.O_RDWR, "open: ok fd=3 getfd=0 getfl=2"),
        (f"tcp:127.0.0.1:{oport}", os.O_RDWR, "open: err 13"),
        ("tcp.srv:127.0.0.1:0", O_NONBLOCK, f"open: ok fd=3 getfd=0 getfl={O_NONBLOCK | 2:o}"),
        (f"udp:127.0.0.1:{uport}", O_CLOEXEC, "open: ok fd=3 getfd=1 getfl=2"),
        ("unix:/run/nothing-granted", 0, "open: err 13"),
        ("tcp:[::1", 0, "open: err 22"),
    ]
    argv = [str(guest_bin / "med_fs")]
    for uri, flags, _ in calls:
        argv += ["open", uri, str(flags)]
    manifest = Manifest(
        net_connect=(Endpoint("127.0.0.1", port), Endpoint("127.0.0.1", uport)),
        net_listen=(Endpoint("127.0.0.1", 0),),
    )
    with (
        Monitor() as mon,
        FsPolicy() as fs,
        NetPolicy(manifest) as net,
        tempfile.TemporaryFile() as out,
        open(os.devnull, "rb") as devnull,
    ):
        g = spawn_raw(
            argv, {}, (devnull.fileno(), out.fileno(), 2), seccomp_flags=GUEST_SECCOMP_FLAGS
        )
        try:
            handle = mon.add_guest(g.listener_fd, g.guest_pid, fs, net)
        finally:
            os.close(g.listener_fd)
        try:
            wait_picoprocess(g, 30)
        except TimeoutError:
            release(g)
            raise
        mon.remove_guest(handle)
        out.seek(0)
        lines = out.read().decode().splitlines()
        records = [r for r in mon.drain_audit() if r["guest"] == handle]
    assert lines == [want for _, _, want in calls]
    assert [(r["uri"], r["decision"], r["errno"]) for r in records] == [
        (calls[0][0], "allow", 0),
        (calls[1][0], "deny", errno.EACCES),
        (calls[2][0], "allow", 0),
        (calls[3][0], "allow", 0),
        (calls[4][0], "deny", errno.EACCES),
        (calls[5][0], "error", errno.EINVAL),
    ]
    _accept(srv).close()
    assert not _saw_connection(other)


# ---- the guest's own network --------------------------------------------------


def _own(policy, uri: bytes):
    """pico_net_start_guest with room for a request: (result, request)."""
    req = ffi.new("struct pico_gn_request *")
    fd = ffi.new("int *", 7)
    rc = lib.pico_net_start_guest(policy.handle if policy else ffi.NULL, uri, len(uri), 0, fd, req)
    if rc == lib.PICO_NET_OWN:
        assert fd[0] == -1
    return rc, req


def _sockaddr(req) -> tuple:
    raw = bytes(ffi.buffer(req.addr, req.addr_len))
    family = int.from_bytes(raw[:2], "little")
    if family == socket.AF_INET:
        return socket.inet_ntop(socket.AF_INET, raw[4:8]), int.from_bytes(raw[2:4], "big")
    if family == socket.AF_INET6:
        return socket.inet_ntop(socket.AF_INET6, raw[8:24]), int.from_bytes(raw[2:4], "big")
    return (raw[2:],)


V6ONLY, REUSEADDR, REUSEPORT = lib.PICO_GN_V6ONLY, lib.PICO_GN_REUSEADDR, lib.PICO_GN_REUSEPORT


@pytest.mark.parametrize(
    "uri, op, domain, type_, options, addr",
    [
        (b"tcp:127.0.0.1:80", lib.PICO_GN_CONNECT, socket.AF_INET, socket.SOCK_STREAM, 0, ("127.0.0.1", 80)),
        (b"tcp:127.8.9.10:80", lib.PICO_GN_CONNECT, socket.AF_INET, socket.SOCK_STREAM, 0, ("127.8.9.10", 80)),
        (b"tcp:[::1]:80", lib.PICO_GN_CONNECT, socket.AF_INET6, socket.SOCK_STREAM, V6ONLY, ("::1", 80)),
        (b"tcp:[::ffff:127.0.0.1]:80", lib.PICO_GN_CONNECT, socket.AF_INET, socket.SOCK_STREAM, 0,
         ("127.0.0.1", 80)),
        (b"tcp:0.0.0.0:80", lib.PICO_GN_CONNECT, socket.AF_INET, socket.SOCK_STREAM, 0, ("0.0.0.0", 80)),
        (b"tcp.srv:127.0.0.1:0?reuseaddr", lib.PICO_GN_LISTEN, socket.AF_INET, socket.SOCK_STREAM,
         REUSEADDR, ("127.0.0.1", 0)),
        (b"tcp.srv:[::]:8080?dualstack,reuseport", lib.PICO_GN_LISTEN, socket.AF_INET6, socket.SOCK_STREAM,
         REUSEPORT, ("::", 8080)),
        (b"udp:127.0.0.1:53", lib.PICO_GN_CONNECT, socket.AF_INET, socket.SOCK_DGRAM, 0, ("127.0.0.1", 53)),
        (b"udp.srv:0.0.0.0:0", lib.PICO_GN_BIND, socket.AF_INET, socket.SOCK_DGRAM, 0, ("0.0.0.0", 0)),
        (b"udp.new:inet", lib.PICO_GN_SOCKET, socket.AF_INET, socket.SOCK_DGRAM, 0, None),
        (b"udp.new:inet6?dualstack", lib.PICO_GN_SOCKET, socket.AF_INET6, socket.SOCK_DGRAM, 0, None),
        (b"tcp.new:inet", lib.PICO_GN_SOCKET, socket.AF_INET, socket.SOCK_STREAM, 0, None),
        (b"tcp.new:inet6?dualstack", lib.PICO_GN_SOCKET, socket.AF_INET6, socket.SOCK_STREAM, 0, None),
        (b"unix:@name", lib.PICO_GN_CONNECT, socket.AF_UNIX, socket.SOCK_STREAM, 0, (b"\0name",)),
        (b"unix.srv:@name", lib.PICO_GN_LISTEN, socket.AF_UNIX, socket.SOCK_STREAM, 0, (b"\0name",)),
        (b"unix.srv:@", lib.PICO_GN_LISTEN, socket.AF_UNIX, socket.SOCK_STREAM, 0, (b"",)),
        (b"unixdg.new:", lib.PICO_GN_SOCKET, socket.AF_UNIX, socket.SOCK_DGRAM, 0, None),
        (b"unixdg.srv:@name", lib.PICO_GN_BIND, socket.AF_UNIX, socket.SOCK_DGRAM, 0, (b"\0name",)),
        (b"unixdg.srv:@", lib.PICO_GN_BIND, socket.AF_UNIX, socket.SOCK_DGRAM, 0, (b"",)),
    ],
)
def test_what_is_not_granted_on_loopback_is_the_guests_own(uri, op, domain, type_, options, addr):
    policy = _policy(connect=[("127.0.0.1", 5432)], listen=[("127.0.0.1", 8080)])
    rc, req = _own(policy, uri)
    assert rc == lib.PICO_NET_OWN, (rc, policy.last_decision())
    assert (req.op, req.domain, req.type, req.options) == (op, domain, type_, options)
    assert (None if req.addr_len == 0 else _sockaddr(req)) == addr
    assert "own network" in policy.last_decision()
    # Without an own network (pico_net_start), the same URI is refused.
    expected = errno.EINVAL if b"@" in uri else errno.EACCES
    _refused(policy, uri, expected)


def _source(req):
    if req.src_len == 0:
        return None
    raw = bytes(ffi.buffer(req.src, req.src_len))
    family = int.from_bytes(raw[:2], "little")
    if family == socket.AF_INET:
        return socket.inet_ntop(socket.AF_INET, raw[4:8]), int.from_bytes(raw[2:4], "big")
    return socket.inet_ntop(socket.AF_INET6, raw[8:24]), int.from_bytes(raw[2:4], "big")


@pytest.mark.parametrize(
    "uri, addr, source",
    [
        (b"tcp:127.0.0.1:80?from=127.0.0.1:4567", ("127.0.0.1", 80), ("127.0.0.1", 4567)),
        (b"tcp:127.0.0.1:80?reuseaddr,from=0.0.0.0:0", ("127.0.0.1", 80), ("0.0.0.0", 0)),
        (b"tcp:[::1]:80?from=[::1]:4567", ("::1", 80), ("::1", 4567)),
        (b"udp:127.0.0.1:53?from=127.0.0.2:5353", ("127.0.0.1", 53), ("127.0.0.2", 5353)),
        # a source that is not the guest's own, or of another family: not used
        (b"tcp:127.0.0.1:80?from=192.0.2.1:4567", ("127.0.0.1", 80), None),
        (b"tcp:127.0.0.1:80?from=[::1]:4567", ("127.0.0.1", 80), None),
    ],
)
def test_a_connect_from_a_bound_address_binds_there_first(uri, addr, source):
    policy = _policy()
    rc, req = _own(policy, uri)
    assert rc == lib.PICO_NET_OWN, (rc, policy.last_decision())
    assert req.op == lib.PICO_GN_CONNECT and _sockaddr(req) == addr
    assert _source(req) == source
    assert bool(req.options & REUSEADDR) == (b"reuseaddr" in uri)


@pytest.mark.parametrize(
    "uri",
    [b"tcp:127.0.0.1:80?from=", b"tcp:127.0.0.1:80?from=127.0.0.1", b"tcp:127.0.0.1:80?from=x:1",
     b"tcp:127.0.0.1:80?from=127.0.0.1:1,reuseaddr", b"tcp.srv:127.0.0.1:0?from=127.0.0.1:1",
     b"tcp:127.0.0.1:80?from=127.0.0.1:70000", b"tcp.new:inet?from=127.0.0.1:1", b"tcp.new:ipx"],
)
def test_a_malformed_source_or_new_socket_is_refused(uri):
    rc, _ = _own(_policy(), uri)
    assert rc == -errno.EINVAL, (uri, rc)


def test_a_granted_loopback_endpoint_is_the_hosts(listeners):
    srv = listeners()
    port = srv.getsockname()[1]
    policy = _policy(connect=[("127.0.0.1", port)], listen=[("127.0.0.1", 0)])
    fd = policy.open(f"tcp:127.0.0.1:{port}")
    try:
        _accept(srv).close()
    finally:
        os.close(fd)
    rc, _ = _own(policy, f"tcp:127.0.0.1:{port + 1}".encode())
    assert rc == lib.PICO_NET_OWN
    # A listen grant: the host's listener, not the guest's own.
    req = ffi.new("struct pico_gn_request *")
    out = ffi.new("int *")
    rc = lib.pico_net_start_guest(policy.handle, b"tcp.srv:127.0.0.1:0", 19, 0, out, req)
    assert rc >= 0, policy.last_decision()
    os.close(rc)


@pytest.mark.parametrize(
    "uri",
    [b"tcp:10.0.0.1:80", b"tcp:[2001:db8::1]:80", b"udp:192.0.2.1:53", b"tcp.srv:192.0.2.1:80",
     b"udp.srv:192.0.2.1:53"],
)
def test_what_is_not_granted_elsewhere_is_refused(uri):
    rc, _ = _own(_policy(), uri)
    assert rc == -errno.EACCES


@pytest.mark.parametrize(
    "uri",
    [b"tcp:127.0.0.1:80?", b"tcp:127.0.0.1:80?,", b"tcp:127.0.0.1:80?reuseport,",
     b"tcp:127.0.0.1:80?REUSEPORT", b"tcp:127.0.0.1:80?reuseport?dualstack", b"tcp:127.0.0.1:80?bogus",
     b"udp.new:", b"udp.new:inet4", b"udp.new:inet?bogus", b"unix:@", b"unix:@" + b"n" * 108,
     b"unix.srv:/tmp/x", b"tcp.srv:?reuseport", b"unixdg.new:x", b"unixdg.srv:@" + b"n" * 108,
     # a path, or a connect, is the loop's to serve, on the caller's own socket
     b"unixdg.srv:/tmp/x?fd=3", b"unixdg:/tmp/x?fd=3", b"unixdg:@name?fd=3"],
)
def test_malformed_own_network_uris_are_einval(uri):
    rc, _ = _own(_policy(), uri)
    assert rc == -errno.EINVAL


def test_own_network_without_a_policy_grants_nothing():
    """The loop may serve a guest with no network policy: nothing is the
    host's, loopback is its own."""
    rc, req = _own(None, b"tcp:127.0.0.1:1")
    assert rc == lib.PICO_NET_OWN and req.op == lib.PICO_GN_CONNECT
    rc, _ = _own(None, b"tcp:192.0.2.1:1")
    assert rc == -errno.EACCES


def test_udp_relays_of_a_run_are_bounded_by_its_open_files(udp_server):
    port = udp_server.getsockname()[1]
    manifest = Manifest(net_connect=(Endpoint("127.0.0.1", port),), limits=Limits(open_files=5))
    fds = []
    with NetPolicy(manifest) as policy:
        try:
            for _ in range(5):
                fds.append(policy.open(f"udp:127.0.0.1:{port}"))
            with pytest.raises(OSError) as exc:
                fds.append(policy.open(f"udp:127.0.0.1:{port}"))
            assert exc.value.errno == errno.EMFILE
            assert lib.pico_net_policy_relays(policy.handle) == 5
            # Another run has its own bound.
            with NetPolicy(manifest) as other:
                os.close(other.open(f"udp:127.0.0.1:{port}"))
        finally:
            for fd in fds:
                os.close(fd)
        _wait_until(lambda: lib.pico_net_policy_relays(policy.handle) == 0, what="relays to end")
        os.close(policy.open(f"udp:127.0.0.1:{port}"))


@pytest.mark.root
def test_guest_own_network_through_the_event_loop(guest_bin, listeners):
    """A confined guest asks for sockets of its own network: the reaper's
    helper makes them in the guest's network namespace and the loop installs
    them; the host's listener on the same loopback port sees nothing."""
    from picoproc.monitor import GUEST_SECCOMP_FLAGS, FsPolicy, Monitor
    from picoproc.raw import spawn_raw
    from picoproc.spawn import release, wait_picoprocess

    host = listeners()
    hport = host.getsockname()[1]
    O_NONBLOCK, O_CLOEXEC = os.O_NONBLOCK, os.O_CLOEXEC
    calls = [
        ("tcp.srv:127.0.0.1:0", O_NONBLOCK, f"open: ok fd=3 getfd=0 getfl={O_NONBLOCK | 2:o}"),
        (f"tcp:127.0.0.1:{hport}", os.O_RDWR, f"open: err {errno.ECONNREFUSED}"),
        ("udp.new:inet", O_CLOEXEC, "open: ok fd=3 getfd=1 getfl=2"),
        ("udp.srv:127.0.0.1:0", 0, "open: ok fd=3 getfd=0 getfl=2"),
        ("unix.srv:@picoproc", 0, "open: ok fd=3 getfd=0 getfl=2"),
        ("unix:@nobody-listens", 0, f"open: err {errno.ECONNREFUSED}"),
        ("tcp:192.0.2.1:80", 0, f"open: err {errno.EACCES}"),
        ("tcp.srv:127.0.0.1:80", 0, f"open: err {errno.EACCES}"),  # a privileged port: as the guest
    ]
    argv = [str(guest_bin / "med_fs")]
    for uri, flags, _ in calls:
        argv += ["open", uri, str(flags)]
    with (
        Monitor() as mon,
        FsPolicy() as fs,
        NetPolicy(Manifest()) as net,
        tempfile.TemporaryFile() as out,
        open(os.devnull, "rb") as devnull,
    ):
        g = spawn_raw(argv, {}, (devnull.fileno(), out.fileno(), 2), seccomp_flags=GUEST_SECCOMP_FLAGS,
                      guestnet=True)
        try:
            handle = mon.add_guest(g.listener_fd, g.guest_pid, fs, net, g.guestnet_fd)
        finally:
            os.close(g.listener_fd)
            os.close(g.guestnet_fd)
        try:
            wait_picoprocess(g, 30)
        except TimeoutError:
            release(g)
            raise
        mon.remove_guest(handle)
        assert mon.counters()["guestnet_pending"] == 0
        out.seek(0)
        lines = out.read().decode().splitlines()
        records = [r for r in mon.drain_audit() if r["guest"] == handle]
    assert lines == [want for _, _, want in calls]
    assert [(r["uri"], r["decision"]) for r in records] == [
        (c[0], "allow" if "ok" in c[2] else "deny" if "192.0.2" in c[0] else "error") for c in calls]
    assert not _saw_connection(host)
