/* The monitor's loop (loop.h): a server thread per guest that receives
 * each notification, dispatches it to its handler (serve.c's table) and
 * answers it; the audit ring; the guests' registration and the loop's
 * life.  What a server shares with the handlers is in serve.h. */
#define _GNU_SOURCE
#include "serve.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/audit.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "seccomp_compat.h"

#define EVENTS_PER_WAIT 16

__thread int pico_denial; /* denial.h */

#define GEN_MASK 0x3fffffffu

/* Serving threads: small stacks (the deepest call, a path walk, needs a few
 * pages of buffers). */
#define SERVER_STACK_BYTES (512 * 1024)

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int64_t handle_of(uint32_t idx, uint32_t gen)
{
	return ((int64_t)gen << 32) | (int64_t)(idx + 1);
}

/* With the loop's lock held. */
static struct guest *guest_of_handle(struct pico_loop *l, int64_t handle)
{
	if (handle <= 0)
		return NULL;
	uint32_t idx = (uint32_t)(handle & 0xffffffff) - 1;
	uint32_t gen = (uint32_t)(handle >> 32);
	if (idx >= l->max_guests || !l->guests[idx] || l->gens[idx] != gen)
		return NULL;
	return l->guests[idx];
}

/* ---------------------------------------------------------------------- */
/* Audit ring                                                              */

/* The guest slot and generation a record's handle names. */
static uint32_t record_slot(const struct pico_audit_record *rec, uint32_t *gen)
{
	*gen = (uint32_t)((uint64_t)rec->guest >> 32);
	return (uint32_t)(rec->guest & 0xffffffff) - 1;
}

/* Returns 0, or -1 when the record was dropped (the ring, or the part of it
 * a guest holding its share may not use, is full). */
static int audit_push(struct pico_loop *l, const struct pico_audit_record *rec)
{
	int signal_consumer = 0, dropped = 0;
	uint32_t gen, slot = record_slot(rec, &gen);

	pthread_mutex_lock(&l->audit_lock);
	if (l->ring_held_gen[slot] != gen) {
		l->ring_held_gen[slot] = gen;
		l->ring_held[slot] = 0;
	}
	if (l->ring_count == l->ring_cap ||
	    (l->ring_held[slot] >= l->ring_share && l->ring_count >= l->ring_cap - l->ring_share)) {
		l->audit_dropped++;
		dropped = 1;
	} else {
		l->ring[(l->ring_head + l->ring_count) % l->ring_cap] = *rec;
		l->ring_count++;
		l->ring_held[slot]++;
		if (l->ring_count * 2 >= l->ring_cap && !l->audit_signalled) {
			l->audit_signalled = 1;
			signal_consumer = 1;
		}
	}
	pthread_mutex_unlock(&l->audit_lock);
	if (signal_consumer) {
		uint64_t one = 1;
		ssize_t n = write(l->audit_efd, &one, sizeof(one));
		(void)n; /* a full counter is already a signal */
	}
	return dropped ? -1 : 0;
}

size_t pico_loop_drain_audit(struct pico_loop *l, struct pico_audit_record *out, size_t max)
{
	size_t n = 0;

	pthread_mutex_lock(&l->audit_lock);
	while (n < max && l->ring_count > 0) {
		uint32_t gen, slot = record_slot(&l->ring[l->ring_head], &gen);
		if (l->ring_held_gen[slot] == gen && l->ring_held[slot] > 0)
			l->ring_held[slot]--;
		out[n++] = l->ring[l->ring_head];
		l->ring_head = (l->ring_head + 1) % l->ring_cap;
		l->ring_count--;
	}
	/* Emptied: start again at the front, so that the ring's pages already
	 * touched are reused (a record lands on a fresh page of the calloc'ed
	 * ring every few calls otherwise: a page fault until the whole ring has
	 * been written once). */
	if (l->ring_count == 0)
		l->ring_head = 0;
	if (l->ring_count * 2 < l->ring_cap)
		l->audit_signalled = 0;
	pthread_mutex_unlock(&l->audit_lock);
	return n;
}

int pico_loop_audit_eventfd(struct pico_loop *l)
{
	return l->audit_efd;
}

/* Answers with a value or -errno.  Returns 0, or -ECANCELED when the
 * notification had gone (the guest was killed or interrupted). */
