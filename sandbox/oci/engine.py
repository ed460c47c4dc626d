"""A private podman for the tests and the start-up benchmark: its own storage,
run, network-config and runtime-state directories under one temporary
directory, images built locally (no registry is reachable), and a clean-up
that checks from outside that nothing is left.

Images:

* ``busybox``: busybox-static's binary and its applet links, ``FROM scratch``;
* ``python``: a Debian rootfs cut from this host's packages: python3 with
  its standard library and the C libraries it links, plus busybox as the
  shell.  Made with ``podman import`` of a tarball.

The runtimes compared (when installed): runc, crun, runsc and picoproc-oci.
crun 1.x refuses a host in cgroup "hybrid" mode (v1 controllers plus a
cgroup2 mount with a controller), so here it runs through a wrapper that
detaches the cgroup2 mount in a private mount namespace first; runsc runs
with ``--network=none`` (Debian's runsc cannot join an engine's netns here)
and ``--interactive`` (see ``runtime``).
"""

from __future__ import annotations

import dataclasses
import os
import shlex
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time

from picoproc.errors import PicoprocError
from picoproc.mountinfo import read_mountinfo

PYTHON = "python3.11"
# Debian's own packages (not whatever else PATH finds first).
PYTHON_EXE = f"/usr/bin/{PYTHON}"
BUSYBOX_EXE = "/bin/busybox"
_BUSYBOX_APPLETS = ("sh", "echo", "cat", "ls", "true", "sleep", "id", "hostname", "env", "wc", "head")
_TIMEOUT_S = 120


class EngineUnavailable(PicoprocError):
    """The engine (or a runtime) cannot run here; the message says why."""


