"""``picoproc-oci``: a runc-compatible command line, so that container engines
(podman ``--runtime``, containerd's runc shim with ``BinaryName``, Docker's
``runtimes``, Kubernetes through a RuntimeClass) run picoprocesses.

The subset engines call, with runc's flags, outputs, error texts and exit
status (1 on any error)::

    picoproc-oci [--root DIR] [--log FILE] [--log-format text|json] [--debug]
                 [--systemd-cgroup] [--rootless auto|true|false] COMMAND ...
      create  [--bundle B] [--pid-file P] [--console-socket S] ID
      start   ID
      state   ID
      kill    [--all] ID [SIGNAL]
      delete  [--force] ID
      run     [--bundle B] [--pid-file P] [--console-socket S] [--detach] [--keep] ID
      exec    [--process F | ARGS...] [--detach] [--pid-file P] [--console-socket S]
              [--tty] [--cwd D] [--env K=V] [--user UID[:GID]] ID [ARGS...]
      ps      [--format table|json] ID [PS_ARGS...]
      list    [--format table|json] [--quiet]
      features
      --version

What each bundle field becomes is in ``picoproc.oci.spec`` and docs/OCI.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import time

from picoproc.oci import state as state_mod
from picoproc.oci.state import Container, StateError

VERSION = "0.1.0"
SPEC_VERSION = "1.2.1"
# How long a command waits for the container process to answer.
_REPLY_TIMEOUT_S = 60.0
_KILL_WAIT_S = 10.0
_HOOK_TIMEOUT_S = 30.0


class Log:
    """runc's logging: to --log (appended) or stderr, as text or JSON lines.

    Errors always reach stderr too (engines show the runtime's stderr when a
    command fails).  Warnings without --log go to the container's own log
    (``ROOT/ID/log``, see :meth:`keep_warnings_in`), not to stderr: engines
    hand the runtime the container's own stdio, and a warning there would
    become part of the program's output."""

    def __init__(self, path: str | None, fmt: str, debug: bool) -> None:
        self.fmt = fmt
        self.debug_on = debug
        self.to_stderr = path is None
        self._fd = 2 if path is None else os.open(
            path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)
        self._warn_fd = self._fd

    def keep_warnings_in(self, path: str) -> None:
        if self.to_stderr:
            self._warn_fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)

    def _emit(self, level: str, msg: str) -> None:
        fd = self._fd if level == "error" else self._warn_fd
        now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="microseconds")
        if self.fmt == "json":
            line = json.dumps({"level": level, "msg": msg, "time": now.replace("+00:00", "Z")})
        else:
            line = f'time="{now}" level={level} msg={json.dumps(msg)}'
        try:
            os.write(fd, (line + "\n").encode("utf-8", "replace"))
        except OSError:
            pass

    def debug(self, msg: str) -> None:
        if self.debug_on:
            self._emit("debug", msg)

    def info(self, msg: str) -> None:
        self._emit("info", msg)

    def warning(self, msg: str) -> None:
        self._emit("warning", msg)

    def error(self, msg: str) -> None:
        self._emit("error", msg)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # type: ignore[override]
        raise StateError(f"{self.prog}: {message}")


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="picoproc-oci", description="runc-compatible OCI runtime running picoprocesses")
    p.add_argument("--root", default=state_mod.DEFAULT_ROOT)
    p.add_argument("--log", default=None)
    p.add_argument("--log-format", default="text", choices=("text", "json"))
    p.add_argument("--debug", action="store_true")
    p.add_argument("--systemd-cgroup", action="store_true")
    p.add_argument("--rootless", default="auto")
    p.add_argument("--criu", default=None, help=argparse.SUPPRESS)
    p.add_argument("--version", "-v", action="store_true")
    sub = p.add_subparsers(dest="command")

    def bundle_flags(sp):
        sp.add_argument("--bundle", "-b", default=".")
        sp.add_argument("--console-socket", default=None)
        sp.add_argument("--pidfd-socket", default=None)
        sp.add_argument("--pid-file", default=None)
        sp.add_argument("--no-pivot", action="store_true")
        sp.add_argument("--no-new-keyring", action="store_true")
        sp.add_argument("--preserve-fds", type=int, default=0)

    sp = sub.add_parser("create")
    bundle_flags(sp)
    sp.add_argument("id")
    sp = sub.add_parser("run")
    bundle_flags(sp)
    sp.add_argument("--detach", "-d", action="store_true")
    sp.add_argument("--keep", action="store_true")
    sp.add_argument("--no-subreaper", action="store_true")
    sp.add_argument("id")
    for name in ("start", "state"):
        sub.add_parser(name).add_argument("id")
    sp = sub.add_parser("kill")
    sp.add_argument("--all", "-a", action="store_true")
    sp.add_argument("id")
    sp.add_argument("signal", nargs="?", default="SIGTERM")
    sp = sub.add_parser("delete")
    sp.add_argument("--force", "-f", action="store_true")
    sp.add_argument("id")
    sp = sub.add_parser("exec")
    sp.add_argument("--process", "-p", default=None)
    sp.add_argument("--detach", "-d", action="store_true")
    sp.add_argument("--pid-file", default=None)
    sp.add_argument("--console-socket", default=None)
    sp.add_argument("--pidfd-socket", default=None)
    sp.add_argument("--tty", "-t", action="store_true")
    sp.add_argument("--cwd", default=None)
    sp.add_argument("--env", "-e", action="append", default=[])
    sp.add_argument("--user", "-u", default=None)
    sp.add_argument("--additional-gids", "-g", action="append", default=[])
    sp.add_argument("--no-new-privs", action="store_true")
    sp.add_argument("--cap", "-c", action="append", default=[])
    sp.add_argument("--process-label", default=None)
    sp.add_argument("--apparmor", default=None)
    sp.add_argument("--preserve-fds", type=int, default=0)
    sp.add_argument("--cgroup", action="append", default=[])
    sp.add_argument("--ignore-paused", action="store_true")
    sp.add_argument("id")
    sp.add_argument("args", nargs=argparse.REMAINDER)
    sp = sub.add_parser("ps")
    sp.add_argument("--format", "-f", default="table", choices=("table", "json"))
    sp.add_argument("id")
    sp.add_argument("ps_args", nargs=argparse.REMAINDER)
    sp = sub.add_parser("list")
    sp.add_argument("--format", "-f", default="table", choices=("table", "json"))
    sp.add_argument("--quiet", "-q", action="store_true")
    sub.add_parser("features")
    for name in ("pause", "resume", "update", "checkpoint", "restore", "events", "spec"):
        sp = sub.add_parser(name)
        sp.add_argument("rest", nargs=argparse.REMAINDER)
    return p