int send_answer(struct guest *g, uint64_t id, long ret)
{
	struct seccomp_notif_resp *resp = g->resp;

	memset(resp, 0, g->loop->resp_size);
	resp->id = id;
	if (ret < 0)
		resp->error = (int32_t)ret;
	else
		resp->val = ret;
	if (ioctl(g->listener, SECCOMP_IOCTL_NOTIF_SEND, resp) < 0)
		return -ECANCELED; /* ENOENT: gone; nothing else is possible */
	return 0;
}

void account(struct guest *g, struct pico_audit_record *rec)
{
	BUMP(g->stats.calls);
	switch (rec->decision) {
	case PICO_DECISION_ALLOW:
		BUMP(g->stats.allowed);
		if (!g->audit_allowed)
			return; /* counted; no record unless an audit sink wants one */
		break;
	case PICO_DECISION_DENY:
		BUMP(g->stats.denied);
		break;
	case PICO_DECISION_ABANDONED:
		BUMP(g->stats.abandoned);
		BUMP(g->loop->abandoned);
		break;
	default:
		BUMP(g->stats.errors);
		break;
	}
	rec->time_ns = now_ns();
	if (audit_push(g->loop, rec) < 0)
		BUMP(g->stats.audit_dropped);
}

void finish_record(struct pico_audit_record *rec, long ret, int denied)
{
	rec->reason = 0;
	if (ret == -ECANCELED) {
		rec->decision = PICO_DECISION_ABANDONED;
		rec->err = ECANCELED;
		rec->result = 0;
	} else if (ret < 0) {
		rec->decision = denied ? PICO_DECISION_DENY : PICO_DECISION_ERROR;
		rec->reason = (int16_t)denied;
		rec->err = (int32_t)-ret;
		rec->result = ret;
	} else {
		rec->decision = PICO_DECISION_ALLOW;
		rec->err = 0;
		rec->result = ret;
	}
}


/* Serves the notification just received in g->notif. */
static void serve_received(struct guest *g)
{
	struct pico_loop *l = g->loop;
	struct seccomp_notif *n = g->notif;
	struct call c;
	long ret;

	BUMP(l->notifications);
	memset(&c.rec, 0, sizeof(c.rec));
	c.guest = g;
	c.n = n;
	c.gone = c.deferred = c.own = c.own_nonblock = 0;
	c.install_fd = -1;
	c.to.channel = -1;
	c.to.tag = 0;
	c.to.cloexec = 0;
	c.rec.guest = handle_of(g->idx, g->gen);
	c.rec.pid = (int32_t)n->pid;
	pico_denial = 0;

	uint32_t nr = (uint32_t)n->data.nr - PICO_MEDIATED_BASE;
	if (n->data.arch != AUDIT_ARCH_X86_64 || nr >= PICO_MEDIATED_COUNT) {
		/* The filter routes only the mediated numbers here. */
		c.rec.call = -1;
		c.rec.arg = n->data.nr;
		ret = -ENOSYS;
	} else if (g->identity_err) {
		c.rec.call = (int32_t)nr;
		ret = g->identity_err;
	} else {
		uint64_t lookups = pico_fs_thread_lookups();
		c.rec.call = (int32_t)nr;
		if (is_area_ref(n->data.args[0]))
			BUMP(l->area_calls);
		ret = serve_table[nr](&c, g->scratch);
		__atomic_fetch_add(&l->fs_lookups, pico_fs_thread_lookups() - lookups, __ATOMIC_RELAXED);
	}

	if (ret == -ECANCELED || c.gone) {
		ret = -ECANCELED;
		if (c.install_fd >= 0)
			close(c.install_fd);
	} else if (c.deferred) {
		if (defer_connect(g, c.install_fd, n->id, (pid_t)n->pid, &c.to, &c.rec) == 0)
			return; /* answered when the connect completes */
		close(c.install_fd);
		ret = send_answer(g, n->id, -EAGAIN);
		if (ret == 0)
			ret = -EAGAIN;
	} else if (c.own) {
		int err = gn_submit(g, &c);
		if (err == 0)
			return; /* answered when the helper has made the socket */
		ret = send_answer(g, n->id, err);
		if (ret == 0)
			ret = err;
	} else if (ret >= 0 && c.install_fd >= 0) {
		ret = deliver_fd(g, n->id, &c.to, c.install_fd);
		close(c.install_fd);
	} else {
		int err = send_answer(g, n->id, ret);
		if (err < 0)
			ret = err;
	}
	finish_record(&c.rec, ret, pico_denial);
	account(g, &c.rec);
}

