"""The network half of the mediation policy: manifest grants -> C policy.

The monitor's C event loop decides every ``tcp:``/``udp:``/``tcp.srv:``/
``unix:`` open against a ``struct pico_net_policy`` (native/net.c; the URI
syntax, the errnos and the reasons behind them are documented in
native/net.h).  This module builds that policy from a :class:`Manifest`:

* ``net_connect`` endpoints grant both ``tcp:`` and ``udp:`` connects, and
  (for those with a port) unconnected UDP datagrams: the guest's socket is
  in its own network, so the reaper puts a proxy socket at the granted
  address there and the monitor relays it (:meth:`NetPolicy.udp_proxies`,
  native/net.h);
* ``net_listen`` endpoints grant ``tcp.srv:`` listeners (port 0 = any port);
* ``unix_paths`` grant ``unix:`` connects.  Each path is resolved here, once,
  with :func:`os.path.realpath`; at connect time the monitor refuses any
  symlink on the way (so nothing planted later can redirect it), which means
  the guest must name the socket by its resolved path.  A path that is a
  directory grants every socket beneath it.

Addresses must be literals (``127.0.0.1``, ``::1``, ``[::1]``); host names are
refused because the manifest would then mean whatever DNS says at run time.

:meth:`NetPolicy.open` drives the same C entry points as the event loop
(start, wait for the connect, finish), for tests and for Python callers.
"""

from __future__ import annotations

import errno
import os
import select
import time

from picoproc import records
from picoproc.errors import PicoprocError
from .manifest import Endpoint, Manifest


# spawn.h's PICO_MAX_UDP_PROXIES: grants past this many get no proxy (their
# connects still work).
MAX_UDP_PROXIES = 16


# socket.AF_INET, socket.AF_INET6 (Linux), without loading the socket module.
_AF_INET, _AF_INET6 = 2, 10


def _host_has_ipv6() -> bool:
    import socket  # only for UDP grants: a run without them does not load it

    try:
        socket.socket(socket.AF_INET6, socket.SOCK_DGRAM).close()
        return True
    except OSError:
        return False


class NetPolicyError(ValueError, PicoprocError):
    """A manifest network grant that cannot be turned into a policy."""


@records.record(frozen=True)
class NetGrant:
    """One entry of the C policy, as added (for display and tests)."""

    kind: str  # "tcp", "udp", "tcp.srv" or "unix"
    addr: str  # canonical literal address, or host path ("/dir/" = prefix)
    port: int  # 0 = any port (always 0 for unix)


def _native():
    from .native import ffi, lib

    return ffi, lib


def _literal_address(host: str, where: str) -> str:
    import ipaddress

    if not isinstance(host, str) or not host:
        raise NetPolicyError(f"{where}: host must be a literal IPv4 or IPv6 address, got {host!r}")
    text = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        raise NetPolicyError(
            f"{where}: host {host!r} is not a literal IPv4 or IPv6 address "
            "(host names are not allowed: write the address)"
        ) from None
    if isinstance(addr, ipaddress.IPv6Address) and addr.scope_id:
        raise NetPolicyError(f"{where}: host {host!r}: IPv6 zone ids (%...) are not supported")
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        # The C side compares v4-mapped addresses as IPv4; say so here too.
        addr = addr.ipv4_mapped
    return str(addr)


def _port(port: int, where: str) -> int:
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise NetPolicyError(f"{where}: port must be an integer 0..65535 (0 = any), got {port!r}")
    return port


def _unix_grant(path: str, where: str) -> str:
    if not isinstance(path, str) or not os.path.isabs(path):
        raise NetPolicyError(f"{where}: unix socket path must be absolute, got {path!r}")
    if "\0" in path:
        raise NetPolicyError(f"{where}: unix socket path contains a NUL byte")
    resolved = os.path.realpath(path)
    if os.path.isdir(resolved):
        return resolved.rstrip("/") + "/"
    return resolved


