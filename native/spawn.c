#define _GNU_SOURCE
#include "spawn.h"

#include <errno.h>
#include <fcntl.h>
#include <arpa/inet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <linux/audit.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "guestnet.h"
#include "picoproc_abi.h"

#ifndef CLONE_NEWCGROUP
#define CLONE_NEWCGROUP 0x02000000
#endif
#ifndef PR_CAP_AMBIENT
#define PR_CAP_AMBIENT 47
#define PR_CAP_AMBIENT_CLEAR_ALL 4
#endif

/* The kernel's struct for rt_sigaction (glibc's struct sigaction differs). */
struct kernel_sigaction {
	void *handler;
	unsigned long flags;
	void *restorer;
	uint64_t mask;
};

/* One message on the report channel (AF_UNIX SOCK_SEQPACKET):
 *   parent -> reaper: one byte, "the id maps and cgroups are in place, go on";
 *   guest  -> parent: {PICO_STEP_NONE, 0} once its filter is installed, with
 *                     the listener fd (SCM_RIGHTS) if one was asked for; the
 *                     kernel attaches the sender's credentials (SO_PASSCRED on
 *                     the parent's end), which is how the parent learns the
 *                     guest's host pid;
 *   reaper or guest -> parent: {step, errno} when a step failed.
 * The channel is close-on-exec in the guest and the reaper closes its copy
 * once it has confined itself, so EOF after the hello means "exec done". */
struct child_report {
	int step;
	int err;
};

/* reaper -> parent, before the guest exists: {REPORT_PROC_VIEW, 0} with an
 * fd on the guest's procfs (spec->proc_view). */
#define REPORT_PROC_VIEW 1000

static long raw(long nr, long a, long b, long c, long d, long e)
{
	return syscall(nr, a, b, c, d, e);
}

static void __attribute__((noreturn)) child_fail(int step)
{
	struct child_report rep = {step, errno};
	/* Best effort: if this write fails the parent still sees no hello. */
	ssize_t n = write(PICO_REPORT_FD, &rep, sizeof(rep));
	(void)n;
	_exit(127);
}

/* Writes a whole small buffer to a file (no libc stdio: async-signal-safe). */
static int write_file(const char *path, const char *data, size_t len)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	ssize_t n = write(fd, data, len);
	int saved = errno;
	close(fd);
	if (n != (ssize_t)len) {
		errno = n < 0 ? saved : EIO;
		return -1;
	}
	return 0;
}

/* Decimal (or octal) text of v into buf; returns the length.  Used where
 * snprintf is not async-signal-safe (children of a threaded interpreter). */
static size_t format_uint(char *buf, uint64_t v, unsigned base)
{
	char tmp[24];
	size_t n = 0;
	do {
		tmp[n++] = (char)('0' + v % base);
		v /= base;
	} while (v);
	for (size_t i = 0; i < n; i++)
		buf[i] = tmp[n - 1 - i];
	buf[n] = 0;
	return n;
}

/* "<id> <id> 1\n": the guest's id inside the namespace is its host id. */
static size_t format_id_map(char *buf, unsigned id)
{
	size_t n = format_uint(buf, id, 10);
	buf[n++] = ' ';
	n += format_uint(buf + n, id, 10);
	memcpy(buf + n, " 1\n", 4);
	return n + 3;
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

static int send_with_fd(int sock, const void *data, size_t len, int fd);

/* The guest's first message: "my filter is in force" (+ the listener). */
static int send_hello(int listener)
{
	struct child_report rep = {PICO_STEP_NONE, 0};
	return send_with_fd(PICO_REPORT_FD, &rep, sizeof(rep), listener);
}

/* Reads one report; returns its size (0 at EOF), stores a passed fd and the
 * sender's pid (in our pid namespace) from its credentials. */
static ssize_t recv_report(int sock, struct child_report *rep, int *fd_out, pid_t *sender)
{
	struct iovec iov = {rep, sizeof(*rep)};
	union {
		char buf[CMSG_SPACE(sizeof(struct ucred)) + CMSG_SPACE(sizeof(int) * 4)];
		struct cmsghdr align;
	} u;
	struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf,
			     .msg_controllen = sizeof(u.buf)};
	ssize_t n;
	do
		n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
	while (n < 0 && errno == EINTR);
	if (n <= 0)
		return n;
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
		if (c->cmsg_level != SOL_SOCKET)
			continue;
		if (c->cmsg_type == SCM_RIGHTS) {
			/* Take the first fd; close any extra (never expected). */
			size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
			for (size_t i = 0; i < count; i++) {
				int fd;
				memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
				if (*fd_out < 0)
					*fd_out = fd;
				else
					close(fd);
			}
		} else if (c->cmsg_type == SCM_CREDENTIALS &&
			   c->cmsg_len == CMSG_LEN(sizeof(struct ucred))) {
			struct ucred cred;
			memcpy(&cred, CMSG_DATA(c), sizeof(cred));
			*sender = cred.pid;
		}
	}
	if (msg.msg_flags & MSG_CTRUNC)
		return -2; /* an fd was not received: no room for it here (EMFILE) */
	return n;
}

/* ---- the reaper's confinement steps -------------------------------------- */

/* An empty root: make every inherited mount private (so nothing we do here
 * propagates to the host), attach a read-only empty tmpfs on top of "/",
 * pivot into it and lazily detach the old root with everything under it.
 * Afterwards the mount namespace holds exactly one mount, and it is empty. */
static int make_empty_root(void)
{
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
		return -1;
	int fs = fsopen("tmpfs", FSOPEN_CLOEXEC);
	if (fs < 0)
		return -1;
	if (fsconfig(fs, FSCONFIG_SET_STRING, "mode", "0555", 0) < 0 ||
	    fsconfig(fs, FSCONFIG_CMD_CREATE, NULL, NULL, 0) < 0) {
		close(fs);
		return -1;
	}
	int mnt = fsmount(fs, FSMOUNT_CLOEXEC,
			  MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC);
	close(fs);
	if (mnt < 0)
		return -1;
	/* Path lookup of "/" starts at the process root and does not follow a
	 * mount stacked on it, so old_root is the old root even after this. */
	int old_root = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
	int rc = -1;
	if (old_root < 0)
		goto out;
	if (move_mount(mnt, "", AT_FDCWD, "/", MOVE_MOUNT_F_EMPTY_PATH) < 0 || fchdir(mnt) < 0)
		goto out;
	/* new_root == put_old: the old root ends up stacked on the new one. */
	if (raw(SYS_pivot_root, (long)".", (long)".", 0, 0, 0) < 0)
		goto out;
	if (fchdir(old_root) < 0 || umount2(".", MNT_DETACH) < 0 || chdir("/") < 0)
		goto out;
	rc = 0;
out:
	if (old_root >= 0)
		close(old_root);
	close(mnt);
	return rc;
}

/* A procfs of the pid namespace the reaper is pid 1 of, as a detached
 * mount (it never appears in any mount table): the monitor reads the
 * guest's processes there, never the host's.  It must be made while the
 * host's /proc is still visible in this mount namespace (the kernel lets a
 * user namespace mount procfs only then) and before capabilities go.
 * subset=pid (5.8) leaves out everything but the process directories; -1
 * when the kernel refuses. */
