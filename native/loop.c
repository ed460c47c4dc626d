/* The monitor's loop and the dispatcher of mediated calls (loop.h). */
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
#include <sys/mman.h>
#include <sys/socket.h>
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

#define EVENTS_PER_WAIT 16

/* epoll data of a server: what an event is about (the index of a connect). */
enum ev_kind { EV_WAKE = 0, EV_LISTENER = 1, EV_CONNECT = 2, EV_GUESTNET = 3 };
#define EV_DATA(kind, idx) (((uint64_t)(kind) << 32) | (uint32_t)(idx))
#define EV_KIND(d) ((int)((d) >> 32))
#define EV_IDX(d) ((uint32_t)(d))
#define GEN_MASK 0x3fffffffu

/* Serving threads: small stacks (the deepest call, a path walk, needs a few
 * pages of buffers). */
#define SERVER_STACK_BYTES (512 * 1024)

/* How an fd goes back to the caller: its channel and tag when it asked for
 * the fd there (channel >= 0), else NOTIF_ADDFD. */
struct delivery {
	int channel;
	uint32_t tag;
	int cloexec;
};

/* A call waiting for the guest's socket helper (guestnet.h) to answer. */
struct gn_pending {
	uint32_t id;
	uint64_t notif_id;
	pid_t tid;
	int nonblock;
	struct delivery to;
	struct pico_gn_request req;
	struct pico_audit_record rec;
};

/* Requests a guest may have with its helper at once: each is a guest
 * thread blocked in its call, so the guest's process limit bounds them
 * first; this bounds the loop's memory for one guest. */
#define GN_MAX_PENDING 1024

/* A tcp:/udp: connect that is in progress: the guest's call is answered
 * when the socket becomes writable. */
struct pending_connect {
	int in_use;
	int fd;
	uint64_t notif_id;
	pid_t tid; /* the calling thread */
	struct delivery to;
	struct pico_audit_record rec;
};

enum run_state { STOPPED, STARTING, RUNNING };

struct pico_loop;

/* A guest and the thread that serves it.  Everything here but the fields
 * marked otherwise belongs to that thread while it runs. */
struct guest {
	struct pico_loop *loop;
	uint32_t idx, gen;
	int listener; /* the loop's duplicate; -1 once hung up */
	int32_t pid;
	const struct pico_fs_policy *fs;
	const struct pico_net_policy *net;
	struct pico_proc_view proc; /* its /proc (procview.h), used by its server only */
	/* Read by any thread (relaxed atomics), written by the server. */
	struct pico_guest_stats stats;
	/* Its argument area as the monitor maps it (NULL: none) and the
	 * monitor's ends of its channels. */
	unsigned char *area;
	int channels[PICO_AREA_SLOTS];
	int nchannels;
	int audit_allowed;
	unsigned int nlisteners; /* host tcp.srv: listeners it was given */
	/* inotify instances made and watches added for this guest (bounded
	 * per run: the kernel charges them to the monitor's identity). */
	unsigned int inotify_instances, inotify_watches;

	/* The server.  started/stop/in_direct: under the loop's lock or atomic. */
	pthread_t thread;
	int started;
	int stop;
	int in_direct; /* blocked (or about to block) in NOTIF_RECV */
	pid_t tid;
	int epfd, wakefd;
	int identity_err; /* the server could not take the guests' identity */
	uint64_t cpu_ns;  /* the CPU time of its servers that have ended (loop runs) */
	struct seccomp_notif *notif;
	struct seccomp_notif_resp *resp;
	/* The URI or first path, then a second path (rename, link, symlink). */
	char scratch[2 * (PICO_MAX_URI + 1)];

	struct pending_connect connects[PICO_LOOP_GUEST_CONNECTS];
	unsigned int nconnects;

	/* The socket helper of the guest's own network: the loop's duplicate
	 * of its channel (-1: none, or gone) and the calls waiting for it, in
	 * the order sent (a ring, grown on demand). */
	int gn_fd;
	uint32_t gn_next_id;
	struct gn_pending *gn_q;
	unsigned int gn_head, gn_count, gn_cap;
};

struct pico_loop {
	int audit_efd;

	pthread_mutex_t lock; /* guests table, run state */
	pthread_cond_t cond;
	enum run_state state;
	int run_error;
	int stop;
	int direct_ok; /* the wake-up signal's handler is ours */
	/* The guests' identity, for every server. */
	uint32_t fsuid, fsgid;
	uint32_t groups[64];
	size_t ngroups;

	struct guest **guests; /* by slot; NULL: free */
	uint32_t *gens;	       /* each slot's generation, for handles */
	unsigned int max_guests;
	unsigned int nguests;

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

