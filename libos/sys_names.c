/* Calls that change names and attributes by path: rename, link, symlink,
 * chmod, chown, utimes, truncate, statfs.  Each makes its path arguments
 * absolute (cwd or a directory fd's remembered path) and hands them to the
 * matching mediated call; the monitor checks the manifest and acts.  The
 * forms on an fd (fchmod, fchown, fstatfs, futimens) go through the fd's
 * remembered path. */
#include "libos.h"

/* Two paths do not fit the handler's frame budget (~4 KiB, a guest's
 * sigaltstack may be small): calls with two use a scratch mapping. */
struct two_paths {
	struct guest_path a, b;
};

static struct two_paths *two_paths_map(void)
{
	long m = sys6(__NR_mmap, 0, sizeof(struct two_paths), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
		      -1, 0);
	return m < 0 ? NULL : (struct two_paths *)m;
}

static void two_paths_unmap(struct two_paths *t) { sys2(__NR_munmap, t, sizeof(*t)); }

/* ---- rename ---- */

/* Implements Linux syscall renameat2(2). */
LIBOS_SYSCALL(renameat2)
{
	unsigned flags = (unsigned)a4;
	if (flags & ~(RENAME_NOREPLACE_K | RENAME_EXCHANGE_K | RENAME_WHITEOUT_K))
		return -EINVAL;
	if ((flags & RENAME_EXCHANGE_K) && (flags & (RENAME_NOREPLACE_K | RENAME_WHITEOUT_K)))
		return -EINVAL;
	if (flags & RENAME_WHITEOUT_K)
		return -EPERM; /* needs CAP_MKNOD, as on Linux for an unprivileged caller */
	struct two_paths *t = two_paths_map();
	if (!t)
		return -ENOMEM;
	long r = libos_fetch_path((int)a0, a1, &t->a);
	if (r >= 0)
		r = libos_fetch_path((int)a2, a3, &t->b);
	if (r >= 0)
		r = pico_rename(t->a.abs, t->a.len, t->b.abs, t->b.len, flags);
	two_paths_unmap(t);
	return r;
}

/* Implements Linux syscalls renameat(2) and rename(2). */
LIBOS_SYSCALL(renameat) { return libos_sys_renameat2(a0, a1, a2, a3, 0, 0, uc); }
LIBOS_SYSCALL(rename) { return libos_sys_renameat2(AT_FDCWD, a0, AT_FDCWD, a1, 0, 0, uc); }

/* ---- link, symlink ---- */

/* Implements Linux syscall linkat(2).  AT_EMPTY_PATH (linking an fd) needs
 * CAP_DAC_READ_SEARCH on Linux: refused as there. */
LIBOS_SYSCALL(linkat)
{
	int flags = (int)a4;
	if (flags & ~(AT_SYMLINK_FOLLOW | AT_EMPTY_PATH))
		return -EINVAL;
	if (flags & AT_EMPTY_PATH)
		return -ENOENT;
	struct two_paths *t = two_paths_map();
	if (!t)
		return -ENOMEM;
	long r = libos_fetch_path((int)a0, a1, &t->a);
	if (r >= 0)
		r = libos_fetch_path((int)a2, a3, &t->b);
	if (r >= 0)
		r = pico_link(t->a.abs, t->a.len, t->b.abs, t->b.len, flags & AT_SYMLINK_FOLLOW);
	two_paths_unmap(t);
	return r;
}

/* Implements Linux syscall link(2). */
LIBOS_SYSCALL(link) { return libos_sys_linkat(AT_FDCWD, a0, AT_FDCWD, a1, 0, 0, uc); }

/* Implements Linux syscall symlinkat(2): the target is stored verbatim (the
 * monitor resolves it inside the guest's view when it is followed). */
LIBOS_SYSCALL(symlinkat)
{
	struct two_paths *t = two_paths_map();
	if (!t)
		return -ENOMEM;
	long r = libos_copy_string_from_guest(t->a.abs, (const char *)a0, sizeof(t->a.abs));
	if (r == 0)
		r = -ENOENT; /* an empty target */
	if (r >= 0) {
		t->a.len = (size_t)r;
		r = libos_fetch_path((int)a1, a2, &t->b);
	}
	if (r >= 0)
		r = pico_symlink(t->a.abs, t->a.len, t->b.abs, t->b.len);
	two_paths_unmap(t);
	return r;
}

