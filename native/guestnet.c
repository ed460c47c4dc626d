/* The guest's own network: the reaper's socket helper and the monitor's
 * side of its channel (guestnet.h). */
#define _GNU_SOURCE
#include "guestnet.h"

#include <errno.h>
#include <netinet/in.h>
#include <stddef.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

_Static_assert(sizeof(struct sockaddr_storage) == PICO_GN_ADDR_MAX, "addr must hold any address");

/* ---- the helper (runs in the reaper) ------------------------------------ */

/* A system call that returns -errno instead of setting errno: the helper is
 * a thread of the reaper sharing its TLS, and the reaper reads errno after
 * its own waits. */
static long gn_syscall(long nr, long a, long b, long c, long d, long e, long f)
{
	register long r10 __asm__("r10") = d;
	register long r8 __asm__("r8") = e;
	register long r9 __asm__("r9") = f;
	long ret;

	__asm__ volatile("syscall"
			 : "=a"(ret)
			 : "a"(nr), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9)
			 : "rcx", "r11", "memory");
	return ret;
}

static int set_int_option(int fd, int level, int name, int value)
{
	return (int)gn_syscall(SYS_setsockopt, fd, level, name, (long)&value, sizeof(value), 0);
}

/* Whether an AF_UNIX address is an abstract name, or empty (autobind: the
 * kernel picks an abstract name).  Path names are refused: they would be
 * looked up in the guest's empty root anyway. */
static int unix_addr_ok(const struct pico_gn_request *req, int allow_autobind)
{
	const struct sockaddr_un *sun = (const void *)req->addr;

	if (allow_autobind && req->addr_len == sizeof(sa_family_t))
		return 1;
	return req->addr_len > offsetof(struct sockaddr_un, sun_path) &&
	       req->addr_len <= sizeof(struct sockaddr_un) && sun->sun_path[0] == '\0';
}

static int request_ok(const struct pico_gn_request *req)
{
	int inet = req->domain == AF_INET || req->domain == AF_INET6;
	sa_family_t family;

	if (req->op < PICO_GN_SOCKET || req->op > PICO_GN_CONNECT)
		return 0;
	if (req->options & ~(PICO_GN_REUSEADDR | PICO_GN_REUSEPORT | PICO_GN_V6ONLY))
		return 0;
	if (inet && req->type != SOCK_STREAM && req->type != SOCK_DGRAM)
		return 0;
	if (req->domain == AF_UNIX && req->type != SOCK_STREAM && req->type != SOCK_DGRAM &&
	    req->type != SOCK_SEQPACKET)
		return 0;
	if (!inet && req->domain != AF_UNIX)
		return 0;
	if (req->op == PICO_GN_LISTEN && req->type == SOCK_DGRAM)
		return 0;
	if (req->op == PICO_GN_SOCKET)
		return req->domain != AF_UNIX || req->type == SOCK_DGRAM;
	if (req->addr_len < sizeof(sa_family_t) || req->addr_len > PICO_GN_ADDR_MAX)
		return 0;
	memcpy(&family, req->addr, sizeof(family));
	if (family != req->domain)
		return 0;
	if (req->src_len) {
		if (req->op != PICO_GN_CONNECT || !inet || req->src_len < sizeof(sa_family_t) ||
		    req->src_len > PICO_GN_ADDR_MAX)
			return 0;
		memcpy(&family, req->src, sizeof(family));
		if (family != req->domain)
			return 0;
	}
	if (req->domain == AF_UNIX)
		return unix_addr_ok(req, req->op != PICO_GN_CONNECT);
	return 1;
}

/* Makes the socket a request asks for: its fd and 0 or EINPROGRESS, or
 * -1 and the errno. */
