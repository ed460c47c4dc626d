/* The mediated calls on a path of the guest's file system: each copies its
 * arguments, hands the path to the proc view (procview.h) or the file policy
 * (mediate_fs.h), and writes back what the guest asked for.  See serve.h. */
#define _GNU_SOURCE
#include "serve.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <time.h>

#include "denial.h"
/* The path of a call whose first two arguments are (path, path_len). */
static long fetch_path(struct call *c, char *path)
{
	return fetch_string(c, ARG(0), ARG(1), PICO_MAX_PATH, path, 0);
}

/* The arguments of a call (path, path_len, value, ...): the value (flags
 * or mode) is what its audit record keeps. */
static long fetch_path_and_value(struct call *c, char *path, uint32_t *value)
{
	if (int_arg(ARG(2), value))
		return -EINVAL;
	c->rec.arg = *value;
	return fetch_path(c, path);
}

/* The arguments of a call (path, path_len, mode, flags). */
static long fetch_path_mode_flags(struct call *c, char *path, uint32_t *mode, uint32_t *flags)
{
	if (int_arg(ARG(3), flags))
		return -EINVAL;
	return fetch_path_and_value(c, path, mode);
}

/* Implements pico_stat(path, path_len, flags, buf). */
long serve_stat(struct call *c, char *path)
{
	struct statx stx;
	uint32_t flags;
	long ret = fetch_path_and_value(c, path, &flags);

	if (ret < 0)
		return ret;
	if (ARG(3) == 0)
		return -EFAULT;
	memset(&stx, 0, sizeof(stx));
	if (pico_proc_is_view_path(path, ARG(1)))
		ret = flags & ~AT_SYMLINK_NOFOLLOW ? -EINVAL
						   : pico_proc_stat(&c->guest->proc, path, ARG(1), !!flags, &stx);
	else
		ret = pico_fs_stat(c->guest->fs, path, ARG(1), (int)flags, &stx);
	if (ret < 0)
		return ret;
	return guest_write(c, ARG(3), &stx, sizeof(stx));
}

/* Implements pico_readlink(path, path_len, buf, buf_len). */
long serve_readlink(struct call *c, char *path)
{
	char target[PICO_MAX_PATH];
	long ret;

	if (ARG(3) == 0 || ARG(3) > PICO_MAX_PATH)
		return -EINVAL;
	ret = fetch_path(c, path);
	if (ret < 0)
		return ret;
	if (pico_proc_is_view_path(path, ARG(1)))
		ret = pico_proc_readlink(&c->guest->proc, path, ARG(1), target, ARG(3));
	else
		ret = pico_fs_readlink(c->guest->fs, path, ARG(1), target, ARG(3));
	if (ret <= 0)
		return ret;
	int err = guest_write(c, ARG(2), target, (size_t)ret);
	return err < 0 ? err : ret;
}

/* Implements pico_access(path, path_len, mode, flags). */
long serve_access(struct call *c, char *path)
{
	uint32_t mode, flags;
	long ret = fetch_path_mode_flags(c, path, &mode, &flags);

	if (ret < 0)
		return ret;
	if (pico_proc_is_view_path(path, ARG(1)))
		return pico_proc_access(&c->guest->proc, path, ARG(1), (int)mode);
	return pico_fs_access(c->guest->fs, path, ARG(1), (int)mode, (int)flags);
}

typedef long (*path_mode_fn)(const struct pico_fs_policy *p, const char *path, size_t len, unsigned int mode);

/* Implements the calls (path, path_len, mode) that make a name. */
static long serve_make(struct call *c, char *path, path_mode_fn make)
{
	uint32_t mode;
	long ret = fetch_path_and_value(c, path, &mode);

	return ret < 0 ? ret : make(c->guest->fs, path, ARG(1), mode);
}

/* Implements pico_mkdir(path, path_len, mode). */
long serve_mkdir(struct call *c, char *path)
{
	return serve_make(c, path, pico_fs_mkdir);
}

/* Implements pico_mknod(path, path_len, mode). */
long serve_mknod(struct call *c, char *path)
{
	return serve_make(c, path, pico_fs_mknod);
}

#define XATTR_NAME_MAX_K 255
#define XATTR_SIZE_MAX_K 65536

/* Implements pico_xattr(op, path, path_len, name, value, size).  The value
 * goes through a buffer of the call's own (at most 64 KiB, freed before the
 * answer). */
long serve_xattr(struct call *c, char *path)
{
	uint32_t op;
	char name[XATTR_NAME_MAX_K + 1];
	size_t size = ARG(5);
	long ret;

	if (int_arg(ARG(0), &op))
		return -EINVAL;
	c->rec.arg = op & 0xff;
	c->rec.arg2 = (int64_t)size;
	unsigned kind = op & 7, name_len = (op >> 8) & 0xff;
	if ((op >> 16) || kind > PICO_XATTR_REMOVE)
		return -EINVAL;
	if (size > XATTR_SIZE_MAX_K)
		size = kind == PICO_XATTR_SET ? size : XATTR_SIZE_MAX_K;
	if (kind == PICO_XATTR_SET && size > XATTR_SIZE_MAX_K)
		return -E2BIG;
	ret = fetch_string(c, ARG(1), ARG(2), PICO_MAX_PATH, path, 0);
	if (ret < 0)
		return ret;
	name[0] = 0;
	if (kind != PICO_XATTR_LIST) {
		ret = fetch_string(c, ARG(3), name_len, XATTR_NAME_MAX_K, name, 1);
		if (ret < 0)
			return ret == -ENAMETOOLONG ? -ERANGE : ret;
	}
	char *value = NULL;
	if (size) {
		value = malloc(size);
		if (!value)
			return -ENOMEM;
		if (kind == PICO_XATTR_SET && (ret = guest_read(c, ARG(4), value, size)) < 0)
			goto out;
	}
	ret = pico_fs_xattr(c->guest->fs, path, ARG(2), op, name, value, size);
	if (ret > 0 && size && (kind == PICO_XATTR_GET || kind == PICO_XATTR_LIST)) {
		int err = guest_write(c, ARG(4), value, (size_t)ret);
		if (err < 0)
			ret = err;
	}
out:
	free(value);
	return ret;
}

