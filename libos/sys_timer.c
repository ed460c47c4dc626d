/* POSIX per-process timers (timer_create and friends) and the CPU-time
 * interval timers (setitimer's ITIMER_VIRTUAL and ITIMER_PROF).
 *
 * The ABI has no timer call, but it has everything a timer is made of: a
 * clock to sleep on (clock_nanosleep, and futex for the two clocks a futex
 * can wait on), and kill/tgkill to signal.  So each armed timer is served by
 * a helper *thread* of the process, which sleeps until the deadline on the
 * timer's own clock, sends the signal and, for an interval timer, sleeps
 * again.  A thread and not a process, because then the helper:
 *  - may sleep on every clock Linux offers timers on, the CPU-time ones
 *    included: a thread may sleep on its own process's CPU clock (user time
 *    for ITIMER_VIRTUAL, user+system for ITIMER_PROF, the scheduler's for
 *    CLOCK_PROCESS_CPUTIME_ID) and on the CPU clock of another thread of its
 *    process (CLOCK_THREAD_CPUTIME_ID), which a separate process may not;
 *  - dies with the process and on execve, as POSIX timers do, and does not
 *    exist in a fork child, whose timers POSIX says start disarmed.
 * The table is the process's (libos_current()->timers): a child that shares
 * this memory (vfork, posix_spawn) has one of its own, empty, like a fork
 * child's.
 * It blocks every signal (SIGSYS stays deliverable, as everywhere in a
 * picoprocess), so a process-directed signal never lands on it.  A change of
 * a timer bumps its `gen` word: a helper waiting on a futex wakes on it; one
 * sleeping on another clock is poked with a SIGSYS of the library OS's own
 * (trap.c ignores those on helper threads).
 *
 * What differs from Linux: the signal arrives as sent by kill/tgkill
 * (si_code SI_USER or SI_TKILL, si_pid the process's own) except through
 * sigwaitinfo/sigtimedwait, which present it as SI_TIMER with the timer's
 * id, value and overrun (sys_sigwait.c); the overrun counts expirations the
 * helper found already past when it woke; CPU-time interval timers do not
 * survive execve (Linux keeps them). */
#include "libos.h"

#define NS_PER_S 1000000000ULL
#define TIMER_ABSTIME_K 1
#define FUTEX_BITSET_MATCH_ANY_K 0xffffffffU

/* <linux/posix-timers.h>: CPU clock ids of a given process or thread. */
#define CPUCLOCK_PROF_K 0
#define CPUCLOCK_VIRT_K 1
#define CPUCLOCK_SCHED_K 2
#define CPUCLOCK_PERTHREAD_MASK_K 4
#define MAKE_PROCESS_CPUCLOCK_K(pid, clock) ((int)((~(unsigned)(pid) << 3) | (clock)))
#define MAKE_THREAD_CPUCLOCK_K(tid, clock) MAKE_PROCESS_CPUCLOCK_K(tid, (clock) | CPUCLOCK_PERTHREAD_MASK_K)

#define CLONE_HELPER_K                                                                              \
	(CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SIGHAND | CLONE_THREAD | CLONE_SYSVSEM |     \
	 CLONE_CHILD_CLEARTID)
#define HELPER_STACK_SIZE (32 * 1024)
#define NOTIFY_TIMERFD 100 /* a timerfd: expirations written to its pair */

/* Timer ids 0..LIBOS_MAX_TIMERS-1 are the program's; the two CPU-time
 * interval timers take the slots after them. */
#define SLOT_ITIMER_VIRTUAL LIBOS_MAX_TIMERS
#define SLOT_ITIMER_PROF (LIBOS_MAX_TIMERS + 1)
/* prctl(PR_SET_PDEATHSIG): a periodic check of the parent (see below). */
#define SLOT_PDEATHSIG (LIBOS_MAX_TIMERS + 2)
#define NSLOTS LIBOS_TIMER_SLOTS
#define PDEATH_CHECK_NS (50 * 1000 * 1000ULL)

static uint64_t timers_lock(struct libos_timers *tt)
{
	uint64_t all = ~(1ULL << (SIGSYS - 1)), old = 0;
	/* Every signal blocked: a guest handler that arms a timer must not
	 * interrupt its own thread inside the critical section. */
	sys4(__NR_rt_sigprocmask, SIG_BLOCK, &all, &old, sizeof(uint64_t));
	libos_lock(&tt->lock);
	return old;
}

