/* SIGSYS belongs to the library OS (it is how traps arrive), so the guest's
 * SIGSYS disposition is virtual: recorded here, never installed on the host,
 * and honoured for SIGSYS signals that do not come from the filter.  And it
 * must never be blocked: every call that hands the kernel a signal mask
 * (rt_sigaction, rt_sigprocmask, rt_sigsuspend, ppoll and epoll_pwait with a
 * mask; pselect6 in sys_compat.c) is served here with SIGSYS removed. */
#include "libos.h"

#define SIGSYS_BIT (1ULL << (SIGSYS - 1))

/* Implements Linux syscall rt_sigaction(2).  In "libos" mode the filter
 * traps every rt_sigaction made outside the library OS: SIGSYS is virtual,
 * and for any other signal the handler's mask loses SIGSYS (a trap while
 * SIGSYS is blocked would kill the process) before the real call. */
LIBOS_SYSCALL(rt_sigaction)
{
	int sig = (int)a0;
	struct kernel_sigaction act, old;
	long r;
	if ((size_t)a3 != sizeof(uint64_t))
		return -EINVAL;
	if (a1) {
		r = libos_copy_from_guest(&act, (const void *)a1, sizeof(act));
		if (r < 0)
			return r;
		act.mask &= ~SIGSYS_BIT;
	}
	/* The kernel takes the signal as an int: decide on the same value, so
	 * garbage in the upper half cannot smuggle a real SIGSYS handler in. */
	if (sig != SIGSYS) {
		if (libos_sigwait_sigaction(sig, a1 ? &act : NULL, a2 ? &old : NULL))
			return a2 ? libos_copy_to_guest((void *)a2, &old, sizeof(old)) : 0;
		r = sys4(__NR_rt_sigaction, sig, a1 ? &act : NULL, a2 ? &old : NULL, sizeof(uint64_t));
		if (r < 0 || !a2)
			return r;
		return libos_copy_to_guest((void *)a2, &old, sizeof(old));
	}
	/* The disposition is the process's (SIG_DFL initially). */
	struct libos_process *proc = libos_current();
	while (__atomic_exchange_n(&proc->guest_sigsys_lock, 1, __ATOMIC_ACQUIRE))
		__asm__ volatile("pause");
	old = proc->guest_sigsys;
	if (a1)
		proc->guest_sigsys = act;
	__atomic_store_n(&proc->guest_sigsys_lock, 0, __ATOMIC_RELEASE);
	if (a2) {
		r = libos_copy_to_guest((void *)a2, &old, sizeof(old));
		if (r < 0)
			return r;
	}
	return 0;
}

/* Implements Linux syscall rt_sigprocmask(2), except that SIGSYS is never
 * blocked (see rt_sigaction).  The thread is inside the SIGSYS handler, and
 * rt_sigreturn will install the mask saved in its signal frame: so the
 * change is made there, and takes effect (delivering any signal it
 * unblocks) as the guest resumes. */
LIBOS_SYSCALL(rt_sigprocmask)
{
	int how = (int)a0;
	uint64_t set = 0, old = uc->uc_sigmask;
	long r;
	if ((size_t)a3 != sizeof(uint64_t))
		return -EINVAL;
	if (a1) {
		r = libos_copy_from_guest(&set, (const void *)a1, sizeof(set));
		if (r < 0)
			return r;
		if (how != SIG_BLOCK && how != SIG_UNBLOCK && how != SIG_SETMASK)
			return -EINVAL;
	}
	if (a2) {
		r = libos_copy_to_guest((void *)a2, &old, sizeof(old));
		if (r < 0)
			return r;
	}
	if (a1) {
		uint64_t now = how == SIG_BLOCK ? old | set : how == SIG_UNBLOCK ? old & ~set : set;
		/* SIGKILL and SIGSTOP cannot be blocked either. */
		now &= ~(SIGSYS_BIT | (1ULL << (SIGKILL - 1)) | (1ULL << (SIGSTOP - 1)));
		uc->uc_sigmask = now;
	}
	return 0;
}

