"""IPC inside a picoprocess: a private /dev/shm (POSIX shared memory, named
semaphores, Python's multiprocessing), memfd_create, and AF_UNIX sockets
bound in writable mounts (the monitor makes the socket file, as the guest,
never outside those mounts).

Each program runs inside (as root and as an unprivileged monitor) and
natively as the guest's identity; the outputs must be equal.
"""

from __future__ import annotations

import errno
import os
import shutil
import socket
import stat
import subprocess
import tempfile
import threading

import psutil
import pytest
from conftest import assert_same_as_native

from picoproc.scratch import default_inodes, make_scratch

pytestmark = pytest.mark.root

PYTHON = "/usr/bin/python3"


# ---------------------------------------------------------------------------------------
# the scratch tmpfs: bytes and inodes
# ---------------------------------------------------------------------------------------

@pytest.mark.unit
def test_a_scratch_tmpfs_bounds_its_inodes():
    """Empty files cost kernel memory that the size does not count: the
    tmpfs refuses the file past its inode bound (ENOSPC), whatever its free
    bytes."""
    with make_scratch(4 << 20, inodes=50) as s:
        made = 0
        with pytest.raises(OSError) as exc:
            for i in range(1000):
                os.close(os.open(f"f{i}", os.O_CREAT | os.O_WRONLY, 0o600, dir_fd=s.dir_fd))
                made += 1
        assert exc.value.errno == errno.ENOSPC
        assert 40 <= made < 50  # the root directory takes one
        assert os.statvfs(f"/proc/self/fd/{s.dir_fd}").f_bfree > 0


@pytest.mark.unit
def test_default_scratch_inodes_follow_the_size():
    assert default_inodes(64 << 20) == 16384
    assert default_inodes(1 << 20) == 1024
    with make_scratch(8 << 20) as s:
        assert os.statvfs(f"/proc/self/fd/{s.dir_fd}").f_files == 2048
    with pytest.raises(ValueError):
        make_scratch(1 << 20, inodes=0)


def test_default_manifest_shm_and_tmp_are_private_and_bounded(guest_runner):
    code = ("import os\n"
            "for d in ('/tmp', '/dev/shm'):\n"
            "    v = os.statvfs(d); print(d, v.f_blocks * v.f_frsize, v.f_files, sorted(os.listdir(d)))\n")
    r = guest_runner([PYTHON, "-c", code])
    assert r.status == 0, r.stderr
    assert r.stdout == (f"/tmp {64 << 20} 16384 []\n"
                        f"/dev/shm {64 << 20} 16384 []\n")


# ---------------------------------------------------------------------------------------
# POSIX shared memory, named semaphores, multiprocessing
# ---------------------------------------------------------------------------------------

SHM_AND_SEMAPHORES = r"""
import ctypes, mmap, os
from multiprocessing import shared_memory
shm = shared_memory.SharedMemory(create=True, size=8192)
shm.buf[:5] = b"hello"
other = shared_memory.SharedMemory(name=shm.name)
print("shm", bytes(other.buf[:5]), other.size >= 8192)
other.close(); shm.close(); shm.unlink()
print("unlinked", not os.path.exists("/dev/shm/" + shm.name.lstrip("/")))
libc = ctypes.CDLL(None, use_errno=True)
libc.sem_open.restype = ctypes.c_void_p
libc.sem_open.argtypes = [ctypes.c_char_p, ctypes.c_int, ctypes.c_uint, ctypes.c_uint]
sem = libc.sem_open(b"/picoproc-test", os.O_CREAT | os.O_EXCL, 0o600, 2)
print("sem_open", sem not in (None, 0xffffffffffffffff) and sem != 0)
val = ctypes.c_int()
libc.sem_wait(ctypes.c_void_p(sem)); libc.sem_getvalue(ctypes.c_void_p(sem), ctypes.byref(val))
print("sem value", val.value)
print("sem file", os.path.exists("/dev/shm/sem.picoproc-test"))
libc.sem_close(ctypes.c_void_p(sem)); print("sem_unlink", libc.sem_unlink(b"/picoproc-test"))
fd = os.open("/dev/shm", os.O_TMPFILE | os.O_RDWR, 0o600)
os.write(fd, b"x" * 10); print("tmpfile", os.fstat(fd).st_size, os.fstat(fd).st_nlink)
"""


