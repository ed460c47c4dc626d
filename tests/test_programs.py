"""Real, unmodified programs in a picoprocess, their output compared with native.

Each runs through the Python API (``picoproc.api.Sandbox``) with the embedded
default manifest: read-only system directories, hidden secrets, a private
scratch /tmp (the guest's cwd) where the programs write.  Where the output is
deterministic it must equal a native run of the same command in an empty
host directory.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile

import pytest

pytestmark = pytest.mark.root

api = pytest.importorskip("picoproc.api")

GUEST_TIMEOUT = 60.0
BUSYBOX = "/bin/busybox"
ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": "/tmp", "TMPDIR": "/tmp"}


def need(*programs: str) -> None:
    for p in programs:
        if not (os.path.exists(p) or shutil.which(p)):
            pytest.skip(f"{p} is not installed")


def sandboxed(argv: list[str], timeout: float = GUEST_TIMEOUT):
    result = api.Sandbox().run(argv, capture=True, timeout=timeout)
    return result


def native(argv: list[str]) -> subprocess.CompletedProcess:
    """The same command on the host, in an empty directory like the guest's
    scratch cwd."""
    with tempfile.TemporaryDirectory() as d:
        return subprocess.run(argv, cwd=d, env={**ENV, "TMPDIR": d}, capture_output=True, timeout=GUEST_TIMEOUT)


def assert_same_as_native(argv: list[str]):
    r = sandboxed(argv)
    n = native(argv)
    assert r.status == n.returncode, (r.reason, r.stderr, r.unsupported)
    assert r.stdout == n.stdout, (r.stderr, r.unsupported)
    return r


# ---------------------------------------------------------------------------------------
# busybox
# ---------------------------------------------------------------------------------------

BUSYBOX_SCRIPT = r"""
set -e
bb=/bin/busybox
mkdir -p d/e
printf 'pear\napple\nfig\napple\n' > d/fruit
( cd d && echo "sub: $(pwd | $bb sed 's,.*/,,')" )
$bb cat d/fruit | $bb sort | $bb uniq -c | $bb sed 's/^ *//'
$bb grep -c apple d/fruit
$bb awk '{ n += length($0) } END { print "chars", n }' d/fruit
$bb wc -l < d/fruit
echo redirect >> d/fruit; $bb tail -n 1 d/fruit
$bb find d -type f | $bb sort
echo nested > d/e/x
$bb tar -cf t.tar d && $bb gzip -9 t.tar && rm -r d
$bb gunzip t.tar.gz && $bb tar -xf t.tar && $bb cat d/e/x
$bb ls -la d | $bb awk 'NR > 1 { print $1 ~ /^[d-]/, $NF }' | $bb sort
{ echo to-stderr >&2; } 2>/dev/null
echo done | $bb tr a-z A-Z
"""


def test_busybox_shell_text_tools_and_tar_gzip_round_trip():
    need(BUSYBOX)
    r = assert_same_as_native([BUSYBOX, "sh", "-c", BUSYBOX_SCRIPT])
    out = r.stdout.decode()
    assert "2 apple" in out and "nested" in out and out.endswith("DONE\n")
    assert not r.unsupported, r.unsupported


# ---------------------------------------------------------------------------------------
# the system /bin/sh with coreutils
# ---------------------------------------------------------------------------------------

COREUTILS_SCRIPT = r"""
set -e
mkdir -p a/b/c
printf 'data\n' > a/b/c/f
cp a/b/c/f a/copy
cp -r a a2
mv a2/copy a2/moved
rm a/b/c/f
ls a2 | sort
stat -c '%s %F' a2/moved; stat -c '%F' a2/b
du -s --apparent-size --block-size=1 a2/b/c/f | cut -f1
rm -r a a2
ls
echo end
"""


def test_system_sh_with_coreutils():
    need("/bin/sh", "cp", "mv", "rm", "du", "stat")
    r = assert_same_as_native(["/bin/sh", "-c", COREUTILS_SCRIPT])
    assert r.stdout.decode().splitlines()[:3] == ["b", "moved", "5 regular file"]


# A file system whose device minor is 256 or more: the library OS's stat()
# and the kernel's fstat() must encode st_dev alike (new_encode_dev), or cp
# -r, tar and fts see every file "replaced while being copied".  Anonymous
# devices (each tmpfs, so each run's scratch) get the lowest free minor: on
# a busy machine they pass 255.  This process holds enough tmpfs instances
# in a mount namespace of its own that the next one is above.
HIGH_MINOR_RUNNER = r"""
import ctypes, json, os, shutil, sys, tempfile
from picoproc.api import Sandbox
from picoproc.manifest import apply_overrides, default_manifest

