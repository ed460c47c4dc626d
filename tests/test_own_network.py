"""Every picoprocess has a network of its own: its loopback (127.0.0.1 and
::1), where its processes listen and connect to each other with no grant,
as in a container's network namespace -- and never the host's loopback.

Real programs (Python, Go, Node) run inside, as root and with an
unprivileged monitor, and natively as the guest's identity; the outputs must
be equal.  The host's loopback is reached only through a grant.
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
from conftest import assert_same_as_native, native_as_guest

pytestmark = pytest.mark.root

PYTHON = "/usr/bin/python3"


@pytest.fixture(scope="module")
def shared_dir():
    """A host directory every identity may read (programs built for the
    guest live here)."""
    d = tempfile.mkdtemp(prefix="picoproc-net-")
    os.chmod(d, 0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


# ---------------------------------------------------------------------------------------
# Python
# ---------------------------------------------------------------------------------------

HTTP_SERVER_AND_URLLIB = r"""
import http.server, json, os, socket, sys, threading, urllib.request

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({"path": self.path, "client": self.client_address[0]}).encode()
        self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass

# a server thread on port 0
srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
host, port = srv.server_address
threading.Thread(target=srv.serve_forever, daemon=True).start()
with urllib.request.urlopen(f"http://127.0.0.1:{port}/thread") as r:
    print("thread", host, port > 0, r.status, r.read().decode())
srv.shutdown(); srv.server_close()

# a server in a child process, port 0, told to the parent through a pipe
rd, wr = os.pipe()
pid = os.fork()
if pid == 0:
    os.close(rd)
    child = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    os.write(wr, str(child.server_address[1]).encode()); os.close(wr)
    child.handle_request(); os._exit(0)
os.close(wr)
cport = int(os.read(rd, 16)); os.close(rd)
with urllib.request.urlopen(f"http://127.0.0.1:{cport}/child") as r:
    print("child", r.status, r.read().decode())
print("child exit", os.waitpid(pid, 0)[1])

# IPv6 loopback, and a dual-stack listener reached over IPv4
v6 = socket.create_server(("::1", 0), family=socket.AF_INET6)
c6 = socket.create_connection(("::1", v6.getsockname()[1])); a6, peer6 = v6.accept()
print("ipv6", peer6[0], c6.getpeername()[0])
dual = socket.create_server(("::", 0), family=socket.AF_INET6, dualstack_ipv6=True)
c4 = socket.create_connection(("127.0.0.1", dual.getsockname()[1])); a4, peer4 = dual.accept()
print("dualstack", peer4[0])
# a port nothing listens on, and bind/getsockname/listen in that order
free = socket.socket(); free.bind(("127.0.0.1", 0)); fport = free.getsockname()[1]; free.close()
try:
    socket.create_connection(("127.0.0.1", fport), timeout=10)
except OSError as e:
    print("refused", e.errno)
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", 0)); print("bound", s.getsockname()[0], s.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR) != 0)
s.listen(4); c = socket.create_connection(s.getsockname()); conn, _ = s.accept()
c.sendall(b"ping"); print("echo", conn.recv(4))
"""


@pytest.mark.slow
def test_python_http_server_and_urllib_on_loopback(guest_runner):
    r = assert_same_as_native(guest_runner, [PYTHON, "-c", HTTP_SERVER_AND_URLLIB])
    assert "thread 127.0.0.1 True 200" in r.stdout and "child 200" in r.stdout
    # No grant was needed: no socket was refused.  (glibc's look for nscd's
    # unix socket is, outside the guest's view.)
    refused = [a for a in r.audit if a["decision"] == "deny" and a.get("uri", "").startswith(("tcp", "udp"))]
    assert not refused, refused


UDP_ECHO = r"""
import socket
for family, host in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
    srv = socket.socket(family, socket.SOCK_DGRAM); srv.bind((host, 0))
    cli = socket.socket(family, socket.SOCK_DGRAM); cli.settimeout(10); srv.settimeout(10)
    print("unbound", cli.getsockname()[1])
    for msg in (b"ping", b"x" * 1400, b""):
        cli.sendto(msg, srv.getsockname())              # unconnected sendto
        data, peer = srv.recvfrom(2048)
        srv.sendto(data.upper(), peer)
        echo, frm = cli.recvfrom(2048)
        print(family.name, len(echo), echo[:8], frm == srv.getsockname(), peer[0])
    con = socket.socket(family, socket.SOCK_DGRAM); con.settimeout(10)
    con.connect(srv.getsockname()); con.send(b"connected")  # connected send
    data, peer = srv.recvfrom(64); srv.sendto(data, peer); print("connected", con.recv(64))
