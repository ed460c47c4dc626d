/* The monitor's serving threads, inside: what the loop (loop.c), the
 * per-call handlers (serve.c, serve_paths.c, serve_task.c), the argument
 * copying and fd hand-back (args.c) and the calls answered later (queue.c)
 * share.  Private to native/: nothing here is part of the C interface
 * Python sees (that is loop.h).
 *
 * One server thread serves one guest from the notification to the answer:
 * everything a `struct call` holds belongs to that thread. */
#ifndef PICO_SERVE_H
#define PICO_SERVE_H
#include <errno.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <stdint.h>
#include <sys/types.h>

#include "guestnet.h"
#include "loop.h"
#include "net.h"
#include "picoproc_abi.h"
#include "procview.h"

#pragma GCC visibility push(hidden)

/* epoll data of a server: what an event is about (the index of a connect). */
enum ev_kind { EV_WAKE = 0, EV_LISTENER = 1, EV_CONNECT = 2, EV_GUESTNET = 3 };
#define EV_DATA(kind, idx) (((uint64_t)(kind) << 32) | (uint32_t)(idx))
#define EV_KIND(d) ((int)((d) >> 32))
#define EV_IDX(d) ((uint32_t)(d))

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
/* ---------------------------------------------------------------------- */
/* One mediated call                                                       */

struct call {
	struct guest *guest;
	const struct seccomp_notif *n;
	struct pico_audit_record rec;
	int gone;	  /* the notification is no longer valid: do not answer */
	int install_fd;	  /* >= 0: answer by handing this fd to the guest */
	struct delivery to;
	int deferred;	  /* answered later (a connect in progress) */
	int own;	  /* answered later: own_req goes to the guest's socket helper */
	int own_nonblock;
	struct pico_gn_request own_req;
};

#define ARG(i) (c->n->data.args[i])

static inline int is_area_ref(uint64_t addr)
{
	return (addr & PICO_AREA_REF_MASK) == PICO_AREA_REF;
}

/* An int / unsigned int argument: the upper half of the register must be 0
 * (or the sign extension of a negative int where one is meaningful). */
static inline int int_arg(uint64_t v, uint32_t *out)
{
	if (v >> 32)
		return -EINVAL;
	*out = (uint32_t)v;
	return 0;
}

/* ---- loop.c: answering ---- */

/* Answers with a value or -errno.  Returns 0, or -ECANCELED when the
 * notification had gone (the guest was killed or interrupted). */
int send_answer(struct guest *g, uint64_t id, long ret);
/* Fills in the decision of a call answered with ret (denied: its PICO_DENY_*
 * reason, pico_denial for a call answered now, 0 when the refusal was not a
 * policy decision). */
void finish_record(struct pico_audit_record *rec, long ret, int denied);
/* Counts the call for its guest and queues its audit record when one is due. */
void account(struct guest *g, struct pico_audit_record *rec);

/* ---- serve.c: the handlers ---- */

/* A handler serves one mediated call: it copies its arguments (args.c),
 * performs it and returns the value to answer or -errno; a new fd is left
 * in c->install_fd.  scratch: 2 * (PICO_MAX_URI + 1) bytes, the URI or
 * first path in the first half. */
typedef long (*serve_fn)(struct call *c, char *scratch);
/* Indexed by mediated call number minus PICO_MEDIATED_BASE. */
extern const serve_fn serve_table[PICO_MEDIATED_COUNT];

/* serve_paths.c: the calls on a path of the guest's file system. */
long serve_stat(struct call *c, char *path);
long serve_readlink(struct call *c, char *path);
long serve_access(struct call *c, char *path);
long serve_mkdir(struct call *c, char *path);
long serve_mknod(struct call *c, char *path);
long serve_xattr(struct call *c, char *path);
long serve_unlink(struct call *c, char *path);
long serve_rename(struct call *c, char *path);
long serve_link(struct call *c, char *path);
long serve_symlink(struct call *c, char *path);
long serve_chmod(struct call *c, char *path);
long serve_chown(struct call *c, char *path);
long serve_utimens(struct call *c, char *path);
long serve_truncate(struct call *c, char *path);
long serve_statfs(struct call *c, char *path);

/* serve_task.c: the calls on the guest's own processes, terminals and
 * inotify instances. */
long serve_tty_ioctl(struct call *c, char *scratch);
long serve_inotify(struct call *c, char *path);
long serve_task_info(struct call *c, char *scratch);
/* pico_open("pid:N"): a pidfd of the caller's own process N (text: a
 * buffer of cap bytes). */
long open_pidfd(struct call *c, const char *num, int flags, char *text, size_t cap);
/* A copy of the caller's fd (pidfd_getfd: the same open file), or -errno. */
int copy_guest_fd(struct call *c, int fd);

/* ---- args.c: arguments in, results and fds out ---- */

int still_valid(struct call *c);
int guest_read(struct call *c, uint64_t addr, void *buf, size_t len);
int guest_write(struct call *c, uint64_t addr, const void *buf, size_t len);
int fetch_string(struct call *c, uint64_t addr, uint64_t len, size_t max, char *buf, int second);
void channel_requested(struct call *c, uint64_t uri);
long deliver_fd(struct guest *g, uint64_t id, const struct delivery *to, int fd);
unsigned char *map_area(int fd);

/* ---- queue.c: calls answered later ---- */

int defer_connect(struct guest *g, int fd, uint64_t notif_id, pid_t tid, const struct delivery *to,
		  const struct pico_audit_record *rec);
void finish_connect(struct guest *g, uint32_t idx);
void drop_connects(struct guest *g);
int gn_submit(struct guest *g, struct call *c);
void gn_close(struct guest *g);
void gn_ready(struct guest *g, uint32_t events);

#pragma GCC visibility pop

#endif
