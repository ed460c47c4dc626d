/* The monitor's event loop and the dispatcher of mediated calls (loop.h). */
#define _GNU_SOURCE
#include "loop.h"
#include "procview.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/audit.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "denial.h"
#include "picoproc_abi.h"

/* Linux 6.6; older headers lack them. */
#ifndef SECCOMP_IOCTL_NOTIF_SET_FLAGS
#define SECCOMP_IOCTL_NOTIF_SET_FLAGS SECCOMP_IOW(4, __u64)
#endif
#ifndef SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP
#define SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP (1UL << 0)
#endif
#ifndef SECCOMP_ADDFD_FLAG_SEND
#define SECCOMP_ADDFD_FLAG_SEND (1UL << 1)
#endif

#include "guestnet.h"
#include "net.h"

#define EVENTS_PER_WAIT 64

/* epoll data: what an event is about. */
enum ev_kind { EV_WAKE = 0, EV_GUEST = 1, EV_CONNECT = 2, EV_GUESTNET = 3 };
#define EV_DATA(kind, gen, idx) \
	(((uint64_t)(kind) << 62) | ((uint64_t)(gen) << 32) | (uint32_t)(idx))
#define EV_KIND(d) ((int)((d) >> 62))
#define EV_GEN(d) ((uint32_t)(((d) >> 32) & 0x3fffffff))
#define EV_IDX(d) ((uint32_t)(d))
#define GEN_MASK 0x3fffffffu

/* A steering: the calling thread, the CPU it was narrowed to and the mask
 * it had, and the pid counter before it (see "Keeping ADDFD's wake-up on
 * the loop's CPU"); afterwards, a watch on that thread. */
struct steer {
	pid_t tid;
	int cpu;
	int last_pid;
	int end_pid;	/* a watch: looks no further than this pid */
	uint64_t call;	/* the loop's notification count when it began */
	cpu_set_t saved;
};

#define STEER_WATCHES 4

/* A call waiting for the guest's socket helper (guestnet.h) to answer. */
struct gn_pending {
	uint32_t id;
	uint64_t notif_id;
	pid_t tid;
	int cloexec;
	int nonblock;
	struct pico_gn_request req;
	struct pico_audit_record rec;
};

/* Requests a guest may have with its helper at once: each is a guest
 * thread blocked in its call, so the guest's process limit bounds them
 * first; this bounds the loop's memory for one guest. */
#define GN_MAX_PENDING 1024

struct guest {
	int in_use;
	uint32_t gen;
	int listener; /* the loop's duplicate; -1 once hung up */
	int32_t pid;
	const struct pico_fs_policy *fs;
	const struct pico_net_policy *net;
	struct pico_proc_view proc; /* its /proc (procview.h) */
	uint64_t cpu_ns;	 /* the loop's CPU time spent serving it */
	unsigned int nconnects;	 /* its connects in progress */
	unsigned int nlisteners; /* host tcp.srv: listeners it was given */
	struct pico_guest_stats stats;
	/* Steering (see "Keeping ADDFD's wake-up on the loop's CPU"): off when
	 * the kernel refused it or the guest's pid namespace is not known;
	 * otherwise the namespace, which tells the guest's tasks apart. */
	int steer_off;
	dev_t pidns_dev;
	ino_t pidns_ino;
	struct steer watch[STEER_WATCHES]; /* threads that may still be inside a fork() */
	unsigned int nwatch;
	/* The socket helper of the guest's own network: the loop's duplicate
	 * of its channel (-1: none, or gone) and the calls waiting for it, in
	 * the order sent (a ring, grown on demand). */
	int gn_fd;
	/* inotify instances made and watches added for this guest (bounded
	 * per run: the kernel charges them to the monitor's identity). */
	unsigned int inotify_instances, inotify_watches;
	uint32_t gn_next_id;
	struct gn_pending *gn_q;
	unsigned int gn_head, gn_count, gn_cap;
};

/* A tcp:/udp: connect that is in progress: the guest's call is answered
 * when the socket becomes writable. */
struct pending_connect {
	int in_use;
	uint32_t gen;
	int fd;
	uint32_t guest_idx;
	uint32_t guest_gen;
	uint64_t notif_id;
	pid_t tid; /* the calling thread */
	int cloexec;
	struct pico_audit_record rec;
};

enum cmd_kind { CMD_ADD, CMD_REMOVE, CMD_STATS };

struct cmd {
	enum cmd_kind kind;
	int listener_fd;
	int guestnet_fd;
	int32_t pid;
	const struct pico_fs_policy *fs;
	const void *net;
	int proc_fd, listing_fd;
	int64_t handle;
	struct pico_guest_stats *stats;
	int64_t result;
	int done;
	struct cmd *next;
};

enum run_state { STOPPED, STARTING, RUNNING };

struct pico_loop {
	int epfd;
	int wakefd;
	int audit_efd;

	pthread_mutex_t lock; /* commands, run state */
	pthread_cond_t cond;
	struct cmd *cmds;
	enum run_state state;
	int run_error;
	int stop;

	struct guest *guests;
	unsigned int max_guests;
	unsigned int nguests;

	struct pending_connect *connects;
	unsigned int max_connects;
	unsigned int nconnects;
	unsigned int ngn_pending; /* calls waiting for a socket helper, all guests */

	pthread_mutex_t audit_lock;
	struct pico_audit_record *ring;
	size_t ring_cap, ring_head, ring_count;
	int audit_signalled;
	/* Each guest's records in the ring (indexed like guests, checked by
	 * generation), so that one guest's flood cannot fill the ring and
	 * drop the records of the others: the last ring_share places are
	 * kept for guests that hold fewer than ring_share records. */
	uint32_t *ring_held;
	uint32_t *ring_held_gen;
	size_t ring_share;

	/* Charging the loop's CPU time to guests (see "Charging the monitor's
	 * CPU"): the thread CPU clock at the last reading, and the guest the
	 * time since then belongs to (NULL: nobody). */
	uint64_t cpu_mark;
	struct guest *cpu_owner;
	unsigned int cpu_calls;

	struct seccomp_notif *notif; /* sized as the kernel says */
	size_t notif_size;
	struct seccomp_notif_resp *resp;
	size_t resp_size;

	/* The URI or first path, then a second path (rename, link, symlink). */
	char scratch[2 * (PICO_MAX_URI + 1)];

	/* Direct mode (see run_loop): with a single live guest the loop
	 * blocks in NOTIF_RECV itself instead of in epoll_wait. */
	int direct_ok;	     /* the wake-up signal's handler is ours */
	int in_direct;	     /* blocked (or about to block) in NOTIF_RECV; under lock */
	pid_t tid;	     /* the loop thread, to interrupt it */
	unsigned int nlive;  /* guests whose listener is open */

	/* Steering ADDFD's wake-up: the pid counter of the monitor's pid
	 * namespace (/proc/sys/kernel/ns_last_pid), or -1 (no steering). */
	int last_pid_fd;
	int last_pid;		/* its value last read, */
	uint64_t last_pid_ns;	/* at this CLOCK_MONOTONIC time, */
	uint64_t last_pid_call; /* while serving this notification */
	int pid_max;
	dev_t own_pidns_dev;
	ino_t own_pidns_ino;
	/* Whether steering pays here (see STEER_PROBE_PERIOD). */
	int steer_always;	       /* PICOPROC_STEER=always: no probing */
	int steer_plain;	       /* 1: installing fds without steering */
	unsigned int steer_installs;   /* since the last probe */
	uint64_t steered_ns, plain_ns; /* running means of an install, each way */
	unsigned int probe_left;       /* installs of the probe under way */
	unsigned int probe_count;
	uint64_t probe_ns;

	/* Counters: written by the loop thread, read by anyone. */
	uint64_t notifications, abandoned, audit_dropped, recv_errors;
	uint64_t steered, steer_repaired;
	int sync_wakeup;
};

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

static struct guest *guest_of_handle(struct pico_loop *l, int64_t handle)
{
	if (handle <= 0)
		return NULL;
	uint32_t idx = (uint32_t)(handle & 0xffffffff) - 1;
	uint32_t gen = (uint32_t)(handle >> 32);
	if (idx >= l->max_guests || !l->guests[idx].in_use || l->guests[idx].gen != gen)
		return NULL;
	return &l->guests[idx];
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
	 * ring every few calls otherwise: a page fault in the loop thread until
	 * the whole ring has been written once). */
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

/* ---------------------------------------------------------------------- */
/* One mediated call                                                       */

struct call {
	struct pico_loop *loop;
	struct guest *guest;
	const struct seccomp_notif *n;
	struct pico_audit_record rec;
	int gone;	  /* the notification is no longer valid: do not answer */
	int denied;	  /* the refusal is a policy decision: its PICO_DENY_* reason */
	int install_fd;	  /* >= 0: answer by installing this fd in the guest */
	int install_cloexec;
	int deferred;	  /* answered later (a connect in progress) */
	int own;	  /* answered later: own_req goes to the guest's socket helper */
	int own_nonblock;
	struct pico_gn_request own_req;
};

/* Is the notification still pending?  After every read of guest memory:
 * the pid the read used could otherwise have been recycled. */
static int still_valid(struct call *c)
{
	uint64_t id = c->n->id;
	if (ioctl(c->guest->listener, SECCOMP_IOCTL_NOTIF_ID_VALID, &id) == 0)
		return 1;
	c->gone = 1;
	return 0;
}

/* Copies len bytes from the guest: 0, -EFAULT, or -ECANCELED (gone). */
static int guest_read(struct call *c, uint64_t addr, void *buf, size_t len)
{
	struct iovec local = {buf, len};
	struct iovec remote = {(void *)(uintptr_t)addr, len};

	if (addr + len < addr)
		return -EFAULT;
	if (c->n->pid <= 0)
		return -EPERM; /* the caller is not visible in the monitor's pid namespace */
	ssize_t got = process_vm_readv(c->n->pid, &local, 1, &remote, 1, 0);
	int err = got == (ssize_t)len ? 0 : -EFAULT;
	if (got < 0 && errno == ESRCH)
		err = -ECANCELED;
	if (!still_valid(c))
		return -ECANCELED;
	return err;
}

/* Copies len bytes into the guest: 0, -EFAULT, or -ECANCELED (gone).
 * The check comes first here: a read from a recycled pid is harmless once
 * discarded, a write into one is not.  The caller is blocked in its call
 * until answered or killed (WAIT_KILLABLE_RECV), so a valid notification
 * means its pid is still its own; what remains is the microsecond between
 * this check and process_vm_writev, in which the caller would have to die
 * and another process be given its number (pids are handed out in order:
 * the counter would have to be right there).  Writing through a
 * /proc/PID/mem fd opened before the check would close that too, at ~1.8
 * us a call on this VM (open + close 3.3 us against one ID_VALID less). */
static int guest_write(struct call *c, uint64_t addr, const void *buf, size_t len)
{
	struct iovec local = {(void *)buf, len};
	struct iovec remote = {(void *)(uintptr_t)addr, len};

	if (addr + len < addr)
		return -EFAULT;
	if (c->n->pid <= 0)
		return -EPERM;
	if (!still_valid(c))
		return -ECANCELED;
	ssize_t put = process_vm_writev(c->n->pid, &local, 1, &remote, 1, 0);
	if (put < 0 && errno == ESRCH) {
		c->gone = 1;
		return -ECANCELED;
	}
	return put == (ssize_t)len ? 0 : -EFAULT;
}

static void keep_text(char *dst, uint32_t *kept, uint32_t *full, const char *src, size_t len)
{
	size_t n = len < PICO_AUDIT_TEXT ? len : PICO_AUDIT_TEXT;
	memcpy(dst, src, n);
	*kept = (uint32_t)n;
	*full = (uint32_t)len;
}

/* Copies a (pointer, length) string argument: 1..max bytes (0: EINVAL, above
 * max: ENAMETOOLONG), no NUL inside (EINVAL).  The audit record keeps the
 * very bytes the call then uses. */
static int fetch_string(struct call *c, uint64_t addr, uint64_t len, size_t max, char *buf,
			int second)
{
	if (len == 0)
		return -EINVAL;
	if (len > max)
		return -ENAMETOOLONG;
	int err = guest_read(c, addr, buf, len);
	if (err < 0)
		return err;
	buf[len] = '\0';
	if (second)
		keep_text(c->rec.text2, &c->rec.text2_len, &c->rec.text2_full, buf, len);
	else
		keep_text(c->rec.text, &c->rec.text_len, &c->rec.text_full, buf, len);
	if (memchr(buf, '\0', len))
		return -EINVAL;
	return 0;
}

