"""The manifest: what a picoprocess is granted (mounts, network, env, limits).

This module holds the data model every layer reads (spawn, the mediation
policy, the comparison backends), and everything that produces one:

* ``load_manifest(path)`` / ``parse_manifest(text)`` read the TOML schema
  documented in docs/MANIFEST.md and validate it; every problem is a
  ``ManifestError`` whose one-line message names the key and the reason;
* ``default_manifest()`` is the embedded default (default_manifest.toml, shipped
  as package data): read-only system directories, no secrets, a private 64M
  /tmp, no network;
* ``apply_overrides(manifest, ...)`` layers the ``picoproc run`` flags (plain
  string values) on top of a manifest; ``add_cli_options(parser)`` and
  ``manifest_from_cli_args(args)`` wire that into argparse;
* ``check_manifest(manifest)`` validates a Manifest built in Python the same way;
* ``manifest_to_toml(manifest)`` writes a manifest back as TOML;
* ``Manifest.is_hidden(path)`` says what ``hidden`` and ``hidden_names``
  refuse, for the mediation layer and the backends (the rules, and the
  guest view as a whole, are picoproc.mounttable's).

Host paths are resolved with ``os.path.realpath`` when the manifest is loaded
and must exist then; guest paths are normalised (absolute, no ``.``/``..``,
no NUL).  The monitor never re-interprets a host path from a manifest.
"""

from __future__ import annotations

import errno
import itertools
import math
import os
import re
import stat
import threading
from collections.abc import Iterable, Mapping

from picoproc import records
from picoproc.errors import PicoprocError
from picoproc.mounttable import (
    MountTable,
    hidden_name_matches,
    hidden_path_matches,
    is_hidden,
    join,
    under,
)

TYPE_CHECKING = False  # typing's own flag, without importing typing on every run
if TYPE_CHECKING:
    from typing import Any


@records.record(frozen=True)
class Mount:
    """A host directory (or file) shown to the guest at ``guest``."""

    guest: str  # absolute, normalised guest path
    host: str  # absolute host path (resolved at manifest load time)
    writable: bool = False
    exec: bool = True  # images under it may be executed (PICO_OPEN_EXEC)


@records.record(frozen=True)
class Tmpfs:
    """A private scratch directory for the run, size-limited, empty at start."""

    guest: str
    size_bytes: int
    # The most files, directories and links it may hold; None: one per 4 KiB
    # of size (picoproc.scratch.default_inodes).  Inodes are kernel memory
    # that the size does not count.
    inodes: int | None = None


@records.record(frozen=True)
class Endpoint:
    """A network grant: ``host`` is a literal IPv4/IPv6 address; port 0 = any."""

    host: str
    port: int


@records.record(frozen=True)
class Limits:
    """Resource limits; None = no limit from the manifest."""

    wall_time_s: float | None = None
    cpu_time_s: float | None = None
    memory_bytes: int | None = None
    pids: int | None = None
    open_files: int | None = None
    output_bytes: int | None = None  # stdout+stderr captured from the guest


@records.record(frozen=True)
class Manifest:
    mounts: tuple[Mount, ...] = ()
    tmpfs: tuple[Tmpfs, ...] = ()
    # Guest paths refused even where a mount would show them (secrets inside
    # read-only system directories, e.g. /etc/shadow, /etc/ssl/private).
    # Plain normalised paths (no patterns); each hides itself and everything
    # beneath it.  Other guest paths showing the same host files are listed too.
    hidden: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    cwd: str = "/"
    hostname: str = "picoproc"
    net_connect: tuple[Endpoint, ...] = ()  # tcp:/udp: connect grants
    net_listen: tuple[Endpoint, ...] = ()  # tcp.srv: listen grants
    unix_paths: tuple[str, ...] = ()  # host paths (or directories) unix: may connect under
    limits: Limits = Limits()
    # ADDED (manifest owner): file-name glob patterns (fnmatch, one component,
    # e.g. "id_rsa", "*.key", ".ssh") refused in every directory of the guest
    # view: a path is hidden if any of its components matches one.  This is
    # how "anything named like a private key" is expressed; see
    # hidden_name_matches for the exact rule.
    hidden_names: tuple[str, ...] = ()

    def is_hidden(self, guest_path: str) -> bool:
        """True if ``hidden`` or ``hidden_names`` refuses ``guest_path``.

        ``guest_path`` is the canonical guest path (symlinks in the view
        already resolved); ``..`` is resolved lexically here as well.
        """
        return is_hidden(guest_path, self.hidden, self.hidden_names)


# --------------------------------------------------------------------------
# Errors

class ManifestError(ValueError, PicoprocError):
    """A manifest (file, string or command-line flag) is invalid.

    ``str()`` is one line: ``SOURCE: KEY: REASON`` (parts that are unknown are
    left out), e.g. ``manifest.toml: mount[2].host: /nonexistent does not exist``.
    """

    def __init__(self, reason: str, *, key: str | None = None, source: str | None = None):
        super().__init__(reason)
        self.reason = reason
        self.key = key
        self.source = source

    def __str__(self) -> str:
        parts = [p for p in (self.source, self.key, self.reason) if p]
        # One line whatever the inputs were: a value quoted into a reason is
        # already escaped, but a file name may hold a newline.
        return ": ".join(_one_line(p) for p in parts)


def _one_line(text: str) -> str:
    return text.replace("\r", "\\r").replace("\n", "\\n")


def _show(value: Any, limit: int = 80) -> str:
    """A value quoted for an error message: escaped, on one line, truncated."""
    if isinstance(value, str):
        out = []
        for ch in value:
            if ch == '"' or ch == "\\":
                out.append("\\" + ch)
            elif ch.isprintable() and not 0xD800 <= ord(ch) <= 0xDFFF:
                out.append(ch)
            elif ch in "\n\r\t":
                out.append({"\n": "\\n", "\r": "\\r", "\t": "\\t"}[ch])
            elif ord(ch) <= 0xFF:
                out.append(f"\\x{ord(ch):02x}")
            else:
                out.append(f"\\u{ord(ch):04x}")
        text = "".join(out)
        if len(text) > limit:
            text = text[:limit] + "..."
        return f'"{text}"'
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def _show_path(path: str) -> str:
    """Paths are shown bare when that is unambiguous, quoted otherwise."""
    if path and all(ch.isprintable() and not ch.isspace() and ch not in "\"\\" and
                    not 0xD800 <= ord(ch) <= 0xDFFF for ch in path) and len(path) <= 200:
        return path
    return _show(path, 200)


def _describe(value: Any) -> str:
    """A wrong value in a message: strings quoted, other values by type."""
    return _show(value) if isinstance(value, str) else _type_name(value)