static int make_proc_view(void)
{
	int fs = fsopen("proc", FSOPEN_CLOEXEC);
	if (fs < 0)
		return -1;
	int mnt = -1;
	/* An older kernel without subset=pid: the monitor opens only process
	 * directories anyway. */
	(void)fsconfig(fs, FSCONFIG_SET_STRING, "subset", "pid", 0);
	if (fsconfig(fs, FSCONFIG_CMD_CREATE, NULL, NULL, 0) == 0)
		mnt = fsmount(fs, FSMOUNT_CLOEXEC,
			      MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC);
	close(fs);
	return mnt;
}

/* No capabilities at all, in any set, for the reaper and (by inheritance)
 * the guest; the bounding set is emptied first while CAP_SETPCAP remains. */
static int drop_capabilities(void)
{
	for (int cap = 0; cap < 64; cap++) {
		if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0) {
			if (errno == EINVAL)
				break; /* past the kernel's last capability */
			return -1;
		}
	}
	if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL)
		return -1;
	struct __user_cap_header_struct hdr = {_LINUX_CAPABILITY_VERSION_3, 0};
	struct __user_cap_data_struct data[2];
	memset(data, 0, sizeof(data));
	return (int)raw(SYS_capset, (long)&hdr, (long)data, 0, 0, 0);
}

_Static_assert(PICO_SPAWN_MAX_CHANNELS == PICO_AREA_SLOTS, "a channel for every slot");
/* Every number from PICO_RESERVED_FD_BASE up is the guest's own (the filter
 * traps close and dup3 on all of them), so there is no gap between them. */
_Static_assert(PICO_GUESTNET_FD < PICO_STATUS_FD && PICO_STATUS_FD < PICO_REPORT_FD &&
		       PICO_REPORT_FD < PICO_RESERVED_FD_BASE && PICO_CHANNEL_FD == PICO_RESERVED_FD_BASE &&
		       PICO_CHANNEL_FD + PICO_AREA_SLOTS == PICO_AREA_FD && PICO_AREA_FD + 1 == PICO_LOADER_FD,
	       "the reaper's fds lie just below the guest's reserved ones");

/* Moves the image to the loader fd, the argument area and its channels to
 * their numbers and the granted stdio to 0..2, and closes every other fd
 * except the report channel and the status pipe. */
static void place_fds(const struct pico_spawn_spec *spec)
{
	/* Move the image fd out of the way first: it may sit on 0..2. */
	int image_flags = spec->keep_image_fd ? 0 : O_CLOEXEC;
	if (spec->image_fd != PICO_LOADER_FD) {
		if (raw(SYS_dup3, spec->image_fd, PICO_LOADER_FD, image_flags, 0, 0) < 0)
			child_fail(PICO_STEP_LOADER_FD);
	} else if (fcntl(PICO_LOADER_FD, F_SETFD, image_flags ? FD_CLOEXEC : 0) < 0) {
		child_fail(PICO_STEP_LOADER_FD);
	}
	/* pico_spawn moved the sources off the fixed numbers: nothing is
	 * clobbered, and these survive exec. */
	if (spec->area_fd >= 0 && raw(SYS_dup3, spec->area_fd, PICO_AREA_FD, 0, 0, 0) < 0)
		child_fail(PICO_STEP_LOADER_FD);
	for (int i = 0; i < spec->n_channels; i++)
		if (raw(SYS_dup3, spec->channel_fds[i], PICO_CHANNEL_FD + i, 0, 0, 0) < 0)
			child_fail(PICO_STEP_LOADER_FD);
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
	/* Nothing else is inherited (docs/ARCHITECTURE.md, invariant 5).  The
	 * socket helper's channel (below the status pipe) is close-on-exec: the
	 * guest never has it. */
	if (raw(SYS_close_range, 3, PICO_GUESTNET_FD - 1, 0, 0, 0) < 0 ||
	    raw(SYS_close_range, PICO_LOADER_FD + 1, ~0U, 0, 0, 0) < 0)
		child_fail(PICO_STEP_CLOSE_FDS);
	for (int fd = PICO_RESERVED_FD_BASE; fd < PICO_LOADER_FD; fd++)
		if (!(fd == PICO_AREA_FD && spec->area_fd >= 0) &&
		    !(fd >= PICO_CHANNEL_FD && fd < PICO_CHANNEL_FD + spec->n_channels))
			raw(SYS_close, fd, 0, 0, 0, 0);
	/* Without a helper that number holds whatever the monitor had there. */
	if (!spec->guestnet)
		raw(SYS_close, PICO_GUESTNET_FD, 0, 0, 0, 0);
}

/* The reaper's own filter, written by hand because it is tiny and fixed:
 * after it has forked the guest the reaper only waits, forwards signals,
 * reports a status and exits; its socket helper thread (guestnet.c) makes
 * inet and unix sockets, sets options, binds, listens, connects, and talks
 * to the monitor.  Anything else kills it (and so the run). */
#define ALLOW_NR(nr) BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (nr), 0, 1), BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW)
#define ARG0_LO (offsetof(struct seccomp_data, args[0]))
#define ARG0_HI (offsetof(struct seccomp_data, args[0]) + 4)
static const struct sock_filter reaper_filter[] = {
	BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
	BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
	BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS),
	BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
	/* socket(): AF_UNIX, AF_INET or AF_INET6 only (the block returns). */
	BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_socket, 0, 8),
	BPF_STMT(BPF_LD | BPF_W | BPF_ABS, ARG0_HI),
	BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 0, 0, 4),
	BPF_STMT(BPF_LD | BPF_W | BPF_ABS, ARG0_LO),
	BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AF_UNIX, 3, 0),
	BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AF_INET, 2, 0),
	BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AF_INET6, 1, 0),
	BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS),
	BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	ALLOW_NR(__NR_setsockopt),
	ALLOW_NR(__NR_bind),
	ALLOW_NR(__NR_listen),
	ALLOW_NR(__NR_connect),
	ALLOW_NR(__NR_sendmsg),
	ALLOW_NR(__NR_recvmsg),
	ALLOW_NR(__NR_wait4),
	ALLOW_NR(__NR_kill),
	ALLOW_NR(__NR_rt_sigreturn),
	ALLOW_NR(__NR_restart_syscall),
	ALLOW_NR(__NR_write),
	ALLOW_NR(__NR_close),
	ALLOW_NR(__NR_exit_group),
	ALLOW_NR(__NR_exit),
	BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS),
};

/* Signals the reaper passes on to the guest.  As pid 1 of its namespace the
 * reaper would otherwise ignore them (init gets only signals it handles). */
static const int forwarded_signals[] = {SIGHUP,	 SIGINT,  SIGQUIT, SIGUSR1, SIGUSR2, SIGALRM,
					SIGTERM, SIGCONT, SIGTSTP, SIGTTIN, SIGTTOU, SIGWINCH,
					SIGXCPU, SIGVTALRM, SIGPROF};

/* The guest's own loopback: a new network namespace has "lo" down (and no
 * other interface).  Up, it answers on 127.0.0.0/8 and, where IPv6 is on,
 * ::1.  Needs CAP_NET_ADMIN in the namespace's user namespace: the reaper
 * has it until it switches identity and drops its capabilities. */
