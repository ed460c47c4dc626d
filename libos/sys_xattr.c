/* Extended attributes, through the monitor (the mediated xattr call): read
 * and list wherever a name is visible, set and remove user. attributes in
 * writable mounts.  The f* forms go through the fd's remembered path, as
 * fchmod does. */
#include "libos.h"

#define XATTR_CREATE_K 1
#define XATTR_REPLACE_K 2
#define XATTR_NAME_MAX_K 255

/* The name argument's length (1..255), or -errno as the kernel answers. */
static long xattr_name_len(long user, char *buf)
{
	long r = libos_copy_string_from_guest(buf, (const char *)user, XATTR_NAME_MAX_K + 1);
	if (r == -ENAMETOOLONG)
		return -ERANGE;
	if (r == 0)
		return -ERANGE;
	return r;
}

/* The object a call names: path (nofollow for the l* forms) or fd. */
static long xattr_target(long path_or_fd, int by_fd, struct guest_path *p)
{
	if (by_fd)
		return libos_fetch_target((int)path_or_fd, 0, AT_EMPTY_PATH, p);
	return libos_fetch_path(AT_FDCWD, path_or_fd, p);
}

enum xattr_op { XATTR_OP_GET, XATTR_OP_LIST, XATTR_OP_CHANGE };

/* The library OS's own /dev and /proc entries (special.c) are in no mount
 * the monitor knows: their attributes are answered here, as Linux's
 * devtmpfs and procfs answer them: none to read (procfs has no attribute
 * support at all, a symbolic link no ACL); a change is refused by the
 * permission check first (EACCES), then by the file system (a device node
 * or link takes no user. attribute: EPERM; procfs: EOPNOTSUPP).  1 when
 * *result is the answer. */
static int special_answer(struct guest_path *p, int nofollow, enum xattr_op op, long *result)
{
	struct statx stx;
	long r;
	if (!libos_special_stat(p, nofollow ? AT_SYMLINK_NOFOLLOW : 0, &stx, &r))
		return 0;
	int proc = p->len >= 5 && !memcmp(p->abs, "/proc", 5);
	int link = (stx.stx_mode & S_IFMT) == S_IFLNK;
	const struct libos_identity *id = &libos_current()->ident;
	unsigned write_bit = stx.stx_uid == id->uid ? 0200 : stx.stx_gid == id->gid ? 020 : 02;
	if (r < 0)
		*result = r;
	else if (op == XATTR_OP_LIST)
		*result = 0;
	else if (op == XATTR_OP_GET)
		*result = proc || link ? -EOPNOTSUPP : -ENODATA;
	else if (!(stx.stx_mode & write_bit))
		*result = -EACCES;
	else
		*result = proc && !link ? -EOPNOTSUPP : -EPERM;
	return 1;
}

static long xattr_get(long target, int by_fd, int nofollow, long name, long value, long size)
{
	struct guest_path p;
	char nm[XATTR_NAME_MAX_K + 1];
	long n = xattr_name_len(name, nm), r;
	if (n < 0)
		return n;
	if ((r = xattr_target(target, by_fd, &p)) < 0 || special_answer(&p, nofollow, XATTR_OP_GET, &r))
		return r;
	unsigned op = PICO_XATTR_GET | (nofollow ? PICO_XATTR_NOFOLLOW : 0) | ((unsigned)n << 8);
	return pico_xattr(op, p.abs, p.len, nm, (void *)value, (size_t)size);
}

static long xattr_list(long target, int by_fd, int nofollow, long list, long size)
{
	struct guest_path p;
	long r = xattr_target(target, by_fd, &p);
	if (r < 0 || special_answer(&p, nofollow, XATTR_OP_LIST, &r))
		return r;
	return pico_xattr(PICO_XATTR_LIST | (nofollow ? PICO_XATTR_NOFOLLOW : 0), p.abs, p.len, 0, (void *)list,
			  (size_t)size);
}

static long xattr_set(long target, int by_fd, int nofollow, long name, long value, long size, long flags)
{
	struct guest_path p;
	char nm[XATTR_NAME_MAX_K + 1];
	if (flags & ~(long)(XATTR_CREATE_K | XATTR_REPLACE_K))
		return -EINVAL;
	if ((unsigned long)size > 65536)
		return -E2BIG;
	long n = xattr_name_len(name, nm), r;
	if (n < 0)
		return n;
	if ((r = xattr_target(target, by_fd, &p)) < 0 || special_answer(&p, nofollow, XATTR_OP_CHANGE, &r))
		return r;
	unsigned op = PICO_XATTR_SET | (nofollow ? PICO_XATTR_NOFOLLOW : 0) | ((unsigned)flags << 4) | ((unsigned)n << 8);
	return pico_xattr(op, p.abs, p.len, nm, (void *)value, (size_t)size);
}

static long xattr_remove(long target, int by_fd, int nofollow, long name)
{
	struct guest_path p;
	char nm[XATTR_NAME_MAX_K + 1];
	long n = xattr_name_len(name, nm), r;
	if (n < 0)
		return n;
	if ((r = xattr_target(target, by_fd, &p)) < 0 || special_answer(&p, nofollow, XATTR_OP_CHANGE, &r))
		return r;
	unsigned op = PICO_XATTR_REMOVE | (nofollow ? PICO_XATTR_NOFOLLOW : 0) | ((unsigned)n << 8);
	return pico_xattr(op, p.abs, p.len, nm, 0, 0);
}

/* Implement Linux syscalls getxattr(2), lgetxattr, fgetxattr. */
LIBOS_SYSCALL(getxattr) { return xattr_get(a0, 0, 0, a1, a2, a3); }
LIBOS_SYSCALL(lgetxattr) { return xattr_get(a0, 0, 1, a1, a2, a3); }
LIBOS_SYSCALL(fgetxattr) { return xattr_get(a0, 1, 0, a1, a2, a3); }
/* Implement Linux syscalls listxattr(2), llistxattr, flistxattr. */
LIBOS_SYSCALL(listxattr) { return xattr_list(a0, 0, 0, a1, a2); }
LIBOS_SYSCALL(llistxattr) { return xattr_list(a0, 0, 1, a1, a2); }
LIBOS_SYSCALL(flistxattr) { return xattr_list(a0, 1, 0, a1, a2); }
/* Implement Linux syscalls setxattr(2), lsetxattr, fsetxattr. */
LIBOS_SYSCALL(setxattr) { return xattr_set(a0, 0, 0, a1, a2, a3, a4); }
LIBOS_SYSCALL(lsetxattr) { return xattr_set(a0, 0, 1, a1, a2, a3, a4); }
LIBOS_SYSCALL(fsetxattr) { return xattr_set(a0, 1, 0, a1, a2, a3, a4); }
/* Implement Linux syscalls removexattr(2), lremovexattr, fremovexattr. */
LIBOS_SYSCALL(removexattr) { return xattr_remove(a0, 0, 0, a1); }
LIBOS_SYSCALL(lremovexattr) { return xattr_remove(a0, 0, 1, a1); }
LIBOS_SYSCALL(fremovexattr) { return xattr_remove(a0, 1, 0, a1); }
