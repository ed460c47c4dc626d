/* Sockets by address.
 *
 * A picoprocess has no network of its own (an empty network namespace and
 * no socket(2) in the ABI): every socket that reaches anything is created by
 * the monitor through pico_open with a URI (tcp:, udp:, tcp.srv:, unix:),
 * after checking the manifest.  Programs, though, make a socket first and
 * say where it goes later.  So:
 *   - socket() returns a placeholder: one end of an AF_UNIX socketpair (a
 *     real socket fd, so fcntl, setsockopt and poll work on it), and the
 *     library OS remembers the domain and type asked for;
 *   - connect() asks the monitor for the real, connected socket and puts it
 *     on the placeholder's number with dup3 (keeping FD_CLOEXEC and
 *     O_NONBLOCK as the program set them);
 *   - bind() records the address; listen() asks for a tcp.srv: listener on
 *     it (an ephemeral port if it was never bound) and puts it in place.
 * Entries are validated by (st_dev, st_ino) like the fd table: close is a
 * direct call.  Not offered: binding AF_UNIX names (no mediated call creates
 * a socket file), unconnected UDP sendto, abstract AF_UNIX addresses. */
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

struct sock_entry {
	unsigned seq; /* odd while written; 0: never */
	int domain, type;
	uint64_t dev, ino; /* the fd's object when this entry was written */
	int bound, connected;
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

/* Implements Linux syscall socket(2): a placeholder until connect or listen. */
LIBOS_SYSCALL(socket)
{
	int domain = (int)a0, type = (int)a1, proto = (int)a2;
	int base = type & SOCK_TYPE_MASK_K;
	if (type & ~(SOCK_TYPE_MASK_K | SOCK_NONBLOCK_K | SOCK_CLOEXEC_K))
		return -EINVAL;
	if (domain != AF_UNIX_K && domain != AF_INET_K && domain != AF_INET6_K)
		return -EAFNOSUPPORT;
	if (base != SOCK_STREAM_K && base != SOCK_DGRAM_K)
		return -ESOCKTNOSUPPORT;
	if (domain != AF_UNIX_K && proto != 0 && proto != (base == SOCK_STREAM_K ? IPPROTO_TCP : IPPROTO_UDP))
		return -EPROTONOSUPPORT;
	if (domain == AF_UNIX_K && base == SOCK_DGRAM_K)
		return -ESOCKTNOSUPPORT; /* the monitor offers stream unix: sockets only */
	int sv[2];
	long r = sys4(__NR_socketpair, AF_UNIX_K, base | (type & (SOCK_NONBLOCK_K | SOCK_CLOEXEC_K)), 0, sv);
	if (r < 0)
		return r;
	sys1(__NR_close, sv[1]);
	struct sock_entry e;
	memset(&e, 0, sizeof(e));
	e.domain = domain;
	e.type = base;
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

/* Asks the monitor for the real socket and puts it on fd's number. */
static long replace_with(long fd, const char *uri, size_t len)
{
	long fdflags = sys2(__NR_fcntl, fd, F_GETFD);
	long flflags = sys2(__NR_fcntl, fd, F_GETFL);
	if (fdflags < 0 || flflags < 0)
		return -EBADF;
	int flags = O_RDWR | O_CLOEXEC | (flflags & O_NONBLOCK);
	long real = pico_open(uri, len, flags, 0);
	if (real < 0)
		return real;
	long r = sys3(__NR_dup3, real, fd, (fdflags & FD_CLOEXEC) ? O_CLOEXEC : 0);
	sys1(__NR_close, real);
	return r < 0 ? r : 0;
}

/* Implements Linux syscall connect(2) on a placeholder: the monitor
 * connects (if the manifest grants the address) and the connected socket
 * takes the placeholder's place. */
LIBOS_SYSCALL(connect)
{
	long fd = a0;
	unsigned len = (unsigned)a2;
	struct sock_entry e;
	unsigned char addr[sizeof(struct sockaddr_un) + 1];
	if (!sock_get(fd, &e)) {
		struct stat st;
		long r = sys2(__NR_fstat, fd, &st);
		if (r < 0)
			return r;
		return (st.st_mode & S_IFMT) == S_IFSOCK ? -EISCONN : -ENOTSOCK;
	}
	if (e.connected)
		return -EISCONN;
	if (len > sizeof(struct sockaddr_un) || len < 2)
		return -EINVAL;
	long r = libos_copy_from_guest(addr, (const void *)a1, len);
	if (r < 0)
		return r;
	unsigned family = (unsigned)(addr[0] | addr[1] << 8);
	if ((int)family != e.domain)
		return -EAFNOSUPPORT;
	char uri[PICO_MAX_PATH + 16];
	struct strbuf sb;
	sb_init(&sb, uri, sizeof(uri));
	if (e.domain == AF_UNIX_K) {
		const char *path = (const char *)addr + 2;
		size_t n = libos_strnlen(path, len - 2);
		if (n == 0)
			return -ECONNREFUSED; /* abstract names: never reachable from here */
		sb_add(&sb, "unix:");
		sb_addn(&sb, path, n);
	} else {
		sb_add(&sb, e.type == SOCK_STREAM_K ? "tcp:" : "udp:");
		r = format_inet(&sb, e.domain, addr, len);
		if (r < 0)
			return r;
	}
	if (sb.overflow)
		return -ENAMETOOLONG;
	r = replace_with(fd, uri, sb.len);
	if (r < 0)
		return r;
	e.connected = 1;
	e.peer_len = len;
	memcpy(e.peer, addr, len);
	sock_put(fd, &e);
	return 0;
}

/* Implements Linux syscall bind(2) on a placeholder: the address is kept
 * for listen (the monitor binds when it makes the listener). */
LIBOS_SYSCALL(bind)
{
	long fd = a0;
	unsigned len = (unsigned)a2;
	struct sock_entry e;
	if (!sock_get(fd, &e)) {
		struct stat st;
		long r = sys2(__NR_fstat, fd, &st);
		return r < 0 ? r : (st.st_mode & S_IFMT) == S_IFSOCK ? -EINVAL : -ENOTSOCK;
	}
	if (e.bound || e.connected)
		return -EINVAL;
	if (e.domain == AF_UNIX_K)
		return -EACCES; /* no mediated call creates a socket file */
	if (len > sizeof(e.addr) || len < 2)
		return -EINVAL;
	long r = libos_copy_from_guest(e.addr, (const void *)a1, len);
	if (r < 0)
		return r;
	if ((int)(e.addr[0] | e.addr[1] << 8) != e.domain)
		return -EAFNOSUPPORT;
	e.bound = 1;
	e.addr_len = len;
	sock_put(fd, &e);
	return 0;
}

/* Implements Linux syscall listen(2): a tcp.srv: listener from the monitor
 * on the bound address (0.0.0.0 or :: with an ephemeral port if unbound). */
LIBOS_SYSCALL(listen)
{
	long fd = a0;
	struct sock_entry e;
	if (!sock_get(fd, &e)) {
		struct stat st;
		long r = sys2(__NR_fstat, fd, &st);
		/* A listener the monitor made: listening again is harmless. */
		return r < 0 ? r : (st.st_mode & S_IFMT) == S_IFSOCK ? 0 : -ENOTSOCK;
	}
	if (e.domain == AF_UNIX_K || e.type != SOCK_STREAM_K)
		return -EOPNOTSUPP;
	if (e.connected)
		return -EINVAL;
	char uri[96];
	struct strbuf sb;
	sb_init(&sb, uri, sizeof(uri));
	sb_add(&sb, "tcp.srv:");
	if (e.bound) {
		long r = format_inet(&sb, e.domain, e.addr, e.addr_len);
		if (r < 0)
			return r;
	} else {
		sb_add(&sb, e.domain == AF_INET_K ? "0.0.0.0:0" : "[::]:0");
	}
	long r = replace_with(fd, uri, sb.len);
	if (r < 0)
		return r;
	e.connected = 1; /* no longer a placeholder */
	sock_put(fd, &e);
	return 0;
}

/* Implements Linux syscall getpeername(2) for sockets connected here (the
 * address the program asked for). */
LIBOS_SYSCALL(getpeername)
{
	struct sock_entry e;
	unsigned cap;
	if (!sock_get(a0, &e) || !e.connected || !e.peer_len) {
		struct stat st;
		long r = sys2(__NR_fstat, a0, &st);
		return r < 0 ? r : (st.st_mode & S_IFMT) == S_IFSOCK ? -ENOTCONN : -ENOTSOCK;
	}
	long r = libos_copy_from_guest(&cap, (const void *)a2, sizeof(cap));
	if (r < 0)
		return r;
	unsigned n = cap < e.peer_len ? cap : e.peer_len;
	if ((r = libos_copy_to_guest((void *)a1, e.peer, n)) < 0)
		return r;
	return libos_copy_to_guest((void *)a2, &e.peer_len, sizeof(e.peer_len));
}

/* Implements Linux syscall accept(2) on accept4. */
LIBOS_SYSCALL(accept) { return sys4(__NR_accept4, a0, a1, a2, 0); }
