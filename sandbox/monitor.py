"""The security monitor's driver: the C event loop that serves mediated calls.

``Monitor`` runs one C loop (native/loop.c) in a Python thread; the loop waits
on the seccomp listener of every guest added to it and serves each mediated
call in C (no Python per notification; cffi releases the GIL while the loop
runs).  Python composes the policies, adds and removes guests while the loop
runs, and drains the audit records in batches.

``FsPolicy`` (picoproc.fspolicy) is the file half of a guest's policy,
``NetPolicy`` (picoproc.netpolicy) the network half.

``GuestArea`` is a picoprocess's argument area and its channels: the
library OS passes mediated arguments through the area and receives fds on
the channels (native/loop.h), so that no call reads the guest's memory or
waits for NOTIF_ADDFD's wake-ups.  Spawn gives the guest its ends; the
monitor maps the area and keeps its ends of the channels.

Typical use::

    with Monitor() as mon, FsPolicy.from_manifest(manifest, scratch) as fs, GuestArea() as area:
        guest = spawn_picoprocess(SpawnConfig(..., area=area))
        handle = mon.add_guest(guest.listener_fd, guest.pid, fs, area=area)
        os.close(guest.listener_fd)      # the loop keeps its own copy
        ... wait for the guest ...
        stats = mon.remove_guest(handle)
        records = mon.drain_audit()
"""

from __future__ import annotations

import errno as errno_mod
import os
import struct
import threading
from collections.abc import Callable, Iterable

from picoproc.errors import PicoprocError
from picoproc.native import ffi, lib

TYPE_CHECKING = False  # typing's own flag, without importing typing on every run
if TYPE_CHECKING:
    from typing import Self

    from picoproc.fspolicy import FsPolicy

# <linux/seccomp.h>
SECCOMP_FILTER_FLAG_NEW_LISTENER = 1 << 3
SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV = 1 << 5  # Linux 5.19
# What spawn must pass to seccomp(2) for a guest served by a Monitor: a
# listener for the monitor, and (WAIT_KILLABLE_RECV) once the monitor has
# received a call, only a fatal signal can make the guest abandon it, so a
# call the monitor performs (a file created, a socket connected) is never
# lost to a stray signal.
GUEST_SECCOMP_FLAGS = SECCOMP_FILTER_FLAG_NEW_LISTENER | SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV

DECISIONS = {
    lib.PICO_DECISION_ALLOW: "allow",
    lib.PICO_DECISION_DENY: "deny",
    lib.PICO_DECISION_ERROR: "error",
    lib.PICO_DECISION_ABANDONED: "abandoned",
}

# Why a call was denied (native/denial.h), as the audit record's "reason";
# picoproc.denials turns each into the rule and the flag that would grant it.
DENIAL_REASONS = {
    lib.PICO_DENY_NOT_MOUNTED: "not_mounted",
    lib.PICO_DENY_HIDDEN_PATH: "hidden_path",
    lib.PICO_DENY_HIDDEN_NAME: "hidden_name",
    lib.PICO_DENY_HIDDEN_OBJECT: "hidden_object",
    lib.PICO_DENY_READ_ONLY: "read_only",
    lib.PICO_DENY_NOEXEC: "noexec",
    lib.PICO_DENY_DEVICE: "device",
    lib.PICO_DENY_HOST_MOUNT: "host_mount",
    lib.PICO_DENY_HOLDS_HIDDEN: "holds_hidden",
    lib.PICO_DENY_NET: "net_not_granted",
    lib.PICO_DENY_XATTR_NAMESPACE: "xattr_namespace",
    lib.PICO_DENY_HOST_TERMINAL: "host_terminal",
    lib.PICO_DENY_RUN_BOUND: "run_bound",
}

_NOTE_EMULATED = lib.PICO_NOTE_EMULATED

def _call_names() -> dict[int, str]:
    """Mediated call index -> name, as the C loop was built (the ABI table's
    generated header): no need to parse the table in every monitor."""
    names = {}
    while (name := lib.pico_mediated_call_name(len(names))) != ffi.NULL:
        names[len(names)] = ffi.string(name).decode()
    return names


CALL_NAMES = _call_names()
_DRAIN_BATCH = 1024


class MonitorError(OSError, PicoprocError):
    """The monitor could not do what was asked; the message says what."""


def guest_identity() -> tuple[int, int, tuple[int, ...]]:
    """The host identity file operations run under: nobody (no supplementary
    groups) for a root monitor, otherwise the invoking user."""
    if os.geteuid() == 0:
        return 65534, 65534, ()
    return os.geteuid(), os.getegid(), tuple(os.getgroups())


