/* Accepting signals synchronously: rt_sigtimedwait (sigwait, sigwaitinfo,
 * sigtimedwait) and signalfd.
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
 * fixed; a thread beyond it gets EAGAIN.  It is the process's
 * (libos_current()->sigwait): a child that shares this memory (vfork,
 * posix_spawn) starts with no waiter and no signalfd, the program's
 * dispositions back in force, and what it changes stays its own.
 *
 * A signalfd is the same catcher kept installed for its mask, on a helper
 * thread of the library OS that waits with exactly the masks of the
 * process's signalfds let through: a process-directed signal that every
 * program thread blocks (as signalfd's users do) is delivered there, and the
 * catcher writes its signalfd_siginfo record into a SOCK_SEQPACKET pair
 * whose other end is the program's fd (read, poll and epoll on it are direct
 * calls).  Differences from Linux: a read returns one record at a time;
 * signals sent to one thread (pthread_kill, raise in a threaded program) stay
 * pending on that thread; a fork child's signalfd does not see the child's
 * signals; and once the program closed its fd, the next signal of its mask
 * finds the pair broken and goes back to the program's disposition. */
#include "libos.h"

#include <linux/signalfd.h>

/* <sys/socket.h> */
#define AF_UNIX_K 1
#define SOCK_SEQPACKET_K 5
#define SOCK_CLOEXEC_K O_CLOEXEC
#define MSG_DONTWAIT_K 0x40
#define MSG_NOSIGNAL_K 0x4000
#define SHUT_RD_K 0
#define SHUT_WR_K 1

void libos_sigreturn(void);

#define SIGBIT(s) (1ULL << ((s) - 1))
#define MAX_WAITERS LIBOS_MAX_SIGWAITERS
#define MAX_SIGNALFDS LIBOS_MAX_SIGNALFDS
#define NSIG_K LIBOS_NSIG

static uint64_t sw_lock(struct libos_sigwait *sw)
{
	uint64_t all = ~SIGBIT(SIGSYS), old = 0;
	sys4(__NR_rt_sigprocmask, SIG_BLOCK, &all, &old, sizeof(uint64_t));
	libos_lock(&sw->lock);
	return old;
}

