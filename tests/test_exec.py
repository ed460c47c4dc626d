"""Executables as Linux starts them: /proc/self/exe, AT_EXECFN, the process
name and glibc's $ORIGIN for programs reached through symbolic links (the
Debian alternatives layout of /usr/bin/java), #! chains and relative paths,
each compared with a native run under the guest's identity.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import shutil
import subprocess
import tempfile

import pytest

api = pytest.importorskip("picoproc.api")
from picoproc.manifest import Mount, default_manifest  # noqa: E402

pytestmark = pytest.mark.root

GUEST_TIMEOUT = 120.0
ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": "/tmp", "TMPDIR": "/tmp"}

PROG = r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <unistd.h>
const char *app_name(void);
int main(int argc, char **argv)
{
    char exe[4096], comm[64] = "";
    ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    exe[n > 0 ? n : 0] = 0;
    FILE *f = fopen("/proc/self/comm", "r");
    if (f && fgets(comm, sizeof(comm), f))
        comm[strcspn(comm, "\n")] = 0;
    printf("argv0=%s execfn=%s exe=%s comm=%s lib=%s\n", argv[0], (const char *)getauxval(AT_EXECFN), exe, comm,
           app_name());
    return 0;
}
"""
LIB = 'const char *app_name(void) { return "from-libapp"; }\n'


def as_guest_identity() -> list[str]:
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) is needed to run the native side as the guest's identity")
    return ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


@pytest.fixture(scope="module")
def searchable_tmp():
    """A directory the guest's identity can reach (pytest's own temporary
    directories are private to their owner), outside the guest's own /tmp
    (the fixture is shown at its host path, its links are absolute)."""
    d = pathlib.Path(tempfile.mkdtemp(prefix="picoproc-exec-", dir="/var/tmp"))
    d.chmod(0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def tree(searchable_tmp):
    """opt/app/{bin/prog,lib/libapp.so} with RUNPATH $ORIGIN/../lib, reached
    as usr/bin/prog -> etc/alternatives/prog -> opt/app/bin/prog (absolute
    links, as update-alternatives makes them), plus #! scripts."""
    if shutil.which("gcc") is None:
        pytest.skip("gcc is needed to build the fixture")
    root = searchable_tmp / "tree"
    root.mkdir()
    for d in ("opt/app/bin", "opt/app/lib", "etc/alternatives", "usr/bin", "work"):
        (root / d).mkdir(parents=True)
    (root / "prog.c").write_text(PROG)
    (root / "lib.c").write_text(LIB)
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(root / "opt/app/lib/libapp.so"), str(root / "lib.c")],
                   check=True, timeout=60)
    subprocess.run(["gcc", "-o", str(root / "opt/app/bin/prog"), str(root / "prog.c"),
                    f"-L{root / 'opt/app/lib'}", "-lapp", "-Wl,-rpath,$ORIGIN/../lib", "-Wl,--enable-new-dtags"],
                   check=True, timeout=60)
    (root / "etc/alternatives/prog").symlink_to(root / "opt/app/bin/prog")
    (root / "usr/bin/prog").symlink_to(root / "etc/alternatives/prog")
    (root / "usr/bin/relprog").symlink_to("../../opt/app/bin/prog")  # relative link
    script = root / "work/run.sh"
    script.write_text(f"#!{root}/usr/bin/prog\n")  # #! naming the symlink
    script.chmod(0o755)
    chain = root / "work/chain"
    chain.write_text(f"#!{script}\n")  # #! naming a #! script
    chain.chmod(0o755)
    (root / "work/alias.sh").symlink_to("run.sh")
    for dirpath, dirnames, filenames in os.walk(root):
        os.chmod(dirpath, 0o755)
    p = root
    while p != p.parent:  # the path down to the fixture must be searchable
        if os.stat(p).st_mode & 0o005 != 0o005:
            pytest.skip(f"{p} is not searchable by the guest's identity")
        p = p.parent
    return root