static int loopback_up(void)
{
	struct ifreq ifr;
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	int rc = -1;

	if (fd < 0)
		return -1;
	memset(&ifr, 0, sizeof(ifr));
	memcpy(ifr.ifr_name, "lo", 3);
	if (ioctl(fd, SIOCGIFFLAGS, &ifr) == 0) {
		ifr.ifr_flags |= IFF_UP;
		rc = ioctl(fd, SIOCSIFFLAGS, &ifr);
	}
	int saved = errno;
	close(fd);
	errno = saved;
	return rc;
}

_Static_assert(sizeof(((struct pico_spawn_spec *)0)->udp_proxies) / sizeof(struct pico_udp_proxy) ==
		       PICO_MAX_UDP_PROXIES,
	       "spawn.h spells PICO_MAX_UDP_PROXIES out for cffi");

/* <linux/ipv6.h>'s, which glibc's headers do not declare. */
struct in6_ifreq_k {
	struct in6_addr addr;
	uint32_t prefixlen;
	int ifindex;
};

/* Gives the guest's loopback one more address (a /32 or /128), so that a
 * UDP proxy can be bound to a granted destination's own address. */
static int add_loopback_address(const struct pico_udp_proxy *px, int label)
{
	struct ifreq ifr;
	int fd = socket(px->family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	int rc = -1;

	if (fd < 0)
		return -1;
	memset(&ifr, 0, sizeof(ifr));
	if (px->family == AF_INET) {
		struct sockaddr_in *sin = (struct sockaddr_in *)&ifr.ifr_addr;
		/* An alias "lo:N"; its mask, classful at first, narrowed to /32. */
		memcpy(ifr.ifr_name, "lo:", 3);
		format_uint(ifr.ifr_name + 3, (uint64_t)label, 10);
		sin->sin_family = AF_INET;
		memcpy(&sin->sin_addr, px->addr, 4);
		if (ioctl(fd, SIOCSIFADDR, &ifr) == 0) {
			memset(&sin->sin_addr, 0xff, 4);
			rc = ioctl(fd, SIOCSIFNETMASK, &ifr);
		}
	} else {
		struct in6_ifreq_k req;
		memcpy(ifr.ifr_name, "lo", 3);
		if (ioctl(fd, SIOCGIFINDEX, &ifr) == 0) {
			memset(&req, 0, sizeof(req));
			memcpy(&req.addr, px->addr, 16);
			req.prefixlen = 128;
			req.ifindex = ifr.ifr_ifindex;
			rc = ioctl(fd, SIOCSIFADDR, &req);
		}
	}
	if (rc < 0 && errno == EEXIST)
		rc = 0; /* two grants of one address */
	int saved = errno;
	close(fd);
	errno = saved;
	return rc;
}

static int is_loopback_address(const struct pico_udp_proxy *px)
{
	static const unsigned char v6_loopback[16] = {[15] = 1};
	return px->family == AF_INET ? px->addr[0] == 127 : !memcmp(px->addr, v6_loopback, 16);
}

/* The UDP proxies (spec->udp_proxies): each address on the guest's
 * loopback, a UDP socket bound there, all sent to the monitor in one
 * message on the socket helper's channel.  Before the identity switch: a
 * granted port below 1024 needs CAP_NET_BIND_SERVICE, and the addresses
 * CAP_NET_ADMIN. */
static void make_udp_proxies(const struct pico_spawn_spec *spec)
{
	int fds[PICO_MAX_UDP_PROXIES];
	int n = spec->n_udp_proxies, one = 1;

	for (int i = 0; i < n; i++) {
		const struct pico_udp_proxy *px = &spec->udp_proxies[i];
		struct sockaddr_storage ss;
		socklen_t len;

		memset(&ss, 0, sizeof(ss));
		if (px->family == AF_INET) {
			struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
			sin->sin_family = AF_INET;
			sin->sin_port = htons((uint16_t)px->port);
			memcpy(&sin->sin_addr, px->addr, 4);
			len = sizeof(*sin);
		} else {
			struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
			sin6->sin6_family = AF_INET6;
			sin6->sin6_port = htons((uint16_t)px->port);
			memcpy(&sin6->sin6_addr, px->addr, 16);
			len = sizeof(*sin6);
		}
		if (!is_loopback_address(px) && add_loopback_address(px, i + 1) < 0)
			child_fail(PICO_STEP_UDP_PROXY);
		fds[i] = socket(px->family, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
		if (fds[i] < 0 ||
		    (px->family == AF_INET6 &&
		     setsockopt(fds[i], IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) < 0) ||
		    bind(fds[i], (struct sockaddr *)&ss, len) < 0)
			child_fail(PICO_STEP_UDP_PROXY);
	}
	union {
		char buf[CMSG_SPACE(sizeof(int) * PICO_MAX_UDP_PROXIES)];
		struct cmsghdr align;
	} u;
	struct iovec iov = {&n, sizeof(n)};
	struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf,
			     .msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)n)};
	memset(&u, 0, sizeof(u));
	struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)n);
	memcpy(CMSG_DATA(c), fds, sizeof(int) * (size_t)n);
	if (sendmsg(PICO_GUESTNET_FD, &msg, MSG_NOSIGNAL) != (ssize_t)sizeof(n))
		child_fail(PICO_STEP_UDP_PROXY);
	for (int i = 0; i < n; i++)
		close(fds[i]);
}

#define GUESTNET_STACK (64 * 1024)

static int guestnet_main(void *unused)
{
	(void)unused;
	pico_guestnet_serve(PICO_GUESTNET_FD);
	return 0; /* the monitor is gone: this thread ends, the reaper goes on */
}

/* Starts the socket helper as a thread of the reaper (a thread, not a
 * process: the guest's pid namespace shows no extra process, and it cannot
 * be signalled apart from the reaper).  It inherits a full signal mask, so
 * the reaper's forwarding handlers never run on it, and the reaper's
 * identity, capabilities (none) and no_new_privs. */
