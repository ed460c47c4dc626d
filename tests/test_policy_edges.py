"""Policy edges: what `hidden`, read-only and `noexec` mean must hold however
the guest reaches a file, and guest sockets take only the options the ABI
table lists.

Each test observes the effect from inside a real program (cat, the dynamic
loader, ctypes, mmap, setsockopt) and fails on a monitor that enforces the
rule by name only.
"""

from __future__ import annotations

import os
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
        ["run", "--mount", f"/data={data}", "--mount", f"/alias={alias}", "--mount", f"/inner={inner}",
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
