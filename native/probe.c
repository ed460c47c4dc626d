/* Kernel feature probes for `picoproc doctor`; see probe.h.
 *
 * The probes that need a second process fork with a raw clone (no atfork
 * handlers: the caller is a possibly multi-threaded Python interpreter), and
 * the child only makes async-signal-safe calls before _exit.  The child
 * reports {step, errno, value} through a close-on-exec pipe; the parent
 * waits for it with a deadline (pidfd + poll), kills it when the deadline
 * passes, and always reaps it. */
#define _GNU_SOURCE
#include "probe.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <net/if.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* Constants newer than the build machine's kernel headers, spelled as in
 * include/uapi/linux/{seccomp,landlock,openat2,close_range}.h. */
#include "seccomp_compat.h"
#define PROBE_LANDLOCK_CREATE_RULESET_VERSION (1U << 0)
#define PROBE_RESOLVE_NO_MAGICLINKS 0x02
#define PROBE_RESOLVE_BENEATH 0x08
#define PROBE_CLOSE_RANGE_CLOEXEC (1U << 2)

/* struct open_how from include/uapi/linux/openat2.h (ABI-stable). */
struct probe_open_how {
	uint64_t flags;
	uint64_t mode;
	uint64_t resolve;
};

#if defined(__x86_64__)
#define PROBE_AUDIT_ARCH AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define PROBE_AUDIT_ARCH AUDIT_ARCH_AARCH64
#else
#error "probe.c: add the AUDIT_ARCH_* of this architecture"
#endif

/* What a child writes to its report pipe just before _exit. */
struct child_report {
	int step;
	int err;
	long long value;
};

static void set_result(struct pico_probe_result *out, int step, int err, long long value)
{
	out->step = step;
	out->err = err;
	out->value = value;
}

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int ms_left(int64_t deadline)
{
	int64_t left = deadline - now_ms();
	return left < 0 ? 0 : (left > 0x7fffffff ? 0x7fffffff : (int)left);
}

static void close_fd(int *fd)
{
	if (*fd >= 0) {
		close(*fd);
		*fd = -1;
	}
}

/* ---- child side ---------------------------------------------------------- */

static pid_t fork_probe_child(void)
{
	/* A raw clone, not fork(3): no atfork handlers run in the child. */
	return (pid_t)syscall(SYS_clone, SIGCHLD, 0, 0, 0, 0);
}

static void __attribute__((noreturn)) child_exit(int report_fd, int step, int err, long long value)
{
	struct child_report r = {step, err, value};
	/* Best effort: a short write shows up as "no report" in the parent. */
	ssize_t n = write(report_fd, &r, sizeof(r));
	(void)n;
	_exit(step == PICO_PROBE_STEP_DONE ? 0 : 1);
}

/* Common start of every probe child: die with the parent, and let signals
 * through (the Python thread that forked may have some blocked). */
static void child_start(pid_t parent)
{
	sigset_t none;
	prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
	if (getppid() != parent)
		_exit(1); /* the parent is already gone */
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
}

/* Installs "getppid -> action, everything else allowed". */
static long install_getppid_filter(unsigned int action, unsigned long flags)
{
	struct sock_filter insns[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, PROBE_AUDIT_ARCH, 1, 0),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_getppid, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, action),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog prog = {.len = sizeof(insns) / sizeof(insns[0]), .filter = insns};
	return syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, flags, &prog);
}

static int send_fd(int sock, int fd)
{
	char byte = 'L';
	struct iovec iov = {&byte, 1};
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} u;
	memset(&u, 0, sizeof(u));
	struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf,
			     .msg_controllen = sizeof(u.buf)};
	struct cmsghdr *cmsg = CMSG_FIRSTHDR(&msg);
	cmsg->cmsg_level = SOL_SOCKET;
	cmsg->cmsg_type = SCM_RIGHTS;
	cmsg->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(cmsg), &fd, sizeof(int));
	return sendmsg(sock, &msg, MSG_NOSIGNAL) == 1 ? 0 : -1;
}