static void timers_unlock(struct libos_timers *tt, uint64_t old)
{
	libos_unlock(&tt->lock);
	sys4(__NR_rt_sigprocmask, SIG_SETMASK, &old, 0, sizeof(uint64_t));
}

/* A fork child has its parent's table in its memory but none of its
 * helpers: it starts with no timers.  Called with the lock held. */
static void timers_claim(struct libos_timers *tt)
{
	long self = sys0(__NR_getpid);
	if (tt->owner != self) {
		memset(tt->slot, 0, sizeof(tt->slot));
		tt->owner = self;
	}
	/* Timerfds the program closed, whose helpers have ended. */
	for (int i = 0; i < LIBOS_MAX_TIMERS; i++) {
		struct libos_timer_slot *t = &tt->slot[i];
		if (t->used && t->orphan && !__atomic_load_n(&t->helper_tid, __ATOMIC_ACQUIRE)) {
			if (t->stack)
				libos_free_helper_stack(t->stack);
			sys1(__NR_close, t->wfd);
			memset(t, 0, sizeof(*t));
		}
	}
}

static uint64_t clock_now(int clock)
{
	struct __kernel_timespec ts = {0, 0};
	sys2(__NR_clock_gettime, clock, &ts);
	return (uint64_t)ts.tv_sec * NS_PER_S + (uint64_t)ts.tv_nsec;
}

static int futex_clock(int clock)
{
	return clock == CLOCK_REALTIME || clock == CLOCK_MONOTONIC;
}

/* ---- the helper thread ---- */

#define MSG_DONTWAIT_K 0x40
#define MSG_NOSIGNAL_K 0x4000

static void helper_fire(struct libos_timer_slot *t, long owner)
{
	if (t->notify == NOTIFY_TIMERFD) {
		uint64_t n = (uint64_t)t->overrun + 1;
		long r = sys6(__NR_sendto, t->wfd, (long)&n, sizeof(n), MSG_DONTWAIT_K | MSG_NOSIGNAL_K, 0, 0);
		if (r == -EPIPE || r == -ECONNREFUSED || r == -EBADF || r == -ENOTSOCK) {
			/* The program closed its timerfd: this helper ends, and the
			 * slot is reclaimed by the next timer call. */
			t->deadline_ns = 0;
			t->stop = 1;
			t->orphan = 1;
		}
		return;
	}
	if (t->notify == SIGEV_THREAD_ID)
		sys3(__NR_tgkill, owner, t->tid, t->signo);
	else
		sys2(__NR_kill, owner, t->signo);
}

static void __attribute__((noreturn)) helper_main(struct libos_timer_slot *t)
{
	struct libos_timers *tt = &libos_current()->timers;
	uint64_t none = ~(1ULL << (SIGSYS - 1));
	sys4(__NR_rt_sigprocmask, SIG_SETMASK, &none, 0, sizeof(uint64_t));
	long owner = sys0(__NR_getpid);
	for (;;) {
		uint64_t mask = timers_lock(tt);
		uint32_t gen = t->gen;
		uint64_t deadline = t->deadline_ns;
		int stop = t->stop;
		if (!stop && deadline && clock_now(t->clock) >= deadline) {
			/* Expired: count the expirations this wake-up covers. */
			uint64_t now = clock_now(t->clock), n = 1;
			if (t->interval_ns) {
				n += (now - deadline) / t->interval_ns;
				t->deadline_ns = deadline + n * t->interval_ns;
			} else {
				t->deadline_ns = 0;
			}
			t->overrun = n - 1 > 0x7fffffff ? 0x7fffffff : (int)(n - 1);
			if (t->watch_parent) {
				if (sys0(__NR_getppid) != t->watch_parent) {
					t->deadline_ns = 0;
					helper_fire(t, owner);
				}
				timers_unlock(tt, mask);
				continue;
			}
			t->signal_sent = 1;
			helper_fire(t, owner);
			timers_unlock(tt, mask);
			continue;
		}
		t->helper_sleeping = !stop && deadline && !futex_clock(t->clock);
		timers_unlock(tt, mask);
		if (stop)
			break;
		struct __kernel_timespec ts = {(long)(deadline / NS_PER_S), (long)(deadline % NS_PER_S)};
		if (!deadline)
			sys4(__NR_futex, &t->gen, FUTEX_WAIT_PRIVATE, gen, 0);
		else if (futex_clock(t->clock))
			sys6(__NR_futex, (long)&t->gen,
			     FUTEX_WAIT_BITSET_PRIVATE | (t->clock == CLOCK_REALTIME ? FUTEX_CLOCK_REALTIME : 0), gen,
			     (long)&ts, 0, FUTEX_BITSET_MATCH_ANY_K);
		else
			sys4(__NR_clock_nanosleep, t->clock, TIMER_ABSTIME_K, &ts, 0);
	}
	for (;;)
		sys1(__NR_exit, 0);
}