def test_posix_shared_memory_and_named_semaphores(guest_runner):
    assert_same_as_native(guest_runner, [PYTHON, "-c", SHM_AND_SEMAPHORES])


MULTIPROCESSING = r"""
import multiprocessing as mp

def square(x):
    return x * x

def produce(q, n):
    for i in range(n):
        q.put(("item", i))
    q.put(None)

def work(shared, lock, i):
    with lock:
        shared[i] = i * 10

if __name__ == "__main__":
    with mp.Pool(3) as pool:
        print("pool", pool.map(square, range(10)), sum(pool.imap_unordered(square, range(100))))
    q = mp.Queue()
    p = mp.Process(target=produce, args=(q, 5)); p.start()
    got = []
    while (item := q.get(timeout=30)) is not None:
        got.append(item)
    p.join(30); print("queue", got, p.exitcode)
    arr, lock = mp.Array("i", 4), mp.Lock()
    procs = [mp.Process(target=work, args=(arr, lock, i)) for i in range(4)]
    for p in procs: p.start()
    for p in procs: p.join(30)
    print("array", list(arr))
    with mp.Manager() as m:
        d, l = m.dict(), m.list([1, 2])
        ps = [mp.Process(target=d.__setitem__, args=(k, k * 2)) for k in range(3)]
        for p in ps: p.start()
        for p in ps: p.join(30)
        l.append(3)
        print("manager", sorted(d.items()), list(l), m.Value("i", 7).value)
"""


def test_multiprocessing_pool_queue_array_manager(guest_runner):
    """Manager serves its proxies over an AF_UNIX socket in a temporary
    directory under /tmp (bind, listen, getsockname, connect)."""
    r = assert_same_as_native(guest_runner, [PYTHON, "-c", MULTIPROCESSING], timeout=120)
    assert "array [0, 10, 20, 30]" in r.stdout
    assert "manager [(0, 0), (1, 2), (2, 4)] [1, 2, 3] 7" in r.stdout


MEMFD = r"""
import mmap, os
fd = os.memfd_create("picoproc", os.MFD_CLOEXEC)
os.write(fd, b"memfd data"); os.ftruncate(fd, 4096)
m = mmap.mmap(fd, 4096)
print(m[:10], os.get_inheritable(fd), os.fstat(fd).st_size, os.fstat(fd).st_nlink)
pid = os.fork()
if pid == 0:
    m[:5] = b"CHILD"; os._exit(0)
os.waitpid(pid, 0); print(m[:10])
fd2 = os.memfd_create("second", 0); print(os.get_inheritable(fd2), fd2 != fd)
for bad in (("x" * 250, 0), ("y", 0x100)):
    try:
        os.memfd_create(*bad)
    except OSError as e:
        print("refused", e.errno)
"""


def test_memfd_create(guest_runner):
    assert_same_as_native(guest_runner, [PYTHON, "-c", MEMFD])


def test_memfd_counts_against_the_shm_tmpfs(guest_runner):
    code = ("import os\n"
            "fd = os.memfd_create('big')\n"
            "try:\n"
            "    for _ in range(8): os.write(fd, b'x' * (1 << 20))\n"
            "    print('ok')\n"
            "except OSError as e:\n"
            "    print('refused', e.errno)\n")
    r = guest_runner([PYTHON, "-c", code], tmpfs=["/dev/shm:4M"])
    assert (r.status, r.stdout) == (0, f"refused {errno.ENOSPC}\n"), r.stderr


def test_unnamed_files_only_where_names_may_be_made(guest_runner):
    """O_TMPFILE makes a file on the host: only in a writable mount, and only
    in the forms open(2) allows."""
    code = ("import os\n"
            "for d, fl in (('/usr', os.O_RDWR), ('/etc', os.O_WRONLY), ('/tmp', os.O_RDONLY),\n"
            "              ('/nonexistent', os.O_RDWR), ('/dev/shm', os.O_RDWR)):\n"
            "    try:\n"
            "        os.close(os.open(d, os.O_TMPFILE | fl, 0o600)); print(d, 'ok')\n"
            "    except OSError as e:\n"
            "        print(d, e.errno)\n")
    r = guest_runner([PYTHON, "-c", code])
    assert r.stdout == (f"/usr {errno.EROFS}\n/etc {errno.EROFS}\n/tmp {errno.EINVAL}\n"
                        f"/nonexistent {errno.EROFS}\n/dev/shm ok\n"), r.stderr