	size_t notif_size, resp_size;

	/* Counters: atomics, written by the servers, read by anyone. */
	uint64_t notifications, abandoned, audit_dropped, recv_errors;
	uint64_t fds_on_channel, fds_by_addfd, area_calls, fs_lookups;
	int servers, sync_wakeup, pending_connects, guestnet_pending;
};

#define BUMP(x) __atomic_fetch_add(&(x), 1, __ATOMIC_RELAXED)
#define DROP(x) __atomic_fetch_sub(&(x), 1, __ATOMIC_RELAXED)
#define LOAD(x) __atomic_load_n(&(x), __ATOMIC_RELAXED)

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

/* ---------------------------------------------------------------------- */
/* One mediated call                                                       */

struct call {
	struct guest *guest;
	const struct seccomp_notif *n;
	struct pico_audit_record rec;
	int gone;	  /* the notification is no longer valid: do not answer */
	int denied;	  /* the refusal is a policy decision: its PICO_DENY_* reason */
	int install_fd;	  /* >= 0: answer by handing this fd to the guest */
	struct delivery to;
	int deferred;	  /* answered later (a connect in progress) */
	int own;	  /* answered later: own_req goes to the guest's socket helper */
	int own_nonblock;
	struct pico_gn_request own_req;
};

/* Is the notification still pending?  After every read of the caller's
 * memory: the pid the read used could otherwise have been recycled. */
static int still_valid(struct call *c)
{
	uint64_t id = c->n->id;
	if (ioctl(c->guest->listener, SECCOMP_IOCTL_NOTIF_ID_VALID, &id) == 0)
		return 1;
	c->gone = 1;
	return 0;
}

static int is_area_ref(uint64_t addr)
{
	return (addr & PICO_AREA_REF_MASK) == PICO_AREA_REF;
}

/* Where len bytes at area reference addr lie in the monitor's mapping of the
 * guest's area, or NULL (no area, or not wholly inside it). */
static unsigned char *area_at(struct call *c, uint64_t addr, size_t len)
{
	uint64_t off = addr & ~PICO_AREA_REF_MASK;
	if (!c->guest->area || off > PICO_AREA_SIZE || len > PICO_AREA_SIZE - off)
		return NULL;
	return c->guest->area + off;
}

/* Copies len bytes from the guest: 0, -EFAULT, or -ECANCELED (gone).  From
 * its argument area, a plain copy into the monitor's own buffer: the area
 * cannot shrink (sealed), so the copy never faults, and what the guest
 * writes there later cannot change what was copied.  From the caller's
 * memory, process_vm_readv and a check that the call (so its pid) is still
 * the same. */
