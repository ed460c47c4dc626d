/* Scheduling policy and priority: every guest process runs under
 * SCHED_OTHER at priority 0 and, being unprivileged, cannot leave it (as
 * natively for a user without CAP_SYS_NICE). */
#include "libos.h"

#define SCHED_OTHER_K 0
#define SCHED_FIFO_K 1
#define SCHED_RR_K 2
#define SCHED_BATCH_K 3
#define SCHED_IDLE_K 5
#define SCHED_DEADLINE_K 6
#define SCHED_RESET_ON_FORK_K 0x40000000

/* 0 when pid names the caller or another process of the picoprocess. */
static long check_pid(long pid)
{
	if ((int)pid < 0)
		return -EINVAL;
	if (pid == 0 || pid == sys0(__NR_getpid))
		return 0;
	return sys2(__NR_kill, (int)pid, 0) == -ESRCH ? -ESRCH : 0;
}

/* Implements Linux syscall sched_getscheduler(2). */
LIBOS_SYSCALL(sched_getscheduler)
{
	long r = check_pid(a0);
	return r < 0 ? r : SCHED_OTHER_K;
}

/* Implements Linux syscall sched_getparam(2). */
LIBOS_SYSCALL(sched_getparam)
{
	int prio = 0;
	if (!a1)
		return -EINVAL;
	long r = check_pid(a0);
	return r < 0 ? r : libos_copy_to_guest((void *)a1, &prio, sizeof(prio));
}

/* Implements Linux syscall sched_setparam(2): priority 0 is what there is. */
LIBOS_SYSCALL(sched_setparam)
{
	int prio;
	if (!a1)
		return -EINVAL;
	long r = check_pid(a0);
	if (r < 0 || (r = libos_copy_from_guest(&prio, (const void *)a1, sizeof(prio))) < 0)
		return r;
	return prio == 0 ? 0 : -EINVAL;
}

/* Implements Linux syscall sched_setscheduler(2): the normal policies at
 * priority 0 are accepted (SCHED_OTHER, SCHED_BATCH; SCHED_IDLE is a one-way
 * lowering Linux allows too); real-time ones need a privilege the guest
 * never has (EPERM). */
LIBOS_SYSCALL(sched_setscheduler)
{
	int policy = (int)a1 & ~SCHED_RESET_ON_FORK_K, prio;
	if (!a2)
		return -EINVAL;
	long r = check_pid(a0);
	if (r < 0 || (r = libos_copy_from_guest(&prio, (const void *)a2, sizeof(prio))) < 0)
		return r;
	switch (policy) {
	case SCHED_OTHER_K:
	case SCHED_BATCH_K:
	case SCHED_IDLE_K:
		return prio == 0 ? 0 : -EINVAL;
	case SCHED_FIFO_K:
	case SCHED_RR_K:
		return prio < 1 || prio > 99 ? -EINVAL : -EPERM;
	case SCHED_DEADLINE_K:
		return -EINVAL;
	default:
		return -EINVAL;
	}
}

/* Implements Linux syscalls sched_get_priority_max(2) and _min(2). */
LIBOS_SYSCALL(sched_get_priority_max)
{
	switch ((int)a0) {
	case SCHED_FIFO_K:
	case SCHED_RR_K: return 99;
	case SCHED_OTHER_K:
	case SCHED_BATCH_K:
	case SCHED_IDLE_K:
	case SCHED_DEADLINE_K: return 0;
	default: return -EINVAL;
	}
}

LIBOS_SYSCALL(sched_get_priority_min)
{
	long r = libos_sys_sched_get_priority_max(a0, 0, 0, 0, 0, 0, uc);
	return r == 99 ? 1 : r;
}

/* Implements Linux syscall sched_rr_get_interval(2): 0 for SCHED_OTHER, as
 * Linux answers for it. */
LIBOS_SYSCALL(sched_rr_get_interval)
{
	struct __kernel_timespec ts = {0, 0};
	long r = check_pid(a0);
	return r < 0 ? r : libos_copy_to_guest((void *)a1, &ts, sizeof(ts));
}

/* ---- clock_getres ----
 * The vDSO answers clock_getres for the clocks it knows; the CPU-time clocks
 * (and a program's raw syscall) come here.  Linux's answers: 1 ns for the
 * high-resolution clocks and the scheduler's CPU clocks (what
 * CLOCK_PROCESS_CPUTIME_ID and CLOCK_THREAD_CPUTIME_ID are), one tick for
 * the coarse clocks and the profiling/virtual CPU clocks.  The tick is not
 * told to user space by any call of the ABI, but the vDSO's own
 * clock_getres (a function reading the kernel's data page, no system call)
 * knows it for the coarse clocks.  Without a vDSO it is measured once, as
 * the smallest step of the coarse monotonic clock: a step is a tick, or
 * more when this thread was not running to see the ticks in between. */
#define CPUCLOCK_SCHED_K 2
#define NS_PER_S_K 1000000000L
#define TICK_STEPS 4

/* The HZ Linux is built with whose tick is nearest ns. */
static long hz_of_tick(long ns)
{
	static const long known[] = {100, 250, 300, 1000};
	long best = 250;
	for (unsigned i = 0; i < sizeof(known) / sizeof(known[0]); i++) {
		long d = NS_PER_S_K / known[i] - ns, e = NS_PER_S_K / best - ns;
		if ((d < 0 ? -d : d) < (e < 0 ? -e : e))
			best = known[i];
	}
	return best;
}

