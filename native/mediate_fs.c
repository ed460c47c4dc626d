/* File mediation: the file-system mediated calls, performed on host fds
 * for a path resolved in the guest's view (fs_resolve.c) under its policy
 * (fs_policy.c).  See mediate_fs.h. */
#define _GNU_SOURCE
#include "fs_private.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <stdio.h> /* renameat2 */
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "net.h"

/* fchmodat2(2), Linux 6.6: the only chmod that takes AT_EMPTY_PATH, so an
 * O_PATH fd of the resolved object can be changed without a path the host
 * kernel would resolve again. */
#ifndef SYS_fchmodat2
#define SYS_fchmodat2 452
#endif
#ifndef RENAME_NOREPLACE
#define RENAME_NOREPLACE (1 << 0)
#endif
#ifndef RENAME_EXCHANGE
#define RENAME_EXCHANGE (1 << 1)
#endif

#define OPEN_KNOWN_FLAGS                                                                          \
	(O_ACCMODE | O_CREAT | O_EXCL | O_TRUNC | O_APPEND | O_NONBLOCK | O_DIRECTORY | O_NOFOLLOW | \
	 O_CLOEXEC | O_PATH | O_NOCTTY | O_LARGEFILE | O_DSYNC | O_SYNC | O_TMPFILE | PICO_OPEN_EXEC)

/* O_TMPFILE is a bit of its own plus O_DIRECTORY: only both together mean
 * it.  (glibc's __O_TMPFILE includes O_DIRECTORY, so the bit is spelled.) */
#define TMPFILE_BIT 020000000
static int is_tmpfile(int flags)
{
	return (flags & O_TMPFILE) == O_TMPFILE;
}

static int opens_for_writing(int flags)
{
	return (flags & O_ACCMODE) != O_RDONLY || (flags & (O_CREAT | O_TRUNC)) || is_tmpfile(flags);
}

struct open_arg {
	int flags;
	unsigned int mode;
};

/* open(O_PATH): the kernel will not pass an O_PATH file through NOTIF_ADDFD
 * (it takes only files that can be read or written), so the guest gets a
 * read-only fd of the same inode instead, for a directory or a regular file
 * -- what O_PATH is used for: a handle to stat, fchdir to, or resolve
 * names against.  The inode is pinned O_PATH first and reopened through
 * the monitor's own /proc/self/fd, so no path is looked up twice; an
 * object of another type (a FIFO, a device, a socket: opening those has
 * effects) or a file the guest identity may not read answers as open(2)
 * without O_PATH would (ENXIO, EACCES). */
