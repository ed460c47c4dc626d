"""Denials a user can act on: what the manifest kept from a run, why, and
which flag would grant it.

The monitor records every refusal with the reason code of the rule that
refused it (native/denial.h; the audit record's ``reason``).  This module
turns a run's audit records into one entry per distinct denied guest path
or network address, naming

* the rule: a hidden path or name (and which entry), a read-only mount, a
  mount without exec, a path no mount shows, a network endpoint that is not
  granted, ...;
* the manifest key that holds the rule, and
* the flag of ``picoproc run`` that would grant it, the narrowest one that
  does (``-v /srv/data/out:/data/out:rw`` rather than the whole mount) --
  except for hidden secrets: for those it says they are hidden by policy and
  suggests no grant.

It also counts the Linux calls the library OS does not implement.
``Result.denial_summary`` / ``unsupported_counts`` use it; ``picoproc run``
prints ``format_summary`` on stderr at the end of a run.

A refusal of something the host does not have either (a program probing
for an optional file) is kept in the list with ``exists_on_host`` false:
natively it would have failed too, so the summary on stderr only counts it.
"""

from __future__ import annotations

import errno
import functools
import os
from collections.abc import Iterable, Mapping, Sequence

from picoproc import records
from picoproc.guestview import GuestView, host_path, normalise, picoprocess_own, under
from picoproc.manifest import (
    Manifest,
    Mount,
    Tmpfs,
    format_endpoint,
    hidden_name_matches,
    hidden_path_matches,
    parse_endpoint,
)

# The rules, as the audit record's "reason" names them (picoproc.monitor.
# DENIAL_REASONS), plus two that are not refusals by the monitor but the
# manifest's effect all the same: a path no mount shows (the guest's root is
# empty there: ENOENT), and a connection refused by the guest's own loopback
# where the host has a listener.
HIDDEN_RULES = ("hidden_path", "hidden_name", "hidden_object", "holds_hidden")

_NET_SCHEMES = ("tcp", "udp", "tcp.srv", "udp.srv", "udp.new", "tcp.new", "unix", "unix.srv", "unixdg",
                "unixdg.srv", "unixdg.new")
# Calls whose record's path may be created, and calls that change what they name.
_CHANGING_CALLS = {"mkdir", "unlink", "rename", "symlink", "link", "chmod", "chown", "utimens",
                   "truncate"}
O_ACCMODE, O_CREAT, O_TRUNC = 0o3, 0o100, 0o1000
PICO_OPEN_EXEC = 0x40000000


@records.record
class Denial:
    """One distinct thing the manifest refused, with the rule and the grant."""

    target: str  # the guest path, or the network address ("tcp 10.0.0.1:443")
    kind: str  # "path" or "address"
    rule: str  # hidden_path, hidden_name, ..., read_only, noexec, not_mounted, net_not_granted, ...
    key: str  # the manifest key that holds the rule ("hidden", "mount /data", "net.connect")
    why: str  # the rule in words, with the entry that matched
    grant: str | None  # the flag that would grant it; None: none is suggested
    calls: list[str] = records.field(default_factory=list)  # "open for writing", "mkdir", ...
    count: int = 0
    errno_name: str = ""
    exists_on_host: bool | None = None  # False: natively it would have failed too
    resolved: str | None = None  # the canonical guest path, when links led elsewhere

    def to_json(self) -> dict:
        return records.asdict(self)

    @property
    def actionable(self) -> bool:
        """Worth a line on stderr: hidden by policy, or something the host has."""
        return self.rule in HIDDEN_RULES or self.exists_on_host is not False

    def line(self) -> str:
        what = f"{self.target} ({', '.join(self.calls)})" if self.calls else self.target
        if self.resolved:
            what += f" -> {self.resolved}"
        times = f" x{self.count}" if self.count > 1 else ""
        text = f"{what}{times}: {self.why}"
        if self.grant:
            text += f"; to grant: {self.grant}"
        return text


# --------------------------------------------------------------------------
# Reading audit records


def record_path(rec: Mapping) -> tuple[str | None, str | None]:
    """(scheme, guest path or address) of an audit record: ("file", "/x"),
    ("tcp", "127.0.0.1:80"), (None, "/x") for path calls, (None, None)."""
    uri = rec.get("uri")
    if uri is not None:
        scheme, sep, rest = uri.partition(":")
        return (scheme, rest) if sep else (None, None)
    return None, rec.get("path")


def open_flags(rec: Mapping) -> int:
    flags = rec.get("arg", 0)
    return flags if isinstance(flags, int) else 0


