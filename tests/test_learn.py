"""picoproc trace and picoproc learn, on real programs.

For each program (a python3 script reading a config and writing output, a
shell build of a small C project with gcc, make where it works, sqlite3 on
a database file, a client of a TCP server on the host): ``learn`` writes a
manifest; ``picoproc run --manifest`` with it reproduces the run, with the
native run's output as the oracle; and runs that stray outside it (a file,
a directory or an endpoint the learning run did not use) are refused, with
the summary naming the rule.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import tomllib

import pytest
from picoproc.manifest import load_manifest

pytestmark = pytest.mark.root

TIMEOUT = 120


@pytest.fixture
def work(tmp_path):
    """A directory every guest identity may use (the guest may run as nobody)."""
    tmp_path.chmod(0o777)
    return tmp_path


def _tree_open(path):
    for dirpath, dirnames, filenames in os.walk(path):
        os.chmod(dirpath, 0o777)
        for f in filenames:
            p = os.path.join(dirpath, f)
            os.chmod(p, 0o777 if os.access(p, os.X_OK) else 0o666)


def learn(run_picoproc, out, *args):
    proc = run_picoproc("learn", "-o", str(out), *args, timeout=TIMEOUT)
    assert proc.returncode == 0, proc.stderr
    text = out.read_text()
    return proc, text, tomllib.loads(text)


def run_with(run_picoproc, manifest_path, *args, json_path=None):
    extra = ["--json", str(json_path)] if json_path else []
    proc = run_picoproc("run", "--manifest", str(manifest_path), *extra, *args, timeout=TIMEOUT)
    doc = json.loads(json_path.read_text()) if json_path else None
    return proc, doc


def mounts_of(doc) -> dict[str, dict]:
    return {m["guest"]: m for m in doc.get("mount", [])}


def rules(doc) -> dict[str, str]:
    return {d["target"]: d["rule"] for d in doc["denial_summary"]}


def assert_refused(run_picoproc, manifest_path, tmp, cmd, target, rule):
    proc, doc = run_with(run_picoproc, manifest_path, "--", *cmd, json_path=tmp / "stray.json")
    assert proc.returncode != 0, (cmd, proc.stdout, proc.stderr)
    assert rules(doc).get(target) == rule, (target, doc["denial_summary"])
    return proc


# --------------------------------------------------------------------------
# A python3 script that reads a config and writes its output

JOB = """\
import configparser, json, sys
cfg = configparser.ConfigParser()
cfg.read(sys.argv[1])
total = sum(int(v) for v in cfg["numbers"].values())
with open(sys.argv[2], "w") as f:
    json.dump({"name": cfg["job"]["name"], "total": total}, f, sort_keys=True)
