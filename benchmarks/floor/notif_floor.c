/* notif_floor: what the kernel alone charges for a mediated call on this
 * machine, with the simplest possible supervisor -- the floor under any
 * monitor's mediated call, picoproc's included.
 *
 *   notif_floor FILE TARGET_NS BATCHES [CLASS...]
 *
 * A child installs a filter that sends getppid and dup to a listener; the
 * parent (another process, as picoproc's monitor is) sets
 * SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP and answers each call at once, doing
 * only the host call the mediated call needs, on FILE:
 *
 *   getppid     native getppid in the child, before its filter (reference)
 *   getppid_filtered  getppid in a process whose only filter allows every
 *               call in 4 instructions: the floor of a direct call (any
 *               filter costs the kernel's seccomp entry)
 *   stat        native stat(FILE) in the child, before its filter (reference)
 *   openclose   native open(FILE) + close in the child (reference)
 *   null        a bare round trip: answered at once with NOTIF_SEND
 *   stat_floor  the supervisor stats FILE, then NOTIF_SEND: the floor of
 *               a mediated stat (the notification plus the native call)
 *   stat_confined  the supervisor looks FILE up as a confining monitor
 *               must -- openat2 from its directory with RESOLVE_BENEATH |
 *               RESOLVE_NO_SYMLINKS | RESOLVE_NO_XDEV, statx of that fd,
 *               close -- then NOTIF_SEND: not a floor, what confinement
 *               itself adds on the host
 *   open_addfd  the supervisor opens FILE and answers with NOTIF_ADDFD +
 *               ADDFD_FLAG_SEND; the child closes the fd: the floor of a
 *               mediated open+close as the kernel hands fds back
 *   open_addfd_then_send  the same with NOTIF_ADDFD (no SEND flag), then
 *               NOTIF_SEND of the fd number: two steps
 *   open_channel  the supervisor opens FILE, sends the fd over an AF_UNIX
 *               socket pair (SCM_RIGHTS) and answers with NOTIF_SEND; the
 *               child receives it with recvmsg and closes it: an fd handed
 *               back without NOTIF_ADDFD
 *
 * Every class is timed as callclass times it (benchmarks/guests/callclass.c):
 * an iteration count calibrated to about TARGET_NS, then BATCHES batches,
 * one line each:
 *
 *   class=NAME iters=N ps=B1,B2,...   (per-call picoseconds of each batch)
 *
 * Default classes: all of the above.  Exit status 0 only if every class
 * ran; errors name the call that failed. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/openat2.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP
#define SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP (1UL << 0)
#endif
#ifndef SECCOMP_IOCTL_NOTIF_SET_FLAGS
#define SECCOMP_IOCTL_NOTIF_SET_FLAGS SECCOMP_IOW(4, __u64)
#endif

#define FLOOR_PROGRAM "notif_floor"
#include "floor_common.h"

/* What the supervisor does for a dup(ARG) (getppid: answer at once). */
enum { DUP_STAT, DUP_ADDFD, DUP_ADDFD_THEN_SEND, DUP_CHANNEL, DUP_STAT_CONFINED };

static const char *g_file;
static int g_dir = -1;	    /* FILE's directory (O_PATH), for stat_confined */
static const char *g_base; /* FILE's last component */
static int g_channel = -1; /* the child's end of the fd channel */

static void send_fd(int sock, int fd)
{
	char byte = 0, cbuf[CMSG_SPACE(sizeof(int))];
	struct iovec iov = {&byte, 1};
	struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof(cbuf)};
	struct cmsghdr *h = CMSG_FIRSTHDR(&m);
	h->cmsg_level = SOL_SOCKET;
	h->cmsg_type = SCM_RIGHTS;
	h->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(h), &fd, sizeof(fd));
	if (sendmsg(sock, &m, MSG_DONTWAIT) < 0)
		die("sendmsg");
}

static int recv_fd(int sock, int flags)
{
	char byte, cbuf[CMSG_SPACE(sizeof(int))];
	struct iovec iov = {&byte, 1};
	struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof(cbuf)};
	if (recvmsg(sock, &m, flags) <= 0 || !CMSG_FIRSTHDR(&m))
		return -1;
	int fd;
	memcpy(&fd, CMSG_DATA(CMSG_FIRSTHDR(&m)), sizeof(fd));
	return fd;
}

static void run_getppid(uint64_t n)
{
	for (uint64_t i = 0; i < n; i++)
		if (syscall(SYS_getppid) < 0)
			die("getppid");
}

static void run_stat(uint64_t n)
{
	struct stat st;
	for (uint64_t i = 0; i < n; i++)
		if (stat(g_file, &st) != 0)
			die("stat");
}

