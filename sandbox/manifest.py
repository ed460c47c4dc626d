"""The manifest: what a picoprocess is granted (mounts, network, env, limits).

This module holds the data model every layer reads (spawn, the mediation
policy, the comparison backends).  Parsing TOML, validation with messages that
name the bad key, the embedded default manifest and the layering of CLI flags
live here too.

SKELETON: the data model below is agreed between layers; parsing/validation/
default are being written (issue 3, item 4).
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Mount:
    """A host directory (or file) shown to the guest at ``guest``."""

    guest: str  # absolute, normalised guest path
    host: str  # absolute host path (resolved at manifest load time)
    writable: bool = False
    exec: bool = True  # images under it may be executed (PICO_OPEN_EXEC)


@dataclasses.dataclass(frozen=True)
class Tmpfs:
    """A private scratch directory for the run, size-limited, empty at start."""

    guest: str
    size_bytes: int


@dataclasses.dataclass(frozen=True)
class Endpoint:
    """A network grant: ``host`` is a literal IPv4/IPv6 address; port 0 = any."""

    host: str
    port: int


@dataclasses.dataclass(frozen=True)
class Limits:
    """Resource limits; None = no limit from the manifest."""

    wall_time_s: float | None = None
    cpu_time_s: float | None = None
    memory_bytes: int | None = None
    pids: int | None = None
    open_files: int | None = None
    output_bytes: int | None = None  # stdout+stderr captured from the guest


@dataclasses.dataclass(frozen=True)
class Manifest:
    mounts: tuple[Mount, ...] = ()
    tmpfs: tuple[Tmpfs, ...] = ()
    # Guest paths refused even where a mount would show them (secrets inside
    # read-only system directories, e.g. /etc/shadow, /etc/ssl/private).
    hidden: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    cwd: str = "/"
    hostname: str = "picoproc"
    net_connect: tuple[Endpoint, ...] = ()  # tcp:/udp: connect grants
    net_listen: tuple[Endpoint, ...] = ()  # tcp.srv: listen grants
    unix_paths: tuple[str, ...] = ()  # host paths (or directories) unix: may connect under
    limits: Limits = Limits()
