/* Network mediation for the mediated `open` call: tcp:, udp:, tcp.srv:, unix:.
 * The contract (URI syntax, errnos, why udp: is relayed) is in net.h. */
#define _GNU_SOURCE
#include "net.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

#include "guestnet.h"
#include "picoproc_abi.h"

_Static_assert(PICO_NET_MAX_URI == PICO_MAX_URI, "net.h must follow the ABI table's max_uri");

/* The open flags that mean something for a socket; everything else
 * (O_CREAT, O_TRUNC, O_PATH, PICO_OPEN_EXEC, ...) is a caller bug. */
#define NET_OPEN_FLAGS (O_ACCMODE | O_NONBLOCK | O_CLOEXEC)

struct inet_addr {
	int family;		/* AF_INET (also for v4-mapped v6) or AF_INET6 */
	unsigned char bytes[16];
};

struct net_grant {
	int kind;		/* PICO_NET_* */
	struct inet_addr addr;	/* inet kinds */
	int port;		/* 0 = any */
	char *path;		/* PICO_NET_UNIX: canonical host path */
	size_t path_len;
	bool prefix;		/* path ends with '/': a directory grant */
};

/* Live udp: relays of one policy (one run): shared with the relay threads,
 * which may outlive the policy by the moment it takes them to notice their
 * guest end closed; the last one out frees it. */
struct relay_count {
	atomic_int live;
	atomic_int refs;
	_Atomic uint64_t cpu_ns;	/* CPU time the run's relay and proxy threads spent */
};

/* A relay or proxy thread charges its CPU time to its run every this many
 * wake-ups (and when it ends): the thread CPU clock is a system call. */
#define CHARGE_EVERY 64

static uint64_t thread_cpu_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Adds the thread's CPU time since *mark to the run's; moves the mark. */
static void charge_cpu(struct relay_count *rc, uint64_t *mark)
{
	uint64_t now = thread_cpu_ns();
	atomic_fetch_add(&rc->cpu_ns, now - *mark);
	*mark = now;
}

struct proxy_relay;

struct pico_net_policy {
	struct net_grant *grants;
	size_t count;
	size_t cap;
	int max_sockets;	/* bound on live relays of this run (0: only the global one) */
	struct relay_count *relays;
	struct proxy_relay *proxies; /* the run's UDP proxies, or NULL */
	int any_host;		/* every host address grants connect (learning runs) */
};

static void stop_proxies(struct proxy_relay *r);

static void relay_count_put(struct relay_count *rc)
{
	if (atomic_fetch_sub(&rc->refs, 1) == 1)
		free(rc);
}

/* ---- the audit line ---------------------------------------------------- */

static __thread char decision[256];

static void __attribute__((format(printf, 1, 2))) decide(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(decision, sizeof(decision), fmt, ap);
	va_end(ap);
}

const char *pico_net_last_decision(void)
{
	return decision;
}

/* Guest bytes go into the audit line only escaped and truncated. */
static void printable(char *out, size_t out_size, const char *s, size_t len)
{
	size_t o = 0, i;

	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		bool plain = c >= 0x20 && c < 0x7f && c != '\\';

		/* Keep room for "..." and the NUL. */
		if (o + (plain ? 1 : 4) + 4 > out_size)
			break;
		if (plain)
			out[o++] = (char)c;
		else
			o += (size_t)snprintf(out + o, out_size - o, "\\x%02x", c);
	}
	if (i < len) {
		memcpy(out + o, "...", 3);
		o += 3;
	}
	out[o] = '\0';
}

static void format_endpoint(char *out, size_t out_size, const struct inet_addr *a, int port)
{
	char text[INET6_ADDRSTRLEN];

	if (!inet_ntop(a->family, a->bytes, text, sizeof(text)))
		snprintf(text, sizeof(text), "?");
	if (a->family == AF_INET6)
		snprintf(out, out_size, "[%s]:%d", text, port);
	else
		snprintf(out, out_size, "%s:%d", text, port);
}

/* ---- parsing ----------------------------------------------------------- */

/* A decimal port: 1..5 digits, no sign, no leading zero (one spelling per
 * port), at most 65535; 0 only where allow_zero. */
static int parse_port(const char *s, size_t len, bool allow_zero)
{
	int port = 0;

	if (len == 0 || len > 5 || (len > 1 && s[0] == '0'))
		return -EINVAL;
	for (size_t i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -EINVAL;
		port = port * 10 + (s[i] - '0');
	}
	if (port > 65535 || (port == 0 && !allow_zero))
		return -EINVAL;
	return port;
}

/* A literal address: IPv4 dotted quad, or IPv6.  An IPv4-mapped IPv6
 * address is stored as the IPv4 address it maps, so both spellings of one
 * destination compare equal. */
static int parse_inet_addr(const char *s, size_t len, bool want_v4, bool want_v6,
			   struct inet_addr *a)
{
	char text[INET6_ADDRSTRLEN];

	if (len == 0 || len >= sizeof(text))
		return -EINVAL;
	memcpy(text, s, len);
	text[len] = '\0';
	memset(a, 0, sizeof(*a));
	if (want_v4 && inet_pton(AF_INET, text, a->bytes) == 1) {
		a->family = AF_INET;
		return 0;
	}
	if (want_v6 && inet_pton(AF_INET6, text, a->bytes) == 1) {
		struct in6_addr v6;

		memcpy(&v6, a->bytes, sizeof(v6));
		if (IN6_IS_ADDR_V4MAPPED(&v6)) {
			memmove(a->bytes, a->bytes + 12, 4);
			memset(a->bytes + 4, 0, 12);
			a->family = AF_INET;
		} else {
			a->family = AF_INET6;
		}
		return 0;
	}
	return -EINVAL;
}

/* "A.B.C.D:PORT" or "[V6]:PORT" (the text after the scheme). */
static int parse_host_port(const char *s, size_t len, bool allow_port_zero,
			   struct inet_addr *a, int *port)
{
	const char *host, *colon;
	size_t host_len;
	bool bracketed = len > 0 && s[0] == '[';
	int ret;

	if (bracketed) {
		const char *close = memchr(s, ']', len);

		if (!close)
			return -EINVAL;
		host = s + 1;
		host_len = (size_t)(close - host);
		colon = close + 1;
		if (colon >= s + len || *colon != ':')
			return -EINVAL;
	} else {
		colon = memchr(s, ':', len);
		if (!colon)
			return -EINVAL;
		host = s;
		host_len = (size_t)(colon - s);
	}
	/* An IPv6 address must be bracketed (its colons would be ambiguous with
	 * the port's), an IPv4 address must not be. */
	ret = parse_inet_addr(host, host_len, !bracketed, bracketed, a);
	if (ret)
		return ret;
	ret = parse_port(colon + 1, (size_t)(s + len - (colon + 1)), allow_port_zero);
	if (ret < 0)
		return ret;
	*port = ret;
	return 0;
}

static socklen_t to_sockaddr(const struct inet_addr *a, int port, struct sockaddr_storage *ss)
{
	memset(ss, 0, sizeof(*ss));
	if (a->family == AF_INET) {
		struct sockaddr_in *sin = (struct sockaddr_in *)ss;

		sin->sin_family = AF_INET;
		sin->sin_port = htons((uint16_t)port);
		memcpy(&sin->sin_addr, a->bytes, 4);
		return sizeof(*sin);
	} else {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;

		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons((uint16_t)port);
		memcpy(&sin6->sin6_addr, a->bytes, 16);
		return sizeof(*sin6);
	}
}

