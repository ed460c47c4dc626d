/* Path-based file calls: the library OS owns cwd and umask, makes every path
 * absolute and hands it to the monitor through a mediated call; calls on an
 * fd the guest holds go to the host directly. */
#include "libos.h"

#define AT_VALID_STAT (AT_SYMLINK_NOFOLLOW | AT_EMPTY_PATH | AT_NO_AUTOMOUNT | AT_STATX_SYNC_TYPE)

long libos_fetch_path(int dirfd, long user_ptr, struct guest_path *out)
{
	char first;
	long r = libos_copy_from_guest(&first, (const void *)user_ptr, 1);
	if (r < 0)
		return r;
	if (first == 0)
		return -ENOENT;
	size_t used = 0;
	if (first != '/') {
		r = libos_join_base(dirfd, out->abs, sizeof(out->abs));
		if (r < 0)
			return r;
		used = (size_t)r;
	}
	/* The first byte's page was probed just now: one probe per path. */
	r = libos_copy_string_after_probe(out->abs + used, (const char *)user_ptr, sizeof(out->abs) - used);
	if (r < 0)
		return r;
	out->len = used + (size_t)r;
	return 0;
}

long libos_fetch_target(int dirfd, long user_ptr, int flags, struct guest_path *out)
{
	if (flags & AT_EMPTY_PATH) {
		char first = 0;
		if (user_ptr) {
			long r = libos_copy_from_guest(&first, (const void *)user_ptr, 1);
			if (r < 0)
				return r;
		}
		if (first == 0) {
			long r = libos_dir_path(dirfd, 0, out->abs, sizeof(out->abs));
			if (r < 0)
				return r;
			out->len = (size_t)r;
			return 0;
		}
	}
	return libos_fetch_path(dirfd, user_ptr, out);
}

#define fetch_path libos_fetch_path
#define SCHEME_ROOM LIBOS_SCHEME_ROOM

/* "scheme:" + the path, in place; returns the URI and its length. */
static const char *uri_of(struct guest_path *p, const char *scheme, size_t *len)
{
	size_t n = libos_strlen(scheme);
	char *uri = p->abs - n;
	memcpy(uri, scheme, n);
	*len = n + p->len;
	return uri;
}

/* ---- cwd and umask ---- */

/* Implements Linux syscall getcwd(2): returns the length including the NUL. */
LIBOS_SYSCALL(getcwd)
{
	char cwd[PICO_MAX_PATH];
	long n = libos_cwd_get(cwd, sizeof(cwd));
	if (n < 0)
		return n;
	if ((unsigned long)a1 < (unsigned long)n + 1)
		return -ERANGE;
	long r = libos_copy_to_guest((void *)a0, cwd, (size_t)n + 1);
	return r < 0 ? r : n + 1;
}

/* Implements Linux syscall chdir(2): the directory must exist (asked of the
 * monitor); the cwd is kept lexically normalised, like a shell's $PWD. */
LIBOS_SYSCALL(chdir)
{
	struct guest_path p;
	struct statx stx;
	long r = fetch_path(AT_FDCWD, a0, &p);
	if (r < 0)
		return r;
	libos_normalise_path(p.abs);
	p.len = libos_strlen(p.abs);
	r = pico_stat(p.abs, p.len, 0, &stx);
	if (r < 0)
		return r;
	if ((stx.stx_mode & S_IFMT) != S_IFDIR)
		return -ENOTDIR;
	r = pico_access(p.abs, p.len, 1 /* X_OK: search permission */, 0);
	if (r < 0)
		return r;
	return libos_cwd_set(p.abs);
}

/* Implements Linux syscall fchdir(2): the fd's remembered path becomes the
 * cwd (the fd must still name a directory we may search). */