def _type_name(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a float"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    return "a date/time" if hasattr(value, "isoformat") else type(value).__name__


class _Invalid(ValueError, PicoprocError):
    """A value is invalid; the caller knows which key it came from."""


# --------------------------------------------------------------------------
# Values: paths, sizes, durations, counts, endpoints

PATH_MAX = 4096  # bytes, including the terminating NUL on Linux
NAME_MAX = 255
# Guest paths the library OS presents itself (docs/ARCHITECTURE.md, "/dev and
# /proc"); a mount or tmpfs there would be shadowed by, or fight with, them.
RESERVED_GUEST_ROOTS = ("/proc", "/dev")
# ...except these, which the library OS leaves to the manifest: /dev/shm is
# where POSIX shared memory and named semaphores live (a scratch tmpfs).
UNRESERVED_GUEST_PATHS = ("/dev/shm",)
# Host trees that are kernel views, not files: /proc holds magic links and the
# host's process table, /dev holds device nodes.  Never granted.
FORBIDDEN_HOST_ROOTS = ("/proc", "/dev")
MAX_MANIFEST_BYTES = 1 << 20  # a manifest is a few KiB; refuse to read more
DEFAULT_TMPFS_SIZE = 64 << 20
# The monitor holds each mount's directory (and, for a tmpfs, a file system
# of its own) open for the whole run: the counts a manifest may ask for are
# bounded like the guest's other resources.
MAX_MOUNTS = 256
MAX_TMPFS = 16
MAX_SIZE = (1 << 63) - 1
MAX_PIDS = 4_194_304  # PID_MAX_LIMIT on 64-bit Linux
MAX_OPEN_FILES = 1 << 20  # fs.nr_open's default: setrlimit refuses more
UNLIMITED = "unlimited"  # the word that clears a limit (TOML and CLI)


def _check_text(value: str, what: str) -> None:
    if "\x00" in value:
        raise _Invalid(f"{_show(value)} contains a NUL byte ({what} cannot hold one)")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise _Invalid(f"{_show(value)} is not valid UTF-8") from None


def _split_guest(value: Any) -> list[str]:
    if not isinstance(value, str):
        raise _Invalid(f"expected a path string, got {_type_name(value)}")
    _check_text(value, "a path")
    if not value.startswith("/"):
        raise _Invalid(f"{_show_path(value)} is not absolute (guest paths start with /)")
    if len(value.encode()) >= PATH_MAX:
        raise _Invalid(f"path is {len(value.encode())} bytes long (the limit is {PATH_MAX - 1})")
    parts = []
    for part in value.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            raise _Invalid(f"{_show_path(value)} contains '..' (write the path without it)")
        if len(part.encode()) > NAME_MAX:
            raise _Invalid(f"{_show_path(value)} has a component longer than {NAME_MAX} bytes")
        parts.append(part)
    return parts


def normalise_guest_path(value: Any) -> str:
    """An absolute guest path with ``//`` and ``.`` removed; ``..`` and NUL refused.

    Raises ValueError with the reason.
    """
    return "/" + "/".join(_split_guest(value))


def _guest_mount_point(value: Any) -> str:
    path = normalise_guest_path(value)
    if any(under(path, free) for free in UNRESERVED_GUEST_PATHS):
        return path
    for root in RESERVED_GUEST_ROOTS:
        if under(path, root):
            free = [p for p in UNRESERVED_GUEST_PATHS if under(p, root)]
            hint = f" (only {', '.join(free)} may be mounted there)" if free else ""
            raise _Invalid(f"{path} is under {root}, which the library OS provides itself{hint}")
    return path


def _normalise_hidden(value: Any) -> str:
    path = normalise_guest_path(value)
    if path == "/":
        raise _Invalid("/ would hide the whole guest filesystem")
    return path


def _parse_hidden_name(value: Any) -> str:
    if not isinstance(value, str):
        raise _Invalid(f"expected a file-name pattern string, got {_type_name(value)}")
    _check_text(value, "a file name")
    if not value or "/" in value:
        raise _Invalid(f"{_show(value)} is not a file-name pattern (no '/'; for a path use hidden)")
    if value in (".", ".."):
        raise _Invalid(f"{_show(value)} is not a file name")
    if len(value.encode()) > NAME_MAX:
        raise _Invalid(f"{_show(value)} is longer than {NAME_MAX} bytes")
    if re.fullmatch(r"[*?]+", value):
        raise _Invalid(f"{_show(value)} matches every name and would hide the whole "
                       "guest filesystem")
    return value


def _hidden_by(path: str, layer: _Layer) -> tuple[str, str] | None:
    """The (label, entry) of the first hidden path or name that refuses ``path``."""
    for label, hidden in layer.hidden:
        if hidden_path_matches(hidden, path):
            return label, hidden
    for label, pattern in layer.hidden_names:
        if hidden_name_matches(pattern, path):
            return label, pattern
    return None


def resolve_host_path(value: Any, base_dir: str | None = None) -> str:
    """The real absolute host path for ``value`` (relative to ``base_dir``).

    It must exist; the host root, /proc and /dev are refused.  Raises
    ValueError with the reason.
    """
    if not isinstance(value, str):
        raise _Invalid(f"expected a path string, got {_type_name(value)}")
    if not value:
        raise _Invalid("is empty")
    if "\x00" in value:
        raise _Invalid(f"{_show(value)} contains a NUL byte (a path cannot hold one)")
    joined = os.path.join(base_dir or os.getcwd(), value)
    try:
        real = os.path.realpath(joined, strict=True)
        os.stat(real)
        _note_host_probe("realpath", joined, real)
    except OSError as exc:
        hint = " (~ is not expanded; write the full path)" if value.startswith("~") else ""
        if exc.errno == errno.ENOENT or exc.errno == errno.ENOTDIR:
            raise _Invalid(f"{_show_path(value)} does not exist{hint}") from None
        if exc.errno == errno.ELOOP:
            raise _Invalid(f"{_show_path(value)}: too many levels of symbolic links") from None
        raise _Invalid(f"{_show_path(value)}: {os.strerror(exc.errno or 0).lower()}") from None
    if real == "/":
        raise _Invalid(f"{_show_path(value)} is the host root, which would expose /proc, "
                       "/dev and every secret on the host; grant the directories you need")
    for root in FORBIDDEN_HOST_ROOTS:
        if under(real, root):
            resolved = "" if real == value else f" (resolves to {_show_path(real)})"
            raise _Invalid(f"{_show_path(value)}{resolved} is under {root}, a host kernel "
                           "view that is never granted")
    return real


# Patterns are compiled on first use (re caches them), not when the module
# is imported: most runs never parse a size, a duration or a manifest.
_SIZE_RE = r"(?i)(\d+(?:\.\d+)?)\s*([kmgtp]?)(i?b)?"
_SIZE_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}
_SIZE_HINT = "(use e.g. 512M)"


def parse_size(value: Any) -> int:
    """Bytes from an integer or a string like ``64M``, ``1.5G``, ``512KiB``.

    Units are binary (1K = 1024); ``B``/``iB`` suffixes are optional.  The
    result is > 0.  Raises ValueError with the reason.
    """
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise _Invalid(f"expected a size (an integer of bytes or a string like \"64M\"), "
                       f"got {_type_name(value)}")
    if isinstance(value, int):
        nbytes = value
    else:
        match = re.fullmatch(_SIZE_RE, value.strip())
        if not match or (not match.group(2) and match.group(3) and match.group(3).lower() != "b"):
            raise _Invalid(f"{_show(value)} is not a size {_SIZE_HINT}")
        from fractions import Fraction

        exact = Fraction(match.group(1)) * _SIZE_UNITS[match.group(2).lower()]
        if exact.denominator != 1 and not match.group(2):
            raise _Invalid(f"{_show(value)} is not a whole number of bytes")
        nbytes = math.floor(exact)
    if nbytes <= 0:
        raise _Invalid(f"must be greater than 0 (got {_show(value)})")
    if nbytes > MAX_SIZE:
        raise _Invalid(f"{_show(value)} is too large (the limit is 2^63-1 bytes)")
    return nbytes


_DURATION_PART = r"(\d+(?:\.\d+)?)(ms|s|m|h|d)"
_DURATION_RE = rf"(?:{_DURATION_PART})+"
_DURATION_UNITS = {"ms": (1, 1000), "s": (1, 1), "m": (60, 1), "h": (3600, 1), "d": (86400, 1)}
_DURATION_HINT = "(use e.g. 30s, 2m, 1h30m or a number of seconds)"


