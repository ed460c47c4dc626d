/* Kernel feature probes for `picoproc doctor` (sandbox/doctor.py).
 *
 * Each probe exercises the feature for real, the way the monitor will use
 * it (a child installs a filter, the parent answers its notification, a
 * child unshares a namespace and uses it, ...), rather than guessing from
 * the kernel version.  Every probe finishes within its timeout even when the
 * feature is missing or misbehaves: children are killed and reaped on every
 * path, and every fd a probe opens is closed before it returns.
 *
 * A probe returns 1 when the feature works, 0 when it does not; either way
 * `out` says where it stopped (step), the errno seen there (err, 0 when the
 * failure was a wrong value rather than an error) and a probe-specific value
 * (the Landlock ABI version, the value the child saw, ...).  The Python side
 * turns that into the one-line "why". */
#ifndef PICO_PROBE_H
#define PICO_PROBE_H

/* cffi:begin */
/* Where a probe stopped: PICO_PROBE_STEP_DONE when every step succeeded. */
#define PICO_PROBE_STEP_DONE 0
#define PICO_PROBE_STEP_SETUP 1          /* parent-side pipes/sockets/files */
#define PICO_PROBE_STEP_FORK 2           /* creating the probe child */
#define PICO_PROBE_STEP_NO_NEW_PRIVS 3   /* prctl(PR_SET_NO_NEW_PRIVS) in the child */
#define PICO_PROBE_STEP_INSTALL_FILTER 4 /* seccomp(SECCOMP_SET_MODE_FILTER, flags) */
#define PICO_PROBE_STEP_FILTER_EFFECT 5  /* the filter did not act as installed */
#define PICO_PROBE_STEP_PASS_LISTENER 6  /* sending/receiving the listener fd */
#define PICO_PROBE_STEP_SET_FLAGS 7      /* SECCOMP_IOCTL_NOTIF_SET_FLAGS */
#define PICO_PROBE_STEP_WAIT_NOTIF 8     /* poll() on the listener for the notification */
#define PICO_PROBE_STEP_RECV_NOTIF 9     /* SECCOMP_IOCTL_NOTIF_RECV */
#define PICO_PROBE_STEP_NOTIF_CONTENT 10 /* notification names another call or pid */
#define PICO_PROBE_STEP_SIGNAL 11        /* the call was abandoned on a non-fatal signal */
#define PICO_PROBE_STEP_ADDFD 12         /* SECCOMP_IOCTL_NOTIF_ADDFD + ADDFD_FLAG_SEND */
#define PICO_PROBE_STEP_SEND 13          /* SECCOMP_IOCTL_NOTIF_SEND */
#define PICO_PROBE_STEP_CHILD_RESULT 14  /* the child saw a result other than the answer */
#define PICO_PROBE_STEP_CHILD_DIED 15    /* the child ended without reporting (value: wait status) */
#define PICO_PROBE_STEP_TIMEOUT 16       /* the child did not finish in time (killed) */
#define PICO_PROBE_STEP_NS_BEFORE 17     /* stat(/proc/self/ns/X) before unshare */
#define PICO_PROBE_STEP_UNSHARE 18       /* unshare(CLONE_NEW*) */
#define PICO_PROBE_STEP_NS_UNCHANGED 19  /* /proc/self/ns/X is the same after unshare */
#define PICO_PROBE_STEP_NS_USE 20        /* the privileged use inside the new namespace */
#define PICO_PROBE_STEP_SYSCALL 21       /* the system call under test failed */
#define PICO_PROBE_STEP_WRONG_RESULT 22  /* ...or returned something unexpected */