static void run_openclose(uint64_t n)
{
	for (uint64_t i = 0; i < n; i++) {
		int fd = open(g_file, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			die("open");
		close(fd);
	}
}

static void run_null(uint64_t n)
{
	for (uint64_t i = 0; i < n; i++)
		if (syscall(SYS_getppid) != 1)
			die("getppid (the supervisor answers 1)");
}

static void run_stat_floor(uint64_t n)
{
	for (uint64_t i = 0; i < n; i++)
		if (syscall(SYS_dup, DUP_STAT) != 0)
			die("dup (the supervisor stats and answers 0)");
}

static void run_stat_confined(uint64_t n)
{
	for (uint64_t i = 0; i < n; i++)
		if (syscall(SYS_dup, DUP_STAT_CONFINED) != 0)
			die("dup (the supervisor looks up, stats and answers 0)");
}

static void dup_close(uint64_t n, int how)
{
	for (uint64_t i = 0; i < n; i++) {
		int fd = (int)syscall(SYS_dup, how);
		if (fd < 0)
			die("dup (answered with an fd)");
		close(fd);
	}
}

static void run_open_addfd(uint64_t n)
{
	dup_close(n, DUP_ADDFD);
}

static void run_open_addfd_then_send(uint64_t n)
{
	dup_close(n, DUP_ADDFD_THEN_SEND);
}

static void run_open_channel(uint64_t n)
{
	for (uint64_t i = 0; i < n; i++) {
		if (syscall(SYS_dup, DUP_CHANNEL) != 0)
			die("dup (the supervisor sends the fd and answers 0)");
		int fd = recv_fd(g_channel, MSG_CMSG_CLOEXEC);
		if (fd < 0)
			die("recvmsg (the fd on the channel)");
		close(fd);
	}
}

/* Where a class runs: before the child's filter, under the notifying
 * filter, or in a process of its own under the 4-instruction filter. */
enum { NATIVE, NOTIFIED, FILTERED };

struct call_class {
	const char *name;
	void (*run)(uint64_t n);
	int where;
};

static const struct call_class CLASSES[] = {
	{"getppid", run_getppid, NATIVE},
	{"getppid_filtered", run_getppid, FILTERED},
	{"stat", run_stat, NATIVE},
	{"openclose", run_openclose, NATIVE},
	{"null", run_null, NOTIFIED},
	{"stat_floor", run_stat_floor, NOTIFIED},
	{"stat_confined", run_stat_confined, NOTIFIED},
	{"open_addfd", run_open_addfd, NOTIFIED},
	{"open_addfd_then_send", run_open_addfd_then_send, NOTIFIED},
	{"open_channel", run_open_channel, NOTIFIED},
};
#define NCLASSES (sizeof CLASSES / sizeof CLASSES[0])

/* As callclass: grows the count until a batch lasts target_ns (a warm-up
 * as well). */
static uint64_t calibrate(const struct call_class *c, uint64_t target_ns)
{
	uint64_t n = 1;
	for (;;) {
		long t0 = now_ns();
		c->run(n);
		uint64_t dt = (uint64_t)(now_ns() - t0);
		if ((dt >= target_ns && n >= 16) || n >= (1ull << 26))
			return n;
		n *= dt < target_ns / 64 ? 16 : 2;
	}
}

static void measure(const struct call_class *c, uint64_t target, long batches)
{
	uint64_t n = calibrate(c, target);
	printf("class=%s iters=%llu ps=", c->name, (unsigned long long)n);
	for (long b = 0; b < batches; b++) {
		long t0 = now_ns();
		c->run(n);
		uint64_t dt = (uint64_t)(now_ns() - t0);
		printf("%s%llu", b ? "," : "", (unsigned long long)(dt * 1000 / n));
	}
	printf("\n");
	fflush(stdout);
}

/* The FILTERED classes, in a process of their own: a filter cannot be
 * taken off again. */
static void run_filtered(const int *wanted, uint64_t target, long batches)
{
	struct sock_filter allow[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog prog = {sizeof(allow) / sizeof(allow[0]), allow};
	int any = 0;

	for (size_t k = 0; k < NCLASSES; k++)
		any |= wanted[k] && CLASSES[k].where == FILTERED;
	if (!any)
		return;
	fflush(stdout);
	pid_t pid = fork();
	if (pid < 0)
		die("fork");
	if (pid == 0) {
		if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 ||
		    syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) < 0)
			die("seccomp (the 4-instruction filter)");
		for (size_t k = 0; k < NCLASSES; k++)
			if (wanted[k] && CLASSES[k].where == FILTERED)
				measure(&CLASSES[k], target, batches);
		_exit(0);
	}
	int status;
	if (waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
		die("the filtered classes");
}

static void child(int sock, const int *wanted, uint64_t target, long batches)
{
	struct sock_filter f[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_getppid, 2, 0),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_dup, 1, 0),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_USER_NOTIF),
	};
	struct sock_fprog prog = {sizeof(f) / sizeof(f[0]), f};

	for (size_t k = 0; k < NCLASSES; k++)
		if (wanted[k] && CLASSES[k].where == NATIVE)
			measure(&CLASSES[k], target, batches);
	run_filtered(wanted, target, batches);
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		die("PR_SET_NO_NEW_PRIVS");
	int listener = (int)syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_NEW_LISTENER, &prog);
	if (listener < 0)
		die("seccomp(NEW_LISTENER)");
	send_fd(sock, listener);
	close(listener);
	for (size_t k = 0; k < NCLASSES; k++)
		if (wanted[k] && CLASSES[k].where == NOTIFIED)
			measure(&CLASSES[k], target, batches);
	_exit(0);
}