/* Receives: 0, or -errno (ENOENT: the caller vanished since the wake-up;
 * EINTR: interrupted). */
static int receive(struct guest *g)
{
	memset(g->notif, 0, g->loop->notif_size);
	if (ioctl(g->listener, SECCOMP_IOCTL_NOTIF_RECV, g->notif) < 0) {
		int err = errno;
		if (err != ENOENT && err != EINTR)
			BUMP(g->loop->recv_errors);
		return -err;
	}
	return 0;
}

/* ---------------------------------------------------------------------- */
/* Serving threads                                                         */

/* The identity file operations run under, for this thread only.  glibc's
 * setgroups() would change every thread of the process (the Python
 * interpreter's too): raw system calls change the calling thread alone. */
#define NGROUPS_SMALL 64

struct identity {
	uint32_t fsuid, fsgid;
	gid_t groups[NGROUPS_SMALL];
	int ngroups;
	int umask_set;
	mode_t umask;
};

static int take_identity(uint32_t fsuid, uint32_t fsgid, const uint32_t *groups, size_t ngroups,
			 struct identity *saved)
{
	saved->fsuid = (uint32_t)syscall(SYS_setfsuid, -1);
	saved->fsgid = (uint32_t)syscall(SYS_setfsgid, -1);
	saved->ngroups = (int)syscall(SYS_getgroups, NGROUPS_SMALL, saved->groups);
	/* A private umask (and cwd, root): the library OS already applied
	 * the guest's umask to every mode the guest passes. */
	saved->umask_set = 0;
	if (unshare(CLONE_FS) < 0)
		return -errno;
	saved->umask = umask(0);
	saved->umask_set = 1;
	if (ngroups > NGROUPS_SMALL)
		return -EINVAL;
	gid_t gids[NGROUPS_SMALL];
	for (size_t i = 0; i < ngroups; i++)
		gids[i] = groups[i];
	int same_groups = saved->ngroups == (int)ngroups &&
			  !memcmp(gids, saved->groups, ngroups * sizeof(gid_t));
	if (!same_groups && syscall(SYS_setgroups, ngroups, gids) < 0)
		return -errno;
	syscall(SYS_setfsgid, fsgid);
	syscall(SYS_setfsuid, fsuid);
	/* setfsuid/setfsgid report no error: read the values back. */
	if ((uint32_t)syscall(SYS_setfsuid, -1) != fsuid || (uint32_t)syscall(SYS_setfsgid, -1) != fsgid)
		return -EPERM;
	return 0;
}

static void restore_identity(const struct identity *saved)
{
	syscall(SYS_setfsuid, saved->fsuid);
	syscall(SYS_setfsgid, saved->fsgid);
	if (saved->ngroups >= 0)
		syscall(SYS_setgroups, saved->ngroups, saved->groups);
	if (saved->umask_set)
		umask(saved->umask);
}

/* The signal that interrupts a server's NOTIF_RECV. */
static int wake_signal(void)
{
	return SIGRTMIN + 3;
}

static void wake_handler(int sig)
{
	(void)sig; /* only there to interrupt the system call */
}

/* A server waits in NOTIF_RECV only if the wake-up signal can interrupt it:
 * a handler (no SA_RESTART) that does nothing.  If someone else already
 * handles that signal, servers wait in epoll. */
static int install_wake_handler(void)
{
	struct sigaction sa, old;

	if (sigaction(wake_signal(), NULL, &old) < 0)
		return 0;
	if (old.sa_handler != SIG_DFL && old.sa_handler != wake_handler)
		return 0;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = wake_handler;
	sigemptyset(&sa.sa_mask);
	return sigaction(wake_signal(), &sa, NULL) == 0;
}

/* Makes g's server look at its stop flag.  In NOTIF_RECV it only ends for
 * a signal (which may land just before it enters the call: the caller
 * repeats this until the server has stopped). */