static volatile sig_atomic_t sigusr1_seen;

static void on_sigusr1(int sig)
{
	(void)sig;
	sigusr1_seen = 1;
}

static void __attribute__((noreturn)) notif_child(int feature, pid_t parent, int sock, int report,
						  const int data[2])
{
	child_start(parent);
	/* The only way to the data pipe must be the fd the parent adds. */
	if (data[0] >= 0) {
		close(data[0]);
		close(data[1]);
	}
	if (feature == PICO_PROBE_NOTIF_WAIT_KILLABLE) {
		struct sigaction sa;
		memset(&sa, 0, sizeof(sa));
		sa.sa_handler = on_sigusr1; /* no SA_RESTART: a plain wait would abandon the call */
		sigemptyset(&sa.sa_mask);
		sigaction(SIGUSR1, &sa, NULL);
	}
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		child_exit(report, PICO_PROBE_STEP_NO_NEW_PRIVS, errno, 0);
	unsigned long flags = SECCOMP_FILTER_FLAG_NEW_LISTENER;
	if (feature == PICO_PROBE_NOTIF_WAIT_KILLABLE)
		flags |= SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV;
	long listener = install_getppid_filter(SECCOMP_RET_USER_NOTIF, flags);
	if (listener < 0)
		child_exit(report, PICO_PROBE_STEP_INSTALL_FILTER, errno, (long long)flags);
	if (send_fd(sock, (int)listener) < 0)
		child_exit(report, PICO_PROBE_STEP_PASS_LISTENER, errno, 0);
	close((int)listener);
	close(sock);

	errno = 0;
	long r = syscall(SYS_getppid);
	if (feature == PICO_PROBE_NOTIF_ADDFD_SEND) {
		/* The answer is the number of the fd the monitor added. */
		if (r < 0)
			child_exit(report, PICO_PROBE_STEP_CHILD_RESULT, errno, r);
		if (write((int)r, "k", 1) != 1)
			child_exit(report, PICO_PROBE_STEP_CHILD_RESULT, errno, r);
	} else if (r != PICO_PROBE_NOTIF_ANSWER) {
		child_exit(report, PICO_PROBE_STEP_CHILD_RESULT, r < 0 ? errno : 0, r);
	}
	child_exit(report, PICO_PROBE_STEP_DONE, 0, r);
}

/* ---- parent side --------------------------------------------------------- */

/* Waits for `pid` until `deadline`, kills it if it is still running then, and
 * reaps it in every case.  Returns 1 when it had to be killed. */
static int reap_child(pid_t pid, int64_t deadline, int *status)
{
	int killed = 0;
	int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
	if (pidfd >= 0) {
		struct pollfd p = {pidfd, POLLIN, 0};
		int n;
		do
			n = poll(&p, 1, ms_left(deadline));
		while (n < 0 && errno == EINTR);
		close(pidfd);
		if (n <= 0) {
			kill(pid, SIGKILL);
			killed = 1;
		}
	} else {
		/* No pidfd (kernel < 5.3): poll waitpid instead. */
		for (;;) {
			pid_t r = waitpid(pid, status, WNOHANG);
			if (r == pid)
				return 0;
			if (r < 0 && errno != EINTR)
				break;
			if (now_ms() >= deadline) {
				kill(pid, SIGKILL);
				killed = 1;
				break;
			}
			struct timespec ms = {0, 1000000};
			nanosleep(&ms, NULL);
		}
	}
	while (waitpid(pid, status, 0) < 0) {
		if (errno != EINTR) {
			*status = -1;
			break;
		}
	}
	return killed;
}

/* poll() one fd until the deadline: 1 readable, 0 hung up without data,
 * -1 with errno (ETIMEDOUT when the deadline passed). */
static int wait_readable(int fd, int64_t deadline)
{
	struct pollfd p = {fd, POLLIN, 0};
	int n;
	do
		n = poll(&p, 1, ms_left(deadline));
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return -1;
	if (n == 0) {
		errno = ETIMEDOUT;
		return -1;
	}
	return (p.revents & POLLIN) ? 1 : 0;
}

