"""The backend interface, its result, and the process runner the backends share."""

from __future__ import annotations

import os
import resource
import select
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from typing import ClassVar

from picoproc.errors import PicoprocError
from picoproc.manifest import Manifest
from picoproc.mounttable import MountTable
from picoproc.result import Result, Usage
from picoproc.signals import SignalRelay, forwarded_blocked, unblock_in_child

# What a manifest can ask for, by key.  A backend lists the keys it cannot
# express in ``Backend.unsupported`` with the reason; the tests assert that a
# declared limitation is also observed, and that an undeclared one is not.
FEATURES: dict[str, str] = {
    "fs.view": "only the manifest's mounts are visible; the rest of the host filesystem is not",
    "mount.readonly": "a mount not marked writable cannot be written",
    "mount.remap": "a mount may show a host path at a different guest path",
    "tmpfs.private": "a scratch tmpfs is private to the run and empty at start",
    "tmpfs.size": "a scratch tmpfs is limited to its size",
    "hidden": "hidden paths are refused even inside a mount",
    "hidden.names": "file-name patterns (hidden_names, e.g. *.key) are refused in every directory",
    "network.none": "no network unless the manifest grants it",
    "network.grants": "network grants are per endpoint (host:port), not all-or-nothing",
    "unix.grants": "unix-socket grants are per path",
    "hostname": "the guest sees the manifest's hostname",
    "pid.isolation": "the guest cannot see or signal host processes",
    "ipc.isolation": "the guest cannot reach host System V / POSIX IPC objects",
    "limits.wall_time": "wall-time limit",
    "limits.cpu_time": "CPU-time limit",
    "limits.memory": "memory limit",
    "limits.pids": "process-count limit",
    "limits.open_files": "open-file limit",
    "limits.output_bytes": "captured-output limit",
}


class BackendError(RuntimeError, PicoprocError):
    """A backend failed to set up the run (not the guest failing)."""


class BackendUnavailable(BackendError):
    """The backend cannot run on this machine; the message is one line naming why."""


class ManifestNotExpressible(BackendError):
    """The backend cannot express this manifest at all (one line naming what)."""


# Every backend returns the one result shape (picoproc.result.Result); the
# old name stays for callers that import it from here.
BackendResult = Result


def uses_feature(manifest: Manifest, key: str) -> bool:
    """Whether ``manifest`` asks for ``key`` (so a backend lacking it must say so)."""
    lim = manifest.limits
    granted_net = bool(manifest.net_connect or manifest.net_listen)
    return {
        "fs.view": True,
        "mount.readonly": any(not m.writable for m in manifest.mounts),
        "mount.remap": any(m.guest != m.host for m in manifest.mounts),
        "tmpfs.private": bool(manifest.tmpfs),
        "tmpfs.size": bool(manifest.tmpfs),
        "hidden": bool(manifest.hidden),
        "hidden.names": bool(getattr(manifest, "hidden_names", ())),
        "network.none": not granted_net,
        "network.grants": granted_net,
        "unix.grants": bool(manifest.unix_paths),
        "hostname": True,
        "pid.isolation": True,
        "ipc.isolation": True,
        "limits.wall_time": lim.wall_time_s is not None,
        "limits.cpu_time": lim.cpu_time_s is not None,
        "limits.memory": lim.memory_bytes is not None,
        "limits.pids": lim.pids is not None,
        "limits.open_files": lim.open_files is not None,
        "limits.output_bytes": lim.output_bytes is not None,
    }[key]


