/* What serves each mediated call: one table from the call's number to its
 * handler, and for pico_open one table from the URI's scheme to the handler
 * that makes the fd.  The handlers live with their kind (serve_paths.c,
 * serve_task.c; the network schemes in net.h).  See serve.h. */
#define _GNU_SOURCE
#include "serve.h"

#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <string.h>
#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "denial.h"

/* ---- pico_open: by scheme ---- */

/* The URI of an open, split at its scheme's colon, and its flags. */
struct open_uri {
	const char *uri; /* the whole URI (NUL-terminated copy) */
	size_t len;
	size_t scheme_len;
	const char *rest; /* after the colon */
	size_t rest_len;
	uint32_t flags, mode;
};

/* A handler of a scheme returns the fd to hand to the guest, -errno, or
 * ANSWERED_LATER when it has set the call up to be answered later itself
 * (c->deferred, c->own). */
#define ANSWERED_LATER (-100000L)

typedef long (*open_fn)(struct call *c, const struct open_uri *u);

/* The path of a file: or dir: URI: absolute, at most PICO_MAX_PATH bytes. */
static long check_path(const struct open_uri *u)
{
	if (u->rest_len > PICO_MAX_PATH)
		return -ENAMETOOLONG;
	if (u->rest_len == 0 || u->rest[0] != '/')
		return -EINVAL;
	return 0;
}

/* file:/P in the guest's /proc view or its file policy. */
static long open_file(struct call *c, const struct open_uri *u)
{
	long err = check_path(u);
	if (err < 0)
		return err;
	if (pico_proc_is_view_path(u->rest, u->rest_len))
		return pico_proc_open(&c->guest->proc, u->rest, u->rest_len, (int)u->flags, (pid_t)c->n->pid);
	return pico_fs_open(c->guest->fs, u->rest, u->rest_len, (int)u->flags, u->mode);
}

/* dir:/P, a read-only listing: the ABI's spelling of file:/P with
 * O_DIRECTORY, which is how "directory" travels from here on (mediate_fs.h).
 * The /proc view refuses what would write by itself. */
static long open_listing(struct call *c, const struct open_uri *u)
{
	struct open_uri file = *u;
	long err = check_path(u);
	if (err < 0)
		return err;
	if (pico_proc_is_view_path(u->rest, u->rest_len)) {
		file.flags |= O_DIRECTORY;
	} else {
		int flags = pico_fs_listing_flags((int)u->flags);
		if (flags < 0)
			return flags;
		file.flags = (uint32_t)flags;
	}
	return open_file(c, &file);
}

/* pid:N -- a pidfd of the caller's own process N. */
static long open_pid(struct call *c, const struct open_uri *u)
{
	char *text = (char *)u->uri + PICO_MAX_URI + 1; /* the second half of the scratch */
	return open_pidfd(c, u->rest, (int)u->flags, text, PICO_MAX_URI);
}

/* The network schemes (net.h): a host socket, a connect in progress
 * (answered when it completes), or a request to the guest's socket helper
 * (answered when it replies). */
static long open_network(struct call *c, const struct open_uri *u)
{
	if (!pico_net_is_network_uri(u->uri, u->len))
		return -EINVAL;
	int fd = -1;
	long ret = pico_net_start_guest(c->guest->net, u->uri, u->len, (int)u->flags, &fd,
					c->guest->gn_fd >= 0 ? &c->own_req : NULL);
	if (ret == PICO_NET_OWN) {
		c->own = 1;
		c->own_nonblock = !!(u->flags & O_NONBLOCK);
		c->to.cloexec = !!(u->flags & O_CLOEXEC);
		return ANSWERED_LATER;
	}
	/* A host listener holds a host port for as long as the guest keeps
	 * it, and the monitor cannot tell when it lets go: a guest gets
	 * PICO_LOOP_GUEST_LISTENERS in its life. */
	if (ret >= 0 && u->scheme_len == 7 && !memcmp(u->uri, "tcp.srv", 7)) {
		if (c->guest->nlisteners >= PICO_LOOP_GUEST_LISTENERS) {
			close((int)ret);
			return -EMFILE;
		}
		c->guest->stats.listeners = ++c->guest->nlisteners;
	}
	if (ret == -EINPROGRESS && fd >= 0) {
		c->install_fd = fd;
		c->to.cloexec = !!(u->flags & O_CLOEXEC);
		c->deferred = 1;
		return ANSWERED_LATER;
	}
	return ret == -EACCES ? pico_deny(PICO_DENY_NET, ret) : ret;
}