/* Receives one fd; returns it, -2 at EOF (the child ended first), or -1. */
static int recv_fd(int sock, int64_t deadline)
{
	int ready = wait_readable(sock, deadline);
	if (ready < 0)
		return -1;
	char byte;
	struct iovec iov = {&byte, 1};
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} u;
	struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf,
			     .msg_controllen = sizeof(u.buf)};
	ssize_t n;
	do
		n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return -1;
	if (n == 0)
		return -2;
	int fd = -1;
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c))
		if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS &&
		    c->cmsg_len == CMSG_LEN(sizeof(int)))
			memcpy(&fd, CMSG_DATA(c), sizeof(int));
	if (fd < 0)
		errno = EBADMSG;
	return fd;
}

/* A failure the parent saw itself (it outranks the child's report, which is
 * then only a consequence, e.g. ENOSYS after the listener was closed). */
struct parent_failure {
	int failed;
	int step;
	int err;
	long long value;
};

static void parent_fail(struct parent_failure *pf, int step, int err, long long value)
{
	if (!pf->failed)
		*pf = (struct parent_failure){1, step, err, value};
}

/* Reaps the child (killing it at once if the parent already failed) and
 * decides the outcome: the parent's own failure, else a timeout, else the
 * child's report, else "died without a report".  Returns 1 on success. */
static int finish_child(pid_t pid, int report_fd, int64_t deadline, const struct parent_failure *pf,
			struct pico_probe_result *out)
{
	int status = 0;
	if (pf->failed)
		kill(pid, SIGKILL);
	int killed = reap_child(pid, deadline, &status);
	struct child_report rep;
	ssize_t n;
	do
		n = read(report_fd, &rep, sizeof(rep));
	while (n < 0 && errno == EINTR);
	if (pf->failed)
		set_result(out, pf->step, pf->err, pf->value);
	else if (killed)
		set_result(out, PICO_PROBE_STEP_TIMEOUT, ETIMEDOUT, 0);
	else if (n == (ssize_t)sizeof(rep))
		set_result(out, rep.step, rep.err, rep.value);
	else
		set_result(out, PICO_PROBE_STEP_CHILD_DIED, 0, status);
	return out->step == PICO_PROBE_STEP_DONE;
}

int pico_probe_seccomp_filter(int timeout_ms, struct pico_probe_result *out)
{
	int64_t deadline = now_ms() + timeout_ms;
	int report[2];
	struct parent_failure pf = {0};
	set_result(out, PICO_PROBE_STEP_SETUP, 0, 0);
	if (pipe2(report, O_CLOEXEC | O_NONBLOCK) < 0) {
		set_result(out, PICO_PROBE_STEP_SETUP, errno, 0);
		return 0;
	}
	pid_t parent = getpid();
	pid_t pid = fork_probe_child();
	if (pid < 0) {
		set_result(out, PICO_PROBE_STEP_FORK, errno, 0);
		close(report[0]);
		close(report[1]);
		return 0;
	}
	if (pid == 0) {
		child_start(parent);
		if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
			child_exit(report[1], PICO_PROBE_STEP_NO_NEW_PRIVS, errno, 0);
		if (install_getppid_filter(SECCOMP_RET_ERRNO | EDOM, 0) < 0)
			child_exit(report[1], PICO_PROBE_STEP_INSTALL_FILTER, errno, 0);
		errno = 0;
		long r = syscall(SYS_getppid);
		if (r != -1 || errno != EDOM)
			child_exit(report[1], PICO_PROBE_STEP_FILTER_EFFECT, errno, r);
		long mode = prctl(PR_GET_SECCOMP, 0, 0, 0, 0);
		if (mode != SECCOMP_MODE_FILTER)
			child_exit(report[1], PICO_PROBE_STEP_FILTER_EFFECT, 0, mode);
		child_exit(report[1], PICO_PROBE_STEP_DONE, 0, mode);
	}
	close(report[1]);
	int ok = finish_child(pid, report[0], deadline, &pf, out);
	close(report[0]);
	return ok;
}