LIBOS_SYSCALL(fchdir)
{
	struct guest_path p;
	struct stat st;
	long r = libos_fd_path((int)a0, p.abs, sizeof(p.abs), &st);
	if (r == -ENOSYS && (st.st_mode & S_IFMT) != S_IFDIR)
		return -ENOTDIR;
	if (r < 0)
		return r;
	if ((st.st_mode & S_IFMT) != S_IFDIR)
		return -ENOTDIR;
	p.len = (size_t)r;
	r = pico_access(p.abs, p.len, 1 /* X_OK */, 0);
	if (r < 0)
		return r;
	return libos_cwd_set(p.abs);
}

/* Implements Linux syscall umask(2). */
LIBOS_SYSCALL(umask)
{
	return __atomic_exchange_n(&libos_current()->pub.umask, (unsigned)a0 & 0777, __ATOMIC_RELAXED);
}

/* ---- access ---- */

/* Implements Linux syscall faccessat2(2). */
LIBOS_SYSCALL(faccessat2)
{
	int dirfd = (int)a0, mode = (int)a2, flags = (int)a3;
	struct guest_path p;
	if (mode & ~7)
		return -EINVAL;
	if (flags & ~(AT_SYMLINK_NOFOLLOW | AT_EACCESS | AT_EMPTY_PATH))
		return -EINVAL;
	long r = libos_fetch_target(dirfd, a1, flags, &p);
	if (r < 0)
		return r;
	if (libos_special_access(&p, mode, &r))
		return r;
	return pico_access(p.abs, p.len, mode, flags & AT_SYMLINK_NOFOLLOW);
}

/* Implements Linux syscall faccessat(2) (no flags argument). */
LIBOS_SYSCALL(faccessat) { return libos_sys_faccessat2(a0, a1, a2, 0, 0, 0, uc); }

/* Implements Linux syscall access(2). */
LIBOS_SYSCALL(access) { return libos_sys_faccessat2(AT_FDCWD, a0, a1, 0, 0, 0, uc); }

/* ---- the stat family ---- */

/* dev_t as the kernel encodes it for stat (new_encode_dev): 12 bits of
 * major, 20 of minor, the minor's low byte lowest. */
static unsigned long encode_dev(uint32_t major, uint32_t minor)
{
	return (minor & 0xff) | ((unsigned long)major << 8) | ((unsigned long)(minor & ~0xffU) << 12);
}

static void stat_from_statx(struct stat *st, const struct statx *x)
{
	memset(st, 0, sizeof(*st));
	st->st_dev = encode_dev(x->stx_dev_major, x->stx_dev_minor);
	st->st_ino = x->stx_ino;
	st->st_nlink = x->stx_nlink;
	st->st_mode = x->stx_mode;
	st->st_uid = x->stx_uid;
	st->st_gid = x->stx_gid;
	st->st_rdev = encode_dev(x->stx_rdev_major, x->stx_rdev_minor);
	st->st_size = (long)x->stx_size;
	st->st_blksize = x->stx_blksize;
	st->st_blocks = (long)x->stx_blocks;
	st->st_atime = x->stx_atime.tv_sec;
	st->st_atime_nsec = x->stx_atime.tv_nsec;
	st->st_mtime = x->stx_mtime.tv_sec;
	st->st_mtime_nsec = x->stx_mtime.tv_nsec;
	st->st_ctime = x->stx_ctime.tv_sec;
	st->st_ctime_nsec = x->stx_ctime.tv_nsec;
}

/* struct stat (what fstat gives) -> struct statx, for statx on an fd.
 * dev_t is the kernel's new_encode_dev layout: 12 bits of major, 20 of minor. */