class Backend:
    """One isolation mechanism.  Subclasses set ``name``, ``description`` and
    ``unsupported``, and implement ``_check_available`` and ``_run``."""

    name: str = ""
    description: str = ""
    unsupported: ClassVar[dict[str, str]] = {}
    # Tasks the backend's own launcher adds to the run's cgroup (waiters,
    # monitors, init processes); None = this backend does not put its runs
    # in a picoproc cgroup, so the pids limit is not expressed.
    launcher_tasks: ClassVar[int | None] = None

    def available(self) -> tuple[bool, str]:
        """(True, version/what was found) or (False, one-line reason)."""
        try:
            return True, self._check_available()
        except BackendUnavailable as exc:
            return False, str(exc)

    def _check_available(self) -> str:
        raise NotImplementedError

    def cannot_express(self) -> dict[str, str]:
        """Feature key -> why, for everything this backend cannot express on
        this machine (``unsupported`` plus what depends on the machine)."""
        out = dict(self.unsupported)
        if self.launcher_tasks is not None and "limits.pids" not in out:
            reason = _cgroup_unavailable_reason()
            if reason:
                out["limits.pids"] = f"no per-run cgroup here: {reason}"
        elif (
            self.launcher_tasks is None
            and "limits.pids" not in out
            and not self.enforces_pids_itself
        ):
            out["limits.pids"] = "no process-count limit"
        return out

    # True when the mechanism has its own process-count limit (sandlock).
    enforces_pids_itself: ClassVar[bool] = False

    def limitations(self) -> list[str]:
        """What of a manifest this backend cannot express, one line each."""
        return [f"{key}: {why}" for key, why in self.cannot_express().items()]

    def applicable_limitations(self, manifest: Manifest) -> list[str]:
        return [
            f"{key}: {why}"
            for key, why in self.cannot_express().items()
            if uses_feature(manifest, key)
        ]

    def run_cgroup(self, manifest: Manifest):
        """The run's cgroup enforcing the manifest's pids limit, or None."""
        if (
            manifest.limits.pids is None
            or self.launcher_tasks is None
            or _cgroup_unavailable_reason()
        ):
            return None
        from picoproc import cgroups

        # create_run_cgroup adds one task for picoproc's own reaper; ours is launcher_tasks.
        cg, note = cgroups.create_run_cgroup(
            pids=max(1, manifest.limits.pids + self.launcher_tasks - 1)
        )
        if cg is None:
            raise BackendError(f"{self.name}: cannot create the run's cgroup: {note}")
        return cg

    def run(
        self,
        manifest: Manifest,
        argv: Sequence[str],
        *,
        stdin: bytes | None = None,
        capture: bool = True,
        timeout: float | None = None,
        forward_signals: bool = False,
        stop_timeout: float | None = None,
    ) -> Result:
        """Runs ``argv`` under this backend with ``manifest``.  ``timeout`` (or the
        manifest's wall-time limit, whichever is smaller) kills the run.
        ``forward_signals``: signals sent to this process reach the run (see
        picoproc.signals), which is killed ``stop_timeout`` seconds after
        the first stop signal."""
        if not argv:
            raise ValueError("argv is empty: nothing to run")
        ok, reason = self.available()
        if not ok:
            raise BackendUnavailable(f"backend {self.name!r} is unavailable: {reason}")
        limits = [t for t in (timeout, manifest.limits.wall_time_s) if t is not None]
        _options.forward_signals = forward_signals
        _options.stop_timeout = stop_timeout
        try:
            result = self._run(
                manifest,
                list(argv),
                stdin=stdin,
                capture=capture,
                timeout=min(limits) if limits else None,
            )
        finally:
            _options.forward_signals = False
            _options.stop_timeout = None
        result.argv = list(argv)
        result.backend = self.name
        result.notes[:0] = self.applicable_limitations(manifest)
        return result

    def _run(self, manifest, argv, *, stdin, capture, timeout) -> Result:
        raise NotImplementedError


# ---------------------------------------------------------------------------
# Helpers the backends share.


def _cgroup_unavailable_reason() -> str | None:
    try:
        from picoproc import cgroups
    except ImportError as exc:
        return f"picoproc.cgroups is missing ({exc})"
    support = cgroups.available()
    if support.version is None or "pids" not in cgroups.available_controllers():
        return support.reason or "the pids controller is not available"
    return None


def manifest_env(manifest: Manifest) -> dict[str, str]:
    """The guest's environment: exactly the manifest's, nothing from the host."""
    return dict(manifest.env)


def host_path_for(manifest: Manifest, guest_path: str) -> str | None:
    """The host path a guest path shows, through the innermost mount; None if
    the path is under no mount."""
    return MountTable(manifest.mounts).host_path(guest_path)


