/* Sockets by address.
 *
 * A picoprocess has no socket(2), bind(2), listen(2) or connect(2) of its
 * own: every socket that can reach anything is made by the monitor through
 * pico_open with a URI (native/net.h), after checking the manifest.  Two
 * networks serve those URIs: the host's, for endpoints the manifest grants,
 * and the picoprocess's own (its own network namespace: a loopback, as a
 * container has), for loopback and wildcard addresses that are not granted
 * and for abstract AF_UNIX names; AF_UNIX path names are files in the
 * guest's view, made by the monitor in a writable mount.  Programs, though,
 * make a socket first and say where it goes later.  So:
 *   - socket(AF_UNIX, SOCK_STREAM) returns a placeholder: one end of an
 *     AF_UNIX socketpair (a real socket fd, so fcntl, setsockopt(SOL_SOCKET)
 *     and poll work on it), and the library OS remembers the domain and
 *     type asked for;
 *   - socket(AF_UNIX, SOCK_DGRAM) returns a real, unbound datagram socket
 *     of the own network (unixdg.new:), which bind() to a path and
 *     connect() then bind or connect in place: the monitor acts on this
 *     very socket (unixdg.srv:PATH?fd=N, unixdg:ADDR?fd=N), so that it
 *     keeps its bound address when it connects, and no socket of the
 *     host's network (whose sendto would reach the host's abstract names)
 *     ever reaches the program;
 *   - socket(AF_INET*, SOCK_DGRAM) returns a real, unbound UDP socket of the
 *     picoprocess's own network (udp.new:), so that sendto/recvfrom, direct
 *     calls, work on its loopback from the start; socket(AF_INET*,
 *     SOCK_STREAM) a real, unbound TCP socket there (tcp.new:), so that the
 *     TCP and socket options a program sets before it connects are a TCP
 *     socket's (without an own network: a placeholder, as for unix);
 *   - bind() asks for the socket in its final state and puts it on the
 *     socket's number with dup3 (keeping FD_CLOEXEC, O_NONBLOCK and the
 *     SOL_SOCKET options set so far): a stream socket is then already
 *     listening (tcp.srv:, unix.srv:), so that getsockname works between
 *     bind and listen, as programs expect; a datagram socket is bound
 *     (udp.srv:);
 *   - listen() on a socket bound that way has nothing left to do; on an
 *     unbound inet one it asks for a listener on the wildcard address with
 *     an ephemeral port;
 *   - connect() asks for the connected socket (tcp:, udp:, unix:), from
 *     the address a bound socket holds (see add_source);
 *   - getsockname(): the kernel shows a unix socket the monitor bound by its
 *     name within its directory (the monitor binds from the directory it
 *     resolved, never by a path it would look up again), so the library OS
 *     answers with the path the program bound; an unbound placeholder
 *     answers as an unbound socket of its domain.
 * Entries are validated by (st_dev, st_ino) like the fd table: close is a
 * direct call.  What differs from Linux: a stream socket accepts
 * connections from bind() on (not only from listen()), its backlog is the
 * monitor's; a socket bound before connect() to a granted host endpoint
 * loses its source address;
 * the socket that takes its place keeps only the options replace_with
 * carries; an unconnected unix datagram socket cannot sendto a path (the
 * kernel looks it up in the picoprocess's empty root: ENOENT). */
#include "libos.h"

#include <linux/in.h>
#include <linux/in6.h>
#include <linux/un.h>

#define AF_UNIX_K 1
#define AF_INET_K 2
#define AF_INET6_K 10
#define SOCK_STREAM_K 1
#define SOCK_DGRAM_K 2
#define SOCK_TYPE_MASK_K 0xf
#define SOCK_NONBLOCK_K O_NONBLOCK
#define SOCK_CLOEXEC_K O_CLOEXEC
#define SOL_SOCKET_K 1
#define SO_REUSEADDR_K 2
#define SO_BROADCAST_K 6
#define SO_KEEPALIVE_K 9
#define SO_LINGER_K 13
#define SO_REUSEPORT_K 15
#define SO_RCVTIMEO_K 20
#define SO_PEERNAME_K 28
#define SO_DOMAIN_K 39
#define TCP_NODELAY_K 1
#define TCP_KEEPIDLE_K 4
#define TCP_KEEPINTVL_K 5
#define TCP_KEEPCNT_K 6
#define TCP_USER_TIMEOUT_K 18
#define TCP_NOTSENT_LOWAT_K 25
#define SO_SNDTIMEO_K 21
#define IPPROTO_IPV6_K 41
#define IPV6_V6ONLY_K 26
#define UNIX_ADDR_MAX ((unsigned)sizeof(struct sockaddr_un))