static int start_guestnet_helper(void)
{
	uint64_t all = ~0ull, old;
	void *stack = mmap(NULL, GUESTNET_STACK, PROT_READ | PROT_WRITE,
			   MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
	if (stack == MAP_FAILED)
		return -1;
	if (raw(SYS_rt_sigprocmask, SIG_SETMASK, (long)&all, (long)&old, 8, 0) < 0)
		return -1;
	int tid = clone(guestnet_main, (char *)stack + GUESTNET_STACK,
			CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SIGHAND | CLONE_THREAD | CLONE_SYSVSEM,
			NULL);
	int saved = errno;
	raw(SYS_rt_sigprocmask, SIG_SETMASK, (long)&old, 0, 8, 0);
	errno = saved;
	return tid < 0 ? -1 : 0;
}

static volatile pid_t reaper_guest_pid;

/* A signal the kernel sent to the whole foreground process group (a
 * terminal's Ctrl-C, Ctrl-\, Ctrl-Z, hang-up, resize: SI_KERNEL) reached
 * the guest too, which shares the monitor's process group: passing it on
 * would deliver it twice. */
static void forward_signal(int sig, siginfo_t *info, void *context)
{
	(void)context;
	int saved = errno;
	if (reaper_guest_pid > 0 && !(info && info->si_code == SI_KERNEL))
		kill(reaper_guest_pid, sig);
	errno = saved;
}

static void __attribute__((noreturn)) guest_main(const struct pico_spawn_spec *spec)
{
	/* The reaper's forwarding handlers are installed only after this fork,
	 * so every disposition here is already the default. */

	/* rlimits for the guest only: the reaper still shares the monitor's
	 * large address space (RLIMIT_AS would choke it) and never forks again.
	 * After the fds are placed: a low RLIMIT_NOFILE would refuse dup3 to the
	 * loader fd, but fds already above the limit stay valid. */
	for (int i = 0; i < spec->n_rlimits; i++) {
		struct rlimit64 rl = {spec->rlimits[i].soft, spec->rlimits[i].hard};
		if (raw(SYS_prlimit64, 0, spec->rlimits[i].resource, (long)&rl, 0, 0) < 0)
			child_fail(PICO_STEP_RLIMITS);
	}
	struct sock_fprog prog = {
		.len = (unsigned short)spec->filter_len,
		.filter = (struct sock_filter *)spec->filter,
	};
	long listener = raw(SYS_seccomp, SECCOMP_SET_MODE_FILTER, spec->seccomp_flags, (long)&prog, 0, 0);
	if (listener < 0)
		child_fail(PICO_STEP_SECCOMP);
	if (!(spec->seccomp_flags & SECCOMP_FILTER_FLAG_NEW_LISTENER))
		listener = -1;
	/* sendmsg is a direct call, so the filter already in force allows it. */
	if (send_hello((int)listener) < 0)
		child_fail(PICO_STEP_SECCOMP);
	if (listener >= 0)
		raw(SYS_close, listener, 0, 0, 0, 0);
	/* The only exec the filter allows: the loader fd, empty path. */
	raw(SYS_execveat, PICO_LOADER_FD, (long)"", (long)spec->argv, (long)spec->envp, AT_EMPTY_PATH);
	child_fail(PICO_STEP_EXEC);
}

#define GUEST_SETUP_STACK (64 * 1024)

static int guest_entry(void *spec)
{
	guest_main((const struct pico_spawn_spec *)spec);
}

static int send_with_fd(int sock, const void *data, size_t len, int fd);

/* The picoprocess's own devpts: a new instance (never the host's ptys),
 * made by the reaper in the guest's user namespace while it still has the
 * capability to, as a detached mount whose root goes to the monitor: the
 * monitor opens the guest's ptmx and ptys there.  At most `max` ptys: every
 * devpts instance but the host's shares the kernel's pty budget. */
static int devpts_dir_fd(int max)
{
	char buf[24];
	int fs = fsopen("devpts", FSOPEN_CLOEXEC);
	if (fs < 0)
		return -1;
	int mnt = -1, dir = -1;
	format_uint(buf, (uint64_t)max, 10);
	if (fsconfig(fs, FSCONFIG_SET_STRING, "max", buf, 0) < 0 ||
	    fsconfig(fs, FSCONFIG_SET_STRING, "ptmxmode", "0666", 0) < 0 ||
	    fsconfig(fs, FSCONFIG_SET_STRING, "mode", "0620", 0) < 0 ||
	    fsconfig(fs, FSCONFIG_CMD_CREATE, NULL, NULL, 0) < 0)
		goto out;
	mnt = fsmount(fs, FSMOUNT_CLOEXEC, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC);
	if (mnt < 0)
		goto out;
	dir = openat(mnt, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
out:;
	int saved = errno;
	if (mnt >= 0)
		close(mnt);
	close(fs);
	errno = saved;
	return dir;
}

/* A kernel that refuses a devpts here leaves the run without ptys
 * (opening /dev/ptmx then answers ENOENT), not without a run. */
static void send_devpts(const struct pico_spawn_spec *spec)
{
	int dir = devpts_dir_fd(spec->devpts_max);
	if (dir < 0)
		return;
	struct child_report rep = {PICO_STEP_DEVPTS, 0};
	if (send_with_fd(PICO_REPORT_FD, &rep, sizeof(rep), dir) < 0)
		child_fail(PICO_STEP_DEVPTS);
	close(dir);
}

static void __attribute__((noreturn)) reaper_main(const struct pico_spawn_spec *spec, int parent_pidfd)
{
	/* Into the run's cgroup before anything else, so that nothing we do
	 * or fork escapes it.  The fds were opened by the monitor: the kernel
	 * checks the opener's credentials, not ours. */
	if (spec->cgroup_join_self) {
		for (int i = 0; i < spec->n_cgroup_procs_fds; i++)
			if (pwrite(spec->cgroup_procs_fds[i], "0", 1, 0) != 1)
				child_fail(PICO_STEP_CGROUP);
	}

	/* Wait until the parent has written the id maps (and, unless we joined
	 * ourselves, put us into the run's cgroup): before that we have no
	 * identity to switch to. */
	char go;
	ssize_t n;
	do
		n = recv(PICO_REPORT_FD, &go, 1, 0);
	while (n < 0 && errno == EINTR);
	if (n != 1)
		_exit(127); /* the parent gave up on us (or died): nothing to report to */

	/* Joining: every namespace of the running picoprocess at once (the
	 * user namespace first, so the others are entered with its
	 * capabilities); the pid namespace applies to the guest we create. */
	if (spec->join_namespaces &&
	    raw(SYS_setns, spec->join_pidfd,
		CLONE_NEWUSER | CLONE_NEWNS | (spec->share_net ? 0 : CLONE_NEWNET) | CLONE_NEWIPC |
		    CLONE_NEWUTS | CLONE_NEWCGROUP | CLONE_NEWPID,
		0, 0, 0) < 0)
		child_fail(PICO_STEP_JOIN);

	/* Before the identity switch: that drops the capability it needs. */
	if ((spec->clone_flags & CLONE_NEWNET) && loopback_up() < 0)
		child_fail(PICO_STEP_LOOPBACK);
	if (spec->n_udp_proxies > 0)
		make_udp_proxies(spec);
	if (spec->devpts_max > 0 && !spec->join_namespaces)
		send_devpts(spec);

	if (spec->identity_mode == PICO_IDENTITY_SWITCH &&
	    ((spec->clone_flags & CLONE_NEWUSER) || spec->join_namespaces)) {
		/* raw calls: glibc's set*id broadcast to the threads it believes exist,
		 * and after a raw clone of a threaded interpreter they do not. */
		if (raw(SYS_setgroups, 0, 0, 0, 0, 0) < 0 ||
		    raw(SYS_setresgid, spec->guest_gid, spec->guest_gid, spec->guest_gid, 0, 0) < 0 ||
		    raw(SYS_setresuid, spec->guest_uid, spec->guest_uid, spec->guest_uid, 0, 0) < 0)
			child_fail(PICO_STEP_IDENTITY);
	}

	/* After the identity switch: a change of euid clears the parent-death
	 * signal.  The monitor may have died before prctl; its pidfd (opened
	 * before clone: getppid() is 0 for a namespace's init) says so. */
	if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0)
		child_fail(PICO_STEP_PDEATHSIG);
	if (parent_pidfd >= 0) {
		struct pollfd p = {parent_pidfd, POLLIN, 0};
		if (poll(&p, 1, 0) != 0) {
			errno = ESRCH;
			child_fail(PICO_STEP_PDEATHSIG);
		}
	}

	if (spec->cgroup_ns && unshare(CLONE_NEWCGROUP) < 0)
		child_fail(PICO_STEP_CGROUP_NS);
	if (spec->hostname && sethostname(spec->hostname, strlen(spec->hostname)) < 0)
		child_fail(PICO_STEP_HOSTNAME);
	if (spec->proc_view) {
		int proc = make_proc_view();
		if (proc >= 0) {
			struct child_report rep = {REPORT_PROC_VIEW, 0};
			ssize_t n = send_with_fd(PICO_REPORT_FD, &rep, sizeof(rep), proc);
			(void)n;
			close(proc);
		}
	}
	if (spec->empty_root && make_empty_root() < 0)
		child_fail(PICO_STEP_EMPTY_ROOT);

	place_fds(spec);

	if (drop_capabilities() < 0)
		child_fail(PICO_STEP_CAPS);
	if (reset_signals() < 0)
		child_fail(PICO_STEP_SIGNALS);
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		child_fail(PICO_STEP_NO_NEW_PRIVS);

	/* vfork-style (CLONE_VM | CLONE_VFORK, own stack): copying the page
	 * tables of the interpreter's address space a second time would cost
	 * more than the rest of the spawn.  The guest only reads the spec and
	 * makes raw calls until it execs; we resume when it has.  glibc's
	 * clone() is a bare wrapper: no atfork handlers run. */
	void *stack = mmap(NULL, GUEST_SETUP_STACK, PROT_READ | PROT_WRITE,
			   MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
	if (stack == MAP_FAILED)
		child_fail(PICO_STEP_FORK_GUEST);
	int guest = clone(guest_entry, (char *)stack + GUEST_SETUP_STACK, CLONE_VM | CLONE_VFORK | SIGCHLD,
			  (void *)spec);
	if (guest < 0)
		child_fail(PICO_STEP_FORK_GUEST);
	reaper_guest_pid = (pid_t)guest;

	if (spec->guestnet && start_guestnet_helper() < 0)
		child_fail(PICO_STEP_GUESTNET);

	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = forward_signal;
	sa.sa_flags = SA_RESTART | SA_SIGINFO;
	for (size_t i = 0; i < sizeof(forwarded_signals) / sizeof(forwarded_signals[0]); i++)
		if (sigaction(forwarded_signals[i], &sa, NULL) < 0)
			child_fail(PICO_STEP_SIGNALS);

	struct sock_fprog prog = {
		.len = (unsigned short)(sizeof(reaper_filter) / sizeof(reaper_filter[0])),
		.filter = (struct sock_filter *)reaper_filter,
	};
	/* TSYNC: the socket helper thread gets it too. */
	if (raw(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_TSYNC, (long)&prog, 0, 0) != 0)
		child_fail(PICO_STEP_REAPER_FILTER);

	/* From here on the reaper holds only the status pipe (and its helper
	 * thread the channel to the monitor). */
	close(PICO_REPORT_FD);
	close(PICO_LOADER_FD);
	for (int fd = PICO_CHANNEL_FD; fd <= PICO_AREA_FD; fd++)
		close(fd); /* the argument area's: the guest has its own copies */
	close(0);
	close(1);
	close(2);

	for (;;) {
		int status;
		pid_t pid = (pid_t)raw(SYS_wait4, -1, (long)&status, __WALL, 0, 0);
		if (pid < 0) {
			if (errno == EINTR)
				continue;
			_exit(127); /* ECHILD without the guest: cannot happen */
		}
		if (pid != reaper_guest_pid)
			continue; /* an orphan re-parented to us: reaped, nothing else */
		/* The monitor decodes the guest's own status from the pipe: pid 1
		 * cannot re-raise a fatal signal on itself. */
		ssize_t w = write(PICO_STATUS_FD, &status, sizeof(status));
		(void)w;
		/* Exiting kills whatever is left in the namespace. */
		if (WIFEXITED(status))
			_exit(WEXITSTATUS(status));
		_exit(128 + WTERMSIG(status));
	}
}

/* ---- the parent side ----------------------------------------------------- */

static int write_id_maps(pid_t pid, const struct pico_spawn_spec *spec)
{
	char path[64];
	char map[64];
	size_t len;
	if (spec->identity_mode == PICO_IDENTITY_SELF) {
		/* An unprivileged writer may map only its own ids, and the gid map
		 * only once setgroups is denied. */
		snprintf(path, sizeof(path), "/proc/%d/setgroups", (int)pid);
		if (write_file(path, "deny", 4) < 0)
			return -1;
	}
	len = format_id_map(map, (unsigned)spec->guest_uid);
	snprintf(path, sizeof(path), "/proc/%d/uid_map", (int)pid);
	if (write_file(path, map, len) < 0)
		return -1;
	len = format_id_map(map, (unsigned)spec->guest_gid);
	snprintf(path, sizeof(path), "/proc/%d/gid_map", (int)pid);
	return write_file(path, map, len);
}

static int join_cgroups(pid_t pid, const struct pico_spawn_spec *spec)
{
	char buf[24];
	size_t len = format_uint(buf, (uint64_t)pid, 10);
	for (int i = 0; i < spec->n_cgroup_procs_fds; i++) {
		if (pwrite(spec->cgroup_procs_fds[i], buf, len, 0) != (ssize_t)len)
			return -1;
	}
	return 0;
}

/* The reaper's UDP proxies, sent before it forked the guest: in the channel
 * by now.  0, or -1 with errno (EPROTO: not the sockets asked for). */
static int receive_proxies(int chan, int want, struct pico_spawn_result *result)
{
	int count = 0;
	union {
		char buf[CMSG_SPACE(sizeof(int) * PICO_MAX_UDP_PROXIES)];
		struct cmsghdr align;
	} u;
	struct iovec iov = {&count, sizeof(count)};
	struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf,
			     .msg_controllen = sizeof(u.buf)};
	ssize_t n;

	do
		n = recvmsg(chan, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return -1;
	struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
	size_t got = c && c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS
			     ? (c->cmsg_len - CMSG_LEN(0)) / sizeof(int)
			     : 0;
	for (size_t i = 0; i < got && i < PICO_MAX_UDP_PROXIES; i++)
		memcpy(&result->proxy_fds[i], CMSG_DATA(c) + i * sizeof(int), sizeof(int));
	if (n != (ssize_t)sizeof(count) || count != want || got != (size_t)want ||
	    (msg.msg_flags & MSG_CTRUNC)) {
		for (size_t i = 0; i < got && i < PICO_MAX_UDP_PROXIES; i++)
			close(result->proxy_fds[i]);
		errno = EPROTO;
		return -1;
	}
	result->n_proxy_fds = want;
	return 0;
}

/* The child puts the status and report ends and the image on fixed numbers
 * (PICO_GUESTNET_FD .. PICO_LOADER_FD) first: an fd it still needs that sits
 * there would be clobbered.  A monitor serving many guests holds a thousand
 * fds and more, so the numbers it gets can be those: such an fd is
 * duplicated above them for the spawn.  moved == NULL: *fd is our own (the
 * original is closed); otherwise the caller's (the copy is added to
 * moved[], which pico_spawn closes).  0, or -1 with errno (EMFILE: no room
 * above). */
static int move_off_fixed(int *fd, int *moved, int *nmoved)
{
	if (*fd < PICO_GUESTNET_FD || *fd > PICO_LOADER_FD)
		return 0;
	int copy = fcntl(*fd, F_DUPFD_CLOEXEC, PICO_LOADER_FD + 1);
	if (copy < 0)
		return -1;
	if (moved)
		moved[(*nmoved)++] = copy;
	else
		close(*fd);
	*fd = copy;
	return 0;
}

int pico_spawn(const struct pico_spawn_spec *caller_spec, struct pico_spawn_result *result)
{
	int sv[2] = {-1, -1}, st[2] = {-1, -1}, gn[2] = {-1, -1}, parent_pidfd = -1;
	struct pico_spawn_spec local = *caller_spec;
	const struct pico_spawn_spec *spec = &local;
	int moved[16], nmoved = 0;
	memset(result, 0, sizeof(*result));
	result->listener_fd = -1;
	result->status_fd = -1;
	result->guestnet_fd = -1;
	result->proc_fd = -1;
	result->devpts_fd = -1;
	if (spec->filter_len == 0 || spec->filter_len > BPF_MAXINSNS || spec->n_rlimits < 0 ||
	    spec->n_rlimits > 16 || spec->n_cgroup_procs_fds < 0 || spec->n_cgroup_procs_fds > 4 ||
	    (spec->empty_root && !(spec->clone_flags & CLONE_NEWNS)) ||
	    (spec->guestnet && !(spec->clone_flags & CLONE_NEWNET) && !spec->share_net &&
	     !spec->join_namespaces) ||
	    (spec->share_net && (spec->clone_flags & CLONE_NEWNET)) || spec->n_udp_proxies < 0 ||
	    spec->n_udp_proxies > PICO_MAX_UDP_PROXIES || (spec->n_udp_proxies && !spec->guestnet) ||
	    (spec->join_namespaces && (spec->clone_flags || spec->empty_root || spec->cgroup_ns ||
				       spec->hostname || spec->join_pidfd < 0 ||
				       /* its procfs would be of the reaper's own pid
					* namespace, the caller's, not the guest's */
				       spec->proc_view))) {
		result->step = PICO_STEP_SETUP;
		result->err = EINVAL;
		return -1;
	}
	parent_pidfd = (int)raw(SYS_pidfd_open, getpid(), 0, 0, 0, 0);
	if (parent_pidfd < 0 || socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0 ||
	    pipe2(st, O_CLOEXEC) < 0 ||
	    (spec->guestnet && socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, gn) < 0))
		goto setup_failed;
	int one = 1;
	if (setsockopt(sv[0], SOL_SOCKET, SO_PASSCRED, &one, sizeof(one)) < 0)
		goto setup_failed;
	if (move_off_fixed(&local.image_fd, moved, &nmoved) < 0 ||
	    move_off_fixed(&local.stdio[0], moved, &nmoved) < 0 ||
	    move_off_fixed(&local.stdio[1], moved, &nmoved) < 0 ||
	    move_off_fixed(&local.stdio[2], moved, &nmoved) < 0 ||
	    move_off_fixed(&sv[1], NULL, NULL) < 0 || move_off_fixed(&st[1], NULL, NULL) < 0 ||
	    move_off_fixed(&parent_pidfd, NULL, NULL) < 0 ||
	    (gn[1] >= 0 && move_off_fixed(&gn[1], NULL, NULL) < 0))
		goto setup_failed;
	if (local.join_namespaces && move_off_fixed(&local.join_pidfd, moved, &nmoved) < 0)
		goto setup_failed;
	for (int i = 0; i < local.n_cgroup_procs_fds; i++)
		if (move_off_fixed(&local.cgroup_procs_fds[i], moved, &nmoved) < 0)
			goto setup_failed;
	if (local.n_channels < 0 || local.n_channels > PICO_SPAWN_MAX_CHANNELS) {
		errno = EINVAL;
		goto setup_failed;
	}
	if (local.area_fd >= 0 && move_off_fixed(&local.area_fd, moved, &nmoved) < 0)
		goto setup_failed;
	for (int i = 0; i < local.n_channels; i++)
		if (move_off_fixed(&local.channel_fds[i], moved, &nmoved) < 0)
			goto setup_failed;

	/* A raw clone, not fork(3): no atfork handlers run in the child. */
	long pid = raw(SYS_clone, (long)(spec->clone_flags | SIGCHLD), 0, 0, 0, 0);
	if (pid < 0) {
		result->step = PICO_STEP_CLONE;
		result->err = errno;
		goto close_all;
	}
	if (pid == 0) {
		/* The report and status ends and the loader fd sit at fixed
		 * numbers just below 1024: a monitor whose soft fd limit is
		 * lower lends its child room up to its hard limit. */
		struct rlimit nofile;
		if (raw(SYS_prlimit64, 0, RLIMIT_NOFILE, 0, (long)&nofile, 0) == 0 &&
		    nofile.rlim_cur < PICO_LOADER_FD + 1) {
			nofile.rlim_cur = nofile.rlim_max < PICO_LOADER_FD + 1 ? nofile.rlim_max
									  : PICO_LOADER_FD + 1;
			raw(SYS_prlimit64, 0, RLIMIT_NOFILE, (long)&nofile, 0, 0);
		}
		if (sv[1] != PICO_REPORT_FD && raw(SYS_dup3, sv[1], PICO_REPORT_FD, O_CLOEXEC, 0, 0) < 0) {
			struct child_report rep = {PICO_STEP_SETUP, errno == EBADF ? EMFILE : errno};
			ssize_t w = write(sv[1], &rep, sizeof(rep));
			(void)w;
			_exit(127);
		}
		if (st[1] != PICO_STATUS_FD && raw(SYS_dup3, st[1], PICO_STATUS_FD, O_CLOEXEC, 0, 0) < 0)
			_exit(127);
		if (gn[1] >= 0 && gn[1] != PICO_GUESTNET_FD &&
		    raw(SYS_dup3, gn[1], PICO_GUESTNET_FD, O_CLOEXEC, 0, 0) < 0)
			_exit(127);
		reaper_main(spec, parent_pidfd);
	}
	close(sv[1]);
	close(st[1]);
	close(parent_pidfd);
	if (gn[1] >= 0)
		close(gn[1]);
	sv[1] = st[1] = gn[1] = parent_pidfd = -1;
	for (int i = 0; i < nmoved; i++)
		close(moved[i]);
	nmoved = 0;

	struct child_report rep = {PICO_STEP_NONE, 0};
	int failed = 0;
	if ((spec->clone_flags & CLONE_NEWUSER) && write_id_maps((pid_t)pid, spec) < 0) {
		rep.step = PICO_STEP_ID_MAP;
		rep.err = errno;
		failed = 1;
	} else if (!spec->cgroup_join_self && join_cgroups((pid_t)pid, spec) < 0) {
		rep.step = PICO_STEP_CGROUP;
		rep.err = errno;
		failed = 1;
	} else if (send(sv[0], "g", 1, MSG_NOSIGNAL) != 1) {
		rep.step = PICO_STEP_HANDSHAKE;
		rep.err = errno;
		failed = 1;
	}
	int hello = 0;
	while (!failed) {
		int fd = -1;
		pid_t sender = 0;
		ssize_t n = recv_report(sv[0], &rep, &fd, &sender);
		/* A child that failed closed its end before reading "g": the
		 * socket reports ECONNRESET once, ahead of the report it left
		 * queued, which says why. */
		if (n < 0 && errno == ECONNRESET)
			continue;
		if (n == 0) {
			if (!hello) {
				/* Both ends closed without a hello: something died. */
				rep.step = PICO_STEP_HANDSHAKE;
				rep.err = ECHILD;
				failed = 1;
			}
			break;
		}
		if (n == (ssize_t)sizeof(rep) && rep.step == PICO_STEP_NONE && !hello) {
			hello = 1;
			result->guest_pid = (int)sender;
			result->listener_fd = fd;
			continue;
		}
		if (n == (ssize_t)sizeof(rep) && rep.step == REPORT_PROC_VIEW && !hello && fd >= 0 &&
		    result->proc_fd < 0 && spec->proc_view) {
			result->proc_fd = fd;
			continue;
		}
		if (n == (ssize_t)sizeof(rep) && rep.step == PICO_STEP_DEVPTS && rep.err == 0 && fd >= 0 &&
		    result->devpts_fd < 0 && spec->devpts_max > 0) {
			result->devpts_fd = fd;
			continue;
		}
		if (fd >= 0)
			close(fd);
		failed = 1;
		if (n != (ssize_t)sizeof(rep) || rep.step == PICO_STEP_NONE) {
			/* -2: the kernel could not give this process the fd the
			 * guest sent (its fd table is full). */
			rep.err = n == -1 ? errno : n == -2 ? EMFILE : EIO;
			rep.step = PICO_STEP_HANDSHAKE;
		}
	}
	close(sv[0]);
	if (!failed && spec->n_udp_proxies > 0 && receive_proxies(gn[0], spec->n_udp_proxies, result) < 0) {
		rep.step = PICO_STEP_UDP_PROXY;
		rep.err = errno;
		failed = 1;
	}
	if (!failed) {
		result->pid = (int)pid;
		result->status_fd = st[0];
		result->guestnet_fd = gn[0];
		return 0;
	}
	if (gn[0] >= 0)
		close(gn[0]);
	/* Killing the reaper (pid 1) kills its whole namespace; reap it so
	 * nothing is left behind. */
	kill((pid_t)pid, SIGKILL);
	int status;
	while (waitpid((pid_t)pid, &status, 0) < 0 && errno == EINTR)
		;
	if (result->listener_fd >= 0)
		close(result->listener_fd);
	result->listener_fd = -1;
	if (result->proc_fd >= 0)
		close(result->proc_fd);
	result->proc_fd = -1;
	if (result->devpts_fd >= 0)
		close(result->devpts_fd);
	result->devpts_fd = -1;
	result->guest_pid = 0;
	close(st[0]);
	result->step = rep.step;
	result->err = rep.err;
	return -1;

setup_failed:
	result->step = PICO_STEP_SETUP;
	result->err = errno;
close_all:
	for (int i = 0; i < nmoved; i++)
		close(moved[i]);
	for (int i = 0; i < 2; i++) {
		if (sv[i] >= 0)
			close(sv[i]);
		if (st[i] >= 0)
			close(st[i]);
		if (gn[i] >= 0)
			close(gn[i]);
	}
	if (parent_pidfd >= 0)
		close(parent_pidfd);
	return -1;
}

/* ---- scratch tmpfs -------------------------------------------------------- */

/* Creates the tmpfs and returns an O_DIRECTORY fd on its root, or -1. */
static int tmpfs_dir_fd(uint64_t size_bytes, uint64_t nr_inodes, unsigned int mode, int uid, int gid,
			int noexec)
{
	char buf[24];
	int fs = fsopen("tmpfs", FSOPEN_CLOEXEC);
	if (fs < 0)
		return -1;
	int mnt = -1, dir = -1;
	format_uint(buf, size_bytes, 10);
	if (fsconfig(fs, FSCONFIG_SET_STRING, "size", buf, 0) < 0)
		goto out;
	/* Inodes are not part of "size": without a bound, empty files and
	 * directories cost the kernel memory that nothing limits. */
	if (nr_inodes) {
		format_uint(buf, nr_inodes, 10);
		if (fsconfig(fs, FSCONFIG_SET_STRING, "nr_inodes", buf, 0) < 0)
			goto out;
	}
	format_uint(buf, mode & 07777, 8);
	if (fsconfig(fs, FSCONFIG_SET_STRING, "mode", buf, 0) < 0)
		goto out;
	if (uid >= 0) {
		format_uint(buf, (uint64_t)uid, 10);
		if (fsconfig(fs, FSCONFIG_SET_STRING, "uid", buf, 0) < 0)
			goto out;
	}
	if (gid >= 0) {
		format_uint(buf, (uint64_t)gid, 10);
		if (fsconfig(fs, FSCONFIG_SET_STRING, "gid", buf, 0) < 0)
			goto out;
	}
	if (fsconfig(fs, FSCONFIG_CMD_CREATE, NULL, NULL, 0) < 0)
		goto out;
	mnt = fsmount(fs, FSMOUNT_CLOEXEC,
		      MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | (noexec ? MOUNT_ATTR_NOEXEC : 0));
	if (mnt < 0)
		goto out;
	/* A real directory fd (the fsmount fd is O_PATH): it keeps the
	 * detached mount alive on its own once the fsmount fd is closed. */
	dir = openat(mnt, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
out:;
	int saved = errno;
	if (mnt >= 0)
		close(mnt);
	close(fs);
	errno = saved;
	return dir;
}

/* One message of `len` bytes, carrying `fd` (SCM_RIGHTS) when fd >= 0.
 * Only async-signal-safe calls: it runs in children of a raw clone. */
static int send_with_fd(int sock, const void *data, size_t len, int fd)
{
	struct iovec iov = {(void *)data, len};
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} u;
	memset(&u, 0, sizeof(u));
	struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
	if (fd >= 0) {
		msg.msg_control = u.buf;
		msg.msg_controllen = sizeof(u.buf);
		struct cmsghdr *cmsg = CMSG_FIRSTHDR(&msg);
		cmsg->cmsg_level = SOL_SOCKET;
		cmsg->cmsg_type = SCM_RIGHTS;
		cmsg->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(cmsg), &fd, sizeof(int));
	}
	return sendmsg(sock, &msg, MSG_NOSIGNAL) == (ssize_t)len ? 0 : -1;
}