/* A unix: path must be absolute and canonical: no empty, "." or ".."
 * components and no trailing slash, so that the grant check (a byte
 * comparison) and the kernel's resolution see the same path. */
static int check_canonical_path(const char *path, size_t len)
{
	size_t start = 1;

	if (len == 0 || path[0] != '/')
		return -EINVAL;
	if (len >= PATH_MAX)
		return -ENAMETOOLONG;
	if (len == 1)
		return -EINVAL;		/* "/" is a directory, never a socket */
	for (size_t i = 1; i <= len; i++) {
		if (i < len && path[i] != '/')
			continue;
		size_t clen = i - start;

		if (clen == 0)
			return -EINVAL;
		if (clen > NAME_MAX)
			return -ENAMETOOLONG;
		if ((clen == 1 && path[start] == '.') ||
		    (clen == 2 && path[start] == '.' && path[start + 1] == '.'))
			return -EINVAL;
		start = i + 1;
	}
	return 0;
}

/* ---- the policy -------------------------------------------------------- */

struct pico_net_policy *pico_net_policy_new(void)
{
	struct pico_net_policy *p = calloc(1, sizeof(*p));

	if (!p)
		return NULL;
	p->relays = calloc(1, sizeof(*p->relays));
	if (!p->relays) {
		free(p);
		return NULL;
	}
	atomic_init(&p->relays->refs, 1);
	return p;
}

void pico_net_policy_free(struct pico_net_policy *p)
{
	if (!p)
		return;
	for (size_t i = 0; i < p->count; i++)
		free(p->grants[i].path);
	free(p->grants);
	relay_count_put(p->relays);
	stop_proxies(p->proxies);
	free(p);
}

int pico_net_policy_grant_any_host(struct pico_net_policy *p)
{
	if (!p)
		return -EINVAL;
	p->any_host = 1;
	return 0;
}

int pico_net_policy_set_max_sockets(struct pico_net_policy *p, int max_sockets)
{
	if (!p || max_sockets < 0)
		return -EINVAL;
	p->max_sockets = max_sockets;
	return 0;
}

int pico_net_policy_relays(const struct pico_net_policy *p)
{
	return p ? atomic_load(&p->relays->live) : 0;
}

uint64_t pico_net_policy_cpu_ns(const struct pico_net_policy *p)
{
	return p ? atomic_load(&p->relays->cpu_ns) : 0;
}

int pico_net_policy_add(struct pico_net_policy *p, int kind, const char *addr, int port)
{
	struct net_grant g;

	if (!p || !addr)
		return -EINVAL;
	memset(&g, 0, sizeof(g));
	g.kind = kind;
	switch (kind) {
	case PICO_NET_TCP_CONNECT:
	case PICO_NET_UDP_CONNECT:
	case PICO_NET_TCP_LISTEN:
		if (port < 0 || port > 65535)
			return -EINVAL;
		if (parse_inet_addr(addr, strlen(addr), true, true, &g.addr))
			return -EINVAL;
		g.port = port;
		break;
	case PICO_NET_UNIX: {
		size_t len = strlen(addr);
		bool prefix = len > 1 && addr[len - 1] == '/';

		if (port != 0)
			return -EINVAL;
		if (len == 1 && addr[0] == '/')
			prefix = true;	/* "/": every socket on the host */
		else if (check_canonical_path(addr, prefix ? len - 1 : len))
			return -EINVAL;
		g.path = strdup(addr);
		if (!g.path)
			return -ENOMEM;
		g.path_len = len;
		g.prefix = prefix;
		break;
	}
	default:
		return -EINVAL;
	}
	if (p->count == p->cap) {
		size_t cap = p->cap ? 2 * p->cap : 8;
		struct net_grant *grants = realloc(p->grants, cap * sizeof(*grants));

		if (!grants) {
			free(g.path);
			return -ENOMEM;
		}
		p->grants = grants;
		p->cap = cap;
	}
	p->grants[p->count++] = g;
	return 0;
}

static bool is_loopback(const struct inet_addr *a);
static bool is_wildcard(const struct inet_addr *a);

static bool inet_granted(const struct pico_net_policy *p, int kind, const struct inet_addr *a,
			 int port)
{
	size_t len = a->family == AF_INET ? 4 : 16;

	/* Loopback and the wildcard stay the guest's own even then: a
	 * program's own servers are not the host's. */
	if (p && p->any_host && (kind == PICO_NET_TCP_CONNECT || kind == PICO_NET_UDP_CONNECT) &&
	    !is_loopback(a) && !is_wildcard(a))
		return true;

	for (size_t i = 0; p && i < p->count; i++) {
		const struct net_grant *g = &p->grants[i];

		if (g->kind == kind && g->addr.family == a->family &&
		    memcmp(g->addr.bytes, a->bytes, len) == 0 && (g->port == 0 || g->port == port))
			return true;
	}
	return false;
}

/* The grant path ends with '/' for a directory, so a prefix match always
 * stops at a component boundary ("/run/a/" does not grant "/run/ab"). */
static bool unix_granted(const struct pico_net_policy *p, const char *path, size_t len)
{
	for (size_t i = 0; p && i < p->count; i++) {
		const struct net_grant *g = &p->grants[i];

		if (g->kind != PICO_NET_UNIX)
			continue;
		if (g->prefix && len > g->path_len && memcmp(path, g->path, g->path_len) == 0)
			return true;
		if (!g->prefix && len == g->path_len && memcmp(path, g->path, len) == 0)
			return true;
	}
	return false;
}

/* ---- connects in progress ---------------------------------------------- */

/* pico_net_finish gets only the fd, but must know what the guest asked for
 * (O_NONBLOCK) and where the socket connects (to re-issue connect).  A short
 * table keyed by the monitor's fd number keeps that; the inode check catches
 * an fd number that was closed and reused for something else.  An entry the
 * caller abandons (it closed the fd without finishing) is overwritten when
 * its fd number comes back, so the table never outgrows the number of fds
 * the monitor has had connecting at once. */
struct pending_connect {
	int fd;			/* -1: free slot */
	bool nonblock;
	dev_t dev;
	ino_t ino;
	socklen_t len;
	struct sockaddr_storage peer;
};

static pthread_mutex_t pending_lock = PTHREAD_MUTEX_INITIALIZER;
static struct pending_connect *pending;
static size_t pending_count, pending_cap;

/* Called with pending_lock held. */
static struct pending_connect *pending_slot(int fd)
{
	for (size_t i = 0; i < pending_count; i++)
		if (pending[i].fd == fd)
			return &pending[i];
	return NULL;
}

static int remember_pending(int fd, bool nonblock, const struct sockaddr_storage *peer,
			    socklen_t len)
{
	struct pending_connect *slot;
	struct stat st;
	int ret = 0;

	if (fstat(fd, &st) < 0)
		return -errno;
	pthread_mutex_lock(&pending_lock);
	slot = pending_slot(fd);
	if (!slot)
		slot = pending_slot(-1);
	if (!slot) {
		if (pending_count == pending_cap) {
			size_t cap = pending_cap ? 2 * pending_cap : 16;
			struct pending_connect *grown = realloc(pending, cap * sizeof(*grown));

			if (!grown) {
				ret = -ENOMEM;
				goto out;
			}
			pending = grown;
			pending_cap = cap;
		}
		slot = &pending[pending_count++];
	}
	*slot = (struct pending_connect){
		.fd = fd, .nonblock = nonblock, .dev = st.st_dev, .ino = st.st_ino, .len = len,
	};
	memcpy(&slot->peer, peer, sizeof(*peer));
out:
	pthread_mutex_unlock(&pending_lock);
	return ret;
}