int pico_probe_notif(int feature, int timeout_ms, struct pico_probe_result *out)
{
	int64_t deadline = now_ms() + timeout_ms;
	int sock[2] = {-1, -1}, report[2] = {-1, -1}, data[2] = {-1, -1};
	int listener = -1;
	struct parent_failure pf = {0};
	pid_t pid = -1;
	int ok = 0;

	set_result(out, PICO_PROBE_STEP_SETUP, 0, 0);
	if (feature < PICO_PROBE_NOTIF_PLAIN || feature > PICO_PROBE_NOTIF_UNANSWERED) {
		set_result(out, PICO_PROBE_STEP_SETUP, EINVAL, feature);
		return 0;
	}
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sock) < 0 ||
	    pipe2(report, O_CLOEXEC | O_NONBLOCK) < 0 ||
	    (feature == PICO_PROBE_NOTIF_ADDFD_SEND && pipe2(data, O_CLOEXEC | O_NONBLOCK) < 0)) {
		set_result(out, PICO_PROBE_STEP_SETUP, errno, 0);
		goto out;
	}
	pid_t parent = getpid();
	pid = fork_probe_child();
	if (pid < 0) {
		set_result(out, PICO_PROBE_STEP_FORK, errno, 0);
		goto out;
	}
	if (pid == 0) {
		close(sock[0]);
		close(report[0]);
		notif_child(feature, parent, sock[1], report[1], data);
	}
	close_fd(&sock[1]);
	close_fd(&report[1]);

	listener = recv_fd(sock[0], deadline);
	if (listener == -2) {
		/* The child ended before passing the listener: its report says why. */
		listener = -1;
		goto reap;
	}
	if (listener < 0) {
		parent_fail(&pf, PICO_PROBE_STEP_PASS_LISTENER, errno, 0);
		goto reap;
	}
	if (feature == PICO_PROBE_NOTIF_SYNC_WAKE_UP &&
	    ioctl(listener, SECCOMP_IOCTL_NOTIF_SET_FLAGS, SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP) < 0) {
		parent_fail(&pf, PICO_PROBE_STEP_SET_FLAGS, errno, 0);
		goto reap;
	}
	int ready = wait_readable(listener, deadline);
	if (ready < 0) {
		parent_fail(&pf, PICO_PROBE_STEP_WAIT_NOTIF, errno, 0);
		goto reap;
	}
	if (ready == 0)
		goto reap; /* hung up: the child is gone, its report says why */

	struct seccomp_notif notif;
	memset(&notif, 0, sizeof(notif));
	if (ioctl(listener, SECCOMP_IOCTL_NOTIF_RECV, &notif) < 0) {
		parent_fail(&pf, PICO_PROBE_STEP_RECV_NOTIF, errno, 0);
		goto reap;
	}
	if (notif.data.nr != __NR_getppid || notif.pid != (uint32_t)pid) {
		parent_fail(&pf, PICO_PROBE_STEP_NOTIF_CONTENT, 0, notif.data.nr);
		goto reap;
	}
	if (feature == PICO_PROBE_NOTIF_WAIT_KILLABLE) {
		/* After RECV the wait must be killable only: a caught signal may
		 * not make the child abandon the call. */
		if (kill(pid, SIGUSR1) < 0 ||
		    ioctl(listener, SECCOMP_IOCTL_NOTIF_ID_VALID, &notif.id) < 0) {
			parent_fail(&pf, PICO_PROBE_STEP_SIGNAL, errno, 0);
			goto reap;
		}
	}
	if (feature == PICO_PROBE_NOTIF_ADDFD_SEND) {
		struct seccomp_notif_addfd addfd = {
			.id = notif.id,
			.flags = SECCOMP_ADDFD_FLAG_SEND,
			.srcfd = (uint32_t)data[1],
			.newfd = 0,
			.newfd_flags = O_CLOEXEC,
		};
		long added = ioctl(listener, SECCOMP_IOCTL_NOTIF_ADDFD, &addfd);
		if (added < 0) {
			parent_fail(&pf, PICO_PROBE_STEP_ADDFD, errno, 0);
			goto reap;
		}
		close_fd(&data[1]);
		close_fd(&listener);
		if (!finish_child(pid, report[0], deadline, &pf, out))
			goto reaped;
		/* The child got the same number and could write through it. */
		char byte = 0;
		if (out->value != added || read(data[0], &byte, 1) != 1 || byte != 'k') {
			set_result(out, PICO_PROBE_STEP_WRONG_RESULT, 0, added);
			goto reaped;
		}
		ok = 1;
		goto reaped;
	}
	if (feature == PICO_PROBE_NOTIF_UNANSWERED) {
		/* Keep the listener open: the child stays in getppid() until
		 * finish_child kills it at the deadline. */
		ok = finish_child(pid, report[0], deadline, &pf, out);
		goto reaped;
	}
	struct seccomp_notif_resp resp = {
		.id = notif.id, .val = PICO_PROBE_NOTIF_ANSWER, .error = 0, .flags = 0};
	if (ioctl(listener, SECCOMP_IOCTL_NOTIF_SEND, &resp) < 0) {
		parent_fail(&pf, PICO_PROBE_STEP_SEND, errno, 0);
		goto reap;
	}
