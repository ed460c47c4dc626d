"""Denials a user can act on: every refusal names the rule that refused it and
the flag that would grant it.

Real programs (cat, sh, python3) are refused by each kind of rule; the test
reads the summary ``picoproc run`` prints on stderr and the same data in
``--json``, and then, for every rule that has a grant, runs the program
again with the flag the summary suggested and checks that it now works:
the suggestion is judged by what it does, not by its wording.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import socket
import subprocess
import tempfile
import threading

import pytest
from picoproc.api import Sandbox
from picoproc.manifest import apply_overrides, default_manifest

pytestmark = pytest.mark.root

TIMEOUT = 60


def _run(run_picoproc, *args, json_path=None):
    extra = ["--json", str(json_path)] if json_path else []
    proc = run_picoproc("run", *extra, *args, timeout=TIMEOUT)
    doc = json.loads(json_path.read_text()) if json_path else None
    return proc, doc


def _summary_lines(stderr: str) -> list[str]:
    return [line.strip() for line in stderr.splitlines() if line.startswith("  ")]


def _only(doc, rule):
    found = [d for d in doc["denial_summary"] if d["rule"] == rule]
    assert len(found) == 1, doc["denial_summary"]
    return found[0]


def _grant_args(grant: str) -> list[str]:
    return shlex.split(grant)


@pytest.fixture
def world_dir(tmp_path):
    """A host directory every guest identity may read (and write)."""
    d = tmp_path / "data"
    d.mkdir()
    for p in (tmp_path, d):
        p.chmod(0o777)
    return d


@pytest.fixture
def outside_dir():
    """A host directory no mount of the default manifest shows (not under
    /tmp, which the guest has as its own tmpfs), removed afterwards."""
    d = tempfile.mkdtemp(prefix="picoproc-denials-", dir="/var/tmp")
    os.chmod(d, 0o777)
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


# --------------------------------------------------------------------------
# Each rule


def test_hidden_path_is_named_and_never_granted(run_picoproc, tmp_path):
    proc, doc = _run(run_picoproc, "--", "cat", "/etc/shadow", json_path=tmp_path / "r.json")
    assert proc.returncode == 1
    d = _only(doc, "hidden_path")
    assert d["target"] == "/etc/shadow" and d["key"] == "hidden" and d["grant"] is None
    assert "hidden by policy" in d["why"] and "/etc/shadow" in d["why"]
    assert "default manifest" in d["why"]
    line = next(ln for ln in _summary_lines(proc.stderr) if ln.startswith("/etc/shadow"))
    assert "hidden by policy" in line and "to grant:" not in line


def test_hidden_name_is_named_with_its_pattern(run_picoproc, world_dir, tmp_path):
    (world_dir / "server.key").write_text("secret\n")
    proc, doc = _run(run_picoproc, "-v", f"{world_dir}:/data", "--", "cat", "/data/server.key",
                     json_path=tmp_path / "r.json")
    assert proc.returncode == 1 and "secret" not in proc.stdout
    d = _only(doc, "hidden_name")
    assert d["key"] == "hidden_names" and "'*.key'" in d["why"] and d["grant"] is None
    assert any("hidden by policy" in ln and "/data/server.key" in ln
               for ln in _summary_lines(proc.stderr))


def test_hard_link_of_a_hidden_file_is_refused_as_its_object(run_picoproc, world_dir, tmp_path):
    (world_dir / "secret").write_text("s3cret\n")
    os.link(world_dir / "secret", world_dir / "innocent")
    proc, doc = _run(run_picoproc, "-v", f"{world_dir}:/data", "--hide", "/data/secret", "--",
                     "cat", "/data/innocent", json_path=tmp_path / "r.json")
    assert proc.returncode == 1 and "s3cret" not in proc.stdout
    d = _only(doc, "hidden_object")
    assert "/data/secret" in d["why"] and "hard link" in d["why"] and d["grant"] is None
    # A hidden entry of the user's own (not the default's): the fix is to drop it.
    assert "drop that entry" in d["why"]


def test_read_only_mount_names_the_narrowest_writable_grant(run_picoproc, world_dir, tmp_path):
    out = world_dir / "out"
    out.mkdir()
    out.chmod(0o777)
    cmd = ["sh", "-c", "echo hello > /data/out/result.txt"]
    proc, doc = _run(run_picoproc, "-v", f"{world_dir}:/data:ro", "--", *cmd,
                     json_path=tmp_path / "r.json")
    assert proc.returncode != 0
    d = _only(doc, "read_only")
    assert d["target"] == "/data/out/result.txt" and d["key"] == 'mount /data: mode = "ro"'
    assert d["grant"] == f"-v {out}:/data/out:rw"
    assert d["calls"] == ["create"]
    assert any(ln.startswith("/data/out/result.txt") and f"to grant: -v {out}:/data/out:rw" in ln
               for ln in _summary_lines(proc.stderr))
    # The grant works, and grants no more than that directory.
    again, _ = _run(run_picoproc, "-v", f"{world_dir}:/data:ro", *_grant_args(d["grant"]), "--", *cmd)
    assert again.returncode == 0, again.stderr
    assert (out / "result.txt").read_text() == "hello\n"
    other, _ = _run(run_picoproc, "-v", f"{world_dir}:/data:ro", *_grant_args(d["grant"]), "--",
                    "sh", "-c", "echo x > /data/elsewhere")
    assert other.returncode != 0 and not (world_dir / "elsewhere").exists()


def test_system_directory_write_warns(run_picoproc, tmp_path):
    _proc, doc = _run(run_picoproc, "--", "sh", "-c", "echo x > /usr/x", json_path=tmp_path / "r.json")
    d = _only(doc, "read_only")
    assert "a system directory" in d["why"] and d["grant"] == "-v /usr:/usr:rw"


def test_noexec_mount_names_the_grant(run_picoproc, world_dir, tmp_path):
    prog = world_dir / "prog"
    prog.write_text("#!/bin/sh\necho ran\n")
    prog.chmod(0o755)
    cmd = ["sh", "-c", "/data/prog"]
    proc, doc = _run(run_picoproc, "-v", f"{world_dir}:/data:ro,noexec", "--", *cmd,
                     json_path=tmp_path / "r.json")
    assert proc.returncode != 0 and "ran" not in proc.stdout
    d = _only(doc, "noexec")
    assert d["key"] == "mount /data: exec = false" and d["grant"] == f"-v {world_dir}:/data:ro"
    again, _ = _run(run_picoproc, "-v", f"{world_dir}:/data:ro,noexec", *_grant_args(d["grant"]),
                    "--", *cmd)
    assert again.returncode == 0 and again.stdout == "ran\n", again.stderr


def test_not_mounted_path_the_host_has(run_picoproc, outside_dir, tmp_path):
    target = os.path.join(outside_dir, "f.txt")
    with open(target, "w") as f:
        f.write("content\n")
    os.chmod(target, 0o644)
    proc, doc = _run(run_picoproc, "--", "cat", target, json_path=tmp_path / "r.json")
    assert proc.returncode == 1
    d = _only(doc, "not_mounted")
    assert d["exists_on_host"] is True and d["grant"] == f"-v {target}:{target}:ro,noexec"
    again, _ = _run(run_picoproc, *_grant_args(d["grant"]), "--", "cat", target)
    assert again.returncode == 0 and again.stdout == "content\n", again.stderr


def test_probes_of_what_the_host_lacks_are_only_counted(run_picoproc, tmp_path):
    proc, _doc = _run(run_picoproc, "--", "sh", "-c", "cat /nonexistent-dir/x; echo x > /usr/x",
                     json_path=tmp_path / "r.json")
    lines = _summary_lines(proc.stderr)
    assert not any("nonexistent" in ln for ln in lines)
    assert any(ln.startswith("/usr/x") for ln in lines)


def _serve_once(sock: socket.socket, got: list) -> threading.Thread:
    def serve():
        sock.settimeout(TIMEOUT)
        try:
            conn, _ = sock.accept()
        except OSError:
            return
        with conn:
            conn.settimeout(TIMEOUT)
            got.append(conn.recv(100))
            conn.sendall(b"pong")

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    return t


CLIENT = ("import socket,sys\n"
          "s=socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=20)\n"
          "s.sendall(b'ping'); print(s.recv(10).decode())\n")


def _host_address() -> str | None:
    """A non-loopback IPv4 address of this host (no packet is sent)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.connect(("192.0.2.1", 9))
        addr = s.getsockname()[0]
    except OSError:
        return None
    finally:
        s.close()
    return None if addr.startswith("127.") else addr