void libos_statx_from_stat(struct statx *x, const struct stat *st)
{
	memset(x, 0, sizeof(*x));
	x->stx_mask = STATX_BASIC_STATS;
	x->stx_blksize = (uint32_t)st->st_blksize;
	x->stx_nlink = (uint32_t)st->st_nlink;
	x->stx_uid = st->st_uid;
	x->stx_gid = st->st_gid;
	x->stx_mode = (uint16_t)st->st_mode;
	x->stx_ino = st->st_ino;
	x->stx_size = (uint64_t)st->st_size;
	x->stx_blocks = (uint64_t)st->st_blocks;
	x->stx_atime.tv_sec = (long)st->st_atime;
	x->stx_atime.tv_nsec = (uint32_t)st->st_atime_nsec;
	x->stx_mtime.tv_sec = (long)st->st_mtime;
	x->stx_mtime.tv_nsec = (uint32_t)st->st_mtime_nsec;
	x->stx_ctime.tv_sec = (long)st->st_ctime;
	x->stx_ctime.tv_nsec = (uint32_t)st->st_ctime_nsec;
	x->stx_dev_major = (uint32_t)((st->st_dev >> 8) & 0xfff);
	x->stx_dev_minor = (uint32_t)((st->st_dev & 0xff) | ((st->st_dev >> 12) & 0xfff00));
	x->stx_rdev_major = (uint32_t)((st->st_rdev >> 8) & 0xfff);
	x->stx_rdev_minor = (uint32_t)((st->st_rdev & 0xff) | ((st->st_rdev >> 12) & 0xfff00));
}

/* Is the path argument "" (or NULL, which Linux 6.11 accepts) with
 * AT_EMPTY_PATH?  Then the call is about dirfd itself: a direct fstat. */
static int empty_path_call(long user_ptr, int flags, long *err)
{
	char c;
	*err = 0;
	if (!(flags & AT_EMPTY_PATH))
		return 0;
	if (user_ptr == 0)
		return 1;
	long r = libos_copy_from_guest(&c, (const void *)user_ptr, 1);
	if (r < 0) {
		*err = r;
		return 1;
	}
	return c == 0;
}

/* Implements Linux syscall newfstatat(2). */
LIBOS_SYSCALL(newfstatat)
{
	int dirfd = (int)a0, flags = (int)a3;
	struct stat st;
	struct statx stx;
	struct guest_path p;
	long r;
	if (flags & ~AT_VALID_STAT)
		return -EINVAL;
	if (empty_path_call(a1, flags, &r)) {
		if (r < 0)
			return r;
		if (dirfd != AT_FDCWD) {
			r = sys2(__NR_fstat, dirfd, &st);
			if (r < 0)
				return r;
			return libos_copy_to_guest((void *)a2, &st, sizeof(st));
		}
		p.len = (size_t)libos_cwd_get(p.abs, sizeof(p.abs));
	} else if ((r = fetch_path(dirfd, a1, &p)) < 0) {
		return r;
	}
	if (!libos_special_stat(&p, flags & AT_SYMLINK_NOFOLLOW, &stx, &r))
		r = pico_stat(p.abs, p.len, flags & AT_SYMLINK_NOFOLLOW, &stx);
	if (r < 0)
		return r;
	stat_from_statx(&st, &stx);
	return libos_copy_to_guest((void *)a2, &st, sizeof(st));
}

/* Implements Linux syscalls stat(2) and lstat(2). */
LIBOS_SYSCALL(stat) { return libos_sys_newfstatat(AT_FDCWD, a0, a1, 0, 0, 0, uc); }
LIBOS_SYSCALL(lstat) { return libos_sys_newfstatat(AT_FDCWD, a0, a1, AT_SYMLINK_NOFOLLOW, 0, 0, uc); }

/* Implements Linux syscall statx(2). */
LIBOS_SYSCALL(statx)
{
	int dirfd = (int)a0, flags = (int)a2;
	unsigned mask = (unsigned)a3;
	struct statx stx;
	struct guest_path p;
	long r;
	if (flags & ~AT_VALID_STAT)
		return -EINVAL;
	if (mask & STATX__RESERVED)
		return -EINVAL;
	if (empty_path_call(a1, flags, &r)) {
		if (r < 0)
			return r;
		if (dirfd != AT_FDCWD) {
			struct stat st;
			r = sys2(__NR_fstat, dirfd, &st);
			if (r < 0)
				return r;
			libos_statx_from_stat(&stx, &st);
			return libos_copy_to_guest((void *)a4, &stx, sizeof(stx));
		}
		p.len = (size_t)libos_cwd_get(p.abs, sizeof(p.abs));
	} else if ((r = fetch_path(dirfd, a1, &p)) < 0) {
		return r;
	}
	if (!libos_special_stat(&p, flags & AT_SYMLINK_NOFOLLOW, &stx, &r))
		r = pico_stat(p.abs, p.len, flags & AT_SYMLINK_NOFOLLOW, &stx);
	if (r < 0)
		return r;
	return libos_copy_to_guest((void *)a4, &stx, sizeof(stx));
}

