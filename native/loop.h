/* The monitor's event loop: serves the mediated calls of many picoprocesses.
 *
 * One loop thread waits (epoll) on the seccomp user-notification listener of
 * every guest.  For each notification it copies the arguments out of the
 * guest (process_vm_readv, bounded; SECCOMP_IOCTL_NOTIF_ID_VALID after every
 * read), checks them, performs the call itself against the guest's policy
 * and answers: a value or -errno (NOTIF_SEND), or a new fd installed and
 * answered atomically (NOTIF_ADDFD + SECCOMP_ADDFD_FLAG_SEND).  It never
 * answers with SECCOMP_USER_NOTIF_FLAG_CONTINUE: the guest's own call never
 * runs.
 *
 * The loop runs in a Python thread with the GIL released (pico_loop_run
 * blocks until pico_loop_stop).  Guests are added and removed from any
 * thread: the request is queued, the loop is woken through an eventfd and the
 * caller waits until the loop thread has carried it out, so only the loop
 * thread ever touches a guest while it runs.  Each call leaves an audit
 * record in a ring that Python drains in batches.
 *
 * File operations run under the guest's identity: the loop thread sets its
 * own fsuid, fsgid and supplementary groups (raw system calls: per thread)
 * and its own umask of 0 (the library OS applied the guest's) when it
 * starts.
 *
 * Direct mode: while exactly one guest is live the loop blocks in
 * NOTIF_RECV on its listener rather than in epoll_wait, because only a
 * receiver blocked in NOTIF_RECV gets the synchronous (same-CPU) wake-up of
 * SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP.  To interrupt it (a command, stop) the
 * loop sends its own thread SIGRTMIN+3, for which it installs a do-nothing
 * handler when the process has none (otherwise direct mode is off).
 *
 * Steering: around the NOTIF_ADDFD that answers an open, the loop may
 * narrow the calling thread's CPU affinity to its own CPU for a few
 * microseconds, so that the kernel's wake-up of the guest stays on that CPU
 * (ADDFD has no synchronous wake-up); it gives the mask back and undoes
 * what the thread's children inherited (loop.c, "Keeping ADDFD's wake-up on
 * the loop's CPU"; PICOPROC_STEER=never turns it off).
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
	uint64_t steered;	 /* fd installs done with the caller's CPU narrowed ("steering") */
	uint64_t steer_repaired; /* tasks created in a steering window whose mask the loop gave back */
	int32_t guests;		 /* guests registered (alive or not yet removed) */
	int32_t sync_wakeup;	 /* SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP accepted by the kernel */
	int32_t running;
	int32_t pending_connects;
	int32_t guestnet_pending; /* calls waiting for a guest's socket helper */
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
/* Serves the guest whose listener is listener_fd (the loop keeps its own
 * duplicate).  fs: its file policy, net: its network policy (struct
 * pico_net_policy *, or NULL: nothing granted); both must outlive the
 * guest's registration.  guestnet_fd: the channel to the socket helper of
 * the guest's own network (spawn's result; the loop keeps a duplicate), or
 * -1: no own network (what it would serve is refused as not granted).
 * Returns a handle (> 0) or -errno (ENOSPC: max_guests). */
int64_t pico_loop_add_guest(struct pico_loop *loop, int listener_fd, int32_t pid,
			    const struct pico_fs_policy *fs, const void *net, int guestnet_fd);
/* The same, with the guest's /proc (native/procview.h): proc_fd an fd on
 * a procfs of its pid namespace (spawn's proc_fd), listing_fd a directory
 * where the monitor builds listings; either may be -1 (the loop keeps its
 * own duplicates). */
int64_t pico_loop_add_guest_view(struct pico_loop *loop, int listener_fd, int32_t pid,
				 const struct pico_fs_policy *fs, const void *net, int guestnet_fd,
				 int proc_fd, int listing_fd);
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
