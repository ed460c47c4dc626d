/* Calls programs make in passing: file advice and copies, resource usage,
 * flock, and the real-time interval timer (alarm). */
#include "libos.h"

#include <linux/fadvise.h>

/* Implements Linux syscall fadvise64(2): advice only; the fd and the advice
 * are checked as Linux checks them. */
LIBOS_SYSCALL(fadvise64)
{
	struct stat st;
	long r = sys2(__NR_fstat, (int)a0, &st);
	if (r < 0)
		return r;
	if ((st.st_mode & S_IFMT) == S_IFIFO)
		return -ESPIPE;
	if ((unsigned long)a3 > POSIX_FADV_NOREUSE || a2 < 0)
		return -EINVAL;
	return 0;
}

/* Implements Linux syscall copy_file_range(2) with pread/pwrite (or
 * read/write on the fds' offsets) through a bounce buffer. */
LIBOS_SYSCALL(copy_file_range)
{
	int in_fd = (int)a0, out_fd = (int)a2;
	long *in_offp = (long *)a1, *out_offp = (long *)a3;
	size_t len = (size_t)a4;
	long in_off = 0, out_off = 0, r;
	char buf[2048];
	if (a5 != 0)
		return -EINVAL;
	if (in_offp && (r = libos_copy_from_guest(&in_off, in_offp, sizeof(in_off))) < 0)
		return r;
	if (out_offp && (r = libos_copy_from_guest(&out_off, out_offp, sizeof(out_off))) < 0)
		return r;
	if (in_off < 0 || out_off < 0)
		return -EINVAL;
	size_t done = 0;
	while (done < len) {
		size_t want = len - done < sizeof(buf) ? len - done : sizeof(buf);
		long n = in_offp ? sys4(__NR_pread64, in_fd, buf, want, in_off) : sys3(__NR_read, in_fd, buf, want);
		if (n <= 0) {
			if (done == 0 && n < 0)
				return n;
			break;
		}
		long w = out_offp ? sys4(__NR_pwrite64, out_fd, buf, (size_t)n, out_off)
				  : sys3(__NR_write, out_fd, buf, (size_t)n);
		if (w <= 0) {
			if (!in_offp)
				sys3(__NR_lseek, in_fd, -n, 1 /* SEEK_CUR */);
			if (done == 0)
				return w < 0 ? w : -EIO;
			break;
		}
		if (!in_offp && w < n)
			sys3(__NR_lseek, in_fd, w - n, 1 /* SEEK_CUR */);
		done += (size_t)w;
		in_off += w;
		out_off += w;
		if (w < n)
			break;
	}
	if (in_offp && (r = libos_copy_to_guest(in_offp, &in_off, sizeof(in_off))) < 0)
		return r;
	if (out_offp && (r = libos_copy_to_guest(out_offp, &out_off, sizeof(out_off))) < 0)
		return r;
	return (long)done;
}

/* ---- resource usage: CPU times from the CPU-time clocks ---- */

#define RUSAGE_SELF_K 0
#define RUSAGE_CHILDREN_K (-1)
#define RUSAGE_THREAD_K 1

static struct __kernel_old_timeval timeval_of_ns(uint64_t ns)
{
	struct __kernel_old_timeval tv = {(long)(ns / 1000000000ULL), (long)(ns % 1000000000ULL / 1000)};
	return tv;
}

/* Implements Linux syscall getrusage(2) from the caller's accounting, which
 * the monitor reads for it (task_info).  For a thread, and for children
 * (whose peak resident size Linux keeps but /proc does not show), what is
 * not known reads as zero. */