# ---------------------------------------------------------------------------------------
# AF_UNIX names: only in writable mounts, as the guest, never through a trick
# ---------------------------------------------------------------------------------------

UNIX_TRICKS = r"""
import os, socket, sys
def bind(path):
    s = socket.socket(socket.AF_UNIX)
    try:
        s.bind(path); return "bound"
    except OSError as e:
        return e.errno
    finally:
        s.close()
def connect(path):
    s = socket.socket(socket.AF_UNIX)
    try:
        s.connect(path); return "connected"
    except OSError as e:
        return e.errno
    finally:
        s.close()
os.symlink("/usr", "/tmp/to-usr"); os.symlink("/data/secret", "/data/to-secret")
os.symlink("/data", "/tmp/to-data")
for path in ("/usr/x.sock", "/tmp/to-usr/x.sock", "/etc/x.sock", "/nowhere/x.sock",
             "/data/secret/x.sock", "/data/to-secret/x.sock", "/tmp/id_rsa", "/dev/shm/ok.sock",
             "/tmp/to-data/through-a-link.sock", "/data/secret"):
    print("bind", path, bind(path))
for path in ("/ro/host.sock", "/data/host.sock", "/tmp/to-data/host.sock", "/data/secret/host.sock"):
    print("connect", path, connect(path))
"""


@pytest.fixture
def unix_tree():
    """A host directory for a writable mount /data (with a hidden
    /data/secret), and a read-only one /ro; each holds a host listener."""
    root = tempfile.mkdtemp(prefix="picoproc-unix-")
    data, ro = os.path.join(root, "data"), os.path.join(root, "ro")
    os.makedirs(os.path.join(data, "secret"))
    os.mkdir(ro)
    for d in (root, data, os.path.join(data, "secret"), ro):
        os.chmod(d, 0o777)
    listeners = []
    for d in (data, ro, os.path.join(data, "secret")):
        s = socket.socket(socket.AF_UNIX)
        s.bind(os.path.join(d, "host.sock"))
        os.chmod(os.path.join(d, "host.sock"), 0o777)
        s.listen()
        s.setblocking(False)
        listeners.append(s)
    yield data, ro, listeners
    for s in listeners:
        s.close()
    shutil.rmtree(root, ignore_errors=True)


def accepted(listener) -> int:
    n = 0
    try:
        while True:
            listener.accept()[0].close()
            n += 1
    except BlockingIOError:
        return n


def test_unix_names_stay_inside_writable_mounts(guest_runner, unix_tree):
    data, ro, (data_l, ro_l, secret_l) = unix_tree
    r = guest_runner([PYTHON, "-c", UNIX_TRICKS], volumes=[f"{data}:/data:rw", f"{ro}:/ro:ro"],
                     hide=["/data/secret"])
    assert r.status == 0, r.stderr
    E = errno
    assert r.stdout == (
        f"bind /usr/x.sock {E.EROFS}\n"
        f"bind /tmp/to-usr/x.sock {E.EROFS}\n"       # a link into a read-only mount
        f"bind /etc/x.sock {E.EROFS}\n"
        f"bind /nowhere/x.sock {E.ENOENT}\n"         # no such directory (Linux: before EROFS)
        f"bind /data/secret/x.sock {E.EACCES}\n"     # hidden
        f"bind /data/to-secret/x.sock {E.EACCES}\n"  # hidden, through a link
        f"bind /tmp/id_rsa {E.EACCES}\n"             # a hidden name
        "bind /dev/shm/ok.sock bound\n"
        "bind /tmp/to-data/through-a-link.sock bound\n"
        f"bind /data/secret {E.EACCES}\n"
        f"connect /ro/host.sock {E.EACCES}\n"        # a read-only mount does not grant sockets
        "connect /data/host.sock connected\n"        # a writable one is the guest's
        "connect /tmp/to-data/host.sock connected\n"
        f"connect /data/secret/host.sock {E.EACCES}\n"), r.stdout
    assert (accepted(data_l), accepted(ro_l), accepted(secret_l)) == (2, 0, 0)
    made = os.lstat(os.path.join(data, "through-a-link.sock"))
    assert stat.S_ISSOCK(made.st_mode)
    assert made.st_uid == (65534 if os.geteuid() == 0 else os.geteuid())
    assert sorted(os.listdir(os.path.join(data, "secret"))) == ["host.sock"]