"""


def test_udp_echo_on_loopback(guest_runner):
    assert_same_as_native(guest_runner, [PYTHON, "-c", UDP_ECHO])


UNIX_SOCKETS = r"""
import os, socket, stat, struct
path = os.path.join(os.environ["TMPDIR"], "srv.sock")
os.umask(0o027)
srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM); srv.bind(path); srv.listen()
st = os.lstat(path)
print("bound", srv.getsockname() == path, stat.S_ISSOCK(st.st_mode), oct(st.st_mode & 0o777),
      st.st_uid == os.getuid())
pid = os.fork()
if pid == 0:
    c = socket.socket(socket.AF_UNIX); c.connect(path)
    c.sendall(b"from the child"); print("child peer", c.getpeername() == path); c.close(); os._exit(0)
conn, addr = srv.accept()
print("server", conn.recv(64), repr(addr), conn.getsockname() == path)
uid = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))[1]
print("peer uid is ours", uid == os.getuid())
os.waitpid(pid, 0)
try:
    socket.socket(socket.AF_UNIX).bind(path)
except OSError as e:
    print("in use", e.errno)
rel = socket.socket(socket.AF_UNIX); os.chdir(os.environ["TMPDIR"]); rel.bind("rel.sock"); rel.listen()
k = socket.socket(socket.AF_UNIX); k.connect("rel.sock"); print("relative", rel.accept()[0] is not None)
os.unlink(path)
try:
    socket.socket(socket.AF_UNIX).connect(path)
except OSError as e:
    print("gone", e.errno)
ab = socket.socket(socket.AF_UNIX); ab.bind("\0picoproc-abstract"); ab.listen()
ac = socket.socket(socket.AF_UNIX); ac.connect("\0picoproc-abstract")
print("abstract", ab.getsockname(), ab.accept()[0] is not None)
"""


def test_unix_socket_server_and_client_in_tmp(guest_runner):
    assert_same_as_native(guest_runner, [PYTHON, "-c", UNIX_SOCKETS])


# ---------------------------------------------------------------------------------------
# Go and Node
# ---------------------------------------------------------------------------------------

GO_PROGRAM = r"""
package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
)

func main() {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Println("listen:", err)
		os.Exit(1)
	}
	go http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello %s from %s", r.URL.Path, r.Method)
	}))
	for _, path := range []string{"/a", "/b"} {
		resp, err := http.Get("http://" + ln.Addr().String() + path)
		if err != nil {
			fmt.Println("get:", err)
			os.Exit(1)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		fmt.Println(resp.StatusCode, string(body))
	}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		fmt.Println("udp:", err)
		os.Exit(1)
	}
	c, _ := net.Dial("udp", pc.LocalAddr().String())
	c.Write([]byte("datagram"))
	buf := make([]byte, 64)
	n, _, _ := pc.ReadFrom(buf)
	fmt.Println("udp", string(buf[:n]))
	six, err := net.Listen("tcp", "[::1]:0")
	fmt.Println("ipv6 listen", err == nil)
	if err == nil {
		six.Close()
	}
}
"""


@pytest.fixture(scope="module")
def go_server(shared_dir):
    """A static Go program (net/http client and server on loopback), built now."""
    go = shutil.which("go")
    if go is None:
        pytest.skip("go is not installed (setup.sh installs golang-go)")
    src = os.path.join(shared_dir, "main.go")
    with open(src, "w") as f:
        f.write(GO_PROGRAM)
    out = os.path.join(shared_dir, "go-http")
    env = dict(os.environ, CGO_ENABLED="0", GO111MODULE="off")
    proc = subprocess.run([go, "build", "-o", out, src], env=env, capture_output=True, text=True,
                          timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    os.chmod(out, 0o755)
    return out


def test_go_net_http_on_loopback(guest_runner, go_server):
    native = native_as_guest([go_server])
    assert native.returncode == 0, native.stderr.decode()
    r = guest_runner([f"/go/{os.path.basename(go_server)}"], volumes=[f"{os.path.dirname(go_server)}:/go"])
    assert r.status == 0, (r.reason, r.stderr, r.unsupported)
    assert r.stdout == native.stdout.decode(), r.stderr
    assert r.stdout.startswith("200 hello /a from GET\n200 hello /b from GET\nudp datagram\n")


NODE_PROGRAM = r"""
const http = require('http');
const net = require('net');
const srv = http.createServer((req, res) => { res.end('hello ' + req.url); });
srv.listen(0, '127.0.0.1', () => {
  const port = srv.address().port;
  http.get({host: '127.0.0.1', port, path: '/node'}, (res) => {
    let body = '';
    res.on('data', (d) => body += d);
    res.on('end', () => {
      console.log(res.statusCode, body, srv.address().address);
      srv.close();
      const echo = net.createServer((s) => s.pipe(s)).listen(0, '::1', () => {
        const c = net.connect(echo.address().port, '::1', () => c.end('over ::1'));
        c.on('data', (d) => { console.log('echo', d.toString()); echo.close(); });
      });
    });
  });
});
"""


def test_node_http_on_loopback(guest_runner):
    node = shutil.which("node") or shutil.which("nodejs")
    if node is None:
        pytest.skip("node is not installed (setup.sh installs nodejs)")
    r = assert_same_as_native(guest_runner, [node, "-e", NODE_PROGRAM])
    assert r.stdout == "200 hello /node 127.0.0.1\necho over ::1\n"


# ---------------------------------------------------------------------------------------
# never the host's loopback
# ---------------------------------------------------------------------------------------

HOST_CLIENT = r"""
import socket, sys
port = int(sys.argv[1])
try:
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
except OSError as e:
    print("refused", e.errno); sys.exit(0)