LIBOS_SYSCALL(getrusage)
{
	struct rusage ru;
	unsigned long ti[PICO_TASK_INFO_WORDS];
	int who = (int)a0;
	if (who != RUSAGE_SELF_K && who != RUSAGE_THREAD_K && who != RUSAGE_CHILDREN_K)
		return -EINVAL;
	long r = pico_task_info(who == RUSAGE_THREAD_K, ti);
	if (r < 0)
		return r;
	memset(&ru, 0, sizeof(ru));
	if (who == RUSAGE_CHILDREN_K) {
		ru.ru_utime = timeval_of_ns(ti[4]);
		ru.ru_stime = timeval_of_ns(ti[5]);
		ru.ru_minflt = (long)ti[9];
		ru.ru_majflt = (long)ti[10];
	} else {
		ru.ru_utime = timeval_of_ns(ti[2]);
		ru.ru_stime = timeval_of_ns(ti[3]);
		ru.ru_maxrss = (long)ti[6];
		ru.ru_minflt = (long)ti[7];
		ru.ru_majflt = (long)ti[8];
		ru.ru_nvcsw = (long)ti[11];
		ru.ru_nivcsw = (long)ti[12];
	}
	return libos_copy_to_guest((void *)a1, &ru, sizeof(ru));
}

/* Implements Linux syscall times(2) in clock ticks (USER_HZ = 100). */
LIBOS_SYSCALL(times)
{
	struct __kernel_timespec boot = {0, 0};
	unsigned long ti[PICO_TASK_INFO_WORDS];
	sys2(__NR_clock_gettime, CLOCK_BOOTTIME, &boot);
	if (a0) {
		long r = pico_task_info(0, ti);
		if (r < 0)
			return r;
		long tms[4] = {(long)(ti[2] / 10000000), (long)(ti[3] / 10000000), (long)(ti[4] / 10000000),
			       (long)(ti[5] / 10000000)};
		r = libos_copy_to_guest((void *)a0, tms, sizeof(tms));
		if (r < 0)
			return r;
	}
	return boot.tv_sec * 100 + boot.tv_nsec / 10000000;
}

/* Implements Linux syscall rt_sigpending(2): the thread's and the process's
 * pending signals that it blocks, as the monitor reads them for it. */
LIBOS_SYSCALL(rt_sigpending)
{
	unsigned long ti[PICO_TASK_INFO_WORDS];
	if ((size_t)a1 > sizeof(uint64_t))
		return -EINVAL;
	long r = pico_task_info(1, ti);
	if (r < 0)
		return r;
	uint64_t set = (ti[0] | ti[1]) & uc->uc_sigmask;
	return libos_copy_to_guest((void *)a0, &set, (size_t)a1);
}

/* ---- flock on open-file-description locks ---- */

#define LOCK_SH_K 1
#define LOCK_EX_K 2
#define LOCK_NB_K 4
#define LOCK_UN_K 8

struct flock_k {
	short l_type, l_whence;
	long l_start, l_len;
	int l_pid;
};

/* Implements Linux syscall flock(2) as a whole-file OFD lock (fcntl
 * F_OFD_SETLK[W]): both belong to the open file description and are released
 * when its last fd closes.  Unlike Linux, these locks do conflict with the
 * program's own fcntl record locks on the same file. */
LIBOS_SYSCALL(flock)
{
	int op = (int)a1;
	struct flock_k fl = {0, 0 /* SEEK_SET */, 0, 0, 0};
	switch (op & ~LOCK_NB_K) {
	case LOCK_SH_K: fl.l_type = F_RDLCK; break;
	case LOCK_EX_K: fl.l_type = F_WRLCK; break;
	case LOCK_UN_K: fl.l_type = F_UNLCK; break;
	default: return -EINVAL;
	}
	long r = sys3(__NR_fcntl, (int)a0, (op & LOCK_NB_K) ? F_OFD_SETLK : F_OFD_SETLKW, &fl);
	if (r == -EAGAIN || r == -EACCES)
		return -EWOULDBLOCK;
	return r;
}

/* ---- alarm and the ITIMER_REAL interval timer ----
 * The ABI has no timer call.  A helper process (a fork of this one, with no
 * exit signal so the program's wait() never sees it) sleeps on the
 * monotonic clock until the deadline, sends SIGALRM to its parent, and for
 * an interval timer sleeps again.  Cancelling kills and reaps it.  Timers
 * belong to the process: a fork child starts without one (the owner pid is
 * checked).  Known gap: an alarm pending across execve keeps firing, but
 * the new image cannot cancel or query it. */