def escape_bytes(data: bytes) -> str:
    """Text for a guest-supplied name: UTF-8 as is, every other byte as
    \\xNN and a backslash as \\\\, so distinct names stay distinct."""
    # Fast path (nearly every record): valid UTF-8 with no backslash is
    # itself; the per-character loop below cost microseconds per record.
    if b"\\" not in data:
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            pass
    out = []
    text = data.decode("utf-8", "surrogateescape")
    for ch in text:
        code = ord(ch)
        if ch == "\\":
            out.append("\\\\")
        elif 0xDC80 <= code <= 0xDCFF:  # an undecodable byte
            out.append(f"\\x{code - 0xDC00:02x}")
        else:
            out.append(ch)
    return "".join(out)


def _raise_errno(ret: int, what: str) -> None:
    if ret < 0:
        raise MonitorError(-ret, f"{what}: {os.strerror(-ret)}")


def _stats_dict(s) -> dict:
    return {
        "handle": s.handle, "pid": s.pid, "alive": bool(s.alive), "calls": s.calls,
        "allowed": s.allowed, "denied": s.denied, "errors": s.errors, "abandoned": s.abandoned,
        "monitor_cpu_ns": s.monitor_cpu_ns, "audit_dropped": s.audit_dropped,
        "connects_peak": s.connects_peak, "listeners": s.listeners,
    }


# struct pico_audit_record (native/loop.h), read with one struct.iter_unpack
# over the drained batch: reading each field through cffi is a Python-level
# call per field, several times slower (docs/PERFORMANCE.md, "Counting and
# auditing").  Checked against the C layout at import.
_RECORD = struct.Struct(f"<QqiihhiqqqIIII{lib.PICO_AUDIT_TEXT}s{lib.PICO_AUDIT_TEXT}s")
if _RECORD.size != ffi.sizeof("struct pico_audit_record"):
    raise ImportError(f"struct pico_audit_record is {ffi.sizeof('struct pico_audit_record')} bytes, "
                      f"the decoder expects {_RECORD.size}: update monitor._RECORD with native/loop.h")


def _record_dicts(buf, n: int) -> list[dict]:
    """The first ``n`` records of the cffi array ``buf`` as dicts."""
    out = []
    errorcode = errno_mod.errorcode
    for (time_ns, guest, pid, call_nr, decision, reason, err, result, arg, arg2,
         text_len, text_full, text2_len, text2_full, text, text2) in _RECORD.iter_unpack(
            ffi.buffer(buf, n * _RECORD.size)):
        call = CALL_NAMES.get(call_nr, "unknown")
        rec = {
            "time_ns": time_ns,
            "guest": guest,
            "pid": pid,
            "call": call,
            "decision": DECISIONS.get(decision, str(decision)),
            "errno": err,
            "errno_name": errorcode.get(err, "") if err else "",
            "result": result,
        }
        if reason:
            rec["reason"] = DENIAL_REASONS.get(reason, str(reason))
        if call == "note_unsupported" and arg & _NOTE_EMULATED:
            # A traced run's note of a call the library OS emulated.
            rec["call"] = "note_emulated"
            rec["linux_nr"] = arg & ~_NOTE_EMULATED
        elif call == "note_unsupported":
            rec["linux_nr"] = arg
            rec["arg0"] = arg2
        elif call == "unknown":
            rec["nr"] = arg
        else:
            rec["arg"] = arg
        if text_full:
            key = "uri" if call == "open" else "path"
            rec[key] = escape_bytes(text[:text_len])
            if text_len < text_full:
                rec[key + "_truncated_from"] = text_full
        if text2_full:
            key = "target" if call == "symlink" else "new_path"
            rec[key] = escape_bytes(text2[:text2_len])
            if text2_len < text2_full:
                rec[key + "_truncated_from"] = text2_full
        out.append(rec)
    return out


# The default bound on an audit file (``picoproc run --audit-limit``): a
# guest that floods the monitor with refused calls writes tens of MB/s.
AUDIT_FILE_LIMIT = 64 << 20
# Room kept below the bound for the line that says the file was cut.
AUDIT_FILE_MIN_LIMIT = _AUDIT_TRUNCATION_ROOM = 512