/* Implements pico_unlink(path, path_len, flags). */
long serve_unlink(struct call *c, char *path)
{
	uint32_t flags;
	long ret = fetch_path_and_value(c, path, &flags);

	return ret < 0 ? ret : pico_fs_unlink(c->guest->fs, path, ARG(1), (int)flags);
}

/* Implements pico_rename(old, old_len, new, new_len, flags) and pico_link. */
static long serve_two_paths(struct call *c, char *path, int is_link)
{
	char *second = path + PICO_MAX_URI + 1;
	uint32_t flags;
	long ret;

	if (int_arg(ARG(4), &flags))
		return -EINVAL;
	c->rec.arg = flags;
	ret = fetch_path(c, path);
	if (ret < 0)
		return ret;
	ret = fetch_string(c, ARG(2), ARG(3), PICO_MAX_PATH, second, 1);
	if (ret < 0)
		return ret;
	if (is_link)
		return pico_fs_link(c->guest->fs, path, ARG(1), second, ARG(3), (int)flags);
	return pico_fs_rename(c->guest->fs, path, ARG(1), second, ARG(3), flags);
}

long serve_rename(struct call *c, char *path)
{
	return serve_two_paths(c, path, 0);
}

long serve_link(struct call *c, char *path)
{
	return serve_two_paths(c, path, 1);
}

/* Implements pico_symlink(target, target_len, path, path_len). */
long serve_symlink(struct call *c, char *path)
{
	char *target = path + PICO_MAX_URI + 1;
	long ret;

	/* The link's name is the record's path; its target the second text. */
	ret = fetch_string(c, ARG(2), ARG(3), PICO_MAX_PATH, path, 0);
	if (ret < 0)
		return ret;
	ret = fetch_string(c, ARG(0), ARG(1), PICO_MAX_PATH, target, 1);
	if (ret < 0)
		return ret;
	return pico_fs_symlink(c->guest->fs, target, ARG(1), path, ARG(3));
}

/* Implements pico_chmod(path, path_len, mode, flags). */
long serve_chmod(struct call *c, char *path)
{
	uint32_t mode, flags;
	long ret = fetch_path_mode_flags(c, path, &mode, &flags);

	if (ret < 0)
		return ret;
	return pico_fs_chmod(c->guest->fs, path, ARG(1), mode, (int)flags);
}

/* Implements pico_chown(path, path_len, uid, gid, flags). */
long serve_chown(struct call *c, char *path)
{
	uint32_t uid, gid, flags;
	long ret;

	if (int_arg(ARG(2), &uid) || int_arg(ARG(3), &gid) || int_arg(ARG(4), &flags))
		return -EINVAL;
	c->rec.arg = uid;
	c->rec.arg2 = gid;
	ret = fetch_path(c, path);
	if (ret < 0)
		return ret;
	return pico_fs_chown(c->guest->fs, path, ARG(1), uid, gid, (int)flags);
}

/* Implements pico_utimens(path, path_len, times, flags). */
long serve_utimens(struct call *c, char *path)
{
	struct timespec times[2];
	uint32_t flags;
	long ret;

	if (int_arg(ARG(3), &flags))
		return -EINVAL;
	ret = fetch_path(c, path);
	if (ret < 0)
		return ret;
	if (ARG(2)) {
		ret = guest_read(c, ARG(2), times, sizeof(times));
		if (ret < 0)
			return ret;
	}
	return pico_fs_utimens(c->guest->fs, path, ARG(1), ARG(2) ? times : NULL, (int)flags);
}

/* Implements pico_truncate(path, path_len, length). */
long serve_truncate(struct call *c, char *path)
{
	long ret;

	c->rec.arg = (int64_t)ARG(2);
	ret = fetch_path(c, path);
	if (ret < 0)
		return ret;
	return pico_fs_truncate(c->guest->fs, path, ARG(1), (long)ARG(2));
}

/* Implements pico_statfs(path, path_len, buf). */
long serve_statfs(struct call *c, char *path)
{
	struct statfs sfs;
	long ret;

	ret = fetch_path(c, path);
	if (ret < 0)
		return ret;
	if (ARG(2) == 0)
		return -EFAULT;
	memset(&sfs, 0, sizeof(sfs));
	ret = pico_fs_statfs(c->guest->fs, path, ARG(1), &sfs);
	if (ret < 0)
		return ret;
	return guest_write(c, ARG(2), &sfs, sizeof(sfs));
}