def both(tree, argv: list[str], cwd: str):
    base = default_manifest()
    m = dataclasses.replace(base, mounts=(*base.mounts, Mount(str(tree), str(tree))), cwd=cwd,
                            env=(*base.env, ("PATH", f"{tree}/usr/bin:/usr/bin:/bin")))
    got = api.Sandbox(m).run(argv, capture=True, timeout=GUEST_TIMEOUT)
    want = subprocess.run([*as_guest_identity(), *argv], cwd=cwd, capture_output=True, timeout=GUEST_TIMEOUT,
                          env={**ENV, "PATH": f"{tree}/usr/bin:/usr/bin:/bin"})
    return got, want


@pytest.mark.parametrize("how", ["symlink", "relative-link", "relative-path", "dotdot", "path-search",
                                 "shebang", "shebang-chain", "symlinked-script", "exec-from-shell"])
def test_symlinked_executable_matches_native(tree, how):
    work = str(tree / "work")
    argv = {
        "symlink": [f"{tree}/usr/bin/prog"],
        "relative-link": [f"{tree}/usr/bin/relprog"],
        "relative-path": ["../opt/app/bin/prog"],
        "dotdot": [f"{tree}/usr/bin/../bin/prog"],
        "path-search": ["/bin/sh", "-c", "prog"],
        "shebang": ["./run.sh"],
        "shebang-chain": ["./chain"],
        "symlinked-script": ["./alias.sh"],
        "exec-from-shell": ["/bin/sh", "-c", "cd ../usr/bin && exec ./prog"],
    }[how]
    got, want = both(tree, argv, work)
    assert want.returncode == 0, want.stderr
    assert got.exit_code == 0, (got.stderr, got.unsupported)
    assert got.stdout == want.stdout, got.stderr
    # What Linux says, spelled out: the image behind every link, $ORIGIN
    # taken from it (the library was found), the name as run.
    out = got.stdout.decode()
    assert f"exe={tree}/opt/app/bin/prog " in out and "lib=from-libapp" in out


def test_python_exe_names_the_real_interpreter():
    script = "import os, sys; print(os.readlink('/proc/self/exe'), sys.executable)"
    got = api.Sandbox().run(["/usr/bin/python3", "-c", script], capture=True, timeout=GUEST_TIMEOUT)
    want = subprocess.run([*as_guest_identity(), "/usr/bin/python3", "-c", script], capture_output=True,
                          timeout=GUEST_TIMEOUT, env=ENV)
    assert got.exit_code == 0, got.stderr
    assert got.stdout == want.stdout
    assert got.stdout.decode().split()[0] == os.path.realpath("/usr/bin/python3")


JAVA = """
public class Where {
    public static void main(String[] a) {
        System.out.println(System.getProperty("java.home"));
        System.out.println(ProcessHandle.current().info().command().orElse("?"));
        System.out.println(Runtime.version().feature());
    }
}
"""


def test_java_started_as_usr_bin_java(searchable_tmp):
    """A chain of links as Debian installs Java: /usr/bin/java -> /etc/alternatives/java ->
    /usr/lib/jvm/.../bin/java finds libjli.so through $ORIGIN."""
    if not (os.path.islink("/usr/bin/java") and shutil.which("javac")):
        pytest.skip("openjdk-17-jdk-headless is not installed (setup.sh installs it)")
    tmp_path = searchable_tmp / "java"
    tmp_path.mkdir()
    (tmp_path / "Where.java").write_text(JAVA)
    subprocess.run(["javac", "-d", str(tmp_path), str(tmp_path / "Where.java")], check=True, timeout=GUEST_TIMEOUT)
    tmp_path.chmod(0o755)
    (tmp_path / "Where.class").chmod(0o644)
    base = default_manifest()
    m = dataclasses.replace(base, mounts=(*base.mounts, Mount("/app", str(tmp_path))))
    got = api.Sandbox(m).run(["/usr/bin/java", "-Xshare:auto", "-cp", "/app", "Where"], capture=True,
                             timeout=GUEST_TIMEOUT)
    want = subprocess.run([*as_guest_identity(), "/usr/bin/java", "-Xshare:auto", "-cp", str(tmp_path), "Where"],
                          capture_output=True, timeout=GUEST_TIMEOUT, env=ENV)
    assert want.returncode == 0, want.stderr
    assert got.exit_code == 0, (got.stderr, got.unsupported)
    assert got.stdout == want.stdout
    assert got.stdout.decode().splitlines()[1] == os.path.realpath("/usr/bin/java")