class AuditJsonlWriter:
    """Appends audit records to a file, one JSON object per line
    (``picoproc run --audit FILE``).  Usable as a Monitor audit_sink.

    At most ``limit`` bytes (None: no bound) are written: the records that
    would go past it are dropped, and one last line
    ``{"audit_truncated": true, "reason": ..., "records_written": N}`` says
    so.  A write that fails (a full disk, an I/O error) stops the file the
    same way; whatever part of a batch did reach the file is cut off again
    (ftruncate), so the file only ever holds whole records.  Either way
    ``error`` says why, and ``dropped`` counts the records not written."""

    def __init__(self, path: str | os.PathLike, limit: int | None = AUDIT_FILE_LIMIT) -> None:
        if limit is not None and limit < _AUDIT_TRUNCATION_ROOM:
            raise ValueError(f"an audit size limit must be at least {_AUDIT_TRUNCATION_ROOM} bytes")
        self.path = os.fspath(path)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        self._lock = threading.Lock()
        self._limit = limit
        self.written_bytes = 0
        self.records_written = 0
        self.dropped = 0
        self.error: str | None = None

    def __call__(self, records: Iterable[dict]) -> None:
        import json  # only a run with an audit file writes JSON

        records = list(records)
        with self._lock:
            if self.error is not None or self._fd < 0:
                self.dropped += len(records)
                return
            lines = [(json.dumps(rec, sort_keys=True) + "\n").encode("utf-8") for rec in records]
            keep = len(lines)
            if self._limit is not None:
                room = self._limit - _AUDIT_TRUNCATION_ROOM - self.written_bytes
                total = 0
                for i, line in enumerate(lines):
                    total += len(line)
                    if total > room:
                        keep = i
                        break
            written = self._write_lines(lines[:keep])
            self.records_written += written
            self.dropped += len(lines) - written
            if self.error is None and keep < len(lines):
                self._stop(f"size limit of {self._limit} bytes reached")

    # Records are written in chunks of about this many bytes; a chunk that
    # does not fit is written again record by record, so that a full disk
    # keeps every record that fits.
    _CHUNK = 16384

    def _write_lines(self, lines: list[bytes]) -> int:
        """Appends whole lines until one cannot be written (self.error then
        says why); returns how many were written."""
        i = 0
        while i < len(lines):
            j, size = i, 0
            while j < len(lines) and (j == i or size + len(lines[j]) <= self._CHUNK):
                size += len(lines[j])
                j += 1
            if self._append(b"".join(lines[i:j])) is None:
                i = j
                continue
            for k in range(i, j):
                failure = self._append(lines[k])
                if failure is not None:
                    self.error = f"audit file {self.path}: {failure.strerror}"
                    return k
            i = j
        return i

    def _append(self, data: bytes) -> OSError | None:
        """Appends data whole, or leaves the file as it was."""
        try:
            start = os.fstat(self._fd).st_size
        except OSError as exc:
            return exc
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(self._fd, view):]
        except OSError as exc:
            try:
                os.ftruncate(self._fd, start)
            except OSError:
                pass
            return exc
        self.written_bytes += len(data)
        return None

    def _stop(self, reason: str) -> None:
        import json

        marker = {"audit_truncated": True, "reason": reason, "records_written": self.records_written}
        self.error = f"audit file {self.path}: {reason}"
        try:
            os.write(self._fd, (json.dumps(marker, sort_keys=True) + "\n").encode("utf-8"))
        except OSError:
            pass  # the error above says why the file ends

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0:
                fd, self._fd = self._fd, -1
                os.close(fd)