SWAP_RACE = r"""
import os, socket, threading, time
os.mkdir("/data/d")
stop = time.monotonic() + 3
def swap():
    while time.monotonic() < stop:
        os.rename("/data/d", "/data/d-real"); os.symlink("/data/secret", "/data/d")
        os.unlink("/data/d"); os.rename("/data/d-real", "/data/d")
t = threading.Thread(target=swap); t.start()
bound = refused = 0
while time.monotonic() < stop:
    s = socket.socket(socket.AF_UNIX)
    try:
        s.bind("/data/d/race.sock"); bound += 1
        os.unlink("/data/d/race.sock")
    except OSError:
        refused += 1
    s.close()
t.join()
print("tries", bound + refused > 10, "some bound", bound > 0)
"""


@pytest.mark.slow
def test_unix_bind_racing_a_symlink_swap_never_lands_in_a_hidden_directory(guest_runner, unix_tree):
    data, ro, _ = unix_tree
    r = guest_runner([PYTHON, "-c", SWAP_RACE], volumes=[f"{data}:/data:rw"], hide=["/data/secret"],
                     timeout=60)
    assert (r.status, r.stdout) == (0, "tries True some bound True\n"), r.stderr
    assert sorted(os.listdir(os.path.join(data, "secret"))) == ["host.sock"]


# ---------------------------------------------------------------------------------------
# AF_UNIX datagram sockets: the same names, the same rules
# ---------------------------------------------------------------------------------------

UNIX_DGRAM_TALK = r"""
import asyncio, errno, logging, logging.handlers, os, socket, tempfile
d = tempfile.mkdtemp()
srv = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
print("unbound", repr(srv.getsockname()))
srv.bind(d + "/srv.sock")
print("bound", srv.getsockname() == d + "/srv.sock")
cli = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
try:
    cli.send(b"x")
except OSError as e:
    print("send unconnected", errno.errorcode[e.errno])
cli.bind(d + "/cli.sock")
cli.connect(d + "/srv.sock")
cli.send(b"one"); cli.send(b"two")
print("recvfrom", srv.recvfrom(100)[0], srv.recv(100))
print("client still bound", cli.getsockname() == d + "/cli.sock")
other = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); other.bind(d + "/other.sock")
cli.connect(d + "/other.sock"); cli.send(b"again")   # a datagram socket connects again
print("reconnected", other.recv(100))
try:
    socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM).connect(d + "/nothing.sock")
except OSError as e:
    print("connect missing", errno.errorcode[e.errno])
# abstract names: bind, sendto (a direct call), connect
name = "\0picoproc-dgram-%d" % os.getpid()
a = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); a.bind(name)
print("abstract name", a.getsockname() == name.encode())
socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM).sendto(b"to abstract", name)
c = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); c.connect(name); c.send(b"connected abstract")
print(a.recv(100), a.recv(100))
# logging to a syslog socket (glibc's syslog(3) and sd_notify do the same)
h = logging.handlers.SysLogHandler(address=d + "/srv.sock")
log = logging.getLogger("dgram"); log.addHandler(h); log.warning("hello syslog")
print("syslog", srv.recv(100))
# asyncio's datagram endpoints on unix sockets
async def main():
    got = asyncio.get_running_loop().create_future()
    class Server(asyncio.DatagramProtocol):
        def datagram_received(self, data, addr):
            got.set_result(data)
    loop = asyncio.get_running_loop()
    st, _ = await loop.create_datagram_endpoint(Server, local_addr=d + "/aio.sock", family=socket.AF_UNIX)
    ct, _ = await loop.create_datagram_endpoint(asyncio.DatagramProtocol, remote_addr=d + "/aio.sock",
                                                family=socket.AF_UNIX)
    ct.sendto(b"via asyncio")
    print("asyncio", await asyncio.wait_for(got, 10))
    ct.close(); st.close()
asyncio.run(main())
print("socket file", sorted(os.listdir(d)))
"""


def test_unix_datagram_sockets_bind_connect_and_talk(guest_runner):
    """socket(AF_UNIX, SOCK_DGRAM), bound at a path or an abstract name,
    connected (again), with logging's SysLogHandler and asyncio's datagram
    endpoints: the same as natively."""
    assert_same_as_native(guest_runner, [PYTHON, "-c", UNIX_DGRAM_TALK])