def call_words(rec: Mapping) -> str:
    """How a call shows in a summary: "open for writing", "exec", "mkdir"."""
    call = rec.get("call", "?")
    scheme, _ = record_path(rec)
    if call == "open":
        flags = open_flags(rec)
        if scheme in ("tcp", "udp", "unix", "unixdg"):
            return "connect"
        if scheme in ("tcp.srv", "unix.srv", "udp.srv"):
            return "listen"
        if scheme == "unixdg.srv":
            return "bind"
        if flags & PICO_OPEN_EXEC:
            return "exec"
        if flags & O_CREAT:
            return "create"
        if flags & O_ACCMODE or flags & O_TRUNC:
            return "open for writing"
        return "list" if scheme == "dir" else "open"
    return call


def unsupported_counts(records: Iterable[Mapping]) -> dict[str, int]:
    """{Linux call name: times the library OS answered ENOSYS}, by count."""
    counts: dict[str, int] = {}
    for rec in records:
        if rec.get("call") == "note_unsupported":
            from picoproc.abi.linux import SYSCALLS_BY_NR  # here: most runs have none

            nr = rec.get("linux_nr")
            name = SYSCALLS_BY_NR.get(nr, str(nr))
            counts[name] = counts.get(name, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


# --------------------------------------------------------------------------
# The rules in words


@functools.cache
def _default_secrets() -> tuple[frozenset[str], frozenset[str]]:
    """The hidden paths and names of the embedded default manifest."""
    from picoproc.manifest import default_manifest

    d = default_manifest()
    return frozenset(d.hidden), frozenset(d.hidden_names)


def _volume(host: str, guest: str, writable: bool, exec_: bool) -> str:
    opts = ["rw" if writable else "ro"] + ([] if exec_ else ["noexec"])
    return f"-v {_shell_word(host)}:{_shell_word(guest)}:{','.join(opts)}"


def _shell_word(text: str) -> str:
    if text and all(c.isalnum() or c in "/._-+=@%,:" for c in text):
        return text
    return "'" + text.replace("'", "'\\''") + "'"


def _mount_words(m: Mount | Tmpfs) -> str:
    if isinstance(m, Tmpfs):
        return f"tmpfs {m.guest}"
    mode = "rw" if m.writable else "ro"
    return f"mount {m.guest} (host {m.host}, {mode}{'' if m.exec else ', noexec'})"


def _existing_dir(host: str) -> str:
    """``host`` if it is a directory, else the nearest ancestor that is."""
    path = host
    while path not in ("", "/") and not os.path.isdir(path):
        path = os.path.dirname(path)
    return path or "/"


class _Explainer:
    def __init__(self, manifest: Manifest) -> None:
        self.manifest = manifest
        self.view = GuestView(manifest)
        self._listeners: set[tuple[str, int]] | None = None

    # -- paths ---------------------------------------------------------------

    def _hidden_entry(self, paths: Sequence[str]) -> tuple[str, str] | None:
        """("path" or "name", entry) of the hidden rule one of ``paths`` meets."""
        for p in paths:
            for h in self.manifest.hidden:
                if hidden_path_matches(h, p):
                    return "path", h
            for n in self.manifest.hidden_names:
                if hidden_name_matches(n, p):
                    return "name", n
        return None

    def _same_object(self, path: str) -> tuple[str, str] | None:
        """("path", the hidden path) whose host object ``path`` is (a hard
        link of it, or another mount showing it)."""
        host = self.view.host_path(path)
        try:
            st = os.stat(host) if host else None
        except OSError:
            st = None
        if st is None:
            return None
        for h in self.manifest.hidden:
            other = self.view.host_path(h)
            try:
                ost = os.stat(other) if other else None
            except OSError:
                continue
            if ost is not None and (ost.st_dev, ost.st_ino) == (st.st_dev, st.st_ino):
                return "path", h
        return None

    def hidden(self, rule: str, path: str, resolved: str) -> tuple[str, str, str | None]:
        """(key, why, grant) of a hidden rule."""
        paths = [path, resolved]
        entry = self._hidden_entry(paths)
        if entry is None and rule == "hidden_object":
            entry = self._same_object(resolved)
        if entry is None and rule == "holds_hidden":
            entry = next((("path", h) for h in self.manifest.hidden
                          if h != resolved and under(h, resolved)), None)
        default_paths, default_names = _default_secrets()
        if entry is None:
            why = ("hidden by policy (a hidden path of the manifest, reached through a link or "
                   "another name)")
            return "hidden", why, None
        what, value = entry
        if what == "name":
            origin = ("a name the default manifest hides everywhere (private keys, credential "
                      "stores)" if value in default_names else "a hidden name of this manifest")
            why = (f"hidden by policy: hidden_names has {value!r}, {origin}; no flag lifts a "
                   "hidden name")
            return "hidden_names", why, None
        if rule == "hidden_object":
            lead = f"hidden by policy: the file is {value}'s (a hard link, or another mount showing it)"
        elif rule == "holds_hidden":
            lead = f"hidden by policy: renaming it would move the hidden {value}"
        else:
            lead = f"hidden by policy: hidden has {value}"
        if value in default_paths:
            why = (f"{lead}, a secret the default manifest hides; picoproc suggests no grant: "
                   f"if the program must read something there, give it your own copy "
                   f"(-v ./MY_COPY:{value}:ro shows only that)")
        else:
            why = f"{lead} (--hide or the manifest's hidden); drop that entry to show it"
        return "hidden", why, None

    def path_denial(self, rule: str, rec: Mapping, path: str) -> Denial:
        view = self.view
        res = view.resolve(path, follow=rec.get("call") not in ("unlink", "rename", "symlink", "link"))
        resolved = res.path
        canon = normalise(path)
        shown = resolved if resolved != path else None
        words = call_words(rec)
        writes = words in ("create", "open for writing") or rec.get("call") in _CHANGING_CALLS
        mount = view.mount_of(resolved)
        exists = view.exists_on_host(resolved)
        if rule in HIDDEN_RULES:
            key, why, grant = self.hidden(rule, canon, resolved)
            return Denial(path, "path", rule, key, why, grant, exists_on_host=exists, resolved=shown)
        if rule == "xattr_namespace":
            return Denial(path, "path", rule, "(extended attributes)",
                          "only user.* extended attributes may be set or removed", None,
                          exists_on_host=exists, resolved=shown)
        if rule == "device":
            return Denial(path, "path", rule, "(library OS devices)",
                          "a host device file the library OS shows (/dev/null ...): its data "
                          "only, never its name, mode or owner", None, exists_on_host=exists,
                          resolved=shown)
        if rule == "read_only" and isinstance(mount, Tmpfs):
            rule = "not_mounted"  # only the empty root's skeleton refuses a tmpfs path
        if isinstance(mount, Mount) and rule in ("read_only", "noexec", "host_mount"):
            host = host_path(mount, resolved)
            if rule == "read_only":
                # The narrowest grant: the directory the change is made in
                # (a file's own directory, or the directory itself).
                target_host = host if os.path.isdir(host) and rec.get("call") != "mkdir" \
                    else os.path.dirname(host)
                target_host = _existing_dir(target_host)
                guest_dir = _guest_of(mount, target_host)
                grant = _volume(target_host, guest_dir, True, mount.exec)
                why = f"read-only {_mount_words(mount)}"
                if _is_system_mount(mount):
                    why += ("; a system directory: a writable grant lets the program change "
                            "the host's installed files")
                # A file being made does not exist: the directory it goes in does.
                return Denial(path, "path", rule, f"mount {mount.guest}: mode = \"ro\"", why, grant,
                              exists_on_host=os.path.isdir(target_host), resolved=shown)
            if rule == "noexec":
                target_host = _existing_dir(os.path.dirname(host))
                grant = _volume(target_host, _guest_of(mount, target_host), mount.writable, True)
                return Denial(path, "path", rule, f"mount {mount.guest}: exec = false",
                              f"no exec on {_mount_words(mount)}", grant, exists_on_host=exists,
                              resolved=shown)
            target_host = host if os.path.isdir(host) else os.path.dirname(host)
            grant = _volume(target_host, _guest_of(mount, target_host), mount.writable, mount.exec)
            return Denial(path, "path", rule, f"mount {mount.guest}",
                          f"a host mount point below {mount.host} (a mount of a directory does not "
                          "show what the host mounted inside it)", grant, exists_on_host=exists,
                          resolved=shown)
        # Not mounted: no mount of the manifest shows it.  Suggest the same
        # path on the host, when the host has it.
        on_host = os.path.lexists(resolved)
        parent = os.path.dirname(resolved) or "/"
        if writes and parent == "/":
            return Denial(path, "path", "not_mounted", "mount (none)",
                          "not mounted: the guest's / holds only the mount points; make it in a "
                          "mount (a tmpfs such as /tmp, or a writable -v)", None,
                          exists_on_host=True, resolved=shown)
        if writes:
            where = f"; the host has {parent}" if os.path.isdir(parent) else ""
            grant = _volume(parent, parent, True, False) if where else f"-v HOST_DIR:{parent}:rw"
            return Denial(path, "path", "not_mounted", "mount (none)",
                          f"not mounted: no mount of the manifest shows {parent}{where}", grant,
                          exists_on_host=bool(where), resolved=shown)
        if on_host and resolved != "/":
            grant = _volume(resolved, resolved, False, os.path.isdir(resolved) or words == "exec")
        else:
            grant = f"-v HOST_PATH:{resolved}:ro"
        where = f"; the host has {resolved}" if on_host else ""
        return Denial(path, "path", "not_mounted", "mount (none)",
                      f"not mounted: no mount of the manifest shows it{where}", grant,
                      exists_on_host=on_host, resolved=shown)

    # -- network -------------------------------------------------------------

    def net_denial(self, scheme: str, rest: str) -> Denial:
        body = rest.rsplit("?fd=", 1)[0] if scheme in ("unixdg", "unixdg.srv") else rest.split("?", 1)[0]
        if scheme in ("unix", "unix.srv", "unixdg", "unixdg.srv"):
            real = os.path.realpath(body) if body.startswith("/") else body
            exists = os.path.lexists(body) if body.startswith("/") else None
            note = (f" (the grant is by resolved host path: the program must name it {real})"
                    if real != body else "")
            return Denial(f"unix {body}", "address", "net_not_granted", "net.unix",
                          "unix socket not granted (only sockets the program makes in its writable "
                          "mounts need none)" + note, f"--net-unix {_shell_word(real)}",
                          exists_on_host=exists)
        listen = scheme in ("tcp.srv", "udp.srv")
        try:
            ep = format_endpoint(parse_endpoint(body))
        except Exception:  # noqa: BLE001 -- a malformed address is shown as given
            ep = body
        kind = "listen" if listen else "connect"
        grant = f"--net-listen {ep}" if listen else f"--net-connect {ep}"
        if self.manifest.net_connect or self.manifest.net_listen:
            why = f"network endpoint not granted (net.{kind} does not list it)"
        else:
            why = "network not granted (the manifest grants no host endpoint)"
        return Denial(f"{scheme} {ep}", "address", "net_not_granted", f"net.{kind}", why, grant)

    def host_listens(self, host: str, port: int) -> bool:
        """Whether a TCP socket of the host (this network namespace) listens
        on host:port (or on the wildcard address of its family)."""
        import ipaddress

        if self._listeners is None:
            self._listeners = _host_tcp_listeners()
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            return False
        wildcard = "0.0.0.0" if ip.version == 4 else "::"
        return (str(ip), port) in self._listeners or (wildcard, port) in self._listeners

    def own_loopback(self, scheme: str, rest: str) -> Denial | None:
        """A refused TCP connect to a loopback address that is not granted: the
        guest's own loopback answered.  Worth saying only when the host has a
        listener there (the program probably meant it)."""
        import ipaddress

        if scheme != "tcp":
            return None
        try:
            ep = parse_endpoint(rest.split("?", 1)[0])
            ip = ipaddress.ip_address(ep.host)
        except Exception:  # noqa: BLE001
            return None
        if not ip.is_loopback or any(_granted(g, ep) for g in self.manifest.net_connect):
            return None
        if not self.host_listens(str(ip), ep.port):
            return None
        text = format_endpoint(ep)
        return Denial(f"tcp {text}", "address", "own_loopback", "net.connect",
                      f"connection refused by the program's own loopback, which is never the "
                      f"host's; the host has a listener on {text}", f"--net-connect {text}",
                      exists_on_host=True)


def _granted(grant, ep) -> bool:
    return grant.host == ep.host and grant.port in (0, ep.port)


def _guest_of(mount: Mount, host: str) -> str:
    """The guest path ``mount`` shows host path ``host`` (under its host path) at."""
    if host == mount.host:
        return mount.guest
    rest = os.path.relpath(host, mount.host)
    return os.path.join(mount.guest, rest)


def _is_system_mount(mount: Mount) -> bool:
    return any(under(mount.host, d) for d in ("/usr", "/bin", "/sbin", "/lib", "/lib64", "/etc"))


def _host_tcp_listeners() -> set[tuple[str, int]]:
    """(address, port) of every listening TCP socket in this network namespace."""
    import ipaddress

    found: set[tuple[str, int]] = set()
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(name) as f:
                lines = f.read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) < 4 or fields[3] != "0A":  # TCP_LISTEN
                continue
            addr_hex, _, port_hex = fields[1].partition(":")
            raw = bytes.fromhex(addr_hex)
            # /proc prints each 32-bit word in host (little-endian) order.
            raw = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
            try:
                ip = ipaddress.ip_address(raw)
            except ValueError:
                continue
            if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
                ip = ip.ipv4_mapped
            found.add((str(ip), int(port_hex, 16)))
    return found


