/* The mediated calls about the guest's own processes, terminals and inotify
 * instances: pico_open("pid:N"), pico_tty_ioctl, pico_inotify and
 * pico_task_info.  Each acts on the caller's own objects only, found through
 * the host's /proc or copied from the caller (pidfd_getfd).  See serve.h. */
#define _GNU_SOURCE
#include "serve.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "denial.h"
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
long open_pidfd(struct call *c, const char *num, int flags, char *text, size_t cap)
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

/* Implements pico_tty_ioctl(fd, request, arg).  The monitor copies the
 * caller's fd (pidfd_getfd: the same open file), checks that it is a
 * character device of the run's own devpts, and makes the call on it. */
long serve_tty_ioctl(struct call *c, char *scratch)
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
		return pico_deny(PICO_DENY_HOST_TERMINAL, -ENOTTY);
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
int copy_guest_fd(struct call *c, int fd)
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
long serve_inotify(struct call *c, char *path)
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
		if (c->guest->inotify_instances >= PICO_INOTIFY_MAX_INSTANCES)
			return pico_deny(PICO_DENY_RUN_BOUND, -EMFILE);
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
		if (c->guest->inotify_watches >= PICO_INOTIFY_MAX_WATCHES)
			return pico_deny(PICO_DENY_RUN_BOUND, -ENOSPC);
	}
	int ifd = copy_guest_fd(c, (int)arg1);
	if (ifd < 0)
		return ifd == -EBADF ? -EBADF : ifd;
	if (!is_inotify_fd(ifd)) {
		close(ifd);
		return -EINVAL;
	}
	if (op == PICO_INOTIFY_ADD_WATCH) {
		ret = pico_fs_inotify_watch(c->guest->fs, path, ARG(3), ifd, mask);
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
long serve_task_info(struct call *c, char *scratch)
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

