"""The filesystem view a manifest describes, as an ordered list of operations.

Namespace backends (container, crun, bwrap, gvisor) all build the same view:
an empty root, the manifest's mounts (read-only unless writable), its scratch
tmpfs mounts, and its hidden paths masked.  Ordering by depth makes a mount
inside another mount land on top of it.
"""

from __future__ import annotations

import dataclasses
import os

from picoproc.manifest import Manifest
from picoproc.mounttable import under

from ._base import host_path_for


@dataclasses.dataclass(frozen=True)
class ViewOp:
    kind: str  # "bind" | "tmpfs" | "mask-file" | "mask-dir"
    guest: str
    host: str = ""  # bind source
    writable: bool = False
    size_bytes: int = 0  # tmpfs size


def _depth(path: str) -> int:
    return len([p for p in path.split("/") if p])


def view_ops(manifest: Manifest) -> list[ViewOp]:
    ops: list[ViewOp] = []
    entries = [(m.guest, 0, m) for m in manifest.mounts] + [(t.guest, 1, t) for t in manifest.tmpfs]
    for guest, _, item in sorted(entries, key=lambda e: (_depth(e[0]), e[0], e[1])):
        if hasattr(item, "host"):
            ops.append(ViewOp("bind", guest, host=item.host, writable=item.writable))
        else:
            ops.append(ViewOp("tmpfs", guest, size_bytes=item.size_bytes, writable=True))
    tmpfs_roots = [t.guest for t in manifest.tmpfs]
    for hidden in manifest.hidden:
        # A hidden path under a scratch tmpfs does not exist yet; nothing to mask.
        if any(under(hidden, r) for r in tmpfs_roots):
            continue
        host = host_path_for(manifest, hidden)
        if host is None or not os.path.lexists(host):
            continue  # not visible in the view anyway
        kind = "mask-dir" if os.path.isdir(host) and not os.path.islink(host) else "mask-file"
        ops.append(ViewOp(kind, hidden))
    return ops