static void kick(struct guest *g)
{
	uint64_t one = 1;
	ssize_t n = write(g->wakefd, &one, sizeof(one));
	(void)n; /* a saturated eventfd is still readable */
	if (__atomic_load_n(&g->in_direct, __ATOMIC_SEQ_CST) && g->tid > 0)
		syscall(SYS_tgkill, getpid(), g->tid, wake_signal());
}

/* Every process of the guest is gone: its listener hung up. */
static void guest_hung_up(struct guest *g)
{
	if (g->listener < 0)
		return;
	epoll_ctl(g->epfd, EPOLL_CTL_DEL, g->listener, NULL);
	close(g->listener);
	g->listener = -1;
	__atomic_store_n(&g->stats.alive, 0, __ATOMIC_RELAXED);
	drop_connects(g);
	gn_close(g);
}

static void dispatch(struct guest *g, const struct epoll_event *ev)
{
	uint64_t d = ev->data.u64;

	switch (EV_KIND(d)) {
	case EV_WAKE: {
		uint64_t v;
		ssize_t n = read(g->wakefd, &v, sizeof(v));
		(void)n;
		break;
	}
	case EV_LISTENER:
		if (g->listener < 0)
			break;
		if ((ev->events & EPOLLIN) && receive(g) == 0)
			serve_received(g);
		if (ev->events & (EPOLLHUP | EPOLLERR))
			guest_hung_up(g);
		break;
	case EV_CONNECT:
		finish_connect(g, EV_IDX(d));
		break;
	case EV_GUESTNET:
		gn_ready(g, ev->events);
		break;
	}
}

static void *serve_guest(void *arg)
{
	struct guest *g = arg;
	struct pico_loop *l = g->loop;
	struct epoll_event events[EVENTS_PER_WAIT];
	struct identity saved;
	sigset_t mask;

	/* Only the wake-up signal: a signal that interrupts the wait inside
	 * NOTIF_ADDFD with SECCOMP_ADDFD_FLAG_SEND leaves the guest's call
	 * answered 0 with no fd installed (the kernel marks the call replied
	 * before it waits for the guest to take the fd, and withdraws the fd
	 * when that wait is interrupted), and the process's own signals are
	 * for its other threads. */
	sigfillset(&mask);
	sigdelset(&mask, wake_signal());
	pthread_sigmask(SIG_SETMASK, &mask, NULL);
	g->tid = (pid_t)syscall(SYS_gettid);
	int err = take_identity(l->fsuid, l->fsgid, l->groups, l->ngroups, &saved);
	if (err < 0)
		g->identity_err = err == -EINVAL ? -EINVAL : -EPERM;

	for (int use_epoll = 1;;) {
		if (__atomic_load_n(&g->stop, __ATOMIC_SEQ_CST))
			break;
		/* Blocked in NOTIF_RECV the server gets the synchronous wake-up
		 * (epoll waiters are woken the ordinary way, often on another
		 * CPU), and its answer wakes the guest the same way: a call costs
		 * two context switches on one CPU.  Connects in progress and
		 * calls waiting for the socket helper need epoll. */
		if (!use_epoll && l->direct_ok && g->listener >= 0 && g->nconnects == 0 && g->gn_count == 0) {
			__atomic_store_n(&g->in_direct, 1, __ATOMIC_SEQ_CST);
			if (__atomic_load_n(&g->stop, __ATOMIC_SEQ_CST)) {
				__atomic_store_n(&g->in_direct, 0, __ATOMIC_SEQ_CST);
				break;
			}
			int rerr = receive(g);
			__atomic_store_n(&g->in_direct, 0, __ATOMIC_SEQ_CST);
			if (rerr == 0)
				serve_received(g);
			/* Interrupted, or the listener misbehaves (e.g. every guest
			 * process is gone): look at everything once. */
			use_epoll = rerr != 0;
			continue;
		}
		int n = epoll_wait(g->epfd, events, EVENTS_PER_WAIT, -1);
		if (n < 0 && errno != EINTR)
			break; /* cannot happen with a valid epoll fd */
		for (int i = 0; i < n; i++)
			dispatch(g, &events[i]);
		use_epoll = 0;
	}
	restore_identity(&saved);
	struct timespec cpu;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &cpu);
	__atomic_fetch_add(&g->cpu_ns, (uint64_t)cpu.tv_sec * 1000000000ull + (uint64_t)cpu.tv_nsec, __ATOMIC_RELAXED);
	DROP(l->servers);
	return NULL;
}