# -- helpers ---------------------------------------------------------------------


def _request(cont: Container, req: dict, fds: list[int] | None = None,
             timeout: float = _REPLY_TIMEOUT_S) -> tuple[dict, socket.socket]:
    from picoproc.oci.container import send_fds

    sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    sock.settimeout(timeout)
    try:
        with state_mod.short_path(cont.path(state_mod.CONTROL)) as path:
            sock.connect(path)
        send_fds(sock, json.dumps(req).encode(), fds or [])
        data = sock.recv(1 << 20)
    except OSError as exc:
        sock.close()
        raise StateError(f"container {cont.id}: no answer from its container process ({exc})") from None
    if not data:
        sock.close()
        raise StateError(f"container {cont.id}: its container process closed the request")
    reply = json.loads(data)
    if "error" in reply:
        sock.close()
        raise StateError(reply["error"])
    return reply, sock


def _parse_signal(text: str) -> int:
    if text.isdigit():
        return int(text)
    name = text.upper()
    if not name.startswith("SIG"):
        name = "SIG" + name
    try:
        return int(signal.Signals[name])
    except KeyError:
        raise StateError(f'unknown signal "{text}"') from None


def _wait_gone(pid: int, start: int | None, timeout: float) -> bool:
    if not state_mod.alive(pid, start):
        return True
    try:
        pidfd = os.pidfd_open(pid)
    except OSError:
        return True
    try:
        deadline = time.monotonic() + timeout
        while state_mod.alive(pid, start):
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            select.select([pidfd], [], [], min(left, 0.5))
        return True
    finally:
        os.close(pidfd)