struct sock_entry {
	unsigned seq; /* odd while written; 0: never */
	int domain, type;
	uint64_t dev, ino; /* the fd's object when this entry was written */
	int bound;	   /* addr holds the address the program bound */
	int connected;	   /* peer holds the address the program connected to */
	int real;	   /* no longer a placeholder (a socket from the monitor) */
	int listening;	   /* a listener already: listen() has nothing to do */
	int v6only;	   /* IPV6_V6ONLY as the program set it (default: 0) */
	int in_progress;   /* told EINPROGRESS: the next connect() reports success */
	unsigned addr_len, peer_len;
	unsigned char addr[sizeof(struct sockaddr_un)];
	unsigned char peer[sizeof(struct sockaddr_un)];
};

static struct sock_entry socks[PICO_LOADER_FD];

/* Copies the entry for fd if it still describes the object open there. */
static int sock_get(long fd, struct sock_entry *out)
{
	struct stat st;
	if (fd < 0 || fd >= PICO_LOADER_FD)
		return 0;
	if (sys2(__NR_fstat, fd, &st) < 0)
		return 0;
	for (int tries = 0; tries < 8; tries++) {
		unsigned seq = __atomic_load_n(&socks[fd].seq, __ATOMIC_ACQUIRE);
		if (seq == 0)
			return 0;
		if (seq & 1)
			continue;
		memcpy(out, &socks[fd], sizeof(*out));
		__atomic_thread_fence(__ATOMIC_ACQUIRE);
		if (__atomic_load_n(&socks[fd].seq, __ATOMIC_RELAXED) != seq)
			continue;
		return out->dev == st.st_dev && out->ino == st.st_ino;
	}
	return 0;
}

static void sock_put(long fd, struct sock_entry *e)
{
	struct stat st;
	if (fd < 0 || fd >= PICO_LOADER_FD || sys2(__NR_fstat, fd, &st) < 0)
		return;
	e->dev = st.st_dev;
	e->ino = st.st_ino;
	unsigned seq = __atomic_load_n(&socks[fd].seq, __ATOMIC_RELAXED);
	if ((seq & 1) || !__atomic_compare_exchange_n(&socks[fd].seq, &seq, seq + 1, 0, __ATOMIC_ACQUIRE,
						       __ATOMIC_RELAXED))
		return;
	e->seq = seq + 1;
	memcpy(&socks[fd], e, sizeof(*e));
	__atomic_store_n(&socks[fd].seq, seq + 2, __ATOMIC_RELEASE);
}

/* What a call on an fd without an entry answers: the fd's own error, or
 * `sock_err` for a socket the library OS did not make, or ENOTSOCK. */
static long untracked(long fd, long sock_err)
{
	struct stat st;
	long r = sys2(__NR_fstat, fd, &st);
	return r < 0 ? r : (st.st_mode & S_IFMT) == S_IFSOCK ? sock_err : -ENOTSOCK;
}

/* Asks the monitor for the real socket and puts it on fd's number, keeping
 * what the program set on the old one: FD_CLOEXEC, O_NONBLOCK and the
 * SOL_SOCKET options that mean the same on every socket. */