static int lookup_pending(int fd, struct pending_connect *out)
{
	struct pending_connect *slot;
	struct stat st;
	int ret = -EBADF;

	if (fd < 0 || fstat(fd, &st) < 0)
		return -EBADF;
	pthread_mutex_lock(&pending_lock);
	slot = pending_slot(fd);
	if (slot && slot->dev == st.st_dev && slot->ino == st.st_ino) {
		*out = *slot;
		ret = 0;
	}
	pthread_mutex_unlock(&pending_lock);
	return ret;
}

static void forget_pending(int fd)
{
	struct pending_connect *slot;

	pthread_mutex_lock(&pending_lock);
	slot = pending_slot(fd);
	if (slot)
		slot->fd = -1;
	pthread_mutex_unlock(&pending_lock);
}

static int set_nonblock(int fd, bool nonblock)
{
	int fl = fcntl(fd, F_GETFL);

	if (fl < 0)
		return -errno;
	fl = nonblock ? (fl | O_NONBLOCK) : (fl & ~O_NONBLOCK);
	if (fcntl(fd, F_SETFL, fl) < 0)
		return -errno;
	return 0;
}

/* ---- tcp: -------------------------------------------------------------- */

static int tcp_connect(const struct inet_addr *a, int port, bool nonblock, int *fd_out)
{
	struct sockaddr_storage ss;
	socklen_t len = to_sockaddr(a, port, &ss);
	int fd, ret;

	/* Always non-blocking here: the monitor never waits on the network. */
	fd = socket(a->family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&ss, len) == 0) {
		ret = set_nonblock(fd, nonblock);
		if (ret)
			goto fail;
		*fd_out = fd;
		return fd;
	}
	if (errno != EINPROGRESS) {
		ret = -errno;
		goto fail;
	}
	ret = remember_pending(fd, nonblock, &ss, len);
	if (ret)
		goto fail;
	*fd_out = fd;
	return -EINPROGRESS;
fail:
	close(fd);
	return ret;
}

int pico_net_finish(int fd)
{
	struct pending_connect pc;
	int err = 0, ret;
	socklen_t err_len = sizeof(err);

	if (lookup_pending(fd, &pc)) {
		decide("finish fd %d: no connect in progress on it", fd);
		return -EBADF;
	}
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &err_len) < 0) {
		ret = -errno;
		goto done;
	}
	if (err) {
		ret = -err;
		goto done;
	}
	/* Connect again: the kernel moves a socket from "connecting" to
	 * "connected" only then.  A socket left "connecting" becomes a free
	 * socket after a reset (sendto(MSG_FASTOPEN) would then connect it to
	 * any address); a "connected" one answers EISCONN for ever. */
	if (connect(fd, (struct sockaddr *)&pc.peer, pc.len) < 0 && errno != EISCONN) {
		if (errno == EALREADY || errno == EINPROGRESS) {
			decide("finish fd %d: still connecting", fd);
			return -EINPROGRESS;
		}
		ret = -errno;
		goto done;
	}
	ret = set_nonblock(fd, pc.nonblock);
done:
	forget_pending(fd);
	if (ret)
		decide("finish fd %d: connect failed: %s", fd, strerror(-ret));
	else
		decide("finish fd %d: connected", fd);
	return ret;
}

static int tcp_listen(const struct inet_addr *a, int port, bool nonblock)
{
	struct sockaddr_storage ss;
	socklen_t len = to_sockaddr(a, port, &ss);
	int one = 1, fd, ret;

	fd = socket(a->family, SOCK_STREAM | SOCK_CLOEXEC | (nonblock ? SOCK_NONBLOCK : 0), 0);
	if (fd < 0)
		return -errno;
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0)
		goto fail;
	/* "::" must not silently take the IPv4 wildcard too. */
	if (a->family == AF_INET6 &&
	    setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) < 0)
		goto fail;
	if (bind(fd, (struct sockaddr *)&ss, len) < 0)
		goto fail;
	if (listen(fd, PICO_NET_LISTEN_BACKLOG) < 0)
		goto fail;
	return fd;
fail:
	ret = -errno;
	close(fd);
	return ret;
}

/* ---- udp: a connected UDP socket behind a relay ------------------------ */

static atomic_int udp_relays;

struct udp_relay {
	int local;		/* the monitor's end of the guest's SOCK_SEQPACKET pair */
	int udp;		/* the connected UDP socket */
	struct relay_count *count; /* of the policy (run) it serves */
	char buf[PICO_NET_UDP_MAX_DATAGRAM];
};

int pico_net_udp_relay_count(void)
{
	return atomic_load(&udp_relays);
}

/* Moves one datagram; one that does not fit the buffer is dropped whole
 * rather than truncated.  Returns recv's result (the datagram's length). */
static ssize_t forward_datagram(struct udp_relay *r, int from, int to, int send_flags)
{
	ssize_t n = recv(from, r->buf, sizeof(r->buf), MSG_DONTWAIT | MSG_TRUNC);

	if (n >= 0 && (size_t)n <= sizeof(r->buf))
		(void)send(to, r->buf, (size_t)n, MSG_DONTWAIT | send_flags);
	return n;
}

/* Copies whole datagrams both ways until the guest closes (or shuts down
 * for writing) its end.  Sends never wait: a datagram that does not fit is
 * dropped, as UDP would. */
