/* exec_floor: what the kernel alone charges a program that runs under a
 * seccomp filter and has every call that names a file mediated -- the
 * floor under the cost of an exec inside a picoprocess, measured with the
 * same shell loop.
 *
 *   exec_floor MODE -- PROGRAM [ARG...]
 *
 * Runs PROGRAM as a child under a filter that it and every process it
 * starts inherit, and exits with its status:
 *   filtered  a 4-instruction filter that allows every call: the
 *             kernel's seccomp entry on each call, at fork and at exec;
 *   notified  every call that names a file (open, openat, openat2, stat
 *             and its variants with a path, access, readlink, execve,
 *             execveat, ...) goes to this process as a user notification,
 *             answered at once (SYNC_WAKE_UP) with
 *             SECCOMP_USER_NOTIF_FLAG_CONTINUE: the kernel then makes the
 *             call itself.  A confining monitor cannot answer that way (the
 *             guest could change the path in between); it must look the path
 *             up and hand the result back, which costs more
 *             (notif_floor's stat_floor and open_* rows).  So this is a
 *             lower bound: a round trip per file-naming call, and nothing
 *             else.
 * On exit prints "notifications=N" on stderr (the calls served).
 * Errors name the step that failed. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP
#define SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP (1UL << 0)
#endif
#ifndef SECCOMP_IOCTL_NOTIF_SET_FLAGS
#define SECCOMP_IOCTL_NOTIF_SET_FLAGS SECCOMP_IOW(4, __u64)
#endif
#ifndef AT_EMPTY_PATH
#define AT_EMPTY_PATH 0x1000
#endif

#define FLOOR_PROGRAM "exec_floor"
#include "floor_common.h"

/* Calls whose first or second argument is a path. */
static const int PATH_CALLS[] = {
	SYS_open,     SYS_creat,      SYS_stat,	     SYS_lstat,	      SYS_access,    SYS_readlink,
	SYS_execve,   SYS_execveat,   SYS_openat,    SYS_openat2,     SYS_faccessat, SYS_faccessat2,
	SYS_readlinkat, SYS_mkdir,    SYS_mkdirat,   SYS_unlink,      SYS_unlinkat,  SYS_rename,
	SYS_renameat, SYS_renameat2,  SYS_chdir,     SYS_rmdir,	      SYS_symlink,   SYS_symlinkat,
	SYS_link,     SYS_linkat,     SYS_chmod,     SYS_fchmodat,    SYS_chown,     SYS_lchown,
	SYS_fchownat, SYS_truncate,   SYS_utimensat, SYS_statfs,
};
#define NPATH (sizeof PATH_CALLS / sizeof PATH_CALLS[0])

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
		return -1;
	int fd;
	memcpy(&fd, CMSG_DATA(CMSG_FIRSTHDR(&m)), sizeof(fd));
	return fd;
}

/* The notifying filter: x86-64 only; newfstatat and statx with
 * AT_EMPTY_PATH name an fd, not a path (glibc's fstat), so they pass. */
static struct sock_fprog notify_filter(void)
{
	static struct sock_filter f[8 + 2 * NPATH + 8];
	size_t n = 0;
	f[n++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch));
	f[n++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0);
	f[n++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS);
	f[n++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr));
	for (size_t k = 0; k < NPATH; k++)
		f[n++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (unsigned)PATH_CALLS[k], 0, 1),
		f[n++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_USER_NOTIF);
	/* newfstatat(dirfd, path, buf, flags) and statx(dirfd, path, flags, ...) */
	f[n++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_newfstatat, 0, 2);
	f[n++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[3]));
	f[n++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, AT_EMPTY_PATH, 4, 3);
	f[n++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_statx, 0, 3);
	f[n++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[2]));
	f[n++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, AT_EMPTY_PATH, 1, 0);
	f[n++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_USER_NOTIF);
	f[n++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
	return (struct sock_fprog){(unsigned short)n, f};
}

static struct sock_fprog allow_filter(void)
{
	static struct sock_filter f[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	return (struct sock_fprog){sizeof f / sizeof f[0], f};
}

/* Serves notifications until every process under the filter is gone. */
static long supervise(int listener)
{
	long served = 0;
	for (;;) {
		struct pollfd p = {.fd = listener, .events = POLLIN};
		if (poll(&p, 1, -1) < 0) {
			if (errno == EINTR)
				continue;
			die("poll");
		}
		if (!(p.revents & POLLIN))
			return served; /* POLLHUP: no process left under the filter */
		struct seccomp_notif req;
		memset(&req, 0, sizeof(req));
		if (ioctl(listener, SECCOMP_IOCTL_NOTIF_RECV, &req) < 0) {
			if (errno == EINTR)
				continue;
			if (errno == ENOENT)
				continue; /* the caller went away meanwhile */
			die("SECCOMP_IOCTL_NOTIF_RECV");
		}
		struct seccomp_notif_resp resp = {.id = req.id, .flags = SECCOMP_USER_NOTIF_FLAG_CONTINUE};
		if (ioctl(listener, SECCOMP_IOCTL_NOTIF_SEND, &resp) == 0)
			served++;
	}
}

int main(int argc, char **argv)
{
	if (argc < 4 || strcmp(argv[2], "--") != 0) {
		fprintf(stderr, "usage: exec_floor filtered|notified -- PROGRAM [ARG...]\n");
		return 2;
	}
	int notified = strcmp(argv[1], "notified") == 0;
	if (!notified && strcmp(argv[1], "filtered") != 0) {
		fprintf(stderr, "exec_floor: unknown mode %s\n", argv[1]);
		return 2;
	}
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		die("socketpair");
	fflush(stdout);
	pid_t pid = fork();
	if (pid < 0)
		die("fork");
	if (pid == 0) {
		struct sock_fprog prog = notified ? notify_filter() : allow_filter();
		if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
			die("PR_SET_NO_NEW_PRIVS");
		long fd = syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER,
				  notified ? SECCOMP_FILTER_FLAG_NEW_LISTENER : 0, &prog);
		if (fd < 0)
			die("seccomp");
		if (notified) {
			send_fd(sv[0], (int)fd);
			close((int)fd);
			/* The supervisor is ready: its answer to this first call. */
			char ok;
			if (read(sv[0], &ok, 1) != 1)
				die("waiting for the supervisor");
		}
		close(sv[0]);
		close(sv[1]);
		execvp(argv[3], argv + 3);
		fprintf(stderr, "exec_floor: %s: %s\n", argv[3], strerror(errno));
		_exit(127);
	}
	close(sv[0]);
	long served = 0;
	if (notified) {
		int listener = recv_fd(sv[1]);
		if (listener < 0)
			die("receiving the listener");
		if (ioctl(listener, SECCOMP_IOCTL_NOTIF_SET_FLAGS, SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP, 0) < 0)
			fprintf(stderr, "exec_floor: no SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP (%s): measuring without it\n",
				strerror(errno));
		if (write(sv[1], "", 1) != 1)
			die("starting the child");
		close(sv[1]);
		served = supervise(listener);
	}
	int status;
	if (waitpid(pid, &status, 0) < 0)
		die("waitpid");
	fprintf(stderr, "notifications=%ld\n", served);
	if (WIFEXITED(status))
		return WEXITSTATUS(status);
	return 128 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
}
