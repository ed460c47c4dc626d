/* Accepting signals synchronously: rt_sigtimedwait (sigwait, sigwaitinfo,
 * sigtimedwait).
 *
 * Linux dequeues a pending signal of the set without running its handler.
 * The ABI has no call that dequeues a signal, so the library OS lets the
 * signal be delivered -- to a catcher of its own.  While a thread waits,
 * every signal of its set has the catcher as its real disposition (the
 * program's own is kept aside, and rt_sigaction reads and writes that one);
 * the thread waits in ppoll with a mask that lets exactly the set (and
 * whatever the program had unblocked) through, as the kernel's own
 * sigtimedwait does.  The catcher, running on that thread, records the
 * signal's siginfo for the waiter; ppoll returns EINTR and the waiter
 * answers with the signal.  A signal of the set that lands on another
 * thread (one that has it unblocked) is handed to the program's own
 * disposition there, as Linux may choose that thread too.
 *
 * Waiters are few (a thread blocked in sigwait), so the table is small and
 * fixed; a thread beyond it gets EAGAIN. */
#include "libos.h"

void libos_sigreturn(void);

#define SIGBIT(s) (1ULL << ((s) - 1))
#define MAX_WAITERS 32
#define NSIG_K 64

struct waiter {
	int tid;      /* 0: free */
	uint64_t set; /* the signals it accepts */
	int got;      /* the catcher stored a signal */
	siginfo_t info;
};

static struct {
	int lock;
	struct waiter w[MAX_WAITERS];
	int users[NSIG_K + 1];			  /* waiters per signal */
	struct kernel_sigaction program[NSIG_K + 1]; /* the program's disposition, while users > 0 */
} sw;

static uint64_t sw_lock(void)
{
	uint64_t all = ~SIGBIT(SIGSYS), old = 0;
	sys4(__NR_rt_sigprocmask, SIG_BLOCK, &all, &old, sizeof(uint64_t));
	while (__atomic_exchange_n(&sw.lock, 1, __ATOMIC_ACQUIRE))
		__asm__ volatile("pause");
	return old;
}

static void sw_unlock(uint64_t old)
{
	__atomic_store_n(&sw.lock, 0, __ATOMIC_RELEASE);
	sys4(__NR_rt_sigprocmask, SIG_SETMASK, &old, 0, sizeof(uint64_t));
}

/* Runs the program's own disposition for a signal the catcher took on a
 * thread that was not waiting for it. */
static void run_program_action(int sig, siginfo_t *si, void *uc, const struct kernel_sigaction *act)
{
	if (act->handler == (void *)SIG_IGN)
		return;
	if (act->handler == (void *)SIG_DFL) {
		/* Signals whose default is to be ignored; for the others the
		 * default is to end (or stop) the process: let the kernel apply
		 * it, by the real default disposition and the signal sent again
		 * (delivered as this catcher returns). */
		if (sig == SIGCHLD || sig == SIGURG || sig == SIGWINCH || sig == SIGCONT)
			return;
		struct kernel_sigaction dfl = {0};
		sys4(__NR_rt_sigaction, sig, &dfl, 0, sizeof(uint64_t));
		sys3(__NR_tgkill, sys0(__NR_getpid), sys0(__NR_gettid), sig);
		return;
	}
	if (act->flags & SA_SIGINFO)
		((void (*)(int, siginfo_t *, void *))act->handler)(sig, si, uc);
	else
		((void (*)(int))act->handler)(sig);
}

static void catcher(int sig, siginfo_t *si, void *uc)
{
	long tid = sys0(__NR_gettid);
	struct kernel_sigaction act = {0};
	int mine = 0;
	uint64_t mask = sw_lock();
	for (int i = 0; i < MAX_WAITERS; i++) {
		struct waiter *w = &sw.w[i];
		if (w->tid == tid && (w->set & SIGBIT(sig)) && !w->got) {
			w->info = *si;
			w->got = 1;
			mine = 1;
			break;
		}
	}
	if (!mine)
		act = sw.program[sig];
	sw_unlock(mask);
	if (!mine)
		run_program_action(sig, si, uc, &act);
}

/* While a signal has waiters, rt_sigaction works on the program's kept
 * disposition.  Returns 1 when it did (the answer in *result). */