/* An int / unsigned int argument: the upper half of the register must be 0
 * (or the sign extension of a negative int where one is meaningful). */
static int int_arg(uint64_t v, uint32_t *out)
{
	if (v >> 32)
		return -EINVAL;
	*out = (uint32_t)v;
	return 0;
}

#define ARG(i) (c->n->data.args[i])

/* ---- pidfds of the guest's own processes ---- */

static ssize_t read_proc_text(const char *path, char *buf, size_t cap);

/* The value after "Name:" in /proc/<pid>/status, the last of several
 * (NSpid lists the pid in each namespace, the innermost last). */
static long status_last_number(const char *text, const char *name)
{
	const char *p = strstr(text, name);
	if (!p)
		return -1;
	p += strlen(name);
	long last = -1;
	for (;;) {
		while (*p == ' ' || *p == '\t')
			p++;
		if (*p < '0' || *p > '9')
			break;
		last = strtol(p, (char **)&p, 10);
	}
	return last;
}

static int read_status(long pid, char *buf, size_t cap)
{
	char path[48];
	snprintf(path, sizeof(path), "/proc/%ld/status", pid);
	return read_proc_text(path, buf, cap) < 0 ? -1 : 0;
}

#define PIDFD_WALK_MAX 4096 /* processes looked at: the guest's own, bounded */

/* The host pid of the process that is `guest_pid` in the caller's pid
 * namespace, found by walking that namespace's tree from its init (the
 * reaper, reached through the caller's ancestors): only the guest's own
 * processes are ever looked at.  -ESRCH when there is none. */
static long host_pid_of(struct call *c, long guest_pid, char *text, size_t cap)
{
	long p = c->n->pid;
	if (read_status(p, text, cap) < 0)
		return -ESRCH;
	p = status_last_number(text, "\nTgid:");
	for (int depth = 0; depth < PIDFD_WALK_MAX; depth++) {
		if (read_status(p, text, cap) < 0)
			return -ESRCH;
		long inner = status_last_number(text, "\nNSpid:");
		if (inner == guest_pid)
			return p;
		if (inner == 1)
			break;
		p = status_last_number(text, "\nPPid:");
		if (p <= 0)
			return -ESRCH;
	}
	/* Breadth-first from init over the children of every task. */
	static __thread long queue[PIDFD_WALK_MAX];
	size_t head = 0, tail = 0;
	queue[tail++] = p;
	while (head < tail) {
		long q = queue[head++];
		char path[300];
		if (read_status(q, text, cap) == 0 && status_last_number(text, "\nNSpid:") == guest_pid &&
		    status_last_number(text, "\nTgid:") == q)
			return q;
		snprintf(path, sizeof(path), "/proc/%ld/task", q);
		DIR *d = opendir(path);
		if (!d)
			continue;
		struct dirent *e;
		while ((e = readdir(d))) {
			if (e->d_name[0] < '0' || e->d_name[0] > '9')
				continue;
			snprintf(path, sizeof(path), "/proc/%ld/task/%s/children", q, e->d_name);
			if (read_proc_text(path, text, cap) < 0)
				continue;
			for (char *t = text; *t && tail < PIDFD_WALK_MAX;) {
				long child = strtol(t, &t, 10);
				if (child <= 0)
					break;
				queue[tail++] = child;
			}
		}
		closedir(d);
	}
	return -ESRCH;
}

/* Implements pico_open("pid:N"): a pidfd of the caller's own process N. */
static long open_pidfd(struct call *c, const char *num, int flags, char *text, size_t cap)
{
	char *end;
	long guest_pid = strtol(num, &end, 10);
	if (*end || guest_pid <= 0 || (flags & ~(O_NONBLOCK | O_CLOEXEC)))
		return -EINVAL;
	long host = host_pid_of(c, guest_pid, text, cap);
	if (host < 0)
		return host;
	long fd = syscall(SYS_pidfd_open, host, flags & O_NONBLOCK);
	if (fd < 0)
		return -errno;
	/* The pid may have been reused between the walk and the open: the
	 * process the pidfd holds must still be that guest process. */
	char st[1024];
	if (read_status(host, st, sizeof(st)) < 0 || status_last_number(st, "\nNSpid:") != guest_pid ||
	    !still_valid(c)) {
		close((int)fd);
		return -ESRCH;
	}
	return fd;
}

/* Implements pico_open(uri, uri_len, flags, mode). */
static long serve_open(struct call *c, char *uri)
{
	uint32_t flags, mode;
	size_t len = ARG(1);
	long ret;

	if (int_arg(ARG(2), &flags) || int_arg(ARG(3), &mode))
		return -EINVAL;
	c->rec.arg = flags;
	ret = fetch_string(c, ARG(0), len, PICO_MAX_URI, uri, 0);
	if (ret < 0)
		return ret;
	const char *colon = memchr(uri, ':', len < 16 ? len : 16);
	if (!colon)
		return -EINVAL;
	size_t scheme = (size_t)(colon - uri);
	const char *rest = colon + 1;
	size_t rest_len = len - scheme - 1;
	int dir = 0;

	if ((scheme == 4 && !memcmp(uri, "file", 4)) || (dir = (scheme == 3 && !memcmp(uri, "dir", 3)))) {
		if (rest_len > PICO_MAX_PATH)
			return -ENAMETOOLONG;
		if (rest_len == 0 || rest[0] != '/')
			return -EINVAL;
		if (pico_proc_is_view_path(rest, rest_len))
			ret = pico_proc_open(&c->guest->proc, rest, rest_len, (int)flags, dir, (pid_t)c->n->pid,
					     &c->denied);
		else
			ret = pico_fs_open(c->guest->fs, rest, rest_len, (int)flags, mode, dir, &c->denied);
		if (ret >= 0) {
			c->install_fd = (int)ret;
			c->install_cloexec = !!(flags & O_CLOEXEC);
			return 0;
		}
		return ret;
	}
	if (scheme == 3 && !memcmp(uri, "pid", 3)) {
		char *text = uri + PICO_MAX_URI + 1; /* the second half of the scratch */
		ret = open_pidfd(c, rest, (int)flags, text, PICO_MAX_URI);
		goto installed;
	}
	/* unix.srv:/PATH and (unless the manifest grants the host path)
	 * unix:/PATH name sockets in the guest's own view: the file policy. */
	if (scheme == 8 && !memcmp(uri, "unix.srv", 8) && rest_len > 0 && rest[0] == '/') {
		if ((flags & ~(O_ACCMODE | O_NONBLOCK | O_CLOEXEC)) || (flags & O_ACCMODE) == O_ACCMODE)
			return -EINVAL;
		if (rest_len > PICO_MAX_PATH)
			return -ENAMETOOLONG;
		ret = pico_fs_unix_listen(c->guest->fs, rest, rest_len, mode, !!(flags & O_NONBLOCK),
					  &c->denied);
		goto installed;
	}
	if (scheme == 4 && !memcmp(uri, "unix", 4) && rest_len > 0 && rest[0] == '/' &&
	    !pico_net_unix_granted(c->guest->net, rest, rest_len)) {
		if ((flags & ~(O_ACCMODE | O_NONBLOCK | O_CLOEXEC)) || (flags & O_ACCMODE) == O_ACCMODE)
			return -EINVAL;
		if (rest_len > PICO_MAX_PATH)
			return -ENAMETOOLONG;
		ret = pico_fs_unix_connect(c->guest->fs, rest, rest_len, !!(flags & O_NONBLOCK),
					   &c->denied);
		goto installed;
	}
	if (pico_net_is_network_uri(uri, len)) {
		int fd = -1;
		ret = pico_net_start_guest(c->guest->net, uri, len, (int)flags, &fd,
					   c->guest->gn_fd >= 0 ? &c->own_req : NULL);
		if (ret == PICO_NET_OWN) {
			c->own = 1;
			c->own_nonblock = !!(flags & O_NONBLOCK);
			c->install_cloexec = !!(flags & O_CLOEXEC);
			return 0;
		}
		/* A host listener holds a host port for as long as the guest
		 * keeps it, and the monitor cannot tell when it lets go: a
		 * guest gets PICO_LOOP_GUEST_LISTENERS in its life. */
		if (ret >= 0 && scheme == 7 && !memcmp(uri, "tcp.srv", 7)) {
			if (c->guest->nlisteners >= PICO_LOOP_GUEST_LISTENERS) {
				close((int)ret);
				return -EMFILE;
			}
			c->guest->stats.listeners = ++c->guest->nlisteners;
		}
		if (ret >= 0) {
			c->install_fd = (int)ret;
			c->install_cloexec = !!(flags & O_CLOEXEC);
			return 0;
		}
		if (ret == -EINPROGRESS && fd >= 0) {
			c->install_fd = fd;
			c->install_cloexec = !!(flags & O_CLOEXEC);
			c->deferred = 1;
			return 0;
		}
		if (ret == -EACCES)
			c->denied = PICO_DENY_NET;
		return ret;
	}
	return -EINVAL;
installed:
	if (ret >= 0) {
		c->install_fd = (int)ret;
		c->install_cloexec = !!(flags & O_CLOEXEC);
		return 0;
	}
	return ret;
}

/* Implements pico_stat(path, path_len, flags, buf). */
static long serve_stat(struct call *c, char *path)
{
	struct statx stx;
	uint32_t flags;
	long ret;

	if (int_arg(ARG(2), &flags))
		return -EINVAL;
	c->rec.arg = flags;
	ret = fetch_string(c, ARG(0), ARG(1), PICO_MAX_PATH, path, 0);
	if (ret < 0)
		return ret;
	if (ARG(3) == 0)
		return -EFAULT;
	memset(&stx, 0, sizeof(stx));
	if (pico_proc_is_view_path(path, ARG(1)))
		ret = flags & ~AT_SYMLINK_NOFOLLOW ? -EINVAL
						   : pico_proc_stat(&c->guest->proc, path, ARG(1), !!flags, &stx);
	else
		ret = pico_fs_stat(c->guest->fs, path, ARG(1), (int)flags, &stx, &c->denied);
	if (ret < 0)
		return ret;
	return guest_write(c, ARG(3), &stx, sizeof(stx));
}

/* Implements pico_readlink(path, path_len, buf, buf_len). */
static long serve_readlink(struct call *c, char *path)
{
	char target[PICO_MAX_PATH];
	long ret;

	if (ARG(3) == 0 || ARG(3) > PICO_MAX_PATH)
		return -EINVAL;
	ret = fetch_string(c, ARG(0), ARG(1), PICO_MAX_PATH, path, 0);
	if (ret < 0)
		return ret;
	if (pico_proc_is_view_path(path, ARG(1)))
		ret = pico_proc_readlink(&c->guest->proc, path, ARG(1), target, ARG(3));
	else
		ret = pico_fs_readlink(c->guest->fs, path, ARG(1), target, ARG(3), &c->denied);
	if (ret <= 0)
		return ret;
	int err = guest_write(c, ARG(2), target, (size_t)ret);
	return err < 0 ? err : ret;
}

/* Implements pico_access(path, path_len, mode, flags). */
static long serve_access(struct call *c, char *path)
{
	uint32_t mode, flags;
	long ret;

	if (int_arg(ARG(2), &mode) || int_arg(ARG(3), &flags))
		return -EINVAL;
	c->rec.arg = mode;
	ret = fetch_string(c, ARG(0), ARG(1), PICO_MAX_PATH, path, 0);
	if (ret < 0)
		return ret;
	if (pico_proc_is_view_path(path, ARG(1)))
		return pico_proc_access(&c->guest->proc, path, ARG(1), (int)mode);
	return pico_fs_access(c->guest->fs, path, ARG(1), (int)mode, (int)flags, &c->denied);
}

/* Implements pico_mkdir(path, path_len, mode). */
static long serve_mkdir(struct call *c, char *path)
{
	uint32_t mode;
	long ret;

	if (int_arg(ARG(2), &mode))
		return -EINVAL;
	c->rec.arg = mode;
	ret = fetch_string(c, ARG(0), ARG(1), PICO_MAX_PATH, path, 0);
	if (ret < 0)
		return ret;
	return pico_fs_mkdir(c->guest->fs, path, ARG(1), mode, &c->denied);
}

/* Implements pico_mknod(path, path_len, mode). */
static long serve_mknod(struct call *c, char *path)
{
	uint32_t mode;
	long ret;

	if (int_arg(ARG(2), &mode))
		return -EINVAL;
	c->rec.arg = mode;
	ret = fetch_string(c, ARG(0), ARG(1), PICO_MAX_PATH, path, 0);
	if (ret < 0)
		return ret;
	return pico_fs_mknod(c->guest->fs, path, ARG(1), mode, &c->denied);
}