static int unix_flags_valid(uint32_t flags)
{
	return !(flags & ~(O_ACCMODE | O_NONBLOCK | O_CLOEXEC)) && (flags & O_ACCMODE) != O_ACCMODE;
}

/* unix.srv:/PATH names a socket in the guest's own view: the file policy
 * (any other form is a network URI). */
static long open_unix_listen(struct call *c, const struct open_uri *u)
{
	if (u->rest_len == 0 || u->rest[0] != '/')
		return open_network(c, u);
	if (!unix_flags_valid(u->flags))
		return -EINVAL;
	if (u->rest_len > PICO_MAX_PATH)
		return -ENAMETOOLONG;
	return pico_fs_unix_listen(c->guest->fs, u->rest, u->rest_len, u->mode, !!(u->flags & O_NONBLOCK));
}

/* unix:/PATH: the host's socket when the manifest grants that host path
 * (net.h), else a socket in the guest's own view. */
static long open_unix_connect(struct call *c, const struct open_uri *u)
{
	if (u->rest_len == 0 || u->rest[0] != '/' || pico_net_unix_granted(c->guest->net, u->rest, u->rest_len))
		return open_network(c, u);
	if (!unix_flags_valid(u->flags))
		return -EINVAL;
	if (u->rest_len > PICO_MAX_PATH)
		return -ENAMETOOLONG;
	return pico_fs_unix_connect(c->guest->fs, u->rest, u->rest_len, !!(u->flags & O_NONBLOCK));
}

/* Whether socket sock belongs to a network namespace other than the
 * monitor's: a guest's own.  Connecting a datagram socket to an abstract
 * name looks the name up in the socket's namespace, so a socket of the
 * host's (none is handed to a guest; this holds if one ever were) must
 * never be connected on a guest's behalf.  SIOCGSKNS needs CAP_NET_ADMIN
 * over the socket's namespace, which an unprivileged monitor has over the
 * guest's and not over the host's: a refusal counts as the host's. */
static int of_another_network(int sock)
{
	struct stat own, its;
	if (stat("/proc/self/ns/net", &own) < 0)
		return 0;
	int ns = ioctl(sock, SIOCGSKNS);
	if (ns < 0)
		return 0;
	int ok = fstat(ns, &its) == 0 && !(its.st_dev == own.st_dev && its.st_ino == own.st_ino);
	close(ns);
	return ok;
}

/* unixdg.srv:/PATH?fd=N and unixdg:{/PATH,@NAME}?fd=N (net.h): the
 * caller's own datagram socket N, bound or connected in place.  In place,
 * because a new socket would be the monitor's, of the host's network, and
 * sendto(2) on it, a direct call, would reach the host's abstract names;
 * and because a socket keeps its bound address when it connects (the
 * address is a file: a second socket cannot take it).  *path and *len
 * come back without the "?fd=N"; the copy of the socket, or -errno. */
