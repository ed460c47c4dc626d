/* The monitor's loop: serves the mediated calls of many picoprocesses.
 *
 * Every guest has a serving thread of its own, blocked in
 * SECCOMP_IOCTL_NOTIF_RECV on the guest's seccomp listener: the only kind
 * of wait the kernel's synchronous wake-up (SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP)
 * applies to, so a call and its answer each switch between the guest and its
 * server on one CPU instead of waking another.  The kernel's scheduler then
 * runs as many servers at once as there are CPUs, shares them fairly between
 * guests (one guest's flood or slow call occupies its own server, never
 * another's), and each server's CPU time is exactly what its guest cost.
 * While a guest has connects in progress or calls waiting for its socket
 * helper, its server waits in epoll instead (listener, sockets, helper).
 *
 * For each notification the server copies the arguments, once, into its own
 * memory: from the guest's argument area (a sealed memfd both map; see
 * "The argument area", abi/abi_v1.toml) when they are area references, else
 * out of the calling process (process_vm_readv, bounded, with
 * SECCOMP_IOCTL_NOTIF_ID_VALID after every read); checks them; performs the
 * call itself against the guest's policy; and answers: a value or -errno
 * (NOTIF_SEND), or a new fd, sent on the caller's channel (an AF_UNIX socket
 * the guest holds) with NOTIF_SEND answering PICO_FD_ON_CHANNEL when the
 * call asked for that, else installed and answered atomically (NOTIF_ADDFD +
 * SECCOMP_ADDFD_FLAG_SEND).  It never answers with
 * SECCOMP_USER_NOTIF_FLAG_CONTINUE: the guest's own call never runs.
 *
 * pico_loop_run runs in a Python thread with the GIL released and blocks
 * until pico_loop_stop; it starts the servers of the guests added before it
 * ran, and pico_loop_add_guest starts one while it runs.  Each server sets
 * its own fsuid, fsgid, supplementary groups (raw system calls: per thread)
 * and a private umask of 0 (the library OS applied the guest's) when it
 * starts, blocks every signal but SIGRTMIN+3, with which it is interrupted
 * in NOTIF_RECV (for that the loop installs a do-nothing handler when the
 * process has none; otherwise servers always wait in epoll).
 *
 * Allowed calls are counted per guest; an audit record is made for every
 * call that was not allowed, and for allowed ones only when the guest was
 * added with audit_allowed (an audit sink wants them).  Records go to a
 * ring that Python drains in batches.
 *
 * Audit decisions: allow (answered with success), deny (refused by the
 * policy: outside the manifest, hidden, read-only mount, exec not allowed,
 * network not granted; the record's reason names the rule), error (the call failed for another reason: bad
 * arguments, or the host said no, e.g. ENOENT or permission bits), abandoned
 * (the caller was killed before the answer; the operation may have
 * happened). */
#ifndef PICO_LOOP_H
#define PICO_LOOP_H
#include <stddef.h>
#include <stdint.h>

#include "mediate_fs.h"
#include "picoproc_abi.h"

/* cffi:begin */
#define PICO_AUDIT_TEXT 256

#define PICO_DECISION_ALLOW 0
#define PICO_DECISION_DENY 1
#define PICO_DECISION_ERROR 2

/* Answered before the guest's call completed: the guest was killed or the
 * notification became invalid (the record's err is ECANCELED). */
#define PICO_DECISION_ABANDONED 3

struct pico_audit_record {
	uint64_t time_ns;   /* CLOCK_REALTIME when the call was answered */
	int64_t guest;	    /* the handle pico_loop_add_guest returned */
	int32_t pid;	    /* the calling thread, as the monitor sees it */
	int32_t call;	    /* mediated call number minus PICO_MEDIATED_BASE, -1 if unknown */
	int16_t decision;   /* PICO_DECISION_* */
	int16_t reason;	    /* deny: why (denial.h, PICO_DENY_*); 0 otherwise */
	int32_t err;	    /* errno answered (0 when allowed) */
	int64_t result;	    /* value answered (the guest's fd number for open) */
	int64_t arg;	    /* flags / mode of the call; note_unsupported: the Linux number */
	int64_t arg2;	    /* note_unsupported: its first argument */
	uint32_t text_len;  /* bytes of text kept (at most PICO_AUDIT_TEXT) */
	uint32_t text_full; /* the URI or path length the guest passed */
	uint32_t text2_len; /* second path: rename/link new name, symlink target */
	uint32_t text2_full;
	char text[PICO_AUDIT_TEXT];  /* the bytes the monitor used, not NUL-terminated */
	char text2[PICO_AUDIT_TEXT];
};

/* Connects in progress one guest may have the monitor hold at once (a
 * socket each), and host tcp.srv: listeners (a host port each) it may be
 * given in its life; past them a connect answers EAGAIN, a listen EMFILE.
 * (Its udp: relays are bounded by its network policy, net.h.) */
#define PICO_LOOP_GUEST_CONNECTS 32
#define PICO_LOOP_GUEST_LISTENERS 1024
/* The last 1/this of the audit ring is kept for guests holding less than
 * that much of it: a guest flooding the monitor with calls loses its own
 * records, not the others'. */
#define PICO_LOOP_AUDIT_SHARE_DIVISOR 4