/* Several fds in one message (SCM_RIGHTS), after an int: 0, or the errno
 * of the helper's failure.  Async-signal-safe. */
static int send_fds(int sock, int err, const int *fds, int n)
{
	struct iovec iov = {&err, sizeof(err)};
	union {
		char buf[CMSG_SPACE(sizeof(int) * PICO_HELPER_MAX_FDS)];
		struct cmsghdr align;
	} u;
	memset(&u, 0, sizeof(u));
	struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
	if (n > 0) {
		msg.msg_control = u.buf;
		msg.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)n);
		struct cmsghdr *cmsg = CMSG_FIRSTHDR(&msg);
		cmsg->cmsg_level = SOL_SOCKET;
		cmsg->cmsg_type = SCM_RIGHTS;
		cmsg->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)n);
		memcpy(CMSG_DATA(cmsg), fds, sizeof(int) * (size_t)n);
	}
	return sendmsg(sock, &msg, MSG_NOSIGNAL) == (ssize_t)sizeof(err) ? 0 : -1;
}

/* What a user-namespace helper does: fills fds[0..n) or returns -1 with
 * errno set.  Runs in the child of a raw clone: async-signal-safe only. */
typedef int (*helper_work)(void *arg, int *fds, int n);

/* Runs `work` in a short-lived helper with its own user and mount
 * namespace, where an unprivileged monitor may create and change mounts,
 * and receives the n fds it made.  The helper maps the caller's ids to
 * themselves (files the monitor then creates on those mounts must have
 * mapped owners, or creation fails with EOVERFLOW).  Returns 0 or -errno;
 * on failure no fd is left open. */
