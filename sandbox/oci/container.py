"""The container process: the monitor of one container, and the pid the engine
sees.

``create`` forks this process and exits; it re-parents to the engine's shim
(conmon, containerd-shim: subreapers), which waits for it.  It holds
everything the container needs while it lives:

    engine shim
      └─ container process (this; the pid file's pid)   host netns: the pod's
           threads: the C event loop serving mediated calls, audit drainer
           └─ reaper (pid 1 inside)       ─┐ picoproc.spawn: own user, pid,
                └─ guest (the program)      │ mount, ipc, uts, net namespaces,
           └─ exec reaper ─ exec'd guest  ─┘ seccomp filter, no capabilities

Lifecycle, as runc's init: after ``create`` it has built the policy and
waits on its control socket; ``start`` makes it spawn the program; it then
serves the program's mediated calls until the program exits, and exits with
the program's status (re-raising the signal that ended it), so the shim
reads the container's exit status from it.  If this process dies, the
reaper's parent-death signal takes the whole picoprocess with it.

Its network namespace is the container's: it joins the pod's (the path in
``linux.namespaces``) or makes a new one with loopback up, before any
thread exists, so every socket it opens for the guest lives there.
"""

from __future__ import annotations

import array
import ctypes
import dataclasses
import errno
import fcntl
import json
import os
import resource
import select
import signal
import socket
import stat
import struct
import sys
import termios
import time

from picoproc.errors import PicoprocError
from picoproc.oci import state as state_mod
from picoproc.oci.spec import Plan, Process

CLONE_NEWNET = 0x40000000
# Signals the container process passes on to the program once it runs (the
# engine may signal the pid it knows); before that they end the container.
FORWARDED = (signal.SIGHUP, signal.SIGINT, signal.SIGQUIT, signal.SIGTERM, signal.SIGUSR1,
             signal.SIGUSR2, signal.SIGWINCH, signal.SIGCONT, signal.SIGALRM, signal.SIGTSTP,
             signal.SIGTTIN, signal.SIGTTOU, signal.SIGPWR)
_MAX_MESSAGE = 1 << 20
# How long an exec'd program's status is waited for once the container ended.
_EXEC_DRAIN_S = 5.0
# Denied calls written to the runtime log, at most (then only counted).
_LOGGED_DENIALS = 20


class ContainerError(PicoprocError):
    pass


_libc = None


def _libc_call(name: str, *args) -> int:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    rc = getattr(_libc, name)(*args)
    if rc < 0:
        e = ctypes.get_errno()
        raise OSError(e, f"{name}: {os.strerror(e)}")
    return rc


def enter_network(plan: Plan) -> None:
    """Puts this (still single-threaded) process into the pod's network, so
    that the picoprocess it spawns shares it (and so do the sockets it opens
    for grants).  A private network is the picoprocess's own, made by spawn."""
    if plan.network == "pod":
        fd = os.open(plan.network_path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            _libc_call("setns", fd, CLONE_NEWNET)
        except OSError as exc:
            raise ContainerError(f"joining the network namespace {plan.network_path}: {exc.strerror}") from None
        finally:
            os.close(fd)


def send_fds(sock: socket.socket, data: bytes, fds: list[int]) -> None:
    sock.sendmsg([data], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))] if fds else [])


def recv_fds(sock: socket.socket, maxfds: int = 4) -> tuple[bytes, list[int]]:
    fds = array.array("i")
    msg, anc, flags, _ = sock.recvmsg(_MAX_MESSAGE, socket.CMSG_LEN(maxfds * fds.itemsize))
    for level, kind, data in anc:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(data[: len(data) - (len(data) % fds.itemsize)])
    got = list(fds)
    for fd in got:
        os.set_inheritable(fd, False)
    if flags & socket.MSG_CTRUNC:
        for fd in got:
            os.close(fd)
        raise ContainerError("too many file descriptors in a control message")
    return msg, got