/* With the loop's lock held: starts g's server. */
static int start_server(struct guest *g)
{
	pthread_attr_t attr;
	sigset_t all, old;

	if (pthread_attr_init(&attr) != 0)
		return -ENOMEM;
	pthread_attr_setstacksize(&attr, SERVER_STACK_BYTES);
	/* Created with every signal blocked: none may reach it before it has
	 * set its own mask. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	g->stop = 0;
	/* Counted from here until the thread ends: the count a caller reads
	 * just after adding a guest includes that guest's server. */
	BUMP(g->loop->servers);
	int rc = pthread_create(&g->thread, &attr, serve_guest, g);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	pthread_attr_destroy(&attr);
	if (rc != 0) {
		DROP(g->loop->servers);
		return -rc;
	}
	g->started = 1;
	return 0;
}

/* Stops g's server and waits for it (not under the loop's lock). */
static void stop_server(struct guest *g)
{
	__atomic_store_n(&g->stop, 1, __ATOMIC_SEQ_CST);
	for (;;) {
		kick(g);
		struct timespec deadline;
		clock_gettime(CLOCK_REALTIME, &deadline);
		deadline.tv_nsec += 20 * 1000000L;
		if (deadline.tv_nsec >= 1000000000L) {
			deadline.tv_sec++;
			deadline.tv_nsec -= 1000000000L;
		}
		if (pthread_timedjoin_np(g->thread, NULL, &deadline) == 0)
			break;
	}
	g->started = 0;
	g->tid = 0;
}

/* ---------------------------------------------------------------------- */
/* Guests                                                                  */

static void free_guest(struct guest *g)
{
	if (!g)
		return;
	if (g->listener >= 0)
		close(g->listener);
	drop_connects(g);
	if (g->gn_fd >= 0)
		close(g->gn_fd);
	free(g->gn_q);
	pico_proc_view_release(&g->proc);
	for (int i = 0; i < g->nchannels; i++)
		close(g->channels[i]);
	if (g->area)
		munmap(g->area, PICO_AREA_SIZE);
	if (g->epfd >= 0)
		close(g->epfd);
	if (g->wakefd >= 0)
		close(g->wakefd);
	free(g->notif);
	free(g->resp);
	free(g);
}

static struct guest *new_guest(struct pico_loop *l, const struct pico_guest_spec *spec, int *err)
{
	struct guest *g = calloc(1, sizeof(*g));
	if (!g) {
		*err = -ENOMEM;
		return NULL;
	}
	g->loop = l;
	g->listener = g->gn_fd = g->epfd = g->wakefd = -1;
	g->proc.procfd = g->proc.listdir = -1;
	g->notif = calloc(1, l->notif_size);
	g->resp = calloc(1, l->resp_size);
	g->epfd = epoll_create1(EPOLL_CLOEXEC);
	g->wakefd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	g->listener = fcntl(spec->listener_fd, F_DUPFD_CLOEXEC, 3);
	if (!g->notif || !g->resp || g->epfd < 0 || g->wakefd < 0 || g->listener < 0)
		goto fail;
	if (spec->guestnet_fd >= 0 && (g->gn_fd = fcntl(spec->guestnet_fd, F_DUPFD_CLOEXEC, 3)) < 0)
		goto fail;
	if (spec->proc_fd >= 0 && (g->proc.procfd = fcntl(spec->proc_fd, F_DUPFD_CLOEXEC, 3)) < 0)
		goto fail;
	if (spec->listing_fd >= 0 && (g->proc.listdir = fcntl(spec->listing_fd, F_DUPFD_CLOEXEC, 3)) < 0)
		goto fail;
	if (spec->area_fd >= 0 && !(g->area = map_area(spec->area_fd)))
		goto fail;
	if (spec->n_channels < 0 || spec->n_channels > PICO_AREA_SLOTS || (spec->n_channels && !g->area)) {
		errno = EINVAL;
		goto fail;
	}
	for (; g->nchannels < spec->n_channels; g->nchannels++) {
		int fd = fcntl(spec->channel_fds[g->nchannels], F_DUPFD_CLOEXEC, 3);
		if (fd < 0)
			goto fail;
		g->channels[g->nchannels] = fd;
	}
	/* Synchronous wake-ups: the guest blocks at once when it notifies, so
	 * the kernel may run the server on the guest's CPU and back. */
	if (ioctl(g->listener, SECCOMP_IOCTL_NOTIF_SET_FLAGS, SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP) == 0)
		__atomic_store_n(&l->sync_wakeup, 1, __ATOMIC_RELAXED);
	struct epoll_event ev = {.events = EPOLLIN, .data.u64 = EV_DATA(EV_LISTENER, 0)};
	struct epoll_event wake = {.events = EPOLLIN, .data.u64 = EV_DATA(EV_WAKE, 0)};
	struct epoll_event gn = {.events = EPOLLIN, .data.u64 = EV_DATA(EV_GUESTNET, 0)};
	if (epoll_ctl(g->epfd, EPOLL_CTL_ADD, g->listener, &ev) < 0 ||
	    epoll_ctl(g->epfd, EPOLL_CTL_ADD, g->wakefd, &wake) < 0 ||
	    (g->gn_fd >= 0 && epoll_ctl(g->epfd, EPOLL_CTL_ADD, g->gn_fd, &gn) < 0))
		goto fail;
	g->pid = spec->pid;
	g->fs = spec->fs;
	g->net = spec->net;
	g->proc.fs = spec->fs;
	g->audit_allowed = !!spec->audit_allowed;
	g->stats.pid = spec->pid;
	g->stats.alive = 1;
	return g;
fail:
	*err = -(errno ?: ENOMEM);
	free_guest(g);
	return NULL;
}

