/* What serves each mediated call: one table from the call's number to its
 * handler, and for pico_open one table from the URI's scheme to the handler
 * that makes the fd.  The handlers live with their kind (serve_paths.c,
 * serve_task.c; the network schemes in net.h).  See serve.h. */
#define _GNU_SOURCE
#include "serve.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
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