def _run_hooks(state: dict, name: str, log: Log, oci_state: dict, *, fatal: bool) -> None:
    for hook in state.get("hooks", {}).get(name, []) or []:
        argv = hook.get("args") or [hook["path"]]
        env = {}
        for item in hook.get("env") or []:
            k, _, v = item.partition("=")
            env[k] = v
        try:
            proc = subprocess.run(argv, executable=hook["path"], input=json.dumps(oci_state).encode(),
                                  env=env, capture_output=True, timeout=hook.get("timeout") or _HOOK_TIMEOUT_S,
                                  check=False)
            ok, why = proc.returncode == 0, f"exit status {proc.returncode}: {proc.stderr.decode(errors='replace').strip()}"
        except (OSError, subprocess.TimeoutExpired) as exc:
            ok, why = False, str(exc)
        if not ok:
            msg = f"{name} hook {hook['path']} failed: {why}"
            if fatal:
                raise StateError(msg)
            log.warning(msg)


# -- commands ---------------------------------------------------------------------


def _create(args, log: Log, *, foreground: bool = False) -> tuple[Container, int]:
    """create; returns the container and the container process's pid."""
    from picoproc.oci import container as container_mod
    from picoproc.oci.cgroup import CgroupError, ContainerCgroup
    from picoproc.oci.spec import SpecError, load_bundle

    cont = Container(args.root, args.id)
    if os.path.exists(cont.dir):
        raise StateError("container with given ID already exists")
    try:
        plan = load_bundle(args.bundle)
    except SpecError as exc:
        raise StateError(str(exc)) from None
    if plan.process.terminal and not args.console_socket and not foreground:
        raise StateError("cannot allocate tty if runc will detach without setting console socket")
    if not plan.process.terminal and args.console_socket:
        raise StateError("cannot use console socket if runc will not detach or allocate tty")
    os.makedirs(args.root, 0o700, exist_ok=True)
    try:
        os.mkdir(cont.dir, 0o711)
    except FileExistsError:
        raise StateError("container with given ID already exists") from None
    log.keep_warnings_in(cont.path(state_mod.LOG))
    for note in plan.notes:
        log.warning(note)
    cgroup = None
    enforced: dict[str, str] = {}
    pid = -1
    try:
        if os.geteuid() == 0:
            try:
                cgroup = ContainerCgroup.create(plan.cgroups_path, cont.id, systemd=args.systemd_cgroup)
                enforced = cgroup.apply(plan.resources)
            except (CgroupError, OSError) as exc:
                raise StateError(str(exc)) from None
        else:
            log.warning("linux.cgroupsPath: an unprivileged runtime makes no cgroup; "
                        "limits fall back to rlimits")
        base = {
            "ociVersion": SPEC_VERSION, "id": cont.id, "bundle": plan.bundle, "rootfs": plan.rootfs,
            "created": state_mod.now_rfc3339(), "annotations": plan.annotations, "pid": 0,
            "cgroup": cgroup.to_json() if cgroup else None, "hooks": plan.hooks,
            "process": _process_doc(plan.bundle), "notes": list(plan.notes),
        }
        state_mod.write_json_atomic(cont.path(state_mod.STATE), base)
        r, w = os.pipe2(os.O_CLOEXEC)
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            os.close(r)
            container_mod.main(plan, cont, cgroup, enforced, log, w,
                               None if foreground and not args.console_socket else args.console_socket)
        os.close(w)
        reply = _read_sync(r, pid)
        if "error" in reply:
            raise StateError(reply["error"])
        base["pid"] = pid
        base["pid_start"] = state_mod.process_start_time(pid)
        state_mod.write_json_atomic(cont.path(state_mod.STATE), base)
        oci_state = cont.oci_state()
        _run_hooks(base, "prestart", log, oci_state, fatal=True)
        _run_hooks(base, "createRuntime", log, oci_state, fatal=True)
        if args.pid_file:
            state_mod.write_pid_file(args.pid_file, pid)
        return cont, pid
    except BaseException:
        if pid > 0:
            try:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            except OSError:
                pass
        if cgroup is not None:
            try:
                cgroup.remove()
            except OSError as exc:
                log.warning(str(exc))
        shutil.rmtree(cont.dir, ignore_errors=True)
        raise


def _process_doc(bundle: str) -> dict:
    with open(os.path.join(bundle, "config.json"), "rb") as f:
        return json.loads(f.read()).get("process") or {}


