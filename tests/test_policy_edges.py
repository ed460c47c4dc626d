"""Policy edges: what `hidden`, read-only and `noexec` mean must hold however
the guest reaches a file, and guest sockets take only the options the ABI
table lists.

Each test observes the effect from inside a real program (cat, the dynamic
loader, ctypes, mmap, setsockopt) and fails on a monitor that enforces the
rule by name only.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.root

TIMEOUT = 60


def _tree(root):
    """data/ with a hidden secret directory (a file and a subdirectory in
    it) and a public file, readable by the guest identity."""
    data = root / "data"
    (data / "secret" / "sub").mkdir(parents=True)
    (data / "secret" / "key.txt").write_text("SECRET-KEY\n")
    (data / "secret" / "sub" / "deep.txt").write_text("SECRET-DEEP\n")
    (data / "public.txt").write_text("public\n")
    for d in (root, data, data / "secret", data / "secret" / "sub"):
        d.chmod(0o755)
    for f in data.rglob("*.txt"):
        f.chmod(0o644)
    return data


def _picoproc_in_mount_namespace(picoproc_exe, setup: str, args: list[str]):
    """Runs `picoproc ARGS` as root in a mount namespace of its own, after
    the shell commands ``setup`` (bind mounts the host would have); nothing
    of it is visible outside."""
    script = f"set -e\n{setup}\nexec \"$@\"\n"
    return subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh",
         picoproc_exe, *args],
        capture_output=True, text=True, timeout=TIMEOUT, check=False,
    )


@pytest.mark.skipif(os.geteuid() != 0, reason="bind mounts on the host need root")
def test_hidden_subtree_stays_hidden_through_a_bind_mount_alias(picoproc_exe, tmp_path):
    """The host has the same tree mounted twice (a bind mount), the manifest
    shows both and hides the secret directory under one of them: the files
    under it must stay refused under the other (before: only the hidden
    directory's own inode was refused there, so its files were readable)."""
    data = _tree(tmp_path)
    alias = tmp_path / "alias"
    inner = tmp_path / "inner"  # a bind mount of a directory inside the secret one
    alias.mkdir(mode=0o755)
    inner.mkdir(mode=0o755)
    setup = f"mount --bind {data} {alias}\nmount --bind {data}/secret/sub {inner}"
    reads = ["/alias/secret/key.txt", "/alias/secret/sub/deep.txt", "/alias/secret/../secret/key.txt",
             "/inner/deep.txt", "/alias/public.txt"]
    proc = _picoproc_in_mount_namespace(
        picoproc_exe, setup,
        ["run", "-v", f"{data}:/data", "-v", f"{alias}:/alias", "-v", f"{inner}:/inner",
         "--hide", "/data/secret", "--", "/bin/sh", "-c",
         "for f in " + " ".join(reads) + "; do cat $f 2>/dev/null || echo refused $f; done; "
         "ls /alias/secret >/dev/null 2>&1 || echo refused ls"])
    assert proc.returncode == 0, proc.stderr
    assert "SECRET" not in proc.stdout
    assert proc.stdout.splitlines() == [
        "refused /alias/secret/key.txt", "refused /alias/secret/sub/deep.txt",
        "refused /alias/secret/../secret/key.txt", "refused /inner/deep.txt", "public",
        "refused ls"]


@pytest.mark.skipif(os.geteuid() != 0, reason="bind mounts on the host need root")
def test_a_bind_mount_made_between_two_runs_is_seen_by_the_next_one(tmp_path):
    """The monitor reads its mount table again when it changed (the open
    mountinfo file polls POLLPRI): an alias mounted after a first run of the
    same monitor is an alias for the second."""
    data = _tree(tmp_path)
    alias = tmp_path / "alias"
    alias.mkdir(mode=0o755)
    script = textwrap.dedent(f"""
        import dataclasses, subprocess
        from picoproc.api import Sandbox
        from picoproc.manifest import Mount, default_manifest
        base = default_manifest()
        m = dataclasses.replace(base, mounts=(*base.mounts, Mount("/data", {str(data)!r}),
                                               Mount("/alias", {str(alias)!r})),
                                hidden=(*base.hidden, "/data/secret"))
        sandbox = Sandbox(m)
        argv = ["/bin/sh", "-c", "cat /alias/secret/key.txt 2>&1 || true"]
        first = sandbox.run(argv, capture=True)
        subprocess.run(["mount", "--bind", {str(data)!r}, {str(alias)!r}], check=True)
        second = sandbox.run(argv, capture=True)
        print(first.stdout.hex(), second.stdout.hex())
    """)
    proc = subprocess.run(["unshare", "--mount", "--propagation", "private", sys.executable, "-c", script],
                          capture_output=True, text=True, timeout=TIMEOUT, check=False)
    assert proc.returncode == 0, proc.stderr
    first, second = (bytes.fromhex(x).decode() for x in proc.stdout.split())
    assert "No such file" in first
    assert "Permission denied" in second and "SECRET" not in second


@pytest.mark.unit
def test_mount_table_identity_follows_bind_roots_stacked_mounts_and_escapes():
    from picoproc.mountinfo import HostMounts

    table = HostMounts(
        "1 0 8:1 / / rw - ext4 /dev/sda1 rw\n"
        "2 1 8:1 /srv/data /mnt/al\\040ias rw - ext4 /dev/sda1 rw\n"
        "3 1 0:5 / /mnt/over rw - tmpfs tmpfs rw\n"
        "4 3 8:1 /srv/data/secret /mnt/over rw shared:1 - ext4 /dev/sda1 rw\n"
    )
    assert table.identity("/srv/data/secret/key") == ("8:1", "/srv/data/secret/key")
    assert table.identity("/mnt/al ias/secret/key") == ("8:1", "/srv/data/secret/key")
    assert table.identity("/mnt/al ias") == ("8:1", "/srv/data")
    # /mnt/over: the bind mount on top hides the tmpfs under it.
    assert table.identity("/mnt/over/x") == ("8:1", "/srv/data/secret/x")
    assert HostMounts("").identity("/x") is None


# ---------------------------------------------------------------------------
# noexec and read-only, enforced by the kernel on the fds the monitor hands out

LD_SO = "/lib64/ld-linux-x86-64.so.2"
LIBM = "/usr/lib/x86_64-linux-gnu/libm.so.6"

# What a program can do with files of a no-exec mount besides execve: the
# dynamic loader maps one as a program, dlopen maps a library, mmap asks for
# PROT_EXEC.  Each line says whether the kernel let it.
NOEXEC_PROBE = textwrap.dedent("""
    import ctypes, mmap, os, subprocess, sys
    nx = sys.argv[1]
    p = subprocess.run([sys.argv[2], nx + "/true"], capture_output=True, text=True)
    print("ld.so", p.returncode, "failed to map segment" in p.stderr)
    try:
        ctypes.CDLL(nx + "/libm.so.6")
        print("dlopen ok")
    except OSError as e:
        print("dlopen refused", "failed to map segment" in str(e))
    fd = os.open(nx + "/libm.so.6", os.O_RDONLY)
    try:
        mmap.mmap(fd, 4096, mmap.MAP_PRIVATE, mmap.PROT_READ | mmap.PROT_EXEC)
        print("mmap exec ok")
    except OSError as e:
        print("mmap exec", e.errno)
    mmap.mmap(fd, 4096, mmap.MAP_PRIVATE, mmap.PROT_READ)
    print("mmap read ok")
    f = os.statvfs(nx).f_flag
    print("flags", bool(f & os.ST_NOEXEC), bool(f & os.ST_RDONLY))
""")
NOEXEC_EXPECTED = ["ld.so 127 True", "dlopen refused True", "mmap exec 1", "mmap read ok",
                   "flags True True"]


def _noexec_dir(root):
    nx = root / "nx"
    nx.mkdir(mode=0o755)
    for src in ("/bin/true", LIBM):
        shutil.copy(src, nx)
        (nx / os.path.basename(src)).chmod(0o755)
    return nx


def _noexec_manifest(nx):
    import dataclasses

    from picoproc.manifest import Mount, default_manifest

    base = default_manifest()
    return dataclasses.replace(base, mounts=(*base.mounts, Mount("/nx", str(nx), exec=False)))


@pytest.mark.skipif(not os.path.exists(LD_SO) or not os.path.exists(LIBM), reason="x86-64 glibc layout")
def test_noexec_holds_for_the_loader_dlopen_and_mmap_as_on_linux(tmp_path):
    """The oracle is Linux itself: the same probe, run natively against a
    noexec bind mount of the same directory, must say the same (before: the
    monitor refused execve only, and all three ran the files' code)."""
    from picoproc.api import Sandbox

    nx = _noexec_dir(tmp_path)
    tmp_path.chmod(0o755)
    result = Sandbox(_noexec_manifest(nx)).run(["python3", "-c", NOEXEC_PROBE, "/nx", LD_SO], capture=True, timeout=TIMEOUT)
    assert result.status == 0, result.stderr
    assert result.stdout.decode().splitlines() == NOEXEC_EXPECTED
    if os.geteuid() == 0:
        native = subprocess.run(
            ["unshare", "--mount", "--propagation", "private", "sh", "-c",
             f"mount --bind {nx} {nx} && mount -o remount,bind,ro,noexec {nx} && "
             f"exec python3 -c \"$0\" {nx} {LD_SO}", NOEXEC_PROBE],
            capture_output=True, text=True, timeout=TIMEOUT, check=False)
        assert native.stdout.splitlines() == NOEXEC_EXPECTED, native.stderr


def test_read_only_mounts_are_read_only_in_the_kernel_too():
    """Every fd the guest gets from a read-only mount is on a read-only
    mount (statvfs reads the mount's flags through the monitor's own fd):
    a write the policy check missed would still be refused."""
    from picoproc.api import Sandbox

    probe = ("import os\n"
             "for d in ('/usr', '/etc', '/tmp'):\n"
             "    f = os.statvfs(d).f_flag\n"
             "    print(d, bool(f & os.ST_RDONLY), bool(f & os.ST_NOEXEC), bool(f & os.ST_NOSUID))\n")
    result = Sandbox().run(["python3", "-c", probe], capture=True, timeout=TIMEOUT)
    assert result.stdout.decode().splitlines() == [
        "/usr True False True", "/etc True True True", "/tmp False False True"], result.stderr


@pytest.mark.skipif(not os.path.exists(LD_SO) or not os.path.exists(LIBM), reason="x86-64 glibc layout")
def test_noexec_is_kernel_enforced_for_an_unprivileged_monitor(unpriv_env):
    """An unprivileged monitor cannot make mounts in its own mount
    namespace: a helper in a user namespace makes the detached copy."""
    import tempfile

    root = pathlib.Path(tempfile.mkdtemp(prefix="picoproc-nx-"))
    try:
        root.chmod(0o755)
        nx = _noexec_dir(root)
        script = textwrap.dedent(f"""
            import dataclasses, sys
            from picoproc.api import Sandbox
            from picoproc.manifest import Mount, default_manifest
            base = default_manifest()
            m = dataclasses.replace(base, mounts=(*base.mounts, Mount("/nx", {str(nx)!r}, exec=False)))
            r = Sandbox(m).run(["python3", "-c", sys.argv[1], "/nx", {LD_SO!r}], capture=True)
            sys.stdout.write(r.stdout.decode())
            sys.stderr.write(r.stderr.decode())
        """)
        proc = subprocess.run([*unpriv_env["prefix"], unpriv_env["python"], "-c", script, NOEXEC_PROBE],
                              capture_output=True, text=True, timeout=TIMEOUT, env=unpriv_env["env"],
                              cwd="/", check=False)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.splitlines() == NOEXEC_EXPECTED, proc.stderr
    finally:
        shutil.rmtree(root, ignore_errors=True)


# ---------------------------------------------------------------------------
# Socket options: an allow-list of names in the ABI table

SOCKOPT_PROBE = textwrap.dedent("""
    import ctypes, ctypes.util, os, socket, struct
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    a, b = socket.socketpair()
    # struct sock_fprog {len, filter*}: one instruction, "accept everything".
    insn = (ctypes.c_uint64 * 1)(0x0000ffff00000006)
    prog = struct.pack("HxxxxxxQ", 1, ctypes.addressof(insn))
    def attempt(level, name, value):
        buf = ctypes.create_string_buffer(value)
        r = libc.setsockopt(a.fileno(), level, name, buf, len(value))
        return "ok" if r == 0 else os.strerror(ctypes.get_errno())
    print("SO_ATTACH_FILTER", attempt(socket.SOL_SOCKET, 26, prog))
    print("SO_ATTACH_BPF", attempt(socket.SOL_SOCKET, 50, struct.pack("i", -1)))
    print("SO_MARK", attempt(socket.SOL_SOCKET, 36, struct.pack("i", 1)))
    print("SO_RCVBUF", attempt(socket.SOL_SOCKET, socket.SO_RCVBUF, struct.pack("i", 65536)))
    print("SO_PASSCRED", attempt(socket.SOL_SOCKET, socket.SO_PASSCRED, struct.pack("i", 1)))
    print("type", a.getsockopt(socket.SOL_SOCKET, socket.SO_TYPE) == socket.SOCK_STREAM)
""")


def test_socket_options_outside_the_allow_list_are_refused():
    """setsockopt(SO_ATTACH_FILTER) on a socketpair handed guest BPF to the
    host kernel (the whole SOL_SOCKET level was allowed); now only listed
    names pass the filter, the rest are refused (ENOPROTOOPT) and audited."""
    from picoproc.api import Sandbox

    result = Sandbox().run(["python3", "-c", SOCKOPT_PROBE], capture=True, timeout=TIMEOUT)
    assert result.status == 0, result.stderr
    assert result.stdout.decode().splitlines() == [
        "SO_ATTACH_FILTER Protocol not available", "SO_ATTACH_BPF Protocol not available",
        "SO_MARK Protocol not available", "SO_RCVBUF ok", "SO_PASSCRED ok", "type True"]
    assert "setsockopt" in result.unsupported


@pytest.mark.unit
def test_the_filter_refuses_every_unlisted_socket_option():
    """From the ABI table: (level, name) pairs, nothing else, on the full
    registers (upper-half garbage is refused too)."""
    from picoproc.abi.table import load_table

    table = load_table().direct_by_name()
    for call in ("setsockopt", "getsockopt"):
        d = table[call]
        assert d.allows((3, 1, 2, 0, 4, 0))  # SOL_SOCKET, SO_REUSEADDR
        assert d.allows((3, 6, 1, 0, 4, 0))  # IPPROTO_TCP, TCP_NODELAY
        # IPPROTO_IPV6 traps: the library OS records IPV6_V6ONLY itself.
        assert not d.allows((3, 41, 26, 0, 4, 0))
        for level, name in ((1, 26), (1, 50), (1, 51), (1, 52), (1, 44), (1, 25), (1, 36), (6, 31),
                            (6, 13), (0, 64), (41, 64), (0, 83), (0, 35), (270, 1)):
            assert not d.allows((3, level, name, 0, 4, 0)), (call, level, name)
        assert not d.allows((3, 1 | (1 << 32), 2, 0, 4, 0))
        assert not d.allows((3, 1, 2 | (1 << 32), 0, 4, 0))
    # In words, with the names the table gives (6 is SO_BROADCAST as an
    # optname, IPPROTO_TCP as a level).
    from picoproc.abi.describe import rules_in_words

    words = rules_in_words(table["setsockopt"], load_table())
    assert words.startswith("level is SOL_SOCKET and optname is one of SO_REUSEADDR, SO_TYPE, ")
    assert "SO_BROADCAST" in words and "SO_ATTACH_FILTER" not in words
    assert "; or level is IPPROTO_TCP and optname is one of TCP_NODELAY, " in words


# What a real runtime's own networking code sets (listeners, connects,
# keep-alive, no-delay, dual-stack), traced natively: every (level, name) it
# uses must be on the allow-list, or the runtime would fail inside.
RUNTIME_PROGRAMS = {
    "python": ("py", textwrap.dedent("""
        import asyncio, socket
        async def main():
            async def handle(r, w):
                w.write(await r.readline()); await w.drain(); w.close()
            srv = await asyncio.start_server(handle, "127.0.0.1", 0)
            r, w = await asyncio.open_connection(*srv.sockets[0].getsockname())
            w.write(b"hi\\n"); await w.drain(); print((await r.readline()).decode().strip())
            w.close(); srv.close()
        asyncio.run(main())
        s = socket.create_server(("127.0.0.1", 0))
        c = socket.create_connection(s.getsockname()); a, _ = s.accept()
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        c.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        c.sendall(b"x"); print(a.recv(1).decode())
    """)),
    "go": ("go", textwrap.dedent("""
        package main
        import ("bufio"; "fmt"; "net")
        func main() {
            ln, err := net.Listen("tcp", "127.0.0.1:0"); if err != nil { panic(err) }
            go func() { c, _ := ln.Accept(); l, _ := bufio.NewReader(c).ReadString('\\n'); c.Write([]byte(l)); c.Close() }()
            c, err := net.Dial("tcp", ln.Addr().String()); if err != nil { panic(err) }
            c.Write([]byte("hi\\n")); l, _ := bufio.NewReader(c).ReadString('\\n'); fmt.Print(l); c.Close()
            fmt.Println("x")
        }
    """)),
    "node": ("js", textwrap.dedent("""
        const net = require('net');
        const srv = net.createServer(s => s.on('data', d => s.end(d))).listen(0, '127.0.0.1', () => {
          const c = net.connect(srv.address().port, '127.0.0.1', () => c.write('hi\\n'));
          c.setNoDelay(true); c.setKeepAlive(true, 1000);
          c.on('data', d => { console.log(d.toString().trim()); console.log('x'); c.end(); srv.close(); });
        });
    """)),
    "java": ("java", textwrap.dedent("""
        import java.io.*; import java.net.*;
        public class Net { public static void main(String[] a) throws Exception {
          ServerSocket s = new ServerSocket(0, 50, InetAddress.getByName("127.0.0.1"));
          Thread t = new Thread(() -> { try { Socket c = s.accept();
             BufferedReader r = new BufferedReader(new InputStreamReader(c.getInputStream()));
             c.getOutputStream().write((r.readLine() + "\\n").getBytes()); c.close(); }
             catch (Exception e) { throw new RuntimeException(e); } });
          t.start();
          Socket c = new Socket(); c.setTcpNoDelay(true); c.setKeepAlive(true); c.setSoTimeout(5000);
          c.connect(new InetSocketAddress("127.0.0.1", s.getLocalPort()));
          c.getOutputStream().write("hi\\n".getBytes());
          System.out.println(new BufferedReader(new InputStreamReader(c.getInputStream())).readLine());
          System.out.println("x"); c.close(); t.join(); s.close();
        }}
    """)),
}


def _runtime_command(name: str, directory: pathlib.Path) -> list[str]:
    """The command running RUNTIME_PROGRAMS[name] (built into ``directory``)."""
    ext, source = RUNTIME_PROGRAMS[name]
    tool = {"python": "python3", "go": "go", "node": "node", "java": "java"}[name]
    if shutil.which(tool) is None:
        pytest.skip(f"{tool} is not installed")
    path = directory / ("Net.java" if name == "java" else f"net.{ext}")
    path.write_text(source)
    if name == "go":
        env = {**os.environ, "GOCACHE": str(directory / "gocache"), "GOPATH": str(directory / "gopath"),
               "GOFLAGS": "-mod=mod", "CGO_ENABLED": "0"}
        subprocess.run(["go", "build", "-o", str(directory / "net_go"), str(path)], env=env,
                       check=True, capture_output=True, timeout=300)
        return [str(directory / "net_go")]
    return {"python": ["python3", str(path)], "node": ["node", str(path)],
            "java": ["java", str(path)]}[name]


@pytest.mark.parametrize("runtime", sorted(RUNTIME_PROGRAMS))
def test_the_socket_options_real_runtimes_set_are_on_the_allow_list(runtime, tmp_path):
    from picoproc.abi.table import load_table

    if shutil.which("strace") is None:
        pytest.skip("strace is not installed")
    command = _runtime_command(runtime, tmp_path)
    trace = tmp_path / "trace"
    proc = subprocess.run(["strace", "-f", "-qq", "-o", str(trace), "-e", "trace=setsockopt,getsockopt",
                           "-e", "raw=setsockopt,getsockopt", *command],
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["hi", "x"]
    used = set()
    for line in trace.read_text().splitlines():
        call, _, rest = line.partition("(")
        call = call.split()[-1] if call.split() else ""
        if call in ("setsockopt", "getsockopt"):
            args = [a.strip() for a in rest.split(",")]
            used.add((call, int(args[1], 0), int(args[2], 0)))
    assert used, "the runtime set no socket option at all: the trace is wrong"
    # The filter lets SOL_SOCKET and IPPROTO_TCP through by name and refuses
    # the other names of those levels; other levels trap to the library OS.
    table = load_table().direct_by_name()
    refused = sorted(u for u in used if u[1] in (1, 6) and not table[u[0]].allows((3, u[1], u[2], 0, 4, 0)))
    assert refused == [], f"{runtime} uses socket options the filter refuses: {refused}"


@pytest.mark.parametrize("runtime", ["python", "go"])
def test_runtimes_networking_runs_the_same_under_the_allow_list(runtime, tmp_path):
    """The same programs in a picoprocess (with loopback granted) print
    what they print natively.  (Node's connect and Java's start-up fail in
    the library OS for reasons of their own, before any option is set.)"""
    import dataclasses

    from picoproc.api import Sandbox
    from picoproc.manifest import Endpoint, Mount, default_manifest

    command = _runtime_command(runtime, tmp_path)
    for p in [tmp_path, *tmp_path.iterdir()]:
        p.chmod(0o755)
    guest = [c.replace(str(tmp_path), "/prog") for c in command]
    base = default_manifest()
    m = dataclasses.replace(base, mounts=(*base.mounts, Mount("/prog", str(tmp_path))),
                            net_connect=(Endpoint("127.0.0.1", 0),), net_listen=(Endpoint("127.0.0.1", 0),))
    result = Sandbox(m).run(guest, capture=True, timeout=TIMEOUT)
    assert result.status == 0, result.stderr
    assert result.stdout.decode().splitlines() == ["hi", "x"]