s.sendall(b"ping"); print("reached", s.recv(16).decode())
"""


@pytest.fixture
def host_service():
    """A TCP echo service on the host's 127.0.0.1 (port 0) that counts the
    connections it saw."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    seen = []
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            ready, _, _ = select.select([listener], [], [], 0.05)
            if not ready:
                continue
            conn, _ = listener.accept()
            seen.append(conn)
            with conn:
                conn.sendall(conn.recv(16).replace(b"ping", b"pong"))

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    yield listener.getsockname()[1], seen
    stop.set()
    t.join(10)
    listener.close()


def test_host_loopback_is_reached_only_through_a_grant(guest_runner, host_service):
    port, seen = host_service
    r = guest_runner([PYTHON, "-c", HOST_CLIENT, str(port)])
    assert (r.status, r.stdout) == (0, f"refused {errno.ECONNREFUSED}\n"), r.stderr
    assert seen == [], "the host's service saw a connection without a grant"
    r = guest_runner([PYTHON, "-c", HOST_CLIENT, str(port)], net_connect=[f"127.0.0.1:{port}"])
    assert (r.status, r.stdout) == (0, "reached pong\n"), r.stderr
    assert len(seen) == 1
    # A grant names one port: the next one is the picoprocess's own again.
    r = guest_runner([PYTHON, "-c", HOST_CLIENT, str(port)], net_connect=[f"127.0.0.1:{port + 1}"])
    assert r.stdout == f"refused {errno.ECONNREFUSED}\n" and len(seen) == 1


SAME_PORT = r"""
import os, socket, sys, time
name, shared = sys.argv[1], sys.argv[2]
srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", 8765)); srv.listen()
open(os.path.join(shared, name), "w").close()
other = os.path.join(shared, "b" if name == "a" else "a")
deadline = time.monotonic() + 30
while not os.path.exists(other):          # both listen on 8765 at once
    if time.monotonic() > deadline:
        print("the other never listened"); sys.exit(1)
    time.sleep(0.01)
c = socket.create_connection(("127.0.0.1", 8765), timeout=10)
conn, _ = srv.accept(); conn.sendall(name.encode())
print(name, "reached", c.recv(8).decode())
open(os.path.join(shared, name + ".done"), "w").close()
while not os.path.exists(other + ".done"):  # stay listening until both have connected
    if time.monotonic() > deadline:
        print("the other never finished"); sys.exit(1)
    time.sleep(0.01)
"""


def test_two_picoprocesses_listen_on_the_same_loopback_port(guest_runner):
    shared = tempfile.mkdtemp(prefix="picoproc-same-port-")
    os.chmod(shared, 0o777)
    try:
        results = {}

        def run(name):
            results[name] = guest_runner([PYTHON, "-c", SAME_PORT, name, "/shared"],
                                         volumes=[f"{shared}:/shared:rw"])

        threads = [threading.Thread(target=run, args=(n,)) for n in "ab"]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert not any(t.is_alive() for t in threads)
        for name in "ab":
            assert (results[name].status, results[name].stdout) == (0, f"{name} reached {name}\n"), \
                results[name].stderr
    finally:
        shutil.rmtree(shared, ignore_errors=True)


# ---------------------------------------------------------------------------------------
# the reaper's socket helper
# ---------------------------------------------------------------------------------------

