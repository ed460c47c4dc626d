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


def test_mount_table_identity_follows_bind_roots_stacked_mounts_and_escapes():
    from picoproc.monitor import MountTable

    table = MountTable(
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
    assert MountTable("").identity("/x") is None


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
