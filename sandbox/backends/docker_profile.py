"""Docker's default seccomp profile and capability set, from the project's data file.

``data/docker_default_seccomp.json`` names its source and version.  Docker
resolves the profile's ``includes``/``excludes`` against the container's
capabilities, architecture and kernel, then loads the result; this module does
the same and either compiles it with libseccomp (through picoproc's cffi
module, for the ``container`` backend, which loads the BPF itself) or renders
it as an OCI ``linux.seccomp`` section (for ``container-crun``).
"""

from __future__ import annotations

import functools
import json
import os
import platform
from importlib import resources

from picoproc.errors import PicoprocError

# Linux capability numbers (<linux/capability.h>).
CAPABILITIES = {
    "CAP_CHOWN": 0, "CAP_DAC_OVERRIDE": 1, "CAP_DAC_READ_SEARCH": 2, "CAP_FOWNER": 3, "CAP_FSETID": 4,
    "CAP_KILL": 5, "CAP_SETGID": 6, "CAP_SETUID": 7, "CAP_SETPCAP": 8, "CAP_LINUX_IMMUTABLE": 9,
    "CAP_NET_BIND_SERVICE": 10, "CAP_NET_BROADCAST": 11, "CAP_NET_ADMIN": 12, "CAP_NET_RAW": 13,
    "CAP_IPC_LOCK": 14, "CAP_IPC_OWNER": 15, "CAP_SYS_MODULE": 16, "CAP_SYS_RAWIO": 17,
    "CAP_SYS_CHROOT": 18, "CAP_SYS_PTRACE": 19, "CAP_SYS_PACCT": 20, "CAP_SYS_ADMIN": 21,
    "CAP_SYS_BOOT": 22, "CAP_SYS_NICE": 23, "CAP_SYS_RESOURCE": 24, "CAP_SYS_TIME": 25,
    "CAP_SYS_TTY_CONFIG": 26, "CAP_MKNOD": 27, "CAP_LEASE": 28, "CAP_AUDIT_WRITE": 29,
    "CAP_AUDIT_CONTROL": 30, "CAP_SETFCAP": 31, "CAP_MAC_OVERRIDE": 32, "CAP_MAC_ADMIN": 33,
    "CAP_SYSLOG": 34, "CAP_WAKE_ALARM": 35, "CAP_BLOCK_SUSPEND": 36, "CAP_AUDIT_READ": 37,
    "CAP_PERFMON": 38, "CAP_BPF": 39, "CAP_CHECKPOINT_RESTORE": 40,
}  # fmt: skip

# moby's names for this machine's architecture in "arches" lists.
_ARCH_NAMES = {"x86_64": ("amd64", "x86_64")}

_OCI_OPS = {
    "==": "SCMP_CMP_EQ", "!=": "SCMP_CMP_NE", "<": "SCMP_CMP_LT", "<=": "SCMP_CMP_LE",
    ">": "SCMP_CMP_GT", ">=": "SCMP_CMP_GE", "masked==": "SCMP_CMP_MASKED_EQ",
}  # fmt: skip

RET_ALLOW = 0x7FFF0000
RET_ERRNO = 0x00050000


class ProfileError(ValueError, PicoprocError):
    pass


@functools.cache
def load_profile() -> dict:
    text = (
        resources.files("picoproc.backends")
        .joinpath("data/docker_default_seccomp.json")
        .read_text()
    )
    profile = json.loads(text)
    for i, rule in enumerate(profile["rules"]):
        if rule["action"] not in ("allow", "errno"):
            raise ProfileError(f"docker profile rule {i}: unknown action {rule['action']!r}")
        for arg in rule.get("args", ()):
            if arg["op"] not in _OCI_OPS:
                raise ProfileError(f"docker profile rule {i}: unknown op {arg['op']!r}")
    return profile


def default_capabilities() -> list[str]:
    return list(load_profile()["capabilities"])


def _kernel_version() -> tuple[int, ...]:
    release = os.uname().release.split("-")[0]
    return tuple(int(p) for p in release.split(".")[:2] if p.isdigit())


def _applies(
    rule: dict, caps: set[str], arch_names: tuple[str, ...], kernel: tuple[int, ...]
) -> bool:
    inc, exc = rule.get("includes", {}), rule.get("excludes", {})
    if inc.get("caps") and not set(inc["caps"]) <= caps:
        return False
    if inc.get("arches") and not set(inc["arches"]) & set(arch_names):
        return False
    if inc.get("min_kernel") and kernel < tuple(int(p) for p in inc["min_kernel"].split(".")):
        return False
    if exc.get("caps") and set(exc["caps"]) & caps:
        return False
    return not (exc.get("arches") and set(exc["arches"]) & set(arch_names))


def applicable_rules(caps: list[str] | None = None) -> list[dict]:
    """The profile's rules that apply to a container with ``caps`` (Docker's
    default set when None) on this machine, as Docker would resolve them."""
    profile = load_profile()
    capset = set(default_capabilities() if caps is None else caps)
    machine = platform.machine()
    arch_names = _ARCH_NAMES.get(machine, (machine,))
    kernel = _kernel_version()
    return [r for r in profile["rules"] if _applies(r, capset, arch_names, kernel)]