CLONE_NEWNS, MS_REC, MS_PRIVATE, MNT_DETACH = 0x20000, 0x4000, 0x40000, 2
libc = ctypes.CDLL(None, use_errno=True)
if libc.unshare(CLONE_NEWNS) or libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None):
    sys.exit("unshare/mount: " + os.strerror(ctypes.get_errno()))
base = tempfile.mkdtemp(prefix="picoproc-minor-")
mounted = []
try:
    for i in range(1100):
        d = os.path.join(base, str(i))
        os.mkdir(d)
        if libc.mount(b"tmpfs", d.encode(), b"tmpfs", 0, b"size=64k,mode=0777"):
            sys.exit("mount: " + os.strerror(ctypes.get_errno()))
        mounted.append(d)
        if os.minor(os.stat(d).st_dev) >= 256:
            break
    m = apply_overrides(default_manifest(), volumes=[d + ":/data:rw"], cwd="/data")
    r = Sandbox(m).run(["/bin/sh", "-c", sys.argv[1]], capture=True, timeout=60)
    print(json.dumps({"minor": os.minor(os.stat(d).st_dev), "status": r.status, "stdout": r.stdout.decode(),
                      "stderr": r.stderr.decode()}))
finally:
    for d in mounted:
        libc.umount2(d.encode(), MNT_DETACH)
    shutil.rmtree(base)
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="holding tmpfs instances needs root in this namespace")
def test_coreutils_on_a_device_with_a_minor_above_255():
    import json
    import sys

    need("/bin/sh", "cp", "mv", "rm", "du", "stat")
    script = COREUTILS_SCRIPT + (
        "echo x > f; python3 -c \"import os; fd = os.open('f', os.O_RDONLY); "
        "print(os.stat('f').st_dev == os.fstat(fd).st_dev, os.lstat('f').st_ino == os.fstat(fd).st_ino)\"\n")
    proc = subprocess.run([sys.executable, "-c", HIGH_MINOR_RUNNER, script], capture_output=True, text=True,
                          timeout=GUEST_TIMEOUT * 2)
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    assert got["minor"] >= 256
    assert got["status"] == 0, got["stderr"]
    assert got["stdout"].splitlines() == ["b", "moved", "5 regular file", "directory", "5", "end", "True True"], \
        got["stderr"]


# ---------------------------------------------------------------------------------------
# python3
# ---------------------------------------------------------------------------------------

PYTHON_CODE = """
import json, sqlite3, hashlib, ssl, subprocess, sys
db = sqlite3.connect(":memory:")
db.execute("create table t (x)")
db.executemany("insert into t values (?)", [(i,) for i in range(10)])
print(json.dumps({"sum": db.execute("select sum(x) from t").fetchone()[0]}))
print(hashlib.sha256(b"picoproc").hexdigest()[:16])
print(ssl.OPENSSL_VERSION.split()[0])
print(subprocess.run(["/bin/sh", "-c", "echo child says hi"], capture_output=True, text=True).stdout, end="")
print(subprocess.check_output([sys.executable, "-c", "print(6 * 7)"], text=True), end="")
"""


def test_python_imports_and_runs_child_processes():
    need("/usr/bin/python3")
    r = assert_same_as_native(["/usr/bin/python3", "-c", PYTHON_CODE])
    assert r.stdout.decode().splitlines()[-2:] == ["child says hi", "42"]


# ---------------------------------------------------------------------------------------
# sqlite3 CLI
# ---------------------------------------------------------------------------------------

SQLITE_SCRIPT = """
set -e
sqlite3 db.sqlite "create table kv (k text primary key, v integer);"
for i in 1 2 3 4 5; do sqlite3 db.sqlite "insert into kv values ('k$i', $i * $i);"; done
sqlite3 db.sqlite "select k, v from kv where v > 4 order by v desc;"
sqlite3 db.sqlite "pragma integrity_check;"
"""


def test_sqlite3_cli_creates_fills_and_queries_a_database():
    need("sqlite3")
    r = assert_same_as_native(["/bin/sh", "-c", SQLITE_SCRIPT])
    assert r.stdout.decode() == "k5|25\nk4|16\nk3|9\nok\n"


# ---------------------------------------------------------------------------------------
# gcc
# ---------------------------------------------------------------------------------------

GCC_SCRIPT = r"""
set -e
cat > hello.c <<'EOF'
#include <stdio.h>
#include <math.h>
int main(void) { printf("compiled inside: %.3f\n", sqrt(2.0)); return 0; }
EOF
gcc -O1 -o hello hello.c -lm
./hello
"""


def test_gcc_compiles_links_and_runs_the_result_inside():
    need("gcc")
    r = assert_same_as_native(["/bin/sh", "-c", GCC_SCRIPT])
    assert r.stdout.decode() == "compiled inside: 1.414\n"


# ---------------------------------------------------------------------------------------
# what must fail, with the audit showing the refusal
# ---------------------------------------------------------------------------------------

