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