struct pico_guest_stats {
	int64_t handle;
	int32_t pid;
	int32_t alive;	    /* 0 once every process of the guest is gone (listener hung up) */
	uint64_t calls;
	uint64_t allowed;
	uint64_t denied;
	uint64_t errors;
	uint64_t abandoned;
	uint64_t monitor_cpu_ns; /* monitor CPU spent serving the guest (loop and udp: relays) */
	uint64_t audit_dropped;	 /* its records lost: the ring, or its share of it, was full */
	uint32_t connects_peak;	 /* most connects in progress at once */
	uint32_t listeners;	 /* host tcp.srv: listeners given */
};

struct pico_loop_counters {
	uint64_t notifications;
	uint64_t abandoned;
	uint64_t audit_dropped;	 /* records lost because the ring was full */
	uint64_t recv_errors;	 /* NOTIF_RECV failures other than a vanished caller */
	uint64_t fds_on_channel; /* fds handed back on a guest's channel */
	uint64_t fds_by_addfd;	 /* fds installed with NOTIF_ADDFD */
	uint64_t area_calls;	 /* calls whose arguments came from the argument area */
	uint64_t fs_lookups;	 /* host path lookups (openat2) the calls made */
	int32_t guests;		 /* guests registered (alive or not yet removed) */
	int32_t servers;	 /* serving threads running */
	int32_t sync_wakeup;	 /* SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP accepted by the kernel */
	int32_t running;
	int32_t pending_connects;
	int32_t guestnet_pending; /* calls waiting for a guest's socket helper */
};

/* Connects in progress one guest may have the monitor hold at once (a
 * socket each); past it a connect answers EAGAIN. */
#define PICO_LOOP_GUEST_CONNECTS 32

/* How a guest is served (pico_loop_add_guest). */
struct pico_guest_spec {
	int listener_fd;	/* its seccomp listener (the loop keeps a duplicate) */
	int32_t pid;
	const struct pico_fs_policy *fs; /* its file policy; outlives the registration */
	const void *net;	/* struct pico_net_policy *, or NULL: nothing granted */
	int guestnet_fd;	/* channel to the socket helper of its own network, or -1 */
	int area_fd;		/* its argument area (pico_area_make), or -1: none */
	const int *channel_fds; /* the monitor's ends of its channels, n_channels of them */
	int n_channels;
	int audit_allowed;	/* 1: an audit record for allowed calls too */
	int proc_fd;		/* a procfs of its pid namespace (spawn's proc_fd), or -1 */
	int listing_fd;		/* a directory where the monitor builds its /proc listings, or -1 */
};

struct pico_loop;

/* max_guests: how many guests may be registered at once; audit_capacity:
 * records the ring holds before it drops.  NULL on failure (errno set). */
struct pico_loop *pico_loop_new(unsigned int max_guests, unsigned int audit_capacity);
/* Frees the loop (must not be running); closes every guest's listener copy. */
void pico_loop_free(struct pico_loop *loop);
/* Serves until pico_loop_stop.  fsuid/fsgid/groups: the guests' identity for
 * file operations (the calling thread's own; restored before returning).
 * Returns 0, or -errno (EBUSY: already running; EPERM: identity refused). */
int pico_loop_run(struct pico_loop *loop, uint32_t fsuid, uint32_t fsgid, const uint32_t *groups,
		  size_t ngroups);
/* 1 once pico_loop_run serves, 0 on timeout, or the -errno it failed with. */
int pico_loop_wait_running(struct pico_loop *loop, int timeout_ms);
void pico_loop_stop(struct pico_loop *loop);
/* Serves a guest (struct pico_guest_spec: the loop keeps duplicates of its
 * fds and maps its area).  Returns a handle (> 0) or -errno (ENOSPC:
 * max_guests; EINVAL: a bad area or spec; EAGAIN: no thread for it). */
int64_t pico_loop_add_guest(struct pico_loop *loop, const struct pico_guest_spec *spec);
/* The argument area of a new picoprocess: a sealed memfd of PICO_AREA_SIZE
 * bytes (it can neither shrink nor grow) in *area_fd, and for each of its
 * n slots (at most PICO_AREA_SLOTS) an AF_UNIX datagram socket pair: the
 * guest's ends in guest_ends (spawn places them at PICO_CHANNEL_FD + k),
 * the monitor's in monitor_ends (pico_guest_spec; it sends fds and never
 * reads).  Every fd is close-on-exec and the caller's.  0 or -errno. */
int pico_area_make(int n, int *area_fd, int *guest_ends, int *monitor_ends);
/* Stops serving the guest (its pending calls fail with ENOSYS as the
 * listener closes) and returns its final counts.  0 or -ENOENT. */
int pico_loop_remove_guest(struct pico_loop *loop, int64_t handle, struct pico_guest_stats *out);
int pico_loop_guest_stats(struct pico_loop *loop, int64_t handle, struct pico_guest_stats *out);
/* Moves up to max records (oldest first) into out; returns how many. */
size_t pico_loop_drain_audit(struct pico_loop *loop, struct pico_audit_record *out, size_t max);
/* The name of mediated call index (number minus PICO_MEDIATED_BASE), from
 * the ABI header the loop is built with; NULL past the last one. */
const char *pico_mediated_call_name(int index);
/* An eventfd that becomes readable when the audit ring is half full. */
int pico_loop_audit_eventfd(struct pico_loop *loop);
void pico_loop_get_counters(struct pico_loop *loop, struct pico_loop_counters *out);
/* cffi:end */

#endif