def test_network_endpoint_not_granted(run_picoproc, tmp_path):
    addr = _host_address()
    if addr is None:
        pytest.skip("this host has no non-loopback IPv4 address")
    with socket.socket() as srv:
        srv.bind((addr, 0))
        srv.listen()
        port = srv.getsockname()[1]
        cmd = ["python3", "-c", CLIENT, addr, str(port)]
        proc, doc = _run(run_picoproc, "--", *cmd, json_path=tmp_path / "r.json")
        assert proc.returncode == 1 and "PermissionError" in proc.stderr
        d = _only(doc, "net_not_granted")
        assert d["target"] == f"tcp {addr}:{port}" and d["key"] == "net.connect"
        assert d["grant"] == f"--net-connect {addr}:{port}"
        got: list = []
        t = _serve_once(srv, got)
        again, _ = _run(run_picoproc, *_grant_args(d["grant"]), "--", *cmd)
        t.join(TIMEOUT)
    assert again.returncode == 0 and again.stdout == "pong\n", again.stderr
    assert got == [b"ping"]


def test_own_loopback_refusal_where_the_host_listens(run_picoproc, tmp_path):
    """The guest's 127.0.0.1 is its own: a host service there answers only to
    a grant.  The summary says so when the host has a listener there."""
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen()
        port = srv.getsockname()[1]
        cmd = ["python3", "-c", CLIENT, "127.0.0.1", str(port)]
        proc, doc = _run(run_picoproc, "--", *cmd, json_path=tmp_path / "r.json")
        assert proc.returncode == 1 and "ConnectionRefusedError" in proc.stderr
        d = _only(doc, "own_loopback")
        assert d["grant"] == f"--net-connect 127.0.0.1:{port}" and "own loopback" in d["why"]
        got: list = []
        t = _serve_once(srv, got)
        again, _ = _run(run_picoproc, *_grant_args(d["grant"]), "--", *cmd)
        t.join(TIMEOUT)
    assert again.returncode == 0 and again.stdout == "pong\n", again.stderr
    # Nothing listening on the host there: no line (a program's own probe).
    proc, doc = _run(run_picoproc, "--", *cmd, json_path=tmp_path / "r2.json")
    assert proc.returncode == 1 and doc["denial_summary"] == []