class NetPolicy:
    """The C network policy for one run, built from a manifest."""

    def __init__(self, manifest: Manifest, *, any_host: bool = False):
        ffi, lib = _native()
        self._ffi, self._lib = ffi, lib
        grants: list[NetGrant] = []
        for i, ep in enumerate(manifest.net_connect):
            where = f"net_connect[{i}]"
            addr, port = self._endpoint(ep, where)
            grants.append(NetGrant("tcp", addr, port))
            grants.append(NetGrant("udp", addr, port))
        for i, ep in enumerate(manifest.net_listen):
            addr, port = self._endpoint(ep, f"net_listen[{i}]")
            grants.append(NetGrant("tcp.srv", addr, port))
        for i, path in enumerate(manifest.unix_paths):
            grants.append(NetGrant("unix", _unix_grant(path, f"unix_paths[{i}]"), 0))
        self.grants = tuple(grants)

        handle = lib.pico_net_policy_new()
        if handle == ffi.NULL:
            raise MemoryError("pico_net_policy_new")
        self._handle = ffi.gc(handle, lib.pico_net_policy_free)
        kinds = {
            "tcp": lib.PICO_NET_TCP_CONNECT,
            "udp": lib.PICO_NET_UDP_CONNECT,
            "tcp.srv": lib.PICO_NET_TCP_LISTEN,
            "unix": lib.PICO_NET_UNIX,
        }
        # A run holds at most as many udp: relays (a monitor thread and two
        # sockets each) as it may hold open files.
        if manifest.limits.open_files is not None:
            lib.pico_net_policy_set_max_sockets(self._handle, manifest.limits.open_files)
        self.any_host = any_host
        if any_host:
            lib.pico_net_policy_grant_any_host(self._handle)
        for g in grants:
            rc = lib.pico_net_policy_add(self._handle, kinds[g.kind], os.fsencode(g.addr), g.port)
            if rc < 0:
                raise NetPolicyError(
                    f"{g.kind} grant {g.addr!r} port {g.port}: refused by the C policy "
                    f"({os.strerror(-rc)})"
                )

    def udp_proxies(self) -> list[tuple[int, bytes, int]]:
        """(family, address bytes, port) of the granted UDP destinations the
        guest may send datagrams to without connecting: the connect grants
        with a port, to a unicast address (at most MAX_UDP_PROXIES)."""
        out = []
        v6 = None
        for g in self.grants:
            if g.kind != "udp" or g.port == 0:
                continue
            import ipaddress  # here: most runs have no UDP grant

            addr = ipaddress.ip_address(g.addr)
            if addr.is_multicast or addr.is_unspecified or str(addr) == "255.255.255.255":
                continue
            if addr.version == 6:
                v6 = _host_has_ipv6() if v6 is None else v6
                if not v6:
                    continue
            family = _AF_INET if addr.version == 4 else _AF_INET6
            if (family, addr.packed, g.port) not in out:
                out.append((family, addr.packed, g.port))
        return out[:MAX_UDP_PROXIES]

    def start_udp_proxies(self, fds: list[int]) -> None:
        """Relays the UDP proxies the reaper made (Spawned.proxy_fds); the
        policy takes the fds, even when it raises."""
        if not fds:
            return
        c_fds = self._ffi.new("int[]", list(fds))
        rc = self._lib.pico_net_policy_start_proxies(self.handle, c_fds, len(fds))
        if rc < 0:
            raise OSError(-rc, f"starting the UDP proxies: {os.strerror(-rc)}")

    @staticmethod
    def _endpoint(ep: Endpoint, where: str) -> tuple[str, int]:
        return _literal_address(ep.host, f"{where}.host"), _port(ep.port, f"{where}.port")

    @property
    def handle(self):
        """The ``struct pico_net_policy *`` for the C event loop (valid until close)."""
        if self._handle is None:
            raise ValueError("the network policy is closed")
        return self._handle

    def close(self) -> None:
        """Frees the C policy now (idempotent).  Only after every guest that
        uses it has been removed from the event loop."""
        if self._handle is not None:
            handle, self._handle = self._handle, None
            self._ffi.release(handle)

    def __enter__(self) -> NetPolicy:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def last_decision(self) -> str:
        """The C side's one-line description of this thread's last decision."""
        return self._ffi.string(self._lib.pico_net_last_decision()).decode("utf-8", "replace")

    def start(self, uri: bytes, flags: int = 0) -> tuple[int, int]:
        """One pico_net_start call: returns (result, fd), result as in C."""
        fd_out = self._ffi.new("int *", -1)
        rc = self._lib.pico_net_start(self.handle, uri, len(uri), flags, fd_out)
        return rc, fd_out[0]

    def open(self, uri: bytes | str, flags: int = 0, timeout: float = 10.0) -> int:
        """Opens a network URI as the monitor would; returns an fd the caller owns.

        Raises OSError with the C errno and decision text when refused or
        failed, TimeoutError when a TCP connect does not finish in time.
        """
        if isinstance(uri, str):
            uri = os.fsencode(uri)
        rc, fd = self.start(uri, flags)
        if rc >= 0:
            return rc
        if rc != -errno.EINPROGRESS:
            raise OSError(-rc, f"{os.strerror(-rc)}: {self.last_decision()}")
        deadline = time.monotonic() + timeout
        try:
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"connect for {uri!r} did not finish in {timeout} s")
                poller = select.poll()
                poller.register(fd, select.POLLOUT)
                poller.poll(left * 1000)
                rc = self._lib.pico_net_finish(fd)
                if rc == 0:
                    done, fd = fd, -1
                    return done
                if rc != -errno.EINPROGRESS:
                    raise OSError(-rc, f"{os.strerror(-rc)}: {self.last_decision()}")
        finally:
            if fd >= 0:
                os.close(fd)


def build_net_policy(manifest: Manifest, *, any_host: bool = False) -> NetPolicy:
    """The network policy for ``manifest`` (raises NetPolicyError naming the bad
    grant); ``any_host``: also every host address but loopback and the
    wildcard, for connects (learning runs: picoproc learn --allow-net)."""
    return NetPolicy(manifest, any_host=any_host)