static int guest_read(struct call *c, uint64_t addr, void *buf, size_t len)
{
	if (is_area_ref(addr)) {
		const unsigned char *src = area_at(c, addr, len);
		if (!src)
			return -EFAULT;
		memcpy(buf, src, len);
		return 0;
	}
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

/* Copies len bytes into the guest: 0, -EFAULT, or -ECANCELED (gone).  Into
 * its argument area: a plain copy (whoever reads it is the guest's own
 * business).  Into the caller's memory the check comes first: a read from a
 * recycled pid is harmless once discarded, a write into one is not.  The
 * caller is blocked in its call until answered or killed
 * (WAIT_KILLABLE_RECV), so a valid notification means its pid is still its
 * own; what remains is the microsecond between this check and
 * process_vm_writev, in which the caller would have to die and another
 * process be given its number (pids are handed out in order: the counter
 * would have to be right there).  The library OS passes area references, so
 * this path serves only callers without an area. */
static int guest_write(struct call *c, uint64_t addr, const void *buf, size_t len)
{
	if (is_area_ref(addr)) {
		unsigned char *dst = area_at(c, addr, len);
		if (!dst)
			return -EFAULT;
		memcpy(dst, buf, len);
		return 0;
	}
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

/* An open whose URI lies in slot k of the guest's area, with that slot's
 * head asking for it, gets its fd on channel k (abi_v1.toml, "The argument
 * area").  The head is copied once, like every argument; a wrong one only
 * means the fd is installed with NOTIF_ADDFD. */
static void channel_requested(struct call *c, uint64_t uri)
{
	uint32_t head[2];
	struct guest *g = c->guest;

	c->to.channel = -1;
	if (!is_area_ref(uri) || !g->nchannels)
		return;
	uint64_t off = uri & ~PICO_AREA_REF_MASK;
	if (off < PICO_AREA_SLOTS_OFFSET)
		return;
	uint64_t slot = (off - PICO_AREA_SLOTS_OFFSET) / PICO_AREA_SLOT_SIZE;
	if (slot >= (uint64_t)g->nchannels)
		return;
	memcpy(head, g->area + PICO_AREA_SLOTS_OFFSET + slot * PICO_AREA_SLOT_SIZE, sizeof(head));
	if (head[0] != PICO_AREA_FD_VIA_CHANNEL)
		return;
	c->to.channel = (int)slot;
	c->to.tag = head[1];
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
	channel_requested(c, ARG(0));
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
			c->to.cloexec = !!(flags & O_CLOEXEC);
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
			c->to.cloexec = !!(flags & O_CLOEXEC);
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
			c->to.cloexec = !!(flags & O_CLOEXEC);
			return 0;
		}
		if (ret == -EINPROGRESS && fd >= 0) {
			c->install_fd = fd;
			c->to.cloexec = !!(flags & O_CLOEXEC);
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
		c->to.cloexec = !!(flags & O_CLOEXEC);
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
		c->to.cloexec = !!(flags & O_CLOEXEC);
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
		c->to.cloexec = !!(arg1 & IN_CLOEXEC);
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
static int send_answer(struct guest *g, uint64_t id, long ret)
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

/* ---------------------------------------------------------------------- */
/* Handing fds back                                                        */
/*
 * NOTIF_ADDFD + SECCOMP_ADDFD_FLAG_SEND installs the fd and answers in one
 * step, but the kernel wakes the guest for it with a plain wake-up, not the
 * synchronous one NOTIF_SEND gives: with the server running, the scheduler
 * puts the guest on an idle CPU, and the server sleeps until the guest has
 * taken the fd and is woken back the same way.  Where idle CPUs halt (a VM)
 * each of those wake-ups is slow (docs/PERFORMANCE.md has the numbers).  A guest with a library
 * OS therefore asks for its fds on a channel (abi_v1.toml, "The argument
 * area"): the server sends the fd on it, which wakes nobody (the caller is
 * blocked in its call, not in recvmsg), then answers with NOTIF_SEND, and
 * the caller receives it: no wake-up but the synchronous one.
 *
 * Race-free for a guest with many threads and processes: each call has its
 * own slot and so its own channel, and its fd carries the call's tag, so
 * another call's fd is never taken for it (what an abandoned call left
 * behind is closed by the next call of that slot).  The monitor keeps no
 * copy: the fd is the guest's as soon as it is sent (if the guest never
 * takes it, it is closed with the guest's end of the channel).  The
 * monitor's end has a minimal send buffer and refuses to read, so a guest
 * can neither make the monitor hold many fds in flight for it nor send
 * anything to the monitor; when the channel is full (a guest that does not
 * take its fds), or the guest did not ask, the fd goes by NOTIF_ADDFD. */

/* Sends fd with the tag on the guest's channel: 0 or -errno. */
static int send_on_channel(struct guest *g, int channel, uint32_t tag, int fd)
{
	char cbuf[CMSG_SPACE(sizeof(int))];
	struct iovec iov = {&tag, sizeof(tag)};
	struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof(cbuf)};
	struct cmsghdr *h = CMSG_FIRSTHDR(&m);

	memset(cbuf, 0, sizeof(cbuf));
	h->cmsg_level = SOL_SOCKET;
	h->cmsg_type = SCM_RIGHTS;
	h->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(h), &fd, sizeof(fd));
	return sendmsg(g->channels[channel], &m, MSG_DONTWAIT | MSG_NOSIGNAL) == (ssize_t)sizeof(tag) ? 0 : -errno;
}

/* Installs fd in the guest (as its call, notification id, asked) and
 * answers.  Returns what was answered (the guest's fd number, or
 * PICO_FD_ON_CHANNEL), -ECANCELED (gone), or -errno after having answered
 * the guest with it (EMFILE: the guest's fd table is full). */
static long deliver_fd(struct guest *g, uint64_t id, const struct delivery *to, int fd)
{
	if (to->channel >= 0 && to->channel < g->nchannels && send_on_channel(g, to->channel, to->tag, fd) == 0) {
		BUMP(g->loop->fds_on_channel);
		/* Gone meanwhile: the fd waits on the channel, and the next
		 * call of that slot closes it. */
		return send_answer(g, id, (long)PICO_FD_ON_CHANNEL) < 0 ? -ECANCELED : (long)PICO_FD_ON_CHANNEL;
	}
	struct seccomp_notif_addfd addfd = {
		.id = id,
		.flags = SECCOMP_ADDFD_FLAG_SEND,
		.srcfd = (uint32_t)fd,
		.newfd = 0,
		.newfd_flags = to->cloexec ? O_CLOEXEC : 0,
	};
	BUMP(g->loop->fds_by_addfd);
	long ret = ioctl(g->listener, SECCOMP_IOCTL_NOTIF_ADDFD, &addfd);
	if (ret >= 0)
		return ret;
	int err = errno;
	if (err == ENOENT)
		return -ECANCELED;
	/* Not installed: the call is still pending; answer it. */
	if (send_answer(g, id, -err) < 0)
		return -ECANCELED;
	return -err;
}

static void account(struct guest *g, struct pico_audit_record *rec)
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

static int defer_connect(struct guest *g, int fd, uint64_t notif_id, pid_t tid, const struct delivery *to,
			 const struct pico_audit_record *rec);
static int gn_submit(struct guest *g, struct call *c);

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
	c.gone = c.denied = c.deferred = c.own = c.own_nonblock = 0;
	c.install_fd = -1;
	c.to.channel = -1;
	c.to.tag = 0;
	c.to.cloexec = 0;
	c.rec.guest = handle_of(g->idx, g->gen);
	c.rec.pid = (int32_t)n->pid;

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
	finish_record(&c.rec, ret, c.denied);
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
/* Connects in progress                                                    */

static int defer_connect(struct guest *g, int fd, uint64_t notif_id, pid_t tid, const struct delivery *to,
			 const struct pico_audit_record *rec)
{
	unsigned int i;

	for (i = 0; i < PICO_LOOP_GUEST_CONNECTS; i++)
		if (!g->connects[i].in_use)
			break;
	if (i == PICO_LOOP_GUEST_CONNECTS)
		return -EAGAIN;
	/* Each connect in progress is a socket the monitor holds for the
	 * guest: PICO_LOOP_GUEST_CONNECTS of them at once (the array). */
	struct pending_connect *pc = &g->connects[i];
	struct epoll_event ev = {.events = EPOLLOUT, .data.u64 = EV_DATA(EV_CONNECT, i)};
	if (epoll_ctl(g->epfd, EPOLL_CTL_ADD, fd, &ev) < 0)
		return -errno;
	pc->in_use = 1;
	pc->fd = fd;
	pc->notif_id = notif_id;
	pc->tid = tid;
	pc->to = *to;
	pc->rec = *rec;
	if (++g->nconnects > g->stats.connects_peak)
		__atomic_store_n(&g->stats.connects_peak, g->nconnects, __ATOMIC_RELAXED);
	BUMP(g->loop->pending_connects);
	return 0;
}

static void drop_connect(struct guest *g, struct pending_connect *pc)
{
	epoll_ctl(g->epfd, EPOLL_CTL_DEL, pc->fd, NULL);
	close(pc->fd);
	pc->in_use = 0;
	g->nconnects--;
	DROP(g->loop->pending_connects);
}

static void finish_connect(struct guest *g, uint32_t idx)
{
	if (idx >= PICO_LOOP_GUEST_CONNECTS || !g->connects[idx].in_use)
		return;
	struct pending_connect *pc = &g->connects[idx];
	long ret;

	if (g->listener < 0) {
		drop_connect(g, pc);
		return;
	}
	ret = pico_net_finish(pc->fd);
	if (ret == -EINPROGRESS)
		return; /* not yet: wait for the next EPOLLOUT */
	if (ret == 0)
		ret = deliver_fd(g, pc->notif_id, &pc->to, pc->fd);
	else if (send_answer(g, pc->notif_id, ret) < 0)
		ret = -ECANCELED;
	finish_record(&pc->rec, ret, 0);
	account(g, &pc->rec);
	drop_connect(g, pc);
}

static void drop_connects(struct guest *g)
{
	for (unsigned int i = 0; i < PICO_LOOP_GUEST_CONNECTS; i++)
		if (g->connects[i].in_use)
			drop_connect(g, &g->connects[i]);
}

/* ---------------------------------------------------------------------- */
/* Sockets of the guest's own network (guestnet.h)                         */

/* Sends the call's request to the guest's helper and queues the call: 0,
 * or -errno to answer the guest with now. */
static int gn_submit(struct guest *g, struct call *c)
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
	p->to = c->to;
	p->nonblock = c->own_nonblock;
	p->req = c->own_req;
	p->rec = c->rec;
	g->gn_count++;
	BUMP(g->loop->guestnet_pending);
	return 0;
}