#define XATTR_NAME_MAX_K 255
#define XATTR_SIZE_MAX_K 65536

/* Implements pico_xattr(op, path, path_len, name, value, size).  The value
 * goes through a buffer of the call's own (at most 64 KiB, freed before the
 * answer). */
static long serve_xattr(struct call *c, char *path)
{
	uint32_t op;
	char name[XATTR_NAME_MAX_K + 1];
	size_t size = ARG(5);
	long ret;

	if (int_arg(ARG(0), &op))
		return -EINVAL;
	c->rec.arg = op & 0xff;
	c->rec.arg2 = (int64_t)size;
	unsigned kind = op & 7, name_len = (op >> 8) & 0xff;
	if ((op >> 16) || kind > PICO_XATTR_REMOVE)
		return -EINVAL;
	if (size > XATTR_SIZE_MAX_K)
		size = kind == PICO_XATTR_SET ? size : XATTR_SIZE_MAX_K;
	if (kind == PICO_XATTR_SET && size > XATTR_SIZE_MAX_K)
		return -E2BIG;
	ret = fetch_string(c, ARG(1), ARG(2), PICO_MAX_PATH, path, 0);
	if (ret < 0)
		return ret;
	name[0] = 0;
	if (kind != PICO_XATTR_LIST) {
		ret = fetch_string(c, ARG(3), name_len, XATTR_NAME_MAX_K, name, 1);
		if (ret < 0)
			return ret == -ENAMETOOLONG ? -ERANGE : ret;
	}
	char *value = NULL;
	if (size) {
		value = malloc(size);
		if (!value)
			return -ENOMEM;
		if (kind == PICO_XATTR_SET && (ret = guest_read(c, ARG(4), value, size)) < 0)
			goto out;
	}
	ret = pico_fs_xattr(c->guest->fs, path, ARG(2), op, name, value, size, &c->denied);
	if (ret > 0 && size && (kind == PICO_XATTR_GET || kind == PICO_XATTR_LIST)) {
		int err = guest_write(c, ARG(4), value, (size_t)ret);
		if (err < 0)
			ret = err;
	}
out:
	free(value);
	return ret;
}

/* ---- terminal ioctls on the guest's own pseudo-terminals ---- */

#ifndef PIDFD_THREAD
#define PIDFD_THREAD O_EXCL
#endif
#define TTY_VALUE (-1) /* the argument is a value, not a pointer */

/* The requests tty_ioctl performs, with the size of what they read from
 * (in) or write to (out) the guest.  Nothing that reaches beyond the
 * terminal itself: no TIOCSTI, no line discipline, no controlling-terminal
 * or process-group change (those act on the caller, here the monitor). */
static const struct tty_request {
	unsigned int req;
	int in, out;
} tty_requests[] = {
	{0x5402 /* TCSETS */, 36, 0},	   {0x5403 /* TCSETSW */, 36, 0},
	{0x5404 /* TCSETSF */, 36, 0},	   {0x5401 /* TCGETS */, 0, 36},
	{0x802C542A /* TCGETS2 */, 0, 44}, {0x402C542B /* TCSETS2 */, 44, 0},
	{0x402C542C /* TCSETSW2 */, 44, 0}, {0x402C542D /* TCSETSF2 */, 44, 0},
	{0x5414 /* TIOCSWINSZ */, 8, 0},   {0x5413 /* TIOCGWINSZ */, 0, 8},
	{0x80045430 /* TIOCGPTN */, 0, 4}, {0x40045431 /* TIOCSPTLCK */, 4, 0},
	{0x80045439 /* TIOCGPTLCK */, 0, 4}, {0x5420 /* TIOCPKT */, 4, 0},
	{0x80045438 /* TIOCGPKT */, 0, 4}, {0x5411 /* TIOCOUTQ */, 0, 4},
	{0x5424 /* TIOCGETD */, 0, 4},	   {0x80045440 /* TIOCGEXCL */, 0, 4},
	{0x5409 /* TCSBRK */, TTY_VALUE, 0}, {0x5425 /* TCSBRKP */, TTY_VALUE, 0},
	{0x540A /* TCXONC */, TTY_VALUE, 0}, {0x540B /* TCFLSH */, TTY_VALUE, 0},
	{0x5427 /* TIOCSBRK */, TTY_VALUE, 0}, {0x5428 /* TIOCCBRK */, TTY_VALUE, 0},
	{0x540C /* TIOCEXCL */, TTY_VALUE, 0}, {0x540D /* TIOCNXCL */, TTY_VALUE, 0},
	{0x5441 /* TIOCGPTPEER */, TTY_VALUE, 0},
};

static int copy_guest_fd(struct call *c, int fd);

/* Implements pico_tty_ioctl(fd, request, arg).  The monitor copies the
 * caller's fd (pidfd_getfd: the same open file), checks that it is a
 * character device of the run's own devpts, and makes the call on it. */
static long serve_tty_ioctl(struct call *c, char *scratch)
{
	uint32_t fd, req;
	unsigned char buf[64];
	const struct tty_request *t = NULL;
	unsigned long devpts;
	struct stat st;
	long ret;

	(void)scratch;
	if (int_arg(ARG(0), &fd) || int_arg(ARG(1), &req))
		return -EINVAL;
	c->rec.arg = req;
	c->rec.arg2 = fd;
	for (size_t i = 0; i < sizeof(tty_requests) / sizeof(tty_requests[0]); i++)
		if (tty_requests[i].req == req)
			t = &tty_requests[i];
	if (!t)
		return -ENOTTY;
	if (pico_fs_mount_dev(c->guest->fs, "/dev/pts", &devpts) < 0)
		return -ENOTTY;
	int tfd = copy_guest_fd(c, (int)fd);
	if (tfd < 0)
		return tfd;
	if (fstat(tfd, &st) < 0 || !S_ISCHR(st.st_mode) || st.st_dev != devpts) {
		close(tfd);
		c->denied = PICO_DENY_HOST_TERMINAL;
		return -ENOTTY;
	}
	memset(buf, 0, sizeof(buf));
	if (t->in > 0 && (ret = guest_read(c, ARG(2), buf, (size_t)t->in)) < 0)
		goto out;
	if (req == 0x5441 /* TIOCGPTPEER */) {
		/* The new slave fd: never the monitor's controlling terminal. */
		int flags = (int)(ARG(2) & (O_ACCMODE | O_NONBLOCK | O_CLOEXEC)) | O_NOCTTY;
		ret = ioctl(tfd, req, flags);
		if (ret < 0) {
			ret = -errno;
			goto out;
		}
		c->install_fd = (int)ret;
		c->install_cloexec = !!(flags & O_CLOEXEC);
		ret = 0;
		goto out;
	}
	ret = t->in == TTY_VALUE ? ioctl(tfd, req, (unsigned long)ARG(2)) : ioctl(tfd, req, buf);
	if (ret < 0) {
		ret = -errno;
		goto out;
	}
	if (t->out > 0) {
		int w = guest_write(c, ARG(2), buf, (size_t)t->out);
		if (w < 0)
			ret = w;
	}
out:
	close(tfd);
	return ret;
}

/* A copy of the caller's fd `fd` (pidfd_getfd: the same open file), or
 * -errno.  The fd number was the caller's: the copy is used only if the
 * caller still waits for the answer. */
static int copy_guest_fd(struct call *c, int fd)
{
	if (c->n->pid <= 0)
		return -EPERM;
	int pidfd = (int)syscall(SYS_pidfd_open, c->n->pid, PIDFD_THREAD);
	if (pidfd < 0)
		return -ESRCH;
	int copy = (int)syscall(SYS_pidfd_getfd, pidfd, fd, 0);
	int err = errno;
	close(pidfd);
	if (copy < 0)
		return -err;
	if (!still_valid(c)) {
		close(copy);
		return -ECANCELED;
	}
	return copy;
}

/* Is fd an inotify instance? */
static int is_inotify_fd(int fd)
{
	char proc[32], target[64];
	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
	ssize_t n = readlink(proc, target, sizeof(target) - 1);
	if (n < 0)
		return 0;
	target[n] = 0;
	return !strcmp(target, "anon_inode:inotify");
}

#define IN_INIT_FLAGS (IN_NONBLOCK | IN_CLOEXEC)

/* Implements pico_inotify(op, fd_or_flags, path, path_len, mask_or_wd). */
static long serve_inotify(struct call *c, char *path)
{
	uint32_t op, arg1, mask;
	long ret;

	if (int_arg(ARG(0), &op) || int_arg(ARG(1), &arg1) || int_arg(ARG(4), &mask))
		return -EINVAL;
	c->rec.arg = op;
	c->rec.arg2 = mask;
	if (op == PICO_INOTIFY_INIT) {
		if (arg1 & ~(uint32_t)IN_INIT_FLAGS)
			return -EINVAL;
		if (c->guest->inotify_instances >= PICO_INOTIFY_MAX_INSTANCES) {
			c->denied = PICO_DENY_RUN_BOUND;
			return -EMFILE;
		}
		int fd = inotify_init1((int)(arg1 & IN_NONBLOCK) | IN_CLOEXEC);
		if (fd < 0)
			return -errno;
		c->guest->inotify_instances++;
		c->install_fd = fd;
		c->install_cloexec = !!(arg1 & IN_CLOEXEC);
		return 0;
	}
	if (op != PICO_INOTIFY_ADD_WATCH && op != PICO_INOTIFY_RM_WATCH)
		return -EINVAL;
	if (op == PICO_INOTIFY_ADD_WATCH) {
		ret = fetch_string(c, ARG(2), ARG(3), PICO_MAX_PATH, path, 0);
		if (ret < 0)
			return ret;
		if (c->guest->inotify_watches >= PICO_INOTIFY_MAX_WATCHES) {
			c->denied = PICO_DENY_RUN_BOUND;
			return -ENOSPC;
		}
	}
	int ifd = copy_guest_fd(c, (int)arg1);
	if (ifd < 0)
		return ifd == -EBADF ? -EBADF : ifd;
	if (!is_inotify_fd(ifd)) {
		close(ifd);
		return -EINVAL;
	}
	if (op == PICO_INOTIFY_ADD_WATCH) {
		ret = pico_fs_inotify_watch(c->guest->fs, path, ARG(3), ifd, mask, &c->denied);
		if (ret >= 0)
			c->guest->inotify_watches++;
	} else {
		ret = inotify_rm_watch(ifd, (int)mask) < 0 ? -errno : 0;
		if (ret == 0 && c->guest->inotify_watches)
			c->guest->inotify_watches--;
	}
	close(ifd);
	return ret;
}

/* Implements pico_unlink(path, path_len, flags). */
static long serve_unlink(struct call *c, char *path)
{
	uint32_t flags;
	long ret;

	if (int_arg(ARG(2), &flags))
		return -EINVAL;
	c->rec.arg = flags;
	ret = fetch_string(c, ARG(0), ARG(1), PICO_MAX_PATH, path, 0);
	if (ret < 0)
		return ret;
	return pico_fs_unlink(c->guest->fs, path, ARG(1), (int)flags, &c->denied);
}

/* Implements pico_rename(old, old_len, new, new_len, flags) and pico_link. */
static long serve_two_paths(struct call *c, char *path, int is_link)
{
	char *second = path + PICO_MAX_URI + 1;
	uint32_t flags;
	long ret;

	if (int_arg(ARG(4), &flags))
		return -EINVAL;
	c->rec.arg = flags;
	ret = fetch_string(c, ARG(0), ARG(1), PICO_MAX_PATH, path, 0);
	if (ret < 0)
		return ret;
	ret = fetch_string(c, ARG(2), ARG(3), PICO_MAX_PATH, second, 1);
	if (ret < 0)
		return ret;
	if (is_link)
		return pico_fs_link(c->guest->fs, path, ARG(1), second, ARG(3), (int)flags, &c->denied);
	return pico_fs_rename(c->guest->fs, path, ARG(1), second, ARG(3), flags, &c->denied);
}

/* Implements pico_symlink(target, target_len, path, path_len). */
static long serve_symlink(struct call *c, char *path)
{
	char *target = path + PICO_MAX_URI + 1;
	long ret;

	/* The link's name is the record's path; its target the second text. */
	ret = fetch_string(c, ARG(2), ARG(3), PICO_MAX_PATH, path, 0);
	if (ret < 0)
		return ret;
	ret = fetch_string(c, ARG(0), ARG(1), PICO_MAX_PATH, target, 1);
	if (ret < 0)
		return ret;
	return pico_fs_symlink(c->guest->fs, target, ARG(1), path, ARG(3), &c->denied);
}