static long open_path_op(const struct pico_fs_policy *p, const struct resolved *r, int flags)
{
	struct stat st;
	char proc[32];
	long fd = open_checked_path(p, r, !!(flags & O_NOFOLLOW), &st, NULL);
	if (fd < 0)
		return fd;
	long ret;
	if (S_ISLNK(st.st_mode) && (flags & O_NOFOLLOW) && !(flags & O_DIRECTORY))
		/* The link itself, as Linux gives it: an O_PATH fd of a link
		 * only stats and reads the link (every direct call on it is
		 * EBADF or names no path), which the guest may do anyway. */
		return fd;
	if (S_ISLNK(st.st_mode))
		ret = (flags & O_DIRECTORY) ? -ENOTDIR : -ELOOP;
	else if ((flags & O_DIRECTORY) && !S_ISDIR(st.st_mode))
		ret = -ENOTDIR;
	else if (!S_ISDIR(st.st_mode) && !S_ISREG(st.st_mode))
		ret = -ENXIO;
	else {
		snprintf(proc, sizeof(proc), "/proc/self/fd/%d", (int)fd);
		ret = open(proc, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
		if (ret < 0)
			ret = -errno;
		else if (fcntl((int)ret, F_SETFL, 0) < 0) {
			close((int)ret);
			ret = -errno;
		}
	}
	close((int)fd);
	return ret;
}

static long open_op(const struct pico_fs_policy *p, const struct resolved *r, void *varg)
{
	struct open_arg *a = varg;
	int flags = a->flags;
	int exec = flags & PICO_OPEN_EXEC;
	struct stat st;
	long ret;

	if (!r->mount)
		return pico_deny(PICO_DENY_NOT_MOUNTED, -EACCES);
	/* Linux never creates a name written with a trailing '/': EISDIR once
	 * the directory it would be made in is found, before any other check. */
	if ((flags & O_CREAT) && !(flags & O_DIRECTORY) && r->trailing_slash && !is_tmpfile(flags)) {
		struct parent pa;
		long err = open_parent(r, &pa, -EISDIR);
		if (err < 0)
			return err;
		close(pa.fd);
		return -EISDIR;
	}
	if (opens_for_writing(flags) && !r->mount->writable)
		return pico_deny(PICO_DENY_READ_ONLY, -EROFS);
	/* An unnamed file in a directory: only where names may be made. */
	if (is_tmpfile(flags) && r->mount->writable != PICO_MOUNT_RW)
		return deny_change(r->mount);
	if (exec && !r->mount->exec)
		return pico_deny(PICO_DENY_NOEXEC, -EACCES);
	/* Opened non-blocking so that a FIFO or a device never blocks the
	 * loop; O_TRUNC is applied only after the hidden-inode check. */
	int host_flags = (flags & ~(PICO_OPEN_EXEC | O_TRUNC)) | O_NONBLOCK | O_NOCTTY;
	if (flags & O_PATH)
		return open_path_op(p, r, flags);
	unsigned int mode = (flags & O_CREAT) || is_tmpfile(flags) ? a->mode : 0;
	long fd = open_resolved(r, host_flags, mode);
	if (fd < 0)
		return fd;
	/* The common case (no hidden inode anywhere, plain open) needs no
	 * look at what was opened. */
	if (!p->nhidden_inodes && !exec && !(flags & O_TRUNC))
		goto opened;
	if (fstat((int)fd, &st) < 0) {
		ret = -errno;
		goto fail;
	}
	if (is_hidden_inode(p, &st)) {
		ret = pico_deny(PICO_DENY_HIDDEN_OBJECT, -EACCES);
		goto fail;
	}
	/* PICO_OPEN_EXEC: a regular file the guest identity may execute. */
	if (exec && (!S_ISREG(st.st_mode) ||
		     faccessat((int)fd, "", X_OK, AT_EMPTY_PATH | AT_EACCESS) < 0)) {
		ret = -EACCES;
		goto fail;
	}
	if ((flags & O_TRUNC) && S_ISREG(st.st_mode) && ftruncate((int)fd, 0) < 0) {
		ret = -errno;
		goto fail;
	}
opened:
	if (!(flags & (O_NONBLOCK | O_PATH)) && fcntl((int)fd, F_SETFL, flags & O_APPEND) < 0) {
		ret = -errno;
		goto fail;
	}
	return fd;
fail:
	close((int)fd);
	return ret;
}

int pico_fs_listing_flags(int flags)
{
	if (opens_for_writing(flags) || (flags & PICO_OPEN_EXEC))
		return -EINVAL;
	return flags | O_DIRECTORY;
}

long pico_fs_open(const struct pico_fs_policy *p, const char *path, size_t len, int flags,
		  unsigned int mode)
{
	if (flags & ~OPEN_KNOWN_FLAGS)
		return -EINVAL;
	if ((flags & O_ACCMODE) == O_ACCMODE)
		return -EINVAL;
	if (mode & ~07777u)
		return -EINVAL;
	if ((flags & O_PATH) && (flags & (O_CREAT | O_TRUNC | PICO_OPEN_EXEC)))
		return -EINVAL;
	/* open(2): O_TMPFILE needs O_WRONLY or O_RDWR and excludes O_CREAT. */
	if (is_tmpfile(flags) && ((flags & O_ACCMODE) == O_RDONLY ||
				  (flags & (O_CREAT | O_PATH | PICO_OPEN_EXEC))))
		return -EINVAL;
	if ((flags & TMPFILE_BIT) && !is_tmpfile(flags))
		return -EINVAL; /* the kernel's __O_TMPFILE bit without O_DIRECTORY */
	if ((flags & O_TRUNC) && (flags & O_ACCMODE) == O_RDONLY)
		return -EINVAL; /* Linux leaves it unspecified; refuse it */
	struct open_arg a = {.flags = flags, .mode = mode};
	return with_path(p, path, len, !(flags & O_NOFOLLOW), open_op, &a);
}

struct stat_arg {
	int nofollow;
	struct statx *out;
};

static long stat_op(const struct pico_fs_policy *p, const struct resolved *r, void *varg)
{
	struct stat_arg *a = varg;
	long fd = open_checked_path(p, r, a->nofollow, NULL, a->out);
	if (fd < 0)
		return fd;
	close((int)fd);
	return 0;
}

long pico_fs_stat(const struct pico_fs_policy *p, const char *path, size_t len, int flags,
		  struct statx *out)
{
	if (flags & ~AT_SYMLINK_NOFOLLOW)
		return -EINVAL;
	struct stat_arg a = {.nofollow = !!(flags & AT_SYMLINK_NOFOLLOW), .out = out};
	return with_path(p, path, len, !a.nofollow, stat_op, &a);
}

struct readlink_arg {
	char *out;
	size_t cap;
};

static long readlink_op(const struct pico_fs_policy *p, const struct resolved *r, void *varg)
{
	struct readlink_arg *a = varg;
	struct stat st;
	long ret;
	long fd = open_checked_path(p, r, 1, &st, NULL);

	if (fd < 0)
		return fd;
	if (!S_ISLNK(st.st_mode))
		ret = -EINVAL;
	else if ((ret = readlinkat((int)fd, "", a->out, a->cap)) < 0)
		ret = -errno;
	close((int)fd);
	return ret;
}

long pico_fs_readlink(const struct pico_fs_policy *p, const char *path, size_t len, char *out,
		      size_t cap)
{
	if (cap == 0 || cap > PICO_MAX_PATH)
		return -EINVAL;
	struct readlink_arg a = {.out = out, .cap = cap};
	return with_path(p, path, len, 0, readlink_op, &a);
}

struct access_arg {
	int mode;
	int nofollow;
};

static long access_op(const struct pico_fs_policy *p, const struct resolved *r, void *varg)
{
	struct access_arg *a = varg;

	if (r->mount && (a->mode & W_OK) && !r->mount->writable)
		return pico_deny(PICO_DENY_READ_ONLY, -EROFS);
	/* A no-exec mount refuses executing files, not searching directories
	 * (as MS_NOEXEC): cd into /etc must work. */
	int dir_only = r->mount && (a->mode & X_OK) && !r->mount->exec;
	struct stat st;
	long fd = open_checked_path(p, r, a->nofollow, dir_only ? &st : NULL, NULL);
	if (fd < 0)
		return fd;
	if (dir_only) {
		if (!S_ISDIR(st.st_mode)) {
			close((int)fd);
			return pico_deny(PICO_DENY_NOEXEC, -EACCES);
		}
	}
	/* AT_EACCESS: check with the thread's fsuid/fsgid (the guest's
	 * identity); without it the kernel would check the real uid. */
	long ret = faccessat((int)fd, "", a->mode, AT_EMPTY_PATH | AT_EACCESS) < 0 ? -errno : 0;
	close((int)fd);
	return ret;
}

long pico_fs_access(const struct pico_fs_policy *p, const char *path, size_t len, int mode,
		    int flags)
{
	if (mode & ~(R_OK | W_OK | X_OK))
		return -EINVAL;
	if (flags & ~AT_SYMLINK_NOFOLLOW)
		return -EINVAL;
	struct access_arg a = {.mode = mode, .nofollow = !!(flags & AT_SYMLINK_NOFOLLOW)};
	return with_path(p, path, len, !a.nofollow, access_op, &a);
}

/* Calls that change a name need a writable mount and the parent directory. */
static long writable_parent(const struct resolved *r, struct parent *pa, int root_err)
{
	if (!r->mount)
		return pico_deny(PICO_DENY_NOT_MOUNTED, -EACCES);
	if (r->mount->writable != PICO_MOUNT_RW)
		return deny_change(r->mount);
	return open_parent(r, pa, root_err);
}

struct name_arg {
	unsigned int mode;
	int flags;
	const char *target; /* symlink */
};

static long mkdir_op(const struct pico_fs_policy *p, const struct resolved *r, void *varg)
{
	struct name_arg *a = varg;
	struct parent pa;
	long ret = writable_parent(r, &pa, -EEXIST);
	if (ret < 0)
		return ret;
	ret = mkdirat(pa.fd, pa.name, a->mode) < 0 ? -errno : 0;
	close(pa.fd);
	return ret;
}

long pico_fs_mkdir(const struct pico_fs_policy *p, const char *path, size_t len, unsigned int mode)
{
	if (mode & ~07777u)
		return -EINVAL;
	struct name_arg a = {.mode = mode};
	return with_path(p, path, len, 0, mkdir_op, &a);
}

static long mknod_op(const struct pico_fs_policy *p, const struct resolved *r, void *varg)
{
	struct name_arg *a = varg;
	struct parent pa;
	long ret = writable_parent(r, &pa, -EEXIST);
	if (ret < 0)
		return ret;
	ret = mknodat(pa.fd, pa.name, a->mode, 0) < 0 ? -errno : 0;
	close(pa.fd);
	return ret;
}

/* mknod(2) for what an unprivileged user may make: a FIFO (the inode only;
 * its pipe exists while it is open, in the kernel of whoever opens it), an
 * empty regular file, a socket inode.  Charged to the mount like any file. */
long pico_fs_mknod(const struct pico_fs_policy *p, const char *path, size_t len, unsigned int mode)
{
	unsigned int type = mode & S_IFMT;
	if (mode & ~(S_IFMT | 07777u))
		return -EINVAL;
	if (type == S_IFCHR || type == S_IFBLK)
		return -EPERM;
	if (type != S_IFIFO && type != S_IFREG && type != S_IFSOCK)
		return -EINVAL;
	struct name_arg a = {.mode = mode};
	return with_path(p, path, len, 0, mknod_op, &a);
}

static long unlink_op(const struct pico_fs_policy *p, const struct resolved *r, void *varg)
{
	struct name_arg *a = varg;
	struct parent pa;
	long ret = writable_parent(r, &pa, -EBUSY);
	if (ret < 0)
		return ret;
	ret = check_name_not_hidden(p, &pa);
	if (ret == 0 && unlinkat(pa.fd, pa.name, a->flags) < 0)
		ret = -errno;
	close(pa.fd);
	return ret;
}

long pico_fs_unlink(const struct pico_fs_policy *p, const char *path, size_t len, int flags)
{
	if (flags & ~AT_REMOVEDIR)
		return -EINVAL;
	struct name_arg a = {.flags = flags};
	return with_path(p, path, len, 0, unlink_op, &a);
}

static long symlink_op(const struct pico_fs_policy *p, const struct resolved *r, void *varg)
{
	struct name_arg *a = varg;
	struct parent pa;
	long ret = writable_parent(r, &pa, -EEXIST);
	if (ret < 0)
		return ret;
	/* Stored verbatim: the monitor resolves it later in the guest's
	 * view; the host kernel never follows it (RESOLVE_NO_SYMLINKS). */
	ret = symlinkat(a->target, pa.fd, pa.name) < 0 ? -errno : 0;
	close(pa.fd);
	return ret;
}

long pico_fs_symlink(const struct pico_fs_policy *p, const char *target, size_t target_len,
		     const char *path, size_t len)
{
	char text[PICO_MAX_PATH + 1];

	if (target_len == 0)
		return -EINVAL;
	if (target_len > PICO_MAX_PATH)
		return -ENAMETOOLONG;
	if (memchr(target, '\0', target_len))
		return -EINVAL;
	memcpy(text, target, target_len);
	text[target_len] = '\0';
	struct name_arg a = {.target = text};
	return with_path(p, path, len, 0, symlink_op, &a);
}

/* rename and link: two names, both resolved, on one writable mount. */
struct two_names {
	struct resolved old;
	struct resolved new;
};

typedef long (*two_op)(struct parent *o, struct parent *n, unsigned int flags);

static long serve_two_names(const struct pico_fs_policy *p, const char *old, size_t old_len,
			    int follow_old, const char *new, size_t new_len, unsigned int flags,
			    two_op op)
{
	struct two_names *t = malloc(sizeof(*t));
	struct parent po, pn;
	long ret = -ELOOP;

	if (!t)
		return -ENOMEM;
	for (int attempt = 0; attempt < RESOLVE_ATTEMPTS && ret == -ELOOP; attempt++) {
		ret = resolve(p, old, old_len, follow_old, &t->old);
		if (ret == 0)
			ret = resolve(p, new, new_len, 0, &t->new);
		if (ret < 0)
			break;
		if (!t->old.mount || !t->new.mount) {
			ret = pico_deny(PICO_DENY_NOT_MOUNTED, -EACCES);
			break;
		}
		if (t->old.mount != t->new.mount) {
			ret = -EXDEV;
			break;
		}
		if (holds_hidden_path(p, t->old.canon, t->old.canon_len) ||
		    holds_hidden_path(p, t->new.canon, t->new.canon_len)) {
			ret = pico_deny(PICO_DENY_HOLDS_HIDDEN, -EACCES);
			break;
		}
		ret = writable_parent(&t->old, &po, -EBUSY);
		if (ret < 0)
			continue;
		ret = open_parent(&t->new, &pn, -EBUSY);
		if (ret < 0) {
			close(po.fd);
			continue;
		}
		ret = check_name_not_hidden(p, &po);
		if (ret == 0)
			ret = check_name_not_hidden(p, &pn);
		if (ret == 0)
			ret = op(&po, &pn, flags);
		close(po.fd);
		close(pn.fd);
	}
	free(t);
	return ret;
}

static long rename_names(struct parent *o, struct parent *n, unsigned int flags)
{
	return renameat2(o->fd, o->name, n->fd, n->name, flags) < 0 ? -errno : 0;
}

long pico_fs_rename(const struct pico_fs_policy *p, const char *old, size_t old_len,
		    const char *new, size_t new_len, unsigned int flags)
{
	if (flags & ~(RENAME_NOREPLACE | RENAME_EXCHANGE))
		return -EINVAL;
	if ((flags & RENAME_NOREPLACE) && (flags & RENAME_EXCHANGE))
		return -EINVAL;
	return serve_two_names(p, old, old_len, 0, new, new_len, flags, rename_names);
}

static long link_names(struct parent *o, struct parent *n, unsigned int flags)
{
	/* Never AT_SYMLINK_FOLLOW on the host: a followed link was already
	 * resolved in the guest's view. */
	return linkat(o->fd, o->name, n->fd, n->name, 0) < 0 ? -errno : 0;
}

long pico_fs_link(const struct pico_fs_policy *p, const char *old, size_t old_len, const char *new,
		  size_t new_len, int flags)
{
	if (flags & ~AT_SYMLINK_FOLLOW)
		return -EINVAL;
	return serve_two_names(p, old, old_len, !!(flags & AT_SYMLINK_FOLLOW), new,
					     new_len, 0, link_names);
}

/* Attribute changes on the resolved object, through an O_PATH fd: no host
 * path is resolved again, so a name swapped for a link meanwhile cannot
 * redirect the change. */
enum attr_change { ATTR_CHMOD, ATTR_CHOWN, ATTR_UTIMENS };

struct attr_arg {
	enum attr_change which;
	int nofollow;
	unsigned int mode;
	unsigned int uid, gid;
	const struct timespec *times;
};

static long attr_op(const struct pico_fs_policy *p, const struct resolved *r, void *varg)
{
	struct attr_arg *a = varg;
	long ret;

	if (!r->mount)
		return pico_deny(PICO_DENY_NOT_MOUNTED, -EACCES);
	if (r->mount->writable != PICO_MOUNT_RW)
		return deny_change(r->mount);
	long fd = open_checked_path(p, r, a->nofollow, NULL, NULL);
	if (fd < 0)
		return fd;
	switch (a->which) {
	case ATTR_CHMOD:
		ret = syscall(SYS_fchmodat2, (int)fd, "", a->mode, AT_EMPTY_PATH);
		break;
	case ATTR_CHOWN:
		ret = fchownat((int)fd, "", a->uid, a->gid, AT_EMPTY_PATH);
		break;
	default:
		ret = utimensat((int)fd, "", a->times, AT_EMPTY_PATH);
		break;
	}
	ret = ret < 0 ? -errno : 0;
	close((int)fd);
	return ret;
}

struct xattr_arg {
	unsigned int op; /* PICO_XATTR_* without flags */
	int nofollow, set_flags;
	const char *name;
	void *value;
	size_t size;
};

/* Extended attributes through the object pinned O_PATH, by the monitor's own
 * /proc/self/fd link to it (the *xattr calls take no O_PATH fd before Linux
 * 6.13's *xattrat), so no guest path is looked up twice; as the guest
 * identity, so the host's permissions decide.  Changes only in writable
 * mounts and only in the user. namespace: trusted., security. and the ACLs
 * stay the host's business. */
static long xattr_op(const struct pico_fs_policy *p, const struct resolved *r, void *varg)
{
	struct xattr_arg *a = varg;
	char proc[32];
	long ret;

	if (!r->mount)
		return pico_deny(PICO_DENY_NOT_MOUNTED, -EACCES);
	if (a->op == PICO_XATTR_SET || a->op == PICO_XATTR_REMOVE) {
		if (r->mount->writable != PICO_MOUNT_RW)
			return deny_change(r->mount);
		if (strncmp(a->name, "user.", 5) != 0)
			return pico_deny(PICO_DENY_XATTR_NAMESPACE, -EPERM);
	}
	long fd = open_checked_path(p, r, a->nofollow, NULL, NULL);
	if (fd < 0)
		return fd;
	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", (int)fd);
	switch (a->op) {
	case PICO_XATTR_GET: ret = getxattr(proc, a->name, a->value, a->size); break;
	case PICO_XATTR_LIST: ret = listxattr(proc, a->value, a->size); break;
	case PICO_XATTR_SET: ret = setxattr(proc, a->name, a->value, a->size, a->set_flags); break;
	default: ret = removexattr(proc, a->name); break;
	}
	ret = ret < 0 ? -errno : ret;
	close((int)fd);
	return ret;
}

long pico_fs_xattr(const struct pico_fs_policy *p, const char *path, size_t len, unsigned int op,
		   const char *name, void *value, size_t size)
{
	struct xattr_arg a = {.op = op & 7, .nofollow = !!(op & PICO_XATTR_NOFOLLOW),
			      .set_flags = (int)((op >> 4) & 3), .name = name, .value = value, .size = size};
	if (a.op > PICO_XATTR_REMOVE || (a.set_flags && a.op != PICO_XATTR_SET) || a.set_flags == 3)
		return -EINVAL;
	return with_path(p, path, len, !a.nofollow, xattr_op, &a);
}

long pico_fs_chmod(const struct pico_fs_policy *p, const char *path, size_t len, unsigned int mode,
		   int flags)
{
	if ((mode & ~07777u) || (flags & ~AT_SYMLINK_NOFOLLOW))
		return -EINVAL;
	struct attr_arg a = {.which = ATTR_CHMOD, .nofollow = !!(flags & AT_SYMLINK_NOFOLLOW),
			     .mode = mode};
	return with_path(p, path, len, !a.nofollow, attr_op, &a);
}

long pico_fs_chown(const struct pico_fs_policy *p, const char *path, size_t len, unsigned int uid,
		   unsigned int gid, int flags)
{
	if (flags & ~AT_SYMLINK_NOFOLLOW)
		return -EINVAL;
	struct attr_arg a = {.which = ATTR_CHOWN, .nofollow = !!(flags & AT_SYMLINK_NOFOLLOW),
			     .uid = uid, .gid = gid};
	return with_path(p, path, len, !a.nofollow, attr_op, &a);
}

static int valid_nsec(long nsec)
{
	return (nsec >= 0 && nsec <= 999999999) || nsec == UTIME_NOW || nsec == UTIME_OMIT;
}

long pico_fs_utimens(const struct pico_fs_policy *p, const char *path, size_t len,
		     const struct timespec *times, int flags)
{
	if (flags & ~AT_SYMLINK_NOFOLLOW)
		return -EINVAL;
	if (times && (!valid_nsec(times[0].tv_nsec) || !valid_nsec(times[1].tv_nsec)))
		return -EINVAL;
	struct attr_arg a = {.which = ATTR_UTIMENS, .nofollow = !!(flags & AT_SYMLINK_NOFOLLOW),
			     .times = times};
	return with_path(p, path, len, !a.nofollow, attr_op, &a);
}

static long truncate_op(const struct pico_fs_policy *p, const struct resolved *r, void *varg)
{
	long length = *(long *)varg;
	struct stat before, st;
	long ret = 0;

	if (!r->mount)
		return pico_deny(PICO_DENY_NOT_MOUNTED, -EACCES);
	if (r->mount->writable != PICO_MOUNT_RW)
		return deny_change(r->mount);
	/* Look before opening for writing: truncate(2) refuses anything but a
	 * regular file, and opening a FIFO or a device for writing could have
	 * effects of its own. */
	long fd = open_checked_path(p, r, 0, &before, NULL);
	if (fd < 0)
		return fd;
	close((int)fd);
	if (S_ISDIR(before.st_mode))
		return -EISDIR;
	if (!S_ISREG(before.st_mode))
		return -EINVAL;
	/* Non-blocking in case the name was swapped for a FIFO meanwhile; the
	 * object opened must be the one checked. */
	fd = open_resolved(r, O_WRONLY | O_NONBLOCK | O_NOCTTY, 0);
	if (fd < 0)
		return fd;
	if (fstat((int)fd, &st) < 0)
		ret = -errno;
	else if (st.st_dev != before.st_dev || st.st_ino != before.st_ino)
		ret = -EAGAIN;
	else if (ftruncate((int)fd, length) < 0)
		ret = -errno;
	close((int)fd);
	return ret;
}

long pico_fs_truncate(const struct pico_fs_policy *p, const char *path, size_t len, long length)
{
	if (length < 0)
		return -EINVAL;
	return with_path(p, path, len, 1, truncate_op, &length);
}

static long statfs_op(const struct pico_fs_policy *p, const struct resolved *r, void *varg)
{
	long fd = open_checked_path(p, r, 0, NULL, NULL);
	if (fd < 0)
		return fd;
	long ret = fstatfs((int)fd, (struct statfs *)varg) < 0 ? -errno : 0;
	close((int)fd);
	return ret;
}

long pico_fs_statfs(const struct pico_fs_policy *p, const char *path, size_t len,
		    struct statfs *out)
{
	return with_path(p, path, len, 1, statfs_op, out);
}

/* ---------------------------------------------------------------------- */
/* AF_UNIX sockets named in the guest's view                               */

/* A socket name is a name like any other (hidden paths and names apply),
 * and only writable mounts hold the guest's sockets: a read-only mount of
 * a host directory does not grant its sockets (the manifest's unix grants
 * do that, by host path: net.h). */
struct unix_arg {
	unsigned int mode;
	int nonblock;
	int sock; /* a datagram socket of the guest's, bound or connected in place; or -1 */
};

static long unix_listen_op(const struct pico_fs_policy *p, const struct resolved *r, void *varg)
{
	struct unix_arg *a = varg;
	struct parent pa;
	long ret = writable_parent(r, &pa, -EADDRINUSE);
	if (ret < 0)
		return ret;
	ret = check_name_not_hidden(p, &pa);
	if (ret == 0 && a->sock >= 0)
		ret = pico_net_unix_dgram_bind_at(a->sock, pa.fd, pa.name, a->mode);
	else if (ret == 0)
		ret = pico_net_unix_listen_at(pa.fd, pa.name, a->mode, a->nonblock);
	close(pa.fd);
	return ret;
}

long pico_fs_unix_listen(const struct pico_fs_policy *p, const char *path, size_t len,
			 unsigned int mode, int nonblock)
{
	if (mode & ~0777u)
		return -EINVAL;
	struct unix_arg a = {.mode = mode, .nonblock = nonblock, .sock = -1};
	/* bind(2) never follows a last component that is a link. */
	return with_path(p, path, len, 0, unix_listen_op, &a);
}

long pico_fs_unix_dgram_bind(const struct pico_fs_policy *p, const char *path, size_t len,
			     unsigned int mode, int sock)
{
	if (mode & ~0777u || sock < 0)
		return -EINVAL;
	struct unix_arg a = {.mode = mode, .sock = sock};
	return with_path(p, path, len, 0, unix_listen_op, &a);
}

static long unix_connect_op(const struct pico_fs_policy *p, const struct resolved *r, void *varg)
{
	struct unix_arg *a = varg;

	/* A socket the guest did not make: what would grant it is a unix
	 * grant (net.h), not a mount. */
	if (!r->mount || r->mount->writable != PICO_MOUNT_RW)
		return pico_deny(PICO_DENY_NET, -EACCES);
	long fd = open_checked_path(p, r, 0, NULL, NULL);
	if (fd < 0)
		return fd;
	long ret = a->sock >= 0 ? pico_net_unix_dgram_connect_fd(a->sock, (int)fd)
				: pico_net_unix_connect_fd((int)fd, a->nonblock);
	close((int)fd);
	return ret;
}

long pico_fs_unix_connect(const struct pico_fs_policy *p, const char *path, size_t len,
			  int nonblock)
{
	struct unix_arg a = {.nonblock = nonblock, .sock = -1};
	return with_path(p, path, len, 1, unix_connect_op, &a);
}

long pico_fs_unix_dgram_connect(const struct pico_fs_policy *p, const char *path, size_t len,
				int sock)
{
	if (sock < 0)
		return -EINVAL;
	struct unix_arg a = {.sock = sock};
	return with_path(p, path, len, 1, unix_connect_op, &a);
}


struct inotify_arg {
	int ifd;
	uint32_t mask;
};

/* A watch on the resolved object, through the monitor's own /proc/self/fd
 * link to it pinned O_PATH: no guest path is looked up by the kernel.  Only
 * in writable mounts: what the guest itself may change. */
static long inotify_op(const struct pico_fs_policy *p, const struct resolved *r, void *varg)
{
	struct inotify_arg *a = varg;
	char proc[32];
	if (!r->mount)
		return pico_deny(PICO_DENY_NOT_MOUNTED, -EACCES);
	/* A missing name is ENOENT wherever it is, as on Linux. */
	long fd = open_checked_path(p, r, !!(a->mask & IN_DONT_FOLLOW), NULL, NULL);
	if (fd < 0)
		return fd;
	if (r->mount->writable != PICO_MOUNT_RW) {
		close((int)fd);
		return pico_deny(PICO_DENY_READ_ONLY, -EACCES);
	}
	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", (int)fd);
	/* IN_DONT_FOLLOW was the resolution's business; on the link to the
	 * pinned object it would watch the link instead. */
	long ret = inotify_add_watch(a->ifd, proc, a->mask & ~(uint32_t)IN_DONT_FOLLOW);
	ret = ret < 0 ? -errno : ret;
	close((int)fd);
	return ret;
}

long pico_fs_inotify_watch(const struct pico_fs_policy *p, const char *path, size_t len, int ifd,
			   uint32_t mask)
{
	struct inotify_arg a = {ifd, mask};
	return with_path(p, path, len, !(mask & IN_DONT_FOLLOW), inotify_op, &a);
}