def _read_sync(fd: int, pid: int) -> dict:
    """The container process's first word: ready, or why not."""
    pidfd = os.pidfd_open(pid)
    data = b""
    try:
        deadline = time.monotonic() + _REPLY_TIMEOUT_S
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return {"error": "the container process did not get ready in time"}
            ready, _, _ = select.select([fd], [], [], left)
            if not ready:
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            data += chunk
    finally:
        os.close(pidfd)
        os.close(fd)
    if not data:
        return {"error": "the container process ended before it was ready"}
    return json.loads(data)


def cmd_create(args, log: Log) -> int:
    _create(args, log)
    return 0


def cmd_start(args, log: Log) -> int:
    cont = Container(args.root, args.id)
    state = cont.load()
    status = cont.status(state)
    if status == "stopped":
        raise StateError("cannot start a container that has stopped")
    if status == "running":
        raise StateError("cannot start an already running container")
    if status != "created":
        raise StateError(f"cannot start a container in the {status} state")
    _, sock = _request(cont, {"op": "start"})
    sock.close()
    _run_hooks(state, "poststart", log, cont.oci_state(), fatal=False)
    return 0


def cmd_state(args, log: Log) -> int:
    cont = Container(args.root, args.id)
    doc = cont.oci_state()
    notes = cont.load().get("notes")
    if notes:
        doc["org.picoproc.notes"] = notes
    sys.stdout.write(json.dumps(doc, indent=2))
    sys.stdout.flush()
    return 0


def _guest_pids(cont: Container, state: dict) -> list[int]:
    from picoproc.oci.cgroup import ContainerCgroup

    cg = ContainerCgroup.from_json(state.get("cgroup"))
    started = cont.started() or {}
    pids = cg.guest_pids() if cg is not None else []
    guest = started.get("guest_pid")
    if guest and state_mod.alive(guest, started.get("guest_start")) and guest not in pids:
        pids.append(guest)
    return pids


def cmd_kill(args, log: Log) -> int:
    cont = Container(args.root, args.id)
    state = cont.load()
    sig = _parse_signal(args.signal)
    status = cont.status(state)
    if status in ("stopped", "creating"):
        if args.all:
            return 0
        raise StateError("container not running")
    if status == "created":
        # Not started: the container process itself ends, as runc's init would.
        os.kill(state["pid"], sig)
        return 0
    if args.all:
        for pid in _guest_pids(cont, state):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        return 0
    started = cont.started() or {}
    guest = started.get("guest_pid", 0)
    if not state_mod.alive(guest, started.get("guest_start")):
        raise StateError("container not running")
    pidfd = os.pidfd_open(guest)
    try:
        if state_mod.process_start_time(guest) != started.get("guest_start"):
            raise StateError("container not running")
        signal.pidfd_send_signal(pidfd, sig)
    finally:
        os.close(pidfd)
    return 0


def _destroy(cont: Container, state: dict, log: Log) -> None:
    from picoproc.oci.cgroup import ContainerCgroup

    cg = ContainerCgroup.from_json(state.get("cgroup"))
    if cg is not None:
        try:
            cg.remove()
            cg.remove_default_parents(cont.id)
        except OSError as exc:
            log.warning(str(exc))
    _run_hooks(state, "poststop", log, dict(cont.oci_state(), status="stopped"), fatal=False)
    shutil.rmtree(cont.dir, ignore_errors=True)


def _kill_and_wait(cont: Container, state: dict) -> None:
    pid, start = state.get("pid", 0), state.get("pid_start")
    if pid and state_mod.alive(pid, start):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    if pid and not _wait_gone(pid, start, _KILL_WAIT_S):
        raise StateError("container init still running")
    for p in _guest_pids(cont, state):
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass


def cmd_delete(args, log: Log) -> int:
    cont = Container(args.root, args.id)
    try:
        state = cont.load()
    except StateError:
        if os.path.isdir(cont.dir):
            shutil.rmtree(cont.dir, ignore_errors=True)
        if args.force:
            return 0
        raise
    status = cont.status(state)
    if status == "running" and not args.force:
        raise StateError(f"cannot delete container {cont.id} that is not stopped: {status}")
    _kill_and_wait(cont, state)
    _destroy(cont, state, log)
    return 0