static long replace_with(long fd, const char *uri, size_t len, unsigned mode)
{
	static const int carried[] = {SO_KEEPALIVE_K, SO_BROADCAST_K, SO_LINGER_K, SO_RCVTIMEO_K,
				      SO_SNDTIMEO_K};
	/* TCP options a program sets on its socket before it connects or
	 * listens (the socket from socket(2) is a TCP one, unbound). */
	static const int carried_tcp[] = {TCP_NODELAY_K, TCP_KEEPIDLE_K, TCP_KEEPINTVL_K,
					  TCP_KEEPCNT_K, TCP_USER_TIMEOUT_K, TCP_NOTSENT_LOWAT_K};
	long fdflags = sys2(__NR_fcntl, fd, F_GETFD);
	long flflags = sys2(__NR_fcntl, fd, F_GETFL);
	if (fdflags < 0 || flflags < 0)
		return -EBADF;
	int flags = O_RDWR | O_CLOEXEC | (flflags & O_NONBLOCK);
	long real = pico_open(uri, len, flags, mode);
	if (real < 0)
		return real;
	for (size_t i = 0; i < sizeof(carried) / sizeof(carried[0]); i++) {
		unsigned char val[16];
		unsigned vlen = sizeof(val);
		if (sys5(__NR_getsockopt, fd, SOL_SOCKET_K, carried[i], val, &vlen) == 0)
			sys5(__NR_setsockopt, real, SOL_SOCKET_K, carried[i], val, vlen);
	}
	for (size_t i = 0; i < sizeof(carried_tcp) / sizeof(carried_tcp[0]); i++) {
		int val;
		unsigned vlen = sizeof(val);
		if (sys5(__NR_getsockopt, fd, IPPROTO_TCP, carried_tcp[i], &val, &vlen) == 0)
			sys5(__NR_setsockopt, real, IPPROTO_TCP, carried_tcp[i], &val, vlen);
	}
	long r = sys3(__NR_dup3, real, fd, (fdflags & FD_CLOEXEC) ? O_CLOEXEC : 0);
	sys1(__NR_close, real);
	return r < 0 ? r : 0;
}

static int int_option(long fd, int name)
{
	int v = 0;
	unsigned len = sizeof(v);
	return sys5(__NR_getsockopt, fd, SOL_SOCKET_K, name, &v, &len) == 0 && v;
}

/* "?reuseaddr,reuseport,dualstack": the options of the program's socket
 * that the monitor must set before it binds. */
static void add_options(struct strbuf *sb, long fd, const struct sock_entry *e)
{
	const char *sep = "?";
	if (int_option(fd, SO_REUSEADDR_K)) {
		sb_add(sb, sep);
		sb_add(sb, "reuseaddr");
		sep = ",";
	}
	if (int_option(fd, SO_REUSEPORT_K)) {
		sb_add(sb, sep);
		sb_add(sb, "reuseport");
		sep = ",";
	}
	if (e->domain == AF_INET6_K && !e->v6only) {
		sb_add(sb, sep);
		sb_add(sb, "dualstack");
	}
}

/* Implements Linux syscall socket(2): a placeholder until bind, listen or
 * connect, or (UDP) an unbound socket of the picoprocess's own network. */