/* Implements pico_chmod(path, path_len, mode, flags). */
static long serve_chmod(struct call *c, char *path)
{
	uint32_t mode, flags;
	long ret;

	if (int_arg(ARG(2), &mode) || int_arg(ARG(3), &flags))
		return -EINVAL;
	c->rec.arg = mode;
	ret = fetch_string(c, ARG(0), ARG(1), PICO_MAX_PATH, path, 0);
	if (ret < 0)
		return ret;
	return pico_fs_chmod(c->guest->fs, path, ARG(1), mode, (int)flags, &c->denied);
}

/* Implements pico_chown(path, path_len, uid, gid, flags). */
static long serve_chown(struct call *c, char *path)
{
	uint32_t uid, gid, flags;
	long ret;

	if (int_arg(ARG(2), &uid) || int_arg(ARG(3), &gid) || int_arg(ARG(4), &flags))
		return -EINVAL;
	c->rec.arg = uid;
	c->rec.arg2 = gid;
	ret = fetch_string(c, ARG(0), ARG(1), PICO_MAX_PATH, path, 0);
	if (ret < 0)
		return ret;
	return pico_fs_chown(c->guest->fs, path, ARG(1), uid, gid, (int)flags, &c->denied);
}

/* Implements pico_utimens(path, path_len, times, flags). */
static long serve_utimens(struct call *c, char *path)
{
	struct timespec times[2];
	uint32_t flags;
	long ret;

	if (int_arg(ARG(3), &flags))
		return -EINVAL;
	ret = fetch_string(c, ARG(0), ARG(1), PICO_MAX_PATH, path, 0);
	if (ret < 0)
		return ret;
	if (ARG(2)) {
		ret = guest_read(c, ARG(2), times, sizeof(times));
		if (ret < 0)
			return ret;
	}
	return pico_fs_utimens(c->guest->fs, path, ARG(1), ARG(2) ? times : NULL, (int)flags,
			       &c->denied);
}

/* Implements pico_truncate(path, path_len, length). */
static long serve_truncate(struct call *c, char *path)
{
	long ret;

	c->rec.arg = (int64_t)ARG(2);
	ret = fetch_string(c, ARG(0), ARG(1), PICO_MAX_PATH, path, 0);
	if (ret < 0)
		return ret;
	return pico_fs_truncate(c->guest->fs, path, ARG(1), (long)ARG(2), &c->denied);
}

/* Implements pico_statfs(path, path_len, buf). */
static long serve_statfs(struct call *c, char *path)
{
	struct statfs sfs;
	long ret;

	ret = fetch_string(c, ARG(0), ARG(1), PICO_MAX_PATH, path, 0);
	if (ret < 0)
		return ret;
	if (ARG(2) == 0)
		return -EFAULT;
	memset(&sfs, 0, sizeof(sfs));
	ret = pico_fs_statfs(c->guest->fs, path, ARG(1), &sfs, &c->denied);
	if (ret < 0)
		return ret;
	return guest_write(c, ARG(2), &sfs, sizeof(sfs));
}

/* Implements pico_note_unsupported(linux_nr, arg0): an audit record only. */
static long serve_note_unsupported(struct call *c, char *path)
{
	c->rec.arg = (int64_t)ARG(0);
	c->rec.arg2 = (int64_t)ARG(1);
	/* A traced run's note of a call the library OS emulated: not an error. */
	return (ARG(0) & PICO_NOTE_EMULATED) ? 0 : -ENOSYS;
}

/* Reads "Name:\tvalue" from a /proc status text; the value parsed in base. */
static uint64_t status_field(const char *text, const char *name, int base)
{
	const char *p = strstr(text, name);
	if (!p)
		return 0;
	p += strlen(name);
	while (*p == ' ' || *p == '\t')
		p++;
	return strtoull(p, NULL, base);
}

static ssize_t read_proc_text(const char *path, char *buf, size_t cap)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	ssize_t n = read(fd, buf, cap - 1);
	int err = errno;
	close(fd);
	if (n < 0)
		return -err;
	buf[n] = 0;
	return n;
}

/* Implements pico_task_info(which, buf): the caller's own accounting from
 * the host's /proc (the notification names the calling thread; the
 * answer is discarded if that thread is gone, its number then being free
 * for another). */
static long serve_task_info(struct call *c, char *scratch)
{
	uint64_t out[PICO_TASK_INFO_WORDS];
	uint32_t which;
	char path[64], *text = scratch; /* PICO_MAX_URI bytes */
	const long tick_ns = 1000000000L / sysconf(_SC_CLK_TCK);

	if (int_arg(ARG(0), &which) || which > 1)
		return -EINVAL;
	c->rec.arg = which;
	if (c->n->pid <= 0)
		return -EPERM;
	memset(out, 0, sizeof(out));
	snprintf(path, sizeof(path), "/proc/%u/status", c->n->pid);
	if (read_proc_text(path, text, PICO_MAX_URI) < 0)
		return -ESRCH;
	unsigned tgid = (unsigned)status_field(text, "\nTgid:", 10);
	out[0] = status_field(text, "\nSigPnd:", 16);
	out[1] = status_field(text, "\nShdPnd:", 16);
	out[6] = status_field(text, "\nVmHWM:", 10);
	out[11] = status_field(text, "\nvoluntary_ctxt_switches:", 10);
	out[12] = status_field(text, "\nnonvoluntary_ctxt_switches:", 10);
	if (which == 0)
		snprintf(path, sizeof(path), "/proc/%u/stat", tgid);
	else
		snprintf(path, sizeof(path), "/proc/%u/task/%u/stat", tgid, c->n->pid);
	if (read_proc_text(path, text, PICO_MAX_URI) < 0)
		return -ESRCH;
	/* Fields after the command name, which is in parentheses and may
	 * hold anything: state(3) ... minflt(10) cminflt majflt cmajflt
	 * utime stime cutime cstime(17). */
	const char *p = strrchr(text, ')');
	unsigned long long v[16] = {0};
	if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %llu %llu %llu %llu %llu %llu %llu %llu", &v[0],
			 &v[1], &v[2], &v[3], &v[4], &v[5], &v[6], &v[7]) != 8)
		return -ESRCH;
	out[7] = v[0];
	out[9] = v[1];
	out[8] = v[2];
	out[10] = v[3];
	out[2] = v[4] * tick_ns;
	out[3] = v[5] * tick_ns;
	out[4] = v[6] * tick_ns;
	out[5] = v[7] * tick_ns;
	if (!still_valid(c))
		return -ECANCELED;
	return guest_write(c, ARG(1), out, sizeof(out));
}

/* Indexed by mediated call number; PICO_MEDIATED_CALLS is the ABI's order. */
typedef long (*serve_fn)(struct call *c, char *scratch);

static long serve_rename(struct call *c, char *path)
{
	return serve_two_paths(c, path, 0);
}

static long serve_link(struct call *c, char *path)
{
	return serve_two_paths(c, path, 1);
}

static const serve_fn serve_table[PICO_MEDIATED_COUNT] = {
	[PICO_NR_OPEN - PICO_MEDIATED_BASE] = serve_open,
	[PICO_NR_STAT - PICO_MEDIATED_BASE] = serve_stat,
	[PICO_NR_READLINK - PICO_MEDIATED_BASE] = serve_readlink,
	[PICO_NR_ACCESS - PICO_MEDIATED_BASE] = serve_access,
	[PICO_NR_MKDIR - PICO_MEDIATED_BASE] = serve_mkdir,
	[PICO_NR_UNLINK - PICO_MEDIATED_BASE] = serve_unlink,
	[PICO_NR_RENAME - PICO_MEDIATED_BASE] = serve_rename,
	[PICO_NR_SYMLINK - PICO_MEDIATED_BASE] = serve_symlink,
	[PICO_NR_LINK - PICO_MEDIATED_BASE] = serve_link,
	[PICO_NR_CHMOD - PICO_MEDIATED_BASE] = serve_chmod,
	[PICO_NR_CHOWN - PICO_MEDIATED_BASE] = serve_chown,
	[PICO_NR_UTIMENS - PICO_MEDIATED_BASE] = serve_utimens,
	[PICO_NR_TRUNCATE - PICO_MEDIATED_BASE] = serve_truncate,
	[PICO_NR_STATFS - PICO_MEDIATED_BASE] = serve_statfs,
	[PICO_NR_NOTE_UNSUPPORTED - PICO_MEDIATED_BASE] = serve_note_unsupported,
	[PICO_NR_TASK_INFO - PICO_MEDIATED_BASE] = serve_task_info,
	[PICO_NR_MKNOD - PICO_MEDIATED_BASE] = serve_mknod,
	[PICO_NR_XATTR - PICO_MEDIATED_BASE] = serve_xattr,
	[PICO_NR_TTY_IOCTL - PICO_MEDIATED_BASE] = serve_tty_ioctl,
	[PICO_NR_INOTIFY - PICO_MEDIATED_BASE] = serve_inotify,
};

const char *pico_mediated_call_name(int index)
{
#define NAME_OF(name, nr, nargs) [nr - PICO_MEDIATED_BASE] = #name,
	static const char *const names[PICO_MEDIATED_COUNT] = {PICO_MEDIATED_CALLS(NAME_OF)};
#undef NAME_OF
	return index >= 0 && index < PICO_MEDIATED_COUNT ? names[index] : NULL;
}

/* Answers with a value or -errno.  Returns 0, or -ECANCELED when the
 * notification had gone (the guest was killed or interrupted). */
static int send_answer(struct pico_loop *l, int listener, uint64_t id, long ret)
{
	struct seccomp_notif_resp *resp = l->resp;

	memset(resp, 0, l->resp_size);
	resp->id = id;
	if (ret < 0)
		resp->error = (int32_t)ret;
	else
		resp->val = ret;
	if (ioctl(listener, SECCOMP_IOCTL_NOTIF_SEND, resp) < 0)
		return -ECANCELED; /* ENOENT: gone; nothing else is possible */
	return 0;
}

/* ---------------------------------------------------------------------- */
/* Keeping ADDFD's wake-up on the loop's CPU                               */
/*
 * NOTIF_SEND wakes the guest on the loop's CPU (SYNC_WAKE_UP), but the
 * kernel's NOTIF_ADDFD wakes it with a plain wake-up: the scheduler sees the
 * loop's CPU busy (the loop is running) and may put the guest on an idle
 * CPU; the loop then sleeps in ADDFD until the guest has installed the fd
 * and is woken back the same way.  Where idle CPUs halt (a VM without halt
 * polling) each such wake-up costs ~20 us: a mediated open took ~60 us
 * instead of ~12.  So, around the ADDFD only, the loop narrows the calling
 * thread's CPU affinity to the loop's CPU ("steering"), and gives it its
 * mask back right after.
 *
 * What makes that safe:
 *  - only the calling thread, and only if the loop's CPU is in its mask and
 *    the mask has another CPU: a guest never runs where its taskset or
 *    cpuset does not let it;
 *  - it gets back the very mask sched_getaffinity read just before (a
 *    taskset or cpuset restriction included); if the kernel refuses that
 *    mask (EINVAL: its cpuset changed meanwhile to exclude it) it gets every
 *    CPU, which the kernel bounds by the cpuset;
 *  - the kernel refusing to narrow it (EPERM, ESRCH, EINVAL, EBUSY for a
 *    deadline task) only means no steering (EPERM: never again for that
 *    guest);
 *  - the thread narrowed is the caller: an ADDFD that succeeds proves it
 *    was still alive, so its tid still its own, when it was narrowed;
 *  - the thread is blocked in its call until the ADDFD, but between the
 *    ADDFD's wake-up and the give-back it may run its own code (the loop is
 *    not sure to preempt it), and a task it creates then (fork or thread)
 *    inherits the narrowed mask: measured, a quarter of the children of a
 *    guest that forks right after each open.  So the loop reads the pid
 *    counter of its pid namespace before the narrowing (while the thread is
 *    blocked) and after the give-back; if tasks were created meanwhile,
 *    those of this guest (its pid namespace) with exactly the narrowed mask
 *    get the thread's mask, round after round for the tasks created during
 *    that repair, and steering stops for this guest.  The "before" value may
 *    be the last one read if that is recent (STEER_FRESH_NS): one read less
 *    on back-to-back calls, no wrap-round in that time;
 *  - fork() copies the mask first, takes the child's number later and
 *    shows the child later still, so a fork() under way at the give-back
 *    can yield a narrowed child that the check does not see (measured: one
 *    guest in a hundred that fork right after their opens).  So each
 *    steering also leaves a watch on the guest: after each of its later
 *    calls the tasks created since (and the numbers not yet shown at the
 *    last look) are checked the same way, until a call of the thread
 *    itself (it cannot be inside a fork() then), its exit, or
 *    STEER_WATCH_PIDS pids handed out since (a fork() takes microseconds;
 *    looking further would have the loop scan a busy host's pids after a
 *    long pause).
 * What it cannot guarantee: a change someone else makes to the thread's
 * mask within those few microseconds is undone; and a narrowed child of a
 * fork() that straddled the give-back stays so if no thread of its guest
 * (the child included) makes a mediated call before STEER_WATCH_PIDS more
 * pids are handed out, or before the guest has STEER_WATCHES other threads
 * to watch.  And the repair acts on pid numbers: a task of the guest that
 * exits between the check (mask and pid namespace) and the give-back, its
 * number reused by a host process within those microseconds, would have
 * that process's mask set to the guest thread's one -- a scheduling change,
 * never a widening of what any process may access.
 *
 * Whether it pays depends on the machine and the moment: where an idle CPU
 * wakes up fast (halt polling, shallow idle states), or while the other CPU
 * is deeply idle and the scheduler keeps the guest here anyway, the plain
 * ADDFD costs less than the ~5 us of steering.  So the loop measures both
 * (STEER_PROBE_PERIOD).  The environment variable PICOPROC_STEER, read when
 * a loop is created, overrides that for diagnosis, tests and benchmarks:
 * "never" or "always".
 */