def send_console(console_socket: str, master: int) -> None:
    """Hands the pty master to the engine, as runc does (--console-socket)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(30)
        s.connect(console_socket)
        send_fds(s, b"/dev/ptmx", [master])


def make_console(process: Process) -> tuple[int, int]:
    master, slave = os.openpty()
    os.set_inheritable(master, False)
    os.set_inheritable(slave, False)
    if process.console_size and all(process.console_size):
        h, w = process.console_size
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", h, w, 0, 0))
    return master, slave


def home_of(rootfs: str, uid: int) -> str:
    """HOME for a process without one: its passwd entry in the image, else /
    (what runc does).  The image's etc/passwd is read without following any
    symbolic link: it is the image's, and a link in it must not make this
    root-run process read a host file."""
    data = b""
    fds = []
    try:
        fds.append(os.open(rootfs, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC))
        fds.append(os.open("etc", os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fds[-1]))
        fds.append(os.open("passwd", os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=fds[-1]))
        if stat.S_ISREG(os.fstat(fds[-1]).st_mode):
            data = os.read(fds[-1], 1 << 20)
    except OSError:
        pass
    finally:
        for fd in fds:
            os.close(fd)
    for line in data.decode("utf-8", "replace").splitlines():
        parts = line.split(":")
        if len(parts) >= 6 and parts[2] == str(uid) and parts[5].startswith("/"):
            return parts[5]
    return "/"


def process_env(process: Process, rootfs: str) -> dict[str, str]:
    env = dict(process.env)
    env.setdefault("HOME", home_of(rootfs, process.uid))
    return env


def resolve_program(plan: Plan, process: Process) -> str:
    """args[0] as a guest path, with runc's error when it cannot be found (the
    engines map that message to status 127)."""
    from picoproc.api import SandboxError, resolve_guest_program

    manifest = dataclasses.replace(plan.manifest, env=process.env, cwd=process.cwd)
    prog = process.args[0]
    try:
        return resolve_guest_program(manifest, prog)
    except SandboxError:
        raise ContainerError(f'exec: "{prog}": executable file not found in $PATH') from None


@dataclasses.dataclass
class _Run:
    """One spawned picoprocess (the program, or an exec'd one)."""

    spawned: object
    handle: int
    pidfd: int
    client: socket.socket | None = None  # exec: the connection waiting for its status


class ContainerProcess:
    def __init__(self, plan: Plan, container: state_mod.Container, cgroup, enforced, log) -> None:
        self.plan = plan
        self.container = container
        self.cgroup = cgroup
        self.enforced = enforced
        self.log = log
        self.scratches = []
        self.policy = None
        self.net = None
        self.monitor = None
        self.main: _Run | None = None
        self.execs: dict[int, _Run] = {}  # pidfd -> run
        self.clients: dict[int, socket.socket] = {}
        self.denials = 0
        self.spawns = 0
        self.audit_writer = None

    # -- preparing (before create returns) ------------------------------------

    def prepare(self) -> None:
        from picoproc.fspolicy import FsPolicy
        from picoproc.monitor import AuditJsonlWriter, Monitor
        from picoproc.scratch import make_scratch

        plan = self.plan
        m = plan.manifest
        for t in m.tmpfs:
            self.scratches.append((t.guest, make_scratch(t.size_bytes, uid=plan.host_uid,
                                                         gid=plan.host_gid, mode=0o1777)))
        self.policy = FsPolicy.from_manifest(m, {g: s.dir_fd for g, s in self.scratches})
        if m.net_connect or m.net_listen or m.unix_paths:
            from picoproc.netpolicy import build_net_policy

            self.net = build_net_policy(m)
        if plan.audit:
            self.audit_writer = AuditJsonlWriter(os.path.join(plan.bundle, "picoproc-audit.jsonl"))
        identity = (plan.host_uid, plan.host_gid, plan.host_groups) if os.geteuid() == 0 else None
        self.monitor = Monitor(identity=identity, audit_sink=self._audit)
        self.monitor.start()

    def _audit(self, records: list[dict]) -> None:
        if self.audit_writer is not None:
            self.audit_writer(records)
        for rec in records:
            if rec.get("decision") == "deny":
                self.denials += 1
                if self.denials <= _LOGGED_DENIALS:
                    what = rec.get("uri") or rec.get("path") or ""
                    self.log.warning(f"denied: {rec.get('call')} {what} ({rec.get('errno_name')})")

    # -- spawning -----------------------------------------------------------------

    def _spawn(self, process: Process, stdio: tuple[int, int, int], join_pidfd: int | None = None):
        from picoproc.libos import loader_argv, loader_path
        from picoproc.monitor import GUEST_SECCOMP_FLAGS
        from picoproc.spawn import SpawnConfig, kill_picoprocess, spawn_picoprocess, wait_picoprocess

        plan = self.plan
        program = resolve_program(plan, process)
        limits = dataclasses.replace(plan.manifest.limits,
                                     open_files=process.open_files or plan.manifest.limits.open_files)
        argv = loader_argv(program, list(process.args), cwd=process.cwd, uid=process.uid, gid=process.gid,
                           hostname=plan.manifest.hostname, umask=process.umask, limits=limits)
        cgroup = "none"
        if self.cgroup is not None:
            self.spawns += 1
            leaf = "guest" if join_pidfd is None else f"exec-{self.spawns}"
            cgroup = self.cgroup.guest_run_cgroup(self.enforced, leaf)
        config = SpawnConfig(
            argv=argv, env=process_env(process, plan.rootfs), stdio=stdio, image_path=str(loader_path()),
            mode="libos", keep_image_fd=True, seccomp_flags=GUEST_SECCOMP_FLAGS,
            hostname=plan.manifest.hostname, limits=limits, cgroup=cgroup,
            identity=(plan.host_uid, plan.host_gid) if os.geteuid() == 0 else None,
            rlimits={res: (soft, hard) for res, soft, hard in process.rlimits},
            # An exec'd program has no socket helper of its own: a reaper that
            # has entered the picoprocess's pid namespace by setns cannot
            # start the helper's thread (clone(CLONE_THREAD) is EINVAL then).
            guestnet=join_pidfd is None, share_network=plan.network in ("pod", "host"),
            **({"join_pidfd": join_pidfd} if join_pidfd is not None else {}),
        )
        spawned = spawn_picoprocess(config)
        try:
            handle = self.monitor.add_guest(spawned.listener_fd, spawned.guest_pid or spawned.pid,
                                            self.policy, self.net, spawned.guestnet_fd)
        except BaseException:
            kill_picoprocess(spawned)
            wait_picoprocess(spawned)
            raise
        finally:
            os.close(spawned.listener_fd)
            if spawned.guestnet_fd >= 0:
                os.close(spawned.guestnet_fd)
        return _Run(spawned, handle, os.pidfd_open(spawned.pid))

    def start(self, stdio: tuple[int, int, int]) -> None:
        self.main = self._spawn(self.plan.process, stdio)
        guest = self.main.spawned.guest_pid
        state_mod.write_json_atomic(self.container.path(state_mod.STARTED), {
            "guest_pid": guest, "guest_start": state_mod.process_start_time(guest),
            "reaper_pid": self.main.spawned.pid, "started": state_mod.now_rfc3339()})

    def _finish(self, run: _Run):
        from picoproc.spawn import wait_picoprocess

        result = wait_picoprocess(run.spawned)
        os.close(run.pidfd)
        try:
            self.monitor.remove_guest(run.handle)
        except OSError:
            pass
        return result

    # -- the control socket -------------------------------------------------------

    def _handle_client(self, conn: socket.socket) -> bool:
        """One request; False when the connection is finished with."""
        try:
            data, fds = recv_fds(conn)
        except (OSError, ContainerError):
            return False
        if not data:
            for fd in fds:
                os.close(fd)
            return False
        try:
            req = json.loads(data)
            op = req.get("op")
        except (ValueError, AttributeError):
            op = None
            req = {}
        try:
            if op == "start":
                if self.main is not None:
                    raise ContainerError("cannot start an already running container")
                if len(fds) == 3:
                    stdio = tuple(fds)
                else:
                    stdio = self.stdio
                self.start(stdio)
                self.poller.register(self.main.pidfd, select.POLLIN)
                conn.send(json.dumps({"ok": True}).encode())
                return False
            if op == "exec":
                return self._exec(conn, req, fds)
            if op == "signal":
                for run in self.execs.values():
                    if run.client is conn:
                        os.kill(run.spawned.guest_pid, int(req["signal"]))
                return True
            raise ContainerError(f"unknown request {op!r}")
        except Exception as exc:  # noqa: BLE001 - the client gets the reason
            msg = str(exc) if isinstance(exc, ContainerError) else f"{type(exc).__name__}: {exc}"
            try:
                conn.send(json.dumps({"error": msg}).encode())
            except OSError:
                pass
            return False
        finally:
            for fd in fds:
                try:
                    os.close(fd)
                except OSError:
                    pass

    def _exec(self, conn: socket.socket, req: dict, fds: list[int]) -> bool:
        from picoproc.oci.spec import SpecError, process_from_spec

        if self.main is None:
            raise ContainerError("cannot exec in a container that has not started")
        if len(fds) != 3:
            raise ContainerError("exec needs stdin, stdout and stderr")
        try:
            process, notes = process_from_spec(req.get("process"), "process")
        except SpecError as exc:
            raise ContainerError(str(exc)) from None
        for note in notes:
            self.log.warning(note)
        run = self._spawn(process, tuple(fds), join_pidfd=self.main.pidfd)
        run.client = conn
        self.execs[run.pidfd] = run
        self.poller.register(run.pidfd, select.POLLIN)
        conn.send(json.dumps({"ok": True, "pid": run.spawned.guest_pid}).encode())
        return True

    # -- the main loop ------------------------------------------------------------

    def serve(self, listener: socket.socket, wakeup: socket.socket):
        """Until the program has exited; returns its RawResult."""
        self.poller = poller = select.poll()
        poller.register(listener, select.POLLIN)
        poller.register(wakeup, select.POLLIN)
        result = None
        while result is None:
            for fd, _ in poller.poll():
                if fd == listener.fileno():
                    try:
                        conn, _ = listener.accept()
                    except OSError:
                        continue
                    if not _peer_is_us(conn):
                        conn.close()
                        continue
                    self.clients[conn.fileno()] = conn
                    poller.register(conn, select.POLLIN)
                elif fd == wakeup.fileno():
                    for sig in wakeup.recv(64):
                        self._on_signal(sig)
                elif self.main is not None and fd == self.main.pidfd:
                    poller.unregister(fd)
                    result = self._finish(self.main)
                    break
                elif fd in self.execs:
                    poller.unregister(fd)
                    self._exec_done(self.execs.pop(fd))
                elif fd in self.clients:
                    conn = self.clients[fd]
                    if not self._handle_client(conn):
                        poller.unregister(fd)
                        self._drop_client(conn)
        # The program is gone and its pid namespace with it: exec'd programs
        # die too; give their statuses to whoever waits for them.
        deadline = time.monotonic() + _EXEC_DRAIN_S
        for run in list(self.execs.values()):
            left = max(0.0, deadline - time.monotonic())
            if select.select([run.pidfd], [], [], left)[0]:
                self._exec_done(self.execs.pop(run.pidfd))
        return result

    def _drop_client(self, conn: socket.socket) -> None:
        self.clients.pop(conn.fileno(), None)
        for run in self.execs.values():
            if run.client is conn:
                # Nobody waits for this exec'd program any more: end it.
                run.client = None
                try:
                    os.kill(run.spawned.guest_pid, signal.SIGKILL)
                    os.kill(run.spawned.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        conn.close()

    def _exec_done(self, run: _Run) -> None:
        result = self._finish(run)
        if run.client is not None:
            try:
                run.client.send(json.dumps({"exit_code": result.exit_code, "signal": result.signal}).encode())
            except OSError:
                pass

    def _on_signal(self, sig: int) -> None:
        if self.main is None:
            raise _Terminated(sig)
        try:
            os.kill(self.main.spawned.guest_pid, sig)
        except ProcessLookupError:
            pass

    def close(self) -> None:
        for run in list(self.execs.values()):
            try:
                os.kill(run.spawned.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self.monitor is not None:
            try:
                self.monitor.close()
            except OSError:
                pass
        if self.policy is not None:
            self.policy.close()
        if self.net is not None:
            self.net.close()
        for _, s in self.scratches:
            s.close()
        if self.audit_writer is not None:
            self.audit_writer.close()


class _Terminated(PicoprocError):
    def __init__(self, sig: int) -> None:
        super().__init__(sig)
        self.sig = sig


def _peer_is_us(conn: socket.socket) -> bool:
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _, uid, _ = struct.unpack("3i", creds)
    return uid == os.geteuid() or uid == 0


def die_like(exit_code: int | None, sig: int | None) -> None:
    """Ends this process the way the program ended, so the shim's wait sees
    the same status: the exit code, or death by the same signal."""
    sys.stdout.flush()
    sys.stderr.flush()
    if sig is not None:
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        try:
            if sig not in (signal.SIGKILL, signal.SIGSTOP):  # those have no handler to reset
                signal.pthread_sigmask(signal.SIG_UNBLOCK, [sig])
                signal.signal(sig, signal.SIG_DFL)
            os.kill(os.getpid(), sig if sig != signal.SIGSTOP else signal.SIGKILL)
            time.sleep(1)  # the signal is delivered before this returns; a stopping one ends below
        except (OSError, ValueError):
            pass
        os._exit(128 + sig)
    os._exit(exit_code if exit_code is not None else 255)


def main(plan: Plan, container: state_mod.Container, cgroup, enforced, log, sync_fd: int,
         console_socket: str | None) -> None:
    """Runs in the child of ``create``; never returns."""
    cp = None
    try:
        os.setsid()
        if plan.process.terminal:
            master, slave = make_console(plan.process)
            send_console(console_socket, master)
            os.close(master)
            stdio = (slave, slave, slave)
        else:
            stdio = (0, 1, 2)
        enter_network(plan)
        if cgroup is not None:
            cgroup.join(os.getpid())
        wake_r, wake_w = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        wake_w.setblocking(False)
        for sig in FORWARDED:
            signal.signal(sig, lambda *_: None)
        signal.set_wakeup_fd(wake_w.fileno())
        cp = ContainerProcess(plan, container, cgroup, enforced, log)
        cp.stdio = stdio
        resolve_program(plan, plan.process)
        cp.prepare()
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        old = os.umask(0o177)
        try:
            with state_mod.short_path(container.path(state_mod.CONTROL)) as path:
                listener.bind(path)
        finally:
            os.umask(old)
        listener.listen(16)
        os.write(sync_fd, json.dumps({"ok": True}).encode())
        os.close(sync_fd)
        sync_fd = -1
        try:
            result = cp.serve(listener, wake_r)
        except _Terminated as t:
            cp.close()
            die_like(None, t.sig)
        cp.close()
        if cp.denials > _LOGGED_DENIALS:
            log.warning(f"{cp.denials} mediated calls were denied in all")
        die_like(result.exit_code, result.signal)
    except BaseException as exc:  # noqa: BLE001 - the one place this process reports
        msg = str(exc) if isinstance(exc, ContainerError) else f"{type(exc).__name__}: {exc}"
        if sync_fd >= 0:
            try:
                os.write(sync_fd, json.dumps({"error": msg}).encode())
            except OSError:
                pass
        else:
            log.error(msg)
        if cp is not None:
            try:
                cp.close()
            except Exception:  # noqa: BLE001
                pass
        os._exit(255)