class GuestArea:
    """The argument area of one picoprocess: a sealed memfd and a channel
    per slot (native/loop.h, pico_area_make).  Hand ``area_fd`` and
    ``guest_channels`` to spawn (SpawnConfig.area) and the area to
    Monitor.add_guest; close it once both have their own copies."""

    def __init__(self, channels: int | None = None) -> None:
        n = lib.PICO_SPAWN_MAX_CHANNELS if channels is None else channels
        area = ffi.new("int *")
        guest, monitor = ffi.new("int[]", max(n, 1)), ffi.new("int[]", max(n, 1))
        ret = lib.pico_area_make(n, area, guest, monitor)
        _raise_errno(ret, "making the guest's argument area")
        self.area_fd = area[0]
        self.guest_channels = tuple(guest[i] for i in range(n))
        self.monitor_channels = tuple(monitor[i] for i in range(n))

    def close(self) -> None:
        for fd in (self.area_fd, *self.guest_channels, *self.monitor_channels):
            if fd >= 0:
                os.close(fd)
        self.area_fd, self.guest_channels, self.monitor_channels = -1, (), ()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class Monitor:
    """One C loop serving the mediated calls of many guests.

    ``audit_sink``: a callable given each batch of records (lists of dicts)
    from a drainer thread; without one, call ``drain_audit()`` yourself often
    enough that the ring (``audit_capacity`` records) does not fill (dropped
    records are counted in ``counters()['audit_dropped']``)."""

    def __init__(self, *, identity: tuple[int, int, Iterable[int]] | None = None, max_guests: int = 1024,
                 audit_capacity: int = 65536, audit_sink: Callable[[list[dict]], None] | None = None) -> None:
        self._loop = lib.pico_loop_new(max_guests, audit_capacity)
        if self._loop == ffi.NULL:
            e = ffi.errno
            raise MonitorError(e, f"creating the monitor loop: {os.strerror(e)}")
        uid, gid, groups = identity if identity is not None else guest_identity()
        self.identity = (uid, gid, tuple(groups))
        self._thread: threading.Thread | None = None
        self._run_result: int | None = None
        self._sink = audit_sink
        self._drainer: threading.Thread | None = None
        self._draining = False
        self._lock = threading.Lock()
        self._handles: set[int] = set()
        self._policies: dict[int, object] = {}  # keeps each guest's policy alive
        self._drain_lock = threading.Lock()
        self._drain_buf = None
        self._listings = None  # where guests' /proc listings are built (made on first use)

    # -- running -----------------------------------------------------------------

    def start(self, timeout: float = 10.0) -> None:
        if self._thread is not None:
            raise MonitorError(errno_mod.EBUSY, "the monitor is already running")
        uid, gid, groups = self.identity
        c_groups = ffi.new("uint32_t[]", list(groups) or [0])

        def serve():
            self._run_result = lib.pico_loop_run(self._loop, uid, gid, c_groups, len(groups))

        self._thread = threading.Thread(target=serve, name="picoproc-monitor", daemon=True)
        self._thread.start()
        ret = lib.pico_loop_wait_running(self._loop, int(timeout * 1000))
        if ret != 1:
            self._thread.join(timeout)
            self._thread = None
            err = -ret if ret < 0 else errno_mod.ETIMEDOUT
            raise MonitorError(err, f"starting the monitor loop as {uid}:{gid}: {os.strerror(err)}")
        if self._sink is not None:
            self._draining = True
            self._drainer = threading.Thread(target=self._drain_forever, name="picoproc-audit", daemon=True)
            self._drainer.start()

    def stop(self, timeout: float = 10.0) -> None:
        if self._thread is None:
            return
        lib.pico_loop_stop(self._loop)
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise MonitorError(errno_mod.ETIMEDOUT, "the monitor loop did not stop")
        self._thread = None
        if self._drainer is not None:
            self._draining = False
            os.eventfd_write(lib.pico_loop_audit_eventfd(self._loop), 1)
            self._drainer.join(timeout)
            self._drainer = None
        if self._sink is not None:
            self._flush_to_sink()
        if self._run_result:
            raise MonitorError(-self._run_result, f"the monitor loop failed: {os.strerror(-self._run_result)}")

    def close(self) -> None:
        """Stops the loop and frees it; every guest still registered loses
        the monitor (its pending and later mediated calls fail)."""
        self.stop()
        if self._loop is not None:
            loop, self._loop = self._loop, None
            lib.pico_loop_free(loop)
            self._policies.clear()
            self._handles.clear()
        if self._listings is not None:
            self._listings.close()
            self._listings = None

    # Directory listings of the guests' /proc and /dev are built as real
    # directories (getdents64 is a direct call): a few empty files each,
    # at most 8 per guest, in a small private tmpfs no guest can name.
    _LISTINGS_BYTES = 8 << 20

    def _listing_dir(self) -> int:
        with self._lock:
            if self._listings is None:
                from picoproc.scratch import make_scratch

                try:
                    self._listings = make_scratch(self._LISTINGS_BYTES)
                except OSError:
                    return -1  # the guests' listings answer ENOSYS
            return self._listings.dir_fd

    @property
    def running(self) -> bool:
        return self._thread is not None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- guests ------------------------------------------------------------------

    def add_guest(self, listener_fd: int, pid: int, policy: FsPolicy, net_policy=None,
                  guestnet_fd: int = -1, proc_fd: int = -1, *, area: GuestArea | None = None,
                  audit_allowed: bool = True) -> int:
        """Starts serving the guest behind ``listener_fd`` (the loop keeps its
        own duplicate; the caller may close its fd).  ``net_policy``: a
        picoproc.netpolicy.NetPolicy (its ``handle`` is the C policy), or
        None (nothing granted).  ``guestnet_fd``: the channel to the socket
        helper of the guest's own network (``Spawned.guestnet_fd``; the loop
        keeps a duplicate), or -1: no own network, its URIs are refused as
        not granted.  ``proc_fd``: the guest's procfs (``Spawned.proc_fd``;
        the loop keeps a duplicate), for its /proc, or -1.  ``area``: the
        guest's argument area (the one spawn gave it; the loop maps it and
        keeps duplicates of the channels).  ``audit_allowed``: make an audit
        record of every allowed call too (otherwise they are only counted).
        Returns the guest's handle."""
        net = ffi.NULL if net_policy is None else net_policy.handle
        spec = ffi.new("struct pico_guest_spec *")
        spec.listener_fd = listener_fd
        spec.pid = pid
        spec.fs = policy.pointer
        spec.net = net
        spec.guestnet_fd = guestnet_fd
        spec.proc_fd = proc_fd
        spec.listing_fd = self._listing_dir() if proc_fd >= 0 else -1
        spec.area_fd = area.area_fd if area is not None else -1
        channels = ffi.new("int[]", list(area.monitor_channels) if area is not None else [-1])
        spec.channel_fds = channels
        spec.n_channels = len(area.monitor_channels) if area is not None else 0
        spec.audit_allowed = int(audit_allowed)
        handle = lib.pico_loop_add_guest(self._loop, spec)
        _raise_errno(handle, f"adding guest pid {pid}")
        policy._in_use = True
        with self._lock:
            self._handles.add(handle)
            self._policies[handle] = (policy, net_policy)
        return handle

    def remove_guest(self, handle: int) -> dict:
        """Stops serving the guest; returns its final counts."""
        out = ffi.new("struct pico_guest_stats *")
        _raise_errno(lib.pico_loop_remove_guest(self._loop, handle, out), f"removing guest {handle}")
        with self._lock:
            self._handles.discard(handle)
            self._policies.pop(handle, None)
        return _stats_dict(out)

    def guest_stats(self, handle: int) -> dict:
        out = ffi.new("struct pico_guest_stats *")
        _raise_errno(lib.pico_loop_guest_stats(self._loop, handle, out), f"guest {handle}")
        return _stats_dict(out)

    @property
    def stats(self) -> dict[int, dict]:
        """Counts (calls served, allowed, denied, ...) of every registered guest."""
        with self._lock:
            handles = sorted(self._handles)
        return {h: self.guest_stats(h) for h in handles}

    def counters(self) -> dict:
        c = ffi.new("struct pico_loop_counters *")
        lib.pico_loop_get_counters(self._loop, c)
        return {
            "notifications": c.notifications, "abandoned": c.abandoned, "audit_dropped": c.audit_dropped,
            "recv_errors": c.recv_errors, "guests": c.guests, "servers": c.servers,
            "sync_wakeup": bool(c.sync_wakeup), "fds_on_channel": c.fds_on_channel,
            "fds_by_addfd": c.fds_by_addfd, "area_calls": c.area_calls, "fs_lookups": c.fs_lookups,
            "running": bool(c.running), "pending_connects": c.pending_connects,
            "guestnet_pending": c.guestnet_pending,
        }

    # -- audit -------------------------------------------------------------------

    def drain_audit(self) -> list[dict]:
        """Every audit record not yet drained, oldest first."""
        out: list[dict] = []
        # One buffer for the monitor's life (under a lock: the drainer
        # thread and every run drain): a fresh buffer of a whole batch per
        # call would be mapped and zeroed anew for every run
        # (docs/PERFORMANCE.md, "Counting and auditing").
        with self._drain_lock:
            buf = self._drain_buf
            if buf is None:
                buf = self._drain_buf = ffi.new("struct pico_audit_record[]", _DRAIN_BATCH)
            while True:
                n = lib.pico_loop_drain_audit(self._loop, buf, _DRAIN_BATCH)
                out.extend(_record_dicts(buf, n))
                if n < _DRAIN_BATCH:
                    return out

    def _flush_to_sink(self) -> None:
        records = self.drain_audit()
        if records:
            self._sink(records)

    def _drain_forever(self) -> None:
        efd = lib.pico_loop_audit_eventfd(self._loop)
        while self._draining:
            os.eventfd_read(efd)  # the loop signals a half-full ring; stop() signals too
            self._flush_to_sink()


def __getattr__(name: str):
    # FsPolicy lives in picoproc.fspolicy (which needs MonitorError from
    # here); importers of picoproc.monitor.FsPolicy still find it.
    if name == "FsPolicy":
        from picoproc.fspolicy import FsPolicy
        return FsPolicy
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