def cmd_run(args, log: Log) -> int:
    cont, pid = _create(args, log, foreground=not args.detach)
    try:
        _, sock = _request(cont, {"op": "start"})
        sock.close()
    except BaseException:
        _kill_and_wait(cont, cont.load())
        _destroy(cont, cont.load(), log)
        raise
    _run_hooks(cont.load(), "poststart", log, cont.oci_state(), fatal=False)
    if args.detach:
        return 0
    forward = lambda sig, _frame: _signal_quietly(pid, sig)  # noqa: E731
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1,
                signal.SIGUSR2, signal.SIGWINCH):
        signal.signal(sig, forward)
    while True:
        try:
            _, status = os.waitpid(pid, 0)
            break
        except InterruptedError:
            continue
    if not args.keep:
        _destroy(cont, cont.load(), log)
    return os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)


def _signal_quietly(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _exec_process(args, state: dict) -> dict:
    if args.process:
        try:
            with open(args.process, "rb") as f:
                return json.loads(f.read())
        except (OSError, ValueError) as exc:
            raise StateError(f"--process {args.process}: {exc}") from None
    if not args.args:
        raise StateError("exec: args must not be empty")
    base = dict(state.get("process") or {})
    proc = {"args": list(args.args), "env": list(base.get("env") or []), "cwd": args.cwd or base.get("cwd", "/"),
            "user": dict(base.get("user") or {}), "terminal": args.tty, "rlimits": base.get("rlimits") or []}
    for item in args.env:
        proc["env"].append(item)
    if args.user:
        uid, _, gid = args.user.partition(":")
        proc["user"] = {"uid": int(uid), "gid": int(gid or 0)}
    if args.additional_gids:
        proc["user"]["additionalGids"] = [int(g) for g in args.additional_gids]
    return proc


def cmd_exec(args, log: Log) -> int:
    from picoproc.oci.container import die_like, make_console, send_console
    from picoproc.oci.spec import SpecError, process_from_spec

    cont = Container(args.root, args.id)
    state = cont.load()
    status = cont.status(state)
    if status != "running":
        raise StateError(f"cannot exec in a {status} container")
    proc = _exec_process(args, state)
    try:
        process, _ = process_from_spec(proc)
    except SpecError as exc:
        raise StateError(str(exc)) from None
    if process.terminal and args.detach and not args.console_socket:
        raise StateError("cannot allocate tty if runc will detach without setting console socket")
    stdio = [0, 1, 2]
    if process.terminal and args.console_socket:
        master, slave = make_console(process)
        send_console(args.console_socket, master)
        os.close(master)
        stdio = [slave, slave, slave]
    req = {"op": "exec", "process": proc}
    if not args.detach:
        # In the foreground, runc exits 128+N for a program killed by signal N.
        _, sock = _request(cont, req, stdio)
        return _exec_wait(sock, lambda code, sig: die_like(128 + sig if sig else code, None))
    r, w = os.pipe2(os.O_CLOEXEC)
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        try:
            os.setsid()
            _, sock = _request(cont, req, stdio)
            os.write(w, b"ok")
            os.close(w)
        except BaseException as exc:  # noqa: BLE001 - reported by the parent
            os.write(w, str(exc).encode() or b"exec failed")
            os._exit(255)
        for fd in (0, 1, 2):
            try:
                os.close(fd)
            except OSError:
                pass
        _exec_wait(sock, die_like)
    os.close(w)
    answer = b""
    while chunk := os.read(r, 65536):
        answer += chunk
    os.close(r)
    if answer != b"ok":
        os.waitpid(pid, 0)
        raise StateError(answer.decode(errors="replace"))
    if args.pid_file:
        state_mod.write_pid_file(args.pid_file, pid)
    return 0


def _exec_wait(sock: socket.socket, die_like) -> int:
    """Forwards signals to the exec'd program and ends with its status."""
    rfd, wfd = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1,
                signal.SIGUSR2, signal.SIGWINCH, signal.SIGCONT, signal.SIGTSTP):
        signal.signal(sig, lambda *_: None)
    signal.set_wakeup_fd(wfd)
    sock.settimeout(None)
    while True:
        ready, _, _ = select.select([sock, rfd], [], [])
        if rfd in ready:
            for sig in os.read(rfd, 64):
                try:
                    sock.send(json.dumps({"op": "signal", "signal": sig}).encode())
                except OSError:
                    pass
        if sock in ready:
            data = sock.recv(1 << 16)
            if not data:
                die_like(255, None)
            msg = json.loads(data)
            if "exit_code" in msg or "signal" in msg:
                die_like(msg.get("exit_code"), msg.get("signal"))