/* Answers a call the helper has answered: the socket handed to the guest, a
 * connect still under way deferred like a host one, or the errno. */
static void gn_answer(struct guest *g, struct gn_pending *p, int err, int fd)
{
	long ret;

	if (fd >= 0 && err == EINPROGRESS) {
		ret = pico_net_adopt_connecting(fd, &p->req, p->nonblock);
		if (ret == -EINPROGRESS && defer_connect(g, fd, p->notif_id, p->tid, &p->to, &p->rec) == 0)
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
		ret = deliver_fd(g, p->notif_id, &p->to, fd);
		close(fd);
	} else {
		ret = -(err ? err : EPROTO);
		if (send_answer(g, p->notif_id, ret) < 0)
			ret = -ECANCELED;
	}
	finish_record(&p->rec, ret, 0);
	account(g, &p->rec);
}

/* The helper is gone (or broke the protocol): its waiting calls fail. */
static void gn_close(struct guest *g)
{
	if (g->gn_fd >= 0) {
		epoll_ctl(g->epfd, EPOLL_CTL_DEL, g->gn_fd, NULL);
		close(g->gn_fd);
		g->gn_fd = -1;
	}
	while (g->gn_count) {
		struct gn_pending *p = &g->gn_q[g->gn_head];
		g->gn_head = (g->gn_head + 1) % g->gn_cap;
		g->gn_count--;
		DROP(g->loop->guestnet_pending);
		long ret = -ENETDOWN;
		if (g->listener < 0 || send_answer(g, p->notif_id, ret) < 0)
			ret = -ECANCELED;
		finish_record(&p->rec, ret, 0);
		account(g, &p->rec);
	}
	free(g->gn_q);
	g->gn_q = NULL;
	g->gn_cap = g->gn_head = 0;
}

