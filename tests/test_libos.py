"""The library OS's loader and trap layer (docs/ARCHITECTURE.md, "The library
OS: loader and trap layer").

Guests run as picoprocesses in "libos" mode: the monitor's spawn installs the
trap filter and enters libos/picoproc-loader through the loader fd, which maps
the real program.  Mediated calls (pico_open of the images, pico_stat, ...)
are served by the monitor's native event loop (native/loop.c) with a policy
that shows the host's / read-only with exec allowed: these tests are about
the library OS, not about the file policy.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import re
import shutil
import signal
import stat
import struct
import subprocess
import tempfile
import threading

import pytest

from picoproc.libos import loader_path

pytestmark = pytest.mark.root

GUEST_TIMEOUT = 30.0
EXIT_CANNOT_RUN = 127
SECCOMP_FILTER_FLAG_NEW_LISTENER = 8
MEDIATED_NOTE_UNSUPPORTED = 14
MEDIATED_OPEN = 0
BUSYBOX = "/bin/busybox"
DEVICES = ("null", "zero", "full", "random", "urandom")
# The loader's own argv: loader [--option=value ...] -- PATH ARGV0 ARGS...
LOADER_SEPARATOR = "--"
REPO = pathlib.Path(__file__).resolve().parent.parent

native = pytest.importorskip("picoproc.native")
if not hasattr(native.lib, "pico_loop_new"):
    pytest.skip("the monitor's event loop (native/loop.c) is not built", allow_module_level=True)
ffi, lib = native.ffi, native.lib


@dataclasses.dataclass
class LibosRun:
    exit_code: int | None
    signal: int | None
    stdout: str
    stderr: str
    audit: list  # (call, decision, err, arg, arg2, text) for this guest

    @property
    def unsupported(self) -> list[int]:
        """Linux syscall numbers the library OS reported as unsupported."""
        return [a[3] for a in self.audit if a[0] == MEDIATED_NOTE_UNSUPPORTED]

    @property
    def opened(self) -> list[str]:
        return [a[5] for a in self.audit if a[0] == MEDIATED_OPEN]


class MiniMonitor:
    """The native event loop serving one shared policy: host / read-only,
    exec allowed, plus writable directories (at their host paths) and the
    host's harmless devices as single-file mounts (/dev/null, zero, full,
    random, urandom: what the library OS asks the monitor for).  The full
    Monitor with manifests lives in sandbox/."""

    def __init__(self, writable=()):
        self.loop = lib.pico_loop_new(64, 65536)
        if self.loop == ffi.NULL:
            raise OSError("pico_loop_new failed")
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()
        if lib.pico_loop_wait_running(self.loop, 10000) != 1:
            raise RuntimeError("the monitor loop did not start")
        self.policy = lib.pico_fs_policy_new()
        root = os.open("/", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            rc = lib.pico_fs_policy_add_mount(self.policy, b"/", 1, root, ffi.NULL, 0, 1)
        finally:
            os.close(root)
        if rc != 0:
            raise OSError(-rc, "pico_fs_policy_add_mount")
        for d in writable:
            self._mount(str(d), str(d), None, writable=1)
        for name in DEVICES:
            self._mount(f"/dev/{name}", "/dev", name, writable=1)
        self.records = []
        self.lock = threading.Lock()

    def _mount(self, guest, host_dir, leaf, writable):
        fd = os.open(host_dir, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            g = guest.encode()
            c_leaf = ffi.NULL if leaf is None else ffi.new("char[]", leaf.encode())
            rc = lib.pico_fs_policy_add_mount(self.policy, g, len(g), fd, c_leaf, writable, 0)
        finally:
            os.close(fd)
        if rc != 0:
            raise OSError(-rc, f"pico_fs_policy_add_mount {guest}")

    def _serve(self):
        lib.pico_loop_run(self.loop, 65534, 65534, ffi.NULL, 0)

    def drain(self):
        buf = ffi.new("struct pico_audit_record[]", 256)
        with self.lock:
            while True:
                n = lib.pico_loop_drain_audit(self.loop, buf, 256)
                for i in range(n):
                    r = buf[i]
                    self.records.append((r.guest, r.call, r.decision, r.err, r.arg, r.arg2,
                                         bytes(ffi.buffer(r.text, r.text_len)).decode("utf-8", "replace")))
                if n < 256:
                    break

    def close(self):
        lib.pico_loop_stop(self.loop)
        self.thread.join(10)
        if not self.thread.is_alive():
            lib.pico_loop_free(self.loop)
        lib.pico_fs_policy_free(self.policy)

    def run(self, path, argv, env=None, options=(), stdin=None, timeout=GUEST_TIMEOUT) -> LibosRun:
        from picoproc import raw

        # Options given raw (not through picoproc.libos.loader_argv) so that
        # bad ones reach the loader.
        loader_argv = [str(loader_path()), *options, LOADER_SEPARATOR, str(path), *argv]
        from picoproc.monitor import GuestArea

        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, \
                open(os.devnull, "rb") as devnull, GuestArea() as area:
            stdin_fd = devnull.fileno() if stdin is None else stdin
            # With an argument area, as picoproc.api runs the library OS.
            spawned = raw.spawn_raw(loader_argv, env or {}, (stdin_fd, out.fileno(), err.fileno()),
                                    mode="libos", keep_image_fd=True,
                                    seccomp_flags=SECCOMP_FILTER_FLAG_NEW_LISTENER, area=area)
            spec = ffi.new("struct pico_guest_spec *")
            spec.listener_fd = spawned.listener_fd
            spec.pid = spawned.pid
            spec.fs = self.policy
            spec.net = ffi.NULL
            spec.guestnet_fd = -1
            spec.proc_fd = spec.listing_fd = -1  # no /proc view (tests/test_proc.py has one)
            spec.area_fd = area.area_fd
            channels = ffi.new("int[]", list(area.monitor_channels))
            spec.channel_fds = channels
            spec.n_channels = len(area.monitor_channels)
            spec.audit_allowed = 1
            try:
                handle = lib.pico_loop_add_guest(self.loop, spec)
            finally:
                os.close(spawned.listener_fd)
            assert handle > 0, f"pico_loop_add_guest: {handle}"
            try:
                result = raw.wait_raw_or_kill(spawned.pid, timeout)
            finally:
                stats = ffi.new("struct pico_guest_stats *")
                lib.pico_loop_remove_guest(self.loop, handle, stats)
            self.drain()
            mine = [r[1:] for r in self.records if r[0] == handle]
            out.seek(0)
            err.seek(0)
            return LibosRun(result.exit_code, result.signal, out.read().decode("utf-8", "replace"),
                            err.read().decode("utf-8", "replace"), mine)


@pytest.fixture(scope="module")
def writable_dir():
    """A directory the guest identity (nobody) may write, mounted writable at
    its host path."""
    d = tempfile.mkdtemp(prefix="picoproc-libos-rw-")
    os.chmod(d, 0o777)
    yield pathlib.Path(d)
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def monitor(writable_dir):
    if not loader_path().exists():
        pytest.fail(f"{loader_path()} is not built (pip install -e . builds it)", pytrace=False)
    m = MiniMonitor(writable=[writable_dir])
    yield m
    m.close()


@pytest.fixture(scope="module")
def probe(guest_bin):
    """The libc probe program in its three link modes."""
    return {kind: guest_bin / f"libos_probe.{kind}" for kind in ("static", "pie", "dyn")}


@pytest.fixture(scope="module")
def world_dir():
    """A directory the guest identity (nobody) can traverse: pytest's tmp_path
    is private to root."""
    d = tempfile.mkdtemp(prefix="picoproc-libos-test-")
    os.chmod(d, 0o755)
    yield pathlib.Path(d)
    shutil.rmtree(d, ignore_errors=True)


def parse_kv(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        for part in line.split(" "):
            if "=" in part:
                k, v = part.split("=", 1)
                out.setdefault(k, v)
    return out


# ---------------------------------------------------------------------------------------
# the build
# ---------------------------------------------------------------------------------------

def test_loader_is_static_and_inside_the_fixed_range():
    from picoproc.libos import build

    build.check_loader_layout(loader_path())
    out = subprocess.run(["readelf", "-lW", str(loader_path())], capture_output=True, text=True)
    if out.returncode == 0:
        assert "INTERP" not in out.stdout and "DYNAMIC" not in out.stdout


@pytest.mark.unit
def test_layout_check_rejects_an_image_outside_the_range(tmp_path):
    from picoproc.libos import build

    with pytest.raises(build.LoaderBuildError, match="outside"):
        build.check_loader_layout(pathlib.Path(BUSYBOX) if os.path.exists(BUSYBOX) else pathlib.Path("/bin/true"))


# ---------------------------------------------------------------------------------------
# the loader: real programs
# ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["static", "pie", "dyn"])
def test_initial_stack_and_auxv(monitor, probe, kind):
    r = monitor.run(probe[kind], ["probe-argv0", "auxv", "second arg"], env={"PROBE": "x y"},
                    options=["--uid=4242", "--gid=4343"])
    assert r.exit_code == 0, r.stderr
    kv = dict(line.split("=", 1) for line in r.stdout.splitlines() if "=" in line and " " not in line.split("=", 1)[0])
    assert kv["argc"] == "3"
    assert kv["argv[0]"] == "probe-argv0"
    assert kv["argv[1]"] == "auxv"
    assert kv["argv[2]"] == "second arg"
    assert kv["execfn"] == str(probe[kind])
    assert kv["pagesz"] == "4096"
    assert kv["phent"] == "56"
    assert kv["phdr_set"] == kv["entry_set"] == "1"
    assert kv["sysinfo_ehdr_set"] == "1"  # the vDSO is passed through
    assert kv["secure"] == "0"
    assert kv["random_nonzero"] != "0"
    assert kv["platform"] == "x86_64"
    assert kv["hwcap_set"] == "1"
    assert kv["clock_ok"] == "1"
    assert "uid=4242 euid=4242 gid=4343 egid=4343" in r.stdout
    assert "env PROBE=x y" in r.stdout
    # Image fds are closed after mapping; only the loader fd (execve) and the
    # argument area's memfd and its 4 channels stay.
    assert "extra_open_fds=0 loader_fd_open=1 area_fds=5" in r.stdout
    assert r.stdout.rstrip().endswith("ok")
    # The image was opened through the monitor with an execute check.
    assert f"file:{probe[kind]}" in r.opened


def test_dynamic_program_loads_its_interpreter_through_the_monitor(monitor, probe):
    r = monitor.run(probe["dyn"], ["p", "auxv"])
    assert r.exit_code == 0, r.stderr
    assert any(o.startswith("file:/lib64/ld-linux-x86-64.so.2") or "ld-linux" in o for o in r.opened)


def test_each_run_gets_fresh_at_random_and_at_base_names_the_interpreter(monitor, probe):
    # AT_RANDOM seeds the stack protector and pointer guard: never reused.
    seen = set()
    for kind in ("static", "static", "dyn"):
        r = monitor.run(probe[kind], ["p", "auxv"])
        hexes = [line.split("=", 1)[1] for line in r.stdout.splitlines() if line.startswith("random_hex=")]
        assert len(hexes) == 1 and len(hexes[0]) == 32, r.stdout
        seen.add(hexes[0])
        # AT_BASE: the interpreter's load address, 0 for a static program.
        assert f"base_set={1 if kind == 'dyn' else 0}" in r.stdout
    assert len(seen) == 3


@pytest.mark.skipif(not os.path.exists(BUSYBOX), reason="busybox-static is not installed")
def test_busybox_echo_and_true(monitor):
    r = monitor.run(BUSYBOX, ["echo", "hello", "picoprocess"])
    assert (r.exit_code, r.stdout) == (0, "hello picoprocess\n")
    r = monitor.run(BUSYBOX, ["true"])
    assert r.exit_code == 0
    r = monitor.run(BUSYBOX, ["false"])
    assert r.exit_code == 1


@pytest.mark.skipif(not os.path.exists(BUSYBOX), reason="busybox-static is not installed")
def test_busybox_uname_prints_the_virtual_identity(monitor):
    r = monitor.run(BUSYBOX, ["uname", "-a"], options=["--hostname=sandbox-7", "--release=6.1.0-test"])
    assert r.exit_code == 0, r.stderr
    assert r.stdout.startswith("Linux sandbox-7 6.1.0-test ")
    assert "x86_64" in r.stdout
    assert os.uname().nodename not in r.stdout.split()


@pytest.mark.skipif(not os.path.exists(BUSYBOX), reason="busybox-static is not installed")
def test_busybox_shell_pipelines_subshells_and_exec(monitor, world_dir):
    script = world_dir / "script.sh"
    script.write_text("#!/bin/busybox sh\necho \"script got: $*\"\n")
    script.chmod(0o755)
    r = monitor.run(BUSYBOX, ["sh", "-c",
                              f"echo one | {BUSYBOX} tr a-z A-Z; x=$(echo sub); echo $x; "
                              f"{script} a 'b c'; cd /tmp && pwd; exit 5"],
                    env={"PATH": "/bin:/usr/bin"})
    assert r.exit_code == 5, r.stderr
    assert r.stdout == "ONE\nsub\nscript got: a b c\n/tmp\n"


# ---------------------------------------------------------------------------------------
# #! scripts
# ---------------------------------------------------------------------------------------

@pytest.mark.skipif(not os.path.exists(BUSYBOX), reason="busybox-static is not installed")
def test_shebang_argument_splitting_and_nesting(monitor, world_dir):
    direct = world_dir / "direct"
    direct.write_text(f"#!{BUSYBOX} sh\necho \"$0 [$1] [$2]\"\n")
    direct.chmod(0o755)
    r = monitor.run(direct, ["ignored-argv0", "A", "B"])
    assert (r.exit_code, r.stdout) == (0, f"{direct} [A] [B]\n"), r.stderr
    # Interpreter line with blanks around and one argument holding a space;
    # a script whose interpreter is itself a script (Linux allows 4 levels):
    # argv = [inner, "extra arg", outer, q], as the kernel builds it.
    inner = world_dir / "inner"
    inner.write_text(f"#!{BUSYBOX} sh\necho \"[$0] [$1] [$2] [$3]\"\n")
    inner.chmod(0o755)
    outer = world_dir / "outer"
    outer.write_text(f"#!  {inner}   extra arg  \n")
    outer.chmod(0o755)
    r = monitor.run(outer, ["o", "q"])
    assert (r.exit_code, r.stdout) == (0, f"[{inner}] [extra arg] [{outer}] [q]\n"), r.stderr
    # The whole rest of the line is one argument, so "sh -x" is no applet.
    one_arg = world_dir / "one_arg"
    one_arg.write_text(f"#!{BUSYBOX} sh -x\n")
    one_arg.chmod(0o755)
    r = monitor.run(one_arg, ["x"])
    assert "sh -x: applet not found" in r.stderr


def test_shebang_errors(monitor, world_dir):
    cases = {
        "empty_interp": ("#!   \n", "names no interpreter"),
        "loop": (None, "too many levels"),
        "long": ("#!/" + "x" * 300 + "\n", "too long"),
    }
    for name, (text, why) in cases.items():
        f = world_dir / f"bang_{name}"
        f.write_text(text if text is not None else f"#!{f}\n")
        f.chmod(0o755)
        r = monitor.run(f, [name])
        assert r.exit_code == EXIT_CANNOT_RUN, (name, r.stderr)
        assert why in r.stderr, (name, r.stderr)
        assert r.stderr.startswith(f"picoproc-loader: "), r.stderr
        assert r.signal is None


# ---------------------------------------------------------------------------------------
# malformed images: one clear line on stderr, exit 127, never a crash
# ---------------------------------------------------------------------------------------

EXIT_CODE = bytes.fromhex("b8e7000000" "31ff" "0f05")  # mov $231,%eax; xor %edi,%edi; syscall
EHDR = struct.Struct("<16sHHIQQQIHHHHHH")
PHDR = struct.Struct("<IIQQQQQQ")
PT_LOAD, PT_INTERP = 1, 3
PF_R, PF_X, PF_W = 4, 1, 2


def make_elf(*, e_type=2, machine=62, ei_class=2, entry=None, phdrs=None, phnum=None, code=EXIT_CODE,
             base=0x400000, extra_tail=b""):
    """A minimal static ET_EXEC: one R+X PT_LOAD holding headers and code."""
    phdrs = phdrs if phdrs is not None else [None]
    ph_count = len(phdrs)
    hdr_size = EHDR.size + ph_count * PHDR.size
    code_off = hdr_size
    file_size = code_off + len(code) + len(extra_tail)
    entry = base + code_off if entry is None else entry
    table = b""
    for p in phdrs:
        if p is None:
            p = (PT_LOAD, PF_R | PF_X, 0, base, base, file_size, file_size, 0x1000)
        table += PHDR.pack(*p)
    ident = b"\x7fELF" + bytes([ei_class, 1, 1, 0]) + bytes(8)
    eh = EHDR.pack(ident, e_type, machine, 1, entry, EHDR.size, 0, 0, EHDR.size, PHDR.size,
                   ph_count if phnum is None else phnum, 0, 0, 0)
    return eh + table + code + extra_tail


def write_exe(d: pathlib.Path, name: str, data: bytes) -> pathlib.Path:
    p = d / name
    p.write_bytes(data)
    p.chmod(0o755)
    return p


def test_minimal_handmade_elf_runs(monitor, world_dir):
    # The baseline the malformed variants below are derived from must run.
    r = monitor.run(write_exe(world_dir, "minimal", make_elf()), ["minimal"])
    assert (r.exit_code, r.signal, r.stderr) == (0, None, "")


MALFORMED = {
    "not_elf": (b"just some text, no magic\n", "not an ELF executable"),
    "empty": (b"", "not an ELF executable"),
    "wrong_arch": (make_elf(machine=40), "wrong architecture"),
    "elf32": (make_elf(ei_class=1), "wrong architecture"),
    "relocatable": (make_elf(e_type=1), "not an executable"),
    "truncated_header": (make_elf()[:40], "truncated ELF header"),
    "truncated_phdrs": (make_elf(phnum=40), "truncated"),
    "absurd_phnum": (make_elf(phnum=0xFFFF), "absurd number of program headers"),
    "no_phdrs": (make_elf(phnum=0), "absurd number of program headers"),
    "segment_past_eof": (make_elf(phdrs=[(PT_LOAD, PF_R | PF_X, 0, 0x400000, 0x400000, 1 << 20, 1 << 20, 0x1000)]),
                         "extends past the end of the file"),
    "absurd_segment": (make_elf(phdrs=[(PT_LOAD, PF_R | PF_X, 0, 0x400000, 0x400000, 0x78, 1 << 50, 0x1000)]),
                       "absurd segment size"),
    "filesz_over_memsz": (make_elf(phdrs=[(PT_LOAD, PF_R | PF_X, 0, 0x400000, 0x400000, 0x78, 0x10, 0x1000)]),
                          "more file bytes than memory bytes"),
    "overlapping": (make_elf(phdrs=[None, (PT_LOAD, PF_R | PF_W, 0, 0x400000, 0x400000, 0x40, 0x2000, 0x1000)]),
                    "overlapping"),
    "misaligned": (make_elf(phdrs=[(PT_LOAD, PF_R | PF_X, 0x10, 0x400000, 0x400000, 0x40, 0x40, 0x1000)]),
                   "disagree modulo the page size"),
    "entry_outside": (make_elf(entry=0x123456789), "entry point"),
    "kernel_address": (make_elf(base=0xFFFF800000000000, phdrs=[
        (PT_LOAD, PF_R | PF_X, 0, 0xFFFF800000000000, 0, 0xb0, 0xb0, 0x1000)], entry=0xFFFF800000000078),
        "absurd segment size or address"),
    "collides_with_loader": (make_elf(base=0x10000000000, phdrs=[
        (PT_LOAD, PF_R | PF_X, 0, 0x10000000000, 0, 0xb0, 0xb0, 0x1000)], entry=0x10000000078),
        "collides"),
    "missing_interpreter": (make_elf(phdrs=[None, (PT_INTERP, PF_R, 0xb0 - 0x38, 0, 0, 0x10, 0x10, 1)]),
                            "PT_INTERP"),
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformed_image_is_refused_clearly(monitor, world_dir, name):
    data, why = MALFORMED[name]
    path = write_exe(world_dir, f"bad_{name}", data)
    r = monitor.run(path, [name])
    assert r.signal is None, f"{name}: killed by signal {r.signal}: {r.stderr}"
    assert r.exit_code == EXIT_CANNOT_RUN, (name, r.stderr)
    lines = r.stderr.splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith(f"picoproc-loader: {path}: "), r.stderr
    assert why in lines[0], r.stderr


def test_interpreter_that_does_not_exist(monitor, world_dir):
    interp = b"/nonexistent/ld.so\0"
    base = 0x400000
    hdr = EHDR.size + 2 * PHDR.size
    code_off = hdr + len(interp)
    size = code_off + len(EXIT_CODE)
    phdrs = [(PT_LOAD, PF_R | PF_X, 0, base, base, size, size, 0x1000),
             (PT_INTERP, PF_R, hdr, base + hdr, base + hdr, len(interp), len(interp), 1)]
    data = make_elf(phdrs=phdrs, entry=base + code_off, code=interp + EXIT_CODE)
    path = write_exe(world_dir, "needs_missing_interp", data)
    r = monitor.run(path, ["x"])
    assert r.exit_code == EXIT_CANNOT_RUN
    assert r.stderr.startswith("picoproc-loader: /nonexistent/ld.so: no such file"), r.stderr


def test_program_that_does_not_exist_or_is_not_executable(monitor, world_dir):
    r = monitor.run("/nonexistent/program", ["x"])
    assert r.exit_code == EXIT_CANNOT_RUN
    assert "picoproc-loader: /nonexistent/program: no such file or directory" in r.stderr
    plain = world_dir / "not_executable"
    plain.write_bytes(make_elf())
    plain.chmod(0o644)
    r = monitor.run(plain, ["x"])
    assert r.exit_code == EXIT_CANNOT_RUN
    assert "permission denied" in r.stderr


def test_loader_refuses_bad_options(monitor, probe):
    r = monitor.run(probe["static"], ["p"], options=["--no-such-option=1"])
    assert r.exit_code == EXIT_CANNOT_RUN
    assert "unknown option --no-such-option=1" in r.stderr
    r = monitor.run(probe["static"], ["p"], options=["--cwd=relative"])
    assert r.exit_code == EXIT_CANNOT_RUN and "--cwd" in r.stderr


# ---------------------------------------------------------------------------------------
# the trap layer and the emulations
# ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["static", "dyn"])
def test_identity_and_compat_emulations(monitor, probe, kind):
    r = monitor.run(probe[kind], ["p", "identity"], options=["--uid=1234", "--gid=99", "--umask=027",
                                                            "--cwd=/tmp/../usr//bin/", "--groups=27,100"])
    assert r.exit_code == 0, r.stderr
    out = r.stdout
    assert "sysname=Linux nodename=picoproc machine=x86_64" in out
    assert "uid=1234 euid=1234 gid=99 egid=99" in out
    assert "resuid=1234,1234,1234" in out
    assert "groups=2 first=27" in out  # the supplementary groups given, not the primary one
    assert "cwd=/usr/bin\n" in out  # normalised
    assert "umask_old=027" in out and "umask_now=077" in out
    assert "stack_soft=8388608" in out and "setrlimit=0" in out and "stack_soft_after=4194304" in out
    assert "prlimit_other=-1 errno=1" in out  # EPERM: only the caller's own limits
    assert "sysinfo=0 uptime_pos=1" in out
    assert "pgrp=1 sid_ok=1" in out
    assert "rseq=-1 errno=38" in out
    assert "sched_yield=0" in out and "nanosleep=0" in out and "pipe=0" in out
    assert "dup2=1" in out and "dup2_same=1" in out and "dup=1" in out
    assert "poll=1 errno=0" in out and "revents_in=1" in out
    assert "select=1 errno=0" in out and "isset=1" in out
    assert "epoll_create=1" in out and "epoll_create0=-1 errno=22" in out
    # rseq is refused on purpose, not reported as missing.
    assert 334 not in r.unsupported


@pytest.mark.parametrize("kind", ["static", "dyn"])
def test_bad_pointers_get_efault_not_a_crash(monitor, probe, kind):
    r = monitor.run(probe[kind], ["p", "efault"])
    assert r.exit_code == 0, r.stderr
    kv = parse_kv(r.stdout.replace(" errno=", "\nerrno_"))
    lines = dict(line.split("=", 1) for line in r.stdout.splitlines())
    for call in ("uname", "uname_prot_none", "getcwd", "stat_path", "chdir", "getresuid", "sysinfo",
                 "access_crossing"):
        assert lines[call] == "-1 errno=14", (call, r.stdout)
    assert lines["getcwd_small"] == "-1 errno=34"  # ERANGE
    assert lines["access_unterminated"] == "-1 errno=36"  # ENAMETOOLONG, as Linux
    assert lines["unknown_syscall"] == "-1 errno=38"
    assert kv  # parsed
    # The unimplemented call left an audit record naming it (mbind = 237).
    assert 237 in r.unsupported


@pytest.mark.parametrize("kind", ["static", "pie", "dyn"])
def test_threads_signals_and_virtual_sigsys(monitor, probe, kind):
    r = monitor.run(probe[kind], ["p", "threads"])
    assert r.exit_code == 0, r.stderr
    out = r.stdout
    assert "threads_bad=0" in out  # 4 threads x 2000 concurrent emulated calls
    assert "usr1=2" in out  # guest handlers for ordinary signals (direct)
    assert "sigaction_sigsys=0" in out
    assert "same=1" in out  # the guest's SIGSYS handler is recorded...
    assert "getcwd_after=/" in out  # ...without replacing the library OS's
    assert "sigsys_seen=1" in out  # and runs for a SIGSYS the guest raised


@pytest.mark.parametrize("kind", ["static", "dyn"])
def test_fork_wait_pipes_vfork_and_execve(monitor, probe, kind):
    r = monitor.run(probe[kind], [str(probe[kind]), "fork"], options=["--cwd=/tmp"])
    assert r.exit_code == 0, r.stderr
    out = r.stdout
    assert "child cwd=/tmp\nchild exit=7\n" in out
    # The vfork child exec'd the probe again through the loader fd with a
    # new argv, and the library OS state (cwd) followed it.
    assert "argv[0]=renamed\nargv[1]=auxv\nargv[2]=x\n" in out
    assert f"execfn={probe[kind]}\n" in out
    assert "exec child exit=0" in out
    assert "execve_missing=-1 errno=2" in out  # ENOENT comes back to the caller


@pytest.mark.skipif(not os.path.exists(BUSYBOX), reason="busybox-static is not installed")
def test_execve_of_a_non_executable_format_is_enoexec(monitor, world_dir):
    junk = write_exe(world_dir, "junk_exe", b"\x00\x01\x02 not a program\n")
    # busybox sh falls back to running a file that fails with ENOEXEC as a
    # script; a binary file then fails in the shell, not in the loader.
    r = monitor.run(BUSYBOX, ["sh", "-c", f"{junk}; echo status=$?"])
    assert "picoproc-loader" not in r.stderr
    assert "status=" in r.stdout


@pytest.mark.skipif(not os.path.exists(BUSYBOX), reason="busybox-static is not installed")
def test_chdir_checks_the_directory_with_the_monitor(monitor, world_dir):
    f = world_dir / "a_file"
    f.write_text("x")
    f.chmod(0o644)
    r = monitor.run(BUSYBOX, ["sh", "-c", f"cd {world_dir} && pwd; cd {f}; cd /nonexistent; pwd"])
    assert r.stdout.splitlines() == [str(world_dir), str(world_dir)]
    assert "can't cd" in r.stderr


def test_readlink_proc_self_exe_names_the_program(monitor, probe, world_dir):
    if not os.path.exists(BUSYBOX):
        pytest.skip("busybox-static is not installed")
    r = monitor.run(BUSYBOX, ["readlink", "/proc/self/exe"])
    assert (r.exit_code, r.stdout) == (0, f"{BUSYBOX}\n")


@pytest.mark.parametrize("kind", ["static", "dyn"])
def test_sigsys_stays_deliverable_when_the_guest_blocks_everything(monitor, probe, kind):
    # A seccomp SIGSYS while SIGSYS is blocked makes the kernel kill the
    # process; the filter therefore traps rt_sigprocmask/rt_sigaction into
    # the library OS, which keeps SIGSYS out of every mask.
    r = monitor.run(probe[kind], [str(probe[kind]), "sigmask"])
    assert r.signal is None, f"killed by signal {r.signal}"
    assert r.exit_code == 0, r.stderr
    out = r.stdout
    assert "block_all=0 errno=0" in out
    assert "uname_while_blocked=0 errno=0" in out
    assert "sigsys_blocked=0 usr1_blocked=1" in out  # the rest of the mask is honoured
    assert "handler_uname_ok=1" in out  # a handler with a full sa_mask may trap
    assert "posix_spawn=0 status=0" in out  # the spawned child printed its auxv
    assert out.count("argv[0]=probe\n") == 1


PYTHON = "/usr/bin/python3"


@pytest.mark.skipif(not os.path.exists(PYTHON), reason="no system python3")
def test_python_imports_and_runs_a_child_process(monitor):
    code = ("import json, hashlib, subprocess, sys; "
            "print(json.dumps({'a': 1}), hashlib.sha256(b'').hexdigest()[:12]); "
            f"print(subprocess.run(['{BUSYBOX}', 'echo', 'from child'], capture_output=True).stdout.decode(), end='')")
    r = monitor.run(PYTHON, ["python3", "-c", code], env={"PATH": "/usr/bin:/bin"})
    assert r.exit_code == 0, r.stderr
    assert r.stdout == '{"a": 1} e3b0c44298fc\nfrom child\n'


@pytest.mark.parametrize("kind", ["static", "dyn"])
def test_path_calls_go_to_the_monitor_and_fd_calls_stay_direct(monitor, probe, kind):
    exe = probe[kind]
    r = monitor.run(exe, ["p", "files", str(exe), str(exe.parent), exe.name])
    assert r.exit_code == 0, r.stderr
    lines = dict(line.split("=", 1) for line in r.stdout.splitlines() if line.count("=") == 1 or " errno=" in line)
    st = os.stat(exe)
    assert f"stat_ino={st.st_ino} stat_size={st.st_size} stat_mode={st.st_mode:o}" in r.stdout
    for call in ("stat", "chdir", "stat_relative", "access_r", "lstat_bin", "fstatat_empty", "statx_empty",
                 "statx_path", "fstatat_path"):
        assert lines[call] == "0 errno=0", (call, r.stdout)
    assert f"rel_ino={st.st_ino}" in r.stdout  # relative names resolve against the libos cwd
    assert lines["access_missing"] == "-1 errno=2"
    if os.path.islink("/bin"):
        assert "bin_is_link=1" in r.stdout
        assert f"bin_target={os.readlink('/bin')}" in r.stdout
    assert "open_ok=1" in r.stdout and "head_is_elf=1" in r.stdout
    assert "statx_empty_ino_match=1" in r.stdout and "statx_path_ino_match=1" in r.stdout
    assert "fstatat_path_ino_match=1" in r.stdout
    assert lines["open_missing"] == "-1 errno=2"
    assert lines["creat_readonly"] == "-1 errno=30"  # EROFS: the test policy is read-only
    assert lines["mkdir_readonly"] == "-1 errno=30"
    assert f"self_exe={exe}" in r.stdout
    assert lines["readlink_einval"] == "-1 errno=22"
    # A relative name against a regular file's fd: ENOTDIR, as Linux.
    assert lines["openat_dirfd_relative"] == "-1 errno=20"


@pytest.mark.parametrize("kind", ["static", "dyn"])
def test_nested_trap_from_a_handler_run_inside_an_emulated_call(monitor, probe, kind):
    r = monitor.run(probe[kind], ["p", "nested"])
    assert r.exit_code == 0, r.stderr
    assert "sigsuspend=-1 errno=4" in r.stdout
    assert "nested_ok=1" in r.stdout
    assert "usr2_still_blocked=1" in r.stdout  # sigsuspend restored the mask


@pytest.mark.parametrize("kind", ["static", "dyn"])
def test_wait_with_a_mask_blocking_sigsys_survives_a_trapping_handler(monitor, probe, kind):
    """ppoll and epoll_pwait with a temporary mask of every signal but SIGUSR1
    (SIGSYS in it); SIGUSR1 (from another process, resp. thread) runs a
    handler that makes an emulated call (uname).  Made directly, the wait
    would leave SIGSYS blocked and the kernel would kill the process on that
    trap: the filter traps a wait with a mask from guest code, and the
    library OS makes it with SIGSYS removed.  Observable: the handler ran
    under the wait's mask (SIGTERM blocked) without SIGSYS, where natively
    (no library OS) SIGSYS is blocked there."""
    r = monitor.run(probe[kind], ["p", "waitmask"])
    assert r.exit_code == 0, (r.signal, r.stdout, r.stderr)
    out = _lines(r.stdout)
    for call in ("ppoll", "epoll_pwait"):
        assert out[call] == "-1 errno=4", r.stdout  # EINTR: the signal ended the wait
        assert out[f"{call}_handler_ran"] == "1 uname_ok=1 term_blocked=1 sys_blocked=0 usr1_blocked_after=1", \
            r.stdout
        # The kernel's own answers for a bad mask, and plain timeouts.
        assert out[f"{call}_mask_size"] == "-1 errno=22"
        assert out[f"{call}_mask_efault"] == "-1 errno=14"
        assert out[f"{call}_timeout"] == "0 errno=0"
        assert out[f"{call}_no_mask"] == "0 errno=0"
    native = subprocess.run([probe[kind], "waitmask"], capture_output=True, text=True, timeout=GUEST_TIMEOUT,
                            check=False)
    assert native.returncode == 0, native.stderr
    assert "ppoll_handler_ran=1 uname_ok=1 term_blocked=1 sys_blocked=1" in native.stdout


@pytest.mark.parametrize("kind", ["static", "dyn"])
def test_pipe2_flags_answer_as_the_kernel_does(monitor, probe, kind):
    """pipe2 is direct only with O_CLOEXEC, O_NONBLOCK and O_DIRECT: a
    notification pipe (a watch_queue) never reaches the host kernel.  The
    library OS answers the other forms exactly as this kernel does natively
    (ENOPKG where it has no watch queues, EINVAL for unknown flags, garbage
    above the int ignored); the output is compared with the native run."""
    r = monitor.run(probe[kind], ["p", "pipes"])
    assert r.exit_code == 0, (r.signal, r.stdout, r.stderr)
    native = subprocess.run([probe[kind], "pipes"], capture_output=True, text=True, timeout=GUEST_TIMEOUT,
                            check=True)
    out = _lines(r.stdout)
    assert out["pipe2_cloexec_nonblock_direct"] == "0 errno=0 cloexec=1"
    assert out["pipe2_wronly"] == "-1 errno=22 cloexec=-1"
    if "pipe2_notification=-1 errno=65" in native.stdout:  # this kernel has no watch queues
        assert r.stdout == native.stdout
    else:  # it has them: the guest gets the answer of a kernel without
        assert out["pipe2_notification"] == "-1 errno=65 cloexec=-1"
        assert [ln for ln in r.stdout.splitlines() if "notification" not in ln] == \
            [ln for ln in native.stdout.splitlines() if "notification" not in ln]


def test_library_os_code_never_touches_fs():
    """%fs is the guest's TLS base: the library OS must not use it (no stack
    protector, no TLS variables)."""
    if shutil.which("objdump") is None:
        pytest.skip("objdump (binutils) is not installed")
    dis = subprocess.run(["objdump", "-d", "--no-show-raw-insn", str(loader_path())],
                         capture_output=True, text=True, check=True).stdout
    offending = [line for line in dis.splitlines() if "%fs" in line]
    assert not offending, offending[:5]
    assert "syscall" in dis


@pytest.mark.unit
def test_emulated_syscall_list_matches_linux_and_the_abi():
    from picoproc.abi.linux import SYSCALLS_BY_NAME
    from picoproc.abi.table import load_table
    from picoproc.libos import emulated_syscalls

    names = emulated_syscalls()
    assert {"uname", "getcwd", "execve", "openat", "statx", "rt_sigprocmask"} <= names
    assert not names - set(SYSCALLS_BY_NAME), "not Linux syscalls"
    direct = {d.name for d in load_table().direct}
    # Calls that are both: the signal calls and the waits with a signal mask
    # (direct from the library OS's own range, emulated for everyone else,
    # see abi/bpf.py) and execveat (direct
    # only on the loader fd; every other form traps and is emulated).
    # close and dup3: direct on every fd but picoproc's own; the trapped forms
    # (those fds, garbage in the upper half) are emulated.  getsockname:
    # direct from the library OS's range, emulated for the program (unix
    # socket names); setsockopt/getsockopt: direct for the SOL_SOCKET and
    # IPPROTO_TCP names the ABI lists, the other names refused (ENOPROTOOPT),
    # the trapped levels emulated (IPV6_V6ONLY).  pipe2: direct with
    # O_CLOEXEC/O_NONBLOCK/O_DIRECT; other flags are answered.  clone:
    # direct, but a child that shares memory without being a thread (vfork,
    # posix_spawn) is the library OS's to make.  fcntl and ioctl: direct for
    # the commands the rules list, the others (pipe sizes, seals; the terminal
    # requests that change a terminal) trap.
    assert names & direct == {"rt_sigaction", "rt_sigprocmask", "execveat", "close", "dup3", "ppoll",
                              "epoll_pwait", "getsockname", "setsockopt", "getsockopt", "pipe2", "clone",
                              "fcntl", "ioctl"}


def test_loader_argv_helper(monitor):
    from picoproc.libos import loader_argv

    argv = loader_argv(BUSYBOX, ["uname", "-n"], cwd="/tmp", uid=7, gid=8, hostname="h1", umask=0o077)
    assert argv[0] == str(loader_path())
    assert argv[argv.index("--") + 1:] == [BUSYBOX, "uname", "-n"]
    r = monitor.run(BUSYBOX, ["uname", "-n"], options=argv[1:argv.index("--")])
    assert (r.exit_code, r.stdout) == (0, "h1\n")
    with pytest.raises(ValueError):
        loader_argv(BUSYBOX, ["x"], cwd="relative")
    with pytest.raises(ValueError):
        loader_argv(BUSYBOX, ["x"], hostname="x" * 65)


# ---------------------------------------------------------------------------------------
# fd -> path tracking, the name calls, /dev and /proc, the loader fd
# ---------------------------------------------------------------------------------------

def _lines(stdout: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in stdout.splitlines() if "=" in line and not line.startswith(" "))


@pytest.fixture
def scratch(writable_dir):
    d = tempfile.mkdtemp(dir=writable_dir)
    os.chmod(d, 0o777)
    yield pathlib.Path(d)
    shutil.rmtree(d, ignore_errors=True)


@pytest.mark.parametrize("kind", ["static", "dyn"])
def test_directory_fds_remember_their_paths(monitor, probe, scratch, kind):
    r = monitor.run(probe[kind], ["p", "dirfd", str(scratch)])
    assert r.exit_code == 0, r.stderr
    out = _lines(r.stdout)
    assert out["open_dir_ok"] == out["openat_sub_ok"] == out["openat_create_ok"] == "1"
    for call in ("mkdirat", "fstatat_rel", "faccessat_rel", "fstatat_via_fdupfd", "fstatat_via_dup3",
                 "fchdir", "renameat", "fstatat_moved", "unlinkat", "unlinkat_dir"):
        assert out[call] == "0 errno=0", (call, r.stdout)
    assert out["size"] == "6"
    assert out["dup3"] == "200 errno=0"
    assert out["fd_link"] == f"{scratch}/sub"
    # The fd number now holds a pipe: the old entry is stale and refused
    # (validated by st_dev/st_ino), as Linux refuses a non-directory.
    assert out["openat_on_reused_pipe"] == "-1 errno=20"
    assert out["pipe_link_prefix"] == "pipe:["
    assert out["openat_bad_fd"] == "-1 errno=9"
    assert out["openat_absolute_ignores_dirfd"] == "1 errno=0"
    assert out["cwd"] == f"{scratch}/sub"
    assert out["fchdir_file"] == "-2 errno=20" or out["fchdir_file"].startswith("-2")
    assert out["rel_read"] == "hello"
    assert out["readdir_found"] == "1"
    assert out["openat_negative_fd"] == "-1 errno=9"
    assert out["openat_too_long"] == "-1 errno=36"
    assert out["openat_efault"] == "-1 errno=14"
    assert out["readlink_fd_huge"] == "-1 errno=2"
    assert out["socket_connect_efault"] == "-1 errno=14"
    assert out["socket_connect_badlen"] == "-1 errno=22"
    assert out["socket_bad_family"] == "-1 errno=97"
    # Every file operation went to the monitor with an absolute path.
    assert f"file:{scratch}/sub/file.txt" in r.opened
    assert not (scratch / "sub").exists()
    assert not r.unsupported, r.unsupported


@pytest.mark.parametrize("kind", ["static", "dyn"])
def test_name_and_attribute_calls_reach_the_monitor(monitor, probe, scratch, kind):
    r = monitor.run(probe[kind], ["p", "names", str(scratch)])
    assert r.exit_code == 0, r.stderr
    out = _lines(r.stdout)
    ok = ("chdir", "mkdir_p", "write", "stat_umask", "chmod", "fchmod", "fchmodat_nofollow", "chown_self",
          "fchown_self", "truncate", "utimensat", "utimes", "futimens", "link", "symlink", "lstat_soft",
          "stat_soft", "rename", "renameat2_exchange", "statfs", "fstatfs", "fdatasync", "access_w",
          "faccessat2_empty", "unlink", "unlink_renamed", "unlink_soft", "rmdir")
    for call in ok:
        assert out[call] in ("0 errno=0", "10 errno=0"), (call, r.stdout)
    assert out["mkdir_exists"] == "-1 errno=17"
    assert out["creat_ok"] == "1"
    assert out["mode"] == "644"  # umask 022 applied by the library OS
    assert out["mode_after_chmod"] == "600" and out["mode_after_fchmod"] == "640"
    assert out["chown_root"] == "-1 errno=1"  # EPERM: the monitor acts as an unprivileged identity
    assert out["size_after_truncate"] == "4"
    assert out["truncate_negative"] == "-1 errno=22"
    assert out["mtime"] == "1234567890" and out["mtime_utimes"] == "2000000000"
    assert out["mtime_futimens"] == "1500000000"
    assert out["utimensat_bad_nsec"] == "-1 errno=22"
    assert out["nlink"] == "2"
    assert out["readlink"] == "f" and out["soft_is_link"] == "1" and out["soft_size"] == "4"
    assert out["rename_missing"] == "-1 errno=2"
    assert out["renameat2_noreplace"] == "-1 errno=17"
    assert out["renameat2_badflags"] == "-1 errno=22"
    assert out["rmdir_notempty"] == "-1 errno=39"
    # Outside the writable mount: the monitor refuses (read-only view).
    for call in ("symlink_readonly", "chmod_readonly", "truncate_readonly"):
        assert out[call] == "-1 errno=30", (call, r.stdout)
    assert out["rename_readonly"] in ("-1 errno=30", "-1 errno=18"), r.stdout
    assert out["efault_rename"] == "-1 errno=14" and out["efault_utimensat"] == "-1 errno=14"
    assert list(scratch.iterdir()) == []
    assert not r.unsupported, r.unsupported


@pytest.mark.parametrize("kind", ["static", "dyn"])
def test_dev_and_proc_are_the_library_os_own(monitor, probe, kind):
    r = monitor.run(probe[kind], ["libos-probe", "special"], options=["--cpus=3", "--uid=777"])
    assert r.exit_code == 0, r.stderr
    out = _lines(r.stdout)
    assert out["null_open"] == "1"
    assert out["null_write"] == "1 errno=0" and out["null_read"] == "0 errno=0"
    assert out["zero_read"] == "16 errno=0" and out["zero_bytes_zero"] == "1"
    assert out["urandom_read"] == "32 errno=0"
    assert out["stat_null"] == "0 errno=0" and out["null_chr"] == "1 rdev=1:3"
    assert out["tty_open"] == "-1 errno=6"  # ENXIO: stdio is not a terminal here
    assert out["stdout_open"] == "1" and "via-dev-stdout\n" in r.stdout
    assert out["devfd_pipe_read"] == "9 errno=0" and out["devfd_pipe"] == "pipe-data"
    assert out["devfd_closed"] == "-1 errno=2"
    assert out["exe"] == str(probe[kind])
    assert out["self_is_pid"] == "1"
    assert out["cwd_link"] == "/"
    assert out["cmdline"] == "libos-probe|special|"
    assert out["status_uid"] == "777"
    assert out["stat_pid_ok"] == "1"
    assert out["maps_has_stack"] == "1 maps_has_exe=1"
    assert out["getattr_np"] == "0 stack_contains_local=1"
    assert "  MemTotal:        1048576 kB" in r.stdout
    assert "  processor\t: 0" in r.stdout
    assert re.search(r"^  cpu  \d+ 0 0 \d+ 0 0 0 0 0 0$", r.stdout, re.M), r.stdout
    assert out["nprocs"] == "3"
    assert out["getaffinity"] == "0 errno=0" and out["affinity_count"] == "3"
    assert out["write_proc"] == "-1 errno=13"
    # This monitor has no /proc view of the guest's processes (tests/test_proc.py
    # has): another process, and anything the library OS does not know, do not exist.
    assert out["proc_other_pid"] == "-1 errno=2" and out["proc_other_pid_exe"] == "-1 errno=2"
    assert out["proc_unknown"] == "-1 errno=2"
    # The text the library OS generates is a file readers may seek in and
    # read again (procps does); the monitor hands out an empty one for it.
    assert out["proc_lseek"] == "0 errno=0"
    assert out["access_proc_r"] == "0 errno=0" and out["access_proc_w"] == "-1 errno=13"
    assert out["stat_proc_dir"] == "0 errno=0" and out["proc_fd_is_dir"] == "1"
    # What went to the monitor under /proc: the empty files for that text, and
    # questions about the guest's own processes -- never a host path.
    proc_opens = {o for o in r.opened if "/proc" in o}
    allowed = re.compile(r"file:/proc/(\.picoproc-text|\d+/(status|stat|maps|statm)|sys/kernel/no-such-setting)")
    assert all(allowed.fullmatch(o) for o in proc_opens), proc_opens
    assert "file:/dev/null" in r.opened


def test_proc_of_a_host_process_is_never_reached(monitor, probe):
    # pid 1 of the host (and this test's own pid) are outside the guest's pid
    # view: the monitor is asked (it answers from the guest's own procfs,
    # which this one does not even have: tests/test_proc.py covers one that
    # has) and nothing of the host comes back.
    host_pid = os.getpid()
    if not os.path.exists(BUSYBOX):
        pytest.skip("busybox-static is not installed")
    r = monitor.run(BUSYBOX, ["sh", "-c", f"cat /proc/{host_pid}/status; cat /proc/1/environ; "
                                          f"ls /proc/{host_pid}/; echo done"])
    assert "done" in r.stdout
    assert "Name:" not in r.stdout and "PATH=" not in r.stdout


def test_loader_fd_is_protected_from_dup2_and_close_range(monitor, probe):
    r = monitor.run(probe["static"], ["p", "loaderfd"])
    assert r.exit_code == 0, r.stderr
    out = _lines(r.stdout)
    assert out["dup2_onto_loader"] == "-1 errno=9"
    assert out["dup2_above"] == "-1 errno=9"
    assert out["close_range_all"] == "0 errno=0"
    # close and dup3 are direct calls: the filter traps them on the loader
    # fd (and on any value the kernel would truncate to it).
    assert out["close_loader"] == "-1 errno=9"
    assert out["close_truncated"] == "-1 errno=9"
    assert out["dup3_onto_loader"] == "-1 errno=9"
    assert out["dup3_truncated"] == "-1 errno=9"
    assert out["close_high_ok"] == "0 errno=0"
    assert out["loader_fd_open"] == "1"


@pytest.mark.skipif(not os.path.exists(BUSYBOX), reason="busybox-static is not installed")
def test_directory_fd_path_survives_exec(monitor, scratch):
    (scratch / "inner").mkdir()
    (scratch / "inner" / "f").write_text("across exec\n")
    os.chmod(scratch / "inner", 0o777)
    # The shell opens the directory on fd 7 (no close-on-exec) and execs a
    # new program, which reads a name relative to that fd via /dev/fd/7/...
    # -- no: busybox cat only takes paths; use the shell's own cd into it.
    r = monitor.run(BUSYBOX, ["sh", "-c", f"exec 7<{scratch}/inner/f; exec {BUSYBOX} cat /dev/fd/7"])
    assert (r.exit_code, r.stdout) == (0, "across exec\n"), r.stderr


@pytest.mark.unit
def test_linux_table_is_consistent_with_the_handlers_and_the_abi():
    from picoproc.abi.linux import SYSCALLS_BY_NAME
    from picoproc.abi.table import load_table
    from picoproc.libos import emulated_syscalls, linux_table
    from picoproc.libos.linux_calls import calls_by_name

    rows = linux_table()
    table = load_table()
    calls = calls_by_name()
    by_name = {r["name"]: r for r in rows}
    assert set(by_name) == set(SYSCALLS_BY_NAME)
    assert [r["nr"] for r in rows] == sorted(SYSCALLS_BY_NAME.values())
    assert all(r["handling"] in ("direct", "emulated", "mediated", "refused") for r in rows)
    assert all(r["support"] in ("full", "partial", "refused", "unimplemented") for r in rows)
    for d in table.direct:
        assert by_name[d.name]["handling"] == "direct"
        assert by_name[d.name]["rules"] == [r.text for r in d.rules]
    assert by_name["clone3"] == {**by_name["clone3"], "handling": "emulated", "by": "library OS"}
    emulated = emulated_syscalls()
    direct = {d.name for d in table.direct}
    for name in emulated - direct:
        assert by_name[name]["handling"] in ("emulated", "mediated"), name
        assert (by_name[name]["handling"] == "mediated") == bool(calls[name].mediated), name
        assert by_name[name]["support"] == calls[name].support, name
        if calls[name].support == "partial":
            assert by_name[name]["note"] == calls[name].note and calls[name].note, name
    mediated = {m.name for m in table.mediated}
    for call in calls.values():
        assert set(call.mediated) <= mediated, call.name
        if call.refused:
            assert by_name[call.name]["handling"] == "refused" and by_name[call.name]["errno"] == call.errno_name
    # Everything the library OS does not handle or refuse on purpose answers
    # ENOSYS (and is audited at run time).
    for name in set(SYSCALLS_BY_NAME) - set(calls) - direct - {"uprobe", "uretprobe"}:
        assert by_name[name]["handling"] == "refused" and by_name[name]["errno"] == "ENOSYS", name
        assert by_name[name]["support"] == "unimplemented", name
    assert by_name["openat"]["mediated"] == ["open"]
    assert by_name["uname"]["handling"] == "emulated"
    assert by_name["io_uring_setup"]["handling"] == "refused"
    assert by_name["rseq"]["support"] == "refused"


@pytest.mark.unit
def test_every_handler_is_dispatched_and_every_row_has_one():
    """One row, one handler: a LIBOS_SYSCALL defined in a sys_*.c file that no
    row dispatches to is dead code, and a row without a handler would not
    link (checked here by name, before the linker)."""
    import re

    from picoproc.libos.linux_calls import load_calls

    defined = set()
    for src in (REPO / "libos").glob("sys_*.c"):
        defined |= set(re.findall(r"^LIBOS_SYSCALL\((\w+)\)", src.read_text(), re.M))
    handled = {c.name for c in load_calls() if not c.refused}
    assert defined == handled, (sorted(defined - handled), sorted(handled - defined))


@pytest.mark.unit
def test_generated_linux_call_files_are_in_sync():
    from picoproc.libos import generate

    stale = generate.stale_files(REPO)
    assert stale == [], f"regenerate with `python -m picoproc.libos.generate`: {stale}"


@pytest.mark.unit
def test_stale_linux_call_file_is_detected(tmp_path):
    """The sync check can fail: a copy with one edited output is stale."""
    from picoproc.libos import generate

    for path, text in generate.outputs().items():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(text)
    assert generate.stale_files(tmp_path) == []
    source = tmp_path / generate.SOURCE_PATH
    source.write_text(source.read_text().replace("= libos_sys_uname,", "= libos_sys_getuid,"))
    assert generate.stale_files(tmp_path) == [generate.SOURCE_PATH]


@pytest.mark.parametrize("row, complaint", [
    ('nosuchcall = { support = "full" }', "not an x86-64 Linux syscall"),
    ('uname = { support = "partial" }', "needs a note"),
    ('uname = { support = "refused", note = "x" }', "known errno"),
    ('uname = { support = "full", errno = "EPERM" }', "only a refused call"),
    ('uname = { support = "mostly" }', "support must be"),
    ('uname = { support = "full", mediated = ["nosuch"] }', "unknown mediated"),
    ('uname = { support = "full", colour = "red" }', "unknown keys"),
    ('read = { support = "full", note = "x", rewritable = true }', "must not be rewritten"),
    ('close = { support = "full" }', "which forms trap"),
    ('uprobe = { support = "full" }', "exempts it from seccomp"),
    ('uname = { support = "full" }\n[b]\nuname = { support = "full" }', "listed twice"),
])
@pytest.mark.unit
def test_linux_call_table_rejects_bad_rows(row, complaint):
    from picoproc.libos.linux_calls import LinuxCallsError, parse_calls

    with pytest.raises(LinuxCallsError, match=complaint):
        parse_calls(f"[a]\n{row}\n")


@pytest.mark.unit
def test_linux_call_table_refuses_rows_for_calls_the_filter_answers():
    """A call the "libos" filter answers itself never reaches the library OS:
    a row for it is an error, unless the ABI table says the filter traps it
    to the library OS (clone3)."""
    from picoproc.abi.table import parse_table
    from picoproc.libos.linux_calls import LinuxCallsError, parse_calls

    text = (REPO / "abi" / "abi_v1.toml").read_text()
    assert 'libos = "trap"' in text
    answered = parse_table(text.replace('libos = "trap"', ""))
    with pytest.raises(LinuxCallsError, match="the filter answers it"):
        parse_calls('[a]\nclone3 = { support = "full" }\n', abi=answered)
    assert parse_calls('[a]\nclone3 = { support = "full" }\n', abi=parse_table(text))


def test_abi_linux_shows_support_levels_and_partial_notes(run_picoproc):
    from picoproc.libos.linux_calls import calls_by_name

    calls = calls_by_name()
    partial = next(c for c in calls.values() if c.support == "partial" and c.nr != 56)
    human = run_picoproc("abi", "--linux")
    assert human.returncode == 0, human.stderr
    line = next(ln for ln in human.stdout.splitlines() if f" {partial.name} " in ln)
    assert "partial" in line and partial.note in line
    assert "handled by the library OS" in human.stdout.splitlines()[0]
    one = run_picoproc("abi", "--linux", "setitimer", "rseq", "vhangup")
    assert one.returncode == 0, one.stderr
    heads = [ln for ln in one.stdout.splitlines() if not ln.startswith(" ")]
    assert [ln.split()[0] for ln in heads] == ["setitimer", "rseq", "vhangup"]
    assert "partial" in heads[0] and "refused" in heads[1] and "unimplemented" in heads[2]
    setitimer = calls["setitimer"]
    assert f"  partial: {setitimer.note}" in one.stdout.splitlines()
    bad = run_picoproc("abi", "--linux", "nosuchcall")
    assert bad.returncode == 125 and "nosuchcall" in bad.stderr and len(bad.stderr.splitlines()) == 1


@pytest.mark.parametrize("kind", ["static", "dyn"])
def test_timers_usage_flock_copies_and_process_name(monitor, probe, scratch, kind):
    r = monitor.run(probe[kind], ["p", "misc", str(scratch)], timeout=GUEST_TIMEOUT)
    assert r.exit_code == 0, r.stderr
    out = _lines(r.stdout)
    assert out["alarm_first"] == "0 errno=0" and out["alarm_replace"] == "100 errno=0"
    # An interval ITIMER_REAL delivered SIGALRM repeatedly (a helper process
    # the program's wait() never sees).
    assert out["alarms_ge3"] == "1" and out["interval_us"] == "20000"
    assert out["setitimer_off"] == "0 errno=0"
    assert out["getitimer_virtual"] == "0 errno=0"  # the CPU-time timers are offered too
    assert 36 not in r.unsupported
    assert out["child_alarm_left"] == "0"  # fork does not inherit the alarm
    assert out["parent_alarm_left"] == "50 errno=0"
    assert out["wait_no_helper"] == "1"
    assert out["getrusage"] == "0 errno=0" and out["times_ok"] == "1"
    assert out["copy_file_range"] == "10 errno=0" and out["in_off"] == "15"
    assert out["sendfile"] == "4 errno=0"
    # "me please\n" copied from offset 5, then "copy" appended by sendfile.
    assert "dst=me please\ncopy\n" in r.stdout
    assert out["fadvise"] == "0 errno=0"
    assert out["flock_ex"] == "0 errno=0"
    assert out["flock_conflict"] == "-1 errno=11"  # EWOULDBLOCK
    assert out["flock_un"] == "0 errno=0" and out["flock_sh_now"] == "0 errno=0"
    assert out["getxattr"] == "-1 errno=61"  # ENODATA: extended attributes exist, not this one
    assert out["prctl_set_name"] == "0 errno=0" and out["prctl_name"] == "renamed-task"


@pytest.mark.skipif(not os.path.exists(BUSYBOX), reason="busybox-static is not installed")
def test_rlimit_options_reach_getrlimit_and_survive_exec(monitor):
    import resource

    from picoproc.libos import loader_argv
    from picoproc.manifest import Limits

    argv = loader_argv(BUSYBOX, ["sh"], limits=Limits(open_files=77, cpu_time_s=2.5, pids=9), cpus=2)
    opts = argv[1:argv.index("--")]
    assert f"--rlimit={resource.RLIMIT_NOFILE}:77:77" in opts and "--cpus=2" in opts
    # The second line comes from a new image (exec): the limits went with it.
    r = monitor.run(BUSYBOX, ["sh", "-c", f"ulimit -n; ulimit -t; ulimit -u; exec {BUSYBOX} sh -c 'ulimit -n; nproc'"],
                    options=opts)
    assert (r.exit_code, r.stdout) == (0, "77\n3\n10\n77\n2\n"), r.stderr
    # An open-file limit is never reported at or above picoproc's own fds
    # (PICO_RESERVED_FD_BASE: the argument area's, then the loader fd).
    r = monitor.run(BUSYBOX, ["sh", "-c", "ulimit -n"], options=[f"--rlimit={resource.RLIMIT_NOFILE}:5000:5000"])
    assert r.stdout == "1018\n"
    r = monitor.run(BUSYBOX, ["true"], options=["--rlimit=99:1:1"])
    assert r.exit_code == EXIT_CANNOT_RUN and "bad --rlimit option" in r.stderr


EXEC_STACK_C = r"""
#include <string.h>
int main(void) {
    /* mov $42, %eax; ret -- copied onto the stack and called */
    unsigned char code[] = {0xb8, 42, 0, 0, 0, 0xc3};
    int (*f)(void) = (int (*)(void))code;
    return f();
}
"""


@pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc is not installed")
@pytest.mark.parametrize("flag, expect_exit, expect_signal", [("-Wl,-z,execstack", 42, None),
                                                             ("-Wl,-z,noexecstack", None, signal.SIGSEGV)])
def test_pt_gnu_stack_decides_whether_the_stack_is_executable(monitor, world_dir, flag, expect_exit,
                                                              expect_signal):
    src = world_dir / "execstack.c"
    src.write_text(EXEC_STACK_C)
    exe = world_dir / f"execstack{flag.replace(',', '_')}"
    subprocess.run(["gcc", "-O0", "-static", flag, "-o", str(exe), str(src)], check=True, capture_output=True)
    exe.chmod(0o755)
    native = subprocess.run([str(exe)])
    assert native.returncode == (expect_exit if expect_exit is not None else -expect_signal)
    r = monitor.run(exe, ["execstack"])
    assert (r.exit_code, r.signal) == (expect_exit, expect_signal), r.stderr


@pytest.mark.parametrize("kind", ["static", "dyn"])
def test_fd_paths_stay_right_under_concurrent_reuse(monitor, probe, world_dir, kind):
    race = world_dir / "race"
    for i in range(4):
        (race / f"t{i}").mkdir(parents=True, exist_ok=True)
        (race / f"t{i}" / "who").write_text(f"t{i}")
    r = monitor.run(probe[kind], ["p", "fdrace", str(race)])
    assert r.exit_code == 0, r.stderr
    assert "race_bad=0" in r.stdout


# ---------------------------------------------------------------------------------------
# syscall-site rewriting (libos/rewrite.c)
# ---------------------------------------------------------------------------------------
def rewritable_calls() -> set[str]:
    from picoproc.libos.linux_calls import load_calls

    return {c.name for c in load_calls() if c.rewritable}


@pytest.mark.unit
def test_only_trapped_calls_that_need_no_signal_context_are_rewritable():
    import tomllib

    abi = tomllib.loads((REPO / "abi" / "abi_v1.toml").read_text())
    direct = {d["name"] for d in abi["direct"]}
    calls = rewritable_calls()
    assert {"uname", "getcwd", "openat", "newfstatat"} <= calls
    # A direct call's site must keep going to the kernel: rewriting it would
    # route every such call through the library OS -- unless the filter
    # allows it only from the loader, so that every call from the program
    # traps anyway.
    from picoproc.abi.table import LOADER_ONLY_CALLS

    assert calls & direct <= set(LOADER_ONLY_CALLS), calls & direct
    # These need the signal frame (mask, registers) or change the process.
    assert calls.isdisjoint({"rt_sigprocmask", "rt_sigsuspend", "pause", "ppoll", "epoll_pwait",
                             "pselect6", "execve", "execveat", "fork", "vfork", "clone", "rseq", "exit"})
    # rt_sigaction is direct from the loader only: the program's sites all
    # trap, and its handler needs no signal frame (CPython asks for every
    # signal's disposition at start-up, from one site).
    assert "rt_sigaction" in calls


@pytest.fixture(scope="module")
def rewrite_guest(guest_bin):
    return {kind: guest_bin / f"libos_rewrite.{kind}" for kind in ("static", "pie", "dyn")}


@pytest.mark.parametrize("kind", ["static", "pie", "dyn"])
def test_rewritten_site_preserves_registers_flags_and_red_zone(monitor, rewrite_guest, kind):
    native = subprocess.run([str(rewrite_guest[kind]), "regs"], capture_output=True, text=True, timeout=60)
    assert parse_kv(native.stdout) == {"regs_bad": "0", "regs_rewritten": "0", "filler_bad": "0",
                                       "filler_rewritten": "0", "nop_bad": "0", "nop_rewritten": "0"}, \
        native.stdout  # the checks hold natively
    r = monitor.run(rewrite_guest[kind], ["g", "regs"])
    assert r.exit_code == 0, r.stderr
    # Five entries: the first three trap (the third rewrites), the others take the stub.
    assert "regs_bad=0\nregs_rewritten=1\n" in r.stdout, r.stdout
    # glibc's open form: register moves between the mov and the syscall,
    # which the stub makes (the buffer reaches %rdi only through them).
    assert "filler_bad=0\nfiller_rewritten=1\n" in r.stdout, r.stdout
    # An instruction the library OS does not copy: the site keeps trapping.
    assert "nop_bad=0\nnop_rewritten=0\n" in r.stdout, r.stdout


@pytest.mark.parametrize("kind", ["static", "dyn"])
def test_rewriting_races_threads_and_signal_handlers(monitor, rewrite_guest, kind):
    r = monitor.run(rewrite_guest[kind], ["g", "threads"])
    assert r.exit_code == 0, r.stderr
    out = parse_kv(r.stdout)
    assert out["threads_bad"] == "0", r.stdout  # 8 threads x 20000 uname+getcwd, first calls at once
    assert out["handler_calls_pos"] == "1" and out["handler_bad"] == "0", r.stdout


def test_rewriting_keeps_page_protection_and_skips_torn_sites(monitor, rewrite_guest):
    r = monitor.run(rewrite_guest["static"], ["g", "pages"])
    assert r.exit_code == 0, r.stderr
    out = parse_kv(r.stdout)
    assert out["pages_bad"] == "0", r.stdout
    assert (out["rwx_rewritten"], out["rwx_writable"]) == ("1", "1"), r.stdout  # a JIT's page stays writable
    assert (out["rx_rewritten"], out["rx_writable"]) == ("1", "0"), r.stdout  # code stays read-only
    # 5 bytes across a 16-byte boundary cannot be replaced in one store.
    assert out["straddling_rewritten"] == "0", r.stdout
    # A site reached once or twice keeps trapping: a rewrite costs more than
    # the traps it would save (most of a dynamic loader's sites, in every exec).
    assert (out["once_rewritten"], out["twice_rewritten"]) == ("0", "0"), r.stdout
    # A syscall instruction that ends on the next page does not stop it.
    assert (out["crossing_bad"], out["crossing_rewritten"]) == ("0", "1"), r.stdout


@pytest.mark.parametrize("kind", ["static", "dyn"])
def test_glibc_wrapper_site_is_rewritten(monitor, rewrite_guest, kind):
    r = monitor.run(rewrite_guest[kind], ["g", "libc"])
    assert r.exit_code == 0, r.stderr
    out = parse_kv(r.stdout)
    assert out["libc_site_found"] == "1" and out["libc_rewritten"] == "1", r.stdout
    assert out["sysname"] == "Linux"