/* ---- open ---- */

/* Flags with no meaning in a picoprocess, dropped before the monitor sees
 * them: O_NOCTTY (there is no controlling terminal to acquire) and
 * O_LARGEFILE (implied on 64-bit). */
#define OPEN_FLAGS_DROPPED (O_NOCTTY | 0100000)

/* Implements Linux syscall openat(2). */
LIBOS_SYSCALL(openat)
{
	int dirfd = (int)a0, flags = (int)a2;
	unsigned mode = (unsigned)a3;
	struct guest_path p;
	size_t uri_len;
	long r = fetch_path(dirfd, a1, &p);
	if (r < 0)
		return r;
	flags &= ~OPEN_FLAGS_DROPPED;
	if (flags & O_PATH) {
		/* open(2) ignores every other flag with O_PATH (openat2 would
		 * refuse them). */
		flags &= O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC;
		mode = 0;
	}
	if (libos_special_open(&p, flags, &r))
		return r;
	int tmpfile = (flags & O_TMPFILE) == O_TMPFILE;
	if ((flags & O_CREAT) || tmpfile)
		mode &= ~libos_current()->pub.umask & 07777;
	else
		mode = 0;
	/* O_TMPFILE names a directory but opens an unnamed file in it. */
	const char *uri = uri_of(&p, (flags & O_DIRECTORY) && !tmpfile ? "dir:" : "file:", &uri_len);
	r = pico_open(uri, uri_len, flags, mode);
	if (r == -ENXIO)
		r = libos_fifo_retry_writer(uri, uri_len, p.abs, p.len, flags, mode);
	if (tmpfile)
		return r; /* no path to remember: /proc/self/fd/N duplicates it */
	if (r >= 0)
		r = libos_fifo_wait_reader(r, flags);
	if (r == -EISDIR && (flags & O_ACCMODE) == O_RDONLY && !(flags & O_CREAT)) {
		/* open(dir, O_RDONLY) without O_DIRECTORY: a directory stream. */
		uri = uri_of(&p, "dir:", &uri_len);
		r = pico_open(uri, uri_len, flags | O_DIRECTORY, 0);
	}
	if (r >= 0)
		libos_fd_remember(r, p.abs);
	return r;
}

/* Implements Linux syscalls open(2) and creat(2). */
LIBOS_SYSCALL(open) { return libos_sys_openat(AT_FDCWD, a0, a1, a2, 0, 0, uc); }
LIBOS_SYSCALL(creat) { return libos_sys_openat(AT_FDCWD, a0, O_CREAT | O_WRONLY | O_TRUNC, a1, 0, 0, uc); }

/* ---- readlink ---- */

/* Implements Linux syscall readlinkat(2); the links under /proc/self are
 * the library OS's (/proc/self/exe names the program, not the loader the
 * host has there). */
LIBOS_SYSCALL(readlinkat)
{
	int dirfd = (int)a0;
	long size = a3;
	struct guest_path p;
	if (size <= 0)
		return -EINVAL;
	long r = fetch_path(dirfd, a1, &p);
	if (r < 0)
		return r;
	if (libos_special_readlink(&p, (char *)a2, (size_t)size, &r))
		return r;
	/* The monitor writes straight into the guest's buffer (it answers EFAULT
	 * for a bad one). */
	return pico_readlink(p.abs, p.len, (char *)a2, size > PICO_MAX_PATH ? PICO_MAX_PATH : (size_t)size);
}