/* Starts fn(arg) on a helper thread of this process, on a stack of its own
 * (*stack, to free with libos_free_helper_stack once *tid_word is 0 again:
 * the kernel clears it, and wakes a futex waiter on it, when the thread has
 * exited).  A vm child's helper dies when the child execs, in memory that
 * stays its parent's: the parent unmaps the stack then (vmchild.c). */
long libos_start_helper_thread(void (*fn)(void *), void *arg, int *tid_word, void **stack_out)
{
	char *stack = (char *)sys6(__NR_mmap, 0, HELPER_STACK_SIZE, PROT_READ | PROT_WRITE,
				   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if ((long)stack < 0 && (long)stack > -4096)
		return (long)stack;
	libos_vm_keep_mapping((uint64_t)stack, HELPER_STACK_SIZE);
	uint64_t *sp = (uint64_t *)(stack + HELPER_STACK_SIZE);
	*--sp = (uint64_t)arg;
	*--sp = (uint64_t)fn;
	long tid;
	/* The child starts on `sp` with the two words above: it pops fn into
	 * %rax and arg into %rdi and jumps to fn with the stack aligned as for
	 * a call (fn never returns). */
	register long r10 __asm__("r10") = (long)tid_word;
	register long r8 __asm__("r8") = 0;
	__asm__ volatile("syscall\n\t"
			 "test %%rax, %%rax\n\t"
			 "jnz 1f\n\t"
			 "pop %%rax\n\t"
			 "pop %%rdi\n\t"
			 "push $0\n\t"
			 "jmp *%%rax\n"
			 "1:"
			 : "=a"(tid)
			 : "0"((long)__NR_clone), "D"((long)CLONE_HELPER_K), "S"(sp), "d"(tid_word), "r"(r10),
			   "r"(r8)
			 : "rcx", "r11", "memory");
	if (tid < 0) {
		libos_free_helper_stack(stack);
		return tid;
	}
	*tid_word = (int)tid;
	*stack_out = stack;
	return 0;
}

void libos_free_helper_stack(void *stack)
{
	libos_vm_forget_mapping_at((uint64_t)stack);
	sys2(__NR_munmap, stack, HELPER_STACK_SIZE);
}

static void timer_helper_entry(void *t)
{
	helper_main(t);
}

static long spawn_helper(struct libos_timer_slot *t)
{
	return libos_start_helper_thread(timer_helper_entry, t, &t->helper_tid, &t->stack);
}

/* Tells the helper its timer changed.  Called with the lock held. */
static void poke_helper(struct libos_timers *tt, struct libos_timer_slot *t)
{
	__atomic_add_fetch(&t->gen, 1, __ATOMIC_RELEASE);
	sys3(__NR_futex, &t->gen, FUTEX_WAKE_PRIVATE, 1);
	if (t->helper_sleeping && t->helper_tid)
		sys3(__NR_tgkill, tt->owner, t->helper_tid, SIGSYS);
}

int libos_timer_is_helper(long tid)
{
	struct libos_timers *tt = &libos_current()->timers;
	for (int i = 0; i < NSLOTS; i++)
		if (tt->slot[i].used && tt->slot[i].helper_tid == tid)
			return 1;
	return 0;
}

/* Ends a slot's helper (if any) and frees the slot.  Called WITHOUT the lock:
 * it waits for the helper, which needs the lock to see `stop`. */
static void free_slot(struct libos_timers *tt, struct libos_timer_slot *t)
{
	uint64_t mask = timers_lock(tt);
	int tid = t->helper_tid;
	t->stop = 1;
	poke_helper(tt, t);
	timers_unlock(tt, mask);
	while (tid) {
		/* A poke that lands just before the helper enters its sleep is
		 * lost (clock_nanosleep takes no signal mask): poke again. */
		struct __kernel_timespec wait = {0, 10 * 1000 * 1000};
		if (sys4(__NR_futex, &t->helper_tid, FUTEX_WAIT, tid, &wait) == -ETIMEDOUT) {
			mask = timers_lock(tt);
			poke_helper(tt, t);
			timers_unlock(tt, mask);
		}
		tid = __atomic_load_n(&t->helper_tid, __ATOMIC_ACQUIRE);
	}
	if (t->stack)
		libos_free_helper_stack(t->stack);
	mask = timers_lock(tt);
	memset(t, 0, sizeof(*t));
	timers_unlock(tt, mask);
}

/* ---- arming and reading ---- */

static long valid_timespec(const struct __kernel_timespec *ts)
{
	return ts->tv_sec >= 0 && ts->tv_nsec >= 0 && (uint64_t)ts->tv_nsec < NS_PER_S;
}

static uint64_t ns_of(const struct __kernel_timespec *ts)
{
	if ((uint64_t)ts->tv_sec > (~0ULL >> 2) / NS_PER_S)
		return ~0ULL >> 2; /* far enough in the future */
	return (uint64_t)ts->tv_sec * NS_PER_S + (uint64_t)ts->tv_nsec;
}

static struct __kernel_timespec ts_of(uint64_t ns)
{
	struct __kernel_timespec ts = {(long)(ns / NS_PER_S), (long)(ns % NS_PER_S)};
	return ts;
}

/* What is left of an armed slot; under the lock.  A timer without a helper
 * (SIGEV_NONE) expires here, as Linux's does when it is read. */
static void slot_read(struct libos_timer_slot *t, struct __kernel_itimerspec *out)
{
	memset(out, 0, sizeof(*out));
	out->it_interval = ts_of(t->interval_ns);
	if (!t->deadline_ns)
		return;
	uint64_t now = clock_now(t->clock);
	if (now >= t->deadline_ns) {
		if (!t->interval_ns) {
			if (!t->helper_tid)
				t->deadline_ns = 0;
			/* Linux reports a one-shot timer that just fired as
			 * disarmed; a helper that has not woken yet, as due. */
			out->it_value = ts_of(t->helper_tid ? 1 : 0);
			return;
		}
		uint64_t n = (now - t->deadline_ns) / t->interval_ns + 1;
		if (!t->helper_tid)
			t->deadline_ns += n * t->interval_ns;
		out->it_value = ts_of(t->deadline_ns > now ? t->deadline_ns - now : 1);
		return;
	}
	out->it_value = ts_of(t->deadline_ns - now);
}

/* Arms (value non-zero) or disarms a slot; `absolute` per TIMER_ABSTIME. */
static long slot_arm(struct libos_timers *tt, struct libos_timer_slot *t, const struct __kernel_itimerspec *nv, int absolute,
		     struct __kernel_itimerspec *old)
{
	uint64_t value = ns_of(&nv->it_value), interval = ns_of(&nv->it_interval);
	long r = 0;
	uint64_t mask = timers_lock(tt);
	if (old)
		slot_read(t, old);
	if (value && !absolute)
		value += clock_now(t->clock);
	else if (value && absolute && value <= clock_now(t->clock))
		value = clock_now(t->clock); /* already due: fires at once */
	t->deadline_ns = value;
	t->interval_ns = value ? interval : 0;
	t->overrun = 0;
	if (value && t->notify != SIGEV_NONE && !t->helper_tid)
		r = spawn_helper(t);
	else if (t->helper_tid)
		poke_helper(tt, t);
	if (r < 0)
		t->deadline_ns = 0;
	timers_unlock(tt, mask);
	return r == -ENOMEM || r == -EAGAIN ? -EAGAIN : r;
}

/* ---- the Linux calls ---- */

/* The host clock a timer on `clock` sleeps on, in *out; 0 or -errno as
 * timer_create answers it.  (CPU clock ids are negative numbers.) */
static long timer_clock(int clock, int *out)
{
	switch (clock) {
	case CLOCK_REALTIME:
	case CLOCK_MONOTONIC:
	case CLOCK_BOOTTIME:
	case CLOCK_TAI:
		*out = clock;
		return 0;
	case CLOCK_PROCESS_CPUTIME_ID:
		*out = MAKE_PROCESS_CPUCLOCK_K(0, CPUCLOCK_SCHED_K);
		return 0;
	case CLOCK_THREAD_CPUTIME_ID:
		clock = MAKE_THREAD_CPUCLOCK_K(0, CPUCLOCK_SCHED_K);
		break;
	case CLOCK_REALTIME_ALARM:
	case CLOCK_BOOTTIME_ALARM:
		return -EPERM; /* needs CAP_WAKE_ALARM */
	case CLOCK_MONOTONIC_RAW:
	case CLOCK_REALTIME_COARSE:
	case CLOCK_MONOTONIC_COARSE:
		return -EOPNOTSUPP;
	}
	if (clock >= 0)
		return -EINVAL;
	/* A CPU clock (glibc names the caller's as pid 0; clock_getcpuclockid
	 * and pthread_getcpuclockid give others): valid when it can be read.
	 * The caller's own thread clock is named by its tid, so that the helper
	 * (another thread) sleeps on it rather than on its own. */
	if ((clock & CPUCLOCK_PERTHREAD_MASK_K) && (~clock >> 3) == 0)
		clock = MAKE_THREAD_CPUCLOCK_K(sys0(__NR_gettid), clock & 3);
	struct __kernel_timespec ts;
	if ((clock & 3) == 3 || sys2(__NR_clock_gettime, clock, &ts) < 0)
		return -EINVAL;
	*out = clock;
	return 0;
}

/* Implements Linux syscall timer_create(2) for SIGEV_SIGNAL, SIGEV_NONE and
 * SIGEV_THREAD_ID (glibc builds SIGEV_THREAD on the last), on every clock
 * Linux offers timers on. */
LIBOS_SYSCALL(timer_create)
{
	struct libos_timers *tt = &libos_current()->timers;
	struct sigevent ev;
	int clock;
	long r = timer_clock((int)a0, &clock);
	if (r < 0)
		return r;
	if (a1) {
		if ((r = libos_copy_from_guest(&ev, (const void *)a1, sizeof(ev))) < 0)
			return r;
	} else {
		memset(&ev, 0, sizeof(ev));
		ev.sigev_notify = SIGEV_SIGNAL;
		ev.sigev_signo = SIGALRM;
	}
	int notify = ev.sigev_notify;
	if (notify == (SIGEV_SIGNAL | SIGEV_THREAD_ID))
		notify = SIGEV_THREAD_ID;
	if (notify != SIGEV_SIGNAL && notify != SIGEV_NONE && notify != SIGEV_THREAD_ID)
		return -EINVAL;
	if (notify != SIGEV_NONE && (ev.sigev_signo <= 0 || ev.sigev_signo > 64))
		return -EINVAL;
	if (notify == SIGEV_THREAD_ID &&
	    (ev.sigev_notify_thread_id <= 0 ||
	     sys3(__NR_tgkill, sys0(__NR_getpid), ev.sigev_notify_thread_id, 0) < 0))
		return -EINVAL;
	uint64_t mask = timers_lock(tt);
	timers_claim(tt);
	int id = -1;
	for (int i = 0; i < LIBOS_MAX_TIMERS; i++)
		if (!tt->slot[i].used) {
			id = i;
			break;
		}
	if (id >= 0) {
		struct libos_timer_slot *t = &tt->slot[id];
		memset(t, 0, sizeof(*t));
		t->used = 1;
		t->clock = clock;
		t->notify = notify;
		t->signo = ev.sigev_signo;
		t->tid = ev.sigev_notify_thread_id;
		t->value = a1 ? (uint64_t)ev.sigev_value.sival_ptr : (uint64_t)id;
	}
	timers_unlock(tt, mask);
	if (id < 0)
		return -EAGAIN;
	int out = id;
	r = libos_copy_to_guest((void *)a2, &out, sizeof(out));
	if (r < 0) {
		free_slot(tt, &tt->slot[id]);
		return r;
	}
	return 0;
}

/* The program's timer `id`, or NULL (EINVAL). */
static struct libos_timer_slot *program_timer(long id)
{
	struct libos_timers *tt = &libos_current()->timers;
	uint64_t mask = timers_lock(tt);
	timers_claim(tt);
	struct libos_timer_slot *t = (unsigned long)id < LIBOS_MAX_TIMERS && tt->slot[id].used &&
					       tt->slot[id].notify != NOTIFY_TIMERFD
				       ? &tt->slot[id]
				       : 0;
	timers_unlock(tt, mask);
	return t;
}

/* Implements Linux syscall timer_settime(2). */
LIBOS_SYSCALL(timer_settime)
{
	struct libos_timers *tt = &libos_current()->timers;
	struct libos_timer_slot *t = program_timer(a0);
	struct __kernel_itimerspec nv, old;
	long r;
	if (!t)
		return -EINVAL;
	if ((r = libos_copy_from_guest(&nv, (const void *)a2, sizeof(nv))) < 0)
		return r;
	if (!valid_timespec(&nv.it_value) || !valid_timespec(&nv.it_interval))
		return -EINVAL;
	if ((r = slot_arm(tt, t, &nv, (int)a1 & TIMER_ABSTIME_K, &old)) < 0)
		return r;
	return a3 ? libos_copy_to_guest((void *)a3, &old, sizeof(old)) : 0;
}

/* Implements Linux syscall timer_gettime(2). */
LIBOS_SYSCALL(timer_gettime)
{
	struct libos_timers *tt = &libos_current()->timers;
	struct libos_timer_slot *t = program_timer(a0);
	struct __kernel_itimerspec cur;
	if (!t)
		return -EINVAL;
	uint64_t mask = timers_lock(tt);
	slot_read(t, &cur);
	timers_unlock(tt, mask);
	return libos_copy_to_guest((void *)a1, &cur, sizeof(cur));
}

/* Implements Linux syscall timer_getoverrun(2). */
LIBOS_SYSCALL(timer_getoverrun)
{
	struct libos_timer_slot *t = program_timer(a0);
	return t ? t->overrun : -EINVAL;
}

/* Implements Linux syscall timer_delete(2). */
LIBOS_SYSCALL(timer_delete)
{
	struct libos_timers *tt = &libos_current()->timers;
	struct libos_timer_slot *t = program_timer(a0);
	if (!t)
		return -EINVAL;
	free_slot(tt, t);
	return 0;
}

/* For sigwaitinfo: a signal `sig` that a timer of this process sent is
 * presented as Linux presents it (SI_TIMER, the timer's id, overrun and
 * value).  Returns 1 when *si was rewritten. */
int libos_timer_siginfo(int sig, siginfo_t *si)
{
	struct libos_timers *tt = &libos_current()->timers;
	if (si->si_pid != sys0(__NR_getpid) || (si->si_code != SI_USER && si->si_code != SI_TKILL))
		return 0;
	int done = 0;
	uint64_t mask = timers_lock(tt);
	if (tt->owner == si->si_pid)
		for (int i = 0; i < LIBOS_MAX_TIMERS && !done; i++) {
			struct libos_timer_slot *t = &tt->slot[i];
			if (!t->used || !t->signal_sent || t->signo != sig)
				continue;
			t->signal_sent = 0;
			memset(&si->_sifields, 0, sizeof(si->_sifields));
			si->si_code = SI_TIMER;
			si->si_tid = i;
			si->si_overrun = t->overrun;
			si->si_ptr = (void *)t->value;
			done = 1;
		}
	timers_unlock(tt, mask);
	return done;
}

/* ---- setitimer's CPU-time timers ---- */

static struct __kernel_timespec ts_of_tv(const struct __kernel_old_timeval *tv)
{
	struct __kernel_timespec ts = {tv->tv_sec, tv->tv_usec * 1000};
	return ts;
}

static struct __kernel_old_timeval tv_of_ts(const struct __kernel_timespec *ts)
{
	/* Rounded up, as Linux rounds what is left. */
	struct __kernel_old_timeval tv = {ts->tv_sec, (ts->tv_nsec + 999) / 1000};
	if (tv.tv_usec == 1000000) {
		tv.tv_sec++;
		tv.tv_usec = 0;
	}
	return tv;
}

static struct libos_timer_slot *cpu_itimer(int which)
{
	struct libos_timers *tt = &libos_current()->timers;
	int idx = which == ITIMER_VIRTUAL ? SLOT_ITIMER_VIRTUAL : SLOT_ITIMER_PROF;
	struct libos_timer_slot *t = &tt->slot[idx];
	uint64_t mask = timers_lock(tt);
	timers_claim(tt);
	if (!t->used) {
		t->used = 1;
		t->clock = MAKE_PROCESS_CPUCLOCK_K(0, which == ITIMER_VIRTUAL ? CPUCLOCK_VIRT_K : CPUCLOCK_PROF_K);
		t->notify = SIGEV_SIGNAL;
		t->signo = which == ITIMER_VIRTUAL ? SIGVTALRM : SIGPROF;
	}
	timers_unlock(tt, mask);
	return t;
}

/* getitimer(2) for ITIMER_VIRTUAL and ITIMER_PROF (sys_misc.c serves
 * ITIMER_REAL). */
long libos_cpu_getitimer(int which, struct itimerval_k *out)
{
	struct libos_timers *tt = &libos_current()->timers;
	struct libos_timer_slot *t = cpu_itimer(which);
	struct __kernel_itimerspec cur;
	uint64_t mask = timers_lock(tt);
	slot_read(t, &cur);
	timers_unlock(tt, mask);
	out->value = tv_of_ts(&cur.it_value);
	out->interval = tv_of_ts(&cur.it_interval);
	return 0;
}

/* setitimer(2) for ITIMER_VIRTUAL and ITIMER_PROF; `nv` is validated. */
long libos_cpu_setitimer(int which, const struct itimerval_k *nv, struct itimerval_k *old)
{
	struct libos_timers *tt = &libos_current()->timers;
	struct libos_timer_slot *t = cpu_itimer(which);
	struct __kernel_itimerspec spec = {ts_of_tv(&nv->interval), ts_of_tv(&nv->value)}, prev;
	long r = slot_arm(tt, t, &spec, 0, &prev);
	if (r < 0)
		return r;
	if (old) {
		old->value = tv_of_ts(&prev.it_value);
		old->interval = tv_of_ts(&prev.it_interval);
	}
	return 0;
}

/* ---- prctl(PR_SET_PDEATHSIG) ----
 * Nothing in the ABI blocks until a parent dies, so the parent-death signal
 * is a periodic check (every PDEATH_CHECK_NS) on a helper thread: when the
 * process has been re-parented, it gets the signal once.  Linux sends it at
 * once, and when the creating *thread* exits; here it comes within the
 * period, when the parent process has gone.  A fork child starts without it,
 * as on Linux; unlike Linux, it does not survive execve. */
long libos_pdeathsig_set(int sig)
{
	struct libos_timers *tt = &libos_current()->timers;
	struct libos_timer_slot *t = &tt->slot[SLOT_PDEATHSIG];
	uint64_t mask = timers_lock(tt);
	timers_claim(tt);
	int had = t->used;
	timers_unlock(tt, mask);
	if (had)
		free_slot(tt, t);
	if (!sig)
		return 0;
	mask = timers_lock(tt);
	t->used = 1;
	t->clock = CLOCK_MONOTONIC;
	t->notify = SIGEV_SIGNAL;
	t->signo = sig;
	t->watch_parent = sys0(__NR_getppid);
	timers_unlock(tt, mask);
	struct __kernel_itimerspec spec = {ts_of(PDEATH_CHECK_NS), ts_of(PDEATH_CHECK_NS)};
	return slot_arm(tt, t, &spec, 0, 0);
}

int libos_pdeathsig_get(void)
{
	struct libos_timers *tt = &libos_current()->timers;
	uint64_t mask = timers_lock(tt);
	timers_claim(tt);
	int sig = tt->slot[SLOT_PDEATHSIG].used ? tt->slot[SLOT_PDEATHSIG].signo : 0;
	timers_unlock(tt, mask);
	return sig;
}

/* ---- timerfd ----
 * A timerfd is one end of a SOCK_SEQPACKET pair (read, poll and epoll on it
 * stay direct calls) and a timer slot whose helper writes the number of
 * expirations, 8 bytes, into the other end.  Differences from Linux: each
 * read returns the expirations of one wake-up of the helper rather than all
 * of them since the last read (their sum over reads is the same), and
 * TFD_TIMER_CANCEL_ON_SET never cancels (the guest cannot set the clock).
 * The helper ends when it finds the program's end closed. */

#define TFD_NONBLOCK_K O_NONBLOCK
#define TFD_CLOEXEC_K O_CLOEXEC
#define TFD_TIMER_ABSTIME_K 1
#define TFD_TIMER_CANCEL_ON_SET_K 2
#define AF_UNIX_K 1
#define SOCK_SEQPACKET_K 5
#define SHUT_RD_K 0
#define SHUT_WR_K 1

/* Implements Linux syscall timerfd_create(2). */
LIBOS_SYSCALL(timerfd_create)
{
	struct libos_timers *tt = &libos_current()->timers;
	int clock = (int)a0, flags = (int)a1;
	if (flags & ~(TFD_NONBLOCK_K | TFD_CLOEXEC_K))
		return -EINVAL;
	if (clock == CLOCK_REALTIME_ALARM || clock == CLOCK_BOOTTIME_ALARM)
		return -EPERM;
	if (clock != CLOCK_REALTIME && clock != CLOCK_MONOTONIC && clock != CLOCK_BOOTTIME)
		return -EINVAL;
	int pair[2];
	long r = sys4(__NR_socketpair, AF_UNIX_K, SOCK_SEQPACKET_K | O_CLOEXEC, 0, pair);
	if (r < 0)
		return r;
	sys2(__NR_shutdown, pair[0], SHUT_WR_K);
	sys2(__NR_shutdown, pair[1], SHUT_RD_K);
	if (!(flags & TFD_CLOEXEC_K))
		sys3(__NR_fcntl, pair[0], F_SETFD, 0);
	if (flags & TFD_NONBLOCK_K)
		sys3(__NR_fcntl, pair[0], F_SETFL, O_NONBLOCK);
	struct stat st;
	sys2(__NR_fstat, pair[0], &st);
	/* The library OS's end goes high, out of the program's way. */
	unsigned long limit = libos_current()->rlimits[RLIMIT_NOFILE].rlim_cur;
	if (limit > 128 && limit <= PICO_LOADER_FD) {
		long high = sys3(__NR_fcntl, pair[1], F_DUPFD_CLOEXEC, (long)limit - 64);
		if (high >= 0) {
			sys1(__NR_close, pair[1]);
			pair[1] = (int)high;
		}
	}
	uint64_t mask = timers_lock(tt);
	timers_claim(tt);
	struct libos_timer_slot *t = 0;
	for (int i = 0; i < LIBOS_MAX_TIMERS && !t; i++)
		if (!tt->slot[i].used)
			t = &tt->slot[i];
	if (t) {
		memset(t, 0, sizeof(*t));
		t->used = 1;
		t->clock = clock;
		t->notify = NOTIFY_TIMERFD;
		t->wfd = pair[1];
		t->dev = st.st_dev;
		t->ino = st.st_ino;
	}
	timers_unlock(tt, mask);
	if (!t) {
		sys1(__NR_close, pair[0]);
		sys1(__NR_close, pair[1]);
		return -EMFILE;
	}
	return pair[0];
}

/* The timerfd slot of fd, or NULL (EINVAL, as Linux for another fd). */
static struct libos_timer_slot *timerfd_slot(long fd, long *err)
{
	struct libos_timers *tt = &libos_current()->timers;
	struct stat st;
	*err = sys2(__NR_fstat, (int)fd, &st);
	if (*err < 0)
		return 0;
	*err = -EINVAL;
	uint64_t mask = timers_lock(tt);
	timers_claim(tt);
	struct libos_timer_slot *found = 0;
	for (int i = 0; i < LIBOS_MAX_TIMERS && !found; i++) {
		struct libos_timer_slot *t = &tt->slot[i];
		if (t->used && !t->orphan && t->notify == NOTIFY_TIMERFD && t->dev == st.st_dev && t->ino == st.st_ino)
			found = t;
	}
	timers_unlock(tt, mask);
	return found;
}

/* Implements Linux syscall timerfd_settime(2). */
LIBOS_SYSCALL(timerfd_settime)
{
	struct libos_timers *tt = &libos_current()->timers;
	struct __kernel_itimerspec nv, old;
	long r;
	if ((int)a1 & ~(TFD_TIMER_ABSTIME_K | TFD_TIMER_CANCEL_ON_SET_K))
		return -EINVAL;
	struct libos_timer_slot *t = timerfd_slot(a0, &r);
	if (!t)
		return r;
	if ((r = libos_copy_from_guest(&nv, (const void *)a2, sizeof(nv))) < 0)
		return r;
	if (!valid_timespec(&nv.it_value) || !valid_timespec(&nv.it_interval))
		return -EINVAL;
	/* Setting a timerfd forgets the expirations not yet read. */
	uint64_t junk;
	while (sys6(__NR_recvfrom, a0, (long)&junk, sizeof(junk), MSG_DONTWAIT_K, 0, 0) > 0)
		;
	if ((r = slot_arm(tt, t, &nv, (int)a1 & TFD_TIMER_ABSTIME_K, &old)) < 0)
		return r;
	return a3 ? libos_copy_to_guest((void *)a3, &old, sizeof(old)) : 0;
}

/* Implements Linux syscall timerfd_gettime(2). */
LIBOS_SYSCALL(timerfd_gettime)
{
	struct libos_timers *tt = &libos_current()->timers;
	struct __kernel_itimerspec cur;
	long r;
	struct libos_timer_slot *t = timerfd_slot(a0, &r);
	if (!t)
		return r;
	uint64_t mask = timers_lock(tt);
	slot_read(t, &cur);
	timers_unlock(tt, mask);
	return libos_copy_to_guest((void *)a1, &cur, sizeof(cur));
}