static int run_userns_helper(helper_work work, void *arg, int *fds_out, int n)
{
	int sv[2];

	if (n <= 0 || n > PICO_HELPER_MAX_FDS)
		return -EINVAL;
	for (int i = 0; i < n; i++)
		fds_out[i] = -1;
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
		return -errno;
	uid_t euid = geteuid();
	gid_t egid = getegid();
	long pid = raw(SYS_clone, CLONE_NEWUSER | CLONE_NEWNS | SIGCHLD, 0, 0, 0, 0);
	if (pid < 0) {
		int err = errno;
		close(sv[0]);
		close(sv[1]);
		return -err;
	}
	if (pid == 0) {
		char map[64];
		size_t len;
		int made[PICO_HELPER_MAX_FDS];
		if (write_file("/proc/self/setgroups", "deny", 4) < 0)
			goto helper_fail;
		len = format_id_map(map, (unsigned)euid);
		if (write_file("/proc/self/uid_map", map, len) < 0)
			goto helper_fail;
		len = format_id_map(map, (unsigned)egid);
		if (write_file("/proc/self/gid_map", map, len) < 0)
			goto helper_fail;
		if (work(arg, made, n) < 0)
			goto helper_fail;
		_exit(send_fds(sv[1], 0, made, n) < 0 ? 1 : 0);
	helper_fail:
		send_fds(sv[1], errno ? errno : EIO, NULL, 0);
		_exit(1);
	}
	close(sv[1]);
	int err = 0;
	struct iovec iov = {&err, sizeof(err)};
	union {
		char buf[CMSG_SPACE(sizeof(int) * PICO_HELPER_MAX_FDS)];
		struct cmsghdr align;
	} u;
	struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf,
			     .msg_controllen = sizeof(u.buf)};
	ssize_t got;
	do
		got = recvmsg(sv[0], &msg, MSG_CMSG_CLOEXEC);
	while (got < 0 && errno == EINTR);
	int recv_errno = errno, nfds = 0;
	if (got > 0) {
		struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
		if (c && c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
			nfds = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
			if (nfds > n)
				nfds = n; /* cannot happen: the helper sends n */
			memcpy(fds_out, CMSG_DATA(c), sizeof(int) * (size_t)nfds);
		}
	}
	close(sv[0]);
	int status;
	while (waitpid((pid_t)pid, &status, 0) < 0 && errno == EINTR)
		;
	if (got != (ssize_t)sizeof(err) || err || nfds != n) {
		for (int i = 0; i < nfds; i++)
			close(fds_out[i]);
		for (int i = 0; i < n; i++)
			fds_out[i] = -1;
		if (got < 0)
			return -recv_errno;
		return -(err > 0 ? err : EIO);
	}
	return 0;
}