LIBOS_SYSCALL(socket)
{
	int domain = (int)a0, type = (int)a1, proto = (int)a2;
	int base = type & SOCK_TYPE_MASK_K;
	int fdflags = type & (SOCK_NONBLOCK_K | SOCK_CLOEXEC_K);
	if (type & ~(SOCK_TYPE_MASK_K | SOCK_NONBLOCK_K | SOCK_CLOEXEC_K))
		return -EINVAL;
	if (domain != AF_UNIX_K && domain != AF_INET_K && domain != AF_INET6_K)
		return -EAFNOSUPPORT;
	if (base != SOCK_STREAM_K && base != SOCK_DGRAM_K)
		return -ESOCKTNOSUPPORT;
	if (domain != AF_UNIX_K && proto != 0 && proto != (base == SOCK_STREAM_K ? IPPROTO_TCP : IPPROTO_UDP))
		return -EPROTONOSUPPORT;
	struct sock_entry e;
	memset(&e, 0, sizeof(e));
	e.domain = domain;
	e.type = base;
	if (domain == AF_UNIX_K && base == SOCK_DGRAM_K) {
		/* A real, unbound datagram socket of the own network: sendto
		 * and recvfrom are direct calls; bind and connect then happen
		 * to this very socket (the monitor's unixdg: schemes). */
		long fd = pico_open("unixdg.new:", 11, O_RDWR | fdflags, 0);
		if (fd == -EACCES)
			return -ESOCKTNOSUPPORT; /* no own network: not offered */
		if (fd >= 0) {
			e.real = 1;
			sock_put(fd, &e);
		}
		return fd;
	}
	if (domain != AF_UNIX_K) {
		/* Dual-stack, as Linux makes an AF_INET6 socket by default. */
		const char *uri = base == SOCK_DGRAM_K ? (domain == AF_INET_K ? "udp.new:inet" : "udp.new:inet6?dualstack")
						       : (domain == AF_INET_K ? "tcp.new:inet" : "tcp.new:inet6?dualstack");
		long fd = pico_open(uri, libos_strlen(uri), O_RDWR | fdflags, 0);
		if (fd >= 0) {
			e.real = 1;
			sock_put(fd, &e);
			return fd;
		}
		if (fd != -EACCES)
			return fd;
		/* No network of its own here (a monitor without one): a
		 * placeholder, which bind or connect can still turn into a
		 * granted socket. */
	}
	int sv[2];
	long r = sys4(__NR_socketpair, AF_UNIX_K, base | fdflags, 0, sv);
	if (r < 0)
		return r;
	sys1(__NR_close, sv[1]);
	sock_put(sv[0], &e);
	return sv[0];
}

static void add_hex4(struct strbuf *sb, unsigned v)
{
	char tmp[4];
	int n = 0;
	do {
		tmp[n++] = "0123456789abcdef"[v & 15];
		v >>= 4;
	} while (v);
	while (n)
		sb_addn(sb, &tmp[--n], 1);
}

/* "HOST:PORT" of an inet address as the monitor's URIs spell it. */
static long format_inet(struct strbuf *sb, int domain, const unsigned char *addr, unsigned len)
{
	if (domain == AF_INET_K) {
		const struct sockaddr_in *in = (const void *)addr;
		if (len < sizeof(*in) || in->sin_family != AF_INET_K)
			return -EINVAL;
		const unsigned char *b = (const unsigned char *)&in->sin_addr.s_addr;
		for (int i = 0; i < 4; i++) {
			sb_addnum(sb, b[i]);
			sb_add(sb, i < 3 ? "." : ":");
		}
		sb_addnum(sb, (unsigned)((in->sin_port & 0xff) << 8 | in->sin_port >> 8));
		return 0;
	}
	const struct sockaddr_in6 *in6 = (const void *)addr;
	if (len < sizeof(*in6) || in6->sin6_family != AF_INET6_K)
		return -EINVAL;
	sb_add(sb, "[");
	for (int i = 0; i < 8; i++) {
		add_hex4(sb, (unsigned)in6->sin6_addr.s6_addr[2 * i] << 8 | in6->sin6_addr.s6_addr[2 * i + 1]);
		if (i < 7)
			sb_add(sb, ":");
	}
	sb_add(sb, "]:");
	sb_addnum(sb, (unsigned)((in6->sin6_port & 0xff) << 8 | in6->sin6_port >> 8));
	return 0;
}

/* A unix address as the monitor's URIs spell it: "@NAME" for an abstract
 * name (or "@" alone: autobind), else the absolute guest path (a relative
 * one is taken against the cwd). */
static long format_unix(struct strbuf *sb, const unsigned char *addr, unsigned len)
{
	const char *path = (const char *)addr + 2;
	unsigned max = len - 2;
	if (len == 2) {
		sb_add(sb, "@");
		return 0;
	}
	if (path[0] == 0) {
		/* Abstract: the name is every byte that follows, NULs too;
		 * the monitor's URIs cannot carry a NUL. */
		if (libos_strnlen(path + 1, max - 1) != max - 1)
			return -EINVAL;
		sb_add(sb, "@");
		sb_addn(sb, path + 1, max - 1);
		return 0;
	}
	size_t n = libos_strnlen(path, max);
	if (path[0] != '/') {
		char cwd[PICO_MAX_PATH];
		long r = libos_cwd_get(cwd, sizeof(cwd));
		if (r < 0)
			return r;
		sb_add(sb, cwd);
		if (r > 1)
			sb_add(sb, "/");
	}
	sb_addn(sb, path, n);
	return 0;
}