def test_unix_socket_not_granted(run_picoproc, outside_dir, tmp_path):
    path = os.path.join(outside_dir, "s")
    client = ("import socket,sys\ns=socket.socket(socket.AF_UNIX)\ns.connect(sys.argv[1])\n"
              "s.sendall(b'ping'); print(s.recv(10).decode())\n")
    with socket.socket(socket.AF_UNIX) as srv:
        srv.bind(path)
        os.chmod(path, 0o777)
        srv.listen()
        proc, doc = _run(run_picoproc, "--", "python3", "-c", client, path,
                         json_path=tmp_path / "r.json")
        assert proc.returncode == 1
        d = _only(doc, "net_not_granted")
        assert d["target"] == f"unix {path}" and d["key"] == "net.unix"
        assert d["grant"] == f"--net-unix {os.path.realpath(path)}"
        got: list = []
        t = _serve_once(srv, got)
        again, _ = _run(run_picoproc, *_grant_args(d["grant"]), "--", "python3", "-c", client, path)
        t.join(TIMEOUT)
    assert again.returncode == 0 and again.stdout == "pong\n", again.stderr


def test_device_files_are_data_only(run_picoproc, tmp_path):
    proc, doc = _run(run_picoproc, "--", "chmod", "600", "/dev/null", json_path=tmp_path / "r.json")
    assert proc.returncode != 0
    d = _only(doc, "device")
    assert d["grant"] is None and "device" in d["why"]


def test_extended_attributes_outside_user_are_refused(run_picoproc, world_dir, tmp_path):
    (world_dir / "f").write_text("x")
    (world_dir / "f").chmod(0o666)
    prog = ("import os\ntry:\n    os.setxattr('/data/f', 'trusted.x', b'1')\n"
            "except PermissionError:\n    print('refused')\n")
    proc, doc = _run(run_picoproc, "-v", f"{world_dir}:/data:rw", "--", "python3", "-c", prog,
                     json_path=tmp_path / "r.json")
    assert proc.stdout == "refused\n", proc.stderr
    d = _only(doc, "xattr_namespace")
    assert d["grant"] is None and "user." in d["why"]