/* Rounds of repair (see above) before giving up on a guest that keeps
 * creating tasks, and pids looked at in all. */
#define STEER_REPAIR_ROUNDS 16
#define STEER_REPAIR_PIDS 65536
#define STEER_WATCH_PIDS 1024
/* Short: every task created since is looked at (a busy host creates
 * thousands a second). */
#define STEER_FRESH_NS 100000ull
/* Steering or not: the loop keeps a running mean of the time an install
 * takes it (the ADDFD and the steering around it) each way, and every
 * STEER_PROBE_PERIOD installs probes the other way: STEER_PROBE_PLAIN
 * installs without steering (ended after 4 as soon as their mean is above
 * the steered one: a guest gone to a halted CPU costs ~60 us a call; when
 * the probe completes under 4/5 of the steered mean, the loop stops
 * steering), or STEER_PROBE_STEERED steered ones to keep that mean up to
 * date.  Without steering, the loop steers again as soon as the running
 * mean is above the steered one: the guest may stay on the loop's CPU for
 * thousands of calls, then drift to the other one and stay there.  The
 * first probe comes after STEER_PROBE_FIRST steered installs. */
#define STEER_PROBE_PERIOD 1024
#define STEER_PROBE_PLAIN 64
#define STEER_PROBE_STEERED 8
#define STEER_PROBE_FIRST 16
#define STEER_SAMPLE_MAX_NS 1000000ull

static uint64_t monotonic_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* The last pid handed out in the monitor's pid namespace, or -1. */
static int read_last_pid(struct pico_loop *l)
{
	char buf[16];
	ssize_t n = pread(l->last_pid_fd, buf, sizeof(buf) - 1, 0);
	int v = 0;

	if (n <= 0)
		return -1;
	for (ssize_t i = 0; i < n && buf[i] >= '0' && buf[i] <= '9'; i++)
		v = v * 10 + (buf[i] - '0');
	return v;
}

/* The pid namespace (its nsfs inode) of a process, as /proc shows it. */
static int pidns_of(pid_t pid, dev_t *dev, ino_t *ino)
{
	char path[48];
	struct stat st;

	if (pid > 0)
		snprintf(path, sizeof(path), "/proc/%d/ns/pid", (int)pid);
	else
		snprintf(path, sizeof(path), "/proc/self/ns/pid");
	if (stat(path, &st) < 0)
		return -1;
	*dev = st.st_dev;
	*ino = st.st_ino;
	return 0;
}

/* Steering needs the pid counter and a /proc whose numbering is the
 * loop's (the pids it reads there are the ones the affinity calls use). */
static void steer_setup(struct pico_loop *l)
{
	char buf[32];
	ssize_t n;

	const char *choice = getenv("PICOPROC_STEER");

	l->last_pid_fd = -1;
	l->steer_always = choice && !strcmp(choice, "always");
	if ((choice && !strcmp(choice, "never")) || sysconf(_SC_NPROCESSORS_ONLN) < 2)
		return;
	n = readlink("/proc/self", buf, sizeof(buf) - 1);
	if (n <= 0)
		return;
	buf[n] = '\0';
	if (atoi(buf) != getpid() || pidns_of(0, &l->own_pidns_dev, &l->own_pidns_ino) < 0)
		return;
	int fd = open("/proc/sys/kernel/pid_max", O_RDONLY | O_CLOEXEC);
	l->pid_max = 1 << 22; /* PID_MAX_LIMIT */
	if (fd >= 0) {
		n = read(fd, buf, sizeof(buf) - 1);
		if (n > 0) {
			buf[n] = '\0';
			if (atoi(buf) > 0)
				l->pid_max = atoi(buf);
		}
		close(fd);
	}
	l->last_pid_fd = open("/proc/sys/kernel/ns_last_pid", O_RDONLY | O_CLOEXEC);
	if (l->last_pid_fd >= 0 && read_last_pid(l) < 0) {
		close(l->last_pid_fd);
		l->last_pid_fd = -1;
	}
}

/* At registration: the guest's pid namespace, which must be its own. */
static void steer_add_guest(struct pico_loop *l, struct guest *g)
{
	g->steer_off = l->last_pid_fd < 0 || g->pid <= 0 ||
		       pidns_of(g->pid, &g->pidns_dev, &g->pidns_ino) < 0 ||
		       (g->pidns_dev == l->own_pidns_dev && g->pidns_ino == l->own_pidns_ino);
}

/* Narrows the calling thread to this CPU; 1 if it did. */
static int steer_begin(struct pico_loop *l, struct guest *g, pid_t tid, struct steer *s)
{
	cpu_set_t one;

	if (g->steer_off || tid <= 0)
		return 0;
	s->cpu = sched_getcpu();
	if (s->cpu < 0 || s->cpu >= CPU_SETSIZE)
		return 0;
	if (sched_getaffinity(tid, sizeof(s->saved), &s->saved) < 0)
		return 0;
	if (!CPU_ISSET(s->cpu, &s->saved) || CPU_COUNT(&s->saved) < 2)
		return 0;
	/* Read while the thread is blocked in its call (or recently, see
	 * above): whatever it creates once narrowed gets a larger pid. */
	if (l->last_pid >= 0 && monotonic_ns() - l->last_pid_ns < STEER_FRESH_NS)
		s->last_pid = l->last_pid;
	else if ((s->last_pid = read_last_pid(l)) < 0)
		return 0;
	CPU_ZERO(&one);
	CPU_SET(s->cpu, &one);
	if (sched_setaffinity(tid, sizeof(one), &one) < 0) {
		if (errno == EPERM)
			g->steer_off = 1;
		return 0;
	}
	s->tid = tid;
	return 1;
}

static void give_back(pid_t tid, const cpu_set_t *mask)
{
	for (int attempt = 0; attempt < 3; attempt++) {
		if (sched_setaffinity(tid, sizeof(*mask), mask) == 0 || errno == ESRCH)
			return;
		if (errno == EINVAL) {
			cpu_set_t all;
			memset(&all, 0xff, sizeof(all));
			mask = &all;
			if (sched_setaffinity(tid, sizeof(all), &all) == 0 || errno == ESRCH)
				return;
		}
	}
}

enum { NOT_INHERITED, INHERITED, VANISHED };

/* Did task p, created during the window, inherit the narrowed mask? */
static int inherited(struct guest *g, pid_t p, const struct steer *s)
{
	cpu_set_t mask;
	dev_t dev;
	ino_t ino;

	if (sched_getaffinity(p, sizeof(mask), &mask) < 0)
		return errno == ESRCH ? VANISHED : NOT_INHERITED;
	if (CPU_COUNT(&mask) != 1 || !CPU_ISSET(s->cpu, &mask))
		return NOT_INHERITED;
	if (pidns_of(p, &dev, &ino) < 0)
		return VANISHED;
	return dev == g->pidns_dev && ino == g->pidns_ino ? INHERITED : NOT_INHERITED;
}

/* The tasks created in (from, last] may carry the narrowing of s: repairs
 * those of this guest that do, round after round (a repaired task may have
 * created others meanwhile) until a round finds none.  Returns the pid
 * counter where it stopped; *settled: the pid up to which every task was
 * seen, the one before the first that was not there (gone, or numbered but
 * not yet created: fork() takes the number before it shows the task). */
static int steer_repair(struct pico_loop *l, struct guest *g, const struct steer *s, int from,
			int last, int *settled)
{
	int scanned = 0;

	*settled = -1;
	for (int round = 0; round < STEER_REPAIR_ROUNDS && last >= 0 && last != from; round++) {
		int found = 0, vanished = 0;
		for (int p = from;;) {
			int before = p;
			p = p + 1 >= l->pid_max ? 1 : p + 1;
			if (++scanned > STEER_REPAIR_PIDS) {
				g->steer_off = 1;
				break;
			}
			int r = inherited(g, p, s);
			if (r == INHERITED) {
				give_back(p, &s->saved);
				__atomic_fetch_add(&l->steer_repaired, 1, __ATOMIC_RELAXED);
				found = 1;
			}
			if (r == VANISHED && *settled < 0)
				*settled = before;
			vanished |= r == VANISHED;
			if (p == last)
				break;
		}
		if (found)
			g->steer_off = 1; /* this guest creates tasks right after its calls */
		/* A task gone already may have created one that is not in this
		 * range yet. */
		if (scanned > STEER_REPAIR_PIDS || (!found && !vanished))
			break;
		from = last;
		last = read_last_pid(l);
	}
	if (*settled < 0)
		*settled = last;
	return last;
}

static void note_last_pid(struct pico_loop *l, int last)
{
	l->last_pid = last;
	l->last_pid_ns = monotonic_ns();
	l->last_pid_call = l->notifications;
}

/* How far pid b is after pid a, counting round the wrap. */
static int pids_after(const struct pico_loop *l, int a, int b)
{
	return b >= a ? b - a : l->pid_max - a + b;
}

/* Looks at the tasks created since the last look at watch w, up to pid
 * counter value now; 1 when the watch has reached its end. */
static int watch_look(struct pico_loop *l, struct guest *g, struct steer *w, int now)
{
	int left = pids_after(l, w->last_pid, w->end_pid);
	int to = pids_after(l, w->last_pid, now) < left ? now : w->end_pid;
	int settled = to;
	if (to != w->last_pid)
		steer_repair(l, g, w, w->last_pid, to, &settled);
	if (settled >= 0)
		w->last_pid = settled;
	return to == w->end_pid;
}

/* Checks what the watched threads of the guest created since the last
 * look; notifier: the thread whose call was just served (0: none).  The
 * counter read while serving that call will do: it was read after the
 * call began, so after anything the notifier had started. */
static void steer_follow_up(struct pico_loop *l, struct guest *g, pid_t notifier)
{
	cpu_set_t mask;
	int now = l->last_pid_call == l->notifications && l->last_pid >= 0 ? l->last_pid
									    : read_last_pid(l);

	if (now < 0)
		return;
	note_last_pid(l, now);
	for (unsigned int i = 0; i < g->nwatch;) {
		struct steer *w = &g->watch[i];
		if (w->call == l->notifications) {
			i++; /* begun with this very call */
			continue;
		}
		if (watch_look(l, g, w, now) || w->tid == notifier ||
		    (sched_getaffinity(w->tid, sizeof(mask), &mask) < 0 && errno == ESRCH))
			g->watch[i] = g->watch[--g->nwatch];
		else
			i++;
	}
}

/* Gives the thread its mask back, repairs what it created meanwhile, and
 * watches it. */