UNIX_DGRAM_TRICKS = r"""
import os, socket
def bind(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        s.bind(path); return "bound"
    except OSError as e:
        return e.errno
    finally:
        s.close()
def connect(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        s.connect(path); s.send(b"from the guest"); return "sent"
    except OSError as e:
        return e.errno
    finally:
        s.close()
os.symlink("/usr", "/tmp/to-usr"); os.symlink("/data/secret", "/data/to-secret")
os.symlink("/data", "/tmp/to-data")
for path in ("/usr/x.sock", "/tmp/to-usr/x.sock", "/etc/x.sock", "/nowhere/x.sock",
             "/data/secret/x.sock", "/data/to-secret/x.sock", "/tmp/id_rsa", "/dev/shm/ok.sock",
             "/tmp/to-data/through-a-link.sock", "/data/secret", "/data/dgram.sock"):
    print("bind", path, bind(path))
for path in ("/ro/dgram.sock", "/data/dgram.sock", "/tmp/to-data/dgram.sock", "/data/secret/dgram.sock",
             "/data/host.sock"):
    print("connect", path, connect(path))
"""


def _host_dgram_sockets(dirs):
    socks = []
    for d in dirs:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        s.bind(os.path.join(d, "dgram.sock"))
        os.chmod(os.path.join(d, "dgram.sock"), 0o777)
        s.setblocking(False)
        socks.append(s)
    return socks


def _received(sock) -> int:
    n = 0
    try:
        while sock.recv(100) == b"from the guest":
            n += 1
    except BlockingIOError:
        pass
    return n


def test_unix_datagram_names_stay_inside_writable_mounts(guest_runner, unix_tree):
    """A datagram socket is bound only in a writable mount, never in a
    read-only or hidden directory nor through a link into one, and connects
    only to sockets of writable mounts: exactly as a stream one."""
    data, ro, _ = unix_tree
    socks = _host_dgram_sockets([data, ro, os.path.join(data, "secret")])
    try:
        r = guest_runner([PYTHON, "-c", UNIX_DGRAM_TRICKS], volumes=[f"{data}:/data:rw", f"{ro}:/ro:ro"],
                         hide=["/data/secret"])
        assert r.status == 0, r.stderr
        E = errno
        assert r.stdout == (
            f"bind /usr/x.sock {E.EROFS}\n"
            f"bind /tmp/to-usr/x.sock {E.EROFS}\n"
            f"bind /etc/x.sock {E.EROFS}\n"
            f"bind /nowhere/x.sock {E.ENOENT}\n"
            f"bind /data/secret/x.sock {E.EACCES}\n"
            f"bind /data/to-secret/x.sock {E.EACCES}\n"
            f"bind /tmp/id_rsa {E.EACCES}\n"
            "bind /dev/shm/ok.sock bound\n"
            "bind /tmp/to-data/through-a-link.sock bound\n"
            f"bind /data/secret {E.EACCES}\n"
            f"bind /data/dgram.sock {E.EADDRINUSE}\n"
            f"connect /ro/dgram.sock {E.EACCES}\n"
            "connect /data/dgram.sock sent\n"
            "connect /tmp/to-data/dgram.sock sent\n"
            f"connect /data/secret/dgram.sock {E.EACCES}\n"
            f"connect /data/host.sock {E.EPROTOTYPE}\n"), r.stdout
        assert [_received(s) for s in socks] == [2, 0, 0]
        made = os.lstat(os.path.join(data, "through-a-link.sock"))
        assert stat.S_ISSOCK(made.st_mode)
        assert made.st_uid == (65534 if os.geteuid() == 0 else os.geteuid())
        assert sorted(os.listdir(os.path.join(data, "secret"))) == ["dgram.sock", "host.sock"]
    finally:
        for s in socks:
            s.close()


def test_unix_datagram_abstract_names_are_the_guests_own(guest_runner):
    """A guest's datagram socket lives in its own network namespace: a host
    socket at an abstract name receives nothing from a guest sending there
    (sendto is a direct call: the socket's namespace decides), and the name
    the guest binds is not the host's."""
    name = f"\0picoproc-host-dgram-{os.getpid()}"
    host = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    host.bind(name)
    host.setblocking(False)
    code = ("import errno, socket, sys\n"
            "name = sys.argv[1].replace('@', '\\0')\n"
            "s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)\n"
            "for how in ('sendto', 'connect'):\n"
            "    try:\n"
            "        s.sendto(b'x', name) if how == 'sendto' else s.connect(name)\n"
            "        print(how, 'reached')\n"
            "    except OSError as e:\n"
            "        print(how, errno.errorcode[e.errno])\n"
            "mine = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); mine.bind(name)\n"
            "print('bound the same name', mine.getsockname() == name.encode())\n")
    try:
        r = guest_runner([PYTHON, "-c", code, name.replace("\0", "@")])
        assert (r.status, r.stdout) == (0, "sendto ECONNREFUSED\nconnect ECONNREFUSED\n"
                                           "bound the same name True\n"), r.stderr
        with pytest.raises(BlockingIOError):
            host.recv(10)
    finally:
        host.close()