def test_renaming_a_directory_that_holds_a_hidden_path(run_picoproc, world_dir, tmp_path):
    keep = world_dir / "keep"
    keep.mkdir()
    (keep / "secret").write_text("x")
    keep.chmod(0o777)
    proc, doc = _run(run_picoproc, "-v", f"{world_dir}:/data:rw", "--hide", "/data/keep/secret",
                     "--", "mv", "/data/keep", "/data/moved", json_path=tmp_path / "r.json")
    assert proc.returncode != 0 and keep.exists()
    d = _only(doc, "holds_hidden")
    assert "/data/keep/secret" in d["why"] and d["grant"] is None


def test_unsupported_calls_by_name_with_count(run_picoproc, tmp_path):
    # openat2 (437) is not emulated: three calls, three ENOSYS.
    prog = ("import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\n"
            "for _ in range(3): libc.syscall(437, -100, b'/', None, 0)\n")
    proc, doc = _run(run_picoproc, "--", "python3", "-c", prog, json_path=tmp_path / "r.json")
    assert proc.returncode == 0, proc.stderr
    assert doc["unsupported_counts"].get("openat2") == 3
    assert "openat2 (3 calls)" in proc.stderr


def test_quiet_silences_the_summary_but_not_the_json(run_picoproc, tmp_path):
    proc, doc = _run(run_picoproc, "-q", "--", "cat", "/etc/shadow", json_path=tmp_path / "r.json")
    assert "hidden by policy" not in proc.stderr
    assert doc["denial_summary"][0]["rule"] == "hidden_path"


def test_a_clean_run_prints_nothing(run_picoproc):
    proc = run_picoproc("run", "--", "python3", "-c", "print(1)", timeout=TIMEOUT)
    assert proc.returncode == 0 and proc.stderr == ""


def test_api_result_has_the_summary():
    r = Sandbox().run(["cat", "/etc/shadow"], capture_output=True, timeout=TIMEOUT)
    assert [d.rule for d in r.denial_summary] == ["hidden_path"]
    assert r.denials and r.denials[0]["reason"] == "hidden_path"
    assert "hidden by policy" in r.denial_report()


# --------------------------------------------------------------------------
# Mount rights are those of the object links lead to (as on Linux)


def test_rights_are_decided_after_links(tmp_path):
    """A link in a read-only, noexec mount that leads into a writable,
    exec mount: writing and running through it work, as on Linux (the
    monitor used to decide by the mount the path was written in)."""
    links, target = tmp_path / "links", tmp_path / "target"
    links.mkdir()
    target.mkdir()
    for p in (tmp_path, links, target):
        p.chmod(0o777)
    script = target / "prog"
    script.write_text("#!/bin/sh\necho ran\n")
    script.chmod(0o755)
    (links / "prog").symlink_to("/target/prog")
    (links / "out").symlink_to("/target/out")
    m = apply_overrides(default_manifest(), volumes=[f"{links}:/links:ro,noexec",
                                                      f"{target}:/target:rw"])
    r = Sandbox(m).run(["sh", "-c", "/links/prog && echo written > /links/out"],
                       capture_output=True, text=True, timeout=TIMEOUT)
    assert r.returncode == 0, (r.stderr, r.denial_summary)
    assert r.stdout == "ran\n" and (target / "out").read_text() == "written\n"
    # Writing a file of the read-only mount itself is still refused.
    r = Sandbox(m).run(["sh", "-c", "echo x > /links/new"], capture_output=True, timeout=TIMEOUT)
    assert r.returncode != 0 and [d.rule for d in r.denial_summary] == ["read_only"]


# --------------------------------------------------------------------------
# Unprivileged


def test_summary_as_an_unprivileged_user(unpriv_env, tmp_path):
    env = dict(unpriv_env["env"])
    proc = subprocess.run(
        [*unpriv_env["prefix"], unpriv_env["python"], "-m", "picoproc", "run", "--json", "-",
         "--", "sh", "-c", "cat /etc/shadow; echo x > /usr/x"],
        capture_output=True, text=True, env=env, cwd="/", timeout=TIMEOUT)
    assert proc.returncode != 0
    doc = json.loads(proc.stderr[proc.stderr.index("{"):proc.stderr.rindex("}") + 1])
    rules = {d["target"]: d["rule"] for d in doc["denial_summary"]}
    assert rules == {"/etc/shadow": "hidden_path", "/usr/x": "read_only"}
    assert "hidden by policy" in proc.stderr and "to grant: -v /usr:/usr:rw" in proc.stderr