struct tmpfs_args {
	uint64_t size_bytes, nr_inodes;
	unsigned int mode;
	int uid, gid, noexec;
};

static int tmpfs_work(void *arg, int *fds, int n)
{
	struct tmpfs_args *a = arg;
	(void)n;
	fds[0] = tmpfs_dir_fd(a->size_bytes, a->nr_inodes, a->mode, a->uid, a->gid, a->noexec);
	return fds[0] < 0 ? -1 : 0;
}

int pico_make_tmpfs(uint64_t size_bytes, uint64_t nr_inodes, unsigned int mode, int uid, int gid,
		    int in_userns, int noexec, int *dir_fd_out)
{
	struct tmpfs_args a = {size_bytes, nr_inodes, mode, uid, gid, noexec};

	*dir_fd_out = -1;
	if (size_bytes == 0)
		return -EINVAL;
	if (!in_userns)
		return tmpfs_work(&a, dir_fd_out, 1) < 0 ? -errno : 0;
	/* Unprivileged: a helper in its own user+mount namespace may create a
	 * tmpfs and passes the detached mount's fd back. */
	return run_userns_helper(tmpfs_work, &a, dir_fd_out, 1);
}

/* ---- detached copies of host directories -------------------------------- */

/* A detached, recursive copy of the directory `path` (relative to dirfd;
 * "" for dirfd itself) with `attrs` set on every mount of it, as an O_PATH
 * fd on its root; -1 with errno.  Recursive: a copy without the mounts
 * below would show what they cover on the host (and the kernel refuses it
 * in a user namespace for that reason); the monitor never crosses into them
 * anyway (RESOLVE_NO_XDEV). */