def cmd_ps(args, log: Log) -> int:
    cont = Container(args.root, args.id)
    state = cont.load()
    pids = _guest_pids(cont, state) if cont.status(state) == "running" else []
    if args.format == "json":
        sys.stdout.write(json.dumps(sorted(pids)) + "\n")
        return 0
    ps_args = [a for a in args.ps_args if a != "--"] or ["-ef"]
    out = subprocess.run(["ps", *ps_args], capture_output=True, text=True, check=False).stdout.splitlines()
    if not out:
        return 0
    header = out[0]
    try:
        col = header.split().index("PID")
    except ValueError:
        raise StateError("couldn't find PID field in ps output") from None
    print(header)
    wanted = set(pids)
    for line in out[1:]:
        fields = line.split()
        if len(fields) > col and fields[col].isdigit() and int(fields[col]) in wanted:
            print(line)
    return 0


def cmd_list(args, log: Log) -> int:
    rows = []
    try:
        names = sorted(os.listdir(args.root))
    except FileNotFoundError:
        names = []
    for name in names:
        try:
            rows.append(Container(args.root, name).oci_state())
        except StateError:
            continue
    if args.quiet:
        for r in rows:
            print(r["id"])
    elif args.format == "json":
        print(json.dumps(rows))
    else:
        print(f"{'ID':<20} {'PID':<8} {'STATUS':<10} {'BUNDLE':<40} CREATED")
        for r in rows:
            print(f"{r['id']:<20} {r['pid']:<8} {r['status']:<10} {r['bundle']:<40} {r['created']}")
    return 0


def features() -> dict:
    from picoproc.oci.spec import ANNOTATIONS, OCI_VERSION_MAX, OCI_VERSION_MIN

    return {
        "ociVersionMin": OCI_VERSION_MIN,
        "ociVersionMax": OCI_VERSION_MAX,
        "hooks": ["prestart", "createRuntime", "poststart", "poststop"],
        "mountOptions": ["bind", "rbind", "ro", "rw", "noexec", "exec", "nosuid", "nodev", "size"],
        "linux": {
            "namespaces": ["cgroup", "ipc", "mount", "network", "pid", "user", "uts"],
            "capabilities": [],
            "cgroup": {"v1": True, "v2": True, "systemd": False, "systemdUser": False, "rdma": False},
            "seccomp": {"enabled": False},
            "apparmor": {"enabled": False},
            "selinux": {"enabled": False},
            "intelRdt": {"enabled": False},
            "mountExtensions": {"idmap": {"enabled": False}},
        },
        "annotations": {
            "org.picoproc.runtime": "picoproc-oci",
            **{k: v for k, v in sorted(ANNOTATIONS.items())},
        },
    }


def cmd_features(args, log: Log) -> int:
    print(json.dumps(features(), indent=2))
    return 0


def cmd_unsupported(args, log: Log) -> int:
    raise StateError(f"{args.command}: not supported by picoproc-oci")


COMMANDS = {
    "create": cmd_create, "start": cmd_start, "state": cmd_state, "kill": cmd_kill,
    "delete": cmd_delete, "run": cmd_run, "exec": cmd_exec, "ps": cmd_ps, "list": cmd_list,
    "features": cmd_features,
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    log = Log(None, "text", False)
    try:
        args = _parser().parse_args(argv)
        log = Log(args.log, args.log_format, args.debug)
        if args.version:
            print(f"picoproc-oci version {VERSION}\nspec: {SPEC_VERSION}")
            return 0
        if not args.command:
            raise StateError("picoproc-oci: a command is required (create, start, state, kill, delete, ...)")
        if os.path.abspath(args.root) == "/":
            raise StateError("Option --root argument should not be set to /")
        args.root = os.path.abspath(args.root)
        if getattr(args, "pid_file", None):
            args.pid_file = os.path.abspath(args.pid_file)
        handler = COMMANDS.get(args.command, cmd_unsupported)
        return handler(args, log)
    except StateError as exc:
        log.error(str(exc))
        if not log.to_stderr:
            print(str(exc), file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