def parse_duration(value: Any) -> float:
    """Seconds from a number or a string like ``30s``, ``2m``, ``1h30m``, ``500ms``.

    The result is finite and > 0.  Raises ValueError with the reason.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise _Invalid(f"expected a duration (seconds, or a string like \"30s\"), "
                       f"got {_type_name(value)}")
    if isinstance(value, str):
        text = value.strip().replace(" ", "")
        if re.fullmatch(r"\d+(?:\.\d+)?", text):
            seconds = float(text)
        elif re.fullmatch(_DURATION_RE, text):
            from fractions import Fraction

            total = Fraction(0)
            for number, unit in re.findall(_DURATION_PART, text):
                total += Fraction(number) * Fraction(*_DURATION_UNITS[unit])
            seconds = float(total)
        else:
            raise _Invalid(f"{_show(value)} is not a duration {_DURATION_HINT}")
    else:
        seconds = float(value)
    if not math.isfinite(seconds):
        raise _Invalid(f"{_show(value)} is not a finite duration")
    if seconds <= 0:
        raise _Invalid(f"must be greater than 0 (got {_show(value)})")
    if seconds > 100 * 365 * 86400:
        raise _Invalid(f"{_show(value)} is longer than a century; use \"{UNLIMITED}\" for no limit")
    return seconds


def parse_count(value: Any, maximum: int) -> int:
    """A whole number in 1..maximum (an int, or decimal digits from the CLI)."""
    if isinstance(value, str) and re.fullmatch(r"\s*\d+\s*", value):
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise _Invalid(f"expected a whole number, got {_describe(value)}")
    if value <= 0:
        raise _Invalid(f"must be greater than 0 (got {value})")
    if value > maximum:
        raise _Invalid(f"{value} is more than the maximum {maximum}")
    return value


def parse_endpoint(value: Any) -> Endpoint:
    """``IPv4:PORT`` or ``[IPv6]:PORT``; PORT 0 or ``*`` means any port."""
    import ipaddress

    if not isinstance(value, str):
        raise _Invalid(f"expected a string \"ADDRESS:PORT\", got {_type_name(value)}")
    _check_text(value, "an address")
    bracketed = re.fullmatch(r"\[([^\]]*)\]:(.*)", value)
    if bracketed:
        host, port_text = bracketed.groups()
    else:
        host, sep, port_text = value.rpartition(":")
        if not sep:
            raise _Invalid(f"{_show(value)} needs a port (ADDRESS:PORT, e.g. 127.0.0.1:8080)")
        if ":" in host:
            raise _Invalid(f"{_show(value)}: an IPv6 address goes in brackets, e.g. [::1]:53")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise _Invalid(f"{_show(value)} needs a literal IP address "
                       "(names are not resolved: the guest has no DNS of its own)") from None
    if bracketed and address.version == 4:
        raise _Invalid(f"{_show(value)}: brackets are only for IPv6 addresses")
    if port_text == "*":
        port = 0
    elif re.fullmatch(r"\d{1,6}", port_text):
        port = int(port_text)
        if port > 65535:
            raise _Invalid(f"{_show(value)}: port {port} is out of range 0..65535")
    else:
        raise _Invalid(f"{_show(value)}: port {_show(port_text)} is not a number in 0..65535")
    return Endpoint(str(address), port)


def format_endpoint(endpoint: Endpoint) -> str:
    host = f"[{endpoint.host}]" if ":" in endpoint.host else endpoint.host
    return f"{host}:{endpoint.port}"


_HOSTNAME_RE = (r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                          r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*")


def _parse_hostname(value: Any) -> str:
    if not isinstance(value, str):
        raise _Invalid(f"expected a string, got {_type_name(value)}")
    # 64 = the kernel's __NEW_UTS_LEN for sethostname().
    if not re.fullmatch(_HOSTNAME_RE, value) or len(value) > 64:
        raise _Invalid(f"{_show(value)} is not a host name (letters, digits, '-' and '.', "
                       "at most 64 characters)")
    return value


def _parse_env_name(name: Any) -> str:
    if not isinstance(name, str) or not name:
        raise _Invalid("an environment variable needs a non-empty name")
    _check_text(name, "a variable name")
    if "=" in name:
        raise _Invalid(f"{_show(name)}: a variable name cannot contain '='")
    return name


def _parse_env_value(value: Any) -> str:
    if not isinstance(value, str):
        raise _Invalid(f"expected a string, got {_type_name(value)} (quote numbers: \"1\")")
    _check_text(value, "an environment value")
    return value


def _parse_bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise _Invalid(f"expected true or false, got {_describe(value)}")
    return value


def _is_unlimited(value: Any) -> bool:
    return isinstance(value, str) and value.strip().lower() in (UNLIMITED, "none")


# --------------------------------------------------------------------------
# Layering: every source (a TOML file, the default, CLI flags) becomes a
# _Layer of labelled items; layers are applied in order on top of a base.

# Below this a run cannot even start: the reaper, the loader and the smallest
# program touch more pages than that before the program's first instruction.
MIN_MEMORY_BYTES = 1 << 20


def parse_memory(value: Any) -> int:
    nbytes = parse_size(value)
    if nbytes < MIN_MEMORY_BYTES:
        raise _Invalid(f"{_show(value) if isinstance(value, str) else nbytes} is below the minimum "
                       f"{format_size(MIN_MEMORY_BYTES)} (nothing can start in less: the limit "
                       "counts every page of the run, in bytes unless a unit is given)")
    return nbytes


_LIMIT_FIELDS = {
    # TOML key: (Limits field, CLI flag, parser)
    "wall_time": ("wall_time_s", "--timeout", parse_duration),
    "cpu_time": ("cpu_time_s", "--cpu-time", parse_duration),
    "memory": ("memory_bytes", "--memory", parse_memory),
    "pids": ("pids", "--pids", lambda v: parse_count(v, MAX_PIDS)),
    "open_files": ("open_files", "--open-files", lambda v: parse_count(v, MAX_OPEN_FILES)),
    "output": ("output_bytes", "--output-limit", parse_size),
}


@records.record
class _Layer:
    """One source's contribution; each item carries the key that named it."""

    mounts: list[tuple[str, Mount]] = records.field(default_factory=list)
    tmpfs: list[tuple[str, Tmpfs]] = records.field(default_factory=list)
    hidden: list[tuple[str, str]] = records.field(default_factory=list)
    hidden_names: list[tuple[str, str]] = records.field(default_factory=list)
    env: list[tuple[str, str, str]] = records.field(default_factory=list)  # label, name, value
    cwd: tuple[str, str] | None = None
    hostname: str | None = None
    net_connect: list[Endpoint] = records.field(default_factory=list)
    net_listen: list[Endpoint] = records.field(default_factory=list)
    unix_paths: list[str] = records.field(default_factory=list)
    limits: dict[str, Any] = records.field(default_factory=dict)  # Limits field -> value|None

    def check_own_conflicts(self) -> None:
        """Within one source, a guest path is defined once and never hidden."""
        seen: dict[str, str] = {}
        for label, item in [*self.mounts, *self.tmpfs]:
            if item.guest in seen:
                raise ManifestError(f"{item.guest} is already {seen[item.guest]}.guest",
                                    key=_guest_key(label))
            seen[item.guest] = label
            hit = _hidden_by(item.guest, self)
            if hit:
                raise ManifestError(f"{item.guest} is hidden by {hit[0]} ({_show(hit[1])}), "
                                    "so the guest could never reach it", key=_guest_key(label))


def _guest_key(label: str) -> str:
    """The key naming an item's guest path: ``mount[2].guest``, or the flag
    (or apply_overrides keyword) that gave it."""
    return label if label.startswith("--") or label in _KEYWORD_LABELS else f"{label}.guest"


# apply_overrides' keyword arguments, by the picoproc run flag they stand for.
OVERRIDE_KEYWORDS = {
    "--volume": "volumes", "--mount": "mounts", "--tmpfs": "tmpfs", "--hide": "hide",
    "--hide-name": "hide_names", "--net-connect": "net_connect", "--net-listen": "net_listen",
    "--net-unix": "net_unix", "--env": "env", "--cwd": "cwd", "--hostname": "hostname",
    "--timeout": "timeout", "--cpu-time": "cpu_time", "--memory": "memory", "--pids": "pids",
    "--open-files": "open_files", "--output-limit": "output",
}
_KEYWORD_LABELS = frozenset(OVERRIDE_KEYWORDS.values()) - {"cwd"}


def _layer_from_manifest(manifest: Manifest, name: str) -> _Layer:
    """A finished manifest as the base layer; labels say where items came from."""
    return _Layer(
        mounts=[(f"{name} mount[{i}]", m) for i, m in enumerate(manifest.mounts)],
        tmpfs=[(f"{name} tmpfs[{i}]", t) for i, t in enumerate(manifest.tmpfs)],
        hidden=[(f"{name} hidden[{i}]", h) for i, h in enumerate(manifest.hidden)],
        hidden_names=[(f"{name} hidden_names[{i}]", n)
                      for i, n in enumerate(manifest.hidden_names)],
        env=[(f"{name} env.{k}", k, v) for k, v in manifest.env],
        cwd=("cwd", manifest.cwd),
        hostname=manifest.hostname,
        net_connect=list(manifest.net_connect),
        net_listen=list(manifest.net_listen),
        unix_paths=list(manifest.unix_paths),
        limits=records.asdict(manifest.limits),
    )