int64_t pico_loop_add_guest(struct pico_loop *l, const struct pico_guest_spec *spec)
{
	int err = 0;
	unsigned int i;

	if (!spec || !spec->fs)
		return -EINVAL;
	struct guest *g = new_guest(l, spec, &err);
	if (!g)
		return err;
	pthread_mutex_lock(&l->lock);
	for (i = 0; i < l->max_guests; i++)
		if (!l->guests[i])
			break;
	if (i == l->max_guests) {
		pthread_mutex_unlock(&l->lock);
		free_guest(g);
		return -ENOSPC;
	}
	uint32_t gen = ((l->gens[i] + 1) & GEN_MASK) ?: 1;
	g->idx = i;
	g->gen = gen;
	g->stats.handle = handle_of(i, gen);
	g->proc.owner = g->stats.handle; /* names its /proc listings */
	if (l->state != STOPPED && (err = start_server(g)) < 0) {
		pthread_mutex_unlock(&l->lock);
		free_guest(g);
		return err;
	}
	l->gens[i] = gen;
	l->guests[i] = g;
	l->nguests++;
	pthread_mutex_unlock(&l->lock);
	return g->stats.handle;
}

/* The CPU time g's server has used: all of it is g's (serving its calls),
 * exactly, from the thread's CPU clock. */
