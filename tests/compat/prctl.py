"""prctl options runtimes use: name, dumpable, subreaper, timer slack, capabilities, and\nthe parent-death signal delivered to a child whose parent exited."""
import ctypes, os, signal, time
libc = ctypes.CDLL(None, use_errno=True)
def prctl(*a):
    r = libc.prctl(*[ctypes.c_ulong(x) if isinstance(x, int) else x for x in a] + [ctypes.c_ulong(0)] * (5 - len(a)))
    return r if r >= 0 else -ctypes.get_errno()
buf = ctypes.create_string_buffer(16)
print("name", prctl(15, b"worker-1"), prctl(16, buf), buf.value)
v = ctypes.c_int(-1)
print("dumpable", prctl(3), prctl(4, 0), prctl(3), prctl(4, 1), prctl(4, 7))
print("subreaper", prctl(37, ctypes.byref(v)), v.value, prctl(36, 1), prctl(37, ctypes.byref(v)), v.value)
print("pdeathsig", prctl(2, ctypes.byref(v)), v.value, prctl(1, signal.SIGUSR1), prctl(2, ctypes.byref(v)), v.value, prctl(1, 99))
print("slack", prctl(30) > 0, "keepcaps", prctl(7), "ambient", prctl(47, 1, 0), prctl(47, 4), prctl(47, 2, 0), prctl(24, 0))
# the child is told when its parent dies
r, w = os.pipe()
pid = os.fork()
if pid == 0:
    # the middle process: forks the watcher and exits
    if os.fork() == 0:
        got = []
        signal.signal(signal.SIGUSR1, lambda s, f: got.append(s))
        prctl(1, signal.SIGUSR1)
        os.write(w, b"r")
        deadline = time.monotonic() + 10
        while not got and time.monotonic() < deadline:
            time.sleep(0.01)
        os.write(w, b"got" if got else b"not")
        os._exit(0)
    os.read(r, 1)
    os._exit(0)
os.close(w)
os.waitpid(pid, 0)
print("child of a dead parent:", os.read(r, 3))