/* Implements Linux syscall symlink(2). */
LIBOS_SYSCALL(symlink) { return libos_sys_symlinkat(a0, AT_FDCWD, a1, 0, 0, 0, uc); }

/* ---- chmod ---- */

/* An O_PATH fd (the monitor gives one only for a link opened with
 * O_NOFOLLOW): fchmod and fchown refuse it, as Linux does. */
static int is_path_fd(long fd)
{
	long fl = sys2(__NR_fcntl, fd, F_GETFL);
	return fl >= 0 && (fl & O_PATH);
}

/* Implements Linux syscall fchmodat2(2) (and fchmodat, which has no flags). */
LIBOS_SYSCALL(fchmodat2)
{
	int flags = (int)a3;
	struct guest_path p;
	if (flags & ~(AT_SYMLINK_NOFOLLOW | AT_EMPTY_PATH))
		return -EINVAL;
	long r = libos_fetch_target((int)a0, a1, flags, &p);
	if (r < 0)
		return r;
	return pico_chmod(p.abs, p.len, (unsigned)a2 & 07777, flags & AT_SYMLINK_NOFOLLOW);
}

LIBOS_SYSCALL(fchmodat) { return libos_sys_fchmodat2(a0, a1, a2, 0, 0, 0, uc); }
LIBOS_SYSCALL(chmod) { return libos_sys_fchmodat2(AT_FDCWD, a0, a1, 0, 0, 0, uc); }
/* Implements Linux syscall fchmod(2) through the fd's path. */
LIBOS_SYSCALL(fchmod)
{
	if (is_path_fd(a0))
		return -EBADF;
	return libos_sys_fchmodat2(a0, 0, a1, AT_EMPTY_PATH, 0, 0, uc);
}

/* ---- chown ---- */

/* Implements Linux syscall fchownat(2).  The guest's ids are virtual: a
 * change "to" the guest's own uid or gid is no change (what it creates is
 * already its own); anything else is the monitor's to refuse. */
LIBOS_SYSCALL(fchownat)
{
	int flags = (int)a4;
	unsigned uid = (unsigned)a2, gid = (unsigned)a3;
	struct guest_path p;
	if (flags & ~(AT_SYMLINK_NOFOLLOW | AT_EMPTY_PATH))
		return -EINVAL;
	long r = libos_fetch_target((int)a0, a1, flags, &p);
	if (r < 0)
		return r;
	if (uid == libos_current()->ident.uid)
		uid = (unsigned)-1;
	if (gid == libos_current()->ident.gid)
		gid = (unsigned)-1;
	if (uid == (unsigned)-1 && gid == (unsigned)-1) {
		/* Nothing to change, but the name must exist as for chown. */
		struct statx x;
		return pico_stat(p.abs, p.len, flags & AT_SYMLINK_NOFOLLOW, &x);
	}
	return pico_chown(p.abs, p.len, uid, gid, flags & AT_SYMLINK_NOFOLLOW);
}

LIBOS_SYSCALL(chown) { return libos_sys_fchownat(AT_FDCWD, a0, a1, a2, 0, 0, uc); }
LIBOS_SYSCALL(lchown) { return libos_sys_fchownat(AT_FDCWD, a0, a1, a2, AT_SYMLINK_NOFOLLOW, 0, uc); }
LIBOS_SYSCALL(fchown)
{
	if (is_path_fd(a0))
		return -EBADF;
	return libos_sys_fchownat(a0, 0, a1, a2, AT_EMPTY_PATH, 0, uc);
}

/* ---- times ---- */

#define UTIME_NOW_K ((1L << 30) - 1L)
#define UTIME_OMIT_K ((1L << 30) - 2L)

static long set_times(int dirfd, long user_path, const struct __kernel_timespec *times, int flags)
{
	struct guest_path p;
	long r;
	if (times) {
		for (int i = 0; i < 2; i++)
			if (times[i].tv_nsec != UTIME_NOW_K && times[i].tv_nsec != UTIME_OMIT_K &&
			    (times[i].tv_nsec < 0 || times[i].tv_nsec >= 1000000000L))
				return -EINVAL;
	}
	/* utimensat(fd, NULL, ...) is futimens(fd). */
	if (user_path == 0) {
		if (dirfd == AT_FDCWD)
			return -EFAULT;
		r = libos_fetch_target(dirfd, 0, AT_EMPTY_PATH, &p);
	} else {
		r = libos_fetch_target(dirfd, user_path, flags, &p);
	}
	if (r < 0)
		return r;
	return pico_utimens(p.abs, p.len, (const struct timespec *)times, flags & AT_SYMLINK_NOFOLLOW);
}

