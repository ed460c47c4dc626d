#define _GNU_SOURCE
#include "spawn.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "picoproc_abi.h"

/* The kernel's struct for rt_sigaction (glibc's struct sigaction differs). */
struct kernel_sigaction {
	void *handler;
	unsigned long flags;
	void *restorer;
	uint64_t mask;
};

struct child_error {
	int step;
	int err;
};

/* The child's end of the report channel (an AF_UNIX SOCK_SEQPACKET pair)
 * sits just below the loader fd so that the close-everything-else sweep can
 * keep it.  It is close-on-exec: a successful exec closes it and the parent
 * reads EOF.  Before that the child may send two kinds of message:
 *   - {PICO_STEP_NONE, 0} carrying the seccomp listener fd (SCM_RIGHTS);
 *   - {step, errno} when a step failed (then the child exits 127). */
#define REPORT_FD (PICO_LOADER_FD - 1)

static long raw(long nr, long a, long b, long c, long d, long e)
{
	return syscall(nr, a, b, c, d, e);
}

static void __attribute__((noreturn)) child_fail(int step)
{
	struct child_error ce = {step, errno};
	/* Best effort: if this write fails the parent still sees a short read. */
	ssize_t n = write(REPORT_FD, &ce, sizeof(ce));
	(void)n;
	_exit(127);
}

/* Python ignores SIGPIPE and may block signals in the calling thread; an
 * ignored disposition and the mask survive exec, so reset both. */
static int reset_signals(void)
{
	struct kernel_sigaction dfl;
	memset(&dfl, 0, sizeof(dfl));
	for (int sig = 1; sig <= 64; sig++) {
		if (sig == SIGKILL || sig == SIGSTOP)
			continue;
		if (raw(SYS_rt_sigaction, sig, (long)&dfl, 0, 8, 0) < 0 && errno != EINVAL)
			return -1;
	}
	uint64_t empty = 0;
	return (int)raw(SYS_rt_sigprocmask, SIG_SETMASK, (long)&empty, 0, 8, 0);
}

static int send_listener(int fd)
{
	struct child_error ce = {PICO_STEP_NONE, 0};
	struct iovec iov = {&ce, sizeof(ce)};
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
	return sendmsg(REPORT_FD, &msg, MSG_NOSIGNAL) == (ssize_t)sizeof(ce) ? 0 : -1;
}

/* Reads one report; returns its size (0 at EOF) and stores a passed fd. */
static ssize_t recv_report(int sock, struct child_error *ce, int *fd_out)
{
	struct iovec iov = {ce, sizeof(*ce)};
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} u;
	struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf,
			     .msg_controllen = sizeof(u.buf)};
	ssize_t n;
	do
		n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
	while (n < 0 && errno == EINTR);
	if (n > 0) {
		for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
			if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS &&
			    c->cmsg_len == CMSG_LEN(sizeof(int)))
				memcpy(fd_out, CMSG_DATA(c), sizeof(int));
		}
	}
	return n;
}