DGRAM_SWAP_RACE = SWAP_RACE.replace("socket.socket(socket.AF_UNIX)",
                                    "socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)")


@pytest.mark.slow
def test_unix_datagram_bind_racing_a_symlink_swap_never_lands_in_a_hidden_directory(guest_runner, unix_tree):
    data, ro, _ = unix_tree
    assert "SOCK_DGRAM" in DGRAM_SWAP_RACE
    r = guest_runner([PYTHON, "-c", DGRAM_SWAP_RACE], volumes=[f"{data}:/data:rw"], hide=["/data/secret"],
                     timeout=60)
    assert (r.status, r.stdout) == (0, "tries True some bound True\n"), r.stderr
    assert sorted(os.listdir(os.path.join(data, "secret"))) == ["host.sock"]


UNIX_DGRAM_MANY = r"""
import os, socket, sys, tempfile
kind = sys.argv[1]
d = tempfile.mkdtemp()
made = []
try:
    for i in range(200):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        made.append(s)
        if kind == "path":
            s.bind(f"{d}/{i}.sock")
        elif kind == "abstract":
            s.bind(f"\\0picoproc-many-{os.getpid()}-{i}")
        elif kind == "connected" and i:
            s.connect(f"{d}/0.sock")
        elif kind == "connected":
            s.bind(f"{d}/0.sock")
    print("no limit")
except OSError as e:
    print(kind, "stopped", e.errno, len(made) < 40)
for s in made[-3:]:
    s.close()
r = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); r.bind(f"{d}/after.sock")
w = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); w.connect(f"{d}/after.sock"); w.send(b"still works")
print(r.recv(100))
"""


@pytest.mark.parametrize("kind", ["unbound", "path", "abstract", "connected"])
def test_unix_datagram_sockets_are_bounded_by_the_guests_open_files(guest_runner, kind):
    """Each datagram socket is an fd of the guest's (the monitor keeps
    nothing for it once answered): the run's open-file limit bounds them,
    EMFILE past it, and what was made before still works."""
    r = guest_runner([PYTHON, "-c", UNIX_DGRAM_MANY, kind], open_files=40)
    assert (r.status, r.stdout) == (0, f"{kind} stopped {errno.EMFILE} True\nb'still works'\n"), r.stderr


# ---------------------------------------------------------------------------------------
# the host's System V objects: out of reach twice over
# ---------------------------------------------------------------------------------------

# Looks System V objects up by key and by id (argv: JSON {"key", "shm", "msg",
# "sem"}) and prints, as JSON, the errno of each lookup (0 when it found the
# object).  Run on the host (the control), in a guest, and inside a guest's
# IPC namespace.
_SYSV_LOOKUP = r"""
import ctypes, json, sys
libc = ctypes.CDLL(None, use_errno=True)
o = json.loads(sys.argv[1])
IPC_STAT = 2
buf = ctypes.create_string_buffer(512)
def err(ret):
    return 0 if ret != -1 else ctypes.get_errno()
out = {
    "shmget": err(libc.shmget(o["key"], 0, 0)),
    "shmctl": err(libc.shmctl(o["shm"], IPC_STAT, buf)),
    "msgget": err(libc.msgget(o["key"], 0)),
    "msgctl": err(libc.msgctl(o["msg"], IPC_STAT, buf)),
    "semget": err(libc.semget(o["key"], 0, 0)),
    "semctl": err(libc.semctl(o["sem"], 0, IPC_STAT, buf)),
}
shmat = libc.shmat
shmat.restype = ctypes.c_void_p
addr = shmat(o["shm"], None, 0)
out["shmat"] = 0 if addr not in (None, ctypes.c_void_p(-1).value) else ctypes.get_errno()
print(json.dumps(out))
"""