/* The timer is the process's state (libos_current()->itimer). */

#define NS_PER_S 1000000000ULL
#define WCLONE_K 0x80000000
#define WNOHANG_K 1

static uint64_t monotonic_ns(void)
{
	struct __kernel_timespec ts = {0, 0};
	sys2(__NR_clock_gettime, CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * NS_PER_S + (uint64_t)ts.tv_nsec;
}

static void __attribute__((noreturn)) helper_main(long parent, uint64_t deadline, uint64_t interval)
{
	for (;;) {
		struct __kernel_timespec ts = {(long)(deadline / NS_PER_S), (long)(deadline % NS_PER_S)};
		while (sys4(__NR_clock_nanosleep, CLOCK_MONOTONIC, 1 /* TIMER_ABSTIME */, &ts, 0) == -EINTR)
			;
		/* The parent died and the pid may be reused: signal nobody. */
		if (sys0(__NR_getppid) != parent)
			break;
		sys2(__NR_kill, parent, SIGALRM);
		if (!interval)
			break;
		deadline += interval;
	}
	for (;;)
		sys1(__NR_exit, 0);
}

/* The lock is held with every signal but SIGSYS blocked: a SIGALRM handler
 * that re-arms the alarm must not interrupt its own thread inside the
 * critical section and spin on the lock forever.  (The library OS runs in
 * the loader's range, where rt_sigprocmask is direct.) */
static uint64_t itimer_lock(struct libos_itimer *itimer)
{
	uint64_t all = ~(1ULL << (SIGSYS - 1)), old = 0;
	sys4(__NR_rt_sigprocmask, SIG_BLOCK, &all, &old, sizeof(uint64_t));
	libos_lock(&itimer->lock);
	return old;
}

static void itimer_unlock(struct libos_itimer *itimer, uint64_t old)
{
	libos_unlock(&itimer->lock);
	sys4(__NR_rt_sigprocmask, SIG_SETMASK, &old, 0, sizeof(uint64_t));
}

/* Stops the current timer (if this process owns one); returns the time it
 * had left, in ns (0: none or already fired). */
static uint64_t itimer_stop(struct libos_itimer *itimer, long self)
{
	uint64_t left = 0;
	if (itimer->owner != self) {
		/* Inherited through fork: not ours, and its helper is not our child. */
		itimer->owner = self;
		itimer->helper = 0;
		return 0;
	}
	if (itimer->helper) {
		uint64_t now = monotonic_ns();
		if (itimer->deadline_ns > now)
			left = itimer->deadline_ns - now;
		else if (itimer->interval_ns)
			left = itimer->interval_ns - (now - itimer->deadline_ns) % itimer->interval_ns;
		sys2(__NR_kill, itimer->helper, SIGKILL);
		sys4(__NR_wait4, itimer->helper, 0, WCLONE_K, 0);
		itimer->helper = 0;
	}
	return left;
}

static long itimer_start(struct libos_itimer *itimer, long self, uint64_t delay_ns, uint64_t interval_ns)
{
	uint64_t deadline = monotonic_ns() + delay_ns;
	long pid = sys5(__NR_clone, 0 /* no exit signal */, 0, 0, 0, 0);
	if (pid == 0)
		helper_main(self, deadline, interval_ns);
	if (pid < 0)
		return pid;
	itimer->helper = pid;
	itimer->deadline_ns = deadline;
	itimer->interval_ns = interval_ns;
	return 0;
}

/* Implements Linux syscall alarm(2): returns the seconds left on the
 * previous alarm (rounded up, as Linux). */
LIBOS_SYSCALL(alarm)
{
	unsigned seconds = (unsigned)a0;
	long self = sys0(__NR_getpid);
	struct libos_itimer *itimer = &libos_current()->itimer;
	uint64_t mask = itimer_lock(itimer);
	uint64_t left = itimer_stop(itimer, self);
	long r = seconds ? itimer_start(itimer, self, (uint64_t)seconds * NS_PER_S, 0) : 0;
	itimer_unlock(itimer, mask);
	if (r < 0)
		return r;
	return (long)((left + NS_PER_S - 1) / NS_PER_S);
}

#define ITIMER_REAL_K 0

static uint64_t tv_ns(const struct __kernel_old_timeval *tv)
{
	return (uint64_t)tv->tv_sec * NS_PER_S + (uint64_t)tv->tv_usec * 1000;
}

static struct __kernel_old_timeval ns_tv(uint64_t ns)
{
	struct __kernel_old_timeval tv = {(long)(ns / NS_PER_S), (long)((ns % NS_PER_S + 999) / 1000)};
	if (tv.tv_usec == 1000000) {
		tv.tv_sec++;
		tv.tv_usec = 0;
	}
	return tv;
}

/* Implements Linux syscall getitimer(2): ITIMER_REAL here, the CPU-time
 * timers in sys_timer.c. */
LIBOS_SYSCALL(getitimer)
{
	struct itimerval_k v;
	memset(&v, 0, sizeof(v));
	if ((int)a0 == ITIMER_VIRTUAL || (int)a0 == ITIMER_PROF) {
		libos_cpu_getitimer((int)a0, &v);
		return libos_copy_to_guest((void *)a1, &v, sizeof(v));
	}
	if ((int)a0 != ITIMER_REAL_K)
		return -EINVAL;
	long self = sys0(__NR_getpid);
	struct libos_itimer *itimer = &libos_current()->itimer;
	uint64_t mask = itimer_lock(itimer);
	if (itimer->owner == self && itimer->helper) {
		uint64_t now = monotonic_ns();
		uint64_t left = itimer->deadline_ns > now ? itimer->deadline_ns - now
			      : itimer->interval_ns ? itimer->interval_ns - (now - itimer->deadline_ns) % itimer->interval_ns
						   : 0;
		v.value = ns_tv(left);
		v.interval = ns_tv(itimer->interval_ns);
	}
	itimer_unlock(itimer, mask);
	return libos_copy_to_guest((void *)a1, &v, sizeof(v));
}

/* Implements Linux syscall setitimer(2): ITIMER_REAL here, the CPU-time
 * timers in sys_timer.c. */
LIBOS_SYSCALL(setitimer)
{
	struct itimerval_k nv, old;
	long r;
	if ((unsigned)a0 > ITIMER_PROF)
		return -EINVAL;
	if (a1) {
		if ((r = libos_copy_from_guest(&nv, (const void *)a1, sizeof(nv))) < 0)
			return r;
		if (nv.value.tv_usec < 0 || nv.value.tv_usec >= 1000000 || nv.interval.tv_usec < 0 ||
		    nv.interval.tv_usec >= 1000000 || nv.value.tv_sec < 0 || nv.interval.tv_sec < 0)
			return -EINVAL;
	} else {
		memset(&nv, 0, sizeof(nv));
	}
	if ((int)a0 != ITIMER_REAL_K) {
		if ((r = libos_cpu_setitimer((int)a0, &nv, &old)) < 0)
			return r;
		return a2 ? libos_copy_to_guest((void *)a2, &old, sizeof(old)) : 0;
	}
	if (a2 && (r = libos_sys_getitimer(a0, a2, 0, 0, 0, 0, uc)) < 0)
		return r;
	long self = sys0(__NR_getpid);
	struct libos_itimer *itimer = &libos_current()->itimer;
	uint64_t mask = itimer_lock(itimer);
	itimer_stop(itimer, self);
	r = 0;
	if (tv_ns(&nv.value))
		r = itimer_start(itimer, self, tv_ns(&nv.value), tv_ns(&nv.interval));
	itimer_unlock(itimer, mask);
	return r;
}