static void *udp_relay_main(void *arg)
{
	struct udp_relay *r = arg;
	struct pollfd pfd[2] = {
		{.fd = r->local, .events = POLLIN | POLLRDHUP},
		{.fd = r->udp, .events = POLLIN},
	};
	uint64_t mark = thread_cpu_ns();
	unsigned int wakeups = 0;

	for (;;) {
		if (poll(pfd, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (++wakeups % CHARGE_EVERY == 0)
			charge_cpu(r->count, &mark);
		if (pfd[0].revents & (POLLERR | POLLNVAL))
			break;
		if (pfd[0].revents & (POLLHUP | POLLRDHUP)) {
			/* The guest sends no more: pass on what it sent
			 * before (recv gives the queued datagrams, then 0;
			 * a zero-length datagram reads like that end, so what
			 * follows one is lost) and stop. */
			while (forward_datagram(r, r->local, r->udp, 0) > 0)
				;
			break;
		}
		if ((pfd[0].revents & POLLIN) && forward_datagram(r, r->local, r->udp, 0) < 0 &&
		    errno != EAGAIN && errno != EINTR)
			break;
		/* Errors (an ICMP port unreachable shows as ECONNREFUSED) are
		 * consumed by recv and the relay goes on, like a UDP socket
		 * whose owner never asks for its error. */
		if (pfd[1].revents & (POLLIN | POLLERR))
			forward_datagram(r, r->udp, r->local, MSG_NOSIGNAL);
	}
	close(r->local);
	close(r->udp);
	charge_cpu(r->count, &mark);
	atomic_fetch_sub(&r->count->live, 1);
	relay_count_put(r->count);
	free(r);
	atomic_fetch_sub(&udp_relays, 1);
	return NULL;
}

static int start_udp_relay(const struct pico_net_policy *p, int local, int udp)
{
	struct relay_count *count = p->relays;
	struct udp_relay *r;
	pthread_attr_t attr;
	pthread_t thread;
	sigset_t all, old;
	int err;

	/* A run may hold as many relays as it may hold open files: each is a
	 * thread and two sockets in the monitor. */
	if (atomic_fetch_add(&count->live, 1) >= p->max_sockets && p->max_sockets > 0) {
		atomic_fetch_sub(&count->live, 1);
		return -EMFILE;
	}
	if (atomic_fetch_add(&udp_relays, 1) >= PICO_NET_MAX_UDP_RELAYS) {
		atomic_fetch_sub(&udp_relays, 1);
		atomic_fetch_sub(&count->live, 1);
		return -ENFILE;
	}
	r = malloc(sizeof(*r));
	if (!r) {
		atomic_fetch_sub(&udp_relays, 1);
		atomic_fetch_sub(&count->live, 1);
		return -ENOMEM;
	}
	r->local = local;
	r->udp = udp;
	r->count = count;
	atomic_fetch_add(&count->refs, 1);
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	pthread_attr_setstacksize(&attr, 64 * 1024);
	/* The relay must never take the monitor's signals (Python's handlers
	 * expect them on the main thread); it inherits this mask. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	err = pthread_create(&thread, &attr, udp_relay_main, r);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	pthread_attr_destroy(&attr);
	if (err) {
		relay_count_put(count);
		free(r);
		atomic_fetch_sub(&udp_relays, 1);
		atomic_fetch_sub(&count->live, 1);
		return -err;
	}
	return 0;
}

static int udp_connect(const struct pico_net_policy *p, const struct inet_addr *a, int port,
		       bool nonblock)
{
	struct sockaddr_storage ss;
	socklen_t len = to_sockaddr(a, port, &ss);
	int udp, pair[2] = {-1, -1}, ret;

	udp = socket(a->family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (udp < 0)
		return -errno;
	if (connect(udp, (struct sockaddr *)&ss, len) < 0)
		goto fail_errno;
	/* SOCK_SEQPACKET: datagram boundaries are kept and an address given to
	 * sendto/sendmsg is ignored (SOCK_DGRAM would look it up). */
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair) < 0)
		goto fail_errno;
	ret = set_nonblock(pair[0], nonblock);
	if (ret)
		goto fail;
	ret = start_udp_relay(p, pair[1], udp);
	if (ret)
		goto fail;
	return pair[0];
fail_errno:
	ret = -errno;
fail:
	if (pair[0] >= 0) {
		close(pair[0]);
		close(pair[1]);
	}
	close(udp);
	return ret;
}

/* ---- unix: ------------------------------------------------------------- */

/* The server end of a unix socket learns who connected (SO_PEERCRED: the
 * effective uid and gid) and many servers grant by it (D-Bus, systemd, ...).
 * The event loop runs with the guest's identity as the thread's fsuid/fsgid
 * (so path resolution and the socket's write permission are checked as the
 * guest); the connect also takes it as the effective identity, so a root
 * monitor never lends uid 0 to a guest.  Raw system calls: they change the
 * calling thread only (glibc's wrappers would change every thread). */
struct thread_identity {
	uid_t euid, fsuid;
	gid_t egid, fsgid;
	bool switched;
};

static int take_fs_identity(struct thread_identity *saved)
{
	uid_t ruid, euid, suid;
	gid_t rgid, egid, sgid;

	saved->switched = false;
	if (getresuid(&ruid, &euid, &suid) < 0 || getresgid(&rgid, &egid, &sgid) < 0)
		return -errno;
	saved->euid = euid;
	saved->egid = egid;
	saved->fsuid = (uid_t)syscall(SYS_setfsuid, -1);
	saved->fsgid = (gid_t)syscall(SYS_setfsgid, -1);
	if (saved->fsuid == euid && saved->fsgid == egid)
		return 0;
	/* Only switch when the way back is certain (euid is the real or the
	 * saved uid): a thread stuck as the guest would fail every later call. */
	if (euid != ruid && euid != suid)
		return -EPERM;
	if (syscall(SYS_setresgid, -1, saved->fsgid, -1) < 0)
		return -errno;
	if (syscall(SYS_setresuid, -1, saved->fsuid, -1) < 0) {
		int ret = -errno;

		syscall(SYS_setresgid, -1, saved->egid, -1);
		syscall(SYS_setfsgid, saved->fsgid);
		return ret;
	}
	saved->switched = true;
	return 0;
}

static void restore_identity(const struct thread_identity *saved)
{
	if (!saved->switched)
		return;
	/* uid first: it gives back the capabilities needed for the gid. */
	syscall(SYS_setresuid, -1, saved->euid, -1);
	syscall(SYS_setresgid, -1, saved->egid, -1);
	/* Changing the effective ids reset the fs ids to them. */
	syscall(SYS_setfsuid, saved->fsuid);
	syscall(SYS_setfsgid, saved->fsgid);
}

/* Connects sock to the socket inode pathfd pins, through the monitor's own
 * /proc/self/fd magic link, as the guest's identity: 0 or -errno. */
static int connect_to_inode(int sock, int pathfd)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	struct thread_identity ids;
	struct stat st;
	int ret;

	if (fstat(pathfd, &st) < 0)
		return -errno;
	if (S_ISLNK(st.st_mode))
		return -ELOOP;
	if (!S_ISSOCK(st.st_mode))
		return -ECONNREFUSED;	/* what connect(2) says for a non-socket */
	snprintf(sun.sun_path, sizeof(sun.sun_path), "/proc/self/fd/%d", pathfd);
	ret = take_fs_identity(&ids);
	if (ret)
		return ret;
	if (connect(sock, (struct sockaddr *)&sun, sizeof(sun)) < 0)
		ret = -errno;
	restore_identity(&ids);
	return ret;
}

int pico_net_unix_connect_fd(int pathfd, int nonblock)
{
	int fd, ret;

	/* Non-blocking: a full backlog is -EAGAIN instead of a wait. */
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	ret = connect_to_inode(fd, pathfd);
	if (!ret)
		ret = set_nonblock(fd, nonblock);
	if (ret) {
		close(fd);
		return ret;
	}
	return fd;
}

int pico_net_unix_dgram_connect_fd(int sock, int pathfd)
{
	return connect_to_inode(sock, pathfd);
}

/* Connects to the socket inode itself, never to a name that could change
 * under us: the path is resolved once with openat2 (no symlink anywhere,
 * so a swapped-in symlink fails with ELOOP), the O_PATH fd pins that
 * inode, and connect goes through its /proc/self/fd magic link. */
/* The host path of a unix grant, resolved once without any symlink: an
 * O_PATH fd pinning its inode, or -errno. */
static int open_granted_path(const char *path, size_t len)
{
	char text[PATH_MAX];
	struct open_how how = {
		.flags = O_PATH | O_NOFOLLOW | O_CLOEXEC,
		.resolve = RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS,
	};
	int pathfd;

	memcpy(text, path, len);
	text[len] = '\0';
	pathfd = (int)syscall(SYS_openat2, AT_FDCWD, text, &how, sizeof(how));
	return pathfd < 0 ? -errno : pathfd;
}

static int unix_connect(const char *path, size_t len, bool nonblock)
{
	int pathfd, ret;

	pathfd = open_granted_path(path, len);
	if (pathfd < 0)
		return pathfd;
	ret = pico_net_unix_connect_fd(pathfd, nonblock);
	close(pathfd);
	return ret;
}

