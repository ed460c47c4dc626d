"""The soak: many guests at once, for minutes, against one monitor, and what
the monitor holds before and after.

``picoproc bench soak [--guests 64] [--duration 600] [--json FILE]
[--write-doc docs/SECURITY.md]`` runs ``--guests`` workers in this process,
each running picoprocesses back to back until ``--duration`` seconds have
passed, through one shared monitor (picoproc.api.shared_monitor).  The runs
mix what guests do (files and directories in their scratch, fork and exec,
TCP and UDP to the host and a listener of their own) with runs that end at a
limit (output, wall time, memory, processes, CPU time, a flood of refused
calls).  Every run's result is checked against what that workload must give.

Before (after one warm-up run of each workload), half-way and after (each
once every run then going has ended), it measures the monitor process from
outside: its open fds, RSS, threads, the run cgroups and mounts it has, udp:
relay threads, child processes, guests registered with the loop.  The soak
passes when every run gave its expected result and everything but RSS is
exactly as before; RSS may grow in the first half (allocator arenas and
caches the threads fill) but not in the second (a leak would): at most 10 %
or 16 MiB.

The test suite runs it for a minute (tests/test_soak.py;
PICOPROC_SOAK_SECONDS=600 for the long form); docs/SECURITY.md carries the
table of the last long run: ``--write-doc docs/SECURITY.md`` stores the
result in docs/security.json and renders the document from it.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import platform
import socket
import sys
import threading
import time
from collections.abc import Callable

RSS_SLACK = (16 << 20, 0.10)


# ---------------------------------------------------------------------------
# Host-side peers for the network workload

class _Echo:
    """A TCP and a UDP echo server on 127.0.0.1, each in a thread."""

    def __init__(self) -> None:
        self.tcp = socket.create_server(("127.0.0.1", 0))
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind(("127.0.0.1", 0))
        self.tcp_port = self.tcp.getsockname()[1]
        self.udp_port = self.udp.getsockname()[1]
        self._stop = False
        self._threads = [threading.Thread(target=self._tcp_loop, daemon=True),
                         threading.Thread(target=self._udp_loop, daemon=True)]
        for t in self._threads:
            t.start()

    def _tcp_loop(self) -> None:
        while not self._stop:
            try:
                conn, _ = self.tcp.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    @staticmethod
    def _serve(conn: socket.socket) -> None:
        with conn:
            conn.settimeout(30)
            try:
                while data := conn.recv(4096):
                    conn.sendall(data)
            except OSError:
                pass

    def _udp_loop(self) -> None:
        while not self._stop:
            try:
                data, peer = self.udp.recvfrom(65536)
                if peer is None:  # shut down
                    return
                self.udp.sendto(data, peer)
            except OSError:
                return

    def close(self) -> None:
        self._stop = True
        for s in (self.tcp, self.udp):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()
        for t in self._threads:
            t.join(5)


# ---------------------------------------------------------------------------
# Workloads: what a run does, under which manifest, and what it must give

FILES = """
set -e
for i in 1 2 3 4 5 6 7 8; do
  mkdir -p /tmp/d$i/sub
  echo "data $i" > /tmp/d$i/sub/f
  cat /tmp/d$i/sub/f >> /tmp/all
  mv /tmp/d$i/sub/f /tmp/d$i/g
  ln -s g /tmp/d$i/link
  chmod 600 /tmp/d$i/g