def oci_seccomp(caps: list[str] | None = None) -> dict:
    """The resolved profile as an OCI runtime-spec ``linux.seccomp`` object."""
    profile = load_profile()
    syscalls = []
    for rule in applicable_rules(caps):
        entry: dict = {"names": list(rule["names"])}
        if rule["action"] == "allow":
            entry["action"] = "SCMP_ACT_ALLOW"
        else:
            entry["action"] = "SCMP_ACT_ERRNO"
            entry["errnoRet"] = rule["errno"]
        if rule.get("args"):
            entry["args"] = [
                {
                    "index": a["index"],
                    "value": a["value"],
                    "valueTwo": a.get("value_two", 0),
                    "op": _OCI_OPS[a["op"]],
                }
                for a in rule["args"]
            ]
        syscalls.append(entry)
    return {
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": profile["default_errno"],
        "architectures": list(profile["architectures"]),
        "syscalls": syscalls,
    }


# The profile's architecture names -> libseccomp's.
_SCMP_ARCH_NAMES = {"SCMP_ARCH_X86_64": "x86_64", "SCMP_ARCH_X86": "x86", "SCMP_ARCH_X32": "x32"}
NR_SCMP_ERROR = -1  # libseccomp: no such system call on any architecture


@functools.cache
def compile_bpf() -> tuple[bytes, tuple[str, ...]]:
    """The resolved profile compiled with libseccomp, for the native
    architecture and, as Docker does, its x86 and x32 sub-architectures (so
    that 32-bit calls are filtered by name rather than killed).  Returns (BPF
    program, names libseccomp could place on none of them)."""
    from picoproc.native import ffi, lib

    profile = load_profile()
    multi_arch = hasattr(lib, "seccomp_arch_add") and hasattr(lib, "seccomp_rule_add_array")
    ctx = lib.seccomp_init(RET_ERRNO | profile["default_errno"])
    if ctx == ffi.NULL:
        raise ProfileError("libseccomp: seccomp_init failed")
    skipped: list[str] = []
    try:
        # Docker's runtime sets no_new_privs itself when asked; the filter must not.
        _check(lib.seccomp_attr_set(ctx, lib.SCMP_FLTATR_CTL_NNP, 0), "NNP attribute")
        if multi_arch and platform.machine() == "x86_64":
            for arch in profile["architectures"]:
                name = _SCMP_ARCH_NAMES.get(arch)
                if name is None or name == "x86_64":
                    continue  # the native arch is in every new filter
                token = lib.seccomp_arch_resolve_name(name.encode())
                rc = lib.seccomp_arch_add(ctx, token)
                if rc < 0 and rc != -17:  # -EEXIST: already there
                    _check(rc, f"add architecture {name}")
        add_rule = lib.seccomp_rule_add_array if multi_arch else lib.seccomp_rule_add_exact_array
        for rule in applicable_rules():
            action = RET_ALLOW if rule["action"] == "allow" else RET_ERRNO | rule["errno"]
            args = rule.get("args", ())
            cmps = ffi.new("struct scmp_arg_cmp[]", max(len(args), 1))
            for i, a in enumerate(args):
                cmps[i].arg = a["index"]
                if a["op"] == "masked==":
                    cmps[i].op = lib.SCMP_CMP_MASKED_EQ
                    cmps[i].datum_a = a["value"]
                    cmps[i].datum_b = a.get("value_two", 0)
                else:
                    cmps[i].op = getattr(lib, _OCI_OPS[a["op"]])
                    cmps[i].datum_a = a["value"]
                    cmps[i].datum_b = 0
            for name in rule["names"]:
                # Negative numbers other than NR_SCMP_ERROR are libseccomp's
                # pseudo-numbers for calls the native arch lacks (socketcall,
                # the *32 and *_time64 families): real on x86.
                nr = lib.seccomp_syscall_resolve_name(name.encode())
                if nr == NR_SCMP_ERROR or (nr < 0 and not multi_arch):
                    skipped.append(name)
                    continue
                rc = add_rule(ctx, action, nr, len(args), cmps)
                if rc < 0:
                    # A call that none of the filter's architectures has, or
                    # whose arguments a multiplexed 32-bit call hides.
                    skipped.append(name)
        fd = os.memfd_create("picoproc-docker-bpf", os.MFD_CLOEXEC)
        try:
            _check(lib.seccomp_export_bpf(ctx, fd), "export")
            size = os.lseek(fd, 0, os.SEEK_END)
            program = os.pread(fd, size, 0)
        finally:
            os.close(fd)
    finally:
        lib.seccomp_release(ctx)
    if not program or len(program) % 8:
        raise ProfileError(f"libseccomp exported {len(program)} bytes, not a BPF program")
    return program, tuple(sorted(set(skipped)))


def _check(rc: int, what: str) -> None:
    if rc < 0:
        raise ProfileError(f"libseccomp: {what} failed: {os.strerror(-rc)}")