def require_identity_mounts(backend: str, manifest: Manifest) -> None:
    """Path-checking backends (no mount namespace) cannot show a host path
    elsewhere: refuse a manifest that needs it rather than run it wrongly."""
    for m in manifest.mounts:
        # /bin -> /usr/bin on a merged-/usr host is still the same place.
        if m.guest != m.host and os.path.realpath(m.guest) != os.path.realpath(m.host):
            raise ManifestNotExpressible(
                f"backend {backend!r} cannot remap paths: mount {m.guest} -> {m.host} "
                "needs guest path == host path"
            )


def rlimits_for(manifest: Manifest) -> list[tuple[int, int]]:
    """The manifest's limits that map onto inherited rlimits."""
    lim = manifest.limits
    out = []
    if lim.cpu_time_s is not None:
        secs = max(1, int(-(-lim.cpu_time_s // 1)))  # RLIMIT_CPU is whole seconds; round up
        out.append((resource.RLIMIT_CPU, secs))
    if lim.memory_bytes is not None:
        out.append((resource.RLIMIT_AS, lim.memory_bytes))
    if lim.open_files is not None:
        out.append((resource.RLIMIT_NOFILE, lim.open_files))
    return out


def _rusage_dict(ru) -> dict[str, float] | None:
    if ru is None:
        return None
    return {"ru_utime": ru.ru_utime, "ru_stime": ru.ru_stime, "ru_maxrss": float(ru.ru_maxrss)}


class _RusagePopen(subprocess.Popen):
    """Popen that reaps with wait4 so the run's resource usage is kept."""

    rusage = None

    def _try_wait(self, wait_flags):
        try:
            pid, sts, ru = os.wait4(self.pid, wait_flags)
        except ChildProcessError:
            return (self.pid, 0)
        if pid == self.pid:
            self.rusage = ru
        return (pid, sts)


class _RunOptions(threading.local):
    """What Backend.run passes down to run_process without every backend's
    _run having to carry it."""

    forward_signals = False
    stop_timeout: float | None = None


_options = _RunOptions()


def run_process(
    backend: str,
    cmd: Sequence[str],
    *,
    env: dict[str, str] | None,
    cwd: str | None,
    stdin: bytes | None,
    capture: bool,
    timeout: float | None,
    output_limit: int | None = None,
    rlimits: Sequence[tuple[int, int]] = (),
    pass_fds: Sequence[int] = (),
    preexec: Callable[[], None] | None = None,
    on_timeout: Callable[[], None] | None = None,
    cgroup=None,
) -> Result:
    """Runs ``cmd`` in its own session.  On timeout, when captured output
    passes ``output_limit`` bytes, or at the end of the stop timeout after a
    relayed stop signal, kills the whole session (SIGKILL to the process
    group), then calls ``on_timeout`` for what lives outside it."""

    join_files = cgroup.join_files() if cgroup is not None else []
    forward = _options.forward_signals
    # exec keeps the signal mask: a run started while picoproc holds the
    # relayed signals blocked must get them back.
    unblock = forward or forwarded_blocked()

    def child_setup():
        # Joined before exec, so everything the launcher starts is counted.
        for path in join_files:
            with open(path, "w") as f:
                f.write("0")
        for res, value in rlimits:
            resource.setrlimit(res, (value, value))
        if unblock:
            unblock_in_child()
        if preexec is not None:
            preexec()

    pipe = subprocess.PIPE if capture else None
    start = time.monotonic()
    relay = None
    if forward:
        relay = SignalRelay(_options.stop_timeout if _options.stop_timeout is not None else 10.0)
        relay.__enter__()
    try:
        proc = _RusagePopen(
            list(cmd),
            env=env,
            cwd=cwd,
            stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
            stdout=pipe,
            stderr=pipe,
            start_new_session=True,
            pass_fds=tuple(pass_fds),
            preexec_fn=child_setup if (rlimits or preexec or join_files or unblock) else None,
        )
    except BaseException:
        if relay is not None:
            relay.__exit__(None, None, None)
        raise
    notes: list[str] = []
    limit = None
    stopped_by = None
    try:
        out, err, why = _collect(proc, stdin, timeout, output_limit if capture else None, relay)
        if why is not None:
            if why.startswith("timed out"):
                limit = "wall_time"
            elif why.startswith("stopped"):
                stopped_by = relay.first_stop.signo
            else:
                limit = "output"
            _kill_group(proc.pid)
            if on_timeout is not None:
                on_timeout()
            notes.append(why)
            # Whatever still holds the pipes outside the process group gets a bounded grace period.
            more_out, more_err, _ = _collect(proc, None, _DRAIN_AFTER_KILL_S, None, None)
            out, err = out + more_out, err + more_err
        if output_limit is not None and capture:
            out, err = out[:output_limit], err[: max(0, output_limit - len(out))]
        proc.wait(timeout=_DRAIN_AFTER_KILL_S)
    except BaseException:
        _kill_group(proc.pid)
        proc.wait()
        raise
    finally:
        if relay is not None:
            relay.__exit__(None, None, None)
        for f in (proc.stdin, proc.stdout, proc.stderr):
            if f is not None:
                f.close()
        if cgroup is not None:
            hits = cgroup.stats().pids_limit_hits
            if hits:
                notes.append(f"limits.pids: {hits} fork(s) refused by the run's cgroup")
                limit = limit or "pids"
            try:
                cgroup.remove()  # kills anything the run left behind
            except OSError as exc:
                notes.append(f"cgroup: {exc}")
    wall = time.monotonic() - start
    rc = proc.returncode
    if output_limit is not None and not capture:
        notes.append("limits.output_bytes: output is not captured, so it is not limited")
    ru = proc.rusage
    return Result(
        argv=list(cmd),
        backend=backend,
        exit_code=rc if rc >= 0 else None,
        signal=-rc if rc < 0 else None,
        limit=limit,
        stdout=out if capture else None,
        stderr=err if capture else None,
        usage=Usage(
            wall_time_s=wall,
            cpu_user_s=ru.ru_utime if ru else 0.0,
            cpu_system_s=ru.ru_stime if ru else 0.0,
            max_rss_kb=ru.ru_maxrss if ru else 0,
            output_bytes=len(out) + len(err) if capture else 0,
        ),
        # What a backend cannot count is None, so every result has the same keys.
        counts={"mediated": None, "emulated": None, "direct": None},
        notes=notes,
        stopped_by=stopped_by,
    )


_DRAIN_AFTER_KILL_S = 5.0


def _collect(proc, stdin: bytes | None, timeout: float | None, output_limit: int | None,
             relay: SignalRelay | None = None):
    """Feeds stdin and reads stdout/stderr until both close, passing the
    signals ``relay`` catches on to the process.  Returns (out, err, None),
    or (out, err, reason) when the deadline, the output limit or the stop
    timeout is hit first."""
    import selectors

    deadline = None if timeout is None else time.monotonic() + timeout
    stop_deadline = None
    chunks: dict[int, list[bytes]] = {}
    total = 0
    sel = selectors.DefaultSelector()
    try:
        for f in (proc.stdout, proc.stderr):
            if f is not None and not f.closed:
                chunks[f.fileno()] = []
                sel.register(f, selectors.EVENT_READ)
        pending = memoryview(stdin or b"")
        if proc.stdin is not None and not proc.stdin.closed:
            if pending:
                os.set_blocking(proc.stdin.fileno(), False)
                sel.register(proc.stdin, selectors.EVENT_WRITE)
            else:
                proc.stdin.close()
        if relay is not None:
            sel.register(relay.fileno(), selectors.EVENT_READ)
        while len(sel.get_map()) > (relay is not None):
            now = time.monotonic()
            wait = None if deadline is None else deadline - now
            if wait is not None and wait <= 0:
                return _joined(proc, chunks) + (f"timed out: killed after {timeout:.3f} s",)
            if stop_deadline is not None:
                if stop_deadline <= now:
                    return _joined(proc, chunks) + (_stopped(relay),)
                wait = stop_deadline - now if wait is None else min(wait, stop_deadline - now)
            for key, _ in sel.select(wait):
                f = key.fileobj
                if relay is not None and f == relay.fileno():
                    stop_deadline = _relay_signals(proc, relay, stop_deadline)
                    continue
                if f is proc.stdin:
                    try:
                        pending = pending[os.write(f.fileno(), pending[:65536]) :]
                    except BrokenPipeError:
                        pending = pending[:0]
                    if not pending:
                        sel.unregister(f)
                        f.close()
                    continue
                data = os.read(f.fileno(), 65536)
                if not data:
                    sel.unregister(f)
                    continue
                chunks[f.fileno()].append(data)
                total += len(data)
                if output_limit is not None and total > output_limit:
                    return _joined(proc, chunks) + (
                        f"limits.output_bytes: killed after more than {output_limit} bytes of output",
                    )
        while relay is not None and proc.poll() is None:
            # Output is closed but the process lives on: keep relaying.
            now = time.monotonic()
            ends = [d for d in (deadline, stop_deadline) if d is not None]
            if ends and min(ends) <= now:
                why = _stopped(relay) if stop_deadline is not None and stop_deadline <= now \
                    else f"timed out: killed after {timeout:.3f} s"
                return _joined(proc, chunks) + (why,)
            pidfd = os.pidfd_open(proc.pid)
            try:
                ready = select.select([pidfd, relay.fileno()], [], [],
                                      min(ends) - now if ends else None)[0]
            finally:
                os.close(pidfd)
            if relay.fileno() in ready:
                stop_deadline = _relay_signals(proc, relay, stop_deadline)
        if deadline is None:
            proc.wait()
        else:
            try:
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                return _joined(proc, chunks) + (f"timed out: killed after {timeout:.3f} s",)
        return _joined(proc, chunks) + (None,)
    finally:
        sel.close()


def _relay_signals(proc, relay: SignalRelay, stop_deadline: float | None) -> float | None:
    """Passes what ``relay`` caught on to the process (it runs in a session
    of its own, so even a terminal's signals did not reach it); returns the
    stop deadline, set at the first stop signal."""
    for caught in relay.read():
        try:
            os.kill(proc.pid, caught.signo)
        except ProcessLookupError:
            pass
        if caught.stops and stop_deadline is None:
            stop_deadline = time.monotonic() + relay.stop_timeout
    return stop_deadline


def _stopped(relay: SignalRelay) -> str:
    from picoproc.result import signal_name

    return (f"stopped: still running {relay.stop_timeout:g} s after "
            f"{signal_name(relay.first_stop.signo)}; killed")


def _joined(proc, chunks) -> tuple[bytes, bytes]:
    def get(f):
        return b"".join(chunks.get(f.fileno(), [])) if f is not None and not f.closed else b""

    return get(proc.stdout), get(proc.stderr)


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def which(prog: str) -> str:
    import shutil

    path = shutil.which(prog)
    if path is None:
        raise BackendUnavailable(f"{prog} is not installed (not on PATH)")
    return path


def tool_version(cmd: Sequence[str]) -> str:
    try:
        out = subprocess.run(list(cmd), capture_output=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BackendUnavailable(f"{cmd[0]} does not run: {exc}") from None
    text = (out.stdout or out.stderr).decode(errors="replace").strip().splitlines()
    return text[0] if text else "(no version output)"


def probe_manifest():
    """A minimal manifest (the system directories, read-only) for availability probes."""
    from picoproc.manifest import Manifest, Mount

    dirs = [d for d in ("/usr", "/bin", "/lib", "/lib64", "/etc") if os.path.isdir(d)]
    return Manifest(mounts=tuple(Mount(d, d) for d in dirs))


def require_smoke_run(backend: Backend, failure: str, timeout: float) -> None:
    """Availability is shown, not assumed: runs /bin/true under ``backend``
    and raises BackendUnavailable("<failure>: <last stderr line>") if it fails."""
    probe = backend._run(probe_manifest(), ["/bin/true"], stdin=None, capture=True, timeout=timeout)
    if probe.returncode != 0:
        msg = (probe.stderr or b"").decode(errors="replace").strip().splitlines()
        raise BackendUnavailable(f"{failure}: {msg[-1] if msg else probe.status}")