static void steer_end(struct pico_loop *l, struct guest *g, const struct steer *s)
{
	give_back(s->tid, &s->saved);
	int last = read_last_pid(l), settled = last;
	if (last >= 0 && last != s->last_pid)
		last = steer_repair(l, g, s, s->last_pid, last, &settled);
	note_last_pid(l, last);
	if (last < 0 || settled < 0)
		return;
	if (g->nwatch == STEER_WATCHES) {
		/* Full (threads that each opened and never called since): the
		 * first gets a last look. */
		watch_look(l, g, &g->watch[0], last);
		g->watch[0] = g->watch[--g->nwatch];
	}
	struct steer *w = &g->watch[g->nwatch++];
	*w = *s;
	w->last_pid = settled;
	w->end_pid = (int)(((int64_t)settled + STEER_WATCH_PIDS) % l->pid_max);
	w->call = l->notifications;
}

/* Whether to steer this install; *probe: it is part of a probe. */
static int steer_choose(struct pico_loop *l, int *probe)
{
	*probe = 0;
	if (l->steer_always)
		return 1;
	if (!l->probe_left && ++l->steer_installs >= STEER_PROBE_PERIOD) {
		l->steer_installs = 0;
		l->probe_left = l->steer_plain ? STEER_PROBE_STEERED : STEER_PROBE_PLAIN;
		l->probe_ns = 0;
		l->probe_count = 0;
	}
	*probe = l->probe_left > 0;
	return l->steer_plain == *probe;
}

static uint64_t running_mean(uint64_t mean, uint64_t ns)
{
	return mean ? mean - mean / 16 + ns / 16 : ns;
}

static void steer_account(struct pico_loop *l, int steered, int probe, uint64_t ns)
{
	ns = ns < STEER_SAMPLE_MAX_NS ? ns : STEER_SAMPLE_MAX_NS;
	if (probe)
		l->probe_left--;
	if (steered) {
		l->steered_ns = running_mean(l->steered_ns, ns);
		return;
	}
	if (!probe) {
		l->plain_ns = running_mean(l->plain_ns, ns);
		if (l->plain_ns > l->steered_ns)
			l->steer_plain = 0; /* the guest drifts away again */
		return;
	}
	l->probe_ns += ns;
	l->probe_count++;
	if (l->probe_count >= 4 && l->probe_ns > l->steered_ns * l->probe_count)
		l->probe_left = 0; /* no better: stop here */
	else if (!l->probe_left && 5 * l->probe_ns < 4 * l->steered_ns * l->probe_count) {
		l->steer_plain = 1;
		l->plain_ns = l->probe_ns / l->probe_count;
	}
}

/* Installs fd in the guest (tid: the calling thread) and answers with its
 * number, atomically.  Returns the guest's fd number, -ECANCELED (gone), or
 * -errno after having answered the guest with it (EMFILE: the guest's fd
 * table is full). */
static long install_fd(struct pico_loop *l, struct guest *g, uint64_t id, pid_t tid, int fd,
		       int cloexec)
{
	struct seccomp_notif_addfd addfd = {
		.id = id,
		.flags = SECCOMP_ADDFD_FLAG_SEND,
		.srcfd = (uint32_t)fd,
		.newfd = 0,
		.newfd_flags = cloexec ? O_CLOEXEC : 0,
	};
	struct steer steer;
	int probe, want = steer_choose(l, &probe);
	uint64_t t0 = monotonic_ns();
	int steered = want && steer_begin(l, g, tid, &steer);
	long ret = ioctl(g->listener, SECCOMP_IOCTL_NOTIF_ADDFD, &addfd);
	int err = errno;
	if (steered) {
		steer_end(l, g, &steer);
		__atomic_fetch_add(&l->steered, 1, __ATOMIC_RELAXED);
	}
	/* A steering the guest's mask ruled out tells nothing of its cost. */
	if (steered == want)
		steer_account(l, steered, probe, monotonic_ns() - t0);
	else if (probe)
		l->probe_left--;
	if (ret >= 0)
		return ret;
	if (err == ENOENT)
		return -ECANCELED;
	/* Not installed: the call is still pending; answer it. */
	if (send_answer(l, g->listener, id, -err) < 0)
		return -ECANCELED;
	return -err;
}

static void account(struct pico_loop *l, struct guest *g, struct pico_audit_record *rec)
{
	g->stats.calls++;
	switch (rec->decision) {
	case PICO_DECISION_ALLOW:
		g->stats.allowed++;
		break;
	case PICO_DECISION_DENY:
		g->stats.denied++;
		break;
	case PICO_DECISION_ABANDONED:
		g->stats.abandoned++;
		l->abandoned++;
		break;
	default:
		g->stats.errors++;
		break;
	}
	rec->time_ns = now_ns();
	if (audit_push(l, rec) < 0)
		g->stats.audit_dropped++;
}

static void finish_record(struct pico_audit_record *rec, long ret, int denied)
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

/* ---------------------------------------------------------------------- */
/* Charging the monitor's CPU                                              */
/*
 * The CPU time the loop thread spends on a guest (receiving, checking and
 * performing its calls, answering, steering) is added to that guest's
 * count and counts against its CPU-time limit like its own.  The thread's
 * CPU clock advances only while the thread runs, so the time between two
 * readings is exactly what the loop spent, waits excluded, and all of it
 * belongs to the guest served in between.  The clock is a system call
 * (CLOCK_THREAD_CPUTIME_ID has no vDSO path), so it is not read around
 * every call: it is read when the loop turns to another guest (the time
 * since the last reading goes to the one it served), after CPU_CHARGE_CALLS
 * calls of the same guest, when a guest's counts are asked for, and before
 * the loop's own housekeeping (commands), whose time goes to nobody.  The
 * udp: relay threads charge theirs to the guest's network policy (net.h).
 */
#define CPU_CHARGE_CALLS 64

static uint64_t thread_cpu_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Charges the time since the last reading to the guest it belongs to. */
static void cpu_settle(struct pico_loop *l)
{
	uint64_t now = thread_cpu_ns();
	if (l->cpu_owner)
		l->cpu_owner->cpu_ns += now - l->cpu_mark;
	l->cpu_mark = now;
	l->cpu_calls = 0;
}

/* Before serving a call of g. */
static void cpu_begin(struct pico_loop *l, struct guest *g)
{
	if (l->cpu_owner != g) {
		cpu_settle(l);
		l->cpu_owner = g;
	}
}

/* After serving a call of l->cpu_owner. */
static void cpu_end(struct pico_loop *l)
{
	if (++l->cpu_calls >= CPU_CHARGE_CALLS)
		cpu_settle(l);
}

/* Settles, and the time from now on goes to nobody. */
static void cpu_release(struct pico_loop *l)
{
	cpu_settle(l);
	l->cpu_owner = NULL;
}

static int defer_connect(struct pico_loop *l, struct guest *g, int fd, uint64_t notif_id, pid_t tid,
			 int cloexec, const struct pico_audit_record *rec);
static int gn_submit(struct pico_loop *l, struct guest *g, struct call *c);

/* Serves the notification just received in l->notif. */
static void serve_received(struct pico_loop *l, struct guest *g, uint32_t idx)
{
	char *scratch = l->scratch;
	struct seccomp_notif *n = l->notif;
	struct call c;
	long ret;

	l->notifications++;
	cpu_begin(l, g);
	memset(&c, 0, sizeof(c));
	c.loop = l;
	c.guest = g;
	c.n = n;
	c.install_fd = -1;
	c.rec.guest = handle_of(idx, g->gen);
	c.rec.pid = (int32_t)n->pid;

	uint32_t nr = (uint32_t)n->data.nr - PICO_MEDIATED_BASE;
	if (n->data.arch != AUDIT_ARCH_X86_64 || nr >= PICO_MEDIATED_COUNT) {
		/* The filter routes only the mediated numbers here. */
		c.rec.call = -1;
		c.rec.arg = n->data.nr;
		ret = -ENOSYS;
	} else {
		c.rec.call = (int32_t)nr;
		ret = serve_table[nr](&c, scratch);
	}

	if (ret == -ECANCELED || c.gone) {
		ret = -ECANCELED;
		if (c.install_fd >= 0)
			close(c.install_fd);
	} else if (c.deferred) {
		if (defer_connect(l, g, c.install_fd, n->id, (pid_t)n->pid, c.install_cloexec, &c.rec) == 0) {
			cpu_end(l);
			return; /* answered when the connect completes */
		}
		close(c.install_fd);
		ret = send_answer(l, g->listener, n->id, -EAGAIN);
		if (ret == 0)
			ret = -EAGAIN;
	} else if (c.own) {
		int err = gn_submit(l, g, &c);
		if (err == 0) {
			cpu_end(l);
			return; /* answered when the helper has made the socket */
		}
		ret = send_answer(l, g->listener, n->id, err);
		if (ret == 0)
			ret = err;
	} else if (ret >= 0 && c.install_fd >= 0) {
		ret = install_fd(l, g, n->id, (pid_t)n->pid, c.install_fd, c.install_cloexec);
		close(c.install_fd);
	} else {
		int err = send_answer(l, g->listener, n->id, ret);
		if (err < 0)
			ret = err;
	}
	finish_record(&c.rec, ret, c.denied);
	account(l, g, &c.rec);
	if (g->nwatch)
		steer_follow_up(l, g, (pid_t)n->pid);
	cpu_end(l);
}

/* Receives: 0, or -errno (ENOENT: the caller vanished since the wake-up;
 * EINTR: interrupted). */
static int receive(struct pico_loop *l, struct guest *g)
{
	memset(l->notif, 0, l->notif_size);
	if (ioctl(g->listener, SECCOMP_IOCTL_NOTIF_RECV, l->notif) < 0) {
		int err = errno;
		if (err != ENOENT && err != EINTR)
			l->recv_errors++;
		return -err;
	}
	return 0;
}

static void serve_notification(struct pico_loop *l, struct guest *g, uint32_t idx)
{
	if (receive(l, g) == 0)
		serve_received(l, g, idx);
}

/* ---------------------------------------------------------------------- */
/* Connects in progress                                                    */

static int defer_connect(struct pico_loop *l, struct guest *g, int fd, uint64_t notif_id, pid_t tid,
			 int cloexec, const struct pico_audit_record *rec)
{
	unsigned int i;

	/* Each connect in progress is a socket the monitor holds for the
	 * guest: a guest gets PICO_LOOP_GUEST_CONNECTS of the loop's slots. */
	if (g->nconnects >= PICO_LOOP_GUEST_CONNECTS)
		return -EAGAIN;
	for (i = 0; i < l->max_connects; i++)
		if (!l->connects[i].in_use)
			break;
	if (i == l->max_connects)
		return -EAGAIN;
	struct pending_connect *pc = &l->connects[i];
	pc->gen = (pc->gen + 1) & GEN_MASK;
	struct epoll_event ev = {.events = EPOLLOUT, .data.u64 = EV_DATA(EV_CONNECT, pc->gen, i)};
	if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, fd, &ev) < 0)
		return -errno;
	pc->in_use = 1;
	pc->fd = fd;
	pc->guest_idx = (uint32_t)(g - l->guests);
	pc->guest_gen = g->gen;
	pc->notif_id = notif_id;
	pc->tid = tid;
	pc->cloexec = cloexec;
	pc->rec = *rec;
	l->nconnects++;
	if (++g->nconnects > g->stats.connects_peak)
		g->stats.connects_peak = g->nconnects;
	return 0;
}

static void drop_connect(struct pico_loop *l, struct pending_connect *pc)
{
	struct guest *g = &l->guests[pc->guest_idx];

	epoll_ctl(l->epfd, EPOLL_CTL_DEL, pc->fd, NULL);
	close(pc->fd);
	pc->in_use = 0;
	l->nconnects--;
	if (g->in_use && g->gen == pc->guest_gen && g->nconnects > 0)
		g->nconnects--;
}

static void finish_connect(struct pico_loop *l, uint32_t idx, uint32_t gen)
{
	if (idx >= l->max_connects || !l->connects[idx].in_use || l->connects[idx].gen != gen)
		return;
	struct pending_connect *pc = &l->connects[idx];
	struct guest *g = &l->guests[pc->guest_idx];
	long ret;

	if (!g->in_use || g->gen != pc->guest_gen || g->listener < 0) {
		drop_connect(l, pc);
		return;
	}
	cpu_begin(l, g);
	ret = pico_net_finish(pc->fd);
	if (ret == -EINPROGRESS) {
		cpu_end(l);
		return; /* not yet: wait for the next EPOLLOUT */
	}
	if (ret == 0)
		ret = install_fd(l, g, pc->notif_id, pc->tid, pc->fd, pc->cloexec);
	else if (send_answer(l, g->listener, pc->notif_id, ret) < 0)
		ret = -ECANCELED;
	finish_record(&pc->rec, ret, 0);
	account(l, g, &pc->rec);
	drop_connect(l, pc);
	cpu_end(l);
}

