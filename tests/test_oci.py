"""picoproc-oci without an engine: the bundle -> picoprocess mapping, and the
runc command line driven as a shim drives it (tests/oci_shim.py is the
subreaper that waits for the container process).

Engines are in tests/test_oci_podman.py.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import pytest

from picoproc.oci import spec as spec_mod
from picoproc.oci.cli import features
from picoproc.oci.spec import SpecError, plan_from_spec

HERE = pathlib.Path(__file__).resolve().parent
BUSYBOX = "/bin/busybox"
TIMEOUT = 60

pytestmark = [pytest.mark.root, pytest.mark.skipif(not os.path.exists(BUSYBOX), reason="needs busybox-static")]


def runtime_exe() -> str:
    exe = pathlib.Path(sys.executable).parent / "picoproc-oci"
    if not exe.exists():
        pytest.fail("picoproc-oci is not installed (pip install -e .)", pytrace=False)
    return str(exe)


def base_spec(args=("true",), **extra) -> dict:
    """What `runc spec` writes, trimmed: the shape engines send."""
    doc = {
        "ociVersion": "1.0.2",
        "process": {"terminal": False, "user": {"uid": 0, "gid": 0}, "args": list(args),
                    "env": ["PATH=/bin:/usr/bin", "TERM=xterm"], "cwd": "/",
                    "capabilities": {"bounding": ["CAP_KILL"], "effective": ["CAP_KILL"],
                                     "permitted": ["CAP_KILL"]},
                    "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
                    "noNewPrivileges": True},
        "root": {"path": "rootfs", "readonly": True},
        "hostname": "ocitest",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "mode=755"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts"},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["ro"]},
            {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["size=1m"]},
        ],
        "linux": {"namespaces": [{"type": "pid"}, {"type": "network"}, {"type": "ipc"},
                                 {"type": "uts"}, {"type": "mount"}],
                  "resources": {"memory": {"limit": 256 << 20}, "pids": {"limit": 64}},
                  "maskedPaths": ["/proc/kcore"]},
    }
    doc.update(extra)
    return doc


def make_bundle(root: pathlib.Path, spec: dict) -> pathlib.Path:
    bundle = root / "bundle"
    rootfs = bundle / "rootfs"
    (rootfs / "bin").mkdir(parents=True)
    (rootfs / "tmp").mkdir()
    shutil.copy(BUSYBOX, rootfs / "bin" / "busybox")
    for applet in ("sh", "echo", "cat", "sleep", "id", "hostname", "true", "ls"):
        (rootfs / "bin" / applet).symlink_to("busybox")
    (rootfs / "etc").mkdir()
    (rootfs / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (bundle / "config.json").write_text(json.dumps(spec))
    os.chmod(root, 0o755)
    return bundle


# -- the mapping ---------------------------------------------------------------------


@pytest.mark.unit
def test_bundle_maps_onto_a_manifest_and_notes_what_it_does_not_honour(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    spec = base_spec(["sh"])
    spec["mounts"] += [
        {"destination": "/data", "type": "bind", "source": str(data), "options": ["rbind", "ro", "noexec"]},
        {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue"},
        {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup"},
    ]
    spec["linux"]["namespaces"][1] = {"type": "network", "path": "/run/netns/pod"}
    spec["linux"]["resources"]["cpu"] = {"quota": 50000, "period": 100000, "cpus": "0"}
    spec["linux"]["uidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
    spec["linux"]["gidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
    spec["process"]["user"] = {"uid": 1000, "gid": 1000, "additionalGids": [5]}
    spec["annotations"] = {"org.picoproc.hidden": "/etc/secret, /srv", "org.picoproc.net.connect": "10.0.0.1:53"}
    bundle = make_bundle(tmp_path, spec)
    plan = plan_from_spec(spec, str(bundle), rootless=False)
    m = plan.manifest
    mounts = {x.guest: x for x in m.mounts}
    assert mounts["/"].host == str(bundle / "rootfs") and not mounts["/"].writable and mounts["/"].exec
    assert mounts["/data"].host == str(data) and not mounts["/data"].writable and not mounts["/data"].exec
    assert [(t.guest, t.size_bytes) for t in m.tmpfs] == [("/tmp", 1 << 20)]
    assert not any(x.startswith(("/proc", "/dev", "/sys")) for x in mounts)
    assert m.hostname == "ocitest"
    assert m.limits.memory_bytes == 256 << 20 and m.limits.pids == 64 and m.limits.open_files == 1024
    assert plan.resources.cpu_quota_us == 50000 and plan.resources.cpu_period_us == 100000
    assert (plan.host_uid, plan.host_gid, plan.host_groups) == (101000, 101000, (100005,))
    assert plan.network == "pod" and plan.network_path == "/run/netns/pod"
    assert {"/etc/secret", "/srv"} <= set(m.hidden)
    assert "/proc/kcore" not in m.hidden
    # The pod's network is the guest's own (loopback, wildcard listeners):
    # nothing is granted for it; grants are only what the annotations add.
    assert {(e.host, e.port) for e in m.net_connect} == {("10.0.0.1", 53)}
    assert m.net_listen == ()
    notes = "\n".join(plan.notes)
    for expected in ("(/dev/pts)", "(/sys)", "(/dev/mqueue)", "(/sys/fs/cgroup)", "CAP_KILL",
                     "linux.resources.cpu.cpus"):
        assert expected in notes, expected
    # Emulated by the library OS, so nothing to report.
    assert "(/proc)" not in notes and "(/dev):" not in notes


@pytest.mark.unit
def test_container_root_runs_as_nobody_on_the_host_and_is_told(tmp_path):
    spec = base_spec()
    plan = plan_from_spec(spec, str(make_bundle(tmp_path, spec)), rootless=False)
    assert (plan.host_uid, plan.host_gid) == (65534, 65534)
    assert plan.process.uid == 0  # what the guest itself sees
    assert any("runs as nobody" in n for n in plan.notes)
    # No network namespace at all is the host network: nothing granted but annotations.
    spec = base_spec()
    spec["linux"]["namespaces"] = [{"type": "pid"}, {"type": "mount"}]
    plan = plan_from_spec(spec, str(tmp_path / "bundle"), rootless=False)
    assert plan.network == "host" and not plan.manifest.net_listen and not plan.manifest.net_connect
    assert any("host's network" in n for n in plan.notes)


@pytest.mark.parametrize("change, message", [
    (lambda s: s["mounts"].append({"destination": "/x", "type": "nfs", "source": "srv:/x"}),
     "mount type 'nfs' cannot be made"),
    (lambda s: s["mounts"].append({"destination": "/host", "type": "bind", "source": "/", "options": ["rbind"]}),
     "never shown to a picoprocess"),
    (lambda s: s.pop("process"), "process: missing"),
    (lambda s: s["process"].update(args=[]), "process.args: must not be empty"),
    (lambda s: s["process"].update(cwd="relative"), "must be an absolute path"),
    (lambda s: s.update(hooks={"createContainer": [{"path": "/bin/true"}]}), "hooks.createContainer"),
    (lambda s: s.update(annotations={"org.picoproc.strict": "true"}), "org.picoproc.strict"),
    (lambda s: s.update(annotations={"org.picoproc.nonsense": "1"}), "unknown picoproc annotation"),
    (lambda s: s.update(ociVersion="2.0.0"), "ociVersion"),
    (lambda s: s["process"]["rlimits"].append({"type": "RLIMIT_BOGUS", "soft": 1, "hard": 1}), "unknown rlimit"),
])
@pytest.mark.unit
def test_bundles_that_cannot_run_are_refused_with_the_field_named(tmp_path, change, message):
    spec = base_spec()
    bundle = make_bundle(tmp_path, spec)
    change(spec)
    with pytest.raises(SpecError, match=message.replace("(", r"\(").replace(")", r"\)")):
        plan_from_spec(spec, str(bundle), rootless=False)


@pytest.mark.unit
def test_features_lists_the_annotations_it_reads():
    doc = features()
    assert doc["ociVersionMax"] == spec_mod.OCI_VERSION_MAX
    assert set(spec_mod.ANNOTATIONS) <= set(doc["annotations"])
    assert doc["linux"]["capabilities"] == []


# -- the command line, as a shim drives it ----------------------------------------------


class Runtime:
    def __init__(self, root: pathlib.Path) -> None:
        self.exe = runtime_exe()
        self.root = str(root / "state")
        self.log = str(root / "runtime.log")

    def __call__(self, *args, check=True, **kw):
        proc = subprocess.run([self.exe, "--root", self.root, "--log", self.log, "--log-format", "json", *args],
                              capture_output=True, text=True, timeout=TIMEOUT, stdin=subprocess.DEVNULL, **kw)
        if check:
            assert proc.returncode == 0, (args, proc.stdout, proc.stderr)
        return proc

    def shim(self, cid: str, bundle: pathlib.Path, pid_file: pathlib.Path, stdout) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, str(HERE / "oci_shim.py"), str(TIMEOUT), self.exe, "--root", self.root,
             "--log", self.log, "--log-format", "json", "--", "create", "--bundle", str(bundle),
             "--pid-file", str(pid_file), cid],
            stdout=stdout, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True)

    def state(self, cid: str) -> dict:
        return json.loads(self("state", cid).stdout)


def _read_line(path: pathlib.Path, prefix: str, timeout: float = TIMEOUT) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in path.read_text().splitlines():
            if line.startswith(prefix):
                return line
        time.sleep(0.02)
    raise AssertionError(f"no {prefix!r} line in {path}: {path.read_text()!r}")


def _cgroup_dirs(cid: str) -> list[str]:
    found = []
    for base in ("/sys/fs/cgroup", "/sys/fs/cgroup/memory", "/sys/fs/cgroup/pids", "/sys/fs/cgroup/cpu"):
        path = os.path.join(base, "picoproc-oci", cid)
        if os.path.exists(path):
            found.append(path)
    return found


@pytest.mark.slow
@pytest.mark.skipif(os.geteuid() != 0, reason="the engine-facing runtime runs as root")
def test_create_start_state_kill_delete_like_runc(tmp_path):
    spec = base_spec(["sh", "-c", "echo started | tee /tmp/started; exec sleep 60"])
    bundle = make_bundle(tmp_path, spec)
    rt = Runtime(tmp_path)
    cid = f"pico-{os.getpid()}-lifecycle"
    out = tmp_path / "shim.out"
    with open(out, "w") as f:
        shim = rt.shim(cid, bundle, tmp_path / "pid", f)
    try:
        pid = int(_read_line(out, "created").split()[1])
        assert int((tmp_path / "pid").read_text()) == pid
        st = rt.state(cid)
        assert (st["status"], st["pid"], st["bundle"], st["id"]) == ("created", pid, str(bundle), cid)
        assert "started" not in out.read_text()  # create prepares, the program waits for start
        assert _cgroup_dirs(cid), "the container's cgroup exists from create on"
        again = rt("create", "--bundle", str(bundle), "--pid-file", str(tmp_path / "pid2"), cid, check=False)
        assert again.returncode == 1 and "already exists" in again.stderr
        rt("start", cid)
        _read_line(out, "started")
        assert rt.state(cid)["status"] == "running"
        st2 = rt("start", cid, check=False)
        assert st2.returncode == 1 and "already running" in st2.stderr
        gone = rt("delete", cid, check=False)
        assert gone.returncode == 1 and "not stopped" in gone.stderr
        ps = json.loads(rt("ps", "--format", "json", cid).stdout)
        assert len(ps) >= 2 and pid not in ps  # the reaper and the program, not the monitor
        # exec: a second program in the same picoprocess (its files, hostname,
        # pid namespace), with its own exit status; the container runs on.
        ex = rt("exec", cid, "sh", "-c", "cat /tmp/started; hostname; echo $$; exit 4", check=False)
        assert (ex.returncode, ex.stdout.split("\n")[:2]) == (4, ["started", "ocitest"])
        assert int(ex.stdout.split()[2]) < 10  # a pid of the picoprocess's namespace, not the host's
        ex = rt("exec", cid, "sh", "-c", "kill -9 $$", check=False)
        assert ex.returncode == 128 + signal.SIGKILL
        assert rt.state(cid)["status"] == "running"
        nosuch = rt("exec", cid, "nosuch", check=False)
        assert nosuch.returncode == 1 and "executable file not found" in nosuch.stderr
        rt("kill", cid, "TERM")
        assert _read_line(out, "signaled").split()[1] == str(signal.SIGTERM)
        st = rt.state(cid)
        assert (st["status"], st["pid"]) == ("stopped", 0)
        k = rt("kill", cid, "KILL", check=False)
        assert k.returncode == 1 and "not running" in k.stderr
        assert rt("kill", "--all", cid, "KILL", check=False).returncode == 0
        rt("delete", cid)
        assert not os.path.exists(os.path.join(rt.root, cid))
        assert _cgroup_dirs(cid) == []
        for p in ps:
            assert not os.path.exists(f"/proc/{p}"), f"process {p} outlived the container"
        missing = rt("state", cid, check=False)
        assert missing.returncode == 1 and "does not exist" in missing.stderr
        assert rt("delete", "--force", cid, check=False).returncode == 0
        assert rt("delete", cid, check=False).returncode == 1
        logged = [json.loads(line) for line in open(rt.log)]
        assert any(e["level"] == "warning" and "(/dev/pts)" in e["msg"] for e in logged)
        assert any(e["level"] == "error" and "already exists" in e["msg"] for e in logged)
    finally:
        rt("delete", "--force", cid, check=False)
        shim.wait(timeout=TIMEOUT)
    assert shim.returncode == 0


@pytest.mark.skipif(os.geteuid() != 0, reason="the engine-facing runtime runs as root")
def test_the_container_process_exits_with_the_programs_status(tmp_path):
    spec = base_spec(["sh", "-c", "echo out; echo err >&2; exit 7"])
    bundle = make_bundle(tmp_path, spec)
    rt = Runtime(tmp_path)
    cid = f"pico-{os.getpid()}-status"
    out = tmp_path / "shim.out"
    with open(out, "w") as f:
        shim = rt.shim(cid, bundle, tmp_path / "pid", f)
    try:
        _read_line(out, "created")
        rt("start", cid)
        assert _read_line(out, "exited") == "exited 7"
        # The engine's stdio is the program's.
        assert "out\n" in out.read_text()
        assert (tmp_path / "pid.stderr").read_text() == "err\n"
        rt("delete", cid)
    finally:
        rt("delete", "--force", cid, check=False)
        shim.wait(timeout=TIMEOUT)


@pytest.mark.skipif(os.geteuid() != 0, reason="the engine-facing runtime runs as root")
def test_run_in_the_foreground_returns_the_status_and_cleans_up(tmp_path):
    spec = base_spec(["sh", "-c", "hostname; id -u; cat /etc/passwd; echo x > /tmp/f && cat /tmp/f; "
                      "echo y > /etc/f; exit 3"])
    bundle = make_bundle(tmp_path, spec)
    rt = Runtime(tmp_path)
    cid = f"pico-{os.getpid()}-run"
    proc = rt("run", "--bundle", str(bundle), cid, check=False)
    assert proc.returncode == 3, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[:4] == ["ocitest", "0", "root:x:0:0:root:/root:/bin/sh", "x"]
    assert "Read-only file system" in proc.stderr  # root.readonly
    assert not os.path.exists(os.path.join(rt.root, cid))
    assert _cgroup_dirs(cid) == []


@pytest.mark.skipif(os.geteuid() != 0, reason="the engine-facing runtime runs as root")
def test_commands_on_unknown_containers_fail_like_runc(tmp_path):
    rt = Runtime(tmp_path)
    for args in (("state", "nope"), ("start", "nope"), ("kill", "nope", "KILL"), ("delete", "nope")):
        proc = rt(*args, check=False)
        assert proc.returncode == 1 and "does not exist" in proc.stderr, args
    assert rt("delete", "--force", "nope", check=False).returncode == 0
    bad = rt("state", "../x", check=False)
    assert bad.returncode == 1 and "invalid container ID" in bad.stderr
    assert "picoproc-oci version" in rt("--version").stdout


def test_run_as_an_unprivileged_user(unpriv_env):
    """An unprivileged runtime (rootless engines): the guest runs as the caller,
    no cgroup is made (noted), and no network namespace (noted, nothing granted)."""
    base = pathlib.Path(tempfile.mkdtemp(prefix="picoproc-oci-unpriv-"))  # pytest's tmp is root-only
    try:
        spec = base_spec(["sh", "-c", "id -u; hostname; echo x > /tmp/f && cat /tmp/f; exit 5"])
        spec["linux"]["resources"] = {}
        bundle = make_bundle(base, spec)
        state = base / "state"
        state.mkdir()
        os.chmod(state, 0o777)
        proc = subprocess.run(
            [*unpriv_env["prefix"], unpriv_env["python"], "-m", "picoproc.oci.cli", "--root", str(state),
             "run", "--bundle", str(bundle), "rootless"],
            capture_output=True, timeout=TIMEOUT, env=unpriv_env["env"], cwd="/", stdin=subprocess.DEVNULL,
            check=False)
        assert proc.returncode == 5, proc.stderr
        assert proc.stdout == b"0\nocitest\nx\n"
        assert os.listdir(state) == []
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.mark.skipif(os.geteuid() != 0, reason="the engine-facing runtime runs as root")
def test_links_in_the_image_never_reach_host_files(tmp_path):
    """The image is hostile: an absolute link to a host secret resolves inside
    the image, and a linked etc/passwd is not read by the root-run runtime
    for HOME."""
    secret = tmp_path / "host-secret"
    secret.write_text("host-only:x:0:0::/host-home-leaked:/bin/sh\n")
    spec = base_spec(["sh", "-c", "cat /leak; echo HOME=$HOME"])
    spec["process"]["env"] = ["PATH=/bin"]
    bundle = make_bundle(tmp_path, spec)
    rootfs = bundle / "rootfs"
    (rootfs / "leak").symlink_to(str(secret))
    (rootfs / "etc" / "passwd").unlink()
    (rootfs / "etc" / "passwd").symlink_to(str(secret))
    rt = Runtime(tmp_path)
    proc = rt("run", "--bundle", str(bundle), f"pico-{os.getpid()}-links", check=False)
    assert "host-only" not in proc.stdout + proc.stderr
    assert proc.stdout.splitlines()[-1] == "HOME=/"
    assert "No such file" in proc.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="the engine-facing runtime runs as root")
def test_garbage_on_the_control_socket_leaves_the_container_working(tmp_path):
    import socket as socket_mod

    spec = base_spec(["sh", "-c", "echo started"])
    bundle = make_bundle(tmp_path, spec)
    rt = Runtime(tmp_path)
    cid = f"pico-{os.getpid()}-garbage"
    out = tmp_path / "shim.out"
    with open(out, "w") as f:
        shim = rt.shim(cid, bundle, tmp_path / "pid", f)
    try:
        _read_line(out, "created")
        ctl = os.path.join(rt.root, cid, "ctl.sock")
        assert os.stat(ctl).st_mode & 0o077 == 0  # root only
        # (message, whether an answer comes): an error for every bad request;
        # a signal for an exec session that does not exist is dropped.
        for message, answered in ((b"\xff\xfe not json", True), (b"[]", True), (b'{"op": "nonsense"}', True),
                                  (b'{"op": "exec"}', True), (b'{"op": "signal", "signal": 9}', False),
                                  (b"", False), (b"x" * (2 << 20), False)):
            with socket_mod.socket(socket_mod.AF_UNIX, socket_mod.SOCK_SEQPACKET) as s:
                s.settimeout(TIMEOUT)
                s.connect(ctl)
                try:
                    s.send(message)
                except OSError:
                    assert len(message) > 1 << 20  # the kernel refuses it: EMSGSIZE
                    continue
                if answered:
                    assert b"error" in s.recv(65536)
        assert rt.state(cid)["status"] == "created"
        rt("start", cid)
        assert _read_line(out, "exited") == "exited 0"
        assert "started" in out.read_text()
        rt("delete", cid)
    finally:
        rt("delete", "--force", cid, check=False)
        shim.wait(timeout=TIMEOUT)


def _proc_status(pid: int) -> dict:
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            out[key] = value.split()
    return out


@pytest.mark.skipif(os.geteuid() != 0, reason="the engine-facing runtime runs as root")
def test_an_exec_d_program_is_confined_like_the_container_seen_from_outside(tmp_path):
    spec = base_spec(["sh", "-c", "echo started; exec sleep 60"])
    bundle = make_bundle(tmp_path, spec)
    rt = Runtime(tmp_path)
    cid = f"pico-{os.getpid()}-confined"
    out = tmp_path / "shim.out"
    with open(out, "w") as f:
        shim = rt.shim(cid, bundle, tmp_path / "pid", f)
    execer = None
    try:
        _read_line(out, "created")
        rt("start", cid)
        _read_line(out, "started")
        before = set(json.loads(rt("ps", "--format", "json", cid).stdout))
        execer = subprocess.Popen([rt.exe, "--root", rt.root, "exec", cid, "sleep", "50"],
                                  stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + TIMEOUT
        while True:
            new = set(json.loads(rt("ps", "--format", "json", cid).stdout)) - before
            sleepers = [p for p in new if open(f"/proc/{p}/cmdline", "rb").read().endswith(b"sleep\x0050\x00")]
            if sleepers or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert len(sleepers) == 1, new
        started = json.loads((pathlib.Path(rt.root) / cid / "started.json").read_text())
        main, other = started["guest_pid"], sleepers[0]
        for ns in ("user", "pid", "mnt", "net", "ipc", "uts", "cgroup"):
            assert os.readlink(f"/proc/{other}/ns/{ns}") == os.readlink(f"/proc/{main}/ns/{ns}"), ns
            if ns != "cgroup":
                assert os.readlink(f"/proc/{other}/ns/{ns}") != os.readlink(f"/proc/self/ns/{ns}"), ns
        st = _proc_status(other)
        assert st["Uid"] == ["65534"] * 4 and st["Gid"] == ["65534"] * 4
        assert st["CapEff"] == st["CapPrm"] == st["CapBnd"] == ["0000000000000000"]
        assert st["NoNewPrivs"] == ["1"] and st["Seccomp"] == ["2"]
        assert st["NSpid"][-1] != str(other)  # it has a pid of the picoprocess's own
        os.kill(other, signal.SIGKILL)
        assert execer.wait(timeout=TIMEOUT) == 128 + signal.SIGKILL
        assert rt.state(cid)["status"] == "running"
        rt("kill", cid, "KILL")
        assert _read_line(out, "signaled") == f"signaled {int(signal.SIGKILL)}"
        rt("delete", cid)
    finally:
        if execer is not None and execer.poll() is None:
            execer.kill()
            execer.wait(timeout=TIMEOUT)
        rt("delete", "--force", cid, check=False)
        shim.wait(timeout=TIMEOUT)


@pytest.mark.skipif(os.geteuid() != 0, reason="the engine-facing runtime runs as root")
def test_annotations_hide_paths_and_write_the_audit(tmp_path):
    spec = base_spec(["sh", "-c", "cat /srv/visible; cat /srv/secret.txt; cat /srv/id_rsa; echo end"])
    spec["annotations"] = {"org.picoproc.hidden": "/srv/secret.txt", "org.picoproc.hidden-names": "id_rsa",
                           "org.picoproc.audit": "true"}
    bundle = make_bundle(tmp_path, spec)
    srv = bundle / "rootfs" / "srv"
    srv.mkdir()
    for name, text in (("visible", "shown\n"), ("secret.txt", "SECRET\n"), ("id_rsa", "KEY\n")):
        (srv / name).write_text(text)
    rt = Runtime(tmp_path)
    proc = rt("run", "--bundle", str(bundle), f"pico-{os.getpid()}-annot", check=False)
    assert proc.stdout == "shown\nend\n"
    assert proc.stderr.count("Permission denied") == 2
    audit = [json.loads(line) for line in (bundle / "picoproc-audit.jsonl").read_text().splitlines()]
    denied = {r.get("uri", r.get("path", "")) for r in audit if r["decision"] == "deny"}
    assert any(d.endswith("/srv/secret.txt") for d in denied) and any(d.endswith("/srv/id_rsa") for d in denied)