int pico_net_unix_dgram_connect_granted(const struct pico_net_policy *p, const char *path, size_t len,
					int sock)
{
	char shown[128];
	int pathfd, ret;

	printable(shown, sizeof(shown), path, len);
	if (!pico_net_unix_granted(p, path, len)) {
		decide("unixdg connect '%s': not granted", shown);
		return -EACCES;
	}
	pathfd = open_granted_path(path, len);
	ret = pathfd < 0 ? pathfd : connect_to_inode(sock, pathfd);
	if (pathfd >= 0)
		close(pathfd);
	if (ret == 0)
		decide("unixdg connect '%s': granted", shown);
	else
		decide("unixdg connect '%s': granted, failed: %s", shown, strerror(-ret));
	return ret;
}

/* Binds sock to `name` in the directory dirfd with the permission bits
 * `mode`: 0 or -errno. */
static int bind_at(int sock, int dirfd, const char *name, unsigned int mode)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	size_t len = strlen(name);
	mode_t old_umask;
	int ret = 0;

	if (len == 0 || len >= sizeof(sun.sun_path) || strchr(name, '/'))
		return len >= sizeof(sun.sun_path) ? -ENAMETOOLONG : -EINVAL;
	if (mode & ~0777u)
		return -EINVAL;
	memcpy(sun.sun_path, name, len);
	/* bind(2) takes a name, not a directory fd: it runs from the directory
	 * already resolved and pinned, so only the last component is looked
	 * up (and bind never follows it: an existing name is EADDRINUSE).  The
	 * calling thread has a cwd and umask of its own (the event loop
	 * unshares CLONE_FS); the socket file gets the mode the guest asked
	 * for, and is owned by the thread's fsuid/fsgid, the guest. */
	if (fchdir(dirfd) < 0)
		return -errno;
	old_umask = umask(~mode & 0777);
	if (bind(sock, (struct sockaddr *)&sun,
		 (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len + 1)) < 0)
		ret = -errno;
	umask(old_umask);
	if (chdir("/") < 0 && !ret)
		ret = -errno;
	return ret;
}

int pico_net_unix_listen_at(int dirfd, const char *name, unsigned int mode, int nonblock)
{
	struct thread_identity ids;
	int fd, ret;

	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	ret = bind_at(fd, dirfd, name, mode);
	if (ret)
		goto out;
	/* listen(2) records the listener's credentials (what a client's
	 * SO_PEERCRED shows): the guest's, never a root monitor's. */
	ret = take_fs_identity(&ids);
	if (ret)
		goto unbind;
	if (listen(fd, PICO_NET_LISTEN_BACKLOG) < 0)
		ret = -errno;
	restore_identity(&ids);
	if (!ret)
		ret = set_nonblock(fd, nonblock);
	if (!ret)
		return fd;
unbind:
	unlinkat(dirfd, name, 0);
out:
	close(fd);
	return ret;
}

int pico_net_unix_dgram_bind_at(int sock, int dirfd, const char *name, unsigned int mode)
{
	return bind_at(sock, dirfd, name, mode);
}

/* ---- UDP proxies: unconnected datagrams to granted destinations -------- */

/* A guest's UDP socket lives in its own network namespace, so a datagram
 * it sends with sendto() to a granted host destination would find no
 * route -- and sendto/sendmsg are direct calls the library OS never sees.
 * So for each granted destination with a port, the reaper gives the
 * guest's loopback the destination's address and binds a UDP socket there
 * (spawn.h, udp_proxies): the guest's datagrams to it land in that socket.
 * This thread reads them and sends each from a host UDP socket connected
 * to the destination -- one per guest source address, so the answers can
 * be told apart -- and sends the answers back from the proxy socket: the
 * guest sees them come from the address it sent to, as it would natively.
 * The host sockets are bounded by the run's open-file limit and closed
 * after PROXY_IDLE_NS without traffic; a datagram that finds the table
 * full is dropped, as UDP may. */
#define PROXY_IDLE_NS (60ull * 1000000000ull)
#define PROXY_BATCH 64	/* datagrams read from one socket per wake-up */
#define PROXY_DEFAULT_ENTRIES 256

struct nat_entry {
	int proxy;			/* index of the proxy socket */
	struct sockaddr_storage src;	/* the guest's address */
	socklen_t src_len;
	int fd;				/* the host socket, connected to the destination */
	uint64_t last_ns;
};

struct proxy_relay {
	pthread_t thread;
	int stop_efd;
	int n;
	int fds[16];
	struct sockaddr_storage dst[16];
	socklen_t dst_len[16];
	int max_entries;
	struct nat_entry *nat;
	int nnat;
	struct relay_count *count; /* of the policy (run) it serves: its CPU time */
	char buf[PICO_NET_UDP_MAX_DATAGRAM];
};

