"""An OCI bundle (``config.json``) as a picoprocess: the manifest it maps to,
the identity, limits, network and cgroup it asks for, and a note for every
field picoproc cannot honour as written.

Nothing here touches the host beyond reading the bundle and resolving the
host paths its mounts name: the result is a :class:`Plan` that the container
process (``picoproc.oci.container``) carries out.

The rule for every field: honoured, emulated (the library OS provides the
same view itself, e.g. ``/proc``), or not honoured -- and then it is said, in
``Plan.notes`` (the runtime logs each one as a warning), or refused with an
error when running without it would be unsafe or meaningless.  The
annotation ``org.picoproc.strict=true`` turns every note into an error.
docs/OCI.md has the table of fields.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import resource

from picoproc.errors import PicoprocError
from picoproc.manifest import (
    Endpoint,
    Limits,
    Manifest,
    ManifestError,
    Mount,
    Tmpfs,
    check_manifest,
    normalise_guest_path,
    parse_endpoint,
    parse_size,
)

# Versions of the runtime spec this mapping was written against.
OCI_VERSION_MIN = "1.0.0"
OCI_VERSION_MAX = "1.2.1"

ANNOTATION_PREFIX = "org.picoproc."
# Annotations picoproc reads (docs/OCI.md): comma-separated lists.
ANNOTATIONS = {
    "org.picoproc.hidden": "guest paths refused with everything beneath them",
    "org.picoproc.hidden-names": "file-name patterns refused in every directory",
    "org.picoproc.net.connect": "ADDRESS:PORT endpoints beyond its own network the guest may connect to",
    "org.picoproc.net.listen": "ADDRESS:PORT endpoints the guest may listen on through the monitor",
    "org.picoproc.audit": "true: every mediated call as JSON lines in BUNDLE/picoproc-audit.jsonl",
    "org.picoproc.strict": "true: refuse the container instead of noting what is not honoured",
}

# A bind mount's size cannot be known; a tmpfs without size= gets this.
DEFAULT_TMPFS_BYTES = 64 << 20
# The library OS shows these itself; mounts there are emulated, not made.
_EMULATED_ROOTS = ("/proc", "/dev")
_NOBODY = 65534


class SpecError(ValueError, PicoprocError):
    """The bundle cannot run as a picoprocess; the message names the field."""


@dataclasses.dataclass(frozen=True)
class Process:
    """``process`` (or an ``exec --process`` file) as picoproc runs it."""

    args: tuple[str, ...]
    env: tuple[tuple[str, str], ...]
    cwd: str
    uid: int  # the guest's own view (getuid); 0 for root in the container
    gid: int
    additional_gids: tuple[int, ...]
    umask: int | None
    terminal: bool
    console_size: tuple[int, int] | None  # (height, width)
    rlimits: tuple[tuple[int, int, int], ...]  # (RLIMIT_*, soft, hard), NOFILE excluded
    open_files: int | None  # RLIMIT_NOFILE, which the manifest carries


@dataclasses.dataclass(frozen=True)
class Resources:
    memory_bytes: int | None = None
    pids: int | None = None
    cpu_quota_us: int | None = None
    cpu_period_us: int | None = None
    cpu_shares: int | None = None


@dataclasses.dataclass(frozen=True)
class Plan:
    bundle: str
    rootfs: str
    manifest: Manifest
    process: Process
    host_uid: int  # who file operations and the guest run as on the host
    host_gid: int
    host_groups: tuple[int, ...]
    # The guest's own network (loopback and wildcard sockets, made in it by
    # picoproc's socket helper): "pod" = the namespace at network_path,
    # "private" = a new one, "host" = the host's.  Grants (annotations) are
    # endpoints where the container process is: the pod's, else the host's.
    network: str
    network_path: str | None
    cgroups_path: str | None
    resources: Resources
    hooks: dict  # name -> list of hook objects, for the hooks run on the host
    annotations: dict
    audit: bool
    notes: tuple[str, ...]


class _Notes:
    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, field: str, text: str) -> None:
        self.items.append(f"{field}: {text}")


def load_bundle(bundle: str, *, rootless: bool | None = None) -> Plan:
    """Reads ``BUNDLE/config.json`` and maps it (see :func:`plan_from_spec`)."""
    bundle = os.path.abspath(bundle)
    path = os.path.join(bundle, "config.json")
    try:
        with open(path, "rb") as f:
            data = f.read(16 << 20)
    except OSError as exc:
        raise SpecError(f"{path}: {exc.strerror}") from None
    try:
        spec = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise SpecError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(spec, dict):
        raise SpecError(f"{path}: the top level is not a JSON object")
    return plan_from_spec(spec, bundle, rootless=rootless)


def _obj(value, field: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise SpecError(f"{field}: expected an object")
    return value


def _list(value, field: str) -> list:
    if value is None:
        return []
    if not isinstance(value, list):
        raise SpecError(f"{field}: expected an array")
    return value


def _int(value, field: str, *, minimum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise SpecError(f"{field}: expected an integer, got {value!r}")
    if minimum is not None and value < minimum:
        raise SpecError(f"{field}: must be at least {minimum}, got {value}")
    return value


def _str(value, field: str) -> str:
    if not isinstance(value, str):
        raise SpecError(f"{field}: expected a string, got {value!r}")
    if "\0" in value:
        raise SpecError(f"{field}: contains a NUL byte")
    return value


def _version_tuple(text: str) -> tuple[int, ...] | None:
    m = re.match(r"(\d+)\.(\d+)\.(\d+)", text)
    return tuple(int(x) for x in m.groups()) if m else None


def _map_id(value: int, mappings: list, field: str) -> int | None:
    """The host id for a container id under uid/gidMappings (None: unmapped)."""
    for i, m in enumerate(mappings):
        m = _obj(m, f"{field}[{i}]")
        inside = _int(m.get("containerID"), f"{field}[{i}].containerID", minimum=0)
        host = _int(m.get("hostID"), f"{field}[{i}].hostID", minimum=0)
        size = _int(m.get("size"), f"{field}[{i}].size", minimum=1)
        if inside <= value < inside + size:
            return host + value - inside
    return None


_RLIMITS = {name: getattr(resource, name) for name in dir(resource) if name.startswith("RLIMIT_")}


def process_from_spec(doc, field: str = "process") -> tuple[Process, list[str]]:
    """``process`` as picoproc runs it, and notes on what it does not honour."""
    notes = _Notes()
    doc = _obj(doc, field)
    if not doc:
        raise SpecError(f"{field}: missing (the container has nothing to run)")
    args = [_str(a, f"{field}.args[{i}]") for i, a in enumerate(_list(doc.get("args"), f"{field}.args"))]
    if not args:
        raise SpecError(f"{field}.args: must not be empty")
    env = []
    for i, item in enumerate(_list(doc.get("env"), f"{field}.env")):
        item = _str(item, f"{field}.env[{i}]")
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise SpecError(f"{field}.env[{i}]: {item!r} is not NAME=VALUE")
        env.append((name, value))
    cwd = _str(doc.get("cwd", "/"), f"{field}.cwd") or "/"
    if not cwd.startswith("/"):
        raise SpecError(f"{field}.cwd: {cwd!r} must be an absolute path")
    try:
        cwd = normalise_guest_path(cwd)
    except ValueError as exc:
        raise SpecError(f"{field}.cwd: {exc}") from None
    user = _obj(doc.get("user"), f"{field}.user")
    uid = _int(user.get("uid", 0), f"{field}.user.uid", minimum=0)
    gid = _int(user.get("gid", 0), f"{field}.user.gid", minimum=0)
    groups = tuple(_int(g, f"{field}.user.additionalGids[{i}]", minimum=0)
                   for i, g in enumerate(_list(user.get("additionalGids"), f"{field}.user.additionalGids")))
    umask = user.get("umask")
    if umask is not None:
        umask = _int(umask, f"{field}.user.umask", minimum=0)
        if umask > 0o777:
            raise SpecError(f"{field}.user.umask: {umask:#o} is not a umask")
    if user.get("username"):
        notes.add(f"{field}.user.username", "ignored (a Windows field)")
    terminal = bool(doc.get("terminal", False))
    console_size = None
    if doc.get("consoleSize") is not None:
        cs = _obj(doc["consoleSize"], f"{field}.consoleSize")
        console_size = (_int(cs.get("height", 0), f"{field}.consoleSize.height", minimum=0),
                        _int(cs.get("width", 0), f"{field}.consoleSize.width", minimum=0))
    rlimits = []
    open_files = None
    seen = set()
    for i, rl in enumerate(_list(doc.get("rlimits"), f"{field}.rlimits")):
        rl = _obj(rl, f"{field}.rlimits[{i}]")
        name = _str(rl.get("type"), f"{field}.rlimits[{i}].type")
        if name not in _RLIMITS:
            raise SpecError(f"{field}.rlimits[{i}].type: unknown rlimit {name!r}")
        if name in seen:
            raise SpecError(f"{field}.rlimits[{i}].type: {name} given twice")
        seen.add(name)
        soft = _int(rl.get("soft"), f"{field}.rlimits[{i}].soft", minimum=0)
        hard = _int(rl.get("hard"), f"{field}.rlimits[{i}].hard", minimum=0)
        if soft > hard:
            raise SpecError(f"{field}.rlimits[{i}]: soft {soft} is above hard {hard}")
        if name == "RLIMIT_NOFILE":
            open_files = max(1, min(soft, 1 << 20))
            if soft != hard:
                notes.add(f"{field}.rlimits[{i}]", f"RLIMIT_NOFILE soft {soft} and hard {hard} "
                          f"are both set to {open_files}")
            continue
        if name == "RLIMIT_CORE" and soft:
            notes.add(f"{field}.rlimits[{i}]", "RLIMIT_CORE stays 0: a picoprocess never dumps core")
            continue
        _, cur_hard = resource.getrlimit(_RLIMITS[name])
        if cur_hard != resource.RLIM_INFINITY and hard > cur_hard:
            notes.add(f"{field}.rlimits[{i}]", f"{name} hard {hard} is above the runtime's own "
                      f"hard limit {cur_hard}: lowered to it")
        rlimits.append((_RLIMITS[name], soft, hard))
    if doc.get("noNewPrivileges") is False:
        notes.add(f"{field}.noNewPrivileges", "false is not honoured: no_new_privs is always set")
    caps = _obj(doc.get("capabilities"), f"{field}.capabilities")
    granted = sorted({c for v in caps.values() if isinstance(v, list) for c in v})
    if granted:
        notes.add(f"{field}.capabilities", f"{', '.join(granted)} not granted: a picoprocess "
                  "holds no capabilities (the library OS emulates what it can)")
    for key, why in (("apparmorProfile", "no AppArmor profile is applied (the seccomp ABI confines)"),
                     ("selinuxLabel", "no SELinux label is applied"),
                     ("oomScoreAdj", "not applied"),
                     ("scheduler", "not applied"),
                     ("ioPriority", "not applied"),
                     ("execCPUAffinity", "not applied")):
        if doc.get(key) not in (None, "", 0):
            notes.add(f"{field}.{key}", why)
    proc = Process(tuple(args), tuple(env), cwd, uid, gid, groups, umask, terminal, console_size,
                   tuple(rlimits), open_files)
    return proc, notes.items


def _mount_options(m: dict, field: str) -> list[str]:
    return [_str(o, f"{field}.options[{i}]") for i, o in enumerate(_list(m.get("options"), f"{field}.options"))]


def _tmpfs_size(options: list[str], field: str) -> int:
    for opt in options:
        if opt.startswith("size="):
            text = opt[5:]
            if text.endswith("%"):
                raise SpecError(f"{field}: tmpfs size {text} (a share of RAM) is not supported; "
                                "give a size in bytes")
            try:
                return parse_size(text)
            except ValueError as exc:
                raise SpecError(f"{field}: tmpfs {opt}: {exc}") from None
    return DEFAULT_TMPFS_BYTES


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def _split_list(text: str) -> list[str]:
    return [p.strip() for p in text.split(",") if p.strip()]


def plan_from_spec(spec: dict, bundle: str, *, rootless: bool | None = None) -> Plan:
    """Maps a parsed ``config.json`` onto a picoprocess (raises SpecError)."""
    notes = _Notes()
    rootless = os.geteuid() != 0 if rootless is None else rootless
    version = spec.get("ociVersion")
    if not isinstance(version, str) or _version_tuple(version) is None:
        raise SpecError(f"ociVersion: {version!r} is not a version")
    if _version_tuple(version)[0] != 1:
        raise SpecError(f"ociVersion: {version} is not supported ({OCI_VERSION_MIN} .. {OCI_VERSION_MAX})")

    # -- root
    root = _obj(spec.get("root"), "root")
    root_path = _str(root.get("path", ""), "root.path")
    if not root_path:
        raise SpecError("root.path: missing")
    rootfs = os.path.realpath(os.path.join(bundle, root_path))
    if not os.path.isdir(rootfs):
        raise SpecError(f"root.path: {rootfs} is not a directory")
    if rootfs == "/":
        raise SpecError("root.path: the host root cannot be the container's root")
    readonly_root = bool(root.get("readonly", False))

    mounts: list[Mount] = [Mount("/", rootfs, writable=not readonly_root, exec=True)]
    tmpfs: list[Tmpfs] = []
    hidden: list[str] = []
    for i, m in enumerate(_list(spec.get("mounts"), "mounts")):
        field = f"mounts[{i}]"
        m = _obj(m, field)
        dest = _str(m.get("destination", ""), f"{field}.destination")
        if not dest.startswith("/"):
            raise SpecError(f"{field}.destination: {dest!r} must be an absolute path")
        try:
            dest = normalise_guest_path(dest)
        except ValueError as exc:
            raise SpecError(f"{field}.destination: {exc}") from None
        kind = m.get("type") or ""
        options = _mount_options(m, field)
        is_bind = kind == "bind" or "bind" in options or "rbind" in options
        where = f"{field} ({dest})"
        if kind == "proc":
            if dest != "/proc":
                notes.add(where, "a proc mount away from /proc is not made")
            continue  # the library OS's own /proc: the guest's processes only
        if any(_under(dest, r) for r in _EMULATED_ROOTS):
            if dest == "/dev" and kind == "tmpfs":
                continue  # the library OS's /dev (null, zero, random, urandom, tty, fd)
            what = "bind mount" if is_bind else f"{kind or 'untyped'} mount"
            top = "/" + dest.split("/")[1]
            notes.add(where, f"{what} not made: the library OS presents {top} itself")
            continue
        if kind in ("sysfs", "cgroup", "cgroup2"):
            notes.add(where, f"{kind} not mounted: a picoprocess sees no host kernel objects")
            continue
        if kind in ("mqueue", "devpts"):
            notes.add(where, f"{kind} not mounted")
            continue
        if is_bind:
            source = _str(m.get("source", ""), f"{field}.source")
            source = os.path.join(bundle, source)
            try:
                host = os.path.realpath(source, strict=True)
            except OSError as exc:
                raise SpecError(f"{where}: source {source}: {exc.strerror}") from None
            if host == "/" or _under(host, "/proc") or _under(host, "/dev"):
                raise SpecError(f"{where}: source {host} is never shown to a picoprocess "
                                "(the host root and kernel views are refused)")
            mounts.append(Mount(dest, host, writable="ro" not in options, exec="noexec" not in options))
            ignored = [o for o in options if o in ("nosuid", "nodev", "suid", "dev")]
            if ignored and "nosuid" not in ignored:
                notes.add(where, "suid/dev options are not honoured: no set-id or device node works in a picoprocess")
            continue
        if kind == "tmpfs":
            tmpfs.append(Tmpfs(dest, _tmpfs_size(options, where)))
            continue
        raise SpecError(f"{where}: mount type {kind!r} cannot be made in a picoprocess "
                        "(bind, tmpfs, proc, sysfs, devpts, mqueue and cgroup are known)")

    # -- process, identity
    process, pnotes = process_from_spec(spec.get("process"))
    notes.items.extend(pnotes)
    linux = _obj(spec.get("linux"), "linux")
    uid_maps = _list(linux.get("uidMappings"), "linux.uidMappings")
    gid_maps = _list(linux.get("gidMappings"), "linux.gidMappings")
    if rootless:
        host_uid, host_gid, host_groups = os.geteuid(), os.getegid(), ()
        if process.uid != 0 or uid_maps:
            notes.add("process.user", f"an unprivileged runtime runs the guest as itself ({host_uid}:{host_gid})")
    else:
        host_uid = _map_id(process.uid, uid_maps, "linux.uidMappings") if uid_maps else process.uid
        host_gid = _map_id(process.gid, gid_maps, "linux.gidMappings") if gid_maps else process.gid
        if host_uid is None or host_gid is None:
            raise SpecError(f"process.user: {process.uid}:{process.gid} is not mapped by linux.uid/gidMappings")
        if host_uid == 0 or host_gid == 0:
            notes.add("process.user", f"container root ({process.uid}:{process.gid}) runs as nobody "
                      f"({_NOBODY}:{_NOBODY}) on the host: host files it does not own are read-only to it")
            host_uid = _NOBODY if host_uid == 0 else host_uid
            host_gid = _NOBODY if host_gid == 0 else host_gid
        groups = []
        for g in process.additional_gids:
            hg = _map_id(g, gid_maps, "linux.gidMappings") if gid_maps else g
            if hg is None or hg == 0:
                notes.add("process.user.additionalGids", f"group {g} is not granted (unmapped or host root)")
                continue
            groups.append(hg)
        host_groups = tuple(dict.fromkeys(groups))

    # -- namespaces
    network, network_path = "host", None
    for i, ns in enumerate(_list(linux.get("namespaces"), "linux.namespaces")):
        ns = _obj(ns, f"linux.namespaces[{i}]")
        kind = ns.get("type")
        path = ns.get("path") or None
        if path is not None:
            path = _str(path, f"linux.namespaces[{i}].path")
        if kind == "network":
            network, network_path = ("pod", path) if path else ("private", None)
        elif kind in ("pid", "ipc", "uts", "mount", "cgroup", "user"):
            if path:
                notes.add(f"linux.namespaces[{i}]", f"the {kind} namespace at {path} is not joined: "
                          f"the picoprocess has its own")
        elif kind == "time":
            notes.add(f"linux.namespaces[{i}]", "time namespaces are not created")
        else:
            raise SpecError(f"linux.namespaces[{i}].type: unknown namespace {kind!r}")
    if network == "host":
        notes.add("linux.namespaces", "no network namespace: the host's network is the guest's own "
                  "(its loopback and wildcard listeners are the host's)")

    # -- resources
    res = _obj(linux.get("resources"), "linux.resources")
    memory = _obj(res.get("memory"), "linux.resources.memory")
    memory_bytes = memory.get("limit")
    if memory_bytes is not None:
        memory_bytes = _int(memory_bytes, "linux.resources.memory.limit")
        memory_bytes = memory_bytes if memory_bytes > 0 else None
    for key in ("reservation", "swap", "kernel", "kernelTCP", "swappiness", "disableOOMKiller"):
        if memory.get(key) not in (None, 0, False, -1) and not (key == "swap" and memory.get(key) == memory.get("limit")):
            notes.add(f"linux.resources.memory.{key}", "not applied (swap is always off for the guest)")
    pids = _obj(res.get("pids"), "linux.resources.pids").get("limit")
    if pids is not None:
        pids = _int(pids, "linux.resources.pids.limit")
        pids = pids if pids > 0 else None
    cpu = _obj(res.get("cpu"), "linux.resources.cpu")
    quota = cpu.get("quota")
    quota = _int(quota, "linux.resources.cpu.quota") if quota is not None else None
    period = cpu.get("period")
    period = _int(period, "linux.resources.cpu.period", minimum=1) if period is not None else None
    shares = cpu.get("shares")
    shares = _int(shares, "linux.resources.cpu.shares", minimum=0) if shares is not None else None
    for key in ("cpus", "mems", "realtimeRuntime", "realtimePeriod", "idle", "burst"):
        if cpu.get(key) not in (None, "", 0):
            notes.add(f"linux.resources.cpu.{key}", "not applied")
    for key in ("blockIO", "hugepageLimits", "network", "rdma", "unified"):
        if res.get(key):
            notes.add(f"linux.resources.{key}", "not applied")
    devices = [d for d in _list(res.get("devices"), "linux.resources.devices")
               if isinstance(d, dict) and d.get("allow")]
    if devices:
        notes.add("linux.resources.devices", "no device is granted: the guest has only the library OS's "
                  "/dev (null, zero, full, random, urandom)")
    resources = Resources(memory_bytes, pids, quota if quota and quota > 0 else None, period,
                          shares or None)

    # -- what the library OS presents anyway, or does not apply
    for i, p in enumerate(_list(linux.get("maskedPaths"), "linux.maskedPaths")):
        p = _str(p, f"linux.maskedPaths[{i}]")
        if p.startswith("/") and not any(_under(p, r) for r in ("/proc", "/sys", "/dev")):
            hidden.append(p)
    if linux.get("sysctl"):
        notes.add("linux.sysctl", f"{', '.join(sorted(linux['sysctl']))} not applied")
    if linux.get("devices"):
        notes.add("linux.devices", "no device node is created")
    for key in ("intelRdt", "personality", "mountLabel", "memoryPolicy"):
        if linux.get(key):
            notes.add(f"linux.{key}", "not applied")
    if linux.get("seccomp"):
        pass  # picoproc's own filter is narrower than any profile an engine sends; see docs/OCI.md
    if spec.get("domainname"):
        notes.add("domainname", "not set")

    # -- hooks
    hooks = _obj(spec.get("hooks"), "hooks")
    for name in ("createContainer", "startContainer"):
        if hooks.get(name):
            raise SpecError(f"hooks.{name}: hooks that run inside the container cannot run in a "
                            "picoprocess (only host programs of the library OS's choosing run there)")
    for name in hooks:
        if name not in ("prestart", "createRuntime", "poststart", "poststop", "createContainer", "startContainer"):
            raise SpecError(f"hooks.{name}: unknown hook")
        for j, h in enumerate(_list(hooks[name], f"hooks.{name}")):
            h = _obj(h, f"hooks.{name}[{j}]")
            if not isinstance(h.get("path"), str) or not h["path"].startswith("/"):
                raise SpecError(f"hooks.{name}[{j}].path: must be an absolute path")

    # -- annotations
    annotations = _obj(spec.get("annotations"), "annotations")
    annotations = {str(k): str(v) for k, v in annotations.items()}
    connect: list[Endpoint] = []
    listen: list[Endpoint] = []
    hidden_names: list[str] = []
    for key, value in annotations.items():
        if not key.startswith(ANNOTATION_PREFIX):
            continue
        if key not in ANNOTATIONS:
            raise SpecError(f"annotations.{key}: unknown picoproc annotation "
                            f"(known: {', '.join(sorted(ANNOTATIONS))})")
        if key == "org.picoproc.hidden":
            hidden.extend(_split_list(value))
        elif key == "org.picoproc.hidden-names":
            hidden_names.extend(_split_list(value))
        elif key in ("org.picoproc.net.connect", "org.picoproc.net.listen"):
            target = connect if key.endswith("connect") else listen
            for item in _split_list(value):
                try:
                    target.append(parse_endpoint(item))
                except ValueError as exc:
                    raise SpecError(f"annotations.{key}: {exc}") from None
        elif value.lower() not in ("true", "false", "1", "0", "yes", "no"):
            raise SpecError(f"annotations.{key}: {value!r} is not true or false")
    audit = annotations.get("org.picoproc.audit", "").lower() in ("true", "1", "yes")
    strict = annotations.get("org.picoproc.strict", "").lower() in ("true", "1", "yes")

    limits = Limits(memory_bytes=memory_bytes, pids=pids, open_files=process.open_files)
    # Without one, runc's new UTS namespace keeps the host's name.
    hostname = _str(spec.get("hostname") or os.uname().nodename, "hostname")
    manifest = Manifest(
        mounts=tuple(mounts),
        tmpfs=tuple(tmpfs),
        hidden=tuple(hidden),
        hidden_names=tuple(hidden_names),
        env=process.env,
        cwd="/",
        hostname=hostname,
        net_connect=tuple(connect),
        net_listen=tuple(listen),
        limits=limits,
    )
    try:
        manifest = check_manifest(manifest)
    except ManifestError as exc:
        raise SpecError(f"config.json as a picoproc manifest: {exc.key or ''}: {exc.reason}") from None
    if strict and notes.items:
        raise SpecError("org.picoproc.strict: not honoured: " + "; ".join(notes.items))
    cgroups_path = linux.get("cgroupsPath") or None
    if cgroups_path is not None:
        cgroups_path = _str(cgroups_path, "linux.cgroupsPath")
    return Plan(
        bundle=bundle, rootfs=rootfs, manifest=manifest, process=process,
        host_uid=host_uid, host_gid=host_gid, host_groups=host_groups,
        network=network, network_path=network_path, cgroups_path=cgroups_path,
        resources=resources, hooks=hooks, annotations=annotations, audit=audit,
        notes=tuple(notes.items),
    )
