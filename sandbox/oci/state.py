"""Where a container's state lives between runtime invocations, and how its
status is told.

``ROOT/ID/`` (``--root``, default /run/picoproc-oci, as runc keeps
/run/runc):

* ``state.json``  -- written once by ``create``: bundle, creation time,
  annotations, the container process's pid and start time, its cgroup;
* ``started.json`` -- written by the container process when the program
  runs: the guest's host pid and start time (``kill`` signals it directly);
* ``ctl.sock``    -- the container process's control socket (``start``,
  ``exec``), root-only;
* ``log``         -- warnings (what was not honoured, denied calls) when the
  engine passed no ``--log``.

The status is never stored: it is read from the processes themselves, as
runc does.  The container process alive -> ``created`` or, once
``started.json`` exists, ``running``; gone (or a zombie) -> ``stopped``.  A
pid is trusted only with the start time recorded for it, so a recycled pid
is never mistaken for the container.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import re

from picoproc.errors import PicoprocError

DEFAULT_ROOT = "/run/picoproc-oci"
STATE = "state.json"
STARTED = "started.json"
CONTROL = "ctl.sock"
LOG = "log"  # warnings when the engine gave no --log

# runc's rule for container ids.
_ID_RE = re.compile(r"^[\w+\-.]+$")


class StateError(PicoprocError):
    """A runtime operation failed; the message is runc's wording where runc has one."""


def check_id(cid: str) -> str:
    if not cid:
        raise StateError("container id cannot be empty")
    if not _ID_RE.match(cid) or cid in (".", ".."):
        raise StateError("invalid container ID format")
    return cid


def now_rfc3339() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat().replace("+00:00", "Z")


def process_start_time(pid: int) -> int | None:
    """Field 22 of /proc/PID/stat (clock ticks after boot), None when the
    process is gone or a zombie (it has exited: only its parent's wait is
    missing)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    rest = data[data.rfind(b")") + 2:].split()
    if not rest or rest[0] in (b"Z", b"X"):
        return None
    return int(rest[19])


def alive(pid: int, start: int | None) -> bool:
    return pid > 0 and start is not None and process_start_time(pid) == start


def write_json_atomic(path: str, doc: dict, mode: int = 0o600) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode)
    try:
        os.write(fd, json.dumps(doc, indent=2).encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def write_pid_file(path: str, pid: int) -> None:
    """As runc: written beside its final name and renamed into place, so a
    reader never sees a partial number."""
    path = os.path.abspath(path)
    tmp = os.path.join(os.path.dirname(path), "." + os.path.basename(path))
    fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_SYNC | os.O_CLOEXEC, 0o666)
    try:
        os.write(fd, str(pid).encode())
    finally:
        os.close(fd)
    os.replace(tmp, path)


@contextlib.contextmanager
def short_path(path: str):
    """``path`` short enough for a unix socket address (108 bytes): through
    an O_PATH fd on its directory when the full path is longer."""
    if len(path.encode()) < 100:
        yield path
        return
    fd = os.open(os.path.dirname(path), os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        yield f"/proc/self/fd/{fd}/{os.path.basename(path)}"
    finally:
        os.close(fd)


class Container:
    """One container's state directory, as the runtime commands see it."""

    def __init__(self, root: str, cid: str) -> None:
        self.root = root
        self.id = check_id(cid)
        self.dir = os.path.join(root, cid)

    def path(self, name: str) -> str:
        return os.path.join(self.dir, name)

    def exists(self) -> bool:
        return os.path.exists(self.path(STATE))

    def load(self) -> dict:
        try:
            with open(self.path(STATE), "rb") as f:
                return json.loads(f.read())
        except FileNotFoundError:
            raise StateError(f"container {self.id} does not exist") from None
        except (OSError, ValueError) as exc:
            raise StateError(f"container {self.id}: unreadable state ({exc})") from None

    def started(self) -> dict | None:
        try:
            with open(self.path(STARTED), "rb") as f:
                return json.loads(f.read())
        except (OSError, ValueError):
            return None

    def status(self, state: dict | None = None) -> str:
        state = state if state is not None else self.load()
        if not state.get("pid"):
            return "creating"
        if not alive(state["pid"], state.get("pid_start")):
            return "stopped"
        return "running" if os.path.exists(self.path(STARTED)) else "created"

    def oci_state(self) -> dict:
        """The runtime-spec state, with runc's extra fields (rootfs, created, owner)."""
        state = self.load()
        status = self.status(state)
        return {
            "ociVersion": state.get("ociVersion", "1.0.2"),
            "id": self.id,
            "pid": state.get("pid", 0) if status in ("created", "running") else 0,
            "status": status,
            "bundle": state.get("bundle", ""),
            "rootfs": state.get("rootfs", ""),
            "created": state.get("created", ""),
            "owner": "",
            "annotations": state.get("annotations", {}),
        }