done
wc -l < /tmp/all
rm -r /tmp/d1 /tmp/d2 /tmp/d3 /tmp/d4 /tmp/d5 /tmp/d6 /tmp/d7 /tmp/d8 /tmp/all
ls /tmp | wc -l
"""

FORK_EXEC = """
for i in 1 2 3 4 5 6 7 8; do /bin/true; done
n=$(ls /usr/bin | head -5 | wc -l)
echo "$n $(cat /etc/hostname | wc -c)"
"""

SOCKETS = """
import socket, sys
tcp, udp = int(sys.argv[1]), int(sys.argv[2])
c = socket.create_connection(("127.0.0.1", tcp), timeout=20)
c.sendall(b"ping"); got = c.recv(4); c.close()
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.settimeout(20)
u.connect(("127.0.0.1", udp)); u.send(b"dgram"); dgot = u.recv(100); u.close()
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen()
own = socket.create_connection(s.getsockname(), timeout=20); a, _ = s.accept()
own.sendall(b"self"); sgot = a.recv(4)
for x in (own, a, s): x.close()
print(got.decode(), dgot.decode(), sgot.decode())
"""

MEMORY = "b = bytearray(256 << 20)\nfor i in range(0, len(b), 4096): b[i] = 1\nprint('survived')"
CPU = "while True: pass"
FORK_LOOP = "i=0; while [ $i -lt 64 ]; do sleep 5 & i=$((i+1)); done; wait"
FLOOD = "for i in $(seq 500); do read l < /etc/shadow; done 2>/dev/null; echo flooded"


@dataclasses.dataclass(frozen=True)
class Workload:
    name: str
    argv: Callable[[_Echo], list[str]]
    manifest: Callable  # (base manifest) -> manifest
    check: Callable  # (Result) -> None or a one-line problem
    timeout: float | None = 60.0


def _expect(stdout: bytes, status: int = 0, limit: str | None = None):
    def check(r):
        if (r.status, r.limit) != (status, limit) or (stdout is not None and r.stdout != stdout):
            return (f"status {r.status} limit {r.limit} stdout {r.stdout[-80:]!r} "
                    f"stderr {r.stderr[-120:]!r} (want {status} {limit} {stdout!r})")
        return None
    return check


def _ended_by(limit: str):
    def check(r):
        if r.limit != limit:
            return f"ended {r.reason} (limit {r.limit}), not by {limit}; stderr {r.stderr[-120:]!r}"
        return None
    return check


def _with(**limits):
    def manifest(base):
        return dataclasses.replace(base, limits=dataclasses.replace(base.limits, **limits))
    return manifest


def _net(base, echo=None):
    from picoproc.manifest import Endpoint

    return dataclasses.replace(base, net_connect=(Endpoint("127.0.0.1", 0),),
                               net_listen=(Endpoint("127.0.0.1", 0),))


def _plain(base):
    return base


def workloads(hostname_bytes: int) -> list[Workload]:
    return [
        Workload("files", lambda e: ["/bin/sh", "-c", FILES], _plain, _expect(b"8\n0\n")),
        Workload("fork+exec", lambda e: ["/bin/sh", "-c", FORK_EXEC], _plain,
                 _expect(f"5 {hostname_bytes}\n".encode())),
        Workload("sockets", lambda e: ["python3", "-c", SOCKETS, str(e.tcp_port), str(e.udp_port)], _net,
                 _expect(b"ping dgram self\n")),
        Workload("limit: output", lambda e: ["/usr/bin/yes"], _with(output_bytes=65536),
                 _ended_by("output")),
        Workload("limit: wall time", lambda e: ["/bin/sleep", "30"], _plain, _ended_by("wall_time"),
                 timeout=0.5),
        Workload("limit: memory", lambda e: ["python3", "-c", MEMORY], _with(memory_bytes=64 << 20),
                 _ended_by("memory")),
        Workload("limit: processes", lambda e: ["/bin/sh", "-c", FORK_LOOP], _with(pids=8),
                 lambda r: None if r.wall_time_s < 30 else f"ran {r.wall_time_s:.1f} s"),
        Workload("limit: CPU time", lambda e: ["python3", "-c", CPU], _with(cpu_time_s=0.25),
                 _ended_by("cpu_time"), timeout=None),
        Workload("refused calls", lambda e: ["/bin/sh", "-c", FLOOD], _plain, _expect(b"flooded\n")),
    ]


# ---------------------------------------------------------------------------
# Measuring the monitor from outside its guests

def _mount_ids() -> set[int]:
    with open("/proc/self/mountinfo") as f:
        return {int(line.split()[0]) for line in f}


def measure(baseline_mounts: set[int] | None = None) -> dict:
    """What this (monitor) process holds now.  Mounts: those of its mount
    namespace made since ``baseline_mounts`` (mount ids only grow), so that
    another program unmounting something meanwhile does not count."""
    import psutil

    from picoproc import cgroups
    from picoproc.api import shared_monitor
    from picoproc.native import lib

    me = psutil.Process()
    run_cgroups = 0
    unified, v1 = cgroups._mounts()
    for mount in [*v1.values(), *([unified] if unified else [])]:
        for _, dirnames, _ in os.walk(mount):
            run_cgroups += sum(d.startswith(f"picoproc-{os.getpid()}-") for d in dirnames)
    ids = _mount_ids()
    mounts = len(ids - baseline_mounts) if baseline_mounts is not None else 0
    monitor, _ = shared_monitor()
    return {
        "fds": len(os.listdir("/proc/self/fd")) - 1,  # not listdir's own
        "rss_bytes": me.memory_info().rss,
        "threads": me.num_threads(),
        "run_cgroups": run_cgroups,
        "mounts_added": mounts,
        "udp_relays": lib.pico_net_udp_relay_count(),
        "child_processes": len(me.children(recursive=True)),
        "guests_registered": monitor.counters()["guests"],
    }


def _quiesced(before: dict, baseline_mounts: set[int], timeout: float = 30.0) -> dict:
    """Measures once the last runs' stragglers are gone (relay threads end
    when their guest's socket closes; the children of the last runs are
    being reaped): bounded, never a blind sleep."""
    deadline = time.monotonic() + timeout
    while True:
        now = measure(baseline_mounts)
        settled = all(now[k] <= before[k] for k in ("udp_relays", "child_processes", "guests_registered",
                                                     "threads", "fds"))
        if settled or time.monotonic() > deadline:
            return now
        time.sleep(0.05)


def flat(before: dict, middle: dict, after: dict) -> list[str]:
    """What did not come back to where it was.  RSS: what the second half
    of the soak added to the first's (caches the first filled stay), within
    RSS_SLACK."""
    problems = [f"{k}: {before[k]} -> {middle[k]} -> {after[k]}" for k in before
                if k != "rss_bytes" and not before[k] == middle[k] == after[k]]
    slack = max(RSS_SLACK[0], int(middle["rss_bytes"] * RSS_SLACK[1]))
    if after["rss_bytes"] > middle["rss_bytes"] + slack:
        problems.append(f"rss_bytes: {middle['rss_bytes']} after the first half -> {after['rss_bytes']} "
                        f"(slack {slack})")
    return problems


# ---------------------------------------------------------------------------
# The soak

def run_soak(guests: int = 64, duration: float = 60.0, log=None) -> dict:
    from picoproc.api import Sandbox
    from picoproc.manifest import default_manifest

    hostname = open("/etc/hostname", "rb").read()
    kinds = workloads(len(hostname))
    base = default_manifest()
    sandboxes = {w.name: Sandbox(w.manifest(base)) for w in kinds}
    echo = _Echo()
    counts = {w.name: 0 for w in kinds}
    walls: dict[str, list[float]] = {w.name: [] for w in kinds}
    problems: list[str] = []
    errors: list[str] = []
    lock = threading.Lock()

    def one(w: Workload) -> None:
        try:
            r = sandboxes[w.name].run(w.argv(echo), capture=True, timeout=w.timeout,
                                      stdin=_devnull)
        except Exception as exc:  # noqa: BLE001 - every failure is a finding
            with lock:
                errors.append(f"{w.name}: {type(exc).__name__}: {exc}")
            return
        problem = w.check(r)
        with lock:
            counts[w.name] += 1
            walls[w.name].append(r.wall_time_s)
            if problem:
                problems.append(f"{w.name}: {problem}")

    _devnull = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    try:
        # Warm-up, from a thread as the workers: the shared monitor, the
        # spawner thread, caches, Python's own allocations.
        warm = threading.Thread(target=lambda: [one(w) for w in kinds])
        warm.start()
        warm.join()
        counts = {w.name: 0 for w in kinds}
        walls = {w.name: [] for w in kinds}
        if problems or errors:
            raise RuntimeError(f"the warm-up runs failed: {problems + errors}")
        baseline_mounts = _mount_ids()
        before = measure(baseline_mounts)
        started = time.monotonic()
        next_log = started + 10

        def phase(deadline: float) -> None:
            nonlocal next_log

            def worker(index: int) -> None:
                i = index
                while time.monotonic() < deadline:
                    one(kinds[i % len(kinds)])
                    i += 1

            threads = [threading.Thread(target=worker, args=(i,), name=f"soak-{i}", daemon=True)
                       for i in range(guests)]
            for t in threads:
                t.start()
            while alive := [t for t in threads if t.is_alive()]:
                alive[0].join(max(0.0, next_log - time.monotonic()) if log else None)
                if log and time.monotonic() >= next_log:
                    log(f"soak: {time.monotonic() - started:.0f} s, {sum(counts.values())} runs")
                    next_log += 10

        # Two halves: what the first leaves (allocator caches, arenas of
        # the threads) may stay; what the second adds to it would be a leak.
        phase(started + duration / 2)
        middle = _quiesced(before, baseline_mounts)
        phase(time.monotonic() + duration / 2)
        elapsed = time.monotonic() - started
        after = _quiesced(before, baseline_mounts)
    finally:
        echo.close()
        os.close(_devnull)
    return {
        "suite": "soak",
        "guests": guests,
        "duration_s": duration,
        "elapsed_s": elapsed,
        "runs": counts,
        "median_wall_s": {k: sorted(v)[len(v) // 2] if v else None for k, v in walls.items()},
        "problems": problems,
        "errors": errors,
        "before": before,
        "middle": middle,
        "after": after,
        "not_flat": flat(before, middle, after),
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "kernel": platform.release(),
        "cpus": os.cpu_count(),
    }


def markdown(result: dict) -> str:
    names = {"fds": "open fds", "rss_bytes": "RSS", "threads": "threads", "run_cgroups": "run cgroups",
             "mounts_added": "mounts added to its namespace", "udp_relays": "udp: relay threads",
             "child_processes": "child processes", "guests_registered": "guests registered in the loop"}

    def show(key, value):
        return f"{value / (1 << 20):.1f} MiB" if key == "rss_bytes" else str(value)

    lines = [
        f"{result['guests']} guests at once for {result['elapsed_s']:.0f} s ({result['date']}, Linux "
        f"{result['kernel']}, {result['cpus']} CPUs): {sum(result['runs'].values())} runs, "
        f"{len(result['problems'])} with an unexpected result, {len(result['errors'])} that failed to run.",
        "",
        "| workload | runs | median wall time |",
        "|---|---:|---:|",
        *[f"| {name} | {n} | {_seconds(result['median_wall_s'].get(name))} |"
          for name, n in result["runs"].items()],
        "",
        "| the monitor process | before | half-way | after |",
        "|---|---:|---:|---:|",
        *[f"| {names[k]} | {show(k, result['before'][k])} | {show(k, result['middle'][k])} | "
          f"{show(k, result['after'][k])} |" for k in result["before"]],
        "",
        ("Flat: everything came back to where it was." if not result["not_flat"]
         else "Not flat: " + "; ".join(result["not_flat"])),
    ]
    for p in (result["problems"] + result["errors"])[:10]:
        lines.append(f"- {p}")
    return "\n".join(lines)


def _seconds(value) -> str:
    return "-" if value is None else f"{value:.2f} s"


# ---------------------------------------------------------------------------
# Command line

def cmd_soak(args) -> int:
    result = run_soak(args.guests, args.duration,
                      log=None if args.quiet else (lambda m: print(m, file=sys.stderr, flush=True)))
    text = markdown(result)
    print(text)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
            f.write("\n")
    if args.write_doc:
        from picoproc.bench.security.report import store_soak

        try:
            store_soak(args.write_doc, result)
        except (OSError, ValueError, KeyError) as exc:
            print(f"picoproc bench soak: cannot store the result beside {args.write_doc}: "
                  f"{exc.__class__.__name__}: {exc}", file=sys.stderr)
            return 2
    return 0 if not (result["problems"] or result["errors"] or result["not_flat"]) else 1


def add_soak_parser(bench_subparsers) -> None:
    soak = bench_subparsers.add_parser("soak", help="many guests for minutes: results and monitor resources")
    soak.add_argument("--guests", type=int, default=64, help="guests at once (default 64)")
    soak.add_argument("--duration", type=float, default=600.0, help="seconds (default 600)")
    soak.add_argument("--json", metavar="FILE", help="write the result as JSON")
    soak.add_argument("--write-doc", metavar="FILE", help="store the result in the security report's result "
                      "beside FILE (security.json) and render FILE again: docs/SECURITY.md")
    soak.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")
    soak.set_defaults(func=cmd_soak)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m picoproc.bench.soak")
    sub = ap.add_subparsers(dest="cmd")
    add_soak_parser(sub)
    args = ap.parse_args(["soak", *(argv if argv is not None else sys.argv[1:])])
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