static long unixdg_socket(struct call *c, const struct open_uri *u, const char **path, size_t *len)
{
	const char *q = NULL;
	for (size_t i = u->rest_len; i-- > 0;)
		if (u->rest[i] == '?') {
			q = u->rest + i;
			break;
		}
	size_t digits = q ? u->rest_len - (size_t)(q - u->rest) - 4 : 0;
	if (!q || u->rest_len - (size_t)(q - u->rest) < 5 || memcmp(q, "?fd=", 4) || digits > 9)
		return -EINVAL;
	long fd = 0;
	for (size_t i = 0; i < digits; i++) {
		if (q[4 + i] < '0' || q[4 + i] > '9')
			return -EINVAL;
		fd = fd * 10 + (q[4 + i] - '0');
	}
	if (!unix_flags_valid(u->flags))
		return -EINVAL;
	*path = u->rest;
	*len = (size_t)(q - u->rest);
	if (*len > PICO_MAX_PATH)
		return -ENAMETOOLONG;
	int sock = copy_guest_fd(c, (int)fd);
	if (sock < 0)
		return sock;
	int domain = 0, type = 0;
	socklen_t dl = sizeof(domain), tl = sizeof(type);
	if (getsockopt(sock, SOL_SOCKET, SO_DOMAIN, &domain, &dl) < 0 ||
	    getsockopt(sock, SOL_SOCKET, SO_TYPE, &type, &tl) < 0 || domain != AF_UNIX || type != SOCK_DGRAM ||
	    !of_another_network(sock)) {
		close(sock);
		return -EINVAL;
	}
	return sock;
}

static long unixdg_done(int sock, long ret)
{
	if (ret < 0) {
		close(sock);
		return ret;
	}
	return sock; /* the same open file: the library OS puts it back on its number */
}

static long open_unixdg_bind(struct call *c, const struct open_uri *u)
{
	if (u->rest_len > 0 && u->rest[0] == '@')
		return open_network(c, u); /* a new socket of the guest's own network */
	const char *path;
	size_t len;
	long sock = unixdg_socket(c, u, &path, &len);
	if (sock < 0)
		return sock;
	if (len == 0 || path[0] != '/')
		return unixdg_done((int)sock, -EINVAL);
	return unixdg_done((int)sock, pico_fs_unix_dgram_bind(c->guest->fs, path, len, u->mode, (int)sock));
}

static long open_unixdg_connect(struct call *c, const struct open_uri *u)
{
	const char *path;
	size_t len;
	long sock = unixdg_socket(c, u, &path, &len);
	if (sock < 0)
		return sock;
	long ret;
	if (len > 1 && path[0] == '@') {
		/* An abstract name: of the socket's network namespace, the guest's
		 * own (the monitor makes no unix datagram socket of the host's). */
		struct sockaddr_un sun = {.sun_family = AF_UNIX};
		if (len > sizeof(sun.sun_path))
			return unixdg_done((int)sock, -EINVAL);
		memcpy(sun.sun_path + 1, path + 1, len - 1);
		ret = connect((int)sock, (struct sockaddr *)&sun,
			      (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len)) < 0 ? -errno : 0;
	} else if (len == 0 || path[0] != '/') {
		ret = -EINVAL;
	} else if (pico_net_unix_granted(c->guest->net, path, len)) {
		ret = pico_net_unix_dgram_connect_granted(c->guest->net, path, len, (int)sock);
		if (ret == -EACCES)
			ret = pico_deny(PICO_DENY_NET, ret);
	} else {
		ret = pico_fs_unix_dgram_connect(c->guest->fs, path, len, (int)sock);
	}
	return unixdg_done((int)sock, ret);
}

/* Every scheme but the network ones, which net.h owns: a scheme not here
 * is one of those or invalid (open_network decides). */
static const struct open_scheme {
	const char *name;
	size_t len;
	open_fn open;
} open_schemes[] = {
	{"file", 4, open_file},
	{"dir", 3, open_listing},
	{"pid", 3, open_pid},
	{"unix.srv", 8, open_unix_listen},
	{"unix", 4, open_unix_connect},
	{"unixdg.srv", 10, open_unixdg_bind},
	{"unixdg", 6, open_unixdg_connect},
};