/* Implements Linux syscall utimensat(2). */
LIBOS_SYSCALL(utimensat)
{
	int flags = (int)a3;
	struct __kernel_timespec times[2];
	if (flags & ~(AT_SYMLINK_NOFOLLOW | AT_EMPTY_PATH))
		return -EINVAL;
	if (a2) {
		long r = libos_copy_from_guest(times, (const void *)a2, sizeof(times));
		if (r < 0)
			return r;
	}
	return set_times((int)a0, a1, a2 ? times : NULL, flags);
}

/* Implements Linux syscall futimesat(2) (microseconds; NULL: now). */
LIBOS_SYSCALL(futimesat)
{
	struct __kernel_timespec times[2];
	if (a2) {
		struct __kernel_old_timeval tv[2];
		long r = libos_copy_from_guest(tv, (const void *)a2, sizeof(tv));
		if (r < 0)
			return r;
		for (int i = 0; i < 2; i++) {
			if (tv[i].tv_usec < 0 || tv[i].tv_usec >= 1000000)
				return -EINVAL;
			times[i].tv_sec = tv[i].tv_sec;
			times[i].tv_nsec = tv[i].tv_usec * 1000;
		}
	}
	if (!a1)
		return -EFAULT;
	return set_times((int)a0, a1, a2 ? times : NULL, 0);
}

LIBOS_SYSCALL(utimes) { return libos_sys_futimesat(AT_FDCWD, a0, a1, 0, 0, 0, uc); }

/* Implements Linux syscall utime(2) (whole seconds). */
LIBOS_SYSCALL(utime)
{
	struct __kernel_timespec times[2];
	if (a1) {
		struct {
			long actime, modtime;
		} ut;
		long r = libos_copy_from_guest(&ut, (const void *)a1, sizeof(ut));
		if (r < 0)
			return r;
		times[0].tv_sec = ut.actime;
		times[1].tv_sec = ut.modtime;
		times[0].tv_nsec = times[1].tv_nsec = 0;
	}
	if (!a0)
		return -EFAULT;
	return set_times(AT_FDCWD, a0, a1 ? times : NULL, 0);
}

/* ---- size, file system ---- */

/* Implements Linux syscall truncate(2). */
LIBOS_SYSCALL(truncate)
{
	struct guest_path p;
	if (a1 < 0)
		return -EINVAL;
	long r = libos_fetch_path(AT_FDCWD, a0, &p);
	if (r < 0)
		return r;
	return pico_truncate(p.abs, p.len, a1);
}

/* Implements Linux syscall statfs(2): the monitor fills the guest's buffer
 * (scratch mounts report their quota). */
LIBOS_SYSCALL(statfs)
{
	struct guest_path p;
	long r = libos_fetch_path(AT_FDCWD, a0, &p);
	if (r < 0)
		return r;
	return pico_statfs(p.abs, p.len, (struct statfs *)a1);
}

/* Implements Linux syscall fstatfs(2) through the fd's path. */
LIBOS_SYSCALL(fstatfs)
{
	struct guest_path p;
	long r = libos_fetch_target((int)a0, 0, AT_EMPTY_PATH, &p);
	if (r < 0)
		return r;
	return pico_statfs(p.abs, p.len, (struct statfs *)a1);
}

/* ---- flushing ---- */

/* Implements Linux syscall fdatasync(2) on fsync (a superset). */
LIBOS_SYSCALL(fdatasync) { return sys1(__NR_fsync, a0); }

/* Implements Linux syscall sync(2): the guest flushes only what it holds;
 * a global sync of the host is not its to ask. */
LIBOS_SYSCALL(sync) { return 0; }

/* Implements Linux syscall syncfs(2) as fsync of that fd. */
LIBOS_SYSCALL(syncfs) { return sys1(__NR_fsync, a0); }