# --------------------------------------------------------------------------
# The summary


def summarize(records: Iterable[Mapping], manifest: Manifest | None) -> list[Denial]:
    """One Denial per distinct (path or address, rule) the manifest refused,
    in the order first met."""
    if manifest is None:
        return []
    out: dict[tuple[str, str], Denial] = {}
    explain = None
    for rec in records:
        decision = rec.get("decision")
        denial = None
        if decision == "deny":
            explain = explain or _Explainer(manifest)
            denial = _explain_denial(explain, rec)
        elif decision == "error":
            err = rec.get("errno")
            if err == errno.ENOENT:
                scheme, path = record_path(rec)
                if path and path.startswith("/") and scheme in (None, "file", "dir") and \
                        mount_is_missing(manifest, path) and not picoprocess_own(path):
                    explain = explain or _Explainer(manifest)
                    denial = explain.path_denial("not_mounted", rec, path)
                    if not denial.exists_on_host:
                        denial = None  # the host has nothing there either: a probe
                elif scheme == "unix" and path and path.startswith("/") and \
                        mount_is_missing(manifest, path) and os.path.exists(path):
                    # A host socket no mount shows: the guest's view has no
                    # such name, a unix grant would connect it.
                    explain = explain or _Explainer(manifest)
                    denial = explain.net_denial(scheme, path)
            elif err == errno.ECONNREFUSED:
                scheme, rest = record_path(rec)
                if scheme == "tcp" and rest:
                    explain = explain or _Explainer(manifest)
                    denial = explain.own_loopback(scheme, rest)
        if denial is None:
            continue
        key = (denial.target, denial.rule)
        seen = out.get(key)
        if seen is None:
            seen = out[key] = denial
            seen.errno_name = rec.get("errno_name", "")
        seen.count += 1
        words = call_words(rec)
        if words not in seen.calls:
            seen.calls.append(words)
    return list(out.values())