_REQUEST = struct.Struct("<IiiiiiI128sI128s")


def _helper_call(chan, op, domain, type_, addr=b"", options=0, backlog=8, raw=None, src=b""):
    """One request to the guest's socket helper: (err, fd or -1)."""
    chan.send(raw if raw is not None else
              _REQUEST.pack(7, op, domain, type_, options, backlog, len(addr), addr, len(src), src))
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
            listener.accept()[0].close()
            # A connect from a source address: bound there first.
            with socket.socket() as spare:
                spare.bind(("127.0.0.1", 0))
                free_port = spare.getsockname()[1]  # a port the host's loopback had free
            err, cfd = _helper_call(chan, lib.PICO_GN_CONNECT, socket.AF_INET, socket.SOCK_STREAM,
                                    _sin("127.0.0.1", port), src=_sin("127.0.0.1", free_port))
            assert err in (0, errno.EINPROGRESS)
            with socket.socket(fileno=cfd) as c:
                assert c.getsockname() == ("127.0.0.1", free_port)
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
            # a source address: only for an inet connect, of the socket's family
            dict(op=lib.PICO_GN_LISTEN, domain=socket.AF_INET, type_=socket.SOCK_STREAM,
                 addr=_sin("127.0.0.1", 0), src=_sin("127.0.0.1", 0)),
            dict(op=lib.PICO_GN_CONNECT, domain=socket.AF_INET, type_=socket.SOCK_STREAM,
                 addr=_sin("127.0.0.1", 9), src=struct.pack("<H", socket.AF_INET6) + bytes(26)),
            dict(op=lib.PICO_GN_CONNECT, domain=socket.AF_INET, type_=socket.SOCK_STREAM,
                 addr=_sin("127.0.0.1", 9), src=b"\x02"),
            dict(op=lib.PICO_GN_CONNECT, domain=socket.AF_UNIX, type_=socket.SOCK_STREAM,
                 addr=struct.pack("<H", socket.AF_UNIX) + b"\0name", src=struct.pack("<H", socket.AF_UNIX)),
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


def test_the_guest_has_no_helper_channel(guest_runner):
    from picoproc.native import lib

    # The reaper's fds (the helper's channel, the status pipe, the report
    # channel) are gone once the program runs.
    fds = (lib.PICO_GUESTNET_FD, lib.PICO_STATUS_FD, lib.PICO_REPORT_FD)
    code = ("import os\n"
            f"for fd in {fds!r}:\n"
            "    try:\n"
            "        os.fstat(fd); print(fd, 'open')\n"
            "    except OSError as e:\n"
            "        print(fd, e.errno)\n")
    r = guest_runner([PYTHON, "-c", code])
    assert r.stdout == "".join(f"{fd} 9\n" for fd in fds), r.stderr


# ---------------------------------------------------------------------------------------
# bounded by the guest's limits
# ---------------------------------------------------------------------------------------

MANY_SOCKETS = r"""
import socket, sys
kind = sys.argv[1]
made = []
try:
    for _ in range(200):
        if kind == "udp":
            made.append(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
        elif kind == "relay":
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.connect(("127.0.0.1", int(sys.argv[2])))
            made.append(s)
        else:
            s = socket.socket(); s.bind(("127.0.0.1", 0)); made.append(s)
    print("no limit")
except OSError as e:
    print(kind, "stopped", e.errno, len(made) < 40)
"""


@pytest.mark.parametrize("kind", ["udp", "tcp.srv", "relay"])
def test_sockets_for_a_guest_are_bounded_by_its_open_files(guest_runner, kind):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.bind(("127.0.0.1", 0))
        port = udp.getsockname()[1]
        extra = {"net_connect": [f"127.0.0.1:{port}"]} if kind == "relay" else {}
        r = guest_runner([PYTHON, "-c", MANY_SOCKETS, kind, str(port)], open_files=40, **extra)
    assert (r.status, r.stdout) == (0, f"{kind} stopped {errno.EMFILE} True\n"), r.stderr
    # The monitor is none the worse: the next run gets its sockets.
    r = guest_runner([PYTHON, "-c", "import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); "
                      "s.bind(('127.0.0.1', 0)); print('ok')"])
    assert r.stdout == "ok\n"


# ---------------------------------------------------------------------------------------
# unconnected UDP to granted destinations
# ---------------------------------------------------------------------------------------