static void answer(int listener, uint64_t id, long val)
{
	struct seccomp_notif_resp resp = {.id = id, .val = val};
	ioctl(listener, SECCOMP_IOCTL_NOTIF_SEND, &resp);
}

/* Serves the child's calls until it is gone. */
static void supervise(int listener, int channel)
{
	for (;;) {
		struct seccomp_notif req;
		memset(&req, 0, sizeof(req));
		if (ioctl(listener, SECCOMP_IOCTL_NOTIF_RECV, &req) < 0) {
			if (errno == EINTR)
				continue;
			return; /* ENOENT and friends: the child is gone */
		}
		if (req.data.nr != SYS_dup) {
			answer(listener, req.id, 1);
			continue;
		}
		int how = (int)req.data.args[0];
		if (how == DUP_STAT) {
			struct stat st;
			answer(listener, req.id, stat(g_file, &st) == 0 ? 0 : -1);
			continue;
		}
		if (how == DUP_STAT_CONFINED) {
			struct open_how oh = {.flags = O_PATH | O_CLOEXEC,
					      .resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_XDEV};
			struct statx sx;
			long fd = syscall(SYS_openat2, g_dir, g_base, &oh, sizeof(oh));
			long ok = fd >= 0 && statx((int)fd, "", AT_EMPTY_PATH, STATX_BASIC_STATS, &sx) == 0;
			if (fd >= 0)
				close((int)fd);
			answer(listener, req.id, ok ? 0 : -1);
			continue;
		}
		int fd = open(g_file, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			die("open FILE (supervisor)");
		if (how == DUP_CHANNEL) {
			send_fd(channel, fd);
			answer(listener, req.id, 0);
		} else {
			struct seccomp_notif_addfd a = {.id = req.id, .srcfd = (__u32)fd, .newfd_flags = O_CLOEXEC};
			if (how == DUP_ADDFD)
				a.flags = SECCOMP_ADDFD_FLAG_SEND;
			long got = ioctl(listener, SECCOMP_IOCTL_NOTIF_ADDFD, &a);
			if (how == DUP_ADDFD_THEN_SEND && got >= 0)
				answer(listener, req.id, got);
		}
		close(fd);
	}
}

int main(int argc, char **argv)
{
	int wanted[NCLASSES] = {0};

	if (argc < 4) {
		fprintf(stderr, "usage: notif_floor FILE TARGET_NS BATCHES [CLASS...]\n");
		return 2;
	}
	g_file = argv[1];
	const char *slash = strrchr(g_file, '/');
	g_base = slash ? slash + 1 : g_file;
	if (slash) {
		char dir[4096];
		size_t dlen = slash == g_file ? 1 : (size_t)(slash - g_file);
		if (dlen >= sizeof(dir))
			die("FILE: path too long");
		memcpy(dir, g_file, dlen);
		dir[dlen] = '\0';
		g_dir = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
	} else {
		g_dir = open(".", O_PATH | O_DIRECTORY | O_CLOEXEC);
	}
	if (g_dir < 0)
		die("open FILE's directory");
	uint64_t target = strtoull(argv[2], NULL, 10);
	long batches = strtol(argv[3], NULL, 10);
	if (target == 0 || batches <= 0 || batches > 1000) {
		fprintf(stderr, "notif_floor: bad TARGET_NS or BATCHES\n");
		return 2;
	}
	for (int a = 4; a < argc; a++) {
		size_t k = 0;
		while (k < NCLASSES && strcmp(CLASSES[k].name, argv[a]) != 0)
			k++;
		if (k == NCLASSES) {
			fprintf(stderr, "notif_floor: unknown class %s\n", argv[a]);
			return 2;
		}
		wanted[k] = 1;
	}
	if (argc == 4)
		for (size_t k = 0; k < NCLASSES; k++)
			wanted[k] = 1;
	int sv[2], ch[2];
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0 ||
	    socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, ch) < 0)
		die("socketpair");
	fflush(stdout);
	pid_t pid = fork();
	if (pid < 0)
		die("fork");
	if (pid == 0) {
		g_channel = ch[0];
		child(sv[0], wanted, target, batches);
	}
	char byte, cbuf[CMSG_SPACE(sizeof(int))];
	struct iovec iov = {&byte, 1};
	struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof(cbuf)};
	int listener = -1;
	if (recvmsg(sv[1], &m, 0) > 0 && CMSG_FIRSTHDR(&m))
		memcpy(&listener, CMSG_DATA(CMSG_FIRSTHDR(&m)), sizeof(listener));
	if (listener >= 0) {
		if (ioctl(listener, SECCOMP_IOCTL_NOTIF_SET_FLAGS, SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP, 0) < 0)
			fprintf(stderr, "notif_floor: no SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP (%s): measuring without it\n",
				strerror(errno));
		supervise(listener, ch[1]);
	}
	int status;
	if (waitpid(pid, &status, 0) < 0)
		die("waitpid");
	return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : 1;
}