@pytest.fixture
def host_sysv_objects():
    """A shared memory segment, a message queue and a semaphore set on the
    host, world-accessible (mode 0666), under one fresh key: what a guest
    must not reach.  Removed afterwards."""
    import ctypes
    import random

    libc = ctypes.CDLL(None, use_errno=True)
    ipc_creat_excl, ipc_rmid = 0o1000 | 0o2000, 0
    for _ in range(100):
        key = random.randrange(0x10000000, 0x7FFFFFFF)
        shm = libc.shmget(key, 4096, ipc_creat_excl | 0o666)
        if shm != -1:
            break
        assert ctypes.get_errno() == errno.EEXIST, os.strerror(ctypes.get_errno())
    else:
        pytest.fail("no free System V key in 100 tries")
    msg = libc.msgget(key, ipc_creat_excl | 0o666)
    sem = libc.semget(key, 1, ipc_creat_excl | 0o666)
    try:
        assert msg != -1 and sem != -1, os.strerror(ctypes.get_errno())
        yield {"key": key, "shm": shm, "msg": msg, "sem": sem}
    finally:
        libc.shmctl(shm, ipc_rmid, None)
        if msg != -1:
            libc.msgctl(msg, ipc_rmid, None)
        if sem != -1:
            libc.semctl(sem, 0, ipc_rmid)