/* "?fd=N": the unix datagram socket on fd, which the monitor binds or
 * connects in place (it keeps its bound address and its options). */
static void add_own_fd(struct strbuf *sb, long fd)
{
	sb_add(sb, "?fd=");
	sb_addnum(sb, (unsigned)fd);
}

static int is_unix_dgram(const struct sock_entry *e)
{
	return e->domain == AF_UNIX_K && e->type == SOCK_DGRAM_K;
}

/* Copies a sockaddr argument of len bytes (2..sizeof(sockaddr_un)) whose
 * family must be the socket's. */
static long fetch_addr(long ptr, unsigned len, int domain, unsigned char *out)
{
	if (len > UNIX_ADDR_MAX || len < 2)
		return -EINVAL;
	long r = libos_copy_from_guest(out, (const void *)ptr, len);
	if (r < 0)
		return r;
	if ((int)(out[0] | out[1] << 8) != domain)
		return domain == AF_UNIX_K ? -EINVAL : -EAFNOSUPPORT;
	return 0;
}

/* A socket bound before connect: "from=ADDR:PORT", the address it holds,
 * for the monitor to bind the connected socket to.  The socket bind made
 * (a listener, or a bound UDP socket) is put away first for an unbound one,
 * so that its port is free again for the connected socket. */
static long add_source(struct strbuf *sb, long fd, const struct sock_entry *e)
{
	union {
		struct sockaddr_in6 in6;
		unsigned char bytes[sizeof(struct sockaddr_in6)];
	} u;
	unsigned len = sizeof(u);
	long r = sys3(__NR_getsockname, fd, &u, &len);
	if (r < 0)
		return r;
	const char *fresh = e->type == SOCK_STREAM_K ? (e->domain == AF_INET_K ? "tcp.new:inet" : "tcp.new:inet6")
						      : (e->domain == AF_INET_K ? "udp.new:inet" : "udp.new:inet6");
	if (replace_with(fd, fresh, libos_strlen(fresh), 0) < 0)
		return 0; /* no own network: the source is lost, as before */
	int has_options = 0;
	for (size_t i = 0; i < sb->len; i++)
		has_options |= sb->buf[i] == '?';
	sb_add(sb, has_options ? ",from=" : "?from=");
	return format_inet(sb, e->domain, u.bytes, len);
}

/* Implements Linux syscall connect(2): the monitor connects (to a granted
 * host endpoint, or in the picoprocess's own network) and the connected
 * socket takes the socket's place. */
LIBOS_SYSCALL(connect)
{
	long fd = a0;
	unsigned len = (unsigned)a2;
	struct sock_entry e;
	unsigned char addr[UNIX_ADDR_MAX + 1];
	if (!sock_get(fd, &e))
		return untracked(fd, -EISCONN);
	if (e.in_progress) {
		/* Linux answers the first connect() after a non-blocking one
		 * has completed with success, later ones with EISCONN. */
		e.in_progress = 0;
		sock_put(fd, &e);
		return 0;
	}
	if (e.connected && !is_unix_dgram(&e))
		return -EISCONN; /* a datagram socket may connect again */
	long r = fetch_addr(a1, len, e.domain, addr);
	if (r < 0)
		return r;
	char uri[PICO_MAX_PATH + 16];
	struct strbuf sb;
	sb_init(&sb, uri, sizeof(uri));
	if (e.domain == AF_UNIX_K) {
		if (len == 2)
			return -EINVAL;
		sb_add(&sb, is_unix_dgram(&e) ? "unixdg:" : "unix:");
		r = format_unix(&sb, addr, len);
		if (r == 0 && is_unix_dgram(&e))
			add_own_fd(&sb, fd);
	} else {
		sb_add(&sb, e.type == SOCK_STREAM_K ? "tcp:" : "udp:");
		r = format_inet(&sb, e.domain, addr, len);
		if (r == 0)
			add_options(&sb, fd, &e);
		if (r == 0 && e.bound)
			r = add_source(&sb, fd, &e);
	}
	if (r < 0)
		return r;
	if (sb.overflow)
		return -ENAMETOOLONG;
	r = replace_with(fd, uri, sb.len, 0);
	if (r < 0)
		return r;
	e.connected = 1;
	e.real = 1;
	e.listening = 0;
	e.peer_len = len;
	memcpy(e.peer, addr, len);
	/* The monitor answers once the connection is made, but a program
	 * that asked not to block expects TCP's EINPROGRESS (then a writable
	 * socket with SO_ERROR 0), as Linux answers even on loopback. */
	e.in_progress = e.domain != AF_UNIX_K && e.type == SOCK_STREAM_K &&
			(sys2(__NR_fcntl, fd, F_GETFL) & O_NONBLOCK);
	sock_put(fd, &e);
	return e.in_progress ? -EINPROGRESS : 0;
}