/* Implements pico_open(uri, uri_len, flags, mode). */
static long serve_open(struct call *c, char *uri)
{
	uint32_t flags, mode;
	size_t len = ARG(1);

	if (int_arg(ARG(2), &flags) || int_arg(ARG(3), &mode))
		return -EINVAL;
	c->rec.arg = flags;
	long ret = fetch_string(c, ARG(0), len, PICO_MAX_URI, uri, 0);
	if (ret < 0)
		return ret;
	channel_requested(c, ARG(0));
	const char *colon = memchr(uri, ':', len < 16 ? len : 16);
	if (!colon)
		return -EINVAL;
	size_t scheme = (size_t)(colon - uri);
	struct open_uri u = {uri, len, scheme, colon + 1, len - scheme - 1, flags, mode};
	open_fn open = open_network;
	for (size_t i = 0; i < sizeof(open_schemes) / sizeof(open_schemes[0]); i++)
		if (open_schemes[i].len == scheme && !memcmp(uri, open_schemes[i].name, scheme))
			open = open_schemes[i].open;
	ret = open(c, &u);
	if (ret == ANSWERED_LATER)
		return 0;
	if (ret >= 0) {
		c->install_fd = (int)ret;
		c->to.cloexec = !!(flags & O_CLOEXEC);
		return 0;
	}
	return ret;
}

/* Implements pico_note_unsupported(linux_nr, arg0): an audit record only. */
static long serve_note_unsupported(struct call *c, char *path)
{
	c->rec.arg = (int64_t)ARG(0);
	c->rec.arg2 = (int64_t)ARG(1);
	/* A traced run's note of a call the library OS emulated: not an error. */
	return (ARG(0) & PICO_NOTE_EMULATED) ? 0 : -ENOSYS;
}

/* ---- every mediated call: by number ---- */

const serve_fn serve_table[PICO_MEDIATED_COUNT] = {
	[PICO_NR_OPEN - PICO_MEDIATED_BASE] = serve_open,
	[PICO_NR_STAT - PICO_MEDIATED_BASE] = serve_stat,
	[PICO_NR_READLINK - PICO_MEDIATED_BASE] = serve_readlink,
	[PICO_NR_ACCESS - PICO_MEDIATED_BASE] = serve_access,
	[PICO_NR_MKDIR - PICO_MEDIATED_BASE] = serve_mkdir,
	[PICO_NR_UNLINK - PICO_MEDIATED_BASE] = serve_unlink,
	[PICO_NR_RENAME - PICO_MEDIATED_BASE] = serve_rename,
	[PICO_NR_SYMLINK - PICO_MEDIATED_BASE] = serve_symlink,
	[PICO_NR_LINK - PICO_MEDIATED_BASE] = serve_link,
	[PICO_NR_CHMOD - PICO_MEDIATED_BASE] = serve_chmod,
	[PICO_NR_CHOWN - PICO_MEDIATED_BASE] = serve_chown,
	[PICO_NR_UTIMENS - PICO_MEDIATED_BASE] = serve_utimens,
	[PICO_NR_TRUNCATE - PICO_MEDIATED_BASE] = serve_truncate,
	[PICO_NR_STATFS - PICO_MEDIATED_BASE] = serve_statfs,
	[PICO_NR_NOTE_UNSUPPORTED - PICO_MEDIATED_BASE] = serve_note_unsupported,
	[PICO_NR_TASK_INFO - PICO_MEDIATED_BASE] = serve_task_info,
	[PICO_NR_MKNOD - PICO_MEDIATED_BASE] = serve_mknod,
	[PICO_NR_XATTR - PICO_MEDIATED_BASE] = serve_xattr,
	[PICO_NR_TTY_IOCTL - PICO_MEDIATED_BASE] = serve_tty_ioctl,
	[PICO_NR_INOTIFY - PICO_MEDIATED_BASE] = serve_inotify,
};

const char *pico_mediated_call_name(int index)
{
#define NAME_OF(name, nr, nargs) [nr - PICO_MEDIATED_BASE] = #name,
	static const char *const names[PICO_MEDIATED_COUNT] = {PICO_MEDIATED_CALLS(NAME_OF)};
#undef NAME_OF
	return index >= 0 && index < PICO_MEDIATED_COUNT ? names[index] : NULL;
}