def _sysv_lookup(prefix: list[str], objects: dict) -> dict:
    import json

    proc = subprocess.run([*prefix, PYTHON, "-c", _SYSV_LOOKUP, json.dumps(objects)], capture_output=True,
                          text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_host_system_v_objects_are_not_in_a_guests_ipc_namespace(host_sysv_objects):
    """The guest's IPC namespace is its own: entered from outside (as if the
    library OS and the filter let every System V call through), the host's
    segment, queue and semaphores are found by neither key nor id."""
    from picoproc.api import Sandbox
    from picoproc.manifest import default_manifest

    if os.geteuid() != 0:
        pytest.skip("entering another user namespace's IPC namespace needs root")
    host = _sysv_lookup([], host_sysv_objects)
    assert set(host.values()) == {0}, f"the control lookup on the host failed: {host}"
    in_r, in_w = os.pipe()
    out_r, out_w = os.pipe()
    results = []
    runner = threading.Thread(target=lambda: results.append(Sandbox(default_manifest()).run(
        ["/bin/sh", "-c", "echo up; read x; exit 0"], stdin=in_r, stdout=out_w, timeout=60)))
    runner.start()
    try:
        with os.fdopen(out_r, "rb", buffering=0) as out:
            assert out.readline() == b"up\n"
            mine = os.readlink("/proc/self/ns/ipc")
            guest_pid = next(p.pid for p in psutil.Process().children(recursive=True)
                             if os.readlink(f"/proc/{p.pid}/ns/ipc") != mine)
            inside = _sysv_lookup(["nsenter", f"--ipc=/proc/{guest_pid}/ns/ipc"], host_sysv_objects)
    finally:
        os.close(in_w)
        runner.join(timeout=60)
        os.close(in_r)
        os.close(out_w)
    assert results and results[0].status == 0, results
    assert inside == {"shmget": errno.ENOENT, "shmctl": errno.EINVAL, "shmat": errno.EINVAL,
                      "msgget": errno.ENOENT, "msgctl": errno.EINVAL,
                      "semget": errno.ENOENT, "semctl": errno.EINVAL}


def test_a_guest_reaches_no_host_system_v_object(guest_runner, host_sysv_objects):
    """From inside, every System V call on the host's key or ids fails, and
    the host's segment is attached by nobody afterwards."""
    import ctypes
    import json

    r = guest_runner([PYTHON, "-c", _SYSV_LOOKUP, json.dumps(host_sysv_objects)])
    assert r.status == 0, r.stderr
    seen = json.loads(r.stdout)
    assert set(seen) == {"shmget", "shmctl", "shmat", "msgget", "msgctl", "semget", "semctl"}
    assert 0 not in seen.values(), f"a guest reached a host System V object: {seen}"
    # shm_nattch of the host segment: still nobody attached (struct shmid64_ds on x86-64).
    ds = ctypes.create_string_buffer(512)
    libc = ctypes.CDLL(None, use_errno=True)
    assert libc.shmctl(host_sysv_objects["shm"], 2, ds) == 0
    assert int.from_bytes(ds.raw[88:96], "little") == 0


UNIX_DGRAM_HOSTILE = r"""
import ctypes, errno, os, socket
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
def pico_open(uri):
    r = libc.syscall(ctypes.c_long(4096), ctypes.c_char_p(uri), ctypes.c_long(len(uri)), ctypes.c_long(os.O_RDWR),
                     ctypes.c_long(0o600))
    if r < 0:
        return errno.errorcode[ctypes.get_errno()]
    os.close(r)
    return "fd"
target = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); target.bind("/tmp/target.sock")
stream = socket.socket(socket.AF_UNIX)
r, w = os.pipe()
f = os.open("/tmp/plain", os.O_CREAT | os.O_RDWR, 0o600)
for uri in (b"unixdg:/tmp/target.sock?fd=%d" % stream.fileno(),   # not a datagram socket
            b"unixdg:/tmp/target.sock?fd=%d" % r,                  # not a socket
            b"unixdg.srv:/tmp/made.sock?fd=%d" % f,
            b"unixdg:/tmp/target.sock?fd=999",                     # no such fd
            b"unixdg:/tmp/target.sock?fd=99999999999",
            b"unixdg:/tmp/target.sock?fd=-1", b"unixdg:/tmp/target.sock?fd=", b"unixdg:/tmp/target.sock",
            b"unixdg:/tmp/target.sock?fd=3x", b"unixdg:relative?fd=%d" % target.fileno(),
            b"unixdg.srv:?fd=%d" % target.fileno(), b"unixdg:@?fd=%d" % target.fileno(),
            b"unixdg:/tmp/" + b"a" * 4200 + b"?fd=3"):
    print(uri[:40], pico_open(uri))
print("made", os.path.exists("/tmp/made.sock"))
"""


def test_unix_datagram_uris_with_a_bad_socket_are_refused(guest_runner):
    """The unixdg: schemes act on the caller's own socket, named by its fd:
    an fd that is no datagram socket (or none at all), or a malformed URI,
    is refused with EINVAL or EBADF, and nothing is bound or connected."""
    r = guest_runner([PYTHON, "-c", UNIX_DGRAM_HOSTILE])
    assert r.status == 0, r.stderr
    got = [line.rsplit(" ", 1)[1] for line in r.stdout.splitlines()]
    assert got == ["EINVAL", "EINVAL", "EINVAL", "EBADF", "EINVAL", "EINVAL", "EINVAL", "EINVAL", "EINVAL",
                   "EINVAL", "EINVAL", "EINVAL", "ENAMETOOLONG", "False"], r.stdout


def test_unix_datagram_connect_to_a_granted_host_socket(guest_runner):
    """A host's datagram socket (a syslog daemon's /dev/log) is reached by
    its manifest unix grant, as a stream one is, with the guest's
    credentials; without the grant the guest's view has no such path, and
    the host socket receives nothing."""
    root = tempfile.mkdtemp(prefix="picoproc-dgram-grant-")
    os.chmod(root, 0o755)
    path = os.path.join(root, "log")
    host = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    host.bind(path)
    os.chmod(path, 0o666)
    host.setblocking(False)
    host.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
    code = ("import errno, socket, sys\n"
            "s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)\n"
            "try:\n"
            "    s.connect(sys.argv[1]); s.send(b'<12>from the guest\\0'); print('sent')\n"
            "except OSError as e:\n"
            "    print(errno.errorcode[e.errno])\n")
    try:
        # Not granted: a host path the guest's view does not show.
        r = guest_runner([PYTHON, "-c", code, path])
        assert (r.status, r.stdout) == (0, "ENOENT\n"), r.stderr
        with pytest.raises(BlockingIOError):
            host.recv(100)
        r = guest_runner([PYTHON, "-c", code, path], net_unix=[path])
        assert (r.status, r.stdout) == (0, "sent\n"), r.stderr
        data, anc, _, _ = host.recvmsg(100, socket.CMSG_SPACE(12))
        assert data == b"<12>from the guest\x00"
        creds = [c for c in anc if c[:2] == (socket.SOL_SOCKET, socket.SCM_CREDENTIALS)]
        assert creds, anc
        import struct
        _pid, uid, _gid = struct.unpack("iII", creds[0][2][:12])
        assert uid == (65534 if os.geteuid() == 0 else os.geteuid())
    finally:
        host.close()
        shutil.rmtree(root, ignore_errors=True)