/* Implements Linux syscall bind(2): the socket in its final state from the
 * monitor (see the top of this file). */
LIBOS_SYSCALL(bind)
{
	long fd = a0;
	unsigned len = (unsigned)a2;
	struct sock_entry e;
	unsigned char addr[UNIX_ADDR_MAX + 1];
	if (!sock_get(fd, &e))
		return untracked(fd, -EINVAL);
	if (e.bound || e.connected || e.listening)
		return -EINVAL;
	long r = fetch_addr(a1, len, e.domain, addr);
	if (r < 0)
		return r;
	char uri[PICO_MAX_PATH + 16];
	struct strbuf sb;
	unsigned mode = 0;
	sb_init(&sb, uri, sizeof(uri));
	if (is_unix_dgram(&e)) {
		/* A path: this socket, bound in place; an abstract name (or
		 * autobind): a new socket of the own network bound there. */
		sb_add(&sb, "unixdg.srv:");
		r = format_unix(&sb, addr, len);
		if (r == 0 && len > 2 && addr[2] != 0)
			add_own_fd(&sb, fd);
		mode = 0777 & ~libos_current()->pub.umask;
	} else if (e.domain == AF_UNIX_K) {
		sb_add(&sb, "unix.srv:");
		r = format_unix(&sb, addr, len);
		/* A socket file gets 0777 less the umask, as bind(2) makes it. */
		mode = 0777 & ~libos_current()->pub.umask;
	} else {
		sb_add(&sb, e.type == SOCK_STREAM_K ? "tcp.srv:" : "udp.srv:");
		r = format_inet(&sb, e.domain, addr, len);
		if (r == 0)
			add_options(&sb, fd, &e);
	}
	if (r < 0)
		return r;
	if (sb.overflow)
		return -ENAMETOOLONG;
	r = replace_with(fd, uri, sb.len, mode);
	if (r < 0)
		return r;
	e.bound = 1;
	e.real = 1;
	e.listening = e.type == SOCK_STREAM_K;
	e.addr_len = len;
	memcpy(e.addr, addr, len);
	sock_put(fd, &e);
	return 0;
}

/* Implements Linux syscall listen(2): nothing to do on a socket bind()
 * made a listener; an unbound inet one gets a listener on the wildcard
 * address and an ephemeral port. */
LIBOS_SYSCALL(listen)
{
	long fd = a0;
	struct sock_entry e;
	if (!sock_get(fd, &e))
		/* A listener the monitor made: listening again is harmless. */
		return untracked(fd, 0);
	if (e.type != SOCK_STREAM_K)
		return -EOPNOTSUPP;
	if (e.connected)
		return -EINVAL;
	if (e.listening)
		return 0;
	if (e.domain == AF_UNIX_K)
		return -EINVAL; /* unbound: Linux would autobind; not offered */
	char uri[96];
	struct strbuf sb;
	sb_init(&sb, uri, sizeof(uri));
	sb_add(&sb, "tcp.srv:");
	sb_add(&sb, e.domain == AF_INET_K ? "0.0.0.0:0" : "[::]:0");
	add_options(&sb, fd, &e);
	long r = replace_with(fd, uri, sb.len, 0);
	if (r < 0)
		return r;
	e.real = 1;
	e.listening = 1;
	sock_put(fd, &e);
	return 0;
}