/* Implements Linux syscall readlink(2). */
LIBOS_SYSCALL(readlink) { return libos_sys_readlinkat(AT_FDCWD, a0, a1, a2, 0, 0, uc); }

/* ---- names ---- */

/* Implements Linux syscall mkdirat(2). */
LIBOS_SYSCALL(mkdirat)
{
	struct guest_path p;
	long r = fetch_path((int)a0, a1, &p);
	if (r < 0)
		return r;
	return pico_mkdir(p.abs, p.len, (unsigned)a2 & ~libos_current()->pub.umask & 07777);
}

/* Implements Linux syscall mkdir(2). */
LIBOS_SYSCALL(mkdir) { return libos_sys_mkdirat(AT_FDCWD, a0, a1, 0, 0, 0, uc); }

/* Implements Linux syscall unlinkat(2). */
LIBOS_SYSCALL(unlinkat)
{
	struct guest_path p;
	if (a2 & ~AT_REMOVEDIR)
		return -EINVAL;
	long r = fetch_path((int)a0, a1, &p);
	if (r < 0)
		return r;
	return pico_unlink(p.abs, p.len, (int)a2);
}

/* Implements Linux syscalls unlink(2) and rmdir(2). */
LIBOS_SYSCALL(unlink) { return libos_sys_unlinkat(AT_FDCWD, a0, 0, 0, 0, 0, uc); }
LIBOS_SYSCALL(rmdir) { return libos_sys_unlinkat(AT_FDCWD, a0, AT_REMOVEDIR, 0, 0, 0, uc); }

/* ---- memfd ---- */

#define MFD_CLOEXEC_K 0x0001U
#define MFD_ALLOW_SEALING_K 0x0002U
#define MFD_HUGETLB_K 0x0004U
#define MFD_NOEXEC_SEAL_K 0x0008U
#define MFD_EXEC_K 0x0010U
#define MFD_NAME_MAX_K 249 /* NAME_MAX minus the "memfd:" prefix */

/* Implements Linux syscall memfd_create(2) as an unnamed file (O_TMPFILE) on
 * the guest's scratch /dev/shm, else /tmp: a real fd with the same reads,
 * writes, mmap and ftruncate, counted against that tmpfs's size.  Not
 * offered: file seals (F_ADD_SEALS answers EINVAL, as for any tmpfs file),
 * huge pages; /proc/self/fd/N does not read "memfd:NAME". */
LIBOS_SYSCALL(memfd_create)
{
	static const char *const places[] = {"file:/dev/shm", "file:/tmp"};
	unsigned flags = (unsigned)a1;
	char name[MFD_NAME_MAX_K + 1];
	if (flags & ~(MFD_CLOEXEC_K | MFD_ALLOW_SEALING_K | MFD_HUGETLB_K | MFD_NOEXEC_SEAL_K |
		      MFD_EXEC_K) ||
	    (flags & (MFD_NOEXEC_SEAL_K | MFD_EXEC_K)) == (MFD_NOEXEC_SEAL_K | MFD_EXEC_K))
		return -EINVAL;
	if (flags & MFD_HUGETLB_K)
		return -EINVAL; /* no hugetlbfs in a picoprocess */
	long r = libos_copy_string_from_guest(name, (const char *)a0, sizeof(name));
	if (r < 0)
		return r == -ENAMETOOLONG ? -EINVAL : r;
	int oflags = O_RDWR | O_TMPFILE | ((flags & MFD_CLOEXEC_K) ? O_CLOEXEC : 0);
	for (size_t i = 0; i < sizeof(places) / sizeof(places[0]); i++) {
		r = pico_open(places[i], libos_strlen(places[i]), oflags, 0700);
		if (r >= 0 || r == -EMFILE || r == -ENFILE || r == -ENOSPC)
			return r;
	}
	/* Neither is a writable scratch directory here: say "not available",
	 * which programs already handle (kernels before 3.17). */
	return -ENOSYS;
}