def _apply_layer(base: _Layer, top: _Layer) -> _Layer:
    """``top`` wins: same guest path replaces, env names replace, limits replace,
    grants and hidden entries accumulate.

    A mount or tmpfs that ``top`` adds at or beneath a hidden path H of
    ``base`` (``--mount /home/me/src=...`` over the default's hidden ``/home``)
    removes that hidden entry, because the explicit grant is the user's intent
    -- but only when that exposes nothing else: when a mount or tmpfs sits
    exactly at H, or no host mount above H would show the rest of H's subtree.
    Otherwise (``--mount /etc/ssl/private/x=...`` while /etc is mounted) it is
    an error, as is a guest path that a hidden name refuses (``.ssh``).
    """
    top.check_own_conflicts()
    replaced = {item.guest for _, item in [*top.mounts, *top.tmpfs]}
    mounts = _replace_in_place(base.mounts, top.mounts, replaced)
    tmpfs = _replace_in_place(base.tmpfs, top.tmpfs, replaced)
    points = {item.guest for _, item in [*mounts, *tmpfs]}
    hidden = list(base.hidden)
    hidden_names = _dedupe_labelled(base.hidden_names + top.hidden_names)
    for label, item in [*top.mounts, *top.tmpfs]:
        for nlabel, name in hidden_names:
            if hidden_name_matches(name, item.guest):
                raise ManifestError(f"{item.guest} is hidden by the name pattern {_show(name)} "
                                    f"({nlabel}); choose another guest path", key=_guest_key(label))
        for hlabel, entry in list(hidden):
            if not hidden_path_matches(entry, item.guest):
                continue
            above = [m.guest for _, m in mounts if under(entry, m.guest) and m.guest != entry]
            if entry not in points and above:
                raise ManifestError(
                    f"{item.guest} is hidden by {hlabel} ({_show(entry)}), and lifting that "
                    f"would show the rest of {entry} through the mount at {max(above, key=len)}; "
                    f"mount at {entry} itself or choose another guest path", key=_guest_key(label))
            hidden.remove((hlabel, entry))
    hidden = _dedupe_labelled(hidden + top.hidden)
    env: dict[str, tuple[str, str]] = {name: (label, value) for label, name, value in base.env}
    for label, name, value in top.env:
        env[name] = (label, value)
    limits = dict(base.limits)
    limits.update(top.limits)
    return _Layer(
        mounts=mounts,
        tmpfs=tmpfs,
        hidden=hidden,
        hidden_names=hidden_names,
        env=[(label, name, value) for name, (label, value) in env.items()],
        cwd=top.cwd or base.cwd,
        hostname=top.hostname or base.hostname,
        net_connect=_dedupe(base.net_connect + top.net_connect),
        net_listen=_dedupe(base.net_listen + top.net_listen),
        unix_paths=_dedupe(base.unix_paths + top.unix_paths),
        limits=limits,
    )


def _with_aliases(hidden: list[str], mounts: list[Mount], tmpfs: list[Tmpfs]) -> list[str]:
    """``hidden`` plus the other guest paths that show the same host files.

    A hidden entry names a guest path, but two mounts may show one host tree
    (the default mounts host /usr at /usr and, via the /lib -> usr/lib
    symlink, host /usr/lib at /lib): hiding /usr/lib/x must hide /lib/x too.
    The mount serving an entry gives its host path; every other mount whose
    host tree contains that path (or lies inside it) gets the matching guest
    entry, unless a deeper mount or tmpfs serves that guest path instead.
    """
    out = list(dict.fromkeys(hidden))
    shown = MountTable(mounts)
    view = MountTable(mounts, tmpfs)
    for entry in list(out):
        host = shown.host_path(entry)
        if host is None:
            continue  # not shown by any host mount
        owner = shown.mount_of(entry)
        for other, guest in shown.guest_paths(host, inside=True):
            if other is owner or view.mount_of(guest) is not other:
                continue  # the entry itself, or a deeper mount or tmpfs serves it: not the same files
            if guest == "/":
                raise ManifestError(f"{entry} hides host {other.host}, which is mounted at /: "
                                    "that would hide the whole guest filesystem", key="hidden")
            if guest not in out:
                out.append(guest)
    return out


def _replace_in_place(base: list, top: list, replaced: set[str]) -> list:
    """Base items whose guest path ``top`` redefines are dropped; a top item of
    the same kind takes the dropped item's place, the others are appended."""
    by_guest = {item.guest: (label, item) for label, item in top}
    out = []
    for label, item in base:
        if item.guest in by_guest:
            out.append(by_guest.pop(item.guest))
        elif item.guest not in replaced:
            out.append((label, item))
    return out + [entry for entry in top if entry[1].guest in by_guest]


def _dedupe(items: list) -> list:
    return list(dict.fromkeys(items))