/* Writes an address to the guest as getsockname/getpeername do: at most
 * *lenp bytes of it, and its full length in *lenp. */
static long give_address(long ptr, long lenp, const void *addr, unsigned len)
{
	unsigned cap;
	long r = libos_copy_from_guest(&cap, (const void *)lenp, sizeof(cap));
	if (r < 0)
		return r;
	if ((int)cap < 0)
		return -EINVAL;
	unsigned n = cap < len ? cap : len;
	if (n && (r = libos_copy_to_guest((void *)ptr, addr, n)) < 0)
		return r;
	return libos_copy_to_guest((void *)lenp, &len, sizeof(len));
}

/* The peer's address from the kernel through getsockopt(SO_PEERNAME),
 * which the filter lets through (getpeername is not a direct call).  The
 * option answers EINVAL when asked for more than the address's length, so
 * that length is found first: fixed for inet, searched for for unix. */
static long peer_name(long fd, void *out, unsigned *len)
{
	int domain = 0;
	unsigned dlen = sizeof(domain);
	long r = sys5(__NR_getsockopt, fd, SOL_SOCKET_K, SO_DOMAIN_K, &domain, &dlen);
	if (r < 0)
		return r;
	unsigned n = domain == AF_INET_K ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
	if (domain == AF_UNIX_K) {
		/* the largest length the option accepts: lo accepted, hi not */
		unsigned lo = 2, hi = sizeof(struct sockaddr_un) + 1;
		while (hi - lo > 1) {
			unsigned mid = (lo + hi) / 2, l = mid;
			r = sys5(__NR_getsockopt, fd, SOL_SOCKET_K, SO_PEERNAME_K, out, &l);
			if (r == 0)
				lo = mid;
			else if (r == -EINVAL)
				hi = mid;
			else
				return r;
		}
		n = lo;
	}
	*len = n;
	return sys5(__NR_getsockopt, fd, SOL_SOCKET_K, SO_PEERNAME_K, out, len);
}

/* Implements Linux syscall getpeername(2): for sockets connected here, the
 * address the program asked for; for others (accepted ones), the kernel's. */
LIBOS_SYSCALL(getpeername)
{
	struct sock_entry e;
	if (sock_get(a0, &e) && e.connected && e.peer_len)
		return give_address(a1, a2, e.peer, e.peer_len);
	if (sock_get(a0, &e) && !e.real)
		return -ENOTCONN; /* a placeholder */
	union {
		struct sockaddr_un un;
		unsigned char bytes[128];
	} u;
	unsigned len = 0;
	long r = peer_name(a0, &u, &len);
	if (r < 0)
		return r == -ENOPROTOOPT || r == -ENOTSOCK ? untracked(a0, -ENOTCONN) : r;
	if (len > sizeof(u))
		len = sizeof(u);
	return give_address(a1, a2, &u, len);
}

/* A unix socket the monitor bound shows its name within its directory;
 * the path the program bound, if one of its sockets has that name. */
static int bound_path_of(const char *name, size_t n, struct sock_entry *out)
{
	for (long fd = 0; fd < PICO_LOADER_FD; fd++) {
		struct sock_entry e;
		if (__atomic_load_n(&socks[fd].seq, __ATOMIC_RELAXED) == 0 || !sock_get(fd, &e))
			continue;
		if (e.domain != AF_UNIX_K || !e.bound || e.addr_len <= 2 || e.addr[2] == 0)
			continue;
		const char *path = (const char *)e.addr + 2;
		size_t len = libos_strnlen(path, e.addr_len - 2);
		if (len > n && path[len - n - 1] == '/' && memcmp(path + len - n, name, n) == 0) {
			*out = e;
			return 1;
		}
	}
	return 0;
}

/* Implements Linux syscall getsockname(2).  The filter traps it outside the
 * library OS's code, which makes the real call. */
