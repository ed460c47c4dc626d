/* notif_floor: what the kernel alone charges for a seccomp user notification
 * on this machine, with the simplest possible supervisor -- the floor under
 * any monitor's mediated call, picoproc's included.
 *
 *   notif_floor [ITERATIONS]
 *
 * A child installs a filter that sends getppid and dup to a listener; the
 * parent (another process, as picoproc's monitor is) sets
 * SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP and answers at once: getppid with
 * NOTIF_SEND ("null": one round trip), dup with NOTIF_ADDFD + ADDFD_FLAG_SEND
 * of an fd it already holds, which the child then closes ("addfd": how an
 * fd-returning call like open ends, without any path work).  The child
 * times each call with CLOCK_MONOTONIC and prints median, p10 and p90:
 *
 *   null median_ns=N p10_ns=N p90_ns=N
 *   addfd median_ns=N p10_ns=N p90_ns=N
 *
 * Exit status 0 only if both ran; errors name the call that failed. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
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

/* The listener goes from child to parent over a socketpair. */
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
	if (sendmsg(sock, &m, 0) < 0)
		die("sendmsg");
}

static int recv_fd(int sock)
{
	char byte, cbuf[CMSG_SPACE(sizeof(int))];
	struct iovec iov = {&byte, 1};
	struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof(cbuf)};
	if (recvmsg(sock, &m, 0) <= 0 || !CMSG_FIRSTHDR(&m))
		die("recvmsg (the child could not install its filter)");
	int fd;
	memcpy(&fd, CMSG_DATA(CMSG_FIRSTHDR(&m)), sizeof(fd));
	return fd;
}

static void child(int sock, int n)
{
	struct sock_filter f[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_getppid, 2, 0),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_dup, 1, 0),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_USER_NOTIF),
	};
	struct sock_fprog prog = {sizeof(f) / sizeof(f[0]), f};
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		die("PR_SET_NO_NEW_PRIVS");
	int listener = (int)syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_NEW_LISTENER, &prog);
	if (listener < 0)
		die("seccomp(NEW_LISTENER)");
	send_fd(sock, listener);
	close(listener);
	long *t = malloc((size_t)n * sizeof(long));
	if (!t)
		die("malloc");
	for (int i = 0; i < n; i++) {
		long a = now_ns();
		if (syscall(SYS_getppid) != 1)
			die("getppid (the supervisor answers 1)");
		t[i] = now_ns() - a;
	}
	report("null", t, n);
	for (int i = 0; i < n; i++) {
		long a = now_ns();
		int fd = (int)syscall(SYS_dup, 0);
		if (fd < 0)
			die("dup (answered with ADDFD)");
		close(fd);
		t[i] = now_ns() - a;
	}
	report("addfd", t, n);
	fflush(stdout);
	_exit(0);
}

int main(int argc, char **argv)
{
	int n = argc > 1 ? atoi(argv[1]) : 20000;
	if (n < 10) {
		fprintf(stderr, "notif_floor: ITERATIONS must be at least 10\n");
		return 2;
	}
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		die("socketpair");
	pid_t pid = fork();
	if (pid < 0)
		die("fork");
	if (pid == 0)
		child(sv[0], n);
	int listener = recv_fd(sv[1]);
	if (ioctl(listener, SECCOMP_IOCTL_NOTIF_SET_FLAGS, SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP, 0) < 0)
		fprintf(stderr, "notif_floor: no SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP (%s): measuring without it\n",
			strerror(errno));
	int held = open("/dev/null", O_RDONLY | O_CLOEXEC);
	if (held < 0)
		die("open /dev/null");
	for (;;) {
		struct seccomp_notif req;
		memset(&req, 0, sizeof(req));
		if (ioctl(listener, SECCOMP_IOCTL_NOTIF_RECV, &req) < 0) {
			if (errno == EINTR)
				continue;
			break; /* ENOENT and friends: the child is gone */
		}
		if (req.data.nr == SYS_dup) {
			struct seccomp_notif_addfd a = {.id = req.id, .flags = SECCOMP_ADDFD_FLAG_SEND, .srcfd = (__u32)held};
			ioctl(listener, SECCOMP_IOCTL_NOTIF_ADDFD, &a);
		} else {
			struct seccomp_notif_resp resp = {.id = req.id, .val = 1};
			ioctl(listener, SECCOMP_IOCTL_NOTIF_SEND, &resp);
		}
	}
	int status;
	if (waitpid(pid, &status, 0) < 0)
		die("waitpid");
	return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : 1;
}