reap:
	/* Closing the listener first fails a still-pending getppid() (ENOSYS). */
	close_fd(&listener);
	ok = finish_child(pid, report[0], deadline, &pf, out);
reaped:
out:
	close_fd(&listener);
	close_fd(&sock[0]);
	close_fd(&sock[1]);
	close_fd(&report[0]);
	close_fd(&report[1]);
	close_fd(&data[0]);
	close_fd(&data[1]);
	return ok;
}

int pico_probe_landlock_abi(struct pico_probe_result *out)
{
	long v = syscall(SYS_landlock_create_ruleset, NULL, 0, PROBE_LANDLOCK_CREATE_RULESET_VERSION);
	if (v < 0) {
		set_result(out, PICO_PROBE_STEP_SYSCALL, errno, 0);
		return 0;
	}
	set_result(out, v >= 1 ? PICO_PROBE_STEP_DONE : PICO_PROBE_STEP_WRONG_RESULT, 0, v);
	return v >= 1;
}

struct ns_kind {
	int clone_flag;
	const char *proc_name; /* under /proc/self/ns; for pid the one children get */
};

static const struct ns_kind *ns_kind_of(int ns)
{
	static const struct ns_kind kinds[] = {
		[PICO_PROBE_NS_USER] = {CLONE_NEWUSER, "/proc/self/ns/user"},
		[PICO_PROBE_NS_PID] = {CLONE_NEWPID, "/proc/self/ns/pid_for_children"},
		[PICO_PROBE_NS_MOUNT] = {CLONE_NEWNS, "/proc/self/ns/mnt"},
		[PICO_PROBE_NS_NET] = {CLONE_NEWNET, "/proc/self/ns/net"},
		[PICO_PROBE_NS_IPC] = {CLONE_NEWIPC, "/proc/self/ns/ipc"},
		[PICO_PROBE_NS_UTS] = {CLONE_NEWUTS, "/proc/self/ns/uts"},
	};
	if (ns < PICO_PROBE_NS_USER || ns > PICO_PROBE_NS_UTS)
		return NULL;
	return &kinds[ns];
}

/* Writes a decimal number; async-signal-safe (no stdio in the child). */
static size_t format_uint(char *buf, unsigned long v)
{
	char tmp[24];
	size_t n = 0, i = 0;
	do
		tmp[n++] = (char)('0' + v % 10);
	while ((v /= 10) != 0);
	while (n)
		buf[i++] = tmp[--n];
	return i;
}