static int clone_tree(int dirfd, const char *path, unsigned int attrs)
{
	unsigned int flags = OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE;
	int fd = (int)syscall(SYS_open_tree, dirfd, path, flags | (*path ? 0 : AT_EMPTY_PATH));
	if (fd < 0)
		return -1;
	struct mount_attr ma = {.attr_set = attrs};
	if (syscall(SYS_mount_setattr, fd, "", AT_EMPTY_PATH | AT_RECURSIVE, &ma, sizeof(ma)) < 0) {
		int saved = errno;
		close(fd);
		errno = saved;
		return -1;
	}
	return fd;
}

struct clone_args {
	const int *dirfds;
	const char *const *paths;
	const unsigned int *attrs;
	int by_path;
};

static int same_object(int a, int b)
{
	struct stat sa, sb;
	return fstat(a, &sa) == 0 && fstat(b, &sb) == 0 && sa.st_dev == sb.st_dev &&
	       sa.st_ino == sb.st_ino;
}

static int clone_work(void *arg, int *fds, int n)
{
	struct clone_args *a = arg;
	for (int i = 0; i < n; i++) {
		/* In the helper's mount namespace the monitor's fds name mounts
		 * of another namespace, which the kernel will not copy: the path
		 * is looked up again, and must lead to the same directory. */
		fds[i] = a->by_path ? clone_tree(AT_FDCWD, a->paths[i], a->attrs[i])
				    : clone_tree(a->dirfds[i], "", a->attrs[i]);
		if (fds[i] >= 0 && a->by_path && !same_object(fds[i], a->dirfds[i])) {
			close(fds[i]);
			fds[i] = -1;
			errno = ESTALE;
		}
		if (fds[i] < 0) {
			int saved = errno;
			for (int j = 0; j < i; j++)
				close(fds[j]);
			errno = saved;
			return -1;
		}
	}
	return 0;
}

int pico_detached_mounts(const int *dirfds, const char *const *paths, const unsigned int *attrs,
			 int n, int in_userns, int *fds_out)
{
	struct clone_args a = {dirfds, paths, attrs, in_userns};

	if (n <= 0 || n > PICO_HELPER_MAX_FDS)
		return -EINVAL;
	for (int i = 0; i < n; i++) {
		fds_out[i] = -1;
		if (attrs[i] & ~(unsigned int)(MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID |
					       MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC))
			return -EINVAL;
		if (in_userns && (!paths[i] || paths[i][0] != '/'))
			return -EINVAL;
	}
	if (!in_userns)
		return clone_work(&a, fds_out, n) < 0 ? -errno : 0;
	return run_userns_helper(clone_work, &a, fds_out, n);
}
