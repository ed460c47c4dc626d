/* pidfds of the picoprocess's own processes.
 *
 * pidfd_open asks the monitor for "pid:N": the monitor finds N among the
 * caller's own pid namespace (walking it from its init) and hands back a
 * real pidfd, so poll, epoll and a blocking wait on it are the kernel's.
 * pidfd_send_signal is not in the ABI: the library OS remembers which
 * process each pidfd it obtained names, checks through the pidfd that the
 * process has not exited (POLLIN), and signals it with kill.  Differences
 * from Linux: between that check and the kill the pid could be reused (the
 * kernel's call closes that gap); a siginfo argument is refused (EINVAL);
 * a pidfd carried across execve is no longer known (EBADF).  A directory fd
 * of the guest's /proc/<pid> is taken for a pidfd, as Linux takes it, but
 * nothing about it shows that its process was reaped and the pid reused. */
#include "libos.h"

#define PIDFD_NONBLOCK_K O_NONBLOCK
#define PIDFD_THREAD_K O_EXCL

static struct {
	int lock;
	unsigned next;
	struct {
		uint64_t dev, ino;
		long pid;
	} e[64];
} pidfds;

static void pidfd_remember(long fd, long pid)
{
	struct stat st;
	if (sys2(__NR_fstat, fd, &st) < 0)
		return;
	while (__atomic_exchange_n(&pidfds.lock, 1, __ATOMIC_ACQUIRE))
		__asm__ volatile("pause");
	unsigned n = sizeof(pidfds.e) / sizeof(pidfds.e[0]), slot = pidfds.next++ % n;
	for (unsigned i = 0; i < n; i++)
		if (pidfds.e[i].pid && pidfds.e[i].dev == st.st_dev && pidfds.e[i].ino == st.st_ino)
			slot = i;
	pidfds.e[slot].dev = st.st_dev;
	pidfds.e[slot].ino = st.st_ino;
	pidfds.e[slot].pid = pid;
	__atomic_store_n(&pidfds.lock, 0, __ATOMIC_RELEASE);
}

long libos_pidfd_pid(long fd)
{
	struct stat st;
	long r = sys2(__NR_fstat, fd, &st), pid = -EBADF;
	if (r < 0)
		return r;
	while (__atomic_exchange_n(&pidfds.lock, 1, __ATOMIC_ACQUIRE))
		__asm__ volatile("pause");
	for (unsigned i = 0; i < sizeof(pidfds.e) / sizeof(pidfds.e[0]); i++)
		if (pidfds.e[i].pid && pidfds.e[i].dev == st.st_dev && pidfds.e[i].ino == st.st_ino)
			pid = pidfds.e[i].pid;
	__atomic_store_n(&pidfds.lock, 0, __ATOMIC_RELEASE);
	return pid;
}

/* Implements Linux syscall pidfd_open(2) for processes of the picoprocess. */
LIBOS_SYSCALL(pidfd_open)
{
	long pid = a0;
	unsigned flags = (unsigned)a1;
	if (flags & ~(unsigned)(PIDFD_NONBLOCK_K | PIDFD_THREAD_K))
		return -EINVAL;
	if ((int)pid <= 0 || pid != (int)pid)
		return -EINVAL;
	if (flags & PIDFD_THREAD_K)
		return -EINVAL; /* thread pidfds are not offered */
	long r = sys2(__NR_kill, pid, 0);
	if (r == -ESRCH)
		return r;
	char uri[32];
	struct strbuf sb;
	sb_init(&sb, uri, sizeof(uri));
	sb_add(&sb, "pid:");
	sb_addnum(&sb, (unsigned long)pid);
	r = pico_open(uri, sb.len, O_CLOEXEC | (flags & PIDFD_NONBLOCK_K), 0);
	if (r >= 0)
		pidfd_remember(r, pid);
	return r;
}

/* The pid a directory fd of the guest's /proc names ("/proc/N", as Linux
 * takes a /proc/<pid> fd for a pidfd), or 0. */
static long proc_dir_pid(long fd)
{
	char path[32];
	struct stat st;
	long n = libos_fd_path(fd, path, sizeof(path), &st);
	if (n <= 6 || (st.st_mode & S_IFMT) != S_IFDIR || memcmp(path, "/proc/", 6) != 0)
		return 0;
	long pid = 0;
	for (long i = 6; i < n; i++) {
		if (path[i] < '0' || path[i] > '9' || pid > 0x7fffffff / 10)
			return 0;
		pid = pid * 10 + (path[i] - '0');
	}
	return pid;
}

/* Implements Linux syscall pidfd_send_signal(2) (see above). */
LIBOS_SYSCALL(pidfd_send_signal)
{
	int sig = (int)a1;
	if (a3)
		return -EINVAL;
	if (a2)
		return -EINVAL; /* a siginfo of the caller's: not offered */
	if (sig < 0 || sig > 64)
		return -EINVAL;
	long pid = libos_pidfd_pid(a0);
	if (pid == -EBADF) {
		pid = proc_dir_pid(a0);
		if (pid > 0)
			/* Nothing shows whether that process has exited: kill
			 * answers ESRCH once it is reaped. */
			return sys2(__NR_kill, pid, sig);
		return -EBADF;
	}
	if (pid < 0)
		return pid;
	struct pollfd p = {(int)a0, POLLIN, 0};
	struct __kernel_timespec zero = {0, 0};
	long r = sys4(__NR_ppoll, &p, 1, &zero, 0);
	if (r < 0)
		return r;
	if (r > 0 && (p.revents & POLLIN)) {
		/* It has exited.  Linux answers 0 while it is a zombie (the
		 * signal does nothing) and ESRCH once reaped; the pid may be
		 * another process's by now, so nothing is sent either way. */
		r = sys2(__NR_kill, pid, 0);
		return r == -ESRCH ? r : 0;
	}
	return sys2(__NR_kill, pid, sig);
}