int libos_sigwait_sigaction(int sig, const struct kernel_sigaction *act, struct kernel_sigaction *old)
{
	if (sig <= 0 || sig > NSIG_K || !__atomic_load_n(&sw.users[sig], __ATOMIC_ACQUIRE))
		return 0;
	uint64_t mask = sw_lock();
	int kept = sw.users[sig] > 0;
	if (kept) {
		if (old)
			*old = sw.program[sig];
		if (act)
			sw.program[sig] = *act;
	}
	sw_unlock(mask);
	return kept;
}

/* Takes (or gives back) the real dispositions of `set` for a waiter.  Under
 * the lock. */
static void hold_signals(uint64_t set)
{
	struct kernel_sigaction ours = {
		.handler = (void *)catcher,
		.flags = SA_SIGINFO | SA_RESTORER | SA_ONSTACK,
		.restorer = libos_sigreturn,
		/* One signal per wake-up: the rest of the set stays pending. */
		.mask = ~SIGBIT(SIGSYS),
	};
	for (int s = 1; s <= NSIG_K; s++)
		if ((set & SIGBIT(s)) && sw.users[s]++ == 0) {
			sys4(__NR_rt_sigaction, s, 0, &sw.program[s], sizeof(uint64_t));
			/* A thread that takes it for the program restarts its call
			 * as the program's handler would have. */
			ours.flags = (ours.flags & ~(unsigned long)SA_RESTART) | (sw.program[s].flags & SA_RESTART);
			sys4(__NR_rt_sigaction, s, &ours, 0, sizeof(uint64_t));
		}
}

static void release_signals(uint64_t set)
{
	for (int s = 1; s <= NSIG_K; s++)
		if ((set & SIGBIT(s)) && --sw.users[s] == 0)
			sys4(__NR_rt_sigaction, s, &sw.program[s], 0, sizeof(uint64_t));
}

/* Implements Linux syscall rt_sigtimedwait(2). */
LIBOS_SYSCALL(rt_sigtimedwait)
{
	uint64_t set;
	struct __kernel_timespec tmo, *tmop = 0;
	long r;
	if ((size_t)a3 != sizeof(uint64_t))
		return -EINVAL;
	if ((r = libos_copy_from_guest(&set, (const void *)a0, sizeof(set))) < 0)
		return r;
	if (a2) {
		if ((r = libos_copy_from_guest(&tmo, (const void *)a2, sizeof(tmo))) < 0)
			return r;
		if (tmo.tv_sec < 0 || tmo.tv_nsec < 0 || tmo.tv_nsec >= 1000000000)
			return -EINVAL;
		tmop = &tmo;
	}
	if (a1 && (r = libos_check_writable((void *)a1, sizeof(siginfo_t))) < 0)
		return r;
	/* SIGKILL and SIGSTOP cannot be waited for; SIGSYS is the library OS's. */
	set &= ~(SIGBIT(SIGKILL) | SIGBIT(SIGSTOP) | SIGBIT(SIGSYS));
	long tid = sys0(__NR_gettid);
	uint64_t mask = sw_lock();
	struct waiter *w = 0;
	for (int i = 0; i < MAX_WAITERS && !w; i++)
		if (!sw.w[i].tid)
			w = &sw.w[i];
	if (w) {
		w->tid = (int)tid;
		w->set = set;
		w->got = 0;
		hold_signals(set);
	}
	sw_unlock(mask);
	if (!w)
		return -EAGAIN;
	/* The mask of the wait: the program's, with the set let through. */
	uint64_t wait_mask = uc->uc_sigmask & ~set & ~SIGBIT(SIGSYS);
	do
		r = sys5(__NR_ppoll, 0, 0, tmop, &wait_mask, sizeof(uint64_t));
	while (r == 0 && !tmop);
	mask = sw_lock();
	int got = w->got;
	siginfo_t info = w->info;
	release_signals(set);
	w->tid = 0;
	sw_unlock(mask);
	if (!got)
		return r == 0 ? -EAGAIN : r; /* timed out, or another handler ran: EINTR */
	libos_timer_siginfo(info.si_signo, &info);
	if (a1 && (r = libos_copy_to_guest((void *)a1, &info, sizeof(info))) < 0)
		return r;
	return info.si_signo;
}