static uint64_t mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static struct nat_entry *nat_find(struct proxy_relay *r, int proxy, const struct sockaddr_storage *src,
				  socklen_t len)
{
	for (int i = 0; i < r->nnat; i++)
		if (r->nat[i].proxy == proxy && r->nat[i].src_len == len &&
		    memcmp(&r->nat[i].src, src, len) == 0)
			return &r->nat[i];
	if (r->nnat == r->max_entries)
		return NULL;
	int fd = socket(r->dst[proxy].ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return NULL;
	if (connect(fd, (struct sockaddr *)&r->dst[proxy], r->dst_len[proxy]) < 0) {
		close(fd);
		return NULL;
	}
	struct nat_entry *e = &r->nat[r->nnat++];
	e->proxy = proxy;
	memcpy(&e->src, src, len);
	e->src_len = len;
	e->fd = fd;
	return e;
}

static void nat_drop(struct proxy_relay *r, int i)
{
	close(r->nat[i].fd);
	r->nat[i] = r->nat[--r->nnat];
}

static void *proxy_main(void *arg)
{
	struct proxy_relay *r = arg;
	/* the stop eventfd, the proxies, then one per table entry */
	struct pollfd *pfd = calloc(1 + 16 + (size_t)r->max_entries, sizeof(*pfd));
	int *owner = calloc(1 + 16 + (size_t)r->max_entries, sizeof(*owner));

	uint64_t mark = thread_cpu_ns();
	unsigned int wakeups = 0;

	if (!pfd || !owner)
		goto out;
	for (;;) {
		int n = 0, timeout = -1;
		uint64_t now = mono_ns();

		if (++wakeups % CHARGE_EVERY == 0)
			charge_cpu(r->count, &mark);

		pfd[n++] = (struct pollfd){.fd = r->stop_efd, .events = POLLIN};
		for (int i = 0; i < r->n; i++) {
			owner[n] = -1;
			pfd[n++] = (struct pollfd){.fd = r->fds[i], .events = POLLIN};
		}
		for (int i = 0; i < r->nnat; i++) {
			uint64_t idle = now - r->nat[i].last_ns;
			int ms = idle >= PROXY_IDLE_NS ? 0 : (int)((PROXY_IDLE_NS - idle) / 1000000) + 1;
			if (timeout < 0 || ms < timeout)
				timeout = ms;
			owner[n] = i;
			pfd[n++] = (struct pollfd){.fd = r->nat[i].fd, .events = POLLIN};
		}
		if (poll(pfd, (nfds_t)n, timeout) < 0 && errno != EINTR)
			break;
		if (pfd[0].revents)
			break;
		now = mono_ns();
		/* Answers first: entries are only added or dropped below. */
		for (int k = 1 + r->n; k < n; k++) {
			if (!(pfd[k].revents & (POLLIN | POLLERR)))
				continue;
			struct nat_entry *e = &r->nat[owner[k]];
			for (int b = 0; b < PROXY_BATCH; b++) {
				ssize_t got = recv(e->fd, r->buf, sizeof(r->buf), MSG_DONTWAIT | MSG_TRUNC);
				if (got < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
					continue; /* an ICMP error, consumed */
				if (got < 0)
					break;
				if ((size_t)got <= sizeof(r->buf))
					(void)sendto(r->fds[e->proxy], r->buf, (size_t)got, MSG_DONTWAIT,
						     (struct sockaddr *)&e->src, e->src_len);
				e->last_ns = now;
			}
		}
		for (int k = 1; k <= r->n; k++) {
			if (!(pfd[k].revents & POLLIN))
				continue;
			for (int b = 0; b < PROXY_BATCH; b++) {
				struct sockaddr_storage src;
				socklen_t len = sizeof(src);
				ssize_t got = recvfrom(r->fds[k - 1], r->buf, sizeof(r->buf),
						       MSG_DONTWAIT | MSG_TRUNC, (struct sockaddr *)&src, &len);
				if (got < 0)
					break;
				if ((size_t)got > sizeof(r->buf))
					continue; /* dropped whole, as the udp: relay does */
				struct nat_entry *e = nat_find(r, k - 1, &src, len);
				if (!e)
					continue; /* table full: dropped */
				(void)send(e->fd, r->buf, (size_t)got, MSG_DONTWAIT);
				e->last_ns = now;
			}
		}
		for (int i = 0; i < r->nnat;) {
			if (now - r->nat[i].last_ns >= PROXY_IDLE_NS)
				nat_drop(r, i);
			else
				i++;
		}
	}
out:
	charge_cpu(r->count, &mark);
	free(pfd);
	free(owner);
	return NULL;
}

static void stop_proxies(struct proxy_relay *r)
{
	if (!r)
		return;
	uint64_t one = 1;
	if (write(r->stop_efd, &one, sizeof(one)) == sizeof(one))
		pthread_join(r->thread, NULL);
	while (r->nnat)
		nat_drop(r, 0);
	for (int i = 0; i < r->n; i++)
		close(r->fds[i]);
	close(r->stop_efd);
	free(r->nat);
	relay_count_put(r->count);
	free(r);
}

int pico_net_policy_start_proxies(struct pico_net_policy *p, const int *fds, int n)
{
	struct proxy_relay *r;
	pthread_attr_t attr;
	sigset_t all, old;
	int err = 0;

	if (!p || !fds || n <= 0 || n > 16 || p->proxies)
		err = -EINVAL;
	r = err ? NULL : calloc(1, sizeof(*r));
	if (!err && !r)
		err = -ENOMEM;
	if (r)
		r->stop_efd = -1;
	for (int i = 0; i < n && !err; i++) {
		struct inet_addr a;
		r->dst_len[i] = sizeof(r->dst[i]);
		if (getsockname(fds[i], (struct sockaddr *)&r->dst[i], &r->dst_len[i]) < 0) {
			err = -errno;
			break;
		}
		/* Only ever towards a granted destination, whatever the socket. */
		memset(&a, 0, sizeof(a));
		int port;
		if (r->dst[i].ss_family == AF_INET) {
			struct sockaddr_in *sin = (struct sockaddr_in *)&r->dst[i];
			a.family = AF_INET;
			memcpy(a.bytes, &sin->sin_addr, 4);
			port = ntohs(sin->sin_port);
		} else if (r->dst[i].ss_family == AF_INET6) {
			struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&r->dst[i];
			a.family = AF_INET6;
			memcpy(a.bytes, &sin6->sin6_addr, 16);
			port = ntohs(sin6->sin6_port);
		} else {
			err = -EINVAL;
			break;
		}
		if (port == 0 || !inet_granted(p, PICO_NET_UDP_CONNECT, &a, port))
			err = -EACCES;
	}
	if (!err) {
		r->n = n;
		memcpy(r->fds, fds, sizeof(int) * (size_t)n);
		r->max_entries = p->max_sockets > 0 ? p->max_sockets : PROXY_DEFAULT_ENTRIES;
		r->count = p->relays;
		atomic_fetch_add(&r->count->refs, 1);
		r->nat = calloc((size_t)r->max_entries, sizeof(*r->nat));
		r->stop_efd = eventfd(0, EFD_CLOEXEC);
		if (!r->nat || r->stop_efd < 0)
			err = r->nat ? -errno : -ENOMEM;
	}
	if (!err) {
		pthread_attr_init(&attr);
		pthread_attr_setstacksize(&attr, 64 * 1024);
		/* The monitor's signals belong to Python's main thread. */
		sigfillset(&all);
		pthread_sigmask(SIG_SETMASK, &all, &old);
		err = -pthread_create(&r->thread, &attr, proxy_main, r);
		pthread_sigmask(SIG_SETMASK, &old, NULL);
		pthread_attr_destroy(&attr);
	}
	if (err) {
		if (r) {
			if (r->stop_efd >= 0)
				close(r->stop_efd);
			free(r->nat);
			if (r->count)
				relay_count_put(r->count);
			free(r);
		}
		for (int i = 0; i < n && fds; i++)
			close(fds[i]);
		return err;
	}
	p->proxies = r;
	return 0;
}

/* ---- the guest's own network ---------------------------------------- */

/* Options a URI may carry after '?', comma-separated.  They matter only for
 * sockets of the guest's own network; a host listener is always
 * SO_REUSEADDR and IPV6_V6ONLY, whatever it asks (see net.h). */
#define OPT_REUSEADDR 1
#define OPT_REUSEPORT 2
#define OPT_DUALSTACK 4

static const struct {
	const char *word;
	int bit;
} option_words[] = {{"reuseaddr", OPT_REUSEADDR}, {"reuseport", OPT_REUSEPORT}, {"dualstack", OPT_DUALSTACK}};

/* Splits "BODY?OPTS": *body_len is BODY's length; *opts the bits of OPTS. */
static int split_options(const char *rest, size_t rest_len, size_t *body_len, int *opts)
{
	const char *q = memchr(rest, '?', rest_len);

	*opts = 0;
	*body_len = q ? (size_t)(q - rest) : rest_len;
	if (!q)
		return 0;
	const char *w = q + 1, *end = rest + rest_len;
	for (;;) {
		const char *comma = memchr(w, ',', (size_t)(end - w));
		size_t n = (size_t)((comma ? comma : end) - w);
		size_t i;

		for (i = 0; i < sizeof(option_words) / sizeof(option_words[0]); i++)
			if (n == strlen(option_words[i].word) && !memcmp(w, option_words[i].word, n))
				break;
		if (i == sizeof(option_words) / sizeof(option_words[0]))
			return -EINVAL;	/* unknown or empty word */
		*opts |= option_words[i].bit;
		if (!comma)
			return 0;
		w = comma + 1;
	}
}

/* Takes a last option "from=HOST:PORT" (the address a program bound its
 * socket to before connecting) off "BODY?OPTS": *rest_len shrinks to what
 * is left.  0 without one, 1 with *src and *src_port set, -EINVAL when it
 * is malformed. */
static int split_source(const char *rest, size_t *rest_len, struct inet_addr *src, int *src_port)
{
	const char *q = memchr(rest, '?', *rest_len), *end = rest + *rest_len, *w;

	if (!q)
		return 0;
	for (w = end; w > q && w[-1] != ',' && w[-1] != '?'; w--)
		;
	if ((size_t)(end - w) < 5 || memcmp(w, "from=", 5))
		return 0;
	if (parse_host_port(w + 5, (size_t)(end - w - 5), true, src, src_port))
		return -EINVAL;
	/* drop the word and its separator; a '?' left alone goes too */
	*rest_len = (size_t)(w - 1 - rest);
	return 1;
}

/* 127.0.0.0/8 and ::1: the guest's own loopback unless granted. */
static bool is_loopback(const struct inet_addr *a)
{
	static const unsigned char v6_loopback[16] = {[15] = 1};

	if (a->family == AF_INET)
		return a->bytes[0] == 127;
	return memcmp(a->bytes, v6_loopback, 16) == 0;
}

/* 0.0.0.0 and ::: every address of the guest's own network (listen), or
 * the local host (connect, as Linux takes it). */
static bool is_wildcard(const struct inet_addr *a)
{
	static const unsigned char zero[16];

	return memcmp(a->bytes, zero, a->family == AF_INET ? 4 : 16) == 0;
}

static void own_request(struct pico_gn_request *req, int op, int domain, int type, int opts)
{
	memset(req, 0, sizeof(*req));
	req->op = op;
	req->domain = domain;
	req->type = type;
	req->backlog = PICO_NET_LISTEN_BACKLOG;
	if (opts & OPT_REUSEADDR)
		req->options |= PICO_GN_REUSEADDR;
	if (opts & OPT_REUSEPORT)
		req->options |= PICO_GN_REUSEPORT;
	if (domain == AF_INET6 && !(opts & OPT_DUALSTACK))
		req->options |= PICO_GN_V6ONLY;
}

static void own_inet_request(struct pico_gn_request *req, int op, int type,
			     const struct inet_addr *a, int port, int opts)
{
	struct sockaddr_storage ss;

	own_request(req, op, a->family, type, opts);
	req->addr_len = to_sockaddr(a, port, &ss);
	memcpy(req->addr, &ss, req->addr_len);
}

int pico_net_adopt_connecting(int fd, const struct pico_gn_request *req, int nonblock)
{
	struct sockaddr_storage peer;
	int ret;

	if (fd < 0 || !req || req->op != PICO_GN_CONNECT || req->addr_len > sizeof(peer))
		return -EINVAL;
	memset(&peer, 0, sizeof(peer));
	memcpy(&peer, req->addr, req->addr_len);
	ret = remember_pending(fd, nonblock, &peer, req->addr_len);
	return ret ? ret : -EINPROGRESS;
}

/* ---- dispatch ---------------------------------------------------------- */

static bool has_prefix(const char *s, size_t len, const char *prefix)
{
	size_t n = strlen(prefix);

	return len >= n && memcmp(s, prefix, n) == 0;
}

static const char *const schemes[] = {"tcp:", "udp:", "tcp.srv:", "udp.srv:", "udp.new:", "tcp.new:",
				      "unix:", "unix.srv:", "unixdg:", "unixdg.srv:", "unixdg.new:"};

int pico_net_is_network_uri(const char *uri, size_t uri_len)
{
	if (!uri)
		return 0;
	for (size_t i = 0; i < sizeof(schemes) / sizeof(schemes[0]); i++)
		if (has_prefix(uri, uri_len, schemes[i]))
			return 1;
	return 0;
}

/* tcp:, udp:, tcp.srv:, udp.srv: -- a granted endpoint is the host's; what
 * is not granted but on loopback (or the wildcard) is the guest's own. */
static int start_inet(const struct pico_net_policy *p, int kind, const char *scheme,
		      const char *rest, size_t rest_len, bool nonblock, int *fd_out,
		      struct pico_gn_request *own)
{
	bool listen = kind == PICO_NET_TCP_LISTEN || kind == PICO_NET_UDP_BIND;
	const char *what = kind == PICO_NET_TCP_LISTEN ? "listen" : kind == PICO_NET_UDP_BIND ? "bind" : "connect";
	int type = kind == PICO_NET_TCP_CONNECT || kind == PICO_NET_TCP_LISTEN ? SOCK_STREAM : SOCK_DGRAM;
	char where[INET6_ADDRSTRLEN + 16];
	struct inet_addr a, src;
	size_t body_len;
	int port, opts, ret, src_port = 0;
	int has_src = listen ? 0 : split_source(rest, &rest_len, &src, &src_port);

	if (has_src < 0 || split_options(rest, rest_len, &body_len, &opts) ||
	    parse_host_port(rest, body_len, listen, &a, &port)) {
		char shown[96];

		printable(shown, sizeof(shown), rest, rest_len);
		decide("%s %s: malformed: want a literal IPv4 address or [IPv6], a port, and "
		       "options among reuseaddr,reuseport,dualstack (then from=ADDR:PORT, for a connect); got '%s'", scheme, what, shown);
		return -EINVAL;
	}
	format_endpoint(where, sizeof(where), &a, port);
	if (kind == PICO_NET_UDP_BIND || !inet_granted(p, kind, &a, port)) {
		bool local = is_loopback(&a) || is_wildcard(&a);

		if (!own || !local) {
			decide("%s %s %s: not granted", scheme, what, where);
			return -EACCES;
		}
		own_inet_request(own, listen ? (type == SOCK_STREAM ? PICO_GN_LISTEN : PICO_GN_BIND)
					     : PICO_GN_CONNECT,
				 type, &a, port, opts);
		/* The source the program bound, where it is the guest's own
		 * too (a loopback or wildcard address of the same family). */
		if (has_src && src.family == a.family && (is_loopback(&src) || is_wildcard(&src))) {
			struct sockaddr_storage ss;

			own->src_len = to_sockaddr(&src, src_port, &ss);
			memcpy(own->src, &ss, own->src_len);
		}
		decide("%s %s %s: the guest's own network", scheme, what, where);
		return PICO_NET_OWN;
	}
	switch (kind) {
	case PICO_NET_TCP_CONNECT:
		ret = tcp_connect(&a, port, nonblock, fd_out);
		break;
	case PICO_NET_UDP_CONNECT:
		ret = udp_connect(p, &a, port, nonblock);
		break;
	default:
		ret = tcp_listen(&a, port, nonblock);
		break;
	}
	if (ret >= 0)
		decide("%s %s %s: granted", scheme, what, where);
	else if (ret == -EINPROGRESS)
		decide("%s %s %s: granted, connecting", scheme, what, where);
	else
		decide("%s %s %s: granted, failed: %s", scheme, what, where, strerror(-ret));
	return ret;
}

/* udp.new:inet, udp.new:inet6, tcp.new:inet, tcp.new:inet6: an unbound
 * socket of the guest's own network (a program's socket(2) before it binds,
 * connects or sends).  Unbound, it reaches nothing: bind, listen and connect
 * are not direct calls, and the filter refuses MSG_FASTOPEN. */
static int start_new(const char *scheme, int type, const char *rest, size_t rest_len,
		     struct pico_gn_request *own)
{
	size_t body_len;
	int opts, domain;

	if (split_options(rest, rest_len, &body_len, &opts))
		body_len = 0;
	if (type == SOCK_DGRAM && !strcmp(scheme, "unixdg.new")) {
		/* An unbound AF_UNIX datagram socket: made in the guest's own
		 * network so that the abstract names it can send to with
		 * sendto(2), a direct call, are the guest's. */
		if (rest_len != 0) {
			decide("%s: malformed: want nothing after the colon", scheme);
			return -EINVAL;
		}
		if (!own) {
			decide("%s: no own network here", scheme);
			return -EACCES;
		}
		own_request(own, PICO_GN_SOCKET, AF_UNIX, SOCK_DGRAM, 0);
		decide("%s: the guest's own network", scheme);
		return PICO_NET_OWN;
	}
	if (body_len == 4 && !memcmp(rest, "inet", 4))
		domain = AF_INET;
	else if (body_len == 5 && !memcmp(rest, "inet6", 5))
		domain = AF_INET6;
	else {
		decide("%s: malformed: want inet or inet6", scheme);
		return -EINVAL;
	}
	if (!own) {
		decide("%s: no own network here", scheme);
		return -EACCES;
	}
	own_request(own, PICO_GN_SOCKET, domain, type, opts);
	decide("%s %s: the guest's own network", scheme, domain == AF_INET ? "inet" : "inet6");
	return PICO_NET_OWN;
}

/* unix:@NAME and unix.srv:@NAME (unix.srv:@ alone: a name the kernel
 * picks), and unixdg.srv:@NAME, unixdg.srv:@ for a datagram socket bound
 * there: abstract names, per network namespace, so the guest's own. */
static int start_abstract(const char *name, size_t len, bool listen, int type,
			  struct pico_gn_request *own)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	const char *what = !listen ? "connect" : type == SOCK_DGRAM ? "bind" : "listen";
	const char *scheme = type == SOCK_DGRAM ? "unixdg" : "unix";
	char shown[128];

	printable(shown, sizeof(shown), name, len);
	if (len + 1 > sizeof(sun.sun_path)) {
		decide("%s %s '@%s': abstract name longer than %zu bytes", scheme, what, shown,
		       sizeof(sun.sun_path) - 1);
		return -EINVAL;
	}
	if (!own) {
		decide("%s %s '@%s': abstract sockets are never granted", scheme, what, shown);
		return -EINVAL;
	}
	if (len == 0 && !listen) {
		decide("%s connect '@': an empty abstract name", scheme);
		return -EINVAL;
	}
	own_request(own, !listen ? PICO_GN_CONNECT : type == SOCK_DGRAM ? PICO_GN_BIND : PICO_GN_LISTEN,
		    AF_UNIX, type, 0);
	memcpy(sun.sun_path + 1, name, len);
	own->addr_len = len ? (uint32_t)(offsetof(struct sockaddr_un, sun_path) + 1 + len)
			    : (uint32_t)sizeof(sa_family_t);
	memcpy(own->addr, &sun, own->addr_len);
	decide("%s %s '@%s': the guest's own network", scheme, what, shown);
	return PICO_NET_OWN;
}

static int start_unix(const struct pico_net_policy *p, const char *path, size_t len,
		      bool nonblock, struct pico_gn_request *own)
{
	char shown[128];
	int ret;

	if (len > 0 && path[0] == '@')
		return start_abstract(path + 1, len - 1, false, SOCK_STREAM, own);
	printable(shown, sizeof(shown), path, len);
	if (len > 0 && path[0] == '\0') {
		decide("unix connect '%s': abstract sockets are spelled '@NAME'", shown);
		return -EINVAL;
	}
	ret = check_canonical_path(path, len);
	if (ret) {
		decide("unix connect '%s': malformed: want an absolute path without "
		       "'.', '..' or '//'", shown);
		return ret;
	}
	if (!unix_granted(p, path, len)) {
		decide("unix connect '%s': not granted", shown);
		return -EACCES;
	}
	ret = unix_connect(path, len, nonblock);
	if (ret >= 0)
		decide("unix connect '%s': granted", shown);
	else
		decide("unix connect '%s': granted, failed: %s", shown, strerror(-ret));
	return ret;
}

int pico_net_unix_granted(const struct pico_net_policy *p, const char *path, size_t len)
{
	return p && path && len > 0 && path[0] == '/' && check_canonical_path(path, len) == 0 &&
	       unix_granted(p, path, len);
}

int pico_net_start_guest(const struct pico_net_policy *p, const char *uri, size_t uri_len,
			 int flags, int *fd_out, struct pico_gn_request *own)
{
	bool nonblock = flags & O_NONBLOCK;
	int ignored, ret;

	if (!fd_out)
		fd_out = &ignored;
	*fd_out = -1;
	/* p == NULL: nothing granted (the guest's own network may serve). */
	if (!uri || uri_len == 0) {
		decide("open: empty URI");
		return -EINVAL;
	}
	if (uri_len > PICO_NET_MAX_URI) {
		decide("open: URI of %zu bytes is longer than %d", uri_len, PICO_NET_MAX_URI);
		return -ENAMETOOLONG;
	}
	if ((flags & ~NET_OPEN_FLAGS) || (flags & O_ACCMODE) == O_ACCMODE) {
		decide("open: flags %#x not valid for a socket", (unsigned int)flags);
		return -EINVAL;
	}
	if (memchr(uri, '\0', uri_len)) {
		decide("open: URI contains a NUL byte");
		return -EINVAL;
	}
	if (has_prefix(uri, uri_len, "tcp:"))
		ret = start_inet(p, PICO_NET_TCP_CONNECT, "tcp", uri + 4, uri_len - 4, nonblock,
				 fd_out, own);
	else if (has_prefix(uri, uri_len, "udp:"))
		ret = start_inet(p, PICO_NET_UDP_CONNECT, "udp", uri + 4, uri_len - 4, nonblock,
				 fd_out, own);
	else if (has_prefix(uri, uri_len, "tcp.srv:"))
		ret = start_inet(p, PICO_NET_TCP_LISTEN, "tcp.srv", uri + 8, uri_len - 8, nonblock,
				 fd_out, own);
	else if (has_prefix(uri, uri_len, "udp.srv:"))
		ret = start_inet(p, PICO_NET_UDP_BIND, "udp.srv", uri + 8, uri_len - 8, nonblock,
				 fd_out, own);
	else if (has_prefix(uri, uri_len, "udp.new:"))
		ret = start_new("udp.new", SOCK_DGRAM, uri + 8, uri_len - 8, own);
	else if (has_prefix(uri, uri_len, "tcp.new:"))
		ret = start_new("tcp.new", SOCK_STREAM, uri + 8, uri_len - 8, own);
	else if (has_prefix(uri, uri_len, "unix.srv:@"))
		ret = start_abstract(uri + 10, uri_len - 10, true, SOCK_STREAM, own);
	else if (has_prefix(uri, uri_len, "unixdg.srv:@"))
		ret = start_abstract(uri + 12, uri_len - 12, true, SOCK_DGRAM, own);
	else if (has_prefix(uri, uri_len, "unixdg.new:"))
		ret = start_new("unixdg.new", SOCK_DGRAM, uri + 11, uri_len - 11, own);
	else if (has_prefix(uri, uri_len, "unixdg.srv:") || has_prefix(uri, uri_len, "unixdg:")) {
		decide("unixdg: a path, or a connect, is served by the loop on the caller's own socket");
		ret = -EINVAL;
	}
	else if (has_prefix(uri, uri_len, "unix.srv:")) {
		decide("unix listen: a path is the file policy's (the event loop serves it)");
		ret = -EINVAL;
	} else if (has_prefix(uri, uri_len, "unix:"))
		ret = start_unix(p, uri + 5, uri_len - 5, nonblock, own);
	else {
		char shown[64];

		printable(shown, sizeof(shown), uri, uri_len < 16 ? uri_len : 16);
		decide("open: unknown scheme in '%s'", shown);
		return -EINVAL;
	}
	if (ret >= 0)
		*fd_out = ret;
	return ret;
}

int pico_net_start(const struct pico_net_policy *p, const char *uri, size_t uri_len, int flags,
		   int *fd_out)
{
	if (!p) {
		if (fd_out)
			*fd_out = -1;
		decide("open: no network policy");
		return -EINVAL;
	}
	return pico_net_start_guest(p, uri, uri_len, flags, fd_out, NULL);
}