LIBOS_SYSCALL(getsockname)
{
	struct sock_entry e;
	if (sock_get(a0, &e)) {
		/* A path: the monitor bound it by its name within its directory.
		 * (An abstract name is bound as it is.) */
		if (e.domain == AF_UNIX_K && e.bound && e.addr_len > 2 && e.addr[2] != 0)
			return give_address(a1, a2, e.addr, e.addr_len);
		if (!e.real) {
			/* A placeholder: what an unbound socket of its domain shows. */
			unsigned char zero[sizeof(struct sockaddr_in6)];
			unsigned len = e.domain == AF_INET_K    ? sizeof(struct sockaddr_in)
				       : e.domain == AF_INET6_K ? sizeof(struct sockaddr_in6)
								: 2;
			memset(zero, 0, sizeof(zero));
			zero[0] = (unsigned char)e.domain;
			return give_address(a1, a2, zero, len);
		}
	}
	union {
		struct sockaddr_un un;
		unsigned char bytes[128];
	} u;
	unsigned len = sizeof(u);
	long r = sys3(__NR_getsockname, a0, &u, &len);
	if (r < 0)
		return r;
	if (len > sizeof(u))
		len = sizeof(u);
	if (u.un.sun_family == AF_UNIX_K && len > 2 && u.un.sun_path[0] && u.un.sun_path[0] != '/') {
		size_t n = libos_strnlen(u.un.sun_path, len - 2);
		if (bound_path_of(u.un.sun_path, n, &e))
			return give_address(a1, a2, e.addr, e.addr_len);
	}
	return give_address(a1, a2, &u, len);
}

/* The filter lets SOL_SOCKET and IPPROTO_TCP options through by name
 * (abi_v1.toml): one of those levels trapping is a name it refuses
 * (SO_ATTACH_FILTER, TCP_ULP ...), refused here as Linux refuses an option
 * it does not know, and audited. */
static long refused_option(long nr, long fd)
{
	pico_note_unsupported(nr, fd);
	return -ENOPROTOOPT;
}

/* Implements the forms of Linux syscall setsockopt(2) the filter does not
 * let through (option names it does not list, options of other levels).
 * IPV6_V6ONLY is recorded until the socket is made: the monitor sets it
 * before bind.  Other options answer ENOSYS (and leave an audit record). */
LIBOS_SYSCALL(setsockopt)
{
	struct sock_entry e;
	int v;
	if (a1 == SOL_SOCKET_K || a1 == IPPROTO_TCP)
		return refused_option(__NR_setsockopt, a0);
	if (a1 != IPPROTO_IPV6_K || a2 != IPV6_V6ONLY_K)
		return -ENOSYS;
	if (!sock_get(a0, &e))
		return untracked(a0, -ENOSYS);
	if (e.domain != AF_INET6_K)
		return -ENOPROTOOPT;
	if ((unsigned long)a4 < sizeof(v))
		return -EINVAL;
	long r = libos_copy_from_guest(&v, (const void *)a3, sizeof(v));
	if (r < 0)
		return r;
	if (e.bound || e.connected || e.listening)
		return (!!v == e.v6only) ? 0 : -EINVAL; /* too late to change */
	e.v6only = !!v;
	sock_put(a0, &e);
	return 0;
}

/* Implements the forms of Linux syscall getsockopt(2) the filter does not
 * let through: IPV6_V6ONLY as recorded; refused names as setsockopt;
 * others ENOSYS. */
LIBOS_SYSCALL(getsockopt)
{
	struct sock_entry e;
	if (a1 == SOL_SOCKET_K || a1 == IPPROTO_TCP)
		return refused_option(__NR_getsockopt, a0);
	if (a1 != IPPROTO_IPV6_K || a2 != IPV6_V6ONLY_K)
		return -ENOSYS;
	if (!sock_get(a0, &e))
		return untracked(a0, -ENOSYS);
	if (e.domain != AF_INET6_K)
		return -ENOPROTOOPT;
	return give_address(a3, a4, &e.v6only, sizeof(e.v6only));
}

/* Implements Linux syscall accept(2) on accept4. */
LIBOS_SYSCALL(accept) { return sys4(__NR_accept4, a0, a1, a2, 0); }