static long measured_tick_ns(void)
{
	struct __kernel_timespec a, b, start;
	long smallest = 0;
	int steps = -1; /* the first step may not be a whole one */
	sys2(__NR_clock_gettime, CLOCK_MONOTONIC, &start);
	sys2(__NR_clock_gettime, CLOCK_MONOTONIC_COARSE, &a);
	while (steps < TICK_STEPS) {
		sys2(__NR_clock_gettime, CLOCK_MONOTONIC_COARSE, &b);
		long d = (b.tv_sec - a.tv_sec) * NS_PER_S_K + (b.tv_nsec - a.tv_nsec);
		if (d > 0) {
			if (steps >= 0 && (!smallest || d < smallest))
				smallest = d;
			steps++;
			a = b;
		}
		struct __kernel_timespec now;
		sys2(__NR_clock_gettime, CLOCK_MONOTONIC, &now);
		if ((now.tv_sec - start.tv_sec) * NS_PER_S_K + (now.tv_nsec - start.tv_nsec) > 100000000L)
			break;
	}
	return smallest ? smallest : 4000000; /* HZ=250, as Debian builds it */
}

/* The kernel's HZ: from the vDSO's answer for a coarse clock (TICK_NSEC),
 * else measured. */
static long kernel_hz(void)
{
	static long hz;
	if (hz)
		return hz;
	/* The vDSO answers a coarse clock itself; were it ever to fall back
	 * to the system call, that would trap back here: asked only once. */
	static int asked;
	long (*vdso_getres)(long, struct __kernel_timespec *) =
		(long (*)(long, struct __kernel_timespec *))libos_vdso_symbol("__vdso_clock_getres");
	struct __kernel_timespec res = {0, 0};
	if (vdso_getres && !__atomic_exchange_n(&asked, 1, __ATOMIC_ACQ_REL) &&
	    vdso_getres(CLOCK_MONOTONIC_COARSE, &res) == 0 && res.tv_sec == 0 && res.tv_nsec > 0)
		hz = hz_of_tick(res.tv_nsec);
	else
		hz = hz_of_tick(measured_tick_ns());
	return hz;
}

/* Implements Linux syscall clock_getres(2). */
LIBOS_SYSCALL(clock_getres)
{
	int clock = (int)a0;
	struct __kernel_timespec now, res = {0, 1};
	long r = sys2(__NR_clock_gettime, clock, &now);
	if (r < 0)
		return r;
	if (clock == CLOCK_REALTIME_COARSE || clock == CLOCK_MONOTONIC_COARSE)
		res.tv_nsec = (NS_PER_S_K + kernel_hz() / 2) / kernel_hz(); /* TICK_NSEC */
	else if (clock < 0 && (clock & 3) != CPUCLOCK_SCHED_K)
		res.tv_nsec = (NS_PER_S_K + kernel_hz() - 1) / kernel_hz();
	return a1 ? libos_copy_to_guest((void *)a1, &res, sizeof(res)) : 0;
}

/* Implements Linux syscalls clock_settime(2) and settimeofday(2): the guest
 * may read the clocks, never set them (EPERM, as for any unprivileged user,
 * once the arguments are valid). */
LIBOS_SYSCALL(clock_settime)
{
	struct __kernel_timespec ts;
	long r = sys2(__NR_clock_gettime, (int)a0, &ts);
	if (r < 0)
		return r;
	if ((r = libos_copy_from_guest(&ts, (const void *)a1, sizeof(ts))) < 0)
		return r;
	if (ts.tv_nsec < 0 || ts.tv_nsec >= NS_PER_S_K || ts.tv_sec < 0)
		return -EINVAL;
	if ((int)a0 != CLOCK_REALTIME)
		return -EINVAL; /* Linux sets no other clock */
	return -EPERM;
}

LIBOS_SYSCALL(settimeofday)
{
	return -EPERM;
}

/* ---- nice values ----
 * Virtual, like the CPU count: recorded for the process and reported, with
 * Linux's rule for an unprivileged user (it may raise its nice value, never
 * lower it: EACCES); the host's scheduling is the picoprocess's own. */
#define PRIO_PROCESS_K 0
#define PRIO_PGRP_K 1
#define PRIO_USER_K 2

static long prio_target(long which, long who)
{
	if (which < PRIO_PROCESS_K || which > PRIO_USER_K)
		return -EINVAL;
	if (which == PRIO_PROCESS_K)
		return check_pid(who);
	return 0;
}

/* Implements Linux syscall getpriority(2): the kernel's form, 20 - nice. */
LIBOS_SYSCALL(getpriority)
{
	long r = prio_target(a0, a1);
	return r < 0 ? r : 20 - libos_current()->nice;
}

/* Implements Linux syscall setpriority(2). */
LIBOS_SYSCALL(setpriority)
{
	long r = prio_target(a0, a1);
	if (r < 0)
		return r;
	int want = (int)a2 < -20 ? -20 : (int)a2 > 19 ? 19 : (int)a2;
	int *nice = &libos_current()->nice;
	if (want < *nice)
		return -EACCES;
	if (a0 == PRIO_PROCESS_K && a1 && a1 != sys0(__NR_getpid))
		return 0; /* another process of the picoprocess: nothing recorded */
	*nice = want;
	return 0;
}