static void drop_connects_of(struct pico_loop *l, uint32_t guest_idx)
{
	for (unsigned int i = 0; i < l->max_connects; i++)
		if (l->connects[i].in_use && l->connects[i].guest_idx == guest_idx)
			drop_connect(l, &l->connects[i]);
}

/* ---------------------------------------------------------------------- */
/* Sockets of the guest's own network (guestnet.h)                         */

/* Sends the call's request to the guest's helper and queues the call: 0,
 * or -errno to answer the guest with now. */
static int gn_submit(struct pico_loop *l, struct guest *g, struct call *c)
{
	if (g->gn_fd < 0)
		return -ENETDOWN; /* the helper is gone */
	if (g->gn_count == g->gn_cap) {
		unsigned int cap = g->gn_cap ? 2 * g->gn_cap : 8;
		if (g->gn_cap >= GN_MAX_PENDING)
			return -EAGAIN;
		struct gn_pending *q = malloc(cap * sizeof(*q));
		if (!q)
			return -ENOMEM;
		for (unsigned int i = 0; i < g->gn_count; i++)
			q[i] = g->gn_q[(g->gn_head + i) % g->gn_cap];
		free(g->gn_q);
		g->gn_q = q;
		g->gn_cap = cap;
		g->gn_head = 0;
	}
	c->own_req.id = ++g->gn_next_id;
	int err = pico_guestnet_send(g->gn_fd, &c->own_req);
	if (err < 0)
		return err == -EPIPE || err == -ECONNRESET ? -ENETDOWN : err;
	struct gn_pending *p = &g->gn_q[(g->gn_head + g->gn_count) % g->gn_cap];
	p->id = c->own_req.id;
	p->notif_id = c->n->id;
	p->tid = (pid_t)c->n->pid;
	p->cloexec = c->install_cloexec;
	p->nonblock = c->own_nonblock;
	p->req = c->own_req;
	p->rec = c->rec;
	g->gn_count++;
	l->ngn_pending++;
	return 0;
}

/* Answers a call the helper has answered: the socket installed in the
 * guest, a connect still under way deferred like a host one, or the
 * errno. */
static void gn_answer(struct pico_loop *l, struct guest *g, struct gn_pending *p, int err, int fd)
{
	long ret;

	if (fd >= 0 && err == EINPROGRESS) {
		ret = pico_net_adopt_connecting(fd, &p->req, p->nonblock);
		if (ret == -EINPROGRESS &&
		    defer_connect(l, g, fd, p->notif_id, p->tid, p->cloexec, &p->rec) == 0)
			return; /* answered when the connect completes */
		close(fd);
		fd = -1;
		err = ret == -EINPROGRESS ? EAGAIN : (int)-ret;
	} else if (fd >= 0) {
		int fl = fcntl(fd, F_GETFL);
		if (fl < 0 || fcntl(fd, F_SETFL, p->nonblock ? fl : (fl & ~O_NONBLOCK)) < 0) {
			err = errno;
			close(fd);
			fd = -1;
		}
	}
	if (fd >= 0) {
		ret = install_fd(l, g, p->notif_id, p->tid, fd, p->cloexec);
		close(fd);
	} else {
		ret = -(err ? err : EPROTO);
		if (send_answer(l, g->listener, p->notif_id, ret) < 0)
			ret = -ECANCELED;
	}
	finish_record(&p->rec, ret, 0);
	account(l, g, &p->rec);
}

/* The helper is gone (or broke the protocol): its waiting calls fail. */
static void gn_close(struct pico_loop *l, struct guest *g)
{
	if (g->gn_fd >= 0) {
		epoll_ctl(l->epfd, EPOLL_CTL_DEL, g->gn_fd, NULL);
		close(g->gn_fd);
		g->gn_fd = -1;
	}
	while (g->gn_count) {
		struct gn_pending *p = &g->gn_q[g->gn_head];
		g->gn_head = (g->gn_head + 1) % g->gn_cap;
		g->gn_count--;
		l->ngn_pending--;
		long ret = -ENETDOWN;
		if (g->listener < 0 || send_answer(l, g->listener, p->notif_id, ret) < 0)
			ret = -ECANCELED;
		finish_record(&p->rec, ret, 0);
		account(l, g, &p->rec);
	}
	free(g->gn_q);
	g->gn_q = NULL;
	g->gn_cap = g->gn_head = 0;
}

/* The helper's channel is readable (or hung up): answers what it replied. */
static void gn_ready(struct pico_loop *l, uint32_t idx, uint32_t gen, uint32_t events)
{
	if (idx >= l->max_guests)
		return;
	struct guest *g = &l->guests[idx];
	if (!g->in_use || g->gen != gen || g->gn_fd < 0)
		return;
	cpu_begin(l, g);
	for (;;) {
		struct pico_gn_reply rep;
		int fd;
		int r = pico_guestnet_recv(g->gn_fd, &rep, &fd);
		if (r == -EAGAIN)
			break;
		if (r <= 0 || g->gn_count == 0 || rep.id != g->gn_q[g->gn_head].id) {
			/* Gone, or an answer to nothing: the helper is not trusted
			 * beyond its channel; stop using it. */
			if (fd >= 0)
				close(fd);
			gn_close(l, g);
			return;
		}
		struct gn_pending p = g->gn_q[g->gn_head];
		g->gn_head = (g->gn_head + 1) % g->gn_cap;
		g->gn_count--;
		l->ngn_pending--;
		gn_answer(l, g, &p, rep.err, fd);
	}
	if (events & (EPOLLHUP | EPOLLERR))
		gn_close(l, g);
	cpu_end(l);
}

/* ---------------------------------------------------------------------- */
/* Guests                                                                  */

/* Every process of the guest is gone: its listener hung up. */
static void guest_hung_up(struct pico_loop *l, struct guest *g)
{
	if (g->listener < 0)
		return;
	epoll_ctl(l->epfd, EPOLL_CTL_DEL, g->listener, NULL);
	close(g->listener);
	g->listener = -1;
	g->stats.alive = 0;
	l->nlive--;
	drop_connects_of(l, (uint32_t)(g - l->guests));
	gn_close(l, g);
}

static int64_t do_add(struct pico_loop *l, struct cmd *cmd)
{
	unsigned int i;

	if (!cmd->fs)
		return -EINVAL;
	for (i = 0; i < l->max_guests; i++)
		if (!l->guests[i].in_use)
			break;
	if (i == l->max_guests)
		return -ENOSPC;
	int fd = fcntl(cmd->listener_fd, F_DUPFD_CLOEXEC, 3);
	if (fd < 0)
		return -errno;
	int gn_fd = -1;
	if (cmd->guestnet_fd >= 0) {
		gn_fd = fcntl(cmd->guestnet_fd, F_DUPFD_CLOEXEC, 3);
		if (gn_fd < 0) {
			int err = errno;
			close(fd);
			return -err;
		}
	}
	struct guest *g = &l->guests[i];
	uint32_t gen = ((g->gen + 1) & GEN_MASK) ?: 1;
	/* Synchronous wake-ups: the guest blocks at once when it notifies, so
	 * the kernel may run the loop on the guest's CPU and back. */
	if (ioctl(fd, SECCOMP_IOCTL_NOTIF_SET_FLAGS, SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP) == 0)
		l->sync_wakeup = 1;
	struct epoll_event ev = {.events = EPOLLIN, .data.u64 = EV_DATA(EV_GUEST, gen, i)};
	struct epoll_event gn_ev = {.events = EPOLLIN, .data.u64 = EV_DATA(EV_GUESTNET, gen, i)};
	if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, fd, &ev) < 0 ||
	    (gn_fd >= 0 && epoll_ctl(l->epfd, EPOLL_CTL_ADD, gn_fd, &gn_ev) < 0)) {
		int err = errno;
		epoll_ctl(l->epfd, EPOLL_CTL_DEL, fd, NULL);
		close(fd);
		if (gn_fd >= 0)
			close(gn_fd);
		return -err;
	}
	memset(g, 0, sizeof(*g));
	g->gn_fd = gn_fd;
	g->in_use = 1;
	g->gen = gen;
	g->listener = fd;
	g->pid = cmd->pid;
	g->fs = cmd->fs;
	g->net = cmd->net;
	g->proc.fs = cmd->fs;
	g->proc.owner = handle_of(i, gen);
	g->proc.procfd = cmd->proc_fd >= 0 ? fcntl(cmd->proc_fd, F_DUPFD_CLOEXEC, 3) : -1;
	g->proc.listdir = cmd->listing_fd >= 0 ? fcntl(cmd->listing_fd, F_DUPFD_CLOEXEC, 3) : -1;
	g->stats.handle = handle_of(i, gen);
	g->stats.pid = cmd->pid;
	g->stats.alive = 1;
	steer_add_guest(l, g);
	l->nguests++;
	l->nlive++;
	return g->stats.handle;
}

/* The guest's counts, with the CPU time charged to it so far. */
static void fill_stats(struct guest *g, struct pico_guest_stats *out)
{
	*out = g->stats;
	out->monitor_cpu_ns = g->cpu_ns + (g->net ? pico_net_policy_cpu_ns(g->net) : 0);
}

static int64_t do_remove(struct pico_loop *l, struct cmd *cmd)
{
	struct guest *g = guest_of_handle(l, cmd->handle);
	if (!g)
		return -ENOENT;
	if (g->nwatch && g->listener >= 0)
		steer_follow_up(l, g, 0); /* a last look: the guest may live on */
	guest_hung_up(l, g);
	if (l->cpu_owner == g)
		cpu_release(l);
	if (cmd->stats)
		fill_stats(g, cmd->stats);
	pico_proc_view_release(&g->proc);
	g->in_use = 0;
	l->nguests--;
	return 0;
}

static int64_t do_stats(struct pico_loop *l, struct cmd *cmd)
{
	struct guest *g = guest_of_handle(l, cmd->handle);
	if (!g)
		return -ENOENT;
	if (l->cpu_owner == g)
		cpu_settle(l);
	fill_stats(g, cmd->stats);
	return 0;
}

static int64_t run_cmd(struct pico_loop *l, struct cmd *cmd)
{
	switch (cmd->kind) {
	case CMD_ADD:
		return do_add(l, cmd);
	case CMD_REMOVE:
		return do_remove(l, cmd);
	default:
		return do_stats(l, cmd);
	}
}

/* The signal that interrupts the loop thread's NOTIF_RECV in direct mode. */
static int wake_signal(void)
{
	return SIGRTMIN + 3;
}

static void wake_handler(int sig)
{
	(void)sig; /* only there to interrupt the system call */
}

/* With l->lock held: makes the loop thread look at its queue and flags.
 * In direct mode it is blocked in NOTIF_RECV, which only a signal ends. */
static void kick(struct pico_loop *l)
{
	uint64_t one = 1;
	ssize_t n = write(l->wakefd, &one, sizeof(one));
	(void)n; /* a saturated eventfd is still readable */
	if (l->in_direct)
		syscall(SYS_tgkill, getpid(), l->tid, wake_signal());
}

/* Runs cmd on the loop thread if it runs, here otherwise. */
static int64_t submit(struct pico_loop *l, struct cmd *cmd)
{
	pthread_mutex_lock(&l->lock);
	if (l->state != RUNNING) {
		/* STARTING counts as running: the loop thread is about to
		 * serve and will run queued commands. */
		if (l->state == STOPPED) {
			cmd->result = run_cmd(l, cmd);
			pthread_mutex_unlock(&l->lock);
			return cmd->result;
		}
	}
	cmd->done = 0;
	cmd->next = l->cmds;
	l->cmds = cmd;
	kick(l);
	while (!cmd->done) {
		/* The signal can land just before the loop thread enters
		 * NOTIF_RECV (no ioctl takes a signal mask): kick again until
		 * the command is done. */
		struct timespec deadline;
		clock_gettime(CLOCK_REALTIME, &deadline);
		deadline.tv_nsec += 20 * 1000000L;
		if (deadline.tv_nsec >= 1000000000L) {
			deadline.tv_sec++;
			deadline.tv_nsec -= 1000000000L;
		}
		if (pthread_cond_timedwait(&l->cond, &l->lock, &deadline) == ETIMEDOUT && !cmd->done)
			kick(l);
	}
	pthread_mutex_unlock(&l->lock);
	return cmd->result;
}