def _host_address() -> str | None:
    """A non-loopback IPv4 address of this host, if it has one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.77", 9))  # no packet is sent: only a route is chosen
        except OSError:
            return None
        addr = s.getsockname()[0]
    return None if addr.startswith("127.") else addr


@pytest.fixture
def udp_echo():
    """udp_echo(host) -> (port, datagrams seen): a UDP echo service on the host."""
    made = []

    def start(host):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((host, 0))
        seen = []

        def serve():
            while True:
                try:
                    data, peer = s.recvfrom(2048)
                    seen.append(data)
                    s.sendto(data.upper(), peer)
                except OSError:
                    return  # closed at the end of the test

        t = threading.Thread(target=serve, daemon=True)
        t.start()
        made.append((s, t))
        return s.getsockname()[1], seen

    yield start
    for s, _ in made:
        s.close()


UDP_SENDTO = r"""
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(float(sys.argv[1]))
for arg in sys.argv[2:]:
    host, port = arg.rsplit(":", 1)
    try:
        s.sendto(b"hello " + arg.encode(), (host, int(port)))
    except OSError as e:
        print(arg, "error", e.errno); continue
    try:
        data, frm = s.recvfrom(2048)
        print(arg, data.decode(), frm == (host, int(port)))
    except socket.timeout:
        print(arg, "no answer")
"""


@pytest.mark.slow
def test_unconnected_udp_reaches_granted_destinations_only(guest_runner, udp_echo):
    targets = ["127.0.0.1"] + ([_host_address()] if _host_address() else [])
    granted, seen = [], []
    for host in targets:
        port, got = udp_echo(host)
        granted.append(f"{host}:{port}")
        seen.append(got)
    # Granted: the answers come from the address the guest sent to, as natively.
    r = assert_same_as_native(guest_runner, [PYTHON, "-c", UDP_SENDTO, "10", *granted],
                              net_connect=granted)
    assert r.stdout == "".join(f"{g} HELLO {g.upper()} True\n" for g in granted)
    assert [len(s) for s in seen] == [2] * len(targets)  # the native run's and the guest's
    # Not granted (no grant at all, or another port): nothing reaches the
    # host.  127.0.0.1 is the guest's own loopback, where nothing answers;
    # the guest's own network has no route anywhere else.
    for grants in ([], [f"127.0.0.1:{int(granted[0].rsplit(':', 1)[1]) + 1}"]):
        r = guest_runner([PYTHON, "-c", UDP_SENDTO, "0.5", *granted], net_connect=grants)
        assert r.stdout == "".join(f"{g} no answer\n" if g.startswith("127.") else
                                   f"{g} error {errno.ENETUNREACH}\n" for g in granted), r.stderr
    assert [len(s) for s in seen] == [2] * len(targets)


UDP_MANY_SOURCES = r"""
import socket, sys
answered = 0
for i in range(int(sys.argv[2])):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(0.5)
    s.sendto(b"from source %d" % i, ("127.0.0.1", int(sys.argv[1])))
    try:
        s.recvfrom(64); answered += 1
    except socket.timeout:
        pass
    s.close()
print("answered", answered)
"""


@pytest.mark.slow
def test_udp_proxy_host_sockets_are_bounded_by_open_files(guest_runner, udp_echo):
    """Each guest source address takes a host socket of the monitor's: no
    more at once than the guest may hold open files."""
    port, seen = udp_echo("127.0.0.1")
    r = guest_runner([PYTHON, "-c", UDP_MANY_SOURCES, str(port), "24"], net_connect=[f"127.0.0.1:{port}"],
                     open_files=16)
    assert (r.status, r.stdout) == (0, "answered 16\n"), r.stderr
    assert len(seen) == 16


def test_udp_proxies_end_with_the_run(udp_echo):
    """The relay thread and its sockets go when the run does."""
    from picoproc.api import Sandbox
    from picoproc.manifest import apply_overrides, default_manifest

    port, _ = udp_echo("127.0.0.1")
    manifest = apply_overrides(default_manifest(), net_connect=[f"127.0.0.1:{port}"])
    Sandbox(manifest).run(["/bin/true"], capture=True, timeout=30)  # the shared monitor's threads
    tasks = len(os.listdir("/proc/self/task"))
    fds = len(os.listdir("/proc/self/fd"))
    r = Sandbox(manifest).run([PYTHON, "-c", UDP_SENDTO, "10", f"127.0.0.1:{port}"], capture=True,
                              timeout=30)
    assert r.stdout.decode() == f"127.0.0.1:{port} HELLO 127.0.0.1:{port} True\n"
    assert len(os.listdir("/proc/self/task")) == tasks
    assert len(os.listdir("/proc/self/fd")) == fds
