"""The CVE-prerequisite corpus of ``picoproc bench security``.

Published Linux kernel and container-runtime exploits (2016 onward), each
with the mechanisms its public exploit needs: the system calls with the
arguments that matter, the namespaces that give it a capability, the
files and the identity.  Each mechanism is a probe of guests/cve_probe.c
that really uses it (creates the namespace, the socket, the ring, the table,
the mount) and checks the kernel's answer.  The probes run inside every
backend; an exploit is *possible* there when every prerequisite is
reachable in the host kernel, and otherwise the first missing one is named.

Reachable means the host kernel's own code answered:

* a probe that reports success under a backend whose guest is a host
  process reached the host kernel (no supervisor answers these calls with
  the effect the probe checks: a working ring, a netlink answer, a mount);
* picoproc: the ABI table must also allow each host call of the probe as a
  direct call with the probe's arguments; otherwise the library OS served
  it inside the guest ("emulated") and the host kernel never saw it;
* gVisor: the guest's calls are served by the Sentry, so a success there is
  gVisor's implementation, never the host's ("emulated").

This measures reachability of prerequisites, not the bugs: the host's
kernel is patched against every exploit listed, and no exploit is run.
Each prerequisite was checked against the exploit's public write-up or
advisory (``source``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import signal

from . import harness

REACHABLE, REFUSED, EMULATED, KILLED, HANG, NOT_RUN = (
    "reachable", "refused", "emulated", "killed", "hang", "not run")

CLONE_NEWUSER, CLONE_NEWNS, CLONE_NEWNET, CLONE_NEWCGROUP = 0x10000000, 0x20000, 0x40000000, 0x02000000
ANY = None


@dataclasses.dataclass(frozen=True)
class Probe:
    id: str
    title: str
    # The host system calls the mechanism is made of, with the arguments
    # that matter (None: any); picoproc must allow each as a direct call.
    calls: tuple[tuple[str, tuple | None], ...]


PROBES: dict[str, Probe] = {p.id: p for p in (
    Probe("userns", "create a user namespace (full capabilities inside it)",
          (("unshare", (CLONE_NEWUSER,)),)),
    Probe("userns_net", "user + network namespace: CAP_NET_ADMIN/CAP_NET_RAW over a private network stack",
          (("unshare", (CLONE_NEWUSER | CLONE_NEWNET,)),)),
    Probe("userns_mnt", "user + mount namespace: CAP_SYS_ADMIN over a private mount table",
          (("unshare", (CLONE_NEWUSER | CLONE_NEWNS,)),)),
    Probe("fsconfig", "fsopen(2) + fsconfig(FSCONFIG_SET_STRING) inside the user + mount namespace",
          (("unshare", (CLONE_NEWUSER | CLONE_NEWNS,)), ("fsopen", ANY), ("fsconfig", ANY))),
    Probe("fsopen_cgroup", "fsopen(\"cgroup\"): a cgroup v1 filesystem context in the user namespace",
          (("unshare", (CLONE_NEWUSER | CLONE_NEWNS,)), ("fsopen", ANY))),
    Probe("cgroup_v1_mount", "mount a cgroup v1 hierarchy inside user + mount + cgroup namespaces",
          (("unshare", (CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWCGROUP,)), ("mount", ANY))),
    Probe("overlay_mount", "mount overlayfs inside the user + mount namespace",
          (("unshare", (CLONE_NEWUSER | CLONE_NEWNS,)), ("mount", ANY))),
    Probe("nf_tables", "create an nf_tables table over NETLINK_NETFILTER in a private network namespace",
          (("unshare", (CLONE_NEWUSER | CLONE_NEWNET,)), ("socket", ANY), ("sendto", ANY))),
    Probe("x_tables", "setsockopt(IPT_SO_SET_REPLACE) reaching x_tables (answered ENOMEM for an oversized "
          "table, after the capability check)",
          (("unshare", (CLONE_NEWUSER | CLONE_NEWNET,)), ("socket", ANY), ("setsockopt", ANY))),
    Probe("af_packet", "AF_PACKET raw socket with PACKET_VERSION TPACKET_V3",
          (("unshare", (CLONE_NEWUSER | CLONE_NEWNET,)), ("socket", ANY), ("setsockopt", ANY))),
    Probe("af_vsock", "AF_VSOCK socket", (("socket", ANY),)),
    Probe("io_uring", "io_uring_setup(2)", (("io_uring_setup", ANY),)),
    Probe("io_uring_buffers", "io_uring_register(IORING_REGISTER_BUFFERS)",
          (("io_uring_setup", ANY), ("io_uring_register", ANY))),
    Probe("bpf_prog", "bpf(BPF_PROG_LOAD) of a socket filter (the verifier)", (("bpf", ANY),)),
    Probe("msg_msg", "System V message queue: msgget + msgsnd (the msg_msg heap spray)",
          (("msgget", ANY), ("msgsnd", ANY))),
    Probe("keyctl", "keyctl(KEYCTL_JOIN_SESSION_KEYRING)", (("keyctl", ANY),)),
    Probe("watch_queue", "pipe2(O_NOTIFICATION_PIPE): a watch_queue notification pipe",
          (("pipe2", (0, 0x80)),)),
    Probe("splice_ro", "splice(2) a read-only file into a pipe, then write to the pipe",
          (("splice", ANY), ("pipe2", (0, 0o2000000)))),
    Probe("proc_mem_write", "write through /proc/self/mem into a private read-only file mapping "
          "(FOLL_FORCE)", (("mmap", ANY), ("pwrite64", ANY))),
    Probe("madvise_dontneed", "madvise(MADV_DONTNEED) on a private read-only file mapping",
          (("mmap", ANY), ("madvise", (0, 4096, 4)))),
    Probe("threads_mm", "threads sharing one mm calling mmap/mremap/munmap",
          (("clone", (0x3D0F00,)), ("mmap", ANY), ("mremap", ANY), ("munmap", ANY))),
    Probe("host_procfs", "the host's procfs at /proc, with /proc/self/exe", (("statfs", ANY),)),
    Probe("host_root", "running as uid 0 of the initial user namespace (host root)", (("getuid", ANY),)),
    Probe("ptrace_traceme", "ptrace(PTRACE_TRACEME)", (("ptrace", ANY),)),
    Probe("setuid_exec", "a set-user-ID root program runnable with no_new_privs unset",
          (("prctl", ANY), ("execve", ANY))),
    Probe("waitid", "waitid(2) answered by the kernel", (("waitid", ANY),)),
    Probe("leaked_dir_fd", "a directory fd inherited from the runtime (outside the sandbox's root)",
          (("fstat", ANY),)),
    Probe("fuse_dev", "open /dev/fuse (a FUSE server to stall the kernel)", ()),
)}


@dataclasses.dataclass(frozen=True)
class Exploit:
    cve: str
    name: str
    kind: str  # "kernel" or "runtime"
    needs: tuple[str, ...]  # probe ids, in the order the exploit uses them
    how: str  # what the public exploit does with them
    source: str


EXPLOITS: tuple[Exploit, ...] = (
    Exploit("CVE-2016-5195", "Dirty COW", "kernel", ("proc_mem_write", "madvise_dontneed"),
            "races madvise(MADV_DONTNEED) against writes through /proc/self/mem into a private "
            "read-only mapping of a file", "https://github.com/dirtycow/dirtycow.github.io/wiki/VulnerabilityDetails"),
    Exploit("CVE-2022-0847", "Dirty Pipe", "kernel", ("splice_ro",),
            "fills and drains a pipe, splices one byte of a read-only file into it, then writes into "
            "the page cache page", "https://dirtypipe.cm4all.com/"),
    Exploit("CVE-2019-5736", "runc /proc/self/exe overwrite", "runtime", ("host_procfs", "host_root"),
            "as root in the container, opens the runtime's binary through /proc/self/exe (a procfs "
            "magic link) and rewrites it", "https://www.openwall.com/lists/oss-security/2019/02/11/2"),
    Exploit("CVE-2022-0492", "cgroup v1 release_agent", "kernel", ("userns", "cgroup_v1_mount"),
            "unshares user, mount and cgroup namespaces, mounts a cgroup v1 hierarchy and writes "
            "release_agent", "https://unit42.paloaltonetworks.com/cve-2022-0492-cgroups/"),
    Exploit("CVE-2022-0185", "fsconfig legacy_parse_param overflow", "kernel",
            ("userns_mnt", "fsconfig", "msg_msg"),
            "gets CAP_SYS_ADMIN in a user namespace, overflows through fsconfig(FSCONFIG_SET_STRING), "
            "sprays msg_msg", "https://www.willsroot.io/2022/01/cve-2022-0185.html"),
    Exploit("CVE-2021-4154", "cgroup fsconfig type confusion", "kernel", ("userns_mnt", "fsopen_cgroup"),
            "opens a cgroup v1 context with fsopen and passes a file with FSCONFIG_SET_FD \"source\"",
            "https://github.com/Markakd/CVE-2021-4154"),
    Exploit("CVE-2021-22555", "x_tables heap out-of-bounds write", "kernel",
            ("userns_net", "x_tables", "msg_msg"),
            "gets CAP_NET_ADMIN in a user + network namespace, writes out of bounds with "
            "IPT_SO_SET_REPLACE, sprays msg_msg",
            "https://google.github.io/security-research/pocs/linux/cve-2021-22555/writeup.html"),
    Exploit("CVE-2022-25636", "nf_tables fwd/dup netdev offload", "kernel", ("userns_net", "nf_tables"),
            "builds a netdev-family chain with hardware offload over NETLINK_NETFILTER",
            "https://nickgregory.me/post/2022/03/12/cve-2022-25636/"),
    Exploit("CVE-2022-1015", "nf_tables register bounds", "kernel", ("userns_net", "nf_tables"),
            "loads nf_tables expressions with out-of-range registers",
            "https://blog.dbouman.nl/2022/04/02/How-The-Tables-Have-Turned-CVE-2022-1015-1016/"),
    Exploit("CVE-2022-32250", "nf_tables set expression use-after-free", "kernel",
            ("userns_net", "nf_tables"), "adds set elements with stateful expressions through NETLINK_NETFILTER",
            "https://research.nccgroup.com/2022/09/01/settlers-of-netlink-exploiting-a-limited-uaf-in-nf_tables-cve-2022-32250/"),
    Exploit("CVE-2023-0179", "nf_tables payload stack overflow", "kernel", ("userns_net", "nf_tables"),
            "evaluates a VLAN payload expression from a rule it loaded",
            "https://www.openwall.com/lists/oss-security/2023/01/13/2"),
    Exploit("CVE-2023-32233", "nf_tables anonymous set use-after-free", "kernel", ("userns_net", "nf_tables"),
            "deletes anonymous sets in a batch over NETLINK_NETFILTER",
            "https://www.openwall.com/lists/oss-security/2023/05/15/5"),
    Exploit("CVE-2024-1086", "nf_tables verdict double free", "kernel", ("userns_net", "nf_tables"),
            "loads a rule whose verdict nft_verdict_init mishandles, from a user + network namespace",
            "https://pwning.tech/nftables/"),
    Exploit("CVE-2017-7308", "AF_PACKET TPACKET_V3 ring overflow", "kernel", ("userns_net", "af_packet"),
            "gets CAP_NET_RAW in a user namespace, sets TPACKET_V3 and an RX ring with bad block sizes",
            "https://googleprojectzero.blogspot.com/2017/05/exploiting-linux-kernel-via-packet.html"),
    Exploit("CVE-2016-8655", "AF_PACKET packet_set_ring race", "kernel", ("userns_net", "af_packet"),
            "races setsockopt(PACKET_VERSION) against ring setup on an AF_PACKET socket",
            "https://seclists.org/oss-sec/2016/q4/607"),
    Exploit("CVE-2020-14386", "AF_PACKET tpacket_rcv overflow", "kernel", ("userns_net", "af_packet"),
            "needs CAP_NET_RAW (a user namespace) and an AF_PACKET ring receiving crafted packets",
            "https://www.openwall.com/lists/oss-security/2020/09/03/3"),
    Exploit("CVE-2021-26708", "AF_VSOCK race", "kernel", ("af_vsock",),
            "races setsockopt on AF_VSOCK sockets (virtio/vmci transports)",
            "https://a13xp0p0v.github.io/2021/02/09/CVE-2021-26708.html"),
    Exploit("CVE-2021-41073", "io_uring provided-buffer type confusion", "kernel", ("io_uring",),
            "IORING_OP_PROVIDE_BUFFERS, then a read with IOSQE_BUFFER_SELECT frees the wrong object",
            "https://www.graplsecurity.com/post/iou-ring-exploiting-the-linux-kernel"),
    Exploit("CVE-2022-29582", "io_uring timeout use-after-free", "kernel", ("io_uring",),
            "races linked timeouts submitted through an io_uring",
            "https://ruia-ruia.github.io/2022/08/05/CVE-2022-29582-io-uring/"),
    Exploit("CVE-2023-2598", "io_uring fixed-buffer out-of-bounds", "kernel", ("io_uring_buffers",),
            "registers fixed buffers (IORING_REGISTER_BUFFERS) over one page mapped many times",
            "https://anatomic.rip/cve-2023-2598/"),
    Exploit("CVE-2021-3493", "overlayfs file capabilities (Ubuntu)", "kernel",
            ("userns_mnt", "overlay_mount"),
            "mounts overlayfs in a user namespace and sets security.capability on a file there",
            "https://ssd-disclosure.com/ssd-advisory-overlayfs-pe/"),
    Exploit("CVE-2023-0386", "overlayfs setuid copy-up from FUSE", "kernel",
            ("fuse_dev", "userns_mnt", "overlay_mount"),
            "serves a setuid file from a FUSE mount as overlayfs's lower layer and copies it up",
            "https://securitylabs.datadoghq.com/articles/overlayfs-cve-2023-0386/"),
    Exploit("CVE-2024-21626", "runc leaked directory fd", "runtime", ("leaked_dir_fd", "host_procfs"),
            "starts in /proc/self/fd/N, a host directory fd runc left open, and walks the host tree",
            "https://github.com/opencontainers/runc/security/advisories/GHSA-xr7r-f8xq-vfvv"),
    Exploit("CVE-2019-13272", "PTRACE_TRACEME credential confusion", "kernel",
            ("ptrace_traceme", "setuid_exec"),
            "a child calls PTRACE_TRACEME and the parent execs a set-user-ID program (pkexec)",
            "https://bugs.chromium.org/p/project-zero/issues/detail?id=1903"),
    Exploit("CVE-2020-8835", "eBPF verifier 32-bit bounds", "kernel", ("bpf_prog",),
            "loads an eBPF program whose 32-bit bounds the verifier tracks wrongly",
            "https://www.zerodayinitiative.com/blog/2020/4/8/cve-2020-8835-linux-kernel-privilege-escalation-via-improper-ebpf-program-verification"),
    Exploit("CVE-2021-3490", "eBPF ALU32 bounds", "kernel", ("bpf_prog",),
            "loads an eBPF program with bitwise ALU32 operations the verifier bounds wrongly",
            "https://www.graplsecurity.com/post/kernel-pwning-with-ebpf-a-love-story"),
    Exploit("CVE-2023-3269", "StackRot", "kernel", ("threads_mm",),
            "threads race stack expansion against munmap/mremap on the maple tree (no privilege)",
            "https://github.com/lrh2000/StackRot"),
    Exploit("CVE-2016-0728", "keyring reference overflow", "kernel", ("keyctl",),
            "joins the same session keyring 2^32 times with keyctl(KEYCTL_JOIN_SESSION_KEYRING)",
            "https://nvd.nist.gov/vuln/detail/CVE-2016-0728"),
    Exploit("CVE-2017-5123", "waitid unchecked user pointer", "kernel", ("waitid",),
            "passes a kernel address as waitid's infop, which the kernel writes without access_ok",
            "https://salls.github.io/Linux-Kernel-CVE-2017-5123/"),
    Exploit("CVE-2022-0995", "watch_queue out-of-bounds write", "kernel", ("watch_queue", "msg_msg"),
            "sets a watch_queue filter with an out-of-range type on a notification pipe, sprays msg_msg",
            "https://github.com/Bonfee/CVE-2022-0995"),
)
EXPLOITS_BY_CVE = {e.cve: e for e in EXPLOITS}


@dataclasses.dataclass
class ProbeResult:
    status: str
    detail: str

    def cell(self) -> str:
        if self.status == REACHABLE:
            return "reachable"
        if self.status == REFUSED:
            return self.detail.split(" ", 1)[0]  # the errno name
        return self.status


@dataclasses.dataclass
class BackendCve:
    backend: str
    probes: dict[str, ProbeResult]
    notes: list[str]

    def verdict(self, exploit: Exploit) -> tuple[bool, str | None, ProbeResult | None]:
        """(every prerequisite reachable, the first missing probe, its result)."""
        for pid in exploit.needs:
            r = self.probes.get(pid, ProbeResult(NOT_RUN, "not run"))
            if r.status != REACHABLE:
                return False, pid, r
        return True, None, None

    def possible(self) -> list[str]:
        return [e.cve for e in EXPLOITS if self.verdict(e)[0]]

    def to_json(self) -> dict:
        return {"backend": self.backend, "notes": self.notes,
                "probes": {k: dataclasses.asdict(v) for k, v in self.probes.items()},
                "exploits": {e.cve: {"possible": self.verdict(e)[0], "missing": self.verdict(e)[1]}
                             for e in EXPLOITS}}


def parse_probe_lines(text: str) -> dict[str, tuple[str, str]]:
    """``probe NAME ok|err|signal|hang ...`` -> {NAME: (word, rest)}."""
    out = {}
    for line in text.splitlines():
        parts = line.split(" ", 3)
        if len(parts) >= 3 and parts[0] == "probe":
            out[parts[1]] = (parts[2], parts[3] if len(parts) > 3 else "")
    return out


def _pico_direct(probe: Probe) -> str | None:
    """The first host call of the probe picoproc's filter would not let
    through directly, or None."""
    from picoproc.abi.table import load_table

    direct = load_table().direct_by_name()
    for name, args in probe.calls:
        d = direct.get(name)
        if d is None:
            return name
        if args is not None and not d.allows(tuple(args) + (0,) * (6 - len(args))):
            return name
    return None


def classify(backend: str, probes_out: dict[str, tuple[str, str]], wanted) -> dict[str, ProbeResult]:
    out = {}
    for pid in wanted:
        word, rest = probes_out.get(pid, ("missing", ""))
        if word == "ok":
            if backend == "gvisor":
                out[pid] = ProbeResult(EMULATED, "served by gVisor's Sentry, not the host kernel: " + rest)
                continue
            if backend.startswith("pico"):
                blocked = _pico_direct(PROBES[pid])
                if blocked is not None:
                    out[pid] = ProbeResult(EMULATED, f"{blocked} is not a direct call: the library OS "
                                                     f"answered it in the guest ({rest})")
                    continue
            out[pid] = ProbeResult(REACHABLE, rest)
        elif word == "err":
            out[pid] = ProbeResult(REFUSED, rest)
        elif word == "signal":
            sig = int(rest.split()[0]) if rest.split() and rest.split()[0].isdigit() else 0
            name = signal.Signals(sig).name if sig in signal.Signals._value2member_map_ else rest
            out[pid] = ProbeResult(KILLED, f"killed by {name}")
        elif word == "hang":
            out[pid] = ProbeResult(HANG, "no answer within 5 s")
        else:
            out[pid] = ProbeResult(NOT_RUN, "no report from the probe")
    return out


def _digest(path) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def run_backend(rd: harness.RunDir, backend: str, probes=None, timeout: float = 180.0) -> BackendCve:
    from picoproc.backends import BackendError, get_backend

    wanted = list(probes or PROBES)
    ok, why = get_backend(backend).available()
    if not ok:
        return BackendCve(backend, {p: ProbeResult(NOT_RUN, f"backend unavailable: {why}") for p in wanted},
                          [f"backend unavailable: {why}"])
    before = _digest(rd.allowed)
    argv = [rd.guest("pp-cve"), rd.token, str(rd.allowed), *wanted]
    notes: list[str] = []
    try:
        res = get_backend(backend).run(harness.bench_manifest(rd), argv, timeout=timeout)
    except BackendError as exc:
        return BackendCve(backend, {p: ProbeResult(NOT_RUN, f"the backend failed: {exc}") for p in wanted},
                          [f"the backend failed: {exc}"])
    finally:
        left = harness.kill_leftovers(rd.token)
    if left:
        notes.append(f"harness killed {len(left)} guest process(es) left after the run")
    text = (res.stdout or b"").decode("utf-8", "replace")
    if not text.startswith("start cve"):
        err = (res.stderr or b"").decode("utf-8", "replace").strip()[-300:]
        notes.append(f"the probe did not start (exit {res.exit_code}, signal {res.signal}): {err}")
    if _digest(rd.allowed) != before:
        notes.append("the read-only file the Dirty COW / Dirty Pipe probes map CHANGED on the host")
    return BackendCve(backend, classify(backend, parse_probe_lines(text), wanted), notes)


def run_cve(backends: list[str] | None = None, *, quiet: bool = True, progress=None) -> list[BackendCve]:
    from picoproc.backends import all_backends, backend_names
    from picoproc.bench.progress import Progress

    known = backend_names()
    wanted = backends or [b.name for b in all_backends() if b.available()[0]]
    for name in wanted:
        if name not in known:
            raise ValueError(f"unknown backend {name!r}; known: {', '.join(known)}")
    pr = progress or Progress(len(wanted), quiet=quiet)
    rd = harness.make_run_dir()
    out = []
    try:
        for name in wanted:
            pr.step(f"cve: {name}")
            out.append(run_backend(rd, name))
    finally:
        harness.kill_leftovers(rd.token)
        rd.remove()
    return out


def markdown(results: list[BackendCve]) -> str:
    backends = [r.backend for r in results]
    n = len(EXPLOITS)
    lines = [f"| backend | exploits with every prerequisite reachable (of {n}) |", "|---|---:|"]
    for r in results:
        lines.append(f"| {r.backend} | {len(r.possible())} |")
    lines += ["", "Per exploit: **possible** when every prerequisite is reachable, else the first missing "
              "one and why.", "",
              "| exploit | prerequisites | " + " | ".join(backends) + " |",
              "|---|---|" + "---|" * len(backends)]
    for e in EXPLOITS:
        cells = []
        for r in results:
            ok, pid, pr = r.verdict(e)
            cells.append("**possible**" if ok else f"`{pid}`: {pr.cell()}")
        lines.append(f"| [{e.cve}]({e.source}) {e.name} | " + ", ".join(f"`{p}`" for p in e.needs) + " | "
                     + " | ".join(cells) + " |")
    lines += ["", "| probe | what it does | " + " | ".join(backends) + " |",
              "|---|---|" + "---|" * len(backends)]
    for p in PROBES.values():
        lines.append(f"| `{p.id}` | {p.title} | "
                     + " | ".join(r.probes.get(p.id, ProbeResult(NOT_RUN, "")).cell() for r in results) + " |")
    notes = [f"- `{r.backend}`: {note}" for r in results for note in r.notes]
    if notes:
        lines += ["", *notes]
    return "\n".join(lines)


def stored(results: list[BackendCve]) -> list[dict]:
    """What docs/SECURITY.md shows of a run, as JSON (``from_stored`` gives
    back what ``markdown`` takes): every probe's answer per backend; the
    verdicts follow from them and the exploits' prerequisites."""
    return [{"backend": r.backend, "notes": r.notes,
             "probes": {k: [v.status, v.detail] for k, v in r.probes.items()}} for r in results]


def from_stored(data: list[dict]) -> list[BackendCve]:
    return [BackendCve(d["backend"], {k: ProbeResult(*v) for k, v in d["probes"].items()}, list(d["notes"]))
            for d in data]


def exploits_markdown() -> str:
    lines = ["| exploit | kind | what the public exploit does | source |", "|---|---|---|---|"]
    for e in EXPLOITS:
        lines.append(f"| {e.cve} {e.name} | {e.kind} | {e.how} | <{e.source}> |")
    return "\n".join(lines)