/* Does something only a holder of the namespace's capability can do. */
static int use_namespace(int ns, uid_t outer_euid)
{
	switch (ns) {
	case PICO_PROBE_NS_USER: {
		/* Map our own uid to 0: allowed for an unprivileged creator. */
		char map[48] = "0 ";
		size_t len = 2 + format_uint(map + 2, outer_euid);
		memcpy(map + len, " 1\n", 3);
		len += 3;
		int fd = open("/proc/self/uid_map", O_WRONLY | O_CLOEXEC);
		if (fd < 0)
			return -1;
		ssize_t n = write(fd, map, len);
		int saved = errno;
		close(fd);
		errno = saved;
		if (n != (ssize_t)len)
			return -1;
		if (syscall(SYS_getuid) != 0) {
			errno = EPERM;
			return -1;
		}
		return 0;
	}
	case PICO_PROBE_NS_PID: {
		/* The first child in the new namespace must be its pid 1. */
		pid_t child = fork_probe_child();
		if (child < 0)
			return -1;
		if (child == 0)
			_exit(syscall(SYS_getpid) == 1 ? 0 : 1);
		int status;
		while (waitpid(child, &status, 0) < 0)
			if (errno != EINTR)
				return -1;
		if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
			errno = ESRCH;
			return -1;
		}
		return 0;
	}
	case PICO_PROBE_NS_MOUNT:
		return mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL);
	case PICO_PROBE_NS_NET: {
		int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
		if (s < 0)
			return -1;
		struct ifreq ifr;
		memset(&ifr, 0, sizeof(ifr));
		memcpy(ifr.ifr_name, "lo", 3);
		int r = ioctl(s, SIOCGIFFLAGS, &ifr);
		if (r == 0) {
			ifr.ifr_flags |= IFF_UP;
			r = ioctl(s, SIOCSIFFLAGS, &ifr);
		}
		int saved = errno;
		close(s);
		errno = saved;
		return r;
	}
	case PICO_PROBE_NS_UTS:
		return sethostname("picoproc-probe", 14);
	default:
		return 0; /* ipc: a new, empty namespace is all there is to see */
	}
}

static void __attribute__((noreturn)) namespace_child(int ns, pid_t parent, int report)
{
	const struct ns_kind *kind = ns_kind_of(ns);
	struct stat before, after;
	child_start(parent);
	uid_t outer_euid = geteuid();
	if (stat(kind->proc_name, &before) < 0)
		child_exit(report, PICO_PROBE_STEP_NS_BEFORE, errno, 0);
	long long how = PICO_PROBE_NS_DIRECT;
	if (unshare(kind->clone_flag) < 0) {
		int direct_err = errno;
		if (direct_err != EPERM || kind->clone_flag == CLONE_NEWUSER)
			child_exit(report, PICO_PROBE_STEP_UNSHARE, direct_err, 0);
		/* Unprivileged: other namespaces come with a user namespace. */
		if (unshare(CLONE_NEWUSER | kind->clone_flag) < 0)
			child_exit(report, PICO_PROBE_STEP_UNSHARE, errno, direct_err);
		how = PICO_PROBE_NS_VIA_USERNS;
	}
	/* Use it first: pid_for_children only resolves once the new pid
	 * namespace has its first process. */
	if (use_namespace(ns, outer_euid) < 0)
		child_exit(report, PICO_PROBE_STEP_NS_USE, errno, how);
	if (stat(kind->proc_name, &after) < 0)
		child_exit(report, PICO_PROBE_STEP_NS_UNCHANGED, errno, how);
	if (after.st_ino == before.st_ino && after.st_dev == before.st_dev)
		child_exit(report, PICO_PROBE_STEP_NS_UNCHANGED, 0, how);
	child_exit(report, PICO_PROBE_STEP_DONE, 0, how);
}

