/* Old or convenience forms of direct calls, rewritten onto the direct call
 * the ABI keeps (poll -> ppoll, dup2 -> dup3, pipe -> pipe2, ...), and small
 * virtual answers (sched_yield, process groups). */
#include "libos.h"

#define POLLIN_SET (POLLIN | POLLHUP | POLLERR)
#define POLLOUT_SET (POLLOUT | POLLERR)
#define POLLEX_SET (POLLPRI)
/* select() sets on the stack up to this many fds; more use a scratch mmap
 * (the handler may be running on a small sigaltstack). */
#define SELECT_STACK_FDS 64

/* Implements Linux syscall nanosleep(2) (on the monotonic clock, as Linux). */
LIBOS_SYSCALL(nanosleep)
{
	return sys4(__NR_clock_nanosleep, CLOCK_MONOTONIC, 0, a0, a1);
}

/* Implements Linux syscall poll(2). */
LIBOS_SYSCALL(poll)
{
	int timeout_ms = (int)a2;
	struct __kernel_timespec ts, *tsp = NULL;
	if (timeout_ms >= 0) {
		ts.tv_sec = timeout_ms / 1000;
		ts.tv_nsec = (long)(timeout_ms % 1000) * 1000000L;
		tsp = &ts;
	}
	return sys5(__NR_ppoll, a0, a1, tsp, 0, sizeof(uint64_t));
}

/* The shared body of select(2) and pselect6(2): fd sets -> pollfd array ->
 * ppoll -> fd sets. */