/* With l->lock held. */
static void run_queued(struct pico_loop *l)
{
	while (l->cmds) {
		struct cmd *cmd = l->cmds;
		l->cmds = cmd->next;
		cmd->result = run_cmd(l, cmd);
		cmd->done = 1;
	}
	pthread_cond_broadcast(&l->cond);
}

int64_t pico_loop_add_guest(struct pico_loop *l, int listener_fd, int32_t pid,
			    const struct pico_fs_policy *fs, const void *net, int guestnet_fd)
{
	return pico_loop_add_guest_view(l, listener_fd, pid, fs, net, guestnet_fd, -1, -1);
}

int64_t pico_loop_add_guest_view(struct pico_loop *l, int listener_fd, int32_t pid,
				 const struct pico_fs_policy *fs, const void *net, int guestnet_fd, int proc_fd,
				 int listing_fd)
{
	struct cmd cmd = {.kind = CMD_ADD, .listener_fd = listener_fd, .guestnet_fd = guestnet_fd,
			  .pid = pid, .fs = fs, .net = net, .proc_fd = proc_fd, .listing_fd = listing_fd};
	return submit(l, &cmd);
}

int pico_loop_remove_guest(struct pico_loop *l, int64_t handle, struct pico_guest_stats *out)
{
	struct cmd cmd = {.kind = CMD_REMOVE, .handle = handle, .stats = out};
	return (int)submit(l, &cmd);
}

int pico_loop_guest_stats(struct pico_loop *l, int64_t handle, struct pico_guest_stats *out)
{
	struct cmd cmd = {.kind = CMD_STATS, .handle = handle, .stats = out};
	return (int)submit(l, &cmd);
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
	l->epfd = l->wakefd = l->audit_efd = -1;
	l->last_pid = -1;
	l->steer_installs = STEER_PROBE_PERIOD - STEER_PROBE_FIRST;
	steer_setup(l);
	pthread_mutex_init(&l->lock, NULL);
	pthread_mutex_init(&l->audit_lock, NULL);
	pthread_cond_init(&l->cond, NULL);
	l->max_guests = max_guests;
	l->max_connects = max_guests;
	l->ring_cap = audit_capacity;
	l->notif_size = sizes.seccomp_notif > sizeof(struct seccomp_notif) ? sizes.seccomp_notif
									    : sizeof(struct seccomp_notif);
	l->resp_size = sizes.seccomp_notif_resp > sizeof(struct seccomp_notif_resp)
			       ? sizes.seccomp_notif_resp
			       : sizeof(struct seccomp_notif_resp);
	l->guests = calloc(max_guests, sizeof(*l->guests));
	l->connects = calloc(l->max_connects, sizeof(*l->connects));
	l->ring = calloc(audit_capacity, sizeof(*l->ring));
	l->ring_held = calloc(max_guests, sizeof(*l->ring_held));
	l->ring_held_gen = calloc(max_guests, sizeof(*l->ring_held_gen));
	l->ring_share = audit_capacity / PICO_LOOP_AUDIT_SHARE_DIVISOR ?: 1;
	l->notif = calloc(1, l->notif_size);
	l->resp = calloc(1, l->resp_size);
	l->epfd = epoll_create1(EPOLL_CLOEXEC);
	l->wakefd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	l->audit_efd = eventfd(0, EFD_CLOEXEC);
	if (!l->guests || !l->connects || !l->ring || !l->ring_held || !l->ring_held_gen ||
	    !l->notif || !l->resp || l->epfd < 0 ||
	    l->wakefd < 0 || l->audit_efd < 0)
		goto fail;
	struct epoll_event ev = {.events = EPOLLIN, .data.u64 = EV_DATA(EV_WAKE, 0, 0)};
	if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, l->wakefd, &ev) < 0)
		goto fail;
	return l;
fail:
	{
		int err = errno ?: ENOMEM;
		pico_loop_free(l);
		errno = err;
		return NULL;
	}
}

void pico_loop_free(struct pico_loop *l)
{
	if (!l)
		return;
	for (unsigned int i = 0; l->connects && i < l->max_connects; i++)
		if (l->connects[i].in_use)
			close(l->connects[i].fd);
	for (unsigned int i = 0; l->guests && i < l->max_guests; i++) {
		if (l->guests[i].in_use && l->guests[i].listener >= 0)
			close(l->guests[i].listener);
		if (l->guests[i].in_use && l->guests[i].gn_fd >= 0)
			close(l->guests[i].gn_fd);
		if (l->guests[i].in_use) {
			free(l->guests[i].gn_q);
			pico_proc_view_release(&l->guests[i].proc);
		}
	}
	if (l->epfd >= 0)
		close(l->epfd);
	if (l->wakefd >= 0)
		close(l->wakefd);
	if (l->audit_efd >= 0)
		close(l->audit_efd);
	if (l->last_pid_fd >= 0)
		close(l->last_pid_fd);
	pthread_mutex_destroy(&l->lock);
	pthread_mutex_destroy(&l->audit_lock);
	pthread_cond_destroy(&l->cond);
	free(l->guests);
	free(l->connects);
	free(l->ring);
	free(l->ring_held);
	free(l->ring_held_gen);
	free(l->notif);
	free(l->resp);
	free(l);
}

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

/* Direct mode needs the wake-up signal to interrupt NOTIF_RECV: a handler
 * (no SA_RESTART) that does nothing, and the signal unblocked in the loop
 * thread.  If someone else already handles that signal, no direct mode. */
static int install_wake_handler(void)
{
	struct sigaction sa, old;
	sigset_t set;

	if (sigaction(wake_signal(), NULL, &old) < 0)
		return 0;
	if (old.sa_handler != SIG_DFL && old.sa_handler != wake_handler)
		return 0;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = wake_handler;
	sigemptyset(&sa.sa_mask);
	if (sigaction(wake_signal(), &sa, NULL) < 0)
		return 0;
	sigemptyset(&set);
	sigaddset(&set, wake_signal());
	return pthread_sigmask(SIG_UNBLOCK, &set, NULL) == 0;
}

static void dispatch(struct pico_loop *l, const struct epoll_event *ev)
{
	uint64_t d = ev->data.u64;
	uint32_t idx = EV_IDX(d);

	switch (EV_KIND(d)) {
	case EV_WAKE: {
		uint64_t v;
		ssize_t n = read(l->wakefd, &v, sizeof(v));
		(void)n;
		cpu_release(l);
		pthread_mutex_lock(&l->lock);
		run_queued(l);
		pthread_mutex_unlock(&l->lock);
		break;
	}
	case EV_GUEST: {
		if (idx >= l->max_guests)
			break;
		struct guest *g = &l->guests[idx];
		if (!g->in_use || g->gen != EV_GEN(d) || g->listener < 0)
			break;
		if (ev->events & EPOLLIN)
			serve_notification(l, g, idx);
		if (ev->events & (EPOLLHUP | EPOLLERR))
			guest_hung_up(l, g);
		break;
	}
	case EV_CONNECT:
		finish_connect(l, idx, EV_GEN(d));
		break;
	case EV_GUESTNET:
		gn_ready(l, idx, EV_GEN(d), ev->events);
		break;
	}
}

int pico_loop_run(struct pico_loop *l, uint32_t fsuid, uint32_t fsgid, const uint32_t *groups,
		  size_t ngroups)
{
	struct epoll_event events[EVENTS_PER_WAIT];
	struct identity saved;
	int ret = 0;

	pthread_mutex_lock(&l->lock);
	if (l->state != STOPPED) {
		pthread_mutex_unlock(&l->lock);
		return -EBUSY;
	}
	l->state = STARTING;
	l->run_error = 0;
	pthread_mutex_unlock(&l->lock);

	ret = take_identity(fsuid, fsgid, groups, ngroups, &saved);
	pthread_mutex_lock(&l->lock);
	if (ret < 0) {
		l->state = STOPPED;
		l->run_error = ret;
		run_queued(l);
		pthread_mutex_unlock(&l->lock);
		restore_identity(&saved);
		return ret;
	}
	/* The loop thread takes none of the process's signals, only its own
	 * wake-up (below).  A signal that interrupts the wait inside a
	 * NOTIF_ADDFD with SECCOMP_ADDFD_FLAG_SEND leaves the guest's call
	 * answered 0 with no fd installed: the kernel marks the call replied
	 * before it waits for the guest to take the fd, and withdraws the fd
	 * when that wait is interrupted.  A signal sent to the whole process
	 * goes to a thread that does not block it. */
	sigset_t all, old_mask;
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old_mask);
	l->tid = (pid_t)syscall(SYS_gettid);
	l->cpu_mark = thread_cpu_ns();
	l->cpu_owner = NULL;
	l->direct_ok = install_wake_handler();
	l->state = RUNNING;
	pthread_cond_broadcast(&l->cond);
	pthread_mutex_unlock(&l->lock);

	for (int use_epoll = 1;;) {
		struct guest *direct = NULL;

		pthread_mutex_lock(&l->lock);
		if (l->stop) {
			pthread_mutex_unlock(&l->lock);
			break;
		}
		/* Direct mode: with one live guest and nothing else to watch,
		 * block in NOTIF_RECV on its listener.  A guest's call then
		 * wakes the loop on the guest's own CPU when the listener has
		 * SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP (epoll waiters are woken
		 * the ordinary way, often on the other CPU), and the answer
		 * wakes the guest the same way: the round trip costs a few
		 * context switches instead of cross-CPU wake-ups.  Commands and
		 * stop interrupt it with a signal (kick). */
		if (!use_epoll && l->direct_ok && !l->cmds && l->nlive == 1 && l->nconnects == 0 &&
		    l->ngn_pending == 0) {
			for (unsigned int i = 0; i < l->max_guests; i++) {
				if (l->guests[i].in_use && l->guests[i].listener >= 0) {
					direct = &l->guests[i];
					break;
				}
			}
			l->in_direct = direct != NULL;
		}
		pthread_mutex_unlock(&l->lock);

		if (direct) {
			int err = receive(l, direct);
			pthread_mutex_lock(&l->lock);
			l->in_direct = 0;
			pthread_mutex_unlock(&l->lock);
			if (err == 0)
				serve_received(l, direct, (uint32_t)(direct - l->guests));
			/* Interrupted, or the listener misbehaves (e.g. every
			 * guest process is gone): look at everything once. */
			use_epoll = err != 0;
			continue;
		}
		int n = epoll_wait(l->epfd, events, EVENTS_PER_WAIT, -1);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			ret = -errno;
			break;
		}
		for (int i = 0; i < n; i++)
			dispatch(l, &events[i]);
		use_epoll = 0;
	}

	cpu_release(l);
	pthread_sigmask(SIG_SETMASK, &old_mask, NULL);
	restore_identity(&saved);
	pthread_mutex_lock(&l->lock);
	l->state = STOPPED;
	l->stop = 0;
	run_queued(l);
	pthread_mutex_unlock(&l->lock);
	return ret;
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
	if (l->state != STOPPED)
		l->stop = 1;
	/* Kick until the loop has stopped: a signal that lands just before
	 * NOTIF_RECV in direct mode is lost (see submit). */
	while (l->state != STOPPED) {
		struct timespec deadline;
		kick(l);
		clock_gettime(CLOCK_REALTIME, &deadline);
		deadline.tv_nsec += 20 * 1000000L;
		if (deadline.tv_nsec >= 1000000000L) {
			deadline.tv_sec++;
			deadline.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&l->cond, &l->lock, &deadline);
	}
	pthread_mutex_unlock(&l->lock);
}

void pico_loop_get_counters(struct pico_loop *l, struct pico_loop_counters *out)
{
	pthread_mutex_lock(&l->lock);
	out->notifications = __atomic_load_n(&l->notifications, __ATOMIC_RELAXED);
	out->abandoned = __atomic_load_n(&l->abandoned, __ATOMIC_RELAXED);
	out->recv_errors = __atomic_load_n(&l->recv_errors, __ATOMIC_RELAXED);
	out->steered = __atomic_load_n(&l->steered, __ATOMIC_RELAXED);
	out->steer_repaired = __atomic_load_n(&l->steer_repaired, __ATOMIC_RELAXED);
	out->guests = (int32_t)l->nguests;
	out->sync_wakeup = l->sync_wakeup;
	out->running = l->state == RUNNING;
	out->pending_connects = (int32_t)l->nconnects;
	out->guestnet_pending = (int32_t)l->ngn_pending;
	pthread_mutex_unlock(&l->lock);
	pthread_mutex_lock(&l->audit_lock);
	out->audit_dropped = l->audit_dropped;
	pthread_mutex_unlock(&l->audit_lock);
}