int pico_probe_namespace(int ns, int timeout_ms, struct pico_probe_result *out)
{
	int64_t deadline = now_ms() + timeout_ms;
	int report[2];
	struct parent_failure pf = {0};
	if (!ns_kind_of(ns)) {
		set_result(out, PICO_PROBE_STEP_SETUP, EINVAL, ns);
		return 0;
	}
	if (pipe2(report, O_CLOEXEC | O_NONBLOCK) < 0) {
		set_result(out, PICO_PROBE_STEP_SETUP, errno, 0);
		return 0;
	}
	pid_t parent = getpid();
	pid_t pid = fork_probe_child();
	if (pid < 0) {
		set_result(out, PICO_PROBE_STEP_FORK, errno, 0);
		close(report[0]);
		close(report[1]);
		return 0;
	}
	if (pid == 0) {
		close(report[0]);
		namespace_child(ns, parent, report[1]);
	}
	close(report[1]);
	int ok = finish_child(pid, report[0], deadline, &pf, out);
	close(report[0]);
	return ok;
}

static long openat2_path(int dirfd, const char *path, uint64_t resolve)
{
	struct probe_open_how how = {.flags = O_PATH | O_CLOEXEC, .mode = 0, .resolve = resolve};
	return syscall(SYS_openat2, dirfd, path, &how, sizeof(how));
}

int pico_probe_openat2_beneath(struct pico_probe_result *out)
{
	int root = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (root < 0) {
		set_result(out, PICO_PROBE_STEP_SETUP, errno, 0);
		return 0;
	}
	long long value = 0;
	long fd = openat2_path(root, ".", PROBE_RESOLVE_BENEATH);
	if (fd < 0) {
		set_result(out, PICO_PROBE_STEP_SYSCALL, errno, 0);
		goto out;
	}
	close((int)fd);
	/* Both escapes must be refused with EXDEV. */
	static const char *const escapes[] = {"..", "/"};
	for (size_t i = 0; i < 2; i++) {
		fd = openat2_path(root, escapes[i], PROBE_RESOLVE_BENEATH);
		if (fd >= 0) {
			close((int)fd);
			set_result(out, PICO_PROBE_STEP_WRONG_RESULT, 0, (long long)i);
			goto out;
		}
		if (errno != EXDEV) {
			set_result(out, PICO_PROBE_STEP_WRONG_RESULT, errno, (long long)i);
			goto out;
		}
	}
	value |= PICO_PROBE_OPENAT2_BENEATH;
	/* Extra, not required: magic links (/proc/self/exe) refused. */
	fd = openat2_path(root, "proc/self/exe", PROBE_RESOLVE_BENEATH | PROBE_RESOLVE_NO_MAGICLINKS);
	if (fd >= 0)
		close((int)fd);
	else if (errno == ELOOP)
		value |= PICO_PROBE_OPENAT2_NO_MAGICLINKS;
	set_result(out, PICO_PROBE_STEP_DONE, 0, value);
out:
	close(root);
	return out->step == PICO_PROBE_STEP_DONE;
}

/* Written by the process_vm_readv child into its own copy of this page. */
static char vm_marker[64];

static void fill_marker(char *buf, size_t len, pid_t pid)
{
	for (size_t i = 0; i < len; i++)
		buf[i] = (char)(0x5a ^ (i * 7) ^ (unsigned)pid);
}