void libos_deliver_guest_sigsys(int sig, siginfo_t *si, void *uc)
{
	struct kernel_sigaction act = libos_current()->guest_sigsys;
	if (act.handler == (void *)SIG_IGN)
		return;
	if (act.handler == (void *)SIG_DFL) {
		/* Default action: the process dies of SIGSYS.  Reset the host
		 * disposition (allowed: this code is in the loader's range) and
		 * send it again; it is delivered when this handler returns. */
		struct kernel_sigaction dfl = {0};
		sys4(__NR_rt_sigaction, SIGSYS, &dfl, 0, sizeof(uint64_t));
		sys3(__NR_tgkill, sys0(__NR_getpid), sys0(__NR_gettid), SIGSYS);
		return;
	}
	if (act.flags & SA_SIGINFO)
		((void (*)(int, siginfo_t *, void *))act.handler)(sig, si, uc);
	else
		((void (*)(int))act.handler)(sig);
}

/* Implements Linux syscall rt_sigsuspend(2) on ppoll with a signal mask
 * (SIGSYS kept deliverable). */
LIBOS_SYSCALL(rt_sigsuspend)
{
	uint64_t mask;
	if ((size_t)a1 != sizeof(uint64_t))
		return -EINVAL;
	long r = libos_copy_from_guest(&mask, (const void *)a0, sizeof(mask));
	if (r < 0)
		return r;
	mask &= ~SIGSYS_BIT;
	do
		r = sys5(__NR_ppoll, 0, 0, 0, &mask, sizeof(mask));
	while (r >= 0);
	return r;
}

/* The signal mask a guest passed to a wait (user, of `size` bytes), with
 * SIGSYS removed, in *mask; *out is mask, or NULL when the guest passed none.
 * 0 or -errno (EINVAL for a wrong size, EFAULT), as the kernel answers. */
static long wait_sigmask(long user, long size, uint64_t *mask, uint64_t **out)
{
	*out = NULL;
	if (!user)
		return 0;
	if ((size_t)size != sizeof(uint64_t))
		return -EINVAL;
	long r = libos_copy_from_guest(mask, (const void *)user, sizeof(*mask));
	if (r < 0)
		return r;
	*mask &= ~SIGSYS_BIT;
	*out = mask;
	return 0;
}

/* Implements Linux syscall ppoll(2) for the form the filter traps: with a
 * signal mask (a3), which reaches the kernel without SIGSYS (see
 * rt_sigaction).  A guest handler for a signal the mask lets through runs
 * during the real call, on top of this SIGSYS frame, with SIGSYS still
 * deliverable, so its own emulated calls work; the kernel then answers
 * EINTR (ERESTARTNOHAND: restarted in here when no handler ran) and puts
 * back the mask from before the call, the guest's own. */
LIBOS_SYSCALL(ppoll)
{
	uint64_t mask, *maskp;
	long r = wait_sigmask(a3, a4, &mask, &maskp);
	if (r < 0)
		return r;
	/* a2 is the guest's timeout: the kernel writes the time left there, as
	 * for a direct call. */
	return sys5(__NR_ppoll, a0, a1, a2, maskp, a4);
}

/* Implements Linux syscall epoll_pwait(2) for the form the filter traps:
 * with a signal mask (a4); as ppoll. */
LIBOS_SYSCALL(epoll_pwait)
{
	uint64_t mask, *maskp;
	long r = wait_sigmask(a4, a5, &mask, &maskp);
	if (r < 0)
		return r;
	return sys6(__NR_epoll_pwait, a0, a1, a2, a3, (long)maskp, a5);
}

/* Implements Linux syscall pause(2). */
LIBOS_SYSCALL(pause)
{
	long r;
	do
		r = sys5(__NR_ppoll, 0, 0, 0, 0, sizeof(uint64_t));
	while (r >= 0);
	return r;
}