def mount_is_missing(manifest: Manifest, guest_path: str) -> bool:
    """True if no mount or tmpfs of ``manifest`` covers ``guest_path`` (taken
    lexically: the cheap first test, before any link is looked at)."""
    path = normalise(guest_path)
    return not any(under(path, m.guest) for m in (*manifest.mounts, *manifest.tmpfs))


def _explain_denial(explain: _Explainer, rec: Mapping) -> Denial:
    rule = rec.get("reason") or ""
    scheme, target = record_path(rec)
    if rule == "host_terminal":
        return Denial("a terminal the run did not make", "terminal", rule, "(terminals)",
                      "a terminal request on a terminal that is not the run's own pseudo-terminal: "
                      "a host terminal the program inherited never changes", None)
    if rule == "run_bound":
        return Denial(f"{rec.get('call', '?')} bound", "bound", rule, "(per-run bounds)",
                      "a bound every run has was reached (inotify instances and watches)", None,
                      exists_on_host=True)
    if scheme in _NET_SCHEMES and (rule == "net_not_granted" or not rule):
        return explain.net_denial(scheme, target or "")
    if target is None:
        return Denial("?", "path", rule or "unknown", "", "refused by the manifest", None)
    if rule in HIDDEN_RULES and rec.get("new_path"):
        # Two names: report the one the rule meets.
        for p in (target, rec["new_path"]):
            if explain._hidden_entry([normalise(p)]):
                target = p
                break
    return explain.path_denial(rule or "not_mounted", rec, target)


def format_summary(denials: Sequence[Denial], unsupported: Mapping[str, int]) -> str | None:
    """The lines ``picoproc run`` prints on stderr at the end of a run, or
    None when there is nothing to say."""
    shown = [d for d in denials if d.actionable]
    probes = len(denials) - len(shown)
    if not shown and not unsupported:
        return None
    lines = []
    if shown:
        n = len(shown)
        head = f"picoproc: the manifest refused {n} thing{'s' if n != 1 else ''} this run"
        if probes:
            head += f" (and {probes} the host does not have either)"
        lines.append(head + ":")
        lines += [f"  {d.line()}" for d in shown]
    if unsupported:
        calls = ", ".join(f"{name} ({n} call{'s' if n != 1 else ''})" for name, n in unsupported.items())
        lines.append(f"picoproc: not implemented by picoproc (the program got ENOSYS): {calls}")
    lines.append("picoproc: (details: --json FILE; silence with --quiet)")
    return "\n".join(lines)