static void sw_unlock(struct libos_sigwait *sw, uint64_t old)
{
	libos_unlock(&sw->lock);
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

static void release_signals(struct libos_sigwait *sw, uint64_t set);

/* On the signalfd reader: the record goes to the first signalfd whose mask
 * has the signal.  Under the lock; 1 when it went. */
static int deliver_to_signalfd(struct libos_sigwait *sw, int sig, const siginfo_t *si)
{
	struct signalfd_siginfo rec;
	siginfo_t info = *si;
	libos_timer_siginfo(sig, &info);
	memset(&rec, 0, sizeof(rec));
	rec.ssi_signo = (uint32_t)sig;
	rec.ssi_errno = info.si_errno;
	rec.ssi_code = info.si_code;
	rec.ssi_pid = (uint32_t)info.si_pid;
	rec.ssi_uid = (uint32_t)info.si_uid;
	if (info.si_code == SI_TIMER) {
		rec.ssi_tid = (uint32_t)info.si_tid;
		rec.ssi_overrun = (uint32_t)info.si_overrun;
		rec.ssi_ptr = (uint64_t)info.si_ptr;
		rec.ssi_int = info.si_int;
	} else if (sig == SIGCHLD) {
		rec.ssi_status = info.si_status;
		rec.ssi_utime = (uint64_t)info.si_utime;
		rec.ssi_stime = (uint64_t)info.si_stime;
	} else if (info.si_code == SI_QUEUE) {
		rec.ssi_int = info.si_int;
		rec.ssi_ptr = (uint64_t)info.si_ptr;
	}
	for (int i = 0; i < MAX_SIGNALFDS; i++) {
		struct libos_signalfd *f = &sw->sfd[i];
		if (!f->used || !(f->mask & SIGBIT(sig)))
			continue;
		long r = sys6(__NR_sendto, f->wfd, (long)&rec, sizeof(rec), MSG_DONTWAIT_K | MSG_NOSIGNAL_K, 0, 0);
		if (r == -EPIPE || r == -ECONNREFUSED || r == -EBADF || r == -ENOTSOCK) {
			/* The program closed its end: this signalfd is gone. */
			release_signals(sw, f->mask);
			sys1(__NR_close, f->wfd);
			f->used = 0;
			continue;
		}
		return 1; /* sent, or dropped on a full queue (bounded, as the kernel's) */
	}
	return 0;
}

static void catcher(int sig, siginfo_t *si, void *uc)
{
	struct libos_sigwait *sw = &libos_current()->sigwait;
	long tid = sys0(__NR_gettid);
	struct kernel_sigaction act = {0};
	int mine = 0;
	uint64_t mask = sw_lock(sw);
	if (tid == sw->sfd_reader_tid && sw->sfd_owner == sys0(__NR_getpid))
		mine = deliver_to_signalfd(sw, sig, si);
	for (int i = 0; i < MAX_WAITERS && !mine; i++) {
		struct libos_sigwaiter *w = &sw->w[i];
		if (w->tid == tid && (w->set & SIGBIT(sig)) && !w->got) {
			w->info = *si;
			w->got = 1;
			mine = 1;
			break;
		}
	}
	if (!mine)
		act = sw->program[sig];
	sw_unlock(sw, mask);
	if (!mine)
		run_program_action(sig, si, uc, &act);
}

/* While a signal has waiters, rt_sigaction works on the program's kept
 * disposition.  Returns 1 when it did (the answer in *result). */
int libos_sigwait_sigaction(int sig, const struct kernel_sigaction *act, struct kernel_sigaction *old)
{
	struct libos_sigwait *sw = &libos_current()->sigwait;
	if (sig <= 0 || sig > NSIG_K || !__atomic_load_n(&sw->users[sig], __ATOMIC_ACQUIRE))
		return 0;
	uint64_t mask = sw_lock(sw);
	int kept = sw->users[sig] > 0;
	if (kept) {
		if (old)
			*old = sw->program[sig];
		if (act)
			sw->program[sig] = *act;
	}
	sw_unlock(sw, mask);
	return kept;
}

/* Takes (or gives back) the real dispositions of `set` for a waiter.  Under
 * the lock. */
static void hold_signals(struct libos_sigwait *sw, uint64_t set)
{
	struct kernel_sigaction ours = {
		.handler = (void *)catcher,
		.flags = SA_SIGINFO | SA_RESTORER | SA_ONSTACK,
		.restorer = libos_sigreturn,
		/* One signal per wake-up: the rest of the set stays pending. */
		.mask = ~SIGBIT(SIGSYS),
	};
	for (int s = 1; s <= NSIG_K; s++)
		if ((set & SIGBIT(s)) && sw->users[s]++ == 0) {
			sys4(__NR_rt_sigaction, s, 0, &sw->program[s], sizeof(uint64_t));
			/* A thread that takes it for the program restarts its call
			 * as the program's handler would have. */
			ours.flags = (ours.flags & ~(unsigned long)SA_RESTART) | (sw->program[s].flags & SA_RESTART);
			sys4(__NR_rt_sigaction, s, &ours, 0, sizeof(uint64_t));
		}
}

static void release_signals(struct libos_sigwait *sw, uint64_t set)
{
	for (int s = 1; s <= NSIG_K; s++)
		if ((set & SIGBIT(s)) && --sw->users[s] == 0)
			sys4(__NR_rt_sigaction, s, &sw->program[s], 0, sizeof(uint64_t));
}

void libos_sigwait_inherit(struct libos_sigwait *dst, struct libos_sigwait *src)
{
	memset(dst, 0, sizeof(*dst));
	uint64_t mask = sw_lock(src);
	memcpy(dst->users, src->users, sizeof(dst->users));
	memcpy(dst->program, src->program, sizeof(dst->program));
	sw_unlock(src, mask);
}

void libos_sigwait_release_held(struct libos_sigwait *sw)
{
	for (int s = 1; s <= NSIG_K; s++)
		if (sw->users[s]) {
			sw->users[s] = 0;
			sys4(__NR_rt_sigaction, s, &sw->program[s], 0, sizeof(uint64_t));
		}
}

/* Implements Linux syscall rt_sigtimedwait(2). */
LIBOS_SYSCALL(rt_sigtimedwait)
{
	struct libos_sigwait *sw = &libos_current()->sigwait;
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
	uint64_t mask = sw_lock(sw);
	struct libos_sigwaiter *w = 0;
	for (int i = 0; i < MAX_WAITERS && !w; i++)
		if (!sw->w[i].tid)
			w = &sw->w[i];
	if (w) {
		w->tid = (int)tid;
		w->set = set;
		w->got = 0;
		hold_signals(sw, set);
	}
	sw_unlock(sw, mask);
	if (!w)
		return -EAGAIN;
	/* The mask of the wait: the program's, with the set let through. */
	uint64_t wait_mask = uc->uc_sigmask & ~set & ~SIGBIT(SIGSYS);
	do
		r = sys5(__NR_ppoll, 0, 0, tmop, &wait_mask, sizeof(uint64_t));
	while (r == 0 && !tmop);
	mask = sw_lock(sw);
	int got = w->got;
	siginfo_t info = w->info;
	release_signals(sw, set);
	w->tid = 0;
	sw_unlock(sw, mask);
	if (!got)
		return r == 0 ? -EAGAIN : r; /* timed out, or another handler ran: EINTR */
	libos_timer_siginfo(info.si_signo, &info);
	if (a1 && (r = libos_copy_to_guest((void *)a1, &info, sizeof(info))) < 0)
		return r;
	return info.si_signo;
}

/* ---- signalfd ---- */

int libos_signalfd_is_helper(long tid)
{
	struct libos_sigwait *sw = &libos_current()->sigwait;
	return tid && tid == sw->sfd_reader_tid;
}

/* The reader thread: waits with the signalfds' signals (and SIGSYS, for
 * the library OS's pokes when the masks change) let through. */
static void signalfd_reader(void *unused)
{
	struct libos_sigwait *sw = &libos_current()->sigwait;
	(void)unused;
	uint64_t all = ~0ULL;
	sys4(__NR_rt_sigprocmask, SIG_SETMASK, &all, 0, sizeof(uint64_t));
	for (;;) {
		uint64_t mask = sw_lock(sw), wanted = 0;
		for (int i = 0; i < MAX_SIGNALFDS; i++)
			if (sw->sfd[i].used)
				wanted |= sw->sfd[i].mask;
		sw_unlock(sw, mask);
		/* sw_unlock put back the full mask; ppoll lets `wanted` through. */
		uint64_t wait_mask = ~(wanted | SIGBIT(SIGSYS));
		sys5(__NR_ppoll, 0, 0, 0, &wait_mask, sizeof(uint64_t));
	}
}

/* Under the lock: a fork child has its parent's table but not its reader. */
static void signalfd_claim(struct libos_sigwait *sw)
{
	long self = sys0(__NR_getpid);
	if (sw->sfd_owner != self) {
		for (int i = 0; i < MAX_SIGNALFDS; i++)
			sw->sfd[i].used = 0;
		sw->sfd_reader_tid = 0;
		sw->sfd_owner = self;
	}
}

#define SFD_NONBLOCK_K O_NONBLOCK
#define SFD_CLOEXEC_K O_CLOEXEC

/* Where the library OS keeps its end: high, out of the way of programs
 * that count on the lowest free numbers. */
static long high_fd(long fd)
{
	unsigned long limit = libos_current()->rlimits[RLIMIT_NOFILE].rlim_cur;
	long min = limit > 128 && limit <= PICO_LOADER_FD ? (long)limit - 64 : 0;
	long r = min ? sys3(__NR_fcntl, fd, F_DUPFD_CLOEXEC, min) : -EINVAL;
	if (r < 0)
		return fd;
	sys1(__NR_close, fd);
	return r;
}

/* Implements Linux syscall signalfd4(2). */
LIBOS_SYSCALL(signalfd4)
{
	struct libos_sigwait *sw = &libos_current()->sigwait;
	int fd = (int)a0, flags = (int)a3;
	uint64_t set;
	long r;
	if ((size_t)a2 != sizeof(uint64_t) || (flags & ~(SFD_NONBLOCK_K | SFD_CLOEXEC_K)))
		return -EINVAL;
	if ((r = libos_copy_from_guest(&set, (const void *)a1, sizeof(set))) < 0)
		return r;
	set &= ~(SIGBIT(SIGKILL) | SIGBIT(SIGSTOP) | SIGBIT(SIGSYS));
	struct stat st;
	if (fd != -1) {
		/* A new mask for an existing signalfd. */
		if ((r = sys2(__NR_fstat, fd, &st)) < 0)
			return r;
		uint64_t mask = sw_lock(sw);
		signalfd_claim(sw);
		struct libos_signalfd *f = 0;
		for (int i = 0; i < MAX_SIGNALFDS && !f; i++)
			if (sw->sfd[i].used && sw->sfd[i].dev == st.st_dev && sw->sfd[i].ino == st.st_ino)
				f = &sw->sfd[i];
		if (f) {
			hold_signals(sw, set & ~f->mask);
			release_signals(sw, f->mask & ~set);
			f->mask = set;
			if (sw->sfd_reader_tid)
				sys3(__NR_tgkill, sw->sfd_owner, sw->sfd_reader_tid, SIGSYS);
		}
		sw_unlock(sw, mask);
		return f ? fd : -EINVAL;
	}
	int pair[2];
	r = sys4(__NR_socketpair, AF_UNIX_K, SOCK_SEQPACKET_K | SOCK_CLOEXEC_K, 0, pair);
	if (r < 0)
		return r;
	sys2(__NR_shutdown, pair[0], SHUT_WR_K);
	sys2(__NR_shutdown, pair[1], SHUT_RD_K);
	if (!(flags & SFD_CLOEXEC_K))
		sys3(__NR_fcntl, pair[0], F_SETFD, 0);
	if (flags & SFD_NONBLOCK_K)
		sys3(__NR_fcntl, pair[0], F_SETFL, O_NONBLOCK);
	sys2(__NR_fstat, pair[0], &st);
	int wfd = (int)high_fd(pair[1]);
	uint64_t mask = sw_lock(sw);
	signalfd_claim(sw);
	struct libos_signalfd *f = 0;
	for (int i = 0; i < MAX_SIGNALFDS && !f; i++)
		if (!sw->sfd[i].used)
			f = &sw->sfd[i];
	r = 0;
	if (f && !sw->sfd_reader_tid)
		r = libos_start_helper_thread(signalfd_reader, 0, &sw->sfd_reader_tid, &sw->sfd_reader_stack);
	if (f && r == 0) {
		f->used = 1;
		f->dev = st.st_dev;
		f->ino = st.st_ino;
		f->wfd = wfd;
		f->mask = set;
		hold_signals(sw, set);
		sys3(__NR_tgkill, sw->sfd_owner, sw->sfd_reader_tid, SIGSYS);
	}
	sw_unlock(sw, mask);
	if (!f || r < 0) {
		sys1(__NR_close, pair[0]);
		sys1(__NR_close, wfd);
		return !f ? -EMFILE : r;
	}
	return pair[0];
}

/* Implements Linux syscall signalfd(2). */
LIBOS_SYSCALL(signalfd) { return libos_sys_signalfd4(a0, a1, a2, 0, 0, 0, uc); }