def oci_runtime_path() -> str:
    """The picoproc-oci command of this installation."""
    found = shutil.which("picoproc-oci", path=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
    if not found:
        raise EngineUnavailable("picoproc-oci is not installed (pip install -e .)")
    return found


def cgroup_hybrid() -> bool:
    try:
        with open("/sys/fs/cgroup/unified/cgroup.controllers") as f:
            return bool(f.read().strip())
    except OSError:
        return False


@dataclasses.dataclass(frozen=True)
class Runtime:
    name: str
    path: str  # what podman gets as --runtime
    flags: tuple[str, ...] = ()  # --runtime-flag values
    run_args: tuple[str, ...] = ()  # extra `podman run/create` arguments it needs


class PrivatePodman:
    def __init__(self, base: str | None = None) -> None:
        podman = shutil.which("podman")
        if podman is None:
            raise EngineUnavailable("podman is not installed (setup.sh installs it)")
        if os.geteuid() != 0:
            raise EngineUnavailable("podman tests run as root (rootless podman needs subuid ranges)")
        self.podman = podman
        self.dir = tempfile.mkdtemp(prefix="picoproc-podman-", dir=base)
        os.chmod(self.dir, 0o711)
        for sub in ("root", "run", "tmp", "net", "state", "bin", "images"):
            os.mkdir(os.path.join(self.dir, sub), 0o711)
        self.conf = os.path.join(self.dir, "containers.conf")
        # No CAP_SYS_RESOURCE here: podman's default rlimits for root
        # (1048576 open files) cannot be set, whatever the runtime.
        nofile = min(_hard_limit("RLIMIT_NOFILE"), 1024)
        with open(self.conf, "w") as f:
            f.write("[containers]\n"
                    f'default_ulimits = ["nofile={nofile}:{nofile}", "nproc=4096:4096"]\n'
                    "[network]\n"
                    f'network_config_dir = "{self.dir}/net"\n')
        self.env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
                    "CONTAINERS_CONF": self.conf, "HOME": self.dir}
        self.base = [podman, "--root", f"{self.dir}/root", "--runroot", f"{self.dir}/run",
                     "--tmpdir", f"{self.dir}/tmp", "--storage-driver", "overlay",
                     "--cgroup-manager", "cgroupfs", "--events-backend", "file"]

    # -- running podman ---------------------------------------------------------

    def cmd(self, runtime: Runtime | None, *args: str) -> list[str]:
        cmd = list(self.base)
        if runtime is not None:
            cmd += ["--runtime", runtime.path]
            for flag in runtime.flags:
                cmd += ["--runtime-flag", flag]
        return cmd + list(args)

    def run(self, runtime: Runtime | None, *args: str, check: bool = True, timeout: float = _TIMEOUT_S,
            input: bytes | None = None) -> subprocess.CompletedProcess:
        # conmon writes a file named "oom" into its working directory when a
        # container is killed for memory: keep it inside the private tree.
        proc = subprocess.run(self.cmd(runtime, *args), env=self.env, capture_output=True,
                              timeout=timeout, input=input, check=False, cwd=self.dir)
        if check and proc.returncode != 0:
            raise RuntimeError(f"podman {' '.join(args)}: status {proc.returncode}: "
                               f"{proc.stderr.decode(errors='replace').strip()}")
        return proc

    # -- runtimes ---------------------------------------------------------------

    def runtime(self, name: str) -> Runtime:
        """A runtime by name: picoproc, runc, crun, runsc (EngineUnavailable if
        absent).  Each is a small wrapper script in the private directory
        that adds ``--root`` for its state: podman 4.3 drops
        ``--runtime-flag`` from the clean-up it runs after a container exits,
        so a flag would send that ``delete`` to the global state."""
        state = f"{self.dir}/state/{name}"
        flags = ["--root", state]
        run_args: tuple[str, ...] = ()
        if name == "picoproc":
            exe = oci_runtime_path()
        else:
            exe = shutil.which(name)
            if exe is None:
                raise EngineUnavailable(f"{name} is not installed")
        command = shlex.join([exe, *flags]) + ' "$@"'
        if name == "crun" and cgroup_hybrid():
            unshare = shutil.which("unshare") or "unshare"
            command = (f"exec {unshare} --mount --propagation private sh -c "
                       f"'umount -l /sys/fs/cgroup/unified 2>/dev/null; exec {shlex.join([exe, *flags])} \"$@\"' "
                       'crun "$@"')
        else:
            command = "exec " + command
        if name == "runsc":
            command = command.replace(shlex.join([exe, *flags]), shlex.join([exe, *flags, "--network=none"]))
            # runsc fchown()s the stdio it is given to its sandbox user: given
            # conmon's /dev/null for stdin, that is the host's /dev/null
            # (seen: it became nobody's).  --interactive makes stdin a pipe.
            run_args = ("--network", "none", "--interactive")
        wrapper = os.path.join(self.dir, "bin", name)
        with open(wrapper, "w") as f:
            f.write(f"#!/bin/sh\n{command}\n")
        os.chmod(wrapper, 0o755)
        return Runtime(name, wrapper, (), run_args)

    # -- images -----------------------------------------------------------------

    def build_images(self) -> dict[str, str]:
        """Imports the busybox and python images; returns {name: reference}."""
        out = {}
        for name, build in (("busybox", self._busybox_tree), ("python", self._python_tree)):
            tar = os.path.join(self.dir, "images", f"{name}.tar")
            with tarfile.open(tar, "w") as t:
                build(t)
            ref = f"localhost/picoproc-test-{name}:1"
            self.run(None, "import", tar, ref)
            os.unlink(tar)
            out[name] = ref
        return out

    @staticmethod
    def _add_dir(t: tarfile.TarFile, name: str, mode: int = 0o755) -> None:
        info = tarfile.TarInfo(name)
        info.type, info.mode = tarfile.DIRTYPE, mode
        t.addfile(info)

    @staticmethod
    def _add_link(t: tarfile.TarFile, name: str, target: str) -> None:
        info = tarfile.TarInfo(name)
        info.type, info.linkname, info.mode = tarfile.SYMTYPE, target, 0o777
        t.addfile(info)

    @staticmethod
    def _add_text(t: tarfile.TarFile, name: str, text: str) -> None:
        import io

        data = text.encode()
        info = tarfile.TarInfo(name)
        info.size, info.mode = len(data), 0o644
        t.addfile(info, io.BytesIO(data))

    def _busybox_tree(self, t: tarfile.TarFile) -> None:
        busybox = BUSYBOX_EXE
        if not os.path.exists(busybox):
            raise EngineUnavailable(f"{busybox} is not installed (busybox-static)")
        self._add_dir(t, "bin")
        self._add_dir(t, "tmp", 0o1777)
        t.add(os.path.realpath(busybox), "bin/busybox")
        for applet in _BUSYBOX_APPLETS:
            self._add_link(t, f"bin/{applet}", "busybox")

    def _python_tree(self, t: tarfile.TarFile) -> None:
        exe = PYTHON_EXE
        if not os.path.exists(exe):
            raise EngineUnavailable(f"{exe} is not installed")
        for d in ("usr", "usr/bin", "usr/lib", "usr/lib/x86_64-linux-gnu", "usr/lib64", "etc", "root", "srv"):
            self._add_dir(t, d)
        self._add_dir(t, "tmp", 0o1777)
        for link, target in (("bin", "usr/bin"), ("lib", "usr/lib"), ("lib64", "usr/lib64")):
            self._add_link(t, link, target)
        t.add(os.path.realpath(exe), f"usr/bin/{PYTHON}")
        self._add_link(t, "usr/bin/python3", PYTHON)
        t.add(os.path.realpath(BUSYBOX_EXE), "usr/bin/busybox")
        for applet in _BUSYBOX_APPLETS:
            self._add_link(t, f"usr/bin/{applet}", "busybox")
        for lib in _shared_libraries(exe):
            t.add(os.path.realpath(lib), "usr/lib/x86_64-linux-gnu/" + os.path.basename(lib))
        loader = os.path.realpath("/lib64/ld-linux-x86-64.so.2")
        t.add(loader, "usr/lib64/ld-linux-x86-64.so.2")
        skip = {"test", "__pycache__", "idlelib", "tkinter", "ensurepip", "lib2to3", "turtledemo",
                "dist-packages", "site-packages"}
        t.add(f"/usr/lib/{PYTHON}", f"usr/lib/{PYTHON}",
              filter=lambda info: None if set(info.name.split("/")) & skip else info)
        self._add_text(t, "etc/passwd", "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/sh\n")
        self._add_text(t, "etc/group", "root:x:0:\nnogroup:x:65534:\n")

    # -- clean-up ---------------------------------------------------------------

    def leftovers(self) -> list[str]:
        """What the containers left that a clean-up must have removed, seen
        from outside: runtime state, mounts under the private dirs, processes
        whose command line names this podman's dirs."""
        found = []
        state = os.path.join(self.dir, "state")
        for runtime in sorted(os.listdir(state)) if os.path.isdir(state) else []:
            for entry in os.listdir(os.path.join(state, runtime)):
                found.append(f"runtime state {runtime}/{entry}")
        for mount in read_mountinfo():
            if mount.mount_point.startswith(self.dir + "/"):
                found.append(f"mount {mount.mount_point}")
        for pid in os.listdir("/proc"):
            if not pid.isdigit() or int(pid) == os.getpid():
                continue
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if self.dir in cmd and "podman" not in cmd.split()[0:1]:
                found.append(f"process {pid}: {cmd[:120]}")
        return found

    def settled_leftovers(self, timeout: float = 15.0) -> list[str]:
        """leftovers() once podman's asynchronous clean-up has had its chance
        (conmon and ``podman container cleanup`` finish after the command
        that removed the container has returned): empty, or what is still
        there after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.leftovers()
            if not found or time.monotonic() > deadline:
                return found
            time.sleep(0.1)

    def close(self) -> None:
        """Removes every container and image, unmounts the storage and deletes the directory."""
        try:
            self.run(None, "rm", "--all", "--force", "--time", "0", check=False, timeout=60)
            self.run(None, "rmi", "--all", "--force", check=False, timeout=60)
        except subprocess.TimeoutExpired:
            pass
        deadline = time.monotonic() + 10
        while True:
            mounts = [m.mount_point for m in read_mountinfo()
                      if m.mount_point == self.dir or m.mount_point.startswith(self.dir + "/")]
            if not mounts or time.monotonic() > deadline:
                break
            for point in sorted(mounts, key=len, reverse=True):
                subprocess.run(["umount", "-l", point], capture_output=True, check=False)
        shutil.rmtree(self.dir, ignore_errors=True)


def _hard_limit(name: str) -> int:
    import resource

    _, hard = resource.getrlimit(getattr(resource, name))
    return hard if hard != resource.RLIM_INFINITY else 1 << 20


def _shared_libraries(exe: str) -> list[str]:
    out = subprocess.run(["ldd", exe], capture_output=True, text=True, check=True).stdout
    libs = []
    for line in out.splitlines():
        parts = line.split("=>")
        if len(parts) == 2 and parts[1].strip().startswith("/"):
            libs.append(parts[1].split()[0])
    return libs
