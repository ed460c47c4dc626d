"""Calls on open files: scheduling policy reads, msync, pipe sizes, fallocate,
O_PATH, splice, sendfile (output compared with native)."""
import os, fcntl, mmap, errno, subprocess, sys, tempfile
d = tempfile.mkdtemp()
def t(name, f):
    try: print(name, f())
    except OSError as e: print(name, "ERR", errno.errorcode[e.errno])
t("sched_getparam", lambda: os.sched_getparam(0))
t("sched_getscheduler", lambda: os.sched_getscheduler(0))
t("prio", lambda: [(os.sched_get_priority_min(p), os.sched_get_priority_max(p)) for p in (os.SCHED_OTHER, os.SCHED_FIFO, os.SCHED_RR, os.SCHED_BATCH, os.SCHED_IDLE)])
t("setscheduler fifo", lambda: os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(10)))
t("setscheduler batch", lambda: os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0)))
t("rr", lambda: os.sched_rr_get_interval(0))
t("bad pid", lambda: os.sched_getscheduler(999999))
def ms():
    fd = os.open(d + "/m", os.O_CREAT | os.O_RDWR); os.ftruncate(fd, 8192)
    m = mmap.mmap(fd, 8192); m[:5] = b"hello"; m.flush(); m.flush(0, 4096)
    r = os.pread(fd, 5, 0)
    try: m.flush(1, 10)
    except OSError as e: r += b" " + errno.errorcode[e.errno].encode()
    return r
t("msync", ms)
def pipesz():
    r, w = os.pipe()
    out = [fcntl.fcntl(w, fcntl.F_GETPIPE_SZ), fcntl.fcntl(w, fcntl.F_SETPIPE_SZ, 32768), fcntl.fcntl(r, fcntl.F_GETPIPE_SZ),
           fcntl.fcntl(w, fcntl.F_SETPIPE_SZ, 5000)]
    try: fcntl.fcntl(w, fcntl.F_SETPIPE_SZ, 1 << 24)
    except OSError as e: out.append(errno.errorcode[e.errno])
    try: fcntl.fcntl(os.open(d, os.O_RDONLY), fcntl.F_GETPIPE_SZ)
    except OSError as e: out.append(errno.errorcode[e.errno])
    return out
t("pipesz", pipesz)
def fa():
    fd = os.open(d + "/fa", os.O_CREAT | os.O_RDWR)
    os.posix_fallocate(fd, 0, 10000); a = os.fstat(fd).st_size
    os.write(fd, b"xyz"); os.posix_fallocate(fd, 100, 10); b = os.fstat(fd).st_size
    try: os.posix_fallocate(fd, -1, 10)
    except OSError as e: b = (b, errno.errorcode[e.errno])
    ro = os.open(d + "/fa", os.O_RDONLY)
    try: os.posix_fallocate(ro, 0, 10)
    except OSError as e: b = (b, errno.errorcode[e.errno])
    return a, b, os.pread(fd, 4, 0)
t("fallocate", fa)
def op():
    fd = os.open(d, os.O_PATH); fd2 = os.open(d + "/fa", os.O_PATH | os.O_RDWR)
    out = [oct(os.fstat(fd).st_mode)[:4], oct(os.fstat(fd2).st_mode)[:4], sorted(os.listdir(d))[:1]]
    out.append(os.stat("fa", dir_fd=fd).st_size)
    return out
t("opath", op)
def spl():
    r, w = os.pipe(); os.write(w, b"hello world")
    fd = os.open(d + "/sp", os.O_CREAT | os.O_RDWR)
    n = os.splice(r, fd, 5); n2 = os.splice(r, fd, 100, offset_dst=20)
    r2, w2 = os.pipe(); n3 = os.splice(fd, w2, 3, offset_src=1)
    out = [n, n2, n3, os.read(r2, 10), os.pread(fd, 30, 0)]
    try: os.splice(fd, fd, 1)
    except OSError as e: out.append(errno.errorcode[e.errno])
    return out
t("splice", spl)
def sf():
    fd = os.open(d + "/sp", os.O_RDONLY); r, w = os.pipe()
    return os.sendfile(w, fd, 0, 5), os.read(r, 5), os.copy_file_range(fd, os.open(d + "/cfr", os.O_CREAT | os.O_WRONLY), 4)
t("sendfile", sf)
def vec():
    fd = os.open(d + "/vec", os.O_CREAT | os.O_RDWR)
    n = os.pwritev(fd, [b"abc", b"", b"defg"], 2)
    a, b = bytearray(2), bytearray(10)
    m = os.preadv(fd, [a, b], 1)
    return n, m, bytes(a), bytes(b[:m - 2]), os.pread(fd, 20, 0)
t("preadv/pwritev", vec)
def prio():
    base = os.getpriority(os.PRIO_PROCESS, 0)
    os.setpriority(os.PRIO_PROCESS, 0, base + 2)
    out = [os.getpriority(os.PRIO_PROCESS, os.getpid()) - base]
    try: os.setpriority(os.PRIO_PROCESS, 0, base)
    except OSError as e: out.append(errno.errorcode[e.errno])
    # A child inherits the nice value, and keeps it across exec.
    child = subprocess.check_output([sys.executable, "-c", "import os; print(os.getpriority(os.PRIO_PROCESS, 0))"])
    out.append(int(child) - base)
    return out
t("nice", prio)
def aff():
    cpus = os.sched_getaffinity(0)
    one = {min(cpus)}
    os.sched_setaffinity(0, one)
    out = [os.sched_getaffinity(0) == one]
    os.sched_setaffinity(0, cpus)
    out.append(os.sched_getaffinity(0) == cpus)
    try: os.sched_setaffinity(0, {4095})
    except OSError as e: out.append(errno.errorcode[e.errno])
    return out
t("affinity", aff)