def _dedupe_labelled(items: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """(label, value) pairs with each value kept once, at its first label."""
    seen: dict[str, str] = {}
    for label, value in items:
        seen.setdefault(value, label)
    return [(label, value) for value, label in seen.items()]


def _finish(layer: _Layer) -> Manifest:
    """Whole-manifest checks, then the frozen Manifest."""
    cwd_label, cwd = layer.cwd or ("cwd", "/")
    points = [m.guest for _, m in layer.mounts] + [t.guest for _, t in layer.tmpfs]
    if cwd != "/" and not any(under(cwd, p) for p in points):
        raise ManifestError(f"{cwd} is not inside any mount or tmpfs, so it would not exist "
                            "in the guest", key=cwd_label)
    hit = _hidden_by(cwd, layer)
    if hit:
        raise ManifestError(f"{cwd} is hidden by {hit[0]} ({_show(hit[1])})", key=cwd_label)
    if len(layer.mounts) > MAX_MOUNTS:
        raise ManifestError(f"{len(layer.mounts)} mounts; at most {MAX_MOUNTS} (the monitor holds "
                            "each one open for the run)", key=layer.mounts[MAX_MOUNTS][0])
    if len(layer.tmpfs) > MAX_TMPFS:
        raise ManifestError(f"{len(layer.tmpfs)} tmpfs; at most {MAX_TMPFS} (each is a file system "
                            "the monitor creates for the run)", key=layer.tmpfs[MAX_TMPFS][0])
    known = set(records.field_names(Limits))
    mounts = [m for _, m in layer.mounts]
    return Manifest(
        mounts=tuple(mounts),
        tmpfs=tuple(t for _, t in layer.tmpfs),
        hidden=tuple(_with_aliases([h for _, h in layer.hidden], mounts,
                                   [t for _, t in layer.tmpfs])),
        hidden_names=tuple(n for _, n in layer.hidden_names),
        env=tuple((name, value) for _, name, value in layer.env),
        cwd=cwd,
        hostname=layer.hostname or "picoproc",
        net_connect=tuple(layer.net_connect),
        net_listen=tuple(layer.net_listen),
        unix_paths=tuple(layer.unix_paths),
        limits=Limits(**{k: v for k, v in layer.limits.items() if k in known}),
    )


# --------------------------------------------------------------------------
# TOML

_TOP_KEYS = ("extends", "cwd", "hostname", "env", "pass_env", "mount", "tmpfs", "hidden",
             "hidden_names", "net", "limits")
_MOUNT_KEYS = ("guest", "host", "mode", "exec", "optional")
_TMPFS_KEYS = ("guest", "size", "inodes")
MAX_TMPFS_INODES = 1 << 32
_NET_KEYS = ("connect", "listen", "unix")


def _check_keys(table: dict, allowed: tuple[str, ...], prefix: str) -> None:
    for key in table:
        if key not in allowed:
            import difflib

            close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
            if close:
                hint = f" (did you mean {_show(close[0])}?)"
            elif prefix and key in _TOP_KEYS:
                # TOML puts every key after a [table] header into that table.
                hint = (f" ({key} is a top-level key: write it above the first [table] "
                        "or [[table]] header)")
            else:
                hint = f" (known keys: {', '.join(allowed)})"
            raise ManifestError(f"unknown key{hint}", key=f"{prefix}{_key_text(key)}")


def _key_text(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else _show(key)


def _expect(value: Any, kind: type, key: str, what: str) -> Any:
    if not isinstance(value, kind) or isinstance(value, bool) != (kind is bool):
        raise ManifestError(f"expected {what}, got {_type_name(value)}", key=key)
    return value


def _field(key: str, parse, value: Any) -> Any:
    """Run a value parser and name ``key`` in any error."""
    try:
        return parse(value)
    except _Invalid as exc:
        raise ManifestError(str(exc), key=key) from None


def _array_of_tables(doc: dict, name: str) -> list[dict]:
    items = doc.get(name, [])
    if isinstance(items, dict):
        raise ManifestError(f"expected an array of tables (write [[{name}]], not [{name}])",
                            key=name)
    _expect(items, list, name, f"an array of tables ([[{name}]])")
    for i, item in enumerate(items):
        _expect(item, dict, f"{name}[{i}]", "a table")
    return items


def _layer_from_toml(doc: dict, base_dir: str, host_env: Mapping[str, str]) -> tuple[_Layer, bool]:
    _check_keys(doc, _TOP_KEYS, "")
    layer = _Layer()

    extends = doc.get("extends")
    if extends is not None and extends != "default":
        raise ManifestError(f"{_show(extends)}: the only manifest a file can extend is \"default\"",
                            key="extends")

    if "cwd" in doc:
        layer.cwd = ("cwd", _field("cwd", normalise_guest_path, doc["cwd"]))
    if "hostname" in doc:
        layer.hostname = _field("hostname", _parse_hostname, doc["hostname"])

    env_table = _expect(doc.get("env", {}), dict, "env", "a table ([env])")
    for name, value in env_table.items():
        key = f"env.{_key_text(name)}"
        _field(key, _parse_env_name, name)
        layer.env.append((key, name, _field(key, _parse_env_value, value)))
    pass_env = _expect(doc.get("pass_env", []), list, "pass_env", "an array of variable names")
    for i, name in enumerate(pass_env):
        key = f"pass_env[{i}]"
        _expect(name, str, key, "a variable name")
        _field(key, _parse_env_name, name)
        if name in env_table:
            raise ManifestError(f"{name} is also set in [env]; keep one", key=key)
        if name in host_env:  # absent on the host: not set in the guest either
            layer.env.append((key, name, host_env[name]))

    for i, table in enumerate(_array_of_tables(doc, "mount")):
        prefix = f"mount[{i}]"
        _check_keys(table, _MOUNT_KEYS, prefix + ".")
        for required in ("guest", "host"):
            if required not in table:
                raise ManifestError(f"missing the required key {_show(required)}", key=prefix)
        guest = _field(f"{prefix}.guest", _guest_mount_point, table["guest"])
        mode = table.get("mode", "ro")
        if mode not in ("ro", "rw"):
            raise ManifestError(f"expected \"ro\" or \"rw\", got {_describe(mode)}",
                                key=f"{prefix}.mode")
        executable = _field(f"{prefix}.exec", _parse_bool, table.get("exec", True))
        optional = _field(f"{prefix}.optional", _parse_bool, table.get("optional", False))
        if optional and isinstance(table["host"], str) and "\x00" not in table["host"]:
            candidate = os.path.join(base_dir, table["host"])
            present = os.path.exists(candidate)
            _note_host_probe("exists", candidate, present)
            if not present:
                continue  # an optional mount of a missing host path is left out
        host = _field(f"{prefix}.host", lambda v: resolve_host_path(v, base_dir), table["host"])
        layer.mounts.append((prefix, Mount(guest, host, writable=mode == "rw", exec=executable)))

    for i, table in enumerate(_array_of_tables(doc, "tmpfs")):
        prefix = f"tmpfs[{i}]"
        _check_keys(table, _TMPFS_KEYS, prefix + ".")
        if "guest" not in table:
            raise ManifestError("missing the required key \"guest\"", key=prefix)
        guest = _field(f"{prefix}.guest", _guest_mount_point, table["guest"])
        size = _field(f"{prefix}.size", parse_size, table.get("size", DEFAULT_TMPFS_SIZE))
        inodes = None
        if "inodes" in table:
            inodes = _field(f"{prefix}.inodes", lambda v: parse_count(v, MAX_TMPFS_INODES),
                            table["inodes"])
        layer.tmpfs.append((prefix, Tmpfs(guest, size, inodes)))

    hidden = _expect(doc.get("hidden", []), list, "hidden", "an array of guest paths")
    for i, entry in enumerate(hidden):
        key = f"hidden[{i}]"
        layer.hidden.append((key, _field(key, _normalise_hidden, entry)))
    layer.hidden = _dedupe_labelled(layer.hidden)
    names = _expect(doc.get("hidden_names", []), list, "hidden_names",
                    "an array of file-name patterns")
    for i, entry in enumerate(names):
        key = f"hidden_names[{i}]"
        layer.hidden_names.append((key, _field(key, _parse_hidden_name, entry)))
    layer.hidden_names = _dedupe_labelled(layer.hidden_names)

    net = _expect(doc.get("net", {}), dict, "net", "a table ([net])")
    _check_keys(net, _NET_KEYS, "net.")
    for name, target in (("connect", layer.net_connect), ("listen", layer.net_listen)):
        entries = _expect(net.get(name, []), list, f"net.{name}",
                          "an array of \"ADDRESS:PORT\" strings")
        for i, entry in enumerate(entries):
            target.append(_field(f"net.{name}[{i}]", parse_endpoint, entry))
    unix = _expect(net.get("unix", []), list, "net.unix", "an array of host paths")
    for i, entry in enumerate(unix):
        layer.unix_paths.append(
            _field(f"net.unix[{i}]", lambda v: resolve_host_path(v, base_dir), entry))
    layer.net_connect = _dedupe(layer.net_connect)
    layer.net_listen = _dedupe(layer.net_listen)
    layer.unix_paths = _dedupe(layer.unix_paths)

    limits = _expect(doc.get("limits", {}), dict, "limits", "a table ([limits])")
    _check_keys(limits, tuple(_LIMIT_FIELDS), "limits.")
    for name, value in limits.items():
        field_name, _, parse = _LIMIT_FIELDS[name]
        layer.limits[field_name] = (None if _is_unlimited(value)
                                    else _field(f"limits.{name}", parse, value))

    layer.check_own_conflicts()
    return layer, extends == "default"


def parse_manifest(text: str, source: str = "<string>", *, base_dir: str | None = None,
                   host_env: Mapping[str, str] | None = None) -> Manifest:
    """A validated Manifest from TOML text.

    Relative host paths are taken from ``base_dir`` (default: the current
    directory); ``pass_env`` copies from ``host_env`` (default: os.environ).
    """
    try:
        if not isinstance(text, str):
            raise ManifestError(f"expected TOML text (str), got {type(text).__name__}")
        if len(text) > MAX_MANIFEST_BYTES:
            raise ManifestError(f"is larger than {MAX_MANIFEST_BYTES} bytes; a manifest is a "
                                "few KiB of TOML")
        text = text.removeprefix("\ufeff")
        _check_key_depth(text)
        import tomllib

        try:
            doc = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ManifestError(_toml_error_text(exc)) from None
        except RecursionError:
            raise ManifestError("TOML syntax error: values nested too deeply") from None
        layer, extends_default = _layer_from_toml(
            doc, base_dir or os.getcwd(), os.environ if host_env is None else host_env)
        if extends_default:
            default = _layer_from_manifest(default_manifest(), "default manifest")
            layer = _apply_layer(default, layer)
        return _finish(layer)
    except ManifestError as exc:
        if exc.source is None:
            exc.source = source
        raise


# tomllib's time grows faster than quadratically with the number of parts in
# one dotted key (a 20,000-part `t.t.t... = 1` takes seconds, a 1 MiB one
# minutes).  The schema never needs more than three parts, so a key with more
# than MAX_KEY_PARTS is refused by a linear scan before tomllib sees it.
MAX_KEY_PARTS = 32
_BORING = r"""[^"'#.\n=,\[\]{}]+"""
_STRING_ENDS = {
    '"""': r'(?:[^"\\]|\\[\s\S]|"(?!""))*"""',
    "'''": r"(?:[^']|'(?!''))*'''",
    '"': r'(?:[^"\\\n]|\\.)*"',
    "'": r"[^'\n]*'",
}


def _check_key_depth(text: str) -> None:
    dots = 0
    i, end = 0, len(text)
    boring_re = re.compile(_BORING)
    while i < end:
        boring = boring_re.match(text, i)
        if boring:
            i = boring.end()
            continue
        ch = text[i]
        if ch == "#":
            newline = text.find("\n", i)
            i = end if newline < 0 else newline
        elif ch in "\"'":
            # A string is one key part (or a value): skip it whole.
            opener = ch * 3 if text.startswith(ch * 3, i) else ch
            closing = re.compile(_STRING_ENDS[opener]).match(text, i + len(opener))
            i = closing.end() if closing else end  # unterminated: tomllib reports it
        else:
            dots = dots + 1 if ch == "." else 0
            if dots >= MAX_KEY_PARTS:
                line = text.count("\n", 0, i) + 1
                raise ManifestError(f"line {line}: a dotted key with more than {MAX_KEY_PARTS} "
                                    "parts (the schema nests at most three deep)")
            i += 1


def _toml_error_text(exc) -> str:
    message = str(exc)
    where = re.search(r"\(at line (\d+), column (\d+)\)", message)
    if where:
        message = message[: where.start()].strip()
        return f"line {where.group(1)}, column {where.group(2)}: TOML syntax error: {message}"
    message = message.replace(" (at end of document)", "")
    return f"TOML syntax error: {message} (at the end of the file)"


def load_manifest(path: str | os.PathLike) -> Manifest:
    """Read, parse and validate a manifest file.

    Relative host paths in it are relative to the file's directory.  The file
    must be a regular file of at most MAX_MANIFEST_BYTES of UTF-8.
    """
    source = os.fsdecode(os.fspath(path))
    try:
        # O_NONBLOCK: opening a FIFO someone planted must not hang the CLI.
        fd = os.open(source, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    except OSError as exc:
        raise ManifestError(f"cannot read: {os.strerror(exc.errno or 0)}", source=source) from None
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise ManifestError("is a directory, not a manifest file", source=source)
        if not stat.S_ISREG(info.st_mode):
            raise ManifestError("is not a regular file", source=source)
        with os.fdopen(fd, "rb", closefd=False) as stream:
            data = stream.read(MAX_MANIFEST_BYTES + 1)
    except OSError as exc:
        raise ManifestError(f"cannot read: {os.strerror(exc.errno or 0)}", source=source) from None
    finally:
        os.close(fd)
    if len(data) > MAX_MANIFEST_BYTES:
        raise ManifestError(f"is larger than {MAX_MANIFEST_BYTES} bytes; a manifest is a few "
                            "KiB of TOML", source=source)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ManifestError(f"line {line}: not valid UTF-8 (byte 0x{data[exc.start]:02x} "
                            f"at offset {exc.start})", source=source) from None
    base_dir = os.path.dirname(os.path.abspath(source))
    return parse_manifest(text, source, base_dir=base_dir)


def check_manifest(manifest: Manifest) -> Manifest:
    """Validate a Manifest built in Python (the object API) exactly as a file.

    Returns the normalised manifest (host paths resolved, guest paths
    normalised, hidden aliases added); errors name the key as the TOML
    schema does (``mount[0].host``).
    """
    if not isinstance(manifest, Manifest):
        raise ManifestError(f"expected a Manifest, got {type(manifest).__name__}")
    try:
        doc: dict[str, Any] = {
            "cwd": manifest.cwd,
            "hostname": manifest.hostname,
            "hidden": list(manifest.hidden),
            "hidden_names": list(manifest.hidden_names),
            "env": {},
            "mount": [],
            "tmpfs": [{"guest": t.guest, "size": t.size_bytes,
                       **({} if t.inodes is None else {"inodes": t.inodes})}
                      for t in manifest.tmpfs],
            "net": {"connect": [format_endpoint(e) for e in manifest.net_connect],
                    "listen": [format_endpoint(e) for e in manifest.net_listen],
                    "unix": list(manifest.unix_paths)},
            "limits": {},
        }
        for i, pair in enumerate(manifest.env):
            if not isinstance(pair, tuple) or len(pair) != 2:
                raise ManifestError("expected a (name, value) pair", key=f"env[{i}]")
            doc["env"][pair[0]] = pair[1]
        for i, m in enumerate(manifest.mounts):
            _field(f"mount[{i}].writable", _parse_bool, m.writable)
            doc["mount"].append({"guest": m.guest, "host": m.host,
                                 "mode": "rw" if m.writable else "ro", "exec": m.exec})
        for key, (field_name, _, _) in _LIMIT_FIELDS.items():
            value = getattr(manifest.limits, field_name)
            if value is not None:
                doc["limits"][key] = value
        layer, _ = _layer_from_toml(doc, os.getcwd(), {})
        return _finish(layer)
    except ManifestError as exc:
        if exc.source is None:
            exc.source = "<Manifest object>"
        raise


DEFAULT_MANIFEST_FILE = os.path.join(os.path.dirname(__file__), "default_manifest.toml")


def __getattr__(name: str):
    # DEFAULT_MANIFEST_PATH, the same file as a pathlib.Path, is made when
    # asked for: a run needs no pathlib.
    if name == "DEFAULT_MANIFEST_PATH":
        from pathlib import Path

        return Path(DEFAULT_MANIFEST_FILE)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# What a parse read of the host (the host paths it resolved, the optional
# mounts it found present or absent), while _host_probes.log is a list: a
# parsed manifest kept for later runs is valid as long as these still hold.
_host_probes = threading.local()


def _note_host_probe(kind: str, path: str, result) -> None:
    log = getattr(_host_probes, "log", None)
    if log is not None:
        log.append((kind, path, result))


def _host_probe_holds(kind: str, path: str, result) -> bool:
    if kind == "exists":
        return os.path.exists(path) == result
    try:
        real = os.path.realpath(path, strict=True)
        os.stat(real)
    except OSError:
        return False
    return real == result


# A Manifest as marshal can hold it (marshal is built in; pickle costs an
# import): each dataclass instance is a list [class name, field values...];
# a Manifest holds tuples, never lists, so a list is always one of these.
_PLAIN_CLASSES = {}


def _to_plain(value):
    if records.is_record(value):
        return [type(value).__name__, *(_to_plain(getattr(value, n)) for n in records.field_names(value))]
    if isinstance(value, tuple):
        return tuple(_to_plain(v) for v in value)
    return value


def _from_plain(value):
    if isinstance(value, list):
        return _PLAIN_CLASSES[value[0]](*(_from_plain(v) for v in value[1:]))
    if isinstance(value, tuple):
        return tuple(_from_plain(v) for v in value)
    return value


def _cached_default(data: bytes) -> Manifest:
    import marshal

    try:
        probes, plain = marshal.loads(data)
        manifest = _from_plain(plain)
    except (TypeError, KeyError) as exc:
        raise ValueError(f"not a cached manifest: {exc}") from None
    if not isinstance(manifest, Manifest) or not all(_host_probe_holds(*p) for p in probes):
        raise ValueError("the host changed since the default manifest was parsed")
    return manifest


def default_manifest() -> Manifest:
    """The embedded default (default_manifest.toml): read-only system
    directories that exist on this host, secrets hidden, a private 64M /tmp,
    no network, no host environment, the default limits.

    Parsed once per content of that file and of this module, then kept as
    bytecode is (picoproc.cache) and used again while the host paths it
    resolved are unchanged: no TOML parser, no regular expressions, no
    validation in every run."""
    import sys

    from picoproc import cache

    with open(DEFAULT_MANIFEST_FILE, "rb") as f:
        raw = f.read()
    key = cache.content_key([raw, __file__, sys.version.encode()])
    if not _PLAIN_CLASSES:
        _PLAIN_CLASSES.update({c.__name__: c for c in (Mount, Tmpfs, Endpoint, Limits, Manifest)})
    manifest = cache.load(__file__, "default-manifest", key, ".marshal", _cached_default)
    if manifest is not None:
        return manifest
    _host_probes.log = probes = []
    try:
        manifest = parse_manifest(raw.decode("utf-8"), "<default manifest>", base_dir="/", host_env={})
    finally:
        _host_probes.log = None
    import marshal

    cache.store(__file__, "default-manifest", key, ".marshal",
                marshal.dumps((tuple(probes), _to_plain(manifest))))
    return manifest


# --------------------------------------------------------------------------
# Writing TOML back (round trip; `picoproc learn` writes manifests)

def _toml_string(value: str) -> str:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ManifestError(f"{_show(value)} is not valid UTF-8 and cannot be written "
                            "as TOML") from None
    out = ['"']
    for ch in value:
        code = ord(ch)
        if ch in '"\\':
            out.append("\\" + ch)
        elif code < 0x20 or code == 0x7F:
            out.append({"\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}
                       .get(ch, f"\\u{code:04X}"))
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def toml_string(value: str) -> str:
    """``value`` as a TOML basic string (for writers of manifests: picoproc learn)."""
    return _toml_string(value)


def format_size(nbytes: int) -> str:
    for suffix, shift in (("T", 40), ("G", 30), ("M", 20), ("K", 10)):
        if nbytes % (1 << shift) == 0:
            return f"{nbytes >> shift}{suffix}"
    return str(nbytes)


def manifest_to_toml(manifest: Manifest) -> str:
    """TOML text that parse_manifest turns back into an equal Manifest."""
    lines = [f"cwd = {_toml_string(manifest.cwd)}",
             f"hostname = {_toml_string(manifest.hostname)}"]
    if manifest.hidden:
        lines.append("hidden = [")
        lines += [f"  {_toml_string(h)}," for h in manifest.hidden]
        lines.append("]")
    if manifest.hidden_names:
        lines.append("hidden_names = [")
        lines += [f"  {_toml_string(n)}," for n in manifest.hidden_names]
        lines.append("]")
    lines += ["", "[env]"]
    lines += [f"{_toml_string(k)} = {_toml_string(v)}" for k, v in manifest.env]
    lines += ["", "[net]"]
    for name, endpoints in (("connect", manifest.net_connect), ("listen", manifest.net_listen)):
        lines.append(f"{name} = [{', '.join(_toml_string(format_endpoint(e)) for e in endpoints)}]")
    lines.append(f"unix = [{', '.join(_toml_string(p) for p in manifest.unix_paths)}]")
    lines += ["", "[limits]"]
    lim = manifest.limits
    for key, (field_name, _, _) in _LIMIT_FIELDS.items():
        value = getattr(lim, field_name)
        if value is None:
            continue
        if key in ("memory", "output"):
            lines.append(f"{key} = {_toml_string(format_size(value))}")
        elif isinstance(value, float):
            lines.append(f"{key} = {value!r}")
        else:
            lines.append(f"{key} = {value}")
    for m in manifest.mounts:
        lines += ["", "[[mount]]", f"guest = {_toml_string(m.guest)}",
                  f"host = {_toml_string(m.host)}", f"mode = \"{'rw' if m.writable else 'ro'}\"",
                  f"exec = {'true' if m.exec else 'false'}"]
    for t in manifest.tmpfs:
        lines += ["", "[[tmpfs]]", f"guest = {_toml_string(t.guest)}",
                  f"size = {_toml_string(format_size(t.size_bytes))}"]
        if t.inodes is not None:
            lines.append(f"inodes = {t.inodes}")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------
# Command-line flags

_MOUNT_OPTIONS = ("ro", "rw", "exec", "noexec")
_VOLUME_HINT = "HOST:GUEST[:OPTIONS] (e.g. ./data:/data:ro)"


def _mount_options(words: list[str], text: str) -> tuple[bool, bool]:
    """(writable, exec) from ro/rw/exec/noexec words."""
    if ("ro" in words and "rw" in words) or ("exec" in words and "noexec" in words):
        raise _Invalid(f"{_show(text)}: contradictory options {_show(','.join(words))}")
    return "rw" in words, "noexec" not in words


def _old_form_hint(text: str) -> str | None:
    """The one-line refusal of the GUEST=HOST form earlier versions took."""
    guest, sep, rest = text.partition("=")
    if not sep or not guest.startswith("/"):
        return None
    host, colon, opts = rest.rpartition(":")
    if not colon or not set(opts.split(",")) <= set(_MOUNT_OPTIONS):
        host, opts = rest, ""
    suffix = f":{opts}" if opts else ""
    keys = "".join(f",{o}" for o in opts.split(",")) if opts else ""
    return (f"{_show(text)} is the old GUEST=HOST order; mounts are written host first, as "
            f"docker does: -v {host}:{guest}{suffix} or --mount src={host},dst={guest}{keys}")


def _parse_volume_flag(text: Any, base_dir: str | None) -> Mount:
    """``-v/--volume HOST:GUEST[:OPTIONS]`` as docker: read-only unless
    ``rw``; ``noexec`` forbids running programs from it."""
    if not isinstance(text, str):
        raise _Invalid(f"expected {_VOLUME_HINT}, got {_type_name(text)}")
    parts = text.split(":")
    old = _old_form_hint(text)
    if old and (len(parts) < 2 or not parts[1 if len(parts) == 2 else -2].startswith("/")):
        raise _Invalid(old)
    options: list[str] = []
    if len(parts) >= 3 and not parts[-1].startswith("/"):
        options = parts.pop().split(",")
        unknown = [o for o in options if o not in _MOUNT_OPTIONS]
        if unknown:
            raise _Invalid(f"{_show(text)}: unknown option {_show(unknown[0])} "
                           f"(options: {', '.join(_MOUNT_OPTIONS)})")
    if len(parts) < 2:
        if text.startswith("/"):
            raise _Invalid(f"{_show(text)} names only one path: a volume is {_VOLUME_HINT} "
                           "(for a private empty directory use --tmpfs GUEST)")
        raise _Invalid(f"{_show(text)} is not {_VOLUME_HINT}")
    guest_text = parts[-1]
    host_text = ":".join(parts[:-1])
    if not host_text or not guest_text:
        raise _Invalid(f"{_show(text)} is not {_VOLUME_HINT}")
    writable, executable = _mount_options(options, text)
    guest = _guest_mount_point(guest_text)
    host = resolve_host_path(host_text, base_dir)
    return Mount(guest, host, writable=writable, exec=executable)


_MOUNT_FLAG_KEYS = {"type": "type", "source": "src", "src": "src", "target": "dst",
               "destination": "dst", "dst": "dst", "readonly": "ro", "ro": "ro", "rw": "rw",
               "exec": "exec", "noexec": "noexec", "tmpfs-size": "size", "size": "size"}
_MOUNT_HINT = "type=bind,src=HOST,dst=GUEST[,ro|rw][,noexec] or type=tmpfs,dst=GUEST[,tmpfs-size=SIZE]"


def _parse_mount_flag(text: Any, base_dir: str | None) -> Mount | Tmpfs:
    """``--mount`` as docker: comma-separated ``key=value`` fields (CSV, so
    a value with a comma is quoted) -- type (bind, tmpfs), source/src,
    target/destination/dst, readonly/ro (and rw, exec, noexec),
    tmpfs-size."""
    import csv

    if not isinstance(text, str):
        raise _Invalid(f"expected {_MOUNT_HINT}, got {_type_name(text)}")
    old = _old_form_hint(text)
    if old:
        raise _Invalid(old)
    try:
        fields = next(csv.reader([text], skipinitialspace=False)) if text else []
    except csv.Error as exc:
        raise _Invalid(f"{_show(text)}: {exc}") from None
    got: dict[str, str] = {}
    words: list[str] = []
    for field in fields:
        key, sep, value = field.partition("=")
        canonical = _MOUNT_FLAG_KEYS.get(key.strip().lower())
        if canonical is None:
            import difflib

            close = difflib.get_close_matches(key, list(_MOUNT_FLAG_KEYS), n=1, cutoff=0.6)
            hint = f"did you mean {_show(close[0])}?" if close else f"use {_MOUNT_HINT}"
            raise _Invalid(f"{_show(text)}: unknown key {_show(key)} ({hint})")
        if canonical in ("ro", "rw", "exec", "noexec"):
            on = value.strip().lower() if sep else "true"
            if on not in ("true", "false", "1", "0"):
                raise _Invalid(f"{_show(text)}: {key}={_show(value)} is not true or false")
            word = canonical if on in ("true", "1") else {"ro": "rw", "rw": "ro", "exec": "noexec",
                                                           "noexec": "exec"}[canonical]
            words.append(word)
            continue
        if not sep or not value:
            raise _Invalid(f"{_show(text)}: {key} needs a value ({key}=...)")
        if canonical in got:
            raise _Invalid(f"{_show(text)}: {key} given twice")
        got[canonical] = value
    kind = got.get("type", "bind").lower()
    if "dst" not in got:
        raise _Invalid(f"{_show(text)}: no target (dst=GUEST); use {_MOUNT_HINT}")
    guest = _guest_mount_point(got["dst"])
    if kind == "tmpfs":
        if "src" in got or words:
            raise _Invalid(f"{_show(text)}: a tmpfs takes only dst and tmpfs-size")
        return Tmpfs(guest, parse_size(got["size"]) if "size" in got else DEFAULT_TMPFS_SIZE)
    if kind != "bind":
        raise _Invalid(f"{_show(text)}: type={kind} is not supported (bind or tmpfs; picoproc has "
                       "no named volumes)")
    if "size" in got:
        raise _Invalid(f"{_show(text)}: tmpfs-size applies to type=tmpfs only")
    if "src" not in got:
        raise _Invalid(f"{_show(text)}: no source (src=HOST); use {_MOUNT_HINT}")
    writable, executable = _mount_options(words, text)
    host = resolve_host_path(got["src"], base_dir)
    return Mount(guest, host, writable=writable, exec=executable)


def _parse_tmpfs_flag(text: Any) -> Tmpfs:
    if not isinstance(text, str):
        raise _Invalid(f"expected GUEST[:SIZE], got {_type_name(text)}")
    guest_text, colon, size_text = text.rpartition(":")
    if not colon:
        guest_text, size_text = text, ""
    guest = _guest_mount_point(guest_text)
    return Tmpfs(guest, parse_size(size_text) if size_text else DEFAULT_TMPFS_SIZE)


def apply_overrides(
    manifest: Manifest,
    *,
    volumes: Iterable[str] = (),
    mounts: Iterable[str] = (),
    tmpfs: Iterable[str] = (),
    hide: Iterable[str] = (),
    hide_names: Iterable[str] = (),
    net_connect: Iterable[str] = (),
    net_listen: Iterable[str] = (),
    net_unix: Iterable[str] = (),
    env: Iterable[str] = (),
    cwd: str | None = None,
    hostname: str | None = None,
    timeout: Any = None,
    cpu_time: Any = None,
    memory: Any = None,
    pids: Any = None,
    open_files: Any = None,
    output: Any = None,
    host_env: Mapping[str, str] | None = None,
    base_dir: str | None = None,
    flag_names: bool = False,
) -> Manifest:
    """``manifest`` with the ``picoproc run`` flags layered on top (flags win).

    Every argument is the flag's plain string value(s): ``volumes`` are
    ``-v HOST:GUEST[:OPTIONS]`` (options ro, rw, exec, noexec,
    comma-separated; read-only by default), ``mounts`` are ``--mount``'s
    docker-style keys (``type=bind,src=HOST,dst=GUEST,ro,noexec``, or
    ``type=tmpfs,dst=GUEST,tmpfs-size=SIZE``), ``tmpfs`` are
    ``GUEST[:SIZE]``, ``env`` are
    ``K=V`` or ``K`` (copy K from ``host_env`` if it is set there), limits
    are strings as in the TOML or ``"unlimited"``.  A flag on a guest path
    that ``manifest`` already mounts replaces that mount; of two flags for
    the same guest path the later wins.  Relative host paths are relative to
    ``base_dir`` (default: the current directory).  ``manifest`` itself is
    taken as already valid (from load_manifest, default_manifest or
    check_manifest).  Errors name the keyword argument (``memory: "12Q" is
    not a size``), or with ``flag_names`` the command-line flag
    (``--memory: ...``).
    """
    host_env = os.environ if host_env is None else host_env

    def n(flag: str) -> str:
        """How errors name an argument: the flag, or the keyword."""
        return flag if flag_names else OVERRIDE_KEYWORDS[flag]

    top = _Layer()
    by_guest: dict[str, tuple[str, Any]] = {}
    for flag, values, parse in ((n("--volume"), volumes, lambda v: _parse_volume_flag(v, base_dir)),
                                (n("--mount"), mounts, lambda v: _parse_mount_flag(v, base_dir)),
                                (n("--tmpfs"), tmpfs, _parse_tmpfs_flag)):
        for value in values:
            item = _field(flag, parse, value)
            previous = by_guest.get(item.guest)
            if previous and isinstance(previous[1], Tmpfs) != isinstance(item, Tmpfs):
                raise ManifestError(f"{item.guest} is also given to {previous[0]}; "
                                    "a guest path is either a mount or a tmpfs", key=flag)
            by_guest[item.guest] = (flag, item)  # a later flag replaces an earlier one
    top.mounts = [(flag, item) for flag, item in by_guest.values() if isinstance(item, Mount)]
    top.tmpfs = [(flag, item) for flag, item in by_guest.values() if isinstance(item, Tmpfs)]
    for value in hide:
        top.hidden.append((n("--hide"), _field(n("--hide"), _normalise_hidden, value)))
    for value in hide_names:
        top.hidden_names.append((n("--hide-name"), _field(n("--hide-name"), _parse_hidden_name, value)))
    for value in net_connect:
        top.net_connect.append(_field(n("--net-connect"), parse_endpoint, value))
    for value in net_listen:
        top.net_listen.append(_field(n("--net-listen"), parse_endpoint, value))
    for value in net_unix:
        top.unix_paths.append(_field(n("--net-unix"), lambda v: resolve_host_path(v, base_dir), value))
    for value in env:
        if not isinstance(value, str):
            raise ManifestError(f"expected K=V or K, got {_type_name(value)}", key=n("--env"))
        name, sep, text = value.partition("=")
        _field(n("--env"), _parse_env_name, name)
        if sep:
            top.env.append((n("--env"), name, _field(n("--env"), _parse_env_value, text)))
        elif name in host_env:
            top.env.append((n("--env"), name, host_env[name]))
    if cwd is not None:
        top.cwd = (n("--cwd"), _field(n("--cwd"), normalise_guest_path, cwd))
    if hostname is not None:
        top.hostname = _field(n("--hostname"), _parse_hostname, hostname)
    given = {"wall_time": timeout, "cpu_time": cpu_time, "memory": memory, "pids": pids,
             "open_files": open_files, "output": output}
    for key, (field_name, flag, parse) in _LIMIT_FIELDS.items():
        value = given[key]
        if value is not None:
            top.limits[field_name] = None if _is_unlimited(value) else _field(n(flag), parse, value)
    return _finish(_apply_layer(_layer_from_manifest(manifest, "manifest"), top))


def add_cli_options(parser) -> None:
    """Register the manifest flags of ``picoproc run`` on an argparse parser."""
    group = parser.add_argument_group(
        "manifest", "what the guest is granted: the default manifest (or --manifest FILE), "
        "then these flags on top; see docs/MANIFEST.md")
    group.add_argument("--manifest", metavar="FILE", help="TOML manifest instead of the default")
    group.add_argument("-v", "--volume", action="append", default=[], metavar="HOST:GUEST[:OPTS]",
                       help="show host path HOST at GUEST, as docker -v: read-only unless "
                       ":rw; :noexec forbids running programs from it (e.g. ./out:/out:rw)")
    group.add_argument("--mount", action="append", default=[], metavar="KEY=VALUE,...",
                       help="as docker --mount: type=bind,src=HOST,dst=GUEST[,ro|rw][,noexec] "
                       "or type=tmpfs,dst=GUEST[,tmpfs-size=SIZE]")
    group.add_argument("--tmpfs", action="append", default=[], metavar="GUEST[:SIZE]",
                       help="private empty scratch directory "
                       f"(default size {format_size(DEFAULT_TMPFS_SIZE)})")
    group.add_argument("--hide", action="append", default=[], metavar="GUEST",
                       help="refuse this guest path and everything under it, even if mounted")
    group.add_argument("--hide-name", action="append", default=[], metavar="PATTERN",
                       help="refuse files and directories whose name matches PATTERN "
                       "(e.g. '*.pem'), anywhere")
    group.add_argument("--net-connect", action="append", default=[], metavar="HOST:PORT",
                       help="allow tcp/udp connections to a literal IP address and port (0 = any)")
    group.add_argument("--net-listen", action="append", default=[], metavar="ADDR:PORT",
                       help="allow listening on this address and port")
    group.add_argument("--net-unix", action="append", default=[], metavar="PATH",
                       help="allow connecting to unix sockets at or under this host path")
    group.add_argument("-e", "--env", action="append", default=[], metavar="K=V",
                       help="set a variable in the guest (K alone copies it from the host)")
    group.add_argument("-w", "--workdir", "--cwd", dest="cwd", metavar="DIR",
                       help="working directory in the guest")
    group.add_argument("--hostname", metavar="NAME", help="host name the guest sees")
    group.add_argument("--timeout", metavar="S", help="wall-time limit (e.g. 30, 30s, 2m)")
    group.add_argument("--cpu-time", metavar="S", help="CPU-time limit")
    group.add_argument("-m", "--memory", metavar="SIZE",
                       help=f"memory limit (e.g. 512M; at least {format_size(MIN_MEMORY_BYTES)})")
    group.add_argument("--pids", metavar="N", help="process/thread limit")
    group.add_argument("--open-files", metavar="N", help="open-file limit")
    group.add_argument("--output-limit", metavar="SIZE", help="stdout+stderr bytes limit")


def manifest_from_cli_args(args) -> Manifest:
    """The final manifest for a namespace parsed with add_cli_options' flags."""
    manifest_path = getattr(args, "manifest", None)
    base = load_manifest(manifest_path) if manifest_path else default_manifest()
    return apply_overrides(
        base,
        volumes=getattr(args, "volume", None) or (),
        mounts=getattr(args, "mount", None) or (),
        tmpfs=getattr(args, "tmpfs", None) or (),
        hide=getattr(args, "hide", None) or (),
        hide_names=getattr(args, "hide_name", None) or (),
        net_connect=getattr(args, "net_connect", None) or (),
        net_listen=getattr(args, "net_listen", None) or (),
        net_unix=getattr(args, "net_unix", None) or (),
        env=getattr(args, "env", None) or (),
        cwd=getattr(args, "cwd", None),
        hostname=getattr(args, "hostname", None),
        timeout=getattr(args, "timeout", None),
        cpu_time=getattr(args, "cpu_time", None),
        memory=getattr(args, "memory", None),
        pids=getattr(args, "pids", None),
        open_files=getattr(args, "open_files", None),
        output=getattr(args, "output_limit", None),
        flag_names=True,
    )