print("done", total)
"""


@pytest.fixture
def python_job(work):
    app, out = work / "app", work / "out"
    app.mkdir()
    out.mkdir()
    (app / "job.py").write_text(JOB)
    (app / "config.ini").write_text("[job]\nname = sums\n[numbers]\na = 1\nb = 20\nc = 300\n")
    _tree_open(work)
    native_out = work / "native.json"
    native = subprocess.run([sys.executable, str(app / "job.py"), str(app / "config.ini"),
                             str(native_out)], capture_output=True, text=True, timeout=TIMEOUT)
    assert native.returncode == 0
    return app, out, native.stdout, native_out.read_text()


def test_python_script_learned_manifest_reproduces_and_refuses_strays(run_picoproc, work, python_job):
    app, out, native_stdout, native_result = python_job
    flags = ["-v", f"{app}:/app:ro", "-v", f"{out}:/out:rw"]
    cmd = ["python3", "/app/job.py", "/app/config.ini", "/out/result.json"]
    manifest_path = work / "job.toml"
    proc, text, doc = learn(run_picoproc, manifest_path, *flags, "--", *cmd)
    assert proc.stdout.startswith(native_stdout)

    mounts = mounts_of(doc)
    # The script's directory (Python's import system lists it): read-only,
    # no exec; the output directory: writable (a file was made there), no exec.
    assert {g: (m["mode"], m["exec"]) for g, m in mounts.items() if g.startswith(("/app", "/out"))} \
        == {"/app": ("ro", False), "/out": ("rw", False)}
    # The interpreter runs; the system directories are not mounted whole.
    assert mounts["/usr/bin/python3.11"]["exec"] is True
    assert "/usr" not in mounts and "/etc" not in mounts and "/bin" not in mounts
    assert not any(m["exec"] for g, m in mounts.items() if g.startswith("/etc"))
    # Shared objects are loaded (mapped executable): their mounts allow it,
    # as a noexec mount would refuse the dynamic loader.
    assert mounts["/lib/x86_64-linux-gnu/libc.so.6"]["exec"] is True
    # Never the secrets; no network; every mount line has its reason.
    assert "/etc/shadow" in doc["hidden"] and "*.key" in doc["hidden_names"]
    assert doc["net"] == {"connect": [], "listen": [], "unix": []}
    assert text.count("[[mount]]") == len(mounts)
    assert "extends" not in doc

    (out / "result.json").unlink()
    again, _ = run_with(run_picoproc, manifest_path, "--", *cmd)
    assert again.returncode == 0, again.stderr
    assert again.stdout == native_stdout
    assert (out / "result.json").read_text() == native_result

    # Strays are refused, each with the rule that refused it.
    assert_refused(run_picoproc, manifest_path, work, ["python3", "-c", "open('/etc/passwd')"],
                   "/etc/passwd", "not_mounted")
    assert_refused(run_picoproc, manifest_path, work,
                   ["python3", "-c", "open('/app/new.txt', 'w')"], "/app/new.txt", "read_only")
    assert_refused(run_picoproc, manifest_path, work,
                   ["python3", "-c", "open('/usr/share/common-licenses/GPL-3')"],
                   "/usr/share/common-licenses/GPL-3", "not_mounted")
    assert_refused(run_picoproc, manifest_path, work, ["python3", "-c", "open('/etc/shadow')"],
                   "/etc/shadow", "hidden_path")
    # A program it never ran: not in the view at all.
    proc = run_picoproc("run", "--manifest", str(manifest_path), "--", "/usr/bin/perl", "-e", "1",
                        timeout=TIMEOUT)
    assert proc.returncode == 127


def test_learning_never_grants_a_secret(run_picoproc, work):
    """The learning run is refused the default's secrets even with a manifest
    that does not hide them; a program that reads one learns nothing of it."""
    bare = work / "bare.toml"
    bare.write_text('[[mount]]\nguest = "/usr"\nhost = "/usr"\n[[mount]]\nguest = "/etc"\n'
                    'host = "/etc"\n[[mount]]\nguest = "/lib64"\nhost = "/lib64"\n'
                    '[[mount]]\nguest = "/lib"\nhost = "/lib"\n')
    prog = "try:\n    open('/etc/shadow')\nexcept PermissionError:\n    print('refused')\n"
    proc, _text, doc = learn(run_picoproc, work / "m.toml", "--manifest", str(bare), "--",
                            "python3", "-c", prog)
    assert proc.stdout == "refused\n"
    assert "/etc/shadow" in doc["hidden"]
    assert "/etc/shadow" not in mounts_of(doc) and "/etc" not in mounts_of(doc)
    assert "hidden by policy" in proc.stderr


# --------------------------------------------------------------------------
# A build of a small C project (gcc driven by a shell script; make below)

BUILD = """\
#!/bin/sh
set -e
mkdir -p build
for f in src/*.c; do gcc -Iinclude -c "$f" -o "build/$(basename "$f" .c).o"; done
gcc -o build/app build/*.o
"""


@pytest.fixture
def c_project(work):
    proj = work / "proj"
    (proj / "src").mkdir(parents=True)
    (proj / "include").mkdir()
    (proj / "include" / "greet.h").write_text("const char *greeting(void);\n")
    (proj / "src" / "greet.c").write_text('#include "greet.h"\n'
                                          'const char *greeting(void) { return "hello, learned"; }\n')
    (proj / "src" / "main.c").write_text('#include <stdio.h>\n#include "greet.h"\n'
                                         'int main(void) { puts(greeting()); return 0; }\n')
    (proj / "build.sh").write_text(BUILD)
    (proj / "Makefile").write_text(
        "build/app: build/main.o build/greet.o\n\tgcc -o $@ $^\n"
        "build/%.o: src/%.c include/greet.h\n\tmkdir -p build\n\tgcc -Iinclude -c $< -o $@\n")
    _tree_open(proj)
    return proj


def _built_app_output(proj) -> str:
    return subprocess.run([str(proj / "build" / "app")], capture_output=True, text=True,
                          timeout=TIMEOUT, check=True).stdout


def test_shell_build_learned_manifest(run_picoproc, work, c_project):
    proj = c_project
    manifest_path = work / "build.toml"
    proc, _text, doc = learn(run_picoproc, manifest_path, "-v", f"{proj}:/proj:rw", "-w", "/proj",
                            "--", "sh", "build.sh")
    assert _built_app_output(proj) == "hello, learned\n"
    mounts = mounts_of(doc)
    # mkdir build in /proj: the project directory is writable; nothing in it runs.
    assert mounts["/proj"]["mode"] == "rw" and mounts["/proj"]["exec"] is False
    assert any(g.startswith("/usr/lib/gcc/") and m["exec"] for g, m in mounts.items())
    assert "/usr/include/stdio.h" in mounts and "/usr/include/math.h" not in mounts

    shutil.rmtree(proj / "build")
    again, _ = run_with(run_picoproc, manifest_path, "--", "sh", "build.sh")
    assert again.returncode == 0, again.stderr
    assert _built_app_output(proj) == "hello, learned\n"

    # A source that needs a header the build never used is refused.
    (proj / "src" / "extra.c").write_text("#include <math.h>\ndouble f(double x) { return sqrt(x); }\n")
    _tree_open(proj)
    proc, _doc2 = run_with(run_picoproc, manifest_path, "--", "gcc", "-c", "src/extra.c",
                          "-o", "/tmp/extra.o", json_path=work / "stray.json")
    assert proc.returncode != 0 and "math.h" in proc.stderr
    # The program built in /proj is not run from it: noexec.
    proc = run_picoproc("run", "--manifest", str(manifest_path), "--", "/proj/build/app",
                        timeout=TIMEOUT)
    assert proc.returncode == 126


def test_make_build_learned_manifest(run_picoproc, work, c_project):
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    proj = c_project
    manifest_path = work / "make.toml"
    learn(run_picoproc, manifest_path, "-v", f"{proj}:/proj:rw", "-w", "/proj", "--", "make")
    assert _built_app_output(proj) == "hello, learned\n"
    shutil.rmtree(proj / "build")
    again, _ = run_with(run_picoproc, manifest_path, "--", "make")
    assert again.returncode == 0, again.stderr
    assert _built_app_output(proj) == "hello, learned\n"


# --------------------------------------------------------------------------
# sqlite3 on a database file


@pytest.fixture
def database(work):
    if shutil.which("sqlite3") is None:
        pytest.skip("sqlite3 is not installed")
    db_dir = work / "db"
    db_dir.mkdir()
    with sqlite3.connect(db_dir / "shop.db") as con:
        con.execute("create table items(name text, price int)")
        con.executemany("insert into items values(?, ?)", [("tea", 3), ("cake", 5)])
    _tree_open(db_dir)
    return db_dir


SQL = "insert into items values('jam', 4); select name, price from items order by price;"


def test_sqlite3_learned_manifest(run_picoproc, work, database):
    db_dir = database
    oracle_dir = work / "oracle"
    shutil.copytree(db_dir, oracle_dir)
    native = subprocess.run(["sqlite3", str(oracle_dir / "shop.db"), SQL], capture_output=True,
                            text=True, timeout=TIMEOUT, check=True).stdout
    pristine = work / "pristine.db"
    shutil.copy(db_dir / "shop.db", pristine)

    manifest_path = work / "sqlite.toml"
    proc, _text, doc = learn(run_picoproc, manifest_path, "-v", f"{db_dir}:/db:rw", "--",
                            "sqlite3", "/db/shop.db", SQL)
    assert proc.stdout.startswith(native)
    mounts = mounts_of(doc)
    # The journal is made next to the database: the directory is writable.
    assert mounts["/db"]["mode"] == "rw"
    assert mounts["/usr/bin/sqlite3"]["exec"] is True

    shutil.copy(pristine, db_dir / "shop.db")
    os.chmod(db_dir / "shop.db", 0o666)
    again, _ = run_with(run_picoproc, manifest_path, "--", "sqlite3", "/db/shop.db", SQL)
    assert again.returncode == 0, again.stderr
    assert again.stdout == native

    # Another database, in a directory the learning run never used: refused.
    other = tempfile.mkdtemp(prefix="picoproc-learn-", dir="/var/tmp")
    try:
        os.chmod(other, 0o777)
        shutil.copy(pristine, os.path.join(other, "other.db"))
        os.chmod(os.path.join(other, "other.db"), 0o666)
        target = os.path.join(other, "other.db")
        assert_refused(run_picoproc, manifest_path, work, ["sqlite3", target, "select 1;"],
                       target, "not_mounted")
    finally:
        shutil.rmtree(other, ignore_errors=True)


# --------------------------------------------------------------------------
# A client of a TCP server on the host

CLIENT = ("import socket, sys\n"
          "s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=20)\n"
          "s.sendall(b'ping\\n'); print(s.recv(64).decode().strip())\n")


class _Server:
    """A TCP server on the host answering each connection with one line."""

    def __init__(self, host: str) -> None:
        self.sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        self.sock.bind((host, 0))
        self.sock.listen(16)
        self.sock.settimeout(TIMEOUT)
        self.port = self.sock.getsockname()[1]
        self.served = 0
        self._stop = False
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(TIMEOUT)
                try:
                    if conn.recv(64):
                        conn.sendall(b"pong from the host\n")
                        self.served += 1
                except OSError:
                    pass

    def close(self) -> None:
        self._stop = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes the accept (close alone does not)
        except OSError:
            pass
        self.sock.close()
        self._thread.join(TIMEOUT)
        assert not self._thread.is_alive()


@pytest.fixture
def servers():
    made = []

    def make(host="127.0.0.1"):
        s = _Server(host)
        made.append(s)
        return s

    yield make
    for s in made:
        s.close()


def test_tcp_client_learned_manifest(run_picoproc, work, servers):
    used, unused = servers(), servers()
    manifest_path = work / "client.toml"
    cmd = ["python3", "-c", CLIENT, "127.0.0.1", str(used.port)]
    proc, text, doc = learn(run_picoproc, manifest_path,
                            "--net-connect", f"127.0.0.1:{used.port}",
                            "--net-connect", f"127.0.0.1:{unused.port}", "--", *cmd)
    assert proc.stdout == "pong from the host\n" and used.served == 1
    # Only the endpoint used is granted, with the reason on its line.
    assert doc["net"]["connect"] == [f"127.0.0.1:{used.port}"]
    assert f'"127.0.0.1:{used.port}",  # used: tcp connect' in text

    again, _ = run_with(run_picoproc, manifest_path, "--", *cmd)
    assert again.returncode == 0 and again.stdout == "pong from the host\n", again.stderr
    assert used.served == 2
    # The other host server: the program's own loopback answers instead
    # (connection refused), and the summary says which grant reaches the host's.
    proc = assert_refused(run_picoproc, manifest_path, work,
                          ["python3", "-c", CLIENT, "127.0.0.1", str(unused.port)],
                          f"tcp 127.0.0.1:{unused.port}", "own_loopback")
    assert f"--net-connect 127.0.0.1:{unused.port}" in proc.stderr
    assert unused.served == 0


def _host_address() -> str | None:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.connect(("192.0.2.1", 9))
        addr = s.getsockname()[0]
    except OSError:
        return None
    finally:
        s.close()
    return None if addr.startswith("127.") else addr


def test_allow_net_learns_host_endpoints(run_picoproc, work, servers):
    addr = _host_address()
    if addr is None:
        pytest.skip("this host has no non-loopback IPv4 address")
    server = servers(addr)
    cmd = ["python3", "-c", CLIENT, addr, str(server.port)]
    # Without --allow-net the learning run is refused, and the manifest says so.
    proc = run_picoproc("learn", "-o", str(work / "no.toml"), "--", *cmd, timeout=TIMEOUT)
    assert proc.returncode == 1 and server.served == 0
    no = tomllib.loads((work / "no.toml").read_text())
    assert no["net"]["connect"] == []
    assert "Refused while learning" in (work / "no.toml").read_text()

    proc, _text, doc = learn(run_picoproc, work / "net.toml", "--allow-net", "--", *cmd)
    assert proc.stdout == "pong from the host\n"
    assert doc["net"]["connect"] == [f"{addr}:{server.port}"]
    again, _ = run_with(run_picoproc, work / "net.toml", "--", *cmd)
    assert again.returncode == 0 and again.stdout == "pong from the host\n"
    # Another port of the same host is not granted.
    other = servers(addr)
    assert_refused(run_picoproc, work / "net.toml", work,
                   ["python3", "-c", CLIENT, addr, str(other.port)],
                   f"tcp {addr}:{other.port}", "net_not_granted")


OWN_SERVER = """\
import socket, threading
srv = socket.socket(); srv.bind(("127.0.0.1", 0)); srv.listen()
def serve():
    c, _ = srv.accept(); c.sendall(c.recv(10).upper()); c.close()
threading.Thread(target=serve).start()
s = socket.create_connection(srv.getsockname(), timeout=20)
s.sendall(b"own"); print(s.recv(10).decode())
"""


def test_own_loopback_is_never_a_grant(run_picoproc, work):
    proc, text, doc = learn(run_picoproc, work / "own.toml", "--allow-net", "--",
                            "python3", "-c", OWN_SERVER)
    assert proc.stdout == "OWN\n"
    assert doc["net"] == {"connect": [], "listen": [], "unix": []}
    assert "own loopback needs no grant" in text
    again, _ = run_with(run_picoproc, work / "own.toml", "--", "python3", "-c", OWN_SERVER)
    assert again.returncode == 0 and again.stdout == "OWN\n", again.stderr


# --------------------------------------------------------------------------
# Several runs, limits


def test_traces_merge_into_one_manifest(run_picoproc, work):
    data, out = work / "data", work / "out"
    data.mkdir()
    out.mkdir()
    (data / "in.txt").write_text("input\n")
    _tree_open(work)
    flags = ["-v", f"{data}:/data:ro", "-v", f"{out}:/out:rw"]
    reader = ["cat", "/data/in.txt"]
    writer = ["sh", "-c", "echo made > /out/made.txt"]
    proc = run_picoproc("trace", "--json", str(work / "r.json"), "-o", str(work / "r.txt"),
                        *flags, "--", *reader, timeout=TIMEOUT)
    assert proc.returncode == 0, proc.stderr
    # A learning run keeps its profile too.
    proc = run_picoproc("learn", "--save-trace", str(work / "w.json"), "-o", str(work / "w.toml"),
                        *flags, "--", *writer, timeout=TIMEOUT)
    assert proc.returncode == 0, proc.stderr
    proc, text, _doc = learn(run_picoproc, work / "both.toml", "--from", str(work / "r.json"),
                            "--from", str(work / "w.json"))
    assert text.count("from 2 runs") == 1
    for cmd in (reader, writer):
        again, _ = run_with(run_picoproc, work / "both.toml", "--", *cmd)
        assert again.returncode == 0, (cmd, again.stderr)
    # One trace alone refuses the other's run.
    learn(run_picoproc, work / "r.toml", "--from", str(work / "r.json"))
    proc, _ = run_with(run_picoproc, work / "r.toml", "--", *writer)
    assert proc.returncode != 0


def test_limits_and_scratch_from_the_peaks(run_picoproc, work):
    prog = ("import threading, time\n"
            "open('/tmp/blob', 'wb').write(b'x' * 3_000_000)\n"
            "ts = [threading.Thread(target=time.sleep, args=(0.3,)) for _ in range(5)]\n"
            "[t.start() for t in ts]; [t.join() for t in ts]\n")
    proc, text, doc = learn(run_picoproc, work / "lim.toml", "--margin", "3", "--",
                            "python3", "-c", prog)
    tmp = next(t for t in doc["tmpfs"] if t["guest"] == "/tmp")
    m = load_manifest(work / "lim.toml")
    size = next(t.size_bytes for t in m.tmpfs if t.guest == "/tmp")
    assert size >= 9_000_000, tmp
    assert "/dev/shm" not in {t["guest"] for t in doc["tmpfs"]}  # unused: not granted
    from picoproc import cgroups

    if "pids" in cgroups.available_controllers():
        assert m.limits.pids >= 3 * 6  # the main thread and five more, times the margin
        assert "processes and threads" in text
    else:
        assert "no cgroup here to measure the peak" in text
    assert m.limits.memory_bytes >= 3 * 3_000_000
    assert "3 x the peak" in text
    again, _ = run_with(run_picoproc, work / "lim.toml", "--", "python3", "-c", prog)
    assert again.returncode == 0, again.stderr
    # The learned limits hold: four times the scratch is refused.
    big = prog.replace("3_000_000", "12_000_000")
    proc, _ = run_with(run_picoproc, work / "lim.toml", "--", "python3", "-c", big)
    assert proc.returncode != 0 and "No space left" in proc.stderr


# --------------------------------------------------------------------------
# The profile


def test_trace_profile(run_picoproc, work):
    data, out = work / "data", work / "out"
    data.mkdir()
    out.mkdir()
    (data / "in.txt").write_text("input\n")
    _tree_open(work)
    proc = run_picoproc("trace", "--json", str(work / "t.json"), "-v", f"{data}:/data:ro",
                        "-v", f"{out}:/out:rw", "--", "sh", "-c",
                        "uname -a > /dev/null; cat /data/in.txt > /out/o.txt; ls /data >/dev/null; "
                        "cat /etc/shadow",
                        timeout=TIMEOUT)
    assert proc.returncode == 1  # cat /etc/shadow, the last command
    text = proc.stderr
    assert "Files, by mount:" in text and "/data  (host" in text and "Network: none" in text
    assert "Refused by the manifest:" in text and "/etc/shadow" in text
    doc = json.loads((work / "t.json").read_text())
    assert doc["schema"] == "picoproc.trace" and doc["version"] == 1
    files = {f["path"]: f for f in doc["files"]}
    assert files["/data/in.txt"]["access"] == ["read"]
    assert "create" in files["/out/o.txt"]["access"]
    assert "list" in files["/data"]["access"]
    # /bin and /usr/bin are two mounts of the same host directory: either may run.
    assert {os.path.basename(p) for p in doc["executed"]} >= {"dash", "cat", "ls", "uname"}
    assert all("ld-linux" in p for p in doc["interpreters"])
    # The library OS names what it emulated (uname(2) for uname(1)).
    assert "uname" in doc["emulated"] and "Emulated by the library OS" in text
    assert doc["peaks"]["tasks"] is None or doc["peaks"]["tasks"] >= 2
    assert doc["outcome"]["exit_status"] == 1
    assert [d["rule"] for d in doc["denials"]] == ["hidden_path"]


def test_learn_as_an_unprivileged_user(unpriv_env, tmp_path):
    base = tempfile.mkdtemp(prefix="picoproc-learn-unpriv-", dir="/var/tmp")
    try:
        os.chmod(base, 0o777)
        manifest = os.path.join(base, "m.toml")
        cmd = ["python3", "-c", "import json; print(json.dumps({'a': 1}))"]
        env = dict(unpriv_env["env"])
        run = [*unpriv_env["prefix"], unpriv_env["python"], "-m", "picoproc"]
        proc = subprocess.run([*run, "learn", "-o", manifest, "--", *cmd], capture_output=True,
                              text=True, env=env, cwd="/", timeout=TIMEOUT)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout == '{"a": 1}\n'
        again = subprocess.run([*run, "run", "--manifest", manifest, "--", *cmd],
                               capture_output=True, text=True, env=env, cwd="/", timeout=TIMEOUT)
        assert again.returncode == 0 and again.stdout == '{"a": 1}\n', again.stderr
        stray = subprocess.run([*run, "run", "--manifest", manifest, "--", "python3", "-c",
                                "open('/etc/passwd')"], capture_output=True, text=True, env=env,
                               cwd="/", timeout=TIMEOUT)
        assert stray.returncode == 1 and "not mounted" in stray.stderr
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_learn_usage_errors(run_picoproc, work):
    proc = run_picoproc("learn", timeout=TIMEOUT)
    assert proc.returncode == 125 and "give a program" in proc.stderr
    (work / "bad.json").write_text("{}")
    proc = run_picoproc("learn", "--from", str(work / "bad.json"), timeout=TIMEOUT)
    assert proc.returncode == 125 and "not a picoproc trace" in proc.stderr
    proc = run_picoproc("learn", "--margin", "0.5", "--", "true", timeout=TIMEOUT)
    assert proc.returncode == 125 and "--margin" in proc.stderr


def test_fifos_and_extended_attributes_are_learned_as_changes(run_picoproc, work):
    data = work / "data"
    data.mkdir()
    (data / "f").write_text("x")
    _tree_open(work)
    prog = ("import os\n"
            "os.mkfifo('/data/pipe')\n"
            "os.setxattr('/data/f', 'user.tag', b'1')\n"
            "print(os.getxattr('/data/f', 'user.tag').decode())\n"
            "os.unlink('/data/pipe')\n")
    proc, text, doc = learn(run_picoproc, work / "x.toml", "-v", f"{data}:/data:rw", "--",
                            "python3", "-c", prog)
    assert proc.stdout == "1\n"
    assert mounts_of(doc)["/data"]["mode"] == "rw" and "created /data/pipe" in text
    os.removexattr(data / "f", "user.tag")
    again, _ = run_with(run_picoproc, work / "x.toml", "--", "python3", "-c", prog)
    assert again.returncode == 0 and again.stdout == "1\n", again.stderr


def test_a_long_run_is_profiled_to_its_last_call(run_picoproc, work):
    """A run keeps only its first records in memory (api.AUDIT_KEEP); the
    profile is built from all of them as they come, so what a program uses
    after many calls is learned too."""
    from picoproc.api import AUDIT_KEEP

    data = work / "data"
    data.mkdir()
    (data / "late.txt").write_text("late\n")
    _tree_open(work)
    prog = (f"import os\nfor _ in range({AUDIT_KEEP + 2000}): os.stat('/usr/bin/python3')\n"
            "print(open('/data/late.txt').read(), end='')\n")
    proc, text, doc = learn(run_picoproc, work / "long.toml", "-v", f"{data}:/data:ro", "--",
                            "python3", "-c", prog)
    assert proc.stdout == "late\n"
    assert "/data/late.txt" in mounts_of(doc) or "/data" in mounts_of(doc)
    again, _ = run_with(run_picoproc, work / "long.toml", "--", "python3", "-c", prog)
    assert again.returncode == 0 and again.stdout == "late\n", again.stderr