/* Which notification feature pico_probe_notif() exercises. */
#define PICO_PROBE_NOTIF_PLAIN 0         /* NEW_LISTENER, RECV, SEND */
#define PICO_PROBE_NOTIF_ADDFD_SEND 1    /* answered with NOTIF_ADDFD + ADDFD_FLAG_SEND */
#define PICO_PROBE_NOTIF_SYNC_WAKE_UP 2  /* NOTIF_SET_FLAGS(USER_NOTIF_FD_SYNC_WAKE_UP) first */
#define PICO_PROBE_NOTIF_WAIT_KILLABLE 3 /* FILTER_FLAG_WAIT_KILLABLE_RECV, SIGUSR1 after RECV */
/* Self-test of the deadline path: the notification is received but never
 * answered, so the child must be killed at the deadline (step TIMEOUT). */
#define PICO_PROBE_NOTIF_UNANSWERED 4

/* Namespaces pico_probe_namespace() can create. */
#define PICO_PROBE_NS_USER 1
#define PICO_PROBE_NS_PID 2
#define PICO_PROBE_NS_MOUNT 3
#define PICO_PROBE_NS_NET 4
#define PICO_PROBE_NS_IPC 5
#define PICO_PROBE_NS_UTS 6
/* pico_probe_namespace() value: how the namespace could be created. */
#define PICO_PROBE_NS_DIRECT 1           /* unshare(CLONE_NEWX) alone */
#define PICO_PROBE_NS_VIA_USERNS 2       /* only together with CLONE_NEWUSER */

/* pico_probe_openat2_beneath() value bits: what RESOLVE_* behaved as documented. */
#define PICO_PROBE_OPENAT2_BENEATH 1      /* "." opens, ".." and "/" give EXDEV */
#define PICO_PROBE_OPENAT2_NO_MAGICLINKS 2 /* proc/self/exe gives ELOOP */

/* pico_probe_close_range() value bits. */
#define PICO_PROBE_CLOSE_RANGE_CLOSE 1
#define PICO_PROBE_CLOSE_RANGE_CLOEXEC 2

/* The getppid() answer the notification probes send back. */
#define PICO_PROBE_NOTIF_ANSWER 24301

struct pico_probe_result {
	int step;        /* PICO_PROBE_STEP_* where the probe stopped */
	int err;         /* errno at that step, 0 if the failure was a wrong value */
	long long value; /* probe-specific, see each probe */
};

/* A child installs a filter that answers getppid() with ERRNO(EDOM) and
 * checks that it does. */
int pico_probe_seccomp_filter(int timeout_ms, struct pico_probe_result *out);
/* A child installs a filter with SECCOMP_FILTER_FLAG_NEW_LISTENER that sends
 * getppid() to user notification, passes the listener fd back, and calls
 * getppid(); this process answers as `feature` says.  value: what the child's
 * getppid() returned (for ADDFD_SEND: the fd number it received). */
int pico_probe_notif(int feature, int timeout_ms, struct pico_probe_result *out);
/* landlock_create_ruleset(NULL, 0, LANDLOCK_CREATE_RULESET_VERSION); value:
 * the ABI version (>= 1), or 0 when Landlock is unavailable. */
int pico_probe_landlock_abi(struct pico_probe_result *out);
/* A child unshares the namespace `ns` (PICO_PROBE_NS_*), directly or, when
 * that is refused, together with a new user namespace, and then uses it
 * (maps its uid, makes / private, runs pid 1, brings lo up, sets the
 * hostname).  value: PICO_PROBE_NS_DIRECT or PICO_PROBE_NS_VIA_USERNS. */
int pico_probe_namespace(int ns, int timeout_ms, struct pico_probe_result *out);
/* openat2(2) with RESOLVE_BENEATH on "/": value has PICO_PROBE_OPENAT2_* bits. */
int pico_probe_openat2_beneath(struct pico_probe_result *out);
/* process_vm_readv(2) of a marker a child wrote into its own memory. */
int pico_probe_process_vm_readv(int timeout_ms, struct pico_probe_result *out);
/* close_range(2) on a dup of /dev/null: value has PICO_PROBE_CLOSE_RANGE_* bits. */
int pico_probe_close_range(struct pico_probe_result *out);
/* cffi:end */

#endif