static uint64_t server_cpu_ns(struct guest *g)
{
	clockid_t clock;
	struct timespec ts;

	uint64_t done = LOAD(g->cpu_ns);
	if (!g->started || pthread_getcpuclockid(g->thread, &clock) != 0 || clock_gettime(clock, &ts) != 0)
		return done;
	return done + (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* The guest's counts: its server writes them, so they are read atomically
 * (exact once it has stopped), with the monitor CPU charged to it: its
 * server's and its udp: relays'. */
static void read_stats(struct guest *g, struct pico_guest_stats *out)
{
	out->handle = g->stats.handle;
	out->pid = g->stats.pid;
	out->alive = LOAD(g->stats.alive);
	out->calls = LOAD(g->stats.calls);
	out->allowed = LOAD(g->stats.allowed);
	out->denied = LOAD(g->stats.denied);
	out->errors = LOAD(g->stats.errors);
	out->abandoned = LOAD(g->stats.abandoned);
	out->audit_dropped = LOAD(g->stats.audit_dropped);
	out->connects_peak = LOAD(g->stats.connects_peak);
	out->listeners = LOAD(g->stats.listeners);
	out->monitor_cpu_ns = server_cpu_ns(g) + (g->net ? pico_net_policy_cpu_ns(g->net) : 0);
}

int pico_loop_remove_guest(struct pico_loop *l, int64_t handle, struct pico_guest_stats *out)
{
	pthread_mutex_lock(&l->lock);
	struct guest *g = guest_of_handle(l, handle);
	if (!g) {
		pthread_mutex_unlock(&l->lock);
		return -ENOENT;
	}
	l->guests[g->idx] = NULL;
	l->nguests--;
	int started = g->started;
	pthread_mutex_unlock(&l->lock);
	if (started)
		stop_server(g);
	if (g->listener >= 0) {
		/* Pending calls fail (ENOSYS) as the listener closes. */
		g->stats.alive = 0;
	}
	if (out)
		read_stats(g, out);
	free_guest(g);
	return 0;
}

int pico_loop_guest_stats(struct pico_loop *l, int64_t handle, struct pico_guest_stats *out)
{
	pthread_mutex_lock(&l->lock);
	struct guest *g = guest_of_handle(l, handle);
	if (g)
		read_stats(g, out);
	pthread_mutex_unlock(&l->lock);
	return g ? 0 : -ENOENT;
}


/* ---------------------------------------------------------------------- */
/* The loop                                                                */

struct pico_loop *pico_loop_new(unsigned int max_guests, unsigned int audit_capacity)
{
	struct seccomp_notif_sizes sizes;
	struct pico_loop *l;

	if (max_guests == 0 || max_guests > (1u << 20) || audit_capacity == 0) {
		errno = EINVAL;
		return NULL;
	}
	if (syscall(SYS_seccomp, SECCOMP_GET_NOTIF_SIZES, 0, &sizes) < 0)
		return NULL;
	l = calloc(1, sizeof(*l));
	if (!l)
		return NULL;
	l->audit_efd = -1;
	pthread_mutex_init(&l->lock, NULL);
	pthread_mutex_init(&l->audit_lock, NULL);
	pthread_cond_init(&l->cond, NULL);
	l->max_guests = max_guests;
	l->ring_cap = audit_capacity;
	l->notif_size = sizes.seccomp_notif > sizeof(struct seccomp_notif) ? sizes.seccomp_notif
									    : sizeof(struct seccomp_notif);
	l->resp_size = sizes.seccomp_notif_resp > sizeof(struct seccomp_notif_resp)
			       ? sizes.seccomp_notif_resp
			       : sizeof(struct seccomp_notif_resp);
	l->guests = calloc(max_guests, sizeof(*l->guests));
	l->gens = calloc(max_guests, sizeof(*l->gens));
	l->ring = calloc(audit_capacity, sizeof(*l->ring));
	l->ring_held = calloc(max_guests, sizeof(*l->ring_held));
	l->ring_held_gen = calloc(max_guests, sizeof(*l->ring_held_gen));
	l->ring_share = audit_capacity / PICO_LOOP_AUDIT_SHARE_DIVISOR ?: 1;
	l->audit_efd = eventfd(0, EFD_CLOEXEC);
	if (!l->guests || !l->gens || !l->ring || !l->ring_held || !l->ring_held_gen || l->audit_efd < 0) {
		int err = errno ?: ENOMEM;
		pico_loop_free(l);
		errno = err;
		return NULL;
	}
	return l;
}

void pico_loop_free(struct pico_loop *l)
{
	if (!l)
		return;
	for (unsigned int i = 0; l->guests && i < l->max_guests; i++) {
		if (l->guests[i] && l->guests[i]->started)
			stop_server(l->guests[i]);
		free_guest(l->guests[i]);
	}
	if (l->audit_efd >= 0)
		close(l->audit_efd);
	pthread_mutex_destroy(&l->lock);
	pthread_mutex_destroy(&l->audit_lock);
	pthread_cond_destroy(&l->cond);
	free(l->guests);
	free(l->gens);
	free(l->ring);
	free(l->ring_held);
	free(l->ring_held_gen);
	free(l);
}

/* With the loop's lock held: stops every server that runs (letting go of
 * the lock while it waits for each). */
static void stop_servers(struct pico_loop *l)
{
	for (unsigned int i = 0; i < l->max_guests; i++) {
		struct guest *g = l->guests[i];
		if (g && g->started) {
			pthread_mutex_unlock(&l->lock);
			stop_server(g);
			pthread_mutex_lock(&l->lock);
		}
	}
}

int pico_loop_run(struct pico_loop *l, uint32_t fsuid, uint32_t fsgid, const uint32_t *groups,
		  size_t ngroups)
{
	struct identity saved;
	int ret = 0;

	pthread_mutex_lock(&l->lock);
	if (l->state != STOPPED) {
		pthread_mutex_unlock(&l->lock);
		return -EBUSY;
	}
	if (ngroups > sizeof(l->groups) / sizeof(l->groups[0])) {
		pthread_mutex_unlock(&l->lock);
		return -EINVAL;
	}
	l->state = STARTING;
	l->run_error = 0;
	l->fsuid = fsuid;
	l->fsgid = fsgid;
	memcpy(l->groups, groups, ngroups * sizeof(*groups));
	l->ngroups = ngroups;
	pthread_mutex_unlock(&l->lock);

	/* The identity is taken by every server; find out now, once, whether
	 * the kernel refuses it. */
	ret = take_identity(fsuid, fsgid, groups, ngroups, &saved);
	restore_identity(&saved);
	pthread_mutex_lock(&l->lock);
	if (ret < 0) {
		l->state = STOPPED;
		l->run_error = ret;
		pthread_cond_broadcast(&l->cond);
		pthread_mutex_unlock(&l->lock);
		return ret;
	}
	l->direct_ok = install_wake_handler();
	for (unsigned int i = 0; i < l->max_guests; i++)
		if (l->guests[i] && !l->guests[i]->started && (ret = start_server(l->guests[i])) < 0)
			break;
	if (ret < 0) {
		/* No thread for a guest: stop the others and fail. */
		stop_servers(l);
		l->state = STOPPED;
		l->run_error = ret;
		pthread_cond_broadcast(&l->cond);
		pthread_mutex_unlock(&l->lock);
		return ret;
	}
	l->state = RUNNING;
	pthread_cond_broadcast(&l->cond);
	while (!l->stop)
		pthread_cond_wait(&l->cond, &l->lock);
	/* Stop every server; guests stay registered (served again by the next
	 * run). */
	stop_servers(l);
	l->state = STOPPED;
	l->stop = 0;
	pthread_cond_broadcast(&l->cond);
	pthread_mutex_unlock(&l->lock);
	return 0;
}

int pico_loop_wait_running(struct pico_loop *l, int timeout_ms)
{
	struct timespec deadline;
	int ret;

	clock_gettime(CLOCK_REALTIME, &deadline);
	deadline.tv_sec += timeout_ms / 1000;
	deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
	if (deadline.tv_nsec >= 1000000000L) {
		deadline.tv_sec++;
		deadline.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&l->lock);
	while (l->state != RUNNING && l->run_error == 0) {
		if (pthread_cond_timedwait(&l->cond, &l->lock, &deadline) == ETIMEDOUT)
			break;
	}
	ret = l->state == RUNNING ? 1 : l->run_error;
	pthread_mutex_unlock(&l->lock);
	return ret;
}

void pico_loop_stop(struct pico_loop *l)
{
	pthread_mutex_lock(&l->lock);
	if (l->state != STOPPED) {
		l->stop = 1;
		pthread_cond_broadcast(&l->cond);
	}
	while (l->state != STOPPED)
		pthread_cond_wait(&l->cond, &l->lock);
	pthread_mutex_unlock(&l->lock);
}

void pico_loop_get_counters(struct pico_loop *l, struct pico_loop_counters *out)
{
	memset(out, 0, sizeof(*out));
	pthread_mutex_lock(&l->lock);
	out->guests = (int32_t)l->nguests;
	out->running = l->state == RUNNING;
	pthread_mutex_unlock(&l->lock);
	out->notifications = LOAD(l->notifications);
	out->abandoned = LOAD(l->abandoned);
	out->recv_errors = LOAD(l->recv_errors);
	out->fds_on_channel = LOAD(l->fds_on_channel);
	out->fds_by_addfd = LOAD(l->fds_by_addfd);
	out->area_calls = LOAD(l->area_calls);
	out->fs_lookups = LOAD(l->fs_lookups);
	out->servers = LOAD(l->servers);
	out->sync_wakeup = LOAD(l->sync_wakeup);
	out->pending_connects = LOAD(l->pending_connects);
	out->guestnet_pending = LOAD(l->guestnet_pending);
	pthread_mutex_lock(&l->audit_lock);
	out->audit_dropped = l->audit_dropped;
	pthread_mutex_unlock(&l->audit_lock);
}