static long select_via_ppoll(int nfds, unsigned long *rset, unsigned long *wset, unsigned long *eset,
			     struct __kernel_timespec *tsp, const uint64_t *sigmask)
{
	const size_t word_bits = 8 * sizeof(unsigned long);
	if (nfds < 0 || nfds > LIBOS_FD_SETSIZE)
		return -EINVAL;
	size_t words = ((size_t)nfds + word_bits - 1) / word_bits;
	unsigned long sets[3][LIBOS_FD_SETSIZE / (8 * sizeof(unsigned long))];
	unsigned long *user[3] = {rset, wset, eset};
	for (int k = 0; k < 3; k++) {
		memset(sets[k], 0, sizeof(sets[k]));
		if (user[k]) {
			long r = libos_copy_from_guest(sets[k], user[k], words * sizeof(unsigned long));
			if (r < 0)
				return r;
		}
	}
	size_t count = 0;
	for (int fd = 0; fd < nfds; fd++)
		if ((sets[0][fd / word_bits] | sets[1][fd / word_bits] | sets[2][fd / word_bits]) &
		    (1UL << (fd % word_bits)))
			count++;
	struct pollfd small[SELECT_STACK_FDS];
	struct pollfd *pfds = small;
	size_t map_len = 0;
	if (count > SELECT_STACK_FDS) {
		map_len = (count * sizeof(struct pollfd) + PAGE_SIZE_K - 1) & ~(PAGE_SIZE_K - 1);
		long m = sys6(__NR_mmap, 0, map_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (m < 0)
			return m;
		pfds = (struct pollfd *)m;
	}
	size_t i = 0;
	for (int fd = 0; fd < nfds; fd++) {
		unsigned long bit = 1UL << (fd % word_bits);
		short ev = 0;
		if (sets[0][fd / word_bits] & bit)
			ev |= POLLIN;
		if (sets[1][fd / word_bits] & bit)
			ev |= POLLOUT;
		if (sets[2][fd / word_bits] & bit)
			ev |= POLLPRI;
		if (ev) {
			pfds[i].fd = fd;
			pfds[i].events = ev;
			pfds[i].revents = 0;
			i++;
		}
	}
	long r = sys5(__NR_ppoll, pfds, count, tsp, sigmask, sizeof(uint64_t));
	if (r >= 0) {
		long ready = 0;
		for (int k = 0; k < 3; k++)
			memset(sets[k], 0, sizeof(sets[k]));
		for (i = 0; i < count; i++) {
			int fd = pfds[i].fd;
			unsigned long bit = 1UL << (fd % word_bits);
			short re = pfds[i].revents;
			if (re & POLLNVAL) {
				r = -EBADF;
				break;
			}
			if ((re & POLLIN_SET) && (pfds[i].events & POLLIN)) {
				sets[0][fd / word_bits] |= bit;
				ready++;
			}
			if ((re & POLLOUT_SET) && (pfds[i].events & POLLOUT)) {
				sets[1][fd / word_bits] |= bit;
				ready++;
			}
			if ((re & POLLEX_SET) && (pfds[i].events & POLLPRI)) {
				sets[2][fd / word_bits] |= bit;
				ready++;
			}
		}
		if (r >= 0) {
			r = ready;
			for (int k = 0; k < 3 && r >= 0; k++)
				if (user[k]) {
					long w = libos_copy_to_guest(user[k], sets[k], words * sizeof(unsigned long));
					if (w < 0)
						r = w;
				}
		}
	}
	if (map_len)
		sys2(__NR_munmap, pfds, map_len);
	return r;
}

/* Implements Linux syscall select(2).  (Linux also writes back the time
 * left; this does not.) */
LIBOS_SYSCALL(select)
{
	struct __kernel_timespec ts, *tsp = NULL;
	if (a4) {
		struct __kernel_old_timeval tv;
		long r = libos_copy_from_guest(&tv, (const void *)a4, sizeof(tv));
		if (r < 0)
			return r;
		if (tv.tv_sec < 0 || tv.tv_usec < 0)
			return -EINVAL;
		ts.tv_sec = tv.tv_sec + tv.tv_usec / 1000000;
		ts.tv_nsec = (tv.tv_usec % 1000000) * 1000;
		tsp = &ts;
	}
	return select_via_ppoll((int)a0, (unsigned long *)a1, (unsigned long *)a2, (unsigned long *)a3, tsp, NULL);
}

/* Implements Linux syscall pselect6(2). */
LIBOS_SYSCALL(pselect6)
{
	struct __kernel_timespec ts, *tsp = NULL;
	uint64_t mask, *maskp = NULL;
	if (a4) {
		long r = libos_copy_from_guest(&ts, (const void *)a4, sizeof(ts));
		if (r < 0)
			return r;
		tsp = &ts;
	}
	if (a5) {
		struct {
			const uint64_t *set;
			size_t size;
		} arg;
		long r = libos_copy_from_guest(&arg, (const void *)a5, sizeof(arg));
		if (r < 0)
			return r;
		if (arg.set) {
			if (arg.size != sizeof(uint64_t))
				return -EINVAL;
			r = libos_copy_from_guest(&mask, arg.set, sizeof(mask));
			if (r < 0)
				return r;
			/* SIGSYS must stay deliverable: a trap while it is blocked
			 * kills the process. */
			mask &= ~(1ULL << (SIGSYS - 1));
			maskp = &mask;
		}
	}
	return select_via_ppoll((int)a0, (unsigned long *)a1, (unsigned long *)a2, (unsigned long *)a3, tsp, maskp);
}

/* Implements Linux syscall dup(2); the copy names what the original does. */
LIBOS_SYSCALL(dup)
{
	long r = sys3(__NR_fcntl, (unsigned)a0, F_DUPFD, 0);
	if (r >= 0)
		libos_fd_copy((unsigned)a0, r);
	return r;
}

/* Implements Linux syscall dup2(2): dup3 refuses old == new, dup2 checks the
 * fd and returns it.  As on Linux, a target at or above RLIMIT_NOFILE is
 * EBADF: the virtual limit is the loader fd's number, so a guest can never
 * replace the loader fd (execve needs it) through dup2. */
LIBOS_SYSCALL(dup2)
{
	unsigned oldfd = (unsigned)a0, newfd = (unsigned)a1;
	if (libos_fd_is_picoprocs(newfd) || newfd >= libos_current()->rlimits[RLIMIT_NOFILE].rlim_cur)
		return -EBADF;
	if (oldfd == newfd) {
		long r = sys2(__NR_fcntl, oldfd, F_GETFD);
		return r < 0 ? r : newfd;
	}
	long r = sys3(__NR_dup3, oldfd, newfd, 0);
	if (r >= 0)
		libos_fd_copy(oldfd, newfd);
	return r;
}

/* The highest fd number an int can hold: the filter allows close and dup3
 * on every fd up to it except the loader fd. */
#define FD_MAX_K 0x7fffffffU

/* Implements Linux syscall close(2) for the forms the filter traps:
 * picoproc's own fds (they lie beyond the guest's RLIMIT_NOFILE, so they
 * "are not open": EBADF), other fds at or above PICO_RESERVED_FD_BASE, and
 * values with garbage in the upper half, which the kernel takes as an
 * unsigned int, as here. */
LIBOS_SYSCALL(close)
{
	unsigned fd = (unsigned)a0;
	if (libos_fd_is_picoprocs(fd) || fd > FD_MAX_K)
		return -EBADF;
	return sys1(__NR_close, fd);
}

/* Implements Linux syscall dup3(2) for the forms the filter traps (newfd at
 * or above PICO_RESERVED_FD_BASE, or garbage in the upper half of an
 * argument). */
LIBOS_SYSCALL(dup3)
{
	unsigned oldfd = (unsigned)a0, newfd = (unsigned)a1;
	if (libos_fd_is_picoprocs(newfd) || newfd > FD_MAX_K)
		return -EBADF;
	long r = sys3(__NR_dup3, oldfd, newfd, (int)a2);
	if (r >= 0)
		libos_fd_copy(oldfd, newfd);
	return r;
}

/* Implements Linux syscall pipe(2). */
LIBOS_SYSCALL(pipe) { return sys2(__NR_pipe2, a0, 0); }

/* Implements Linux syscall pipe2(2) for the flags the filter does not pass
 * directly.  A notification pipe (O_NOTIFICATION_PIPE, a watch_queue) gets
 * what a kernel built without watch queues answers; other unknown flags
 * EINVAL, as pipe2(2) says.  Garbage above the int is ignored, as Linux does. */
LIBOS_SYSCALL(pipe2)
{
	int flags = (int)a1;
	if (flags & ~(O_CLOEXEC | O_NONBLOCK | O_DIRECT))
		return (flags & O_NOTIFICATION_PIPE_K) ? -ENOPKG : -EINVAL;
	return sys2(__NR_pipe2, a0, flags);
}

/* Implements Linux syscall epoll_wait(2). */
LIBOS_SYSCALL(epoll_wait) { return sys6(__NR_epoll_pwait, a0, a1, a2, a3, 0, sizeof(uint64_t)); }

/* Implements Linux syscall epoll_create(2): size is obsolete but must be > 0. */
LIBOS_SYSCALL(epoll_create)
{
	if ((int)a0 <= 0)
		return -EINVAL;
	return sys1(__NR_epoll_create1, 0);
}

/* Implements Linux syscall sched_yield(2): a hint; the trap round trip that
 * brought us here already gave the scheduler a chance. */
LIBOS_SYSCALL(sched_yield) { return 0; }

/* Implements Linux syscall time(2) on clock_gettime. */
LIBOS_SYSCALL(time)
{
	struct __kernel_timespec ts;
	long r = sys2(__NR_clock_gettime, CLOCK_REALTIME, &ts);
	if (r < 0)
		return r;
	if (a0) {
		long t = ts.tv_sec;
		r = libos_copy_to_guest((void *)a0, &t, sizeof(t));
		if (r < 0)
			return r;
	}
	return ts.tv_sec;
}

/* Implements Linux syscall gettimeofday(2) on clock_gettime (the time zone
 * argument is obsolete; it reads as UTC). */
LIBOS_SYSCALL(gettimeofday)
{
	struct __kernel_timespec ts;
	long r = sys2(__NR_clock_gettime, CLOCK_REALTIME, &ts);
	if (r < 0)
		return r;
	if (a0) {
		struct __kernel_old_timeval tv = {ts.tv_sec, ts.tv_nsec / 1000};
		r = libos_copy_to_guest((void *)a0, &tv, sizeof(tv));
		if (r < 0)
			return r;
	}
	if (a1) {
		int tz[2] = {0, 0};
		r = libos_copy_to_guest((void *)a1, tz, sizeof(tz));
		if (r < 0)
			return r;
	}
	return 0;
}

/* ---- process groups and sessions: virtual ----
 * The picoprocess is one session with no controlling terminal.  A process's
 * own group and session ids are tracked (fork copies them, exec passes them
 * on); asking about or moving another process answers as if it were in the
 * caller's group. */
static long own_pid(void) { return sys0(__NR_getpid); }

static long process_exists(long pid)
{
	long r = sys2(__NR_kill, pid, 0);
	return r == -EPERM ? 0 : r;
}

/* Implements Linux syscall getpgrp(2). */
LIBOS_SYSCALL(getpgrp) { return libos_current()->pub.pgid; }

/* Implements Linux syscall getpgid(2). */
LIBOS_SYSCALL(getpgid)
{
	if (a0 < 0)
		return -EINVAL;
	if (a0 == 0 || a0 == own_pid())
		return libos_current()->pub.pgid;
	long r = process_exists(a0);
	return r < 0 ? r : libos_current()->pub.pgid;
}

/* Implements Linux syscall setpgid(2). */
LIBOS_SYSCALL(setpgid)
{
	long pid = a0, pgid = a1;
	if (pid < 0 || pgid < 0)
		return -EINVAL;
	long self = own_pid();
	if (pid == 0 || pid == self) {
		struct libos_process *proc = libos_current();
		if (proc->pub.sid == self)
			return -EPERM; /* a session leader cannot change group */
		proc->pub.pgid = pgid ? pgid : self;
		return 0;
	}
	return process_exists(pid);
}

/* Implements Linux syscall getsid(2). */
LIBOS_SYSCALL(getsid)
{
	if (a0 < 0)
		return -EINVAL;
	if (a0 == 0 || a0 == own_pid())
		return libos_current()->pub.sid;
	long r = process_exists(a0);
	return r < 0 ? r : libos_current()->pub.sid;
}

/* Implements Linux syscall setsid(2). */
LIBOS_SYSCALL(setsid)
{
	long self = own_pid();
	struct libos_process *proc = libos_current();
	if (proc->pub.pgid == self)
		return -EPERM; /* already a group leader */
	proc->pub.pgid = proc->pub.sid = self;
	return self;
}

/* close_range(2) flags (<linux/close_range.h>) */
#define CLOSE_RANGE_UNSHARE_K (1U << 1)
#define CLOSE_RANGE_CLOEXEC_K (1U << 2)
/* Above the loader fd, fds are closed one by one up to this bound: the
 * library OS cannot list the fd table, and the guest's fd limit (virtual) is
 * below the loader fd anyway. */
#define CLOSE_RANGE_SCAN_ABOVE_LOADER 1024

/* Implements Linux syscall close_range(2) with close/fcntl on each fd,
 * sparing picoproc's own (execve needs the loader fd, mediated calls the
 * argument area's). */
LIBOS_SYSCALL(close_range)
{
	unsigned first = (unsigned)a0, last = (unsigned)a1, flags = (unsigned)a2;
	if (flags & ~(CLOSE_RANGE_UNSHARE_K | CLOSE_RANGE_CLOEXEC_K))
		return -EINVAL;
	if (first > last)
		return -EINVAL;
	unsigned end = PICO_LOADER_FD + CLOSE_RANGE_SCAN_ABOVE_LOADER;
	if (last > end)
		last = end;
	for (unsigned fd = first; fd <= last; fd++) {
		if (libos_fd_is_picoprocs(fd))
			continue;
		if (flags & CLOSE_RANGE_CLOEXEC_K)
			sys3(__NR_fcntl, fd, F_SETFD, FD_CLOEXEC);
		else
			sys1(__NR_close, fd);
	}
	return 0;
}

/* ---- CPUs: virtual, the count the monitor chose (--cpus) ---- */

/* The CPUs the program chose (sched_setaffinity on itself) are recorded as
 * a mask of the virtual ones in libos_current()->chosen_cpus (0: all of
 * them), for the process (Linux keeps one per thread); placement stays the
 * host's. */

/* Implements Linux syscall sched_getaffinity(2): CPUs 0..cpus-1 (or those
 * the program chose), for the caller or any process of the picoprocess. */
LIBOS_SYSCALL(sched_getaffinity)
{
	size_t len = (size_t)a1;
	uint64_t mask[16];
	unsigned cpus = libos_proc.cpus;
	if (a0 < 0)
		return -ESRCH;
	int self = a0 == 0 || a0 == sys0(__NR_getpid);
	if (!self && sys2(__NR_kill, a0, 0) == -ESRCH)
		return -ESRCH;
	size_t need = (((size_t)cpus + 63) / 64) * 8;
	if (len < need || (len & 7))
		return -EINVAL;
	memset(mask, 0, sizeof(mask));
	const uint64_t *chosen_cpus = libos_current()->chosen_cpus;
	int chosen = 0;
	for (unsigned i = 0; i < 16; i++)
		chosen |= chosen_cpus[i] != 0;
	for (unsigned i = 0; i < cpus && i < 1024; i++)
		if (!self || !chosen || (chosen_cpus[i / 64] & (1ULL << (i % 64))))
			mask[i / 64] |= 1ULL << (i % 64);
	long r = libos_copy_to_guest((void *)a2, mask, need);
	return r < 0 ? r : (long)need;
}

/* Implements Linux syscall sched_setaffinity(2): accepted when the mask
 * names at least one of the picoprocess's CPUs, and recorded for the
 * caller's own process. */
LIBOS_SYSCALL(sched_setaffinity)
{
	size_t len = (size_t)a1;
	uint64_t mask[16];
	if (a0 < 0)
		return -ESRCH;
	int self = a0 == 0 || a0 == sys0(__NR_getpid);
	if (!self && sys2(__NR_kill, a0, 0) == -ESRCH)
		return -ESRCH;
	memset(mask, 0, sizeof(mask));
	size_t take = len < sizeof(mask) ? len : sizeof(mask);
	long r = libos_copy_from_guest(mask, (const void *)a2, take);
	if (r < 0)
		return r;
	unsigned cpus = libos_proc.cpus < 1024 ? libos_proc.cpus : 1024;
	uint64_t ours[16];
	int any = 0;
	memset(ours, 0, sizeof(ours));
	for (unsigned i = 0; i < cpus; i++)
		if (mask[i / 64] & (1ULL << (i % 64))) {
			ours[i / 64] |= 1ULL << (i % 64);
			any = 1;
		}
	if (!any)
		return -EINVAL;
	if (self)
		memcpy(libos_current()->chosen_cpus, ours, sizeof(ours));
	return 0;
}

/* Implements Linux syscall getcpu(2): CPU 0, node 0 (the vDSO normally
 * answers this without a trap). */
LIBOS_SYSCALL(getcpu)
{
	unsigned zero = 0;
	long r;
	if (a0 && (r = libos_copy_to_guest((void *)a0, &zero, sizeof(zero))) < 0)
		return r;
	if (a1 && (r = libos_copy_to_guest((void *)a1, &zero, sizeof(zero))) < 0)
		return r;
	return 0;
}

/* Implements Linux syscall sendfile(2) with pread/read and write through a
 * bounce buffer on the stack (a short count is what sendfile may return). */
LIBOS_SYSCALL(sendfile)
{
	int out_fd = (int)a0, in_fd = (int)a1;
	long *offp = (long *)a2;
	size_t count = (size_t)a3;
	char buf[2048];
	long off = 0, r;
	if (offp) {
		r = libos_copy_from_guest(&off, offp, sizeof(off));
		if (r < 0)
			return r;
		if (off < 0)
			return -EINVAL;
	}
	size_t done = 0;
	while (done < count) {
		size_t want = count - done < sizeof(buf) ? count - done : sizeof(buf);
		long n = offp ? sys4(__NR_pread64, in_fd, buf, want, off) : sys3(__NR_read, in_fd, buf, want);
		if (n <= 0) {
			if (done == 0 && n < 0)
				return n;
			break;
		}
		long w = sys3(__NR_write, out_fd, buf, (size_t)n);
		if (w <= 0) {
			if (done == 0)
				return w < 0 ? w : -EIO;
			break;
		}
		if (!offp && w < n)
			sys3(__NR_lseek, in_fd, w - n, 1 /* SEEK_CUR */); /* give back what was not written */
		done += (size_t)w;
		off += w;
		if (w < n)
			break;
	}
	if (offp && (r = libos_copy_to_guest(offp, &off, sizeof(off))) < 0)
		return r;
	return (long)done;
}

/* prctl(2) options (<linux/prctl.h>) */
#define PR_SET_PDEATHSIG_K 1
#define PR_GET_PDEATHSIG_K 2
#define PR_GET_DUMPABLE_K 3
#define PR_SET_DUMPABLE_K 4
#define PR_SET_NAME_K 15
#define PR_GET_NAME_K 16
#define PR_CAPBSET_READ_K 23
#define PR_SET_NO_NEW_PRIVS_K 38
#define PR_GET_NO_NEW_PRIVS_K 39

#define PR_GET_KEEPCAPS_K 7
#define PR_SET_KEEPCAPS_K 8
#define PR_GET_SECCOMP_K 21
#define PR_CAPBSET_DROP_K 24
#define PR_GET_TIMERSLACK_K 30
#define PR_SET_TIMERSLACK_K 29
#define PR_SET_CHILD_SUBREAPER_K 36
#define PR_GET_CHILD_SUBREAPER_K 37
#define PR_GET_THP_DISABLE_K 42
#define PR_CAP_AMBIENT_K 47
#define PR_DEFAULT_TIMERSLACK_NS 50000

/* Implements Linux syscall prctl(2) for the options programs use to name
 * themselves and query their state; the rest answer EINVAL (as Linux does
 * for an option it does not know). */
LIBOS_SYSCALL(prctl)
{
	switch ((int)a0) {
	case PR_SET_NAME_K: {
		char name[16];
		long r = libos_copy_string_from_guest(name, (const char *)a1, sizeof(name));
		if (r == -ENAMETOOLONG) {
			/* Linux truncates to 15 bytes. */
			r = libos_copy_from_guest(name, (const void *)a1, 15);
			name[15] = 0;
		}
		if (r < 0)
			return r;
		/* The process name (comm) is virtual: recorded, never the host's. */
		memcpy(libos_current()->pub.comm, name, sizeof(name));
		return 0;
	}
	case PR_GET_NAME_K: {
		char name[16];
		memset(name, 0, sizeof(name));
		struct libos_process *proc = libos_current();
		if (proc->pub.comm[0]) {
			memcpy(name, proc->pub.comm, sizeof(name));
		} else {
			const char *base = libos_public.exe;
			for (const char *q = libos_public.exe; *q; q++)
				if (*q == '/')
					base = q + 1;
			memcpy(name, base, libos_strnlen(base, 15));
		}
		return libos_copy_to_guest((void *)a1, name, sizeof(name));
	}
	case PR_SET_PDEATHSIG_K:
		if ((unsigned long)a1 > 64)
			return -EINVAL;
		return libos_pdeathsig_set((int)a1);
	case PR_GET_PDEATHSIG_K: {
		int sig = libos_pdeathsig_get();
		return libos_copy_to_guest((void *)a1, &sig, sizeof(sig));
	}
	case PR_GET_DUMPABLE_K: return !libos_current()->not_dumpable;
	case PR_SET_DUMPABLE_K:
		if ((unsigned long)a1 > 1)
			return -EINVAL;
		libos_current()->not_dumpable = !a1;
		return 0;
	case PR_SET_CHILD_SUBREAPER_K:
		libos_current()->subreaper = a1 != 0;
		return 0;
	case PR_GET_CHILD_SUBREAPER_K: {
		int subreaper = libos_current()->subreaper;
		return libos_copy_to_guest((void *)a1, &subreaper, sizeof(subreaper));
	}
	case PR_GET_TIMERSLACK_K: {
		long slack = libos_current()->timerslack_ns;
		return slack ? slack : PR_DEFAULT_TIMERSLACK_NS;
	}
	case PR_SET_TIMERSLACK_K:
		libos_current()->timerslack_ns = (long)a1;
		return 0;
	case PR_GET_KEEPCAPS_K: return 0;
	case PR_SET_KEEPCAPS_K: return (unsigned long)a1 <= 1 ? 0 : -EINVAL;
	case PR_GET_SECCOMP_K: return 2; /* a filter is in force */
	case PR_GET_THP_DISABLE_K: return 0;
	case PR_CAPBSET_DROP_K: return (unsigned long)a1 < 64 ? -EPERM : -EINVAL;
	case PR_CAP_AMBIENT_K:
		/* IS_SET and CLEAR_ALL are answerable: the guest has no capability. */
		if (a1 == 1 /* IS_SET */)
			return (unsigned long)a2 < 64 ? 0 : -EINVAL;
		if (a1 == 4 /* CLEAR_ALL */)
			return 0;
		return a1 == 2 /* RAISE */ ? -EPERM : -EINVAL;
	case PR_CAPBSET_READ_K: return (unsigned long)a1 < 64 ? 0 : -EINVAL;
	case PR_SET_NO_NEW_PRIVS_K: return a1 == 1 ? 0 : -EINVAL; /* already set */
	case PR_GET_NO_NEW_PRIVS_K: return 1;
	default: return -EINVAL;
	}
}