int pico_probe_process_vm_readv(int timeout_ms, struct pico_probe_result *out)
{
	int64_t deadline = now_ms() + timeout_ms;
	int ready[2] = {-1, -1}, go[2] = {-1, -1};
	struct parent_failure pf = {0};
	int ok = 0;
	set_result(out, PICO_PROBE_STEP_SETUP, 0, 0);
	if (pipe2(ready, O_CLOEXEC | O_NONBLOCK) < 0 || pipe2(go, O_CLOEXEC) < 0) {
		set_result(out, PICO_PROBE_STEP_SETUP, errno, 0);
		goto out;
	}
	pid_t parent = getpid();
	pid_t pid = fork_probe_child();
	if (pid < 0) {
		set_result(out, PICO_PROBE_STEP_FORK, errno, 0);
		goto out;
	}
	if (pid == 0) {
		char c;
		close(ready[0]);
		close(go[1]);
		child_start(parent);
		fill_marker(vm_marker, sizeof(vm_marker), (pid_t)syscall(SYS_getpid));
		if (write(ready[1], "r", 1) != 1)
			_exit(1);
		/* Stay alive until the parent has read (it closes `go`). */
		while (read(go[0], &c, 1) < 0 && errno == EINTR)
			;
		_exit(0);
	}
	close_fd(&ready[1]);
	close_fd(&go[0]);
	char byte;
	int r = wait_readable(ready[0], deadline);
	if (r <= 0 || read(ready[0], &byte, 1) != 1) {
		parent_fail(&pf, r == 0 ? PICO_PROBE_STEP_CHILD_DIED : PICO_PROBE_STEP_TIMEOUT,
			    r == 0 ? 0 : errno, 0);
	} else {
		char seen[sizeof(vm_marker)], expected[sizeof(vm_marker)];
		struct iovec local = {seen, sizeof(seen)};
		struct iovec remote = {vm_marker, sizeof(vm_marker)};
		fill_marker(expected, sizeof(expected), pid);
		long n = syscall(SYS_process_vm_readv, pid, &local, 1, &remote, 1, 0);
		if (n < 0)
			parent_fail(&pf, PICO_PROBE_STEP_SYSCALL, errno, 0);
		else if (n != (long)sizeof(seen) || memcmp(seen, expected, sizeof(seen)) != 0)
			parent_fail(&pf, PICO_PROBE_STEP_WRONG_RESULT, 0, n);
	}
	close_fd(&go[1]); /* releases the child */
	{
		int status = 0;
		if (pf.failed)
			kill(pid, SIGKILL);
		int killed = reap_child(pid, deadline, &status);
		if (pf.failed)
			set_result(out, pf.step, pf.err, pf.value);
		else if (killed)
			set_result(out, PICO_PROBE_STEP_TIMEOUT, ETIMEDOUT, 0);
		else
			set_result(out, PICO_PROBE_STEP_DONE, 0, (long long)sizeof(vm_marker));
	}
	ok = out->step == PICO_PROBE_STEP_DONE;
out:
	close_fd(&ready[0]);
	close_fd(&ready[1]);
	close_fd(&go[0]);
	close_fd(&go[1]);
	return ok;
}

int pico_probe_close_range(struct pico_probe_result *out)
{
	long long value = 0;
	int base = open("/dev/null", O_RDONLY | O_CLOEXEC);
	if (base < 0) {
		set_result(out, PICO_PROBE_STEP_SETUP, errno, 0);
		return 0;
	}
	int dup_fd = fcntl(base, F_DUPFD, 0); /* without FD_CLOEXEC */
	close(base);
	if (dup_fd < 0) {
		set_result(out, PICO_PROBE_STEP_SETUP, errno, 0);
		return 0;
	}
	/* CLOSE_RANGE_CLOEXEC (5.11) is extra information, not required. */
	if (syscall(SYS_close_range, dup_fd, dup_fd, PROBE_CLOSE_RANGE_CLOEXEC) == 0 &&
	    (fcntl(dup_fd, F_GETFD) & FD_CLOEXEC))
		value |= PICO_PROBE_CLOSE_RANGE_CLOEXEC;
	if (syscall(SYS_close_range, dup_fd, dup_fd, 0) < 0) {
		set_result(out, PICO_PROBE_STEP_SYSCALL, errno, value);
		close(dup_fd);
		return 0;
	}
	if (fcntl(dup_fd, F_GETFD) >= 0 || errno != EBADF) {
		/* Still open: close_range claimed success without closing. */
		close(dup_fd);
		set_result(out, PICO_PROBE_STEP_WRONG_RESULT, 0, value);
		return 0;
	}
	value |= PICO_PROBE_CLOSE_RANGE_CLOSE;
	set_result(out, PICO_PROBE_STEP_DONE, 0, value);
	return 1;
}