static int make_socket(const struct pico_gn_request *req, int *err)
{
	long fd, r;

	*err = 0;
	if (!request_ok(req)) {
		*err = EINVAL;
		return -1;
	}
	fd = gn_syscall(SYS_socket, req->domain, req->type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, 0, 0,
			0);
	if (fd < 0) {
		*err = (int)-fd;
		return -1;
	}
	r = 0;
	if (req->domain != AF_UNIX) {
		if (req->options & PICO_GN_REUSEADDR)
			r = set_int_option((int)fd, SOL_SOCKET, SO_REUSEADDR, 1);
		if (r == 0 && (req->options & PICO_GN_REUSEPORT))
			r = set_int_option((int)fd, SOL_SOCKET, SO_REUSEPORT, 1);
		if (r == 0 && req->domain == AF_INET6)
			r = set_int_option((int)fd, IPPROTO_IPV6, IPV6_V6ONLY,
					   !!(req->options & PICO_GN_V6ONLY));
	}
	if (r == 0 && (req->op == PICO_GN_BIND || req->op == PICO_GN_LISTEN))
		r = gn_syscall(SYS_bind, fd, (long)req->addr, req->addr_len, 0, 0, 0);
	if (r == 0 && req->op == PICO_GN_LISTEN)
		r = gn_syscall(SYS_listen, fd, req->backlog, 0, 0, 0, 0);
	if (r == 0 && req->op == PICO_GN_CONNECT && req->src_len)
		r = gn_syscall(SYS_bind, fd, (long)req->src, req->src_len, 0, 0, 0);
	if (r == 0 && req->op == PICO_GN_CONNECT) {
		r = gn_syscall(SYS_connect, fd, (long)req->addr, req->addr_len, 0, 0, 0);
		if (r == -EINPROGRESS) {
			*err = EINPROGRESS;
			r = 0;
		}
	}
	if (r < 0) {
		gn_syscall(SYS_close, fd, 0, 0, 0, 0, 0);
		*err = (int)-r;
		return -1;
	}
	return (int)fd;
}

static void send_reply(int chan, const struct pico_gn_reply *rep, int fd)
{
	struct iovec iov = {(void *)rep, sizeof(*rep)};
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} u;
	struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};

	memset(&u, 0, sizeof(u));
	if (fd >= 0) {
		msg.msg_control = u.buf;
		msg.msg_controllen = sizeof(u.buf);
		struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(c), &fd, sizeof(int));
	}
	/* Blocking: the monitor reads replies as they come.  If it is gone
	 * the send fails and the next receive ends the loop. */
	gn_syscall(SYS_sendmsg, chan, (long)&msg, MSG_NOSIGNAL, 0, 0, 0);
}

void pico_guestnet_serve(int chan)
{
	for (;;) {
		struct pico_gn_request req;
		struct pico_gn_reply rep;
		struct iovec iov = {&req, sizeof(req)};
		struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
		long n;
		int fd, err;

		memset(&req, 0, sizeof(req));
		n = gn_syscall(SYS_recvmsg, chan, (long)&msg, 0, 0, 0, 0);
		if (n == -EINTR)
			continue;
		if (n <= 0)
			return; /* the monitor closed its end */
		if ((size_t)n != sizeof(req) || (msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC))) {
			fd = -1;
			err = EINVAL;
		} else {
			fd = make_socket(&req, &err);
		}
		rep.id = req.id;
		rep.err = err;
		send_reply(chan, &rep, fd);
		if (fd >= 0)
			gn_syscall(SYS_close, fd, 0, 0, 0, 0, 0);
	}
}

/* ---- the monitor's side ------------------------------------------------- */

int pico_guestnet_send(int chan, const struct pico_gn_request *req)
{
	ssize_t n = send(chan, req, sizeof(*req), MSG_DONTWAIT | MSG_NOSIGNAL);

	if (n == (ssize_t)sizeof(*req))
		return 0;
	if (n >= 0)
		return -EPROTO;
	return errno == EWOULDBLOCK ? -EAGAIN : -errno;
}

int pico_guestnet_recv(int chan, struct pico_gn_reply *rep, int *fd_out)
{
	struct iovec iov = {rep, sizeof(*rep)};
	union {
		char buf[CMSG_SPACE(sizeof(int) * 4)];
		struct cmsghdr align;
	} u;
	struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf,
			     .msg_controllen = sizeof(u.buf)};
	int got = -1, bad = 0;
	ssize_t n;

	*fd_out = -1;
	do
		n = recvmsg(chan, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return errno == EWOULDBLOCK ? -EAGAIN : -errno;
	if (n == 0)
		return 0;
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (size_t i = 0; i < count; i++) {
			int fd;
			memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
			if (got < 0)
				got = fd;
			else {
				close(fd);
				bad = 1;
			}
		}
	}
	if (bad || n != (ssize_t)sizeof(*rep) || (msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) ||
	    ((rep->err == 0 || rep->err == EINPROGRESS) != (got >= 0))) {
		if (got >= 0)
			close(got);
		return -EPROTO;
	}
	*fd_out = got;
	return 1;
}