/* The helper's channel is readable (or hung up): answers what it replied. */
static void gn_ready(struct guest *g, uint32_t events)
{
	if (g->gn_fd < 0)
		return;
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
			gn_close(g);
			return;
		}
		struct gn_pending p = g->gn_q[g->gn_head];
		g->gn_head = (g->gn_head + 1) % g->gn_cap;
		g->gn_count--;
		DROP(g->loop->guestnet_pending);
		gn_answer(g, &p, rep.err, fd);
	}
	if (events & (EPOLLHUP | EPOLLERR))
		gn_close(g);
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

/* The monitor's mapping of a guest's area, after checking that the fd is
 * an area (a memfd of the right size that can neither shrink nor grow: a
 * mapping of it never faults).  NULL with errno set otherwise. */
static unsigned char *map_area(int fd)
{
	struct stat st;
	int seals = fcntl(fd, F_GET_SEALS);
	int need = F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL;
	if (seals < 0 || (seals & need) != need || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) ||
	    st.st_size != PICO_AREA_SIZE) {
		errno = EINVAL;
		return NULL;
	}
	void *p = mmap(NULL, PICO_AREA_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	return p == MAP_FAILED ? NULL : p;
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
/* Argument areas                                                          */

int pico_area_make(int n, int *area_fd, int *guest_ends, int *monitor_ends)
{
	int made = 0, memfd;

	if (n < 0 || n > PICO_AREA_SLOTS)
		return -EINVAL;
	memfd = memfd_create("picoproc-area", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (memfd < 0)
		return -errno;
	if (ftruncate(memfd, PICO_AREA_SIZE) < 0 ||
	    fcntl(memfd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) < 0)
		goto fail;
	for (; made < n; made++) {
		int sv[2];
		/* The minimal send buffer: a guest that never takes its fds
		 * makes the monitor fall back to NOTIF_ADDFD after one or two,
		 * instead of holding many in flight for it. */
		int one = 1;
		if (socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, sv) < 0)
			goto fail;
		if (setsockopt(sv[1], SOL_SOCKET, SO_SNDBUF, &one, sizeof(one)) < 0 || shutdown(sv[1], SHUT_RD) < 0) {
			close(sv[0]);
			close(sv[1]);
			goto fail;
		}
		guest_ends[made] = sv[0];
		monitor_ends[made] = sv[1];
	}
	*area_fd = memfd;
	return 0;
fail:;
	int err = -errno;
	while (made-- > 0) {
		close(guest_ends[made]);
		close(monitor_ends[made]);
	}
	close(memfd);
	return err;
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
		for (unsigned int i = 0; i < l->max_guests; i++) {
			struct guest *g = l->guests[i];
			if (g && g->started) {
				pthread_mutex_unlock(&l->lock);
				stop_server(g);
				pthread_mutex_lock(&l->lock);
			}
		}
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
	for (unsigned int i = 0; i < l->max_guests; i++) {
		struct guest *g = l->guests[i];
		if (g && g->started) {
			pthread_mutex_unlock(&l->lock);
			stop_server(g);
			pthread_mutex_lock(&l->lock);
		}
	}
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