def test_secrets_host_writes_and_host_proc_are_refused_and_audited():
    need(BUSYBOX)
    host_pid = os.getpid()
    script = (f"cat /etc/shadow; echo rc=$?; "
              f"echo x > /usr/picoproc-escape; echo rc=$?; "
              f"echo x > /etc/picoproc-escape; echo rc=$?; "
              f"cat /proc/{host_pid}/environ; echo rc=$?; "
              f"cat /proc/1/cmdline; echo rc=$?; "
              f"ls /root; echo rc=$?")
    r = sandboxed([BUSYBOX, "sh", "-c", script])
    codes = [line for line in r.stdout.decode().splitlines() if line.startswith("rc=")]
    # /proc/1 is the guest's own pid 1 (its reaper), which shows nothing:
    # an empty command line.
    assert codes == ["rc=1"] * 4 + ["rc=0", "rc=1"], (codes, r.stderr)
    assert not os.path.exists("/usr/picoproc-escape") and not os.path.exists("/etc/picoproc-escape")
    denied = {(d["call"], d.get("uri") or d.get("path"), d["errno_name"]) for d in r.denials}
    assert ("open", "file:/etc/shadow", "EACCES") in denied, r.denials
    assert any(d["call"] == "open" and (d.get("uri") or "").startswith("file:/usr/picoproc-escape")
               and d["errno_name"] == "EROFS" for d in r.denials), r.denials
    # What the monitor answers under /proc comes from the guest's own pid
    # namespace: the host pid the guest asked for does not exist there.
    asked = [rec for rec in r.audit if f"/proc/{host_pid}/" in (rec.get("uri") or rec.get("path") or "")]
    assert asked and all(rec["errno_name"] == "ENOENT" for rec in asked), asked
    assert f"HOME=" not in r.stdout.decode()


# ---------------------------------------------------------------------------------------
# sockets by address: socket() is a placeholder, connect/listen go to the monitor
# ---------------------------------------------------------------------------------------

SOCKET_CLIENT = """
import socket, sys
s = socket.socket()
s.settimeout(10)
try:
    s.connect(("127.0.0.1", int(sys.argv[1])))
except OSError as e:
    print("REFUSED", e.errno)
    sys.exit(0)
print("peer", s.getpeername()[1] == int(sys.argv[1]))
s.sendall(b"ping")
print("got", s.recv(16).decode())
srv = socket.socket()
srv.bind(("127.0.0.1", 0))
srv.listen()
print("listening", srv.getsockname()[1] > 0)
"""


def test_python_socket_connects_only_where_the_manifest_grants():
    import dataclasses
    import select
    import socket
    import threading

    from picoproc.manifest import Endpoint, default_manifest

    need("/usr/bin/python3")
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]

    def serve():
        conn, _ = listener.accept()
        with conn:
            conn.sendall(conn.recv(16).replace(b"ping", b"pong"))

    server = threading.Thread(target=serve, daemon=True)
    try:
        base = default_manifest()
        # No grant: 127.0.0.1 is the picoprocess's own loopback, where nothing
        # listens on that port (ECONNREFUSED, as in a container), and the
        # host's listener sees no connection at all.
        r = api.Sandbox(base).run(["/usr/bin/python3", "-c", SOCKET_CLIENT, str(port)], capture=True,
                                  timeout=GUEST_TIMEOUT)
        assert (r.status, r.stdout) == (0, b"REFUSED 111\n"), r.stderr
        assert select.select([listener], [], [], 0)[0] == [], "the host's listener was reached"
        assert any(a.get("uri") == f"tcp:127.0.0.1:{port}" and a["errno_name"] == "ECONNREFUSED"
                   for a in r.audit), r.audit
        # Not granted and not loopback: refused by the monitor (EACCES).
        r = api.Sandbox(base).run(["/usr/bin/python3", "-c", SOCKET_CLIENT.replace("127.0.0.1", "192.0.2.1"),
                                   str(port)], capture=True, timeout=GUEST_TIMEOUT)
        assert (r.status, r.stdout) == (0, b"REFUSED 13\n"), r.stderr
        assert any(d["errno_name"] == "EACCES" and "tcp:192.0.2.1" in str(d) for d in r.denials), r.denials
        server.start()
        granted = dataclasses.replace(base, net_connect=(Endpoint("127.0.0.1", port),),
                                      net_listen=(Endpoint("127.0.0.1", 0),))
        r = api.Sandbox(granted).run(["/usr/bin/python3", "-c", SOCKET_CLIENT, str(port)], capture=True,
                                     timeout=GUEST_TIMEOUT)
        assert r.status == 0, r.stderr
        assert r.stdout == b"peer True\ngot pong\nlistening True\n", r.stderr
    finally:
        listener.close()
        server.join(5)