static void __attribute__((noreturn)) child_main(const struct pico_spawn_spec *spec, pid_t parent)
{
	if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0)
		child_fail(PICO_STEP_PDEATHSIG);
	/* The monitor may have died between fork and prctl. */
	if (getppid() != parent) {
		errno = ESRCH;
		child_fail(PICO_STEP_PDEATHSIG);
	}

	/* Move the image fd out of the way first: it may sit on 0..2. */
	int image_flags = spec->keep_image_fd ? 0 : O_CLOEXEC;
	if (spec->image_fd != PICO_LOADER_FD) {
		if (raw(SYS_dup3, spec->image_fd, PICO_LOADER_FD, image_flags, 0, 0) < 0)
			child_fail(PICO_STEP_LOADER_FD);
	} else if (fcntl(PICO_LOADER_FD, F_SETFD, image_flags ? FD_CLOEXEC : 0) < 0) {
		child_fail(PICO_STEP_LOADER_FD);
	}

	/* stdio: dup every source to a high scratch number first so that a
	 * permutation such as {1, 0, 2} cannot clobber a source early. */
	int tmp[3];
	for (int i = 0; i < 3; i++) {
		tmp[i] = (int)raw(SYS_fcntl, spec->stdio[i], F_DUPFD_CLOEXEC, 16, 0, 0);
		if (tmp[i] < 0)
			child_fail(PICO_STEP_STDIO);
	}
	for (int i = 0; i < 3; i++)
		if (raw(SYS_dup3, tmp[i], i, 0, 0, 0) < 0)
			child_fail(PICO_STEP_STDIO);

	/* Nothing else is inherited (invariant 5). */
	if (raw(SYS_close_range, 3, REPORT_FD - 1, 0, 0, 0) < 0 ||
	    raw(SYS_close_range, PICO_LOADER_FD + 1, ~0U, 0, 0, 0) < 0)
		child_fail(PICO_STEP_CLOSE_FDS);

	if (reset_signals() < 0)
		child_fail(PICO_STEP_SIGNALS);

	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		child_fail(PICO_STEP_NO_NEW_PRIVS);

	struct sock_fprog prog = {
		.len = (unsigned short)spec->filter_len,
		.filter = (struct sock_filter *)spec->filter,
	};
	long listener = raw(SYS_seccomp, SECCOMP_SET_MODE_FILTER, spec->seccomp_flags, (long)&prog, 0, 0);
	if (listener < 0)
		child_fail(PICO_STEP_SECCOMP);
	if (spec->seccomp_flags & SECCOMP_FILTER_FLAG_NEW_LISTENER) {
		/* sendmsg is a direct call, so the filter already in force allows it. */
		if (send_listener((int)listener) < 0)
			child_fail(PICO_STEP_SECCOMP);
		raw(SYS_close, listener, 0, 0, 0, 0);
	}

	/* The only exec the filter allows: the loader fd, empty path. */
	raw(SYS_execveat, PICO_LOADER_FD, (long)"", (long)spec->argv, (long)spec->envp,
	    AT_EMPTY_PATH);
	child_fail(PICO_STEP_EXEC);
}

int pico_spawn(const struct pico_spawn_spec *spec, struct pico_spawn_result *result)
{
	int sv[2];
	memset(result, 0, sizeof(*result));
	result->listener_fd = -1;
	if (spec->filter_len == 0 || spec->filter_len > BPF_MAXINSNS) {
		result->err = EINVAL;
		return -1;
	}
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) {
		result->err = errno;
		return -1;
	}
	pid_t parent = getpid();
	/* A raw clone, not fork(3): no atfork handlers run in the child. */
	long pid = raw(SYS_clone, SIGCHLD, 0, 0, 0, 0);
	if (pid < 0) {
		result->err = errno;
		close(sv[0]);
		close(sv[1]);
		return -1;
	}
	if (pid == 0) {
		close(sv[0]);
		if (sv[1] != REPORT_FD) {
			if (raw(SYS_dup3, sv[1], REPORT_FD, O_CLOEXEC, 0, 0) < 0)
				_exit(127);
		}
		child_main(spec, parent);
	}
	close(sv[1]);
	struct child_error ce = {PICO_STEP_NONE, 0};
	int failed = 0;
	for (;;) {
		int fd = -1;
		ssize_t n = recv_report(sv[0], &ce, &fd);
		if (n == 0)
			break; /* exec succeeded: the child's end closed */
		if (n == (ssize_t)sizeof(ce) && ce.step == PICO_STEP_NONE && fd >= 0 &&
		    result->listener_fd < 0) {
			result->listener_fd = fd;
			continue;
		}
		if (fd >= 0)
			close(fd);
		failed = 1;
		if (n != (ssize_t)sizeof(ce)) {
			ce.step = PICO_STEP_NONE;
			ce.err = n < 0 ? errno : EIO;
		}
		break;
	}
	close(sv[0]);
	if (!failed) {
		result->pid = (int)pid;
		return 0;
	}
	/* The child failed before exec: make sure it is gone and reaped so that
	 * nothing is left behind. */
	kill((pid_t)pid, SIGKILL);
	int status;
	while (waitpid((pid_t)pid, &status, 0) < 0 && errno == EINTR)
		;
	if (result->listener_fd >= 0) {
		close(result->listener_fd);
		result->listener_fd = -1;
	}
	result->step = ce.step;
	result->err = ce.err;
	return -1;
}
